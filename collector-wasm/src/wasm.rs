//! The browser build: the [`Collector`] behind wasm-bindgen, driven by `sdk-js/src/runtime.js`
//! (which owns storage, timers, locks and `fetch`). Arguments and results are numbers and
//! strings only, so the JS glue stays small and no serde reaches the wasm.

use alloc::string::String;
use alloc::vec::Vec;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::clock::whole_ms;
use crate::queue::{Collector, Config};

// No std on wasm32: the allocator std would use, and a panic handler that traps without
// formatting a message (panics are bugs; the JS side catches the trap and keeps the page alive).
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The collector of one page.
#[wasm_bindgen(js_name = Collector)]
pub struct WasmCollector {
    inner: Collector,
}

#[wasm_bindgen(js_class = Collector)]
impl WasmCollector {
    /// `seed`: four 32-bit words from `crypto.getRandomValues`.
    #[wasm_bindgen(constructor)]
    #[expect(
        clippy::too_many_arguments,
        reason = "numbers only: no serde across the boundary"
    )]
    pub fn new(
        flush_at: u32,
        flush_interval_ms: f64,
        max_queue: u32,
        session_timeout_ms: f64,
        s0: u32,
        s1: u32,
        s2: u32,
        s3: u32,
    ) -> Self {
        let config = Config {
            flush_at: flush_at.max(1),
            flush_interval_ms,
            max_queue: max_queue.max(1),
            session_timeout_ms,
            ..Config::default()
        };
        Self {
            inner: Collector::new(config, [s0, s1, s2, s3]),
        }
    }

    pub fn uuid(&mut self) -> String {
        self.inner.uuid()
    }

    #[wasm_bindgen(js_name = setIds)]
    pub fn set_ids(&mut self, anonymous_id: &str, user_id: &str) {
        self.inner.set_ids(anonymous_id, user_id);
    }

    #[wasm_bindgen(js_name = anonymousId)]
    pub fn anonymous_id(&self) -> String {
        self.inner.anonymous_id().into()
    }

    #[wasm_bindgen(js_name = setState)]
    pub fn set_state(&mut self, seq: f64, session_id: f64, last_activity: f64) {
        // Stored numbers are whole milliseconds and counters (the host wrote them from the getters).
        let (seq, session_id) = (whole_ms(seq), whole_ms(session_id));
        self.inner.set_state(seq, session_id, last_activity);
    }

    #[expect(
        clippy::cast_precision_loss,
        reason = "counters and epoch milliseconds stay below 2^53"
    )]
    pub fn seq(&self) -> f64 {
        self.inner.seq() as f64
    }

    #[wasm_bindgen(js_name = sessionId)]
    #[expect(
        clippy::cast_precision_loss,
        reason = "epoch milliseconds stay below 2^53"
    )]
    pub fn session_id(&self) -> f64 {
        self.inner.session_id() as f64
    }

    #[wasm_bindgen(js_name = lastActivity)]
    pub fn last_activity(&self) -> f64 {
        self.inner.last_activity()
    }

    pub fn size(&self) -> u32 {
        u32::try_from(self.inner.len()).unwrap_or(u32::MAX)
    }

    /// The stamped event, or a number: 1 not an object, 2 too large.
    pub fn enqueue(&mut self, body: &str, context: &str, now: f64) -> wasm_bindgen::JsValue {
        match self.inner.enqueue(body, context, now) {
            Ok(json) => json.into(),
            Err(rejected) => (rejected as u8).into(),
        }
    }

    #[wasm_bindgen(js_name = lastKey)]
    pub fn last_key(&self) -> String {
        self.inner.last_key().into()
    }

    /// Keys dropped from the full queue, space-separated.
    #[wasm_bindgen(js_name = takeEvicted)]
    pub fn take_evicted(&mut self) -> String {
        self.inner.take_evicted().join(" ")
    }

    #[wasm_bindgen(js_name = beginSync)]
    pub fn begin_sync(&mut self) -> bool {
        self.inner.begin_sync()
    }

    #[wasm_bindgen(js_name = endSync)]
    pub fn end_sync(&mut self) {
        self.inner.end_sync();
    }

    pub fn restore(&mut self, key: &str, json: String) -> bool {
        self.inner.restore(key, json)
    }

    pub fn due(&self, now: f64) -> bool {
        self.inner.due(now)
    }

    #[wasm_bindgen(js_name = nextWake)]
    pub fn next_wake(&self, now: f64) -> f64 {
        self.inner.next_wake(now)
    }

    #[wasm_bindgen(js_name = takeBatch)]
    pub fn take_batch(&mut self, now: f64, max_bytes: u32) -> Option<String> {
        self.inner.take_batch(now, max_bytes)
    }

    /// Keys of the batch in flight, space-separated.
    #[wasm_bindgen(js_name = inFlight)]
    pub fn in_flight(&self) -> String {
        self.inner.in_flight().join(" ")
    }

    /// 1 delivered, 2 retry, 3 dropped, 0 nothing in flight.
    pub fn settle(&mut self, status: u16, retry_after_ms: f64, now: f64) -> u8 {
        self.inner.settle(status, retry_after_ms, now) as u8
    }

    #[wasm_bindgen(js_name = abandonInFlight)]
    pub fn abandon_in_flight(&mut self) {
        self.inner.abandon_in_flight();
    }

    /// Forgets the events of space-separated `keys`.
    pub fn forget(&mut self, keys: &str) {
        self.inner.forget(keys.split(' '));
    }

    #[wasm_bindgen(js_name = backingOff)]
    pub fn backing_off(&self, now: f64) -> bool {
        self.inner.backing_off(now)
    }

    /// Forgets every queued event; returns their keys, space-separated.
    pub fn clear(&mut self) -> String {
        self.inner.clear().join(" ")
    }

    /// Every queued event as alternating key and JSON, for storing them once consent is given.
    pub fn entries(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.inner.len() * 2);
        for (key, json) in self.inner.entries() {
            out.push(key.into());
            out.push(json.into());
        }
        out
    }
}

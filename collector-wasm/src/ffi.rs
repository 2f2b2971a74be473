//! The C ABI for native apps (iOS, Android, desktop): the same [`Collector`] with the host's
//! storage and transport as callbacks. The header, `include/braid_collector.h`, is generated
//! by cbindgen (`cbindgen.toml`); `examples/c/main.c` is a complete host, run by the tests.
//!
//! The host persists what the collector hands to `store` *before* returning (a tracked event
//! counts as accepted once `braid_collector_track_json` returns 0), and gives it all back with
//! `braid_collector_restore` when the app starts again. Calls on one collector must not overlap
//! (one thread at a time, or a lock in the host).
#![expect(
    unsafe_code,
    reason = "a C ABI: raw pointers and callbacks from the host"
)]

use std::boxed::Box;
use std::ffi::{CStr, CString, c_char, c_double, c_int, c_void};
use std::string::{String, ToString};
use std::vec::Vec;

use crate::queue::{Collector, Config, Settled};

/// Status codes of the C ABI.
pub const BRAID_OK: c_int = 0;
/// The event or its context is not a JSON object.
pub const BRAID_NOT_AN_OBJECT: c_int = 1;
/// The stamped event is over 32 KB.
pub const BRAID_TOO_LARGE: c_int = 2;
/// The text is not valid JSON (or not UTF-8).
pub const BRAID_INVALID_JSON: c_int = 3;
/// The host's `store` failed: the event was not accepted.
pub const BRAID_STORE_FAILED: c_int = 4;
/// A required pointer was null.
pub const BRAID_NULL: c_int = 5;

/// The host's side: storage and transport. Every callback gets `user` back.
#[repr(C)]
pub struct BraidHost {
    /// Passed back to the callbacks.
    pub user: *mut c_void,
    /// Durably stores `value` under `key` (replacing it); returns 0 on success.
    pub store: Option<
        unsafe extern "C" fn(user: *mut c_void, key: *const c_char, value: *const c_char) -> c_int,
    >,
    /// Removes `key` from storage.
    pub remove: Option<unsafe extern "C" fn(user: *mut c_void, key: *const c_char)>,
    /// POSTs `body` (`len` bytes of JSON) to the `/v1/batch` endpoint; returns the HTTP status,
    /// or 0 when the request did not complete. Sets `*retry_after_ms` from a `Retry-After`
    /// header (left negative when there is none).
    pub send: Option<
        unsafe extern "C" fn(
            user: *mut c_void,
            body: *const c_char,
            len: usize,
            retry_after_ms: *mut c_double,
        ) -> c_int,
    >,
}

/// A collector and its host, behind an opaque pointer.
pub struct BraidCollector {
    inner: Collector,
    host: BraidHost,
}

const STATE_KEY: &str = "state";
const ID_KEY: &str = "ids";
const QUEUE_PREFIX: &str = "q.";

impl BraidCollector {
    fn store(&self, key: &str, value: &str) -> bool {
        let (Some(store), Ok(key), Ok(value)) =
            (self.host.store, CString::new(key), CString::new(value))
        else {
            return false;
        };
        // SAFETY: the host gave this callback for these arguments; the strings live across it.
        unsafe { store(self.host.user, key.as_ptr(), value.as_ptr()) == 0 }
    }

    fn remove(&self, key: &str) {
        if let (Some(remove), Ok(key)) = (self.host.remove, CString::new(key)) {
            // SAFETY: as in `store`.
            unsafe { remove(self.host.user, key.as_ptr()) };
        }
    }

    fn store_ids(&self) -> bool {
        let ids = [self.inner.anonymous_id(), self.inner.user_id()].join("\n");
        self.store(ID_KEY, &ids)
    }
}

/// Reads a C string; `None` for null or not UTF-8.
///
/// # Safety
/// `text` is null or a NUL-terminated string that lives for `'a`.
unsafe fn text<'a>(text: *const c_char) -> Option<&'a str> {
    if text.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(text) }.to_str().ok()
}

/// Creates a collector. `seed`: four 32-bit words from the platform's cryptographic source
/// (`SecRandomCopyBytes`, `SecureRandom`, `getrandom`). `flush_at` 0 takes the default (20).
/// Then give back everything stored with `braid_collector_restore`. Returns null when `host`,
/// `seed` or a callback is missing.
///
/// # Safety
/// `host` points to a valid `BraidHost` (copied); `seed` to four words.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn braid_collector_new(
    host: *const BraidHost,
    seed: *const u32,
    flush_at: u32,
) -> *mut BraidCollector {
    if host.is_null() || seed.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the caller's contract.
    let (host, seed) = unsafe { (std::ptr::read(host), std::slice::from_raw_parts(seed, 4)) };
    if host.store.is_none() || host.remove.is_none() || host.send.is_none() {
        return std::ptr::null_mut();
    }
    let mut words = [0u32; 4];
    words.copy_from_slice(seed);
    let config = Config {
        flush_at: if flush_at == 0 {
            Config::default().flush_at
        } else {
            flush_at
        },
        ..Config::default()
    };
    Box::into_raw(Box::new(BraidCollector {
        inner: Collector::new(config, words),
        host,
    }))
}

/// Gives back one stored entry (`key`, `value` as the collector stored them). Returns 0, or
/// `BRAID_INVALID_JSON` for an entry this collector did not write.
///
/// # Safety
/// `collector` came from `braid_collector_new`; `key` and `value` are NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn braid_collector_restore(
    collector: *mut BraidCollector,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    // SAFETY: the caller's contract.
    let (Some(collector), Some(key), Some(value)) = (
        unsafe { collector.as_mut() },
        unsafe { text(key) },
        unsafe { text(value) },
    ) else {
        return BRAID_NULL;
    };
    let restored = if let Some(entry) = key.strip_prefix(QUEUE_PREFIX) {
        collector.inner.restore(entry, value.to_string())
    } else if key == STATE_KEY {
        let mut parts = value.split(' ');
        let mut next = || parts.next().and_then(|p| p.parse::<f64>().ok());
        match (next(), next(), next()) {
            (Some(seq), Some(session), Some(last)) => {
                collector.inner.set_state(
                    crate::clock::whole_ms(seq),
                    crate::clock::whole_ms(session),
                    last,
                );
                true
            }
            _ => false,
        }
    } else if key == ID_KEY {
        let (anonymous, user) = value.split_once('\n').unwrap_or((value, ""));
        collector.inner.set_ids(anonymous, user);
        !anonymous.is_empty()
    } else {
        false
    };
    if restored {
        BRAID_OK
    } else {
        BRAID_INVALID_JSON
    }
}

/// Sets the user id stamped on later events (null or "" for none: logged out).
///
/// # Safety
/// `collector` came from `braid_collector_new`; `user_id` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn braid_collector_identify(
    collector: *mut BraidCollector,
    user_id: *const c_char,
) -> c_int {
    // SAFETY: the caller's contract.
    let Some(collector) = (unsafe { collector.as_mut() }) else {
        return BRAID_NULL;
    };
    // SAFETY: the caller's contract.
    let user = unsafe { text(user_id) }.unwrap_or("");
    let anonymous = collector.inner.anonymous_id().to_string();
    collector.inner.set_ids(&anonymous, user);
    if collector.store_ids() {
        BRAID_OK
    } else {
        BRAID_STORE_FAILED
    }
}

/// Queues an event: `body_json` holds its own fields (`{"type":"track","event":"Opened",
/// "properties":{...}}`), `context_json` its context (null for none: the app adds `app`,
/// `device`, `os` ...). Returns 0 once the event is stored by the host, else a `BRAID_*` code
/// and nothing is queued. `now_ms`: milliseconds since the Unix epoch.
///
/// # Safety
/// `collector` came from `braid_collector_new`; the strings are null or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn braid_collector_track_json(
    collector: *mut BraidCollector,
    body_json: *const c_char,
    context_json: *const c_char,
    now_ms: c_double,
) -> c_int {
    // SAFETY: the caller's contract.
    let Some(collector) = (unsafe { collector.as_mut() }) else {
        return BRAID_NULL;
    };
    // SAFETY: the caller's contract.
    let Some(body) = (unsafe { text(body_json) }) else {
        return if body_json.is_null() {
            BRAID_NULL
        } else {
            BRAID_INVALID_JSON
        };
    };
    let context = if context_json.is_null() {
        "{}"
    } else {
        // SAFETY: the caller's contract.
        match unsafe { text(context_json) } {
            Some(context) => context,
            None => return BRAID_INVALID_JSON,
        }
    };
    // Unlike JSON.stringify's output, a native caller's text is checked: one bad event would
    // make its whole batch unreadable.
    if !crate::json::is_valid(body) || !crate::json::is_valid(context) {
        return BRAID_INVALID_JSON;
    }
    let json = match collector.inner.enqueue(body, context, now_ms) {
        Ok(json) => json.to_string(),
        Err(rejected) => return rejected as c_int,
    };
    let key = collector.inner.last_key().to_string();
    let state = [
        collector.inner.seq().to_string(),
        collector.inner.session_id().to_string(),
        collector.inner.last_activity().to_string(),
    ]
    .join(" ");
    let stored = collector.store(&[QUEUE_PREFIX, &key].concat(), &json)
        && collector.store(STATE_KEY, &state)
        && collector.store_ids();
    if !stored {
        collector.inner.forget([key.as_str()]);
        collector.remove(&[QUEUE_PREFIX, &key].concat());
        return BRAID_STORE_FAILED;
    }
    for evicted in collector.inner.take_evicted() {
        collector.remove(&[QUEUE_PREFIX, &evicted].concat());
    }
    BRAID_OK
}

/// Sends what is due (with `force`, everything waiting unless a retry delay is pending), one
/// batch at a time through the host's `send`, and settles each. Returns the number of batches
/// delivered. Call it from a background thread, and again after `braid_collector_next_wake`.
///
/// # Safety
/// `collector` came from `braid_collector_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn braid_collector_flush(
    collector: *mut BraidCollector,
    now_ms: c_double,
    force: bool,
) -> c_int {
    // SAFETY: the caller's contract.
    let Some(collector) = (unsafe { collector.as_mut() }) else {
        return -BRAID_NULL;
    };
    let Some(send) = collector.host.send else {
        return -BRAID_NULL;
    };
    let mut delivered = 0;
    let now = now_ms;
    loop {
        let ready = if force {
            !collector.inner.is_empty() && !collector.inner.backing_off(now)
        } else {
            collector.inner.due(now)
        };
        let Some(body) = ready
            .then(|| collector.inner.take_batch(now, u32::MAX))
            .flatten()
        else {
            break;
        };
        let keys: Vec<String> = collector.inner.in_flight().to_vec();
        let mut retry_after: c_double = -1.0;
        let status = match CString::new(body) {
            // SAFETY: the host gave this callback; the body and the out-pointer live across it.
            Ok(body) => unsafe {
                send(
                    collector.host.user,
                    body.as_ptr(),
                    body.as_bytes().len(),
                    &raw mut retry_after,
                )
            },
            Err(_) => 400,
        };
        let status = u16::try_from(status).unwrap_or(0);
        match collector.inner.settle(status, retry_after, now) {
            Settled::Retry | Settled::Nothing => break,
            outcome => {
                for key in &keys {
                    collector.remove(&[QUEUE_PREFIX, key].concat());
                }
                if outcome == Settled::Delivered {
                    delivered += 1;
                }
            }
        }
    }
    delivered
}

/// Milliseconds from `now_ms` until `braid_collector_flush` has something to send (0: now), or
/// -1 when nothing waits.
///
/// # Safety
/// `collector` came from `braid_collector_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn braid_collector_next_wake(
    collector: *const BraidCollector,
    now_ms: c_double,
) -> c_double {
    // SAFETY: the caller's contract.
    unsafe { collector.as_ref() }.map_or(-1.0, |c| c.inner.next_wake(now_ms))
}

/// Events waiting (stored, not yet delivered).
///
/// # Safety
/// `collector` came from `braid_collector_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn braid_collector_pending(collector: *const BraidCollector) -> usize {
    // SAFETY: the caller's contract.
    unsafe { collector.as_ref() }.map_or(0, |c| c.inner.len())
}

/// Frees the collector (events stay stored by the host).
///
/// # Safety
/// `collector` came from `braid_collector_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn braid_collector_free(collector: *mut BraidCollector) {
    if !collector.is_null() {
        // SAFETY: the caller's contract: it came from Box::into_raw and is freed once.
        drop(unsafe { Box::from_raw(collector) });
    }
}

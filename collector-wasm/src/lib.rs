//! Braid's event collector: what a website (through the wasm build and `sdk-js`) or a native app
//! (through the C ABI) links to queue, persist, batch and deliver events to Braid.
//!
//! The crate is `no_std` (with `alloc`) so that the browser build carries no `core::fmt`
//! machinery, no panic messages and no serde: the whole SDK must fit 25 KB gzip. The state
//! machine ([`Collector`]) is platform-neutral; `wasm.rs` and `ffi.rs` are the thin glue.
#![no_std]

extern crate alloc;
#[cfg(any(test, not(target_arch = "wasm32")))]
extern crate std;

mod clock;
mod id;
mod json;
mod queue;

#[cfg(not(target_arch = "wasm32"))]
pub mod ffi;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use queue::{Collector, Config, Rejected, Settled};

/// Whether `text` is one valid JSON value: the C ABI checks what native callers pass.
pub fn is_valid_json(text: &str) -> bool {
    json::is_valid(text)
}

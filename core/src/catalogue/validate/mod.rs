//! Validation: checks one event (or a whole request body) against the Segment Spec and Braid's
//! limits, and says exactly what is wrong, naming the event index, the field and the limit.
//!
//! The rules are the contract in `docs/wire-format.md`.

mod config;
mod error;
mod event;
#[cfg(test)]
mod tests;

pub use config::Limits;
pub use error::ValidationError;
pub use event::validate_event;
pub(crate) use event::{check_size, parse_event, syntax_error, validate_object};

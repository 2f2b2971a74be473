//! Clock-skew correction of `timestamp`.

use time::OffsetDateTime;

/// The corrected event time: `received_at − (sent_at − original)`, the client's own time
/// shifted by how far its clock was off when it sent the batch. Without `sent_at` the client's
/// time is taken as is. Either way the result is clamped to `received_at`: an event cannot
/// happen after the server received it. There is no lower clamp, so historical imports keep
/// their dates.
pub(super) fn correct(
    original: OffsetDateTime,
    sent_at: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
) -> OffsetDateTime {
    let corrected = match sent_at {
        Some(sent_at) => received_at - (sent_at - original),
        None => original,
    };
    corrected.min(received_at)
}

//! The limits that validation enforces, configurable per deployment.

use serde::{Deserialize, Serialize};

/// Size and count limits. The defaults are Segment's HTTP Tracking API limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest event, in bytes of its JSON as received (32 KB).
    pub max_event_bytes: usize,
    /// Largest request body after gzip decoding, in bytes (500 KB).
    pub max_batch_bytes: usize,
    /// Most events in one batch (2,500).
    pub max_batch_events: usize,
    /// Longest `messageId`, in characters (100).
    pub max_message_id_chars: usize,
    /// Longest `userId`, `anonymousId`, `groupId` or `previousId`, in characters (1,024).
    pub max_id_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 32 * 1024,
            max_batch_bytes: 500 * 1024,
            max_batch_events: 2_500,
            max_message_id_chars: 100,
            max_id_chars: 1_024,
        }
    }
}

//! The hand-off from the edge to ingest: a batch of validated, enriched events that the edge
//! forwards upstream (to the ingest Lambda, or `braid serve`), signed with a shared secret.
//!
//! The request is `POST /v1/forward` with
//! - `X-Braid-Timestamp`: the signing time, Unix seconds;
//! - `X-Braid-Signature`: `v1=` and 64 hex digits of HMAC-SHA256 over `v1:<timestamp>:<body>`
//!   with the shared secret;
//! - a JSON body `{"workspace": W, "receivedAt": T, "events": [...], "failed": [...]}`: the
//!   events the edge accepted, as enriched, and the failure records of those it rejected.
//!
//! Ingest accepts a signature only within [`MAX_SKEW_SECONDS`] of its own clock. A batch
//! replayed within that window is harmless: lake objects are named by their content, so it
//! rewrites its own objects. The contract is written down in `docs/forward.md`.

use std::borrow::Cow;

use hmac::Mac as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::catalogue::lake::{FailedEvent, LakeWrite};
use crate::catalogue::validate::{Limits, validate_event};
use crate::{hex, mac, timestamp};

/// How far the signing time may be from the verifier's clock, either way.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// The header holding the signing time.
pub const TIMESTAMP_HEADER: &str = "x-braid-timestamp";

/// The header holding the signature.
pub const SIGNATURE_HEADER: &str = "x-braid-signature";

/// Why a forwarded request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// A header is missing.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// The timestamp header is not a number.
    #[error("the x-braid-timestamp header must be Unix seconds, not {0:?}")]
    BadTimestamp(String),
    /// The signing time is too far from the verifier's clock.
    #[error("the signature is {age} s from this server's clock, over the limit of {limit} s")]
    Stale {
        /// Seconds between the signing time and now (negative: in the future).
        age: i64,
        /// The limit in seconds.
        limit: i64,
    },
    /// The signature does not match.
    #[error("the x-braid-signature header does not match the body")]
    BadSignature,
    /// The body is not a forward batch.
    #[error("the body is not a forward batch: {0}")]
    BadBody(String),
}

/// The signature of `body` signed at `unix_seconds`: the `X-Braid-Signature` header value.
pub fn sign(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    let digest = signing_mac(secret, unix_seconds, body)
        .finalize()
        .into_bytes();
    let mut out = String::with_capacity(67);
    out.push_str("v1=");
    hex::push(&mut out, &digest);
    out
}

/// Checks a forwarded request's headers against its body and the verifier's clock.
///
/// # Errors
///
/// [`ForwardError::MissingHeader`], [`ForwardError::BadTimestamp`],
/// [`ForwardError::BadSignature`], or, for a good signature only, [`ForwardError::Stale`].
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), ForwardError> {
    let timestamp = timestamp.ok_or(ForwardError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = signature.ok_or(ForwardError::MissingHeader(SIGNATURE_HEADER))?;
    let signed_at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| ForwardError::BadTimestamp(timestamp.chars().take(32).collect()))?;
    let expected = signature
        .trim()
        .strip_prefix("v1=")
        .and_then(hex::decode)
        .ok_or(ForwardError::BadSignature)?;
    // The signature first: a caller without the secret learns nothing, not even how far its
    // clock is from this one. `verify_slice` compares in constant time.
    signing_mac(secret, signed_at, body)
        .verify_slice(&expected)
        .map_err(|_| ForwardError::BadSignature)?;
    let age = now.unix_timestamp().saturating_sub(signed_at);
    if age.abs() > MAX_SKEW_SECONDS {
        return Err(ForwardError::Stale {
            age,
            limit: MAX_SKEW_SECONDS,
        });
    }
    Ok(())
}

fn signing_mac(secret: &[u8], unix_seconds: i64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = mac::keyed(secret);
    mac.update(b"v1:");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// A forward batch as ingest reads it: the events and failure records stay JSON text.
#[derive(Debug)]
pub struct ForwardBatch<'a> {
    /// The workspace the events belong to.
    pub workspace: Cow<'a, str>,
    /// When the edge received them (the lake partition).
    pub received_at: OffsetDateTime,
    /// The accepted events, as enriched.
    pub events: Vec<&'a RawValue>,
    /// Failure records of the events the edge rejected.
    pub failed: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    workspace: Cow<'a, str>,
    #[serde(rename = "receivedAt", borrow)]
    received_at: Cow<'a, str>,
    #[serde(borrow, default)]
    events: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    failed: Vec<&'a RawValue>,
}

impl<'a> ForwardBatch<'a> {
    /// Reads a forward body.
    ///
    /// # Errors
    ///
    /// [`ForwardError::BadBody`] naming what is wrong.
    pub fn parse(body: &'a [u8]) -> Result<ForwardBatch<'a>, ForwardError> {
        let wire: Wire<'a> =
            serde_json::from_slice(body).map_err(|e| ForwardError::BadBody(e.to_string()))?;
        let received_at = timestamp::parse(&wire.received_at).map_err(|_| {
            ForwardError::BadBody(format!(
                "receivedAt must be an RFC 3339 date-time, not {:?}",
                wire.received_at
            ))
        })?;
        Ok(ForwardBatch {
            workspace: wire.workspace,
            received_at,
            events: wire.events,
            failed: wire.failed,
        })
    }

    /// Writes a forward body from NDJSON, as the edge holds its accepted events and failure
    /// records.
    pub fn write(
        workspace: &str,
        received_at: OffsetDateTime,
        events_ndjson: &[u8],
        failed_ndjson: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(events_ndjson.len() + failed_ndjson.len() + 128);
        out.extend_from_slice(b"{\"workspace\":");
        crate::json::write_str(workspace, &mut out);
        out.extend_from_slice(b",\"receivedAt\":\"");
        timestamp::write(received_at, &mut out);
        out.extend_from_slice(b"\",\"events\":");
        write_array(events_ndjson, &mut out);
        out.extend_from_slice(b",\"failed\":");
        write_array(failed_ndjson, &mut out);
        out.push(b'}');
        out
    }
}

/// NDJSON lines as a JSON array.
fn write_array(ndjson: &[u8], out: &mut Vec<u8>) {
    out.push(b'[');
    let lines = ndjson
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty());
    for (i, line) in lines.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(line);
    }
    out.push(b']');
}

impl ForwardBatch<'_> {
    /// The batch as lake content: its events validated again with the core (the lake must stay
    /// valid whatever an edge sends: an event that fails becomes a failure record), and the
    /// edge's failure records as they came.
    pub fn to_lake_write(&self, limits: &Limits) -> LakeWrite {
        let mut write = LakeWrite {
            workspace: self.workspace.clone().into_owned(),
            received_at: self.received_at,
            accepted: Vec::with_capacity(self.events.iter().map(|e| e.get().len() + 1).sum()),
            failed: Vec::new(),
            accepted_count: 0,
            failed_count: 0,
        };
        for (index, raw) in self.events.iter().enumerate() {
            match validate_event(index, raw.get(), None, limits) {
                Ok(event) => {
                    event.write_json(&mut write.accepted);
                    write.accepted.push(b'\n');
                    write.accepted_count += 1;
                }
                Err(error) => {
                    let record = FailedEvent {
                        error,
                        payload: raw.get().to_owned(),
                        event: None,
                    };
                    record.write_json(&self.workspace, self.received_at, &mut write.failed);
                    write.failed_count += 1;
                }
            }
        }
        for record in &self.failed {
            write.failed.extend_from_slice(record.get().as_bytes());
            write.failed.push(b'\n');
            write.failed_count += 1;
        }
        write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    #[test]
    fn a_signed_body_verifies() {
        let body = br#"{"workspace":"shop"}"#;
        let signature = sign(b"secret", 1_700_000_000, body);
        assert!(signature.starts_with("v1=") && signature.len() == 67);
        assert_eq!(
            verify(
                b"secret",
                Some("1700000000"),
                Some(&signature),
                body,
                at(1_700_000_100)
            ),
            Ok(())
        );
    }

    #[test]
    fn refuses_what_does_not_match() {
        let body = br#"{"workspace":"shop"}"#;
        let good = sign(b"secret", 1_700_000_000, body);
        let now = at(1_700_000_000);
        let check = |ts: Option<&str>, sig: Option<&str>, body: &[u8], secret: &[u8]| {
            verify(secret, ts, sig, body, now)
        };
        let ts = Some("1700000000");
        assert_eq!(
            check(ts, Some(&good), b"{}", b"secret"),
            Err(ForwardError::BadSignature)
        );
        assert_eq!(
            check(ts, Some(&good), body, b"other"),
            Err(ForwardError::BadSignature)
        );
        assert_eq!(
            check(Some("1700000001"), Some(&good), body, b"secret"),
            Err(ForwardError::BadSignature)
        );
        assert_eq!(
            check(ts, Some("v1=zz"), body, b"secret"),
            Err(ForwardError::BadSignature)
        );
        assert_eq!(
            check(None, Some(&good), body, b"secret"),
            Err(ForwardError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            check(ts, None, body, b"secret"),
            Err(ForwardError::MissingHeader(SIGNATURE_HEADER))
        );
        assert!(matches!(
            check(Some("soon"), Some(&good), body, b"secret"),
            Err(ForwardError::BadTimestamp(_))
        ));
    }

    #[test]
    fn refuses_stale_and_future_signatures() {
        let body = b"{}";
        let signature = sign(b"k", 1_000, body);
        for (now, ok) in [(1_300, true), (1_301, false), (700, true), (699, false)] {
            let result = verify(b"k", Some("1000"), Some(&signature), body, at(now));
            assert_eq!(result.is_ok(), ok, "now {now}: {result:?}");
        }
        assert_eq!(
            verify(b"k", Some("1000"), Some(&signature), body, at(1_301)),
            Err(ForwardError::Stale {
                age: 301,
                limit: 300
            })
        );
    }

    #[test]
    fn a_stale_request_without_the_secret_learns_nothing_of_the_clock() {
        let body = b"{}";
        let forged = sign(b"guess", 1_000, body);
        for signed_at in ["1000", "1", "99999999999"] {
            assert_eq!(
                verify(b"k", Some(signed_at), Some(&forged), body, at(5_000)),
                Err(ForwardError::BadSignature),
                "signed at {signed_at}"
            );
        }
    }

    #[test]
    fn bodies_round_trip() {
        let received = timestamp::parse("2024-05-01T10:00:00.250Z").unwrap();
        let body = ForwardBatch::write(
            "shop",
            received,
            b"{\"type\":\"track\"}\n{\"type\":\"page\"}\n",
            b"",
        );
        let batch = ForwardBatch::parse(&body).unwrap();
        assert_eq!(batch.workspace, "shop");
        assert_eq!(batch.received_at, received);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.events[1].get(), "{\"type\":\"page\"}");
        assert!(batch.failed.is_empty());
        assert!(matches!(
            ForwardBatch::parse(br#"{"workspace":"w","receivedAt":"yesterday"}"#),
            Err(ForwardError::BadBody(message)) if message.contains("receivedAt")
        ));
        assert!(ForwardBatch::parse(b"[]").is_err());
    }
}

//! What a webhook destination needs that is not I/O: the Standard Webhooks signature
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! id.timestamp.body>`, one signature per key so that a receiver can rotate its key), the
//! classes of a delivery's outcome, the retry schedule, and which addresses a destination may
//! not reach (the SSRF rule, applied to each address a host name resolves to).
//!
//! The destinations ([`super::destination`]) and their runtime (`braid_unifier::activate`) use
//! these; the signature is also checked by the reference library in the integration tests.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac as _;

/// A signing key that cannot be used, naming the field and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct KeyError {
    field: String,
    problem: String,
}

/// The fewest and most bytes of a signing key (Standard Webhooks: 24 to 64).
pub const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A webhook signing key: the bytes behind `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A key is a secret: never in a log line.
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Reads `text` (`whsec_` and the key's bytes in base64) of the setting `field`.
    ///
    /// # Errors
    ///
    /// Without the prefix, with text that is not base64, or with a key outside [`KEY_BYTES`].
    pub fn parse(field: &str, text: &str) -> Result<SigningKey, KeyError> {
        let problem = |problem: String| KeyError {
            field: field.to_owned(),
            problem,
        };
        let encoded = text.strip_prefix("whsec_").ok_or_else(|| {
            problem("a signing key is \"whsec_\" and the key's bytes in base64".to_owned())
        })?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| problem(format!("the key after \"whsec_\" is not base64: {e}")))?;
        if !KEY_BYTES.contains(&bytes.len()) {
            return Err(problem(format!(
                "a key of {} bytes: keys are {} to {} bytes",
                bytes.len(),
                KEY_BYTES.start(),
                KEY_BYTES.end()
            )));
        }
        Ok(SigningKey(bytes))
    }

    /// The key as a receiver is given it: `whsec_<base64>`.
    pub fn text(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    /// The key of these bytes (for tests, and for keys made elsewhere).
    ///
    /// # Errors
    ///
    /// A key outside [`KEY_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningKey, KeyError> {
        SigningKey::parse("key", &format!("whsec_{}", STANDARD.encode(bytes)))
    }
}

/// The headers of one signed delivery of `body`: its message id (the same on every retry, so a
/// receiver recognizes a redelivery), the time it is sent (Unix seconds), and a signature by
/// each key (the first the current one; more while a receiver moves to a new key).
pub fn signed_headers(
    keys: &[SigningKey],
    id: &str,
    sent_at: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let timestamp = sent_at.to_string();
    let signatures: Vec<String> = keys
        .iter()
        .map(|key| {
            let mut mac = crate::mac::keyed(&key.0);
            for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
                mac.update(part);
            }
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect();
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signatures.join(" ")),
    ]
}

/// Segment's `X-Signature` of `body`: the HMAC-SHA1 of the body keyed by `secret`, in hex (what
/// receivers written for Segment's webhooks verify; a weaker signature than the Standard
/// Webhooks one beside it, sent only when a destination sets `segment_secret`).
pub fn segment_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes a key of any length.
        return String::new();
    };
    mac.update(body);
    crate::hex::encode(&mac.finalize().into_bytes())
}

/// What a delivery's answer means for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered (2xx).
    Delivered,
    /// Try again later: no answer, a time-out (408), too many requests (429) or a server error
    /// (5xx).
    Retry,
    /// Not deliverable as it is (another 3xx or 4xx): not retried, kept as dead letter.
    Permanent,
    /// The receiver is gone (410): the destination is disabled.
    Gone,
}

/// The outcome of an answer with `status` (`None`: no answer — refused, reset, timed out).
pub fn outcome(status: Option<u16>) -> Outcome {
    match status {
        None | Some(408 | 429 | 500..=599) => Outcome::Retry,
        Some(200..=299) => Outcome::Delivered,
        Some(410) => Outcome::Gone,
        // Redirects are not followed: a receiver that moved is fixed in the configuration (and
        // a redirect would lead past the address rule).
        Some(_) => Outcome::Permanent,
    }
}

/// The waits before each retry after a failed attempt (Standard Webhooks' and Svix's
/// schedule): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — eight attempts over about 27 hours.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_mins(5),
    Duration::from_mins(30),
    Duration::from_hours(2),
    Duration::from_hours(5),
    Duration::from_hours(10),
    Duration::from_hours(10),
];

/// The longest `Retry-After` honoured: a receiver cannot park a message longer than the
/// schedule's longest wait.
pub const MAX_RETRY_AFTER: Duration = Duration::from_hours(10);

/// How long to wait, by `schedule` (a destination's, else [`RETRY_SCHEDULE`]), before the
/// attempt after `failed` failed attempts (1 after the first),
/// or `None` when the schedule is spent (the message is a dead letter). `retry_after` is the
/// receiver's `Retry-After` (waited for when longer, up to [`MAX_RETRY_AFTER`]); `jitter`, in
/// `0.0..1.0`, spreads the retries of many messages over the tenth of the wait after it, so
/// that a receiver that comes back is not met by all of them at once.
pub fn retry_wait(
    schedule: &[Duration],
    failed: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let index = usize::try_from(failed.checked_sub(1)?).ok()?;
    let base = *schedule.get(index)?;
    let spread = base.mul_f64(jitter.clamp(0.0, 1.0) / 10.0);
    let wait = base + spread;
    Some(retry_after.map_or(wait, |asked| wait.max(asked.min(MAX_RETRY_AFTER))))
}

/// Why a destination may not be sent to `ip`, if it may not: the addresses of this machine
/// and of private, shared and link-local networks (a cloud's metadata service among them),
/// and those that are no host. A host name is checked on each address it resolves to, at
/// connection time, so that a name that resolves elsewhere later does not pass.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let segments = v6.segments();
            let [first, ..] = segments;
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if let [0x64, 0xff9b, 0, 0, 0, 0, ..] = segments {
                // NAT64: the IPv4 address in its last 32 bits decides.
                let [.., a, b, c, d] = v6.octets();
                forbidden_v4(Ipv4Addr::new(a, b, c, d))
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a == 0 || v4.is_unspecified() {
        Some("unspecified")
    } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_signature_is_the_bodys_hmac_sha1_in_hex() {
        // The HMAC-SHA1 example every implementation agrees on.
        assert_eq!(
            segment_signature("key", b"The quick brown fox jumps over the lazy dog"),
            "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
        );
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32]).unwrap()
    }

    #[test]
    fn keys_are_read_from_their_text_and_refused_naming_the_field() {
        let text = key().text();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningKey::parse("k", &text).unwrap(), key());
        for (bad, says) in [
            ("BwcH", "\"whsec_\""),
            ("whsec_not base64!", "not base64"),
            (
                "whsec_BwcHBwcH",
                "a key of 6 bytes: keys are 24 to 64 bytes",
            ),
        ] {
            let error = SigningKey::parse("destinations.crm.keys[0]", bad)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("destinations.crm.keys[0]: ") && error.contains(says),
                "{error}"
            );
        }
        assert!(SigningKey::from_bytes(&[1; 65]).is_err());
        assert_eq!(format!("{:?}", key()), "SigningKey(..)");
    }

    #[test]
    fn each_key_signs_id_timestamp_and_body() {
        let other = SigningKey::from_bytes(&[9; 24]).unwrap();
        let [id, timestamp, signature] = signed_headers(
            &[key(), other.clone()],
            "msg_1",
            1_700_000_000,
            b"{\"a\":1}",
        );
        assert_eq!(id, ("webhook-id", "msg_1".to_owned()));
        assert_eq!(timestamp, ("webhook-timestamp", "1700000000".to_owned()));
        // HMAC-SHA256 over "msg_1.1700000000.{"a":1}", as computed by any HMAC (the reference
        // library checks the same in the integration tests).
        let mut mac = crate::mac::keyed(&[7; 32]);
        mac.update(b"msg_1.1700000000.{\"a\":1}");
        let first = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        let parts: Vec<&str> = signature.1.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], first);
        assert_ne!(parts[1], first);
        // Another body, id or time is another signature.
        for (id, at, body) in [
            ("msg_2", 1_700_000_000, &b"{\"a\":1}"[..]),
            ("msg_1", 1_700_000_001, b"{\"a\":1}"),
            ("msg_1", 1_700_000_000, b"{\"a\":2}"),
        ] {
            let [.., (_, changed)] = signed_headers(&[key()], id, at, body);
            assert_ne!(changed, first);
        }
    }

    #[test]
    fn answers_are_delivered_retried_refused_or_gone() {
        assert_eq!(outcome(Some(200)), Outcome::Delivered);
        assert_eq!(outcome(Some(204)), Outcome::Delivered);
        for retried in [None, Some(408), Some(429), Some(500), Some(503)] {
            assert_eq!(outcome(retried), Outcome::Retry, "{retried:?}");
        }
        for refused in [Some(301), Some(400), Some(401), Some(404), Some(422)] {
            assert_eq!(outcome(refused), Outcome::Permanent, "{refused:?}");
        }
        assert_eq!(outcome(Some(410)), Outcome::Gone);
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_and_retry_after() {
        let hours = Duration::from_hours;
        assert_eq!(retry_wait(&RETRY_SCHEDULE, 0, None, 0.0), None);
        assert_eq!(
            retry_wait(&RETRY_SCHEDULE, 1, None, 0.0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(retry_wait(&RETRY_SCHEDULE, 4, None, 0.0), Some(hours(2)));
        assert_eq!(retry_wait(&RETRY_SCHEDULE, 7, None, 0.0), Some(hours(10)));
        assert_eq!(
            retry_wait(&RETRY_SCHEDULE, 8, None, 0.0),
            None,
            "eight attempts in all"
        );
        let total: Duration = (1..=7)
            .filter_map(|n| retry_wait(&RETRY_SCHEDULE, n, None, 0.0))
            .sum();
        assert!(total > hours(27) && total < hours(28), "{total:?}");
        // Jitter adds up to a tenth.
        assert_eq!(
            retry_wait(&RETRY_SCHEDULE, 1, None, 1.0),
            Some(Duration::from_millis(5_500))
        );
        assert_eq!(
            retry_wait(&RETRY_SCHEDULE, 1, None, 7.0),
            Some(Duration::from_millis(5_500))
        );
        // Retry-After is waited for when longer, up to the bound.
        let asked = Some(Duration::from_mins(1));
        assert_eq!(
            retry_wait(&RETRY_SCHEDULE, 1, asked, 0.0),
            Some(Duration::from_mins(1))
        );
        assert_eq!(
            retry_wait(&RETRY_SCHEDULE, 3, asked, 0.0),
            Some(Duration::from_mins(30))
        );
        assert_eq!(
            retry_wait(&RETRY_SCHEDULE, 1, Some(hours(100)), 0.0),
            Some(hours(10))
        );
    }

    #[test]
    fn private_loopback_and_metadata_addresses_are_refused() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("255.255.255.255", "broadcast, multicast or reserved"),
            ("224.0.0.1", "broadcast, multicast or reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::10.0.0.1", "private"),
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden_address(parsed), Some(why), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert_eq!(forbidden_address(ip.parse().unwrap()), None, "{ip}");
        }
    }
}

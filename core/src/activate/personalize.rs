//! Personalization at the edge (`docs/personalization.md`): what the unifier writes to the
//! edge's key-value store, and how the edge finds the caller's own entry and nobody else's.
//!
//! Keys are keyed hashes of an identifier, so the store reveals no ids and a caller cannot
//! compute another person's key. The edge derives the identifier from the request itself —
//! the browser's `HttpOnly` credential cookie, or a token the site's server signed for a
//! logged-in user — never from the query string, and a profile answers only the identifiers
//! proven to belong to it ([`answers`]).

use hmac::Mac as _;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::unify::{IdType, Identifier, Profile, ProfileIds, Unifier};
use crate::{hex, mac};

/// The answer for a caller without an entry: an empty profile, not an error.
pub const EMPTY_PROFILE: &str = r#"{"traits":{},"audiences":[]}"#;

/// The store key of an identifier: 32 hex digits of HMAC-SHA256(`secret`, `type:value`).
pub fn edge_key(secret: &[u8], id: &Identifier) -> String {
    let mut mac = mac::keyed(secret);
    mac.update(id.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes().get(..16).unwrap_or_default())
}

/// The edge's value for a profile: its edge-visible traits (`visible`, by name) and the keys
/// of the audiences it is in, sorted (the edge answers a caller only about their own profile,
/// [`answers`]).
pub fn edge_value(profile: &Profile, visible: &[String]) -> String {
    let traits: Map<String, Value> = visible
        .iter()
        .filter_map(|name| Some((name.clone(), profile.traits.get(name)?.value.clone())))
        .collect();
    let audiences: Vec<&str> = profile.segment.audiences.keys().map(|k| &**k).collect();
    json!({"traits": traits, "audiences": audiences}).to_string()
}

/// Whether the edge may answer a caller who proves `id` with this profile (`docs/trust.md`):
/// a `user_id` (a token the site's server signed for it), or a browser (its credential cookie)
/// or an anonymous id that every identified identifier of the profile is linked to by proven
/// events only ([`ProfileIds::readable_by`]). An unproven claim (`identify` with someone else's
/// `userId`) links a browser to a profile but never lets it read one.
pub fn answers(ids: &ProfileIds, id: &Identifier) -> bool {
    match id.kind {
        IdType::UserId => true,
        IdType::AnonymousId | IdType::Browser => ids.readable_by(id),
        _ => false,
    }
}

/// The entries the edge needs for one profile: its value ([`edge_value`]) under the key of
/// each identifier a request can prove and that it [`answers`].
pub fn profile_edge_entries(
    ids: &ProfileIds,
    profile: &Profile,
    secret: &[u8],
    visible: &[String],
) -> Vec<(String, String)> {
    let value = edge_value(profile, visible);
    ids.identifiers
        .keys()
        .filter(|id| answers(ids, id))
        .map(|id| (edge_key(secret, id), value.clone()))
        .collect()
}

/// Every entry the edge needs for every profile of a unifier ([`profile_edge_entries`]),
/// sorted by key.
pub fn edge_entries(unifier: &Unifier, secret: &[u8], visible: &[String]) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for ids in unifier.graph().profiles() {
        if let Some(profile) = unifier.profile(&ids.id) {
            entries.extend(profile_edge_entries(ids, profile, secret, visible));
        }
    }
    entries.sort();
    entries
}

/// Why a personalization token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `v1.<expires>.<signature>.<type:value>`.
    #[error("the token is not v1.<expires>.<signature>.<type:value>")]
    Malformed,
    /// The signature does not match.
    #[error("the token's signature does not match")]
    BadSignature,
    /// Past its expiry time.
    #[error("the token expired at {expires} (unix seconds)")]
    Expired {
        /// When it expired.
        expires: i64,
    },
    /// For an identifier type a token may not name.
    #[error("a token names a user_id or anonymous_id, not {kind:?}")]
    WrongType {
        /// The type it named.
        kind: String,
    },
}

fn token_mac(secret: &[u8], expires: i64, id: &str) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = mac::keyed(secret);
    mac.update(b"v1.");
    mac.update(expires.to_string().as_bytes());
    mac.update(b".");
    mac.update(id.as_bytes());
    mac
}

/// A token for a site's pages to read the profile of `id` (a `user_id` the site's server has
/// authenticated): `v1.<expires unix seconds>.<hex HMAC-SHA256>.<type:value>`.
pub fn sign_token(secret: &[u8], id: &Identifier, expires: OffsetDateTime) -> String {
    let expires = expires.unix_timestamp();
    let id = id.to_string();
    let digest = token_mac(secret, expires, &id).finalize().into_bytes();
    let mut token = format!("v1.{expires}.");
    hex::push(&mut token, &digest);
    token.push('.');
    token.push_str(&id);
    token
}

/// The identifier a token vouches for.
///
/// # Errors
/// [`TokenError`] when it is malformed, forged, expired, or names another kind of id.
pub fn verify_token(
    secret: &[u8],
    token: &str,
    now: OffsetDateTime,
) -> Result<Identifier, TokenError> {
    let mut parts = token.splitn(4, '.');
    let (Some("v1"), Some(expires), Some(signature), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    let signature = hex::decode(signature).ok_or(TokenError::Malformed)?;
    token_mac(secret, expires, id)
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    if now.unix_timestamp() >= expires {
        return Err(TokenError::Expired { expires });
    }
    let id = Identifier::parse(id).ok_or(TokenError::Malformed)?;
    if !matches!(id.kind, IdType::UserId | IdType::AnonymousId) {
        return Err(TokenError::WrongType {
            kind: id.kind.as_str().to_owned(),
        });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SECRET: &[u8] = b"edge-secret";

    #[test]
    fn keys_are_keyed_hashes_of_the_identifier() {
        let ada = Identifier::parse("anonymous_id:ada").unwrap();
        let key = edge_key(SECRET, &ada);
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key, edge_key(SECRET, &ada), "stable");
        assert_ne!(key, edge_key(b"other-secret", &ada), "needs the secret");
        assert_ne!(
            key,
            edge_key(SECRET, &Identifier::parse("user_id:ada").unwrap())
        );
        // The key is the first 16 bytes of HMAC-SHA256 (`crate::mac` checks the primitive
        // against RFC 4231).
        let mut mac = mac::keyed(SECRET);
        mac.update(b"anonymous_id:ada");
        assert_eq!(key, hex::encode(&mac.finalize().into_bytes()[..16]));
    }

    #[test]
    fn tokens_verify_only_unchanged_unexpired_and_for_person_ids() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let user = Identifier::parse("user_id:u-1.5").unwrap();
        let token = sign_token(SECRET, &user, now + time::Duration::minutes(10));
        assert_eq!(verify_token(SECRET, &token, now), Ok(user.clone()));
        assert_eq!(
            verify_token(SECRET, &token, now + time::Duration::minutes(10)),
            Err(TokenError::Expired {
                expires: (now + time::Duration::minutes(10)).unix_timestamp()
            })
        );
        assert_eq!(
            verify_token(b"wrong", &token, now),
            Err(TokenError::BadSignature)
        );
        let forged = token.replace("user_id:u-1.5", "user_id:u-2");
        assert_eq!(
            verify_token(SECRET, &forged, now),
            Err(TokenError::BadSignature)
        );
        let later = token.replacen(
            &format!("{}", (now + time::Duration::minutes(10)).unix_timestamp()),
            "99999999999",
            1,
        );
        assert_eq!(
            verify_token(SECRET, &later, now),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "v1",
            "v2.1.aa.user_id:x",
            "v1.x.aa.user_id:x",
            "v1.1.zz.user_id:x",
        ] {
            assert_eq!(
                verify_token(SECRET, bad, now),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        let email = sign_token(
            SECRET,
            &Identifier::parse("email:a@b.example").unwrap(),
            now + time::Duration::hours(1),
        );
        assert_eq!(
            verify_token(SECRET, &email, now),
            Err(TokenError::WrongType {
                kind: "email".into()
            })
        );
    }
}

//! What a request may say about who a person is (`docs/trust.md`).
//!
//! A browser write key is public: anything it sends, anyone can send. So an event's `userId`
//! or `traits.email` is a claim, and collection stamps every event with what the request proved
//! (`context.braid`, written only here; whatever a client put there is removed):
//!
//! - `trusted: true` — sent with a server key (or by an operator's import): every identifier
//!   the event carries is its sender's to name.
//! - `verified: ["user_id", "email"]` — identity verification, as Intercom's and Customer.io's
//!   HMAC user hash: the site's server gives its page `HMAC-SHA256(identity secret, userId)` (and
//!   of the email), the page sends it as `context.braid.userHash` (`emailHash`), and collection
//!   checks it against the event's own values, normalised as unify normalises them. The hashes
//!   themselves are not kept: they are credentials.
//! - `browser` — the SHA-256 of the browser's credential cookie, a random value the server
//!   issued (`HttpOnly`): unify links it as a `browser` identifier, and personalization by cookie
//!   finds the profile through it. Nobody can name another browser's: it is not in any event.

use hmac::Mac as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::event::{BRAID_CONTEXT, BROWSER, Event, TRUSTED, VERIFIED, id_text};
use crate::hex;
use crate::json::{Node, Obj};
use crate::mac;
use crate::unify::{IdType, normalize};

pub use crate::event::{EMAIL_HASH, USER_HASH};

/// What a request's sender may claim.
#[derive(Clone, Copy, Debug)]
pub enum Trust<'a> {
    /// A server key or an operator: every identifier its events carry counts as proven.
    Server,
    /// A public write key: only what each event's proofs prove.
    Client {
        /// The workspace's identity secret (without one, nothing is proven).
        secret: Option<&'a [u8]>,
        /// The browser credential's id ([`browser_id`]), if the request carried or was given
        /// one.
        browser: Option<&'a str>,
    },
}

impl Default for Trust<'_> {
    fn default() -> Self {
        Trust::Client {
            secret: None,
            browser: None,
        }
    }
}

/// The proof a site's server computes for an identifier of type `kind` (`user_id` or
/// `email`): lowercase hex HMAC-SHA256 under the identity secret of the value normalised as
/// unify normalises it (an email trimmed and lower-cased, a user id trimmed). `None` for a value
/// unify would not use.
pub fn identity_hash(secret: &[u8], kind: &IdType, value: &str) -> Option<String> {
    let value = normalize(kind, value, None)?;
    let mut mac = mac::keyed(secret);
    mac.update(value.as_bytes());
    Some(hex::encode(&mac.finalize().into_bytes()))
}

/// The id under which a browser credential (the cookie's value) is linked: SHA-256 as hex.
pub fn browser_id(credential: &str) -> String {
    hex::encode(&Sha256::digest(credential.as_bytes()))
}

/// Replaces whatever the client sent in `context.braid` with what this request proves.
pub(crate) fn stamp(event: &mut Event<'_>, trust: Trust<'_>) {
    let sent = event
        .fields_mut()
        .open("context")
        .and_then(|context| context.remove(BRAID_CONTEXT));
    let mut stamped = Obj::new();
    match trust {
        Trust::Server => stamped.insert(TRUSTED, Node::Value(Value::Bool(true))),
        Trust::Client { secret, browser } => {
            if let Some(secret) = secret {
                let verified = verified(event, secret, sent.as_ref());
                if !verified.is_empty() {
                    stamped.insert(VERIFIED, Node::Value(Value::Array(verified)));
                }
            }
            if let Some(browser) = browser {
                stamped.insert(BROWSER, Node::Value(Value::from(browser)));
            }
        }
    }
    if stamped.is_empty() {
        return;
    }
    if let Some(context) = event.fields_mut().open_or_create("context") {
        context.insert(BRAID_CONTEXT, Node::Obj(stamped));
    }
}

/// The identifier types the proofs a client sent (`sent`, its `context.braid`) prove.
fn verified(event: &Event<'_>, secret: &[u8], sent: Option<&Node<'_>>) -> Vec<Value> {
    let proofs = sent.and_then(Node::as_object);
    let proof = |name: &str| proofs.as_ref().and_then(|p| p.text(name));
    let mut verified = Vec::new();
    if let Some(hash) = proof(USER_HASH)
        && let Some(user) = event.id_field("userId")
        && proves(secret, &IdType::UserId, &[user.as_ref()], &hash)
    {
        verified.push(Value::from(IdType::UserId.as_str()));
    }
    if let Some(hash) = proof(EMAIL_HASH) {
        let emails = emails(event);
        let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
        if proves(secret, &IdType::Email, &emails, &hash) {
            verified.push(Value::from(IdType::Email.as_str()));
        }
    }
    verified
}

/// Whether `hash` proves every one of `values` (at least one): they normalise to one value
/// whose [`identity_hash`] it is. Compared in constant time.
fn proves(secret: &[u8], kind: &IdType, values: &[&str], hash: &str) -> bool {
    let mut normalised = values.iter().map(|v| normalize(kind, v, None));
    let Some(Some(first)) = normalised.next() else {
        return false;
    };
    if !normalised.all(|v| v.as_deref() == Some(first.as_str())) {
        return false;
    }
    let Some(expected) = hex::decode(hash.trim()) else {
        return false;
    };
    let mut mac = mac::keyed(secret);
    mac.update(first.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

/// The emails an event carries, where unify reads them (`traits.email`, `context.traits.email`).
fn emails(event: &Event<'_>) -> Vec<String> {
    let mut out = Vec::new();
    event.for_each_traits(|traits| {
        if let Some(email) = traits.get("email").and_then(id_text) {
            out.push(email.into_owned());
        }
    });
    out
}

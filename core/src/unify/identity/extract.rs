//! The identifiers an event carries: `userId`, `anonymousId`, `previousId` (alias), email and
//! phone in `traits` or `context.traits`, `context.device.id` and `advertisingId`,
//! `context.externalIds`, and configured traits.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::id::{IdType, Identifier};
use super::normalize::normalize;
use super::rules::IdentityRules;
use crate::event::{BRAID_CONTEXT, BROWSER, Event, EventType, TRUSTED, VERIFIED, id_text};
use crate::json::Node;

/// Why an identifier of an event was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not a valid value for its type (an email without `@`, a phone that is not E.164).
    Invalid,
    /// A blocked value (the pattern that matched).
    Blocked(String),
    /// Linking it would put two values of a unique type in one profile.
    Unique,
    /// Linking it would exceed the type's limit of values per profile.
    Limit(usize),
    /// Linking it would exceed the limit of identifiers per profile, of all types.
    TooManyIdentifiers(usize),
    /// Linking it would merge a profile past the limit of merges per profile.
    TooManyMerges(usize),
    /// Strict identity: an identified identifier the event does not prove.
    Unverified,
}

/// An identifier of an event that was not used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Its type.
    pub kind: IdType,
    /// Its value as sent (normalised when it could be).
    pub value: String,
    /// Why.
    pub reason: DropReason,
}

/// What an event says about identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Usable identifiers, normalised, without duplicates.
    pub ids: Vec<Identifier>,
    /// An alias's `previousId`, typed by the graph (a known user id, else an anonymous id).
    pub previous_id: Option<String>,
    /// Identifiers that were not usable.
    pub dropped: Vec<Dropped>,
    /// Those of `ids` the event proves (`context.braid`, `docs/trust.md`): every one for a
    /// trusted event, else those of the types its proofs verified.
    pub proven: Vec<Identifier>,
    /// The browser credential's identifier, when collection stamped one.
    pub browser: Option<Identifier>,
    /// Who sent it ([`sender_of`]), the scope of its `messageId` (a `messageId` another sender
    /// reuses is that sender's event, not a copy): set by the unifier when it applies the event
    /// (0 until then), as only applying needs it.
    pub sender: u64,
}

impl Extracted {
    fn add(&mut self, kind: IdType, raw: &str, rules: &IdentityRules) {
        let Some(value) = normalize(&kind, raw, rules.default_country.as_deref()) else {
            if !raw.trim().is_empty() {
                self.dropped.push(Dropped {
                    kind,
                    value: raw.to_owned(),
                    reason: DropReason::Invalid,
                });
            }
            return;
        };
        if let Some(pattern) = rules.blocked_by(&kind, &value) {
            self.dropped.push(Dropped {
                kind,
                value,
                reason: DropReason::Blocked(pattern),
            });
            return;
        }
        let id = Identifier::new(kind, value);
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
    }
}

/// Who sent an event, the scope of its `messageId` (for unify's dedupe and compaction's): the
/// first 8 bytes of SHA-256 over its `userId`, a unit separator, and its `anonymousId` (each as
/// sent, empty when absent), the same on every platform and in every store.
pub fn sender_of(event: &Event<'_>) -> u64 {
    let mut hash = Sha256::new();
    hash.update(event.id_field("userId").unwrap_or_default().as_bytes());
    hash.update([0x1f]);
    hash.update(event.id_field("anonymousId").unwrap_or_default().as_bytes());
    let digest = hash.finalize();
    let mut first = [0; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(first)
}

/// The identifiers of one event (a lake line).
pub fn extract(event: &Event<'_>, rules: &IdentityRules) -> Extracted {
    let mut out = Extracted::default();
    if let Some(user) = event.id_field("userId") {
        out.add(IdType::UserId, &user, rules);
    }
    if let Some(anonymous) = event.id_field("anonymousId") {
        out.add(IdType::AnonymousId, &anonymous, rules);
    }
    if event.kind() == EventType::Alias {
        out.previous_id = event
            .id_field("previousId")
            .filter(|p| rules.blocked_by(&IdType::UserId, p.trim()).is_none())
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
    }
    event.for_each_traits(|traits| {
        let text = |name: &str| traits.get(name).and_then(id_text);
        if let Some(email) = text("email") {
            out.add(IdType::Email, &email, rules);
        }
        if let Some(phone) = text("phone") {
            out.add(IdType::Phone, &phone, rules);
        }
        for (name, kind) in &rules.trait_identifiers {
            if let Some(value) = text(name) {
                out.add(IdType::parse(kind), &value, rules);
            }
        }
    });
    let context = event.object("context");
    let Some(context) = context.as_ref() else {
        return out;
    };
    let stamp = context.get(BRAID_CONTEXT).and_then(Node::as_object);
    let mut trusted = false;
    let mut verified = Vec::new();
    if let Some(stamp) = stamp.as_deref() {
        trusted = stamp
            .get(TRUSTED)
            .is_some_and(|t| t.to_value() == Value::Bool(true));
        if let Some(Value::Array(types)) = stamp.get(VERIFIED).map(Node::to_value) {
            verified = types
                .iter()
                .filter_map(Value::as_str)
                .map(IdType::parse)
                .collect();
        }
        if let Some(browser) = stamp.text(BROWSER) {
            out.add(IdType::Browser, &browser, rules);
            out.browser = out
                .ids
                .iter()
                .find(|id| id.kind == IdType::Browser)
                .cloned();
        }
    }
    if let Some(device) = context.get("device").and_then(Node::as_object) {
        for field in ["id", "advertisingId"] {
            if let Some(id) = device.get(field).and_then(id_text) {
                out.add(IdType::DeviceId, &id, rules);
            }
        }
    }
    // Rare, and an array: read as a value.
    if let Some(Value::Array(external)) = context.get("externalIds").map(Node::to_value) {
        let text = |value: Option<&Value>| match value? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        for entry in &external {
            if let (Some(id), Some(kind)) = (
                text(entry.get("id")),
                entry.get("type").and_then(Value::as_str),
            ) {
                out.add(IdType::parse(kind), &id, rules);
            }
        }
    }
    out.proven = out
        .ids
        .iter()
        .filter(|id| trusted || verified.contains(&id.kind))
        .cloned()
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ids(event: &Value, rules: &IdentityRules) -> Extracted {
        let line = event.to_string();
        extract(&Event::from_lake_line(&line).unwrap(), rules)
    }

    #[test]
    fn finds_every_kind_of_identifier() {
        let mut rules = IdentityRules::default();
        rules.default_country = Some("33".into());
        rules
            .trait_identifiers
            .insert("loyalty_number".into(), "loyalty".into());
        let event = json!({
            "type": "identify", "userId": 42, "anonymousId": "a-1",
            "traits": {"email": " Jane@Shop.EXAMPLE ", "phone": "06 12 34 56 78", "loyalty_number": "L9"},
            "context": {"traits": {"email": "jane@shop.example"},
                        "device": {"id": "dev-1", "advertisingId": "ad-1"},
                        "externalIds": [{"id": "C-7", "type": "CRM_ID", "collection": "users"}]}
        });
        let out = ids(&event, &rules);
        let texts: Vec<String> = out.ids.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "user_id:42",
                "anonymous_id:a-1",
                "email:jane@shop.example",
                "phone:+33612345678",
                "loyalty:L9",
                "device_id:dev-1",
                "device_id:ad-1",
                "crm_id:C-7"
            ]
        );
        assert!(out.dropped.is_empty());
    }

    #[test]
    fn drops_placeholders_and_invalid_values_with_a_reason() {
        let rules = IdentityRules::default();
        let event = json!({"type": "track", "userId": "undefined", "anonymousId": "a",
                           "context": {"traits": {"email": "not-an-email"}}});
        let out = ids(&event, &rules);
        assert_eq!(out.ids, [Identifier::new(IdType::AnonymousId, "a")]);
        assert_eq!(out.dropped.len(), 2);
        assert!(matches!(out.dropped[0].reason, DropReason::Blocked(_)));
        assert_eq!(out.dropped[1].reason, DropReason::Invalid);
    }

    #[test]
    fn aliases_carry_their_previous_id() {
        let rules = IdentityRules::default();
        let event = json!({"type": "alias", "userId": "u", "previousId": "anon-7"});
        assert_eq!(ids(&event, &rules).previous_id.as_deref(), Some("anon-7"));
    }
}

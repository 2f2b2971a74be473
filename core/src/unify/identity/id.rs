//! Identifiers: `type:value` pairs.

use std::fmt;

/// The type of an identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdType {
    /// `userId`: the customer's own id for a known user.
    UserId,
    /// `anonymousId`: a device or browser before login.
    AnonymousId,
    /// An email address (traits or `context.traits`).
    Email,
    /// A phone number, in E.164.
    Phone,
    /// `context.device.id` or an advertising id.
    DeviceId,
    /// A browser's credential cookie, by its id (`context.braid.browser`, `docs/trust.md`):
    /// written by collection only, so no client can name another browser's.
    Browser,
    /// A type from `context.externalIds` or a configured trait (`loyalty`, `crm_id`).
    Custom(String),
}

impl IdType {
    /// The name (`user_id`, `email`, or the custom name).
    pub fn as_str(&self) -> &str {
        match self {
            IdType::UserId => "user_id",
            IdType::AnonymousId => "anonymous_id",
            IdType::Email => "email",
            IdType::Phone => "phone",
            IdType::DeviceId => "device_id",
            IdType::Browser => "browser",
            IdType::Custom(name) => name,
        }
    }

    /// Whether it names a known person (a user id, an email, a phone, a custom id), as opposed
    /// to a device or a browser: what a client must prove before it may read such a profile
    /// (`docs/trust.md`).
    pub fn is_identified(&self) -> bool {
        !matches!(
            self,
            IdType::AnonymousId | IdType::DeviceId | IdType::Browser
        )
    }

    /// The type named `name` (custom names are lower-cased).
    pub fn parse(name: &str) -> IdType {
        match name {
            "user_id" => IdType::UserId,
            "anonymous_id" => IdType::AnonymousId,
            "email" => IdType::Email,
            "phone" => IdType::Phone,
            "device_id" => IdType::DeviceId,
            "browser" => IdType::Browser,
            other => IdType::Custom(other.trim().to_ascii_lowercase()),
        }
    }
}

/// One identifier of a person.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier {
    /// Its type.
    pub kind: IdType,
    /// Its value, normalised for its type.
    pub value: String,
}

impl Identifier {
    /// An identifier (the value is taken as already normalised).
    pub fn new(kind: IdType, value: impl Into<String>) -> Identifier {
        Identifier {
            kind,
            value: value.into(),
        }
    }

    /// Parses `type:value`.
    pub fn parse(text: &str) -> Option<Identifier> {
        let (kind, value) = text.split_once(':')?;
        (!kind.is_empty() && !value.is_empty()).then(|| Identifier::new(IdType::parse(kind), value))
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_type_colon_value() {
        for text in ["user_id:42", "email:a@b.c", "loyalty:L-1:x"] {
            assert_eq!(Identifier::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Identifier::parse("CRM:7").unwrap().kind,
            IdType::Custom("crm".into())
        );
        assert!(Identifier::parse("nocolon").is_none());
        assert!(Identifier::parse("email:").is_none());
    }
}

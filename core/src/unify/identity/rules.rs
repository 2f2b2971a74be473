//! The rules that decide whether identifiers may be linked: per type, a priority, a limit of
//! distinct values per profile (optionally within a time window), blocked values, and whether the
//! type is unique (two different values never share a profile).

use std::collections::BTreeMap;

use regex_lite::Regex;
use serde::{Deserialize, Serialize};

use super::id::{IdType, Identifier};
use super::normalize::normalize;

/// The rule for one identifier type.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TypeRule {
    /// Lower is stronger; when a link breaks a rule, the event's weakest identifier is dropped.
    pub priority: u32,
    /// Most distinct values per profile.
    pub limit: usize,
    /// Count only the values first seen within this many days of the event (none: all).
    pub limit_window_days: Option<i64>,
    /// Never two different values in one profile, whatever the limit.
    pub unique: bool,
    /// Values that are never identifiers (regular expressions matched against the whole,
    /// normalised value, case-insensitively), in addition to the common placeholders.
    pub blocked: Vec<String>,
}

impl Default for TypeRule {
    fn default() -> Self {
        TypeRule {
            priority: 50,
            limit: 5,
            limit_window_days: None,
            unique: false,
            blocked: Vec::new(),
        }
    }
}

/// Placeholder values clients send instead of an identifier (matched case-insensitively).
pub const PLACEHOLDERS: [&str; 12] = [
    "null",
    "undefined",
    "anonymous",
    "none",
    "nil",
    "n/a",
    "unknown",
    "0",
    "-1",
    "[object object]",
    "false",
    "true",
];

/// How a blocked placeholder is named in drop records.
pub const DEFAULT_BLOCKED: &str = "placeholder";

/// A rule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A blocked-value pattern is not a regular expression.
    #[error("identity.types.{kind}.blocked: {pattern:?} is not a regular expression: {reason}")]
    BadPattern {
        /// The identifier type.
        kind: String,
        /// The pattern.
        pattern: String,
        /// What the regular-expression parser said.
        reason: String,
    },
}

/// Every rule of identity resolution (`[unify.identity]` in `braid.toml`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityRules {
    /// Rules by type name (`user_id`, `email`, `phone`, `device_id`, `anonymous_id`, custom).
    pub types: BTreeMap<String, TypeRule>,
    /// The calling code for national phone numbers (`33`), if any.
    pub default_country: Option<String>,
    /// Traits that are identifiers: trait name → type (`loyalty_number = "loyalty"`).
    pub trait_identifiers: BTreeMap<String, String>,
    /// How long a `messageId` is remembered to ignore redeliveries.
    pub dedupe_window_days: i64,
    /// Most identifiers per profile, of all types together (an event that would link more
    /// drops its weakest identifiers, as a type's limit does).
    pub max_identifiers: usize,
    /// Most merges per profile, counting those of the profiles merged into it (an event that
    /// would merge more drops its weakest identifiers until it merges nothing more).
    pub max_merges: usize,
    /// Strict identity (a workspace's `verify_identity`, set from `[[workspaces]]`, not here):
    /// an identified identifier the event does not prove is left out, and such an event does
    /// not change the traits of an identified profile.
    #[serde(skip_deserializing, skip_serializing_if = "std::ops::Not::not")]
    pub verify_identity: bool,
    #[serde(skip)]
    compiled: Option<Compiled>,
}

#[derive(Clone, Debug)]
struct Compiled {
    by_type: BTreeMap<String, Vec<(String, Regex)>>,
}

/// The built-in rules: `user_id` unique (limit 1) and strongest, then email, phone, device id;
/// custom types next; `anonymous_id`, then `browser`, weakest. Limits 5 (a person's browsers:
/// 10).
fn default_types() -> BTreeMap<String, TypeRule> {
    let rule = |priority, limit, unique| TypeRule {
        priority,
        limit,
        unique,
        ..TypeRule::default()
    };
    [
        ("user_id", rule(1, 1, true)),
        ("email", rule(2, 5, false)),
        ("phone", rule(3, 5, false)),
        ("device_id", rule(4, 5, false)),
        ("anonymous_id", rule(90, 5, false)),
        ("browser", rule(95, 10, false)),
    ]
    .into_iter()
    .map(|(name, rule)| (name.to_owned(), rule))
    .collect()
}

impl Default for IdentityRules {
    fn default() -> Self {
        let rules = IdentityRules {
            types: default_types(),
            default_country: None,
            trait_identifiers: BTreeMap::new(),
            dedupe_window_days: 7,
            max_identifiers: 1_000,
            max_merges: 100,
            verify_identity: false,
            compiled: None,
        };
        // The built-in patterns compile: the fallback is never used.
        rules.clone().compiled().unwrap_or(rules)
    }
}

impl IdentityRules {
    /// Compiles the blocked-value patterns; types the configuration does not mention keep
    /// their built-in rule.
    ///
    /// # Errors
    ///
    /// [`RulesError::BadPattern`] naming the type and the pattern that is not a valid regular
    /// expression.
    pub fn compiled(mut self) -> Result<IdentityRules, RulesError> {
        for (name, rule) in default_types() {
            self.types.entry(name).or_insert(rule);
        }
        let full = |pattern: &str| Regex::new(&format!("(?i)^(?:{pattern})$"));
        let mut by_type = BTreeMap::new();
        for (name, rule) in &self.types {
            let mut patterns = Vec::new();
            for pattern in &rule.blocked {
                let regex = full(pattern).map_err(|e| RulesError::BadPattern {
                    kind: name.clone(),
                    pattern: pattern.clone(),
                    reason: e.to_string(),
                })?;
                patterns.push((pattern.clone(), regex));
            }
            by_type.insert(name.clone(), patterns);
        }
        self.compiled = Some(Compiled { by_type });
        Ok(self)
    }

    /// The rule for a type (custom types without one get the default rule).
    pub fn rule(&self, kind: &IdType) -> &TypeRule {
        static DEFAULT: TypeRule = TypeRule {
            priority: 50,
            limit: 5,
            limit_window_days: None,
            unique: false,
            blocked: Vec::new(),
        };
        self.types.get(kind.as_str()).unwrap_or(&DEFAULT)
    }

    /// `id` as events carry it: its value normalised for its type, with the configured
    /// calling code (`None` when it cannot be an identifier).
    pub fn normalized(&self, id: &Identifier) -> Option<Identifier> {
        let value = normalize(&id.kind, &id.value, self.default_country.as_deref())?;
        Some(Identifier::new(id.kind.clone(), value))
    }

    /// The priority of a type (lower is stronger).
    pub fn priority(&self, kind: &IdType) -> u32 {
        self.types.get(kind.as_str()).map_or(50, |r| r.priority)
    }

    /// The pattern that blocks `value` for `kind`, if one does.
    pub fn blocked_by(&self, kind: &IdType, value: &str) -> Option<String> {
        // Placeholders are short: compare those without a regular expression.
        if value.len() <= 15 && PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(value)) {
            return Some(DEFAULT_BLOCKED.to_owned());
        }
        self.compiled
            .as_ref()?
            .by_type
            .get(kind.as_str())?
            .iter()
            .find(|(_, regex)| regex.is_match(value))
            .map(|(pattern, _)| pattern.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_placeholders_and_configured_values() {
        let mut rules = IdentityRules::default();
        rules.types.get_mut("email").unwrap().blocked = vec![r".*@example\.com".into()];
        let rules = rules.compiled().unwrap();
        for placeholder in [
            "null",
            "Undefined",
            "[object Object]",
            "0",
            "-1",
            "anonymous",
        ] {
            assert!(
                rules.blocked_by(&IdType::UserId, placeholder).is_some(),
                "{placeholder}"
            );
        }
        assert!(rules.blocked_by(&IdType::UserId, "10").is_none());
        assert!(
            rules
                .blocked_by(&IdType::Email, "test@example.com")
                .is_some()
        );
        assert!(
            rules
                .blocked_by(&IdType::Email, "jane@shop.example")
                .is_none()
        );
        assert!(
            rules
                .blocked_by(&IdType::UserId, "test@example.com")
                .is_none()
        );
    }

    #[test]
    fn bad_patterns_are_named() {
        let mut rules = IdentityRules::default();
        rules.types.get_mut("phone").unwrap().blocked = vec!["(".into()];
        let error = rules.compiled().unwrap_err().to_string();
        assert!(error.contains("identity.types.phone.blocked"), "{error}");
    }

    #[test]
    fn configured_types_keep_the_other_defaults() {
        let rules: IdentityRules = serde_json::from_value(
            serde_json::json!({"types": {"email": {"priority": 2, "limit": 3}}}),
        )
        .unwrap();
        let rules = rules.compiled().unwrap();
        assert_eq!(rules.rule(&IdType::Email).limit, 3);
        assert!(
            rules.rule(&IdType::UserId).unique,
            "user_id keeps its built-in rule"
        );
    }

    #[test]
    fn defaults_rank_user_id_first_and_anonymous_id_last() {
        let rules = IdentityRules::default();
        assert!(rules.rule(&IdType::UserId).unique);
        assert_eq!(rules.rule(&IdType::UserId).limit, 1);
        assert_eq!(rules.rule(&IdType::Email).limit, 5);
        assert!(rules.priority(&IdType::UserId) < rules.priority(&IdType::Email));
        assert!(
            rules.priority(&IdType::Custom("crm".into())) < rules.priority(&IdType::AnonymousId)
        );
    }
}

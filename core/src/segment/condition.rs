//! An audience's condition tree, read from JSON (or TOML, which `braid.toml` writes as inline
//! tables of the same shape), or from its text form ([`super::text`], read into this shape
//! first), with errors that name the place in the tree.
//!
//! | form | meaning |
//! |---|---|
//! | `{"and": [c, ...]}`, `{"or": [c, ...]}`, `{"not": c}` | combinations |
//! | `{"trait": "plan", "op": "=", "value": "pro"}` | a trait compared (`=`, `!=`, `<`, `<=`, `>`, `>=`, `contains`, `starts_with`, `in`, `exists`) |
//! | `{"trait": "signed_up_at", "op": "within_last_days", "value": 7}` | a date trait in the last N days (also `before` / `after` a time) |
//! | `{"computed": "orders_90d", "op": ">=", "value": 3}` | a computed trait compared |
//! | `{"has_identifier": "email"}` | the profile has an identifier of a type |
//! | `{"consent": "marketing"}` | the latest consent preferences grant a category |
//! | `{"performed": "Order Completed", "where": [...], "at_least": 2, "window": "30d"}` | counted events (`at_least`, `at_most`, `exactly`; windows as computed traits: `30d`, `12h`, `30d..90d`, `all`) |
//! | `{"not_performed": "Order Completed", "window": "30d"}` | none in the window (`at_most: 0`) |
//! | `{"performed": "Product Viewed", "then": "Order Completed", "within": "1h", "window": "30d"}` | a funnel: completions (a second step no later than `within` after a first) counted in the window; `then_where` filters the second step |
//! | `{"member": "vip"}` | member of another audience (cycles are refused) |

use serde_json::{Map, Value};

use crate::timestamp;
use crate::unify::computed::{
    Comparison, ComputedOp, ComputedTrait, Filter, MAX_WINDOW_DAYS, Span, Then, Window,
};

/// Deepest nesting of a condition tree.
pub const MAX_DEPTH: usize = 16;
/// Most conditions (nodes) in one tree.
pub const MAX_NODES: usize = 200;

/// One condition of an audience.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// All hold.
    And(Vec<Condition>),
    /// One holds.
    Or(Vec<Condition>),
    /// It does not hold.
    Not(Box<Condition>),
    /// A trait (a dotted path into traits) passes a test.
    Trait {
        /// The trait.
        name: String,
        /// The test.
        test: Test,
    },
    /// A computed trait compares so.
    Computed {
        /// Its name.
        name: String,
        /// The comparison.
        op: Comparison,
        /// The constant.
        value: Value,
        /// Its position among the series, once compiled.
        slot: Option<u16>,
    },
    /// The profile has an identifier of this type.
    HasIdentifier(String),
    /// The latest consent preferences grant this category.
    Consent(String),
    /// Events of a name (with filters), or a funnel's completions, counted in a window compare
    /// so.
    Performed {
        /// What is counted: a series named `audience:<key>:<n>` (or, in a preview, the saved
        /// series that counts the same).
        def: ComputedTrait,
        /// The count's test.
        count: Count,
        /// The position of its series, once compiled (none: the event counts every profile
        /// keeps, in a preview).
        slot: Option<u16>,
    },
    /// Member of another audience.
    Member(String),
}

/// A test of a trait's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// A comparison with a constant.
    Compare(Comparison, Value),
    /// A time within the last N days (up to now).
    WithinLastDays(u32),
    /// A time before this one (ms).
    Before(i64),
    /// A time after this one (ms).
    After(i64),
}

/// A test of a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// At least n.
    AtLeast(u64),
    /// At most n.
    AtMost(u64),
    /// Exactly n.
    Exactly(u64),
}

impl Count {
    /// Whether `n` passes.
    pub fn holds(self, n: u64) -> bool {
        match self {
            Count::AtLeast(m) => n >= m,
            Count::AtMost(m) => n <= m,
            Count::Exactly(m) => n == m,
        }
    }

    fn words(self) -> String {
        let times = |n: u64| {
            if n == 1 {
                "once".to_owned()
            } else {
                format!("{n} times")
            }
        };
        match self {
            Count::AtLeast(1) => String::new(),
            Count::AtMost(0) => "never".to_owned(),
            Count::AtLeast(n) => format!("at least {}", times(n)),
            Count::AtMost(n) => format!("at most {}", times(n)),
            Count::Exactly(n) => format!("exactly {}", times(n)),
        }
    }
}

/// A condition that cannot be read: where in the tree, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {why}")]
pub struct ConditionError {
    /// The place in the tree (`when.and[1].window`).
    pub at: String,
    /// What is wrong.
    pub why: String,
}

/// Reads a condition tree. `root` names it in errors (`segment.audiences.vip.when`); event
/// conditions get series named `audience:<audience>:<n>`, pushed to `series`.
///
/// # Errors
///
/// The first problem found, with its place.
pub(super) fn parse(
    value: &Value,
    root: &str,
    audience: &str,
    series: &mut Vec<ComputedTrait>,
) -> Result<Condition, ConditionError> {
    let mut reader = Reader {
        audience,
        series,
        nodes: 0,
    };
    if let Value::String(text) = value {
        let tree = super::text::read(text, MAX_DEPTH).map_err(|e| {
            error(
                root,
                format!("at byte {} of the condition's text: {}", e.at, e.why),
            )
        })?;
        return reader.read(&tree, root, 0);
    }
    reader.read(value, root, 0)
}

struct Reader<'a> {
    audience: &'a str,
    series: &'a mut Vec<ComputedTrait>,
    nodes: usize,
}

fn error(at: &str, why: impl Into<String>) -> ConditionError {
    ConditionError {
        at: at.to_owned(),
        why: why.into(),
    }
}

const KINDS: &str =
    "and, or, not, trait, computed, has_identifier, consent, performed, not_performed, member";

impl Reader<'_> {
    fn read(&mut self, value: &Value, at: &str, depth: usize) -> Result<Condition, ConditionError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(error(
                at,
                format!("more than {MAX_NODES} conditions in one audience"),
            ));
        }
        if depth > MAX_DEPTH {
            return Err(error(at, format!("nested deeper than {MAX_DEPTH}")));
        }
        let Some(object) = value.as_object() else {
            return Err(error(
                at,
                format!("a condition is an object with one of: {KINDS}"),
            ));
        };
        let kind = [
            "and",
            "or",
            "not",
            "trait",
            "computed",
            "has_identifier",
            "consent",
            "performed",
            "not_performed",
            "member",
        ]
        .into_iter()
        .filter(|k| object.contains_key(*k))
        .collect::<Vec<_>>();
        let [kind] = kind.as_slice() else {
            return Err(error(
                at,
                format!(
                    "a condition has exactly one of: {KINDS} (found {})",
                    kind.len()
                ),
            ));
        };
        let field = |name: &str| format!("{at}.{name}");
        match *kind {
            "and" | "or" => self.combination(object, at, kind, depth),
            "not" => {
                only(object, at, &["not"])?;
                let inner = object.get("not").unwrap_or(&Value::Null);
                Ok(Condition::Not(Box::new(self.read(
                    inner,
                    &field("not"),
                    depth + 1,
                )?)))
            }
            "trait" => trait_condition(object, at),
            "computed" => {
                only(object, at, &["computed", "op", "value"])?;
                let name = text(object, "computed", at)?;
                let op = text(object, "op", at)?;
                let constant = object.get("value").cloned().unwrap_or(Value::Null);
                let op = comparison(&op, &constant, at)?;
                Ok(Condition::Computed {
                    name,
                    op,
                    value: constant,
                    slot: None,
                })
            }
            "has_identifier" => {
                only(object, at, &["has_identifier"])?;
                Ok(Condition::HasIdentifier(text(
                    object,
                    "has_identifier",
                    at,
                )?))
            }
            "consent" => {
                only(object, at, &["consent"])?;
                Ok(Condition::Consent(text(object, "consent", at)?))
            }
            "member" => {
                only(object, at, &["member"])?;
                Ok(Condition::Member(text(object, "member", at)?))
            }
            _ => self.performed(object, at, kind == &"not_performed"),
        }
    }

    fn combination(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        kind: &str,
        depth: usize,
    ) -> Result<Condition, ConditionError> {
        only(object, at, &[kind])?;
        let Some(items) = object.get(kind).and_then(Value::as_array) else {
            return Err(error(&format!("{at}.{kind}"), "a list of conditions"));
        };
        if items.is_empty() {
            return Err(error(&format!("{at}.{kind}"), "an empty list"));
        }
        let children = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.read(item, &format!("{at}.{kind}[{i}]"), depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if kind == "and" {
            Condition::And(children)
        } else {
            Condition::Or(children)
        })
    }

    fn performed(
        &mut self,
        object: &Map<String, Value>,
        at: &str,
        negated: bool,
    ) -> Result<Condition, ConditionError> {
        let field = |name: &str| format!("{at}.{name}");
        let kind = if negated {
            "not_performed"
        } else {
            "performed"
        };
        let counts: &[&str] = if negated {
            &[]
        } else {
            &["at_least", "at_most", "exactly"]
        };
        let mut allowed = vec![kind, "where", "window", "then", "then_where", "within"];
        allowed.extend_from_slice(counts);
        only(object, at, &allowed)?;
        let event = text(object, kind, at)?;
        let window = match object.get("window") {
            None => Window::AllTime,
            Some(Value::String(text)) => {
                Window::parse(text).map_err(|e| error(&field("window"), e.to_string()))?
            }
            Some(_) => return Err(error(&field("window"), "a window such as \"30d\"")),
        };
        if window == Window::Session {
            return Err(error(
                &field("window"),
                "event conditions count in days or hours, not sessions",
            ));
        }
        let then = if object.contains_key("then") {
            let within = match object.get("within") {
                Some(Value::String(text)) => {
                    Span::parse(text).map_err(|e| error(&field("within"), e.to_string()))?
                }
                _ => {
                    return Err(error(
                        &field("within"),
                        "a funnel's second step comes within a time, such as \"1h\"",
                    ));
                }
            };
            Some(Box::new(Then {
                event: text(object, "then", at)?,
                filters: filters(object.get("then_where"), &field("then_where"))?,
                within,
            }))
        } else {
            if let Some(key) = ["then_where", "within"]
                .into_iter()
                .find(|k| object.contains_key(*k))
            {
                return Err(error(&field(key), "only a funnel (with \"then\") has this"));
            }
            None
        };
        let filters = filters(object.get("where"), &field("where"))?;
        let given: Vec<&str> = counts
            .iter()
            .copied()
            .filter(|c| object.contains_key(*c))
            .collect();
        let count = match given.as_slice() {
            [] if negated => Count::AtMost(0),
            [] => Count::AtLeast(1),
            [one] => {
                let Some(n) = object.get(*one).and_then(Value::as_u64) else {
                    return Err(error(&field(one), "a whole number"));
                };
                match *one {
                    "at_least" => Count::AtLeast(n),
                    "at_most" => Count::AtMost(n),
                    _ => Count::Exactly(n),
                }
            }
            _ => return Err(error(at, "one of at_least, at_most, exactly")),
        };
        let def = ComputedTrait {
            name: format!("audience:{}:{}", self.audience, self.series.len()),
            event,
            op: ComputedOp::Count,
            property: String::new(),
            filters,
            window,
            then,
        };
        self.series.push(def.clone());
        Ok(Condition::Performed {
            def,
            count,
            slot: None,
        })
    }
}

/// A list of property filters, if given.
fn filters(value: Option<&Value>, at: &str) -> Result<Vec<Filter>, ConditionError> {
    match value {
        None => Ok(Vec::new()),
        Some(value) => serde_json::from_value::<Vec<Filter>>(value.clone())
            .map_err(|e| error(at, format!("a list of {{property, op, value}}: {e}"))),
    }
}

/// `{"trait": ..., "op": ..., "value": ...}`.
fn trait_condition(object: &Map<String, Value>, at: &str) -> Result<Condition, ConditionError> {
    let field = |name: &str| format!("{at}.{name}");
    only(object, at, &["trait", "op", "value"])?;
    let name = text(object, "trait", at)?;
    let op = text(object, "op", at)?;
    let constant = object.get("value").cloned().unwrap_or(Value::Null);
    let test = match op.as_str() {
        "within_last_days" => {
            let days = constant
                .as_u64()
                .filter(|d| (1..=u64::from(MAX_WINDOW_DAYS)).contains(d))
                .and_then(|d| u32::try_from(d).ok());
            let Some(days) = days else {
                return Err(error(
                    &field("value"),
                    format!("a number of days, 1 to {MAX_WINDOW_DAYS}"),
                ));
            };
            Test::WithinLastDays(days)
        }
        "before" | "after" => {
            let time = constant.as_str().and_then(|t| timestamp::parse(t).ok());
            let Some(time) = time else {
                return Err(error(
                    &field("value"),
                    "an ISO 8601 time, e.g. \"2026-01-01T00:00:00Z\"",
                ));
            };
            let ms = timestamp::unix_millis(time);
            if op == "before" {
                Test::Before(ms)
            } else {
                Test::After(ms)
            }
        }
        other => Test::Compare(comparison(other, &constant, at)?, constant),
    };
    Ok(Condition::Trait { name, test })
}

/// Refuses fields other than `allowed`.
fn only(object: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), ConditionError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(error(
            &format!("{at}.{unknown}"),
            format!("unknown field here (expected {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn text(object: &Map<String, Value>, name: &str, at: &str) -> Result<String, ConditionError> {
    match object.get(name) {
        Some(Value::String(text)) if !text.is_empty() && text.len() <= 200 => Ok(text.clone()),
        _ => Err(error(
            &format!("{at}.{name}"),
            "a text of 1 to 200 characters",
        )),
    }
}

fn comparison(op: &str, constant: &Value, at: &str) -> Result<Comparison, ConditionError> {
    let Some(op) = Comparison::parse(op) else {
        return Err(error(
            &format!("{at}.op"),
            format!(
                "{op:?} is not an operator (=, !=, <, <=, >, >=, contains, starts_with, in, exists, within_last_days, before, after)"
            ),
        ));
    };
    if op == Comparison::In && !constant.is_array() {
        return Err(error(&format!("{at}.value"), "\"in\" compares with a list"));
    }
    if op != Comparison::Exists && constant.is_null() {
        return Err(error(&format!("{at}.value"), "a constant to compare with"));
    }
    Ok(op)
}

impl Condition {
    /// The condition in words, as explanations and reasons show it.
    pub fn text(&self) -> String {
        match self {
            Condition::And(_) => "all of".to_owned(),
            Condition::Or(_) => "any of".to_owned(),
            Condition::Not(_) => "not".to_owned(),
            Condition::Trait { name, test } => match test {
                Test::Compare(Comparison::Exists, _) => format!("trait {name} exists"),
                Test::Compare(op, value) => format!("trait {name} {} {value}", op.as_str()),
                Test::WithinLastDays(n) => format!("trait {name} within the last {n} days"),
                Test::Before(ms) => format!("trait {name} before {}", time_text(*ms)),
                Test::After(ms) => format!("trait {name} after {}", time_text(*ms)),
            },
            Condition::Computed {
                name, op, value, ..
            } => {
                format!("computed {name} {} {value}", op.as_str())
            }
            Condition::HasIdentifier(kind) => format!("has an identifier of type {kind}"),
            Condition::Consent(category) => format!("consents to {category}"),
            Condition::Performed { def, count, .. } => {
                let mut out = if *count == Count::AtMost(0) {
                    "did not perform ".to_owned()
                } else {
                    "performed ".to_owned()
                };
                def.push_events(&mut out);
                let count = if *count == Count::AtMost(0) {
                    String::new()
                } else {
                    count.words()
                };
                if !count.is_empty() {
                    out.push(' ');
                    out.push_str(&count);
                }
                out.push(' ');
                out.push_str(&def.window.words());
                out
            }
            Condition::Member(audience) => format!("member of {audience}"),
        }
    }

    /// Whether it is one condition (not a combination or a negation).
    pub fn is_leaf(&self) -> bool {
        !matches!(
            self,
            Condition::And(_) | Condition::Or(_) | Condition::Not(_)
        )
    }

    /// Its leaf conditions in words, in the order of the tree.
    pub fn leaf_texts(&self, out: &mut Vec<String>) {
        match self {
            Condition::And(children) | Condition::Or(children) => {
                for child in children {
                    child.leaf_texts(out);
                }
            }
            Condition::Not(inner) => inner.leaf_texts(out),
            leaf => out.push(leaf.text()),
        }
    }

    /// The audiences it names (`member`).
    pub fn members(&self, out: &mut Vec<String>) {
        match self {
            Condition::And(children) | Condition::Or(children) => {
                for child in children {
                    child.members(out);
                }
            }
            Condition::Not(inner) => inner.members(out),
            Condition::Member(key) => out.push(key.clone()),
            _ => {}
        }
    }
}

fn time_text(ms: i64) -> String {
    timestamp::from_unix_millis(ms).map_or_else(|| ms.to_string(), timestamp::format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: &Value) -> Result<(Condition, Vec<ComputedTrait>), ConditionError> {
        let mut series = Vec::new();
        let condition = parse(value, "when", "a", &mut series)?;
        Ok((condition, series))
    }

    #[test]
    fn a_tree_reads_with_its_event_series() {
        let (condition, series) = read(&json!({"and": [
            {"trait": "plan", "op": "=", "value": "pro"},
            {"performed": "Order Completed", "at_least": 2, "window": "30d",
             "where": [{"property": "total", "op": ">", "value": 10}]},
            {"not": {"member": "churned"}},
            {"not_performed": "App Opened", "window": "7d"}
        ]}))
        .unwrap();
        let Condition::And(children) = &condition else {
            panic!("{condition:?}")
        };
        assert_eq!(children.len(), 4);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].name, "audience:a:0");
        assert_eq!(series[1].window, Window::Days(7));
        assert_eq!(
            children[1].text(),
            "performed Order Completed where total > 10 at least 2 times in the last 30 days"
        );
        assert_eq!(
            children[3].text(),
            "did not perform App Opened in the last 7 days"
        );
        let mut members = Vec::new();
        condition.members(&mut members);
        assert_eq!(members, ["churned"]);
    }

    #[test]
    fn errors_name_the_place() {
        let cases = [
            (
                json!({"and": [{"trait": "plan", "op": "~", "value": 1}]}),
                "when.and[0].op",
            ),
            (json!({"or": []}), "when.or"),
            (json!({"performed": "X", "window": "400d"}), "when.window"),
            (json!({"performed": "X", "at_least": -1}), "when.at_least"),
            (
                json!({"performed": "X", "at_least": 1, "at_most": 2}),
                "when",
            ),
            (json!({"trait": "x", "op": "in", "value": 1}), "when.value"),
            (
                json!({"trait": "x", "op": "before", "value": "soon"}),
                "when.value",
            ),
            (json!({"member": "x", "extra": 1}), "when.extra"),
            (json!({"performed": "A", "then": "B"}), "when.within"),
            (
                json!({"performed": "A", "then": "B", "within": "40d"}),
                "when.within",
            ),
            (json!({"performed": "A", "within": "1h"}), "when.within"),
            (
                json!({"performed": "A", "then": "B", "within": "1h", "then_where": [1]}),
                "when.then_where",
            ),
            (
                json!({"performed": "A", "then": "", "within": "1h"}),
                "when.then",
            ),
            (json!({"trait": "x", "member": "y"}), "when"),
            (json!([1]), "when"),
            (
                json!({"not": {"not": {"consent": ""}}}),
                "when.not.not.consent",
            ),
        ];
        for (value, at) in cases {
            let error = read(&value).unwrap_err();
            assert_eq!(error.at, at, "{value}: {error}");
        }
    }

    #[test]
    fn trees_are_bounded() {
        let mut deep = json!({"member": "x"});
        for _ in 0..=MAX_DEPTH {
            deep = json!({"not": deep});
        }
        assert!(read(&deep).unwrap_err().why.contains("deeper"));
        let wide: Vec<Value> = (0..MAX_NODES).map(|_| json!({"member": "x"})).collect();
        assert!(
            read(&json!({"or": wide}))
                .unwrap_err()
                .why
                .contains("more than")
        );
    }
}

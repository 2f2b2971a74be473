//! Computed traits: values kept incrementally from a profile's events — counts, sums, minimums,
//! maximums, averages, first and last values, the most frequent value, unique lists and counts —
//! of one event name with property filters, over a window (all time, the last N days or hours,
//! or the current session).
//!
//! Each trait keeps partial results per bucket of time (a day in the workspace's time zone, or
//! an hour), so a sliding window needs no replay of events: its value at a time folds the
//! buckets inside the window, and buckets that no window can reach again are dropped. A window
//! of days moves at the start of each day, a window of hours at the start of each hour: that is
//! when a value changes with the clock alone ([`Series::next_change`]).
//!
//! The comparisons that filter events by property are the same rule as the audiences'
//! comparisons of traits ([`Comparison`]): one rule, so that a filter and a condition never
//! disagree about a value.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::sketch::Sketch;
use crate::timestamp;

/// Milliseconds in an hour.
pub const HOUR_MILLIS: i64 = 3_600_000;
/// Milliseconds in a day.
pub const DAY_MILLIS: i64 = 24 * HOUR_MILLIS;

/// Longest window of days (a year and a day, so "the last 365 days" crosses a leap year).
pub const MAX_WINDOW_DAYS: u32 = 366;
/// Longest window of hours (a week: longer windows count in days).
pub const MAX_WINDOW_HOURS: u32 = 168;
/// Most distinct values a unique list keeps (the latest seen).
pub const MAX_UNIQUE_LIST: usize = 100;
/// Most distinct values a unique count counts exactly; past it the count is a lower bound,
/// shown as approximate.
pub const MAX_UNIQUE_COUNT: usize = 1_000;
/// Most distinct values a most-frequent trait counts per bucket (the Space-Saving algorithm,
/// as for most-frequent survivorship).
pub const MAX_FREQUENT_PER_BUCKET: usize = 16;
/// Longest value, in bytes of JSON, that unique and most-frequent traits count: longer values
/// are not counted (an id or a category is short; a free text is not a category).
pub const MAX_COUNTED_VALUE_BYTES: usize = 128;
/// Most computed traits (declared ones and those audiences need) per workspace.
pub const MAX_COMPUTED: usize = 500;
/// Longest time a funnel's second step may follow its first, in days.
pub const MAX_STEP_DAYS: i64 = 30;
/// Most times of each funnel step a bucket keeps (the latest): a funnel counts at most this many
/// completions per day (or hour) of its window, and past it its count is a lower bound.
pub const MAX_STEP_TIMES: usize = 32;

/// What a computed trait computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputedOp {
    /// How many events.
    Count,
    /// The sum of a numeric property.
    Sum,
    /// The smallest value of a numeric property.
    Min,
    /// The largest value of a numeric property.
    Max,
    /// The mean of a numeric property (kept as a sum and a count).
    Avg,
    /// The property's value in the earliest event.
    First,
    /// The property's value in the latest event.
    Last,
    /// The property's most frequent value (ties: the smallest in JSON text order).
    MostFrequent,
    /// The property's distinct values, sorted by their JSON text (at most
    /// [`MAX_UNIQUE_LIST`], the latest seen).
    UniqueList,
    /// How many distinct values the property took (exact up to [`MAX_UNIQUE_COUNT`]).
    UniqueCount,
}

impl ComputedOp {
    /// Whether the op reads a property (all but `count`).
    pub fn reads_property(self) -> bool {
        self != ComputedOp::Count
    }

    /// The value of nothing counted: 0 for counts and sums, an empty list, else `null`.
    pub fn empty_value(self) -> Value {
        match self {
            ComputedOp::Count | ComputedOp::Sum | ComputedOp::UniqueCount => Value::from(0),
            ComputedOp::UniqueList => Value::Array(Vec::new()),
            _ => Value::Null,
        }
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            ComputedOp::Sum | ComputedOp::Min | ComputedOp::Max | ComputedOp::Avg
        )
    }

    fn is_unique(self) -> bool {
        matches!(self, ComputedOp::UniqueList | ComputedOp::UniqueCount)
    }
}

/// The window a computed trait or an event condition counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// Every event.
    AllTime,
    /// Today (in the workspace's time zone) and the `n - 1` days before.
    Days(u32),
    /// This hour and the `n - 1` hours before.
    Hours(u32),
    /// The days from `from` days ago up to `to` days ago, both counted (`Between(30, 89)`:
    /// "active 30 to 90 days ago"); 0 is today.
    Between(u32, u32),
    /// The profile's current session.
    Session,
}

/// A window that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "window {text:?}: {why} (write \"all\", \"session\", \"30d\", \"12h\" or \"30d..90d\"; days at most {MAX_WINDOW_DAYS}, hours at most {MAX_WINDOW_HOURS})"
)]
pub struct WindowError {
    text: String,
    why: &'static str,
}

impl Window {
    /// Reads `all`, `session`, `30d`, `12h`, or `30d..90d` (from 30 days ago, up to but not
    /// including 90 days ago).
    ///
    /// # Errors
    ///
    /// When the text is none of those, or a length is 0 or past the limits.
    pub fn parse(text: &str) -> Result<Window, WindowError> {
        let error = |why| WindowError {
            text: text.to_owned(),
            why,
        };
        let number = |part: &str, unit: char| -> Result<u32, WindowError> {
            let digits = part
                .strip_suffix(unit)
                .ok_or_else(|| error("a length ends in d (days) or h (hours)"))?;
            digits
                .parse::<u32>()
                .map_err(|_| error("a length is a whole number"))
        };
        match text.trim() {
            "all" => Ok(Window::AllTime),
            "session" => Ok(Window::Session),
            other => {
                if let Some((from, to)) = other.split_once("..") {
                    let (from, to) = (number(from.trim(), 'd')?, number(to.trim(), 'd')?);
                    if from >= to {
                        return Err(error("a range's start is nearer than its end"));
                    }
                    if to > MAX_WINDOW_DAYS {
                        return Err(error("past the longest window"));
                    }
                    return Ok(Window::Between(from, to - 1));
                }
                if other.ends_with('h') {
                    let n = number(other, 'h')?;
                    if n == 0 || n > MAX_WINDOW_HOURS {
                        return Err(error("hours out of range"));
                    }
                    return Ok(Window::Hours(n));
                }
                let n = number(other, 'd')?;
                if n == 0 || n > MAX_WINDOW_DAYS {
                    return Err(error("days out of range"));
                }
                Ok(Window::Days(n))
            }
        }
    }

    /// The window as [`Window::parse`] reads it.
    pub fn text(self) -> String {
        match self {
            Window::AllTime => "all".to_owned(),
            Window::Session => "session".to_owned(),
            Window::Days(n) => format!("{n}d"),
            Window::Hours(n) => format!("{n}h"),
            Window::Between(from, to) => format!("{from}d..{}d", to + 1),
        }
    }

    /// The window in words.
    pub fn words(self) -> String {
        match self {
            Window::AllTime => "ever".to_owned(),
            Window::Session => "in the current session".to_owned(),
            Window::Days(1) => "today".to_owned(),
            Window::Days(n) => format!("in the last {n} days"),
            Window::Hours(n) => format!("in the last {n} hours"),
            Window::Between(from, to) => format!("between {from} and {} days ago", to + 1),
        }
    }

    /// The size of its buckets, in milliseconds (0: one bucket).
    fn bucket_millis(self) -> i64 {
        match self {
            Window::Days(_) | Window::Between(..) => DAY_MILLIS,
            Window::Hours(_) => HOUR_MILLIS,
            Window::AllTime | Window::Session => 0,
        }
    }

    /// What its buckets are: all time, sessions, days, hours (windows of one kind can share
    /// buckets).
    fn kind(self) -> u8 {
        match self {
            Window::AllTime => 0,
            Window::Session => 1,
            Window::Days(_) | Window::Between(..) => 2,
            Window::Hours(_) => 3,
        }
    }

    /// A window of the kind of both that reaches as far back as the longer (days as a range
    /// from today).
    fn widest(self, other: Window) -> Window {
        let reach = |w: Window| match w {
            Window::Days(n) | Window::Hours(n) => n.saturating_sub(1),
            Window::Between(_, to) => to,
            Window::AllTime | Window::Session => 0,
        };
        match self {
            Window::Days(_) | Window::Between(..) => {
                Window::Between(0, reach(self).max(reach(other)))
            }
            Window::Hours(_) => Window::Hours(reach(self).max(reach(other)) + 1),
            Window::AllTime | Window::Session => self,
        }
    }

    /// The buckets inside the window when the current bucket is `current`: `(first, last)`,
    /// both included.
    fn range(self, current: i64) -> (i64, i64) {
        match self {
            Window::Days(n) | Window::Hours(n) => (current - i64::from(n) + 1, current),
            Window::Between(from, to) => (current - i64::from(to), current - i64::from(from)),
            Window::AllTime | Window::Session => (i64::MIN, i64::MAX),
        }
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Window::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A comparison of a value (a property, a trait) with a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Comparison {
    /// Equal (numbers by value: `1` equals `1.0`).
    #[serde(rename = "=")]
    Eq,
    /// Not equal, or absent.
    #[serde(rename = "!=")]
    Ne,
    /// Less than (numbers by value, strings in byte order, times as times).
    #[serde(rename = "<")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "<=")]
    Le,
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Greater than or equal.
    #[serde(rename = ">=")]
    Ge,
    /// A string that contains the text, or a list that holds the value.
    #[serde(rename = "contains")]
    Contains,
    /// A string that starts with the text.
    #[serde(rename = "starts_with")]
    StartsWith,
    /// Equal to one of a list's values.
    #[serde(rename = "in")]
    In,
    /// Present and not null (the constant is not read).
    #[serde(rename = "exists")]
    Exists,
}

impl Comparison {
    /// The operator as written in a condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::Ne => "!=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Contains => "contains",
            Comparison::StartsWith => "starts_with",
            Comparison::In => "in",
            Comparison::Exists => "exists",
        }
    }

    /// Reads an operator as written in a condition.
    pub fn parse(text: &str) -> Option<Comparison> {
        Some(match text {
            "=" | "==" => Comparison::Eq,
            "!=" => Comparison::Ne,
            "<" => Comparison::Lt,
            "<=" => Comparison::Le,
            ">" => Comparison::Gt,
            ">=" => Comparison::Ge,
            "contains" => Comparison::Contains,
            "starts_with" => Comparison::StartsWith,
            "in" => Comparison::In,
            "exists" => Comparison::Exists,
            _ => return None,
        })
    }

    /// Whether `value` (absent: `None`) compares so with `constant`.
    pub fn holds(self, value: Option<&Value>, constant: &Value) -> bool {
        // Absent (or null), only "not equal" holds.
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return self == Comparison::Ne;
        };
        match self {
            Comparison::Exists => true,
            Comparison::Eq => same(value, constant),
            Comparison::Ne => !same(value, constant),
            Comparison::Lt => order(value, constant).is_some_and(std::cmp::Ordering::is_lt),
            Comparison::Le => order(value, constant).is_some_and(std::cmp::Ordering::is_le),
            Comparison::Gt => order(value, constant).is_some_and(std::cmp::Ordering::is_gt),
            Comparison::Ge => order(value, constant).is_some_and(std::cmp::Ordering::is_ge),
            Comparison::Contains => match (value, constant) {
                (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
                (Value::Array(items), _) => items.iter().any(|item| same(item, constant)),
                _ => false,
            },
            Comparison::StartsWith => match (value, constant) {
                (Value::String(text), Value::String(part)) => text.starts_with(part.as_str()),
                _ => false,
            },
            Comparison::In => match constant {
                Value::Array(options) => options.iter().any(|o| same(value, o)),
                _ => false,
            },
        }
    }
}

/// Equality of JSON values, numbers by value.
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The order of two values of one kind: numbers by value, strings that are both times as
/// times, other strings in byte order; none between kinds.
fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => match (timestamp::parse(x), timestamp::parse(y)) {
            (Ok(x), Ok(y)) => Some(x.cmp(&y)),
            _ => Some(x.as_str().cmp(y.as_str())),
        },
        _ => None,
    }
}

/// One property filter of an event: `{property = "plan", op = "=", value = "pro"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// The property (a dotted path inside `properties`, e.g. `product.category`).
    pub property: String,
    /// The comparison.
    pub op: Comparison,
    /// The constant (not needed for `exists`).
    #[serde(default)]
    pub value: Value,
}

impl Filter {
    /// The filter in words, as an explanation shows it.
    pub fn text(&self) -> String {
        if self.op == Comparison::Exists {
            return format!("{} exists", self.property);
        }
        format!("{} {} {}", self.property, self.op.as_str(), self.value)
    }
}

/// What a computed trait reads from an event: its name, filters, and (for all ops but
/// `count`) a property.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputedTrait {
    /// Its name on the profile.
    pub name: String,
    /// The event it reads: a track event's name, or `page`, `screen`, `identify`, ... for
    /// other types.
    pub event: String,
    /// What it computes.
    pub op: ComputedOp,
    /// The property it reads (a dotted path inside `properties`; not read by `count`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub property: String,
    /// Filters an event must pass, all of them.
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// The window.
    #[serde(default = "all_time")]
    pub window: Window,
    /// For a funnel: the step that must follow this event within a time; the trait then counts
    /// completions (events of the second step that had an event of the first before them,
    /// within the time), in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<Box<Then>>,
}

/// A funnel's second step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Then {
    /// Its event.
    pub event: String,
    /// Filters it must pass.
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// How soon after the first step it must come.
    pub within: Span,
}

/// A length of time, written `30m`, `2h` or `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span(i64);

/// A span that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "time {text:?}: write minutes, hours or days as \"30m\", \"2h\" or \"7d\", from 1 minute to {MAX_STEP_DAYS} days"
)]
pub struct SpanError {
    text: String,
}

impl Span {
    /// Reads `30m`, `2h` or `7d`.
    ///
    /// # Errors
    ///
    /// Another text, 0, or past [`MAX_STEP_DAYS`].
    pub fn parse(text: &str) -> Result<Span, SpanError> {
        let error = || SpanError {
            text: text.to_owned(),
        };
        let text = text.trim();
        let unit = match text.chars().last() {
            Some('m') => 60_000,
            Some('h') => HOUR_MILLIS,
            Some('d') => DAY_MILLIS,
            _ => return Err(error()),
        };
        let digits = text.get(..text.len() - 1).unwrap_or_default();
        let n: i64 = digits.parse().map_err(|_| error())?;
        let millis = n.checked_mul(unit).ok_or_else(error)?;
        if n < 1 || millis > MAX_STEP_DAYS * DAY_MILLIS {
            return Err(error());
        }
        Ok(Span(millis))
    }

    /// Its length in milliseconds.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The span as [`Span::parse`] reads it (in its largest whole unit).
    pub fn text(self) -> String {
        let (n, unit) = self.whole();
        format!("{n}{unit}")
    }

    /// The span in words.
    pub fn words(self) -> String {
        let (n, unit) = self.whole();
        let unit = match unit {
            'd' => "day",
            'h' => "hour",
            _ => "minute",
        };
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    }

    fn whole(self) -> (i64, char) {
        [(DAY_MILLIS, 'd'), (HOUR_MILLIS, 'h')]
            .into_iter()
            .find(|(unit, _)| self.0 % unit == 0)
            .map_or((self.0 / 60_000, 'm'), |(unit, c)| (self.0 / unit, c))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn all_time() -> Window {
    Window::AllTime
}

impl ComputedTrait {
    /// The problem with this definition, if any, naming the field.
    pub fn problem(&self) -> Option<String> {
        if self.name.is_empty() || self.name.len() > 100 {
            return Some("name: 1 to 100 characters".to_owned());
        }
        if self.event.is_empty() {
            return Some(format!("{}: event: an event name is needed", self.name));
        }
        if self.op.reads_property() && self.property.is_empty() {
            return Some(format!(
                "{}: property: {:?} reads a property",
                self.name, self.op
            ));
        }
        if let Some(then) = &self.then {
            if self.op != ComputedOp::Count {
                return Some(format!(
                    "{}: then: a funnel counts its completions (op count)",
                    self.name
                ));
            }
            if then.event.is_empty() {
                return Some(format!(
                    "{}: then.event: an event name is needed",
                    self.name
                ));
            }
            if self.window == Window::Session {
                return Some(format!(
                    "{}: window: a funnel counts in days or hours, not sessions",
                    self.name
                ));
            }
        }
        None
    }

    /// Whether events of `name` feed it (its event, or a funnel's second step).
    pub fn reads_event(&self, name: &str) -> bool {
        self.event == name || self.then.as_ref().is_some_and(|then| then.event == name)
    }

    /// Whether an event of `name` that passes the filters its steps read is a first step, a
    /// second step (of a funnel), or both.
    pub fn steps(&self, name: &str, mut passes: impl FnMut(&[Filter]) -> bool) -> (bool, bool) {
        let first = self.event == name && passes(&self.filters);
        let second = self
            .then
            .as_ref()
            .is_some_and(|then| then.event == name && passes(&then.filters));
        (first, second)
    }

    /// The description in words (for explanations).
    pub fn text(&self) -> String {
        let mut out = match self.op {
            ComputedOp::Count => "count of ".to_owned(),
            op => format!(
                "{} of ",
                serde_json::to_value(op)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            ),
        };
        self.push_events(&mut out);
        out.push(' ');
        out.push_str(&self.window.words());
        out
    }

    /// What it reads, in words: the event (with the property read), its filters, and a
    /// funnel's second step.
    pub fn push_events(&self, out: &mut String) {
        out.push_str(&self.event);
        if self.op.reads_property() {
            out.push('.');
            out.push_str(&self.property);
        }
        let filters = |out: &mut String, filters: &[Filter]| {
            for filter in filters {
                out.push_str(" where ");
                out.push_str(&filter.text());
            }
        };
        filters(out, &self.filters);
        if let Some(then) = &self.then {
            out.push_str(" then ");
            out.push_str(&then.event);
            filters(out, &then.filters);
            out.push_str(" within ");
            out.push_str(&then.within.words());
        }
    }
}

/// The partial results of one bucket: the count, and what other ops keep (boxed: most
/// series are counts, kept for every profile).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Events counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub n: u64,
    /// The rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<Box<Extra>>,
}

impl Bucket {
    fn extra_mut(&mut self) -> &mut Extra {
        self.x.get_or_insert_with(Box::default)
    }
}

/// What ops other than `count` keep per bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Extra {
    /// Numeric values seen (for the mean).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub k: u64,
    /// Their sum.
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub sum: f64,
    /// Their minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Their maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The earliest value: `(time in ms, value)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<(i64, Value)>,
    /// The latest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<(i64, Value)>,
    /// For most-frequent traits: how often each value was seen (JSON text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// For funnels: the times of first steps (sorted, the latest [`MAX_STEP_TIMES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub s1: Vec<i64>,
    /// The times of second steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub s2: Vec<i64>,
}

// A u64 is small enough to copy only where pointers are 64 bits wide. (The profile record
// uses it too; it lives here so that the record, which reads profiles, is not read back.)
#[cfg_attr(
    target_pointer_width = "64",
    expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's skip_serializing_if takes &T"
    )
)]
pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg_attr(
    target_pointer_width = "64",
    expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's skip_serializing_if takes &T"
    )
)]
fn is_zero_f(n: &f64) -> bool {
    *n == 0.0
}

/// One computed trait's state in a profile: its buckets, and for unique traits the bucket in
/// which each value was last seen.
///
/// Most series are counts and sums: what only unique traits and capped funnels keep is boxed
/// apart, so that a series costs two words besides its buckets (a profile holds a dozen).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Partial results by bucket (the bucket's index: days or hours since the epoch in the
    /// workspace's time zone; 0 for all time; the session's number for a session).
    pub b: Buckets,
    /// Unique values, sketches and the flag of a cap reached; `None` while all are empty.
    pub d: Option<Box<Distinct>>,
}

/// What a series keeps besides its buckets, for unique traits and funnels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distinct {
    /// For unique traits: each value (JSON text) and the last bucket it was seen in (a sorted
    /// list: most profiles see a handful).
    pub u: litemap::LiteMap<String, i64>,
    /// Whether values were let go past a cap ([`MAX_UNIQUE_COUNT`], a funnel's
    /// [`MAX_STEP_TIMES`]): the value is approximate.
    pub over: bool,
    /// For unique counts past [`MAX_UNIQUE_COUNT`]: a sketch of the values seen, per bucket
    /// (see [`Sketch`]); its estimate is the count from then on, marked approximate.
    pub h: Vec<(i64, Sketch)>,
}

/// A series with nothing but buckets reads this.
static NO_DISTINCT: Distinct = Distinct {
    u: litemap::LiteMap::new(),
    over: false,
    h: Vec::new(),
};

/// A series as records keep it: its buckets and the fields of [`Distinct`], side by side (the
/// format before they were boxed apart).
#[derive(Serialize)]
struct SeriesOut<'a> {
    #[serde(skip_serializing_if = "Buckets::is_empty")]
    b: &'a Buckets,
    #[serde(skip_serializing_if = "litemap::LiteMap::is_empty")]
    u: &'a litemap::LiteMap<String, i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    over: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    h: &'a [(i64, Sketch)],
}

/// A series as read from a record ([`SeriesOut`]).
#[derive(Deserialize)]
struct SeriesIn {
    #[serde(default)]
    b: Buckets,
    #[serde(default)]
    u: litemap::LiteMap<String, i64>,
    #[serde(default)]
    over: bool,
    #[serde(default)]
    h: Vec<(i64, Sketch)>,
}

impl Serialize for Series {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = self.d();
        SeriesOut {
            b: &self.b,
            u: &d.u,
            over: d.over,
            h: &d.h,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Series {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let SeriesIn { b, u, over, h } = SeriesIn::deserialize(deserializer)?;
        let kept = !u.is_empty() || over || !h.is_empty();
        Ok(Series {
            b,
            d: kept.then(|| Box::new(Distinct { u, over, h })),
        })
    }
}

/// Register bits of a unique count's sketches: 4,096 registers (1.6 % error) for one sketch
/// over all time or a session, 256 (6.5 %) for one per day or hour of a window, so that a
/// year's window keeps at most 94 KB.
fn sketch_bits(window: Window) -> u8 {
    match window {
        Window::AllTime | Window::Session => 12,
        Window::Days(_) | Window::Hours(_) | Window::Between(..) => 8,
    }
}

/// Buckets by index, in order: a sorted list, since a series holds few and adds at the end (a
/// map's node would allocate room for eleven for each series of each profile).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Buckets(Vec<(i64, Bucket)>);

impl Buckets {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The indexes, in order.
    pub fn keys(&self) -> impl Iterator<Item = i64> + '_ {
        self.0.iter().map(|(index, _)| *index)
    }

    /// Keeps the buckets whose index passes.
    pub fn retain(&mut self, mut keep: impl FnMut(i64) -> bool) {
        self.0.retain(|(index, _)| keep(*index));
    }

    /// The bucket of `index`, added empty if there is none.
    #[expect(
        clippy::indexing_slicing,
        reason = "the position is one binary_search found, or where it inserted"
    )]
    pub fn entry(&mut self, index: i64) -> &mut Bucket {
        let at = match self.0.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => at,
            Err(at) => {
                self.0.reserve_exact(1);
                self.0.insert(at, (index, Bucket::default()));
                at
            }
        };
        &mut self.0[at].1
    }

    /// The buckets from `first` to `last`, both included.
    pub fn range(&self, first: i64, last: i64) -> impl Iterator<Item = &Bucket> + '_ {
        self.0
            .iter()
            .filter(move |(index, _)| (first..=last).contains(index))
            .map(|(_, bucket)| bucket)
    }
}

impl IntoIterator for Buckets {
    type Item = (i64, Bucket);
    type IntoIter = std::vec::IntoIter<(i64, Bucket)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Series that read the same events the same way (event, filters, op, property, funnel step)
/// into buckets of one size share one store in a profile: "no views in 7 days", "in 14 days"
/// and a 30-day count keep one list of days, kept as long as the longest of them needs. The
/// stores of `series` (each a definition whose window reaches as far back as the longest of
/// its series), and each series' store, by position.
pub fn shared_stores<'a>(
    series: impl IntoIterator<Item = &'a ComputedTrait>,
) -> (Vec<ComputedTrait>, Vec<u16>) {
    let mut stores: Vec<ComputedTrait> = Vec::new();
    let mut store_of = Vec::new();
    for def in series {
        let found = stores.iter_mut().enumerate().find(|(_, store)| {
            store.event == def.event
                && store.op == def.op
                && store.property == def.property
                && store.filters == def.filters
                && store.then == def.then
                && store.window.kind() == def.window.kind()
        });
        let position = if let Some((position, store)) = found {
            store.window = store.window.widest(def.window);
            position
        } else {
            let mut store = def.clone();
            store.window = def.window.widest(def.window);
            stores.push(store);
            stores.len() - 1
        };
        // At most MAX_COMPUTED series (checked when the configuration is read).
        store_of.push(u16::try_from(position).unwrap_or(u16::MAX));
    }
    (stores, store_of)
}

/// A profile's series, by their position in the workspace's list of series
/// ([`super::ProfileConfig::series`]): a sorted list, since a profile holds few of them and the
/// hot path finds them by position (a name would be compared byte by byte). The store keeps
/// them by name ([`super::record`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesSet(Vec<(u16, Series)>);

impl SeriesSet {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The series at `position`, if the profile holds it.
    pub fn get(&self, position: u16) -> Option<&Series> {
        let at = self.0.binary_search_by_key(&position, |(p, _)| *p).ok()?;
        self.0.get(at).map(|(_, series)| series)
    }

    /// The series at `position`, added empty if there is none.
    #[expect(
        clippy::indexing_slicing,
        reason = "the position is one binary_search found, or where it inserted"
    )]
    pub fn entry(&mut self, position: u16) -> &mut Series {
        let at = match self.0.binary_search_by_key(&position, |(p, _)| *p) {
            Ok(at) => at,
            Err(at) => {
                // Room for one more, not for twice as many: a profile's set of series grows
                // by a few over its first events and then stays.
                self.0.reserve_exact(1);
                self.0.insert(at, (position, Series::default()));
                at
            }
        };
        &mut self.0[at].1
    }

    /// Takes the series at `position` out.
    pub fn remove(&mut self, position: u16) -> Option<Series> {
        let at = self.0.binary_search_by_key(&position, |(p, _)| *p).ok()?;
        Some(self.0.remove(at).1)
    }

    /// Each series with its position, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Series)> + '_ {
        self.0.iter().map(|(p, series)| (*p, series))
    }

    /// The series at `position`, to change.
    pub fn get_mut(&mut self, position: u16) -> Option<&mut Series> {
        let at = self.0.binary_search_by_key(&position, |(p, _)| *p).ok()?;
        self.0.get_mut(at).map(|(_, series)| series)
    }

    /// Each series with its position, in order, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u16, &mut Series)> + '_ {
        self.0.iter_mut().map(|(p, series)| (*p, series))
    }

    /// Keeps the series that pass.
    pub fn retain(&mut self, mut keep: impl FnMut(u16, &Series) -> bool) {
        self.0.retain(|(p, series)| keep(*p, series));
    }
}

impl IntoIterator for SeriesSet {
    type Item = (u16, Series);
    type IntoIter = std::vec::IntoIter<(u16, Series)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(u16, Series)> for SeriesSet {
    fn from_iter<I: IntoIterator<Item = (u16, Series)>>(items: I) -> Self {
        let mut list: Vec<(u16, Series)> = items.into_iter().collect();
        list.sort_by_key(|(p, _)| *p);
        list.dedup_by_key(|(p, _)| *p);
        SeriesSet(list)
    }
}

/// A computed trait's value at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Computed {
    /// The value (`null` when nothing was counted: a mean or a minimum of no events).
    pub value: Value,
    /// Whether it is a lower bound (a unique count past [`MAX_UNIQUE_COUNT`]).
    pub approximate: bool,
}

impl Computed {
    /// Whether it is the value of nothing counted (0, `null`, an empty list), which a profile
    /// does not keep.
    pub fn is_empty(&self) -> bool {
        !self.approximate
            && match &self.value {
                Value::Null => true,
                Value::Number(n) => n.as_f64() == Some(0.0),
                Value::Array(items) => items.is_empty(),
                _ => false,
            }
    }
}

/// The index of the bucket of `at` (ms) for a bucket size, in a time zone `offset` ms east of
/// UTC.
fn bucket_of(at: i64, size: i64, offset: i64) -> i64 {
    if size == 0 {
        return 0;
    }
    (at + offset).div_euclid(size)
}

/// When the bucket `index` starts, in ms since the epoch.
fn bucket_start(index: i64, size: i64, offset: i64) -> i64 {
    index.saturating_mul(size).saturating_sub(offset)
}

impl Series {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        let d = self.d();
        self.b.is_empty() && d.u.is_empty() && d.h.is_empty()
    }

    /// Its unique values, sketches and cap flag (empty ones when it has none).
    pub fn d(&self) -> &Distinct {
        self.d.as_deref().unwrap_or(&NO_DISTINCT)
    }

    /// The same, to change (boxed at the first change).
    fn d_mut(&mut self) -> &mut Distinct {
        self.d.get_or_insert_with(Box::default)
    }

    /// Lets the box go when it holds nothing.
    fn tidy(&mut self) {
        if self
            .d
            .as_ref()
            .is_some_and(|d| d.u.is_empty() && d.h.is_empty() && !d.over)
        {
            self.d = None;
        }
    }

    /// The sketch of bucket `index`, added empty if there is none.
    #[expect(
        clippy::indexing_slicing,
        reason = "the position is one binary_search found, or where it inserted"
    )]
    fn sketch(&mut self, index: i64, window: Window) -> &mut Sketch {
        let h = &mut self.d_mut().h;
        let at = match h.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => at,
            Err(at) => {
                h.insert(at, (index, Sketch::new(sketch_bits(window))));
                at
            }
        };
        &mut h[at].1
    }

    /// Counts one event at `at` (ms) whose property read `value`, for `def`, in session number
    /// `session`, in a time zone `offset` ms east of UTC. The caller has checked the event's
    /// name and filters.
    pub fn add(
        &mut self,
        def: &ComputedTrait,
        value: Option<&Value>,
        at: i64,
        session: u64,
        offset: i64,
    ) {
        let index = match def.window {
            Window::Session => {
                let session = i64::try_from(session).unwrap_or(i64::MAX);
                if self.b.keys().any(|s| s != session) {
                    self.b.retain(|s| s >= session);
                    self.d = None;
                }
                if self.b.keys().any(|s| s > session) {
                    // An event of an earlier session, arrived late: not the current session.
                    return;
                }
                session
            }
            window => bucket_of(at, window.bucket_millis(), offset),
        };
        let value = value.filter(|v| !v.is_null());
        if def.op.reads_property() && value.is_none() {
            return;
        }
        if def.op.is_unique() {
            let Some(text) = value.map(Value::to_string) else {
                return;
            };
            if text.len() > MAX_COUNTED_VALUE_BYTES {
                return;
            }
            self.b.entry(index).n += 1;
            if !self.d().h.is_empty() {
                self.sketch(index, def.window).add(&text);
            }
            let seen = self.d_mut().u.entry(text).or_insert(index);
            *seen = (*seen).max(index);
            self.cap_unique(def.op, def.window);
            return;
        }
        let bucket = self.b.entry(index);
        bucket.n += 1;
        if def.op == ComputedOp::Count {
            return;
        }
        let bucket = bucket.extra_mut();
        if def.op.is_numeric() {
            let Some(number) = value.and_then(Value::as_f64) else {
                return;
            };
            bucket.k += 1;
            bucket.sum += number;
            bucket.min = Some(bucket.min.map_or(number, |m| m.min(number)));
            bucket.max = Some(bucket.max.map_or(number, |m| m.max(number)));
            return;
        }
        let Some(value) = value else {
            return;
        };
        match def.op {
            ComputedOp::First if bucket.first.as_ref().is_none_or(|(t, _)| at < *t) => {
                bucket.first = Some((at, value.clone()));
            }
            ComputedOp::Last if bucket.last.as_ref().is_none_or(|(t, _)| at >= *t) => {
                bucket.last = Some((at, value.clone()));
            }
            ComputedOp::MostFrequent => {
                let text = value.to_string();
                if text.len() <= MAX_COUNTED_VALUE_BYTES {
                    count_capped(&mut bucket.counts, text, 1, MAX_FREQUENT_PER_BUCKET);
                }
            }
            _ => {}
        }
    }

    /// Counts one event of a funnel at `at` (ms): a first step, a second step, or both (the
    /// caller has checked the names and filters, [`ComputedTrait::steps`]).
    pub fn add_step(
        &mut self,
        def: &ComputedTrait,
        at: i64,
        first: bool,
        second: bool,
        offset: i64,
    ) {
        let bucket = self
            .b
            .entry(bucket_of(at, def.window.bucket_millis(), offset));
        bucket.n += 1;
        let bucket = bucket.extra_mut();
        let mut over = false;
        if first {
            over |= keep_times(&mut bucket.s1, [at]);
        }
        if second {
            over |= keep_times(&mut bucket.s2, [at]);
        }
        if over {
            self.d_mut().over = true;
        }
    }

    /// Folds `other` (the series of a profile merged into this one) in.
    pub fn absorb(&mut self, other: Series, def: &ComputedTrait) {
        if def.window == Window::Session {
            // Each profile's current session: the later one's.
            let theirs = other.b.keys().max();
            let mine = self.b.keys().max();
            if theirs > mine {
                *self = other;
            }
            return;
        }
        let mut over = false;
        for (index, theirs) in other.b {
            let mine = self.b.entry(index);
            mine.n += theirs.n;
            let Some(theirs) = theirs.x else {
                continue;
            };
            let mine = mine.extra_mut();
            mine.k += theirs.k;
            mine.sum += theirs.sum;
            mine.min = min_option(mine.min, theirs.min);
            mine.max = match (mine.max, theirs.max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some((t, v)) = theirs.first
                && mine.first.as_ref().is_none_or(|(m, _)| t < *m)
            {
                mine.first = Some((t, v));
            }
            if let Some((t, v)) = theirs.last
                && mine.last.as_ref().is_none_or(|(m, _)| t > *m)
            {
                mine.last = Some((t, v));
            }
            for (value, n) in theirs.counts {
                count_capped(&mut mine.counts, value, n, MAX_FREQUENT_PER_BUCKET);
            }
            over |= keep_times(&mut mine.s1, theirs.s1) | keep_times(&mut mine.s2, theirs.s2);
        }
        if let Some(theirs) = other.d {
            let Distinct { u, over: capped, h } = *theirs;
            over |= capped;
            for (text, seen) in u {
                let mine = self.d_mut().u.entry(text).or_insert(seen);
                *mine = (*mine).max(seen);
            }
            for (index, theirs) in h {
                self.sketch(index, def.window).merge(&theirs);
            }
        }
        if !self.d().h.is_empty() {
            // Values one side kept exactly are in the sketches too (adding again changes
            // nothing).
            self.sketch_values(def.window);
        }
        if over {
            self.d_mut().over = true;
        }
        self.cap_unique(def.op, def.window);
    }

    /// Adds every value kept exactly to the sketch of the bucket it was last seen in.
    fn sketch_values(&mut self, window: Window) {
        let values: Vec<(String, i64)> = self.d().u.iter().map(|(t, s)| (t.clone(), *s)).collect();
        for (text, seen) in values {
            self.sketch(seen, window).add(&text);
        }
    }

    /// Keeps a unique trait's values to its cap: the value seen longest ago gives way (ties:
    /// the smallest text). A unique count past its cap counts with sketches from then on
    /// (each value kept so far added to the sketch of its bucket first).
    fn cap_unique(&mut self, op: ComputedOp, window: Window) {
        let cap = if op == ComputedOp::UniqueList {
            MAX_UNIQUE_LIST
        } else {
            MAX_UNIQUE_COUNT
        };
        if self.d().u.len() <= cap {
            return;
        }
        if op == ComputedOp::UniqueCount && self.d().h.is_empty() {
            self.sketch_values(window);
        }
        let d = self.d_mut();
        while d.u.len() > cap {
            let oldest =
                d.u.iter()
                    .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                    .map(|(text, _)| text.clone());
            if let Some(oldest) = oldest {
                d.u.remove(&oldest);
            }
            d.over |= op == ComputedOp::UniqueCount;
        }
    }

    /// Drops the buckets no window of `def` can reach again after `now` (ms).
    pub fn prune(&mut self, def: &ComputedTrait, now: i64, offset: i64) {
        let size = def.window.bucket_millis();
        if size == 0 {
            return;
        }
        let (mut first, _) = def.window.range(bucket_of(now, size, offset));
        if let Some(then) = &def.then {
            // First steps this far before the window still pair with second steps inside it.
            first -= then.within.millis().div_euclid(size) + 1;
        }
        self.b.retain(|index| index >= first);
        if let Some(d) = &mut self.d {
            d.u.retain(|_, &seen| seen >= first);
            d.h.retain(|(index, _)| *index >= first);
            self.tidy();
        }
    }

    /// The value of `def` at `now` (ms).
    pub fn value(&self, def: &ComputedTrait, now: i64, offset: i64) -> Computed {
        let size = def.window.bucket_millis();
        let (first, last) = def.window.range(bucket_of(now, size, offset));
        let inside = || self.b.range(first, last);
        let extras = || inside().filter_map(|b| b.x.as_deref());
        let exact = |value: Value| Computed {
            value,
            approximate: false,
        };
        if let Some(then) = &def.then {
            return Computed {
                value: Value::from(self.completions(then.within.millis(), first, last)),
                approximate: self.d().over,
            };
        }
        match def.op {
            ComputedOp::Count => exact(Value::from(inside().map(|b| b.n).sum::<u64>())),
            ComputedOp::Sum => exact(number(extras().map(|b| b.sum).sum::<f64>())),
            ComputedOp::Min => exact(
                extras()
                    .filter_map(|b| b.min)
                    .reduce(f64::min)
                    .map_or(Value::Null, number),
            ),
            ComputedOp::Max => exact(
                extras()
                    .filter_map(|b| b.max)
                    .reduce(f64::max)
                    .map_or(Value::Null, number),
            ),
            ComputedOp::Avg => {
                let (sum, k) = extras().fold((0.0, 0_u64), |(s, k), b| (s + b.sum, k + b.k));
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "a count of events is far below 2^52"
                )]
                let mean = (k > 0).then(|| number(sum / k as f64));
                exact(mean.unwrap_or(Value::Null))
            }
            ComputedOp::First => exact(
                extras()
                    .filter_map(|b| b.first.as_ref())
                    .min_by_key(|(t, _)| *t)
                    .map_or(Value::Null, |(_, v)| v.clone()),
            ),
            ComputedOp::Last => exact(
                extras()
                    .filter_map(|b| b.last.as_ref())
                    .max_by_key(|(t, _)| *t)
                    .map_or(Value::Null, |(_, v)| v.clone()),
            ),
            ComputedOp::MostFrequent => {
                let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
                for bucket in extras() {
                    for (value, n) in &bucket.counts {
                        *totals.entry(value).or_default() += n;
                    }
                }
                // The largest count; among equals the first in text order.
                let best = totals
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                    .and_then(|(text, _)| serde_json::from_str(text).ok());
                exact(best.unwrap_or(Value::Null))
            }
            ComputedOp::UniqueList | ComputedOp::UniqueCount => {
                let d = self.d();
                let values =
                    d.u.iter()
                        .filter(|(_, seen)| (first..=last).contains(*seen))
                        .map(|(text, _)| text);
                if def.op == ComputedOp::UniqueCount {
                    let exact = values.count() as u64;
                    let mut sketches = d.h.iter().filter(|(i, _)| (first..=last).contains(i));
                    let estimate = sketches.next().map(|(_, first)| {
                        let mut union = first.clone();
                        for (_, sketch) in sketches {
                            union.merge(sketch);
                        }
                        union.estimate()
                    });
                    return Computed {
                        // What is kept exactly is a lower bound of the estimate's error.
                        value: Value::from(estimate.map_or(exact, |e| e.max(exact))),
                        approximate: d.over,
                    };
                }
                let items: Vec<Value> = values
                    .filter_map(|text| serde_json::from_str(text).ok())
                    .collect();
                exact(Value::Array(items))
            }
        }
    }

    /// The count of events (or, for a funnel, of completions) of `def` at `now` (ms): what
    /// [`Series::value`] gives for a count, without building a value.
    pub fn count(&self, def: &ComputedTrait, now: i64, offset: i64) -> u64 {
        let size = def.window.bucket_millis();
        let (first, last) = def.window.range(bucket_of(now, size, offset));
        if let Some(then) = &def.then {
            return u64::try_from(self.completions(then.within.millis(), first, last))
                .unwrap_or(u64::MAX);
        }
        self.b.range(first, last).map(|b| b.n).sum()
    }

    /// A funnel's completions in the buckets `first..=last`: second steps with a first step
    /// before them, no longer than `within` ms before.
    fn completions(&self, within: i64, first: i64, last: i64) -> usize {
        // Buckets are in time order and each keeps its times sorted: all first steps, sorted.
        let firsts: Vec<i64> = self
            .b
            .range(i64::MIN, i64::MAX)
            .filter_map(|b| b.x.as_deref())
            .flat_map(|x| x.s1.iter().copied())
            .collect();
        self.b
            .range(first, last)
            .filter_map(|b| b.x.as_deref())
            .flat_map(|x| x.s2.iter().copied())
            .filter(|&at| {
                let before = firsts.partition_point(|&t| t < at);
                before
                    .checked_sub(1)
                    .and_then(|i| firsts.get(i))
                    .is_some_and(|&t| at - t <= within)
            })
            .count()
    }

    /// The first time after `now` (ms) at which the value of `def` can change with the clock
    /// alone: when a bucket that holds something enters or leaves the window.
    pub fn next_change(&self, def: &ComputedTrait, now: i64, offset: i64) -> Option<i64> {
        let size = def.window.bucket_millis();
        if size == 0 {
            return None;
        }
        let current = bucket_of(now, size, offset);
        let (first, last) = def.window.range(current);
        // A bucket `i` is inside while first <= i <= last, that is while
        // current - (last - first) - lead <= ... : with `lead = current - last` (0 for a
        // window that ends now), it enters when current = i + lead and leaves when
        // current = i + lead + (last - first) + 1.
        let lead = current - last;
        let span = last - first + 1;
        let mut next: Option<i64> = None;
        let mut consider = |i: i64| {
            for at in [i + lead, i + lead + span] {
                if at > current {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        };
        // Buckets are sorted: past the first that is still to enter, none enters or leaves
        // sooner.
        for i in self.b.keys() {
            consider(i);
            if i + lead > current {
                break;
            }
        }
        for &i in self.d().u.values() {
            consider(i);
        }
        next.map(|index| bucket_start(index, size, offset))
    }
}

fn min_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Adds `times` to a sorted list of times, keeping the latest [`MAX_STEP_TIMES`]; whether some
/// were let go. The list kept is the same in whatever order the times come.
fn keep_times(list: &mut Vec<i64>, times: impl IntoIterator<Item = i64>) -> bool {
    for at in times {
        let at_or_after = list.partition_point(|&t| t <= at);
        list.insert(at_or_after, at);
    }
    let over = list.len().saturating_sub(MAX_STEP_TIMES);
    list.drain(..over);
    over > 0
}

/// A number as JSON (whole numbers as integers, so a sum of counts reads `3`, not `3.0`).
fn number(n: f64) -> Value {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked: only whole numbers within the exact range become integers"
    )]
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        return Value::from(n as i64);
    }
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}

/// Adds `n` sightings of `value` to counts kept to `cap` values (Space-Saving: a new value past
/// the cap takes the place of the least counted one, ties to the smallest text, with its count
/// plus `n`).
pub(crate) fn count_capped(counts: &mut BTreeMap<String, u64>, value: String, n: u64, cap: usize) {
    if let Some(count) = counts.get_mut(&value) {
        *count += n;
        return;
    }
    if counts.len() < cap {
        counts.insert(value, n);
        return;
    }
    let least = counts
        .iter()
        .min_by_key(|(_, count)| **count)
        .map(|(value, count)| (value.clone(), *count));
    if let Some((least, count)) = least {
        counts.remove(&least);
        counts.insert(value, count + n);
    }
}

/// The value at a dotted `path` inside an object's JSON value.
pub(crate) fn path_value<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut at = root;
    for part in path.split('.') {
        at = at.as_object()?.get(part)?;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(op: ComputedOp, window: &str) -> ComputedTrait {
        ComputedTrait {
            name: "t".into(),
            event: "Order Completed".into(),
            op,
            property: "revenue".into(),
            filters: Vec::new(),
            window: Window::parse(window).unwrap(),
            then: None,
        }
    }

    /// "Product Viewed then Order Completed within `within`", counted over `window`.
    fn funnel(window: &str, within: &str) -> ComputedTrait {
        ComputedTrait {
            name: "f".into(),
            event: "Product Viewed".into(),
            op: ComputedOp::Count,
            property: String::new(),
            filters: Vec::new(),
            window: Window::parse(window).unwrap(),
            then: Some(Box::new(Then {
                event: "Order Completed".into(),
                filters: Vec::new(),
                within: Span::parse(within).unwrap(),
            })),
        }
    }

    const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MILLIS; // a UTC midnight

    #[test]
    fn windows_read_and_refuse() {
        assert_eq!(Window::parse("30d"), Ok(Window::Days(30)));
        assert_eq!(Window::parse("12h"), Ok(Window::Hours(12)));
        assert_eq!(Window::parse("30d..90d"), Ok(Window::Between(30, 89)));
        assert_eq!(Window::parse("all"), Ok(Window::AllTime));
        for bad in ["0d", "367d", "169h", "90d..30d", "30", "x", "-1d"] {
            let error = Window::parse(bad).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
        for text in ["30d", "12h", "30d..90d", "all", "session"] {
            assert_eq!(Window::parse(text).unwrap().text(), text);
        }
    }

    #[test]
    fn a_sliding_count_moves_at_midnight() {
        let d = def(ComputedOp::Count, "7d");
        let mut s = Series::default();
        s.add(&d, None, T0 + 10 * HOUR_MILLIS, 1, 0);
        s.add(&d, None, T0 + DAY_MILLIS + HOUR_MILLIS, 1, 0);
        let at = |ms| s.value(&d, ms, 0).value;
        assert_eq!(at(T0 + 2 * DAY_MILLIS), json!(2));
        // The first event's day leaves the window 7 days after its midnight.
        assert_eq!(at(T0 + 7 * DAY_MILLIS - 1), json!(2));
        assert_eq!(at(T0 + 7 * DAY_MILLIS), json!(1));
        assert_eq!(at(T0 + 8 * DAY_MILLIS), json!(0));
        assert_eq!(
            s.next_change(&d, T0 + 2 * DAY_MILLIS, 0),
            Some(T0 + 7 * DAY_MILLIS)
        );
        assert_eq!(
            s.next_change(&d, T0 + 7 * DAY_MILLIS, 0),
            Some(T0 + 8 * DAY_MILLIS)
        );
        assert_eq!(s.next_change(&d, T0 + 8 * DAY_MILLIS, 0), None);
    }

    #[test]
    fn days_start_in_the_workspace_time_zone() {
        // 23:30 UTC is 00:30 the next day at +01:00.
        let d = def(ComputedOp::Count, "1d");
        let mut s = Series::default();
        let offset = HOUR_MILLIS;
        s.add(&d, None, T0 - HOUR_MILLIS / 2, 1, offset);
        assert_eq!(s.value(&d, T0 + HOUR_MILLIS, offset).value, json!(1));
        let mut utc = Series::default();
        utc.add(&d, None, T0 - HOUR_MILLIS / 2, 1, 0);
        assert_eq!(utc.value(&d, T0 + HOUR_MILLIS, 0).value, json!(0));
        // It leaves at the next local midnight, 23:00 UTC.
        assert_eq!(
            s.next_change(&d, T0, offset),
            Some(T0 + DAY_MILLIS - HOUR_MILLIS)
        );
    }

    #[test]
    fn a_range_of_days_ago_enters_and_leaves() {
        let d = def(ComputedOp::Count, "30d..90d");
        let mut s = Series::default();
        s.add(&d, None, T0 + HOUR_MILLIS, 1, 0);
        let at = |days: i64| s.value(&d, T0 + days * DAY_MILLIS, 0).value;
        assert_eq!(at(0), json!(0));
        assert_eq!(at(29), json!(0));
        assert_eq!(at(30), json!(1));
        assert_eq!(at(89), json!(1));
        assert_eq!(at(90), json!(0));
        assert_eq!(s.next_change(&d, T0, 0), Some(T0 + 30 * DAY_MILLIS));
        assert_eq!(
            s.next_change(&d, T0 + 30 * DAY_MILLIS, 0),
            Some(T0 + 90 * DAY_MILLIS)
        );
    }

    #[test]
    fn numeric_and_value_ops() {
        let at = T0 + HOUR_MILLIS;
        let values = [json!(10), json!(2.5), json!("x"), json!(7)];
        let run = |op, window| {
            let d = def(op, window);
            let mut s = Series::default();
            for (i, v) in values.iter().enumerate() {
                s.add(&d, Some(v), at + i64::try_from(i).unwrap(), 1, 0);
            }
            s.value(&d, at + 10, 0).value
        };
        assert_eq!(run(ComputedOp::Count, "all"), json!(4));
        assert_eq!(run(ComputedOp::Sum, "all"), json!(19.5));
        assert_eq!(run(ComputedOp::Min, "30d"), json!(2.5));
        assert_eq!(run(ComputedOp::Max, "30d"), json!(10));
        assert_eq!(run(ComputedOp::Avg, "all"), json!(6.5));
        assert_eq!(run(ComputedOp::First, "all"), json!(10));
        assert_eq!(run(ComputedOp::Last, "12h"), json!(7));
        assert_eq!(run(ComputedOp::UniqueCount, "all"), json!(4));
        assert_eq!(
            run(ComputedOp::UniqueList, "all"),
            // Sorted by JSON text, where a string's quote comes before digits.
            json!(["x", 10, 2.5, 7])
        );
    }

    #[test]
    fn most_frequent_ties_go_to_the_smallest_text() {
        let d = def(ComputedOp::MostFrequent, "all");
        let mut s = Series::default();
        for v in ["b", "a", "b", "a", "c"] {
            s.add(&d, Some(&json!(v)), T0, 1, 0);
        }
        assert_eq!(s.value(&d, T0, 0).value, json!("a"));
        s.add(&d, Some(&json!("c")), T0, 1, 0);
        s.add(&d, Some(&json!("c")), T0, 1, 0);
        assert_eq!(s.value(&d, T0, 0).value, json!("c"));
    }

    #[test]
    fn unique_counts_past_the_cap_are_estimated_by_sketches() {
        let d = def(ComputedOp::UniqueCount, "all");
        let mut s = Series::default();
        for i in 0..MAX_UNIQUE_COUNT {
            s.add(&d, Some(&json!(i)), T0, 1, 0);
        }
        // Exact up to the cap.
        assert_eq!(s.value(&d, T0, 0).value, json!(MAX_UNIQUE_COUNT));
        assert!(!s.value(&d, T0, 0).approximate && s.d().h.is_empty());
        // Past it, an estimate from one sketch, within 5 % of 20,000 values seen twice.
        for i in (0..20_000).chain(0..20_000) {
            s.add(&d, Some(&json!(i)), T0, 1, 0);
        }
        let value = s.value(&d, T0, 0);
        let n = value.value.as_u64().unwrap();
        assert!((19_000..=21_000).contains(&n), "{n}");
        assert!(value.approximate);
        assert_eq!(s.d().u.len(), MAX_UNIQUE_COUNT);
        assert_eq!(s.d().h.len(), 1);
        // The record keeps the sketch.
        let back: Series = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        // Too long a value is not counted.
        let mut s = Series::default();
        s.add(&d, Some(&json!("x".repeat(200))), T0, 1, 0);
        assert_eq!(s.value(&d, T0, 0).value, json!(0));
    }

    #[test]
    fn a_windowed_unique_count_past_the_cap_folds_the_days_in_its_window() {
        let d = def(ComputedOp::UniqueCount, "2d");
        let mut s = Series::default();
        // 1,500 values a day for three days, each day's new; then the first day's again on the
        // third.
        for day in 0..3_i64 {
            for i in 0..1_500 {
                s.add(
                    &d,
                    Some(&json!(day * 1_500 + i)),
                    T0 + day * DAY_MILLIS,
                    1,
                    0,
                );
            }
        }
        for i in 0..1_500 {
            s.add(&d, Some(&json!(i)), T0 + 2 * DAY_MILLIS + 1, 1, 0);
        }
        let now = T0 + 2 * DAY_MILLIS + HOUR_MILLIS;
        s.prune(&d, now, 0);
        // Days 1 and 2 are in the window: 4,500 distinct values.
        let n = s.value(&d, now, 0).value.as_u64().unwrap();
        assert!((4_150..=4_850).contains(&n), "{n}");
        // Day 0's sketch left with its day.
        assert_eq!(s.d().h.len(), 2);
        // Two profiles' series merge into the sketch of both.
        let mut other = Series::default();
        for i in 10_000..12_000 {
            other.add(&d, Some(&json!(i)), T0 + 2 * DAY_MILLIS, 1, 0);
        }
        s.absorb(other, &d);
        let n = s.value(&d, now, 0).value.as_u64().unwrap();
        assert!((6_000..=7_000).contains(&n), "{n}");
    }

    #[test]
    fn series_that_read_alike_share_a_store_kept_as_long_as_the_longest_needs() {
        let mut seven = def(ComputedOp::Count, "7d");
        seven.name = "seven".into();
        let mut range = def(ComputedOp::Count, "30d..90d");
        range.name = "range".into();
        let mut hours = def(ComputedOp::Count, "12h");
        hours.name = "hours".into();
        let mut filtered = def(ComputedOp::Count, "7d");
        filtered.filters = vec![Filter {
            property: "currency".into(),
            op: Comparison::Eq,
            value: json!("EUR"),
        }];
        let sum = def(ComputedOp::Sum, "7d");
        let (stores, store_of) = shared_stores([
            &seven,
            &range,
            &hours,
            &filtered,
            &sum,
            &def(ComputedOp::Count, "14d"),
        ]);
        assert_eq!(store_of, [0, 0, 1, 2, 3, 0]);
        // Named by its first series, kept as far back as the range reaches.
        assert_eq!(stores[0].name, "seven");
        assert_eq!(stores[0].window, Window::Between(0, 89));
        assert_eq!(stores[1].window, Window::Hours(12));
        // One store answers each window: an event 40 days ago counts in the range only.
        let mut s = Series::default();
        s.add(&stores[0], None, T0 + HOUR_MILLIS, 1, 0);
        s.add(&stores[0], None, T0 + 40 * DAY_MILLIS, 1, 0);
        let now = T0 + 40 * DAY_MILLIS + HOUR_MILLIS;
        s.prune(&stores[0], now, 0);
        assert_eq!(s.count(&seven, now, 0), 1);
        assert_eq!(s.count(&range, now, 0), 1);
        assert_eq!(s.value(&range, now, 0).value, json!(1));
        // The first event's day is kept until it leaves the range, 90 days after it.
        s.prune(&stores[0], T0 + 89 * DAY_MILLIS, 0);
        assert_eq!(s.count(&range, T0 + 89 * DAY_MILLIS, 0), 2);
        s.prune(&stores[0], T0 + 90 * DAY_MILLIS, 0);
        assert_eq!(s.count(&range, T0 + 90 * DAY_MILLIS, 0), 1);
        let day = T0 / DAY_MILLIS;
        assert_eq!(s.b.keys().collect::<Vec<_>>(), [day + 40]);
    }

    #[test]
    fn a_session_window_restarts_with_each_session() {
        let d = def(ComputedOp::Sum, "session");
        let mut s = Series::default();
        s.add(&d, Some(&json!(5)), T0, 1, 0);
        s.add(&d, Some(&json!(5)), T0 + 1, 1, 0);
        assert_eq!(s.value(&d, T0 + 2, 0).value, json!(10));
        s.add(&d, Some(&json!(1)), T0 + DAY_MILLIS, 2, 0);
        assert_eq!(s.value(&d, T0 + DAY_MILLIS, 0).value, json!(1));
        // A late event of the first session does not count in the second.
        s.add(&d, Some(&json!(100)), T0 + 3, 1, 0);
        assert_eq!(s.value(&d, T0 + DAY_MILLIS, 0).value, json!(1));
    }

    #[test]
    fn a_merged_series_equals_one_fed_both_streams() {
        for op in [
            ComputedOp::Count,
            ComputedOp::Sum,
            ComputedOp::Min,
            ComputedOp::Max,
            ComputedOp::Avg,
            ComputedOp::First,
            ComputedOp::Last,
            ComputedOp::MostFrequent,
            ComputedOp::UniqueList,
            ComputedOp::UniqueCount,
        ] {
            let d = def(op, "30d");
            let (mut a, mut b, mut both) =
                (Series::default(), Series::default(), Series::default());
            for i in 0..20_i64 {
                let value = json!(i % 7);
                let at = T0 + i * 5 * HOUR_MILLIS;
                let half = if i % 3 == 0 { &mut a } else { &mut b };
                half.add(&d, Some(&value), at, 1, 0);
                both.add(&d, Some(&value), at, 1, 0);
            }
            a.absorb(b, &d);
            let now = T0 + 10 * DAY_MILLIS;
            assert_eq!(a.value(&d, now, 0), both.value(&d, now, 0), "{op:?}");
        }
    }

    #[test]
    fn spans_read_and_refuse() {
        assert_eq!(Span::parse("30m").unwrap().millis(), 30 * 60_000);
        assert_eq!(Span::parse("2h").unwrap().words(), "2 hours");
        assert_eq!(Span::parse("1d").unwrap().words(), "1 day");
        assert_eq!(Span::parse("90m").unwrap().text(), "90m");
        assert_eq!(Span::parse("120m").unwrap().text(), "2h");
        for bad in [
            "",
            "0h",
            "31d",
            "h",
            "5",
            "-1d",
            "1.5h",
            "99999999999999999d",
        ] {
            assert!(Span::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_funnel_counts_second_steps_soon_after_first_ones() {
        let d = funnel("7d", "1h");
        let minute = 60_000;
        let mut s = Series::default();
        // Viewed at 10:00, bought at 10:30 (a completion) and at 12:00 (too late); bought at
        // 15:00 with no view before; viewed at 16:00 and bought at the same minute's end.
        let events = [
            (10 * 60, true, false),
            (10 * 60 + 30, false, true),
            (12 * 60, false, true),
            (15 * 60, false, true),
            (16 * 60, true, false),
            (17 * 60, false, true),
        ];
        for (at, first, second) in events {
            s.add_step(&d, T0 + at * minute, first, second, 0);
        }
        let now = T0 + 20 * HOUR_MILLIS;
        assert_eq!(s.value(&d, now, 0).value, json!(2));
        // A purchase that comes before any view is no completion, whatever arrives later.
        let mut late = Series::default();
        for (at, first, second) in events.iter().rev() {
            late.add_step(&d, T0 + at * minute, *first, *second, 0);
        }
        assert_eq!(late, s, "the order events arrive in changes nothing");
        // The completions leave the 7-day window at the 8th midnight.
        assert_eq!(s.next_change(&d, now, 0), Some(T0 + 7 * DAY_MILLIS));
        assert_eq!(s.value(&d, T0 + 7 * DAY_MILLIS, 0).value, json!(0));
    }

    #[test]
    fn a_funnel_reaches_before_its_window_for_first_steps() {
        // Viewed at 23:30 on day 0, bought at 00:30 on day 7: inside a 1-day window on day 7,
        // its first step a day before it; pruning keeps that day.
        let d = funnel("1d", "2h");
        let mut s = Series::default();
        let view = T0 + 7 * DAY_MILLIS - 30 * 60_000;
        s.add_step(&d, view, true, false, 0);
        s.add_step(&d, view + HOUR_MILLIS, false, true, 0);
        let now = view + 2 * HOUR_MILLIS;
        s.prune(&d, now, 0);
        assert_eq!(s.value(&d, now, 0).value, json!(1));
        s.prune(&d, now + DAY_MILLIS, 0);
        assert_eq!(s.value(&d, now + DAY_MILLIS, 0).value, json!(0));
    }

    #[test]
    fn a_funnel_merges_and_keeps_its_latest_times() {
        let d = funnel("30d", "30m");
        let (mut a, mut b, mut both) = (Series::default(), Series::default(), Series::default());
        for i in 0..100_i64 {
            let at = T0 + i * 10 * 60_000;
            let (first, second) = (i % 2 == 0, i % 3 == 0);
            let half = if i % 4 == 0 { &mut a } else { &mut b };
            half.add_step(&d, at, first, second, 0);
            both.add_step(&d, at, first, second, 0);
        }
        a.absorb(b, &d);
        let now = T0 + DAY_MILLIS;
        assert_eq!(a.value(&d, now, 0), both.value(&d, now, 0));
        // 100 events in 16.5 hours, one day's bucket: 50 first and 34 second steps, the
        // earliest past 32 let go, and the count is a lower bound.
        assert!(both.value(&d, now, 0).approximate);
        let kept = both.b.range(i64::MIN, i64::MAX).next().unwrap();
        let extra = kept.x.as_ref().unwrap();
        assert_eq!((extra.s1.len(), extra.s2.len()), (32, 32));
        assert_eq!(extra.s1.first(), Some(&(T0 + 36 * 10 * 60_000)));
        let mut refused = funnel("session", "1h");
        assert!(refused.problem().unwrap().contains("window"));
        refused.window = Window::AllTime;
        refused.op = ComputedOp::Sum;
        refused.property = "total".into();
        assert!(refused.problem().unwrap().contains("then"));
    }

    #[test]
    fn comparisons() {
        let v = |x: Value| Some(x);
        assert!(Comparison::Eq.holds(v(json!(1)).as_ref(), &json!(1.0)));
        assert!(Comparison::Ne.holds(None, &json!("a")));
        assert!(!Comparison::Eq.holds(None, &json!(null)));
        // Times compare as times: 01:00 at +00:30 is 00:30 UTC.
        let midnight = v(json!("2026-01-01T00:00:00Z"));
        assert!(Comparison::Lt.holds(midnight.as_ref(), &json!("2026-01-01T01:00:00+00:30")));
        assert!(Comparison::Gt.holds(v(json!(3)).as_ref(), &json!(2)));
        assert!(!Comparison::Gt.holds(v(json!("3")).as_ref(), &json!(2)));
        assert!(Comparison::Contains.holds(v(json!(["a", "b"])).as_ref(), &json!("b")));
        assert!(Comparison::Contains.holds(v(json!("abc")).as_ref(), &json!("bc")));
        assert!(Comparison::StartsWith.holds(v(json!("abc")).as_ref(), &json!("ab")));
        assert!(Comparison::In.holds(v(json!("pro")).as_ref(), &json!(["free", "pro"])));
        assert!(Comparison::Exists.holds(v(json!(false)).as_ref(), &Value::Null));
        assert!(!Comparison::Exists.holds(v(json!(null)).as_ref(), &Value::Null));
    }
}

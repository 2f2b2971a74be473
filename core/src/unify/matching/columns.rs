//! Column profiling: what each column holds (by its header, then by its values), which
//! comparator fits it, which columns are strong identifiers, and which blocking keys keep the
//! number of compared pairs small while still putting true matches side by side.

use std::collections::HashMap;

use super::Table;
use super::compare::{Comparator, Kind};
use super::config::ResolveConfig;

/// One compared field.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedField {
    /// Column index.
    pub column: usize,
    /// Column name.
    pub name: String,
    /// What it holds.
    pub kind: Kind,
    /// How it is compared.
    pub comparator: Comparator,
    /// Why this kind: the header or the values.
    pub why: String,
}

/// A configuration that does not fit the records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A setting names a column the records lack.
    #[error("{setting}: no column {column:?} in the input")]
    NoColumn {
        /// The setting (`fields`).
        setting: &'static str,
        /// The column it names.
        column: String,
    },
    /// A setting names a column that is not compared.
    #[error("no compared column {column:?}")]
    NotCompared {
        /// The column.
        column: String,
    },
    /// No column can be compared.
    #[error("no column to compare")]
    NothingToCompare,
}

/// What `braid resolve` will do, before it does it.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Compared fields.
    pub fields: Vec<PlannedField>,
    /// Blocking rules: indexes into `fields` whose normalised values must all be equal.
    pub blocking: Vec<Vec<usize>>,
    /// Indexes into `fields` of strong identifiers.
    pub strong: Vec<usize>,
}

struct ColumnStats {
    filled: usize,
    distinct: usize,
    emails: usize,
    digits_only: usize,
    dates: usize,
    long_digits: usize,
}

fn stats(table: &Table, column: usize) -> ColumnStats {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut s = ColumnStats {
        filled: 0,
        distinct: 0,
        emails: 0,
        digits_only: 0,
        dates: 0,
        long_digits: 0,
    };
    for row in 0..table.rows.len() {
        let value = table.cell(row, column);
        if value.is_empty() {
            continue;
        }
        s.filled += 1;
        seen.insert(value);
        if value.contains('@') && value.contains('.') && !value.contains(' ') {
            s.emails += 1;
        }
        let digits: String = value.chars().filter(char::is_ascii_digit).collect();
        let separators = value
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '/' | '.' | ' ' | '+' | '(' | ')'));
        if separators && !digits.is_empty() {
            s.digits_only += 1;
            if digits.len() >= 9 {
                s.long_digits += 1;
            }
            if looks_like_date(&digits) {
                s.dates += 1;
            }
        }
    }
    s.distinct = seen.len();
    s
}

fn looks_like_date(digits: &str) -> bool {
    let (Some(year), Some(month), Some(day)) = (digits.get(..4), digits.get(4..6), digits.get(6..))
    else {
        return false;
    };
    digits.len() == 8
        && year
            .parse::<u32>()
            .is_ok_and(|y| (1880..=2100).contains(&y))
        && month.parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
        && day.parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))
}

/// The kind a header names, if it names one.
fn kind_of_header(header: &str) -> Option<Kind> {
    let h: String = header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .flat_map(char::to_lowercase)
        .collect();
    let has = |words: &[&str]| words.iter().any(|w| h.contains(w));
    Some(if has(&["email", "mail"]) {
        Kind::Email
    } else if has(&["phone", "mobile", "tel", "cell"]) {
        Kind::Phone
    } else if has(&["given", "first", "forename"]) {
        Kind::GivenName
    } else if has(&["surname", "last", "family"]) {
        Kind::Surname
    } else if has(&["name"]) {
        Kind::Name
    } else if has(&["birth", "dob", "date"]) {
        Kind::Date
    } else if has(&["postcode", "zip", "postal"]) {
        Kind::Postcode
    } else if has(&["streetnumber", "housenumber", "streetno", "houseno"]) {
        Kind::StreetNumber
    } else if has(&["address", "street"]) {
        Kind::Address
    } else if has(&["suburb", "city", "town", "locality"]) {
        Kind::City
    } else if has(&["state", "region", "county", "province", "country"]) {
        Kind::State
    } else if has(&[
        "device",
        "cookie",
        "anonymous",
        "anon",
        "idfa",
        "gaid",
        "advertising",
        "browser",
    ]) {
        Kind::Device
    } else if has(&[
        "ssn", "socsec", "social", "customer", "account", "loyalty", "passport", "licence",
        "license", "crm", "id",
    ]) {
        Kind::Id
    } else {
        return None;
    })
}

/// Chooses fields, strong identifiers and blocking rules for `table`, leaving out `skip`
/// (the id and truth columns), taking whatever `config` fixes.
///
/// # Errors
/// A column named in `config` that the table lacks, or no column to compare.
pub fn plan(table: &Table, config: &ResolveConfig, skip: &[usize]) -> Result<Plan, PlanError> {
    let mut fields = Vec::new();
    if config.fields.is_empty() {
        for (column, header) in table.headers.iter().enumerate() {
            if skip.contains(&column) || config.ignore.contains(header) {
                continue;
            }
            let s = stats(table, column);
            if s.filled == 0 {
                continue;
            }
            let share = |n: usize| n as f64 / s.filled as f64;
            let (kind, why) = match kind_of_header(header) {
                Some(Kind::Id) if share(s.digits_only) < 0.5 && share(s.distinct) < 0.5 => {
                    (Kind::Text, "header, values not id-like".to_owned())
                }
                Some(kind) => (kind, "header".to_owned()),
                None if share(s.emails) >= 0.8 => (Kind::Email, "values: emails".to_owned()),
                None if share(s.dates) >= 0.8 => (Kind::Date, "values: dates".to_owned()),
                None if share(s.long_digits) >= 0.8 && share(s.distinct) >= 0.8 => {
                    (Kind::Id, "values: long unique numbers".to_owned())
                }
                None if share(s.digits_only) >= 0.8 => (Kind::Number, "values: numbers".to_owned()),
                None => (Kind::Text, "values: text".to_owned()),
            };
            if matches!(kind, Kind::Id | Kind::Device) && s.distinct * 20 < s.filled {
                // Few distinct "ids": a category, not an identifier.
                continue;
            }
            if kind == Kind::Text && s.distinct <= 20 && s.distinct * 100 <= s.filled {
                // A handful of values over many records (a source, a status): a category,
                // which says nothing about who a record is.
                continue;
            }
            fields.push(PlannedField {
                column,
                name: header.clone(),
                kind,
                comparator: kind.comparator(),
                why,
            });
        }
    } else {
        for field in &config.fields {
            let column = table
                .column(&field.column)
                .ok_or_else(|| PlanError::NoColumn {
                    setting: "fields",
                    column: field.column.clone(),
                })?;
            fields.push(PlannedField {
                column,
                name: field.column.clone(),
                kind: field.kind,
                comparator: field.kind.comparator(),
                why: "config".to_owned(),
            });
        }
    }
    if fields.is_empty() {
        return Err(PlanError::NothingToCompare);
    }
    let index_of = |name: &str| -> Result<usize, PlanError> {
        fields
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| PlanError::NotCompared {
                column: name.to_owned(),
            })
    };

    let strong = match &config.strong {
        Some(names) => names
            .iter()
            .map(|n| index_of(n))
            .collect::<Result<Vec<_>, _>>()?,
        None => fields
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f.kind, Kind::Email | Kind::Phone | Kind::Id | Kind::Device))
            .filter(|(_, f)| {
                let s = stats(table, f.column);
                // An identifier has many values, each on few records (a person's several
                // records share one: a fifth as many values as records is still one).
                s.filled > 0 && s.distinct as f64 >= 0.2 * s.filled as f64
            })
            .map(|(i, _)| i)
            .collect(),
    };

    let blocking = if config.blocking.is_empty() {
        choose_blocking(table, &fields)
    } else {
        config
            .blocking
            .iter()
            .map(|rule| {
                rule.iter()
                    .map(|n| index_of(n))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(Plan {
        fields,
        blocking,
        strong,
    })
}

/// Pairs a blocking rule makes: Σ over its keys of n(n−1)/2.
fn rule_cost(table: &Table, fields: &[PlannedField], rule: &[usize]) -> u64 {
    let mut counts: HashMap<String, u64, foldhash::fast::RandomState> = HashMap::default();
    for row in 0..table.rows.len() {
        if let Some(key) = block_key(table, fields, rule, row) {
            *counts.entry(key).or_default() += 1;
        }
    }
    counts.values().map(|n| n * n.saturating_sub(1) / 2).sum()
}

/// A row's key under a blocking rule; `None` when a value is missing.
pub(crate) fn block_key(
    table: &Table,
    fields: &[PlannedField],
    rule: &[usize],
    row: usize,
) -> Option<String> {
    let mut key = String::new();
    for &index in rule {
        let field = fields.get(index)?;
        let value = field.kind.normalize(table.cell(row, field.column));
        if value.is_empty() {
            return None;
        }
        key.push_str(&value);
        key.push('\u{1f}');
    }
    Some(key)
}

/// Single fields whose blocks stay small, then pairs of coarser ones: up to eight rules, the
/// most selective first. A pair of true duplicates with a typo in one field still meets in the
/// rule of another field.
fn choose_blocking(table: &Table, fields: &[PlannedField]) -> Vec<Vec<usize>> {
    let n = table.rows.len() as u64;
    let budget = (5 * n).max(10_000);
    let usable: Vec<usize> = (0..fields.len())
        .filter(|&i| fields.get(i).is_some_and(|f| f.kind != Kind::State))
        .collect();
    let mut rules: Vec<(u64, Vec<usize>)> = Vec::new();
    let mut coarse = Vec::new();
    for &i in &usable {
        let cost = rule_cost(table, fields, &[i]);
        if cost <= budget {
            rules.push((cost, vec![i]));
        } else {
            coarse.push(i);
        }
    }
    for (a_at, &a) in coarse.iter().enumerate() {
        for &b in coarse.iter().skip(a_at + 1) {
            let cost = rule_cost(table, fields, &[a, b]);
            if cost <= budget {
                rules.push((cost, vec![a, b]));
            }
        }
    }
    rules.sort();
    rules.into_iter().take(8).map(|(_, rule)| rule).collect()
}

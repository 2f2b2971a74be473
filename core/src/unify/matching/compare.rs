//! Comparators: how close two values of a field are, as a level (0: different; the highest:
//! identical), from `strsim` string similarities, edit distance, and date and number
//! distances. Missing values compare as `None`: no evidence either way.

use serde::{Deserialize, Serialize};

use super::similarity::{jaro_winkler, within_one_edit};

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A person's given name.
    GivenName,
    /// A family name.
    Surname,
    /// A full name.
    Name,
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A date (of birth): compared on its digits.
    Date,
    /// A postcode.
    Postcode,
    /// A house number.
    StreetNumber,
    /// Street address lines.
    Address,
    /// A town or suburb.
    City,
    /// A state or region (few values).
    State,
    /// A personal identifier (customer number, social security number ...): one person's
    /// only, though it may change.
    Id,
    /// A device or browser identifier (device id, advertising id, cookie): a household may
    /// share one.
    Device,
    /// A number.
    Number,
    /// Anything else.
    Text,
}

impl Kind {
    /// A contact point or device: people who live together may share one (a landline, a
    /// family mailbox, a tablet), so a shared value links only records whose names agree.
    pub fn household_shared(self) -> bool {
        matches!(self, Kind::Email | Kind::Phone | Kind::Device)
    }

    /// Its comparator.
    pub fn comparator(self) -> Comparator {
        match self {
            Kind::GivenName
            | Kind::Surname
            | Kind::Name
            | Kind::City
            | Kind::Address
            | Kind::Text => Comparator::JaroWinkler,
            Kind::State | Kind::Device => Comparator::Exact,
            Kind::Email => Comparator::Email,
            Kind::Phone | Kind::Postcode | Kind::Id => Comparator::Levenshtein,
            Kind::Date => Comparator::Date,
            Kind::StreetNumber | Kind::Number => Comparator::Numeric,
        }
    }

    /// How values are normalised before comparing.
    pub fn normalize(self, value: &str) -> String {
        let value = value.trim();
        match self {
            Kind::Date => value.chars().filter(char::is_ascii_digit).collect(),
            // The last nine digits: they survive a country code or a trunk zero (`+1 555 …`
            // and `555 …`, `+33 6 …` and `06 …`), and nine digits still tell numbers apart.
            Kind::Phone => {
                let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
                let from = digits.len().saturating_sub(9);
                digits.get(from..).unwrap_or_default().iter().collect()
            }
            Kind::GivenName => {
                let name = value
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase();
                super::names::fold_given_name(&name).to_owned()
            }
            Kind::Postcode | Kind::Id | Kind::Device => value
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .flat_map(char::to_lowercase)
                .collect(),
            _ => value
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
        }
    }
}

/// How two values are compared, and its levels (lowest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparator {
    /// different / equal.
    Exact,
    /// different / Jaro–Winkler ≥ 0.80 / ≥ 0.92 / equal.
    JaroWinkler,
    /// different / Levenshtein ≤ 2 / ≤ 1 / equal.
    Levenshtein,
    /// different / same year and month, or one edit, or day and month swapped / equal.
    Date,
    /// different / one typo in the local part at the same domain / equal. Local parts that
    /// differ only in dots, dashes, underscores or digits are different addresses
    /// (`jamessmith`, `james.smith`, `james.smith2`: three people), and so is one local part
    /// at two domains (`jennifermiller@` is several people).
    Email,
    /// different / within 1 (or one edit) / equal.
    Numeric,
}

impl Comparator {
    /// How many levels it has.
    pub fn levels(self) -> usize {
        match self {
            Comparator::Exact => 2,
            Comparator::Date | Comparator::Numeric | Comparator::Email => 3,
            Comparator::JaroWinkler | Comparator::Levenshtein => 4,
        }
    }

    /// Names of the levels, for reports.
    pub fn level_names(self) -> &'static [&'static str] {
        match self {
            Comparator::Exact => &["different", "equal"],
            Comparator::JaroWinkler => &["different", "jw>=0.80", "jw>=0.92", "equal"],
            Comparator::Levenshtein => &["different", "lev<=2", "lev<=1", "equal"],
            Comparator::Email => &["different", "typo", "equal"],
            Comparator::Date => &["different", "close", "equal"],
            Comparator::Numeric => &["different", "within 1", "equal"],
        }
    }

    /// The level of two normalised values; `None` when either is empty.
    pub fn level(self, a: &str, b: &str) -> Option<u8> {
        if a.is_empty() || b.is_empty() {
            return None;
        }
        if a == b {
            return Some(u8::try_from(self.levels() - 1).unwrap_or(0));
        }
        Some(match self {
            Comparator::Exact => 0,
            Comparator::JaroWinkler => {
                let similarity = jaro_winkler(a, b);
                if similarity >= 0.92 {
                    2
                } else {
                    u8::from(similarity >= 0.80)
                }
            }
            Comparator::Levenshtein => match strsim::levenshtein(a, b) {
                1 => 2,
                2 => 1,
                _ => 0,
            },
            Comparator::Date => u8::from(dates_close(a, b)),
            Comparator::Email => emails_close(a, b),
            Comparator::Numeric => {
                let close = match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1.0,
                    _ => strsim::levenshtein(a, b) <= 1,
                };
                u8::from(close)
            }
        })
    }
}

fn emails_close(a: &str, b: &str) -> u8 {
    let (local_a, domain_a) = a.rsplit_once('@').unwrap_or((a, ""));
    let (local_b, domain_b) = b.rsplit_once('@').unwrap_or((b, ""));
    let letters = |local: &str| -> String {
        local
            .chars()
            .filter(|c| !matches!(c, '.' | '-' | '_' | '+') && !c.is_ascii_digit())
            .collect()
    };
    let typo = domain_a == domain_b
        && letters(local_a) != letters(local_b)
        && within_one_edit(local_a.as_bytes(), local_b.as_bytes());
    u8::from(typo)
}

/// Dates as digits (`19850412`): one typo, a transposition, day and month swapped, or the
/// same year and month.
fn dates_close(a: &str, b: &str) -> bool {
    if within_one_edit(a.as_bytes(), b.as_bytes()) {
        return true;
    }
    if a.len() == 8 && b.len() == 8 {
        let (ya, ma, da) = (a.get(..4), a.get(4..6), a.get(6..));
        let (yb, mb, db) = (b.get(..4), b.get(4..6), b.get(6..));
        return ya == yb && (ma == mb || (ma == db && da == mb));
    }
    false
}

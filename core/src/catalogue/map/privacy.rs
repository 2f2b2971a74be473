//! Personal data in the map as it is shown: a path's class (by its name and its values) and
//! the masking of every value a reader sees.

use std::collections::BTreeMap;

use serde::Serialize;

use super::PathEntry;
use super::detect::{self, PiiClass, PiiKind, Semantic, mask, pii_of_name};

/// The personal data of a path.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PiiView {
    /// Red, yellow or green.
    pub class: PiiClass,
    /// What its name says it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_name: Option<PiiKind>,
    /// What its values are, and how many.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub in_values: BTreeMap<PiiKind, u64>,
}

/// The personal data of a path: by its name, or by values (a semantic type of personal data
/// on any value makes it personal).
pub(super) fn pii_view(path: &str, stats: &PathEntry) -> PiiView {
    let by_name = pii_of_name(path);
    let class = by_name
        .iter()
        .chain(stats.pii_values.keys())
        .map(|k| k.class())
        .max()
        .unwrap_or(PiiClass::Green);
    PiiView {
        class,
        by_name,
        in_values: stats.pii_values.clone(),
    }
}

/// The kind of personal data most of a path's values are.
pub(super) fn main_kind(stats: &PathEntry) -> Option<PiiKind> {
    stats
        .pii_values
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, _)| *k)
}

/// A value as the map shows it: masked as `kind` on a personal path, and otherwise with any
/// personal data inside it masked.
pub(super) fn show(text: &str, class: PiiClass, kind: Option<PiiKind>) -> String {
    if class != PiiClass::Green
        && let Some(kind) = kind
        && detect::pii_inside(text).is_none()
        && semantic_of_pii(text).is_none()
    {
        return mask(text, kind);
    }
    mask_inside(text)
}

fn semantic_of_pii(text: &str) -> Option<PiiKind> {
    detect::semantic_of_text("", text).and_then(Semantic::pii)
}

/// The text with each email address, phone number or card number in it masked.
fn mask_inside(text: &str) -> String {
    if let Some(kind) = semantic_of_pii(text) {
        return mask(text, kind);
    }
    if detect::pii_inside(text).is_none() {
        return text.to_owned();
    }
    text.split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c: char| ",;:<>()[]\"'.".contains(c));
            match semantic_of_pii(bare) {
                Some(kind) => word.replace(bare, &mask(bare, kind)),
                None if bare.chars().any(|c| c.is_ascii_digit()) => "***".to_owned(),
                None => word.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

//! `rules.toml` for `braid resolve`: every part optional; what is left out is chosen by
//! profiling the columns.

use serde::Deserialize;

use super::compare::Kind;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResolveConfig {
    /// The fields compared, and how (default: chosen from the columns).
    pub fields: Vec<FieldConfig>,
    /// Blocking rules: each a list of columns whose values must all be equal for two records
    /// to be compared (default: chosen from the columns).
    pub blocking: Vec<Vec<String>>,
    /// Columns that identify a person on their own (emails, customer numbers ...): records
    /// sharing a value are linked without the model (default: chosen from the columns).
    pub strong: Option<Vec<String>>,
    /// A strong value shared by more records than this is a placeholder or a shared account,
    /// and links nothing (the identity graph's guard against shared values). Fewer records
    /// with different people's names on them are a household's value, and link nothing
    /// either.
    pub max_shared: usize,
    /// Match probability at or above which two records are linked.
    pub threshold: f64,
    /// EM iterations at most.
    pub em_iterations: usize,
    /// Random pairs sampled to estimate the u probabilities of the partial levels (the equal
    /// level's comes from the value frequencies).
    pub u_samples: usize,
    /// The largest cluster allowed: a link that would make a bigger one is refused.
    pub max_cluster: usize,
    /// Columns never compared (besides the id and truth columns).
    pub ignore: Vec<String>,
}

impl Default for ResolveConfig {
    fn default() -> Self {
        ResolveConfig {
            fields: Vec::new(),
            blocking: Vec::new(),
            strong: None,
            max_shared: 20,
            threshold: 0.95,
            em_iterations: 25,
            u_samples: 50_000,
            max_cluster: 50,
            ignore: Vec::new(),
        }
    }
}

/// One compared field.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The column.
    pub column: String,
    /// What it holds (picks the comparator).
    pub kind: Kind,
    /// Fixed m probabilities per level (lowest level first), instead of EM's.
    #[serde(default)]
    pub m: Option<Vec<f64>>,
    /// Fixed u probabilities per level, instead of the random-pair estimate.
    #[serde(default)]
    pub u: Option<Vec<f64>>,
}

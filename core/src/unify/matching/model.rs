//! The Fellegi–Sunter model: for each field, the probability of each comparison level among
//! true matches (m) and among non-matches (u); a pair's match weight is the log-ratio of the
//! products. u is estimated from random pairs (nearly all non-matches), m and the share of
//! matches among blocked pairs (λ) by expectation–maximisation over the blocked pairs.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::Table;
use super::cluster::Clusters;
use super::columns::{Plan, PlanError, block_key, plan};
use super::compare::{Comparator, Kind};
use super::config::ResolveConfig;

/// A missing value in a comparison vector.
const MISSING: u8 = u8::MAX;

/// One field of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldModel {
    /// Column name.
    pub name: String,
    /// What it holds.
    pub kind: Kind,
    /// How it is compared.
    pub comparator: Comparator,
    /// P(level | match), lowest level first.
    pub m: Vec<f64>,
    /// P(level | non-match).
    pub u: Vec<f64>,
}

impl FieldModel {
    /// The match weight (log2 m/u) of a level.
    pub fn weight(&self, level: usize) -> f64 {
        let m = self.m.get(level).copied().unwrap_or(f64::MIN_POSITIVE);
        let u = self.u.get(level).copied().unwrap_or(1.0);
        (m / u).log2()
    }
}

/// The estimated model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Per compared field.
    pub fields: Vec<FieldModel>,
    /// The share of true matches among blocked pairs.
    pub lambda: f64,
    /// EM iterations run.
    pub iterations: usize,
}

/// What `resolve` found.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// What it chose to do.
    pub plan: Plan,
    /// The model it estimated.
    pub model: Model,
    /// The clusters.
    pub clusters: Clusters,
    /// Pairs compared (after blocking).
    pub candidate_pairs: usize,
    /// Pairs at or above the threshold.
    pub matched_pairs: usize,
    /// Pairs linked by a shared strong identifier.
    pub strong_links: usize,
    /// Strong values ignored because too many records share them.
    pub shared_values_ignored: usize,
    /// Links refused because they would make a cluster larger than `max_cluster`.
    pub refused_links: usize,
}

/// A deterministic generator for sampling random pairs (splitmix64).
struct Sampler(u64);

impl Sampler {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // n is at most the row count: the product fits in u128 and the result in usize.
        usize::try_from((u128::from(z) * n as u128) >> 64).unwrap_or(0)
    }
}

/// Resolves `table` into clusters. `skip`: columns never compared (the id column, a truth
/// column).
///
/// # Errors
/// When the configuration names columns the table lacks, or nothing can be compared.
pub fn resolve(
    table: &Table,
    config: &ResolveConfig,
    skip: &[usize],
) -> Result<Resolution, PlanError> {
    let plan = plan(table, config, skip)?;
    let data = Data::new(table, &plan);
    let (strong_pairs, shared_values_ignored) = data.strong_pairs(config.max_shared);
    let mut candidates = data.blocked_pairs();
    candidates.extend_from_slice(&strong_pairs);
    candidates.sort_unstable();
    candidates.dedup();

    // Comparison vectors of all candidate pairs, one after the other (`width` levels each).
    let width = plan.fields.len();
    let flat = in_parallel(&candidates, |chunk| {
        let mut out = Vec::with_capacity(chunk.len() * width);
        for &(a, b) in chunk {
            data.compare(a as usize, b as usize, &mut out);
        }
        out
    });
    let vectors: Vec<&[u8]> = flat.chunks(width.max(1)).collect();

    let mut fields = data.initial_model(config);
    let fixed_m: Vec<bool> = (0..fields.len())
        .map(|i| config.fields.get(i).is_some_and(|f| f.m.is_some()))
        .collect();
    let start = (table.rows.len() as f64 / vectors.len().max(1) as f64).clamp(0.01, 0.5);
    let (lambda, iterations) =
        expectation_maximisation(&mut fields, &fixed_m, &vectors, start, config.em_iterations);
    let weights = Weights::new(&fields, lambda);

    // Clusters: strong links first, then model matches from the most certain down.
    let mut clusters = Clusters::new(table.rows.len(), config.max_cluster);
    let mut refused_links = 0;
    let mut matches: Vec<(f64, u32, u32)> = candidates
        .iter()
        .zip(&vectors)
        .map(|(&(a, b), vector)| (weights.probability(vector), a, b))
        .filter(|&(p, _, _)| p >= config.threshold)
        .collect();
    matches.sort_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    let model_links = matches.iter().map(|&(_, a, b)| (a, b));
    for (a, b) in strong_pairs.iter().copied().chain(model_links) {
        if !clusters.union(a as usize, b as usize) {
            refused_links += 1;
        }
    }
    Ok(Resolution {
        plan,
        model: Model {
            fields,
            lambda,
            iterations,
        },
        clusters,
        candidate_pairs: candidates.len(),
        matched_pairs: matches.len(),
        strong_links: strong_pairs.len(),
        shared_values_ignored,
        refused_links,
    })
}

/// The table's compared fields, normalised once.
struct Data<'t> {
    table: &'t Table,
    plan: &'t Plan,
    /// Per field, per row.
    values: Vec<Vec<String>>,
}

impl<'t> Data<'t> {
    fn new(table: &'t Table, plan: &'t Plan) -> Data<'t> {
        let values = plan
            .fields
            .iter()
            .map(|f| {
                (0..table.rows.len())
                    .map(|r| f.kind.normalize(table.cell(r, f.column)))
                    .collect()
            })
            .collect();
        Data {
            table,
            plan,
            values,
        }
    }

    /// Whether two rows may be compared: any two when deduplicating, rows of different files
    /// when linking.
    fn comparable(&self, a: usize, b: usize) -> bool {
        self.table.sources.is_empty() || self.table.sources.get(a) != self.table.sources.get(b)
    }

    /// Appends the comparison levels of rows `a` and `b`, one per field.
    fn compare(&self, a: usize, b: usize, out: &mut Vec<u8>) {
        for (field, column) in self.plan.fields.iter().zip(&self.values) {
            let x = column.get(a).map_or("", String::as_str);
            let y = column.get(b).map_or("", String::as_str);
            out.push(field.comparator.level(x, y).unwrap_or(MISSING));
        }
    }

    /// Every pair of comparable rows within one block, for each rule, unsorted and with
    /// repeats (a pair can share several blocks).
    fn blocked_pairs(&self) -> Vec<(u32, u32)> {
        let mut pairs = Vec::new();
        for rule in &self.plan.blocking {
            let mut blocks: HashMap<String, Vec<u32>, RandomState> = HashMap::default();
            for row in 0..self.table.rows.len() {
                if let (Some(key), Ok(row)) = (
                    block_key(self.table, &self.plan.fields, rule, row),
                    u32::try_from(row),
                ) {
                    blocks.entry(key).or_default().push(row);
                }
            }
            for members in blocks.values() {
                self.push_pairs(members, &mut pairs);
            }
        }
        pairs
    }

    fn push_pairs(&self, members: &[u32], pairs: &mut Vec<(u32, u32)>) {
        for (at, &a) in members.iter().enumerate() {
            for &b in members.iter().skip(at + 1) {
                if self.comparable(a as usize, b as usize) {
                    pairs.push((a.min(b), a.max(b)));
                }
            }
        }
    }

    /// Pairs sharing a strong identifier, and how many values were ignored because more than
    /// `max_shared` rows share them.
    fn strong_pairs(&self, max_shared: usize) -> (Vec<(u32, u32)>, usize) {
        let mut pairs = Vec::new();
        let mut ignored = 0;
        for &field in &self.plan.strong {
            let Some(column) = self.values.get(field) else {
                continue;
            };
            let mut groups: HashMap<&str, Vec<u32>, RandomState> = HashMap::default();
            for (row, value) in column.iter().enumerate() {
                if let (false, Ok(row)) = (value.is_empty(), u32::try_from(row)) {
                    groups.entry(value.as_str()).or_default().push(row);
                }
            }
            for members in groups.values().filter(|m| m.len() > 1) {
                if members.len() > max_shared {
                    ignored += 1;
                } else {
                    self.push_pairs(members, &mut pairs);
                }
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        (pairs, ignored)
    }

    /// The starting model: u from random pairs (the equal level from value frequencies), m
    /// leaning to agreement; parameters the configuration fixes replace both.
    fn initial_model(&self, config: &ResolveConfig) -> Vec<FieldModel> {
        let rows = self.table.rows.len();
        let mut u_counts: Vec<Vec<f64>> = self
            .plan
            .fields
            .iter()
            .map(|f| vec![1.0; f.comparator.levels()])
            .collect();
        let mut sampler = Sampler(0x5eed);
        let wanted = if rows < 2 {
            0
        } else {
            config.u_samples.min(rows * (rows - 1) / 2)
        };
        let (mut drawn, mut attempts) = (0, 0);
        let mut vector = Vec::with_capacity(self.plan.fields.len());
        while drawn < wanted && attempts < wanted * 4 {
            attempts += 1;
            let (a, b) = (sampler.below(rows), sampler.below(rows));
            if a == b || !self.comparable(a, b) {
                continue;
            }
            drawn += 1;
            vector.clear();
            self.compare(a, b, &mut vector);
            for (counts, &level) in u_counts.iter_mut().zip(&vector) {
                if let Some(count) = counts.get_mut(usize::from(level)) {
                    *count += 1.0;
                }
            }
        }
        // The top level, "equal", exactly from the value frequencies (the sample sees too few
        // equal pairs of a near-unique field); the sample shares out the rest among the others.
        for (counts, column) in u_counts.iter_mut().zip(&self.values) {
            let equal = equal_share(column, &self.table.sources);
            let levels = counts.len();
            let (others, top) = counts.split_at_mut(levels.saturating_sub(1));
            let rest: f64 = others.iter().sum();
            for count in others.iter_mut() {
                *count = *count / rest * (1.0 - equal);
            }
            if let Some(top) = top.first_mut() {
                *top = equal.max(1e-9);
            }
        }
        let mut fields: Vec<FieldModel> = self
            .plan
            .fields
            .iter()
            .zip(u_counts)
            .map(|(f, u)| {
                let levels = f.comparator.levels();
                // Start: matches mostly agree exactly.
                let mut m = vec![0.1 / (levels - 1) as f64; levels];
                if let Some(top) = m.last_mut() {
                    *top = 0.9;
                }
                FieldModel {
                    name: f.name.clone(),
                    kind: f.kind,
                    comparator: f.comparator,
                    m,
                    u,
                }
            })
            .collect();
        for (model, fixed) in fields.iter_mut().zip(config.fields.iter()) {
            if let Some(m) = fixed.m.clone().filter(|m| m.len() == model.m.len()) {
                model.m = m;
            }
            if let Some(u) = fixed.u.clone().filter(|u| u.len() == model.u.len()) {
                model.u = u;
            }
        }
        fields
    }
}

/// EM over the candidate pairs: each round scores every pair with the current model (E), then
/// sets m to the levels' shares among the pairs weighted by their match probability, and λ to
/// the mean probability (M). Returns λ and the rounds run.
fn expectation_maximisation(
    fields: &mut [FieldModel],
    fixed_m: &[bool],
    vectors: &[&[u8]],
    start: f64,
    rounds: usize,
) -> (f64, usize) {
    let mut lambda = start;
    let mut probabilities = vec![0.0; vectors.len()];
    let mut iterations = 0;
    for _ in 0..rounds {
        iterations += 1;
        let weights = Weights::new(fields, lambda);
        for (p, vector) in probabilities.iter_mut().zip(vectors) {
            *p = weights.probability(vector);
        }
        let mut change: f64 = 0.0;
        for (index, field) in fields.iter_mut().enumerate() {
            if fixed_m.get(index).copied().unwrap_or(false) {
                continue;
            }
            let mut sums = vec![0.01; field.m.len()];
            for (p, vector) in probabilities.iter().zip(vectors) {
                let level = vector.get(index).copied().unwrap_or(MISSING);
                if let Some(sum) = sums.get_mut(usize::from(level)) {
                    *sum += p;
                }
            }
            let total: f64 = sums.iter().sum();
            let m: Vec<f64> = sums.iter().map(|s| s / total).collect();
            change = field
                .m
                .iter()
                .zip(&m)
                .fold(change, |c, (a, b)| c.max((a - b).abs()));
            field.m = m;
        }
        let next = (probabilities.iter().sum::<f64>() / probabilities.len().max(1) as f64)
            .clamp(1e-6, 1.0 - 1e-6);
        change = change.max((next - lambda).abs());
        lambda = next;
        if change < 1e-5 {
            break;
        }
    }
    (lambda, iterations)
}

/// The model's log-likelihood ratios, computed once per EM iteration instead of per pair.
struct Weights {
    prior: f64,
    /// Per field, per level: ln(m / u).
    levels: Vec<Vec<f64>>,
}

impl Weights {
    fn new(fields: &[FieldModel], lambda: f64) -> Weights {
        let levels = fields
            .iter()
            .map(|f| {
                f.m.iter()
                    .zip(&f.u)
                    .map(|(m, u)| (m.max(1e-9) / u.max(1e-9)).ln())
                    .collect()
            })
            .collect();
        Weights {
            prior: (lambda / (1.0 - lambda)).ln(),
            levels,
        }
    }

    /// The posterior probability that a pair with these comparison levels is a match.
    fn probability(&self, vector: &[u8]) -> f64 {
        let mut log_ratio = self.prior;
        for (levels, &level) in self.levels.iter().zip(vector) {
            if level != MISSING {
                log_ratio += levels.get(usize::from(level)).copied().unwrap_or(0.0);
            }
        }
        1.0 / (1.0 + (-log_ratio).exp())
    }
}

/// The share of equal values among pairs of records that both have a value (across sources
/// when linking): the sum over values of `n_v (n_v − 1)` over `n (n − 1)`, or of `a_v b_v`
/// over `a b`.
fn equal_share(column: &[String], sources: &[u32]) -> f64 {
    let mut counts: HashMap<&str, (f64, f64)> = HashMap::new();
    let (mut in_a, mut in_b) = (0.0, 0.0);
    for (row, value) in column.iter().enumerate() {
        if value.is_empty() {
            continue;
        }
        let second = sources.get(row).is_some_and(|s| *s != 0);
        let entry = counts.entry(value.as_str()).or_default();
        if second {
            entry.1 += 1.0;
            in_b += 1.0;
        } else {
            entry.0 += 1.0;
            in_a += 1.0;
        }
    }
    let share = if sources.is_empty() {
        let pairs: f64 = counts.values().map(|(n, _)| n * (n - 1.0)).sum();
        pairs / (in_a * (in_a - 1.0))
    } else {
        let pairs: f64 = counts.values().map(|(a, b)| a * b).sum();
        pairs / (in_a * in_b)
    };
    if share.is_finite() { share } else { 0.0 }
}

/// `work` over `items` in a few chunks, on as many threads as the machine has (one on wasm32),
/// the outputs concatenated in order: comparing is pure, so the result does not depend on it.
fn in_parallel<T: Sync, F>(items: &[T], work: F) -> Vec<u8>
where
    F: Fn(&[T]) -> Vec<u8> + Sync,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        if threads > 1 && items.len() >= 10_000 {
            let size = items.len().div_ceil(threads);
            let parts: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = items
                    .chunks(size)
                    .map(|chunk| scope.spawn(|| work(chunk)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            return parts.concat();
        }
    }
    work(items)
}

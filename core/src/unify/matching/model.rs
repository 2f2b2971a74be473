//! The Fellegi–Sunter model: for each field, the probability of each comparison level among
//! true matches (m) and among non-matches (u); a pair's match weight is the log-ratio of the
//! products. u is estimated from random pairs (nearly all non-matches), m and the share of
//! matches among blocked pairs (λ) by expectation–maximisation over the blocked pairs.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::Table;
use super::cluster::{Clusters, Joined};
use super::columns::{Plan, PlanError, block_key, plan};
use super::compare::{Comparator, Kind};
use super::config::ResolveConfig;
use super::names::{PersonName, meet, one_person, two_usual_given, usual_given};

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
    /// The share of true matches among the blocked pairs that tell something (EM's).
    pub lambda: f64,
    /// The probability that two records picked at random match: the prior of every pair.
    pub prior: f64,
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
    /// Pairs the model put at or above the threshold.
    pub matched_pairs: usize,
    /// Pairs sharing a strong identifier value that links (not shared by several people).
    pub strong_links: usize,
    /// Which evidence joined the records into their clusters.
    pub links: Links,
    /// Strong identifier values that link nothing on their own: on too many records, or on
    /// records of people with different names (a household's landline or family mailbox).
    pub shared: Vec<SharedValue>,
    /// Links refused because they would make a cluster larger than `max_cluster`.
    pub refused_links: usize,
    /// Links refused because the two clusters hold different people's names.
    pub refused_by_names: usize,
    /// Why the model was not used, when it could not tell people apart (only strong
    /// identifiers linked then).
    pub degenerate: Option<String>,
    /// Records of clusters the cap stopped from growing: their clusters are not to be trusted.
    unsure: Vec<u32>,
}

impl Resolution {
    /// The cluster labels (as `Clusters::labels`) of clusters that a refused link touched
    /// because of the size cap: what was linked may be wrong, or incomplete.
    pub fn unsure_clusters(&mut self) -> std::collections::BTreeSet<usize> {
        let rows = std::mem::take(&mut self.unsure);
        let labels = rows
            .iter()
            .map(|&row| self.clusters.find(row as usize))
            .collect();
        self.unsure = rows;
        labels
    }
}

/// Records joined into clusters by each kind of evidence (a record joined by two kinds counts
/// for the first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links {
    /// Per strong identifier (in `plan.strong` order): records joined by a shared value.
    pub strong: Vec<usize>,
    /// Records joined by the model's matches.
    pub model: usize,
}

/// A strong identifier value that links nothing on its own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SharedValue {
    /// Index into `plan.fields`.
    pub field: usize,
    /// The value, normalised.
    pub value: String,
    /// On how many records.
    pub records: usize,
    /// Why.
    pub why: Shared,
}

/// Why a strong value links nothing on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shared {
    /// More records than `max_shared` have it: a placeholder or a shared account.
    Placeholder,
    /// Records with different people's names have it: a household's or a team's.
    People,
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
/// 1. Strong identifiers: records sharing a value are linked, unless too many records share it
///    (a placeholder) or records with different people's names do (a household's landline or
///    mailbox): such a value links nothing and weighs nothing in the model.
/// 2. The model: comparison levels per field of every blocked pair, a field empty on either
///    side contributing nothing; u from random pairs with term-frequency adjustment of exact
///    agreement (agreeing on "smith" weighs less than on "zbigniew"); m from the strongly
///    linked pairs where there are enough, by EM for the other fields (a pair not voting on
///    the fields its blocking rules forced to agree); the prior from EM's expected matches
///    over all pairs. A degenerate model is reported and not used.
/// 3. Clusters: strong links, then matches from the most certain down; a join is refused when
///    it would put two people's names in one cluster (unless a personal field agrees), when
///    all the compared records of the two clusters together do not say match, or past the size
///    cap (reported).
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
    let StrongGroups {
        groups,
        shared,
        households,
    } = data.strong_groups(config.max_shared);
    let flagged: std::collections::HashSet<(usize, &str), RandomState> = shared
        .iter()
        .filter(|s| s.why == Shared::People)
        .map(|s| (s.field, s.value.as_str()))
        .collect();
    let (candidates, forced) = data.candidates(&groups, &households);
    let strong_links = groups
        .iter()
        .map(|(_, members)| members.len() * (members.len() - 1) / 2)
        .sum();

    // Comparison vectors of all candidate pairs, one after the other (`width` levels each).
    let width = plan.fields.len();
    let flat = in_parallel(&candidates, |chunk| {
        let mut out = Vec::with_capacity(chunk.len() * width);
        for &(a, b) in chunk {
            data.compare(a as usize, b as usize, &flagged, &mut out);
        }
        out
    });
    let vectors: Vec<&[u8]> = flat.chunks(width.max(1)).collect();

    // Pairs a strong value links, and its field (which they agree on by construction).
    let anchors: Vec<(u32, u32, usize)> = groups
        .iter()
        .flat_map(|(field, m)| {
            m.windows(2).filter_map(|w| match w {
                [x, y] => Some((*x, *y, *field)),
                _ => None,
            })
        })
        .collect();
    let (mut fields, anchored) = data.initial_model(config, &anchors, &flagged);
    // m is EM's only for the fields neither the configuration nor the strong links fix.
    let fixed_m: Vec<bool> = (0..fields.len())
        .map(|i| {
            config.fields.get(i).is_some_and(|f| f.m.is_some())
                || anchored.get(i).copied().unwrap_or(false)
        })
        .collect();
    let start = (strong_links as f64 / vectors.len().max(1) as f64).clamp(0.01, 0.5);
    let em = expectation_maximisation(
        &mut fields,
        &fixed_m,
        &patterns(&vectors, &forced),
        start,
        config.em_iterations,
    );
    let total_pairs = data.total_pairs();
    let prior = (em.expected_matches / total_pairs).clamp(1e-12, 0.5);
    let weights = Weights::new(&fields, prior);
    let tf = data.term_frequencies(&fields);

    let (matches, neighbours) = score(
        &data,
        &candidates,
        &vectors,
        &weights,
        &tf,
        config.threshold,
    );
    let degenerate = degenerate(em.lambda, matches.len(), vectors.len(), table.rows.len());
    let Linked {
        clusters,
        links,
        refused_links,
        refused_by_names,
        unsure,
    } = link(
        &data,
        config,
        &groups,
        (&matches, &neighbours),
        degenerate.is_none(),
    );
    Ok(Resolution {
        plan,
        model: Model {
            fields,
            lambda: em.lambda,
            prior,
            iterations: em.iterations,
        },
        clusters,
        candidate_pairs: candidates.len(),
        matched_pairs: matches.len(),
        strong_links,
        links,
        shared,
        refused_links,
        refused_by_names,
        degenerate,
        unsure,
    })
}

/// Why the model cannot be used, if it cannot: EM ran to its bound, or the model matches
/// most compared pairs where there are many more pairs than records.
fn degenerate(lambda: f64, matches: usize, pairs: usize, records: usize) -> Option<String> {
    if lambda >= LAMBDA_BOUND {
        return Some(format!(
            "EM reached its bound (λ {lambda:.2} among compared pairs): the fields do not tell \
             people apart; only strong identifiers linked records"
        ));
    }
    (matches > 2 * pairs / 3 && pairs > 3 * records).then(|| {
        format!(
            "the model matched {matches} of {pairs} compared pairs: the fields do not tell \
             people apart; only strong identifiers linked records"
        )
    })
}

/// A model match: its probability, the two records, and whether they agree on a field only
/// one person has.
type Match = (f64, u32, u32, bool);

/// The candidate pairs the model puts at or above `threshold`, the most certain first, and
/// every candidate pair's log-odds by record.
fn score(
    data: &Data<'_>,
    candidates: &[(u32, u32)],
    vectors: &[&[u8]],
    weights: &Weights,
    tf: &TermFrequencies,
    threshold: f64,
) -> (Vec<Match>, Neighbours) {
    // Fields only one person has (a customer number, a birth date): agreeing on one, two
    // records are one person even with different names (a name changed, or mistyped beyond
    // recognition); people of one household agree on none.
    let personal: Vec<(usize, u8)> = data
        .plan
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f.kind, Kind::Id | Kind::Date))
        .map(|(i, f)| {
            (
                i,
                u8::try_from(f.comparator.levels() - 2).unwrap_or(u8::MAX),
            )
        })
        .collect();
    let log_odds: Vec<f64> = candidates
        .iter()
        .zip(vectors)
        .map(|(&(a, _), vector)| {
            let adjust = tf.adjustment(a as usize, vector);
            weights.log_odds_adjusted(vector, adjust)
        })
        .collect();
    let cut = logit(threshold);
    let mut matches: Vec<Match> = candidates
        .iter()
        .zip(vectors)
        .zip(&log_odds)
        .filter(|&(_, &odds)| odds >= cut)
        .map(|((&(a, b), vector), &odds)| {
            let agrees = personal.iter().any(|&(field, close)| {
                vector
                    .get(field)
                    .is_some_and(|&level| level != MISSING && level >= close)
            });
            (1.0 / (1.0 + (-odds).exp()), a, b, agrees)
        })
        .collect();
    matches.sort_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    let neighbours = Neighbours::new(data.table.rows.len(), candidates, &log_odds);
    (matches, neighbours)
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

/// Every compared pair's log-odds, by record: what two clusters' records say about each other.
struct Neighbours {
    /// Where each record's neighbours start in `list` (one more entry than records).
    start: Vec<usize>,
    /// (the other record, the pair's log-odds).
    list: Vec<(u32, f32)>,
}

impl Neighbours {
    fn new(records: usize, pairs: &[(u32, u32)], log_odds: &[f64]) -> Neighbours {
        let mut degree = vec![0_usize; records + 1];
        for &(a, b) in pairs {
            for r in [a, b] {
                if let Some(d) = degree.get_mut(r as usize + 1) {
                    *d += 1;
                }
            }
        }
        for i in 1..degree.len() {
            let before = degree.get(i - 1).copied().unwrap_or(0);
            if let Some(d) = degree.get_mut(i) {
                *d += before;
            }
        }
        let mut fill = degree.clone();
        let mut list = vec![(0_u32, 0.0_f32); pairs.len() * 2];
        for (&(a, b), &odds) in pairs.iter().zip(log_odds) {
            #[expect(clippy::cast_possible_truncation, reason = "a weight in nats")]
            let odds = odds as f32;
            for (from, to) in [(a, b), (b, a)] {
                if let Some(at) = fill.get_mut(from as usize) {
                    if let Some(slot) = list.get_mut(*at) {
                        *slot = (to, odds);
                    }
                    *at += 1;
                }
            }
        }
        Neighbours {
            start: degree,
            list,
        }
    }

    /// The sum of the log-odds of the compared pairs between two sets of records.
    fn support(&self, xs: &[u32], ys: &[u32]) -> f64 {
        let (small, large) = if xs.len() <= ys.len() {
            (xs, ys)
        } else {
            (ys, xs)
        };
        let mut sum = 0.0;
        for &x in small {
            let (from, to) = (
                self.start.get(x as usize).copied().unwrap_or(0),
                self.start.get(x as usize + 1).copied().unwrap_or(0),
            );
            for &(other, odds) in self.list.get(from..to).unwrap_or_default() {
                if large.contains(&other) {
                    sum += f64::from(odds);
                }
            }
        }
        sum
    }
}

/// What `link` made.
struct Linked {
    clusters: Clusters,
    links: Links,
    refused_links: usize,
    refused_by_names: usize,
    unsure: Vec<u32>,
}

/// Clusters: strong links first, then (with `use_model`) the model's matches from the most
/// certain down, each join checked by names unless a personal identifier made it.
fn link(
    data: &Data<'_>,
    config: &ResolveConfig,
    groups: &[(usize, Vec<u32>)],
    (matches, neighbours): (&[Match], &Neighbours),
    use_model: bool,
) -> Linked {
    let plan = data.plan;
    // Clusters: strong links first, then model matches from the most certain down.
    let mut clusters = Clusters::new(data.table.rows.len(), config.max_cluster);
    let mut links = Links {
        strong: vec![0; plan.strong.len()],
        model: 0,
    };
    let (mut refused_links, mut refused_by_names) = (0, 0);
    let mut unsure = Vec::new();
    let check = |xs: &[u32], ys: &[u32]| data.names_agree(xs, ys);
    let mut count = |joined: Joined, a: u32, b: u32, slot: &mut usize| match joined {
        Joined::Joined => *slot += 1,
        Joined::Already => {}
        Joined::Cap => {
            refused_links += 1;
            unsure.extend([a, b]);
        }
        Joined::Refused => refused_by_names += 1,
    };
    for (field, members) in groups {
        let at = plan.strong.iter().position(|s| s == field).unwrap_or(0);
        // A personal identifier (a customer number) links whatever the names say: people
        // change their names, and nobody else holds it.
        let personal = plan
            .fields
            .get(*field)
            .is_some_and(|f| !f.kind.household_shared());
        let Some((&first, rest)) = members.split_first() else {
            continue;
        };
        for &other in rest {
            let joined = clusters.join(first as usize, other as usize, |xs, ys| {
                personal || check(xs, ys)
            });
            count(
                joined,
                first,
                other,
                links.strong.get_mut(at).unwrap_or(&mut 0),
            );
        }
    }
    if use_model {
        // A match joins two clusters only if all their compared records, taken together,
        // still say match: one name-only match between two people of the same rare name is
        // outweighed by their records with different addresses.
        let cut = logit(config.threshold);
        for &(_, a, b, personal) in matches {
            let joined = clusters.join(a as usize, b as usize, |xs, ys| {
                (personal || data.usual_names_agree(xs, ys)) && neighbours.support(xs, ys) >= cut
            });
            count(joined, a, b, &mut links.model);
        }
    }
    Linked {
        clusters,
        links,
        refused_links,
        refused_by_names,
        unsure,
    }
}

/// Linked pairs with a field on both sides needed to take its m from them rather than EM.
const MIN_ANCHORS: f64 = 50.0;

/// What `Data::strong_groups` found.
struct StrongGroups {
    /// By field: the records a value links.
    groups: Vec<(usize, Vec<u32>)>,
    /// Values that link nothing.
    shared: Vec<SharedValue>,
    /// The records of each value several people share.
    households: Vec<Vec<u32>>,
}

/// EM's λ (the share of matches among compared pairs) stays at or below this: at it, the
/// model is taken as degenerate.
const LAMBDA_BOUND: f64 = 0.9;

/// The table's compared fields, normalised once.
struct Data<'t> {
    table: &'t Table,
    plan: &'t Plan,
    /// Per field, per row.
    values: Vec<Vec<String>>,
    /// The given-name and family-name fields, for the rule that one person has one name.
    given: Option<usize>,
    /// Per row, the given name as written (lower case, nicknames not folded), for typos.
    given_written: Vec<String>,
    family: Option<usize>,
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
        let of = |kind: Kind| plan.fields.iter().position(|f| f.kind == kind);
        let given = of(Kind::GivenName);
        let given_written = given
            .and_then(|g| plan.fields.get(g))
            .map(|f| {
                (0..table.rows.len())
                    .map(|r| Kind::Surname.normalize(table.cell(r, f.column)))
                    .collect()
            })
            .unwrap_or_default();
        Data {
            table,
            plan,
            values,
            given,
            given_written,
            family: of(Kind::Surname),
        }
    }

    fn value(&self, field: usize, row: usize) -> &str {
        self.values
            .get(field)
            .and_then(|column| column.get(row))
            .map_or("", String::as_str)
    }

    fn name(&self, row: usize) -> PersonName<'_> {
        PersonName {
            given: self.given_of(row),
            family: self.family.map_or("", |f| self.value(f, row)),
        }
    }

    /// The distinct names of some records (records without a name left out).
    fn names_of(&self, rows: &[u32]) -> Vec<PersonName<'_>> {
        let mut names: Vec<PersonName<'_>> = rows
            .iter()
            .map(|&r| self.name(r as usize))
            .filter(|n| !n.given.is_empty() || !n.family.is_empty())
            .collect();
        names.sort_unstable_by(|p, q| (p.given, p.family).cmp(&(q.given, q.family)));
        names.dedup();
        names
    }

    /// Whether two clusters may be one person by their names: for the given names and for
    /// the family names, one cluster has none, or some name of one is compatible with some
    /// name of the other (`names::meet`).
    fn names_agree(&self, xs: &[u32], ys: &[u32]) -> bool {
        meet(&self.names_of(xs), &self.names_of(ys))
    }

    /// Whether a model match may join two clusters by their names: they agree, and when each
    /// has a usual given name (`names::usual_given`) it is one name. A shared rare typo
    /// (`drmi` of both `dremi` and `dormi`) or one letter (`loka` and `voka` at one address)
    /// does not make two named people one. (Not asked of a shared email or phone: a source
    /// that keeps its own spelling of a person's name is common, and the value says more.)
    fn usual_names_agree(&self, xs: &[u32], ys: &[u32]) -> bool {
        let usual = |rows: &[u32]| usual_given(rows.iter().map(|&r| self.given_of(r as usize)));
        let usual_agree = match (usual(xs), usual(ys)) {
            (Some(x), Some(y)) => x == y || x.chars().count() == 1 || y.chars().count() == 1,
            _ => true,
        };
        usual_agree && self.names_agree(xs, ys)
    }

    /// A record's given name as written (normalised, nicknames not folded).
    fn given_of(&self, row: usize) -> &str {
        self.given_written.get(row).map_or("", String::as_str)
    }

    /// Whether the records of one strong value may be one person by their names, not several
    /// people's (a household's landline).
    fn group_names_agree(&self, members: &[u32]) -> bool {
        one_person(&self.names_of(members))
            && !two_usual_given(members.iter().map(|&r| self.given_of(r as usize)))
    }

    /// Whether two rows may be compared: any two when deduplicating, rows of different files
    /// when linking.
    fn comparable(&self, a: usize, b: usize) -> bool {
        self.table.sources.is_empty() || self.table.sources.get(a) != self.table.sources.get(b)
    }

    /// All the pairs that could be compared.
    fn total_pairs(&self) -> f64 {
        let n = self.table.rows.len() as f64;
        if self.table.sources.is_empty() {
            n * (n - 1.0) / 2.0
        } else {
            let second = self.table.sources.iter().filter(|&&s| s != 0).count() as f64;
            (n - second) * second
        }
    }

    /// Appends the comparison levels of rows `a` and `b`, one per field: `MISSING` where either
    /// is empty, or where they agree on a value several people share. Names written the other
    /// way round are compared crosswise.
    fn compare(
        &self,
        a: usize,
        b: usize,
        flagged: &std::collections::HashSet<(usize, &str), RandomState>,
        out: &mut Vec<u8>,
    ) {
        let swapped = {
            let (name_a, name_b) = (self.name(a), self.name(b));
            !name_a.compatible_straight(&name_b) && name_a.swapped(&name_b)
        };
        for (index, field) in self.plan.fields.iter().enumerate() {
            let left = self.value(index, a);
            let crosswise = match (swapped, self.given, self.family) {
                (true, Some(given), Some(family)) if index == given => family,
                (true, Some(given), Some(family)) if index == family => given,
                _ => index,
            };
            let right = self.value(crosswise, b);
            let mut level = field.comparator.level(left, right).unwrap_or(MISSING);
            if Some(index) == self.given && crosswise == index && level != MISSING {
                // Equal once nicknames are folded, or else compared as written (a typo of
                // `tony` is close to `tony`, not to `anthony`).
                let top = u8::try_from(field.comparator.levels() - 1).unwrap_or(0);
                if level != top {
                    level = field
                        .comparator
                        .level(self.given_of(a), self.given_of(b))
                        .unwrap_or(MISSING);
                }
            }
            let shared = left == right && !flagged.is_empty() && flagged.contains(&(index, left));
            out.push(if shared { MISSING } else { level });
        }
    }

    /// The candidate pairs (sorted) and, for each, the fields all the rules that proposed it
    /// forced to agree (a bit per field): the blocking rules, and the strong identifiers'
    /// groups (a placeholder's records aside).
    fn candidates(
        &self,
        groups: &[(usize, Vec<u32>)],
        households: &[Vec<u32>],
    ) -> (Vec<(u32, u32)>, Vec<u32>) {
        let bits = |fields: &[usize]| -> u32 {
            fields
                .iter()
                .filter(|&&f| f < 32)
                .fold(0, |m, &f| m | 1 << f)
        };
        let mut proposed: Vec<(u64, u32)> = Vec::new();
        for rule in &self.plan.blocking {
            let mask = bits(rule);
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
                self.push_pairs(members, mask, &mut proposed);
            }
        }
        for (field, members) in groups {
            self.push_pairs(members, bits(&[*field]), &mut proposed);
        }
        // A household's value: its records are compared (their names decide), the value
        // itself weighs nothing.
        for members in households {
            self.push_pairs(members, 0, &mut proposed);
        }
        proposed.sort_unstable_by_key(|&(pair, _)| pair);
        let mut candidates = Vec::with_capacity(proposed.len());
        let mut forced: Vec<u32> = Vec::with_capacity(proposed.len());
        let mut last = None;
        for (pair, mask) in proposed {
            if last == Some(pair) {
                if let Some(m) = forced.last_mut() {
                    *m &= mask;
                }
                continue;
            }
            last = Some(pair);
            #[expect(clippy::cast_possible_truncation, reason = "two u32 packed in a u64")]
            candidates.push(((pair >> 32) as u32, pair as u32));
            forced.push(mask);
        }
        (candidates, forced)
    }

    fn push_pairs(&self, members: &[u32], mask: u32, pairs: &mut Vec<(u64, u32)>) {
        for (at, &a) in members.iter().enumerate() {
            for &b in members.iter().skip(at + 1) {
                if self.comparable(a as usize, b as usize) {
                    let (low, high) = (a.min(b), a.max(b));
                    pairs.push(((u64::from(low) << 32) | u64::from(high), mask));
                }
            }
        }
    }

    /// The groups of records sharing a strong identifier value that links them (by field, in
    /// record order), the values that link nothing (on more than `max_shared` records, or on
    /// records whose names say they are different people), and the records of each of the
    /// latter kind.
    fn strong_groups(&self, max_shared: usize) -> StrongGroups {
        let mut groups = Vec::new();
        let mut shared = Vec::new();
        let mut households = Vec::new();
        for &field in &self.plan.strong {
            let Some(column) = self.values.get(field) else {
                continue;
            };
            let mut by_value: HashMap<&str, Vec<u32>, RandomState> = HashMap::default();
            for (row, value) in column.iter().enumerate() {
                if let (false, Ok(row)) = (value.is_empty(), u32::try_from(row)) {
                    by_value.entry(value.as_str()).or_default().push(row);
                }
            }
            let mut found: Vec<(&str, Vec<u32>)> =
                by_value.into_iter().filter(|(_, m)| m.len() > 1).collect();
            found.sort_unstable();
            for (value, members) in found {
                let guarded = self
                    .plan
                    .fields
                    .get(field)
                    .is_some_and(|f| f.kind.household_shared());
                let why = if members.len() > max_shared {
                    Some(Shared::Placeholder)
                } else if guarded && !self.group_names_agree(&members) {
                    Some(Shared::People)
                } else {
                    None
                };
                if let Some(why) = why {
                    shared.push(SharedValue {
                        field,
                        value: value.to_owned(),
                        records: members.len(),
                        why,
                    });
                    if why == Shared::People {
                        households.push(members);
                    }
                } else {
                    groups.push((field, members));
                }
            }
        }
        StrongGroups {
            groups,
            shared,
            households,
        }
    }

    /// Counts, per field, the level of rows `a` and `b` (a missing one counts nowhere), the
    /// field `skip` aside; `vector` is scratch.
    fn tally(
        &self,
        a: usize,
        b: usize,
        skip: Option<usize>,
        flagged: &std::collections::HashSet<(usize, &str), RandomState>,
        counts: &mut [Vec<f64>],
        vector: &mut Vec<u8>,
    ) {
        vector.clear();
        self.compare(a, b, flagged, vector);
        for (field, (counts, &level)) in counts.iter_mut().zip(vector.iter()).enumerate() {
            if let (false, Some(count)) = (Some(field) == skip, counts.get_mut(usize::from(level)))
            {
                *count += 1.0;
            }
        }
    }

    /// The starting model: u from random pairs (the equal level from value frequencies); m
    /// from the pairs a strong identifier links, where at least `MIN_ANCHORS` of them have the
    /// field on both sides (the identifier's own field aside: they agree on it by
    /// construction), else leaning to agreement; parameters the configuration fixes replace
    /// both. Also says which fields' m came from the linked pairs.
    fn initial_model(
        &self,
        config: &ResolveConfig,
        anchors: &[(u32, u32, usize)],
        flagged: &std::collections::HashSet<(usize, &str), RandomState>,
    ) -> (Vec<FieldModel>, Vec<bool>) {
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
            self.tally(a, b, None, flagged, &mut u_counts, &mut vector);
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
        // m from the strongly linked pairs, per field where both sides have a value.
        let mut m_counts: Vec<Vec<f64>> = self
            .plan
            .fields
            .iter()
            .map(|f| vec![0.5; f.comparator.levels()])
            .collect();
        for &(a, b, own) in anchors {
            self.tally(
                a as usize,
                b as usize,
                Some(own),
                flagged,
                &mut m_counts,
                &mut vector,
            );
        }
        let anchored: Vec<bool> = m_counts
            .iter()
            .map(|counts| counts.iter().sum::<f64>() - 0.5 * counts.len() as f64 >= MIN_ANCHORS)
            .collect();
        let mut fields: Vec<FieldModel> = self
            .plan
            .fields
            .iter()
            .zip(u_counts)
            .zip(m_counts)
            .zip(&anchored)
            .map(|(((f, u), counts), &anchored)| {
                let levels = f.comparator.levels();
                let m = if anchored {
                    let total: f64 = counts.iter().sum();
                    counts.iter().map(|c| c / total).collect()
                } else {
                    // Start: matches mostly agree exactly.
                    let mut m = vec![0.1 / (levels - 1) as f64; levels];
                    if let Some(top) = m.last_mut() {
                        *top = 0.9;
                    }
                    m
                };
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
        (fields, anchored)
    }

    /// Per field, per row: how much more (or less) an exact agreement on the row's value
    /// weighs than the field's average exact agreement, ln(u / u(value)), where u(value) is
    /// the share of the other records that hold the value. Kinds of few or structured values
    /// (dates, numbers, states) get none.
    fn term_frequencies(&self, fields: &[FieldModel]) -> TermFrequencies {
        let adjust = self
            .plan
            .fields
            .iter()
            .zip(&self.values)
            .zip(fields)
            .map(|((field, column), model)| {
                if matches!(
                    field.kind,
                    Kind::Date | Kind::State | Kind::Number | Kind::StreetNumber
                ) {
                    return Vec::new();
                }
                let mut counts: HashMap<&str, u32, RandomState> = HashMap::default();
                for value in column.iter().filter(|v| !v.is_empty()) {
                    *counts.entry(value.as_str()).or_default() += 1;
                }
                let filled: f64 = counts.values().map(|&c| f64::from(c)).sum();
                let average = model.u.last().copied().unwrap_or(1.0).max(1e-12);
                column
                    .iter()
                    .map(|value| {
                        let n = counts.get(value.as_str()).map_or(1.0, |&c| f64::from(c));
                        let share =
                            ((n - 1.0) / (filled - 1.0).max(1.0)).max(1.0 / filled.max(1.0));
                        #[expect(clippy::cast_possible_truncation, reason = "a weight in nats")]
                        let weight = (average / share).ln() as f32;
                        weight
                    })
                    .collect()
            })
            .collect();
        TermFrequencies {
            adjust,
            top: self
                .plan
                .fields
                .iter()
                .map(|f| u8::try_from(f.comparator.levels() - 1).unwrap_or(0))
                .collect(),
        }
    }
}

/// Term-frequency adjustments of exact agreements (see `Data::term_frequencies`).
struct TermFrequencies {
    /// Per field, per row (empty: the field has none).
    adjust: Vec<Vec<f32>>,
    /// Per field, its "equal" level.
    top: Vec<u8>,
}

impl TermFrequencies {
    /// The sum of the adjustments of the fields on which row `a` and its pair agree exactly
    /// (`vector`: the pair's levels; agreeing, the two rows hold the same value).
    fn adjustment(&self, a: usize, vector: &[u8]) -> f64 {
        let mut sum = 0.0;
        for ((adjust, &top), &level) in self.adjust.iter().zip(&self.top).zip(vector) {
            if level == top
                && let Some(&w) = adjust.get(a)
            {
                sum += f64::from(w);
            }
        }
        sum
    }
}

/// What EM found.
struct Em {
    /// The share of matches among the compared pairs that tell something.
    lambda: f64,
    /// Rounds run.
    iterations: usize,
    /// Expected matches among all compared pairs.
    expected_matches: f64,
}

/// The distinct (comparison vector, forced fields) of the candidate pairs with how many pairs
/// have each: EM's input, a few thousand patterns for millions of pairs.
fn patterns(vectors: &[&[u8]], forced: &[u32]) -> Vec<(Vec<u8>, u32, f64)> {
    let mut counts: HashMap<(&[u8], u32), f64, RandomState> = HashMap::default();
    for (vector, &mask) in vectors.iter().zip(forced) {
        *counts.entry((vector, mask)).or_default() += 1.0;
    }
    let mut patterns: Vec<(Vec<u8>, u32, f64)> = counts
        .into_iter()
        .map(|((vector, mask), n)| (vector.to_vec(), mask, n))
        .collect();
    // A fixed order: the sums below do not depend on the hasher.
    patterns.sort_unstable_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    patterns
}

/// EM over the candidate pairs: each round scores every pair with the current model (E), then
/// sets m to the levels' shares among the pairs weighted by their match probability, and λ to
/// the mean probability (M). A pair neither scores nor votes on a field its blocking rules
/// forced to agree (a bit per field of the pattern), nor on one empty on either side; a pair
/// left with no field tells nothing and sits out. λ stays within `LAMBDA_BOUND`.
fn expectation_maximisation(
    fields: &mut [FieldModel],
    fixed_m: &[bool],
    patterns: &[(Vec<u8>, u32, f64)],
    start: f64,
    rounds: usize,
) -> Em {
    let informative = |vector: &[u8], mask: u32| {
        vector
            .iter()
            .enumerate()
            .any(|(f, &l)| l != MISSING && (f >= 32 || mask & (1 << f) == 0))
    };
    let (telling, silent): (Vec<_>, Vec<_>) = patterns
        .iter()
        .partition(|(vector, mask, _)| informative(vector, *mask));
    let pairs: f64 = telling.iter().map(|p| p.2).sum();
    let mut lambda = start;
    let mut probabilities = vec![0.0; telling.len()];
    let mut iterations = 0;
    for _ in 0..rounds {
        iterations += 1;
        let weights = Weights::new(fields, lambda);
        for (p, (vector, mask, _)) in probabilities.iter_mut().zip(&telling) {
            *p = weights.probability_without(vector, *mask);
        }
        let mut change: f64 = 0.0;
        for (index, field) in fields.iter_mut().enumerate() {
            if fixed_m.get(index).copied().unwrap_or(false) {
                continue;
            }
            let bit = if index < 32 { 1 << index } else { 0 };
            let mut sums = vec![0.01; field.m.len()];
            for (p, (vector, mask, n)) in probabilities.iter().zip(&telling) {
                if mask & bit != 0 {
                    continue;
                }
                let level = vector.get(index).copied().unwrap_or(MISSING);
                if let Some(sum) = sums.get_mut(usize::from(level)) {
                    *sum += p * n;
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
        let expected: f64 = probabilities
            .iter()
            .zip(&telling)
            .map(|(p, t)| p * t.2)
            .sum();
        let next = (expected / pairs.max(1.0)).clamp(1e-6, LAMBDA_BOUND);
        change = change.max((next - lambda).abs());
        lambda = next;
        if change < 1e-5 {
            break;
        }
    }
    let known: f64 = probabilities
        .iter()
        .zip(&telling)
        .map(|(p, t)| p * t.2)
        .sum();
    let unknown: f64 = silent.iter().map(|p| p.2).sum::<f64>() * lambda;
    Em {
        lambda,
        iterations,
        expected_matches: known + unknown,
    }
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

    /// The posterior probability that a pair with these comparison levels is a match, the
    /// fields of `mask` (a bit per field) left out.
    fn probability_without(&self, vector: &[u8], mask: u32) -> f64 {
        let mut log_ratio = self.prior;
        for (index, (levels, &level)) in self.levels.iter().zip(vector).enumerate() {
            let masked = index < 32 && mask & (1 << index) != 0;
            if level != MISSING && !masked {
                log_ratio += levels.get(usize::from(level)).copied().unwrap_or(0.0);
            }
        }
        1.0 / (1.0 + (-log_ratio).exp())
    }

    /// The log-odds (nats) of a match with every field, plus `adjust` of term-frequency
    /// adjustments.
    fn log_odds_adjusted(&self, vector: &[u8], adjust: f64) -> f64 {
        let mut log_ratio = self.prior + adjust;
        for (levels, &level) in self.levels.iter().zip(vector) {
            if level != MISSING {
                log_ratio += levels.get(usize::from(level)).copied().unwrap_or(0.0);
            }
        }
        log_ratio
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

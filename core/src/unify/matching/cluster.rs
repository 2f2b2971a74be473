//! Clusters of linked records (union–find with a size cap, and a check of the two clusters'
//! members before they join), and pairwise precision, recall and F1 against known clusters.

use std::collections::HashMap;

/// Which cluster each record is in.
#[derive(Clone, Debug)]
pub struct Clusters {
    parent: Vec<usize>,
    size: Vec<usize>,
    max: usize,
    /// The members of each cluster with several, under its representative (the members a
    /// check reads; a record alone has none listed).
    members: Vec<Vec<u32>>,
}

/// What [`Clusters::join`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joined {
    /// The two clusters are one now.
    Joined,
    /// They were one already.
    Already,
    /// Refused: the cluster would pass the size cap.
    Cap,
    /// Refused by the check of the members.
    Refused,
}

impl Clusters {
    /// `n` records, each alone; no cluster may grow past `max`.
    pub fn new(n: usize, max: usize) -> Clusters {
        Clusters {
            parent: (0..n).collect(),
            size: vec![1; n],
            max: max.max(2),
            members: vec![Vec::new(); n],
        }
    }

    /// Links two records' clusters when `check` accepts their members (each cluster's, as
    /// record indexes) and the result stays within the cap.
    pub fn join(
        &mut self,
        a: usize,
        b: usize,
        check: impl FnOnce(&[u32], &[u32]) -> bool,
    ) -> Joined {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return Joined::Already;
        }
        let listed = |clusters: &Clusters, root: usize| -> Vec<u32> {
            match clusters.members.get(root) {
                Some(list) if !list.is_empty() => list.clone(),
                _ => u32::try_from(root).map(|r| vec![r]).unwrap_or_default(),
            }
        };
        let (ma, mb) = (listed(self, ra), listed(self, rb));
        if ma.len() + mb.len() > self.max {
            return Joined::Cap;
        }
        if !check(&ma, &mb) {
            return Joined::Refused;
        }
        if !self.union(a, b) {
            return Joined::Cap;
        }
        let root = self.find(a);
        let gone = if root == ra { rb } else { ra };
        if let Some(list) = self.members.get_mut(gone) {
            list.clear();
            list.shrink_to_fit();
        }
        if let Some(list) = self.members.get_mut(root) {
            *list = [ma, mb].concat();
        }
        Joined::Joined
    }

    /// The representative of a record's cluster.
    pub fn find(&mut self, mut x: usize) -> usize {
        while let Some(&parent) = self.parent.get(x) {
            if parent == x {
                break;
            }
            let grand = self.parent.get(parent).copied().unwrap_or(parent);
            if let Some(slot) = self.parent.get_mut(x) {
                *slot = grand;
            }
            x = grand;
        }
        x
    }

    /// Links two records' clusters; false (and no change) when that would pass the cap.
    pub fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return true;
        }
        let (sa, sb) = (
            self.size.get(ra).copied().unwrap_or(1),
            self.size.get(rb).copied().unwrap_or(1),
        );
        if sa + sb > self.max {
            return false;
        }
        // The lower index stays the representative: cluster ids do not depend on link order.
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        if let Some(slot) = self.parent.get_mut(gone) {
            *slot = keep;
        }
        if let Some(slot) = self.size.get_mut(keep) {
            *slot = sa + sb;
        }
        true
    }

    /// Each record's cluster, as the lowest record index in it.
    pub fn labels(&mut self) -> Vec<usize> {
        (0..self.parent.len()).map(|x| self.find(x)).collect()
    }

    /// The size of the largest cluster.
    pub fn largest(&mut self) -> usize {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for label in self.labels() {
            *counts.entry(label).or_default() += 1;
        }
        counts.values().copied().max().unwrap_or(0)
    }

    /// How many clusters there are.
    pub fn count(&mut self) -> usize {
        let labels = self.labels();
        labels.iter().enumerate().filter(|(i, l)| i == *l).count()
    }
}

/// Pairwise quality of predicted clusters against true ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairMetrics {
    /// Pairs in the same predicted and the same true cluster.
    pub true_positives: u64,
    /// Pairs in the same predicted cluster.
    pub predicted: u64,
    /// Pairs in the same true cluster.
    pub actual: u64,
}

impl PairMetrics {
    /// Precision.
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.predicted)
    }
    /// Recall.
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.actual)
    }
    /// F1.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Pairwise metrics of `predicted` cluster labels against `truth` labels (same length).
pub fn pair_metrics<P: Eq + std::hash::Hash, T: Eq + std::hash::Hash>(
    predicted: &[P],
    truth: &[T],
) -> PairMetrics {
    let pairs = |n: u64| n * n.saturating_sub(1) / 2;
    let mut by_predicted: HashMap<&P, u64> = HashMap::new();
    let mut by_truth: HashMap<&T, u64> = HashMap::new();
    let mut by_both: HashMap<(&P, &T), u64> = HashMap::new();
    for (p, t) in predicted.iter().zip(truth) {
        *by_predicted.entry(p).or_default() += 1;
        *by_truth.entry(t).or_default() += 1;
        *by_both.entry((p, t)).or_default() += 1;
    }
    PairMetrics {
        true_positives: by_both.values().map(|&n| pairs(n)).sum(),
        predicted: by_predicted.values().map(|&n| pairs(n)).sum(),
        actual: by_truth.values().map(|&n| pairs(n)).sum(),
    }
}

//! The profiles a preview reads, held in memory once a workspace is previewed: each profile's
//! preview row (`braid_core::unify::encode_preview_row`), kept current as batches change
//! profiles, so that a preview decodes records on every core instead of reading the store (an
//! LSM tree, where reading every profile crosses every version each table still holds).
//!
//! Rows are in shards, each behind its own lock: a batch updates a few rows of each, and a
//! preview reads one shard at a time, so neither waits long for the other.

use std::collections::BTreeMap;
use std::sync::Mutex;

use braid_core::segment::{Condition, Segments};
use braid_core::unify::{
    ProfileConfig, ProfileIds, RowReads, decode_preview_row, decode_preview_row_reading,
};

/// Shards of rows.
const SHARDS: usize = 64;

/// Lean records of every profile of a workspace, by profile id.
pub(super) struct PreviewRows {
    shards: Vec<Mutex<BTreeMap<String, Box<[u8]>>>>,
}

/// What a preview found in some rows.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Profiles read.
    pub(super) total: u64,
    /// Those that meet the condition.
    pub(super) size: u64,
    /// Of those, those not in the compared audience, and those of it that do not.
    pub(super) entering: u64,
    pub(super) leaving: u64,
    /// The first (by profile id) of each: meeting, entering, leaving.
    pub(super) members: Vec<(String, Vec<String>)>,
    pub(super) enter: Vec<(String, Vec<String>)>,
    pub(super) leave: Vec<(String, Vec<String>)>,
}

/// What a preview asks of each row.
pub(super) struct Ask<'a> {
    pub(super) segments: &'a Segments,
    pub(super) config: &'a ProfileConfig,
    pub(super) condition: &'a Condition,
    /// What the condition (and the comparison) reads of a row: the rest is not decoded.
    pub(super) reads: &'a RowReads,
    pub(super) compare: Option<&'a str>,
    pub(super) now: i64,
    pub(super) sample: usize,
}

fn shard_of(id: &str) -> usize {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    usize::try_from(hash % SHARDS as u64).unwrap_or(0)
}

impl PreviewRows {
    pub(super) fn new() -> PreviewRows {
        PreviewRows {
            shards: (0..SHARDS).map(|_| Mutex::new(BTreeMap::new())).collect(),
        }
    }

    fn shard(&self, id: &str) -> Option<std::sync::MutexGuard<'_, BTreeMap<String, Box<[u8]>>>> {
        // A poisoned shard is a panic in a preview's decode: its rows are still whole.
        let shard = self.shards.get(shard_of(id))?;
        Some(
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Sets a profile's row.
    pub(super) fn put(&self, id: String, row: Vec<u8>) {
        if let Some(mut shard) = self.shard(&id) {
            shard.insert(id, row.into_boxed_slice());
        }
    }

    /// Removes a profile's row (merged into another).
    pub(super) fn remove(&self, id: &str) {
        if let Some(mut shard) = self.shard(id) {
            shard.remove(id);
        }
    }

    /// Evaluates `ask` over every row, on `threads` threads (shards taken in turn).
    pub(super) fn preview(&self, ask: &Ask<'_>, threads: usize) -> Found {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let mut found = Found::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(shard) = self.shards.get(i) else {
                    return found;
                };
                // Rows are copied out, so that a batch is not held up by the decoding.
                let rows: Vec<Box<[u8]>> = shard
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .cloned()
                    .collect();
                for row in rows {
                    let Ok((ids, profile)) =
                        decode_preview_row_reading(&row, ask.config, ask.reads)
                    else {
                        continue;
                    };
                    found.total += 1;
                    let holds =
                        ask.segments
                            .meets(ask.condition, &ids, &profile, ask.config, ask.now);
                    let sampled = |list: &mut Vec<(String, Vec<String>)>| {
                        if would_keep(list, &ids.id, ask.sample) {
                            // A sample shows identifiers, which the condition may not read.
                            if let Ok((whole, _)) = decode_preview_row(&row, ask.config) {
                                keep_first(list, &whole, ask.sample);
                            }
                        }
                    };
                    if holds {
                        found.size += 1;
                        sampled(&mut found.members);
                    }
                    if let Some(key) = ask.compare {
                        let was = profile.segment.audiences.contains_key(key);
                        if holds && !was {
                            found.entering += 1;
                            sampled(&mut found.enter);
                        } else if was && !holds {
                            found.leaving += 1;
                            sampled(&mut found.leave);
                        }
                    }
                }
            }
        };
        let mut all = Found::default();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1)).map(|_| scope.spawn(work)).collect();
            for worker in workers {
                if let Ok(found) = worker.join() {
                    all.total += found.total;
                    all.size += found.size;
                    all.entering += found.entering;
                    all.leaving += found.leaving;
                    for (list, theirs) in [
                        (&mut all.members, found.members),
                        (&mut all.enter, found.enter),
                        (&mut all.leave, found.leave),
                    ] {
                        list.extend(theirs);
                        list.sort();
                        list.truncate(ask.sample);
                    }
                }
            }
        });
        all
    }
}

/// Whether [`keep_first`] keeps the profile `id`.
fn would_keep(list: &[(String, Vec<String>)], id: &str, sample: usize) -> bool {
    sample > 0 && (list.len() < sample || list.last().is_some_and(|(last, _)| last.as_str() > id))
}

/// Keeps the `sample` smallest profiles by id, with their first identifiers (browsers left
/// out: a browser's id says nothing to a person).
fn keep_first(list: &mut Vec<(String, Vec<String>)>, ids: &ProfileIds, sample: usize) {
    if !would_keep(list, &ids.id, sample) {
        return;
    }
    let identifiers: Vec<String> = ids
        .identifiers
        .keys()
        .filter(|id| id.kind != braid_core::unify::IdType::Browser)
        .take(5)
        .map(ToString::to_string)
        .collect();
    let at = list.partition_point(|(id, _)| *id < ids.id);
    list.insert(at, (ids.id.clone(), identifiers));
    list.truncate(sample);
}

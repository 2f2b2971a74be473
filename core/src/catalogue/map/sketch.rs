//! Bounded summaries of a property's values: a distinct-count sketch and the values of a
//! low-cardinality property with their counts.
//!
//! The sketch is a `HyperLogLog` of 2^10 one-byte registers (about 3 % standard error, 1 KB),
//! kept as an exact set of hashes while it holds few. It is written here rather than taken
//! from a crate: `cardinality-estimator` builds only on 64-bit targets (the core also builds
//! for the Worker's wasm32) and `hyperloglogplus` stores its hasher in its serialized state and
//! counts through `&mut`; what the map needs is a stable hash, insert, estimate and a compact
//! encoding, about a hundred lines.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// log2 of the number of registers.
const PRECISION: u32 = 10;
const REGISTERS: usize = 1 << PRECISION;
/// Hashes kept exactly before the registers are used (8 bytes each: 512 B at most).
const SMALL: usize = 64;

/// A distinct-count sketch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distinct {
    /// Sorted distinct hashes, while there are at most [`SMALL`] (and no registers).
    small: Vec<u64>,
    /// The registers, once used.
    registers: Vec<u8>,
}

impl Distinct {
    /// Counts a value.
    pub fn insert(&mut self, value: &[u8]) {
        self.insert_hash(stable_hash(value));
    }

    fn insert_hash(&mut self, hash: u64) {
        if self.registers.is_empty() {
            if let Err(at) = self.small.binary_search(&hash) {
                self.small.insert(at, hash);
            }
            if self.small.len() > SMALL {
                self.registers = vec![0; REGISTERS];
                for hash in std::mem::take(&mut self.small) {
                    self.set(hash);
                }
            }
        } else {
            self.set(hash);
        }
    }

    fn set(&mut self, hash: u64) {
        crate::hll::observe(&mut self.registers, hash);
    }

    /// The estimated number of distinct values (exact while small).
    pub fn estimate(&self) -> u64 {
        if self.registers.is_empty() {
            return self.small.len() as u64;
        }
        crate::hll::estimate(&self.registers)
    }

    /// Memory held, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.small.capacity() * 8 + self.registers.capacity()
    }
}

/// FNV-1a over the bytes, then the `SplitMix64` finaliser: the same on every platform and
/// version (the sketches are stored), with well-mixed high bits (the register index).
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The stored form: `{"h": [hashes]}` while small, `{"r": "<base64 registers>"}` after.
#[derive(Serialize, Deserialize)]
struct DistinctWire {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    h: Vec<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    r: String,
}

impl Serialize for Distinct {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DistinctWire {
            h: self.small.clone(),
            r: if self.registers.is_empty() {
                String::new()
            } else {
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&self.registers)
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Distinct {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Distinct, D::Error> {
        use serde::de::Error;
        let wire = DistinctWire::deserialize(deserializer)?;
        let registers = if wire.r.is_empty() {
            Vec::new()
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(wire.r)
                .map_err(D::Error::custom)?
        };
        if !registers.is_empty() && registers.len() != REGISTERS || wire.h.len() > SMALL {
            return Err(D::Error::custom(
                "a distinct-count sketch of the wrong size",
            ));
        }
        let mut small = wire.h;
        small.sort_unstable();
        small.dedup();
        Ok(Distinct { small, registers })
    }
}

/// The values of a property while it has few (at most [`TopValues::MAX`] distinct values of
/// at most [`TopValues::MAX_LEN`] bytes), with their counts: an enum's values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopValues {
    /// Each value (as JSON text for a non-string) and how often it was seen.
    pub values: BTreeMap<String, u64>,
    /// Whether a value did not fit (too many distinct, or too long): no longer an enum.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflow: bool,
}

impl TopValues {
    /// Distinct values kept.
    pub const MAX: usize = 20;
    /// The longest value kept.
    pub const MAX_LEN: usize = 64;

    /// Counts a value.
    pub fn insert(&mut self, value: &str) {
        if let Some(count) = self.values.get_mut(value) {
            *count += 1;
        } else if self.overflow || self.values.len() >= Self::MAX || value.len() > Self::MAX_LEN {
            self.overflow = true;
        } else {
            self.values.insert(value.to_owned(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sketch_counts_exactly_while_small_and_within_a_few_percent_after() {
        let mut sketch = Distinct::default();
        for i in 0..50 {
            sketch.insert(format!("user-{i}").as_bytes());
            sketch.insert(format!("user-{i}").as_bytes());
        }
        assert_eq!(sketch.estimate(), 50);
        for n in [1_000u64, 20_000, 300_000] {
            let mut sketch = Distinct::default();
            for i in 0..n {
                sketch.insert(format!("{i}@mail.example").as_bytes());
            }
            #[allow(clippy::cast_precision_loss, reason = "test numbers")]
            let error = (sketch.estimate() as f64 - n as f64).abs() / n as f64;
            assert!(error < 0.08, "{n}: {} ({error})", sketch.estimate());
            assert!(sketch.heap_bytes() <= 1_100, "{}", sketch.heap_bytes());
            let json = serde_json::to_string(&sketch).unwrap();
            assert!(json.len() < 1_500, "{}", json.len());
            assert_eq!(serde_json::from_str::<Distinct>(&json).unwrap(), sketch);
        }
        let mut small = Distinct::default();
        small.insert(b"a");
        let json = serde_json::to_string(&small).unwrap();
        assert_eq!(serde_json::from_str::<Distinct>(&json).unwrap(), small);
        assert!(serde_json::from_str::<Distinct>(r#"{"r":"AAAA"}"#).is_err());
    }

    #[test]
    fn top_values_stop_at_the_cap() {
        let mut top = TopValues::default();
        for i in 0..25 {
            top.insert(&format!("v{}", i % 21));
        }
        assert!(top.overflow);
        assert_eq!(top.values.len(), TopValues::MAX);
        assert_eq!(top.values["v0"], 2);
        let mut top = TopValues::default();
        top.insert(&"x".repeat(65));
        assert!(top.overflow && top.values.is_empty());
    }
}

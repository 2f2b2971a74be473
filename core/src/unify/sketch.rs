//! `HyperLogLog`: how many distinct values a stream held, in a fixed number of small registers,
//! for unique counts past what a profile keeps exactly (the arithmetic is [`crate::hll`]'s). Sketches merge by taking each register's
//! maximum, so the buckets of a window fold into one estimate, and the sketches of two merged
//! profiles into one.
//!
//! The hash of a value is the first 8 bytes of its SHA-256: the same on every platform, so a
//! rebuild gives the same registers.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Fewest and most register bits (16 to 4,096 registers).
const MIN_BITS: u8 = 4;
const MAX_BITS: u8 = 12;

/// A `HyperLogLog` sketch: `2^bits` registers, each the longest run of leading zeros (plus one)
/// seen among the hashes that chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sketch {
    registers: Vec<u8>,
}

impl Sketch {
    /// An empty sketch of `2^bits` registers (bits clamped to 4..=12): the relative standard
    /// error of its estimate is about `1.04 / sqrt(2^bits)`.
    pub fn new(bits: u8) -> Sketch {
        let bits = bits.clamp(MIN_BITS, MAX_BITS);
        Sketch {
            registers: vec![0; 1 << bits],
        }
    }

    /// Adds a value (its text).
    pub fn add(&mut self, text: &str) {
        let digest = Sha256::digest(text.as_bytes());
        let mut first = [0_u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        crate::hll::observe(&mut self.registers, u64::from_be_bytes(first));
    }

    /// Takes in what `other` saw (a sketch of another size is folded to the smaller size).
    pub fn merge(&mut self, other: &Sketch) {
        if other.registers.len() < self.registers.len() {
            *self = self.folded(other.registers.len());
        }
        let other = if other.registers.len() > self.registers.len() {
            other.folded(self.registers.len())
        } else {
            other.clone()
        };
        for (mine, theirs) in self.registers.iter_mut().zip(&other.registers) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// The same stream seen with `size` registers (fewer: each register's index loses its
    /// lowest bits, which move to the front of its run).
    fn folded(&self, size: usize) -> Sketch {
        let shift = (self.registers.len() / size.max(1)).trailing_zeros();
        let mut out = vec![0_u8; size];
        for (index, &rank) in self.registers.iter().enumerate() {
            if rank == 0 {
                continue;
            }
            let low = index & ((1 << shift) - 1);
            // The dropped index bits are now the first bits of the run: a zero prefix of
            // `shift - bits(low)` more, or the run ends inside them.
            let rank = if low == 0 {
                rank.saturating_add(u8::try_from(shift).unwrap_or(u8::MAX))
            } else {
                u8::try_from(shift - (usize::BITS - 1 - low.leading_zeros())).unwrap_or(1)
            };
            if let Some(slot) = out.get_mut(index >> shift) {
                *slot = (*slot).max(rank);
            }
        }
        Sketch { registers: out }
    }

    /// The estimated number of distinct values added.
    pub fn estimate(&self) -> u64 {
        crate::hll::estimate(&self.registers)
    }
}

/// Stored as its registers in base64.
impl Serialize for Sketch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.registers))
    }
}

impl<'de> Deserialize<'de> for Sketch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let text = String::deserialize(deserializer)?;
        let registers = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        let size = registers.len();
        if !size.is_power_of_two() || !(1 << MIN_BITS..=1 << MAX_BITS).contains(&size) {
            return Err(serde::de::Error::custom(format!(
                "a sketch of {size} registers (a power of two from 16 to 4096)"
            )));
        }
        Ok(Sketch { registers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(bits: u8, values: impl IntoIterator<Item = u64>) -> Sketch {
        let mut sketch = Sketch::new(bits);
        for value in values {
            sketch.add(&value.to_string());
        }
        sketch
    }

    #[test]
    fn estimates_are_within_a_few_standard_errors() {
        for (bits, n) in [(12, 100), (12, 5_000), (12, 200_000), (8, 3_000), (8, 50)] {
            let estimate = of(bits, 0..n).estimate();
            let error = 1.04 / f64::from(1_u32 << bits).sqrt();
            #[expect(clippy::cast_precision_loss, reason = "test figures")]
            let off = (estimate as f64 - n as f64).abs() / n as f64;
            assert!(off < 3.0 * error, "{bits} bits, {n} values: {estimate}");
        }
        // Repeats add nothing.
        assert_eq!(of(12, (0..1_000).chain(0..1_000)), of(12, 0..1_000));
    }

    #[test]
    fn merged_sketches_estimate_the_union() {
        let mut a = of(10, 0..3_000);
        let b = of(10, 2_000..6_000);
        a.merge(&b);
        assert_eq!(a, of(10, 0..6_000));
        // A sketch folded to fewer registers is the one those registers would have seen.
        let mut small = of(8, 0..1_000);
        small.merge(&of(12, 1_000..2_000));
        assert_eq!(small, of(8, 0..2_000));
        let mut large = of(12, 0..1_000);
        large.merge(&of(8, 1_000..2_000));
        assert_eq!(large, of(8, 0..2_000));
    }

    #[test]
    fn sketches_round_trip_and_refuse_a_bad_size() {
        let sketch = of(8, 0..500);
        let text = serde_json::to_string(&sketch).unwrap();
        assert_eq!(serde_json::from_str::<Sketch>(&text).unwrap(), sketch);
        let error = serde_json::from_str::<Sketch>("\"AAAA\"").unwrap_err();
        assert!(error.to_string().contains("3 registers"), "{error}");
    }
}

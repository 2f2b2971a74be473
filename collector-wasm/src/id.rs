//! Random ids (UUID version 4) from a generator that the host seeds once with 128 bits from its
//! cryptographic source (`crypto.getRandomValues`, `SecRandomCopyBytes`, `/dev/urandom`).
//! The ids need to be unique, not secret, so a fast generator drawn from that seed is enough.

use alloc::string::String;

/// xoshiro256++ (Blackman and Vigna), its state filled by splitmix64 from the seed.
pub(crate) struct Rng {
    state: [u64; 4],
}

impl Rng {
    pub(crate) fn new(seed: [u32; 4]) -> Self {
        let [w0, w1, w2, w3] = seed.map(u64::from);
        let (first, second) = (w0 << 32 | w1, w2 << 32 | w3);
        let mut mix = first ^ second.rotate_left(17);
        let mut next = || {
            mix = mix.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = mix;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        // The second half of the seed goes in on its own, so all 128 bits reach the state.
        let state = [next() ^ second, next(), next(), next()];
        Self { state }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = self.state;
        let result = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        let mut s = [s0, s1, s2 ^ s0, s3 ^ s1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        self.state = s;
        result
    }

    /// A number in [0, 1), for jitter.
    #[expect(clippy::cast_precision_loss, reason = "53 bits are exact in an f64")]
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random UUID (version 4, RFC 9562), lowercase with hyphens.
    pub(crate) fn uuid(&mut self) -> String {
        let high = self.next_u64() & !0xf000 | 0x4000;
        let low = self.next_u64() & !(0xc << 60) | (0x8 << 60);
        let mut out = String::with_capacity(36);
        for (index, nibble) in (0..32)
            .rev()
            .map(|n| {
                let word = if n >= 16 { high } else { low };
                // One nibble: below 16.
                (word >> ((n % 16) * 4) & 0xf) as u8
            })
            .enumerate()
        {
            if matches!(index, 8 | 12 | 16 | 20) {
                out.push('-');
            }
            crate::json::push_hex_digit(&mut out, nibble);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::prelude::rust_2024::*;

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let mut rng = Rng::new([1, 2, 3, 4]);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = rng.uuid();
            let bytes = id.as_bytes();
            assert_eq!(id.len(), 36);
            assert_eq!(bytes[14], b'4', "{id}");
            assert!(matches!(bytes[19], b'8' | b'9' | b'a' | b'b'), "{id}");
            assert!(
                id.chars()
                    .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn every_seed_word_changes_the_stream() {
        let first = Rng::new([1, 2, 3, 4]).next_u64();
        for seed in [[0, 2, 3, 4], [1, 0, 3, 4], [1, 2, 0, 4], [1, 2, 3, 0]] {
            assert_ne!(Rng::new(seed).next_u64(), first, "{seed:?}");
        }
    }

    #[test]
    fn unit_numbers_stay_in_range_and_spread() {
        let mut rng = Rng::new([9, 9, 9, 9]);
        let draws: Vec<f64> = (0..1000).map(|_| rng.unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(draws.iter().any(|x| *x < 0.1) && draws.iter().any(|x| *x > 0.9));
    }
}

//! `HyperLogLog`'s arithmetic over one-byte registers (Flajolet, Fusy, Gandouet, Meunier 2007,
//! with linear counting for small counts), shared by the data map's distinct counts and the
//! profiles' unique-count sketches, which differ in their hash, size and storage.

/// Records `hash` in `registers` (a power of two of them): the register its first bits choose
/// keeps the longest run of leading zeros (plus one) of the rest.
pub(crate) fn observe(registers: &mut [u8], hash: u64) {
    let bits = registers.len().trailing_zeros();
    if bits == 0 {
        return;
    }
    let index = usize::try_from(hash >> (64 - bits)).unwrap_or(0);
    // The rest of the hash, with a stop bit so that a run is at most 64 - bits long.
    let rest = (hash << bits) | (1 << (bits - 1));
    let rank = u8::try_from(rest.leading_zeros() + 1).unwrap_or(u8::MAX);
    if let Some(register) = registers.get_mut(index) {
        *register = (*register).max(rank);
    }
}

/// The estimated number of distinct hashes `registers` saw.
pub(crate) fn estimate(registers: &[u8]) -> u64 {
    if registers.is_empty() {
        return 0;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "a register count far below 2^52"
    )]
    let m = registers.len() as f64;
    let sum: f64 = registers.iter().map(|&r| 2_f64.powi(-i32::from(r))).sum();
    let alpha = match registers.len() {
        16 => 0.673,
        32 => 0.697,
        64 => 0.709,
        _ => 0.7213 / (1.0 + 1.079 / m),
    };
    let raw = alpha * m * m / sum;
    #[expect(
        clippy::naive_bytecount,
        reason = "a few thousand registers, counted once per estimate"
    )]
    let zeros = registers.iter().filter(|&&r| r == 0).count();
    #[expect(
        clippy::cast_precision_loss,
        reason = "a register count far below 2^52"
    )]
    let estimate = if raw <= 2.5 * m && zeros > 0 {
        // Linear counting, more exact while many registers are empty.
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a positive estimate, rounded"
    )]
    let rounded = estimate.round() as u64;
    rounded
}

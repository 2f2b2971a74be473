//! String similarities shared by the comparators and the name rule: Jaro–Winkler without
//! allocating, and the one-edit check.

/// Jaro–Winkler exactly as `strsim::jaro_winkler` computes it, without allocating, for ASCII
/// strings of at most 64 bytes (bit sets hold the matched flags, and only the match window is
/// searched): most values of CRM fields. Other strings go to `strsim`.
#[expect(
    clippy::many_single_char_names,
    reason = "the textbook names of the algorithm"
)]
pub(crate) fn jaro_winkler(a: &str, b: &str) -> f64 {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    if !(a.is_ascii() && b.is_ascii() && x.len() <= 64 && y.len() <= 64) {
        return strsim::jaro_winkler(a, b);
    }
    if x.is_empty() || y.is_empty() {
        return if x.is_empty() && y.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let range = (x.len().max(y.len()) / 2).saturating_sub(1);
    let (mut matched_x, mut matched_y) = (0_u64, 0_u64);
    let mut matches = 0_u32;
    for (i, c) in x.iter().enumerate() {
        let end = (i + range + 1).min(y.len());
        for j in i.saturating_sub(range)..end {
            if matched_y & (1 << j) == 0 && y.get(j) == Some(c) {
                matched_x |= 1 << i;
                matched_y |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    // Matched characters out of order, halved.
    let mut transpositions = 0_u32;
    let mut rest = matched_y;
    for (i, c) in x.iter().enumerate() {
        if matched_x & (1 << i) != 0 {
            let j = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            transpositions += u32::from(y.get(j) != Some(c));
        }
    }
    let m = f64::from(matches);
    let jaro =
        (m / x.len() as f64 + m / y.len() as f64 + (m - f64::from(transpositions / 2)) / m) / 3.0;
    if jaro > 0.7 {
        let prefix = x.iter().take(4).zip(y).take_while(|(p, q)| p == q).count();
        jaro + 0.1 * prefix as f64 * (1.0 - jaro)
    } else {
        jaro
    }
}

/// Whether two byte strings are at most one edit apart: a substitution, an insertion or
/// deletion, or two adjacent characters swapped (the optimal string alignment distance ≤ 1).
#[expect(clippy::many_single_char_names, reason = "short patterns read best")]
pub(crate) fn within_one_edit(a: &[u8], b: &[u8]) -> bool {
    let common = a.iter().zip(b).take_while(|(p, q)| p == q).count();
    let (a_rest, b_rest) = (
        a.get(common..).unwrap_or_default(),
        b.get(common..).unwrap_or_default(),
    );
    match (a_rest, b_rest) {
        ([], []) => true,
        ([_, tail_a @ ..], [_, tail_b @ ..]) if tail_a == tail_b => true,
        ([p, q, tail_a @ ..], [r, s, tail_b @ ..]) if p == s && q == r && tail_a == tail_b => true,
        _ => a_rest.get(1..) == Some(b_rest) || b_rest.get(1..) == Some(a_rest),
    }
}

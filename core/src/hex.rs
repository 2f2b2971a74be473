//! Lower-case hexadecimal, written and read without `core::fmt`: digests become ids, keys and
//! signatures in several places (batch ids, profile ids, signatures, edge keys), always one way.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the two hex digits of `byte`.
pub fn push_byte(out: &mut String, byte: u8) {
    for nibble in [byte >> 4, byte & 0x0f] {
        out.push(char::from(
            DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
        ));
    }
}

/// Appends the hex digits of every byte of `bytes`.
pub fn push(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for byte in bytes {
        push_byte(out, *byte);
    }
}

/// `bytes` as hex digits.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push(&mut out, bytes);
    out
}

/// The bytes that `text` spells in hex digits (either case), or `None` when it is not an even
/// number of hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => u8::try_from(digit(*high)? * 16 + digit(*low)?).ok(),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(encode(&bytes), "000fa5ff");
        assert_eq!(decode("000fa5ff").unwrap(), bytes);
        assert_eq!(decode("000FA5FF").unwrap(), bytes);
        for bad in ["0", "zz", "0g", "abc"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
        assert_eq!(decode(""), Some(Vec::new()));
    }
}

//! Lake objects: gzip-compressed NDJSON.

use std::io::{self, Read as _, Write as _};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// The most one lake object may decompress to when it is read (unify, compaction, rebuilds):
/// a bound, so that a gzip bomb in the bucket cannot exhaust memory.
pub const MAX_OBJECT_BYTES: usize = 1 << 30;

/// Compresses an object's content.
pub fn gzip(content: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(content.len() / 4), Compression::fast());
    // Writing to a `Vec` cannot fail.
    match encoder.write_all(content) {
        Ok(()) => encoder.finish().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Decompresses an object, refusing to produce more than `limit` bytes.
///
/// # Errors
///
/// When the bytes are not gzip, or decompress to more than `limit`.
pub fn gunzip(bytes: &[u8], limit: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    let read = GzDecoder::new(bytes)
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)?;
    if read > limit {
        return Err(io::Error::other(format!(
            "the object decompresses to more than {limit} bytes"
        )));
    }
    Ok(out)
}

/// The lines of NDJSON content, without their newlines, skipping empty ones.
pub fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    content
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds_output() {
        let content = b"{\"a\":1}\n{\"a\":2}\n".repeat(100);
        let packed = gzip(&content);
        assert!(packed.len() < content.len());
        assert_eq!(gunzip(&packed, content.len()).unwrap(), content);
        assert!(gunzip(&packed, content.len() - 1).is_err());
        assert!(gunzip(b"not gzip", 100).is_err());
        assert_eq!(lines(b"a\n\nb\n").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
    }
}

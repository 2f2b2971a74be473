//! Request bodies: gzip or not (whatever the headers say), within the size limit.

use std::borrow::Cow;
use std::io::Read as _;

use flate2::read::MultiGzDecoder;

use crate::error::ApiError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Checks `Content-Type`: JSON travels as `application/json`, as `text/plain` (analytics.js,
/// to avoid a CORS preflight) and as form-urlencoded (the `RudderStack` node client's label for
/// gzip JSON). Absent is fine too.
pub(crate) fn check_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok = essence.is_empty()
        || essence == "application/json"
        || essence == "text/plain"
        || essence == "application/x-www-form-urlencoded"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedContentType {
            content_type: value.to_owned(),
        })
    }
}

/// Decodes a body: gunzips it when `Content-Encoding` says gzip or when it starts with the gzip
/// magic bytes, stopping as soon as the decoded size passes `limit` (so a small gzip bomb
/// cannot make us allocate much).
pub(crate) fn decode_body<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Cow<'a, [u8]>, ApiError> {
    let encoding = content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let gzip = match encoding.as_str() {
        "gzip" | "x-gzip" => true,
        "" | "identity" => body.starts_with(&GZIP_MAGIC),
        _ => {
            return Err(ApiError::UnsupportedEncoding {
                encoding: encoding.clone(),
            });
        }
    };
    if !gzip {
        return Ok(Cow::Borrowed(body));
    }
    let mut decoded = Vec::with_capacity(body.len().saturating_mul(4).min(limit.saturating_add(1)));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(body)
        .take(cap)
        .read_to_end(&mut decoded)
        .map_err(|error| ApiError::BadGzip {
            detail: error.to_string(),
        })?;
    Ok(Cow::Owned(decoded))
}

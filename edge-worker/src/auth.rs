//! Write keys: from `Authorization: Basic base64(key:)` (the password is ignored, as Segment
//! does) or from `writeKey` in the body.

use base64::Engine as _;

/// The write key in a `Basic` authorization header, if there is one.
pub(crate) fn basic_user(authorization: Option<&str>) -> Option<String> {
    let header = authorization?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    (!user.is_empty()).then(|| user.to_owned())
}

/// A key shortened for an error message, so a long secret-looking value is not echoed whole.
pub(crate) fn shorten_key(key: &str) -> String {
    match key.char_indices().nth(12) {
        Some((cut, _)) => format!("{}…", key.get(..cut).unwrap_or("")),
        None => key.to_owned(),
    }
}

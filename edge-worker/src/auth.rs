//! Credentials: write keys from `Authorization: Basic base64(key:)` (the password is ignored,
//! as Segment does; `writeKey` in the body is read with the body), and secret comparison.

use base64::Engine as _;

/// The write key in a `Basic` authorization header, if there is one.
pub(crate) fn basic_user(authorization: Option<&str>) -> Option<String> {
    let header = authorization?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // With or without its `=` padding: clients that strip it send the same key.
    let decoded = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
    .decode(encoded.trim())
    .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    (!user.is_empty()).then(|| user.to_owned())
}

/// Whether two secrets are equal, comparing every byte whatever differs first (a caller cannot
/// time its way to a token).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Whether the request carries `token` as `Authorization: Bearer <token>` (`what` names it in
/// the refusal).
pub(crate) fn check_bearer(
    request: &crate::http::HttpRequest<'_>,
    token: &str,
    what: &str,
) -> Result<(), crate::error::ApiError> {
    let bearer = request.bearer_token();
    if bearer.is_some_and(|b| constant_time_eq(b.as_bytes(), token.as_bytes())) {
        Ok(())
    } else {
        Err(crate::error::ApiError::Unauthorized {
            reason: format!("send {what} as Authorization: Bearer <token>"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basic_header_with_or_without_padding_names_the_key() {
        // base64("wk_1:") is "d2tfMTo=".
        for header in ["Basic d2tfMTo=", "Basic d2tfMTo", "basic  d2tfMTo= "] {
            assert_eq!(
                basic_user(Some(header)).as_deref(),
                Some("wk_1"),
                "{header}"
            );
        }
        assert_eq!(basic_user(Some("Basic !!!")), None);
        assert_eq!(basic_user(Some("Bearer d2tfMTo=")), None);
    }
}

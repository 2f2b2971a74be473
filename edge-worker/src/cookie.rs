//! Cookies the edge reads and sets: the first-party identity cookie (the visitor's anonymous id,
//! `HttpOnly`), the browser's credential (a random value the server issues, `HttpOnly`, by
//! which personalization finds the visitor: `docs/trust.md`), and the browser SDK's receipt
//! for a batch whose answer its page may never read.

use braid_core::collect::CookieConfig;

use crate::http::HttpRequest;

/// The value of the cookie `name` as the request sent it, when well-formed ([`is_id`]).
pub(crate) fn sent<'r>(request: &'r HttpRequest<'_>, name: &str) -> Option<&'r str> {
    request.header("cookie")?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name && is_id(value)).then_some(value)
    })
}

/// Whether a value can be an anonymous id (and a receipt token): 8 to 64 of `A-Z a-z 0-9 - _`
/// (a UUID, or an id an SDK made), so that nothing else from a cookie reaches the lake.
pub(crate) fn is_id(value: &str) -> bool {
    (8..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Set-Cookie` value of the identity cookie or the credential (`name`): `HttpOnly;
/// SameSite=Lax`, `Secure` unless configured off, one year by default, on the configured domain.
pub(crate) fn set_id(cookie: &CookieConfig, name: &str, id: &str) -> String {
    let mut value = format!(
        "{name}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        u64::from(cookie.max_age_days) * 86_400
    );
    if cookie.secure {
        value.push_str("; Secure");
    }
    if let Some(domain) = &cookie.domain {
        value.push_str("; Domain=");
        value.push_str(domain);
    }
    value
}

/// The receipt cookie for a stored batch (`?ack=<token>`): readable by scripts, a week, on the
/// identity cookie's domain when there is one.
pub(crate) fn set_receipt(token: &str, domain: Option<&str>) -> String {
    let mut value = format!("braid_ack={token}; Path=/; Max-Age=604800; SameSite=Lax");
    if let Some(domain) = domain {
        value.push_str("; Domain=");
        value.push_str(domain);
    }
    value
}

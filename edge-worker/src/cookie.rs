//! Cookies the edge reads and sets: the first-party identity cookie (the visitor's anonymous id,
//! `HttpOnly`) and the browser SDK's receipt for a batch whose answer its page may never read.

use braid_core::collect::CookieConfig;

use crate::http::HttpRequest;

/// The identity cookie's id as the request sent it, when well-formed.
pub(crate) fn sent_id<'r>(request: &'r HttpRequest<'_>, cookie: &CookieConfig) -> Option<&'r str> {
    request.header("cookie")?.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == cookie.name && is_id(value)).then_some(value)
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

/// The identity cookie's `Set-Cookie` value: `HttpOnly; SameSite=Lax`, `Secure` unless
/// configured off, one year by default, on the configured domain.
pub(crate) fn set_id(cookie: &CookieConfig, id: &str) -> String {
    let mut value = format!(
        "{}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        cookie.name,
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

//! Just enough URL handling for enrichment: the host and the query of an absolute URL, without a
//! full URL parser (the core must stay small for the browser build).

use std::borrow::Cow;

/// The lower-cased host of an absolute `http(s)` URL, without port or credentials (a slice of
/// the URL when it is lower-case already).
pub(super) fn host(url: &str) -> Option<Cow<'_, str>> {
    // Byte searches throughout: this runs twice per web event.
    let bytes = url.as_bytes();
    let colon = bytes.iter().position(|&b| b == b':');
    let start = match colon {
        Some(colon) if bytes.get(colon + 1..colon + 3) == Some(b"//") => colon + 3,
        _ => match url.split_once("://") {
            Some((scheme, _)) => scheme.len() + 3,
            None if url.starts_with("//") => 2,
            None => return None,
        },
    };
    let rest = url.get(start..)?;
    let authority_end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..authority_end)?;
    let host_port = match authority.bytes().rposition(|b| b == b'@') {
        Some(at) => authority.get(at + 1..)?,
        None => authority,
    };
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split_once(']')?.0.trim_start_matches('[')
    } else {
        let end = host_port
            .bytes()
            .position(|b| b == b':')
            .unwrap_or(host_port.len());
        host_port.get(..end)?
    };
    if host.is_empty() {
        None
    } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// The query string (without `?` and fragment) of a URL or of a `search` value like `?a=1`.
pub(super) fn query(url_or_search: &str) -> Option<&str> {
    let (_, after) = url_or_search.split_once('?')?;
    Some(after.split('#').next().unwrap_or(after))
}

/// Whether `host` is `domain` or a subdomain of it.
pub(super) fn is_within(host: &str, domain: &str) -> bool {
    let domain = domain.trim_start_matches('.');
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            host("https://User@WWW.Example.com:8443/a?b#c").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(host("//cdn.example/x").as_deref(), Some("cdn.example"));
        assert_eq!(
            host("http://[2001:db8::1]:80/").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(host("not a url"), None);
        assert_eq!(host("mailto:x@y").as_deref(), None);
        assert_eq!(host("a:b://c.example/").as_deref(), Some("c.example"));
        assert_eq!(host("https://[::1]/").as_deref(), Some("::1"));
        assert_eq!(host("https://a.example#x").as_deref(), Some("a.example"));
    }

    #[test]
    fn queries_and_domains() {
        assert_eq!(query("https://a.example/p?x=1#frag"), Some("x=1"));
        assert_eq!(query("?utm_source=a"), Some("utm_source=a"));
        assert!(is_within("blog.a.example", "a.example"));
        assert!(!is_within("nota.example", "a.example"));
    }
}

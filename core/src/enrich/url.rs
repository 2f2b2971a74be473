//! Just enough URL handling for enrichment: the host and the query of an absolute URL, without a
//! full URL parser (the core must stay small for the browser build).

use std::borrow::Cow;

/// The lower-cased host of an absolute `http(s)` URL, without port or credentials (a slice of
/// the URL when it is lower-case already).
pub(super) fn host(url: &str) -> Option<Cow<'_, str>> {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest,
        None => url.strip_prefix("//")?,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if host_port.starts_with('[') {
        host_port
            .split_once(']')
            .map(|(h, _)| h.trim_start_matches('['))?
    } else {
        host_port.split(':').next()?
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
    }

    #[test]
    fn queries_and_domains() {
        assert_eq!(query("https://a.example/p?x=1#frag"), Some("x=1"));
        assert_eq!(query("?utm_source=a"), Some("utm_source=a"));
        assert!(is_within("blog.a.example", "a.example"));
        assert!(!is_within("nota.example", "a.example"));
    }
}

//! Referrer classification: where a visit came from.

use super::url::is_within;

/// The class of a referrer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferrerClass {
    /// The site itself (same host, a subdomain of it, or a configured internal domain).
    Internal,
    /// A search engine.
    Search,
    /// A social network.
    Social,
    /// A web mail client.
    Email,
    /// Any other site.
    Other,
}

impl ReferrerClass {
    /// The name written to `context.referrer.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferrerClass::Internal => "internal",
            ReferrerClass::Search => "search",
            ReferrerClass::Social => "social",
            ReferrerClass::Email => "email",
            ReferrerClass::Other => "other",
        }
    }
}

/// Known sources: domain (matched with its subdomains, or as a label for `google.` style
/// entries that cover every country domain), class, and the name written to the lake. Web mail
/// comes first because its hosts sit under search and social domains (`mail.google.com`).
const SOURCES: &[(&str, ReferrerClass, &str)] = &[
    ("mail.google.com", ReferrerClass::Email, "gmail"),
    ("outlook.live.com", ReferrerClass::Email, "outlook"),
    ("outlook.office.com", ReferrerClass::Email, "outlook"),
    ("outlook.office365.com", ReferrerClass::Email, "outlook"),
    ("mail.yahoo.com", ReferrerClass::Email, "yahoo mail"),
    ("mail.proton.me", ReferrerClass::Email, "proton mail"),
    ("mail.aol.com", ReferrerClass::Email, "aol mail"),
    ("mail.yandex.ru", ReferrerClass::Email, "yandex mail"),
    ("icloud.com", ReferrerClass::Email, "icloud mail"),
    ("google.", ReferrerClass::Search, "google"),
    ("bing.com", ReferrerClass::Search, "bing"),
    ("search.yahoo.com", ReferrerClass::Search, "yahoo"),
    ("duckduckgo.com", ReferrerClass::Search, "duckduckgo"),
    ("baidu.com", ReferrerClass::Search, "baidu"),
    ("yandex.", ReferrerClass::Search, "yandex"),
    ("ecosia.org", ReferrerClass::Search, "ecosia"),
    ("search.brave.com", ReferrerClass::Search, "brave"),
    ("naver.com", ReferrerClass::Search, "naver"),
    ("qwant.com", ReferrerClass::Search, "qwant"),
    ("startpage.com", ReferrerClass::Search, "startpage"),
    ("facebook.com", ReferrerClass::Social, "facebook"),
    ("fb.me", ReferrerClass::Social, "facebook"),
    ("instagram.com", ReferrerClass::Social, "instagram"),
    ("t.co", ReferrerClass::Social, "twitter"),
    ("twitter.com", ReferrerClass::Social, "twitter"),
    ("x.com", ReferrerClass::Social, "twitter"),
    ("linkedin.com", ReferrerClass::Social, "linkedin"),
    ("lnkd.in", ReferrerClass::Social, "linkedin"),
    ("reddit.com", ReferrerClass::Social, "reddit"),
    ("pinterest.com", ReferrerClass::Social, "pinterest"),
    ("tiktok.com", ReferrerClass::Social, "tiktok"),
    ("youtube.com", ReferrerClass::Social, "youtube"),
    ("whatsapp.com", ReferrerClass::Social, "whatsapp"),
    ("threads.net", ReferrerClass::Social, "threads"),
    ("bsky.app", ReferrerClass::Social, "bluesky"),
    ("mastodon.social", ReferrerClass::Social, "mastodon"),
    ("news.ycombinator.com", ReferrerClass::Social, "hacker news"),
];

/// Whether `label` is one of the dot-separated labels of `host` other than the last.
fn has_inner_label(host: &str, label: &str) -> bool {
    let Some(last_dot) = host.bytes().rposition(|b| b == b'.') else {
        return false;
    };
    host.get(..last_dot)
        .is_some_and(|inner| inner.split('.').any(|l| l == label))
}

/// Classifies a referrer host given the page's own host and the configured internal domains.
/// Returns the class and, for known sources, the source's name.
pub fn classify(
    referrer_host: &str,
    page_host: Option<&str>,
    internal_domains: &[String],
) -> (ReferrerClass, Option<&'static str>) {
    let own = page_host.map(|mut host| {
        while let Some(rest) = host.strip_prefix("www.") {
            host = rest;
        }
        host
    });
    if own.is_some_and(|own| is_within(referrer_host, own))
        || internal_domains.iter().any(|d| is_within(referrer_host, d))
    {
        return (ReferrerClass::Internal, None);
    }
    for &(domain, class, name) in SOURCES {
        let matched = match domain.strip_suffix('.') {
            // `google.` matches google.com, www.google.co.uk, ...: the label anywhere but last.
            Some(label) => has_inner_label(referrer_host, label),
            None => is_within(referrer_host, domain),
        };
        if matched {
            return (class, Some(name));
        }
    }
    (ReferrerClass::Other, None)
}

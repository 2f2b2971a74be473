//! UTM parameters of the page URL into `context.campaign`, for clients that do not do it.

use std::borrow::Cow;

use crate::json::{Node, Obj};

/// The Segment `context.campaign` object read from a query string, or `None` when it holds no
/// UTM parameter. `utm_campaign` becomes `name`, the others drop their `utm_` prefix. Values
/// without percent-escapes are slices of `query`.
pub(super) fn from_query(query: &str) -> Option<Obj<'_>> {
    let mut campaign = Obj::new();
    for pair in query.split('&') {
        // Only `utm_` keys matter; a key written with percent-escapes could still be one.
        if !pair.starts_with("utm_") && !pair.as_bytes().contains(&b'%') {
            continue;
        }
        // Most pairs need no decoding: read them as slices, and hand the rest to
        // `form_urlencoded`.
        let (key, value) = if pair.bytes().any(|b| b == b'%' || b == b'+') {
            form_urlencoded::parse(pair.as_bytes()).next()?
        } else {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (Cow::Borrowed(key), Cow::Borrowed(value))
        };
        let field = match key.as_ref() {
            "utm_source" => "source",
            "utm_medium" => "medium",
            "utm_campaign" => "name",
            "utm_term" => "term",
            "utm_content" => "content",
            "utm_id" => "id",
            _ => continue,
        };
        if !value.is_empty() {
            campaign.insert_missing(field, || Node::Text(value));
        }
    }
    (!campaign.is_empty()).then_some(campaign)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(query: &str) -> Option<serde_json::Value> {
        from_query(query).map(|c| serde_json::Value::Object(c.to_map()))
    }

    #[test]
    fn reads_utm_parameters_with_and_without_escapes() {
        assert_eq!(
            campaign(
                "a=1&utm_source=news&utm_medium=e%2Dmail&utm_campaign=spring+sale&utm_source=x"
            ),
            Some(serde_json::json!({"source": "news", "medium": "e-mail", "name": "spring sale"}))
        );
        assert_eq!(campaign("utm_term&utm_id=&x=1"), None);
        assert_eq!(
            campaign("utm%5Fcontent=c"),
            Some(serde_json::json!({"content": "c"}))
        );
    }
}

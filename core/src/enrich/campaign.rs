//! UTM parameters of the page URL into `context.campaign`, for clients that do not do it.

use crate::json::{Node, Obj};

/// The Segment `context.campaign` object read from a query string, or `None` when it holds no
/// UTM parameter. `utm_campaign` becomes `name`, the others drop their `utm_` prefix. Values
/// without percent-escapes are slices of `query`.
pub(super) fn from_query(query: &str) -> Option<Obj<'_>> {
    let mut campaign = Obj::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
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

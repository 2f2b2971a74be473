//! UTM parameters of the page URL into `context.campaign`, for clients that do not do it.

use serde_json::{Map, Value};

/// The Segment `context.campaign` object read from a query string, or `None` when it holds no
/// UTM parameter. `utm_campaign` becomes `name`, the others drop their `utm_` prefix.
pub(super) fn from_query(query: &str) -> Option<Map<String, Value>> {
    let mut campaign = Map::new();
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
            campaign
                .entry(field)
                .or_insert_with(|| Value::String(value.into_owned()));
        }
    }
    (!campaign.is_empty()).then_some(campaign)
}

#![allow(
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::needless_pass_by_value,
    clippy::match_wildcard_for_single_variants,
    reason = "test code"
)]

use serde_json::{Map, Value, json};

use super::check::remove_paths;
use super::*;
use crate::catalogue::map::DataMap;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

fn plan(mode: &str) -> TrackingPlan {
    TrackingPlan::parse(
        &json!({
            "unplanned": "block",
            "events": [{
                "type": "track",
                "name": "Order Completed",
                "mode": mode,
                "schema": {"type": "object", "properties": {"properties": {
                    "type": "object",
                    "required": ["order_id", "revenue"],
                    "properties": {
                        "order_id": {"type": "string", "minLength": 3},
                        "revenue": {"type": "number", "minimum": 0},
                        "currency": {"type": "string", "enum": ["EUR", "USD"]},
                        "email": {"type": ["string", "null"], "format": "email"},
                        "items": {"type": "array", "items": {"type": "object", "properties": {
                            "sku": {"type": "string"}, "quantity": {"type": "integer", "maximum": 99}
                        }}}
                    }
                }}}
            }, {"type": "identify", "schema": {"type": "object"}}]
        })
        .to_string(),
    )
    .unwrap()
}

fn order(properties: Value) -> Map<String, Value> {
    object(json!({"type": "track", "event": "Order Completed", "properties": properties}))
}

#[test]
fn a_plan_names_what_it_cannot_use() {
    let error = |plan: Value| {
        TrackingPlan::parse(&plan.to_string())
            .unwrap_err()
            .to_string()
    };
    let with =
        |schema: Value| json!({"events": [{"type": "track", "name": "A", "schema": schema}]});
    assert!(
        error(with(json!({"pattern": "^a"}))).contains("unknown field `pattern`"),
        "{}",
        error(with(json!({"pattern": "^a"})))
    );
    assert_eq!(
        error(with(json!({"properties": {"x": {"type": "text"}}}))),
        "tracking plan: event track \"A\": x: unknown type \"text\""
    );
    assert!(error(with(json!({"format": "phone"}))).contains("unknown format \"phone\""));
    assert_eq!(
        error(json!({"events": [{"type": "click", "schema": {}}]})),
        "tracking plan: event click: type \"click\" is not a Spec event type"
    );
    assert_eq!(
        error(
            json!({"events": [{"type": "identify", "schema": {}}, {"type": "identify", "schema": {}}]})
        ),
        "tracking plan: event identify is planned twice"
    );
    assert!(error(json!({"events": [], "mode": "block"})).contains("unknown field `mode`"));
}

#[test]
fn events_are_judged_by_their_schema_and_mode() {
    let good = order(
        json!({"order_id": "o-1", "revenue": 10.5, "currency": "EUR",
        "email": null, "items": [{"sku": "a", "quantity": 2}]}),
    );
    assert_eq!(
        plan("block").judge("track", "Order Completed", &good),
        Checked::Collect {
            violations: vec![],
            omit: vec![]
        }
    );
    let bad = order(json!({"order_id": "o", "revenue": "10", "currency": "GBP",
        "email": "not-an-email", "items": [{"sku": 5, "quantity": 2.5}, {"quantity": 100}]}));
    let Checked::Collect { violations, omit } =
        plan("allow").judge("track", "Order Completed", &bad)
    else {
        panic!("allow collects");
    };
    let found: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.path.as_str(), v.rule))
        .collect();
    assert_eq!(
        found,
        [
            ("properties.currency", "enum"),
            ("properties.email", "format"),
            ("properties.items[].quantity", "type"),
            ("properties.items[].sku", "type"),
            ("properties.items[].quantity", "maximum"),
            ("properties.order_id", "min_length"),
            ("properties.revenue", "type"),
        ]
    );
    assert!(omit.is_empty());
    assert_eq!(
        violations[6].message,
        "properties.revenue is a string, the plan says number"
    );
    // No value in a message: it may be personal data.
    assert!(
        violations
            .iter()
            .all(|v| !v.message.contains("not-an-email"))
    );

    let missing = order(json!({"revenue": 1}));
    let Checked::Collect { violations, omit } =
        plan("omit").judge("track", "Order Completed", &missing)
    else {
        panic!("omit collects");
    };
    assert_eq!(violations[0].rule, "required");
    assert!(omit.is_empty(), "a missing property cannot be dropped");
    let Checked::Collect { omit, .. } = plan("omit").judge("track", "Order Completed", &bad) else {
        panic!("omit collects");
    };
    let mut stripped = bad.clone();
    remove_paths(&mut stripped, &omit);
    assert_eq!(
        Value::Object(stripped.clone()),
        json!({"type": "track", "event": "Order Completed", "properties": {"items": [{}, {}]}})
    );
    match plan("block").judge("track", "Order Completed", &bad) {
        Checked::Block(first) => assert_eq!(first.path, "properties.currency"),
        other => panic!("{other:?}"),
    }
    // Unplanned: blocked by this plan; a planned event without a name.
    match plan("allow").judge("track", "Signed Up", &object(json!({}))) {
        Checked::Block(violation) => {
            assert_eq!(violation.rule, "unplanned");
            assert_eq!(
                violation.message,
                "track \"Signed Up\" is not in the tracking plan"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        plan("allow").judge("identify", "", &object(json!({"traits": {"x": 1}}))),
        Checked::Collect {
            violations: vec![],
            omit: vec![]
        }
    );
    let strict = TrackingPlan::parse(
        &json!({"events": [{"type": "page", "name": "Home", "schema": {"properties": {
            "properties": {"additionalProperties": false, "properties": {"url": {"format": "uri"}}}}}}]})
        .to_string(),
    )
    .unwrap();
    let page = object(json!({"properties": {"url": "https://shop.example/", "extra": 1}}));
    let Checked::Collect { violations, .. } = strict.judge("page", "Home", &page) else {
        panic!("allow collects");
    };
    assert_eq!(violations.len(), 1);
    assert_eq!(
        (violations[0].path.as_str(), violations[0].rule),
        ("properties.extra", "additional")
    );
    let Checked::Collect { violations, .. } = strict.judge(
        "page",
        "Home",
        &object(json!({"properties": {"url": "not a uri"}})),
    ) else {
        panic!("allow collects");
    };
    assert_eq!(violations[0].rule, "format");
    let Checked::Collect { violations, .. } = strict.judge("track", "Other", &object(json!({})))
    else {
        panic!("unplanned events are allowed by default");
    };
    assert_eq!(violations[0].rule, "unplanned");
}

#[test]
fn a_plan_written_from_the_map_accepts_what_the_map_saw() {
    let lines: Vec<String> = (0..60)
        .map(|i| {
            json!({
                "type": if i % 3 == 0 { "identify" } else { "track" },
                "event": "Order Completed",
                "messageId": format!("m{i}"),
                "anonymousId": "a",
                "receivedAt": "2024-05-01T10:00:00.000Z",
                "properties": {"order_id": format!("o-{i}"), "revenue": i, "currency": if i % 2 == 0 { "EUR" } else { "USD" },
                               "coupon": if i % 5 == 0 { json!(null) } else { json!("SPRING") },
                               "items": [{"sku": format!("s{}", i % 4), "price": 9.5}],
                               "site": "https://shop.example/"},
                "traits": {"email": format!("u{i}@mail.example"), "plan": if i % 2 == 0 { "pro" } else { "free" }},
            })
            .to_string()
        })
        .collect();
    let mut map = DataMap::default();
    for line in &lines {
        map.observe(&crate::Event::from_lake_line(line).unwrap());
    }
    let plan = from_map(&map);
    let text = serde_json::to_string_pretty(&plan).unwrap();
    let reread = TrackingPlan::parse(&text).unwrap();
    assert_eq!(reread, plan);
    let order = plan.event("track", "Order Completed").unwrap();
    let properties = &order.schema.properties["properties"];
    assert_eq!(
        properties.required,
        ["coupon", "currency", "items", "order_id", "revenue", "site"]
    );
    assert_eq!(
        properties.properties["currency"].allowed,
        Some(vec![json!("EUR"), json!("USD")])
    );
    assert_eq!(
        properties.properties["coupon"].types,
        Some(Types::Many(vec!["null".into(), "string".into()]))
    );
    assert_eq!(
        properties.properties["order_id"].allowed, None,
        "not an enum: every value differs"
    );
    assert_eq!(properties.properties["site"].format.as_deref(), Some("uri"));
    assert_eq!(
        properties.properties["items"]
            .items
            .as_ref()
            .unwrap()
            .properties["sku"]
            .types,
        Some(Types::One("string".into()))
    );
    let identify = plan.event("identify", "").unwrap();
    let email = &identify.schema.properties["traits"].properties["email"];
    assert_eq!(email.format.as_deref(), Some("email"));
    assert_eq!(email.allowed, None);
    for line in &lines {
        let event: Map<String, Value> = serde_json::from_str(line).unwrap();
        let kind = event["type"].as_str().unwrap();
        let name = if kind == "track" {
            "Order Completed"
        } else {
            ""
        };
        assert_eq!(
            plan.judge(kind, name, &event),
            Checked::Collect {
                violations: vec![],
                omit: vec![]
            },
            "{line}"
        );
    }
}

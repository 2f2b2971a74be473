//! One request body through the pipeline: validate each event, normalise, enrich, and serialize
//! accepted events as NDJSON lines and rejected ones as failure records.
//!
//! The partial-failure policy (see `docs/wire-format.md`): a body that cannot be parsed, or
//! that breaks a whole-batch limit, is rejected whole ([`ParsedBody::parse`]); otherwise every
//! valid event is accepted and every invalid one is kept apart as a [`FailedEvent`], so one bad
//! event never costs the good ones and nothing is silently dropped.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;

use super::body::{BatchDefaults, BodyEvent, ParsedBody};
use super::trust::{Trust, stamp};
use crate::catalogue::CatalogueConfig;
use crate::catalogue::enrich::{AgentCache, EnrichInput, enrich};
use crate::catalogue::lake::FailedEvent;
use crate::catalogue::plan::{enforce, mark};
use crate::catalogue::validate::{
    Limits, ValidationError, check_size, parse_event, validate_object,
};
use crate::event::{Event, EventType};
use crate::json::{Kind, Node, Obj};

/// What the platform knows about a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// The workspace the write key belongs to.
    pub workspace: &'a str,
    /// When the request was received.
    pub received_at: OffsetDateTime,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The request's `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// An anonymous id for events that carry none (the edge's first-party cookie).
    pub anonymous_id: Option<&'a str>,
    /// What only the edge knows, as compact JSON objects, for `context.location` (geo) and
    /// `context.edge`.
    pub location: Option<&'a str>,
    /// See `location`.
    pub edge: Option<&'a str>,
    /// What the sender may claim about identity: stamped on every event (`context.braid`).
    pub trust: Trust<'a>,
}

/// The result of running a body through the pipeline.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Accepted events as NDJSON, one enriched event per line.
    pub accepted: Vec<u8>,
    /// How many events `accepted` holds.
    pub accepted_count: usize,
    /// Rejected events, in batch order.
    pub failed: Vec<FailedEvent>,
}

/// Validates, normalises and enriches every event of a parsed body.
///
/// Normalisation: batch-level `sentAt`, `context` (key by key) and `integrations` apply to
/// events that lack them; `writeKey` is removed from stored events; identify and group traits
/// sent in `context.traits` are merged into `traits` (top-level values win).
pub fn process_batch(
    body: ParsedBody<'_>,
    request: &RequestInfo<'_>,
    config: &CatalogueConfig,
) -> BatchOutcome {
    // Room for every event as received plus what enrichment adds, so the buffer never moves.
    let capacity = body.events.iter().map(|e| e.raw.len() + 512).sum();
    let mut outcome = BatchOutcome {
        accepted: Vec::with_capacity(capacity),
        ..BatchOutcome::default()
    };
    let mut agents = AgentCache::new();
    let mut input = EnrichInput::new(
        request.workspace,
        request.received_at,
        request.client_ip,
        request.user_agent,
    );
    // Edge-only enrichment: JSON objects, checked before they reach the lake.
    for (key, json) in [("location", request.location), ("edge", request.edge)] {
        if let Some(json) = json.filter(|j| Obj::parse(j).is_ok()) {
            input.edge.push((key, Arc::from(json)));
        }
    }
    let ParsedBody {
        events,
        implied,
        mut defaults,
        multiline,
        ..
    } = body;
    let anonymous_id = request
        .anonymous_id
        .map(|id| Node::Text(Cow::Owned(id.to_owned())));
    defaults.anonymous_id = anonymous_id;
    for (index, BodyEvent { raw: json, fields }) in events.into_iter().enumerate() {
        let checked = match fields {
            Some(fields) => check_one(index, json, fields, implied, &defaults, &config.limits),
            // Not an object: `parse_event` says what it is.
            None => parse_event(index, json, &config.limits).and_then(|fields| {
                check_one(index, json, fields, implied, &defaults, &config.limits)
            }),
        };
        match checked.map(|mut event| {
            event.multiline = multiline;
            event
        }) {
            Ok(mut event) => {
                let violations = match &config.plan {
                    Some(plan) => match enforce(plan, &mut event, index) {
                        Ok(violations) => violations,
                        Err(error) => {
                            // Kept as it would have landed, for `braid replay` once the plan
                            // is fixed: what the request proved and enrichment added are not
                            // in the payload, and the replay has no request.
                            stamp(&mut event, request.trust);
                            enrich(&mut event, json, &input, &config.enrich, &mut agents);
                            let mut landed = Vec::new();
                            event.write_json(&mut landed);
                            outcome.failed.push(FailedEvent {
                                error,
                                payload: json.to_owned(),
                                event: String::from_utf8(landed).ok(),
                            });
                            continue;
                        }
                    },
                    None => Vec::new(),
                };
                stamp(&mut event, request.trust);
                mark(&mut event, &violations);
                enrich(&mut event, json, &input, &config.enrich, &mut agents);
                event.write_json(&mut outcome.accepted);
                outcome.accepted.push(b'\n');
                outcome.accepted_count += 1;
            }
            Err(error) => outcome.failed.push(FailedEvent {
                error,
                payload: json.to_owned(),
                event: None,
            }),
        }
    }
    outcome
}

fn check_one<'a>(
    index: usize,
    json: &str,
    mut fields: Obj<'a>,
    implied: Option<EventType>,
    defaults: &BatchDefaults<'a>,
    limits: &Limits,
) -> Result<Event<'a>, ValidationError> {
    check_size(index, json, limits)?;
    fields.remove("writeKey");
    apply_defaults(&mut fields, defaults);
    let mut event = validate_object(index, fields, implied, limits)?;
    if matches!(event.kind(), EventType::Identify | EventType::Group) {
        merge_context_traits(event.fields_mut());
    }
    Ok(event)
}

fn apply_defaults<'a>(fields: &mut Obj<'a>, defaults: &BatchDefaults<'a>) {
    if let Some(anonymous_id) = &defaults.anonymous_id
        && fields.get("anonymousId").is_none_or(|id| match id.kind() {
            Kind::Null => true,
            Kind::String => !id.is_nonempty_text(),
            _ => false,
        })
    {
        fields.insert("anonymousId", anonymous_id.clone());
    }
    if let Some(sent_at) = defaults.sent_at {
        fields.insert_missing("sentAt", || Node::Raw(sent_at));
    }
    if let Some(integrations) = defaults.integrations {
        fields.insert_missing("integrations", || Node::Raw(integrations));
    }
    if let Some(batch_context) = &defaults.context {
        fields.insert_missing("context", || Node::Obj(Obj::new()));
        // A context that is not an object is reported by validation; it is left for that.
        if let Some(context) = fields.open("context") {
            for (key, value) in batch_context.iter() {
                context.insert_missing(key.clone(), || value.clone());
            }
        }
    }
}

fn merge_context_traits(fields: &mut Obj<'_>) {
    let Some(Value::Object(context_traits)) = fields
        .open("context")
        .and_then(|c| c.get("traits"))
        .map(Node::to_value)
    else {
        return;
    };
    let merged = match fields.get("traits").map(Node::to_value) {
        Some(Value::Object(mut traits)) => {
            for (key, value) in context_traits {
                traits.entry(key).or_insert(value);
            }
            traits
        }
        // Validation has ensured `traits` is an object or null.
        _ => context_traits,
    };
    fields.insert("traits", Node::Value(Value::Object(merged)));
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parse(body: &str, implied: Option<EventType>) -> Result<ParsedBody<'_>, ValidationError> {
        ParsedBody::parse(body.as_bytes(), implied, &Limits::default())
    }

    #[test]
    fn reads_a_batch_body_in_one_pass() {
        let body = r#" { "writeKey" : "k\u0031", "x": [1, {"y": 2}], "sentAt": "2024-05-01T10:00:00Z",
            "context": {"ip": "1.2.3.4"}, "batch": [ {"type":"track","event":"E","userId":"u"} , 7 ] } "#;
        let parsed = parse(body, None).unwrap();
        assert_eq!(parsed.write_key(), Some("k1"));
        assert_eq!(parsed.len(), 2);
        let received = crate::timestamp::parse("2024-05-01T10:00:05Z").unwrap();
        let request = RequestInfo {
            workspace: "w",
            received_at: received,
            client_ip: None,
            user_agent: None,
            anonymous_id: None,
            location: None,
            edge: None,
            trust: Trust::default(),
        };
        let outcome = process_batch(parsed, &request, &CatalogueConfig::default());
        assert_eq!(outcome.accepted_count, 1);
        let line: Value = serde_json::from_slice(&outcome.accepted).unwrap();
        assert_eq!(line["sentAt"], "2024-05-01T10:00:00Z");
        assert_eq!(line["context"]["ip"], "1.2.3.0");
        assert_eq!(outcome.failed.len(), 1);
        assert_eq!(outcome.failed[0].error.code(), "not_an_object");
        assert_eq!(outcome.failed[0].payload, "7");
    }

    /// What a lake reader cannot hold is refused with what is wrong and the limit, as a single
    /// event and in a batch alike; an event may nest as deep as a lake line, sent either way.
    #[test]
    fn json_no_reader_can_hold_is_refused_by_name() {
        let nested = |depth: usize| {
            format!(
                r#"{{"type":"track","event":"E","userId":"u","properties":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        let single = |event: &str| parse(event, Some(EventType::Track)).map(|p| p.len());
        let batch =
            |event: &str| parse(&format!(r#"{{"batch":[{event}]}}"#), None).map(|p| p.len());
        // The event object is one level: 126 arrays in `properties` make 127.
        for send in [single, batch] {
            assert_eq!(send(&nested(126)), Ok(1));
            assert_eq!(
                send(&nested(127)),
                Err(ValidationError::TooDeep { limit: 127 })
            );
            assert_eq!(send(&nested(100_000)).unwrap_err().limit(), Some(127));
            for (bad, named) in [
                (
                    r#"{"type":"track","event":"E","userId":"u","n":1e400}"#,
                    "64-bit float",
                ),
                (
                    r#"{"type":"track","event":"E","userId":"u","n":-1e309}"#,
                    "64-bit float",
                ),
                (
                    r#"{"type":"track","event":"\ud800","userId":"u"}"#,
                    "lone surrogate",
                ),
                (
                    r#"{"type":"track","event":"E","userId":"\udc00"}"#,
                    "lone surrogate",
                ),
                (
                    r#"{"type":"track","event":"E","userId":"u","\ud800":1}"#,
                    "lone surrogate",
                ),
            ] {
                let error = send(bad).unwrap_err();
                assert_eq!(error.code(), "malformed_json", "{bad}");
                assert!(error.to_string().contains(named), "{bad}: {error}");
            }
            let huge = format!(
                r#"{{"type":"track","event":"E","userId":"u","n":{}}}"#,
                "7".repeat(10_000)
            );
            assert!(
                send(&huge)
                    .unwrap_err()
                    .to_string()
                    .contains("64-bit float")
            );
            // In range, however written.
            let fine =
                r#"{"type":"track","event":"\ud83d\ude00","userId":"u","n":[1e308,1e-400,-0]}"#;
            assert_eq!(send(fine), Ok(1));
        }
        // A plain syntax error keeps serde_json's words, with line and column.
        let error = parse(r#"{"batch":[{"type":"track",]}"#, None).unwrap_err();
        assert!(error.to_string().contains("column"), "{error}");
    }

    /// A request with nothing but its workspace and time.
    fn plain_request() -> RequestInfo<'static> {
        RequestInfo {
            workspace: "w",
            received_at: crate::timestamp::parse("2024-05-01T10:00:05Z").unwrap(),
            client_ip: None,
            user_agent: None,
            anonymous_id: None,
            location: None,
            edge: None,
            trust: Trust::default(),
        }
    }

    #[test]
    fn pretty_printed_events_land_on_one_line() {
        let body = "{\n  \"batch\": [\n    {\n      \"type\": \"track\",\n      \"event\": \"E\",\n      \"userId\": \"u\",\n      \"properties\": {\n        \"a\": [1,\n 2]\n      }\n    }\n  ]\n}";
        let request = plain_request();
        let outcome = process_batch(
            parse(body, None).unwrap(),
            &request,
            &CatalogueConfig::default(),
        );
        let text = String::from_utf8(outcome.accepted).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["properties"]["a"], serde_json::json!([1, 2]));
    }

    #[test]
    fn the_tracking_plan_blocks_omits_or_records_at_collection() {
        use crate::catalogue::map::DataMap;
        use crate::catalogue::plan::TrackingPlan;
        let plan = |mode: &str| {
            TrackingPlan::parse(
                &serde_json::json!({"unplanned": "block", "events": [{
                    "type": "track", "name": "Order Completed", "mode": mode,
                    "schema": {"properties": {"properties": {"required": ["revenue"], "properties": {
                        "revenue": {"type": "number"}, "coupon": {"type": "string"}}}}}
                }]})
                .to_string(),
            )
            .unwrap()
        };
        // A client cannot write its own marks: `context.braid` is collection's.
        let body = r#"{"batch":[
            {"type":"track","event":"Order Completed","userId":"u","messageId":"a","properties":{"revenue":5,"coupon":"X"}},
            {"type":"track","event":"Order Completed","userId":"u","messageId":"b","properties":{"revenue":"5","coupon":7,"note":"n"},
             "context":{"braid":{"plan":[{"path":"forged","rule":"type","action":"allowed"}]}}},
            {"type":"track","event":"Signed Up","userId":"u","messageId":"c"}
        ]}"#;
        let request = plain_request();
        let run = |mode: &str| {
            let config = CatalogueConfig {
                plan: Some(plan(mode)),
                ..CatalogueConfig::default()
            };
            process_batch(parse(body, None).unwrap(), &request, &config)
        };
        let lines = |outcome: &BatchOutcome| -> Vec<Value> {
            String::from_utf8(outcome.accepted.clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };

        let blocked = run("block");
        assert_eq!(blocked.accepted_count, 1);
        let codes: Vec<&str> = blocked.failed.iter().map(|f| f.error.code()).collect();
        assert_eq!(codes, ["plan_violation", "unplanned_event"]);
        assert_eq!(
            blocked.failed[0].error.to_string(),
            "event 1: properties.coupon is a number, the plan says string (tracking plan rule \"type\")"
        );
        assert!(
            blocked.failed[0].payload.contains(r#""messageId":"b""#),
            "kept to replay"
        );
        assert!(lines(&blocked)[0]["context"]["braid"].get("plan").is_none());

        let omitted = run("omit");
        assert_eq!(omitted.accepted_count, 2);
        let second = &lines(&omitted)[1];
        assert_eq!(second["properties"], serde_json::json!({"note": "n"}));
        assert_eq!(
            second["context"]["braid"]["plan"],
            serde_json::json!([
                {"path": "properties.coupon", "rule": "type", "action": "omitted"},
                {"path": "properties.revenue", "rule": "type", "action": "omitted"}
            ])
        );

        let allowed = run("allow");
        let second = &lines(&allowed)[1];
        assert_eq!(second["properties"]["coupon"], 7);
        assert_eq!(second["context"]["braid"]["plan"][0]["action"], "allowed");
        assert_eq!(
            second["context"]["braid"]["plan"].as_array().unwrap().len(),
            2
        );

        // The data map counts what the events were collected with.
        let mut map = DataMap::default();
        for line in String::from_utf8(omitted.accepted).unwrap().lines() {
            map.observe(&Event::from_lake_line(line).unwrap());
        }
        let entry = map.events.values().next().unwrap();
        let coupon = &entry.violations["properties.coupon"];
        assert_eq!((coupon.rules["type"], coupon.omitted), (1, 1));
        assert!(!entry.violations.contains_key("forged"));
        let flags = crate::catalogue::map::flags(&map);
        assert!(
            flags
                .iter()
                .any(|f| f.kind == crate::catalogue::map::FlagKind::PlanViolation
                    && f.path.as_deref() == Some("properties.revenue"))
        );
    }
}

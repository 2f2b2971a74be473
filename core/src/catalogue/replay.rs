//! Replaying `failed/`: the events a tracking plan blocked, judged again by the plan in force
//! once it is fixed, and landed in `raw/` as they would have landed.
//!
//! A failure record of a blocked event keeps the event as it would have landed
//! ([`FailedEvent::event`](super::lake::FailedEvent::event): stamped with what its request
//! proved, enriched, with its `messageId` and `receivedAt`), so a replay needs no request and
//! changes nothing but the plan's marks. What failed validation never became an event and is
//! not replayed. A replayed event keeps its `messageId`, so an event replayed twice is one
//! event to unify (and to the data map), and its `receivedAt`, so it lands in the partition of
//! the hour it was received. The platform reads the records and writes the lines
//! (`braid replay`, `POST /v1/catalogue/replay`); this module decides each line.

use time::OffsetDateTime;

use super::lake::FailureRecord;
use super::plan::{TrackingPlan, enforce, mark};
use super::validate::ValidationError;
use crate::event::{BRAID_CONTEXT, Event, PLAN_CONTEXT};
use crate::timestamp;

/// The reasons of the failures a replay can land: those of a tracking plan.
pub const REPLAYABLE: [&str; 2] = ["plan_violation", "unplanned_event"];

/// Which failure records to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Received at or after this time.
    pub from: Option<OffsetDateTime>,
    /// Received before this time.
    pub to: Option<OffsetDateTime>,
    /// Of these reasons (codes), each one of [`REPLAYABLE`].
    pub reasons: Vec<String>,
}

impl Default for ReplayFilter {
    /// Every replayable record.
    fn default() -> Self {
        ReplayFilter {
            from: None,
            to: None,
            reasons: REPLAYABLE.iter().map(|&r| r.to_owned()).collect(),
        }
    }
}

/// A filter that cannot select anything a replay lands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A reason no replay lands.
    #[error(
        "reason: {0:?} cannot be replayed: only the failures of a tracking plan can (plan_violation, unplanned_event); the others never became events"
    )]
    NotReplayable(String),
    /// `from` is not before `to`.
    #[error("from: must be before to")]
    EmptyRange,
}

impl ReplayFilter {
    /// A filter of the records received in `[from, to)` for `reasons` (all replayable ones
    /// when empty).
    ///
    /// # Errors
    ///
    /// A reason that is not replayable, or an empty time range.
    pub fn new(
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
        reasons: Vec<String>,
    ) -> Result<ReplayFilter, FilterError> {
        if let Some(reason) = reasons.iter().find(|r| !REPLAYABLE.contains(&r.as_str())) {
            return Err(FilterError::NotReplayable(reason.clone()));
        }
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(FilterError::EmptyRange);
        }
        let reasons = if reasons.is_empty() {
            ReplayFilter::default().reasons
        } else {
            reasons
        };
        Ok(ReplayFilter { from, to, reasons })
    }

    /// Whether events received at `at` are in the time range.
    pub fn covers(&self, at: OffsetDateTime) -> bool {
        self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at < to)
    }

    /// Whether any event of the hour starting at `hour` can be in the time range (to skip
    /// whole partitions).
    pub fn covers_hour(&self, hour: OffsetDateTime) -> bool {
        let end = hour + time::Duration::HOUR;
        self.from.is_none_or(|from| end > from) && self.to.is_none_or(|to| hour < to)
    }
}

/// What became of one failure record.
#[derive(Debug)]
pub enum Replayed {
    /// Not a record a replay lands: what failed validation, a record of another workspace, or
    /// a line that is no failure record (the reason).
    NotReplayable(&'static str),
    /// Outside the filter's time range or reasons.
    Skipped,
    /// The plan in force refuses it still: why.
    StillRefused(ValidationError),
    /// It lands: its `raw/` line (without the newline), and when it was received (its
    /// partition).
    Lands {
        /// When it was received.
        received_at: OffsetDateTime,
        /// The line.
        line: Vec<u8>,
    },
}

/// Decides one line of a `failed/` object of `workspace`: judged again by `plan` (none: every
/// event lands) and marked with the violations it is collected with, as collection does.
pub fn replay_line(
    line: &[u8],
    workspace: &str,
    plan: Option<&TrackingPlan>,
    filter: &ReplayFilter,
) -> Replayed {
    let Some(record) = FailureRecord::read(line) else {
        return Replayed::NotReplayable("not a failure record");
    };
    if record.workspace != workspace {
        return Replayed::NotReplayable("a record of another workspace");
    }
    let Some(Ok(received_at)) = record.received_at.as_deref().map(timestamp::parse) else {
        return Replayed::NotReplayable("a record without a valid receivedAt");
    };
    if !filter.reasons.contains(&record.code) || !filter.covers(received_at) {
        return Replayed::Skipped;
    }
    let Some(text) = record.event.as_deref() else {
        return Replayed::NotReplayable("a record without the event (written before replays)");
    };
    let Ok(mut event) = Event::from_lake_line(text) else {
        return Replayed::NotReplayable("a record whose event is not an event");
    };
    // Marks of an earlier plan are not this plan's.
    if let Some(braid) = event
        .fields_mut()
        .open("context")
        .and_then(|context| context.open(BRAID_CONTEXT))
    {
        braid.remove(PLAN_CONTEXT);
    }
    let violations = match plan {
        Some(plan) => match enforce(plan, &mut event, 0) {
            Ok(violations) => violations,
            Err(error) => return Replayed::StillRefused(error),
        },
        None => Vec::new(),
    };
    mark(&mut event, &violations);
    let mut out = Vec::with_capacity(text.len() + 64);
    event.write_json(&mut out);
    Replayed::Lands {
        received_at,
        line: out,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use serde_json::{Value, json};

    use super::*;
    use crate::catalogue::CatalogueConfig;
    use crate::collect::{ParsedBody, RequestInfo, Trust, process_batch};

    const RECEIVED: &str = "2024-05-01T10:20:00.000Z";

    fn plan(document: &Value) -> TrackingPlan {
        TrackingPlan::parse(&document.to_string()).unwrap()
    }

    /// A plan that blocks `Order Completed` without a number `total`.
    fn strict() -> TrackingPlan {
        plan(
            &json!({"events": [{"type": "track", "name": "Order Completed", "mode": "block",
            "schema": {"type": "object", "required": ["properties"], "properties": {
                "properties": {"type": "object", "required": ["total"],
                               "properties": {"total": {"type": "number"}}}}}}]}),
        )
    }

    /// The failure records of a batch collected under `plan` from a server key, as the lake's
    /// `failed/` lines.
    fn collect(body: &str, plan: TrackingPlan) -> (Vec<u8>, Vec<u8>) {
        let config = CatalogueConfig {
            plan: Some(plan),
            ..CatalogueConfig::default()
        };
        let parsed = ParsedBody::parse(body.as_bytes(), None, &config.limits).unwrap();
        let received_at = timestamp::parse(RECEIVED).unwrap();
        let request = RequestInfo {
            workspace: "shop",
            received_at,
            client_ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))),
            user_agent: Some("curl/8"),
            anonymous_id: None,
            location: None,
            edge: None,
            trust: Trust::Server,
        };
        let outcome = process_batch(parsed, &request, &config);
        let mut failed = Vec::new();
        for record in &outcome.failed {
            record.write_json("shop", received_at, &mut failed);
        }
        (outcome.accepted, failed)
    }

    fn lines(content: &[u8]) -> Vec<&[u8]> {
        content
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect()
    }

    const BODY: &str = r#"{"batch": [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
         "properties": {"total": "12.50"}},
        {"type": "track", "event": "Order Completed", "userId": "u2", "messageId": "m2",
         "properties": {"total": 3}},
        {"type": "track", "userId": "u3", "messageId": "m3"}
    ]}"#;

    #[test]
    fn a_blocked_event_lands_as_it_would_have_once_the_plan_allows_it() {
        let (accepted, failed) = collect(BODY, strict());
        assert_eq!(
            lines(&accepted).len(),
            1,
            "{}",
            String::from_utf8_lossy(&failed)
        );
        let records = lines(&failed);
        assert_eq!(records.len(), 2, "the blocked event and the invalid one");
        let filter = ReplayFilter::default();

        // Under the same plan it is refused again.
        assert!(matches!(
            replay_line(records[0], "shop", Some(&strict()), &filter),
            Replayed::StillRefused(ValidationError::PlanViolation { rule: "type", .. })
        ));
        // Under a plan that allows the string (mode allow), it lands marked.
        let fixed = plan(
            &json!({"events": [{"type": "track", "name": "Order Completed",
            "mode": "allow", "schema": {"type": "object", "properties": {
                "properties": {"type": "object",
                               "properties": {"total": {"type": "number"}}}}}}]}),
        );
        let Replayed::Lands { received_at, line } =
            replay_line(records[0], "shop", Some(&fixed), &filter)
        else {
            panic!("the event lands");
        };
        assert_eq!(received_at, timestamp::parse(RECEIVED).unwrap());
        let landed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(landed["messageId"], "m1");
        assert_eq!(landed["receivedAt"], RECEIVED);
        assert_eq!(landed["properties"]["total"], "12.50");
        assert_eq!(
            landed["context"]["ip"], "203.0.113.0",
            "enriched from its request (anonymised)"
        );
        assert_eq!(
            landed["context"]["braid"]["trusted"], true,
            "stamped by its request"
        );
        assert_eq!(
            landed["context"]["braid"]["plan"],
            json!([{"path": "properties.total", "rule": "type", "action": "allowed"}])
        );
        // The same line as an event accepted under the fixed plan, but for the marks.
        let (accepted_now, _) = collect(BODY, fixed);
        let first: Value = serde_json::from_slice(lines(&accepted_now)[0]).unwrap();
        assert_eq!(landed, first);

        // An event that failed validation never became an event.
        assert!(matches!(
            replay_line(records[1], "shop", None, &filter),
            Replayed::Skipped
        ));
        let everything = ReplayFilter {
            reasons: vec!["missing_field".to_owned()],
            ..ReplayFilter::default()
        };
        assert!(matches!(
            replay_line(records[1], "shop", None, &everything),
            Replayed::NotReplayable(_)
        ));
    }

    #[test]
    fn the_filter_selects_by_time_and_reason_and_the_workspace_must_match() {
        let (_, failed) = collect(BODY, strict());
        let record = lines(&failed)[0];
        let at = timestamp::parse(RECEIVED).unwrap();
        let range = |from: &str, to: &str| {
            ReplayFilter::new(
                Some(timestamp::parse(from).unwrap()),
                Some(timestamp::parse(to).unwrap()),
                Vec::new(),
            )
            .unwrap()
        };
        assert!(
            matches!(
                replay_line(
                    record,
                    "shop",
                    None,
                    &range("2024-05-01T10:00:00Z", "2024-05-01T10:20:00Z")
                ),
                Replayed::Skipped
            ),
            "to is exclusive"
        );
        assert!(
            matches!(
                replay_line(
                    record,
                    "shop",
                    None,
                    &range("2024-05-01T10:20:00Z", "2024-05-01T10:21:00Z")
                ),
                Replayed::Lands { .. }
            ),
            "from is inclusive"
        );
        let unplanned = ReplayFilter::new(None, None, vec!["unplanned_event".into()]).unwrap();
        assert!(matches!(
            replay_line(record, "shop", None, &unplanned),
            Replayed::Skipped
        ));
        assert!(matches!(
            replay_line(record, "other", None, &ReplayFilter::default()),
            Replayed::NotReplayable(_)
        ));
        assert!(matches!(
            replay_line(b"{not json", "shop", None, &ReplayFilter::default()),
            Replayed::NotReplayable(_)
        ));
        let hour = timestamp::parse("2024-05-01T10:00:00Z").unwrap();
        assert!(range("2024-05-01T10:59:00Z", "2024-05-02T00:00:00Z").covers_hour(hour));
        assert!(!range("2024-05-01T11:00:00Z", "2024-05-02T00:00:00Z").covers_hour(hour));
        assert!(!range("2024-05-01T08:00:00Z", "2024-05-01T10:00:00Z").covers_hour(hour));
        assert!(
            range("2024-05-01T08:00:00Z", "2024-05-01T10:00:01Z")
                .covers(at - time::Duration::minutes(20))
        );
    }

    #[test]
    fn filters_refuse_what_cannot_be_replayed() {
        assert_eq!(
            ReplayFilter::new(None, None, vec!["missing_field".into()]),
            Err(FilterError::NotReplayable("missing_field".into()))
        );
        let at = timestamp::parse(RECEIVED).unwrap();
        assert_eq!(
            ReplayFilter::new(Some(at), Some(at), Vec::new()),
            Err(FilterError::EmptyRange)
        );
        assert_eq!(
            ReplayFilter::new(None, None, Vec::new()).unwrap(),
            ReplayFilter::default()
        );
    }

    #[test]
    fn marks_of_an_earlier_plan_are_replaced() {
        let (_, failed) = collect(BODY, strict());
        let mut record: Value = serde_json::from_slice(lines(&failed)[0]).unwrap();
        let mut event: Value = serde_json::from_str(record["event"].as_str().unwrap()).unwrap();
        event["context"]["braid"]["plan"] =
            json!([{"path": "x", "rule": "type", "action": "allowed"}]);
        record["event"] = Value::String(event.to_string());
        let line = serde_json::to_vec(&record).unwrap();
        let Replayed::Lands { line, .. } =
            replay_line(&line, "shop", None, &ReplayFilter::default())
        else {
            panic!("lands without a plan");
        };
        let landed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(landed["context"]["braid"].get("plan"), None);
        assert_eq!(landed["context"]["braid"]["trusted"], true);
    }
}

//! Replaying `failed/` into `raw/` (`braid replay`, `POST /v1/catalogue/replay`): each failure
//! record a tracking plan wrote is judged again by the plan in force
//! ([`braid_core::catalogue::replay`]), and what lands is written as one `raw/` object per
//! `failed/` object, in the partition of the hour its events were received, named by its content
//! as every lake object is.
//!
//! Idempotent: after the object is written, `replays/<failed key>.json` records the
//! lines it landed, and a later replay skips them. A crash between the two writes lands the same
//! lines again; under the same plan they make the same object (the same key), and under another
//! plan a second copy of each event with the same `messageId`, which unify applies once (a
//! duplicate within the dedupe window, counted from the original `receivedAt`).

use std::collections::{BTreeMap, BTreeSet};

use braid_core::catalogue::lake::{self, Area, partition_hour, replay_key, workspace_prefix};
use braid_core::catalogue::plan::TrackingPlan;
use braid_core::catalogue::replay::{ReplayFilter, Replayed, replay_line};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::object::{MAX_OBJECT_BYTES, gunzip, gzip, lines};
use super::store::{ObjectStore, StoreError};

/// What a replay did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySummary {
    /// `failed/` objects read (those of the hours in the time range).
    pub objects: usize,
    /// Failure records in the time range with one of the reasons.
    pub selected: usize,
    /// Events landed in `raw/` by this replay.
    pub landed: usize,
    /// Events an earlier replay landed (skipped).
    pub landed_before: usize,
    /// Events the plan in force refuses still, by reason and rule (`plan_violation/type`).
    pub still_refused: BTreeMap<String, usize>,
    /// Records with one of the reasons that cannot be replayed, and why.
    pub not_replayable: BTreeMap<String, usize>,
    /// The `raw/` objects written, for the unify step.
    pub written: Vec<String>,
    /// Whether nothing was written (a dry run).
    pub dry_run: bool,
}

/// What `replays/<failed key>.json` holds.
#[derive(Default, Deserialize, Serialize)]
struct Landed {
    /// The numbers (from 1) of the lines landed, by every replay so far.
    lines: BTreeSet<usize>,
    /// The `raw/` objects they were written to.
    objects: Vec<String>,
}

/// Replays the `failed/` records of `workspace` that `filter` selects under `plan` (none: every
/// selected event lands): writes what lands (unless `dry_run`) and says what it did.
///
/// # Errors
///
/// When the store fails; what was written before stays written, and recorded (a retry goes on
/// from there).
pub async fn replay<S: ObjectStore>(
    store: &S,
    workspace: &str,
    plan: Option<&TrackingPlan>,
    filter: &ReplayFilter,
    dry_run: bool,
) -> Result<ReplaySummary, StoreError> {
    let mut summary = ReplaySummary {
        dry_run,
        ..ReplaySummary::default()
    };
    let objects = store
        .list(&workspace_prefix(Area::Failed, workspace))
        .await?;
    for object in objects {
        if !object.key.ends_with(lake::OBJECT_SUFFIX)
            || !partition_hour(&object.key).is_some_and(|hour| filter.covers_hour(hour))
        {
            continue;
        }
        let Some(packed) = store.get(&object.key).await? else {
            continue;
        };
        summary.objects += 1;
        let Ok(content) = gunzip(&packed, MAX_OBJECT_BYTES) else {
            *summary
                .not_replayable
                .entry("an object that is not gzip".to_owned())
                .or_default() += 1;
            continue;
        };
        let marker = replay_key(&object.key);
        let mut landed: Landed = match store.get(&marker).await? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => Landed::default(),
        };
        let mut out = Vec::new();
        let mut numbers = Vec::new();
        let mut received: Option<OffsetDateTime> = None;
        for (at, line) in lines(&content).enumerate() {
            let number = at + 1;
            match replay_line(line, workspace, plan, filter) {
                Replayed::Skipped => {}
                _ if landed.lines.contains(&number) => {
                    summary.selected += 1;
                    summary.landed_before += 1;
                }
                Replayed::Lands { received_at, line } => {
                    summary.selected += 1;
                    received.get_or_insert(received_at);
                    out.extend_from_slice(&line);
                    out.push(b'\n');
                    numbers.push(number);
                }
                Replayed::StillRefused(error) => {
                    summary.selected += 1;
                    let rule = match &error {
                        braid_core::catalogue::validate::ValidationError::PlanViolation {
                            rule,
                            ..
                        } => format!("{}/{rule}", error.code()),
                        _ => error.code().to_owned(),
                    };
                    *summary.still_refused.entry(rule).or_default() += 1;
                }
                Replayed::NotReplayable(why) => {
                    summary.selected += 1;
                    *summary.not_replayable.entry(why.to_owned()).or_default() += 1;
                }
            }
        }
        let Some(received_at) = received else {
            continue;
        };
        summary.landed += numbers.len();
        if dry_run {
            continue;
        }
        // The records of one object were received in one hour: one object of that hour.
        let key = lake::object_key(Area::Raw, workspace, received_at, &lake::batch_id(&out));
        store.put(&key, gzip(&out)).await?;
        landed.lines.extend(numbers);
        landed.objects.push(key.clone());
        let record = serde_json::to_vec(&landed).unwrap_or_default();
        store.put(&marker, record).await?;
        summary.written.push(key);
    }
    Ok(summary)
}

/// Answers a replay request of the API (`POST /v1/catalogue/replay`) over `store`: the answer,
/// and the `raw/` objects written, for the platform's unify step (the cloud's is notified by
/// the bucket).
pub async fn answer<S: ObjectStore>(
    store: &S,
    plan: Option<&TrackingPlan>,
    request: braid_edge::ReplayRequest,
) -> (braid_edge::HttpResponse, Vec<String>) {
    let done = replay(
        store,
        &request.workspace,
        plan,
        &request.filter,
        request.dry_run,
    )
    .await;
    match done {
        Ok(summary) => {
            let written = summary.written.clone();
            let json = serde_json::to_value(&summary).unwrap_or_default();
            (request.finish(Ok::<_, StoreError>(json)), written)
        }
        Err(error) => {
            tracing::warn!(%error, "replay: the lake failed");
            (request.finish(Err(error)), Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use braid_core::catalogue::lake::FailedEvent;
    use braid_core::catalogue::validate::ValidationError;
    use serde_json::{Value, json};

    use super::*;
    use crate::lake::store::LocalStore;

    const RECEIVED: &str = "2024-05-01T10:20:00.000Z";

    /// A failure record of a blocked `Order Completed` (its event as it would have landed).
    fn record(message_id: &str, total: &Value) -> Vec<u8> {
        let event = json!({"type": "track", "event": "Order Completed", "userId": "u1",
            "messageId": message_id, "properties": {"total": total},
            "context": {"braid": {"trusted": true}}, "receivedAt": RECEIVED});
        let mut out = Vec::new();
        FailedEvent {
            error: ValidationError::PlanViolation {
                index: 0,
                rule: "type",
                message: "properties.total must be a number".to_owned(),
            },
            payload: event.to_string(),
            event: Some(event.to_string()),
        }
        .write_json(
            "shop",
            braid_core::timestamp::parse(RECEIVED).unwrap(),
            &mut out,
        );
        out
    }

    fn strict() -> TrackingPlan {
        TrackingPlan::parse(
            &json!({"events": [{"type": "track", "name": "Order Completed", "mode": "block",
                "schema": {"type": "object", "properties": {"properties": {"type": "object",
                    "properties": {"total": {"type": "number"}}}}}}]})
            .to_string(),
        )
        .unwrap()
    }

    async fn raw_lines(store: &LocalStore) -> Vec<Value> {
        let mut out = Vec::new();
        for object in store.list("raw/").await.unwrap() {
            let packed = store.get(&object.key).await.unwrap().unwrap();
            for line in lines(&gunzip(&packed, 1 << 20).unwrap()) {
                out.push(serde_json::from_slice(line).unwrap());
            }
        }
        out
    }

    #[tokio::test]
    async fn lands_what_the_plan_now_allows_once_in_the_hour_it_was_received() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut content = record("m1", &json!("12.50"));
        content.extend(record("m2", &json!(3)));
        content.extend(b"{\"code\":\"missing_field\",\"receivedAt\":\"2024-05-01T10:20:00.000Z\",\"workspace\":\"shop\",\"payload\":\"{}\"}\n");
        let failed = "failed/workspace=shop/date=2024-05-01/hour=10/abc.ndjson.gz";
        store.put(failed, gzip(&content)).await.unwrap();

        // Under the plan that blocked them, one is refused still; the other lands (it was
        // blocked by an earlier plan).
        let filter = ReplayFilter::default();
        let dry = replay(&store, "shop", Some(&strict()), &filter, true)
            .await
            .unwrap();
        assert_eq!((dry.objects, dry.selected, dry.landed), (1, 2, 1));
        assert_eq!(
            dry.still_refused,
            BTreeMap::from([("plan_violation/type".to_owned(), 1)])
        );
        assert!(dry.written.is_empty() && store.list("raw/").await.unwrap().is_empty());

        let first = replay(&store, "shop", Some(&strict()), &filter, false)
            .await
            .unwrap();
        assert_eq!(first.landed, 1);
        assert_eq!(first.written.len(), 1);
        assert!(first.written[0].starts_with("raw/workspace=shop/date=2024-05-01/hour=10/"));
        assert_eq!(raw_lines(&store).await.len(), 1);

        // The plan fixed: the other lands; the first is not landed twice.
        let second = replay(&store, "shop", None, &filter, false).await.unwrap();
        assert_eq!((second.landed, second.landed_before), (1, 1));
        let third = replay(&store, "shop", None, &filter, false).await.unwrap();
        assert_eq!((third.landed, third.landed_before), (0, 2));
        assert!(third.written.is_empty());
        let landed = raw_lines(&store).await;
        let mut ids: Vec<&str> = landed
            .iter()
            .map(|e| e["messageId"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["m1", "m2"]);
        assert!(landed.iter().all(|e| e["receivedAt"] == RECEIVED));

        // Another time range or workspace reads nothing.
        let later = ReplayFilter::new(
            Some(braid_core::timestamp::parse("2024-05-01T11:00:00Z").unwrap()),
            None,
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            replay(&store, "shop", None, &later, false)
                .await
                .unwrap()
                .objects,
            0
        );
        assert_eq!(
            replay(&store, "other", None, &filter, false)
                .await
                .unwrap()
                .objects,
            0
        );
    }
}

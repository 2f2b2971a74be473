//! Deliverers over a profile store in memory and a lake in a folder, with a receiver that
//! answers as each test scripts it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::lake::feed::Unify as _;
use crate::lake::store::LocalStore;
use crate::profiles::Segmentation;
use crate::profiles::kv::MemoryHome;
use braid_core::activate::replay::{ReplayRequest, ReplayResult};
use braid_core::activate::webhook::signed_headers;

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Profiles = ProfileUnify<LocalStore, MemoryHome>;

/// Answers from a script (then 200s), keeping every request.
#[derive(Clone, Default)]
struct Scripted {
    answers: Arc<Mutex<VecDeque<Option<u16>>>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Scripted {
    fn answering(statuses: &[Option<u16>]) -> Scripted {
        let scripted = Scripted::default();
        scripted.answers.lock().unwrap().extend(statuses);
        scripted
    }

    fn ids(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| header(r, "webhook-id"))
            .collect()
    }

    fn bodies(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }
}

fn header(request: &Request, name: &str) -> String {
    request
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

impl Sender for Scripted {
    async fn send(&self, request: Request) -> Answer {
        self.requests.lock().unwrap().push(request);
        let status = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Some(200));
        Answer {
            status,
            retry_after: None,
            error: format!("{status:?}"),
        }
    }
}

fn config(destination: &str) -> braid_core::Config {
    braid_core::Config::parse(&format!(
        r#"
[[workspaces]]
name = "w"
write_keys = ["k"]
[segment.audiences.buyers]
when = {{performed = "Buy"}}
[segment.audiences.big]
when = {{trait = "plan", op = "=", value = "pro"}}
[[activate.destinations]]
key = "crm"
type = "webhook"
url = "https://hooks.example.com/in"
secret = "{KEY}"
retry_seconds = [1, 1]
{destination}
"#
    ))
    .unwrap()
    .check()
    .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    lake: LocalStore,
    profiles: Arc<Profiles>,
    config: braid_core::Config,
}

fn setup(destination: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let config = config(destination);
    let profiles = ProfileUnify::new(
        lake.clone(),
        MemoryHome::default(),
        config.unify.identity.clone(),
        config.unify.profiles.clone(),
        config.unify.store.clone(),
    )
    .with_segmentation(Segmentation::of(&config))
    .with_workspaces(["w".to_owned()]);
    Setup {
        _dir: dir,
        lake,
        profiles: Arc::new(profiles),
        config,
    }
}

impl Setup {
    /// Applies events (and makes them durable when `commit`).
    async fn events(&self, events: &[Value], commit: bool) {
        let mut content = String::new();
        for event in events {
            content.push_str(&event.to_string());
            content.push('\n');
        }
        self.profiles
            .apply_lines("w", content.as_bytes())
            .await
            .unwrap();
        if commit {
            self.profiles.commit().await.unwrap();
        }
    }

    async fn deliverer(
        &self,
        sender: Scripted,
    ) -> Deliverer<LocalStore, MemoryHome, Webhook<Scripted>> {
        let destination = self.config.destinations().unwrap().remove(0);
        Deliverer::open(
            destination.clone(),
            self.lake.clone(),
            Arc::clone(&self.profiles),
            Webhook::new(destination, sender),
        )
        .await
        .unwrap()
        .without_jitter()
    }
}

fn buy(user: &str, n: u32, consent: bool) -> Value {
    json!({"type": "track", "event": "Buy", "userId": user, "messageId": format!("{user}-{n}"),
           "timestamp": format!("2026-12-01T10:00:{n:02}.000Z"),
           "receivedAt": format!("2026-12-01T10:00:{n:02}.000Z"),
           "context": {"consent": {"categoryPreferences": {"marketing": consent}}},
           "traits": {"plan": if n.is_multiple_of(2) { "pro" } else { "free" }}})
}

/// Steps until there is nothing to do at `now`.
async fn drain<K: Sink>(
    deliverer: &mut Deliverer<LocalStore, MemoryHome, K>,
    now: i64,
) -> Vec<Progress> {
    let mut out = Vec::new();
    loop {
        assert!(out.len() < 100, "no end: {out:?}");
        let progress = tokio::time::timeout(Duration::from_secs(5), deliverer.step(now))
            .await
            .expect("a step ends")
            .unwrap();
        let done = matches!(
            progress,
            Progress::Idle | Progress::WaitingUntil(_) | Progress::Disabled
        );
        out.push(progress);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn every_durable_change_is_delivered_once_in_order_signed_and_the_cursor_survives() {
    let setup = setup("traits = [\"plan\"]");
    setup
        .events(&[buy("u1", 2, true), buy("u2", 3, true)], true)
        .await;
    // Written but not durable yet: not delivered.
    setup.events(&[buy("u3", 4, true)], false).await;
    let sender = Scripted::default();
    let mut deliverer = setup.deliverer(sender.clone()).await;
    drain(&mut deliverer, 1_000).await;
    let bodies = sender.bodies();
    let seen: Vec<(String, String)> = bodies
        .iter()
        .map(|b| {
            (
                b["profile"].as_str().unwrap().to_owned(),
                b["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // u1 entered both audiences, u2 only buyers.
    assert_eq!(seen.len(), 3, "{bodies:?}");
    assert!(seen.iter().all(|(_, t)| t == "audience.entered"));
    let numbers: Vec<u64> = bodies
        .iter()
        .map(|b| b["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3], "in the change log's order");
    assert_eq!(bodies[0]["identifiers"]["user_id"], json!(["u1"]));
    assert_eq!(bodies[0]["traits"], json!({"plan": "pro"}));
    // Each request signed by the key over its own id and body.
    let first = sender.requests.lock().unwrap()[0].clone();
    let first = &first;
    let id = header(first, "webhook-id");
    assert_eq!(id, format!("msg_{}", bodies[0]["id"].as_str().unwrap()));
    let key = braid_core::activate::webhook::SigningKey::parse("k", KEY).unwrap();
    let expected = signed_headers(&[key], &id, 1, &first.body);
    assert_eq!(header(first, "webhook-signature"), expected[2].1);
    assert_eq!(header(first, "webhook-timestamp"), "1");
    assert_eq!(deliverer.state().delivered, 3);
    assert_eq!(deliverer.state().after, 3);
    deliverer.save_if_changed().await.unwrap();
    // Made durable: delivered next, by a deliverer opened again from the saved state.
    setup.profiles.commit().await.unwrap();
    let again = Scripted::default();
    let mut reopened = setup.deliverer(again.clone()).await;
    drain(&mut reopened, 2_000).await;
    let bodies = again.bodies();
    assert_eq!(bodies.len(), 2, "u3 entered both: {bodies:?}");
    assert!(bodies.iter().all(|b| b["profile"] != json!(null)));
    assert_eq!(bodies[0]["number"], 4);
    let all: std::collections::BTreeSet<String> =
        sender.ids().into_iter().chain(again.ids()).collect();
    assert_eq!(all.len(), 5, "no id twice");
}

#[tokio::test]
async fn a_failing_batch_is_retried_with_its_id_then_dead_lettered_or_disables() {
    let setup = setup("batch = 10\naudiences = [\"buyers\"]");
    setup
        .events(&[buy("u1", 1, true), buy("u2", 3, true)], true)
        .await;
    let sender = Scripted::answering(&[Some(503), None]);
    let mut deliverer = setup.deliverer(sender.clone()).await;
    assert_eq!(
        deliverer.step(0).await.unwrap(),
        Progress::WaitingUntil(1_000)
    );
    assert_eq!(
        deliverer.step(500).await.unwrap(),
        Progress::WaitingUntil(1_000),
        "not due"
    );
    // New changes meanwhile do not join the batch being retried.
    setup.events(&[buy("u3", 5, true)], true).await;
    assert_eq!(
        deliverer.step(1_000).await.unwrap(),
        Progress::WaitingUntil(2_000)
    );
    assert_eq!(deliverer.step(2_000).await.unwrap(), Progress::Delivered(2));
    let ids = sender.ids();
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0].starts_with("batch_") && ids[0] == ids[1] && ids[1] == ids[2],
        "{ids:?}"
    );
    assert_eq!(sender.bodies()[2]["batch"].as_array().unwrap().len(), 2);
    assert_eq!(deliverer.state().failed_attempts, 2);
    assert_eq!(deliverer.state().retrying, None);
    // The next batch is refused: kept as a dead letter, and the cursor goes on.
    sender.answers.lock().unwrap().push_back(Some(422));
    assert_eq!(
        deliverer.step(3_000).await.unwrap(),
        Progress::DeadLettered(1)
    );
    let dead = setup.lake.list(&dead_prefix("w", "crm")).await.unwrap();
    assert_eq!(dead.len(), 1);
    let line: Value = serde_json::from_slice(
        setup
            .lake
            .get(&dead[0].key)
            .await
            .unwrap()
            .unwrap()
            .trim_ascii_end(),
    )
    .unwrap();
    assert_eq!(line["class"], "refused");
    assert_eq!(line["status"], 422);
    assert_eq!(line["message"]["identifiers"]["user_id"], json!(["u3"]));
    assert_eq!(deliverer.step(3_000).await.unwrap(), Progress::Idle);
    // 410 disables it, and it stays disabled when opened again.
    setup.events(&[buy("u4", 7, true)], true).await;
    sender.answers.lock().unwrap().push_back(Some(410));
    assert_eq!(deliverer.step(4_000).await.unwrap(), Progress::Disabled);
    let state = read_state(&setup.lake, "w", "crm").await.unwrap();
    assert!(state.disabled.unwrap().reason.contains("410"));
    assert_eq!((state.delivered, state.dead_lettered), (2, 1));
    let mut reopened = setup.deliverer(Scripted::default()).await;
    assert_eq!(reopened.step(5_000).await.unwrap(), Progress::Disabled);
}

#[tokio::test]
async fn spent_retries_are_dead_letters_and_consent_and_filters_skip() {
    let setup = setup("consent = [\"marketing\"]\nreceives = [\"audience_entered\"]");
    setup
        .events(&[buy("yes", 2, true), buy("no", 4, false)], true)
        .await;
    let sender = Scripted::answering(&[Some(500), Some(500), Some(500)]);
    let mut deliverer = setup.deliverer(sender.clone()).await;
    assert_eq!(
        deliverer.step(0).await.unwrap(),
        Progress::WaitingUntil(1_000)
    );
    assert_eq!(
        deliverer.step(1_000).await.unwrap(),
        Progress::WaitingUntil(2_000)
    );
    assert_eq!(
        deliverer.step(2_000).await.unwrap(),
        Progress::DeadLettered(1)
    );
    let dead = setup.lake.list(&dead_prefix("w", "crm")).await.unwrap();
    let text = String::from_utf8(setup.lake.get(&dead[0].key).await.unwrap().unwrap()).unwrap();
    assert!(
        text.contains("\"class\":\"retries_exhausted\"") && text.contains("\"attempts\":3"),
        "{text}"
    );
    drain(&mut deliverer, 3_000).await;
    let profiles: Vec<String> = sender
        .bodies()
        .iter()
        .map(|b| b["identifiers"]["user_id"][0].as_str().unwrap().to_owned())
        .collect();
    assert!(
        profiles.iter().all(|p| p == "yes"),
        "without consent, never sent: {profiles:?}"
    );
    assert_eq!(
        deliverer.state().skipped,
        2,
        "the profile without consent's two entries"
    );
    assert_eq!(deliverer.state().after, 4);
}

/// Asks for a replay of the `crm` destination, as `braid destinations replay` does.
async fn request_replay(lake: &LocalStore, id: &str, class: Option<&str>) {
    let request = ReplayRequest {
        id: id.to_owned(),
        class: class.map(str::to_owned),
        ..ReplayRequest::default()
    };
    let key = format!("{}requests/{id}.json", replay_prefix("w", "crm"));
    lake.put(&key, serde_json::to_vec(&request).unwrap())
        .await
        .unwrap();
}

/// The result of a replay, once there is one.
async fn replay_result(lake: &LocalStore, id: &str) -> Option<ReplayResult> {
    let key = format!("{}done/{id}.json", replay_prefix("w", "crm"));
    let bytes = lake.get(&key).await.unwrap()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_replay_sends_the_dead_letters_it_names_again_with_their_ids() {
    let setup = setup("audiences = [\"buyers\"]");
    setup
        .events(&[buy("u1", 1, true), buy("u2", 3, true)], true)
        .await;
    // The first refused; the second fails its three attempts (retry_seconds = [1, 1]).
    let sender = Scripted::answering(&[Some(422), Some(500), Some(500), Some(500)]);
    let mut deliverer = setup.deliverer(sender.clone()).await;
    for now in [1_000, 10_000, 20_000, 30_000] {
        drain(&mut deliverer, now).await;
    }
    let dead = setup.lake.list(&dead_prefix("w", "crm")).await.unwrap();
    assert_eq!(dead.len(), 2, "one refused, one out of retries");
    let first_ids = sender.ids();
    // Only the refused one, and the receiver fails again: it stays a dead letter.
    request_replay(&setup.lake, "r1", Some("refused")).await;
    sender.answers.lock().unwrap().push_back(Some(503));
    deliverer.look_for_replays();
    drain(&mut deliverer, 2_000).await;
    let r1 = replay_result(&setup.lake, "r1").await.expect("a result");
    assert_eq!((r1.delivered, r1.kept), (0, 1));
    assert_eq!(r1.error.as_deref(), Some("Some(503)"));
    assert_eq!(
        setup
            .lake
            .list(&dead_prefix("w", "crm"))
            .await
            .unwrap()
            .len(),
        2
    );
    // Every class, the receiver well: both delivered with their first ids, none left.
    request_replay(&setup.lake, "r2", None).await;
    deliverer.look_for_replays();
    drain(&mut deliverer, 3_000).await;
    let r2 = replay_result(&setup.lake, "r2").await.expect("a result");
    assert_eq!((r2.delivered, r2.kept, r2.error), (2, 0, None));
    assert!(
        setup
            .lake
            .list(&dead_prefix("w", "crm"))
            .await
            .unwrap()
            .is_empty()
    );
    let ids = sender.ids();
    let replayed = &ids[ids.len() - 2..];
    let first: BTreeSet<&String> = first_ids.iter().collect();
    let again: BTreeSet<&String> = replayed.iter().collect();
    assert_eq!(first_ids.len(), 4);
    assert_eq!(first, again, "the same ids as their first delivery");
    assert_eq!(
        read_state(&setup.lake, "w", "crm").await.unwrap().replayed,
        2
    );
    // Requests are taken: nothing is left to replay.
    let requests = format!("{}requests/", replay_prefix("w", "crm"));
    assert!(setup.lake.list(&requests).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_request_waits_for_its_batch_or_for_wait_seconds() {
    let setup = setup("batch = 10\nwait_seconds = 60\naudiences = [\"buyers\"]");
    setup
        .events(&[buy("u1", 1, true), buy("u2", 3, true)], true)
        .await;
    let sender = Scripted::default();
    let mut deliverer = setup.deliverer(sender.clone()).await;
    // The buys were received at 10:00:01 and 10:00:03 (2026-12-01): the oldest waits 60 s.
    let oldest = braid_core::timestamp::unix_millis(
        braid_core::timestamp::parse("2026-12-01T10:00:01Z").unwrap(),
    );
    assert_eq!(
        deliverer.step(oldest + 1_000).await.unwrap(),
        Progress::WaitingUntil(oldest + 60_000)
    );
    assert!(sender.ids().is_empty(), "nothing sent while it waits");
    assert_eq!(
        deliverer.step(oldest + 60_000).await.unwrap(),
        Progress::Delivered(2)
    );
    assert_eq!(sender.ids().len(), 1, "one request of both");
    // A full batch does not wait.
    let events: Vec<Value> = (0..10)
        .map(|n| buy(&format!("v{n}"), 5 + n, true))
        .collect();
    setup.events(&events, true).await;
    assert_eq!(
        deliverer.step(oldest + 61_000).await.unwrap(),
        Progress::Delivered(10)
    );
}

/// A destination that keeps a copy of every profile, answering from a script.
struct Copier(Scripted);

impl Sink for Copier {
    fn wants(&self) -> Wants {
        Wants::Whole
    }

    fn copies(&self) -> bool {
        true
    }

    async fn deliver(&self, delivery: Delivery<'_>) -> Answer {
        self.0
            .send(Request {
                method: Method::Post,
                headers: vec![("webhook-id", delivery.id.to_owned())],
                body: serde_json::to_vec(
                    &delivery
                        .messages
                        .iter()
                        .map(|m| &m.body)
                        .collect::<Vec<_>>(),
                )
                .unwrap(),
            })
            .await
    }
}

#[tokio::test]
async fn a_refused_page_of_a_full_copy_is_kept_as_dead_letters_and_the_copy_goes_on() {
    let setup = setup("batch = 2");
    setup
        .events(
            &[buy("u1", 1, true), buy("u2", 3, true), buy("u3", 5, true)],
            true,
        )
        .await;
    let destination = setup.config.destinations().unwrap().remove(0);
    let sender = Scripted::answering(&[Some(422)]);
    let mut deliverer = Deliverer::open(
        destination,
        setup.lake.clone(),
        Arc::clone(&setup.profiles),
        Copier(sender.clone()),
    )
    .await
    .unwrap()
    .without_jitter();
    let steps = drain(&mut deliverer, 1_000).await;
    // The copy starts, its first page (two profiles) is refused, its second is written, it
    // ends; then the changes after it: none.
    assert_eq!(steps, [Progress::Idle,], "{steps:?}");
    let steps = drain(&mut deliverer, 1_000).await;
    assert_eq!(
        steps,
        [
            Progress::DeadLettered(2),
            Progress::Delivered(1),
            Progress::Idle
        ],
        "{steps:?}"
    );
    let state = deliverer.state();
    assert_eq!((state.copied, state.dead_lettered), (1, 2));
    assert!(state.copy.is_none() && state.copied_at.is_some());
    let dead = setup.lake.list(&dead_prefix("w", "crm")).await.unwrap();
    assert_eq!(dead.len(), 1);
    let text = setup.lake.get(&dead[0].key).await.unwrap().unwrap();
    let lines: Vec<Value> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["message"]["type"], "profile.copied");
    assert_eq!(lines[0]["class"], "refused");
}

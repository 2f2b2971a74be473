//! The profile store against the core holding everything, across stores, rebuilds and failures.

use serde_json::json;
use time::OffsetDateTime;

use braid_core::Event;
use braid_core::unify::{Identifier, Unifier};
use serde_json::Value;

use super::kv::{KvHome as _, MemoryHome};
use super::*;
use crate::lake::compact::{CompactSettings, compact_partition};
use crate::lake::feed::{CountEvents, unify_objects};
use crate::lake::object::{gzip, lines};
use crate::lake::store::LocalStore;

fn config() -> ProfileConfig {
    serde_json::from_value(json!({"aggregates": [
        {"name": "revenue", "event": "Buy", "property": "amount", "op": "sum"}]}))
    .unwrap()
}

fn small_cache() -> ProfileStoreConfig {
    ProfileStoreConfig {
        cache_profiles: 5,
        ..ProfileStoreConfig::default()
    }
}

type Profiles = ProfileUnify<LocalStore, MemoryHome>;

fn profiles(lake: &LocalStore, home: &MemoryHome, rules: IdentityRules) -> Profiles {
    ProfileUnify::new(lake.clone(), home.clone(), rules, config(), small_cache())
}

/// Writes `objects` objects of 40 random events each to the lake (three hours), unifying
/// each as it lands, as `braid serve` does.
async fn live(lake: &LocalStore, unify: &Profiles, objects: usize) {
    let mut state: u64 = 0x1234_5678_9ABC_DEF1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut sequence = 0;
    for object in 0..objects {
        let hour = 10 + object * 3 / objects;
        let mut content = String::new();
        for _ in 0..40 {
            sequence += 1;
            let mut event = json!({
                "type": "track", "event": "Buy", "messageId": format!("m{sequence}"),
                "anonymousId": format!("a{}", next(300)),
                "timestamp": format!("2024-05-01T{hour}:{:02}:00.000Z", next(60)),
                "properties": {"amount": next(50)}
            });
            if next(4) == 0 {
                event["type"] = json!("identify");
                let user = next(80);
                event["userId"] = json!(format!("u{user}"));
                // One email per user, which `contact` repeats: a path whose values are the
                // profile's identifiers.
                let email = format!("e{user}@x.example");
                event["traits"] = json!({"tier": next(3), "email": email, "contact": email});
            }
            content.push_str(&event.to_string());
            content.push('\n');
        }
        let key = format!(
            "raw/workspace=w/date=2024-05-01/hour={hour}/{}.ndjson.gz",
            braid_core::catalogue::lake::batch_id(content.as_bytes())
        );
        lake.put(&key, gzip(content.as_bytes())).await.unwrap();
        unify_objects(lake, unify, &[key], OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap();
    }
}

/// The profiles of every lake event in write order, by one unifier that holds everything.
async fn in_memory(lake: &LocalStore, rules: IdentityRules) -> Vec<Value> {
    let mut whole = Unifier::new(rules, config());
    let mut objects = lake.list("raw/").await.unwrap();
    objects.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
    for object in &objects {
        let content = gunzip(&lake.get(&object.key).await.unwrap().unwrap(), 1 << 20).unwrap();
        for line in lines(&content) {
            if let Ok(event) = Event::from_lake_line(std::str::from_utf8(line).unwrap()) {
                whole.apply(&event);
            }
        }
    }
    whole.snapshot()
}

/// Rebuilding from the lake gives the profiles the live path built — object by object as
/// they were committed, through a working set that keeps only 5 profiles between objects —
/// ids included, before and after compaction.
#[tokio::test]
async fn a_rebuild_equals_the_incremental_path() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let home = MemoryHome::default();
    let unify = profiles(&lake, &home, IdentityRules::default());
    live(&lake, &unify, 90).await;
    let reference = unify.snapshot("w").await.unwrap();
    assert!(reference.len() > 50, "{} profiles", reference.len());
    // The data map kept with them, batch by batch, as the store holds it.
    let map = unify.data_map("w").await.unwrap().unwrap();
    let buy = map
        .events
        .iter()
        .find(|(key, _)| key.name == "Buy")
        .map(|(_, entry)| entry.clone())
        .unwrap();
    let identifies: u64 = map
        .events
        .iter()
        .filter(|(key, _)| key.kind == "identify")
        .map(|(_, entry)| entry.count)
        .sum();
    assert_eq!(buy.count + identifies, 90 * 40);
    assert_eq!(buy.paths["properties.amount"].distinct.estimate(), 50);
    let identify = map
        .events
        .iter()
        .find(|(key, _)| key.kind == "identify")
        .map(|(_, entry)| entry)
        .unwrap();
    assert_eq!(
        identify.paths["traits.contact"].known_ids,
        [("email".to_owned(), identify.count)].into(),
        "every contact is its profile's email"
    );
    assert!(identify.paths["traits.email"].known_ids.is_empty());
    assert!(identify.paths["traits.tier"].known_ids.is_empty());
    let reopened = profiles(&lake, &home, IdentityRules::default());
    assert_eq!(
        reopened.data_map("w").await.unwrap().unwrap(),
        map,
        "as stored"
    );
    // The same events in memory, all at once: the store changed nothing.
    assert!(
        in_memory(&lake, IdentityRules::default()).await == reference,
        "the store changed the profiles"
    );
    let rebuilt = unify.rebuild("w").await.unwrap();
    assert_eq!(rebuilt.generation, 2);
    assert_eq!(rebuilt.rebuilt, Some(90 * 40));
    assert!(
        unify.snapshot("w").await.unwrap() == reference,
        "a rebuild differs"
    );
    assert_eq!(
        unify.data_map("w").await.unwrap().unwrap().events,
        map.events,
        "the rebuilt data map differs"
    );
    compact_partition(
        &lake,
        &CompactSettings::default(),
        "raw/workspace=w/date=2024-05-01/hour=11",
    )
    .await
    .unwrap();
    unify.rebuild("w").await.unwrap();
    assert!(
        unify.snapshot("w").await.unwrap() == reference,
        "compaction changed the rebuild"
    );
    assert_eq!(
        home.paths(),
        [
            "profiles/workspace=w/g1",
            "profiles/workspace=w/g2",
            "profiles/workspace=w/g3"
        ]
    );
}

#[tokio::test]
async fn profiles_persist_and_new_rules_rebuild_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let home = MemoryHome::default();
    let first = profiles(&lake, &home, IdentityRules::default());
    live(&lake, &first, 30).await;
    let before = first.snapshot("w").await.unwrap();
    let someone = Identifier::parse("user_id:u7").unwrap();
    let profile = first.profile("w", &someone).await.unwrap().unwrap();
    first.close().await.unwrap();
    // Opened again under the same rules: the store answers, nothing is rebuilt.
    let again = profiles(&lake, &home, IdentityRules::default());
    assert_eq!(
        again.open("w").await.unwrap(),
        Opened {
            generation: 1,
            rebuilt: None
        }
    );
    assert_eq!(again.profile("w", &someone).await.unwrap(), Some(profile));
    assert!(again.snapshot("w").await.unwrap() == before);
    again.close().await.unwrap();
    // Emails blocked: every profile that an email held together splits.
    let mut rules = IdentityRules::default();
    rules.types.get_mut("email").unwrap().blocked = vec![".*".into()];
    let rules = rules.compiled().unwrap();
    let stricter = profiles(&lake, &home, rules.clone());
    let opened = stricter.open("w").await.unwrap();
    assert_eq!(opened.generation, 2);
    assert_eq!(opened.rebuilt, Some(30 * 40));
    let after = stricter.snapshot("w").await.unwrap();
    assert!(after != before);
    assert!(after == in_memory(&lake, rules.clone()).await);
    assert!(
        after.iter().all(|p| {
            p["identifiers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|id| id["type"] != "email")
        }),
        "no email links anything"
    );
    let current: Value = serde_json::from_slice(
        &lake
            .get("profiles/workspace=w/CURRENT")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(current["generation"], 2);
    assert_eq!(current["fingerprint"], fingerprint(&rules, &config()));
}

#[tokio::test]
async fn a_lake_without_a_store_is_unified_when_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let counted = CountEvents;
    // An older Braid (or a deleted store) unified these without profiles.
    for n in 0..3 {
        let line = json!({"type": "identify", "messageId": format!("old{n}"), "userId": "u",
                          "timestamp": "2024-05-01T10:00:00.000Z"});
        let key = format!("raw/workspace=w/date=2024-05-01/hour=10/o{n}.ndjson.gz");
        lake.put(&key, gzip(format!("{line}\n").as_bytes()))
            .await
            .unwrap();
        unify_objects(&lake, &counted, &[key], OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap();
    }
    let unify = profiles(&lake, &MemoryHome::default(), IdentityRules::default());
    let opened = unify.open("w").await.unwrap();
    assert_eq!(opened.rebuilt, Some(3));
    let profile = unify
        .profile("w", &Identifier::parse("user_id:u").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile["eventCounts"]["identify"], 3);
    assert!(
        unify
            .profile("nowhere", &Identifier::parse("user_id:u").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

fn event(id: &str, at: &str, body: &Value) -> String {
    let mut event = body.clone();
    event["messageId"] = json!(id);
    event["timestamp"] = json!(at);
    format!("{event}\n")
}

#[tokio::test]
async fn events_are_paged_across_merges_and_redeliveries_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let unify = profiles(&lake, &MemoryHome::default(), IdentityRules::default());
    let laptop = json!({"type": "page", "anonymousId": "laptop"});
    let phone = json!({"type": "page", "anonymousId": "phone"});
    let mut first = String::new();
    for i in 0..5 {
        first.push_str(&event(
            &format!("l{i}"),
            "2024-05-01T10:00:00.000Z",
            &laptop,
        ));
        first.push_str(&event(&format!("p{i}"), "2024-05-01T10:01:00.000Z", &phone));
    }
    let login = |id: &str, anonymous: &str| {
        event(
            id,
            "2024-05-01T10:05:00.000Z",
            &json!({"type": "identify", "anonymousId": anonymous, "userId": "u"}),
        )
    };
    unify.apply_lines("w", first.as_bytes()).await.unwrap();
    let second = login("login-laptop", "laptop") + &login("login-phone", "phone");
    assert_eq!(
        unify
            .apply_lines("w", second.as_bytes())
            .await
            .unwrap()
            .events,
        2
    );
    // The same lines again (a client's retry), and the first batch again.
    assert_eq!(
        unify
            .apply_lines("w", second.as_bytes())
            .await
            .unwrap()
            .events,
        0
    );
    assert_eq!(
        unify
            .apply_lines("w", first.as_bytes())
            .await
            .unwrap()
            .events,
        0
    );
    unify.commit().await.unwrap();
    let user = Identifier::parse("user_id:u").unwrap();
    let profile = unify.profile("w", &user).await.unwrap().unwrap();
    assert_eq!(profile["eventCounts"]["page"], 10);
    assert_eq!(profile["eventCounts"]["identify"], 2);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = unify.events("w", &user, after, 3).await.unwrap().unwrap();
        assert!(page.len() <= 3);
        seen.extend(
            page.iter()
                .map(|e| e["messageId"].as_str().unwrap().to_owned()),
        );
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..5)
        .flat_map(|i| [format!("l{i}"), format!("p{i}")])
        .collect();
    expected.extend(["login-laptop".to_owned(), "login-phone".to_owned()]);
    assert_eq!(seen, expected, "every event once, in the order unified");
    assert!(
        unify
            .events("w", &Identifier::parse("user_id:nobody").unwrap(), None, 3)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_failed_write_loses_nothing_and_is_retried_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let home = MemoryHome::default();
    let unify = profiles(&lake, &home, IdentityRules::default());
    let one = event(
        "e1",
        "2024-05-01T10:00:00.000Z",
        &json!({"type": "identify", "anonymousId": "a", "userId": "u", "traits": {"plan": "pro"}}),
    );
    unify.apply_lines("w", one.as_bytes()).await.unwrap();
    let kv = home.open("profiles/workspace=w/g1").await.unwrap();
    kv.set_failing(true);
    let two = event(
        "e2",
        "2024-05-01T10:01:00.000Z",
        &json!({"type": "track", "event": "Buy", "anonymousId": "a", "properties": {"amount": 5}}),
    );
    let error = unify.apply_lines("w", two.as_bytes()).await.unwrap_err();
    assert_eq!(error.kind(), "ProfileStoreUnavailable");
    assert!(error.is_retriable());
    // The failed batch left no trace: not in memory either.
    let user = Identifier::parse("user_id:u").unwrap();
    let profile = unify.profile("w", &user).await.unwrap().unwrap();
    assert!(profile["eventCounts"].get("Buy").is_none(), "{profile}");
    let counted = |map: braid_core::catalogue::map::DataMap| {
        map.events
            .iter()
            .filter(|(key, _)| key.name == "Buy")
            .map(|(_, entry)| entry.count)
            .sum::<u64>()
    };
    assert_eq!(counted(unify.data_map("w").await.unwrap().unwrap()), 0);
    kv.set_failing(false);
    assert_eq!(
        unify.apply_lines("w", two.as_bytes()).await.unwrap().events,
        1
    );
    let profile = unify.profile("w", &user).await.unwrap().unwrap();
    assert_eq!(profile["eventCounts"]["Buy"], 1);
    assert_eq!(profile["aggregates"]["revenue"], 5.0);
    // Sent again (a redelivery): the profile and the map count it once.
    unify.apply_lines("w", two.as_bytes()).await.unwrap();
    assert_eq!(counted(unify.data_map("w").await.unwrap().unwrap()), 1);
}

/// A client's retry that lands in another hour than its first copy: unify names the copy in
/// its checkpoint (and not the lines of an object applied again), and compaction leaves it
/// out, so the compacted lake holds each event once — as the profiles count it.
#[tokio::test]
async fn a_retry_in_another_hour_is_compacted_out() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let unify = profiles(&lake, &MemoryHome::default(), IdentityRules::default());
    let buy = |id: &str, at: &str| {
        event(
            id,
            at,
            &json!({"type": "track", "event": "Buy", "userId": "u", "properties": {"amount": 10},
                "receivedAt": at}),
        )
    };
    let ten = "raw/workspace=w/date=2024-05-01/hour=10/0000000000000000000000000000000a.ndjson.gz";
    let eleven =
        "raw/workspace=w/date=2024-05-01/hour=11/0000000000000000000000000000000b.ndjson.gz";
    let first = buy("o1", "2024-05-01T10:59:59.000Z") + &buy("o2", "2024-05-01T10:59:59.500Z");
    let retry = buy("o2", "2024-05-01T11:00:01.000Z") + &buy("o3", "2024-05-01T11:00:02.000Z");
    lake.put(ten, gzip(first.as_bytes())).await.unwrap();
    lake.put(eleven, gzip(retry.as_bytes())).await.unwrap();
    let now = OffsetDateTime::UNIX_EPOCH;
    let keys = [ten.to_owned(), eleven.to_owned()];
    let summary = unify_objects(&lake, &unify, &keys, now).await.unwrap();
    assert_eq!(summary.events, 3);
    for (key, copies) in [(eleven, json!([1])), (ten, json!([]))] {
        let bytes = lake
            .get(&braid_core::catalogue::lake::checkpoint_key(key))
            .await
            .unwrap()
            .unwrap();
        let checkpoint: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(checkpoint["duplicates"], copies, "{key}");
    }
    // The first object applied again (a crash before its checkpoint, say): no copy of itself.
    let again = unify.apply(ten, first.as_bytes()).await.unwrap();
    assert_eq!((again.events, again.duplicates.len()), (0, 0));

    for partition in [
        "raw/workspace=w/date=2024-05-01/hour=10",
        "raw/workspace=w/date=2024-05-01/hour=11",
    ] {
        compact_partition(&lake, &CompactSettings::default(), partition)
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for object in crate::lake::compact::live_objects(&lake, "raw/")
        .await
        .unwrap()
    {
        let content =
            crate::lake::object::gunzip(&lake.get(&object.key).await.unwrap().unwrap(), 1 << 20)
                .unwrap();
        for line in lines(&content) {
            let event: Value = serde_json::from_slice(line).unwrap();
            ids.push(event["messageId"].as_str().unwrap().to_owned());
        }
    }
    ids.sort();
    assert_eq!(ids, ["o1", "o2", "o3"]);
    unify.commit().await.unwrap();
    let user = Identifier::parse("user_id:u").unwrap();
    let profile = unify.profile("w", &user).await.unwrap().unwrap();
    assert_eq!(profile["aggregates"]["revenue"], 30.0);
}

/// The reasons of `failed/` are counted once per object in the data map, kept by the store,
/// and a rebuild counts the same.
#[tokio::test]
async fn failure_records_are_counted_once_and_rebuilt_alike() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let home = MemoryHome::default();
    let unify = profiles(&lake, &home, IdentityRules::default());
    let event = r#"{"type":"track","event":"A","userId":"u","messageId":"m1","receivedAt":"2024-05-01T10:00:00.000Z"}"#;
    let raw = "raw/workspace=w/date=2024-05-01/hour=10/a.ndjson.gz";
    lake.put(raw, gzip(format!("{event}\n").as_bytes()))
        .await
        .unwrap();
    let record = |code: &str| {
        json!({"receivedAt": "2024-05-01T10:00:00.000Z", "workspace": "w", "index": 0,
               "code": code, "message": format!("event 0: {code}"),
               "payload": r#"{"type":"track","event":"B"}"#})
        .to_string()
    };
    let failed = "failed/workspace=w/date=2024-05-01/hour=10/b.ndjson.gz";
    let content = format!(
        "{}\n{}\n{}\n",
        record("plan_violation"),
        record("plan_violation"),
        record("missing_field")
    );
    lake.put(failed, gzip(content.as_bytes())).await.unwrap();
    let keys = [raw.to_owned(), failed.to_owned()];
    let first = unify_objects(&lake, &unify, &keys, OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(
        (first.applied, first.events),
        (2, 1),
        "the records are no events"
    );
    let again = unify_objects(&lake, &unify, &keys, OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(again.already_applied, 2);
    let map = unify.data_map("w").await.unwrap().unwrap();
    let counts: Vec<(&str, u64)> = map
        .failures
        .iter()
        .map(|(c, f)| (c.as_str(), f.count))
        .collect();
    assert_eq!(counts, [("missing_field", 1), ("plan_violation", 2)]);
    assert_eq!(
        map.failures["plan_violation"].events,
        [("track B".to_owned(), 2)].into()
    );
    assert_eq!(map.events.len(), 1);
    unify.close().await.unwrap();
    let reopened = profiles(&lake, &home, IdentityRules::default());
    assert_eq!(
        reopened.data_map("w").await.unwrap().unwrap(),
        map,
        "as stored"
    );
    reopened.rebuild("w").await.unwrap();
    assert_eq!(
        reopened.data_map("w").await.unwrap().unwrap(),
        map,
        "as rebuilt"
    );
}

/// A configuration with computed traits and audiences, checked (so that the audiences' event
/// conditions are in its profile configuration).
fn segmented_config() -> braid_core::Config {
    braid_core::Config::parse(
        r#"
[[unify.profiles.computed]]
name = "spend_7d"
event = "Buy"
op = "sum"
property = "amount"
window = "7d"
[segment.audiences.recent]
when = {performed = "Buy", window = "3d"}
[segment.audiences.big]
when = {computed = "spend_7d", op = ">=", value = 60}
[segment.audiences.big_lapsing]
when = {and = [{member = "big"}, {not = {member = "recent"}}]}
"#,
    )
    .unwrap()
    .check()
    .unwrap()
}

fn segmented(lake: &LocalStore, home: &MemoryHome) -> Profiles {
    let config = segmented_config();
    ProfileUnify::new(
        lake.clone(),
        home.clone(),
        IdentityRules::default(),
        config.unify.profiles.clone(),
        small_cache(),
    )
    .with_segmentation(Segmentation::of(&config))
    .with_workspaces(["w".to_owned()])
}

const MAY_1: i64 = 1_714_521_600_000;
const DAY: i64 = 86_400_000;

/// Objects of purchases over about 50 days, each unified as it lands, with a sweep at the time
/// of its last event (the clock of a server that runs while they arrive): the last event's
/// time.
async fn purchases(lake: &LocalStore, unify: &Profiles) -> i64 {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut at = MAY_1;
    for object in 0..40 {
        let mut content = String::new();
        for i in 0..10 {
            at += i64::try_from(next(DAY as u64 / 4)).unwrap();
            let time =
                braid_core::timestamp::format(braid_core::timestamp::from_unix_millis(at).unwrap());
            let event = json!({
                "type": "track", "event": "Buy", "messageId": format!("m{object}-{i}"),
                "userId": format!("u{}", next(12)), "timestamp": time, "receivedAt": time,
                "properties": {"amount": next(40)}
            });
            content.push_str(&event.to_string());
            content.push('\n');
        }
        let key = format!(
            "raw/workspace=w/date=2024-05-01/hour=10/{}.ndjson.gz",
            braid_core::catalogue::lake::batch_id(content.as_bytes())
        );
        lake.put(&key, gzip(content.as_bytes())).await.unwrap();
        unify_objects(lake, unify, &[key], OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap();
        unify.sweep(at).await.unwrap();
    }
    at
}

fn ids_of(changes: &[Value]) -> std::collections::BTreeSet<String> {
    changes
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Audiences and computed traits through the store: timers swept at their time, the change
/// log numbered and durable, everything the same after a reopen, and a rebuild from the lake
/// giving the same memberships, values and change log entries (by id).
#[tokio::test]
async fn audiences_are_kept_swept_and_rebuilt_alike() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let home = MemoryHome::default();
    let unify = segmented(&lake, &home);
    let end = purchases(&lake, &unify).await + 10 * DAY;
    assert!(unify.sweep(end).await.unwrap() > 0);
    // Everyone's purchases are over 3 days old at the end: nobody is recent, and the spend of
    // the last 7 days is 0 (nothing counted: not kept).
    let reference = unify.snapshot("w").await.unwrap();
    assert!(reference.len() >= 10, "{} profiles", reference.len());
    for profile in &reference {
        assert_eq!(profile["audiences"], json!({}), "{profile}");
        assert_eq!(profile["computedTraits"], json!({}), "{profile}");
        assert!(profile.get("nextCheck").is_none(), "{profile}");
    }
    let changes = unify.changes("w", 0, 100_000).await.unwrap();
    let count = |kind: &str, audience: &str| {
        changes
            .iter()
            .filter(|c| c["type"] == kind && c["audience"] == audience)
            .count()
    };
    assert!(count("audience_entered", "recent") >= 10);
    assert_eq!(
        count("audience_entered", "recent"),
        count("audience_exited", "recent")
    );
    assert!(count("audience_entered", "big_lapsing") > 0);
    assert_eq!(
        count("audience_entered", "big_lapsing"),
        count("audience_exited", "big_lapsing")
    );
    let numbers: Vec<u64> = changes
        .iter()
        .map(|c| c["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    // Paged reads continue where the last page ended.
    let page = unify.changes("w", 5, 3).await.unwrap();
    assert_eq!(page, changes[5..8]);
    // Nothing is due any more.
    assert_eq!(unify.sweep(end + DAY).await.unwrap(), 0);
    unify.close().await.unwrap();

    // Reopened: the same.
    let reopened = segmented(&lake, &home);
    assert_eq!(reopened.snapshot("w").await.unwrap(), reference);
    assert_eq!(reopened.changes("w", 0, 100_000).await.unwrap(), changes);

    // Rebuilt from the lake: the same profiles once the clock has caught up, and the same
    // changes (their ids: the numbering may interleave profiles differently).
    reopened.rebuild("w").await.unwrap();
    reopened.sweep(end).await.unwrap();
    assert_eq!(reopened.snapshot("w").await.unwrap(), reference);
    let rebuilt = reopened.changes("w", 0, 100_000).await.unwrap();
    assert_eq!(ids_of(&rebuilt), ids_of(&changes));
}

/// Explain and preview read the store's profiles.
#[tokio::test]
async fn explain_and_preview_answer_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let home = MemoryHome::default();
    let unify = segmented(&lake, &home);
    let now = purchases(&lake, &unify).await;
    let snapshot = unify.snapshot("w").await.unwrap();
    let user = Identifier::new(braid_core::unify::IdType::UserId, "u3".to_owned());
    let explained = unify
        .explain("w", &user, "recent", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(explained["audience"], "recent");
    assert_eq!(
        explained["explanation"]["condition"],
        "performed Buy in the last 3 days"
    );
    assert!(explained["explanation"]["count"].is_u64(), "{explained}");
    assert_eq!(unify.explain("w", &user, "nope", now).await.unwrap(), None);

    let segments = Segmentation::of(&segmented_config()).segments;
    let every = segments
        .preview_condition(&json!({"performed": "Buy"}))
        .unwrap();
    let preview = unify.preview("w", &every, None, now, 3).await.unwrap();
    assert_eq!(preview["profiles"], json!(snapshot.len()));
    assert_eq!(preview["size"], json!(snapshot.len()));
    assert_eq!(preview["sample"].as_array().unwrap().len(), 3);
    // The condition reads event counts only; a sample still shows each profile's identifiers.
    let mut shown = 0;
    for sampled in preview["sample"].as_array().unwrap() {
        let whole = snapshot.iter().find(|p| p["id"] == sampled["id"]).unwrap();
        let people = whole["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|id| id["type"] != "browser")
            .count();
        let listed = sampled["identifiers"].as_array().unwrap().len();
        assert_eq!(listed, people.min(5), "{sampled} of {whole}");
        shown += listed;
    }
    assert!(shown > 0 || snapshot.len() < 3, "{preview}");
    // An edit of "recent" to everyone who ever bought: those out of it now would enter.
    let outside = snapshot
        .iter()
        .filter(|p| p["audiences"].get("recent").is_none())
        .count();
    let edited = unify
        .preview("w", &every, Some("recent"), now, 3)
        .await
        .unwrap();
    assert_eq!(edited["compared"]["entering"], json!(outside));
    assert_eq!(edited["compared"]["leaving"], json!(0));
    // A window nothing counts yet is refused, naming why.
    let error = segments
        .preview_condition(&json!({"performed": "Buy", "window": "5d"}))
        .unwrap_err()
        .to_string();
    assert!(error.contains("not counted by any audience"), "{error}");
}

/// A preview reads a copy of the profiles made at the first preview; later batches keep it
/// current: new profiles, merged ones, memberships the clock changed.
#[tokio::test]
async fn the_preview_copy_follows_new_events_merges_and_timers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalStore::open(dir.path()).unwrap();
    let home = MemoryHome::default();
    let unify = segmented(&lake, &home);
    let now = purchases(&lake, &unify).await;
    let segments = Segmentation::of(&segmented_config()).segments;
    let everyone = segments
        .preview_condition(&json!({"performed": "Buy"}))
        .unwrap();
    let recent = segments
        .preview_condition(&json!({"member": "recent"}))
        .unwrap();
    // What the store holds, evaluated by hand: profiles, and those in "recent".
    let expected = |snapshot: &[Value]| {
        let in_recent = snapshot
            .iter()
            .filter(|p| p["audiences"].get("recent").is_some())
            .count();
        (snapshot.len(), in_recent)
    };
    let (profiles, in_recent) = expected(&unify.snapshot("w").await.unwrap());
    let first = unify.preview("w", &recent, None, now, 2).await.unwrap();
    assert_eq!(
        (first["profiles"].clone(), first["size"].clone()),
        (json!(profiles), json!(in_recent))
    );
    // A new buyer, an anonymous buyer, then the anonymous one logs in as u1 (a merge).
    let time = |at: i64| {
        braid_core::timestamp::format(braid_core::timestamp::from_unix_millis(at).unwrap())
    };
    let events = [
        json!({"type": "track", "event": "Buy", "messageId": "n1", "userId": "newcomer",
               "timestamp": time(now + 1), "receivedAt": time(now + 1)}),
        json!({"type": "track", "event": "Buy", "messageId": "n2", "anonymousId": "anon-9",
               "timestamp": time(now + 2), "receivedAt": time(now + 2)}),
        json!({"type": "identify", "messageId": "n3", "anonymousId": "anon-9", "userId": "u1",
               "timestamp": time(now + 3), "receivedAt": time(now + 3)}),
    ];
    let content: String = events.iter().map(|e| e.to_string() + "\n").collect();
    let key = format!(
        "raw/workspace=w/date=2024-05-01/hour=11/{}.ndjson.gz",
        braid_core::catalogue::lake::batch_id(content.as_bytes())
    );
    lake.put(&key, gzip(content.as_bytes())).await.unwrap();
    unify_objects(&lake, &unify, &[key], OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap();
    let snapshot = unify.snapshot("w").await.unwrap();
    assert_eq!(
        snapshot.len(),
        profiles + 1,
        "one new profile, one merged away"
    );
    let after = unify
        .preview("w", &everyone, None, now + 3, 500)
        .await
        .unwrap();
    assert_eq!(after["profiles"], json!(snapshot.len()));
    assert_eq!(after["size"], json!(snapshot.len()));
    let sampled: std::collections::BTreeSet<&str> = after["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let stored: std::collections::BTreeSet<&str> =
        snapshot.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(sampled, stored);
    // Ten days on, the timers empty "recent".
    unify.sweep(now + 10 * DAY).await.unwrap();
    let (_, in_recent) = expected(&unify.snapshot("w").await.unwrap());
    assert_eq!(in_recent, 0);
    let later = unify
        .preview("w", &recent, None, now + 10 * DAY, 2)
        .await
        .unwrap();
    assert_eq!(later["size"], json!(0));
}

//! The `PostgreSQL` destination end to end: `braid serve` keeps the tables of a real `PostgreSQL`
//! server (Debian's, started here) equal to the profiles, through a stream with merges, a
//! `kill -9` in the middle of it, and a rule change whose rebuild splits one profile and
//! merges two others. The rows are
//! read back with `psql` and compared with every profile `braid profiles export` writes; a
//! second destination with a consent category holds exactly the profiles that grant it.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    clippy::too_many_lines,
    reason = "test code: one scenario, read top to bottom"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use braid_tests::{PgServer, Server};
use serde_json::{Value, json};

const USERS: usize = 40;

fn config(pg: &PgServer, split: bool) -> String {
    let url = pg.url("marketing");
    // Before: a shared address links no one. After: a test address links no one (a split),
    // and the shared one does (a merge: a profile id goes).
    let blocked = if split {
        "[unify.identity.types.email]\nblocked = ['test@.*']\n"
    } else {
        "[unify.identity.types.email]\nblocked = ['shared@.*']\n"
    };
    format!(
        r#"
{blocked}
[[unify.profiles.computed]]
name = "orders"
event = "Order Completed"
op = "count"

[segment.audiences.buyers]
when = {{performed = "Order Completed"}}

[segment.audiences.pro]
when = {{trait = "plan", op = "=", value = "pro"}}

[[activate.destinations]]
key = "warehouse"
type = "postgres"
url = "{url}"
columns = {{ plan = "text", ltv = "number", signed_up = "timestamp" }}
batch = 25

[[activate.destinations]]
key = "consented"
type = "postgres"
url = "{url}"
schema = "marketing_only"
consent = ["marketing"]
"#
    )
}

fn start(dir: &Path, pg: &PgServer, split: bool) -> Server {
    let path = dir.join(if split { "split.toml" } else { "braid.toml" });
    std::fs::write(&path, config(pg, split)).unwrap();
    Server::start_with(
        dir.join("data"),
        dir.join("braid.log"),
        &["--config", path.to_str().unwrap()],
    )
}

/// The events of user `i`: an anonymous visit, a sign-up as another profile, for even users a
/// login that merges the two (and marketing consent), and orders for every fourth.
fn user_events(i: usize) -> Vec<Value> {
    let (anon, user) = (format!("a{i}"), format!("u{i}"));
    let plan = if i.is_multiple_of(3) { "pro" } else { "free" };
    let mut events = vec![
        json!({"type": "track", "event": "Page Viewed", "anonymousId": anon}),
        json!({"type": "identify", "userId": user,
               "traits": {"email": format!("{user}@shop.test"), "plan": plan,
                          "ltv": f64::from(u32::try_from(i).unwrap()) * 10.5, "signed_up": format!("2026-11-{:02}T08:00:00Z", i % 28 + 1)},
               "context": {"consent": {"categoryPreferences": {"marketing": i.is_multiple_of(2)}}}}),
    ];
    if i.is_multiple_of(2) {
        events.push(json!({"type": "identify", "anonymousId": anon, "userId": user}));
    }
    if i.is_multiple_of(4) {
        events.push(json!({"type": "track", "event": "Order Completed", "userId": user}));
    }
    events
}

/// Two visitors sharing a test address (one profile until the rule blocks it), one of whom
/// signs up; two sharing an address (two profiles until the rule allows it); and a
/// trait with a NUL, which `PostgreSQL` cannot hold as it is.
fn other_events() -> Vec<Value> {
    vec![
        json!({"type": "identify", "anonymousId": "sa", "traits": {"email": "test@shop.test"}}),
        json!({"type": "identify", "anonymousId": "sb", "traits": {"email": "test@shop.test"}}),
        json!({"type": "identify", "anonymousId": "sb", "userId": "us"}),
        json!({"type": "identify", "anonymousId": "pa", "traits": {"email": "shared@shop.test"}}),
        json!({"type": "identify", "anonymousId": "pb", "traits": {"email": "shared@shop.test"}}),
        json!({"type": "identify", "userId": "nul", "traits": {"plan": "a\u{0}b"}}),
    ]
}

fn send(server: &Server, events: &[Value]) {
    for chunk in events.chunks(20) {
        let reply = server.post("/v1/batch", json!({"batch": chunk}).to_string().as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

/// The rows of a schema's tables, by profile id: the profile row and its memberships.
fn rows(pg: &PgServer, schema: &str) -> BTreeMap<String, Value> {
    let sql = format!(
        "SELECT coalesce(json_object_agg(p.profile_id, json_build_object(\
           'identifiers', p.identifiers, 'traits', p.traits, \
           'computed', p.computed_traits, 'audiences', p.audiences, \
           'first_seen', to_char(p.first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
           'last_seen', to_char(p.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
           'event_counts', p.event_counts, 'workspace', p.workspace, \
           'members', (SELECT coalesce(json_agg(m.audience ORDER BY m.audience), '[]') \
                       FROM \"{schema}\".braid_audience_members m \
                       WHERE m.workspace = p.workspace AND m.profile_id = p.profile_id))), '{{}}') \
         FROM \"{schema}\".braid_profiles p"
    );
    let text = pg.psql("marketing", &sql);
    serde_json::from_str::<BTreeMap<String, Value>>(text.trim()).unwrap()
}

/// Memberships whose profile has no row (there should be none).
fn orphans(pg: &PgServer, schema: &str) -> String {
    pg.psql(
        "marketing",
        &format!(
            "SELECT count(*) FROM \"{schema}\".braid_audience_members m WHERE NOT EXISTS \
             (SELECT 1 FROM \"{schema}\".braid_profiles p \
              WHERE p.workspace = m.workspace AND p.profile_id = m.profile_id)"
        ),
    )
}

/// A profile (as `braid profiles export` writes it, the profile API's view) as its row should
/// be.
fn expected_row(profile: &Value) -> Value {
    let traits: serde_json::Map<String, Value> = profile["traits"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let value = match &t["value"] {
                Value::String(s) => json!(s.replace('\0', "\u{fffd}")),
                other => other.clone(),
            };
            (name.clone(), value)
        })
        .collect();
    let audiences: Vec<&String> = profile["audiences"].as_object().unwrap().keys().collect();
    json!({
        "identifiers": profile["identifiers"],
        "traits": traits,
        "computed": profile["computedTraits"],
        "audiences": audiences,
        "members": audiences,
        "first_seen": profile["firstSeen"],
        "last_seen": profile["lastSeen"],
        "event_counts": profile["eventCounts"],
        "workspace": "test",
    })
}

/// Whether a profile grants marketing: it holds an even user (the scenario's rule).
fn grants_marketing(profile: &Value) -> bool {
    profile["identifiers"].as_array().unwrap().iter().any(|id| {
        id["type"] == "user_id"
            && id["value"]
                .as_str()
                .and_then(|v| v.strip_prefix('u'))
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n % 2 == 0)
    })
}

/// Every profile, as `braid profiles export` writes them (the profile API's view), by id.
fn export(dir: &Path) -> BTreeMap<String, Value> {
    braid_tests::export_profiles_with(
        &dir.join("data"),
        &dir.join("export.ndjson"),
        Some(&dir.join("current.toml")),
    )
}

/// The destinations' status (`braid destinations status --json`), by key.
fn status(dir: &Path) -> BTreeMap<String, Value> {
    braid_tests::destinations_status(&dir.join("data"), &dir.join("current.toml"))
}

/// Waits until `done` holds of the warehouse's status and both destinations have delivered
/// everything (no full copy under way, nothing pending, twice in a row), then stops the server
/// and compares the tables with the export of its data folder, row by row. The profiles.
fn converge_and_compare(
    dir: &Path,
    mut server: Server,
    pg: &PgServer,
    done: impl Fn(&Value) -> bool,
) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut settled_once = false;
    loop {
        let all = status(dir);
        let settled = done(&all["warehouse"])
            && all.values().all(|s| {
                s["status"] == "delivering"
                    && s["lag_seconds"].is_null()
                    && s["state"]["copy"].is_null()
            });
        if settled && settled_once {
            break;
        }
        settled_once = settled;
        assert!(
            Instant::now() < deadline,
            "the destinations did not settle: {all:?}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(server.terminate(), "{}", server.log_text());
    let profiles = export(dir);
    let warehouse = rows(pg, "public");
    assert_eq!(
        warehouse.keys().collect::<BTreeSet<_>>(),
        profiles.keys().collect::<BTreeSet<_>>(),
        "one row per profile, none of a profile that is gone"
    );
    for (id, profile) in &profiles {
        assert_eq!(warehouse[id], expected_row(profile), "profile {id}");
    }
    assert_eq!(orphans(pg, "public").trim(), "0");
    let consented = rows(pg, "marketing_only");
    let granting: BTreeSet<&String> = profiles
        .iter()
        .filter(|(_, p)| grants_marketing(p))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(consented.keys().collect::<BTreeSet<_>>(), granting);
    for id in granting {
        assert_eq!(consented[id], expected_row(&profiles[id]), "consented {id}");
    }
    assert_eq!(orphans(pg, "marketing_only").trim(), "0");
    profiles
}

#[test]
fn postgres_tables_equal_the_profiles_through_merges_a_crash_and_a_split() {
    let pg = PgServer::start();
    pg.psql("postgres", "CREATE DATABASE marketing");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("current.toml"), config(&pg, false)).unwrap();

    // The first half, then a crash while it is being written.
    let mut server = start(dir, &pg, false);
    let events: Vec<Value> = (0..USERS).flat_map(user_events).collect();
    let (first, second) = events.split_at(events.len() / 2);
    send(&server, first);
    std::thread::sleep(Duration::from_millis(150));
    server.kill_9();
    let server = start(dir, &pg, false);
    send(&server, second);
    send(&server, &other_events());
    // The last event sent is the "nul" user's: once its row is there, every change before it
    // was written (a destination writes the change log in order).
    let has_last = |_: &Value| {
        pg.psql(
            "marketing",
            "SELECT count(*) FROM braid_profiles \
             WHERE identifiers @> '[{\"type\": \"user_id\", \"value\": \"nul\"}]'",
        )
        .trim()
            == "1"
    };
    let profiles = converge_and_compare(dir, server, &pg, has_last);
    // Merges happened: an even user's visit is in their profile, an odd one's is not.
    let of = |kind: &str, value: &str| -> String {
        profiles
            .iter()
            .find(|(_, p)| {
                p["identifiers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["type"] == kind && i["value"] == value)
            })
            .map(|(id, _)| id.clone())
            .unwrap()
    };
    assert_eq!(of("anonymous_id", "a2"), of("user_id", "u2"));
    assert_ne!(of("anonymous_id", "a3"), of("user_id", "u3"));
    assert_eq!(of("anonymous_id", "sa"), of("user_id", "us"));
    assert_ne!(of("anonymous_id", "pa"), of("anonymous_id", "pb"));
    let shared_profiles = [of("anonymous_id", "pa"), of("anonymous_id", "pb")];
    // Typed columns hold the traits as their types.
    let typed = pg.psql(
        "marketing",
        "SELECT plan, ltv, to_char(signed_up AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') \
         FROM braid_profiles p WHERE identifiers @> '[{\"type\": \"user_id\", \"value\": \"u3\"}]'",
    );
    assert_eq!(typed.trim(), "pro|31.5|2026-11-04 08:00");
    let members = pg.psql(
        "marketing",
        "SELECT count(*) FROM braid_audience_members WHERE audience = 'buyers'",
    );
    assert_eq!(members.trim(), (USERS / 4).to_string());

    // A rule change: the shared test address no longer links the two visitors. The rebuild
    // splits their profile, and a full copy drops the rows of profiles that no longer exist.
    std::fs::write(dir.join("current.toml"), config(&pg, true)).unwrap();
    let before = status(dir);
    let server = start(dir, &pg, true);
    let generation = before["warehouse"]["state"]["generation"].as_u64().unwrap();
    let copies = before["warehouse"]["state"]["sync"].as_u64().unwrap();
    let profiles = converge_and_compare(dir, server, &pg, |warehouse| {
        warehouse["state"]["generation"].as_u64().unwrap() > generation
            && warehouse["state"]["sync"].as_u64().unwrap() > copies
    });
    let holding = |value: &str| {
        profiles
            .iter()
            .filter(|(_, p)| {
                p["identifiers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["value"] == value)
            })
            .count()
    };
    assert_eq!(holding("sa"), 1);
    let split = profiles.values().any(|p| {
        let ids: Vec<&str> = p["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["value"].as_str().unwrap())
            .collect();
        ids.contains(&"sa") && !ids.contains(&"us")
    });
    assert!(split, "the two visitors are two profiles now");
    // The shared address's two profiles are one: the other's id is gone, and so are its rows.
    let kept: Vec<&String> = shared_profiles
        .iter()
        .filter(|id| profiles.contains_key(*id))
        .collect();
    assert_eq!(kept.len(), 1, "{shared_profiles:?}");
}

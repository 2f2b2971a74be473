//! Files destinations end to end: `braid serve` exports the profiles (CSV) and one audience's
//! members (NDJSON) into the lake with a manifest; DuckDB loads the full export and the change
//! files in the manifest's order (`tests/clients/fold_exports.py`), and what it folds equals
//! every profile `braid profiles export` writes — after a stream with merges and plan changes,
//! and after rule changes whose rebuilds make new full exports (the files of the one before
//! retired, then deleted when the next is complete).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    clippy::too_many_lines,
    reason = "test code: one scenario, read top to bottom"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use braid_tests::{Server, python};
use serde_json::{Value, json};

fn config(split: bool) -> String {
    let blocked = if split {
        "[unify.identity.types.email]\nblocked = ['test@.*']\n"
    } else {
        ""
    };
    format!(
        r#"
{blocked}
[[unify.profiles.computed]]
name = "orders"
event = "Order Completed"
op = "count"

[segment.audiences.pro]
when = {{trait = "plan", op = "=", value = "pro"}}

[[activate.destinations]]
key = "everyone"
type = "files"
format = "csv"
traits = ["plan", "email"]
computed_traits = ["orders"]
batch = 25
wait_seconds = 1

[[activate.destinations]]
key = "pro_members"
type = "files"
audiences = ["pro"]
wait_seconds = 1
"#
    )
}

fn start(dir: &Path, split: bool) -> Server {
    let path = dir.join("braid.toml");
    std::fs::write(&path, config(split)).unwrap();
    Server::start_with(
        dir.join("data"),
        dir.join("braid.log"),
        &["--config", path.to_str().unwrap()],
    )
}

fn send(server: &Server, events: &[Value]) {
    for chunk in events.chunks(20) {
        let reply = server.post("/v1/batch", json!({"batch": chunk}).to_string().as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

/// What DuckDB folds of a destination's exports: the profiles, and the manifest.
fn fold(dir: &Path, key: &str) -> Option<(BTreeMap<String, Value>, Value)> {
    let folder = dir.join(format!("data/exports/workspace=test/{key}"));
    if !folder.join("manifest.json").exists() {
        return None;
    }
    let script = braid_tests::repo_root().join("tests/clients/fold_exports.py");
    let output = Command::new(python())
        .arg(script)
        .arg(&folder)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let profiles = result["profiles"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some((profiles, result["manifest"].clone()))
}

/// Every profile `braid profiles export` writes, by id.
fn export(dir: &Path) -> BTreeMap<String, Value> {
    braid_tests::export_profiles_with(
        &dir.join("data"),
        &dir.join("export.ndjson"),
        Some(&dir.join("braid.toml")),
    )
}

/// The first value of identifier type `kind` of a profile, as a CSV cell holds it (values
/// joined by `;`, in the profile's order).
fn ids(profile: &Value, kind: &str) -> String {
    profile["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == kind)
        .map(|i| i["value"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(";")
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Waits until both destinations' exports hold a profile with `marker` (the user of the last
/// event sent) or `until` holds of the manifests, then two more looks find nothing new.
fn settle(dir: &Path, until: impl Fn(&Value, &Value) -> bool) {
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut last = None;
    loop {
        let now = (fold(dir, "everyone"), fold(dir, "pro_members"));
        if let (Some((all, m1)), Some((pro, m2))) = &now
            && until(m1, m2)
        {
            let seen = (
                all.clone(),
                pro.clone(),
                m1["changes"].clone(),
                m2["changes"].clone(),
            );
            if last.as_ref() == Some(&seen) {
                return;
            }
            last = Some(seen);
        }
        assert!(
            Instant::now() < deadline,
            "the exports did not settle: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(800));
    }
}

/// Compares the folded exports with the profiles, row by row.
fn compare(dir: &Path) -> (BTreeMap<String, Value>, Value) {
    let profiles = export(dir);
    let (all, manifest) = fold(dir, "everyone").unwrap();
    assert_eq!(
        all.keys().collect::<BTreeSet<_>>(),
        profiles.keys().collect::<BTreeSet<_>>(),
        "every profile once, none that is gone"
    );
    for (id, profile) in &profiles {
        let row = &all[id];
        let trait_of = |name: &str| text(&profile["traits"][name]["value"]);
        let audiences: Vec<&String> = profile["audiences"].as_object().unwrap().keys().collect();
        let audiences = audiences
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(";");
        assert_eq!(
            (
                text(&row["user_id"]),
                text(&row["email"]),
                text(&row["anonymous_id"]),
                text(&row["plan"]),
                text(&row["orders"]),
                text(&row["audiences"]),
            ),
            (
                ids(profile, "user_id"),
                ids(profile, "email"),
                ids(profile, "anonymous_id"),
                trait_of("plan"),
                text(&profile["computedTraits"]["orders"]),
                audiences,
            ),
            "profile {id}"
        );
    }
    let (pro, _) = fold(dir, "pro_members").unwrap();
    let members: BTreeSet<&String> = profiles
        .iter()
        .filter(|(_, p)| p["audiences"].get("pro").is_some())
        .map(|(id, _)| id)
        .collect();
    assert!(!members.is_empty());
    assert_eq!(pro.keys().collect::<BTreeSet<_>>(), members);
    for id in members {
        assert_eq!(pro[id]["traits"]["plan"], json!("pro"));
        assert_eq!(pro[id]["audiences"], json!(["pro"]));
    }
    (profiles, manifest)
}

fn has_user(manifest_profiles: &BTreeMap<String, Value>, user: &str) -> bool {
    manifest_profiles
        .values()
        .any(|row| text(&row["user_id"]) == user)
}

#[test]
fn exports_folded_by_duckdb_equal_the_profiles_through_changes_and_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut server = start(dir, false);
    // First: 30 users, a third on the pro plan; two visitors sharing a test address.
    let mut events: Vec<Value> = (0..30)
        .map(|i| {
            json!({"type": "identify", "userId": format!("u{i}"),
                   "traits": {"email": format!("u{i}@shop.test"),
                              "plan": if i % 3 == 0 { "pro" } else { "free" }}})
        })
        .collect();
    events.push(
        json!({"type": "identify", "anonymousId": "sa", "traits": {"email": "test@shop.test"}}),
    );
    events.push(
        json!({"type": "identify", "anonymousId": "sb", "traits": {"email": "test@shop.test"}}),
    );
    events.push(json!({"type": "identify", "anonymousId": "sb", "userId": "us"}));
    send(&server, &events);
    settle(dir, |m1, _| m1["full"]["completed_at"].is_string());
    // Then changes: some leave the pro plan, some join it, visitors log in (merges), orders.
    let mut changes = Vec::new();
    for i in 0..30 {
        if i % 6 == 0 {
            changes.push(
                json!({"type": "identify", "userId": format!("u{i}"), "traits": {"plan": "free"}}),
            );
        }
        if i % 5 == 1 {
            changes.push(
                json!({"type": "identify", "userId": format!("u{i}"), "traits": {"plan": "pro"}}),
            );
        }
        if i % 4 == 0 {
            changes.push(
                json!({"type": "track", "event": "Page Viewed", "anonymousId": format!("v{i}")}),
            );
            changes.push(json!({"type": "identify", "anonymousId": format!("v{i}"), "userId": format!("u{i}")}));
            changes.push(
                json!({"type": "track", "event": "Order Completed", "userId": format!("u{i}")}),
            );
        }
    }
    changes.push(json!({"type": "identify", "userId": "last", "traits": {"plan": "pro"}}));
    send(&server, &changes);
    settle(dir, |_, _| {
        fold(dir, "everyone").is_some_and(|(all, _)| has_user(&all, "last"))
            && fold(dir, "pro_members").is_some_and(|(pro, _)| has_user_ndjson(&pro, "last"))
    });
    assert!(server.terminate(), "{}", server.log_text());
    let (profiles, manifest) = compare(dir);
    assert_eq!(manifest["full"]["sync"], 1);
    assert!(
        !manifest["changes"].as_array().unwrap().is_empty(),
        "{manifest}"
    );
    assert_eq!(
        manifest["columns"].as_array().unwrap()[..4],
        [
            json!("profile_id"),
            json!("deleted"),
            json!("user_id"),
            json!("email")
        ],
    );
    assert!(profiles.len() > 30);

    // A rule change: the rebuild splits the test address's profile; a new full export
    // replaces the old one and its changes, whose files go.
    let old: Vec<String> = manifest["full"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .chain(manifest["changes"].as_array().unwrap())
        .map(|f| f["key"].as_str().unwrap().to_owned())
        .collect();
    let mut server = start(dir, true);
    settle(dir, |m1, m2| {
        m1["full"]["sync"] == 2 && m2["full"]["sync"] == 2
    });
    assert!(server.terminate(), "{}", server.log_text());
    let (profiles, manifest) = compare(dir);
    assert!(
        manifest["changes"].as_array().unwrap().is_empty(),
        "{manifest}"
    );
    // The old files are retired, not deleted yet: a reader of the manifest before finds them.
    let retired: Vec<String> = manifest["retired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(retired, old);
    assert!(old.iter().all(|key| dir.join("data").join(key).exists()));
    assert_ne!(
        holding(&profiles, "sa"),
        holding(&profiles, "sb"),
        "split by the rule"
    );

    // The rule reverted: a third full export; the first one's files are deleted now.
    let mut server = start(dir, false);
    settle(dir, |m1, m2| {
        m1["full"]["sync"] == 3 && m2["full"]["sync"] == 3
    });
    assert!(server.terminate(), "{}", server.log_text());
    let (profiles, _) = compare(dir);
    for key in &old {
        assert!(!dir.join("data").join(key).exists(), "{key} is deleted");
    }
    assert_eq!(
        holding(&profiles, "sa"),
        holding(&profiles, "sb"),
        "one again"
    );
}

/// The profiles holding anonymous id `value`.
fn holding(profiles: &BTreeMap<String, Value>, value: &str) -> Vec<Value> {
    profiles
        .values()
        .filter(|p| ids(p, "anonymous_id").split(';').any(|v| v == value))
        .map(|p| p["id"].clone())
        .collect()
}

fn has_user_ndjson(profiles: &BTreeMap<String, Value>, user: &str) -> bool {
    profiles.values().any(|row| {
        row["identifiers"]["user_id"]
            .as_array()
            .is_some_and(|v| v.contains(&json!(user)))
    })
}

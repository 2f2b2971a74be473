//! Identity resolution and the profile API on a real `braid serve`: events from a real Segment
//! client and raw HTTP become one profile per person, readable with a token separate from write
//! keys, and rebuilt from the lake after a restart.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::time::{Duration, Instant};

use braid_tests::{Server, python, request, run_client};
use serde_json::Value;

const TOKEN: &str = "profile-api-token";

fn get(server: &Server, path: &str, token: Option<&str>) -> braid_tests::Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request(server.addr, "GET", path, &headers, b"").unwrap()
}

/// The profile, once the unify loop has caught up with what the server acknowledged.
fn profile(server: &Server, id: &str, until: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let reply = get(server, &format!("/v1/profiles/{id}"), Some(TOKEN));
        if reply.status == 200 && until(&reply.json()) {
            return reply.json();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{id}: {} {}",
            reply.status,
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every event of a profile, following the pages three at a time; each must come once.
fn all_events(server: &Server, id: &str) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/profiles/{id}/events?limit=3&cursor={c}"),
            None => format!("/v1/profiles/{id}/events?limit=3"),
        };
        let page = get(server, &path, Some(TOKEN));
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 3);
        for event in events {
            assert!(seen.insert(event["messageId"].as_str().unwrap().to_owned()));
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
}

#[test]
fn events_become_profiles_readable_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(
        data.clone(),
        dir.path().join("braid.log"),
        &["--profile-token", TOKEN],
    );
    // A visitor browses anonymously, then logs in; a real Segment client sends the rest.
    let page = br#"{"anonymousId":"browser-1","name":"Pricing","properties":{"url":"https://shop.example/pricing"}}"#;
    assert_eq!(server.post("/v1/page", page).status, 200);
    let login = br#"{"anonymousId":"browser-1","userId":"py-seg-prof","traits":{"plan":"trial"}}"#;
    assert_eq!(server.post("/v1/identify", login).status, 200);
    run_client(&python(), "segment_python.py", &server, "prof", false);

    let view = profile(&server, "user_id:py-seg-prof", |p| {
        p["eventCounts"]["Order Completed"] == 1 && p["traits"]["plan"]["value"] == "pro"
    });
    let identifiers: Vec<String> = view["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["type"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        identifiers.contains(&"anonymous_id:browser-1".to_owned()),
        "{identifiers:?}"
    );
    assert!(
        identifiers.contains(&"email:py-seg-prof@example.com".to_owned()),
        "{identifiers:?}"
    );
    assert_eq!(view["eventCounts"]["page"], 2);
    // The email identifies the same profile (the path is decoded and normalised).
    let by_email = profile(&server, "email:PY-SEG-PROF%40example.com", |_| true);
    assert_eq!(by_email["id"], view["id"]);
    // The segment script aliases prev-prof to the user: a user id cannot be renamed, so it
    // stays apart, and the profile says why nothing merged.
    assert_eq!(
        get(&server, "/v1/profiles/user_id:nobody", Some(TOKEN)).status,
        404
    );
    assert_eq!(
        get(&server, "/v1/profiles/user_id:py-seg-prof", None).status,
        401
    );
    assert_eq!(
        get(
            &server,
            "/v1/profiles/user_id:py-seg-prof",
            Some(&server.key)
        )
        .status,
        401
    );
    assert_eq!(
        get(&server, "/v1/profiles/no-colon", Some(TOKEN)).status,
        400
    );

    // The profile's events, three at a time, each once, as many as it counted.
    let total: u64 = view["eventCounts"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    let seen = all_events(&server, "user_id:py-seg-prof");
    assert_eq!(seen.len() as u64, total);
    assert_eq!(
        get(&server, "/v1/profiles/user_id:nobody/events", Some(TOKEN)).status,
        404
    );
    assert_eq!(
        get(
            &server,
            "/v1/profiles/user_id:py-seg-prof/events?limit=0",
            Some(TOKEN)
        )
        .status,
        400
    );

    // Restart: the profiles are rebuilt from the lake, with the same id.
    let id = view["id"].clone();
    drop(server);
    let server = Server::start_with(
        data,
        dir.path().join("braid2.log"),
        &["--profile-token", TOKEN],
    );
    let again = profile(&server, "user_id:py-seg-prof", |_| true);
    assert_eq!(again["id"], id);
    assert_eq!(again["eventCounts"], view["eventCounts"]);
    assert_eq!(again["traits"]["plan"]["value"], "pro");
}

#[test]
fn without_a_token_the_profile_api_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        get(&server, "/v1/profiles/user_id:u", Some("anything")).status,
        404
    );
}

/// `braid profiles` (the rebuild path) gives exactly the profiles the running server built
/// event by event, on a generated stream of 2,000 events in 40 requests.
#[test]
fn the_rebuild_equals_what_the_server_built() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(
        data.clone(),
        dir.path().join("braid.log"),
        &["--profile-token", TOKEN],
    );
    let mut state: u64 = 0x0DDB_1A5E_5BAD_5EED;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut users = std::collections::BTreeSet::new();
    for request in 0..40 {
        let mut batch = Vec::new();
        for i in 0..50 {
            let browser = next(400);
            let mut event = serde_json::json!({
                "type": "track", "event": "Viewed", "anonymousId": format!("b{browser}"),
                "messageId": format!("gen-{request}-{i}"),
                "properties": {"n": next(10)}
            });
            if next(5) == 0 {
                let user = format!("u{}", next(60));
                users.insert(user.clone());
                event = serde_json::json!({
                    "type": "identify", "anonymousId": format!("b{browser}"), "userId": user,
                    "messageId": format!("gen-{request}-{i}"),
                    "traits": {"tier": next(3), "email": format!("m{}@mail.example", next(80))}
                });
            }
            batch.push(event);
        }
        let body = serde_json::json!({"batch": batch}).to_string();
        assert_eq!(server.post("/v1/batch", body.as_bytes()).status, 200);
    }
    // Wait for the unify loop to apply every object (one checkpoint each).
    let count = |folder: &str| {
        let mut out = Vec::new();
        braid_tests::collect(&data.join(folder), &mut out);
        out.len()
    };
    let started = Instant::now();
    while count("checkpoints/unify/raw") < count("raw") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "unify did not catch up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let live: Vec<Value> = users
        .iter()
        .map(|user| profile(&server, &format!("user_id:{user}"), |_| true))
        .collect();
    assert!(server.terminate());

    let output = dir.path().join("profiles.ndjson");
    let run = std::process::Command::new(braid_tests::braid_bin())
        .args(["profiles", "--data"])
        .arg(&data)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let rebuilt: std::collections::BTreeMap<String, Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|line| {
            let profile: Value = serde_json::from_str(line).unwrap();
            (profile["id"].as_str().unwrap().to_owned(), profile)
        })
        .collect();
    assert!(rebuilt.len() >= live.len());
    for profile in &live {
        let id = profile["id"].as_str().unwrap();
        assert_eq!(
            &rebuilt[id], profile,
            "profile {id} differs after a rebuild"
        );
    }
}

//! Identity resolution and the profile API on a real `braid serve`: events from a real Segment
//! client and raw HTTP become one profile per person, readable with a token separate from write
//! keys, kept in the profile store across restarts and crashes, and rebuilt from the lake when
//! the rules change or `braid profiles rebuild` asks.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::time::{Duration, Instant};

use braid_tests::{
    Server, braid, export_profiles as export, python, request, run_client, wait_unified,
};
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
    let identifiers = braid_tests::identifiers_of(&view);
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

    // A crash (kill -9) once everything is unified: the profiles are in the store, nothing
    // is replayed from the lake at the next start.
    wait_unified(&data);
    let id = view["id"].clone();
    let mut server = server;
    server.kill_9();
    let server = Server::start_with(
        data,
        dir.path().join("braid2.log"),
        &["--profile-token", TOKEN],
    );
    let again = profile(&server, "user_id:py-seg-prof", |_| true);
    assert_eq!(
        again, view,
        "the profile came back from the store unchanged"
    );
    assert_eq!(again["id"], id);
    let log = server.log_text();
    assert!(
        !log.contains("rebuilt") && !log.contains("building"),
        "{log}"
    );
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

/// `braid profiles rebuild` (every profile recomputed from the lake) gives exactly the
/// profiles the running server built object by object, on a generated stream of 12,000 events
/// in 120 requests: anonymous browsing, logins, shared emails, a blocked placeholder.
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
    for request in 0..120 {
        let mut batch = Vec::new();
        for i in 0..100 {
            let browser = next(2_000);
            let mut event = serde_json::json!({
                "type": "track", "event": "Viewed", "anonymousId": format!("b{browser}"),
                "messageId": format!("gen-{request}-{i}"),
                "properties": {"n": next(10)}
            });
            if next(5) == 0 {
                let user = if next(50) == 0 {
                    "null".to_owned()
                } else {
                    format!("u{}", next(300))
                };
                users.insert(user.clone());
                event = serde_json::json!({
                    "type": "identify", "anonymousId": format!("b{browser}"), "userId": user,
                    "messageId": format!("gen-{request}-{i}"),
                    "traits": {"tier": next(3), "email": format!("m{}@mail.example", next(400))}
                });
            }
            batch.push(event);
        }
        let body = serde_json::json!({"batch": batch}).to_string();
        assert_eq!(server.post("/v1/batch", body.as_bytes()).status, 200);
    }
    wait_unified(&data);
    users.remove("null");
    let live: Vec<Value> = users
        .iter()
        .map(|user| profile(&server, &format!("user_id:{user}"), |_| true))
        .collect();
    assert!(live.len() > 250);
    assert!(server.terminate());

    // What the store holds is what the API answered.
    let stored = export(&data, &dir.path().join("stored.ndjson"));
    for profile in &live {
        let id = profile["id"].as_str().unwrap();
        assert_eq!(&stored[id], profile, "profile {id} differs in the export");
    }
    let run = braid(&[
        "profiles".as_ref(),
        "rebuild".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains("from 12000 events"), "{said}");
    let rebuilt = export(&data, &dir.path().join("rebuilt.ndjson"));
    assert_eq!(rebuilt.len(), stored.len());
    for (id, profile) in &stored {
        assert_eq!(
            &rebuilt[id], profile,
            "profile {id} differs after a rebuild"
        );
    }
    assert!(rebuilt.len() > live.len(), "anonymous profiles too");
}

/// A rule change at restart recomputes the profiles it affects from the lake: an email typed
/// on two browsers joined them; once the email's domain is blocked, they are two profiles.
#[test]
fn a_rule_change_at_restart_splits_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(
        data.clone(),
        dir.path().join("braid.log"),
        &["--profile-token", TOKEN],
    );
    for (browser, id) in [("desk", "r1"), ("kiosk", "r2")] {
        let identify = serde_json::json!({"anonymousId": browser, "messageId": id,
            "traits": {"email": "front-desk@hotel.example"}});
        assert_eq!(
            server
                .post("/v1/identify", identify.to_string().as_bytes())
                .status,
            200
        );
    }
    let joined = profile(&server, "anonymous_id:desk", |p| {
        p["identifiers"].as_array().unwrap().len() == 3
    });
    assert_eq!(
        profile(&server, "anonymous_id:kiosk", |_| true)["id"],
        joined["id"]
    );
    wait_unified(&data);
    assert!(server.terminate());

    let config = dir.path().join("braid.toml");
    std::fs::write(
        &config,
        "[unify.identity.types.email]\npriority = 2\nblocked = ['.*@hotel\\.example']\n",
    )
    .unwrap();
    let server = Server::start_with(
        data,
        dir.path().join("braid2.log"),
        &[
            "--profile-token",
            TOKEN,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let desk = profile(&server, "anonymous_id:desk", |_| true);
    let kiosk = profile(&server, "anonymous_id:kiosk", |_| true);
    assert_ne!(desk["id"], kiosk["id"]);
    assert_eq!(desk["id"], joined["id"], "the oldest profile keeps its id");
    assert_eq!(desk["identifiers"].as_array().unwrap().len(), 1);
    assert_eq!(
        desk["history"][1]["reason"], "blocked value (.*@hotel\\.example)",
        "{desk}"
    );
    assert!(
        server
            .log_text()
            .contains("Profiles rebuilt from the lake.")
    );
}

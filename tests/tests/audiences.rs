//! Audiences end to end: the real Segment (Python) client sends a shop's customers through
//! `braid serve`; the profile API shows their computed traits and audiences, explain says why,
//! preview sizes a condition before it is saved, the change log numbers every entry and exit,
//! and an audience that the clock alone changes ("signed up within the last 7 days") is left
//! at its exact time by the server's timer, durably across a `kill -9`.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    clippy::too_many_lines,
    reason = "test code: one scenario, read top to bottom"
)]

use std::time::{Duration, Instant};

use braid_tests::{Server, python, request, run_client, wait_unified};
use serde_json::{Value, json};

const TOKEN: &str = "profiles-e2e-token";

const CONFIG: &str = r#"
[activate.profile_api]
token = "profiles-e2e-token"

[[unify.profiles.computed]]
name = "orders_30d"
event = "Order Completed"
op = "count"
window = "30d"

[[unify.profiles.computed]]
name = "spend"
event = "Order Completed"
op = "sum"
property = "revenue"

[segment.audiences.buyers]
name = "Repeat buyers"
when = {performed = "Order Completed", at_least = 2, window = "30d"}

[segment.audiences.pro_buyers]
when = 'member buyers and plan = "pro"'  # the text form

[segment.audiences.new_signups]
when = {trait = "signed_up_at", op = "within_last_days", value = 7}
"#;

fn call(server: &Server, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let reply = request(server.addr, method, path, &headers, body).unwrap();
    (reply.status, reply.json())
}

fn profile(server: &Server, user: &str) -> Value {
    let (status, body) = call(server, "GET", &format!("/v1/profiles/user_id:{user}"), b"");
    assert_eq!(status, 200, "{body}");
    body
}

fn audiences(profile: &Value) -> Vec<String> {
    profile["audiences"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn audiences_follow_real_clients_and_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("braid.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("braid.log");
    let args = ["--config", config.to_str().unwrap()];
    let mut server = Server::start_with(data.clone(), log.clone(), &args);
    run_client(
        &python(),
        "audiences_segment_python.py",
        &server,
        "s",
        false,
    );
    wait_unified(&server.data);

    // Exact memberships: customers 0-2 ordered twice, 3 once, 4 and 5 never; even ones are pro;
    // everyone signed up within the week.
    let expected = [
        (0, vec!["buyers", "new_signups", "pro_buyers"]),
        (1, vec!["buyers", "new_signups"]),
        (2, vec!["buyers", "new_signups", "pro_buyers"]),
        (3, vec!["new_signups"]),
        (4, vec!["new_signups"]),
        (5, vec!["new_signups"]),
    ];
    for (i, members) in &expected {
        let profile = profile(&server, &format!("aud-s-{i}"));
        assert_eq!(audiences(&profile), *members, "{profile}");
        let orders = match i {
            0..=2 => 2,
            3 => 1,
            _ => 0,
        };
        // Nothing counted is not kept.
        let shown = if orders == 0 {
            Value::Null
        } else {
            json!(orders)
        };
        assert_eq!(profile["computedTraits"]["orders_30d"], shown, "{profile}");
    }
    assert_eq!(
        profile(&server, "aud-s-2")["computedTraits"]["spend"],
        json!(24)
    );

    // Why customer 3 is not a repeat buyer, and why customer 1 is not a pro buyer.
    let (status, explained) = call(
        &server,
        "GET",
        "/v1/profiles/user_id:aud-s-3/audiences/buyers/explain",
        b"",
    );
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["member"], false);
    assert_eq!(explained["name"], "Repeat buyers");
    assert_eq!(
        explained["explanation"]["condition"],
        "performed Order Completed at least 2 times in the last 30 days"
    );
    assert_eq!(explained["explanation"]["count"], 1);
    let (_, explained) = call(
        &server,
        "GET",
        "/v1/profiles/user_id:aud-s-1/audiences/pro_buyers/explain",
        b"",
    );
    assert_eq!(explained["explanation"]["conditions"][0]["holds"], true);
    assert_eq!(explained["explanation"]["conditions"][1]["holds"], false);
    assert_eq!(explained["explanation"]["conditions"][1]["value"], "free");
    let (status, _) = call(
        &server,
        "GET",
        "/v1/profiles/user_id:aud-s-1/audiences/nope/explain",
        b"",
    );
    assert_eq!(status, 404);

    // Preview before saving: who ordered at least once (everyone's event counts), and an edit
    // of "buyers" to one order: customer 3 would enter (the condition in its text form).
    let body = json!({"when": "performed \"Order Completed\"", "audience": "buyers", "sample": 2});
    let (status, preview) = call(
        &server,
        "POST",
        "/v1/audiences/preview",
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["profiles"], 6);
    assert_eq!(preview["size"], 4);
    assert_eq!(preview["sample"].as_array().unwrap().len(), 2);
    assert_eq!(preview["compared"]["entering"], 1);
    assert_eq!(preview["compared"]["leaving"], 0);
    // A bad tree is refused naming its place.
    let body = json!({"when": {"and": [{"performed": "X", "window": "400d"}]}});
    let (status, refused) = call(
        &server,
        "POST",
        "/v1/audiences/preview",
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 422, "{refused}");
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("when.and[0].window"), "{message}");
    // The profile token, and nothing else, opens it.
    let reply = request(
        server.addr,
        "POST",
        "/v1/audiences/preview",
        &[("authorization", &server.basic_auth())],
        b"{}",
    )
    .unwrap();
    assert_eq!(reply.status, 401);

    // Customer 0 signed up 7 days ago less a few seconds: the server's timer takes them out of
    // "new sign-ups" at that exact time, without an event.
    let signed_up = profile(&server, "aud-s-0")["traits"]["signed_up_at"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let exit_at = braid_core::timestamp::parse(&signed_up).unwrap() + time::Duration::days(7);
    let deadline = Instant::now() + Duration::from_secs(45);
    while audiences(&profile(&server, "aud-s-0")).contains(&"new_signups".to_owned()) {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, log_page) = call(&server, "GET", "/v1/audiences/changes?limit=1000", b"");
    assert_eq!(status, 200, "{log_page}");
    let changes = log_page["changes"].as_array().unwrap().clone();
    let exits: Vec<&Value> = changes
        .iter()
        .filter(|c| c["type"] == "audience_exited")
        .collect();
    assert_eq!(exits.len(), 1, "{changes:?}");
    assert_eq!(exits[0]["audience"], "new_signups");
    assert_eq!(
        exits[0]["at"],
        braid_core::timestamp::format(exit_at),
        "{exits:?}"
    );
    assert_eq!(
        exits[0]["reasons"],
        json!(["not (trait signed_up_at within the last 7 days)"])
    );
    let entered = changes
        .iter()
        .filter(|c| c["type"] == "audience_entered")
        .count();
    assert_eq!(entered, 6 + 3 + 2);
    let numbers: Vec<u64> = changes
        .iter()
        .map(|c| c["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());

    // A crash loses none of it.
    server.kill_9();
    let server = Server::start_with(data, log, &args);
    assert_eq!(
        audiences(&profile(&server, "aud-s-0")),
        ["buyers", "pro_buyers"]
    );
    let (_, again) = call(&server, "GET", "/v1/audiences/changes?limit=1000", b"");
    assert_eq!(again["changes"].as_array().unwrap(), &changes);
}

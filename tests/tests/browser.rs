//! The browser SDK (collector-wasm + sdk-js) in headless Chromium against a real `braid serve`,
//! which serves the SDK files first-party and takes the events; every scenario is checked in
//! the lake. The scenarios are in `tests/browser/run.mjs`.
//!
//! Needs `/usr/bin/chromium` and `tests/browser/node_modules` (`scripts/setup.sh --test`) and
//! `sdk-js/dist` (`npm run build` in sdk-js; `scripts/test.sh` does both).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use braid_tests::{Server, read_lake, repo_root};
use serde_json::{Value, json};

fn sdk_server(dir: &Path) -> Server {
    let dist = repo_root().join("sdk-js/dist");
    assert!(
        dist.join("braid.js").exists(),
        "{} is missing: run `npm run build` in sdk-js (scripts/test.sh does)",
        dist.display()
    );
    Server::start_with(
        dir.join("data"),
        dir.join("braid.log"),
        &["--sdk", dist.to_str().unwrap()],
    )
}

/// Runs one scenario of run.mjs in Chromium; gives what it printed.
fn scenario(server: &Server, name: &str) -> Value {
    let output = Command::new("node")
        .arg(repo_root().join("tests/browser/run.mjs"))
        .arg(name)
        .current_dir(repo_root().join("tests/browser"))
        .env("BRAID_URL", server.url())
        .env("BRAID_KEY", &server.key)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scenario {name} failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.log_text()
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The lake's events, sorted by the SDK's sequence number, once `count` have arrived.
fn lake_events(server: &Server, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut events = read_lake(&server.data, "raw");
        if events.len() >= count || Instant::now() > deadline {
            events.sort_by_key(|e| e["context"]["sequence"].as_u64());
            return events;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let name = e
                .get("event")
                .or_else(|| e.get("name"))
                .and_then(Value::as_str);
            format!("{}:{}", e["type"].as_str().unwrap(), name.unwrap_or(""))
        })
        .collect()
}

fn assert_once_each(events: &[Value]) {
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "a messageId arrived twice: {events:#?}"
    );
}

#[test]
fn chromium_snippet_queues_calls_until_the_sdk_loads_and_fills_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "snippet");
    assert_eq!(
        result["ready"], true,
        "ready() callback queued in the snippet"
    );
    assert_eq!(result["user"], "user-1");
    assert_eq!(
        result["traits"],
        json!({"email": "Ada@Example.com", "plan": "pro"})
    );
    let anon = result["anon"].as_str().unwrap();
    assert!(
        result["cookie"]
            .as_str()
            .unwrap()
            .contains(&format!("braid_anon_id={anon}"))
    );

    let events = lake_events(&server, 4);
    assert_eq!(
        names(&events),
        [
            "page:",
            "identify:",
            "track:Early Click",
            "track:Second Click"
        ]
    );
    assert_once_each(&events);
    let session = &events[0]["context"]["sessionId"];
    for (n, event) in events.iter().enumerate() {
        let context = &event["context"];
        assert_eq!(event["anonymousId"], anon);
        assert_eq!(context["sequence"], n + 1);
        assert_eq!(&context["sessionId"], session);
        assert_eq!(context["sessionStart"].as_bool(), (n == 0).then_some(true));
        assert_eq!(context["library"]["name"], "braid-sdk");
        assert_eq!(context["page"]["path"], "/test/snippet.html");
        assert_eq!(context["page"]["title"], "Braid test page");
        assert_eq!(
            context["page"]["url"],
            format!(
                "{}/test/snippet.html?utm_source=news&utm_medium=email&utm_campaign=spring",
                server.url()
            )
        );
        assert_eq!(
            context["campaign"],
            json!({"source": "news", "medium": "email", "name": "spring"})
        );
        assert_eq!(context["locale"], "en-US");
        assert!(context["timezone"].is_string());
        assert!(context["screen"]["width"].as_u64().unwrap() > 0);
        assert!(context["userAgent"].as_str().unwrap().contains("Chrome"));
        assert!(event["originalTimestamp"].is_string());
    }
    assert!(
        events[0].get("userId").is_none(),
        "the page view came before identify"
    );
    assert_eq!(events[1]["userId"], "user-1");
    assert_eq!(events[1]["traits"]["email"], "Ada@Example.com");
    assert_eq!(events[2]["userId"], "user-1");
    assert_eq!(events[2]["properties"]["button"], "buy");
}

#[test]
fn chromium_every_api_call_lands_with_middleware_alias_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "api");
    assert_eq!(result["afterAlias"], "user-8");
    assert_eq!(result["afterReset"]["id"], Value::Null);
    assert_eq!(result["afterReset"]["traits"], json!({}));
    let (first, fresh) = (
        result["first"].as_str().unwrap(),
        result["afterReset"]["anon"].as_str().unwrap(),
    );
    assert_ne!(first, fresh, "reset() gives a new anonymous id");

    let events = lake_events(&server, 8);
    assert_eq!(
        names(&events),
        [
            "page:Install",
            "page:Pricing",
            "screen:Home",
            "identify:",
            "group:",
            "track:Bought",
            "alias:",
            "track:After Reset"
        ],
        "the middleware dropped the Secret event"
    );
    assert_once_each(&events);
    let by_name: HashMap<String, &Value> = names(&events).into_iter().zip(&events).collect();
    let docs = by_name["page:Install"];
    assert_eq!(docs["category"], "Docs");
    assert_eq!(docs["properties"]["section"], "sdk");
    assert_eq!(docs["properties"]["category"], "Docs");
    assert_eq!(docs["properties"]["name"], "Install");
    assert_eq!(docs["properties"]["path"], "/test/api.html");
    assert_eq!(
        docs["properties"]["touched"], true,
        "middleware changed the event"
    );
    assert_eq!(by_name["identify:"]["userId"], "user-7");
    assert_eq!(by_name["identify:"]["traits"]["email"], "x@example.com");
    assert_eq!(by_name["group:"]["groupId"], "org-1");
    assert_eq!(by_name["group:"]["traits"]["name"], "Acme");
    let bought = by_name["track:Bought"];
    assert_eq!(bought["properties"]["revenue"], 12.5);
    assert_eq!(bought["userId"], "user-7");
    assert_eq!(
        bought["context"]["ip"], "203.0.113.0",
        "options.context reached the event"
    );
    let alias = by_name["alias:"];
    assert_eq!(alias["previousId"], "user-7");
    assert_eq!(alias["userId"], "user-8");
    assert_eq!(alias["anonymousId"], first);
    let after = by_name["track:After Reset"];
    assert_eq!(after["anonymousId"], fresh);
    assert!(after.get("userId").is_none());
}

#[test]
fn chromium_batches_flush_at_a_count_or_after_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "batching");
    assert_eq!(result["sizes"], json!([5, 2, 12]));
    assert_eq!(result["statuses"], json!([200, 200, 200]));
    // flushAt 5 sends at once; two events wait for the 3 s interval.
    assert!(result["first"].as_u64().unwrap() < 2_500, "{result}");
    assert!(result["second"].as_u64().unwrap() >= 2_900, "{result}");
    let events = lake_events(&server, 19);
    assert_eq!(events.len(), 19);
    assert_once_each(&events);
}

#[test]
fn chromium_events_stored_while_offline_are_sent_once_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "reload");
    assert_eq!(result["storedBeforeReload"], 3);
    let events = lake_events(&server, 3);
    assert_eq!(
        names(&events),
        ["track:Offline 0", "track:Offline 1", "track:Offline 2"]
    );
    assert_once_each(&events);
}

#[test]
fn chromium_server_errors_are_retried_with_backoff_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "retry503");
    assert_eq!(result["statuses"], json!([503, 503, 200]));
    let batches = result["batches"].as_array().unwrap();
    assert!(
        batches.iter().all(|b| b == &batches[0]),
        "the same events each time"
    );
    let gaps: Vec<u64> = result["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_u64().unwrap())
        .collect();
    // Backoff with jitter: 1 s × [0.5, 1), then 2 s × [0.5, 1).
    assert!(gaps[0] >= 450 && gaps[1] >= 950, "{gaps:?}");
    let events = lake_events(&server, 2);
    assert_eq!(names(&events), ["track:Retry A", "track:Retry B"]);
    assert_once_each(&events);
}

#[test]
fn chromium_retry_after_of_a_429_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "retry429");
    assert_eq!(result["statuses"], json!([429, 200]));
    assert!(result["gap"].as_u64().unwrap() >= 1_950, "{result}");
    let events = lake_events(&server, 1);
    assert_eq!(names(&events), ["track:Throttled"]);
}

#[test]
fn chromium_waiting_events_leave_with_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "unload");
    assert_eq!(result["queuedBeforeClose"], 3);
    assert_eq!(result["batchesBeforeClose"], 0);
    let events = lake_events(&server, 3);
    assert_eq!(
        names(&events),
        ["track:Leaving 0", "track:Leaving 1", "track:Leaving 2"]
    );
}

#[test]
fn chromium_two_tabs_share_one_queue_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "tabs");
    let sent = result["sent"].as_array().unwrap();
    let unique: HashSet<&str> = sent.iter().map(|id| id.as_str().unwrap()).collect();
    assert_eq!(
        unique.len(),
        sent.len(),
        "a tab sent an event another tab had sent"
    );
    let events = lake_events(&server, 40);
    let mut got = names(&events);
    got.sort();
    let mut want: Vec<String> = (0..20)
        .flat_map(|i| [format!("track:Tab One {i}"), format!("track:Tab Two {i}")])
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert_once_each(&events);
}

#[test]
fn chromium_pending_consent_stores_and_sends_nothing_until_granted_and_withdrawal_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "consent");
    assert_eq!(result["pending"], json!({"cookie": "", "storage": []}));
    assert_eq!(result["batchesWhilePending"], 0);
    assert!(
        result["granted"]["cookie"]
            .as_str()
            .unwrap()
            .starts_with("braid_anon_id=")
    );
    assert_eq!(
        result["withdrawn"],
        json!({"cookie": [], "storage": []}),
        "withdrawn: the ids, the stored state and the cookie are gone"
    );
    let events = lake_events(&server, 2);
    assert_eq!(
        names(&events),
        ["page:", "track:Before Consent"],
        "nothing is sent after the withdrawal"
    );
}

#[test]
fn chromium_single_page_navigation_sends_page_views_with_the_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    scenario(&server, "spa");
    let events = lake_events(&server, 3);
    let paths: Vec<&str> = events
        .iter()
        .map(|e| e["context"]["page"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/test/spa.html", "/test/spa/products", "/test/spa/cart"]
    );
    assert!(events.iter().all(|e| e["type"] == "page"));
    assert_eq!(events[2]["properties"]["search"], "?step=2");
    assert_eq!(
        events[0]["context"]["campaign"],
        json!({"source": "ads", "term": "shoes"})
    );
}

#[test]
fn chromium_a_batch_in_flight_when_the_page_crashed_is_sent_once_by_the_next_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "crash");
    let batches = result["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "{result}");
    assert_eq!(batches[0], batches[1], "the next page sent the same events");
    // Held back while the crashed page's request might still arrive (10 s).
    assert!(result["resentAfter"].as_u64().unwrap() >= 9_000, "{result}");
    let events = lake_events(&server, 3);
    assert_eq!(
        names(&events),
        ["track:Crash 0", "track:Crash 1", "track:Crash 2"]
    );
    assert_once_each(&events);
}

#[test]
fn chromium_a_site_on_segment_analytics_next_switches_by_changing_only_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "segment");
    assert_eq!(result["errors"], json!([]));
    assert_eq!(result["statuses"], json!([200, 200, 200]));
    let mut events = lake_events(&server, 3);
    events.sort_by(|a, b| {
        a["originalTimestamp"]
            .as_str()
            .cmp(&b["originalTimestamp"].as_str())
    });
    assert_eq!(
        names(&events),
        ["page:", "identify:", "track:Segment Event"]
    );
    for event in &events {
        assert_eq!(event["context"]["library"]["name"], "analytics.js");
        assert_eq!(event["context"]["page"]["path"], "/test/segment.html");
        assert!(event["anonymousId"].is_string());
    }
    assert_eq!(events[1]["userId"], "segment-user");
    assert_eq!(events[1]["traits"]["plan"], "enterprise");
    assert_eq!(events[2]["properties"]["amount"], 3);
}

#[test]
fn chromium_the_sdk_and_the_servers_identity_cookie_agree_and_survive_a_storage_wipe() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("braid.toml");
    std::fs::write(&config, "[collect.identity_cookie]\nsecure = false\n").unwrap();
    let dist = repo_root().join("sdk-js/dist");
    let server = Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--sdk",
            dist.to_str().unwrap(),
        ],
    );
    let result = scenario(&server, "edgeid");
    let first = result["first"].as_str().unwrap();
    assert_eq!(
        result["cookie"],
        json!({"value": first, "httpOnly": true}),
        "a first visit's cookie takes the SDK's id"
    );
    assert_ne!(
        result["wiped"], first,
        "after the wipe the SDK starts with a new id"
    );
    // The credential personalization reads: issued by the server, HttpOnly, not the id.
    let credential = result["credential"]["value"].as_str().unwrap();
    assert_eq!(result["credential"]["httpOnly"], true);
    assert_eq!(result["scriptSeesCredential"], false);
    assert_ne!(credential, first);
    let events = read_lake(&server.data, "raw");
    let browser = braid_core::collect::browser_id(credential);
    assert!(
        events
            .iter()
            .all(|e| e["context"]["braid"]["browser"] == browser.as_str()),
        "every event of the browser carries its credential's id, never the credential"
    );
    assert!(!serde_json::to_string(&events).unwrap().contains(credential));
    let ids: HashMap<String, String> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["anonymousId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(ids["First Visit"], first);
    assert_eq!(
        ids["After Wipe"],
        result["wiped"].as_str().unwrap(),
        "sent before the answer"
    );
    assert_eq!(ids["Realigned"], first, "the server's id from then on");
}

#[test]
fn chromium_cookieless_and_global_privacy_control_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "privacy");
    let nothing = json!({"cookie": "", "storage": []});
    assert_eq!(result["cookieless"], nothing);
    assert_eq!(result["gpc"], nothing);
    let events = lake_events(&server, 4);
    assert_eq!(events.len(), 4, "page and identify from each page");
    let gpc: Vec<bool> = events.iter().map(|e| e["context"]["gpc"] == true).collect();
    assert_eq!(
        gpc.iter().filter(|g| **g).count(),
        2,
        "only the GPC page's events say so"
    );
    assert!(
        events
            .iter()
            .all(|e| e["userId"] == "private-user" || e["type"] == "page")
    );
}

#[test]
fn chromium_braid_sdk_from_npm_works_in_a_bundle_and_type_checks() {
    // The package's types: a site's TypeScript that uses them compiles with `tsc --strict`.
    let browser = repo_root().join("tests/browser");
    let tsc = Command::new(browser.join("node_modules/.bin/tsc"))
        .args(["-p", "bundler/tsconfig.json"])
        .current_dir(&browser)
        .output()
        .unwrap();
    assert!(
        tsc.status.success(),
        "tsc: {}",
        String::from_utf8_lossy(&tsc.stdout)
    );
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "bundler");
    let events = lake_events(&server, 2);
    assert_eq!(names(&events), ["identify:", "track:Bundled Event"]);
    for event in &events {
        assert_eq!(event["anonymousId"], result["anon"]);
        assert_eq!(event["userId"], "bundled-user");
        assert_eq!(event["context"]["bundler"], "esbuild", "the middleware ran");
    }
    assert_eq!(events[1]["context"]["app"]["name"], "shop");
    assert_eq!(events[1]["properties"]["tags"], json!(["a", "b"]));
}

#[test]
fn chromium_a_full_queue_drops_the_oldest_and_reports_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let server = sdk_server(dir.path());
    let result = scenario(&server, "bounded");
    assert_eq!(result["stored"], 3);
    let events = lake_events(&server, 3);
    assert_eq!(
        names(&events),
        ["track:Bounded 2", "track:Bounded 3", "track:Bounded 4"]
    );
    for event in &events {
        assert_eq!(event["context"]["droppedEvents"], 2);
    }
}

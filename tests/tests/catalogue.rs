//! The data map end to end: the real Segment (Python) and RudderStack (Node) clients send a
//! shop's events through `braid serve`; the catalogue API and `braid catalogue` show what
//! arrived, with the quality flags a data team needs and personal data masked; a rebuild from
//! the lake gives the same map.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::doc_markdown,
    clippy::too_many_lines,
    reason = "test code: one scenario, read top to bottom"
)]

use std::path::Path;

use braid_tests::{Server, braid, python, request, run_client, wait_unified};
use serde_json::Value;

const TOKEN: &str = "admin-e2e-token";

fn get(server: &Server, path: &str, token: Option<&str>) -> (u16, Value, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let reply = request(server.addr, "GET", path, &headers, b"").unwrap();
    (reply.status, reply.json(), reply.text())
}

/// `braid catalogue --json` of a data folder.
fn catalogue_json(data: &Path) -> Value {
    let out = braid(&[
        "catalogue".as_ref(),
        "--json".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_data_map_shows_what_real_clients_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--catalogue-token", TOKEN],
    );
    run_client(
        &python(),
        "catalogue_segment_python.py",
        &server,
        "s",
        false,
    );
    run_client(
        Path::new("node"),
        "catalogue_rudder_node.mjs",
        &server,
        "r",
        false,
    );
    wait_unified(&server.data);

    // The admin token, and nothing else, opens it: a write key is public.
    assert_eq!(get(&server, "/v1/catalogue", None).0, 401);
    assert_eq!(get(&server, "/v1/catalogue", Some(&server.key)).0, 401);
    let (status, summary, text) = get(&server, "/v1/catalogue", Some(TOKEN));
    assert_eq!(status, 200, "{text}");

    let sources: Vec<(&str, u64)> = summary["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["source"].as_str().unwrap(), s["events"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        sources,
        [("analytics-node", 20), ("analytics-python", 56)],
        "{summary}"
    );
    let event = |kind: &str, name: &str| {
        summary["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind && e["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}: {summary}"))
            .clone()
    };
    assert_eq!(event("track", "Order Completed")["count"], 40);
    assert_eq!(
        event("track", "Order Completed")["source"],
        "analytics-python"
    );
    assert_eq!(event("track", "Order Complete")["count"], 10);
    assert_eq!(event("track", "Order Complete")["source"], "analytics-node");
    assert_eq!(event("identify", "")["count"], 10);
    assert_eq!(event("page", "Home")["count"], 10);

    let flags = summary["flags"].as_array().unwrap();
    let flagged = |kind: &str, path: Option<&str>| {
        flags
            .iter()
            .any(|f| f["kind"] == kind && path.is_none_or(|p| f["path"] == p))
    };
    assert!(
        flagged("type_drift", Some("properties.revenue")),
        "{flags:?}"
    );
    assert!(
        flagged("unexpected_pii", Some("properties.note")),
        "{flags:?}"
    );
    // `traits.contact` repeats each shopper's email, which unify links by.
    assert_eq!(
        summary["identityCandidates"],
        serde_json::json!([{"path": "traits.contact", "values": 10, "known": 10, "share": 1.0,
            "identifierType": "email",
            "proposal": "[unify.identity.trait_identifiers] contact = \"email\""}]),
        "{summary}"
    );
    let near: Vec<(String, String)> = flags
        .iter()
        .filter(|f| f["kind"] == "near_duplicate_name")
        .map(|f| {
            (
                f["event"]["name"].as_str().unwrap().to_owned(),
                f["example"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for pair in [
        ("Order Complete", "Order Completed"),
        ("Order Complete", "order_completed"),
        ("Order Completed", "order_completed"),
    ] {
        assert!(
            near.contains(&(pair.0.to_owned(), pair.1.to_owned())),
            "{pair:?} in {near:?}"
        );
    }
    // Personal data never leaves unmasked.
    assert!(!text.contains("jane.doe@"), "{text}");

    let (status, revenue, _) = get(
        &server,
        "/v1/catalogue/events?type=track&name=Order%20Completed&path=properties.revenue",
        Some(TOKEN),
    );
    assert_eq!(status, 200);
    let revenue = &revenue["events"][0]["properties"][0];
    assert_eq!(revenue["count"], 40);
    assert_eq!(revenue["fillRate"], 1.0);
    assert_eq!(revenue["types"]["number"], 0.95, "{revenue}");
    assert_eq!(revenue["types"]["string"], 0.05, "{revenue}");
    assert_eq!(revenue["semantic"]["number_string"], 1.0, "{revenue}");
    let (status, identify, text) = get(&server, "/v1/catalogue/events?type=identify", Some(TOKEN));
    assert_eq!(status, 200);
    let email = identify["events"][0]["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "traits.email")
        .unwrap()
        .clone();
    assert_eq!(email["semanticType"], "email");
    assert_eq!(email["pii"]["class"], "yellow");
    assert_eq!(email["distinct"], 10);
    assert!(!text.contains("shopper1@"), "{text}");
    let plan = identify["events"][0]["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "traits.plan")
        .unwrap()
        .clone();
    assert_eq!(plan["topValues"]["free"], 5, "{plan}");
    let (status, _, _) = get(
        &server,
        "/v1/catalogue/events?type=track&name=Nothing",
        Some(TOKEN),
    );
    assert_eq!(status, 404);

    // The same map from the command line (read-only beside the running server), and from a
    // rebuild of the lake once it has stopped.
    let live = catalogue_json(&server.data);
    assert_eq!(live["test"]["sources"], summary["sources"]);
    assert!(server.terminate());
    braid(&[
        "catalogue".as_ref(),
        "rebuild".as_ref(),
        "--data".as_ref(),
        server.data.as_os_str(),
    ]);
    let rebuilt = catalogue_json(&server.data);
    assert_eq!(rebuilt, live, "the rebuilt map differs from the live one");
}

/// A data team writes the plan from what arrived, tightens it, and the next run of the same
/// client is held to it: blocked events wait in `failed/` with the reason, allowed violations
/// are counted in the map.
#[test]
fn a_plan_written_from_the_map_is_enforced_at_collection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("braid.log");
    let mut server = Server::start_with(data.clone(), log.clone(), &[]);
    run_client(
        &python(),
        "catalogue_segment_python.py",
        &server,
        "p",
        false,
    );
    wait_unified(&data);
    let plan_file = dir.path().join("plan.json");
    braid(&[
        "catalogue".as_ref(),
        "plan".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--output".as_ref(),
        plan_file.as_os_str(),
    ]);
    assert!(server.terminate());
    let mut plan: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let events = plan["events"].as_array_mut().unwrap();
    let names: Vec<String> = events
        .iter()
        .map(|e| e["name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        names,
        ["", "Order Completed", "Support Ticket", "order_completed"]
    );
    // What it observed: a revenue that was a number or a string, required, and a currency enum.
    let order = &mut events[1];
    let revenue = &mut order["schema"]["properties"]["properties"]["properties"]["revenue"];
    assert_eq!(revenue["type"], serde_json::json!(["number", "string"]));
    assert_eq!(
        order["schema"]["properties"]["properties"]["properties"]["currency"]["enum"],
        serde_json::json!(["EUR"])
    );
    // Tightened: revenue is a number, and what breaks it is blocked.
    order["schema"]["properties"]["properties"]["properties"]["revenue"]["type"] = "number".into();
    order["mode"] = "block".into();
    // `order_completed` must send revenue as a string: its events break it, and are allowed.
    events[3]["schema"]["properties"]["properties"]["properties"]["revenue"]["type"] =
        "string".into();
    std::fs::write(&plan_file, plan.to_string()).unwrap();

    let plan_arg = plan_file.to_str().unwrap().to_owned();
    let mut server = Server::start_with(
        data.clone(),
        log.clone(),
        &["--tracking-plan", &plan_arg, "--catalogue-token", TOKEN],
    );
    run_client(
        &python(),
        "catalogue_segment_python.py",
        &server,
        "q",
        false,
    );
    wait_unified(&data);
    let failed = braid_tests::read_lake(&data, "failed");
    let reasons: Vec<(&str, &str)> = failed
        .iter()
        .map(|f| (f["code"].as_str().unwrap(), f["message"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for (code, message) in &reasons {
        assert_eq!(*code, "plan_violation");
        assert!(
            message.contains("properties.revenue is a string, the plan says number"),
            "{message}"
        );
    }
    assert!(
        failed
            .iter()
            .all(|f| f["payload"].as_str().unwrap().contains("cat-q-"))
    );
    let raw = braid_tests::read_lake(&data, "raw");
    let run_q = |e: &&Value| {
        e["userId"]
            .as_str()
            .is_some_and(|u| u.starts_with("cat-q-"))
    };
    assert_eq!(raw.iter().filter(run_q).count(), 56 - 2);
    let marked: Vec<&Value> = raw
        .iter()
        .filter(run_q)
        .filter(|e| e["context"]["braid"].get("plan").is_some())
        .collect();
    assert_eq!(marked.len(), 5, "the five order_completed events");
    assert_eq!(marked[0]["event"], "order_completed");

    let map = catalogue_json(&data);
    let event = map["test"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "order_completed")
        .unwrap()
        .clone();
    assert_eq!(
        event["violations"]["properties.revenue"]["rules"]["type"], 5,
        "{event}"
    );
    assert!(
        map["test"]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "plan_violation" && f["path"] == "properties.revenue"),
        "{map}"
    );

    // The refusals are in the map too, with the way out.
    let refusals: Vec<&Value> = map["test"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "validation_failure")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(
        (&refusals[0]["path"], &refusals[0]["count"]),
        (&"plan_violation".into(), &2.into())
    );
    assert!(
        refusals[0]["message"]
            .as_str()
            .unwrap()
            .contains("2 of them track Order Completed"),
        "{refusals:?}"
    );
    // Replayed through the running server, under the plan that blocked them: refused still.
    let before = order_count(&map);
    let (status, dry) = replay(&server, r#"{"dryRun": true}"#);
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["selected"], 2, "{dry}");
    assert_eq!(dry["landed"], 0, "{dry}");
    assert_eq!(dry["stillRefused"]["plan_violation/type"], 2, "{dry}");
    // What cannot be replayed is refused by name.
    let (status, refused) = replay(&server, r#"{"reasons": ["missing_field"]}"#);
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "reasons", "{refused}");
    let (status, refused) = replay(&server, r#"{"form": "2024-01-01T00:00:00Z"}"#);
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("form"), "{refused}");
    let unauthorized = request(server.addr, "POST", "/v1/catalogue/replay", &[], b"{}").unwrap();
    assert_eq!(unauthorized.status, 401);
    // The running server owns the data folder: the command says to go through it.
    let beside = std::process::Command::new(braid_tests::braid_bin())
        .args(["replay".as_ref(), "--data".as_ref(), data.as_os_str()])
        .output()
        .unwrap();
    assert!(!beside.status.success());
    let said = String::from_utf8_lossy(&beside.stderr);
    assert!(said.contains("/v1/catalogue/replay"), "{said}");
    assert!(server.terminate());

    // The plan fixed (revenue a number or a string again): a dry run says what would land...
    order_plan(&plan_file, |order| {
        order["schema"]["properties"]["properties"]["properties"]["revenue"]["type"] =
            serde_json::json!(["number", "string"]);
    });
    let out = braid(&[
        "replay".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--tracking-plan".as_ref(),
        plan_file.as_os_str(),
        "--dry-run".as_ref(),
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("2 would land"), "{said}");
    assert_eq!(
        braid_tests::read_lake(&data, "raw")
            .iter()
            .filter(run_q)
            .count(),
        54
    );

    // ...and the server started with the fixed plan lands them, once, as they were received.
    let mut server = Server::start_with(
        data.clone(),
        log,
        &["--tracking-plan", &plan_arg, "--catalogue-token", TOKEN],
    );
    let (status, done) = replay(&server, "");
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (
            done["landed"].as_u64(),
            done["written"].as_array().map(Vec::len)
        ),
        (Some(2), Some(1)),
        "{done}"
    );
    wait_unified(&data);
    let raw = braid_tests::read_lake(&data, "raw");
    assert_eq!(raw.iter().filter(run_q).count(), 56);
    for record in &failed {
        let landed: Vec<&Value> = raw
            .iter()
            .filter(|e| {
                record["payload"]
                    .as_str()
                    .unwrap()
                    .contains(e["messageId"].as_str().unwrap())
            })
            .collect();
        assert_eq!(landed.len(), 1, "{record}");
        assert_eq!(landed[0]["receivedAt"], record["receivedAt"]);
        assert_eq!(landed[0]["context"]["library"]["name"], "analytics-python");
    }
    assert_eq!(order_count(&catalogue_json(&data)), before + 2);
    let (status, again) = replay(&server, "{}");
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["landed"].as_u64(), again["landedBefore"].as_u64()),
        (Some(0), Some(2)),
        "{again}"
    );
    assert!(server.terminate());
    // A replay from the command line finds them landed too.
    let out = braid(&["replay".as_ref(), "--data".as_ref(), data.as_os_str()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("0 landed, 2 landed before"), "{said}");
}

/// `POST /v1/catalogue/replay` with the catalogue token: the status and the answer.
fn replay(server: &Server, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let reply = request(
        server.addr,
        "POST",
        "/v1/catalogue/replay",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .unwrap();
    (reply.status, reply.json())
}

/// How many `Order Completed` events the map counted, from every source.
fn order_count(map: &Value) -> u64 {
    map["test"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "Order Completed")
        .map(|e| e["count"].as_u64().unwrap())
        .sum()
}

/// Edits the `Order Completed` event of the plan file.
fn order_plan(file: &Path, edit: impl FnOnce(&mut Value)) {
    let mut plan: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let order = plan["events"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["name"] == "Order Completed")
        .unwrap();
    edit(order);
    std::fs::write(file, plan.to_string()).unwrap();
}

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

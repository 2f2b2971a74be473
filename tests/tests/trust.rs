//! Identity injection through the public write key, on a real `braid serve` (`docs/trust.md`):
//! what a browser may claim, what it must prove, and what a server key may say.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use braid_core::collect::identity_hash;
use braid_core::unify::IdType;
use braid_tests::{Server, basic_auth, braid, identifiers_of, read_lake, request, wait_unified};
use serde_json::{Value, json};

const TOKEN: &str = "trust-profile-token";
const SECRET: &[u8] = b"trust-identity-secret";
const SERVER_KEY: &str = "sk_trust_server";

fn config(strict: bool) -> String {
    format!(
        r#"
[[workspaces]]
name = "test"
server_keys = ["{SERVER_KEY}"]
identity_secret = "{}"
verify_identity = {strict}

[collect.identity_cookie]
secure = false

[activate.personalize]
key_secret = "trust-kv-secret"
traits = ["plan", "tier"]
"#,
        String::from_utf8_lossy(SECRET)
    )
}

/// `braid serve` in `dir` with the configuration above: the server and the file.
fn serve(dir: &std::path::Path, strict: bool) -> (Server, std::path::PathBuf) {
    let config_file = dir.join("braid.toml");
    std::fs::write(&config_file, config(strict)).unwrap();
    let server = Server::start_with(
        dir.join("data"),
        dir.join("braid.log"),
        &[
            "--config",
            config_file.to_str().unwrap(),
            "--profile-token",
            TOKEN,
        ],
    );
    (server, config_file)
}

/// A batch from a browser holding the credential cookie `credential`, with the public key.
fn from_browser(server: &Server, credential: &str, events: &[Value]) {
    let cookie = format!("braid_key={credential}");
    let auth = server.basic_auth();
    post(server, &auth, Some(&cookie), events);
}

fn post(server: &Server, auth: &str, cookie: Option<&str>, events: &[Value]) {
    let mut headers = vec![
        ("Authorization", auth),
        ("Content-Type", "application/json"),
    ];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    let body = json!({ "batch": events }).to_string();
    let reply = request(server.addr, "POST", "/v1/batch", &headers, body.as_bytes()).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
}

fn profile(server: &Server, id: &str) -> Value {
    braid_tests::profile_json(server, TOKEN, id)
}

fn personalized(server: &Server, credential: &str) -> Value {
    let cookie = format!("braid_key={credential}");
    let reply = request(
        server.addr,
        "GET",
        "/v1/personalize",
        &[("Cookie", &cookie)],
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    reply.json()["traits"].clone()
}

/// The attack of the issue, and the traffic around it: the victim logs in with the hash the
/// site's server computed; the CRM (a server key) adds a tier; an attacker claims the victim's
/// user id and email from another browser, with a forged `context.braid`, and sets a plan.
fn traffic(server: &Server) {
    let user_hash = identity_hash(SECRET, &IdType::UserId, "victim").unwrap();
    from_browser(
        server,
        "victim-browser-credential",
        &[
            json!({"type": "page", "anonymousId": "victim-anon", "name": "Home"}),
            json!({"type": "identify", "anonymousId": "victim-anon", "userId": "victim",
                "traits": {"plan": "pro", "email": "victim@example.com"},
                "context": {"braid": {"userHash": user_hash}}}),
        ],
    );
    post(
        server,
        &basic_auth(SERVER_KEY),
        None,
        &[json!({"type": "identify", "userId": "victim", "traits": {"tier": "gold"}})],
    );
    from_browser(
        server,
        "attacker-browser-credential",
        &[
            json!({"type": "identify", "anonymousId": "attacker-anon", "userId": "victim",
                "traits": {"plan": "free-HIJACKED", "email": "victim@example.com"},
                "context": {"braid": {"trusted": true, "verified": ["user_id", "email"]}}}),
            json!({"type": "track", "event": "Viewed", "anonymousId": "attacker-anon",
                "userId": "victim"}),
        ],
    );
    // The victim's own browser goes on without a hash on every event.
    from_browser(
        server,
        "victim-browser-credential",
        &[
            json!({"type": "track", "event": "Viewed", "anonymousId": "victim-anon",
            "userId": "victim"}),
        ],
    );
}

#[test]
fn by_default_a_claim_links_but_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = serve(dir.path(), false);
    traffic(&server);
    wait_unified(&server.data);
    // The default graph believes the claim: the attacker's ids joined the victim's profile.
    let victim = profile(&server, "user_id:victim");
    assert!(
        identifiers_of(&victim).contains(&"anonymous_id:attacker-anon".to_owned()),
        "{victim}"
    );
    // But only the browser that proved the link reads it.
    assert_eq!(
        personalized(&server, "attacker-browser-credential"),
        json!({})
    );
    let seen = personalized(&server, "victim-browser-credential");
    assert_eq!(seen["tier"], "gold", "{seen}");
    // Nothing a client wrote in context.braid reached the lake.
    let raw = read_lake(&server.data, "raw");
    assert_eq!(raw.len(), 6);
    let stamps: Vec<&Value> = raw.iter().map(|e| &e["context"]["braid"]).collect();
    assert_eq!(
        stamps.iter().filter(|s| s["trusted"] == true).count(),
        1,
        "only the server key's event is trusted: {stamps:?}"
    );
    assert_eq!(
        stamps
            .iter()
            .filter(|s| s["verified"] == json!(["user_id"]))
            .count(),
        1,
        "only the victim's identify proves its user id: {stamps:?}"
    );
    assert!(
        raw.iter()
            .all(|e| e["context"]["braid"].get("userHash").is_none())
    );
}

#[test]
fn strict_identity_keeps_claims_in_the_lake_and_out_of_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, config_file) = serve(dir.path(), true);
    let data = server.data.clone();
    traffic(&server);
    wait_unified(&data);
    let victim = profile(&server, "user_id:victim");
    assert_eq!(victim["traits"]["plan"]["value"], "pro", "{victim}");
    assert_eq!(victim["traits"]["tier"]["value"], "gold", "{victim}");
    assert_eq!(
        victim["eventCounts"]["Viewed"], 1,
        "the victim's own only: {victim}"
    );
    let victim_ids = identifiers_of(&victim);
    assert!(
        !victim_ids.iter().any(|i| i.contains("attacker")),
        "{victim}"
    );
    // The claim stays with the attacker's own anonymous profile, which says what it left out.
    let attacker = profile(&server, "anonymous_id:attacker-anon");
    assert_eq!(attacker["traits"]["plan"]["value"], "free-HIJACKED");
    assert!(
        !identifiers_of(&attacker)
            .iter()
            .any(|i| i.starts_with("user_id:")),
        "{attacker}"
    );
    assert!(
        attacker.to_string().contains("does not prove it"),
        "{attacker}"
    );
    assert_eq!(
        personalized(&server, "attacker-browser-credential")["tier"],
        Value::Null
    );
    assert_eq!(
        personalized(&server, "victim-browser-credential")["plan"],
        "pro"
    );
    // Kept in the lake all the same.
    let raw = read_lake(&data, "raw");
    assert!(raw.iter().any(|e| e["traits"]["plan"] == "free-HIJACKED"));

    // A rebuild under the same rules gives the same profiles.
    assert!(server.terminate());
    let export = |name: &str| {
        let output = dir.path().join(name);
        braid(&[
            "profiles".as_ref(),
            "export".as_ref(),
            "--config".as_ref(),
            config_file.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "--output".as_ref(),
            output.as_os_str(),
        ]);
        std::fs::read_to_string(output).unwrap()
    };
    let live = export("live.ndjson");
    braid(&[
        "profiles".as_ref(),
        "rebuild".as_ref(),
        "--config".as_ref(),
        config_file.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    assert_eq!(export("rebuilt.ndjson"), live);
}

//! The Cloudflare Worker (the `braid-edge` handlers built for wasm32) running in workerd through
//! Miniflare, forwarding signed batches to a real `braid serve`: events land in its lake, enriched
//! exactly as on the direct path; bad keys are refused at the edge; an upstream that is down
//! gives the client 503 with Retry-After and stores nothing.
//!
//! Needs `scripts/worker-build.sh` (run by `scripts/test.sh`) and `tests/worker/node_modules`
//! (`scripts/setup.sh --test`).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::let_underscore_must_use,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use braid_tests::{Server, basic_auth, read_lake, repo_root};
use serde_json::{Value, json};

const SECRET: &str = "worker-forward-secret";
const EDGE_KEY: &str = "edge-write-key";

/// Sends `requests` to the Worker in workerd; gives its answers.
fn through_worker(ingest_url: &str, requests: &[Value]) -> Vec<Value> {
    through_worker_with(ingest_url, requests, &[])
}

/// `node run.mjs` for the built Worker, with its configuration (`BRAID_CONFIG`: the workspace,
/// the ingest to forward to, the identity cookie) and forward secret. Its workspace is the one
/// of the `braid serve` it forwards to ([`Server`] configures `test`): ingest refuses others.
fn run_mjs(ingest_url: &str) -> Command {
    let config = json!({
        "workspaces": [{"name": "test", "write_keys": [EDGE_KEY]}],
        "collect": {"upstream": ingest_url, "identity_cookie": {}},
    })
    .to_string();
    let mut command = Command::new("node");
    command
        .arg(repo_root().join("tests/worker/run.mjs"))
        .current_dir(repo_root().join("tests/worker"))
        .env(
            "BRAID_WORKER_ENTRY",
            repo_root().join("edge-worker/build/worker.mjs"),
        )
        .env("BRAID_CONFIG", config)
        .env("BRAID_FORWARD_SECRET", SECRET);
    command
}

/// [`through_worker`] with more environment for run.mjs (secrets, the KV seed file).
fn through_worker_with(ingest_url: &str, requests: &[Value], env: &[(&str, &str)]) -> Vec<Value> {
    let entry = repo_root().join("edge-worker/build/worker.mjs");
    assert!(
        entry.exists(),
        "{} is missing: run scripts/worker-build.sh (scripts/test.sh does)",
        entry.display()
    );
    let output = braid_tests::run_with_json(
        run_mjs(ingest_url)
            .env("BRAID_SDK_DIR", repo_root().join("sdk-js/dist"))
            .envs(env.iter().copied()),
        &Value::Array(requests.to_vec()),
    );
    assert!(
        output.status.success(),
        "miniflare failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn post(path: &str, key: &str, body: &Value) -> Value {
    let body = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    json!({
        "method": "POST", "path": path, "body_base64": body,
        "headers": {"content-type": "application/json", "authorization": basic_auth(key),
                    "user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"}
    })
}

/// The fields that depend on when and from where the request came, which differ between two
/// requests carrying the same event, and what only the edge adds: its `anonymousId` (the
/// identity cookie), `context.braid` (its credential cookie's id), `context.location` and
/// `context.edge` (from the `cf` object).
fn without_request_fields(mut event: Value) -> Value {
    let fields = event.as_object_mut().unwrap();
    fields.remove("receivedAt");
    fields.remove("timestamp");
    fields.remove("anonymousId");
    let context = fields["context"].as_object_mut().unwrap();
    for key in ["ip", "location", "edge", "braid"] {
        context.remove(key);
    }
    event
}

/// The cookies the edge set on a collection answer (`answer`) and what the event it stored
/// (`row`) says of them: the anonymous id and the browser's credential.
fn edge_cookies(answer: &Value, row: &Value) -> (String, String) {
    // The first-party identity cookie: set on the answer, its id in the body; sent back, it
    // fills the anonymousId of events that have none.
    let cookie = answer["headers"]["set-cookie"].as_str().unwrap().to_owned();
    for part in [
        "braid_aid=",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=31536000",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let id = body["anonymousId"].as_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("braid_aid={id};")), "{cookie}");
    // And the browser's credential, another random value, whose id (never the value) the
    // event carries.
    assert!(cookie.contains("braid_key="), "no credential: {cookie}");
    let credential = cookie
        .split_once("braid_key=")
        .and_then(|(_, rest)| rest.split(';').next())
        .unwrap()
        .to_owned();
    assert_ne!(credential, id);
    assert_eq!(
        row["context"]["braid"],
        json!({"browser": braid_core::collect::browser_id(&credential)})
    );
    (id, credential)
}

#[test]
fn the_worker_forwards_to_braid_serve_and_lands_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--forward-secret", SECRET],
    );
    let event = json!({
        "userId": "worker-user", "event": "Checkout Started", "messageId": "w-1",
        "timestamp": "2024-05-01T10:00:00.000Z", "sentAt": "2024-05-01T10:00:00.000Z",
        "properties": {"cart": 42.5},
        "context": {"page": {"url": "https://shop.example/cart?utm_source=news", "referrer": "https://www.google.com/"},
                    "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"}
    });
    let url = format!("{}/v1/forward", server.url());
    let answers = through_worker(
        &url,
        &[
            post("/v1/track", EDGE_KEY, &event),
            post("/v1/track", "not-a-key", &event),
            post("/v1/track", EDGE_KEY, &json!({"userId": "u"})),
        ],
    );
    assert_eq!(answers[0]["status"], 200, "{}", answers[0]);
    assert_eq!(answers[1]["status"], 401, "{}", answers[1]);
    assert_eq!(
        answers[2]["status"], 400,
        "a track without event: {}",
        answers[2]
    );
    let body: Value = serde_json::from_str(answers[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["errors"][0]["field"], "event");

    let edge_rows = read_lake(&server.data, "raw");
    assert_eq!(edge_rows.len(), 1);
    assert_eq!(edge_rows[0]["context"]["campaign"]["source"], "news");
    // The same event sent to braid serve directly lands the same row.
    let direct_dir = dir.path().join("direct");
    std::fs::create_dir_all(&direct_dir).unwrap();
    let direct = Server::start(&direct_dir);
    let reply = direct.post("/v1/track", event.to_string().as_bytes());
    assert_eq!(reply.status, 200);
    let direct_rows = read_lake(&direct.data, "raw");
    assert_eq!(
        without_request_fields(edge_rows[0].clone()),
        without_request_fields(direct_rows[0].clone())
    );
    let failed = read_lake(&server.data, "failed");
    assert_eq!(failed.len(), 1, "the failed event was forwarded too");

    let (id, credential) = edge_cookies(&answers[0], &edge_rows[0]);
    // Geo and network from the request's cf object, on the edge only.
    let mut located = post(
        "/v1/track",
        EDGE_KEY,
        &json!({"event": "Located", "userId": "worker-user"}),
    );
    located["cf"] = json!({"country": "FR", "region": "Auvergne-Rhône-Alpes", "city": "Lyon",
                           "postalCode": "69001", "timezone": "Europe/Paris",
                           "latitude": "45.76", "longitude": "4.83", "colo": "LYS", "asn": 3215});
    let answers = through_worker(&url, &[located]);
    assert_eq!(answers[0]["status"], 200, "{}", answers[0]);
    let rows = read_lake(&server.data, "raw");
    let located = rows.iter().find(|r| r["event"] == "Located").unwrap();
    assert_eq!(located["context"]["location"]["city"], "Lyon");
    assert_eq!(located["context"]["location"]["latitude"], 45.76);
    assert_eq!(
        located["context"]["edge"],
        json!({"colo": "LYS", "asn": 3215})
    );

    let mut returning = post(
        "/v1/track",
        EDGE_KEY,
        &json!({"event": "Came Back", "userId": "worker-user"}),
    );
    returning["headers"]["cookie"] = json!(format!("braid_aid={id}; braid_key={credential}"));
    let answers = through_worker(&url, &[returning]);
    assert_eq!(answers[0]["status"], 200, "{}", answers[0]);
    let rows = read_lake(&server.data, "raw");
    let came_back = rows.iter().find(|r| r["event"] == "Came Back").unwrap();
    assert_eq!(came_back["anonymousId"].as_str(), Some(id.as_str()));
    assert_eq!(
        came_back["context"]["braid"]["browser"], edge_rows[0]["context"]["braid"]["browser"],
        "the credential sent back is the browser's"
    );
}

#[test]
fn an_upstream_that_is_down_gives_503_and_stores_nothing() {
    // Nothing listens there.
    let url = format!("http://{}/v1/forward", braid_tests::free_addr());
    let answers = through_worker(
        &url,
        &[post(
            "/v1/track",
            EDGE_KEY,
            &json!({"event": "E", "userId": "u"}),
        )],
    );
    assert_eq!(answers[0]["status"], 503, "{}", answers[0]);
    assert!(
        answers[0]["headers"]["retry-after"].is_string(),
        "{}",
        answers[0]
    );
}

#[test]
fn the_worker_serves_the_browser_sdk_first_party_with_cache_headers() {
    let dist = repo_root().join("sdk-js/dist");
    let wasm = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|name| {
            std::path::Path::new(name)
                .extension()
                .is_some_and(|e| e == "wasm")
        })
        .expect("sdk-js/dist has the wasm: run npm run build in sdk-js");
    let get = |path: &str| json!({"method": "GET", "path": path, "headers": {}});
    let answers = through_worker(
        "http://127.0.0.1:9/v1/forward",
        &[
            get("/sdk/braid.js"),
            get(&format!("/sdk/{wasm}")),
            get("/sdk/missing.js"),
            get("/sdk/../wrangler.toml"),
            json!({"method": "POST", "path": "/sdk/braid.js", "headers": {}}),
        ],
    );
    let decoded = |answer: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(answer["body_base64"].as_str().unwrap())
            .unwrap()
    };
    let js = &answers[0];
    assert_eq!(js["status"], 200);
    assert_eq!(
        js["headers"]["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js["headers"]["cache-control"], "public, max-age=300");
    assert_eq!(js["headers"]["access-control-allow-origin"], "*");
    assert_eq!(decoded(js), std::fs::read(dist.join("braid.js")).unwrap());
    let module = &answers[1];
    assert_eq!(module["status"], 200);
    assert_eq!(module["headers"]["content-type"], "application/wasm");
    assert_eq!(
        module["headers"]["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(decoded(module), std::fs::read(dist.join(&wasm)).unwrap());
    assert_eq!(answers[2]["status"], 404);
    assert_eq!(answers[3]["status"], 404);
    assert_eq!(answers[4]["status"], 405);
}

/// A server's profiles from real events of three browsers, exported for the edge by `braid
/// profiles export --edge` (beside the running server: read-only, what it made durable): the
/// server and the export.
fn edge_export(dir: &Path) -> (Server, PathBuf) {
    use braid_core::collect::identity_hash;
    use braid_core::unify::IdType;

    let config = dir.join("braid.toml");
    std::fs::write(
        &config,
        "[collect]\nidentity_secret = \"id-secret\"\n\n[activate.personalize]\nkey_secret = \"kv-secret\"\ntraits = [\"plan\"]\n\n[collect.identity_cookie]\nsecure = false\n",
    )
    .unwrap();
    let server = Server::start_with(
        dir.join("data"),
        dir.join("braid.log"),
        &["--config", config.to_str().unwrap()],
    );
    let auth = server.basic_auth();
    // Each browser holds the credential cookie the server issued it.
    let send = |credential: &str, event: Value| {
        let cookie = format!("braid_key={credential}");
        let response = braid_tests::request(
            server.addr,
            "POST",
            "/v1/batch",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Cookie", &cookie),
            ],
            json!({"batch": [event]}).to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    };
    // User 1 logs in, with the hash the site's server computed; visitor b browses; then an
    // attacker claims user 1's id and email from another browser, without a hash.
    let user_hash = identity_hash(b"id-secret", &IdType::UserId, "user-1").unwrap();
    send(
        "user-1-browser-credential",
        json!({"type": "identify", "anonymousId": "visitor-aaaa", "userId": "user-1",
            "traits": {"plan": "pro", "email": "ada@example.com"},
            "context": {"braid": {"userHash": user_hash}}}),
    );
    send(
        "visitor-b-browser-credential",
        json!({"type": "identify", "anonymousId": "visitor-bbbb", "traits": {"plan": "basic"}}),
    );
    send(
        "attacker-browser-credential",
        json!({"type": "identify", "anonymousId": "attacker-cccc", "userId": "user-1",
            "traits": {"email": "ada@example.com"},
            "context": {"braid": {"trusted": true, "verified": ["user_id"]}}}),
    );
    braid_tests::wait_unified(&server.data);
    let kv_file = dir.join("kv.json");
    let export = Command::new(braid_tests::braid_bin())
        .args(["profiles", "export", "--edge", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&server.data)
        .arg("--output")
        .arg(&kv_file)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let entries: Vec<Value> = serde_json::from_slice(&std::fs::read(&kv_file).unwrap()).unwrap();
    assert_eq!(
        entries.len(),
        5,
        "user-1 and the anonymous id and browser that proved it, visitor-bbbb and its browser, \
         nothing for the attacker's: {entries:?}"
    );

    (server, kv_file)
}

#[test]
fn personalization_reads_only_the_callers_own_profile_from_kv() {
    use braid_core::activate::personalize::sign_token;
    use braid_core::unify::Identifier;

    let dir = tempfile::tempdir().unwrap();
    let (server, kv_file) = edge_export(dir.path());
    let token = sign_token(
        b"token-secret",
        &Identifier::parse("user_id:user-1").unwrap(),
        time::OffsetDateTime::now_utc() + time::Duration::minutes(5),
    );
    let forged = token.replace("user-1", "user-2");
    let get = |query: &str, headers: Value| json!({"method": "GET", "path": format!("/v1/personalize{query}"), "headers": headers});
    let answers = through_worker_with(
        "http://127.0.0.1:9/v1/forward",
        &[
            get(
                "?anonymousId=visitor-bbbb&userId=user-2",
                json!({"cookie": "braid_key=user-1-browser-credential"}),
            ),
            get(
                "",
                json!({"cookie": "braid_key=visitor-b-browser-credential"}),
            ),
            get("?anonymousId=visitor-aaaa", json!({})),
            get("", json!({"authorization": format!("Bearer {token}")})),
            get("", json!({"authorization": format!("Bearer {forged}")})),
            get(
                "",
                json!({"cookie": "braid_key=unknown-browser-credential"}),
            ),
            get(
                "",
                json!({"cookie": "braid_key=attacker-browser-credential"}),
            ),
            get("", json!({"cookie": "braid_aid=visitor-aaaa"})),
        ],
        &[
            ("BRAID_EDGE_KEY_SECRET", "kv-secret"),
            ("BRAID_TOKEN_SECRET", "token-secret"),
            ("BRAID_KV_FILE", kv_file.to_str().unwrap()),
        ],
    );
    let body =
        |n: usize| -> Value { serde_json::from_str(answers[n]["body"].as_str().unwrap()).unwrap() };
    let pro = json!({"traits": {"plan": "pro"}, "audiences": []});
    let empty = json!({"traits": {}, "audiences": []});
    assert_eq!(body(0), pro, "the cookie's profile, not the query string's");
    assert_eq!(answers[0]["headers"]["cache-control"], "private, no-store");
    assert_eq!(
        body(1),
        json!({"traits": {"plan": "basic"}, "audiences": []})
    );
    assert_eq!(body(2), empty, "a query string identifies no one");
    assert_eq!(body(3), pro, "a signed token for user-1");
    assert_eq!(answers[4]["status"], 401);
    assert_eq!(
        body(4)["errors"][0]["message"],
        "the token's signature does not match"
    );
    assert_eq!(answers[5]["status"], 200);
    assert_eq!(body(5), empty, "an unknown browser is an empty profile");
    assert_eq!(body(6), empty, "a claim without its hash reads nothing");
    assert_eq!(body(7), empty, "the anonymous id is no credential");

    // braid serve answers the same from its own profiles.
    let local = |cookie: &str| {
        braid_tests::request(
            server.addr,
            "GET",
            "/v1/personalize?anonymousId=visitor-bbbb",
            &[("cookie", cookie)],
            b"",
        )
        .unwrap()
        .json()
    };
    assert_eq!(local("braid_key=user-1-browser-credential"), pro);
    assert_eq!(local("braid_key=attacker-browser-credential"), empty);
    assert_eq!(local("braid_aid=visitor-aaaa"), empty);
}

#[test]
fn with_a_queue_batches_are_acknowledged_at_once_and_reach_ingest_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let addr = braid_tests::free_addr();
    let ingest = format!("http://{addr}/v1/forward");
    let batch = json!({"batch": [
        {"type": "track", "event": "Queued A", "userId": "q-1", "messageId": "queued-a"},
        {"type": "track", "event": "Queued B", "userId": "q-1", "messageId": "queued-b"},
    ]});
    // Ingest is down when the Worker takes the batch; it comes up two seconds later.
    let requests = vec![
        post("/v1/batch", EDGE_KEY, &batch),
        json!({"wait_ms": 7000}),
    ];
    let worker = std::thread::spawn(move || {
        through_worker_with(&ingest, &requests, &[("BRAID_QUEUE", "1")])
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let server = Server::start_at(
        addr,
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--forward-secret", SECRET],
    );
    let answers = worker.join().unwrap();
    assert_eq!(
        answers[0]["status"], 200,
        "queued: the client is answered at once"
    );
    let events = read_lake(&server.data, "raw");
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["queued-a", "queued-b"],
        "delivered by the consumer, once"
    );
}

/// The built Worker in workerd, listening for real clients; stops when dropped.
struct ListeningWorker {
    child: std::process::Child,
    url: String,
}

impl ListeningWorker {
    fn start(ingest_url: &str) -> ListeningWorker {
        use std::io::BufRead as _;
        let mut child = run_mjs(ingest_url)
            .env("BRAID_SERVE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut url = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut url)
            .unwrap();
        ListeningWorker {
            child,
            url: url.trim().to_owned(),
        }
    }
}

impl Drop for ListeningWorker {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn the_real_segment_and_rudderstack_clients_send_through_the_worker() {
    use braid_tests::{check_client_events, python, run_client_at};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path().join("data"),
        dir.path().join("braid.log"),
        &["--forward-secret", SECRET],
    );
    let worker = ListeningWorker::start(&format!("{}/v1/forward", server.url()));
    assert!(
        worker.url.starts_with("http://127.0.0.1:"),
        "{}",
        worker.url
    );
    let log = || server.log_text();
    let node = std::path::Path::new("node");
    for (program, script, run, gzip) in [
        (python(), "segment_python.py", "wa", false),
        (python(), "rudder_python.py", "wb", true),
        (node.to_owned(), "segment_node.mjs", "wc", false),
        (node.to_owned(), "rudder_node.mjs", "wd", false),
    ] {
        run_client_at(&program, script, &worker.url, EDGE_KEY, run, gzip, &log);
    }
    for (user, run, library) in [
        ("py-seg-wa", "wa", "analytics-python"),
        ("py-rud-wb", "wb", "analytics-python"),
        ("node-seg-wc", "wc", "@segment/analytics-node"),
        ("node-rud-wd", "wd", "analytics-node"),
    ] {
        check_client_events(&server.data, user, run, library);
    }
}

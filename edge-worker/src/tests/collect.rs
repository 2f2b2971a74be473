//! The collection routes, request by request.

use serde_json::{Value, json};

use super::*;

#[test]
fn accepts_a_batch_with_basic_auth() {
    let auth = basic(KEY);
    let body = batch(
        &json!([{"type": "track", "event": "A", "userId": "u"}, {"type": "page", "anonymousId": "x"}]),
    );
    let (response, write) = send(
        &api(),
        &post("/v1/batch", vec![("Authorization", &auth)], &body),
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json_body(),
        json!({"success": true, "accepted": 2, "failed": 0, "errors": []})
    );
    let write = write.unwrap();
    assert_eq!(write.workspace, "shop");
    let events = lines(&write.accepted);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["context"]["ip"], "203.0.113.0");
    assert_eq!(events[1]["type"], "page");
}

#[test]
fn write_key_in_the_body_and_short_paths() {
    let body = json!({"writeKey": KEY, "event": "Clicked", "anonymousId": "a"}).to_string();
    let (response, write) = send(
        &api(),
        &post(
            "/v1/t",
            vec![("content-type", "text/plain")],
            body.as_bytes(),
        ),
    );
    assert_eq!(response.status, 200);
    let events = lines(&write.unwrap().accepted);
    assert_eq!(events[0]["type"], "track");
    assert!(
        events[0].get("writeKey").is_none(),
        "the write key is not stored"
    );
}

#[test]
fn decodes_gzip_whatever_the_content_type() {
    let auth = basic(KEY);
    let body = gzip(&batch(
        &json!([{"type": "identify", "userId": "u", "context": {"traits": {"plan": "pro"}}}]),
    ));
    let headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let (response, write) = send(&api(), &post("/v1/batch", headers, &body));
    assert_eq!(response.status, 200, "{:?}", response.json_body());
    let events = lines(&write.unwrap().accepted);
    assert_eq!(
        events[0]["traits"],
        json!({"plan": "pro"}),
        "context.traits become traits"
    );
}

#[test]
fn unknown_and_missing_write_keys_are_401() {
    let body = batch(&json!([{"type": "track", "event": "A", "userId": "u"}]));
    let auth = basic("nope");
    let (response, write) = send(
        &api(),
        &post("/v1/batch", vec![("authorization", &auth)], &body),
    );
    assert_eq!(response.status, 401);
    assert!(write.is_none());
    assert_eq!(
        response.json_body()["errors"][0]["message"],
        "unknown write key \"nope\""
    );
    let (response, _) = send(&api(), &post("/v1/batch", vec![], &body));
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json_body()["errors"][0]["code"],
        "missing_write_key"
    );
}

#[test]
fn malformed_json_is_400_and_kept_when_the_sender_is_known() {
    let auth = basic(KEY);
    let (response, write) = send(
        &api(),
        &post(
            "/v1/batch",
            vec![("authorization", &auth)],
            b"{\"batch\": [}",
        ),
    );
    assert_eq!(response.status, 400);
    let error = &response.json_body()["errors"][0];
    assert_eq!(error["code"], "malformed_json");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("body is not valid JSON: expected value at line 1")
    );
    let failed = lines(&write.unwrap().failed);
    assert_eq!(failed[0]["payload"], "{\"batch\": [}");
    // Without a known sender there is nothing to attribute it to: refused, not stored.
    let (response, write) = send(&api(), &post("/v1/batch", vec![], b"nope"));
    assert_eq!(response.status, 400);
    assert!(write.is_none());
}

#[test]
fn bad_gzip_is_400() {
    let auth = basic(KEY);
    let mut body = gzip(b"{\"batch\": []}");
    body.truncate(8);
    let (response, _) = send(
        &api(),
        &post("/v1/batch", vec![("authorization", &auth)], &body),
    );
    assert_eq!(response.status, 400);
    assert_eq!(response.json_body()["errors"][0]["code"], "bad_gzip");
}

#[test]
fn unsupported_encodings_and_types_are_415() {
    let auth = basic(KEY);
    let body = batch(&json!([{"type": "track", "event": "A", "userId": "u"}]));
    let headers = vec![("authorization", auth.as_str()), ("content-encoding", "br")];
    assert_eq!(
        send(&api(), &post("/v1/batch", headers, &body)).0.status,
        415
    );
    let headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/xml"),
    ];
    let (response, _) = send(&api(), &post("/v1/batch", headers, &body));
    assert_eq!(response.status, 415);
    assert_eq!(
        response.json_body()["errors"][0]["message"],
        "\"Content-Type\" must be application/json or text/plain: \"application/xml\""
    );
}

#[test]
fn size_limits_are_413() {
    let auth = basic(KEY);
    let event = json!({"type": "track", "event": "A", "userId": "u"});
    let body = batch(&Value::Array(vec![event.clone(); 2_501]));
    let (response, _) = send(
        &api(),
        &post("/v1/batch", vec![("authorization", &auth)], &body),
    );
    assert_eq!(response.status, 413);
    let error = &response.json_body()["errors"][0];
    assert_eq!(
        (error["field"].as_str(), error["limit"].as_u64()),
        (Some("batch"), Some(2_500))
    );

    let big = json!({"type": "track", "event": "A", "userId": "u", "properties": {"p": "x".repeat(20_000)}});
    let body = batch(&Value::Array(vec![big; 30]));
    let (response, _) = send(
        &api(),
        &post("/v1/batch", vec![("authorization", &auth)], &body),
    );
    assert_eq!(response.status, 413);
    assert_eq!(response.json_body()["errors"][0]["limit"], 512_000);

    // A gzip body that inflates past the limit is caught while decoding.
    let bomb = gzip(&vec![b' '; 2_000_000]);
    let (response, _) = send(
        &api(),
        &post("/v1/batch", vec![("authorization", &auth)], &bomb),
    );
    assert_eq!(response.status, 413);
}

#[test]
fn partial_failures_keep_the_good_events_and_list_the_bad() {
    let auth = basic(KEY);
    let body = batch(&json!([
        {"type": "track", "event": "A", "userId": "u"},
        {"type": "track", "userId": "u"},
        {"type": "page", "anonymousId": "a", "timestamp": "yesterday"},
        {"type": "track", "event": "B", "userId": "u", "messageId": "m".repeat(101)},
        {"type": "track", "event": "C", "anonymousId": "a", "properties": {"p": "x".repeat(33_000)}},
    ]));
    let (response, write) = send(
        &api(),
        &post("/v1/batch", vec![("authorization", &auth)], &body),
    );
    assert_eq!(response.status, 200);
    let reply = response.json_body();
    assert_eq!(
        (reply["accepted"].as_u64(), reply["failed"].as_u64()),
        (Some(1), Some(4))
    );
    let fields: Vec<_> = reply["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].clone(), e["field"].clone()))
        .collect();
    assert_eq!(
        fields,
        vec![
            (json!(1), json!("event")),
            (json!(2), json!("timestamp")),
            (json!(3), json!("messageId")),
            (json!(4), Value::Null)
        ]
    );
    assert_eq!(reply["errors"][2]["limit"], 100);
    assert_eq!(reply["errors"][3]["limit"], 32_768);
    let write = write.unwrap();
    assert_eq!(lines(&write.accepted).len(), 1);
    let failed = lines(&write.failed);
    assert_eq!(failed.len(), 4);
    assert_eq!(
        failed[1]["message"],
        "event 2: \"timestamp\" is not an RFC 3339 date: \"yesterday\""
    );
    let original: Value = serde_json::from_str(failed[1]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(original["timestamp"], "yesterday");
}

#[test]
fn a_batch_with_only_bad_events_is_400_but_kept() {
    let auth = basic(KEY);
    let body = batch(&json!([{"type": "track", "event": "A"}]));
    let (response, write) = send(
        &api(),
        &post("/v1/batch", vec![("authorization", &auth)], &body),
    );
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json_body()["errors"][0]["code"],
        "missing_identity"
    );
    assert_eq!(lines(&write.unwrap().failed).len(), 1);
}

#[test]
fn rate_limit_is_429_with_retry_after() {
    let limited = api_with(|config| {
        config.workspaces[0].rate_limit = Some(RateLimit {
            events_per_second: 10,
            burst: 10,
        });
    });
    let auth = basic(KEY);
    let body = batch(&Value::Array(vec![
        json!({"type": "track", "event": "A", "userId": "u"});
        8
    ]));
    assert_eq!(
        send(
            &limited,
            &post("/v1/batch", vec![("authorization", &auth)], &body)
        )
        .0
        .status,
        200
    );
    let (response, write) = send(
        &limited,
        &post("/v1/batch", vec![("authorization", &auth)], &body),
    );
    assert_eq!(response.status, 429);
    assert!(write.is_none());
    assert_eq!(response.header("retry-after"), Some("1"));
}

#[test]
fn cors_allows_credentials_only_for_configured_origins() {
    let preflight = |origin: &'static str| HttpRequest {
        method: "OPTIONS",
        path: "/v1/t",
        query: None,
        headers: vec![
            ("Origin", origin),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        body: b"",
        client_ip: None,
        fresh_id: None,
        fresh_key: None,
        location: None,
        edge: None,
    };
    // No configured origins: collection is open to every origin, `null` too, without
    // credentials.
    for origin in ["https://shop.example", "null"] {
        let (response, _) = send(&api(), &preflight(origin));
        assert_eq!(response.status, 204);
        assert_eq!(response.header("access-control-allow-origin"), Some(origin));
        assert_eq!(
            response.header("access-control-allow-headers"),
            Some("authorization, content-type")
        );
        assert_eq!(response.header("access-control-max-age"), Some("86400"));
        assert_eq!(response.header("access-control-allow-credentials"), None);
    }
    // Configured: those origins with credentials, no other.
    let listed = api_with(|config| {
        config.collect.cors.allowed_origins = vec!["https://shop.example".into()];
    });
    let (response, _) = send(&listed, &preflight("https://shop.example"));
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    for origin in ["https://evil.example", "null"] {
        let (response, _) = send(&listed, &preflight(origin));
        assert_eq!(
            response.header("access-control-allow-origin"),
            None,
            "{origin}"
        );
        assert_eq!(response.header("access-control-allow-credentials"), None);
    }
}

#[test]
fn storage_failure_is_503_with_retry_after() {
    let auth = basic(KEY);
    let body = batch(&json!([{"type": "track", "event": "A", "userId": "u"}]));
    let Handled::Store(_, reply, _) = api().handle(
        &post("/v1/batch", vec![("authorization", &auth)], &body),
        now(),
    ) else {
        panic!("expected a store");
    };
    let response = reply.finish(false);
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("1"));
}

#[test]
fn routes_and_methods() {
    let get = |path| HttpRequest {
        method: "GET",
        path,
        query: None,
        headers: vec![],
        body: b"",
        client_ip: None,
        fresh_id: None,
        fresh_key: None,
        location: None,
        edge: None,
    };
    assert_eq!(send(&api(), &get("/health")).0.status, 200);
    assert_eq!(send(&api(), &get("/v1/batch")).0.status, 405);
    assert_eq!(send(&api(), &get("/nope")).0.status, 404);
}

#[test]
fn config_rejects_duplicate_keys_and_unsafe_names() {
    let workspace = |name: &str| WorkspaceConfig {
        name: name.into(),
        write_keys: vec!["k".into()],
        rate_limit: None,
        ..Default::default()
    };
    let two = Config {
        workspaces: vec![workspace("a"), workspace("b")],
        ..Config::default()
    };
    assert_eq!(
        Api::new(two).unwrap_err().to_string(),
        "workspaces: write key \"k\" belongs to two workspaces"
    );
    let unsafe_name = Config {
        workspaces: vec![workspace("../x")],
        ..Config::default()
    };
    assert!(Api::new(unsafe_name).is_err());
}

#[test]
fn the_identity_cookie_is_set_and_fills_missing_anonymous_ids() {
    let collector = api_with(|config| {
        config.collect.identity_cookie = Some(CookieConfig {
            domain: Some("shop.example".into()),
            ..CookieConfig::default()
        });
    });
    let auth = basic(KEY);
    let events = br#"{"batch":[{"type":"track","event":"A"},{"type":"track","event":"B","anonymousId":"own-id-123"}]}"#;
    // A first visit: no cookie; the platform's fresh id becomes the cookie and fills the events.
    let first = post("/v1/batch", vec![("authorization", &auth)], events);
    let Handled::Store(write, reply, _) = collector.handle(&first, now()) else {
        panic!("not stored");
    };
    let response = reply.finish(true);
    assert_eq!(response.status, 200);
    let cookie = response.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("braid_aid=0f8e7d6c-5b4a-4321-8fed-cba987654321;"),
        "{cookie}"
    );
    for part in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=31536000",
        "Domain=shop.example",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["anonymousId"], "0f8e7d6c-5b4a-4321-8fed-cba987654321");
    let lines: Vec<serde_json::Value> = write
        .accepted
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["anonymousId"],
        "0f8e7d6c-5b4a-4321-8fed-cba987654321"
    );
    assert_eq!(
        lines[1]["anonymousId"], "own-id-123",
        "the client's own id is kept"
    );
    // A returning visitor: the cookie's id, not a fresh one; a malformed cookie is ignored.
    let returning = post(
        "/v1/batch",
        vec![
            ("authorization", &auth),
            ("cookie", "other=1; braid_aid=visitor-0001"),
        ],
        events,
    );
    let Handled::Store(write, _, _) = collector.handle(&returning, now()) else {
        panic!("not stored");
    };
    assert!(String::from_utf8_lossy(&write.accepted).contains("visitor-0001"));
    let forged = post(
        "/v1/batch",
        vec![("authorization", &auth), ("cookie", "braid_aid=<script>")],
        events,
    );
    let Handled::Store(write, _, _) = collector.handle(&forged, now()) else {
        panic!("not stored");
    };
    assert!(String::from_utf8_lossy(&write.accepted).contains("0f8e7d6c"));
    // A first visit whose events carry the SDK's own id: the cookie takes that id.
    let own = br#"{"batch":[{"type":"track","event":"A","anonymousId":"sdk-id-42"},{"type":"track","event":"B"}]}"#;
    let first = post("/v1/batch", vec![("authorization", &auth)], own);
    let Handled::Store(write, reply, _) = collector.handle(&first, now()) else {
        panic!("not stored");
    };
    let response = reply.finish(true);
    assert!(
        response
            .header("set-cookie")
            .unwrap()
            .starts_with("braid_aid=sdk-id-42;")
    );
    assert_eq!(response.json_body()["anonymousId"], "sdk-id-42");
    assert_eq!(
        self::lines(&write.accepted)[1]["anonymousId"],
        "sdk-id-42",
        "an event without an id gets the cookie's"
    );
}

#[test]
fn a_stored_batch_with_an_ack_token_answers_with_a_receipt_cookie() {
    let auth = basic(KEY);
    let body = batch(&json!([{"type": "track", "event": "A", "anonymousId": "a"}]));
    let mut request = post("/v1/batch", vec![("authorization", &auth)], &body);
    request.query = Some("x=1&ack=0a1b2c3d-batch");
    let Handled::Store(_, reply, _) = api().handle(&request, now()) else {
        panic!("not stored");
    };
    let stored = reply.finish(true);
    assert_eq!(
        stored.header("set-cookie"),
        Some("braid_ack=0a1b2c3d-batch; Path=/; Max-Age=604800; SameSite=Lax")
    );
    // Not stored: no receipt, the client sends again.
    let Handled::Store(_, reply, _) = api().handle(&request, now()) else {
        panic!("not stored");
    };
    assert_eq!(reply.finish(false).header("set-cookie"), None);
    // A malformed token is ignored.
    request.query = Some("ack=<x>");
    let (response, _) = send(&api(), &request);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("set-cookie"), None);
}

fn personalizing() -> Api {
    api_with(|config| {
        config.collect.identity_cookie = Some(CookieConfig::default());
        config.activate.personalize = Some(PersonalizeConfig {
            key_secret: "kv-secret".into(),
            token_secret: Some("token-secret".into()),
            traits: vec![],
        });
    })
}

fn personalize_get<'a>(
    query: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
) -> HttpRequest<'a> {
    HttpRequest {
        method: "GET",
        path: "/v1/personalize",
        query,
        headers,
        body: b"",
        client_ip: None,
        fresh_id: None,
        fresh_key: None,
        location: None,
        edge: None,
    }
}

#[test]
fn personalization_looks_up_only_the_callers_own_id() {
    use braid_core::activate::personalize::{edge_key, sign_token};
    use braid_core::unify::Identifier;
    let collector = personalizing();
    // The credential cookie names the caller (as its SHA-256, the id collection stamps on its
    // events); the query string names someone else and is ignored.
    let request = personalize_get(
        Some("anonymousId=visitor-bbbb&userId=u-2&key=abc"),
        vec![(
            "cookie",
            "x=1; braid_aid=visitor-aaaa; braid_key=5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
        )],
    );
    let Handled::Personalize(lookup) = collector.handle(&request, now()) else {
        panic!("no lookup");
    };
    let caller = Identifier::parse(
        "browser:7804409a83ab88b63b7f035acdc5b152b0ba3a865ed1a3fcfcc0157feba7eaa4",
    )
    .unwrap();
    assert_eq!(lookup.identifier, caller);
    assert_eq!(lookup.key, edge_key(b"kv-secret", &caller));
    let response = lookup.finish(Some(r#"{"traits":{"plan":"pro"},"audiences":[]}"#.into()));
    assert_eq!(response.status, 200);
    assert_eq!(response.json_body()["traits"]["plan"], "pro");
    assert_eq!(response.header("cache-control"), Some("private, no-store"));

    // A token signed by the site's server: the logged-in user, whatever the cookie says.
    let user = Identifier::parse("user_id:u-1").unwrap();
    let token = sign_token(b"token-secret", &user, now() + time::Duration::minutes(5));
    let bearer = format!("Bearer {token}");
    let request = personalize_get(
        None,
        vec![
            ("authorization", &bearer),
            ("cookie", "braid_aid=visitor-aaaa"),
        ],
    );
    let Handled::Personalize(lookup) = collector.handle(&request, now()) else {
        panic!("no lookup");
    };
    assert_eq!(lookup.identifier, user);
    assert_eq!(
        lookup.finish(None).json_body(),
        json!({"traits": {}, "audiences": []}),
        "unknown: empty"
    );

    // A forged or expired token is refused; so is another site's secret.
    for token in [
        token.replace("u-1", "u-2"),
        sign_token(b"token-secret", &user, now() - time::Duration::seconds(1)),
        sign_token(b"other-secret", &user, now() + time::Duration::minutes(5)),
    ] {
        let bearer = format!("Bearer {token}");
        let (response, _) = send(
            &collector,
            &personalize_get(None, vec![("authorization", &bearer)]),
        );
        assert_eq!(response.status, 401, "{token}");
    }
    // No credential, no token: an empty profile, without a lookup. The anonymous id is no
    // credential: scripts read it and events carry it.
    for headers in [vec![], vec![("cookie", "braid_aid=visitor-aaaa")]] {
        let (response, _) = send(
            &collector,
            &personalize_get(Some("anonymousId=visitor-bbbb"), headers),
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.json_body(), json!({"traits": {}, "audiences": []}));
    }
    // Not configured: 404.
    let (response, _) = send(&api(), &personalize_get(None, vec![]));
    assert_eq!(response.status, 404);
}

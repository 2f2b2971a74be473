//! The routes beside collection: the edge → ingest hand-off, the profile API, the SDK's files,
//! and the one error body they all answer with.

use braid_core::activate::ProfileApiConfig;
use braid_core::collect::forward::{ForwardBatch, sign};
use braid_core::unify::Identifier;

use super::*;
use crate::ProfileQuery;

const SECRET: &str = "forward-secret";

fn forwarding() -> Api {
    api_with(|config| config.collect.forward_secret = Some(SECRET.into()))
}

/// A forward request signed `age` seconds before [`now`].
fn signed<'a>(body: &'a [u8], headers: &'a mut Vec<(String, String)>, age: i64) -> HttpRequest<'a> {
    let at = now().unix_timestamp() - age;
    headers.push(("x-braid-timestamp".into(), at.to_string()));
    headers.push((
        "x-braid-signature".into(),
        sign(SECRET.as_bytes(), at, body),
    ));
    post(
        "/v1/forward",
        headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        body,
    )
}

fn forward_body(workspace: &str, events: &str, failed: &str) -> Vec<u8> {
    ForwardBatch::write(workspace, now(), events.as_bytes(), failed.as_bytes())
}

#[test]
fn a_signed_forward_is_validated_again_and_stored() {
    let body = forward_body(
        "shop",
        "{\"type\":\"track\",\"event\":\"A\",\"userId\":\"u\",\"messageId\":\"m1\"}\n\
         {\"type\":\"track\",\"userId\":\"u\"}\n",
        r#"{"code":"malformed_json","payload":"{"}"#,
    );
    let mut headers = Vec::new();
    let Handled::Store(write, reply, counts) =
        forwarding().handle(&signed(&body, &mut headers, 10), now())
    else {
        panic!("expected a store");
    };
    assert_eq!(write.workspace, "shop");
    assert_eq!(write.received_at, now());
    assert_eq!((write.accepted_count, write.failed_count), (1, 2));
    assert_eq!(lines(&write.accepted)[0]["messageId"], "m1");
    let failed = lines(&write.failed);
    assert_eq!(failed[0]["code"], "missing_field", "validated again");
    assert_eq!(
        failed[1]["code"], "malformed_json",
        "the edge's record as it came"
    );
    assert_eq!((counts.received, counts.accepted, counts.failed), (3, 1, 2));
    let response = reply.finish(true);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json_body(),
        json!({"success": true, "accepted": 1, "failed": 2})
    );
}

#[test]
fn forwards_without_a_valid_signature_are_refused() {
    let body = forward_body("shop", "{\"type\":\"page\",\"userId\":\"u\"}\n", "");
    let check = |api: &Api, request: &HttpRequest<'_>| {
        let (response, write) = send(api, request);
        assert!(write.is_none(), "nothing stored");
        (response.status, response.json_body()["errors"][0].clone())
    };
    let (status, error) = check(&forwarding(), &post("/v1/forward", vec![], &body));
    assert_eq!(status, 401);
    assert_eq!(error["code"], "unauthorized");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("x-braid-timestamp"),
        "{error}"
    );
    let mut headers = Vec::new();
    let (status, error) = check(&forwarding(), &signed(&body, &mut headers, 301));
    assert_eq!(status, 401);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("over the limit of 300 s"),
        "{error}"
    );
    // Signed with another secret.
    let timestamp = now().unix_timestamp().to_string();
    let signature = sign(b"other", now().unix_timestamp(), &body);
    let request = post(
        "/v1/forward",
        vec![
            ("x-braid-timestamp", timestamp.as_str()),
            ("x-braid-signature", signature.as_str()),
        ],
        &body,
    );
    assert_eq!(check(&forwarding(), &request).0, 401);
    // No forward secret: the route is off.
    let mut headers = Vec::new();
    let (status, error) = check(&api(), &signed(&body, &mut headers, 0));
    assert_eq!(status, 404);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("forward_secret"),
        "{error}"
    );
}

#[test]
fn bad_forward_bodies_name_what_is_wrong() {
    let cases: [(Vec<u8>, u16, &str); 4] = [
        (b"{\"events\":[]}".to_vec(), 400, "bad_body"),
        (forward_body("../x", "", ""), 400, "bad_workspace"),
        // A valid name, signed, but not a workspace of this server.
        (forward_body("other", "", ""), 400, "unknown_workspace"),
        (
            forward_body(
                "shop",
                &"{\"type\":\"page\",\"userId\":\"u\"}\n".repeat(2_501),
                "",
            ),
            413,
            "too_many_events",
        ),
    ];
    for (body, status, code) in cases {
        let mut headers = Vec::new();
        let (response, write) = send(&forwarding(), &signed(&body, &mut headers, 0));
        assert!(write.is_none());
        assert_eq!(response.status, status, "{code}");
        let error = &response.json_body()["errors"][0];
        assert_eq!(error["code"], code);
        if code.ends_with("_workspace") {
            assert_eq!(error["field"], "workspace");
        }
    }
    let huge = vec![b' '; 1_024_001];
    let mut headers = Vec::new();
    let (response, _) = send(&forwarding(), &signed(&huge, &mut headers, 0));
    assert_eq!(response.status, 413);
    assert_eq!(response.json_body()["errors"][0]["limit"], 1_024_000);
}

fn profile_api() -> Api {
    api_with(|config| {
        config.workspaces.push(WorkspaceConfig {
            name: "other".into(),
            write_keys: vec![],
            rate_limit: None,
            ..Default::default()
        });
        config.activate.profile_api = Some(ProfileApiConfig {
            token: "profile-token".into(),
        });
    })
}

fn get<'a>(
    path: &'a str,
    query: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
) -> HttpRequest<'a> {
    HttpRequest {
        method: "GET",
        query,
        headers,
        ..post(path, vec![], b"")
    }
}

#[test]
fn the_profile_api_needs_its_token_and_reads_what_the_path_names() {
    const AUTH: (&str, &str) = ("authorization", "Bearer profile-token");
    let api = profile_api();
    let read = |request: &HttpRequest<'_>| match api.handle(request, now()) {
        Handled::Profile(read) => Ok(read),
        Handled::Respond(response, _) => Err(response),
        other => panic!("{other:?}"),
    };
    let asked = read(&get(
        "/v1/profiles/email:Jane%40Shop.example",
        None,
        vec![AUTH],
    ))
    .unwrap();
    assert_eq!(
        asked.identifier,
        Identifier::parse("email:Jane@Shop.example").unwrap()
    );
    assert_eq!(asked.workspace, "shop", "the first workspace");
    assert_eq!(asked.query, ProfileQuery::Profile);
    let page = read(&get(
        "/v1/profiles/user_id:u/events",
        Some("limit=5&cursor=1f&workspace=other"),
        vec![AUTH],
    ))
    .unwrap();
    assert_eq!(page.workspace, "other");
    assert_eq!(
        page.query,
        ProfileQuery::Events {
            after: Some(0x1f),
            limit: 5
        }
    );
    let refused = |request: HttpRequest<'_>| {
        let response = read(&request).unwrap_err();
        (
            response.status,
            response.json_body()["errors"][0]["code"].clone(),
        )
    };
    assert_eq!(
        refused(get("/v1/profiles/user_id:u", None, vec![])),
        (401, json!("unauthorized"))
    );
    assert_eq!(
        refused(get(
            "/v1/profiles/user_id:u",
            None,
            vec![("authorization", "Bearer profile-tokeN")]
        )),
        (401, json!("unauthorized"))
    );
    assert_eq!(
        refused(get("/v1/profiles/nocolon", None, vec![AUTH])),
        (400, json!("bad_identifier"))
    );
    assert_eq!(
        refused(get(
            "/v1/profiles/user_id:u",
            Some("workspace=Bad"),
            vec![AUTH]
        )),
        (400, json!("bad_workspace"))
    );
    assert_eq!(
        refused(get(
            "/v1/profiles/user_id:u",
            Some("workspace=nowhere"),
            vec![AUTH]
        )),
        (400, json!("unknown_workspace"))
    );
    let response = read(&get(
        "/v1/profiles/user_id:u/events",
        Some("limit=1001"),
        vec![AUTH],
    ))
    .unwrap_err();
    assert_eq!(response.status, 400);
    let error = &response.json_body()["errors"][0];
    assert_eq!(
        (error["field"].clone(), error["limit"].clone()),
        (json!("limit"), json!(1000))
    );
    assert_eq!(
        refused(get(
            "/v1/profiles/user_id:u/events",
            Some("cursor=zz"),
            vec![AUTH]
        )),
        (400, json!("bad_parameter"))
    );
    // Off without a token.
    let response = send(
        &super::api(),
        &get("/v1/profiles/user_id:u", None, vec![AUTH]),
    )
    .0;
    assert_eq!(response.status, 404);
}

#[test]
fn profile_reads_finish_as_the_store_answers() {
    let api = profile_api();
    let request = get(
        "/v1/profiles/user_id:u/events",
        None,
        vec![("authorization", "Bearer profile-token")],
    );
    let read = || match api.handle(&request, now()) {
        Handled::Profile(read) => read,
        other => panic!("{other:?}"),
    };
    let page = read().finish(Ok::<_, String>(ProfileAnswer::Events {
        events: vec![json!({"messageId": "m"})],
        next: Some(255),
    }));
    assert_eq!(page.status, 200);
    assert_eq!(
        page.json_body(),
        json!({"events": [{"messageId": "m"}], "nextCursor": "ff"})
    );
    let unknown = read().finish(Ok::<_, String>(ProfileAnswer::Unknown));
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json_body()["errors"][0]["message"],
        "no profile has user_id:u"
    );
    let failed = read().finish(Err("disk on fire"));
    assert_eq!(failed.status, 503);
    assert_eq!(failed.header("retry-after"), Some("1"));
    assert_eq!(failed.json_body()["errors"][0]["code"], "store_failed");
}

#[test]
fn sdk_files_are_read_by_the_platform_under_the_configured_path() {
    let api = api_with(|config| config.collect.sdk.path = "/assets/braid".into());
    let Handled::Sdk(read) = api.handle(&get("/assets/braid/braid.js", None, vec![]), now()) else {
        panic!("not an SDK read");
    };
    assert_eq!(read.name(), Some("braid.js"));
    let response = read.finish(Some(b"export {}".to_vec()));
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("cache-control"),
        Some("public, max-age=300")
    );
    let Handled::Sdk(read) = api.handle(&get("/assets/braid/../secret.js", None, vec![]), now())
    else {
        panic!("not an SDK read");
    };
    assert_eq!(read.name(), None, "never read");
    assert_eq!(read.finish(None).status, 404);
    assert_eq!(
        send(&api, &get("/sdk/braid.js", None, vec![])).0.status,
        404
    );
}

/// Every route's errors have one shape: `success: false` and `errors`, each entry with the same
/// five keys.
#[test]
fn every_error_has_the_one_body_shape() {
    let auth = basic(KEY);
    let forwarding = forwarding();
    let responses = [
        send(&api(), &get("/nope", None, vec![])).0,
        send(&api(), &get("/v1/batch", None, vec![])).0,
        send(
            &api(),
            &post("/v1/batch", vec![("authorization", "Basic eDo=")], b"{}"),
        )
        .0,
        send(
            &api(),
            &post("/v1/batch", vec![("authorization", &auth)], b"{"),
        )
        .0,
        send(&forwarding, &post("/v1/forward", vec![], b"{}")).0,
        send(&profile_api(), &get("/v1/profiles/user_id:u", None, vec![])).0,
        send(&api(), &get("/v1/personalize", None, vec![])).0,
    ];
    for response in responses {
        let body = response.json_body();
        assert!(response.status >= 400, "{body}");
        assert_eq!(body["success"], false, "{body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(!errors.is_empty(), "{body}");
        for error in errors {
            let keys: Vec<&String> = error.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                ["code", "field", "index", "limit", "message"],
                "{body}"
            );
            assert!(
                error["code"].is_string() && error["message"].is_string(),
                "{body}"
            );
        }
    }
}

#[test]
fn the_catalogue_api_needs_its_token_and_reads_what_the_path_names() {
    use crate::CatalogueQuery;
    use braid_core::catalogue::CatalogueApiConfig;
    const AUTH: (&str, &str) = ("authorization", "Bearer admin-token");
    let api = api_with(|config| {
        config.catalogue.api = Some(CatalogueApiConfig {
            token: "admin-token".into(),
        });
    });
    let read = |request: &HttpRequest<'_>| match api.handle(request, now()) {
        Handled::Catalogue(read) => Ok(read),
        Handled::Respond(response, _) => Err(response),
        other => panic!("{other:?}"),
    };
    let summary = read(&get("/v1/catalogue", None, vec![AUTH])).unwrap();
    assert_eq!(summary.query, CatalogueQuery::Summary);
    assert_eq!(summary.workspace, "shop");
    let events = read(&get(
        "/v1/catalogue/events",
        Some("type=track&name=Order%20Completed&path=properties.email"),
        vec![AUTH],
    ))
    .unwrap();
    assert_eq!(
        events.query,
        CatalogueQuery::Events {
            kind: "track".into(),
            name: "Order Completed".into(),
            path: Some("properties.email".into())
        }
    );
    let refused = |request: HttpRequest<'_>| {
        let response = read(&request).unwrap_err();
        (
            response.status,
            response.json_body()["errors"][0]["code"].clone(),
        )
    };
    assert_eq!(
        refused(get("/v1/catalogue", None, vec![])),
        (401, json!("unauthorized"))
    );
    // A write key is no admin token.
    assert_eq!(
        refused(get(
            "/v1/catalogue",
            None,
            vec![("authorization", "Bearer wk_test")]
        )),
        (401, json!("unauthorized"))
    );
    assert_eq!(
        refused(get("/v1/catalogue/events", Some("name=x"), vec![AUTH])),
        (400, json!("bad_parameter"))
    );
    assert_eq!(
        refused(get("/v1/catalogue/nope", None, vec![AUTH])),
        (404, json!("not_found"))
    );
    assert_eq!(
        refused(get("/v1/catalogue", Some("workspace=ghost"), vec![AUTH])),
        (400, json!("unknown_workspace"))
    );
    let off = api_with(|_| {});
    match off.handle(&get("/v1/catalogue", None, vec![AUTH]), now()) {
        Handled::Respond(response, _) => assert_eq!(response.status, 404),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replay_needs_the_catalogue_token_and_a_filter_that_can_select_something() {
    use braid_core::catalogue::CatalogueApiConfig;
    use braid_core::catalogue::replay::ReplayFilter;
    const AUTH: (&str, &str) = ("authorization", "Bearer admin-token");
    let api = api_with(|config| {
        config.catalogue.api = Some(CatalogueApiConfig {
            token: "admin-token".into(),
        });
    });
    let replay = |headers, body: &[u8]| match api
        .handle(&post("/v1/catalogue/replay", headers, body), now())
    {
        Handled::Replay(replay) => Ok(replay),
        Handled::Respond(response, _) => {
            Err((response.status, response.json_body()["errors"][0].clone()))
        }
        other => panic!("{other:?}"),
    };
    let all = replay(vec![AUTH], b"").unwrap();
    assert_eq!((all.workspace.as_str(), all.dry_run), ("shop", false));
    assert_eq!(all.filter, ReplayFilter::default());
    let some = replay(
        vec![AUTH],
        br#"{"from": "2024-05-01T10:00:00Z", "to": "2024-05-02T00:00:00+02:00", "reasons": ["unplanned_event"], "dryRun": true}"#,
    )
    .unwrap();
    assert!(some.dry_run);
    assert_eq!(some.filter.reasons, ["unplanned_event"]);
    assert_eq!(
        some.filter.to,
        Some(braid_core::timestamp::parse("2024-05-01T22:00:00Z").unwrap())
    );
    let refused = |body: &[u8]| {
        let (status, error) = replay(vec![AUTH], body).unwrap_err();
        (status, error["code"].clone(), error["field"].clone())
    };
    assert_eq!(
        refused(br#"{"reasons": ["missing_field"]}"#),
        (400, json!("bad_parameter"), json!("reasons"))
    );
    assert_eq!(
        refused(br#"{"from": "yesterday"}"#),
        (400, json!("bad_parameter"), json!("from"))
    );
    assert_eq!(
        refused(br#"{"from": "2024-05-02T00:00:00Z", "to": "2024-05-01T00:00:00Z"}"#),
        (400, json!("bad_parameter"), json!("from"))
    );
    assert_eq!(
        refused(br#"{"dry_run": true}"#).0,
        400,
        "unknown fields are refused"
    );
    assert_eq!(
        refused(&vec![b' '; 5000]),
        (400, json!("bad_parameter"), json!("body"))
    );
    assert_eq!(replay(vec![], b"{}").unwrap_err().0, 401);
    assert_eq!(
        replay(vec![("authorization", "Bearer wk_test")], b"{}")
            .unwrap_err()
            .0,
        401,
        "a write key replays nothing"
    );
    match api.handle(&get("/v1/catalogue/replay", None, vec![AUTH]), now()) {
        Handled::Respond(response, _) => assert_eq!(response.status, 404),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_catalogue_answer_shows_the_map_with_personal_data_masked() {
    use crate::{CatalogueQuery, CatalogueRead};
    use braid_core::catalogue::map::DataMap;
    let line = r#"{"type":"track","event":"Order Completed","messageId":"m1","userId":"u","receivedAt":"2024-05-01T10:00:00.000Z","properties":{"email":"jane@shop.example","total":5}}"#;
    let mut map = DataMap::default();
    map.observe(&braid_core::Event::from_lake_line(line).unwrap());
    let answer = |query| {
        CatalogueRead {
            workspace: "shop".into(),
            query,
        }
        .finish(Ok::<_, String>(Some(map.clone())))
    };
    let response = answer(CatalogueQuery::Summary);
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .iter()
            .any(|(n, v)| *n == "cache-control" && v.contains("no-store"))
    );
    let body = response.json_body();
    assert_eq!(body["events"][0]["properties"], 2);
    assert_eq!(body["events"][0]["count"], 1);
    let response = answer(CatalogueQuery::Events {
        kind: "track".into(),
        name: "Order Completed".into(),
        path: Some("properties.email".into()),
    });
    let body = response.json_body();
    let property = &body["events"][0]["properties"][0];
    assert_eq!(property["examples"], json!(["j***@shop.example"]));
    assert_eq!(property["pii"]["class"], "yellow");
    assert!(!String::from_utf8_lossy(&response.body).contains("jane@"));
    let missing = answer(CatalogueQuery::Events {
        kind: "page".into(),
        name: "Home".into(),
        path: None,
    });
    assert_eq!(missing.status, 404);
    let failed = CatalogueRead {
        workspace: "shop".into(),
        query: CatalogueQuery::Summary,
    }
    .finish(Err::<Option<DataMap>, _>("disk gone"));
    assert_eq!(failed.status, 503);
}

fn audience_api() -> Api {
    api_with(|config| {
        config.activate.profile_api = Some(ProfileApiConfig {
            token: "profile-token".into(),
        });
        config.segment.audiences.insert(
            "buyers".into(),
            braid_core::segment::AudienceConfig {
                name: String::new(),
                description: String::new(),
                when: serde_json::json!({"performed": "Order Completed", "window": "30d"}),
            },
        );
    })
}

#[test]
fn audience_routes_need_the_profile_token_and_check_what_they_are_given() {
    const AUTH: (&str, &str) = ("authorization", "Bearer profile-token");
    let api = audience_api();
    let handle = |request: &HttpRequest<'_>| api.handle(request, now());
    let status = |request: &HttpRequest<'_>| match handle(request) {
        Handled::Respond(response, _) => (
            response.status,
            response.json_body()["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        other => (200, format!("{other:?}")),
    };
    // Explain: the audience must exist.
    let explain = get(
        "/v1/profiles/user_id:u/audiences/buyers/explain",
        None,
        vec![AUTH],
    );
    match handle(&explain) {
        Handled::Profile(read) => assert_eq!(
            read.query,
            ProfileQuery::Explain {
                audience: "buyers".into()
            }
        ),
        other => panic!("{other:?}"),
    }
    let (code, message) = status(&get(
        "/v1/profiles/user_id:u/audiences/nope/explain",
        None,
        vec![AUTH],
    ));
    assert_eq!(
        (code, message.as_str()),
        (404, "no audience has the key \"nope\"")
    );
    // Preview: the token, a readable tree, a sample within bounds, a saved audience to compare.
    let body =
        br#"{"when": {"performed": "Order Completed", "window": "30d"}, "audience": "buyers"}"#;
    match handle(&post("/v1/audiences/preview", vec![AUTH], body)) {
        Handled::Audiences(read) => {
            let crate::AudienceQuery::Preview {
                compare, sample, ..
            } = read.query
            else {
                panic!("{:?}", read.query);
            };
            assert_eq!((compare.as_deref(), sample), (Some("buyers"), 10));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(status(&post("/v1/audiences/preview", vec![], body)).0, 401);
    let cases: [(&[u8], u16, &str); 5] = [
        (br#"{"when": {"or": []}}"#, 422, "when.or: an empty list"),
        (
            br#"{"when": {"performed": "X", "window": "7d"}}"#,
            422,
            "not counted by any audience",
        ),
        (
            br#"{"when": {"member": "x"}}"#,
            422,
            "\"x\", which is not an audience",
        ),
        (
            br#"{"when": {"member": "buyers"}, "sample": 101}"#,
            400,
            "\"sample\"",
        ),
        (
            br#"{"when": {"member": "buyers"}, "audience": "zz"}"#,
            404,
            "\"zz\"",
        ),
    ];
    for (body, code, part) in cases {
        let (got, message) = status(&post("/v1/audiences/preview", vec![AUTH], body));
        assert_eq!(got, code, "{message}");
        assert!(message.contains(part), "{message}");
    }
    // The change log: a page after a number.
    match handle(&get(
        "/v1/audiences/changes",
        Some("after=7&limit=3"),
        vec![AUTH],
    )) {
        Handled::Audiences(read) => assert_eq!(
            read.query,
            crate::AudienceQuery::Changes { after: 7, limit: 3 }
        ),
        other => panic!("{other:?}"),
    }
    let (code, message) = status(&get("/v1/audiences/changes", Some("limit=0"), vec![AUTH]));
    assert_eq!(code, 400, "{message}");
    assert_eq!(
        status(&get("/v1/audiences/preview", None, vec![AUTH])).0,
        405
    );
    assert_eq!(status(&get("/v1/audiences/other", None, vec![AUTH])).0, 404);
}

#[test]
fn the_destinations_status_needs_the_catalogue_token() {
    use braid_core::catalogue::CatalogueApiConfig;
    let off = send(&api(), &get("/v1/destinations", None, vec![])).0;
    assert_eq!(off.status, 404);
    assert!(
        off.json_body()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("catalogue.api.token")
    );
    let api = api_with(|config| {
        config.catalogue.api = Some(CatalogueApiConfig {
            token: "admin-token".into(),
        });
    });
    assert_eq!(
        send(&api, &get("/v1/destinations", None, vec![])).0.status,
        401
    );
    let wrong = vec![("authorization", "Bearer nope")];
    assert_eq!(
        send(&api, &get("/v1/destinations", None, wrong)).0.status,
        401
    );
    let right = vec![("authorization", "Bearer admin-token")];
    let (answer, _) = send(&api, &get("/v1/destinations", None, right));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json_body(), json!({"destinations": []}));
    let post = send(&api, &post("/v1/destinations", vec![], b"")).0;
    assert_eq!(post.status, 405);
}

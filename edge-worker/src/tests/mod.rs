//! The handlers, route by route, as plain requests and responses.

mod collect;
mod routes;

use std::io::Write as _;

use base64::Engine as _;
use braid_core::Config;
use braid_core::activate::PersonalizeConfig;
use braid_core::catalogue::lake::LakeWrite;
use braid_core::collect::{CookieConfig, RateLimit, WorkspaceConfig};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

use crate::{Api, Handled, HttpRequest, HttpResponse, ProfileAnswer};

const KEY: &str = "wk_test";

/// The routes of one workspace, "shop", with the write key [`KEY`], and what `change` adds.
fn api_with(change: impl FnOnce(&mut Config)) -> Api {
    let mut config = Config {
        workspaces: vec![WorkspaceConfig {
            name: "shop".into(),
            write_keys: vec![KEY.into()],
            rate_limit: None,
            ..Default::default()
        }],
        ..Config::default()
    };
    change(&mut config);
    Api::new(config).unwrap()
}

fn api() -> Api {
    api_with(|_| {})
}

fn now() -> time::OffsetDateTime {
    braid_core::timestamp::parse("2024-05-01T10:00:00Z").unwrap()
}

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

fn post<'a>(path: &'a str, headers: Vec<(&'a str, &'a str)>, body: &'a [u8]) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path,
        query: None,
        headers,
        body,
        client_ip: Some("203.0.113.9".parse().unwrap()),
        fresh_id: Some("0f8e7d6c-5b4a-4321-8fed-cba987654321"),
        fresh_key: Some("5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"),
        location: None,
        edge: None,
    }
}

/// Handles a request and, when it asks to store, pretends the store succeeded; reads find
/// nothing.
fn send(api: &Api, request: &HttpRequest<'_>) -> (HttpResponse, Option<LakeWrite>) {
    match api.handle(request, now()) {
        Handled::Respond(response, _) => (response, None),
        Handled::Store(write, reply, _) => (reply.finish(true), Some(write)),
        Handled::Personalize(lookup) => (lookup.finish(None), None),
        Handled::Profile(read) => (read.finish(Ok::<_, String>(ProfileAnswer::Unknown)), None),
        Handled::Sdk(read) => (read.finish(None), None),
        Handled::Catalogue(read) => (read.finish(Ok::<_, String>(None)), None),
        Handled::Audiences(read) => (read.finish(Ok::<_, String>(Value::Null)), None),
        Handled::Replay(replay) => (replay.finish(Ok::<_, String>(Value::Null)), None),
        Handled::Destinations(read) => (read.finish(&[]), None),
    }
}

fn lines(ndjson: &[u8]) -> Vec<Value> {
    ndjson
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn batch(events: &Value) -> Vec<u8> {
    json!({"batch": events}).to_string().into_bytes()
}

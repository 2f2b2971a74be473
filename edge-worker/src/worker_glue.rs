//! The Cloudflare Worker: the same handlers as `braid serve`, in workerd. Accepted events are
//! handed off before the client gets its 2xx: to the `EVENTS` queue when the Worker has one (its
//! consumer, here too, forwards them), else forwarded, signed, to Braid's ingest
//! (`docs/forward.md`), whose 2xx it waits for.
//!
//! Bindings (`wrangler.toml`): `INGEST_URL` and optionally `BRAID_COOKIE_DOMAIN` and
//! `BRAID_SDK_PATH` (vars), the `SDK` static assets (the browser SDK's files, served under
//! `BRAID_SDK_PATH`, default `/sdk`), and the secrets `BRAID_FORWARD_SECRET` and
//! `BRAID_WORKSPACES` (JSON:
//! `[{"name": "shop", "write_keys": ["..."]}]`). Every collection answer sets the first-party
//! identity cookie (`braid_aid`, `HttpOnly; Secure; SameSite=Lax`, one year), whose id fills
//! `anonymousId` in events that have none and comes back in the body.

use braid_core::forward::{ForwardBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use time::OffsetDateTime;
use worker::{
    Context, Env, Fetch, Headers, MessageBatch, MessageExt as _, Method, Request, RequestInit,
    Response, Result, event, js_sys,
};

use crate::{
    Collector, CookieConfig, EdgeConfig, Handled, HttpRequest, HttpResponse, LakeWrite,
    PersonalizeConfig, WorkspaceConfig,
};

#[event(fetch)]
async fn fetch(mut request: Request, env: Env, _context: Context) -> Result<Response> {
    let now = now();
    let collector = collector(&env)?;
    let method = request.method().to_string();
    let path = request.path();
    // The browser SDK, first-party: its files from the static assets binding.
    let sdk_path = env
        .var(SDK_PATH_VAR)
        .map_or_else(|_| "/sdk".to_owned(), |v| v.to_string());
    if let Some(name) = path
        .strip_prefix(sdk_path.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
    {
        return to_worker(sdk_file(&env, &method, name).await);
    }
    // From the raw URL: `Request::url` would link a whole URL parser (IDNA tables) for this.
    let raw_url = request.inner().url();
    let query = raw_url.split_once('?').map(|(_, rest)| {
        rest.split_once('#')
            .map_or(rest, |(query, _)| query)
            .to_owned()
    });
    let headers: Vec<(String, String)> = request.headers().entries().collect();
    let body = request.bytes().await.unwrap_or_default();
    let client_ip = request
        .headers()
        .get("cf-connecting-ip")?
        .and_then(|ip| ip.parse().ok());
    let fresh_id = random_uuid();
    let (location, edge) = cf_context(&request);
    let http = HttpRequest {
        method: &method,
        path: &path,
        query: query.as_deref(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        body: &body,
        client_ip,
        fresh_id: fresh_id.as_deref(),
        location: location.as_deref(),
        edge: edge.as_deref(),
    };
    let response = match collector.handle(&http, now) {
        Handled::Respond(response, _) => response,
        Handled::Store(write, reply) => {
            let stored = hand_off(&env, &write, now).await;
            if let Err(error) = &stored {
                worker::console_error!("braid: the batch was not handed off: {error}");
            }
            reply.finish(stored.is_ok())
        }
        Handled::Personalize(lookup) => {
            let value = match env.kv(PROFILES_KV) {
                Ok(kv) => kv.get(&lookup.key).text().await.unwrap_or_else(|error| {
                    worker::console_error!("braid: personalization read failed: {error}");
                    None
                }),
                Err(_) => None,
            };
            lookup.finish(value)
        }
    };
    to_worker(response)
}

/// Personalization: the KV namespace the unifier fills (`braid profiles export --edge`), the secret of
/// its keys, and the secret of the tokens a site's server signs.
const PROFILES_KV: &str = "PROFILES";
const EDGE_KEY_SECRET: &str = "BRAID_EDGE_KEY_SECRET";
const TOKEN_SECRET: &str = "BRAID_TOKEN_SECRET";

thread_local! {
    /// The endpoint built from the bindings, kept for the isolate's next requests (building it
    /// parses the workspaces and sets up the enrichment caches): rebuilt when a binding changes.
    static COLLECTOR: std::cell::RefCell<Option<(String, std::rc::Rc<Collector>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The endpoint for these bindings.
fn collector(env: &Env) -> Result<std::rc::Rc<Collector>> {
    let workspaces = env.secret("BRAID_WORKSPACES")?.to_string();
    let domain = env.var("BRAID_COOKIE_DOMAIN").ok().map(|d| d.to_string());
    let key_secret = env.secret(EDGE_KEY_SECRET).ok().map(|s| s.to_string());
    let token_secret = env.secret(TOKEN_SECRET).ok().map(|s| s.to_string());
    let fingerprint = [
        workspaces.as_str(),
        domain.as_deref().unwrap_or("\u{0}"),
        key_secret.as_deref().unwrap_or("\u{0}"),
        token_secret.as_deref().unwrap_or("\u{0}"),
    ]
    .join("\u{1}");
    if let Some(cached) = COLLECTOR.with_borrow(|cached| {
        cached
            .as_ref()
            .filter(|(seen, _)| *seen == fingerprint)
            .map(|(_, collector)| std::rc::Rc::clone(collector))
    }) {
        return Ok(cached);
    }
    let workspaces: Vec<WorkspaceConfig> = serde_json::from_str(&workspaces)
        .map_err(|e| worker::Error::RustError(format!("BRAID_WORKSPACES: {e}")))?;
    // The first-party identity cookie, on this zone (or BRAID_COOKIE_DOMAIN and its subdomains).
    let cookie = CookieConfig {
        domain,
        ..CookieConfig::default()
    };
    // Personalization reads, when the store's key secret is set.
    let personalize = key_secret.map(|key_secret| PersonalizeConfig {
        key_secret,
        token_secret,
        traits: Vec::new(),
    });
    let collector = std::rc::Rc::new(
        Collector::new(EdgeConfig {
            workspaces,
            identity_cookie: Some(cookie),
            personalize,
            ..EdgeConfig::default()
        })
        .map_err(worker::Error::RustError)?,
    );
    COLLECTOR.set(Some((fingerprint, std::rc::Rc::clone(&collector))));
    Ok(collector)
}

/// The SDK files' binding (`[assets]` in wrangler.toml: `sdk-js/dist`) and the variable with
/// their path prefix (default `/sdk`).
const SDK_ASSETS: &str = "SDK";
const SDK_PATH_VAR: &str = "BRAID_SDK_PATH";

/// An SDK file from the assets binding, with Braid's content type and cache headers.
async fn sdk_file(env: &Env, method: &str, name: &str) -> HttpResponse {
    let mut bytes = None;
    if crate::sdk_content_type(name).is_some()
        && let Ok(assets) = env.assets(SDK_ASSETS)
        && let Ok(mut response) = assets
            .fetch(format!("https://assets.invalid/{name}"), None)
            .await
        && response.status_code() == 200
    {
        bytes = response.bytes().await.ok();
    }
    crate::sdk_response(method, name, bytes)
}

/// Geo (`context.location`) and network (`context.edge`) from the request's `cf` object, as
/// compact JSON. Read as plain JSON, so that a field Cloudflare leaves out is simply absent.
fn cf_context(request: &Request) -> (Option<String>, Option<String>) {
    let cf = js_sys::Reflect::get(request.inner(), &"cf".into())
        .ok()
        .filter(wasm_bindgen::JsValue::is_object)
        .and_then(|cf| js_sys::JSON::stringify(&cf).ok())
        .and_then(|text| text.as_string())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
    let Some(cf) = cf else {
        return (None, None);
    };
    let pick = |fields: &[(&str, &str)]| {
        let mut out = serde_json::Map::new();
        for (from, to) in fields {
            let value = match cf.get(*from) {
                // Coordinates come as strings: numbers in the lake.
                Some(serde_json::Value::String(text))
                    if matches!(*to, "latitude" | "longitude") =>
                {
                    text.parse::<f64>().ok().map(serde_json::Value::from)
                }
                Some(serde_json::Value::Null) | None => None,
                Some(serde_json::Value::String(text)) if text.is_empty() => None,
                Some(value) => Some(value.clone()),
            };
            if let Some(value) = value {
                out.insert((*to).to_owned(), value);
            }
        }
        (!out.is_empty()).then(|| serde_json::Value::Object(out).to_string())
    };
    let location = pick(&[
        ("country", "country"),
        ("region", "region"),
        ("regionCode", "regionCode"),
        ("city", "city"),
        ("postalCode", "postalCode"),
        ("timezone", "timezone"),
        ("latitude", "latitude"),
        ("longitude", "longitude"),
        ("continent", "continent"),
    ]);
    let edge = pick(&[
        ("colo", "colo"),
        ("asn", "asn"),
        ("asOrganization", "asOrganization"),
    ]);
    (location, edge)
}

/// A random UUID from the runtime's `crypto.randomUUID()`.
fn random_uuid() -> Option<String> {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
    let function = js_sys::Reflect::get(&crypto, &"randomUUID".into()).ok()?;
    js_sys::Function::from(function)
        .call0(&crypto)
        .ok()?
        .as_string()
}

/// The request time, from the runtime's clock (workerd advances it between I/O).
fn now() -> OffsetDateTime {
    let millis = js_sys::Date::now();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "milliseconds since 1970 fit in i64"
    )]
    braid_core::timestamp::from_unix_millis(millis as i64)
}

/// Forwards one request's events to ingest, signed; `Ok` once ingest answered 2xx.
/// Makes an accepted batch safe before the client hears 2xx: sent to the `EVENTS` queue when
/// the Worker has one (the consumer below forwards it), else — or when it is larger than a
/// queue message may be — forwarded to ingest directly, whose 2xx it waits for.
async fn hand_off(env: &Env, write: &LakeWrite, now: OffsetDateTime) -> Result<()> {
    let body = ForwardBatch::write(
        &write.workspace,
        write.received_at,
        &write.accepted,
        &write.failed,
    );
    if let Ok(queue) = env.queue(EVENTS_QUEUE)
        && body.len() <= QUEUE_MESSAGE_BYTES
    {
        let text = String::from_utf8(body)
            .map_err(|_| worker::Error::RustError("the batch is not UTF-8".into()))?;
        return queue.send(text).await;
    }
    forward(env, &body, now).await
}

/// The queue of accepted batches (`[[queues.producers]]`/`[[queues.consumers]]` in
/// wrangler.toml), and the largest message it takes (Cloudflare allows 128 KB).
const EVENTS_QUEUE: &str = "EVENTS";
const QUEUE_MESSAGE_BYTES: usize = 120 * 1024;

/// The queue consumer: forwards each batch to ingest, signed now; acknowledges it on ingest's
/// 2xx, else asks the queue to deliver it again later (after the configured retries it goes to
/// the dead-letter queue, where nothing is lost).
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _context: Context) -> Result<()> {
    for message in batch.messages()? {
        match forward(&env, message.body().as_bytes(), now()).await {
            Ok(()) => message.ack(),
            Err(error) => {
                worker::console_error!("braid: ingest did not take a queued batch: {error}");
                message.retry();
            }
        }
    }
    Ok(())
}

/// POSTs a forward body to ingest, signed (`docs/forward.md`); `Ok` only on its 2xx.
async fn forward(env: &Env, body: &[u8], now: OffsetDateTime) -> Result<()> {
    let url = env.var("INGEST_URL")?.to_string();
    let secret = env.secret("BRAID_FORWARD_SECRET")?.to_string();
    let timestamp = now.unix_timestamp();
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set(TIMESTAMP_HEADER, &timestamp.to_string())?;
    headers.set(SIGNATURE_HEADER, &sign(secret.as_bytes(), timestamp, body))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body).into()));
    let response = Fetch::Request(Request::new_with_init(&url, &init)?)
        .send()
        .await?;
    let status = response.status_code();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(worker::Error::RustError(format!(
            "ingest answered {status}"
        )))
    }
}

fn to_worker(response: HttpResponse) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &response.headers {
        headers.append(name, value)?;
    }
    Ok(Response::from_bytes(response.body)?
        .with_status(response.status)
        .with_headers(headers))
}

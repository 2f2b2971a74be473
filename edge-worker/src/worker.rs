//! The Cloudflare Worker: the same handlers as `braid serve`, in workerd. Accepted events are
//! handed off before the client gets its 2xx: to the `EVENTS` queue when the Worker has one (its
//! consumer, here too, forwards them), else forwarded, signed, to Braid's ingest
//! (`docs/forward.md`), whose 2xx it waits for.
//!
//! Configuration: the document of `braid.toml` in the `BRAID_CONFIG` secret (TOML or JSON; its
//! `[collect] upstream` is the ingest to forward to), and the secrets of
//! `braid_core::config::SECRETS` (`BRAID_FORWARD_SECRET`, ...) beside it. Bindings
//! (`wrangler.toml`): the `EVENTS` queue, the `PROFILES` KV namespace and the `SDK` static
//! assets (the browser SDK's files, served under `[collect.sdk] path`).

use braid_core::Config;
use braid_core::catalogue::lake::LakeWrite;
use braid_core::collect::forward::{ForwardBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use braid_core::config::{DOCUMENT_VARIABLE, SECRETS};
use time::OffsetDateTime;
use worker::{
    Context, Env, Fetch, Headers, MessageBatch, MessageExt as _, Method, Request, RequestInit,
    Response, Result, event, js_sys,
};

use crate::{Api, ApiError, Handled, HttpRequest, HttpResponse};

#[event(fetch)]
async fn fetch(mut request: Request, env: Env, _context: Context) -> Result<Response> {
    let now = now();
    let api = api(&env)?;
    let method = request.method().to_string();
    let path = request.path();
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
    let fresh_key = random_uuid();
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
        fresh_key: fresh_key.as_deref(),
        location: location.as_deref(),
        edge: edge.as_deref(),
    };
    let response = match api.handle(&http, now) {
        Handled::Respond(response, _) => response,
        Handled::Store(write, reply, _) => {
            let stored = hand_off(&env, api.config(), &write, now).await;
            if let Err(error) = &stored {
                worker::console_error!("braid: the batch was not handed off: {error}");
            }
            reply.finish(stored.is_ok())
        }
        Handled::Personalize(lookup) => match env.kv(PROFILES_KV) {
            Ok(kv) => match kv.get(&lookup.key).text().await {
                Ok(value) => lookup.finish(value),
                Err(error) => {
                    worker::console_error!("braid: personalization read failed: {error}");
                    lookup.fail("the edge store could not be read")
                }
            },
            Err(_) => lookup.finish(None),
        },
        Handled::Sdk(read) => {
            let bytes = match read.name() {
                Some(name) => sdk_file(&env, name).await,
                None => None,
            };
            read.finish(bytes)
        }
        // The profile store is not at the edge.
        Handled::Profile(_) | Handled::Audiences(_) => ApiError::Off {
            what: "the profile API at the edge",
            how: "read profiles where the profile store is (braid serve)",
        }
        .to_response(),
        Handled::Catalogue(_) => ApiError::Off {
            what: "the catalogue API at the edge",
            how: "read the data map where the profile store is (braid serve, braid catalogue)",
        }
        .to_response(),
        Handled::Destinations(_) => ApiError::Off {
            what: "the destinations' status at the edge",
            how: "ask where destinations are delivered (braid serve)",
        }
        .to_response(),
        Handled::Replay(_) => ApiError::Off {
            what: "replay at the edge",
            how: "replay where the lake is (braid serve)",
        }
        .to_response(),
    };
    to_worker(response)
}

/// Personalization: the KV namespace the unifier fills (`braid profiles export --edge`).
const PROFILES_KV: &str = "PROFILES";

thread_local! {
    /// The routes built from the configuration, kept for the isolate's next requests (building
    /// them parses the document and sets up the enrichment caches): rebuilt when a binding
    /// changes.
    static API: std::cell::RefCell<Option<(String, std::rc::Rc<Api>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The routes for these bindings: `BRAID_CONFIG` and the secrets beside it.
fn api(env: &Env) -> Result<std::rc::Rc<Api>> {
    let binding = |name: &str| {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
    };
    let document = binding(DOCUMENT_VARIABLE);
    let secrets: Vec<Option<String>> = SECRETS.iter().map(|(name, _)| binding(name)).collect();
    let mut fingerprint = document.clone().unwrap_or_default();
    for secret in &secrets {
        fingerprint.push('\u{1}');
        fingerprint.push_str(secret.as_deref().unwrap_or("\u{0}"));
    }
    if let Some(cached) = API.with_borrow(|cached| {
        cached
            .as_ref()
            .filter(|(seen, _)| *seen == fingerprint)
            .map(|(_, api)| std::rc::Rc::clone(api))
    }) {
        return Ok(cached);
    }
    let secret = |name: &str| {
        SECRETS
            .iter()
            .zip(&secrets)
            .find(|((known, _), _)| *known == name)
            .and_then(|(_, value)| value.clone())
    };
    let config = Config::load(document.as_deref(), secret)
        .map_err(|e| worker::Error::RustError(format!("{DOCUMENT_VARIABLE}: {e}")))?;
    let api = std::rc::Rc::new(
        Api::new(config)
            .map_err(|e| worker::Error::RustError(format!("{DOCUMENT_VARIABLE}: {e}")))?,
    );
    API.set(Some((fingerprint, std::rc::Rc::clone(&api))));
    Ok(api)
}

/// The SDK files' binding (`[assets]` in wrangler.toml: `sdk-js/dist`).
const SDK_ASSETS: &str = "SDK";

/// An SDK file from the assets binding.
async fn sdk_file(env: &Env, name: &str) -> Option<Vec<u8>> {
    let assets = env.assets(SDK_ASSETS).ok()?;
    let mut response = assets
        .fetch(format!("https://assets.invalid/{name}"), None)
        .await
        .ok()?;
    if response.status_code() != 200 {
        return None;
    }
    response.bytes().await.ok()
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
    braid_core::timestamp::from_unix_millis(millis as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Makes an accepted batch safe before the client hears 2xx: sent to the `EVENTS` queue when
/// the Worker has one (the consumer below forwards it), else — or when it is larger than a
/// queue message may be — forwarded to ingest directly, whose 2xx it waits for.
async fn hand_off(
    env: &Env,
    config: &Config,
    write: &LakeWrite,
    now: OffsetDateTime,
) -> Result<()> {
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
    forward(config, &body, now).await
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
    let api = api(&env)?;
    for message in batch.messages()? {
        match forward(api.config(), message.body().as_bytes(), now()).await {
            Ok(()) => message.ack(),
            Err(error) => {
                worker::console_error!("braid: ingest did not take a queued batch: {error}");
                message.retry();
            }
        }
    }
    Ok(())
}

/// POSTs a forward body to ingest (`[collect] upstream`), signed with the forward secret
/// (`docs/forward.md`); `Ok` only on its 2xx.
async fn forward(config: &Config, body: &[u8], now: OffsetDateTime) -> Result<()> {
    let missing =
        |what: &str| worker::Error::RustError(format!("{DOCUMENT_VARIABLE} has no {what}"));
    let url = config
        .collect
        .upstream
        .as_deref()
        .ok_or_else(|| missing("[collect] upstream"))?;
    let secret = config
        .collect
        .forward_secret
        .as_deref()
        .ok_or_else(|| missing("[collect] forward_secret (or BRAID_FORWARD_SECRET)"))?;
    let timestamp = now.unix_timestamp();
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set(TIMESTAMP_HEADER, &timestamp.to_string())?;
    headers.set(SIGNATURE_HEADER, &sign(secret.as_bytes(), timestamp, body))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body).into()));
    let response = Fetch::Request(Request::new_with_init(url, &init)?)
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

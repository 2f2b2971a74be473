//! The Lambda functions' handlers, and what the binaries share: their configuration (the
//! `BRAID_CONFIG` document, its secrets, and the bucket's environment), logging, and Lambda
//! diagnostics for errors. The binaries (`src/bin/*`) only build the store and call
//! `run(service_fn(...))` with these.

use braid_core::config::DOCUMENT_VARIABLE;
use braid_core::{Config, ConfigError};
use braid_edge::{Api, HttpRequest, HttpResponse};
use lambda_http::{Body, Request, Response};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use time::OffsetDateTime;

use crate::lake::compact::{CompactError, CompactSettings, CompactSummary, compact_closed_hours};
use crate::lake::feed::{StepError, Unify, UnifyError, UnifySummary, unify_objects};
use crate::lake::store::{ObjectStore, S3Store, s3_client};
use crate::profiles::kv::{KvError, S3Home, SlateOptions};

/// The configuration of a function: the `BRAID_CONFIG` document and the secrets beside it in
/// the environment (`braid_core::config::SECRETS`).
///
/// # Errors
///
/// When the document does not parse or check ([`ConfigError`]).
pub fn config_from_env() -> Result<Config, ConfigError> {
    let document = std::env::var(DOCUMENT_VARIABLE).ok();
    Config::load(document.as_deref(), |name| std::env::var(name).ok())
}

/// What a function's environment lacks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A variable it needs is not set.
    #[error("{name} is not set")]
    Missing {
        /// The variable.
        name: &'static str,
    },
}

impl EnvError {
    /// Never: a deployment must set it.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// The bucket, as Lambda's environment names it: `BRAID_BUCKET`, the credentials Lambda sets
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`), and
/// `BRAID_S3_ENDPOINT` for an S3-compatible server (path-style addressing).
#[derive(Clone, Debug)]
pub struct Bucket {
    name: String,
    region: String,
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
    endpoint: Option<String>,
}

impl Bucket {
    /// The bucket of the environment.
    ///
    /// # Errors
    ///
    /// [`EnvError::Missing`] naming what is missing.
    pub fn from_env() -> Result<Bucket, EnvError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| EnvError::Missing { name });
        Ok(Bucket {
            name: var("BRAID_BUCKET")?,
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
            access_key: var("AWS_ACCESS_KEY_ID")?,
            secret_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: std::env::var("AWS_SESSION_TOKEN").ok(),
            endpoint: std::env::var("BRAID_S3_ENDPOINT").ok(),
        })
    }

    /// The lake in the bucket.
    pub fn lake(&self) -> S3Store {
        let credentials = aws_sdk_s3::config::Credentials::new(
            &self.access_key,
            &self.secret_key,
            self.session_token.clone(),
            None,
            "environment",
        );
        S3Store::new(
            s3_client(&self.region, credentials, self.endpoint.as_deref()),
            &self.name,
        )
    }

    /// The profile stores in the bucket (`profiles/workspace=W/`).
    ///
    /// # Errors
    ///
    /// When the object store cannot be configured.
    pub fn profile_home(&self, options: SlateOptions) -> Result<S3Home, KvError> {
        S3Home::new(
            &self.name,
            &self.region,
            (
                &self.access_key,
                &self.secret_key,
                self.session_token.as_deref(),
            ),
            self.endpoint.as_deref(),
            options,
        )
    }
}

/// The ingest function: a function URL (or API Gateway) request in, [`crate::ingest::handle`]
/// on it (`POST /v1/forward` from the edge; collection routes too when the document names
/// workspaces), an HTTP response out.
///
/// # Errors
///
/// Only when the response cannot be built (never in practice): every failure of the request is
/// an HTTP answer (401, 400, 413, 503 with `Retry-After`).
pub async fn handle_ingest<S: ObjectStore>(
    api: &Api,
    store: &S,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, lambda_http::Error> {
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let http = HttpRequest {
        method: request.method().as_str(),
        path: request.uri().path(),
        query: request.uri().query(),
        headers,
        body: request.body().as_ref(),
        client_ip: source_ip(request),
        fresh_id: None,
        fresh_key: None,
        location: None,
        edge: None,
    };
    to_lambda(crate::ingest::handle(api, store, &http, now).await)
}

/// The client's address as the function URL (or API Gateway) saw the connection.
fn source_ip(request: &Request) -> Option<std::net::IpAddr> {
    use lambda_http::RequestExt as _;
    use lambda_http::request::RequestContext;
    let ip = match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref(),
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.as_deref(),
        _ => None,
    };
    ip?.parse().ok()
}

fn to_lambda(response: HttpResponse) -> Result<Response<Body>, lambda_http::Error> {
    let mut builder = Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(*name, value.as_str());
    }
    Ok(builder.body(Body::from(response.body))?)
}

/// The unify function: an S3 notification (directly or through SQS) in, the objects it names
/// applied by `unify` (identity resolution and profiles, in the bucket's profile stores).
///
/// # Errors
///
/// [`UnifyFailure::Notification`] (not retriable) for a payload that is neither; store failures
/// (retriable), which make Lambda or SQS deliver the notification again.
pub async fn handle_unify<S: ObjectStore, U: Unify>(
    store: &S,
    unify: &U,
    event: LambdaEvent<Value>,
    now: OffsetDateTime,
) -> Result<UnifySummary, UnifyFailure<U::Error>> {
    if is_sweep(&event.payload) {
        // Boxed: the sweep's future is deep, and one of two arms of this one.
        let until = braid_core::timestamp::unix_millis(now) - SWEEP_BEHIND_MILLIS;
        let timers = Box::pin(unify.sweep(until))
            .await
            .map_err(|e| UnifyFailure::Unify(UnifyError::Step(e)))?;
        let summary = UnifySummary {
            timers,
            ..UnifySummary::default()
        };
        tracing::info!(request = event.context.request_id, ?summary, "sweep");
        return Ok(summary);
    }
    let keys = keys_from_notification(&event.payload)?;
    let summary = unify_objects(store, unify, &keys, now).await?;
    tracing::info!(request = event.context.request_id, ?summary, "unify");
    Ok(summary)
}

/// How far behind the clock the schedule's sweep fires timers. The function does not see the
/// objects whose notifications are still queued: an event received before a timer's time is
/// applied first, at its own time (as a rebuild orders them), when its notification is less
/// than this late — the usual case; a longer backlog can still see a timer fire first.
const SWEEP_BEHIND_MILLIS: i64 = 2 * 60 * 1000;

/// Whether the unify function's event is the schedule's (`{"braid": "sweep"}`, the template's
/// input): fire the timers due.
fn is_sweep(payload: &Value) -> bool {
    payload.get("braid").and_then(Value::as_str) == Some("sweep")
}

/// Why the unify function failed.
#[derive(Debug, thiserror::Error)]
pub enum UnifyFailure<E: StepError> {
    /// The event is not a notification of objects.
    #[error(transparent)]
    Notification(#[from] NotificationError),
    /// Applying the objects failed.
    #[error(transparent)]
    Unify(#[from] UnifyError<E>),
}

impl<E: StepError> From<UnifyFailure<E>> for Diagnostic {
    fn from(error: UnifyFailure<E>) -> Diagnostic {
        let kind = match &error {
            UnifyFailure::Notification(_) => "BadNotification",
            UnifyFailure::Unify(error) => error.kind(),
        };
        Diagnostic {
            error_type: kind.to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// The compact function: any event (the schedule's) compacts the closed hours.
///
/// # Errors
///
/// Store failures (retriable) and unreadable objects or manifests.
pub async fn handle_compact<S: ObjectStore>(
    store: &S,
    settings: &CompactSettings,
    event: LambdaEvent<Value>,
    now: OffsetDateTime,
) -> Result<CompactSummary, CompactError> {
    let source = event
        .payload
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or("direct");
    let summary = compact_closed_hours(store, settings, now).await?;
    tracing::info!(
        request = event.context.request_id,
        source,
        ?summary,
        "compact"
    );
    Ok(summary)
}

impl From<CompactError> for Diagnostic {
    fn from(error: CompactError) -> Diagnostic {
        Diagnostic {
            error_type: error.kind().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// An event that is not a notification of objects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    /// Neither an S3 event, an SQS event of S3 events, nor a test event.
    #[error("not an S3 or SQS notification: {detail}")]
    NotANotification {
        /// What is wrong.
        detail: String,
    },
}

impl NotificationError {
    /// Never: the same event fails the same way.
    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// The object keys named by a notification: an S3 event (`Records[].s3.object.key`), or an
/// SQS event whose messages' bodies are S3 events (S3 → SQS), or a test event (`s3:TestEvent`,
/// no records). Keys arrive URL-encoded and are decoded here.
///
/// # Errors
///
/// [`NotificationError`] when the payload is neither.
pub fn keys_from_notification(payload: &Value) -> Result<Vec<String>, NotificationError> {
    let bad = |detail: String| NotificationError::NotANotification { detail };
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the event has no \"Records\" array".to_owned()))?;
    let mut keys = Vec::new();
    for record in records {
        if let Some(encoded) = record.pointer("/s3/object/key").and_then(Value::as_str) {
            keys.push(
                url_decode(encoded).ok_or_else(|| bad(format!("undecodable key {encoded:?}")))?,
            );
        } else if let Some(body) = record.get("body").and_then(Value::as_str) {
            let inner: Value = serde_json::from_str(body)
                .map_err(|e| bad(format!("an SQS message body is not JSON: {e}")))?;
            keys.extend(keys_from_notification(&inner)?);
        } else {
            return Err(bad("a record is neither an S3 nor an SQS record".to_owned()));
        }
    }
    Ok(keys)
}

/// Decodes a key as S3 notifications encode it (form encoding: `+` for space, `%XX` escapes; a
/// plus in a key arrives as `%2B`); `None` for a `%` without two hex digits, which S3 never
/// sends.
fn url_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let escapes_are_whole = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_are_whole {
        return None;
    }
    braid_edge::percent_decode(&encoded.replace('+', " ")).map(std::borrow::Cow::into_owned)
}

/// Logs to stdout, which Lambda sends to `CloudWatch`; level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .init();
}

#[cfg(test)]
mod tests {
    use braid_core::collect::forward::{ForwardBatch, sign};
    use lambda_runtime::Context;
    use serde_json::json;

    use super::*;
    use crate::lake::object::gzip;
    use crate::lake::store::LocalStore;

    fn now() -> OffsetDateTime {
        braid_core::timestamp::parse("2024-05-01T12:00:00Z").unwrap()
    }

    /// A function URL request as Lambda delivers it (payload format 2.0).
    fn function_url_event(body: &[u8], timestamp: &str, signature: &str) -> String {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/v1/forward", "rawQueryString": "",
            "headers": {"content-type": "application/json", "host": "abc.lambda-url.us-east-1.on.aws",
                        "x-braid-timestamp": timestamp, "x-braid-signature": signature},
            "requestContext": {"accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
                "domainPrefix": "abc", "http": {"method": "POST", "path": "/v1/forward", "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.1", "userAgent": "braid-edge"}, "requestId": "r1", "routeKey": "$default",
                "stage": "$default", "time": "01/May/2024:12:00:00 +0000", "timeEpoch": 1_714_564_800_000_i64},
            "body": String::from_utf8_lossy(body), "isBase64Encoded": false
        })
        .to_string()
    }

    #[tokio::test]
    async fn ingest_takes_a_function_url_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        // It takes batches for the workspaces its document lists (no write keys needed).
        let mut config = Config::parse("[[workspaces]]\nname = \"shop\"\n").unwrap();
        config.collect.forward_secret = Some("s".into());
        let api = Api::new(config).unwrap();
        let body = ForwardBatch::write(
            "shop",
            now(),
            br#"{"type":"track","event":"E","userId":"u"}"#,
            b"",
        );
        let ts = now().unix_timestamp().to_string();
        let good = sign(b"s", now().unix_timestamp(), &body);
        let request =
            lambda_http::request::from_str(&function_url_event(&body, &ts, &good)).unwrap();
        let response = handle_ingest(&api, &store, &request, now()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(store.list("raw/").await.unwrap().len(), 1);
        let forged =
            lambda_http::request::from_str(&function_url_event(&body, &ts, "v1=00")).unwrap();
        let response = handle_ingest(&api, &store, &forged, now()).await.unwrap();
        assert_eq!(response.status(), 401);
    }

    /// With workspaces in its configuration, the ingest function collects clients' events
    /// directly, enriched with the address the function URL saw.
    #[tokio::test]
    async fn ingest_collects_when_the_document_names_workspaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let config =
            Config::parse("[[workspaces]]\nname = \"shop\"\nwrite_keys = [\"wk\"]\n").unwrap();
        let api = Api::new(config).unwrap();
        let body = br#"{"batch": [{"type": "track", "event": "E", "userId": "u"}]}"#;
        let mut event: Value = serde_json::from_str(&function_url_event(body, "", "")).unwrap();
        event["rawPath"] = json!("/v1/batch");
        event["requestContext"]["http"]["path"] = json!("/v1/batch");
        event["headers"]["authorization"] = json!("Basic d2s6");
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = handle_ingest(&api, &store, &request, now()).await.unwrap();
        assert_eq!(response.status(), 200);
        let objects = store.list("raw/workspace=shop/").await.unwrap();
        assert_eq!(objects.len(), 1);
        let content = crate::lake::object::gunzip(
            &store.get(&objects[0].key).await.unwrap().unwrap(),
            1 << 20,
        )
        .unwrap();
        let line: Value = serde_json::from_slice(content.trim_ascii_end()).unwrap();
        assert_eq!(
            line["context"]["ip"], "198.51.100.0",
            "the source address, anonymised"
        );
        // No workspaces: no collection.
        let api = Api::new(Config::default()).unwrap();
        let response = handle_ingest(&api, &store, &request, now()).await.unwrap();
        assert_eq!(response.status(), 401);
    }

    #[tokio::test]
    async fn unify_and_compact_take_lambda_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let key = "raw/workspace=shop/date=2024-05-01/hour=10/a.ndjson.gz";
        store
            .put(key, gzip(b"{\"messageId\":\"1\"}\n"))
            .await
            .unwrap();
        store
            .put(
                "raw/workspace=shop/date=2024-05-01/hour=10/b.ndjson.gz",
                gzip(b"{\"messageId\":\"2\"}\n"),
            )
            .await
            .unwrap();
        let s3_event = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "lake"}, "object": {"key": key.replace('=', "%3D"), "size": 40}}}]});
        let unify = crate::lake::feed::CountEvents;
        let summary = handle_unify(
            &store,
            &unify,
            LambdaEvent::new(s3_event, Context::default()),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(summary.applied, 1);
        let error = handle_unify(
            &store,
            &unify,
            LambdaEvent::new(json!({}), Context::default()),
            now(),
        )
        .await
        .unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "BadNotification");
        let scheduled =
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        let summary = handle_compact(
            &store,
            &CompactSettings::default(),
            LambdaEvent::new(scheduled, Context::default()),
            now(),
        )
        .await
        .unwrap();
        assert_eq!((summary.merged, summary.written), (2, 1));
    }

    #[test]
    fn reads_s3_and_sqs_wrapped_notifications() {
        let s3 = json!({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"},
            "object": {"key": "raw/workspace%3Dshop/date%3D2024-05-01/hour%3D10/a+b.ndjson.gz"}}}]});
        assert_eq!(
            keys_from_notification(&s3).unwrap(),
            ["raw/workspace=shop/date=2024-05-01/hour=10/a b.ndjson.gz"]
        );
        let sqs = json!({"Records": [{"eventSource": "aws:sqs", "body": s3.to_string()},
            {"eventSource": "aws:sqs", "body": json!({"Event": "s3:TestEvent"}).to_string()}]});
        assert_eq!(keys_from_notification(&sqs).unwrap().len(), 1);
        let error = keys_from_notification(&json!({"detail": {}})).unwrap_err();
        assert_eq!(
            Diagnostic::from(UnifyFailure::<std::convert::Infallible>::from(error)).error_type,
            "BadNotification"
        );
        assert!(
            keys_from_notification(&json!({"Records": [{"s3": {"object": {"key": "%zz"}}}]}))
                .is_err()
        );
    }
}

//! The Lambda functions' handlers, over any store, and what the binaries share: logging and
//! Lambda diagnostics for handler errors. The binaries (`src/bin/*`) only build the S3 store
//! and call `run(service_fn(...))` with these.

use braid_core::forward::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use lambda_http::{Body, Request, Response};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use time::OffsetDateTime;

use crate::compact::{CompactSettings, CompactSummary, compact_closed_hours};
use crate::ingest::{ForwardRequest, IngestSettings, ingest};
use crate::profiles::StoreSettings;
use crate::store::ObjectStore;
use crate::unify::{HandlerError, Unify, UnifySummary, keys_from_notification, unify_objects};

/// The ingest function: a function URL (or API Gateway) request in, an HTTP response out.
///
/// # Errors
///
/// Only when the response cannot be built (never in practice): every failure of the batch is
/// an HTTP answer (401, 400, 413, 503 with `Retry-After`).
pub async fn handle_ingest<S: ObjectStore>(
    store: &S,
    settings: &IngestSettings,
    request: &Request,
    now: OffsetDateTime,
) -> Result<Response<Body>, lambda_http::Error> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let forward = ForwardRequest {
        timestamp: header(TIMESTAMP_HEADER),
        signature: header(SIGNATURE_HEADER),
        body: request.body().as_ref(),
    };
    let reply = ingest(store, settings, forward, now).await;
    let mut response = Response::builder()
        .status(reply.status)
        .header("content-type", "application/json");
    if let Some(seconds) = reply.retry_after {
        response = response.header("retry-after", seconds.to_string());
    }
    Ok(response.body(Body::from(reply.body))?)
}

/// The unify function: an S3 notification (directly or through SQS) in, the objects it names
/// applied by `unify` (identity resolution and profiles, in the bucket's profile stores).
///
/// # Errors
///
/// `BadNotification` (not retriable) for a payload that is neither; store failures
/// (retriable), which make Lambda or SQS deliver the notification again.
pub async fn handle_unify<S: ObjectStore, U: Unify>(
    store: &S,
    unify: &U,
    event: LambdaEvent<Value>,
    now: OffsetDateTime,
) -> Result<UnifySummary, HandlerError> {
    let keys = keys_from_notification(&event.payload)?;
    let summary = unify_objects(store, unify, &keys, now).await?;
    tracing::info!(request = event.context.request_id, ?summary, "unify");
    Ok(summary)
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
) -> Result<CompactSummary, HandlerError> {
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

/// The unify function's rules: `BRAID_UNIFY_CONFIG`, JSON with the sections of `braid.toml`
/// that unification reads, `{"identity": {...}, "profiles": {...}, "profile_store": {...}}`
/// (each optional; the defaults of `braid serve` otherwise).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnifyConfig {
    /// `[identity]`.
    pub identity: braid_core::identity::IdentityRules,
    /// `[profiles]`.
    pub profiles: braid_core::identity::ProfileConfig,
    /// `[profile_store]`.
    pub profile_store: StoreSettings,
}

impl UnifyConfig {
    /// Reads `text` (the variable's value).
    ///
    /// # Errors
    ///
    /// Names what is wrong: not JSON, an unknown field, a bad blocked-value pattern.
    pub fn parse(text: &str) -> Result<UnifyConfig, String> {
        let config: UnifyConfig =
            serde_json::from_str(text).map_err(|e| format!("BRAID_UNIFY_CONFIG: {e}"))?;
        let identity = config
            .identity
            .compiled()
            .map_err(|e| format!("BRAID_UNIFY_CONFIG: {e}"))?;
        Ok(UnifyConfig { identity, ..config })
    }

    /// From `BRAID_UNIFY_CONFIG`, or the defaults when it is not set.
    ///
    /// # Errors
    ///
    /// As [`UnifyConfig::parse`].
    pub fn from_env() -> Result<UnifyConfig, String> {
        match std::env::var("BRAID_UNIFY_CONFIG") {
            Ok(text) if !text.trim().is_empty() => UnifyConfig::parse(&text),
            _ => Ok(UnifyConfig::default()),
        }
    }
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

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type.to_owned(),
            error_message: error.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use braid_core::Limits;
    use braid_core::forward::{ForwardBatch, sign};
    use lambda_runtime::Context;
    use serde_json::json;

    use super::*;
    use crate::object::gzip;
    use crate::store::LocalStore;

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
        let settings = IngestSettings {
            secret: b"s".to_vec(),
            limits: Limits::default(),
        };
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
        let response = handle_ingest(&store, &settings, &request, now())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(store.list("raw/").await.unwrap().len(), 1);
        let forged =
            lambda_http::request::from_str(&function_url_event(&body, &ts, "v1=00")).unwrap();
        let response = handle_ingest(&store, &settings, &forged, now())
            .await
            .unwrap();
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
        let unify = crate::unify::CountEvents;
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
    fn the_unify_configuration_is_checked() {
        let config = UnifyConfig::parse(
            r#"{"identity": {"types": {"email": {"limit": 2}}}, "profile_store": {"cache_profiles": 10}}"#,
        )
        .unwrap();
        assert_eq!(
            config
                .identity
                .rule(&braid_core::identity::IdType::Email)
                .limit,
            2
        );
        assert_eq!(config.profile_store.cache_profiles, 10);
        let error = UnifyConfig::parse(r#"{"identity": {"typo": 1}}"#).unwrap_err();
        assert!(
            error.starts_with("BRAID_UNIFY_CONFIG: unknown field `typo`"),
            "{error}"
        );
        let error = UnifyConfig::parse(r#"{"identity": {"types": {"email": {"blocked": ["("]}}}}"#)
            .unwrap_err();
        assert!(error.contains("identity.types.email.blocked"), "{error}");
    }
}

//! The collection routes (`POST /v1/batch` and the single-event routes): the write-key check,
//! decoding, the rate limit, the core pipeline, and the answer to give once the platform has
//! stored the events.

use braid_core::EventType;
use braid_core::catalogue::lake::{FailedEvent, LakeWrite};
use braid_core::catalogue::validate::ValidationError;
use braid_core::collect::{ParsedBody, RequestInfo, Trust, browser_id, process_batch};
use braid_core::config::shorten_key;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api::Api;
use crate::auth::basic_user;
use crate::cookie;
use crate::cors;
use crate::decode::{check_content_type, decode_body};
use crate::error::{ApiError, validation_entry};
use crate::handled::{Counts, Handled, Reply};
use crate::http::{HttpRequest, HttpResponse};

impl Api {
    #[expect(
        clippy::too_many_lines,
        reason = "the request pipeline reads best in one place, step by step"
    )]
    pub(crate) fn collect(
        &self,
        request: &HttpRequest<'_>,
        kind: Option<EventType>,
        now: OffsetDateTime,
    ) -> Handled {
        let bytes = request.body.len();
        let limits = &self.config.catalogue.limits;
        if bytes > limits.max_batch_bytes {
            // A platform stops reading one byte past the limit: the length the client declared
            // says how large the body is.
            let declared = request
                .header("content-length")
                .and_then(|length| length.trim().parse::<usize>().ok());
            let error = ValidationError::BatchTooLarge {
                size: declared.map_or(bytes, |declared| declared.max(bytes)),
                limit: limits.max_batch_bytes,
            };
            return self.refuse(request, &error.into(), bytes);
        }
        if let Err(error) = check_content_type(request.header("content-type")) {
            return self.refuse(request, &error, bytes);
        }
        let header_key = basic_user(request.header("authorization"));
        let header_workspace = header_key
            .as_deref()
            .and_then(|key| self.keys.get(key).map(|(index, _)| *index));
        let body = match decode_body(
            request.body,
            request.header("content-encoding"),
            limits.max_batch_bytes,
        ) {
            Ok(body) => body,
            Err(error) => return self.refuse_and_keep(request, error, header_workspace, now),
        };
        let parsed = match ParsedBody::parse(&body, kind, limits) {
            Ok(parsed) => parsed,
            Err(error) => {
                let keep = if error.is_size_limit() && body.len() > limits.max_batch_bytes {
                    None
                } else {
                    header_workspace
                };
                return self.refuse_and_keep(request, error.into(), keep, now);
            }
        };
        let key = header_key.as_deref().or_else(|| parsed.write_key());
        let Some(key) = key else {
            return self.refuse(request, &ApiError::MissingWriteKey, bytes);
        };
        let Some(&(index, server)) = self.keys.get(key) else {
            return self.refuse(
                request,
                &ApiError::UnknownWriteKey {
                    key: shorten_key(key),
                },
                bytes,
            );
        };
        if let Err(error) = self.take_rate(index, parsed.len(), now) {
            return self.refuse(request, &error, bytes);
        }
        let workspace = self.workspace_name(index);
        let cookie_id = self.cookie_id(request, &parsed);
        let credential = self.credential(request);
        let browser = credential.as_ref().map(|(value, _)| browser_id(value));
        let trust = if server {
            Trust::Server
        } else {
            Trust::Client {
                secret: self.config.identity_secret(index).map(str::as_bytes),
                browser: browser.as_deref(),
            }
        };
        let info = RequestInfo {
            workspace,
            received_at: now,
            client_ip: request.client_ip,
            user_agent: request.header("user-agent"),
            anonymous_id: cookie_id.as_deref(),
            location: request.location,
            edge: request.edge,
            trust,
        };
        let received = parsed.len();
        let outcome = process_batch(parsed, &info, &self.config.catalogue);
        let mut failed = Vec::new();
        for failure in &outcome.failed {
            failure.write_json(workspace, now, &mut failed);
        }
        let counts = Counts {
            received,
            accepted: outcome.accepted_count,
            failed: outcome.failed.len(),
            bytes,
        };
        let errors: Vec<Value> = outcome
            .failed
            .iter()
            .map(|f| validation_entry(&f.error))
            .collect();
        let status = if outcome.accepted_count == 0 {
            400
        } else {
            200
        };
        let mut answer = json!({
            "success": status == 200,
            "accepted": outcome.accepted_count,
            "failed": outcome.failed.len(),
            "errors": errors,
        });
        if let (Some(id), Value::Object(fields)) = (&cookie_id, &mut answer) {
            fields.insert("anonymousId".into(), Value::from(id.as_str()));
        }
        let mut response = HttpResponse::json(status, &answer);
        let identity_cookie = self.config.collect.identity_cookie.as_ref();
        if let (Some(id), Some(config)) = (&cookie_id, identity_cookie) {
            response
                .headers
                .push(("set-cookie", cookie::set_id(config, &config.name, id)));
            if let Some((value, true)) = &credential {
                response.headers.push((
                    "set-cookie",
                    cookie::set_id(config, &config.credential, value),
                ));
            }
        }
        if let Some(token) = request.query_param("ack").filter(|t| cookie::is_id(t))
            && status == 200
        {
            // The browser SDK's receipt for a batch whose answer its page may never see (sent
            // as the page unloads): the next page reads it and does not send the batch again.
            // Set only when the events are stored (a failed store answers 503 without it).
            let domain = identity_cookie.and_then(|c| c.domain.as_deref());
            response
                .headers
                .push(("set-cookie", cookie::set_receipt(token, domain)));
        }
        cors::add_headers(request, &self.config.collect.cors, &mut response);
        let write = LakeWrite {
            workspace: workspace.to_owned(),
            received_at: now,
            accepted: outcome.accepted,
            failed,
            accepted_count: counts.accepted,
            failed_count: counts.failed,
        };
        Handled::Store(write, Reply { response }, counts)
    }

    /// The visitor's id for the identity cookie: the cookie's, else (a first visit) the id the
    /// client already gives its events, so that the SDK's id and the cookie agree from the
    /// start, else a fresh one.
    fn cookie_id(&self, request: &HttpRequest<'_>, parsed: &ParsedBody<'_>) -> Option<String> {
        let config = self.config.collect.identity_cookie.as_ref()?;
        cookie::sent(request, &config.name)
            .map(str::to_owned)
            .or_else(|| {
                parsed
                    .first_anonymous_id()
                    .filter(|id| cookie::is_id(id))
                    .map(std::borrow::Cow::into_owned)
            })
            .or_else(|| {
                request
                    .fresh_id
                    .filter(|id| cookie::is_id(id))
                    .map(str::to_owned)
            })
    }

    /// The browser's credential cookie (`docs/trust.md`): the one it sent, else a fresh random
    /// value to set (`true`). None without an identity cookie.
    fn credential(&self, request: &HttpRequest<'_>) -> Option<(String, bool)> {
        let config = self.config.collect.identity_cookie.as_ref()?;
        if let Some(sent) = cookie::sent(request, &config.credential) {
            return Some((sent.to_owned(), false));
        }
        request
            .fresh_key
            .filter(|key| cookie::is_id(key))
            .map(|key| (key.to_owned(), true))
    }

    /// Refuses a whole body; when the sender is known (a valid key in `Authorization`), the
    /// body is also kept in `failed/` so that it can be inspected and replayed.
    fn refuse_and_keep(
        &self,
        request: &HttpRequest<'_>,
        error: ApiError,
        workspace: Option<usize>,
        now: OffsetDateTime,
    ) -> Handled {
        let bytes = request.body.len();
        let Some(index) = workspace else {
            return self.refuse(request, &error, bytes);
        };
        let mut response = error.to_response();
        cors::add_headers(request, &self.config.collect.cors, &mut response);
        let validation = match error {
            ApiError::Invalid(validation) => validation,
            other => ValidationError::MalformedBody {
                detail: format!(": {other}"),
            },
        };
        let payload = if let Ok(text) = std::str::from_utf8(request.body) {
            text.to_owned()
        } else {
            use base64::Engine as _;
            format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(request.body)
            )
        };
        let workspace = self.workspace_name(index);
        let mut failed = Vec::new();
        FailedEvent {
            error: validation,
            payload,
            event: None,
        }
        .write_json(workspace, now, &mut failed);
        let write = LakeWrite {
            workspace: workspace.to_owned(),
            received_at: now,
            accepted: Vec::new(),
            failed,
            accepted_count: 0,
            failed_count: 1,
        };
        let counts = Counts {
            received: 0,
            accepted: 0,
            failed: 1,
            bytes,
        };
        Handled::Store(write, Reply { response }, counts)
    }
}

//! Audiences over the profile API's token (`[activate.profile_api]`), for `braid serve`, which
//! holds the profiles:
//!
//! - `GET /v1/profiles/{type}:{value}/audiences/{key}/explain`: why the profile is in or out of
//!   an audience, condition by condition (`crate::profiles` reads the path);
//! - `POST /v1/audiences/preview` with `{"when": <condition tree>, "audience": "key",
//!   "sample": 10}`: how many current profiles meet a condition tree and a sample of them, before
//!   it is saved; with `audience`, who would enter and leave that saved audience;
//! - `GET /v1/audiences/changes?after=N&limit=M`: a page of the change log (audience entries and
//!   exits, computed traits' new values), in order.
//!
//! `?workspace=W` names another workspace than the first configured one. Condition trees are
//! checked here, with errors naming the place in the tree; the platform answers with
//! [`AudienceRead::finish`](crate::AudienceRead::finish).

use serde::Deserialize;
use serde_json::Value;

use crate::api::Api;
use crate::auth::check_bearer;
use crate::error::ApiError;
use crate::handled::{AudienceQuery, AudienceRead, Handled};
use crate::http::HttpRequest;

/// The largest preview body.
const MAX_PREVIEW_BODY: usize = 65_536;
/// The largest sample a preview returns, and the one it returns unless asked.
const MAX_SAMPLE: usize = 100;
const DEFAULT_SAMPLE: usize = 10;
/// The most change log entries a page may ask for, and how many it has unless it asks.
const MAX_CHANGES: usize = 1_000;
const DEFAULT_CHANGES: usize = 100;

/// A preview's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    when: Value,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    sample: Option<usize>,
}

impl Api {
    pub(crate) fn audiences(&self, request: &HttpRequest<'_>, rest: &str) -> Handled {
        match self.audience_read(request, rest) {
            Ok(read) => Handled::Audiences(read),
            Err(error) => self.refuse(request, &error, 0),
        }
    }

    fn audience_read(
        &self,
        request: &HttpRequest<'_>,
        rest: &str,
    ) -> Result<AudienceRead, ApiError> {
        let Some(api) = &self.config.activate.profile_api else {
            return Err(ApiError::Off {
                what: "the profile API",
                how: "set activate.profile_api.token (or BRAID_PROFILE_TOKEN)",
            });
        };
        check_bearer(request, &api.token, "the profile token")?;
        let workspace = self.requested_workspace(request)?;
        let query = match (rest.strip_suffix('/').unwrap_or(rest), request.method) {
            ("preview", "POST") => self.preview(request)?,
            ("changes", "GET") => {
                let number =
                    |field: &'static str, expected: &'static str, range: (u64, u64)| match request
                        .query_value(field)
                        .map(|v| v.parse::<u64>())
                    {
                        None => Ok(None),
                        Some(Ok(n)) if (range.0..=range.1).contains(&n) => Ok(Some(n)),
                        Some(_) => Err(ApiError::BadParameter {
                            field,
                            expected,
                            limit: usize::try_from(range.1).ok().filter(|_| range.1 < u64::MAX),
                        }),
                    };
                let after = number(
                    "after",
                    "a whole number (the last entry read)",
                    (0, u64::MAX),
                )?;
                let limit = number("limit", "1 to 1000", (1, MAX_CHANGES as u64))?;
                AudienceQuery::Changes {
                    after: after.unwrap_or(0),
                    limit: limit.map_or(DEFAULT_CHANGES, |n| {
                        usize::try_from(n).unwrap_or(MAX_CHANGES)
                    }),
                }
            }
            ("preview" | "changes", method) => {
                return Err(ApiError::MethodNotAllowed {
                    method: method.to_owned(),
                    path: request.path.to_owned(),
                });
            }
            _ => {
                return Err(ApiError::NotFound {
                    path: request.path.to_owned(),
                });
            }
        };
        Ok(AudienceRead { workspace, query })
    }

    fn preview(&self, request: &HttpRequest<'_>) -> Result<AudienceQuery, ApiError> {
        if request.body.len() > MAX_PREVIEW_BODY {
            return Err(ApiError::BadParameter {
                field: "body",
                expected: "a JSON object (when, audience, sample) of at most 65536 bytes",
                limit: Some(MAX_PREVIEW_BODY),
            });
        }
        let body: PreviewBody =
            serde_json::from_slice(request.body).map_err(|error| ApiError::UnreadableBody {
                detail: format!(
                    "a preview takes {{\"when\": <condition tree>, \"audience\", \"sample\"}}: {error}"
                ),
            })?;
        let sample = body.sample.unwrap_or(DEFAULT_SAMPLE);
        if sample > MAX_SAMPLE {
            return Err(ApiError::BadParameter {
                field: "sample",
                expected: "0 to 100",
                limit: Some(MAX_SAMPLE),
            });
        }
        let segments = self
            .config
            .segments()
            .map_err(|e| ApiError::BadCondition(e.to_string()))?;
        if let Some(key) = &body.audience
            && segments.audience(key).is_none()
        {
            return Err(ApiError::NoAudience { key: key.clone() });
        }
        let condition = segments
            .preview_condition(&body.when)
            .map_err(|e| ApiError::BadCondition(e.to_string()))?;
        Ok(AudienceQuery::Preview {
            condition,
            compare: body.audience,
            sample,
        })
    }
}

//! The catalogue API, for a holder of the catalogue token (`[catalogue.api]`, never a write
//! key): `GET /v1/catalogue` (the quality flags, the sources, and each event with the number of
//! its properties) and `GET /v1/catalogue/events?type=T&name=N[&path=P]` (the events of that
//! type and name, from every source, with their properties, or only the path `P`).
//! `?workspace=W` reads another workspace than the first configured one. The platform reads
//! the data map beside its profiles and answers with
//! [`CatalogueRead::finish`](crate::CatalogueRead::finish); personal data is masked in both.
//!
//! `POST /v1/catalogue/replay` with `{"from", "to", "reasons", "dryRun"}` (each optional) lands
//! the events a tracking plan blocked that the plan in force allows
//! (`braid_core::catalogue::replay`): a platform that holds the lake does it
//! ([`ReplayRequest`](crate::ReplayRequest)), the others answer that it is off.

use crate::api::Api;
use crate::auth::check_bearer;
use crate::error::ApiError;
use braid_core::catalogue::replay::ReplayFilter;
use serde::Deserialize;

use crate::handled::{CatalogueQuery, CatalogueRead, Handled, ReplayRequest};
use crate::http::HttpRequest;

/// The largest replay request body.
const MAX_REPLAY_BODY: usize = 4096;

/// A replay request's body.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplayBody {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    dry_run: bool,
}

impl Api {
    pub(crate) fn catalogue(&self, request: &HttpRequest<'_>, rest: &str) -> Handled {
        match self.catalogue_read(request, rest) {
            Ok(read) => Handled::Catalogue(read),
            Err(error) => self.refuse(request, &error, 0),
        }
    }

    pub(crate) fn replay(&self, request: &HttpRequest<'_>) -> Handled {
        match self.replay_request(request) {
            Ok(replay) => Handled::Replay(replay),
            Err(error) => self.refuse(request, &error, 0),
        }
    }

    fn replay_request(&self, request: &HttpRequest<'_>) -> Result<ReplayRequest, ApiError> {
        let Some(api) = &self.config.catalogue.api else {
            return Err(ApiError::Off {
                what: "the catalogue API",
                how: "set catalogue.api.token (or BRAID_CATALOGUE_TOKEN)",
            });
        };
        check_bearer(request, &api.token, "the catalogue token")?;
        let workspace = self.requested_workspace(request)?;
        if request.body.len() > MAX_REPLAY_BODY {
            return Err(ApiError::BadParameter {
                field: "body",
                expected: "a JSON object (from, to, reasons, dryRun) of at most 4096 bytes",
                limit: Some(MAX_REPLAY_BODY),
            });
        }
        let body: ReplayBody = if request.body.iter().all(u8::is_ascii_whitespace) {
            ReplayBody::default()
        } else {
            serde_json::from_slice(request.body).map_err(|error| ApiError::UnreadableBody {
                detail: format!(
                    "a replay takes {{\"from\", \"to\", \"reasons\", \"dryRun\"}}: {error}"
                ),
            })?
        };
        let time = |field: &'static str, value: Option<&str>| {
            value
                .map(|v| {
                    braid_core::timestamp::parse(v).map_err(|_| ApiError::BadParameter {
                        field,
                        expected: "an RFC 3339 date-time (2024-05-01T10:00:00Z)",
                        limit: None,
                    })
                })
                .transpose()
        };
        let filter = ReplayFilter::new(
            time("from", body.from.as_deref())?,
            time("to", body.to.as_deref())?,
            body.reasons,
        )?;
        Ok(ReplayRequest {
            workspace,
            filter,
            dry_run: body.dry_run,
        })
    }

    fn catalogue_read(
        &self,
        request: &HttpRequest<'_>,
        rest: &str,
    ) -> Result<CatalogueRead, ApiError> {
        let Some(api) = &self.config.catalogue.api else {
            return Err(ApiError::Off {
                what: "the catalogue API",
                how: "set catalogue.api.token (or BRAID_CATALOGUE_TOKEN)",
            });
        };
        let query = match rest.strip_suffix('/').unwrap_or(rest) {
            "" => CatalogueQuery::Summary,
            "/events" => {
                let required = |field: &'static str| {
                    request
                        .query_value(field)
                        .map(std::borrow::Cow::into_owned)
                        .ok_or(ApiError::BadParameter {
                            field,
                            expected: "the event's type (track, identify, page, ...) and name",
                            limit: None,
                        })
                };
                CatalogueQuery::Events {
                    kind: required("type")?,
                    name: request
                        .query_value("name")
                        .map(std::borrow::Cow::into_owned)
                        .unwrap_or_default(),
                    path: request
                        .query_value("path")
                        .map(std::borrow::Cow::into_owned),
                }
            }
            _ => {
                return Err(ApiError::NotFound {
                    path: request.path.to_owned(),
                });
            }
        };
        check_bearer(request, &api.token, "the catalogue token")?;
        Ok(CatalogueRead {
            workspace: self.requested_workspace(request)?,
            query,
        })
    }
}

//! The profile API: `GET /v1/profiles/{type}:{value}` (a whole profile, as
//! `braid_core::unify::profile_view` shows it) and `GET /v1/profiles/{type}:{value}/events`
//! (its events, a page at a time), for a server that holds the profile token
//! (`[activate.profile_api]`). `?workspace=W` reads another workspace than the first
//! configured one. `GET /v1/profiles/{type}:{value}/audiences/{key}/explain` says why the
//! profile is in or out of an audience (`crate::audiences`). The platform reads its profile
//! store and answers with
//! [`ProfileRead::finish`](crate::ProfileRead::finish).

use braid_core::unify::Identifier;

use crate::api::Api;
use crate::auth::check_bearer;
use crate::error::ApiError;
use crate::handled::{Handled, ProfileQuery, ProfileRead};
use crate::http::{HttpRequest, percent_decode};

/// The most events a page may ask for, and how many it has unless it asks.
const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 100;

impl Api {
    pub(crate) fn profiles(&self, request: &HttpRequest<'_>, path: &str) -> Handled {
        match self.profile_read(request, path) {
            Ok(read) => Handled::Profile(read),
            Err(error) => self.refuse(request, &error, 0),
        }
    }

    fn profile_read(&self, request: &HttpRequest<'_>, path: &str) -> Result<ProfileRead, ApiError> {
        let Some(api) = &self.config.activate.profile_api else {
            return Err(ApiError::Off {
                what: "the profile API",
                how: "set activate.profile_api.token (or BRAID_PROFILE_TOKEN)",
            });
        };
        check_bearer(request, &api.token, "the profile token")?;
        let (id, events) = match path.strip_suffix("/events") {
            Some(id) => (id, true),
            None => (path, false),
        };
        // `{id}/audiences/{key}/explain`
        let explain = id
            .strip_suffix("/explain")
            .and_then(|rest| rest.rsplit_once("/audiences/"));
        let (id, explain) = match explain {
            Some((id, key)) => (id, Some(key)),
            None => (id, None),
        };
        let identifier = percent_decode(id)
            .as_deref()
            .and_then(Identifier::parse)
            .ok_or_else(|| ApiError::BadIdentifier {
                path: request.path.to_owned(),
            })?;
        let workspace = self.requested_workspace(request)?;
        let query = if let Some(key) = explain {
            let key = percent_decode(key)
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default();
            let exists = self.config.segment.audiences.contains_key(&key);
            if !exists {
                return Err(ApiError::NoAudience { key });
            }
            ProfileQuery::Explain { audience: key }
        } else if events {
            let limit = match request.query_value("limit").map(|v| v.parse::<usize>()) {
                None => DEFAULT_PAGE,
                Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
                Some(_) => {
                    return Err(ApiError::BadParameter {
                        field: "limit",
                        expected: "1 to 1000",
                        limit: Some(MAX_PAGE),
                    });
                }
            };
            let after = match request
                .query_value("cursor")
                .map(|v| u64::from_str_radix(&v, 16))
            {
                None => None,
                Some(Ok(after)) => Some(after),
                Some(Err(_)) => {
                    return Err(ApiError::BadParameter {
                        field: "cursor",
                        expected: "the nextCursor of a previous page",
                        limit: None,
                    });
                }
            };
            ProfileQuery::Events { after, limit }
        } else {
            ProfileQuery::Profile
        };
        Ok(ProfileRead {
            workspace,
            identifier,
            query,
        })
    }
}

//! `GET /v1/personalize`: the caller's own edge-visible profile. Who the caller is comes from
//! the request — a token the site's server signed (`Authorization: Bearer v1....`), else the
//! browser's `HttpOnly` credential cookie (`docs/trust.md`) — never from the query string, so no request can read another
//! person's profile. The platform looks the key up in its store (KV for the Worker, the local
//! profiles for `braid serve`) and answers with [`Personalization::finish`].

use braid_core::activate::personalize::{EMPTY_PROFILE, edge_key, verify_token};
use braid_core::collect::browser_id;
use braid_core::unify::{IdType, Identifier};
use time::OffsetDateTime;

use crate::api::Api;
use crate::cookie;
use crate::cors;
use crate::error::ApiError;
use crate::handled::{Handled, Personalization, personal_answer};
use crate::http::{HttpRequest, HttpResponse};

impl Api {
    pub(crate) fn personalize(&self, request: &HttpRequest<'_>, now: OffsetDateTime) -> Handled {
        let mut cors_response = HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        };
        cors::add_headers(request, &self.config.collect.cors, &mut cors_response);
        let cors_headers = cors_response.headers;
        let refuse = |error: ApiError| {
            let mut response = error.to_response();
            response.headers.extend(cors_headers.clone());
            Handled::respond(response)
        };
        let Some(config) = self
            .config
            .activate
            .personalize
            .as_ref()
            .filter(|c| !c.key_secret.is_empty())
        else {
            return refuse(ApiError::Off {
                what: "personalization",
                how: "set activate.personalize.key_secret (or BRAID_EDGE_KEY_SECRET)",
            });
        };
        let bearer = request.bearer_token();
        let identifier = if let Some(token) = bearer {
            let Some(secret) = config.token_secret.as_deref().filter(|s| !s.is_empty()) else {
                return refuse(ApiError::Unauthorized {
                    reason: "this edge accepts no tokens (no token secret)".to_owned(),
                });
            };
            match verify_token(secret.as_bytes(), token.trim(), now) {
                Ok(id) => id,
                Err(e) => {
                    return refuse(ApiError::Unauthorized {
                        reason: e.to_string(),
                    });
                }
            }
        } else {
            // The browser's credential, never the anonymous id (which scripts and events
            // show): only a proven link lets it read an identified profile.
            let from_cookie = self
                .config
                .collect
                .identity_cookie
                .as_ref()
                .and_then(|config| cookie::sent(request, &config.credential))
                .map(|value| Identifier::new(IdType::Browser, browser_id(value)));
            match from_cookie {
                Some(id) => id,
                None => {
                    return Handled::respond(personal_answer(
                        EMPTY_PROFILE.to_owned(),
                        cors_headers,
                    ));
                }
            }
        };
        Handled::Personalize(Personalization {
            workspace: self.default_workspace().to_owned(),
            key: edge_key(config.key_secret.as_bytes(), &identifier),
            identifier,
            traits: config.traits.clone(),
            headers: cors_headers,
        })
    }
}

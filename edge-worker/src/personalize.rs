//! `GET /v1/personalize`: the caller's own edge-visible profile. Who the caller is comes from
//! the request — a token the site's server signed (`Authorization: Bearer v1....`), else the
//! `HttpOnly` identity cookie — never from the query string, so no request can read another
//! person's profile. The platform looks the key up in its store (KV for the Worker, the local
//! profiles for `braid serve`) and answers with [`Personalization::finish`].

use braid_core::identity::{IdType, Identifier};
use braid_core::personalize::{EMPTY_PROFILE, edge_key, verify_token};
use serde_json::json;
use time::OffsetDateTime;

use crate::config::{CookieConfig, CorsConfig, PersonalizeConfig};
use crate::cors;
use crate::http::{HttpRequest, HttpResponse};

/// A personalization read for the platform to finish.
#[derive(Debug)]
pub struct Personalization {
    /// The caller's identifier.
    pub identifier: Identifier,
    /// Its key in the edge store (`braid_core::personalize::edge_key`).
    pub key: String,
    headers: Vec<(&'static str, String)>,
}

impl Personalization {
    /// The answer, given the stored value (`None`: unknown, an empty profile).
    pub fn finish(self, value: Option<String>) -> HttpResponse {
        answer(
            value.unwrap_or_else(|| EMPTY_PROFILE.to_owned()),
            self.headers,
        )
    }
}

fn answer(body: String, cors_headers: Vec<(&'static str, String)>) -> HttpResponse {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        // One person's data: never cached by a shared cache, never reused for another caller.
        ("cache-control", "private, no-store".to_owned()),
        ("vary", "Cookie, Authorization".to_owned()),
    ];
    headers.extend(cors_headers);
    HttpResponse {
        status: 200,
        headers,
        body: body.into_bytes(),
    }
}

/// What to do with a personalization request: answer now, or look up a key.
#[derive(Debug)]
pub(crate) enum Step {
    Respond(HttpResponse),
    Lookup(Personalization),
}

pub(crate) fn personalize(
    request: &HttpRequest<'_>,
    config: Option<&PersonalizeConfig>,
    cookie: Option<&CookieConfig>,
    cors_config: &CorsConfig,
    now: OffsetDateTime,
) -> Step {
    let mut cors_response = HttpResponse {
        status: 200,
        headers: Vec::new(),
        body: Vec::new(),
    };
    cors::add_headers(request, cors_config, &mut cors_response);
    let cors_headers = cors_response.headers;
    let error = |status: u16, code: &str, message: &str| {
        let mut response = HttpResponse::json(status, &json!({"error": code, "message": message}));
        response.headers.extend(cors_headers.clone());
        Step::Respond(response)
    };
    let Some(config) = config.filter(|c| !c.key_secret.is_empty()) else {
        return error(404, "not_found", "personalization is not configured");
    };
    let bearer = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "));
    let identifier = if let Some(token) = bearer {
        let Some(secret) = config.token_secret.as_deref().filter(|s| !s.is_empty()) else {
            return error(
                401,
                "unauthorized",
                "this edge accepts no tokens (no token secret)",
            );
        };
        match verify_token(secret.as_bytes(), token.trim(), now) {
            Ok(id) => id,
            Err(e) => return error(401, "unauthorized", &e.to_string()),
        }
    } else {
        let from_cookie = cookie
            .and_then(|cookie| crate::collector::sent_cookie_id(request, cookie))
            .map(|value| Identifier::new(IdType::AnonymousId, value));
        match from_cookie {
            Some(id) => id,
            None => return Step::Respond(answer(EMPTY_PROFILE.to_owned(), cors_headers)),
        }
    };
    Step::Lookup(Personalization {
        key: edge_key(config.key_secret.as_bytes(), &identifier),
        identifier,
        headers: cors_headers,
    })
}

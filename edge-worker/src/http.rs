//! Requests and responses as plain data, so that any platform can build and send them.

use std::borrow::Cow;
use std::net::IpAddr;

/// An HTTP request as the handlers see it.
#[derive(Clone, Debug)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, `OPTIONS`, ...
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    /// The query string, without the `?`.
    pub query: Option<&'a str>,
    /// Header names and values, in any case.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body as received (possibly gzip).
    pub body: &'a [u8],
    /// The client's address, as the platform determined it.
    pub client_ip: Option<IpAddr>,
    /// A fresh random id (a UUID) from the platform, used as the anonymous id of a visitor who
    /// has no identity cookie yet.
    pub fresh_id: Option<&'a str>,
    /// Another fresh random value (a UUID) from the platform, not derived from `fresh_id`: the
    /// credential cookie of a browser that has none yet (`docs/trust.md`).
    pub fresh_key: Option<&'a str>,
    /// What the platform knows of where the request came from, as compact JSON objects: geo
    /// for `context.location`, the network and data centre for `context.edge` (the Worker, from
    /// the request's `cf` object).
    pub location: Option<&'a str>,
    /// See `location`.
    pub edge: Option<&'a str>,
}

impl HttpRequest<'_> {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    /// The token of `Authorization: Bearer <token>`, if the request sends one.
    pub fn bearer_token(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// The first value of a query parameter as sent (not percent-decoded: for tokens and
    /// flags, which have no escapes).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// The first value of a query parameter, percent-decoded (`None` when absent or not UTF-8
    /// once decoded).
    pub fn query_value(&self, name: &str) -> Option<Cow<'_, str>> {
        percent_decode(self.query_param(name)?)
    }
}

/// `%XX` escapes decoded (a path segment or a query value); `None` when the result is not
/// UTF-8. `+` stays `+`: in a path it is a plus (`email:a+b@shop.example`).
pub fn percent_decode(text: &str) -> Option<Cow<'_, str>> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
}

/// An HTTP response for the platform to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<(&'static str, String)>,
    /// The body (JSON, or empty).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A JSON response.
    pub fn json(status: u16, body: &serde_json::Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

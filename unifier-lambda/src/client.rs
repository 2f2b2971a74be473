//! A plain HTTP/1.1 client for what Braid sends to other Braid servers: signed batches to an
//! upstream ingest (edge mode) and imported records to a collection endpoint (`braid import`).
//! One connection per request; `http://` only (local and test set-ups: the Cloudflare Worker is
//! the production edge).

use http_body_util::{BodyExt as _, Full};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A request that could not be sent, or whose answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not an `http://` URL with a host.
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection (the server is down or unreachable): trying again may succeed.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// The host and port.
        authority: String,
        /// The socket's error.
        source: std::io::Error,
    },
    /// The exchange failed half-way (the connection closed, a bad answer).
    #[error("the request to {authority} failed: {source}")]
    Exchange {
        /// The host and port.
        authority: String,
        /// HTTP's error.
        source: hyper::Error,
    },
    /// A header could not be sent (not a valid header value).
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
}

impl ClientError {
    /// Whether sending again may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::Exchange { .. }
        )
    }
}

/// Where requests go: the authority and the path of an `http://` URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    authority: String,
    path: String,
}

/// An answer: its status, `Retry-After` in seconds when given, and its body.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// The body.
    pub body: Vec<u8>,
}

impl Endpoint {
    /// `url` (`http://host:port/path`), with `default_path` when it has none.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidUrl`] when it is not an `http://` URL with a host.
    pub fn new(url: &str, default_path: &str) -> Result<Endpoint, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("it must start with http://"));
        }
        let authority = uri
            .authority()
            .map(ToString::to_string)
            .ok_or_else(|| invalid("it has no host"))?;
        let path = match uri
            .path_and_query()
            .map(hyper::http::uri::PathAndQuery::as_str)
        {
            None | Some("/" | "") => default_path.to_owned(),
            Some(path) => path.to_owned(),
        };
        Ok(Endpoint { authority, path })
    }

    /// POSTs a JSON `body` with extra `headers`.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when there is no connection or no answer; any answer, 5xx included, is
    /// an `Ok`.
    pub async fn post_json(
        &self,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, ClientError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ClientError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let exchange = |source| ClientError::Exchange {
            authority: self.authority.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(exchange)?;
        tokio::spawn(connection);
        let mut request = hyper::Request::post(self.path.as_str())
            .header("host", &self.authority)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body)))?)
            .await
            .map_err(exchange)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(exchange)?
            .to_bytes()
            .to_vec();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// The most bytes of events sent in one request (a collection endpoint takes 500 KB per batch).
const BATCH_BYTES: usize = 400_000;

/// How many times a request that may pass (429, 5xx, no connection) is sent.
const ATTEMPTS: u32 = 8;

/// Why events were not all taken.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The endpoint refused a batch for good (4xx but 429).
    #[error("the endpoint answered {status}: {body}")]
    Refused {
        /// Its status.
        status: u16,
        /// Its body, as text.
        body: String,
    },
    /// A batch was not taken after every attempt.
    #[error("the endpoint did not take the events after {ATTEMPTS} attempts: {last}")]
    GaveUp {
        /// The last failure.
        last: String,
    },
}

impl SendError {
    /// Whether sending the rest again later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, SendError::GaveUp { .. })
    }
}

/// What [`send_events`] sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Events taken.
    pub events: usize,
    /// Requests it took.
    pub requests: usize,
}

/// Sends Segment events to a collection endpoint's `/v1/batch` with a write key, in batches of
/// at most 400 KB, each sent again after a 429, a 5xx or a failed connection (honouring
/// `Retry-After`, else backing off from 0.5 s to 30 s).
///
/// # Errors
///
/// [`SendError`] at the first batch refused for good or not taken after 8 attempts; the
/// batches before it were taken.
pub async fn send_events(
    endpoint: &Endpoint,
    write_key: &str,
    events: &[serde_json::Value],
) -> Result<Sent, SendError> {
    let auth = format!("Basic {}", base64_user(write_key));
    let mut sent = Sent::default();
    for batch in batches(events) {
        send_batch(endpoint, &auth, batch).await?;
        sent.events += batch.len();
        sent.requests += 1;
    }
    Ok(sent)
}

/// `user:` in base64, as a Basic-auth header carries a write key.
fn base64_user(user: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:"))
}

/// The events cut into batches of at most [`BATCH_BYTES`].
fn batches(events: &[serde_json::Value]) -> Vec<&[serde_json::Value]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, event) in events.iter().enumerate() {
        let size = event.to_string().len() + 1;
        if i > start && bytes + size > BATCH_BYTES {
            out.extend(events.get(start..i));
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    out.extend(events.get(start..).filter(|rest| !rest.is_empty()));
    out
}

async fn send_batch(
    endpoint: &Endpoint,
    auth: &str,
    events: &[serde_json::Value],
) -> Result<(), SendError> {
    let body = serde_json::json!({"batch": events})
        .to_string()
        .into_bytes();
    let mut wait = std::time::Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match endpoint
            .post_json(&[("authorization", auth)], body.clone())
            .await
        {
            Ok(answer) if (200..300).contains(&answer.status) => return Ok(()),
            Ok(answer) if answer.status == 429 || answer.status >= 500 => {
                if let Some(seconds) = answer.retry_after {
                    wait = std::time::Duration::from_secs(seconds.min(60));
                }
                last = format!(
                    "{} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
            }
            Ok(answer) => {
                return Err(SendError::Refused {
                    status: answer.status,
                    body: String::from_utf8_lossy(&answer.body).into_owned(),
                });
            }
            Err(error) => {
                tracing::warn!(%error, attempt, "Sending failed; trying again.");
                last = error.to_string();
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(30));
        }
    }
    Err(SendError::GaveUp { last })
}

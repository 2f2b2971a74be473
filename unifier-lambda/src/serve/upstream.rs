//! Edge mode: instead of writing the lake itself, `braid serve` forwards each accepted request's
//! events, signed, to an upstream ingest (`docs/forward.md`) — the ingest function, or another
//! `braid serve` — and acknowledges the client only after the upstream answered 2xx, as the
//! Cloudflare Worker does.

use std::time::Duration;

use braid_core::catalogue::lake::LakeWrite;
use braid_core::collect::forward::{ForwardBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

use crate::client::{ClientError, Endpoint};

/// How long an upstream call may take before the client gets a 503.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why the upstream did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An answer other than 2xx.
    #[error("the upstream answered {status}: {body}")]
    Refused {
        /// Its status.
        status: u16,
        /// Its body, as text.
        body: String,
    },
    /// No answer in time.
    #[error("the upstream did not answer within {} s", TIMEOUT.as_secs())]
    Timeout,
}

impl UpstreamError {
    /// Whether sending again may succeed: no answer, or an answer that says so (429, 5xx).
    pub fn is_retriable(&self) -> bool {
        match self {
            UpstreamError::Client(error) => error.is_retriable(),
            UpstreamError::Refused { status, .. } => *status == 429 || *status >= 500,
            UpstreamError::Timeout => true,
        }
    }
}

/// Where and how to forward.
#[derive(Debug)]
pub(super) struct Upstream {
    endpoint: Endpoint,
    secret: Vec<u8>,
}

impl Upstream {
    /// An upstream at `url` (`http://host:port/path`), signing with `secret`.
    pub(super) fn new(url: &str, secret: &[u8]) -> Result<Upstream, ClientError> {
        Ok(Upstream {
            endpoint: Endpoint::new(url, "/v1/forward")?,
            secret: secret.to_vec(),
        })
    }

    /// Forwards one request's events; `Ok` once the upstream answered 2xx.
    pub(super) async fn forward(&self, write: &LakeWrite) -> Result<(), UpstreamError> {
        let body = ForwardBatch::write(
            &write.workspace,
            write.received_at,
            &write.accepted,
            &write.failed,
        );
        tokio::time::timeout(TIMEOUT, self.send(body))
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), UpstreamError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(&self.secret, now, &body);
        let now = now.to_string();
        let headers = [
            (TIMESTAMP_HEADER, now.as_str()),
            (SIGNATURE_HEADER, signature.as_str()),
        ];
        let answer = self.endpoint.post_json(&headers, body).await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(UpstreamError::Refused {
                status: answer.status,
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            })
        }
    }
}

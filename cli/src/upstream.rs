//! Edge mode: instead of writing the lake itself, `braid serve` forwards each accepted request's
//! events, signed, to an upstream ingest (`docs/forward.md`) — the ingest Lambda function, or
//! another `braid serve` — and acknowledges the client only after the upstream answered 2xx,
//! as the Cloudflare Worker does. Plain `http://` upstreams only (local and test set-ups; the
//! Worker is the production edge).

use std::time::Duration;

use anyhow::Context as _;
use braid_core::forward::{ForwardBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use braid_edge::LakeWrite;

use crate::client::Endpoint;

/// How long an upstream call may take before the client gets a 503.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to forward.
pub(crate) struct Upstream {
    endpoint: Endpoint,
    secret: Vec<u8>,
}

impl Upstream {
    /// An upstream at `url` (`http://host:port/path`), signing with `secret`.
    pub(crate) fn new(url: &str, secret: &[u8]) -> anyhow::Result<Upstream> {
        let endpoint =
            Endpoint::new(url, "/v1/forward").with_context(|| format!("invalid upstream {url}"))?;
        Ok(Upstream {
            endpoint,
            secret: secret.to_vec(),
        })
    }

    /// Forwards one request's events; `Ok` once the upstream answered 2xx.
    pub(crate) async fn forward(&self, write: &LakeWrite) -> anyhow::Result<()> {
        let body = ForwardBatch::write(
            &write.workspace,
            write.received_at,
            &write.accepted,
            &write.failed,
        );
        tokio::time::timeout(TIMEOUT, self.send(body))
            .await
            .context("the upstream did not answer in time")?
    }

    async fn send(&self, body: Vec<u8>) -> anyhow::Result<()> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(&self.secret, now, &body);
        let now = now.to_string();
        let headers = [
            (TIMESTAMP_HEADER, now.as_str()),
            (SIGNATURE_HEADER, signature.as_str()),
        ];
        let answer = self.endpoint.post_json(&headers, body).await?;
        anyhow::ensure!(
            (200..300).contains(&answer.status),
            "the upstream answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        Ok(())
    }
}

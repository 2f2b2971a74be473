//! Edge mode: instead of writing the lake itself, `braid serve` forwards each accepted request's
//! events, signed, to an upstream ingest (`docs/forward.md`) — the ingest Lambda function, or
//! another `braid serve` — and acknowledges the client only after the upstream answered 2xx,
//! as the Cloudflare Worker does. Plain `http://` upstreams only (local and test set-ups; the
//! Worker is the production edge).

use std::time::Duration;

use anyhow::Context as _;
use braid_core::forward::{ForwardBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use braid_edge::LakeWrite;
use http_body_util::{BodyExt as _, Full};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long an upstream call may take before the client gets a 503.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to forward.
pub(crate) struct Upstream {
    uri: Uri,
    authority: String,
    secret: Vec<u8>,
}

impl Upstream {
    /// An upstream at `url` (`http://host:port/path`), signing with `secret`.
    pub(crate) fn new(url: &str, secret: &[u8]) -> anyhow::Result<Upstream> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid upstream URL {url}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "the upstream URL must start with http:// (got {url})"
        );
        let authority = uri
            .authority()
            .map(ToString::to_string)
            .with_context(|| format!("the upstream URL {url} has no host"))?;
        Ok(Upstream {
            uri,
            authority,
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
        let stream = TcpStream::connect(&self.authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let path = self
            .uri
            .path_and_query()
            .map_or("/v1/forward", |p| p.as_str());
        let request = hyper::Request::post(path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status.is_success(),
            "the upstream answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        Ok(())
    }
}

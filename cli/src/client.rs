//! A plain HTTP/1.1 client for what `braid` sends to other servers: signed batches to an
//! upstream ingest (edge mode) and imported records to a collection endpoint. One connection
//! per request; `http://` only.

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: the authority and the path of an `http://` URL.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    authority: String,
    path: String,
}

/// An answer: its status, `Retry-After` in seconds when given, and its body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) body: Vec<u8>,
}

impl Endpoint {
    /// `url` (`http://host:port/path`), with `default_path` when it has none.
    pub(crate) fn new(url: &str, default_path: &str) -> anyhow::Result<Endpoint> {
        let uri: Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "the URL must start with http:// (got {url})"
        );
        let authority = uri
            .authority()
            .map(ToString::to_string)
            .with_context(|| format!("the URL {url} has no host"))?;
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
    pub(crate) async fn post_json(
        &self,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let stream = TcpStream::connect(&self.authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::post(self.path.as_str())
            .header("host", &self.authority)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

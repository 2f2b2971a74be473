//! Webhook requests over HTTP(S) (reqwest with rustls), under the destination's address rule:
//! a host name is resolved here and only the addresses the rule allows are connected to (a
//! name that resolves to this machine or a private network later does not pass), an address
//! in the URL is checked before sending, redirects are not followed (they would lead past
//! the rule), no proxy is used, and every request has the destination's timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use braid_core::activate::destination::{Destination, Method};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{Answer, Request, Sender};

/// Sends one destination's requests.
#[derive(Clone, Debug)]
pub struct HttpSender {
    client: reqwest::Client,
    url: reqwest::Url,
    refused: Option<String>,
}

/// The largest answer body read (the rest is not needed: only the status decides).
const MAX_ANSWER_BYTES: usize = 4_096;

impl HttpSender {
    /// The sender of `destination`'s requests.
    ///
    /// # Errors
    ///
    /// When the URL cannot be used or the client cannot be built, in words.
    pub fn new(destination: &Destination) -> Result<HttpSender, String> {
        let url = reqwest::Url::parse(&destination.config.url)
            .map_err(|e| format!("{}: {e}", destination.config.url))?;
        // An address in the URL is not resolved: it is checked here.
        let literal = url
            .host_str()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|host| host.parse::<IpAddr>().ok());
        let refused = literal.and_then(|ip| {
            destination
                .address_refused(ip)
                .map(|why| refusal(ip, why, destination.key()))
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(destination.config.timeout_seconds))
            .connect_timeout(Duration::from_secs(
                destination.config.timeout_seconds.min(10),
            ))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(Checked(Arc::new(destination.clone()))))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpSender {
            client,
            url,
            refused,
        })
    }
}

fn refusal(ip: IpAddr, why: &str, key: &str) -> String {
    format!(
        "the receiver's address {ip} is {why}: add it to activate.destinations \
         (key {key:?}) allow_addresses to send there"
    )
}

impl Sender for HttpSender {
    async fn send(&self, request: Request) -> Answer {
        if let Some(refused) = &self.refused {
            return Answer {
                status: None,
                retry_after: None,
                error: refused.clone(),
            };
        }
        let method = match request.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
        };
        let mut builder = self
            .client
            .request(method, self.url.clone())
            .header("content-type", "application/json")
            .body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        match builder.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let mut body = response
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                body.truncate(MAX_ANSWER_BYTES);
                let text = String::from_utf8_lossy(&body);
                Answer {
                    status: Some(status),
                    retry_after,
                    error: format!("{status}: {}", text.trim()),
                }
            }
            Err(error) => Answer {
                status: None,
                retry_after: None,
                error: describe(&error),
            },
        }
    }
}

/// An error in words, with its causes (reqwest's own says little: "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The system's resolver, keeping only the addresses the destination may reach.
struct Checked(Arc<Destination>);

impl Resolve for Checked {
    fn resolve(&self, name: Name) -> Resolving {
        let destination = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match destination.address_refused(addr.ip()) {
                    Some(why) => {
                        refused = Some(refusal(addr.ip(), why, destination.key()));
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{host} has no address"));
                return Err(why.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

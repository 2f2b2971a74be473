//! The enrichment steps applied to one event, in order.

use std::net::IpAddr;

use std::borrow::Cow;
use std::sync::Arc;

use time::OffsetDateTime;

use super::agent::AgentCache;
use super::config::{EnrichConfig, IpPolicy};
use super::{campaign, ip, message_id, referrer, skew, url};
use crate::event::{ClientTimes, Event, EventType};
use crate::json::{Kind, Node, Obj};
use crate::timestamp;

/// What the platform knows about the request that carried an event.
#[derive(Clone, Debug)]
pub struct EnrichInput<'a> {
    /// The workspace the write key belongs to (part of derived message ids).
    pub workspace: &'a str,
    /// When the request was received.
    pub received_at: OffsetDateTime,
    /// `received_at` as written to the lake, as a JSON string.
    received_at_json: Arc<str>,
    /// The client's address, from the connection or a trusted proxy header.
    pub client_ip: Option<IpAddr>,
    /// The request's `User-Agent` header, used when the event has no `context.userAgent`.
    pub user_agent: Option<&'a str>,
    /// What only the edge knows, as JSON objects: `context.location` (geo) and `context.edge`
    /// (the network and the data centre), set on every event of the request.
    pub edge: Vec<(&'static str, Arc<str>)>,
}

impl<'a> EnrichInput<'a> {
    /// Describes a request.
    pub fn new(
        workspace: &'a str,
        received_at: OffsetDateTime,
        client_ip: Option<IpAddr>,
        user_agent: Option<&'a str>,
    ) -> EnrichInput<'a> {
        EnrichInput {
            workspace,
            received_at,
            received_at_json: format!("\"{}\"", timestamp::format(received_at)).into(),
            client_ip,
            user_agent,
            edge: Vec::new(),
        }
    }
}

/// Enriches a valid event in place. `raw` is the event's JSON as received (for derived ids).
pub fn enrich(
    event: &mut Event<'_>,
    raw: &str,
    input: &EnrichInput<'_>,
    config: &EnrichConfig,
    agents: &mut AgentCache,
) {
    let kind = event.kind();
    let times = event.times;
    let fields = event.fields_mut();
    if config.message_id && !fields.contains("messageId") {
        fields.insert(
            "messageId",
            Node::Text(Cow::Owned(message_id::derive(input.workspace, raw))),
        );
    }
    if config.received_at {
        fields.insert(
            "receivedAt",
            Node::Json(Arc::clone(&input.received_at_json)),
        );
    }
    correct_timestamp(fields, times, input, config.skew_correction);
    // Every step below reads or changes `context`: open it once.
    let _ = fields.open("context");
    enrich_ip(fields, input.client_ip, config.ip);
    if config.user_agent || config.bot {
        let agent = {
            let sent = context(fields).and_then(|c| c.text("userAgent"));
            sent.as_deref()
                .or(input.user_agent)
                .map(|user_agent| agents.json(user_agent, config.user_agent, config.bot))
        };
        if let Some(agent) = agent {
            with_context(fields, |context| context.insert("agent", Node::Json(agent)));
        }
    }
    if config.campaign || config.referrer {
        enrich_page_sources(fields, kind, config);
    }
    for (key, json) in &input.edge {
        let json = Arc::clone(json);
        with_context(fields, |context| context.insert(*key, Node::Json(json)));
    }
}

/// Sets `timestamp` (corrected) and `originalTimestamp` (the client's own time).
fn correct_timestamp(
    fields: &mut Obj<'_>,
    times: ClientTimes,
    input: &EnrichInput<'_>,
    correct: bool,
) {
    let has_original = fields.contains("originalTimestamp");
    let original = if has_original {
        times.original_timestamp
    } else {
        times.timestamp
    };
    let Some(original) = original else {
        // No client time at all: the event happened when it was received.
        fields.insert("timestamp", Node::Json(Arc::clone(&input.received_at_json)));
        return;
    };
    if !correct {
        if has_original && !fields.contains("timestamp") {
            fields.insert("timestamp", Node::Time(original));
        }
        return;
    }
    let corrected = skew::correct(original, times.sent_at, input.received_at);
    if !has_original && let Some(client) = fields.get("timestamp").cloned() {
        fields.insert("originalTimestamp", client);
    }
    fields.insert("timestamp", Node::Time(corrected));
}

fn enrich_ip(fields: &mut Obj<'_>, request_ip: Option<IpAddr>, policy: IpPolicy) {
    if policy == IpPolicy::Drop {
        if let Some(context) = fields.open("context") {
            context.remove("ip");
        }
        return;
    }
    let sent = context(fields)
        .and_then(|c| c.text("ip"))
        .map(|ip| ip.parse::<IpAddr>());
    let chosen = match sent {
        Some(Ok(ip)) => Some(ip),
        // A value that is not an address cannot be anonymised: with anonymisation on it goes.
        Some(Err(_)) if policy == IpPolicy::Anonymize => {
            if let Some(context) = fields.open("context") {
                context.remove("ip");
            }
            None
        }
        Some(Err(_)) => return,
        None => request_ip,
    };
    if let Some(ip) = chosen {
        let ip = if policy == IpPolicy::Anonymize {
            ip::anonymize(ip)
        } else {
            ip
        };
        with_context(fields, |context| {
            context.insert("ip", Node::Ip(ip));
        });
    }
}

/// UTM campaign and referrer class, both read from the page the event happened on.
fn enrich_page_sources<'a>(fields: &mut Obj<'a>, kind: EventType, config: &EnrichConfig) {
    let (campaign, referrer) = {
        let context = context(fields);
        let page = context
            .and_then(|c| c.get("page"))
            .and_then(Node::as_object);
        let properties = if kind == EventType::Page {
            fields.get("properties").and_then(Node::as_object)
        } else {
            None
        };
        let page_str = |name: &str| -> Option<Cow<'a, str>> {
            page.as_ref()
                .and_then(|p| p.get(name))
                .and_then(Node::body_text)
                .or_else(|| {
                    properties
                        .as_ref()
                        .and_then(|p| p.get(name))
                        .and_then(Node::body_text)
                })
                .filter(|s| !s.is_empty())
        };
        let page_url = page_str("url");
        let campaign = if config.campaign
            && context
                .and_then(|c| c.get("campaign"))
                .is_none_or(|c| c.kind() != Kind::Object)
        {
            page_str("search")
                .and_then(campaign_of)
                .or_else(|| page_url.clone().and_then(campaign_of))
        } else {
            None
        };
        let referrer = if config.referrer {
            page_str("referrer").and_then(|referrer_url| {
                let page_host = page_url.as_ref().and_then(host_of);
                let host = host_of(&referrer_url)?;
                let (class, name) =
                    referrer::classify(&host, page_host.as_deref(), &config.internal_domains);
                Some((referrer_url, host, class, name))
            })
        } else {
            None
        };
        (campaign, referrer)
    };
    if let Some(campaign) = campaign {
        with_context(fields, |context| {
            context.insert("campaign", Node::Obj(campaign));
        });
    }
    if let Some((referrer_url, host, class, name)) = referrer {
        with_context(fields, |context| {
            if let Some(referrer) = context.open_or_create("referrer") {
                referrer.insert_missing("url", || Node::Text(referrer_url));
                referrer.insert_missing("host", || Node::Text(host));
                referrer.insert_missing("type", || Node::Text(class.as_str().into()));
                if let Some(name) = name {
                    referrer.insert_missing("name", || Node::Text(name.into()));
                }
            }
        });
    }
}

/// The host of a URL, a slice of the request body when it can be.
fn host_of<'a>(url: &Cow<'a, str>) -> Option<Cow<'a, str>> {
    match url {
        Cow::Borrowed(url) => url::host(url),
        Cow::Owned(url) => url::host(url).map(|host| Cow::Owned(host.into_owned())),
    }
}

/// The campaign object of the query of a page's URL or `search` (`?utm_source=...`); its
/// values are slices of the request body when they can be.
fn campaign_of(text: Cow<'_, str>) -> Option<Obj<'_>> {
    match text {
        Cow::Borrowed(text) => url::query(text).and_then(campaign::from_query),
        Cow::Owned(text) => url::query(&text)
            .and_then(campaign::from_query)
            .map(Obj::into_owned),
    }
}

/// The event's `context`, once opened.
fn context<'o, 'a>(fields: &'o Obj<'a>) -> Option<&'o Obj<'a>> {
    match fields.get("context") {
        Some(Node::Obj(context)) => Some(context),
        _ => None,
    }
}

/// Runs `change` on the `context` object, creating it when absent or null (validation has
/// ensured it is an object or null).
fn with_context<'a>(fields: &mut Obj<'a>, change: impl FnOnce(&mut Obj<'a>)) {
    if let Some(context) = fields.open_or_create("context") {
        change(context);
    }
}

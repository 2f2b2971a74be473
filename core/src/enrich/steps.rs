//! The enrichment steps applied to one event, in order.

use std::net::IpAddr;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::agent::AgentCache;
use super::config::{EnrichConfig, IpPolicy};
use super::{campaign, ip, message_id, referrer, skew, url};
use crate::event::{Event, EventType};
use crate::timestamp;

/// What the platform knows about the request that carried an event.
#[derive(Clone, Debug)]
pub struct EnrichInput<'a> {
    /// The workspace the write key belongs to (part of derived message ids).
    pub workspace: &'a str,
    /// When the request was received.
    pub received_at: OffsetDateTime,
    /// `received_at` as written to the lake.
    received_at_text: String,
    /// The client's address, from the connection or a trusted proxy header.
    pub client_ip: Option<IpAddr>,
    /// The request's `User-Agent` header, used when the event has no `context.userAgent`.
    pub user_agent: Option<&'a str>,
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
            received_at_text: timestamp::format(received_at),
            client_ip,
            user_agent,
        }
    }
}

/// Enriches a valid event in place. `raw` is the event's JSON as received (for derived ids).
pub fn enrich(
    event: &mut Event,
    raw: &str,
    input: &EnrichInput<'_>,
    config: &EnrichConfig,
    agents: &mut AgentCache,
) {
    let kind = event.kind();
    let fields = event.fields_mut();
    if config.message_id && !fields.contains_key("messageId") {
        fields.insert(
            "messageId".to_owned(),
            Value::String(message_id::derive(input.workspace, raw)),
        );
    }
    if config.received_at {
        fields.insert(
            "receivedAt".to_owned(),
            Value::String(input.received_at_text.clone()),
        );
    }
    correct_timestamp(fields, input, config.skew_correction);
    enrich_ip(fields, input.client_ip, config.ip);
    if config.user_agent || config.bot {
        let user_agent = context_str(fields, "userAgent").map(str::to_owned);
        if let Some(user_agent) = user_agent.as_deref().or(input.user_agent) {
            let agent = agents
                .get(user_agent)
                .to_json(config.user_agent, config.bot);
            with_context(fields, |context| {
                context.insert("agent".to_owned(), Value::Object(agent));
            });
        }
    }
    if config.campaign || config.referrer {
        enrich_page_sources(fields, kind, config);
    }
}

/// Sets `timestamp` (corrected) and `originalTimestamp` (the client's own time).
fn correct_timestamp(fields: &mut Map<String, Value>, input: &EnrichInput<'_>, correct: bool) {
    let received_at = input.received_at;
    let parsed = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .and_then(|t| timestamp::parse(t).ok())
    };
    let original_field = if fields.contains_key("originalTimestamp") {
        "originalTimestamp"
    } else {
        "timestamp"
    };
    let Some(original) = parsed(original_field) else {
        // No client time at all: the event happened when it was received.
        fields.insert(
            "timestamp".to_owned(),
            Value::String(input.received_at_text.clone()),
        );
        return;
    };
    if !correct {
        if original_field == "originalTimestamp" && !fields.contains_key("timestamp") {
            fields.insert(
                "timestamp".to_owned(),
                Value::String(timestamp::format(original)),
            );
        }
        return;
    }
    let sent_at = parsed("sentAt");
    let corrected = skew::correct(original, sent_at, received_at);
    if original_field == "timestamp"
        && let Some(client) = fields.get("timestamp").cloned()
    {
        fields.insert("originalTimestamp".to_owned(), client);
    }
    fields.insert(
        "timestamp".to_owned(),
        Value::String(timestamp::format(corrected)),
    );
}

fn enrich_ip(fields: &mut Map<String, Value>, request_ip: Option<IpAddr>, policy: IpPolicy) {
    if policy == IpPolicy::Drop {
        if let Some(Value::Object(context)) = fields.get_mut("context") {
            context.remove("ip");
        }
        return;
    }
    let sent = context_str(fields, "ip").map(str::parse::<IpAddr>);
    let chosen = match sent {
        Some(Ok(ip)) => Some(ip),
        // A value that is not an address cannot be anonymised: with anonymisation on it goes.
        Some(Err(_)) if policy == IpPolicy::Anonymize => {
            if let Some(Value::Object(context)) = fields.get_mut("context") {
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
            context.insert("ip".to_owned(), Value::String(ip.to_string()));
        });
    }
}

/// UTM campaign and referrer class, both read from the page the event happened on.
fn enrich_page_sources(fields: &mut Map<String, Value>, kind: EventType, config: &EnrichConfig) {
    let page = fields.get("context").and_then(|c| c.get("page"));
    let properties = if kind == EventType::Page {
        fields.get("properties")
    } else {
        None
    };
    let page_str = |name: &str| {
        page.and_then(|p| p.get(name))
            .and_then(Value::as_str)
            .or_else(|| properties.and_then(|p| p.get(name)).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
    };
    let page_url = page_str("url");
    let page_host = page_url.and_then(url::host);
    let campaign = if config.campaign
        && !matches!(
            fields.get("context").and_then(|c| c.get("campaign")),
            Some(Value::Object(_))
        ) {
        page_str("search")
            .and_then(url::query)
            .or_else(|| page_url.and_then(url::query))
            .and_then(campaign::from_query)
    } else {
        None
    };
    let referrer = if config.referrer {
        page_str("referrer").and_then(|referrer_url| {
            let host = url::host(referrer_url)?;
            let (class, name) =
                referrer::classify(&host, page_host.as_deref(), &config.internal_domains);
            Some((referrer_url.to_owned(), host, class, name))
        })
    } else {
        None
    };
    if let Some(campaign) = campaign {
        with_context(fields, |context| {
            context.insert("campaign".to_owned(), Value::Object(campaign));
        });
    }
    if let Some((referrer_url, host, class, name)) = referrer {
        with_context(fields, |context| {
            add_referrer(context, referrer_url, host, class, name);
        });
    }
}

fn add_referrer(
    context: &mut Map<String, Value>,
    referrer_url: String,
    host: String,
    class: referrer::ReferrerClass,
    name: Option<&'static str>,
) {
    {
        let entry = context
            .entry("referrer")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(referrer) = entry {
            referrer.entry("url").or_insert(Value::String(referrer_url));
            referrer.entry("host").or_insert(Value::String(host));
            referrer
                .entry("type")
                .or_insert_with(|| Value::String(class.as_str().to_owned()));
            if let Some(name) = name {
                referrer
                    .entry("name")
                    .or_insert_with(|| Value::String(name.to_owned()));
            }
        }
    }
}

fn context_str<'m>(fields: &'m Map<String, Value>, name: &str) -> Option<&'m str> {
    fields
        .get("context")
        .and_then(|c| c.get(name))
        .and_then(Value::as_str)
}

/// Runs `change` on the `context` object, creating it when absent (validation has ensured it is
/// an object or null).
fn with_context(fields: &mut Map<String, Value>, change: impl FnOnce(&mut Map<String, Value>)) {
    let mut context = match fields.remove("context") {
        Some(Value::Object(context)) => context,
        _ => Map::new(),
    };
    change(&mut context);
    fields.insert("context".to_owned(), Value::Object(context));
}

//! User-agent parsing (browser, OS, device type) with the `woothee` dataset, and bot detection
//! with `woothee`'s crawler category and `iscrawl`'s crawler patterns.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value};

/// The kind of device a user agent runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    /// A desktop or laptop computer.
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// A bot or crawler.
    Bot,
    /// Anything else (consoles, TVs, libraries, unknown).
    Other,
}

impl DeviceType {
    /// The name written to the lake.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Mobile => "mobile",
            DeviceType::Tablet => "tablet",
            DeviceType::Bot => "bot",
            DeviceType::Other => "other",
        }
    }
}

/// What a user-agent string says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Browser or client name (`Chrome`, `Safari`, `Googlebot`), if known.
    pub browser: Option<String>,
    /// Browser version, if known.
    pub browser_version: Option<String>,
    /// Operating system (`Windows 10`, `Mac OSX`, `iPhone`, `Android`), if known.
    pub os: Option<String>,
    /// OS version, if known.
    pub os_version: Option<String>,
    /// Device type.
    pub device_type: DeviceType,
    /// Whether the agent is a bot or crawler.
    pub bot: bool,
}

impl Agent {
    /// Parses a user-agent string.
    pub fn parse(user_agent: &str) -> Agent {
        let parsed = woothee::parser::Parser::new().parse(user_agent);
        let known =
            |s: &str| (!s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN).then(|| s.to_owned());
        let category = parsed.as_ref().map_or("", |p| p.category);
        let os = parsed.as_ref().and_then(|p| known(p.os));
        let bot = category == "crawler" || iscrawl::is_crawler(user_agent);
        let device_type = if bot {
            DeviceType::Bot
        } else {
            match category {
                "pc" => DeviceType::Desktop,
                "smartphone" | "mobilephone" => {
                    let tablet = user_agent.contains("iPad")
                        || user_agent.contains("Tablet")
                        || (user_agent.contains("Android") && !user_agent.contains("Mobile"));
                    if tablet {
                        DeviceType::Tablet
                    } else {
                        DeviceType::Mobile
                    }
                }
                _ => DeviceType::Other,
            }
        };
        Agent {
            browser: parsed.as_ref().and_then(|p| known(p.name)),
            browser_version: parsed.as_ref().and_then(|p| known(p.version)),
            os,
            os_version: parsed.as_ref().and_then(|p| known(&p.os_version)),
            device_type,
            bot,
        }
    }

    /// The object written to `context.agent`; `bot` only when `with_bot`, the rest only when
    /// `with_device`.
    pub(super) fn to_json(&self, with_device: bool, with_bot: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if with_device {
            let mut put = |key: &str, value: &Option<String>| {
                if let Some(value) = value {
                    out.insert(key.to_owned(), Value::String(value.clone()));
                }
            };
            put("browser", &self.browser);
            put("browserVersion", &self.browser_version);
            put("os", &self.os);
            put("osVersion", &self.os_version);
            out.insert(
                "deviceType".to_owned(),
                Value::String(self.device_type.as_str().to_owned()),
            );
        }
        if with_bot {
            out.insert("bot".to_owned(), Value::Bool(self.bot));
        }
        out
    }
}

/// Remembers parsed user agents: a batch usually carries a few user agents many times, and
/// parsing is the most expensive enrichment step. Bounded, so a stream of distinct agents
/// cannot grow it without limit.
#[derive(Debug, Default)]
pub struct AgentCache {
    parsed: HashMap<String, Cached, BuildHasherDefault<WordHasher>>,
}

#[derive(Debug)]
struct Cached {
    agent: Agent,
    /// `context.agent` as JSON text, for the switches it was built with.
    json: Option<((bool, bool), Arc<str>)>,
}

impl AgentCache {
    const CAPACITY: usize = 1_024;

    /// An empty cache.
    pub fn new() -> AgentCache {
        AgentCache::default()
    }

    /// The parsed agent for `user_agent`, parsing it on first sight.
    pub fn get(&mut self, user_agent: &str) -> &Agent {
        static UNKNOWN: Agent = Agent {
            browser: None,
            browser_version: None,
            os: None,
            os_version: None,
            device_type: DeviceType::Other,
            bot: false,
        };
        if !self.parsed.contains_key(user_agent) {
            self.remember(user_agent, Agent::parse(user_agent), None);
        }
        // Present: added just above when it was not.
        self.parsed.get(user_agent).map_or(&UNKNOWN, |c| &c.agent)
    }

    /// The `context.agent` object for `user_agent` as JSON text (see [`Agent::to_json`]).
    pub(super) fn json(&mut self, user_agent: &str, with_device: bool, with_bot: bool) -> Arc<str> {
        let switches = (with_device, with_bot);
        // Looked up by `&str`: an owned key is only made for a new agent.
        let known = self.parsed.get(user_agent);
        if let Some(Cached {
            json: Some((built_for, json)),
            ..
        }) = known
            && *built_for == switches
        {
            return Arc::clone(json);
        }
        let agent = known.map_or_else(|| Agent::parse(user_agent), |c| c.agent.clone());
        let json: Arc<str> = Value::Object(agent.to_json(with_device, with_bot))
            .to_string()
            .into();
        self.remember(user_agent, agent, Some((switches, Arc::clone(&json))));
        json
    }

    fn remember(&mut self, user_agent: &str, agent: Agent, json: Option<((bool, bool), Arc<str>)>) {
        if self.parsed.len() >= Self::CAPACITY && !self.parsed.contains_key(user_agent) {
            self.parsed.clear();
        }
        self.parsed
            .insert(user_agent.to_owned(), Cached { agent, json });
    }
}

/// A hasher for user-agent strings that reads eight bytes per step (`SipHash`, the default, costs
/// more than the rest of a cache hit). Not resistant to crafted collisions, which here could
/// only slow down lookups within one request's batch: the cache lives for one batch and is
/// bounded.
#[derive(Debug, Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0_u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

//! Destinations (`[[activate.destinations]]`): where the change log's entries are delivered,
//! what each receives, and how a delivery's failure moves its cursor — everything of the
//! runtime that is not I/O. The runtime (`braid_unifier::activate`) reads the change log after
//! a destination's cursor, makes each entry a message here ([`Destination::message`]), sends
//! the messages, and records what happened in the destination's state ([`DeliveryState`]).
//!
//! A message is an entry of the change log as a receiver reads it: a stable `id` (the change
//! log's: the same change has the same id in every rebuild, so a receiver recognizes a
//! redelivery), a `type` (`audience.entered`, `audience.exited`, `computed_trait.changed`),
//! the time, the profile, what changed, and (when the destination asks) the profile's
//! identifiers and chosen traits as they are when it is sent. The destination's mapping then
//! selects, renames, sets and fills its fields.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use super::settings::{DestinationConfig, DestinationKind, Mapping, MessageKind, Method};
use super::webhook::{self, Outcome, SigningKey};
use crate::catalogue::lake::is_valid_workspace;
use crate::unify::{Profile, ProfileIds};

/// The most messages one request carries.
pub const MAX_BATCH: usize = 100;

/// The longest a request may take, in seconds (Standard Webhooks asks receivers to answer
/// within 15 s; 30 s leaves room).
pub const MAX_TIMEOUT_SECONDS: u64 = 30;

/// Most destinations in a configuration (each has a loop, a client and a state object).
pub const MAX_DESTINATIONS: usize = 50;

/// The fields of a message before its mapping (others under `traits.` and `identifiers.`).
pub const MESSAGE_FIELDS: [&str; 16] = [
    "id",
    "type",
    "event",
    "timestamp",
    "workspace",
    "profile",
    "number",
    "audience",
    "audience_name",
    "reasons",
    "trait",
    "value",
    "approximate",
    "identifiers",
    "traits",
    "destination",
];

/// A destination that cannot be used, naming its setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("activate.destinations[{index}].{field}: {problem}")]
pub struct DestinationError {
    index: usize,
    field: String,
    problem: String,
}

/// A destination checked: its configuration, keys and allowed networks ready.
#[derive(Clone, Debug)]
pub struct Destination {
    index: usize,
    /// As configured (the workspace filled in).
    pub config: DestinationConfig,
    /// The workspace whose changes it receives.
    pub workspace: String,
    /// The signing keys, the current one first.
    pub keys: Vec<SigningKey>,
    /// The waits before each retry.
    pub schedule: Vec<Duration>,
    allowed: Vec<(IpAddr, u8)>,
}

/// The destinations of a configuration, checked: keys unique and path-safe, each workspace
/// configured, URLs, keys, sizes and mappings usable.
///
/// # Errors
///
/// The first [`DestinationError`] found.
pub fn check_all(
    configs: &[DestinationConfig],
    workspaces: &[&str],
) -> Result<Vec<Destination>, DestinationError> {
    if configs.len() > MAX_DESTINATIONS {
        return Err(DestinationError {
            index: MAX_DESTINATIONS,
            field: "key".to_owned(),
            problem: format!("at most {MAX_DESTINATIONS} destinations"),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let destination = Destination::check(index, config, workspaces)?;
        if !seen.insert(destination.config.key.clone()) {
            return Err(DestinationError {
                index,
                field: "key".to_owned(),
                problem: format!("{:?} is the key of an earlier destination", config.key),
            });
        }
        out.push(destination);
    }
    Ok(out)
}

impl Destination {
    /// Checks the destination at `index` of the configuration.
    ///
    /// # Errors
    ///
    /// [`DestinationError`] naming the setting and the rule.
    pub fn check(
        index: usize,
        config: &DestinationConfig,
        workspaces: &[&str],
    ) -> Result<Destination, DestinationError> {
        let fail = |field: &str, problem: String| DestinationError {
            index,
            field: field.to_owned(),
            problem,
        };
        if !is_valid_workspace(&config.key) {
            return Err(fail(
                "key",
                format!(
                    "{:?} must be 1-64 characters of a-z, 0-9, '_' and '-'",
                    config.key
                ),
            ));
        }
        let workspace = match (&config.workspace, workspaces) {
            // A document without workspaces is given them later (`braid serve` adds its
            // flags' or a demo one) and checked again then.
            (Some(name), []) => name.clone(),
            (None, []) => String::new(),
            (Some(name), _) if workspaces.contains(&name.as_str()) => name.clone(),
            (Some(name), _) => {
                return Err(fail(
                    "workspace",
                    format!("{name:?} is not a configured workspace"),
                ));
            }
            (None, [only]) => (*only).to_owned(),
            (None, _) => {
                return Err(fail(
                    "workspace",
                    "name the workspace whose changes it receives (there is not exactly one)"
                        .to_owned(),
                ));
            }
        };
        let kinds = config.kinds();
        if kinds.is_empty() {
            return Err(fail(
                "receives",
                "name what it receives: audience_entered, audience_exited, computed_trait, \
                 profile_changed"
                    .to_owned(),
            ));
        }
        let (keys, allowed) = match config.kind {
            DestinationKind::Webhook => check_webhook(config).map_err(|(f, p)| fail(&f, p))?,
            DestinationKind::Postgres => {
                super::postgres::check(config).map_err(|(f, p)| fail(&f, p))?;
                (Vec::new(), Vec::new())
            }
            DestinationKind::Files => {
                super::files::check(config).map_err(|(f, p)| fail(&f, p))?;
                (Vec::new(), Vec::new())
            }
        };
        if config.kind != DestinationKind::Files {
            for (field, set) in [
                ("format", config.format.is_some()),
                ("full_every_hours", config.full_every_hours.is_some()),
            ] {
                if set {
                    return Err(fail(field, "a setting of a files destination".to_owned()));
                }
            }
        }
        if config.wait_seconds.is_some_and(|w| w > 86_400) {
            return Err(fail(
                "wait_seconds",
                format!(
                    "{} seconds: at most 86400",
                    config.wait_seconds.unwrap_or_default()
                ),
            ));
        }
        let schedule = check_sizes(config).map_err(|(field, problem)| fail(field, problem))?;
        let mut config = config.clone();
        config.workspace = Some(workspace.clone());
        config.receives = Some(kinds);
        config.batch = Some(config.batch.unwrap_or(match config.kind {
            DestinationKind::Webhook => 1,
            DestinationKind::Postgres => super::postgres::DEFAULT_BATCH,
            DestinationKind::Files => super::files::DEFAULT_BATCH,
        }));
        config.wait_seconds = Some(config.wait_seconds.unwrap_or(match config.kind {
            DestinationKind::Files => 3_600,
            _ => 0,
        }));
        Ok(Destination {
            index,
            config,
            workspace,
            keys,
            schedule,
            allowed,
        })
    }

    /// Whether it has its signing key (every delivery is signed).
    ///
    /// # Errors
    ///
    /// Without one, naming the setting and the variable that may hold it.
    pub fn require_key(&self) -> Result<(), DestinationError> {
        if self.config.kind == DestinationKind::Webhook && self.config.secret.is_empty() {
            return Err(DestinationError {
                index: self.index,
                field: "secret".to_owned(),
                problem: format!(
                    "every delivery is signed: set a whsec_ key here or in {}",
                    secret_variable(&self.config.key)
                ),
            });
        }
        Ok(())
    }

    /// Its URL as it may be shown: a password in it as `***`, and its query (which may hold
    /// one: `?password=`) as `?…`.
    pub fn shown_url(&self) -> String {
        let url = &self.config.url;
        let (url, query) = match url.split_once('?') {
            Some((url, _)) => (url, "?…"),
            None => (url.as_str(), ""),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return format!("{url}{query}");
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((name, _)) => format!("{name}:***@{host}"),
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        format!("{scheme}://{authority}{path}{query}")
    }

    /// Its key.
    pub fn key(&self) -> &str {
        &self.config.key
    }

    /// Whether it may be sent to `ip`: an address that is neither private nor local, or one
    /// of its allow-list. The reason when it may not.
    pub fn address_refused(&self, ip: IpAddr) -> Option<&'static str> {
        let why = webhook::forbidden_address(ip)?;
        let allowed = self
            .allowed
            .iter()
            .any(|(network, bits)| in_network(ip, *network, *bits));
        (!allowed).then_some(why)
    }

    /// Whether its messages go alone (one per request) or in batches.
    pub fn batched(&self) -> bool {
        self.batch() > 1
    }

    /// The most messages a request carries.
    pub fn batch(&self) -> usize {
        self.config.batch.unwrap_or(1)
    }

    /// How long a request may wait for more messages.
    pub fn wait(&self) -> Duration {
        Duration::from_secs(self.config.wait_seconds.unwrap_or(0))
    }

    /// What it receives.
    pub fn receives(&self) -> &[MessageKind] {
        self.config.receives.as_deref().unwrap_or_default()
    }

    /// Whether `profile` grants every consent category the destination names (a destination
    /// that names none takes every profile; a profile that is gone grants nothing).
    pub fn granted(&self, profile: Option<&ProfileView>) -> bool {
        self.config.consent.is_empty()
            || profile.is_some_and(|p| self.config.consent.iter().all(|c| p.grants(c)))
    }

    /// The profiles a request's messages name, as a destination that keeps every profile
    /// writes them: each once, in the order first met, with its whole view as it is now
    /// (`None`: gone, or not granting the consent) and the number of its last change.
    pub fn latest<'a>(
        &self,
        messages: &'a [Message],
        views: &'a [Option<ProfileView>],
    ) -> Vec<(&'a str, Option<&'a Value>, u64)> {
        let mut out: Vec<(&str, Option<&Value>, u64)> = Vec::new();
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (message, view) in messages.iter().zip(views) {
            let Some(id) = message.body.get("profile").and_then(Value::as_str) else {
                continue;
            };
            let whole = view
                .as_ref()
                .filter(|v| self.granted(Some(v)))
                .and_then(|v| v.profile.as_ref());
            let latest = (id, whole, message.number);
            if let Some(slot) = at.get(id).and_then(|&i| out.get_mut(i)) {
                *slot = latest;
            } else {
                at.insert(id, out.len());
                out.push(latest);
            }
        }
        out
    }

    /// The message of a change log entry (`braid_core::segment::Logged::to_json`) for this
    /// destination, or `None` when it does not receive it (its kind, audience or trait, or a
    /// profile that does not grant its consent). `profile` is the profile as it is now
    /// (`None` when it is gone, merged into another).
    pub fn message(&self, entry: &Value, profile: Option<&ProfileView>) -> Option<Message> {
        let kind = MessageKind::of_entry(entry)?;
        if !self.receives().contains(&kind) {
            return None;
        }
        let text = |field: &str| entry.get(field).and_then(Value::as_str);
        let named = match kind {
            MessageKind::AudienceEntered | MessageKind::AudienceExited => {
                (&self.config.audiences, text("audience"))
            }
            MessageKind::ComputedTrait => (&self.config.computed_traits, text("trait")),
            MessageKind::ProfileChanged => (&Vec::new(), None),
        };
        if !named.0.is_empty() && !named.1.is_some_and(|n| named.0.iter().any(|a| a == n)) {
            return None;
        }
        // A database or an export is sent every change: its rows of a profile without the
        // consent are deleted (`super::postgres`, `super::files`), where a webhook is never
        // sent one.
        if self.config.kind == DestinationKind::Webhook && !self.granted(profile) {
            return None;
        }
        let mut message = Map::new();
        message.insert("id".into(), entry.get("id").cloned().unwrap_or_default());
        message.insert("type".into(), json!(kind.message_type()));
        if let Some(event) = entry.get("event") {
            message.insert("event".into(), event.clone());
        }
        match text("type") {
            Some("profile_updated") => _ = message.insert("change".into(), json!("updated")),
            Some("profile_merged") => _ = message.insert("change".into(), json!("merged")),
            _ => {}
        }
        message.insert(
            "timestamp".into(),
            entry.get("at").cloned().unwrap_or_default(),
        );
        message.insert("workspace".into(), json!(self.workspace));
        message.insert("destination".into(), json!(self.config.key));
        for (from, to) in [
            ("profile", "profile"),
            ("number", "number"),
            ("audience", "audience"),
            ("name", "audience_name"),
            ("reasons", "reasons"),
            ("trait", "trait"),
            ("value", "value"),
            ("approximate", "approximate"),
            ("into", "merged_into"),
        ] {
            if let Some(value) = entry.get(from) {
                message.insert(to.into(), value.clone());
            }
        }
        if self.config.identifiers {
            let identifiers = profile.map(|p| p.identifiers.clone()).unwrap_or_default();
            message.insert("identifiers".into(), Value::Object(identifiers));
        }
        if !self.config.traits.is_empty() {
            let traits: Map<String, Value> = self
                .config
                .traits
                .iter()
                .filter_map(|name| {
                    let value = profile?.traits.get(name)?;
                    Some((name.clone(), value.clone()))
                })
                .collect();
            message.insert("traits".into(), Value::Object(traits));
        }
        Some(Message {
            id: text("id").unwrap_or_default().to_owned(),
            number: entry
                .get("number")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
            at: text("at")
                .and_then(|at| crate::timestamp::parse(at).ok())
                .map(crate::timestamp::unix_millis),
            body: self.config.mapping.apply(Value::Object(message)),
        })
    }

    /// The body of a request carrying `messages` (at least one), and its `webhook-id`: one
    /// message alone is its body and its id; a batch is `{"batch": [...]}`, its id made of
    /// its messages' ids (the same messages, the same id). Ids are the change log's, whatever
    /// the mapping kept of the bodies.
    pub fn body(&self, messages: &[Message]) -> (String, Vec<u8>) {
        let id = self.request_id(messages);
        let body = match messages {
            [one] if !self.batched() => serde_json::to_vec(&one.body),
            _ => {
                let bodies: Vec<&Value> = messages.iter().map(|m| &m.body).collect();
                serde_json::to_vec(&json!({ "batch": bodies }))
            }
        };
        (id, body.unwrap_or_default())
    }

    /// The id of a request carrying `messages`: `msg_` and its message's id when it goes
    /// alone, else `batch_` and a hash of its messages' ids.
    pub fn request_id(&self, messages: &[Message]) -> String {
        match messages {
            [one] if !self.batched() => format!("msg_{}", one.id),
            _ => {
                use sha2::Digest as _;
                let mut hash = sha2::Sha256::new();
                for message in messages {
                    hash.update(message.id.as_bytes());
                    hash.update(b"\n");
                }
                let digest = hash.finalize();
                format!(
                    "batch_{}",
                    crate::hex::encode(digest.get(..16).unwrap_or_default())
                )
            }
        }
    }
}

/// A message for a destination: what it sends (`body`, mapped), and what the runtime keeps
/// of the change whatever the mapping kept — its id, its number in the change log, its time.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The change's stable id.
    pub id: String,
    /// Its number in the change log.
    pub number: u64,
    /// When it happened (ms).
    pub at: Option<i64>,
    /// The body sent, after the mapping.
    pub body: Value,
}

/// A webhook's URL, signing keys, allow-list and mapping: its keys and allowed networks.
#[expect(
    clippy::type_complexity,
    reason = "the two lists a webhook's check gives"
)]
fn check_webhook(
    config: &DestinationConfig,
) -> Result<(Vec<SigningKey>, Vec<(IpAddr, u8)>), (String, String)> {
    check_url(&config.url).map_err(|problem| ("url".to_owned(), problem))?;
    for (field, set) in [
        ("schema", config.schema.is_some()),
        ("table_prefix", config.table_prefix.is_some()),
        ("columns", !config.columns.is_empty()),
    ] {
        if set {
            return Err((
                field.to_owned(),
                "a setting of a postgres destination, not of a webhook".to_owned(),
            ));
        }
    }
    // A destination without its key checks here (the Worker and the ingest function
    // read the same document without the key, which only the deliverer is given); the
    // deliverer refuses it ([`Destination::require_key`]).
    let mut keys = Vec::new();
    if !config.secret.is_empty() {
        keys.push(
            SigningKey::parse("secret", &config.secret)
                .map_err(|e| ("secret".to_owned(), e.to_string()))?,
        );
    }
    for (n, previous) in config.previous_secrets.iter().enumerate() {
        let field = format!("previous_secrets[{n}]");
        keys.push(SigningKey::parse(&field, previous).map_err(|e| (field, e.to_string()))?);
    }
    if keys.len() > 4 {
        return Err((
            "previous_secrets".to_owned(),
            "at most 3 keys besides the current one".to_owned(),
        ));
    }
    if config.segment_secret.len() > 1_000 {
        return Err(("segment_secret".to_owned(), "at most 1000 bytes".to_owned()));
    }
    let allowed = config
        .allow_addresses
        .iter()
        .enumerate()
        .map(|(n, text)| {
            parse_network(text).ok_or_else(|| {
                (
                    format!("allow_addresses[{n}]"),
                    format!("{text:?} is not an address or a network (10.0.0.0/8)"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    config
        .mapping
        .check(&config.traits)
        .map_err(|(field, problem)| (format!("mapping.{field}"), problem))?;
    Ok((keys, allowed))
}

/// The sizes of a destination (batch, timeout, retry waits, disabling, lists of names), and
/// its retry schedule.
fn check_sizes(config: &DestinationConfig) -> Result<Vec<Duration>, (&'static str, String)> {
    let (batch, most) = match config.kind {
        DestinationKind::Webhook => (config.batch.unwrap_or(1), MAX_BATCH),
        DestinationKind::Postgres => (
            config.batch.unwrap_or(super::postgres::DEFAULT_BATCH),
            super::postgres::MAX_BATCH,
        ),
        DestinationKind::Files => (
            config.batch.unwrap_or(super::files::DEFAULT_BATCH),
            super::files::MAX_BATCH,
        ),
    };
    if !(1..=most).contains(&batch) {
        return Err((
            "batch",
            format!("{batch} messages per request: 1 to {most}"),
        ));
    }
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&config.timeout_seconds) {
        return Err((
            "timeout_seconds",
            format!(
                "{} seconds: 1 to {MAX_TIMEOUT_SECONDS}",
                config.timeout_seconds
            ),
        ));
    }
    let schedule = match &config.retry_seconds {
        None => webhook::RETRY_SCHEDULE.to_vec(),
        Some(waits) if waits.len() > 20 || waits.iter().any(|w| *w > 86_400) => {
            return Err((
                "retry_seconds",
                "at most 20 waits, each at most 86400 seconds".to_owned(),
            ));
        }
        Some(waits) => waits.iter().map(|w| Duration::from_secs(*w)).collect(),
    };
    if config.disable_after_hours == 0 || config.disable_after_hours > 24 * 30 {
        return Err((
            "disable_after_hours",
            format!("{} hours: 1 to 720", config.disable_after_hours),
        ));
    }
    for (field, names) in [
        ("audiences", &config.audiences),
        ("computed_traits", &config.computed_traits),
        ("consent", &config.consent),
        ("traits", &config.traits),
    ] {
        if names.len() > 100 || names.iter().any(|n| n.is_empty() || n.len() > 200) {
            return Err((field, "at most 100 names, each 1-200 bytes".to_owned()));
        }
    }
    Ok(schedule)
}

/// The environment variable that may hold destination `key`'s signing key.
pub fn secret_variable(key: &str) -> String {
    format!(
        "BRAID_DESTINATION_{}_SECRET",
        key.to_ascii_uppercase().replace('-', "_")
    )
}

/// The environment variable that may hold destination `key`'s `segment_secret`.
pub fn segment_secret_variable(key: &str) -> String {
    format!(
        "BRAID_DESTINATION_{}_SEGMENT_SECRET",
        key.to_ascii_uppercase().replace('-', "_")
    )
}

/// Whether `url` is an `http(s)://host[:port][/path]` URL without credentials or fragment.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with https:// (or http://)"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "{url:?} carries credentials: receivers verify the signature instead"
        ));
    }
    if url.contains('#') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{url:?} holds a fragment, a space or a control character"
        ));
    }
    if url.len() > 2_048 {
        return Err("longer than 2048 bytes".to_owned());
    }
    Ok(())
}

/// `10.0.0.0/8`, or an address alone (all its bits).
fn parse_network(text: &str) -> Option<(IpAddr, u8)> {
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let ip: IpAddr = address.parse().ok()?;
    let most = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(most);
    (bits <= most).then_some((ip, bits))
}

fn in_network(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    let prefix = |value: u128, width: u32| {
        let shift = width.saturating_sub(u32::from(bits));
        value.checked_shr(shift).unwrap_or(0)
    };
    match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            prefix(u128::from(u32::from(a)), 32) == prefix(u128::from(u32::from(b)), 32)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => prefix(u128::from(a), 128) == prefix(u128::from(b), 128),
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_network(IpAddr::V4(v4), network, bits)),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

impl Mapping {
    /// Whether its paths name fields of a message (`traits.X` for a trait it carries).
    fn check(&self, traits: &[String]) -> Result<(), (String, String)> {
        let known = |path: &str| {
            let (head, rest) = path.split_once('.').unwrap_or((path, ""));
            match head {
                "traits" => rest.is_empty() || traits.iter().any(|t| t == rest),
                "identifiers" => true,
                _ => rest.is_empty() && MESSAGE_FIELDS.contains(&head),
            }
        };
        let unknown = |path: &str| {
            format!(
                "{path:?} is not a field of a message ({}, traits.<a trait it carries>, \
                 identifiers.<type>)",
                MESSAGE_FIELDS.join(", ")
            )
        };
        let valid_target = |path: &str| {
            !path.is_empty() && path.len() <= 200 && path.split('.').all(|part| !part.is_empty())
        };
        for (n, path) in self.select.iter().enumerate() {
            if !known(path) {
                return Err((format!("select[{n}]"), unknown(path)));
            }
        }
        for (from, to) in &self.rename {
            if !known(from) {
                return Err((format!("rename.{from}"), unknown(from)));
            }
            if !valid_target(to) {
                return Err((
                    format!("rename.{from}"),
                    format!("{to:?} is not a field name"),
                ));
            }
        }
        for target in self.constants.keys().chain(self.templates.keys()) {
            if !valid_target(target) {
                return Err((target.clone(), format!("{target:?} is not a field name")));
            }
        }
        for (target, template) in &self.templates {
            for place in places(template).map_err(|problem| (target.clone(), problem))? {
                if !known(place) {
                    return Err((format!("templates.{target}"), unknown(place)));
                }
            }
        }
        Ok(())
    }

    /// `message` mapped.
    pub fn apply(&self, message: Value) -> Value {
        if self.select.is_empty()
            && self.rename.is_empty()
            && self.constants.is_empty()
            && self.templates.is_empty()
        {
            return message;
        }
        let mut out = if self.select.is_empty() {
            message.clone()
        } else {
            let mut kept = Value::Object(Map::new());
            for path in &self.select {
                if let Some(value) = get_path(&message, path) {
                    set_path(&mut kept, path, value.clone());
                }
            }
            kept
        };
        for (from, to) in &self.rename {
            if let Some(value) = take_path(&mut out, from) {
                set_path(&mut out, to, value);
            }
        }
        for (target, value) in &self.constants {
            set_path(&mut out, target, value.clone());
        }
        for (target, template) in &self.templates {
            set_path(&mut out, target, Value::String(fill(template, &message)));
        }
        out
    }
}

/// The `{field}` places of a template (`{{` and `}}` are braces).
fn places(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        let after = rest.get(open + 1..).unwrap_or_default();
        if rest
            .get(open..)
            .is_some_and(|r| r.starts_with("{{") || r.starts_with("}}"))
        {
            rest = after.get(1..).unwrap_or_default();
            continue;
        }
        if rest.get(open..).is_some_and(|r| r.starts_with('}')) {
            return Err(format!("{template:?} has a '}}' without its '{{'"));
        }
        let close = after
            .find('}')
            .ok_or_else(|| format!("{template:?} has a '{{' without its '}}'"))?;
        out.push(after.get(..close).unwrap_or_default());
        rest = after.get(close + 1..).unwrap_or_default();
    }
    Ok(out)
}

/// `template` with each `{field}` replaced by the field's value (text as it is, other values
/// as JSON, nothing for a field the message lacks).
fn fill(template: &str, message: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(rest.get(..open).unwrap_or_default());
        let from = rest.get(open..).unwrap_or_default();
        if from.starts_with("{{") || from.starts_with("}}") {
            out.push_str(from.get(..1).unwrap_or_default());
            rest = from.get(2..).unwrap_or_default();
            continue;
        }
        let Some(close) = from.find('}') else {
            break;
        };
        match get_path(message, from.get(1..close).unwrap_or_default()) {
            Some(Value::String(text)) => out.push_str(text),
            Some(Value::Null) | None => {}
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = from.get(close + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

fn get_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |at, part| at.get(part))
}

fn take_path(value: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (
            parent
                .split('.')
                .try_fold(&mut *value, |at, part| at.get_mut(part))?,
            last,
        ),
        None => (value, path),
    };
    parent.as_object_mut()?.remove(last)
}

fn set_path(value: &mut Value, path: &str, new: Value) {
    let mut at = value;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(fields) = at else {
            return;
        };
        if parts.peek().is_none() {
            fields.insert(part.to_owned(), new);
            return;
        }
        at = fields
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// What a message may carry of a profile as it is when it is sent: its identifiers by type,
/// its traits' values, its latest consent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileView {
    /// Identifier type → its values.
    pub identifiers: Map<String, Value>,
    /// Trait name → value.
    pub traits: BTreeMap<String, Value>,
    /// Consent category → granted.
    pub consent: BTreeMap<String, bool>,
    /// The whole profile as the profile API shows it, when asked for
    /// ([`ProfileView::with_profile`]: a database destination writes it).
    pub profile: Option<Value>,
}

impl ProfileView {
    /// The view of a profile, carrying `traits` of its traits.
    pub fn of(ids: &ProfileIds, profile: &Profile, traits: &[String]) -> ProfileView {
        let mut identifiers = Map::new();
        for id in ids.identifiers.keys() {
            let values = identifiers
                .entry(id.kind.as_str().to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(values) = values {
                values.push(Value::String(id.value.clone()));
            }
        }
        ProfileView {
            identifiers,
            traits: traits
                .iter()
                .filter_map(|name| Some((name.clone(), profile.traits.get(name)?.value.clone())))
                .collect(),
            consent: profile
                .consent
                .as_ref()
                .map(|(_, choices)| choices.clone())
                .unwrap_or_default(),
            profile: None,
        }
    }

    /// The same, with the whole profile as the profile API shows it.
    #[must_use]
    pub fn with_profile(mut self, ids: &ProfileIds, profile: &Profile) -> ProfileView {
        self.profile = Some(crate::unify::profile_view(ids, profile));
        self
    }

    /// Whether its latest consent grants `category`.
    pub fn grants(&self, category: &str) -> bool {
        self.consent.get(category).copied().unwrap_or(false)
    }
}

/// A full copy under way: every profile, page by page, before the changes after `through`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copying {
    /// The last change durable when it started: the changes after it follow the copy.
    pub through: u64,
    /// The last profile copied (none yet when empty).
    pub after: String,
}

/// A destination's state, kept by the runtime between deliveries (in the lake, so that a
/// restart and another process go on from it): where its cursor is in the change log, what
/// it delivered, and the failure it is retrying.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryState {
    /// The profile store's generation the cursor counts in (a rebuild numbers its change log
    /// anew: the cursor starts again, and receivers recognize redeliveries by id).
    pub generation: u64,
    /// A destination that keeps a copy of every profile (a database): the number of its
    /// latest full copy (its rows are written with it, and older ones deleted at its end).
    pub sync: u64,
    /// The full copy under way, if one is.
    pub copy: Option<Copying>,
    /// Profiles written by full copies.
    pub copied: u64,
    /// Dead letters delivered by replays (`braid destinations replay`).
    pub replayed: u64,
    /// When the last full copy was complete (ms).
    pub copied_at: Option<i64>,
    /// The change log's number of the last entry done with (delivered, skipped or dead).
    pub after: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Requests delivered.
    pub requests: u64,
    /// Entries it does not receive (kind, audience, trait or consent).
    pub skipped: u64,
    /// Messages kept as dead letters.
    pub dead_lettered: u64,
    /// Attempts that failed.
    pub failed_attempts: u64,
    /// Entries that expired from the change log before they were delivered.
    pub expired: u64,
    /// The failure being retried.
    pub retrying: Option<Retrying>,
    /// Since when every attempt failed (ms): past `disable_after_hours`, it is disabled.
    pub failing_since: Option<i64>,
    /// When and why it was disabled (410, or failing too long).
    pub disabled: Option<Disabled>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it last delivered (ms).
    pub last_delivered_at: Option<i64>,
    /// The time of the last entry delivered (ms).
    pub last_entry_at: Option<i64>,
    /// The time of the first entry after the cursor, when there is one (ms): the lag is now
    /// less this.
    pub oldest_pending_at: Option<i64>,
}

impl DeliveryState {
    /// In a word: `switched off` (by its `enabled`), `disabled`, `retrying` or `delivering`.
    pub fn status(&self, enabled: bool) -> &'static str {
        if !enabled {
            "switched off"
        } else if self.disabled.is_some() {
            "disabled"
        } else if self.retrying.is_some() {
            "retrying"
        } else if self.copy.is_some() {
            "copying"
        } else {
            "delivering"
        }
    }

    /// The status report of `destination` in this state at `now` (ms), as `braid destinations
    /// status --json` prints it and `GET /v1/destinations` answers it.
    pub fn report(&self, destination: &Destination, now: i64) -> Value {
        json!({"destination": destination.key(), "workspace": destination.workspace,
               "type": destination.config.kind, "url": destination.shown_url(),
               "status": self.status(destination.config.enabled), "state": self,
               "lag_seconds": self.lag_millis(now).map(|lag| lag / 1000)})
    }

    /// How far behind it is at `now` (ms): the age of the first change it has not done with,
    /// when there is one.
    pub fn lag_millis(&self, now: i64) -> Option<i64> {
        self.oldest_pending_at.map(|at| (now - at).max(0))
    }
}

/// The failure being retried: the batch's end (the same messages are sent again), how many
/// attempts failed, since when, and when the next is due.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retrying {
    /// The number of the batch's last entry.
    pub through: u64,
    /// Attempts that failed.
    pub attempts: u32,
    /// The first failure (ms).
    pub since: i64,
    /// The next attempt (ms).
    pub next_at: i64,
}

/// Why a destination was disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    /// When (ms).
    pub at: i64,
    /// Why.
    pub reason: String,
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delivered: move the cursor past the batch.
    Delivered,
    /// Try the same batch again at this time (ms).
    RetryAt(i64),
    /// Keep the batch as dead letters and move past it.
    DeadLetter {
        /// The failure class ([`FAILURE_CLASSES`]).
        class: &'static str,
        /// The attempts made.
        attempts: u32,
    },
    /// Disable the destination (the batch stays where it is, to be delivered once it is
    /// enabled again), for this reason.
    Disable(String),
}

/// The failure classes of dead letters (`braid destinations replay --class`).
pub const FAILURE_CLASSES: [&str; 2] = ["refused", "retries_exhausted"];

impl DeliveryState {
    /// What to do after an attempt to deliver the batch ending at `through`, at `now` (ms),
    /// that had `status` (`None`: no answer) and asked to wait `retry_after`; `error` says what
    /// happened, for the status. `jitter` is in `0.0..1.0`. The state is updated (counts,
    /// retry, disabled) except the cursor, which the runtime moves once the step is done.
    #[expect(clippy::too_many_arguments, reason = "one attempt's facts")]
    pub fn after_attempt(
        &mut self,
        destination: &Destination,
        through: u64,
        now: i64,
        status: Option<u16>,
        retry_after: Option<Duration>,
        error: &str,
        jitter: f64,
    ) -> Step {
        let outcome = webhook::outcome(status);
        if outcome == Outcome::Delivered {
            self.retrying = None;
            self.failing_since = None;
            return Step::Delivered;
        }
        self.failed_attempts += 1;
        let failing_since = *self.failing_since.get_or_insert(now);
        self.last_error = Some(error.to_owned());
        let retrying = self
            .retrying
            .take()
            .filter(|r| r.through == through)
            .unwrap_or(Retrying {
                through,
                attempts: 0,
                since: now,
                next_at: now,
            });
        let attempts = retrying.attempts.saturating_add(1);
        let disable_after = i64::try_from(destination.config.disable_after_hours)
            .unwrap_or(i64::MAX)
            .saturating_mul(3_600_000);
        match outcome {
            Outcome::Gone => {
                return Step::Disable(format!("the receiver answered 410 Gone: {error}"));
            }
            Outcome::Permanent => {
                return Step::DeadLetter {
                    class: "refused",
                    attempts,
                };
            }
            Outcome::Retry | Outcome::Delivered => {}
        }
        if now.saturating_sub(failing_since) >= disable_after {
            return Step::Disable(format!(
                "failing for {} hours: {error}",
                destination.config.disable_after_hours
            ));
        }
        match webhook::retry_wait(&destination.schedule, attempts, retry_after, jitter) {
            Some(wait) => {
                let next_at =
                    now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                self.retrying = Some(Retrying {
                    through,
                    attempts,
                    since: retrying.since,
                    next_at,
                });
                Step::RetryAt(next_at)
            }
            None => Step::DeadLetter {
                class: "retries_exhausted",
                attempts,
            },
        }
    }
}

#[cfg(test)]
mod tests;

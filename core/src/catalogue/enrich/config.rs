//! Switches for each enrichment step.

use serde::{Deserialize, Serialize};

/// What to do with the client's IP address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpPolicy {
    /// Keep the network part only: IPv4 /24, IPv6 /48 (the default).
    #[default]
    Anonymize,
    /// Keep the full address.
    Keep,
    /// Store no address at all.
    Drop,
}

/// Which enrichment steps run. All are on by default.
#[expect(
    clippy::struct_excessive_bools,
    reason = "one switch per enrichment step, as braid.toml spells them"
)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Set `receivedAt` to the time the server received the request.
    pub received_at: bool,
    /// Correct `timestamp` for the client's clock skew: `receivedAt − (sentAt − originalTimestamp)`.
    pub skew_correction: bool,
    /// What to do with the client IP (`context.ip`).
    pub ip: IpPolicy,
    /// Parse the user agent into `context.agent` (browser, OS, device type).
    pub user_agent: bool,
    /// Flag bots and crawlers in `context.agent.bot`.
    pub bot: bool,
    /// Fill `context.campaign` from UTM parameters of the page URL when the client did not.
    pub campaign: bool,
    /// Classify the referrer into `context.referrer.type`.
    pub referrer: bool,
    /// Give events without a `messageId` one derived from their content.
    pub message_id: bool,
    /// Domains whose referrers count as internal besides the page's own host.
    pub internal_domains: Vec<String>,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            received_at: true,
            skew_correction: true,
            ip: IpPolicy::Anonymize,
            user_agent: true,
            bot: true,
            campaign: true,
            referrer: true,
            message_id: true,
            internal_domains: Vec::new(),
        }
    }
}

//! `[catalogue]`: what an event may be (limits), what is added to it (enrichment), and how the
//! lake is kept (compaction).

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use super::enrich::EnrichConfig;
use super::plan::TrackingPlan;
use super::validate::Limits;

/// The catalogue's part of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogueConfig {
    /// Keep the data map (`braid catalogue`, `GET /v1/catalogue`) as events are unified.
    pub data_map: bool,
    /// Size and count limits of requests and events.
    pub limits: Limits,
    /// Enrichment switches.
    pub enrich: EnrichConfig,
    /// How the small objects of closed hours are merged.
    pub compaction: CompactionConfig,
    /// The catalogue API (`GET /v1/catalogue`): off without a token.
    pub api: Option<CatalogueApiConfig>,
    /// A tracking plan file (JSON, `braid catalogue plan` writes one), read by `braid serve`
    /// and the commands into `plan`; relative to the configuration file.
    pub tracking_plan: Option<PathBuf>,
    /// The tracking plan itself (`docs/catalogue.md`): inline in a JSON configuration (the
    /// Worker's and the Lambda functions'), or read from `tracking_plan`.
    pub plan: Option<TrackingPlan>,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        CatalogueConfig {
            data_map: true,
            limits: Limits::default(),
            enrich: EnrichConfig::default(),
            compaction: CompactionConfig::default(),
            api: None,
            tracking_plan: None,
            plan: None,
        }
    }
}

/// The catalogue API: the data map, for whoever holds its admin token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogueApiConfig {
    /// The bearer token (`Authorization: Bearer <token>`), never a write key. Secret: may come
    /// from `BRAID_CATALOGUE_TOKEN` instead.
    pub token: String,
}

/// Compaction of the lake (`docs/lake-layout.md`): the small per-request objects of an hour are
/// merged once the hour is closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Minutes after an hour ends before it is compacted (late retries land in their hour).
    pub grace_minutes: i64,
    /// Uncompressed megabytes per compacted object.
    pub target_megabytes: usize,
    /// Merge only objects the unify step has applied, so that none is taken away unread.
    pub require_unified: bool,
    /// `braid serve`: how often it compacts its closed hours, in minutes (0: never; `braid
    /// compact` then does it by hand).
    pub every_minutes: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            grace_minutes: 15,
            target_megabytes: 64,
            require_unified: true,
            every_minutes: 10,
        }
    }
}

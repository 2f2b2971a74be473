//! Where `braid` finds its configuration: `--config FILE`, else `./braid.toml` when it exists,
//! else every default; then the secrets of the environment (`BRAID_FORWARD_SECRET`, ...) and
//! the command's flags. The model and its checks are `braid_core::config`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use braid_core::Config;

/// The configuration of a command: the file (given, or `./braid.toml`, or none), with the
/// environment's secrets, its relative paths taken from the file's folder.
pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let default = Path::new("braid.toml");
    let path = path.or_else(|| default.exists().then_some(default));
    let Some(path) = path else {
        return Ok(Config::load(None, secret)?);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let invalid = || format!("invalid {}", path.display());
    let mut config = Config::parse(&text).with_context(invalid)?;
    if let Some(folder) = path.parent() {
        config = config.relative_to(folder);
    }
    read_plan(&mut config)?;
    config.with_secrets(secret).check().with_context(invalid)
}

/// Reads the tracking plan file the configuration names (`[catalogue] tracking_plan`).
pub(crate) fn read_plan(config: &mut Config) -> anyhow::Result<()> {
    let Some(file) = &config.catalogue.tracking_plan else {
        return Ok(());
    };
    if config.catalogue.plan.is_some() {
        anyhow::bail!(
            "give the tracking plan as catalogue.tracking_plan or as catalogue.plan, not both"
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the tracking plan {}", file.display()))?;
    let plan = braid_core::catalogue::plan::TrackingPlan::parse(&text)
        .with_context(|| format!("invalid {}", file.display()))?;
    config.catalogue.plan = Some(plan);
    Ok(())
}

fn secret(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The demo workspace's write key: kept in the data folder so it stays the same across
/// restarts, made at random on first start.
pub(crate) fn demo_write_key(data: &Path) -> anyhow::Result<String> {
    let path = data.join("demo-write-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let key = existing.trim();
        if !key.is_empty() {
            return Ok(key.to_owned());
        }
    }
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let mut key = String::from("demo_");
    for byte in bytes {
        write!(key, "{byte:02x}")?;
    }
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    std::fs::write(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

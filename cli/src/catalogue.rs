//! `braid catalogue`: the data map of a data folder (what arrived, per source, event and
//! property, and its quality flags) as tables in a terminal or as JSON; `braid catalogue
//! rebuild` recomputes it from the lake (with the profiles, by the same code as the live path).

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use braid_core::catalogue::map::{FlagKind, MapView, PiiClass, view};
use braid_unifier::profiles::kv::{KvHome as _, LocalHome, SlateOptions};
use braid_unifier::serve::local_profiles;

use crate::profiles::{ProfilesArgs, open_data, workspaces};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct CatalogueArgs {
    #[command(subcommand)]
    command: Option<CatalogueCommand>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(clap::Subcommand)]
enum CatalogueCommand {
    /// Recompute the data map from the lake (with the profiles: `braid profiles rebuild`);
    /// `braid serve` must not be running on the data folder.
    Rebuild(ProfilesArgs),
    /// Write a tracking plan of what the data map observed (JSON: one schema per event), to
    /// edit and enforce with `[catalogue] tracking_plan` or `braid serve --tracking-plan`.
    Plan(PlanArgs),
}

#[derive(clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    common: ProfilesArgs,
    /// Write here instead of stdout.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct ShowArgs {
    #[command(flatten)]
    common: ProfilesArgs,
    /// Print the map as JSON (every event with its properties) instead of tables.
    #[arg(long)]
    json: bool,
    /// Show the properties of the events of this name (a track's event, a page's name; `identify`
    /// or another type for events without a name).
    #[arg(long)]
    event: Option<String>,
}

pub(crate) async fn run(args: CatalogueArgs) -> anyhow::Result<()> {
    match args.command {
        Some(CatalogueCommand::Rebuild(common)) => crate::profiles::rebuild(&common).await,
        Some(CatalogueCommand::Plan(args)) => plan(&args).await,
        None => show(&args.show).await,
    }
}

/// `braid catalogue plan`: the plan of one workspace's map (the first, without --workspace).
async fn plan(args: &PlanArgs) -> anyhow::Result<()> {
    let (config, lake) = open_data(args.common.config.as_deref(), args.common.data.as_deref())?;
    let home = LocalHome::open_to_read(&config.server.data, SlateOptions::default())?;
    let profiles = local_profiles(&config, &lake, home);
    let workspace = workspaces(&args.common, &config.server.data)?
        .into_iter()
        .next()
        .context("no workspace has events in this data folder")?;
    let map = profiles.data_map(&workspace).await?.unwrap_or_default();
    profiles.close().await?;
    let plan = braid_core::catalogue::plan::from_map(&map);
    let mut text = serde_json::to_string_pretty(&plan)?;
    text.push('\n');
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    eprintln!(
        "workspace {workspace:?}: a plan of {} events (mode allow: set \"block\" or \"omit\" to enforce)",
        plan.events.len()
    );
    Ok(())
}

async fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let (config, lake) = open_data(args.common.config.as_deref(), args.common.data.as_deref())?;
    let home = LocalHome::open_to_read(&config.server.data, SlateOptions::default())?;
    if home.read_only() {
        eprintln!(
            "braid serve is running on {}: reading what its profile store has made durable",
            config.server.data.display()
        );
    }
    let profiles = local_profiles(&config, &lake, home);
    let mut maps = Vec::new();
    for workspace in workspaces(&args.common, &config.server.data)? {
        if let Some(map) = profiles.data_map(&workspace).await? {
            maps.push((workspace, view(&map)));
        }
    }
    profiles.close().await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let all: serde_json::Map<String, serde_json::Value> = maps
            .into_iter()
            .map(|(w, v)| Ok((w, serde_json::to_value(v)?)))
            .collect::<anyhow::Result<_>>()?;
        serde_json::to_writer_pretty(&mut out, &all)?;
        writeln!(out)?;
        return Ok(());
    }
    if maps.is_empty() {
        eprintln!(
            "no data map: nothing was unified in {}",
            config.server.data.display()
        );
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    for (workspace, map) in &maps {
        let text = match &args.event {
            Some(name) => event_tables(workspace, map, name, colour),
            None => tables(workspace, map, colour),
        };
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// A workspace's flags, sources and events.
fn tables(workspace: &str, map: &MapView, colour: bool) -> String {
    let mut text = format!("workspace {workspace}\n\n");
    text.push_str(&flag_table(map, colour));
    let sources: Vec<Vec<String>> = map
        .sources
        .iter()
        .map(|s| {
            vec![
                s.source.clone(),
                s.events.to_string(),
                s.event_names.to_string(),
                s.last_seen.clone(),
            ]
        })
        .collect();
    text.push_str(&table(
        "sources",
        &["source", "events", "names", "last seen"],
        &sources,
    ));
    let events: Vec<Vec<String>> = map
        .events
        .iter()
        .map(|e| {
            vec![
                e.kind.clone(),
                e.name.clone(),
                e.source.clone(),
                e.count.to_string(),
                e.properties.len().to_string(),
                e.last_seen.clone(),
            ]
        })
        .collect();
    text.push_str(&table(
        "events",
        &[
            "type",
            "name",
            "source",
            "events",
            "properties",
            "last seen",
        ],
        &events,
    ));
    if !map.identity_candidates.is_empty() {
        let candidates: Vec<Vec<String>> = map
            .identity_candidates
            .iter()
            .map(|c| {
                vec![
                    c.path.clone(),
                    format!("{:.0} % of {}", c.share * 100.0, c.values),
                    c.identifier_type.clone(),
                    c.proposal
                        .clone()
                        .unwrap_or_else(|| "(a property: send it as a trait)".to_owned()),
                ]
            })
            .collect();
        text.push_str(&table(
            "identity candidates (values that are their profile's identifiers)",
            &["path", "known identifiers", "type", "to link by it"],
            &candidates,
        ));
    }
    if map.other_events > 0 {
        // Writing to a String cannot fail.
        writeln!(
            text,
            "(and {} events of names beyond the map's capacity)",
            map.other_events
        )
        .unwrap_or_default();
    }
    text.push_str("properties of an event: braid catalogue --event NAME\n\n");
    text
}

/// The flags, the most serious first, red or yellow in a terminal.
fn flag_table(map: &MapView, colour: bool) -> String {
    if map.flags.is_empty() {
        return "no quality flags\n\n".to_owned();
    }
    let rows: Vec<Vec<String>> = map
        .flags
        .iter()
        .map(|f| {
            vec![
                format!("{:?}", f.kind),
                f.count.to_string(),
                f.message.clone(),
                f.example.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut text = table(
        "quality flags",
        &["flag", "count", "what", "example"],
        &rows,
    );
    if colour {
        let mut coloured = String::new();
        for (line, flag) in text.lines().zip(
            [None, None, None]
                .into_iter()
                .chain(map.flags.iter().map(Some)),
        ) {
            let code = match flag.map(|f| f.kind) {
                Some(FlagKind::RedPii | FlagKind::UnexpectedPii) => "\x1b[31m",
                Some(_) => "\x1b[33m",
                None => "",
            };
            let reset = if code.is_empty() { "" } else { "\x1b[0m" };
            writeln!(coloured, "{code}{line}{reset}").unwrap_or_default();
        }
        coloured.push('\n');
        text = coloured;
    }
    text
}

/// The properties of the events named `name` (of every source).
fn event_tables(workspace: &str, map: &MapView, name: &str, colour: bool) -> String {
    let chosen = map.clone().select(None, name, None);
    if chosen.is_empty() {
        return format!("workspace {workspace}: no event named {name:?}\n");
    }
    let mut text = String::new();
    for event in &chosen {
        let rows: Vec<Vec<String>> = event
            .properties
            .iter()
            .map(|p| {
                let types: Vec<String> = p
                    .types
                    .iter()
                    .map(|(t, share)| format!("{t} {:.0} %", share * 100.0))
                    .collect();
                let pii = match p.pii.class {
                    PiiClass::Green => String::new(),
                    PiiClass::Yellow if colour => "\x1b[33myellow\x1b[0m".to_owned(),
                    PiiClass::Red if colour => "\x1b[31mred\x1b[0m".to_owned(),
                    PiiClass::Yellow => "yellow".to_owned(),
                    PiiClass::Red => "red".to_owned(),
                };
                vec![
                    p.path.clone(),
                    format!("{:.0} %", p.fill_rate * 100.0),
                    types.join(", "),
                    p.semantic_type.unwrap_or_default().to_owned(),
                    p.distinct.to_string(),
                    pii,
                    p.examples.join(" | "),
                ]
            })
            .collect();
        let title = format!(
            "workspace {workspace}: {} {:?} from {} ({} events, {} to {})",
            event.kind, event.name, event.source, event.count, event.first_seen, event.last_seen
        );
        text.push_str(&table(
            &title,
            &[
                "path", "fill", "types", "semantic", "distinct", "pii", "examples",
            ],
            &rows,
        ));
    }
    text
}

/// A table: a title, a header, a rule and the rows, each column as wide as its widest cell
/// (cells cut at 90 characters).
fn table(title: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    const MAX: usize = 90;
    let cut = |cell: &str| -> String {
        if cell.chars().count() > MAX {
            let mut short: String = cell.chars().take(MAX - 1).collect();
            short.push('…');
            short
        } else {
            cell.to_owned()
        }
    };
    // Colour codes take no room on the screen.
    let width = |cell: &str| strip_colour(cell).chars().count();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| width(c))
                .chain([header.get(i).map_or(0, |h| h.len())])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(width(c)))))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut text = format!("{title}\n");
    text.push_str(&line(header.to_vec()));
    text.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    text.push_str(&rule.join("  "));
    text.push('\n');
    for row in &rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
        text.push('\n');
    }
    text.push('\n');
    text
}

fn strip_colour(cell: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in cell.chars() {
        match (in_code, c) {
            (false, '\x1b') => in_code = true,
            (true, 'm') => in_code = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

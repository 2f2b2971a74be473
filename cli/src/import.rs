//! `braid import`: CRM-like records (CSV) into profiles. The records are resolved into
//! clusters as `braid resolve` does, turned into Segment `identify` calls
//! (`braid_core::unify::matching::import_events`) that carry each record's id and cluster, and sent to a
//! Braid collection endpoint (`braid serve`, or the Worker) with a write key: the identity graph
//! then links them into profiles with everything else, under the same rules, and a rebuild from
//! the lake gives the same result.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use braid_core::unify::matching::{
    ImportOptions, Imported, ResolveConfig, Shared, import_events, resolve,
};
use braid_unifier::client::{Endpoint, send_events};

use crate::resolve::{read_table, report};

/// `braid import` arguments.
#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// Records as CSV with a header row.
    #[arg(long)]
    input: PathBuf,
    /// The collection endpoint (`http://127.0.0.1:8080`; `/v1/batch` is added).
    #[arg(long)]
    url: String,
    /// The write key of the workspace the records belong to.
    #[arg(long)]
    write_key: String,
    /// Rules for matching (TOML, as for `braid resolve --config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The column with each record's id (default: the first).
    #[arg(long)]
    id_column: Option<String>,
    /// The identifier type of the record ids (default: the id column's name, lower-cased).
    #[arg(long)]
    id_type: Option<String>,
    /// Columns to leave out of the traits (and of matching).
    #[arg(long)]
    ignore_column: Vec<String>,
    /// `context.library.name` of the events, the source for survivorship rules.
    #[arg(long, default_value = "braid-import")]
    source: String,
    /// Write the events as NDJSON here instead of sending them.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub(crate) async fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut config: ResolveConfig = match &args.config {
        Some(path) => toml::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("invalid {}", path.display()))?,
        None => ResolveConfig::default(),
    };
    config.ignore.extend(args.ignore_column.iter().cloned());
    let table = read_table(std::slice::from_ref(&args.input))?;
    let id_column = match &args.id_column {
        Some(name) => table
            .column(name)
            .with_context(|| format!("no column {name:?}; the columns are {:?}", table.headers))?,
        None => 0,
    };
    let id_type = args.id_type.clone().unwrap_or_else(|| {
        table
            .headers
            .get(id_column)
            .map_or_else(|| "record_id".to_owned(), |h| h.trim().to_ascii_lowercase())
    });
    anyhow::ensure!(
        !id_type.is_empty() && !id_type.contains(':'),
        "--id-type must be a name without ':' (got {id_type:?})"
    );
    let skip: Vec<usize> = args
        .ignore_column
        .iter()
        .filter_map(|name| table.column(name))
        .collect();
    let mut resolution = resolve(&table, &config, &[&[id_column][..], &skip].concat())?;
    println!("{} records from {}", table.rows.len(), args.input.display());
    report(&mut resolution, &config);
    let options = ImportOptions {
        id_type: &id_type,
        id_column,
        skip: &skip,
        at: time::OffsetDateTime::now_utc(),
        library: &args.source,
    };
    let imported = import_events(&table, &mut resolution, &options);
    report_left_out(&imported, &config);
    let events = imported.events;
    if events.len() < table.rows.len() {
        println!(
            "{} records without an id in column {:?} were left out",
            table.rows.len() - events.len(),
            table.headers.get(id_column).map_or("", String::as_str)
        );
    }
    if let Some(output) = &args.output {
        let mut text = String::new();
        for event in &events {
            text.push_str(&event.to_string());
            text.push('\n');
        }
        std::fs::write(output, text)
            .with_context(|| format!("cannot write {}", output.display()))?;
        println!("{} events written to {}", events.len(), output.display());
        return Ok(());
    }
    let endpoint = Endpoint::new(&args.url, "/v1/batch")?;
    let sent = send_events(&endpoint, &args.write_key, &events).await?;
    println!(
        "{} identify events sent in {} requests to {} as {id_type}:<{}> in {:.2} s",
        sent.events,
        sent.requests,
        args.url,
        table.headers.get(id_column).map_or("", String::as_str),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The emails and phones left out of the events, and the records not linked as clusters.
fn report_left_out(imported: &Imported, config: &ResolveConfig) {
    for (column, value, records, why) in &imported.shared {
        match why {
            Shared::Placeholder => println!(
                "left out: {column} {value:?}, on {records} records (more than {}): not an \
                 identity; block it in [identity.types.*] blocked",
                config.max_shared
            ),
            Shared::People => println!(
                "left out: {column} {value:?}, on {records} records of people with different \
                 names (a household): shared, not one person's identity"
            ),
        }
    }
    if imported.unsure_records > 0 {
        println!(
            "not linked as clusters: {} records of {} clusters the cluster cap ({}) stopped; \
             each links by its own identifiers only. Check them, or give fields and blocking \
             in --config.",
            imported.unsure_records, imported.unsure_clusters, config.max_cluster
        );
    }
}

//! `braid resolve`: fuzzy matching of CRM-like records from CSV files into clusters
//! (`braid_core::unify::matching`), printing what it chose and, against a truth column, how well it did.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use braid_core::unify::matching::{
    Resolution, ResolveConfig, Shared, Table, pair_metrics, resolve,
};

/// `braid resolve` arguments.
#[derive(clap::Args)]
pub(crate) struct ResolveArgs {
    /// Records as CSV with a header row. Give it twice to link two files (only records of
    /// different files are compared).
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Where to write `<id column>,cluster_id` (and `source` when linking), one row per record.
    #[arg(long)]
    output: PathBuf,
    /// Rules (TOML): fields, blocking, strong identifiers, threshold ... (default: chosen from
    /// the columns).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The id column (default: the first).
    #[arg(long)]
    id_column: Option<String>,
    /// A column with the true cluster of each record: report pairwise precision, recall, F1.
    #[arg(long)]
    truth_column: Option<String>,
}

pub(crate) fn run(args: &ResolveArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let config: ResolveConfig = match &args.config {
        Some(path) => toml::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("invalid {}", path.display()))?,
        None => ResolveConfig::default(),
    };
    let table = read_table(&args.input)?;
    let column = |name: &str| {
        table
            .column(name)
            .with_context(|| format!("no column {name:?}; the columns are {:?}", table.headers))
    };
    let id_column = match &args.id_column {
        Some(name) => column(name)?,
        None => 0,
    };
    let truth_column = args.truth_column.as_deref().map(column).transpose()?;
    let read = started.elapsed();
    let mut skip = vec![id_column];
    skip.extend(truth_column);
    let mut resolution = resolve(&table, &config, &skip)?;
    let resolved = started.elapsed().saturating_sub(read);

    println!(
        "{} records from {} file(s)",
        table.rows.len(),
        args.input.len()
    );
    report(&mut resolution, &config);
    let labels = resolution.clusters.labels();
    if let (Some(truth_column), Some(name)) = (truth_column, &args.truth_column) {
        let truth: Vec<&str> = (0..table.rows.len())
            .map(|r| table.cell(r, truth_column))
            .collect();
        let m = pair_metrics(&labels, &truth);
        println!(
            "against {name}: precision {:.4}, recall {:.4}, F1 {:.4} ({} true pairs, {} predicted, {} correct)",
            m.precision(),
            m.recall(),
            m.f1(),
            m.actual,
            m.predicted,
            m.true_positives
        );
    }
    write_clusters(&args.output, &table, id_column, &labels)?;
    println!(
        "time: read {:.3} s, resolve {:.3} s, total {:.3} s",
        read.as_secs_f64(),
        resolved.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The records of every input file; with several files, each row's file.
/// Refuses a file that holds JSON (NDJSON events, a JSON array): read as CSV, its first line
/// would become column names, and the error would be about those.
fn refuse_json(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut start = [0_u8; 64];
    let read = std::fs::File::open(path)
        .and_then(|mut file| file.read(&mut start))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let first = start
        .get(..read)
        .unwrap_or_default()
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    anyhow::ensure!(
        !matches!(first, Some(b'{' | b'[')),
        "{} holds JSON, not CSV: this command reads records as CSV with a header row (events \
         as NDJSON go to a collection endpoint: POST /v1/batch, or any Segment client)",
        path.display()
    );
    Ok(())
}

pub(crate) fn read_table(inputs: &[PathBuf]) -> anyhow::Result<Table> {
    let mut table = Table::default();
    for (source, path) in inputs.iter().enumerate() {
        refuse_json(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let headers: Vec<String> = reader
            .headers()?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        if table.headers.is_empty() {
            table.headers = headers;
        } else if headers != table.headers {
            anyhow::bail!(
                "{}: its columns differ from the first file's: {:?}",
                path.display(),
                table.headers
            );
        }
        for (line, record) in reader.records().enumerate() {
            let record =
                record.with_context(|| format!("{}: record {}", path.display(), line + 1))?;
            table.rows.push(record.iter().map(str::to_owned).collect());
            if inputs.len() > 1 {
                table.sources.push(u32::try_from(source)?);
            }
        }
    }
    Ok(table)
}

/// What was chosen and found: fields with their kind, reason and learnt weights, strong
/// identifiers, blocking rules, the model, and the links and clusters.
pub(crate) fn report(resolution: &mut Resolution, config: &ResolveConfig) {
    let plan = &resolution.plan;
    println!("fields:");
    for (field, model) in plan.fields.iter().zip(&resolution.model.fields) {
        let levels = field.comparator.level_names();
        let weights: Vec<String> = levels
            .iter()
            .enumerate()
            .map(|(l, name)| format!("{name} {:+.1}", model.weight(l)))
            .collect();
        println!(
            "  {:<16} {:<13} ({})  {}",
            field.name,
            format!("{:?}", field.kind),
            field.why,
            weights.join(", ")
        );
    }
    let names = |rule: &[usize]| -> String {
        rule.iter()
            .filter_map(|&i| plan.fields.get(i).map(|f| f.name.as_str()))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    println!("strong identifiers: {}", names(&plan.strong));
    println!(
        "blocking: {}",
        plan.blocking
            .iter()
            .map(|r| names(r))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!(
        "model: λ = {:.4} among compared pairs after {} EM iterations, prior {:.2e}; threshold {}",
        resolution.model.lambda,
        resolution.model.iterations,
        resolution.model.prior,
        config.threshold
    );
    if let Some(why) = &resolution.degenerate {
        println!(
            "warning: the model was not used: {why}. Check the clusters, or give fields and blocking in --config."
        );
    }
    let (placeholders, households) =
        resolution
            .shared
            .iter()
            .fold((0, 0), |(p, h), s| match s.why {
                Shared::Placeholder => (p + 1, h),
                Shared::People => (p, h + 1),
            });
    println!(
        "pairs compared {}, matched by the model {}, sharing a strong id {}",
        resolution.candidate_pairs, resolution.matched_pairs, resolution.strong_links,
    );
    println!(
        "strong values linking nothing: {placeholders} on more than {} records, {households} on records of people with different names (households)",
        config.max_shared
    );
    let by_strong: Vec<String> = plan
        .strong
        .iter()
        .zip(&resolution.links.strong)
        .filter_map(|(&f, n)| plan.fields.get(f).map(|f| format!("{} {n}", f.name)))
        .collect();
    println!(
        "records joined by: {}{}model {}; links refused: {} by different names, {} by the cluster cap ({})",
        by_strong.join(", "),
        if by_strong.is_empty() { "" } else { ", " },
        resolution.links.model,
        resolution.refused_by_names,
        resolution.refused_links,
        config.max_cluster
    );
    println!(
        "clusters {}, largest {}",
        resolution.clusters.count(),
        resolution.clusters.largest()
    );
}

/// `<id column>,cluster_id` (and `source` when linking files), one row per record; a cluster
/// is named after its first record's id.
fn write_clusters(
    output: &PathBuf,
    table: &Table,
    id_column: usize,
    labels: &[usize],
) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_path(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let id_name = table.headers.get(id_column).map_or("id", String::as_str);
    if table.sources.is_empty() {
        writer.write_record([id_name, "cluster_id"])?;
    } else {
        writer.write_record([id_name, "source", "cluster_id"])?;
    }
    for (row, label) in labels.iter().enumerate() {
        let cluster = table.cell(*label, id_column);
        let id = table.cell(row, id_column);
        if let Some(source) = table.sources.get(row) {
            writer.write_record([id, &source.to_string(), cluster])?;
        } else {
            writer.write_record([id, cluster])?;
        }
    }
    writer.flush()?;
    Ok(())
}

//! `braid bench`: throughput on this machine, end to end and for the core alone.
//!
//! - core: parse + validate + enrich + serialize of 100-event batches in the wire format of
//!   `@segment/analytics-node`, on one thread (events per second per core);
//! - HTTP: a real `braid serve` (same code, in process, on 127.0.0.1) with the group-commit,
//!   fsync'ed lake in a temporary folder, loaded by keep-alive HTTP/1.1 clients sending 100-event
//!   batches; the run ends by checking that every acknowledged event is in the lake;
//! - unify: lake lines through identity resolution and profiles, in memory on one thread (the
//!   core alone), then into the persistent profile store (SlateDB on a temporary folder, every
//!   batch durable), with the store's size on disk per million profiles; then a stream
//!   dominated by a few hot profiles, each event with a new anonymous id (a site that sets a
//!   fresh cookie per page, or an attacker with the public write key), the case where a
//!   profile's bounds matter.

use std::time::{Duration, Instant};

use braid_core::catalogue::CatalogueConfig;
use braid_core::collect::{ParsedBody, RequestInfo, WorkspaceConfig, process_batch};
use braid_core::unify::{Applied, IdentityRules, ProfileConfig, ProfileStoreConfig, Unifier};
use braid_core::{Config, Event};
use braid_unifier::lake::feed::Unify as _;
use braid_unifier::lake::object::lines as ndjson_lines;
use braid_unifier::lake::store::LocalStore;
use braid_unifier::profiles::ProfileUnify;
use braid_unifier::profiles::kv::{Kv as _, KvHome as _, LocalHome, SlateKv, SlateOptions};

use crate::bench_segment::rate;
use braid_unifier::serve::{Options, Server};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

const KEY: &str = "bench_write_key";

/// Options of `braid bench`.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Events to send over HTTP.
    #[arg(long, default_value_t = 500_000)]
    events: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Events to run through the core alone.
    #[arg(long, default_value_t = 500_000)]
    core_events: usize,
    /// Lake events to run through identity resolution and profiles.
    #[arg(long, default_value_t = 500_000)]
    unify_events: usize,
    /// Folder for the temporary lake (default: the system's temp folder).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Run only these parts (by default all): `core` (the collection pipeline), `unify` (identity
    /// resolution and profiles, in memory and into the store), `segment` (audiences and
    /// computed traits, in memory and into the store), `activate` (destinations: the outbox's
    /// cost, webhook deliveries, `PostgreSQL` with `--postgres`), `http` (ingest over HTTP).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
    /// Lake events behind the destinations' benchmarks.
    #[arg(long, default_value_t = 100_000)]
    activate_events: usize,
    /// A `PostgreSQL` database the `activate` part may write tables to (`postgres://...`; the
    /// part skips the database without it; `scripts/bench-activate.sh` starts one).
    #[arg(long)]
    postgres: Option<String>,
}

/// A part of `braid bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// The collection pipeline on one core.
    Core,
    /// Identity resolution and profiles.
    Unify,
    /// Audiences and computed traits.
    Segment,
    /// Destinations.
    Activate,
    /// Ingest over HTTP.
    Http,
}

impl BenchArgs {
    fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// Runs the benchmarks (all, or those of `--only`) and prints the results.
pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let bodies: Vec<Bytes> = (0..64)
        .map(|i| Bytes::from(batch_body(i, args.batch)))
        .collect();
    let event_bytes = bodies.iter().map(Bytes::len).sum::<usize>() / (bodies.len() * args.batch);
    println!(
        "braid bench: {}-event batches in the analytics-node wire format, ~{event_bytes} bytes per event",
        args.batch
    );
    println!(
        "machine: {} CPU cores",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    if args.runs(Part::Core) {
        bench_core(&bodies, args.core_events, args.batch)?;
    }
    if args.runs(Part::Unify) || args.runs(Part::Segment) {
        Box::pin(bench_unify(args)).await?;
    }
    if args.runs(Part::Activate) {
        let lines = unify_stream(args.activate_events);
        Box::pin(crate::bench_activate::bench_activate(
            &lines,
            args.activate_events,
            args.data.as_deref(),
            args.postgres.as_deref(),
        ))
        .await?;
    }
    if args.runs(Part::Http) {
        bench_http(args, &bodies).await?;
    }
    Ok(())
}

/// Browsers the benchmark's events come from (a server relaying web traffic sees several).
const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
];

/// Where the benchmark's visits come from.
const REFERRERS: [&str; 4] = [
    "https://www.google.com/",
    "https://l.facebook.com/",
    "https://shop.example/cart",
    "https://news.example/spring-issue",
];

/// One batch in the shape `@segment/analytics-node` sends, relaying web events: every event
/// has its own user, product page and campaign, and one of several browsers and referrers, so
/// no enrichment step sees the same input twice in a row.
fn batch_body(seed: usize, size: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..size)
        .map(|i| {
            let n = seed * size + i;
            json!({
                "type": "track",
                "event": "Product Viewed",
                "userId": format!("user-{}", n % 10_000),
                "messageId": format!("node-next-{seed}-{i}-bench"),
                "timestamp": format!("2024-05-01T10:{:02}:{:02}.{:03}Z", n / 60 % 60, n % 60, n % 1000),
                "properties": {"product_id": format!("sku-{i}"), "price": 19.99, "currency": "EUR", "category": "Shoes"},
                "context": {
                    "library": {"name": "@segment/analytics-node", "version": "3.1.0"},
                    "userAgent": USER_AGENTS.iter().cycle().nth(n % USER_AGENTS.len()),
                    "page": {
                        "url": format!("https://shop.example/p/sku-{i}?utm_source=news&utm_medium=email&utm_campaign=c{}", n % 7),
                        "referrer": REFERRERS.iter().cycle().nth(n / 3 % REFERRERS.len()),
                    },
                    "ip": format!("203.0.{}.{}", n / 256 % 256, n % 256)
                },
                "integrations": {},
                "_metadata": {"jsRuntime": "node"}
            })
        })
        .collect();
    json!({"batch": events, "sentAt": "2024-05-01T11:00:01.000Z"})
        .to_string()
        .into_bytes()
}

/// The core pipeline, without and with a tracking plan that checks every event.
fn bench_core(bodies: &[Bytes], events: usize, batch: usize) -> anyhow::Result<()> {
    let plain = CatalogueConfig::default();
    let planned = CatalogueConfig {
        plan: Some(bench_plan()?),
        ..CatalogueConfig::default()
    };
    let (accepted, bytes, seconds) = core_pass(bodies, events, batch, &plain);
    println!();
    println!("core (parse + validate + enrich + serialize, 1 thread)");
    println!("  events            {accepted}");
    println!("  time              {seconds:.3} s");
    println!(
        "  throughput        {:.0} events/s per core",
        rate(accepted, seconds)
    );
    println!(
        "  output            {:.1} MB/s of NDJSON",
        rate(bytes, seconds) / 1e6
    );
    let (checked, _, with_plan) = core_pass(bodies, events, batch, &planned);
    println!("core with a tracking plan (every event checked against its JSON Schema, 1 thread)");
    println!(
        "  throughput        {:.0} events/s per core ({:+.1} % time per event)",
        rate(checked, with_plan),
        (rate(accepted, seconds) / rate(checked, with_plan).max(1.0) - 1.0) * 100.0
    );
    Ok(())
}

/// A plan for the benchmark's events: types, a required list, an enum, a bound and a format.
fn bench_plan() -> anyhow::Result<braid_core::catalogue::plan::TrackingPlan> {
    let plan = json!({"unplanned": "block", "events": [{"type": "track", "name": "Product Viewed",
        "mode": "allow", "schema": {"type": "object", "required": ["properties"], "properties": {
            "properties": {"type": "object",
                "required": ["product_id", "price", "currency"],
                "properties": {
                    "product_id": {"type": "string", "maxLength": 64},
                    "price": {"type": "number", "minimum": 0},
                    "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
                    "category": {"type": "string"}}},
            "context": {"type": "object", "properties": {
                "page": {"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}}}}}}}]});
    Ok(braid_core::catalogue::plan::TrackingPlan::parse(
        &plan.to_string(),
    )?)
}

/// One pass of `events` through the core pipeline: events accepted, bytes written, seconds.
fn core_pass(
    bodies: &[Bytes],
    events: usize,
    batch: usize,
    config: &CatalogueConfig,
) -> (usize, usize, f64) {
    let batches = events.div_ceil(batch.max(1));
    let started = Instant::now();
    let mut accepted = 0_usize;
    let mut bytes = 0_usize;
    for i in 0..batches {
        let Some(body) = bodies.get(i % bodies.len()) else {
            continue;
        };
        let Ok(parsed) = ParsedBody::parse(body, None, &config.limits) else {
            continue;
        };
        let info = RequestInfo {
            workspace: "bench",
            received_at: now(),
            client_ip: None,
            user_agent: None,
            anonymous_id: None,
            location: None,
            edge: None,
            trust: braid_core::collect::Trust::default(),
        };
        let outcome = process_batch(parsed, &info, config);
        accepted += outcome.accepted_count;
        bytes += outcome.accepted.len();
    }
    (accepted, bytes, started.elapsed().as_secs_f64())
}

/// The unify benchmark's stream, as lake lines: 200,000 browsers, a third of them logging in
/// as one of 60,000 users (some on two devices), page views, product views, orders with
/// revenue, and identify calls with traits.
#[expect(
    clippy::indexing_slicing,
    reason = "building benchmark events (objects, where indexing inserts)"
)]
fn unify_stream(events: usize) -> Vec<u8> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut lines = Vec::with_capacity(events * 500);
    for i in 0..events {
        let browser = next(200_000);
        let user = browser % 3 == 0;
        let roll = next(100);
        let mut event = json!({
            "messageId": format!("u-{i}"),
            "anonymousId": format!("anon-{browser}"),
            "timestamp": format!("2024-05-01T{:02}:{:02}:{:02}.000Z", i / 60_000 % 24, i / 1000 % 60, i % 60),
            "receivedAt": "2024-05-01T23:59:59.000Z",
            "context": {"library": {"name": "analytics.js", "version": "5.0.0"}, "ip": "203.0.113.0",
                        "page": {"url": "https://shop.example/p"}},
        });
        if roll < 50 {
            event["type"] = json!("page");
        } else if roll < 80 {
            event["type"] = json!("track");
            event["event"] = json!("Product Viewed");
            event["properties"] =
                json!({"product_id": format!("sku-{}", next(500)), "price": 19.99});
        } else if roll < 90 {
            event["type"] = json!("track");
            event["event"] = json!("Order Completed");
            event["properties"] = json!({"revenue": 20 + next(80), "currency": "EUR"});
        } else {
            event["type"] = json!("identify");
            event["traits"] =
                json!({"plan": if next(2) == 0 { "pro" } else { "free" }, "city": "Lyon"});
        }
        if user {
            let id = browser / 3 % 60_000;
            event["userId"] = json!(format!("user-{id}"));
            if event["type"] == "identify" {
                event["traits"]["email"] = json!(format!("user-{id}@mail.example"));
            }
        }
        lines.extend_from_slice(event.to_string().as_bytes());
        lines.push(b'\n');
    }
    lines
}

fn unify_config() -> ProfileConfig {
    serde_json::from_value(json!({"aggregates": [
        {"name": "revenue", "event": "Order Completed", "property": "revenue", "op": "sum"},
        {"name": "orders", "event": "Order Completed", "op": "count"}
    ]}))
    .unwrap_or_default()
}

/// Identity resolution and profiles: on one thread in memory (the core: lake lines parsed,
/// identifiers extracted and linked, profiles updated), then into the profile store.
#[expect(clippy::cast_precision_loss, reason = "a report")]
async fn bench_unify(args: &BenchArgs) -> anyhow::Result<()> {
    let events = args.unify_events;
    let lines = unify_stream(events);
    println!();
    println!(
        "unify stream: {events} lake events, {:.0} bytes each",
        lines.len() as f64 / events.max(1) as f64
    );
    if args.runs(Part::Unify) {
        println!();
        println!(
            "unify, core (parse lake lines + identity resolution + profiles, in memory, 1 thread)"
        );
        let median = core_runs(&lines, events);
        println!("  throughput        {median:.0} events/s per core (median of 3)");
        bench_data_map(&lines, events);
    }
    if args.runs(Part::Segment) {
        crate::bench_segment::bench_core(&lines, events)?;
    }
    if args.runs(Part::Unify) {
        for (retention, data_map) in [(90, true), (90, false), (0, true)] {
            bench_unify_store(args, &lines, retention, data_map, "", None).await?;
        }
    }
    if args.runs(Part::Segment) {
        let segmented = crate::bench_segment::segmented_config(100)?;
        bench_unify_store(
            args,
            &lines,
            90,
            true,
            ", with 100 audiences and 20 computed traits",
            Some(&segmented),
        )
        .await?;
    }
    if args.runs(Part::Unify) {
        let hot = hot_stream(events);
        println!();
        println!(
            "unify, core, a stream of {HOT_PROFILES} hot profiles (90 % of events, each with a new anonymous id)"
        );
        let median = core_runs(&hot, events);
        println!("  throughput        {median:.0} events/s per core (median of 3)");
        bench_unify_store(args, &hot, 90, true, ", the hot stream", None).await?;
    }
    Ok(())
}

/// Three runs of the unify core over `lines`, printed; the median rate. The figure varies with
/// how fast the kernel hands out fresh pages as the state grows: the median is the one to quote.
fn core_runs(lines: &[u8], events: usize) -> f64 {
    let mut rates = Vec::new();
    for run in 1..=3 {
        let mut unifier = Unifier::new(IdentityRules::default(), unify_config());
        let started = Instant::now();
        let mut applied = 0;
        for line in ndjson_lines(lines) {
            if let Some(event) = std::str::from_utf8(line)
                .ok()
                .and_then(|text| Event::from_lake_line(text).ok())
                && matches!(unifier.apply(&event), Applied::Profile(_))
            {
                applied += 1;
            }
            // A long-running unifier keeps decisions in the profiles, not in a log.
            if applied % 4096 == 0 {
                unifier.take_log();
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        rates.push(rate(events, seconds));
        println!(
            "  run {run}             {seconds:.3} s, {:.0} events/s per core ({applied} with an identity, {} profiles)",
            rate(events, seconds),
            unifier.graph().len()
        );
    }
    rates.sort_by(f64::total_cmp);
    rates.get(1).copied().unwrap_or_default()
}

/// The data map alone over the unify stream (lake lines parsed and observed, 1 thread,
/// median of 3), and the memory of a map of 10,000 distinct paths of high cardinality.
#[expect(clippy::cast_precision_loss, reason = "a report")]
fn bench_data_map(lines: &[u8], events: usize) {
    use braid_core::catalogue::map::DataMap;
    println!();
    println!("data map, core (parse lake lines + observe, in memory, 1 thread)");
    let mut rates = Vec::new();
    let mut map = DataMap::default();
    for _ in 0..3 {
        map = DataMap::default();
        let started = Instant::now();
        for line in ndjson_lines(lines) {
            if let Some(event) = std::str::from_utf8(line)
                .ok()
                .and_then(|text| Event::from_lake_line(text).ok())
            {
                map.observe(&event);
            }
        }
        rates.push(rate(events, started.elapsed().as_secs_f64()));
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "  throughput        {:.0} events/s per core (median of 3; {} events, {} paths)",
        rates.get(1).copied().unwrap_or_default(),
        map.events.len(),
        map.path_count()
    );
    // 100 events of 100 properties each, 200 events each: every path has 200 distinct values
    // (its sketch past its exact stage).
    let mut wide = DataMap::default();
    for i in 0..20_000u32 {
        let properties: Vec<String> = (0..100)
            .map(|p| format!(r#""property_{p}":{}"#, i / 100 * 7 + p))
            .collect();
        let body = format!(
            r#"{{"type":"track","event":"Event {}","messageId":"w{i}","anonymousId":"a","receivedAt":"2024-05-01T10:00:00.000Z","properties":{{{}}}}}"#,
            i % 100,
            properties.join(",")
        );
        if let Ok(event) = Event::from_lake_line(&body) {
            wide.observe(&event);
        }
    }
    let stored: usize = wide
        .events
        .values()
        .map(|entry| serde_json::to_vec(entry).map_or(0, |v| v.len()))
        .sum();
    println!(
        "  memory            {:.1} MB for {} distinct paths (about {} bytes each); {:.1} MB stored",
        wide.approximate_bytes() as f64 / 1e6,
        wide.path_count(),
        wide.approximate_bytes() / wide.path_count().max(1),
        stored as f64 / 1e6
    );
}

/// How many profiles the hot stream is dominated by.
const HOT_PROFILES: u64 = 10;

/// Lake events of which nine in ten belong to one of [`HOT_PROFILES`] signed-in users, each
/// with a new anonymous id (past its type's limit at once) and, on identify calls, a new
/// trait; the rest are the browsing of many visitors.
#[expect(
    clippy::indexing_slicing,
    reason = "building benchmark events (objects, where indexing inserts)"
)]
fn hot_stream(events: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut lines = Vec::with_capacity(events * 400);
    for i in 0..events {
        let hot = next(10) < 9;
        let mut event = json!({
            "type": "track", "event": "Product Viewed",
            "messageId": format!("h-{i}"),
            "timestamp": format!("2024-05-01T{:02}:{:02}:{:02}.000Z", i / 60_000 % 24, i / 1000 % 60, i % 60),
            "receivedAt": "2024-05-01T23:59:59.000Z",
            "context": {"library": {"name": "analytics.js", "version": "5.0.0"}, "ip": "203.0.113.0"},
            "properties": {"product_id": format!("sku-{}", next(500)), "price": 19.99},
        });
        if hot {
            event["userId"] = json!(format!("hot-{}", next(HOT_PROFILES)));
            event["anonymousId"] = json!(format!("cookie-{i}"));
            if i % 10 == 0 {
                event["type"] = json!("identify");
                event["traits"] = json!({format!("seen_{i}"): true, "plan": "pro"});
            }
        } else {
            event["anonymousId"] = json!(format!("anon-{}", next(200_000)));
        }
        lines.extend_from_slice(event.to_string().as_bytes());
        lines.push(b'\n');
    }
    lines
}

/// The same stream through the profile store on a local folder, in lake objects of 1,000
/// events, each commit of 10 objects made durable as `braid serve` does before checkpointing.
#[expect(clippy::cast_precision_loss, reason = "a report")]
async fn bench_unify_store(
    args: &BenchArgs,
    lines: &[u8],
    event_retention_days: u64,
    data_map: bool,
    stream: &str,
    segmented: Option<&Config>,
) -> anyhow::Result<()> {
    let base = args.data.clone().unwrap_or_else(std::env::temp_dir);
    let data = base.join(format!("braid-bench-unify-{}", std::process::id()));
    let store = LocalStore::open(&data)?;
    let home = LocalHome::open(&data, SlateOptions::default())?;
    let settings = ProfileStoreConfig {
        event_retention_days,
        ..ProfileStoreConfig::default()
    };
    let profiles = bench_profiles(store, home, &settings, data_map, segmented);
    profiles.open("bench").await?;
    let all: Vec<&[u8]> = ndjson_lines(lines).collect();
    let started = Instant::now();
    let mut applied = 0;
    let mut objects = 0;
    for chunk in all.chunks(1_000) {
        let mut object = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum());
        for line in chunk {
            object.extend_from_slice(line);
            object.push(b'\n');
        }
        applied += profiles
            .apply("raw/workspace=bench/x.ndjson.gz", &object)
            .await?
            .events;
        objects += 1;
        if objects % 10 == 0 {
            profiles.commit().await?;
        }
    }
    profiles.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    let segmentation = match segmented {
        Some(config) => Some(store_sweep_and_preview(&profiles, config).await?),
        None => None,
    };
    let snapshot = profiles.snapshot("bench").await?;
    let count = snapshot.len();
    let largest = snapshot
        .iter()
        .map(|profile| profile.to_string().len())
        .max()
        .unwrap_or(0);
    drop(snapshot);
    profiles.close().await?;
    drop(profiles);
    let on_close = folder_size(&data.join("profiles"));
    SlateKv::collect_garbage_local(&data, "profiles/workspace=bench/g1").await?;
    let bytes = folder_size(&data.join("profiles"));
    println!();
    println!(
        "unify into the profile store{stream} (SlateDB, local folder, fsync; cache {} profiles; events kept {}; data map {})",
        settings.cache_profiles,
        if event_retention_days == 0 {
            "none".to_owned()
        } else {
            format!("{event_retention_days} days")
        },
        if data_map { "on" } else { "off" }
    );
    println!(
        "  events            {} ({applied} with an identity) in {objects} objects",
        all.len()
    );
    println!("  time              {seconds:.3} s (durable every 10 objects)");
    println!(
        "  throughput        {:.0} events/s",
        rate(all.len(), seconds)
    );
    println!("  profiles          {count}, the largest {largest} bytes as the API shows it");
    if let Some(lines) = segmentation {
        for line in lines {
            println!("  {line}");
        }
    }
    println!(
        "  store on disk     {:.1} MB at close; {:.1} MB = {:.0} MB per million profiles once the log is collected (lz4; tables not all compacted)",
        on_close as f64 / 1e6,
        bytes as f64 / 1e6,
        bytes as f64 / count.max(1) as f64
    );
    // What the store holds, by kind of key (keys and values, before compression), read back
    // from the closed store: what a fully compacted store would hold.
    let logical = logical_sizes(&data).await?;
    for (kind, (entries, bytes)) in &logical {
        println!(
            "  {kind:<17} {entries} entries, {:.1} MB = {:.0} bytes per profile",
            *bytes as f64 / 1e6,
            *bytes as f64 / count.max(1) as f64
        );
    }
    std::fs::remove_dir_all(&data)?;
    Ok(())
}

/// The bench's profile store: the bench's aggregates, or the segmented configuration's profiles
/// with its audiences.
fn bench_profiles(
    store: LocalStore,
    home: LocalHome,
    settings: &ProfileStoreConfig,
    data_map: bool,
    segmented: Option<&Config>,
) -> ProfileUnify<LocalStore, LocalHome> {
    let profile_config = segmented.map_or_else(unify_config, |c| c.unify.profiles.clone());
    let profiles = ProfileUnify::new(
        store,
        home,
        IdentityRules::default(),
        profile_config,
        settings.clone(),
    )
    .with_data_map(data_map);
    match segmented {
        Some(config) => {
            profiles.with_segmentation(braid_unifier::profiles::Segmentation::of(config))
        }
        None => profiles,
    }
}

/// A sweep of every timer due 40 days after the stream, and a preview over the store: their
/// report lines.
#[expect(clippy::cast_precision_loss, reason = "a report")]
async fn store_sweep_and_preview(
    profiles: &ProfileUnify<LocalStore, LocalHome>,
    config: &Config,
) -> anyhow::Result<Vec<String>> {
    let later =
        braid_core::timestamp::unix_millis(braid_core::timestamp::parse("2024-06-10T00:00:00Z")?);
    let started = Instant::now();
    let due = profiles.sweep(later).await?;
    let sweep = started.elapsed().as_secs_f64();
    let condition = config
        .segments()?
        .preview_condition(&crate::bench_segment::preview_tree())?;
    let mut lines = vec![format!(
        "timer sweep       {due} profiles due 40 days on, in {sweep:.3} s: {:.0} profiles/s (durable)",
        rate(due, sweep)
    )];
    // The first preview copies the profiles from the store; the next ones read the copy.
    for what in ["first preview", "preview"] {
        let started = Instant::now();
        let preview = profiles
            .preview("bench", &condition, None, later, 10)
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let total = preview.get("profiles").and_then(Value::as_u64).unwrap_or(0);
        let size = preview.get("size").and_then(Value::as_u64).unwrap_or(0);
        let source = if what == "preview" {
            "from the copy in memory"
        } else {
            "copied from the store"
        };
        lines.push(format!(
            "{what:<17} {total} profiles {source}, {size} meet it, in {seconds:.3} s: {:.2} s per million",
            seconds * 1e6 / total.max(1) as f64
        ));
    }
    Ok(lines)
}

/// Entries and bytes (keys and values) of the bench workspace's store, by kind of key.
async fn logical_sizes(
    data: &std::path::Path,
) -> anyhow::Result<std::collections::BTreeMap<&'static str, (u64, u64)>> {
    let home = LocalHome::open(data, SlateOptions::default())?;
    let kv = home.open("profiles/workspace=bench/g1").await?;
    let mut sizes = std::collections::BTreeMap::new();
    let mut start = Vec::new();
    loop {
        let page = kv.scan(&start, &[0xFF], 10_000).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        start.clone_from(last);
        start.push(0);
        for (key, value) in &page {
            let kind = match key.first() {
                _ if key.as_slice() == b"meta" => "meta",
                Some(b'p') => "profiles (p/)",
                Some(b'i') => "identifiers (i/)",
                Some(b'm') => "dedupe (m/)",
                Some(b'e') => "events (e/)",
                Some(b'a') => "change log (a/, a group of changes each)",
                Some(b't') => "timers (t/)",
                _ => "meta",
            };
            let entry = sizes.entry(kind).or_insert((0_u64, 0_u64));
            entry.0 += 1;
            entry.1 += (key.len() + value.len()) as u64;
        }
    }
    kv.close().await?;
    Ok(sizes)
}

/// The bytes of every file under `folder`.
fn folder_size(folder: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => folder_size(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

async fn bench_http(args: &BenchArgs, bodies: &[Bytes]) -> anyhow::Result<()> {
    let base = args.data.clone().unwrap_or_else(std::env::temp_dir);
    let data = base.join(format!("braid-bench-{}", std::process::id()));
    let mut config = Config {
        workspaces: vec![WorkspaceConfig {
            name: "bench".into(),
            write_keys: vec![KEY.into()],
            rate_limit: None,
            ..Default::default()
        }],
        ..Config::default()
    };
    config.server.data.clone_from(&data);
    // Collection only: the unify loop is measured on its own above.
    let server = Server::open(config, Options { unify: false }).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server.run(listener, async {
        // Stopped, or the sender dropped: either way, stop.
        stopped.await.ok();
    }));

    let batches = args.events.div_ceil(args.batch.max(1));
    let connections = args.connections.clamp(1, batches.max(1));
    let auth = format!("Basic {}", base64_key());
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..connections {
        let my_batches: Vec<Bytes> = (c..batches)
            .step_by(connections)
            .filter_map(|i| bodies.get(i % bodies.len()).cloned())
            .collect();
        let auth = auth.clone();
        clients.push(tokio::spawn(async move {
            send_batches(addr, &auth, my_batches).await
        }));
    }
    let mut latencies = Vec::with_capacity(batches);
    for client in clients {
        latencies.extend(client.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    if stop.send(()).is_err() {
        anyhow::bail!("the benchmark's server stopped early");
    }
    server.await??;

    let sent = latencies.len() * args.batch;
    let stored = count_lines(&data.join("raw"))?;
    latencies.sort_unstable();
    let pick = |q: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index"
        )]
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    println!();
    println!(
        "HTTP → validate → enrich → group-commit fsync'ed lake ({connections} connections, in-process server)"
    );
    println!(
        "  events            {sent} in {} requests, all answered 200",
        latencies.len()
    );
    println!("  time              {seconds:.3} s");
    println!("  throughput        {:.0} events/s", rate(sent, seconds));
    println!(
        "  latency           p50 {:?}  p99 {:?}  max {:?}",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    println!("  in the lake       {stored} events after the run");
    std::fs::remove_dir_all(&data)?;
    anyhow::ensure!(
        stored == sent,
        "{sent} events acknowledged but {stored} in the lake"
    );
    Ok(())
}

async fn send_batches(
    addr: std::net::SocketAddr,
    auth: &str,
    batches: Vec<Bytes>,
) -> anyhow::Result<Vec<Duration>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut latencies = Vec::with_capacity(batches.len());
    for body in batches {
        let request = hyper::Request::post("/v1/batch")
            .header("host", addr.to_string())
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let started = Instant::now();
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        latencies.push(started.elapsed());
        anyhow::ensure!(status == 200, "the server answered {status}");
    }
    Ok(latencies)
}

fn base64_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"))
}

fn count_lines(folder: &std::path::Path) -> anyhow::Result<usize> {
    use std::io::Read as _;
    let mut total = 0;
    if !folder.exists() {
        return Ok(0);
    }
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path.is_dir() {
            total += count_lines(&path)?;
        } else if path
            .to_string_lossy()
            .ends_with(braid_core::catalogue::lake::OBJECT_SUFFIX)
        {
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&path)?)
                .read_to_end(&mut text)?;
            total += text
                .split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .count();
        }
    }
    Ok(total)
}

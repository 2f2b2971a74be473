//! `braid bench --only activate`: destinations.
//!
//! - the outbox's cost to unify: the core with 10 audiences and 20 computed traits, with and
//!   without a destination that receives profile changes (then every identify and every new
//!   visitor is a change log entry), and the same into the profile store (SlateDB on a
//!   temporary folder, made durable every 10 objects of 1,000 events);
//! - webhook deliveries to a receiver on this machine (in process, answering 200 at once),
//!   one message per request and 100 per request: the deliverer reads the change log from the
//!   profile store (SlateDB on a temporary folder), signs, sends over HTTP and saves its state,
//!   so the figure is the runtime's, not the receiver's;
//! - with `--postgres URL` (`scripts/bench-activate.sh` starts a private server): a full copy of
//!   the profiles into `PostgreSQL`, then the changes of as many events again, 500 per transaction.

use std::sync::Arc;
use std::time::Instant;

use braid_core::Config;
use braid_unifier::activate::{AnySink, Deliverer, Progress};
use braid_unifier::lake::feed::Unify as _;
use braid_unifier::lake::object::lines as ndjson_lines;
use braid_unifier::lake::store::LocalStore;
use braid_unifier::profiles::ProfileUnify;
use braid_unifier::profiles::kv::{LocalHome, SlateOptions};

use crate::bench_segment::{rate, run_once, segmented_text};

/// The workspace of the benchmark's store.
const WORKSPACE: &str = "bench";

/// Runs the destinations' benchmarks over `lines` (`events` lake events).
pub(crate) async fn bench_activate(
    lines: &[u8],
    events: usize,
    data: Option<&std::path::Path>,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    outbox_cost(lines, events)?;
    let base = data.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    Box::pin(store_cost(lines, &base)).await?;
    let folder = base.join(format!("braid-bench-activate-{}", std::process::id()));
    let result = deliveries(lines, &folder, postgres).await;
    std::fs::remove_dir_all(&folder).ok();
    result
}

/// Unify's core with 10 audiences, without and with profile changes logged.
fn outbox_cost(lines: &[u8], events: usize) -> anyhow::Result<()> {
    let receiving = "\n[[activate.destinations]]\nkey = \"w\"\ntype = \"postgres\"\n\
                     url = \"postgres://braid@db.example/m\"\n";
    println!();
    println!("the outbox's cost to unify, core, 10 audiences and 20 computed traits (median of 3)");
    let mut medians = Vec::new();
    for (what, extra) in [
        ("no profile changes logged", ""),
        ("profile changes logged", receiving),
    ] {
        let config = Config::parse(&format!("{}{extra}", segmented_text(10)))?.check()?;
        let mut rates = Vec::new();
        let mut logged = 0;
        for _ in 0..3 {
            let (rate, _, changes) = run_once(lines, events, &config)?;
            rates.push(rate);
            logged = changes;
        }
        rates.sort_by(f64::total_cmp);
        let median = rates.get(1).copied().unwrap_or_default();
        println!("  {what:<27} {median:.0} events/s per core ({logged} changes logged)");
        medians.push(median);
    }
    if let [off, on] = medians[..] {
        println!(
            "  cost              {:.1} % of throughput",
            (1.0 - on / off) * 100.0
        );
    }
    Ok(())
}

/// Unify into the profile store, without and with profile changes logged.
async fn store_cost(lines: &[u8], base: &std::path::Path) -> anyhow::Result<()> {
    let receiving = "\n[[activate.destinations]]\nkey = \"w\"\ntype = \"postgres\"\n\
                     url = \"postgres://braid@db.example/m\"\n";
    let all: Vec<&[u8]> = ndjson_lines(lines).collect();
    println!();
    println!(
        "the outbox's cost to unify into the profile store (SlateDB, durable), 10 audiences and 20 computed traits"
    );
    let mut rates = Vec::new();
    for (n, (what, extra)) in [
        ("no profile changes logged", ""),
        ("profile changes logged", receiving),
    ]
    .into_iter()
    .enumerate()
    {
        let folder = base.join(format!("braid-bench-outbox-{}-{n}", std::process::id()));
        let config = Config::parse(&format!(
            "{}\n[[workspaces]]\nname = \"{WORKSPACE}\"\nwrite_keys = [\"k\"]\n{extra}",
            segmented_text(10)
        ))?
        .check()?;
        let profiles = ProfileUnify::new(
            LocalStore::open(&folder)?,
            LocalHome::open(&folder, SlateOptions::default())?,
            config.unify.identity.clone(),
            config.unify.profiles.clone(),
            config.unify.store.clone(),
        )
        .with_segmentation(braid_unifier::profiles::Segmentation::of(&config))
        .with_workspaces([WORKSPACE.to_owned()]);
        profiles.open(WORKSPACE).await?;
        let started = Instant::now();
        unify(&profiles, &all).await?;
        let seconds = started.elapsed().as_secs_f64();
        profiles.close().await?;
        drop(profiles);
        std::fs::remove_dir_all(&folder).ok();
        let rate = rate(all.len(), seconds);
        println!("  {what:<27} {rate:.0} events/s");
        rates.push(rate);
    }
    if let [off, on] = rates[..] {
        println!(
            "  cost              {:.1} % of throughput",
            (1.0 - on / off) * 100.0
        );
    }
    Ok(())
}

/// A receiver on 127.0.0.1 that answers every request 200: its port.
async fn receiver() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().route(
        "/in",
        axum::routing::post(|_body: axum::body::Bytes| async { axum::http::StatusCode::OK }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

/// The configuration of the delivery benchmarks: the segmentation of 10 audiences, a webhook
/// to `port`, and a database at `postgres`.
fn delivery_config(port: u16, postgres: Option<&str>) -> anyhow::Result<Config> {
    let mut text = format!(
        "{}\n[[workspaces]]\nname = \"{WORKSPACE}\"\nwrite_keys = [\"k\"]\n\
         [[activate.destinations]]\nkey = \"hook\"\ntype = \"webhook\"\n\
         url = \"http://127.0.0.1:{port}/in\"\nallow_addresses = [\"127.0.0.1\"]\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\ntraits = [\"plan\"]\n",
        segmented_text(10)
    );
    if let Some(url) = postgres {
        text = format!(
            "{text}[[activate.destinations]]\nkey = \"warehouse\"\ntype = \"postgres\"\n\
             url = \"{url}\"\ncolumns = {{ plan = \"text\", city = \"text\" }}\n"
        );
    }
    Ok(Config::parse(&text)?.check()?)
}

type Profiles = ProfileUnify<LocalStore, LocalHome>;

/// Unifies `lines` into the store in objects of 1,000 lines, made durable every 10 objects
/// (as the store benchmark of `--only unify` does).
async fn unify(profiles: &Profiles, lines: &[&[u8]]) -> anyhow::Result<()> {
    for (n, chunk) in lines.chunks(1_000).enumerate() {
        if n % 10 == 9 {
            profiles.commit().await?;
        }
        let mut object = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum());
        for line in chunk {
            object.extend_from_slice(line);
            object.push(b'\n');
        }
        profiles
            .apply(&format!("raw/workspace={WORKSPACE}/x.ndjson.gz"), &object)
            .await?;
    }
    profiles.commit().await?;
    Ok(())
}

/// Steps a deliverer until it has nothing left: messages delivered (or profiles copied),
/// requests, seconds.
async fn drain(
    deliverer: &mut Deliverer<LocalStore, LocalHome, AnySink<LocalStore>>,
) -> anyhow::Result<(u64, u64, f64)> {
    let before = (
        deliverer.state().delivered + deliverer.state().copied,
        deliverer.state().requests,
    );
    let started = Instant::now();
    let mut idle = 0;
    loop {
        let now = braid_core::timestamp::unix_millis(time::OffsetDateTime::now_utc());
        match deliverer.step(now).await? {
            // A full copy ends with an idle step; the changes after it follow.
            Progress::Idle if deliverer.state().copy.is_none() => {
                idle += 1;
                if idle == 2 {
                    break;
                }
            }
            Progress::Idle | Progress::Delivered(_) | Progress::Skipped(_) => {}
            other => anyhow::bail!(
                "the benchmark's destination failed: {other:?}: {:?}",
                deliverer.state().last_error
            ),
        }
    }
    deliverer.save_if_changed().await?;
    let state = deliverer.state();
    Ok((
        state.delivered + state.copied - before.0,
        state.requests - before.1,
        started.elapsed().as_secs_f64(),
    ))
}

/// Webhook deliveries, one and 100 per request, and with `postgres` the database's.
async fn deliveries(
    lines: &[u8],
    folder: &std::path::Path,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    let port = receiver().await?;
    let config = delivery_config(port, postgres)?;
    let store = LocalStore::open(folder)?;
    let home = LocalHome::open(folder, SlateOptions::default())?;
    let profiles = Arc::new(
        ProfileUnify::new(
            store.clone(),
            home,
            config.unify.identity.clone(),
            config.unify.profiles.clone(),
            config.unify.store.clone(),
        )
        .with_segmentation(braid_unifier::profiles::Segmentation::of(&config))
        .with_workspaces([WORKSPACE.to_owned()]),
    );
    profiles.open(WORKSPACE).await?;
    let all: Vec<&[u8]> = ndjson_lines(lines).collect();
    let (first, second) = all.split_at(all.len() / 2);
    unify(&profiles, first).await?;
    let destinations = config.destinations()?;
    for batch in [1, 100] {
        let Some(mut destination) = destinations.iter().find(|d| d.key() == "hook").cloned() else {
            continue;
        };
        destination.config.batch = Some(batch);
        destination.config.key = format!("hook{batch}");
        let sink = AnySink::of(&destination, store.clone()).map_err(anyhow::Error::msg)?;
        let mut deliverer =
            Deliverer::open(destination, store.clone(), Arc::clone(&profiles), sink).await?;
        let (messages, requests, seconds) = drain(&mut deliverer).await?;
        println!();
        println!(
            "webhook deliveries to a receiver on this machine, {batch} per request (signed, HTTP/1.1, state in the lake)"
        );
        println!(
            "  messages          {messages} in {requests} requests, {seconds:.2} s: {:.0} messages/s, {:.0} requests/s",
            rate(usize::try_from(messages)?, seconds),
            rate(usize::try_from(requests)?, seconds)
        );
    }
    if let Some(destination) = destinations
        .iter()
        .find(|d| d.key() == "warehouse")
        .cloned()
    {
        let sink = AnySink::of(&destination, store.clone()).map_err(anyhow::Error::msg)?;
        let mut deliverer =
            Deliverer::open(destination, store.clone(), Arc::clone(&profiles), sink).await?;
        let (copied, requests, seconds) = drain(&mut deliverer).await?;
        println!();
        println!("PostgreSQL, a full copy of the profiles (500 per transaction)");
        println!(
            "  profiles          {copied} in {requests} transactions, {seconds:.2} s: {:.0} profiles/s",
            rate(usize::try_from(copied)?, seconds)
        );
        unify(&profiles, second).await?;
        let (changes, requests, seconds) = drain(&mut deliverer).await?;
        println!(
            "PostgreSQL, the changes of {} more events (500 per transaction)",
            second.len()
        );
        println!(
            "  changes           {changes} in {requests} transactions, {seconds:.2} s: {:.0} changes/s",
            rate(usize::try_from(changes)?, seconds)
        );
    }
    profiles.close().await?;
    Ok(())
}

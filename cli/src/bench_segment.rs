//! `braid bench`, segmentation: unify with 0, 10 and 100 audiences and 20 computed traits (the
//! core on one thread, then into the profile store), the timer sweep's rate, and a preview's
//! time over the profiles.

use std::time::Instant;

use braid_core::segment::Segments;
use braid_core::unify::{Applied, Unifier};
use braid_core::{Config, Event};
use braid_unifier::lake::object::lines as ndjson_lines;

/// Events (or profiles) per second, for every figure of `braid bench` (here, since `bench.rs`
/// calls this module and this one does not call back).
#[expect(clippy::cast_precision_loss, reason = "a rate for display")]
pub(crate) fn rate(count: usize, seconds: f64) -> f64 {
    count as f64 / seconds.max(1e-9)
}

/// 20 computed traits: counts, sums and unique counts of the stream's events over four
/// windows.
fn computed_traits() -> String {
    let mut out = Vec::new();
    let kinds = [
        ("Order Completed", "count", ""),
        ("Order Completed", "sum", "revenue"),
        ("Product Viewed", "count", ""),
        ("Product Viewed", "unique_count", "product_id"),
        ("page", "count", ""),
    ];
    for (w, window) in ["all", "30d", "7d", "24h"].iter().enumerate() {
        for (k, (event, op, property)) in kinds.iter().enumerate() {
            out.push(format!(
                "[[unify.profiles.computed]]\nname = \"c{w}{k}\"\nevent = \"{event}\"\nop = \"{op}\"\nwindow = \"{window}\""
            ));
            if !property.is_empty() {
                out.push(format!("property = \"{property}\""));
            }
        }
    }
    out.join("\n") + "\n"
}

/// `n` audiences of five kinds: purchases in a window, a trait and a computed trait, no views
/// in a window, another audience or a trait, a sum over 30 days.
fn audiences(n: usize) -> String {
    let mut out = Vec::new();
    for i in 0..n {
        let when = match i % 5 {
            0 => format!(
                "{{performed = \"Order Completed\", at_least = {}, window = \"{}d\"}}",
                1 + i % 3,
                7 + i % 30
            ),
            1 => format!(
                "{{and = [{{trait = \"plan\", op = \"=\", value = \"pro\"}}, {{computed = \"c10\", op = \">=\", value = {}}}]}}",
                i % 4
            ),
            2 => format!(
                "{{not_performed = \"Product Viewed\", window = \"{}d\"}}",
                1 + i % 14
            ),
            3 => format!(
                "{{or = [{{member = \"a{:03}\"}}, {{trait = \"city\", op = \"=\", value = \"Paris\"}}]}}",
                i - 3
            ),
            _ => format!("{{computed = \"c11\", op = \">\", value = {}}}", 50 + i),
        };
        out.push(format!("[segment.audiences.a{i:03}]\nwhen = {when}"));
    }
    out.join("\n") + "\n"
}

/// The previews' condition: pro customers who spent over 40 in all and are not in `a000`
/// (bought in the last 7 days) — 40 days on, pro buyers of over 40, none of them recent.
pub(crate) fn preview_tree() -> serde_json::Value {
    serde_json::json!({"and": [
        {"trait": "plan", "op": "=", "value": "pro"},
        {"computed": "c01", "op": ">", "value": 40},
        {"not": {"member": "a000"}}
    ]})
}

/// The configuration with 20 computed traits and `n` audiences.
pub(crate) fn segmented_config(n: usize) -> anyhow::Result<Config> {
    Ok(Config::parse(&segmented_text(n))?.check()?)
}

/// The configuration text of 20 computed traits and `n` audiences.
pub(crate) fn segmented_text(n: usize) -> String {
    format!("{}{}", computed_traits(), audiences(n))
}

/// One run of the core over `lines` with segmentation: the rate, the unifier, and how many
/// changes were logged.
pub(crate) fn run_once(
    lines: &[u8],
    events: usize,
    config: &Config,
) -> anyhow::Result<(f64, Unifier, usize)> {
    let segments: Segments = config.segments()?;
    let mut unifier = Unifier::new(config.unify.identity.clone(), config.unify.profiles.clone());
    let mut log = Vec::new();
    let mut logged = 0;
    let started = Instant::now();
    let mut applied = 0_usize;
    for line in ndjson_lines(lines) {
        if let Some(event) = std::str::from_utf8(line)
            .ok()
            .and_then(|text| Event::from_lake_line(text).ok())
            && matches!(
                segments.apply(&mut unifier, &event, 0, &mut log),
                Applied::Profile(_)
            )
        {
            applied += 1;
        }
        if applied.is_multiple_of(4096) {
            unifier.take_log();
            logged += log.len();
            log.clear();
        }
    }
    logged += log.len();
    Ok((
        rate(events, started.elapsed().as_secs_f64()),
        unifier,
        logged,
    ))
}

/// Unify, the core, with 0, 10 and 100 audiences and 20 computed traits; then the sweep and
/// a preview over the profiles of the last run.
#[expect(clippy::cast_precision_loss, reason = "a report")]
pub(crate) fn bench_core(lines: &[u8], events: usize) -> anyhow::Result<()> {
    // The first run in a process also pays for the memory it takes from the kernel (about a
    // third of its time on a virtual machine here): it is reported on its own, and the runs
    // after it measure a process whose allocator holds its pages, as a running server's does.
    let (cold, _, _) = run_once(lines, events, &segmented_config(100)?)?;
    println!();
    println!("unify, core, with 100 audiences and 20 computed traits, the process's first run");
    println!(
        "  throughput        {cold:.0} events/s per core (memory taken from the kernel as it grows)"
    );
    let mut last = None;
    for n in [0, 10, 100] {
        let config = segmented_config(n)?;
        println!();
        println!(
            "unify, core, with {n} audiences and 20 computed traits (streaming evaluation, 1 thread)"
        );
        let mut rates = Vec::new();
        for run in 1..=3 {
            let (rate, unifier, logged) = run_once(lines, events, &config)?;
            println!(
                "  run {run}             {rate:.0} events/s per core ({logged} changes logged, {} profiles)",
                unifier.graph().len()
            );
            rates.push(rate);
            last = Some((unifier, config.clone()));
        }
        rates.sort_by(f64::total_cmp);
        // The best run beside the median: on a shared virtual machine the runs of one binary
        // vary by a quarter, and the best is the nearest to what the code does uncontended.
        println!(
            "  throughput        {:.0} events/s per core (median of 3; best {:.0})",
            rates.get(1).copied().unwrap_or_default(),
            rates.last().copied().unwrap_or_default()
        );
    }
    let Some((mut unifier, config)) = last else {
        return Ok(());
    };
    let segments = config.segments()?;
    // The stream's events were received on 2024-05-01: 40 days on, every window has moved.
    let later =
        braid_core::timestamp::unix_millis(braid_core::timestamp::parse("2024-06-10T00:00:00Z")?);
    let ids: Vec<String> = unifier.profiles().map(|p| p.id.clone()).collect();
    let due = ids
        .iter()
        .filter(|id| {
            unifier
                .profile(id)
                .and_then(|p| p.segment.next_check)
                .is_some_and(|at| at <= later)
        })
        .count();
    let mut log = Vec::new();
    let started = Instant::now();
    for id in &ids {
        segments.fire_due(&mut unifier, id, later, &mut log);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!();
    println!("timer sweep, core (100 audiences, 20 computed traits, 1 thread)");
    println!(
        "  profiles due      {due} of {}, {} changes logged",
        ids.len(),
        log.len()
    );
    println!(
        "  rate              {:.0} due profiles/s ({seconds:.3} s)",
        rate(due, seconds)
    );
    let preview = segments.preview_condition(&preview_tree())?;
    let started = Instant::now();
    let mut size = 0;
    for id in &ids {
        if let Some((profile_ids, profile)) = unifier.profile_and_ids(id)
            && segments.meets(&preview, profile_ids, profile, unifier.config(), later)
        {
            size += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!();
    println!("preview, core (a condition of three over profiles in memory, 1 thread)");
    println!(
        "  profiles          {}, {size} meet it, in {:.1} ms: {:.2} s per million",
        ids.len(),
        seconds * 1e3,
        seconds * 1e6 / ids.len().max(1) as f64
    );
    Ok(())
}

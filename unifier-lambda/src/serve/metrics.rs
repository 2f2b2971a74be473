//! Counters, served in the Prometheus text format at `/metrics` and logged at shutdown.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use braid_edge::Counts;

/// Process-wide counters.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    requests: AtomicU64,
    received: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    store_errors: AtomicU64,
    refused_connections: AtomicU64,
}

impl Metrics {
    /// Adds one request's counts.
    pub(super) fn record(&self, counts: Counts) {
        let add = |counter: &AtomicU64, n: usize| {
            counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        };
        add(&self.requests, 1);
        add(&self.received, counts.received);
        add(&self.accepted, counts.accepted);
        add(&self.failed, counts.failed);
        add(&self.bytes, counts.bytes);
    }

    /// Counts a write that could not be made durable.
    pub(super) fn record_store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection refused because the server held its limit.
    pub(super) fn record_refused_connection(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus exposition, with a series per destination of `board`.
    pub(super) fn render(&self, board: &crate::activate::Board) -> String {
        let counters = [
            (
                "braid_requests_total",
                "Collection requests handled.",
                &self.requests,
            ),
            (
                "braid_events_received_total",
                "Events received in parsed bodies.",
                &self.received,
            ),
            (
                "braid_events_accepted_total",
                "Events accepted into raw/.",
                &self.accepted,
            ),
            (
                "braid_events_failed_total",
                "Events and bodies kept in failed/.",
                &self.failed,
            ),
            (
                "braid_received_bytes_total",
                "Request body bytes received.",
                &self.bytes,
            ),
            (
                "braid_store_errors_total",
                "Lake writes that failed (answered 503).",
                &self.store_errors,
            ),
            (
                "braid_refused_connections_total",
                "Connections over [server] max_connections (answered 503 and closed).",
                &self.refused_connections,
            ),
        ];
        let mut out = String::new();
        for (name, help, counter) in counters {
            // Writing to a `String` cannot fail.
            if writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            )
            .is_err()
            {
                break;
            }
        }
        destinations(&mut out, board);
        out
    }

    /// (received, accepted, failed, bytes), for the shutdown log.
    pub(super) fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// How a series reads a destination's state at a time (ms).
type Reading = fn(&braid_core::activate::destination::DeliveryState, i64) -> u64;

/// The destinations' series: counters of what each delivered, and gauges of its lag and of
/// whether it is retrying or disabled (what to alert on), labelled by destination and workspace.
fn destinations(out: &mut String, board: &crate::activate::Board) {
    let all = board.all();
    if all.is_empty() {
        return;
    }
    let now = braid_core::timestamp::unix_millis(time::OffsetDateTime::now_utc());
    let series: [(&str, &str, &str, Reading); 9] = [
        (
            "braid_destination_delivered_total",
            "counter",
            "Messages delivered.",
            |s, _| s.delivered,
        ),
        (
            "braid_destination_dead_lettered_total",
            "counter",
            "Messages kept as dead letters.",
            |s, _| s.dead_lettered,
        ),
        (
            "braid_destination_failed_attempts_total",
            "counter",
            "Requests that failed.",
            |s, _| s.failed_attempts,
        ),
        (
            "braid_destination_skipped_total",
            "counter",
            "Changes not for the destination (kind, filter, consent).",
            |s, _| s.skipped,
        ),
        (
            "braid_destination_replayed_total",
            "counter",
            "Dead letters delivered by replays.",
            |s, _| s.replayed,
        ),
        (
            "braid_destination_copied_total",
            "counter",
            "Profiles written by full copies.",
            |s, _| s.copied,
        ),
        (
            "braid_destination_lag_seconds",
            "gauge",
            "Age of the oldest change not delivered yet (0: none).",
            |s, now| u64::try_from(s.lag_millis(now).unwrap_or(0) / 1000).unwrap_or(0),
        ),
        (
            "braid_destination_retrying",
            "gauge",
            "1 while a request is being retried.",
            |s, _| u64::from(s.retrying.is_some()),
        ),
        (
            "braid_destination_disabled",
            "gauge",
            "1 once the destination is disabled.",
            |s, _| u64::from(s.disabled.is_some()),
        ),
    ];
    for (name, kind, help, value) in series {
        // Writing to a `String` cannot fail.
        let _ignored = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (destination, state) in &all {
            let _ignored = writeln!(
                out,
                "{name}{{destination=\"{}\",workspace=\"{}\"}} {}",
                destination.key(),
                destination.workspace,
                value(state, now)
            );
        }
    }
}

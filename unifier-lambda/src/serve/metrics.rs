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

    /// The Prometheus exposition.
    pub(super) fn render(&self) -> String {
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

//! The collector's state machine, the same in the browser and in native apps: it stamps events
//! (ids, time, per-device sequence, session), keeps the queue in order and bounded, cuts batches
//! and decides from each response whether to forget the batch, keep it for a retry, or drop it.
//!
//! It does no I/O and reads no clock: the host passes the time in, stores each queued event under
//! the key the collector gives it (before the host tells the page the call is done), sends the
//! bodies the collector cuts, and removes stored events when [`Collector::settle`] says so.
//! See `collector-wasm/README.md` for the protocol between host and collector.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use crate::clock::push_rfc3339;
use crate::id::Rng;
use crate::json::{members, push_string, push_u64};

/// How the collector batches and retries.
#[derive(Clone, Debug)]
pub struct Config {
    /// Queued events that start a flush.
    pub flush_at: u32,
    /// Longest time an event waits for a flush, in milliseconds.
    pub flush_interval_ms: f64,
    /// Most events kept; beyond it the oldest are dropped (and counted on the next batch).
    pub max_queue: u32,
    /// Largest batch body, in bytes (the server accepts 500 KB).
    pub max_batch_bytes: u32,
    /// Largest event, in bytes (the server accepts 32 KB).
    pub max_event_bytes: u32,
    /// Inactivity that ends a session, in milliseconds.
    pub session_timeout_ms: f64,
    /// First retry delay, in milliseconds; it doubles per failed attempt.
    pub retry_base_ms: f64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            flush_at: 20,
            flush_interval_ms: 5_000.0,
            max_queue: 1_000,
            max_batch_bytes: 480_000,
            max_event_bytes: 32_000,
            session_timeout_ms: 30.0 * 60_000.0,
            retry_base_ms: 1_000.0,
            retry_max_ms: 300_000.0,
        }
    }
}

/// Why an event was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The event or its context is not a JSON object.
    NotAnObject = 1,
    /// The stamped event is larger than `max_event_bytes`.
    TooLarge = 2,
    /// The text is not valid JSON (checked only for callers that are not `JSON.stringify`).
    InvalidJson = 3,
}

/// What the host does with the batch in flight after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Accepted: remove its events from storage.
    Delivered = 1,
    /// Kept: send again after [`Collector::next_wake`].
    Retry = 2,
    /// Refused for good (a 4xx other than 408 and 429): remove its events from storage.
    Dropped = 3,
    /// There was no batch in flight.
    Nothing = 0,
}

struct Entry {
    seq: u64,
    key: String,
    json: String,
    /// When it was queued (0 for events restored from storage: they are due at once).
    at: f64,
    /// Seen in the last storage sync (multi-tab).
    seen: bool,
}

/// The queue and delivery state of one device.
pub struct Collector {
    config: Config,
    rng: Rng,
    entries: Vec<Entry>,
    in_flight: Vec<String>,
    dropped: u64,
    dropped_in_flight: u64,
    attempts: u32,
    not_before: f64,
    seq: u64,
    session_id: u64,
    last_activity: f64,
    anonymous_id: String,
    user_id: String,
    last_key: String,
    evicted: Vec<String>,
}

impl Collector {
    /// A collector with a fresh anonymous id; `seed` comes from the host's cryptographic source.
    pub fn new(config: Config, seed: [u32; 4]) -> Self {
        let mut rng = Rng::new(seed);
        let anonymous_id = rng.uuid();
        Self {
            config,
            rng,
            entries: Vec::new(),
            in_flight: Vec::new(),
            dropped: 0,
            dropped_in_flight: 0,
            attempts: 0,
            not_before: 0.0,
            seq: 0,
            session_id: 0,
            last_activity: 0.0,
            anonymous_id,
            user_id: String::new(),
            last_key: String::new(),
            evicted: Vec::new(),
        }
    }

    /// A new random UUID.
    pub fn uuid(&mut self) -> String {
        self.rng.uuid()
    }

    /// The ids stamped on events from now on (an empty user id stamps none).
    pub fn set_ids(&mut self, anonymous_id: &str, user_id: &str) {
        anonymous_id.clone_into(&mut self.anonymous_id);
        user_id.clone_into(&mut self.user_id);
    }

    pub fn anonymous_id(&self) -> &str {
        &self.anonymous_id
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Device state the host kept: the last sequence number, the session and its last activity.
    /// Later values win, so hosts that share storage (tabs) can merge without going backwards.
    pub fn set_state(&mut self, seq: u64, session_id: u64, last_activity: f64) {
        self.seq = self.seq.max(seq);
        if last_activity >= self.last_activity {
            self.session_id = session_id;
            self.last_activity = last_activity;
        }
    }

    /// The last sequence number given out.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The current session (its start, in milliseconds since the epoch; 0 before any event).
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    pub fn last_activity(&self) -> f64 {
        self.last_activity
    }

    /// Events waiting, in flight or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events dropped because the queue was full and not yet reported to the server.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Stamps an event and queues it; returns the stamped JSON, to be stored under
    /// [`Collector::last_key`] before the call returns to the page. `body` holds the event's own
    /// fields (`type`, `event`, `properties`, `traits` ...) and `context` the context, both as
    /// serialised objects. The collector writes `messageId`, `timestamp`, `anonymousId` and
    /// `userId` before the body's fields, and `context.sequence`, `context.sessionId` (and
    /// `context.sessionStart` on a session's first event) before the context's: a value the
    /// caller set explicitly comes later and wins.
    ///
    /// # Errors
    /// [`Rejected`] when either part is not an object or the event is too large; nothing is
    /// queued then and no sequence number is used.
    pub fn enqueue(&mut self, body: &str, context: &str, now: f64) -> Result<&str, Rejected> {
        let body = members(body).ok_or(Rejected::NotAnObject)?;
        let context = members(context).ok_or(Rejected::NotAnObject)?;
        let seq = self.seq + 1;
        let (session_id, session_start) = self.session_at(now);
        let message_id = self.rng.uuid();

        let mut json = String::with_capacity(body.len() + context.len() + 220);
        json.push_str("{\"messageId\":");
        push_string(&mut json, &message_id);
        json.push_str(",\"timestamp\":\"");
        push_rfc3339(&mut json, now);
        json.push_str("\",\"anonymousId\":");
        push_string(&mut json, &self.anonymous_id);
        if !self.user_id.is_empty() {
            json.push_str(",\"userId\":");
            push_string(&mut json, &self.user_id);
        }
        if !body.is_empty() {
            json.push(',');
            json.push_str(body);
        }
        json.push_str(",\"context\":{\"sequence\":");
        push_u64(&mut json, seq);
        json.push_str(",\"sessionId\":");
        push_u64(&mut json, session_id);
        if session_start {
            json.push_str(",\"sessionStart\":true");
        }
        if !context.is_empty() {
            json.push(',');
            json.push_str(context);
        }
        json.push_str("}}");
        if json.len() > self.config.max_event_bytes as usize {
            return Err(Rejected::TooLarge);
        }

        self.seq = seq;
        self.session_id = session_id;
        self.last_activity = self.last_activity.max(now);
        let mut key = String::with_capacity(60);
        push_u64(&mut key, seq);
        key.push('.');
        key.push_str(&message_id);
        key.clone_into(&mut self.last_key);
        self.entries.push(Entry {
            seq,
            key,
            json,
            at: now,
            seen: true,
        });
        self.evict();
        Ok(self.entries.last().map_or("", |entry| entry.json.as_str()))
    }

    /// The session an event at `now` belongs to, and whether it starts it.
    fn session_at(&self, now: f64) -> (u64, bool) {
        let expired = now - self.last_activity > self.config.session_timeout_ms;
        if self.session_id == 0 || expired {
            // A clock before 1970 starts at 1: 0 means "no session".
            let start = crate::clock::whole_ms(now).max(1);
            (start, true)
        } else {
            (self.session_id, false)
        }
    }

    /// Drops the oldest events not in flight while the queue is over its bound.
    fn evict(&mut self) {
        while self.entries.len() > self.config.max_queue as usize {
            let Some(oldest) = self
                .entries
                .iter()
                .position(|entry| !self.in_flight.contains(&entry.key))
            else {
                return;
            };
            let entry = self.entries.remove(oldest);
            self.dropped += 1;
            self.evicted.push(entry.key);
        }
    }

    /// The storage key of the event queued last: `<sequence>.<messageId>`.
    pub fn last_key(&self) -> &str {
        &self.last_key
    }

    /// Keys of events dropped from a full queue since the last call: remove them from storage.
    pub fn take_evicted(&mut self) -> Vec<String> {
        core::mem::take(&mut self.evicted)
    }

    /// Starts a sync with storage shared by several hosts (tabs): every event not in flight is
    /// forgotten at [`Collector::end_sync`] unless [`Collector::restore`] sees it again.
    /// Returns false (and does nothing) while a batch is in flight.
    pub fn begin_sync(&mut self) -> bool {
        if !self.in_flight.is_empty() {
            return false;
        }
        for entry in &mut self.entries {
            entry.seen = false;
        }
        true
    }

    /// Forgets the events that [`Collector::restore`] did not see since [`Collector::begin_sync`]
    /// (another host delivered them).
    pub fn end_sync(&mut self) {
        self.entries.retain(|entry| entry.seen);
    }

    /// Puts back an event the host stored under `key` (from an earlier page, or another tab).
    /// Events are kept in sequence order; a key already queued is only marked as seen.
    /// Returns false for a key this collector did not write.
    pub fn restore(&mut self, key: &str, json: String) -> bool {
        let Some(seq) = key
            .split_once('.')
            .and_then(|(seq, _)| seq.parse::<u64>().ok())
        else {
            return false;
        };
        if let Some(entry) = self.entries.iter_mut().find(|entry| entry.key == key) {
            entry.seen = true;
            return true;
        }
        let at = self
            .entries
            .partition_point(|entry| (entry.seq, entry.key.as_str()) < (seq, key));
        self.entries.insert(
            at,
            Entry {
                seq,
                key: key.into(),
                json,
                at: 0.0,
                seen: true,
            },
        );
        self.seq = self.seq.max(seq);
        self.evict();
        true
    }

    /// Whether a batch should be sent now: nothing in flight, no retry pending, and either
    /// `flush_at` events waiting or the oldest waiting for `flush_interval_ms`.
    pub fn due(&self, now: f64) -> bool {
        self.in_flight.is_empty()
            && now >= self.not_before
            && self.entries.first().is_some_and(|oldest| {
                self.entries.len() >= self.config.flush_at as usize
                    || now - oldest.at >= self.config.flush_interval_ms
            })
    }

    /// Milliseconds from `now` until a batch is due (0 when it is due now), or -1 when nothing
    /// waits or a batch is in flight.
    pub fn next_wake(&self, now: f64) -> f64 {
        match self.entries.first() {
            Some(oldest) if self.in_flight.is_empty() => {
                let full = self.entries.len() >= self.config.flush_at as usize;
                let by_time = if full {
                    now
                } else {
                    oldest.at + self.config.flush_interval_ms
                };
                (by_time.max(self.not_before) - now).max(0.0)
            }
            _ => -1.0,
        }
    }

    /// Whether a retry delay is pending.
    pub fn backing_off(&self, now: f64) -> bool {
        now < self.not_before
    }

    /// Cuts the next batch from the oldest events, at most `max_bytes` long (and
    /// `max_batch_bytes`), and marks it in flight; `None` when nothing waits or a batch is in
    /// flight. The body is a `/v1/batch` request: `{"batch":[...],"sentAt":...}`, with a batch
    /// `context.droppedEvents` when the full queue dropped events since the last delivery.
    pub fn take_batch(&mut self, now: f64, max_bytes: u32) -> Option<String> {
        if !self.in_flight.is_empty() || self.entries.is_empty() {
            return None;
        }
        let limit = max_bytes.min(self.config.max_batch_bytes) as usize;
        let mut body = String::with_capacity(limit.min(64 * 1024));
        body.push_str("{\"batch\":[");
        for entry in &self.entries {
            // The tail of the body is at most ~90 bytes: keep room for it.
            let fits = body.len() + entry.json.len() + 100 <= limit;
            if !fits && !self.in_flight.is_empty() {
                break;
            }
            if !self.in_flight.is_empty() {
                body.push(',');
            }
            body.push_str(&entry.json);
            self.in_flight.push(entry.key.clone());
        }
        body.push_str("],\"sentAt\":\"");
        push_rfc3339(&mut body, now);
        body.push('"');
        if self.dropped > 0 {
            body.push_str(",\"context\":{\"droppedEvents\":");
            push_u64(&mut body, self.dropped);
            body.push('}');
        }
        body.push('}');
        self.dropped_in_flight = self.dropped;
        Some(body)
    }

    /// Storage keys of the batch in flight.
    pub fn in_flight(&self) -> &[String] {
        &self.in_flight
    }

    /// Applies the response to the batch in flight: `status` is the HTTP status, 0 for a
    /// network error; `retry_after_ms` the `Retry-After` header in milliseconds, or negative
    /// when absent. Read [`Collector::in_flight`] first: those are the keys to remove from
    /// storage when the result is `Delivered` or `Dropped`.
    pub fn settle(&mut self, status: u16, retry_after_ms: f64, now: f64) -> Settled {
        if self.in_flight.is_empty() {
            return Settled::Nothing;
        }
        let outcome = match status {
            200..=299 => Settled::Delivered,
            0 | 408 | 429 | 500.. => Settled::Retry,
            _ => Settled::Dropped,
        };
        if outcome == Settled::Retry {
            self.attempts = self.attempts.saturating_add(1);
            // The server's Retry-After is honoured as given; without one, back off.
            let delay = if retry_after_ms >= 0.0 {
                retry_after_ms
            } else {
                self.backoff()
            };
            self.not_before = now + delay;
        } else {
            let done = core::mem::take(&mut self.in_flight);
            self.entries.retain(|entry| !done.contains(&entry.key));
            self.dropped -= self.dropped_in_flight.min(self.dropped);
            self.attempts = 0;
            self.not_before = 0.0;
        }
        self.in_flight.clear();
        self.dropped_in_flight = 0;
        outcome
    }

    /// Exponential backoff with jitter: base × 2^(attempts−1), capped, then scaled by a random
    /// factor in [0.5, 1) so that many devices do not retry in step.
    fn backoff(&mut self) -> f64 {
        let exponent = self.attempts.saturating_sub(1).min(30);
        let ceiling =
            (self.config.retry_base_ms * f64::from(1u32 << exponent)).min(self.config.retry_max_ms);
        ceiling * (0.5 + 0.5 * self.rng.unit())
    }

    /// Forgets the batch in flight without a response (the page is going away and the host
    /// handed it to the browser): its events stay queued and stored, and are sent again by the
    /// next page unless this one comes back and hears the response first.
    pub fn abandon_in_flight(&mut self) {
        self.in_flight.clear();
        self.dropped_in_flight = 0;
    }

    /// Forgets the events stored under `keys` (delivered by a request whose response came after
    /// [`Collector::abandon_in_flight`]).
    pub fn forget<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) {
        let keys: Vec<&str> = keys.into_iter().collect();
        self.entries
            .retain(|entry| !keys.contains(&entry.key.as_str()));
    }

    /// Forgets every queued event (consent withdrawn); returns their keys.
    pub fn clear(&mut self) -> Vec<String> {
        self.in_flight.clear();
        self.dropped = 0;
        self.dropped_in_flight = 0;
        self.entries.drain(..).map(|entry| entry.key).collect()
    }

    /// Every queued event as `(key, json)`, oldest first (to store them once consent is given).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|entry| (entry.key.as_str(), entry.json.as_str()))
    }
}

#[cfg(test)]
mod tests;

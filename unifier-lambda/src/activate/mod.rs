//! Delivering the change log to destinations (`braid_core::activate::destination`): one
//! [`Deliverer`] per destination, each with its own cursor, retries and state, so a failing
//! destination never delays another.
//!
//! The outbox is the change log itself: its entries are written in the batch that changes the
//! profile, and a deliverer reads no further than what is durable, so an acknowledged change
//! is never lost and a crash never skips one. A destination's state (its cursor, counts, the
//! failure it retries, whether it is disabled) is an object in the lake,
//! `destinations/workspace=W/<key>/state.json`, written after each step that is not a plain
//! delivery and at most every [`SAVE_EVERY`] otherwise: a crash in between sends the last
//! messages again, with the same ids (a receiver recognizes them). Messages that cannot be
//! delivered are kept as dead letters beside it, `dead/date=YYYY-MM-DD/<first>-<last>.ndjson`,
//! with their last error and failure class.
//!
//! Messages of one destination go in the change log's order, one request at a time: a batch
//! that fails is retried (on the destination's schedule) before anything after it, which keeps
//! every profile's changes in order.

pub mod files;
pub mod http;
pub mod postgres;
mod webhook;

pub use webhook::Webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use braid_core::activate::destination::{
    Copying, DeliveryState, Destination, DestinationKind, Message, Method, ProfileView, Step,
};
use braid_core::activate::replay::{ReplayRequest, ReplayResult};
use braid_core::timestamp;
use serde_json::{Value, json};

use crate::lake::store::{ObjectStore, StoreError};
use crate::profiles::kv::KvHome;
use crate::profiles::{ProfileError, ProfileUnify};

/// A request to a destination.
#[derive(Clone, Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Headers besides the content type.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// What came of a request: its status (`None`: no answer), the `Retry-After` asked, and what
/// happened in words.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// The status.
    pub status: Option<u16>,
    /// The wait the receiver asked for.
    pub retry_after: Option<Duration>,
    /// What happened.
    pub error: String,
}

impl Answer {
    /// A success.
    pub fn ok() -> Answer {
        Answer {
            status: Some(200),
            ..Answer::default()
        }
    }
}

/// Sends a webhook's requests (HTTP: [`http::HttpSender`]).
pub trait Sender: Send + Sync {
    /// Sends `request`; every failure is an [`Answer`] (no status: none came).
    fn send(&self, request: Request) -> impl Future<Output = Answer> + Send;
}

/// What a destination is given of each message's profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wants {
    /// Nothing.
    Nothing,
    /// Its identifiers, chosen traits and consent ([`ProfileView`]).
    View,
    /// That and the whole profile as the profile API shows it.
    Whole,
}

/// One request's messages, as a destination is given them.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// The request's id: its message's, or its batch's (`Destination::request_id`).
    pub id: &'a str,
    /// The messages, in the change log's order.
    pub messages: &'a [Message],
    /// Each message's profile as it is now (`None`: gone, or not asked for).
    pub views: &'a [Option<ProfileView>],
    /// The full copy the destination's rows are in (`DeliveryState::sync`).
    pub sync: u64,
    /// Now (ms).
    pub now: i64,
}

/// A kind of destination: how a request's messages reach it. Adding a kind is a type that
/// implements this (one file beside [`Webhook`] and [`postgres::Postgres`]) and its settings'
/// check in `braid_core::activate::destination`; the deliverer does the rest (cursor, order,
/// retries, dead letters, state).
pub trait Sink: Send + Sync {
    /// What it needs of each message's profile.
    fn wants(&self) -> Wants;

    /// Whether it keeps a copy of every profile: it is given every profile first (when it is
    /// new, and after a rebuild of the profiles), and then their changes.
    fn copies(&self) -> bool {
        false
    }

    /// Delivers `delivery`; every failure is an [`Answer`] (its status read as HTTP's:
    /// none or 5xx is retried, 4xx refused, 410 disables).
    fn deliver(&self, delivery: Delivery<'_>) -> impl Future<Output = Answer> + Send;

    /// How often it is given every profile again besides (a scheduled full export).
    fn copy_every(&self) -> Option<Duration> {
        None
    }

    /// Ends full copy `sync`: what it holds from before it (profiles that no longer exist)
    /// goes.
    fn finish_copy(&self, sync: u64) -> impl Future<Output = Answer> + Send {
        let _ = sync;
        async { Answer::ok() }
    }
}

/// A deliverer that cannot go on: its state or dead letters cannot be written, or the profile
/// store fails (it tries again after a pause).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The lake.
    #[error(transparent)]
    Lake(#[from] StoreError),
    /// The profile store.
    #[error(transparent)]
    Profiles(#[from] ProfileError),
    /// A state object that is not one.
    #[error("the state of destination {key}: {message}")]
    State {
        /// The destination.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// What one step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing to deliver.
    Idle,
    /// Moved past entries it does not receive.
    Skipped(usize),
    /// Delivered this many messages.
    Delivered(usize),
    /// Kept this many messages as dead letters.
    DeadLettered(usize),
    /// The next attempt is due at this time (ms).
    WaitingUntil(i64),
    /// Switched off, or disabled.
    Disabled,
}

/// How often the state is written while deliveries go well.
pub const SAVE_EVERY: Duration = Duration::from_millis(250);

/// Entries read from the change log per step.
const PAGE: usize = 500;

/// The key of a destination's state object.
pub fn state_key(workspace: &str, key: &str) -> String {
    format!("destinations/workspace={workspace}/{key}/state.json")
}

/// The prefix of a destination's replay requests (`requests/`) and results (`done/`).
pub fn replay_prefix(workspace: &str, key: &str) -> String {
    format!("destinations/workspace={workspace}/{key}/replay/")
}

/// How often a deliverer looks for replay requests.
const REPLAY_CHECK: Duration = Duration::from_secs(2);

/// A replay under way: its request's object, what it has done, the dead letter objects left.
struct Replaying {
    key: String,
    result: ReplayResult,
    objects: std::collections::VecDeque<String>,
}

/// The prefix of a destination's dead letters.
pub fn dead_prefix(workspace: &str, key: &str) -> String {
    format!("destinations/workspace={workspace}/{key}/dead/")
}

/// Reads a destination's state (the default when it has none yet).
///
/// # Errors
///
/// When the lake fails or the object is not a state.
pub async fn read_state<S: ObjectStore>(
    lake: &S,
    workspace: &str,
    key: &str,
) -> Result<DeliveryState, DeliverError> {
    match lake.get(&state_key(workspace, key)).await? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| DeliverError::State {
            key: key.to_owned(),
            message: e.to_string(),
        }),
        None => Ok(DeliveryState::default()),
    }
}

/// The destinations' states as their deliverers hold them now (each posts its state when it
/// opens and when it saves), for the status API and the metrics of the process running them.
#[derive(Clone, Debug, Default)]
pub struct Board(Arc<std::sync::Mutex<Vec<(Destination, DeliveryState)>>>);

impl Board {
    fn post(&self, destination: &Destination, state: &DeliveryState) {
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match all
            .iter_mut()
            .find(|(d, _)| d.key() == destination.key() && d.workspace == destination.workspace)
        {
            Some((_, posted)) => posted.clone_from(state),
            None => all.push((destination.clone(), state.clone())),
        }
    }

    /// Every destination posted, with its state, in the order they opened.
    pub fn all(&self) -> Vec<(Destination, DeliveryState)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A configured destination's sink, of whatever kind it is (files are written to the lake
/// `S`).
pub enum AnySink<S> {
    /// A webhook over HTTPS (each boxed: a sink is made once, and they differ in size).
    Webhook(Box<Webhook<http::HttpSender>>),
    /// A `PostgreSQL` database.
    Postgres(Box<postgres::Postgres>),
    /// Files in the lake.
    Files(Box<files::Files<S>>),
}

impl<S: ObjectStore> AnySink<S> {
    /// The sink of `destination` (checked, and switched on), writing files to `lake`.
    ///
    /// # Errors
    ///
    /// What keeps it from being used: a webhook without its key, a URL its client cannot
    /// read.
    pub fn of(destination: &Destination, lake: S) -> Result<AnySink<S>, String> {
        destination.require_key().map_err(|e| e.to_string())?;
        let failed =
            |e: &dyn std::fmt::Display| format!("destination {:?}: {e}", destination.key());
        Ok(match destination.config.kind {
            DestinationKind::Webhook => AnySink::Webhook(Box::new(Webhook::new(
                destination.clone(),
                http::HttpSender::new(destination).map_err(|e| failed(&e))?,
            ))),
            DestinationKind::Postgres => AnySink::Postgres(Box::new(
                postgres::Postgres::new(destination.clone()).map_err(|e| e.to_string())?,
            )),
            DestinationKind::Files => {
                AnySink::Files(Box::new(files::Files::new(destination.clone(), lake)))
            }
        })
    }
}

impl<S: ObjectStore> Sink for AnySink<S> {
    fn wants(&self) -> Wants {
        match self {
            AnySink::Webhook(sink) => sink.wants(),
            AnySink::Postgres(sink) => sink.wants(),
            AnySink::Files(sink) => sink.wants(),
        }
    }

    fn copies(&self) -> bool {
        match self {
            AnySink::Webhook(sink) => sink.copies(),
            AnySink::Postgres(sink) => sink.copies(),
            AnySink::Files(sink) => sink.copies(),
        }
    }

    fn copy_every(&self) -> Option<Duration> {
        match self {
            AnySink::Webhook(sink) => sink.copy_every(),
            AnySink::Postgres(sink) => sink.copy_every(),
            AnySink::Files(sink) => sink.copy_every(),
        }
    }

    async fn deliver(&self, delivery: Delivery<'_>) -> Answer {
        match self {
            AnySink::Webhook(sink) => sink.deliver(delivery).await,
            AnySink::Postgres(sink) => sink.deliver(delivery).await,
            AnySink::Files(sink) => sink.deliver(delivery).await,
        }
    }

    async fn finish_copy(&self, sync: u64) -> Answer {
        match self {
            AnySink::Webhook(sink) => sink.finish_copy(sync).await,
            AnySink::Postgres(sink) => sink.finish_copy(sync).await,
            AnySink::Files(sink) => sink.finish_copy(sync).await,
        }
    }
}

/// One destination's deliveries.
pub struct Deliverer<S, H: KvHome, K> {
    destination: Destination,
    lake: S,
    profiles: Arc<ProfileUnify<S, H>>,
    sink: K,
    state: DeliveryState,
    saved: DeliveryState,
    saved_at: tokio::time::Instant,
    jitter: bool,
    replay: Option<Replaying>,
    replay_checked: Option<tokio::time::Instant>,
    board: Option<Board>,
    page: std::collections::VecDeque<Value>,
    page_generation: u64,
}

impl<S: ObjectStore + Clone, H: KvHome, K: Sink> Deliverer<S, H, K> {
    /// The deliverer of `destination`, from its saved state.
    ///
    /// # Errors
    ///
    /// When its state cannot be read.
    pub async fn open(
        destination: Destination,
        lake: S,
        profiles: Arc<ProfileUnify<S, H>>,
        sink: K,
    ) -> Result<Self, DeliverError> {
        let state = read_state(&lake, &destination.workspace, destination.key()).await?;
        Ok(Deliverer {
            destination,
            lake,
            profiles,
            sink,
            saved: state.clone(),
            state,
            saved_at: tokio::time::Instant::now(),
            jitter: true,
            replay: None,
            replay_checked: None,
            board: None,
            page: std::collections::VecDeque::new(),
            page_generation: 0,
        })
    }

    /// The same, retrying exactly on the schedule (for tests).
    #[must_use]
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The same, posting its state on `board` (now, and whenever it saves it).
    #[must_use]
    pub fn on_board(mut self, board: &Board) -> Self {
        board.post(&self.destination, &self.state);
        self.board = Some(board.clone());
        self
    }

    /// Looks for replay requests at its next step (it looks every few seconds otherwise).
    pub fn look_for_replays(&mut self) {
        self.replay_checked = None;
    }

    /// Its state as it is now.
    pub fn state(&self) -> &DeliveryState {
        &self.state
    }

    /// Delivers (or retries) at most one request's messages, at `now` (ms).
    ///
    /// # Errors
    ///
    /// When the lake or the profile store fails.
    pub async fn step(&mut self, now: i64) -> Result<Progress, DeliverError> {
        if !self.destination.config.enabled || self.state.disabled.is_some() {
            return Ok(Progress::Disabled);
        }
        if let Some(retrying) = &self.state.retrying
            && retrying.next_at > now
        {
            return Ok(Progress::WaitingUntil(retrying.next_at));
        }
        if let Some(progress) = self.replay_step(now).await? {
            return Ok(progress);
        }
        if self.state.copy.is_none()
            && let Some(every) = self.sink.copy_every()
            && self.state.copied_at.is_some_and(|at| {
                now.saturating_sub(at) >= i64::try_from(every.as_millis()).unwrap_or(i64::MAX)
            })
            && let Some((_, durable)) = self
                .profiles
                .log_position(&self.destination.workspace)
                .await?
        {
            // A scheduled full copy (a full export every so often): the changes it covers
            // are not delivered again.
            self.page.clear();
            self.start_copy(durable).await?;
            return Ok(Progress::Idle);
        }
        if self.state.copy.is_some() {
            return self.copy_step(now).await;
        }
        // The entries read last and not done with yet: a page is read once, not once per
        // request (a destination of one message per request read 500 entries for each).
        let mut page = std::mem::take(&mut self.page);
        let progress = self.deliver_from(now, &mut page).await;
        let after = self.state.after;
        while page.front().and_then(number).is_some_and(|n| n <= after) {
            page.pop_front();
        }
        self.page = page;
        progress
    }

    /// A step over the change log, from the entries of `page` (read again when it is empty).
    async fn deliver_from(
        &mut self,
        now: i64,
        page: &mut std::collections::VecDeque<Value>,
    ) -> Result<Progress, DeliverError> {
        let workspace = self.destination.workspace.clone();
        let Some((generation, durable)) = self.profiles.log_position(&workspace).await? else {
            return Ok(Progress::Idle);
        };
        // A page holds a request's worth at least; one that is half done with is topped up
        // with what became durable since it was read (a read per half page, not per request).
        let size = PAGE.max(self.destination.batch());
        if generation != self.page_generation {
            page.clear();
        }
        let last = page.back().and_then(number).unwrap_or(self.state.after);
        if (page.len() <= size / 2 || page.len() < self.destination.batch())
            && durable > last
            && let Some((read, _, entries)) = self
                .profiles
                .durable_changes(&workspace, last, size - page.len())
                .await?
        {
            page.extend(entries);
            self.page_generation = read;
        }
        // Whether the page holds every entry durable now.
        let exhausted = page.back().and_then(number).unwrap_or(self.state.after) >= durable;
        let entries = page;
        if generation != self.state.generation {
            // A rebuild numbers its change log anew: start again from its beginning (the
            // messages keep their ids).
            let fresh = self.state.generation == 0 && self.state.after == 0;
            self.state.generation = generation;
            if self.sink.copies() {
                entries.clear();
                self.start_copy(durable).await?;
                return Ok(Progress::Idle);
            }
            if !fresh {
                entries.clear();
                self.state.after = 0;
                self.state.retrying = None;
                self.save().await?;
                return Ok(Progress::Idle);
            }
        }
        let Some(first) = entries.front().and_then(number) else {
            self.state.oldest_pending_at = None;
            self.save_if_changed().await?;
            return Ok(Progress::Idle);
        };
        if first > self.state.after + 1 {
            // Kept `change_log_days`, then gone: counted once, not silently passed.
            self.state.expired += first - self.state.after - 1;
            self.state.after = first - 1;
        }
        self.state.oldest_pending_at = entries.front().and_then(entry_at);
        if let Some(retrying) = &self.state.retrying {
            let through = retrying.through;
            entries.retain(|e| number(e).is_some_and(|n| n <= through));
            if entries.is_empty() {
                // The batch it retried is no longer in the log (expired): nothing to resend.
                self.state.retrying = None;
                self.save().await?;
                return Ok(Progress::Idle);
            }
        }
        // Fewer than a request's worth, and no more in the log: they wait for more while the
        // oldest has waited less than `wait_seconds` (a retry does not wait).
        let wait = i64::try_from(self.destination.wait().as_millis()).unwrap_or(i64::MAX);
        if exhausted
            && wait > 0
            && self.state.retrying.is_none()
            && entries.len() < self.destination.batch()
            && let Some(oldest) = entries.front().and_then(entry_at)
            && oldest.saturating_add(wait) > now
        {
            return Ok(Progress::WaitingUntil(oldest.saturating_add(wait)));
        }
        let (messages, through, considered) =
            self.messages(&workspace, entries.make_contiguous()).await?;
        let skipped = considered - messages.len();
        if messages.is_empty() {
            self.state.skipped += skipped as u64;
            self.state.after = through;
            self.save_soon().await?;
            return Ok(Progress::Skipped(skipped));
        }
        let (messages, views): (Vec<Message>, Vec<Option<ProfileView>>) =
            messages.into_iter().unzip();
        let answer = self.send(&messages, &views, now).await;
        let id = self.destination.request_id(&messages);
        let jitter = if self.jitter { jitter() } else { 0.0 };
        let step = self.state.after_attempt(
            &self.destination,
            through,
            now,
            answer.status,
            answer.retry_after,
            &answer.error,
            jitter,
        );
        self.settle(step, &messages, through, skipped as u64, &id, &answer, now)
            .await
    }

    /// Moves the state after an attempt's `step`: past the batch (`through`), or not.
    #[expect(clippy::too_many_arguments, reason = "one attempt's facts")]
    async fn settle(
        &mut self,
        step: Step,
        messages: &[Message],
        through: u64,
        skipped: u64,
        id: &str,
        answer: &Answer,
        now: i64,
    ) -> Result<Progress, DeliverError> {
        match step {
            Step::Delivered => {
                self.state.after = through;
                self.state.delivered += messages.len() as u64;
                self.state.requests += 1;
                self.state.skipped += skipped;
                self.state.last_delivered_at = Some(now);
                self.state.last_entry_at = messages.last().and_then(|m| m.at);
                self.save_soon().await?;
                Ok(Progress::Delivered(messages.len()))
            }
            Step::RetryAt(at) => {
                tracing::warn!(destination = self.destination.key(), error = %answer.error,
                               "a delivery failed; it is retried");
                self.save().await?;
                Ok(Progress::WaitingUntil(at))
            }
            Step::DeadLetter { class, attempts } => {
                self.dead_letters(messages, id, class, answer, attempts, now)
                    .await?;
                self.state.after = through;
                self.state.dead_lettered += messages.len() as u64;
                self.state.skipped += skipped;
                self.save().await?;
                Ok(Progress::DeadLettered(messages.len()))
            }
            Step::Disable(reason) => {
                tracing::error!(destination = self.destination.key(), %reason,
                                "a destination is disabled");
                self.state.retrying = None;
                self.state.disabled =
                    Some(braid_core::activate::destination::Disabled { at: now, reason });
                self.save().await?;
                Ok(Progress::Disabled)
            }
        }
    }

    /// Starts a full copy: every profile first, then the changes after the last one durable
    /// now, `durable` (a profile changed while it is copied is written again by its change).
    async fn start_copy(&mut self, durable: u64) -> Result<(), DeliverError> {
        self.state.sync += 1;
        self.state.after = 0;
        self.state.retrying = None;
        self.state.copy = Some(Copying {
            through: durable,
            after: String::new(),
        });
        self.save().await
    }

    /// One step of a replay (`braid destinations replay`): a replay request taken up, one
    /// dead letter object sent again, or the replay's end; `None` when there is none.
    async fn replay_step(&mut self, now: i64) -> Result<Option<Progress>, DeliverError> {
        let (workspace, key) = (
            self.destination.workspace.clone(),
            self.destination.key().to_owned(),
        );
        if self.replay.is_none() {
            if self
                .replay_checked
                .is_some_and(|at| at.elapsed() < REPLAY_CHECK)
            {
                return Ok(None);
            }
            self.replay_checked = Some(tokio::time::Instant::now());
            let prefix = format!("{}requests/", replay_prefix(&workspace, &key));
            let Some(first) = self
                .lake
                .list(&prefix)
                .await?
                .into_iter()
                .map(|o| o.key)
                .min()
            else {
                return Ok(None);
            };
            let Some(request) = self
                .lake
                .get(&first)
                .await?
                .and_then(|bytes| serde_json::from_slice::<ReplayRequest>(&bytes).ok())
            else {
                tracing::warn!(
                    destination = key,
                    object = first,
                    "not a replay request: removed"
                );
                self.lake.delete(&first).await?;
                return Ok(None);
            };
            let mut objects: Vec<String> = self
                .lake
                .list(&dead_prefix(&workspace, &key))
                .await?
                .into_iter()
                .map(|o| o.key)
                .filter(|k| {
                    let date = k.split("date=").nth(1).and_then(|d| d.get(..10));
                    date.is_some_and(|d| request.may_hold(d))
                })
                .collect();
            objects.sort();
            tracing::info!(
                destination = key,
                id = request.id,
                objects = objects.len(),
                "replaying dead letters"
            );
            self.replay = Some(Replaying {
                key: first,
                result: ReplayResult {
                    request,
                    ..ReplayResult::default()
                },
                objects: objects.into(),
            });
        }
        let Some(replaying) = self.replay.as_mut() else {
            return Ok(None);
        };
        let Some(object) = replaying.objects.pop_front() else {
            let Some(mut done) = self.replay.take() else {
                return Ok(None);
            };
            done.result.finished_at = now;
            let result = format!(
                "{}done/{}.json",
                replay_prefix(&workspace, &key),
                done.result.request.id
            );
            let bytes = serde_json::to_vec_pretty(&done.result).unwrap_or_default();
            self.lake.put(&result, bytes).await?;
            self.lake.delete(&done.key).await?;
            self.save().await?;
            return Ok(Some(Progress::Idle));
        };
        let delivered = self.replay_object(&object, now).await?;
        Ok(Some(Progress::Delivered(delivered)))
    }

    /// Sends the dead letters of `object` that the replay names again, a request at a time;
    /// those delivered leave the object (which goes when it is empty). How many were.
    async fn replay_object(&mut self, object: &str, now: i64) -> Result<usize, DeliverError> {
        let Some(bytes) = self.lake.get(object).await? else {
            return Ok(0);
        };
        let Some(replaying) = self.replay.as_ref() else {
            return Ok(0);
        };
        let request = replaying.result.request.clone();
        let lines: Vec<Value> = bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        let (named, mut kept): (Vec<Value>, Vec<Value>) =
            lines.into_iter().partition(|line| request.names(line));
        let mut delivered = 0;
        let mut error = None;
        let mut chunks = named.chunks(self.destination.batch());
        for chunk in chunks.by_ref() {
            let messages: Vec<Message> = chunk.iter().map(dead_message).collect();
            let views = self.replay_views(&messages).await?;
            let answer = self.send(&messages, &views, now).await;
            if !delivered_by(&answer) {
                error = Some(answer.error);
                kept.extend_from_slice(chunk);
                break;
            }
            delivered += chunk.len();
        }
        for chunk in chunks {
            kept.extend_from_slice(chunk);
        }
        if kept.is_empty() {
            self.lake.delete(object).await?;
        } else if delivered > 0 {
            let mut out = Vec::new();
            for line in &kept {
                out.extend(serde_json::to_vec(line).unwrap_or_default());
                out.push(b'\n');
            }
            self.lake.put(object, out).await?;
        }
        self.state.replayed += delivered as u64;
        if let Some(replaying) = self.replay.as_mut() {
            replaying.result.delivered += delivered as u64;
            if let Some(error) = error {
                // Stop here: what is left waits for another replay.
                replaying.result.kept +=
                    kept.iter().filter(|line| request.names(line)).count() as u64;
                replaying.result.error = Some(error);
                replaying.objects.clear();
            }
        }
        Ok(delivered)
    }

    /// Hands `messages` (with their profiles) to the sink as one request.
    async fn send(&self, messages: &[Message], views: &[Option<ProfileView>], now: i64) -> Answer {
        let id = self.destination.request_id(messages);
        self.sink
            .deliver(Delivery {
                id: &id,
                messages,
                views,
                sync: self.state.sync,
                now,
            })
            .await
    }

    /// The profiles of dead letters sent again, for a sink that writes whole profiles (as they
    /// are now); none for one that sends the messages as they were kept.
    async fn replay_views(
        &self,
        messages: &[Message],
    ) -> Result<Vec<Option<ProfileView>>, DeliverError> {
        if self.sink.wants() != Wants::Whole {
            return Ok(vec![None; messages.len()]);
        }
        let ids: Vec<&str> = messages
            .iter()
            .map(|m| {
                m.body
                    .get("profile")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            })
            .collect();
        Ok(self
            .profiles
            .delivery_views(
                &self.destination.workspace,
                &ids,
                &self.destination.config.traits,
                true,
            )
            .await?)
    }

    /// One step of a full copy: the next page of profiles, or its end.
    async fn copy_step(&mut self, now: i64) -> Result<Progress, DeliverError> {
        let Some(copy) = self.state.copy.clone() else {
            return Ok(Progress::Idle);
        };
        let workspace = self.destination.workspace.clone();
        let ids = self
            .profiles
            .profile_ids(&workspace, &copy.after, self.destination.batch())
            .await?;
        let messages: Vec<Message> = ids
            .iter()
            .map(|id| Message {
                id: format!("copy_{}_{id}", self.state.sync),
                number: copy.through,
                at: None,
                body: json!({"type": "profile.copied", "profile": id}),
            })
            .collect();
        let answer = if ids.is_empty() {
            self.sink.finish_copy(self.state.sync).await
        } else {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let views = self
                .profiles
                .delivery_views(&workspace, &refs, &self.destination.config.traits, true)
                .await?;
            let answer = self.send(&messages, &views, now).await;
            if delivered_by(&answer) {
                self.state.copied += messages.len() as u64;
                self.state.requests += 1;
                self.state.copy = Some(Copying {
                    through: copy.through,
                    after: ids.last().cloned().unwrap_or_default(),
                });
                self.state.last_delivered_at = Some(now);
                self.state.retrying = None;
                self.state.failing_since = None;
                self.save_soon().await?;
                return Ok(Progress::Delivered(messages.len()));
            }
            answer
        };
        let jitter = if self.jitter { jitter() } else { 0.0 };
        let step = self.state.after_attempt(
            &self.destination,
            copy.through,
            now,
            answer.status,
            answer.retry_after,
            &answer.error,
            jitter,
        );
        match step {
            Step::Delivered => {
                // The end of the copy: the changes after it follow.
                self.state.copy = None;
                self.state.after = copy.through;
                self.state.copied_at = Some(now);
                self.save().await?;
                Ok(Progress::Idle)
            }
            Step::DeadLetter { class, attempts } => {
                // A page refused: kept as dead letters (a replay writes the profiles as they
                // are then), and the copy goes on past it. Its end refused: the copy ends all
                // the same (what it would have deleted stays until the next one).
                tracing::warn!(destination = self.destination.key(), error = %answer.error,
                               "a step of the full copy was refused");
                self.state.retrying = None;
                if messages.is_empty() {
                    self.state.copy = None;
                    self.state.after = copy.through;
                    self.state.copied_at = Some(now);
                } else {
                    let id = self.destination.request_id(&messages);
                    self.dead_letters(&messages, &id, class, &answer, attempts, now)
                        .await?;
                    self.state.dead_lettered += messages.len() as u64;
                    self.state.copy = Some(Copying {
                        through: copy.through,
                        after: ids.last().cloned().unwrap_or(copy.after),
                    });
                }
                self.save().await?;
                Ok(Progress::DeadLettered(messages.len()))
            }
            other => {
                self.settle(other, &[], copy.through, 0, "", &answer, now)
                    .await
            }
        }
    }

    /// The messages of the next request from `entries` (in order) with their profiles, the
    /// number of the last entry they account for, and how many entries that is (messages,
    /// and entries it does not receive).
    async fn messages(
        &self,
        workspace: &str,
        entries: &[Value],
    ) -> Result<(Vec<(Message, Option<ProfileView>)>, u64, usize), DeliverError> {
        let config = &self.destination.config;
        let wants = self.sink.wants();
        let batch = self.destination.batch();
        let mut messages = Vec::new();
        let mut through = self.state.after;
        let mut considered = 0;
        for chunk in entries.chunks(batch) {
            let views = if wants == Wants::Nothing {
                vec![None; chunk.len()]
            } else {
                let ids: Vec<&str> = chunk
                    .iter()
                    .map(|e| e.get("profile").and_then(Value::as_str).unwrap_or_default())
                    .collect();
                self.profiles
                    .delivery_views(workspace, &ids, &config.traits, wants == Wants::Whole)
                    .await?
            };
            for (entry, view) in chunk.iter().zip(views) {
                if let Some(message) = self.destination.message(entry, view.as_ref()) {
                    messages.push((message, view));
                }
                through = number(entry).unwrap_or(through);
                considered += 1;
                if messages.len() == batch {
                    // Full: the next chunk's profiles are not read.
                    return Ok((messages, through, considered));
                }
            }
        }
        Ok((messages, through, considered))
    }

    /// Keeps `messages` as dead letters, with what happened.
    async fn dead_letters(
        &self,
        messages: &[Message],
        request: &str,
        class: &str,
        answer: &Answer,
        attempts: u32,
        now: i64,
    ) -> Result<(), DeliverError> {
        let mut lines = Vec::new();
        for message in messages {
            let line = json!({"id": message.id, "number": message.number,
                              "message": message.body, "class": class, "error": answer.error,
                              "status": answer.status, "attempts": attempts,
                              "request": request, "at": now});
            lines.extend(serde_json::to_vec(&line).unwrap_or_default());
            lines.push(b'\n');
        }
        let date = timestamp::from_unix_millis(now)
            .map(|at| timestamp::format(at).chars().take(10).collect::<String>())
            .unwrap_or_default();
        let number = |m: Option<&Message>| m.map_or(0, |m| m.number);
        let key = format!(
            "{}date={date}/{:016x}-{:016x}.ndjson",
            dead_prefix(&self.destination.workspace, self.destination.key()),
            number(messages.first()),
            number(messages.last()),
        );
        self.lake.put(&key, lines).await?;
        Ok(())
    }

    async fn save(&mut self) -> Result<(), DeliverError> {
        let key = state_key(&self.destination.workspace, self.destination.key());
        let bytes = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        self.lake.put(&key, bytes).await?;
        if let Some(board) = &self.board {
            board.post(&self.destination, &self.state);
        }
        self.saved = self.state.clone();
        self.saved_at = tokio::time::Instant::now();
        Ok(())
    }

    /// Saves when the last save is [`SAVE_EVERY`] old.
    async fn save_soon(&mut self) -> Result<(), DeliverError> {
        if self.saved_at.elapsed() >= SAVE_EVERY {
            self.save().await?;
        }
        Ok(())
    }

    /// Saves what is not saved yet.
    ///
    /// # Errors
    ///
    /// When the lake fails.
    pub async fn save_if_changed(&mut self) -> Result<(), DeliverError> {
        if self.state != self.saved {
            self.save().await?;
        }
        Ok(())
    }

    /// Delivers until `stop` is set: a step after another while there is work, else a pause
    /// of `poll`, or until a retry is due. Its state is saved when it stops.
    pub async fn run(mut self, poll: Duration, stop: Arc<AtomicBool>) {
        let key = self.destination.key().to_owned();
        while !stop.load(Ordering::Relaxed) {
            let now = braid_core::timestamp::unix_millis(time::OffsetDateTime::now_utc());
            let pause = match self.step(now).await {
                Ok(Progress::Delivered(_) | Progress::Skipped(_) | Progress::DeadLettered(_)) => {
                    continue;
                }
                Ok(Progress::Idle | Progress::Disabled) => poll,
                Ok(Progress::WaitingUntil(at)) => {
                    Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(poll)
                }
                Err(error) => {
                    tracing::warn!(destination = key, %error, "delivery paused");
                    poll.max(Duration::from_secs(1))
                }
            };
            pause_unless(pause, &stop).await;
        }
        if let Err(error) = self.save_if_changed().await {
            tracing::warn!(destination = key, %error, "its state was not saved at the stop");
        }
    }
}

/// Sleeps `pause`, waking early when `stop` is set.
async fn pause_unless(pause: Duration, stop: &AtomicBool) {
    let until = tokio::time::Instant::now() + pause;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

/// A number in `0.0..1.0` that spreads retries.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000) / 1_000.0
}

/// Whether `answer` is a delivery.
fn delivered_by(answer: &Answer) -> bool {
    braid_core::activate::webhook::outcome(answer.status)
        == braid_core::activate::webhook::Outcome::Delivered
}

/// A dead letter (a line of a dead letter object) as the message it was.
fn dead_message(line: &Value) -> Message {
    let field = |name: &str| line.get(name);
    Message {
        id: field("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        number: field("number").and_then(Value::as_u64).unwrap_or_default(),
        at: None,
        body: field("message").cloned().unwrap_or_default(),
    }
}

fn number(entry: &Value) -> Option<u64> {
    entry.get("number").and_then(Value::as_u64)
}

fn entry_at(entry: &Value) -> Option<i64> {
    let text = entry.get("at").and_then(Value::as_str)?;
    timestamp::parse(text).ok().map(timestamp::unix_millis)
}

#[cfg(test)]
mod tests;

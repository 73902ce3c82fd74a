//! Where alerts, their events and the notification outbox are kept.
//!
//! One [`Store`] interface, two databases: SQLite (embedded default) and
//! PostgreSQL (shared by replicas). Each has its own migrations folder; the
//! SQL both share is written once in `sql.rs` and instantiated per database
//! by a macro, because sqlx's `Any` driver has no typed timestamps and
//! generic sqlx code drowns in trait bounds.
//!
//! The decision of what an incoming batch changes ([`plan_batch`]) is pure
//! and shared; the databases only load current states and write the result,
//! all in one transaction, so a 200 means alerts, events and notifications
//! are all on disk.

mod error;
mod fp_index;
pub mod postgres;
mod signal;
mod sql;
pub mod sqlite;
mod sqlite_writer;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::StorageConfig;
use crate::model::alert::{
    decide, Ack, AlertState, AlertStatus, Event, Fingerprint, IncomingAlert, Source, StoredAlert,
    Transition,
};
use crate::model::flapping::FlappingConfig;
use crate::model::flapping::{FlapRow, FlapVerdict, StableDue};
use crate::model::matcher::Matcher;
use crate::model::notification::AlertGroup;
use crate::model::silence::{NewSilence, Silence};
pub use error::{StoreError, StoreErrorKind};
pub use signal::OutboxSignal;

/// Opens the configured database and applies migrations.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        StorageConfig::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        StorageConfig::Postgres { url } => Ok(Arc::new(postgres::PostgresStore::open(url).await?)),
    }
}

/// The alerts of one incoming request (one webhook call).
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// Alerts in the order received.
    pub alerts: Vec<IncomingAlert>,
}

/// Decides which notifications a request's state changes cause. Implemented
/// by `deliver::Planner`; the store calls it inside the ingest transaction so
/// notifications are committed together with the alerts.
pub trait NotificationPlanner: Send + Sync {
    /// `alerts` are one request's alerts with what receiving each meant.
    fn plan(&self, alerts: &[Decided<'_>]) -> Vec<NewNotification>;

    /// (channel, fingerprint) of the firing copies received again that a
    /// throttle window counts: the store adds one to the window's repeats
    /// if it is open.
    fn repeats(&self, _alerts: &[Decided<'_>]) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Flapping detection's settings; `None` (the default) when it is off,
    /// and then ingest loads no flapping state at all.
    fn flapping(&self) -> Option<FlappingConfig> {
        None
    }
}

/// One received alert and what receiving it meant. Borrowed: a storm of new
/// alerts is planned without copying each alert again.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    /// As received.
    pub alert: &'a IncomingAlert,
    /// What it means.
    pub transition: Transition,
    /// Start of the incident as it now stands (a resolve keeps its start).
    pub starts_at: DateTime<Utc>,
    /// End, when resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// The incident's acknowledgement, if any.
    pub ack: Option<Ack>,
    /// What flapping detection made of this change (`None`: nothing, an
    /// ordinary change).
    pub flap: Option<FlapVerdict>,
}

impl Decided<'_> {
    /// The alert as a channel shows it: received labels, stored times.
    pub fn shown(&self) -> IncomingAlert {
        let mut a = self.alert.clone();
        a.starts_at = self.starts_at;
        a.ends_at = self.ends_at;
        a.ack = self.ack.clone();
        a
    }
}

/// A Telegram chat registered with a channel, and its subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRecord {
    /// The channel it registered with.
    pub channel: String,
    /// Telegram's chat id.
    pub chat_id: i64,
    /// The chat's @username (without @), if it has one.
    pub username: Option<String>,
    /// The @username (without @) of who sent `/start`, if they have one:
    /// `allow_from` may have let the chat in by it.
    pub registered_by: Option<String>,
    /// When `/start` registered it.
    pub registered_at: DateTime<Utc>,
    /// Its subscriptions, oldest first: (store id, pattern).
    pub subscriptions: Vec<(i64, SubscriptionPattern)>,
}

/// One `/subscribe` pattern as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionPattern {
    /// Alertmanager matchers (canonical text, comma-separated); all must hold.
    Matchers(String),
    /// Text found in the alertname, case-insensitively.
    Text(String),
}

impl SubscriptionPattern {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            SubscriptionPattern::Matchers(_) => "matcher",
            SubscriptionPattern::Text(_) => "text",
        }
    }

    /// The `pattern` column.
    pub fn text(&self) -> &str {
        match self {
            SubscriptionPattern::Matchers(t) | SubscriptionPattern::Text(t) => t,
        }
    }

    /// From the two columns.
    pub fn from_columns(kind: &str, text: String) -> Self {
        if kind == "matcher" {
            SubscriptionPattern::Matchers(text)
        } else {
            SubscriptionPattern::Text(text)
        }
    }
}

/// A `telegram_chats` row: channel, chat id, username, registered by,
/// registered at.
pub(crate) type ChatRow = (String, i64, Option<String>, Option<String>, i64);
/// A `chat_subscriptions` row: id, channel, chat id, kind, pattern.
pub(crate) type SubscriptionRow = (i64, String, i64, String, String);

/// Groups chat rows and subscription rows (both in order) into records.
pub(crate) fn chat_records(
    chats: Vec<ChatRow>,
    subs: Vec<SubscriptionRow>,
) -> Result<Vec<ChatRecord>, StoreError> {
    let mut out = Vec::with_capacity(chats.len());
    let mut at: HashMap<(String, i64), usize> = HashMap::new();
    for (channel, chat_id, username, registered_by, registered) in chats {
        at.insert((channel.clone(), chat_id), out.len());
        out.push(ChatRecord {
            channel,
            chat_id,
            username,
            registered_by,
            registered_at: from_micros(registered)?,
            subscriptions: Vec::new(),
        });
    }
    for (id, channel, chat_id, kind, pattern) in subs {
        if let Some(&i) = at.get(&(channel, chat_id)) {
            out[i]
                .subscriptions
                .push((id, SubscriptionPattern::from_columns(&kind, pattern)));
        }
    }
    Ok(out)
}

/// A notification about to enter the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// Channel name.
    pub channel: String,
    /// Destination within the channel (a chat id, ...).
    pub destination: String,
    /// What to say.
    pub group: AlertGroup,
    /// The route's `repeat_interval`: queuing this firing message (re)sets
    /// a reminder for each of its alerts on this channel.
    pub repeat_every: Option<std::time::Duration>,
    /// The route's `group_wait`: due this long after it is queued.
    pub delay: Option<std::time::Duration>,
    /// The route's `throttle`: a firing message opens a window per alert,
    /// a resolve message closes it.
    pub throttle: Option<std::time::Duration>,
}

/// A due `repeat_interval` reminder of one alert on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Reminder {
    /// Channel name.
    pub channel: String,
    /// The alert.
    pub fingerprint: String,
    /// The incident it reminds of (a new incident is a new reminder).
    pub starts_at: DateTime<Utc>,
    /// How often.
    pub every: std::time::Duration,
}

/// The rows per channel and alert the scheduler works through when they
/// fall due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    /// `repeat_interval` reminders.
    Reminders,
    /// `throttle` windows.
    ThrottleWindows,
}

impl Timed {
    /// Its table, keyed by (channel, fingerprint).
    pub(crate) fn table(self) -> &'static str {
        match self {
            Timed::Reminders => "reminders",
            Timed::ThrottleWindows => "throttle_windows",
        }
    }
}

/// A digest route's schedule on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestSchedule {
    /// Channel name.
    pub channel: String,
    /// The route's matchers as written: the digest's key.
    pub scope: String,
    /// How often.
    pub period: std::time::Duration,
    /// When the current period began.
    pub period_start: DateTime<Utc>,
    /// When it ends (a boundary in the configured zone).
    pub due_at: DateTime<Utc>,
}

impl DigestSchedule {
    /// (channel, scope, period, period start, due), times in microseconds.
    pub(crate) fn to_row(&self) -> (String, String, i64, i64, i64) {
        (
            self.channel.clone(),
            self.scope.clone(),
            i64::try_from(self.period.as_micros()).unwrap_or(i64::MAX),
            to_micros(self.period_start),
            to_micros(self.due_at),
        )
    }

    /// The schedule of a row read back.
    pub(crate) fn from_row(
        (channel, scope, period, start, due): (String, String, i64, i64, i64),
    ) -> Result<Self, StoreError> {
        Ok(DigestSchedule {
            channel,
            scope,
            period: std::time::Duration::from_micros(u64::try_from(period).unwrap_or(0)),
            period_start: from_micros(start)?,
            due_at: from_micros(due)?,
        })
    }
}

/// A digest whose period has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDigest {
    /// Channel name.
    pub channel: String,
    /// The route's matchers as written.
    pub scope: String,
    /// When the period it sums up began.
    pub period_start: DateTime<Utc>,
}

/// A throttle window that has closed.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleWindow {
    /// Channel name.
    pub channel: String,
    /// The alert.
    pub fingerprint: String,
    /// The incident the window was opened for.
    pub starts_at: DateTime<Utc>,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// Firing copies received while it was open.
    pub repeats: u32,
    /// The route's throttle.
    pub every: std::time::Duration,
}

/// What queuing notifications does to throttle windows: a firing message
/// opens one per alert (channel, fingerprint, incident start, window in
/// microseconds), a resolve message closes them.
pub(crate) struct WindowChanges {
    pub open: Vec<(String, String, i64, i64)>,
    pub close: Vec<(String, String)>,
}

pub(crate) fn window_changes(notifications: &[NewNotification]) -> WindowChanges {
    let mut changes = WindowChanges {
        open: Vec::new(),
        close: Vec::new(),
    };
    // A channel's message is queued once per destination: each alert once
    // per state (a batch may fire and then resolve it: open, then close).
    let mut seen: std::collections::HashSet<(&str, &str, AlertStatus)> =
        std::collections::HashSet::new();
    for n in notifications {
        let Some(window) = n.throttle else {
            continue;
        };
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        for a in &n.group.alerts {
            if !seen.insert((n.channel.as_str(), a.fingerprint.as_str(), n.group.status)) {
                continue;
            }
            let key = (n.channel.clone(), a.fingerprint.as_str().to_string());
            match n.group.status {
                AlertStatus::Firing => {
                    changes
                        .open
                        .push((key.0, key.1, to_micros(a.starts_at), window_us));
                }
                AlertStatus::Resolved => changes.close.push(key),
            }
        }
    }
    changes
}

/// When a notification queued at `now_us` falls due (`group_wait` holds it).
pub(crate) fn due_us(now_us: i64, delay: Option<std::time::Duration>) -> i64 {
    let delay = delay.map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    now_us.saturating_add(delay)
}

/// The reminders a firing message sets: (channel, fingerprint, incident
/// start, interval in microseconds), each once.
pub(crate) fn reminders_of(notifications: &[NewNotification]) -> Vec<(String, String, i64, i64)> {
    let mut out: Vec<(String, String, i64, i64)> = Vec::new();
    // A channel's message is queued once per destination: each alert once.
    let mut seen: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for n in notifications {
        let Some(every) = n.repeat_every else {
            continue;
        };
        if n.group.status != AlertStatus::Firing {
            continue;
        }
        let every_us = i64::try_from(every.as_micros()).unwrap_or(i64::MAX);
        for a in &n.group.alerts {
            if seen.insert((n.channel.as_str(), a.fingerprint.as_str())) {
                out.push((
                    n.channel.clone(),
                    a.fingerprint.as_str().to_string(),
                    to_micros(a.starts_at),
                    every_us,
                ));
            }
        }
    }
    out
}

/// Delivery state of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationState {
    /// Waiting for (another) attempt.
    Pending,
    /// Accepted by the channel.
    Sent,
    /// Gave up after its retries; can be re-sent.
    Failed,
}

impl NotificationState {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sent => "sent",
            NotificationState::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(NotificationState::Pending),
            "sent" => Some(NotificationState::Sent),
            "failed" => Some(NotificationState::Failed),
            _ => None,
        }
    }
}

/// A notification as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// Outbox id.
    pub id: i64,
    /// Channel name.
    pub channel: String,
    /// Destination within the channel.
    pub destination: String,
    /// Where it stands.
    pub state: NotificationState,
    /// Attempts made (including one in progress).
    pub attempts: u32,
    /// Parts of a split message already accepted.
    pub parts_done: u32,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it may next be tried.
    pub next_attempt_at: DateTime<Utc>,
    /// When the channel accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// What it says.
    pub group: AlertGroup,
}

/// Filters of `/api/v1/alerts` (and, where they apply, `/api/v1/events`).
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// firing or resolved.
    pub status: Option<AlertStatus>,
    /// `severity` label.
    pub severity: Option<String>,
    /// Source name.
    pub source: Option<Source>,
    /// `alertname` label.
    pub alertname: Option<String>,
    /// `instance` label.
    pub instance: Option<String>,
    /// Free text searched in labels and annotations.
    pub q: Option<String>,
    /// Lower time bound (alerts: last seen; events: when).
    pub since: Option<DateTime<Utc>>,
    /// Upper time bound.
    pub until: Option<DateTime<Utc>>,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor=` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Alerts: after this (last_seen micros, fingerprint).
    Alert(i64, String),
    /// Events and notifications: ids below this.
    Id(i64),
}

impl Cursor {
    /// Opaque text for clients.
    pub fn encode(&self) -> String {
        let raw = match self {
            Cursor::Alert(ts, fp) => format!("a:{ts}:{fp}"),
            Cursor::Id(id) => format!("i:{id}"),
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads what [`Cursor::encode`] wrote.
    pub fn decode(text: &str) -> Option<Cursor> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let mut it = raw.splitn(3, ':');
        match (it.next()?, it.next()?, it.next()) {
            ("a", ts, Some(fp)) => Some(Cursor::Alert(ts.parse().ok()?, fp.to_string())),
            ("i", id, None) => Some(Cursor::Id(id.parse().ok()?)),
            _ => None,
        }
    }
}

/// Counts for /metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxCount {
    /// Channel name.
    pub channel: String,
    /// State.
    pub state: NotificationState,
    /// How many.
    pub count: i64,
}

/// Which destinations a claim may take entries for.
#[derive(Debug, Clone, Copy)]
pub enum DestinationFilter<'a> {
    /// Any destination of the channel.
    Any,
    /// Not these (each has a send in flight already).
    Except(&'a [String]),
    /// Only this one (its backlog, to fold into a summary).
    Only(&'a str),
    /// The pending entries of one `group_wait` group for this destination,
    /// due or not (the first one fell due: the rest join it).
    Group {
        /// Destination.
        destination: &'a str,
        /// `AlertGroup::group_key`.
        group_key: &'a str,
    },
}

/// The storage interface. Every method is one short transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a batch of requests (group commit): one transaction for all,
    /// with the notifications the planner decides. Returns each request's
    /// notification count, in order.
    async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// A page of alerts, most recently seen first.
    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<StoredAlert>, StoreError>;
    /// One alert.
    async fn get_alert(&self, fingerprint: &str) -> Result<Option<StoredAlert>, StoreError>;
    /// A page of events, newest first.
    async fn list_events(
        &self,
        filter: &AlertFilter,
        fingerprint: Option<&str>,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Event>, StoreError>;
    /// Takes up to `limit` due notifications of a channel for sending, leasing
    /// them until `lease_until` so no other worker or replica takes them.
    async fn claim_due(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        filter: DestinationFilter<'_>,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Entries of `channel` for `destination` due now and not claimed: the
    /// backlog the outbox folds into a summary.
    async fn count_due(
        &self,
        channel: &str,
        destination: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError>;
    /// The channel accepted it.
    async fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Try again at `next_at`.
    async fn mark_retry(
        &self,
        id: i64,
        next_at: DateTime<Utc>,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError>;
    /// Give up: kept as failed, visible, re-sendable.
    async fn mark_failed(&self, id: i64, error: &str, parts_done: u32) -> Result<(), StoreError>;
    /// Extends the leases of notifications still being sent.
    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> Result<(), StoreError>;
    /// Returns leased notifications to the queue (shutdown before they finished).
    async fn release(&self, ids: &[i64]) -> Result<(), StoreError>;
    /// Clears every lease: only for a database this process owns alone (SQLite) at start.
    async fn release_all_claims(&self) -> Result<(), StoreError>;
    /// Earliest time a pending notification of the channel becomes due.
    async fn next_due(&self, channel: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// A page of notifications, newest first.
    async fn list_notifications(
        &self,
        state: Option<NotificationState>,
        channel: Option<&str>,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Notification>, StoreError>;
    /// Puts a failed notification back in the queue; false if there is no failed one with that id.
    async fn resend(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Notifications per channel and state, for /metrics.
    async fn outbox_counts(&self) -> Result<Vec<OutboxCount>, StoreError>;
    /// Adds or updates contacts by name (the config's `contacts:` at start).
    async fn upsert_contacts(
        &self,
        contacts: &[crate::model::contacts::Contact],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The whole contact book, by name.
    async fn list_contacts(&self) -> Result<Vec<crate::model::contacts::Contact>, StoreError>;
    /// Acknowledges the current incident of a firing alert. False when no
    /// firing alert has this fingerprint.
    async fn ack_alert(&self, fingerprint: &str, ack: &Ack) -> Result<bool, StoreError>;
    /// Reminders due at `now`, leased until `lease_until`.
    async fn claim_due_reminders(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Reminder>, StoreError>;
    /// Throttle windows closed at `now`, leased until `lease_until`.
    async fn claim_closed_windows(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ThrottleWindow>, StoreError>;
    /// Queues what the scheduler decided about due rows of `kind` (those
    /// messages set the next reminder or open the next window) and drops
    /// the rows with nothing more to do, in one transaction.
    async fn finish_timed(
        &self,
        kind: Timed,
        notifications: Vec<NewNotification>,
        dropped: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Every digest schedule.
    async fn digest_schedules(&self) -> Result<Vec<DigestSchedule>, StoreError>;
    /// Writes these schedules (new ones, or ones whose period changed)
    /// and drops those of routes no longer in the config, in one
    /// transaction.
    async fn schedule_digests(
        &self,
        upsert: &[DigestSchedule],
        drop: &[(String, String)],
    ) -> Result<(), StoreError>;
    /// Digests whose period has ended at `now`, leased until `lease_until`.
    async fn claim_due_digests(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueDigest>, StoreError>;
    /// Queues a digest's notifications and starts its next period
    /// (`next`: its start and end), or drops the schedule (`None`: the
    /// route is gone), in one transaction.
    async fn finish_digest(
        &self,
        channel: &str,
        scope: &str,
        notifications: Vec<NewNotification>,
        next: Option<(DateTime<Utc>, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Which of these alerts are flapping now.
    async fn flapping_among(
        &self,
        fingerprints: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError>;
    /// Flapping alerts whose stable time has come at `now`, leased until
    /// `lease_until` so one scheduler (of several replicas) takes each.
    async fn claim_stable(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StableDue>, StoreError>;
    /// Ends the flapping of a claimed alert and queues its stable message,
    /// in one transaction — unless a change arrived since the claim (its
    /// stable time moved): then nothing is done and the answer is false.
    async fn finish_stable(
        &self,
        due: &StableDue,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Stores a silence; the answer carries its id.
    async fn create_silence(
        &self,
        s: &NewSilence,
        now: DateTime<Utc>,
    ) -> Result<Silence, StoreError>;
    /// Silences, newest first.
    async fn list_silences(
        &self,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Silence>, StoreError>;
    /// Silences that hold now or will: what the planner's book holds.
    async fn live_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError>;
    /// Ends a silence now (DELETE). `None` when there is no such silence
    /// or it has already ended.
    async fn expire_silence(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError>;
    /// Silences that have ended and whose end is not yet handled, leased
    /// until `lease_until` so one scheduler (of several replicas) takes each.
    async fn claim_ended_silences(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Silence>, StoreError>;
    /// Queues what a silence's end notifies and marks the end handled, in
    /// one transaction.
    async fn finish_silence(
        &self,
        id: i64,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Registers a Telegram chat with a channel (`/start`), or refreshes
    /// its usernames (the chat's, and the sender's). `true` when it was
    /// not registered before.
    async fn register_chat(
        &self,
        channel: &str,
        chat_id: i64,
        username: Option<&str>,
        registered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Forgets a registered chat and its subscriptions (`/stop`); whether
    /// it was registered.
    async fn unregister_chat(&self, channel: &str, chat_id: i64) -> Result<bool, StoreError>;
    /// Every registered chat of every channel, with its subscriptions in
    /// `/subscriptions` order: what the planner's subscriber book holds.
    async fn list_chats(&self) -> Result<Vec<ChatRecord>, StoreError>;
    /// Adds a subscription to a registered chat.
    async fn add_subscription(
        &self,
        channel: &str,
        chat_id: i64,
        pattern: &SubscriptionPattern,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes one subscription by its id, or all of the chat's with
    /// `None`; how many went.
    async fn remove_subscriptions(
        &self,
        channel: &str,
        chat_id: i64,
        id: Option<i64>,
    ) -> Result<u64, StoreError>;
    /// Takes or renews the lease on polling `channel`'s getUpdates until
    /// `until`, for `holder`; the offset to poll from when this process
    /// holds it, `None` while another holds it.
    async fn lease_updates(
        &self,
        channel: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError>;
    /// Records that updates below `offset` were handled (while `holder`
    /// holds the lease).
    async fn save_update_offset(
        &self,
        channel: &str,
        holder: &str,
        offset: i64,
    ) -> Result<(), StoreError>;
    /// Gives the lease up (clean stop), so the next process polls at once.
    async fn release_updates(&self, channel: &str, holder: &str) -> Result<(), StoreError>;
    /// How many ingest batches may be in flight at once (1: one writer).
    fn ingest_parallelism(&self) -> usize {
        1
    }
}

/// The new stored state of one alert after a batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertWrite<'a> {
    pub alert: &'a IncomingAlert,
    pub status: AlertStatus,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// An event row to insert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventWrite {
    pub fingerprint: Fingerprint,
    pub alertname: String,
    pub status: AlertStatus,
}

/// Everything one batch writes.
#[derive(Debug, Default)]
pub(crate) struct BatchWrite<'a> {
    /// Final state per alert, one entry per fingerprint, in first-seen order.
    pub alerts: Vec<AlertWrite<'a>>,
    pub events: Vec<EventWrite>,
    pub notifications: Vec<NewNotification>,
    /// Notifications per request.
    pub per_request: Vec<usize>,
    /// (channel, fingerprint) whose open throttle window counts a repeat.
    pub repeats: Vec<(String, String)>,
    /// Flapping rows the batch changed (their new state), one per alert.
    pub flaps: Vec<(Fingerprint, FlapRow)>,
}

/// Current state of an alert as far as dedup needs it, plus its end and
/// acknowledgement (shown in later messages about it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Current {
    pub state: AlertState,
    pub ends_at: Option<DateTime<Utc>>,
    pub ack: Option<Ack>,
}

impl Current {
    /// Reads a stored (status, starts_at, ends_at, ack_by, ack_memo,
    /// ack_at) row.
    pub(crate) fn from_row(
        status: &str,
        starts_at: i64,
        ends_at: Option<i64>,
        ack: (Option<String>, Option<String>, Option<i64>),
    ) -> Result<Self, StoreError> {
        let status = AlertStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?;
        Ok(Current {
            state: AlertState {
                status,
                starts_at: from_micros(starts_at)?,
            },
            ends_at: ends_at.map(from_micros).transpose()?,
            ack: match ack {
                (Some(by), memo, Some(at)) => Some(Ack {
                    by,
                    memo: memo.unwrap_or_default(),
                    at: from_micros(at)?,
                }),
                _ => None,
            },
        })
    }
}

/// The pure heart of ingest: given what is stored for the batch's
/// fingerprints, what does the batch change? Requests are applied in order,
/// so a fingerprint that appears twice in a batch is decided against the
/// state the first occurrence left.
///
/// `flaps` are the stored flapping rows of the alerts [`flap_candidates`]
/// named (absent: the alert has none yet), `flapping` the settings they
/// were loaded for (read once per batch: a reload in between must not
/// make it decide on rows it did not load).
pub(crate) fn plan_batch<'a>(
    mut existing: HashMap<Fingerprint, Current>,
    (flapping, mut flaps): (Option<FlappingConfig>, HashMap<Fingerprint, FlapRow>),
    requests: &'a [IngestRequest],
    planner: &dyn NotificationPlanner,
    now: DateTime<Utc>,
) -> BatchWrite<'a> {
    let mut out = BatchWrite::default();
    let mut index: HashMap<Fingerprint, usize> = HashMap::new();
    let mut flaps_changed: Vec<Fingerprint> = Vec::new();
    let mut flaps_seen: std::collections::HashSet<Fingerprint> = std::collections::HashSet::new();
    for req in requests {
        let mut decided = Vec::with_capacity(req.alerts.len());
        for a in &req.alerts {
            let cur = existing.get(&a.fingerprint).cloned();
            let t = decide(cur.as_ref().map(|c| c.state), a);
            let flap = match (&flapping, t, &cur) {
                (Some(cfg), Transition::Refired | Transition::Resolved, Some(c)) => {
                    let row = flaps.entry(a.fingerprint.clone()).or_insert_with(|| {
                        let ended = if t == Transition::Refired {
                            c.ends_at
                        } else {
                            None
                        };
                        FlapRow::seeded(c.state.starts_at, ended, now, cfg)
                    });
                    if flaps_seen.insert(a.fingerprint.clone()) {
                        flaps_changed.push(a.fingerprint.clone());
                    }
                    row.change(now, cfg)
                }
                _ => None,
            };
            // An acknowledgement belongs to its incident: a new one starts
            // without.
            let ack = match t {
                Transition::Seen | Transition::Resolved => cur.as_ref().and_then(|c| c.ack.clone()),
                _ => None,
            };
            let (status, starts_at, ends_at) = match (t, cur) {
                (Transition::Seen, Some(c)) => (c.state.status, c.state.starts_at, c.ends_at),
                (Transition::Resolved, Some(c)) => (
                    AlertStatus::Resolved,
                    c.state.starts_at,
                    Some(a.ends_at.unwrap_or(now)),
                ),
                (Transition::ResolvedUnseen, _) => (
                    AlertStatus::Resolved,
                    a.starts_at,
                    Some(a.ends_at.unwrap_or(now)),
                ),
                _ => (AlertStatus::Firing, a.starts_at, None),
            };
            existing.insert(
                a.fingerprint.clone(),
                Current {
                    state: AlertState { status, starts_at },
                    ends_at,
                    ack: ack.clone(),
                },
            );
            let write = AlertWrite {
                alert: a,
                status,
                starts_at,
                ends_at,
            };
            match index.get(&a.fingerprint) {
                Some(&i) => out.alerts[i] = write,
                None => {
                    index.insert(a.fingerprint.clone(), out.alerts.len());
                    out.alerts.push(write);
                }
            }
            if t.is_change() {
                out.events.push(EventWrite {
                    fingerprint: a.fingerprint.clone(),
                    alertname: a.labels.get("alertname").cloned().unwrap_or_default(),
                    status,
                });
            }
            decided.push(Decided {
                alert: a,
                transition: t,
                starts_at,
                ends_at,
                ack,
                flap,
            });
        }
        out.repeats.extend(planner.repeats(&decided));
        let notes = planner.plan(&decided);
        out.per_request.push(notes.len());
        out.notifications.extend(notes);
    }
    out.flaps = flaps_changed
        .into_iter()
        .filter_map(|fp| flaps.remove(&fp).map(|row| (fp, row)))
        .collect();
    out
}

/// The alerts of a batch whose flapping rows ingest must load: those with
/// a stored row whose copy changes its state (Refired or Resolved). A
/// batch's first change of an alert is always decided against the stored
/// state, so checking each copy against it finds them all; new alerts and
/// re-sent ones are never named, and with flapping off nothing is.
pub(crate) fn flap_candidates(
    existing: &HashMap<Fingerprint, Current>,
    requests: &[IngestRequest],
    flapping: Option<&FlappingConfig>,
) -> Vec<Fingerprint> {
    let mut out: Vec<Fingerprint> = Vec::new();
    if flapping.is_none() || existing.is_empty() {
        return out;
    }
    let mut seen: std::collections::HashSet<&Fingerprint> = std::collections::HashSet::new();
    for a in requests.iter().flat_map(|r| r.alerts.iter()) {
        let Some(c) = existing.get(&a.fingerprint) else {
            continue;
        };
        if decide(Some(c.state), a).is_change() && seen.insert(&a.fingerprint) {
            out.push(a.fingerprint.clone());
        }
    }
    out
}

/// Microseconds since the epoch, the stored time format of both databases.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Reads a stored time.
pub(crate) fn from_micros(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {us}")))
}

/// The columns of a silence, in the order every query selects them.
pub(crate) const SILENCE_COLUMNS: &str = "id, matchers, starts_at, ends_at, comment, created_by";

/// A silence row as both databases return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SilenceRow {
    pub id: i64,
    pub matchers: String,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub comment: String,
    pub created_by: String,
}

impl SilenceRow {
    pub(crate) fn from_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            matchers: row.get(1)?,
            starts_at: row.get(2)?,
            ends_at: row.get(3)?,
            comment: row.get(4)?,
            created_by: row.get(5)?,
        })
    }

    pub(crate) fn into_silence(self) -> Result<Silence, StoreError> {
        let texts: Vec<String> = serde_json::from_str(&self.matchers)
            .map_err(|e| StoreError::Corrupt(format!("silence {}: matchers: {e}", self.id)))?;
        let matchers = texts
            .iter()
            .map(|t| {
                Matcher::parse(t)
                    .map_err(|e| StoreError::Corrupt(format!("silence {}: {t}: {e}", self.id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Silence {
            id: self.id,
            matchers,
            starts_at: from_micros(self.starts_at)?,
            ends_at: self.ends_at.map(from_micros).transpose()?,
            comment: self.comment,
            created_by: self.created_by,
        })
    }
}

/// How a new silence's matchers are stored: a JSON array of their texts.
pub(crate) fn matchers_json(s: &NewSilence) -> String {
    let texts: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
    serde_json::to_string(&texts).unwrap_or_else(|_| "[]".into())
}

/// An alert row as both databases return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AlertRow {
    pub fingerprint: String,
    pub status: String,
    pub source: String,
    pub labels: String,
    pub annotations: String,
    pub generator_url: Option<String>,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub ack_by: Option<String>,
    pub ack_memo: Option<String>,
    pub ack_at: Option<i64>,
}

impl AlertRow {
    pub(crate) fn into_alert(self) -> Result<StoredAlert, StoreError> {
        let ack = match (self.ack_by, self.ack_at) {
            (Some(by), Some(at)) => Some(Ack {
                by,
                memo: self.ack_memo.unwrap_or_default(),
                at: from_micros(at)?,
            }),
            _ => None,
        };
        Ok(StoredAlert {
            fingerprint: Fingerprint::new(self.fingerprint),
            status: AlertStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {}", self.status)))?,
            labels: serde_json::from_str(&self.labels)
                .map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?,
            annotations: serde_json::from_str(&self.annotations)
                .map_err(|e| StoreError::Corrupt(format!("annotations: {e}")))?,
            source: Source::parse(&self.source)
                .ok_or_else(|| StoreError::Corrupt(format!("source {}", self.source)))?,
            starts_at: from_micros(self.starts_at)?,
            ends_at: self.ends_at.map(from_micros).transpose()?,
            first_seen: from_micros(self.first_seen)?,
            last_seen: from_micros(self.last_seen)?,
            generator_url: self.generator_url,
            ack,
        })
    }
}

/// An event row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    pub id: i64,
    pub fingerprint: String,
    pub alertname: String,
    pub status: String,
    pub at: i64,
}

impl EventRow {
    pub(crate) fn into_event(self) -> Result<Event, StoreError> {
        Ok(Event {
            id: self.id,
            fingerprint: Fingerprint::new(self.fingerprint),
            alertname: self.alertname,
            status: AlertStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {}", self.status)))?,
            at: from_micros(self.at)?,
        })
    }
}

/// A notification row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct NotificationRow {
    pub id: i64,
    pub channel: String,
    pub destination: String,
    pub state: String,
    pub attempts: i64,
    pub parts_done: i64,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
    pub payload: String,
}

impl NotificationRow {
    pub(crate) fn into_notification(self) -> Result<Notification, StoreError> {
        Ok(Notification {
            id: self.id,
            channel: self.channel,
            destination: self.destination,
            state: NotificationState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("state {}", self.state)))?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            parts_done: u32::try_from(self.parts_done).unwrap_or(0),
            created_at: from_micros(self.created_at)?,
            next_attempt_at: from_micros(self.next_attempt_at)?,
            sent_at: self.sent_at.map(from_micros).transpose()?,
            last_error: self.last_error,
            group: serde_json::from_str(&self.payload)
                .map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::Labels;
    use chrono::TimeZone;

    struct EveryChange;
    impl NotificationPlanner for EveryChange {
        fn plan(&self, alerts: &[Decided<'_>]) -> Vec<NewNotification> {
            alerts
                .iter()
                .filter(|d| d.transition.notifies())
                .map(|d| NewNotification {
                    channel: "c".into(),
                    destination: "d".into(),
                    group: AlertGroup {
                        status: d.alert.status,
                        alerts: vec![d.shown()],
                        others_firing: 0,
                        reminder: false,
                        group_key: None,
                        repeats: None,
                        digest: None,
                        flapping: None,
                    },
                    repeat_every: None,
                    delay: None,
                    throttle: None,
                })
                .collect()
        }
    }

    fn alert(status: AlertStatus) -> IncomingAlert {
        let labels: Labels = [("alertname".to_string(), "X".to_string())].into();
        IncomingAlert {
            fingerprint: Fingerprint::from_labels(&labels),
            status,
            labels,
            annotations: Labels::new(),
            starts_at: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("t"),
            ends_at: None,
            generator_url: None,
            source: Source::Alertmanager,
            ack: None,
        }
    }

    #[test]
    fn fire_resend_resolve_in_one_batch() {
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 5, 0)
            .single()
            .expect("t");
        let reqs = vec![
            IngestRequest {
                alerts: vec![alert(AlertStatus::Firing)],
            },
            IngestRequest {
                alerts: vec![alert(AlertStatus::Firing)],
            },
            IngestRequest {
                alerts: vec![alert(AlertStatus::Resolved)],
            },
        ];
        let w = plan_batch(
            HashMap::new(),
            (None, HashMap::new()),
            &reqs,
            &EveryChange,
            now,
        );
        assert_eq!(w.alerts.len(), 1, "one row per fingerprint");
        assert_eq!(w.alerts[0].status, AlertStatus::Resolved);
        assert_eq!(w.alerts[0].ends_at, Some(now));
        assert_eq!(
            w.events.iter().map(|e| e.status).collect::<Vec<_>>(),
            vec![AlertStatus::Firing, AlertStatus::Resolved]
        );
        assert_eq!(w.per_request, vec![1, 0, 1]);
    }

    #[test]
    fn only_stored_alerts_whose_copy_changes_them_load_flapping_state() {
        let cfg = FlappingConfig::default();
        let stored = |status| Current {
            state: AlertState {
                status,
                starts_at: alert(status).starts_at,
            },
            ends_at: None,
            ack: None,
        };
        let firing = alert(AlertStatus::Firing);
        let mut other = alert(AlertStatus::Firing);
        other.fingerprint = Fingerprint::new("other");
        let mut new = alert(AlertStatus::Firing);
        new.fingerprint = Fingerprint::new("new");
        let existing: HashMap<Fingerprint, Current> = [
            (firing.fingerprint.clone(), stored(AlertStatus::Firing)),
            (other.fingerprint.clone(), stored(AlertStatus::Firing)),
        ]
        .into();
        // A re-send, then a resolve of the first; a re-send of the other;
        // a new alert: only the first changes.
        let reqs = vec![IngestRequest {
            alerts: vec![
                firing.clone(),
                other.clone(),
                new.clone(),
                alert(AlertStatus::Resolved),
            ],
        }];
        assert_eq!(
            flap_candidates(&existing, &reqs, Some(&cfg)),
            vec![firing.fingerprint.clone()]
        );
        assert!(flap_candidates(&existing, &reqs, None).is_empty(), "off");
        let w = plan_batch(
            existing,
            (Some(cfg), HashMap::new()),
            &reqs,
            &EveryChange,
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 0)
                .single()
                .expect("t"),
        );
        assert_eq!(w.flaps.len(), 1, "one row written, for the resolve");
        assert_eq!(w.flaps[0].0, firing.fingerprint);
        // Its start (5 minutes before, within the 10m window) and the resolve.
        assert_eq!(w.flaps[0].1.changes.len(), 2);
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        for c in [Cursor::Alert(123, "abc:def".into()), Cursor::Id(42)] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cursor::decode("!!"), None);
        assert_eq!(Cursor::decode(""), None);
    }
}

#[cfg(test)]
mod timed_rows {
    use super::*;
    use crate::model::alert::Labels;

    fn note(destination: &str, status: AlertStatus) -> NewNotification {
        let labels: Labels = [("alertname".to_string(), "X".to_string())].into();
        NewNotification {
            channel: "c".into(),
            destination: destination.into(),
            group: AlertGroup {
                status,
                alerts: vec![IncomingAlert {
                    fingerprint: Fingerprint::from_labels(&labels),
                    status,
                    labels,
                    annotations: Labels::new(),
                    starts_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
                    ends_at: None,
                    generator_url: None,
                    source: Source::Alertmanager,
                    ack: None,
                }],
                others_firing: 0,
                reminder: false,
                group_key: None,
                repeats: None,
                digest: None,
                flapping: None,
            },
            repeat_every: Some(std::time::Duration::from_secs(3600)),
            delay: None,
            throttle: Some(std::time::Duration::from_secs(120)),
        }
    }

    #[test]
    fn one_row_per_channel_and_alert_whatever_the_destinations() {
        let batch = [
            note("chat-1", AlertStatus::Firing),
            note("chat-2", AlertStatus::Firing),
            note("chat-1", AlertStatus::Resolved),
            note("chat-2", AlertStatus::Resolved),
        ];
        let w = window_changes(&batch);
        assert_eq!(w.open.len(), 1, "opened once");
        assert_eq!(w.close.len(), 1, "and closed once, after");
        assert_eq!(reminders_of(&batch).len(), 1, "firing only, once");
    }
}

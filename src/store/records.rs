//! The records the store hands out and takes in: outbox entries, timed
//! rows, chats, filters and pages.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::alert::{AlertStatus, Source};
use crate::model::notification::AlertGroup;

use super::error::StoreError;
use super::rows::{from_micros, to_micros};

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

//! Row codecs: how both databases store times, alerts, events,
//! notifications, silences and chats, and how rows are read back.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::alert::{Ack, AlertStatus, Event, Fingerprint, Source, StoredAlert};
use crate::model::matcher::Matcher;
use crate::model::silence::{NewSilence, Silence};

use super::error::StoreError;
use super::records::{ChatRecord, Notification, NotificationState, SubscriptionPattern};

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

//! The outbox on SQLite: notifications queued in the writer's transaction,
//! claimed with a lease, and the result of each attempt.

use chrono::{DateTime, Utc};
use rusqlite::params;

use crate::store::statements::{
    CLOSE_THROTTLE_WINDOW, OPEN_THROTTLE_WINDOW, RELEASE_ALL_CLAIMS, SET_REMINDER,
};
use crate::store::{
    due_us, reminders_of, to_micros, window_changes, DestinationFilter, NewNotification,
    Notification, NotificationRow, StoreError,
};

use super::SqliteStore;
/// Queues notifications: the outbox row and its payload, written once.
pub(super) fn insert_notifications(
    conn: &rusqlite::Connection,
    notifications: &[NewNotification],
    now_us: i64,
) -> Result<(), StoreError> {
    let mut note = conn.prepare_cached(
        "INSERT INTO notifications (channel, destination, status, state, attempts, parts_done, created_at, next_attempt_at, group_key)
         VALUES (?1, ?2, ?3, 'pending', 0, 0, ?4, ?5, ?6)",
    )?;
    let mut payload = conn.prepare_cached(
        "INSERT INTO notification_payloads (notification_id, payload) VALUES (?1, ?2)",
    )?;
    for n in notifications {
        note.execute(params![
            n.channel,
            n.destination,
            n.group.status.as_str(),
            now_us,
            due_us(now_us, n.delay),
            n.group.group_key,
        ])?;
        payload.execute(params![
            conn.last_insert_rowid(),
            serde_json::to_string(&n.group).unwrap_or_else(|_| "{}".into()),
        ])?;
    }
    let windows = window_changes(notifications);
    if !windows.open.is_empty() {
        let mut open = conn.prepare_cached(OPEN_THROTTLE_WINDOW.sqlite())?;
        for (channel, fp, starts, every) in windows.open {
            open.execute(params![
                channel,
                fp,
                starts,
                now_us,
                now_us.saturating_add(every),
                every
            ])?;
        }
    }
    if !windows.close.is_empty() {
        let mut close = conn.prepare_cached(CLOSE_THROTTLE_WINDOW.sqlite())?;
        for (channel, fp) in windows.close {
            close.execute(params![channel, fp])?;
        }
    }
    let reminders = reminders_of(notifications);
    if !reminders.is_empty() {
        let mut remind = conn.prepare_cached(SET_REMINDER.sqlite())?;
        for (channel, fp, starts, every) in reminders {
            remind.execute(params![
                channel,
                fp,
                starts,
                every,
                now_us.saturating_add(every)
            ])?;
        }
    }
    Ok(())
}

/// Claims: the oldest due entries of a channel, moved to the lease end.
pub(super) const CLAIM_ANY: &str = "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1, attempts = attempts + 1
     WHERE id IN (SELECT id FROM notifications WHERE channel = ?2 AND state = 'pending' AND next_attempt_at <= ?3
                  ORDER BY next_attempt_at, id LIMIT ?4)
     RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error";

pub(super) const CLAIM_EXCEPT: &str = "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1, attempts = attempts + 1
     WHERE id IN (SELECT id FROM notifications WHERE channel = ?2 AND state = 'pending' AND next_attempt_at <= ?3
                  AND destination NOT IN (SELECT value FROM json_each(?5))
                  ORDER BY next_attempt_at, id LIMIT ?4)
     RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error";

pub(super) const CLAIM_ONLY: &str = "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1, attempts = attempts + 1
     WHERE id IN (SELECT id FROM notifications WHERE channel = ?2 AND state = 'pending' AND next_attempt_at <= ?3
                  AND destination = ?5
                  ORDER BY next_attempt_at, id LIMIT ?4)
     RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error";

pub(super) const CLAIM_GROUP: &str = "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1, attempts = attempts + 1
     WHERE id IN (SELECT id FROM notifications WHERE channel = ?2 AND state = 'pending'
                  AND (claimed_until IS NULL OR claimed_until <= ?3)
                  AND destination = ?5 AND group_key = ?6
                  ORDER BY id LIMIT ?4)
     RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error";

impl SqliteStore {
    pub(super) async fn claim_due(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        filter: DestinationFilter<'_>,
    ) -> Result<Vec<Notification>, StoreError> {
        // One fixed statement per filter kind (cached); the destinations to
        // skip go as one JSON array.
        let (sql, dest, group): (&'static str, Option<String>, Option<String>) = match filter {
            DestinationFilter::Any => (CLAIM_ANY, None, None),
            DestinationFilter::Except([]) => (CLAIM_ANY, None, None),
            DestinationFilter::Except(skip) => (
                CLAIM_EXCEPT,
                Some(serde_json::to_string(skip).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                None,
            ),
            DestinationFilter::Only(d) => (CLAIM_ONLY, Some(d.to_string()), None),
            DestinationFilter::Group {
                destination,
                group_key,
            } => (
                CLAIM_GROUP,
                Some(destination.to_string()),
                Some(group_key.to_string()),
            ),
        };
        let channel = channel.to_string();
        self.write_with(move |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            // The payload is read apart: RETURNING sees only the updated table.
            let mut payload = conn.prepare_cached(
                "SELECT payload FROM notification_payloads WHERE notification_id = ?1",
            )?;
            let bind = params![
                to_micros(lease_until),
                channel,
                to_micros(now),
                i64::from(limit),
                dest,
                group
            ];
            let bind = match (&dest, &group) {
                (Some(_), Some(_)) => bind,
                (Some(_), None) => &bind[..5],
                _ => &bind[..4],
            };
            let rows = stmt
                .query_map(bind, |r| {
                    Ok(NotificationRow {
                        id: r.get(0)?,
                        channel: r.get(1)?,
                        destination: r.get(2)?,
                        state: r.get(3)?,
                        attempts: r.get(4)?,
                        parts_done: r.get(5)?,
                        created_at: r.get(6)?,
                        next_attempt_at: r.get(7)?,
                        sent_at: r.get(8)?,
                        last_error: r.get(9)?,
                        payload: String::new(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for mut row in rows {
                row.payload = payload.query_row(params![row.id], |r| r.get(0))?;
                out.push(row.into_notification()?);
            }
            out.sort_by_key(|n| n.id);
            Ok(out)
        })
        .await
    }

    pub(super) async fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_with(move |conn| {
            conn.prepare_cached("UPDATE notifications SET state = 'sent', claimed_until = NULL, last_error = NULL, sent_at = ?1 WHERE id = ?2")?
                .execute(params![to_micros(now), id])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn mark_retry(
        &self,
        id: i64,
        next_at: DateTime<Utc>,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.write_with(move |conn| {
            conn.prepare_cached("UPDATE notifications SET claimed_until = NULL, next_attempt_at = ?1, last_error = ?2, parts_done = ?3 WHERE id = ?4")?
                .execute(params![to_micros(next_at), error, i64::from(parts_done), id])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.write_with(move |conn| {
            conn.prepare_cached("UPDATE notifications SET state = 'failed', claimed_until = NULL, last_error = ?1, parts_done = ?2 WHERE id = ?3")?
                .execute(params![error, i64::from(parts_done), id])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.write_with(move |conn| {
            {
                let mut stmt = conn.prepare_cached(
                    "UPDATE notifications SET claimed_until = NULL, next_attempt_at = created_at, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
                     WHERE state = 'pending' AND id = ?1",
                )?;
                for id in ids {
                    stmt.execute(params![id])?;
                }
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.write_with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1
                 WHERE state = 'pending' AND claimed_until IS NOT NULL AND id = ?2",
            )?;
            for id in ids {
                stmt.execute(params![to_micros(until), id])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn release_all_claims(&self) -> Result<(), StoreError> {
        self.write_with(|conn| {
            conn.execute(RELEASE_ALL_CLAIMS.sqlite(), [])?;
            // Only this process uses the file: a getUpdates lease left by
            // a crash is nobody's.
            conn.execute(
                "UPDATE telegram_polls SET holder = NULL, lease_until = NULL",
                [],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) async fn resend(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.write_with(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE notifications SET state = 'pending', attempts = 0, claimed_until = NULL, next_attempt_at = ?1
                     WHERE state = 'failed' AND id = ?2",
                )?
                .execute(params![to_micros(now), id])?;
            Ok(n == 1)
        })
        .await
    }
}

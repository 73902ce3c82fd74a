//! Silences on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::outbox::insert_notifications;
use crate::model::silence::{NewSilence, Silence};
use crate::store::statements::SILENCE_END_HANDLED;
use crate::store::{
    matchers_json, to_micros, NewNotification, SilenceRow, StoreError, SILENCE_COLUMNS,
};

use super::SqliteStore;
/// Runs a query returning silence rows.
pub(super) fn query_silences(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Silence>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, SilenceRow::from_rusqlite)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r?.into_silence()?);
    }
    Ok(out)
}

impl SqliteStore {
    pub(super) async fn create_silence(
        &self,
        s: &NewSilence,
        now: DateTime<Utc>,
    ) -> Result<Silence, StoreError> {
        let matchers = matchers_json(s);
        let (starts, ends) = (to_micros(s.starts_at), s.ends_at.map(to_micros));
        let (comment, by) = (s.comment.clone(), s.created_by.clone());
        self.write_with(move |conn| {
            let sql = format!(
                "INSERT INTO silences (matchers, starts_at, ends_at, comment, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {SILENCE_COLUMNS}"
            );
            query_silences(conn, &sql, params![matchers, starts, ends, comment, by, to_micros(now)])?
                .pop()
                .ok_or_else(|| StoreError::Corrupt("insert returned no silence".into()))
        })
        .await
    }

    pub(super) async fn expire_silence(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError> {
        self.write_with(move |conn| {
            let sql = format!(
                "UPDATE silences SET ends_at = ?1 WHERE id = ?2 AND (ends_at IS NULL OR ends_at > ?1)
                 RETURNING {SILENCE_COLUMNS}"
            );
            Ok(query_silences(conn, &sql, params![to_micros(now), id])?.pop())
        })
        .await
    }

    pub(super) async fn claim_ended_silences(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Silence>, StoreError> {
        self.write_with(move |conn| {
            let sql = format!(
                "UPDATE silences SET end_claimed_until = ?1
                 WHERE end_handled = 0 AND ends_at <= ?2
                   AND (end_claimed_until IS NULL OR end_claimed_until <= ?2)
                 RETURNING {SILENCE_COLUMNS}"
            );
            query_silences(conn, &sql, params![to_micros(lease_until), to_micros(now)])
        })
        .await
    }

    pub(super) async fn finish_silence(
        &self,
        id: i64,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_with(move |conn| {
            insert_notifications(conn, &notifications, to_micros(now))?;
            conn.prepare_cached(SILENCE_END_HANDLED.sqlite())?
                .execute(params![id])?;
            Ok(())
        })
        .await
    }
}

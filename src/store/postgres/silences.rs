//! Silences on PostgreSQL.

use chrono::{DateTime, Utc};

use crate::model::silence::{NewSilence, Silence};
use crate::store::statements::SILENCE_END_HANDLED;
use crate::store::{
    matchers_json, to_micros, NewNotification, SilenceRow, StoreError, SILENCE_COLUMNS,
};

use super::outbox::insert_notifications;
use super::PostgresStore;
impl PostgresStore {
    pub(super) async fn create_silence(
        &self,
        s: &NewSilence,
        now: DateTime<Utc>,
    ) -> Result<Silence, StoreError> {
        let row: SilenceRow = sqlx::query_as(&format!(
            "INSERT INTO silences (matchers, starts_at, ends_at, comment, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SILENCE_COLUMNS}"
        ))
        .bind(matchers_json(s))
        .bind(to_micros(s.starts_at))
        .bind(s.ends_at.map(to_micros))
        .bind(&s.comment)
        .bind(&s.created_by)
        .bind(to_micros(now))
        .fetch_one(&self.write)
        .await?;
        row.into_silence()
    }

    pub(super) async fn expire_silence(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError> {
        let row: Option<SilenceRow> = sqlx::query_as(&format!(
            "UPDATE silences SET ends_at = $1 WHERE id = $2 AND (ends_at IS NULL OR ends_at > $1)
             RETURNING {SILENCE_COLUMNS}"
        ))
        .bind(to_micros(now))
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        row.map(SilenceRow::into_silence).transpose()
    }

    pub(super) async fn claim_ended_silences(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Silence>, StoreError> {
        // SKIP LOCKED: replicas claiming at the same moment split the work.
        let rows: Vec<SilenceRow> = sqlx::query_as(&format!(
            "UPDATE silences SET end_claimed_until = $1
             WHERE id IN (SELECT id FROM silences
                          WHERE end_handled = 0 AND ends_at <= $2
                            AND (end_claimed_until IS NULL OR end_claimed_until <= $2)
                          FOR UPDATE SKIP LOCKED)
             RETURNING {SILENCE_COLUMNS}"
        ))
        .bind(to_micros(lease_until))
        .bind(to_micros(now))
        .fetch_all(&self.write)
        .await?;
        rows.into_iter().map(SilenceRow::into_silence).collect()
    }

    pub(super) async fn finish_silence(
        &self,
        id: i64,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        insert_notifications(&mut tx, &notifications, to_micros(now)).await?;
        sqlx::query(SILENCE_END_HANDLED.postgres())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

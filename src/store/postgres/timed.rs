//! Timed work on PostgreSQL: reminders, throttle windows, digests and the
//! end of flapping; replicas split what falls due with `SKIP LOCKED`.
use std::time::Duration;

use sqlx::{Postgres, Transaction};

use chrono::{DateTime, Utc};

use crate::model::flapping::StableDue;
use crate::store::statements::{
    CLOSE_THROTTLE_WINDOW, DELETE_DIGEST_SCHEDULE, DIGEST_SCHEDULES, END_FLAPPING,
    NEXT_DIGEST_PERIOD, OPEN_THROTTLE_WINDOW, SET_REMINDER, UPSERT_DIGEST_SCHEDULE,
};
use crate::store::{
    reminders_of, to_micros, window_changes, DigestSchedule, DueDigest, NewNotification, Reminder,
    StoreError, ThrottleWindow, Timed,
};

use super::outbox::insert_notifications;
use super::PostgresStore;
/// The throttle windows and reminders that new notifications open or close.
pub(super) async fn write_windows(
    tx: &mut Transaction<'_, Postgres>,
    notifications: &[NewNotification],
    now_us: i64,
) -> Result<(), StoreError> {
    let windows = window_changes(notifications);
    for (channel, fp, starts, every) in windows.open {
        sqlx::query(OPEN_THROTTLE_WINDOW.postgres())
            .bind(channel)
            .bind(fp)
            .bind(starts)
            .bind(now_us)
            .bind(now_us.saturating_add(every))
            .bind(every)
            .execute(&mut **tx)
            .await?;
    }
    for (channel, fp) in windows.close {
        sqlx::query(CLOSE_THROTTLE_WINDOW.postgres())
            .bind(channel)
            .bind(fp)
            .execute(&mut **tx)
            .await?;
    }
    for (channel, fp, starts, every) in reminders_of(notifications) {
        sqlx::query(SET_REMINDER.postgres())
            .bind(channel)
            .bind(fp)
            .bind(starts)
            .bind(every)
            .bind(now_us.saturating_add(every))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl PostgresStore {
    pub(super) async fn claim_due_reminders(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Reminder>, StoreError> {
        // SKIP LOCKED: replicas claiming at once split the due reminders.
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "UPDATE reminders SET claimed_until = $1
             WHERE (channel, fingerprint) IN (
                 SELECT channel, fingerprint FROM reminders
                 WHERE next_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2)
                 ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING channel, fingerprint, starts_at, every_us",
        )
        .bind(to_micros(lease_until))
        .bind(to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.write)
        .await?;
        rows.into_iter()
            .map(|(channel, fingerprint, starts, every)| {
                Ok(Reminder {
                    channel,
                    fingerprint,
                    starts_at: crate::store::from_micros(starts)?,
                    every: Duration::from_micros(u64::try_from(every).unwrap_or(0)),
                })
            })
            .collect()
    }

    pub(super) async fn claim_closed_windows(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ThrottleWindow>, StoreError> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
            "UPDATE throttle_windows SET claimed_until = $1
             WHERE (channel, fingerprint) IN (
                 SELECT channel, fingerprint FROM throttle_windows
                 WHERE until <= $2 AND (claimed_until IS NULL OR claimed_until <= $2)
                 ORDER BY until LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING channel, fingerprint, starts_at, opened_at, repeats, every_us",
        )
        .bind(to_micros(lease_until))
        .bind(to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.write)
        .await?;
        rows.into_iter()
            .map(|(channel, fingerprint, starts, opened, repeats, every)| {
                Ok(ThrottleWindow {
                    channel,
                    fingerprint,
                    starts_at: crate::store::from_micros(starts)?,
                    opened_at: crate::store::from_micros(opened)?,
                    repeats: u32::try_from(repeats).unwrap_or(0),
                    every: Duration::from_micros(u64::try_from(every).unwrap_or(0)),
                })
            })
            .collect()
    }

    pub(super) async fn finish_timed(
        &self,
        kind: Timed,
        notifications: Vec<NewNotification>,
        dropped: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        insert_notifications(&mut tx, &notifications, to_micros(now)).await?;
        let delete = format!(
            "DELETE FROM {} WHERE channel = $1 AND fingerprint = $2",
            kind.table()
        );
        for (channel, fp) in dropped {
            sqlx::query(&delete)
                .bind(channel)
                .bind(fp)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn digest_schedules(&self) -> Result<Vec<DigestSchedule>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64)> =
            sqlx::query_as(DIGEST_SCHEDULES.postgres())
                .fetch_all(&self.write)
                .await?;
        rows.into_iter().map(DigestSchedule::from_row).collect()
    }

    pub(super) async fn schedule_digests(
        &self,
        upsert: &[DigestSchedule],
        drop: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for d in upsert {
            let (channel, scope, period, start, due) = d.to_row();
            sqlx::query(UPSERT_DIGEST_SCHEDULE.postgres())
                .bind(channel)
                .bind(scope)
                .bind(period)
                .bind(start)
                .bind(due)
                .execute(&mut *tx)
                .await?;
        }
        for (c, s) in drop {
            sqlx::query(DELETE_DIGEST_SCHEDULE.postgres())
                .bind(c)
                .bind(s)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn claim_due_digests(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueDigest>, StoreError> {
        // SKIP LOCKED: replicas claiming at once split the due digests.
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "UPDATE digests SET claimed_until = $1
             WHERE (channel, scope) IN (
                 SELECT channel, scope FROM digests
                 WHERE due_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2)
                 FOR UPDATE SKIP LOCKED)
             RETURNING channel, scope, period_start",
        )
        .bind(to_micros(lease_until))
        .bind(to_micros(now))
        .fetch_all(&self.write)
        .await?;
        rows.into_iter()
            .map(|(channel, scope, start)| {
                Ok(DueDigest {
                    channel,
                    scope,
                    period_start: crate::store::from_micros(start)?,
                })
            })
            .collect()
    }

    pub(super) async fn claim_stable(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StableDue>, StoreError> {
        // SKIP LOCKED: replicas claiming at once split the due rows.
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "UPDATE flapping SET lease_until = $1
             WHERE fingerprint IN (
                 SELECT fingerprint FROM flapping
                 WHERE stable_at <= $2 AND (lease_until IS NULL OR lease_until <= $2)
                 ORDER BY stable_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING fingerprint, stable_at, flapped, window_us",
        )
        .bind(to_micros(lease_until))
        .bind(to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(fingerprint, stable_at, flapped, window_us)| StableDue {
                fingerprint,
                stable_at,
                flapped: u32::try_from(flapped).unwrap_or(0),
                window_us,
            })
            .collect())
    }

    pub(super) async fn finish_digest(
        &self,
        channel: &str,
        scope: &str,
        notifications: Vec<NewNotification>,
        next: Option<(DateTime<Utc>, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        insert_notifications(&mut tx, &notifications, to_micros(now)).await?;
        match next {
            Some((start, due)) => {
                sqlx::query(NEXT_DIGEST_PERIOD.postgres())
                    .bind(to_micros(start))
                    .bind(to_micros(due))
                    .bind(channel)
                    .bind(scope)
                    .execute(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query(DELETE_DIGEST_SCHEDULE.postgres())
                    .bind(channel)
                    .bind(scope)
                    .execute(&mut *tx)
                    .await?
            }
        };
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn finish_stable(
        &self,
        due: &StableDue,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        // The alert's ingest lock: a change being ingested now either
        // committed before (and moved stable_at) or waits for this.
        Self::lock_fingerprints(&mut tx, std::slice::from_ref(&due.fingerprint)).await?;
        let done = sqlx::query(END_FLAPPING.postgres())
            .bind(&due.fingerprint)
            .bind(due.stable_at)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_notifications(&mut tx, &notifications, to_micros(now)).await?;
        tx.commit().await?;
        Ok(true)
    }
}

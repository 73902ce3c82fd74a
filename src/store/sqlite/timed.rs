//! Timed work on SQLite: reminders, throttle windows, digests and the end of
//! flapping, claimed when they fall due and finished by the scheduler.
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::outbox::insert_notifications;
use crate::model::flapping::StableDue;
use crate::store::statements::{
    DELETE_DIGEST_SCHEDULE, DIGEST_SCHEDULES, END_FLAPPING, NEXT_DIGEST_PERIOD,
    UPSERT_DIGEST_SCHEDULE,
};
use crate::store::{
    to_micros, DigestSchedule, DueDigest, NewNotification, Reminder, StoreError, ThrottleWindow,
    Timed,
};

use super::SqliteStore;
impl SqliteStore {
    pub(super) async fn claim_due_reminders(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Reminder>, StoreError> {
        self.write_with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE reminders SET claimed_until = ?1
                 WHERE rowid IN (SELECT rowid FROM reminders WHERE next_at <= ?2
                                   AND (claimed_until IS NULL OR claimed_until <= ?2)
                                 ORDER BY next_at LIMIT ?3)
                 RETURNING channel, fingerprint, starts_at, every_us",
            )?;
            let rows = stmt.query_map(
                params![to_micros(lease_until), to_micros(now), limit],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (channel, fingerprint, starts, every) = row?;
                out.push(Reminder {
                    channel,
                    fingerprint,
                    starts_at: crate::store::from_micros(starts)?,
                    every: Duration::from_micros(u64::try_from(every).unwrap_or(0)),
                });
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn claim_closed_windows(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ThrottleWindow>, StoreError> {
        self.write_with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE throttle_windows SET claimed_until = ?1
                 WHERE rowid IN (SELECT rowid FROM throttle_windows WHERE until <= ?2
                                   AND (claimed_until IS NULL OR claimed_until <= ?2)
                                 ORDER BY until LIMIT ?3)
                 RETURNING channel, fingerprint, starts_at, opened_at, repeats, every_us",
            )?;
            let rows = stmt.query_map(
                params![to_micros(lease_until), to_micros(now), limit],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (channel, fingerprint, starts, opened, repeats, every) = row?;
                out.push(ThrottleWindow {
                    channel,
                    fingerprint,
                    starts_at: crate::store::from_micros(starts)?,
                    opened_at: crate::store::from_micros(opened)?,
                    repeats: u32::try_from(repeats).unwrap_or(0),
                    every: Duration::from_micros(u64::try_from(every).unwrap_or(0)),
                });
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn finish_timed(
        &self,
        kind: Timed,
        notifications: Vec<NewNotification>,
        dropped: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_with(move |conn| {
            insert_notifications(conn, &notifications, to_micros(now))?;
            let mut drop_row = conn.prepare_cached(&format!(
                "DELETE FROM {} WHERE channel = ?1 AND fingerprint = ?2",
                kind.table()
            ))?;
            for (channel, fp) in dropped {
                drop_row.execute(params![channel, fp])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn digest_schedules(&self) -> Result<Vec<DigestSchedule>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(DIGEST_SCHEDULES.sqlite())
            .fetch_all(&self.read)
            .await?;
        rows.into_iter()
            .map(super::DigestSchedule::from_row)
            .collect()
    }

    pub(super) async fn schedule_digests(
        &self,
        upsert: &[DigestSchedule],
        drop: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (upsert, drop) = (upsert.to_vec(), drop.to_vec());
        self.write_with(move |conn| {
            let mut put = conn.prepare_cached(UPSERT_DIGEST_SCHEDULE.sqlite())?;
            for d in upsert {
                let (channel, scope, period, start, due) = d.to_row();
                put.execute(params![channel, scope, period, start, due])?;
            }
            let mut drop_row = conn.prepare_cached(DELETE_DIGEST_SCHEDULE.sqlite())?;
            for (c, s) in drop {
                drop_row.execute(params![c, s])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn claim_due_digests(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueDigest>, StoreError> {
        self.write_with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE digests SET claimed_until = ?1
                 WHERE due_at <= ?2 AND (claimed_until IS NULL OR claimed_until <= ?2)
                 RETURNING channel, scope, period_start",
            )?;
            let rows = stmt.query_map(params![to_micros(lease_until), to_micros(now)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (channel, scope, start) = row?;
                out.push(DueDigest {
                    channel,
                    scope,
                    period_start: crate::store::from_micros(start)?,
                });
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn claim_stable(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StableDue>, StoreError> {
        self.write_with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE flapping SET lease_until = ?1
                 WHERE fingerprint IN (SELECT fingerprint FROM flapping WHERE stable_at <= ?2
                                         AND (lease_until IS NULL OR lease_until <= ?2)
                                       ORDER BY stable_at LIMIT ?3)
                 RETURNING fingerprint, stable_at, flapped, window_us",
            )?;
            let rows = stmt.query_map(
                params![to_micros(lease_until), to_micros(now), limit],
                |r| {
                    Ok(StableDue {
                        fingerprint: r.get(0)?,
                        stable_at: r.get(1)?,
                        flapped: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        window_us: r.get(3)?,
                    })
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?);
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn finish_digest(
        &self,
        channel: &str,
        scope: &str,
        notifications: Vec<NewNotification>,
        next: Option<(DateTime<Utc>, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (channel, scope) = (channel.to_string(), scope.to_string());
        self.write_with(move |conn| {
            insert_notifications(conn, &notifications, to_micros(now))?;
            match next {
                Some((start, due)) => conn
                    .prepare_cached(NEXT_DIGEST_PERIOD.sqlite())?
                    .execute(params![to_micros(start), to_micros(due), channel, scope])?,
                None => conn
                    .prepare_cached(DELETE_DIGEST_SCHEDULE.sqlite())?
                    .execute(params![channel, scope])?,
            };
            Ok(())
        })
        .await
    }

    pub(super) async fn finish_stable(
        &self,
        due: &StableDue,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (fp, stable_at) = (due.fingerprint.clone(), due.stable_at);
        self.write_with(move |conn| {
            let n = conn
                .prepare_cached(END_FLAPPING.sqlite())?
                .execute(params![fp, stable_at])?;
            if n == 1 {
                insert_notifications(conn, &notifications, to_micros(now))?;
            }
            Ok(n == 1)
        })
        .await
    }
}

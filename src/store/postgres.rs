//! PostgreSQL: for operators who already run it, and for several replicas
//! sharing one database. Replicas take outbox work with
//! `FOR UPDATE SKIP LOCKED` and leases, so each notification goes out once.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::sql::{
    alert_upsert_on_conflict, impl_sql_store, push_alert_filter, push_id_list, read_methods,
};
use super::{
    chat_records, due_us, flap_candidates, matchers_json, plan_batch, reminders_of, to_micros,
    window_changes, ChatRecord, Current, DestinationFilter, DigestSchedule, DueDigest,
    IngestRequest, NewNotification, Notification, NotificationPlanner, Reminder, SilenceRow,
    StoreError, SubscriptionPattern, ThrottleWindow, Timed, SILENCE_COLUMNS,
};
use crate::model::alert::{Ack, Fingerprint};
use crate::model::flapping::{FlapRow, StableDue};
use crate::model::silence::{NewSilence, Silence};

/// A PostgreSQL database.
pub struct PostgresStore {
    read: PgPool,
    write: PgPool,
}

impl PostgresStore {
    /// The id of an alert, by its unique index.
    async fn alert_id(&self, fingerprint: &str) -> Result<Option<i64>, StoreError> {
        self.sql_alert_id(fingerprint).await
    }
}

impl PostgresStore {
    /// Ingest with one fixed-shape statement per table: each column is bound
    /// as an array and expanded with `UNNEST`, so the server parses and plans
    /// each statement once per connection instead of once per batch size
    /// (the multi-row `VALUES` of `sql_ingest`).
    async fn ingest_unnest(
        &self,
        requests: &[IngestRequest],
        planner: &dyn NotificationPlanner,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        let mut fps: Vec<String> = requests
            .iter()
            .flat_map(|r| r.alerts.iter().map(|a| a.fingerprint.as_str().to_string()))
            .collect();
        fps.sort_unstable();
        fps.dedup();
        let mut tx = self.write.begin().await?;
        Self::lock_fingerprints(&mut tx, &fps).await?;
        #[allow(clippy::type_complexity)]
        let rows: Vec<(String, String, i64, Option<i64>, Option<String>, Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT fingerprint, status, starts_at, ends_at, ack_by, ack_memo, ack_at FROM alerts WHERE fingerprint = ANY($1)")
                .bind(&fps)
                .fetch_all(&mut *tx)
                .await?;
        let mut existing: HashMap<Fingerprint, Current> = HashMap::with_capacity(rows.len());
        for (fp, status, starts, ends, by, memo, at) in rows {
            existing.insert(
                Fingerprint::new(fp),
                Current::from_row(&status, starts, ends, (by, memo, at))?,
            );
        }
        // Flapping state only for the alerts that change (none in a storm
        // of new or re-sent alerts); their advisory locks are held.
        let flapping = planner.flapping();
        let mut flaps: HashMap<Fingerprint, FlapRow> = HashMap::new();
        let candidates = flap_candidates(&existing, requests, flapping.as_ref());
        if !candidates.is_empty() {
            let names: Vec<&str> = candidates.iter().map(Fingerprint::as_str).collect();
            #[allow(clippy::type_complexity)]
            let rows: Vec<(String, String, Option<i64>, Option<i64>, i64, i64)> = sqlx::query_as(
                "SELECT fingerprint, changes, flapping_since, stable_at, flapped, window_us FROM flapping WHERE fingerprint = ANY($1)",
            )
            .bind(&names)
            .fetch_all(&mut *tx)
            .await?;
            for (fp, changes, since, stable, flapped, window) in rows {
                flaps.insert(
                    Fingerprint::new(fp),
                    FlapRow::from_stored(&changes, since, stable, flapped, window),
                );
            }
        }
        let write = plan_batch(existing, (flapping, flaps), requests, planner, now);
        let now_us = to_micros(now);

        let n = write.alerts.len();
        let (mut fp, mut status, mut name, mut sev, mut inst, mut src) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut starts, mut ends, mut gen, mut labels, mut annotations) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for w in &write.alerts {
            let label = |k: &str| w.alert.labels.get(k).cloned().unwrap_or_default();
            fp.push(w.alert.fingerprint.as_str().to_string());
            status.push(w.status.as_str().to_string());
            name.push(label("alertname"));
            sev.push(label("severity"));
            inst.push(label("instance"));
            src.push(w.alert.source.as_str().to_string());
            starts.push(to_micros(w.starts_at));
            ends.push(w.ends_at.map(to_micros));
            gen.push(w.alert.generator_url.clone());
            labels.push(serde_json::to_string(&w.alert.labels).unwrap_or_else(|_| "{}".into()));
            annotations
                .push(serde_json::to_string(&w.alert.annotations).unwrap_or_else(|_| "{}".into()));
        }
        let outbox = OutboxColumns::of(&write.notifications, now_us);
        let ev_fp: Vec<&str> = write
            .events
            .iter()
            .map(|e| e.fingerprint.as_str())
            .collect();
        let ev_name: Vec<&str> = write.events.iter().map(|e| e.alertname.as_str()).collect();
        let ev_status: Vec<&str> = write.events.iter().map(|e| e.status.as_str()).collect();
        // One statement for the alerts, their events and the outbox rows:
        // a round trip to the server costs more than the rows in it. Events
        // take the alert's id from the upsert's RETURNING (every event's
        // alert is in `write.alerts`), because rows a data-modifying CTE
        // writes are not visible to the rest of the statement's scans.
        // A new incident (new start) clears the previous one's acknowledgement.
        let statement = sqlx::query(concat!(
            "WITH ",
            outbox_ctes!(),
            ",
             up AS (
                 INSERT INTO alerts (fingerprint, status, alertname, severity, instance, source, starts_at, ends_at, first_seen, last_seen, generator_url, labels, annotations)
                 SELECT f, st, an, sv, ins, src, sa, ea, $5, $5, gu, lb, ann
                 FROM UNNEST($8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::text[])
                   AS t(f, st, an, sv, ins, src, sa, ea, gu, lb, ann)
                 ",
            alert_upsert_on_conflict!(),
            "
                 RETURNING id, fingerprint
             ),
             ev AS (
                 INSERT INTO events (alert_id, alertname, status, at)
                 SELECT up.id, t.a, t.s, $5 FROM UNNEST($19::text[], $20::text[], $21::text[]) WITH ORDINALITY AS t(f, a, s, o)
                 JOIN up ON up.fingerprint = t.f ORDER BY t.o
             )
             SELECT 1"
        ));
        if n > 0 || !outbox.is_empty() {
            outbox
                .bind(statement)
                .bind(&fp)
                .bind(&status)
                .bind(&name)
                .bind(&sev)
                .bind(&inst)
                .bind(&src)
                .bind(&starts)
                .bind(&ends)
                .bind(&gen)
                .bind(&labels)
                .bind(&annotations)
                .bind(&ev_fp)
                .bind(&ev_name)
                .bind(&ev_status)
                .execute(&mut *tx)
                .await?;
        }
        write_windows(&mut tx, &write.notifications, now_us).await?;
        for (channel, fp) in &write.repeats {
            sqlx::query(
                "UPDATE throttle_windows SET repeats = repeats + 1
                 WHERE channel = $1 AND fingerprint = $2 AND until > $3",
            )
            .bind(channel)
            .bind(fp)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        }
        if !write.flaps.is_empty() {
            let fps: Vec<&str> = write.flaps.iter().map(|(f, _)| f.as_str()).collect();
            let changes: Vec<String> = write.flaps.iter().map(|(_, r)| r.changes_json()).collect();
            let since: Vec<Option<i64>> =
                write.flaps.iter().map(|(_, r)| r.flapping_since).collect();
            let stable: Vec<Option<i64>> = write.flaps.iter().map(|(_, r)| r.stable_at).collect();
            let flapped: Vec<i64> = write
                .flaps
                .iter()
                .map(|(_, r)| i64::from(r.flapped))
                .collect();
            let window: Vec<i64> = write.flaps.iter().map(|(_, r)| r.window_us).collect();
            // A change clears a scheduler's lease: its claim no longer holds.
            sqlx::query(
                "INSERT INTO flapping (fingerprint, changes, flapping_since, stable_at, flapped, window_us, lease_until)
                 SELECT f, c, fs, sa, fl, w, NULL
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS t(f, c, fs, sa, fl, w)
                 ON CONFLICT (fingerprint) DO UPDATE SET changes = excluded.changes,
                   flapping_since = excluded.flapping_since, stable_at = excluded.stable_at,
                   flapped = excluded.flapped, window_us = excluded.window_us, lease_until = NULL",
            )
            .bind(&fps)
            .bind(&changes)
            .bind(&since)
            .bind(&stable)
            .bind(&flapped)
            .bind(&window)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(write.per_request)
    }

    /// Connects and migrates. Leases are left alone: another replica may
    /// hold them.
    pub async fn open(url: &SecretString) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url.expose_secret())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
        })
    }

    /// Two replicas receiving the same new alert at once would each see no
    /// row and each notify; a transaction-scoped advisory lock per
    /// fingerprint, taken in sorted order (no deadlocks), serialises them.
    async fn lock_fingerprints(
        tx: &mut Transaction<'_, Postgres>,
        fps: &[String],
    ) -> Result<(), StoreError> {
        if fps.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(f, 0) AS h FROM unnest($1::text[]) AS f ORDER BY h) AS s",
        )
        .bind(fps)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl_sql_store!(
    PostgresStore,
    Postgres,
    like = "ILIKE",
    skip_locked = " FOR UPDATE SKIP LOCKED"
);

/// The outbox part of a write: notification rows and their payloads, as
/// `$1`..`$7` of the statement it is put in (see `OutboxColumns::bind`).
/// Ids are drawn in arrival order (the outbox sends in id order) and shared
/// by the row and its payload.
macro_rules! outbox_ctes {
    () => {
        "input AS (
             SELECT nextval(pg_get_serial_sequence('notifications', 'id')) AS id, c, d, s, p, due, g
             FROM (SELECT c, d, s, p, due, g FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $6::bigint[], $7::text[]) WITH ORDINALITY AS t(c, d, s, p, due, g, o) ORDER BY o) ordered
         ),
         rows AS (
             INSERT INTO notifications (id, channel, destination, status, state, attempts, parts_done, created_at, next_attempt_at, group_key)
             SELECT id, c, d, s, 'pending', 0, 0, $5, due, g FROM input
         ),
         payloads AS (
             INSERT INTO notification_payloads (notification_id, payload) SELECT id, p FROM input
         )"
    };
}
use outbox_ctes;

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// New notifications as the column arrays `outbox_ctes!` expands.
struct OutboxColumns<'a> {
    channel: Vec<&'a str>,
    destination: Vec<&'a str>,
    status: Vec<&'a str>,
    payload: Vec<String>,
    now_us: i64,
    due: Vec<i64>,
    group_key: Vec<Option<&'a str>>,
}

impl<'a> OutboxColumns<'a> {
    fn of(notifications: &'a [NewNotification], now_us: i64) -> Self {
        Self {
            channel: notifications.iter().map(|n| n.channel.as_str()).collect(),
            destination: notifications
                .iter()
                .map(|n| n.destination.as_str())
                .collect(),
            status: notifications
                .iter()
                .map(|n| n.group.status.as_str())
                .collect(),
            payload: notifications
                .iter()
                .map(|n| serde_json::to_string(&n.group).unwrap_or_else(|_| "{}".into()))
                .collect(),
            now_us,
            due: notifications
                .iter()
                .map(|n| due_us(now_us, n.delay))
                .collect(),
            group_key: notifications
                .iter()
                .map(|n| n.group.group_key.as_deref())
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.channel.is_empty()
    }

    /// Binds `$1`..`$7`; `$5` is the write's time, which the rest of the
    /// statement may use too.
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.channel)
            .bind(&self.destination)
            .bind(&self.status)
            .bind(&self.payload)
            .bind(self.now_us)
            .bind(&self.due)
            .bind(&self.group_key)
    }
}

/// Queues notifications: outbox rows and their payloads, then the throttle
/// windows and reminders they open or close.
async fn insert_notifications(
    tx: &mut Transaction<'_, Postgres>,
    notifications: &[NewNotification],
    now_us: i64,
) -> Result<(), StoreError> {
    let outbox = OutboxColumns::of(notifications, now_us);
    if !outbox.is_empty() {
        outbox
            .bind(sqlx::query(concat!("WITH ", outbox_ctes!(), " SELECT 1")))
            .execute(&mut **tx)
            .await?;
    }
    write_windows(tx, notifications, now_us).await
}

/// The throttle windows and reminders that new notifications open or close.
async fn write_windows(
    tx: &mut Transaction<'_, Postgres>,
    notifications: &[NewNotification],
    now_us: i64,
) -> Result<(), StoreError> {
    let windows = window_changes(notifications);
    for (channel, fp, starts, every) in windows.open {
        sqlx::query(
            "INSERT INTO throttle_windows (channel, fingerprint, starts_at, opened_at, until, every_us, repeats)
             VALUES ($1, $2, $3, $4, $5, $6, 0)
             ON CONFLICT (channel, fingerprint) DO UPDATE SET starts_at = excluded.starts_at,
               opened_at = excluded.opened_at, until = excluded.until, every_us = excluded.every_us,
               repeats = 0, claimed_until = NULL",
        )
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
        sqlx::query("DELETE FROM throttle_windows WHERE channel = $1 AND fingerprint = $2")
            .bind(channel)
            .bind(fp)
            .execute(&mut **tx)
            .await?;
    }
    for (channel, fp, starts, every) in reminders_of(notifications) {
        sqlx::query(
            "INSERT INTO reminders (channel, fingerprint, starts_at, every_us, next_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (channel, fingerprint) DO UPDATE SET starts_at = excluded.starts_at,
               every_us = excluded.every_us, next_at = excluded.next_at, claimed_until = NULL",
        )
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

read_methods!(PostgresStore, {
    fn ingest_parallelism(&self) -> usize {
        3
    }
    async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        self.ingest_unnest(&requests, planner.as_ref(), now).await
    }
    async fn claim_due(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        filter: DestinationFilter<'_>,
    ) -> Result<Vec<Notification>, StoreError> {
        self.sql_claim_due(channel, now, lease_until, limit, filter)
            .await
    }
    async fn count_due(
        &self,
        channel: &str,
        destination: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.sql_count_due(channel, destination, now).await
    }
    async fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.sql_mark_sent(id, now).await
    }
    async fn mark_retry(
        &self,
        id: i64,
        next_at: DateTime<Utc>,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError> {
        self.sql_mark_retry(id, next_at, error, parts_done).await
    }
    async fn mark_failed(&self, id: i64, error: &str, parts_done: u32) -> Result<(), StoreError> {
        self.sql_mark_failed(id, error, parts_done).await
    }
    async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.sql_release(ids).await
    }
    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> Result<(), StoreError> {
        self.sql_renew(ids, until).await
    }
    async fn release_all_claims(&self) -> Result<(), StoreError> {
        self.sql_release_all_claims().await
    }
    async fn resend(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.sql_resend(id, now).await
    }

    async fn upsert_contacts(
        &self,
        contacts: &[crate::model::contacts::Contact],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.sql_upsert_contacts(contacts, now).await
    }

    async fn claim_due_reminders(
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
                    starts_at: super::from_micros(starts)?,
                    every: Duration::from_micros(u64::try_from(every).unwrap_or(0)),
                })
            })
            .collect()
    }

    async fn claim_closed_windows(
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
                    starts_at: super::from_micros(starts)?,
                    opened_at: super::from_micros(opened)?,
                    repeats: u32::try_from(repeats).unwrap_or(0),
                    every: Duration::from_micros(u64::try_from(every).unwrap_or(0)),
                })
            })
            .collect()
    }

    async fn finish_timed(
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

    async fn digest_schedules(&self) -> Result<Vec<DigestSchedule>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64)> =
            sqlx::query_as("SELECT channel, scope, period_us, period_start, due_at FROM digests")
                .fetch_all(&self.write)
                .await?;
        rows.into_iter().map(DigestSchedule::from_row).collect()
    }

    async fn schedule_digests(
        &self,
        upsert: &[DigestSchedule],
        drop: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for d in upsert {
            let (channel, scope, period, start, due) = d.to_row();
            sqlx::query(
                "INSERT INTO digests (channel, scope, period_us, period_start, due_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (channel, scope) DO UPDATE SET period_us = excluded.period_us,
                   period_start = excluded.period_start, due_at = excluded.due_at",
            )
            .bind(channel)
            .bind(scope)
            .bind(period)
            .bind(start)
            .bind(due)
            .execute(&mut *tx)
            .await?;
        }
        for (c, s) in drop {
            sqlx::query("DELETE FROM digests WHERE channel = $1 AND scope = $2")
                .bind(c)
                .bind(s)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_due_digests(
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
                    period_start: super::from_micros(start)?,
                })
            })
            .collect()
    }

    async fn finish_digest(
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
                sqlx::query(
                    "UPDATE digests SET period_start = $1, due_at = $2, claimed_until = NULL
                     WHERE channel = $3 AND scope = $4",
                )
                .bind(to_micros(start))
                .bind(to_micros(due))
                .bind(channel)
                .bind(scope)
                .execute(&mut *tx)
                .await?
            }
            None => {
                sqlx::query("DELETE FROM digests WHERE channel = $1 AND scope = $2")
                    .bind(channel)
                    .bind(scope)
                    .execute(&mut *tx)
                    .await?
            }
        };
        tx.commit().await?;
        Ok(())
    }

    async fn claim_stable(
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

    async fn finish_stable(
        &self,
        due: &StableDue,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        // The alert's ingest lock: a change being ingested now either
        // committed before (and moved stable_at) or waits for this.
        Self::lock_fingerprints(&mut tx, std::slice::from_ref(&due.fingerprint)).await?;
        let done = sqlx::query(
            "UPDATE flapping SET flapping_since = NULL, stable_at = NULL, flapped = 0, lease_until = NULL
             WHERE fingerprint = $1 AND stable_at = $2",
        )
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

    async fn register_chat(
        &self,
        channel: &str,
        chat_id: i64,
        username: Option<&str>,
        registered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // xmax = 0 only for a row this statement inserted.
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO telegram_chats (channel, chat_id, username, registered_by, registered_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (channel, chat_id) DO UPDATE SET username = excluded.username, registered_by = excluded.registered_by
             RETURNING (xmax = 0)",
        )
        .bind(channel)
        .bind(chat_id)
        .bind(username)
        .bind(registered_by)
        .bind(to_micros(now))
        .fetch_one(&self.write)
        .await?;
        Ok(inserted)
    }

    async fn unregister_chat(&self, channel: &str, chat_id: i64) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM chat_subscriptions WHERE channel = $1 AND chat_id = $2")
            .bind(channel)
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM telegram_chats WHERE channel = $1 AND chat_id = $2")
            .bind(channel)
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_chats(&self) -> Result<Vec<ChatRecord>, StoreError> {
        let chats: Vec<super::ChatRow> = sqlx::query_as(
            "SELECT channel, chat_id, username, registered_by, registered_at FROM telegram_chats ORDER BY channel, registered_at, chat_id",
        )
        .fetch_all(&self.read)
        .await?;
        let subs: Vec<super::SubscriptionRow> = sqlx::query_as(
            "SELECT id, channel, chat_id, kind, pattern FROM chat_subscriptions ORDER BY id",
        )
        .fetch_all(&self.read)
        .await?;
        chat_records(chats, subs)
    }

    async fn add_subscription(
        &self,
        channel: &str,
        chat_id: i64,
        pattern: &SubscriptionPattern,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chat_subscriptions (channel, chat_id, kind, pattern, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(channel)
        .bind(chat_id)
        .bind(pattern.kind())
        .bind(pattern.text())
        .bind(to_micros(now))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn remove_subscriptions(
        &self,
        channel: &str,
        chat_id: i64,
        id: Option<i64>,
    ) -> Result<u64, StoreError> {
        let done = match id {
            Some(id) => sqlx::query(
                "DELETE FROM chat_subscriptions WHERE channel = $1 AND chat_id = $2 AND id = $3",
            )
            .bind(channel)
            .bind(chat_id)
            .bind(id)
            .execute(&self.write)
            .await?,
            None => {
                sqlx::query("DELETE FROM chat_subscriptions WHERE channel = $1 AND chat_id = $2")
                    .bind(channel)
                    .bind(chat_id)
                    .execute(&self.write)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    async fn lease_updates(
        &self,
        channel: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        // One statement: the row lock makes two replicas taking a free
        // lease at once come out one holder.
        let offset: Option<i64> = sqlx::query_scalar(
            "INSERT INTO telegram_polls (channel, update_offset, holder, lease_until) VALUES ($1, 0, $2, $3)
             ON CONFLICT (channel) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until
             WHERE telegram_polls.holder IS NULL OR telegram_polls.holder = excluded.holder
                OR telegram_polls.lease_until IS NULL OR telegram_polls.lease_until <= $4
             RETURNING update_offset",
        )
        .bind(channel)
        .bind(holder)
        .bind(to_micros(until))
        .bind(to_micros(now))
        .fetch_optional(&self.write)
        .await?;
        Ok(offset)
    }

    async fn save_update_offset(
        &self,
        channel: &str,
        holder: &str,
        offset: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE telegram_polls SET update_offset = $3 WHERE channel = $1 AND holder = $2 AND update_offset < $3",
        )
        .bind(channel)
        .bind(holder)
        .bind(offset)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn release_updates(&self, channel: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE telegram_polls SET holder = NULL, lease_until = NULL WHERE channel = $1 AND holder = $2",
        )
        .bind(channel)
        .bind(holder)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn ack_alert(&self, fingerprint: &str, ack: &Ack) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE alerts SET ack_by = $1, ack_memo = $2, ack_at = $3 WHERE fingerprint = $4 AND status = 'firing'",
        )
        .bind(&ack.by)
        .bind(&ack.memo)
        .bind(to_micros(ack.at))
        .bind(fingerprint)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_silence(
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

    async fn expire_silence(
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

    async fn claim_ended_silences(
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

    async fn finish_silence(
        &self,
        id: i64,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        insert_notifications(&mut tx, &notifications, to_micros(now)).await?;
        sqlx::query("UPDATE silences SET end_handled = 1, end_claimed_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
});

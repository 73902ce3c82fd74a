//! Ingest on PostgreSQL: one fixed-shape `UNNEST` statement per table,
//! advisory locks per fingerprint so replicas do not both notify; and
//! acknowledgements.

use sqlx::{Postgres, Transaction};

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::alert::{Ack, Fingerprint};
use crate::model::flapping::FlapRow;
use crate::store::sql::alert_upsert_on_conflict;
use crate::store::statements::COUNT_THROTTLED_REPEAT;
use crate::store::{
    flap_candidates, plan_batch, to_micros, Current, IngestRequest, NotificationPlanner, StoreError,
};

use super::outbox::{outbox_ctes, OutboxColumns};
use super::timed::write_windows;
use super::PostgresStore;
impl PostgresStore {
    pub(super) async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        self.ingest_unnest(&requests, planner.as_ref(), now).await
    }

    pub(super) async fn ack_alert(&self, fingerprint: &str, ack: &Ack) -> Result<bool, StoreError> {
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
}

impl PostgresStore {
    /// Ingest with one fixed-shape statement per table: each column is bound
    /// as an array and expanded with `UNNEST`, so the server parses and plans
    /// each statement once per connection instead of once per batch size
    /// (as a multi-row `VALUES` would make it).
    pub(super) async fn ingest_unnest(
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
            sqlx::query(COUNT_THROTTLED_REPEAT.postgres())
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

    /// Two replicas receiving the same new alert at once would each see no
    /// row and each notify; a transaction-scoped advisory lock per
    /// fingerprint, taken in sorted order (no deadlocks), serialises them.
    pub(super) async fn lock_fingerprints(
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

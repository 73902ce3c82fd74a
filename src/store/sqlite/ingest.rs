//! Ingest on the writer thread: load the stored state of a batch, decide
//! with the pure `plan_batch`, write alerts, events, flapping rows and the
//! outbox in the group transaction; and acknowledgements.
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::fp_index::{FingerprintIndex, IdMap};
use super::outbox::insert_notifications;
use crate::model::alert::{Ack, Fingerprint};
use crate::model::flapping::FlapRow;
use crate::store::statements::COUNT_THROTTLED_REPEAT;
use crate::store::{
    flap_candidates, plan_batch, to_micros, Current, IngestRequest, NotificationPlanner, StoreError,
};

use super::SqliteStore;
pub(super) fn ingest_blocking(
    tx: &rusqlite::Connection,
    requests: &[IngestRequest],
    planner: &dyn NotificationPlanner,
    now: DateTime<Utc>,
    ids: &FingerprintIndex,
) -> Result<Vec<usize>, StoreError> {
    // Rows this job inserts; they join the index only if the job succeeds.
    let mut added = IdMap::default();
    let id_of = |added: &IdMap, fp: &str| added.get(fp).or_else(|| ids.current_id(fp));
    let mut existing: HashMap<Fingerprint, Current> = HashMap::new();
    {
        let mut select = tx.prepare_cached(
            "SELECT status, starts_at, ends_at, ack_by, ack_memo, ack_at FROM alerts WHERE id = ?1",
        )?;
        for a in requests.iter().flat_map(|r| r.alerts.iter()) {
            if existing.contains_key(&a.fingerprint) {
                continue;
            }
            // A new alert costs no read at all.
            let Some(id) = ids.current_id(a.fingerprint.as_str()) else {
                continue;
            };
            let row = select
                .query_row(params![id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        (
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                        ),
                    ))
                })
                .optional()?;
            if let Some((status, starts, ends, ack)) = row {
                existing.insert(
                    a.fingerprint.clone(),
                    Current::from_row(&status, starts, ends, ack)?,
                );
            }
        }
    }
    // Flapping state only for the alerts that change (none in a storm of
    // new or re-sent alerts).
    let flapping = planner.flapping();
    let mut flaps: HashMap<Fingerprint, FlapRow> = HashMap::new();
    let candidates = flap_candidates(&existing, requests, flapping.as_ref());
    if !candidates.is_empty() {
        let mut select = tx.prepare_cached(
            "SELECT changes, flapping_since, stable_at, flapped, window_us FROM flapping WHERE fingerprint = ?1",
        )?;
        for fp in candidates {
            let row = select
                .query_row(params![fp.as_str()], |r| {
                    Ok(FlapRow::from_stored(
                        &r.get::<_, String>(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })
                .optional()?;
            if let Some(row) = row {
                flaps.insert(fp, row);
            }
        }
    }
    let write = plan_batch(existing, (flapping, flaps), requests, planner, now);
    let now_us = to_micros(now);
    {
        // A new incident (new start) clears the previous one's
        // acknowledgement; SET expressions see the row's old values.
        let mut update = tx.prepare_cached(
            "UPDATE alerts SET
               ack_by = CASE WHEN starts_at = ?10 THEN ack_by ELSE NULL END,
               ack_memo = CASE WHEN starts_at = ?10 THEN ack_memo ELSE NULL END,
               ack_at = CASE WHEN starts_at = ?10 THEN ack_at ELSE NULL END,
               status = ?2, alertname = ?3, severity = ?4, instance = ?5, source = ?6,
               labels = ?7, annotations = ?8, generator_url = ?9, starts_at = ?10,
               ends_at = ?11, last_seen = ?12
             WHERE id = ?1",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO alerts (fingerprint, status, alertname, severity, instance, source, labels, annotations, generator_url, starts_at, ends_at, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
        )?;
        for w in &write.alerts {
            let fp = w.alert.fingerprint.as_str();
            let label = |k: &str| w.alert.labels.get(k).map(String::as_str).unwrap_or("");
            let labels = serde_json::to_string(&w.alert.labels).unwrap_or_else(|_| "{}".into());
            let annotations =
                serde_json::to_string(&w.alert.annotations).unwrap_or_else(|_| "{}".into());
            let updated = match id_of(&added, fp) {
                Some(id) => {
                    update.execute(params![
                        id,
                        w.status.as_str(),
                        label("alertname"),
                        label("severity"),
                        label("instance"),
                        w.alert.source.as_str(),
                        labels,
                        annotations,
                        w.alert.generator_url.as_deref(),
                        to_micros(w.starts_at),
                        w.ends_at.map(to_micros),
                        now_us,
                    ])? == 1
                }
                None => false,
            };
            if !updated {
                insert.execute(params![
                    fp,
                    w.status.as_str(),
                    label("alertname"),
                    label("severity"),
                    label("instance"),
                    w.alert.source.as_str(),
                    labels,
                    annotations,
                    w.alert.generator_url.as_deref(),
                    to_micros(w.starts_at),
                    w.ends_at.map(to_micros),
                    now_us,
                ])?;
                added.insert(fp, tx.last_insert_rowid());
            }
        }
        let mut event = tx.prepare_cached(
            "INSERT INTO events (alert_id, alertname, status, at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for e in &write.events {
            let id = id_of(&added, e.fingerprint.as_str()).ok_or_else(|| {
                StoreError::Corrupt(format!("event for unknown alert {}", e.fingerprint))
            })?;
            event.execute(params![id, e.alertname, e.status.as_str(), now_us])?;
        }
        insert_notifications(tx, &write.notifications, now_us)?;
        if !write.repeats.is_empty() {
            let mut count = tx.prepare_cached(COUNT_THROTTLED_REPEAT.sqlite())?;
            for (channel, fp) in &write.repeats {
                count.execute(params![channel, fp, now_us])?;
            }
        }
        if !write.flaps.is_empty() {
            let mut flap = tx.prepare_cached(FLAP_UPSERT)?;
            for (fp, row) in &write.flaps {
                flap.execute(params![
                    fp.as_str(),
                    row.changes_json(),
                    row.flapping_since,
                    row.stable_at,
                    row.flapped,
                    row.window_us
                ])?;
            }
        }
    }
    ids.add_pending(added);
    Ok(write.per_request)
}

/// Writes an alert's flapping row; a change clears a scheduler's lease (its
/// stable time moved, so the claim no longer holds).
pub(super) const FLAP_UPSERT: &str = "INSERT INTO flapping (fingerprint, changes, flapping_since, stable_at, flapped, window_us, lease_until)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
     ON CONFLICT (fingerprint) DO UPDATE SET changes = excluded.changes,
       flapping_since = excluded.flapping_since, stable_at = excluded.stable_at,
       flapped = excluded.flapped, window_us = excluded.window_us, lease_until = NULL";

impl SqliteStore {
    pub(super) async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        let ids = self.ids.clone();
        self.write_with(move |conn| ingest_blocking(conn, &requests, planner.as_ref(), now, &ids))
            .await
    }

    pub(super) async fn ack_alert(&self, fingerprint: &str, ack: &Ack) -> Result<bool, StoreError> {
        let Some(id) = self.alert_id(fingerprint).await? else {
            return Ok(false);
        };
        let (by, memo, at) = (ack.by.clone(), ack.memo.clone(), to_micros(ack.at));
        self.write_with(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE alerts SET ack_by = ?1, ack_memo = ?2, ack_at = ?3 WHERE id = ?4 AND status = 'firing'",
                )?
                .execute(params![by, memo, at, id])?;
            Ok(n == 1)
        })
        .await
    }
}

//! The embedded default: one SQLite file in WAL mode.
//!
//! Every write goes through one `rusqlite` connection: SQLite allows one
//! writer at a time anyway, one connection means no `SQLITE_BUSY` between
//! our own tasks, and its cached prepared statements let the group commit
//! run at the disk's pace. (sqlx's SQLite driver sends each statement to a
//! worker thread and re-prepares multi-row statements of every new size;
//! profiling showed that, plus statement journals in temp files, dominating
//! ingest.) Reads go through a pool of read-only sqlx connections sharing the
//! SQL in `sql.rs` with PostgreSQL; WAL lets them run beside the writer.
//!
//! `synchronous = FULL`: a commit is on disk before the webhook gets its 200,
//! even across a power cut, not only across a crash of the process.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite, SqlitePool};

use super::fp_index::{FingerprintIndex, IdMap};
use super::sql::{impl_sql_store, push_alert_filter, push_id_list, read_methods};
use super::sqlite_writer::{passive_checkpoint, WriterHandle};
use super::{
    chat_records, due_us, flap_candidates, matchers_json, plan_batch, reminders_of, to_micros,
    window_changes, ChatRecord, Current, DestinationFilter, DigestSchedule, DueDigest,
    IngestRequest, NewNotification, Notification, NotificationPlanner, NotificationRow, Reminder,
    SilenceRow, Store, StoreError, SubscriptionPattern, ThrottleWindow, Timed, SILENCE_COLUMNS,
};
use crate::model::alert::{Ack, Fingerprint};
use crate::model::flapping::{FlapRow, StableDue};
use crate::model::silence::{NewSilence, Silence};

/// A SQLite database.
pub struct SqliteStore {
    read: SqlitePool,
    /// The shared SQL's write methods are unused here (see `writer`); this is
    /// the read pool, so they could not write even if called.
    write: SqlitePool,
    writer: WriterHandle,
    /// Fingerprint → alert id (the table has no index on fingerprint).
    ids: Arc<FingerprintIndex>,
    /// Held while open: see [`lock_for_this_process`].
    _lock: std::fs::File,
}

/// One process per SQLite file: the fingerprint index lives in this
/// process's memory, so a second process writing the same file would store
/// a second row for the same alert. An advisory lock on `<file>.lock` says
/// so at start instead; the operating system drops it when the process
/// ends, however it ends.
fn lock_for_this_process(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| StoreError::InUse(format!("cannot open {}: {e}", name.to_string_lossy())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(format!(
            "{} is in use by another alertrelay process; one SQLite file serves one process (use PostgreSQL to run several)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::InUse(format!(
            "cannot lock {}: {e}",
            name.to_string_lossy()
        ))),
    }
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the file, then clears leases
    /// left by a previous run: only this process uses the file.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            // Small pages: each new alert dirties a leaf of two random-keyed
            // indexes (fingerprint, events by alert), and a commit writes every
            // dirty page to the WAL. 1 KiB pages cut that volume 4x; measured
            // +30% alerts/s and a lower p99 (docs/BENCHMARKS.md). Only takes
            // effect when the file is created.
            .pragma("page_size", "1024");
        let lock = lock_for_this_process(path)?;
        let mut migrator = options.clone().connect().await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut migrator)
            .await?;
        sqlx::Connection::close(migrator).await?;

        let conn = rusqlite::Connection::open(path)?;
        // A 4 MiB page cache: with the fingerprint index in memory the writer
        // mostly appends, and the OS caches the file; measured 4 MiB less
        // peak RSS than 8 MiB in a 600 000-alert storm at the same rate
        // (docs/BENCHMARKS.md, step 11).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 10000;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -4096;
             PRAGMA wal_autocheckpoint = 0;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        let ids = {
            let mut stmt = conn.prepare("SELECT id, fingerprint FROM alerts")?;
            // Streamed into the index: collecting a million rows first would
            // hold them all twice at start.
            let mut failed = None;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                .map_while(|row| row.map_err(|e| failed = Some(e)).ok());
            let index = FingerprintIndex::load(rows);
            if let Some(e) = failed {
                return Err(e.into());
            }
            tracing::debug!(alerts = index.len(), "fingerprint index loaded");
            Arc::new(index)
        };
        let ended = ids.clone();
        let writer = WriterHandle::spawn(
            conn,
            Box::new(move |committed| ended.transaction_ended(committed)),
        )?;
        spawn_checkpointer(path, writer.alive(), writer.catch_up_flag())?;

        // Readers serve the API and the outbox's small lookups; the OS
        // caches the file for them, so a small page cache each is enough
        // (SQLite's default is 2 MiB per connection).
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true).pragma("cache_size", "-512"))
            .await?;
        let store = Self {
            write: read.clone(),
            read,
            writer,
            ids,
            _lock: lock,
        };
        store.release_all_claims().await?;
        Ok(store)
    }

    /// The id of a committed alert; the table has no index on fingerprint.
    async fn alert_id(&self, fingerprint: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.ids.committed_id(fingerprint))
    }

    /// Runs `f` on the writer thread inside its next group transaction and
    /// answers once that transaction is committed.
    async fn write_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.run(f).await
    }
}

impl_sql_store!(SqliteStore, Sqlite, like = "LIKE", skip_locked = "");

/// Copies the WAL back into the database file from its own thread and
/// connection. SQLite's automatic checkpoint runs inside a commit, so the
/// writer (and every webhook waiting on it) would stall for the copy and its
/// fsync; here it runs beside the writer, on the other core. It stops when
/// the store is dropped.
///
/// Under a storm the writer commits every few milliseconds, so a pass here
/// never reaches the WAL's end, and SQLite only rewinds the WAL after a
/// checkpoint that did. So once the WAL is long, the writer is asked to copy
/// the last few frames itself between two transactions
/// (`WriterHandle::catch_up_flag`). That final step also fsyncs the
/// database file, and SQLite skips that fsync in every pass that did not
/// reach the end: left alone, the page cache would hold everything copied
/// since the last rewind (hundreds of MiB) and the writer's fsync took
/// 420–440 ms with every webhook waiting. So each pass here starts the
/// write-back of what it copied (`sync_file_range`, which neither waits
/// nor commits the file system's journal: an `fdatasync` per pass made
/// every WAL commit wait behind it, commit p90 1.6 -> 14 ms), and before
/// asking the writer this thread waits for the file to be clean. The
/// writer's part is then a few frames and a nearly clean file (5-9 ms).
fn spawn_checkpointer(
    path: &Path,
    writer: Weak<()>,
    catch_up: Arc<AtomicBool>,
) -> Result<(), StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch("PRAGMA busy_timeout = 10000;")?;
    let db_file = std::fs::File::open(path)?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while writer.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_EVERY);
                // (frames in the WAL, frames copied back); the write-back
                // of what was copied is started, not waited for.
                let pass = || -> Result<(i64, i64), StoreError> {
                    let started = std::time::Instant::now();
                    let done = passive_checkpoint(&conn)?;
                    start_write_back(&db_file);
                    tracing::trace!(
                        frames = done.0,
                        copied = done.1,
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "checkpoint pass"
                    );
                    Ok(done)
                };
                let result = pass().and_then(|mut done| {
                    if done.0 > WAL_REWIND_FRAMES {
                        // Copy what was written meanwhile, so the writer's own
                        // part stays short.
                        for _ in 0..4 {
                            if done.0 - done.1 <= CATCH_UP_FRAMES {
                                break;
                            }
                            done = pass()?;
                        }
                        db_file.sync_data()?;
                        catch_up.store(true, Ordering::Relaxed);
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; will retry");
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

/// Starts writing the file's dirty pages to disk without waiting for them.
/// Only a hint: a failure leaves them to the final `fdatasync`.
#[cfg(target_os = "linux")]
fn start_write_back(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` is borrowed;
    // the call only reads its arguments.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range failed");
    }
}

/// Elsewhere the final `fdatasync` does all of it.
#[cfg(not(target_os = "linux"))]
fn start_write_back(_file: &std::fs::File) {}

/// How often the WAL is copied back; under load it holds about this much work.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL length (frames of one 1 KiB page) past which the writer is asked to
/// finish the checkpoint between two transactions, so the WAL rewinds: it
/// stays near 64 MiB, in the page cache, and its blocks are overwritten
/// rather than allocated anew.
const WAL_REWIND_FRAMES: i64 = 64 * 1024;

/// At most this many frames are left for the writer to copy itself.
const CATCH_UP_FRAMES: i64 = 2 * 1024;

fn ingest_blocking(
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
            let mut count = tx.prepare_cached(
                "UPDATE throttle_windows SET repeats = repeats + 1
                 WHERE channel = ?1 AND fingerprint = ?2 AND until > ?3",
            )?;
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
const FLAP_UPSERT: &str = "INSERT INTO flapping (fingerprint, changes, flapping_since, stable_at, flapped, window_us, lease_until)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
     ON CONFLICT (fingerprint) DO UPDATE SET changes = excluded.changes,
       flapping_since = excluded.flapping_since, stable_at = excluded.stable_at,
       flapped = excluded.flapped, window_us = excluded.window_us, lease_until = NULL";

/// Queues notifications: the outbox row and its payload, written once.
fn insert_notifications(
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
        let mut open = conn.prepare_cached(
            "INSERT INTO throttle_windows (channel, fingerprint, starts_at, opened_at, until, every_us, repeats)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
             ON CONFLICT (channel, fingerprint) DO UPDATE SET starts_at = excluded.starts_at,
               opened_at = excluded.opened_at, until = excluded.until, every_us = excluded.every_us,
               repeats = 0, claimed_until = NULL",
        )?;
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
        let mut close = conn.prepare_cached(
            "DELETE FROM throttle_windows WHERE channel = ?1 AND fingerprint = ?2",
        )?;
        for (channel, fp) in windows.close {
            close.execute(params![channel, fp])?;
        }
    }
    let reminders = reminders_of(notifications);
    if !reminders.is_empty() {
        let mut remind = conn.prepare_cached(
            "INSERT INTO reminders (channel, fingerprint, starts_at, every_us, next_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (channel, fingerprint) DO UPDATE SET starts_at = excluded.starts_at,
               every_us = excluded.every_us, next_at = excluded.next_at, claimed_until = NULL",
        )?;
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

/// Runs a query returning silence rows.
fn query_silences(
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

/// Claims: the oldest due entries of a channel, moved to the lease end.
const CLAIM_ANY: &str = "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1, attempts = attempts + 1
     WHERE id IN (SELECT id FROM notifications WHERE channel = ?2 AND state = 'pending' AND next_attempt_at <= ?3
                  ORDER BY next_attempt_at, id LIMIT ?4)
     RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error";
const CLAIM_EXCEPT: &str = "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1, attempts = attempts + 1
     WHERE id IN (SELECT id FROM notifications WHERE channel = ?2 AND state = 'pending' AND next_attempt_at <= ?3
                  AND destination NOT IN (SELECT value FROM json_each(?5))
                  ORDER BY next_attempt_at, id LIMIT ?4)
     RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error";
const CLAIM_ONLY: &str = "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1, attempts = attempts + 1
     WHERE id IN (SELECT id FROM notifications WHERE channel = ?2 AND state = 'pending' AND next_attempt_at <= ?3
                  AND destination = ?5
                  ORDER BY next_attempt_at, id LIMIT ?4)
     RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error";

const CLAIM_GROUP: &str = "UPDATE notifications SET claimed_until = ?1, next_attempt_at = ?1, attempts = attempts + 1
     WHERE id IN (SELECT id FROM notifications WHERE channel = ?2 AND state = 'pending'
                  AND (claimed_until IS NULL OR claimed_until <= ?3)
                  AND destination = ?5 AND group_key = ?6
                  ORDER BY id LIMIT ?4)
     RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error";

/// Takes the getUpdates lease of a channel if it is free, expired or
/// ours; answers the offset only then.
const LEASE_UPDATES: &str = "INSERT INTO telegram_polls (channel, update_offset, holder, lease_until) VALUES (?1, 0, ?2, ?3)
     ON CONFLICT (channel) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until
     WHERE telegram_polls.holder IS NULL OR telegram_polls.holder = excluded.holder
        OR telegram_polls.lease_until IS NULL OR telegram_polls.lease_until <= ?4
     RETURNING update_offset";

read_methods!(SqliteStore, {
    async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        let ids = self.ids.clone();
        self.write_with(move |conn| ingest_blocking(conn, &requests, planner.as_ref(), now, &ids))
            .await
    }

    async fn claim_due(
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

    async fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_with(move |conn| {
            conn.prepare_cached("UPDATE notifications SET state = 'sent', claimed_until = NULL, last_error = NULL, sent_at = ?1 WHERE id = ?2")?
                .execute(params![to_micros(now), id])?;
            Ok(())
        })
        .await
    }

    async fn mark_retry(
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

    async fn mark_failed(&self, id: i64, error: &str, parts_done: u32) -> Result<(), StoreError> {
        let error = error.to_string();
        self.write_with(move |conn| {
            conn.prepare_cached("UPDATE notifications SET state = 'failed', claimed_until = NULL, last_error = ?1, parts_done = ?2 WHERE id = ?3")?
                .execute(params![error, i64::from(parts_done), id])?;
            Ok(())
        })
        .await
    }

    async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
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

    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> Result<(), StoreError> {
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

    async fn release_all_claims(&self) -> Result<(), StoreError> {
        self.write_with(|conn| {
            conn.execute(
                "UPDATE notifications SET claimed_until = NULL, next_attempt_at = created_at WHERE state = 'pending' AND claimed_until IS NOT NULL",
                [],
            )?;
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

    async fn resend(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
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

    async fn count_due(
        &self,
        channel: &str,
        destination: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.sql_count_due(channel, destination, now).await
    }

    async fn claim_due_reminders(
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
                    starts_at: super::from_micros(starts)?,
                    every: Duration::from_micros(u64::try_from(every).unwrap_or(0)),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn claim_closed_windows(
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
                    starts_at: super::from_micros(starts)?,
                    opened_at: super::from_micros(opened)?,
                    repeats: u32::try_from(repeats).unwrap_or(0),
                    every: Duration::from_micros(u64::try_from(every).unwrap_or(0)),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn finish_timed(
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

    async fn digest_schedules(&self) -> Result<Vec<DigestSchedule>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64)> =
            sqlx::query_as("SELECT channel, scope, period_us, period_start, due_at FROM digests")
                .fetch_all(&self.read)
                .await?;
        rows.into_iter()
            .map(super::DigestSchedule::from_row)
            .collect()
    }

    async fn schedule_digests(
        &self,
        upsert: &[DigestSchedule],
        drop: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (upsert, drop) = (upsert.to_vec(), drop.to_vec());
        self.write_with(move |conn| {
            let mut put = conn.prepare_cached(
                "INSERT INTO digests (channel, scope, period_us, period_start, due_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (channel, scope) DO UPDATE SET period_us = excluded.period_us,
                   period_start = excluded.period_start, due_at = excluded.due_at",
            )?;
            for d in upsert {
                let (channel, scope, period, start, due) = d.to_row();
                put.execute(params![channel, scope, period, start, due])?;
            }
            let mut drop_row =
                conn.prepare_cached("DELETE FROM digests WHERE channel = ?1 AND scope = ?2")?;
            for (c, s) in drop {
                drop_row.execute(params![c, s])?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_due_digests(
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
                    period_start: super::from_micros(start)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn claim_stable(
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

    async fn finish_digest(
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
                    .prepare_cached(
                        "UPDATE digests SET period_start = ?1, due_at = ?2, claimed_until = NULL
                         WHERE channel = ?3 AND scope = ?4",
                    )?
                    .execute(params![to_micros(start), to_micros(due), channel, scope])?,
                None => conn
                    .prepare_cached("DELETE FROM digests WHERE channel = ?1 AND scope = ?2")?
                    .execute(params![channel, scope])?,
            };
            Ok(())
        })
        .await
    }

    async fn finish_stable(
        &self,
        due: &StableDue,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (fp, stable_at) = (due.fingerprint.clone(), due.stable_at);
        self.write_with(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE flapping SET flapping_since = NULL, stable_at = NULL, flapped = 0, lease_until = NULL
                     WHERE fingerprint = ?1 AND stable_at = ?2",
                )?
                .execute(params![fp, stable_at])?;
            if n == 1 {
                insert_notifications(conn, &notifications, to_micros(now))?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn ack_alert(&self, fingerprint: &str, ack: &Ack) -> Result<bool, StoreError> {
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

    async fn create_silence(
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

    async fn expire_silence(
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

    async fn claim_ended_silences(
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

    async fn finish_silence(
        &self,
        id: i64,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_with(move |conn| {
            insert_notifications(conn, &notifications, to_micros(now))?;
            conn.prepare_cached(
                "UPDATE silences SET end_handled = 1, end_claimed_until = NULL WHERE id = ?1",
            )?
            .execute(params![id])?;
            Ok(())
        })
        .await
    }

    async fn register_chat(
        &self,
        channel: &str,
        chat_id: i64,
        username: Option<&str>,
        registered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (channel, username) = (channel.to_string(), username.map(str::to_string));
        let registered_by = registered_by.map(str::to_string);
        self.write_with(move |conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM telegram_chats WHERE channel = ?1 AND chat_id = ?2")?
                .query_row(params![channel, chat_id], |_| Ok(()))
                .optional()?
                .is_some();
            conn.prepare_cached(
                "INSERT INTO telegram_chats (channel, chat_id, username, registered_by, registered_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (channel, chat_id) DO UPDATE SET username = excluded.username, registered_by = excluded.registered_by",
            )?
            .execute(params![channel, chat_id, username, registered_by, to_micros(now)])?;
            Ok(!known)
        })
        .await
    }

    async fn unregister_chat(&self, channel: &str, chat_id: i64) -> Result<bool, StoreError> {
        let channel = channel.to_string();
        self.write_with(move |conn| {
            conn.prepare_cached(
                "DELETE FROM chat_subscriptions WHERE channel = ?1 AND chat_id = ?2",
            )?
            .execute(params![channel, chat_id])?;
            let n = conn
                .prepare_cached("DELETE FROM telegram_chats WHERE channel = ?1 AND chat_id = ?2")?
                .execute(params![channel, chat_id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_chats(&self) -> Result<Vec<ChatRecord>, StoreError> {
        // The read pool: the scheduler re-reads this periodically, and the
        // writer thread has better things to do. A write has committed
        // before it returns, so what a command just changed is seen.
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
        let (channel, kind, text) = (
            channel.to_string(),
            pattern.kind(),
            pattern.text().to_string(),
        );
        self.write_with(move |conn| {
            conn.prepare_cached(
                "INSERT INTO chat_subscriptions (channel, chat_id, kind, pattern, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![channel, chat_id, kind, text, to_micros(now)])?;
            Ok(())
        })
        .await
    }

    async fn remove_subscriptions(
        &self,
        channel: &str,
        chat_id: i64,
        id: Option<i64>,
    ) -> Result<u64, StoreError> {
        let channel = channel.to_string();
        self.write_with(move |conn| {
            let n = match id {
                Some(id) => conn
                    .prepare_cached(
                        "DELETE FROM chat_subscriptions WHERE channel = ?1 AND chat_id = ?2 AND id = ?3",
                    )?
                    .execute(params![channel, chat_id, id])?,
                None => conn
                    .prepare_cached(
                        "DELETE FROM chat_subscriptions WHERE channel = ?1 AND chat_id = ?2",
                    )?
                    .execute(params![channel, chat_id])?,
            };
            Ok(n as u64)
        })
        .await
    }

    async fn lease_updates(
        &self,
        channel: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let (channel, holder) = (channel.to_string(), holder.to_string());
        self.write_with(move |conn| {
            Ok(conn
                .prepare_cached(LEASE_UPDATES)?
                .query_row(
                    params![channel, holder, to_micros(until), to_micros(now)],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn save_update_offset(
        &self,
        channel: &str,
        holder: &str,
        offset: i64,
    ) -> Result<(), StoreError> {
        let (channel, holder) = (channel.to_string(), holder.to_string());
        self.write_with(move |conn| {
            conn.prepare_cached(
                "UPDATE telegram_polls SET update_offset = ?3 WHERE channel = ?1 AND holder = ?2 AND update_offset < ?3",
            )?
            .execute(params![channel, holder, offset])?;
            Ok(())
        })
        .await
    }

    async fn release_updates(&self, channel: &str, holder: &str) -> Result<(), StoreError> {
        let (channel, holder) = (channel.to_string(), holder.to_string());
        self.write_with(move |conn| {
            conn.prepare_cached(
                "UPDATE telegram_polls SET holder = NULL, lease_until = NULL WHERE channel = ?1 AND holder = ?2",
            )?
            .execute(params![channel, holder])?;
            Ok(())
        })
        .await
    }

    async fn upsert_contacts(
        &self,
        contacts: &[crate::model::contacts::Contact],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let contacts = contacts.to_vec();
        self.write_with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO contacts (name, email, telegram, groups, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET email = excluded.email, telegram = excluded.telegram,
                 groups = excluded.groups, updated_at = excluded.updated_at",
            )?;
            for c in &contacts {
                let groups = serde_json::to_string(&c.groups)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                stmt.execute(params![c.name, c.email, c.telegram, groups, to_micros(now)])?;
            }
            Ok(())
        })
        .await
    }
});

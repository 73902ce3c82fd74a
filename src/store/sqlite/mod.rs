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

mod chats;
mod checkpoint;
mod contacts;
mod fp_index;
mod ingest;
mod outbox;
mod silences;
mod timed;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite, SqlitePool};

use crate::model::alert::{Ack, Event, StoredAlert};
use crate::model::flapping::StableDue;
use crate::model::silence::{NewSilence, Silence};
use crate::store::sql::push_alert_filter;
use crate::store::{
    AlertFilter, ChatRecord, Cursor, DestinationFilter, DigestSchedule, DueDigest, IngestRequest,
    NewNotification, Notification, NotificationPlanner, NotificationState, OutboxCount, Page,
    Reminder, Store, StoreError, SubscriptionPattern, ThrottleWindow, Timed,
};
use checkpoint::spawn_checkpointer;
use fp_index::FingerprintIndex;
use writer::WriterHandle;

use async_trait::async_trait;

/// A SQLite database.
pub struct SqliteStore {
    read: SqlitePool,
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

crate::store::sql::impl_sql_reads!(SqliteStore, Sqlite, like = "LIKE");

/// Every call answered by the file of its concern, or by the SQL both
/// databases share (`sql_*`).
#[async_trait]
impl Store for SqliteStore {
    async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        SqliteStore::ingest(self, requests, planner, now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.sql_ping().await
    }

    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<StoredAlert>, StoreError> {
        self.sql_list_alerts(filter, cursor, limit).await
    }

    async fn get_alert(&self, fingerprint: &str) -> Result<Option<StoredAlert>, StoreError> {
        self.sql_get_alert_by_fingerprint(fingerprint).await
    }

    async fn list_events(
        &self,
        filter: &AlertFilter,
        fingerprint: Option<&str>,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Event>, StoreError> {
        self.sql_list_events_of(filter, fingerprint, cursor, limit)
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
        SqliteStore::claim_due(self, channel, now, lease_until, limit, filter).await
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
        SqliteStore::mark_sent(self, id, now).await
    }

    async fn mark_retry(
        &self,
        id: i64,
        next_at: DateTime<Utc>,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError> {
        SqliteStore::mark_retry(self, id, next_at, error, parts_done).await
    }

    async fn mark_failed(&self, id: i64, error: &str, parts_done: u32) -> Result<(), StoreError> {
        SqliteStore::mark_failed(self, id, error, parts_done).await
    }

    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> Result<(), StoreError> {
        SqliteStore::renew(self, ids, until).await
    }

    async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        SqliteStore::release(self, ids).await
    }

    async fn release_all_claims(&self) -> Result<(), StoreError> {
        SqliteStore::release_all_claims(self).await
    }

    async fn next_due(&self, channel: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.sql_next_due(channel).await
    }

    async fn list_notifications(
        &self,
        state: Option<NotificationState>,
        channel: Option<&str>,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Notification>, StoreError> {
        self.sql_list_notifications(state, channel, cursor, limit)
            .await
    }

    async fn resend(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        SqliteStore::resend(self, id, now).await
    }

    async fn outbox_counts(&self) -> Result<Vec<OutboxCount>, StoreError> {
        self.sql_outbox_counts().await
    }

    async fn upsert_contacts(
        &self,
        contacts: &[crate::model::contacts::Contact],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        SqliteStore::upsert_contacts(self, contacts, now).await
    }

    async fn list_contacts(&self) -> Result<Vec<crate::model::contacts::Contact>, StoreError> {
        self.sql_list_contacts().await
    }

    async fn ack_alert(&self, fingerprint: &str, ack: &Ack) -> Result<bool, StoreError> {
        SqliteStore::ack_alert(self, fingerprint, ack).await
    }

    async fn claim_due_reminders(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Reminder>, StoreError> {
        SqliteStore::claim_due_reminders(self, now, lease_until, limit).await
    }

    async fn claim_closed_windows(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ThrottleWindow>, StoreError> {
        SqliteStore::claim_closed_windows(self, now, lease_until, limit).await
    }

    async fn finish_timed(
        &self,
        kind: Timed,
        notifications: Vec<NewNotification>,
        dropped: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        SqliteStore::finish_timed(self, kind, notifications, dropped, now).await
    }

    async fn digest_schedules(&self) -> Result<Vec<DigestSchedule>, StoreError> {
        SqliteStore::digest_schedules(self).await
    }

    async fn schedule_digests(
        &self,
        upsert: &[DigestSchedule],
        drop: &[(String, String)],
    ) -> Result<(), StoreError> {
        SqliteStore::schedule_digests(self, upsert, drop).await
    }

    async fn claim_due_digests(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueDigest>, StoreError> {
        SqliteStore::claim_due_digests(self, now, lease_until).await
    }

    async fn finish_digest(
        &self,
        channel: &str,
        scope: &str,
        notifications: Vec<NewNotification>,
        next: Option<(DateTime<Utc>, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        SqliteStore::finish_digest(self, channel, scope, notifications, next, now).await
    }

    async fn flapping_among(
        &self,
        fingerprints: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.sql_flapping_among(fingerprints).await
    }

    async fn claim_stable(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StableDue>, StoreError> {
        SqliteStore::claim_stable(self, now, lease_until, limit).await
    }

    async fn finish_stable(
        &self,
        due: &StableDue,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        SqliteStore::finish_stable(self, due, notifications, now).await
    }

    async fn create_silence(
        &self,
        s: &NewSilence,
        now: DateTime<Utc>,
    ) -> Result<Silence, StoreError> {
        SqliteStore::create_silence(self, s, now).await
    }

    async fn list_silences(
        &self,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Silence>, StoreError> {
        self.sql_list_silences(cursor, limit).await
    }

    async fn live_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
        self.sql_live_silences(now).await
    }

    async fn expire_silence(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError> {
        SqliteStore::expire_silence(self, id, now).await
    }

    async fn claim_ended_silences(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Silence>, StoreError> {
        SqliteStore::claim_ended_silences(self, now, lease_until).await
    }

    async fn finish_silence(
        &self,
        id: i64,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        SqliteStore::finish_silence(self, id, notifications, now).await
    }

    async fn register_chat(
        &self,
        channel: &str,
        chat_id: i64,
        username: Option<&str>,
        registered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        SqliteStore::register_chat(self, channel, chat_id, username, registered_by, now).await
    }

    async fn unregister_chat(&self, channel: &str, chat_id: i64) -> Result<bool, StoreError> {
        SqliteStore::unregister_chat(self, channel, chat_id).await
    }

    async fn list_chats(&self) -> Result<Vec<ChatRecord>, StoreError> {
        SqliteStore::list_chats(self).await
    }

    async fn add_subscription(
        &self,
        channel: &str,
        chat_id: i64,
        pattern: &SubscriptionPattern,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        SqliteStore::add_subscription(self, channel, chat_id, pattern, now).await
    }

    async fn remove_subscriptions(
        &self,
        channel: &str,
        chat_id: i64,
        id: Option<i64>,
    ) -> Result<u64, StoreError> {
        SqliteStore::remove_subscriptions(self, channel, chat_id, id).await
    }

    async fn lease_updates(
        &self,
        channel: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        SqliteStore::lease_updates(self, channel, holder, now, until).await
    }

    async fn save_update_offset(
        &self,
        channel: &str,
        holder: &str,
        offset: i64,
    ) -> Result<(), StoreError> {
        SqliteStore::save_update_offset(self, channel, holder, offset).await
    }

    async fn release_updates(&self, channel: &str, holder: &str) -> Result<(), StoreError> {
        SqliteStore::release_updates(self, channel, holder).await
    }
}

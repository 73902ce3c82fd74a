//! The embedded default: one SQLite file in WAL mode.
//!
//! All writes go through a single connection: SQLite allows one writer at a
//! time anyway, and one connection means no `SQLITE_BUSY` between our own
//! tasks. Batching (see `writer.rs`) is what makes that one writer fast.
//! `synchronous = FULL`: a commit is on disk before the webhook gets its 200,
//! even across a power cut, not only across a crash of the process.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::sql::{impl_sql_store, push_alert_filter};
use super::StoreError;

/// A SQLite database.
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
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
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let store = Self { read, write };
        crate::store::Store::release_all_claims(&store).await?;
        Ok(store)
    }

    async fn lock_fingerprints(
        _tx: &mut Transaction<'_, Sqlite>,
        _fps: &[String],
    ) -> Result<(), StoreError> {
        // One writer connection: nothing else can interleave.
        Ok(())
    }
}

impl_sql_store!(SqliteStore, Sqlite, like = "LIKE", skip_locked = "");

//! Where alerts, their events and the notification outbox are kept.
//!
//! One [`Store`] interface (`interface.rs`), two databases: SQLite (the
//! embedded default, `sqlite/`) and PostgreSQL (shared by replicas,
//! `postgres/`), each in files by concern (ingest, outbox, timed work,
//! silences, chats, contacts) with a plain `impl Store` in its `mod.rs`.
//! Each has its own migrations folder. Statements both take in the same
//! words are written once (`statements.rs`); the reads both run through
//! sqlx are written once in `sql.rs` and instantiated per database by a
//! macro, because sqlx's `Any` driver has no typed timestamps and generic
//! sqlx code drowns in trait bounds.
//!
//! The decision of what an incoming batch changes (`batch.rs`, `plan_batch`)
//! is pure and shared; the databases only load current states and write the
//! result, all in one transaction, so a 200 means alerts, events and
//! notifications are all on disk.

mod batch;
mod error;
mod interface;
pub mod postgres;
mod records;
mod rows;
mod signal;
mod sql;
pub mod sqlite;
mod statements;
pub mod writer;

use std::sync::Arc;

use crate::config::StorageConfig;
pub(crate) use batch::*;
pub use error::{StoreError, StoreErrorKind};
pub use interface::{Decided, IngestRequest, NotificationPlanner, Store};
pub use records::*;
pub(crate) use rows::*;
pub use signal::OutboxSignal;

/// Opens the configured database and applies migrations.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        StorageConfig::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        StorageConfig::Postgres { url } => Ok(Arc::new(postgres::PostgresStore::open(url).await?)),
    }
}

//! What went wrong in the store, told apart by what a caller can do about
//! it: retry later (unavailable), pick another value (conflict), nothing
//! there (not found), or a stored row that cannot be read (corrupt data).

use std::sync::Arc;

/// A storage failure. Details go to the log, never to HTTP clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite writer connection said no.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Schema migration failed at start.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database did not take the work (a commit failed, a thread could
    /// not start); nothing of it was stored.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The group-commit writer has stopped (shutting down).
    #[error("the storage writer has stopped")]
    WriterGone,
    /// Another process holds the SQLite file.
    #[error("{0}")]
    InUse(String),
    /// The database file itself could not be read, written or flushed.
    #[error("database file: {0}")]
    File(#[from] std::io::Error),
    /// One failure answered to every request of a group commit.
    #[error("{0}")]
    Shared(Arc<StoreError>),
}

/// What kind of failure a [`StoreError`] is, for the caller's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The database is down, busy or refused the work: retry later.
    Unavailable,
    /// A unique or foreign key said no: the request clashes with what is stored.
    Conflict,
    /// The row asked for is not there.
    NotFound,
    /// A stored row could not be read back: a bug or a damaged database.
    Corrupt,
}

impl StoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        use StoreErrorKind::*;
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::RowNotFound => NotFound,
                sqlx::Error::Database(d)
                    if d.is_unique_violation() || d.is_foreign_key_violation() =>
                {
                    Conflict
                }
                sqlx::Error::Decode(_)
                | sqlx::Error::ColumnDecode { .. }
                | sqlx::Error::ColumnNotFound(_)
                | sqlx::Error::TypeNotFound { .. } => Corrupt,
                _ => Unavailable,
            },
            StoreError::Sqlite(e) => match e {
                rusqlite::Error::QueryReturnedNoRows => NotFound,
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Conflict
                }
                rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
                | rusqlite::Error::Utf8Error(_) => Corrupt,
                _ => Unavailable,
            },
            StoreError::Corrupt(_) => Corrupt,
            StoreError::Migrate(_)
            | StoreError::Unavailable(_)
            | StoreError::WriterGone
            | StoreError::InUse(_)
            | StoreError::File(_) => Unavailable,
            StoreError::Shared(e) => e.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_unavailable_and_a_bad_row_is_corrupt() {
        let outage = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert_eq!(outage.kind(), StoreErrorKind::Unavailable);
        assert_eq!(StoreError::WriterGone.kind(), StoreErrorKind::Unavailable);
        let bad = StoreError::Corrupt("status 9".into());
        assert_eq!(bad.kind(), StoreErrorKind::Corrupt);
        let shared = StoreError::Shared(Arc::new(StoreError::Database(sqlx::Error::RowNotFound)));
        assert_eq!(shared.kind(), StoreErrorKind::NotFound);
        assert_eq!(
            shared.to_string(),
            "database error: no rows returned by a query that expected to return at least one row"
        );
        let clash = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE),
            None,
        ));
        assert_eq!(clash.kind(), StoreErrorKind::Conflict);
    }
}

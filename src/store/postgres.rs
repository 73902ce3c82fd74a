//! PostgreSQL: for operators who already run it, and for several replicas
//! sharing one database. Replicas take outbox work with
//! `FOR UPDATE SKIP LOCKED` and leases, so each notification goes out once.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use super::sql::{impl_sql_store, push_alert_filter};
use super::StoreError;

/// A PostgreSQL database.
pub struct PostgresStore {
    read: PgPool,
    write: PgPool,
}

impl PostgresStore {
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

//! PostgreSQL: for operators who already run it, and for several replicas
//! sharing one database. Replicas take outbox work with
//! `FOR UPDATE SKIP LOCKED` and leases, so each notification goes out once.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::sql::{impl_sql_store, push_alert_filter, read_methods};
use super::{IngestRequest, Notification, NotificationPlanner, StoreError};

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

read_methods!(PostgresStore, {
    async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        self.sql_ingest(&requests, planner.as_ref(), now).await
    }
    async fn claim_due(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        self.sql_claim_due(channel, now, lease_until, limit).await
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
    async fn release_all_claims(&self) -> Result<(), StoreError> {
        self.sql_release_all_claims().await
    }
    async fn resend(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.sql_resend(id, now).await
    }
});

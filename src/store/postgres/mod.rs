//! PostgreSQL: for operators who already run it, and for several replicas
//! sharing one database. Replicas take outbox work with
//! `FOR UPDATE SKIP LOCKED` and leases, so each notification goes out once.

mod chats;
mod contacts;
mod ingest;
mod outbox;
mod silences;
mod timed;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::alert::{Ack, Event, StoredAlert};
use crate::model::flapping::StableDue;
use crate::model::silence::{NewSilence, Silence};
use crate::store::sql::push_alert_filter;
use crate::store::{
    AlertFilter, ChatRecord, Cursor, DestinationFilter, DigestSchedule, DueDigest, IngestRequest,
    NewNotification, Notification, NotificationPlanner, NotificationState, OutboxCount, Page,
    Reminder, Store, StoreError, SubscriptionPattern, ThrottleWindow, Timed,
};

use async_trait::async_trait;

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

    /// The id of an alert, by its unique index.
    /// PostgreSQL's path (its alerts have a unique index on fingerprint).
    async fn alert_id(&self, fingerprint: &str) -> Result<Option<i64>, crate::store::StoreError> {
        let mut qb =
            sqlx::QueryBuilder::<Postgres>::new("SELECT id FROM alerts WHERE fingerprint = ");
        qb.push_bind(fingerprint.to_string());
        let row: Option<(i64,)> = qb.build_query_as().fetch_optional(&self.read).await?;
        Ok(row.map(|r| r.0))
    }
}

crate::store::sql::impl_sql_reads!(PostgresStore, Postgres, like = "ILIKE");

/// Every call answered by the file of its concern, or by the SQL both
/// databases share (`sql_*`).
#[async_trait]
impl Store for PostgresStore {
    async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError> {
        PostgresStore::ingest(self, requests, planner, now).await
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
        PostgresStore::claim_due(self, channel, now, lease_until, limit, filter).await
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
        PostgresStore::mark_sent(self, id, now).await
    }

    async fn mark_retry(
        &self,
        id: i64,
        next_at: DateTime<Utc>,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError> {
        PostgresStore::mark_retry(self, id, next_at, error, parts_done).await
    }

    async fn mark_failed(&self, id: i64, error: &str, parts_done: u32) -> Result<(), StoreError> {
        PostgresStore::mark_failed(self, id, error, parts_done).await
    }

    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> Result<(), StoreError> {
        PostgresStore::renew(self, ids, until).await
    }

    async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        PostgresStore::release(self, ids).await
    }

    async fn release_all_claims(&self) -> Result<(), StoreError> {
        PostgresStore::release_all_claims(self).await
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
        PostgresStore::resend(self, id, now).await
    }

    async fn outbox_counts(&self) -> Result<Vec<OutboxCount>, StoreError> {
        self.sql_outbox_counts().await
    }

    async fn upsert_contacts(
        &self,
        contacts: &[crate::model::contacts::Contact],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        PostgresStore::upsert_contacts(self, contacts, now).await
    }

    async fn list_contacts(&self) -> Result<Vec<crate::model::contacts::Contact>, StoreError> {
        self.sql_list_contacts().await
    }

    async fn ack_alert(&self, fingerprint: &str, ack: &Ack) -> Result<bool, StoreError> {
        PostgresStore::ack_alert(self, fingerprint, ack).await
    }

    async fn claim_due_reminders(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Reminder>, StoreError> {
        PostgresStore::claim_due_reminders(self, now, lease_until, limit).await
    }

    async fn claim_closed_windows(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ThrottleWindow>, StoreError> {
        PostgresStore::claim_closed_windows(self, now, lease_until, limit).await
    }

    async fn finish_timed(
        &self,
        kind: Timed,
        notifications: Vec<NewNotification>,
        dropped: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        PostgresStore::finish_timed(self, kind, notifications, dropped, now).await
    }

    async fn digest_schedules(&self) -> Result<Vec<DigestSchedule>, StoreError> {
        PostgresStore::digest_schedules(self).await
    }

    async fn schedule_digests(
        &self,
        upsert: &[DigestSchedule],
        drop: &[(String, String)],
    ) -> Result<(), StoreError> {
        PostgresStore::schedule_digests(self, upsert, drop).await
    }

    async fn claim_due_digests(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueDigest>, StoreError> {
        PostgresStore::claim_due_digests(self, now, lease_until).await
    }

    async fn finish_digest(
        &self,
        channel: &str,
        scope: &str,
        notifications: Vec<NewNotification>,
        next: Option<(DateTime<Utc>, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        PostgresStore::finish_digest(self, channel, scope, notifications, next, now).await
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
        PostgresStore::claim_stable(self, now, lease_until, limit).await
    }

    async fn finish_stable(
        &self,
        due: &StableDue,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        PostgresStore::finish_stable(self, due, notifications, now).await
    }

    async fn create_silence(
        &self,
        s: &NewSilence,
        now: DateTime<Utc>,
    ) -> Result<Silence, StoreError> {
        PostgresStore::create_silence(self, s, now).await
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
        PostgresStore::expire_silence(self, id, now).await
    }

    async fn claim_ended_silences(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Silence>, StoreError> {
        PostgresStore::claim_ended_silences(self, now, lease_until).await
    }

    async fn finish_silence(
        &self,
        id: i64,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        PostgresStore::finish_silence(self, id, notifications, now).await
    }

    async fn register_chat(
        &self,
        channel: &str,
        chat_id: i64,
        username: Option<&str>,
        registered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        PostgresStore::register_chat(self, channel, chat_id, username, registered_by, now).await
    }

    async fn unregister_chat(&self, channel: &str, chat_id: i64) -> Result<bool, StoreError> {
        PostgresStore::unregister_chat(self, channel, chat_id).await
    }

    async fn list_chats(&self) -> Result<Vec<ChatRecord>, StoreError> {
        PostgresStore::list_chats(self).await
    }

    async fn add_subscription(
        &self,
        channel: &str,
        chat_id: i64,
        pattern: &SubscriptionPattern,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        PostgresStore::add_subscription(self, channel, chat_id, pattern, now).await
    }

    async fn remove_subscriptions(
        &self,
        channel: &str,
        chat_id: i64,
        id: Option<i64>,
    ) -> Result<u64, StoreError> {
        PostgresStore::remove_subscriptions(self, channel, chat_id, id).await
    }

    async fn lease_updates(
        &self,
        channel: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        PostgresStore::lease_updates(self, channel, holder, now, until).await
    }

    async fn save_update_offset(
        &self,
        channel: &str,
        holder: &str,
        offset: i64,
    ) -> Result<(), StoreError> {
        PostgresStore::save_update_offset(self, channel, holder, offset).await
    }

    async fn release_updates(&self, channel: &str, holder: &str) -> Result<(), StoreError> {
        PostgresStore::release_updates(self, channel, holder).await
    }

    fn ingest_parallelism(&self) -> usize {
        3
    }
}

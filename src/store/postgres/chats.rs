//! Registered chats, their subscriptions and the getUpdates lease on PostgreSQL.

use chrono::{DateTime, Utc};

use crate::store::statements::{
    ADD_SUBSCRIPTION, FORGET_CHAT_SUBSCRIPTIONS, LEASE_UPDATES, LIST_CHATS, LIST_SUBSCRIPTIONS,
    RELEASE_UPDATES, REMOVE_SUBSCRIPTION, SAVE_UPDATE_OFFSET, UNREGISTER_CHAT,
};
use crate::store::{chat_records, to_micros, ChatRecord, StoreError, SubscriptionPattern};

use super::PostgresStore;
impl PostgresStore {
    pub(super) async fn register_chat(
        &self,
        channel: &str,
        chat_id: i64,
        username: Option<&str>,
        registered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // xmax = 0 only for a row this statement inserted.
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO telegram_chats (channel, chat_id, username, registered_by, registered_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (channel, chat_id) DO UPDATE SET username = excluded.username, registered_by = excluded.registered_by
             RETURNING (xmax = 0)",
        )
        .bind(channel)
        .bind(chat_id)
        .bind(username)
        .bind(registered_by)
        .bind(to_micros(now))
        .fetch_one(&self.write)
        .await?;
        Ok(inserted)
    }

    pub(super) async fn unregister_chat(
        &self,
        channel: &str,
        chat_id: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query(FORGET_CHAT_SUBSCRIPTIONS.postgres())
            .bind(channel)
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(UNREGISTER_CHAT.postgres())
            .bind(channel)
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn list_chats(&self) -> Result<Vec<ChatRecord>, StoreError> {
        let chats: Vec<crate::store::ChatRow> = sqlx::query_as(LIST_CHATS.postgres())
            .fetch_all(&self.read)
            .await?;
        let subs: Vec<crate::store::SubscriptionRow> =
            sqlx::query_as(LIST_SUBSCRIPTIONS.postgres())
                .fetch_all(&self.read)
                .await?;
        chat_records(chats, subs)
    }

    pub(super) async fn add_subscription(
        &self,
        channel: &str,
        chat_id: i64,
        pattern: &SubscriptionPattern,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(ADD_SUBSCRIPTION.postgres())
            .bind(channel)
            .bind(chat_id)
            .bind(pattern.kind())
            .bind(pattern.text())
            .bind(to_micros(now))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn remove_subscriptions(
        &self,
        channel: &str,
        chat_id: i64,
        id: Option<i64>,
    ) -> Result<u64, StoreError> {
        let done = match id {
            Some(id) => {
                sqlx::query(REMOVE_SUBSCRIPTION.postgres())
                    .bind(channel)
                    .bind(chat_id)
                    .bind(id)
                    .execute(&self.write)
                    .await?
            }
            None => {
                sqlx::query(FORGET_CHAT_SUBSCRIPTIONS.postgres())
                    .bind(channel)
                    .bind(chat_id)
                    .execute(&self.write)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    pub(super) async fn lease_updates(
        &self,
        channel: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        // One statement: the row lock makes two replicas taking a free
        // lease at once come out one holder.
        let offset: Option<i64> = sqlx::query_scalar(LEASE_UPDATES.postgres())
            .bind(channel)
            .bind(holder)
            .bind(to_micros(until))
            .bind(to_micros(now))
            .fetch_optional(&self.write)
            .await?;
        Ok(offset)
    }

    pub(super) async fn save_update_offset(
        &self,
        channel: &str,
        holder: &str,
        offset: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(SAVE_UPDATE_OFFSET.postgres())
            .bind(channel)
            .bind(holder)
            .bind(offset)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn release_updates(
        &self,
        channel: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(RELEASE_UPDATES.postgres())
            .bind(channel)
            .bind(holder)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

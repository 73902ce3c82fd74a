//! Registered chats, their subscriptions and the getUpdates lease on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use crate::store::statements::{
    ADD_SUBSCRIPTION, FORGET_CHAT_SUBSCRIPTIONS, LEASE_UPDATES, LIST_CHATS, LIST_SUBSCRIPTIONS,
    RELEASE_UPDATES, REMOVE_SUBSCRIPTION, SAVE_UPDATE_OFFSET, UNREGISTER_CHAT,
};
use crate::store::{chat_records, to_micros, ChatRecord, StoreError, SubscriptionPattern};

use super::SqliteStore;

impl SqliteStore {
    pub(super) async fn register_chat(
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

    pub(super) async fn unregister_chat(
        &self,
        channel: &str,
        chat_id: i64,
    ) -> Result<bool, StoreError> {
        let channel = channel.to_string();
        self.write_with(move |conn| {
            conn.prepare_cached(FORGET_CHAT_SUBSCRIPTIONS.sqlite())?
                .execute(params![channel, chat_id])?;
            let n = conn
                .prepare_cached(UNREGISTER_CHAT.sqlite())?
                .execute(params![channel, chat_id])?;
            Ok(n > 0)
        })
        .await
    }

    pub(super) async fn list_chats(&self) -> Result<Vec<ChatRecord>, StoreError> {
        // The read pool: the scheduler re-reads this periodically, and the
        // writer thread has better things to do. A write has committed
        // before it returns, so what a command just changed is seen.
        let chats: Vec<crate::store::ChatRow> = sqlx::query_as(LIST_CHATS.sqlite())
            .fetch_all(&self.read)
            .await?;
        let subs: Vec<crate::store::SubscriptionRow> = sqlx::query_as(LIST_SUBSCRIPTIONS.sqlite())
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
        let (channel, kind, text) = (
            channel.to_string(),
            pattern.kind(),
            pattern.text().to_string(),
        );
        self.write_with(move |conn| {
            conn.prepare_cached(ADD_SUBSCRIPTION.sqlite())?
                .execute(params![channel, chat_id, kind, text, to_micros(now)])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn remove_subscriptions(
        &self,
        channel: &str,
        chat_id: i64,
        id: Option<i64>,
    ) -> Result<u64, StoreError> {
        let channel = channel.to_string();
        self.write_with(move |conn| {
            let n = match id {
                Some(id) => conn
                    .prepare_cached(REMOVE_SUBSCRIPTION.sqlite())?
                    .execute(params![channel, chat_id, id])?,
                None => conn
                    .prepare_cached(FORGET_CHAT_SUBSCRIPTIONS.sqlite())?
                    .execute(params![channel, chat_id])?,
            };
            Ok(n as u64)
        })
        .await
    }

    pub(super) async fn lease_updates(
        &self,
        channel: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let (channel, holder) = (channel.to_string(), holder.to_string());
        self.write_with(move |conn| {
            Ok(conn
                .prepare_cached(LEASE_UPDATES.sqlite())?
                .query_row(
                    params![channel, holder, to_micros(until), to_micros(now)],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    pub(super) async fn save_update_offset(
        &self,
        channel: &str,
        holder: &str,
        offset: i64,
    ) -> Result<(), StoreError> {
        let (channel, holder) = (channel.to_string(), holder.to_string());
        self.write_with(move |conn| {
            conn.prepare_cached(SAVE_UPDATE_OFFSET.sqlite())?
                .execute(params![channel, holder, offset])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn release_updates(
        &self,
        channel: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        let (channel, holder) = (channel.to_string(), holder.to_string());
        self.write_with(move |conn| {
            conn.prepare_cached(RELEASE_UPDATES.sqlite())?
                .execute(params![channel, holder])?;
            Ok(())
        })
        .await
    }
}

//! The outbox on PostgreSQL: notifications and payloads in one statement of
//! data-modifying CTEs, claimed with `FOR UPDATE SKIP LOCKED` and a lease.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::timed::write_windows;
use super::PostgresStore;
use crate::store::sql::push_id_list;
use crate::store::statements::RELEASE_ALL_CLAIMS;
use crate::store::{
    due_us, to_micros, DestinationFilter, NewNotification, Notification, NotificationRow,
    StoreError,
};

/// The outbox part of a write: notification rows and their payloads, as
/// `$1`..`$7` of the statement it is put in (see `OutboxColumns::bind`).
/// Ids are drawn in arrival order (the outbox sends in id order) and shared
/// by the row and its payload.
macro_rules! outbox_ctes {
    () => {
        "input AS (
             SELECT nextval(pg_get_serial_sequence('notifications', 'id')) AS id, c, d, s, p, due, g
             FROM (SELECT c, d, s, p, due, g FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $6::bigint[], $7::text[]) WITH ORDINALITY AS t(c, d, s, p, due, g, o) ORDER BY o) ordered
         ),
         rows AS (
             INSERT INTO notifications (id, channel, destination, status, state, attempts, parts_done, created_at, next_attempt_at, group_key)
             SELECT id, c, d, s, 'pending', 0, 0, $5, due, g FROM input
         ),
         payloads AS (
             INSERT INTO notification_payloads (notification_id, payload) SELECT id, p FROM input
         )"
    };
}
pub(super) use outbox_ctes;

/// A statement with its bound values, as `OutboxColumns::bind` extends it.
pub(super) type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// New notifications as the column arrays `outbox_ctes!` expands.
pub(super) struct OutboxColumns<'a> {
    channel: Vec<&'a str>,
    destination: Vec<&'a str>,
    status: Vec<&'a str>,
    payload: Vec<String>,
    now_us: i64,
    due: Vec<i64>,
    group_key: Vec<Option<&'a str>>,
}

impl<'a> OutboxColumns<'a> {
    pub(super) fn of(notifications: &'a [NewNotification], now_us: i64) -> Self {
        Self {
            channel: notifications.iter().map(|n| n.channel.as_str()).collect(),
            destination: notifications
                .iter()
                .map(|n| n.destination.as_str())
                .collect(),
            status: notifications
                .iter()
                .map(|n| n.group.status.as_str())
                .collect(),
            payload: notifications
                .iter()
                .map(|n| serde_json::to_string(&n.group).unwrap_or_else(|_| "{}".into()))
                .collect(),
            now_us,
            due: notifications
                .iter()
                .map(|n| due_us(now_us, n.delay))
                .collect(),
            group_key: notifications
                .iter()
                .map(|n| n.group.group_key.as_deref())
                .collect(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.channel.is_empty()
    }

    /// Binds `$1`..`$7`; `$5` is the write's time, which the rest of the
    /// statement may use too.
    pub(super) fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.channel)
            .bind(&self.destination)
            .bind(&self.status)
            .bind(&self.payload)
            .bind(self.now_us)
            .bind(&self.due)
            .bind(&self.group_key)
    }
}

/// Queues notifications: outbox rows and their payloads, then the throttle
/// windows and reminders they open or close.
pub(super) async fn insert_notifications(
    tx: &mut Transaction<'_, Postgres>,
    notifications: &[NewNotification],
    now_us: i64,
) -> Result<(), StoreError> {
    let outbox = OutboxColumns::of(notifications, now_us);
    if !outbox.is_empty() {
        outbox
            .bind(sqlx::query(concat!("WITH ", outbox_ctes!(), " SELECT 1")))
            .execute(&mut **tx)
            .await?;
    }
    write_windows(tx, notifications, now_us).await
}

impl PostgresStore {
    pub(super) async fn claim_due(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        filter: DestinationFilter<'_>,
    ) -> Result<Vec<Notification>, StoreError> {
        let now_us = to_micros(now);
        let lease = to_micros(lease_until);
        // The payload lives in its own table (written once, never
        // rewritten by the updates of a delivery), joined to the claim.
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "WITH claimed AS (UPDATE notifications SET claimed_until = ",
        );
        qb.push_bind(lease)
            .push(", next_attempt_at = ")
            .push_bind(lease);
        qb.push(
            ", attempts = attempts + 1 WHERE id IN (SELECT id FROM notifications WHERE channel = ",
        );
        qb.push_bind(channel.to_string());
        match filter {
            // Due or not, but not claimed by someone else.
            DestinationFilter::Group { .. } => {
                qb.push(" AND state = 'pending' AND (claimed_until IS NULL OR claimed_until <= ")
                    .push_bind(now_us)
                    .push(")");
            }
            _ => {
                qb.push(" AND state = 'pending' AND next_attempt_at <= ")
                    .push_bind(now_us);
            }
        }
        match filter {
            DestinationFilter::Any | DestinationFilter::Except([]) => {}
            DestinationFilter::Except(skip) => {
                qb.push(" AND destination NOT IN (");
                let mut sep = qb.separated(", ");
                for d in skip {
                    sep.push_bind(d.clone());
                }
                qb.push(")");
            }
            DestinationFilter::Only(d) => {
                qb.push(" AND destination = ").push_bind(d.to_string());
            }
            DestinationFilter::Group {
                destination,
                group_key,
            } => {
                qb.push(" AND destination = ")
                    .push_bind(destination.to_string());
                qb.push(" AND group_key = ")
                    .push_bind(group_key.to_string());
            }
        }
        qb.push(" ORDER BY next_attempt_at, id LIMIT ")
            .push_bind(i64::from(limit));
        qb.push(" FOR UPDATE SKIP LOCKED) RETURNING id, channel, destination, state, attempts, parts_done, created_at, next_attempt_at, sent_at, last_error)");
        qb.push(" SELECT c.*, p.payload FROM claimed c JOIN notification_payloads p ON p.notification_id = c.id");
        let rows: Vec<NotificationRow> = qb.build_query_as().fetch_all(&self.write).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(r.into_notification()?);
        }
        out.sort_by_key(|n| n.id);
        Ok(out)
    }

    pub(super) async fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut qb = sqlx::QueryBuilder::<Postgres>::new("UPDATE notifications SET state = 'sent', claimed_until = NULL, last_error = NULL, sent_at = ");
        qb.push_bind(to_micros(now))
            .push(" WHERE id = ")
            .push_bind(id);
        qb.build().execute(&self.write).await?;
        Ok(())
    }

    pub(super) async fn mark_retry(
        &self,
        id: i64,
        next_at: DateTime<Utc>,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError> {
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "UPDATE notifications SET claimed_until = NULL, next_attempt_at = ",
        );
        qb.push_bind(to_micros(next_at));
        qb.push(", last_error = ").push_bind(error.to_string());
        qb.push(", parts_done = ").push_bind(i64::from(parts_done));
        qb.push(" WHERE id = ").push_bind(id);
        qb.build().execute(&self.write).await?;
        Ok(())
    }

    pub(super) async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError> {
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "UPDATE notifications SET state = 'failed', claimed_until = NULL, last_error = ",
        );
        qb.push_bind(error.to_string());
        qb.push(", parts_done = ").push_bind(i64::from(parts_done));
        qb.push(" WHERE id = ").push_bind(id);
        qb.build().execute(&self.write).await?;
        Ok(())
    }

    pub(super) async fn release(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "UPDATE notifications SET claimed_until = NULL, next_attempt_at = created_at, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE state = 'pending' AND id IN (",
        );
        push_id_list!(qb, ids);
        qb.build().execute(&self.write).await?;
        Ok(())
    }

    pub(super) async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let until = to_micros(until);
        let mut qb =
            sqlx::QueryBuilder::<Postgres>::new("UPDATE notifications SET claimed_until = ");
        qb.push_bind(until)
            .push(", next_attempt_at = ")
            .push_bind(until);
        qb.push(" WHERE state = 'pending' AND claimed_until IS NOT NULL AND id IN (");
        push_id_list!(qb, ids);
        qb.build().execute(&self.write).await?;
        Ok(())
    }

    pub(super) async fn release_all_claims(&self) -> Result<(), StoreError> {
        sqlx::query(RELEASE_ALL_CLAIMS.postgres())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn resend(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut qb = sqlx::QueryBuilder::<Postgres>::new("UPDATE notifications SET state = 'pending', attempts = 0, claimed_until = NULL, next_attempt_at = ");
        qb.push_bind(to_micros(now));
        qb.push(" WHERE state = 'failed' AND id = ").push_bind(id);
        let done = qb.build().execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }
}

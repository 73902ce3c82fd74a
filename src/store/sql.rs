//! The SQL both databases share: the reads, instantiated once per database.
//!
//! A macro rather than generic code: sqlx's per-database types make generic
//! query code a wall of trait bounds, while the statements themselves are the
//! same. Where the dialects differ the macro takes the difference as an
//! argument (`ILIKE` vs `LIKE`, `FOR UPDATE SKIP LOCKED`).

/// Implements the reads both databases answer with the same SQL as
/// inherent `sql_*` methods of `$store`, which must have a field `read`
/// (`sqlx::Pool<$db>`) and an `alert_id(&self, fingerprint)` method. Every
/// write is each store's own: SQLite through its writer thread, PostgreSQL
/// through its pool (`postgres/`).
macro_rules! impl_sql_reads {
    ($store:ty, $db:ty, like = $like:literal) => {
        impl $store {
            pub(super) async fn sql_ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.read).await?;
                Ok(())
            }

            pub(super) async fn sql_list_alerts(
                &self,
                filter: &$crate::store::AlertFilter,
                cursor: Option<&$crate::store::Cursor>,
                limit: u32,
            ) -> Result<$crate::store::Page<$crate::model::alert::StoredAlert>, $crate::store::StoreError> {
                use $crate::store::{AlertRow, Cursor, Page};
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT fingerprint, status, source, labels, annotations, generator_url, starts_at, ends_at, first_seen, last_seen, ack_by, ack_memo, ack_at FROM alerts a WHERE 1=1",
                );
                push_alert_filter!(qb, filter, "a.last_seen", $like);
                if let Some(Cursor::Alert(ts, fp)) = cursor {
                    qb.push(" AND (a.last_seen < ").push_bind(*ts).push(" OR (a.last_seen = ").push_bind(*ts);
                    qb.push(" AND a.fingerprint < ").push_bind(fp.clone()).push("))");
                }
                qb.push(" ORDER BY a.last_seen DESC, a.fingerprint DESC LIMIT ").push_bind(i64::from(limit) + 1);
                let rows: Vec<AlertRow> = qb.build_query_as().fetch_all(&self.read).await?;
                let more = rows.len() > limit as usize;
                let mut items = Vec::with_capacity(rows.len());
                for r in rows.into_iter().take(limit as usize) {
                    items.push(r.into_alert()?);
                }
                let next_cursor = match (more, items.last()) {
                    (true, Some(a)) => Some(Cursor::Alert($crate::store::to_micros(a.last_seen), a.fingerprint.to_string()).encode()),
                    _ => None,
                };
                Ok(Page { items, next_cursor })
            }

            pub(super) async fn sql_get_alert(&self, id: i64) -> Result<Option<$crate::model::alert::StoredAlert>, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT fingerprint, status, source, labels, annotations, generator_url, starts_at, ends_at, first_seen, last_seen, ack_by, ack_memo, ack_at FROM alerts WHERE id = ",
                );
                qb.push_bind(id);
                let row: Option<$crate::store::AlertRow> = qb.build_query_as().fetch_optional(&self.read).await?;
                row.map(|r| r.into_alert()).transpose()
            }

            pub(super) async fn sql_list_events(
                &self,
                filter: &$crate::store::AlertFilter,
                alert_id: Option<i64>,
                cursor: Option<&$crate::store::Cursor>,
                limit: u32,
            ) -> Result<$crate::store::Page<$crate::model::alert::Event>, $crate::store::StoreError> {
                use $crate::store::{Cursor, EventRow, Page};
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT e.id, a.fingerprint, e.alertname, e.status, e.at FROM events e JOIN alerts a ON a.id = e.alert_id WHERE 1=1",
                );
                if let Some(s) = filter.status {
                    qb.push(" AND e.status = ").push_bind(s.as_str());
                }
                let mut f = filter.clone();
                f.status = None;
                push_alert_filter!(qb, &f, "e.at", $like);
                if let Some(id) = alert_id {
                    qb.push(" AND e.alert_id = ").push_bind(id);
                }
                if let Some(Cursor::Id(id)) = cursor {
                    qb.push(" AND e.id < ").push_bind(*id);
                }
                qb.push(" ORDER BY e.id DESC LIMIT ").push_bind(i64::from(limit) + 1);
                let rows: Vec<EventRow> = qb.build_query_as().fetch_all(&self.read).await?;
                let more = rows.len() > limit as usize;
                let mut items = Vec::with_capacity(rows.len());
                for r in rows.into_iter().take(limit as usize) {
                    items.push(r.into_event()?);
                }
                let next_cursor = match (more, items.last()) {
                    (true, Some(e)) => Some(Cursor::Id(e.id).encode()),
                    _ => None,
                };
                Ok(Page { items, next_cursor })
            }

            pub(super) async fn sql_count_due(&self, channel: &str, destination: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM notifications WHERE channel = ");
                qb.push_bind(channel.to_string());
                qb.push(" AND state = 'pending' AND next_attempt_at <= ").push_bind($crate::store::to_micros(now));
                qb.push(" AND destination = ").push_bind(destination.to_string());
                let row: (i64,) = qb.build_query_as().fetch_one(&self.read).await?;
                Ok(row.0)
            }

            pub(super) async fn sql_next_due(&self, channel: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT MIN(next_attempt_at) FROM notifications WHERE state = 'pending' AND channel = ");
                qb.push_bind(channel.to_string());
                let row: (Option<i64>,) = qb.build_query_as().fetch_one(&self.read).await?;
                row.0.map($crate::store::from_micros).transpose()
            }

            pub(super) async fn sql_list_notifications(
                &self,
                state: Option<$crate::store::NotificationState>,
                channel: Option<&str>,
                cursor: Option<&$crate::store::Cursor>,
                limit: u32,
            ) -> Result<$crate::store::Page<$crate::store::Notification>, $crate::store::StoreError> {
                use $crate::store::{Cursor, NotificationRow, Page};
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT n.id, n.channel, n.destination, n.state, n.attempts, n.parts_done, n.created_at, n.next_attempt_at, n.sent_at, n.last_error, p.payload
                     FROM notifications n JOIN notification_payloads p ON p.notification_id = n.id WHERE 1=1",
                );
                if let Some(s) = state {
                    qb.push(" AND n.state = ").push_bind(s.as_str());
                }
                if let Some(c) = channel {
                    qb.push(" AND n.channel = ").push_bind(c.to_string());
                }
                if let Some(Cursor::Id(id)) = cursor {
                    qb.push(" AND n.id < ").push_bind(*id);
                }
                qb.push(" ORDER BY n.id DESC LIMIT ").push_bind(i64::from(limit) + 1);
                let rows: Vec<NotificationRow> = qb.build_query_as().fetch_all(&self.read).await?;
                let more = rows.len() > limit as usize;
                let mut items = Vec::with_capacity(rows.len());
                for r in rows.into_iter().take(limit as usize) {
                    items.push(r.into_notification()?);
                }
                let next_cursor = match (more, items.last()) {
                    (true, Some(n)) => Some(Cursor::Id(n.id).encode()),
                    _ => None,
                };
                Ok(Page { items, next_cursor })
            }

            pub(super) async fn sql_list_contacts(&self) -> Result<Vec<$crate::model::contacts::Contact>, $crate::store::StoreError> {
                let rows: Vec<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
                    "SELECT name, email, telegram, groups FROM contacts ORDER BY name",
                )
                .fetch_all(&self.read)
                .await?;
                rows.into_iter()
                    .map(|(name, email, telegram, groups)| {
                        let groups: Vec<String> = serde_json::from_str(&groups)
                            .map_err(|e| $crate::store::StoreError::Corrupt(format!("contact {name}: groups: {e}")))?;
                        Ok($crate::model::contacts::Contact { name, email, telegram, groups })
                    })
                    .collect()
            }

            pub(super) async fn sql_list_silences(
                &self,
                cursor: Option<&$crate::store::Cursor>,
                limit: u32,
            ) -> Result<$crate::store::Page<$crate::model::silence::Silence>, $crate::store::StoreError> {
                use $crate::store::{Cursor, Page, SilenceRow};
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::store::SILENCE_COLUMNS).push(" FROM silences WHERE 1=1");
                if let Some(Cursor::Id(id)) = cursor {
                    qb.push(" AND id < ").push_bind(*id);
                }
                qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
                let rows: Vec<SilenceRow> = qb.build_query_as().fetch_all(&self.read).await?;
                let more = rows.len() > limit as usize;
                let items = rows
                    .into_iter()
                    .take(limit as usize)
                    .map(SilenceRow::into_silence)
                    .collect::<Result<Vec<_>, _>>()?;
                let next_cursor = match (more, items.last()) {
                    (true, Some(s)) => Some(Cursor::Id(s.id).encode()),
                    _ => None,
                };
                Ok(Page { items, next_cursor })
            }

            pub(super) async fn sql_live_silences(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Vec<$crate::model::silence::Silence>, $crate::store::StoreError> {
                use $crate::store::SilenceRow;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                qb.push($crate::store::SILENCE_COLUMNS).push(" FROM silences WHERE ends_at IS NULL OR ends_at > ");
                qb.push_bind($crate::store::to_micros(now)).push(" ORDER BY id");
                let rows: Vec<SilenceRow> = qb.build_query_as().fetch_all(&self.read).await?;
                rows.into_iter().map(SilenceRow::into_silence).collect()
            }

            pub(super) async fn sql_flapping_among(
                &self,
                fingerprints: &[String],
            ) -> Result<std::collections::HashSet<String>, $crate::store::StoreError> {
                let mut out = std::collections::HashSet::new();
                for chunk in fingerprints.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT fingerprint FROM flapping WHERE flapping_since IS NOT NULL AND fingerprint IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for fp in chunk {
                        sep.push_bind(fp.clone());
                    }
                    qb.push(")");
                    let rows: Vec<(String,)> = qb.build_query_as().fetch_all(&self.read).await?;
                    out.extend(rows.into_iter().map(|r| r.0));
                }
                Ok(out)
            }

            pub(super) async fn sql_outbox_counts(&self) -> Result<Vec<$crate::store::OutboxCount>, $crate::store::StoreError> {
                use $crate::store::{NotificationState, OutboxCount, StoreError};
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT channel, state, COUNT(*) FROM notifications WHERE state <> 'sent' GROUP BY channel, state",
                )
                .fetch_all(&self.read)
                .await?;
                rows.into_iter()
                    .map(|(channel, state, count)| {
                        Ok(OutboxCount {
                            channel,
                            state: NotificationState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?,
                            count,
                        })
                    })
                    .collect()
            }

            /// One alert by fingerprint (each store finds the id its own way).
            pub(super) async fn sql_get_alert_by_fingerprint(&self, fingerprint: &str) -> Result<Option<$crate::model::alert::StoredAlert>, $crate::store::StoreError> {
                match self.alert_id(fingerprint).await? {
                    Some(id) => self.sql_get_alert(id).await,
                    None => Ok(None),
                }
            }

            /// A page of events, of one alert when `fingerprint` is given.
            pub(super) async fn sql_list_events_of(
                &self,
                filter: &$crate::store::AlertFilter,
                fingerprint: Option<&str>,
                cursor: Option<&$crate::store::Cursor>,
                limit: u32,
            ) -> Result<$crate::store::Page<$crate::model::alert::Event>, $crate::store::StoreError> {
                let alert_id = match fingerprint {
                    Some(fp) => match self.alert_id(fp).await? {
                        Some(id) => Some(id),
                        // No such alert: no events.
                        None => return Ok($crate::store::Page { items: Vec::new(), next_cursor: None }),
                    },
                    None => None,
                };
                self.sql_list_events(filter, alert_id, cursor, limit).await
            }
        }
    };
}

/// Appends the `/api/v1/alerts` filters (on table alias `a`) to a query.
macro_rules! push_alert_filter {
    ($qb:ident, $filter:expr, $time_col:literal, $like:literal) => {{
        let f: &$crate::store::AlertFilter = $filter;
        if let Some(s) = f.status {
            $qb.push(" AND a.status = ").push_bind(s.as_str());
        }
        if let Some(s) = &f.severity {
            $qb.push(" AND a.severity = ").push_bind(s.clone());
        }
        if let Some(s) = f.source {
            $qb.push(" AND a.source = ").push_bind(s.as_str());
        }
        if let Some(s) = &f.alertname {
            $qb.push(" AND a.alertname = ").push_bind(s.clone());
        }
        if let Some(s) = &f.instance {
            $qb.push(" AND a.instance = ").push_bind(s.clone());
        }
        if let Some(q) = &f.q {
            // Escape LIKE's wildcards so a search for "50%" means the text "50%".
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = format!("%{escaped}%");
            $qb.push(concat!(" AND (a.labels ", $like, " "))
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\'");
            $qb.push(concat!(" OR a.annotations ", $like, " "))
                .push_bind(pattern)
                .push(" ESCAPE '\\')");
        }
        if let Some(t) = f.since {
            $qb.push(concat!(" AND ", $time_col, " >= "))
                .push_bind($crate::store::to_micros(t));
        }
        if let Some(t) = f.until {
            $qb.push(concat!(" AND ", $time_col, " <= "))
                .push_bind($crate::store::to_micros(t));
        }
    }};
}

/// Closes an `id IN (` list with the ids bound as parameters.
macro_rules! push_id_list {
    ($qb:ident, $ids:expr) => {{
        let mut sep = $qb.separated(", ");
        for id in $ids {
            sep.push_bind(*id);
        }
        $qb.push(")");
    }};
}

/// The upsert's conflict clause, the same in both dialects. A new incident
/// (a new start) clears the previous one's acknowledgement.
macro_rules! alert_upsert_on_conflict {
    () => {
        " ON CONFLICT (fingerprint) DO UPDATE SET
           ack_by = CASE WHEN alerts.starts_at = excluded.starts_at THEN alerts.ack_by ELSE NULL END,
           ack_memo = CASE WHEN alerts.starts_at = excluded.starts_at THEN alerts.ack_memo ELSE NULL END,
           ack_at = CASE WHEN alerts.starts_at = excluded.starts_at THEN alerts.ack_at ELSE NULL END,
           status = excluded.status, alertname = excluded.alertname, severity = excluded.severity,
           instance = excluded.instance, source = excluded.source, labels = excluded.labels,
           annotations = excluded.annotations, generator_url = excluded.generator_url,
           starts_at = excluded.starts_at, ends_at = excluded.ends_at, last_seen = excluded.last_seen"
    };
}

pub(crate) use alert_upsert_on_conflict;
pub(crate) use impl_sql_reads;
pub(crate) use push_alert_filter;
pub(crate) use push_id_list;

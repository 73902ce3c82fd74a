//! `/api/v1`: alerts, events and notifications as JSON.
//!
//! Query parameters are checked strictly: an unknown parameter or a bad
//! value is a 400 naming it, never silently ignored (a typo in a filter
//! would otherwise return everything).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::WebState;
use crate::error::HttpError;
use crate::model::alert::{AlertStatus, Source};
use crate::model::silence::SilenceRequest;
use crate::store::{AlertFilter, Cursor, NotificationState};

/// Default and largest page size.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

pub(super) fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route("/api/v1/alerts/{id}/ack", post(ack_alert))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/notifications", get(list_notifications))
        .route("/api/v1/notifications/{id}/resend", post(resend))
        .route("/api/v1/silences", get(list_silences).post(create_silence))
        .route("/api/v1/silences/{id}", delete(delete_silence))
}

struct Params {
    map: HashMap<String, String>,
}

impl Params {
    fn new(map: HashMap<String, String>, allowed: &[&str]) -> Result<Self, HttpError> {
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(HttpError::bad_request(format!(
                "unknown query parameter `{k}` (allowed: {})",
                allowed.join(", ")
            )));
        }
        Ok(Self { map })
    }

    fn text(&self, key: &str) -> Option<String> {
        self.map.get(key).filter(|v| !v.is_empty()).cloned()
    }

    fn limit(&self) -> Result<u32, HttpError> {
        match self.text("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(HttpError::bad_request(format!(
                    "limit must be a number from 1 to {MAX_LIMIT}, not {v:?}"
                ))),
            },
        }
    }

    fn cursor(&self) -> Result<Option<Cursor>, HttpError> {
        self.text("cursor")
            .map(|c| {
                Cursor::decode(&c)
                    .ok_or_else(|| HttpError::bad_request("cursor is not one this server gave out"))
            })
            .transpose()
    }

    fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>, HttpError> {
        self.text(key)
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        HttpError::bad_request(format!(
                            "{key} must be an RFC 3339 time like 2026-11-22T10:00:00Z, not {v:?}"
                        ))
                    })
            })
            .transpose()
    }

    fn alert_filter(&self) -> Result<AlertFilter, HttpError> {
        let status = self
            .text("status")
            .map(|s| {
                AlertStatus::parse(&s).ok_or_else(|| {
                    HttpError::bad_request(format!("status must be firing or resolved, not {s:?}"))
                })
            })
            .transpose()?;
        let source = self
            .text("source")
            .map(|s| {
                Source::parse(&s).ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "source must be alertmanager, grafana, gcp or probe, not {s:?}"
                    ))
                })
            })
            .transpose()?;
        let since = self.time("since")?;
        let until = self.time("until")?;
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(HttpError::bad_request("since is after until"));
            }
        }
        Ok(AlertFilter {
            status,
            severity: self.text("severity"),
            source,
            alertname: self.text("alertname"),
            instance: self.text("instance"),
            q: self.text("q"),
            since,
            until,
        })
    }
}

const FILTERS: &[&str] = &[
    "status",
    "severity",
    "source",
    "alertname",
    "instance",
    "q",
    "since",
    "until",
    "cursor",
    "limit",
];

fn alert_json(a: &crate::model::alert::StoredAlert, s: &WebState) -> serde_json::Value {
    let silenced = s.silences.mutes(
        &crate::route::scheduler::as_incoming(a).match_labels(),
        s.clock.now(),
    );
    json!({
        "id": a.fingerprint,
        "fingerprint": a.fingerprint,
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "source": a.source,
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "first_seen": a.first_seen,
        "last_seen": a.last_seen,
        "generator_url": a.generator_url,
        "silenced": silenced,
        "ack": a.ack,
    })
}

async fn list_alerts(
    State(s): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, HttpError> {
    s.access.check(&headers)?;
    let p = Params::new(q, FILTERS)?;
    let filter = p.alert_filter()?;
    let page = s
        .store
        .list_alerts(&filter, p.cursor()?.as_ref(), p.limit()?)
        .await?;
    let items: Vec<_> = page.items.iter().map(|a| alert_json(a, &s)).collect();
    Ok(Json(
        json!({ "items": items, "next_cursor": page.next_cursor }),
    ))
}

async fn get_alert(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    s.access.check(&headers)?;
    let alert = s
        .store
        .get_alert(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("no alert with id {id:?}")))?;
    let events = s
        .store
        .list_events(&AlertFilter::default(), Some(&id), None, MAX_LIMIT)
        .await?;
    let mut body = alert_json(&alert, &s);
    body["events"] = json!(events.items);
    Ok(Json(body))
}

async fn list_events(
    State(s): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, HttpError> {
    s.access.check(&headers)?;
    let p = Params::new(q, FILTERS)?;
    let filter = p.alert_filter()?;
    let page = s
        .store
        .list_events(&filter, None, p.cursor()?.as_ref(), p.limit()?)
        .await?;
    Ok(Json(json!(page)))
}

async fn list_notifications(
    State(s): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, HttpError> {
    s.access.check(&headers)?;
    let p = Params::new(q, &["state", "channel", "cursor", "limit"])?;
    let state = p
        .text("state")
        .map(|v| {
            NotificationState::parse(&v).ok_or_else(|| {
                HttpError::bad_request(format!("state must be pending, sent or failed, not {v:?}"))
            })
        })
        .transpose()?;
    let page = s
        .store
        .list_notifications(
            state,
            p.text("channel").as_deref(),
            p.cursor()?.as_ref(),
            p.limit()?,
        )
        .await?;
    Ok(Json(json!(page)))
}

async fn resend(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    s.access.check(&headers)?;
    let id: i64 = id.parse().map_err(|_| {
        HttpError::bad_request(format!("notification id must be a number, not {id:?}"))
    })?;
    if s.store.resend(id, s.clock.now()).await? {
        s.signal.wake_all();
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "queued", "id": id })),
        ))
    } else {
        Err(HttpError::not_found(format!(
            "no failed notification with id {id}"
        )))
    }
}

async fn list_silences(
    State(s): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, HttpError> {
    s.access.check(&headers)?;
    let p = Params::new(q, &["cursor", "limit"])?;
    let page = s
        .store
        .list_silences(p.cursor()?.as_ref(), p.limit()?)
        .await?;
    let now = s.clock.now();
    let items: Vec<_> = page.items.iter().map(|x| x.view(now)).collect();
    Ok(Json(
        json!({ "items": items, "next_cursor": page.next_cursor }),
    ))
}

async fn create_silence(
    State(s): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, HttpError> {
    let who = s.access.check(&headers)?;
    crate::error::check_json_content_type(&headers)?;
    let request: SilenceRequest = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("not a silence: {e}")))?;
    let now = s.clock.now();
    let new = request
        .check(now, &who)
        .map_err(|errors| HttpError::bad_request(errors.join("; ")))?;
    let silence = s.store.create_silence(&new, now).await?;
    tracing::info!(silence = silence.id, by = %silence.created_by, "silence created");
    let view = silence.view(now);
    s.silences.put(silence);
    Ok((StatusCode::CREATED, Json(view)))
}

async fn delete_silence(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    s.access.check(&headers)?;
    let id: i64 = id
        .parse()
        .map_err(|_| HttpError::bad_request(format!("silence id must be a number, not {id:?}")))?;
    let now = s.clock.now();
    match s.store.expire_silence(id, now).await? {
        Some(silence) => {
            tracing::info!(silence = id, "silence deleted");
            let view = silence.view(now);
            // Ends here at once; the scheduler notifies what it held back.
            s.silences.put(silence);
            Ok(Json(view))
        }
        None => Err(HttpError::not_found(format!(
            "no active or pending silence with id {id}"
        ))),
    }
}

/// `POST /api/v1/alerts/{id}/ack` takes this. Unknown fields are refused.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    #[serde(default)]
    memo: String,
    /// Who; the caller's identity otherwise.
    by: Option<String>,
}

/// Longest memo or name accepted.
const MAX_ACK_TEXT: usize = 1000;

async fn ack_alert(
    State(s): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, HttpError> {
    let who = s.access.check(&headers)?;
    crate::error::check_json_content_type(&headers)?;
    let request: AckRequest = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("not an acknowledgement: {e}")))?;
    let by = request.by.filter(|b| !b.trim().is_empty()).unwrap_or(who);
    if request.memo.chars().count() > MAX_ACK_TEXT || by.chars().count() > MAX_ACK_TEXT {
        return Err(HttpError::bad_request(format!(
            "memo and by: at most {MAX_ACK_TEXT} characters"
        )));
    }
    let alert = s
        .store
        .get_alert(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("no alert with id {id:?}")))?;
    if alert.status != AlertStatus::Firing {
        return Err(HttpError::conflict(format!(
            "alert {id} is resolved: there is nothing to acknowledge"
        )));
    }
    let ack = crate::model::alert::Ack {
        by,
        memo: request.memo,
        at: s.clock.now(),
    };
    if !s.store.ack_alert(&id, &ack).await? {
        return Err(HttpError::conflict(format!(
            "alert {id} resolved meanwhile: there is nothing to acknowledge"
        )));
    }
    tracing::info!(alert = %id, by = %ack.by, "alert acknowledged");
    let alert = s
        .store
        .get_alert(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("no alert with id {id:?}")))?;
    Ok(Json(alert_json(&alert, &s)))
}

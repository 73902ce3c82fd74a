//! Where alerts come in: `POST /webhook/<source>`.
//!
//! Every source handler does the same steps in the same order — credentials
//! (401), content type (415), size (413), shape (400) — and answers 200 only
//! after the group-commit writer has committed the alerts. A source only
//! knows its own payload format; storing and routing are not its business.

pub mod alertmanager;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::Access;
use crate::error::{check_json_content_type, HttpError};
use crate::model::alert::IncomingAlert;
use crate::store::writer::IngestWriter;
use crate::store::IngestRequest;
use crate::telemetry::Metrics;

/// What the webhook handlers share.
#[derive(Clone)]
pub struct IngestState {
    /// The group-commit writer.
    pub writer: IngestWriter,
    /// Who may post.
    pub access: Arc<crate::live::Live<Access>>,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// The `/webhook/*` routes.
pub fn routes(state: IngestState) -> Router {
    Router::new()
        .route("/webhook/alertmanager", post(alertmanager_webhook))
        .with_state(state)
}

async fn alertmanager_webhook(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, HttpError> {
    receive(&state, "alertmanager", &headers, body, alertmanager::parse).await
}

/// The shared steps of every webhook.
async fn receive(
    state: &IngestState,
    source: &str,
    headers: &HeaderMap,
    body: Body,
    parse: fn(&[u8]) -> Result<Vec<IncomingAlert>, String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let result: Result<Json<serde_json::Value>, HttpError> = async {
        state.access.check(headers)?;
        check_json_content_type(headers)?;
        let bytes = read_limited(body, headers, state.max_body_bytes).await?;
        let alerts = parse(&bytes).map_err(HttpError::bad_request)?;
        let accepted = alerts.len();
        let notifications = state.writer.submit(IngestRequest { alerts }).await?;
        state.metrics.alerts_stored(source, accepted, notifications);
        Ok(Json(json!({ "status": "ok", "accepted": accepted })))
    }
    .await;
    if let Err(e) = &result {
        state
            .metrics
            .webhook_rejected(source, e.status().as_u16(), e.message());
    }
    result
}

async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<axum::body::Bytes, HttpError> {
    // Refuse early when the client announces a size over the limit.
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(HttpError::too_large(limit));
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return HttpError::too_large(limit);
            }
            source = s.source();
        }
        HttpError::bad_request(format!("could not read the request body: {e}"))
    })
}

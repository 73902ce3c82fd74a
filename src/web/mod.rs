//! What people and tools can ask alertrelay: the JSON API, health,
//! metrics and reload. There is no HTML page yet: `/` answers 404.

pub mod api;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::Access;
use crate::clock::Clock;
use crate::store::Store;
use crate::telemetry::Metrics;

/// What the API handlers share.
#[derive(Clone)]
pub struct WebState {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Who may call /api/v1 (and /-/reload).
    pub access: Arc<crate::live::Live<Access>>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Channel names, so /metrics shows a zero for idle ones.
    pub channels: Arc<crate::live::Live<Vec<String>>>,
    /// Time.
    pub clock: Clock,
    /// Wakes outbox workers after a re-send.
    pub signal: crate::store::OutboxSignal,
    /// The silences the planner minds; the API adds to it at once.
    pub silences: crate::model::silence::SilenceBook,
    /// `/-/reload`.
    pub reloader: Arc<crate::app::reload::Reloader>,
}

/// `/api/v1/*`, `/healthz`, `/readyz`, `/metrics`.
pub fn routes(state: WebState) -> Router {
    Router::new()
        .merge(api::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/-/reload", axum::routing::post(reload))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<WebState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "error": "storage is not reachable" })),
            )
        }
    }
}

async fn metrics(State(state): State<WebState>) -> impl IntoResponse {
    match state.store.outbox_counts().await {
        Ok(counts) => state.metrics.set_outbox(&state.channels.get(), &counts),
        Err(e) => tracing::warn!(error = %e, "cannot count the outbox for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// `POST /-/reload`: re-reads the config. 200 with a summary, or 400 with
/// every reason it was refused (the running config stays).
async fn reload(
    State(state): State<WebState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, crate::error::HttpError> {
    state.access.check(&headers)?;
    match state.reloader.reload().await {
        Ok(summary) => Ok((
            StatusCode::OK,
            Json(json!({ "status": "ok", "message": summary })),
        )),
        Err(e) => {
            let errors = e.reasons();
            tracing::error!(errors = %errors.join("; "), "reload refused; the running config stays");
            Ok((
                StatusCode::BAD_REQUEST,
                Json(
                    json!({ "error": format!("the new config does not check out; the running one stays:\n{}", errors.join("\n")), "errors": errors }),
                ),
            ))
        }
    }
}

//! A local HTTP receiver for the `webhook` channel: records each request
//! (headers and JSON body) and answers what the test scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct SinkState {
    received: Vec<Received>,
    /// Scripted answers (status, Retry-After, body) for the next requests; then 204.
    answers: VecDeque<(u16, Option<u64>, String)>,
}

#[derive(Clone)]
pub struct WebhookSink {
    addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
}

impl WebhookSink {
    pub async fn start() -> WebhookSink {
        let state = Arc::new(Mutex::new(SinkState::default()));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let addr = crate::common::serve_on_loopback(app).await;
        WebhookSink { addr, state }
    }

    /// The receiving URL, with a query token that must never show up in errors.
    pub fn url(&self) -> String {
        format!("http://{}/hook?token=s3cr3t-query-token", self.addr)
    }

    /// Answers the next `n` requests with `status` (and a Retry-After header).
    pub fn answer_next(&self, n: usize, status: u16, retry_after: Option<u64>, body: &str) {
        let mut s = self.state.lock().expect("lock");
        for _ in 0..n {
            s.answers.push_back((status, retry_after, body.to_string()));
        }
    }

    /// Every request so far, whatever it was answered.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("lock").received.clone()
    }

    /// Waits until `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        crate::common::wait_for_items("webhook requests", n, timeout, || self.received()).await
    }
}

async fn receive(
    State(state): State<Arc<Mutex<SinkState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not JSON: {e}")).into_response(),
    };
    let mut s = state.lock().expect("lock");
    s.received.push(Received {
        at: Instant::now(),
        headers,
        body,
    });
    match s.answers.pop_front() {
        Some((status, retry_after, text)) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (code, text).into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(secs),
                );
            }
            resp
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

//! A fake Slack incoming webhook that validates like the real one: 400
//! `invalid_blocks` for a header over 150 characters, a section over 3000,
//! more than 50 blocks or an unknown block type; 400 `no_text` without
//! text or blocks; 404 `no_service` for a wrong URL; scripted 429 with
//! `Retry-After`. Success is 200 with the body `ok`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

pub const HOOK_PATH: &str = "T000/B000/XXXXsecret";

#[derive(Debug, Clone)]
pub struct SlackPost {
    pub body: Value,
}

#[derive(Default)]
struct HookState {
    accepted: Vec<SlackPost>,
    all: Vec<(Instant, u16)>,
    scripted: VecDeque<(u16, Option<u64>, &'static str)>,
}

#[derive(Clone)]
pub struct FakeSlack {
    addr: SocketAddr,
    state: Arc<Mutex<HookState>>,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let state = Arc::new(Mutex::new(HookState::default()));
        let app = Router::new()
            .route("/services/{*path}", post(hook))
            .with_state(state.clone());
        let addr = crate::common::serve_on_loopback(app).await;
        FakeSlack { addr, state }
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/services/{HOOK_PATH}", self.addr)
    }

    /// Answers the next `n` requests with `status` and `body`.
    pub fn answer_next(&self, n: usize, status: u16, retry_after: Option<u64>, body: &'static str) {
        let mut s = self.state.lock().expect("lock");
        for _ in 0..n {
            s.scripted.push_back((status, retry_after, body));
        }
    }

    pub fn accepted(&self) -> Vec<SlackPost> {
        self.state.lock().expect("lock").accepted.clone()
    }

    /// (time, status) of every request.
    pub fn requests(&self) -> Vec<(Instant, u16)> {
        self.state.lock().expect("lock").all.clone()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SlackPost> {
        crate::common::wait_for_items("Slack posts", n, timeout, || self.accepted()).await
    }
}

/// Why Slack would refuse these blocks, if it would.
pub fn invalid_blocks(blocks: &[Value]) -> Option<String> {
    if blocks.len() > 50 {
        return Some(format!("{} blocks (max 50)", blocks.len()));
    }
    for b in blocks {
        let text = b["text"]["text"].as_str().unwrap_or_default();
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" || text.chars().count() > 150 {
                    return Some("header".into());
                }
            }
            Some("section") => {
                if text.is_empty() || text.chars().count() > 3000 {
                    return Some(format!("section of {} chars", text.chars().count()));
                }
            }
            Some("context") => {
                if b["elements"]
                    .as_array()
                    .is_none_or(|e| e.is_empty() || e.len() > 10)
                {
                    return Some("context".into());
                }
            }
            Some("divider") => {}
            other => return Some(format!("unknown block type {other:?}")),
        }
    }
    None
}

async fn hook(
    State(state): State<Arc<Mutex<HookState>>>,
    Path(path): Path<String>,
    body: Bytes,
) -> Response {
    let mut s = state.lock().expect("lock");
    let (status, retry_after, text) = if path != HOOK_PATH {
        (404, None, "no_service".to_string())
    } else if let Some((st, ra, t)) = s.scripted.pop_front() {
        (st, ra, t.to_string())
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Err(_) => (400, None, "invalid_payload".into()),
            Ok(v) => {
                let mut blocks: Vec<Value> = v["blocks"].as_array().cloned().unwrap_or_default();
                for a in v["attachments"].as_array().cloned().unwrap_or_default() {
                    blocks.extend(a["blocks"].as_array().cloned().unwrap_or_default());
                }
                if v["text"].as_str().is_none_or(str::is_empty) && blocks.is_empty() {
                    (400, None, "no_text".into())
                } else if let Some(_why) = invalid_blocks(&blocks) {
                    (400, None, "invalid_blocks".into())
                } else {
                    s.accepted.push(SlackPost { body: v });
                    (200, None, "ok".into())
                }
            }
        }
    };
    s.all.push((Instant::now(), status));
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        text,
    )
        .into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

//! A fake WeChat Work group robot that answers like the real one: HTTP 200
//! with `errcode` for almost everything — 93000 for a wrong key, 40058 for
//! content over 4096 bytes, 44004 for empty content, 45009 past 20 messages
//! a minute (or when the test scripts it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Default)]
struct RobotState {
    /// Markdown contents accepted, in order.
    accepted: Vec<String>,
    /// Every request's errcode, in order.
    answers: Vec<i64>,
    /// Times of accepted messages in the last minute (the 20/minute limit).
    window: VecDeque<Instant>,
    /// Errcodes to answer the next requests with.
    scripted: VecDeque<i64>,
}

#[derive(Clone)]
pub struct FakeWecom {
    addr: SocketAddr,
    key: String,
    state: Arc<Mutex<RobotState>>,
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

pub const PER_MINUTE: usize = 20;

impl FakeWecom {
    pub async fn start(key: &str) -> FakeWecom {
        let state = Arc::new(Mutex::new(RobotState::default()));
        let key_owned = key.to_string();
        let st = state.clone();
        let app = Router::new().route(
            "/cgi-bin/webhook/send",
            post(move |q: Query<KeyQuery>, body: Bytes| {
                let st = st.clone();
                let key = key_owned.clone();
                async move { robot(State(st), key, q, body).await }
            }),
        );
        let addr = crate::common::serve_on_loopback(app).await;
        FakeWecom {
            addr,
            key: key.to_string(),
            state,
        }
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/cgi-bin/webhook/send?key={}", self.addr, self.key)
    }

    pub fn webhook_url_with_key(&self, key: &str) -> String {
        format!("http://{}/cgi-bin/webhook/send?key={key}", self.addr)
    }

    /// Answers the next `n` requests with `errcode` (HTTP 200).
    pub fn answer_next(&self, n: usize, errcode: i64) {
        let mut s = self.state.lock().expect("lock");
        for _ in 0..n {
            s.scripted.push_back(errcode);
        }
    }

    pub fn accepted(&self) -> Vec<String> {
        self.state.lock().expect("lock").accepted.clone()
    }

    pub fn answers(&self) -> Vec<i64> {
        self.state.lock().expect("lock").answers.clone()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        crate::common::wait_for_items("robot messages", n, timeout, || self.accepted()).await
    }
}

async fn robot(
    State(state): State<Arc<Mutex<RobotState>>>,
    key: String,
    Query(q): Query<KeyQuery>,
    body: Bytes,
) -> Json<Value> {
    let mut s = state.lock().expect("lock");
    let (code, msg) = answer(&mut s, &key, q.key.as_deref(), &body);
    s.answers.push(code);
    Json(json!({ "errcode": code, "errmsg": msg }))
}

fn answer(s: &mut RobotState, key: &str, given: Option<&str>, body: &[u8]) -> (i64, String) {
    if given != Some(key) {
        return (93000, "invalid webhook url, hint: [fake]".into());
    }
    if let Some(code) = s.scripted.pop_front() {
        return (code, "scripted".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (40015, "invalid message type, hint: body is not json".into());
    };
    if v["msgtype"] != "markdown" {
        return (40008, "invalid message type".into());
    }
    let Some(content) = v["markdown"]["content"].as_str() else {
        return (40063, "markdown.content missing".into());
    };
    if content.is_empty() {
        return (44004, "empty content".into());
    }
    if content.len() > 4096 {
        return (
            40058,
            format!(
                "markdown.content exceed max length 4096. size {}",
                content.len()
            ),
        );
    }
    let now = Instant::now();
    while s
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        s.window.pop_front();
    }
    if s.window.len() >= PER_MINUTE {
        return (45009, "api freq out of limit".into());
    }
    s.window.push_back(now);
    s.accepted.push(content.to_string());
    (0, "ok".into())
}

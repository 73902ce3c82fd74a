//! Starting alertrelay for a test and talking to it like a client would.
//!
//! Each test gets its own app on port 0 with its own database: a fresh
//! SQLite file in a temp dir, or a fresh schema in the PostgreSQL on
//! 127.0.0.1:5432 (database `test`), so tests run in parallel.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use alertrelay::app::Config;
use alertrelay::clock::Clock;
use alertrelay::config::{ConfigError, ConfigErrors};
use alertrelay::startup::{Application, IdleProbe};
use alertrelay::store::Store;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;

use crate::fake_telegram::FakeTelegram;

/// The PostgreSQL tests use; override with ALERTRELAY_TEST_PG.
pub fn pg_admin_url() -> String {
    std::env::var("ALERTRELAY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per database: `both_dbs!(name)` makes
/// `name::sqlite` and `name::postgres` from `async fn name(db: Db)`.
#[macro_export]
macro_rules! both_dbs {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Db::Postgres).await
            }
        }
    };
}

/// A storage URL of a fresh, empty database.
pub async fn fresh_storage(db: Db, dir: &TempDir) -> (String, Option<String>) {
    match db {
        Db::Sqlite => (
            format!("sqlite://{}", dir.path().join("alertrelay.db").display()),
            None,
        ),
        Db::Postgres => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&pg_admin_url())
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (database test) must be reachable");
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .expect("create schema");
            admin.close().await;
            let sep = if pg_admin_url().contains('?') {
                '&'
            } else {
                '?'
            };
            (
                format!("{}{sep}options=-c%20search_path%3D{schema}", pg_admin_url()),
                Some(schema),
            )
        }
    }
}

/// A running app.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub dir: TempDir,
    pub storage_url: String,
    schema: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    idle: IdleProbe,
}

/// Fast retries so failure paths finish in well under a second.
pub const FAST_DELIVERY: &str =
    "delivery: { max_attempts: 3, retry_initial: 50ms, retry_max: 200ms, timeout: 2s }\n";

/// YAML for a Telegram channel pointing at a fake. Pacing is off: these
/// tests look at each notification's own message; tests/api/pacing.rs
/// covers the platform limits and backlog summaries.
pub fn telegram_channel(name: &str, fake: &FakeTelegram, chat_ids: &[&str]) -> String {
    format!(
        "  - name: {name}\n    type: telegram\n    pacing: false\n    bot_token: \"{}\"\n    api_url: {}\n    chat_ids: [{}]\n",
        fake.token(),
        fake.api_url(),
        chat_ids.join(", ")
    )
}

impl TestApp {
    /// Starts alertrelay with `yaml` (listen and storage are filled in).
    pub async fn spawn(db: Db, yaml: &str) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (storage_url, schema) = fresh_storage(db, &dir).await;
        Self::spawn_with_storage(dir, storage_url, schema, yaml).await
    }

    /// Starts alertrelay on a clock the test moves (windows, silence ends).
    pub async fn spawn_with_clock(db: Db, yaml: &str, clock: Clock) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (storage_url, schema) = fresh_storage(db, &dir).await;
        Self::start(dir, storage_url, schema, yaml, clock).await
    }

    /// Starts alertrelay on an existing database (restart tests).
    pub async fn spawn_with_storage(
        dir: TempDir,
        storage_url: String,
        schema: Option<String>,
        yaml: &str,
    ) -> TestApp {
        Self::start(dir, storage_url, schema, yaml, Clock::system()).await
    }

    /// Starts alertrelay again on an existing database with a clock the
    /// test moves (restart in the middle of a window).
    pub async fn spawn_with_storage_and_clock(
        dir: TempDir,
        storage_url: String,
        schema: Option<String>,
        yaml: &str,
        clock: Clock,
    ) -> TestApp {
        Self::start(dir, storage_url, schema, yaml, clock).await
    }

    async fn start(
        dir: TempDir,
        storage_url: String,
        schema: Option<String>,
        yaml: &str,
        clock: Clock,
    ) -> TestApp {
        let text = format!("listen: 127.0.0.1:0\nstorage: \"{storage_url}\"\n{yaml}");
        let config = Config::parse(&text, dir.path(), &|_| None)
            .unwrap_or_else(|e| panic!("test config does not check out: {e:?}\n{text}"));
        // Reload re-reads `config.yml` in the test's directory, with the
        // same listen and storage lines (see `write_config`).
        let file = dir.path().join("config.yml");
        std::fs::write(&file, yaml).expect("config file");
        let (base, url) = (dir.path().to_path_buf(), storage_url.clone());
        let source: alertrelay::app::reload::ConfigSource = Box::new(move || {
            let yaml = std::fs::read_to_string(&file).map_err(|e| ConfigErrors {
                file: None,
                errors: vec![ConfigError {
                    line: 0,
                    path: String::new(),
                    message: e.to_string(),
                }],
            })?;
            let text = format!("listen: 127.0.0.1:0\nstorage: \"{url}\"\n{yaml}");
            Config::parse(&text, &base, &|_| None)
                .map_err(|errors| ConfigErrors { file: None, errors })
        });
        let app = Application::build_with_source(config, clock, Some(source))
            .await
            .expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let store = app.store();
        let idle = app.idle_probe();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        TestApp {
            address,
            // No connection reuse: a server answering 413 before reading a
            // body closes the connection, and a pooled client could pick that
            // dead connection up for the next request.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            store,
            dir,
            storage_url,
            schema,
            stop: Some(tx),
            task: Some(task),
            idle,
        }
    }

    /// Stops the app as SIGTERM would and waits for it; returns what it
    /// needs to start again on the same database.
    pub async fn stop(mut self) -> (TempDir, String, Option<String>) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stops cleanly");
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        (dir, self.storage_url.clone(), self.schema.take())
    }

    /// Sends `method path` with an optional JSON body; the status and the
    /// JSON answer (or its text as a string).
    pub async fn send_json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.address);
        let req = match method {
            "POST" => self.http.post(url),
            "DELETE" => self.http.delete(url),
            "GET" => self.http.get(url),
            other => panic!("method {other}"),
        };
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The API's view of the alert with this `instance` label.
    pub async fn alert_on(&self, instance: &str) -> Value {
        let (status, body) = self
            .get_json(&format!("/api/v1/alerts?instance={instance}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"][0].clone()
    }

    /// Replaces the config file `/-/reload` re-reads (listen and storage
    /// are added as at start).
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.dir.path().join("config.yml"), yaml).expect("config file");
    }

    /// POSTs a body to a path with the given content type and Authorization.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        auth: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.address)).body(body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send().await.expect("request")
    }

    /// POSTs an Alertmanager webhook payload.
    pub async fn post_alertmanager(&self, payload: &Value) -> reqwest::Response {
        self.post_raw(
            "/webhook/alertmanager",
            Some("application/json"),
            None,
            serde_json::to_vec(payload).expect("json"),
        )
        .await
    }

    /// POSTs and asserts the 200 answer's `accepted`.
    pub async fn post_ok(&self, payload: &Value) {
        let resp = self.post_alertmanager(payload).await;
        let status = resp.status();
        let body: Value = resp.json().await.expect("json body");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(
            body["accepted"].as_u64(),
            payload["alerts"].as_array().map(|a| a.len() as u64)
        );
    }

    /// GETs an API path; returns status and JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        self.get_json_auth(path, None).await
    }

    /// GETs with an Authorization header.
    pub async fn get_json_auth(&self, path: &str, auth: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.address));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// GETs plain text (metrics).
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// Every stored alert (up to 500).
    pub async fn alerts(&self) -> Vec<Value> {
        let (status, body) = self.get_json("/api/v1/alerts?limit=500").await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Every event (up to 500).
    pub async fn events(&self) -> Vec<Value> {
        let (status, body) = self.get_json("/api/v1/events?limit=500").await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Notifications in a state.
    pub async fn notifications(&self, state: &str) -> Vec<Value> {
        let (status, body) = self
            .get_json(&format!("/api/v1/notifications?state={state}&limit=500"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `n` notifications are in `state`, or panics after `timeout`.
    pub async fn wait_notifications(&self, state: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let items = self.notifications(state).await;
            if items.len() >= n {
                return items;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "expected {n} {state} notifications, have {}: {items:#?}",
                    items.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until this app has handled everything due by now: the
    /// scheduler has run for this time, nothing is claimed or in flight,
    /// nothing due is waiting. "Nothing more was sent" is then a fact, not
    /// a guess after a sleep.
    pub async fn wait_idle(&self) {
        let since = self.idle.now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if self.idle.idle_since(since).await.expect("store answers") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not idle after 20 s: {:#?}",
                self.notifications("pending").await
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A metric's value from /metrics (the first line starting with `prefix`).
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, text) = self.get_text("/metrics").await;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(schema) = self.schema.take() {
            // Best effort; leftovers are dropped by scripts/test before each run.
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok(pool) = sqlx::PgPool::connect(&pg_admin_url()).await {
                            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                                .execute(&pool)
                                .await;
                        }
                    });
                }
            });
        }
    }
}

/// One Alertmanager alert as JSON.
pub fn am_alert(name: &str, instance: &str, status: &str) -> Value {
    json!({
        "status": status,
        "labels": { "alertname": name, "instance": instance, "severity": "critical", "job": "node" },
        "annotations": { "summary": format!("{name} on {instance}"), "description": "Something is wrong." },
        "startsAt": "2026-11-22T02:00:00Z",
        "endsAt": if status == "resolved" { "2026-11-22T02:12:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0",
    })
}

/// An Alertmanager webhook (version 4) carrying `alerts`.
pub fn am_payload(alerts: Vec<Value>) -> Value {
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"X\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "alertrelay",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    })
}

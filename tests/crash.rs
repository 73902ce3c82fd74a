//! Crash and shutdown of the real binary: `kill -9` loses nothing that was
//! answered 200, and SIGTERM lets the send in flight finish (or puts it back
//! in the queue) and exits 0, with the rest delivered after a restart.
//!
//! Each test runs `alertrelay serve` as a child process on its own database
//! (a SQLite file in a temp dir, or a fresh schema in the PostgreSQL on
//! 127.0.0.1:5432, database `test`; override with ALERTRELAY_TEST_PG) with a
//! fake Telegram. On a failure the logs of every alertrelay run are printed.

mod common;
#[path = "api/fake_telegram.rs"]
mod fake_telegram;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_telegram::{FakeFailure, FakeTelegram, SentMessage};
use serde_json::{json, Value};

const CHAT: &str = "-100200";
const TOKEN: &str = "123:abc";

// ------------------------------------------------------------ processes

/// One run of the alertrelay binary. Killed (SIGKILL) when dropped; on a
/// panic its logs are printed so a failure explains itself.
struct Relay {
    run: String,
    child: Child,
    logs: Vec<PathBuf>,
    url: String,
}

impl Relay {
    /// Starts `alertrelay serve -c <dir>/alertrelay.yml` as run `run`
    /// (logs `alertrelay-<run>.log` and `.stderr`) and waits for /readyz.
    async fn start(dir: &Path, port: u16, run: &str, http: &reqwest::Client) -> Relay {
        let config = dir.join("alertrelay.yml");
        let log = dir.join(format!("alertrelay-{run}.log"));
        let stderr_path = dir.join(format!("alertrelay-{run}.stderr"));
        let stderr = File::create(&stderr_path).expect("create the stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_alertrelay"))
            .arg("serve")
            .arg("-c")
            .arg(&config)
            .arg("-l")
            .arg(&log)
            .env("RUST_LOG", "info,alertrelay=debug,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("clone the stderr file handle"))
            .stderr(stderr)
            .spawn()
            .expect("start the alertrelay binary");
        let mut relay = Relay {
            run: run.to_string(),
            child,
            logs: vec![stderr_path, log],
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = relay.child.try_wait() {
                panic!(
                    "alertrelay run {run} exited at start with {status}{}",
                    relay.dump()
                );
            }
            if let Ok(r) = http.get(format!("{}/readyz", relay.url)).send().await {
                if r.status() == 200 {
                    return relay;
                }
            }
            if Instant::now() > deadline {
                panic!("alertrelay run {run} not ready after 30s{}", relay.dump());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    fn kill9(&mut self) {
        // Child::kill is SIGKILL on unix.
        self.child.kill().expect("SIGKILL alertrelay");
        let status = self.child.wait().expect("reap alertrelay");
        eprintln!("alertrelay run {} killed: {status}", self.run);
    }

    /// Sends SIGTERM and waits up to `limit` for the exit.
    async fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "kill(SIGTERM) failed: {}",
            std::io::Error::last_os_error()
        );
        self.terminate_wait(limit).await
    }

    /// Waits up to `limit` for the exit after a SIGTERM already sent.
    async fn terminate_wait(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status, sent.elapsed());
            }
            if sent.elapsed() > limit {
                panic!(
                    "alertrelay run {} still running {limit:?} after SIGTERM{}",
                    self.run,
                    self.dump()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn dump(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"));
            out.push_str(&format!(
                "\n----- alertrelay run {} {} -----\n{}\n----- end of {} -----\n",
                self.run,
                path.display(),
                text.trim_end(),
                path.display()
            ));
        }
        out
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        common::stop_child(&mut self.child);
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
        }
    }
}

use common::free_port;

fn write_config(dir: &Path, port: u16, storage: &str, fake: &FakeTelegram, delivery: &str) {
    let yaml = format!(
        "listen: 127.0.0.1:{port}\n\
         storage: \"{storage}\"\n\
         delivery: {{ {delivery} }}\n\
         channels:\n\
         \x20 - name: oncall\n\
         \x20   type: telegram\n\
         \x20   pacing: false\n\
         \x20   bot_token: \"{token}\"\n\
         \x20   api_url: {api}\n\
         \x20   chat_ids: [{CHAT}]\n",
        token = fake.token(),
        api = fake.api_url(),
    );
    std::fs::write(dir.join("alertrelay.yml"), yaml).expect("write the config");
}

// ------------------------------------------------------------ databases

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

fn pg_admin_url() -> String {
    std::env::var("ALERTRELAY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh PostgreSQL schema, dropped when this is dropped.
struct PgSchema(String);

impl PgSchema {
    async fn create() -> PgSchema {
        let schema = format!("crash_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&pg_admin_url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {} must be reachable for this test: {e}",
                    pg_admin_url()
                )
            });
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create the test schema");
        admin.close().await;
        PgSchema(schema)
    }

    fn storage_url(&self) -> String {
        let admin = pg_admin_url();
        let sep = if admin.contains('?') { '&' } else { '?' };
        format!("{admin}{sep}options=-c%20search_path%3D{}", self.0)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Own thread and runtime: Drop cannot await, and the test's runtime may be ending.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the schema");
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&pg_admin_url()).await {
                    if let Err(e) = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&pool)
                        .await
                    {
                        eprintln!("could not drop schema {schema}: {e}");
                    }
                    pool.close().await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A fresh database: its storage URL, and the schema to drop (PostgreSQL).
async fn fresh_storage(db: Db, dir: &Path) -> (String, Option<PgSchema>) {
    match db {
        Db::Sqlite => (
            format!("sqlite://{}", dir.join("alertrelay.db").display()),
            None,
        ),
        Db::Postgres => {
            let schema = PgSchema::create().await;
            (schema.storage_url(), Some(schema))
        }
    }
}

/// `name::sqlite` and `name::postgres` tests from `async fn name(db: Db)`.
macro_rules! both_dbs {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Db::Postgres).await
            }
        }
    };
}

// ------------------------------------------------------------ API

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let text = resp.text().await.expect("a body");
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
}

/// Every item of a list endpoint, following `next_cursor`.
async fn list_all(http: &reqwest::Client, base: &str, path_and_query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}{path_and_query}&cursor={c}"),
            None => format!("{base}{path_and_query}"),
        };
        let page = get_json(http, &url).await;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
}

async fn notifications(http: &reqwest::Client, relay: &Relay, state: &str) -> Vec<Value> {
    list_all(
        http,
        &relay.url,
        &format!("/api/v1/notifications?state={state}&limit=500"),
    )
    .await
}

/// Waits until no notification is pending; panics after `timeout` with the outbox.
async fn wait_outbox_empty(http: &reqwest::Client, relay: &Relay, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let pending = notifications(http, relay, "pending").await;
        if pending.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let brief: Vec<Value> = pending
                .iter()
                .map(|n| json!({"id": n["id"], "attempts": n["attempts"], "next_attempt_at": n["next_attempt_at"], "last_error": n["last_error"]}))
                .collect();
            panic!(
                "{} notification(s) still pending after {timeout:?}: {brief:#?}",
                pending.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A webhook like Alertmanager's, `n` new firing alerts of the given instances.
fn webhook(alertname: &str, instances: &[String]) -> Value {
    let now = alertrelay::clock::Clock::system()
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let alerts: Vec<Value> = instances
        .iter()
        .map(|i| {
            json!({
                "status": "firing",
                "labels": { "alertname": alertname, "instance": i, "severity": "critical" },
                "annotations": { "summary": format!("{alertname} on {i}") },
                "startsAt": now,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "alertrelay",
        "groupLabels": { "alertname": alertname },
        "commonLabels": { "alertname": alertname },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    })
}

/// POSTs a webhook; `Ok(())` only for `200 {"status":"ok","accepted":n}`.
async fn post_webhook(http: &reqwest::Client, url: &str, body: &Value) -> Result<(), String> {
    let n = body["alerts"].as_array().map_or(0, Vec::len);
    let resp = http
        .post(format!("{url}/webhook/alertmanager"))
        .json(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("body failed: {e}"))?;
    let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status == 200 && parsed["status"] == "ok" && parsed["accepted"] == json!(n) {
        Ok(())
    } else {
        Err(format!("{status} {text}"))
    }
}

/// How many accepted messages mention `needle`.
fn mentions(msgs: &[SentMessage], needle: &str) -> usize {
    msgs.iter()
        .filter(|m| m.plain_text.contains(needle))
        .count()
}

// ------------------------------------------------------------ kill -9

const WEBHOOKS: usize = 40;
const PER_WEBHOOK: usize = 5;
const SENDERS: usize = 8;
const SENDER_PAUSE: Duration = Duration::from_millis(100);

fn crash_instances(webhook: usize) -> Vec<String> {
    (0..PER_WEBHOOK)
        .map(|j| format!("w{webhook:02}-a{j}:9100"))
        .collect()
}

async fn kill_9_loses_nothing_answered_200(db: Db) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = client();
    let fake = FakeTelegram::start(TOKEN).await;
    fake.set_delay(Duration::from_millis(300));
    // PostgreSQL keeps the leases a dead process held (another replica might
    // be alive), so what was in flight waits for the lease (3 x timeout +
    // 15s) to expire: a short timeout keeps that wait short.
    let (storage, schema) = fresh_storage(db, dir.path()).await;
    let (delivery, recovery) = match db {
        Db::Sqlite => (
            "max_attempts: 10, retry_initial: 100ms, retry_max: 1s, timeout: 5s",
            Duration::from_secs(30),
        ),
        Db::Postgres => (
            "max_attempts: 10, retry_initial: 100ms, retry_max: 1s, timeout: 1s",
            Duration::from_secs(60),
        ),
    };
    let port = free_port();
    write_config(dir.path(), port, &storage, &fake, delivery);
    let mut first = Relay::start(dir.path(), port, "1", &http).await;

    // 40 webhooks of 5 new alerts each, from 8 concurrent senders. Those
    // cut off by the kill get no 200 and may or may not be stored.
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<BTreeMap<usize, Result<(), String>>>> = Arc::default();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (http, url, next, results) = (
            http.clone(),
            first.url.clone(),
            next.clone(),
            results.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= WEBHOOKS {
                    return;
                }
                let r = post_webhook(&http, &url, &webhook("CrashTest", &crash_instances(i))).await;
                results.lock().expect("results").insert(i, r);
                // Paced so that the kill usually lands while webhooks are
                // still coming in, not only while deliveries are.
                tokio::time::sleep(SENDER_PAUSE).await;
            }
        }));
    }

    // Deliveries are slow (300ms each, 8 at a time): kill once a few got
    // through, with most still queued or in flight.
    fake.wait_for_messages(3, Duration::from_secs(20)).await;
    first.kill9();
    let messages_before_kill = fake.messages().len();
    for s in senders {
        s.await.expect("sender task");
    }
    let results = results.lock().expect("results").clone();
    let accepted: BTreeSet<usize> = results
        .iter()
        .filter_map(|(i, r)| r.is_ok().then_some(*i))
        .collect();
    assert!(
        !accepted.is_empty(),
        "no webhook was accepted before the kill: {results:?}"
    );

    // Restart on the same database; the channel is fast now.
    fake.set_delay(Duration::ZERO);
    let second = Relay::start(dir.path(), port, "2", &http).await;

    // Every alert answered 200 is there, and a webhook is all or nothing.
    let alerts = list_all(&http, &second.url, "/api/v1/alerts?limit=500").await;
    let stored: BTreeMap<String, String> = alerts
        .iter()
        .map(|a| {
            (
                a["labels"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut committed = BTreeSet::new();
    for i in 0..WEBHOOKS {
        let present = crash_instances(i)
            .iter()
            .filter(|inst| stored.get(*inst).is_some_and(|s| s == "firing"))
            .count();
        assert!(
            present == 0 || present == PER_WEBHOOK,
            "webhook {i}: {present} of its {PER_WEBHOOK} alerts stored (one transaction per webhook expected)"
        );
        if present == PER_WEBHOOK {
            committed.insert(i);
        }
        if accepted.contains(&i) {
            assert_eq!(
                present, PER_WEBHOOK,
                "webhook {i} was answered 200 but its alerts are not all stored after kill -9; stored: {stored:?}"
            );
        }
    }

    // Every notification goes out: one per committed webhook, none failed.
    wait_outbox_empty(&http, &second, recovery).await;
    let sent = notifications(&http, &second, "sent").await;
    let failed = notifications(&http, &second, "failed").await;
    assert!(failed.is_empty(), "failed notifications: {failed:#?}");
    assert_eq!(
        sent.len(),
        committed.len(),
        "one sent notification per stored webhook ({} accepted, {} stored)",
        accepted.len(),
        committed.len()
    );

    // The chat heard about every stored webhook, all five alerts in one message.
    let msgs = fake.messages();
    let mut duplicates = 0;
    for i in &committed {
        let insts = crash_instances(*i);
        let complete = msgs
            .iter()
            .filter(|m| {
                insts
                    .iter()
                    .all(|inst| m.plain_text.contains(inst.as_str()))
            })
            .count();
        assert!(
            complete >= 1,
            "webhook {i} (accepted: {}) never reached the chat in one message; messages mentioning it: {:#?}",
            accepted.contains(i),
            msgs.iter()
                .filter(|m| m.plain_text.contains(insts[0].as_str()))
                .map(|m| &m.plain_text)
                .collect::<Vec<_>>()
        );
        duplicates += mentions(&msgs, &insts[0]) - 1;
    }
    assert!(
        fake.rejections().is_empty(),
        "Telegram refused: {:?}",
        fake.rejections()
    );
    eprintln!(
        "kill -9 ({db:?}): of {WEBHOOKS} webhooks {} answered 200, {} cut off by the kill, \
         {} not sent; {} stored; {messages_before_kill} message(s) by the kill, {} after \
         restart; {duplicates} duplicate message(s) (at-least-once); {:.1}s",
        accepted.len(),
        results.len() - accepted.len(),
        WEBHOOKS - results.len(),
        committed.len(),
        msgs.len() - messages_before_kill,
        started.elapsed().as_secs_f64()
    );
    drop(second);
    drop(first);
    drop(schema);
}

both_dbs!(kill_9_loses_nothing_answered_200);

// ------------------------------------------------------------ SIGTERM

/// Three single-alert webhooks, the first one's send in flight (or hanging)
/// at SIGTERM; returns the instances posted.
async fn post_three(http: &reqwest::Client, relay: &Relay, alertname: &str) -> Vec<String> {
    let instances: Vec<String> = (0..3).map(|i| format!("{alertname}-{i}:9100")).collect();
    for inst in &instances {
        post_webhook(
            http,
            &relay.url,
            &webhook(alertname, std::slice::from_ref(inst)),
        )
        .await
        .unwrap_or_else(|e| panic!("webhook for {inst}: {e}"));
    }
    instances
}

async fn wait_requests(fake: &FakeTelegram, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while fake.request_count() < n {
        if Instant::now() > deadline {
            panic!(
                "the fake Telegram got {} sendMessage request(s), expected {n}",
                fake.request_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// SIGTERM with a (2s) send in flight: it finishes, the process exits 0,
// and the two still queued go out after a restart, each exactly once.
both_dbs!(sigterm_finishes_the_send_in_flight_and_restart_sends_the_rest);
async fn sigterm_finishes_the_send_in_flight_and_restart_sends_the_rest(db: Db) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = client();
    let fake = FakeTelegram::start(TOKEN).await;
    fake.set_delay(Duration::from_secs(2));
    let port = free_port();
    // Kept until the end: dropped after the relays, it drops the schema.
    let (storage, _schema) = fresh_storage(db, dir.path()).await;
    write_config(
        dir.path(),
        port,
        &storage,
        &fake,
        "max_attempts: 10, retry_initial: 100ms, retry_max: 1s, timeout: 5s, concurrency: 1",
    );
    let mut first = Relay::start(dir.path(), port, "1", &http).await;
    let instances = post_three(&http, &first, "TermTest").await;
    wait_requests(&fake, 1, Duration::from_secs(10)).await;

    let (status, took) = first.terminate(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit after SIGTERM: {status}{}",
        first.dump()
    );
    let at_exit = fake.messages();
    assert_eq!(
        at_exit.len(),
        1,
        "the send in flight at SIGTERM (2s, under the 10s drain) completes before the exit, \
         and nothing new is started: {at_exit:#?}"
    );

    fake.set_delay(Duration::ZERO);
    let second = Relay::start(dir.path(), port, "2", &http).await;
    wait_outbox_empty(&http, &second, Duration::from_secs(30)).await;
    let sent = notifications(&http, &second, "sent").await;
    assert_eq!(sent.len(), 3, "{sent:#?}");
    let msgs = fake.messages();
    for inst in &instances {
        assert_eq!(
            mentions(&msgs, inst),
            1,
            "{inst} reaches the chat exactly once across a graceful restart: {:#?}",
            msgs.iter().map(|m| &m.plain_text).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "SIGTERM with a send in flight ({db:?}): exit 0 after {:.1}s; {:.1}s in all",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// SIGTERM while the channel hangs longer than the drain bound (10s): the
// process still exits 0 within ~15s, the send goes back to the queue and
// is delivered after a restart.
both_dbs!(sigterm_with_a_hanging_send_exits_within_the_drain_bound);
async fn sigterm_with_a_hanging_send_exits_within_the_drain_bound(db: Db) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = client();
    let fake = FakeTelegram::start(TOKEN).await;
    fake.fail_next(1, FakeFailure::Hang);
    let port = free_port();
    // Kept until the end: dropped after the relays, it drops the schema.
    let (storage, _schema) = fresh_storage(db, dir.path()).await;
    // A request timeout (30s) longer than the drain bound, so the drain is what ends it.
    write_config(
        dir.path(),
        port,
        &storage,
        &fake,
        "max_attempts: 10, retry_initial: 100ms, retry_max: 1s, timeout: 30s, concurrency: 1",
    );
    let mut first = Relay::start(dir.path(), port, "1", &http).await;
    let instances = post_three(&http, &first, "HangTest").await;
    wait_requests(&fake, 1, Duration::from_secs(10)).await;

    let (status, took) = first.terminate(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit after SIGTERM: {status}{}",
        first.dump()
    );
    assert!(fake.messages().is_empty(), "{:#?}", fake.messages());

    let second = Relay::start(dir.path(), port, "2", &http).await;
    wait_outbox_empty(&http, &second, Duration::from_secs(30)).await;
    let sent = notifications(&http, &second, "sent").await;
    assert_eq!(sent.len(), 3, "{sent:#?}");
    let failed = notifications(&http, &second, "failed").await;
    assert!(failed.is_empty(), "{failed:#?}");
    let msgs = fake.messages();
    for inst in &instances {
        assert_eq!(
            mentions(&msgs, inst),
            1,
            "{inst} reaches the chat exactly once: {:#?}",
            msgs.iter().map(|m| &m.plain_text).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "SIGTERM with a hanging send ({db:?}): exit 0 after {:.1}s; {:.1}s in all",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// SIGTERM while a webhook's body is still arriving: the request in
// progress is finished (200, stored) before the process exits 0.
both_dbs!(sigterm_finishes_a_webhook_in_progress);
async fn sigterm_finishes_a_webhook_in_progress(db: Db) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().expect("temp dir");
    let http = client();
    let fake = FakeTelegram::start(TOKEN).await;
    let port = free_port();
    // Kept until the end: dropped after the relays, it drops the schema.
    let (storage, _schema) = fresh_storage(db, dir.path()).await;
    write_config(
        dir.path(),
        port,
        &storage,
        &fake,
        "max_attempts: 10, retry_initial: 100ms, retry_max: 1s, timeout: 5s",
    );
    let mut first = Relay::start(dir.path(), port, "1", &http).await;

    // Headers and half the body, by hand, so the request is surely in progress.
    let instance = "mid-request:9100".to_string();
    let body = serde_json::to_vec(&webhook("MidRequest", std::slice::from_ref(&instance)))
        .expect("serialize the webhook");
    let head = format!(
        "POST /webhook/alertmanager HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to alertrelay");
    let half = body.len() / 2;
    conn.write_all(head.as_bytes()).await.expect("send headers");
    conn.write_all(&body[..half])
        .await
        .expect("send half the body");
    conn.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let rc = unsafe { libc::kill(first.pid(), libc::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM): {}", std::io::Error::last_os_error());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early_exit = first.child.try_wait().expect("try_wait");

    // The rest of the body; the answer must be a 200.
    let rest = conn.write_all(&body[half..]).await;
    let mut answer = String::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer)).await;
    assert!(
        early_exit.is_none(),
        "alertrelay exited ({early_exit:?}) with a webhook still in progress{}",
        first.dump()
    );
    rest.expect("send the rest of the body");
    assert!(read.is_ok(), "no answer within 10s after SIGTERM");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the webhook in progress at SIGTERM is answered 200, got:\n{answer}"
    );

    let (status, took) = first.terminate_wait(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit after SIGTERM: {status}{}",
        first.dump()
    );

    let second = Relay::start(dir.path(), port, "2", &http).await;
    let alerts = list_all(&http, &second.url, "/api/v1/alerts?limit=500").await;
    assert!(
        alerts
            .iter()
            .any(|a| a["labels"]["instance"] == instance.as_str()),
        "the webhook answered 200 during shutdown is stored: {alerts:#?}"
    );
    wait_outbox_empty(&http, &second, Duration::from_secs(30)).await;
    let msgs = fake.wait_for_messages(1, Duration::from_secs(10)).await;
    assert_eq!(mentions(&msgs, &instance), 1, "{msgs:#?}");
    eprintln!(
        "SIGTERM during a webhook ({db:?}): answered 200, exit 0 {:.1}s after the answer",
        took.as_secs_f64()
    );
}

//! End to end with the real Prometheus Alertmanager: alerts pushed into
//! Alertmanager's API v2 reach alertrelay through Alertmanager's own webhook
//! notifier, and from there the (fake) Telegram chat, once per change.
//!
//! Needs the Alertmanager binary (Debian package `prometheus-alertmanager`,
//! or `ALERTRELAY_ALERTMANAGER_BIN=PATH`, which is then the only place looked
//! at). Without it the test prints a SKIP line and passes, unless
//! `ALERTRELAY_REQUIRE_E2E=1` (CI), where a missing binary is a failure.
//!
//! Scenario (about 12s): DiskFull alone in its group, NodeDown a and b
//! together in another; c joins NodeDown later; Alertmanager re-sends the
//! unchanged DiskFull group (`repeat_interval: 2s` on its route); DiskFull
//! resolves, fires again (new startsAt) and resolves again. Exactly six
//! Telegram messages: DiskFull firing, NodeDown a+b in one, NodeDown c alone
//! (a and b counted, not listed), DiskFull resolved, firing, resolved.
//!
//! What real Alertmanager (0.25) does with the timings used here, as
//! observed: the first webhook of a group goes out `group_wait` (1s) after
//! its first alert arrived; alerts re-posted unchanged (as Prometheus does
//! every evaluation) cause no new webhook; a group whose alerts changed (a
//! new alert joined, or one resolved) is sent again, whole, on the next
//! `group_interval` tick (≤ 1s); an unchanged group is sent again only after
//! `repeat_interval` (on the first tick past it, so every 2–3s with
//! `repeat_interval: 2s`). Firing alerts carry `endsAt: 0001-01-01T00:00:00Z`
//! in the webhook; resolved ones the `endsAt` that was posted.

mod common;
#[allow(dead_code)]
#[path = "api/fake_slack.rs"]
mod fake_slack;
#[path = "api/fake_telegram.rs"]
mod fake_telegram;
#[allow(dead_code)]
#[path = "api/fake_wecom.rs"]
mod fake_wecom;
#[path = "api/smtp_server.rs"]
mod smtp_server;
#[allow(dead_code)]
#[path = "api/webhook_sink.rs"]
mod webhook_sink;

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use fake_telegram::{FakeTelegram, SentMessage};
use serde_json::{json, Value};

const CHAT: &str = "-100200";
const TOKEN: &str = "123:abc";

// ------------------------------------------------------------ processes

/// A child process killed (SIGKILL) when dropped; on a panic its log files
/// are printed so a failure explains itself.
struct Proc {
    name: &'static str,
    child: Child,
    logs: Vec<PathBuf>,
}

impl Proc {
    fn spawn(
        name: &'static str,
        cmd: &mut Command,
        stderr_log: PathBuf,
        logs: Vec<PathBuf>,
    ) -> Proc {
        let stderr = File::create(&stderr_log).expect("create the stderr log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("clone the log file handle"))
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let mut all = vec![stderr_log];
        all.extend(logs);
        Proc {
            name,
            child,
            logs: all,
        }
    }

    /// Every log of the process, for a failure message.
    fn dump(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"));
            out.push_str(&format!(
                "\n----- {} log {} -----\n{}\n----- end of {} -----\n",
                self.name,
                path.display(),
                text.trim_end(),
                path.display()
            ));
        }
        out
    }

    /// Panics (with the logs) if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}{}", self.name, self.dump());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        common::stop_child(&mut self.child);
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
        }
    }
}

use common::free_port;

/// Polls `url` until it answers 200, failing with the process's logs if it
/// dies or takes longer than `timeout`.
/// Waits for alertrelay, then starts a real Alertmanager posting to it and
/// waits for that too.
async fn relay_then_alertmanager(
    http: &reqwest::Client,
    relay_proc: &mut Proc,
    relay: &str,
    am_bin: &std::path::Path,
    dir: &std::path::Path,
) -> (Proc, String) {
    let ready = Duration::from_secs(30);
    wait_ready(http, relay_proc, &format!("{relay}/readyz"), ready).await;
    let (mut am_proc, am) = start_alertmanager(am_bin, dir, relay);
    wait_ready(http, &mut am_proc, &format!("{am}/-/ready"), ready).await;
    (am_proc, am)
}

async fn wait_ready(http: &reqwest::Client, proc: &mut Proc, url: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        proc.assert_running();
        if let Ok(r) = http.get(url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "{} not ready at {url} after {timeout:?}{}",
                proc.name,
                proc.dump()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it gives `Some`, or panics with `what` after `timeout`.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Alertmanager binary, or `None` (after a loud SKIP line) when it is not
/// installed and the environment does not require it.
fn alertmanager_binary() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("ALERTRELAY_ALERTMANAGER_BIN") {
        // An explicit choice: that file or nothing.
        candidates.push(PathBuf::from(p));
    } else {
        candidates.push(PathBuf::from("/usr/bin/prometheus-alertmanager"));
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                candidates.push(dir.join("prometheus-alertmanager"));
                candidates.push(dir.join("alertmanager"));
            }
        }
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    if std::env::var("ALERTRELAY_REQUIRE_E2E").as_deref() == Ok("1") {
        panic!(
            "ALERTRELAY_REQUIRE_E2E=1 but no Alertmanager binary was found \
             (looked at $ALERTRELAY_ALERTMANAGER_BIN if set, else /usr/bin/prometheus-alertmanager \
             and prometheus-alertmanager/alertmanager on PATH); install the Debian package \
             prometheus-alertmanager"
        );
    }
    // Straight to the stderr handle: the test harness captures eprintln! of
    // passing tests, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n\n*** SKIP e2e_alertmanager: no Alertmanager binary \
         (apt-get install prometheus-alertmanager, or set ALERTRELAY_ALERTMANAGER_BIN); \
         set ALERTRELAY_REQUIRE_E2E=1 to make this a failure ***\n\n"
    );
    None
}

fn start_alertrelay(dir: &Path, fake: &FakeTelegram) -> (Proc, String) {
    let channels = format!(
        "channels:\n\
         \x20 - name: oncall\n\
         \x20   type: telegram\n\
         \x20   bot_token: \"{token}\"\n\
         \x20   api_url: {api}\n\
         \x20   chat_ids: [{CHAT}]\n",
        token = fake.token(),
        api = fake.api_url(),
    );
    start_alertrelay_with(dir, &channels, &[])
}

/// alertrelay with `rest` of the config (channels, contacts, ...) and extra
/// environment variables.
fn start_alertrelay_with(dir: &Path, rest: &str, env: &[(&str, &str)]) -> (Proc, String) {
    let port = free_port();
    let config = dir.join("alertrelay.yml");
    let yaml = format!(
        "listen: 127.0.0.1:{port}\n\
         storage: sqlite://{db}\n\
         delivery: {{ max_attempts: 10, retry_initial: 100ms, retry_max: 1s, timeout: 5s }}\n\
         {rest}",
        db = dir.join("alertrelay.db").display(),
    );
    std::fs::write(&config, yaml).expect("write the alertrelay config");
    let log = dir.join("alertrelay.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_alertrelay"));
    cmd.arg("serve")
        .arg("-c")
        .arg(&config)
        .arg("-l")
        .arg(&log)
        .env("RUST_LOG", "info,alertrelay=debug,sqlx=warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc::spawn(
        "alertrelay",
        &mut cmd,
        dir.join("alertrelay.stderr"),
        vec![log],
    );
    (proc, format!("http://127.0.0.1:{port}"))
}

fn start_alertmanager(bin: &Path, dir: &Path, relay: &str) -> (Proc, String) {
    let port = free_port();
    let config = dir.join("alertmanager.yml");
    // DiskFull gets a short repeat_interval so that Alertmanager really sends
    // the same, unchanged firing group more than once.
    let yaml = format!(
        "route:\n\
         \x20 receiver: alertrelay\n\
         \x20 group_by: [alertname]\n\
         \x20 group_wait: 1s\n\
         \x20 group_interval: 1s\n\
         \x20 repeat_interval: 1h\n\
         \x20 routes:\n\
         \x20   - receiver: alertrelay\n\
         \x20     matchers: ['alertname=\"DiskFull\"']\n\
         \x20     repeat_interval: 2s\n\
         receivers:\n\
         \x20 - name: alertrelay\n\
         \x20   webhook_configs:\n\
         \x20     - url: {relay}/webhook/alertmanager\n\
         \x20       send_resolved: true\n"
    );
    std::fs::write(&config, yaml).expect("write the alertmanager config");
    let storage = dir.join("am-data");
    std::fs::create_dir_all(&storage).expect("create the alertmanager storage dir");
    let proc = Proc::spawn(
        "alertmanager",
        Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no cluster, no gossip port.
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug"),
        dir.join("alertmanager.log"),
        Vec::new(),
    );
    (proc, format!("http://127.0.0.1:{port}"))
}

// ------------------------------------------------------------ alerts

/// Wall-clock time (through alertrelay's `Clock`, as the lints ask):
/// Alertmanager compares the alerts' times with its own clock.
fn now() -> chrono::DateTime<Utc> {
    alertrelay::clock::Clock::system().now()
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An alert as Prometheus posts it to Alertmanager's API v2.
fn am_alert(name: &str, instance: &str, starts_at: &str, ends_at: &str) -> Value {
    json!({
        "labels": { "alertname": name, "instance": instance, "severity": "critical", "job": "node" },
        "annotations": { "summary": format!("{name} on {instance}") },
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prom/graph",
    })
}

async fn post_alerts(http: &reqwest::Client, am: &str, alerts: &[Value]) {
    let resp = http
        .post(format!("{am}/api/v2/alerts"))
        .json(&alerts)
        .send()
        .await
        .expect("POST to Alertmanager's /api/v2/alerts");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "Alertmanager refused the alerts: {body}");
}

async fn relay_alerts(http: &reqwest::Client, relay: &str) -> Vec<Value> {
    let body: Value = http
        .get(format!("{relay}/api/v1/alerts?limit=500"))
        .send()
        .await
        .expect("GET /api/v1/alerts")
        .json()
        .await
        .expect("/api/v1/alerts is JSON");
    body["items"].as_array().cloned().unwrap_or_default()
}

fn alert_named<'a>(alerts: &'a [Value], name: &str, instance: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == name && a["labels"]["instance"] == instance)
}

/// The sum of a metric's samples whose line starts with `prefix` (labels included).
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .expect("a text body")
}

fn describe(msgs: &[SentMessage]) -> String {
    msgs.iter()
        .map(|m| format!("  #{} to {}:\n{}\n", m.message_id, m.chat_id, m.plain_text))
        .collect()
}

fn is_firing(m: &SentMessage) -> bool {
    m.plain_text.starts_with("🔥 FIRING")
}

fn is_resolved(m: &SentMessage) -> bool {
    m.plain_text.starts_with("✅ RESOLVED")
}

// ------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_alertmanager_notifies_once_per_change() {
    let Some(am_bin) = alertmanager_binary() else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let fake = FakeTelegram::start(TOKEN).await;

    let (mut relay_proc, relay) = start_alertrelay(dir.path(), &fake);
    let (am_proc, am) =
        relay_then_alertmanager(&http, &mut relay_proc, &relay, &am_bin, dir.path()).await;

    // Like Prometheus: every firing alert is posted again each evaluation
    // (1s here), with endsAt a few minutes ahead.
    let start = rfc3339(now());
    let ends = rfc3339(now() + chrono::Duration::minutes(5));
    let disk = am_alert("DiskFull", "db1:9100", &start, &ends);
    let node_a = am_alert("NodeDown", "a:9100", &start, &ends);
    let node_b = am_alert("NodeDown", "b:9100", &start, &ends);
    let node_c = am_alert("NodeDown", "c:9100", &start, &ends);
    let firing = Arc::new(Mutex::new(vec![disk.clone(), node_a, node_b]));
    let stop = Arc::new(AtomicBool::new(false));
    let evaluator = {
        let (http, am, firing, stop) = (http.clone(), am.clone(), firing.clone(), stop.clone());
        tokio::spawn(async move {
            let mut posts = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let batch = firing.lock().expect("firing list").clone();
                post_alerts(&http, &am, &batch).await;
                posts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            posts
        })
    };

    // 1. DiskFull alone in its group; NodeDown a and b together in theirs.
    let msgs = fake.wait_for_messages(2, Duration::from_secs(20)).await;
    let disk_firing: Vec<&SentMessage> = msgs
        .iter()
        .filter(|m| m.plain_text.contains("DiskFull"))
        .collect();
    assert_eq!(
        disk_firing.len(),
        1,
        "one DiskFull message:\n{}",
        describe(&msgs)
    );
    let d = disk_firing[0];
    assert!(
        is_firing(d),
        "the DiskFull message starts with 🔥 FIRING:\n{}",
        d.plain_text
    );
    assert!(d.plain_text.contains("db1:9100"), "{}", d.plain_text);
    assert_eq!(d.chat_id, CHAT);
    let node: Vec<&SentMessage> = msgs
        .iter()
        .filter(|m| m.plain_text.contains("NodeDown"))
        .collect();
    assert_eq!(
        node.len(),
        1,
        "NodeDown a and b fired together in one Alertmanager group, so one message:\n{}",
        describe(&msgs)
    );
    let n = node[0];
    assert!(is_firing(n), "{}", n.plain_text);
    assert!(
        n.plain_text.contains("a:9100") && n.plain_text.contains("b:9100"),
        "the NodeDown message lists both instances:\n{}",
        n.plain_text
    );

    // Same identity on both sides: alertrelay keeps Alertmanager's
    // fingerprint, and its own hash of the labels (used when a source sends
    // none) is the same one.
    let am_alerts: Value = http
        .get(format!("{am}/api/v2/alerts"))
        .send()
        .await
        .expect("GET Alertmanager's /api/v2/alerts")
        .json()
        .await
        .expect("Alertmanager's alerts as JSON");
    let stored = relay_alerts(&http, &relay).await;
    for a in am_alerts.as_array().expect("a list of alerts") {
        let labels: alertrelay::model::alert::Labels =
            serde_json::from_value(a["labels"].clone()).expect("labels are strings");
        let fp = a["fingerprint"]
            .as_str()
            .expect("Alertmanager gives a fingerprint");
        assert_eq!(
            alertrelay::model::alert::Fingerprint::from_labels(&labels).as_str(),
            fp,
            "alertrelay hashes {labels:?} like Alertmanager"
        );
        let mine = alert_named(&stored, &labels["alertname"], &labels["instance"])
            .unwrap_or_else(|| panic!("{labels:?} is stored: {stored:#?}"));
        assert_eq!(mine["id"], fp, "{mine:#}");
    }

    // 2. c joins the NodeDown group: Alertmanager sends the whole group (a,
    // b, c) again; only c is news, a and b are only counted.
    firing.lock().expect("firing list").push(node_c);
    let batch = firing.lock().expect("firing list").clone();
    post_alerts(&http, &am, &batch).await;
    let msgs = fake.wait_for_messages(3, Duration::from_secs(20)).await;
    let late = &msgs[2];
    assert!(is_firing(late), "{}", describe(&msgs));
    assert!(
        late.plain_text.contains("c:9100")
            && !late.plain_text.contains("a:9100")
            && !late.plain_text.contains("b:9100"),
        "the late joiner's message lists c only (a and b were notified already):\n{}",
        late.plain_text
    );
    assert!(
        late.plain_text.contains("still firing"),
        "the late joiner's message counts the group's other firing alerts:\n{}",
        late.plain_text
    );

    // 3. Alertmanager re-sends the unchanged DiskFull group (repeat_interval
    // 2s): alertrelay records it as seen and says nothing.
    let resent = poll(
        "Alertmanager to send the DiskFull group to alertrelay a second time \
         (its last_seen moving past first_seen)",
        Duration::from_secs(15),
        || async {
            let alerts = relay_alerts(&http, &relay).await;
            let a = alert_named(&alerts, "DiskFull", "db1:9100")?;
            (a["last_seen"] != a["first_seen"]).then(|| a.clone())
        },
    )
    .await;
    assert_eq!(resent["status"], "firing", "{resent:#}");
    let disk_msgs = fake
        .messages()
        .into_iter()
        .filter(|m| m.plain_text.contains("DiskFull"))
        .count();
    assert_eq!(
        disk_msgs,
        1,
        "a re-sent firing group is not notified again:\n{}",
        describe(&fake.messages())
    );

    // 4. Resolve DiskFull, as Prometheus does: endsAt in the past.
    stop.store(true, Ordering::SeqCst);
    let evaluations = evaluator.await.expect("evaluator task");
    let mut resolved = disk.clone();
    resolved["endsAt"] = json!(rfc3339(now() - chrono::Duration::seconds(1)));
    post_alerts(&http, &am, &[resolved]).await;
    let msgs = fake.wait_for_messages(4, Duration::from_secs(20)).await;
    let r = &msgs[3];
    assert!(
        is_resolved(r),
        "the 4th message is the resolve:\n{}",
        describe(&msgs)
    );
    assert!(
        r.plain_text.contains("DiskFull") && r.plain_text.contains("db1:9100"),
        "{}",
        r.plain_text
    );

    let alerts = relay_alerts(&http, &relay).await;
    let d = alert_named(&alerts, "DiskFull", "db1:9100").expect("DiskFull is stored");
    assert_eq!(d["status"], "resolved", "{d:#}");

    // 5. DiskFull fires again (a new incident: a new startsAt) and resolves
    // again: one message each. Alertmanager dropped the resolved alert from
    // its group after notifying, so this is a new alert to it.
    let restart = rfc3339(now());
    let refire = am_alert("DiskFull", "db1:9100", &restart, &ends);
    post_alerts(&http, &am, std::slice::from_ref(&refire)).await;
    let msgs = fake.wait_for_messages(5, Duration::from_secs(20)).await;
    let f = &msgs[4];
    assert!(
        is_firing(f) && f.plain_text.contains("DiskFull"),
        "the 5th message is DiskFull firing again:\n{}",
        describe(&msgs)
    );
    let alerts = relay_alerts(&http, &relay).await;
    let d = alert_named(&alerts, "DiskFull", "db1:9100").expect("DiskFull is stored");
    assert_eq!(d["status"], "firing", "{d:#}");
    assert!(
        d["ends_at"].is_null(),
        "a new incident has no end yet: {d:#}"
    );
    let mut resolved = refire.clone();
    resolved["endsAt"] = json!(rfc3339(now() - chrono::Duration::milliseconds(500)));
    post_alerts(&http, &am, &[resolved]).await;
    let msgs = fake.wait_for_messages(6, Duration::from_secs(20)).await;
    assert!(
        is_resolved(&msgs[5]) && msgs[5].plain_text.contains("DiskFull"),
        "the 6th message is DiskFull resolved again:\n{}",
        describe(&msgs)
    );

    // 6. Nothing more comes: a few group_intervals and one DiskFull
    // repeat_interval later, still exactly these six messages.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let msgs = fake.messages();
    assert_eq!(msgs.len(), 6, "no further messages:\n{}", describe(&msgs));
    assert_eq!(
        msgs.iter()
            .filter(|m| m.plain_text.contains("DiskFull") && is_firing(m))
            .count(),
        2
    );
    assert_eq!(msgs.iter().filter(|m| is_resolved(m)).count(), 2);
    assert!(
        fake.rejections().is_empty(),
        "Telegram refused: {:?}",
        fake.rejections()
    );

    // 7. The stored state.
    let alerts = relay_alerts(&http, &relay).await;
    let d = alert_named(&alerts, "DiskFull", "db1:9100").expect("DiskFull is stored");
    assert_eq!(d["status"], "resolved", "{d:#}");
    assert_eq!(d["source"], "alertmanager", "{d:#}");
    assert!(!d["ends_at"].is_null(), "{d:#}");
    for inst in ["a:9100", "b:9100", "c:9100"] {
        let a = alert_named(&alerts, "NodeDown", inst)
            .unwrap_or_else(|| panic!("NodeDown {inst} stored: {alerts:#?}"));
        assert_eq!(a["status"], "firing", "{a:#}");
    }
    assert_eq!(alerts.len(), 4, "{alerts:#?}");

    // 8. Counters on both sides. alertrelay received: DiskFull at least
    // twice firing and once resolved, then once firing and once resolved
    // again; NodeDown {a,b} then {a,b,c}.
    let relay_metrics = get_text(&http, &format!("{relay}/metrics")).await;
    let received = metric_sum(
        &relay_metrics,
        "alertrelay_alerts_received_total{source=\"alertmanager\"}",
    );
    assert!(
        received >= 2.0,
        "alerts_received_total: {received}\n{relay_metrics}"
    );
    assert!(
        received >= 10.0,
        "expected >= 10 alerts received (2+ DiskFull firing, 1 resolved, 1 firing, 1 resolved, \
         2 + 3 NodeDown), got {received}"
    );
    let rejected = metric_sum(&relay_metrics, "alertrelay_webhooks_rejected_total");
    assert_eq!(
        rejected, 0.0,
        "alertrelay refused an Alertmanager webhook:\n{relay_metrics}"
    );
    let am_metrics = get_text(&http, &format!("{am}/metrics")).await;
    let am_sent = metric_sum(
        &am_metrics,
        "alertmanager_notifications_total{integration=\"webhook\"",
    );
    let am_failed = metric_sum(
        &am_metrics,
        "alertmanager_notifications_failed_total{integration=\"webhook\"",
    );
    assert_eq!(
        am_failed, 0.0,
        "Alertmanager's webhook notifications failed:\n{am_metrics}"
    );
    assert!(
        am_sent >= 7.0,
        "Alertmanager sent {am_sent} webhooks, expected at least 7"
    );
    eprintln!(
        "e2e: {evaluations} evaluation posts to Alertmanager, {am_sent} Alertmanager webhooks, \
         {received} alerts received by alertrelay, 6 Telegram messages, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    drop(am_proc);
    drop(relay_proc);
}

/// The channels of issue 4 end to end: one real Alertmanager, one alert,
/// its firing and its resolve reach a real SMTP server (STARTTLS, AUTH,
/// recipients from the contact book), a WeCom robot, a Slack webhook and a
/// webhook receiver — each exactly once per change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_reaches_mail_wecom_slack_and_a_webhook() {
    let Some(am_bin) = alertmanager_binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let smtp = smtp_server::SmtpServer::start(
        smtp_server::SmtpMode::RequireStartTls,
        Some(("relay", "pw")),
    );
    let robot = fake_wecom::FakeWecom::start("e2e-key").await;
    let slack = fake_slack::FakeSlack::start().await;
    let sink = webhook_sink::WebhookSink::start().await;
    let rest = format!(
        "timezone: Asia/Shanghai\n\
         channels:\n\
         \x20 - {{ name: dba-mail, type: email, smtp: \"smtp://relay:pw@127.0.0.1:{smtp_port}\", starttls: required, from: \"Alerts <alerts@example.com>\", to_group: \"{{{{ labels.team }}}}\" }}\n\
         \x20 - {{ name: ops-wecom, type: wecom, webhook_url: \"{wecom}\" }}\n\
         \x20 - {{ name: uptime-slack, type: slack, webhook_url: \"{slack}\" }}\n\
         \x20 - {{ name: audit, type: webhook, url: \"{hook}\" }}\n\
         contacts:\n\
         \x20 - {{ name: Li Wei, email: li@example.com, groups: [dba] }}\n",
        smtp_port = smtp.port,
        wecom = robot.webhook_url(),
        slack = slack.webhook_url(),
        hook = sink.url(),
    );
    let ca = smtp_server::ca_file();
    let ca = ca.to_str().expect("utf-8 path");
    let (mut relay_proc, relay) =
        start_alertrelay_with(dir.path(), &rest, &[("SSL_CERT_FILE", ca)]);
    let (mut am_proc, am) =
        relay_then_alertmanager(&http, &mut relay_proc, &relay, &am_bin, dir.path()).await;

    let start = now();
    let mut disk = am_alert(
        "DiskFull",
        "db1:9100",
        &rfc3339(start),
        &rfc3339(start + chrono::Duration::minutes(5)),
    );
    disk["labels"]["team"] = json!("dba");
    post_alerts(&http, &am, std::slice::from_ref(&disk)).await;

    let wait = Duration::from_secs(20);
    let mail = smtp.wait_for(1, wait).await;
    let wecom = robot.wait_for(1, wait).await;
    let posts = slack.wait_for(1, wait).await;
    let hooks = sink.wait_for(1, wait).await;
    assert!(mail[0].tls && mail[0].auth_user.as_deref() == Some("relay"));
    assert_eq!(mail[0].rcpt_tos, ["li@example.com"]);
    assert!(
        mail[0]
            .data
            .contains("Subject: [FIRING] critical DiskFull on db1:9100"),
        "{}",
        mail[0].data
    );
    assert!(
        wecom[0].contains("FIRING") && wecom[0].contains("**DiskFull**"),
        "{}",
        wecom[0]
    );
    assert_eq!(posts[0].body["text"], "🔥 FIRING: DiskFull on db1:9100");
    assert_eq!(hooks[0].body["status"], "firing");
    assert_eq!(hooks[0].body["alerts"][0]["labels"]["team"], "dba");

    // Resolved (as Prometheus does: endsAt now), once everywhere.
    let mut resolved = disk.clone();
    resolved["endsAt"] = json!(rfc3339(now()));
    post_alerts(&http, &am, &[resolved]).await;
    let mail = smtp.wait_for(2, wait).await;
    let wecom = robot.wait_for(2, wait).await;
    let posts = slack.wait_for(2, wait).await;
    let hooks = sink.wait_for(2, wait).await;
    assert!(
        mail[1]
            .data
            .contains("Subject: [RESOLVED] critical DiskFull on db1:9100"),
        "{}",
        mail[1].data
    );
    assert!(
        wecom[1].contains("RESOLVED") && wecom[1].contains("lasted"),
        "{}",
        wecom[1]
    );
    assert!(posts[1].body["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("✅ RESOLVED"));
    assert_eq!(posts[1].body["attachments"][0]["color"], "#2e7d32");
    assert_eq!(hooks[1].body["status"], "resolved");
    // Nothing more arrives: one message per change per channel.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (
            smtp.received().len(),
            robot.accepted().len(),
            slack.accepted().len(),
            sink.received().len()
        ),
        (2, 2, 2, 2)
    );
    relay_proc.assert_running();
    am_proc.assert_running();
}

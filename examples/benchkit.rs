//! Tools for `scripts/bench` (not part of alertrelay):
//!
//! - `baseline`: the least a durable webhook receiver can do — parse the
//!   Alertmanager payload, hand it to one SQLite writer thread that commits
//!   everything queued in one transaction (WAL, synchronous=FULL), answer.
//!   alertrelay is measured as a ratio of this, in the same run.
//! - `fake-telegram`: a Bot API stand-in that answers sendMessage at once and
//!   records when each benchmark alert arrived.
//! - `paced`: sends webhooks of 10 new alerts at a fixed rate, records when
//!   each was answered 200, then asks the fake when each alert arrived and
//!   prints the delivery latency (answer -> channel request) percentiles.
//!
//! Usage: see `scripts/bench`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

fn now_ns() -> u128 {
    #[allow(clippy::disallowed_methods)] // benchmark clock, not product logic
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match args.get(1).map(String::as_str) {
        Some("baseline") => {
            baseline(
                arg("--db").unwrap_or_else(|| "baseline.db".into()),
                arg("--listen").unwrap_or_else(|| "127.0.0.1:19300".into()),
            )
            .await
        }
        Some("fake-telegram") => {
            fake_telegram(arg("--listen").unwrap_or_else(|| "127.0.0.1:19301".into())).await
        }
        Some("paced") => {
            paced(
                arg("--url").unwrap_or_else(|| "http://127.0.0.1:9099/webhook/alertmanager".into()),
                arg("--fake").unwrap_or_else(|| "http://127.0.0.1:19301".into()),
                arg("--rate").and_then(|r| r.parse().ok()).unwrap_or(1000),
                arg("--seconds").and_then(|r| r.parse().ok()).unwrap_or(10),
            )
            .await
        }
        _ => {
            eprintln!("usage: benchkit baseline --db FILE --listen ADDR | fake-telegram --listen ADDR | paced --url URL --fake URL --rate ALERTS_PER_S --seconds N");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------- baseline

#[derive(Deserialize)]
struct Payload {
    alerts: Vec<PayloadAlert>,
}

#[derive(Deserialize)]
struct PayloadAlert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
}

type Job = (Vec<PayloadAlert>, oneshot::Sender<Result<usize, String>>);

fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

async fn baseline(db: String, listen: String) {
    let (tx, mut rx) = mpsc::channel::<Job>(4096);
    std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(&db).expect("open db");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS alerts (fingerprint TEXT PRIMARY KEY, status TEXT NOT NULL, labels TEXT NOT NULL,
               annotations TEXT NOT NULL, starts_at TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL);",
        )
        .expect("schema");
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while let Ok(job) = rx.try_recv() {
                batch.push(job);
            }
            let now = now_ns() as i64;
            let result = (|| -> rusqlite::Result<()> {
                let tx = conn.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO alerts (fingerprint, status, labels, annotations, starts_at, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                         ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, labels = excluded.labels,
                         annotations = excluded.annotations, starts_at = excluded.starts_at, last_seen = excluded.last_seen",
                    )?;
                    for (alerts, _) in &batch {
                        for a in alerts {
                            let labels = serde_json::to_string(&a.labels).unwrap_or_default();
                            let annotations =
                                serde_json::to_string(&a.annotations).unwrap_or_default();
                            stmt.execute(rusqlite::params![
                                fingerprint(&a.labels),
                                a.status,
                                labels,
                                annotations,
                                a.starts_at,
                                now
                            ])?;
                        }
                    }
                }
                tx.commit()
            })();
            for (alerts, reply) in batch {
                let _ = reply.send(
                    result
                        .as_ref()
                        .map(|_| alerts.len())
                        .map_err(|e| e.to_string()),
                );
            }
        }
    });
    let app = Router::new().route(
        "/webhook/alertmanager",
        post(
            |State(tx): State<mpsc::Sender<Job>>, body: axum::body::Bytes| async move {
                let payload: Payload = match serde_json::from_slice(&body) {
                    Ok(p) => p,
                    Err(e) => {
                        return (
                            StatusCode::BAD_REQUEST,
                            Json(json!({"error": e.to_string()})),
                        )
                    }
                };
                let (reply, wait) = oneshot::channel();
                if tx.send((payload.alerts, reply)).await.is_err() {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(json!({"error": "writer gone"})),
                    );
                }
                match wait.await {
                    Ok(Ok(n)) => (StatusCode::OK, Json(json!({"status": "ok", "accepted": n}))),
                    _ => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(json!({"error": "not stored"})),
                    ),
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    eprintln!("baseline listening on {listen}");
    axum::serve(listener, app.with_state(tx))
        .await
        .expect("serve");
}

// ----------------------------------------------------------- fake telegram

#[derive(Default)]
struct Arrivals {
    /// bench id -> arrival time (ns since epoch)
    by_id: HashMap<u64, u128>,
    messages: u64,
}

async fn fake_telegram(listen: String) {
    let state = Arc::new(Mutex::new(Arrivals::default()));
    let app = Router::new()
        .route(
            "/{bot}/sendMessage",
            post(|State(s): State<Arc<Mutex<Arrivals>>>, Json(body): Json<Value>| async move {
                let at = now_ns();
                let text = body["text"].as_str().unwrap_or("");
                let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
                st.messages += 1;
                for part in text.split("bench-id=").skip(1) {
                    let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(id) = digits.parse::<u64>() {
                        st.by_id.entry(id).or_insert(at);
                    }
                }
                Json(json!({"ok": true, "result": {"message_id": st.messages, "date": 0, "chat": {"id": 1, "type": "group"}}}))
            }),
        )
        .route(
            "/stats",
            get(|State(s): State<Arc<Mutex<Arrivals>>>| async move {
                let st = s.lock().unwrap_or_else(|p| p.into_inner());
                let by_id: HashMap<String, String> = st.by_id.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                Json(json!({"messages": st.messages, "arrivals": by_id}))
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    eprintln!("fake telegram listening on {listen}");
    axum::serve(listener, app).await.expect("serve");
}

// ------------------------------------------------------------------- paced

async fn paced(url: String, fake: String, rate: u64, seconds: u64) {
    let http = reqwest::Client::new();
    let per_request = 10u64;
    let requests = rate * seconds / per_request;
    let interval = Duration::from_nanos(1_000_000_000 * per_request / rate.max(1));
    let answered: Arc<Mutex<HashMap<u64, u128>>> = Arc::default();
    let run = now_ns() as u64 % 1_000_000;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..requests {
        let due = start + interval * r as u32;
        tokio::time::sleep_until(due.into()).await;
        let http = http.clone();
        let url = url.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let id = run * 1_000_000 + r;
            let alerts: Vec<Value> = (0..per_request)
                .map(|i| {
                    json!({"status": "firing",
                       "labels": {"alertname": "BenchPaced", "instance": format!("p{run}-{r}-{i}:9100"), "severity": "warning"},
                       "annotations": {"summary": format!("bench-id={id}")},
                       "startsAt": "2026-11-22T10:00:00Z"})
                })
                .collect();
            let body = json!({"version": "4", "status": "firing", "alerts": alerts});
            let resp = http.post(&url).json(&body).send().await;
            if resp.map(|r| r.status().is_success()).unwrap_or(false) {
                answered.lock().unwrap_or_else(|p| p.into_inner()).insert(id, now_ns());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let sent_for = start.elapsed();
    let ok = answered.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Wait for the channel to have received every answered request.
    let deadline = Instant::now() + Duration::from_secs(30);
    let arrivals: HashMap<u64, u128> = loop {
        let stats: Value = match http.get(format!("{fake}/stats")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let map: HashMap<u64, u128> = stats["arrivals"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        if ok.keys().all(|k| map.contains_key(k)) || Instant::now() > deadline {
            break map;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut lat: Vec<f64> = ok
        .iter()
        .filter_map(|(id, answered_at)| {
            arrivals
                .get(id)
                .map(|arr| (*arr as f64 - *answered_at as f64) / 1e6)
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        lat[((lat.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "paced: {} requests ({} alerts) at {} alerts/s in {:.1}s; answered {}; delivered {}; delivery latency ms p50 {:.2} p99 {:.2} max {:.2}",
        requests,
        requests * per_request,
        rate,
        sent_for.as_secs_f64(),
        ok.len(),
        lat.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

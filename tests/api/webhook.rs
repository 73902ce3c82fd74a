//! The `webhook` channel: the documented JSON body, any 2xx is success,
//! retries on 5xx and 429 (Retry-After honoured), a 4xx is kept as failed.

use std::time::Duration;

use serde_json::json;

use crate::both_dbs;
use crate::helpers::{am_alert, am_payload, Db, TestApp, FAST_DELIVERY};
use crate::webhook_sink::WebhookSink;

const WAIT: Duration = Duration::from_secs(10);

fn webhook_app_yaml(sink: &WebhookSink) -> String {
    format!(
        "{FAST_DELIVERY}public_url: https://alerts.example.com\nchannels:\n  - name: audit\n    type: webhook\n    url: \"{}\"\n    headers:\n      Authorization: Bearer hook-token\n      X-Team: ops\n",
        sink.url()
    )
}

async fn firing_and_resolved_arrive_as_documented_json(db: Db) {
    let sink = WebhookSink::start().await;
    let app = TestApp::spawn(db, &webhook_app_yaml(&sink)).await;
    let mut a = am_alert("DiskFull", "db1:9100", "firing");
    a["annotations"]["description"] = json!("<b>97%</b> & rising \"fast\" — 磁盘已满");
    let b = am_alert("DiskFull", "db2:9100", "firing");
    app.post_ok(&am_payload(vec![a, b])).await;
    // Alertmanager re-sends the whole group: db1 resolved, db2 still firing.
    app.post_ok(&am_payload(vec![
        am_alert("DiskFull", "db1:9100", "resolved"),
        am_alert("DiskFull", "db2:9100", "firing"),
    ]))
    .await;
    let got = sink.wait_for(2, WAIT).await;

    let first = &got[0];
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.headers["authorization"], "Bearer hook-token");
    assert_eq!(first.headers["x-team"], "ops");
    let body = &first.body;
    assert_eq!(body["version"], "1");
    assert_eq!(body["channel"], "audit");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["others_firing"], 0);
    assert_eq!(body["common_labels"]["alertname"], "DiskFull");
    assert!(body["common_labels"].get("instance").is_none());
    let alerts = body["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["labels"]["instance"], "db1:9100");
    assert_eq!(
        alerts[0]["annotations"]["description"],
        "<b>97%</b> & rising \"fast\" — 磁盘已满"
    );
    assert_eq!(alerts[0]["source"], "alertmanager");
    assert_eq!(alerts[0]["starts_at"], "2026-11-22T02:00:00Z");
    assert!(alerts[0]["ends_at"].is_null());
    assert_eq!(
        alerts[0]["generator_url"],
        "http://prometheus:9090/graph?g0.expr=up%3D%3D0"
    );
    let fp = alerts[0]["fingerprint"].as_str().expect("fingerprint");
    assert_eq!(
        alerts[0]["url"],
        format!("https://alerts.example.com/alerts/{fp}")
    );
    assert_eq!(
        app.alerts().await.iter().filter(|a| a["id"] == fp).count(),
        1
    );

    let second = &got[1].body;
    assert_eq!(second["status"], "resolved");
    assert_eq!(second["alerts"][0]["fingerprint"], fp);
    assert_eq!(second["alerts"][0]["ends_at"], "2026-11-22T02:12:00Z");
    assert_eq!(second["others_firing"], 1, "db2 still fires");
    let sent = app.wait_notifications("sent", 2, WAIT).await;
    assert!(sent.iter().all(|n| n["destination"] == "url"), "{sent:?}");
}
both_dbs!(firing_and_resolved_arrive_as_documented_json);

async fn server_errors_and_429_are_retried_and_delivered(db: Db) {
    let sink = WebhookSink::start().await;
    sink.answer_next(1, 503, None, "upstream down");
    sink.answer_next(1, 429, Some(1), "slow down");
    let app = TestApp::spawn(db, &webhook_app_yaml(&sink)).await;
    app.post_ok(&am_payload(vec![am_alert("Down", "web1:80", "firing")]))
        .await;
    let got = sink.wait_for(3, WAIT).await;
    // The 429's Retry-After (1 s) wins over the 50 ms backoff.
    assert!(
        got[2].at.duration_since(got[1].at) >= Duration::from_millis(950),
        "came back after {:?}",
        got[2].at.duration_since(got[1].at)
    );
    assert_eq!(got[0].body, got[2].body, "the same document each attempt");
    let sent = app.wait_notifications("sent", 1, WAIT).await;
    assert_eq!(sent[0]["attempts"], 3);
}
both_dbs!(server_errors_and_429_are_retried_and_delivered);

#[tokio::test]
async fn a_refusing_receiver_fails_at_once_and_the_url_secret_stays_out_of_the_error() {
    let sink = WebhookSink::start().await;
    sink.answer_next(1, 400, None, "missing field team");
    let app = TestApp::spawn(Db::Sqlite, &webhook_app_yaml(&sink)).await;
    app.post_ok(&am_payload(vec![am_alert("Down", "web1:80", "firing")]))
        .await;
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(failed[0]["attempts"], 1, "a 400 is not retried");
    let err = failed[0]["last_error"].as_str().expect("error");
    assert_eq!(err, "webhook: HTTP 400: missing field team");
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_then_failed_without_leaking_the_url() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - name: audit\n    type: webhook\n    url: \"http://127.0.0.1:{port}/hook?token=s3cr3t-query-token\"\n"
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("Down", "web1:80", "firing")]))
        .await;
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(failed[0]["attempts"], 3, "max_attempts");
    let err = failed[0]["last_error"].as_str().expect("error");
    assert!(err.starts_with("webhook: cannot connect"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(!metrics.contains("s3cr3t"));
}

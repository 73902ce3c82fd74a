//! /api/v1 lists and filters, access rules, health and metrics.

use serde_json::{json, Value};

use crate::both_dbs;
use crate::helpers::{am_alert, am_payload, Db, TestApp};

async fn seed(app: &TestApp) {
    let mut a = am_alert("DiskFull", "db1:9100", "firing");
    a["annotations"]["description"] = json!("Volume /var at 97% (needle-xyz)");
    let mut b = am_alert("DiskFull", "db2:9100", "firing");
    b["labels"]["severity"] = json!("warning");
    let c = am_alert("NodeDown", "web1:9100", "firing");
    app.post_ok(&am_payload(vec![a, b])).await;
    app.post_ok(&am_payload(vec![c])).await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web1:9100",
        "resolved",
    )]))
    .await;
}

fn instances(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["labels"]["instance"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

async fn alerts_filter_like_the_page(db: Db) {
    let app = TestApp::spawn(db, "").await;
    seed(&app).await;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("", vec!["db1:9100", "db2:9100", "web1:9100"]),
        ("status=firing", vec!["db1:9100", "db2:9100"]),
        ("status=resolved", vec!["web1:9100"]),
        ("severity=warning", vec!["db2:9100"]),
        ("alertname=DiskFull", vec!["db1:9100", "db2:9100"]),
        ("instance=web1:9100", vec!["web1:9100"]),
        (
            "source=alertmanager",
            vec!["db1:9100", "db2:9100", "web1:9100"],
        ),
        ("source=gcp", vec![]),
        ("q=needle-xyz", vec!["db1:9100"]),
        ("q=NEEDLE-XYZ", vec!["db1:9100"]),
        ("q=97%25", vec!["db1:9100"]),
        ("q=9_%25", vec![]),
        (
            "since=2000-01-01T00:00:00Z",
            vec!["db1:9100", "db2:9100", "web1:9100"],
        ),
        ("until=2000-01-01T00:00:00Z", vec![]),
        ("status=firing&severity=critical", vec!["db1:9100"]),
    ];
    for (query, expect) in cases {
        let (status, body) = app.get_json(&format!("/api/v1/alerts?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(instances(&body), expect, "{query}");
        assert_eq!(body["next_cursor"], Value::Null);
    }
    // Events use the same filters.
    let (_, events) = app.get_json("/api/v1/events?alertname=NodeDown").await;
    let statuses: Vec<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, vec!["resolved", "firing"]);
    let (_, events) = app
        .get_json("/api/v1/events?status=firing&severity=warning")
        .await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(1));
}
both_dbs!(alerts_filter_like_the_page);

async fn pages_walk_every_alert_once(db: Db) {
    let app = TestApp::spawn(db, "").await;
    let alerts: Vec<Value> = (0..23)
        .map(|i| am_alert("Many", &format!("h{i:02}:1"), "firing"))
        .collect();
    app.post_ok(&am_payload(alerts)).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/alerts?limit=5&cursor={c}"),
            None => "/api/v1/alerts?limit=5".to_string(),
        };
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        seen.extend(instances(&body));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 23);
    let (_, events) = app.get_json("/api/v1/events?limit=20").await;
    let c = events["next_cursor"].as_str().expect("more events");
    let (_, rest) = app
        .get_json(&format!("/api/v1/events?limit=20&cursor={c}"))
        .await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(3));
}
both_dbs!(pages_walk_every_alert_once);

#[tokio::test]
async fn one_alert_with_its_events() {
    let app = TestApp::spawn(Db::Sqlite, "").await;
    seed(&app).await;
    let id = app
        .alerts()
        .await
        .iter()
        .find(|a| a["labels"]["instance"] == "web1:9100")
        .expect("web1")["id"]
        .clone();
    let (status, body) = app
        .get_json(&format!("/api/v1/alerts/{}", id.as_str().expect("id")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "resolved");
    let statuses: Vec<&str> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, vec!["resolved", "firing"]);
    let (status, body) = app.get_json("/api/v1/alerts/0000000000000000").await;
    assert_eq!(status, 404);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("no alert")));
}

#[tokio::test]
async fn bad_query_parameters_are_400_with_a_reason() {
    let app = TestApp::spawn(Db::Sqlite, "").await;
    for (query, needle) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("status=burning", "status"),
        ("source=nagios", "source"),
        ("since=yesterday", "since"),
        (
            "since=2026-11-22T10:00:00Z&until=2026-11-21T10:00:00Z",
            "since is after until",
        ),
        ("cursor=garbage", "cursor"),
        ("sevrity=critical", "unknown query parameter `sevrity`"),
    ] {
        let (status, body) = app.get_json(&format!("/api/v1/alerts?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(needle)),
            "{query}: {body}"
        );
    }
    let (status, _) = app.get_json("/api/v1/notifications?state=lost").await;
    assert_eq!(status, 400);
    let (status, body) = app.get_json("/api/v1/alerts?limit=500").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn api_tokens_guard_the_api_but_not_health() {
    let app = TestApp::spawn(Db::Sqlite, "ui:\n  api_tokens: [\"api-tok\"]\n").await;
    let (status, body) = app.get_json("/api/v1/alerts").await;
    assert_eq!(status, 401);
    assert!(body["error"].is_string());
    let (status, _) = app
        .get_json_auth("/api/v1/alerts", Some("Bearer nope"))
        .await;
    assert_eq!(status, 401);
    let (status, _) = app
        .get_json_auth("/api/v1/events", Some("Bearer api-tok"))
        .await;
    assert_eq!(status, 200);
    // Ingest has no credentials and listens on loopback: open.
    app.post_ok(&am_payload(vec![am_alert("A", "a:1", "firing")]))
        .await;
    assert_eq!(app.get_json("/healthz").await.0, 200);
    assert_eq!(app.get_json("/readyz").await.0, 200);
    let (status, metrics) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("alertrelay_alerts_received_total{source=\"alertmanager\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ui_users_log_in_to_the_api_with_basic_auth() {
    let hash = alertrelay::auth::hash_password("correct horse").expect("hash");
    let app = TestApp::spawn(
        Db::Sqlite,
        &format!("ui:\n  users:\n    - {{ username: admin, password_hash: \"{hash}\" }}\n"),
    )
    .await;
    use base64::Engine;
    let basic = |p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{p}"))
        )
    };
    assert_eq!(
        app.get_json_auth("/api/v1/alerts", Some(&basic("correct horse")))
            .await
            .0,
        200
    );
    assert_eq!(
        app.get_json_auth("/api/v1/alerts", Some(&basic("wrong")))
            .await
            .0,
        401
    );
    assert_eq!(app.get_json("/api/v1/alerts").await.0, 401);
}

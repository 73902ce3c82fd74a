//! POST /webhook/alertmanager: what is stored, what is refused, and dedup.

use serde_json::{json, Value};

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

async fn firing_alert_is_stored_with_an_event(db: Db) {
    let app = TestApp::spawn(db, "").await;
    app.post_ok(&am_payload(vec![am_alert(
        "DiskFull", "db1:9100", "firing",
    )]))
    .await;

    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["source"], "alertmanager");
    assert_eq!(a["labels"]["alertname"], "DiskFull");
    assert_eq!(a["annotations"]["summary"], "DiskFull on db1:9100");
    assert_eq!(a["starts_at"], "2026-11-22T02:00:00Z");
    assert_eq!(a["ends_at"], Value::Null);
    assert_eq!(a["ack"], Value::Null);
    assert_eq!(a["silenced"], false);
    assert_eq!(a["id"], a["fingerprint"]);
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "firing");
    assert_eq!(events[0]["alertname"], "DiskFull");
}
both_dbs!(firing_alert_is_stored_with_an_event);

async fn resends_are_seen_not_notified_and_resolve_is_notified_once(db: Db) {
    let tg = FakeTelegram::start("123:abc").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &tg, &["-100200"])
    );
    let app = TestApp::spawn(db, &yaml).await;
    let firing = am_payload(vec![am_alert("DiskFull", "db1:9100", "firing")]);
    for _ in 0..5 {
        app.post_ok(&firing).await;
    }
    let resolved = am_payload(vec![am_alert("DiskFull", "db1:9100", "resolved")]);
    for _ in 0..3 {
        app.post_ok(&resolved).await;
    }
    // A late re-send of the finished incident changes nothing.
    app.post_ok(&firing).await;

    let sent = app
        .wait_notifications("sent", 2, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(sent.len(), 2);
    let msgs = tg
        .wait_for_messages(2, std::time::Duration::from_secs(5))
        .await;
    app.wait_idle().await;
    assert_eq!(
        tg.messages().len(),
        2,
        "exactly one firing and one resolved message: {:#?}",
        tg.messages()
    );
    assert!(
        msgs[0].plain_text.starts_with("🔥 FIRING"),
        "{}",
        msgs[0].plain_text
    );
    assert!(
        msgs[1].plain_text.starts_with("✅ RESOLVED"),
        "{}",
        msgs[1].plain_text
    );
    assert!(
        msgs[1].plain_text.contains("lasted 12m"),
        "{}",
        msgs[1].plain_text
    );

    let alerts = app.alerts().await;
    assert_eq!(alerts[0]["status"], "resolved");
    assert_eq!(alerts[0]["ends_at"], "2026-11-22T02:12:00Z");
    let statuses: Vec<Value> = app
        .events()
        .await
        .iter()
        .map(|e| e["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        vec![json!("resolved"), json!("firing")],
        "newest first"
    );
}
both_dbs!(resends_are_seen_not_notified_and_resolve_is_notified_once);

async fn a_new_incident_after_resolve_notifies_again(db: Db) {
    let tg = FakeTelegram::start("1:t").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &tg, &["42"])
    );
    let app = TestApp::spawn(db, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("Down", "web1:80", "firing")]))
        .await;
    app.post_ok(&am_payload(vec![am_alert("Down", "web1:80", "resolved")]))
        .await;
    let mut again = am_alert("Down", "web1:80", "firing");
    again["startsAt"] = json!("2026-11-22T05:00:00Z");
    app.post_ok(&am_payload(vec![again])).await;
    let msgs = tg
        .wait_for_messages(3, std::time::Duration::from_secs(10))
        .await;
    assert!(msgs[2].plain_text.starts_with("🔥 FIRING"));
    assert_eq!(app.alerts().await[0]["starts_at"], "2026-11-22T05:00:00Z");
    assert_eq!(app.events().await.len(), 3);
}
both_dbs!(a_new_incident_after_resolve_notifies_again);

/// Each refused request: its status, an error that says why, and nothing stored.
async fn bad_input_is_refused_and_changes_nothing(db: Db) {
    let yaml = "max_body_size: 65536\n";
    let app = TestApp::spawn(db, yaml).await;
    app.post_ok(&am_payload(vec![am_alert("Keep", "a:1", "firing")]))
        .await;
    let before = (app.alerts().await, app.events().await);

    let good =
        serde_json::to_vec(&am_payload(vec![am_alert("New", "b:1", "firing")])).expect("json");
    let huge = serde_json::to_vec(&am_payload(
        (0..400)
            .map(|i| am_alert("Big", &format!("h{i}:1"), "firing"))
            .collect(),
    ))
    .expect("json");
    assert!(huge.len() > 65536);
    /// (what, content type, body, expected status, words the error must contain)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", Some("application/json"), b"{\"alerts\": [".to_vec(), 400, "invalid"),
        ("not an object", Some("application/json"), b"[1,2,3]".to_vec(), 400, "invalid"),
        ("missing alerts", Some("application/json"), br#"{"version":"4"}"#.to_vec(), 400, "missing field `alerts`"),
        ("bad status", Some("application/json"), br#"{"alerts":[{"status":"on","labels":{"a":"b"},"startsAt":"2026-11-22T10:00:00Z"}]}"#.to_vec(), 400, "alerts[0].status"),
        ("missing startsAt", Some("application/json"), br#"{"alerts":[{"status":"firing","labels":{"a":"b"}}]}"#.to_vec(), 400, "startsAt"),
        ("label not a string", Some("application/json"), br#"{"alerts":[{"status":"firing","labels":{"a":5},"startsAt":"2026-11-22T10:00:00Z"}]}"#.to_vec(), 400, "alerts[0].labels.a"),
        ("wrong version", Some("application/json"), br#"{"version":"2","alerts":[]}"#.to_vec(), 400, "version"),
        ("empty body", Some("application/json"), Vec::new(), 400, "invalid"),
        ("not UTF-8", Some("application/json"), vec![0xff, 0xfe, 0x00], 400, "invalid"),
        ("text/plain", Some("text/plain"), good.clone(), 415, "application/json"),
        ("no content type", None, good.clone(), 415, "application/json"),
        ("form", Some("application/x-www-form-urlencoded"), good.clone(), 415, "application/json"),
        ("too large", Some("application/json"), huge, 413, "larger than the limit"),
    ];
    for (what, ct, body, status, needle) in cases {
        let resp = app.post_raw("/webhook/alertmanager", ct, None, body).await;
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|_| panic!("{what}: JSON error body"));
        let msg = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error field: {body}"));
        assert!(
            msg.contains(needle),
            "{what}: {msg:?} should mention {needle:?}"
        );
    }
    assert_eq!(
        (app.alerts().await, app.events().await),
        before,
        "refused requests changed nothing"
    );
    assert_eq!(
        app.metric("alertrelay_webhooks_rejected_total{source=\"alertmanager\",status=\"400\"}")
            .await,
        Some(9.0)
    );
}
both_dbs!(bad_input_is_refused_and_changes_nothing);

async fn credentials_are_required_when_configured(db: Db) {
    let yaml = "ingest:\n  tokens: [\"s3cret-token\"]\n  basic_auth:\n    - { username: gcp, password: \"pa:ss\" }\n";
    let app = TestApp::spawn(db, yaml).await;
    let body = serde_json::to_vec(&am_payload(vec![am_alert("A", "x:1", "firing")])).expect("json");
    let basic = |u: &str, p: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    for (auth, status) in [
        (None, 401),
        (Some("Bearer wrong".to_string()), 401),
        (Some("Bearer s3cret-token ".to_string()), 200),
        (Some("s3cret-token".to_string()), 401),
        (Some(basic("gcp", "wrong")), 401),
        (Some(basic("nobody", "pa:ss")), 401),
        (Some(basic("gcp", "pa:ss")), 200),
        (Some("Basic %%%".to_string()), 401),
    ] {
        let resp = app
            .post_raw(
                "/webhook/alertmanager",
                Some("application/json"),
                auth.as_deref(),
                body.clone(),
            )
            .await;
        assert_eq!(resp.status().as_u16(), status, "{auth:?}");
        if status == 401 {
            assert!(resp.headers().contains_key("www-authenticate"));
            let b: Value = resp.json().await.expect("json");
            assert!(b["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
    // 401 comes before content checks: an unauthenticated client learns nothing.
    let resp = app
        .post_raw(
            "/webhook/alertmanager",
            Some("text/plain"),
            None,
            b"x".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(app.alerts().await.len(), 1);
}
both_dbs!(credentials_are_required_when_configured);

#[tokio::test]
async fn many_concurrent_webhooks_are_all_stored() {
    let app = std::sync::Arc::new(TestApp::spawn(Db::Sqlite, "").await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let alerts = (0..10)
                .map(|j| am_alert("Storm", &format!("h{i}-{j}:1"), "firing"))
                .collect();
            app.post_ok(&am_payload(alerts)).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let (status, body) = app.get_json("/api/v1/alerts?limit=500").await;
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(500));
    let (_, next) = app
        .get_json(&format!(
            "/api/v1/alerts?limit=500&cursor={}",
            body["next_cursor"].as_str().expect("cursor")
        ))
        .await;
    assert_eq!(next["items"].as_array().map(Vec::len), Some(140));
    assert_eq!(next["next_cursor"], Value::Null);
    assert_eq!(
        app.metric("alertrelay_alerts_received_total{source=\"alertmanager\"}")
            .await,
        Some(640.0)
    );
}

/// The same new alert arriving on many connections at once (Alertmanager
/// replicas, retries) is one incident: one event, one notification.
async fn concurrent_copies_of_a_new_alert_notify_once(db: Db) {
    let tg = FakeTelegram::start("9:c").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &tg, &["5"])
    );
    let app = std::sync::Arc::new(TestApp::spawn(db, &yaml).await);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            // Each copy also carries an alert of its own so batches differ.
            let alerts = vec![
                am_alert("Same", "shared:1", "firing"),
                am_alert("Own", &format!("own{i}:1"), "firing"),
            ];
            app.post_ok(&am_payload(alerts)).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let events = app.events().await;
    assert_eq!(
        events.iter().filter(|e| e["alertname"] == "Same").count(),
        1,
        "one firing event"
    );
    assert_eq!(events.len(), 25);
    app.wait_notifications("sent", 24, std::time::Duration::from_secs(10))
        .await;
    let mentions = tg
        .messages()
        .iter()
        .filter(|m| m.plain_text.contains("shared:1"))
        .count();
    assert_eq!(mentions, 1, "the shared alert is announced once");
}
both_dbs!(concurrent_copies_of_a_new_alert_notify_once);

/// Dedup survives a restart: what is stored is known again (SQLite keeps its
/// fingerprint index in memory and rebuilds it from the table at start).
async fn a_restart_remembers_every_alert(db: Db) {
    let fake = FakeTelegram::start("3:restart").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &fake, &["1"])
    );
    let app = TestApp::spawn(db, &yaml).await;
    let alerts = vec![
        am_alert("DiskFull", "db1:9100", "firing"),
        am_alert("NodeDown", "web1:9100", "firing"),
    ];
    app.post_ok(&am_payload(alerts.clone())).await;
    fake.wait_for_messages(1, std::time::Duration::from_secs(10))
        .await;
    let before = app.alerts().await;
    let (dir, url, schema) = app.stop().await;

    let app = TestApp::spawn_with_storage(dir, url, schema, &yaml).await;
    app.post_ok(&am_payload(alerts)).await;
    let after = app.alerts().await;
    assert_eq!(
        after.len(),
        2,
        "no second row for a known alert: {after:#?}"
    );
    let mut ids: Vec<&Value> = after.iter().map(|a| &a["id"]).collect();
    let mut old: Vec<&Value> = before.iter().map(|a| &a["id"]).collect();
    ids.sort_by_key(|v| v.to_string());
    old.sort_by_key(|v| v.to_string());
    assert_eq!(ids, old);
    let id = after[0]["id"].as_str().unwrap_or_default().to_string();
    let (status, one) = app.get_json(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], id.as_str());
    let (_, events) = app.get_json("/api/v1/events?limit=50").await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(2),
        "{events}"
    );
    // Re-sent firing alerts are seen, not notified again.
    app.post_ok(&am_payload(vec![am_alert(
        "DiskFull", "db1:9100", "resolved",
    )]))
    .await;
    let msgs = fake
        .wait_for_messages(2, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(
        msgs.len(),
        2,
        "one firing message before, one resolved after"
    );
    assert!(
        msgs[1].plain_text.contains("RESOLVED"),
        "{}",
        msgs[1].plain_text
    );
    let (status, _) = app.get_json("/api/v1/alerts/0123456789abcdef").await;
    assert_eq!(status, 404);
}
both_dbs!(a_restart_remembers_every_alert);

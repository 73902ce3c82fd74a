//! Silences: the API, what a silenced alert does (stored, visible, not
//! notified), and what happens when the silence ends while it still fires.

use std::time::Duration;

use alertrelay::clock::Clock;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

fn yaml(fake: &FakeTelegram) -> String {
    format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", fake, &["42"])
    )
}

async fn post_silence(app: &TestApp, body: &Value) -> (u16, Value) {
    app.send_json("POST", "/api/v1/silences", Some(body)).await
}

async fn send(app: &TestApp, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    app.send_json(method, path, body).await
}

async fn alert_on(app: &TestApp, instance: &str) -> Value {
    app.alert_on(instance).await
}

async fn silence_api_checks_what_it_is_given(db: Db) {
    let fake = FakeTelegram::start("9:silence-api").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;

    // Bad requests: a clear 4xx each, and nothing stored.
    let bad: Vec<(Value, &str)> = vec![
        (json!({ "duration": "1h" }), "at least one matcher"),
        (
            json!({ "matchers": ["instance=~\"(\""], "duration": "1h" }),
            "matchers[0]",
        ),
        (
            json!({ "matchers": ["instance=~\".*\""] }),
            "silence everything",
        ),
        (
            json!({ "matchers": ["instance=\"db1\""], "duration": "soon" }),
            "duration",
        ),
        (
            json!({ "matchers": ["instance=\"db1\""], "duraton": "1h" }),
            "unknown field",
        ),
        (
            json!({ "matchers": ["instance=\"db1\""], "ends_at": "2001-01-01T00:00:00Z" }),
            "not in the future",
        ),
        (json!({ "matchers": "instance=\"db1\"" }), "not a silence"),
    ];
    for (body, says) in &bad {
        let (status, answer) = post_silence(&app, body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says),
            "{body}: {error:?} should say {says:?}"
        );
    }
    let resp = app
        .post_raw("/api/v1/silences", Some("text/plain"), None, b"{}".to_vec())
        .await;
    assert_eq!(resp.status(), 415);
    let (_, list) = app.get_json("/api/v1/silences").await;
    assert_eq!(list["items"], json!([]), "a refused silence is not stored");

    // A good one.
    let (status, created) = post_silence(
        &app,
        &json!({
            "matchers": ["instance=\"db1\"", "{severity=~\"crit.*\"}"],
            "duration": "2h",
            "comment": "disk swap",
            "created_by": "li",
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["matchers"],
        json!(["instance=\"db1\"", "severity=~\"crit.*\""])
    );
    assert_eq!(created["comment"], "disk swap");
    assert_eq!(created["created_by"], "li");
    assert_eq!(created["active"], true);
    let starts: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(created["starts_at"].clone()).expect("starts_at");
    let ends: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(created["ends_at"].clone()).expect("ends_at");
    assert_eq!(ends - starts, chrono::Duration::hours(2));

    // No end: until deleted; the author defaults to the caller.
    let (status, forever) =
        post_silence(&app, &json!({ "matchers": ["alertname=\"Flaky\""] })).await;
    assert_eq!(status, 201, "{forever}");
    assert_eq!(forever["ends_at"], Value::Null);
    assert_eq!(forever["created_by"], "anonymous");

    let (_, list) = app.get_json("/api/v1/silences").await;
    let ids: Vec<&Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids, vec![&forever["id"], &created["id"]], "newest first");
    let (status, page) = app.get_json("/api/v1/silences?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert!(page["next_cursor"].is_string());

    // Delete: bad id, unknown id, then the real one (twice).
    assert_eq!(
        send(&app, "DELETE", "/api/v1/silences/abc", None).await.0,
        400
    );
    assert_eq!(
        send(&app, "DELETE", "/api/v1/silences/999999", None)
            .await
            .0,
        404
    );
    let path = format!("/api/v1/silences/{}", forever["id"]);
    let (status, deleted) = send(&app, "DELETE", &path, None).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["active"], false);
    assert!(deleted["ends_at"].is_string(), "a deleted silence ends now");
    let (status, again) = send(&app, "DELETE", &path, None).await;
    assert_eq!(status, 404, "{again}");
    let (_, list) = app.get_json("/api/v1/silences").await;
    let active: Vec<bool> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["active"].as_bool().unwrap_or(true))
        .collect();
    assert_eq!(active, vec![false, true], "kept, as ended");
}
both_dbs!(silence_api_checks_what_it_is_given);

/// The edge: a silence that runs out while its alert still fires.
async fn a_silence_that_runs_out_while_its_alert_fires_notifies_it_then(db: Db) {
    let fake = FakeTelegram::start("9:silence-end").await;
    let clock = Clock::manual(Clock::system().now());
    let app = TestApp::spawn_with_clock(db, &yaml(&fake), clock.clone()).await;
    let (status, _) = post_silence(
        &app,
        &json!({ "matchers": ["instance=\"db1:9100\""], "duration": "10m" }),
    )
    .await;
    assert_eq!(status, 201);

    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "db1:9100", "firing"),
        am_alert("NodeDown", "db2:9100", "firing"),
    ]))
    .await;
    let first = fake.wait_for_messages(1, WAIT).await;
    assert!(
        first[0].plain_text.contains("db2:9100"),
        "{}",
        first[0].plain_text
    );
    assert!(
        !first[0].plain_text.contains("db1:9100"),
        "the silenced alert is not in the message: {}",
        first[0].plain_text
    );
    let db1 = alert_on(&app, "db1:9100").await;
    assert_eq!(db1["status"], "firing", "stored all the same");
    assert_eq!(db1["silenced"], true);
    assert_eq!(alert_on(&app, "db2:9100").await["silenced"], false);

    // A re-send inside the silence: still nothing.
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown", "db1:9100", "firing",
    )]))
    .await;
    app.wait_notifications("sent", 1, WAIT).await;
    clock.advance(chrono::Duration::minutes(9));
    clock.advance(chrono::Duration::minutes(1));
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert!(
        msgs[1].plain_text.contains("db1:9100"),
        "{}",
        msgs[1].plain_text
    );
    assert!(
        msgs[1].plain_text.contains("FIRING"),
        "{}",
        msgs[1].plain_text
    );
    assert_eq!(alert_on(&app, "db1:9100").await["silenced"], false);

    // Handled once: more time passing sends nothing more.
    app.wait_notifications("sent", 2, WAIT).await;
    clock.advance(chrono::Duration::minutes(5));
    app.post_ok(&am_payload(vec![am_alert("Canary", "c:1", "firing")]))
        .await;
    let msgs = fake.wait_for_messages(3, WAIT).await;
    assert!(msgs[2].plain_text.contains("Canary"), "{msgs:#?}");
    assert_eq!(fake.messages().len(), 3);
}
both_dbs!(a_silence_that_runs_out_while_its_alert_fires_notifies_it_then);

/// "Remove host": no end until deleted; what resolved meanwhile stays quiet,
/// what still fires is notified at the delete.
async fn deleting_a_silence_notifies_what_still_fires(db: Db) {
    let fake = FakeTelegram::start("9:silence-del").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    let (_, silence) = post_silence(
        &app,
        &json!({ "matchers": ["instance=~\"db[13]:9100\""], "comment": "remove host" }),
    )
    .await;
    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "db1:9100", "firing"),
        am_alert("NodeDown", "db3:9100", "firing"),
    ]))
    .await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown", "db1:9100", "resolved",
    )]))
    .await;
    assert_eq!(alert_on(&app, "db1:9100").await["status"], "resolved");
    let (status, _) = send(
        &app,
        "DELETE",
        &format!("/api/v1/silences/{}", silence["id"]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(
        msgs[0].plain_text.contains("db3:9100"),
        "{}",
        msgs[0].plain_text
    );
    assert!(
        !msgs[0].plain_text.contains("db1:9100"),
        "db1 resolved under the silence: nobody hears of it: {}",
        msgs[0].plain_text
    );
}
both_dbs!(deleting_a_silence_notifies_what_still_fires);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_holds_across_a_restart() {
    let fake = FakeTelegram::start("9:silence-restart").await;
    let app = TestApp::spawn(Db::Sqlite, &yaml(&fake)).await;
    let (status, _) = post_silence(
        &app,
        &json!({ "matchers": ["alertname=\"Noisy\""], "duration": "1h" }),
    )
    .await;
    assert_eq!(status, 201);
    let (dir, url, schema) = app.stop().await;
    let app = TestApp::spawn_with_storage(dir, url, schema, &yaml(&fake)).await;
    app.post_ok(&am_payload(vec![
        am_alert("Noisy", "n1:1", "firing"),
        am_alert("Real", "r1:1", "firing"),
    ]))
    .await;
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert!(
        msgs[0].plain_text.contains("Real"),
        "{}",
        msgs[0].plain_text
    );
    assert!(
        !msgs[0].plain_text.contains("Noisy"),
        "{}",
        msgs[0].plain_text
    );
    assert_eq!(alert_on(&app, "n1:1").await["silenced"], true);
}

/// A silence that ran out while alertrelay was stopped: its still-firing
/// alert is notified when the service is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_that_ends_while_stopped_is_handled_at_start() {
    let fake = FakeTelegram::start("9:silence-down").await;
    let clock = Clock::manual(Clock::system().now());
    let app = TestApp::spawn_with_clock(Db::Sqlite, &yaml(&fake), clock.clone()).await;
    let (status, _) = post_silence(
        &app,
        &json!({ "matchers": ["instance=\"db1:9100\""], "duration": "10m" }),
    )
    .await;
    assert_eq!(status, 201);
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown", "db1:9100", "firing",
    )]))
    .await;
    let (dir, url, schema) = app.stop().await;
    assert!(fake.messages().is_empty(), "silenced: nothing sent");
    clock.advance(chrono::Duration::minutes(15));
    let _app =
        TestApp::spawn_with_storage_and_clock(dir, url, schema, &yaml(&fake), clock.clone()).await;
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert!(
        msgs[0].plain_text.contains("db1:9100"),
        "{}",
        msgs[0].plain_text
    );
}

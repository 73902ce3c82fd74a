//! Acknowledgement: who took an alert, shown in the API and in every later
//! message about the incident; a new incident starts without.

use std::time::Duration;

use serde_json::{json, Value};

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

async fn ack(app: &TestApp, id: &str, body: &Value) -> (u16, Value) {
    app.send_json("POST", &format!("/api/v1/alerts/{id}/ack"), Some(body))
        .await
}

async fn alert_on(app: &TestApp, instance: &str) -> Value {
    app.alert_on(instance).await
}

async fn an_ack_shows_in_the_api_and_in_later_messages_until_a_new_incident(db: Db) {
    let fake = FakeTelegram::start("9:ack").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &fake, &["42"])
    );
    let app = TestApp::spawn(db, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert(
        "DiskFull", "db1:9100", "firing",
    )]))
    .await;
    fake.wait_for_messages(1, WAIT).await;
    let id = alert_on(&app, "db1:9100").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(alert_on(&app, "db1:9100").await["ack"], Value::Null);

    // Bad requests change nothing.
    assert_eq!(
        ack(&app, "0000000000000000", &json!({"memo": "x"})).await.0,
        404
    );
    let (status, body) = ack(&app, &id, &json!({"memo": "x", "who": "li"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field"),
        "{body}"
    );
    let resp = app
        .post_raw(
            &format!("/api/v1/alerts/{id}/ack"),
            Some("text/plain"),
            None,
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 415);
    let resp = app
        .post_raw(
            &format!("/api/v1/alerts/{id}/ack"),
            Some("application/json"),
            None,
            b"{\"memo\": ".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(alert_on(&app, "db1:9100").await["ack"], Value::Null);

    let (status, body) = ack(
        &app,
        &id,
        &json!({"memo": "replacing <the> disk & rebooting", "by": "li"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ack"]["by"], "li");
    assert_eq!(body["ack"]["memo"], "replacing <the> disk & rebooting");
    assert!(body["ack"]["at"].is_string());
    assert_eq!(alert_on(&app, "db1:9100").await["ack"]["by"], "li");

    // Its resolve says who took it, escaped for Telegram's HTML.
    app.post_ok(&am_payload(vec![am_alert(
        "DiskFull", "db1:9100", "resolved",
    )]))
    .await;
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert!(
        msgs[1].plain_text.contains("RESOLVED"),
        "{}",
        msgs[1].plain_text
    );
    assert!(
        msgs[1]
            .plain_text
            .contains("acknowledged by li: replacing <the> disk & rebooting"),
        "{}",
        msgs[1].plain_text
    );
    assert!(msgs[1].text.contains("&lt;the&gt;"), "{}", msgs[1].text);

    // A resolved alert has nothing to acknowledge.
    let (status, body) = ack(&app, &id, &json!({"memo": "late"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        alert_on(&app, "db1:9100").await["ack"]["memo"],
        "replacing <the> disk & rebooting"
    );

    // It fires again: a new incident, unacknowledged, and its message says nothing of the old ack.
    let mut again = am_alert("DiskFull", "db1:9100", "firing");
    again["startsAt"] = json!("2026-11-22T05:00:00Z");
    app.post_ok(&am_payload(vec![again])).await;
    let msgs = fake.wait_for_messages(3, WAIT).await;
    assert!(
        msgs[2].plain_text.contains("FIRING"),
        "{}",
        msgs[2].plain_text
    );
    assert!(
        !msgs[2].plain_text.contains("acknowledged"),
        "{}",
        msgs[2].plain_text
    );
    assert_eq!(alert_on(&app, "db1:9100").await["ack"], Value::Null);

    // The caller's identity when no `by` is given.
    let (status, body) = ack(&app, &id, &json!({"memo": "on it"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ack"]["by"], "anonymous");
}
both_dbs!(an_ack_shows_in_the_api_and_in_later_messages_until_a_new_incident);

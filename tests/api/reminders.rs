//! repeat_interval: a reminder while an alert stays firing and nobody
//! acknowledged it; acknowledging or resolving stops it; a new incident
//! starts its own. Time is a manual clock: no test waits for an hour.

use std::time::Duration;

use alertrelay::clock::Clock;
use serde_json::json;

use crate::both_dbs;
use crate::fake_telegram::{FakeTelegram, SentMessage};
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

fn lists(m: &SentMessage, instance: &str) -> bool {
    m.plain_text.contains(instance)
}

async fn id_of(app: &TestApp, instance: &str) -> String {
    app.alert_on(instance).await["id"]
        .as_str()
        .expect("id")
        .to_string()
}

async fn a_firing_alert_is_reminded_until_acknowledged_or_resolved(db: Db) {
    let fake = FakeTelegram::start("9:remind").await;
    let clock = Clock::manual(Clock::system().now());
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}routes:\n  - match: []\n    channels: [oncall]\n    repeat_interval: 1h\n",
        telegram_channel("oncall", &fake, &["42"])
    );
    let app = TestApp::spawn_with_clock(db, &yaml, clock.clone()).await;
    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "db1:9100", "firing"),
        am_alert("NodeDown", "db2:9100", "firing"),
        am_alert("NodeDown", "db3:9100", "firing"),
    ]))
    .await;
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert!(
        msgs[0].plain_text.starts_with("🔥 FIRING"),
        "{}",
        msgs[0].plain_text
    );

    // Not yet: 59 minutes.
    // Time moves once the send is recorded (a lease must not expire under it).
    app.wait_notifications("sent", 1, WAIT).await;
    clock.advance(chrono::Duration::minutes(59));
    // An hour: one reminder listing all three.
    clock.advance(chrono::Duration::minutes(1));
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    let reminder = &msgs[1];
    assert!(
        reminder.plain_text.starts_with("⏰ STILL FIRING"),
        "{}",
        reminder.plain_text
    );
    for i in ["db1:9100", "db2:9100", "db3:9100"] {
        assert!(lists(reminder, i), "{i} in {}", reminder.plain_text);
    }

    // db1 is acknowledged, db2 resolves: only db3 is reminded of next.
    let db1 = id_of(&app, "db1:9100").await;
    let (status, body) = app
        .send_json(
            "POST",
            &format!("/api/v1/alerts/{db1}/ack"),
            Some(&json!({"memo": "on it", "by": "li"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown", "db2:9100", "resolved",
    )]))
    .await;
    let msgs = fake.wait_for_messages(3, WAIT).await;
    assert!(
        msgs[2].plain_text.starts_with("✅ RESOLVED"),
        "{}",
        msgs[2].plain_text
    );
    app.wait_notifications("sent", 3, WAIT).await;
    clock.advance(chrono::Duration::hours(1));
    let msgs = fake.wait_for_messages(4, WAIT).await;
    let reminder = &msgs[3];
    assert!(
        reminder.plain_text.starts_with("⏰ STILL FIRING"),
        "{}",
        reminder.plain_text
    );
    assert!(lists(reminder, "db3:9100"), "{}", reminder.plain_text);
    assert!(
        !lists(reminder, "db1:9100"),
        "acknowledged: {}",
        reminder.plain_text
    );
    assert!(
        !lists(reminder, "db2:9100"),
        "resolved: {}",
        reminder.plain_text
    );

    // db2 fires again: a new incident, told at once and reminded of again.
    let mut again = am_alert("NodeDown", "db2:9100", "firing");
    again["startsAt"] = json!("2026-11-22T05:00:00Z");
    app.post_ok(&am_payload(vec![again])).await;
    let msgs = fake.wait_for_messages(5, WAIT).await;
    assert!(
        msgs[4].plain_text.starts_with("🔥 FIRING"),
        "{}",
        msgs[4].plain_text
    );
    app.wait_notifications("sent", 5, WAIT).await;
    clock.advance(chrono::Duration::hours(1));
    let msgs = fake.wait_for_messages(6, WAIT).await;
    let reminder = &msgs[5];
    assert!(
        reminder.plain_text.starts_with("⏰ STILL FIRING"),
        "{}",
        reminder.plain_text
    );
    assert!(
        lists(reminder, "db2:9100") && lists(reminder, "db3:9100"),
        "{}",
        reminder.plain_text
    );
    assert!(!lists(reminder, "db1:9100"), "{}", reminder.plain_text);
    assert_eq!(fake.messages().len(), 6, "{:#?}", fake.messages());
}
both_dbs!(a_firing_alert_is_reminded_until_acknowledged_or_resolved);

/// The reminder is a row in the database: a restart in the middle of the
/// interval keeps it, and a reminder that fell due while the service was
/// down goes out when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_survives_a_restart() {
    let fake = FakeTelegram::start("9:remind-restart").await;
    let clock = Clock::manual(Clock::system().now());
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}routes:\n  - match: []\n    channels: [oncall]\n    repeat_interval: 1h\n",
        telegram_channel("oncall", &fake, &["42"])
    );
    let app = TestApp::spawn_with_clock(Db::Sqlite, &yaml, clock.clone()).await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown", "db1:9100", "firing",
    )]))
    .await;
    fake.wait_for_messages(1, WAIT).await;
    app.wait_notifications("sent", 1, WAIT).await;
    clock.advance(chrono::Duration::minutes(30));
    let (dir, url, schema) = app.stop().await;
    // Down for an hour: the reminder falls due meanwhile.
    clock.advance(chrono::Duration::hours(1));
    let app = TestApp::spawn_with_storage_and_clock(dir, url, schema, &yaml, clock.clone()).await;
    // The scheduler's first look, on its own tick.
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert!(
        msgs[1].plain_text.starts_with("⏰ STILL FIRING"),
        "{}",
        msgs[1].plain_text
    );
    assert!(lists(&msgs[1], "db1:9100"));
    drop(app);
}

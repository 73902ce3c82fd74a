//! group_by: alerts arriving together that share the route's labels go out
//! as one message; resolved ones of a group go out together too.

use std::time::Duration;

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

fn yaml(fake: &FakeTelegram, group_by: &str) -> String {
    format!(
        "{FAST_DELIVERY}channels:\n{}routes:\n  - match: []\n    channels: [oncall]\n    group_by: {group_by}\n",
        telegram_channel("oncall", fake, &["42"])
    )
}

/// The messages' texts, in the order sent (groups go out in the order their
/// first alert arrived).
fn texts(msgs: &[crate::fake_telegram::SentMessage]) -> Vec<String> {
    msgs.iter().map(|m| m.plain_text.clone()).collect()
}

async fn alerts_sharing_the_group_labels_go_out_as_one_message(db: Db) {
    let fake = FakeTelegram::start("9:group").await;
    let app = TestApp::spawn(db, &yaml(&fake, "[alertname]")).await;
    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "web1:9100", "firing"),
        am_alert("DiskFull", "db1:9100", "firing"),
        am_alert("NodeDown", "web2:9100", "firing"),
    ]))
    .await;
    let msgs = texts(&fake.wait_for_messages(2, WAIT).await);
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    // First-seen order: NodeDown's group, then DiskFull's.
    assert!(
        msgs[0].contains("web1:9100") && msgs[0].contains("web2:9100"),
        "{}",
        msgs[0]
    );
    assert!(!msgs[0].contains("db1:9100"), "{}", msgs[0]);
    assert!(
        msgs[1].contains("db1:9100") && !msgs[1].contains("web"),
        "{}",
        msgs[1]
    );

    // Both NodeDowns resolve together, DiskFull keeps firing: one RESOLVED
    // message for the group, and DiskFull is not counted in it (other group).
    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "web1:9100", "resolved"),
        am_alert("NodeDown", "web2:9100", "resolved"),
        am_alert("DiskFull", "db1:9100", "firing"),
    ]))
    .await;
    let msgs = texts(&fake.wait_for_messages(3, WAIT).await);
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(msgs[2].contains("RESOLVED"), "{}", msgs[2]);
    assert!(
        msgs[2].contains("web1:9100") && msgs[2].contains("web2:9100"),
        "{}",
        msgs[2]
    );
    assert!(!msgs[2].contains("still firing"), "{}", msgs[2]);
}
both_dbs!(alerts_sharing_the_group_labels_go_out_as_one_message);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_label_makes_one_message_per_alert() {
    let fake = FakeTelegram::start("9:each").await;
    let app = TestApp::spawn(Db::Sqlite, &yaml(&fake, "['...']")).await;
    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "web1:9100", "firing"),
        am_alert("NodeDown", "web2:9100", "firing"),
        am_alert("NodeDown", "web3:9100", "firing"),
    ]))
    .await;
    let msgs = texts(&fake.wait_for_messages(3, WAIT).await);
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            m.matches("🖥").count(),
            1,
            "message {i} lists one alert: {m}"
        );
    }
}

/// group_wait: the group's first notification waits; alerts of the same
/// group from later webhooks join it, and one message lists them all.
async fn group_wait_gathers_a_group_from_several_webhooks(db: Db) {
    let fake = FakeTelegram::start("9:gw").await;
    let clock = alertrelay::clock::Clock::manual(alertrelay::clock::Clock::system().now());
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}routes:\n  - match: []\n    channels: [oncall]\n    group_by: [alertname]\n    group_wait: 30s\n",
        telegram_channel("oncall", &fake, &["42"])
    );
    let app = TestApp::spawn_with_clock(db, &yaml, clock.clone()).await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web1:9100",
        "firing",
    )]))
    .await;
    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "web2:9100", "firing"),
        am_alert("DiskFull", "db1:9100", "firing"),
    ]))
    .await;
    // Held: each notification is due 30 s after it was queued.
    let pending = app.notifications("pending").await;
    assert_eq!(pending.len(), 3, "{pending:#?}");
    for n in &pending {
        let created: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(n["created_at"].clone()).expect("created_at");
        let due: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(n["next_attempt_at"].clone()).expect("next_attempt_at");
        assert_eq!(due - created, chrono::Duration::seconds(30), "{n}");
    }
    assert!(fake.messages().is_empty());

    clock.advance(chrono::Duration::seconds(30));
    let sent = app.wait_notifications("sent", 3, WAIT).await;
    assert_eq!(sent.len(), 3);
    let msgs = texts(&fake.messages());
    assert_eq!(msgs.len(), 2, "one message per group: {msgs:#?}");
    let node_down = msgs
        .iter()
        .find(|m| m.contains("NodeDown"))
        .expect("NodeDown");
    assert!(
        node_down.contains("web1:9100") && node_down.contains("web2:9100"),
        "{node_down}"
    );
    assert!(!node_down.contains("db1:9100"), "{node_down}");

    // After the group's message went out, a new alert of the group waits anew.
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web3:9100",
        "firing",
    )]))
    .await;
    clock.advance(chrono::Duration::seconds(30));
    let msgs = texts(&fake.wait_for_messages(3, WAIT).await);
    assert!(
        msgs[2].contains("web3:9100") && !msgs[2].contains("web1:9100"),
        "{}",
        msgs[2]
    );
}
both_dbs!(group_wait_gathers_a_group_from_several_webhooks);

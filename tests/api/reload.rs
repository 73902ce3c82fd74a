//! Reload: a good new config takes over without a restart, a broken one is
//! refused with its errors while the old one keeps running, and queued
//! notifications survive the swap.

use std::time::Duration;

use serde_json::Value;

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp};

const WAIT: Duration = Duration::from_secs(20);
const DELIVERY: &str =
    "delivery: { max_attempts: 50, retry_initial: 50ms, retry_max: 100ms, timeout: 2s }\n";

async fn reload(app: &TestApp) -> (u16, Value) {
    app.send_json("POST", "/-/reload", None).await
}

async fn a_reload_swaps_routes_and_channels(db: Db) {
    let fake = FakeTelegram::start("9:reload").await;
    let one = format!(
        "{DELIVERY}channels:\n{}",
        telegram_channel("oncall", &fake, &["1"])
    );
    let app = TestApp::spawn(db, &one).await;
    app.post_ok(&am_payload(vec![am_alert("Before", "h1:1", "firing")]))
        .await;
    assert_eq!(fake.wait_for_messages(1, WAIT).await[0].chat_id, "1");

    // A second channel, and a route that sends everything there only.
    app.write_config(&format!(
        "{DELIVERY}channels:\n{}{}routes:\n  - match: []\n    channels: [dba]\n",
        telegram_channel("oncall", &fake, &["1"]),
        telegram_channel("dba", &fake, &["2"]),
    ));
    let (status, body) = reload(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "reloaded: 2 channel(s), 1 route(s)");
    app.post_ok(&am_payload(vec![am_alert("After", "h2:1", "firing")]))
        .await;
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert_eq!(msgs[1].chat_id, "2", "the new route and channel: {msgs:#?}");
    assert!(msgs[1].plain_text.contains("After"));
    let metrics = app
        .metric("alertrelay_outbox_notifications{channel=\"dba\",state=\"pending\"}")
        .await;
    // 0 or 1 (the message may be on its way to "sent"): the series exists.
    assert!(metrics.is_some(), "/metrics knows the new channel");
}
both_dbs!(a_reload_swaps_routes_and_channels);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_refused_and_the_old_one_keeps_running() {
    let fake = FakeTelegram::start("9:broken").await;
    let good = format!(
        "{DELIVERY}channels:\n{}",
        telegram_channel("oncall", &fake, &["1"])
    );
    let app = TestApp::spawn(Db::Sqlite, &good).await;

    let broken = [
        (
            format!("{good}routes:\n  - match: []\n    channels: [nosuch]\n"),
            "no channel is named `nosuch`",
        ),
        ("channels: [\n".to_string(), "line"),
        (format!("listen: 127.0.0.1:1\n{good}"), "listen"),
    ];
    for (yaml, says) in &broken {
        app.write_config(yaml);
        let (status, body) = reload(&app).await;
        assert_eq!(status, 400, "{yaml}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("the running one stays"), "{error}");
        assert!(
            error.contains(says),
            "{yaml}: {error:?} should say {says:?}"
        );
    }
    // Still the old config: the alert reaches chat 1.
    app.post_ok(&am_payload(vec![am_alert("StillHere", "h1:1", "firing")]))
        .await;
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert!(msgs[0].plain_text.contains("StillHere"));
}

/// A channel whose platform is unreachable: its notification waits in the
/// queue; the reload points the channel at a working address, and the same
/// queued notification goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_notifications_survive_a_reload() {
    let fake = FakeTelegram::start("9:queued").await;
    let closed = crate::common::free_port();
    let down = format!(
        "{DELIVERY}channels:\n  - name: oncall\n    type: telegram\n    pacing: false\n    bot_token: \"{}\"\n    api_url: http://127.0.0.1:{closed}\n    chat_ids: [1]\n",
        fake.token()
    );
    let app = TestApp::spawn(Db::Sqlite, &down).await;
    app.post_ok(&am_payload(vec![am_alert("Queued", "h1:1", "firing")]))
        .await;
    // It is retrying, not sent.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pending = app.notifications("pending").await;
        if pending.len() == 1 && pending[0]["attempts"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not retrying: {pending:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fake.messages().is_empty());

    app.write_config(&format!(
        "{DELIVERY}channels:\n{}",
        telegram_channel("oncall", &fake, &["1"])
    ));
    let (status, body) = reload(&app).await;
    assert_eq!(status, 200, "{body}");
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert!(msgs[0].plain_text.contains("Queued"), "{msgs:#?}");
    let sent = app.wait_notifications("sent", 1, WAIT).await;
    assert_eq!(sent.len(), 1);
    assert!(app.notifications("pending").await.is_empty());
}

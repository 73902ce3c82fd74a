//! throttle: at most one firing message per alert and channel per window;
//! firing copies received meanwhile are counted and, if the alert still
//! fires when the window closes, one message says so; a resolve goes out at
//! once and closes the window. Manual clock: no test waits for a window.

use std::time::Duration;

use alertrelay::clock::Clock;

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

fn yaml(fake: &FakeTelegram) -> String {
    format!(
        "{FAST_DELIVERY}channels:\n{}routes:\n  - match: []\n    channels: [oncall]\n    throttle: 2m\n",
        telegram_channel("oncall", fake, &["42"])
    )
}

async fn repeats_are_counted_and_told_once_when_the_window_closes(db: Db) {
    let fake = FakeTelegram::start("9:throttle").await;
    let clock = Clock::manual(Clock::system().now());
    let app = TestApp::spawn_with_clock(db, &yaml(&fake), clock.clone()).await;
    let x = || am_payload(vec![am_alert("NodeDown", "web1:9100", "firing")]);
    app.post_ok(&x()).await;
    app.post_ok(&am_payload(vec![am_alert(
        "DiskFull", "db1:9100", "firing",
    )]))
    .await;
    fake.wait_for_messages(2, WAIT).await;
    app.wait_notifications("sent", 2, WAIT).await;
    // The source sends NodeDown again three times inside the window.
    for _ in 0..3 {
        app.post_ok(&x()).await;
    }
    clock.advance(chrono::Duration::minutes(2));
    let msgs = fake.wait_for_messages(3, WAIT).await;
    let told = &msgs[2].plain_text;
    assert!(
        told.starts_with("🔁 STILL FIRING · fired 3 times since "),
        "{told}"
    );
    assert!(
        told.contains("web1:9100") && !told.contains("db1:9100"),
        "{told}"
    );

    // A resolve inside the (next) window goes out at once and closes it:
    // the copy counted before it is not told later.
    app.post_ok(&x()).await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web1:9100",
        "resolved",
    )]))
    .await;
    let msgs = fake.wait_for_messages(4, WAIT).await;
    assert!(
        msgs[3].plain_text.starts_with("✅ RESOLVED"),
        "{}",
        msgs[3].plain_text
    );
    // Time moves only once every send is recorded: a send in flight would
    // otherwise see its lease expire under it and be repeated.
    app.wait_notifications("sent", 4, WAIT).await;
    clock.advance(chrono::Duration::minutes(2));
    // DiskFull was never received again: its windows end silently.
    app.post_ok(&am_payload(vec![am_alert("Canary", "c:1", "firing")]))
        .await;
    let msgs = fake.wait_for_messages(5, WAIT).await;
    assert!(msgs[4].plain_text.contains("Canary"), "{msgs:#?}");
    app.wait_notifications("sent", 5, WAIT).await;
    clock.advance(chrono::Duration::minutes(2));
    app.post_ok(&am_payload(vec![am_alert("Canary2", "c:2", "firing")]))
        .await;
    let msgs = fake.wait_for_messages(6, WAIT).await;
    assert!(msgs[5].plain_text.contains("Canary2"), "{msgs:#?}");
    assert_eq!(fake.messages().len(), 6, "{:#?}", fake.messages());
}
both_dbs!(repeats_are_counted_and_told_once_when_the_window_closes);

/// The edge: a restart in the middle of a throttle window keeps
/// the window and its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_window_keeps_its_count() {
    let fake = FakeTelegram::start("9:throttle-restart").await;
    let clock = Clock::manual(Clock::system().now());
    let app = TestApp::spawn_with_clock(Db::Sqlite, &yaml(&fake), clock.clone()).await;
    let x = || am_payload(vec![am_alert("NodeDown", "web1:9100", "firing")]);
    app.post_ok(&x()).await;
    fake.wait_for_messages(1, WAIT).await;
    app.wait_notifications("sent", 1, WAIT).await;
    app.post_ok(&x()).await;
    clock.advance(chrono::Duration::minutes(1));
    let (dir, url, schema) = app.stop().await;
    let app =
        TestApp::spawn_with_storage_and_clock(dir, url, schema, &yaml(&fake), clock.clone()).await;
    app.post_ok(&x()).await;
    clock.advance(chrono::Duration::minutes(1));
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert!(
        msgs[1]
            .plain_text
            .starts_with("🔁 STILL FIRING · fired 2 times since "),
        "{}",
        msgs[1].plain_text
    );
}

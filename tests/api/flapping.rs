//! flapping: an alert that changes state `flapping.changes` times within
//! `flapping.window` gets one FLAPPING message instead of that change's
//! ordinary one, nothing for its later changes, and one STABLE message with
//! its final state once it has gone the window without a change. Manual
//! clock: no test waits for a window.

use std::time::Duration;

use alertrelay::clock::Clock;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

fn yaml(fake: &FakeTelegram, flapping: &str) -> String {
    format!(
        "{FAST_DELIVERY}{flapping}channels:\n{}routes:\n  - match: []\n    channels: [oncall]\n",
        telegram_channel("oncall", fake, &["42"])
    )
}

/// Change `i` (0-based) of one alert, at the clock's time: even ones fire
/// (each a new incident, so a later start), odd ones resolve.
fn change(i: usize, clock: &Clock) -> Value {
    let now = clock.now().to_rfc3339();
    let mut a = am_alert(
        "LinkDown",
        "sw1:9100",
        if i.is_multiple_of(2) {
            "firing"
        } else {
            "resolved"
        },
    );
    if i.is_multiple_of(2) {
        a["startsAt"] = json!(now);
    } else {
        a["endsAt"] = json!(now);
    }
    am_payload(vec![a])
}

/// Posts changes `range` 5 s apart, waiting for each message the chat is
/// expected to see (`told` so far) before the next.
async fn post_changes(
    app: &TestApp,
    fake: &FakeTelegram,
    clock: &Clock,
    range: std::ops::Range<usize>,
    told: &mut usize,
    notified: impl Fn(usize) -> bool,
) {
    for i in range {
        clock.advance(chrono::Duration::seconds(5));
        app.post_ok(&change(i, clock)).await;
        if notified(i) {
            *told += 1;
            fake.wait_for_messages(*told, WAIT).await;
            // Time moves only once the send is recorded (a lease must not
            // expire under it).
            app.wait_notifications("sent", *told, WAIT).await;
        }
    }
}

/// Nothing more than `n` messages: everything planned is sent or was never
/// queued.
async fn assert_told_exactly(app: &TestApp, fake: &FakeTelegram, n: usize) {
    app.wait_idle().await;
    assert!(app.notifications("pending").await.is_empty());
    let msgs = fake.messages();
    assert_eq!(msgs.len(), n, "{msgs:#?}");
}

async fn a_flapping_alert_is_told_once_then_once_more_when_stable(db: Db) {
    let fake = FakeTelegram::start("9:flapping").await;
    let clock = Clock::manual(Clock::system().now());
    // The defaults: 6 changes in 10m.
    let app = TestApp::spawn_with_clock(db, &yaml(&fake, ""), clock.clone()).await;
    let mut told = 0;
    // Fire/resolve ten times within a minute: the first five changes are
    // ordinary messages, the sixth says it is flapping.
    post_changes(&app, &fake, &clock, 0..6, &mut told, |_| true).await;
    let msgs = fake.messages();
    let heads: Vec<&str> = msgs
        .iter()
        .map(|m| m.plain_text.lines().next().unwrap_or(""))
        .collect();
    assert_eq!(
        heads,
        [
            "🔥 FIRING",
            "✅ RESOLVED",
            "🔥 FIRING",
            "✅ RESOLVED",
            "🔥 FIRING",
            "〰️ FLAPPING · changed state 6 times in 10m, now resolved",
        ],
        "{msgs:#?}"
    );
    assert!(
        msgs[5].plain_text.contains("LinkDown"),
        "{}",
        msgs[5].plain_text
    );
    // The next four are held: stored with their events, not told.
    post_changes(&app, &fake, &clock, 6..10, &mut told, |_| false).await;
    assert_told_exactly(&app, &fake, 6).await;
    assert_eq!(app.events().await.len(), 10, "every change is an event");
    assert_eq!(app.alerts().await[0]["status"], "resolved");

    // Not yet stable: 9 minutes after the last change.
    clock.advance(chrono::Duration::minutes(9));
    assert_told_exactly(&app, &fake, 6).await;
    // 10 minutes without a change: one message with its final state.
    clock.advance(chrono::Duration::minutes(1));
    let msgs = fake.wait_for_messages(7, WAIT).await;
    assert!(
        msgs[6]
            .plain_text
            .starts_with("✅ STABLE after flapping · now resolved\n"),
        "{}",
        msgs[6].plain_text
    );
    assert!(msgs[6].plain_text.contains("LinkDown"));
    app.wait_notifications("sent", 7, WAIT).await;
    clock.advance(chrono::Duration::minutes(20));
    assert_told_exactly(&app, &fake, 7).await;

    // Stable again, it is an ordinary alert: its next change is told.
    app.post_ok(&change(10, &clock)).await;
    let msgs = fake.wait_for_messages(8, WAIT).await;
    assert!(
        msgs[7].plain_text.starts_with("🔥 FIRING"),
        "{}",
        msgs[7].plain_text
    );
}
both_dbs!(a_flapping_alert_is_told_once_then_once_more_when_stable);

async fn fewer_changes_than_the_threshold_are_never_flapping(db: Db) {
    let fake = FakeTelegram::start("9:flapping-few").await;
    let clock = Clock::manual(Clock::system().now());
    let app = TestApp::spawn_with_clock(db, &yaml(&fake, ""), clock.clone()).await;
    let mut told = 0;
    post_changes(&app, &fake, &clock, 0..5, &mut told, |_| true).await;
    clock.advance(chrono::Duration::minutes(11));
    assert_told_exactly(&app, &fake, 5).await;
    assert!(
        fake.messages()
            .iter()
            .all(|m| !m.plain_text.contains("FLAPPING") && !m.plain_text.contains("STABLE")),
        "{:#?}",
        fake.messages()
    );
    // Changes spread wider than the window never add up either.
    clock.advance(chrono::Duration::minutes(11));
    post_changes(&app, &fake, &clock, 5..6, &mut told, |_| true).await;
    assert!(
        fake.messages()[5].plain_text.starts_with("✅ RESOLVED"),
        "{:#?}",
        fake.messages()
    );
}
both_dbs!(fewer_changes_than_the_threshold_are_never_flapping);

async fn flapping_off_tells_every_change(db: Db) {
    let fake = FakeTelegram::start("9:flapping-off").await;
    let clock = Clock::manual(Clock::system().now());
    let app = TestApp::spawn_with_clock(db, &yaml(&fake, "flapping: off\n"), clock.clone()).await;
    let mut told = 0;
    post_changes(&app, &fake, &clock, 0..10, &mut told, |_| true).await;
    clock.advance(chrono::Duration::minutes(11));
    assert_told_exactly(&app, &fake, 10).await;
    for (i, m) in fake.messages().iter().enumerate() {
        let head = if i.is_multiple_of(2) {
            "🔥 FIRING"
        } else {
            "✅ RESOLVED"
        };
        assert!(m.plain_text.starts_with(head), "{i}: {}", m.plain_text);
    }
}
both_dbs!(flapping_off_tells_every_change);

/// The flapping state is in the database: a restart while an alert flaps
/// keeps it, and the stable message still comes, once.
async fn a_restart_while_flapping_still_ends_it_once(db: Db) {
    let fake = FakeTelegram::start("9:flapping-restart").await;
    let clock = Clock::manual(Clock::system().now());
    let config = yaml(&fake, "flapping: { changes: 4, window: 2m }\n");
    let app = TestApp::spawn_with_clock(db, &config, clock.clone()).await;
    let mut told = 0;
    post_changes(&app, &fake, &clock, 0..4, &mut told, |_| true).await;
    assert!(
        fake.messages()[3]
            .plain_text
            .starts_with("〰️ FLAPPING · changed state 4 times in 2m, now resolved"),
        "{:#?}",
        fake.messages()
    );
    // A fifth change, held; then the service stops.
    post_changes(&app, &fake, &clock, 4..5, &mut told, |_| false).await;
    clock.advance(chrono::Duration::minutes(1));
    let (dir, url, schema) = app.stop().await;
    let app = TestApp::spawn_with_storage_and_clock(dir, url, schema, &config, clock.clone()).await;
    // Still flapping after the restart: a change is held.
    post_changes(&app, &fake, &clock, 5..6, &mut told, |_| false).await;
    post_changes(&app, &fake, &clock, 6..7, &mut told, |_| false).await;
    assert_told_exactly(&app, &fake, 4).await;
    clock.advance(chrono::Duration::minutes(2));
    let msgs = fake.wait_for_messages(5, WAIT).await;
    assert!(
        msgs[4]
            .plain_text
            .starts_with("🔥 STABLE after flapping · now firing\n"),
        "{}",
        msgs[4].plain_text
    );
    app.wait_notifications("sent", 5, WAIT).await;
    clock.advance(chrono::Duration::minutes(5));
    assert_told_exactly(&app, &fake, 5).await;
}
both_dbs!(a_restart_while_flapping_still_ends_it_once);

/// Silences win: a flapping alert silenced before it is stable gets no
/// stable message.
async fn a_silenced_flapping_alert_is_not_told_it_is_stable(db: Db) {
    let fake = FakeTelegram::start("9:flapping-silence").await;
    let clock = Clock::manual(Clock::system().now());
    let config = yaml(&fake, "flapping: { changes: 4, window: 2m }\n");
    let app = TestApp::spawn_with_clock(db, &config, clock.clone()).await;
    let mut told = 0;
    post_changes(&app, &fake, &clock, 0..4, &mut told, |_| true).await;
    assert!(fake.messages()[3].plain_text.starts_with("〰️ FLAPPING"));
    let (status, body) = app
        .send_json(
            "POST",
            "/api/v1/silences",
            Some(&json!({"matchers": ["instance=\"sw1:9100\""], "duration": "1h", "comment": "cable swap"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    post_changes(&app, &fake, &clock, 4..5, &mut told, |_| false).await;
    clock.advance(chrono::Duration::minutes(3));
    assert_told_exactly(&app, &fake, 4).await;
}
both_dbs!(a_silenced_flapping_alert_is_not_told_it_is_stable);

/// A silence that ends while the alert still flaps does not tell its state
/// (that is the stable message's job, which then comes unsilenced).
async fn a_silence_ending_while_flapping_leaves_it_to_the_stable_message(db: Db) {
    let fake = FakeTelegram::start("9:flapping-silence-end").await;
    let clock = Clock::manual(Clock::system().now());
    let config = yaml(&fake, "flapping: { changes: 4, window: 2m }\n");
    let app = TestApp::spawn_with_clock(db, &config, clock.clone()).await;
    let mut told = 0;
    post_changes(&app, &fake, &clock, 0..4, &mut told, |_| true).await;
    let (status, body) = app
        .send_json(
            "POST",
            "/api/v1/silences",
            Some(&json!({"matchers": ["instance=\"sw1:9100\""], "comment": "cable swap"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // It fires again, held, and the silence is deleted while it flaps.
    post_changes(&app, &fake, &clock, 4..5, &mut told, |_| false).await;
    let id = body["id"].as_i64().expect("silence id");
    let (status, body) = app
        .send_json("DELETE", &format!("/api/v1/silences/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    clock.advance(chrono::Duration::seconds(1));
    assert_told_exactly(&app, &fake, 4).await;
    clock.advance(chrono::Duration::minutes(2));
    let msgs = fake.wait_for_messages(5, WAIT).await;
    assert!(
        msgs[4]
            .plain_text
            .starts_with("🔥 STABLE after flapping · now firing\n"),
        "{}",
        msgs[4].plain_text
    );
}
both_dbs!(a_silence_ending_while_flapping_leaves_it_to_the_stable_message);

/// "It is flapping" reaches a channel that does not want resolves even
/// when the change that made it so was a resolve; the stable message then
/// follows `send_resolved` like any resolve.
async fn flapping_is_told_where_resolves_are_not(db: Db) {
    let fake = FakeTelegram::start("9:flapping-no-resolved").await;
    let clock = Clock::manual(Clock::system().now());
    let config = format!(
        "{FAST_DELIVERY}flapping: {{ changes: 4, window: 1m }}\nchannels:\n{}    send_resolved: false\n",
        telegram_channel("oncall", &fake, &["42"])
    );
    let app = TestApp::spawn_with_clock(db, &config, clock.clone()).await;
    let mut told = 0;
    // Firing told, resolves not, the fourth change (a resolve) is FLAPPING.
    post_changes(&app, &fake, &clock, 0..4, &mut told, |i| i != 1).await;
    let heads: Vec<String> = fake
        .messages()
        .iter()
        .map(|m| m.plain_text.lines().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        heads,
        [
            "🔥 FIRING",
            "🔥 FIRING",
            "〰️ FLAPPING · changed state 4 times in 1m, now resolved"
        ]
    );
    clock.advance(chrono::Duration::minutes(2));
    assert_told_exactly(&app, &fake, 3).await;
}
both_dbs!(flapping_is_told_where_resolves_are_not);

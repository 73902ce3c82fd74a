//! digest: a route with `digest: 1h` sends no per-event message; once a
//! period (on the hour) each of its channels gets one status summary of
//! every host it covers: down first, then recovered, then quiet, muted
//! hosts apart, "all quiet" when nothing happened. Manual clock: no test
//! waits for a period.

use std::time::Duration;

use alertrelay::clock::Clock;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::fake_slack::{invalid_blocks, FakeSlack};
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0)
        .single()
        .expect("valid time")
}

/// Telegram `oncall` gets per-event messages for team=db; everything else
/// goes to the hourly digest of `digest` (and Slack when given).
fn yaml(fake: &FakeTelegram, slack: Option<&FakeSlack>) -> String {
    let mut channels = telegram_channel("oncall", fake, &["42"]);
    channels.push_str(&telegram_channel("digest", fake, &["77"]));
    let mut digest_channels = "digest".to_string();
    if let Some(s) = slack {
        channels.push_str(&format!(
            "  - name: uptime-slack\n    type: slack\n    webhook_url: \"{}\"\n",
            s.webhook_url()
        ));
        digest_channels.push_str(", uptime-slack");
    }
    format!(
        "{FAST_DELIVERY}channels:\n{channels}routes:\n  - match: ['team=\"db\"']\n    channels: [oncall]\n  - match: ['job=\"node\"']\n    channels: [{digest_channels}]\n    digest: 1h\n"
    )
}

async fn advance_to(clock: &Clock, to: DateTime<Utc>) {
    clock.advance(to - clock.now());
}

async fn one_summary_per_period_and_no_per_event_message(db: Db) {
    let fake = FakeTelegram::start("9:digest").await;
    let clock = Clock::manual(at(10, 5));
    let app = TestApp::spawn_with_clock(db, &yaml(&fake, None), clock.clone()).await;

    // web1 goes down, web2 goes down and comes back, db1 goes down under a
    // silence; one alert of team db still goes to oncall at once.
    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "web1:9100", "firing"),
        am_alert("NodeDown", "web2:9100", "firing"),
        am_alert("DiskFull", "db1:9100", "firing"),
    ]))
    .await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web2:9100",
        "resolved",
    )]))
    .await;
    let (status, _) = app
        .send_json(
            "POST",
            "/api/v1/silences",
            Some(&json!({ "matchers": ["instance=\"db1:9100\""], "comment": "disk swap" })),
        )
        .await;
    assert_eq!(status, 201);
    let mut db_alert = am_alert("Replication", "pg1:5432", "firing");
    db_alert["labels"]["team"] = json!("db");
    app.post_ok(&am_payload(vec![db_alert])).await;
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert_eq!(msgs[0].chat_id, "42", "{msgs:#?}");
    app.wait_notifications("sent", 1, WAIT).await;
    // The digest route queued nothing: no per-event message.
    assert_eq!(app.notifications("pending").await.len(), 0);

    advance_to(&clock, at(11, 0)).await;
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert_eq!(msgs[1].chat_id, "77");
    assert_eq!(
        msgs[1].plain_text,
        "📋 DIGEST · 1 down, 1 recovered\n\
         2026-11-22 10:05 → 11:00 UTC · job=\"node\"\n\
         \n\
         🔴 Down (1)\n\
         • web1:9100 down since 02:00 · NodeDown · 1 incident\n\
         \n\
         🟡 Recovered (1)\n\
         • web2:9100 up since 02:12 · 1 incident\n\
         \n\
         🔇 Muted by a silence (1)\n\
         • db1:9100 down since 02:00 · DiskFull"
    );
    app.wait_notifications("sent", 2, WAIT).await;

    // The next hour: nothing new. web1 is still down, web2 is quiet.
    advance_to(&clock, at(12, 0)).await;
    let msgs = fake.wait_for_messages(3, WAIT).await;
    assert!(
        msgs[2]
            .plain_text
            .starts_with("📋 DIGEST · 1 down, 1 up\n2026-11-22 11:00 → 12:00 UTC"),
        "{}",
        msgs[2].plain_text
    );
    assert!(
        msgs[2]
            .plain_text
            .contains("• web1:9100 down since 02:00 · NodeDown\n"),
        "{}",
        msgs[2].plain_text
    );
    app.wait_notifications("sent", 3, WAIT).await;

    // web1 recovers; the period after that is all quiet.
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web1:9100",
        "resolved",
    )]))
    .await;
    advance_to(&clock, at(13, 0)).await;
    let msgs = fake.wait_for_messages(4, WAIT).await;
    assert!(
        msgs[3]
            .plain_text
            .starts_with("📋 DIGEST · 1 recovered, 1 up"),
        "{}",
        msgs[3].plain_text
    );
    assert!(
        msgs[3]
            .plain_text
            .contains("• web1:9100 up since 02:12 · came back in this period"),
        "{}",
        msgs[3].plain_text
    );
    app.wait_notifications("sent", 4, WAIT).await;
    advance_to(&clock, at(14, 0)).await;
    let msgs = fake.wait_for_messages(5, WAIT).await;
    assert!(
        msgs[4]
            .plain_text
            .starts_with("📋 DIGEST · all quiet, 2 hosts up"),
        "{}",
        msgs[4].plain_text
    );
    assert!(
        msgs[4]
            .plain_text
            .contains("✅ All quiet: 2 hosts up, no incidents in this period."),
        "{}",
        msgs[4].plain_text
    );
    app.wait_notifications("sent", 5, WAIT).await;
    // One digest per period: none more, and none to oncall.
    assert_eq!(fake.messages_to("77").len(), 4);
    assert_eq!(fake.messages_to("42").len(), 1);
}
both_dbs!(one_summary_per_period_and_no_per_event_message);

async fn a_route_with_no_host_yet_says_all_quiet(db: Db) {
    let fake = FakeTelegram::start("9:digest-empty").await;
    let clock = Clock::manual(at(10, 59));
    let app = TestApp::spawn_with_clock(db, &yaml(&fake, None), clock.clone()).await;
    advance_to(&clock, at(11, 0)).await;
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert_eq!(
        msgs[0].plain_text,
        "📋 DIGEST · all quiet, no hosts yet\n\
         2026-11-22 10:59 → 11:00 UTC · job=\"node\"\n\
         \n\
         ✅ All quiet: no host has raised an alert on this route yet."
    );
    app.wait_notifications("sent", 1, WAIT).await;
}
both_dbs!(a_route_with_no_host_yet_says_all_quiet);

/// 500 hosts: every one is named once, Telegram's parts stay under its
/// 4096-character limit (the fake refuses longer ones) and Slack's blocks
/// within its limits.
async fn five_hundred_hosts_fit_the_platform_limits(db: Db) {
    let fake = FakeTelegram::start("9:digest-500").await;
    let slack = FakeSlack::start().await;
    let clock = Clock::manual(at(10, 5));
    let app = TestApp::spawn_with_clock(db, &yaml(&fake, Some(&slack)), clock.clone()).await;
    let host = |i: usize| format!("host{i:03}.example.com:9100");
    for chunk in (0..500).collect::<Vec<_>>().chunks(100) {
        let alerts: Vec<Value> = chunk
            .iter()
            .map(|&i| am_alert("ProbeDown", &host(i), "firing"))
            .collect();
        app.post_ok(&am_payload(alerts)).await;
    }
    // All but 20 come back within the period.
    for chunk in (20..500).collect::<Vec<_>>().chunks(100) {
        let alerts: Vec<Value> = chunk
            .iter()
            .map(|&i| am_alert("ProbeDown", &host(i), "resolved"))
            .collect();
        app.post_ok(&am_payload(alerts)).await;
    }
    advance_to(&clock, at(11, 0)).await;
    // Telegram: a long digest is split into parts, each within the limit.
    let posts = slack.wait_for(1, WAIT).await;
    let sent = app.wait_notifications("sent", 2, WAIT).await;
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let parts = fake.messages_to("77");
    assert!(parts.len() > 1, "{} part(s)", parts.len());
    let text: String = parts
        .iter()
        .map(|p| p.plain_text.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        parts[0].plain_text.starts_with(&format!(
            "(1/{}) 📋 DIGEST · 20 down, 480 recovered",
            parts.len()
        )),
        "{text}"
    );
    for i in 0..500 {
        assert_eq!(
            text.matches(&format!("{}\u{20}", host(i))).count(),
            1,
            "{} in {text}",
            host(i)
        );
    }
    for p in &parts {
        assert!(p.text.chars().count() <= 4096);
    }
    // Slack: one message whose blocks Slack accepts.
    let body = &posts[0].body;
    assert_eq!(body["text"], "📋 DIGEST · 20 down, 480 recovered");
    let blocks = body["attachments"][0]["blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(invalid_blocks(&blocks), None);
    let slack_text: String = blocks
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .collect();
    assert!(slack_text.contains("*🔴 Down (20)*"), "{slack_text}");
    assert!(slack_text.contains("`host000.example.com:9100`"));
}
both_dbs!(five_hundred_hosts_fit_the_platform_limits);

/// A period that ends while alertrelay is stopped is summed up when it
/// starts again, once, and the next period ends on the next hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_that_ends_while_stopped_is_sent_at_start() {
    let fake = FakeTelegram::start("9:digest-restart").await;
    let clock = Clock::manual(at(10, 5));
    let app = TestApp::spawn_with_clock(Db::Sqlite, &yaml(&fake, None), clock.clone()).await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web1:9100",
        "firing",
    )]))
    .await;
    let (dir, url, schema) = app.stop().await;
    advance_to(&clock, at(11, 30)).await;
    let app =
        TestApp::spawn_with_storage_and_clock(dir, url, schema, &yaml(&fake, None), clock.clone())
            .await;
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert!(
        msgs[0]
            .plain_text
            .starts_with("📋 DIGEST · 1 down\n2026-11-22 10:05 → 11:30 UTC"),
        "{}",
        msgs[0].plain_text
    );
    app.wait_notifications("sent", 1, WAIT).await;
    advance_to(&clock, at(12, 0)).await;
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert!(
        msgs[1]
            .plain_text
            .starts_with("📋 DIGEST · 1 down\n2026-11-22 11:30 → 12:00 UTC"),
        "{}",
        msgs[1].plain_text
    );
    app.wait_notifications("sent", 2, WAIT).await;
    assert_eq!(fake.messages().len(), 2, "{:#?}", fake.messages());
}

/// A reload that changes a digest's period moves the end of the current
/// period to the new boundary (the period keeps its start); one that
/// removes the route drops its schedule.
async fn a_reload_changes_or_drops_the_schedule(db: Db) {
    let fake = FakeTelegram::start("9:digest-reload").await;
    let clock = Clock::manual(at(10, 5));
    let app = TestApp::spawn_with_clock(db, &yaml(&fake, None), clock.clone()).await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web1:9100",
        "firing",
    )]))
    .await;
    app.write_config(&yaml(&fake, None).replace("digest: 1h", "digest: 2h"));
    let (status, body) = app.send_json("POST", "/-/reload", None).await;
    assert_eq!(status, 200, "{body}");
    advance_to(&clock, at(11, 0)).await;
    advance_to(&clock, at(12, 0)).await;
    let msgs = fake.wait_for_messages(1, WAIT).await;
    assert!(
        msgs[0]
            .plain_text
            .starts_with("📋 DIGEST · 1 down\n2026-11-22 10:05 → 12:00 UTC"),
        "{}",
        msgs[0].plain_text
    );
    app.wait_notifications("sent", 1, WAIT).await;
    // Without the digest route, NodeDown goes to nobody (no route matches)
    // and no digest comes at 14:00; a canary on oncall shows time passed.
    let without = yaml(&fake, None)
        .replace("digest: 1h", "")
        .replace("  - match: ['job=\"node\"']\n    channels: [digest]\n", "");
    app.write_config(&without);
    let (status, body) = app.send_json("POST", "/-/reload", None).await;
    assert_eq!(status, 200, "{body}");
    advance_to(&clock, at(14, 0)).await;
    let mut canary = am_alert("Canary", "pg1:5432", "firing");
    canary["labels"]["team"] = json!("db");
    app.post_ok(&am_payload(vec![canary])).await;
    let msgs = fake.wait_for_messages(2, WAIT).await;
    assert!(msgs[1].plain_text.contains("Canary"), "{msgs:#?}");
    app.wait_notifications("sent", 2, WAIT).await;
    assert_eq!(fake.messages_to("77").len(), 1, "{:#?}", fake.messages());
}
both_dbs!(a_reload_changes_or_drops_the_schedule);

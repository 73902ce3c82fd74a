//! From the outbox to Telegram: retries, rate limits, failures kept and
//! re-sent, splitting, escaping, routing, and channel independence.

use std::time::Duration;

use serde_json::{json, Value};

use crate::both_dbs;
use crate::fake_telegram::{FakeFailure, FakeTelegram};
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(10);

async fn one_chat_app(db: Db, tg: &FakeTelegram, extra: &str) -> TestApp {
    let yaml = format!(
        "{FAST_DELIVERY}{extra}channels:\n{}",
        telegram_channel("oncall", tg, &["-100200"])
    );
    TestApp::spawn(db, &yaml).await
}

fn micros(v: &Value) -> i64 {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str().expect("time")).expect("rfc3339");
    t.timestamp_micros()
}

async fn rate_limit_is_retried_after_what_telegram_says(db: Db) {
    let tg = FakeTelegram::start("7:rate").await;
    tg.fail_next(1, FakeFailure::TooManyRequests { retry_after: 1 });
    let app = one_chat_app(db, &tg, "").await;
    app.post_ok(&am_payload(vec![am_alert("Busy", "a:1", "firing")]))
        .await;

    // After the 429 the entry waits at least the second Telegram asked for,
    // although the configured backoff is 50 ms.
    let deadline = tokio::time::Instant::now() + WAIT;
    let pending = loop {
        let p = app.notifications("pending").await;
        if p.first()
            .is_some_and(|n| n["last_error"].as_str().is_some_and(|e| e.contains("429")))
        {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 429 recorded: {p:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let wait = micros(&pending[0]["next_attempt_at"]) - micros(&pending[0]["created_at"]);
    assert!(
        wait >= 1_000_000,
        "retry scheduled after {wait} µs, Telegram said 1 s"
    );

    let msgs = tg.wait_for_messages(1, WAIT).await;
    assert!(msgs[0].plain_text.contains("Busy"));
    let sent = app.wait_notifications("sent", 1, WAIT).await;
    assert_eq!(sent[0]["attempts"], 2);
    assert_eq!(
        tg.rejections(),
        vec![(429, "Too Many Requests: retry after 1".to_string())]
    );
}
both_dbs!(rate_limit_is_retried_after_what_telegram_says);

async fn failing_channel_keeps_the_notification_as_failed_and_it_can_be_resent(db: Db) {
    let tg = FakeTelegram::start("7:down").await;
    tg.fail_next(3, FakeFailure::ServerError);
    let app = one_chat_app(db, &tg, "").await;
    app.post_ok(&am_payload(vec![am_alert("Lost", "a:1", "firing")]))
        .await;

    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(failed[0]["attempts"], 3, "max_attempts: 3");
    assert!(
        failed[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("502")),
        "{failed:#?}"
    );
    assert_eq!(failed[0]["channel"], "oncall");
    assert_eq!(failed[0]["destination"], "-100200");
    assert!(tg.messages().is_empty());
    assert_eq!(
        app.metric("alertrelay_outbox_notifications{channel=\"oncall\",state=\"failed\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric("alertrelay_notifications_total{channel=\"oncall\",outcome=\"failed\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric("alertrelay_notifications_total{channel=\"oncall\",outcome=\"retry\"}")
            .await,
        Some(2.0)
    );

    // Re-send: the channel works again now.
    let id = failed[0]["id"].as_i64().expect("id");
    let resp = app
        .http
        .post(format!("{}/api/v1/notifications/{id}/resend", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 202);
    tg.wait_for_messages(1, WAIT).await;
    app.wait_notifications("sent", 1, WAIT).await;
    assert!(app.notifications("failed").await.is_empty());
    assert_eq!(
        app.metric("alertrelay_outbox_notifications{channel=\"oncall\",state=\"failed\"}")
            .await,
        Some(0.0)
    );
    assert!(
        app.metric("alertrelay_delivery_latency_seconds_count{channel=\"oncall\"}")
            .await
            >= Some(1.0)
    );

    // Only failed notifications can be re-sent.
    let resp = app
        .http
        .post(format!("{}/api/v1/notifications/{id}/resend", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    let resp = app
        .http
        .post(format!("{}/api/v1/notifications/abc/resend", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
}
both_dbs!(failing_channel_keeps_the_notification_as_failed_and_it_can_be_resent);

#[tokio::test]
async fn a_wrong_bot_token_fails_at_once_without_retries() {
    let tg = FakeTelegram::start("7:right").await;
    let mut yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &tg, &["1"])
    );
    yaml = yaml.replace("7:right", "7:wrong");
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("X", "a:1", "firing")]))
        .await;
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(failed[0]["attempts"], 1, "401 is permanent");
    assert!(
        failed[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401") && !e.contains("7:wrong")),
        "no token in errors: {failed:#?}"
    );
}

#[tokio::test]
async fn an_unknown_chat_fails_alone_and_the_other_chat_gets_its_message() {
    let tg = FakeTelegram::start("7:x").await;
    tg.set_unknown_chats(&["-999"]);
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &tg, &["-999", "-100200"])
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("X", "a:1", "firing")]))
        .await;
    app.wait_notifications("failed", 1, WAIT).await;
    app.wait_notifications("sent", 1, WAIT).await;
    assert_eq!(tg.messages_to("-100200").len(), 1);
    assert!(tg
        .rejections()
        .iter()
        .any(|(s, d)| *s == 400 && d.contains("chat not found")));
}

#[tokio::test]
async fn refused_markup_is_resent_as_plain_text() {
    let tg = FakeTelegram::start("7:m").await;
    tg.fail_next(1, FakeFailure::RefuseMarkup);
    let app = one_chat_app(Db::Sqlite, &tg, "").await;
    app.post_ok(&am_payload(vec![am_alert("Markup", "a:1", "firing")]))
        .await;
    let msgs = tg.wait_for_messages(1, WAIT).await;
    assert_eq!(msgs[0].parse_mode, None, "sent again without parse_mode");
    assert!(msgs[0].text.starts_with("🔥 FIRING"), "{}", msgs[0].text);
    assert!(!msgs[0].text.contains("<b>"));
    let sent = app.wait_notifications("sent", 1, WAIT).await;
    assert_eq!(sent[0]["attempts"], 1, "one attempt, two requests");
}

#[tokio::test]
async fn hostile_content_is_escaped_and_accepted_by_telegram() {
    let tg = FakeTelegram::start("7:h").await;
    let app = one_chat_app(Db::Sqlite, &tg, "").await;
    let mut a = am_alert("<script>alert(1)</script>", "db&co:\"9100\"", "firing");
    a["annotations"] = json!({
        "summary": "50% <b>bold</b> & \"quoted\" 'single' </i>",
        "description": "Диск заполнен 磁盘已满 🔥 &amp; &nbsp; <a href=\"javascript:x\">x</a>",
    });
    a["labels"]["team"] = json!("<dba>");
    app.post_ok(&am_payload(vec![a])).await;
    let msgs = tg.wait_for_messages(1, WAIT).await;
    assert_eq!(
        msgs[0].parse_mode.as_deref(),
        Some("HTML"),
        "HTML accepted, no fallback needed"
    );
    let plain = &msgs[0].plain_text;
    assert!(plain.contains("<script>alert(1)</script>"), "{plain}");
    assert!(plain.contains("db&co:\"9100\""), "{plain}");
    assert!(
        plain.contains("50% <b>bold</b> & \"quoted\" 'single' </i>"),
        "{plain}"
    );
    assert!(
        plain.contains("Диск заполнен 磁盘已满 🔥 &amp; &nbsp; <a href=\"javascript:x\">x</a>"),
        "{plain}"
    );
    assert!(plain.contains("team=<dba>"), "{plain}");
    assert!(tg.rejections().is_empty());
}

#[tokio::test]
async fn a_long_group_is_split_into_numbered_parts_with_nothing_cut() {
    let tg = FakeTelegram::start("7:l").await;
    let app = one_chat_app(Db::Sqlite, &tg, "").await;
    let alerts: Vec<Value> = (0..40)
        .map(|i| {
            let mut a = am_alert("Flood", &format!("host-{i:02}:9100"), "firing");
            a["annotations"]["description"] = json!(format!(
                "{i}: {}",
                "disk & <inode> pressure; ".repeat(if i == 7 { 600 } else { 8 })
            ));
            a
        })
        .collect();
    app.post_ok(&am_payload(alerts)).await;
    app.wait_notifications("sent", 1, WAIT).await;
    let msgs = tg.messages();
    let n = msgs.len();
    assert!(n >= 4, "{n} parts");
    let mut all = String::new();
    for (i, m) in msgs.iter().enumerate() {
        assert!(
            m.plain_text.starts_with(&format!("({}/{n}) ", i + 1)),
            "part {i}: {}",
            &m.plain_text[..40.min(m.plain_text.len())]
        );
        assert!(m.plain_text.encode_utf16().count() <= 4096);
        // Rejoin what the splitter cut: drop the part number and line breaks.
        let body = m.plain_text.split_once(") ").map(|(_, b)| b).unwrap_or("");
        all.push_str(&body.replace('\n', ""));
    }
    for i in 0..40 {
        assert!(
            all.contains(&format!("host-{i:02}:9100")),
            "host-{i:02} missing"
        );
    }
    assert_eq!(
        all.matches("<inode> pressure;").count(),
        39 * 8 + 600,
        "every word of every description is there"
    );
    assert!(tg.rejections().is_empty(), "{:?}", tg.rejections());
}

#[tokio::test]
async fn a_split_message_resumes_after_the_parts_already_accepted() {
    let tg = FakeTelegram::start("7:r").await;
    let app = one_chat_app(Db::Sqlite, &tg, "").await;
    // Part 1 goes through, part 2 hits a 502, the retry must start at part 2.
    let alerts: Vec<Value> = (0..30)
        .map(|i| {
            let mut a = am_alert("Split", &format!("h{i}:1"), "firing");
            a["annotations"]["description"] = json!("x".repeat(500));
            a
        })
        .collect();
    tg.fail_next(1, FakeFailure::Accept);
    tg.fail_next(1, FakeFailure::ServerError);
    app.post_ok(&am_payload(alerts)).await;
    app.wait_notifications("sent", 1, WAIT).await;
    let msgs = tg.messages();
    let n = msgs.len();
    let numbers: Vec<String> = msgs
        .iter()
        .map(|m| m.plain_text.split(' ').next().unwrap_or("").to_string())
        .collect();
    let expected: Vec<String> = (1..=n).map(|i| format!("({i}/{n})")).collect();
    assert_eq!(numbers, expected, "each part exactly once, in order");
    assert_eq!(tg.rejections().len(), 1);
}

#[tokio::test]
async fn a_hanging_channel_does_not_hold_back_another() {
    let slow = FakeTelegram::start("7:slow").await;
    slow.fail_next(5, FakeFailure::Hang);
    let fast = FakeTelegram::start("7:fast").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}{}",
        telegram_channel("slow", &slow, &["1"]),
        telegram_channel("fast", &fast, &["2"])
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("Both", "a:1", "firing")]))
        .await;
    // The slow channel's request hangs for its 2 s timeout; the fast one is done long before.
    fast.wait_for_messages(1, Duration::from_millis(1500)).await;
    assert!(slow.messages().is_empty());
    let sent = app.wait_notifications("sent", 1, WAIT).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["channel"], "fast");
}

async fn routes_send_each_alert_where_its_labels_say(db: Db) {
    let dba = FakeTelegram::start("1:dba").await;
    let oncall = FakeTelegram::start("1:oncall").await;
    let audit = FakeTelegram::start("1:audit").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}{}{}routes:\n  - match: ['job=\"postgres\"']\n    channels: [dba]\n  - match: ['severity=~\"critical|warning\"', 'instance!~\"test-.*\"']\n    channels: [oncall]\n    continue: true\n  - match: ['source=\"alertmanager\"']\n    channels: [audit]\n",
        telegram_channel("dba", &dba, &["1"]),
        telegram_channel("oncall", &oncall, &["2"]),
        telegram_channel("audit", &audit, &["3"]),
    );
    let app = TestApp::spawn(db, &yaml).await;
    let mut pg = am_alert("PgDown", "pg1:5432", "firing");
    pg["labels"]["job"] = json!("postgres");
    let crit = am_alert("NodeDown", "web1:9100", "firing");
    let test_host = am_alert("NodeDown", "test-3:9100", "firing");
    let mut info = am_alert("Info", "web2:9100", "firing");
    info["labels"]["severity"] = json!("info");
    app.post_ok(&am_payload(vec![pg])).await;
    app.post_ok(&am_payload(vec![crit])).await;
    app.post_ok(&am_payload(vec![test_host])).await;
    app.post_ok(&am_payload(vec![info])).await;
    app.wait_notifications("sent", 5, WAIT).await;
    app.wait_idle().await;
    let texts = |f: &FakeTelegram| {
        f.messages()
            .iter()
            .map(|m| m.plain_text.clone())
            .collect::<Vec<_>>()
    };
    let (d, o, a) = (texts(&dba), texts(&oncall), texts(&audit));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].contains("PgDown"),
        "first match wins: pg goes to dba only"
    );
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(o[0].contains("web1:9100"));
    assert_eq!(
        a.len(),
        3,
        "critical continues to audit; test host and info reach audit directly: {a:?}"
    );
    assert!(
        a.iter().any(|t| t.contains("test-3:9100"))
            && a.iter().any(|t| t.contains("web2:9100"))
            && a.iter().any(|t| t.contains("web1:9100"))
    );
}
both_dbs!(routes_send_each_alert_where_its_labels_say);

#[tokio::test]
async fn send_resolved_false_keeps_resolves_out_of_that_channel() {
    let quiet = FakeTelegram::start("1:q").await;
    let loud = FakeTelegram::start("1:l").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}    send_resolved: false\n{}",
        telegram_channel("quiet", &quiet, &["1"]),
        telegram_channel("loud", &loud, &["2"])
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("X", "a:1", "firing")]))
        .await;
    app.post_ok(&am_payload(vec![am_alert("X", "a:1", "resolved")]))
        .await;
    loud.wait_for_messages(2, WAIT).await;
    app.wait_notifications("sent", 3, WAIT).await;
    assert_eq!(quiet.messages().len(), 1);
    assert!(quiet.messages()[0].plain_text.starts_with("🔥"));
}

#[tokio::test]
async fn one_message_per_group_listing_what_changed_and_counting_the_rest() {
    let tg = FakeTelegram::start("1:g").await;
    let app = one_chat_app(
        Db::Sqlite,
        &tg,
        "timezone: Asia/Shanghai\npublic_url: https://alerts.example.com\n",
    )
    .await;
    let group = |statuses: [&str; 3]| {
        am_payload(
            (0..3)
                .map(|i| am_alert("Disk", &format!("n{i}:9100"), statuses[i]))
                .collect(),
        )
    };
    app.post_ok(&group(["firing", "firing", "firing"])).await;
    app.post_ok(&group(["resolved", "firing", "firing"])).await;
    let msgs = tg.wait_for_messages(2, WAIT).await;
    let first = &msgs[0].plain_text;
    assert!(first.starts_with("🔥 FIRING · 3 alerts"), "{first}");
    assert!(
        first.contains("since 2026-11-22 10:00:00 CST"),
        "Asia/Shanghai: {first}"
    );
    let second = &msgs[1].plain_text;
    assert!(second.starts_with("✅ RESOLVED"), "{second}");
    assert!(
        second.contains("n0:9100") && !second.contains("n1:9100"),
        "{second}"
    );
    assert!(
        second.contains("+2 other alerts of this group still firing"),
        "{second}"
    );
    assert!(
        msgs[1]
            .text
            .contains("href=\"https://alerts.example.com/alerts/"),
        "{}",
        msgs[1].text
    );
}

/// Two replicas on one PostgreSQL database share the outbox: every
/// notification goes out once, whichever replica took the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_send_each_notification_once() {
    let tg = FakeTelegram::start("3:rep").await;
    tg.set_delay(Duration::from_millis(20));
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &tg, &["77"])
    );
    let a = TestApp::spawn(Db::Postgres, &yaml).await;
    let dir = tempfile::tempdir().expect("dir");
    let b = TestApp::spawn_with_storage(dir, a.storage_url.clone(), None, &yaml).await;
    for i in 0..30 {
        let app = if i % 2 == 0 { &a } else { &b };
        app.post_ok(&am_payload(vec![am_alert(
            "Replica",
            &format!("r{i}:1"),
            "firing",
        )]))
        .await;
    }
    a.wait_notifications("sent", 30, WAIT).await;
    a.wait_idle().await;
    b.wait_idle().await;
    let msgs = tg.messages();
    assert_eq!(msgs.len(), 30, "one message per webhook, no duplicates");
    for i in 0..30 {
        assert_eq!(
            msgs.iter()
                .filter(|m| m.plain_text.contains(&format!("r{i}:1")))
                .count(),
            1,
            "r{i}"
        );
    }
    let (_, metrics_a) = a.get_text("/metrics").await;
    let (_, metrics_b) = b.get_text("/metrics").await;
    let sent = |m: &str| {
        m.lines()
            .find(|l| {
                l.starts_with("alertrelay_notifications_total{channel=\"oncall\",outcome=\"sent\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(sent(&metrics_a) + sent(&metrics_b), 30.0);
}

/// A chat sees an alert's messages in the order they happened: with a slow
/// Telegram, four state changes of one alert posted back to back go out one
/// at a time per chat (FIRING, RESOLVED, FIRING, RESOLVED), in each of the
/// channel's two chats.
async fn one_chat_gets_its_messages_one_at_a_time_in_order(db: Db) {
    let tg = FakeTelegram::start("1:t").await;
    tg.set_delay(Duration::from_millis(150));
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n{}",
        telegram_channel("oncall", &tg, &["42", "43"])
    );
    let app = TestApp::spawn(db, &yaml).await;
    for (i, status) in ["firing", "resolved", "firing", "resolved"]
        .iter()
        .enumerate()
    {
        let mut alert = am_alert("Flappy", "web1:80", status);
        alert["startsAt"] = json!(format!("2026-11-22T0{}:00:00Z", i / 2 + 1));
        app.post_ok(&am_payload(vec![alert])).await;
    }
    let msgs = tg.wait_for_messages(8, Duration::from_secs(10)).await;
    for chat in ["42", "43"] {
        let seen: Vec<&str> = tg
            .messages_to(chat)
            .iter()
            .map(|m| {
                if m.plain_text.starts_with("🔥 FIRING") {
                    "FIRING"
                } else if m.plain_text.starts_with("✅ RESOLVED") {
                    "RESOLVED"
                } else {
                    "other"
                }
            })
            .collect();
        assert_eq!(
            seen,
            ["FIRING", "RESOLVED", "FIRING", "RESOLVED"],
            "chat {chat}"
        );
    }
    assert_eq!(msgs.len(), 8);
    assert_eq!(tg.max_in_flight_per_chat(), 1);
}
both_dbs!(one_chat_gets_its_messages_one_at_a_time_in_order);

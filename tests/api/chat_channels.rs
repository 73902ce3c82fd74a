//! WeChat Work robots and Slack incoming webhooks, against fakes that
//! validate like the real APIs.

use std::time::Duration;

use serde_json::json;

use crate::both_dbs;
use crate::fake_slack::FakeSlack;
use crate::fake_wecom::FakeWecom;
use crate::helpers::{am_alert, am_payload, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(10);
const HOSTILE: &str =
    "<script>x</script> & *bold* _it_ `code` [l](http://e) <font color=\"red\">磁盘已满 диск 🔥";

fn wecom_yaml(url: &str) -> String {
    format!(
        "{FAST_DELIVERY}timezone: Asia/Shanghai\npublic_url: https://alerts.example.com\nchannels:\n  - name: ops-wecom\n    type: wecom\n    webhook_url: \"{url}\"\n"
    )
}

async fn wecom_gets_markdown_for_firing_and_resolved(db: Db) {
    let robot = FakeWecom::start("robot-key-123").await;
    let app = TestApp::spawn(db, &wecom_yaml(&robot.webhook_url())).await;
    let mut a = am_alert("DiskFull", "db1:9100", "firing");
    a["annotations"]["description"] = json!(HOSTILE);
    app.post_ok(&am_payload(vec![a.clone()])).await;
    let mut r = a;
    r["status"] = json!("resolved");
    r["endsAt"] = json!("2026-11-22T02:12:00Z");
    app.post_ok(&am_payload(vec![r])).await;
    let got = robot.wait_for(2, WAIT).await;
    let firing = &got[0];
    assert!(
        firing.starts_with("<font color=\"warning\">**🔥 FIRING**</font>"),
        "{firing}"
    );
    assert!(firing.contains("**DiskFull**"), "{firing}");
    assert!(firing.contains("since 2026-11-22 10:00:00 CST"), "{firing}");
    // Markup from the alert is neutralised: no tag, no emphasis, no link.
    assert!(
        !firing.contains("<script>") && !firing.contains("<font color=\"red\">"),
        "{firing}"
    );
    assert!(
        firing.contains("\\*bold\\* \\_it\\_ \\`code\\` \\[l\\](http://e)"),
        "{firing}"
    );
    assert!(firing.contains("磁盘已满 диск 🔥"));
    assert!(
        firing.contains("[details](https://alerts.example.com/alerts/"),
        "{firing}"
    );
    let resolved = &got[1];
    assert!(
        resolved.starts_with("<font color=\"info\">**✅ RESOLVED**</font>"),
        "{resolved}"
    );
    assert!(resolved.contains("lasted 12m"), "{resolved}");
    assert_eq!(robot.answers(), [0, 0]);
}
both_dbs!(wecom_gets_markdown_for_firing_and_resolved);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_long_content_is_trimmed_with_a_note_not_refused() {
    let robot = FakeWecom::start("k").await;
    let app = TestApp::spawn(Db::Sqlite, &wecom_yaml(&robot.webhook_url())).await;
    let mut a = am_alert("Big", "h1", "firing");
    a["annotations"]["description"] = json!("磁盘已满 line of text\n".repeat(600));
    app.post_ok(&am_payload(vec![a])).await;
    let got = robot.wait_for(1, WAIT).await;
    assert!(got[0].len() <= 4096, "{} bytes", got[0].len());
    assert!(
        got[0].contains("trimmed to fit; full text: [details](https://alerts.example.com/alerts/"),
        "{}",
        &got[0][got[0].len() - 200..]
    );
    assert_eq!(robot.answers(), [0], "never refused for length");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_rate_limit_errcode_is_retried_and_a_bad_key_is_not() {
    let robot = FakeWecom::start("right-key").await;
    robot.answer_next(2, 45009);
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - {{ name: ok, type: wecom, webhook_url: \"{}\" }}\n",
        robot.webhook_url()
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    robot.wait_for(1, WAIT).await;
    assert_eq!(robot.answers(), [45009, 45009, 0]);
    let sent = app.wait_notifications("sent", 1, WAIT).await;
    assert_eq!(sent[0]["attempts"], 3);

    let wrong = robot.webhook_url_with_key("leaked-key-xyz");
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - {{ name: bad, type: wecom, webhook_url: \"{wrong}\" }}\n"
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(
        failed[0]["attempts"], 1,
        "HTTP 200 with errcode 93000 is a failure, not retried"
    );
    assert_eq!(failed[0]["destination"], "robot");
    let err = failed[0]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("errcode 93000"), "{err}");
    assert!(!err.contains("leaked-key-xyz"), "{err}");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(!metrics.contains("leaked-key-xyz"));
}

fn slack_yaml(url: &str) -> String {
    format!(
        "{FAST_DELIVERY}timezone: Europe/Moscow\npublic_url: https://alerts.example.com\nchannels:\n  - name: uptime-slack\n    type: slack\n    webhook_url: \"{url}\"\n"
    )
}

async fn slack_gets_coloured_blocks_with_a_text_fallback(db: Db) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(db, &slack_yaml(&slack.webhook_url())).await;
    let mut a = am_alert("NodeDown", "web1:9100", "firing");
    a["annotations"]["description"] = json!(HOSTILE);
    app.post_ok(&am_payload(vec![a.clone()])).await;
    let mut r = a;
    r["status"] = json!("resolved");
    r["endsAt"] = json!("2026-11-22T03:05:00Z");
    app.post_ok(&am_payload(vec![r])).await;
    let got = slack.wait_for(2, WAIT).await;

    let firing = &got[0].body;
    assert_eq!(firing["text"], "🔥 FIRING: NodeDown on web1:9100");
    let att = &firing["attachments"][0];
    assert_eq!(att["color"], "#c62828");
    assert_eq!(att["blocks"][0]["type"], "header");
    assert_eq!(
        att["blocks"][0]["text"]["text"],
        "🔥 FIRING: NodeDown on web1:9100"
    );
    let section = att["blocks"][1]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        section.starts_with("*NodeDown* · critical · `web1:9100`"),
        "{section}"
    );
    assert!(
        section.contains("&lt;script&gt;x&lt;/script&gt; &amp; *bold*"),
        "{section}"
    );
    assert!(
        section.contains(":clock3: since 2026-11-22 05:00:00 MSK"),
        "{section}"
    );
    assert!(section.contains("|details>"), "{section}");

    let resolved = &got[1].body;
    assert_eq!(resolved["attachments"][0]["color"], "#2e7d32");
    assert!(resolved["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("✅ RESOLVED"));
    let section = resolved["attachments"][0]["blocks"][1]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(section.contains("lasted 1h 5m"), "{section}");
}
both_dbs!(slack_gets_coloured_blocks_with_a_text_fallback);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_429_retry_after_is_honoured_and_long_text_fits_the_block_limits() {
    let slack = FakeSlack::start().await;
    slack.answer_next(1, 429, Some(1), "rate_limited");
    let app = TestApp::spawn(Db::Sqlite, &slack_yaml(&slack.webhook_url())).await;
    let mut a = am_alert("Huge", "h1", "firing");
    a["annotations"]["description"] = json!("ж".repeat(10_000));
    app.post_ok(&am_payload(vec![a])).await;
    let got = slack.wait_for(1, WAIT).await;
    let reqs = slack.requests();
    assert_eq!(reqs.iter().map(|r| r.1).collect::<Vec<_>>(), [429, 200]);
    assert!(
        reqs[1].0.duration_since(reqs[0].0) >= Duration::from_secs(1),
        "retried {:?} after a Retry-After of 1 s",
        reqs[1].0.duration_since(reqs[0].0)
    );
    let blocks = got[0].body["attachments"][0]["blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "section")
        .map(|b| {
            b["text"]["text"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', "")
        })
        .collect();
    assert_eq!(
        text.matches('ж').count(),
        10_000,
        "the description in full, over several sections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_refusal_fails_at_once_without_the_url() {
    let slack = FakeSlack::start().await;
    let wrong = slack
        .webhook_url()
        .replace("XXXXsecret", "revoked-secret-path");
    let app = TestApp::spawn(Db::Sqlite, &slack_yaml(&wrong)).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(failed[0]["attempts"], 1);
    let err = failed[0]["last_error"].as_str().unwrap_or_default();
    assert_eq!(err, "slack: HTTP 404: no_service");
}

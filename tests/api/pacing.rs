//! Pacing and backlog summaries: a burst to one Telegram chat goes out at
//! the platform's pace, what piles up is folded into one summary (resolved
//! first, nothing lost), and another chat is not held back.

use std::time::Duration;

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

fn paced_yaml(fake: &FakeTelegram, chats: &str) -> String {
    // The helper turns pacing off; here it is on, as by default.
    format!(
        "{FAST_DELIVERY}channels:\n  - name: oncall\n    type: telegram\n    bot_token: \"{}\"\n    api_url: {}\n    chat_ids: [{chats}]\n",
        fake.token(),
        fake.api_url()
    )
}

async fn a_burst_is_paced_and_folded_into_one_summary(db: Db) {
    let fake = FakeTelegram::start("9:pace").await;
    let app = TestApp::spawn(db, &paced_yaml(&fake, "-100500")).await;
    // Twelve alerts in twelve webhooks, as an outage makes every rule fire,
    // then the first one resolves.
    let posting = std::time::Instant::now();
    for i in 0..12 {
        app.post_ok(&am_payload(vec![am_alert(
            "NodeDown",
            &format!("web{i}:9100"),
            "firing",
        )]))
        .await;
    }
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web0:9100",
        "resolved",
    )]))
    .await;
    let posting = posting.elapsed();
    let sent = app.wait_notifications("sent", 13, WAIT).await;
    assert_eq!(sent.len(), 13, "every notification ends sent, none lost");
    let msgs = fake.messages();
    // Seen on a quiet machine: the first alert alone, then "📋 12 more
    // alerts: 11 firing, 1 resolved" with one line each, resolved first. At
    // one message a second, what was not sent while the webhooks came in
    // went as one summary (a loaded machine posts slower, so allow for it).
    assert!(
        (msgs.len() as f64) <= posting.as_secs_f64() + 3.0,
        "the backlog was folded, not sent one by one: {} messages after {posting:?} of posting",
        msgs.len()
    );
    // Never faster than one a second to the chat.
    for pair in msgs.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(950),
            "two messages {gap:?} apart"
        );
    }
    let summary = msgs
        .iter()
        .find(|m| m.plain_text.starts_with("📋"))
        .unwrap_or_else(|| panic!("a summary: {msgs:#?}"));
    assert!(
        summary.plain_text.contains("more alerts:"),
        "{}",
        summary.plain_text
    );
    // Every alert reached the chat, in a message of its own or a summary line.
    let all: String = msgs.iter().map(|m| m.plain_text.as_str()).collect();
    for i in 0..12 {
        assert!(
            all.contains(&format!("web{i}:9100")),
            "web{i} missing:\n{all}"
        );
    }
    // Resolved goes ahead of the rest within a summary that has one.
    let s = &msgs.last().expect("messages").plain_text;
    if s.contains("✅") {
        let resolved_at = s.find("✅").unwrap_or(0);
        let first_firing = s.find("🔥").unwrap_or(usize::MAX);
        assert!(resolved_at < first_firing, "{s}");
    }
    assert!(
        app.metric("alertrelay_notifications_total{channel=\"oncall\",outcome=\"folded\"}")
            .await
            .unwrap_or(0.0)
            >= 3.0
    );
}
both_dbs!(a_burst_is_paced_and_folded_into_one_summary);

/// One webhook with a firing and a resolved alert makes two entries for the
/// chat in one commit, so one claim of the outbox holds both. They are
/// folded with what follows all the same: an entry sent on its own after a
/// summary holding later ones would undo the order people read (here: the
/// resolve of web0 must not come last, alone, after the summary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_entries_claimed_at_once_are_folded_too() {
    let fake = FakeTelegram::start("9:once").await;
    let app = TestApp::spawn(Db::Sqlite, &paced_yaml(&fake, "-100600")).await;
    app.post_ok(&am_payload(vec![am_alert(
        "NodeDown",
        "web0:9100",
        "firing",
    )]))
    .await;
    fake.wait_for_messages(1, WAIT).await;
    app.post_ok(&am_payload(vec![
        am_alert("NodeDown", "web1:9100", "firing"),
        am_alert("NodeDown", "web0:9100", "resolved"),
    ]))
    .await;
    for i in 2..12 {
        app.post_ok(&am_payload(vec![am_alert(
            "NodeDown",
            &format!("web{i}:9100"),
            "firing",
        )]))
        .await;
    }
    let sent = app.wait_notifications("sent", 13, WAIT).await;
    assert_eq!(sent.len(), 13, "every notification ends sent, none lost");
    let msgs = fake.messages();
    let last = &msgs.last().expect("messages").plain_text;
    assert!(
        last.starts_with("📋") && last.contains("web0:9100"),
        "the resolve of web0 is in the summary, which comes last: {msgs:#?}"
    );
    let all: String = msgs.iter().map(|m| m.plain_text.as_str()).collect();
    for i in 0..12 {
        assert!(
            all.contains(&format!("web{i}:9100")),
            "web{i} missing:\n{all}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_chat_does_not_hold_back_another() {
    let fake = FakeTelegram::start("9:two").await;
    let app = TestApp::spawn(Db::Sqlite, &paced_yaml(&fake, "111, 222")).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    app.post_ok(&am_payload(vec![am_alert("B", "h2", "firing")]))
        .await;
    let msgs = fake.wait_for_messages(4, WAIT).await;
    let to =
        |chat: &str| -> Vec<_> { msgs.iter().filter(|m| m.chat_id == chat).cloned().collect() };
    let (a, b) = (to("111"), to("222"));
    assert_eq!((a.len(), b.len()), (2, 2), "{msgs:#?}");
    // Each chat's second message waits for its own slot (a second), and the
    // other chat's first message does not wait for it.
    assert!(a[1].at.duration_since(a[0].at) >= Duration::from_millis(950));
    assert!(b[0].at < a[1].at, "chat 222 waited for chat 111's pace");
    assert!(a[0].plain_text.contains('A') && a[1].plain_text.contains('B'));
}

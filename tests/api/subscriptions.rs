//! Telegram subscriptions and chat commands: chats register with /start,
//! narrow what they get with /subscribe, and everything survives a restart.
//! The bot is driven through the fake's getUpdates, as a user would.

use std::time::Duration;

use serde_json::{json, Value};

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, Db, TestApp, FAST_DELIVERY};

const WAIT: Duration = Duration::from_secs(20);

/// Chat 42 is configured; 100 and @alice may register; 555 may not.
fn yaml(fake: &FakeTelegram) -> String {
    yaml_allowing(fake, "[100, \"@alice\"]")
}

fn yaml_allowing(fake: &FakeTelegram, allow_from: &str) -> String {
    format!(
        "{FAST_DELIVERY}channels:\n  - name: oncall\n    type: telegram\n    pacing: false\n    bot_token: \"{}\"\n    api_url: {}\n    chat_ids: [42]\n    subscribers: true\n    commands: true\n    allow_from: {allow_from}\n",
        fake.token(),
        fake.api_url(),
    )
}

/// Waits until `chat` has at least `n` messages; returns them.
async fn wait_to(fake: &FakeTelegram, chat: i64, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got: Vec<String> = fake
            .messages_to(&chat.to_string())
            .into_iter()
            .map(|m| m.plain_text)
            .collect();
        if got.len() >= n {
            return got;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("chat {chat}: expected {n} messages, have {got:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A user in `chat` sends `text`; the bot's answer.
async fn ask(fake: &FakeTelegram, chat: i64, username: Option<&str>, text: &str) -> String {
    let before = fake.messages_to(&chat.to_string()).len();
    fake.user_says(chat, username, text);
    let got = wait_to(fake, chat, before + 1).await;
    got[before].clone()
}

fn alert(name: &str, instance: &str, severity: &str) -> Value {
    let mut a = am_alert(name, instance, "firing");
    a["labels"]["severity"] = json!(severity);
    a
}

/// Every sent notification's destination, for alerts named `name`.
async fn sent_to(app: &TestApp) -> Vec<String> {
    let mut d: Vec<String> = app
        .notifications("sent")
        .await
        .iter()
        .map(|n| n["destination"].as_str().unwrap_or_default().to_string())
        .collect();
    d.sort();
    d
}

async fn subscribe_narrows_what_a_chat_gets(db: Db) {
    let fake = FakeTelegram::start("7:subs").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;

    let hello = ask(&fake, 100, None, "/start").await;
    assert!(hello.contains("Welcome"), "{hello}");
    assert!(
        hello.contains("/subscribe"),
        "the welcome has the help: {hello}"
    );
    assert!(ask(&fake, 100, None, "/subscriptions@fake_bot")
        .await
        .contains("none — you get everything routed to this channel"));

    // No subscriptions: everything routed to the channel.
    app.post_ok(&am_payload(vec![alert("DiskFull", "db1", "critical")]))
        .await;
    let got = wait_to(&fake, 100, 3).await;
    assert!(got[2].contains("DiskFull"), "{got:#?}");
    wait_to(&fake, 42, 1).await;

    let ok = ask(&fake, 100, None, "/subscribe severity=\"critical\"").await;
    assert!(ok.contains("Subscribed"), "{ok}");
    app.post_ok(&am_payload(vec![alert("CpuHigh", "web1", "warning")]))
        .await;
    app.post_ok(&am_payload(vec![alert("MemHigh", "web1", "critical")]))
        .await;
    let configured = wait_to(&fake, 42, 3).await;
    assert!(configured[1].contains("CpuHigh") && configured[2].contains("MemHigh"));
    let got = wait_to(&fake, 100, 5).await;
    assert!(got[4].contains("MemHigh"), "{got:#?}");
    assert!(
        !got.iter().any(|m| m.contains("CpuHigh")),
        "a warning does not reach a chat subscribed to critical: {got:#?}"
    );

    // Plain text: a case-insensitive part of the alert name.
    let ok = ask(&fake, 100, None, "/unsubscribe all").await;
    assert!(ok.contains("gets everything"), "{ok}");
    let ok = ask(&fake, 100, None, "/subscribe disk").await;
    assert!(ok.contains("name contains"), "{ok}");
    let list = ask(&fake, 100, None, "/subscriptions").await;
    assert!(list.contains("1. name contains disk"), "{list}");
    app.post_ok(&am_payload(vec![alert("LoadHigh", "web2", "critical")]))
        .await;
    app.post_ok(&am_payload(vec![alert("DiskFull", "db2", "warning")]))
        .await;
    wait_to(&fake, 42, 5).await;
    let got = wait_to(&fake, 100, 9).await;
    assert!(
        got[8].contains("DiskFull") && got[8].contains("db2"),
        "{got:#?}"
    );
    assert!(!got.iter().any(|m| m.contains("LoadHigh")), "{got:#?}");

    // Two subscriptions: either one lets an alert through; /unsubscribe n
    // drops by the /subscriptions number.
    ask(&fake, 100, None, "/subscribe alertname=\"NetDown\"").await;
    let list = ask(&fake, 100, None, "/subscriptions").await;
    assert!(list.contains("2. alertname=\"NetDown\""), "{list}");
    assert!(ask(&fake, 100, None, "/unsubscribe 1")
        .await
        .contains("1 subscription(s) left"));
    assert!(ask(&fake, 100, None, "/unsubscribe 5")
        .await
        .contains("no subscription #5"));

    // Nothing left: everything again.
    ask(&fake, 100, None, "/unsubscribe all").await;
    app.post_ok(&am_payload(vec![alert("SwapFull", "web3", "info")]))
        .await;
    let got = wait_to(&fake, 100, 15).await;
    assert!(got[14].contains("SwapFull"), "{got:#?}");
    assert_eq!(fake.conflicts(), 0, "one poller: no overlapping getUpdates");
}
both_dbs!(subscribe_narrows_what_a_chat_gets);

async fn a_configured_chat_that_registers_gets_one_copy(db: Db) {
    let fake = FakeTelegram::start("7:once").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    assert!(ask(&fake, 42, None, "/start").await.contains("Welcome"));
    // It registered, and subscribing does not narrow a configured chat.
    let ok = ask(&fake, 42, None, "/subscribe Nothing").await;
    assert!(ok.contains("still gets everything"), "{ok}");
    assert!(ask(&fake, 100, None, "/start").await.contains("Welcome"));
    app.post_ok(&am_payload(vec![alert("DiskFull", "db1", "critical")]))
        .await;
    app.wait_notifications("sent", 2, WAIT).await;
    assert_eq!(sent_to(&app).await, vec!["100", "42"]);
    let to_42 = wait_to(&fake, 42, 3).await;
    assert_eq!(
        to_42.iter().filter(|m| m.contains("DiskFull")).count(),
        1,
        "{to_42:#?}"
    );
    let chats = app.store.list_chats().await.expect("chats");
    assert_eq!(chats.len(), 2);
}
both_dbs!(a_configured_chat_that_registers_gets_one_copy);

async fn a_chat_not_allowed_gets_one_refusal_per_command(db: Db) {
    let fake = FakeTelegram::start("7:deny").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    for text in ["/start", "/subscribe Disk", "/help", "/graph"] {
        let no = ask(&fake, 555, Some("mallory"), text).await;
        assert!(no.starts_with("Sorry"), "{text}: {no}");
        assert!(no.contains("555") && no.contains("allow_from"), "{no}");
    }
    // Plain chat is not a command: no answer.
    fake.user_says(555, Some("mallory"), "hello?");
    // A user allowed by @username may register from any chat id.
    assert!(ask(&fake, 77, Some("Alice"), "/start")
        .await
        .contains("Welcome"));
    fake.wait_updates_confirmed(WAIT).await;
    assert_eq!(fake.messages_to("555").len(), 4, "one refusal per command");
    let chats = app.store.list_chats().await.expect("chats");
    assert_eq!(chats.len(), 1, "nothing stored for 555: {chats:?}");
    assert_eq!(chats[0].chat_id, 77);
    assert_eq!(chats[0].username.as_deref(), Some("Alice"));

    app.post_ok(&am_payload(vec![alert("DiskFull", "db1", "critical")]))
        .await;
    app.wait_notifications("sent", 2, WAIT).await;
    assert_eq!(sent_to(&app).await, vec!["42", "77"]);
    assert_eq!(fake.messages_to("555").len(), 4, "no alert for 555");
}
both_dbs!(a_chat_not_allowed_gets_one_refusal_per_command);

async fn a_chat_dropped_from_allow_from_gets_nothing_more(db: Db) {
    let fake = FakeTelegram::start("7:dropped").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    assert!(ask(&fake, 100, None, "/start").await.contains("Welcome"));
    // A group let in by who sent /start (@alice), not by its own id.
    assert!(ask(&fake, -200, Some("alice"), "/start")
        .await
        .contains("Welcome"));
    fake.wait_updates_confirmed(WAIT).await;
    app.write_config(&yaml_allowing(&fake, "[\"@alice\"]"));
    let (status, body) = app.send_json("POST", "/-/reload", None).await;
    assert_eq!(status, 200, "{body}");
    app.post_ok(&am_payload(vec![alert("DiskFull", "db1", "critical")]))
        .await;
    app.wait_notifications("sent", 2, WAIT).await;
    assert_eq!(
        sent_to(&app).await,
        vec!["-200", "42"],
        "100 is no longer allowed"
    );
    let no = ask(&fake, 100, None, "/subscriptions").await;
    assert!(no.starts_with("Sorry"), "{no}");
}
both_dbs!(a_chat_dropped_from_allow_from_gets_nothing_more);

async fn stop_unregisters_a_chat(db: Db) {
    let fake = FakeTelegram::start("7:stop").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    ask(&fake, 100, None, "/start").await;
    ask(&fake, 100, None, "/subscribe Disk").await;
    let bye = ask(&fake, 100, None, "/stop").await;
    assert!(bye.contains("unregistered"), "{bye}");
    assert!(app.store.list_chats().await.expect("chats").is_empty());
    assert!(ask(&fake, 100, None, "/stop")
        .await
        .contains("was not registered"));
    app.post_ok(&am_payload(vec![alert("DiskFull", "db1", "critical")]))
        .await;
    app.wait_notifications("sent", 1, WAIT).await;
    assert_eq!(sent_to(&app).await, vec!["42"]);
    // Registering again starts afresh: no subscriptions.
    assert!(ask(&fake, 100, None, "/start").await.contains("Welcome!"));
    assert!(ask(&fake, 100, None, "/subscriptions")
        .await
        .contains("none"));
    // Blocking the bot unregisters the chat too (sends would only fail).
    fake.user_blocks_bot(100);
    fake.wait_updates_confirmed(WAIT).await;
    assert!(app.store.list_chats().await.expect("chats").is_empty());
}
both_dbs!(stop_unregisters_a_chat);

async fn a_bad_matcher_is_refused_and_nothing_stored(db: Db) {
    let fake = FakeTelegram::start("7:bad").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    ask(&fake, 100, None, "/start").await;
    for bad in [
        "/subscribe severity=~\"(\"",
        "/subscribe severity=\"critical",
        "/subscribe",
    ] {
        let no = ask(&fake, 100, None, bad).await;
        assert!(no.contains("Usage: /subscribe"), "{bad}: {no}");
    }
    let no = ask(&fake, 100, None, "/subscribe severity=~\"(\"").await;
    assert!(no.contains("not a valid matcher"), "{no}");
    // Markup in what the user typed comes back escaped, as text.
    let no = ask(&fake, 100, None, "/subscribe <b>=\"x\"").await;
    assert!(no.contains("not a valid matcher"), "{no}");
    let chats = app.store.list_chats().await.expect("chats");
    assert!(chats[0].subscriptions.is_empty(), "{chats:?}");
    assert!(ask(&fake, 100, None, "/subscriptions")
        .await
        .contains("none"));
}
both_dbs!(a_bad_matcher_is_refused_and_nothing_stored);

async fn registrations_and_the_update_offset_survive_a_restart(db: Db) {
    let fake = FakeTelegram::start("7:restart").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    ask(&fake, 100, None, "/start").await;
    ask(&fake, 100, None, "/subscribe Disk").await;
    fake.wait_updates_confirmed(WAIT).await;
    let (dir, url, schema) = app.stop().await;

    let app = TestApp::spawn_with_storage(dir, url, schema, &yaml(&fake)).await;
    let list = ask(&fake, 100, None, "/subscriptions").await;
    assert!(list.contains("1. name contains disk"), "{list}");
    fake.wait_updates_confirmed(WAIT).await;
    assert_eq!(
        fake.messages_to("100").len(),
        3,
        "no command answered twice: {:#?}",
        fake.messages_to("100")
    );
    app.post_ok(&am_payload(vec![alert("CpuHigh", "web1", "critical")]))
        .await;
    app.post_ok(&am_payload(vec![alert("DiskFull", "db1", "critical")]))
        .await;
    wait_to(&fake, 42, 2).await;
    let got = wait_to(&fake, 100, 4).await;
    assert!(got[3].contains("DiskFull"), "{got:#?}");
    assert!(!got.iter().any(|m| m.contains("CpuHigh")), "{got:#?}");
}
both_dbs!(registrations_and_the_update_offset_survive_a_restart);

async fn commands_not_built_yet_say_so(db: Db) {
    let fake = FakeTelegram::start("7:later").await;
    let _app = TestApp::spawn(db, &yaml(&fake)).await;
    for c in ["/graph", "/graph@fake_bot"] {
        let answer = ask(&fake, 42, None, c).await;
        assert!(answer.contains("not supported yet"), "{c}: {answer}");
    }
    let answer = ask(&fake, 42, None, "/frobnicate").await;
    assert!(answer.contains("do not know /frobnicate"), "{answer}");
    // Addressed to another bot in a group: not for us, no answer.
    fake.user_says(42, None, "/help@other_bot");
    let answer = ask(&fake, 42, None, "/help@fake_bot").await;
    assert!(answer.starts_with("Commands"), "{answer}");
}
both_dbs!(commands_not_built_yet_say_so);

async fn alerts_and_ack_from_the_chat(db: Db) {
    let fake = FakeTelegram::start("7:ack").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    assert!(ask(&fake, 42, None, "/alerts")
        .await
        .contains("Nothing is firing"));
    app.post_ok(&am_payload(vec![alert("DiskFull", "db1", "critical")]))
        .await;
    // The alert's own message first, so it is not taken for an answer.
    wait_to(&fake, 42, 2).await;
    let id = app.alert_on("db1").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let list = ask(&fake, 42, None, "/alerts").await;
    assert!(list.contains("DiskFull") && list.contains(&id), "{list}");
    let ok = ask(
        &fake,
        42,
        Some("liwei"),
        &format!("/ack {id} swapping the disk"),
    )
    .await;
    assert!(
        ok.contains("Acknowledged DiskFull as @liwei: swapping the disk"),
        "{ok}"
    );
    let a = app.alert_on("db1").await;
    assert_eq!(a["ack"]["by"], "@liwei");
    assert_eq!(a["ack"]["memo"], "swapping the disk");
    assert!(ask(&fake, 42, None, "/ack nope")
        .await
        .contains("no alert with id"));
}
both_dbs!(alerts_and_ack_from_the_chat);

async fn a_reload_restarts_the_poller_without_answering_twice(db: Db) {
    let fake = FakeTelegram::start("7:reload").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    assert!(ask(&fake, 100, None, "/start").await.contains("Welcome"));
    fake.wait_updates_confirmed(WAIT).await;
    app.write_config(&yaml(&fake));
    let (status, body) = app.send_json("POST", "/-/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(ask(&fake, 100, None, "/subscriptions")
        .await
        .contains("none"));
    fake.wait_updates_confirmed(WAIT).await;
    assert_eq!(
        fake.messages_to("100").len(),
        2,
        "each command answered once"
    );
}
both_dbs!(a_reload_restarts_the_poller_without_answering_twice);

/// Two replicas on one PostgreSQL: one polls (the lease), every command is
/// answered once, and when it stops the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_poller() {
    let fake = FakeTelegram::start("7:replicas").await;
    let a = TestApp::spawn(Db::Postgres, &yaml(&fake)).await;
    let b = TestApp::spawn_with_storage(
        tempfile::tempdir().expect("dir"),
        a.storage_url.clone(),
        None,
        &yaml(&fake),
    )
    .await;
    for _ in 0..4 {
        assert!(ask(&fake, 100, None, "/help").await.starts_with("Commands"));
    }
    fake.wait_updates_confirmed(WAIT).await;
    assert_eq!(
        fake.messages_to("100").len(),
        4,
        "each command answered once"
    );
    assert_eq!(fake.conflicts(), 0, "never two getUpdates at once");
    let (_dir, _url, schema) = a.stop().await;
    // The lease was given up: the other replica answers now.
    assert!(ask(&fake, 100, None, "/help").await.starts_with("Commands"));
    fake.wait_updates_confirmed(WAIT).await;
    assert_eq!(fake.messages_to("100").len(), 5);
    drop(b);
    if let Some(schema) = schema {
        if let Ok(pool) = sqlx::PgPool::connect(&crate::helpers::pg_admin_url()).await {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await;
        }
    }
}

async fn silences_from_the_chat(db: Db) {
    let fake = FakeTelegram::start("7:silence").await;
    let app = TestApp::spawn(db, &yaml(&fake)).await;
    let bad = ask(&fake, 42, None, "/silence instance=\"db1\" soon").await;
    assert!(bad.starts_with("Not silenced: duration"), "{bad}");
    let ok = ask(
        &fake,
        42,
        Some("liwei"),
        "/silence instance=\"db1\" 2h disk swap",
    )
    .await;
    assert!(
        ok.contains("Silence #") && ok.contains("for 2h more"),
        "{ok}"
    );
    let id: String = ok
        .split('#')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("id")
        .to_string();
    let list = ask(&fake, 42, None, "/silences").await;
    assert!(
        list.contains("instance=\"db1\"") && list.contains("disk swap") && list.contains("@liwei"),
        "{list}"
    );
    let before = fake.messages_to("42").len();
    app.post_ok(&am_payload(vec![
        alert("DiskFull", "db1", "critical"),
        alert("DiskFull", "db2", "critical"),
    ]))
    .await;
    let got = wait_to(&fake, 42, before + 1).await;
    assert!(
        got[before].contains("db2") && !got[before].contains("db1"),
        "{got:#?}"
    );
    // /status is the digest now: db2 down, db1 muted apart.
    let status = ask(&fake, 42, None, "/status").await;
    assert!(status.starts_with("📋 DIGEST · 1 down\n"), "{status}");
    assert!(status.contains("everything routed to oncall"), "{status}");
    assert!(
        status.contains("🔴 Down (1)\n• db2 down since "),
        "{status}"
    );
    assert!(
        status.contains("🔇 Muted by a silence (1)\n• db1 down since "),
        "{status}"
    );
    // The answer, and what the silence held back and still fires, in
    // either order (the scheduler handles the end on its next tick).
    fake.user_says(42, None, &format!("/unsilence {id}"));
    let got = wait_to(&fake, 42, before + 4).await;
    let after = &got[before + 2..];
    assert!(after.iter().any(|m| m.contains("ended")), "{after:#?}");
    assert!(
        after
            .iter()
            .any(|m| m.contains("FIRING") && m.contains("db1")),
        "{after:#?}"
    );
    let status = ask(&fake, 42, None, "/status").await;
    assert!(status.starts_with("📋 DIGEST · 2 down\n"), "{status}");
    assert!(!status.contains("Muted"), "{status}");
    assert!(ask(&fake, 42, None, &format!("/unsilence {id}"))
        .await
        .contains("no active or pending silence"));
}
both_dbs!(silences_from_the_chat);

/// On a channel with a digest route, /status is that digest so far: the
/// period since its last digest, laid out as the scheduler sends it, and
/// nothing of the alerts other routes send here.
async fn status_on_a_digest_channel_is_its_digest_so_far(db: Db) {
    let fake = FakeTelegram::start("9:status-digest").await;
    let config = format!(
        "{}routes:\n  - match: ['source=\"alertmanager\"', 'team=\"web\"']\n    channels: [oncall]\n    digest: 1h\n",
        yaml(&fake)
    );
    let app = TestApp::spawn(db, &config).await;
    let mut web1 = am_alert("ProbeDown", "web1:443", "firing");
    web1["labels"]["team"] = json!("web");
    let mut web2 = am_alert("ProbeDown", "web2:443", "resolved");
    web2["labels"]["team"] = json!("web");
    let db1 = am_alert("DiskFull", "db1", "firing");
    app.post_ok(&am_payload(vec![web1, web2, db1])).await;
    let status = ask(&fake, 42, None, "/status").await;
    assert!(
        status.starts_with("📋 DIGEST · 1 down, 1 recovered\n"),
        "{status}"
    );
    assert!(
        status.contains("source=\"alertmanager\", team=\"web\""),
        "{status}"
    );
    assert!(
        status.contains("• web1:443 down since ") && status.contains("web2:443"),
        "{status}"
    );
    assert!(!status.contains("db1"), "{status}");
}
both_dbs!(status_on_a_digest_channel_is_its_digest_so_far);

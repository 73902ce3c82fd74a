//! The `email` channel against a real SMTP server process: STARTTLS with a
//! private CA, AUTH, recipients from `to` and the contact book, both MIME
//! parts, the time zone; 5xx fails naming the recipient, 4xx is retried.

use std::time::Duration;

use mail_parser::MessageParser;
use serde_json::json;

use crate::both_dbs;
use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, telegram_channel, Db, TestApp, FAST_DELIVERY};
use crate::smtp_server::{trust_test_ca, Received, SmtpMode, SmtpServer};

const WAIT: Duration = Duration::from_secs(15);

struct Mail {
    subject: String,
    text: String,
    html: String,
    from: String,
    to_header: String,
}

fn parse(r: &Received) -> Mail {
    let m = MessageParser::default()
        .parse(r.data.as_bytes())
        .expect("a MIME message");
    let addr = |a: Option<&mail_parser::Address>| {
        a.map(|a| {
            a.iter()
                .map(|x| x.address().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    Mail {
        subject: m.subject().unwrap_or_default().to_string(),
        text: m.body_text(0).map(|t| t.to_string()).unwrap_or_default(),
        html: m.body_html(0).map(|t| t.to_string()).unwrap_or_default(),
        from: addr(m.from()),
        to_header: addr(m.to()),
    }
}

fn mail_yaml(server: &SmtpServer, scheme: &str, extra: &str) -> String {
    format!(
        "{FAST_DELIVERY}timezone: Asia/Shanghai\npublic_url: https://alerts.example.com\n\
channels:\n  - name: dba-mail\n    type: email\n    smtp: \"{scheme}://alert%40bot:s3cr%3At@127.0.0.1:{}\"\n    from: \"Alerts <alerts@example.com>\"\n{extra}",
        server.port
    )
}

const CONTACTS: &str = "contacts:\n  - { name: Li Wei, email: li@example.com, telegram: \"@liwei\", groups: [dba] }\n  - { name: Bob, email: bob@example.com, groups: [dba, web] }\n  - { name: Carol, email: carol@example.com, groups: [web] }\n  - { name: No Mail, groups: [dba] }\n";

async fn starttls_mail_reaches_to_and_the_team_with_both_parts(db: Db) {
    trust_test_ca();
    let server = SmtpServer::start(SmtpMode::RequireStartTls, Some(("alert@bot", "s3cr:t")));
    let yaml = mail_yaml(
        &server,
        "smtp",
        &format!("    starttls: required\n    to: [oncall@example.com]\n    to_group: \"{{{{ labels.team }}}}\"\n{CONTACTS}"),
    );
    let app = TestApp::spawn(db, &yaml).await;
    let mut a = am_alert("DiskFull", "db1:9100", "firing");
    a["labels"]["team"] = json!("dba");
    a["annotations"]["description"] =
        json!("<script>alert(1)</script> & \"quotes\" — 磁盘已满, диск заполнен 🔥");
    app.post_ok(&am_payload(vec![a.clone()])).await;
    let got = server.wait_for(1, WAIT).await;

    let r = &got[0];
    assert!(r.tls, "sent over STARTTLS");
    assert_eq!(r.auth_user.as_deref(), Some("alert@bot"));
    assert_eq!(r.mail_from, "alerts@example.com");
    let mut rcpt = r.rcpt_tos.clone();
    rcpt.sort();
    // `to`, then every dba contact with an address; nobody twice, nobody else.
    assert_eq!(
        rcpt,
        ["bob@example.com", "li@example.com", "oncall@example.com"]
    );
    let m = parse(r);
    assert_eq!(m.from, "alerts@example.com");
    assert_eq!(
        m.to_header.split(", ").count(),
        3,
        "one mail, all recipients on it"
    );
    assert_eq!(m.subject, "[FIRING] critical DiskFull on db1:9100");
    // 02:00 UTC is 10:00 in Shanghai.
    assert!(
        m.text.contains("Since:    2026-11-22 10:00:00 CST"),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("<script>alert(1)</script> & \"quotes\" — 磁盘已满, диск заполнен 🔥"),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("Details:  https://alerts.example.com/alerts/"),
        "{}",
        m.text
    );
    assert!(
        m.html
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; — 磁盘已满"),
        "{}",
        m.html
    );
    assert!(
        !m.html.contains("<script>"),
        "nothing from the alert is markup"
    );
    assert!(m.html.contains("2026-11-22 10:00:00 CST"));
    assert!(m.html.contains("#c62828"), "firing is red");
    assert!(!m.html.contains("src=\"http"), "no external assets");

    let mut resolved = a;
    resolved["status"] = json!("resolved");
    resolved["endsAt"] = json!("2026-11-22T02:12:00Z");
    app.post_ok(&am_payload(vec![resolved])).await;
    let got = server.wait_for(2, WAIT).await;
    let m = parse(&got[1]);
    assert_eq!(m.subject, "[RESOLVED] critical DiskFull on db1:9100");
    assert!(
        m.text
            .contains("Lasted:   12m (2026-11-22 10:00:00 CST -> 2026-11-22 10:12:00 CST)"),
        "{}",
        m.text
    );
    assert!(m.html.contains("#2e7d32"), "resolved is green");
    // The server has both mails; the outbox records them sent just after.
    let sent = app.wait_notifications("sent", 2, WAIT).await;
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|n| n["destination"] == "mail"));
}
both_dbs!(starttls_mail_reaches_to_and_the_team_with_both_parts);

async fn a_refused_recipient_fails_the_mail_and_is_named(db: Db) {
    let server = SmtpServer::start(SmtpMode::Plain, None);
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - name: m\n    type: email\n    smtp: smtp://127.0.0.1:{}\n    starttls: never\n    from: alerts@example.com\n    to: [ok@example.com, reject-nobody@example.com]\n",
        server.port
    );
    let app = TestApp::spawn(db, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(failed[0]["attempts"], 1, "a 5xx is not retried: {failed:?}");
    let err = failed[0]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("550"), "{err}");
    assert!(err.contains("reject-nobody@example.com"), "{err}");
    assert!(server.received().is_empty());
}
both_dbs!(a_refused_recipient_fails_the_mail_and_is_named);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_retried_until_max_attempts() {
    let server = SmtpServer::start(SmtpMode::Plain, None);
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - name: m\n    type: email\n    smtp: smtp://127.0.0.1:{}\n    from: alerts@example.com\n    to: [tempfail-full@example.com]\n",
        server.port
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(failed[0]["attempts"], 3, "{failed:?}");
    let err = failed[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("451") && err.contains("tempfail-full@example.com"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_required_never_sends_in_clear() {
    let server = SmtpServer::start(SmtpMode::Plain, None);
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - name: m\n    type: email\n    smtp: smtp://127.0.0.1:{}\n    starttls: required\n    from: alerts@example.com\n    to: [a@example.com]\n",
        server.port
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    let err = failed[0]["last_error"].as_str().unwrap_or_default();
    assert!(err.to_lowercase().contains("tls"), "{err}");
    assert!(server.received().is_empty(), "nothing went out in clear");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtps_and_opportunistic_starttls_deliver() {
    trust_test_ca();
    let smtps = SmtpServer::start(SmtpMode::Smtps, Some(("alert@bot", "s3cr:t")));
    let opportunistic = SmtpServer::start(SmtpMode::StartTls, None);
    let plain = SmtpServer::start(SmtpMode::Plain, None);
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n\
  - {{ name: tls, type: email, smtp: \"smtps://alert%40bot:s3cr%3At@127.0.0.1:{}\", from: a@example.com, to: [x@example.com] }}\n\
  - {{ name: opp, type: email, smtp: \"smtp://127.0.0.1:{}\", from: a@example.com, to: [x@example.com] }}\n\
  - {{ name: old, type: email, smtp: \"smtp://127.0.0.1:{}\", starttls: opportunistic, from: a@example.com, to: [x@example.com] }}\n",
        smtps.port, opportunistic.port, plain.port
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    let a = smtps.wait_for(1, WAIT).await;
    let b = opportunistic.wait_for(1, WAIT).await;
    let c = plain.wait_for(1, WAIT).await;
    assert!(a[0].tls && a[0].auth_user.as_deref() == Some("alert@bot"));
    assert!(b[0].tls, "STARTTLS used when offered");
    assert!(
        !c[0].tls,
        "opportunistic falls back to plain when not offered"
    );
}

/// A mail server that accepts connections and never says a word.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_mail_server_does_not_hold_back_telegram() {
    let fake = FakeTelegram::start("123:mail").await;
    let (port, _server) = silent_server().await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - {{ name: m, type: email, smtp: \"smtp://u:s3cr@127.0.0.1:{port}\", from: a@example.com, to: [x@example.com] }}\n{}",
        telegram_channel("tg", &fake, &["1"])
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("A", "h1", "firing")]))
        .await;
    fake.wait_for_messages(1, WAIT).await;
    // Telegram got its message while the mail was still waiting for a
    // greeting (the 2 s timeout has not even struck once).
    let mail_done: Vec<_> = app
        .notifications("sent")
        .await
        .into_iter()
        .chain(app.notifications("failed").await)
        .filter(|n| n["channel"] == "m")
        .collect();
    assert!(mail_done.is_empty(), "{mail_done:?}");
    let failed = app.wait_notifications("failed", 1, WAIT).await;
    assert_eq!(failed[0]["channel"], "m");
    let err = failed[0]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("email:"), "{err}");
    assert!(!err.contains("s3cr"), "{err}");
}

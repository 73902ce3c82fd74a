//! `proxy_url`: Telegram reached only through an HTTP proxy with credentials,
//! as operators in several countries must.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::fake_telegram::FakeTelegram;
use crate::helpers::{am_alert, am_payload, Db, TestApp, FAST_DELIVERY};

/// A minimal forward proxy: reads the request head, records it, connects to
/// the host of the absolute-form URI and pipes both ways. Refuses requests
/// without the expected Proxy-Authorization with 407, as a real proxy does.
async fn start_proxy(expected_auth: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                seen.lock().expect("lock").push(text.clone());
                let authorized = text.lines().any(|l| {
                    l.eq_ignore_ascii_case(&format!("proxy-authorization: {expected_auth}"))
                });
                if !authorized {
                    let _ = client.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                    return;
                }
                let Some(target) = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|u| u.strip_prefix("http://"))
                    .and_then(|u| u.split('/').next())
                else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("127.0.0.1:{}", addr.port()), heads)
}

#[tokio::test]
async fn telegram_through_an_http_proxy_with_credentials() {
    let tg = FakeTelegram::start("5:proxied").await;
    // base64("relay:pa ss"): the URL's percent-encoding is decoded.
    let (proxy, heads) = start_proxy("Basic cmVsYXk6cGEgc3M=").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - name: oncall\n    type: telegram\n    bot_token: \"5:proxied\"\n    api_url: {}\n    chat_ids: [7]\n    proxy_url: http://relay:pa%20ss@{proxy}\n",
        tg.api_url()
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("ViaProxy", "a:1", "firing")]))
        .await;
    let msgs = tg.wait_for_messages(1, Duration::from_secs(10)).await;
    assert!(msgs[0].plain_text.contains("ViaProxy"));
    let heads = heads.lock().expect("lock").clone();
    assert!(!heads.is_empty(), "the request went through the proxy");
    assert!(
        heads[0].starts_with(&format!("POST {}/bot5:proxied/sendMessage", tg.api_url())),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn a_proxy_refusing_the_credentials_is_retried_then_kept_as_failed() {
    let tg = FakeTelegram::start("5:p").await;
    let (proxy, heads) = start_proxy("Basic bm9ib2R5").await;
    let yaml = format!(
        "{FAST_DELIVERY}channels:\n  - name: oncall\n    type: telegram\n    bot_token: \"5:p\"\n    api_url: {}\n    chat_ids: [7]\n    proxy_url: http://wrong:creds@{proxy}\n",
        tg.api_url()
    );
    let app = TestApp::spawn(Db::Sqlite, &yaml).await;
    app.post_ok(&am_payload(vec![am_alert("Blocked", "a:1", "firing")]))
        .await;
    let failed = app
        .wait_notifications("failed", 1, Duration::from_secs(10))
        .await;
    assert!(
        failed[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("407")),
        "{failed:#?}"
    );
    assert!(tg.messages().is_empty());
    assert!(!heads.lock().expect("lock").is_empty());
}

//! What the test binaries that run real processes share.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::Child;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// Kills and reaps a child process (from a guard's `Drop`, also on panic).
pub fn stop_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Serves `app` on a free loopback port for the rest of the test (the
/// fake platforms and sinks).
pub async fn serve_on_loopback(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Polls `got` until it holds `n` items; fails naming `what` after `timeout`.
pub async fn wait_for_items<T>(
    what: &str,
    n: usize,
    timeout: std::time::Duration,
    got: impl Fn() -> Vec<T>,
) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let items = got();
        if items.len() >= n {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} {what}, have {}",
            items.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

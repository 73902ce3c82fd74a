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

//! The command line as an operator runs it: the real binary.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alertrelay"))
}

mod common;

use common::free_port;

#[test]
fn check_config_accepts_the_example_with_a_summary() {
    let out = bin()
        .args(["check-config", "examples/alertrelay.yml"])
        .env("INGEST_TOKEN", "i")
        .env("API_TOKEN", "a")
        .env("TELEGRAM_BOT_TOKEN", "1:t")
        .env("AUDIT_HOOK_KEY", "k")
        .env("SMTP_PASSWORD", "p")
        .env("WECOM_KEY", "w")
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/X",
        )
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    assert!(
        stdout.starts_with("config OK: listen 127.0.0.1:9099"),
        "{stdout}"
    );
    assert!(stdout.contains("oncall (telegram)"), "{stdout}");
    assert!(stdout.contains("audit (webhook)"), "{stdout}");
    assert!(stdout.contains("dba-mail (email)"), "{stdout}");
    assert!(stdout.contains("ops-wecom (wecom)"), "{stdout}");
    assert!(stdout.contains("uptime-slack (slack)"), "{stdout}");
}

#[test]
fn check_config_lists_every_error_with_file_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, "listen: nowhere\nchannels:\n  - name: x\n    type: telegram\n    bot_token: \"${UNSET_VAR_FOR_TEST}\"\n    chat_ids: [1]\nthrottle: 5m\n").expect("write");
    let out = bin()
        .arg("check-config")
        .arg(&path)
        .env_remove("UNSET_VAR_FOR_TEST")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}: line 1: listen: `nowhere` is not an address"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{file}: line 5: channels[0].bot_token: environment variable UNSET_VAR_FOR_TEST is not set")), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}: line 7: throttle: unknown key")),
        "{stderr}"
    );
    assert!(stderr.contains("3 error(s)"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = bin()
        .args(["check-config", "/nonexistent/alertrelay.yml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn serve_refuses_a_bad_config_with_the_same_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, "timezone: Nowhere/City\n").expect("write");
    let out = bin()
        .arg("serve")
        .arg("-c")
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 1: timezone: `Nowhere/City` is not an IANA time zone"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("alertrelay.db").exists(),
        "nothing half-started"
    );
}

#[test]
fn serve_beyond_loopback_without_credentials_refuses_to_start() {
    let dir = tempfile::tempdir().expect("dir");
    let out = bin()
        .args(["serve", "-H", "0.0.0.0", "-p", "0"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ingest") && stderr.contains("allow_anonymous"),
        "{stderr}"
    );
    assert!(!dir.path().join("alertrelay.db").exists());
}

#[test]
fn hash_password_makes_an_argon2id_string_the_config_accepts() {
    let mut child = bin()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.yml");
    std::fs::write(
        &path,
        format!("ui:\n  users:\n    - {{ username: admin, password_hash: \"{hash}\" }}\n"),
    )
    .expect("write");
    let check = bin().arg("check-config").arg(&path).output().expect("run");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let empty = bin()
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(empty.status.code(), Some(1));
}

#[test]
fn send_test_reports_an_unknown_channel() {
    let out = bin()
        .args(["send-test", "--channel", "nope"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no channel named \"nope\""));
}

#[test]
fn serve_on_embedded_defaults_stores_alerts_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let log = dir.path().join("alertrelay.log");
    let mut child = bin()
        .args(["serve", "-p", &port.to_string(), "-l"])
        .arg(&log)
        .current_dir(dir.path())
        .spawn()
        .expect("spawn");
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while client
        .get(format!("{url}/readyz"))
        .send()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not ready; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dir.path().join("alertrelay.db").exists(),
        "SQLite file in the working directory"
    );
    let body = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Smoke"},"startsAt":"2026-11-22T10:00:00Z"}]}"#;
    let resp = client
        .post(format!("{url}/webhook/alertmanager"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().expect("body"),
        r#"{"accepted":1,"status":"ok"}"#
    );
    let alerts: serde_json::Value = client
        .get(format!("{url}/api/v1/alerts"))
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(alerts["items"][0]["labels"]["alertname"], "Smoke");

    // A second process on the same file is refused at start, saying why
    // (the fingerprint index lives in the first one's memory).
    let second = bin()
        .args(["serve", "-p", &free_port().to_string()])
        .current_dir(dir.path())
        .output()
        .expect("second serve");
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("in use by another alertrelay process"),
        "{said}"
    );

    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let logs = std::fs::read_to_string(&log).expect("log file");
    assert!(
        logs.contains("alertrelay listening") && logs.contains("stopped"),
        "{logs}"
    );
}

/// A one-request HTTP receiver on a thread: answers `status` with `reply`
/// and hands back the request body.
fn one_request_receiver(status: &str, reply: &str) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).expect("body");
        reader
            .get_mut()
            .write_all(answer.as_bytes())
            .expect("answer");
        String::from_utf8(body).expect("utf-8")
    });
    (port, handle)
}

#[test]
fn send_test_posts_a_sample_to_a_webhook_and_says_what_came_back() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("alertrelay.yml");
    // send-test against a receiver answering `status` and `reply`: the
    // command's output and the body the receiver got.
    let send_test = |status: &str, reply: &str| {
        let (port, receiver) = one_request_receiver(status, reply);
        std::fs::write(
            &config,
            format!("channels:\n  - name: audit\n    type: webhook\n    url: http://127.0.0.1:{port}/hook?key=k3y\n"),
        )
        .expect("config");
        let out = bin()
            .args(["send-test", "--channel", "audit", "-c"])
            .arg(&config)
            .output()
            .expect("run");
        (out, receiver.join().expect("receiver"))
    };

    let (out, body) = send_test("204 No Content", "");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json body");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "audit → url: sent"
    );
    assert_eq!(body["version"], "1");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(1));

    let (out, _) = send_test("400 Bad Request", "no such team");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("audit → url: FAILED: webhook: HTTP 400: no such team"),
        "{stdout}"
    );
    assert!(!stdout.contains("k3y") && !String::from_utf8_lossy(&out.stderr).contains("k3y"));
}

#[test]
fn render_prints_each_channel_message_and_a_custom_template() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("short.j2"),
        "{{ status | upper }} {{ alerts[0].alertname }} lasted {{ alerts[0].duration }}",
    )
    .expect("write");
    std::fs::write(dir.path().join("broken.j2"), "{% if %}").expect("write");
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        "timezone: Asia/Shanghai\nchannels:\n  - { name: robot, type: wecom, webhook_url: \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k\" }\n  - { name: mine, type: wecom, webhook_url: \"http://x/\", template: short.j2 }\n  - { name: mail, type: email, smtp: \"smtp://127.0.0.1:25\", from: a@example.com, to: [b@example.com] }\n",
    )
    .expect("write");
    let run = |args: &[&str]| {
        let out = bin().args(args).output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let cfg_s = cfg.to_str().expect("utf-8 path");
    let (code, out, err) = run(&[
        "render",
        "-c",
        cfg_s,
        "--channel",
        "robot",
        "--sample",
        "resolved",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("<font color=\"info\">**✅ RESOLVED**</font>"),
        "{out}"
    );
    assert!(
        out.contains("CST → ") && out.contains("lasted 47m"),
        "{out}"
    );
    let (code, out, _) = run(&[
        "render",
        "-c",
        cfg_s,
        "--channel",
        "mine",
        "--sample",
        "resolved",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "RESOLVED DiskFull lasted 47m");
    let (code, out, _) = run(&["render", "-c", cfg_s, "--channel", "mail"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("To: b@example.com\nSubject: [FIRING] critical DiskFull on db1:9100\n"),
        "{out}"
    );
    assert!(out.contains("--- text/html ---\n<!DOCTYPE html>"), "{out}");
    let (code, _, err) = run(&["render", "-c", cfg_s, "--channel", "nope"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no channel named \"nope\" (configured: robot, mine, mail)"),
        "{err}"
    );

    std::fs::write(
        &cfg,
        "channels:\n  - { name: mine, type: wecom, webhook_url: \"http://x/\", template: broken.j2 }\n",
    )
    .expect("write");
    let (code, _, err) = run(&["check-config", cfg_s]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("channels[0].template: template does not parse"),
        "{err}"
    );
    assert!(err.contains("broken.j2:1"), "{err}");
}

#[test]
fn sighup_reloads_the_config_file_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = dir.path().join("alertrelay.yml");
    let log = dir.path().join("alertrelay.log");
    std::fs::write(&config, "storage: sqlite://relay.db\n").expect("config");
    let mut child = bin()
        .args(["serve", "-p", &port.to_string(), "-c"])
        .arg(&config)
        .arg("-l")
        .arg(&log)
        .current_dir(dir.path())
        .spawn()
        .expect("spawn");
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let metrics = || {
        client
            .get(format!("{url}/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    };
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !check() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("ready", &|| metrics().contains("alertrelay_"));
    assert!(!metrics().contains("channel=\"audit\""));

    std::fs::write(
        &config,
        "storage: sqlite://relay.db\nchannels:\n  - name: audit\n    type: webhook\n    url: http://127.0.0.1:9/hook\n",
    )
    .expect("config");
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    wait_for("the new channel in /metrics", &|| {
        metrics().contains("channel=\"audit\"")
    });

    std::fs::write(&config, "storage: sqlite://relay.db\nchannels: [\n").expect("config");
    // SAFETY: as above.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    wait_for("the refusal in the log", &|| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("reload refused")
    });
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    assert!(
        metrics().contains("channel=\"audit\""),
        "the old config stays"
    );

    // SAFETY: as above.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

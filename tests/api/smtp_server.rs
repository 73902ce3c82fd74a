//! A real SMTP server process (aiosmtpd, installed by scripts/test into
//! target/test-venv) for the mail tests, with STARTTLS or implicit TLS over
//! a certificate of a test CA that alertrelay trusts through SSL_CERT_FILE,
//! as an operator with a private CA would set it.
// Shared by the api and e2e test binaries; each uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde::Deserialize;
use tempfile::TempDir;

/// How the server treats TLS.
#[derive(Debug, Clone, Copy)]
pub enum SmtpMode {
    /// No TLS offered.
    Plain,
    /// STARTTLS offered, not required.
    StartTls,
    /// STARTTLS required before MAIL.
    RequireStartTls,
    /// TLS from the first byte (smtps).
    Smtps,
}

/// One message the server accepted.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
    pub tls: bool,
    pub auth_user: Option<String>,
}

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    out: TempDir,
}

struct TestPki {
    _dir: TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// One CA per test binary; its certificate becomes SSL_CERT_FILE before
/// any channel is built (rustls-native-certs reads it).
fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("pki dir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "alertrelay test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");
        let ca_path = dir.path().join("ca.pem");
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&ca_path, ca_cert.pem()).expect("write ca");
        std::fs::write(&cert, leaf.pem()).expect("write cert");
        std::fs::write(&key, leaf_key.serialize_pem()).expect("write key");
        // Set once, before the first channel of this binary is built.
        std::env::set_var("SSL_CERT_FILE", &ca_path);
        TestPki {
            _dir: dir,
            ca: ca_path,
            cert,
            key,
        }
    })
}

/// The test CA's certificate (for SSL_CERT_FILE of a child process).
pub fn ca_file() -> PathBuf {
    pki().ca.clone()
}

/// Makes SSL_CERT_FILE point at the test CA (call before building an app
/// whose mail channel uses TLS).
pub fn trust_test_ca() {
    pki();
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("ALERTRELAY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python")
}

impl SmtpServer {
    /// Starts a server; `auth` = Some(("user", "pass")) requires AUTH.
    pub fn start(mode: SmtpMode, auth: Option<(&str, &str)>) -> SmtpServer {
        let pki = pki();
        let out = tempfile::tempdir().expect("out dir");
        let py = python();
        assert!(
            py.exists(),
            "{} is missing: scripts/test installs aiosmtpd into target/test-venv",
            py.display()
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let port = crate::common::free_port();
        let mut cmd = Command::new(py);
        cmd.arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(out.path())
            .arg("--mode")
            .arg(match mode {
                SmtpMode::Plain => "plain",
                SmtpMode::StartTls => "starttls",
                SmtpMode::RequireStartTls => "require-starttls",
                SmtpMode::Smtps => "smtps",
            })
            .arg("--cert")
            .arg(&pki.cert)
            .arg("--key")
            .arg(&pki.key)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((u, p)) = auth {
            cmd.arg("--auth").arg(format!("{u}:{p}"));
        }
        let mut child = cmd.spawn().expect("start the SMTP server");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("read READY");
        assert_eq!(line.trim(), "READY", "SMTP server did not start");
        SmtpServer { child, port, out }
    }

    /// Messages accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.out.path())
            .expect("read out dir")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let n = p.file_stem()?.to_str()?.parse::<u64>().ok()?;
                (p.extension()? == "json").then_some((n, p))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| {
                serde_json::from_str(&std::fs::read_to_string(&p).expect("read message"))
                    .expect("message json")
            })
            .collect()
    }

    /// Waits until `n` messages arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < timeout,
                "expected {n} mails, got {} after {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

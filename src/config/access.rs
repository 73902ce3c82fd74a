//! `ingest:` and `ui:`: who may use an HTTP surface.

use std::net::SocketAddr;

use secrecy::SecretString;

use super::{yaml, Walker};

/// Who may use an HTTP surface (`ingest:` for /webhook, `ui:` for /api).
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Accepted `Authorization: Bearer` tokens.
    pub tokens: Vec<SecretString>,
    /// Accepted HTTP basic credentials (password in clear, or argon2 hash for ui users).
    pub basic: Vec<BasicCredential>,
    /// Whether a caller with no credentials is let in when listening beyond loopback.
    pub allow_anonymous: bool,
}

/// One HTTP basic credential.
#[derive(Debug, Clone)]
pub struct BasicCredential {
    /// User name.
    pub username: String,
    /// How the password is checked.
    pub password: PasswordCheck,
}

/// A password as configured.
#[derive(Debug, Clone)]
pub enum PasswordCheck {
    /// Compared as given (ingest `basic_auth`: GCP sends it in clear anyway).
    Plain(SecretString),
    /// An argon2id PHC string (`ui.users`, made by `alertrelay hash-password`).
    Argon2(String),
}

impl AccessConfig {
    /// Whether any credential is configured.
    pub fn has_credentials(&self) -> bool {
        !self.tokens.is_empty() || !self.basic.is_empty()
    }

    /// Whether a request without credentials is let in, given where we listen.
    pub fn open_to_anonymous(&self, listen: SocketAddr) -> bool {
        !self.has_credentials() && (self.allow_anonymous || listen.ip().is_loopback())
    }
}

/// `ingest:`: bearer `tokens`, `basic_auth` (passwords in clear) and `allow_anonymous`.
pub fn ingest_from_yaml(w: &mut Walker, n: &yaml::Node) -> AccessConfig {
    let mut cfg = AccessConfig::default();
    if let Some(mut m) = w.map(n, "ingest") {
        cfg.tokens = w.secret_list(&mut m, "tokens");
        if let Some(list) = m.take("basic_auth") {
            for (i, item) in w
                .list(list, "ingest.basic_auth")
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let path = format!("ingest.basic_auth[{i}]");
                if let Some(mut cm) = w.map(item, &path) {
                    let username = w.required_string(&mut cm, "username");
                    let password = w.secret(&mut cm, "password", true);
                    if let (Some(username), Some(password)) = (username, password) {
                        cfg.basic.push(BasicCredential {
                            username,
                            password: PasswordCheck::Plain(password),
                        });
                    }
                    cm.finish(w);
                }
            }
        }
        if let Some(b) = m.take("allow_anonymous") {
            cfg.allow_anonymous = w.bool(b, "ingest.allow_anonymous").unwrap_or(false);
        }
        m.finish(w);
    }
    cfg
}

/// `ui:`: `api_tokens`, `users` with argon2id hashes and `allow_anonymous`.
pub fn ui_from_yaml(w: &mut Walker, n: &yaml::Node) -> AccessConfig {
    let mut cfg = AccessConfig::default();
    if let Some(mut m) = w.map(n, "ui") {
        cfg.tokens = w.secret_list(&mut m, "api_tokens");
        if let Some(list) = m.take("users") {
            for (i, item) in w
                .list(list, "ui.users")
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let path = format!("ui.users[{i}]");
                if let Some(mut um) = w.map(item, &path) {
                    let username = w.required_string(&mut um, "username");
                    let hash = um.take("password_hash").and_then(|h| {
                        let s = w.string(h, &format!("{path}.password_hash"))?;
                        match argon2::PasswordHash::new(&s) {
                            Ok(_) => Some(s),
                            Err(e) => {
                                w.error(h.line, &format!("{path}.password_hash"), format!("not a PHC password hash ({e}); make one with `alertrelay hash-password`"));
                                None
                            }
                        }
                    });
                    if um.has_no("password_hash") && hash.is_none() {
                        w.error(item.line, &path, "`password_hash` is required".to_string());
                    }
                    if let (Some(username), Some(hash)) = (username, hash) {
                        cfg.basic.push(BasicCredential {
                            username,
                            password: PasswordCheck::Argon2(hash),
                        });
                    }
                    um.finish(w);
                }
            }
        }
        if let Some(b) = m.take("allow_anonymous") {
            cfg.allow_anonymous = w.bool(b, "ui.allow_anonymous").unwrap_or(false);
        }
        m.finish(w);
    }
    cfg
}

//! Who may call: bearer tokens and HTTP basic credentials, checked the same
//! way for `/webhook/*` (`ingest:`) and `/api/v1` (`ui:`).

use std::net::SocketAddr;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::http::{header, HeaderMap};
use base64::Engine;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::{AccessConfig, PasswordCheck};
use crate::error::HttpError;
use crate::live::Live;

/// The credentials of one HTTP surface and whether it is open.
#[derive(Debug, Clone)]
pub struct Access {
    config: AccessConfig,
    open: bool,
}

impl Access {
    /// Access rules for a surface listening on `listen`. With no credentials
    /// configured the surface is open on loopback, or beyond it only with
    /// `allow_anonymous: true` (startup refuses the other case).
    pub fn new(config: AccessConfig, listen: SocketAddr) -> Self {
        let open = config.open_to_anonymous(listen);
        Self { config, open }
    }

    /// Who is calling, or 401.
    pub fn check(&self, headers: &HeaderMap) -> Result<String, HttpError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return if self.open {
                Ok("anonymous".into())
            } else {
                Err(HttpError::unauthorized(
                    "credentials required: Authorization: Bearer <token> or Basic",
                ))
            };
        };
        let value = value
            .to_str()
            .map_err(|_| HttpError::unauthorized("unreadable Authorization header"))?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if self
                .config
                .tokens
                .iter()
                .any(|t| same(t.expose_secret().as_bytes(), rest.as_bytes()))
            {
                return Ok("token".into());
            }
            return Err(HttpError::unauthorized("wrong bearer token"));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| HttpError::unauthorized("malformed Basic credentials"))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| HttpError::unauthorized("malformed Basic credentials"))?;
            for cred in &self.config.basic {
                if !same(cred.username.as_bytes(), user.as_bytes()) {
                    continue;
                }
                let ok = match &cred.password {
                    PasswordCheck::Plain(p) => same(p.expose_secret().as_bytes(), pass.as_bytes()),
                    PasswordCheck::Argon2(phc) => PasswordHash::new(phc)
                        .map(|h| {
                            Argon2::default()
                                .verify_password(pass.as_bytes(), &h)
                                .is_ok()
                        })
                        .unwrap_or(false),
                };
                if ok {
                    return Ok(user.to_string());
                }
            }
            return Err(HttpError::unauthorized("wrong user name or password"));
        }
        Err(HttpError::unauthorized(
            "unsupported Authorization scheme (use Bearer or Basic)",
        ))
    }
}

/// Compares secrets in time independent of where they differ (hashing first
/// also hides their length).
fn same(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Makes an argon2id PHC string for `ui.users[].password_hash`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

impl Live<Access> {
    /// Who is calling, under the current credentials, or 401.
    pub fn check(&self, headers: &axum::http::HeaderMap) -> Result<String, HttpError> {
        self.get().check(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BasicCredential;
    use axum::http::HeaderValue;
    use secrecy::SecretString;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(v).expect("header"),
        );
        h
    }

    #[test]
    fn tokens_and_basic() {
        let phc = hash_password("s3cret").expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        let cfg = AccessConfig {
            tokens: vec![SecretString::from("tok".to_string())],
            basic: vec![
                BasicCredential {
                    username: "gcp".into(),
                    password: PasswordCheck::Plain(SecretString::from("pw".to_string())),
                },
                BasicCredential {
                    username: "admin".into(),
                    password: PasswordCheck::Argon2(phc),
                },
            ],
            allow_anonymous: false,
        };
        let a = Access::new(cfg, "127.0.0.1:1".parse().expect("addr"));
        assert!(
            a.check(&HeaderMap::new()).is_err(),
            "credentials configured: anonymous refused even on loopback"
        );
        assert!(a.check(&headers("Bearer tok")).is_ok());
        assert!(a.check(&headers("Bearer nope")).is_err());
        let b = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert_eq!(a.check(&headers(&b("gcp", "pw"))).expect("ok"), "gcp");
        assert!(a.check(&headers(&b("gcp", "px"))).is_err());
        assert_eq!(
            a.check(&headers(&b("admin", "s3cret"))).expect("ok"),
            "admin"
        );
        assert!(a.check(&headers(&b("admin", "wrong"))).is_err());
        assert!(a.check(&headers("Basic !!!")).is_err());
        assert!(a.check(&headers("Digest x")).is_err());
    }

    #[test]
    fn open_only_on_loopback_or_explicitly() {
        let none = AccessConfig::default();
        assert!(
            Access::new(none.clone(), "127.0.0.1:1".parse().expect("addr"))
                .check(&HeaderMap::new())
                .is_ok()
        );
        assert!(
            Access::new(none.clone(), "0.0.0.0:1".parse().expect("addr"))
                .check(&HeaderMap::new())
                .is_err()
        );
        let anon = AccessConfig {
            allow_anonymous: true,
            ..none
        };
        assert!(Access::new(anon, "0.0.0.0:1".parse().expect("addr"))
            .check(&HeaderMap::new())
            .is_ok());
    }
}

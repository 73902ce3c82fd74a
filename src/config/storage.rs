//! `storage:`: where alerts are kept.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

/// Where alerts are kept.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// An embedded SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server (several replicas may share it).
    Postgres {
        /// Connection URL; holds a password, so never printed.
        url: SecretString,
    },
}

impl StorageConfig {
    /// Parses `sqlite://PATH` or `postgres://...`/`postgresql://...`.
    pub fn parse(value: &str) -> Result<Self, String> {
        if let Some(rest) = value.strip_prefix("sqlite://") {
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://alertrelay.db".into());
            }
            Ok(StorageConfig::Sqlite {
                path: PathBuf::from(path),
            })
        } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            url::Url::parse(value).map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
            Ok(StorageConfig::Postgres {
                url: SecretString::from(value.to_string()),
            })
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }

    /// A description safe to print: the password of a PostgreSQL URL is hidden.
    pub fn redacted(&self) -> String {
        match self {
            StorageConfig::Sqlite { path } => format!("sqlite://{}", path.display()),
            StorageConfig::Postgres { url } => match url::Url::parse(url.expose_secret()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("****"));
                    }
                    u.to_string()
                }
                Err(_) => "postgres://(invalid)".into(),
            },
        }
    }
}

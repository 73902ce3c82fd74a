//! The config reader and the settings of each section: YAML in with line
//! numbers, typed values out, or every mistake with its key path and line.
//!
//! This layer knows no component: each section's settings live here (or,
//! for a channel, in its own folder), and the whole file is put together by
//! [`crate::app::Config`], above the channels. Keys of the product contract
//! whose feature is not built yet are refused as "not supported yet" rather
//! than silently ignored.

mod access;
mod contacts;
mod delivery;
mod flapping;
mod routes;
mod storage;
mod walk;
pub mod yaml;

use std::fmt;
use std::path::PathBuf;

pub use access::{ingest_from_yaml, ui_from_yaml, AccessConfig, BasicCredential, PasswordCheck};
pub use contacts::contact_from_yaml;
pub use delivery::{delivery_from_yaml, DeliveryConfig};
pub use flapping::flapping_from_yaml;
pub use routes::{route_from_yaml, GroupBy, RouteConfig};
pub use storage::StorageConfig;
pub use walk::{Map, Walker};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9099";
/// The default storage: a SQLite file in the working directory.
pub const DEFAULT_STORAGE: &str = "sqlite://alertrelay.db";

/// One mistake in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line (0 when the mistake has no place, e.g. a command-line flag).
    pub line: usize,
    /// Key path, e.g. `channels[0].bot_token`.
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.path.is_empty()) {
            (0, true) => write!(f, "{}", self.message),
            (0, false) => write!(f, "{}: {}", self.path, self.message),
            (l, true) => write!(f, "line {l}: {}", self.message),
            (l, false) => write!(f, "line {l}: {}: {}", self.path, self.message),
        }
    }
}

/// Every mistake found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file, when there was one.
    pub file: Option<PathBuf>,
    /// The mistakes, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &self.file {
                Some(file) => write!(f, "{}: {e}", file.display())?,
                None => write!(f, "{e}")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

//! The whole configuration file: YAML in, a checked [`Config`] out, or every
//! mistake with its key path and line.
//!
//! It sits above the channels because it holds their settings; each
//! section's own settings are read by [`crate::config`]. `check-config`,
//! `serve`, `send-test` and reload all go through [`Config::load`], so what
//! `check-config` accepts is exactly what `serve` runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use secrecy::ExposeSecret;

use crate::channels::{ChannelConfig, ChannelKind};
use crate::config::contact_from_yaml;
use crate::config::{
    delivery_from_yaml, flapping_from_yaml, ingest_from_yaml, route_from_yaml, ui_from_yaml, yaml,
    AccessConfig, ConfigError, ConfigErrors, DeliveryConfig, RouteConfig, StorageConfig, Walker,
    DEFAULT_LISTEN,
};
use crate::model::flapping::FlappingConfig;

/// The whole checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Zone for times in messages and pages.
    pub timezone: Tz,
    /// Where alerts are kept.
    pub storage: StorageConfig,
    /// Base URL for links in messages.
    pub public_url: Option<String>,
    /// Who may POST to /webhook/*.
    pub ingest: AccessConfig,
    /// Who may use /api/v1.
    pub ui: AccessConfig,
    /// Notification channels.
    pub channels: Vec<ChannelConfig>,
    /// Routing rules.
    pub routes: Vec<RouteConfig>,
    /// The initial contact book (`contacts:`).
    pub contacts: Vec<crate::model::contacts::Contact>,
    /// Retry policy.
    pub delivery: DeliveryConfig,
    /// Largest accepted webhook body.
    pub max_body_bytes: usize,
    /// Flapping detection; `None` when `flapping: off`.
    pub flapping: Option<FlappingConfig>,
}

impl Default for Config {
    /// The embedded defaults: loopback, SQLite in the working directory, no channels.
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 9099).into()),
            timezone: Tz::UTC,
            storage: StorageConfig::Sqlite {
                path: PathBuf::from("alertrelay.db"),
            },
            public_url: None,
            ingest: AccessConfig::default(),
            ui: AccessConfig::default(),
            channels: Vec::new(),
            routes: Vec::new(),
            contacts: Vec::new(),
            delivery: DeliveryConfig::default(),
            max_body_bytes: 4 * 1024 * 1024,
            flapping: Some(FlappingConfig::default()),
        }
    }
}

impl Config {
    /// Reads and checks a config file, with `${VAR}` taken from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: Some(path.to_path_buf()),
            errors: vec![ConfigError {
                line: 0,
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base, &|name| std::env::var(name).ok()).map_err(|errors| ConfigErrors {
            file: Some(path.to_path_buf()),
            errors,
        })
    }

    /// Checks config text. `base_dir` resolves relative `*_file` paths; `env`
    /// answers `${VAR}`.
    pub fn parse(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let root = yaml::parse(text).map_err(|errs| {
            errs.into_iter()
                .map(|e| ConfigError {
                    line: e.line,
                    path: String::new(),
                    message: e.message,
                })
                .collect::<Vec<_>>()
        })?;
        let mut w = Walker::new(env, base_dir);
        let config = build(&mut w, &root);
        let mut errors = w.into_errors();
        if let Some(cfg) = &config {
            errors.extend(cfg.exposure_errors(cfg.listen));
        }
        errors.sort_by_key(|e| e.line);
        match config {
            Some(cfg) if errors.is_empty() => Ok(cfg),
            _ => Err(errors),
        }
    }

    /// The rule that keeps a fresh install from being an open relay: beyond
    /// loopback, each HTTP surface needs credentials or an explicit
    /// `allow_anonymous: true`. Checked again after `--host` overrides `listen`.
    pub fn exposure_errors(&self, listen: SocketAddr) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if listen.ip().is_loopback() {
            return errors;
        }
        for (section, access) in [("ingest", &self.ingest), ("ui", &self.ui)] {
            if !access.has_credentials() && !access.allow_anonymous {
                errors.push(ConfigError {
                    line: 0,
                    path: section.into(),
                    message: format!(
                        "listening on {listen} (beyond loopback) with no credentials: set {section}.{} or {section}.allow_anonymous: true",
                        if section == "ingest" { "tokens/basic_auth" } else { "api_tokens/users" }
                    ),
                });
            }
        }
        errors
    }

    /// The one-line summary `check-config` prints.
    pub fn summary(&self) -> String {
        let channels: Vec<String> = self
            .channels
            .iter()
            .map(|c| format!("{} ({})", c.name, c.kind_name()))
            .collect();
        format!(
            "config OK: listen {}, storage {}, timezone {}, {} channel(s){}, {} route(s)",
            self.listen,
            self.storage.redacted(),
            self.timezone.name(),
            self.channels.len(),
            if channels.is_empty() {
                String::new()
            } else {
                format!(": {}", channels.join(", "))
            },
            self.routes.len(),
        )
    }

    /// The channels' names, in config order.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.name.clone()).collect()
    }

    /// The channel with this name.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// The channel already polling the same bot as `c` (both `commands: true`).
fn polls_same_bot<'a>(channels: &'a [ChannelConfig], c: &ChannelConfig) -> Option<&'a str> {
    let ChannelKind::Telegram(t) = &c.kind else {
        return None;
    };
    if !t.commands {
        return None;
    }
    channels.iter().find_map(|x| match &x.kind {
        ChannelKind::Telegram(o)
            if o.commands
                && o.api_url == t.api_url
                && o.bot_token.expose_secret() == t.bot_token.expose_secret() =>
        {
            Some(x.name.as_str())
        }
        _ => None,
    })
}

fn build(w: &mut Walker, root: &yaml::Node) -> Option<Config> {
    let mut top = w.map(root, "")?;
    let mut cfg = Config::default();

    if let Some(n) = top.take("listen") {
        if let Some(s) = w.string(n, "listen") {
            match s.parse::<SocketAddr>() {
                Ok(a) => cfg.listen = a,
                Err(_) => w.error(
                    n.line,
                    "listen",
                    format!("`{s}` is not an address like 127.0.0.1:9099"),
                ),
            }
        }
    }
    if let Some(n) = top.take("timezone") {
        if let Some(s) = w.string(n, "timezone") {
            match s.parse::<Tz>() {
                Ok(tz) => cfg.timezone = tz,
                Err(_) => w.error(
                    n.line,
                    "timezone",
                    format!("`{s}` is not an IANA time zone name like Asia/Shanghai or UTC"),
                ),
            }
        }
    }
    if let Some(n) = top.take("storage") {
        if let Some(s) = w.string(n, "storage") {
            match StorageConfig::parse(&s) {
                Ok(st) => cfg.storage = st,
                Err(e) => w.error(n.line, "storage", e),
            }
        }
    }
    if let Some(n) = top.take("public_url") {
        if let Some(s) = w.string(n, "public_url") {
            match url::Url::parse(&s) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                    cfg.public_url = Some(s.trim_end_matches('/').to_string())
                }
                _ => w.error(n.line, "public_url", format!("`{s}` is not an http(s) URL")),
            }
        }
    }
    if let Some(n) = top.take("ingest") {
        cfg.ingest = ingest_from_yaml(w, n);
    }
    if let Some(n) = top.take("ui") {
        cfg.ui = ui_from_yaml(w, n);
    }
    if let Some(n) = top.take("delivery") {
        cfg.delivery = delivery_from_yaml(w, n);
    }
    if let Some(n) = top.take("max_body_size") {
        if let Some(x) = w.integer(n, "max_body_size", 1024, 1 << 30) {
            cfg.max_body_bytes = x as usize;
        }
    }
    if let Some(n) = top.take("channels") {
        for (i, item) in w.list(n, "channels").unwrap_or_default().iter().enumerate() {
            if let Some(c) = ChannelConfig::from_yaml(w, item, &format!("channels[{i}]")) {
                if cfg.channels.iter().any(|x| x.name == c.name) {
                    w.error(
                        item.line,
                        &format!("channels[{i}].name"),
                        format!("channel name `{}` is used twice", c.name),
                    );
                } else if let Some(other) = polls_same_bot(&cfg.channels, &c) {
                    // Telegram ends one of two overlapping getUpdates (409).
                    w.error(
                        item.line,
                        &format!("channels[{i}].commands"),
                        format!("channel `{other}` answers this bot's commands already; only one channel per bot_token may set `commands: true`"),
                    );
                } else {
                    cfg.channels.push(c);
                }
            }
        }
    }
    if let Some(n) = top.take("routes") {
        let known: Vec<String> = cfg.channels.iter().map(|c| c.name.clone()).collect();
        for (i, item) in w.list(n, "routes").unwrap_or_default().iter().enumerate() {
            if let Some(r) = route_from_yaml(w, item, &format!("routes[{i}]"), &known) {
                if r.digest.is_some() {
                    // A digest lists hosts, not alerts, so `to_group` (which
                    // renders per alert) has nothing to render: it would
                    // fail at the first period as having no recipients.
                    for (j, name) in r.channels.iter().enumerate() {
                        let mail_without_to = cfg.channels.iter().any(|c| {
                            &c.name == name
                                && matches!(&c.kind, ChannelKind::Email(e) if e.to.is_empty())
                        });
                        if mail_without_to {
                            w.error(
                                item.line,
                                &format!("routes[{i}].channels[{j}]"),
                                format!("a digest is mailed to `to` only (`to_group` needs an alert's labels), and `{name}` has no `to`"),
                            );
                        }
                    }
                }
                cfg.routes.push(r);
            }
        }
    }
    if let Some(n) = top.take("contacts") {
        for (i, item) in w.list(n, "contacts").unwrap_or_default().iter().enumerate() {
            let path = format!("contacts[{i}]");
            if let Some(c) = contact_from_yaml(w, item, &path) {
                if cfg.contacts.iter().any(|x| x.name == c.name) {
                    w.error(
                        item.line,
                        &format!("{path}.name"),
                        format!("contact `{}` is listed twice", c.name),
                    );
                } else {
                    cfg.contacts.push(c);
                }
            }
        }
    }
    if let Some(n) = top.take("flapping") {
        cfg.flapping = flapping_from_yaml(w, n);
    }
    for key in ["grafana", "probes"] {
        top.not_supported_yet(w, key);
    }
    top.finish(w);
    Some(cfg)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

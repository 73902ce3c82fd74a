//! The configuration file: YAML in, a checked [`Config`] out, or every
//! mistake with its key path and line.
//!
//! `check-config`, `serve`, `send-test` and (later) reload all go through
//! [`Config::load`], so what `check-config` accepts is exactly what `serve`
//! runs. Keys of the product contract whose feature is not built yet are
//! refused as "not supported yet" rather than silently ignored.

mod walk;
pub mod yaml;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use secrecy::{ExposeSecret, SecretString};

use crate::channels::{ChannelConfig, ChannelKind};
use crate::route::matcher::Matcher;
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

/// How the outbox retries.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Attempts before a notification is kept as failed.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_initial: Duration,
    /// Ceiling of the retry delay.
    pub retry_max: Duration,
    /// Sends in flight per channel.
    pub concurrency: usize,
    /// How long one send may take before it counts as failed (and is retried).
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_initial: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            concurrency: 8,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One routing rule.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// All must hold.
    pub matchers: Vec<Matcher>,
    /// Channel names to notify.
    pub channels: Vec<String>,
    /// Keep evaluating later routes after this one matched.
    pub continue_matching: bool,
    /// Labels whose values split a webhook's changed alerts into messages
    /// (empty: one message per channel and state; `...`: one per alert).
    pub group_by: GroupBy,
    /// Remind this often while an alert stays firing and unacknowledged.
    pub repeat_interval: Option<Duration>,
    /// Hold a group's first notification this long so alerts of the same
    /// group from later webhooks join it in one message.
    pub group_wait: Option<Duration>,
    /// At most one firing message per alert and channel per window.
    pub throttle: Option<Duration>,
    /// No per-event messages: one status summary per host every period.
    pub digest: Option<Duration>,
}

/// How a route splits the alerts that changed together into messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// All of them in one message (per channel and state).
    #[default]
    Together,
    /// One message per distinct value of these labels.
    Labels(Vec<String>),
    /// `group_by: ['...']`: one message per alert.
    EachAlert,
}

impl GroupBy {
    /// The key an alert's labels give under this grouping.
    pub fn key(&self, labels: &crate::alert::Labels) -> Vec<Option<String>> {
        match self {
            GroupBy::Together => Vec::new(),
            GroupBy::Labels(names) => names.iter().map(|n| labels.get(n).cloned()).collect(),
            GroupBy::EachAlert => labels
                .iter()
                .flat_map(|(k, v)| [Some(k.clone()), Some(v.clone())])
                .collect(),
        }
    }
}

/// `flapping:`: an alert that changes state `changes` times within
/// `window` is flapping: one message says so, later changes are held until
/// it has been stable for `window`, then one message gives its final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlappingConfig {
    /// State changes within the window that make an alert flapping (3 to 100).
    pub changes: u32,
    /// The trailing window changes are counted in, and how long a flapping
    /// alert must go without a change to be stable again (1m to 24h).
    pub window: Duration,
}

impl Default for FlappingConfig {
    /// 6 changes in 10 minutes.
    fn default() -> Self {
        Self {
            changes: 6,
            window: Duration::from_secs(600),
        }
    }
}

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
    pub contacts: Vec<crate::contacts::Contact>,
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

    /// The channel with this name.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// Parses `30s`, `5m`, `4h`, `1d`, `250ms` and sums like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration (examples: 30s, 5m, 4h, 1d)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs_per: u64 = match unit {
            "ms" => {
                total += Duration::from_millis(n);
                continue;
            }
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            "" => return Err(format!("`{text}` needs a unit: ms, s, m, h or d")),
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ))
            }
        };
        let secs = n
            .checked_mul(secs_per)
            .ok_or_else(|| format!("`{text}` is too long"))?;
        total += Duration::from_secs(secs);
    }
    Ok(total)
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
        if let Some(mut m) = w.map(n, "ingest") {
            cfg.ingest.tokens = w.secret_list(&mut m, "tokens");
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
                            cfg.ingest.basic.push(BasicCredential {
                                username,
                                password: PasswordCheck::Plain(password),
                            });
                        }
                        cm.finish(w);
                    }
                }
            }
            if let Some(b) = m.take("allow_anonymous") {
                cfg.ingest.allow_anonymous = w.bool(b, "ingest.allow_anonymous").unwrap_or(false);
            }
            m.finish(w);
        }
    }
    if let Some(n) = top.take("ui") {
        if let Some(mut m) = w.map(n, "ui") {
            cfg.ui.tokens = w.secret_list(&mut m, "api_tokens");
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
                            cfg.ui.basic.push(BasicCredential {
                                username,
                                password: PasswordCheck::Argon2(hash),
                            });
                        }
                        um.finish(w);
                    }
                }
            }
            if let Some(b) = m.take("allow_anonymous") {
                cfg.ui.allow_anonymous = w.bool(b, "ui.allow_anonymous").unwrap_or(false);
            }
            m.finish(w);
        }
    }
    if let Some(n) = top.take("delivery") {
        if let Some(mut m) = w.map(n, "delivery") {
            if let Some(v) = m.take("max_attempts") {
                if let Some(x) = w.integer(v, "delivery.max_attempts", 1, 100) {
                    cfg.delivery.max_attempts = x as u32;
                }
            }
            if let Some(v) = m.take("retry_initial") {
                if let Some(d) = w.duration(v, "delivery.retry_initial") {
                    cfg.delivery.retry_initial = d;
                }
            }
            if let Some(v) = m.take("retry_max") {
                if let Some(d) = w.duration(v, "delivery.retry_max") {
                    cfg.delivery.retry_max = d;
                }
            }
            if let Some(v) = m.take("concurrency") {
                if let Some(x) = w.integer(v, "delivery.concurrency", 1, 256) {
                    cfg.delivery.concurrency = x as usize;
                }
            }
            if let Some(v) = m.take("timeout") {
                if let Some(d) = w.duration(v, "delivery.timeout") {
                    cfg.delivery.timeout = d;
                }
            }
            m.finish(w);
        }
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
                                && matches!(&c.kind, crate::channels::ChannelKind::Email(e) if e.to.is_empty())
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
            if let Some(c) = crate::contacts::Contact::from_yaml(w, item, &path) {
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

/// `flapping: off` (or `false`), or `{ changes: 6, window: 10m }` with
/// either key left to its default. A rejected value keeps the default.
fn flapping_from_yaml(w: &mut Walker, node: &yaml::Node) -> Option<FlappingConfig> {
    let mut cfg = FlappingConfig::default();
    match &node.value {
        yaml::Value::Bool(false) => return None,
        yaml::Value::Str(s) if s == "off" => return None,
        yaml::Value::Map(_) => {}
        _ => {
            w.error(
                node.line,
                "flapping",
                "expected `off` or a mapping like { changes: 6, window: 10m }".into(),
            );
            return Some(cfg);
        }
    }
    let mut m = w.map(node, "flapping")?;
    if let Some(v) = m.take("changes") {
        if let Some(x) = w.integer(v, "flapping.changes", 3, 100) {
            cfg.changes = x as u32;
        }
    }
    if let Some(v) = m.take("window") {
        match w.duration(v, "flapping.window") {
            Some(d) if d < Duration::from_secs(60) || d > Duration::from_secs(86_400) => {
                w.error(v.line, "flapping.window", "must be from 1m to 24h".into());
            }
            Some(d) => cfg.window = d,
            None => {}
        }
    }
    m.finish(w);
    Some(cfg)
}

fn route_from_yaml(
    w: &mut Walker,
    node: &yaml::Node,
    path: &str,
    known: &[String],
) -> Option<RouteConfig> {
    let mut m = w.map(node, path)?;
    let mut matchers = Vec::new();
    if let Some(list) = m.take("match") {
        for (j, item) in w
            .list(list, &format!("{path}.match"))
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let mpath = format!("{path}.match[{j}]");
            if let Some(s) = w.string(item, &mpath) {
                match Matcher::parse(&s) {
                    Ok(mt) => matchers.push(mt),
                    Err(e) => w.error(item.line, &mpath, format!("bad matcher `{s}`: {e}")),
                }
            }
        }
    }
    let mut channels = Vec::new();
    match m.take("channels") {
        Some(list) => {
            let items = w.list(list, &format!("{path}.channels"));
            let items = match items {
                Some(i) => i,
                None => &[],
            };
            if items.is_empty() && matches!(list.value, yaml::Value::Seq(_) | yaml::Value::Null) {
                w.error(
                    list.line,
                    &format!("{path}.channels"),
                    "a route needs at least one channel".into(),
                );
            }
            for (j, item) in items.iter().enumerate() {
                let cpath = format!("{path}.channels[{j}]");
                if let Some(s) = w.string(item, &cpath) {
                    if known.contains(&s) {
                        channels.push(s);
                    } else {
                        w.error(
                            item.line,
                            &cpath,
                            format!(
                                "no channel is named `{s}` (channels: {})",
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        );
                    }
                }
            }
        }
        None => w.error(node.line, path, "`channels` is required".into()),
    }
    let continue_matching = match m.take("continue") {
        Some(b) => w.bool(b, &format!("{path}.continue")).unwrap_or(false),
        None => false,
    };
    let group_by = match m.take("group_by") {
        Some(list) => group_by_from_yaml(w, list, &format!("{path}.group_by")),
        None => GroupBy::Together,
    };
    let repeat_interval = match m.take("repeat_interval") {
        Some(v) => {
            let rpath = format!("{path}.repeat_interval");
            match w.duration(v, &rpath) {
                Some(d) if d < Duration::from_secs(60) => {
                    w.error(
                        v.line,
                        &rpath,
                        "must be at least 1m (a reminder more often than that is a flood)".into(),
                    );
                    None
                }
                d => d,
            }
        }
        None => None,
    };
    let group_wait = match m.take("group_wait") {
        Some(v) => {
            let gpath = format!("{path}.group_wait");
            match w.duration(v, &gpath) {
                Some(d) if d.is_zero() || d > Duration::from_secs(3600) => {
                    w.error(
                        v.line,
                        &gpath,
                        "must be more than 0s and at most 1h (it holds back the first message of a group)".into(),
                    );
                    None
                }
                d => d,
            }
        }
        None => None,
    };
    let throttle = match m.take("throttle") {
        Some(v) => {
            let tpath = format!("{path}.throttle");
            match w.duration(v, &tpath) {
                Some(d) if d < Duration::from_secs(10) || d > Duration::from_secs(86_400) => {
                    w.error(v.line, &tpath, "must be from 10s to 24h".into());
                    None
                }
                d => d,
            }
        }
        None => None,
    };
    let digest = match m.take("digest") {
        Some(v) => {
            let dpath = format!("{path}.digest");
            match w.duration(v, &dpath) {
                Some(d) if d < Duration::from_secs(60) || d > Duration::from_secs(7 * 86_400) => {
                    w.error(v.line, &dpath, "must be from 1m to 7d".into());
                    None
                }
                Some(d) => {
                    // A digest replaces per-event messages, so the keys that
                    // shape those messages would silently do nothing.
                    let per_event = [
                        ("group_by", group_by != GroupBy::Together),
                        ("group_wait", group_wait.is_some()),
                        ("repeat_interval", repeat_interval.is_some()),
                        ("throttle", throttle.is_some()),
                    ];
                    for (key, set) in per_event {
                        if set {
                            w.error(
                                v.line,
                                &dpath,
                                format!("`{key}` shapes per-event messages, which a digest route does not send; remove one of them"),
                            );
                        }
                    }
                    Some(d)
                }
                None => None,
            }
        }
        None => None,
    };
    m.finish(w);
    Some(RouteConfig {
        matchers,
        channels,
        continue_matching,
        group_by,
        repeat_interval,
        group_wait,
        throttle,
        digest,
    })
}

fn group_by_from_yaml(w: &mut Walker, node: &yaml::Node, path: &str) -> GroupBy {
    let mut names: Vec<String> = Vec::new();
    for (j, item) in w.list(node, path).unwrap_or_default().iter().enumerate() {
        let ipath = format!("{path}[{j}]");
        let Some(name) = w.string(item, &ipath) else {
            continue;
        };
        let valid = name == "..."
            || (!name.is_empty()
                && name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            w.error(
                item.line,
                &ipath,
                format!(
                    "`{name}` is not a label name (letters, digits, _; or `...` for every label)"
                ),
            );
        } else if names.contains(&name) {
            w.error(item.line, &ipath, format!("`{name}` is listed twice"));
        } else {
            names.push(name);
        }
    }
    if names.iter().any(|n| n == "...") {
        if names.len() > 1 {
            w.error(
                node.line,
                path,
                "`...` already groups by every label; list nothing else with it".into(),
            );
        }
        return GroupBy::EachAlert;
    }
    if names.is_empty() {
        GroupBy::Together
    } else {
        GroupBy::Labels(names)
    }
}

#[cfg(test)]
mod tests;

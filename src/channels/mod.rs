//! Where notifications go out: one folder per channel type, behind one enum.
//!
//! A channel turns an [`AlertGroup`] into its platform's message and sends it
//! to one destination. It knows nothing of routing or retries: it classifies
//! each failure as [`DeliveryError::Transient`] or [`DeliveryError::Permanent`]
//! and the outbox (`deliver/`) decides what to do. Adding a channel type
//! touches its own folder and one arm of [`ChannelKind`] and [`Channel`].

pub mod telegram;
pub mod webhook;

use std::time::Duration;

use chrono_tz::Tz;
use secrecy::{ExposeSecret, SecretString};

use crate::config::yaml::{Node, Value};
use crate::config::Walker;
use crate::notification::AlertGroup;

/// What every channel needs from the rest of the config to render and send.
#[derive(Debug, Clone)]
pub struct ChannelContext {
    /// Zone for times in messages.
    pub timezone: Tz,
    /// Base URL for links back to alertrelay.
    pub public_url: Option<String>,
    /// Upper bound on one HTTP exchange with the platform.
    pub timeout: Duration,
}

/// Settings every channel shares, plus its type-specific part.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Unique name, used by routes and `send-test`.
    pub name: String,
    /// Whether resolved notifications are sent (default true).
    pub send_resolved: bool,
    /// Optional proxy for the channel's HTTP traffic (http, https, socks5).
    pub proxy_url: Option<SecretString>,
    /// Type-specific settings.
    pub kind: ChannelKind,
}

/// Type-specific channel settings.
#[derive(Debug, Clone)]
pub enum ChannelKind {
    /// Telegram Bot API.
    Telegram(telegram::TelegramConfig),
    /// A JSON POST to one URL.
    Webhook(webhook::WebhookConfig),
}

/// Channel types of the product contract not built yet.
const NOT_YET_TYPES: &[&str] = &["email", "wecom", "slack"];

impl ChannelConfig {
    /// The type name as written in the config.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ChannelKind::Telegram(_) => "telegram",
            ChannelKind::Webhook(_) => "webhook",
        }
    }

    /// Reads one `channels[i]` entry.
    pub fn from_yaml(w: &mut Walker, node: &Node, path: &str) -> Option<ChannelConfig> {
        let mut m = w.map(node, path)?;
        let name = w.required_string(&mut m, "name");
        if let Some(n) = &name {
            if !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                w.error(
                    node.line,
                    &m.path_of("name"),
                    format!("`{n}`: use letters, digits, - and _ only"),
                );
            }
        }
        let type_node = m.take("type");
        let type_name = match type_node {
            Some(t) => w.string(t, &m.path_of("type")),
            None => {
                w.error(
                    node.line,
                    path,
                    "`type` is required (telegram, email, wecom, slack or webhook)".into(),
                );
                None
            }
        };
        let send_resolved = match m.take("send_resolved") {
            Some(b) => w.bool(b, &m.path_of("send_resolved")).unwrap_or(true),
            None => true,
        };
        let proxy_url = match m.take("proxy_url") {
            Some(p) => {
                let s = w.string(p, &m.path_of("proxy_url"));
                match s.as_deref().map(url::Url::parse) {
                    Some(Ok(u)) if ["http", "https", "socks5", "socks5h"].contains(&u.scheme()) => {
                        s.map(SecretString::from)
                    }
                    Some(_) => {
                        w.error(
                            p.line,
                            &m.path_of("proxy_url"),
                            "must be an http://, https:// or socks5:// URL".into(),
                        );
                        None
                    }
                    None => None,
                }
            }
            None => None,
        };
        m.not_supported_yet(w, "template");
        let kind = match type_name.as_deref() {
            Some("telegram") => {
                telegram::TelegramConfig::from_yaml(w, &mut m).map(ChannelKind::Telegram)
            }
            Some("webhook") => {
                webhook::WebhookConfig::from_yaml(w, &mut m).map(ChannelKind::Webhook)
            }
            Some(t) if NOT_YET_TYPES.contains(&t) => {
                if let Some(tn) = type_node {
                    w.error(
                        tn.line,
                        &m.path_of("type"),
                        format!("channel type `{t}` is not supported yet"),
                    );
                }
                // Its keys are not reported as unknown: the type is the problem.
                return None;
            }
            Some(t) => {
                if let Some(tn) = type_node {
                    w.error(
                        tn.line,
                        &m.path_of("type"),
                        format!(
                            "unknown channel type `{t}` (telegram, email, wecom, slack or webhook)"
                        ),
                    );
                }
                return None;
            }
            None => return None,
        };
        m.finish(w);
        Some(ChannelConfig {
            name: name?,
            send_resolved,
            proxy_url,
            kind: kind?,
        })
    }

    /// Builds the live channel: HTTP clients, proxies. `check-config`,
    /// `send-test` and `serve` all use this.
    pub fn build(&self, ctx: &ChannelContext) -> Result<Channel, BuildError> {
        let mut http = reqwest::Client::builder()
            .timeout(ctx.timeout)
            .connect_timeout(ctx.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("alertrelay/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = &self.proxy_url {
            let proxy = reqwest::Proxy::all(p.expose_secret())
                .map_err(|e| BuildError(format!("channel {}: proxy_url: {e}", self.name)))?;
            http = http.proxy(proxy);
        } else {
            // Only the configured proxy applies: an inherited HTTPS_PROXY
            // would silently reroute credentials.
            http = http.no_proxy();
        }
        let http = http
            .build()
            .map_err(|e| BuildError(format!("channel {}: HTTP client: {e}", self.name)))?;
        let inner = match &self.kind {
            ChannelKind::Telegram(c) => ChannelImpl::Telegram(c.build(http, ctx.clone())),
            ChannelKind::Webhook(c) => ChannelImpl::Webhook(c.build(&self.name, http, ctx.clone())),
        };
        Ok(Channel {
            name: self.name.clone(),
            send_resolved: self.send_resolved,
            inner,
        })
    }
}

/// A channel could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

/// A live channel.
pub struct Channel {
    name: String,
    send_resolved: bool,
    inner: ChannelImpl,
}

enum ChannelImpl {
    Telegram(telegram::TelegramChannel),
    Webhook(webhook::WebhookChannel),
}

/// Why a send did not go through, classified where it happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: network trouble, 5xx, rate limits.
    #[error("{reason}")]
    Transient {
        /// What happened.
        reason: String,
        /// The platform said when to come back.
        retry_after: Option<Duration>,
        /// Parts of a split message already accepted (not to be sent again).
        parts_done: u32,
    },
    /// Retrying cannot help: bad token, unknown chat, rejected content.
    #[error("{reason}")]
    Permanent {
        /// What happened.
        reason: String,
        /// Parts of a split message already accepted.
        parts_done: u32,
    },
}

impl DeliveryError {
    /// A failure worth retrying, before any part was accepted.
    pub fn transient(reason: String, retry_after: Option<Duration>) -> Self {
        DeliveryError::Transient {
            reason,
            retry_after,
            parts_done: 0,
        }
    }

    /// A failure retrying cannot help, before any part was accepted.
    pub fn permanent(reason: String) -> Self {
        DeliveryError::Permanent {
            reason,
            parts_done: 0,
        }
    }

    /// Parts already accepted before the failure.
    pub fn parts_done(&self) -> u32 {
        match self {
            DeliveryError::Transient { parts_done, .. }
            | DeliveryError::Permanent { parts_done, .. } => *parts_done,
        }
    }
}

impl Channel {
    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether resolved notifications go to this channel.
    pub fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    /// Where each notification of this channel goes: one outbox entry per
    /// destination, so one failing chat never makes another get a duplicate.
    pub fn destinations(&self) -> Vec<String> {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.destinations(),
            ChannelImpl::Webhook(h) => h.destinations(),
        }
    }

    /// Sends `group` to `destination`, skipping the first `parts_done` parts
    /// of a split message (accepted by an earlier attempt).
    pub async fn send(
        &self,
        destination: &str,
        group: &AlertGroup,
        parts_done: u32,
    ) -> Result<(), DeliveryError> {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.send(destination, group, parts_done).await,
            // One request: nothing to resume.
            ChannelImpl::Webhook(h) => h.send(group).await,
        }
    }

    /// A cheap call proving the credentials work (Telegram `getMe`).
    pub async fn healthcheck(&self) -> Result<String, DeliveryError> {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.healthcheck().await,
            ChannelImpl::Webhook(h) => h.healthcheck().await,
        }
    }
}

/// A failed HTTP exchange in a few words, for `last_error` and logs. Pass
/// the error `without_url()`: URLs of channels hold tokens.
pub(crate) fn describe_http_error(e: &reqwest::Error) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect ({cause})")
    } else {
        cause.to_string()
    }
}

/// An HTTP `Retry-After` given in seconds (the form the platforms use).
pub(crate) fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Whether a YAML value is `false` (for keys accepted only when off).
pub(crate) fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false))
}

/// Whether a YAML value is an empty list.
pub(crate) fn is_empty_list(v: &Value) -> bool {
    matches!(v, Value::Seq(items) if items.is_empty()) || matches!(v, Value::Null)
}

//! Where notifications go out: one folder per channel type, behind one enum.
//!
//! A channel turns an [`AlertGroup`] into its platform's message and sends it
//! to one destination. It knows nothing of routing or retries: it classifies
//! each failure as [`DeliveryError::Transient`] or [`DeliveryError::Permanent`]
//! and the outbox (`deliver/`) decides what to do. Adding a channel type
//! touches its own folder and one arm of [`ChannelKind`] and [`Channel`].

pub mod email;
pub mod slack;
pub mod telegram;
pub mod webhook;
pub mod wecom;

use std::time::Duration;

use chrono_tz::Tz;
use secrecy::{ExposeSecret, SecretString};

use crate::config::yaml::{Node, Value};
use crate::config::Walker;
use crate::deliver::pacing::{PaceRule, Pacer};
use crate::deliver::{DeliveryError, Sink};
use crate::model::alert::AlertStatus;
use crate::model::contacts::ContactBook;
use crate::model::notification::{AlertGroup, BacklogSummary};
use crate::template::MessageTemplate;

/// What every channel needs from the rest of the config to render and send.
#[derive(Debug, Clone)]
pub struct ChannelContext {
    /// Zone for times in messages.
    pub timezone: Tz,
    /// Base URL for links back to alertrelay.
    pub public_url: Option<String>,
    /// Upper bound on one exchange with the platform (HTTP request, SMTP command).
    pub timeout: Duration,
    /// People and groups, for `to_group`.
    pub contacts: ContactBook,
}

impl ChannelContext {
    /// What a template of channel `name` sees for `group`.
    pub fn message_context(
        &self,
        group: &AlertGroup,
        name: &str,
    ) -> crate::template::MessageContext {
        crate::template::MessageContext::new(group, name, self.timezone, self.public_url.as_deref())
    }
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
    /// The operator's `template: FILE`, compiled.
    pub template: Option<MessageTemplate>,
    /// Whether alertrelay keeps to the platform's limits and folds backlogs
    /// into summaries (default true; off for a local Bot API server).
    pub pacing: bool,
    /// Type-specific settings.
    pub kind: ChannelKind,
}

/// Type-specific channel settings.
#[derive(Debug, Clone)]
pub enum ChannelKind {
    /// Telegram Bot API.
    Telegram(telegram::TelegramConfig),
    /// SMTP mail.
    Email(email::EmailConfig),
    /// A JSON POST to one URL.
    Webhook(webhook::WebhookConfig),
    /// A WeChat Work group robot.
    Wecom(wecom::WecomConfig),
    /// A Slack incoming webhook.
    Slack(slack::SlackConfig),
}

impl ChannelConfig {
    /// The type name as written in the config.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ChannelKind::Telegram(_) => "telegram",
            ChannelKind::Email(_) => "email",
            ChannelKind::Webhook(_) => "webhook",
            ChannelKind::Wecom(_) => "wecom",
            ChannelKind::Slack(_) => "slack",
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
        let pacing = match m.take("pacing") {
            Some(b) => w.bool(b, &m.path_of("pacing")).unwrap_or(true),
            None => true,
        };
        let template = match m.take("template") {
            Some(t) => read_template(w, t, &m.path_of("template")),
            None => None,
        };
        let kind = match type_name.as_deref() {
            Some("telegram") => {
                telegram::TelegramConfig::from_yaml(w, &mut m).map(ChannelKind::Telegram)
            }
            Some("email") => {
                if let Some(p) = m.take("proxy_url") {
                    w.error(
                        p.line,
                        &m.path_of("proxy_url"),
                        "applies to HTTP channels; email connects to its SMTP server directly"
                            .into(),
                    );
                }
                email::EmailConfig::from_yaml(w, &mut m).map(ChannelKind::Email)
            }
            Some("webhook") => {
                webhook::WebhookConfig::from_yaml(w, &mut m).map(ChannelKind::Webhook)
            }
            Some("wecom") => wecom::WecomConfig::from_yaml(w, &mut m).map(ChannelKind::Wecom),
            Some("slack") => slack::SlackConfig::from_yaml(w, &mut m).map(ChannelKind::Slack),
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
            template,
            pacing,
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
            ChannelKind::Telegram(c) => {
                ChannelImpl::Telegram(c.build(&self.name, http, self.template.clone(), ctx.clone()))
            }
            ChannelKind::Email(c) => {
                ChannelImpl::Email(c.build(&self.name, self.template.clone(), ctx.clone())?)
            }
            ChannelKind::Webhook(c) => {
                ChannelImpl::Webhook(c.build(&self.name, http, self.template.clone(), ctx.clone()))
            }
            ChannelKind::Wecom(c) => {
                ChannelImpl::Wecom(c.build(&self.name, http, self.template.clone(), ctx.clone()))
            }
            ChannelKind::Slack(c) => {
                ChannelImpl::Slack(c.build(&self.name, http, self.template.clone(), ctx.clone()))
            }
        };
        let rules = if self.pacing {
            self.platform_limits()
        } else {
            Vec::new()
        };
        Ok(Channel {
            name: self.name.clone(),
            send_resolved: self.send_resolved,
            pacer: Pacer::new(&rules),
            inner,
        })
    }

    /// The platform's published limits, kept per destination.
    pub fn platform_limits(&self) -> Vec<PaceRule> {
        let second = Duration::from_secs(1);
        // Twenty a minute in every minute: a burst of 5, then one every 4 s.
        let twenty_a_minute = (5, Duration::from_secs(4));
        match self.kind {
            // About one message a second per chat; twenty a minute per
            // group or channel (negative ids, @channelname).
            ChannelKind::Telegram(_) => vec![
                PaceRule::every(1, second),
                PaceRule {
                    burst: twenty_a_minute.0,
                    interval: twenty_a_minute.1,
                    applies_to: |chat| chat.starts_with('-') || chat.starts_with('@'),
                },
            ],
            // Twenty messages a minute per robot.
            ChannelKind::Wecom(_) => vec![PaceRule::every(twenty_a_minute.0, twenty_a_minute.1)],
            // About one message a second per incoming webhook.
            ChannelKind::Slack(_) => vec![PaceRule::every(1, second)],
            // No published limit: as fast as the server accepts.
            ChannelKind::Email(_) | ChannelKind::Webhook(_) => Vec::new(),
        }
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
    pacer: Pacer,
    inner: ChannelImpl,
}

enum ChannelImpl {
    Telegram(telegram::TelegramChannel),
    Email(email::EmailChannel),
    Webhook(webhook::WebhookChannel),
    Wecom(wecom::WecomChannel),
    Slack(slack::SlackChannel),
}

impl Channel {
    /// Whether resolved notifications go to this channel.
    pub fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    /// Where each notification of this channel goes: one outbox entry per
    /// destination, so one failing chat never makes another get a duplicate.
    pub fn destinations(&self) -> Vec<String> {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.destinations(),
            ChannelImpl::Email(e) => e.destinations(),
            ChannelImpl::Webhook(h) => h.destinations(),
            ChannelImpl::Wecom(r) => r.destinations(),
            ChannelImpl::Slack(s) => s.destinations(),
        }
    }

    /// Whether chats registered with /start also receive this channel
    /// (Telegram `subscribers: true`).
    pub fn has_subscribers(&self) -> bool {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.has_subscribers(),
            _ => false,
        }
    }

    /// With subscribers, who may be one (a registered chat no longer
    /// allowed gets nothing).
    pub fn allow_list(&self) -> Option<crate::route::subscribers::AllowList> {
        match &self.inner {
            ChannelImpl::Telegram(t) if t.has_subscribers() => Some(t.allow_list()),
            _ => None,
        }
    }

    /// The bot of a Telegram channel with `commands: true`, for the chat's
    /// command poller.
    pub fn command_bot(&self) -> Option<telegram::TelegramBot> {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.command_bot(),
            _ => None,
        }
    }

    /// A cheap call proving the credentials work (Telegram `getMe`).
    pub async fn healthcheck(&self) -> Result<String, DeliveryError> {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.healthcheck().await,
            ChannelImpl::Email(e) => e.healthcheck().await,
            ChannelImpl::Webhook(h) => h.healthcheck().await,
            ChannelImpl::Wecom(r) => r.healthcheck().await,
            ChannelImpl::Slack(s) => s.healthcheck().await,
        }
    }

    /// What `group` would look like on this channel, as text for a person
    /// editing a template (`alertrelay render`). Nothing is sent.
    pub fn preview(&self, group: &AlertGroup) -> Result<String, DeliveryError> {
        match &self.inner {
            ChannelImpl::Telegram(t) => Ok(t.preview(group)),
            ChannelImpl::Email(e) => {
                let m = e.render(group)?;
                Ok(format!(
                    "To: {}\nSubject: {}\n\n--- text/plain ---\n{}\n\n--- text/html ---\n{}",
                    if m.to.is_empty() {
                        "(nobody)".to_string()
                    } else {
                        m.to.join(", ")
                    },
                    m.subject,
                    m.text,
                    m.html
                ))
            }
            ChannelImpl::Webhook(h) => h.preview(group),
            ChannelImpl::Wecom(r) => r.render(group),
            ChannelImpl::Slack(s) => s
                .payload(group)
                .map(|p| serde_json::to_string_pretty(&p).unwrap_or_default()),
        }
    }
}

#[async_trait::async_trait]
impl Sink for Channel {
    /// The configured name.
    fn name(&self) -> &str {
        &self.name
    }

    /// Sends `group` to `destination`, skipping the first `parts_done` parts
    /// of a split message (accepted by an earlier attempt).
    async fn send(
        &self,
        destination: &str,
        group: &AlertGroup,
        parts_done: u32,
    ) -> Result<(), DeliveryError> {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.send(destination, group, parts_done).await,
            // One mail or one request: nothing to resume.
            ChannelImpl::Email(e) => e.send(group).await,
            ChannelImpl::Webhook(h) => h.send(group).await,
            ChannelImpl::Wecom(r) => r.send(group).await,
            ChannelImpl::Slack(s) => s.send(group).await,
        }
    }

    /// The destination limits this channel keeps.
    fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Sends what piled up for `destination` as one message. Channels
    /// without a platform limit never build summaries; if asked, they send
    /// the resolved alerts, then the firing ones, as two notifications.
    async fn send_summary(
        &self,
        destination: &str,
        summary: &BacklogSummary,
    ) -> Result<(), DeliveryError> {
        match &self.inner {
            ChannelImpl::Telegram(t) => t.send_summary(destination, summary).await,
            ChannelImpl::Wecom(r) => r.send_summary(summary).await,
            ChannelImpl::Slack(s) => s.send_summary(summary).await,
            ChannelImpl::Email(_) | ChannelImpl::Webhook(_) => {
                for status in [AlertStatus::Resolved, AlertStatus::Firing] {
                    let alerts: Vec<_> = summary
                        .alerts
                        .iter()
                        .filter(|a| a.status == status)
                        .cloned()
                        .collect();
                    if !alerts.is_empty() {
                        let group = AlertGroup {
                            status,
                            alerts,
                            others_firing: 0,
                            reminder: false,
                            group_key: None,
                            repeats: None,
                            digest: None,
                            flapping: None,
                        };
                        self.send(destination, &group, 0).await?;
                    }
                }
                Ok(())
            }
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

/// A platform's non-2xx answer classified: timeouts, conflicts and rate
/// limits (408, 409, 425, 429) and 5xx are worth retrying (honouring
/// `Retry-After`); any other 4xx means sending again will not help.
pub(crate) fn http_status_error(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    reason: String,
) -> DeliveryError {
    match status.as_u16() {
        408 | 409 | 425 | 429 => DeliveryError::transient(reason, retry_after),
        400..=499 => DeliveryError::permanent(reason),
        _ => DeliveryError::transient(reason, retry_after),
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

/// A secret `http(s)://` URL under `key` (or `key_file`); the value is never
/// echoed in errors, since the URL itself is the credential.
pub(crate) fn secret_http_url(
    w: &mut Walker,
    m: &mut crate::config::Map,
    key: &str,
) -> Option<SecretString> {
    let line = m.take(key).map(|n| n.line);
    // `take` above only peeked at the line; `secret` reads `key` or `key_file`.
    let url = w.secret(m, key, true)?;
    match url::Url::parse(url.expose_secret()) {
        Ok(parsed) if parsed.scheme() == "http" || parsed.scheme() == "https" => Some(url),
        _ => {
            w.error(
                line.unwrap_or(0),
                &m.path_of(key),
                "must be an http:// or https:// URL".into(),
            );
            None
        }
    }
}

/// Reads and compiles `template: FILE` (relative to the config file).
fn read_template(w: &mut Walker, node: &Node, path: &str) -> Option<MessageTemplate> {
    let file = w.string(node, path)?;
    let full = w.base_dir().join(&file);
    let source = match std::fs::read_to_string(&full) {
        Ok(s) => s,
        Err(e) => {
            w.error(
                node.line,
                path,
                format!("cannot read {}: {e}", full.display()),
            );
            return None;
        }
    };
    match MessageTemplate::compile(&source, &full.display().to_string()) {
        Ok(t) => Some(t),
        Err(e) => {
            w.error(node.line, path, format!("template does not parse: {e}"));
            None
        }
    }
}

/// Whether a YAML value is an empty list.
pub(crate) fn is_empty_list(v: &Value) -> bool {
    matches!(v, Value::Seq(items) if items.is_empty()) || matches!(v, Value::Null)
}

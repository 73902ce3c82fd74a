//! Message templates: minijinja, one documented context for every channel.
//!
//! A channel renders its message from a [`MessageContext`] with either its
//! shipped default template or the operator's `template: FILE`. A template
//! that does not parse is a config error; one that fails while rendering a
//! real notification falls back to the default (the caller logs why), so an
//! alert is never lost to a template bug. Fuel bounds a runaway loop.
//!
//! The context and filters are documented in docs/TEMPLATES.md; a change
//! here is a change there.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::model::alert::{AlertStatus, IncomingAlert, Labels};
use crate::model::notification::AlertGroup;

/// Instructions one render may run: thousands of alerts fit, an endless
/// loop does not.
const FUEL: u64 = 5_000_000;

/// A compiled template, cheap to clone.
#[derive(Clone)]
pub struct MessageTemplate {
    env: Arc<Environment<'static>>,
    /// Where it came from, for messages (`default email`, a file path).
    origin: String,
}

impl std::fmt::Debug for MessageTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageTemplate")
            .field("origin", &self.origin)
            .finish()
    }
}

/// A template failed to compile or render.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl MessageTemplate {
    /// Compiles `source`; `origin` names it in errors.
    pub fn compile(source: &str, origin: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        // Nothing is escaped unless asked: each channel escapes for its own
        // markup with the filters below.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(false);
        env.add_filter("html", filter_html);
        env.add_filter("markdown", filter_markdown);
        env.add_filter("mrkdwn", filter_mrkdwn);
        env.add_filter("localtime", filter_localtime);
        env.add_filter("humanize", filter_humanize);
        env.add_filter("truncate_chars", filter_truncate_chars);
        env.add_template_owned(origin.to_string(), source.to_string())
            .map_err(|e| TemplateError(describe(&e)))?;
        Ok(Self {
            env: Arc::new(env),
            origin: origin.to_string(),
        })
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Renders the whole template.
    pub fn render<S: Serialize>(&self, ctx: &S) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(&self.origin)
            .map_err(|e| TemplateError(describe(&e)))?;
        tmpl.render(Value::from_serialize(ctx))
            .map(|s| s.trim().to_string())
            .map_err(|e| TemplateError(describe(&e)))
    }

    /// Renders the named blocks (`subject`, `html`, ...); a block the
    /// template does not define is `None`.
    pub fn render_blocks(
        &self,
        ctx: &MessageContext,
        blocks: &[&str],
    ) -> Result<Vec<Option<String>>, TemplateError> {
        let tmpl = self
            .env
            .get_template(&self.origin)
            .map_err(|e| TemplateError(describe(&e)))?;
        let fail = |e: minijinja::Error| TemplateError(describe(&e));
        // Rendering the top level once sets up the blocks; its output (the
        // blocks in a row) is not used.
        let mut captured = tmpl
            .render_captured_to(Value::from_serialize(ctx), std::io::sink())
            .map_err(fail)?;
        let mut out = Vec::with_capacity(blocks.len());
        for b in blocks {
            match captured.with_state_mut(|state| state.render_block(b)) {
                Ok(s) => out.push(Some(s.trim().to_string())),
                Err(e) if e.kind() == ErrorKind::UnknownBlock => out.push(None),
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(out)
    }
}

/// Everything a template sees. Documented in docs/TEMPLATES.md.
#[derive(Debug, Clone, Serialize)]
pub struct MessageContext {
    /// `firing` or `resolved`: the state every listed alert entered.
    pub status: AlertStatus,
    /// The channel's name.
    pub channel: String,
    /// The alerts whose state changed.
    pub alerts: Vec<AlertView>,
    /// Labels every listed alert shares.
    pub common_labels: Labels,
    /// Counts: listed firing, listed resolved, others of the group still firing.
    pub counts: Counts,
    /// Other alerts of the incoming group still firing (not listed).
    pub others_firing: u32,
    /// A `repeat_interval` reminder: still firing, nobody acknowledged.
    pub reminder: bool,
    /// A throttle window closed: `{count, since_local}` of the firing
    /// copies it counted, or none.
    pub repeats: Option<RepeatsView>,
    /// Flapping detection: `{changes, window, window_seconds, stable,
    /// text}` when the alert started flapping (`stable: false`) or is
    /// stable again after flapping (`stable: true`), or none.
    pub flapping: Option<FlappingView>,
    /// The configured IANA zone every `*_local` time is in.
    pub timezone: String,
    /// `public_url` from the config, if set.
    pub public_url: Option<String>,
}

/// Alert counts of a notification.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub firing: usize,
    pub resolved: usize,
    pub others_firing: u32,
}

/// One alert as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub fingerprint: String,
    pub status: AlertStatus,
    /// `labels.alertname`, or `(no alertname)`.
    pub alertname: String,
    pub severity: Option<String>,
    pub instance: Option<String>,
    /// `annotations.summary`, trimmed, if not empty.
    pub summary: Option<String>,
    /// `annotations.description`, trimmed, if not empty.
    pub description: Option<String>,
    pub labels: Labels,
    pub annotations: Labels,
    /// Labels other than alertname, severity and instance (shown apart).
    pub other_labels: Labels,
    pub source: String,
    /// RFC 3339, UTC.
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    /// `2026-11-22 08:49:24 CST`, in the configured zone.
    pub starts_at_local: String,
    pub ends_at_local: Option<String>,
    /// How long it lasted (resolved only): `1h 5m`.
    pub duration: Option<String>,
    pub duration_seconds: Option<i64>,
    /// The source's own link (Prometheus graph, Grafana panel), if any.
    pub generator_url: Option<String>,
    /// The alert in alertrelay (needs `public_url`).
    pub url: Option<String>,
    /// Who acknowledged this incident: `{by, memo, at_local}`, or none.
    pub ack: Option<AckView>,
}

/// What a throttle window counted, as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct RepeatsView {
    /// Firing copies received while the window was open.
    pub count: u32,
    /// When it opened, in the configured zone.
    pub since_local: String,
}

/// A flapping or stable-after-flapping message, as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct FlappingView {
    /// State changes counted (see [`crate::model::notification::Flapping`]).
    pub changes: u32,
    /// `flapping.window` as written: `10m`.
    pub window: String,
    /// The same in seconds.
    pub window_seconds: u64,
    /// False: it started flapping; true: it is stable again.
    pub stable: bool,
    /// The header's words after the mark: `changed state 6 times in 10m,
    /// now firing` or `after flapping · now resolved`.
    pub text: String,
}

impl FlappingView {
    /// The view of a group's flapping mark in its state.
    pub fn new(f: &crate::model::notification::Flapping, status: AlertStatus) -> Self {
        FlappingView {
            changes: f.changes,
            window: f.window_text(),
            window_seconds: f.window_seconds,
            stable: f.stable,
            text: flapping_text(f, status),
        }
    }
}

/// `changed state 6 times in 10m, now firing` (it started flapping) or
/// `after flapping · now resolved` (it is stable again): what follows
/// `FLAPPING · ` or `STABLE ` in every channel's header.
pub fn flapping_text(f: &crate::model::notification::Flapping, status: AlertStatus) -> String {
    if f.stable {
        format!("after flapping · now {}", status.as_str())
    } else {
        format!(
            "changed state {} times in {}, now {}",
            f.changes,
            f.window_text(),
            status.as_str()
        )
    }
}

/// An acknowledgement as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct AckView {
    /// Who.
    pub by: String,
    /// Their memo (may be empty).
    pub memo: String,
    /// When, in the configured zone.
    pub at_local: String,
}

/// Labels shown in their own place, not repeated among `other_labels`.
const SHOWN: &[&str] = &["alertname", "severity", "instance"];

impl MessageContext {
    /// The context for one notification of `channel`.
    pub fn new(group: &AlertGroup, channel: &str, timezone: Tz, public_url: Option<&str>) -> Self {
        let alerts: Vec<AlertView> = group
            .alerts
            .iter()
            .map(|a| AlertView::new(a, timezone, public_url))
            .collect();
        let mut common_labels = Labels::new();
        if let Some((first, rest)) = group.alerts.split_first() {
            for (k, v) in &first.labels {
                if rest.iter().all(|a| a.labels.get(k) == Some(v)) {
                    common_labels.insert(k.clone(), v.clone());
                }
            }
        }
        let firing = alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count();
        MessageContext {
            status: group.status,
            channel: channel.to_string(),
            counts: Counts {
                firing,
                resolved: alerts.len() - firing,
                others_firing: group.others_firing,
            },
            alerts,
            common_labels,
            others_firing: group.others_firing,
            reminder: group.reminder,
            repeats: group.repeats.as_ref().map(|r| RepeatsView {
                count: r.count,
                since_local: local_time(r.since, timezone),
            }),
            flapping: group
                .flapping
                .as_ref()
                .map(|f| FlappingView::new(f, group.status)),
            timezone: timezone.name().to_string(),
            public_url: public_url.map(str::to_string),
        }
    }
}

impl AlertView {
    fn new(a: &IncomingAlert, tz: Tz, public_url: Option<&str>) -> Self {
        let nonblank = |k: &str| {
            a.annotations
                .get(k)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let duration = match (a.status, a.ends_at) {
            (AlertStatus::Resolved, Some(end)) => Some(end - a.starts_at),
            _ => None,
        };
        AlertView {
            fingerprint: a.fingerprint.as_str().to_string(),
            status: a.status,
            alertname: a
                .labels
                .get("alertname")
                .cloned()
                .unwrap_or_else(|| "(no alertname)".into()),
            severity: a.labels.get("severity").cloned(),
            instance: a.labels.get("instance").cloned(),
            summary: nonblank("summary"),
            description: nonblank("description"),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            other_labels: a
                .labels
                .iter()
                .filter(|(k, _)| !SHOWN.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            source: a.source.as_str().to_string(),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            starts_at_local: local_time(a.starts_at, tz),
            ends_at_local: a.ends_at.map(|t| local_time(t, tz)),
            duration: duration.map(humanize),
            duration_seconds: duration.map(|d| d.num_seconds().max(0)),
            generator_url: a.generator_url.clone(),
            url: public_url.map(|base| format!("{base}/alerts/{}", a.fingerprint)),
            ack: a.ack.as_ref().map(|k| AckView {
                by: k.by.clone(),
                memo: k.memo.clone(),
                at_local: local_time(k.at, tz),
            }),
        }
    }
}

/// `2026-11-22 08:49:24 CST`.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// "12m", "1h 5m", "2d 3h", "45s".
pub fn humanize(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins, s) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) if s == 0 => format!("{m}m"),
        (0, 0, m) => format!("{m}m {s}s"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Escapes text for HTML bodies and attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Neutralises WeChat Work markdown: emphasis, code, links, headings and
/// quotes are backslash-escaped; `<` and `>` (its `<font>` tags) become
/// look-alike full-width brackets, since the robot renders entities literally.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '`' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push('＜'),
            '>' => out.push('＞'),
            c => out.push(c),
        }
    }
    out
}

/// Escapes Slack mrkdwn's three control characters, as Slack documents.
pub fn escape_mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn text_of(v: &Value) -> String {
    if v.is_undefined() || v.is_none() {
        String::new()
    } else if let Some(s) = v.as_str() {
        s.to_string()
    } else {
        v.to_string()
    }
}

fn filter_html(v: Value) -> String {
    escape_html(&text_of(&v))
}

fn filter_markdown(v: Value) -> String {
    escape_markdown(&text_of(&v))
}

fn filter_mrkdwn(v: Value) -> String {
    escape_mrkdwn(&text_of(&v))
}

/// `{{ alert.starts_at | localtime("Asia/Tokyo", "%H:%M") }}`: an RFC 3339
/// time in a zone (default: the configured one) and strftime format.
fn filter_localtime(
    state: &minijinja::State,
    v: Value,
    zone: Option<String>,
    format: Option<String>,
) -> Result<String, minijinja::Error> {
    let text = text_of(&v);
    let t = DateTime::parse_from_rfc3339(&text).map_err(|e| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("localtime: `{text}` is not an RFC 3339 time: {e}"),
        )
    })?;
    let zone = match zone {
        Some(z) => z,
        None => state
            .lookup("timezone")
            .map(|v| text_of(&v))
            .unwrap_or_else(|| "UTC".into()),
    };
    let tz: Tz = zone.parse().map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("localtime: unknown time zone `{zone}`"),
        )
    })?;
    let fmt = format.unwrap_or_else(|| "%Y-%m-%d %H:%M:%S %Z".into());
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", t.with_timezone(&tz).format(&fmt)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("localtime: bad format `{fmt}`"),
        )
    })?;
    Ok(out)
}

/// `{{ 3700 | humanize }}` → `1h 1m`.
fn filter_humanize(v: Value) -> Result<String, minijinja::Error> {
    let secs = i64::try_from(v.clone()).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("humanize: `{v}` is not a number of seconds"),
        )
    })?;
    Ok(humanize(chrono::Duration::seconds(secs)))
}

/// `{{ text | truncate_chars(200) }}`: at most n characters, `…` when cut.
fn filter_truncate_chars(v: Value, n: usize) -> String {
    let s = text_of(&v);
    if s.chars().count() <= n {
        return s;
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cuts `text` to at most `max` bytes on a line (else character) boundary,
/// appending `note` so the reader knows; the result plus note fits `max`.
pub fn trim_to_bytes(text: &str, max: usize, note: &str) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let budget = max.saturating_sub(note.len() + 1);
    let mut cut = budget.min(text.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &text[..cut];
    let head = match head.rfind('\n') {
        Some(i) if i > budget / 2 => &head[..i],
        _ => head,
    };
    format!("{}\n{note}", head.trim_end())
}

/// A template with its per-channel default for when it fails at render time.
#[derive(Debug, Clone)]
pub struct TemplatePair {
    /// The operator's template, if configured.
    pub custom: Option<MessageTemplate>,
    /// The shipped default.
    pub default: MessageTemplate,
}

impl TemplatePair {
    /// The shipped default alone; it is compiled from a constant, so a
    /// failure is a bug caught by every test.
    pub fn default_only(source: &'static str, origin: &str) -> Self {
        Self {
            custom: None,
            default: MessageTemplate::compile(source, origin)
                .unwrap_or_else(|e| panic!("shipped template does not compile: {e}")),
        }
    }

    /// Renders with the custom template, falling back to the default (and
    /// logging why) if it fails.
    pub fn render(&self, ctx: &MessageContext) -> Result<String, TemplateError> {
        if let Some(t) = &self.custom {
            match t.render(ctx) {
                Ok(s) => return Ok(s),
                Err(e) => {
                    tracing::warn!(channel = %ctx.channel, error = %e, "template failed; sending the default message")
                }
            }
        }
        self.default.render(ctx)
    }

    /// Renders blocks with the custom template (a block it lacks comes from
    /// the default), falling back to the default entirely if it fails.
    pub fn render_blocks(
        &self,
        ctx: &MessageContext,
        blocks: &[&str],
    ) -> Result<Vec<String>, TemplateError> {
        let defaults = self.default.render_blocks(ctx, blocks)?;
        let custom = match &self.custom {
            Some(t) => match t.render_blocks(ctx, blocks) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(channel = %ctx.channel, error = %e, "template failed; sending the default message");
                    vec![None; blocks.len()]
                }
            },
            None => vec![None; blocks.len()],
        };
        Ok(custom
            .into_iter()
            .zip(defaults)
            .map(|(c, d)| c.or(d).unwrap_or_default())
            .collect())
    }
}

/// Sample notifications for `render` and for checking templates.
pub fn sample_group(status: AlertStatus, now: DateTime<Utc>) -> AlertGroup {
    let labels: Labels = [
        ("alertname", "DiskFull"),
        ("severity", "critical"),
        ("instance", "db1:9100"),
        ("team", "dba"),
        ("mountpoint", "/var/lib/postgresql"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let starts_at = now - chrono::Duration::minutes(47);
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".into(), "Disk almost full on db1".into());
    annotations.insert(
        "description".into(),
        "/var/lib/postgresql is 97% full & rising.\nFree space: 2.1 GiB.".into(),
    );
    let resolved = status == AlertStatus::Resolved;
    AlertGroup {
        status,
        alerts: vec![IncomingAlert {
            fingerprint: crate::model::alert::Fingerprint::from_labels(&labels),
            status,
            labels,
            annotations,
            starts_at,
            ends_at: resolved.then_some(now),
            generator_url: Some("http://prometheus:9090/graph?g0.expr=disk".into()),
            source: crate::model::alert::Source::Alertmanager,
            ack: None,
        }],
        others_firing: if resolved { 0 } else { 2 },
        reminder: false,
        group_key: None,
        repeats: None,
        digest: None,
        flapping: None,
    }
}

#[cfg(test)]
pub(crate) mod tests;

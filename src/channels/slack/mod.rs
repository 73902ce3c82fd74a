//! `type: slack`: an incoming webhook, Block Kit blocks in an attachment
//! coloured by status, with a plain `text` fallback for notifications.
//!
//! Slack refuses a header over 150 characters, a section over 3000 and a
//! message over 50 blocks; the body is split into sections on line
//! boundaries and what would pass the block limit is trimmed with a note.
//! 429 is retried after its `Retry-After`; the webhook URL is a credential
//! and never appears in errors (the destination is named `webhook`).

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::channels::{
    describe_http_error, http_status_error, retry_after_header, secret_http_url, ChannelContext,
};
use crate::config::{Map, Walker};
use crate::deliver::DeliveryError;
use crate::model::alert::AlertStatus;
use crate::model::notification::{AlertGroup, BacklogSummary};
use crate::template::{MessageTemplate, TemplatePair};

/// The shipped default: blocks `title` and `body`.
pub const DEFAULT_TEMPLATE: &str = include_str!("default.j2");

/// Slack's limits (Block Kit reference).
pub const MAX_HEADER_CHARS: usize = 150;
pub const MAX_SECTION_CHARS: usize = 3000;
pub const MAX_BLOCKS: usize = 50;

const FIRING_COLOUR: &str = "#c62828";
const RESOLVED_COLOUR: &str = "#2e7d32";
const DESTINATION: &str = "webhook";

/// Settings of one Slack channel.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// `https://hooks.slack.com/services/...`: a credential.
    pub webhook_url: SecretString,
}

impl SlackConfig {
    /// Reads the slack-specific keys of a `channels[i]` mapping.
    pub(crate) fn from_yaml(w: &mut Walker, m: &mut Map) -> Option<SlackConfig> {
        let url = secret_http_url(w, m, "webhook_url");
        // Both verify /chatops/slack, which is not built yet.
        m.not_supported_yet(w, "signing_secret");
        m.not_supported_yet(w, "signing_secret_file");
        m.not_supported_yet(w, "command_token");
        m.not_supported_yet(w, "command_token_file");
        Some(SlackConfig { webhook_url: url? })
    }

    /// The live channel.
    pub(crate) fn build(
        &self,
        name: &str,
        http: reqwest::Client,
        template: Option<MessageTemplate>,
        ctx: ChannelContext,
    ) -> SlackChannel {
        SlackChannel {
            http,
            name: name.to_string(),
            url: self.webhook_url.clone(),
            templates: TemplatePair {
                custom: template,
                default: TemplatePair::default_only(DEFAULT_TEMPLATE, "default slack template")
                    .default,
            },
            ctx,
        }
    }
}

/// A built Slack channel.
pub(crate) struct SlackChannel {
    http: reqwest::Client,
    name: String,
    url: SecretString,
    templates: TemplatePair,
    ctx: ChannelContext,
}

fn cut_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Splits mrkdwn into section texts of at most `max` characters, on line
/// boundaries where a line fits, else inside the line.
fn sections(body: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    for line in body.lines() {
        let mut rest: Vec<char> = line.chars().collect();
        loop {
            let take = rest.len().min(max);
            let piece: String = rest.drain(..take).collect();
            let len = piece.chars().count() + 1;
            if cur_len + len > max && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            if cur_len > 0 {
                cur.push('\n');
            }
            cur.push_str(&piece);
            cur_len += len;
            if rest.is_empty() {
                break;
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

impl SlackChannel {
    pub(crate) fn destinations(&self) -> Vec<String> {
        vec![DESTINATION.to_string()]
    }

    /// The webhook's JSON body.
    pub(crate) fn payload(&self, group: &AlertGroup) -> Result<Value, DeliveryError> {
        if let Some(d) = &group.digest {
            return Ok(self.digest_payload(d));
        }
        let ctx = self.ctx.message_context(group, &self.name);
        let parts = self
            .templates
            .render_blocks(&ctx, &["title", "body"])
            .map_err(|e| DeliveryError::permanent(format!("slack: template: {e}")))?;
        let title = parts[0].split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(self.message(&title, &parts[1], group.status == AlertStatus::Firing))
    }

    /// A digest: its headline as the header, its lines as mrkdwn sections.
    pub(crate) fn digest_payload(&self, d: &crate::model::digest::Digest) -> Value {
        use crate::model::digest::Piece;
        use crate::template::escape_mrkdwn as m;
        let mut lines = d.lines(self.ctx.timezone).into_iter();
        // The first line is the headline, which the header shows.
        lines.next();
        let body: Vec<String> = lines
            .map(|l| {
                l.iter()
                    .map(|p| match p {
                        Piece::Text(t) => m(t),
                        Piece::Bold(t) => format!("*{}*", m(t)),
                        Piece::Code(t) => format!("`{}`", m(t)),
                        Piece::Italic(t) => format!("_{}_", m(t)),
                    })
                    .collect::<String>()
            })
            .collect();
        self.message(&d.title(), &body.join("\n"), d.down() > 0)
    }

    /// A header, the body in sections within Slack's limits, and the
    /// channel's context line, coloured by state.
    fn message(&self, title: &str, body: &str, firing: bool) -> Value {
        let mut blocks = vec![json!({
            "type": "header",
            "text": { "type": "plain_text", "text": cut_chars(title, MAX_HEADER_CHARS), "emoji": true }
        })];
        let mut texts = sections(body, MAX_SECTION_CHARS);
        // Header + sections + context must stay within the block limit.
        let room = MAX_BLOCKS - 2;
        if texts.len() > room {
            texts.truncate(room);
            if let Some(last) = texts.last_mut() {
                let note = "\n_… trimmed to fit Slack's message limit_";
                *last = cut_chars(last, MAX_SECTION_CHARS - note.chars().count());
                last.push_str(note);
            }
        }
        for t in texts {
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": t } }));
        }
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": format!("alertrelay · {} · times in {}", crate::template::escape_mrkdwn(&self.name), self.ctx.timezone.name()) }]
        }));
        json!({
            "text": title,
            "attachments": [{
                "color": if firing { FIRING_COLOUR } else { RESOLVED_COLOUR },
                "fallback": title,
                "blocks": blocks,
            }]
        })
    }

    /// A backlog summary: a header and one mrkdwn line per alert.
    pub(crate) fn summary_payload(&self, summary: &BacklogSummary) -> Value {
        use crate::template::escape_mrkdwn as m;
        let title = format!("📋 {}", summary.headline());
        let mut body = String::new();
        for l in summary.lines(100) {
            body.push_str(&format!("{} *{}*", l.icon, m(&l.name)));
            if let Some(s) = &l.severity {
                body.push_str(&format!(" · {}", m(s)));
            }
            if let Some(i) = &l.instance {
                body.push_str(&format!(" · `{}`", m(i)));
            }
            body.push('\n');
        }
        if summary.alerts.len() > 100 {
            body.push_str(&format!("_… and {} more_", summary.alerts.len() - 100));
        }
        let mut blocks = vec![json!({
            "type": "header",
            "text": { "type": "plain_text", "text": cut_chars(&title, MAX_HEADER_CHARS), "emoji": true }
        })];
        for t in sections(&body, MAX_SECTION_CHARS)
            .into_iter()
            .take(MAX_BLOCKS - 1)
        {
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": t } }));
        }
        json!({
            "text": title,
            "attachments": [{
                "color": if summary.firing() > 0 { FIRING_COLOUR } else { RESOLVED_COLOUR },
                "fallback": title,
                "blocks": blocks,
            }]
        })
    }

    pub(crate) async fn send_summary(&self, summary: &BacklogSummary) -> Result<(), DeliveryError> {
        self.post(&self.summary_payload(summary)).await
    }

    pub(crate) async fn send(&self, group: &AlertGroup) -> Result<(), DeliveryError> {
        let body = self.payload(group)?;
        self.post(&body).await
    }

    async fn post(&self, body: &Value) -> Result<(), DeliveryError> {
        let resp = self
            .http
            .post(self.url.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(|e| {
                // Without the URL: it is the credential.
                DeliveryError::transient(
                    format!("slack: {}", describe_http_error(&e.without_url())),
                    None,
                )
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after_header(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        let excerpt: String = text.trim().chars().take(200).collect();
        let reason = format!("slack: HTTP {}: {excerpt}", status.as_u16());
        // invalid_payload, invalid_blocks, no_service, channel_is_archived,
        // action_prohibited are 4xx: final.
        Err(http_status_error(status, retry_after, reason))
    }

    /// An incoming webhook has no check call.
    pub(crate) async fn healthcheck(&self) -> Result<String, DeliveryError> {
        Ok("a Slack incoming webhook has no check call; send-test posts a sample".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_on_lines_and_inside_long_ones() {
        let body = format!("a\n{}\nb", "x".repeat(7000));
        let s = sections(&body, 3000);
        assert!(
            s.iter().all(|t| t.chars().count() <= 3000),
            "{:?}",
            s.iter().map(|t| t.len()).collect::<Vec<_>>()
        );
        assert_eq!(
            s.concat().replace('\n', ""),
            format!("a{}b", "x".repeat(7000))
        );
    }
}

#[cfg(test)]
mod snapshots {
    use std::time::Duration;

    use super::*;
    use crate::template::sample_group;
    use crate::template::tests::{hostile_group, resolved_pair, snapshot_now};

    fn channel() -> SlackChannel {
        let cfg = SlackConfig {
            webhook_url: "https://hooks.slack.com/services/T/B/X".to_string().into(),
        };
        let ctx = ChannelContext {
            timezone: "Europe/Moscow".parse().expect("tz"),
            public_url: Some("https://alerts.example.com".into()),
            timeout: Duration::from_secs(5),
            contacts: Default::default(),
        };
        cfg.build("uptime-slack", reqwest::Client::new(), None, ctx)
    }

    fn show(v: &Value) -> String {
        serde_json::to_string_pretty(v).unwrap_or_default()
    }

    #[test]
    fn default_slack_reminder_says_still_firing() {
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.reminder = true;
        let p = channel().payload(&g).expect("renders");
        assert!(
            p["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("⏰ STILL FIRING: DiskFull"),
            "{p}"
        );
    }

    #[test]
    fn default_slack_flapping_and_stable() {
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.others_firing = 0;
        g.flapping = Some(crate::model::notification::Flapping {
            changes: 6,
            window_seconds: 600,
            stable: false,
        });
        let p = channel().payload(&g).expect("renders");
        assert!(
            p["text"].as_str().unwrap_or("").starts_with(
                "〰️ FLAPPING · changed state 6 times in 10m, now firing: DiskFull on db1:9100"
            ),
            "{p}"
        );
        insta::assert_snapshot!(show(&p));
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.flapping = Some(crate::model::notification::Flapping {
            changes: 11,
            window_seconds: 600,
            stable: true,
        });
        let p = channel().payload(&g).expect("renders");
        assert!(
            p["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("🔥 STABLE after flapping · now firing: DiskFull"),
            "{p}"
        );
    }

    #[test]
    fn default_slack_firing() {
        let p = channel()
            .payload(&sample_group(AlertStatus::Firing, snapshot_now()))
            .expect("renders");
        insta::assert_snapshot!(show(&p));
    }

    #[test]
    fn default_slack_resolved_pair() {
        insta::assert_snapshot!(show(&channel().payload(&resolved_pair()).expect("renders")));
    }

    #[test]
    fn default_slack_hostile_fits_the_block_limits() {
        let p = channel().payload(&hostile_group()).expect("renders");
        let blocks = p["attachments"][0]["blocks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(blocks.len() <= MAX_BLOCKS);
        for b in &blocks {
            let t = b["text"]["text"].as_str().unwrap_or_default();
            assert!(t.chars().count() <= MAX_SECTION_CHARS);
            // mrkdwn is escaped; the header is plain_text, shown as written.
            if b["type"] == "section" {
                assert!(!t.contains("<script>"), "{t}");
            }
        }
        insta::assert_snapshot!(show(&p));
    }
}

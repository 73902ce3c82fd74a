//! `type: wecom`: a WeChat Work (WeCom) group robot, `msgtype: markdown`.
//!
//! The robot answers HTTP 200 for most failures and says what went wrong in
//! `errcode`: 0 is success, 45009 (over 20 messages a minute) and -1 (busy)
//! are retried later, anything else fails. Content over the robot's
//! 4096-byte limit is trimmed on a line with a note, never sent to be
//! refused. The key in `webhook_url` is a credential: it never appears in
//! errors, logs or the outbox (the destination is named `robot`).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::channels::{
    describe_http_error, http_status_error, retry_after_header, secret_http_url, ChannelContext,
};
use crate::config::{Map, Walker};
use crate::deliver::DeliveryError;
use crate::model::notification::{AlertGroup, BacklogSummary};
use crate::template::{trim_to_bytes, MessageTemplate, TemplatePair};

/// The shipped default template.
pub const DEFAULT_TEMPLATE: &str = include_str!("default.md.j2");

/// The robot's limit on `markdown.content`, in UTF-8 bytes.
pub const MAX_CONTENT_BYTES: usize = 4096;

/// Errcodes that mean "later": rate limit, system busy.
const RETRY_LATER: &[i64] = &[45009, -1];

const DESTINATION: &str = "robot";

/// Settings of one WeCom channel.
#[derive(Debug, Clone)]
pub struct WecomConfig {
    /// `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`: a credential.
    pub webhook_url: SecretString,
}

impl WecomConfig {
    /// Reads the wecom-specific keys of a `channels[i]` mapping.
    pub(crate) fn from_yaml(w: &mut Walker, m: &mut Map) -> Option<WecomConfig> {
        Some(WecomConfig {
            webhook_url: secret_http_url(w, m, "webhook_url")?,
        })
    }

    /// The live channel.
    pub(crate) fn build(
        &self,
        name: &str,
        http: reqwest::Client,
        template: Option<MessageTemplate>,
        ctx: ChannelContext,
    ) -> WecomChannel {
        WecomChannel {
            http,
            name: name.to_string(),
            url: self.webhook_url.clone(),
            templates: TemplatePair {
                custom: template,
                default: TemplatePair::default_only(DEFAULT_TEMPLATE, "default wecom template")
                    .default,
            },
            ctx,
        }
    }
}

/// A built WeCom channel.
pub(crate) struct WecomChannel {
    http: reqwest::Client,
    name: String,
    url: SecretString,
    templates: TemplatePair,
    ctx: ChannelContext,
}

#[derive(Debug, Deserialize)]
struct RobotAnswer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

impl WecomChannel {
    pub(crate) fn destinations(&self) -> Vec<String> {
        vec![DESTINATION.to_string()]
    }

    /// The markdown content, within the robot's limit.
    pub(crate) fn render(&self, group: &AlertGroup) -> Result<String, DeliveryError> {
        if let Some(d) = &group.digest {
            return Ok(self.render_digest(d));
        }
        let ctx = self.ctx.message_context(group, &self.name);
        let text = self
            .templates
            .render(&ctx)
            .map_err(|e| DeliveryError::permanent(format!("wecom: template: {e}")))?;
        let note = match ctx.alerts.first().and_then(|a| a.url.as_deref()) {
            Some(url) => format!(
                "<font color=\"comment\">… trimmed to fit; full text: [details]({url})</font>"
            ),
            None => "<font color=\"comment\">… trimmed to fit the robot's 4096-byte limit</font>"
                .to_string(),
        };
        Ok(trim_to_bytes(&text, MAX_CONTENT_BYTES, &note))
    }

    /// A digest as robot markdown; past the 4096-byte limit the rest is
    /// cut with a note (the web page has every host).
    pub(crate) fn render_digest(&self, d: &crate::model::digest::Digest) -> String {
        use crate::model::digest::Piece;
        use crate::template::escape_markdown as md;
        let text: Vec<String> = d
            .lines(self.ctx.timezone)
            .iter()
            .map(|l| {
                l.iter()
                    .map(|p| match p {
                        Piece::Text(t) => md(t),
                        Piece::Bold(t) => format!("**{}**", md(t)),
                        Piece::Code(t) => format!("`{}`", t.replace('`', "'")),
                        Piece::Italic(t) => format!("<font color=\"comment\">{}</font>", md(t)),
                    })
                    .collect::<String>()
            })
            .collect();
        trim_to_bytes(
            &text.join("\n"),
            MAX_CONTENT_BYTES,
            "<font color=\"comment\">… trimmed to fit the robot's 4096-byte limit; every host is on the web page</font>",
        )
    }

    /// A backlog summary as robot markdown.
    pub(crate) fn render_summary(&self, summary: &BacklogSummary) -> String {
        use crate::template::escape_markdown as md;
        let mut out = format!("📋 **{}:** {}", summary.count_text(), summary.split_text());
        for l in summary.lines(60) {
            out.push_str(&format!("\n{} **{}**", l.icon, md(&l.name)));
            if let Some(s) = &l.severity {
                out.push_str(&format!(" · {}", md(s)));
            }
            if let Some(i) = &l.instance {
                out.push_str(&format!(" · {}", md(i)));
            }
        }
        if summary.alerts.len() > 60 {
            out.push_str(&format!(
                "\n<font color=\"comment\">… and {} more</font>",
                summary.alerts.len() - 60
            ));
        }
        trim_to_bytes(
            &out,
            MAX_CONTENT_BYTES,
            "<font color=\"comment\">… trimmed to fit</font>",
        )
    }

    pub(crate) async fn send_summary(&self, summary: &BacklogSummary) -> Result<(), DeliveryError> {
        self.post(self.render_summary(summary)).await
    }

    pub(crate) async fn send(&self, group: &AlertGroup) -> Result<(), DeliveryError> {
        let content = self.render(group)?;
        self.post(content).await
    }

    async fn post(&self, content: String) -> Result<(), DeliveryError> {
        let body = json!({ "msgtype": "markdown", "markdown": { "content": content } });
        let resp = self
            .http
            .post(self.url.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                // Without the URL: it carries the robot's key.
                DeliveryError::transient(
                    format!("wecom: {}", describe_http_error(&e.without_url())),
                    None,
                )
            })?;
        let status = resp.status();
        let retry_after = retry_after_header(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let excerpt: String = text.trim().chars().take(200).collect();
            let reason = format!("wecom: HTTP {}: {excerpt}", status.as_u16());
            return Err(http_status_error(status, retry_after, reason));
        }
        let answer: RobotAnswer = serde_json::from_str(&text).map_err(|_| {
            let excerpt: String = text.trim().chars().take(200).collect();
            DeliveryError::transient(format!("wecom: unexpected answer: {excerpt}"), None)
        })?;
        match answer.errcode {
            0 => Ok(()),
            code if RETRY_LATER.contains(&code) => Err(DeliveryError::transient(
                format!("wecom: errcode {code}: {}", answer.errmsg),
                None,
            )),
            code => Err(DeliveryError::permanent(format!(
                "wecom: errcode {code}: {}",
                answer.errmsg
            ))),
        }
    }

    /// A robot has no call that checks the key without posting.
    pub(crate) async fn healthcheck(&self) -> Result<String, DeliveryError> {
        Ok("a WeCom robot has no check call; send-test posts a sample".into())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::alert::AlertStatus;
    use crate::template::sample_group;
    use crate::template::tests::{hostile_group, resolved_pair, snapshot_now};

    fn channel() -> WecomChannel {
        let cfg = WecomConfig {
            webhook_url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
                .to_string()
                .into(),
        };
        let ctx = ChannelContext {
            timezone: "Asia/Shanghai".parse().expect("tz"),
            public_url: Some("https://alerts.example.com".into()),
            timeout: Duration::from_secs(5),
            contacts: Default::default(),
        };
        cfg.build("ops-wecom", reqwest::Client::new(), None, ctx)
    }

    #[test]
    fn default_wecom_reminder_says_still_firing() {
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.reminder = true;
        let text = channel().render(&g).expect("renders");
        assert!(
            text.starts_with("<font color=\"warning\">**⏰ STILL FIRING"),
            "{text}"
        );
    }

    #[test]
    fn a_digest_is_robot_markdown_within_4096_bytes() {
        let now = snapshot_now();
        let small = channel()
            .render(&crate::model::notification::AlertGroup::of_digest(
                crate::model::digest::sample_digest(now),
            ))
            .expect("renders");
        insta::assert_snapshot!(small);
        let big = channel()
            .render(&crate::model::notification::AlertGroup::of_digest(
                crate::model::digest::big_hostile_digest(now, 500),
            ))
            .expect("renders");
        assert!(big.len() <= 4096, "{} bytes", big.len());
        assert!(
            big.ends_with("every host is on the web page</font>"),
            "{big}"
        );
        assert!(big.contains("`<script>*_'[x](y)&amp;`"), "{big}");
    }

    #[test]
    fn default_wecom_flapping_and_stable() {
        let mut g = sample_group(AlertStatus::Firing, snapshot_now());
        g.others_firing = 0;
        g.flapping = Some(crate::model::notification::Flapping {
            changes: 6,
            window_seconds: 600,
            stable: false,
        });
        let text = channel().render(&g).expect("renders");
        assert!(
            text.starts_with(
                "<font color=\"warning\">**〰️ FLAPPING**</font> · changed state 6 times in 10m, now firing\n"
            ),
            "{text}"
        );
        insta::assert_snapshot!(text);
        let mut g = sample_group(AlertStatus::Resolved, snapshot_now());
        g.flapping = Some(crate::model::notification::Flapping {
            changes: 11,
            window_seconds: 600,
            stable: true,
        });
        let text = channel().render(&g).expect("renders");
        assert!(
            text.starts_with(
                "<font color=\"info\">**✅ STABLE**</font> after flapping · now resolved\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn default_wecom_firing() {
        let text = channel()
            .render(&sample_group(AlertStatus::Firing, snapshot_now()))
            .expect("renders");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn default_wecom_resolved_pair() {
        insta::assert_snapshot!(channel().render(&resolved_pair()).expect("renders"));
    }

    #[test]
    fn default_wecom_hostile_is_escaped_and_fits() {
        let text = channel().render(&hostile_group()).expect("renders");
        assert!(text.len() <= MAX_CONTENT_BYTES, "{}", text.len());
        assert!(!text.contains("<script>") && !text.contains("<b>"));
        assert!(
            text.ends_with("[details](https://alerts.example.com/alerts/ff57c3ba8cfb7c95)</font>")
                || text.contains("trimmed to fit"),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }
}

//! `type: email`: one mail per notification to every recipient, HTML with a
//! plain-text alternative, over a pooled SMTP connection (lettre).
//!
//! Recipients are `to` plus every contact of the group `to_group` renders to
//! for each alert. An SMTP 4xx is retried; a 5xx is a failure that quotes
//! the server, which names the refused recipient.

mod config;

pub use config::{EmailConfig, StartTls};

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::channels::{BuildError, ChannelContext};
use crate::deliver::DeliveryError;
use crate::model::notification::AlertGroup;
use crate::template::{MessageContext, MessageTemplate, TemplatePair};

/// The shipped default: blocks `subject`, `html` and `text`.
pub const DEFAULT_TEMPLATE: &str = include_str!("default.j2");

/// The blocks a mail is made of.
const BLOCKS: [&str; 3] = ["subject", "html", "text"];

/// The only destination: one mail carries every recipient.
const DESTINATION: &str = "mail";

/// A mail as it would be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedMail {
    pub subject: String,
    pub html: String,
    pub text: String,
    pub to: Vec<String>,
}

/// A built e-mail channel.
pub(crate) struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    to_group: Option<MessageTemplate>,
    templates: TemplatePair,
    ctx: ChannelContext,
}

impl EmailConfig {
    /// The live channel with its connection pool (no connection is opened yet).
    pub(crate) fn build(
        &self,
        name: &str,
        template: Option<MessageTemplate>,
        ctx: ChannelContext,
    ) -> Result<EmailChannel, BuildError> {
        let fail = |what: String| BuildError(format!("channel {name}: {what}"));
        let url = url::Url::parse(self.smtp.expose_secret())
            .map_err(|_| fail("smtp: not a URL".into()))?;
        let host = url
            .host_str()
            .ok_or_else(|| fail("smtp: no host".into()))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let implicit = url.scheme() == "smtps";
        let port = url.port().unwrap_or(if implicit { 465 } else { 25 });
        let tls_params =
            || TlsParameters::new(host.clone()).map_err(|e| fail(format!("smtp: TLS setup: {e}")));
        let tls = if implicit {
            Tls::Wrapper(tls_params()?)
        } else {
            match self.starttls {
                StartTls::Required => Tls::Required(tls_params()?),
                StartTls::Opportunistic => Tls::Opportunistic(tls_params()?),
                StartTls::Never => Tls::None,
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(ctx.timeout));
        if !url.username().is_empty() {
            let decode = |s: &str| {
                percent_decode(s).map_err(|_| fail("smtp: credentials are not UTF-8".into()))
            };
            let user = decode(url.username())?;
            let pass = decode(url.password().unwrap_or(""))?;
            builder = builder.credentials(Credentials::new(user, pass));
        }
        Ok(EmailChannel {
            transport: builder.build(),
            name: name.to_string(),
            from: self.from.clone(),
            to: self.to.clone(),
            to_group: self.to_group.clone(),
            templates: TemplatePair {
                custom: template,
                default: TemplatePair::default_only(DEFAULT_TEMPLATE, "default email template")
                    .default,
            },
            ctx,
        })
    }
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
}

impl EmailChannel {
    pub(crate) fn destinations(&self) -> Vec<String> {
        vec![DESTINATION.to_string()]
    }

    /// `to`, then the contacts of each alert's `to_group`, each address once.
    fn recipients(&self, ctx: &MessageContext) -> (Vec<Mailbox>, Vec<String>) {
        let mut out: Vec<Mailbox> = self.to.clone();
        let mut groups: Vec<String> = Vec::new();
        if let Some(t) = &self.to_group {
            for view in &ctx.alerts {
                match t.render(view) {
                    Ok(g) if !g.is_empty() => {
                        if !groups.contains(&g) {
                            groups.push(g);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(channel = %self.name, error = %e, "to_group failed to render")
                    }
                }
            }
        }
        for g in &groups {
            for addr in self.ctx.contacts.emails_in_group(g) {
                if let Ok(mb) = addr.parse::<Mailbox>() {
                    if !out.iter().any(|m| m.email == mb.email) {
                        out.push(mb);
                    }
                }
            }
        }
        (out, groups)
    }

    /// What would be sent for `group`.
    pub(crate) fn render(&self, group: &AlertGroup) -> Result<RenderedMail, DeliveryError> {
        let ctx = self.ctx.message_context(group, &self.name);
        if let Some(d) = &group.digest {
            let (to, _) = self.recipients(&ctx);
            return Ok(self.render_digest(d, to));
        }
        let parts = self
            .templates
            .render_blocks(&ctx, &BLOCKS)
            .map_err(|e| DeliveryError::permanent(format!("email: template: {e}")))?;
        let (to, _) = self.recipients(&ctx);
        let [subject, html, text]: [String; 3] = parts
            .try_into()
            .map_err(|_| DeliveryError::permanent("email: template: missing blocks".into()))?;
        Ok(RenderedMail {
            // A header is one line.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            html,
            text,
            to: to.iter().map(ToString::to_string).collect(),
        })
    }

    /// A digest mail: the headline as subject, the lines as a simple
    /// HTML page and as text.
    fn render_digest(&self, d: &crate::model::digest::Digest, to: Vec<Mailbox>) -> RenderedMail {
        use crate::model::digest::Piece;
        use crate::template::escape_html as h;
        let lines = d.lines(self.ctx.timezone);
        let mut html = String::from(
            "<!DOCTYPE html><html><body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222\">",
        );
        for (i, l) in lines.iter().enumerate() {
            let inner: String = l
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => h(t),
                    Piece::Bold(t) => format!("<b>{}</b>", h(t)),
                    Piece::Code(t) => format!("<code>{}</code>", h(t)),
                    Piece::Italic(t) => format!("<i style=\"color:#666\">{}</i>", h(t)),
                })
                .collect();
            if i == 0 {
                html.push_str(&format!(
                    "<h2 style=\"margin:0 0 4px 0;color:{}\">{inner}</h2>",
                    if d.down() > 0 { "#c62828" } else { "#2e7d32" }
                ));
            } else if inner.is_empty() {
                html.push_str("<br>");
            } else {
                html.push_str(&format!("<div>{inner}</div>"));
            }
        }
        html.push_str(&format!(
            "<p style=\"color:#888;font-size:12px\">alertrelay, channel {}, times in {}</p></body></html>",
            h(&self.name),
            self.ctx.timezone.name()
        ));
        let title = d.title();
        RenderedMail {
            subject: title
                .trim_start_matches("📋 ")
                .replacen("DIGEST · ", "[DIGEST] ", 1),
            html,
            text: format!(
                "{}\n\n--\nalertrelay, channel {}, times in {}",
                d.plain(self.ctx.timezone),
                self.name,
                self.ctx.timezone.name()
            ),
            to: to.iter().map(ToString::to_string).collect(),
        }
    }

    pub(crate) async fn send(&self, group: &AlertGroup) -> Result<(), DeliveryError> {
        let ctx = self.ctx.message_context(group, &self.name);
        let (to, groups) = self.recipients(&ctx);
        if to.is_empty() {
            return Err(DeliveryError::permanent(format!(
                "email: no recipients: `to` is empty and to_group rendered {} with no e-mail contacts",
                if groups.is_empty() {
                    "nothing".to_string()
                } else {
                    groups
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        let mail = self.render(group)?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone());
        for mb in &to {
            builder = builder.to(mb.clone());
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|e| DeliveryError::permanent(format!("email: cannot build the mail: {e}")))?;
        // lettre bounds each command; this bounds the whole exchange, so a
        // server that accepts and then says nothing cannot hold a worker.
        match tokio::time::timeout(self.ctx.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, &to)),
            Err(_) => Err(DeliveryError::transient(
                format!(
                    "email: no answer from the SMTP server within {:?}",
                    self.ctx.timeout
                ),
                None,
            )),
        }
    }

    /// Connects and says EHLO (and STARTTLS, AUTH as configured).
    pub(crate) async fn healthcheck(&self) -> Result<String, DeliveryError> {
        match self.transport.test_connection().await {
            Ok(true) => Ok("SMTP server answered".into()),
            Ok(false) => Err(DeliveryError::transient(
                "email: the SMTP server did not answer".into(),
                None,
            )),
            Err(e) => Err(classify(&e, &[])),
        }
    }
}

/// SMTP 4xx and network trouble are retried; 5xx is final. The server's
/// text usually names a refused recipient; if it does not, the recipients
/// are listed so the failure says who did not get it.
fn classify(e: &lettre::transport::smtp::Error, to: &[Mailbox]) -> DeliveryError {
    let mut reason = format!("email: {}", describe(e));
    if e.is_permanent() || e.is_transient() {
        let named = to.iter().any(|m| reason.contains(&m.email.to_string()));
        if !named && !to.is_empty() {
            let list: Vec<String> = to.iter().map(|m| m.email.to_string()).collect();
            reason.push_str(&format!(" (recipients: {})", list.join(", ")));
        }
    }
    if e.is_permanent() {
        DeliveryError::permanent(reason)
    } else {
        DeliveryError::transient(reason, None)
    }
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::alert::AlertStatus;
    use crate::model::contacts::{Contact, ContactBook};
    use crate::template::tests::{hostile_group, resolved_pair};
    use crate::template::{sample_group, MessageTemplate};

    fn channel(template: Option<&str>) -> EmailChannel {
        let cfg = EmailConfig {
            smtp: "smtp://127.0.0.1:2525".to_string().into(),
            starttls: StartTls::Never,
            from: "Alerts <alerts@example.com>".parse().expect("from"),
            to: vec!["oncall@example.com".parse().expect("to")],
            to_group: Some(MessageTemplate::compile("{{ labels.team }}", "to_group").expect("t")),
        };
        let ctx = ChannelContext {
            timezone: "Asia/Shanghai".parse().expect("tz"),
            public_url: Some("https://alerts.example.com".into()),
            timeout: Duration::from_secs(5),
            contacts: ContactBook::new(vec![Contact {
                name: "Li Wei".into(),
                email: Some("li@example.com".into()),
                telegram: None,
                groups: vec!["dba".into()],
            }]),
        };
        let custom = template.map(|t| MessageTemplate::compile(t, "custom.j2").expect("custom"));
        cfg.build("dba-mail", custom, ctx).expect("builds")
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone;
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 22, 2, 47, 0)
            .single()
            .expect("time")
    }

    fn show(m: &RenderedMail) -> String {
        format!(
            "To: {}\nSubject: {}\n\n--- text ---\n{}\n\n--- html ---\n{}\n",
            m.to.join(", "),
            m.subject,
            m.text,
            m.html
        )
    }

    #[tokio::test]
    async fn a_digest_mail_goes_to_to_with_the_headline_as_subject_and_everything_escaped() {
        let d = crate::model::digest::big_hostile_digest(crate::template::tests::snapshot_now(), 3);
        let m = channel(None)
            .render(&crate::model::notification::AlertGroup::of_digest(d))
            .expect("renders");
        assert_eq!(m.subject, "[DIGEST] 1 down, 1 recovered, 5 up");
        assert_eq!(m.to, ["oncall@example.com"]);
        assert!(
            m.text
                .starts_with("📋 DIGEST · 1 down, 1 recovered, 5 up\n"),
            "{}",
            m.text
        );
        assert!(m.text.contains("host002.example.com"), "{}", m.text);
        assert!(
            m.html
                .contains("<code>&lt;script&gt;*_`[x](y)&amp;amp;</code>"),
            "{}",
            m.html
        );
        assert!(!m.html.contains("<script>"), "{}", m.html);
    }

    #[tokio::test]
    async fn default_mail_reminder_says_still_firing() {
        let mut g = sample_group(AlertStatus::Firing, now());
        g.reminder = true;
        let m = channel(None).render(&g).expect("renders");
        assert_eq!(m.subject, "[STILL FIRING] critical DiskFull on db1:9100");
        assert!(m.text.starts_with("STILL FIRING (reminder)"), "{}", m.text);
        assert!(
            m.html.contains("STILL FIRING &middot; reminder"),
            "{}",
            m.html
        );
    }

    #[tokio::test]
    async fn default_mail_flapping_and_stable() {
        let mut g = sample_group(AlertStatus::Firing, now());
        g.others_firing = 0;
        g.flapping = Some(crate::model::notification::Flapping {
            changes: 6,
            window_seconds: 600,
            stable: false,
        });
        let m = channel(None).render(&g).expect("renders");
        assert_eq!(m.subject, "[FLAPPING] critical DiskFull on db1:9100");
        assert!(
            m.text
                .starts_with("FLAPPING - changed state 6 times in 10m, now firing"),
            "{}",
            m.text
        );
        insta::assert_snapshot!(show(&m));
        let mut g = sample_group(AlertStatus::Resolved, now());
        g.flapping = Some(crate::model::notification::Flapping {
            changes: 11,
            window_seconds: 600,
            stable: true,
        });
        let m = channel(None).render(&g).expect("renders");
        assert_eq!(m.subject, "[STABLE RESOLVED] critical DiskFull on db1:9100");
        assert!(
            m.text.starts_with("STABLE after flapping · now resolved"),
            "{}",
            m.text
        );
        assert!(
            m.html
                .contains("&#9989; STABLE after flapping · now resolved"),
            "{}",
            m.html
        );
    }

    #[tokio::test]
    async fn default_mail_firing() {
        let m = channel(None)
            .render(&sample_group(AlertStatus::Firing, now()))
            .expect("renders");
        insta::assert_snapshot!(show(&m));
    }

    #[tokio::test]
    async fn default_mail_resolved_pair() {
        let m = channel(None).render(&resolved_pair()).expect("renders");
        assert_eq!(
            m.subject,
            "[RESOLVED:2] critical DiskFull on db1:9100 and 1 more"
        );
        insta::assert_snapshot!(show(&m));
    }

    #[tokio::test]
    async fn default_mail_hostile_content_is_escaped() {
        let m = channel(None).render(&hostile_group()).expect("renders");
        assert!(!m.html.contains("<script>"));
        assert!(!m.html.contains("<font"));
        assert!(m
            .html
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(
            m.text.contains("<script>alert('x')</script>"),
            "plain text is as sent"
        );
        assert!(!m.subject.contains('\n'));
        // The 14 000-character description is there in full: mail has no cap.
        assert!(m.text.contains(&"x&<>*_ 磁盘 ".repeat(1000)));
        insta::assert_snapshot!(show(&m).chars().take(6000).collect::<String>());
    }

    #[tokio::test]
    async fn a_custom_template_overrides_blocks_it_defines_only() {
        let ch = channel(Some(
            "{% block subject %}ALERT {{ alerts[0].alertname }} for {{ alerts[0].labels.team }}{% endblock %}",
        ));
        let m = ch
            .render(&sample_group(AlertStatus::Firing, now()))
            .expect("renders");
        assert_eq!(m.subject, "ALERT DiskFull for dba");
        assert!(m.html.contains("DiskFull"), "html from the default");
        assert!(m.text.starts_with("FIRING"), "text from the default");
        assert_eq!(m.to, ["oncall@example.com", "li@example.com"]);
    }

    #[tokio::test]
    async fn a_custom_template_failing_at_render_time_sends_the_default() {
        let ch = channel(Some(
            "{% block subject %}{{ alerts[0].labels | nosuchfilter }}{% endblock %}",
        ));
        let m = ch
            .render(&sample_group(AlertStatus::Firing, now()))
            .expect("renders");
        assert_eq!(m.subject, "[FIRING] critical DiskFull on db1:9100");
    }
}

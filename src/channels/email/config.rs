//! `type: email` settings.

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Map, Walker};
use crate::template::MessageTemplate;

/// How `smtp://` uses STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// Refuse to send if the server does not offer it.
    Required,
    /// Use it when offered (the default).
    Opportunistic,
    /// Plain text, even if offered.
    Never,
}

/// Settings of one e-mail channel.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `smtp://[user:pass@]host[:port]` or `smtps://...`; holds a password.
    pub smtp: SecretString,
    /// STARTTLS policy for `smtp://`.
    pub starttls: StartTls,
    /// The sender.
    pub from: Mailbox,
    /// Fixed recipients.
    pub to: Vec<Mailbox>,
    /// Renders a contact group name from each alert (`{{ labels.team }}`).
    pub to_group: Option<MessageTemplate>,
}

impl EmailConfig {
    /// Reads the email-specific keys of a `channels[i]` mapping.
    pub(crate) fn from_yaml(w: &mut Walker, m: &mut Map) -> Option<EmailConfig> {
        let smtp_line = m.take("smtp").map(|n| n.line).unwrap_or(0);
        let smtp = w.secret(m, "smtp", true);
        let mut implicit_tls = false;
        if let Some(s) = &smtp {
            // The value is never echoed: it may hold a password.
            match url::Url::parse(s.expose_secret()) {
                Ok(u)
                    if (u.scheme() == "smtp" || u.scheme() == "smtps")
                        && u.host_str().is_some_and(|h| !h.is_empty()) =>
                {
                    implicit_tls = u.scheme() == "smtps";
                    if u.path() != "" && u.path() != "/" {
                        w.error(
                            smtp_line,
                            &m.path_of("smtp"),
                            "must not have a path (smtp://host:port)".into(),
                        );
                    }
                }
                _ => w.error(
                    smtp_line,
                    &m.path_of("smtp"),
                    "must be an smtp:// or smtps:// URL with a host".into(),
                ),
            }
        }
        let starttls = match m.take("starttls") {
            Some(n) => match w.string(n, &m.path_of("starttls")).as_deref() {
                Some("required") => StartTls::Required,
                Some("opportunistic") => StartTls::Opportunistic,
                Some("never") => StartTls::Never,
                Some(other) => {
                    w.error(
                        n.line,
                        &m.path_of("starttls"),
                        format!("`{other}`: use required, opportunistic or never"),
                    );
                    StartTls::Opportunistic
                }
                None => StartTls::Opportunistic,
            },
            None => StartTls::Opportunistic,
        };
        if implicit_tls && !m.has_no("starttls") {
            let line = m.take("starttls").map(|n| n.line).unwrap_or(0);
            w.error(
                line,
                &m.path_of("starttls"),
                "applies to smtp:// only; smtps:// is TLS from the first byte".into(),
            );
        }
        let from = match m.take("from") {
            Some(n) => {
                let s = w.string(n, &m.path_of("from"));
                match s.as_deref().map(str::parse::<Mailbox>) {
                    Some(Ok(mb)) => Some(mb),
                    Some(Err(e)) => {
                        w.error(
                            n.line,
                            &m.path_of("from"),
                            format!("`{}` is not a mail address: {e}", s.unwrap_or_default()),
                        );
                        None
                    }
                    None => None,
                }
            }
            None => {
                let line = m.take("name").map(|n| n.line).unwrap_or(0);
                w.error(line, &m.path_of("from"), "`from` is required".into());
                None
            }
        };
        let mut to = Vec::new();
        let to_node = m.take("to");
        if let Some(n) = to_node {
            let path = m.path_of("to");
            for (i, item) in w.list(n, &path).unwrap_or_default().iter().enumerate() {
                let ipath = format!("{path}[{i}]");
                if let Some(s) = w.string(item, &ipath) {
                    match s.parse::<Mailbox>() {
                        Ok(mb) => to.push(mb),
                        Err(e) => w.error(
                            item.line,
                            &ipath,
                            format!("`{s}` is not a mail address: {e}"),
                        ),
                    }
                }
            }
        }
        let to_group = match m.take("to_group") {
            Some(n) => {
                let s = w.string(n, &m.path_of("to_group"))?;
                match MessageTemplate::compile(&s, "to_group") {
                    Ok(t) => Some(t),
                    Err(e) => {
                        w.error(n.line, &m.path_of("to_group"), e.to_string());
                        None
                    }
                }
            }
            None => None,
        };
        if to.is_empty() && to_group.is_none() && m.has_no("to_group") {
            let line = to_node
                .map(|n| n.line)
                .or(m.take("name").map(|n| n.line))
                .unwrap_or(0);
            w.error(
                line,
                &m.path_of("to"),
                "needs at least one address in `to`, or `to_group`".into(),
            );
        }
        Some(EmailConfig {
            smtp: smtp?,
            starttls,
            from: from?,
            to,
            to_group,
        })
    }
}

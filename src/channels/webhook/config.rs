//! `type: webhook` settings.

use reqwest::header::HeaderName;
use secrecy::SecretString;

use crate::channels::{secret_http_url, ChannelContext};
use crate::config::{Map, Walker};
use crate::template::MessageTemplate;

use super::WebhookChannel;

/// Settings of one webhook channel.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where to POST; may carry a token, so it is kept secret.
    pub url: SecretString,
    /// Extra request headers (`Authorization`, ...); values are secrets.
    pub headers: Vec<(HeaderName, SecretString)>,
}

/// Headers alertrelay sets itself.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

impl WebhookConfig {
    /// Reads the webhook-specific keys of a `channels[i]` mapping.
    pub(crate) fn from_yaml(w: &mut Walker, m: &mut Map) -> Option<WebhookConfig> {
        let url = secret_http_url(w, m, "url");
        let mut headers = Vec::new();
        if let Some(node) = m.take("headers") {
            let path = m.path_of("headers");
            if let Some(mut hm) = w.map(node, &path) {
                for (name, value) in hm.take_all() {
                    let hpath = format!("{path}.{name}");
                    let header = match HeaderName::from_bytes(name.as_bytes()) {
                        Ok(h) if RESERVED.contains(&h.as_str()) => {
                            w.error(
                                value.line,
                                &hpath,
                                format!("`{name}` is set by alertrelay and cannot be overridden"),
                            );
                            continue;
                        }
                        Ok(h) => h,
                        Err(_) => {
                            w.error(
                                value.line,
                                &hpath,
                                format!("`{name}` is not a valid HTTP header name"),
                            );
                            continue;
                        }
                    };
                    let Some(v) = w.string(value, &hpath) else {
                        continue;
                    };
                    if reqwest::header::HeaderValue::from_str(&v).is_err() {
                        w.error(
                            value.line,
                            &hpath,
                            "not a valid header value (control characters or non-ASCII)".into(),
                        );
                        continue;
                    }
                    headers.push((header, SecretString::from(v)));
                }
                hm.finish(w);
            }
        }
        Some(WebhookConfig { url: url?, headers })
    }

    /// The live channel.
    pub(crate) fn build(
        &self,
        name: &str,
        http: reqwest::Client,
        template: Option<MessageTemplate>,
        ctx: ChannelContext,
    ) -> WebhookChannel {
        WebhookChannel {
            http,
            name: name.to_string(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            template,
            ctx,
        }
    }
}

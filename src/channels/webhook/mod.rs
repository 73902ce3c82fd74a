//! `type: webhook`: POSTs each notification as a documented, versioned JSON
//! document to one URL (docs/WEBHOOK.md). Any 2xx is success.

mod config;

pub use config::WebhookConfig;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::channels::{describe_http_error, http_status_error, retry_after_header, ChannelContext};
use crate::deliver::DeliveryError;
use crate::model::alert::{AlertStatus, Labels};
use crate::model::notification::AlertGroup;
use crate::template::MessageTemplate;

/// The `version` field of the body. A change that could break a receiver
/// (a field removed, renamed or retyped) bumps it; new fields do not.
pub const PAYLOAD_VERSION: &str = "1";

/// The only destination of a webhook channel: the URL may hold a secret, so
/// the outbox stores this name instead of it.
const DESTINATION: &str = "url";

/// A built webhook channel.
pub(crate) struct WebhookChannel {
    pub(super) http: reqwest::Client,
    pub(super) name: String,
    pub(super) url: SecretString,
    pub(super) headers: Vec<(reqwest::header::HeaderName, SecretString)>,
    /// Renders the whole body instead of [`WebhookBody`]; must render JSON.
    pub(super) template: Option<MessageTemplate>,
    pub(super) ctx: ChannelContext,
}

/// The body, version 1.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    /// [`PAYLOAD_VERSION`].
    pub version: &'static str,
    /// The channel's name in the config.
    pub channel: &'a str,
    /// The state every listed alert entered: `firing` or `resolved`.
    pub status: AlertStatus,
    /// The alerts that changed, in the order received.
    pub alerts: Vec<WebhookAlert<'a>>,
    /// Labels every listed alert shares.
    pub common_labels: BTreeMap<&'a str, &'a str>,
    /// Other alerts of the same incoming group still firing (not listed).
    pub others_firing: u32,
    /// A `repeat_interval` reminder (still firing, not acknowledged).
    pub reminder: bool,
    /// A throttle window closed: `{"count", "since"}` of the firing copies
    /// it counted; null otherwise.
    pub repeats: Option<&'a crate::model::notification::Repeats>,
    /// A digest route's summary (then `alerts` is empty): `{"scope",
    /// "period_start", "period_end", "hosts": [{"host", "state", "since",
    /// "firing", "incidents"}], "muted": [...]}`. Only in digests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<&'a crate::model::digest::Digest>,
    /// Flapping detection: `{"changes", "window_seconds", "stable"}` when
    /// the alert started flapping (`stable: false`, its further changes
    /// are held) or is stable again (`stable: true`, its final state);
    /// absent otherwise (a new field of version 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flapping: Option<&'a crate::model::notification::Flapping>,
}

/// One alert of the body.
#[derive(Debug, Serialize)]
pub struct WebhookAlert<'a> {
    /// The alert's id in alertrelay (Alertmanager's fingerprint).
    pub fingerprint: &'a str,
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// Where it came from: `alertmanager`, `grafana`, `gcp`, `probe`.
    pub source: &'a str,
    pub labels: &'a Labels,
    pub annotations: &'a Labels,
    /// RFC 3339, UTC.
    pub starts_at: DateTime<Utc>,
    /// RFC 3339, UTC; null while firing.
    pub ends_at: Option<DateTime<Utc>>,
    /// The source's own link (Prometheus graph, Grafana panel), if any.
    pub generator_url: Option<&'a str>,
    /// The alert in alertrelay (`public_url` + `/alerts/{fingerprint}`);
    /// null without `public_url`.
    pub url: Option<String>,
    /// `{"by", "memo", "at"}` when the incident was acknowledged, else null
    /// (a new field of version 1).
    pub ack: Option<&'a crate::model::alert::Ack>,
}

impl<'a> WebhookBody<'a> {
    /// The body for one notification.
    pub fn new(channel: &'a str, group: &'a AlertGroup, public_url: Option<&str>) -> Self {
        let alerts: Vec<WebhookAlert<'a>> = group
            .alerts
            .iter()
            .map(|a| WebhookAlert {
                fingerprint: a.fingerprint.as_str(),
                status: a.status,
                source: a.source.as_str(),
                labels: &a.labels,
                annotations: &a.annotations,
                starts_at: a.starts_at,
                ends_at: a.ends_at,
                generator_url: a.generator_url.as_deref(),
                url: public_url.map(|base| format!("{base}/alerts/{}", a.fingerprint)),
                ack: a.ack.as_ref(),
            })
            .collect();
        let mut common_labels: BTreeMap<&str, &str> = BTreeMap::new();
        if let Some((first, rest)) = group.alerts.split_first() {
            for (k, v) in &first.labels {
                if rest.iter().all(|a| a.labels.get(k) == Some(v)) {
                    common_labels.insert(k, v);
                }
            }
        }
        WebhookBody {
            version: PAYLOAD_VERSION,
            channel,
            status: group.status,
            alerts,
            common_labels,
            others_firing: group.others_firing,
            reminder: group.reminder,
            repeats: group.repeats.as_ref(),
            digest: group.digest.as_deref(),
            flapping: group.flapping.as_ref(),
        }
    }
}

impl WebhookChannel {
    pub(crate) fn destinations(&self) -> Vec<String> {
        vec![DESTINATION.to_string()]
    }

    /// The JSON body: the operator's template if it renders valid JSON,
    /// else the documented [`WebhookBody`].
    fn body(&self, group: &AlertGroup) -> Result<String, DeliveryError> {
        // A template is written for alert groups; a digest has its own body.
        if let Some(t) = self.template.as_ref().filter(|_| group.digest.is_none()) {
            let ctx = self.ctx.message_context(group, &self.name);
            match t.render(&ctx) {
                Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(_) => return Ok(text),
                    Err(e) => {
                        tracing::warn!(channel = %self.name, error = %e, "template did not render JSON; sending the default body")
                    }
                },
                Err(e) => {
                    tracing::warn!(channel = %self.name, error = %e, "template failed; sending the default body")
                }
            }
        }
        serde_json::to_string(&WebhookBody::new(
            &self.name,
            group,
            self.ctx.public_url.as_deref(),
        ))
        .map_err(|e| DeliveryError::permanent(format!("webhook: cannot encode the body: {e}")))
    }

    pub(crate) fn preview(&self, group: &AlertGroup) -> Result<String, DeliveryError> {
        let body = self.body(group)?;
        Ok(match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or(body),
            Err(_) => body,
        })
    }

    pub(crate) async fn send(&self, group: &AlertGroup) -> Result<(), DeliveryError> {
        let body = self.body(group)?;
        let mut req = self
            .http
            .post(self.url.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in &self.headers {
            req = req.header(name, value.expose_secret());
        }
        let resp = req.send().await.map_err(|e| {
            // Without the URL: it may carry a token.
            DeliveryError::transient(
                format!("webhook: {}", describe_http_error(&e.without_url())),
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
        let reason = if excerpt.is_empty() {
            format!("webhook: HTTP {}", status.as_u16())
        } else {
            format!("webhook: HTTP {}: {excerpt}", status.as_u16())
        };
        Err(http_status_error(status, retry_after, reason))
    }

    /// There is no cheap call that proves a webhook works without sending.
    pub(crate) async fn healthcheck(&self) -> Result<String, DeliveryError> {
        Ok("a webhook has no check call; send-test posts a sample".into())
    }
}

#[cfg(test)]
mod snapshots {
    use crate::template::tests::{hostile_group, resolved_pair};

    use super::WebhookBody;

    #[test]
    fn a_digest_body_carries_the_hosts_and_no_alerts() {
        let d = crate::model::digest::sample_digest(crate::template::tests::snapshot_now());
        let g = crate::model::notification::AlertGroup::of_digest(d);
        let body = serde_json::to_value(WebhookBody::new("audit", &g, None)).expect("json");
        assert_eq!(body["alerts"], serde_json::json!([]));
        assert_eq!(body["digest"]["hosts"][0]["host"], "shop.example.com");
        assert_eq!(body["digest"]["hosts"][0]["state"], "down");
        assert_eq!(body["digest"]["muted"][0]["host"], "staging.example.com");
        // Not a digest: no `digest` key at all.
        let plain = crate::template::sample_group(
            crate::model::alert::AlertStatus::Firing,
            crate::template::tests::snapshot_now(),
        );
        let body = serde_json::to_value(WebhookBody::new("audit", &plain, None)).expect("json");
        assert!(body.get("digest").is_none(), "{body}");
    }

    #[test]
    fn webhook_body_resolved_pair() {
        let g = resolved_pair();
        let body = WebhookBody::new("audit", &g, Some("https://alerts.example.com"));
        insta::assert_snapshot!(serde_json::to_string_pretty(&body).unwrap_or_default());
    }

    #[test]
    fn webhook_body_says_flapping_and_stable() {
        use crate::model::alert::AlertStatus;
        let mut g = crate::template::sample_group(
            AlertStatus::Firing,
            crate::template::tests::snapshot_now(),
        );
        let body = WebhookBody::new("audit", &g, None);
        let v = serde_json::to_value(&body).unwrap_or_default();
        assert!(v.get("flapping").is_none(), "absent on ordinary messages");
        g.flapping = Some(crate::model::notification::Flapping {
            changes: 6,
            window_seconds: 600,
            stable: false,
        });
        let body = WebhookBody::new("audit", &g, None);
        let v = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(
            v["flapping"],
            serde_json::json!({"changes": 6, "window_seconds": 600, "stable": false})
        );
        g.flapping = Some(crate::model::notification::Flapping {
            changes: 11,
            window_seconds: 600,
            stable: true,
        });
        let body = WebhookBody::new("audit", &g, None);
        let v = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(
            v["flapping"],
            serde_json::json!({"changes": 11, "window_seconds": 600, "stable": true})
        );
    }

    #[test]
    fn webhook_body_hostile_is_plain_json() {
        let g = hostile_group();
        let body = WebhookBody::new("audit", &g, None);
        let text = serde_json::to_string(&body).unwrap_or_default();
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            back["alerts"][0]["labels"]["alertname"],
            "<script>alert('x')</script>"
        );
        assert!(back["alerts"][0]["url"].is_null());
    }
}

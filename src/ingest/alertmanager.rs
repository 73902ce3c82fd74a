//! Prometheus Alertmanager's webhook payload, version 4.
//!
//! <https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use crate::model::alert::{AlertStatus, Fingerprint, IncomingAlert, Source};

/// The webhook body. Group-level fields are accepted but not needed: each
/// alert carries its own labels and status.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Payload version; alertrelay reads version 4.
    pub version: Option<String>,
    /// The alerts of the group.
    pub alerts: Vec<AmAlert>,
    /// Alertmanager's link to itself: checked to be a string, not used.
    #[serde(rename = "externalURL")]
    _external_url: Option<String>,
    /// Group status, informational: checked to be a string, not used.
    #[serde(rename = "status")]
    _status: Option<String>,
    /// Alerts left out because of `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    #[serde(flatten)]
    _rest: BTreeMap<String, serde_json::Value>,
}

/// One alert of the payload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Start time.
    pub starts_at: DateTime<Utc>,
    /// End time (`0001-01-01T00:00:00Z` or a future time while firing).
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the expression.
    #[serde(rename = "generatorURL")]
    pub generator_url: Option<String>,
    /// Alertmanager's fingerprint of the labels.
    pub fingerprint: Option<String>,
}

/// Reads a body into alerts, or says what is wrong (with the JSON path).
pub fn parse(body: &[u8]) -> Result<Vec<IncomingAlert>, String> {
    // The fast path first; the path-tracking parser only to explain a failure.
    let payload: WebhookPayload = serde_json::from_slice(body).map_err(|_| explain(body))?;
    check(payload)
}

fn explain(body: &[u8]) -> String {
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, WebhookPayload>(de) {
        Ok(_) => "invalid Alertmanager webhook payload".to_string(),
        Err(e) => {
            let path = e.path().to_string();
            if path == "." {
                format!("invalid Alertmanager webhook payload: {}", e.inner())
            } else {
                format!(
                    "invalid Alertmanager webhook payload at {path}: {}",
                    e.inner()
                )
            }
        }
    }
}

fn check(payload: WebhookPayload) -> Result<Vec<IncomingAlert>, String> {
    if let Some(v) = &payload.version {
        if v != "4" {
            return Err(format!(
                "unsupported webhook payload version {v:?}; alertrelay reads version \"4\""
            ));
        }
    }
    if payload.truncated_alerts > 0 {
        tracing::warn!(
            truncated = payload.truncated_alerts,
            "Alertmanager truncated this group (max_alerts); raise max_alerts to see every alert"
        );
    }
    payload
        .alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| convert(a).map_err(|e| format!("alerts[{i}]: {e}")))
        .collect()
}

fn convert(a: AmAlert) -> Result<IncomingAlert, String> {
    if a.labels.is_empty() {
        return Err("an alert needs at least one label".into());
    }
    for name in a.labels.keys() {
        if name.is_empty() {
            return Err("label names must not be empty".into());
        }
    }
    let fingerprint = match a.fingerprint.filter(|f| !f.is_empty()) {
        Some(f) if f.len() <= 64 && f.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Fingerprint::new(f)
        }
        Some(f) => return Err(format!("fingerprint {f:?} is not a hex string")),
        None => Fingerprint::from_labels(&a.labels),
    };
    // Go's zero time means "no end".
    let ends_at = match a.status {
        AlertStatus::Firing => None,
        AlertStatus::Resolved => a.ends_at.filter(|t| t.year() > 1),
    };
    Ok(IncomingAlert {
        fingerprint,
        status: a.status,
        labels: a.labels,
        annotations: a.annotations,
        starts_at: a.starts_at,
        ends_at,
        generator_url: a.generator_url.filter(|u| !u.is_empty()),
        source: Source::Alertmanager,
        ack: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"Down\"}", "truncatedAlerts": 0,
      "status": "firing", "receiver": "relay",
      "groupLabels": {"alertname": "Down"}, "commonLabels": {"alertname": "Down"},
      "commonAnnotations": {}, "externalURL": "http://am:9093",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "Down", "instance": "a:1"},
         "annotations": {"summary": "a is down"}, "startsAt": "2026-11-22T10:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": "1a2b3c4d5e6f7a8b"},
        {"status": "resolved", "labels": {"alertname": "Down", "instance": "b:1"},
         "startsAt": "2026-11-22T09:00:00Z", "endsAt": "2026-11-22T09:30:00.123Z"}
      ]}"#;

    #[test]
    fn reads_version_4() {
        let alerts = parse(SAMPLE.as_bytes()).expect("parses");
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].fingerprint.as_str(), "1a2b3c4d5e6f7a8b");
        assert_eq!(alerts[0].ends_at, None);
        assert_eq!(
            alerts[0].annotations.get("summary").map(String::as_str),
            Some("a is down")
        );
        assert_eq!(alerts[1].status, AlertStatus::Resolved);
        assert_eq!(
            alerts[1].fingerprint,
            Fingerprint::from_labels(&alerts[1].labels)
        );
        assert!(alerts[1].ends_at.is_some());
    }

    #[test]
    fn bad_payloads_say_where() {
        let cases = [
            (r#"{"version":"4"}"#, "missing field `alerts`"),
            (
                r#"{"alerts":[{"labels":{"a":"b"},"startsAt":"2026-11-22T10:00:00Z"}]}"#,
                "missing field `status`",
            ),
            (
                r#"{"alerts":[{"status":"burning","labels":{"a":"b"},"startsAt":"2026-11-22T10:00:00Z"}]}"#,
                "alerts[0].status",
            ),
            (
                r#"{"alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2026-11-22T10:00:00Z"}]}"#,
                "alerts[0].labels.a",
            ),
            (
                r#"{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"yesterday"}]}"#,
                "alerts[0].startsAt",
            ),
            (
                r#"{"alerts":[{"status":"firing","labels":{},"startsAt":"2026-11-22T10:00:00Z"}]}"#,
                "at least one label",
            ),
            (r#"{"version":"3","alerts":[]}"#, "version"),
            (r#"{"alerts": {}}"#, "alerts"),
            (r#"[1,2]"#, "invalid"),
            (
                r#"{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-11-22T10:00:00Z","fingerprint":"../x"}]}"#,
                "fingerprint",
            ),
        ];
        for (body, expect) in cases {
            let err = parse(body.as_bytes()).expect_err(body);
            assert!(err.contains(expect), "{body} -> {err}");
        }
    }
}

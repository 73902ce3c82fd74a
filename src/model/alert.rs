//! What an alert is inside alertrelay, whatever sent it: its identity
//! ([`Fingerprint`]), its state, and the one rule that decides whether a
//! received copy is news ([`decide`]).
//!
//! Sources (`ingest/`) turn their payloads into [`IncomingAlert`]s; the store
//! keeps one [`StoredAlert`] per fingerprint and one [`Event`] per state change.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Label or annotation set, sorted by name so hashing and display are stable.
pub type Labels = BTreeMap<String, String>;

/// The identity of an alert: Alertmanager's fingerprint when it sent one, else
/// the same FNV-1a hash Alertmanager computes over the sorted labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Wraps a fingerprint given by a source. Sources validate the shape.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Alertmanager's `LabelsToSignature`: FNV-1a 64 over name, 0xff, value,
    /// 0xff for each label in name order, printed as 16 hex digits. Using the
    /// same function means an alert keeps its id whether or not the sender
    /// included the fingerprint.
    pub fn from_labels(labels: &Labels) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        const SEP: u8 = 0xff;
        if labels.is_empty() {
            return Self(format!("{OFFSET:016x}"));
        }
        let mut hash = OFFSET;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(PRIME);
            }
        };
        for (name, value) in labels {
            feed(name.as_bytes());
            feed(&[SEP]);
            feed(value.as_bytes());
            feed(&[SEP]);
        }
        Self(format!("{hash:016x}"))
    }

    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// The condition no longer holds.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// Where an alert came from; every alert carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Prometheus Alertmanager webhook.
    Alertmanager,
    /// Grafana alerting webhook.
    Grafana,
    /// GCP Monitoring incident webhook.
    Gcp,
    /// alertrelay's own HTTP probes.
    Probe,
}

impl Source {
    /// The lowercase name used in labels, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Gcp => "gcp",
            Source::Probe => "probe",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "alertmanager" => Some(Source::Alertmanager),
            "grafana" => Some(Source::Grafana),
            "gcp" => Some(Source::Gcp),
            "probe" => Some(Source::Probe),
            _ => None,
        }
    }
}

/// One alert as a source reported it, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomingAlert {
    /// Identity.
    pub fingerprint: Fingerprint,
    /// Reported state.
    pub status: AlertStatus,
    /// Identifying labels.
    pub labels: Labels,
    /// Descriptive annotations (summary, description, ...).
    pub annotations: Labels,
    /// When the condition started, as the source says.
    pub starts_at: DateTime<Utc>,
    /// When it ended, for resolved alerts.
    pub ends_at: Option<DateTime<Utc>>,
    /// Link back to the thing that raised it.
    pub generator_url: Option<String>,
    /// Which source.
    pub source: Source,
    /// Who acknowledged the current incident, as stored: set by ingest so
    /// later messages about the alert show it; never read from a webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
}

impl IncomingAlert {
    /// Labels as routes and silences see them: the alert's labels plus
    /// `source`, unless the alert set a `source` label itself.
    pub fn match_labels(&self) -> Labels {
        let mut labels = self.labels.clone();
        labels
            .entry("source".to_string())
            .or_insert_with(|| self.source.as_str().to_string());
        labels
    }
}

/// Who acknowledged an alert, why and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Person or token that acknowledged.
    pub by: String,
    /// Free-text memo.
    pub memo: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The stored current state of one alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    /// Identity; also the API id.
    pub fingerprint: Fingerprint,
    /// Current state.
    pub status: AlertStatus,
    /// Labels as last received.
    pub labels: Labels,
    /// Annotations as last received.
    pub annotations: Labels,
    /// Which source.
    pub source: Source,
    /// Start of the current (or last) incident.
    pub starts_at: DateTime<Utc>,
    /// End of the last incident, when resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// First time alertrelay received it.
    pub first_seen: DateTime<Utc>,
    /// Last time alertrelay received it.
    pub last_seen: DateTime<Utc>,
    /// Link back to the generator.
    pub generator_url: Option<String>,
    /// Acknowledgement, if any.
    pub ack: Option<Ack>,
}

/// One state change of an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Monotonic id.
    pub id: i64,
    /// The alert.
    pub fingerprint: Fingerprint,
    /// Its alertname label, for lists.
    pub alertname: String,
    /// The state it entered.
    pub status: AlertStatus,
    /// When alertrelay recorded the change.
    pub at: DateTime<Utc>,
}

/// The part of a stored alert that decides whether a received copy is news.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertState {
    /// Current state.
    pub status: AlertStatus,
    /// Start of the current or last incident.
    pub starts_at: DateTime<Utc>,
}

/// What receiving an alert means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Never seen, firing: store, record an event, notify.
    Fired,
    /// Was resolved, fires again as a new incident: event and notify.
    Refired,
    /// Was firing, now resolved: event and notify, once.
    Resolved,
    /// Never seen, already resolved (e.g. alertrelay was installed after it
    /// fired): stored with its event, not notified — nobody was told it fired.
    ResolvedUnseen,
    /// Nothing changed (a re-send, or a late copy of a finished incident):
    /// only `last_seen` moves.
    Seen,
}

impl Transition {
    /// Whether the transition is a state change that gets an event row.
    pub fn is_change(self) -> bool {
        !matches!(self, Transition::Seen)
    }

    /// Whether people should hear about it.
    pub fn notifies(self) -> bool {
        matches!(
            self,
            Transition::Fired | Transition::Refired | Transition::Resolved
        )
    }
}

/// The dedup state machine: compares what is stored with what arrived.
///
/// Alertmanager re-sends every alert of a group on each `group_interval` and
/// `repeat_interval`, and its retries can arrive out of order, so a firing
/// copy of an incident that was already resolved (same `startsAt`) is a late
/// re-send, not a new incident.
pub fn decide(existing: Option<AlertState>, incoming: &IncomingAlert) -> Transition {
    match (existing, incoming.status) {
        (None, AlertStatus::Firing) => Transition::Fired,
        (None, AlertStatus::Resolved) => Transition::ResolvedUnseen,
        (Some(s), AlertStatus::Firing) if s.status == AlertStatus::Firing => Transition::Seen,
        (Some(s), AlertStatus::Firing) => {
            if incoming.starts_at <= s.starts_at {
                Transition::Seen
            } else {
                Transition::Refired
            }
        }
        (Some(s), AlertStatus::Resolved) if s.status == AlertStatus::Firing => Transition::Resolved,
        (Some(_), AlertStatus::Resolved) => Transition::Seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, min, 0)
            .single()
            .expect("valid")
    }

    fn alert(status: AlertStatus, starts: u32) -> IncomingAlert {
        let labels: Labels = [("alertname".to_string(), "Down".to_string())].into();
        IncomingAlert {
            fingerprint: Fingerprint::from_labels(&labels),
            status,
            labels,
            annotations: Labels::new(),
            starts_at: at(starts),
            ends_at: None,
            generator_url: None,
            source: Source::Alertmanager,
            ack: None,
        }
    }

    #[test]
    fn fingerprint_matches_alertmanager() {
        // Values computed by Alertmanager's model.LabelsToSignature.
        let empty = Labels::new();
        assert_eq!(
            Fingerprint::from_labels(&empty).as_str(),
            "cbf29ce484222325"
        );
        let labels: Labels = [("alertname".to_string(), "Foo".to_string())].into();
        let fp = Fingerprint::from_labels(&labels);
        assert_eq!(fp.as_str().len(), 16);
        // Order of insertion does not matter; values do.
        let a: Labels = [("a", "1"), ("b", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let b: Labels = [("b", "2"), ("a", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c: Labels = [("a", "1"), ("b", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(Fingerprint::from_labels(&a), Fingerprint::from_labels(&b));
        assert_ne!(Fingerprint::from_labels(&a), Fingerprint::from_labels(&c));
        // The separator keeps {ab=c} and {a=bc} apart.
        let d: Labels = [("ab".to_string(), "c".to_string())].into();
        let e: Labels = [("a".to_string(), "bc".to_string())].into();
        assert_ne!(Fingerprint::from_labels(&d), Fingerprint::from_labels(&e));
    }

    #[test]
    fn fingerprint_known_value() {
        // FNV-1a over "alertname" 0xff "Foo" 0xff, computed independently.
        let labels: Labels = [("alertname".to_string(), "Foo".to_string())].into();
        let mut h: u64 = 0xcbf29ce484222325;
        for b in b"alertname\xffFoo\xff" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        assert_eq!(
            Fingerprint::from_labels(&labels).as_str(),
            format!("{h:016x}")
        );
    }

    #[test]
    fn first_firing_notifies() {
        assert_eq!(
            decide(None, &alert(AlertStatus::Firing, 0)),
            Transition::Fired
        );
    }

    #[test]
    fn resend_of_firing_is_only_seen() {
        let s = AlertState {
            status: AlertStatus::Firing,
            starts_at: at(0),
        };
        let t = decide(Some(s), &alert(AlertStatus::Firing, 0));
        assert_eq!(t, Transition::Seen);
        assert!(!t.notifies());
        assert!(!t.is_change());
    }

    #[test]
    fn resolve_notifies_once() {
        let firing = AlertState {
            status: AlertStatus::Firing,
            starts_at: at(0),
        };
        assert_eq!(
            decide(Some(firing), &alert(AlertStatus::Resolved, 0)),
            Transition::Resolved
        );
        let resolved = AlertState {
            status: AlertStatus::Resolved,
            starts_at: at(0),
        };
        assert_eq!(
            decide(Some(resolved), &alert(AlertStatus::Resolved, 0)),
            Transition::Seen
        );
    }

    #[test]
    fn late_firing_copy_of_resolved_incident_is_ignored() {
        let resolved = AlertState {
            status: AlertStatus::Resolved,
            starts_at: at(5),
        };
        assert_eq!(
            decide(Some(resolved), &alert(AlertStatus::Firing, 5)),
            Transition::Seen
        );
        assert_eq!(
            decide(Some(resolved), &alert(AlertStatus::Firing, 4)),
            Transition::Seen
        );
    }

    #[test]
    fn new_incident_after_resolve_notifies() {
        let resolved = AlertState {
            status: AlertStatus::Resolved,
            starts_at: at(5),
        };
        let t = decide(Some(resolved), &alert(AlertStatus::Firing, 20));
        assert_eq!(t, Transition::Refired);
        assert!(t.notifies());
    }

    #[test]
    fn resolved_never_seen_is_recorded_not_notified() {
        let t = decide(None, &alert(AlertStatus::Resolved, 0));
        assert_eq!(t, Transition::ResolvedUnseen);
        assert!(t.is_change());
        assert!(!t.notifies());
    }

    #[test]
    fn match_labels_adds_source_without_overriding() {
        let mut a = alert(AlertStatus::Firing, 0);
        assert_eq!(
            a.match_labels().get("source").map(String::as_str),
            Some("alertmanager")
        );
        a.labels.insert("source".into(), "custom".into());
        assert_eq!(
            a.match_labels().get("source").map(String::as_str),
            Some("custom")
        );
    }
}

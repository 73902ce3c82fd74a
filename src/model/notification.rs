//! What one notification says: the alerts whose state changed, as stored in
//! the outbox and handed to a channel to render.

use serde::{Deserialize, Serialize};

use crate::model::alert::{AlertStatus, IncomingAlert};

/// The content of one notification: alerts of one incoming group that
/// entered the same state, plus a count of the group's other alerts that are
/// still firing (listed once, not again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertGroup {
    /// The state every listed alert entered.
    pub status: AlertStatus,
    /// The alerts, in the order received.
    pub alerts: Vec<IncomingAlert>,
    /// Other alerts of the same incoming group still firing, unchanged.
    #[serde(default)]
    pub others_firing: u32,
    /// A `repeat_interval` reminder: the listed alerts are still firing
    /// and nobody acknowledged them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reminder: bool,
    /// Set when the route has `group_wait`: the notifications of one group
    /// that are pending together go out as one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
    /// A throttle window closed while the listed alert still fired and was
    /// received again meanwhile: how often, since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<Repeats>,
    /// A digest route's status summary: it replaces the alert list (which
    /// is empty) and is sent on its own, never folded into a backlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Box<crate::model::digest::Digest>>,
    /// The listed alert started flapping (`stable: false`: its further
    /// changes are held) or is stable again after flapping (`stable: true`:
    /// this is its final state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flapping: Option<Flapping>,
}

/// "Changed state 6 times in 10m": what flapping detection saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flapping {
    /// State changes counted: within the window when it started flapping;
    /// every change since it started, when it is stable again.
    pub changes: u32,
    /// The configured `flapping.window`, in seconds.
    pub window_seconds: u64,
    /// False: it started flapping. True: it has been stable for the window.
    pub stable: bool,
}

impl Flapping {
    /// The window as configured: `10m`, `1h`, `90s`, `1h30m`.
    pub fn window_text(&self) -> String {
        let s = self.window_seconds;
        let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if sec > 0 || out.is_empty() {
            out.push_str(&format!("{sec}s"));
        }
        out
    }
}

impl AlertGroup {
    /// A digest route's summary as a notification: no alerts listed, the
    /// state firing when a host is down (channels colour it so).
    pub fn of_digest(digest: crate::model::digest::Digest) -> Self {
        AlertGroup {
            status: if digest.down() > 0 {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            },
            alerts: Vec::new(),
            others_firing: 0,
            reminder: false,
            group_key: None,
            repeats: None,
            digest: Some(Box::new(digest)),
            flapping: None,
        }
    }
}

/// "Fired N times since …": what a throttle window counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repeats {
    /// Firing copies received while the window was open.
    pub count: u32,
    /// When the window opened.
    pub since: chrono::DateTime<chrono::Utc>,
}

/// What piled up for one destination while its platform's limit held it
/// back, folded into one message: each alert once, in its latest state,
/// resolved first, then critical, then the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct BacklogSummary {
    /// The alerts, in the order to show.
    pub alerts: Vec<IncomingAlert>,
    /// How many notifications were folded.
    pub folded: usize,
}

impl BacklogSummary {
    /// Folds notifications (in queue order) into one summary.
    pub fn fold<'a>(groups: impl IntoIterator<Item = &'a AlertGroup>) -> Self {
        let mut latest: Vec<IncomingAlert> = Vec::new();
        let mut folded = 0;
        for g in groups {
            folded += 1;
            for a in &g.alerts {
                match latest.iter_mut().find(|x| x.fingerprint == a.fingerprint) {
                    Some(x) => *x = a.clone(),
                    None => latest.push(a.clone()),
                }
            }
        }
        // Stable: queue order within each rank.
        latest.sort_by_key(
            |a| match (a.status, a.labels.get("severity").map(String::as_str)) {
                (AlertStatus::Resolved, _) => 0,
                (AlertStatus::Firing, Some("critical")) => 1,
                _ => 2,
            },
        );
        BacklogSummary {
            alerts: latest,
            folded,
        }
    }

    /// Alerts now firing.
    pub fn firing(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count()
    }

    /// Alerts now resolved.
    pub fn resolved(&self) -> usize {
        self.alerts.len() - self.firing()
    }

    /// `37 more alerts`.
    pub fn count_text(&self) -> String {
        let n = self.alerts.len();
        format!("{n} more alert{}", if n == 1 { "" } else { "s" })
    }

    /// `32 firing, 5 resolved`.
    pub fn split_text(&self) -> String {
        format!("{} firing, {} resolved", self.firing(), self.resolved())
    }

    /// `37 more alerts: 32 firing, 5 resolved`.
    pub fn headline(&self) -> String {
        format!("{}: {}", self.count_text(), self.split_text())
    }

    /// One line per alert (`🔥 DiskFull · critical · db1:9100`), at most
    /// `max`, then `… and N more`.
    pub fn lines(&self, max: usize) -> Vec<SummaryLine> {
        self.alerts
            .iter()
            .take(max)
            .map(|a| SummaryLine {
                icon: if a.status == AlertStatus::Firing {
                    "🔥"
                } else {
                    "✅"
                },
                name: a
                    .labels
                    .get("alertname")
                    .cloned()
                    .unwrap_or_else(|| "(no alertname)".into()),
                severity: a.labels.get("severity").cloned(),
                instance: a.labels.get("instance").cloned(),
            })
            .collect()
    }
}

/// One alert of a summary, for each channel to mark up.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryLine {
    pub icon: &'static str,
    pub name: String,
    pub severity: Option<String>,
    pub instance: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::{Fingerprint, Labels, Source};

    fn alert(name: &str, severity: &str, status: AlertStatus) -> IncomingAlert {
        let labels: Labels = [("alertname", name), ("severity", severity)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        IncomingAlert {
            fingerprint: Fingerprint::from_labels(&labels),
            status,
            labels,
            annotations: Labels::new(),
            starts_at: chrono::DateTime::UNIX_EPOCH,
            ends_at: None,
            generator_url: None,
            source: Source::Alertmanager,
            ack: None,
        }
    }

    fn group(alerts: Vec<IncomingAlert>) -> AlertGroup {
        AlertGroup {
            status: alerts[0].status,
            alerts,
            others_firing: 0,
            reminder: false,
            group_key: None,
            repeats: None,
            digest: None,
            flapping: None,
        }
    }

    #[test]
    fn fold_keeps_each_alert_once_in_its_latest_state_resolved_then_critical_first() {
        let groups = [
            group(vec![alert("Warn1", "warning", AlertStatus::Firing)]),
            group(vec![alert("Disk", "critical", AlertStatus::Firing)]),
            group(vec![alert("Warn2", "warning", AlertStatus::Firing)]),
            group(vec![alert("Crit", "critical", AlertStatus::Firing)]),
            group(vec![alert("Disk", "critical", AlertStatus::Resolved)]),
        ];
        let s = BacklogSummary::fold(groups.iter());
        assert_eq!(s.folded, 5);
        let order: Vec<(&str, AlertStatus)> = s
            .alerts
            .iter()
            .map(|a| (a.labels["alertname"].as_str(), a.status))
            .collect();
        assert_eq!(
            order,
            [
                ("Disk", AlertStatus::Resolved),
                ("Crit", AlertStatus::Firing),
                ("Warn1", AlertStatus::Firing),
                ("Warn2", AlertStatus::Firing),
            ]
        );
        assert_eq!(s.headline(), "4 more alerts: 3 firing, 1 resolved");
        assert_eq!(s.lines(2).len(), 2);
        assert_eq!(s.lines(10)[0].icon, "✅");
    }
}

#[cfg(test)]
mod flapping_tests {
    use super::Flapping;

    #[test]
    fn window_text_reads_like_the_config() {
        let w = |window_seconds| {
            Flapping {
                changes: 6,
                window_seconds,
                stable: false,
            }
            .window_text()
        };
        assert_eq!(w(600), "10m");
        assert_eq!(w(3600), "1h");
        assert_eq!(w(5400), "1h30m");
        assert_eq!(w(90), "1m30s");
        assert_eq!(w(86_400), "24h");
    }
}

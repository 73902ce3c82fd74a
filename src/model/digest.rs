//! Digests: instead of a message per event, one status summary per period
//! of every host a route covers.
//!
//! A host is an alert's `instance` label (an alert without one is listed
//! under its alertname). The summary says, for each host, whether anything
//! fires on it now, since when, and how many incidents it had in the
//! period; hosts that are down come first, then those that recovered, then
//! the quiet ones. Hosts whose alerts a silence holds are listed apart.
//!
//! Building a [`Digest`] is pure (the scheduler hands it the stored alerts
//! and events), and [`Digest::lines`] lays it out once for every channel,
//! and for `/status` and Slack `check`, in neutral markup that each channel
//! turns into its own.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::model::alert::{AlertStatus, StoredAlert};

/// Quiet hosts named on one line.
const QUIET_PER_LINE: usize = 20;

/// The status summary of one digest route for one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// What the route covers (`source="gcp"`), as written in the config.
    pub scope: String,
    /// Start of the period.
    pub period_start: DateTime<Utc>,
    /// End of the period (when the digest was made).
    pub period_end: DateTime<Utc>,
    /// Hosts no silence holds: down first, then recovered, then up.
    pub hosts: Vec<HostStatus>,
    /// Hosts every alert of which a silence holds, by name.
    #[serde(default)]
    pub muted: Vec<HostStatus>,
}

/// One host in a digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// The `instance` label (or the alertname of an alert without one).
    pub host: String,
    /// Whether anything fires on it now.
    pub state: HostState,
    /// Down: since its oldest firing alert started. Up: since its last
    /// alert resolved.
    pub since: Option<DateTime<Utc>>,
    /// Alertnames firing on it now, sorted.
    #[serde(default)]
    pub firing: Vec<String>,
    /// Incidents (alerts that fired) in the period.
    pub incidents: u32,
    /// State changes (fired or resolved) in the period: a host that is up
    /// now and changed is one that recovered.
    #[serde(default)]
    pub changes: u32,
}

/// What a period's events say of one alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodEvents {
    /// Times it fired.
    pub fired: u32,
    /// Times it resolved.
    pub resolved: u32,
}

/// A host's state in a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// At least one alert fires on it.
    Down,
    /// Nothing fires on it.
    Up,
}

/// A run of text in a digest line, marked up by each channel its own way.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// As is.
    Text(String),
    /// Emphasised.
    Bold(String),
    /// A host name or id, in monospace.
    Code(String),
    /// Quieter detail.
    Italic(String),
}

/// One line of a laid-out digest.
pub type DigestLine = Vec<Piece>;

impl Digest {
    /// Builds the digest of `alerts` (every stored alert the route sums up,
    /// any state) for the period, given what each fingerprint did in it
    /// and which alerts a silence holds now.
    pub fn build(
        scope: &str,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        alerts: &[StoredAlert],
        in_period: &HashMap<String, PeriodEvents>,
        muted: impl Fn(&StoredAlert) -> bool,
    ) -> Digest {
        struct Acc {
            status: HostStatus,
            all_muted: bool,
            oldest_firing: Option<DateTime<Utc>>,
            last_end: Option<DateTime<Utc>>,
        }
        let mut by_host: BTreeMap<String, Acc> = BTreeMap::new();
        for a in alerts {
            let host = a
                .labels
                .get("instance")
                .or_else(|| a.labels.get("alertname"))
                .cloned()
                .unwrap_or_else(|| "(no instance)".to_string());
            let acc = by_host.entry(host.clone()).or_insert_with(|| Acc {
                status: HostStatus {
                    host,
                    state: HostState::Up,
                    since: None,
                    firing: Vec::new(),
                    incidents: 0,
                    changes: 0,
                },
                all_muted: true,
                oldest_firing: None,
                last_end: None,
            });
            acc.all_muted &= muted(a);
            let events = in_period
                .get(a.fingerprint.as_str())
                .copied()
                .unwrap_or_default();
            acc.status.incidents += events.fired;
            acc.status.changes += events.fired + events.resolved;
            match a.status {
                AlertStatus::Firing => {
                    let name = a
                        .labels
                        .get("alertname")
                        .cloned()
                        .unwrap_or_else(|| "(no alertname)".into());
                    if !acc.status.firing.contains(&name) {
                        acc.status.firing.push(name);
                    }
                    acc.oldest_firing = Some(
                        acc.oldest_firing
                            .map_or(a.starts_at, |t| t.min(a.starts_at)),
                    );
                }
                AlertStatus::Resolved => {
                    let end = a.ends_at.unwrap_or(a.last_seen);
                    acc.last_end = Some(acc.last_end.map_or(end, |t| t.max(end)));
                }
            }
        }
        let mut hosts = Vec::new();
        let mut muted_hosts = Vec::new();
        for (_, mut acc) in by_host {
            acc.status.firing.sort();
            if acc.status.firing.is_empty() {
                acc.status.state = HostState::Up;
                acc.status.since = acc.last_end;
            } else {
                acc.status.state = HostState::Down;
                acc.status.since = acc.oldest_firing;
            }
            if acc.all_muted {
                muted_hosts.push(acc.status);
            } else {
                hosts.push(acc.status);
            }
        }
        // Down (longest first), then recovered (most incidents first), then
        // quiet; names break ties (the map gave name order already).
        hosts.sort_by(|a, b| {
            rank(a)
                .cmp(&rank(b))
                .then_with(|| match (a.state, b.state) {
                    (HostState::Down, HostState::Down) => a.since.cmp(&b.since),
                    _ => b.changes.cmp(&a.changes),
                })
        });
        Digest {
            scope: scope.to_string(),
            period_start,
            period_end,
            hosts,
            muted: muted_hosts,
        }
    }

    /// Hosts down now (not counting muted ones).
    pub fn down(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.state == HostState::Down)
            .count()
    }

    /// Hosts up now that had incidents in the period.
    pub fn recovered(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| h.state == HostState::Up && h.changes > 0)
            .count()
    }

    /// Hosts up with no incident in the period.
    pub fn quiet(&self) -> usize {
        self.hosts.len() - self.down() - self.recovered()
    }

    /// Nothing is down and nothing happened in the period.
    pub fn all_quiet(&self) -> bool {
        self.down() == 0 && self.recovered() == 0
    }

    /// Incidents in the period over every host that is not muted.
    pub fn incidents(&self) -> u32 {
        self.hosts.iter().map(|h| h.incidents).sum()
    }

    /// `📋 DIGEST · 2 down, 1 recovered, 497 up` — the headline, plain.
    pub fn title(&self) -> String {
        if self.all_quiet() {
            let what = match (self.hosts.len(), self.muted.len()) {
                (0, 0) => "no hosts yet".to_string(),
                (0, m) => format!("{m} muted"),
                (n, _) => hosts_up(n),
            };
            return format!("📋 DIGEST · all quiet, {what}");
        }
        let mut parts = Vec::new();
        if self.down() > 0 {
            parts.push(format!("{} down", self.down()));
        }
        if self.recovered() > 0 {
            parts.push(format!("{} recovered", self.recovered()));
        }
        if self.quiet() > 0 {
            parts.push(format!("{} up", self.quiet()));
        }
        format!("📋 DIGEST · {}", parts.join(", "))
    }

    /// The digest laid out line by line: the headline, the period, then a
    /// paragraph per kind of host. Blank lines separate paragraphs.
    pub fn lines(&self, tz: Tz) -> Vec<DigestLine> {
        use Piece::{Bold, Code, Italic, Text};
        let t = |at: DateTime<Utc>| at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
        let hm = |at: DateTime<Utc>| short_time(at, self.period_end, tz);
        let mut out: Vec<DigestLine> = vec![
            vec![Bold(self.title())],
            vec![Italic(format!(
                "{} → {} {} · {}",
                t(self.period_start),
                hm(self.period_end),
                tz_abbrev(self.period_end, tz),
                self.scope
            ))],
        ];
        if self.hosts.is_empty() && self.muted.is_empty() {
            out.push(Vec::new());
            out.push(vec![Text(
                "✅ All quiet: no host has raised an alert on this route yet.".into(),
            )]);
            return out;
        }
        if self.all_quiet() {
            out.push(Vec::new());
            out.push(vec![Text(format!(
                "✅ All quiet: {}, no incidents in this period.",
                hosts_up(self.hosts.len())
            ))]);
        }
        let down: Vec<&HostStatus> = self
            .hosts
            .iter()
            .filter(|h| h.state == HostState::Down)
            .collect();
        if !down.is_empty() {
            out.push(Vec::new());
            out.push(vec![Bold(format!("🔴 Down ({})", down.len()))]);
            for h in down {
                let mut line = vec![Text("• ".into()), Code(h.host.clone())];
                if let Some(since) = h.since {
                    line.push(Text(format!(" down since {}", hm(since))));
                }
                line.push(Text(" · ".into()));
                line.push(Text(h.firing.join(", ")));
                if h.incidents > 0 {
                    line.push(Text(" · ".into()));
                    line.push(Italic(incidents(h.incidents)));
                }
                out.push(line);
            }
        }
        let recovered: Vec<&HostStatus> = self
            .hosts
            .iter()
            .filter(|h| h.state == HostState::Up && h.changes > 0)
            .collect();
        if !recovered.is_empty() {
            out.push(Vec::new());
            out.push(vec![Bold(format!("🟡 Recovered ({})", recovered.len()))]);
            for h in recovered {
                let mut line = vec![Text("• ".into()), Code(h.host.clone())];
                if let Some(since) = h.since {
                    line.push(Text(format!(" up since {}", hm(since))));
                }
                line.push(Text(" · ".into()));
                line.push(Italic(if h.incidents > 0 {
                    incidents(h.incidents)
                } else {
                    "came back in this period".to_string()
                }));
                out.push(line);
            }
        }
        let quiet: Vec<&HostStatus> = self
            .hosts
            .iter()
            .filter(|h| h.state == HostState::Up && h.changes == 0)
            .collect();
        if !quiet.is_empty() {
            out.push(Vec::new());
            out.push(vec![Bold(format!("🟢 Up ({})", quiet.len()))]);
            // Every quiet host, named, but many to a line: 500 quiet hosts
            // are a few lines, not 500.
            for chunk in quiet.chunks(QUIET_PER_LINE) {
                let mut line = Vec::new();
                for (i, h) in chunk.iter().enumerate() {
                    if i > 0 {
                        line.push(Text(", ".into()));
                    }
                    line.push(Code(h.host.clone()));
                }
                out.push(line);
            }
        }
        if !self.muted.is_empty() {
            out.push(Vec::new());
            out.push(vec![Bold(format!(
                "🔇 Muted by a silence ({})",
                self.muted.len()
            ))]);
            for h in &self.muted {
                let mut line = vec![Text("• ".into()), Code(h.host.clone())];
                match h.state {
                    HostState::Down => {
                        line.push(Text(" down".into()));
                        if let Some(since) = h.since {
                            line.push(Text(format!(" since {}", hm(since))));
                        }
                        line.push(Text(format!(" · {}", h.firing.join(", "))));
                    }
                    HostState::Up => line.push(Text(" up".into())),
                }
                out.push(line);
            }
        }
        out
    }

    /// The digest as plain text (mail's text part, logs, previews).
    pub fn plain(&self, tz: Tz) -> String {
        self.lines(tz)
            .iter()
            .map(|l| {
                l.iter()
                    .map(|p| match p {
                        Piece::Text(s) | Piece::Bold(s) | Piece::Code(s) | Piece::Italic(s) => {
                            s.as_str()
                        }
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A digest of three hosts down, recovered and quiet plus a muted one, the
/// period ending at `now`: for `alertrelay render --sample digest` and tests.
pub fn sample_digest(now: DateTime<Utc>) -> Digest {
    let host =
        |host: &str, state, minutes_ago: i64, firing: &[&str], incidents, changes| HostStatus {
            host: host.to_string(),
            state,
            since: Some(now - chrono::Duration::minutes(minutes_ago)),
            firing: firing.iter().map(|s| s.to_string()).collect(),
            incidents,
            changes,
        };
    Digest {
        scope: "source=\"gcp\"".into(),
        period_start: now - chrono::Duration::hours(1),
        period_end: now,
        hosts: vec![
            host(
                "shop.example.com",
                HostState::Down,
                18,
                &["Uptime check shop"],
                1,
                1,
            ),
            host("api.example.com", HostState::Up, 40, &[], 2, 4),
            host("www.example.com", HostState::Up, 3000, &[], 0, 0),
            host("cdn.example.com", HostState::Up, 5000, &[], 0, 0),
        ],
        muted: vec![host(
            "staging.example.com",
            HostState::Down,
            90,
            &["Uptime check staging"],
            0,
            0,
        )],
    }
}

/// The sample digest with `n` more quiet hosts and one named like markup.
#[cfg(test)]
pub(crate) fn big_hostile_digest(now: DateTime<Utc>, n: usize) -> Digest {
    let mut d = sample_digest(now);
    d.hosts[0].host = "<script>*_`[x](y)&amp;".into();
    for i in 0..n {
        d.hosts.push(HostStatus {
            host: format!("host{i:03}.example.com"),
            state: HostState::Up,
            since: None,
            firing: Vec::new(),
            incidents: 0,
            changes: 0,
        });
    }
    d
}

fn rank(h: &HostStatus) -> u8 {
    match (h.state, h.changes) {
        (HostState::Down, _) => 0,
        (HostState::Up, n) if n > 0 => 1,
        _ => 2,
    }
}

fn hosts_up(n: usize) -> String {
    match n {
        1 => "1 host up".to_string(),
        n => format!("{n} hosts up"),
    }
}

fn incidents(n: u32) -> String {
    match n {
        1 => "1 incident".to_string(),
        n => format!("{n} incidents"),
    }
}

/// `10:42` when on the same local day as `reference`, else `11-21 10:42`.
fn short_time(at: DateTime<Utc>, reference: DateTime<Utc>, tz: Tz) -> String {
    let (a, r) = (at.with_timezone(&tz), reference.with_timezone(&tz));
    if a.date_naive() == r.date_naive() {
        a.format("%H:%M").to_string()
    } else {
        a.format("%m-%d %H:%M").to_string()
    }
}

fn tz_abbrev(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Z").to_string()
}

/// When the period that contains `now` ends: periods are aligned to local
/// midnight in `tz` (a 1h digest goes out on the hour, a 1d one at
/// midnight), counted from the Unix epoch for periods that do not divide a
/// day. Always later than `now`.
pub fn next_boundary(now: DateTime<Utc>, period: std::time::Duration, tz: Tz) -> DateTime<Utc> {
    let period_s = i64::try_from(period.as_secs()).unwrap_or(i64::MAX).max(1);
    let offset = i64::from(
        tz.offset_from_utc_datetime(&now.naive_utc())
            .fix()
            .local_minus_utc(),
    );
    let local = now.timestamp() + offset;
    let next_local = (local.div_euclid(period_s) + 1).saturating_mul(period_s);
    DateTime::<Utc>::from_timestamp(next_local - offset, 0)
        .filter(|t| *t > now)
        .unwrap_or(now + chrono::Duration::seconds(period_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::{Fingerprint, Labels, Source};

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0)
            .single()
            .expect("valid")
    }

    fn stored(name: &str, host: &str, status: AlertStatus, starts: DateTime<Utc>) -> StoredAlert {
        let labels: Labels = [("alertname", name), ("instance", host)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StoredAlert {
            fingerprint: Fingerprint::from_labels(&labels),
            status,
            labels,
            annotations: Labels::new(),
            source: Source::Alertmanager,
            starts_at: starts,
            ends_at: (status == AlertStatus::Resolved)
                .then(|| starts + chrono::Duration::minutes(5)),
            first_seen: starts,
            last_seen: starts,
            generator_url: None,
            ack: None,
        }
    }

    #[test]
    fn hosts_down_first_then_recovered_then_quiet_and_muted_apart() {
        let alerts = vec![
            stored("ProbeDown", "web1", AlertStatus::Resolved, at(1, 0)),
            stored("ProbeDown", "web2", AlertStatus::Firing, at(10, 20)),
            stored("Slow", "web2", AlertStatus::Firing, at(10, 40)),
            stored("ProbeDown", "db1", AlertStatus::Resolved, at(10, 10)),
            stored("ProbeDown", "shop", AlertStatus::Firing, at(9, 0)),
        ];
        let fired = |n| PeriodEvents {
            fired: n,
            resolved: n,
        };
        let fired: HashMap<String, PeriodEvents> = [
            (alerts[1].fingerprint.to_string(), fired(1)),
            (alerts[3].fingerprint.to_string(), fired(3)),
        ]
        .into();
        let d = Digest::build(
            "source=\"probe\"",
            at(10, 0),
            at(11, 0),
            &alerts,
            &fired,
            |a| a.labels["instance"] == "shop",
        );
        let names: Vec<(&str, HostState, u32)> = d
            .hosts
            .iter()
            .map(|h| (h.host.as_str(), h.state, h.incidents))
            .collect();
        assert_eq!(
            names,
            [
                ("web2", HostState::Down, 1),
                ("db1", HostState::Up, 3),
                ("web1", HostState::Up, 0)
            ]
        );
        assert_eq!(d.hosts[0].firing, ["ProbeDown", "Slow"]);
        assert_eq!(d.hosts[0].since, Some(at(10, 20)));
        assert_eq!(d.hosts[1].since, Some(at(10, 15)));
        assert_eq!(d.muted.len(), 1);
        assert_eq!(d.title(), "📋 DIGEST · 1 down, 1 recovered, 1 up");
        let text = d.plain(Tz::UTC);
        assert_eq!(
            text,
            "📋 DIGEST · 1 down, 1 recovered, 1 up\n\
             2026-11-22 10:00 → 11:00 UTC · source=\"probe\"\n\
             \n\
             🔴 Down (1)\n\
             • web2 down since 10:20 · ProbeDown, Slow · 1 incident\n\
             \n\
             🟡 Recovered (1)\n\
             • db1 up since 10:15 · 3 incidents\n\
             \n\
             🟢 Up (1)\n\
             web1\n\
             \n\
             🔇 Muted by a silence (1)\n\
             • shop down since 09:00 · ProbeDown"
        );
    }

    #[test]
    fn nothing_happened_is_all_quiet_and_no_host_says_so_too() {
        let none = Digest::build(
            "every alert",
            at(10, 0),
            at(11, 0),
            &[],
            &HashMap::new(),
            |_| false,
        );
        assert!(none.all_quiet());
        assert!(none
            .plain(Tz::UTC)
            .contains("All quiet: no host has raised an alert on this route yet."));
        let alerts = vec![stored("ProbeDown", "web1", AlertStatus::Resolved, at(1, 0))];
        let one = Digest::build(
            "every alert",
            at(10, 0),
            at(11, 0),
            &alerts,
            &HashMap::new(),
            |_| false,
        );
        assert_eq!(one.title(), "📋 DIGEST · all quiet, 1 host up");
        assert!(one
            .plain(Tz::UTC)
            .contains("✅ All quiet: 1 host up, no incidents in this period."));
    }

    #[test]
    fn periods_end_on_local_boundaries() {
        let shanghai: Tz = "Asia/Shanghai".parse().expect("zone");
        let hour = std::time::Duration::from_secs(3600);
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(next_boundary(at(10, 20), hour, Tz::UTC), at(11, 0));
        assert_eq!(next_boundary(at(11, 0), hour, Tz::UTC), at(12, 0));
        // Midnight in Shanghai is 16:00 UTC.
        assert_eq!(next_boundary(at(10, 20), day, shanghai), at(16, 0));
        let half = std::time::Duration::from_secs(1800);
        assert_eq!(next_boundary(at(10, 20), half, shanghai), at(10, 30));
    }
}

//! The pure heart of ingest: what a batch of received alerts changes,
//! decided without the database, and the timed rows its notifications
//! open. Both databases only load current states and write the result.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::alert::{
    decide, Ack, AlertState, AlertStatus, Fingerprint, IncomingAlert, Transition,
};
use crate::model::flapping::FlapRow;
use crate::model::flapping::FlappingConfig;

use super::error::StoreError;
use super::interface::{Decided, IngestRequest, NotificationPlanner};
use super::records::NewNotification;
use super::rows::{from_micros, to_micros};

/// What queuing notifications does to throttle windows: a firing message
/// opens one per alert (channel, fingerprint, incident start, window in
/// microseconds), a resolve message closes them.
pub(crate) struct WindowChanges {
    pub open: Vec<(String, String, i64, i64)>,
    pub close: Vec<(String, String)>,
}

pub(crate) fn window_changes(notifications: &[NewNotification]) -> WindowChanges {
    let mut changes = WindowChanges {
        open: Vec::new(),
        close: Vec::new(),
    };
    // A channel's message is queued once per destination: each alert once
    // per state (a batch may fire and then resolve it: open, then close).
    let mut seen: std::collections::HashSet<(&str, &str, AlertStatus)> =
        std::collections::HashSet::new();
    for n in notifications {
        let Some(window) = n.throttle else {
            continue;
        };
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        for a in &n.group.alerts {
            if !seen.insert((n.channel.as_str(), a.fingerprint.as_str(), n.group.status)) {
                continue;
            }
            let key = (n.channel.clone(), a.fingerprint.as_str().to_string());
            match n.group.status {
                AlertStatus::Firing => {
                    changes
                        .open
                        .push((key.0, key.1, to_micros(a.starts_at), window_us));
                }
                AlertStatus::Resolved => changes.close.push(key),
            }
        }
    }
    changes
}

/// When a notification queued at `now_us` falls due (`group_wait` holds it).
pub(crate) fn due_us(now_us: i64, delay: Option<std::time::Duration>) -> i64 {
    let delay = delay.map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    now_us.saturating_add(delay)
}

/// The reminders a firing message sets: (channel, fingerprint, incident
/// start, interval in microseconds), each once.
pub(crate) fn reminders_of(notifications: &[NewNotification]) -> Vec<(String, String, i64, i64)> {
    let mut out: Vec<(String, String, i64, i64)> = Vec::new();
    // A channel's message is queued once per destination: each alert once.
    let mut seen: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for n in notifications {
        let Some(every) = n.repeat_every else {
            continue;
        };
        if n.group.status != AlertStatus::Firing {
            continue;
        }
        let every_us = i64::try_from(every.as_micros()).unwrap_or(i64::MAX);
        for a in &n.group.alerts {
            if seen.insert((n.channel.as_str(), a.fingerprint.as_str())) {
                out.push((
                    n.channel.clone(),
                    a.fingerprint.as_str().to_string(),
                    to_micros(a.starts_at),
                    every_us,
                ));
            }
        }
    }
    out
}

/// The new stored state of one alert after a batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertWrite<'a> {
    pub alert: &'a IncomingAlert,
    pub status: AlertStatus,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// An event row to insert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventWrite {
    pub fingerprint: Fingerprint,
    pub alertname: String,
    pub status: AlertStatus,
}

/// Everything one batch writes.
#[derive(Debug, Default)]
pub(crate) struct BatchWrite<'a> {
    /// Final state per alert, one entry per fingerprint, in first-seen order.
    pub alerts: Vec<AlertWrite<'a>>,
    pub events: Vec<EventWrite>,
    pub notifications: Vec<NewNotification>,
    /// Notifications per request.
    pub per_request: Vec<usize>,
    /// (channel, fingerprint) whose open throttle window counts a repeat.
    pub repeats: Vec<(String, String)>,
    /// Flapping rows the batch changed (their new state), one per alert.
    pub flaps: Vec<(Fingerprint, FlapRow)>,
}

/// Current state of an alert as far as dedup needs it, plus its end and
/// acknowledgement (shown in later messages about it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Current {
    pub state: AlertState,
    pub ends_at: Option<DateTime<Utc>>,
    pub ack: Option<Ack>,
}

impl Current {
    /// Reads a stored (status, starts_at, ends_at, ack_by, ack_memo,
    /// ack_at) row.
    pub(crate) fn from_row(
        status: &str,
        starts_at: i64,
        ends_at: Option<i64>,
        ack: (Option<String>, Option<String>, Option<i64>),
    ) -> Result<Self, StoreError> {
        let status = AlertStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?;
        Ok(Current {
            state: AlertState {
                status,
                starts_at: from_micros(starts_at)?,
            },
            ends_at: ends_at.map(from_micros).transpose()?,
            ack: match ack {
                (Some(by), memo, Some(at)) => Some(Ack {
                    by,
                    memo: memo.unwrap_or_default(),
                    at: from_micros(at)?,
                }),
                _ => None,
            },
        })
    }
}

/// The pure heart of ingest: given what is stored for the batch's
/// fingerprints, what does the batch change? Requests are applied in order,
/// so a fingerprint that appears twice in a batch is decided against the
/// state the first occurrence left.
///
/// `flaps` are the stored flapping rows of the alerts [`flap_candidates`]
/// named (absent: the alert has none yet), `flapping` the settings they
/// were loaded for (read once per batch: a reload in between must not
/// make it decide on rows it did not load).
pub(crate) fn plan_batch<'a>(
    mut existing: HashMap<Fingerprint, Current>,
    (flapping, mut flaps): (Option<FlappingConfig>, HashMap<Fingerprint, FlapRow>),
    requests: &'a [IngestRequest],
    planner: &dyn NotificationPlanner,
    now: DateTime<Utc>,
) -> BatchWrite<'a> {
    let mut out = BatchWrite::default();
    let mut index: HashMap<Fingerprint, usize> = HashMap::new();
    let mut flaps_changed: Vec<Fingerprint> = Vec::new();
    let mut flaps_seen: std::collections::HashSet<Fingerprint> = std::collections::HashSet::new();
    for req in requests {
        let mut decided = Vec::with_capacity(req.alerts.len());
        for a in &req.alerts {
            let cur = existing.get(&a.fingerprint).cloned();
            let t = decide(cur.as_ref().map(|c| c.state), a);
            let flap = match (&flapping, t, &cur) {
                (Some(cfg), Transition::Refired | Transition::Resolved, Some(c)) => {
                    let row = flaps.entry(a.fingerprint.clone()).or_insert_with(|| {
                        let ended = if t == Transition::Refired {
                            c.ends_at
                        } else {
                            None
                        };
                        FlapRow::seeded(c.state.starts_at, ended, now, cfg)
                    });
                    if flaps_seen.insert(a.fingerprint.clone()) {
                        flaps_changed.push(a.fingerprint.clone());
                    }
                    row.change(now, cfg)
                }
                _ => None,
            };
            // An acknowledgement belongs to its incident: a new one starts
            // without.
            let ack = match t {
                Transition::Seen | Transition::Resolved => cur.as_ref().and_then(|c| c.ack.clone()),
                _ => None,
            };
            let (status, starts_at, ends_at) = match (t, cur) {
                (Transition::Seen, Some(c)) => (c.state.status, c.state.starts_at, c.ends_at),
                (Transition::Resolved, Some(c)) => (
                    AlertStatus::Resolved,
                    c.state.starts_at,
                    Some(a.ends_at.unwrap_or(now)),
                ),
                (Transition::ResolvedUnseen, _) => (
                    AlertStatus::Resolved,
                    a.starts_at,
                    Some(a.ends_at.unwrap_or(now)),
                ),
                _ => (AlertStatus::Firing, a.starts_at, None),
            };
            existing.insert(
                a.fingerprint.clone(),
                Current {
                    state: AlertState { status, starts_at },
                    ends_at,
                    ack: ack.clone(),
                },
            );
            let write = AlertWrite {
                alert: a,
                status,
                starts_at,
                ends_at,
            };
            match index.get(&a.fingerprint) {
                Some(&i) => out.alerts[i] = write,
                None => {
                    index.insert(a.fingerprint.clone(), out.alerts.len());
                    out.alerts.push(write);
                }
            }
            if t.is_change() {
                out.events.push(EventWrite {
                    fingerprint: a.fingerprint.clone(),
                    alertname: a.labels.get("alertname").cloned().unwrap_or_default(),
                    status,
                });
            }
            decided.push(Decided {
                alert: a,
                transition: t,
                starts_at,
                ends_at,
                ack,
                flap,
            });
        }
        out.repeats.extend(planner.repeats(&decided));
        let notes = planner.plan(&decided);
        out.per_request.push(notes.len());
        out.notifications.extend(notes);
    }
    out.flaps = flaps_changed
        .into_iter()
        .filter_map(|fp| flaps.remove(&fp).map(|row| (fp, row)))
        .collect();
    out
}

/// The alerts of a batch whose flapping rows ingest must load: those with
/// a stored row whose copy changes its state (Refired or Resolved). A
/// batch's first change of an alert is always decided against the stored
/// state, so checking each copy against it finds them all; new alerts and
/// re-sent ones are never named, and with flapping off nothing is.
pub(crate) fn flap_candidates(
    existing: &HashMap<Fingerprint, Current>,
    requests: &[IngestRequest],
    flapping: Option<&FlappingConfig>,
) -> Vec<Fingerprint> {
    let mut out: Vec<Fingerprint> = Vec::new();
    if flapping.is_none() || existing.is_empty() {
        return out;
    }
    let mut seen: std::collections::HashSet<&Fingerprint> = std::collections::HashSet::new();
    for a in requests.iter().flat_map(|r| r.alerts.iter()) {
        let Some(c) = existing.get(&a.fingerprint) else {
            continue;
        };
        if decide(Some(c.state), a).is_change() && seen.insert(&a.fingerprint) {
            out.push(a.fingerprint.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::Labels;
    use crate::model::alert::{AlertStatus, Fingerprint, IncomingAlert, Source};
    use crate::model::notification::AlertGroup;
    use crate::store::Cursor;
    use chrono::TimeZone;

    struct EveryChange;
    impl NotificationPlanner for EveryChange {
        fn plan(&self, alerts: &[Decided<'_>]) -> Vec<NewNotification> {
            alerts
                .iter()
                .filter(|d| d.transition.notifies())
                .map(|d| NewNotification {
                    channel: "c".into(),
                    destination: "d".into(),
                    group: AlertGroup {
                        status: d.alert.status,
                        alerts: vec![d.shown()],
                        others_firing: 0,
                        reminder: false,
                        group_key: None,
                        repeats: None,
                        digest: None,
                        flapping: None,
                    },
                    repeat_every: None,
                    delay: None,
                    throttle: None,
                })
                .collect()
        }
    }

    fn alert(status: AlertStatus) -> IncomingAlert {
        let labels: Labels = [("alertname".to_string(), "X".to_string())].into();
        IncomingAlert {
            fingerprint: Fingerprint::from_labels(&labels),
            status,
            labels,
            annotations: Labels::new(),
            starts_at: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("t"),
            ends_at: None,
            generator_url: None,
            source: Source::Alertmanager,
            ack: None,
        }
    }

    #[test]
    fn fire_resend_resolve_in_one_batch() {
        let now = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 5, 0)
            .single()
            .expect("t");
        let reqs = vec![
            IngestRequest {
                alerts: vec![alert(AlertStatus::Firing)],
            },
            IngestRequest {
                alerts: vec![alert(AlertStatus::Firing)],
            },
            IngestRequest {
                alerts: vec![alert(AlertStatus::Resolved)],
            },
        ];
        let w = plan_batch(
            HashMap::new(),
            (None, HashMap::new()),
            &reqs,
            &EveryChange,
            now,
        );
        assert_eq!(w.alerts.len(), 1, "one row per fingerprint");
        assert_eq!(w.alerts[0].status, AlertStatus::Resolved);
        assert_eq!(w.alerts[0].ends_at, Some(now));
        assert_eq!(
            w.events.iter().map(|e| e.status).collect::<Vec<_>>(),
            vec![AlertStatus::Firing, AlertStatus::Resolved]
        );
        assert_eq!(w.per_request, vec![1, 0, 1]);
    }

    #[test]
    fn only_stored_alerts_whose_copy_changes_them_load_flapping_state() {
        let cfg = FlappingConfig::default();
        let stored = |status| Current {
            state: AlertState {
                status,
                starts_at: alert(status).starts_at,
            },
            ends_at: None,
            ack: None,
        };
        let firing = alert(AlertStatus::Firing);
        let mut other = alert(AlertStatus::Firing);
        other.fingerprint = Fingerprint::new("other");
        let mut new = alert(AlertStatus::Firing);
        new.fingerprint = Fingerprint::new("new");
        let existing: HashMap<Fingerprint, Current> = [
            (firing.fingerprint.clone(), stored(AlertStatus::Firing)),
            (other.fingerprint.clone(), stored(AlertStatus::Firing)),
        ]
        .into();
        // A re-send, then a resolve of the first; a re-send of the other;
        // a new alert: only the first changes.
        let reqs = vec![IngestRequest {
            alerts: vec![
                firing.clone(),
                other.clone(),
                new.clone(),
                alert(AlertStatus::Resolved),
            ],
        }];
        assert_eq!(
            flap_candidates(&existing, &reqs, Some(&cfg)),
            vec![firing.fingerprint.clone()]
        );
        assert!(flap_candidates(&existing, &reqs, None).is_empty(), "off");
        let w = plan_batch(
            existing,
            (Some(cfg), HashMap::new()),
            &reqs,
            &EveryChange,
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 0)
                .single()
                .expect("t"),
        );
        assert_eq!(w.flaps.len(), 1, "one row written, for the resolve");
        assert_eq!(w.flaps[0].0, firing.fingerprint);
        // Its start (5 minutes before, within the 10m window) and the resolve.
        assert_eq!(w.flaps[0].1.changes.len(), 2);
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        for c in [Cursor::Alert(123, "abc:def".into()), Cursor::Id(42)] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cursor::decode("!!"), None);
        assert_eq!(Cursor::decode(""), None);
    }
}

#[cfg(test)]
mod timed_rows {
    use super::*;
    use crate::model::alert::{AlertStatus, Fingerprint, IncomingAlert, Source};
    use crate::model::notification::AlertGroup;

    use crate::model::alert::Labels;

    fn note(destination: &str, status: AlertStatus) -> NewNotification {
        let labels: Labels = [("alertname".to_string(), "X".to_string())].into();
        NewNotification {
            channel: "c".into(),
            destination: destination.into(),
            group: AlertGroup {
                status,
                alerts: vec![IncomingAlert {
                    fingerprint: Fingerprint::from_labels(&labels),
                    status,
                    labels,
                    annotations: Labels::new(),
                    starts_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
                    ends_at: None,
                    generator_url: None,
                    source: Source::Alertmanager,
                    ack: None,
                }],
                others_firing: 0,
                reminder: false,
                group_key: None,
                repeats: None,
                digest: None,
                flapping: None,
            },
            repeat_every: Some(std::time::Duration::from_secs(3600)),
            delay: None,
            throttle: Some(std::time::Duration::from_secs(120)),
        }
    }

    #[test]
    fn one_row_per_channel_and_alert_whatever_the_destinations() {
        let batch = [
            note("chat-1", AlertStatus::Firing),
            note("chat-2", AlertStatus::Firing),
            note("chat-1", AlertStatus::Resolved),
            note("chat-2", AlertStatus::Resolved),
        ];
        let w = window_changes(&batch);
        assert_eq!(w.open.len(), 1, "opened once");
        assert_eq!(w.close.len(), 1, "and closed once, after");
        assert_eq!(reminders_of(&batch).len(), 1, "firing only, once");
    }
}

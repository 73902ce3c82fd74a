//! Who hears what: the one place that turns state changes into outbox
//! entries. Routes pick the channels, silences and subscriptions pick who
//! of them hears, flapping replaces the messages of a flapping alert, a
//! digest route sends none; the ingest writer, the scheduler and the chat
//! plan through it and only carry out what it decided.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::live::Live;
use crate::model::alert::{AlertStatus, IncomingAlert, Transition};
use crate::model::digest::Digest;
use crate::model::flapping::{FlapVerdict, FlappingConfig};
use crate::model::notification::{AlertGroup, Flapping};
use crate::model::silence::SilenceBook;
use crate::route::subscribers::{AllowList, SubscriberBook};
use crate::route::{DigestRoute, Router};
use crate::store::{Decided, NewNotification, NotificationPlanner};

/// What the planner needs to know of a channel.
#[derive(Debug, Clone)]
pub struct ChannelTarget {
    /// Channel name.
    pub name: String,
    /// Its destinations (one outbox entry each).
    pub destinations: Vec<String>,
    /// Whether it wants resolved notifications.
    pub send_resolved: bool,
    /// Whether chats registered with /start also receive it (filtered by
    /// their subscriptions; see [`SubscriberBook`]).
    pub subscribers: bool,
    /// With subscribers: who may be one (`chat_ids`, `allow_from`).
    pub allow: Option<Arc<AllowList>>,
}

/// The messages the scheduler sends when their time comes, as
/// [`Planner::still_due`] tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedMessage {
    /// A `repeat_interval` reminder: acknowledging stops it.
    Reminder,
    /// A throttle window's "still firing, received N times" message.
    ThrottleSummary,
}

/// Turns a request's state changes into outbox entries: per channel and per
/// new state, one message listing the alerts that changed, counting the
/// request's other still-firing alerts routed there.
/// Alerts a silence holds back are planned no message (they are stored all
/// the same; the scheduler notifies those still firing when it ends).
///
/// A flapping alert (see [`crate::model::flapping`]) gets one flapping message in
/// place of the change that made it flapping, none for the changes after,
/// and one stable message from the scheduler ([`Planner::stable`]).
pub struct Planner {
    router: Router,
    targets: Vec<ChannelTarget>,
    silences: SilenceBook,
    subscribers: SubscriberBook,
    clock: Clock,
    timezone: chrono_tz::Tz,
    flapping: Option<FlappingConfig>,
}

impl Planner {
    /// A planner for these routes and channels, minding these silences
    /// and, for channels with `subscribers: true`, these registered chats;
    /// digest periods end on boundaries in `timezone`.
    pub fn new(
        router: Router,
        targets: Vec<ChannelTarget>,
        silences: SilenceBook,
        subscribers: SubscriberBook,
        clock: Clock,
        timezone: chrono_tz::Tz,
    ) -> Self {
        Self {
            router,
            targets,
            silences,
            subscribers,
            clock,
            timezone,
            flapping: None,
        }
    }

    /// The same, detecting flapping alerts with these settings (`None`: off).
    pub fn with_flapping(mut self, flapping: Option<FlappingConfig>) -> Self {
        self.flapping = flapping;
        self
    }

    /// The routes' digests, one per (route, channel) whose channel exists.
    pub fn digest_routes(&self) -> Vec<DigestRoute> {
        self.router
            .digest_routes()
            .into_iter()
            .filter(|d| self.targets.iter().any(|t| t.name == d.channel))
            .collect()
    }

    /// Whether the alert with these labels is routed to `channel`.
    pub fn reaches(&self, labels: &crate::model::alert::Labels, channel: &str) -> bool {
        self.router
            .channels_for(labels)
            .iter()
            .any(|d| d.channel == channel)
    }

    /// Whether `digest` sums up the alert with these labels.
    pub fn in_digest(&self, labels: &crate::model::alert::Labels, digest: &DigestRoute) -> bool {
        self.router.in_digest(labels, digest)
    }

    /// The zone digest periods are aligned in.
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.timezone
    }

    /// A digest to every destination of its channel (none if it is gone).
    pub fn digest(&self, channel: &str, digest: Digest) -> Vec<NewNotification> {
        let Some(target) = self.targets.iter().find(|t| t.name == channel) else {
            return Vec::new();
        };
        let group = AlertGroup::of_digest(digest);
        // Registered chats with subscriptions get only the alerts those
        // match, and a digest lists none: only chat_ids and chats without
        // subscriptions get it.
        let mut out = Vec::new();
        self.fan_out(target, group, &mut out, |destination, group| {
            NewNotification {
                channel: channel.to_string(),
                destination,
                group,
                repeat_every: None,
                delay: None,
                throttle: None,
            }
        });
        out
    }

    /// One notification per destination of `target` for `group`: each of
    /// its `chat_ids` gets the whole group; with `subscribers: true`, each
    /// registered chat not among them gets the alerts its subscriptions
    /// match (all of them with none; nothing if none match). Channels
    /// without subscribers pay one bool test per group.
    fn fan_out(
        &self,
        target: &ChannelTarget,
        group: AlertGroup,
        out: &mut Vec<NewNotification>,
        make: impl Fn(String, AlertGroup) -> NewNotification,
    ) {
        let subscribers = if target.subscribers {
            self.subscribers.of(&target.name)
        } else {
            None
        };
        if let Some(subs) = subscribers {
            let mut labels: Option<Vec<crate::model::alert::Labels>> = None;
            for sub in subs.iter() {
                if target.destinations.iter().any(|d| sub.is_named_by(d)) {
                    continue; // a chat_ids entry: one copy, the whole group
                }
                if target.allow.as_ref().is_some_and(|a| !a.admits(sub)) {
                    continue; // allow_from changed since it registered
                }
                if sub.patterns.is_empty() {
                    out.push(make(sub.destination.clone(), group.clone()));
                    continue;
                }
                let labels = labels.get_or_insert_with(|| {
                    group
                        .alerts
                        .iter()
                        .map(IncomingAlert::match_labels)
                        .collect()
                });
                let wanted: Vec<IncomingAlert> = group
                    .alerts
                    .iter()
                    .zip(labels.iter())
                    .filter(|(_, l)| sub.wants(l))
                    .map(|(a, _)| a.clone())
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let mut mine = group.clone();
                if wanted.len() < group.alerts.len() {
                    // The others of the group may not be this chat's business.
                    mine.others_firing = 0;
                }
                mine.alerts = wanted;
                out.push(make(sub.destination.clone(), mine));
            }
        }
        let n = target.destinations.len();
        for (i, dest) in target.destinations.iter().enumerate() {
            if i + 1 == n {
                out.push(make(dest.clone(), group));
                return;
            }
            out.push(make(dest.clone(), group.clone()));
        }
    }
}

/// Which message an alert goes into: channel, state, the values of the
/// route's `group_by` labels, and the route's timing (a message sets one
/// reminder interval and waits one group_wait for all it lists).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MessageKey {
    target: usize,
    status: AlertStatus,
    labels: Vec<Option<String>>,
    repeat_every: Option<Duration>,
    /// (route, group_wait) when the route waits to gather its group.
    wait: Option<(usize, Duration)>,
    throttle: Option<Duration>,
    /// A flapping or stable-after-flapping message: only alerts saying the
    /// same share it.
    flapping: Option<Flapping>,
}

impl MessageKey {
    /// The identity of a waiting group across webhooks: route, state and
    /// label values (the outbox merges pending notifications that share it).
    fn group_key(&self) -> Option<String> {
        let (route, _) = self.wait?;
        let labels = serde_json::to_string(&self.labels).unwrap_or_default();
        Some(format!("{route}|{}|{labels}", self.status.as_str()))
    }
}

impl NotificationPlanner for Planner {
    fn plan(&self, alerts: &[Decided<'_>]) -> Vec<NewNotification> {
        // Messages in first-seen order, found by key.
        let mut groups: Vec<(MessageKey, Vec<IncomingAlert>)> = Vec::new();
        let mut index: HashMap<MessageKey, usize> = HashMap::new();
        // Unchanged alerts still firing, per channel and group.
        let mut still_firing: HashMap<(usize, Vec<Option<String>>), u32> = HashMap::new();
        let now = self.clock.now();
        for d in alerts {
            let (alert, transition) = (d.alert, &d.transition);
            // A flapping alert's changes are stored, not told.
            if d.flap == Some(FlapVerdict::Held) {
                continue;
            }
            let flapping = match d.flap {
                Some(FlapVerdict::Notify(f)) => Some(f),
                _ => None,
            };
            let labels = alert.match_labels();
            if self.silences.mutes(&labels, now) {
                continue;
            }
            for dest in self.router.channels_for(&labels) {
                // A digest route sends no per-event message; the scheduler
                // sums its alerts up every period.
                if dest.digest.is_some() {
                    continue;
                }
                let Some(idx) = self.targets.iter().position(|t| t.name == dest.channel) else {
                    continue;
                };
                if transition.notifies() {
                    // "Started flapping" neither waits for its group nor
                    // sets reminders or a throttle window (more changes
                    // are coming, and held); "stable again" is the alert's
                    // real state and does both, like an ordinary message.
                    let started = flapping.is_some_and(|f| !f.stable);
                    let key = MessageKey {
                        target: idx,
                        status: alert.status,
                        labels: dest.group_by.key(&labels),
                        repeat_every: dest.repeat_interval.filter(|_| !started),
                        wait: dest
                            .group_wait
                            .filter(|_| flapping.is_none())
                            .map(|w| (dest.route, w)),
                        throttle: dest.throttle.filter(|_| !started),
                        flapping,
                    };
                    match index.get(&key) {
                        Some(&i) => groups[i].1.push(d.shown()),
                        None => {
                            index.insert(key.clone(), groups.len());
                            groups.push((key, vec![d.shown()]));
                        }
                    }
                } else if *transition == Transition::Seen
                    && alert.status == AlertStatus::Firing
                    && d.ends_at.is_none()
                {
                    *still_firing
                        .entry((idx, dest.group_by.key(&labels)))
                        .or_default() += 1;
                }
            }
        }
        let mut out = Vec::new();
        for (key, list) in groups {
            let target = &self.targets[key.target];
            // "It is flapping" is news even where resolves are not wanted.
            let started_flapping = key.flapping.is_some_and(|f| !f.stable);
            if key.status == AlertStatus::Resolved && !target.send_resolved && !started_flapping {
                continue;
            }
            let group_key = key.group_key();
            let group = AlertGroup {
                status: key.status,
                alerts: list,
                others_firing: still_firing
                    .get(&(key.target, key.labels))
                    .copied()
                    .unwrap_or(0),
                reminder: false,
                group_key,
                repeats: None,
                digest: None,
                flapping: key.flapping,
            };
            self.fan_out(target, group, &mut out, |destination, group| {
                NewNotification {
                    channel: target.name.clone(),
                    destination,
                    group,
                    repeat_every: key.repeat_every,
                    delay: key.wait.map(|(_, w)| w),
                    throttle: key.throttle,
                }
            });
        }
        out
    }

    fn flapping(&self) -> Option<FlappingConfig> {
        self.flapping
    }

    fn repeats(&self, alerts: &[Decided<'_>]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        // The common case costs nothing per alert: re-sent alerts are most
        // of the traffic, and only throttled routes count them.
        if !self.router.throttles() {
            return out;
        }
        let now = self.clock.now();
        for d in alerts {
            if d.transition != Transition::Seen || d.alert.status != AlertStatus::Firing {
                continue;
            }
            let labels = d.alert.match_labels();
            if self.silences.mutes(&labels, now) {
                continue;
            }
            for dest in self.router.channels_for(&labels) {
                if dest.throttle.is_some() {
                    out.push((
                        dest.channel.to_string(),
                        d.alert.fingerprint.as_str().to_string(),
                    ));
                }
            }
        }
        out
    }
}

impl Planner {
    /// A flapping alert has gone its window without a change: one message
    /// with its final state, through its routes as an ordinary change
    /// would go (silences and `send_resolved` hold; a firing one sets its
    /// reminders and throttle window again).
    pub fn stable(&self, alert: IncomingAlert, flapping: Flapping) -> Vec<NewNotification> {
        let transition = match alert.status {
            AlertStatus::Firing => Transition::Fired,
            AlertStatus::Resolved => Transition::Resolved,
        };
        let decided = Decided {
            transition,
            starts_at: alert.starts_at,
            ends_at: alert.ends_at,
            ack: alert.ack.clone(),
            flap: Some(FlapVerdict::Notify(Flapping {
                stable: true,
                ..flapping
            })),
            alert: &alert,
        };
        self.plan(std::slice::from_ref(&decided))
    }

    /// Whether a message the scheduler times still goes out about `alert`:
    /// it fires in the incident the message was set for (`incident_start`)
    /// and no silence holds it; a reminder also stops once somebody
    /// acknowledged the alert. The scheduler asks; it decides nothing itself.
    pub fn still_due(
        &self,
        alert: &IncomingAlert,
        incident_start: DateTime<Utc>,
        message: TimedMessage,
        now: DateTime<Utc>,
    ) -> bool {
        alert.status == AlertStatus::Firing
            && alert.starts_at == incident_start
            && !(message == TimedMessage::Reminder && alert.ack.is_some())
            && !self.silences.mutes(&alert.match_labels(), now)
    }

    /// A throttle window closed: `alert` still fires and was received
    /// `repeats.count` times since it opened. One message to every
    /// destination of `channel`; queuing it opens the next window.
    pub fn still_firing(
        &self,
        channel: &str,
        window: Duration,
        alert: IncomingAlert,
        repeats: crate::model::notification::Repeats,
    ) -> Vec<NewNotification> {
        let Some(target) = self.targets.iter().find(|t| t.name == channel) else {
            return Vec::new();
        };
        let group = AlertGroup {
            status: AlertStatus::Firing,
            alerts: vec![alert],
            others_firing: 0,
            reminder: false,
            group_key: None,
            repeats: Some(repeats),
            digest: None,
            flapping: None,
        };
        let mut out = Vec::new();
        self.fan_out(target, group, &mut out, |destination, group| {
            NewNotification {
                channel: channel.to_string(),
                destination,
                group,
                repeat_every: None,
                delay: None,
                throttle: Some(window),
            }
        });
        out
    }

    /// A `repeat_interval` reminder of `alerts` (still firing, not
    /// acknowledged) to every destination of `channel`; queuing it sets
    /// the next one `every` later. Empty if the channel is gone (reload).
    pub fn remind(
        &self,
        channel: &str,
        every: Duration,
        alerts: Vec<IncomingAlert>,
    ) -> Vec<NewNotification> {
        let Some(target) = self.targets.iter().find(|t| t.name == channel) else {
            return Vec::new();
        };
        let group = AlertGroup {
            status: AlertStatus::Firing,
            alerts,
            others_firing: 0,
            reminder: true,
            group_key: None,
            repeats: None,
            digest: None,
            flapping: None,
        };
        let mut out = Vec::new();
        self.fan_out(target, group, &mut out, |destination, group| {
            NewNotification {
                channel: channel.to_string(),
                destination,
                group,
                repeat_every: Some(every),
                delay: None,
                throttle: None,
            }
        });
        out
    }
}

/// The ingest writer and the scheduler plan through this, so a reload
/// changes the routes of every batch after it.
impl NotificationPlanner for Live<Planner> {
    fn plan(&self, alerts: &[Decided<'_>]) -> Vec<NewNotification> {
        self.get().plan(alerts)
    }

    fn repeats(&self, alerts: &[Decided<'_>]) -> Vec<(String, String)> {
        self.get().repeats(alerts)
    }

    fn flapping(&self) -> Option<FlappingConfig> {
        self.get().flapping()
    }
}

#[cfg(test)]
mod fan_out_tests {
    use super::*;
    use crate::model::alert::{Fingerprint, Labels, Source};
    use crate::store::{ChatRecord, SubscriptionPattern};
    use chrono::{TimeZone, Utc};

    fn alert(name: &str, severity: &str) -> IncomingAlert {
        let labels: Labels = [
            ("alertname".to_string(), name.to_string()),
            ("severity".to_string(), severity.to_string()),
        ]
        .into();
        IncomingAlert {
            fingerprint: Fingerprint::from_labels(&labels),
            status: AlertStatus::Firing,
            labels,
            annotations: Default::default(),
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

    fn chat(id: i64, username: Option<&str>, patterns: &[SubscriptionPattern]) -> ChatRecord {
        ChatRecord {
            channel: "oncall".into(),
            chat_id: id,
            username: username.map(String::from),
            registered_by: None,
            registered_at: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("t"),
            subscriptions: patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (i as i64, p.clone()))
                .collect(),
        }
    }

    fn planner(subscribers: bool, book: SubscriberBook) -> Planner {
        let config = crate::app::Config::parse(
            "channels:\n  - name: oncall\n    type: telegram\n    bot_token: x\n    chat_ids: [42, \"@ops\"]\n",
            std::path::Path::new("."),
            &|_| None,
        )
        .expect("config");
        let chat_ids = vec!["42".to_string(), "@ops".to_string()];
        let allow = crate::route::subscribers::AllowList::new(
            &chat_ids,
            &["7".into(), "8".into(), "9".into()],
        );
        Planner::new(
            Router::new(&config.routes, config.channel_names()),
            vec![ChannelTarget {
                name: "oncall".into(),
                destinations: chat_ids,
                send_resolved: true,
                subscribers,
                allow: subscribers.then(|| Arc::new(allow)),
            }],
            SilenceBook::default(),
            book,
            Clock::manual(
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                    .single()
                    .expect("t"),
            ),
            chrono_tz::Tz::UTC,
        )
    }

    fn plan(p: &Planner, alerts: &[IncomingAlert]) -> Vec<(String, Vec<String>)> {
        let decided: Vec<Decided<'_>> = alerts
            .iter()
            .map(|a| Decided {
                alert: a,
                transition: Transition::Fired,
                starts_at: a.starts_at,
                ends_at: None,
                ack: None,
                flap: None,
            })
            .collect();
        let mut out: Vec<(String, Vec<String>)> = p
            .plan(&decided)
            .into_iter()
            .map(|n| {
                let names = n
                    .group
                    .alerts
                    .iter()
                    .map(|a| a.labels["alertname"].clone())
                    .collect();
                (n.destination, names)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn each_chat_gets_what_it_subscribed_to_once() {
        let book = SubscriberBook::new(vec![
            chat(7, None, &[]),
            chat(
                8,
                None,
                &[SubscriptionPattern::Matchers(
                    "severity=\"critical\"".into(),
                )],
            ),
            chat(9, None, &[SubscriptionPattern::Text("nothing".into())]),
            chat(42, None, &[SubscriptionPattern::Text("nothing".into())]),
            chat(5, Some("OPS"), &[]),
            chat(6, None, &[]), // not allowed (any more)
        ]);
        let alerts = [alert("DiskFull", "critical"), alert("CpuHigh", "warning")];
        let both = vec!["DiskFull".to_string(), "CpuHigh".to_string()];
        assert_eq!(
            plan(&planner(true, book.clone()), &alerts),
            vec![
                ("42".to_string(), both.clone()),
                ("7".to_string(), both.clone()),
                ("8".to_string(), vec!["DiskFull".to_string()]),
                ("@ops".to_string(), both.clone()),
            ]
        );
        // subscribers: false: the book is not even looked at.
        assert_eq!(
            plan(&planner(false, book), &alerts),
            vec![("42".to_string(), both.clone()), ("@ops".to_string(), both)]
        );
    }
}

//! Getting notifications out: planning them at ingest, then the outbox
//! workers that send, retry and give up.
//!
//! A notification is written to the outbox in the same transaction as the
//! alert change that caused it (see [`Planner`]). One worker per channel
//! takes due entries with a lease, sends them with bounded concurrency, and
//! records the result: sent, retry at a time (exponential backoff with
//! jitter, or the platform's `retry_after`), or failed after the last
//! attempt. Workers of different channels share nothing, so a slow or
//! failing channel never holds back another. A crash loses nothing: an
//! entry is only marked sent after the channel accepted it, and a lease
//! left by a dead process expires (SQLite clears its leases at start).

pub mod backoff;
pub mod pacing;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::alert::{AlertStatus, IncomingAlert, Transition};
use crate::channels::{Channel, DeliveryError};
use crate::chat::{AllowList, SubscriberBook};
use crate::clock::Clock;
use crate::config::{DeliveryConfig, FlappingConfig};
use crate::notification::{AlertGroup, BacklogSummary, Flapping};
use crate::route::digest::Digest;
use crate::route::flapping::FlapVerdict;
use crate::route::silence::SilenceBook;
use crate::route::{DigestRoute, Router};
use crate::store::{
    Decided, DestinationFilter, NewNotification, Notification, NotificationPlanner, Store,
};
use crate::telemetry::Metrics;

/// Wakes channel workers when the outbox got new entries. One per process:
/// a channel added by a reload gets its wake-up the first time its worker
/// asks for it.
#[derive(Clone, Default)]
pub struct OutboxSignal {
    per_channel: Arc<std::sync::Mutex<HashMap<String, Arc<Notify>>>>,
}

impl OutboxSignal {
    /// One wake-up per channel name.
    pub fn new(channels: &[String]) -> Self {
        let signal = Self::default();
        for c in channels {
            signal.get(c);
        }
        signal
    }

    /// Wakes every worker (a stored permit if it is busy, so none misses it).
    pub fn wake_all(&self) {
        for n in self.lock().values() {
            n.notify_one();
        }
    }

    fn get(&self, channel: &str) -> Arc<Notify> {
        self.lock().entry(channel.to_string()).or_default().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.per_channel.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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

/// Turns a request's state changes into outbox entries: per channel and per
/// new state, one message listing the alerts that changed, counting the
/// request's other still-firing alerts routed there.
/// Alerts a silence holds back are planned no message (they are stored all
/// the same; the scheduler notifies those still firing when it ends).
///
/// A flapping alert (see [`crate::route::flapping`]) gets one flapping message in
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
    pub fn reaches(&self, labels: &crate::alert::Labels, channel: &str) -> bool {
        self.router
            .channels_for(labels)
            .iter()
            .any(|d| d.channel == channel)
    }

    /// Whether `digest` sums up the alert with these labels.
    pub fn in_digest(&self, labels: &crate::alert::Labels, digest: &DigestRoute) -> bool {
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
            let mut labels: Option<Vec<crate::alert::Labels>> = None;
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

    /// A throttle window closed: `alert` still fires and was received
    /// `repeats.count` times since it opened. One message to every
    /// destination of `channel`; queuing it opens the next window.
    pub fn still_firing(
        &self,
        channel: &str,
        window: Duration,
        alert: IncomingAlert,
        repeats: crate::notification::Repeats,
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

/// One send at a time per destination, in claim (id) order: a chat must see
/// an alert's FIRING before its RESOLVED, so two messages to one destination
/// are never in flight at once.
#[derive(Default)]
struct DestinationQueues {
    /// Destinations with a send in flight, and what is claimed behind it.
    busy: HashMap<String, VecDeque<Bundle>>,
}

/// Notifications that go out as one message: one, or the members of one
/// `group_wait` group (same destination and group key), first claimed first.
type Bundle = Vec<Notification>;

/// Bundles a claim: entries of one `group_wait` group for one destination
/// join the first of them, in claim order.
fn bundle(batch: Vec<Notification>) -> Vec<Bundle> {
    let mut out: Vec<Bundle> = Vec::new();
    for n in batch {
        let joins = n.group.group_key.as_ref().and_then(|key| {
            out.iter_mut().find(|b| {
                b[0].destination == n.destination && b[0].group.group_key.as_ref() == Some(key)
            })
        });
        match joins {
            Some(b) => b.push(n),
            None => out.push(vec![n]),
        }
    }
    out
}

impl DestinationQueues {
    /// Returns the bundle if it can be sent now, or keeps it until its
    /// destination is free (joining a waiting bundle of its group).
    fn admit(&mut self, b: Bundle) -> Option<Bundle> {
        let destination = b[0].destination.clone();
        match self.busy.get_mut(&destination) {
            Some(waiting) => {
                let key = b[0].group.group_key.clone();
                match waiting
                    .iter_mut()
                    .find(|w| key.is_some() && w[0].group.group_key == key)
                {
                    Some(w) => w.extend(b),
                    None => waiting.push_back(b),
                }
                None
            }
            None => {
                self.busy.insert(destination, VecDeque::new());
                Some(b)
            }
        }
    }

    /// The send to `destination` finished: the next one for it, if any.
    fn next(&mut self, destination: &str) -> Option<Bundle> {
        let waiting = self.busy.get_mut(destination)?;
        let next = waiting.pop_front();
        if next.is_none() {
            self.busy.remove(destination);
        }
        next
    }

    fn is_busy(&self, destination: &str) -> bool {
        self.busy.contains_key(destination)
    }

    fn busy_destinations(&self) -> Vec<String> {
        self.busy.keys().cloned().collect()
    }

    fn clear_waiting(&mut self) {
        self.busy.clear();
    }
}

/// Sends in flight: the tasks, and which entry and destination each sends.
#[derive(Default)]
struct Inflight {
    set: JoinSet<()>,
    sends: HashMap<tokio::task::Id, (Vec<i64>, String)>,
}

/// Shared by every channel worker.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn Store>,
    clock: Clock,
    config: DeliveryConfig,
    metrics: Arc<Metrics>,
    signal: OutboxSignal,
}

/// How long a worker waits before looking again when nothing woke it: other
/// replicas may have queued work, and retries fall due.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How long a claim holds without renewal. A live worker renews its claims
/// every [`RENEW_EVERY`], so a send may take as long as it needs; a worker
/// that died (kill -9, lost host) lets its entries fall due again after at
/// most this long, and another replica or the restarted process sends them.
const LEASE: Duration = Duration::from_secs(20);
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Entries due for one paced destination, behind the one about to go, from
/// which the lot is folded into one summary: more than a platform limit of
/// about one a second lets through without making people wait.
const FOLD_AFTER: i64 = 3;

/// Most entries one summary folds (the rest go into the next).
const FOLD_MAX: u32 = 1000;

fn after(now: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::minutes(5))
}

impl Outbox {
    /// The outbox over a store.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        config: DeliveryConfig,
        metrics: Arc<Metrics>,
        signal: OutboxSignal,
    ) -> Self {
        Self {
            store,
            clock,
            config,
            metrics,
            signal,
        }
    }

    /// Longest one send may take (a split message is several requests).
    fn send_deadline(&self) -> Duration {
        self.config.timeout.saturating_mul(3)
    }

    /// Starts one worker per channel. They stop taking work when `shutdown`
    /// fires and finish what is in flight within `drain`.
    pub fn spawn(
        &self,
        channels: Vec<Arc<Channel>>,
        shutdown: CancellationToken,
        drain: Duration,
    ) -> Vec<JoinHandle<()>> {
        channels
            .into_iter()
            .map(|ch| {
                let me = self.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move { me.run_channel(ch, stop, drain).await })
            })
            .collect()
    }

    async fn run_channel(
        self,
        channel: Arc<Channel>,
        shutdown: CancellationToken,
        drain: Duration,
    ) {
        let name = channel.name().to_string();
        let wake = self.signal.get(&name);
        let mut sends = DestinationQueues::default();
        let mut inflight = Inflight::default();
        let mut claimed: HashSet<i64> = HashSet::new();
        let mut last_renew = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            while let Some(done) = inflight.set.try_join_next_with_id() {
                self.finished(done, &mut claimed, &mut sends, &mut inflight, &channel);
            }
            if last_renew.elapsed() >= RENEW_EVERY {
                last_renew = tokio::time::Instant::now();
                if !claimed.is_empty() {
                    let ids: Vec<i64> = claimed.iter().copied().collect();
                    if let Err(e) = self.store.renew(&ids, after(self.clock.now(), LEASE)).await {
                        tracing::error!(channel = %name, error = %e, "cannot renew outbox leases");
                    }
                }
            }
            // Claimed entries waiting behind their destination count too, so
            // a backlog for one chat does not pile up claims.
            let free = self.config.concurrency.saturating_sub(claimed.len());
            let mut full_batch = false;
            if free > 0 {
                let now = self.clock.now();
                let lease_until = after(now, LEASE);
                // A paced destination with a send in flight gets nothing more
                // now: what piles up for it stays in the store, to be folded
                // into one summary when its slot comes. Unpaced ones are
                // claimed ahead and queued here, one claim for many sends.
                let busy: Vec<String> = sends
                    .busy_destinations()
                    .into_iter()
                    .filter(|d| channel.pacer().paces(d))
                    .collect();
                match self
                    .store
                    .claim_due(
                        &name,
                        now,
                        lease_until,
                        free as u32,
                        DestinationFilter::Except(&busy),
                    )
                    .await
                {
                    Ok(batch) => {
                        full_batch = batch.len() == free;
                        // One claim may hold several entries for one paced
                        // destination. Only the first goes ahead; the rest
                        // go back to the store, where the first one's fold
                        // finds them. Queued here, they would go out one by
                        // one after a summary that holds later entries.
                        let mut give_back = Vec::new();
                        for b in bundle(batch) {
                            if sends.is_busy(&b[0].destination)
                                && channel.pacer().paces(&b[0].destination)
                            {
                                give_back.extend(b.iter().map(|n| n.id));
                                continue;
                            }
                            claimed.extend(b.iter().map(|n| n.id));
                            if let Some(b) = sends.admit(b) {
                                self.start(&mut inflight, &channel, b);
                            }
                        }
                        if !give_back.is_empty() {
                            full_batch = false;
                            if let Err(e) = self.store.release(&give_back).await {
                                // Their leases run out and they fall due again.
                                tracing::error!(channel = %name, error = %e, "cannot give back claims");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(channel = %name, error = %e, "cannot read the outbox")
                    }
                }
            }
            if full_batch {
                continue;
            }
            let wait = self.idle_wait(&name).await;
            tokio::select! {
                _ = wake.notified() => {}
                Some(done) = inflight.set.join_next_with_id(), if !inflight.set.is_empty() => {
                    self.finished(done, &mut claimed, &mut sends, &mut inflight, &channel);
                }
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // Shutdown: let sends in flight finish, within the bound. Entries
        // waiting behind them are not started.
        sends.clear_waiting();
        let finished = tokio::time::timeout(drain, async {
            while let Some(done) = inflight.set.join_next_with_id().await {
                let task = match &done {
                    Ok((task, ())) => *task,
                    Err(e) => e.id(),
                };
                if let Some((ids, _)) = inflight.sends.remove(&task) {
                    for id in ids {
                        claimed.remove(&id);
                    }
                }
            }
        })
        .await;
        if finished.is_err() {
            inflight.set.abort_all();
            tracing::warn!(channel = %name, unfinished = claimed.len(), "shutdown: sends still in flight were stopped; they will be retried");
        }
        // Anything still claimed goes back to the queue for the next run.
        while inflight.set.join_next().await.is_some() {}
        let unfinished: Vec<i64> = claimed.into_iter().collect();
        if let Err(e) = self.store.release(&unfinished).await {
            tracing::error!(channel = %name, error = %e, "cannot release claims at shutdown");
        }
    }

    fn start(&self, inflight: &mut Inflight, channel: &Arc<Channel>, b: Bundle) {
        let me = self.clone();
        let ch = channel.clone();
        let ids: Vec<i64> = b.iter().map(|n| n.id).collect();
        let destination = b[0].destination.clone();
        let task = inflight.set.spawn(async move {
            me.deliver(&ch, b).await;
        });
        inflight.sends.insert(task.id(), (ids, destination));
    }

    /// A send finished: forget its claim and start the next one waiting for
    /// the same destination.
    fn finished(
        &self,
        done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
        claimed: &mut HashSet<i64>,
        sends: &mut DestinationQueues,
        inflight: &mut Inflight,
        channel: &Arc<Channel>,
    ) {
        let task = match &done {
            Ok((task, ())) => *task,
            Err(e) => {
                // A send that panicked: its lease runs out and it is tried again.
                tracing::error!(channel = channel.name(), error = %e, "a send task failed");
                e.id()
            }
        };
        let Some((ids, destination)) = inflight.sends.remove(&task) else {
            return;
        };
        for id in ids {
            claimed.remove(&id);
        }
        if let Some(next) = sends.next(&destination) {
            self.start(inflight, channel, next);
        }
    }

    async fn idle_wait(&self, channel: &str) -> Duration {
        match self.store.next_due(channel).await {
            Ok(Some(at)) => (at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(5), IDLE_POLL),
            _ => IDLE_POLL,
        }
    }

    /// Waits for the destination's slot under its platform's limit; then,
    /// if [`FOLD_AFTER`] or more entries for it are due behind this one,
    /// claims them all and sends one summary instead.
    async fn deliver(&self, channel: &Channel, b: Bundle) {
        let pacer = channel.pacer();
        if !pacer.paces(&b[0].destination) {
            let batch = self.gather_group(channel, b).await;
            return self.deliver_batch(channel, batch).await;
        }
        pacer.until_ready(&b[0].destination).await;
        // A digest is a summary already: it goes as it is.
        if b[0].group.digest.is_some() {
            return self.deliver_batch(channel, b).await;
        }
        let batch = self.gather_group(channel, b).await;
        let now = self.clock.now();
        let backlog = match self
            .store
            .count_due(channel.name(), &batch[0].destination, now)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(channel = channel.name(), error = %e, "cannot count the backlog");
                0
            }
        };
        if backlog < FOLD_AFTER {
            return self.deliver_batch(channel, batch).await;
        }
        let folded = match self
            .store
            .claim_due(
                channel.name(),
                now,
                after(now, LEASE),
                FOLD_MAX,
                DestinationFilter::Only(&batch[0].destination),
            )
            .await
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(channel = channel.name(), error = %e, "cannot claim the backlog");
                return self.deliver_batch(channel, batch).await;
            }
        };
        // Digests in the backlog go on their own after the summary.
        let (digests, folded): (Vec<Notification>, Vec<Notification>) =
            folded.into_iter().partition(|n| n.group.digest.is_some());
        let mut batch = batch;
        batch.extend(folded);
        self.deliver_summary(channel, batch).await;
        for d in digests {
            pacer.until_ready(&d.destination).await;
            self.deliver_one(channel, d).await;
        }
    }

    /// `n` and, when its route has `group_wait`, the other pending
    /// notifications of its group for the same destination, due or not:
    /// the first of a group to fall due takes the rest along.
    async fn gather_group(&self, channel: &Channel, mut b: Bundle) -> Bundle {
        let Some(key) = b[0].group.group_key.clone() else {
            return b;
        };
        let destination = b[0].destination.clone();
        let now = self.clock.now();
        let more = self
            .store
            .claim_due(
                channel.name(),
                now,
                after(now, LEASE),
                FOLD_MAX,
                DestinationFilter::Group {
                    destination: &destination,
                    group_key: &key,
                },
            )
            .await;
        match more {
            Ok(more) => {
                let have: HashSet<i64> = b.iter().map(|n| n.id).collect();
                b.extend(more.into_iter().filter(|m| !have.contains(&m.id)));
            }
            // Each goes out on its own when it falls due.
            Err(e) => {
                tracing::error!(channel = channel.name(), error = %e, "cannot gather the group")
            }
        }
        b
    }

    /// Sends one notification, or a group gathered by `group_wait` as one
    /// message listing all its alerts (each once, in its latest state);
    /// every entry ends as the message did.
    async fn deliver_batch(&self, channel: &Channel, mut batch: Vec<Notification>) {
        if batch.len() <= 1 {
            if let Some(n) = batch.pop() {
                self.deliver_one(channel, n).await;
            }
            return;
        }
        let head = &batch[0];
        let mut group = head.group.clone();
        for m in &batch[1..] {
            for a in &m.group.alerts {
                match group
                    .alerts
                    .iter_mut()
                    .find(|x| x.fingerprint == a.fingerprint)
                {
                    Some(x) => *x = a.clone(),
                    None => group.alerts.push(a.clone()),
                }
            }
            group.others_firing = m.group.others_firing;
        }
        let (result, parts_done) = self
            .attempt(channel, &head.destination, &group, head.parts_done)
            .await;
        tracing::debug!(
            channel = channel.name(),
            gathered = batch.len(),
            alerts = group.alerts.len(),
            "group_wait: one message for the group"
        );
        for m in &batch {
            self.record(channel.name(), m, &result, parts_done).await;
        }
    }

    /// One summary for a destination's backlog; every folded entry ends as
    /// the summary did.
    async fn deliver_summary(&self, channel: &Channel, batch: Vec<Notification>) {
        let name = channel.name();
        let destination = batch[0].destination.clone();
        let summary = BacklogSummary::fold(batch.iter().map(|n| &n.group));
        let result = match tokio::time::timeout(
            self.send_deadline(),
            channel.send_summary(&destination, &summary),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::transient(
                format!("no answer within {:?}", self.send_deadline()),
                None,
            )),
        };
        self.metrics.notifications_folded(name, batch.len());
        tracing::info!(
            channel = name,
            folded = batch.len(),
            alerts = summary.alerts.len(),
            ok = result.is_ok(),
            "backlog sent as one summary"
        );
        for n in &batch {
            // The summary's parts are not the entry's: keep its own progress.
            self.record(name, n, &result, n.parts_done).await;
        }
    }

    /// One attempt, and what it leaves in the store.
    async fn deliver_one(&self, channel: &Channel, n: Notification) {
        let (result, parts_done) = self
            .attempt(channel, &n.destination, &n.group, n.parts_done)
            .await;
        self.record(channel.name(), &n, &result, parts_done).await;
    }

    /// One send of `group` within the deadline, resuming a split message
    /// after `parts_done` parts; the result and the parts now accepted.
    async fn attempt(
        &self,
        channel: &Channel,
        destination: &str,
        group: &AlertGroup,
        parts_done: u32,
    ) -> (Result<(), DeliveryError>, u32) {
        let result = match tokio::time::timeout(
            self.send_deadline(),
            channel.send(destination, group, parts_done),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Transient {
                reason: format!("no answer within {:?}", self.send_deadline()),
                retry_after: None,
                parts_done,
            }),
        };
        let done = match &result {
            Err(e) => e.parts_done().max(parts_done),
            Ok(()) => parts_done,
        };
        (result, done)
    }

    /// What one attempt leaves in the store: sent, due again after a delay
    /// (the platform's retry_after wins over our backoff), or failed.
    async fn record(
        &self,
        name: &str,
        n: &Notification,
        result: &Result<(), DeliveryError>,
        parts_done: u32,
    ) {
        let now = self.clock.now();
        let outcome = match result {
            Ok(()) => {
                let latency = (now - n.created_at).to_std().unwrap_or_default();
                self.metrics.notification_sent(name, n.id, latency);
                self.store.mark_sent(n.id, now).await
            }
            Err(DeliveryError::Transient {
                reason,
                retry_after,
                ..
            }) if n.attempts < self.config.max_attempts => {
                let backoff =
                    backoff::delay(n.attempts, self.config.retry_initial, self.config.retry_max);
                // Coming back sooner than the platform asked only earns another 429.
                let wait = retry_after
                    .map(|r| r.max(backoff.min(r + Duration::from_secs(1))))
                    .unwrap_or(backoff);
                self.metrics
                    .notification_retry(name, n.id, n.attempts, wait, reason);
                self.store
                    .mark_retry(n.id, after(now, wait), reason, parts_done)
                    .await
            }
            Err(e) => {
                let reason = e.to_string();
                self.metrics
                    .notification_failed(name, n.id, n.attempts, &reason);
                self.store.mark_failed(n.id, &reason, parts_done).await
            }
        };
        if let Err(e) = outcome {
            // The lease will expire and the entry be tried again: at least once.
            tracing::error!(channel = name, notification = n.id, error = %e, "cannot record delivery result");
        }
    }
}

#[cfg(test)]
mod fan_out_tests {
    use super::*;
    use crate::alert::{Fingerprint, Labels, Source};
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
        let config = crate::config::Config::parse(
            "channels:\n  - name: oncall\n    type: telegram\n    bot_token: x\n    chat_ids: [42, \"@ops\"]\n",
            std::path::Path::new("."),
            &|_| None,
        )
        .expect("config");
        let chat_ids = vec!["42".to_string(), "@ops".to_string()];
        let allow = crate::chat::AllowList::new(&chat_ids, &["7".into(), "8".into(), "9".into()]);
        Planner::new(
            Router::new(&config),
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

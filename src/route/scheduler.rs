//! Decisions that fall due with time rather than with a webhook: the end
//! of a silence, `repeat_interval` reminders, throttle windows, the end
//! of flapping, and digests; and the periodic re-read of the silence and
//! subscriber books.
//!
//! Every decision compares the shared [`Clock`] with state in the database,
//! so it survives a restart, tests move time instead of sleeping, and with
//! several replicas the work is claimed with a lease: each silence's end is
//! handled by one of them, and a crash half-way lets another retry it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::DigestRoute;
use crate::clock::Clock;
use crate::live::Live;
use crate::model::alert::{AlertStatus, IncomingAlert, Source, StoredAlert, Transition};
use crate::model::digest::{next_boundary, Digest, PeriodEvents};
use crate::model::matcher::{matches_all, MatchOp, Matcher};
use crate::model::silence::{Silence, SilenceBook};
use crate::route::planner::{Planner, TimedMessage};
use crate::route::subscribers::SubscriberBook;
use crate::store::OutboxSignal;
use crate::store::{
    AlertFilter, Cursor, Decided, DigestSchedule, NotificationPlanner, Store, StoreError, Timed,
};

/// How often the scheduler looks when the clock is the system's.
const TICK: Duration = Duration::from_secs(1);
/// How often the silence book is re-read, so a silence made on another
/// replica holds here too.
const RELOAD_EVERY: chrono::Duration = chrono::Duration::seconds(10);
/// How long one scheduler holds a claimed silence end.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);
/// Page size when walking the firing alerts.
const PAGE: u32 = 500;
/// Most reminders handled per tick (the rest on the next).
const REMINDERS_PER_TICK: u32 = 1000;

/// Runs the time-driven decisions.
pub struct Scheduler {
    store: Arc<dyn Store>,
    planner: Arc<Live<Planner>>,
    silences: SilenceBook,
    subscribers: SubscriberBook,
    clock: Clock,
    signal: OutboxSignal,
    /// The config whose digests have their schedules in the database.
    digests_scheduled: std::sync::Mutex<Option<Arc<Planner>>>,
}

impl Scheduler {
    /// A scheduler over these parts.
    pub fn new(
        store: Arc<dyn Store>,
        planner: Arc<Live<Planner>>,
        silences: SilenceBook,
        subscribers: SubscriberBook,
        clock: Clock,
        signal: OutboxSignal,
    ) -> Self {
        Self {
            store,
            planner,
            silences,
            subscribers,
            clock,
            signal,
            digests_scheduled: std::sync::Mutex::new(None),
        }
    }

    /// Runs until `shutdown`.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reloaded: Option<DateTime<Utc>> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = self.clock.advanced() => {}
                    _ = shutdown.cancelled() => break,
                }
                let now = self.clock.now();
                if reloaded.is_none_or(|at| now - at >= RELOAD_EVERY || now < at) {
                    let mark = self.silences.mark();
                    match self.store.live_silences(now).await {
                        Ok(live) => {
                            self.silences.reload(live, mark);
                            reloaded = Some(now);
                        }
                        Err(e) => tracing::error!(error = %e, "cannot reload silences"),
                    }
                    // Chats registered or changed on another replica.
                    let mark = self.subscribers.mark();
                    match self.store.list_chats().await {
                        Ok(chats) => self.subscribers.reload(chats, mark),
                        Err(e) => tracing::error!(error = %e, "cannot reload registered chats"),
                    }
                }
                if let Err(e) = self.end_silences(now).await {
                    tracing::error!(error = %e, "cannot handle ended silences; retrying");
                }
                if let Err(e) = self.send_reminders(now).await {
                    tracing::error!(error = %e, "cannot send reminders; retrying");
                }
                if let Err(e) = self.close_windows(now).await {
                    tracing::error!(error = %e, "cannot close throttle windows; retrying");
                }
                if let Err(e) = self.send_digests(now).await {
                    tracing::error!(error = %e, "cannot send digests; retrying");
                }
                if let Err(e) = self.end_flapping(now).await {
                    tracing::error!(error = %e, "cannot end flapping; retrying");
                }
                self.signal.scheduled(now);
            }
        })
    }

    /// Handles every silence that has ended: the alerts it matched that
    /// still fire, are not flapping (their state is told when they are
    /// stable), and no other silence holds, are notified now. Returns
    /// how many silences it handled.
    pub async fn end_silences(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let ended = self.store.claim_ended_silences(now, now + LEASE).await?;
        for silence in &ended {
            let mut firing = self.firing_alerts_matching(silence).await?;
            // A flapping alert's state is told when it is stable again.
            if !firing.is_empty() {
                let fps: Vec<String> = firing.iter().map(|a| a.fingerprint.to_string()).collect();
                let flapping = self.store.flapping_among(&fps).await?;
                firing.retain(|a| !flapping.contains(a.fingerprint.as_str()));
            }
            let incoming: Vec<IncomingAlert> = firing.iter().map(as_incoming).collect();
            let decided: Vec<Decided<'_>> = incoming
                .iter()
                .map(|a| Decided {
                    alert: a,
                    transition: Transition::Fired,
                    starts_at: a.starts_at,
                    ends_at: None,
                    ack: a.ack.clone(),
                    flap: None,
                })
                .collect();
            // The planner skips the alerts another silence still holds.
            let notifications = self.planner.plan(&decided);
            let queued = notifications.len();
            self.store
                .finish_silence(silence.id, notifications, now)
                .await?;
            tracing::info!(
                silence = silence.id,
                still_firing = firing.len(),
                notifications = queued,
                "silence ended"
            );
            if queued > 0 {
                self.signal.wake_all();
            }
        }
        Ok(ended.len())
    }

    /// Queues the `repeat_interval` reminders due at `now`: one message per
    /// channel listing its alerts that still fire in the same incident,
    /// unacknowledged and not silenced; the reminders of the others are
    /// dropped (acknowledging stops reminders; a new incident sets a new
    /// one). Returns how many reminders it looked at.
    pub async fn send_reminders(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let due = self
            .store
            .claim_due_reminders(now, now + LEASE, REMINDERS_PER_TICK)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let planner = self.planner.get();
        let mut keep: BTreeMap<(String, Duration), Vec<IncomingAlert>> = BTreeMap::new();
        let mut dropped = Vec::new();
        for r in &due {
            let alert = self.store.get_alert(&r.fingerprint).await?;
            let still = alert
                .map(|a| as_incoming(&a))
                .filter(|a| planner.still_due(a, r.starts_at, TimedMessage::Reminder, now));
            match still {
                Some(a) => keep
                    .entry((r.channel.clone(), r.every))
                    .or_default()
                    .push(a),
                None => dropped.push((r.channel.clone(), r.fingerprint.clone())),
            }
        }
        let mut notifications = Vec::new();
        for ((channel, every), alerts) in keep {
            let fps: Vec<String> = alerts.iter().map(|a| a.fingerprint.to_string()).collect();
            let notes = planner.remind(&channel, every, alerts);
            if notes.is_empty() {
                // The channel is gone (a reload removed it).
                dropped.extend(fps.into_iter().map(|f| (channel.clone(), f)));
            }
            notifications.extend(notes);
        }
        let queued = notifications.len();
        tracing::info!(
            due = due.len(),
            dropped = dropped.len(),
            notifications = queued,
            "reminders"
        );
        self.store
            .finish_timed(Timed::Reminders, notifications, dropped, now)
            .await?;
        if queued > 0 {
            self.signal.wake_all();
        }
        Ok(due.len())
    }

    /// Closes the throttle windows due at `now`: an alert received again
    /// while its window was open, and still firing in the same incident
    /// (not silenced), gets one "still firing, fired N times since …"
    /// message, which opens the next window; the other windows just end.
    /// Returns how many windows it closed.
    pub async fn close_windows(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let closed = self
            .store
            .claim_closed_windows(now, now + LEASE, REMINDERS_PER_TICK)
            .await?;
        if closed.is_empty() {
            return Ok(0);
        }
        let planner = self.planner.get();
        let mut notifications = Vec::new();
        let mut dropped = Vec::new();
        for w in &closed {
            let alert = if w.repeats == 0 {
                None
            } else {
                self.store.get_alert(&w.fingerprint).await?
            };
            let still = alert
                .map(|a| as_incoming(&a))
                .filter(|a| planner.still_due(a, w.starts_at, TimedMessage::ThrottleSummary, now));
            let notes = match still {
                Some(a) => planner.still_firing(
                    &w.channel,
                    w.every,
                    a,
                    crate::model::notification::Repeats {
                        count: w.repeats,
                        since: w.opened_at,
                    },
                ),
                None => Vec::new(),
            };
            if notes.is_empty() {
                dropped.push((w.channel.clone(), w.fingerprint.clone()));
            }
            notifications.extend(notes);
        }
        let queued = notifications.len();
        self.store
            .finish_timed(Timed::ThrottleWindows, notifications, dropped, now)
            .await?;
        if queued > 0 {
            self.signal.wake_all();
        }
        Ok(closed.len())
    }

    /// Sends the digests whose period has ended: one status summary per
    /// digest route and channel of the alerts it covers, then the next
    /// period starts (ending on the next boundary). Schedules are rows in
    /// the database, made when a config with digests is first seen, so a
    /// period that ended while alertrelay was stopped is summed up at
    /// start. Returns how many digests it sent.
    pub async fn send_digests(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let planner = self.planner.get();
        let routes = planner.digest_routes();
        let tz = planner.timezone();
        {
            let scheduled = self
                .digests_scheduled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_some_and(|p| Arc::ptr_eq(p, &planner));
            if !scheduled {
                self.reschedule_digests(&routes, now, tz).await?;
                *self
                    .digests_scheduled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(planner.clone());
            }
        }
        if routes.is_empty() {
            return Ok(0);
        }
        let due = self.store.claim_due_digests(now, now + LEASE).await?;
        let mut sent = 0;
        for d in due {
            let Some(route) = routes
                .iter()
                .find(|r| r.channel == d.channel && r.scope == d.scope)
            else {
                // The route or its channel is gone (a reload).
                self.store
                    .finish_digest(&d.channel, &d.scope, Vec::new(), None, now)
                    .await?;
                continue;
            };
            let digest = self
                .build_digest(&planner, route, d.period_start, now)
                .await?;
            tracing::info!(
                channel = %route.channel,
                scope = %route.scope,
                hosts = digest.hosts.len(),
                down = digest.down(),
                muted = digest.muted.len(),
                "digest"
            );
            let notes = planner.digest(&route.channel, digest);
            let next = (now, next_boundary(now, route.period, tz));
            self.store
                .finish_digest(&d.channel, &d.scope, notes, Some(next), now)
                .await?;
            sent += 1;
        }
        if sent > 0 {
            self.signal.wake_all();
        }
        Ok(sent)
    }

    /// Brings the schedules in line with the config's digests: a new one
    /// starts now and ends on the next boundary; one whose period changed
    /// keeps its start and ends on the first boundary of the new period
    /// after it (at once if that has passed); those of removed routes go.
    async fn reschedule_digests(
        &self,
        routes: &[DigestRoute],
        now: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Result<(), StoreError> {
        let have = self.store.digest_schedules().await?;
        let mut upsert = Vec::new();
        for r in routes {
            match have
                .iter()
                .find(|h| h.channel == r.channel && h.scope == r.scope)
            {
                Some(h) if h.period == r.period => {}
                Some(h) => upsert.push(DigestSchedule {
                    period: r.period,
                    due_at: next_boundary(h.period_start, r.period, tz),
                    ..h.clone()
                }),
                None => upsert.push(DigestSchedule {
                    channel: r.channel.clone(),
                    scope: r.scope.clone(),
                    period: r.period,
                    period_start: now,
                    due_at: next_boundary(now, r.period, tz),
                }),
            }
        }
        let drop: Vec<(String, String)> = have
            .iter()
            .filter(|h| {
                !routes
                    .iter()
                    .any(|r| r.channel == h.channel && r.scope == h.scope)
            })
            .map(|h| (h.channel.clone(), h.scope.clone()))
            .collect();
        if upsert.is_empty() && drop.is_empty() {
            return Ok(());
        }
        self.store.schedule_digests(&upsert, &drop).await
    }

    /// The digest of `route` for the period from `since` to `now`.
    async fn build_digest(
        &self,
        planner: &Planner,
        route: &DigestRoute,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Digest, StoreError> {
        collect_digest(
            &*self.store,
            &self.silences,
            DigestScope {
                name: &route.scope,
                matchers: &route.matchers,
                covers: &|labels| planner.in_digest(labels, route),
            },
            since,
            now,
        )
        .await
    }

    /// Ends the flapping of every alert that has gone its window without a
    /// change at `now`: one message with its final state (see
    /// [`Planner::stable`]). Returns how many alerts it looked at.
    pub async fn end_flapping(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let due = self
            .store
            .claim_stable(now, now + LEASE, REMINDERS_PER_TICK)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let planner = self.planner.get();
        let mut queued = 0;
        for d in &due {
            let notes = match self.store.get_alert(&d.fingerprint).await? {
                Some(a) => planner.stable(as_incoming(&a), d.flapping()),
                None => Vec::new(),
            };
            let n = notes.len();
            if self.store.finish_stable(d, notes, now).await? {
                queued += n;
                tracing::info!(fingerprint = %d.fingerprint, changes = d.flapped, notifications = n, "stable after flapping");
            }
        }
        if queued > 0 {
            self.signal.wake_all();
        }
        Ok(due.len())
    }

    async fn firing_alerts_matching(
        &self,
        silence: &Silence,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let filter = narrowed(
            &silence.matchers,
            AlertFilter {
                status: Some(AlertStatus::Firing),
                ..AlertFilter::default()
            },
        );
        let mut out = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = self
                .store
                .list_alerts(&filter, cursor.as_ref(), PAGE)
                .await?;
            for a in page.items {
                if matches_all(&silence.matchers, &as_incoming(&a).match_labels()) {
                    out.push(a);
                }
            }
            match page.next_cursor.as_deref().and_then(Cursor::decode) {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(out)
    }
}

/// What a digest sums up: every stored alert `covers` says yes to; the
/// matchers (all of which such an alert meets) narrow the database walk.
pub struct DigestScope<'a> {
    /// As shown in the digest (`source="gcp"`).
    pub name: &'a str,
    /// Matchers every covered alert meets (may be none).
    pub matchers: &'a [Matcher],
    /// Whether the digest covers the alert with these labels.
    pub covers: &'a (dyn Fn(&crate::model::alert::Labels) -> bool + Sync),
}

/// A digest of `scope` from `since` to `now`: every stored alert it
/// covers, the incidents the period's events show, the silences now.
/// The scheduler's digests and `/status` are both made here.
pub async fn collect_digest(
    store: &dyn Store,
    silences: &SilenceBook,
    scope: DigestScope<'_>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Digest, StoreError> {
    let mut alerts = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let filter = narrowed(scope.matchers, AlertFilter::default());
    loop {
        let page = store.list_alerts(&filter, cursor.as_ref(), PAGE).await?;
        for a in page.items {
            if (scope.covers)(&as_incoming(&a).match_labels()) {
                alerts.push(a);
            }
        }
        match page.next_cursor.as_deref().and_then(Cursor::decode) {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let covered: std::collections::HashSet<&str> =
        alerts.iter().map(|a| a.fingerprint.as_str()).collect();
    let mut in_period: HashMap<String, PeriodEvents> = HashMap::new();
    // The period is [since, now): an event at `now` is the next one's.
    let events = narrowed(
        scope.matchers,
        AlertFilter {
            since: Some(since),
            until: Some(now - chrono::Duration::microseconds(1)),
            ..AlertFilter::default()
        },
    );
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = store
            .list_events(&events, None, cursor.as_ref(), PAGE)
            .await?;
        for e in page.items {
            if covered.contains(e.fingerprint.as_str()) {
                let seen = in_period.entry(e.fingerprint.to_string()).or_default();
                match e.status {
                    AlertStatus::Firing => seen.fired += 1,
                    AlertStatus::Resolved => seen.resolved += 1,
                }
            }
        }
        match page.next_cursor.as_deref().and_then(Cursor::decode) {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Digest::build(
        scope.name,
        since,
        now,
        &alerts,
        &in_period,
        |a| silences.mutes(&as_incoming(a).match_labels(), now),
    ))
}

/// `filter` narrowed by what the database can filter on among matchers
/// that must all hold (the caller still checks every matcher).
fn narrowed(matchers: &[Matcher], mut filter: AlertFilter) -> AlertFilter {
    for m in matchers {
        if m.op() == MatchOp::Equal {
            match m.name() {
                "alertname" => filter.alertname = Some(m.value().to_string()),
                "instance" => filter.instance = Some(m.value().to_string()),
                "source" => {
                    if let Some(s) = Source::parse(m.value()) {
                        filter.source = Some(s);
                    }
                }
                _ => {}
            }
        }
    }
    filter
}

/// A stored firing alert as the planner and channels see a received one.
pub fn as_incoming(a: &StoredAlert) -> IncomingAlert {
    IncomingAlert {
        fingerprint: a.fingerprint.clone(),
        status: a.status,
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at: a.starts_at,
        ends_at: a.ends_at,
        generator_url: a.generator_url.clone(),
        source: a.source,
        ack: a.ack.clone(),
    }
}

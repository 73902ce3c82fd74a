//! Decisions that fall due with time rather than with a webhook: the end
//! of a silence and `repeat_interval` reminders (later: throttle windows,
//! digests); and the periodic re-read of the silence and subscriber books.
//!
//! Every decision compares the shared [`Clock`] with state in the database,
//! so it survives a restart, tests move time instead of sleeping, and with
//! several replicas the work is claimed with a lease: each silence's end is
//! handled by one of them, and a crash half-way lets another retry it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::silence::{Silence, SilenceBook};
use crate::alert::{AlertStatus, IncomingAlert, StoredAlert, Transition};
use crate::chat::SubscriberBook;
use crate::clock::Clock;
use crate::deliver::OutboxSignal;
use crate::deliver::Planner;
use crate::reload::Live;
use crate::route::matcher::{matches_all, MatchOp};
use crate::store::{AlertFilter, Cursor, Decided, NotificationPlanner, Store, StoreError, Timed};

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
            }
        })
    }

    /// Handles every silence that has ended: the alerts it matched that
    /// still fire, and no other silence holds, are notified now. Returns
    /// how many silences it handled.
    pub async fn end_silences(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let ended = self.store.claim_ended_silences(now, now + LEASE).await?;
        for silence in &ended {
            let firing = self.firing_alerts_matching(silence).await?;
            let incoming: Vec<IncomingAlert> = firing.iter().map(as_incoming).collect();
            let decided: Vec<Decided<'_>> = incoming
                .iter()
                .map(|a| Decided {
                    alert: a,
                    transition: Transition::Fired,
                    starts_at: a.starts_at,
                    ends_at: None,
                    ack: a.ack.clone(),
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
        let mut keep: BTreeMap<(String, Duration), Vec<IncomingAlert>> = BTreeMap::new();
        let mut dropped = Vec::new();
        for r in &due {
            let alert = self.store.get_alert(&r.fingerprint).await?;
            let still = alert.map(|a| as_incoming(&a)).filter(|a| {
                a.status == AlertStatus::Firing
                    && a.starts_at == r.starts_at
                    && a.ack.is_none()
                    && !self.silences.mutes(&a.match_labels(), now)
            });
            match still {
                Some(a) => keep
                    .entry((r.channel.clone(), r.every))
                    .or_default()
                    .push(a),
                None => dropped.push((r.channel.clone(), r.fingerprint.clone())),
            }
        }
        let planner = self.planner.get();
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
            let still = alert.map(|a| as_incoming(&a)).filter(|a| {
                a.status == AlertStatus::Firing
                    && a.starts_at == w.starts_at
                    && !self.silences.mutes(&a.match_labels(), now)
            });
            let notes = match still {
                Some(a) => planner.still_firing(
                    &w.channel,
                    w.every,
                    a,
                    crate::notification::Repeats {
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

    async fn firing_alerts_matching(
        &self,
        silence: &Silence,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        // Narrow the walk by what the database can filter on.
        let mut filter = AlertFilter {
            status: Some(AlertStatus::Firing),
            ..AlertFilter::default()
        };
        for m in &silence.matchers {
            if m.op() == MatchOp::Equal {
                match m.name() {
                    "alertname" => filter.alertname = Some(m.value().to_string()),
                    "instance" => filter.instance = Some(m.value().to_string()),
                    _ => {}
                }
            }
        }
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

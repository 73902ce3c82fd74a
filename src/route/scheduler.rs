//! Decisions that fall due with time rather than with a webhook: today the
//! end of a silence (later: throttle windows, reminders, digests).
//!
//! Every decision compares the shared [`Clock`] with state in the database,
//! so it survives a restart, tests move time instead of sleeping, and with
//! several replicas the work is claimed with a lease: each silence's end is
//! handled by one of them, and a crash half-way lets another retry it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::silence::{Silence, SilenceBook};
use crate::alert::{AlertStatus, IncomingAlert, StoredAlert, Transition};
use crate::clock::Clock;
use crate::deliver::OutboxSignal;
use crate::route::matcher::{matches_all, MatchOp};
use crate::store::{AlertFilter, Cursor, Decided, NotificationPlanner, Store, StoreError};

/// How often the scheduler looks when the clock is the system's.
const TICK: Duration = Duration::from_secs(1);
/// How often the silence book is re-read, so a silence made on another
/// replica holds here too.
const RELOAD_EVERY: chrono::Duration = chrono::Duration::seconds(10);
/// How long one scheduler holds a claimed silence end.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);
/// Page size when walking the firing alerts.
const PAGE: u32 = 500;

/// Runs the time-driven decisions.
pub struct Scheduler {
    store: Arc<dyn Store>,
    planner: Arc<dyn NotificationPlanner>,
    silences: SilenceBook,
    clock: Clock,
    signal: OutboxSignal,
}

impl Scheduler {
    /// A scheduler over these parts.
    pub fn new(
        store: Arc<dyn Store>,
        planner: Arc<dyn NotificationPlanner>,
        silences: SilenceBook,
        clock: Clock,
        signal: OutboxSignal,
    ) -> Self {
        Self {
            store,
            planner,
            silences,
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
                    match self.store.live_silences(now).await {
                        Ok(live) => {
                            self.silences.replace(live);
                            reloaded = Some(now);
                        }
                        Err(e) => tracing::error!(error = %e, "cannot reload silences"),
                    }
                }
                if let Err(e) = self.end_silences(now).await {
                    tracing::error!(error = %e, "cannot handle ended silences; retrying");
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

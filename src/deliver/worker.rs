//! One worker per channel: it claims due entries with a lease, keeps one
//! send in flight per destination, renews its claims while sends take their
//! time, and gives back what it holds at shutdown.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::queues::{bundle, Bundle, DestinationQueues, Inflight};
use super::Sink;
use crate::clock::Clock;
use crate::config::DeliveryConfig;
use crate::store::{DestinationFilter, OutboxSignal, Store};
use crate::telemetry::Metrics;

/// Shared by every channel worker.
#[derive(Clone)]
pub struct Outbox {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Clock,
    pub(super) config: DeliveryConfig,
    pub(super) metrics: Arc<Metrics>,
    signal: OutboxSignal,
}

/// How long a worker waits before looking again when nothing woke it: other
/// replicas may have queued work, and retries fall due.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How long a claim holds without renewal. A live worker renews its claims
/// every [`RENEW_EVERY`], so a send may take as long as it needs; a worker
/// that died (kill -9, lost host) lets its entries fall due again after at
/// most this long, and another replica or the restarted process sends them.
pub(super) const LEASE: Duration = Duration::from_secs(20);
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Entries due for one paced destination, behind the one about to go, from
/// which the lot is folded into one summary: more than a platform limit of
/// about one a second lets through without making people wait.
pub(super) const FOLD_AFTER: i64 = 3;

/// Most entries one summary folds (the rest go into the next).
pub(super) const FOLD_MAX: u32 = 1000;

pub(super) fn after(
    now: chrono::DateTime<chrono::Utc>,
    d: Duration,
) -> chrono::DateTime<chrono::Utc> {
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
    pub(super) fn send_deadline(&self) -> Duration {
        self.config.timeout.saturating_mul(3)
    }

    /// Starts one worker per channel. They stop taking work when `shutdown`
    /// fires and finish what is in flight within `drain`.
    pub fn spawn(
        &self,
        channels: Vec<Arc<dyn Sink>>,
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
        channel: Arc<dyn Sink>,
        shutdown: CancellationToken,
        drain: Duration,
    ) {
        let name = channel.name().to_string();
        let wake = self.signal.get(&name);
        let mut sends = DestinationQueues::default();
        let mut inflight = Inflight::default();
        let mut claimed: HashSet<i64> = HashSet::new();
        // Leases are compared with the service's clock, so they are renewed
        // by it too.
        let mut last_renew = self.clock.now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            while let Some(done) = inflight.set.try_join_next_with_id() {
                self.finished(done, &mut claimed, &mut sends, &mut inflight, &channel);
            }
            let now = self.clock.now();
            if now < last_renew || after(last_renew, RENEW_EVERY) <= now {
                last_renew = now;
                if !claimed.is_empty() {
                    let ids: Vec<i64> = claimed.iter().copied().collect();
                    if let Err(e) = self.store.renew(&ids, after(now, LEASE)).await {
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
            self.signal.set_claimed(&name, claimed.len());
            if full_batch {
                continue;
            }
            let wait = self.idle_wait(&name).await;
            tokio::select! {
                _ = wake.notified() => {}
                Some(done) = inflight.set.join_next_with_id(), if !inflight.set.is_empty() => {
                    self.finished(done, &mut claimed, &mut sends, &mut inflight, &channel);
                    self.signal.set_claimed(&name, claimed.len());
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
        self.signal.set_claimed(&name, 0);
    }

    fn start(&self, inflight: &mut Inflight, channel: &Arc<dyn Sink>, b: Bundle) {
        let me = self.clone();
        let ch = channel.clone();
        let ids: Vec<i64> = b.iter().map(|n| n.id).collect();
        let destination = b[0].destination.clone();
        let task = inflight.set.spawn(async move {
            me.deliver(ch.as_ref(), b).await;
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
        channel: &Arc<dyn Sink>,
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
}

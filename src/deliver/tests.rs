//! The outbox's decisions against a fake sink, a manual clock and a real
//! SQLite store: what it sends, when it retries, what it gathers, and what
//! it takes over from a worker that died. Nothing here waits for a window
//! of time to pass: the test moves the clock and rings the outbox's bell.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use super::pacing::Pacer;
use super::{DeliveryError, Outbox, Sink};
use crate::clock::Clock;
use crate::config::DeliveryConfig;
use crate::model::alert::{AlertStatus, Fingerprint};
use crate::model::notification::{AlertGroup, BacklogSummary};
use crate::store::sqlite::SqliteStore;
use crate::store::{
    DestinationFilter, NewNotification, Notification, NotificationState, OutboxSignal, Store, Timed,
};
use crate::telemetry::Metrics;

/// What the fake platform saw, and what it answers next.
#[derive(Default)]
struct Script {
    /// (destination, alert names, parts_done) of every send, in order.
    sends: Vec<(String, Vec<String>, u32)>,
    summaries: Vec<(String, usize)>,
    /// Answers for the next sends, first first; `Ok` once they run out.
    answers: Vec<Result<(), DeliveryError>>,
}

struct FakeSink {
    pacer: Pacer,
    script: Mutex<Script>,
    /// When set, each send waits for a permit: a send that takes its time.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl FakeSink {
    fn new(answers: Vec<Result<(), DeliveryError>>) -> Arc<Self> {
        Arc::new(Self {
            pacer: Pacer::new(&[]),
            script: Mutex::new(Script {
                answers,
                ..Script::default()
            }),
            gate: None,
        })
    }

    fn gated(gate: Arc<tokio::sync::Semaphore>) -> Arc<Self> {
        Arc::new(Self {
            pacer: Pacer::new(&[]),
            script: Mutex::new(Script::default()),
            gate: Some(gate),
        })
    }

    fn sends(&self) -> Vec<(String, Vec<String>, u32)> {
        self.script.lock().expect("script").sends.clone()
    }
}

#[async_trait]
impl Sink for FakeSink {
    fn name(&self) -> &str {
        "fake"
    }

    fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    async fn send(
        &self,
        destination: &str,
        group: &AlertGroup,
        parts_done: u32,
    ) -> Result<(), DeliveryError> {
        if let Some(gate) = &self.gate {
            let _permit = gate.acquire().await.expect("gate open");
        }
        let mut s = self.script.lock().expect("script");
        let names = group
            .alerts
            .iter()
            .map(|a| a.labels.get("alertname").cloned().unwrap_or_default())
            .collect();
        s.sends.push((destination.to_string(), names, parts_done));
        if s.answers.is_empty() {
            Ok(())
        } else {
            s.answers.remove(0)
        }
    }

    async fn send_summary(
        &self,
        destination: &str,
        summary: &BacklogSummary,
    ) -> Result<(), DeliveryError> {
        let mut s = self.script.lock().expect("script");
        s.summaries
            .push((destination.to_string(), summary.alerts.len()));
        Ok(())
    }
}

struct Rig {
    store: Arc<dyn Store>,
    clock: Clock,
    signal: OutboxSignal,
    outbox: Outbox,
    _dir: tempfile::TempDir,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("time")
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("outbox.db"))
            .await
            .expect("open"),
    );
    let clock = Clock::manual(start());
    let signal = OutboxSignal::new(&["fake".to_string()]);
    let config = DeliveryConfig {
        max_attempts: 3,
        retry_initial: Duration::from_secs(2),
        retry_max: Duration::from_secs(60),
        concurrency: 4,
        timeout: Duration::from_secs(5),
    };
    let outbox = Outbox::new(
        store.clone(),
        clock.clone(),
        config,
        Arc::new(Metrics::new()),
        signal.clone(),
    );
    Rig {
        store,
        clock,
        signal,
        outbox,
        _dir: dir,
    }
}

/// One firing notification about `name` for `destination`, in `group_key`'s
/// `group_wait` group when one is given.
fn note(name: &str, destination: &str, group_key: Option<&str>) -> NewNotification {
    let mut group = crate::template::sample_group(AlertStatus::Firing, start());
    group.alerts.truncate(1);
    let alert = &mut group.alerts[0];
    alert.labels.insert("alertname".into(), name.to_string());
    alert.fingerprint = Fingerprint::from_labels(&alert.labels);
    group.group_key = group_key.map(str::to_string);
    NewNotification {
        channel: "fake".into(),
        destination: destination.into(),
        group,
        repeat_every: None,
        delay: group_key.map(|_| Duration::from_secs(30)),
        throttle: None,
    }
}

impl Rig {
    async fn queue(&self, notes: Vec<NewNotification>) {
        self.store
            .finish_timed(Timed::Reminders, notes, Vec::new(), self.clock.now())
            .await
            .expect("queue");
        self.signal.wake_all();
    }

    async fn all(&self) -> Vec<Notification> {
        self.store
            .list_notifications(None, None, None, 100)
            .await
            .expect("list")
            .items
    }

    /// Waits (a bounded number of short polls) until `done` holds for the
    /// stored notifications.
    async fn until(&self, what: &str, done: impl Fn(&[Notification]) -> bool) -> Vec<Notification> {
        for _ in 0..500 {
            let all = self.all().await;
            if done(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not reached; outbox holds {:#?}", self.all().await);
    }

    fn spawn(&self, sink: Arc<FakeSink>) -> CancellationToken {
        let stop = CancellationToken::new();
        let sinks: Vec<Arc<dyn Sink>> = vec![sink];
        self.outbox
            .spawn(sinks, stop.clone(), Duration::from_secs(1));
        stop
    }
}

fn states(all: &[Notification]) -> Vec<NotificationState> {
    all.iter().map(|n| n.state).collect()
}

#[tokio::test]
async fn a_transient_failure_waits_for_retry_after_on_the_clock_then_sends() {
    let rig = rig().await;
    let sink = FakeSink::new(vec![Err(DeliveryError::transient(
        "429 too many requests".into(),
        Some(Duration::from_secs(30)),
    ))]);
    rig.queue(vec![note("DiskFull", "chat-1", None)]).await;
    let stop = rig.spawn(sink.clone());

    let all = rig
        .until("first attempt recorded", |a| {
            a.len() == 1 && a[0].attempts == 1 && a[0].last_error.is_some()
        })
        .await;
    assert_eq!(states(&all), vec![NotificationState::Pending]);
    // The platform said 30 s: not a moment before, however often the worker looks.
    let due = all[0].next_attempt_at;
    assert_eq!(due, start() + chrono::Duration::seconds(30));
    rig.clock.advance(chrono::Duration::seconds(29));
    rig.signal.wake_all();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.sends().len(), 1, "nothing is sent before retry_after");

    rig.clock.advance(chrono::Duration::seconds(2));
    rig.signal.wake_all();
    let all = rig
        .until("sent after retry_after", |a| {
            states(a) == vec![NotificationState::Sent]
        })
        .await;
    assert_eq!(all[0].attempts, 2);
    assert_eq!(sink.sends().len(), 2);
    stop.cancel();
}

#[tokio::test]
async fn a_permanent_failure_is_kept_failed_with_its_reason_and_not_retried() {
    let rig = rig().await;
    let sink = FakeSink::new(vec![Err(DeliveryError::permanent(
        "400 Bad Request: chat not found".into(),
    ))]);
    rig.queue(vec![note("DiskFull", "chat-1", None)]).await;
    let stop = rig.spawn(sink.clone());
    let all = rig
        .until("failed", |a| states(a) == vec![NotificationState::Failed])
        .await;
    assert_eq!(
        all[0].last_error.as_deref(),
        Some("400 Bad Request: chat not found")
    );
    rig.clock.advance(chrono::Duration::hours(1));
    rig.signal.wake_all();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.sends().len(), 1, "a permanent failure is tried once");
    stop.cancel();
}

#[tokio::test]
async fn transient_failures_stop_at_max_attempts_and_resume_split_messages() {
    let rig = rig().await;
    let busy = |n: u32, parts_done| DeliveryError::Transient {
        reason: format!("502 Bad Gateway #{n}"),
        retry_after: None,
        parts_done,
    };
    // The first attempt got one part through; later ones resume after it.
    let sink = FakeSink::new(vec![Err(busy(1, 1)), Err(busy(2, 0)), Err(busy(3, 0))]);
    rig.queue(vec![note("DiskFull", "chat-1", None)]).await;
    let stop = rig.spawn(sink.clone());
    for attempt in 1..=2u32 {
        let reason = format!("502 Bad Gateway #{attempt}");
        rig.until("attempt recorded", |a| {
            a[0].last_error.as_deref() == Some(reason.as_str())
        })
        .await;
        // Backoff is at most retry_max (60 s) plus jitter: an hour is past it.
        rig.clock.advance(chrono::Duration::hours(1));
        rig.signal.wake_all();
    }
    let all = rig
        .until("failed after 3 attempts", |a| {
            states(a) == vec![NotificationState::Failed]
        })
        .await;
    assert_eq!(all[0].attempts, 3);
    let parts: Vec<u32> = sink.sends().iter().map(|s| s.2).collect();
    assert_eq!(
        parts,
        vec![0, 1, 1],
        "parts already accepted are not sent again"
    );
    stop.cancel();
}

#[tokio::test]
async fn group_wait_gathers_the_group_into_one_message_when_the_first_falls_due() {
    let rig = rig().await;
    let sink = FakeSink::new(Vec::new());
    rig.queue(vec![
        note("NodeDown", "chat-1", Some("g1")),
        note("DiskFull", "chat-1", Some("g1")),
        note("Other", "chat-2", None),
    ])
    .await;
    let stop = rig.spawn(sink.clone());
    // The ungrouped one goes at once; the group waits for its 30 s.
    rig.until("ungrouped sent", |a| {
        a.iter()
            .filter(|n| n.state == NotificationState::Sent)
            .count()
            == 1
    })
    .await;
    assert_eq!(sink.sends().len(), 1);
    rig.clock.advance(chrono::Duration::seconds(31));
    rig.signal.wake_all();
    rig.until("all sent", |a| {
        a.iter().all(|n| n.state == NotificationState::Sent)
    })
    .await;
    let sends = sink.sends();
    assert_eq!(sends.len(), 2, "the group went as one message: {sends:?}");
    assert_eq!(sends[1].0, "chat-1");
    assert_eq!(
        sends[1].1,
        vec!["NodeDown".to_string(), "DiskFull".to_string()]
    );
    stop.cancel();
}

#[tokio::test]
async fn a_dead_workers_claim_is_taken_over_once_its_lease_runs_out() {
    let rig = rig().await;
    rig.queue(vec![note("DiskFull", "chat-1", None)]).await;
    // Another process claimed it for 20 s and died.
    let now = rig.clock.now();
    let taken = rig
        .store
        .claim_due(
            "fake",
            now,
            now + chrono::Duration::seconds(20),
            10,
            DestinationFilter::Any,
        )
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1);
    let sink = FakeSink::new(Vec::new());
    let stop = rig.spawn(sink.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sink.sends().is_empty(), "a live lease is left alone");
    rig.clock.advance(chrono::Duration::seconds(21));
    rig.signal.wake_all();
    let all = rig
        .until("taken over and sent", |a| {
            states(a) == vec![NotificationState::Sent]
        })
        .await;
    assert_eq!(sink.sends().len(), 1, "sent once, by the new worker");
    assert_eq!(
        all[0].attempts, 2,
        "the dead worker's claim counted as an attempt"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_long_send_keeps_its_lease_as_the_service_clock_moves() {
    let rig = rig().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let sink = FakeSink::gated(gate.clone());
    rig.queue(vec![note("DiskFull", "chat-1", None)]).await;
    let stop = rig.spawn(sink.clone());
    let claimed = rig.until("claimed", |a| a[0].attempts == 1).await;
    // Claimed with a 20 s lease (the claim moves next_attempt_at to it).
    assert_eq!(
        claimed[0].next_attempt_at,
        start() + chrono::Duration::seconds(20)
    );
    // The send hangs while the clock passes the first lease, twice over.
    for step in 1..=8i64 {
        rig.clock.advance(chrono::Duration::seconds(6));
        rig.signal.wake_all();
        let until = start() + chrono::Duration::seconds(6 * step + 20);
        rig.until("lease renewed", |a| a[0].next_attempt_at == until)
            .await;
    }
    gate.add_permits(1);
    let all = rig
        .until("sent", |a| states(a) == vec![NotificationState::Sent])
        .await;
    assert_eq!(
        all[0].attempts, 1,
        "nobody took the claim over while it was renewed"
    );
    stop.cancel();
}

//! The outbox's doorbell: whoever writes outbox rows (ingest, the scheduler,
//! a re-send) rings it after the commit, so the channel's worker looks now
//! instead of at its next poll. Beside it, how far the work it rings for
//! has got in this process (what the workers hold, the time the scheduler
//! last handled), so a test waits until this process is idle instead of
//! sleeping a fixed time.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// Wakes channel workers when the outbox got new entries. One per process:
/// a channel added by a reload gets its wake-up the first time its worker
/// asks for it.
#[derive(Clone, Default)]
pub struct OutboxSignal {
    per_channel: Arc<std::sync::Mutex<HashMap<String, Arc<Notify>>>>,
    progress: Arc<std::sync::Mutex<Progress>>,
}

#[derive(Default)]
struct Progress {
    /// Entries each channel's worker has claimed and not yet recorded.
    claimed: HashMap<String, usize>,
    /// The time the scheduler's last full pass was for.
    scheduled: Option<DateTime<Utc>>,
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

    /// The wake-up of one channel's worker.
    pub fn get(&self, channel: &str) -> Arc<Notify> {
        self.lock().entry(channel.to_string()).or_default().clone()
    }

    /// A channel's worker now holds `n` claimed entries (0: none).
    pub fn set_claimed(&self, channel: &str, n: usize) {
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 {
            p.claimed.remove(channel);
        } else {
            p.claimed.insert(channel.to_string(), n);
        }
    }

    /// The scheduler finished its pass for `now`.
    pub fn scheduled(&self, now: DateTime<Utc>) {
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.scheduled = Some(p.scheduled.map_or(now, |t| t.max(now)));
    }

    /// Whether this process holds no claimed entry and its scheduler has
    /// handled every time up to `since`.
    pub fn idle_since(&self, since: DateTime<Utc>) -> bool {
        let p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.claimed.is_empty() && p.scheduled.is_some_and(|t| t >= since)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.per_channel.lock().unwrap_or_else(|p| p.into_inner())
    }
}

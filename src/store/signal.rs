//! The outbox's doorbell: whoever writes outbox rows (ingest, the scheduler,
//! a re-send) rings it after the commit, so the channel's worker looks now
//! instead of at its next poll.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

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

    /// The wake-up of one channel's worker.
    pub fn get(&self, channel: &str) -> Arc<Notify> {
        self.lock().entry(channel.to_string()).or_default().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.per_channel.lock().unwrap_or_else(|p| p.into_inner())
    }
}

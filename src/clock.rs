//! The one source of "now" for every decision alertrelay makes.
//!
//! Dedup, retry schedules, throttle windows, reminders and digests
//! all compare against this clock, never against the system time directly, so
//! tests can move time forward instead of sleeping. `Utc::now` is banned
//! everywhere else by `clippy.toml`.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A shareable handle on the current time.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

enum ClockInner {
    System,
    Manual(Mutex<DateTime<Utc>>, tokio::sync::Notify),
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self {
            inner: Arc::new(ClockInner::System),
        }
    }

    /// A clock that only moves when told to (tests).
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(ClockInner::Manual(
                Mutex::new(start),
                tokio::sync::Notify::new(),
            )),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.inner {
            #[allow(clippy::disallowed_methods)] // the one place allowed to read the wall clock
            ClockInner::System => Utc::now(),
            ClockInner::Manual(t, _) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, by: Duration) {
        if let ClockInner::Manual(t, moved) = &*self.inner {
            {
                let mut guard = t.lock().unwrap_or_else(|p| p.into_inner());
                *guard += by;
            }
            // One stored permit: the scheduler sees the move even if it was
            // busy at that instant.
            moved.notify_one();
        }
    }

    /// Completes when a manual clock is moved forward (the scheduler looks
    /// at once, so tests need not wait for its tick); never on the system
    /// clock, whose time the scheduler's tick follows.
    pub async fn advanced(&self) {
        match &*self.inner {
            ClockInner::System => std::future::pending().await,
            ClockInner::Manual(_, moved) => moved.notified().await,
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

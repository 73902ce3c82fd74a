//! The one source of "now" for every decision alertrelay makes.
//!
//! Dedup, retry schedules, throttle windows, reminders, digests and pacing
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
    /// The wall clock, and a monotonic instant for measuring intervals.
    System(std::time::Instant),
    /// The time, its start, and the wake-up of whoever waits for a move.
    Manual(Mutex<DateTime<Utc>>, DateTime<Utc>, tokio::sync::Notify),
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self {
            inner: Arc::new(ClockInner::System(std::time::Instant::now())),
        }
    }

    /// A clock that only moves when told to (tests).
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self {
            inner: Arc::new(ClockInner::Manual(
                Mutex::new(start),
                start,
                tokio::sync::Notify::new(),
            )),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.inner {
            #[allow(clippy::disallowed_methods)] // the one place allowed to read the wall clock
            ClockInner::System(_) => Utc::now(),
            ClockInner::Manual(t, _, _) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// How much time has passed on this clock since it was made: monotonic
    /// on the system clock (a step of the wall clock never stalls what is
    /// paced by it), the moves of a manual one.
    pub fn elapsed(&self) -> std::time::Duration {
        match &*self.inner {
            ClockInner::System(started) => started.elapsed(),
            ClockInner::Manual(t, start, _) => {
                let now = *t.lock().unwrap_or_else(|p| p.into_inner());
                (now - *start).to_std().unwrap_or_default()
            }
        }
    }

    /// Waits until `d` has passed on this clock: a timer on the system
    /// clock; on a manual one, until a test has moved it far enough.
    pub async fn sleep(&self, d: std::time::Duration) {
        match &*self.inner {
            ClockInner::System(_) => tokio::time::sleep(d).await,
            ClockInner::Manual(..) => {
                let until = self.elapsed() + d;
                // Looks every few milliseconds rather than taking the
                // scheduler's wake-up, which must not be consumed here.
                while self.elapsed() < until {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, by: Duration) {
        if let ClockInner::Manual(t, _, moved) = &*self.inner {
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
            ClockInner::System(_) => std::future::pending().await,
            ClockInner::Manual(_, _, moved) => moved.notified().await,
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

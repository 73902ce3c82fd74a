//! The one source of "now" for every decision alertrelay makes.
//!
//! Dedup, retry schedules and (later) throttle windows, reminders and digests
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
    Manual(Mutex<DateTime<Utc>>),
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
            inner: Arc::new(ClockInner::Manual(Mutex::new(start))),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.inner {
            #[allow(clippy::disallowed_methods)] // the one place allowed to read the wall clock
            ClockInner::System => Utc::now(),
            ClockInner::Manual(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, by: Duration) {
        if let ClockInner::Manual(t) = &*self.inner {
            let mut guard = t.lock().unwrap_or_else(|p| p.into_inner());
            *guard += by;
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

//! Flapping detection: an alert that changes state `changes` times within
//! `window` is flapping. One message says so; its further changes are
//! stored (with their events) but not notified until it has gone `window`
//! without a change; then one message gives its final state.
//!
//! The state of one alert is a [`FlapRow`] in the `flapping` table. Ingest
//! loads rows only for the alerts whose copy is a Refired or Resolved
//! transition — a storm of new alerts and re-sent ones costs nothing here —
//! and [`FlapRow::change`] decides, purely, what the change means. The
//! scheduler claims the rows whose stable time has come.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::notification::Flapping;

/// `flapping:`: an alert that changes state `changes` times within
/// `window` is flapping: one message says so, later changes are held until
/// it has been stable for `window`, then one message gives its final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlappingConfig {
    /// State changes within the window that make an alert flapping (3 to 100).
    pub changes: u32,
    /// The trailing window changes are counted in, and how long a flapping
    /// alert must go without a change to be stable again (1m to 24h).
    pub window: Duration,
}

impl Default for FlappingConfig {
    /// 6 changes in 10 minutes.
    fn default() -> Self {
        Self {
            changes: 6,
            window: Duration::from_secs(600),
        }
    }
}

/// What one state change of an alert means for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlapVerdict {
    /// Send this flapping message instead of the ordinary one (it started
    /// flapping, or — from the scheduler — it is stable again).
    Notify(Flapping),
    /// It is flapping: store the change, say nothing.
    Held,
}

/// The stored flapping state of one alert (times in microseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlapRow {
    /// Its latest state changes, oldest first: at most `changes` of them,
    /// all within the window of the last one.
    pub changes: Vec<i64>,
    /// When it started flapping; `None` when it is not.
    pub flapping_since: Option<i64>,
    /// While flapping: when it is stable if nothing changes before.
    pub stable_at: Option<i64>,
    /// While flapping: its changes since it started (the first included).
    pub flapped: u32,
    /// The window it was decided with, for the stable message.
    pub window_us: i64,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl FlapRow {
    /// The row of an alert that has none yet, at its first Refired or
    /// Resolved change: the changes of its incident before, known from the
    /// stored alert (its start, and its end if it ended), that fall within
    /// the window. Only the very first `Fired` of an alert is never recorded
    /// as it happens (new alerts cost no extra work); this recovers it.
    pub fn seeded(
        starts_at: DateTime<Utc>,
        ends_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        cfg: &FlappingConfig,
    ) -> Self {
        let from = now.timestamp_micros().saturating_sub(micros(cfg.window));
        let mut changes: Vec<i64> = [Some(starts_at), ends_at]
            .into_iter()
            .flatten()
            .map(|t| t.timestamp_micros())
            .filter(|t| *t > from && *t <= now.timestamp_micros())
            .collect();
        changes.sort_unstable();
        FlapRow {
            changes,
            window_us: micros(cfg.window),
            ..FlapRow::default()
        }
    }

    /// Records one state change at `now`; what it means for its messages
    /// (`None`: an ordinary change, notified as usual).
    pub fn change(&mut self, now: DateTime<Utc>, cfg: &FlappingConfig) -> Option<FlapVerdict> {
        let now_us = now.timestamp_micros();
        let window = micros(cfg.window);
        let from = now_us.saturating_sub(window);
        self.window_us = window;
        self.changes.retain(|t| *t > from);
        self.changes.push(now_us);
        let keep = cfg.changes.max(1) as usize;
        if self.changes.len() > keep {
            let drop = self.changes.len() - keep;
            self.changes.drain(..drop);
        }
        let stable_at = Some(now_us.saturating_add(window));
        if self.flapping_since.is_some() {
            self.flapped = self.flapped.saturating_add(1);
            self.stable_at = stable_at;
            return Some(FlapVerdict::Held);
        }
        let count = u32::try_from(self.changes.len()).unwrap_or(u32::MAX);
        if count < cfg.changes {
            return None;
        }
        self.flapping_since = Some(now_us);
        self.stable_at = stable_at;
        self.flapped = count;
        Some(FlapVerdict::Notify(Flapping {
            changes: count,
            window_seconds: cfg.window.as_secs(),
            stable: false,
        }))
    }

    /// The changes list as stored: a JSON array of microseconds.
    pub fn changes_json(&self) -> String {
        serde_json::to_string(&self.changes).unwrap_or_else(|_| "[]".into())
    }

    /// Reads a stored row; a garbled change list counts as empty.
    pub fn from_stored(
        changes: &str,
        flapping_since: Option<i64>,
        stable_at: Option<i64>,
        flapped: i64,
        window_us: i64,
    ) -> Self {
        FlapRow {
            changes: serde_json::from_str(changes).unwrap_or_default(),
            flapping_since,
            stable_at,
            flapped: u32::try_from(flapped).unwrap_or(0),
            window_us,
        }
    }
}

/// A flapping alert whose stable time has come, claimed by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StableDue {
    /// The alert.
    pub fingerprint: String,
    /// The stable time claimed: the row is finished only if no change
    /// moved it meanwhile.
    pub stable_at: i64,
    /// Its changes while it flapped.
    pub flapped: u32,
    /// The window, in microseconds.
    pub window_us: i64,
}

impl StableDue {
    /// What the stable message says.
    pub fn flapping(&self) -> Flapping {
        Flapping {
            changes: self.flapped,
            window_seconds: u64::try_from(self.window_us / 1_000_000).unwrap_or(0),
            stable: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn cfg(changes: u32, mins: u64) -> FlappingConfig {
        FlappingConfig {
            changes,
            window: Duration::from_secs(mins * 60),
        }
    }

    #[test]
    fn the_change_that_reaches_the_count_starts_flapping_and_later_ones_are_held() {
        let c = cfg(4, 10);
        let mut row = FlapRow::seeded(at(0), None, at(5), &c);
        assert_eq!(row.changes.len(), 1, "the first firing is recovered");
        assert_eq!(row.change(at(5), &c), None);
        assert_eq!(row.change(at(10), &c), None);
        assert_eq!(
            row.change(at(15), &c),
            Some(FlapVerdict::Notify(Flapping {
                changes: 4,
                window_seconds: 600,
                stable: false
            }))
        );
        assert_eq!(row.change(at(20), &c), Some(FlapVerdict::Held));
        assert_eq!(row.flapped, 5);
        assert_eq!(row.stable_at, Some(at(620).timestamp_micros()));
        assert!(row.changes.len() <= 4, "the list stays short");
    }

    #[test]
    fn changes_spread_wider_than_the_window_never_flap() {
        let c = cfg(3, 1);
        let mut row = FlapRow::seeded(at(-3600), None, at(0), &c);
        assert!(row.changes.is_empty(), "an old start is not counted");
        for i in 0..20 {
            assert_eq!(row.change(at(i * 31), &c), None, "change {i}");
        }
        assert_eq!(row.flapping_since, None);
    }

    #[test]
    fn a_garbled_row_reads_as_no_changes() {
        let row = FlapRow::from_stored("nonsense", None, None, -1, 0);
        assert!(row.changes.is_empty());
        assert_eq!(row.flapped, 0);
        let back = FlapRow::from_stored(&row.changes_json(), None, None, 0, 0);
        assert_eq!(back, row);
    }
}

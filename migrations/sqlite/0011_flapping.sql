-- flapping detection (src/flapping.rs): one row per alert that has had a
-- Refired or Resolved change. `changes` holds its latest change times (a
-- JSON array of microseconds, at most `flapping.changes` of them). While
-- it flaps, `flapping_since` is set, `flapped` counts its changes and
-- `stable_at` is its last change + the window; the scheduler claims due
-- rows with a lease (`lease_until`), sends the one stable message and
-- clears them. Times are microseconds since the epoch.
CREATE TABLE flapping (
    fingerprint    TEXT PRIMARY KEY,
    changes        TEXT NOT NULL DEFAULT '[]',
    flapping_since INTEGER,
    stable_at      INTEGER,
    flapped        INTEGER NOT NULL DEFAULT 0,
    window_us      INTEGER NOT NULL DEFAULT 0,
    lease_until    INTEGER
);
CREATE INDEX flapping_stable ON flapping (stable_at) WHERE stable_at IS NOT NULL;

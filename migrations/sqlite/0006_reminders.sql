-- repeat_interval reminders (src/route/scheduler.rs): one row per channel
-- and alert whose firing message was sent through a route with
-- repeat_interval. Queuing a firing message (the first, or a reminder)
-- sets next_at = now + every_us; the scheduler claims due rows with a
-- lease, re-checks the alert (still firing, same incident, not
-- acknowledged, not silenced) and either queues the reminder or drops the
-- row. Times are microseconds since the epoch.
CREATE TABLE reminders (
    channel       TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    starts_at     INTEGER NOT NULL,          -- the incident it reminds of
    every_us      INTEGER NOT NULL,
    next_at       INTEGER NOT NULL,
    claimed_until INTEGER,
    PRIMARY KEY (channel, fingerprint)
);
CREATE INDEX reminders_due ON reminders (next_at);

-- throttle (src/route/scheduler.rs): one open window per channel and alert
-- after a firing message through a route with `throttle`. Firing copies
-- received while it is open are counted in `repeats`; a resolve message
-- deletes it; when it closes with repeats and the alert still firing, one
-- "still firing, fired N times since" message goes out and opens the next.
-- Times are microseconds since the epoch.
CREATE TABLE throttle_windows (
    channel       TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    starts_at     BIGINT NOT NULL,          -- the incident
    opened_at     BIGINT NOT NULL,
    until         BIGINT NOT NULL,
    every_us      BIGINT NOT NULL,
    repeats       BIGINT NOT NULL DEFAULT 0,
    claimed_until BIGINT,
    PRIMARY KEY (channel, fingerprint)
);
CREATE INDEX throttle_windows_due ON throttle_windows (until);

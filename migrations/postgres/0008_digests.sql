-- digest (src/route/scheduler.rs): one schedule per digest route (its
-- matchers as written, `scope`) and channel. When `due_at` passes, one
-- status summary of the period since `period_start` goes out and the next
-- period starts. Kept in the database so a restart or another replica
-- sends each period's digest once. Times are microseconds since the epoch.
CREATE TABLE digests (
    channel       TEXT NOT NULL,
    scope         TEXT NOT NULL,
    period_us     BIGINT NOT NULL,
    period_start  BIGINT NOT NULL,
    due_at        BIGINT NOT NULL,
    claimed_until BIGINT,
    PRIMARY KEY (channel, scope)
);

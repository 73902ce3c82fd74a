-- Silences (src/route/silence.rs). Times are microseconds since the epoch.
-- When one ends (time ran out, or deleted) a scheduler queues the
-- notifications of alerts it held back that still fire; end_claimed_until
-- is its lease on that work, end_handled says it is done, so a crash in
-- between retries it and a finished one is never queued twice.
CREATE TABLE silences (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers          TEXT NOT NULL,             -- JSON array of matcher texts
    starts_at         INTEGER NOT NULL,
    ends_at           INTEGER,                   -- NULL: until deleted
    comment           TEXT NOT NULL DEFAULT '',
    created_by        TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    end_handled       INTEGER NOT NULL DEFAULT 0,
    end_claimed_until INTEGER
);
CREATE INDEX silences_to_end ON silences (end_handled, ends_at);

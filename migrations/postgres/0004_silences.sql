-- Silences (src/route/silence.rs). Times are microseconds since the epoch.
-- When one ends (time ran out, or deleted) a scheduler queues the
-- notifications of alerts it held back that still fire; end_claimed_until
-- is its lease on that work (replicas share it), end_handled says it is
-- done, so a crash in between retries it and a finished one is never
-- queued twice.
CREATE TABLE silences (
    id                BIGSERIAL PRIMARY KEY,
    matchers          TEXT NOT NULL,             -- JSON array of matcher texts
    starts_at         BIGINT NOT NULL,
    ends_at           BIGINT,                    -- NULL: until deleted
    comment           TEXT NOT NULL DEFAULT '',
    created_by        TEXT NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    end_handled       BIGINT NOT NULL DEFAULT 0,
    end_claimed_until BIGINT
);
CREATE INDEX silences_to_end ON silences (end_handled, ends_at);

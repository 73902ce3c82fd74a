-- Times are microseconds since the Unix epoch (UTC), as in the SQLite schema.
-- Large columns come last: SQLite stores columns in order, and reading a small
-- column that follows a large one means walking its overflow pages.
CREATE TABLE alerts (
    fingerprint   TEXT PRIMARY KEY NOT NULL,
    status        TEXT NOT NULL,
    alertname     TEXT NOT NULL DEFAULT '',
    severity      TEXT NOT NULL DEFAULT '',
    instance      TEXT NOT NULL DEFAULT '',
    source        TEXT NOT NULL,
    starts_at     BIGINT NOT NULL,
    ends_at       BIGINT,
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    ack_by        TEXT,
    ack_memo      TEXT,
    ack_at        BIGINT,
    generator_url TEXT,
    labels        TEXT NOT NULL,
    annotations   TEXT NOT NULL
);
CREATE INDEX alerts_by_last_seen ON alerts (last_seen DESC, fingerprint DESC);

CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    alertname   TEXT NOT NULL,
    status      TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX events_by_alert ON events (fingerprint, id);

-- The outbox: a notification is written in the same transaction as the alert
-- change that caused it and leaves 'pending' only when the channel accepted it.
-- A claim moves next_attempt_at to the end of its lease, so "due" is one
-- index range and an abandoned claim falls due again by itself.
CREATE TABLE notifications (
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT NOT NULL,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    parts_done      BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    last_error      TEXT,
    payload         TEXT NOT NULL
);
CREATE INDEX notifications_due ON notifications (channel, state, next_attempt_at, id);

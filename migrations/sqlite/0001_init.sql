-- Times are microseconds since the Unix epoch (UTC), as in the PostgreSQL schema.
-- Large columns come last: SQLite stores columns in order, and reading a small
-- column that follows a large one means walking its overflow pages.
CREATE TABLE alerts (
    fingerprint   TEXT PRIMARY KEY NOT NULL,
    status        TEXT NOT NULL,
    alertname     TEXT NOT NULL DEFAULT '',
    severity      TEXT NOT NULL DEFAULT '',
    instance      TEXT NOT NULL DEFAULT '',
    source        TEXT NOT NULL,
    starts_at     INTEGER NOT NULL,
    ends_at       INTEGER,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    ack_by        TEXT,
    ack_memo      TEXT,
    ack_at        INTEGER,
    generator_url TEXT,
    labels        TEXT NOT NULL,
    annotations   TEXT NOT NULL
);
CREATE INDEX alerts_by_last_seen ON alerts (last_seen DESC, fingerprint DESC);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    alertname   TEXT NOT NULL,
    status      TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX events_by_alert ON events (fingerprint, id);

-- The outbox: a notification is written in the same transaction as the alert
-- change that caused it and leaves 'pending' only when the channel accepted it.
-- A claim moves next_attempt_at to the end of its lease, so "due" is one
-- index range and an abandoned claim falls due again by itself.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT NOT NULL,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    parts_done      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_until   INTEGER,
    sent_at         INTEGER,
    last_error      TEXT,
    payload         TEXT NOT NULL
);
CREATE INDEX notifications_due ON notifications (channel, state, next_attempt_at, id);

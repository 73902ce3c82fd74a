-- Fewer pages written per alert (docs/BENCHMARKS.md, run 5). A commit writes
-- every page it dirtied to the WAL, whole:
--
-- 1. Events were indexed by fingerprint, a hash: every new alert dirtied a
--    random leaf of that index. They now point at their alert's sequential
--    id, so the events of new alerts append to the index's last leaf.
-- 2. The outbox row was rewritten with its multi-page JSON payload on every
--    claim and delivery result (a changed record size rewrites the whole
--    record in SQLite). The payload, written once, now lives apart.
CREATE TABLE alerts_v2 (
    id            INTEGER PRIMARY KEY,
    fingerprint   TEXT NOT NULL UNIQUE,
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
INSERT INTO alerts_v2 (id, fingerprint, status, alertname, severity, instance, source, starts_at, ends_at,
                       first_seen, last_seen, ack_by, ack_memo, ack_at, generator_url, labels, annotations)
SELECT rowid, fingerprint, status, alertname, severity, instance, source, starts_at, ends_at,
       first_seen, last_seen, ack_by, ack_memo, ack_at, generator_url, labels, annotations
FROM alerts ORDER BY rowid;

CREATE TABLE events_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id    INTEGER NOT NULL,
    alertname   TEXT NOT NULL,
    status      TEXT NOT NULL,
    at          INTEGER NOT NULL
);
INSERT INTO events_v2 (id, alert_id, alertname, status, at)
SELECT e.id, a.id, e.alertname, e.status, e.at
FROM events e JOIN alerts_v2 a ON a.fingerprint = e.fingerprint ORDER BY e.id;

DROP TABLE events;
DROP TABLE alerts;
ALTER TABLE alerts_v2 RENAME TO alerts;
ALTER TABLE events_v2 RENAME TO events;
CREATE INDEX alerts_by_last_seen ON alerts (last_seen DESC, fingerprint DESC);
CREATE INDEX events_by_alert ON events (alert_id, id);

CREATE TABLE notification_payloads (
    notification_id INTEGER PRIMARY KEY,
    payload         TEXT NOT NULL
);
INSERT INTO notification_payloads (notification_id, payload) SELECT id, payload FROM notifications;
ALTER TABLE notifications DROP COLUMN payload;

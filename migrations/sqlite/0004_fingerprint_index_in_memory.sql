-- The fingerprint → id index moves into the process (src/store/fp_index.rs):
-- a unique B-tree on a hash took every new alert to a random leaf, and with
-- a million alerts stored the ingest rate fell to 40 % (docs/BENCHMARKS.md).
-- SQLite cannot drop a UNIQUE constraint, so the table is rebuilt without it,
-- keeping every id (events point at them).
CREATE TABLE alerts_v3 (
    id            INTEGER PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
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
INSERT INTO alerts_v3 SELECT id, fingerprint, status, alertname, severity, instance, source, starts_at,
       ends_at, first_seen, last_seen, ack_by, ack_memo, ack_at, generator_url, labels, annotations
FROM alerts ORDER BY id;
DROP TABLE alerts;
ALTER TABLE alerts_v3 RENAME TO alerts;
CREATE INDEX alerts_by_last_seen ON alerts (last_seen DESC, fingerprint DESC);

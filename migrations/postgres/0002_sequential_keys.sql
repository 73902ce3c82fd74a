-- The same shape as SQLite's 0002 (see there for why): events point at their
-- alert's sequential id, and an outbox entry's payload lives apart from the
-- row that every claim and delivery result updates, so those updates write a
-- small tuple.
ALTER TABLE alerts ADD COLUMN id BIGSERIAL;
CREATE UNIQUE INDEX alerts_by_id ON alerts (id);

ALTER TABLE events ADD COLUMN alert_id BIGINT;
UPDATE events e SET alert_id = a.id FROM alerts a WHERE a.fingerprint = e.fingerprint;
DELETE FROM events WHERE alert_id IS NULL;
ALTER TABLE events ALTER COLUMN alert_id SET NOT NULL;
DROP INDEX events_by_alert;
ALTER TABLE events DROP COLUMN fingerprint;
CREATE INDEX events_by_alert ON events (alert_id, id);

CREATE TABLE notification_payloads (
    notification_id BIGINT PRIMARY KEY,
    payload         TEXT NOT NULL
);
INSERT INTO notification_payloads (notification_id, payload) SELECT id, payload FROM notifications;
ALTER TABLE notifications DROP COLUMN payload;

-- group_wait (src/deliver/mod.rs): notifications of one route group wait
-- together; the first to fall due takes its pending siblings along and they
-- go out as one message. NULL for notifications sent without group_wait.
ALTER TABLE notifications ADD COLUMN group_key TEXT;
CREATE INDEX notifications_by_group ON notifications (channel, destination, group_key) WHERE group_key IS NOT NULL;

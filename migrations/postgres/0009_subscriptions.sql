-- Telegram chats registered with /start (channel `subscribers: true`),
-- their /subscribe patterns, and each commands channel's getUpdates state.
-- Times are microseconds since the epoch.
CREATE TABLE telegram_chats (
    channel       TEXT NOT NULL,
    chat_id       BIGINT NOT NULL,
    username      TEXT,                      -- without @, as Telegram last showed it
    registered_by TEXT,                      -- the sender's username (without @) at /start
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (channel, chat_id)
);
-- A chat's patterns; /subscriptions numbers them in id order.
CREATE TABLE chat_subscriptions (
    id         BIGSERIAL PRIMARY KEY,
    channel    TEXT NOT NULL,
    chat_id    BIGINT NOT NULL,
    kind       TEXT NOT NULL,                -- 'matcher' | 'text'
    pattern    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_subscriptions_by_chat ON chat_subscriptions (channel, chat_id, id);
-- One poller per channel: the offset of the next update to read (updates
-- below it were handled), and the lease of the process polling now.
CREATE TABLE telegram_polls (
    channel       TEXT PRIMARY KEY,
    update_offset BIGINT NOT NULL DEFAULT 0,
    holder        TEXT,
    lease_until   BIGINT
);

//! Statements both databases take in the same words, written once.
//!
//! Each is kept in SQLite's numbered-parameter form (`?1`), which SQLite
//! binds by number; PostgreSQL's form (`$1`) is made from it at first use.
//! (SQLite reads `$1` as a *named* parameter, bound in order of first
//! appearance, so the PostgreSQL form cannot serve both.) Statements whose
//! words differ (`FOR UPDATE SKIP LOCKED`, `UNNEST`, `json_each`) stay in
//! their backend's file.

use std::sync::OnceLock;

/// One statement's text for each database.
pub(crate) struct Statement {
    sqlite: &'static str,
    postgres: OnceLock<String>,
}

impl Statement {
    const fn new(sqlite: &'static str) -> Self {
        Self {
            sqlite,
            postgres: OnceLock::new(),
        }
    }

    /// The text with `?1`-style parameters.
    pub(crate) fn sqlite(&self) -> &'static str {
        self.sqlite
    }

    /// The text with `$1`-style parameters.
    pub(crate) fn postgres(&'static self) -> &'static str {
        self.postgres
            .get_or_init(|| numbered_for_postgres(self.sqlite))
    }
}

/// `?1` -> `$1`; a `?` not followed by a digit is left alone.
fn numbered_for_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// Every digest schedule.
pub(crate) static DIGEST_SCHEDULES: Statement =
    Statement::new("SELECT channel, scope, period_us, period_start, due_at FROM digests");

/// Makes or resets one digest schedule.
pub(crate) static UPSERT_DIGEST_SCHEDULE: Statement = Statement::new(
    "INSERT INTO digests (channel, scope, period_us, period_start, due_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (channel, scope) DO UPDATE SET period_us = excluded.period_us,
                   period_start = excluded.period_start, due_at = excluded.due_at",
);

/// Forgets a digest schedule the config no longer has.
pub(crate) static DELETE_DIGEST_SCHEDULE: Statement =
    Statement::new("DELETE FROM digests WHERE channel = ?1 AND scope = ?2");

/// Starts the next period of a digest that was sent.
pub(crate) static NEXT_DIGEST_PERIOD: Statement = Statement::new(
    "UPDATE digests SET period_start = ?1, due_at = ?2, claimed_until = NULL
                         WHERE channel = ?3 AND scope = ?4",
);

/// An alert stable again: its flapping state ends (if nothing changed since it was claimed).
pub(crate) static END_FLAPPING: Statement = Statement::new(
    "UPDATE flapping SET flapping_since = NULL, stable_at = NULL, flapped = 0, lease_until = NULL
                     WHERE fingerprint = ?1 AND stable_at = ?2",
);

/// A silence whose end was handled.
pub(crate) static SILENCE_END_HANDLED: Statement =
    Statement::new("UPDATE silences SET end_handled = 1, end_claimed_until = NULL WHERE id = ?1");

/// Opens (or re-opens) the throttle window of an alert on a channel.
pub(crate) static OPEN_THROTTLE_WINDOW: Statement = Statement::new(
    "INSERT INTO throttle_windows (channel, fingerprint, starts_at, opened_at, until, every_us, repeats)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
             ON CONFLICT (channel, fingerprint) DO UPDATE SET starts_at = excluded.starts_at,
               opened_at = excluded.opened_at, until = excluded.until, every_us = excluded.every_us,
               repeats = 0, claimed_until = NULL",
);

/// Closes the throttle window of an alert on a channel.
pub(crate) static CLOSE_THROTTLE_WINDOW: Statement =
    Statement::new("DELETE FROM throttle_windows WHERE channel = ?1 AND fingerprint = ?2");

/// Sets (or resets) the reminder of an alert on a channel.
pub(crate) static SET_REMINDER: Statement = Statement::new(
    "INSERT INTO reminders (channel, fingerprint, starts_at, every_us, next_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (channel, fingerprint) DO UPDATE SET starts_at = excluded.starts_at,
               every_us = excluded.every_us, next_at = excluded.next_at, claimed_until = NULL",
);

/// Gives every claimed outbox entry back (a lone process at start).
pub(crate) static RELEASE_ALL_CLAIMS: Statement = Statement::new(
    "UPDATE notifications SET claimed_until = NULL, next_attempt_at = created_at WHERE state = 'pending' AND claimed_until IS NOT NULL",
);

/// Counts a copy received while the alert's throttle window is open.
pub(crate) static COUNT_THROTTLED_REPEAT: Statement = Statement::new(
    "UPDATE throttle_windows SET repeats = repeats + 1
                 WHERE channel = ?1 AND fingerprint = ?2 AND until > ?3",
);

/// Takes the getUpdates lease of a channel if it is free, expired or ours;
/// answers the offset only then.
pub(crate) static LEASE_UPDATES: Statement = Statement::new(
    "INSERT INTO telegram_polls (channel, update_offset, holder, lease_until) VALUES (?1, 0, ?2, ?3)
     ON CONFLICT (channel) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until
     WHERE telegram_polls.holder IS NULL OR telegram_polls.holder = excluded.holder
        OR telegram_polls.lease_until IS NULL OR telegram_polls.lease_until <= ?4
     RETURNING update_offset",
);

/// Forgets every subscription of a chat.
pub(crate) static FORGET_CHAT_SUBSCRIPTIONS: Statement =
    Statement::new("DELETE FROM chat_subscriptions WHERE channel = ?1 AND chat_id = ?2");

/// Unregisters a chat.
pub(crate) static UNREGISTER_CHAT: Statement =
    Statement::new("DELETE FROM telegram_chats WHERE channel = ?1 AND chat_id = ?2");

/// Every registered chat, in registration order per channel.
pub(crate) static LIST_CHATS: Statement = Statement::new(
    "SELECT channel, chat_id, username, registered_by, registered_at FROM telegram_chats ORDER BY channel, registered_at, chat_id",
);

/// Every subscription, oldest first.
pub(crate) static LIST_SUBSCRIPTIONS: Statement = Statement::new(
    "SELECT id, channel, chat_id, kind, pattern FROM chat_subscriptions ORDER BY id",
);

/// Adds one subscription to a chat.
pub(crate) static ADD_SUBSCRIPTION: Statement = Statement::new(
    "INSERT INTO chat_subscriptions (channel, chat_id, kind, pattern, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
);

/// Removes one subscription of a chat.
pub(crate) static REMOVE_SUBSCRIPTION: Statement = Statement::new(
    "DELETE FROM chat_subscriptions WHERE channel = ?1 AND chat_id = ?2 AND id = ?3",
);

/// Saves the offset of the next update, if the lease is still ours.
pub(crate) static SAVE_UPDATE_OFFSET: Statement = Statement::new(
    "UPDATE telegram_polls SET update_offset = ?3 WHERE channel = ?1 AND holder = ?2 AND update_offset < ?3",
);

/// Gives the getUpdates lease up.
pub(crate) static RELEASE_UPDATES: Statement = Statement::new(
    "UPDATE telegram_polls SET holder = NULL, lease_until = NULL WHERE channel = ?1 AND holder = ?2",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_gets_dollar_parameters_and_the_same_words() {
        assert_eq!(
            SAVE_UPDATE_OFFSET.postgres(),
            "UPDATE telegram_polls SET update_offset = $3 WHERE channel = $1 AND holder = $2 AND update_offset < $3"
        );
        assert_eq!(
            numbered_for_postgres("a = ?12 AND b = '?'"),
            "a = $12 AND b = '?'"
        );
    }
}

//! `commands: true`: long-polls getUpdates and answers chat commands.
//!
//! One poller runs per channel across all replicas: it holds a lease row
//! (`telegram_polls`, renewed before every poll) rather than a PostgreSQL
//! advisory lock, because a lease works the same on SQLite, survives a
//! pooled connection being recycled, and expires by itself when a replica
//! dies. The row also keeps the offset of the next update, saved after each
//! update is answered, so a restart (or another replica taking over) never
//! answers a command twice. Telegram itself refuses two overlapping polls
//! for one token (409), which the lease avoids.

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::channels::telegram::TelegramBot;
use crate::chat::{escape, ChatIdentity, Command, Services, Session};

/// How long one getUpdates waits for an update.
const LONG_POLL: Duration = Duration::from_secs(25);
/// How long the lease holds without renewal (more than one long poll).
const LEASE: chrono::Duration = chrono::Duration::seconds(60);
/// How long to wait after an error, or while another replica polls.
const BACK_OFF: Duration = Duration::from_secs(3);
/// How long to wait after an error retrying cannot fix soon (bad token, a
/// webhook set on the bot): the log then says so twice a minute, not
/// every few seconds.
const BACK_OFF_PERMANENT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct UpdatePart {
    #[serde(default)]
    message: Option<MessagePart>,
    /// The bot's own membership changed: blocked, kicked, added.
    #[serde(default)]
    my_chat_member: Option<MemberPart>,
}

#[derive(Deserialize)]
struct MemberPart {
    chat: ChatPart,
    new_chat_member: NewMember,
}

#[derive(Deserialize)]
struct NewMember {
    status: String,
}

#[derive(Deserialize)]
struct MessagePart {
    chat: ChatPart,
    #[serde(default)]
    from: Option<UserPart>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ChatPart {
    id: i64,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
struct UserPart {
    id: i64,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
}

/// One channel's poller.
struct Poller {
    bot: TelegramBot,
    services: Services,
}

/// Starts the command poller of a Telegram channel with `commands: true`;
/// it gives its lease up and ends when `shutdown` fires.
pub fn spawn_poller(
    bot: TelegramBot,
    services: &Services,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let poller = Poller {
        bot,
        services: services.clone(),
    };
    tokio::spawn(poller.run(shutdown))
}

impl Poller {
    /// Polls until `shutdown`, then gives the lease up.
    async fn run(self, shutdown: CancellationToken) {
        let holder = format!("{:016x}", fastrand::u64(..));
        let bot = match self.bot.get_me().await {
            Ok(name) => Some(name.trim_start_matches('@').to_ascii_lowercase()),
            Err(e) => {
                tracing::warn!(channel = %self.bot.channel, error = %e, "getMe failed; answering commands addressed to any bot");
                None
            }
        };
        let mut leased = false;
        // Past what this process handled even if saving the offset failed:
        // a command is answered once while the process lives.
        let mut handled_below = 0i64;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let now = self.services.clock.now();
            let offset = match self
                .services
                .store
                .lease_updates(&self.bot.channel, &holder, now, now + LEASE)
                .await
            {
                Ok(Some(offset)) => {
                    if !leased {
                        tracing::info!(channel = %self.bot.channel, offset, "answering chat commands");
                        leased = true;
                    }
                    offset.max(handled_below)
                }
                Ok(None) => {
                    // Another replica polls this bot.
                    leased = false;
                    if pause(&shutdown, BACK_OFF).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(channel = %self.bot.channel, error = %e, "cannot take the getUpdates lease");
                    if pause(&shutdown, BACK_OFF).await {
                        break;
                    }
                    continue;
                }
            };
            let updates = tokio::select! {
                r = self.bot.get_updates(offset, LONG_POLL) => r,
                _ = shutdown.cancelled() => break,
            };
            let updates = match updates {
                Ok(u) => u,
                Err(e) => {
                    let wait = match e {
                        crate::deliver::DeliveryError::Permanent { .. } => BACK_OFF_PERMANENT,
                        crate::deliver::DeliveryError::Transient { retry_after, .. } => {
                            retry_after.unwrap_or(BACK_OFF).max(BACK_OFF)
                        }
                    };
                    tracing::warn!(channel = %self.bot.channel, error = %e, retry_in = ?wait, "getUpdates failed; polling again later");
                    if pause(&shutdown, wait).await {
                        break;
                    }
                    continue;
                }
            };
            for raw in updates {
                let Some(id) = raw.get("update_id").and_then(serde_json::Value::as_i64) else {
                    continue;
                };
                match serde_json::from_value::<UpdatePart>(raw) {
                    Ok(update) => self.handle(update, bot.as_deref()).await,
                    Err(e) => {
                        tracing::debug!(channel = %self.bot.channel, update = id, error = %e, "update of another shape; skipped")
                    }
                }
                handled_below = handled_below.max(id.saturating_add(1));
                if let Err(e) = self
                    .services
                    .store
                    .save_update_offset(&self.bot.channel, &holder, id.saturating_add(1))
                    .await
                {
                    tracing::error!(channel = %self.bot.channel, error = %e, "cannot save the update offset");
                }
            }
        }
        if let Err(e) = self
            .services
            .store
            .release_updates(&self.bot.channel, &holder)
            .await
        {
            tracing::warn!(channel = %self.bot.channel, error = %e, "cannot give the getUpdates lease up; it expires by itself");
        }
    }

    async fn handle(&self, update: UpdatePart, bot: Option<&str>) {
        if let Some(member) = update.my_chat_member {
            return self.membership(member).await;
        }
        let Some(message) = update.message else {
            return;
        };
        let Some(parsed) = message.text.as_deref().and_then(Command::parse) else {
            return;
        };
        // `/cmd@otherbot` in a group is for another bot.
        if let (Some(to), Some(me)) = (parsed.bot.as_deref(), bot) {
            if !to.eq_ignore_ascii_case(me) {
                return;
            }
        }
        let chat = &message.chat;
        let sender_username = message.from.as_ref().and_then(|f| f.username.clone());
        let answer = if self.bot.allowed.allows(
            chat.id,
            chat.username.as_deref(),
            sender_username.as_deref(),
        ) {
            let sender = match &message.from {
                Some(UserPart {
                    username: Some(u), ..
                }) => format!("@{u}"),
                Some(UserPart {
                    first_name: Some(n),
                    id,
                    ..
                }) => format!("{n} ({id})"),
                Some(UserPart { id, .. }) => id.to_string(),
                None => chat.id.to_string(),
            };
            let session = Session {
                services: self.services.clone(),
                channel: self.bot.channel.clone(),
                subscribers: self.bot.subscribers,
                chat: ChatIdentity {
                    chat_id: chat.id,
                    username: chat.username.clone(),
                    sender,
                    sender_username,
                    in_chat_ids: self
                        .bot
                        .allowed
                        .in_chat_ids(chat.id, chat.username.as_deref()),
                },
            };
            parsed.command.run(&session).await
        } else {
            tracing::info!(channel = %self.bot.channel, chat = chat.id, "command from a chat not allowed; refused");
            format!(
                "Sorry, I only take commands from the chats I was set up for. If this chat should be one, ask the operator to add its id <code>{}</code> to <code>allow_from</code>.",
                escape(&chat.id.to_string())
            )
        };
        self.reply(chat.id, &answer).await;
    }

    /// A user blocked the bot, or it was removed from a group: the chat
    /// cannot receive anything more, so its registration goes (sending
    /// would only fail, permanently, every time).
    async fn membership(&self, member: MemberPart) {
        if !matches!(member.new_chat_member.status.as_str(), "kicked" | "left") {
            return;
        }
        let store = &self.services.store;
        match store
            .unregister_chat(&self.bot.channel, member.chat.id)
            .await
        {
            Ok(true) => {
                tracing::info!(channel = %self.bot.channel, chat = member.chat.id, "the bot was blocked or removed; chat unregistered");
                match store.list_chats().await {
                    Ok(chats) => self.services.subscribers.replace(chats),
                    Err(e) => tracing::error!(error = %e, "cannot re-read the registered chats"),
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(channel = %self.bot.channel, error = %e, "cannot unregister a chat that blocked the bot")
            }
        }
    }

    async fn reply(&self, chat_id: i64, html: &str) {
        if let Err(e) = self.bot.send_html(&chat_id.to_string(), html).await {
            tracing::warn!(channel = %self.bot.channel, chat = chat_id, error = %e, "cannot answer a command");
        }
    }
}

/// Waits `d` unless shutdown comes first; `true` on shutdown.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

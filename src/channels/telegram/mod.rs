//! Telegram: `sendMessage` in HTML parse mode to each configured chat and
//! each subscribed one, and (with `commands: true`) a getUpdates poller
//! answering chat commands.

mod client;
mod config;
mod render;

pub(crate) use render::digest_html;

pub use config::TelegramConfig;

use crate::channels::ChannelContext;
use crate::deliver::DeliveryError;
use crate::model::notification::AlertGroup;
use crate::route::subscribers::AllowList;
use crate::template::MessageTemplate;
use client::{SendError, TelegramClient};

/// What the chat's command poller borrows of a Telegram channel with
/// `commands: true`: its bot and who may talk to it. The channel lends
/// its client; the commands themselves live in [`crate::chat`].
#[derive(Clone)]
pub struct TelegramBot {
    client: TelegramClient,
    /// The channel's name.
    pub channel: String,
    /// Whether chats may register with /start (`subscribers: true`).
    pub subscribers: bool,
    /// Who may register and give commands (`chat_ids`, `allow_from`).
    pub allowed: AllowList,
}

impl TelegramBot {
    /// `getMe`: the bot's @username.
    pub async fn get_me(&self) -> Result<String, DeliveryError> {
        self.client.get_me().await
    }

    /// `getUpdates` from `offset`, long-polling up to `wait`; each update as JSON.
    pub async fn get_updates(
        &self,
        offset: i64,
        wait: std::time::Duration,
    ) -> Result<Vec<serde_json::Value>, DeliveryError> {
        self.client.get_updates(offset, wait).await
    }

    /// Sends `html` to `chat`, split under Telegram's limit, a part whose
    /// markup is refused again as plain text; stops at the first failure.
    pub async fn send_html(&self, chat: &str, html: &str) -> Result<(), DeliveryError> {
        for part in render::split_custom(html, render::PART_BUDGET) {
            match self.client.send_message(chat, &part.html, true).await {
                Err(SendError::BadMarkup(_)) => {
                    match self.client.send_message(chat, &part.plain, false).await {
                        Ok(()) => {}
                        Err(SendError::Delivery(e)) => return Err(e),
                        Err(SendError::BadMarkup(r)) => return Err(DeliveryError::permanent(r)),
                    }
                }
                Ok(()) => {}
                Err(SendError::Delivery(e)) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A built Telegram channel.
pub(crate) struct TelegramChannel {
    client: TelegramClient,
    name: String,
    chat_ids: Vec<String>,
    subscribers: bool,
    commands: bool,
    allow_from: Vec<String>,
    /// The operator's template; the default is the block renderer in
    /// `render.rs`, which can split at alert boundaries.
    template: Option<MessageTemplate>,
    ctx: ChannelContext,
}

impl TelegramChannel {
    /// The parts to send: the operator's template if it renders, else the
    /// default (logging why).
    fn parts(&self, group: &AlertGroup) -> Vec<render::Part> {
        if let Some(d) = &group.digest {
            return render::split(&render::digest(d, self.ctx.timezone), render::PART_BUDGET);
        }
        if let Some(t) = &self.template {
            let ctx = self.ctx.message_context(group, &self.name);
            match t.render(&ctx) {
                Ok(html) if !html.trim().is_empty() => {
                    return render::split_custom(&html, render::PART_BUDGET)
                }
                Ok(_) => {
                    tracing::warn!(channel = %self.name, "template rendered nothing; sending the default message")
                }
                Err(e) => {
                    tracing::warn!(channel = %self.name, error = %e, "template failed; sending the default message")
                }
            }
        }
        render::split(&render::render(group, &self.ctx), render::PART_BUDGET)
    }

    /// Every part as it would be sent, separated by a rule.
    pub(crate) fn preview(&self, group: &AlertGroup) -> String {
        self.parts(group)
            .into_iter()
            .map(|p| p.html)
            .collect::<Vec<_>>()
            .join("\n────────\n")
    }

    pub(crate) fn destinations(&self) -> Vec<String> {
        self.chat_ids.clone()
    }

    /// Whether chats registered with /start also receive this channel.
    pub(crate) fn has_subscribers(&self) -> bool {
        self.subscribers
    }

    /// Who may register and give commands.
    pub(crate) fn allow_list(&self) -> AllowList {
        AllowList::new(&self.chat_ids, &self.allow_from)
    }

    /// The bot the chat's command poller talks through, if `commands: true`.
    pub(crate) fn command_bot(&self) -> Option<TelegramBot> {
        self.commands.then(|| TelegramBot {
            client: self.client.clone(),
            channel: self.name.clone(),
            subscribers: self.subscribers,
            allowed: self.allow_list(),
        })
    }

    /// Sends every part not yet accepted. If Telegram refuses the markup of a
    /// part, that part goes again as plain text rather than being lost.
    pub(crate) async fn send(
        &self,
        chat_id: &str,
        group: &AlertGroup,
        parts_done: u32,
    ) -> Result<(), DeliveryError> {
        let parts = self.parts(group);
        for (i, part) in parts.iter().enumerate().skip(parts_done as usize) {
            let done = i as u32;
            let result = match self.client.send_message(chat_id, &part.html, true).await {
                Err(SendError::BadMarkup(reason)) => {
                    tracing::warn!(channel_chat = chat_id, %reason, "telegram refused the HTML; sending as plain text");
                    self.client.send_message(chat_id, &part.plain, false).await
                }
                other => other,
            };
            match result {
                Ok(()) => {}
                Err(SendError::Delivery(e)) => return Err(with_progress(e, done)),
                Err(SendError::BadMarkup(reason)) => {
                    return Err(DeliveryError::Permanent {
                        reason,
                        parts_done: done,
                    })
                }
            }
        }
        Ok(())
    }

    /// Sends a backlog summary (one message, split only if it must be).
    pub(crate) async fn send_summary(
        &self,
        chat_id: &str,
        summary: &crate::model::notification::BacklogSummary,
    ) -> Result<(), DeliveryError> {
        let parts = render::split_custom(&render::summary_html(summary), render::PART_BUDGET);
        for (i, part) in parts.iter().enumerate() {
            let result = match self.client.send_message(chat_id, &part.html, true).await {
                Err(SendError::BadMarkup(_)) => {
                    self.client.send_message(chat_id, &part.plain, false).await
                }
                other => other,
            };
            match result {
                Ok(()) => {}
                Err(SendError::Delivery(e)) => return Err(with_progress(e, i as u32)),
                Err(SendError::BadMarkup(reason)) => {
                    return Err(DeliveryError::Permanent {
                        reason,
                        parts_done: i as u32,
                    })
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn healthcheck(&self) -> Result<String, DeliveryError> {
        self.client.get_me().await
    }
}

fn with_progress(e: DeliveryError, done: u32) -> DeliveryError {
    match e {
        DeliveryError::Transient {
            reason,
            retry_after,
            ..
        } => DeliveryError::Transient {
            reason,
            retry_after,
            parts_done: done,
        },
        DeliveryError::Permanent { reason, .. } => DeliveryError::Permanent {
            reason,
            parts_done: done,
        },
    }
}

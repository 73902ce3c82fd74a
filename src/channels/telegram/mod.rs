//! Telegram: `sendMessage` in HTML parse mode to each configured chat.

mod client;
mod config;
mod render;

pub use config::{TelegramConfig, DEFAULT_API_URL};

use crate::channels::{ChannelContext, DeliveryError};
use crate::notification::AlertGroup;
use client::{SendError, TelegramClient};

/// A built Telegram channel.
pub(crate) struct TelegramChannel {
    client: TelegramClient,
    chat_ids: Vec<String>,
    ctx: ChannelContext,
}

impl TelegramChannel {
    pub(crate) fn destinations(&self) -> Vec<String> {
        self.chat_ids.clone()
    }

    /// Sends every part not yet accepted. If Telegram refuses the markup of a
    /// part, that part goes again as plain text rather than being lost.
    pub(crate) async fn send(
        &self,
        chat_id: &str,
        group: &AlertGroup,
        parts_done: u32,
    ) -> Result<(), DeliveryError> {
        let parts = render::split(&render::render(group, &self.ctx), render::PART_BUDGET);
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

//! `/start`: registers the chat with the channel (when it takes
//! subscribers) and says what the bot does.

use super::{help, Session};
use crate::store::StoreError;

/// Registers the chat, then welcomes it.
pub(super) async fn run(s: &Session) -> Result<String, StoreError> {
    if !s.subscribers {
        return Ok(format!(
            "👋 Hello! I relay alerts to the chats I was set up for.\n\n{}",
            help::text(s)
        ));
    }
    let new = s
        .services
        .store
        .register_chat(
            &s.channel,
            s.chat.chat_id,
            s.chat.username.as_deref(),
            s.chat.sender_username.as_deref(),
            s.services.clock.now(),
        )
        .await?;
    s.refresh_book().await?;
    let first = if new {
        "👋 Welcome! This chat now receives the alerts routed to me. With no subscriptions you get all of them; /subscribe narrows them down."
    } else {
        "👋 Welcome back! This chat is registered already; /subscriptions shows what it gets."
    };
    Ok(format!("{first}\n\n{}", help::text(s)))
}

//! `/stop`: the opposite of `/start`: the chat is forgotten with its
//! subscriptions and receives nothing more (a chat in `chat_ids` still
//! does; that is the operator's list).

use super::Session;
use crate::store::StoreError;

/// Unregisters the chat.
pub(super) async fn run(s: &Session) -> Result<String, StoreError> {
    if let Some(why) = s.no_subscriptions_here() {
        return Ok(why);
    }
    let was = s
        .services
        .store
        .unregister_chat(&s.channel, s.chat.chat_id)
        .await?;
    s.refresh_book().await?;
    let mut out = if was {
        "👋 Done: this chat is unregistered and its subscriptions are gone. /start registers it again.".to_string()
    } else {
        "This chat was not registered. /start registers it.".to_string()
    };
    if s.chat.in_chat_ids {
        out.push_str(
            "\nNote: this chat is one of the bot's configured chats, so it still gets everything.",
        );
    }
    Ok(out)
}

//! `/subscribe <matcher or text>`: narrows what a registered chat gets.

use super::{escape, Command, Session};
use crate::route::subscribers::Pattern;
use crate::store::StoreError;

/// Most subscriptions one chat may have.
const MAX_PER_CHAT: usize = 50;

/// A checked `/subscribe`.
#[derive(Debug, Clone)]
pub struct Subscribe {
    pattern: Pattern,
}

impl PartialEq for Subscribe {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.to_stored() == other.pattern.to_stored()
    }
}

impl Subscribe {
    /// `severity="critical"` (matchers) or `Disk` (text); a bad matcher is
    /// refused here, before anything is stored.
    pub(super) fn parse(args: &str) -> Command {
        match Pattern::parse(args) {
            Ok(pattern) => Command::Subscribe(Subscribe { pattern }),
            Err(error) => Command::Invalid {
                error,
                usage: "/subscribe severity=\"critical\"  or  /subscribe Disk",
            },
        }
    }

    /// Stores the subscription for a registered chat.
    pub(super) async fn run(self, s: &Session) -> Result<String, StoreError> {
        if let Some(why) = s.no_subscriptions_here() {
            return Ok(why);
        }
        let Some(me) = s.registration().await? else {
            return Ok("This chat is not registered yet: send /start first.".into());
        };
        if me.subscriptions.len() >= MAX_PER_CHAT {
            return Ok(format!("This chat has {MAX_PER_CHAT} subscriptions already, the most it may have; /unsubscribe some first."));
        }
        let stored = self.pattern.to_stored();
        if me.subscriptions.iter().any(|(_, p)| *p == stored) {
            return Ok(
                "This chat is subscribed to that already. /subscriptions lists them.".into(),
            );
        }
        s.services
            .store
            .add_subscription(&s.channel, s.chat.chat_id, &stored, s.services.clock.now())
            .await?;
        s.refresh_book().await?;
        let what = match &self.pattern {
            Pattern::Matchers(_) => {
                format!("alerts matching <code>{}</code>", escape(stored.text()))
            }
            Pattern::Text(t) => format!(
                "alerts whose name contains <code>{}</code> (any case)",
                escape(t)
            ),
        };
        let mut out = format!(
            "✅ Subscribed (#{}): {what}. This chat now gets only the alerts its subscriptions match.",
            me.subscriptions.len() + 1
        );
        if s.chat.in_chat_ids {
            out.push_str("\nNote: this chat is one of the bot's configured chats, so it still gets everything.");
        }
        Ok(out)
    }
}

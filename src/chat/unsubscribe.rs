//! `/unsubscribe <n|all>`: drops one subscription (numbered as in
//! `/subscriptions`) or all of them.

use super::{Command, Session};
use crate::store::StoreError;

/// Which subscriptions to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsubscribe {
    /// The n-th of `/subscriptions` (from 1).
    One(usize),
    /// Every one.
    All,
}

const USAGE: &str = "/unsubscribe 2  or  /unsubscribe all";

impl Unsubscribe {
    /// `all` or a number from 1.
    pub(super) fn parse(args: &str) -> Command {
        let args = args.trim();
        if args.eq_ignore_ascii_case("all") {
            return Command::Unsubscribe(Unsubscribe::All);
        }
        match args.parse::<usize>() {
            Ok(n) if n >= 1 => Command::Unsubscribe(Unsubscribe::One(n)),
            _ => Command::Invalid {
                error: "say which: a number from /subscriptions, or all".into(),
                usage: USAGE,
            },
        }
    }

    /// Drops them.
    pub(super) async fn run(self, s: &Session) -> Result<String, StoreError> {
        if let Some(why) = s.no_subscriptions_here() {
            return Ok(why);
        }
        let Some(me) = s.registration().await? else {
            return Ok("This chat is not registered yet: send /start first.".into());
        };
        let id = match self {
            Unsubscribe::All => None,
            Unsubscribe::One(n) => match me.subscriptions.get(n - 1) {
                Some((id, _)) => Some(*id),
                None => {
                    return Ok(format!(
                    "There is no subscription #{n}: this chat has {}. /subscriptions lists them.",
                    me.subscriptions.len()
                ))
                }
            },
        };
        let gone = s
            .services
            .store
            .remove_subscriptions(&s.channel, s.chat.chat_id, id)
            .await?;
        s.refresh_book().await?;
        let left = me.subscriptions.len().saturating_sub(gone as usize);
        Ok(if left == 0 {
            "✅ Unsubscribed. No subscriptions left: this chat gets everything routed to this channel again.".into()
        } else {
            format!("✅ Unsubscribed. {left} subscription(s) left; /subscriptions lists them.")
        })
    }
}

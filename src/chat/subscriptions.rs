//! `/subscriptions`: the chat's subscriptions, numbered for `/unsubscribe`.

use super::{escape, Session};
use crate::store::{StoreError, SubscriptionPattern};

/// The numbered list, or "none".
pub(super) async fn run(s: &Session) -> Result<String, StoreError> {
    if let Some(why) = s.no_subscriptions_here() {
        return Ok(why);
    }
    let Some(me) = s.registration().await? else {
        return Ok("This chat is not registered yet: send /start first.".into());
    };
    if me.subscriptions.is_empty() {
        return Ok("Subscriptions: none — you get everything routed to this channel.".into());
    }
    let mut out = String::from("<b>Subscriptions</b> (an alert matching any of them comes here):");
    for (i, (_, p)) in me.subscriptions.iter().enumerate() {
        let line = match p {
            SubscriptionPattern::Matchers(m) => format!("<code>{}</code>", escape(m)),
            SubscriptionPattern::Text(t) => {
                format!("name contains <code>{}</code>", escape(t))
            }
        };
        out.push_str(&format!("\n{}. {line}", i + 1));
    }
    out.push_str("\n/unsubscribe &lt;n|all&gt; drops them.");
    Ok(out)
}

//! `/ack <id> [memo]`: acknowledges a firing alert, as
//! `POST /api/v1/alerts/{id}/ack` does.

use super::{escape, Command, Session};
use crate::model::alert::{Ack, AlertStatus};
use crate::store::StoreError;

/// A checked `/ack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckAlert {
    id: String,
    memo: String,
}

impl AckAlert {
    /// The id, then an optional memo.
    pub(super) fn parse(args: &str) -> Command {
        let mut it = args.trim().splitn(2, char::is_whitespace);
        match it.next().filter(|id| !id.is_empty()) {
            Some(id) => Command::Ack(AckAlert {
                id: id.to_string(),
                memo: it.next().unwrap_or("").trim().to_string(),
            }),
            None => Command::Invalid {
                error: "say which alert: its id is in /alerts".into(),
                usage: "/ack <id> [memo]",
            },
        }
    }

    /// Acknowledges it.
    pub(super) async fn run(self, s: &Session) -> Result<String, StoreError> {
        let store = &s.services.store;
        let Some(alert) = store.get_alert(&self.id).await? else {
            return Ok(format!(
                "There is no alert with id <code>{}</code>. /alerts lists the firing ones.",
                escape(&self.id)
            ));
        };
        if alert.status != AlertStatus::Firing {
            return Ok("That alert is resolved: there is nothing to acknowledge.".into());
        }
        let ack = Ack {
            by: s.chat.sender.clone(),
            memo: self.memo,
            at: s.services.clock.now(),
        };
        if !store.ack_alert(&self.id, &ack).await? {
            return Ok("That alert resolved meanwhile: there is nothing to acknowledge.".into());
        }
        tracing::info!(alert = %self.id, by = %ack.by, "alert acknowledged from chat");
        let name = alert
            .labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("?");
        let mut out = format!(
            "✅ Acknowledged <b>{}</b> as {}",
            escape(name),
            escape(&ack.by)
        );
        if !ack.memo.is_empty() {
            out.push_str(&format!(": <i>{}</i>", escape(&ack.memo)));
        }
        Ok(out)
    }
}

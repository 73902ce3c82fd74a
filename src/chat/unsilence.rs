//! `/unsilence <id>`: ends a silence now, as
//! `DELETE /api/v1/silences/{id}` does.

use super::{Command, Session};
use crate::store::StoreError;

/// A checked `/unsilence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsilence {
    id: i64,
}

impl Unsilence {
    /// The silence's number.
    pub(super) fn parse(args: &str) -> Command {
        match args.trim().trim_start_matches('#').parse::<i64>() {
            Ok(id) if id > 0 => Command::Unsilence(Unsilence { id }),
            _ => Command::Invalid {
                error: "say which silence: its number is in /silences".into(),
                usage: "/unsilence 3",
            },
        }
    }

    /// Ends it now; what it held back and still fires is notified.
    pub(super) async fn run(self, s: &Session) -> Result<String, StoreError> {
        let now = s.services.clock.now();
        match s.services.store.expire_silence(self.id, now).await? {
            Some(silence) => {
                tracing::info!(silence = self.id, by = %s.chat.sender, "silence ended from chat");
                s.services.silences.put(silence);
                Ok(format!(
                    "🔔 Silence #{} ended; what it held back and still fires is sent now.",
                    self.id
                ))
            }
            None => Ok(format!(
                "There is no active or pending silence #{}. /silences lists them.",
                self.id
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert!(matches!(
            Unsilence::parse("#3"),
            Command::Unsilence(Unsilence { id: 3 })
        ));
        assert!(matches!(Unsilence::parse("x"), Command::Invalid { .. }));
        assert!(matches!(Unsilence::parse("-1"), Command::Invalid { .. }));
    }
}

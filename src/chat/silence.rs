//! `/silence <matcher> <duration> [comment]`: a silence from the chat, as
//! `POST /api/v1/silences` makes it (the same checks; the planner's book is
//! updated at once).

use super::{escape, Command, Session};
use crate::model::matcher::parse_matchers;
use crate::model::silence::SilenceRequest;
use crate::store::StoreError;

const USAGE: &str = "/silence instance=\"db1\" 2h disk swap";

/// A checked `/silence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceCommand {
    matchers: Vec<String>,
    duration: String,
    comment: String,
}

/// Splits off the first word, keeping quoted text and `{…}` together.
fn first_word(text: &str) -> (&str, &str) {
    let (mut quoted, mut escaped, mut depth) = (false, false, 0i32);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            c if c.is_whitespace() && !quoted && depth <= 0 => {
                return (&text[..i], text[i..].trim_start());
            }
            _ => {}
        }
    }
    (text, "")
}

impl SilenceCommand {
    /// Matcher (or `{a="b", c="d"}`), duration, optional comment.
    pub(super) fn parse(args: &str) -> Command {
        let invalid = |error: String| Command::Invalid {
            error,
            usage: USAGE,
        };
        let (matcher, rest) = first_word(args.trim());
        if matcher.is_empty() {
            return invalid("say what to silence: a matcher like instance=\"db1\"".into());
        }
        let matchers = match parse_matchers(matcher) {
            Ok(m) if !m.is_empty() => m.iter().map(ToString::to_string).collect(),
            Ok(_) => return invalid("no matcher found".into()),
            Err(e) => return invalid(format!("not a valid matcher: {e}")),
        };
        let (duration, comment) = first_word(rest);
        if duration.is_empty() {
            return invalid("say for how long: 30m, 2h, 1d".into());
        }
        Command::Silence(SilenceCommand {
            matchers,
            duration: duration.to_string(),
            comment: comment.trim().to_string(),
        })
    }

    /// Creates it.
    pub(super) async fn run(self, s: &Session) -> Result<String, StoreError> {
        let now = s.services.clock.now();
        let request = SilenceRequest {
            matchers: self.matchers,
            duration: Some(self.duration),
            ends_at: None,
            comment: self.comment,
            created_by: Some(s.chat.sender.clone()),
        };
        let new = match request.check(now, &s.chat.sender) {
            Ok(n) => n,
            Err(errors) => {
                return Ok(format!(
                    "Not silenced: {}\nUsage: <code>{}</code>",
                    escape(&errors.join("; ")),
                    escape(USAGE)
                ))
            }
        };
        let silence = s.services.store.create_silence(&new, now).await?;
        tracing::info!(silence = silence.id, by = %silence.created_by, "silence created from chat");
        let view = silence.view(now);
        s.services.silences.put(silence);
        Ok(format!(
            "🔕 Silence #{} for <code>{}</code>, {}. /unsilence {} ends it.",
            view.id,
            escape(&view.matchers.join(", ")),
            remaining(view.ends_at, now),
            view.id
        ))
    }
}

/// "for 2h more" or "until deleted".
pub(super) fn remaining(
    ends_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let Some(end) = ends_at else {
        return "until deleted".into();
    };
    // Whole minutes, rounded up: "2h" just after making a 2h silence.
    let secs = ((end - now).num_seconds().max(0) + 59) / 60 * 60;
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    let text = match (d, h, m) {
        (0, 0, m) => format!("{}m", m.max(1)),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    };
    format!("for {text} more")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_braces() {
        assert_eq!(first_word("a=\"b c\" 1h x y"), ("a=\"b c\"", "1h x y"));
        assert_eq!(
            first_word("{a=\"b\", c=\"d\"} 2h"),
            ("{a=\"b\", c=\"d\"}", "2h")
        );
        assert_eq!(first_word("a=\"b\\\" c\" 1h"), ("a=\"b\\\" c\"", "1h"));
        assert_eq!(first_word(""), ("", ""));
        assert_eq!(first_word("}}} {"), ("}}}", "{"));
    }

    #[test]
    fn parse() {
        assert!(matches!(
            SilenceCommand::parse("instance=\"db1\" 2h disk swap"),
            Command::Silence(SilenceCommand { ref comment, .. }) if comment == "disk swap"
        ));
        assert!(matches!(
            SilenceCommand::parse("instance=\"db1\""),
            Command::Invalid { .. }
        ));
        assert!(matches!(
            SilenceCommand::parse("inst~~ 1h"),
            Command::Invalid { .. }
        ));
    }
}

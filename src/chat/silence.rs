//! `/silence <matcher> <duration> [comment]`, `/silences`, `/unsilence <id>`:
//! silences from the chat, as `POST`/`GET`/`DELETE /api/v1/silences` make
//! them (the same checks; the planner's book is updated at once).

use super::{escape, Command, Session};
use crate::route::matcher::parse_matchers;
use crate::route::silence::SilenceRequest;
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
fn remaining(
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

/// `/silences`: those holding now or later.
pub(super) async fn list(s: &Session) -> Result<String, StoreError> {
    let now = s.services.clock.now();
    let live = s.services.store.live_silences(now).await?;
    if live.is_empty() {
        return Ok("No silences.".into());
    }
    let mut out = String::from("🔕 <b>Silences</b>");
    for silence in live.iter().take(30) {
        let v = silence.view(now);
        out.push_str(&format!(
            "\n#{} <code>{}</code> {}",
            v.id,
            escape(&v.matchers.join(", ")),
            remaining(v.ends_at, now)
        ));
        if !v.comment.is_empty() {
            out.push_str(&format!(" · <i>{}</i>", escape(&v.comment)));
        }
        out.push_str(&format!(" · by {}", escape(&v.created_by)));
    }
    if live.len() > 30 {
        out.push_str(&format!(
            "\n<i>… and {} more on the web page</i>",
            live.len() - 30
        ));
    }
    Ok(out)
}

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
        assert!(matches!(
            Unsilence::parse("#3"),
            Command::Unsilence(Unsilence { id: 3 })
        ));
        assert!(matches!(Unsilence::parse("x"), Command::Invalid { .. }));
    }
}

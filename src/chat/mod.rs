//! Chat commands: one [`Command`] enum, parsed once from a message's text,
//! one file per command, so every chat front end (Telegram today, Slack
//! later) shares the parsing and the answers.
//!
//! A command answers with Telegram-style HTML (`<b>`, `<code>`, `<i>`),
//! every value from outside escaped. Commands of the product contract not
//! built yet answer "not supported yet"; nothing is ever left unanswered.

mod ack;
mod alerts;
mod help;
mod poller;
mod silence;
mod silences;
mod start;
mod status;
mod stop;
mod subscribe;
mod subscriptions;
mod unsilence;
mod unsubscribe;

use std::sync::Arc;

use crate::clock::Clock;
use crate::route::subscribers::SubscriberBook;
use crate::store::{ChatRecord, Store, StoreError};
pub use poller::spawn_poller;

/// Longest argument text looked at; longer input is refused, not cut.
const MAX_ARGS: usize = 1000;

/// A chat command, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `/start`: register the chat (when the channel takes subscribers).
    Start,
    /// `/help`: what the bot understands.
    Help,
    /// `/stop`: unregister the chat (the opposite of `/start`).
    Stop,
    /// `/subscribe <matcher or text>`.
    Subscribe(subscribe::Subscribe),
    /// `/unsubscribe <n|all>`.
    Unsubscribe(unsubscribe::Unsubscribe),
    /// `/subscriptions`: the numbered list.
    Subscriptions,
    /// `/alerts`: what fires now.
    Alerts,
    /// `/ack <id> [memo]`.
    Ack(ack::AckAlert),
    /// `/silence <matcher> <duration> [comment]`.
    Silence(silence::SilenceCommand),
    /// `/silences`: those holding now or later.
    Silences,
    /// `/unsilence <id>`.
    Unsilence(unsilence::Unsilence),
    /// `/status`: hosts by state now.
    Status,
    /// A command of the product contract not built yet (its name).
    NotYet(&'static str),
    /// A command nobody knows (its name as written).
    Unknown(String),
    /// A known command whose arguments do not make sense: why, and how to
    /// write it.
    Invalid {
        /// What was wrong.
        error: String,
        /// How to write the command.
        usage: &'static str,
    },
}

/// A message's command and the bot it was addressed to (`/cmd@bot`).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The command.
    pub command: Command,
    /// The `@bot` suffix, without `@`, if given.
    pub bot: Option<String>,
}

/// Commands of the product contract not built yet.
const NOT_YET: &[&str] = &["graph"];

impl Command {
    /// Parses a message. `None` unless it starts with `/`: plain chat is
    /// not a command. Never panics, whatever the input.
    pub fn parse(text: &str) -> Option<Parsed> {
        let text = text.trim_start();
        let rest = text.strip_prefix('/')?;
        let (word, args) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        let (name, bot) = match word.split_once('@') {
            Some((n, b)) => (n, Some(b.to_string())),
            None => (word, None),
        };
        if name.is_empty() {
            return None;
        }
        let name = name.to_ascii_lowercase();
        let command = if args.chars().count() > MAX_ARGS {
            Command::Invalid {
                error: format!("that is longer than the {MAX_ARGS} characters I read"),
                usage: "/help",
            }
        } else {
            match name.as_str() {
                "start" => Command::Start,
                "help" => Command::Help,
                "stop" => Command::Stop,
                "subscribe" => subscribe::Subscribe::parse(args),
                "unsubscribe" => unsubscribe::Unsubscribe::parse(args),
                "subscriptions" => Command::Subscriptions,
                "alerts" => Command::Alerts,
                "ack" => ack::AckAlert::parse(args),
                "silence" => silence::SilenceCommand::parse(args),
                "silences" => Command::Silences,
                "status" => Command::Status,
                "unsilence" => unsilence::Unsilence::parse(args),
                other => match NOT_YET.iter().find(|n| **n == other) {
                    Some(n) => Command::NotYet(n),
                    None => Command::Unknown(name.clone()),
                },
            }
        };
        Some(Parsed { command, bot })
    }

    /// Runs the command for one chat; the HTML answer.
    pub async fn run(self, s: &Session) -> String {
        let answer = match self {
            Command::Start => start::run(s).await,
            Command::Help => Ok(help::text(s)),
            Command::Stop => stop::run(s).await,
            Command::Subscribe(c) => c.run(s).await,
            Command::Unsubscribe(c) => c.run(s).await,
            Command::Subscriptions => subscriptions::run(s).await,
            Command::Alerts => alerts::run(s).await,
            Command::Ack(c) => c.run(s).await,
            Command::Silence(c) => c.run(s).await,
            Command::Silences => silences::run(s).await,
            Command::Status => status::run(s).await,
            Command::Unsilence(c) => c.run(s).await,
            Command::NotYet(name) => Ok(format!(
                "/{name} is not supported yet. /help lists what I can do."
            )),
            Command::Unknown(name) => Ok(format!(
                "I do not know /{}. /help lists what I can do.",
                escape(&name)
            )),
            Command::Invalid { error, usage } => Ok(format!(
                "{}\nUsage: <code>{}</code>",
                escape(&error),
                escape(usage)
            )),
        };
        answer.unwrap_or_else(|e| {
            tracing::error!(channel = %s.channel, error = %e, "chat command: storage failed");
            "Sorry, I cannot reach my database right now. Please try again in a minute.".into()
        })
    }
}

/// The chat a command came from.
#[derive(Debug, Clone)]
pub struct ChatIdentity {
    /// Telegram's chat id.
    pub chat_id: i64,
    /// The chat's @username (without @), if any.
    pub username: Option<String>,
    /// Who sent it, for `/ack`'s "by": `@user`, or a name, or the chat id.
    pub sender: String,
    /// The sender's @username (without @), if any.
    pub sender_username: Option<String>,
    /// Whether the chat is one of the channel's `chat_ids` (it gets
    /// everything routed there whatever it subscribes to).
    pub in_chat_ids: bool,
}

/// What a command runs against.
#[derive(Clone)]
pub struct Services {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The planner's registered chats.
    pub subscribers: SubscriberBook,
    /// The planner's silences.
    pub silences: crate::model::silence::SilenceBook,
    /// Time.
    pub clock: Clock,
    /// The running routes (`/status` sums up what they send here).
    pub planner: Arc<crate::live::Live<crate::route::planner::Planner>>,
}

/// One command's context: the services, the channel and the chat.
pub struct Session {
    /// Storage, book, clock.
    pub services: Services,
    /// The channel the bot belongs to.
    pub channel: String,
    /// Whether the channel takes subscribers (`subscribers: true`).
    pub subscribers: bool,
    /// The chat.
    pub chat: ChatIdentity,
}

impl Session {
    /// This chat's registration, if it has one.
    async fn registration(&self) -> Result<Option<ChatRecord>, StoreError> {
        Ok(self
            .services
            .store
            .list_chats()
            .await?
            .into_iter()
            .find(|c| c.channel == self.channel && c.chat_id == self.chat.chat_id))
    }

    /// Brings the planner's book up to date after a change.
    async fn refresh_book(&self) -> Result<(), StoreError> {
        let records = self.services.store.list_chats().await?;
        self.services.subscribers.replace(records);
        Ok(())
    }

    /// Why subscription commands do not apply here, if they do not.
    fn no_subscriptions_here(&self) -> Option<String> {
        if !self.subscribers {
            return Some("This bot sends its alerts to the chats it was set up for; subscriptions are off (<code>subscribers: false</code>).".into());
        }
        None
    }
}

/// Escapes text for Telegram HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmd(text: &str) -> Command {
        Command::parse(text).expect("a command").command
    }

    #[test]
    fn commands_and_bot_suffixes() {
        assert_eq!(cmd("/start"), Command::Start);
        assert_eq!(cmd("  /HELP  "), Command::Help);
        let p = Command::parse("/start@alert_bot").expect("command");
        assert_eq!(p.command, Command::Start);
        assert_eq!(p.bot.as_deref(), Some("alert_bot"));
        assert_eq!(cmd("/subscriptions@x_bot"), Command::Subscriptions);
        assert!(Command::parse("hello").is_none());
        assert!(Command::parse("/").is_none());
        assert!(Command::parse("/@bot").is_none());
        assert_eq!(cmd("/graph"), Command::NotYet("graph"));
        assert!(matches!(cmd("/silence a=\"b\" 1h"), Command::Silence(_)));
        assert_eq!(cmd("/silences"), Command::Silences);
        assert_eq!(cmd("/frobnicate"), Command::Unknown("frobnicate".into()));
        assert_eq!(cmd("/stop"), Command::Stop);
    }

    #[test]
    fn subscribe_arguments() {
        assert!(matches!(
            cmd("/subscribe severity=\"critical\""),
            Command::Subscribe(_)
        ));
        assert!(matches!(cmd("/subscribe@bot Disk"), Command::Subscribe(_)));
        assert!(matches!(cmd("/subscribe"), Command::Invalid { .. }));
        assert!(matches!(
            cmd("/subscribe severity=~\"(\""),
            Command::Invalid { .. }
        ));
    }

    #[test]
    fn unsubscribe_and_ack_arguments() {
        assert!(matches!(cmd("/unsubscribe 2"), Command::Unsubscribe(_)));
        assert!(matches!(cmd("/unsubscribe all"), Command::Unsubscribe(_)));
        assert!(matches!(cmd("/unsubscribe"), Command::Invalid { .. }));
        assert!(matches!(cmd("/unsubscribe 0"), Command::Invalid { .. }));
        assert!(matches!(cmd("/unsubscribe two"), Command::Invalid { .. }));
        assert!(matches!(cmd("/ack abc disk swapped"), Command::Ack(_)));
        assert!(matches!(cmd("/ack"), Command::Invalid { .. }));
    }

    #[test]
    fn too_long_is_refused() {
        let long = format!("/subscribe {}", "a".repeat(MAX_ARGS + 1));
        assert!(matches!(cmd(&long), Command::Invalid { .. }));
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = Command::parse(&text);
            let _ = Command::parse(&format!("/{text}"));
            let _ = Command::parse(&format!("/subscribe {text}"));
            let _ = Command::parse(&format!("/unsubscribe {text}"));
            let _ = Command::parse(&format!("/ack {text}"));
            let _ = Command::parse(&format!("/silence {text}"));
            let _ = Command::parse(&format!("/silence a=\"b\" {text}"));
            let _ = Command::parse(&format!("/unsilence {text}"));
        }
    }
}

//! `type: telegram` settings.

use secrecy::SecretString;

use crate::channels::{is_empty_list, ChannelContext};
use crate::config::yaml::{Node, Value};
use crate::config::{Map, Walker};
use crate::template::MessageTemplate;

use super::client::TelegramClient;
use super::TelegramChannel;

/// The public Bot API; tests and local Bot API servers override it.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// Settings of one Telegram channel.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// The bot's token from @BotFather.
    pub bot_token: SecretString,
    /// Bot API base URL, without `/bot<token>`.
    pub api_url: String,
    /// Chats that always receive what is routed here: numeric ids or `@channelname`.
    pub chat_ids: Vec<String>,
    /// Chats registered with /start also receive what is routed here,
    /// filtered by their /subscribe patterns.
    pub subscribers: bool,
    /// Long-poll getUpdates and answer chat commands.
    pub commands: bool,
    /// Chat ids and @usernames (besides `chat_ids`) allowed to register
    /// and give commands.
    pub allow_from: Vec<String>,
}

/// A chat id (`-1001234567890`) or `@name` from a list; `None` after
/// reporting what is wrong.
fn chat_ref(w: &mut Walker, item: &Node, path: &str, name_example: &str) -> Option<String> {
    match &item.value {
        Value::Int(id) => Some(id.to_string()),
        Value::Str(_) => {
            let s = w.string(item, path)?;
            let numeric = s.parse::<i64>().is_ok();
            let username = s.len() > 1
                && s.starts_with('@')
                && s[1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if numeric || username {
                Some(s)
            } else {
                w.error(
                    item.line,
                    path,
                    format!(
                        "`{s}` is not a chat id (a number like -1001234567890, or {name_example})"
                    ),
                );
                None
            }
        }
        other => {
            w.error(
                item.line,
                path,
                format!("expected a chat id, found {}", other.kind()),
            );
            None
        }
    }
}

impl TelegramConfig {
    /// Reads the telegram-specific keys of a `channels[i]` mapping.
    pub(crate) fn from_yaml(w: &mut Walker, m: &mut Map) -> Option<TelegramConfig> {
        let bot_token = w.secret(m, "bot_token", true);
        let api_url = match m.take("api_url") {
            Some(n) => {
                let s = w.string(n, &m.path_of("api_url"))?;
                match url::Url::parse(&s) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                        s.trim_end_matches('/').to_string()
                    }
                    _ => {
                        w.error(
                            n.line,
                            &m.path_of("api_url"),
                            format!("`{s}` is not an http(s) URL"),
                        );
                        return None;
                    }
                }
            }
            None => DEFAULT_API_URL.to_string(),
        };
        let subscribers_node = m.take("subscribers");
        let subscribers = match subscribers_node {
            Some(b) => w.bool(b, &m.path_of("subscribers")).unwrap_or(false),
            None => false,
        };
        let commands_node = m.take("commands");
        let commands = match commands_node {
            Some(b) => w.bool(b, &m.path_of("commands")).unwrap_or(false),
            None => false,
        };
        let mut chat_ids = Vec::new();
        let chat_ids_node = m.take("chat_ids");
        if let Some(list) = chat_ids_node {
            let path = m.path_of("chat_ids");
            for (i, item) in w.list(list, &path).unwrap_or_default().iter().enumerate() {
                if let Some(id) = chat_ref(w, item, &format!("{path}[{i}]"), "@channelname") {
                    chat_ids.push(id);
                }
            }
        }
        let mut allow_from = Vec::new();
        let allow_node = m.take("allow_from");
        if let Some(list) = allow_node {
            let path = m.path_of("allow_from");
            for (i, item) in w.list(list, &path).unwrap_or_default().iter().enumerate() {
                if let Some(id) = chat_ref(w, item, &format!("{path}[{i}]"), "@username") {
                    allow_from.push(id);
                }
            }
            if !commands && !allow_from.is_empty() {
                w.error(
                    list.line,
                    &path,
                    "only applies with `commands: true` (it says who may give commands)".into(),
                );
            }
        }
        let list_is_empty = |n: Option<&Node>| n.is_none_or(|n| is_empty_list(&n.value));
        let line = |n: Option<&Node>| n.map(|n| n.line).unwrap_or(0);
        if subscribers && !commands {
            w.error(
                line(subscribers_node),
                &m.path_of("subscribers"),
                "needs `commands: true`: chats register with /start, which only a bot answering commands hears".into(),
            );
        }
        if subscribers && commands && list_is_empty(chat_ids_node) && list_is_empty(allow_node) {
            w.error(
                line(allow_node).max(line(commands_node)),
                &m.path_of("allow_from"),
                "nobody could register: with no chat_ids, list the chat ids or @usernames allowed to /start".into(),
            );
        }
        if !subscribers {
            match chat_ids_node {
                Some(list) if list_is_empty(Some(list)) => w.error(
                    list.line,
                    &m.path_of("chat_ids"),
                    "needs at least one chat id (or `subscribers: true`)".into(),
                ),
                None => {
                    let line = m.take("name").map(|n| n.line).unwrap_or(0);
                    w.error(
                        line,
                        &m.path_of("chat_ids"),
                        "`chat_ids` is required (unless `subscribers: true`)".into(),
                    );
                }
                _ => {}
            }
        }
        Some(TelegramConfig {
            bot_token: bot_token?,
            api_url,
            chat_ids,
            subscribers,
            commands,
            allow_from,
        })
    }

    /// The live channel.
    pub(crate) fn build(
        &self,
        name: &str,
        http: reqwest::Client,
        template: Option<MessageTemplate>,
        ctx: ChannelContext,
    ) -> TelegramChannel {
        TelegramChannel {
            client: TelegramClient::new(http, &self.api_url, self.bot_token.clone()),
            name: name.to_string(),
            chat_ids: self.chat_ids.clone(),
            subscribers: self.subscribers,
            commands: self.commands,
            allow_from: self.allow_from.clone(),
            template,
            ctx,
        }
    }
}

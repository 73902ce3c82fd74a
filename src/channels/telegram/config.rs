//! `type: telegram` settings.

use secrecy::SecretString;

use crate::channels::{is_empty_list, is_false, ChannelContext};
use crate::config::yaml::Value;
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
        let mut chat_ids = Vec::new();
        match m.take("chat_ids") {
            Some(list) => {
                let path = m.path_of("chat_ids");
                for (i, item) in w.list(list, &path).unwrap_or_default().iter().enumerate() {
                    let ipath = format!("{path}[{i}]");
                    match &item.value {
                        Value::Int(id) => chat_ids.push(id.to_string()),
                        Value::Str(_) => {
                            if let Some(s) = w.string(item, &ipath) {
                                let numeric = s.parse::<i64>().is_ok();
                                let username = s.len() > 1
                                    && s.starts_with('@')
                                    && s[1..]
                                        .chars()
                                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                                if numeric || username {
                                    chat_ids.push(s);
                                } else {
                                    w.error(item.line, &ipath, format!("`{s}` is not a chat id (a number like -1001234567890, or @channelname)"));
                                }
                            }
                        }
                        other => w.error(
                            item.line,
                            &ipath,
                            format!("expected a chat id, found {}", other.kind()),
                        ),
                    }
                }
                if chat_ids.is_empty() && w.list(list, &path).is_some_and(|l| l.is_empty()) {
                    w.error(
                        list.line,
                        &path,
                        "needs at least one chat id (subscribers are not supported yet)".into(),
                    );
                }
            }
            None => {
                let line = m.take("name").map(|n| n.line).unwrap_or(0);
                w.error(
                    line,
                    &m.path_of("chat_ids"),
                    "`chat_ids` is required (subscribers are not supported yet)".into(),
                );
            }
        }
        m.only_default(w, "subscribers", is_false);
        m.only_default(w, "commands", is_false);
        m.only_default(w, "allow_from", is_empty_list);
        Some(TelegramConfig {
            bot_token: bot_token?,
            api_url,
            chat_ids,
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
            template,
            ctx,
        }
    }
}

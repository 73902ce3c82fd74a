//! The Bot API calls alertrelay makes, with Telegram's answers classified.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::channels::{describe_http_error, retry_after_header};
use crate::deliver::DeliveryError;

/// A thin Bot API client. The token is part of every URL, so URLs are never
/// logged and reqwest errors are stripped of them.
#[derive(Clone)]
pub(crate) struct TelegramClient {
    http: reqwest::Client,
    api_url: String,
    token: SecretString,
}

/// What a sendMessage attempt came to.
#[derive(Debug)]
pub(crate) enum SendError {
    /// 400 "can't parse entities": the HTML was refused, plain text may pass.
    BadMarkup(String),
    /// Anything else, already classified.
    Delivery(DeliveryError),
}

#[derive(Deserialize)]
struct ApiResponse {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
    #[serde(default)]
    result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

impl TelegramClient {
    pub(crate) fn new(http: reqwest::Client, api_url: &str, token: SecretString) -> Self {
        Self {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
        }
    }

    fn method_url(&self, method: &str) -> String {
        format!(
            "{}/bot{}/{}",
            self.api_url,
            self.token.expose_secret(),
            method
        )
    }

    /// `sendMessage` to one chat; `html` selects `parse_mode=HTML`.
    pub(crate) async fn send_message(
        &self,
        chat_id: &str,
        text: &str,
        html: bool,
    ) -> Result<(), SendError> {
        // Numeric ids go as numbers, @channel names as strings, as the API documents.
        let chat: serde_json::Value = match chat_id.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!(chat_id),
        };
        let mut body = json!({
            "chat_id": chat,
            "text": text,
            "link_preview_options": { "is_disabled": true },
        });
        if html {
            body["parse_mode"] = json!("HTML");
        }
        self.call("sendMessage", &body, None).await.map(|_| ())
    }

    /// `getUpdates` from `offset` (confirming everything below it),
    /// waiting up to `wait` for one to come (long polling). Each update
    /// as JSON, so one of an unknown shape cannot hide the others.
    pub(crate) async fn get_updates(
        &self,
        offset: i64,
        wait: Duration,
    ) -> Result<Vec<serde_json::Value>, DeliveryError> {
        let body = json!({
            "offset": offset,
            "limit": 100,
            "timeout": wait.as_secs(),
            "allowed_updates": ["message", "my_chat_member"],
        });
        // The answer may take the whole long poll, past the usual timeout.
        let deadline = wait + Duration::from_secs(10);
        match self.call("getUpdates", &body, Some(deadline)).await {
            Ok(serde_json::Value::Array(updates)) => Ok(updates),
            Ok(other) => Err(DeliveryError::permanent(format!(
                "telegram getUpdates: expected a list, got {}",
                other.to_string().chars().take(100).collect::<String>()
            ))),
            Err(SendError::Delivery(e)) => Err(e),
            Err(SendError::BadMarkup(r)) => Err(DeliveryError::permanent(r)),
        }
    }

    /// `getMe`: proves the token works; answers the bot's @username.
    pub(crate) async fn get_me(&self) -> Result<String, DeliveryError> {
        match self.call("getMe", &json!({}), None).await {
            Ok(result) => Ok(result
                .get("username")
                .and_then(|u| u.as_str())
                .map(|u| format!("@{u}"))
                .unwrap_or_else(|| "bot".into())),
            Err(SendError::Delivery(e)) => Err(e),
            Err(SendError::BadMarkup(r)) => Err(DeliveryError::permanent(r)),
        }
    }

    async fn call(
        &self,
        method: &str,
        body: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<serde_json::Value, SendError> {
        let mut request = self.http.post(self.method_url(method)).json(body);
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let resp = request.send().await.map_err(|e| {
            SendError::Delivery(DeliveryError::transient(
                format!(
                    "telegram {method}: {}",
                    describe_http_error(&e.without_url())
                ),
                None,
            ))
        })?;
        let status = resp.status();
        let header_retry = retry_after_header(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        let parsed: Option<ApiResponse> = serde_json::from_str(&text).ok();
        if status.is_success() {
            if let Some(r) = &parsed {
                if r.ok {
                    return Ok(r.result.clone().unwrap_or(serde_json::Value::Null));
                }
            }
        }
        let description = parsed
            .as_ref()
            .and_then(|r| r.description.clone())
            .unwrap_or_else(|| text.chars().take(200).collect());
        let reason = format!("telegram {method}: HTTP {}: {description}", status.as_u16());
        let retry_after = parsed
            .as_ref()
            .and_then(|r| r.parameters.as_ref())
            .and_then(|p| p.retry_after)
            .map(Duration::from_secs)
            .or(header_retry);
        let err = match status.as_u16() {
            429 => DeliveryError::transient(reason, retry_after.or(Some(Duration::from_secs(1)))),
            400 if description.contains("can't parse entities") => {
                return Err(SendError::BadMarkup(reason))
            }
            // A group upgraded to a supergroup answers 400 with migrate_to_chat_id;
            // bad token 401, bot kicked 403, unknown chat 400/404: config fixes these, retries do not.
            400..=499 => DeliveryError::permanent(reason),
            _ => DeliveryError::transient(reason, retry_after),
        };
        Err(SendError::Delivery(err))
    }
}

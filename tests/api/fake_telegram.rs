//! A fake Telegram Bot API server for alertrelay's tests.
//!
//! [`FakeTelegram::start`] binds `127.0.0.1:0` and serves, on a tokio task,
//! `POST` (or `GET`) `/bot<token>/sendMessage`, `/bot<token>/getMe` and
//! `/bot<token>/getUpdates`. Point alertrelay's `api_url:` at
//! [`FakeTelegram::api_url`]; a test plays a user with
//! [`FakeTelegram::user_says`].
//!
//! getUpdates, as the Bot API server does it: `offset` confirms (drops)
//! every update below it (a negative offset keeps only the last -offset);
//! `limit` and `timeout` are clamped to 1..=100 and 0..=50; with nothing
//! queued the request waits up to `timeout` seconds and answers as soon as
//! an update is queued, else `result: []`. A second getUpdates while one
//! waits terminates the waiting one with 409 `Conflict: terminated by other
//! getUpdates request; make sure that only one bot instance is running`.
//!
//! It is meant to refuse everything the real Bot API refuses, with the same
//! HTTP status and `description`, so that a test passing here does not fail
//! against Telegram. The rules below were ported from the Bot API server
//! (tdlib/telegram-bot-api: `Client.cpp`, `HttpReader.cpp`) and from TDLib
//! (`MessageEntity.cpp`: `parse_html`, `fix_formatted_text`; `misc.cpp`:
//! `clean_input_string`); the HTML parser was checked against TDLib 1.8's own
//! `parseTextEntities`.
//!
//! Request handling:
//! - Path `/bot<token>/<method>`; the method name is case-insensitive, as in
//!   the Bot API. Another path: 404 `Not Found`. A token other than the
//!   fake's: 401 `Unauthorized`. A method other than sendMessage/getMe/getUpdates: 404.
//! - Parameters come from the query string and from the body: JSON
//!   (`application/json`), `application/x-www-form-urlencoded` or
//!   `multipart/form-data`, chosen by Content-Type like the Bot API does. A
//!   body of any other type, or JSON that does not parse, is ignored (the
//!   Bot API ignores it too, which then surfaces as "message text is empty").
//!   A JSON value that is not a string is seen as its JSON text, exactly as
//!   the Bot API does: `"parse_mode": null` is the parse mode `null`.
//!
//! sendMessage checks, in the Bot API's order. Every failure is HTTP 400 with
//! a description starting `Bad Request: `; the first check that fails wins.
//! 1. parameters must be UTF-8: `strings must be encoded in UTF-8`;
//! 2. `link_preview_options`, when given: a JSON object with Boolean flags;
//! 3. `text` missing or empty: `message text is empty`; over 32768 bytes:
//!    `text is too long`;
//! 4. `parse_mode` (case-insensitive) must be absent, empty, `none`, `HTML`,
//!    `Markdown` or `MarkdownV2`, else `unsupported parse_mode` (which is
//!    what a JSON `null` gets). `HTML` is parsed exactly as Telegram does
//!    (see [`parse_telegram_html`]), failing with `can't parse entities: ...`.
//!    NOTE: Markdown and MarkdownV2 are accepted but NOT validated here;
//! 5. `reply_parameters` / `reply_to_message_id`, and `reply_markup`
//!    (`object expected as reply markup` for a JSON `null`, field types,
//!    `Text buttons are unallowed in the inline keyboard`, ...), with the Bot
//!    API's own messages;
//! 6. `chat_id` missing or empty: `chat_id is empty`; not an integer nor a
//!    valid `@username`, 0, or listed by [`FakeTelegram::set_unknown_chats`]:
//!    `chat not found`; a reply to a message this chat does not have:
//!    `message to be replied not found` (unless allow_sending_without_reply);
//! 7. what Telegram itself checks when sending: the text is cleaned
//!    (control characters become spaces; `\r` and a few invisible characters
//!    go; spaces and newlines are trimmed at both ends), then nothing left is
//!    `text must be non-empty`, more than 4096 UTF-16 code units left is
//!    `message is too long`, and a button's `callback_data` over 64 bytes is
//!    `BUTTON_DATA_INVALID`.
//!
//! Scripted trouble: [`FakeFailure`] via [`FakeTelegram::fail_next`], and a
//! slow API via [`FakeTelegram::set_delay`].
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Telegram's limit for a message text, in UTF-16 code units after entity parsing.
pub const MAX_MESSAGE_UTF16: usize = 4096;

/// The Bot API refuses a `text` parameter longer than this many bytes
/// (`text is too long`) before looking at it.
const MAX_TEXT_BYTES: usize = 1 << 15;

/// TDLib parses at most this many characters (`can't parse entities: Text is too long`).
const MAX_PARSED_CHARS: usize = 65536;

/// How long a [`FakeFailure::Hang`] request stays unanswered.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// Largest request body the fake reads (the real limit is higher than any alert).
const MAX_BODY_BYTES: usize = 16 << 20;

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// The chat as posted; a numeric id in canonical form (`"-100123"`).
    pub chat_id: String,
    /// `text` exactly as posted.
    pub text: String,
    /// What Telegram would show: entities decoded, tags removed, cleaned and trimmed.
    pub plain_text: String,
    /// `parse_mode` as posted, if the parameter was present.
    pub parse_mode: Option<String>,
    pub message_id: i64,
    /// When the fake accepted it.
    pub at: std::time::Instant,
    /// Every parameter as the Bot API saw it (JSON non-strings as JSON text),
    /// e.g. `reply_markup`, `disable_notification`, `link_preview_options`.
    pub params: BTreeMap<String, String>,
}

/// Trouble to answer the next sendMessage requests with (see [`FakeTelegram::fail_next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeFailure {
    /// HTTP 429 with `parameters.retry_after`, like Telegram's flood control.
    TooManyRequests { retry_after: u64 },
    /// HTTP 502 with an HTML page, like the proxy in front of the Bot API.
    ServerError,
    /// No answer for an hour: the client's timeout has to fire.
    Hang,
    /// HTTP 400 "can't parse entities", as if Telegram's HTML parser changed
    /// under us; the client is expected to fall back to plain text.
    RefuseMarkup,
    /// Answer normally: queued before a failure, it scripts "the first k
    /// requests pass, then this one fails".
    Accept,
}

/// Handle to a running fake. Clones share the server; it stops when the last
/// clone is dropped (or the test's runtime ends).
#[derive(Clone)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
    _server: Arc<ServerGuard>,
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("FakeTelegram")
            .field("api_url", &self.api_url())
            .field("messages", &state.messages.len())
            .field("rejections", &state.rejections.len())
            .field("send_requests", &state.send_requests)
            .finish()
    }
}

struct ServerGuard(tokio::task::JoinHandle<()>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    token: String,
    addr: SocketAddr,
    state: Mutex<FakeState>,
    changed: Notify,
    /// Woken when an update is queued or a newer getUpdates arrives.
    updates_changed: Notify,
}

#[derive(Default)]
struct FakeState {
    messages: Vec<SentMessage>,
    send_requests: usize,
    rejections: Vec<(u16, String)>,
    failures: VecDeque<FakeFailure>,
    delay: Duration,
    unknown_chats: HashSet<String>,
    /// (chat key, message id) a reply may point at.
    known_messages: HashSet<(String, i64)>,
    last_message_id: i64,
    /// Valid sends being answered right now, per chat, and the most seen at once.
    in_flight: HashMap<String, usize>,
    max_in_flight_per_chat: usize,
    /// Updates not yet confirmed, oldest first.
    updates: VecDeque<Value>,
    last_update_id: i64,
    /// Bumped by every getUpdates; a waiting one that sees it change was
    /// terminated by a newer one.
    poll_generation: u64,
    get_updates_calls: usize,
    conflicts: usize,
}

/// Counts a send to a chat as being answered until dropped (also when the
/// client hangs up first).
struct InFlight<'a> {
    shared: &'a Shared,
    chat: String,
}

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared, chat: &str) -> Self {
        let mut state = shared.lock();
        let now = state.in_flight.entry(chat.to_string()).or_default();
        *now += 1;
        let now = *now;
        state.max_in_flight_per_chat = state.max_in_flight_per_chat.max(now);
        Self {
            shared,
            chat: chat.to_string(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.shared.lock().in_flight.get_mut(&self.chat) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A panicking test thread must not take the server down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reject(&self, status: u16, description: &str) {
        self.lock()
            .rejections
            .push((status, description.to_string()));
        self.changed.notify_waiters();
    }
}

impl FakeTelegram {
    /// Starts a fake that accepts `token` on `127.0.0.1` and a free port.
    pub async fn start(token: &str) -> FakeTelegram {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("FakeTelegram: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("FakeTelegram: local address");
        let shared = Arc::new(Shared {
            token: token.to_string(),
            addr,
            state: Mutex::new(FakeState::default()),
            changed: Notify::new(),
            updates_changed: Notify::new(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            // Only fails if the listener does; the test then sees connection errors.
            let _ = axum::serve(listener, app).await;
        });
        FakeTelegram {
            shared,
            _server: Arc::new(ServerGuard(server)),
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash): the
    /// value for alertrelay's `api_url:`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    /// Messages accepted so far, in order.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.shared.lock().messages.clone()
    }

    /// Messages accepted for one chat (`"-100123"`, `"@channel"`; usernames
    /// compare case-insensitively, numeric ids by value).
    pub fn messages_to(&self, chat_id: &str) -> Vec<SentMessage> {
        let want = chat_key(chat_id);
        self.shared
            .lock()
            .messages
            .iter()
            .filter(|m| chat_key(&m.chat_id) == want)
            .cloned()
            .collect()
    }

    /// sendMessage requests received, whatever became of them (wrong token,
    /// scripted failure, rejected, hanging or accepted).
    pub fn request_count(&self) -> usize {
        self.shared.lock().send_requests
    }

    /// `(HTTP status, description)` of every request answered with an error,
    /// in order, including scripted 429/502 (a hanging request is not
    /// answered, so it is not listed).
    pub fn rejections(&self) -> Vec<(u16, String)> {
        self.shared.lock().rejections.clone()
    }

    /// Answers the next `n` sendMessage requests (with the right token) with
    /// `failure` instead of processing them; queued after earlier scripts.
    pub fn fail_next(&self, n: usize, failure: FakeFailure) {
        let mut state = self.shared.lock();
        state.failures.extend(std::iter::repeat_n(failure, n));
    }

    /// The most valid sendMessage requests to one chat that were being
    /// answered at the same time (the real API takes them; the order a chat
    /// shows them in is then anyone's guess).
    pub fn max_in_flight_per_chat(&self) -> usize {
        self.shared.lock().max_in_flight_per_chat
    }

    /// Waits this long before answering a valid sendMessage (zero: no wait).
    /// The message is recorded when the answer goes out, so a client that
    /// gives up first may leave nothing recorded.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Chats that answer `Bad Request: chat not found`; replaces the previous set.
    pub fn set_unknown_chats(&self, ids: &[&str]) {
        self.shared.lock().unknown_chats = ids.iter().map(|id| chat_key(id)).collect();
    }

    /// Declares that message `message_id` exists in `chat_id` (say, a user's
    /// command), so that a reply to it is accepted. Messages the fake
    /// accepted are known already; a reply to any other message is refused
    /// with `message to be replied not found`, as Telegram does.
    pub fn add_existing_message(&self, chat_id: &str, message_id: i64) {
        self.shared
            .lock()
            .known_messages
            .insert((chat_key(chat_id), message_id));
    }

    /// A user writes `text` in a chat (private when `chat_id` > 0, else a
    /// group), as Telegram would deliver it to getUpdates: a command gets
    /// its `bot_command` entity. `username` is the sender's (and, in a
    /// private chat, the chat's). Returns the update id.
    pub fn user_says(&self, chat_id: i64, username: Option<&str>, text: &str) -> i64 {
        let mut state = self.shared.lock();
        state.last_update_id += 1;
        state.last_message_id += 1;
        let (update_id, message_id) = (state.last_update_id, state.last_message_id);
        state
            .known_messages
            .insert((chat_key(&chat_id.to_string()), message_id));
        let user_id = if chat_id > 0 { chat_id } else { 7_000_000 };
        let mut from = json!({"id": user_id, "is_bot": false, "first_name": "Test"});
        let mut chat = if chat_id > 0 {
            json!({"id": chat_id, "type": "private", "first_name": "Test"})
        } else {
            json!({"id": chat_id, "type": "supergroup", "title": "Test group"})
        };
        if let Some(u) = username {
            from["username"] = json!(u);
            if chat_id > 0 {
                chat["username"] = json!(u);
            }
        }
        let mut message = json!({
            "message_id": message_id,
            "from": from,
            "chat": chat,
            "date": unix_now(),
            "text": text,
        });
        if text.starts_with('/') {
            let word = text.split_whitespace().next().unwrap_or("");
            message["entities"] = json!([{
                "type": "bot_command",
                "offset": 0,
                "length": word.encode_utf16().count(),
            }]);
        }
        state
            .updates
            .push_back(json!({"update_id": update_id, "message": message}));
        drop(state);
        self.shared.updates_changed.notify_waiters();
        update_id
    }

    /// The user of private chat `chat_id` blocks the bot (a group removing
    /// it looks the same, with status `left`): Telegram sends the bot a
    /// `my_chat_member` update. Returns the update id.
    pub fn user_blocks_bot(&self, chat_id: i64) -> i64 {
        let mut state = self.shared.lock();
        state.last_update_id += 1;
        let update_id = state.last_update_id;
        let user = json!({"id": chat_id, "is_bot": false, "first_name": "Test"});
        state.updates.push_back(json!({
            "update_id": update_id,
            "my_chat_member": {
                "chat": {"id": chat_id, "type": "private", "first_name": "Test"},
                "from": user,
                "date": unix_now(),
                "old_chat_member": {"user": bot_user(), "status": "member"},
                "new_chat_member": {"user": bot_user(), "status": "kicked", "until_date": 0},
            }
        }));
        drop(state);
        self.shared.updates_changed.notify_waiters();
        update_id
    }

    /// Updates queued and not yet confirmed by an offset.
    pub fn pending_updates(&self) -> usize {
        self.shared.lock().updates.len()
    }

    /// getUpdates requests received.
    pub fn get_updates_calls(&self) -> usize {
        self.shared.lock().get_updates_calls
    }

    /// getUpdates requests terminated by a newer one (409).
    pub fn conflicts(&self) -> usize {
        self.shared.lock().conflicts
    }

    /// Waits until the queued updates are all confirmed (the bot read them
    /// and asked past them); panics after `timeout`.
    pub async fn wait_updates_confirmed(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.pending_updates() > 0 {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "FakeTelegram: {} update(s) never confirmed",
                    self.pending_updates()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns all accepted messages once there are at least `n`; panics
    /// after `timeout` with what did arrive and what was rejected.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<SentMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.messages.len() >= n {
                    return state.messages.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let failure = {
                    let state = self.shared.lock();
                    if state.messages.len() >= n {
                        return state.messages.clone();
                    }
                    describe_wait_failure(&state, n, timeout)
                };
                panic!("{failure}");
            }
        }
    }
}

fn describe_wait_failure(state: &FakeState, n: usize, timeout: Duration) -> String {
    let mut out = format!(
        "FakeTelegram: waited {timeout:?} for {n} message(s) but {} arrived \
         ({} sendMessage request(s) in all)\n",
        state.messages.len(),
        state.send_requests
    );
    out.push_str("accepted:\n");
    if state.messages.is_empty() {
        out.push_str("  (none)\n");
    }
    for m in &state.messages {
        let _ = writeln!(
            out,
            "  #{} to {}: {:?}",
            m.message_id, m.chat_id, m.plain_text
        );
    }
    out.push_str("rejected:\n");
    if state.rejections.is_empty() {
        out.push_str("  (none)\n");
    }
    for (status, description) in &state.rejections {
        let _ = writeln!(out, "  {status} {description}");
    }
    if !state.failures.is_empty() {
        let _ = writeln!(out, "scripted failures not yet used: {:?}", state.failures);
    }
    out
}

// ---------------------------------------------------------------- HTTP side

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(rest) = uri.path().strip_prefix("/bot") else {
        return api_error(&shared, 404, "Not Found");
    };
    let (token, api_method) = rest.split_once('/').unwrap_or((rest, ""));
    let token = String::from_utf8_lossy(&percent_decode(token.as_bytes(), false)).into_owned();
    let api_method =
        String::from_utf8_lossy(&percent_decode(api_method.as_bytes(), false)).to_ascii_lowercase();
    let is_send = api_method == "sendmessage";
    if is_send {
        shared.lock().send_requests += 1;
    }
    if method != Method::GET && method != Method::POST {
        return api_error(&shared, 501, "Not Implemented");
    }
    if token != shared.token {
        return api_error(&shared, 401, "Unauthorized");
    }
    match api_method.as_str() {
        "getme" => json_response(StatusCode::OK, json!({"ok": true, "result": bot_user()})),
        "getupdates" => {
            let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
                Ok(body) => body,
                Err(_) => return api_error(&shared, 413, "Request Entity Too Large"),
            };
            let params = request_params(&uri, &headers, &body);
            get_updates(&shared, params).await
        }
        "sendmessage" => {
            let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
                Ok(body) => body,
                Err(_) => {
                    return api_error(&shared, 413, "Request Entity Too Large");
                }
            };
            let params = request_params(&uri, &headers, &body);
            send_message(&shared, params).await
        }
        _ => api_error(&shared, 404, "Not Found"),
    }
}

fn bot_user() -> Value {
    json!({"id": 1, "is_bot": true, "first_name": "fake", "username": "fake_bot"})
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// Records and answers an error the way the Bot API shapes them.
fn api_error(shared: &Shared, status: u16, description: &str) -> Response {
    shared.reject(status, description);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(
        code,
        json!({"ok": false, "error_code": status, "description": description}),
    )
}

async fn send_message(shared: &Shared, params: Vec<(String, Vec<u8>)>) -> Response {
    let failure = shared.lock().failures.pop_front();
    match failure {
        None | Some(FakeFailure::Accept) => {}
        Some(FakeFailure::TooManyRequests { retry_after }) => {
            let description = format!("Too Many Requests: retry after {retry_after}");
            shared.reject(429, &description);
            return json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({
                    "ok": false,
                    "error_code": 429,
                    "description": description,
                    "parameters": {"retry_after": retry_after},
                }),
            );
        }
        Some(FakeFailure::ServerError) => {
            shared.reject(502, "Bad Gateway");
            return (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                 <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n\
                 </body>\r\n</html>\r\n",
            )
                .into_response();
        }
        Some(FakeFailure::RefuseMarkup) => {
            return api_error(
                shared,
                400,
                "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
            );
        }
        Some(FakeFailure::Hang) => {
            shared.changed.notify_waiters();
            tokio::time::sleep(HANG_FOR).await;
            return (StatusCode::GATEWAY_TIMEOUT, "fake Telegram hung up").into_response();
        }
    }

    let accepted = {
        let state = shared.lock();
        check_send_message(&params, &state.unknown_chats, &state.known_messages)
    };
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(description) => return api_error(shared, 400, &description),
    };

    let _answering = InFlight::enter(shared, &accepted.chat_key);
    let delay = shared.lock().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let message_id = {
        let mut state = shared.lock();
        state.last_message_id += 1;
        let message_id = state.last_message_id;
        state
            .known_messages
            .insert((accepted.chat_key.clone(), message_id));
        state.messages.push(SentMessage {
            chat_id: accepted.chat_id.clone(),
            text: accepted.text,
            plain_text: accepted.plain_text.clone(),
            parse_mode: accepted.parse_mode,
            message_id,
            at: std::time::Instant::now(),
            params: accepted.params,
        });
        message_id
    };
    shared.changed.notify_waiters();
    json_response(
        StatusCode::OK,
        json!({
            "ok": true,
            "result": {
                "message_id": message_id,
                "from": bot_user(),
                "chat": accepted.chat,
                "date": unix_now(),
                "text": accepted.plain_text,
            }
        }),
    )
}

/// Long-polls for updates like the Bot API (see the module docs).
async fn get_updates(shared: &Shared, params: Vec<(String, Vec<u8>)>) -> Response {
    let int = |name: &str, default: i64| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| leading_integer(String::from_utf8_lossy(v).trim()))
            .unwrap_or(default)
    };
    let offset = int("offset", 0);
    let limit = int("limit", 100).clamp(1, 100) as usize;
    let timeout = int("timeout", 0).clamp(0, 50) as u64;
    let generation = {
        let mut state = shared.lock();
        state.get_updates_calls += 1;
        state.poll_generation += 1;
        if offset > 0 {
            state
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        } else if offset < 0 {
            let keep = offset.unsigned_abs() as usize;
            while state.updates.len() > keep {
                state.updates.pop_front();
            }
        }
        state.poll_generation
    };
    // Terminates an older request still waiting.
    shared.updates_changed.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = shared.updates_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut state = shared.lock();
            if state.poll_generation != generation {
                state.conflicts += 1;
                drop(state);
                let description = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";
                // Not in `rejections`: the terminated client may be gone
                // (a stopped app); `conflicts()` counts these.
                return json_response(
                    StatusCode::CONFLICT,
                    json!({"ok": false, "error_code": 409, "description": description}),
                );
            }
            if !state.updates.is_empty() {
                let result: Vec<Value> = state.updates.iter().take(limit).cloned().collect();
                return json_response(StatusCode::OK, json!({"ok": true, "result": result}));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return json_response(StatusCode::OK, json!({"ok": true, "result": []}));
        }
    }
}

// The message date is informational; no test should depend on it.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A sendMessage that passed every check.
struct Accepted {
    chat_key: String,
    chat_id: String,
    chat: Value,
    text: String,
    plain_text: String,
    parse_mode: Option<String>,
    params: BTreeMap<String, String>,
}

/// `Bad Request: ` plus a TDLib/Bot API message, whose first letter the Bot
/// API lower-cases unless the message is an ERROR_CODE (`fail_query_with_error`).
fn bad_request(message: &str) -> String {
    let bytes = message.as_bytes();
    if bytes.len() >= 2 && (bytes[1] == b'_' || bytes[1].is_ascii_uppercase()) {
        return format!("Bad Request: {message}");
    }
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => format!(
            "Bad Request: {}{}",
            first.to_ascii_lowercase(),
            chars.as_str()
        ),
        None => "Bad Request".to_string(),
    }
}

/// The Bot API's checks for sendMessage, in its order. `Err` is the description.
fn check_send_message(
    raw: &[(String, Vec<u8>)],
    unknown_chats: &HashSet<String>,
    existing: &HashSet<(String, i64)>,
) -> Result<Accepted, String> {
    let mut params: Vec<(&str, String)> = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        match String::from_utf8(value.clone()) {
            Ok(value) => params.push((name.as_str(), value)),
            Err(_) => return Err(bad_request("Strings must be encoded in UTF-8")),
        }
    }
    // Like the Bot API, the first occurrence of a parameter wins (query string first).
    let arg = |name: &str| -> Option<&str> {
        params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };

    // Client::get_input_message_text
    if let Some(options) = arg("link_preview_options").filter(|v| !v.is_empty()) {
        check_link_preview_options(options).map_err(|e| bad_request(&e))?;
    }
    let text = arg("text").unwrap_or("");
    if text.is_empty() {
        return Err(bad_request("Message text is empty"));
    }
    // Client::get_formatted_text
    if text.len() > MAX_TEXT_BYTES {
        return Err(bad_request("Text is too long"));
    }
    let parse_mode = arg("parse_mode");
    let (parsed, first_entity) = match parse_mode.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("none") => (text.to_string(), None),
        Some("html") => {
            let parsed = parse_html(text.as_bytes()).map_err(|e| bad_request(&e))?;
            (parsed.text, parsed.first_entity)
        }
        // Accepted like Telegram does, but their syntax is not checked here.
        Some("markdown") | Some("markdownv2") => (text.to_string(), None),
        Some(_) => return Err(bad_request("Unsupported parse_mode")),
    };

    // Client::do_send_message
    let reply = get_reply_parameters(&arg).map_err(|e| bad_request(&e))?;
    let callback_data_too_long = match arg("reply_markup") {
        None | Some("") => false,
        Some(markup) => check_reply_markup(markup).map_err(|e| bad_request(&e))?,
    };

    // Client::check_reply_parameters / check_chat
    let chat_id = arg("chat_id").unwrap_or("");
    if chat_id.is_empty() {
        return Err(bad_request("chat_id is empty"));
    }
    let chat = resolve_chat(chat_id).ok_or_else(|| bad_request("chat not found"))?;
    if unknown_chats.contains(&chat.key) {
        return Err(bad_request("chat not found"));
    }
    if let Some(reply) = reply {
        let known = existing.contains(&(chat.key.clone(), reply.message_id));
        if reply.other_chat.is_none() && !known && !reply.allow_sending_without_reply {
            return Err(bad_request("message to be replied not found"));
        }
    }

    // TDLib's sendMessage and Telegram's server
    let plain_text = clean_and_trim(&parsed, first_entity)
        .ok_or_else(|| bad_request("Text must be non-empty"))?;
    if plain_text.encode_utf16().count() > MAX_MESSAGE_UTF16 {
        return Err(bad_request("message is too long"));
    }
    if callback_data_too_long {
        return Err(bad_request("BUTTON_DATA_INVALID"));
    }

    let mut all = BTreeMap::new();
    for (name, value) in &params {
        all.entry(name.to_string()).or_insert_with(|| value.clone());
    }
    Ok(Accepted {
        chat_key: chat.key,
        chat_id: chat.display,
        chat: chat.json,
        text: text.to_string(),
        plain_text,
        parse_mode: parse_mode.map(str::to_string),
        params: all,
    })
}

// TDLib's JsonObject accessors, with their error messages.

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

type JsonObject = serde_json::Map<String, Value>;

fn optional_bool(object: &JsonObject, name: &str) -> Result<bool, String> {
    match object.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("Field \"{name}\" must be of type Boolean")),
    }
}

fn optional_string(object: &JsonObject, name: &str) -> Result<String, String> {
    match object.get(name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!("Field \"{name}\" must be of type String")),
    }
}

fn required_string(object: &JsonObject, name: &str) -> Result<String, String> {
    if !object.contains_key(name) {
        return Err(format!("Can't find field \"{name}\""));
    }
    optional_string(object, name)
}

fn optional_int(object: &JsonObject, name: &str) -> Result<i64, String> {
    let parsed = match object.get(name) {
        None => return Ok(0),
        Some(Value::String(s)) => s.parse::<i32>().ok(),
        Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Some(_) => return Err(format!("Field \"{name}\" must be a Number")),
    };
    parsed
        .map(i64::from)
        .ok_or_else(|| format!("Field \"{name}\" must be a valid Number"))
}

fn required_int(object: &JsonObject, name: &str) -> Result<i64, String> {
    if !object.contains_key(name) {
        return Err(format!("Can't find field \"{name}\""));
    }
    optional_int(object, name)
}

/// `extract_optional_field` / `extract_required_field` with a type.
fn typed_field<'a>(
    object: &'a JsonObject,
    name: &str,
    type_name: &str,
    required: bool,
) -> Result<Option<&'a Value>, String> {
    match object.get(name) {
        None if required => Err(format!("Can't find field \"{name}\"")),
        None => Ok(None),
        Some(value) if json_type_name(value) == type_name => Ok(Some(value)),
        Some(_) => Err(format!("Field \"{name}\" must be of type {type_name}")),
    }
}

fn check_link_preview_options(options: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(options)
        .map_err(|_| "Can't parse link preview options JSON object".to_string())?;
    let object = value
        .as_object()
        .ok_or("Object expected as link preview options")?;
    optional_bool(object, "is_disabled")?;
    optional_string(object, "url")?;
    optional_bool(object, "prefer_small_media")?;
    optional_bool(object, "prefer_large_media")?;
    optional_bool(object, "show_above_text")?;
    Ok(())
}

/// A reply the message asks for.
struct Reply {
    message_id: i64,
    allow_sending_without_reply: bool,
    /// `reply_parameters.chat_id`, a reply to another chat (not checked here).
    other_chat: Option<String>,
}

/// `Client::get_reply_parameters`, including the legacy `reply_to_message_id`.
fn get_reply_parameters<'a>(
    arg: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<Reply>, String> {
    let Some(parameters) = arg("reply_parameters") else {
        let message_id = leading_integer(arg("reply_to_message_id").unwrap_or("")).unwrap_or(0);
        let allow = to_bool(arg("allow_sending_without_reply").unwrap_or(""));
        return Ok((message_id > 0).then_some(Reply {
            message_id,
            allow_sending_without_reply: allow,
            other_chat: None,
        }));
    };
    if parameters.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(parameters)
        .map_err(|_| "Can't parse reply parameters JSON object".to_string())?;
    let object = value
        .as_object()
        .ok_or("Object expected as reply parameters")?;
    if object.is_empty() {
        return Ok(None);
    }
    let chat_id = optional_string(object, "chat_id")?;
    let message_id = required_int(object, "message_id")?;
    let allow_sending_without_reply = optional_bool(object, "allow_sending_without_reply")?;
    optional_string(object, "quote")?;
    optional_string(object, "quote_parse_mode")?;
    optional_int(object, "quote_position")?;
    Ok((message_id > 0).then_some(Reply {
        message_id,
        allow_sending_without_reply,
        other_chat: (!chat_id.is_empty()).then_some(chat_id),
    }))
}

/// The Bot API's `to_bool`.
fn to_bool(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "1"
    )
}

/// `Client::get_reply_markup`. `Ok(true)` when some `callback_data` is longer
/// than Telegram's 64 bytes, which Telegram's server refuses later on, as
/// BUTTON_DATA_INVALID.
fn check_reply_markup(markup: &str) -> Result<bool, String> {
    let value: Value = serde_json::from_str(markup)
        .map_err(|_| "Can't parse reply keyboard markup JSON object".to_string())?;
    let object = value.as_object().ok_or("Object expected as reply markup")?;

    let mut has_rows = false;
    if let Some(Value::Array(rows)) = typed_field(object, "keyboard", "Array", false)? {
        for row in rows {
            let row = row
                .as_array()
                .ok_or("Field \"keyboard\" must be an Array of Arrays")?;
            for button in row {
                check_keyboard_button(button)
                    .map_err(|e| format!("Can't parse keyboard button: {e}"))?;
            }
            has_rows = true;
        }
    }

    let mut too_long = false;
    if let Some(Value::Array(rows)) = typed_field(object, "inline_keyboard", "Array", false)? {
        for row in rows {
            let row = row.as_array().ok_or(
                "Field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays",
            )?;
            for button in row {
                too_long |= check_inline_keyboard_button(button)
                    .map_err(|e| format!("Can't parse inline keyboard button: {e}"))?;
            }
        }
    }

    for flag in [
        "hide_keyboard",
        "remove_keyboard",
        "personal_keyboard",
        "selective",
        "force_reply_keyboard",
        "force_reply",
    ] {
        optional_bool(object, flag)?;
    }
    optional_string(object, "input_field_placeholder")?;
    if has_rows {
        for flag in ["resize_keyboard", "one_time_keyboard", "is_persistent"] {
            optional_bool(object, flag)?;
        }
    }
    Ok(too_long)
}

/// `Client::get_keyboard_button` (the common part).
fn check_keyboard_button(button: &Value) -> Result<(), String> {
    let object = match button {
        Value::String(_) => return Ok(()),
        Value::Object(object) => object,
        _ => return Err("KeyboardButton must be a String or an Object".into()),
    };
    required_string(object, "text")?;
    if optional_bool(object, "request_phone_number")? | optional_bool(object, "request_contact")? {
        return Ok(());
    }
    if optional_bool(object, "request_location")? {
        return Ok(());
    }
    if object.contains_key("request_poll") {
        typed_field(object, "request_poll", "Object", true)?;
        return Ok(());
    }
    if let Some(Value::Object(web_app)) = typed_field(object, "web_app", "Object", false)? {
        required_string(web_app, "url")?;
        return Ok(());
    }
    for request in ["request_users", "request_user", "request_chat"] {
        if let Some(Value::Object(request)) = typed_field(object, request, "Object", false)? {
            required_int(request, "request_id")?;
            return Ok(());
        }
    }
    Ok(())
}

/// `Client::get_inline_keyboard_button`; `Ok(true)` for a `callback_data`
/// over 64 bytes.
fn check_inline_keyboard_button(button: &Value) -> Result<bool, String> {
    let object = button
        .as_object()
        .ok_or("InlineKeyboardButton must be an Object")?;
    required_string(object, "text")?;
    if !optional_string(object, "url")?.is_empty() {
        return Ok(false);
    }
    let callback_data = optional_string(object, "callback_data")?;
    if !callback_data.is_empty() {
        return Ok(callback_data.len() > 64);
    }
    if object.contains_key("callback_game") || object.contains_key("pay") {
        return Ok(false);
    }
    if object.contains_key("switch_inline_query") {
        required_string(object, "switch_inline_query")?;
        return Ok(false);
    }
    if let Some(Value::Object(chosen)) =
        typed_field(object, "switch_inline_query_chosen_chat", "Object", false)?
    {
        optional_string(chosen, "query")?;
        for flag in [
            "allow_user_chats",
            "allow_bot_chats",
            "allow_group_chats",
            "allow_channel_chats",
        ] {
            optional_bool(chosen, flag)?;
        }
        return Ok(false);
    }
    if object.contains_key("switch_inline_query_current_chat") {
        required_string(object, "switch_inline_query_current_chat")?;
        return Ok(false);
    }
    if let Some(Value::Object(login_url)) = typed_field(object, "login_url", "Object", false)? {
        required_string(login_url, "url")?;
        let bot_username = optional_string(login_url, "bot_username")?;
        optional_bool(login_url, "request_write_access")?;
        optional_string(login_url, "forward_text")?;
        let name = bot_username.strip_prefix('@').unwrap_or(&bot_username);
        if !bot_username.is_empty()
            && (name.is_empty() || !name.bytes().all(|c| c == b'_' || c.is_ascii_alphanumeric()))
        {
            return Err("LoginUrl bot username is invalid".into());
        }
        return Ok(false);
    }
    if let Some(Value::Object(web_app)) = typed_field(object, "web_app", "Object", false)? {
        required_string(web_app, "url")?;
        return Ok(false);
    }
    // Newer than the Bot API source this was ported from; accepted as documented.
    if let Some(Value::Object(copy_text)) = typed_field(object, "copy_text", "Object", false)? {
        required_string(copy_text, "text")?;
        return Ok(false);
    }
    Err("Text buttons are unallowed in the inline keyboard".into())
}

struct Chat {
    /// Canonical form, for comparisons.
    key: String,
    /// What [`SentMessage::chat_id`] shows.
    display: String,
    json: Value,
}

/// Canonical chat key: the integer for numeric ids, `@name` lowercased for usernames.
fn chat_key(chat_id: &str) -> String {
    match resolve_chat(chat_id) {
        Some(chat) => chat.key,
        None => chat_id.to_ascii_lowercase(),
    }
}

/// Resolves `chat_id` like the Bot API: `@username`, or an integer read the
/// way `td::to_integer` reads it (leading digits; 0 is no chat).
fn resolve_chat(chat_id: &str) -> Option<Chat> {
    if let Some(username) = chat_id.strip_prefix('@') {
        if !is_valid_username(username) {
            return None;
        }
        let key = format!("@{}", username.to_ascii_lowercase());
        // A stable channel id derived from the name (FNV-1a).
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let id = -(1_000_000_000_000_i64 + (hash % 1_000_000_000) as i64);
        return Some(Chat {
            key,
            display: chat_id.to_string(),
            json: json!({"id": id, "title": username, "username": username, "type": "channel"}),
        });
    }
    let id = leading_integer(chat_id)?;
    if id == 0 {
        return None;
    }
    let json = if id > 0 {
        json!({"id": id, "first_name": "Fake", "last_name": "User", "type": "private"})
    } else if id <= -1_000_000_000_000 {
        json!({"id": id, "title": "Fake supergroup", "type": "supergroup"})
    } else {
        json!({"id": id, "title": "Fake group", "type": "group"})
    };
    Some(Chat {
        key: id.to_string(),
        display: id.to_string(),
        json,
    })
}

/// `td::to_integer`: an optional `-` and the digits that follow; the rest is
/// ignored. `None` on overflow.
fn leading_integer(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    let mut value: i64 = 0;
    for d in digits.iter().take_while(|b| b.is_ascii_digit()) {
        value = value.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -value } else { value })
}

/// TDLib's `is_valid_username`.
fn is_valid_username(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b[b.len() - 1] != b'_'
        && !name.contains("__")
}

/// Parameters as the Bot API collects them: query string first, then the body.
fn request_params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut params = Vec::new();
    if let Some(query) = uri.query() {
        parse_form(query.as_bytes(), &mut params);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let lowered = content_type.to_ascii_lowercase();
    if lowered.contains("multipart/form-data") {
        parse_multipart(&content_type, body, &mut params);
    } else if lowered.contains("application/x-www-form-urlencoded") {
        parse_form(body, &mut params);
    } else if lowered.contains("application/json") {
        parse_json(body, &mut params);
    }
    params
}

fn parse_form(input: &[u8], out: &mut Vec<(String, Vec<u8>)>) {
    for pair in input.split(|b| *b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = String::from_utf8_lossy(&percent_decode(name, true)).into_owned();
        out.push((name, percent_decode(value, true)));
    }
}

fn percent_decode(input: &[u8], plus_is_space: bool) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// JSON body: a top-level object's string values as they are, any other value
/// as its JSON text. A body that is not a JSON object adds nothing.
fn parse_json(body: &[u8], out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    for (name, value) in object {
        let value = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        out.push((name, value.into_bytes()));
    }
}

fn parse_multipart(content_type: &str, body: &[u8], out: &mut Vec<(String, Vec<u8>)>) {
    let lowered = content_type.to_ascii_lowercase();
    let Some(at) = lowered.find("boundary=") else {
        return;
    };
    let boundary = content_type[at + "boundary=".len()..]
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    if boundary.is_empty() {
        return;
    }
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut rest = match find(body, delimiter) {
        Some(start) => &body[start + delimiter.len()..],
        None => return,
    };
    loop {
        if rest.starts_with(b"--") {
            return;
        }
        let Some(headers_end) = find(rest, b"\r\n\r\n") else {
            return;
        };
        let part_headers = String::from_utf8_lossy(&rest[..headers_end]).into_owned();
        let content = &rest[headers_end + 4..];
        let mut end_marker = b"\r\n".to_vec();
        end_marker.extend_from_slice(delimiter);
        let Some(content_end) = find(content, &end_marker) else {
            return;
        };
        let value = &content[..content_end];
        rest = &content[content_end + end_marker.len()..];
        let name = part_headers.lines().find_map(|line| {
            let lower = line.to_ascii_lowercase();
            if !lower.trim_start().starts_with("content-disposition:") {
                return None;
            }
            let at = lower.find("name=\"")?;
            if at > 0 && lower.as_bytes()[at - 1] != b' ' && lower.as_bytes()[at - 1] != b';' {
                return None;
            }
            let start = at + "name=\"".len();
            let len = line.get(start..)?.find('"')?;
            line.get(start..start + len).map(str::to_string)
        });
        if let Some(name) = name {
            out.push((name, value.to_vec()));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ------------------------------------------------------------ text handling

/// Telegram's HTML parse mode (TDLib's `parse_html`, as used by the Bot API's
/// `parse_mode=HTML`). `Ok` is the plain text: entities decoded and tags
/// removed, before the cleaning and trimming Telegram applies when sending.
/// `Err` is the description without `Bad Request: `, e.g.
/// `can't parse entities: Unsupported start tag "foo" at byte offset 4`.
///
/// Faithful to TDLib, including what surprises people: `<br>`, `<p>`, `<!--`
/// and a bare `<` are errors; an unknown named entity such as `&nbsp;` or a
/// bare `&` is *not* an error and stays literally in the text; the `;` of
/// `&lt;`, `&#39;` is optional; `</>` closes the innermost tag; tag and
/// attribute names are case-insensitive.
pub fn parse_telegram_html(text: &str) -> Result<String, String> {
    parse_html(text.as_bytes()).map(|parsed| parsed.text)
}

struct ParsedHtml {
    text: String,
    /// Byte offset in `text` where the first (non-empty) entity starts.
    first_entity: Option<usize>,
}

const ALLOWED_TAGS: [&str; 16] = [
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "span",
    "pre",
    "code",
    "blockquote",
];

/// `td::is_space` (the NUL that ends a C string counts as space).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0 | 0x0b)
}

fn is_utf8_first_byte(c: u8) -> bool {
    (c & 0xc0) != 0x80
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn push_code_point(out: &mut Vec<u8>, code: u32) {
    // Surrogates are flagged by the caller; U+FFFD keeps `out` valid UTF-8.
    let ch = char::from_u32(code).unwrap_or('\u{fffd}');
    let mut buf = [0u8; 4];
    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
}

/// TDLib's `decode_html_entity`: `Some((code point, position after it))`.
fn decode_html_entity(text: &[u8], pos: usize) -> Option<(u32, usize)> {
    let at = |i: usize| text.get(i).copied().unwrap_or(0);
    let mut end = pos + 1;
    let mut code: u32 = 0;
    if at(pos + 1) == b'#' {
        end += 1;
        if at(pos + 2) == b'x' || at(pos + 2) == b'X' {
            end += 1;
            while at(end).is_ascii_hexdigit() {
                let digit = (at(end) as char).to_digit(16).unwrap_or(0);
                code = code.wrapping_mul(16).wrapping_add(digit);
                end += 1;
            }
        } else {
            while at(end).is_ascii_digit() {
                code = code
                    .wrapping_mul(10)
                    .wrapping_add(u32::from(at(end) - b'0'));
                end += 1;
            }
        }
        if code == 0 || code >= 0x10ffff || end - pos >= 10 {
            return None;
        }
    } else {
        while at(end).is_ascii_alphabetic() {
            end += 1;
        }
        code = match text.get(pos + 1..end)? {
            b"lt" => u32::from('<'),
            b"gt" => u32::from('>'),
            b"amp" => u32::from('&'),
            b"quot" => u32::from('"'),
            _ => return None,
        };
    }
    if at(end) == b';' {
        end += 1;
    }
    Some((code, end))
}

/// A port of TDLib's `parse_html` (td/telegram/MessageEntity.cpp), working on
/// bytes as TDLib does, with a virtual NUL after the end.
fn parse_html(text: &[u8]) -> Result<ParsedHtml, String> {
    struct Open {
        tag: String,
        argument: String,
        utf16_start: usize,
        byte_start: usize,
    }
    let err = |message: String| format!("can't parse entities: {message}");
    let at = |i: usize| text.get(i).copied().unwrap_or(0);
    let slice = |from: usize, to: usize| text.get(from..to).unwrap_or(&[]);

    // TDLib's parseTextEntities refuses long input before parsing it.
    if text.iter().filter(|b| is_utf8_first_byte(**b)).count() > MAX_PARSED_CHARS {
        return Err(err("Text is too long".into()));
    }

    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    let mut utf16: usize = 0;
    let mut need_recheck_utf8 = false;
    let mut open: Vec<Open> = Vec::new();
    let mut first_entity: Option<usize> = None;

    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        if c == b'&' {
            if let Some((code, next)) = decode_html_entity(text, i) {
                utf16 += if code > 0xffff { 2 } else { 1 };
                if (0xd800..=0xdfff).contains(&code) {
                    need_recheck_utf8 = true;
                }
                push_code_point(&mut out, code);
                i = next;
                continue;
            }
        }
        if c != b'<' {
            if is_utf8_first_byte(c) {
                utf16 += if c >= 0xf0 { 2 } else { 1 };
            }
            out.push(c);
            i += 1;
            continue;
        }

        let begin = i;
        i += 1;
        if at(i) != b'/' {
            // A start tag.
            while !is_space(at(i)) && at(i) != b'>' {
                i += 1;
            }
            if at(i) == 0 {
                return Err(err(format!("Unclosed start tag at byte offset {begin}")));
            }
            let tag = lossy(slice(begin + 1, i)).to_ascii_lowercase();
            if !ALLOWED_TAGS.contains(&tag.as_str()) {
                return Err(err(format!(
                    "Unsupported start tag \"{tag}\" at byte offset {begin}"
                )));
            }

            let mut argument = String::new();
            while at(i) != b'>' {
                while at(i) != 0 && is_space(at(i)) {
                    i += 1;
                }
                if at(i) == b'>' {
                    break;
                }
                let name_start = i;
                while !is_space(at(i)) && !matches!(at(i), b'=' | b'>' | b'/' | b'"' | b'\'') {
                    i += 1;
                }
                let name = slice(name_start, i);
                if name.is_empty() {
                    return Err(err(format!(
                        "Empty attribute name in the tag \"{tag}\" at byte offset {begin}"
                    )));
                }
                while at(i) != 0 && is_space(at(i)) {
                    i += 1;
                }
                if at(i) != b'=' {
                    if at(i) == 0 {
                        return Err(err(format!(
                            "Unclosed start tag \"{tag}\" at byte offset {begin}"
                        )));
                    }
                    if tag == "blockquote" && name == b"expandable" {
                        argument = "1".into();
                    }
                    continue;
                }
                i += 1;
                while at(i) != 0 && is_space(at(i)) {
                    i += 1;
                }
                if at(i) == 0 {
                    return Err(err(format!(
                        "Unclosed start tag \"{tag}\" at byte offset {begin}"
                    )));
                }

                let value: String;
                if at(i) != b'\'' && at(i) != b'"' {
                    // A name token: letters, digits, periods, hyphens; case-insensitive.
                    let token_start = i;
                    while at(i).is_ascii_alphanumeric() || at(i) == b'.' || at(i) == b'-' {
                        i += 1;
                    }
                    value = lossy(slice(token_start, i)).to_ascii_lowercase();
                    if !is_space(at(i)) && at(i) != b'>' {
                        return Err(err(format!(
                            "Unexpected end of name token at byte offset {token_start}"
                        )));
                    }
                } else {
                    // A string literal.
                    let quote = at(i);
                    i += 1;
                    let mut bytes = Vec::new();
                    while at(i) != quote && at(i) != 0 {
                        if at(i) == b'&' {
                            if let Some((code, next)) = decode_html_entity(text, i) {
                                push_code_point(&mut bytes, code);
                                i = next;
                                continue;
                            }
                        }
                        bytes.push(at(i));
                        i += 1;
                    }
                    if at(i) == quote {
                        i += 1;
                    }
                    value = lossy(&bytes);
                }
                if at(i) == 0 {
                    return Err(err(format!("Unclosed start tag at byte offset {begin}")));
                }

                match (tag.as_str(), name) {
                    ("a", b"href") | ("tg-emoji", b"emoji-id") => argument = value,
                    ("code", b"class") if value.starts_with("language-") => {
                        argument = value["language-".len()..].to_string();
                    }
                    ("span", b"class") if value.starts_with("tg-") => {
                        argument = value["tg-".len()..].to_string();
                    }
                    ("blockquote", b"expandable") => argument = "1".into(),
                    _ => {}
                }
            }

            if tag == "span" && argument != "spoiler" {
                return Err(err(format!(
                    "Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"
                )));
            }
            open.push(Open {
                tag,
                argument,
                utf16_start: utf16,
                byte_start: out.len(),
            });
            i += 1; // the '>'
        } else {
            // An end tag.
            let Some(innermost) = open.last() else {
                return Err(err(format!("Unexpected end tag at byte offset {begin}")));
            };
            while !is_space(at(i)) && at(i) != b'>' {
                i += 1;
            }
            let end_tag = lossy(slice(begin + 2, i)).to_ascii_lowercase();
            while is_space(at(i)) && at(i) != 0 {
                i += 1;
            }
            if at(i) != b'>' {
                return Err(err(format!("Unclosed end tag at byte offset {begin}")));
            }
            if !end_tag.is_empty() && end_tag != innermost.tag {
                return Err(err(format!(
                    "Unmatched end tag at byte offset {begin}, expected \"</{}>\", found \"</{end_tag}>\"",
                    innermost.tag
                )));
            }
            if utf16 > innermost.utf16_start {
                if innermost.tag == "tg-emoji" {
                    match innermost.argument.parse::<i64>() {
                        Ok(id) if id != 0 => {}
                        _ => return Err(err("Invalid custom emoji identifier specified".into())),
                    }
                }
                first_entity = Some(
                    first_entity.map_or(innermost.byte_start, |b| b.min(innermost.byte_start)),
                );
            }
            open.pop();
            i += 1; // the '>'
        }
    }
    if let Some(innermost) = open.last() {
        return Err(err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            innermost.tag
        )));
    }
    if need_recheck_utf8 {
        return Err(err(
            "Text contains invalid Unicode characters after decoding HTML entities, check for \
             unmatched surrogate code units"
                .into(),
        ));
    }
    // Input was a &str and entities decode to whole characters, so this holds.
    let text =
        String::from_utf8(out).map_err(|_| err("Strings must be encoded in UTF-8".into()))?;
    Ok(ParsedHtml { text, first_entity })
}

/// TDLib's `clean_input_string` for one character: `None` drops it.
fn clean_char(c: char) -> Option<char> {
    match c {
        '\r' => None,
        '\n' => Some('\n'),
        '\u{0}'..='\u{1f}' => Some(' '),
        '\u{2028}'..='\u{202e}' | '\u{0333}' | '\u{033f}' | '\u{030a}' => None,
        c => Some(c),
    }
}

/// What TDLib does to a message text before sending it (`fix_formatted_text`):
/// clean it, trim spaces and newlines (not past the first entity at the
/// start); `None` when nothing but blanks is left ("text must be non-empty").
fn clean_and_trim(text: &str, first_entity: Option<usize>) -> Option<String> {
    let mut cleaned: String = text.chars().filter_map(clean_char).collect();
    replace_offending_characters(&mut cleaned);
    if cleaned.bytes().all(|b| b == b' ' || b == b'\n') {
        return None;
    }
    let ltrim_limit = match first_entity {
        Some(at) => text.get(..at).map_or(cleaned.len(), |prefix| {
            prefix
                .chars()
                .filter_map(clean_char)
                .map(char::len_utf8)
                .sum()
        }),
        None => cleaned.len(),
    };
    let trimmed_end = cleaned.trim_end_matches([' ', '\n']).len();
    cleaned.truncate(trimmed_end);
    let leading = cleaned
        .bytes()
        .take_while(|b| *b == b' ' || *b == b'\n')
        .count();
    let result = cleaned.split_off(leading.min(ltrim_limit));
    if is_empty_string(&result) {
        return None;
    }
    Some(result)
}

/// TDLib's `replace_offending_characters`: in a run of LRM/RLM marks all but
/// the last become ZERO WIDTH NON-JOINER.
fn replace_offending_characters(text: &mut String) {
    if !text.contains(['\u{200e}', '\u{200f}']) {
        return;
    }
    let chars: Vec<char> = text.chars().collect();
    let is_mark = |c: char| c == '\u{200e}' || c == '\u{200f}';
    *text = chars
        .iter()
        .enumerate()
        .map(|(k, &c)| {
            if is_mark(c) && chars.get(k + 1).is_some_and(|&n| is_mark(n)) {
                '\u{200c}'
            } else {
                c
            }
        })
        .collect();
}

/// TDLib's `is_empty_string`: nothing but blank or invisible characters.
fn is_empty_string(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(
            c,
            ' ' | '\t' | '\r' | '\n' | '\u{0}' | '\u{b}'
                | '\u{a0}'
                | '\u{1680}'
                | '\u{180e}'
                | '\u{2000}'..='\u{200f}'
                | '\u{202e}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{2800}'
                | '\u{3000}'
                | '\u{feff}'
                | '\u{fffc}'
                | '\u{e0000}'..='\u{e007f}'
        )
    })
}

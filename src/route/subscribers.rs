//! Who else hears a channel: chats registered with `/start`, each with its
//! `/subscribe` patterns.
//!
//! The planner consults the [`SubscriberBook`] for every group routed to a
//! channel with `subscribers: true`, so it sits in memory like the silence
//! book: the database is the record, a command that changes it refreshes
//! the book at once, and the scheduler re-reads it periodically so replicas
//! converge.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::model::alert::Labels;
use crate::model::matcher::{matches_all, parse_matchers, Matcher};
use crate::store::{ChatRecord, SubscriptionPattern};

/// Longest pattern accepted, in characters.
pub const MAX_PATTERN: usize = 200;

/// One `/subscribe` pattern, ready to match.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Alertmanager matchers; all must hold.
    Matchers(Vec<Matcher>),
    /// Lowercased text looked for in the alertname.
    Text(String),
}

impl Pattern {
    /// What `/subscribe <input>` means. Input with `=`, `~` or a leading
    /// `{` is matcher syntax and must parse as such; anything else is text
    /// looked for in the alertname, ignoring case.
    pub fn parse(input: &str) -> Result<Pattern, String> {
        let input = input.trim();
        if input.is_empty() {
            return Err(
                "give a matcher like severity=\"critical\" or a word of the alert name like Disk"
                    .into(),
            );
        }
        if input.chars().count() > MAX_PATTERN {
            return Err(format!("a pattern has at most {MAX_PATTERN} characters"));
        }
        if input.contains(['=', '~']) || input.starts_with('{') {
            return match parse_matchers(input) {
                Ok(m) if m.is_empty() => Err("no matcher found".into()),
                Ok(m) => Ok(Pattern::Matchers(m)),
                Err(e) => Err(format!("not a valid matcher: {e}")),
            };
        }
        Ok(Pattern::Text(input.to_lowercase()))
    }

    /// As stored (matchers in canonical form).
    pub fn to_stored(&self) -> SubscriptionPattern {
        match self {
            Pattern::Matchers(m) => SubscriptionPattern::Matchers(
                m.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Pattern::Text(t) => SubscriptionPattern::Text(t.clone()),
        }
    }

    /// From the store; `None` (skipped, logged) if it no longer parses.
    pub fn from_stored(p: &SubscriptionPattern) -> Option<Pattern> {
        match p {
            SubscriptionPattern::Matchers(text) => parse_matchers(text)
                .map_err(|e| tracing::warn!(pattern = %text, error = %e, "stored subscription no longer parses; ignored"))
                .ok()
                .map(Pattern::Matchers),
            SubscriptionPattern::Text(t) => Some(Pattern::Text(t.to_lowercase())),
        }
    }

    /// Whether an alert with these labels is wanted.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Pattern::Matchers(m) => matches_all(m, labels),
            Pattern::Text(t) => labels
                .get("alertname")
                .is_some_and(|name| name.to_lowercase().contains(t.as_str())),
        }
    }
}

/// A registered chat as the planner sees it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Telegram's chat id.
    pub chat_id: i64,
    /// The outbox destination (the id as text).
    pub destination: String,
    /// `@username`, lowercased, if the chat has one.
    pub username: Option<String>,
    /// Who sent `/start`: `@username`, lowercased, if they have one.
    pub registered_by: Option<String>,
    /// Its patterns; none = everything routed to the channel.
    pub patterns: Vec<Pattern>,
}

impl Subscriber {
    /// Whether this chat wants an alert with these labels.
    pub fn wants(&self, labels: &Labels) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(labels))
    }

    /// Whether a `chat_ids` entry names this chat (it then gets the whole
    /// group that way, once).
    pub fn is_named_by(&self, chat_id_entry: &str) -> bool {
        match chat_id_entry.strip_prefix('@') {
            Some(name) => self
                .username
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(&format!("@{name}"))),
            None => chat_id_entry.parse::<i64>().ok() == Some(self.chat_id),
        }
    }
}

/// Who may register and give commands on one channel: its `chat_ids` and
/// `allow_from` entries (chat ids, and @usernames of a chat or a sender).
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    ids: HashSet<i64>,
    /// Lowercased, with the `@`.
    usernames: HashSet<String>,
    /// `chat_ids` as configured.
    configured: Vec<String>,
}

impl AllowList {
    /// From a channel's `chat_ids` and `allow_from`.
    pub fn new(chat_ids: &[String], allow_from: &[String]) -> Self {
        let mut ids = HashSet::new();
        let mut usernames = HashSet::new();
        for entry in chat_ids.iter().chain(allow_from) {
            if entry.starts_with('@') {
                usernames.insert(entry.to_lowercase());
            } else if let Ok(id) = entry.parse::<i64>() {
                ids.insert(id);
            }
        }
        Self {
            ids,
            usernames,
            configured: chat_ids.to_vec(),
        }
    }

    fn named(&self, username: Option<&str>) -> bool {
        username.is_some_and(|u| {
            let u = u.to_lowercase();
            if u.starts_with('@') {
                self.usernames.contains(&u)
            } else {
                self.usernames.contains(&format!("@{u}"))
            }
        })
    }

    /// Whether a message from this chat (and sender) may give commands.
    pub fn allows(&self, chat_id: i64, chat_username: Option<&str>, sender: Option<&str>) -> bool {
        self.ids.contains(&chat_id) || self.named(chat_username) || self.named(sender)
    }

    /// Whether a registered chat is still allowed (`allow_from` may have
    /// shrunk since it registered): one that is not gets nothing.
    pub fn admits(&self, s: &Subscriber) -> bool {
        self.allows(s.chat_id, s.username.as_deref(), s.registered_by.as_deref())
    }

    /// Whether the chat is one of `chat_ids`.
    pub fn in_chat_ids(&self, chat_id: i64, chat_username: Option<&str>) -> bool {
        self.configured.iter().any(|c| match c.strip_prefix('@') {
            Some(name) => {
                chat_username.is_some_and(|u| u.trim_start_matches('@').eq_ignore_ascii_case(name))
            }
            None => c.parse::<i64>().ok() == Some(chat_id),
        })
    }
}

/// Registered chats per channel, shared by the planner, the chat pollers
/// and the scheduler.
#[derive(Clone, Default)]
pub struct SubscriberBook {
    inner: Arc<RwLock<Book>>,
}

#[derive(Default)]
struct Book {
    by_channel: HashMap<String, Arc<[Subscriber]>>,
    /// Counts command-made changes, so a periodic reload that read the
    /// database before one of them does not undo it.
    changes: u64,
}

fn index(records: Vec<ChatRecord>) -> HashMap<String, Arc<[Subscriber]>> {
    let mut by: HashMap<String, Vec<Subscriber>> = HashMap::new();
    for r in records {
        let patterns = r
            .subscriptions
            .iter()
            .filter_map(|(_, p)| Pattern::from_stored(p))
            .collect();
        by.entry(r.channel).or_default().push(Subscriber {
            chat_id: r.chat_id,
            destination: r.chat_id.to_string(),
            username: r.username.map(|u| format!("@{}", u.to_lowercase())),
            registered_by: r.registered_by.map(|u| format!("@{}", u.to_lowercase())),
            patterns,
        });
    }
    by.into_iter().map(|(k, v)| (k, v.into())).collect()
}

impl SubscriberBook {
    /// A book holding these chats.
    pub fn new(records: Vec<ChatRecord>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Book {
                by_channel: index(records),
                changes: 0,
            })),
        }
    }

    /// The registered chats of a channel (cheap: one shared slice).
    pub fn of(&self, channel: &str) -> Option<Arc<[Subscriber]>> {
        self.read().by_channel.get(channel).cloned()
    }

    /// A mark to pass to [`SubscriberBook::reload`], taken before reading.
    pub fn mark(&self) -> u64 {
        self.read().changes
    }

    /// A periodic re-read: applied unless a command changed the book since
    /// `mark` (the next re-read then brings it).
    pub fn reload(&self, records: Vec<ChatRecord>, mark: u64) {
        let by = index(records);
        let mut book = self.write();
        if book.changes == mark {
            book.by_channel = by;
        }
    }

    /// What the database holds right after a command changed it.
    pub fn replace(&self, records: Vec<ChatRecord>) {
        let by = index(records);
        let mut book = self.write();
        book.by_channel = by;
        book.changes += 1;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Book> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Book> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_and_text() {
        let crit = Pattern::parse("severity=\"critical\"").expect("matcher");
        assert!(matches!(crit, Pattern::Matchers(_)));
        assert!(crit.matches(&labels(&[("severity", "critical")])));
        assert!(!crit.matches(&labels(&[("severity", "warning")])));
        let disk = Pattern::parse("Disk").expect("text");
        assert!(disk.matches(&labels(&[("alertname", "DiskFull")])));
        assert!(disk.matches(&labels(&[("alertname", "lowdiskspace")])));
        assert!(!disk.matches(&labels(&[("alertname", "CPU")])));
        assert!(Pattern::parse("severity=~\"(\"").is_err());
        assert!(Pattern::parse("  ").is_err());
        assert!(Pattern::parse(&"x".repeat(MAX_PATTERN + 1)).is_err());
        let stored = crit.to_stored();
        assert_eq!(
            stored,
            SubscriptionPattern::Matchers("severity=\"critical\"".into())
        );
        assert!(Pattern::from_stored(&stored).is_some());
    }

    #[test]
    fn a_subscriber_named_in_chat_ids() {
        let s = Subscriber {
            chat_id: 42,
            destination: "42".into(),
            username: Some("@ops".into()),
            registered_by: None,
            patterns: Vec::new(),
        };
        assert!(s.is_named_by("42"));
        assert!(s.is_named_by("@OPS"));
        assert!(!s.is_named_by("43"));
        assert!(s.wants(&labels(&[])));
    }

    #[test]
    fn the_allow_list() {
        let allow = AllowList::new(
            &["42".into(), "@ops".into()],
            &["7".into(), "@Alice".into()],
        );
        assert!(allow.allows(42, None, None));
        assert!(allow.allows(7, None, None));
        assert!(allow.allows(9, Some("OPS"), None));
        assert!(allow.allows(9, None, Some("alice")));
        assert!(!allow.allows(9, Some("bob"), Some("bob")));
        assert!(allow.in_chat_ids(42, None) && allow.in_chat_ids(5, Some("ops")));
        assert!(!allow.in_chat_ids(7, None));
        let mut s = Subscriber {
            chat_id: -100,
            destination: "-100".into(),
            username: None,
            registered_by: Some("@alice".into()),
            patterns: Vec::new(),
        };
        assert!(allow.admits(&s));
        s.registered_by = Some("@bob".into());
        assert!(!allow.admits(&s));
    }
}

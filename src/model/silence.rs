//! Silences: "do not tell anyone about alerts like these until then".
//!
//! A silenced alert is still stored, with its events, and shown as
//! `silenced` in the API; only its notifications are held back. When a
//! silence ends (its time runs out, or it is deleted) while an alert it
//! held back still fires, the alert is notified then (see
//! `route::scheduler`). A silence with no end lasts until deleted: what
//! uptime-check users call "remove host".
//!
//! The live set ([`SilenceBook`]) sits in memory so the ingest planner can
//! consult it without a query per alert; the database is the record, and
//! the book is reloaded from it periodically so replicas converge.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::matcher::{matches_all, Matcher};
use crate::model::duration::parse_duration;

/// Longest comment or author name accepted.
const MAX_TEXT: usize = 1000;
/// Most matchers in one silence.
const MAX_MATCHERS: usize = 50;

/// One silence as stored.
#[derive(Debug, Clone)]
pub struct Silence {
    /// Store id (`DELETE /api/v1/silences/{id}`).
    pub id: i64,
    /// All must hold for an alert to be silenced.
    pub matchers: Vec<Matcher>,
    /// From when.
    pub starts_at: DateTime<Utc>,
    /// Until when; `None` = until deleted.
    pub ends_at: Option<DateTime<Utc>>,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
}

impl Silence {
    /// Whether it holds at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && self.ends_at.is_none_or(|end| now < end)
    }

    /// Whether it holds back an alert with these labels at `now`.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.is_active(now) && matches_all(&self.matchers, labels)
    }

    /// The API's view: `{"id", "matchers", "starts_at", "ends_at",
    /// "comment", "created_by", "active"}`.
    pub fn view(&self, now: DateTime<Utc>) -> SilenceView {
        SilenceView {
            id: self.id,
            matchers: self.matchers.iter().map(ToString::to_string).collect(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            comment: self.comment.clone(),
            created_by: self.created_by.clone(),
            active: self.is_active(now),
        }
    }
}

/// A silence as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SilenceView {
    /// Store id.
    pub id: i64,
    /// Canonical matcher texts.
    pub matchers: Vec<String>,
    /// From when.
    pub starts_at: DateTime<Utc>,
    /// Until when (null: until deleted).
    pub ends_at: Option<DateTime<Utc>>,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// Whether it holds now.
    pub active: bool,
}

/// A silence asked for, checked, not yet stored.
#[derive(Debug, Clone)]
pub struct NewSilence {
    /// All must hold.
    pub matchers: Vec<Matcher>,
    /// From when.
    pub starts_at: DateTime<Utc>,
    /// Until when; `None` = until deleted.
    pub ends_at: Option<DateTime<Utc>>,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
}

/// What `POST /api/v1/silences` takes. Unknown fields are refused: a typo
/// (`duraton`) would otherwise make a silence without end.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// Matcher texts, e.g. `instance="db1"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// `10m`, `4h`, `1d`: ends this long after now.
    pub duration: Option<String>,
    /// Or an RFC 3339 end.
    pub ends_at: Option<DateTime<Utc>>,
    /// Why (optional).
    #[serde(default)]
    pub comment: String,
    /// Who (optional; the caller's identity otherwise).
    pub created_by: Option<String>,
}

impl SilenceRequest {
    /// Checks the request; every problem is one line of the error.
    pub fn check(
        self,
        now: DateTime<Utc>,
        default_author: &str,
    ) -> Result<NewSilence, Vec<String>> {
        let mut errors = Vec::new();
        let mut matchers = Vec::new();
        if self.matchers.is_empty() {
            errors.push("matchers: at least one matcher is needed, e.g. instance=\"db1\"".into());
        }
        if self.matchers.len() > MAX_MATCHERS {
            errors.push(format!("matchers: at most {MAX_MATCHERS}"));
        }
        for (i, text) in self.matchers.iter().enumerate() {
            match Matcher::parse(text) {
                Ok(m) => matchers.push(m),
                Err(e) => errors.push(format!("matchers[{i}]: {text:?}: {e}")),
            }
        }
        // Like Alertmanager: matchers that all match an absent label would
        // silence every alert, which nobody means.
        if !matchers.is_empty() && matchers.iter().all(|m| m.matches(&BTreeMap::new())) {
            errors.push(
                "matchers: every matcher also matches alerts without that label, so this would silence everything; add one like alertname=\"...\"".into(),
            );
        }
        let ends_at = match (&self.duration, self.ends_at) {
            (Some(_), Some(_)) => {
                errors.push("give duration or ends_at, not both".into());
                None
            }
            (Some(d), None) => match parse_duration(d) {
                Ok(d) if d.is_zero() => {
                    errors.push("duration: must be more than zero".into());
                    None
                }
                Ok(d) => chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .or_else(|| {
                        errors.push("duration: too long".into());
                        None
                    }),
                Err(e) => {
                    errors.push(format!("duration: {e}"));
                    None
                }
            },
            (None, Some(end)) => {
                if end <= now {
                    errors.push(format!("ends_at: {end} is not in the future"));
                }
                Some(end)
            }
            (None, None) => None,
        };
        let created_by = self
            .created_by
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| default_author.to_string());
        if self.comment.chars().count() > MAX_TEXT || created_by.chars().count() > MAX_TEXT {
            errors.push(format!(
                "comment and created_by: at most {MAX_TEXT} characters"
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewSilence {
            matchers,
            starts_at: now,
            ends_at,
            comment: self.comment,
            created_by,
        })
    }
}

/// The silences in force or still to end, shared by the planner, the API
/// and the scheduler.
#[derive(Clone, Default)]
pub struct SilenceBook {
    inner: Arc<RwLock<Book>>,
}

#[derive(Default)]
struct Book {
    silences: Vec<Silence>,
    /// Counts the API's changes, so a reload that read the database before
    /// one of them does not undo it.
    changes: u64,
}

impl SilenceBook {
    /// A book holding these silences.
    pub fn new(silences: Vec<Silence>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Book {
                silences,
                changes: 0,
            })),
        }
    }

    /// Whether any silence holds back an alert with these labels.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.read().silences.iter().any(|s| s.mutes(labels, now))
    }

    /// A mark to pass to [`SilenceBook::reload`] taken before reading the
    /// database.
    pub fn mark(&self) -> u64 {
        self.read().changes
    }

    /// Replaces the set with what the database held (a reload, which
    /// brings silences made on other replicas). Silences this process
    /// added or changed since `mark` was taken win over the older read.
    pub fn reload(&self, silences: Vec<Silence>, mark: u64) {
        let mut book = self.write();
        if book.changes == mark {
            book.silences = silences;
            return;
        }
        let mut merged = silences;
        for s in &book.silences {
            match merged.iter_mut().find(|m| m.id == s.id) {
                Some(m) => *m = s.clone(),
                None => merged.push(s.clone()),
            }
        }
        book.silences = merged;
    }

    /// Adds or updates one silence (the API, at once).
    pub fn put(&self, silence: Silence) {
        let mut book = self.write();
        book.silences.retain(|s| s.id != silence.id);
        book.silences.push(silence);
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
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
            .single()
            .expect("time")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn request(matchers: &[&str], duration: Option<&str>) -> SilenceRequest {
        SilenceRequest {
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            duration: duration.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn a_silence_mutes_matching_alerts_until_its_end() {
        let s = request(&["instance=\"db1\""], Some("10m"))
            .check(now(), "api")
            .expect("valid");
        let s = Silence {
            id: 1,
            matchers: s.matchers,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            comment: s.comment,
            created_by: s.created_by,
        };
        let db1 = labels(&[("alertname", "Down"), ("instance", "db1")]);
        let db2 = labels(&[("alertname", "Down"), ("instance", "db2")]);
        assert!(s.mutes(&db1, now()));
        assert!(!s.mutes(&db2, now()));
        assert!(s.mutes(&db1, now() + chrono::Duration::minutes(9)));
        assert!(!s.mutes(&db1, now() + chrono::Duration::minutes(10)));
        assert_eq!(s.view(now()).matchers, vec!["instance=\"db1\"".to_string()]);
    }

    #[test]
    fn no_duration_and_no_end_lasts_until_deleted() {
        let s = request(&["instance=\"db1\""], None)
            .check(now(), "api")
            .expect("valid");
        assert_eq!(s.ends_at, None);
        assert_eq!(s.created_by, "api");
    }

    #[test]
    fn bad_requests_say_every_problem() {
        let errors = request(&[], Some("soon"))
            .check(now(), "api")
            .expect_err("invalid");
        assert!(errors[0].contains("at least one matcher"), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("duration")), "{errors:?}");

        let errors = request(&["instance=~\"(\""], None)
            .check(now(), "api")
            .expect_err("bad regex");
        assert!(errors[0].starts_with("matchers[0]"), "{errors:?}");

        let errors = request(&["instance=~\".*\""], None)
            .check(now(), "api")
            .expect_err("matches everything");
        assert!(errors[0].contains("silence everything"), "{errors:?}");

        let mut both = request(&["a=\"b\""], Some("1h"));
        both.ends_at = Some(now() + chrono::Duration::hours(1));
        assert!(both.check(now(), "api").is_err());

        let mut past = request(&["a=\"b\""], None);
        past.ends_at = Some(now() - chrono::Duration::seconds(1));
        let errors = past.check(now(), "api").expect_err("past");
        assert!(errors[0].contains("not in the future"), "{errors:?}");

        assert!(request(&["a=\"b\""], Some("0s"))
            .check(now(), "api")
            .is_err());
    }

    #[test]
    fn the_book_answers_for_every_silence_it_holds() {
        let book = SilenceBook::default();
        let db1 = labels(&[("instance", "db1")]);
        assert!(!book.mutes(&db1, now()));
        let s = request(&["instance=\"db1\""], None)
            .check(now(), "api")
            .expect("valid");
        book.put(Silence {
            id: 7,
            matchers: s.matchers,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            comment: String::new(),
            created_by: "x".into(),
        });
        assert!(book.mutes(&db1, now()));
        book.reload(Vec::new(), book.mark());
        assert!(!book.mutes(&db1, now()));
    }

    /// A reload that read the database before the API added a silence does
    /// not drop it (the scheduler's periodic reload racing a POST).
    #[test]
    fn a_reload_read_before_a_put_keeps_the_put() {
        let book = SilenceBook::default();
        let db1 = labels(&[("instance", "db1")]);
        let mark = book.mark();
        let s = request(&["instance=\"db1\""], None)
            .check(now(), "api")
            .expect("valid");
        book.put(Silence {
            id: 8,
            matchers: s.matchers,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            comment: String::new(),
            created_by: "x".into(),
        });
        book.reload(Vec::new(), mark);
        assert!(book.mutes(&db1, now()), "the newer put wins");
        book.reload(Vec::new(), book.mark());
        assert!(!book.mutes(&db1, now()), "a later reload is the truth");
    }
}

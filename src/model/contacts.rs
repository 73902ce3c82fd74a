//! The contact book: people, their addresses and the groups they are in.
//!
//! The `contacts:` config section seeds it at start (stored in the database,
//! so the web page can manage it later); channels read a snapshot in memory,
//! so resolving `to_group` costs no query on the delivery path.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// One person of the contact book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Unique name, as shown on the page.
    pub name: String,
    /// Mail address, for email channels' `to_group`.
    pub email: Option<String>,
    /// Telegram `@username` (for the chat issue).
    pub telegram: Option<String>,
    /// Group names this contact belongs to.
    pub groups: Vec<String>,
}

/// The contacts every channel sees, replaced as a whole when they change.
#[derive(Debug, Clone, Default)]
pub struct ContactBook {
    contacts: Arc<RwLock<Arc<Vec<Contact>>>>,
}

impl ContactBook {
    /// A book holding `contacts`.
    pub fn new(contacts: Vec<Contact>) -> Self {
        Self {
            contacts: Arc::new(RwLock::new(Arc::new(contacts))),
        }
    }

    /// Replaces every contact (after the stored book changed).
    pub fn replace(&self, contacts: Vec<Contact>) {
        let mut guard = match self.contacts.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(contacts);
    }

    fn snapshot(&self) -> Arc<Vec<Contact>> {
        match self.contacts.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Mail addresses of every member of `group` (case-sensitive name), in
    /// book order, each once.
    pub fn emails_in_group(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.snapshot().iter() {
            if c.groups.iter().any(|g| g == group) {
                if let Some(e) = &c.email {
                    if !out.contains(e) {
                        out.push(e.clone());
                    }
                }
            }
        }
        out
    }

    /// Every contact.
    pub fn all(&self) -> Vec<Contact> {
        self.snapshot().as_ref().clone()
    }
}

//! SQLite's fingerprint → alert id index, kept in memory.
//!
//! Why: a fingerprint is a hash, so a B-tree index on it takes every new
//! alert to a random leaf. Past the page cache (about 300 000 alerts with
//! 1 KiB pages and an 8 MiB cache) each new alert costs a page read and a
//! random page written back by the checkpoint, and the ingest rate with a
//! million alerts stored fell to 40 % of a fresh database's
//! (docs/BENCHMARKS.md). In memory, the lookup is a hash probe and the
//! table only ever appends. Alertmanager keeps its alerts in memory the same
//! way; the database stays the record, and the index is rebuilt from it at
//! start. Only one process uses a SQLite file (the writer thread is the
//! only writer), so this map is the one place that assigns ids.
//!
//! Ids enter in two steps, so that nothing rolled back is ever visible: an
//! ingest job adds what it inserted to `pending` when it succeeds, and the
//! writer moves `pending` into `committed` once its transaction committed
//! (or drops it if the commit failed). Readers only see `committed`.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

/// Fingerprints are 16 hex digits (Alertmanager's and ours): kept as a u64.
/// Anything else a source sends is kept as text.
#[derive(Default)]
pub(super) struct IdMap {
    hex: HashMap<u64, i64>,
    other: HashMap<String, i64>,
}

fn hex_key(fp: &str) -> Option<u64> {
    if fp.len() == 16
        && fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        u64::from_str_radix(fp, 16).ok()
    } else {
        None
    }
}

impl IdMap {
    pub(super) fn get(&self, fp: &str) -> Option<i64> {
        match hex_key(fp) {
            Some(k) => self.hex.get(&k).copied(),
            None => self.other.get(fp).copied(),
        }
    }

    pub(super) fn insert(&mut self, fp: &str, id: i64) {
        match hex_key(fp) {
            Some(k) => {
                self.hex.insert(k, id);
            }
            None => {
                self.other.insert(fp.to_string(), id);
            }
        }
    }

    fn absorb(&mut self, other: IdMap) {
        self.hex.extend(other.hex);
        self.other.extend(other.other);
    }

    pub(super) fn len(&self) -> usize {
        self.hex.len() + self.other.len()
    }
}

/// The committed map readers use, and what the open transaction added.
#[derive(Default)]
pub(super) struct FingerprintIndex {
    committed: RwLock<IdMap>,
    pending: Mutex<IdMap>,
}

impl FingerprintIndex {
    /// An index holding `rows` (id, fingerprint) read at start.
    pub(super) fn load(rows: impl IntoIterator<Item = (i64, String)>) -> Self {
        let mut map = IdMap::default();
        for (id, fp) in rows {
            map.insert(&fp, id);
        }
        Self {
            committed: RwLock::new(map),
            pending: Mutex::new(IdMap::default()),
        }
    }

    /// The id of a committed alert (for readers).
    pub(super) fn committed_id(&self, fp: &str) -> Option<i64> {
        match self.committed.read() {
            Ok(m) => m.get(fp),
            Err(poisoned) => poisoned.into_inner().get(fp),
        }
    }

    /// The id as the writer's open transaction sees it (writer thread).
    pub(super) fn current_id(&self, fp: &str) -> Option<i64> {
        let pending = match self.pending.lock() {
            Ok(p) => p.get(fp),
            Err(poisoned) => poisoned.into_inner().get(fp),
        };
        pending.or_else(|| self.committed_id(fp))
    }

    /// A job inserted these and succeeded (writer thread).
    pub(super) fn add_pending(&self, added: IdMap) {
        match self.pending.lock() {
            Ok(mut p) => p.absorb(added),
            Err(poisoned) => poisoned.into_inner().absorb(added),
        }
    }

    /// The writer's transaction ended: what it added becomes visible, or
    /// is forgotten with the rolled-back rows.
    pub(super) fn transaction_ended(&self, committed: bool) {
        let added = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        if committed && added.len() > 0 {
            match self.committed.write() {
                Ok(mut c) => c.absorb(added),
                Err(poisoned) => poisoned.into_inner().absorb(added),
            }
        }
    }

    /// Alerts known.
    pub(super) fn len(&self) -> usize {
        match self.committed.read() {
            Ok(m) => m.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_visible_only_after_commit() {
        let idx = FingerprintIndex::load([(1, "00000000000000aa".to_string())]);
        assert_eq!(idx.committed_id("00000000000000aa"), Some(1));
        let mut added = IdMap::default();
        added.insert("00000000000000bb", 2);
        added.insert("not-a-hex-fingerprint", 3);
        idx.add_pending(added);
        assert_eq!(
            idx.current_id("00000000000000bb"),
            Some(2),
            "the writer sees its own"
        );
        assert_eq!(
            idx.committed_id("00000000000000bb"),
            None,
            "readers do not yet"
        );
        idx.transaction_ended(true);
        assert_eq!(idx.committed_id("00000000000000bb"), Some(2));
        assert_eq!(idx.committed_id("not-a-hex-fingerprint"), Some(3));

        let mut rolled_back = IdMap::default();
        rolled_back.insert("00000000000000cc", 4);
        idx.add_pending(rolled_back);
        idx.transaction_ended(false);
        assert_eq!(
            idx.current_id("00000000000000cc"),
            None,
            "a failed commit leaves nothing"
        );
        assert_eq!(idx.len(), 3);
    }

    #[test]
    fn uppercase_hex_is_text_not_a_number() {
        // "00000000000000AA" and "00000000000000aa" are different fingerprints.
        let mut m = IdMap::default();
        m.insert("00000000000000aa", 1);
        m.insert("00000000000000AA", 2);
        assert_eq!(m.get("00000000000000aa"), Some(1));
        assert_eq!(m.get("00000000000000AA"), Some(2));
    }
}

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
use std::hash::BuildHasher;
use std::sync::{Mutex, RwLock};

use hashbrown::HashTable;

/// Shards of the hex map. A hash table doubles when it fills, and for a
/// moment holds the old and the new buckets: one table of a million
/// alerts would briefly need 26 MiB. Sharded, only one shard (1/16 of it)
/// grows at a time.
const SHARDS: usize = 16;

/// One alert in the hex map: its fingerprint and id in 12 bytes (a
/// `(u64, i64)` pair takes 16), so a million alerts take about 13 MiB
/// with the table's control bytes instead of 17.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Slot {
    fp: u64,
    id: u32,
}

/// Fingerprint → id for 16-hex-digit fingerprints, in compact slots.
/// Sources choose fingerprints, so the hash is keyed per process
/// (std's SipHash), not the fingerprint's own bits.
struct HexMap {
    shards: Vec<HashTable<Slot>>,
    /// Ids past `u32::MAX` (four billion alerts), kept apart.
    wide: HashMap<u64, i64>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for HexMap {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
            wide: HashMap::new(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl HexMap {
    fn shard(&self, hash: u64) -> usize {
        // The top bits pick the shard; hashbrown uses the low ones and the
        // top seven of the same hash, which stay spread within a shard.
        (hash >> 40) as usize % SHARDS
    }

    fn get(&self, fp: u64) -> Option<i64> {
        let hash = self.hasher.hash_one(fp);
        self.shards[self.shard(hash)]
            .find(hash, |s| ({ s.fp }) == fp)
            .map(|s| i64::from(s.id))
            .or_else(|| self.wide.get(&fp).copied())
    }

    fn insert(&mut self, fp: u64, id: i64) {
        let hash = self.hasher.hash_one(fp);
        let shard = self.shard(hash);
        let hasher = &self.hasher;
        let table = &mut self.shards[shard];
        match u32::try_from(id) {
            Ok(small) => {
                self.wide.remove(&fp);
                match table.entry(hash, |s| ({ s.fp }) == fp, |s| hasher.hash_one(s.fp)) {
                    hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().id = small,
                    hashbrown::hash_table::Entry::Vacant(e) => {
                        e.insert(Slot { fp, id: small });
                    }
                }
            }
            Err(_) => {
                if let Ok(e) = table.find_entry(hash, |s| ({ s.fp }) == fp) {
                    e.remove();
                }
                self.wide.insert(fp, id);
            }
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(HashTable::len).sum::<usize>() + self.wide.len()
    }

    fn drain_into(self, other: &mut HexMap) {
        for table in self.shards {
            for s in table {
                other.insert(s.fp, i64::from(s.id));
            }
        }
        for (fp, id) in self.wide {
            other.insert(fp, id);
        }
    }
}

/// Fingerprints are 16 hex digits (Alertmanager's and ours): kept as a u64.
/// Anything else a source sends is kept as text.
#[derive(Default)]
pub(super) struct IdMap {
    hex: HexMap,
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
            Some(k) => self.hex.get(k),
            None => self.other.get(fp).copied(),
        }
    }

    pub(super) fn insert(&mut self, fp: &str, id: i64) {
        match hex_key(fp) {
            Some(k) => self.hex.insert(k, id),
            None => {
                self.other.insert(fp.to_string(), id);
            }
        }
    }

    fn absorb(&mut self, other: IdMap) {
        other.hex.drain_into(&mut self.hex);
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
    fn many_ids_small_and_past_u32_are_found_and_replaced() {
        let mut m = IdMap::default();
        for i in 0..50_000i64 {
            m.insert(&format!("{:016x}", i * 7919), i);
        }
        let big = i64::from(u32::MAX) + 5;
        m.insert("00000000deadbeef", big);
        assert_eq!(m.len(), 50_001);
        for i in (0..50_000i64).step_by(997) {
            assert_eq!(m.get(&format!("{:016x}", i * 7919)), Some(i));
        }
        assert_eq!(m.get("00000000deadbeef"), Some(big));
        // Re-inserting moves an id between the compact and the wide part.
        m.insert("00000000deadbeef", 3);
        assert_eq!(m.get("00000000deadbeef"), Some(3));
        m.insert(&format!("{:016x}", 7919), big);
        assert_eq!(m.get(&format!("{:016x}", 7919)), Some(big));
        assert_eq!(m.len(), 50_001);
        assert_eq!(m.get("ffffffffffffffff"), None);
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

//! A read-through cache of the online store's columns in memory, so a batch read of hot
//! entities touches no B-tree: per entity key, its stored columns, or that it has none.
//!
//! Coherence with writes: the writer marks a write in progress (the epoch goes odd), commits,
//! replaces the cached entries of the keys it wrote, and ends the write (even again). A reader
//! that missed inserts what its read transaction saw only if no write started since it took the
//! epoch, checked under the shard's lock; so a value read before a commit never lands after the
//! writer's replacement of it.
//!
//! Bounded by bytes: a shard that would pass its share is emptied (a random eviction, cheap and
//! good enough for a working set that mostly fits).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

const SHARDS: usize = 64;
/// the bookkeeping of an entry besides its key and value
const ENTRY_OVERHEAD: usize = 64;

type Map = HashMap<Box<str>, Option<Box<[u8]>>, foldhash::fast::FixedState>;

#[derive(Default)]
struct Shard {
    map: Map,
    bytes: usize,
}

pub struct Cache {
    shards: Vec<RwLock<Shard>>,
    shard_cap: usize,
    epoch: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("cap_bytes", &(self.shard_cap * SHARDS))
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

fn cost(key: &str, value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

/// A shard's map, read-locked.
pub(crate) struct Guard<'a>(RwLockReadGuard<'a, Shard>);

impl Guard<'_> {
    /// `None`: not cached; `Some(None)`: cached as absent.
    pub(crate) fn get(&self, key: &str) -> Option<Option<&[u8]>> {
        self.0.map.get(key).map(|v| v.as_deref())
    }
}

impl Cache {
    pub fn new(cap_bytes: usize) -> Cache {
        Cache {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            shard_cap: cap_bytes / SHARDS,
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> &RwLock<Shard> {
        &self.shards[crate::event::hash(key) as usize % SHARDS]
    }

    /// The shard holding `key`, read-locked (hold it only while computing from the value).
    pub(crate) fn lock(&self, key: &str) -> Guard<'_> {
        Guard(self.shard(key).read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Taken before a read transaction whose results may be inserted.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Inserts what a read transaction begun at `epoch` saw of `key`, unless a write started
    /// since.
    pub(crate) fn insert(&self, epoch: u64, key: &str, value: Option<&[u8]>) {
        let c = cost(key, value);
        if epoch % 2 == 1 || c > self.shard_cap {
            return;
        }
        let mut s = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if s.bytes + c > self.shard_cap {
            s.map.clear();
            s.bytes = 0;
        }
        if s.map.insert(key.into(), value.map(Into::into)).is_none() {
            s.bytes += c;
        }
    }

    /// Marks a write in progress: call before committing it.
    pub(crate) fn begin_write(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// After the commit: the written keys' new values replace cached ones, and the write ends.
    /// A value of `None`: the key was removed.
    pub(crate) fn end_write<'a>(
        &self,
        written: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) {
        for (key, value) in written {
            let mut s = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
            let Shard { map, bytes } = &mut *s;
            if let Some(v) = map.get_mut(key) {
                let len = |x: Option<&[u8]>| x.map_or(0, <[u8]>::len);
                *bytes = *bytes + len(value) - len(v.as_deref());
                *v = value.map(Into::into);
            }
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Another process wrote `keys`: their entries go, and reads begun before are not cached
    /// (they may hold the old values).
    pub(crate) fn evict<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for key in keys {
            let mut s = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = s.map.remove(key) {
                s.bytes = s.bytes.saturating_sub(cost(key, v.as_deref()));
            }
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes by other processes may have been missed: everything goes.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let mut s = shard.write().unwrap_or_else(|e| e.into_inner());
            s.map.clear();
            s.bytes = 0;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Ends a write that failed (nothing was committed).
    pub(crate) fn abort_write(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_begun_before_a_write_is_not_cached() {
        let c = Cache::new(1 << 20);
        let e = c.epoch();
        c.begin_write();
        // the write's commit happens here; a reader's older snapshot must not land
        c.insert(e, "k", Some(b"old"));
        c.end_write([("k", Some(&b"new"[..]))]);
        assert_eq!(c.lock("k").get("k"), None);
        // a read begun after the write is cached, and the next write replaces it
        let e = c.epoch();
        c.insert(e, "k", Some(b"new"));
        c.begin_write();
        c.end_write([("k", Some(&b"newer"[..]))]);
        assert_eq!(c.lock("k").get("k"), Some(Some(&b"newer"[..])));
        // absent keys are cached as absent, and a write of them replaces that
        let e = c.epoch();
        c.insert(e, "gone", None);
        assert_eq!(c.lock("gone").get("gone"), Some(None));
        c.begin_write();
        c.end_write([("gone", Some(&b"here"[..]))]);
        assert_eq!(c.lock("gone").get("gone"), Some(Some(&b"here"[..])));
    }

    #[test]
    fn another_process_s_write_evicts_and_keeps_older_reads_out() {
        let c = Cache::new(1 << 20);
        let e = c.epoch();
        c.insert(e, "k", Some(b"old"));
        c.insert(e, "j", Some(b"kept"));
        // a read began, then another node's write of k was announced
        let before = c.epoch();
        c.evict(["k"]);
        assert_eq!(c.lock("k").get("k"), None);
        assert_eq!(c.lock("j").get("j"), Some(Some(&b"kept"[..])));
        c.insert(before, "k", Some(b"old"));
        assert_eq!(
            c.lock("k").get("k"),
            None,
            "a read from before the write landed"
        );
        c.insert(c.epoch(), "k", Some(b"new"));
        assert_eq!(c.lock("k").get("k"), Some(Some(&b"new"[..])));
        c.clear();
        assert_eq!(c.lock("j").get("j"), None);
        let held: usize = c.shards.iter().map(|s| s.read().unwrap().bytes).sum();
        assert_eq!(held, 0);
    }

    #[test]
    fn a_full_shard_is_emptied() {
        let c = Cache::new(SHARDS * 200);
        let e = c.epoch();
        for i in 0..100 {
            c.insert(e, &format!("key{i}"), Some(&[0u8; 50]));
        }
        let held: usize = c.shards.iter().map(|s| s.read().unwrap().bytes).sum();
        assert!(held <= SHARDS * 200, "{held}");
    }
}

//! Idempotency: an event whose id is already stored with an event time within the window of its
//! own is a duplicate.
//!
//! The index holds the ids of the UTC days it has been asked about, paged in from the event log
//! on demand (segments are partitioned by day, so a day's ids are one projected read), so a
//! re-import of years-old data is caught as well as a client's retry of this morning's batch,
//! and memory stays bounded by the days in use rather than by the size of the log.

use encore_core::time::MS_PER_DAY;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Event ids are random 128-bit values: folding the halves is a good hash, and far cheaper than
/// SipHash on the ingest hot path.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u128(&mut self, v: u128) {
        // content-derived ids share structure too: mix, do not just truncate
        self.0 = ((v as u64) ^ ((v >> 64) as u64)).wrapping_mul(0x5BD1_E995_9E37_79B9);
    }
}

/// An event id as two words: 8-byte aligned, so a table entry is 24 bytes instead of the 32 a
/// `u128` key would take (alignment 16); a smaller table is fewer cache misses per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key(u64, u64);

impl From<u128> for Key {
    fn from(v: u128) -> Key {
        Key((v >> 64) as u64, v as u64)
    }
}

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 ^ self.1.rotate_left(29));
    }
}

type IdMap = HashMap<Key, i64, BuildHasherDefault<IdHasher>>;

/// Most ids held before the index drops everything and pages in again.
const MAX_IDS: usize = 32 << 20;

#[derive(Debug)]
pub struct Dedup {
    window_ms: i64,
    seen: IdMap,
    loaded_days: HashSet<i64>,
}

/// Reads (id, event time) of every stored event with event time in `[from_ms, to_ms]`.
pub type Loader<'a, E> = dyn FnMut(i64, i64) -> Result<Vec<(u128, i64)>, E> + 'a;

impl Dedup {
    pub fn new(window_ms: i64) -> Dedup {
        Dedup {
            window_ms,
            seen: IdMap::default(),
            loaded_days: HashSet::new(),
        }
    }

    /// Makes sure every stored id that could collide with an event in `[min_ts, max_ts]` is in
    /// the index.
    pub fn prepare<E>(
        &mut self,
        min_ts: i64,
        max_ts: i64,
        load: &mut Loader<'_, E>,
    ) -> Result<(), E> {
        let first = min_ts.saturating_sub(self.window_ms).div_euclid(MS_PER_DAY);
        let last = max_ts.saturating_add(self.window_ms).div_euclid(MS_PER_DAY);
        let missing: Vec<i64> = (first..=last)
            .filter(|d| !self.loaded_days.contains(d))
            .collect();
        let (Some(&from), Some(&to)) = (missing.first(), missing.last()) else {
            return Ok(());
        };
        if self.seen.len() > MAX_IDS {
            self.seen.clear();
            self.loaded_days.clear();
            return self.prepare(min_ts, max_ts, load);
        }
        for (id, ts) in load(from * MS_PER_DAY, (to + 1) * MS_PER_DAY - 1)? {
            self.seen.entry(Key::from(id)).or_insert(ts);
        }
        self.loaded_days.extend(missing);
        Ok(())
    }

    /// True when `id` is stored with an event time within the window of `ts`; otherwise
    /// remembers it. Call [`Dedup::prepare`] for the batch's time range first.
    pub fn check_and_insert(&mut self, id: u128, ts: i64) -> bool {
        // one probe of the table, hit or miss
        match self.seen.entry(Key::from(id)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if (*e.get() - ts).abs() <= self.window_ms {
                    true
                } else {
                    e.insert(ts);
                    false
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(ts);
                false
            }
        }
    }

    /// Room for `n` more ids without rehashing in the middle of a batch.
    pub fn reserve(&mut self, n: usize) {
        self.seen.reserve(n);
    }

    /// Remembers an id that is stored but not yet in a segment (rows replayed from the WAL).
    pub fn remember(&mut self, id: u128, ts: i64) {
        self.seen.entry(Key::from(id)).or_insert(ts);
    }

    /// Forgets ids whose write failed, so a retry is not taken for a duplicate.
    pub fn forget(&mut self, ids: &[u128]) {
        for id in ids {
            self.seen.remove(&Key::from(*id));
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_by_event_time_and_days_page_in() {
        let day = MS_PER_DAY;
        let stored = [(7u128, 100 * day), (8u128, 3 * day)];
        let mut loads = Vec::new();
        let mut load = |from: i64, to: i64| -> Result<Vec<(u128, i64)>, ()> {
            loads.push((from / day, to / day));
            Ok(stored
                .iter()
                .copied()
                .filter(|(_, t)| (from..=to).contains(t))
                .collect())
        };
        let mut d = Dedup::new(7 * day);
        d.prepare(100 * day, 100 * day, &mut load).unwrap();
        assert!(d.check_and_insert(7, 100 * day + 5), "a stored id is found");
        assert!(
            !d.check_and_insert(8, 100 * day),
            "id 8 is stored 97 days away: a new event"
        );
        assert!(!d.check_and_insert(1, 0));
        d.prepare(101 * day, 101 * day, &mut load).unwrap();
        assert_eq!(loads, vec![(93, 107), (108, 108)], "only new days are read");
        d.forget(&[1]);
        assert!(!d.check_and_insert(1, 0));
        assert!(d.check_and_insert(1, 6 * day));
    }
}

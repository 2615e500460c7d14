//! Home lists cached per listener and request shape for a short time: the home screen is asked
//! for on every app open, and the answer only changes when the model or the listener's plays
//! do. An entry is dropped when the listener plays something (the list must not offer what they
//! just heard), is ignored when the served model version changed, and expires after `ttl`.
//! Bounded: when full, an arbitrary entry makes room.

use crate::Slate;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a cached list depends on besides the listener: n, exclude_seen and the rules.
pub type Shape = String;

/// (shape, model version, stored at, list)
type Entry = (Shape, u32, Instant, Slate);

#[derive(Debug)]
pub struct SlateCache {
    /// per listener
    entries: Mutex<HashMap<String, Vec<Entry>>>,
    capacity: usize,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SlateCache {
    pub fn new(capacity: usize, ttl: Duration) -> SlateCache {
        SlateCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached list of `user` for `shape` under model `version`, with a fresh request id.
    pub fn get(&self, user: &str, shape: &str, version: u32) -> Option<Slate> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let found = entries
            .get(user)
            .and_then(|lists| lists.iter().find(|e| e.0 == shape))
            .filter(|(_, v, at, _)| *v == version && at.elapsed() < self.ttl)
            .map(|(_, _, _, s)| {
                let mut s = s.clone();
                s.request_id = crate::request_id();
                s
            });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `slate` for `user` (at most `capacity` listeners, 8 shapes each).
    pub fn put(&self, user: &str, shape: &str, version: u32, slate: &Slate) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(user)
            && entries.len() >= self.capacity
            && let Some(victim) = entries.keys().next().cloned()
        {
            entries.remove(&victim);
        }
        let lists = entries.entry(user.to_owned()).or_default();
        lists.retain(|e| e.0 != shape);
        if lists.len() >= 8 {
            lists.remove(0);
        }
        lists.push((shape.to_owned(), version, Instant::now(), slate.clone()));
    }

    /// Forgets `user`'s lists (they just played something).
    pub fn invalidate(&self, user: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
    }

    /// (hits, misses)
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Slate, Strategy};

    fn slate(version: u32) -> Slate {
        Slate {
            request_id: "r".into(),
            model: "m".into(),
            model_version: version,
            strategy: Strategy::Personalized,
            experiments: Vec::new(),
            note: None,
            items: Vec::new(),
        }
    }

    #[test]
    fn hits_misses_versions_invalidation_and_expiry() {
        let c = SlateCache::new(2, Duration::from_secs(60));
        assert!(c.get("u", "n=10", 1).is_none());
        c.put("u", "n=10", 1, &slate(1));
        let hit = c.get("u", "n=10", 1).unwrap();
        assert_ne!(hit.request_id, "r", "every answer gets its own request id");
        assert!(
            c.get("u", "n=10", 2).is_none(),
            "a new model version misses"
        );
        assert!(c.get("u", "n=20", 1).is_none(), "another shape misses");
        c.invalidate("u");
        assert!(c.get("u", "n=10", 1).is_none());
        c.put("a", "s", 1, &slate(1));
        c.put("b", "s", 1, &slate(1));
        c.put("c", "s", 1, &slate(1));
        assert_eq!(c.entries.lock().unwrap().len(), 2, "bounded");
        let short = SlateCache::new(4, Duration::from_millis(0));
        short.put("u", "s", 1, &slate(1));
        assert!(short.get("u", "s", 1).is_none(), "expired");
        assert_eq!(c.counts().0, 1);
    }
}

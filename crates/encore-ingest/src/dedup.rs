//! Idempotency: an event id seen within the window (by event time) is a duplicate.

use std::collections::HashMap;

#[derive(Debug)]
pub struct Dedup {
    window_ms: i64,
    seen: HashMap<u128, i64>,
    max_ts: i64,
    evict_at: usize,
}

impl Dedup {
    pub fn new(window_ms: i64) -> Dedup {
        Dedup {
            window_ms,
            seen: HashMap::new(),
            max_ts: i64::MIN,
            evict_at: 1 << 20,
        }
    }

    /// True when `id` was already seen within the window of `ts`; otherwise remembers it.
    pub fn check_and_insert(&mut self, id: u128, ts: i64) -> bool {
        if let Some(&seen) = self.seen.get(&id)
            && (seen - ts).abs() <= self.window_ms
        {
            return true;
        }
        self.seen.insert(id, ts);
        self.max_ts = self.max_ts.max(ts);
        if self.seen.len() >= self.evict_at {
            let cutoff = self.max_ts.saturating_sub(self.window_ms);
            self.seen.retain(|_, t| *t >= cutoff);
            self.evict_at = (self.seen.len() * 2).max(1 << 20);
        }
        false
    }

    /// Forgets ids whose write failed, so a retry is not taken for a duplicate.
    pub fn forget(&mut self, ids: &[u128]) {
        for id in ids {
            self.seen.remove(id);
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
    fn window_is_by_event_time() {
        let day = 86_400_000;
        let mut d = Dedup::new(7 * day);
        assert!(!d.check_and_insert(1, 0));
        assert!(d.check_and_insert(1, 6 * day));
        assert!(
            !d.check_and_insert(1, 8 * day),
            "outside the window it is a new event"
        );
        assert!(!d.check_and_insert(2, 0));
        d.forget(&[2]);
        assert!(!d.check_and_insert(2, 0));
    }
}

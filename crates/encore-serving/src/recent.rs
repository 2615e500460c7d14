//! Plays since the served model was trained, per listener, fed by the ingest path: a listener
//! the model never saw is served by fold-in from these, and what they just played is not
//! recommended back. Bounded: at most `max_items` items per listener (oldest dropped) and
//! `max_users` listeners (an arbitrary one dropped when full).

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug)]
pub struct RecentActivity {
    users: Mutex<HashMap<String, Vec<(String, u32)>>>,
    max_users: usize,
    max_items: usize,
}

impl RecentActivity {
    pub fn new(max_users: usize, max_items: usize) -> RecentActivity {
        RecentActivity {
            users: Mutex::new(HashMap::new()),
            max_users: max_users.max(1),
            max_items: max_items.max(1),
        }
    }

    /// One more play of `item` by `user`: a stream counts, a skip only marks the item as played
    /// (its count stays what the streams made it, 0 when never streamed).
    pub fn record(&self, user: &str, item: &str, streamed: bool) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if !users.contains_key(user)
            && users.len() >= self.max_users
            && let Some(victim) = users.keys().next().cloned()
        {
            users.remove(&victim);
        }
        let items = users.entry(user.to_owned()).or_default();
        match items.iter().position(|(i, _)| i == item) {
            Some(at) => {
                let mut entry = items.remove(at);
                entry.1 += u32::from(streamed);
                items.push(entry);
            }
            None => {
                if items.len() >= self.max_items {
                    items.remove(0);
                }
                items.push((item.to_owned(), u32::from(streamed)));
            }
        }
    }

    /// `user`'s recent items with stream counts (0: only skipped), least recent first.
    pub fn get(&self, user: &str) -> Vec<(String, u32)> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.get(user).cloned().unwrap_or_default()
    }

    /// Forgets `user` (erased).
    pub fn forget(&self, user: &str) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
    }

    /// Forgets everything (a newly trained model has seen it).
    pub fn clear(&self) {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn users(&self) -> usize {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_moves_to_the_end_and_stays_bounded() {
        let r = super::RecentActivity::new(2, 2);
        r.record("a", "x", true);
        r.record("a", "y", true);
        r.record("a", "x", true);
        assert_eq!(r.get("a"), vec![("y".into(), 1), ("x".into(), 2)]);
        r.record("a", "z", false);
        assert_eq!(r.get("a"), vec![("x".into(), 2), ("z".into(), 0)]);
        r.record("a", "z", false);
        assert_eq!(r.get("a"), vec![("x".into(), 2), ("z".into(), 0)]);
        r.record("b", "x", true);
        r.record("c", "x", true);
        assert_eq!(r.users(), 2);
    }
}

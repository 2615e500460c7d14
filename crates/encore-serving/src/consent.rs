//! Who has withdrawn personalization, as their newest plays say: a listener whose newest play
//! came without `consent.personalization` is served nothing personal (no trained vector, no
//! fold-in, no mixes or blends) until a newer play grants it again. Only withdrawals are kept,
//! so the book grows with opted-out listeners, not with the audience; a grant older than a
//! withdrawal already recorded changes nothing (plays may arrive out of order), and a
//! withdrawal always wins over what is not recorded (erring on the listener's side).

use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct ConsentBook {
    /// listener -> time of the newest play without personalization consent
    withdrawn: RwLock<HashMap<String, i64>>,
}

impl ConsentBook {
    /// A play of `user` that ended at `ts_ms`, with or without personalization consent; true
    /// when it changed what the listener allows.
    pub fn record(&self, user: &str, ts_ms: i64, personalization: bool) -> bool {
        if personalization {
            // the common case takes only the read lock
            let newer = self
                .withdrawn
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(user)
                .is_some_and(|&at| ts_ms > at);
            if newer {
                self.withdrawn
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(user);
            }
            newer
        } else {
            let mut w = self.withdrawn.write().unwrap_or_else(|e| e.into_inner());
            let at = w.entry(user.to_owned()).or_insert(ts_ms);
            *at = (*at).max(ts_ms);
            true
        }
    }

    /// Whether `user` has withdrawn personalization.
    pub fn withdrawn(&self, user: &str) -> bool {
        self.withdrawn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(user)
    }

    pub fn len(&self) -> usize {
        self.withdrawn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_newest_play_decides_and_withdrawal_wins_ties() {
        let b = super::ConsentBook::default();
        assert!(!b.withdrawn("u"));
        b.record("u", 100, false);
        assert!(b.withdrawn("u"));
        // an older grant arriving late changes nothing
        assert!(!b.record("u", 50, true));
        assert!(b.withdrawn("u"));
        assert!(!b.record("u", 100, true));
        assert!(b.withdrawn("u"));
        assert!(b.record("u", 101, true));
        assert!(!b.withdrawn("u"));
        assert!(b.is_empty());
    }
}

//! Bounded work in flight: a [`Limit`] admits at most `max` operations at once and refuses the
//! rest at once (no queue), so memory and latency stay bounded under any load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone)]
pub struct Limit {
    max: usize,
    used: Arc<AtomicUsize>,
}

/// One admitted operation; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limit {
    pub fn new(max: usize) -> Limit {
        Limit {
            max: max.max(1),
            used: Arc::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot, or `None` when `max` operations are in flight.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(Arc::clone(&self.used)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_and_frees_on_drop() {
        let l = Limit::new(2);
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        drop(a);
        assert!(l.try_acquire().is_some());
    }

    #[test]
    fn concurrent_acquirers_never_exceed_max() {
        let l = Limit::new(3);
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        if let Some(p) = l.try_acquire() {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            now.fetch_sub(1, Ordering::SeqCst);
                            drop(p);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }
}

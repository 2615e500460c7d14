//! Background work in one shape: a [`BatchWriter`] takes items from request paths through a
//! bounded queue and applies them in batches on a thread of its own; [`every`] repeats a task
//! while what it works on is alive. No request ever waits on either.

use std::sync::Weak;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// How a writer batches: a batch is applied when it holds `max_items`, or `linger` after its
/// first item arrived, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// batches (sends) the queue holds before senders are refused
    pub queue: usize,
    pub max_items: usize,
    pub linger: Duration,
}

/// The sending end of a batching writer; cheap to clone. The thread ends once every sender is
/// dropped, after applying what was queued.
#[derive(Debug)]
pub struct BatchWriter<T> {
    queue: SyncSender<Vec<T>>,
}

impl<T> Clone for BatchWriter<T> {
    fn clone(&self) -> Self {
        BatchWriter {
            queue: self.queue.clone(),
        }
    }
}

/// The writer's queue was full: the items were not taken (the caller counts or drops them).
#[derive(Debug)]
pub struct Full<T>(pub Vec<T>);

impl<T: Send + 'static> BatchWriter<T> {
    /// Starts the writer thread `name`, which calls `apply` with each batch.
    pub fn start(
        name: &str,
        batching: Batching,
        mut apply: impl FnMut(Vec<T>) + Send + 'static,
    ) -> std::io::Result<BatchWriter<T>> {
        let (queue, rx) = std::sync::mpsc::sync_channel::<Vec<T>>(batching.queue.max(1));
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Some(batch) = next_batch(&rx, batching) {
                    apply(batch);
                }
            })?;
        Ok(BatchWriter { queue })
    }

    /// Hands `items` over without blocking.
    pub fn try_send(&self, items: Vec<T>) -> Result<(), Full<T>> {
        if items.is_empty() {
            return Ok(());
        }
        self.queue.try_send(items).map_err(|e| match e {
            TrySendError::Full(v) | TrySendError::Disconnected(v) => Full(v),
        })
    }
}

/// Waits for a first item, then gathers more until the batch is full or has lingered long
/// enough; `None` once every sender is gone and nothing is left.
fn next_batch<T>(rx: &Receiver<Vec<T>>, b: Batching) -> Option<Vec<T>> {
    let mut batch = rx.recv().ok()?;
    let deadline = Instant::now() + b.linger;
    while batch.len() < b.max_items {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(mut more) => batch.append(&mut more),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

/// Runs `task` on `target` now and then every `period` on a thread of its own, until `target`
/// is dropped (`first_after`: wait one period before the first run).
pub fn every<T: Send + Sync + 'static>(
    name: &str,
    period: Duration,
    first_after: bool,
    target: Weak<T>,
    task: impl Fn(&T) + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if first_after {
                std::thread::sleep(period);
            }
            loop {
                let Some(t) = target.upgrade() else { return };
                task(&t);
                drop(t);
                std::thread::sleep(period);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn batches_coalesce_and_nothing_queued_is_lost_at_shutdown() {
        let seen = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let sink = Arc::clone(&seen);
        let w = BatchWriter::start(
            "test-writer",
            Batching {
                queue: 64,
                max_items: 5,
                linger: Duration::from_millis(200),
            },
            move |b| sink.lock().unwrap().push(b),
        )
        .unwrap();
        for i in 0..12u32 {
            w.try_send(vec![i]).unwrap();
        }
        drop(w);
        // the thread drains what was queued, then ends
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.lock().unwrap().iter().map(Vec::len).sum::<usize>() < 12 {
            assert!(Instant::now() < deadline, "queued items were not applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        let batches = seen.lock().unwrap().clone();
        let all: Vec<u32> = batches.iter().flatten().copied().collect();
        assert_eq!(
            all,
            (0..12).collect::<Vec<_>>(),
            "order kept, nothing twice"
        );
        assert!(batches.len() < 12, "items were coalesced: {batches:?}");
        assert!(batches.iter().all(|b| b.len() <= 5), "{batches:?}");
    }

    #[test]
    fn a_full_queue_hands_the_items_back() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let g = Arc::clone(&gate);
        let w = BatchWriter::start(
            "test-full",
            Batching {
                queue: 1,
                max_items: 1,
                linger: Duration::ZERO,
            },
            move |_b: Vec<u8>| drop(g.lock()),
        )
        .unwrap();
        // one batch is taken by the (blocked) thread, one waits in the queue; then it is full
        let mut refused = None;
        for i in 0..10u8 {
            if let Err(Full(items)) = w.try_send(vec![i]) {
                refused = Some(items);
                break;
            }
        }
        drop(held);
        assert!(refused.is_some_and(|v| v.len() == 1));
    }

    #[test]
    fn a_periodic_task_repeats() {
        let target = Arc::new(std::sync::atomic::AtomicU32::new(0));
        every(
            "test-every",
            Duration::from_millis(5),
            false,
            Arc::downgrade(&target),
            |t| {
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while target.load(std::sync::atomic::Ordering::Relaxed) < 3 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

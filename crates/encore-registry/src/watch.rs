//! Alias moves as events. A [`Watcher`] polls the registry's history (cheap: one indexed query
//! after SQLite's `data_version` says something changed), so it sees moves made by any process,
//! the CLI included, and hands each one to its subscribers in order. Serving subscribes to swap
//! models; [`webhooks`] posts each move to the configured URLs.

use crate::{AliasMove, Registry, RegistryError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Polls for alias moves on a thread until dropped.
#[derive(Debug)]
pub struct Watcher {
    subscribers: Arc<Mutex<Vec<Sender<AliasMove>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching the registry of `root` for moves after the newest one now, every
    /// `interval`.
    pub fn start(root: &Path, interval: Duration) -> Result<Watcher, RegistryError> {
        let reg = Registry::open(root)?;
        let mut last = reg.last_move_id()?;
        let subscribers: Arc<Mutex<Vec<Sender<AliasMove>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (subs, halt) = (subscribers.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("registry-watch".into())
            .spawn(move || {
                while !halt.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    // one indexed look-up per tick: the newest move's id
                    match reg.last_move_id() {
                        Ok(newest) if newest > last => {}
                        _ => continue,
                    }
                    let Ok(moves) = reg.moves_since(last) else {
                        continue;
                    };
                    for m in moves {
                        last = m.id;
                        let mut subs = subs.lock().unwrap_or_else(|e| e.into_inner());
                        // a dropped receiver unsubscribes
                        subs.retain(|s| s.send(m.clone()).is_ok());
                    }
                }
            })
            .map_err(|e| RegistryError::Io(format!("cannot start the watcher thread: {e}")))?;
        Ok(Watcher {
            subscribers,
            stop,
            thread: Some(thread),
        })
    }

    /// Every move from now on, in history order.
    pub fn subscribe(&self) -> Receiver<AliasMove> {
        let (tx, rx) = channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Registry {
    /// The id of the newest alias move (0 when there is none).
    pub fn last_move_id(&self) -> Result<i64, RegistryError> {
        self.db.read(|q| {
            Ok(
                q.query_one("SELECT COALESCE(MAX(id), 0) FROM alias_history", &[])?
                    .get(0)?,
            )
        })
    }
}

/// Posts every move received on `moves` to each of `urls` as JSON (`{"event": "alias_moved",
/// "move": ...}`), on a thread, through `deliver(url, body) -> (attempts, delivered)` (which
/// signs, retries and enforces where webhooks may go). Returns the thread, which ends when
/// `moves` closes. `on_result(url, move, attempts, ok)` reports each delivery.
pub fn webhooks(
    moves: Receiver<AliasMove>,
    urls: Vec<String>,
    deliver: impl Fn(&str, &[u8]) -> (u32, bool) + Send + 'static,
    on_result: impl Fn(&str, &AliasMove, u32, bool) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("registry-webhooks".into())
        .spawn(move || {
            for m in moves {
                let body = serde_json::json!({"event": "alias_moved", "move": m}).to_string();
                for url in &urls {
                    let (tries, ok) = deliver(url, body.as_bytes());
                    on_result(url, &m, tries, ok);
                }
            }
        })
}

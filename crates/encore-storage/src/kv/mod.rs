//! The online key-value role: small values by string key in named tables, ordered by key (so an
//! entity's keys are read by prefix), written in atomic transactions, read from consistent
//! snapshots without blocking writers. The embedded backend is redb ([`redb::RedbKv`]); the
//! server backend, shared by several nodes, is Redis ([`redis::RedisKv`]): reads there are
//! read-committed, not snapshots ([`KvStore::snapshots`]), and other processes' writes are
//! announced ([`KvStore::watch`]) so caches in front of it stay coherent. Both pass the same
//! suite.

pub mod redb;
pub mod redis;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use crate::StorageError;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where a data directory's key-value stores live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// redb files in the data directory
    #[default]
    Embedded,
    /// a Redis server, every store under `<prefix>:<store name>`
    Redis { url: String, prefix: String },
}

impl Backend {
    /// `""` (embedded) or `redis://host:port/db`, with the key prefix of this deployment.
    pub fn parse(url: &str, prefix: &str) -> Result<Backend, StorageError> {
        if url.is_empty() {
            return Ok(Backend::Embedded);
        }
        if !url.starts_with("redis://") {
            return Err(StorageError::BadAddress {
                what: "the online store".into(),
                message: format!("{url:?} is not a redis:// URL (expected redis://host:port/db)"),
            });
        }
        ::redis::Client::open(url).map_err(|e| StorageError::BadAddress {
            what: "the online store".into(),
            message: format!("{e} (expected redis://host:port/db)"),
        })?;
        Ok(Backend::Redis {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// Whether several nodes share the stores (a write by one is read by the others).
    pub fn is_shared(&self) -> bool {
        *self != Backend::Embedded
    }
}

static BOUND: crate::binding::Bound<Backend> = crate::binding::Bound::new();

/// Keeps the key-value stores of the data directory `root` in `backend` for the rest of the
/// process (what the binary does once `[storage] online` is read).
pub fn bind(root: &Path, backend: Backend) {
    BOUND.set(root, backend.is_shared().then_some(backend));
}

/// The backend the data directory `root` is bound to.
pub fn backend(root: &Path) -> Backend {
    BOUND.get(root).unwrap_or_default()
}

/// The key-value store `name` of the data directory `root`: what domain crates open, never
/// naming a backend. Embedded: the redb file `<root>/<name>.redb`; bound to Redis ([`bind`]):
/// the keys under `<prefix>:<name>`.
pub fn open(root: &Path, name: &str) -> Result<Box<dyn KvStore>, StorageError> {
    Ok(match backend(root) {
        Backend::Embedded => Box::new(redb::RedbKv::open(&root.join(format!("{name}.redb")))?),
        Backend::Redis { url, prefix } => Box::new(crate::binding::blocking(|| {
            redis::RedisKv::open(&url, &format!("{prefix}:{name}"))
        })?),
    })
}

/// A write another process committed, as a [`KvStore::watch`]er hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    Written {
        table: &'a str,
        key: &'a str,
    },
    /// the feed was interrupted: writes may have been missed
    Missed,
}

/// A running watch of a store's changes; stops when dropped.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    pub(crate) fn new(stop: Arc<AtomicBool>, thread: std::thread::JoinHandle<()>) -> Watch {
        Watch {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads of one consistent snapshot.
pub trait KvRead {
    /// Calls `f` with the value of `key` in `table` (`None`: no such key, or no such table).
    fn get(
        &self,
        table: &str,
        key: &str,
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StorageError>;

    /// Calls `f` with every key in `[lo, hi)` of `table` and its value, in key order, until `f`
    /// returns false.
    fn range(
        &self,
        table: &str,
        lo: &str,
        hi: &str,
        f: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), StorageError>;

    /// Tells the reader that `keys` of `table` are about to be read, so a server backend
    /// fetches them in one round trip; a hint (embedded: nothing to do).
    fn prefetch(&self, _table: &str, _keys: &[&str]) -> Result<(), StorageError> {
        Ok(())
    }
}

/// One write transaction: reads see its own writes.
pub trait KvWrite: KvRead {
    fn put(&mut self, table: &str, key: &str, value: &[u8]) -> Result<(), StorageError>;
    /// [`KvWrite::put`] of a value the store may forget `ttl` after this write (a server
    /// backend frees it then; the embedded one keeps it, and readers judge age themselves).
    fn put_expiring(
        &mut self,
        table: &str,
        key: &str,
        value: &[u8],
        _ttl: Duration,
    ) -> Result<(), StorageError> {
        self.put(table, key, value)
    }
    /// Whether the key was there.
    fn delete(&mut self, table: &str, key: &str) -> Result<bool, StorageError>;
    /// Drops a whole table; whether it was there.
    fn drop_table(&mut self, table: &str) -> Result<bool, StorageError>;
}

pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// A consistent snapshot to read from.
    fn reader(&self) -> Result<Box<dyn KvRead + '_>, StorageError>;

    /// Runs `f` in one write transaction, serialized with other writers; commits when `f`
    /// returns `Ok`, discards every write otherwise.
    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn KvWrite) -> Result<(), StorageError>,
    ) -> Result<(), StorageError>;

    /// Rewrites the store so the bytes of deleted values are gone from its files (after an
    /// erasure).
    fn compact(&self) -> Result<(), StorageError>;

    /// Whether each read is a network round trip (a server backend), so reads are worth
    /// batching with [`KvRead::prefetch`].
    fn is_remote(&self) -> bool {
        false
    }

    /// Whether a reader is a consistent snapshot (true) or sees each value whole as of its
    /// read, commits made meanwhile included (a server backend).
    fn snapshots(&self) -> bool {
        true
    }

    /// Calls `on_change` with the writes other processes commit from now on, until the
    /// returned watch is dropped. `None`: the store is written through this handle only
    /// (embedded), nothing to watch.
    fn watch(
        &self,
        _on_change: Box<dyn Fn(Change<'_>) + Send + Sync>,
    ) -> Result<Option<Watch>, StorageError> {
        Ok(None)
    }
}

impl dyn KvStore + '_ {
    /// [`KvStore::run_write`] with a result: `f`'s value, or its error unchanged (nothing
    /// written).
    pub fn write<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&mut dyn KvWrite) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut f = Some(f);
        let mut out: Option<Result<T, E>> = None;
        let r = self.run_write(&mut |tx| {
            let Some(f) = f.take() else {
                return Err(StorageError::RolledBack);
            };
            let r = f(tx);
            let failed = r.is_err();
            out = Some(r);
            if failed {
                Err(StorageError::RolledBack)
            } else {
                Ok(())
            }
        });
        match (out, r) {
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(e.into()),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (None, Ok(())) => Err(StorageError::RolledBack.into()),
        }
    }
}

impl dyn KvRead + '_ {
    /// The value of `key` in `table`, copied.
    pub fn get_owned(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let mut out = None;
        self.get(table, key, &mut |v| out = v.map(<[u8]>::to_vec))?;
        Ok(out)
    }
}

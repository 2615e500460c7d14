//! The online key-value role: small values by string key in named tables, ordered by key (so an
//! entity's keys are read by prefix), written in atomic transactions, read from consistent
//! snapshots without blocking writers. The embedded backend is redb ([`redb::RedbKv`]); a
//! server backend (Redis) implements the same trait and passes the same suite.

pub mod redb;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use crate::StorageError;

/// The key-value store `name` of the data directory `root`: what domain crates open, never
/// naming a backend. Embedded: the redb file `<root>/<name>.redb`.
pub fn open(root: &std::path::Path, name: &str) -> Result<Box<dyn KvStore>, StorageError> {
    Ok(Box::new(redb::RedbKv::open(
        &root.join(format!("{name}.redb")),
    )?))
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
}

/// One write transaction: reads see its own writes.
pub trait KvWrite: KvRead {
    fn put(&mut self, table: &str, key: &str, value: &[u8]) -> Result<(), StorageError>;
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

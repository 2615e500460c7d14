//! The embedded key-value backend: one redb file, tables of `&str` keys and byte values.

use super::{KvRead, KvStore, KvWrite};
use crate::StorageError;
use ::redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, Table,
    TableDefinition, TableError, WriteTransaction,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// A table of the store as a snapshot reads it.
type ReadTable = ReadOnlyTable<&'static str, &'static [u8]>;

fn def(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

#[derive(Debug)]
pub struct RedbKv {
    path: PathBuf,
    /// shared by every transaction; taken exclusively only to compact
    db: RwLock<Database>,
}

impl RedbKv {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<RedbKv, StorageError> {
        let db = Database::create(path).map_err(|e| err(path, e))?;
        Ok(RedbKv {
            path: path.to_path_buf(),
            db: RwLock::new(db),
        })
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// A redb error in the store's terms: damage is data loss, the rest unavailable.
fn err(path: &Path, e: impl Into<::redb::Error>) -> StorageError {
    match e.into() {
        ::redb::Error::Corrupted(m) => StorageError::Corrupt {
            path: path.to_path_buf(),
            message: m,
        },
        ::redb::Error::Io(source) => StorageError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => StorageError::Corrupt {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// `f` with the value of `key` in `t`.
fn get_in(
    path: &Path,
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    f: &mut dyn FnMut(Option<&[u8]>),
) -> Result<(), StorageError> {
    let g = t.get(key).map_err(|e| err(path, e))?;
    f(g.as_ref().map(|g| g.value()));
    Ok(())
}

/// `f` with every key in `[lo, hi)` of `t` and its value, until it returns false.
fn range_in(
    path: &Path,
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    (lo, hi): (&str, &str),
    f: &mut dyn FnMut(&str, &[u8]) -> bool,
) -> Result<(), StorageError> {
    if lo >= hi {
        return Ok(());
    }
    for item in t.range(lo..hi).map_err(|e| err(path, e))? {
        let (k, v) = item.map_err(|e| err(path, e))?;
        if !f(k.value(), v.value()) {
            break;
        }
    }
    Ok(())
}

struct Reader<'a> {
    path: &'a Path,
    tx: ReadTransaction,
    /// tables opened so far (`None`: it does not exist)
    tables: RefCell<HashMap<String, Option<ReadTable>>>,
}

impl Reader<'_> {
    /// Calls `f` with `table` (`None` when it does not exist), opening it once per snapshot.
    fn with_table(
        &self,
        table: &str,
        f: &mut dyn FnMut(Option<&ReadTable>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut tables = self.tables.borrow_mut();
        if !tables.contains_key(table) {
            let t = match self.tx.open_table(def(table)) {
                Ok(t) => Some(t),
                Err(TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(err(self.path, e)),
            };
            tables.insert(table.to_owned(), t);
        }
        f(tables.get(table).and_then(Option::as_ref))
    }
}

impl KvRead for Reader<'_> {
    fn get(
        &self,
        table: &str,
        key: &str,
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StorageError> {
        self.with_table(table, &mut |t| match t {
            None => {
                f(None);
                Ok(())
            }
            Some(t) => get_in(self.path, t, key, f),
        })
    }

    fn range(
        &self,
        table: &str,
        lo: &str,
        hi: &str,
        f: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.with_table(table, &mut |t| match t {
            None => Ok(()),
            Some(t) => range_in(self.path, t, (lo, hi), f),
        })
    }
}

struct Writer<'t> {
    path: &'t Path,
    tx: &'t WriteTransaction,
    tables: HashMap<String, Table<'t, &'static str, &'static [u8]>>,
}

impl<'t> Writer<'t> {
    fn table(
        &mut self,
        name: &str,
    ) -> Result<&mut Table<'t, &'static str, &'static [u8]>, StorageError> {
        if !self.tables.contains_key(name) {
            let t = self
                .tx
                .open_table(def(name))
                .map_err(|e| err(self.path, e))?;
            self.tables.insert(name.to_owned(), t);
        }
        Ok(self.tables.get_mut(name).expect("opened above"))
    }
}

impl KvRead for Writer<'_> {
    fn get(
        &self,
        table: &str,
        key: &str,
        f: &mut dyn FnMut(Option<&[u8]>),
    ) -> Result<(), StorageError> {
        match self.tables.get(table) {
            Some(t) => get_in(self.path, t, key, f),
            None => {
                let t = self
                    .tx
                    .open_table(def(table))
                    .map_err(|e| err(self.path, e))?;
                get_in(self.path, &t, key, f)
            }
        }
    }

    fn range(
        &self,
        table: &str,
        lo: &str,
        hi: &str,
        f: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        match self.tables.get(table) {
            Some(t) => range_in(self.path, t, (lo, hi), f),
            None => {
                let t = self
                    .tx
                    .open_table(def(table))
                    .map_err(|e| err(self.path, e))?;
                range_in(self.path, &t, (lo, hi), f)
            }
        }
    }
}

impl KvWrite for Writer<'_> {
    fn put(&mut self, table: &str, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let path = self.path;
        self.table(table)?
            .insert(key, value)
            .map_err(|e| err(path, e))?;
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &str) -> Result<bool, StorageError> {
        let path = self.path;
        let removed = self.table(table)?.remove(key).map_err(|e| err(path, e))?;
        Ok(removed.is_some())
    }

    fn drop_table(&mut self, table: &str) -> Result<bool, StorageError> {
        self.tables.remove(table);
        self.tx
            .delete_table(def(table))
            .map_err(|e| err(self.path, e))
    }
}

impl KvStore for RedbKv {
    fn reader(&self) -> Result<Box<dyn KvRead + '_>, StorageError> {
        let tx = self.db().begin_read().map_err(|e| err(&self.path, e))?;
        Ok(Box::new(Reader {
            path: &self.path,
            tx,
            tables: RefCell::default(),
        }))
    }

    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn KvWrite) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let tx = self.db().begin_write().map_err(|e| err(&self.path, e))?;
        {
            let mut w = Writer {
                path: &self.path,
                tx: &tx,
                tables: HashMap::new(),
            };
            // an error drops the transaction unwritten
            f(&mut w)?;
        }
        tx.commit().map_err(|e| err(&self.path, e))
    }

    /// Waits for transactions in flight to end (a few seconds at most), then compacts.
    fn compact(&self) -> Result<(), StorageError> {
        for _ in 0..100 {
            let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
            match db.compact() {
                Ok(true) => continue,
                Ok(false) => return Ok(()),
                Err(::redb::CompactionError::TransactionInProgress) => {
                    drop(db);
                    std::thread::sleep(std::time::Duration::from_millis(30));
                }
                Err(e) => return Err(err(&self.path, e)),
            }
        }
        Err(StorageError::WriteFailed {
            message: format!(
                "{}: compaction did not finish: transactions kept the file busy",
                self.path.display()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_passes_the_key_value_conformance_suite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        crate::kv::testsuite::run(&|name| {
            Box::new(RedbKv::open(&dir.join(format!("{name}.redb"))).unwrap())
        });
    }
}

//! The embedded metadata backend: one SQLite file per component, in WAL mode, writers
//! serialized by `BEGIN IMMEDIATE` (threads and processes alike) with a 30 s busy timeout.

use super::{Durability, Metadata, MetadataError, Row, Sql, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug)]
pub struct SqliteMetadata {
    path: PathBuf,
    /// one connection for writes (a write holds it for its transaction)
    writer: Mutex<Connection>,
    /// one for reads, so a long read does not wait for a write to commit (WAL readers see the
    /// last commit)
    reader: Mutex<Connection>,
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteMetadata {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteMetadata, MetadataError> {
        let open = || -> Result<Connection, MetadataError> {
            let conn = Connection::open(path).map_err(|e| error(path, e))?;
            conn.busy_timeout(Duration::from_secs(30))
                .map_err(|e| error(path, e))?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| error(path, e))?;
            let sync = match durability {
                Durability::Full => "FULL",
                Durability::Normal => "NORMAL",
            };
            conn.pragma_update(None, "synchronous", sync)
                .map_err(|e| error(path, e))?;
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(|e| error(path, e))?;
            Ok(conn)
        };
        let writer = open()?;
        let reader = open()?;
        Ok(SqliteMetadata {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one transaction of `behavior` on `conn`; committed when `f` succeeds,
    /// rolled back (dropped) otherwise.
    fn run(
        &self,
        conn: &Mutex<Connection>,
        behavior: TransactionBehavior,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError> {
        let mut conn = lock(conn);
        let tx = conn
            .transaction_with_behavior(behavior)
            .map_err(|e| error(&self.path, e))?;
        f(&mut Conn {
            conn: &tx,
            path: &self.path,
        })?;
        tx.commit().map_err(|e| error(&self.path, e))
    }
}

/// A SQLite error in the store's terms.
fn error(path: &Path, e: rusqlite::Error) -> MetadataError {
    use rusqlite::ErrorCode as C;
    let what = format!("{}: {e}", path.display());
    match e.sqlite_error_code() {
        Some(C::ConstraintViolation) => MetadataError::Conflict(what),
        Some(
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::DiskFull
            | C::SystemIoFailure
            | C::CannotOpen
            | C::ReadOnly
            | C::PermissionDenied
            | C::OutOfMemory,
        ) => MetadataError::Unavailable(what),
        Some(C::DatabaseCorrupt | C::NotADatabase) => MetadataError::Corrupt(what),
        _ => MetadataError::Invalid(what),
    }
}

struct Conn<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

fn bind(v: &Value) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match v {
        Value::Null => ValueRef::Null,
        Value::Int(x) => ValueRef::Integer(*x),
        Value::Real(x) => ValueRef::Real(*x),
        Value::Text(s) => ValueRef::Text(s.as_bytes()),
        Value::Blob(b) => ValueRef::Blob(b),
    })
}

struct Bound<'a>(&'a Value);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(bind(self.0))
    }
}

fn read(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(x) => Value::Int(x),
        ValueRef::Real(x) => Value::Real(x),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Sql for Conn<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, MetadataError> {
        let bound: Vec<Bound<'_>> = params.iter().map(Bound).collect();
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| error(self.path, e))?;
        stmt.execute(rusqlite::params_from_iter(bound.iter()))
            .map(|n| n as u64)
            .map_err(|e| error(self.path, e))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, MetadataError> {
        let bound: Vec<Bound<'_>> = params.iter().map(Bound).collect();
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| error(self.path, e))?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(bound.iter()))
            .map_err(|e| error(self.path, e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| error(self.path, e))? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(read(r.get_ref(i).map_err(|e| error(self.path, e))?));
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    fn execute_script(&mut self, script: &str) -> Result<(), MetadataError> {
        self.conn
            .execute_batch(script)
            .map_err(|e| error(self.path, e))
    }
}

impl Metadata for SqliteMetadata {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError> {
        self.run(&self.writer, TransactionBehavior::Immediate, f)
    }

    /// A deferred transaction: one snapshot for every statement of the read.
    fn run_read(
        &self,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError> {
        self.run(&self.reader, TransactionBehavior::Deferred, f)
    }

    fn purge_deleted(&self) -> Result<(), MetadataError> {
        let conn = lock(&self.writer);
        // VACUUM rebuilds the file from live rows only; the checkpoint then empties the WAL,
        // which may still hold images of the deleted rows' pages
        conn.pragma_update(None, "secure_delete", "ON")
            .and_then(|()| conn.execute_batch("VACUUM;"))
            .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
            .map_err(|e| error(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_passes_the_metadata_conformance_suite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        crate::metadata::testsuite::run(&|name| {
            Box::new(
                SqliteMetadata::open(&dir.join(format!("{name}.sqlite")), Durability::Full)
                    .unwrap(),
            )
        });
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_as_damaged() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("junk.sqlite");
        std::fs::write(&p, vec![0x5a; 8192]).unwrap();
        let e = SqliteMetadata::open(&p, Durability::Full)
            .and_then(|db| (&db as &dyn Metadata).migrate("x", &["CREATE TABLE x (id INTEGER)"]))
            .unwrap_err();
        assert_eq!(
            encore_core::Coded::code(&e),
            encore_core::ErrorCode::DataLoss,
            "{e}"
        );
        assert!(e.to_string().contains("junk.sqlite"), "{e}");
    }
}

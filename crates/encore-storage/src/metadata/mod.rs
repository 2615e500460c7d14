//! The metadata store: the small, transactional, relational state of the platform (the model
//! registry, experiments, evaluations, keys and the audit log, feature definitions). Domain
//! crates speak portable SQL to a [`Metadata`] and never name a backend; the embedded backend is
//! SQLite ([`sqlite::SqliteMetadata`], one file per component), and a server backend speaks the
//! same statements (placeholders are written `?1`, `?2`, ...; `RETURNING` and
//! `ON CONFLICT ... DO UPDATE` are common ground).
//!
//! Every write runs in one serialized transaction ([`Metadata::write`]): committed whole when
//! the closure returns `Ok`, rolled back when it returns an error (the caller's own error comes
//! back unchanged). Schemas evolve by numbered migrations per component ([`Metadata::migrate`]).
//!
//! ```
//! use encore_storage::metadata::{Metadata, sqlite::SqliteMetadata, Durability};
//! let tmp = tempfile::tempdir().unwrap();
//! let db: Box<dyn Metadata> =
//!     Box::new(SqliteMetadata::open(&tmp.path().join("m.sqlite"), Durability::Full).unwrap());
//! db.migrate("notes", &["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"]).unwrap();
//! let id: i64 = db
//!     .write(|tx| tx.query_one("INSERT INTO notes (text) VALUES (?1) RETURNING id", &["hi".into()])?.get(0))
//!     .unwrap();
//! let text: String = db.read(|q| q.query_one("SELECT text FROM notes WHERE id = ?1", &[id.into()])?.get(0)).unwrap();
//! assert_eq!(text, "hi");
//! ```

pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testsuite")]
pub mod testsuite;

/// Where a data directory's metadata lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// a SQLite file per component in the data directory
    #[default]
    Embedded,
    /// a schema per component (`<prefix>_<component>`) on a PostgreSQL server, shared by every
    /// node that names it
    Postgres { url: String, prefix: String },
}

impl Backend {
    /// `""` (embedded) or a `postgres://` / `postgresql://` URL; `prefix` names the schemas.
    pub fn parse(url: &str, prefix: &str) -> Result<Backend, MetadataError> {
        if url.is_empty() {
            return Ok(Backend::Embedded);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // the schema names are checked now, not at the first open
            postgres::check_prefix(prefix)?;
            return Ok(Backend::Postgres {
                url: url.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        Err(MetadataError::Invalid(format!(
            "[storage] metadata {:?}: expected \"\" (embedded SQLite) or a postgres:// URL",
            url.chars().take(40).collect::<String>()
        )))
    }
}

static BOUND: crate::binding::Bound<Backend> = crate::binding::Bound::new();

/// Keeps the metadata of the data directory `root` in `backend` for the rest of the process:
/// what the binary does once its configuration (`[storage] metadata`) is read, before any
/// component opens its store.
pub fn bind(root: &std::path::Path, backend: Backend) {
    BOUND.set(root, (backend != Backend::Embedded).then_some(backend));
}

/// Where the metadata of the data directory `root` lives.
pub fn backend_of(root: &std::path::Path) -> Backend {
    BOUND.get(root).unwrap_or_default()
}

/// The metadata store of `component` (`registry`, `experiments`, `evals`, `access`) for the data
/// directory `root`: what domain crates open, never naming a backend. Embedded: the SQLite file
/// `<root>/<component>.sqlite`; bound to PostgreSQL ([`bind`]): the schema
/// `<prefix>_<component>` (every commit durable whatever `durability` asks).
pub fn open(
    root: &std::path::Path,
    component: &str,
    durability: Durability,
) -> Result<std::sync::Arc<dyn Metadata>, MetadataError> {
    match backend_of(root) {
        Backend::Embedded => {
            let path = root.join(format!("{component}.sqlite"));
            Ok(std::sync::Arc::new(sqlite::SqliteMetadata::open(
                &path, durability,
            )?))
        }
        Backend::Postgres { url, prefix } => Ok(std::sync::Arc::new(
            postgres::PostgresMetadata::open(&url, &prefix, component)?,
        )),
    }
}

use encore_core::{Coded, ErrorCode};

/// A value bound to, or read from, a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// a uniqueness or other constraint refused the write
    #[error("metadata constraint: {0}")]
    Conflict(String),
    /// the store is busy, locked, or cannot be reached; worth retrying
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// the store's file or pages are damaged
    #[error("metadata store damaged: {0}")]
    Corrupt(String),
    /// a statement or a column's type is not what the code expects
    #[error("metadata: {0}")]
    Invalid(String),
    /// a migration applied by a newer build than this one
    #[error("metadata of {component} is at schema version {found}; this build knows up to {known}")]
    TooNew {
        component: String,
        found: i64,
        known: i64,
    },
    /// the caller's closure failed: the transaction was rolled back
    #[error("transaction rolled back")]
    RolledBack,
}

impl Coded for MetadataError {
    fn code(&self) -> ErrorCode {
        match self {
            MetadataError::Conflict(_) => ErrorCode::Conflict,
            MetadataError::Unavailable(_) => ErrorCode::Unavailable,
            MetadataError::Corrupt(_) => ErrorCode::DataLoss,
            MetadataError::TooNew { .. } => ErrorCode::FailedPrecondition,
            MetadataError::Invalid(_) | MetadataError::RolledBack => ErrorCode::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            MetadataError::TooNew { .. } => Some("run the newer encore build".into()),
            MetadataError::Unavailable(_) => Some("retry; check the disk or the database".into()),
            _ => None,
        }
    }
}

/// How hard a commit works to survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// every commit is on disk when it returns
    Full,
    /// a commit may be lost in a power cut (never corrupted): for data that can be recomputed
    Normal,
}

/// Statements inside a transaction (or a read).
pub trait Sql {
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, MetadataError>;
    /// Runs a query; every row.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, MetadataError>;
    /// Runs a script of several statements without parameters (a migration step).
    fn execute_script(&mut self, script: &str) -> Result<(), MetadataError>;
}

impl dyn Sql + '_ {
    /// The first row, if any.
    pub fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, MetadataError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row; `Invalid` when there is none.
    pub fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, MetadataError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| MetadataError::Invalid(format!("no row for {sql:?}")))
    }
}

/// A metadata store (see the module documentation).
pub trait Metadata: Send + Sync + std::fmt::Debug {
    /// Which backend this is (`sqlite`, `postgres`), for messages and metrics.
    fn backend(&self) -> &'static str;

    /// Runs `f` in one write transaction, serialized with every other writer (threads and
    /// processes); commits when `f` returns `Ok`, rolls back otherwise.
    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError>;

    /// Runs `f` on a consistent snapshot, without blocking writers.
    fn run_read(
        &self,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError>;

    /// Reclaims the space of deleted rows so they cannot be read back from the store's files
    /// (after an erasure).
    fn purge_deleted(&self) -> Result<(), MetadataError>;
}

impl dyn Metadata + '_ {
    /// [`Metadata::run_write`] with a result: `f`'s value, or its error unchanged (after the
    /// rollback).
    pub fn write<T, E: From<MetadataError>>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut f = Some(f);
        let mut out = None;
        let r = self.run_write(&mut |tx| run_once(&mut f, &mut out, tx));
        settle(out, r)
    }

    /// [`Metadata::run_read`] with a result.
    pub fn read<T, E: From<MetadataError>>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut f = Some(f);
        let mut out = None;
        let r = self.run_read(&mut |q| run_once(&mut f, &mut out, q));
        settle(out, r)
    }

    /// Applies the steps of `component`'s schema not applied yet, in order, each in its own
    /// transaction with its number recorded; refuses a store migrated further than `steps`.
    pub fn migrate(&self, component: &str, steps: &[&str]) -> Result<(), MetadataError> {
        self.write(|tx| {
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, \
                 step INTEGER NOT NULL, PRIMARY KEY (component, step))",
                &[],
            )?;
            Ok::<_, MetadataError>(())
        })?;
        let known = steps.len() as i64;
        let applied: i64 = self.read(|q| {
            q.query_one(
                "SELECT COALESCE(MAX(step), 0) FROM schema_migrations WHERE component = ?1",
                &[component.into()],
            )?
            .get(0)
        })?;
        if applied > known {
            return Err(MetadataError::TooNew {
                component: component.into(),
                found: applied,
                known,
            });
        }
        for (i, step) in steps.iter().enumerate().skip(applied as usize) {
            let n = i as i64 + 1;
            self.write(|tx| {
                // another process may have applied it meanwhile
                let done = tx
                    .query_opt(
                        "SELECT step FROM schema_migrations WHERE component = ?1 AND step = ?2",
                        &[component.into(), n.into()],
                    )?
                    .is_some();
                if !done {
                    tx.execute_script(step)?;
                    tx.execute(
                        "INSERT INTO schema_migrations (component, step) VALUES (?1, ?2)",
                        &[component.into(), n.into()],
                    )?;
                }
                Ok::<_, MetadataError>(())
            })?;
        }
        Ok(())
    }
}

fn run_once<T, E, F: FnOnce(&mut dyn Sql) -> Result<T, E>>(
    f: &mut Option<F>,
    out: &mut Option<Result<T, E>>,
    sql: &mut dyn Sql,
) -> Result<(), MetadataError> {
    let Some(f) = f.take() else {
        return Err(MetadataError::Invalid(
            "a transaction body ran twice".into(),
        ));
    };
    let r = f(sql);
    let failed = r.is_err();
    *out = Some(r);
    if failed {
        Err(MetadataError::RolledBack)
    } else {
        Ok(())
    }
}

fn settle<T, E: From<MetadataError>>(
    out: Option<Result<T, E>>,
    r: Result<(), MetadataError>,
) -> Result<T, E> {
    match (out, r) {
        (Some(Err(e)), _) => Err(e),
        (_, Err(e)) => Err(e.into()),
        (Some(Ok(v)), Ok(())) => Ok(v),
        (None, Ok(())) => {
            Err(MetadataError::Invalid("a transaction body did not run".into()).into())
        }
    }
}

impl Row {
    /// Column `i` as `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, MetadataError> {
        let v = self.0.get(i).ok_or_else(|| {
            MetadataError::Invalid(format!("no column {i} in a row of {}", self.0.len()))
        })?;
        T::from_value(v).map_err(|want| {
            MetadataError::Invalid(format!("column {i}: expected {want}, found {v:?}"))
        })
    }
}

/// A Rust type a column converts to.
pub trait FromValue: Sized {
    /// the value, or the name of the type expected
    fn from_value(v: &Value) -> Result<Self, &'static str>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Int(x) => Ok(*x),
            _ => Err("an integer"),
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, &'static str> {
                match v {
                    Value::Int(x) => <$t>::try_from(*x).map_err(|_| concat!("an integer that fits ", stringify!($t))),
                    _ => Err("an integer"),
                }
            }
        }
        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                Value::Int(x as i64)
            }
        }
    )*};
}
int_from_value!(i32, u32, u16, u8, usize, u64);

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Int(x) => Ok(*x != 0),
            _ => Err("a boolean (integer)"),
        }
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Real(x) => Ok(*x),
            Value::Int(x) => Ok(*x as f64),
            _ => Err("a number"),
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            _ => Err("text"),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err("a blob"),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, &'static str> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl From<i64> for Value {
    fn from(x: i64) -> Value {
        Value::Int(x)
    }
}

impl From<bool> for Value {
    fn from(x: bool) -> Value {
        Value::Int(i64::from(x))
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Real(x)
    }
}

impl From<&str> for Value {
    fn from(x: &str) -> Value {
        Value::Text(x.to_owned())
    }
}

impl From<String> for Value {
    fn from(x: String) -> Value {
        Value::Text(x)
    }
}

impl From<&String> for Value {
    fn from(x: &String) -> Value {
        Value::Text(x.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(x: Vec<u8>) -> Value {
        Value::Blob(x)
    }
}

impl From<&[u8]> for Value {
    fn from(x: &[u8]) -> Value {
        Value::Blob(x.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(x: Option<T>) -> Value {
        x.map_or(Value::Null, Into::into)
    }
}

/// `[a.into(), b.into(), ...]`: the parameters of a statement.
#[macro_export]
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$($crate::metadata::Value::from($x)),*] as &[$crate::metadata::Value]
    };
}

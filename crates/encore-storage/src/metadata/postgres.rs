//! The metadata store on PostgreSQL, for several encore nodes sharing one platform state. Each
//! component (`registry`, `experiments`, ...) is a schema of its own (`<prefix>_<component>`),
//! as each is a file of its own on the embedded backend.
//!
//! The portable dialect the domain crates write (SQLite's, restricted) is translated once per
//! statement: `?N` placeholders become `$N`; in migrations, `INTEGER PRIMARY KEY` becomes an
//! identity column, `INTEGER` `BIGINT`, `REAL` `DOUBLE PRECISION`, `BLOB` `BYTEA`, and
//! `WITHOUT ROWID` goes; `instr(a, b)` is `strpos(a, b)`. Values bind by the type PostgreSQL
//! infers for each parameter, so an integer may fill an `INTEGER` or a `BIGINT` column.
//!
//! Writers are serialized per component by a transaction-scoped advisory lock, the same
//! guarantee SQLite's `BEGIN IMMEDIATE` gives across processes: a read-modify-write transaction
//! never loses an update, whichever node runs it. Reads run on a `REPEATABLE READ` snapshot.

use super::{Metadata, MetadataError, Row, Sql, Value};
use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, IsolationLevel, NoTls};
use std::error::Error;
use std::sync::Mutex;

type BoxError = Box<dyn Error + Sync + Send>;

/// Connections kept open between transactions.
const IDLE: usize = 8;

pub struct PostgresMetadata {
    url: String,
    schema: String,
    lock_key: i64,
    idle: Mutex<Vec<Client>>,
}

impl Drop for PostgresMetadata {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        blocking(|| drop(idle));
    }
}

impl std::fmt::Debug for PostgresMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresMetadata")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .finish()
    }
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A schema name from `prefix` and `component`: lowercase letters, digits and `_`.
fn schema_name(prefix: &str, component: &str) -> Result<String, MetadataError> {
    let name = format!("{prefix}_{component}").replace('-', "_");
    let ok = !prefix.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(MetadataError::Invalid(format!(
            "metadata schema {name:?}: use lowercase letters, digits and '_' (63 at most), \
             starting with a letter"
        )))
    }
}

/// Whether `prefix` makes valid schema names.
pub fn check_prefix(prefix: &str) -> Result<(), MetadataError> {
    schema_name(prefix, "x").map(|_| ())
}

use crate::binding::blocking;

/// FNV-1a of `s`: the advisory lock of one schema.
fn lock_key(s: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

impl PostgresMetadata {
    /// Connects to `url` (`postgres://user@host:port/db` or `host=... user=...`) and opens the
    /// schema `<prefix>_<component>`, created if needed.
    pub fn open(url: &str, prefix: &str, component: &str) -> Result<Self, MetadataError> {
        blocking(|| Self::open_here(url, prefix, component))
    }

    fn open_here(url: &str, prefix: &str, component: &str) -> Result<Self, MetadataError> {
        let schema = schema_name(prefix, component)?;
        let store = PostgresMetadata {
            url: url.to_owned(),
            lock_key: lock_key(&schema),
            schema,
            idle: Mutex::new(Vec::new()),
        };
        let mut client = store.connect()?;
        // concurrent creators race on the catalog: the loser sees the winner's schema on retry
        let create = format!("CREATE SCHEMA IF NOT EXISTS {}", store.schema);
        if client.batch_execute(&create).is_err() {
            client = store.connect()?;
            client.batch_execute(&create).map_err(|e| store.error(&e))?;
        }
        store.put_back(client);
        Ok(store)
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn connect(&self) -> Result<Client, MetadataError> {
        let mut client = Client::connect(&self.url, NoTls).map_err(|e| {
            MetadataError::Unavailable(format!("postgres {}: {e}", redact(&self.url)))
        })?;
        client
            .batch_execute(&format!(
                "SET search_path TO {}; SET client_min_messages TO warning",
                self.schema
            ))
            .map_err(|e| self.error(&e))?;
        Ok(client)
    }

    fn take(&self) -> Result<Client, MetadataError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    fn put_back(&self, client: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE && !client.is_closed() {
            idle.push(client);
        } else {
            drop(idle);
            // closing a connection blocks on the driver's runtime too
            blocking(|| drop(client));
        }
    }

    fn error(&self, e: &postgres::Error) -> MetadataError {
        error(&self.schema, e)
    }

    fn run(
        &self,
        write: bool,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError> {
        blocking(|| self.run_here(write, f))
    }

    fn run_here(
        &self,
        write: bool,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError> {
        let mut client = self.take()?;
        let result = (|| {
            let mut tx = if write {
                let mut tx = client.transaction().map_err(|e| self.error(&e))?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock_key])
                    .map_err(|e| self.error(&e))?;
                tx
            } else {
                client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .map_err(|e| self.error(&e))?
            };
            f(&mut Conn {
                tx: &mut tx,
                schema: &self.schema,
            })?;
            tx.commit().map_err(|e| self.error(&e))
        })();
        self.put_back(client);
        result
    }
}

/// A PostgreSQL error in the store's terms.
fn error(schema: &str, e: &postgres::Error) -> MetadataError {
    use postgres::error::SqlState;
    let what = format!("postgres {schema}: {}", describe(e));
    let Some(code) = e.code() else {
        return MetadataError::Unavailable(what);
    };
    if *code == SqlState::UNIQUE_VIOLATION
        || *code == SqlState::FOREIGN_KEY_VIOLATION
        || *code == SqlState::NOT_NULL_VIOLATION
        || *code == SqlState::CHECK_VIOLATION
        || *code == SqlState::EXCLUSION_VIOLATION
    {
        MetadataError::Conflict(what)
    } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::DISK_FULL
        || code.code().starts_with("08")
    {
        MetadataError::Unavailable(what)
    } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        MetadataError::Corrupt(what)
    } else {
        MetadataError::Invalid(what)
    }
}

/// The server's message when there is one (the driver's `Display` says only "db error").
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

struct Conn<'a, 'c> {
    tx: &'a mut postgres::Transaction<'c>,
    schema: &'a str,
}

impl Conn<'_, '_> {
    fn params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
        params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
    }

    /// `sql` prepared with each parameter typed by its value, as SQLite types them, so
    /// `?1 IS NULL OR name = ?1` needs no cast. A NULL's type is left to the server, and is
    /// `text` where the server cannot tell (`?1 IS NULL` alone).
    fn prepare(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<postgres::Statement, MetadataError> {
        let sql = statement(sql);
        let unspecified = Type::new(
            String::new(),
            0,
            postgres::types::Kind::Pseudo,
            String::new(),
        );
        let types = |null: &Type| -> Vec<Type> {
            params
                .iter()
                .map(|v| match v {
                    Value::Int(_) => Type::INT8,
                    Value::Real(_) => Type::FLOAT8,
                    Value::Text(_) => Type::TEXT,
                    Value::Blob(_) => Type::BYTEA,
                    Value::Null => null.clone(),
                })
                .collect()
        };
        let has_null = params.contains(&Value::Null);
        if has_null {
            // a failed prepare would abort the transaction: try it under a savepoint
            let mut sp = self
                .tx
                .savepoint("encore_prepare")
                .map_err(|e| error(self.schema, &e))?;
            let first = sp.prepare_typed(&sql, &types(&unspecified));
            match first {
                Ok(stmt) => {
                    sp.commit().map_err(|e| error(self.schema, &e))?;
                    return Ok(stmt);
                }
                Err(e)
                    if e.code().is_some_and(|c| {
                        *c == postgres::error::SqlState::INDETERMINATE_DATATYPE
                            || *c == postgres::error::SqlState::AMBIGUOUS_PARAMETER
                    }) =>
                {
                    drop(sp);
                }
                Err(e) => return Err(error(self.schema, &e)),
            }
            return self
                .tx
                .prepare_typed(&sql, &types(&Type::TEXT))
                .map_err(|e| error(self.schema, &e));
        }
        self.tx
            .prepare_typed(&sql, &types(&unspecified))
            .map_err(|e| error(self.schema, &e))
    }
}

impl Sql for Conn<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, MetadataError> {
        let stmt = self.prepare(sql, params)?;
        self.tx
            .execute(&stmt, &Self::params(params))
            .map_err(|e| error(self.schema, &e))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, MetadataError> {
        let stmt = self.prepare(sql, params)?;
        let rows = self
            .tx
            .query(&stmt, &Self::params(params))
            .map_err(|e| error(self.schema, &e))?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<_, Pg>(i).map(|v| v.0).map_err(|e| {
                            MetadataError::Invalid(format!(
                                "postgres {}: column {i} ({}): {e}",
                                self.schema,
                                r.columns()[i].type_()
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })
            .collect()
    }

    fn execute_script(&mut self, script: &str) -> Result<(), MetadataError> {
        self.tx
            .batch_execute(&ddl(script))
            .map_err(|e| error(self.schema, &e))
    }
}

impl Metadata for PostgresMetadata {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn run_write(
        &self,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError> {
        self.run(true, f)
    }

    fn run_read(
        &self,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<(), MetadataError>,
    ) -> Result<(), MetadataError> {
        self.run(false, f)
    }

    /// `VACUUM FULL` of every table of the schema: the tables are rewritten without the deleted
    /// rows (the write-ahead log keeps them until its next checkpoint recycles it).
    fn purge_deleted(&self) -> Result<(), MetadataError> {
        blocking(|| self.purge_here())
    }
}

impl PostgresMetadata {
    fn purge_here(&self) -> Result<(), MetadataError> {
        let mut client = self.take()?;
        let result = (|| {
            let tables = client
                .query(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
                    &[&self.schema],
                )
                .map_err(|e| self.error(&e))?;
            for t in tables {
                let name: String = t.get(0);
                client
                    .batch_execute(&format!("VACUUM FULL {}.\"{}\"", self.schema, name))
                    .map_err(|e| self.error(&e))?;
            }
            Ok(())
        })();
        self.put_back(client);
        result
    }
}

/// A statement of the portable dialect in PostgreSQL's: `?N` is `$N`, `instr` is `strpos`
/// (outside quoted strings and identifiers).
fn statement(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) => {
                out.push('$');
            }
            None if word_at(sql, i, "instr(") => {
                out.push_str("strpos(");
                for _ in 0.."instr".len() {
                    chars.next();
                }
            }
            None => out.push(c),
        }
    }
    out
}

/// Whether `word` (case-insensitive) starts at byte `i` of `s` and is not the tail of a longer
/// identifier.
fn word_at(s: &str, i: usize, word: &str) -> bool {
    let before_ok = s[..i]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
    before_ok
        && s.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// A migration script of the portable dialect in PostgreSQL's.
fn ddl(script: &str) -> String {
    let script = statement(&guards(script));
    let mut out = String::with_capacity(script.len() + 64);
    let mut rest = script.as_str();
    // whole words only, outside quotes (a migration's string literals are data)
    const SWAPS: [(&str, &str); 6] = [
        (
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        ),
        (
            "INTEGER PRIMARY KEY",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        ),
        ("WITHOUT ROWID", ""),
        ("INTEGER", "BIGINT"),
        ("REAL", "DOUBLE PRECISION"),
        ("BLOB", "BYTEA"),
    ];
    let mut quote: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        let at_word = out
            .chars()
            .next_back()
            .is_none_or(|p| !(p.is_ascii_alphanumeric() || p == '_'));
        let swap = SWAPS.iter().find(|(from, _)| {
            at_word
                && rest
                    .get(..from.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(from))
                && rest[from.len()..]
                    .chars()
                    .next()
                    .is_none_or(|n| !(n.is_ascii_alphanumeric() || n == '_'))
        });
        match swap {
            Some((from, to)) => {
                out.push_str(to);
                rest = &rest[from.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// The append-only guards of the portable dialect, SQLite triggers of the one form
/// `CREATE TRIGGER IF NOT EXISTS name BEFORE UPDATE|DELETE ON table BEGIN SELECT RAISE(ABORT,
/// 'message'); END;`, as PL/pgSQL triggers raising the same message (a `check_violation`).
fn guards(script: &str) -> String {
    const HEAD: &str = "CREATE TRIGGER IF NOT EXISTS ";
    let mut out = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(at) = rest.find(HEAD) {
        out.push_str(&rest[..at]);
        let body = &rest[at + HEAD.len()..];
        let Some(end) = body.find("END;") else {
            out.push_str(&rest[at..]);
            return out;
        };
        let words: Vec<&str> = body[..end].split_whitespace().collect();
        let message = body[..end]
            .split_once('\'')
            .and_then(|(_, m)| m.rsplit_once('\''))
            .map_or("append-only", |(m, _)| m);
        match words.as_slice() {
            [
                name,
                "BEFORE",
                event @ ("UPDATE" | "DELETE"),
                "ON",
                table,
                ..,
            ] => {
                out.push_str(&format!(
                    "CREATE OR REPLACE FUNCTION {name}_guard() RETURNS trigger LANGUAGE plpgsql \
                     AS $guard$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = \
                     'check_violation'; END $guard$;\n\
                     DROP TRIGGER IF EXISTS {name} ON {table};\n\
                     CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE \
                     FUNCTION {name}_guard();"
                ));
            }
            _ => out.push_str(&rest[at..at + HEAD.len() + end + 4]),
        }
        rest = &body[end + 4..];
    }
    out.push_str(rest);
    out
}

impl ToSql for Value {
    /// Binds by the type PostgreSQL inferred for the parameter.
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let mismatch = || -> BoxError { format!("cannot bind {self:?} as {ty}").into() };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(x) => match *ty {
                Type::INT8 => x.to_sql(ty, out),
                Type::INT4 => i32::try_from(*x).map_err(|_| mismatch())?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*x).map_err(|_| mismatch())?.to_sql(ty, out),
                Type::FLOAT8 => (*x as f64).to_sql(ty, out),
                Type::FLOAT4 => (*x as f32).to_sql(ty, out),
                Type::BOOL => (*x != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    x.to_string().to_sql(&Type::TEXT, out)
                }
                _ => Err(mismatch()),
            },
            Value::Real(x) => match *ty {
                Type::FLOAT8 => x.to_sql(ty, out),
                Type::FLOAT4 => (*x as f32).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => {
                    x.to_string().to_sql(&Type::TEXT, out)
                }
                _ => Err(mismatch()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.as_str().to_sql(&Type::TEXT, out)
                }
                Type::JSON | Type::JSONB => {
                    // binary JSONB is a version byte, then the text
                    if *ty == Type::JSONB {
                        out.extend_from_slice(&[1]);
                    }
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(mismatch()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(mismatch()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column read back as a [`Value`].
struct Pg(Value);

impl<'a> FromSql<'a> for Pg {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Pg(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::OID => Value::Int(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSON => Value::Text(std::str::from_utf8(raw)?.to_owned()),
            Type::JSONB => match raw.split_first() {
                Some((1, text)) => Value::Text(std::str::from_utf8(text)?.to_owned()),
                _ => return Err("a JSONB value of an unknown format version".into()),
            },
            _ => Value::Text(String::from_sql(ty, raw)?),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Pg(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::OID
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::NUMERIC
                | Type::BYTEA
                | Type::JSON
                | Type::JSONB
        ) || <String as FromSql>::accepts(ty)
    }
}

/// A `NUMERIC` (what `SUM` and `AVG` of integers return) as an integer when it is whole and
/// fits, a float otherwise. Binary format: digit count, weight, sign, scale, then base-10,000
/// digits.
fn numeric(raw: &[u8]) -> Result<Value, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated NUMERIC".into())
    };
    let (n, weight, sign, scale) = (word(0)?, word(1)? as i16, word(2)?, word(3)?);
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut whole: i128 = 0;
    let mut value = 0f64;
    let mut exact = scale == 0;
    for k in 0..n as usize {
        let d = word(4 + k)?;
        let power = i32::from(weight) - k as i32;
        value += f64::from(d) * 10_000f64.powi(power);
        if power >= 0 && exact {
            whole = whole
                .checked_mul(10_000)
                .and_then(|w| w.checked_add(i128::from(d)))
                .unwrap_or_else(|| {
                    exact = false;
                    0
                });
        } else if d != 0 {
            exact = false;
        }
    }
    if exact {
        // trailing base-10,000 zeros the encoding leaves out
        let missing = i32::from(weight) + 1 - i32::from(n);
        for _ in 0..missing.max(0) {
            whole = whole.saturating_mul(10_000);
        }
        if sign == 0x4000 {
            whole = -whole;
        }
        if let Ok(x) = i64::try_from(whole) {
            return Ok(Value::Int(x));
        }
    }
    Ok(Value::Real(if sign == 0x4000 { -value } else { value }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::testsuite::PostgresScratch;

    #[test]
    fn the_dialect_is_translated_outside_quotes_only() {
        assert_eq!(
            statement("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND instr(d, ?12) > 0"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND strpos(d, $12) > 0"
        );
        assert_eq!(statement("SELECT minstr(x) ?"), "SELECT minstr(x) ?");
        assert_eq!(
            ddl(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, r REAL, b BLOB, \
                 note TEXT DEFAULT 'INTEGER', realm TEXT) WITHOUT ROWID;"
            ),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, \
             r DOUBLE PRECISION, b BYTEA, note TEXT DEFAULT 'INTEGER', realm TEXT) ;"
        );
    }

    #[test]
    fn append_only_guards_become_plpgsql_triggers() {
        let got = ddl("CREATE TABLE a (seq INTEGER PRIMARY KEY);\n\
             CREATE TRIGGER IF NOT EXISTS a_no_update BEFORE UPDATE ON a\n\
             BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;\n\
             CREATE TABLE b (x TEXT);");
        assert!(got.contains("CREATE TRIGGER a_no_update BEFORE UPDATE ON a FOR EACH ROW EXECUTE FUNCTION a_no_update_guard();"), "{got}");
        assert!(
            got.contains("RAISE EXCEPTION 'the log is append-only'"),
            "{got}"
        );
        assert!(
            got.contains("DROP TRIGGER IF EXISTS a_no_update ON a;"),
            "{got}"
        );
        assert!(got.ends_with("CREATE TABLE b (x TEXT);"), "{got}");
        assert!(!got.contains("RAISE(ABORT"), "{got}");
    }

    #[test]
    fn numerics_decode_to_integers_when_whole() {
        // 12345678 = [1234, 5678], weight 1
        let enc = |n: u16, w: i16, sign: u16, scale: u16, d: &[u16]| {
            let mut v = Vec::new();
            for x in [n, w as u16, sign, scale].iter().chain(d) {
                v.extend_from_slice(&x.to_be_bytes());
            }
            v
        };
        assert_eq!(
            numeric(&enc(2, 1, 0, 0, &[1234, 5678])).unwrap(),
            Value::Int(12_345_678)
        );
        // 20000 = [2], weight 1 (the trailing zero group left out)
        assert_eq!(numeric(&enc(1, 1, 0, 0, &[2])).unwrap(), Value::Int(20_000));
        assert_eq!(
            numeric(&enc(1, 0, 0x4000, 0, &[7])).unwrap(),
            Value::Int(-7)
        );
        assert_eq!(numeric(&enc(0, 0, 0, 0, &[])).unwrap(), Value::Int(0));
        // 1.5 = [1, 5000], weight 0, scale 1
        assert_eq!(
            numeric(&enc(2, 0, 0, 1, &[1, 5000])).unwrap(),
            Value::Real(1.5)
        );
        assert!(numeric(&[0, 1]).is_err());
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact("postgres://encore:s3cret@db:5432/x"),
            "postgres://encore@db:5432/x"
        );
        assert_eq!(redact("host=db user=x"), "host=db user=x");
    }

    /// The suite on the test server (see `PostgresScratch`), in schemas of this run's own.
    #[test]
    fn postgres_passes_the_metadata_conformance_suite() {
        let Some(scratch) = PostgresScratch::new() else {
            return;
        };
        let (url, prefix) = (scratch.url.clone(), scratch.prefix.clone());
        super::super::testsuite::run(&|name: &str| {
            Box::new(PostgresMetadata::open(&url, &prefix, name).unwrap()) as Box<dyn Metadata>
        });
        // from inside an async request handler, as the server calls it: opened, used and
        // dropped on a runtime worker
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (url2, prefix2) = (url, prefix);
        let n: i64 = runtime.block_on(async move {
            tokio::spawn(async move {
                let (url, prefix) = (url2, prefix2);
                let db: Box<dyn Metadata> =
                    Box::new(PostgresMetadata::open(&url, &prefix, "async").unwrap());
                db.migrate("async", &["CREATE TABLE a (id INTEGER PRIMARY KEY)"])
                    .unwrap();
                db.write(|tx| tx.execute("INSERT INTO a (id) VALUES (1)", &[]))
                    .unwrap();
                db.read(|q| q.query_one("SELECT COUNT(*) FROM a", &[])?.get(0))
                    .unwrap()
            })
            .await
            .unwrap()
        });
        assert_eq!(n, 1);
    }
}

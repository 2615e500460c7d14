//! The conformance suite of [`Metadata`]: written once, run against every backend. `open(name)`
//! must give a handle on the store `name` of a fresh namespace (the same name: the same store,
//! so a second call reopens it).
//!
//! ```ignore
//! encore_storage::metadata::testsuite::run(&|name| Box::new(open_my_backend(name)));
//! ```

use super::{Metadata, MetadataError, Value};
use crate::params;
use encore_core::{Coded, ErrorCode};

type Open<'a> = &'a dyn Fn(&str) -> Box<dyn Metadata>;

/// Schemas of one test run on the PostgreSQL server named by `ENCORE_TEST_POSTGRES` (default:
/// the project machines' `postgres://postgres@127.0.0.1:5432/test`), dropped when this is.
#[derive(Debug)]
pub struct PostgresScratch {
    pub url: String,
    /// the run's schema prefix (`t<pid>_<nanos>`)
    pub prefix: String,
}

impl PostgresScratch {
    /// A fresh prefix on the test server; `None` (with the reason on stderr) when there is no
    /// server, which fails instead when `ENCORE_REQUIRE_SERVICES` is set (as CI sets it).
    #[allow(clippy::print_stderr, reason = "a skipped test says why")]
    pub fn new() -> Option<PostgresScratch> {
        let url = std::env::var("ENCORE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        if let Err(e) = ::postgres::Client::connect(&url, ::postgres::NoTls) {
            assert!(
                std::env::var_os("ENCORE_REQUIRE_SERVICES").is_none(),
                "ENCORE_REQUIRE_SERVICES is set but PostgreSQL at {url} cannot be reached: {e}"
            );
            eprintln!("skipped on PostgreSQL: none at {url} ({e}); set ENCORE_TEST_POSTGRES");
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("t{}_{nonce}_{n}", std::process::id());
        Some(PostgresScratch { url, prefix })
    }

    /// Keeps the metadata of the data directory `root` in this run's schemas.
    pub fn bind(&self, root: &std::path::Path) {
        super::bind(
            root,
            super::Backend::Postgres {
                url: self.url.clone(),
                prefix: self.prefix.clone(),
            },
        );
    }
}

impl PostgresScratch {
    /// The schemas this run made (`<prefix>_<component>`), sorted: proof that a component's
    /// store went to PostgreSQL.
    pub fn schemas(&self) -> Vec<String> {
        let Ok(mut c) = ::postgres::Client::connect(&self.url, ::postgres::NoTls) else {
            return Vec::new();
        };
        let pattern = format!("{}\\_%", self.prefix);
        c.query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1",
            &[&pattern],
        )
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
    }
}

/// Runs `case` on a fresh data directory with embedded metadata, then on one whose metadata is
/// on PostgreSQL (when the test server is there), checking that `component`'s store went there.
pub fn on_every_backend(component: &str, case: &dyn Fn(&std::path::Path)) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    case(tmp.path());
    if let Some(pg) = PostgresScratch::new() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        pg.bind(tmp.path());
        case(tmp.path());
        assert_eq!(pg.schemas(), [format!("{}_{component}", pg.prefix)]);
    }
}

impl Drop for PostgresScratch {
    fn drop(&mut self) {
        let Ok(mut c) = ::postgres::Client::connect(&self.url, ::postgres::NoTls) else {
            return;
        };
        for name in self.schemas() {
            let _ = c.batch_execute(&format!("DROP SCHEMA {name} CASCADE"));
        }
    }
}

/// Every case, in order; panics on the first that fails, naming it.
pub fn run(open: Open<'_>) {
    values_round_trip(open);
    a_write_commits_whole_or_not_at_all(open);
    constraint_violations_are_conflicts(open);
    concurrent_writers_lose_no_update(open);
    migrations_apply_once_in_order(open);
    a_failed_migration_step_changes_nothing(open);
    committed_writes_survive_a_reopen(open);
    the_portable_dialect_works(open);
    type_mismatches_name_the_column(open);
    deleted_rows_can_be_purged(open);
    append_only_guards_refuse_changes(open);
}

fn table(db: &dyn Metadata, name: &str) {
    db.migrate(
        name,
        &[&format!(
            "CREATE TABLE {name} (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, \
             u TEXT UNIQUE)"
        )],
    )
    .unwrap_or_else(|e| panic!("{}: migrate {name}: {e}", db.backend()));
}

fn values_round_trip(open: Open<'_>) {
    let db = open("values");
    table(db.as_ref(), "vals");
    let cases: Vec<(i64, f64, &str, Vec<u8>)> = vec![
        (i64::MIN, f64::MIN_POSITIVE, "", vec![]),
        (
            i64::MAX,
            -1.5e300,
            "naïve 'quoted' \"text\" ; --",
            vec![0, 255, 0, 1],
        ),
        (0, 0.0, "\u{1F3B5} 音楽", vec![0; 70_000]),
    ];
    for (k, (i, r, t, b)) in cases.iter().enumerate() {
        db.write(|tx| {
            tx.execute(
                "INSERT INTO vals (id, i, r, t, b) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k as i64, *i, *r, *t, b.clone()],
            )
        })
        .unwrap();
    }
    db.write(|tx| {
        tx.execute(
            "INSERT INTO vals (id, i, r, t, b) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                99i64,
                None::<i64>,
                None::<f64>,
                None::<String>,
                None::<Vec<u8>>
            ],
        )
    })
    .unwrap();
    let rows = db
        .read(|q| q.query("SELECT i, r, t, b FROM vals ORDER BY id", &[]))
        .unwrap();
    assert_eq!(rows.len(), 4, "{}: rows", db.backend());
    for (row, (i, r, t, b)) in rows.iter().zip(&cases) {
        assert_eq!(row.get::<i64>(0).unwrap(), *i);
        assert_eq!(row.get::<f64>(1).unwrap().to_bits(), r.to_bits());
        assert_eq!(row.get::<String>(2).unwrap(), *t);
        assert_eq!(row.get::<Vec<u8>>(3).unwrap(), *b);
    }
    let nulls = &rows[3];
    assert_eq!(nulls.get::<Option<i64>>(0).unwrap(), None);
    assert_eq!(nulls.get::<Option<String>>(2).unwrap(), None);
    assert!(nulls.get::<i64>(0).is_err(), "a NULL is not an integer");
}

#[derive(Debug)]
enum Mine {
    Refused,
    Store(MetadataError),
}

impl From<MetadataError> for Mine {
    fn from(e: MetadataError) -> Mine {
        Mine::Store(e)
    }
}

fn count(db: &dyn Metadata, sql: &str) -> i64 {
    db.read(|q| q.query_one(sql, &[])?.get(0)).unwrap()
}

fn a_write_commits_whole_or_not_at_all(open: Open<'_>) {
    let db = open("atomic");
    table(db.as_ref(), "atom");
    let r: Result<(), Mine> = db.write(|tx| {
        tx.execute("INSERT INTO atom (id, t) VALUES (1, 'a')", &[])?;
        tx.execute("INSERT INTO atom (id, t) VALUES (2, 'b')", &[])?;
        Err(Mine::Refused)
    });
    assert!(
        matches!(r, Err(Mine::Refused)),
        "the caller's error comes back unchanged: {r:?}"
    );
    assert_eq!(
        count(db.as_ref(), "SELECT COUNT(*) FROM atom"),
        0,
        "rolled back"
    );
    let n: u64 = db
        .write(|tx| {
            let a = tx.execute("INSERT INTO atom (id, t) VALUES (1, 'a')", &[])?;
            let b = tx.execute("INSERT INTO atom (id, t) VALUES (2, 'b')", &[])?;
            // the transaction sees its own writes
            let seen: i64 = tx.query_one("SELECT COUNT(*) FROM atom", &[])?.get(0)?;
            assert_eq!(seen, 2);
            Ok::<_, MetadataError>(a + b)
        })
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(count(db.as_ref(), "SELECT COUNT(*) FROM atom"), 2);
    // a statement that fails inside a transaction rolls back what came before it, and its
    // error reaches the caller through the caller's own error type
    let r: Result<(), Mine> = db.write(|tx| {
        tx.execute("INSERT INTO atom (id, t) VALUES (3, 'c')", &[])?;
        tx.execute("INSERT INTO nowhere VALUES (1)", &[])?;
        Ok(())
    });
    assert!(
        matches!(r, Err(Mine::Store(MetadataError::Invalid(_)))),
        "{r:?}"
    );
    assert_eq!(count(db.as_ref(), "SELECT COUNT(*) FROM atom"), 2);
}

fn constraint_violations_are_conflicts(open: Open<'_>) {
    let db = open("conflicts");
    table(db.as_ref(), "uniq");
    let insert = |id: i64| {
        db.write(|tx| tx.execute("INSERT INTO uniq (id, u) VALUES (?1, 'same')", params![id]))
    };
    insert(1).unwrap();
    let e = insert(2).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict, "{}: {e}", db.backend());
    // the store is usable after a refused write
    db.write(|tx| tx.execute("INSERT INTO uniq (id, u) VALUES (3, 'other')", &[]))
        .unwrap();
    assert_eq!(count(db.as_ref(), "SELECT COUNT(*) FROM uniq"), 2);
}

fn concurrent_writers_lose_no_update(open: Open<'_>) {
    let db = open("concurrent");
    table(db.as_ref(), "counter");
    db.write(|tx| tx.execute("INSERT INTO counter (id, i) VALUES (1, 0)", &[]))
        .unwrap();
    // a second handle on the same store: another process, as far as the store can tell
    let other = open("concurrent");
    std::thread::scope(|s| {
        for h in [&db, &other, &db, &other] {
            s.spawn(move || {
                for _ in 0..50 {
                    h.write(|tx| {
                        let n: i64 = tx
                            .query_one("SELECT i FROM counter WHERE id = 1", &[])?
                            .get(0)?;
                        tx.execute("UPDATE counter SET i = ?1 WHERE id = 1", params![n + 1])
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(
        count(db.as_ref(), "SELECT i FROM counter WHERE id = 1"),
        200,
        "{}: read-modify-write transactions lost updates",
        db.backend()
    );
}

fn migrations_apply_once_in_order(open: Open<'_>) {
    let db = open("migrations");
    let v1 = ["CREATE TABLE m (id INTEGER PRIMARY KEY)"];
    let v2 = [
        v1[0],
        "ALTER TABLE m ADD COLUMN note TEXT; INSERT INTO m (id, note) VALUES (1, 'from step 2');",
    ];
    db.migrate("comp", &v1).unwrap();
    db.migrate("comp", &v1).unwrap();
    db.migrate("comp", &v2).unwrap();
    db.migrate("comp", &v2).unwrap();
    assert_eq!(
        count(db.as_ref(), "SELECT COUNT(*) FROM m"),
        1,
        "step 2 ran once"
    );
    // another component's steps are its own
    db.migrate("other", &["CREATE TABLE o (id INTEGER)"])
        .unwrap();
    // a build that knows fewer steps than the store has refuses it
    let e = db.migrate("comp", &v1).unwrap_err();
    assert!(
        matches!(
            e,
            MetadataError::TooNew {
                found: 2,
                known: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::FailedPrecondition);
}

fn a_failed_migration_step_changes_nothing(open: Open<'_>) {
    let db = open("failed-migration");
    let good = "CREATE TABLE f (id INTEGER PRIMARY KEY)";
    let bad = "INSERT INTO f (id) VALUES (1); INSERT INTO no_such_table VALUES (2);";
    db.migrate("f", &[good]).unwrap();
    assert!(db.migrate("f", &[good, bad]).is_err());
    assert_eq!(
        count(db.as_ref(), "SELECT COUNT(*) FROM f"),
        0,
        "the step was rolled back"
    );
    // fixed, it applies
    db.migrate("f", &[good, "INSERT INTO f (id) VALUES (1);"])
        .unwrap();
    assert_eq!(count(db.as_ref(), "SELECT COUNT(*) FROM f"), 1);
}

fn committed_writes_survive_a_reopen(open: Open<'_>) {
    {
        let db = open("reopen");
        table(db.as_ref(), "kept");
        db.write(|tx| tx.execute("INSERT INTO kept (id, t) VALUES (7, 'seven')", &[]))
            .unwrap();
    }
    let db = open("reopen");
    table(db.as_ref(), "kept");
    let t: String = db
        .read(|q| q.query_one("SELECT t FROM kept WHERE id = 7", &[])?.get(0))
        .unwrap();
    assert_eq!(t, "seven");
}

fn the_portable_dialect_works(open: Open<'_>) {
    let db = open("dialect");
    table(db.as_ref(), "d");
    let id: i64 = db
        .write(|tx| {
            tx.query_one(
                "INSERT INTO d (i, t) VALUES (?1, ?2) RETURNING id",
                params![5i64, "five"],
            )?
            .get(0)
        })
        .unwrap();
    for text in ["first", "second"] {
        db.write(|tx| {
            tx.execute(
                "INSERT INTO d (id, t) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET t = excluded.t",
                params![id, text],
            )
        })
        .unwrap();
    }
    let t: String = db
        .read(|q| {
            q.query_one("SELECT t FROM d WHERE id = ?1", params![id])?
                .get(0)
        })
        .unwrap();
    assert_eq!(t, "second");
    let none = db
        .read(|q| q.query_opt("SELECT t FROM d WHERE id = ?1", params![id + 1]))
        .unwrap();
    assert!(none.is_none());
    assert!(
        db.read(|q| q.query_one("SELECT t FROM d WHERE id = ?1", params![id + 1]))
            .is_err()
    );
    let v: Value = "x".into();
    assert_eq!(v, Value::Text("x".into()));
    // an optional filter: NULL matches every row, a value only its own
    for (filter, want) in [(None, 1), (Some("second"), 1), (Some("other"), 0)] {
        let n = db
            .read(|q| {
                q.query(
                    "SELECT id FROM d WHERE ?1 IS NULL OR t = ?1",
                    params![filter],
                )
            })
            .unwrap_or_else(|e| panic!("{}: {filter:?}: {e}", db.backend()))
            .len();
        assert_eq!(n, want, "{}: {filter:?}", db.backend());
    }
}

fn type_mismatches_name_the_column(open: Open<'_>) {
    let db = open("types");
    table(db.as_ref(), "ty");
    db.write(|tx| tx.execute("INSERT INTO ty (id, i) VALUES (1, 300)", &[]))
        .unwrap();
    let row = db
        .read(|q| q.query_one("SELECT i FROM ty WHERE id = 1", &[]))
        .unwrap();
    let e = row.get::<String>(0).unwrap_err().to_string();
    assert!(e.contains("column 0") && e.contains("text"), "{e}");
    let e = row.get::<u8>(0).unwrap_err().to_string();
    assert!(e.contains("u8"), "{e}");
    assert!(row.get::<i64>(1).is_err(), "no such column");
}

fn deleted_rows_can_be_purged(open: Open<'_>) {
    let db = open("purge");
    table(db.as_ref(), "p");
    db.write(|tx| {
        tx.execute(
            "INSERT INTO p (id, t) VALUES (1, 'secret-listener-id')",
            &[],
        )?;
        tx.execute("DELETE FROM p WHERE id = 1", &[])
    })
    .unwrap();
    db.purge_deleted().unwrap();
    assert_eq!(count(db.as_ref(), "SELECT COUNT(*) FROM p"), 0);
    // still usable
    db.write(|tx| tx.execute("INSERT INTO p (id, t) VALUES (2, 'x')", &[]))
        .unwrap();
}

fn append_only_guards_refuse_changes(open: Open<'_>) {
    let db = open("guards");
    db.migrate(
        "guards",
        &[
            "CREATE TABLE ledger (seq INTEGER PRIMARY KEY, what TEXT NOT NULL);
           CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
           BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
           CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
           BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;",
        ],
    )
    .unwrap_or_else(|e| panic!("{}: {e}", db.backend()));
    db.write(|tx| tx.execute("INSERT INTO ledger (what) VALUES ('first')", &[]))
        .unwrap();
    for change in ["UPDATE ledger SET what = 'rewritten'", "DELETE FROM ledger"] {
        let e = db.write(|tx| tx.execute(change, &[])).unwrap_err();
        assert_eq!(
            e.code(),
            ErrorCode::Conflict,
            "{}: {change}: {e}",
            db.backend()
        );
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    assert_eq!(count(db.as_ref(), "SELECT COUNT(*) FROM ledger"), 1);
}

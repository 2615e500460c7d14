//! `encore-access`: who may do what.
//!
//! - [`Keys`]: API keys. A key is shown once, when created; only its SHA-256 is stored. Each key
//!   has a name (the actor recorded for what it does), a set of [`Scope`]s, optionally a list of
//!   trace projects it is limited to, and optionally an expiry. Revoking is immediate for new
//!   lookups; a server's cache of verified keys holds an entry at most [`CACHE_TTL`].
//! - [`audit`]: the append-only audit log, each row chained to the previous one by a hash so an
//!   edit or a deletion in the middle is detected by [`audit::AuditLog::verify`].
//!
//! Both live in `<data>/access.sqlite`, which other processes (the CLI beside a running server)
//! open at the same time, as they do the registry.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use encore_access::{Keys, NewKey, Scope};
//! let keys = Keys::open(dir.path()).unwrap();
//! let created = keys.create(&NewKey::new("ingest-bot", vec![Scope::EventsWrite])).unwrap();
//! let who = keys.authenticate(&created.secret).unwrap();
//! assert_eq!(who.name, "ingest-bot");
//! assert!(who.allows(Scope::EventsWrite) && !who.allows(Scope::ModelsWrite));
//! ```

pub mod audit;
pub mod ledger;

use encore_core::{Coded, ErrorCode};
use encore_storage::metadata::{Durability, Metadata, Row};
use encore_storage::params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a server trusts a key it verified before it reads the key's row again (so a revoked
/// or expired key stops working within this time).
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// The file both keys and the audit log are stored in, under the data directory.
pub const FILE: &str = "access.sqlite";

/// What a key may do. `admin` allows everything, including reading the audit log and managing
/// keys over HTTP; no other scope implies another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "events:write")]
    EventsWrite,
    #[serde(rename = "events:read")]
    EventsRead,
    #[serde(rename = "traces:write")]
    TracesWrite,
    #[serde(rename = "traces:read")]
    TracesRead,
    /// prompts and completions in trace answers (without it they are left out)
    #[serde(rename = "traces:content")]
    TracesContent,
    #[serde(rename = "recs:read")]
    RecsRead,
    #[serde(rename = "features:read")]
    FeaturesRead,
    #[serde(rename = "evals:read")]
    EvalsRead,
    #[serde(rename = "evals:write")]
    EvalsWrite,
    #[serde(rename = "models:read")]
    ModelsRead,
    #[serde(rename = "models:write")]
    ModelsWrite,
    #[serde(rename = "experiments:read")]
    ExperimentsRead,
    #[serde(rename = "experiments:write")]
    ExperimentsWrite,
    #[serde(rename = "privacy:admin")]
    PrivacyAdmin,
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 15] = [
        Scope::EventsWrite,
        Scope::EventsRead,
        Scope::TracesWrite,
        Scope::TracesRead,
        Scope::TracesContent,
        Scope::RecsRead,
        Scope::FeaturesRead,
        Scope::EvalsRead,
        Scope::EvalsWrite,
        Scope::ModelsRead,
        Scope::ModelsWrite,
        Scope::ExperimentsRead,
        Scope::ExperimentsWrite,
        Scope::PrivacyAdmin,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::EventsRead => "events:read",
            Scope::TracesWrite => "traces:write",
            Scope::TracesRead => "traces:read",
            Scope::TracesContent => "traces:content",
            Scope::RecsRead => "recs:read",
            Scope::FeaturesRead => "features:read",
            Scope::EvalsRead => "evals:read",
            Scope::EvalsWrite => "evals:write",
            Scope::ModelsRead => "models:read",
            Scope::ModelsWrite => "models:write",
            Scope::ExperimentsRead => "experiments:read",
            Scope::ExperimentsWrite => "experiments:write",
            Scope::PrivacyAdmin => "privacy:admin",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, AccessError> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| AccessError::UnknownScope(s.trim().to_owned()))
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, as a bit mask: checking one is a single AND on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u32);

impl Scopes {
    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |m, s| m | s.bit()))
    }

    pub fn all() -> Scopes {
        Scopes::of(&Scope::ALL)
    }

    /// `admin` allows every scope.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    pub fn list(self) -> Vec<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.0 & s.bit() != 0)
            .collect()
    }
}

/// A key as stored and listed: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Key {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// trace projects the key is limited to; `None` is every project
    pub projects: Option<Vec<String>>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// What `keys create` asks for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub projects: Option<Vec<String>>,
    /// how long the key is valid; `None` is until revoked
    pub ttl: Option<Duration>,
}

impl NewKey {
    pub fn new(name: &str, scopes: Vec<Scope>) -> NewKey {
        NewKey {
            name: name.to_owned(),
            scopes,
            projects: None,
            ttl: None,
        }
    }
}

/// A key just created: the only time its secret exists outside the caller.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub key: Key,
    /// `enc_<id>_<secret>`; shown once, only its SHA-256 is stored
    #[serde(rename = "key")]
    pub secret: String,
}

/// Who a request comes from, once its key is verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub scopes: Scopes,
    pub projects: Option<Arc<[String]>>,
    pub expires_ms: Option<i64>,
}

impl Principal {
    /// The caller when authentication is off (a loopback-only server): every scope.
    pub fn anonymous() -> Principal {
        Principal {
            key_id: String::new(),
            name: "anonymous".into(),
            scopes: Scopes::all(),
            projects: None,
            expires_ms: None,
        }
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.allows(scope)
    }

    /// Whether the key may see the trace project `project`.
    pub fn allows_project(&self, project: &str) -> bool {
        self.projects
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p == project))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("unknown scope {0:?}")]
    UnknownScope(String),
    #[error("invalid key name {0:?}: use 1 to 64 letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    #[error("invalid project {0:?}: use 1 to 128 characters without ',' or control characters")]
    InvalidProject(String),
    #[error("a key needs at least one scope")]
    NoScopes,
    #[error("no key with id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("audit log damaged at entry {seq}: {detail}")]
    AuditBroken { seq: i64, detail: String },
    #[error("cannot read random bytes for a key: {0}")]
    Random(String),
    #[error(transparent)]
    Metadata(#[from] encore_storage::metadata::MetadataError),
}

impl Coded for AccessError {
    fn code(&self) -> ErrorCode {
        match self {
            AccessError::UnknownScope(_)
            | AccessError::InvalidName(_)
            | AccessError::InvalidProject(_)
            | AccessError::NoScopes => ErrorCode::InvalidArgument,
            AccessError::NotFound(_) => ErrorCode::NotFound,
            AccessError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            AccessError::AuditBroken { .. } => ErrorCode::DataLoss,
            AccessError::Random(_) => ErrorCode::Unavailable,
            AccessError::Metadata(e) => e.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            AccessError::UnknownScope(_) => Some(format!(
                "scopes are {}",
                Scope::ALL.map(Scope::as_str).join(", ")
            )),
            AccessError::NotFound(_) => Some("`encore keys list` shows the keys".into()),
            AccessError::Unauthenticated(_) => {
                Some("send `Authorization: Bearer KEY` with a key from `encore keys create`".into())
            }
            _ => None,
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    projects TEXT,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    key_name TEXT NOT NULL,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    target TEXT NOT NULL,
    status INTEGER NOT NULL,
    detail TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// The schema's migration steps: keys and the audit log, then the erasure ledger.
const MIGRATIONS: &[&str] = &[SCHEMA, LEDGER_SCHEMA];

const LEDGER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS erasures (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    listener TEXT NOT NULL,
    actor TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS erasures_no_update BEFORE UPDATE ON erasures
BEGIN SELECT RAISE(ABORT, 'the erasure ledger is append-only'); END;
";

/// The access store of the data directory `root`, migrated. A committed row survives a crash
/// of the process; `Full` durability would also survive a power cut at the cost of an fsync per
/// audited request.
pub(crate) fn open_db(root: &Path) -> Result<Arc<dyn Metadata>, AccessError> {
    let db = encore_storage::metadata::open(root, "access", Durability::Normal)?;
    db.migrate("access", MIGRATIONS)?;
    Ok(db)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// The key store, with a short-lived cache of verified keys for the request path.
#[derive(Debug)]
pub struct Keys {
    db: Arc<dyn Metadata>,
    /// verified keys by the presented key itself (it is in this process's memory anyway), so a
    /// request costs a hash-map lookup, not a SHA-256 and a database read
    cache: RwLock<HashMap<String, (Arc<Principal>, Instant)>>,
}

const MAX_CACHED: usize = 10_000;

impl Keys {
    pub fn open(root: &Path) -> Result<Keys, AccessError> {
        Ok(Keys {
            db: open_db(root)?,
            cache: RwLock::default(),
        })
    }

    pub fn create(&self, new: &NewKey) -> Result<Created, AccessError> {
        check_name(&new.name)?;
        if new.scopes.is_empty() {
            return Err(AccessError::NoScopes);
        }
        if let Some(ps) = &new.projects {
            for p in ps {
                if p.is_empty()
                    || p.len() > 128
                    || p.contains(',')
                    || p.chars().any(char::is_control)
                {
                    return Err(AccessError::InvalidProject(p.clone()));
                }
            }
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| AccessError::Random(e.to_string()))?;
        let id = hex(&random[..8]);
        let secret = format!("enc_{id}_{}", hex(&random[8..]));
        let now = encore_core::time::now_ms();
        let expires_ms = new
            .ttl
            .map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
        let mut scopes = new.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let key = Key {
            id,
            name: new.name.clone(),
            scopes,
            projects: new.projects.clone(),
            created_ms: now,
            expires_ms,
            revoked_ms: None,
        };
        let scopes = key
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO keys (id, name, hash, scopes, projects, created_ms, expires_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    &key.id,
                    &key.name,
                    sha256_hex(&secret),
                    scopes,
                    key.projects.as_ref().map(|p| p.join(",")),
                    key.created_ms,
                    key.expires_ms,
                ],
            )
        })?;
        Ok(Created { key, secret })
    }

    /// Every key, newest first, revoked ones included.
    pub fn list(&self) -> Result<Vec<Key>, AccessError> {
        self.db.read(|q| {
            q.query(
                "SELECT id, name, scopes, projects, created_ms, expires_ms, revoked_ms FROM keys \
                 ORDER BY created_ms DESC, id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(Key {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    scopes: parse_scopes(&r.get::<String>(2)?),
                    projects: parse_projects(r.get(3)?),
                    created_ms: r.get(4)?,
                    expires_ms: r.get(5)?,
                    revoked_ms: r.get(6)?,
                })
            })
            .collect()
        })
    }

    /// Revokes `id`; revoking a revoked key again is not an error.
    pub fn revoke(&self, id: &str) -> Result<Key, AccessError> {
        let n = self.db.write(|tx| {
            tx.execute(
                "UPDATE keys SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1",
                params![id, encore_core::time::now_ms()],
            )
        })?;
        if n == 0 {
            return Err(AccessError::NotFound(id.to_owned()));
        }
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (p, _)| p.key_id != id);
        self.list()?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| AccessError::NotFound(id.to_owned()))
    }

    /// The principal a presented key stands for: unknown, revoked and expired keys are all
    /// `Unauthenticated`, with the same message (a caller learns nothing about other keys).
    pub fn authenticate(&self, presented: &str) -> Result<Arc<Principal>, AccessError> {
        const REFUSED: &str = "the API key is not valid (unknown, revoked or expired)";
        if !presented.starts_with("enc_") || presented.len() > 128 {
            return Err(AccessError::Unauthenticated(REFUSED));
        }
        let now = encore_core::time::now_ms();
        let alive = |p: &Principal| p.expires_ms.is_none_or(|e| e > now);
        if let Some((p, at)) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(presented)
            && at.elapsed() < CACHE_TTL
        {
            return if alive(p) {
                Ok(Arc::clone(p))
            } else {
                Err(AccessError::Unauthenticated(REFUSED))
            };
        }
        let hash = sha256_hex(presented);
        let row = self.db.read(|q| {
            q.query_opt(
                "SELECT id, name, scopes, projects, expires_ms FROM keys \
                 WHERE hash = ?1 AND revoked_ms IS NULL",
                params![hash],
            )?
            .map(|r| principal(&r))
            .transpose()
        })?;
        let Some(p) = row.filter(alive) else {
            return Err(AccessError::Unauthenticated(REFUSED));
        };
        let p = Arc::new(p);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(presented.to_owned(), (Arc::clone(&p), Instant::now()));
        Ok(p)
    }
}

fn principal(r: &Row) -> Result<Principal, AccessError> {
    Ok(Principal {
        key_id: r.get(0)?,
        name: r.get(1)?,
        scopes: Scopes::of(&parse_scopes(&r.get::<String>(2)?)),
        projects: parse_projects(r.get(3)?).map(Arc::from),
        expires_ms: r.get(4)?,
    })
}

fn check_name(name: &str) -> Result<(), AccessError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AccessError::InvalidName(name.to_owned()))
    }
}

fn parse_scopes(s: &str) -> Vec<Scope> {
    s.split(',').filter_map(|x| Scope::parse(x).ok()).collect()
}

fn parse_projects(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| s.split(',').map(str::to_owned).collect())
}

/// Parses a comma-separated scope list as given on the command line.
pub fn parse_scope_list(s: &str) -> Result<Vec<Scope>, AccessError> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(Scope::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hash_is_stored_and_the_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::open(dir.path()).unwrap();
        let c = keys
            .create(&NewKey::new("bot", vec![Scope::RecsRead, Scope::RecsRead]))
            .unwrap();
        assert!(c.secret.starts_with(&format!("enc_{}_", c.key.id)));
        assert_eq!(c.key.scopes, vec![Scope::RecsRead]);
        let raw = std::fs::read(dir.path().join(FILE)).unwrap();
        let wal = std::fs::read(dir.path().join(format!("{FILE}-wal"))).unwrap_or_default();
        let secret_part = c.secret.rsplit('_').next().unwrap().as_bytes();
        for bytes in [&raw, &wal] {
            assert!(!bytes.windows(secret_part.len()).any(|w| w == secret_part));
        }
        let p = keys.authenticate(&c.secret).unwrap();
        assert_eq!(
            (p.name.as_str(), p.key_id.as_str()),
            ("bot", c.key.id.as_str())
        );
        assert!(p.allows(Scope::RecsRead) && !p.allows(Scope::EventsWrite));
        // a near miss is refused
        let mut wrong = c.secret.clone();
        wrong.pop();
        wrong.push('x');
        assert!(matches!(
            keys.authenticate(&wrong),
            Err(AccessError::Unauthenticated(_))
        ));
        assert!(keys.authenticate("").is_err());
        assert!(keys.authenticate(&"enc_".repeat(1000)).is_err());
    }

    #[test]
    fn revoked_and_expired_keys_are_refused_and_admin_allows_all() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::open(dir.path()).unwrap();
        let a = keys
            .create(&NewKey::new("ops", vec![Scope::Admin]))
            .unwrap();
        let p = keys.authenticate(&a.secret).unwrap();
        assert!(Scope::ALL.iter().all(|s| p.allows(*s)));
        // another process revokes: this one's cache is bypassed by its own revoke, and the
        // other's entry expires within CACHE_TTL
        let other = Keys::open(dir.path()).unwrap();
        assert!(other.authenticate(&a.secret).is_ok());
        keys.revoke(&a.key.id).unwrap();
        assert!(keys.authenticate(&a.secret).is_err());
        let mut gone = false;
        for _ in 0..40 {
            if other.authenticate(&a.secret).is_err() {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(gone, "a revoked key kept working past the cache TTL");
        assert!(keys.revoke("nope").is_err());

        // no race with the clock: a key valid for an hour works, one valid for a millisecond
        // is refused once that has surely passed
        let mut long = NewKey::new("long", vec![Scope::TracesRead]);
        long.ttl = Some(Duration::from_secs(3_600));
        long.projects = Some(vec!["chat".into()]);
        let l = keys.create(&long).unwrap();
        let p = keys.authenticate(&l.secret).unwrap();
        assert!(p.allows_project("chat") && !p.allows_project("search"));
        let mut short = NewKey::new("short", vec![Scope::TracesRead]);
        short.ttl = Some(Duration::from_millis(1));
        let s = keys.create(&short).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            keys.authenticate(&s.secret).is_err(),
            "expired key accepted"
        );
        let listed = keys.list().unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().any(|k| k.revoked_ms.is_some()));
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::open(dir.path()).unwrap();
        assert!(matches!(
            parse_scope_list("recs:read,recs:write"),
            Err(AccessError::UnknownScope(s)) if s == "recs:write"
        ));
        assert!(
            keys.create(&NewKey::new("a b", vec![Scope::Admin]))
                .is_err()
        );
        assert!(keys.create(&NewKey::new("ok", vec![])).is_err());
        let mut p = NewKey::new("ok", vec![Scope::TracesRead]);
        p.projects = Some(vec!["a,b".into()]);
        assert!(keys.create(&p).is_err());
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()).unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}

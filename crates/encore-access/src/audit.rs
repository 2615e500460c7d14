//! The audit log: one row per mutating request, per read of trace content and per key change,
//! never updated or deleted (triggers refuse both). Each row's `hash` is SHA-256 over the
//! previous row's hash and this row's fields, so [`AuditLog::verify`] finds a row changed or
//! removed behind SQLite's back (with a file editor, say).

use crate::{AccessError, hex, open_db};
use encore_storage::metadata::{Metadata, Row};
use encore_storage::params;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// One audited action.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// position in the log, from 1; assigned on append
    pub seq: i64,
    pub ts_ms: i64,
    /// the key's id; empty when authentication is off or the action came from the CLI
    pub key_id: String,
    /// the actor: the key's name, `anonymous` with authentication off, `cli:<user>` from the CLI
    pub key_name: String,
    /// the client's address, or `local` for the CLI
    pub source: String,
    pub method: String,
    /// the route template, e.g. `/v1/models/{name}/aliases/{alias}`
    pub route: String,
    /// the concrete target, e.g. `/v1/models/recommender/aliases/production`
    pub target: String,
    /// the HTTP status answered (0 for a CLI action that failed before it could act)
    pub status: u16,
    /// what else matters: the denied scope, the erased listener's hash, ...
    pub detail: String,
}

impl Entry {
    fn digest(&self, prev: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        for field in [
            &self.seq.to_string(),
            &self.ts_ms.to_string(),
            &self.key_id,
            &self.key_name,
            &self.source,
            &self.method,
            &self.route,
            &self.target,
            &self.status.to_string(),
            &self.detail,
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        hex(&h.finalize())
    }
}

/// The audit log of a data directory.
#[derive(Debug)]
pub struct AuditLog {
    db: Arc<dyn Metadata>,
}

impl AuditLog {
    pub fn open(root: &Path) -> Result<AuditLog, AccessError> {
        Ok(AuditLog { db: open_db(root)? })
    }

    /// Appends `entries` in one transaction (their `seq` is assigned here); returns the last seq.
    pub fn append(&self, entries: &mut [Entry]) -> Result<i64, AccessError> {
        self.db.write(|tx| {
            let last =
                tx.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])?;
            let (mut seq, mut prev): (i64, String) = match last {
                Some(r) => (r.get(0)?, r.get(1)?),
                None => (0, String::new()),
            };
            for e in entries.iter_mut() {
                seq += 1;
                e.seq = seq;
                let hash = e.digest(&prev);
                tx.execute(
                    "INSERT INTO audit (seq, ts_ms, key_id, key_name, source, method, route, \
                     target, status, detail, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        e.seq,
                        e.ts_ms,
                        &e.key_id,
                        &e.key_name,
                        &e.source,
                        &e.method,
                        &e.route,
                        &e.target,
                        e.status,
                        &e.detail,
                        &hash
                    ],
                )?;
                prev = hash;
            }
            Ok(seq)
        })
    }

    /// Entries at or after `since_ms`, oldest first, at most `limit`.
    pub fn list(&self, since_ms: i64, limit: usize) -> Result<Vec<Entry>, AccessError> {
        self.db.read(|q| {
            q.query(
                "SELECT seq, ts_ms, key_id, key_name, source, method, route, target, status, \
                 detail FROM audit WHERE ts_ms >= ?1 ORDER BY seq LIMIT ?2",
                params![since_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
            )?
            .iter()
            .map(read_entry)
            .collect()
        })
    }

    /// Recomputes the chain; the number of entries when it is whole.
    pub fn verify(&self) -> Result<u64, AccessError> {
        let rows = self.db.read(|q| {
            q.query(
                "SELECT seq, ts_ms, key_id, key_name, source, method, route, target, status, \
                 detail, hash FROM audit ORDER BY seq",
                &[],
            )
        })?;
        let (mut prev, mut n) = (String::new(), 0u64);
        for r in &rows {
            let e = read_entry(r)?;
            let stored: String = r.get(10)?;
            if e.seq != n as i64 + 1 {
                return Err(AccessError::AuditBroken {
                    seq: n as i64 + 1,
                    detail: format!("entry missing (next stored entry is {})", e.seq),
                });
            }
            if e.digest(&prev) != stored {
                return Err(AccessError::AuditBroken {
                    seq: e.seq,
                    detail: "its contents do not match its hash".into(),
                });
            }
            prev = stored;
            n += 1;
        }
        Ok(n)
    }
}

fn read_entry(r: &Row) -> Result<Entry, AccessError> {
    Ok(Entry {
        seq: r.get(0)?,
        ts_ms: r.get(1)?,
        key_id: r.get(2)?,
        key_name: r.get(3)?,
        source: r.get(4)?,
        method: r.get(5)?,
        route: r.get(6)?,
        target: r.get(7)?,
        status: r.get(8)?,
        detail: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(target: &str) -> Entry {
        Entry {
            seq: 0,
            ts_ms: 1_000,
            key_id: "k1".into(),
            key_name: "release-bot".into(),
            source: "127.0.0.1:5555".into(),
            method: "POST".into(),
            route: "/v1/models/{name}/aliases/{alias}".into(),
            target: target.into(),
            status: 200,
            detail: String::new(),
        }
    }

    #[test]
    fn appends_lists_and_refuses_edits() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let mut batch = vec![entry("/a"), entry("/b")];
        assert_eq!(log.append(&mut batch).unwrap(), 2);
        assert_eq!(log.append(&mut [entry("/c")]).unwrap(), 3);
        let all = log.list(0, 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
            ["/a", "/b", "/c"]
        );
        assert_eq!(log.list(2_000, 100).unwrap().len(), 0);
        assert_eq!(log.verify().unwrap(), 3);
        // an attacker with the file: the triggers refuse edits until dropped, and then the
        // hash chain names the entry
        let conn = rusqlite::Connection::open(dir.path().join(crate::FILE)).unwrap();
        assert!(
            conn.execute("UPDATE audit SET key_name = 'x' WHERE seq = 2", [])
                .is_err()
        );
        assert!(conn.execute("DELETE FROM audit WHERE seq = 2", []).is_err());
        // behind SQLite's back (the triggers dropped): verify finds it
        conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
        conn.execute("UPDATE audit SET key_name = 'x' WHERE seq = 2", [])
            .unwrap();
        assert!(matches!(
            log.verify(),
            Err(AccessError::AuditBroken { seq: 2, .. })
        ));
        conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
        assert!(matches!(
            log.verify(),
            Err(AccessError::AuditBroken { seq: 2, .. })
        ));
    }

    /// Keys, the audit log and the erasure ledger on every metadata backend; the guards refuse
    /// edits through the store itself, whatever the backend.
    #[test]
    fn keys_audit_and_ledger_on_every_backend() {
        let case = |root: &Path| {
            let keys = crate::Keys::open(root).unwrap();
            let made = keys
                .create(&crate::NewKey::new("ops", vec![crate::Scope::Admin]))
                .unwrap();
            assert_eq!(keys.authenticate(&made.secret).unwrap().name, "ops");
            let log = AuditLog::open(root).unwrap();
            assert_eq!(log.append(&mut [entry("/a"), entry("/b")]).unwrap(), 2);
            assert_eq!(log.verify().unwrap(), 2);
            let seq =
                crate::ledger::record(root, "u1", "cli:test", &serde_json::json!({})).unwrap();
            assert_eq!(seq, 1);
            let db = open_db(root).unwrap();
            for change in [
                "UPDATE audit SET key_name = 'x' WHERE seq = 2",
                "DELETE FROM audit WHERE seq = 2",
                "UPDATE erasures SET actor = 'x'",
            ] {
                let e = db.write(|tx| tx.execute(change, &[])).unwrap_err();
                assert!(
                    e.to_string().contains("append-only"),
                    "{}: {e}",
                    db.backend()
                );
            }
            assert_eq!(log.verify().unwrap(), 2);
        };
        encore_storage::metadata::testsuite::on_every_backend("access", &case);
    }
}

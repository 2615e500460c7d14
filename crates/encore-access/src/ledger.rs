//! The erasure ledger: which listener was erased, when, by whom and what went, with the
//! listener named only by a keyed hash (HMAC-SHA256 under the data directory's privacy key), so
//! the ledger proves an erasure without keeping who it was.

use crate::{AccessError, hex, open_db};
use encore_storage::params;
use hmac::{Hmac, Mac};
use serde::Serialize;
use std::path::Path;

/// `user` as the ledger names it.
pub fn listener_hash(key: &[u8], user: &str) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(user.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// One erasure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Erasure {
    pub seq: i64,
    pub ts_ms: i64,
    /// [`listener_hash`] of the erased id
    pub listener: String,
    pub actor: String,
    /// what was removed, by store
    pub report: serde_json::Value,
}

/// Appends an erasure to the ledger of the data directory `root`.
pub fn record(
    root: &Path,
    listener: &str,
    actor: &str,
    report: &serde_json::Value,
) -> Result<i64, AccessError> {
    open_db(root)?.write(|tx| {
        Ok(tx
            .query_one(
                "INSERT INTO erasures (ts_ms, listener, actor, report) VALUES (?1, ?2, ?3, ?4) \
                 RETURNING seq",
                params![
                    encore_core::time::now_ms(),
                    listener,
                    actor,
                    report.to_string()
                ],
            )?
            .get(0)?)
    })
}

/// Every erasure, oldest first.
pub fn list(root: &Path) -> Result<Vec<Erasure>, AccessError> {
    open_db(root)?.read(|q| {
        q.query(
            "SELECT seq, ts_ms, listener, actor, report FROM erasures ORDER BY seq",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(Erasure {
                seq: r.get(0)?,
                ts_ms: r.get(1)?,
                listener: r.get(2)?,
                actor: r.get(3)?,
                report: serde_json::from_str(&r.get::<String>(4)?).unwrap_or_default(),
            })
        })
        .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ledger_names_listeners_by_keyed_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let h = super::listener_hash(b"key", "u12");
        assert_eq!(h.len(), 64);
        assert_ne!(h, super::listener_hash(b"other", "u12"));
        super::record(dir.path(), &h, "cli:ops", &serde_json::json!({"events": 3})).unwrap();
        let l = super::list(dir.path()).unwrap();
        assert_eq!(
            (l[0].listener.as_str(), l[0].report["events"].as_u64()),
            (h.as_str(), Some(3))
        );
    }
}

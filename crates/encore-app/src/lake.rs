//! The lake on the object store: the sealed Parquet segments of a node's event log, mirrored to
//! `lake/<table>/day=YYYY-MM-DD/<node>-<segment>.parquet` (Hive partitions, the lake schema of
//! [`encore_storage::lake`]), which DuckDB, Spark and Trino read where they are:
//!
//! ```sql
//! SELECT count(*) FROM read_parquet('s3://bucket/prefix/lake/playback/*/*.parquet',
//!                                   hive_partitioning = true);
//! ```
//!
//! The mirror follows the log's manifest: a segment sealed since the last pass is uploaded, a
//! segment the log no longer holds (retention, an erasure's rewrite) is deleted, so the lake
//! holds what the log holds. Segments are immutable and named by their id, so a pass repeated
//! after a crash uploads the same objects again, never a second copy: each event (deduplicated
//! by id when the worker stored it) is in the lake once. A node touches only its own objects
//! (`<node>-` names).

use crate::AppError;
use encore_ingest::{Ingestor, Table};
use encore_storage::objects::ObjectStore;
use std::collections::BTreeMap;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mirrored {
    pub uploaded: usize,
    pub deleted: usize,
    pub bytes: u64,
    /// segments in the lake after the pass
    pub segments: usize,
}

/// The object key of `table`'s segment at `path` (relative to the log's directory:
/// `segments/day=.../<id>.parquet`) written by `node`.
fn key_of(table: Table, node: &str, path: &str) -> Option<String> {
    let rest = path.strip_prefix("segments/")?;
    let (day, file) = rest.split_once('/')?;
    Some(format!("lake/{}/{day}/{node}-{file}", table.name()))
}

/// One pass of the mirror of `ingestor`'s sealed segments into `objects`, as `node`.
pub fn mirror(
    ingestor: &Ingestor,
    objects: &dyn ObjectStore,
    node: &str,
) -> Result<Mirrored, AppError> {
    let mut done = Mirrored::default();
    for table in Table::ALL {
        let log = ingestor.log(table);
        let want: BTreeMap<String, encore_storage::event_log::SegmentInfo> = log
            .segments()
            .into_iter()
            .filter_map(|s| Some((key_of(table, node, &s.path)?, s)))
            .collect();
        let have: BTreeMap<String, u64> = objects
            .list(&format!("lake/{}/", table.name()))?
            .into_iter()
            .filter(|m| {
                m.key
                    .rsplit('/')
                    .next()
                    .is_some_and(|f| f.strip_prefix(node).is_some_and(|r| r.starts_with('-')))
            })
            .map(|m| (m.key, m.size))
            .collect();
        for (key, seg) in &want {
            if have.get(key) == Some(&seg.bytes) {
                continue;
            }
            let path = log.dir().join(&seg.path);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                // rewritten away since the manifest was read: the next pass sees the new one
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(AppError::new(
                        encore_core::ErrorCode::Internal,
                        format!("lake: reading {}: {e}", path.display()),
                    ));
                }
            };
            objects.put(key, &bytes)?;
            done.uploaded += 1;
            done.bytes += bytes.len() as u64;
        }
        for key in have.keys().filter(|k| !want.contains_key(*k)) {
            objects.delete(key)?;
            done.deleted += 1;
        }
        done.segments += want.len();
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_map_to_hive_partitions_named_by_node() {
        assert_eq!(
            key_of(
                Table::Playback,
                "w1",
                "segments/day=2026-01-05/000000000003.parquet"
            )
            .as_deref(),
            Some("lake/playback/day=2026-01-05/w1-000000000003.parquet")
        );
        assert_eq!(key_of(Table::Playback, "w1", "elsewhere/x.parquet"), None);
    }
}

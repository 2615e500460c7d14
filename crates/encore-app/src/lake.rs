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
    use encore_storage::objects::ObjectStore;

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

    fn play(i: u32, day: u32) -> String {
        // 2026-01-01 + day, noon
        let start = 1_767_268_800_000i64 + i64::from(day) * 86_400_000;
        format!(
            r#"{{"event_id":"0b7f6c1e-9d2a-4c8e-8f3a-{i:012x}","schema_version":1,"user_id":"u1","session_id":"s1","ts_start_ms":{start},"ts_end_ms":{},"item_id":"t1","item_type":"track","item_duration_ms":200000,"ms_played":30000,"reason_start":"clickrow","reason_end":"trackdone","context_type":"album","platform":"ios","country":"SE","tier":"premium","consent":{{"personalization":true,"analytics":true}}}}"#,
            start + 30_000
        )
    }

    /// The lake follows the log: sealed segments go up once (a second pass uploads nothing),
    /// another node's objects are left alone, and segments the log drops (retention) go.
    #[test]
    fn the_mirror_follows_the_log_and_touches_only_its_node() {
        let tmp = tempfile::tempdir().unwrap();
        let ingestor = Ingestor::open(
            &tmp.path().join("data"),
            encore_ingest::IngestOptions::default(),
        )
        .unwrap();
        let objects =
            encore_storage::objects::LocalObjects::open(&tmp.path().join("bucket")).unwrap();
        let body: String = (0..6).map(|i| play(i, i / 2) + "\n").collect();
        let chunk = ingestor.parse_body(body.as_bytes(), 100).unwrap();
        ingestor.submit_body(&chunk, false).unwrap().wait().unwrap();
        ingestor.log(Table::Playback).seal().unwrap();
        objects
            .put(
                "lake/playback/day=2026-01-01/w2-000000000009.parquet",
                b"other",
            )
            .unwrap();
        let first = mirror(&ingestor, &objects, "w1").unwrap();
        assert_eq!((first.uploaded, first.deleted, first.segments), (3, 0, 3));
        let keys: Vec<String> = objects
            .list("lake/playback/")
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(
            keys.iter()
                .any(|k| k.starts_with("lake/playback/day=2026-01-03/w1-"))
        );
        // the uploaded bytes are the segment's
        let seg = &ingestor.log(Table::Playback).segments()[0];
        let key = key_of(Table::Playback, "w1", &seg.path).unwrap();
        assert_eq!(
            objects.get(&key).unwrap().unwrap(),
            std::fs::read(ingestor.log(Table::Playback).dir().join(&seg.path)).unwrap()
        );
        let again = mirror(&ingestor, &objects, "w1").unwrap();
        assert_eq!((again.uploaded, again.deleted), (0, 0));
        // retention drops the first two days from the log, and from the lake
        let cutoff = 1_767_268_800_000i64 + 2 * 86_400_000 - 43_200_000;
        ingestor.log(Table::Playback).drop_before(cutoff).unwrap();
        let after = mirror(&ingestor, &objects, "w1").unwrap();
        assert_eq!((after.uploaded, after.deleted, after.segments), (0, 2, 1));
        let left: Vec<String> = objects
            .list("lake/playback/")
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&"lake/playback/day=2026-01-01/w2-000000000009.parquet".to_owned()));
    }
}

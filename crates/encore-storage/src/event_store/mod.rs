//! The event store role: an append-only table of timestamped rows in one Arrow schema, durable
//! when an append returns, scanned by time range and columns, sealed into an open columnar
//! format, expired by time and rewritten (erasure). The embedded backend is
//! [`crate::EventLog`] (a group-commit WAL and day-partitioned Parquet segments); a streaming
//! backend (a durable bus in front of object storage) implements the same trait and passes the
//! same suite ([`testsuite`]).

#[cfg(feature = "testsuite")]
pub mod testsuite;

use crate::event_log::{LogStats, RewriteStats};
use crate::{EventLog, StorageError};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

/// What [`EventStore::rewrite`] does to each stored batch (keep, filter or change rows).
pub type Rewrite = Box<dyn FnMut(RecordBatch) -> Result<RecordBatch, StorageError> + Send>;

pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// The table's name and schema.
    fn table(&self) -> &str;
    fn schema(&self) -> SchemaRef;

    /// Appends `batch` (in [`EventStore::schema`]); the rows are durable when this returns.
    fn append(&self, batch: RecordBatch) -> Result<(), StorageError>;

    /// Calls `f` with batches holding every row whose time is within `[from_ms, to_ms]`
    /// (batches may hold rows outside it: callers filter), projected to `columns` when given
    /// (an unknown column is an error naming it).
    fn scan(
        &self,
        from_ms: i64,
        to_ms: i64,
        columns: Option<&[&str]>,
        f: &mut dyn FnMut(&RecordBatch) -> Result<(), StorageError>,
    ) -> Result<(), StorageError>;

    /// Makes every row appended so far readable in the sealed, open format.
    fn seal(&self) -> Result<(), StorageError>;

    /// Drops the rows of whole time partitions before `cutoff_ms`: (partitions, rows) dropped.
    fn drop_before(&self, cutoff_ms: i64) -> Result<(u64, u64), StorageError>;

    /// Rewrites the rows within `[from_ms, to_ms]` through `f`, durably (an erasure).
    fn rewrite(&self, from_ms: i64, to_ms: i64, f: Rewrite) -> Result<RewriteStats, StorageError>;

    fn stats(&self) -> LogStats;

    /// Why writes fail right now, if they do.
    fn health(&self) -> Option<String>;
}

impl EventStore for EventLog {
    fn table(&self) -> &str {
        self.spec().name
    }

    fn schema(&self) -> SchemaRef {
        self.spec().schema.clone()
    }

    fn append(&self, batch: RecordBatch) -> Result<(), StorageError> {
        EventLog::append(self, batch)
    }

    fn scan(
        &self,
        from_ms: i64,
        to_ms: i64,
        columns: Option<&[&str]>,
        f: &mut dyn FnMut(&RecordBatch) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.scan_range(from_ms, to_ms, true, columns, f)
    }

    fn seal(&self) -> Result<(), StorageError> {
        EventLog::seal(self)
    }

    fn drop_before(&self, cutoff_ms: i64) -> Result<(u64, u64), StorageError> {
        EventLog::drop_before(self, cutoff_ms)
    }

    fn rewrite(&self, from_ms: i64, to_ms: i64, f: Rewrite) -> Result<RewriteStats, StorageError> {
        EventLog::rewrite(self, from_ms, to_ms, false, f)
    }

    fn stats(&self) -> LogStats {
        EventLog::stats(self)
    }

    fn health(&self) -> Option<String> {
        EventLog::health(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::{LogOptions, TableSpec};

    #[test]
    fn the_embedded_log_passes_the_event_store_conformance_suite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        testsuite::run(&|name: &str, spec: TableSpec| {
            let options = LogOptions {
                seal_rows: 50,
                ..Default::default()
            };
            Box::new(EventLog::open(&dir.join(name), spec, options).unwrap()) as Box<dyn EventStore>
        });
    }
}

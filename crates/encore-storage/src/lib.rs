//! Storage roles and their embedded backends: the data directory every embedded backend lives
//! in, and the durable event log (a group-commit WAL and day-partitioned Parquet segments, with
//! checksums on everything at rest, recovery that tells damage from a torn tail, and repair).
//! Every write of the log goes through the file-system seam [`fs`], where tests inject faults.
//!
//! ```
//! let tmp = tempfile::tempdir().unwrap();
//! let dir = encore_storage::DataDir::open(tmp.path().join("data")).unwrap();
//! assert!(dir.path().join("FORMAT").is_file());
//! // a second handle on the same directory fails while the first is alive
//! assert!(encore_storage::DataDir::open(dir.path()).is_err());
//! ```

mod binding;
pub mod bus;
mod data_dir;
pub mod dedup;
mod error;
pub mod event_log;
pub mod event_store;
pub mod fs;
pub mod json;
pub mod kv;
pub mod lake;
pub mod metadata;
pub mod objects;
mod table;
pub mod wal;

pub use data_dir::{DataDir, FORMAT_VERSION, FormatInfo};
pub use error::StorageError;
pub use event_log::{
    EventLog, Ids, Inspection, LogOptions, LogStats, Newest, Recovery, RepairReport, RewriteStats,
    Rewriter, SegmentInfo, SegmentRepairReport, TableSpec, WalRepairReport, inspect,
};

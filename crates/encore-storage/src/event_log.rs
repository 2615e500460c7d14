//! The durable event log of one table (playback events, or interaction events).
//!
//! Writes go through one writer thread: it takes every append waiting in its bounded queue, writes
//! them to the write-ahead log as Arrow IPC records, fsyncs once (group commit), and only then
//! acknowledges them. Acknowledged batches live in memory until the log is sealed: they are cut
//! into runs of one UTC day (each run in time order) and written as immutable zstd Parquet segments under
//! `segments/day=YYYY-MM-DD/`, recorded in `segments.json`, after which the WAL files they came
//! from are deleted.
//!
//! Recovery on open: WAL files already covered by `segments.json` are deleted; the others are
//! replayed into memory; a torn record at the tail is truncated (it was never acknowledged);
//! segment files not in `segments.json` (a crash mid-seal) are removed, their rows still being in
//! the WAL.
//!
//! ```text
//! <table>/wal/000000000007.wal
//! <table>/segments/day=2026-01-05/000000000003.parquet
//! <table>/segments.json
//! ```

use crate::StorageError;
use crate::wal::{WalWriter, read_wal, sync_dir, truncate};
use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::{sort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use encore_core::time::{Date, MS_PER_DAY};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

const MANIFEST: &str = "segments.json";
const MANIFEST_VERSION: u32 = 1;

/// What a table stores and how its rows are keyed.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// directory name, e.g. `playback`
    pub name: &'static str,
    pub schema: SchemaRef,
    /// Int64 epoch-ms column that partitions rows by UTC day
    pub ts_column: &'static str,
    /// Utf8 column that identifies a row (unique in the log)
    pub id_column: &'static str,
    /// columns with (nearly) a distinct value per row, stored without a dictionary
    pub high_cardinality: &'static [&'static str],
}

/// Tuning of one log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// seal once this many rows are held in memory
    pub seal_rows: usize,
    /// appends waiting for the writer; beyond it [`EventLog::try_submit`] reports the queue full
    pub queue_capacity: usize,
    pub zstd_level: i32,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            seal_rows: 1_000_000,
            queue_capacity: 64,
            zstd_level: 1,
        }
    }
}

/// What [`EventLog::scan_newest`] hands over.
#[derive(Debug)]
pub enum Newest<'a> {
    Batch(&'a RecordBatch),
    /// the next segment holds no row later than this
    Next {
        max_ts_ms: i64,
    },
}

/// One immutable Parquet file of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub id: u64,
    /// UTC day of every row, `YYYY-MM-DD`
    pub day: String,
    /// relative to the table directory
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    table: String,
    next_segment: u64,
    /// every WAL file with a sequence number up to this one is fully in segments
    sealed_through_wal: u64,
    segments: Vec<SegmentInfo>,
}

/// What recovery did when the log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub wal_files_replayed: usize,
    pub rows_replayed: u64,
    /// bytes of a torn tail that were cut (never acknowledged)
    pub torn_bytes_truncated: u64,
    pub orphan_segments_removed: usize,
}

/// Row counts of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogStats {
    pub segments: usize,
    pub segment_bytes: u64,
    pub sealed_rows: u64,
    pub unsealed_rows: u64,
}

struct State {
    manifest: Manifest,
    memtable: Vec<RecordBatch>,
    memtable_rows: usize,
}

struct Shared {
    dir: PathBuf,
    spec: TableSpec,
    options: LogOptions,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a panic while holding the lock cannot leave State half-written: every update is a
        // single assignment or push, so the data is still consistent
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type Ack = SyncSender<Result<(), StorageError>>;

enum Command {
    /// `true`: write the WAL first (durable on ack); `false`: hold in memory until the next seal
    Append(RecordBatch, Ack, bool),
    Seal(Ack),
    /// drop the segments whose rows are all older than this (epoch ms)
    DropBefore(i64, SyncSender<Result<(u64, u64), StorageError>>),
    /// rewrite the segments overlapping a time range through a function
    Rewrite(
        i64,
        i64,
        bool,
        Box<Rewriter>,
        SyncSender<Result<RewriteStats, StorageError>>,
    ),
}

/// A segment's batches in, the batches to keep out (rows filtered or columns recomputed; the
/// schema stays).
pub type Rewriter = dyn FnMut(RecordBatch) -> Result<RecordBatch, StorageError> + Send;

/// What a rewrite did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewriteStats {
    pub segments: u64,
    pub rows_before: u64,
    pub rows_after: u64,
}

/// A pending append: [`Ticket::wait`] returns once the rows are durable.
#[derive(Debug)]
pub struct Ticket(Receiver<Result<(), StorageError>>);

impl Ticket {
    pub fn wait(self) -> Result<(), StorageError> {
        self.0.recv().unwrap_or(Err(StorageError::Closed))
    }
}

/// The queue of the writer is full; retry later.
#[derive(Debug)]
pub struct QueueFull(pub RecordBatch);

/// A durable, append-only log of one table. Cheap to share behind an `Arc`.
pub struct EventLog {
    shared: Arc<Shared>,
    tx: Option<SyncSender<Command>>,
    writer: Option<JoinHandle<()>>,
    recovery: Recovery,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

fn wal_name(seq: u64) -> String {
    format!("{seq:012}.wal")
}

fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema())
        .map_err(StorageError::arrow)?;
    w.write(batch).map_err(StorageError::arrow)?;
    w.finish().map_err(StorageError::arrow)?;
    drop(w);
    Ok(buf)
}

fn decode_ipc(bytes: &[u8], path: &Path) -> Result<Vec<RecordBatch>, StorageError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| StorageError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    reader
        .map(|b| {
            b.map_err(|e| StorageError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        })
        .collect()
}

fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), StorageError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    {
        let mut f = File::create(&tmp).map_err(StorageError::io(&tmp))?;
        std::io::Write::write_all(&mut f, &text).map_err(StorageError::io(&tmp))?;
        f.sync_all().map_err(StorageError::io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(StorageError::io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn list_wal(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StorageError::io(dir))? {
        let path = entry.map_err(StorageError::io(dir))?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

impl EventLog {
    /// Opens (creating if needed) the table's log under `dir`, recovering from the WAL.
    pub fn open(
        dir: &Path,
        spec: TableSpec,
        options: LogOptions,
    ) -> Result<EventLog, StorageError> {
        let wal_dir = dir.join("wal");
        let seg_dir = dir.join("segments");
        for d in [dir, &wal_dir, &seg_dir] {
            std::fs::create_dir_all(d).map_err(StorageError::io(d))?;
        }
        let manifest_path = dir.join(MANIFEST);
        let manifest: Manifest = match std::fs::read(&manifest_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path: manifest_path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest {
                version: MANIFEST_VERSION,
                table: spec.name.to_owned(),
                next_segment: 1,
                sealed_through_wal: 0,
                segments: Vec::new(),
            },
            Err(e) => {
                return Err(StorageError::Io {
                    path: manifest_path,
                    source: e,
                });
            }
        };
        if manifest.version > MANIFEST_VERSION {
            return Err(StorageError::UnsupportedFormat {
                path: manifest_path,
                found: manifest.version,
                supported: MANIFEST_VERSION,
            });
        }

        let mut recovery = Recovery::default();
        // segments written by a seal that crashed before its manifest update
        let known: HashSet<&str> = manifest.segments.iter().map(|s| s.path.as_str()).collect();
        for day_dir in std::fs::read_dir(&seg_dir).map_err(StorageError::io(&seg_dir))? {
            let day_dir = day_dir.map_err(StorageError::io(&seg_dir))?.path();
            if !day_dir.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&day_dir).map_err(StorageError::io(&day_dir))? {
                let path = f.map_err(StorageError::io(&day_dir))?.path();
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                if !known.contains(rel.as_str()) {
                    std::fs::remove_file(&path).map_err(StorageError::io(&path))?;
                    recovery.orphan_segments_removed += 1;
                }
            }
        }

        let mut memtable = Vec::new();
        let mut memtable_rows = 0;
        let wal_files = list_wal(&wal_dir)?;
        let last_seq = wal_files
            .last()
            .map_or(manifest.sealed_through_wal, |(s, _)| *s);
        let n_files = wal_files.len();
        for (i, (seq, path)) in wal_files.into_iter().enumerate() {
            if seq <= manifest.sealed_through_wal {
                std::fs::remove_file(&path).map_err(StorageError::io(&path))?;
                continue;
            }
            let contents = read_wal(&path)?;
            if contents.torn_bytes > 0 {
                if i + 1 != n_files {
                    return Err(StorageError::Corrupt {
                        path,
                        message: format!(
                            "{} bytes after offset {} are not valid records, and this is not the \
                             last WAL file",
                            contents.torn_bytes, contents.valid_len
                        ),
                    });
                }
                tracing::warn!(
                    path = %path.display(),
                    bytes = contents.torn_bytes,
                    "truncating a torn WAL tail (never acknowledged)"
                );
                truncate(&path, contents.valid_len)?;
                recovery.torn_bytes_truncated += contents.torn_bytes;
            }
            recovery.wal_files_replayed += 1;
            for record in &contents.records {
                for batch in decode_ipc(record, &path)? {
                    memtable_rows += batch.num_rows();
                    recovery.rows_replayed += batch.num_rows() as u64;
                    memtable.push(batch);
                }
            }
        }

        let wal = WalWriter::create(&wal_dir.join(wal_name(last_seq + 1)))?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            spec,
            options: options.clone(),
            state: Mutex::new(State {
                manifest,
                memtable,
                memtable_rows,
            }),
        });
        let (tx, rx) = sync_channel(options.queue_capacity);
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name(format!("encore-log-{}", shared.spec.name))
            .spawn(move || {
                Writer {
                    shared: writer_shared,
                    wal,
                    seq: last_seq + 1,
                    sealing: None,
                }
                .run(&rx)
            })
            .map_err(StorageError::io(dir))?;
        Ok(EventLog {
            shared,
            tx: Some(tx),
            writer: Some(writer),
            recovery,
        })
    }

    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    pub fn spec(&self) -> &TableSpec {
        &self.shared.spec
    }

    fn check_schema(&self, batch: &RecordBatch) -> Result<(), StorageError> {
        if batch.schema().fields() != self.shared.spec.schema.fields() {
            return Err(StorageError::SchemaMismatch {
                table: self.shared.spec.name.to_owned(),
            });
        }
        Ok(())
    }

    /// Queues `batch` without blocking; the ticket resolves when it is durable.
    pub fn try_submit(
        &self,
        batch: RecordBatch,
    ) -> Result<Result<Ticket, QueueFull>, StorageError> {
        self.check_schema(&batch)?;
        let tx = self.tx.as_ref().ok_or(StorageError::Closed)?;
        let (ack, rx) = sync_channel(1);
        match tx.try_send(Command::Append(batch, ack, true)) {
            Ok(()) => Ok(Ok(Ticket(rx))),
            Err(TrySendError::Full(Command::Append(batch, _, _))) => Ok(Err(QueueFull(batch))),
            Err(TrySendError::Full(
                Command::Seal(_) | Command::DropBefore(..) | Command::Rewrite(..),
            ))
            | Err(TrySendError::Disconnected(_)) => Err(StorageError::Closed),
        }
    }

    /// Appends `batch` and returns once it is durable (blocking while the queue is full).
    pub fn append(&self, batch: RecordBatch) -> Result<(), StorageError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.check_schema(&batch)?;
        let tx = self.tx.as_ref().ok_or(StorageError::Closed)?;
        let (ack, rx) = sync_channel(1);
        tx.send(Command::Append(batch, ack, true))
            .map_err(|_| StorageError::Closed)?;
        Ticket(rx).wait()
    }

    /// Bulk loading: holds `batch` in memory without writing the WAL; it becomes durable at the
    /// next seal (automatic when `seal_rows` is reached, or [`EventLog::seal`]). A crash before
    /// then loses it, so a caller acknowledges nothing until it has sealed. Blocks while the
    /// queue is full.
    pub fn append_unlogged(&self, batch: RecordBatch) -> Result<Ticket, StorageError> {
        self.check_schema(&batch)?;
        let tx = self.tx.as_ref().ok_or(StorageError::Closed)?;
        let (ack, rx) = sync_channel(1);
        tx.send(Command::Append(batch, ack, false))
            .map_err(|_| StorageError::Closed)?;
        Ok(Ticket(rx))
    }

    /// Seals everything held in memory into Parquet segments now.
    pub fn seal(&self) -> Result<(), StorageError> {
        let tx = self.tx.as_ref().ok_or(StorageError::Closed)?;
        let (ack, rx) = sync_channel(1);
        tx.send(Command::Seal(ack))
            .map_err(|_| StorageError::Closed)?;
        Ticket(rx).wait()
    }

    /// Retention: drops the sealed segments whose rows are all older than `cutoff_ms` (whole
    /// segments: a day's segment goes once its last row has expired). Returns (segments, rows)
    /// dropped. Unsealed rows are never dropped here.
    pub fn drop_before(&self, cutoff_ms: i64) -> Result<(u64, u64), StorageError> {
        let tx = self.tx.as_ref().ok_or(StorageError::Closed)?;
        let (ack, rx) = sync_channel(1);
        tx.send(Command::DropBefore(cutoff_ms, ack))
            .map_err(|_| StorageError::Closed)?;
        rx.recv().map_err(|_| StorageError::Closed)?
    }

    /// Compaction: rewrites every sealed segment overlapping `[from_ms, to_ms]` through `f`
    /// (filter rows, recompute columns; the schema stays). With `filter_only`, `f` only drops
    /// rows, and a segment it drops nothing from is left as it is. Unsealed rows are not
    /// touched: seal first to include them.
    pub fn rewrite(
        &self,
        from_ms: i64,
        to_ms: i64,
        filter_only: bool,
        f: impl FnMut(RecordBatch) -> Result<RecordBatch, StorageError> + Send + 'static,
    ) -> Result<RewriteStats, StorageError> {
        let tx = self.tx.as_ref().ok_or(StorageError::Closed)?;
        let (ack, rx) = sync_channel(1);
        tx.send(Command::Rewrite(
            from_ms,
            to_ms,
            filter_only,
            Box::new(f),
            ack,
        ))
        .map_err(|_| StorageError::Closed)?;
        rx.recv().map_err(|_| StorageError::Closed)?
    }

    /// Seals and stops the writer. Dropping the log does the same, ignoring errors.
    pub fn close(mut self) -> Result<(), StorageError> {
        let result = self.seal();
        self.stop();
        result
    }

    /// Stops the writer without sealing, leaving the directory as a crash would (acknowledged rows
    /// only in the WAL). For recovery tests.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared.lock().manifest.segments.clone()
    }

    pub fn stats(&self) -> LogStats {
        let state = self.shared.lock();
        LogStats {
            segments: state.manifest.segments.len(),
            segment_bytes: state.manifest.segments.iter().map(|s| s.bytes).sum(),
            sealed_rows: state.manifest.segments.iter().map(|s| s.rows).sum(),
            unsealed_rows: state.memtable_rows as u64,
        }
    }

    /// Calls `f` with every batch of the log (segments in order, then unsealed rows), projected
    /// on `columns` (all when `None`).
    pub fn scan(
        &self,
        columns: Option<&[&str]>,
        f: impl FnMut(&RecordBatch) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.scan_range(i64::MIN, i64::MAX, true, columns, f)
    }

    /// As [`EventLog::scan`], reading only segments that may hold rows with a time in
    /// `[from_ms, to_ms]`, and the unsealed rows when `unsealed` (whole: the caller filters).
    pub fn scan_range(
        &self,
        from_ms: i64,
        to_ms: i64,
        unsealed: bool,
        columns: Option<&[&str]>,
        mut f: impl FnMut(&RecordBatch) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let (segments, memtable) = {
            let state = self.shared.lock();
            let segments: Vec<SegmentInfo> = state
                .manifest
                .segments
                .iter()
                .filter(|seg| seg.max_ts_ms >= from_ms && seg.min_ts_ms <= to_ms)
                .cloned()
                .collect();
            (segments, state.memtable.clone())
        };
        let indices = self.projection(columns)?;
        for seg in &segments {
            self.read_segment(seg, columns, indices.as_deref(), &mut f)?;
        }
        for batch in memtable.iter().filter(|_| unsealed) {
            match &indices {
                Some(idx) => f(&batch.project(idx).map_err(StorageError::arrow)?)?,
                None => f(batch)?,
            }
        }
        Ok(())
    }

    /// The indices of `columns` in the table's schema (`None`: every column).
    fn projection(&self, columns: Option<&[&str]>) -> Result<Option<Vec<usize>>, StorageError> {
        let schema = &self.shared.spec.schema;
        columns
            .map(|cols| {
                cols.iter()
                    .map(|c| {
                        schema.index_of(c).map_err(|_| StorageError::UnknownColumn {
                            table: self.shared.spec.name.to_owned(),
                            column: (*c).to_owned(),
                        })
                    })
                    .collect()
            })
            .transpose()
    }

    /// Reads the log newest first, for "the latest N" queries: the unsealed rows, then the
    /// segments by descending latest time. Before each segment `f` gets [`Newest::Next`] with
    /// the latest time it can hold, and the scan stops as soon as `f` answers `false` (it has
    /// all it needs from rows that recent).
    pub fn scan_newest(
        &self,
        columns: Option<&[&str]>,
        mut f: impl FnMut(Newest<'_>) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        let mut segments = self.segments();
        segments.sort_by_key(|s| std::cmp::Reverse(s.max_ts_ms));
        let memtable = self.shared.lock().memtable.clone();
        let indices = self.projection(columns)?;
        for batch in &memtable {
            let b = match &indices {
                Some(idx) => batch.project(idx).map_err(StorageError::arrow)?,
                None => batch.clone(),
            };
            if !f(Newest::Batch(&b))? {
                return Ok(());
            }
        }
        for seg in &segments {
            if !f(Newest::Next {
                max_ts_ms: seg.max_ts_ms,
            })? {
                return Ok(());
            }
            let mut keep_going = true;
            self.read_segment(seg, columns, indices.as_deref(), &mut |b| {
                if keep_going {
                    keep_going = f(Newest::Batch(b))?;
                }
                Ok(())
            })?;
            if !keep_going {
                return Ok(());
            }
        }
        Ok(())
    }

    fn read_segment(
        &self,
        seg: &SegmentInfo,
        columns: Option<&[&str]>,
        indices: Option<&[usize]>,
        f: &mut dyn FnMut(&RecordBatch) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let path = self.shared.dir.join(&seg.path);
        let file = File::open(&path).map_err(StorageError::io(&path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| StorageError::parquet(&path, &e))?
            .with_batch_size(64 * 1024);
        let builder = match indices {
            Some(idx) => {
                let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
                builder.with_projection(mask)
            }
            None => builder,
        };
        let reader = builder
            .build()
            .map_err(|e| StorageError::parquet(&path, &e))?;
        for batch in reader {
            let batch = batch.map_err(|e| StorageError::parquet(&path, &e))?;
            match columns {
                // a projection reads columns in file order: put them in the order asked for
                Some(cols) => {
                    let order: Vec<usize> = cols
                        .iter()
                        .map(|c| batch.schema().index_of(c).map_err(StorageError::arrow))
                        .collect::<Result<_, _>>()?;
                    f(&batch.project(&order).map_err(StorageError::arrow)?)?
                }
                None => f(&batch)?,
            }
        }
        Ok(())
    }

    /// Checks the log: every segment readable with the rows and day the manifest says, and every
    /// row id unique. Returns the problems found.
    pub fn verify(&self) -> Result<Vec<String>, StorageError> {
        let mut problems = Vec::new();
        let segments = self.segments();
        for seg in &segments {
            let path = self.shared.dir.join(&seg.path);
            let check = || -> Result<(), String> {
                let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", seg.path))?;
                if meta.len() != seg.bytes {
                    return Err(format!(
                        "{}: {} bytes, manifest says {}",
                        seg.path,
                        meta.len(),
                        seg.bytes
                    ));
                }
                let file = File::open(&path).map_err(|e| format!("{}: {e}", seg.path))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| format!("{}: {e}", seg.path))?;
                let rows = reader.metadata().file_metadata().num_rows() as u64;
                if rows != seg.rows {
                    return Err(format!(
                        "{}: {rows} rows, manifest says {}",
                        seg.path, seg.rows
                    ));
                }
                let day = Date::from_epoch_ms(seg.min_ts_ms).to_string();
                if day != seg.day || Date::from_epoch_ms(seg.max_ts_ms).to_string() != seg.day {
                    return Err(format!("{}: rows outside day {}", seg.path, seg.day));
                }
                Ok(())
            };
            if let Err(p) = check() {
                problems.push(p);
            }
        }
        if !problems.is_empty() {
            return Ok(problems);
        }
        let id_column = self.shared.spec.id_column;
        let mut seen: HashSet<String> = HashSet::new();
        let mut duplicates = 0u64;
        self.scan(Some(&[id_column]), |batch| {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| StorageError::UnknownColumn {
                    table: self.shared.spec.name.to_owned(),
                    column: id_column.to_owned(),
                })?;
            for id in ids.iter().flatten() {
                if !seen.insert(id.to_owned()) {
                    duplicates += 1;
                }
            }
            Ok(())
        })?;
        if duplicates > 0 {
            problems.push(format!(
                "{duplicates} rows share an {id_column} with another row"
            ));
        }
        Ok(problems)
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let _ = self.seal();
        }
        self.stop();
    }
}

/// One write result for many waiters (`io::Error` is not `Clone`).
fn shareable(result: &Result<(), StorageError>) -> Result<(), StorageError> {
    result
        .as_ref()
        .map(|_| ())
        .map_err(|e| StorageError::WriteFailed {
            message: e.to_string(),
        })
}

struct Writer {
    shared: Arc<Shared>,
    wal: WalWriter,
    seq: u64,
    /// the seal running in the background, if any
    sealing: Option<JoinHandle<Result<(), StorageError>>>,
}

impl Writer {
    fn run(mut self, rx: &Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            // group commit: everything already waiting shares one fsync
            let mut batches = Vec::new();
            let mut acks = Vec::new();
            let mut seals = Vec::new();
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(batch, ack, logged) => {
                        batches.push((batch, logged));
                        acks.push(ack);
                    }
                    Command::Seal(ack) => seals.push(ack),
                    Command::DropBefore(cutoff, ack) => {
                        // between group commits, with no seal running: the manifest is ours
                        let result = self
                            .finish_sealing()
                            .and_then(|()| self.drop_before(cutoff));
                        let _ = ack.send(result);
                    }
                    Command::Rewrite(from, to, filter_only, mut f, ack) => {
                        let result = self
                            .finish_sealing()
                            .and_then(|()| self.rewrite(from, to, filter_only, &mut f));
                        let _ = ack.send(result);
                    }
                }
                if batches.len() < 256 {
                    next = rx.try_recv().ok();
                }
            }
            if !batches.is_empty() {
                let result = self.write(&batches);
                if result.is_ok() {
                    // visible to readers before anyone is told it is durable
                    let mut state = self.shared.lock();
                    for (b, _) in batches {
                        state.memtable_rows += b.num_rows();
                        state.memtable.push(b);
                    }
                }
                for ack in acks {
                    let _ = ack.send(shareable(&result));
                }
            }
            let rows = self.shared.lock().memtable_rows;
            let seal_rows = self.shared.options.seal_rows;
            if !seals.is_empty() {
                // an explicit seal: everything held so far, before answering
                let result = self.finish_sealing().and_then(|()| {
                    let job = self.start_seal(true)?;
                    match job {
                        Some(h) => h.join().unwrap_or(Err(StorageError::Closed)),
                        None => Ok(()),
                    }
                });
                for ack in seals {
                    let _ = ack.send(shareable(&result));
                }
            } else if rows >= seal_rows {
                let busy = self.sealing.as_ref().is_some_and(|h| !h.is_finished());
                if busy && rows >= 2 * seal_rows {
                    // the background seal is behind: wait for it (bounded memory)
                    let _ = self.finish_sealing();
                }
                if self.sealing.as_ref().is_none_or(|h| h.is_finished()) {
                    let _ = self.finish_sealing();
                    match self.start_seal(false) {
                        Ok(job) => self.sealing = job,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start sealing; rows stay in the WAL")
                        }
                    }
                }
            }
        }
        let _ = self.finish_sealing();
    }

    fn write(&mut self, batches: &[(RecordBatch, bool)]) -> Result<(), StorageError> {
        let mut any = false;
        for (b, logged) in batches {
            if *logged {
                self.wal.append(&encode_ipc(b)?)?;
                any = true;
            }
        }
        if any { self.wal.sync() } else { Ok(()) }
    }

    /// Removes the segments whose latest row is older than `cutoff_ms`: the manifest first (so a
    /// crash leaves only unreferenced files, which the next open deletes), then the files.
    /// Returns (segments, rows) dropped.
    fn drop_before(&mut self, cutoff_ms: i64) -> Result<(u64, u64), StorageError> {
        let mut manifest = self.shared.lock().manifest.clone();
        let (old, keep): (Vec<SegmentInfo>, Vec<SegmentInfo>) = manifest
            .segments
            .into_iter()
            .partition(|s| s.max_ts_ms < cutoff_ms);
        if old.is_empty() {
            return Ok((0, 0));
        }
        manifest.segments = keep;
        write_json_atomic(&self.shared.dir.join(MANIFEST), &manifest)?;
        self.shared.lock().manifest = manifest;
        for seg in &old {
            let path = self.shared.dir.join(&seg.path);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), "expired segment not removed: {e}");
            }
        }
        Ok((old.len() as u64, old.iter().map(|s| s.rows).sum()))
    }

    /// Replaces each segment overlapping `[from_ms, to_ms]` by `f` of its rows (same day; a
    /// segment left empty is removed). New files are written and the manifest switched before
    /// the old files are deleted, so a crash leaves either version.
    fn rewrite(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        filter_only: bool,
        f: &mut Rewriter,
    ) -> Result<RewriteStats, StorageError> {
        let mut manifest = self.shared.lock().manifest.clone();
        let mut stats = RewriteStats::default();
        let mut replaced = Vec::new();
        let mut segments = Vec::with_capacity(manifest.segments.len());
        let ts_idx = self
            .shared
            .spec
            .schema
            .index_of(self.shared.spec.ts_column)
            .map_err(StorageError::arrow)?;
        for seg in std::mem::take(&mut manifest.segments) {
            if seg.max_ts_ms < from_ms || seg.min_ts_ms > to_ms {
                segments.push(seg);
                continue;
            }
            let path = self.shared.dir.join(&seg.path);
            let mut out = Vec::new();
            for batch in segment_reader(&self.shared, &seg)? {
                let batch = batch.map_err(|e| StorageError::parquet(&path, &e))?;
                stats.rows_before += batch.num_rows() as u64;
                let kept = f(batch)?;
                if kept.num_rows() > 0 {
                    out.push(kept);
                }
            }
            let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
            stats.rows_after += rows as u64;
            if filter_only && rows as u64 == seg.rows {
                // nothing filtered out: the segment stays as it is
                segments.push(seg);
                continue;
            }
            stats.segments += 1;
            if rows > 0 {
                let id = manifest.next_segment;
                manifest.next_segment += 1;
                let rel = format!("segments/day={}/{id:012}.parquet", seg.day);
                let bytes = write_segment(&self.shared, &rel, &out)?;
                let (mut min, mut max) = (i64::MAX, i64::MIN);
                for b in &out {
                    if let Some(ts) = b.column(ts_idx).as_any().downcast_ref::<Int64Array>() {
                        for t in ts.values() {
                            min = min.min(*t);
                            max = max.max(*t);
                        }
                    }
                }
                segments.push(SegmentInfo {
                    id,
                    day: seg.day.clone(),
                    path: rel,
                    rows: rows as u64,
                    bytes,
                    min_ts_ms: min,
                    max_ts_ms: max,
                });
            }
            replaced.push(seg);
        }
        if replaced.is_empty() {
            return Ok(stats);
        }
        manifest.segments = segments;
        write_json_atomic(&self.shared.dir.join(MANIFEST), &manifest)?;
        self.shared.lock().manifest = manifest;
        for seg in &replaced {
            let path = self.shared.dir.join(&seg.path);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), "rewritten segment not removed: {e}");
            }
        }
        Ok(stats)
    }

    /// Waits for the background seal, if one is running.
    fn finish_sealing(&mut self) -> Result<(), StorageError> {
        match self.sealing.take() {
            None => Ok(()),
            Some(h) => {
                let result = h.join().unwrap_or(Err(StorageError::Closed));
                if let Err(e) = &result {
                    tracing::error!(error = %e, "sealing the event log failed; rows stay in the WAL");
                }
                result
            }
        }
    }

    /// Snapshots the memtable, rotates the WAL (new appends go to a new file), and seals the
    /// snapshot on another thread, so appends go on meanwhile.
    fn start_seal(
        &mut self,
        parallel: bool,
    ) -> Result<Option<JoinHandle<Result<(), StorageError>>>, StorageError> {
        let snapshot = self.shared.lock().memtable.clone();
        if snapshot.is_empty() {
            return Ok(None);
        }
        let sealed_through = self.seq;
        self.seq += 1;
        self.wal = WalWriter::create(&self.shared.dir.join("wal").join(wal_name(self.seq)))?;
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name(format!("encore-seal-{}", shared.spec.name))
            .spawn(move || {
                let started = std::time::Instant::now();
                let result = seal(&shared, &snapshot, sealed_through, parallel);
                tracing::debug!(
                    table = shared.spec.name,
                    seconds = started.elapsed().as_secs_f64(),
                    "sealed"
                );
                result
            })
            .map_err(StorageError::io(&self.shared.dir))?;
        Ok(Some(handle))
    }
}

/// Writes `snapshot` (the first batches of the memtable) as segments, records them, drops them
/// from the memtable, and deletes the WAL files up to `sealed_through`.
fn seal(
    shared: &Shared,
    snapshot: &[RecordBatch],
    sealed_through: u64,
    parallel: bool,
) -> Result<(), StorageError> {
    let mut manifest = shared.lock().manifest.clone();
    let spec = &shared.spec;
    let ts_idx = spec
        .schema
        .index_of(spec.ts_column)
        .map_err(StorageError::arrow)?;
    let ts_of = |b: &RecordBatch| -> Result<Int64Array, StorageError> {
        b.column(ts_idx)
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| StorageError::UnknownColumn {
                table: spec.name.to_owned(),
                column: spec.ts_column.to_owned(),
            })
    };
    // Each batch is cut into runs of one UTC day, without copying when the batch is in time order
    // (a file's or a client's usually is; a batch that is not is sorted on its own). A segment is
    // the runs of its day in arrival order: sorted within each run, with exact min/max times.
    let mut days: std::collections::BTreeMap<i64, (Vec<RecordBatch>, i64, i64)> =
        std::collections::BTreeMap::new();
    for b in snapshot {
        let ts = ts_of(b)?;
        let (b, ts) = if ts.values().is_sorted() {
            (b.clone(), ts)
        } else {
            let order = sort_to_indices(&ts, None, None).map_err(StorageError::arrow)?;
            let sorted = take_record_batch(b, &order).map_err(StorageError::arrow)?;
            let ts = ts_of(&sorted)?;
            (sorted, ts)
        };
        let values = ts.values();
        let mut start = 0;
        while start < values.len() {
            let day = values[start].div_euclid(MS_PER_DAY);
            let end = start + values[start..].partition_point(|t| t.div_euclid(MS_PER_DAY) == day);
            let entry = days
                .entry(day)
                .or_insert_with(|| (Vec::new(), i64::MAX, i64::MIN));
            entry.0.push(b.slice(start, end - start));
            entry.1 = entry.1.min(values[start]);
            entry.2 = entry.2.max(values[end - 1]);
            start = end;
        }
    }
    let parts: Vec<(i64, Vec<RecordBatch>, i64, i64)> = days
        .into_iter()
        .map(|(d, (slices, min, max))| (d, slices, min, max))
        .collect();
    let first_id = manifest.next_segment;
    manifest.next_segment += parts.len() as u64;
    let encode = |(k, (day, slices, min, max)): (usize, &(i64, Vec<RecordBatch>, i64, i64))| {
        let id = first_id + k as u64;
        let date = Date::from_days(*day).to_string();
        let rel = format!("segments/day={date}/{id:012}.parquet");
        let bytes = write_segment(shared, &rel, slices)?;
        Ok(SegmentInfo {
            id,
            day: date,
            path: rel,
            rows: slices.iter().map(RecordBatch::num_rows).sum::<usize>() as u64,
            bytes,
            min_ts_ms: *min,
            max_ts_ms: *max,
        })
    };
    // a background seal runs beside ingestion and stays on its own thread (a long encode task in
    // the shared rayon pool would stall the ingest path); an explicit seal may use every core
    let new_segments: Vec<SegmentInfo> = if parallel {
        parts
            .iter()
            .enumerate()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(encode)
            .collect::<Result<_, StorageError>>()?
    } else {
        parts
            .iter()
            .enumerate()
            .map(encode)
            .collect::<Result<_, StorageError>>()?
    };
    manifest.segments.extend(new_segments);
    manifest.sealed_through_wal = sealed_through;
    write_json_atomic(&shared.dir.join(MANIFEST), &manifest)?;
    {
        let mut state = shared.lock();
        state.manifest = manifest;
        // appends since the snapshot are behind it in the memtable: keep those
        state.memtable.drain(..snapshot.len());
        state.memtable_rows -= snapshot.iter().map(RecordBatch::num_rows).sum::<usize>();
    }
    let wal_dir = shared.dir.join("wal");
    for (seq, path) in list_wal(&wal_dir)? {
        if seq <= sealed_through {
            std::fs::remove_file(&path).map_err(StorageError::io(&path))?;
        }
    }
    sync_dir(&wal_dir)
}

/// All columns of one segment, in batches.
fn segment_reader(
    shared: &Shared,
    seg: &SegmentInfo,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, StorageError> {
    let path = shared.dir.join(&seg.path);
    let file = File::open(&path).map_err(StorageError::io(&path))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| StorageError::parquet(&path, &e))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| StorageError::parquet(&path, &e))
}

/// Writes one immutable segment: to a temporary name, fsynced, then renamed into place.
fn write_segment(shared: &Shared, rel: &str, batches: &[RecordBatch]) -> Result<u64, StorageError> {
    let path = shared.dir.join(rel);
    let dir = path.parent().unwrap_or(&shared.dir).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(StorageError::io(&dir))?;
    let tmp = path.with_extension("parquet.tmp");
    let level = ZstdLevel::try_new(shared.options.zstd_level)
        .map_err(|e| StorageError::parquet(&path, &e))?;
    let mut props = WriterProperties::builder();
    // near-unique columns never fit a dictionary: trying costs time, then falls back anyway
    for column in shared.spec.high_cardinality {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    let props = props
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(512 * 1024))
        // unique ids never fit a dictionary, and their min/max say nothing: skip both
        .set_column_dictionary_enabled(ColumnPath::from(shared.spec.id_column), false)
        .set_column_statistics_enabled(
            ColumnPath::from(shared.spec.id_column),
            EnabledStatistics::None,
        )
        // segments are pruned by time: keep chunk statistics for the time column only (min/max
        // of every string column cost a comparison per value and prune nothing here)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(
            ColumnPath::from(shared.spec.ts_column),
            EnabledStatistics::Chunk,
        )
        .build();
    let file = File::create(&tmp).map_err(StorageError::io(&tmp))?;
    let mut w = ArrowWriter::try_new(file, Arc::clone(&shared.spec.schema), Some(props))
        .map_err(|e| StorageError::parquet(&path, &e))?;
    for batch in batches {
        w.write(batch)
            .map_err(|e| StorageError::parquet(&path, &e))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| StorageError::parquet(&path, &e))?;
    file.sync_all().map_err(StorageError::io(&tmp))?;
    let bytes = file.metadata().map_err(StorageError::io(&tmp))?.len();
    drop(file);
    std::fs::rename(&tmp, &path).map_err(StorageError::io(&path))?;
    sync_dir(&dir)?;
    Ok(bytes)
}

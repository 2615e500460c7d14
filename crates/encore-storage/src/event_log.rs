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
//! the WAL. Damage (a bad checksum with intact records after it) is never cut silently: the log
//! refuses to open with a `data_loss` error naming the file and offset, unless it was opened to
//! repair ([`LogOptions::repair_into`], or [`EventLog::repair`] offline), which keeps every intact
//! record and moves the damaged file, unchanged, into quarantine.
//!
//! Every segment's CRC-32 (of the file, and of each row group) is in the manifest: the first read
//! of a segment in a process checks it, [`inspect`] checks every one, and repair keeps the intact
//! row groups of a damaged segment.
//!
//! ```text
//! <table>/wal/000000000007.wal
//! <table>/segments/day=2026-01-05/000000000003.parquet
//! <table>/segments.json
//! ```

use crate::StorageError;
use crate::fs::{self, Fs};
use crate::wal::{self, Damage, WalContents, WalRepair, WalWriter, read_wal, truncate};
use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::{sort_to_indices, take_record_batch};
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
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

const MANIFEST: &str = "segments.json";
/// 2: segments carry CRC-32s (format 1 manifests are read; their segments go unchecked)
const MANIFEST_VERSION: u32 = 2;

pub use crate::table::TableSpec;

/// Tuning of one log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// seal once this many rows are held in memory
    pub seal_rows: usize,
    /// seal too once the oldest row held in memory has waited this long, so outside readers of
    /// the Parquet segments see it (`None`: only by rows)
    pub seal_interval: Option<std::time::Duration>,
    /// appends waiting for the writer; beyond it [`EventLog::try_submit`] reports the queue full
    pub queue_capacity: usize,
    pub zstd_level: i32,
    /// where every write goes (faults are injected here in tests)
    pub fs: Arc<dyn Fs>,
    /// open even when a WAL file is damaged: repair it, moving the original into this directory
    /// (`None`: refuse to open with a `data_loss` error)
    pub repair_into: Option<PathBuf>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            seal_rows: 1_000_000,
            seal_interval: None,
            queue_capacity: 64,
            zstd_level: 1,
            fs: fs::real(),
            repair_into: None,
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
    /// CRC-32 of the whole file (absent in segments written by format 1)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_groups: Vec<RowGroupSum>,
}

/// Where one row group of a segment lies and its CRC-32, so repair keeps the intact ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowGroupSum {
    pub offset: u64,
    pub bytes: u64,
    pub rows: u64,
    pub crc32: u32,
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
    /// damaged WAL files repaired on open ([`LogOptions::repair_into`])
    pub repaired: Vec<WalRepairReport>,
}

/// What repairing one damaged WAL file kept and lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalRepairReport {
    #[serde(flatten)]
    pub wal: WalRepair,
    /// rows that could still be decoded from the damaged bytes (their values may be wrong), and
    /// up to 20 of their ids: what the damage took
    pub damaged_rows_readable: u64,
    pub damaged_ids: Vec<String>,
    /// rows of the intact records kept
    pub rows_kept: u64,
}

/// What repairing one damaged segment kept and lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentRepairReport {
    pub segment: String,
    pub quarantined: PathBuf,
    pub rows_kept: u64,
    pub rows_lost: u64,
    /// byte ranges of the damaged row groups (the whole file when its footer is unreadable)
    pub damage: Vec<Damage>,
    /// up to 20 ids of lost rows, where the id column could still be read
    pub lost_ids: Vec<String>,
}

/// Everything [`EventLog::repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    pub wal: Vec<WalRepairReport>,
    pub segments: Vec<SegmentRepairReport>,
}

impl RepairReport {
    pub fn is_empty(&self) -> bool {
        self.wal.is_empty() && self.segments.is_empty()
    }
}

/// Row counts of the log.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogStats {
    pub segments: usize,
    pub segment_bytes: u64,
    pub sealed_rows: u64,
    pub unsealed_rows: u64,
    /// appends waiting for the writer (the write queue's depth)
    pub queued: usize,
}

struct State {
    manifest: Manifest,
    memtable: Vec<RecordBatch>,
    memtable_rows: usize,
    /// since when the memtable has held rows (cleared when a seal empties it)
    memtable_since: Option<std::time::Instant>,
    /// why the last WAL write failed (cleared by the next write or probe that succeeds)
    write_error: Option<String>,
    /// why the last seal failed (cleared by the next seal that succeeds)
    seal_error: Option<String>,
}

struct Shared {
    dir: PathBuf,
    spec: TableSpec,
    options: LogOptions,
    state: Mutex<State>,
    /// segments whose checksum was checked by this process
    checked: Mutex<HashSet<u64>>,
    /// appends sent to the writer and not yet taken by it
    queued: std::sync::atomic::AtomicUsize,
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

fn encode_ipc_into(batch: &RecordBatch, buf: &mut Vec<u8>) -> Result<(), StorageError> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(buf, &batch.schema())
        .map_err(StorageError::arrow)?;
    w.write(batch).map_err(StorageError::arrow)?;
    w.finish().map_err(StorageError::arrow)
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

fn write_json_atomic(fs: &dyn Fs, path: &Path, value: &impl Serialize) -> Result<(), StorageError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut f = fs.create(&tmp).map_err(StorageError::io(&tmp))?;
    f.write_all_at(&text, 0)
        .and_then(|()| f.sync_all())
        .map_err(StorageError::io(&tmp))?;
    drop(f);
    fs.rename(&tmp, path).map_err(StorageError::io(path))?;
    if let Some(dir) = path.parent() {
        fs.sync_dir(dir).map_err(StorageError::io(dir))?;
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

fn read_manifest(dir: &Path, spec: &TableSpec) -> Result<Manifest, StorageError> {
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
    // written back in the current version at the next change
    let mut manifest = manifest;
    manifest.version = MANIFEST_VERSION;
    Ok(manifest)
}

/// The WAL files of a log that are not yet covered by its segments, each with what it holds.
/// `last` marks the newest file, the only one where a torn tail is expected.
struct WalFile {
    seq: u64,
    path: PathBuf,
    contents: WalContents,
    last: bool,
}

impl WalFile {
    /// Damage, or a torn tail where none can be (before the newest file).
    fn damaged(&self) -> bool {
        !self.contents.damage.is_empty() || (self.contents.torn_bytes > 0 && !self.last)
    }

    fn data_loss(&self) -> StorageError {
        let (offset, bytes) = match self.contents.damage.first() {
            Some(d) => (d.offset, d.bytes),
            None => (self.contents.valid_len, self.contents.torn_bytes),
        };
        StorageError::DataLoss {
            path: self.path.clone(),
            offset,
            bytes,
            detail: format!(
                "{} damaged range(s), {} intact record(s) readable",
                self.contents.damage.len().max(1),
                self.contents.len()
            ),
        }
    }
}

fn unsealed_wal(dir: &Path, manifest: &Manifest) -> Result<Vec<WalFile>, StorageError> {
    let files = list_wal(&dir.join("wal"))?;
    let newest = files.last().map(|(s, _)| *s);
    let mut out = Vec::new();
    for (seq, path) in files {
        if seq <= manifest.sealed_through_wal {
            continue;
        }
        let contents = read_wal(&path)?;
        out.push(WalFile {
            seq,
            path,
            contents,
            last: Some(seq) == newest,
        });
    }
    Ok(out)
}

/// Repairs one damaged WAL file, reporting the rows kept and what can still be read of the lost.
fn repair_wal_file(
    fs: &dyn Fs,
    spec: &TableSpec,
    file: &WalFile,
    quarantine: &Path,
) -> Result<WalRepairReport, StorageError> {
    let mut rows_kept = 0u64;
    for record in file.contents.records() {
        for b in decode_ipc(record, &file.path)? {
            rows_kept += b.num_rows() as u64;
        }
    }
    let (mut damaged_rows_readable, mut damaged_ids) = (0u64, Vec::new());
    for d in &file.contents.damage {
        // a damaged record whose header still frames it may decode (with wrong values)
        let bytes = file.contents.damaged_bytes(d);
        let Some(payload) = bytes.get(12..) else {
            continue;
        };
        if let Ok(batches) = decode_ipc(payload, &file.path) {
            for b in batches {
                damaged_rows_readable += b.num_rows() as u64;
                if let Some(ids) = b
                    .column_by_name(spec.id_column)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                {
                    damaged_ids.extend(
                        ids.iter()
                            .flatten()
                            .take(20 - damaged_ids.len().min(20))
                            .map(str::to_owned),
                    );
                }
            }
        }
    }
    let wal = wal::repair(fs, &file.path, &file.contents, quarantine)?;
    tracing::error!(
        path = %file.path.display(),
        quarantined = %wal.quarantined.display(),
        damaged_bytes = file.contents.damage.iter().map(|d| d.bytes).sum::<u64>(),
        rows_kept,
        damaged_rows_readable,
        "repaired a damaged WAL file: intact records kept, the original moved to quarantine"
    );
    Ok(WalRepairReport {
        wal,
        damaged_rows_readable,
        damaged_ids,
        rows_kept,
    })
}

impl EventLog {
    /// Opens (creating if needed) the table's log under `dir`, recovering from the WAL.
    pub fn open(
        dir: &Path,
        spec: TableSpec,
        options: LogOptions,
    ) -> Result<EventLog, StorageError> {
        let fs = Arc::clone(&options.fs);
        let wal_dir = dir.join("wal");
        let seg_dir = dir.join("segments");
        for d in [dir, &wal_dir, &seg_dir] {
            std::fs::create_dir_all(d).map_err(StorageError::io(d))?;
        }
        let manifest = read_manifest(dir, &spec)?;

        let mut recovery = Recovery::default();
        // damage first: a log that refuses to open must not have changed anything
        let mut wal_files = unsealed_wal(dir, &manifest)?;
        if let Some(bad) = wal_files.iter().find(|f| f.damaged()) {
            let Some(quarantine) = &options.repair_into else {
                return Err(bad.data_loss());
            };
            for f in wal_files.iter().filter(|f| f.damaged()) {
                recovery
                    .repaired
                    .push(repair_wal_file(&*fs, &spec, f, quarantine)?);
            }
            wal_files = unsealed_wal(dir, &manifest)?;
        }

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
                    fs.remove_file(&path).map_err(StorageError::io(&path))?;
                    recovery.orphan_segments_removed += 1;
                }
            }
        }
        for (seq, path) in list_wal(&wal_dir)? {
            if seq <= manifest.sealed_through_wal {
                fs.remove_file(&path).map_err(StorageError::io(&path))?;
            }
        }

        let mut memtable = Vec::new();
        let mut memtable_rows = 0;
        let last_seq = wal_files
            .last()
            .map_or(manifest.sealed_through_wal, |f| f.seq);
        for f in &wal_files {
            if f.contents.torn_bytes > 0 {
                tracing::warn!(
                    path = %f.path.display(),
                    bytes = f.contents.torn_bytes,
                    "truncating a torn WAL tail (an incomplete write, never acknowledged)"
                );
                truncate(&*fs, &f.path, f.contents.valid_len)?;
                recovery.torn_bytes_truncated += f.contents.torn_bytes;
            }
            recovery.wal_files_replayed += 1;
            for record in f.contents.records() {
                for batch in decode_ipc(record, &f.path)? {
                    memtable_rows += batch.num_rows();
                    recovery.rows_replayed += batch.num_rows() as u64;
                    memtable.push(batch);
                }
            }
        }
        drop(wal_files);

        let wal = WalWriter::create(&fs, &wal_dir.join(wal_name(last_seq + 1)))?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            spec,
            options: options.clone(),
            state: Mutex::new(State {
                manifest,
                memtable_since: (memtable_rows > 0).then(std::time::Instant::now),
                memtable,
                memtable_rows,
                write_error: None,
                seal_error: None,
            }),
            checked: Mutex::new(HashSet::new()),
            queued: std::sync::atomic::AtomicUsize::new(0),
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

    /// Repairs the log under `dir` without opening it (the caller holds the data directory):
    /// every damaged WAL file is rewritten with its intact records and every damaged segment with
    /// its intact row groups; the originals move, unchanged, into `quarantine`. Reports exactly
    /// what was kept and lost. A log without damage is left as it is.
    pub fn repair(
        dir: &Path,
        spec: &TableSpec,
        quarantine: &Path,
        fs: &dyn Fs,
    ) -> Result<RepairReport, StorageError> {
        let mut report = RepairReport::default();
        if !dir.join(MANIFEST).exists() && !dir.join("wal").exists() {
            return Ok(report);
        }
        let mut manifest = read_manifest(dir, spec)?;
        for f in unsealed_wal(dir, &manifest)?.iter().filter(|f| f.damaged()) {
            report
                .wal
                .push(repair_wal_file(fs, spec, f, &quarantine.join("wal"))?);
        }
        let mut segments = Vec::with_capacity(manifest.segments.len());
        let mut replaced = false;
        for seg in std::mem::take(&mut manifest.segments) {
            if check_segment(dir, &seg).is_ok() {
                segments.push(seg);
                continue;
            }
            let (kept, r) = repair_segment(
                fs,
                dir,
                spec,
                &seg,
                manifest.next_segment,
                &quarantine.join("segments"),
            )?;
            manifest.next_segment += 1;
            segments.extend(kept);
            report.segments.push(r);
            replaced = true;
        }
        if replaced {
            manifest.segments = segments;
            manifest.version = MANIFEST_VERSION;
            write_json_atomic(fs, &dir.join(MANIFEST), &manifest)?;
            for r in &report.segments {
                let path = dir.join(&r.segment);
                if let Err(e) = fs.remove_file(&path) {
                    tracing::warn!(path = %path.display(), "damaged segment not removed: {e}");
                }
            }
        }
        Ok(report)
    }

    /// Why writes fail right now (a WAL write, or sealing), if they do. Clears by itself once a
    /// write, a probe of the disk, or a seal succeeds again.
    pub fn health(&self) -> Option<String> {
        let state = self.shared.lock();
        match (&state.write_error, &state.seal_error) {
            (Some(w), _) => Some(format!(
                "writes to the {} log fail: {w}",
                self.shared.spec.name
            )),
            (None, Some(s)) => Some(format!(
                "sealing the {} log fails: {s}",
                self.shared.spec.name
            )),
            (None, None) => None,
        }
    }

    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The log's directory (segment paths are relative to it).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
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
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let sent = tx.try_send(Command::Append(batch, ack, true));
        if sent.is_err() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
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
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(Command::Append(batch, ack, true)).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            StorageError::Closed
        })?;
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
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(Command::Append(batch, ack, false)).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            StorageError::Closed
        })?;
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

    /// Calls `f` with every batch of one sealed segment (checked as every read is), projected
    /// on `columns`; `false` when the log no longer holds the segment (retention or a rewrite
    /// replaced it).
    pub fn scan_segment(
        &self,
        id: u64,
        columns: Option<&[&str]>,
        mut f: impl FnMut(&RecordBatch) -> Result<(), StorageError>,
    ) -> Result<bool, StorageError> {
        let seg = {
            let state = self.shared.lock();
            state.manifest.segments.iter().find(|s| s.id == id).cloned()
        };
        let Some(seg) = seg else {
            return Ok(false);
        };
        let indices = self.projection(columns)?;
        self.read_segment(&seg, columns, indices.as_deref(), &mut f)?;
        Ok(true)
    }

    pub fn stats(&self) -> LogStats {
        let state = self.shared.lock();
        LogStats {
            segments: state.manifest.segments.len(),
            segment_bytes: state.manifest.segments.iter().map(|s| s.bytes).sum(),
            sealed_rows: state.manifest.segments.iter().map(|s| s.rows).sum(),
            unsealed_rows: state.memtable_rows as u64,
            queued: self.shared.queued.load(Ordering::Relaxed),
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
        if seg.crc32.is_some() && !self.shared.checked_contains(seg.id) {
            // once per segment and process: a full read at page-cache speed, small beside decoding
            let data = std::fs::read(&path).map_err(StorageError::io(&path))?;
            if let Some(damage) = segment_damage(&data, seg) {
                return Err(segment_data_loss(&path, seg, &damage));
            }
            self.shared.checked_insert(seg.id);
        }
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
            let batch = crate::lake::from_lake(&batch, &self.shared.spec.schema, indices)?;
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

    /// Checks the log: every segment as the manifest records it (size, checksum, rows, day), and
    /// every row id once. Returns the problems found.
    pub fn verify(&self) -> Result<Vec<String>, StorageError> {
        let mut problems: Vec<String> = self
            .segments()
            .iter()
            .filter_map(|seg| check_segment(&self.shared.dir, seg).err())
            .collect();
        if !problems.is_empty() {
            return Ok(problems);
        }
        let spec = &self.shared.spec;
        let mut ids = IdCheck::new(spec, Ids::Once);
        self.scan(Some(&[spec.id_column, spec.ts_column]), |b| ids.add(b))?;
        problems.extend(ids.problems());
        Ok(problems)
    }
}

impl Shared {
    fn checked_contains(&self, id: u64) -> bool {
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }

    fn checked_insert(&self, id: u64) {
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }
}

/// What a log promises of its row ids, for [`inspect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// every id once
    Once,
    /// every id once within this many ms of event time (it may come back after that)
    OnceWithin(i64),
    /// rows may repeat an id (a retry may rewrite a row keyed by its parent's id)
    Repeatable,
}

/// Ids seen across a log, and the rows that share one within the deduplication window (a
/// violation) or outside it (the contract allows an id to come back after the window).
struct IdCheck {
    id_column: String,
    ts_column: String,
    rule: Ids,
    seen: std::collections::HashMap<String, i64>,
    /// later times of ids that came back after the window (rare: kept apart)
    again: std::collections::HashMap<String, Vec<i64>>,
    duplicates: u64,
    reused: u64,
}

impl IdCheck {
    fn new(spec: &TableSpec, rule: Ids) -> IdCheck {
        IdCheck {
            id_column: spec.id_column.to_owned(),
            ts_column: spec.ts_column.to_owned(),
            rule,
            seen: std::collections::HashMap::new(),
            again: std::collections::HashMap::new(),
            duplicates: 0,
            reused: 0,
        }
    }

    /// `batch`: any batch holding the id and time columns (by name).
    fn add(&mut self, batch: &RecordBatch) -> Result<(), StorageError> {
        let bad = |column: &str| StorageError::UnknownColumn {
            table: String::new(),
            column: column.to_owned(),
        };
        let ids = batch
            .column_by_name(&self.id_column)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| bad(&self.id_column))?;
        let ts = batch
            .column_by_name(&self.ts_column)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| bad(&self.ts_column))?;
        for (id, t) in ids.iter().zip(ts.values()) {
            let Some(id) = id else { continue };
            let Some(&first) = self.seen.get(id) else {
                self.seen.insert(id.to_owned(), *t);
                continue;
            };
            let w = match self.rule {
                Ids::Once => {
                    self.duplicates += 1;
                    continue;
                }
                Ids::Repeatable => continue,
                Ids::OnceWithin(w) => w,
            };
            // a duplicate when within the window of any earlier occurrence
            let later = self.again.get(id).map_or(&[][..], Vec::as_slice);
            if std::iter::once(&first)
                .chain(later)
                .any(|prev| (*t - *prev).abs() <= w)
            {
                self.duplicates += 1;
            } else {
                self.reused += 1;
                self.again.entry(id.to_owned()).or_default().push(*t);
            }
        }
        Ok(())
    }

    fn problems(&self) -> Option<String> {
        (self.duplicates > 0).then(|| {
            format!(
                "{} rows share an {} with another row{}",
                self.duplicates,
                self.id_column,
                if matches!(self.rule, Ids::OnceWithin(_)) {
                    " within the deduplication window"
                } else {
                    ""
                }
            )
        })
    }
}

/// What [`inspect`] found in a log, without changing anything.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inspection {
    /// damage, and broken promises (a duplicate id within the window): `verify` fails on these
    pub problems: Vec<String>,
    /// worth knowing, not wrong (a torn tail that the next open cuts; ids reused after the window)
    pub notes: Vec<String>,
    pub segments: usize,
    pub sealed_rows: u64,
    pub unsealed_rows: u64,
}

/// Checks the log under `dir` read-only: every segment's size, checksum, rows and day against the
/// manifest; every WAL file's records (damage is a problem, a torn tail of the newest file only
/// a note); and the row ids against what the log promises of them.
pub fn inspect(dir: &Path, spec: &TableSpec, ids_rule: Ids) -> Result<Inspection, StorageError> {
    let mut out = Inspection::default();
    if !dir.join(MANIFEST).exists() && !dir.join("wal").exists() {
        return Ok(out);
    }
    let manifest = read_manifest(dir, spec)?;
    let mut ids = IdCheck::new(spec, ids_rule);
    let mut readable = Vec::new();
    for seg in &manifest.segments {
        out.segments += 1;
        out.sealed_rows += seg.rows;
        match check_segment(dir, seg) {
            Ok(()) => readable.push(seg),
            Err(p) => out.problems.push(p),
        }
    }
    for seg in readable {
        let path = dir.join(&seg.path);
        let file = File::open(&path).map_err(StorageError::io(&path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| StorageError::parquet(&path, &e))?;
        let indices = [spec.id_column, spec.ts_column]
            .map(|c| spec.schema.index_of(c).map_err(StorageError::arrow))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
        for b in builder
            .with_projection(mask)
            .build()
            .map_err(|e| StorageError::parquet(&path, &e))?
        {
            let b = b.map_err(|e| StorageError::parquet(&path, &e))?;
            let b = crate::lake::from_lake(&b, &spec.schema, Some(&indices))?;
            // the projection reads in file order; the id checker takes (id, ts)
            let order: Vec<usize> = [spec.id_column, spec.ts_column]
                .iter()
                .map(|c| b.schema().index_of(c).map_err(StorageError::arrow))
                .collect::<Result<_, _>>()?;
            ids.add(&b.project(&order).map_err(StorageError::arrow)?)?;
        }
    }
    for f in unsealed_wal(dir, &manifest)? {
        let name = f
            .path
            .strip_prefix(dir)
            .unwrap_or(&f.path)
            .display()
            .to_string();
        for d in &f.contents.damage {
            out.problems.push(format!(
                "{name}: {} bytes at offset {} are damaged (acknowledged records lost; \
                 `repair` keeps the {} intact records)",
                d.bytes,
                d.offset,
                f.contents.len()
            ));
        }
        if f.contents.torn_bytes > 0 {
            let what = format!(
                "{name}: {} bytes at offset {} are an incomplete record",
                f.contents.torn_bytes, f.contents.valid_len
            );
            if f.last {
                out.notes.push(format!(
                    "{what} (a write never acknowledged; cut at the next open)"
                ));
            } else {
                out.problems
                    .push(format!("{what}, and newer WAL files follow it"));
            }
        }
        for record in f.contents.records() {
            for b in decode_ipc(record, &f.path)? {
                out.unsealed_rows += b.num_rows() as u64;
                ids.add(&b)?;
            }
        }
    }
    out.problems.extend(ids.problems());
    if ids.reused > 0 {
        out.notes.push(format!(
            "{} rows reuse an {} from outside the deduplication window (allowed)",
            ids.reused, spec.id_column
        ));
    }
    Ok(out)
}

/// The damaged byte ranges of a segment's file against its recorded checksums (`None`: intact, or
/// written without checksums).
fn segment_damage(data: &[u8], seg: &SegmentInfo) -> Option<Vec<Damage>> {
    let crc = seg.crc32?;
    if data.len() as u64 == seg.bytes && crc32fast::hash(data) == crc {
        return None;
    }
    let mut damage: Vec<Damage> = seg
        .row_groups
        .iter()
        .filter(|rg| {
            let range = usize::try_from(rg.offset).ok().and_then(|start| {
                data.get(start..start.checked_add(usize::try_from(rg.bytes).ok()?)?)
            });
            range.is_none_or(|bytes| crc32fast::hash(bytes) != rg.crc32)
        })
        .map(|rg| Damage {
            offset: rg.offset,
            bytes: rg.bytes,
        })
        .collect();
    if damage.is_empty() {
        // the row groups are intact: the damage is in the footer (or the file's length)
        let footer = seg
            .row_groups
            .iter()
            .map(|rg| rg.offset + rg.bytes)
            .max()
            .unwrap_or(0);
        damage.push(Damage {
            offset: footer,
            bytes: (data.len() as u64).max(seg.bytes).saturating_sub(footer),
        });
    }
    Some(damage)
}

fn segment_data_loss(path: &Path, seg: &SegmentInfo, damage: &[Damage]) -> StorageError {
    let first = damage.first().copied().unwrap_or(Damage {
        offset: 0,
        bytes: seg.bytes,
    });
    StorageError::DataLoss {
        path: path.to_path_buf(),
        offset: first.offset,
        bytes: first.bytes,
        detail: format!(
            "checksum mismatch in {} range(s) of a segment of {} rows",
            damage.len(),
            seg.rows
        ),
    }
}

/// One segment against the manifest: size, checksum, rows and day.
fn check_segment(dir: &Path, seg: &SegmentInfo) -> Result<(), String> {
    let path = dir.join(&seg.path);
    let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", seg.path))?;
    if data.len() as u64 != seg.bytes {
        return Err(format!(
            "{}: {} bytes, manifest says {}",
            seg.path,
            data.len(),
            seg.bytes
        ));
    }
    if let Some(damage) = segment_damage(&data, seg) {
        let ranges: Vec<String> = damage
            .iter()
            .map(|d| format!("bytes {}..{}", d.offset, d.offset + d.bytes))
            .collect();
        return Err(format!(
            "{}: checksum mismatch ({}): the file was damaged after it was written",
            seg.path,
            ranges.join(", ")
        ));
    }
    let file = File::open(&path).map_err(|e| format!("{}: {e}", seg.path))?;
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format!("{}: {e}", seg.path))?;
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
}

/// Rewrites a damaged segment with its intact row groups (when its footer still reads) and moves
/// the original into `quarantine`. Returns the replacement (if any rows were kept) and the report.
fn repair_segment(
    fs: &dyn Fs,
    dir: &Path,
    spec: &TableSpec,
    seg: &SegmentInfo,
    new_id: u64,
    quarantine: &Path,
) -> Result<(Option<SegmentInfo>, SegmentRepairReport), StorageError> {
    let path = dir.join(&seg.path);
    let data = std::fs::read(&path).unwrap_or_default();
    let damage = segment_damage(&data, seg).unwrap_or_else(|| {
        vec![Damage {
            offset: 0,
            bytes: seg.bytes,
        }]
    });
    let damaged: HashSet<u64> = damage.iter().map(|d| d.offset).collect();
    let mut kept = Vec::new();
    let mut lost_ids = Vec::new();
    let reader = File::open(&path)
        .ok()
        .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).ok());
    if let Some(builder) = reader {
        let groups = builder.metadata().row_groups().len();
        let intact: Vec<usize> = (0..groups)
            .filter(|&i| {
                seg.row_groups
                    .get(i)
                    .is_some_and(|rg| !damaged.contains(&rg.offset))
            })
            .collect();
        let lost: Vec<usize> = (0..groups).filter(|i| !intact.contains(i)).collect();
        if let Ok(r) = builder.with_row_groups(intact).build() {
            for b in r {
                match b.map_err(|e| e.to_string()).and_then(|b| {
                    crate::lake::from_lake(&b, &spec.schema, None).map_err(|e| e.to_string())
                }) {
                    Ok(b) => kept.push(b),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "an intact row group did not decode: {e}");
                        kept.clear();
                        break;
                    }
                }
            }
        }
        // what can still be read of the lost rows' ids (values may be wrong)
        if let Some(idx) = spec.schema.index_of(spec.id_column).ok()
            && let Ok(f) = File::open(&path)
            && let Ok(b) = ParquetRecordBatchReaderBuilder::try_new(f)
        {
            let mask = ProjectionMask::roots(b.parquet_schema(), [idx]);
            if let Ok(r) = b.with_projection(mask).with_row_groups(lost).build() {
                // a damaged page may fail on every read: stop at the first error (skipping
                // errors would ask the reader again forever)
                for batch in r {
                    let Ok(batch) = batch else { break };
                    if let Some(ids) = batch.column(0).as_any().downcast_ref::<StringArray>() {
                        lost_ids.extend(ids.iter().flatten().take(20).map(str::to_owned));
                    }
                    if lost_ids.len() >= 20 {
                        break;
                    }
                }
                lost_ids.truncate(20);
            }
        }
    }
    let rows_kept: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
    let replacement = if rows_kept > 0 {
        let rel = format!("segments/day={}/{new_id:012}.parquet", seg.day);
        let written = write_segment(fs, dir, spec, 1, &rel, &kept)?;
        let (min, max) = ts_range(spec, &kept)?;
        Some(written.info(new_id, seg.day.clone(), rel, rows_kept, min, max))
    } else {
        None
    };
    std::fs::create_dir_all(quarantine).map_err(StorageError::io(quarantine))?;
    let quarantined = quarantine.join(seg.path.replace('/', "_"));
    if path.exists() {
        std::fs::hard_link(&path, &quarantined)
            .or_else(|_| std::fs::copy(&path, &quarantined).map(|_| ()))
            .map_err(StorageError::io(&quarantined))?;
        fs.sync_dir(quarantine)
            .map_err(StorageError::io(quarantine))?;
    }
    let report = SegmentRepairReport {
        segment: seg.path.clone(),
        quarantined,
        rows_kept,
        rows_lost: seg.rows.saturating_sub(rows_kept),
        damage,
        lost_ids,
    };
    tracing::error!(segment = %seg.path, rows_kept, rows_lost = report.rows_lost,
        "repaired a damaged segment: intact row groups kept, the original moved to quarantine");
    Ok((replacement, report))
}

/// The earliest and latest time in `batches`.
fn ts_range(spec: &TableSpec, batches: &[RecordBatch]) -> Result<(i64, i64), StorageError> {
    let idx = spec
        .schema
        .index_of(spec.ts_column)
        .map_err(StorageError::arrow)?;
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for b in batches {
        if let Some(ts) = b.column(idx).as_any().downcast_ref::<Int64Array>() {
            for t in ts.values() {
                min = min.min(*t);
                max = max.max(*t);
            }
        }
    }
    Ok((min, max))
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

/// How often the writer looks whether a running seal finished, when the next one is due.
const SEAL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// How often a log whose writes fail checks whether they work again.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Writer {
    fn run(mut self, rx: &Receiver<Command>) {
        loop {
            let unhealthy = self.unhealthy();
            let sealing = self.sealing.as_ref().is_some_and(|h| !h.is_finished());
            // while a seal runs, look again now and then rather than spin on a due time
            let due = self
                .seal_due_in()
                .map(|d| if sealing { d.max(SEAL_POLL) } else { d });
            let wait = match (unhealthy, due) {
                (true, due) => Some(due.map_or(PROBE_INTERVAL, |d| d.min(PROBE_INTERVAL))),
                (false, due) => due,
            };
            let first = match wait {
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(cmd) => cmd,
                    Err(RecvTimeoutError::Timeout) => {
                        if unhealthy {
                            self.probe();
                        } else {
                            self.seal_if_due();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => break,
                },
            };
            // group commit: everything already waiting shares one fsync
            let mut batches = Vec::new();
            let mut acks = Vec::new();
            let mut seals = Vec::new();
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(batch, ack, logged) => {
                        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
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
                // refused by admission (sealing behind) is not a failed write
                let admitted = self.admit();
                let write_tried = admitted.is_ok();
                let result = admitted.and_then(|()| self.write(&batches));
                if write_tried {
                    // visible to readers before anyone is told it is durable
                    let mut state = self.shared.lock();
                    match &result {
                        Ok(()) => {
                            state.write_error = None;
                            for (b, _) in batches {
                                state.memtable_rows += b.num_rows();
                                state.memtable.push(b);
                            }
                            if state.memtable_rows > 0 && state.memtable_since.is_none() {
                                state.memtable_since = Some(std::time::Instant::now());
                            }
                        }
                        Err(e) => {
                            if state.write_error.is_none() {
                                tracing::error!(table = self.shared.spec.name, error = %e,
                                    "a write to the event log failed; the batch was not acknowledged");
                            }
                            state.write_error = Some(e.to_string());
                        }
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
                        Some(h) => self.record_seal(h.join().unwrap_or(Err(StorageError::Closed))),
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
                    self.seal_in_background();
                }
            } else {
                self.seal_if_due();
            }
        }
        let _ = self.finish_sealing();
    }

    /// How long until the rows held in memory have waited `seal_interval` (zero when they
    /// have); `None` without an interval or rows.
    fn seal_due_in(&self) -> Option<std::time::Duration> {
        let interval = self.shared.options.seal_interval?;
        let since = self.shared.lock().memtable_since?;
        Some(interval.saturating_sub(since.elapsed()))
    }

    /// Seals in the background when the oldest row held has waited `seal_interval` and no seal
    /// is running (a running one takes it, or the next check does).
    fn seal_if_due(&mut self) {
        let due = self.seal_due_in().is_some_and(|d| d.is_zero());
        let idle = self.sealing.as_ref().is_none_or(|h| h.is_finished());
        if due && idle && !self.unhealthy() {
            self.seal_in_background();
        }
    }

    fn unhealthy(&self) -> bool {
        let state = self.shared.lock();
        state.write_error.is_some() || state.seal_error.is_some() || self.wal.broken().is_some()
    }

    /// Refuses appends while sealing fails and the rows held in memory are already twice a seal:
    /// memory stays bounded, and the client is told to retry.
    fn admit(&self) -> Result<(), StorageError> {
        let state = self.shared.lock();
        match &state.seal_error {
            Some(e) if state.memtable_rows >= 2 * self.shared.options.seal_rows => {
                Err(StorageError::WriteFailed {
                    message: format!(
                        "sealing fails ({e}) and {} rows wait in memory; retry once it works",
                        state.memtable_rows
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// While writes fail: cut the WAL back if needed, check that the disk takes a write again,
    /// and retry a failed seal, so writes resume by themselves once the fault is gone.
    fn probe(&mut self) {
        if self.wal.broken().is_some() && self.wal.heal().is_err() {
            return;
        }
        if self.shared.lock().write_error.is_some() {
            match probe_write(&*self.shared.options.fs, &self.shared.dir.join("wal")) {
                Ok(()) => {
                    tracing::info!(
                        table = self.shared.spec.name,
                        "writes to the event log work again"
                    );
                    self.shared.lock().write_error = None;
                }
                Err(e) => self.shared.lock().write_error = Some(e.to_string()),
            }
        }
        let seal_failed = self.shared.lock().seal_error.is_some();
        if seal_failed && self.sealing.as_ref().is_none_or(|h| h.is_finished()) {
            self.seal_in_background();
        }
    }

    fn seal_in_background(&mut self) {
        let _ = self.finish_sealing();
        match self.start_seal(false) {
            Ok(job) => self.sealing = job,
            Err(e) => {
                tracing::error!(error = %e, "cannot start sealing; rows stay in the WAL");
                self.shared.lock().seal_error = Some(e.to_string());
            }
        }
    }

    fn write(&mut self, batches: &[(RecordBatch, bool)]) -> Result<(), StorageError> {
        let mut any = false;
        for (b, logged) in batches {
            if *logged {
                if let Err(e) = self.wal.append_with(|buf| encode_ipc_into(b, buf)) {
                    self.wal.discard_pending();
                    return Err(e);
                }
                any = true;
            }
        }
        if any { self.wal.sync() } else { Ok(()) }
    }

    /// Removes the segments whose latest row is older than `cutoff_ms`: the manifest first (so a
    /// crash leaves only unreferenced files, which the next open deletes), then the files.
    /// Returns (segments, rows) dropped.
    fn drop_before(&mut self, cutoff_ms: i64) -> Result<(u64, u64), StorageError> {
        let fs = &*self.shared.options.fs;
        let mut manifest = self.shared.lock().manifest.clone();
        let (old, keep): (Vec<SegmentInfo>, Vec<SegmentInfo>) = manifest
            .segments
            .into_iter()
            .partition(|s| s.max_ts_ms < cutoff_ms);
        if old.is_empty() {
            return Ok((0, 0));
        }
        manifest.segments = keep;
        write_json_atomic(fs, &self.shared.dir.join(MANIFEST), &manifest)?;
        self.shared.lock().manifest = manifest;
        for seg in &old {
            let path = self.shared.dir.join(&seg.path);
            if let Err(e) = fs.remove_file(&path) {
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
        let shared = &*self.shared;
        let fs = &*shared.options.fs;
        let mut manifest = shared.lock().manifest.clone();
        let mut stats = RewriteStats::default();
        let mut replaced = Vec::new();
        let mut segments = Vec::with_capacity(manifest.segments.len());
        for seg in std::mem::take(&mut manifest.segments) {
            if seg.max_ts_ms < from_ms || seg.min_ts_ms > to_ms {
                segments.push(seg);
                continue;
            }
            let path = shared.dir.join(&seg.path);
            if seg.crc32.is_some() {
                let data = std::fs::read(&path).map_err(StorageError::io(&path))?;
                if let Some(damage) = segment_damage(&data, &seg) {
                    return Err(segment_data_loss(&path, &seg, &damage));
                }
            }
            let mut out = Vec::new();
            for batch in segment_reader(shared, &seg)? {
                let batch = batch?;
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
                let written = write_segment(
                    fs,
                    &shared.dir,
                    &shared.spec,
                    shared.options.zstd_level,
                    &rel,
                    &out,
                )?;
                let (min, max) = ts_range(&shared.spec, &out)?;
                segments.push(written.info(id, seg.day.clone(), rel, rows as u64, min, max));
            }
            replaced.push(seg);
        }
        if replaced.is_empty() {
            return Ok(stats);
        }
        manifest.segments = segments;
        write_json_atomic(fs, &shared.dir.join(MANIFEST), &manifest)?;
        shared.lock().manifest = manifest;
        for seg in &replaced {
            let path = shared.dir.join(&seg.path);
            if let Err(e) = fs.remove_file(&path) {
                tracing::warn!(path = %path.display(), "rewritten segment not removed: {e}");
            }
        }
        Ok(stats)
    }

    /// Records how a seal ended (its error is the log's health until a seal succeeds).
    fn record_seal(&self, result: Result<(), StorageError>) -> Result<(), StorageError> {
        let mut state = self.shared.lock();
        match &result {
            Ok(()) => {
                if state.seal_error.take().is_some() {
                    tracing::info!(table = self.shared.spec.name, "sealing works again");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sealing the event log failed; rows stay in the WAL");
                state.seal_error = Some(e.to_string());
            }
        }
        result
    }

    /// Waits for the background seal, if one is running.
    fn finish_sealing(&mut self) -> Result<(), StorageError> {
        match self.sealing.take() {
            None => Ok(()),
            Some(h) => self.record_seal(h.join().unwrap_or(Err(StorageError::Closed))),
        }
    }

    /// Snapshots the memtable, rotates the WAL (new appends go to a new file), and seals the
    /// snapshot on another thread, so appends go on meanwhile.
    fn start_seal(
        &mut self,
        parallel: bool,
    ) -> Result<Option<JoinHandle<Result<(), StorageError>>>, StorageError> {
        if let Some(why) = self.wal.broken() {
            return Err(StorageError::WriteFailed {
                message: format!("the WAL is not cut back after a failed write yet: {why}"),
            });
        }
        let snapshot = self.shared.lock().memtable.clone();
        if snapshot.is_empty() {
            return Ok(None);
        }
        let next = self.seq + 1;
        let wal = WalWriter::create(
            &self.shared.options.fs,
            &self.shared.dir.join("wal").join(wal_name(next)),
        )?;
        let sealed_through = self.seq;
        self.seq = next;
        self.wal = wal;
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

/// Writes, fsyncs and removes a small file next to the WAL: the disk takes writes again.
fn probe_write(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    let path = dir.join("probe.tmp");
    let mut f = fs.create(&path).map_err(StorageError::io(&path))?;
    let written = f
        .write_all_at(&[0u8; 64 * 1024], 0)
        .and_then(|()| f.sync_data());
    drop(f);
    let _ = fs.remove_file(&path);
    written.map_err(StorageError::io(&path))
}

/// Writes `snapshot` (the first batches of the memtable) as segments, records them, drops them
/// from the memtable, and deletes the WAL files up to `sealed_through`.
fn seal(
    shared: &Shared,
    snapshot: &[RecordBatch],
    sealed_through: u64,
    parallel: bool,
) -> Result<(), StorageError> {
    let fs = &*shared.options.fs;
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
        let written = write_segment(
            fs,
            &shared.dir,
            spec,
            shared.options.zstd_level,
            &rel,
            slices,
        )?;
        let rows = slices.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
        Ok(written.info(id, date, rel, rows, *min, *max))
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
    write_json_atomic(fs, &shared.dir.join(MANIFEST), &manifest)?;
    {
        let mut state = shared.lock();
        state.manifest = manifest;
        // appends since the snapshot are behind it in the memtable: keep those
        state.memtable.drain(..snapshot.len());
        state.memtable_rows -= snapshot.iter().map(RecordBatch::num_rows).sum::<usize>();
        state.memtable_since = (state.memtable_rows > 0).then(std::time::Instant::now);
    }
    let wal_dir = shared.dir.join("wal");
    for (seq, path) in list_wal(&wal_dir)? {
        if seq <= sealed_through {
            fs.remove_file(&path).map_err(StorageError::io(&path))?;
        }
    }
    fs.sync_dir(&wal_dir).map_err(StorageError::io(&wal_dir))
}

/// All columns of one segment, in batches of the table's schema.
fn segment_reader(
    shared: &Shared,
    seg: &SegmentInfo,
) -> Result<impl Iterator<Item = Result<RecordBatch, StorageError>>, StorageError> {
    let path = shared.dir.join(&seg.path);
    let file = File::open(&path).map_err(StorageError::io(&path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| StorageError::parquet(&path, &e))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| StorageError::parquet(&path, &e))?;
    let schema = Arc::clone(&shared.spec.schema);
    Ok(reader.map(move |b| {
        b.map_err(|e| StorageError::parquet(&path, &e))
            .and_then(|b| crate::lake::from_lake(&b, &schema, None))
    }))
}

/// A segment file as written: its size and checksums.
struct WrittenSegment {
    bytes: u64,
    crc32: u32,
    row_groups: Vec<RowGroupSum>,
}

impl WrittenSegment {
    fn info(
        self,
        id: u64,
        day: String,
        path: String,
        rows: u64,
        min: i64,
        max: i64,
    ) -> SegmentInfo {
        SegmentInfo {
            id,
            day,
            path,
            rows,
            bytes: self.bytes,
            min_ts_ms: min,
            max_ts_ms: max,
            crc32: Some(self.crc32),
            row_groups: self.row_groups,
        }
    }
}

/// Writes one immutable segment: to a temporary name, fsynced, then renamed into place, with the
/// CRC-32 of the file and of each row group (read back from the page cache, a small cost beside
/// encoding).
fn write_segment(
    fs: &dyn Fs,
    root: &Path,
    spec: &TableSpec,
    zstd_level: i32,
    rel: &str,
    batches: &[RecordBatch],
) -> Result<WrittenSegment, StorageError> {
    let path = root.join(rel);
    let dir = path.parent().unwrap_or(root).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(StorageError::io(&dir))?;
    let tmp = path.with_extension("parquet.tmp");
    let level = ZstdLevel::try_new(zstd_level).map_err(|e| StorageError::parquet(&path, &e))?;
    let mut props = WriterProperties::builder();
    // near-unique columns never fit a dictionary: trying costs time, then falls back anyway
    let lake_name = |c: &str| -> ColumnPath {
        ColumnPath::from(
            spec.lake_names
                .iter()
                .find(|(from, _)| *from == c)
                .map_or(c, |(_, to)| *to),
        )
    };
    for column in spec.high_cardinality {
        props = props.set_column_dictionary_enabled(lake_name(column), false);
    }
    let props = props
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(512 * 1024))
        // unique ids never fit a dictionary, and their min/max say nothing: skip both
        .set_column_dictionary_enabled(lake_name(spec.id_column), false)
        .set_column_statistics_enabled(lake_name(spec.id_column), EnabledStatistics::None)
        // segments are pruned by time: keep chunk statistics for the time column only (min/max
        // of every string column cost a comparison per value and prune nothing here)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(lake_name(spec.ts_column), EnabledStatistics::Chunk)
        .build();
    let written = (|| {
        let file = fs.create(&tmp).map_err(StorageError::io(&tmp))?;
        let lake = crate::lake::lake_schema(spec);
        let mut w = ArrowWriter::try_new(file, Arc::clone(&lake), Some(props))
            .map_err(|e| StorageError::parquet(&path, &e))?;
        for batch in batches {
            w.write(&crate::lake::to_lake(batch, &lake)?)
                .map_err(|e| StorageError::parquet(&path, &e))?;
        }
        w.flush().map_err(|e| StorageError::parquet(&path, &e))?;
        let ranges: Vec<(u64, u64, u64)> = w
            .flushed_row_groups()
            .iter()
            .map(|rg| {
                let (start, end) = rg.columns().iter().fold((u64::MAX, 0), |(s, e), c| {
                    let (o, l) = c.byte_range();
                    (s.min(o), e.max(o + l))
                });
                (start, end.saturating_sub(start), rg.num_rows() as u64)
            })
            .collect();
        let mut file = w
            .into_inner()
            .map_err(|e| StorageError::parquet(&path, &e))?;
        file.sync_all().map_err(StorageError::io(&tmp))?;
        drop(file);
        let data = std::fs::read(&tmp).map_err(StorageError::io(&tmp))?;
        let row_groups = ranges
            .into_iter()
            .map(|(offset, bytes, rows)| {
                let range = usize::try_from(offset)
                    .ok()
                    .and_then(|s| data.get(s..s.checked_add(usize::try_from(bytes).ok()?)?));
                let crc32 = range
                    .map(crc32fast::hash)
                    .ok_or_else(|| StorageError::Corrupt {
                        path: tmp.clone(),
                        message: format!("row group at {offset}+{bytes} is past the end"),
                    })?;
                Ok(RowGroupSum {
                    offset,
                    bytes,
                    rows,
                    crc32,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(WrittenSegment {
            bytes: data.len() as u64,
            crc32: crc32fast::hash(&data),
            row_groups,
        })
    })();
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            // a partial file on a full disk takes space the next attempt needs
            let _ = fs.remove_file(&tmp);
            return Err(e);
        }
    };
    fs.rename(&tmp, &path).map_err(StorageError::io(&path))?;
    fs.sync_dir(&dir).map_err(StorageError::io(&dir))?;
    Ok(written)
}

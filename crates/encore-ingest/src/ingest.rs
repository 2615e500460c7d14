//! The ingest path: candidate rows are checked against their contract, deduplicated by event id,
//! counted against the catalog, and appended to the event log; every rejected row goes to the
//! quarantine with its reasons. Files, request bodies and importers all come through here.

use crate::batch::{BatchRows, finish};
use crate::catalog::CatalogStore;
use crate::contract::uuid_bits;
use crate::dedup::Dedup;
use crate::error::IngestError;
use crate::quarantine::Quarantine;
use crate::source::{Chunk, FileSource, Locations, Reject, parse_json_texts};
use crate::table::Table;
use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use encore_core::time::MS_PER_DAY;
use encore_storage::{EventLog, LogOptions, StorageError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

/// Settings of the ingest path.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// duplicates of an event id within this span of event time are dropped
    pub dedup_window_ms: i64,
    pub log: LogOptions,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            dedup_window_ms: 7 * MS_PER_DAY,
            log: LogOptions::default(),
        }
    }
}

/// Running totals over every ingest into this data directory.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub unknown_items: u64,
    pub rejects_by_rule: BTreeMap<String, u64>,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.unknown_items += other.unknown_items;
        for (rule, n) in &other.rejects_by_rule {
            *self.rejects_by_rule.entry(rule.clone()).or_default() += n;
        }
    }

    fn count_rejects(&mut self, rejects: &[Reject]) {
        self.rejected += rejects.len() as u64;
        for r in rejects {
            for v in &r.violations {
                *self.rejects_by_rule.entry(v.rule.clone()).or_default() += 1;
            }
        }
    }
}

/// The result of ingesting files.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// accepted rows whose item is not in the catalog (kept, only counted)
    pub unknown_items: u64,
    pub rejects_by_rule: BTreeMap<String, u64>,
    /// the quarantine file holding this run's rejected rows
    pub quarantined_to: Option<PathBuf>,
    pub seconds: f64,
    /// the first rejected rows' messages (all of them are in the quarantine)
    pub first_rejects: Vec<String>,
    /// true when `strict` found a bad row and nothing was stored
    pub aborted: bool,
}

impl IngestSummary {
    fn new(
        total: Counters,
        quarantined_to: Option<PathBuf>,
        started: Instant,
        first_rejects: Vec<String>,
        aborted: bool,
    ) -> IngestSummary {
        IngestSummary {
            accepted: total.accepted,
            rejected: total.rejected,
            duplicates: total.duplicates,
            unknown_items: total.unknown_items,
            rejects_by_rule: total.rejects_by_rule,
            quarantined_to,
            seconds: started.elapsed().as_secs_f64(),
            first_rejects,
            aborted,
        }
    }
}

/// The result of one request body.
#[derive(Debug, Clone, Serialize)]
pub struct BatchOutcome {
    pub table: Table,
    pub accepted: u64,
    pub duplicates: u64,
    pub unknown_items: u64,
    pub rejects: Vec<Reject>,
    /// the rows stored, in the table's canonical schema: only those that passed the contract and
    /// were not duplicates (what downstream consumers may act on)
    #[serde(skip)]
    pub rows: Option<RecordBatch>,
    /// the rows that passed the contract but were stored before (duplicates), in the same
    /// schema: an ingest node sends them on again, since the attempt that stored them may have
    /// ended before the shared bus had them (its client, never answered, retried)
    #[serde(skip)]
    pub resent: Option<RecordBatch>,
}

/// Rows that passed the contract and deduplication, ready to append.
struct Admitted {
    table: Table,
    batch: Option<RecordBatch>,
    /// the duplicates (rows that passed the contract and were stored before)
    resent: Option<RecordBatch>,
    ids: Vec<u128>,
    counters: Counters,
    rejects: Vec<Reject>,
}

pub struct Ingestor {
    logs: Vec<EventLog>,
    dedup: Vec<Mutex<Dedup>>,
    catalog: RwLock<CatalogStore>,
    quarantine: Quarantine,
    counters: Mutex<Counters>,
    counters_path: PathBuf,
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
    runs: AtomicU64,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("quarantine", &self.quarantine)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wall-clock now in epoch ms.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Ingestor {
    /// Opens the event logs, catalog and quarantine under the data directory `root`, and
    /// rebuilds the deduplication index from the log.
    pub fn open(root: &Path, options: IngestOptions) -> Result<Ingestor, IngestError> {
        Ingestor::open_with_clock(root, options, Box::new(system_now_ms))
    }

    /// As [`Ingestor::open`] with an injected clock (tests of the future-timestamp rule).
    pub fn open_with_clock(
        root: &Path,
        options: IngestOptions,
        clock: Box<dyn Fn() -> i64 + Send + Sync>,
    ) -> Result<Ingestor, IngestError> {
        let events = root.join("events");
        let mut logs = Vec::new();
        let mut dedup = Vec::new();
        for table in Table::ALL {
            let log = EventLog::open(
                &events.join(table.name()),
                table.spec(),
                options.log.clone(),
            )?;
            let r = log.recovery();
            if r.rows_replayed > 0 || r.torn_bytes_truncated > 0 {
                tracing::info!(
                    table = table.name(),
                    rows = r.rows_replayed,
                    torn_bytes = r.torn_bytes_truncated,
                    "recovered the event log from its WAL"
                );
            }
            let mut index = Dedup::new(options.dedup_window_ms);
            let spec = table.spec();
            let columns = [spec.id_column, spec.ts_column];
            log.scan_range(i64::MAX, i64::MIN, true, Some(&columns), |b| {
                let ids = b.column(0).as_any().downcast_ref::<StringArray>();
                let ts = b.column(1).as_any().downcast_ref::<Int64Array>();
                if let (Some(ids), Some(ts)) = (ids, ts) {
                    for i in 0..b.num_rows() {
                        if let Some(bits) = uuid_bits(ids.value(i)) {
                            index.remember(bits, ts.value(i));
                        }
                    }
                }
                Ok(())
            })?;
            dedup.push(Mutex::new(index));
            logs.push(log);
        }
        let counters_path = events.join("ingest-counters.json");
        let mut counters: Counters = match std::fs::read(&counters_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Counters::default(),
        };
        // the counters are saved after the rows are acknowledged: a crash in between leaves them
        // behind the log, which is the truth (retention and erasure only ever lower it)
        let stored: u64 = logs
            .iter()
            .map(|l: &EventLog| l.stats().sealed_rows + l.stats().unsealed_rows)
            .sum();
        if counters.accepted < stored {
            tracing::info!(
                counted = counters.accepted,
                stored,
                "the accepted counter was behind the event log (a crash after an acknowledgement); caught up"
            );
            counters.accepted = stored;
        }
        Ok(Ingestor {
            logs,
            dedup,
            catalog: RwLock::new(CatalogStore::open(&root.join("catalog"))?),
            quarantine: Quarantine::new(root.join("quarantine")),
            counters: Mutex::new(counters),
            counters_path,
            clock,
            runs: AtomicU64::new(0),
        })
    }

    /// Why event writes fail right now, if they do (see [`EventLog::health`]).
    pub fn health(&self) -> Option<String> {
        self.logs.iter().find_map(EventLog::health)
    }

    pub fn log(&self, table: Table) -> &EventLog {
        &self.logs[table.index()]
    }

    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    pub fn catalog(&self) -> std::sync::RwLockReadGuard<'_, CatalogStore> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn catalog_mut(&self) -> std::sync::RwLockWriteGuard<'_, CatalogStore> {
        self.catalog.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// A fresh id for an ingest run (names its quarantine file).
    pub fn run_id(&self) -> String {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        format!("{}-{}-{n}", self.now(), std::process::id())
    }

    /// Adds `delta` to the running counters and saves them. The file is written under the lock:
    /// concurrent requests must not race on the temporary file.
    fn record(&self, delta: &Counters) -> Result<(), IngestError> {
        let mut c = lock(&self.counters);
        c.add(delta);
        let tmp = self.counters_path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&*c).map_err(|e| IngestError::Internal {
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, bytes).map_err(IngestError::io(&tmp))?;
        std::fs::rename(&tmp, &self.counters_path).map_err(IngestError::io(&self.counters_path))
    }

    /// Checks a chunk; with `dedup`, also claims its event ids.
    fn admit(&self, chunk: &Chunk, file: &str, dedup: bool) -> Result<Admitted, IngestError> {
        let table = chunk.table;
        let contract = table.contract();
        let mut rejects = chunk.rejects.clone();
        let mut counters = Counters::default();
        let Some(batch) = &chunk.candidates else {
            counters.count_rejects(&rejects);
            return Ok(Admitted {
                table,
                batch: None,
                resent: None,
                ids: Vec::new(),
                counters,
                rejects,
            });
        };
        let n = batch.num_rows();
        let now = self.now();
        let rows = BatchRows::new(contract, batch);
        let suspect = rows.screen(contract, n);
        let violations: Vec<(usize, Vec<crate::contract::Violation>)> = (0..n)
            .into_par_iter()
            .with_min_len(4_096)
            .filter_map(|i| {
                let row = rows.row(i);
                let v = if suspect[i] {
                    contract.check(&row, now)
                } else {
                    contract.check_cross(&row, now)
                };
                (!v.is_empty()).then_some((i, v))
            })
            .collect();
        let mut valid = vec![true; n];
        for (i, v) in violations {
            valid[i] = false;
            rejects.push(Reject {
                location: chunk.locate(file, i),
                violations: v,
                raw: None,
                position: chunk.position(i),
            });
        }
        rejects.sort_by_key(|r| r.position);
        counters.count_rejects(&rejects);

        let mut ids = Vec::new();
        let mut duplicate: Vec<bool> = Vec::new();
        if dedup {
            let id_col = column::<StringArray>(batch, contract.id_field, contract)?;
            let ts_col = column::<Int64Array>(batch, contract.ts_field, contract)?;
            let mut seen = lock(&self.dedup[table.index()]);
            let times = (0..n).filter(|&i| valid[i]).map(|i| ts_col.value(i));
            let (min, max) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
            if min <= max {
                let log = self.log(table);
                seen.prepare(min, max, &mut |from, to| stored_ids(log, table, from, to))?;
            }
            seen.reserve(n);
            // parsing the ids is parallel; the index itself is one table
            let parsed: Vec<Option<u128>> = (0..n)
                .into_par_iter()
                .with_min_len(4_096)
                .map(|i| {
                    if valid[i] {
                        uuid_bits(id_col.value(i))
                    } else {
                        None
                    }
                })
                .collect();
            for (i, ok) in valid.iter_mut().enumerate() {
                if !*ok {
                    continue;
                }
                let Some(bits) = parsed[i] else {
                    continue;
                };
                if seen.check_and_insert(bits, ts_col.value(i)) {
                    *ok = false;
                    counters.duplicates += 1;
                    if duplicate.is_empty() {
                        duplicate = vec![false; n];
                    }
                    duplicate[i] = true;
                } else {
                    ids.push(bits);
                }
            }
        }
        {
            let catalog = self.catalog();
            if !catalog.is_empty() {
                let items = batch.column(contract.item_field);
                if let Some(items) = items.as_any().downcast_ref::<StringArray>() {
                    counters.unknown_items += (0..n)
                        .into_par_iter()
                        .with_min_len(4_096)
                        .filter(|&i| {
                            valid[i] && !items.is_null(i) && !catalog.contains(items.value(i))
                        })
                        .count() as u64;
                }
            }
        }
        let resent = if duplicate.is_empty() {
            None
        } else {
            let dups = arrow::compute::filter_record_batch(batch, &BooleanArray::from(duplicate))
                .map_err(|e| IngestError::Internal {
                message: e.to_string(),
            })?;
            Some(
                finish(&dups, &table.schema())
                    .map_err(|e| IngestError::Internal { message: e.0 })?,
            )
        };
        let kept = if valid.iter().all(|v| *v) {
            // the common case: nothing to drop, nothing to copy
            batch.clone()
        } else {
            arrow::compute::filter_record_batch(batch, &BooleanArray::from(valid)).map_err(|e| {
                IngestError::Internal {
                    message: e.to_string(),
                }
            })?
        };
        counters.accepted = kept.num_rows() as u64;
        let batch = if kept.num_rows() == 0 {
            None
        } else {
            Some(
                finish(&kept, &table.schema())
                    .map_err(|e| IngestError::Internal { message: e.0 })?,
            )
        };
        Ok(Admitted {
            table,
            batch,
            resent,
            ids,
            counters,
            rejects,
        })
    }

    fn forget(&self, table: Table, ids: &[u128]) {
        lock(&self.dedup[table.index()]).forget(ids);
    }

    /// Ingests files. With `strict`, a file with any bad row is rejected whole (nothing of it is
    /// stored). `progress(bytes_read, bytes_total)` is called as files are read.
    pub fn ingest_files(
        &self,
        paths: &[PathBuf],
        table: Option<Table>,
        strict: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<IngestSummary, IngestError> {
        let started = Instant::now();
        let run = self.run_id();
        let mut total = Counters::default();
        let mut unsealed = Counters::default();
        let mut quarantined_to = None;
        let mut first_rejects = Vec::new();
        let mut aborted = false;
        let bytes_total: u64 = paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let mut bytes_done = 0;
        for path in paths {
            if strict {
                // first pass: any bad row rejects the whole file before anything is stored
                let mut source = FileSource::open(path, table, self.now())?;
                let file = source.display().to_owned();
                let mut rejects = Vec::new();
                while let Some(chunk) = source.next_chunk()? {
                    rejects.extend(self.admit(&chunk, &file, false)?.rejects);
                }
                if !rejects.is_empty() {
                    let mut delta = Counters::default();
                    delta.count_rejects(&rejects);
                    first_rejects.extend(
                        rejects
                            .iter()
                            .take(20 - first_rejects.len().min(20))
                            .map(Reject::message),
                    );
                    let t = table.unwrap_or(Table::Playback);
                    quarantined_to = self
                        .quarantine
                        .write(&run, t.name(), &rejects)?
                        .or(quarantined_to.take());
                    self.record(&delta)?;
                    total.add(&delta);
                    aborted = true;
                    continue;
                }
            }
            let mut source = FileSource::open(path, table, self.now())?;
            let file = source.display().to_owned();
            let mut pending: Option<(
                Table,
                encore_storage::event_log::Ticket,
                Vec<u128>,
                Counters,
            )> = None;
            let mut timing = [0f64; 2];
            // the next chunk is read and parsed while this one is checked and appended
            let bytes_read = Arc::clone(&source.bytes_read);
            let file_bytes = source.bytes_total;
            let (chunk_tx, chunk_rx) =
                std::sync::mpsc::sync_channel::<Result<Chunk, IngestError>>(2);
            std::thread::scope(|scope| -> Result<(), IngestError> {
                scope.spawn(move || {
                    loop {
                        let next = source.next_chunk().transpose();
                        let Some(next) = next else { break };
                        let failed = next.is_err();
                        if chunk_tx.send(next).is_err() || failed {
                            break;
                        }
                    }
                });
                loop {
                    let t0 = Instant::now();
                    let Ok(chunk) = chunk_rx.recv() else { break };
                    let chunk = chunk?;
                    let t1 = Instant::now();
                    let admitted = self.admit(&chunk, &file, true)?;
                    timing[0] += (t1 - t0).as_secs_f64();
                    timing[1] += t1.elapsed().as_secs_f64();
                    if !admitted.rejects.is_empty() {
                        let room = 20usize.saturating_sub(first_rejects.len());
                        first_rejects
                            .extend(admitted.rejects.iter().take(room).map(Reject::message));
                        quarantined_to = self
                            .quarantine
                            .write(&run, admitted.table.name(), &admitted.rejects)?
                            .or(quarantined_to.take());
                    }
                    // keep one append in flight while the next chunk is parsed
                    if let Some((t, ticket, ids, delta)) = pending.take() {
                        self.buffered(t, ticket, &ids, &delta, &mut unsealed)?;
                    }
                    match admitted.batch {
                        Some(batch) => {
                            // bulk load: no WAL; durable at the seal below, before anything is reported
                            let ticket = self.log(admitted.table).append_unlogged(batch)?;
                            pending =
                                Some((admitted.table, ticket, admitted.ids, admitted.counters));
                        }
                        None => {
                            self.record(&admitted.counters)?;
                            total.add(&admitted.counters);
                        }
                    }
                    progress(bytes_done + bytes_read.load(Ordering::Relaxed), bytes_total);
                }
                Ok(())
            })?;
            if let Some((t, ticket, ids, delta)) = pending.take() {
                self.buffered(t, ticket, &ids, &delta, &mut unsealed)?;
            }
            tracing::debug!(file = %file, wait_s = timing[0], admit_s = timing[1], "file ingested");
            bytes_done += file_bytes;
            progress(bytes_done, bytes_total);
        }
        // both tables at once: the tail of a load is its final seals. Plain threads, not rayon:
        // a seal waits on the log's writer, which encodes on the rayon pool itself
        let (a, b) = std::thread::scope(|scope| {
            let interaction = scope.spawn(|| self.log(Table::Interaction).seal());
            let playback = self.log(Table::Playback).seal();
            (
                playback,
                interaction.join().unwrap_or(Err(StorageError::Closed)),
            )
        });
        a?;
        b?;
        self.record(&unsealed)?;
        total.add(&unsealed);
        Ok(IngestSummary::new(
            total,
            quarantined_to,
            started,
            first_rejects,
            aborted,
        ))
    }

    fn submit_blocking(
        &self,
        table: Table,
        batch: RecordBatch,
    ) -> Result<encore_storage::event_log::Ticket, IngestError> {
        let mut batch = batch;
        loop {
            match self.log(table).try_submit(batch)? {
                Ok(ticket) => return Ok(ticket),
                Err(encore_storage::event_log::QueueFull(b)) => {
                    batch = b;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        }
    }

    /// Waits until a bulk-loaded batch is in memory; its counters wait for the seal.
    fn buffered(
        &self,
        table: Table,
        ticket: encore_storage::event_log::Ticket,
        ids: &[u128],
        delta: &Counters,
        unsealed: &mut Counters,
    ) -> Result<(), IngestError> {
        if let Err(e) = ticket.wait() {
            self.forget(table, ids);
            return Err(e.into());
        }
        unsealed.add(delta);
        Ok(())
    }

    fn settle(
        &self,
        table: Table,
        ticket: encore_storage::event_log::Ticket,
        ids: &[u128],
        delta: &Counters,
        total: &mut Counters,
    ) -> Result<(), IngestError> {
        if let Err(e) = ticket.wait() {
            self.forget(table, ids);
            return Err(e.into());
        }
        self.record(delta)?;
        total.add(delta);
        Ok(())
    }

    /// Ingests already-built rows (importers): the same contract, dedup and log as files.
    /// `locate(i)` names row `i` in messages.
    pub fn ingest_batch(
        &self,
        table: Table,
        batch: RecordBatch,
        file: &str,
    ) -> Result<IngestSummary, IngestError> {
        let started = Instant::now();
        let candidates = crate::batch::conform(&batch, &table.schema())
            .map_err(|e| IngestError::Internal { message: e.0 })?;
        let chunk = Chunk {
            table,
            candidates: Some(candidates),
            locations: Locations::Rows(0),
            rejects: Vec::new(),
        };
        let admitted = self.admit(&chunk, file, true)?;
        let run = self.run_id();
        let quarantined_to = self
            .quarantine
            .write(&run, table.name(), &admitted.rejects)?;
        let mut total = Counters::default();
        if let Some(batch) = admitted.batch {
            let ticket = self.submit_blocking(table, batch)?;
            self.settle(table, ticket, &admitted.ids, &admitted.counters, &mut total)?;
        } else {
            self.record(&admitted.counters)?;
            total.add(&admitted.counters);
        }
        let first = admitted
            .rejects
            .iter()
            .take(20)
            .map(Reject::message)
            .collect();
        Ok(IngestSummary::new(
            total,
            quarantined_to,
            started,
            first,
            false,
        ))
    }

    /// Parses a request body (a JSON array, or one JSON object per line) into a chunk, checking
    /// its size against `max_rows`.
    pub fn parse_body(&self, body: &[u8], max_rows: usize) -> Result<Chunk, IngestError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let texts: Vec<(u64, Vec<u8>)> = match first {
            None => {
                return Err(IngestError::BadBody {
                    message: "the body is empty".into(),
                });
            }
            Some(b'[') => {
                let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
                    .map_err(|e| IngestError::BadBody {
                        message: format!("not a JSON array: {e}"),
                    })?;
                if items.len() > max_rows {
                    return Err(IngestError::TooLarge {
                        rows: items.len(),
                        limit: max_rows,
                    });
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as u64, v.get().as_bytes().to_vec()))
                    .collect()
            }
            Some(_) => {
                let lines: Vec<(u64, Vec<u8>)> = body
                    .split(|b| *b == b'\n')
                    .enumerate()
                    .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l).to_vec()))
                    .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
                    .collect();
                if lines.len() > max_rows {
                    return Err(IngestError::TooLarge {
                        rows: lines.len(),
                        limit: max_rows,
                    });
                }
                // a body that is one object and nothing else is fine; anything unparseable as
                // JSON on its first line is not a batch at all
                if let Some((_, l)) = lines.first()
                    && serde_json::from_slice::<serde_json::Value>(l).is_err()
                    && lines.len() == 1
                {
                    return Err(IngestError::BadBody {
                        message: "not JSON (expected an array or JSON lines)".into(),
                    });
                }
                lines
            }
        };
        let is_array = first == Some(b'[');
        let table = texts
            .iter()
            .find_map(|(_, b)| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v.as_object().map(Table::of_object))
            .unwrap_or(Table::Playback);
        let locate = move |n: u64| {
            if is_array {
                format!("batch index {n}")
            } else {
                format!("body:{n}")
            }
        };
        let mut chunk = parse_json_texts(table, &texts, &locate, self.now())?;
        if is_array && let Locations::Lines(lines) = chunk.locations {
            chunk.locations = Locations::Indices(lines);
        }
        Ok(chunk)
    }

    /// Queues rows built in process (a batch of `encore_core::arrow`): [`Ingestor::submit_body`]
    /// without a parse, under the same contract and deduplication.
    pub fn submit_batch(
        &self,
        table: Table,
        batch: &RecordBatch,
    ) -> Result<PendingBody<'_>, IngestError> {
        let candidates = crate::batch::conform(batch, &table.schema())
            .map_err(|e| IngestError::Internal { message: e.0 })?;
        let chunk = Chunk {
            table,
            candidates: Some(candidates),
            locations: Locations::Rows(0),
            rejects: Vec::new(),
        };
        self.submit_body(&chunk, false)
    }

    /// Admits a parsed body and queues it without blocking: `Err(Busy)` when the write queue is
    /// full. The returned closure waits for durability and records the outcome.
    pub fn submit_body(&self, chunk: &Chunk, strict: bool) -> Result<PendingBody<'_>, IngestError> {
        let label = "body";
        if strict {
            let check = self.admit(chunk, label, false)?;
            if !check.rejects.is_empty() {
                let mut delta = Counters::default();
                delta.count_rejects(&check.rejects);
                self.quarantine
                    .write(&self.run_id(), chunk.table.name(), &check.rejects)?;
                self.record(&delta)?;
                return Ok(PendingBody {
                    ingestor: self,
                    table: chunk.table,
                    ticket: None,
                    rows: None,
                    resent: None,
                    ids: Vec::new(),
                    counters: delta,
                    rejects: check.rejects,
                });
            }
        }
        let admitted = self.admit(chunk, label, true)?;
        self.quarantine
            .write(&self.run_id(), chunk.table.name(), &admitted.rejects)?;
        let rows = admitted.batch.clone();
        let ticket = match admitted.batch {
            None => None,
            Some(batch) => match self.log(chunk.table).try_submit(batch)? {
                Ok(t) => Some(t),
                Err(_) => {
                    self.forget(chunk.table, &admitted.ids);
                    return Err(IngestError::Busy);
                }
            },
        };
        Ok(PendingBody {
            ingestor: self,
            table: chunk.table,
            ticket,
            rows,
            resent: admitted.resent,
            ids: admitted.ids,
            counters: admitted.counters,
            rejects: admitted.rejects,
        })
    }
}

/// A body whose rows are queued for the log; [`PendingBody::wait`] returns once they are durable.
pub struct PendingBody<'a> {
    ingestor: &'a Ingestor,
    table: Table,
    ticket: Option<encore_storage::event_log::Ticket>,
    rows: Option<RecordBatch>,
    resent: Option<RecordBatch>,
    ids: Vec<u128>,
    counters: Counters,
    rejects: Vec<Reject>,
}

impl std::fmt::Debug for PendingBody<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingBody")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl PendingBody<'_> {
    pub fn wait(self) -> Result<BatchOutcome, IngestError> {
        if let Some(ticket) = self.ticket
            && let Err(e) = ticket.wait()
        {
            self.ingestor.forget(self.table, &self.ids);
            return Err(e.into());
        }
        self.ingestor.record(&self.counters)?;
        Ok(BatchOutcome {
            table: self.table,
            accepted: self.counters.accepted,
            duplicates: self.counters.duplicates,
            unknown_items: self.counters.unknown_items,
            rejects: self.rejects,
            rows: self.rows,
            resent: self.resent,
        })
    }
}

fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    field: usize,
    contract: &crate::contract::Contract,
) -> Result<&'a T, IngestError> {
    batch
        .column(field)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| IngestError::Internal {
            message: format!(
                "column `{}` of {} has an unexpected type",
                contract.fields[field].name, contract.table
            ),
        })
}

/// (id, event time) of stored events with an event time in `[from_ms, to_ms]`.
fn stored_ids(
    log: &EventLog,
    table: Table,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(u128, i64)>, StorageError> {
    let spec = table.spec();
    let mut rows = Vec::new();
    // unsealed rows are in the index already: admitted by this process, or replayed at open
    log.scan_range(
        from_ms,
        to_ms,
        false,
        Some(&[spec.id_column, spec.ts_column]),
        |b| {
            let ids = b.column(0).as_any().downcast_ref::<StringArray>();
            let ts = b.column(1).as_any().downcast_ref::<Int64Array>();
            if let (Some(ids), Some(ts)) = (ids, ts) {
                for i in 0..b.num_rows() {
                    let t = ts.value(i);
                    if (from_ms..=to_ms).contains(&t)
                        && let Some(bits) = uuid_bits(ids.value(i))
                    {
                        rows.push((bits, t));
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok(rows)
}

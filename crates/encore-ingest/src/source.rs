//! Reading event files (JSON lines, CSV, Parquet; optionally .gz or .zst) into chunks of
//! candidate rows, each row located by file and line (or row number) for error messages.

use crate::batch::conform;
use crate::contract::{Contract, JsonRow, Kind, Violation};
use crate::error::IngestError;
use crate::table::{Table, Typed};
use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use serde::Serialize;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows per chunk: large enough to amortize an fsync, small enough to bound memory.
pub const CHUNK_ROWS: usize = 64 * 1024;
/// A rejected row's raw text is kept in the quarantine up to this many bytes.
const RAW_LIMIT: usize = 4_096;

/// A row that did not make it, with every rule it broke.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    /// `file:line`, `file row N` or `batch index N`
    pub location: String,
    pub violations: Vec<Violation>,
    /// the row as received, when it was text
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// line or row number, to report rejects in input order
    #[serde(skip)]
    pub position: u64,
}

impl Reject {
    /// `events.jsonl:12: field `ms_played` = "long": expected ... (rule type)`
    pub fn message(&self) -> String {
        format!(
            "{}: {}",
            self.location,
            Violation::describe_all(&self.violations)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Jsonl,
    Csv,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Where row `i` of a chunk's candidate batch came from.
#[derive(Debug, Clone)]
pub enum Locations {
    /// 1-based line numbers, one per candidate row
    Lines(Vec<u64>),
    /// 0-based row numbers starting here
    Rows(u64),
    /// 0-based positions in a request body, one per candidate row
    Indices(Vec<u64>),
}

/// A slice of a file: candidate rows as a batch (loose canonical schema) and the rows that were
/// rejected before becoming candidates (not JSON, bad encoding, wrong shape).
#[derive(Debug)]
pub struct Chunk {
    pub table: Table,
    pub candidates: Option<RecordBatch>,
    pub locations: Locations,
    pub rejects: Vec<Reject>,
}

impl Chunk {
    /// The line or row number of candidate `i`, for ordering.
    pub fn position(&self, i: usize) -> u64 {
        match &self.locations {
            Locations::Lines(v) | Locations::Indices(v) => v.get(i).copied().unwrap_or(0),
            Locations::Rows(start) => start + i as u64,
        }
    }

    pub fn locate(&self, file: &str, i: usize) -> String {
        match &self.locations {
            Locations::Lines(lines) => format!("{file}:{}", lines.get(i).copied().unwrap_or(0)),
            Locations::Rows(start) => format!("{file} row {}", start + i as u64),
            Locations::Indices(idx) => format!("batch index {}", idx.get(i).copied().unwrap_or(0)),
        }
    }
}

fn detect(path: &Path) -> Result<(FileFormat, Compression), IngestError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (stem, compression) = if let Some(s) = name.strip_suffix(".gz") {
        (s, Compression::Gzip)
    } else if let Some(s) = name.strip_suffix(".zst") {
        (s, Compression::Zstd)
    } else {
        (name.as_str(), Compression::None)
    };
    let format = if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") || stem.ends_with(".json")
    {
        FileFormat::Jsonl
    } else if stem.ends_with(".csv") {
        FileFormat::Csv
    } else if stem.ends_with(".parquet") {
        FileFormat::Parquet
    } else {
        return Err(IngestError::UnknownFormat {
            path: path.to_path_buf(),
        });
    };
    Ok((format, compression))
}

/// Counts bytes read from the file (before decompression), for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open(
    path: &Path,
    compression: Compression,
    count: Arc<AtomicU64>,
) -> Result<Box<dyn BufRead + Send>, IngestError> {
    let file = std::fs::File::open(path).map_err(IngestError::io(path))?;
    let raw = Counting { inner: file, count };
    Ok(match compression {
        Compression::None => Box::new(BufReader::with_capacity(1 << 20, raw)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(raw),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            1 << 20,
            zstd::stream::read::Decoder::new(raw).map_err(IngestError::io(path))?,
        )),
    })
}

/// Why a JSON text is not a valid row of `contract`: the contract's own violations when it can
/// name them, otherwise the parser's message.
pub fn diagnose(
    text: &str,
    contract: &'static Contract,
    err: &serde_json::Error,
    now_ms: i64,
) -> Vec<Violation> {
    let other = |rule: &str, message: String| {
        vec![Violation {
            field: String::new(),
            value: String::new(),
            rule: rule.into(),
            message,
        }]
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(e) => other("json", format!("not valid JSON: {e}")),
        Ok(serde_json::Value::Object(object)) => {
            let v = contract.check(
                &JsonRow {
                    contract,
                    object: &object,
                },
                now_ms,
            );
            if v.is_empty() {
                other("type", err.to_string())
            } else {
                v
            }
        }
        Ok(_) => other("type", "expected a JSON object".into()),
    }
}

fn keep_raw(text: &str) -> Option<String> {
    if text.len() <= RAW_LIMIT {
        Some(text.to_owned())
    } else {
        let mut end = RAW_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Some(format!("{}...", &text[..end]))
    }
}

/// One parsed slice of texts: the rows as a batch, their line numbers, and the rejects.
type ParsedSlice = (RecordBatch, Vec<u64>, Vec<Reject>);

/// Parses JSON texts (line number or index, bytes) into typed rows of `table`, in parallel.
/// `locate` names a text by its number in messages.
pub fn parse_json_texts(
    table: Table,
    texts: &[(u64, Vec<u8>)],
    locate: &(dyn Fn(u64) -> String + Sync),
    now_ms: i64,
) -> Result<Chunk, IngestError> {
    let contract = table.contract();
    // each slice is parsed and turned into an Arrow batch on its own core
    let parts: Vec<Result<ParsedSlice, IngestError>> = texts
        .par_chunks(4_096)
        .map(|part| {
            let mut rows = Typed::new(table);
            let mut lines = Vec::with_capacity(part.len());
            let mut rejects = Vec::new();
            for (line, bytes) in part {
                let text = match std::str::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        rejects.push(Reject {
                            location: locate(*line),
                            violations: vec![Violation {
                                field: String::new(),
                                value: String::new(),
                                rule: "encoding".into(),
                                message: format!("not valid UTF-8 at byte {}", e.valid_up_to()),
                            }],
                            raw: Some(String::from_utf8_lossy(bytes).into_owned()),
                            position: *line,
                        });
                        continue;
                    }
                };
                match rows.push_json(text) {
                    Ok(()) => lines.push(*line),
                    Err(e) => rejects.push(Reject {
                        location: locate(*line),
                        violations: diagnose(text, contract, &e, now_ms),
                        raw: keep_raw(text),
                        position: *line,
                    }),
                }
            }
            let batch = rows.to_batch().map_err(|e| IngestError::Internal {
                message: e.to_string(),
            })?;
            Ok((batch, lines, rejects))
        })
        .collect();
    let mut batches = Vec::with_capacity(parts.len());
    let mut lines = Vec::with_capacity(texts.len());
    let mut rejects = Vec::new();
    for part in parts {
        let (batch, l, r) = part?;
        batches.push(batch);
        lines.extend(l);
        rejects.extend(r);
    }
    let candidates = if lines.is_empty() {
        None
    } else {
        let schema = table.schema();
        let batch = arrow::compute::concat_batches(&schema, &batches).map_err(|e| {
            IngestError::Internal {
                message: e.to_string(),
            }
        })?;
        Some(conform(&batch, &schema).map_err(|e| IngestError::Internal { message: e.0 })?)
    };
    Ok(Chunk {
        table,
        candidates,
        locations: Locations::Lines(lines),
        rejects,
    })
}

/// A file being read chunk by chunk.
pub struct FileSource {
    path: PathBuf,
    display: String,
    inner: Inner,
    table: Option<Table>,
    now_ms: i64,
    pub bytes_read: Arc<AtomicU64>,
    pub bytes_total: u64,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

enum Inner {
    Lines {
        reader: Box<dyn BufRead + Send>,
        line: u64,
        done: bool,
    },
    Csv {
        reader: csv::Reader<Box<dyn BufRead + Send>>,
        headers: Vec<String>,
        done: bool,
    },
    Parquet {
        reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
        row: u64,
        total: u64,
    },
}

impl FileSource {
    /// Opens `path`; `table` forces the event table, otherwise it is taken from the data.
    pub fn open(path: &Path, table: Option<Table>, now_ms: i64) -> Result<FileSource, IngestError> {
        let (format, compression) = detect(path)?;
        let bytes_total = std::fs::metadata(path)
            .map_err(IngestError::io(path))?
            .len();
        let bytes_read = Arc::new(AtomicU64::new(0));
        let display = path.display().to_string();
        let (inner, table) = match format {
            FileFormat::Jsonl => {
                let reader = open(path, compression, Arc::clone(&bytes_read))?;
                (
                    Inner::Lines {
                        reader,
                        line: 0,
                        done: false,
                    },
                    table,
                )
            }
            FileFormat::Csv => {
                let reader = open(path, compression, Arc::clone(&bytes_read))?;
                let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
                let headers = reader
                    .headers()
                    .map_err(|e| IngestError::Malformed {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?
                    .iter()
                    .map(|h| h.trim().to_owned())
                    .collect::<Vec<_>>();
                let table = table.or_else(|| {
                    let has = |k: &str| headers.iter().any(|h| h == k);
                    Some(if has("kind") && has("ts_ms") {
                        Table::Interaction
                    } else {
                        Table::Playback
                    })
                });
                (
                    Inner::Csv {
                        reader,
                        headers,
                        done: false,
                    },
                    table,
                )
            }
            FileFormat::Parquet => {
                let malformed = |e: &dyn std::fmt::Display| IngestError::Malformed {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                };
                if compression != Compression::None {
                    return Err(IngestError::Malformed {
                        path: path.to_path_buf(),
                        message: "compressed Parquet files are not supported: Parquet compresses \
                                  its own pages, so write it uncompressed outside"
                            .into(),
                    });
                }
                let file = std::fs::File::open(path).map_err(IngestError::io(path))?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| malformed(&e))?
                    .with_batch_size(CHUNK_ROWS);
                let schema = builder.schema().clone();
                let total = builder.metadata().file_metadata().num_rows().max(1) as u64;
                let table = table.or_else(|| {
                    let has = |k: &str| schema.index_of(k).is_ok();
                    Some(if has("kind") && has("ts_ms") {
                        Table::Interaction
                    } else {
                        Table::Playback
                    })
                });
                let reader = builder.build().map_err(|e| malformed(&e))?;
                (
                    Inner::Parquet {
                        reader,
                        row: 0,
                        total,
                    },
                    table,
                )
            }
        };
        Ok(FileSource {
            path: path.to_path_buf(),
            display,
            inner,
            table,
            now_ms,
            bytes_read,
            bytes_total,
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// The next chunk, or `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, IngestError> {
        let path = self.path.clone();
        match &mut self.inner {
            Inner::Lines { reader, line, done } => {
                if *done {
                    return Ok(None);
                }
                let mut texts = Vec::with_capacity(CHUNK_ROWS);
                while texts.len() < CHUNK_ROWS {
                    let mut buf = Vec::new();
                    let n = reader
                        .read_until(b'\n', &mut buf)
                        .map_err(IngestError::io(&path))?;
                    if n == 0 {
                        *done = true;
                        break;
                    }
                    *line += 1;
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    texts.push((*line, buf));
                }
                if texts.is_empty() {
                    return Ok(None);
                }
                let table = match self.table {
                    Some(t) => t,
                    None => {
                        let t = texts
                            .iter()
                            .find_map(|(_, b)| serde_json::from_slice::<serde_json::Value>(b).ok())
                            .and_then(|v| v.as_object().map(Table::of_object))
                            .unwrap_or(Table::Playback);
                        self.table = Some(t);
                        t
                    }
                };
                let file = self.display.as_str();
                parse_json_texts(table, &texts, &|line| format!("{file}:{line}"), self.now_ms)
                    .map(Some)
            }
            Inner::Csv {
                reader,
                headers,
                done,
            } => {
                if *done {
                    return Ok(None);
                }
                let table = self.table.unwrap_or(Table::Playback);
                let contract = table.contract();
                let mut texts = Vec::with_capacity(CHUNK_ROWS);
                let mut rejects = Vec::new();
                let mut record = csv::StringRecord::new();
                while texts.len() + rejects.len() < CHUNK_ROWS {
                    let line = reader.position().line();
                    match reader.read_record(&mut record) {
                        Ok(false) => {
                            *done = true;
                            break;
                        }
                        Ok(true) => {
                            let object = csv_object(contract, headers, &record);
                            let text = serde_json::Value::Object(object).to_string();
                            texts.push((
                                record.position().map_or(line, |p| p.line()),
                                text.into_bytes(),
                            ));
                        }
                        Err(e) => rejects.push(Reject {
                            location: format!(
                                "{}:{}",
                                self.display,
                                e.position().map_or(line, |p| p.line())
                            ),
                            violations: vec![Violation {
                                field: String::new(),
                                value: String::new(),
                                rule: if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                                    "encoding"
                                } else {
                                    "csv"
                                }
                                .into(),
                                message: e.to_string(),
                            }],
                            raw: None,
                            position: line,
                        }),
                    }
                }
                let file = self.display.as_str();
                let mut chunk =
                    parse_json_texts(table, &texts, &|line| format!("{file}:{line}"), self.now_ms)?;
                chunk.rejects.extend(rejects);
                Ok(Some(chunk))
            }
            Inner::Parquet { reader, row, total } => {
                let Some(batch) = reader.next() else {
                    return Ok(None);
                };
                let batch = batch.map_err(|e| IngestError::Malformed {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let table = self.table.unwrap_or(Table::Playback);
                let start = *row;
                *row += batch.num_rows() as u64;
                self.bytes_read
                    .store(self.bytes_total * *row / *total, Ordering::Relaxed);
                let candidates =
                    conform(&batch, &table.schema()).map_err(|message| IngestError::Malformed {
                        path: path.clone(),
                        message: message.to_string(),
                    })?;
                Ok(Some(Chunk {
                    table,
                    candidates: Some(candidates),
                    locations: Locations::Rows(start),
                    rejects: Vec::new(),
                }))
            }
        }
    }
}

/// A CSV record as a JSON object, values typed by the contract (`consent.analytics` style headers
/// fill nested objects; empty cells are absent).
fn csv_object(
    contract: &Contract,
    headers: &[String],
    record: &csv::StringRecord,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut object = serde_json::Map::new();
    for (header, cell) in headers.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        if let Some((parent, child)) = header.split_once('.') {
            let entry = object
                .entry(parent.to_owned())
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(o) = entry {
                let v = match cell {
                    "true" | "1" => Value::Bool(true),
                    "false" | "0" => Value::Bool(false),
                    other => Value::String(other.to_owned()),
                };
                o.insert(child.to_owned(), v);
            }
            continue;
        }
        let kind = contract
            .fields
            .iter()
            .find(|f| f.name == header)
            .map(|f| f.kind);
        let value = match kind {
            Some(Kind::Int { .. }) => cell
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(cell.to_owned())),
            Some(Kind::Float { .. }) => cell
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(cell.to_owned())),
            Some(Kind::Bool) => match cell {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                other => Value::String(other.to_owned()),
            },
            Some(Kind::List) | Some(Kind::Object) => {
                serde_json::from_str(cell).unwrap_or_else(|_| Value::String(cell.to_owned()))
            }
            _ => Value::String(cell.to_owned()),
        };
        object.insert(header.clone(), value);
    }
    object
}

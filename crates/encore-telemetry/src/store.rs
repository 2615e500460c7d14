//! The trace store: two event logs under `<data dir>/traces/`, written and recovered with the
//! event log's discipline (WAL, group commit, acknowledgement only once durable, zstd Parquet
//! segments by UTC day):
//!
//! - `spans`: the narrow core table that filters and aggregates read (ids, names, times, status,
//!   service, model, provider, token counts, cost, user, session, remaining attributes as JSON);
//! - `span_content`: prompts and completions, apart, read only when a span's content is asked
//!   for or searched.

use crate::otlp::Span;
use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, Int64Array, Int64Builder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use encore_core::time::MS_PER_DAY;
use encore_storage::{EventLog, LogOptions, Newest, StorageError, TableSpec};
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Columns of the core table, in order.
const SPAN_COLUMNS: &[(&str, DataType, bool)] = &[
    ("key", DataType::Utf8, false),
    ("project", DataType::Utf8, false),
    ("trace_id", DataType::Utf8, false),
    ("span_id", DataType::Utf8, false),
    ("parent_span_id", DataType::Utf8, true),
    ("name", DataType::Utf8, false),
    ("kind", DataType::Utf8, false),
    ("service", DataType::Utf8, false),
    ("start_ms", DataType::Int64, false),
    ("start_ns", DataType::Int64, false),
    ("duration_ns", DataType::Int64, false),
    ("status", DataType::Utf8, false),
    ("status_message", DataType::Utf8, true),
    ("operation", DataType::Utf8, true),
    ("provider", DataType::Utf8, true),
    ("request_model", DataType::Utf8, true),
    ("response_model", DataType::Utf8, true),
    ("ai_kind", DataType::Utf8, true),
    ("input_tokens", DataType::Int64, true),
    ("output_tokens", DataType::Int64, true),
    ("cache_read_tokens", DataType::Int64, true),
    ("cache_write_tokens", DataType::Int64, true),
    ("reasoning_tokens", DataType::Int64, true),
    ("total_tokens", DataType::Int64, true),
    ("cost_usd", DataType::Float64, true),
    ("cost_source", DataType::Utf8, true),
    ("user_id", DataType::Utf8, true),
    ("session_id", DataType::Utf8, true),
    ("conversation_id", DataType::Utf8, true),
    ("prompt_version", DataType::Utf8, true),
    ("error_type", DataType::Utf8, true),
    ("attributes", DataType::Utf8, false),
];

fn schema_of(columns: &[(&str, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
            .collect::<Vec<_>>(),
    ))
}

pub fn span_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| schema_of(SPAN_COLUMNS)).clone()
}

pub fn content_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        schema_of(&[
            ("key", DataType::Utf8, false),
            ("project", DataType::Utf8, false),
            ("start_ms", DataType::Int64, false),
            ("input", DataType::Utf8, true),
            ("output", DataType::Utf8, true),
        ])
    })
    .clone()
}

/// The core table's and the content table's batches of `spans`.
pub fn batches(spans: &[Span]) -> Result<(RecordBatch, RecordBatch), arrow::error::ArrowError> {
    let n = spans.len();
    let strings = |f: &dyn Fn(&Span) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for s in spans {
            b.append_option(f(s));
        }
        Arc::new(b.finish())
    };
    let ints = |f: &dyn Fn(&Span) -> Option<i64>| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(n);
        for s in spans {
            b.append_option(f(s));
        }
        Arc::new(b.finish())
    };
    let keys: Vec<String> = spans.iter().map(Span::key).collect();
    let key_array: ArrayRef = Arc::new(StringArray::from_iter_values(keys.iter()));
    let project: ArrayRef = strings(&|s| Some(&s.project));
    let start_ms: ArrayRef = ints(&|s| Some(s.start_ns.div_euclid(1_000_000)));
    let mut cost = Float64Builder::with_capacity(n);
    for s in spans {
        cost.append_option(s.cost.as_ref().map(|c| c.usd));
    }
    let attributes: Vec<String> = spans
        .iter()
        .map(|s| serde_json::Value::Object(s.mapped.attributes.clone()).to_string())
        .collect();
    let core = RecordBatch::try_new(
        span_schema(),
        vec![
            key_array.clone(),
            project.clone(),
            strings(&|s| Some(&s.trace_id)),
            strings(&|s| Some(&s.span_id)),
            strings(&|s| s.parent_span_id.as_deref()),
            strings(&|s| Some(&s.name)),
            strings(&|s| Some(s.kind)),
            strings(&|s| Some(&s.service)),
            start_ms.clone(),
            ints(&|s| Some(s.start_ns)),
            ints(&|s| Some(s.duration_ns())),
            strings(&|s| Some(s.status)),
            strings(&|s| s.status_message.as_deref()),
            strings(&|s| s.mapped.operation.as_deref()),
            strings(&|s| s.mapped.provider.as_deref()),
            strings(&|s| s.mapped.request_model.as_deref()),
            strings(&|s| s.mapped.response_model.as_deref()),
            strings(&|s| s.mapped.ai_kind.as_deref()),
            ints(&|s| s.mapped.tokens.input),
            ints(&|s| s.mapped.tokens.output),
            ints(&|s| s.mapped.tokens.cache_read),
            ints(&|s| s.mapped.tokens.cache_write),
            ints(&|s| s.mapped.tokens.reasoning),
            ints(&|s| s.mapped.tokens.total),
            Arc::new(cost.finish()),
            strings(&|s| s.cost.as_ref().map(|c| c.source.as_str())),
            strings(&|s| s.mapped.user.as_deref()),
            strings(&|s| s.mapped.session.as_deref()),
            strings(&|s| s.mapped.conversation.as_deref()),
            strings(&|s| s.mapped.prompt_version.as_deref()),
            strings(&|s| s.mapped.error_type.as_deref()),
            Arc::new(StringArray::from_iter_values(attributes.iter())),
        ],
    )?;
    let content = RecordBatch::try_new(
        content_schema(),
        vec![
            key_array,
            project,
            start_ms,
            strings(&|s| s.mapped.input.as_deref()),
            strings(&|s| s.mapped.output.as_deref()),
        ],
    )?;
    Ok((core, content))
}

/// The trace store of a data directory.
#[derive(Debug)]
pub struct SpanStore {
    pub spans: EventLog,
    pub content: EventLog,
    /// (trace id, span id) already stored: an exporter's retry of a batch whose answer was lost
    /// is stored once
    dedup: std::sync::Mutex<encore_storage::dedup::Dedup>,
}

/// A span's identity as one 128-bit key: the trace id folded with the span id.
fn span_key(key: &str) -> u128 {
    let (trace, span) = key.split_at(key.len().min(32));
    let t = u128::from_str_radix(trace, 16).unwrap_or(0);
    let s = u64::from_str_radix(span, 16).unwrap_or(0);
    t.rotate_left(23) ^ u128::from(s).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
}

impl SpanStore {
    /// The two tables of the span store under the data directory `root`: where each lives and
    /// its spec (for tools that check or repair them without opening the store).
    pub fn tables(root: &Path) -> [(std::path::PathBuf, TableSpec); 2] {
        use encore_storage::lake::{MILLIS, NANOS};
        let dir = root.join("traces");
        [
            (
                dir.join("spans"),
                TableSpec {
                    name: "spans",
                    schema: span_schema(),
                    ts_column: "start_ms",
                    id_column: "key",
                    high_cardinality: &[
                        "key",
                        "trace_id",
                        "span_id",
                        "parent_span_id",
                        "start_ns",
                        "attributes",
                    ],
                    times: &[("start_ms", MILLIS), ("start_ns", NANOS)],
                    lake_names: &[("start_ms", "ts_start_ms"), ("start_ns", "ts_start_ns")],
                },
            ),
            (
                dir.join("span_content"),
                TableSpec {
                    name: "span_content",
                    schema: content_schema(),
                    ts_column: "start_ms",
                    id_column: "key",
                    high_cardinality: &["key", "input", "output"],
                    times: &[("start_ms", MILLIS)],
                    lake_names: &[("start_ms", "ts_start_ms")],
                },
            ),
        ]
    }

    pub fn open(root: &Path, options: LogOptions) -> Result<SpanStore, StorageError> {
        let [(spans_dir, spans_spec), (content_dir, content_spec)] = SpanStore::tables(root);
        let spans = EventLog::open(&spans_dir, spans_spec, options.clone())?;
        let content = EventLog::open(&content_dir, content_spec, options)?;
        Ok(SpanStore {
            spans,
            content,
            dedup: std::sync::Mutex::new(encore_storage::dedup::Dedup::new(MS_PER_DAY)),
        })
    }

    /// Why span writes fail right now, if they do (see [`EventLog::health`]).
    pub fn health(&self) -> Option<String> {
        self.spans.health().or_else(|| self.content.health())
    }

    /// Stores the spans of `spans` not stored yet and returns once both tables hold them
    /// durably, with how many were new (the others were already stored: a retried export).
    pub fn append(&self, spans: &[Span]) -> Result<usize, StorageError> {
        Ok(self.append_fresh(spans)?.len())
    }

    /// [`SpanStore::append`], returning the spans newly stored (a span already stored, or twice
    /// in `spans`, is left out): what downstream consumers such as online evaluation may act on.
    pub fn append_fresh(&self, spans: &[Span]) -> Result<Vec<Span>, StorageError> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let ms = |s: &Span| s.start_ns.div_euclid(1_000_000);
        let fresh: Vec<Span> = {
            let mut dedup = self.dedup.lock().unwrap_or_else(|e| e.into_inner());
            let (min, max) = spans
                .iter()
                .map(ms)
                .fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
            dedup.prepare(min, max, &mut |from, to| {
                let mut ids = Vec::new();
                self.spans
                    .scan_range(from, to, true, Some(&["key", "start_ms"]), |b| {
                        let keys: &StringArray = col(b, "key")?;
                        let ts: &Int64Array = col(b, "start_ms")?;
                        for i in 0..b.num_rows() {
                            if (from..=to).contains(&ts.value(i)) {
                                ids.push((span_key(keys.value(i)), ts.value(i)));
                            }
                        }
                        Ok(())
                    })?;
                Ok::<_, StorageError>(ids)
            })?;
            let mut seen_here = std::collections::HashSet::new();
            spans
                .iter()
                .filter(|s| {
                    let k = span_key(&s.key());
                    seen_here.insert(k) && !dedup.check_and_insert(k, ms(s))
                })
                .cloned()
                .collect()
        };
        if fresh.is_empty() {
            return Ok(fresh);
        }
        let (core, content) = batches(&fresh).map_err(|e| StorageError::Arrow {
            message: e.to_string(),
        })?;
        // content first: a span is visible once its core row is durable
        let written = self
            .content
            .append(content)
            .and_then(|()| self.spans.append(core));
        if let Err(e) = written {
            // not stored: a retry must not be taken for a duplicate
            let keys: Vec<u128> = fresh.iter().map(|s| span_key(&s.key())).collect();
            self.dedup
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(&keys);
            return Err(e);
        }
        Ok(fresh)
    }

    /// Stores what GenAI log events said of spans as content rows keyed by their span (stored
    /// before or after it); returns the spans given content. A row repeated by a retried
    /// export is merged away when read.
    pub fn append_content(
        &self,
        content: &[crate::otlp::SpanContent],
    ) -> Result<usize, StorageError> {
        if content.is_empty() {
            return Ok(0);
        }
        let strings = |f: &dyn Fn(&crate::otlp::SpanContent) -> Option<&str>| -> ArrayRef {
            Arc::new(content.iter().map(f).collect::<StringArray>())
        };
        let batch = RecordBatch::try_new(
            content_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    content.iter().map(|c| c.key()),
                )),
                strings(&|c| Some(&c.project)),
                Arc::new(Int64Array::from_iter_values(
                    content.iter().map(|c| c.time_ns.div_euclid(1_000_000)),
                )),
                strings(&|c| c.input.as_deref()),
                strings(&|c| c.output.as_deref()),
            ],
        )
        .map_err(StorageError::arrow)?;
        self.content.append(batch)?;
        Ok(content.len())
    }

    pub fn seal(&self) -> Result<(), StorageError> {
        self.content.seal()?;
        self.spans.seal()
    }

    /// Retention: drops the sealed days whose spans all started before `cutoff_ms`, in both
    /// tables. Returns the spans dropped.
    pub fn drop_before(&self, cutoff_ms: i64) -> Result<u64, StorageError> {
        // the core rows first: a span is gone once its core row is
        let (_, rows) = self.spans.drop_before(cutoff_ms)?;
        self.content.drop_before(cutoff_ms)?;
        Ok(rows)
    }
}

/// Filters of a span listing; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub project: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub service: Option<String>,
    pub operation: Option<String>,
    /// request or response model
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<String>,
    pub user: Option<String>,
    pub session: Option<String>,
    pub trace_id: Option<String>,
    pub min_duration_ms: Option<f64>,
    pub min_cost: Option<f64>,
    /// only root spans (no parent)
    pub root: bool,
    /// only spans whose prompt or completion contains this text (case-insensitive, any script)
    pub text: Option<String>,
    /// only spans whose remaining attributes have these values (`key`, value as text)
    pub attributes: Vec<(String, String)>,
}

/// Whether a span's attributes (the JSON object stored with it) hold every `(key, value)`.
fn attributes_match(json: &str, wanted: &[(String, String)]) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(json) else {
        return false;
    };
    wanted.iter().all(|(k, v)| match map.get(k) {
        Some(serde_json::Value::String(s)) => s == v,
        Some(other) => other.to_string().as_str() == v.as_str(),
        None => false,
    })
}

/// Whether `haystack` contains `needle`, ignoring case; `needle_lower` is `needle` lowercased.
fn contains_ignoring_case(haystack: &str, needle_lower: &str) -> bool {
    if needle_lower.is_ascii() {
        let n = needle_lower.as_bytes();
        n.is_empty()
            || haystack
                .as_bytes()
                .windows(n.len())
                .any(|w| w.eq_ignore_ascii_case(n))
    } else {
        haystack.to_lowercase().contains(needle_lower)
    }
}

/// A [`Filter`] bound to the columns of one batch: which rows match.
struct Matcher<'a> {
    filter: &'a Filter,
    from: i64,
    to: i64,
    /// (wanted value, column) of the equality filters in use
    equals: Vec<(&'a str, &'a StringArray)>,
    start_ms: &'a Int64Array,
    duration: &'a Int64Array,
    parent: &'a StringArray,
    request_model: &'a StringArray,
    response_model: &'a StringArray,
    cost: &'a Float64Array,
    attributes: Option<&'a StringArray>,
    /// the model filter's family (date suffix, route and version tag set aside)
    model: Option<String>,
}

impl<'a> Matcher<'a> {
    fn new(filter: &'a Filter, b: &'a RecordBatch) -> Result<Matcher<'a>, StorageError> {
        let mut equals = Vec::new();
        for (want, column) in [
            (&filter.project, "project"),
            (&filter.service, "service"),
            (&filter.operation, "operation"),
            (&filter.provider, "provider"),
            (&filter.status, "status"),
            (&filter.user, "user_id"),
            (&filter.session, "session_id"),
            (&filter.trace_id, "trace_id"),
        ] {
            if let Some(w) = want.as_deref() {
                equals.push((w, col::<StringArray>(b, column)?));
            }
        }
        Ok(Matcher {
            filter,
            from: filter.from_ms.unwrap_or(i64::MIN),
            to: filter.to_ms.unwrap_or(i64::MAX),
            equals,
            start_ms: col(b, "start_ms")?,
            duration: col(b, "duration_ns")?,
            parent: col(b, "parent_span_id")?,
            request_model: col(b, "request_model")?,
            response_model: col(b, "response_model")?,
            cost: col(b, "cost_usd")?,
            model: filter.model.as_deref().map(crate::cost::model_family),
            attributes: if filter.attributes.is_empty() {
                None
            } else {
                Some(col(b, "attributes")?)
            },
        })
    }

    fn matches(&self, i: usize) -> bool {
        let f = self.filter;
        let is = |a: &StringArray, m: &str| !a.is_null(i) && a.value(i) == m;
        (self.from..=self.to).contains(&self.start_ms.value(i))
            && self.equals.iter().all(|(w, a)| is(a, w))
            && (!f.root || self.parent.is_null(i))
            && self.model.as_deref().is_none_or(|m| {
                let family =
                    |a: &StringArray| !a.is_null(i) && crate::cost::model_family(a.value(i)) == m;
                family(self.request_model) || family(self.response_model)
            })
            && f.min_duration_ms
                .is_none_or(|d| self.duration.value(i) as f64 / 1e6 >= d)
            && f.min_cost
                .is_none_or(|m| !self.cost.is_null(i) && self.cost.value(i) >= m)
            && self
                .attributes
                .is_none_or(|a| attributes_match(a.value(i), &f.attributes))
    }
}

/// What a listing reads of the core table (not the attributes).
const LIST_COLUMNS: &[&str] = &[
    "project",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service",
    "start_ms",
    "start_ns",
    "duration_ns",
    "status",
    "operation",
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "total_tokens",
    "cost_usd",
    "user_id",
    "session_id",
    "error_type",
    "status_message",
    "ai_kind",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_source",
    "conversation_id",
    "prompt_version",
    "attributes",
];

/// One row of a listing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanRow {
    pub project: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: String,
    pub service: String,
    pub start_ns: i64,
    pub duration_ms: f64,
    pub status: String,
    pub operation: Option<String>,
    pub provider: Option<String>,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    /// `provider`, or `prices:<table version>` (`+estimated` when the tokens were estimated)
    pub cost_source: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub conversation_id: Option<String>,
    pub prompt_version: Option<String>,
    pub error_type: Option<String>,
    pub status_message: Option<String>,
    /// OpenInference span kind (LLM, CHAIN, TOOL, ...)
    pub ai_kind: Option<String>,
    /// every attribute no mapping rule consumed (temperature, finish reasons, response id, ...)
    pub attributes: serde_json::Value,
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, StorageError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| StorageError::Arrow {
            message: format!("spans: column {name} is missing or of another type"),
        })
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_owned())
}

fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    (!a.is_null(i)).then(|| a.value(i))
}

impl SpanStore {
    /// Spans of `project` (every project when `None`) durable and queryable now.
    pub fn count(&self, project: Option<&str>) -> Result<u64, StorageError> {
        let mut n = 0u64;
        self.spans.scan(Some(&["project"]), |b| {
            match project {
                None => n += b.num_rows() as u64,
                Some(p) => {
                    let a: &StringArray = col(b, "project")?;
                    n += a.iter().filter(|v| *v == Some(p)).count() as u64;
                }
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// The newest `limit` spans matching `filter`, newest first, starting before `before_ns`
    /// (keyset pagination: pass the last row's `start_ns` to get the next page).
    pub fn list(
        &self,
        filter: &Filter,
        limit: usize,
        before_ns: Option<i64>,
    ) -> Result<Vec<SpanRow>, StorageError> {
        let mut rows: Vec<SpanRow> = Vec::new();
        let (from, to) = (
            filter.from_ms.unwrap_or(i64::MIN),
            filter.to_ms.unwrap_or(i64::MAX),
        );
        // full text: the keys whose content matches, from the content table
        let matching: Option<std::collections::HashSet<String>> = match &filter.text {
            None => None,
            Some(q) => Some(self.content_matching(filter, &q.to_lowercase(), from, to)?),
        };
        let mut columns: Vec<&str> = LIST_COLUMNS.to_vec();
        if !filter.attributes.is_empty() {
            columns.push("attributes");
        }
        self.spans.scan_newest(Some(&columns), |step| {
            let b = match step {
                Newest::Batch(b) => b,
                // a full page newer than anything the next segment holds: done
                Newest::Next { max_ts_ms } => {
                    let full = rows.len() >= limit
                        && rows
                            .last()
                            .is_some_and(|r| r.start_ns.div_euclid(1_000_000) > max_ts_ms);
                    return Ok(!full && max_ts_ms >= from);
                }
            };
            let start_ns: &Int64Array = col(b, "start_ns")?;
            let trace: &StringArray = col(b, "trace_id")?;
            let matcher = Matcher::new(filter, b)?;
            // rows older than the current page's last cannot enter it
            let floor = if rows.len() >= limit {
                rows.last().map_or(i64::MIN, |r| r.start_ns)
            } else {
                i64::MIN
            };
            let mut candidates: Vec<(i64, usize)> = Vec::new();
            for i in 0..b.num_rows() {
                let t = start_ns.value(i);
                if t < floor || before_ns.is_some_and(|bn| t >= bn) || !matcher.matches(i) {
                    continue;
                }
                if let Some(keys) = &matching {
                    let span: &StringArray = col(b, "span_id")?;
                    if !keys.contains(&format!("{}{}", trace.value(i), span.value(i))) {
                        continue;
                    }
                }
                candidates.push((t, i));
            }
            if candidates.len() > limit {
                candidates.select_nth_unstable_by(limit, |a, b| b.0.cmp(&a.0));
                candidates.truncate(limit);
            }
            for (_, i) in candidates {
                rows.push(row(b, i)?);
            }
            rows.sort_by(|a, b| b.start_ns.cmp(&a.start_ns).then(b.span_id.cmp(&a.span_id)));
            rows.truncate(limit);
            Ok(true)
        })?;
        Ok(rows)
    }
}

impl SpanStore {
    /// Keys of the spans of `filter.project` in `[from, to]` whose content contains `q_lower`.
    fn content_matching(
        &self,
        filter: &Filter,
        q_lower: &str,
        from: i64,
        to: i64,
    ) -> Result<std::collections::HashSet<String>, StorageError> {
        let mut keys = std::collections::HashSet::new();
        self.content.scan_range(
            from,
            to,
            true,
            Some(&["key", "project", "start_ms", "input", "output"]),
            |b| {
                let key: &StringArray = col(b, "key")?;
                let project: &StringArray = col(b, "project")?;
                let ts: &Int64Array = col(b, "start_ms")?;
                let input: &StringArray = col(b, "input")?;
                let output: &StringArray = col(b, "output")?;
                for i in 0..b.num_rows() {
                    if !(from..=to).contains(&ts.value(i))
                        || filter
                            .project
                            .as_deref()
                            .is_some_and(|p| project.value(i) != p)
                    {
                        continue;
                    }
                    let hit = |a: &StringArray| {
                        !a.is_null(i) && contains_ignoring_case(a.value(i), q_lower)
                    };
                    if hit(input) || hit(output) {
                        keys.insert(key.value(i).to_owned());
                    }
                }
                Ok(())
            },
        )?;
        Ok(keys)
    }

    /// A trace as a tree: its spans depth first (children by start time), each with its depth,
    /// its start offset from the trace's first span, and its content.
    pub fn trace(&self, trace_id: &str) -> Result<Vec<TraceSpan>, StorageError> {
        let filter = Filter {
            trace_id: Some(trace_id.to_owned()),
            ..Default::default()
        };
        let rows = self.list(&filter, 100_000, None)?;
        let Some(first) = rows.iter().map(|r| r.start_ns).min() else {
            return Ok(Vec::new());
        };
        // content rows from log events carry the event's time: up to the span's end, and a
        // little after
        let (lo, hi) = (
            first.div_euclid(1_000_000),
            rows.iter()
                .map(|r| r.start_ns.saturating_add((r.duration_ms * 1e6) as i64))
                .max()
                .unwrap_or(first)
                .div_euclid(1_000_000)
                .saturating_add(60_000),
        );
        let mut content = self.contents(&rows, lo, hi)?;
        // depth first from the roots (spans whose parent is not in the trace)
        let ids: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.span_id.as_str()).collect();
        let mut children: std::collections::HashMap<Option<&str>, Vec<&SpanRow>> =
            Default::default();
        for r in &rows {
            let parent = r.parent_span_id.as_deref().filter(|p| ids.contains(p));
            children.entry(parent).or_default().push(r);
        }
        for v in children.values_mut() {
            v.sort_by_key(|r| r.start_ns);
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut stack: Vec<(&SpanRow, usize)> = children
            .get(&None)
            .map(|v| v.iter().rev().map(|r| (*r, 0)).collect())
            .unwrap_or_default();
        while let Some((r, depth)) = stack.pop() {
            let (input, output) = content
                .remove(&format!("{}{}", r.trace_id, r.span_id))
                .unwrap_or_default();
            out.push(TraceSpan {
                depth,
                offset_ms: (r.start_ns - first) as f64 / 1e6,
                span: r.clone(),
                input,
                output,
            });
            if let Some(kids) = children.get(&Some(r.span_id.as_str())) {
                stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
            }
        }
        Ok(out)
    }
}

/// The input and output of a span, by its key (trace id and span id).
pub type Contents = std::collections::HashMap<String, (Option<String>, Option<String>)>;

impl SpanStore {
    /// The stored content of `rows` (spans that started in `[lo_ms, hi_ms]`), by span key; a
    /// span without content is absent.
    pub fn contents(
        &self,
        rows: &[SpanRow],
        lo_ms: i64,
        hi_ms: i64,
    ) -> Result<Contents, StorageError> {
        let wanted: std::collections::HashSet<String> = rows
            .iter()
            .map(|r| format!("{}{}", r.trace_id, r.span_id))
            .collect();
        let mut content = Contents::default();
        if wanted.is_empty() {
            return Ok(content);
        }
        self.content
            .scan_range(lo_ms, hi_ms, true, Some(&["key", "input", "output"]), |b| {
                let key: &StringArray = col(b, "key")?;
                let input: &StringArray = col(b, "input")?;
                let output: &StringArray = col(b, "output")?;
                for i in 0..b.num_rows() {
                    if wanted.contains(key.value(i)) {
                        let (have_in, have_out) =
                            content.entry(key.value(i).to_owned()).or_default();
                        merge_content(have_in, opt_str(input, i));
                        merge_content(have_out, opt_str(output, i));
                    }
                }
                Ok(())
            })?;
        Ok(content)
    }
}

/// Adds `more` to a span's content read so far: the span's own content and what its log events
/// said arrive as separate rows; JSON message lists are joined (a message repeated by a retried
/// export once), anything else keeps the first text.
fn merge_content(have: &mut Option<String>, more: Option<String>) {
    let Some(more) = more else { return };
    let Some(current) = have.as_ref() else {
        *have = Some(more);
        return;
    };
    let parse = |t: &str| match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Array(a)) => Some(a),
        _ => None,
    };
    if let (Some(mut a), Some(b)) = (parse(current), parse(&more)) {
        for m in b {
            if !a.contains(&m) {
                a.push(m);
            }
        }
        *have = Some(serde_json::Value::Array(a).to_string());
    }
}

/// One span of [`SpanStore::trace`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSpan {
    pub depth: usize,
    pub offset_ms: f64,
    #[serde(flatten)]
    pub span: SpanRow,
    pub input: Option<String>,
    pub output: Option<String>,
}

fn row(b: &RecordBatch, i: usize) -> Result<SpanRow, StorageError> {
    let s = |name: &str| -> Result<Option<String>, StorageError> {
        Ok(opt_str(col::<StringArray>(b, name)?, i))
    };
    let n = |name: &str| -> Result<Option<i64>, StorageError> {
        Ok(opt_i64(col::<Int64Array>(b, name)?, i))
    };
    let cost: &Float64Array = col(b, "cost_usd")?;
    Ok(SpanRow {
        project: s("project")?.unwrap_or_default(),
        trace_id: s("trace_id")?.unwrap_or_default(),
        span_id: s("span_id")?.unwrap_or_default(),
        parent_span_id: s("parent_span_id")?,
        name: s("name")?.unwrap_or_default(),
        kind: s("kind")?.unwrap_or_default(),
        service: s("service")?.unwrap_or_default(),
        start_ns: n("start_ns")?.unwrap_or_default(),
        duration_ms: n("duration_ns")?.unwrap_or_default() as f64 / 1e6,
        status: s("status")?.unwrap_or_default(),
        operation: s("operation")?,
        provider: s("provider")?,
        request_model: s("request_model")?,
        response_model: s("response_model")?,
        input_tokens: n("input_tokens")?,
        output_tokens: n("output_tokens")?,
        cache_read_tokens: n("cache_read_tokens")?,
        cache_write_tokens: n("cache_write_tokens")?,
        reasoning_tokens: n("reasoning_tokens")?,
        total_tokens: n("total_tokens")?,
        cost_usd: (!cost.is_null(i)).then(|| cost.value(i)),
        cost_source: s("cost_source")?,
        user_id: s("user_id")?,
        session_id: s("session_id")?,
        conversation_id: s("conversation_id")?,
        prompt_version: s("prompt_version")?,
        error_type: s("error_type")?,
        status_message: s("status_message")?,
        ai_kind: s("ai_kind")?,
        attributes: s("attributes")?
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
    })
}

/// What spans are grouped by in [`SpanStore::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Model,
    Service,
    User,
    Operation,
    Provider,
    Status,
    /// everything in one group
    None,
}

impl GroupBy {
    fn column(self) -> Option<&'static str> {
        match self {
            // the response model, else the request model
            GroupBy::Model => Some("response_model"),
            GroupBy::Service => Some("service"),
            GroupBy::User => Some("user_id"),
            GroupBy::Operation => Some("operation"),
            GroupBy::Provider => Some("provider"),
            GroupBy::Status => Some("status"),
            GroupBy::None => None,
        }
    }
}

/// Latency quantiles in milliseconds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Tokens summed by type.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenSums {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    pub reasoning: i64,
    pub total: i64,
}

/// One (time bucket, group) of an aggregate.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsRow {
    /// start of the time bucket (epoch ms; 0 without buckets)
    pub bucket_ms: i64,
    /// the group's value (`null`: spans without one)
    pub group: Option<String>,
    pub count: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub latency_ms: Quantiles,
    pub tokens: TokenSums,
    pub cost_usd: f64,
}

#[derive(Default)]
struct Acc {
    count: u64,
    errors: u64,
    durations: Vec<f32>,
    tokens: TokenSums,
    cost: f64,
}

/// The `q` quantile (linear interpolation between closest ranks) of sorted `xs`.
fn quantile(xs: &[f32], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let pos = q * (xs.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let w = pos - lo as f64;
    f64::from(xs[lo]) * (1.0 - w) + f64::from(xs[hi]) * w
}

impl SpanStore {
    /// Aggregates of the spans matching `filter`, per time bucket of `bucket_ms` (0: one
    /// bucket) and per `group`: count, error rate, latency quantiles, tokens by type and cost.
    /// Rows are ordered by bucket, then by cost (highest first).
    pub fn stats(
        &self,
        filter: &Filter,
        group: GroupBy,
        bucket_ms: i64,
    ) -> Result<Vec<StatsRow>, StorageError> {
        let (from, to) = (
            filter.from_ms.unwrap_or(i64::MIN),
            filter.to_ms.unwrap_or(i64::MAX),
        );
        let mut groups: std::collections::HashMap<(i64, Option<String>), Acc> = Default::default();
        let mut columns: Vec<&str> = LIST_COLUMNS.to_vec();
        columns.extend(["cache_write_tokens", "reasoning_tokens"]);
        if !filter.attributes.is_empty() {
            columns.push("attributes");
        }
        self.spans.scan_range(from, to, true, Some(&columns), |b| {
            let start_ms: &Int64Array = col(b, "start_ms")?;
            let duration: &Int64Array = col(b, "duration_ns")?;
            let status: &StringArray = col(b, "status")?;
            let cost: &Float64Array = col(b, "cost_usd")?;
            let request_model: &StringArray = col(b, "request_model")?;
            let key: Option<&StringArray> = match group.column() {
                Some(c) => Some(col(b, c)?),
                None => None,
            };
            let tokens: Vec<&Int64Array> = [
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
                "total_tokens",
            ]
            .iter()
            .map(|c| col::<Int64Array>(b, c))
            .collect::<Result<_, _>>()?;
            let matcher = Matcher::new(filter, b)?;
            for i in 0..b.num_rows() {
                if !matcher.matches(i) {
                    continue;
                }
                let t = start_ms.value(i);
                let bucket = if bucket_ms > 0 {
                    t.div_euclid(bucket_ms) * bucket_ms
                } else {
                    0
                };
                // a span without a response model is counted under the model it asked for
                let g = key.and_then(|k| opt_str(k, i)).or_else(|| {
                    (group == GroupBy::Model)
                        .then(|| opt_str(request_model, i))
                        .flatten()
                });
                let acc = groups.entry((bucket, g)).or_default();
                acc.count += 1;
                acc.errors += u64::from(status.value(i) == "error");
                acc.durations.push((duration.value(i) as f64 / 1e6) as f32);
                let v = |k: usize| opt_i64(tokens[k], i).unwrap_or(0);
                acc.tokens.input += v(0);
                acc.tokens.output += v(1);
                acc.tokens.cache_read += v(2);
                acc.tokens.cache_write += v(3);
                acc.tokens.reasoning += v(4);
                acc.tokens.total += v(5);
                if !cost.is_null(i) {
                    acc.cost += cost.value(i);
                }
            }
            Ok(())
        })?;
        let mut rows: Vec<StatsRow> = groups
            .into_iter()
            .map(|((bucket_ms, group), mut a)| {
                a.durations.sort_unstable_by(f32::total_cmp);
                StatsRow {
                    bucket_ms,
                    group,
                    count: a.count,
                    errors: a.errors,
                    error_rate: a.errors as f64 / a.count.max(1) as f64,
                    latency_ms: Quantiles {
                        p50: quantile(&a.durations, 0.5),
                        p95: quantile(&a.durations, 0.95),
                        p99: quantile(&a.durations, 0.99),
                    },
                    tokens: a.tokens,
                    cost_usd: a.cost,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            a.bucket_ms
                .cmp(&b.bucket_ms)
                .then(b.cost_usd.total_cmp(&a.cost_usd))
                .then(a.group.cmp(&b.group))
        });
        Ok(rows)
    }
}

pub use crate::otlp::trace_draw;

/// How long spans are kept, and how they are thinned as they age.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// days kept (0: forever)
    pub default_days: u32,
    /// per project, days kept instead
    pub by_project: std::collections::HashMap<String, u32>,
    /// per service, days kept instead (the shorter of a project's and a service's applies)
    pub by_service: std::collections::HashMap<String, u32>,
    /// past this age (days; 0: never), traces are thinned to `sample_rate`
    pub sample_after_days: u32,
    pub sample_rate: f64,
    /// a span this slow keeps its trace when thinning
    pub keep_slower_than_ms: f64,
}

impl Retention {
    fn days(&self, project: &str, service: &str) -> u32 {
        match (self.by_project.get(project), self.by_service.get(service)) {
            (None, None) => self.default_days,
            (Some(&d), None) | (None, Some(&d)) | (Some(&0), Some(&d)) | (Some(&d), Some(&0)) => d,
            (Some(&a), Some(&b)) => a.min(b),
        }
    }
}

/// Keeps the rows of `b` for which `keep(row)` holds.
fn filter_rows(
    b: RecordBatch,
    keep: impl Fn(&RecordBatch, usize) -> Result<bool, StorageError>,
) -> Result<RecordBatch, StorageError> {
    let mask: arrow::array::BooleanArray = (0..b.num_rows())
        .map(|i| keep(&b, i).map(Some))
        .collect::<Result<_, _>>()?;
    arrow::compute::filter_record_batch(&b, &mask).map_err(|e| StorageError::Arrow {
        message: e.to_string(),
    })
}

impl SpanStore {
    /// Retention and compaction-time sampling (see [`Retention`]): whole days older than every
    /// retention are dropped; days that some projects or services still keep are rewritten
    /// without the expired rows; past `sample_after_days`, traces without errors or slow spans
    /// are thinned to `sample_rate` (by trace id, whole traces). Returns the spans dropped.
    /// Unsealed spans (the newest) are left alone.
    pub fn apply_retention(&self, now_ms: i64, policy: &Retention) -> Result<u64, StorageError> {
        let all: Vec<u32> = std::iter::once(policy.default_days)
            .chain(policy.by_project.values().copied())
            .chain(policy.by_service.values().copied())
            .collect();
        let mut dropped = 0;
        if all.iter().all(|d| *d > 0) {
            let longest = all.iter().copied().max().unwrap_or(0);
            dropped += self.drop_before(now_ms - i64::from(longest) * MS_PER_DAY)?;
        }
        if let Some(shortest) = all.iter().copied().filter(|d| *d > 0).min()
            && (!policy.by_project.is_empty() || !policy.by_service.is_empty())
        {
            let cutoff = now_ms - i64::from(shortest) * MS_PER_DAY;
            let p = policy.clone();
            let keep = move |b: &RecordBatch, i: usize| -> Result<bool, StorageError> {
                let project: &StringArray = col(b, "project")?;
                let service: &StringArray = col(b, "service")?;
                let ts: &Int64Array = col(b, "start_ms")?;
                let days = p.days(project.value(i), service.value(i));
                Ok(days == 0 || ts.value(i) >= now_ms - i64::from(days) * MS_PER_DAY)
            };
            let stats = self
                .spans
                .rewrite(i64::MIN, cutoff, true, move |b| filter_rows(b, &keep))?;
            dropped += stats.rows_before - stats.rows_after;
            // the content table has no service column: its rows follow their core rows
            self.drop_orphan_content(cutoff)?;
        }
        if policy.sample_after_days > 0 && policy.sample_rate < 1.0 {
            let cutoff = now_ms - i64::from(policy.sample_after_days) * MS_PER_DAY;
            // traces with an error or a slow span are kept whole
            let mut keep_traces = std::collections::HashSet::new();
            let slow_ns = (policy.keep_slower_than_ms * 1e6) as i64;
            self.spans.scan_range(
                i64::MIN,
                cutoff,
                false,
                Some(&["trace_id", "status", "duration_ns"]),
                |b| {
                    let trace: &StringArray = col(b, "trace_id")?;
                    let status: &StringArray = col(b, "status")?;
                    let duration: &Int64Array = col(b, "duration_ns")?;
                    for i in 0..b.num_rows() {
                        if status.value(i) == "error" || duration.value(i) >= slow_ns {
                            keep_traces.insert(trace.value(i).to_owned());
                        }
                    }
                    Ok(())
                },
            )?;
            let rate = policy.sample_rate;
            let stats = self.spans.rewrite(i64::MIN, cutoff, true, move |b| {
                filter_rows(b, |b, i| {
                    let ts: &Int64Array = col(b, "start_ms")?;
                    let trace: &StringArray = col(b, "trace_id")?;
                    let t = trace.value(i);
                    Ok(ts.value(i) >= cutoff || keep_traces.contains(t) || trace_draw(t) < rate)
                })
            })?;
            dropped += stats.rows_before - stats.rows_after;
            self.drop_orphan_content(cutoff)?;
        }
        Ok(dropped)
    }

    /// Removes the content rows (up to `to_ms`) whose core row is gone.
    fn drop_orphan_content(&self, to_ms: i64) -> Result<(), StorageError> {
        let mut live = std::collections::HashSet::new();
        self.spans
            .scan_range(i64::MIN, to_ms, true, Some(&["key"]), |b| {
                let key: &StringArray = col(b, "key")?;
                live.extend(key.iter().flatten().map(str::to_owned));
                Ok(())
            })?;
        self.content.rewrite(i64::MIN, to_ms, true, move |b| {
            filter_rows(b, |b, i| {
                let key: &StringArray = col(b, "key")?;
                let ts: &Int64Array = col(b, "start_ms")?;
                Ok(ts.value(i) > to_ms || live.contains(key.value(i)))
            })
        })?;
        Ok(())
    }

    /// Recomputes the cost of the spans that started in `[from_ms, to_ms]` with `prices`
    /// (provider-reported costs stay). Seals first, so every span in the range is included.
    /// Returns the spans whose cost changed.
    pub fn recompute_costs(
        &self,
        from_ms: i64,
        to_ms: i64,
        prices: crate::cost::PriceTable,
    ) -> Result<u64, StorageError> {
        self.seal()?;
        let changed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = changed.clone();
        self.spans.rewrite(from_ms, to_ms, false, move |b| {
            let ts: &Int64Array = col(&b, "start_ms")?;
            let source: &StringArray = col(&b, "cost_source")?;
            let old: &Float64Array = col(&b, "cost_usd")?;
            let request: &StringArray = col(&b, "request_model")?;
            let response: &StringArray = col(&b, "response_model")?;
            let t = |name: &str| col::<Int64Array>(&b, name);
            let (input, output, read, write, reasoning, total) = (
                t("input_tokens")?,
                t("output_tokens")?,
                t("cache_read_tokens")?,
                t("cache_write_tokens")?,
                t("reasoning_tokens")?,
                t("total_tokens")?,
            );
            let mut costs = Float64Builder::with_capacity(b.num_rows());
            let mut sources = StringBuilder::with_capacity(b.num_rows(), b.num_rows() * 24);
            for i in 0..b.num_rows() {
                let keep = !(from_ms..=to_ms).contains(&ts.value(i))
                    || (!source.is_null(i) && source.value(i) == "provider");
                if keep {
                    costs.append_option((!old.is_null(i)).then(|| old.value(i)));
                    sources.append_option(opt_str(source, i));
                    continue;
                }
                let tokens = crate::normalize::Tokens {
                    input: opt_i64(input, i),
                    output: opt_i64(output, i),
                    cache_read: opt_i64(read, i),
                    cache_write: opt_i64(write, i),
                    reasoning: opt_i64(reasoning, i),
                    total: opt_i64(total, i),
                };
                let c = prices.cost(
                    None,
                    opt_str(response, i).as_deref(),
                    opt_str(request, i).as_deref(),
                    &tokens,
                );
                let before = (!old.is_null(i)).then(|| old.value(i));
                if c.as_ref().map(|c| c.usd) != before {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                costs.append_option(c.as_ref().map(|c| c.usd));
                sources.append_option(c.map(|c| c.source));
            }
            let schema = b.schema();
            let mut columns = b.columns().to_vec();
            let at = |name: &str| schema.index_of(name).map_err(StorageError::arrow);
            columns[at("cost_usd")?] = Arc::new(costs.finish());
            columns[at("cost_source")?] = Arc::new(sources.finish());
            RecordBatch::try_new(schema.clone(), columns).map_err(StorageError::arrow)
        })?;
        Ok(changed.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// What [`SpanStore::erase_users`] removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ErasedSpans {
    pub spans: u64,
    pub content_rows: u64,
    /// the traces the spans belonged to, and the spans' keys (for the evaluation store)
    pub trace_ids: Vec<String>,
    pub span_ids: Vec<String>,
}

impl SpanStore {
    /// Removes every span whose user id is one of `users` (as stored: raw, or hashed), with its
    /// content, from the segments; seals first, so the WAL holds none of them afterwards.
    pub fn erase_users(&self, users: &[String]) -> Result<ErasedSpans, StorageError> {
        self.seal()?;
        let wanted: std::collections::HashSet<String> = users.iter().cloned().collect();
        let (mut keys, mut traces, mut spans) = (
            std::collections::HashSet::new(),
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        self.spans.scan_range(
            i64::MIN,
            i64::MAX,
            false,
            Some(&["key", "trace_id", "span_id", "user_id"]),
            |b| {
                let key: &StringArray = col(b, "key")?;
                let trace: &StringArray = col(b, "trace_id")?;
                let span: &StringArray = col(b, "span_id")?;
                let user: &StringArray = col(b, "user_id")?;
                for i in 0..b.num_rows() {
                    if !user.is_null(i) && wanted.contains(user.value(i)) {
                        keys.insert(key.value(i).to_owned());
                        traces.insert(trace.value(i).to_owned());
                        spans.insert(span.value(i).to_owned());
                    }
                }
                Ok(())
            },
        )?;
        let mut out = ErasedSpans {
            trace_ids: traces.into_iter().collect(),
            span_ids: spans.into_iter().collect(),
            ..Default::default()
        };
        if keys.is_empty() {
            return Ok(out);
        }
        let w = wanted;
        let s = self.spans.rewrite(i64::MIN, i64::MAX, true, move |b| {
            filter_rows(b, |b, i| {
                let user: &StringArray = col(b, "user_id")?;
                Ok(user.is_null(i) || !w.contains(user.value(i)))
            })
        })?;
        out.spans = s.rows_before - s.rows_after;
        let c = self.content.rewrite(i64::MIN, i64::MAX, true, move |b| {
            filter_rows(b, |b, i| {
                let key: &StringArray = col(b, "key")?;
                Ok(!keys.contains(key.value(i)))
            })
        })?;
        out.content_rows = c.rows_before - c.rows_after;
        Ok(out)
    }
}

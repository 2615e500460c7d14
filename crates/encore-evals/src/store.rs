//! Everything evaluation keeps, in the metadata store (embedded: the SQLite file
//! `<data dir>/evals.sqlite`):
//!
//! - `scores`: every score, linked to the span and trace it scores (or a dataset item), with the
//!   evaluator's name and version, value, label, explanation and where it came from (an online
//!   rule, a backfill, a human labeller, an experiment run, the API). One row per (span,
//!   evaluator, version, source): re-scoring replaces, so backfills are idempotent.
//! - `datasets` and `dataset_items`: immutable versions; every change makes a new version.
//! - `queues` and `queue_items`: annotation queues and the labels given.
//! - `documents`: rules and alert rules by kind and name, as JSON.
//! - `runs` and `run_items`: experiment runs over a dataset version.
//! - `alert_events`: alert history.

use encore_storage::metadata::{Durability, Metadata, Row, Sql, Value};
use encore_storage::params;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Metadata(#[from] encore_storage::metadata::MetadataError),
    #[error("evals store: damaged JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("trace store: {0}")]
    Spans(#[from] encore_storage::StorageError),
}

impl encore_core::Coded for StoreError {
    fn code(&self) -> encore_core::ErrorCode {
        use encore_core::ErrorCode;
        match self {
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::Invalid(_) => ErrorCode::InvalidArgument,
            StoreError::Metadata(e) => e.code(),
            StoreError::Json(_) => ErrorCode::DataLoss,
            StoreError::Spans(e) => e.code(),
        }
    }
}

fn not_found(kind: &'static str, name: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

/// What a score is about: a span (and its trace), with the attributes that slice quality.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub project: String,
    pub trace_id: String,
    pub span_id: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// the span's start
    #[serde(default)]
    pub span_ms: i64,
    /// the span's cost and latency, for cost and latency per evaluated item
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub latency_ms: Option<f64>,
}

/// A stored score: `gen_ai.evaluation.result` with what it is about and where it came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredScore {
    #[serde(flatten)]
    pub target: Target,
    #[serde(flatten)]
    pub score: ScoreValue,
    /// `rule:<name>`, `backfill:<name>`, `human:<labeller>`, `run:<id>` or `api`
    pub source: String,
    pub created_ms: i64,
}

impl StoredScore {
    /// The score as an OpenTelemetry `gen_ai.evaluation.result` event on its span.
    pub fn otel_event(&self) -> serde_json::Value {
        let mut attributes = serde_json::json!({
            "gen_ai.evaluation.name": self.score.evaluator,
            "gen_ai.evaluation.score.value": self.score.value,
            "encore.evaluation.version": self.score.version,
            "encore.evaluation.source": self.source,
        });
        if let Some(l) = &self.score.label {
            attributes["gen_ai.evaluation.score.label"] = l.clone().into();
        }
        if let Some(e) = &self.score.explanation {
            attributes["gen_ai.evaluation.explanation"] = e.clone().into();
        }
        serde_json::json!({
            "name": "gen_ai.evaluation.result",
            "trace_id": self.target.trace_id,
            "span_id": self.target.span_id,
            "time_unix_nano": (self.created_ms as i128 * 1_000_000).to_string(),
            "attributes": attributes,
        })
    }
}

/// The score proper (a [`crate::Score`] that can be read back).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreValue {
    pub evaluator: String,
    pub version: u32,
    pub value: f64,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub explanation: Option<String>,
}

impl From<crate::Score> for ScoreValue {
    fn from(s: crate::Score) -> Self {
        ScoreValue {
            evaluator: s.evaluator,
            version: s.version,
            value: s.value,
            label: s.label,
            explanation: s.explanation,
        }
    }
}

/// Which scores to read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScoreFilter {
    pub project: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub evaluator: Option<String>,
    /// a prefix of the source: `human:`, `rule:hallucination`, ...
    pub source: Option<String>,
    pub service: Option<String>,
    pub model: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// One item of a dataset version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetItem {
    pub input: String,
    #[serde(default)]
    pub expected: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// the span the item was taken from
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetVersion {
    pub name: String,
    pub version: u32,
    pub items: usize,
    pub source: String,
    pub created_ms: i64,
}

/// What a label must look like.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LabelSchema {
    /// one of `values`; the first scores 1, the last 0, the rest evenly between
    Categorical { name: String, values: Vec<String> },
    /// a number in `[min, max]`, scored as its position in the range
    Numeric { name: String, min: f64, max: f64 },
}

impl LabelSchema {
    pub fn name(&self) -> &str {
        match self {
            LabelSchema::Categorical { name, .. } | LabelSchema::Numeric { name, .. } => name,
        }
    }

    /// The score of `label`, or why it does not fit.
    pub fn score(
        &self,
        label: &serde_json::Value,
    ) -> Result<(f64, Option<String>), encore_core::Invalid> {
        match self {
            LabelSchema::Categorical { name, values } => {
                let l = label
                    .as_str()
                    .ok_or_else(|| format!("{name}: expected one of {values:?}, got {label}"))?;
                let i = values
                    .iter()
                    .position(|v| v == l)
                    .ok_or_else(|| format!("{name}: expected one of {values:?}, got {l:?}"))?;
                let value = if values.len() == 1 {
                    1.0
                } else {
                    1.0 - i as f64 / (values.len() - 1) as f64
                };
                Ok((value, Some(l.to_owned())))
            }
            LabelSchema::Numeric { name, min, max } => {
                let x = label
                    .as_f64()
                    .filter(|x| (*min..=*max).contains(x))
                    .ok_or_else(|| {
                        format!("{name}: expected a number in [{min}, {max}], got {label}")
                    })?;
                Ok(((x - min) / (max - min).max(f64::MIN_POSITIVE), None))
            }
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    pub schema: LabelSchema,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub created_ms: i64,
}

/// An item to label: a span's input and output, or a dataset item's.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    pub queue: String,
    pub idx: i64,
    pub target: Target,
    pub input: Option<String>,
    pub output: Option<String>,
    /// `pending`, `labeled` or `skipped`
    pub status: String,
    pub labeller: Option<String>,
    pub label: Option<serde_json::Value>,
}

/// One alert state change.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub rule: String,
    /// the slice's value (`service=checkout`), empty when not sliced
    pub slice: String,
    /// `firing` or `resolved`
    pub state: String,
    pub value: f64,
    pub threshold: f64,
    pub at_ms: i64,
    /// webhook delivery: attempts made and the last error
    pub attempts: u32,
    pub delivered: bool,
    pub error: Option<String>,
}

/// The evals database.
#[derive(Debug, Clone)]
pub struct EvalStore {
    db: Arc<dyn Metadata>,
}

fn now_ms() -> i64 {
    encore_core::time::now_ms()
}

const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS scores (
        project TEXT NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
        service TEXT, model TEXT, user_id TEXT, span_ms INTEGER NOT NULL,
        cost_usd REAL, latency_ms REAL,
        evaluator TEXT NOT NULL, version INTEGER NOT NULL, value REAL NOT NULL,
        label TEXT, explanation TEXT, source TEXT NOT NULL, created_ms INTEGER NOT NULL,
        PRIMARY KEY (trace_id, span_id, evaluator, version, source)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS scores_by_evaluator ON scores (evaluator, span_ms);
    CREATE TABLE IF NOT EXISTS datasets (
        name TEXT NOT NULL, version INTEGER NOT NULL, source TEXT NOT NULL,
        created_ms INTEGER NOT NULL, items INTEGER NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE IF NOT EXISTS dataset_items (
        name TEXT NOT NULL, version INTEGER NOT NULL, idx INTEGER NOT NULL,
        item TEXT NOT NULL, PRIMARY KEY (name, version, idx)
    );
    CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, queue TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS queue_items (
        queue TEXT NOT NULL, idx INTEGER NOT NULL, target TEXT NOT NULL,
        input TEXT, output TEXT, status TEXT NOT NULL, labeller TEXT, label TEXT,
        labeled_ms INTEGER, PRIMARY KEY (queue, idx)
    );
    CREATE TABLE IF NOT EXISTS documents (
        kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
        updated_ms INTEGER NOT NULL, PRIMARY KEY (kind, name)
    );
    CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY, body TEXT NOT NULL, created_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS alert_events (
        id INTEGER PRIMARY KEY, rule TEXT NOT NULL, slice TEXT NOT NULL,
        state TEXT NOT NULL, value REAL NOT NULL, threshold REAL NOT NULL,
        at_ms INTEGER NOT NULL, attempts INTEGER NOT NULL, delivered INTEGER NOT NULL,
        error TEXT
    );"];

fn stored_score(r: &Row) -> Result<StoredScore, StoreError> {
    Ok(StoredScore {
        target: Target {
            project: r.get(0)?,
            trace_id: r.get(1)?,
            span_id: r.get(2)?,
            service: r.get(3)?,
            model: r.get(4)?,
            user: r.get(5)?,
            span_ms: r.get(6)?,
            cost_usd: r.get(7)?,
            latency_ms: r.get(8)?,
        },
        score: ScoreValue {
            evaluator: r.get(9)?,
            version: r.get(10)?,
            value: r.get(11)?,
            label: r.get(12)?,
            explanation: r.get(13)?,
        },
        source: r.get(14)?,
        created_ms: r.get(15)?,
    })
}

fn put_scores_in(tx: &mut dyn Sql, scores: &[StoredScore]) -> Result<(), StoreError> {
    for s in scores {
        if !s.score.value.is_finite() {
            return Err(StoreError::Invalid(format!(
                "score of {} on span {}: value is not a finite number",
                s.score.evaluator, s.target.span_id
            )));
        }
        let t = &s.target;
        tx.execute(
            "INSERT INTO scores (project, trace_id, span_id, service, model, user_id, span_ms, \
             cost_usd, latency_ms, evaluator, version, value, label, explanation, source, \
             created_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16) \
             ON CONFLICT (trace_id, span_id, evaluator, version, source) DO UPDATE SET \
             project = excluded.project, service = excluded.service, model = excluded.model, \
             user_id = excluded.user_id, span_ms = excluded.span_ms, \
             cost_usd = excluded.cost_usd, latency_ms = excluded.latency_ms, \
             value = excluded.value, label = excluded.label, \
             explanation = excluded.explanation, created_ms = excluded.created_ms",
            params![
                &t.project,
                &t.trace_id,
                &t.span_id,
                t.service.as_deref(),
                t.model.as_deref(),
                t.user.as_deref(),
                t.span_ms,
                t.cost_usd,
                t.latency_ms,
                &s.score.evaluator,
                s.score.version,
                s.score.value,
                s.score.label.as_deref(),
                s.score.explanation.as_deref(),
                &s.source,
                s.created_ms,
            ],
        )?;
    }
    Ok(())
}

fn queue_in(q: &mut dyn Sql, name: &str) -> Result<Queue, StoreError> {
    let row = q
        .query_opt("SELECT queue FROM queues WHERE name = ?1", params![name])?
        .ok_or_else(|| not_found("queue", name))?;
    Ok(serde_json::from_str(&row.get::<String>(0)?)?)
}

fn json_rows<T: for<'de> Deserialize<'de>>(rows: &[Row]) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|r| Ok(serde_json::from_str(&r.get::<String>(0)?)?))
        .collect()
}

impl EvalStore {
    /// The evals store of the data directory `root`. A committed score survives a crash of the
    /// process; a power cut may lose the newest (they are recomputed).
    pub fn open(root: &Path) -> Result<EvalStore, StoreError> {
        EvalStore::with_store(encore_storage::metadata::open(
            root,
            "evals",
            Durability::Normal,
        )?)
    }

    /// The evals store kept in `db`.
    pub fn with_store(db: Arc<dyn Metadata>) -> Result<EvalStore, StoreError> {
        db.migrate("evals", MIGRATIONS)?;
        Ok(EvalStore { db })
    }

    // ---- scores ----

    /// Stores `scores` (replacing those with the same span, evaluator, version and source), in
    /// one transaction.
    pub fn put_scores(&mut self, scores: &[StoredScore]) -> Result<usize, StoreError> {
        self.db.write(|tx| put_scores_in(tx, scores))?;
        Ok(scores.len())
    }

    /// Scores matching `f`, newest span first, at most `limit`.
    pub fn scores(&self, f: &ScoreFilter, limit: usize) -> Result<Vec<StoredScore>, StoreError> {
        let mut sql = String::from(
            "SELECT project, trace_id, span_id, service, model, user_id, span_ms, cost_usd, \
             latency_ms, evaluator, version, value, label, explanation, source, created_ms \
             FROM scores WHERE 1=1",
        );
        let mut args: Vec<Value> = Vec::new();
        let mut eq = |col: &str, v: &Option<String>, sql: &mut String| {
            if let Some(v) = v {
                args.push(v.clone().into());
                sql.push_str(&format!(" AND {col} = ?{}", args.len()));
            }
        };
        eq("project", &f.project, &mut sql);
        eq("trace_id", &f.trace_id, &mut sql);
        eq("span_id", &f.span_id, &mut sql);
        eq("evaluator", &f.evaluator, &mut sql);
        eq("service", &f.service, &mut sql);
        eq("model", &f.model, &mut sql);
        if let Some(p) = &f.source {
            args.push(format!("{}%", p.replace('%', "")).into());
            sql.push_str(&format!(" AND source LIKE ?{}", args.len()));
        }
        if let Some(t) = f.from_ms {
            args.push(t.into());
            sql.push_str(&format!(" AND span_ms >= ?{}", args.len()));
        }
        if let Some(t) = f.to_ms {
            args.push(t.into());
            sql.push_str(&format!(" AND span_ms <= ?{}", args.len()));
        }
        sql.push_str(&format!(" ORDER BY span_ms DESC, span_id LIMIT {limit}"));
        self.db
            .read(|q| q.query(&sql, &args)?.iter().map(stored_score).collect())
    }

    // ---- datasets ----

    /// A new version of dataset `name`: the previous version's items followed by `items`
    /// (`append`), or `items` alone.
    pub fn add_dataset_version(
        &mut self,
        name: &str,
        items: &[DatasetItem],
        append: bool,
        source: &str,
    ) -> Result<DatasetVersion, StoreError> {
        if name.is_empty() || name.contains(['/', '@', ' ']) {
            return Err(StoreError::Invalid(format!(
                "dataset name {name:?}: expected a non-empty name without '/', '@' or spaces"
            )));
        }
        let texts = items
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        self.db.write(|tx| {
            let last: Option<u32> = tx
                .query_one(
                    "SELECT MAX(version) FROM datasets WHERE name = ?1",
                    params![name],
                )?
                .get(0)?;
            let version = last.unwrap_or(0) + 1;
            let mut n = 0i64;
            if append && let Some(prev) = last {
                n = tx.execute(
                    "INSERT INTO dataset_items (name, version, idx, item) \
                     SELECT name, ?2, idx, item FROM dataset_items WHERE name = ?1 AND version = ?3",
                    params![name, version, prev],
                )? as i64;
            }
            for text in &texts {
                tx.execute(
                    "INSERT INTO dataset_items (name, version, idx, item) VALUES (?1, ?2, ?3, ?4)",
                    params![name, version, n, text.as_str()],
                )?;
                n += 1;
            }
            let created_ms = now_ms();
            tx.execute(
                "INSERT INTO datasets (name, version, source, created_ms, items) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, version, source, created_ms, n],
            )?;
            Ok(DatasetVersion {
                name: name.into(),
                version,
                items: n as usize,
                source: source.into(),
                created_ms,
            })
        })
    }

    /// Every version of every dataset (or of `name`), newest version first per name.
    pub fn datasets(&self, name: Option<&str>) -> Result<Vec<DatasetVersion>, StoreError> {
        self.db.read(|q| {
            q.query(
                "SELECT name, version, items, source, created_ms FROM datasets \
                 WHERE ?1 IS NULL OR name = ?1 ORDER BY name, version DESC",
                params![name],
            )?
            .iter()
            .map(|r| {
                Ok(DatasetVersion {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    items: r.get(2)?,
                    source: r.get(3)?,
                    created_ms: r.get(4)?,
                })
            })
            .collect()
        })
    }

    /// The items of `name` at `version` (the newest when `None`), with that version.
    pub fn dataset_items(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<(u32, Vec<DatasetItem>), StoreError> {
        self.db.read(|q| {
            let version = match version {
                Some(v) => v,
                None => q
                    .query_one(
                        "SELECT MAX(version) FROM datasets WHERE name = ?1",
                        params![name],
                    )?
                    .get::<Option<u32>>(0)?
                    .ok_or_else(|| not_found("dataset", name))?,
            };
            let exists = q
                .query_opt(
                    "SELECT 1 FROM datasets WHERE name = ?1 AND version = ?2",
                    params![name, version],
                )?
                .is_some();
            if !exists {
                return Err(not_found("dataset", &format!("{name}@{version}")));
            }
            let rows = q.query(
                "SELECT item FROM dataset_items WHERE name = ?1 AND version = ?2 ORDER BY idx",
                params![name, version],
            )?;
            Ok((version, json_rows(&rows)?))
        })
    }

    // ---- annotation queues ----

    pub fn create_queue(&mut self, q: &Queue) -> Result<(), StoreError> {
        let mut q = q.clone();
        q.created_ms = now_ms();
        let body = serde_json::to_string(&q)?;
        let n = self.db.write(|tx| {
            tx.execute(
                "INSERT INTO queues (name, queue) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![&q.name, body],
            )
        })?;
        if n == 0 {
            return Err(StoreError::Invalid(format!(
                "queue {} already exists",
                q.name
            )));
        }
        Ok(())
    }

    pub fn queue(&self, name: &str) -> Result<Queue, StoreError> {
        self.db.read(|q| queue_in(q, name))
    }

    /// Adds items to label to queue `name`; items already queued (same span) are skipped.
    pub fn enqueue(
        &mut self,
        name: &str,
        items: &[(Target, Option<String>, Option<String>)],
    ) -> Result<usize, StoreError> {
        self.db.write(|tx| {
            queue_in(tx, name)?;
            let mut next: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(idx) + 1, 0) FROM queue_items WHERE queue = ?1",
                    params![name],
                )?
                .get(0)?;
            let mut added = 0;
            for (t, input, output) in items {
                let key = serde_json::to_string(t)?;
                let seen = tx
                    .query_opt(
                        "SELECT 1 FROM queue_items WHERE queue = ?1 AND target = ?2",
                        params![name, key.as_str()],
                    )?
                    .is_some();
                if seen {
                    continue;
                }
                tx.execute(
                    "INSERT INTO queue_items (queue, idx, target, input, output, status) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
                    params![name, next, key, input.as_deref(), output.as_deref()],
                )?;
                next += 1;
                added += 1;
            }
            Ok(added)
        })
    }

    fn queue_item(r: &Row) -> Result<QueueItem, StoreError> {
        Ok(QueueItem {
            queue: r.get(0)?,
            idx: r.get(1)?,
            target: serde_json::from_str(&r.get::<String>(2)?)?,
            input: r.get(3)?,
            output: r.get(4)?,
            status: r.get(5)?,
            labeller: r.get(6)?,
            label: r
                .get::<Option<String>>(7)?
                .map(|l| serde_json::from_str(&l))
                .transpose()?,
        })
    }

    /// Items of queue `name` with `status` (every status when `None`), in queue order.
    pub fn queue_items(
        &self,
        name: &str,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QueueItem>, StoreError> {
        self.db.read(|q| {
            queue_in(q, name)?;
            q.query(
                &format!(
                    "SELECT queue, idx, target, input, output, status, labeller, label \
                     FROM queue_items WHERE queue = ?1 AND (?2 IS NULL OR status = ?2) \
                     ORDER BY idx LIMIT {limit}"
                ),
                params![name, status],
            )?
            .iter()
            .map(Self::queue_item)
            .collect()
        })
    }

    /// Labels item `idx` of queue `name` (checked against the queue's schema), and stores the
    /// label as a score of source `human:<labeller>` on the item's span, in one transaction.
    pub fn label(
        &mut self,
        name: &str,
        idx: i64,
        labeller: &str,
        label: &serde_json::Value,
        explanation: Option<String>,
    ) -> Result<StoredScore, StoreError> {
        if labeller.trim().is_empty() {
            return Err(StoreError::Invalid(
                "labeller: expected a non-empty id".into(),
            ));
        }
        self.db.write(|tx| {
            let q = queue_in(tx, name)?;
            let (value, label_text) = q
                .schema
                .score(label)
                .map_err(|e| StoreError::Invalid(e.0))?;
            let target: String = tx
                .query_opt(
                    "SELECT target FROM queue_items WHERE queue = ?1 AND idx = ?2",
                    params![name, idx],
                )?
                .ok_or_else(|| not_found("queue item", &format!("{name}/{idx}")))?
                .get(0)?;
            let score = StoredScore {
                target: serde_json::from_str(&target)?,
                score: ScoreValue {
                    evaluator: q.schema.name().to_owned(),
                    version: 1,
                    value,
                    label: label_text,
                    explanation,
                },
                source: format!("human:{labeller}"),
                created_ms: now_ms(),
            };
            put_scores_in(tx, std::slice::from_ref(&score))?;
            tx.execute(
                "UPDATE queue_items SET status = 'labeled', labeller = ?3, label = ?4, \
                 labeled_ms = ?5 WHERE queue = ?1 AND idx = ?2",
                params![name, idx, labeller, label.to_string(), score.created_ms],
            )?;
            Ok(score)
        })
    }

    // ---- documents: rules and alert rules ----

    pub fn put_document<T: Serialize>(
        &mut self,
        kind: &str,
        name: &str,
        body: &T,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(body)?;
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO documents (kind, name, body, updated_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, \
                 updated_ms = excluded.updated_ms",
                params![kind, name, body, now_ms()],
            )
        })?;
        Ok(())
    }

    pub fn documents<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.db.read(|q| {
            q.query(
                "SELECT body FROM documents WHERE kind = ?1 ORDER BY name",
                params![kind],
            )
        })?;
        json_rows(&rows)
    }

    /// Deletes document `name` of `kind`; whether it existed.
    pub fn delete_document(&mut self, kind: &str, name: &str) -> Result<bool, StoreError> {
        let n = self.db.write(|tx| {
            tx.execute(
                "DELETE FROM documents WHERE kind = ?1 AND name = ?2",
                params![kind, name],
            )
        })?;
        Ok(n > 0)
    }

    // ---- runs ----

    pub fn put_run<T: Serialize>(&mut self, id: &str, run: &T) -> Result<(), StoreError> {
        let body = serde_json::to_string(run)?;
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO runs (id, body, created_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body, \
                 created_ms = excluded.created_ms",
                params![id, body, now_ms()],
            )
        })?;
        Ok(())
    }

    pub fn run<T: for<'de> Deserialize<'de>>(&self, id: &str) -> Result<T, StoreError> {
        let row = self
            .db
            .read(|q| q.query_opt("SELECT body FROM runs WHERE id = ?1", params![id]))?;
        Ok(serde_json::from_str(
            &row.ok_or_else(|| not_found("run", id))?.get::<String>(0)?,
        )?)
    }

    /// Run ids, newest first.
    pub fn run_ids(&self) -> Result<Vec<String>, StoreError> {
        self.db.read(|q| {
            q.query("SELECT id FROM runs ORDER BY created_ms DESC, id", &[])?
                .iter()
                .map(|r| Ok(r.get(0)?))
                .collect()
        })
    }

    // ---- alert history ----

    pub fn add_alert_event(&mut self, e: &AlertEvent) -> Result<(), StoreError> {
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO alert_events (rule, slice, state, value, threshold, at_ms, \
                 attempts, delivered, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    &e.rule,
                    &e.slice,
                    &e.state,
                    e.value,
                    e.threshold,
                    e.at_ms,
                    e.attempts,
                    e.delivered,
                    e.error.as_deref()
                ],
            )
        })?;
        Ok(())
    }

    /// Alert state changes, newest first.
    pub fn alert_events(
        &self,
        rule: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AlertEvent>, StoreError> {
        self.db.read(|q| {
            q.query(
                &format!(
                    "SELECT rule, slice, state, value, threshold, at_ms, attempts, delivered, \
                     error FROM alert_events WHERE ?1 IS NULL OR rule = ?1 \
                     ORDER BY id DESC LIMIT {limit}"
                ),
                params![rule],
            )?
            .iter()
            .map(|r| {
                Ok(AlertEvent {
                    rule: r.get(0)?,
                    slice: r.get(1)?,
                    state: r.get(2)?,
                    value: r.get(3)?,
                    threshold: r.get(4)?,
                    at_ms: r.get(5)?,
                    attempts: r.get(6)?,
                    delivered: r.get(7)?,
                    error: r.get(8)?,
                })
            })
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(span: &str, evaluator: &str, value: f64, source: &str) -> StoredScore {
        StoredScore {
            target: Target {
                project: "p".into(),
                trace_id: format!("t{span}"),
                span_id: span.into(),
                span_ms: span.len() as i64,
                ..Default::default()
            },
            score: ScoreValue {
                evaluator: evaluator.into(),
                version: 1,
                value,
                label: None,
                explanation: None,
            },
            source: source.into(),
            created_ms: 0,
        }
    }

    use encore_storage::metadata::testsuite::on_every_backend;

    #[test]
    fn scores_replace_per_span_evaluator_and_source() {
        on_every_backend("evals", &scores_replace);
    }

    fn scores_replace(root: &Path) {
        let mut s = EvalStore::open(root).unwrap();
        s.put_scores(&[
            score("a", "x", 0.1, "rule:r"),
            score("a", "x", 0.9, "human:ann"),
        ])
        .unwrap();
        s.put_scores(&[score("a", "x", 0.2, "rule:r")]).unwrap();
        let all = s.scores(&ScoreFilter::default(), 10).unwrap();
        assert_eq!(all.len(), 2);
        let human = s
            .scores(
                &ScoreFilter {
                    source: Some("human:".into()),
                    ..Default::default()
                },
                10,
            )
            .unwrap();
        assert_eq!(human[0].score.value, 0.9);
        let rule = s
            .scores(
                &ScoreFilter {
                    trace_id: Some("ta".into()),
                    source: Some("rule:".into()),
                    ..Default::default()
                },
                10,
            )
            .unwrap();
        assert_eq!(rule[0].score.value, 0.2);
        assert!(s.put_scores(&[score("b", "x", f64::NAN, "api")]).is_err());
    }

    #[test]
    fn dataset_versions_are_immutable() {
        on_every_backend("evals", &dataset_versions);
    }

    fn dataset_versions(root: &Path) {
        let mut s = EvalStore::open(root).unwrap();
        let item = |i: &str| DatasetItem {
            input: i.into(),
            ..Default::default()
        };
        let v1 = s
            .add_dataset_version("golden", &[item("a"), item("b")], true, "jsonl")
            .unwrap();
        let v2 = s
            .add_dataset_version("golden", &[item("c")], true, "jsonl")
            .unwrap();
        let v3 = s
            .add_dataset_version("golden", &[item("d")], false, "jsonl")
            .unwrap();
        assert_eq!(
            (v1.version, v1.items, v2.version, v2.items, v3.items),
            (1, 2, 2, 3, 1)
        );
        let (v, items) = s.dataset_items("golden", Some(1)).unwrap();
        assert_eq!((v, items.len()), (1, 2));
        let (v, items) = s.dataset_items("golden", None).unwrap();
        assert_eq!((v, items[0].input.as_str()), (3, "d"));
        assert_eq!(s.dataset_items("golden", Some(2)).unwrap().1[2].input, "c");
        assert!(matches!(
            s.dataset_items("golden", Some(9)),
            Err(StoreError::NotFound { .. })
        ));
        assert!(s.add_dataset_version("bad name", &[], true, "x").is_err());
        assert_eq!(s.datasets(None).unwrap().len(), 3);
    }

    #[test]
    fn labels_are_checked_and_become_human_scores() {
        on_every_backend("evals", &labels);
    }

    fn labels(root: &Path) {
        let mut s = EvalStore::open(root).unwrap();
        s.create_queue(&Queue {
            name: "halluc".into(),
            schema: LabelSchema::Categorical {
                name: "hallucination".into(),
                values: vec!["factual".into(), "hallucinated".into()],
            },
            description: String::new(),
            created_ms: 0,
        })
        .unwrap();
        let t = Target {
            project: "p".into(),
            trace_id: "t1".into(),
            span_id: "s1".into(),
            ..Default::default()
        };
        let items = [(t.clone(), Some("q".to_owned()), Some("a".to_owned()))];
        assert_eq!(s.enqueue("halluc", &items).unwrap(), 1);
        assert_eq!(s.enqueue("halluc", &items).unwrap(), 0, "same span twice");
        let e = s
            .label("halluc", 0, "ann", &serde_json::json!("maybe"), None)
            .unwrap_err();
        assert!(e.to_string().contains("expected one of"), "{e}");
        let sc = s
            .label("halluc", 0, "ann", &serde_json::json!("hallucinated"), None)
            .unwrap();
        assert_eq!((sc.score.value, sc.source.as_str()), (0.0, "human:ann"));
        assert!(
            s.queue_items("halluc", Some("pending"), 10)
                .unwrap()
                .is_empty()
        );
        let done = s.queue_items("halluc", Some("labeled"), 10).unwrap();
        assert_eq!(done[0].label, Some(serde_json::json!("hallucinated")));
        assert_eq!(done[0].target, t);
        assert!(matches!(
            s.label("halluc", 5, "ann", &serde_json::json!("factual"), None),
            Err(StoreError::NotFound { .. })
        ));
    }
}

/// What the evaluation store held about a listener (see [`EvalStore::about`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AboutListener {
    pub scores: Vec<serde_json::Value>,
    pub queue_items: Vec<serde_json::Value>,
    pub dataset_items: Vec<serde_json::Value>,
}

impl EvalStore {
    /// The rows about a listener: scores of their spans (by user id as stored, or by trace),
    /// annotation queue items and dataset items that name one of their traces.
    pub fn about(
        &self,
        users: &[String],
        trace_ids: &[String],
    ) -> Result<AboutListener, StoreError> {
        let mut out = AboutListener::default();
        self.db.read(|q| {
            let mut seen = std::collections::HashSet::new();
            for id in users.iter().chain(trace_ids) {
                for r in q.query(
                    "SELECT trace_id, span_id, evaluator, version, value, label, explanation, \
                     source, created_ms, user_id FROM scores WHERE user_id = ?1 OR trace_id = ?1",
                    params![id],
                )? {
                    let row = serde_json::json!({
                        "trace_id": r.get::<String>(0)?, "span_id": r.get::<String>(1)?,
                        "evaluator": r.get::<String>(2)?, "version": r.get::<i64>(3)?,
                        "value": r.get::<f64>(4)?, "label": r.get::<Option<String>>(5)?,
                        "explanation": r.get::<Option<String>>(6)?, "source": r.get::<String>(7)?,
                        "created_ms": r.get::<i64>(8)?, "user_id": r.get::<Option<String>>(9)?,
                    });
                    if seen.insert(row.to_string()) {
                        out.scores.push(row);
                    }
                }
            }
            for id in users.iter().chain(trace_ids) {
                for r in q.query(
                    "SELECT queue, idx, target, input, output, status, labeller, label \
                     FROM queue_items WHERE instr(target, ?1) > 0",
                    params![id],
                )? {
                    out.queue_items.push(serde_json::json!({
                        "queue": r.get::<String>(0)?, "idx": r.get::<i64>(1)?,
                        "target": r.get::<String>(2)?, "input": r.get::<Option<String>>(3)?,
                        "output": r.get::<Option<String>>(4)?, "status": r.get::<String>(5)?,
                        "labeller": r.get::<Option<String>>(6)?, "label": r.get::<Option<String>>(7)?,
                    }));
                }
                for r in q.query(
                    "SELECT name, version, idx, item FROM dataset_items WHERE instr(item, ?1) > 0",
                    params![id],
                )? {
                    out.dataset_items.push(serde_json::json!({
                        "dataset": r.get::<String>(0)?, "version": r.get::<i64>(1)?,
                        "idx": r.get::<i64>(2)?, "item": r.get::<String>(3)?,
                    }));
                }
            }
            Ok::<_, StoreError>(())
        })?;
        Ok(out)
    }

    /// Deletes what [`EvalStore::about`] finds, overwriting the freed pages (secure delete,
    /// then VACUUM and a WAL checkpoint that empties the WAL file); returns the rows deleted.
    pub fn erase(&mut self, users: &[String], trace_ids: &[String]) -> Result<u64, StoreError> {
        let n = self.db.write(|tx| {
            let mut n = 0u64;
            for id in users.iter().chain(trace_ids) {
                n += tx.execute(
                    "DELETE FROM scores WHERE user_id = ?1 OR trace_id = ?1",
                    params![id],
                )?;
                n += tx.execute(
                    "DELETE FROM queue_items WHERE instr(target, ?1) > 0",
                    params![id],
                )?;
                n += tx.execute(
                    "DELETE FROM dataset_items WHERE instr(item, ?1) > 0",
                    params![id],
                )?;
            }
            Ok::<_, StoreError>(n)
        })?;
        self.db.purge_deleted()?;
        Ok(n)
    }
}

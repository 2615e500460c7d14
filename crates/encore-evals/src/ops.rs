//! The operations `encore evals|datasets|alerts` and the REST API share: each takes the evals
//! store (and the trace store when it reads spans) and returns what both print or answer.

use crate::alerts::{AlertRule, Engine, notify, observe};
use crate::dataset::{Rejected, from_spans, parse_jsonl};
use crate::experiment::{Run, Task};
use crate::online::{CompiledRule, Rule, backfill, samples};
use crate::spec::{Context, EvaluatorSpec};
use crate::store::{AlertEvent, DatasetVersion, EvalStore, ScoreFilter, StoreError, Target};
use encore_telemetry::{Filter, SpanStore};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// One evaluator's name and its score on a sample, or why there is none.
pub type Scored = (String, Result<crate::Score, crate::EvalError>);

/// Every evaluator of `specs` on every sample: per sample, per evaluator, a score or why there
/// is none. An evaluator that does not build fails the whole call.
pub fn evaluate(
    ctx: &Context,
    specs: &[EvaluatorSpec],
    samples: &[crate::Sample<'_>],
) -> Result<Vec<Vec<Scored>>, crate::EvalError> {
    let built: Vec<Box<dyn crate::Evaluator>> = specs
        .iter()
        .map(|e| e.build(ctx))
        .collect::<Result<_, _>>()?;
    Ok(samples
        .iter()
        .map(|s| {
            built
                .iter()
                .map(|e| (e.name().to_owned(), e.evaluate(s)))
                .collect()
        })
        .collect())
}

/// Kinds of stored documents.
pub const RULE: &str = "rule";
pub const ALERT: &str = "alert";

fn lock(store: &Mutex<EvalStore>) -> std::sync::MutexGuard<'_, EvalStore> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Invalid(message.into())
}

/// The stored rules, built; a rule that no longer builds (say, its judge endpoint was removed
/// from config) is left out with the reason.
pub fn compiled_rules(
    store: &Mutex<EvalStore>,
    ctx: &Context,
) -> Result<(Vec<CompiledRule>, Vec<String>), StoreError> {
    let rules: Vec<Rule> = lock(store).documents(RULE)?;
    let mut built = Vec::new();
    let mut errors = Vec::new();
    for r in rules {
        match CompiledRule::new(r, ctx) {
            Ok(c) => built.push(c),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok((built, errors))
}

/// Checks `rule` (its evaluators must build) and stores it, replacing one of the same name.
pub fn put_rule(store: &Mutex<EvalStore>, rule: &Rule, ctx: &Context) -> Result<(), StoreError> {
    CompiledRule::new(rule.clone(), ctx).map_err(invalid)?;
    lock(store).put_document(RULE, &rule.name, rule)
}

/// What a backfill did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backfill {
    pub rule: String,
    pub spans: usize,
    pub picked: usize,
    pub scores: usize,
    pub failures: usize,
}

/// Scores the stored spans in `[from_ms, to_ms]` (at most `limit`, newest first) that rule
/// `name` picks, as online evaluation would have.
pub fn backfill_rule(
    store: &Mutex<EvalStore>,
    spans: &SpanStore,
    name: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    limit: usize,
    ctx: &Context,
) -> Result<Backfill, StoreError> {
    let rules: Vec<Rule> = lock(store).documents(RULE)?;
    let rule = rules
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| StoreError::NotFound {
            kind: "rule",
            name: name.into(),
        })?;
    let filter = Filter {
        project: rule.project.clone(),
        service: rule.service.clone(),
        operation: rule.operation.clone(),
        model: rule.model.clone(),
        from_ms,
        to_ms,
        ..Default::default()
    };
    let found = samples(spans, &filter, limit)?;
    let compiled = CompiledRule::new(rule, ctx).map_err(invalid)?;
    let (picked, scores, failures) = backfill(&compiled, &found, store)?;
    Ok(Backfill {
        rule: name.into(),
        spans: found.len(),
        picked,
        scores,
        failures,
    })
}

/// Where a new dataset version's items come from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSource {
    /// JSON Lines text
    #[serde(default)]
    pub jsonl: Option<String>,
    /// spans matching this filter, with their content (input; output as the expected output)
    #[serde(default)]
    pub traces: Option<TraceQuery>,
    /// add to the previous version's items rather than replace them
    #[serde(default)]
    pub append: bool,
}

/// A span filter and how many spans to take.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub from_ms: Option<i64>,
    #[serde(default)]
    pub to_ms: Option<i64>,
    /// full text in the content
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default = "hundred")]
    pub limit: usize,
}

fn hundred() -> usize {
    100
}

impl TraceQuery {
    pub fn filter(&self) -> Filter {
        Filter {
            project: self.project.clone(),
            service: self.service.clone(),
            operation: self.operation.clone(),
            model: self.model.clone(),
            status: self.status.clone(),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            text: self.text.clone(),
            ..Default::default()
        }
    }
}

/// A new dataset version and the JSONL lines that were not imported.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    #[serde(flatten)]
    pub version: DatasetVersion,
    pub rejected: Vec<Rejected>,
}

/// Makes a new version of dataset `name` from `source` (`origin` names a JSONL file in errors).
pub fn add_dataset(
    store: &Mutex<EvalStore>,
    spans: Option<&SpanStore>,
    name: &str,
    source: &DatasetSource,
    origin: &str,
) -> Result<Imported, StoreError> {
    let (items, rejected, how) = match (&source.jsonl, &source.traces) {
        (Some(text), None) => {
            let (items, rejected) = parse_jsonl(text, origin);
            (items, rejected, format!("jsonl:{origin}"))
        }
        (None, Some(q)) => {
            let spans = spans.ok_or_else(|| invalid("this server keeps no traces"))?;
            let found = samples(spans, &q.filter(), q.limit.max(1))?;
            (from_spans(&found), Vec::new(), "traces".to_owned())
        }
        _ => return Err(invalid("give exactly one source: jsonl or traces")),
    };
    if items.is_empty() {
        let why = rejected
            .first()
            .map_or("no items".to_owned(), |r| r.reason.clone());
        return Err(invalid(format!(
            "dataset {name}: nothing to import ({why})"
        )));
    }
    let version = lock(store).add_dataset_version(name, &items, source.append, &how)?;
    Ok(Imported { version, rejected })
}

/// What to run over a dataset.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub dataset: String,
    #[serde(default)]
    pub version: Option<u32>,
    pub task: Task,
    pub evaluators: Vec<EvaluatorSpec>,
    #[serde(default = "four")]
    pub concurrency: usize,
}

fn four() -> usize {
    4
}

/// Runs `req` and stores the run.
pub fn run_experiment(
    store: &Mutex<EvalStore>,
    req: &RunRequest,
    ctx: &Context,
) -> Result<Run, StoreError> {
    if req.evaluators.is_empty() {
        return Err(invalid("a run needs at least one evaluator"));
    }
    let (version, items) = lock(store).dataset_items(&req.dataset, req.version)?;
    let run = crate::experiment::run(
        &req.dataset,
        version,
        &items,
        &req.task,
        &req.evaluators,
        ctx,
        req.concurrency,
    )
    .map_err(invalid)?;
    lock(store).put_run(&run.id, &run)?;
    Ok(run)
}

/// Items for queue `queue`: spans matching `traces`, or a dataset version's items.
pub fn fill_queue(
    store: &Mutex<EvalStore>,
    spans: Option<&SpanStore>,
    queue: &str,
    traces: Option<&TraceQuery>,
    dataset: Option<(&str, Option<u32>)>,
) -> Result<usize, StoreError> {
    let items: Vec<(Target, Option<String>, Option<String>)> = match (traces, dataset) {
        (Some(q), None) => {
            let spans = spans.ok_or_else(|| invalid("this server keeps no traces"))?;
            samples(spans, &q.filter(), q.limit.max(1))?
                .into_iter()
                .map(|s| (s.target, s.input, s.output))
                .collect()
        }
        (None, Some((name, version))) => {
            let (v, items) = lock(store).dataset_items(name, version)?;
            items
                .into_iter()
                .enumerate()
                .map(|(i, it)| {
                    (
                        Target {
                            project: format!("dataset:{name}@{v}"),
                            trace_id: it.trace_id.unwrap_or_else(|| format!("{name}@{v}")),
                            span_id: it.span_id.unwrap_or_else(|| i.to_string()),
                            ..Default::default()
                        },
                        Some(it.input),
                        it.expected,
                    )
                })
                .collect()
        }
        _ => return Err(invalid("give exactly one source: traces or dataset")),
    };
    lock(store).enqueue(queue, &items)
}

/// Checks `rule` and stores it, replacing one of the same name.
/// Stores `rule` after checking it, its webhook against `destinations` (where webhooks may go).
pub fn put_alert(
    store: &Mutex<EvalStore>,
    rule: &AlertRule,
    destinations: &encore_http::outbound::Allow,
) -> Result<(), StoreError> {
    rule.check().map_err(invalid)?;
    if let Some(w) = &rule.webhook {
        destinations
            .check_url(w)
            .map_err(|e| invalid(format!("alert {}: webhook {e}", rule.name)))?;
    }
    lock(store).put_document(ALERT, &rule.name, rule)
}

pub use crate::alerts::Delivery;

/// Evaluates every alert rule at `now_ms`, records state changes in the history, and delivers
/// notifications; returns the new history events.
pub fn alerts_tick(
    engine: &Mutex<Engine>,
    store: &Mutex<EvalStore>,
    spans: Option<&SpanStore>,
    monitors: crate::alerts::MonitorVerdicts<'_>,
    now_ms: i64,
    delivery: &Delivery,
) -> Result<Vec<AlertEvent>, StoreError> {
    let rules: Vec<AlertRule> = lock(store).documents(ALERT)?;
    let read_scores = |f: &ScoreFilter| lock(store).scores(f, 1_000_000).unwrap_or_default();
    let mut transitions = Vec::new();
    {
        let mut engine = engine.lock().unwrap_or_else(|e| e.into_inner());
        engine.retain(&rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>());
        for r in &rules {
            match observe(r, spans, &read_scores, monitors, now_ms) {
                Ok(obs) => transitions.extend(
                    engine
                        .step(r, &obs, now_ms)
                        .into_iter()
                        .map(|t| (r.clone(), t)),
                ),
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
    let mut events = Vec::new();
    for (rule, t) in transitions {
        let e = notify(&t, &rule, delivery);
        if rule.webhook.is_some() && t.notify && !e.delivered {
            tracing::warn!(
                "alert {} ({}) {}: webhook not delivered after {} attempts: {}",
                e.rule,
                e.slice,
                e.state,
                e.attempts,
                e.error.as_deref().unwrap_or("")
            );
        }
        lock(store).add_alert_event(&e)?;
        events.push(e);
    }
    Ok(events)
}

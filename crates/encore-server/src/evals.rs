//! Evaluation of LLM features over HTTP; `encore evals|datasets|alerts` do the same on a stopped
//! server's data directory. Bodies and answers are JSON.
//!
//! - scores: `GET /v1/evals/scores?trace_id=&span_id=&evaluator=&source=&project=&service=&model=&from_ms=&to_ms=&limit=`,
//!   `POST /v1/evals/scores` (a score or label from outside), `POST /v1/evals/evaluate`
//!   (evaluators on ad-hoc samples), `GET /v1/evals/quality?evaluator=&slice=...` (rates with
//!   Wilson intervals), `GET /v1/evals/calibration?judge=&human=&bins=`;
//! - online rules: `GET|POST /v1/evals/rules`, `DELETE /v1/evals/rules/{name}`,
//!   `POST /v1/evals/rules/{name}/backfill`, `GET /v1/evals/online` (counters);
//! - datasets: `GET|POST /v1/datasets`, `GET /v1/datasets/{name}?version=`;
//! - experiments: `GET|POST /v1/evals/runs`, `GET /v1/evals/runs/{id}`,
//!   `GET /v1/evals/compare?a=&b=`;
//! - annotation: `POST /v1/queues`, `POST /v1/queues/{name}/items` (fill),
//!   `GET /v1/queues/{name}/items?status=`, `POST /v1/queues/{name}/items/{idx}/label`;
//! - alerts: `GET|POST /v1/alerts/rules`, `DELETE /v1/alerts/rules/{name}`, `GET /v1/alerts`
//!   (current states), `GET /v1/alerts/history?rule=&limit=`.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use encore_app::evals::Evals as EvalsAccess;
use encore_core::ErrorCode;
use encore_evals::Sample;
use encore_evals::alerts::AlertRule;
use encore_evals::alerts::SliceState;
use encore_evals::experiment::{Comparison, Run};
use encore_evals::online::Rule;
use encore_evals::ops;
use encore_evals::quality::Slice;
use encore_evals::quality::{JudgeCalibration, Quality};
use encore_evals::spec::EvaluatorSpec;
use encore_evals::store::{AlertEvent, DatasetItem, DatasetVersion, QueueItem};
use encore_evals::store::{EvalStore, Queue, ScoreFilter, ScoreValue, StoredScore, Target};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// `GET /v1/evals/scores`: `scores`, or `events` with `format=otel`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Scores {
    #[serde(skip_serializing_if = "Option::is_none")]
    scores: Option<Vec<StoredScore>>,
    /// each score as a `gen_ai.evaluation.result` event
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<Value>>,
}

/// One evaluator's answer on one sample: a score, or why there is none.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum Outcome {
    Score(encore_evals::Score),
    Error { evaluator: String, error: String },
}

/// `POST /v1/evals/evaluate`: per sample, per evaluator.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Evaluated {
    results: Vec<Vec<Outcome>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QualityList {
    quality: Vec<Quality>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rules {
    rules: Vec<Rule>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StoredRule {
    rule: Rule,
}

/// A deleted rule's name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Deleted {
    deleted: String,
}

/// `GET /v1/evals/online`
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct OnlineCounters {
    rules: usize,
    /// spans picked by a rule
    sampled: u64,
    /// dropped because the queue was full
    dropped: u64,
    scores: u64,
    /// evaluator runs that gave no score
    failures: u64,
    /// picked spans without an output to score
    skipped: u64,
    /// spans waiting in the queue
    pending: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Datasets {
    datasets: Vec<DatasetVersion>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Dataset {
    name: String,
    version: u32,
    items: Vec<DatasetItem>,
}

/// Run ids, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Runs {
    runs: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Compared {
    a: String,
    b: String,
    comparisons: Vec<Comparison>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QueueCreated {
    queue: String,
}

/// Items added (spans already queued are skipped).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Added {
    added: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QueueItems {
    items: Vec<QueueItem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertRules {
    rules: Vec<AlertRule>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StoredAlertRule {
    rule: AlertRule,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertState {
    rule: String,
    slice: String,
    state: SliceState,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertStates {
    alerts: Vec<AlertState>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertEvents {
    events: Vec<AlertEvent>,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/evals/scores", get(scores).post(post_score))
        .route("/v1/evals/evaluate", post(evaluate))
        .route("/v1/evals/quality", get(quality))
        .route("/v1/evals/calibration", get(calibration))
        .route("/v1/evals/rules", get(rules).post(put_rule))
        .route("/v1/evals/rules/{name}", axum::routing::delete(delete_rule))
        .route("/v1/evals/rules/{name}/backfill", post(backfill))
        .route("/v1/evals/online", get(online))
        .route("/v1/datasets", get(datasets).post(add_dataset))
        .route("/v1/datasets/{name}", get(dataset))
        .route("/v1/evals/runs", get(runs).post(run))
        .route("/v1/evals/runs/{id}", get(run_by_id))
        .route("/v1/evals/compare", get(compare))
        .route("/v1/queues", post(create_queue))
        .route("/v1/queues/{name}/items", get(queue_items).post(fill_queue))
        .route("/v1/queues/{name}/items/{idx}/label", post(label))
        .route("/v1/alerts/rules", get(alert_rules).post(put_alert))
        .route(
            "/v1/alerts/rules/{name}",
            axum::routing::delete(delete_alert),
        )
        .route("/v1/alerts", get(alert_states))
        .route("/v1/alerts/history", get(alert_history))
}

fn access(state: &AppState) -> Result<Arc<EvalsAccess>, ApiError> {
    state.evals.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server does not evaluate (no evals store)",
        )
    })
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, e.body_text())
}

fn bad_json(e: JsonRejection) -> ApiError {
    crate::error::json_rejection(e, None)
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, m)
}

/// Runs `f` with the evals access on a blocking thread.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&EvalsAccess) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let a = access(state)?;
    tokio::task::spawn_blocking(move || f(&a))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("evals task failed: {e}")))?
}

fn lock(a: &EvalsAccess) -> std::sync::MutexGuard<'_, EvalStore> {
    a.store.lock().unwrap_or_else(|e| e.into_inner())
}

fn spans(a: &EvalsAccess) -> Option<&encore_telemetry::SpanStore> {
    a.spans()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScoreParams {
    project: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
    evaluator: Option<String>,
    /// a prefix of the source: `human:`, `rule:NAME`, `backfill:`, `api`
    source: Option<String>,
    service: Option<String>,
    model: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    #[param(minimum = 1, maximum = 1000000)]
    limit: Option<usize>,
    /// `otel`: each score as a `gen_ai.evaluation.result` event (scores only)
    format: Option<String>,
    /// `service`, `model` or `user` (quality only)
    #[param(value_type = Option<String>)]
    slice: Option<Slice>,
}

impl ScoreParams {
    fn filter(&self) -> ScoreFilter {
        ScoreFilter {
            project: self.project.clone(),
            trace_id: self.trace_id.clone(),
            span_id: self.span_id.clone(),
            evaluator: self.evaluator.clone(),
            source: self.source.clone(),
            service: self.service.clone(),
            model: self.model.clone(),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }
}

#[utoipa::path(get, path = "/v1/evals/scores", tag = "evals", params(ScoreParams),
    responses((status = 200, description = "the stored scores with their span, trace and source (as `gen_ai.evaluation.result` events with `format=otel`)", body = Scores), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn scores(
    State(state): State<AppState>,
    params: Result<Query<ScoreParams>, QueryRejection>,
) -> Result<Json<Scores>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    let limit = crate::error::bounded("limit", p.limit.unwrap_or(100), 1..=100_000)?;
    let otel = match p.format.as_deref() {
        None | Some("") => false,
        Some("otel") => true,
        Some(f) => {
            return Err(invalid(format!(
                "bad parameter `format`: {f:?}, expected otel"
            )));
        }
    };
    let filter = p.filter();
    let rows = blocking(&state, move |a| Ok(lock(a).scores(&filter, limit)?)).await?;
    if otel {
        let events: Vec<Value> = rows.iter().map(StoredScore::otel_event).collect();
        return Ok(Json(Scores {
            scores: None,
            events: Some(events),
        }));
    }
    Ok(Json(Scores {
        scores: Some(rows),
        events: None,
    }))
}

/// A score from outside (an application's own evaluator, a user's thumbs-up).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ScoreBody {
    #[serde(flatten)]
    target: Target,
    evaluator: String,
    #[serde(default = "one")]
    version: u32,
    value: f64,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    explanation: Option<String>,
    /// `human:<labeller>` for a person's label; `api` when not given
    #[serde(default)]
    source: Option<String>,
}

fn one() -> u32 {
    1
}

#[utoipa::path(post, path = "/v1/evals/scores", tag = "evals",
    request_body(content = ScoreBody, description = "a score of a span from outside (an application's own evaluator, a listener's thumbs-up)"),
    responses((status = 200, description = "the stored score", body = StoredScore), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn post_score(
    State(state): State<AppState>,
    body: Result<Json<ScoreBody>, JsonRejection>,
) -> Result<Json<StoredScore>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    if b.target.trace_id.is_empty() || b.target.span_id.is_empty() || b.evaluator.is_empty() {
        return Err(invalid("trace_id, span_id and evaluator must not be empty"));
    }
    if !(0.0..=1.0).contains(&b.value) {
        return Err(invalid(format!(
            "value {} is outside 0 to 1 (1 is good)",
            b.value
        )));
    }
    let score = StoredScore {
        target: b.target,
        score: ScoreValue {
            evaluator: b.evaluator,
            version: b.version,
            value: b.value,
            label: b.label,
            explanation: b.explanation,
        },
        source: b.source.unwrap_or_else(|| "api".into()),
        created_ms: encore_core::time::now_ms(),
    };
    blocking(&state, move |a| {
        lock(a).put_scores(std::slice::from_ref(&score))?;
        Ok(Json(score))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub(crate) struct EvaluateBody {
    evaluators: Vec<EvaluatorSpec>,
    samples: Vec<SampleBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub(crate) struct SampleBody {
    #[serde(default)]
    input: String,
    output: String,
    #[serde(default)]
    expected: Option<String>,
    #[serde(default)]
    context: Option<String>,
}

#[utoipa::path(post, path = "/v1/evals/evaluate", tag = "evals",
    request_body(content = EvaluateBody, description = "evaluators and up to 1,000 samples"),
    responses((status = 200, description = "per sample, per evaluator: a score or why there is none", body = Evaluated), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn evaluate(
    State(state): State<AppState>,
    body: Result<Json<EvaluateBody>, JsonRejection>,
) -> Result<Json<Evaluated>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    if b.samples.len() > 1000 {
        return Err(invalid("at most 1000 samples per request"));
    }
    blocking(&state, move |a| {
        let samples: Vec<Sample<'_>> = b.samples.iter().map(SampleBody::sample).collect();
        let scored =
            ops::evaluate(&a.ctx, &b.evaluators, &samples).map_err(|e| invalid(e.to_string()))?;
        let results = scored
            .into_iter()
            .map(|per| per.into_iter().map(Outcome::of).collect())
            .collect();
        Ok(Json(Evaluated { results }))
    })
    .await
}

impl SampleBody {
    fn sample(&self) -> Sample<'_> {
        Sample {
            input: &self.input,
            output: &self.output,
            expected: self.expected.as_deref(),
            context: self.context.as_deref(),
        }
    }
}

impl Outcome {
    fn of((evaluator, r): ops::Scored) -> Outcome {
        match r {
            Ok(score) => Outcome::Score(score),
            Err(err) => Outcome::Error {
                evaluator,
                error: err.to_string(),
            },
        }
    }
}

#[utoipa::path(get, path = "/v1/evals/quality", tag = "evals", params(ScoreParams),
    responses((status = 200, description = "`{\"quality\": [...]}`: per evaluator (and slice), n, mean, pass and fail rates with Wilson 95 % intervals, labels, cost and latency per item", body = QualityList), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn quality(
    State(state): State<AppState>,
    params: Result<Query<ScoreParams>, QueryRejection>,
) -> Result<Json<QualityList>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    let limit = crate::error::bounded("limit", p.limit.unwrap_or(1_000_000), 1..=1_000_000)?;
    blocking(&state, move |a| {
        let rows = lock(a).scores(&p.filter(), limit)?;
        Ok(Json(QualityList {
            quality: encore_evals::quality::quality(&rows, p.slice),
        }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct CalibrationParams {
    /// the judge's evaluator name, e.g. `judge_hallucination`
    judge: String,
    /// the human label schema's name, e.g. `hallucination`
    human: String,
    #[param(minimum = 1, maximum = 1000)]
    bins: Option<usize>,
    project: Option<String>,
}

#[utoipa::path(get, path = "/v1/evals/calibration", tag = "evals", params(CalibrationParams),
    responses((status = 200, description = "agreement, Cohen's kappa, precision and recall of the bad outcome, Brier score, ECE and the reliability table", body = JudgeCalibration), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn calibration(
    State(state): State<AppState>,
    params: Result<Query<CalibrationParams>, QueryRejection>,
) -> Result<Json<JudgeCalibration>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    let bins = crate::error::bounded("bins", p.bins.unwrap_or(10), 1..=1_000)?;
    blocking(&state, move |a| {
        let filter = ScoreFilter {
            project: p.project.clone(),
            ..Default::default()
        };
        let rows = lock(a).scores(&filter, 10_000_000)?;
        let c = encore_evals::quality::calibrate(&rows, &p.judge, &p.human, bins);
        Ok(Json(c))
    })
    .await
}

#[utoipa::path(get, path = "/v1/evals/rules", tag = "evals",
    responses((status = 200, description = "the online evaluation rules", body = Rules)))]
pub(crate) async fn rules(State(state): State<AppState>) -> Result<Json<Rules>, ApiError> {
    blocking(&state, |a| {
        let rules: Vec<Rule> = lock(a).documents(ops::RULE)?;
        Ok(Json(Rules { rules }))
    })
    .await
}

#[utoipa::path(post, path = "/v1/evals/rules", tag = "evals",
    request_body(content = Rule, description = "a rule: which spans (project, service, operation, model), what share of them, and the evaluators"),
    responses((status = 200, description = "stored and applied to spans ingested from now on", body = StoredRule), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn put_rule(
    State(state): State<AppState>,
    body: Result<Json<Rule>, JsonRejection>,
) -> Result<Json<StoredRule>, ApiError> {
    let Json(rule) = body.map_err(bad_json)?;
    blocking(&state, move |a| {
        ops::put_rule(&a.store, &rule, &a.ctx)?;
        a.reload_rules()?;
        Ok(Json(StoredRule { rule }))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/evals/rules/{name}", tag = "evals", params(("name" = String, Path)),
    responses((status = 200, description = "deleted", body = Deleted), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    blocking(&state, move |a| {
        if !lock(a).delete_document(ops::RULE, &name)? {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("rule {name} does not exist"),
            ));
        }
        a.reload_rules()?;
        Ok(Json(Deleted { deleted: name }))
    })
    .await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackfillBody {
    #[serde(default)]
    from_ms: Option<i64>,
    #[serde(default)]
    to_ms: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
}

#[utoipa::path(post, path = "/v1/evals/rules/{name}/backfill", tag = "evals", params(("name" = String, Path)),
    request_body(content = BackfillBody, description = "the spans that started in [from_ms, to_ms], at most `limit` (100,000)"),
    responses((status = 200, description = "spans read, picked by the rule's sampling, scores stored, failures", body = ops::Backfill), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn backfill(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<BackfillBody>, JsonRejection>,
) -> Result<Json<ops::Backfill>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    blocking(&state, move |a| {
        let spans = spans(a).ok_or_else(|| invalid("this server keeps no traces"))?;
        let r = ops::backfill_rule(
            &a.store,
            spans,
            &name,
            b.from_ms,
            b.to_ms,
            b.limit.unwrap_or(100_000),
            &a.ctx,
        )?;
        Ok(Json(r))
    })
    .await
}

#[utoipa::path(get, path = "/v1/evals/online", tag = "evals",
    responses((status = 200, description = "online evaluation counters", body = OnlineCounters)))]
pub(crate) async fn online(
    State(state): State<AppState>,
) -> Result<Json<OnlineCounters>, ApiError> {
    let a = access(&state)?;
    let s = &a.online.stats;
    Ok(Json(OnlineCounters {
        rules: a.online.rules().len(),
        sampled: s.sampled.load(Ordering::Relaxed),
        dropped: s.dropped.load(Ordering::Relaxed),
        scores: s.scores.load(Ordering::Relaxed),
        failures: s.failures.load(Ordering::Relaxed),
        skipped: s.skipped.load(Ordering::Relaxed),
        pending: s.pending.load(Ordering::Relaxed),
    }))
}

#[utoipa::path(get, path = "/v1/datasets", tag = "evals",
    responses((status = 200, description = "every version of every dataset", body = Datasets)))]
pub(crate) async fn datasets(State(state): State<AppState>) -> Result<Json<Datasets>, ApiError> {
    blocking(&state, |a| {
        Ok(Json(Datasets {
            datasets: lock(a).datasets(None)?,
        }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatasetBody {
    name: String,
    #[serde(default)]
    jsonl: Option<String>,
    #[serde(default)]
    traces: Option<ops::TraceQuery>,
    #[serde(default)]
    append: bool,
}

#[utoipa::path(post, path = "/v1/datasets", tag = "evals",
    request_body(content = DatasetBody, description = "a new version from JSON lines (`{input, expected?, context?, metadata?}` each) or from stored spans"),
    responses((status = 200, description = "the new version, and the JSONL lines not imported with their reasons", body = ops::Imported), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn add_dataset(
    State(state): State<AppState>,
    body: Result<Json<DatasetBody>, JsonRejection>,
) -> Result<Json<ops::Imported>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    blocking(&state, move |a| {
        let source = ops::DatasetSource {
            jsonl: b.jsonl,
            traces: b.traces,
            append: b.append,
        };
        let r = ops::add_dataset(&a.store, spans(a), &b.name, &source, "body")?;
        Ok(Json(r))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionParams {
    /// the newest when absent
    version: Option<u32>,
}

#[utoipa::path(get, path = "/v1/datasets/{name}", tag = "evals", params(("name" = String, Path), VersionParams),
    responses((status = 200, description = "a version's items", body = Dataset), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn dataset(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<VersionParams>, QueryRejection>,
) -> Result<Json<Dataset>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    blocking(&state, move |a| {
        let (version, items) = lock(a).dataset_items(&name, p.version)?;
        Ok(Json(Dataset {
            name,
            version,
            items,
        }))
    })
    .await
}

#[utoipa::path(get, path = "/v1/evals/runs", tag = "evals",
    responses((status = 200, description = "run ids, newest first", body = Runs)))]
pub(crate) async fn runs(State(state): State<AppState>) -> Result<Json<Runs>, ApiError> {
    blocking(&state, |a| {
        Ok(Json(Runs {
            runs: lock(a).run_ids()?,
        }))
    })
    .await
}

#[utoipa::path(post, path = "/v1/evals/runs", tag = "evals",
    request_body(content = ops::RunRequest, description = "a task over a dataset version, scored by evaluators"),
    responses((status = 200, description = "the run: per-item outputs and scores, and per-evaluator summaries", body = Run), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn run(
    State(state): State<AppState>,
    body: Result<Json<ops::RunRequest>, JsonRejection>,
) -> Result<Json<Run>, ApiError> {
    let Json(req) = body.map_err(bad_json)?;
    blocking(&state, move |a| {
        let r = ops::run_experiment(&a.store, &req, &a.ctx)?;
        Ok(Json(r))
    })
    .await
}

#[utoipa::path(get, path = "/v1/evals/runs/{id}", tag = "evals", params(("id" = String, Path)),
    responses((status = 200, description = "the run", body = Run), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn run_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    blocking(&state, move |a| Ok(Json(lock(a).run::<Run>(&id)?))).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompareParams {
    /// the baseline run
    a: String,
    /// the run compared with it
    b: String,
    /// changed items listed per evaluator
    #[param(minimum = 0, maximum = 10000)]
    items: Option<usize>,
}

#[utoipa::path(get, path = "/v1/evals/compare", tag = "evals", params(CompareParams),
    responses((status = 200, description = "per evaluator: paired items, means, b − a with its 95 % interval and paired t-test, improved / regressed / unchanged, and the changed items", body = Compared), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn compare(
    State(state): State<AppState>,
    params: Result<Query<CompareParams>, QueryRejection>,
) -> Result<Json<Compared>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    let items = crate::error::bounded("items", p.items.unwrap_or(20), 0..=10_000)?;
    blocking(&state, move |a| {
        let store = lock(a);
        let (ra, rb) = (store.run(&p.a)?, store.run(&p.b)?);
        let c = encore_evals::experiment::compare(&ra, &rb, items);
        Ok(Json(Compared {
            a: p.a,
            b: p.b,
            comparisons: c,
        }))
    })
    .await
}

#[utoipa::path(post, path = "/v1/queues", tag = "evals",
    request_body(content = Queue, description = "a queue and the schema its labels must fit"),
    responses((status = 200, description = "created", body = QueueCreated), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn create_queue(
    State(state): State<AppState>,
    body: Result<Json<Queue>, JsonRejection>,
) -> Result<Json<QueueCreated>, ApiError> {
    let Json(q) = body.map_err(bad_json)?;
    blocking(&state, move |a| {
        lock(a).create_queue(&q)?;
        Ok(Json(QueueCreated { queue: q.name }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FillBody {
    #[serde(default)]
    traces: Option<ops::TraceQuery>,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

#[utoipa::path(post, path = "/v1/queues/{name}/items", tag = "evals", params(("name" = String, Path)),
    request_body(content = FillBody, description = "stored spans (`traces`) or a dataset's items"),
    responses((status = 200, description = "items added (spans already queued are skipped)", body = Added), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn fill_queue(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<FillBody>, JsonRejection>,
) -> Result<Json<Added>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    blocking(&state, move |a| {
        let n = ops::fill_queue(
            &a.store,
            spans(a),
            &name,
            b.traces.as_ref(),
            b.dataset.as_deref().map(|d| (d, b.version)),
        )?;
        Ok(Json(Added { added: n }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueParams {
    /// `pending`, `labeled`; every item when absent
    status: Option<String>,
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/queues/{name}/items", tag = "evals", params(("name" = String, Path), QueueParams),
    responses((status = 200, description = "items in queue order", body = QueueItems), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn queue_items(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<QueueParams>, QueryRejection>,
) -> Result<Json<QueueItems>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    let limit = crate::error::bounded("limit", p.limit.unwrap_or(50), 1..=100_000)?;
    blocking(&state, move |a| {
        let items = lock(a).queue_items(&name, p.status.as_deref(), limit)?;
        Ok(Json(QueueItems { items }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LabelBody {
    labeller: String,
    label: Value,
    #[serde(default)]
    explanation: Option<String>,
}

#[utoipa::path(post, path = "/v1/queues/{name}/items/{idx}/label", tag = "evals", params(("name" = String, Path), ("idx" = i64, Path)),
    request_body(content = LabelBody, description = "the label must fit the queue's schema: one of its values, or a number in its range"),
    responses((status = 200, description = "the human score stored on the item's span", body = StoredScore), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn label(
    State(state): State<AppState>,
    Path((name, idx)): Path<(String, i64)>,
    body: Result<Json<LabelBody>, JsonRejection>,
) -> Result<Json<StoredScore>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    blocking(&state, move |a| {
        Ok(Json(lock(a).label(
            &name,
            idx,
            &b.labeller,
            &b.label,
            b.explanation,
        )?))
    })
    .await
}

#[utoipa::path(get, path = "/v1/alerts/rules", tag = "alerts",
    responses((status = 200, description = "the alert rules", body = AlertRules)))]
pub(crate) async fn alert_rules(
    State(state): State<AppState>,
) -> Result<Json<AlertRules>, ApiError> {
    blocking(&state, |a| {
        let rules: Vec<AlertRule> = lock(a).documents(ops::ALERT)?;
        Ok(Json(AlertRules { rules }))
    })
    .await
}

#[utoipa::path(post, path = "/v1/alerts/rules", tag = "alerts",
    request_body(content = AlertRule, description = "a rule over a rolling window of traces or scores, per slice, with an optional webhook"),
    responses((status = 200, description = "stored; evaluated from the next tick", body = StoredAlertRule), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn put_alert(
    State(state): State<AppState>,
    body: Result<Json<AlertRule>, JsonRejection>,
) -> Result<Json<StoredAlertRule>, ApiError> {
    let Json(rule) = body.map_err(bad_json)?;
    blocking(&state, move |a| {
        ops::put_alert(&a.store, &rule, &a.delivery.client.allow)?;
        Ok(Json(StoredAlertRule { rule }))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/alerts/rules/{name}", tag = "alerts", params(("name" = String, Path)),
    responses((status = 200, description = "deleted", body = Deleted), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_alert(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    blocking(&state, move |a| {
        if !lock(a).delete_document(ops::ALERT, &name)? {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("alert {name} does not exist"),
            ));
        }
        Ok(Json(Deleted { deleted: name }))
    })
    .await
}

#[utoipa::path(get, path = "/v1/alerts", tag = "alerts",
    responses((status = 200, description = "the current state of every rule and slice seen", body = AlertStates)))]
pub(crate) async fn alert_states(
    State(state): State<AppState>,
) -> Result<Json<AlertStates>, ApiError> {
    let a = access(&state)?;
    let states = a
        .engine
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .states(None);
    let alerts = states
        .into_iter()
        .map(|(rule, slice, state)| AlertState { rule, slice, state })
        .collect();
    Ok(Json(AlertStates { alerts }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    rule: Option<String>,
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/alerts/history", tag = "alerts", params(HistoryParams),
    responses((status = 200, description = "firings and resolutions, newest first, with webhook delivery", body = AlertEvents), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn alert_history(
    State(state): State<AppState>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<AlertEvents>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    let limit = crate::error::bounded("limit", p.limit.unwrap_or(100), 1..=100_000)?;
    blocking(&state, move |a| {
        let events = lock(a).alert_events(p.rule.as_deref(), limit)?;
        Ok(Json(AlertEvents { events }))
    })
    .await
}

//! The recommendation API over the served model:
//!
//! - `GET /v1/users/{id}/recommendations?n=&surface=home&exclude_seen=true&explicit=true&artist_cap=&diversity=`
//! - `POST /v1/recommendations` `{"user_id"?, "seed_items": [...], "n", "explicit"?, ...}`
//! - `GET /v1/items/{id}/similar?n=`
//! - `POST /v1/radio` `{"seeds": [...], "exclude": [...], "n", "artist_window"?}`
//! - `GET /v1/users/{id}/mixes?max=6&size=20`
//! - `POST /v1/blend` `{"users": ["a", "b"], "n"}`
//! - `GET /readyz`: 200 once a model is loaded, 503 before
//!
//! At most `max_in_flight` requests are computed at once; beyond that the answer is `503` with
//! `Retry-After` at once (no queue). The work runs on blocking threads, never on the async ones.
//! Every list served to a known listener is logged as `impression` interaction events (request
//! id, position, propensity) for attribution, unless the write queue is full.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use encore_core::ErrorCode;
use encore_serving::{Rules, Served, ServingModel, Slate};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The served model and the limits of the recommendation routes.
#[derive(Debug, Clone)]
pub struct ServingAccess {
    pub served: Arc<Served>,
    pub in_flight: Arc<Semaphore>,
    pub max_in_flight: usize,
    /// where impressions of lists served to known listeners go (none: not logged)
    pub impressions: Option<ImpressionWriter>,
}

/// Impressions are written in batches by one background thread: a request only formats its
/// events and hands them over (dropped, and counted, when the bounded queue is full), so the
/// event log sees one parse and one group commit per batch instead of per request.
#[derive(Debug, Clone)]
pub struct ImpressionWriter {
    queue: std::sync::mpsc::SyncSender<(u64, Vec<u8>)>,
}

impl ImpressionWriter {
    /// Batches of up to 5,000 events or 200 ms, whichever comes first.
    pub fn start(
        ingestor: Arc<encore_ingest::Ingestor>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> ImpressionWriter {
        let (queue, rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(4_096);
        std::thread::spawn(move || {
            let (mut body, mut rows) = (Vec::new(), 0u64);
            let mut since = std::time::Instant::now();
            let window = std::time::Duration::from_millis(200);
            loop {
                let open = match rx.recv_timeout(window) {
                    Ok((n, lines)) => {
                        body.extend_from_slice(&lines);
                        rows += n;
                        true
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => true,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => false,
                };
                if rows > 0 && (rows >= 5_000 || since.elapsed() >= window || !open) {
                    let written = ingestor
                        .parse_body(&body, usize::MAX)
                        .and_then(|chunk| ingestor.submit_body(&chunk, false)?.wait());
                    match written {
                        Ok(o) => {
                            metrics.impressions_logged.inc_by(o.accepted);
                        }
                        Err(e) => {
                            tracing::warn!("impressions not logged: {e}");
                            metrics.impressions_dropped.inc_by(rows);
                        }
                    }
                    body.clear();
                    rows = 0;
                }
                if rows == 0 {
                    since = std::time::Instant::now();
                }
                if !open {
                    return;
                }
            }
        });
        ImpressionWriter { queue }
    }
}

impl ServingAccess {
    pub fn new(
        served: Arc<Served>,
        max_in_flight: usize,
        impressions: Option<ImpressionWriter>,
    ) -> ServingAccess {
        ServingAccess {
            served,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            max_in_flight: max_in_flight.max(1),
            impressions,
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/readyz", get(ready))
        .route("/v1/users/{id}/recommendations", get(user_recommendations))
        .route("/v1/recommendations", post(seed_recommendations))
        .route("/v1/items/{id}/similar", get(similar))
        .route("/v1/radio", post(radio))
        .route("/v1/users/{id}/mixes", get(mixes))
        .route("/v1/blend", post(blend))
}

/// `GET /readyz` when ready.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    /// `ready`
    status: &'static str,
    model: String,
    model_version: u32,
    users: usize,
    items: usize,
}

#[utoipa::path(get, path = "/readyz", tag = "serving",
    responses((status = 200, description = "a model is loaded and the stores take writes", body = Ready), (status = 503, description = "no model yet, or writes fail (the message says why)", body = crate::openapi::ErrorBody)))]
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    if let Some(why) = crate::health::storage_problem(&state) {
        let mut e = ApiError::new(ErrorCode::Unavailable, format!("not ready: {why}"));
        e.retry_after = Some(1);
        return Err(e);
    }
    match state.serving.as_ref().and_then(|s| s.served.get()) {
        Some(m) => Ok(Json(Ready {
            status: "ready",
            model: m.name.clone(),
            model_version: m.version,
            users: m.n_users(),
            items: m.n_items(),
        })),
        None => Err(ApiError::new(
            ErrorCode::Unavailable,
            "no model is loaded yet (train one and move its `production` alias)",
        )),
    }
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, e.body_text())
}

fn bad_json(e: JsonRejection) -> ApiError {
    crate::error::json_rejection(e, None)
}

/// Runs `f` on the current model on a blocking thread, within the in-flight limit.
async fn compute<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&ServingModel, &Served) -> Result<T, encore_serving::ServingError> + Send + 'static,
) -> Result<T, ApiError> {
    compute_on(state, None, f).await
}

/// [`compute`] on `model` (an experiment's alias) instead of the default one.
async fn compute_on<T: Send + 'static>(
    state: &AppState,
    model: Option<Arc<ServingModel>>,
    f: impl FnOnce(&ServingModel, &Served) -> Result<T, encore_serving::ServingError> + Send + 'static,
) -> Result<T, ApiError> {
    let Some(access) = state.serving.clone() else {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server does not serve recommendations",
        ));
    };
    let Ok(permit) = access.in_flight.clone().try_acquire_owned() else {
        state.metrics.shed.inc();
        let mut e = ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "over capacity: {} recommendation requests in flight",
                access.max_in_flight
            ),
        );
        e.retry_after = Some(1);
        return Err(e);
    };
    let Some(model) = model.or_else(|| access.served.get()) else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "no model is loaded yet (train one and move its `production` alias)",
        ));
    };
    let served = access.served.clone();
    state
        .metrics
        .candidates_scored
        .inc_by(model.n_items() as u64);
    let slate = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f(&model, &served)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("recommendation task failed: {e}"),
        )
    })??;
    Ok(slate)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesParams {
    /// most items per artist
    artist_cap: Option<usize>,
    /// MMR relevance weight in [0, 1] (1: relevance only)
    diversity: Option<f32>,
    /// false: leave explicit items out
    explicit: Option<bool>,
}

impl RulesParams {
    fn rules(&self) -> Result<Rules, ApiError> {
        let mut r = Rules::default();
        if let Some(c) = self.artist_cap {
            r.artist_cap = c;
        }
        if let Some(d) = self.diversity {
            if !(0.0..=1.0).contains(&d) {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("bad parameter `diversity`: {d} is out of range, expected 0..=1"),
                ));
            }
            r.relevance_weight = d;
        }
        if let Some(e) = self.explicit {
            r.allow_explicit = e;
        }
        Ok(r)
    }
}

fn default_n() -> usize {
    10
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserParams {
    /// items in the list
    #[serde(default = "default_n")]
    #[param(minimum = 1, maximum = 500, default = 10)]
    n: usize,
    /// only `home` today
    #[serde(default)]
    surface: Option<String>,
    /// leave out every track the listener played, streamed or skipped
    #[serde(default = "yes")]
    #[param(default = true)]
    exclude_seen: bool,
    /// most items per artist
    #[param(minimum = 1)]
    artist_cap: Option<usize>,
    /// MMR relevance weight (1: relevance only)
    #[param(minimum = 0.0, maximum = 1.0)]
    diversity: Option<f32>,
    /// false: leave explicit items out
    explicit: Option<bool>,
    /// for the impression events
    platform: Option<String>,
    country: Option<String>,
}

#[utoipa::path(get, path = "/v1/users/{id}/recommendations", tag = "serving", params(("id" = String, Path, description = "listener id"), UserParams),
    responses((status = 200, body = Slate), (status = 400, description = "a bad parameter, named", body = crate::openapi::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::openapi::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::openapi::ErrorBody)))]
pub(crate) async fn user_recommendations(
    State(state): State<AppState>,
    Path(user): Path<String>,
    params: Result<Query<UserParams>, QueryRejection>,
) -> Result<Json<Slate>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    let started = (
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
        std::time::Instant::now(),
    );
    if let Some(s) = p.surface.as_deref().filter(|s| *s != "home") {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("bad parameter `surface`: {s:?} is not a surface, expected home"),
        ));
    }
    let mut rules = RulesParams {
        artist_cap: p.artist_cap,
        diversity: p.diversity,
        explicit: p.explicit,
    }
    .rules()?;
    // running experiments: the listener's variants set the rule parameters they treat
    let context = encore_experiments::assignment::Context {
        country: p.country.as_deref().unwrap_or("ZZ"),
        platform: p.platform.as_deref().unwrap_or("other"),
        tier: "unknown",
        new_user: false,
    };
    let assigned = state
        .experiments
        .as_ref()
        .map(|e| e.current().assign(&user, &context))
        .unwrap_or_default();
    let served = state.serving.as_ref().map(|s| s.served.clone());
    let mut alias: Option<(String, Arc<ServingModel>)> = None;
    let mut arms: Vec<encore_serving::ExperimentArm> = Vec::new();
    for (a, t) in &assigned {
        // a model alias that is not loaded (yet): the listener gets the default list and is
        // not counted as exposed, rather than counted in an arm they did not get
        if let Some(wanted) = t.model_alias.as_deref()
            && wanted != encore_registry::PRODUCTION
        {
            match served.as_ref().and_then(|s| s.get_alias(wanted)) {
                Some(m) => alias = Some((wanted.to_owned(), m)),
                None => {
                    state.metrics.treatments_unavailable.inc();
                    continue;
                }
            }
        }
        if let Some(d) = t.diversity {
            rules.relevance_weight = d.clamp(0.0, 1.0);
        }
        if let Some(c) = t.artist_cap {
            rules.artist_cap = c;
        }
        arms.push(encore_serving::ExperimentArm {
            experiment: a.experiment.clone(),
            variant: a.variant.clone(),
        });
    }
    let (n, exclude_seen) = (p.n, p.exclude_seen);
    let shape = format!(
        "n={n}&exclude_seen={exclude_seen}&artist_cap={}&weight={}&explicit={}&alias={}",
        rules.artist_cap,
        rules.relevance_weight,
        rules.allow_explicit,
        alias.as_ref().map_or("", |(a, _)| a.as_str())
    );
    let model = alias.map(|(_, m)| m);
    // a cached list (same listener, same request, same model version, no plays since)
    let current = model
        .clone()
        .or_else(|| served.as_ref().and_then(|s| s.get()));
    if let (Some(served), Some(model)) = (&served, &current)
        && let Some(mut slate) = served.cache.get(&user, &shape, model.version)
    {
        // a list made without the listener's history applied no treatment: not an exposure
        slate.experiments = if slate.note.is_none() {
            arms
        } else {
            Vec::new()
        };
        log_impressions(&state, &user, &slate, p.platform, p.country);
        trace_own(&state, &user, &slate, started, true);
        return Ok(Json(slate));
    }
    let who = user.clone();
    let features = state.features.clone();
    let slate = compute_on(&state, model, move |m, served| {
        if served.consent.withdrawn(&who) {
            return m.popular(n, &rules, encore_serving::NOTE_WITHDRAWN);
        }
        let recent = served.recent.get(&who);
        // the listener's feature-driven demotions (e.g. artists they skip)
        let mut rules = rules;
        if let Some(f) = &features {
            rules.artist_demotion = f.demotions(&who);
        }
        m.home(&who, &recent, n, exclude_seen, &rules)
    })
    .await?;
    if let Some(served) = &served {
        served.cache.put(&user, &shape, slate.model_version, &slate);
    }
    let mut slate = slate;
    // a list made without the listener's history applied no treatment: not an exposure
    slate.experiments = if slate.note.is_none() {
        arms
    } else {
        Vec::new()
    };
    log_impressions(&state, &user, &slate, p.platform, p.country);
    trace_own(&state, &user, &slate, started, false);
    Ok(Json(slate))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedRequest {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    seed_items: Vec<String>,
    #[serde(default = "default_n")]
    n: usize,
    /// free-form context (surface, device, time of day), echoed to logs
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Value>,
    #[serde(default)]
    artist_cap: Option<usize>,
    #[serde(default)]
    diversity: Option<f32>,
    #[serde(default)]
    explicit: Option<bool>,
}

#[utoipa::path(post, path = "/v1/recommendations", tag = "serving", request_body = SeedRequest,
    responses((status = 200, body = Slate), (status = 400, description = "a bad parameter, named", body = crate::openapi::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::openapi::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::openapi::ErrorBody)))]
pub(crate) async fn seed_recommendations(
    State(state): State<AppState>,
    body: Result<Json<SeedRequest>, JsonRejection>,
) -> Result<Json<Slate>, ApiError> {
    let Json(req) = body.map_err(bad_json)?;
    let rules = RulesParams {
        artist_cap: req.artist_cap,
        diversity: req.diversity,
        explicit: req.explicit,
    }
    .rules()?;
    if let Some(c) = &req.context {
        tracing::debug!(context = %c, "seed recommendations");
    }
    let (user, seeds, n) = (req.user_id.clone(), req.seed_items, req.n);
    let slate = compute(&state, move |m, served| {
        // a listener the model knows, or who has played since, without seeds: their home list
        if let Some(u) = user.as_ref().filter(|u| !served.consent.withdrawn(u)) {
            let recent = served.recent.get(u);
            if seeds.is_empty() && (m.user_index(u).is_some() || !recent.is_empty()) {
                return m.home(u, &recent, n, true, &rules);
            }
        }
        m.from_seeds(&seeds, n, &rules)
    })
    .await?;
    if let Some(u) = &req.user_id {
        log_impressions(&state, u, &slate, None, None);
    }
    Ok(Json(slate))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimilarParams {
    #[serde(default = "default_n")]
    #[param(minimum = 1, maximum = 500, default = 10)]
    n: usize,
    #[param(minimum = 1)]
    artist_cap: Option<usize>,
    explicit: Option<bool>,
}

#[utoipa::path(get, path = "/v1/items/{id}/similar", tag = "serving", params(("id" = String, Path, description = "item id"), SimilarParams),
    responses((status = 200, body = Slate), (status = 400, description = "a bad parameter, named", body = crate::openapi::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::openapi::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::openapi::ErrorBody)))]
pub(crate) async fn similar(
    State(state): State<AppState>,
    Path(item): Path<String>,
    params: Result<Query<SimilarParams>, QueryRejection>,
) -> Result<Json<Slate>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    let rules = RulesParams {
        artist_cap: p.artist_cap,
        diversity: None,
        explicit: p.explicit,
    }
    .rules()?;
    let n = p.n;
    Ok(Json(
        compute(&state, move |m, _| m.similar(&item, n, &rules)).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RadioRequest {
    seeds: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default = "default_n")]
    n: usize,
    /// no artist twice within this many tracks
    #[serde(default = "default_window")]
    artist_window: usize,
    #[serde(default)]
    explicit: Option<bool>,
}

fn default_window() -> usize {
    4
}

#[utoipa::path(post, path = "/v1/radio", tag = "serving", request_body = RadioRequest,
    responses((status = 200, body = Slate), (status = 400, description = "a bad parameter, named", body = crate::openapi::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::openapi::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::openapi::ErrorBody)))]
pub(crate) async fn radio(
    State(state): State<AppState>,
    body: Result<Json<RadioRequest>, JsonRejection>,
) -> Result<Json<Slate>, ApiError> {
    let Json(req) = body.map_err(bad_json)?;
    let rules = Rules {
        artist_cap: 0,
        artist_window: crate::error::bounded(
            "artist_window",
            req.artist_window,
            0..=encore_serving::MAX_N,
        )?,
        allow_explicit: req.explicit.unwrap_or(true),
        ..Rules::default()
    };
    Ok(Json(
        compute(&state, move |m, _| {
            m.radio(&req.seeds, &req.exclude, req.n, &rules)
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct MixParams {
    /// most mixes
    #[serde(default = "default_mixes")]
    #[param(minimum = 1, maximum = 12, default = 6)]
    max: usize,
    /// tracks per mix
    #[serde(default = "default_mix_size")]
    #[param(minimum = 1, maximum = 500, default = 20)]
    size: usize,
}

fn default_mixes() -> usize {
    6
}

fn default_mix_size() -> usize {
    20
}

#[utoipa::path(get, path = "/v1/users/{id}/mixes", tag = "serving", params(("id" = String, Path, description = "listener id"), MixParams),
    responses((status = 200, body = encore_serving::Mixes), (status = 400, description = "a bad parameter, named", body = crate::openapi::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::openapi::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::openapi::ErrorBody)))]
pub(crate) async fn mixes(
    State(state): State<AppState>,
    Path(user): Path<String>,
    params: Result<Query<MixParams>, QueryRejection>,
) -> Result<Json<encore_serving::Mixes>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    Ok(Json(
        compute(&state, move |m, served| {
            if served.consent.withdrawn(&user) {
                return Err(encore_serving::ServingError::NotPersonalized(user));
            }
            let recent = served.recent.get(&user);
            m.mixes(&user, &recent, p.max, p.size)
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlendRequest {
    users: Vec<String>,
    #[serde(default = "default_n")]
    n: usize,
    #[serde(default)]
    explicit: Option<bool>,
}

#[utoipa::path(post, path = "/v1/blend", tag = "serving", request_body = BlendRequest,
    responses((status = 200, body = encore_serving::Blend), (status = 400, description = "a bad parameter, named", body = crate::openapi::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::openapi::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::openapi::ErrorBody)))]
pub(crate) async fn blend(
    State(state): State<AppState>,
    body: Result<Json<BlendRequest>, JsonRejection>,
) -> Result<Json<encore_serving::Blend>, ApiError> {
    let Json(req) = body.map_err(bad_json)?;
    let rules = Rules {
        allow_explicit: req.explicit.unwrap_or(true),
        ..Rules::default()
    };
    Ok(Json(
        compute(&state, move |m, served| {
            if let Some(u) = req.users.iter().find(|u| served.consent.withdrawn(u)) {
                return Err(encore_serving::ServingError::NotPersonalized(u.clone()));
            }
            let members: Vec<(String, Vec<(String, u32)>)> = req
                .users
                .iter()
                .map(|u| (u.clone(), served.recent.get(u)))
                .collect();
            m.blend(&members, req.n, &rules)
        })
        .await?,
    ))
}

/// Hands one `impression` interaction per item of `slate` to the impression writer; a full
/// queue drops them (counted), it never slows the response.
fn log_impressions(
    state: &AppState,
    user: &str,
    slate: &Slate,
    platform: Option<String>,
    country: Option<String>,
) {
    let Some(writer) = state.serving.as_ref().and_then(|s| s.impressions.as_ref()) else {
        return;
    };
    let now = encore_core::time::now_ms();
    let platform = platform.unwrap_or_else(|| "other".into());
    let country = country.unwrap_or_else(|| "ZZ".into());
    let mut lines = Vec::with_capacity(slate.items.len() * 400);
    // exposures: one per variant served; the id is the same every time, so the event log's
    // deduplication keeps the first
    for arm in &slate.experiments {
        let event = serde_json::json!({
            "event_id": encore_ingest::import::content_uuid(&format!("exposure:{}:{}", arm.experiment, user)),
            "schema_version": 1,
            "user_id": user,
            "ts_ms": now,
            "kind": "exposure",
            "request_id": slate.request_id,
            "experiments": [{"id": arm.experiment, "variant": arm.variant}],
            "platform": platform,
            "country": country,
            "tier": "unknown",
        });
        if serde_json::to_writer(&mut lines, &event).is_ok() {
            lines.push(b'\n');
        }
    }
    for it in &slate.items {
        let event = serde_json::json!({
            "event_id": encore_ingest::import::content_uuid(&format!("impression:{}:{}", slate.request_id, it.position)),
            "schema_version": 1,
            "user_id": user,
            "ts_ms": now,
            "kind": "impression",
            "item_id": it.id,
            "item_type": "track",
            "request_id": slate.request_id,
            "position": it.position,
            "propensity": it.propensity,
            "platform": platform,
            "country": country,
            "tier": "unknown",
        });
        if serde_json::to_writer(&mut lines, &event).is_ok() {
            lines.push(b'\n');
        }
    }
    let n = (slate.items.len() + slate.experiments.len()) as u64;
    if writer.queue.try_send((n, lines)).is_err() {
        state.metrics.impressions_dropped.inc_by(n);
    }
}

/// A home request as a span in the trace store, when sampled (`[telemetry] self_trace_rate`).
fn trace_own(
    state: &AppState,
    user: &str,
    slate: &Slate,
    started: (i64, std::time::Instant),
    cached: bool,
) {
    if let Some(t) = &state.telemetry {
        t.own_request(
            &slate.request_id,
            "GET /v1/users/{id}/recommendations",
            user,
            slate,
            started,
            cached,
        );
    }
}

/// Loads `reference` (`NAME@production`, `NAME@3`) from the registry of the data directory
/// `root` for serving, with catalogue facts from `ingestor`.
pub fn load_version(
    root: &std::path::Path,
    reference: &str,
    ingestor: &encore_ingest::Ingestor,
    choice: encore_index::Choice,
) -> Result<ServingModel, String> {
    let registry = encore_registry::Registry::open(root).map_err(|e| e.to_string())?;
    let version = registry.resolve(reference).map_err(|e| e.to_string())?;
    let artifact = encore_models::artifact::Artifact::load(&registry.artifact_path(&version))
        .map_err(|e| e.to_string())?;
    let facts = ingestor
        .catalog()
        .item_info()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(id, i)| {
            (
                id,
                encore_serving::ItemFacts {
                    title: i.title,
                    artist_id: i.artist_id,
                    explicit: i.explicit,
                },
            )
        })
        .collect();
    // a large catalogue's HNSW graph is kept beside the artifacts, keyed by the artifact's
    // checksum, and memory-mapped on the next load instead of rebuilt
    let retrieval = encore_serving::Retrieval {
        choice,
        cache: Some(
            root.join("models")
                .join("indexes")
                .join(format!("{}.usearch", version.record.checksum)),
        ),
    };
    ServingModel::with_retrieval(&version.model, version.version, artifact, &facts, retrieval)
        .map_err(|e| e.to_string())
}

/// Remembers the plays of a playback batch body (streams for fold-in, skips only to leave them
/// out of lists), and what each listener allows
/// (rows that do not parse are skipped: the ingest path reports them). A play without
/// personalization consent, in a private session or excluded from taste is not remembered.
pub fn record_recent(served: &Served, body: &[u8]) {
    #[derive(Deserialize)]
    struct Play {
        user_id: String,
        item_id: String,
        #[serde(default)]
        ms_played: u64,
        #[serde(default)]
        ts_end_ms: i64,
        #[serde(default)]
        private_session: bool,
        #[serde(default)]
        taste_excluded: bool,
        #[serde(default)]
        consent: encore_core::event::Consent,
    }
    for p in crate::events::parsed_rows::<Play>(body) {
        if served
            .consent
            .record(&p.user_id, p.ts_end_ms, p.consent.personalization)
        {
            served.cache.invalidate(&p.user_id);
        }
        let for_taste = p.consent.personalization && !p.private_session && !p.taste_excluded;
        if for_taste {
            let streamed = p.ms_played >= u64::from(encore_core::event::STREAM_THRESHOLD_MS);
            served.recent.record(&p.user_id, &p.item_id, streamed);
            served.cache.invalidate(&p.user_id);
        }
    }
}

/// Reads what every listener in the playback log last allowed into `served.consent` (at
/// start, before requests are served); the number of listeners who withdrew personalization.
pub fn load_consent(
    served: &Served,
    ingestor: &encore_ingest::Ingestor,
) -> Result<usize, encore_storage::StorageError> {
    let withdrawn = encore_ingest::matrix::withdrawn_personalization(ingestor)?;
    for (user, ts) in &withdrawn {
        served.consent.record(user, *ts, false);
    }
    Ok(withdrawn.len())
}

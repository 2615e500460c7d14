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
//! What a list is made of (experiments, treatments, features, impressions) is decided by
//! `encore_app::serving`; the handlers here parse, call it, and render.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use encore_app::AppError;
use encore_app::serving::{HomeRequest, Serving};
use encore_core::ErrorCode;
use encore_serving::{Rules, Slate};
use serde::Deserialize;
use std::sync::Arc;

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
    responses((status = 200, description = "a model is loaded and the stores take writes", body = Ready), (status = 503, description = "no model yet, or writes fail (the message says why)", body = crate::error::ErrorBody)))]
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

fn serving(state: &AppState) -> Result<Arc<Serving>, ApiError> {
    state.serving.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server does not serve recommendations",
        )
    })
}

/// Runs `f` on a blocking thread, within the in-flight limit.
async fn compute<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Serving) -> Result<T, AppError> + Send + 'static,
) -> Result<T, ApiError> {
    let serving = serving(state)?;
    let permit = serving.admit()?;
    crate::error::blocking("recommendation", move || {
        let _permit = permit;
        f(&serving)
    })
    .await
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
    responses((status = 200, body = Slate), (status = 400, description = "a bad parameter, named", body = crate::error::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::error::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::error::ErrorBody)))]
pub(crate) async fn user_recommendations(
    State(state): State<AppState>,
    Path(user): Path<String>,
    params: Result<Query<UserParams>, QueryRejection>,
) -> Result<Json<Slate>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    if let Some(s) = p.surface.as_deref().filter(|s| *s != "home") {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("bad parameter `surface`: {s:?} is not a surface, expected home"),
        ));
    }
    let rules = RulesParams {
        artist_cap: p.artist_cap,
        diversity: p.diversity,
        explicit: p.explicit,
    }
    .rules()?;
    let home = serving(&state)?.resolve_home(HomeRequest {
        user,
        n: p.n,
        exclude_seen: p.exclude_seen,
        rules,
        platform: p.platform,
        country: p.country,
    });
    if let Some(slate) = serving(&state)?.cached_home(&home) {
        return Ok(Json(slate));
    }
    Ok(Json(compute(&state, move |s| s.compute_home(home)).await?))
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
    responses((status = 200, body = Slate), (status = 400, description = "a bad parameter, named", body = crate::error::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::error::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::error::ErrorBody)))]
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
    let (user, seeds, n) = (req.user_id, req.seed_items, req.n);
    let slate = compute(&state, move |s| {
        s.seeded(user.as_deref(), &seeds, n, &rules)
    });
    Ok(Json(slate.await?))
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
    responses((status = 200, body = Slate), (status = 400, description = "a bad parameter, named", body = crate::error::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::error::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::error::ErrorBody)))]
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
        compute(&state, move |s| s.similar(&item, n, &rules)).await?,
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
    responses((status = 200, body = Slate), (status = 400, description = "a bad parameter, named", body = crate::error::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::error::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::error::ErrorBody)))]
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
        compute(&state, move |s| {
            s.radio(&req.seeds, &req.exclude, req.n, &rules)
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
    responses((status = 200, body = encore_serving::Mixes), (status = 400, description = "a bad parameter, named", body = crate::error::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::error::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::error::ErrorBody)))]
pub(crate) async fn mixes(
    State(state): State<AppState>,
    Path(user): Path<String>,
    params: Result<Query<MixParams>, QueryRejection>,
) -> Result<Json<encore_serving::Mixes>, ApiError> {
    let Query(p) = params.map_err(bad_query)?;
    Ok(Json(
        compute(&state, move |s| s.mixes(&user, p.max, p.size)).await?,
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
    responses((status = 200, body = encore_serving::Blend), (status = 400, description = "a bad parameter, named", body = crate::error::ErrorBody), (status = 404, description = "unknown listener or item", body = crate::error::ErrorBody), (status = 503, description = "over the in-flight limit, or no model loaded (Retry-After)", body = crate::error::ErrorBody)))]
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
        compute(&state, move |s| s.blend(&req.users, req.n, &rules)).await?,
    ))
}

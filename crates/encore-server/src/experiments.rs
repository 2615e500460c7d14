//! - `GET /v1/assignments?user_id=&country=&platform=&tier=`: the running experiments a listener
//!   is in (the plan is kept fresh by `encore_app::experiments`: a request costs a few hashes);
//! - `GET /v1/experiments/{id}/results?pre_days=&alpha=`: the analysis of an experiment.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use encore_app::experiments::ExperimentReport;
use encore_core::ErrorCode;
use encore_experiments::assignment::{Assignment, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultsParams {
    /// days before each listener's first exposure that make the CUPED covariates
    #[serde(default = "default_pre_days")]
    #[param(minimum = 0, maximum = 365, default = 14)]
    pre_days: u32,
    /// significance level, strictly between 0 and 0.5
    #[serde(default = "default_alpha")]
    #[param(exclusive_minimum = 0.0, exclusive_maximum = 0.5, default = 0.05)]
    alpha: f64,
}

fn default_pre_days() -> u32 {
    14
}

fn default_alpha() -> f64 {
    0.05
}

#[utoipa::path(get, path = "/v1/experiments/{id}/results", tag = "experiments",
    params(("id" = String, Path), ResultsParams),
    responses((status = 200, description = "SRM, per-metric CUPED and unadjusted results, the decision", body = ExperimentReport),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 412, body = crate::error::ErrorBody)))]
pub(crate) async fn results(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    params: Result<Query<ResultsParams>, QueryRejection>,
) -> Result<Json<ExperimentReport>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    crate::error::bounded("pre_days", p.pre_days, 0..=365)?;
    if !(p.alpha > 0.0 && p.alpha < 0.5) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "bad parameter `alpha`: {} is out of range, expected 0 < alpha < 0.5",
                p.alpha
            ),
        ));
    }
    let Some(access) = state.experiments.clone() else {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server runs no experiments",
        ));
    };
    let ingestor = state.ingestor.clone();
    let report = move || access.report(&ingestor, &id, p.pre_days, p.alpha);
    Ok(Json(crate::error::blocking("report", report).await?))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/assignments", get(assignments))
        .route("/v1/experiments/{id}/results", get(results))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignmentParams {
    user_id: String,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    tier: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AssignmentsResponse {
    user_id: String,
    holdout: bool,
    assignments: Vec<Assignment>,
}

#[utoipa::path(get, path = "/v1/assignments", tag = "experiments", params(AssignmentParams),
    responses((status = 200, body = AssignmentsResponse), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn assignments(
    State(state): State<AppState>,
    params: Result<Query<AssignmentParams>, QueryRejection>,
) -> Result<Json<AssignmentsResponse>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let Some(access) = state.experiments.as_ref() else {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server runs no experiments",
        ));
    };
    let running = access.current();
    let plan = &running.plan;
    let context = Context {
        country: p.country.as_deref().unwrap_or("ZZ"),
        platform: p.platform.as_deref().unwrap_or("other"),
        tier: p.tier.as_deref().unwrap_or("unknown"),
        new_user: false,
    };
    Ok(Json(AssignmentsResponse {
        holdout: plan.held_out(&p.user_id),
        assignments: plan.assign(&p.user_id, &context),
        user_id: p.user_id,
    }))
}

//! Monitors of the listening data over HTTP (see `encore_app::monitors`):
//!
//! - `GET /v1/monitors`: every monitor (the defaults until any is applied) with its latest
//!   window's verdicts and the slices firing there;
//! - `POST /v1/monitors` `{"monitors": [{"name": ..., "kind": "drift", ...}]}`: creates or
//!   replaces monitors (each checked; none stored when one is wrong);
//! - `DELETE /v1/monitors/{name}`;
//! - `GET /v1/monitors/{name}/results?from_ms=&to_ms=&fired=&slice=&limit=`: verdicts, newest
//!   window first.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use encore_app::monitors::{Monitor, MonitorResult, Monitoring, ResultFilter, spec};
use encore_core::ErrorCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/monitors", get(list_monitors).post(apply_monitors))
        .route("/v1/monitors/{name}", delete(delete_monitor))
        .route("/v1/monitors/{name}/results", get(monitor_results))
}

fn access(state: &AppState) -> Result<Arc<Monitoring>, ApiError> {
    state.monitors.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server keeps no monitors (its metadata store could not be opened: see its log)",
        )
    })
}

async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Monitoring) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let m = access(state)?;
    tokio::task::spawn_blocking(move || f(&m))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("monitors task failed: {e}")))?
}

/// A monitor and what it found in its latest judged window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MonitorState {
    #[serde(flatten)]
    monitor: Monitor,
    /// the latest judged window's start (UTC epoch ms), if any
    latest_window_ms: Option<i64>,
    /// that window's verdicts that fired
    firing: Vec<MonitorResult>,
    /// that window's verdicts
    latest: Vec<MonitorResult>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Monitors {
    monitors: Vec<MonitorState>,
    /// true: nothing applied yet, these are the defaults
    defaults: bool,
    /// the hours the profiles cover (UTC epoch ms): plays from, and up to
    profiled_from_ms: Option<i64>,
    profiled_through_ms: Option<i64>,
}

#[utoipa::path(get, path = "/v1/monitors", tag = "monitors",
    responses((status = 200, description = "every monitor with its latest window's verdicts", body = Monitors)))]
pub(crate) async fn list_monitors(
    State(state): State<AppState>,
) -> Result<Json<Monitors>, ApiError> {
    blocking(&state, |m| {
        let stored = m.store().list()?;
        let defaults = stored.is_empty();
        let monitors = if defaults { spec::defaults() } else { stored };
        let latest = m.latest();
        let monitors = monitors
            .into_iter()
            .map(|monitor| {
                let mine: Vec<MonitorResult> = latest
                    .iter()
                    .filter(|r| r.monitor == monitor.name)
                    .cloned()
                    .collect();
                MonitorState {
                    latest_window_ms: mine.first().map(|r| r.window_start_ms),
                    firing: mine.iter().filter(|r| r.fired).cloned().collect(),
                    latest: mine,
                    monitor,
                }
            })
            .collect();
        let span = m.store().span()?;
        Ok(Json(Monitors {
            monitors,
            defaults,
            profiled_from_ms: span.map(|s| s.0),
            profiled_through_ms: span.map(|s| s.1 + encore_app::monitors::profiling::HOUR_MS),
        }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyBody {
    monitors: Vec<Monitor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Applied {
    applied: Vec<String>,
}

#[utoipa::path(post, path = "/v1/monitors", tag = "monitors",
    request_body(content = ApplyBody, description = "monitors to create or replace (a changed one judges every window again)"),
    responses((status = 200, description = "stored; judged from the next run", body = Applied), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn apply_monitors(
    State(state): State<AppState>,
    body: Result<Json<ApplyBody>, JsonRejection>,
) -> Result<Json<Applied>, ApiError> {
    let Json(body) = body.map_err(|e| crate::error::json_rejection(e, None))?;
    if body.monitors.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "monitors: expected at least one monitor",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for m in &body.monitors {
        if !seen.insert(m.name.clone()) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("monitor {} is given twice", m.name),
            ));
        }
    }
    blocking(&state, move |m| {
        m.store().apply(&body.monitors)?;
        m.refresh()?;
        Ok(Json(Applied {
            applied: body.monitors.into_iter().map(|m| m.name).collect(),
        }))
    })
    .await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Deleted {
    deleted: String,
}

#[utoipa::path(delete, path = "/v1/monitors/{name}", tag = "monitors", params(("name" = String, Path)),
    responses((status = 200, description = "deleted with its verdicts", body = Deleted), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_monitor(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    blocking(&state, move |m| {
        if !m.store().delete(&name)? {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("monitor {name} does not exist"),
            ));
        }
        m.refresh()?;
        Ok(Json(Deleted { deleted: name }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultParams {
    /// windows starting at or after (UTC epoch ms)
    from_ms: Option<i64>,
    /// windows starting before
    to_ms: Option<i64>,
    /// only verdicts that fired
    fired: Option<bool>,
    /// `all`, `platform=ios`, `country=SE`
    slice: Option<String>,
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Results {
    monitor: String,
    results: Vec<MonitorResult>,
}

#[utoipa::path(get, path = "/v1/monitors/{name}/results", tag = "monitors",
    params(("name" = String, Path), ResultParams),
    responses((status = 200, description = "verdicts per window, slice and attribute, newest window first", body = Results), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn monitor_results(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<ResultParams>, QueryRejection>,
) -> Result<Json<Results>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let limit = crate::error::bounded("limit", p.limit.unwrap_or(1_000), 1..=100_000)?;
    blocking(&state, move |m| {
        let known = m.store().list()?;
        let known = if known.is_empty() {
            spec::defaults()
        } else {
            known
        };
        if !known.iter().any(|x| x.name == name) {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("monitor {name} does not exist"),
            ));
        }
        let results = m.store().results(
            &name,
            &ResultFilter {
                from_ms: p.from_ms,
                to_ms: p.to_ms,
                fired_only: p.fired.unwrap_or(false),
                slice: p.slice,
                limit,
            },
        )?;
        Ok(Json(Results {
            monitor: name,
            results,
        }))
    })
    .await
}

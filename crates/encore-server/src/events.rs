//! `POST /v1/events` and `GET /v1/events/stats`.
//!
//! A body is a JSON array of events or one event per line (NDJSON). Valid rows are stored and
//! acknowledged only once durable; bad rows come back with their reasons (`200` with `rejects`),
//! the rest of the batch is kept. `400`: the body is not JSON at all. `413`: the body or the
//! batch is over the limit. `503` + `Retry-After`: the write queue is full.

use crate::AppState;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use encore_core::ErrorCode;
use encore_ingest::{BatchOutcome, IngestError, Reject};
use serde::{Deserialize, Serialize};

/// The rows of an accepted `/v1/events` body (a JSON array or JSON lines) that parse as `T`; the
/// rest are skipped (the ingest path has reported them).
pub(crate) fn parsed_rows<T: serde::de::DeserializeOwned>(body: &[u8]) -> Vec<T> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<serde_json::Value>>(trimmed)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    } else {
        trimmed
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/events/stats", get(stats))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PostParams {
    /// reject the whole batch when any row is bad
    #[serde(default)]
    strict: bool,
}

/// What became of a batch: the good rows are kept, each bad one named with its reasons.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PostEventsResponse {
    /// `playback` or `interaction`
    table: &'static str,
    accepted: u64,
    duplicates: u64,
    unknown_items: u64,
    rejected: usize,
    rejects: Vec<Reject>,
}

impl From<BatchOutcome> for PostEventsResponse {
    fn from(o: BatchOutcome) -> Self {
        PostEventsResponse {
            table: o.table.name(),
            accepted: o.accepted,
            duplicates: o.duplicates,
            unknown_items: o.unknown_items,
            rejected: o.rejects.len(),
            rejects: o.rejects,
        }
    }
}

#[utoipa::path(post, path = "/v1/events", tag = "events", params(PostParams), request_body(description = "a JSON array of events (playback events, or interaction events with `?table=interaction`), or one JSON event per line (`application/x-ndjson`)",
        content((Vec<encore_core::event::PlaybackEvent> = "application/json"), (String = "application/x-ndjson"))),
    responses((status = 200, description = "accepted, duplicate and rejected counts, a reason per bad row", body = PostEventsResponse), (status = 400, body = crate::openapi::ErrorBody), (status = 413, body = crate::openapi::ErrorBody), (status = 503, description = "write queue full (Retry-After)", body = crate::openapi::ErrorBody)))]
pub(crate) async fn post_events(
    State(state): State<AppState>,
    Query(params): Query<PostParams>,
    body: Body,
) -> Result<Json<PostEventsResponse>, ApiError> {
    // bounded work in flight: memory is at most max_in_flight bodies
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return Err(IngestError::Busy.into());
    };
    let limit = state.limits.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("request body is over the limit of {limit} bytes"),
        )
    })?;
    let ingestor = state.ingestor.clone();
    let max_rows = state.limits.max_batch_rows;
    let served = state.serving.as_ref().map(|s| s.served.clone());
    let features = state.features.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let chunk = ingestor.parse_body(&bytes, max_rows)?;
        let outcome = ingestor.submit_body(&chunk, params.strict)?.wait()?;
        // plays since training feed fold-in for the served model
        if let Some(served) = served
            && outcome.table == encore_ingest::Table::Playback
            && outcome.accepted > 0
        {
            crate::recs::record_recent(&served, &bytes);
        }
        // and windowed features stay fresh
        if let Some(f) = features
            && outcome.table == encore_ingest::Table::Playback
            && outcome.accepted > 0
        {
            f.record(&bytes);
        }
        Ok::<_, IngestError>(outcome)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("ingest task failed: {e}")))??;
    if params.strict && !outcome.rejects.is_empty() {
        let details = serde_json::to_value(&outcome.rejects).unwrap_or_default();
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "strict: {} bad row(s), nothing of the batch was stored",
                outcome.rejects.len()
            ),
        )
        .with_details(details));
    }
    Ok(Json(outcome.into()))
}

#[utoipa::path(get, path = "/v1/events/stats", operation_id = "event_stats", tag = "events", responses((status = 200, description = "per-day counts, listeners, items, rejects by rule, storage", body = encore_ingest::stats::EventStats), (status = 503, body = crate::openapi::ErrorBody)))]
pub(crate) async fn stats(
    State(state): State<AppState>,
) -> Result<Json<encore_ingest::stats::EventStats>, ApiError> {
    let ingestor = state.ingestor.clone();
    let s = tokio::task::spawn_blocking(move || encore_ingest::stats::event_stats(&ingestor))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("stats task failed: {e}")))??;
    Ok(Json(s))
}

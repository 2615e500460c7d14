//! `POST /v1/events` and `GET /v1/events/stats`.
//!
//! A body is a JSON array of events or one event per line (NDJSON). Valid rows are stored and
//! acknowledged only once durable; bad rows come back with their reasons (`200` with `rejects`),
//! the rest of the batch is kept. `400`: the body is not JSON at all. `413`: the body or the
//! batch is over the limit. `503` + `Retry-After`: the write queue is full.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use encore_core::ErrorCode;
use encore_ingest::{BatchOutcome, IngestError, Reject};
use serde::{Deserialize, Serialize};

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
    responses((status = 200, description = "accepted, duplicate and rejected counts, a reason per bad row", body = PostEventsResponse), (status = 400, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 503, description = "write queue full (Retry-After)", body = crate::error::ErrorBody)))]
pub(crate) async fn post_events(
    State(state): State<AppState>,
    Query(params): Query<PostParams>,
    body: Body,
) -> Result<Json<PostEventsResponse>, ApiError> {
    // bounded work in flight: memory is at most max_in_flight bodies
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return Err(IngestError::Busy.into());
    };
    let bytes = crate::error::body_bytes(body, state.limits.max_body_bytes).await?;
    let (pipeline, max_rows) = (state.pipeline.clone(), state.limits.max_batch_rows);
    let outcome = crate::error::blocking("ingest", move || {
        pipeline.ingest_body(&bytes, max_rows, params.strict)
    })
    .await?;
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

#[utoipa::path(get, path = "/v1/events/stats", operation_id = "event_stats", tag = "events", responses((status = 200, description = "per-day counts, listeners, items, rejects by rule, storage", body = encore_ingest::stats::EventStats), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn stats(
    State(state): State<AppState>,
) -> Result<Json<encore_ingest::stats::EventStats>, ApiError> {
    let ingestor = state.ingestor.clone();
    let s = crate::error::blocking("stats", move || {
        encore_ingest::stats::event_stats(&ingestor)
    });
    Ok(Json(s.await?))
}

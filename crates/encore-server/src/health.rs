//! `GET /healthz`: liveness. The process answers, and says whether its stores take writes; it
//! stays 200 while they do not, since a restart would not free a disk (readiness is `/readyz`,
//! which turns 503 then).

use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

/// Why writes to the event log and to the span store fail right now, if they do.
pub(crate) fn storage_health(state: &AppState) -> (Option<String>, Option<String>) {
    (
        state.ingestor.health(),
        state.telemetry.as_ref().and_then(|t| t.store.health()),
    )
}

/// The reasons writes fail, joined, if any do.
pub(crate) fn storage_problem(state: &AppState) -> Option<String> {
    match storage_health(state) {
        (None, None) => None,
        (Some(e), None) | (None, Some(e)) => Some(e),
        (Some(e), Some(t)) => Some(format!("{e}; {t}")),
    }
}

/// `GET /healthz`
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok`: the process is up
    status: &'static str,
    version: &'static str,
    storage: Storage,
}

/// Whether writes work: `"ok"`, or `{"writes_failing": why}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum Storage {
    Ok(&'static str),
    Failing { writes_failing: String },
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is up; `storage` says whether writes work", body = Health)))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let storage = match storage_problem(&state) {
        None => Storage::Ok("ok"),
        Some(why) => Storage::Failing {
            writes_failing: why,
        },
    };
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        storage,
    })
}

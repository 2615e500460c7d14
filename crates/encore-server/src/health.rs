//! `GET /healthz`

use crate::AppState;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is up", body = Object)))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

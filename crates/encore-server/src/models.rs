//! The model registry over HTTP:
//! `GET /v1/models`, `GET /v1/models/{name}/versions`, `GET /v1/models/{name}/history`, and
//! `POST /v1/models/{name}/aliases/{alias}` (`{"version": 3, "reason": "...", "force": false}`),
//! which moves `production` only through the gate; the move's actor is the caller's key name. A refused promotion is
//! `412` with every failed check in the message. Each request opens its own SQLite connection on
//! a blocking thread: the registry serializes writers itself.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use encore_core::ErrorCode;
use encore_registry::{AliasMove, ModelSummary, Promotion, Registry, Version};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list))
        .route("/v1/models/{name}/versions", get(versions))
        .route("/v1/models/{name}/history", get(history))
        .route("/v1/models/{name}/aliases/{alias}", post(move_alias))
}

/// Runs `f` on a registry connection off the async threads.
async fn with_registry<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Registry) -> Result<T, encore_registry::RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    let Some(root) = state.registry.as_ref().map(|r| r.root.clone()) else {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server has no model registry",
        ));
    };
    tokio::task::spawn_blocking(move || {
        let mut reg = Registry::open(&root)?;
        f(&mut reg)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("registry task failed: {e}")))?
    .map_err(ApiError::from)
}

#[utoipa::path(get, path = "/v1/models", operation_id = "list_models", tag = "registry", responses((status = 200, description = "registered models with version counts and aliases", body = Vec<ModelSummary>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<ModelSummary>>, ApiError> {
    Ok(Json(with_registry(&state, |r| r.list()).await?))
}

#[utoipa::path(get, path = "/v1/models/{name}/versions", tag = "registry", params(("name" = String, Path)), responses((status = 200, description = "every version with lineage, config and metrics", body = Vec<Version>), (status = 404, description = "unknown model", body = crate::error::ErrorBody)))]
pub(crate) async fn versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Version>>, ApiError> {
    Ok(Json(
        with_registry(&state, move |r| r.versions(&name)).await?,
    ))
}

#[utoipa::path(get, path = "/v1/models/{name}/history", tag = "registry", params(("name" = String, Path)), responses((status = 200, description = "every alias move, oldest first", body = Vec<AliasMove>), (status = 404, description = "unknown model", body = crate::error::ErrorBody)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<AliasMove>>, ApiError> {
    Ok(Json(
        with_registry(&state, move |r| r.history(&name)).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveAlias {
    version: u32,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    force: bool,
}

#[utoipa::path(post, path = "/v1/models/{name}/aliases/{alias}", tag = "registry", params(("name" = String, Path), ("alias" = String, Path)), request_body = MoveAlias,
    responses((status = 200, description = "the recorded move", body = AliasMove), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 412, description = "refused by the gate: every failed check with both numbers", body = crate::error::ErrorBody)))]
pub(crate) async fn move_alias(
    State(state): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    axum::Extension(caller): axum::Extension<std::sync::Arc<encore_access::Principal>>,
    body: Result<Json<MoveAlias>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AliasMove>, ApiError> {
    let Json(req) = body.map_err(|e| {
        crate::error::json_rejection(
            e,
            Some(
                r#"{"version": N, "reason": "...", "force": false} (the actor is the key's name)"#,
            ),
        )
    })?;
    let gate = state
        .registry
        .as_ref()
        .map(|r| r.gate.clone())
        .unwrap_or_default();
    let m = with_registry(&state, move |r| {
        let actor = caller.name.clone();
        let how = Promotion {
            alias: &alias,
            actor: &actor,
            reason: &req.reason,
            force: req.force,
        };
        r.promote(&name, req.version, &how, &gate)
    })
    .await?;
    Ok(Json(m))
}

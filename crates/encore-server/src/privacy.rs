//! `POST /v1/privacy/erasures`: erasure of one listener through this server's handles (see
//! `encore_app::privacy`).

use crate::error::ApiError;
use crate::state::AppState;
use encore_core::ErrorCode;
use serde_json::Value;

pub use crate::state::PrivacyAccess;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/privacy/erasures", axum::routing::post(post_erasure))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureRequest {
    /// the listener to erase
    user_id: String,
}

/// What an erasure removed, as recorded in the ledger.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Erasure {
    ledger_seq: i64,
    /// the listener's keyed hash (the id itself is kept nowhere)
    listener: String,
    /// per store, what was removed (counts; `models_flagged`: versions trained on them)
    removed: serde_json::Map<String, Value>,
}

#[utoipa::path(post, path = "/v1/privacy/erasures", tag = "privacy", request_body = ErasureRequest,
    responses((status = 200, description = "the listener is gone from every store (scope `privacy:admin`)", body = Erasure), (status = 400, body = crate::error::ErrorBody), (status = 412, description = "this server keeps no privacy key", body = crate::error::ErrorBody)))]
pub(crate) async fn post_erasure(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(caller): axum::Extension<std::sync::Arc<encore_access::Principal>>,
    body: Result<axum::Json<ErasureRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<axum::Json<Erasure>, ApiError> {
    let axum::Json(req) =
        body.map_err(|e| crate::error::json_rejection(e, Some(r#"{"user_id": "..."}"#)))?;
    let Some(access) = state.privacy.clone() else {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server keeps no privacy key: erase with `encore privacy erase` instead",
        ));
    };
    let (user, actor) = (req.user_id, caller.name.clone());
    let answer = crate::error::blocking("erasure", move || {
        let node = encore_app::privacy::Live {
            root: &access.root,
            privacy_key: &access.key,
            ingestor: &state.ingestor,
            telemetry: state.telemetry.as_deref(),
            evals: state.evals.as_deref(),
            features: state.features.as_deref(),
            serving: state.serving.as_deref(),
        };
        encore_app::privacy::erase_live(&node, &user, &actor)
    })
    .await?;
    let answer = serde_json::from_value(answer)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("erasure answer: {e}")))?;
    Ok(axum::Json(answer))
}

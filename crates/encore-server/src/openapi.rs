//! `GET /openapi.json`: the API described from the handlers themselves (utoipa). The committed
//! copy, `docs/openapi.json`, is compared with the generated one in a test, so a change to the
//! API shows up in review; `ENCORE_UPDATE_OPENAPI=1 cargo test -p encore-server` rewrites it.

use axum::Json;
use utoipa::OpenApi;

/// The error body every non-2xx answer carries.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// stable: invalid_argument, not_found, conflict, failed_precondition, unauthenticated,
    /// permission_denied, resource_exhausted, too_large, unsupported_media, unavailable,
    /// data_loss, internal
    code: String,
    message: String,
    #[schema(value_type = Option<Object>)]
    details: Option<()>,
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "encore",
        description = "Personalization and ML operations for music streaming: events, models, serving, experiments, traces, evaluation, alerts, features."
    ),
    paths(
        crate::health::healthz,
        crate::metrics::render,
        crate::recs::ready,
        crate::events::post_events,
        crate::events::stats,
        crate::models::list,
        crate::models::versions,
        crate::models::history,
        crate::models::move_alias,
        crate::recs::user_recommendations,
        crate::recs::seed_recommendations,
        crate::recs::similar,
        crate::recs::radio,
        crate::recs::mixes,
        crate::recs::blend,
        crate::experiments::assignments,
        crate::experiments::results,
        crate::traces::export,
        crate::traces::export_logs,
        crate::traces::count,
        crate::traces::list,
        crate::traces::stats,
        crate::traces::trace,
        crate::evals::scores,
        crate::evals::post_score,
        crate::evals::evaluate,
        crate::evals::quality,
        crate::evals::calibration,
        crate::evals::rules,
        crate::evals::put_rule,
        crate::evals::delete_rule,
        crate::evals::backfill,
        crate::evals::online,
        crate::evals::datasets,
        crate::evals::add_dataset,
        crate::evals::dataset,
        crate::evals::runs,
        crate::evals::run,
        crate::evals::run_by_id,
        crate::evals::compare,
        crate::evals::create_queue,
        crate::evals::fill_queue,
        crate::evals::queue_items,
        crate::evals::label,
        crate::evals::alert_rules,
        crate::evals::put_alert,
        crate::evals::delete_alert,
        crate::evals::alert_states,
        crate::evals::alert_history,
        crate::features::read,
        crate::features::services,
        crate::auth::audit_list,
        crate::privacy::post_erasure,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerKeys),
    security(("api_key" = []))
)]
pub struct ApiDoc;

/// Every route takes `Authorization: Bearer KEY` (a key from `encore keys create`); health,
/// readiness, metrics and this spec answer without one by default.
#[derive(Debug)]
struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "api_key",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("a key from `encore keys create`"))
                        .build(),
                ),
            );
    }
}

/// The spec as pretty JSON (stable key order), as committed in `docs/openapi.json`.
pub fn spec_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json().unwrap_or_default()
}

pub async fn openapi_json() -> Json<serde_json::Value> {
    Json(serde_json::from_str(&spec_json()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    /// Client generators name methods by operationId: two operations with one id collide.
    #[test]
    fn operation_ids_are_unique() {
        let spec: serde_json::Value = serde_json::from_str(&super::spec_json()).unwrap();
        let mut seen = std::collections::HashMap::new();
        for (path, ops) in spec["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                    panic!("operationId {id:?} of {method} {path} is also {other}'s");
                }
            }
        }
    }

    #[test]
    fn committed_spec_matches_the_generated_one() {
        let generated = super::spec_json() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        if std::env::var_os("ENCORE_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is out of date: run ENCORE_UPDATE_OPENAPI=1 cargo test -p encore-server and commit it"
        );
    }
}

//! `GET /openapi.json`: the API described from the handlers themselves (utoipa). The committed
//! copy, `docs/openapi.json`, is compared with the generated one in a test, so a change to the
//! API shows up in review; `ENCORE_UPDATE_OPENAPI=1 cargo test -p encore-server` rewrites it.

use crate::error::{ErrorBody, ErrorDetail};
use axum::Json;
use utoipa::OpenApi;

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
        crate::monitors::list_monitors,
        crate::monitors::apply_monitors,
        crate::monitors::delete_monitor,
        crate::monitors::monitor_results,
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

/// Routes answered without a key by default (`[server] open_routes`).
const OPEN: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

impl utoipa::Modify for BearerKeys {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        // every keyed route answers 401 without a valid key and 403 without its scope
        let error = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if OPEN.contains(&path.as_str()) {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let r = &mut op.responses.responses;
                r.entry("401".into())
                    .or_insert_with(|| error("no valid API key (`Authorization: Bearer KEY`)"));
                r.entry("403".into())
                    .or_insert_with(|| error("the key lacks the route's scope (named)"));
            }
        }
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

    /// Every JSON body, request or answer, has a schema that says what is in it (no bare
    /// `object`), and every route behind a key documents its 401 and 403.
    #[test]
    fn every_body_is_typed_and_every_keyed_route_documents_its_refusals() {
        let spec: serde_json::Value = serde_json::from_str(&super::spec_json()).unwrap();
        let bare = |schema: &serde_json::Value| {
            schema.is_null()
                || (schema["type"] == "object"
                    && schema.get("properties").is_none()
                    && schema.get("additionalProperties").is_none()
                    && schema.get("$ref").is_none())
        };
        let mut problems = Vec::new();
        for (path, ops) in spec["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                for (media, c) in op["requestBody"]["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    if media.contains("json") && bare(&c["schema"]) {
                        problems.push(format!("{method} {path}: request {media} is untyped"));
                    }
                }
                let responses = op["responses"].as_object().unwrap();
                for (status, r) in responses {
                    for (media, c) in r["content"].as_object().into_iter().flatten() {
                        if media.contains("json") && bare(&c["schema"]) {
                            problems.push(format!("{method} {path}: {status} {media} is untyped"));
                        }
                    }
                }
                let keyed = !super::OPEN.contains(&path.as_str());
                let refusals = responses.contains_key("401") && responses.contains_key("403");
                if keyed && !refusals {
                    problems.push(format!("{method} {path}: no 401/403"));
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
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

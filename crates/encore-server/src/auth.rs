//! Who may call what, and the record of what they did.
//!
//! Every route needs a scope ([`required`], one table for the whole API); the open ones (health,
//! readiness, metrics, the spec by default) are listed in the configuration. The caller's key
//! (`Authorization: Bearer enc_...`) is verified by [`encore_access::Keys`] and the request
//! carries the resulting [`Principal`] as an extension, so a handler records the key's name as
//! its actor and never a name the body claims. Without a key: 401; with a key that lacks the
//! scope: 403 naming it; both as the usual JSON error body.
//!
//! Every mutating request, every read of trace content and every refusal of a known key is
//! appended to the audit log after the handler answers, before the answer leaves.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use encore_access::audit::{AuditLog, Entry};
use encore_access::{Keys, Principal, Scope};
use encore_core::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;

/// Whether requests must carry a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Required,
    /// every caller is [`Principal::anonymous`]; only for servers bound to loopback
    Off,
}

/// The server's authentication and audit.
#[derive(Debug, Clone)]
pub struct Auth {
    pub mode: Mode,
    keys: Option<Arc<Keys>>,
    audit: Option<Arc<AuditLog>>,
    /// routes (templates) answered without a key
    open: Arc<[String]>,
    anonymous: Arc<Principal>,
}

/// The routes answered without a key unless the configuration says otherwise.
pub const DEFAULT_OPEN: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

impl Auth {
    /// No keys and no audit: every caller is anonymous (library tests, embedding).
    pub fn off() -> Auth {
        Auth {
            mode: Mode::Off,
            keys: None,
            audit: None,
            open: DEFAULT_OPEN.map(String::from).into(),
            anonymous: Arc::new(Principal::anonymous()),
        }
    }

    /// Keys and the audit log of the data directory `root`.
    pub fn open(
        root: &std::path::Path,
        mode: Mode,
        open_routes: &[String],
    ) -> Result<Auth, encore_access::AccessError> {
        Ok(Auth {
            mode,
            keys: Some(Arc::new(Keys::open(root)?)),
            audit: Some(Arc::new(AuditLog::open(root)?)),
            open: open_routes.into(),
            anonymous: Arc::new(Principal::anonymous()),
        })
    }

    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// The caller of a request with these headers, or the 401 to answer.
    pub fn principal(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Arc<Principal>, ApiError> {
        if self.mode == Mode::Off {
            return Ok(Arc::clone(&self.anonymous));
        }
        let Some(keys) = &self.keys else {
            return Err(unauthenticated("this server has no key store"));
        };
        let Some(value) = authorization else {
            return Err(unauthenticated(
                "no API key: send `Authorization: Bearer KEY` (keys come from `encore keys create`)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer KEY`"))?;
        keys.authenticate(token)
            .map_err(|e| unauthenticated(&e.to_string()))
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message.to_owned())
}

/// The scope a route needs; `None` for a route and method this table does not know, which only
/// `admin` may call (closed by default: a route added without a line here is not left open).
pub fn required(method: &Method, route: &str) -> Option<Scope> {
    use Scope::*;
    let read = method == Method::GET || method == Method::HEAD;
    let s = match route {
        "/v1/events" => EventsWrite,
        "/v1/events/stats" => EventsRead,
        "/v1/models" | "/v1/models/{name}/versions" | "/v1/models/{name}/history" => ModelsRead,
        "/v1/models/{name}/aliases/{alias}" => ModelsWrite,
        "/v1/users/{id}/recommendations"
        | "/v1/recommendations"
        | "/v1/items/{id}/similar"
        | "/v1/radio"
        | "/v1/users/{id}/mixes"
        | "/v1/blend" => RecsRead,
        "/v1/assignments" | "/v1/experiments/{id}/results" => ExperimentsRead,
        "/v1/features" | "/v1/features/services" => FeaturesRead,
        "/v1/traces" | "/v1/logs" => TracesWrite,
        "/v1/spans" | "/v1/spans/count" | "/v1/spans/stats" | "/v1/traces/{trace_id}" => TracesRead,
        // what a labeller sees is the prompt and the completion
        "/v1/queues/{name}/items" if read => TracesContent,
        "/v1/evals/scores"
        | "/v1/evals/evaluate"
        | "/v1/evals/quality"
        | "/v1/evals/calibration"
        | "/v1/evals/rules"
        | "/v1/evals/rules/{name}"
        | "/v1/evals/rules/{name}/backfill"
        | "/v1/evals/online"
        | "/v1/datasets"
        | "/v1/datasets/{name}"
        | "/v1/evals/runs"
        | "/v1/evals/runs/{id}"
        | "/v1/evals/compare"
        | "/v1/queues"
        | "/v1/queues/{name}/items"
        | "/v1/queues/{name}/items/{idx}/label"
        | "/v1/alerts/rules"
        | "/v1/alerts/rules/{name}"
        | "/v1/alerts"
        | "/v1/alerts/history" => {
            if read {
                EvalsRead
            } else {
                EvalsWrite
            }
        }
        "/v1/privacy/erasures" => PrivacyAdmin,
        "/v1/audit" => Admin,
        _ => return None,
    };
    Some(s)
}

/// Whether a request to `route` reads what people typed to a model (audited like a mutation).
fn reads_content(method: &Method, route: &str, principal: &Principal) -> bool {
    method == Method::GET
        && match route {
            "/v1/queues/{name}/items" => true,
            "/v1/traces/{trace_id}" => principal.allows(Scope::TracesContent),
            _ => false,
        }
}

/// The middleware: verifies the key and the scope, runs the handler, audits. Nothing is
/// allocated for a request that is neither refused nor audited but the caller's `Arc`.
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = &state.auth;
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("", |m| m.as_str());
    if auth.open.iter().any(|r| r == route) {
        return next.run(req).await;
    }
    let principal = match auth.principal(req.headers().get(header::AUTHORIZATION)) {
        Ok(p) => p,
        Err(e) => {
            state.metrics.auth_refused("unauthenticated");
            let mut r = e.into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    let method = req.method().clone();
    let need = required(&method, route).unwrap_or(Scope::Admin);
    if !principal.allows(need) {
        state.metrics.auth_refused("forbidden");
        let e = ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "the key {:?} lacks the scope `{need}` that {method} {route} needs",
                principal.name
            ),
        );
        let response = e.into_response();
        let target = req.uri().path().to_owned();
        record(
            &state,
            &principal,
            source(&req),
            &method,
            route,
            &target,
            403,
            &format!("needs {need}"),
        )
        .await;
        return response;
    }
    let audited = !(method == Method::GET || method == Method::HEAD)
        || reads_content(&method, route, &principal);
    if !audited {
        req.extensions_mut().insert(principal);
        return next.run(req).await;
    }
    let (target, from) = (req.uri().path().to_owned(), source(&req));
    req.extensions_mut().insert(Arc::clone(&principal));
    let response = next.run(req).await;
    let status = response.status().as_u16();
    record(
        &state, &principal, from, &method, route, &target, status, "",
    )
    .await;
    response
}

fn source(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(String::new, |c| c.0.to_string())
}

#[allow(clippy::too_many_arguments)]
async fn record(
    state: &AppState,
    who: &Principal,
    source: String,
    method: &Method,
    route: &str,
    target: &str,
    status: u16,
    detail: &str,
) {
    let Some(audit) = state.auth.audit.clone() else {
        return;
    };
    let mut entry = Entry {
        seq: 0,
        ts_ms: encore_core::time::now_ms(),
        key_id: who.key_id.clone(),
        key_name: who.name.clone(),
        source,
        method: method.as_str().to_owned(),
        route: route.to_owned(),
        target: target.chars().take(512).collect(),
        status,
        detail: detail.to_owned(),
    };
    let written =
        tokio::task::spawn_blocking(move || audit.append(std::slice::from_mut(&mut entry))).await;
    if !matches!(written, Ok(Ok(_))) {
        state.metrics.audit_failed();
        tracing::error!(
            route,
            target,
            status,
            "audit entry not written: {written:?}"
        );
    }
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/audit", axum::routing::get(audit_list))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// entries at or after this time (epoch ms) [default: all]
    since_ms: Option<i64>,
    /// most entries, oldest first [default: 1000, at most 100000]
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
}

/// `GET /v1/audit`: oldest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEntries {
    entries: Vec<Entry>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "access", params(AuditParams),
    responses((status = 200, description = "audit entries, oldest first (scope `admin`)", body = AuditEntries), (status = 400, body = crate::openapi::ErrorBody), (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody)))]
pub(crate) async fn audit_list(
    State(state): State<AppState>,
    params: Result<axum::extract::Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AuditEntries>, ApiError> {
    let axum::extract::Query(p) =
        params.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let limit = crate::error::bounded("limit", p.limit.unwrap_or(1000), 1..=100_000)?;
    let Some(audit) = state.auth.audit.clone() else {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server keeps no audit log",
        ));
    };
    let entries = tokio::task::spawn_blocking(move || audit.list(p.since_ms.unwrap_or(0), limit))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("audit task failed: {e}")))?
        .map_err(|e| ApiError::new(encore_core::Coded::code(&e), e.to_string()))?;
    Ok(axum::Json(AuditEntries { entries }))
}

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

use crate::error::ApiError;
use crate::keys::{reads_content, required};
use crate::state::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use encore_access::audit::Entry;
use encore_access::{Principal, Scope};
use encore_core::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;

/// The middleware: verifies the key and the scope, runs the handler, audits. Nothing is
/// allocated for a request that is neither refused nor audited but the caller's `Arc`.
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("", |m| m.as_str());
    if state.auth.open.iter().any(|r| r == route) {
        return next.run(req).await;
    }
    let principal = match state
        .auth
        .principal(req.headers().get(header::AUTHORIZATION))
    {
        Ok(p) => p,
        Err(e) => return unauthenticated(&state, e),
    };
    let method = req.method().clone();
    let need = required(&method, route).unwrap_or(Scope::Admin);
    if !principal.allows(need) {
        let (target, from) = (req.uri().path().to_owned(), source(&req));
        return forbidden(&state, &principal, (&method, route, &target, from), need).await;
    }
    let reads = method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && crate::keys::reads_by_post(route));
    let audited = !reads || reads_content(&method, route, &principal);
    if !audited {
        req.extensions_mut().insert(principal);
        return next.run(req).await;
    }
    audited_call(&state, principal, req, next, (&method, route)).await
}

/// Runs the handler for `principal` and appends the call and its status to the audit log.
async fn audited_call(
    state: &AppState,
    principal: Arc<Principal>,
    mut req: Request,
    next: Next,
    (method, route): (&Method, &str),
) -> Response {
    let (target, from) = (req.uri().path().to_owned(), source(&req));
    req.extensions_mut().insert(Arc::clone(&principal));
    let response = next.run(req).await;
    let call = (method, route, target.as_str());
    record(
        state,
        &principal,
        from,
        call,
        response.status().as_u16(),
        "",
    )
    .await;
    response
}

/// A request without a valid key: 401 with `WWW-Authenticate: Bearer`, counted.
fn unauthenticated(state: &AppState, e: ApiError) -> Response {
    state.metrics.auth_refused("unauthenticated");
    let mut r = e.into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// A known key without the scope `need`: 403 naming it, counted and audited. `call` is the
/// request's method, route, path and source.
async fn forbidden(
    state: &AppState,
    principal: &Principal,
    (method, route, target, from): (&Method, &str, &str, String),
    need: Scope,
) -> Response {
    state.metrics.auth_refused("forbidden");
    let e = ApiError::new(
        ErrorCode::PermissionDenied,
        format!(
            "the key {:?} lacks the scope `{need}` that {method} {route} needs",
            principal.name
        ),
    );
    let detail = format!("needs {need}");
    record(
        state,
        principal,
        from,
        (method, route, target),
        403,
        &detail,
    )
    .await;
    e.into_response()
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
    (method, route, target): (&Method, &str, &str),
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
    responses((status = 200, description = "audit entries, oldest first (scope `admin`)", body = AuditEntries), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
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

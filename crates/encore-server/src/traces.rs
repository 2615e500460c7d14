//! Traces of model-driven features:
//!
//! - `POST /v1/traces`: OTLP/HTTP export requests, `application/x-protobuf` or
//!   `application/json`, optionally `Content-Encoding: gzip`. The answer comes once every span
//!   is durable; `503` + `Retry-After` (retryable in OTLP) when the ingest limit is reached,
//!   `400` for a body that does not decode (not retryable).
//! - `GET /v1/spans/count?project=`: `{"count": N}`, spans durable and queryable.
//! - `GET /v1/spans?project=&model=&service=&operation=&provider=&status=&user=&session=&trace_id=&root=&min_duration_ms=&min_cost=&from_ms=&to_ms=&q=&attr=KEY=VALUE&limit=&before_ns=`:
//!   the newest matching spans, with `next_before_ns` for the next page.
//! - `GET /v1/traces/{trace_id}`: the trace as a tree (depth first, with depth, offset from the
//!   trace's start, and each span's prompt and completion).
//! - `GET /v1/spans/stats?group_by=model|service|user|operation|provider|status|none&bucket=minute|hour|day|none&limit=`
//!   with the same filters (but `limit`, `before_ns`, `min_*`): per time bucket and group, count,
//!   error rate, latency p50/p95/p99, tokens by type and cost; `group_by=user&limit=10` is the
//!   top users by cost.

use crate::error::ApiError;
use crate::state::AppState;
use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use encore_access::{Principal, Scope};
use encore_app::AppError;
use encore_app::telemetry::Telemetry;
use encore_core::ErrorCode;
use encore_telemetry::Filter;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Stores one trace export and counts what it did.
fn store_request(
    t: &Telemetry,
    metrics: &crate::meters::Metrics,
    request: &ExportTraceServiceRequest,
    caller: &Principal,
) -> Result<usize, AppError> {
    let stored = t.store_export(request, caller)?;
    metrics.spans_sampled_out.inc_by(stored.sampled_out as u64);
    metrics.spans_unpriced.inc_by(stored.unpriced as u64);
    metrics.record_spans(stored.spans as u64, &stored.redactions);
    Ok(stored.spans)
}

/// A slot for one export, or `unavailable` (retryable in OTLP) when the limit is reached.
fn admit(t: &Telemetry) -> Result<encore_app::admission::Permit, AppError> {
    t.exports.try_acquire().ok_or_else(|| {
        AppError::busy(format!(
            "over capacity: {} exports in flight; retry",
            t.exports.max()
        ))
    })
}

/// OTLP/gRPC: the collector's `TraceService` on its own port, the same path behind it. The key
/// comes in the `authorization` metadata, as OTLP exporters send headers.
#[derive(Debug)]
struct GrpcTraces {
    access: Arc<Telemetry>,
    metrics: Arc<crate::meters::Metrics>,
    auth: crate::keys::Auth,
}

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let caller = self.caller(&request)?;
        // UNAVAILABLE is the code OTLP exporters retry with backoff
        let permit = admit(&self.access).map_err(grpc_status)?;
        let (t, metrics) = (self.access.clone(), self.metrics.clone());
        let request = request.into_inner();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            store_request(&t, &metrics, &request, &caller)
        })
        .await
        .map_err(|e| tonic::Status::internal(format!("trace export task failed: {e}")))?
        .map_err(grpc_status)?;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An export's failure as gRPC says it: refused for the key, or worth retrying.
fn grpc_status(e: AppError) -> tonic::Status {
    match e.code {
        ErrorCode::PermissionDenied => tonic::Status::permission_denied(e.message),
        _ => tonic::Status::unavailable(e.message),
    }
}

impl GrpcTraces {
    /// The caller of a gRPC export, when its key may write traces.
    fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Arc<Principal>, tonic::Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| axum::http::HeaderValue::from_bytes(v.as_bytes()).ok());
        let caller = self.auth.principal(header.as_ref()).map_err(|e| {
            self.metrics.auth_refused("unauthenticated");
            tonic::Status::unauthenticated(e.message)
        })?;
        if !caller.allows(Scope::TracesWrite) {
            self.metrics.auth_refused("forbidden");
            return Err(tonic::Status::permission_denied(format!(
                "the key {:?} lacks the scope `traces:write`",
                caller.name
            )));
        }
        Ok(caller)
    }
}

/// OTLP/gRPC logs: GenAI events, as `/v1/logs` takes them.
#[derive(Debug)]
struct GrpcLogs(Arc<GrpcTraces>);

#[tonic::async_trait]
impl LogsService for GrpcLogs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let caller = self.0.caller(&request)?;
        let permit = admit(&self.0.access).map_err(grpc_status)?;
        let t = self.0.access.clone();
        let request = request.into_inner();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            t.store_logs(&request, &caller)
        })
        .await
        .map_err(|e| tonic::Status::internal(format!("log export task failed: {e}")))?
        .map_err(grpc_status)?;
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves OTLP/gRPC trace exports on `listener` until `shutdown` completes (gzip accepted;
/// messages up to `max_bytes`; over TLS with `tls` = (PEM certificate chain, PEM key)).
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    state: &AppState,
    max_bytes: usize,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    let access = state
        .telemetry
        .clone()
        .ok_or("this server does not store traces")?;
    let grpc = Arc::new(GrpcTraces {
        access,
        metrics: state.metrics.clone(),
        auth: state.auth.clone(),
    });
    let logs = LogsServiceServer::new(GrpcLogs(Arc::clone(&grpc)))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes);
    let service = TraceServiceServer::from_arc(grpc)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes);
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = tls {
        builder = builder
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )
            .map_err(|e| format!("TLS: {e}"))?;
    }
    builder
        .add_service(service)
        .add_service(logs)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
        .map_err(|e| e.to_string())
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/traces", post(export))
        .route("/v1/logs", post(export_logs))
        .route("/v1/spans/count", get(count))
        .route("/v1/spans", get(list))
        .route("/v1/spans/stats", get(stats))
        .route("/v1/traces/{trace_id}", get(trace))
}

/// The project a read is limited to: the one asked for, when the key may read it; for a key
/// limited to one project, that project; a key limited to several must name one.
fn readable_project(caller: &Principal, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (asked, caller.projects.as_deref()) {
        (asked, None) => Ok(asked),
        (Some(p), Some(_)) if caller.allows_project(&p) => Ok(Some(p)),
        (None, Some([only])) => Ok(Some(only.clone())),
        (asked, Some(allowed)) => Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "the key {:?} may read only the projects {allowed:?}{}",
                caller.name,
                match asked {
                    Some(p) => format!(", not {p:?}"),
                    None => ": pass `project=`".into(),
                }
            ),
        )),
    }
}

fn access(state: &AppState) -> Result<Arc<Telemetry>, ApiError> {
    state.telemetry.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server does not store traces",
        )
    })
}

#[utoipa::path(post, path = "/v1/traces", tag = "traces",
    request_body(description = "an OTLP ExportTraceServiceRequest, protobuf or JSON (`Content-Encoding: gzip` allowed, inflating to at most the body limit)",
        content((String = "application/x-protobuf"), (OtlpTraces = "application/json"))),
    responses((status = 200, description = "every span is durable"), (status = 400, body = crate::error::ErrorBody), (status = 413, description = "the body, or what it inflates to, is over the limit", body = crate::error::ErrorBody), (status = 415, description = "a content type or encoding that is not read", body = crate::error::ErrorBody), (status = 503, description = "over the ingest limit, or writes fail (Retry-After)", body = crate::error::ErrorBody)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let t = access(&state)?;
    let (permit, body) = otlp_body(&state, &t, &headers, body).await?;
    let (metrics, json) = (state.metrics.clone(), body.json);
    let stored = crate::error::blocking("trace export", move || {
        let _permit = permit;
        // the inflated body obeys the same ceiling as the body on the wire
        let request =
            encore_telemetry::otlp::decode(&body.bytes, &body.content_type, body.gzip, body.limit)?;
        store_request(&t, &metrics, &request, &caller)
    })
    .await?;
    tracing::debug!(spans = stored, "trace export stored");
    Ok(empty_otlp_response(json))
}

/// A body of an OTLP/HTTP export, read under the limits.
struct OtlpBody {
    bytes: axum::body::Bytes,
    content_type: String,
    gzip: bool,
    json: bool,
    limit: usize,
}

/// Takes an export slot and reads the body (under the body limit), its content type and
/// encoding: what `/v1/traces` and `/v1/logs` share.
async fn otlp_body(
    state: &AppState,
    t: &Telemetry,
    headers: &HeaderMap,
    body: Body,
) -> Result<(encore_app::admission::Permit, OtlpBody), ApiError> {
    let permit = admit(t)?;
    let limit = state.limits.max_body_bytes;
    let bytes = crate::error::body_bytes(body, limit).await?;
    let header_text = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let gzip = match header_text(header::CONTENT_ENCODING)
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "identity" => false,
        "gzip" => true,
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMedia,
                format!("unsupported Content-Encoding {other:?}: expected gzip or identity"),
            ));
        }
    };
    let json = content_type.starts_with("application/json");
    Ok((
        permit,
        OtlpBody {
            bytes,
            content_type,
            gzip,
            json,
            limit,
        },
    ))
}

/// An empty OTLP export response: zero bytes in protobuf, `{}` in JSON.
fn empty_otlp_response(json: bool) -> Response {
    if json {
        (StatusCode::OK, Json(serde_json::json!({}))).into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response()
    }
}

#[utoipa::path(post, path = "/v1/logs", tag = "traces",
    request_body(description = "an OTLP ExportLogsServiceRequest, protobuf or JSON (`Content-Encoding: gzip` allowed). GenAI events (`gen_ai.*.message`, `gen_ai.choice`, `gen_ai.client.inference.operation.details`) become the content of the span they name; other records are accepted and not kept",
        content((String = "application/x-protobuf"), (OtlpLogs = "application/json"))),
    responses((status = 200, description = "the events' content is durable"), (status = 400, body = crate::error::ErrorBody), (status = 413, description = "the body, or what it inflates to, is over the limit", body = crate::error::ErrorBody), (status = 415, description = "a content type or encoding that is not read", body = crate::error::ErrorBody), (status = 503, description = "over the ingest limit, or writes fail (Retry-After)", body = crate::error::ErrorBody)))]
pub(crate) async fn export_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let t = access(&state)?;
    let (permit, body) = otlp_body(&state, &t, &headers, body).await?;
    let json = body.json;
    let stored = crate::error::blocking("log export", move || {
        let _permit = permit;
        let request = encore_telemetry::otlp::decode_logs(
            &body.bytes,
            &body.content_type,
            body.gzip,
            body.limit,
        )?;
        t.store_logs(&request, &caller)
    })
    .await?;
    tracing::debug!(spans = stored, "log export stored");
    Ok(empty_otlp_response(json))
}

/// An OTLP/JSON `ExportTraceServiceRequest` (documentation; see the OTLP specification).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub(crate) struct OtlpTraces {
    /// `{resource: {attributes}, scopeSpans: [{scope, spans: [...]}]}`
    resourceSpans: Vec<serde_json::Value>,
}

/// An OTLP/JSON `ExportLogsServiceRequest` (documentation; see the OTLP specification).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub(crate) struct OtlpLogs {
    /// `{resource: {attributes}, scopeLogs: [{scope, logRecords: [...]}]}`
    resourceLogs: Vec<serde_json::Value>,
}

/// `GET /v1/spans/count`
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SpanCount {
    /// spans durable and queryable
    count: u64,
}

/// `GET /v1/spans`: newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SpanList {
    spans: Vec<encore_telemetry::store::SpanRow>,
    /// pass as `before_ns` for the next page; absent on the last
    next_before_ns: Option<i64>,
}

/// `GET /v1/spans/stats`
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SpanStats {
    rows: Vec<encore_telemetry::store::StatsRow>,
}

/// `GET /v1/traces/{trace_id}`: the spans depth first (children by start time).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Trace {
    trace_id: String,
    spans: Vec<encore_telemetry::store::TraceSpan>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountParams {
    project: Option<String>,
}

#[utoipa::path(get, path = "/v1/spans/count", tag = "traces", params(CountParams),
    responses((status = 200, description = "spans durable and queryable", body = SpanCount), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn count(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Principal>>,
    params: Result<Query<CountParams>, QueryRejection>,
) -> Result<Json<SpanCount>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let project = readable_project(&caller, p.project)?;
    let t = access(&state)?;
    let n = tokio::task::spawn_blocking(move || t.store.count(project.as_deref()))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("count task failed: {e}")))??;
    Ok(Json(SpanCount { count: n }))
}

fn default_limit() -> usize {
    100
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    project: Option<String>,
    service: Option<String>,
    operation: Option<String>,
    /// request or response model
    model: Option<String>,
    provider: Option<String>,
    /// `ok`, `error` or `unset`
    status: Option<String>,
    user: Option<String>,
    session: Option<String>,
    trace_id: Option<String>,
    /// only root spans
    #[serde(default)]
    root: bool,
    /// text in the prompt or completion (case-insensitive, any script)
    q: Option<String>,
    /// attribute equals, `KEY=VALUE` (repeat with `,`: `a=1,b=x`) on the attributes no rule mapped
    attr: Option<String>,
    min_duration_ms: Option<f64>,
    min_cost: Option<f64>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 10000)]
    limit: usize,
    /// the previous page's `next_before_ns`
    before_ns: Option<i64>,
}

#[utoipa::path(get, path = "/v1/spans", operation_id = "list_spans", tag = "traces", params(ListParams),
    responses((status = 200, description = "newest first", body = SpanList), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Principal>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<SpanList>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let (limit, before) = (p.limit, p.before_ns);
    let filter = p.filter(&caller)?;
    let t = access(&state)?;
    let rows = crate::error::blocking("list", move || t.store.list(&filter, limit, before)).await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.start_ns))
        .flatten();
    Ok(Json(SpanList {
        spans: rows,
        next_before_ns: next,
    }))
}

impl ListParams {
    /// The store's filter, for `caller`: the projects it may read, content search only with
    /// `traces:content`, the bounds of every parameter.
    fn filter(self, caller: &Principal) -> Result<Filter, ApiError> {
        let p = self;
        if p.q.as_deref().is_some_and(|q| !q.is_empty()) && !caller.allows(Scope::TracesContent) {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "searching prompts and completions (`q`) needs the scope `traces:content`, which the key {:?} lacks",
                    caller.name
                ),
            ));
        }
        crate::error::bounded("limit", p.limit, 1..=10_000)?;
        Ok(Filter {
            project: readable_project(caller, p.project)?,
            from_ms: p.from_ms,
            to_ms: p.to_ms,
            service: p.service,
            operation: p.operation,
            model: p.model,
            provider: p.provider,
            status: p.status,
            user: p.user,
            session: p.session,
            trace_id: p.trace_id,
            min_duration_ms: p.min_duration_ms,
            min_cost: p.min_cost,
            root: p.root,
            text: p.q.filter(|q| !q.is_empty()),
            attributes: attributes(p.attr.as_deref())?,
        })
    }
}

/// `attr=KEY=VALUE,KEY=VALUE` as pairs.
fn attributes(attr: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    match attr {
        None | Some("") => Ok(Vec::new()),
        Some(a) => a
            .split(',')
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidArgument,
                            format!("bad parameter `attr`: {kv:?}, expected KEY=VALUE"),
                        )
                    })
            })
            .collect(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsParams {
    /// `model` (response model), `service`, `user`, `operation`, `provider`, `status` or `none`
    #[serde(default = "default_group")]
    #[param(value_type = String)]
    group_by: encore_telemetry::store::GroupBy,
    /// `minute`, `hour`, `day` or `none`
    bucket: Option<String>,
    /// most groups per bucket (highest cost first)
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<usize>,
    project: Option<String>,
    service: Option<String>,
    operation: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    status: Option<String>,
    user: Option<String>,
    session: Option<String>,
    #[serde(default)]
    root: bool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
}

fn default_group() -> encore_telemetry::store::GroupBy {
    encore_telemetry::store::GroupBy::None
}

#[utoipa::path(get, path = "/v1/spans/stats", operation_id = "span_stats", tag = "traces", params(StatsParams),
    responses((status = 200, description = "per time bucket and group: count, errors, latency quantiles, tokens by type, cost", body = SpanStats), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Principal>>,
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<SpanStats>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let (bucket_ms, group) = (p.bucket_ms()?, p.group_by);
    let limit = p
        .limit
        .map(|l| crate::error::bounded("limit", l, 1..=100_000))
        .transpose()?;
    let filter = p.filter(&caller)?;
    let t = access(&state)?;
    let mut rows =
        crate::error::blocking("stats", move || t.store.stats(&filter, group, bucket_ms)).await?;
    if let Some(limit) = limit {
        // rows are by bucket, then by cost: keep the first `limit` of each bucket
        let mut seen: std::collections::HashMap<i64, usize> = Default::default();
        rows.retain(|r| {
            let n = seen.entry(r.bucket_ms).or_default();
            *n += 1;
            *n <= limit
        });
    }
    Ok(Json(SpanStats { rows }))
}

impl StatsParams {
    fn bucket_ms(&self) -> Result<i64, ApiError> {
        Ok(match self.bucket.as_deref().unwrap_or("none") {
            "none" => 0,
            "minute" => 60_000,
            "hour" => 3_600_000,
            "day" => 86_400_000,
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "bad parameter `bucket`: {other:?}, expected minute, hour, day or none"
                    ),
                ));
            }
        })
    }

    fn filter(self, caller: &Principal) -> Result<Filter, ApiError> {
        let p = self;
        Ok(Filter {
            project: readable_project(caller, p.project)?,
            from_ms: p.from_ms,
            to_ms: p.to_ms,
            service: p.service,
            operation: p.operation,
            model: p.model,
            provider: p.provider,
            status: p.status,
            user: p.user,
            session: p.session,
            root: p.root,
            ..Default::default()
        })
    }
}

#[utoipa::path(get, path = "/v1/traces/{trace_id}", tag = "traces",
    params(("trace_id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "the trace as a tree, depth first, with content for a key with `traces:content`", body = Trace), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn trace(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Principal>>,
    axum::extract::Path(trace_id): axum::extract::Path<String>,
) -> Result<Json<Trace>, ApiError> {
    let t = access(&state)?;
    let id = trace_id.to_ascii_lowercase();
    let mut spans = tokio::task::spawn_blocking(move || t.store.trace(&id))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("trace task failed: {e}")))??;
    // spans of projects the key may not read are not there for it (not even as a 403)
    spans.retain(|s| caller.allows_project(&s.span.project));
    if !caller.allows(Scope::TracesContent) {
        for s in &mut spans {
            s.input = None;
            s.output = None;
        }
    }
    if spans.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("trace {trace_id} has no stored spans"),
        ));
    }
    Ok(Json(Trace { trace_id, spans }))
}

//! API errors: `{"error": {"code", "message", "details"}}` with the status of its code.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use encore_core::{Coded, ErrorCode};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    /// seconds, for 503
    pub retry_after: Option<u32>,
}

/// The one place where codes become statuses. No `_` arm: a new code must be placed here.
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::DataLoss | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A numeric parameter within `range`, or a 400 that names it and the bound: no request may ask
/// for work or memory beyond what the range allows.
pub(crate) fn bounded<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ApiError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "bad parameter `{name}`: {value} is out of range, expected {}..={}",
                range.start(),
                range.end()
            ),
        ))
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }
}

impl<E: Coded> From<E> for ApiError {
    fn from(e: E) -> ApiError {
        let code = e.code();
        let message = match e.hint() {
            Some(hint) => format!("{e} ({hint})"),
            None => e.to_string(),
        };
        if code == ErrorCode::Internal {
            tracing::error!(error = %e, "internal error");
        }
        // a full queue or a failing disk may clear up: tell clients when to come back
        let retry_after = (code == ErrorCode::Unavailable).then_some(1);
        ApiError {
            code,
            message,
            details: None,
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code.as_str(), "message": self.message, "details": self.details }
        });
        let mut response = (status(self.code), Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// A rejected JSON body: over the size limit is 413, a wrong content type 415, the rest 400;
/// `expected` says what the body should look like.
pub(crate) fn json_rejection(
    e: axum::extract::rejection::JsonRejection,
    expected: Option<&str>,
) -> ApiError {
    let code = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMedia,
        _ => ErrorCode::InvalidArgument,
    };
    let message = match expected {
        Some(x) => format!("{} (expected {x})", e.body_text()),
        None => e.body_text(),
    };
    ApiError::new(code, message)
}

/// Every error answer is the JSON error body: the plain-text ones of the HTTP layer (a body over
/// the limit on a raw-bytes route, a method not allowed) are rewritten with their status kept.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMedia,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::PermissionDenied,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidArgument,
    };
    let message = if text.trim().is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text.trim().to_owned()
    };
    let body = json!({ "error": { "code": code.as_str(), "message": message, "details": null } });
    let mut out = (status, Json(body)).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// A body in an encoding a route does not inflate is refused (415) rather than read as if it
/// were plain: only `/v1/traces` and `/v1/logs` take gzip (with an inflate ceiling).
pub async fn identity_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => next.run(req).await,
        Some(_) if matches!(req.uri().path(), "/v1/traces" | "/v1/logs") => next.run(req).await,
        Some(other) => ApiError::new(
            ErrorCode::UnsupportedMedia,
            format!(
                "unsupported Content-Encoding {other:?} on {}: send the body uncompressed",
                req.uri().path()
            ),
        )
        .into_response(),
    }
}

/// Request bodies are JSON on every route but OTLP's: a body sent without a content type, or
/// with the form type `curl -d` sends, is read as the JSON it is, so the shortest curl works.
/// Any other declared type is left for the route to judge.
pub async fn json_by_default(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let otlp = matches!(req.uri().path(), "/v1/traces" | "/v1/logs" | "/v1/metrics");
    let form_or_none = req.headers().get(header::CONTENT_TYPE).is_none_or(|v| {
        v.to_str().is_ok_and(|t| {
            t.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
    });
    if !otlp && form_or_none {
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    next.run(req).await
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no route for {}", uri.path()))
}

/// Runs `f` on the blocking pool (never on the async threads); a task that died is an internal
/// error naming `what`.
pub(crate) async fn blocking<T, E>(
    what: &str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(ApiError::new(
            ErrorCode::Internal,
            format!("{what} task failed: {e}"),
        )),
    }
}

/// Reads a request body of at most `limit` bytes (413 beyond).
pub(crate) async fn body_bytes(
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("request body is over the limit of {limit} bytes"),
        )
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_are_4xx_and_the_rest_429_or_5xx() {
        for code in ErrorCode::ALL {
            let s = status(code);
            if code.is_user_error() {
                assert!(s.is_client_error(), "{code}");
            } else {
                assert!(
                    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS,
                    "{code}"
                );
            }
        }
        let mut statuses: Vec<u16> = ErrorCode::ALL.iter().map(|c| status(*c).as_u16()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        // data loss and internal errors are both 500: the body's code tells them apart
        assert_eq!(
            statuses.len(),
            ErrorCode::ALL.len() - 1,
            "one status per code"
        );
    }
}

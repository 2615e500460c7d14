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
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::DataLoss | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
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

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no route for {}", uri.path()))
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

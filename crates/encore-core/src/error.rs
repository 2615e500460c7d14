//! The stable error codes shared by every crate, the CLI and (later) the HTTP API.
//!
//! Each library crate has its own `thiserror` enum and a `code()` that maps every variant to one of
//! these. The CLI maps codes to exit statuses and the server maps them to HTTP statuses, each in one
//! exhaustive `match`, so a new code forces a decision everywhere.

use std::fmt;

/// A stable, machine-readable error class. The string form (`invalid_argument`, ...) is part of the
/// public API: it appears in JSON error bodies and must never change for an existing variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The caller sent something malformed or out of range (bad flag, bad config value, bad row).
    InvalidArgument,
    /// A named thing (file, model, experiment) does not exist.
    NotFound,
    /// The request conflicts with current state (already exists, version mismatch).
    Conflict,
    /// The system is not in a state that allows the operation (data directory locked, wrong format
    /// version, missing prerequisite).
    FailedPrecondition,
    /// The caller did not prove who it is (no key, an unknown, expired or revoked key).
    Unauthenticated,
    /// The caller is known but its key does not allow the operation (missing scope or project).
    PermissionDenied,
    /// A bounded resource is full (queue, quota); retrying later may succeed.
    ResourceExhausted,
    /// The request is larger than allowed (body size, rows per batch).
    TooLarge,
    /// The request's content type or encoding is not one encore reads.
    UnsupportedMedia,
    /// A dependency (disk, database, network peer) failed; retrying may succeed.
    Unavailable,
    /// Stored data is damaged (checksum mismatch, truncated file): retrying will not help.
    DataLoss,
    /// A bug or an invariant violation inside encore.
    Internal,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation tables.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::FailedPrecondition,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::ResourceExhausted,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedMedia,
        ErrorCode::Unavailable,
        ErrorCode::DataLoss,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedMedia => "unsupported_media",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DataLoss => "data_loss",
            ErrorCode::Internal => "internal",
        }
    }

    /// True when the caller can fix the problem (as opposed to encore or its environment).
    pub fn is_user_error(self) -> bool {
        match self {
            ErrorCode::InvalidArgument
            | ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::FailedPrecondition
            | ErrorCode::Unauthenticated
            | ErrorCode::PermissionDenied
            | ErrorCode::TooLarge
            | ErrorCode::UnsupportedMedia => true,
            ErrorCode::ResourceExhausted
            | ErrorCode::Unavailable
            | ErrorCode::DataLoss
            | ErrorCode::Internal => false,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every crate's error enum: the stable code and, for user errors, a hint that says
/// what to do. The CLI prints `error: <message> (<hint>)`; the server puts both in the JSON body.
pub trait Coded: std::error::Error {
    fn code(&self) -> ErrorCode;

    fn hint(&self) -> Option<String> {
        None
    }
}

/// A value that does not read as what was expected: the error of parsers and checks of outside
/// input. The message names the value and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl Coded for Invalid {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }
}

impl From<String> for Invalid {
    fn from(s: String) -> Invalid {
        Invalid(s)
    }
}

impl From<Invalid> for String {
    fn from(e: Invalid) -> String {
        e.0
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Invalid {
        Invalid(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_distinct_snake_case_names() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }
}

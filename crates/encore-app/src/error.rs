//! The application layer's error: a code from the one table ([`ErrorCode`]), a message that
//! names what was wrong, and, for `unavailable`, when to come back.

use encore_core::{Coded, ErrorCode};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// seconds, for `unavailable`
    pub retry_after: Option<u32>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// `unavailable`, worth retrying in a second.
    pub fn busy(message: impl Into<String>) -> AppError {
        AppError {
            code: ErrorCode::Unavailable,
            message: message.into(),
            retry_after: Some(1),
        }
    }

    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::InvalidArgument, message)
    }

    /// A domain error with its code, its hint folded into the message.
    pub fn of(e: &(impl Coded + ?Sized)) -> AppError {
        let code = e.code();
        let message = match e.hint() {
            Some(hint) => format!("{e} ({hint})"),
            None => e.to_string(),
        };
        AppError {
            code,
            message,
            retry_after: (code == ErrorCode::Unavailable).then_some(1),
        }
    }
}

impl Coded for AppError {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

macro_rules! from_coded {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for AppError {
            fn from(e: $t) -> AppError {
                AppError::of(&e)
            }
        })*
    };
}

from_coded!(
    encore_ingest::IngestError,
    encore_storage::StorageError,
    encore_storage::metadata::MetadataError,
    encore_serving::ServingError,
    encore_serving::NotServable,
    encore_registry::RegistryError,
    encore_models::artifact::ArtifactError,
    encore_experiments::assignment::AssignmentError,
    encore_experiments::store::StoreError,
    encore_features::offline::OfflineError,
    encore_features::online::OnlineError,
    encore_features::versions::VersionError,
    encore_telemetry::otlp::DecodeError,
    encore_evals::store::StoreError,
);

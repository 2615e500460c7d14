use encore_core::{Coded, ErrorCode};
use encore_storage::StorageError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}: unknown file type", path.display())]
    UnknownFormat { path: PathBuf },

    #[error("{}: {message}", path.display())]
    Malformed { path: PathBuf, message: String },

    #[error("request body is not valid: {message}")]
    BadBody { message: String },

    #[error("batch of {rows} rows is over the limit of {limit}")]
    TooLarge { rows: usize, limit: usize },

    #[error("the write queue is full")]
    Busy,

    #[error(transparent)]
    Storage(#[from] StorageError),

    #[error("ingest internal error: {message}")]
    Internal { message: String },
}

impl IngestError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IngestError {
        let path = path.into();
        move |source| IngestError::Io { path, source }
    }
}

impl Coded for IngestError {
    fn code(&self) -> ErrorCode {
        match self {
            IngestError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorCode::NotFound
            }
            IngestError::Io { .. } => ErrorCode::Unavailable,
            IngestError::UnknownFormat { .. }
            | IngestError::Malformed { .. }
            | IngestError::BadBody { .. } => ErrorCode::InvalidArgument,
            IngestError::TooLarge { .. } => ErrorCode::TooLarge,
            IngestError::Busy => ErrorCode::Unavailable,
            IngestError::Storage(e) => e.code(),
            IngestError::Internal { .. } => ErrorCode::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            IngestError::UnknownFormat { .. } => Some(
                "name files *.jsonl, *.ndjson, *.csv or *.parquet, optionally ending in .gz or .zst".into(),
            ),
            IngestError::TooLarge { .. } => Some("split the batch into smaller ones".into()),
            IngestError::Busy => Some("retry after a short pause".into()),
            IngestError::Storage(e) => e.hint(),
            IngestError::Io { .. }
            | IngestError::Malformed { .. }
            | IngestError::BadBody { .. }
            | IngestError::Internal { .. } => None,
        }
    }
}

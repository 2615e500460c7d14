use encore_core::{Coded, ErrorCode};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("data directory {} is in use by another encore process ({})", path.display(),
        pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "pid unknown".into()))]
    Locked { path: PathBuf, pid: Option<u32> },

    #[error("data directory {} has format version {found}; this build reads up to {supported}",
        path.display())]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{} is not an encore data directory: {reason}", path.display())]
    NotADataDir { path: PathBuf, reason: String },

    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{} is corrupt: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },

    #[error("{} is damaged: {bytes} byte(s) at offset {offset} cannot be read ({detail})", path.display())]
    DataLoss {
        path: PathBuf,
        offset: u64,
        bytes: u64,
        detail: String,
    },

    #[error("parquet error on {}: {message}", path.display())]
    Parquet { path: PathBuf, message: String },

    #[error("arrow error: {message}")]
    Arrow { message: String },

    #[error(
        "bad object key {key:?}: expected `/`-separated segments of letters, digits, '-', '_' or '.' (no empty, `.` or `..` segment, at most 1024 bytes)"
    )]
    BadKey { key: String },

    #[error("batch does not have the schema of table `{table}`")]
    SchemaMismatch { table: String },

    #[error("table `{table}` has no column `{column}`")]
    UnknownColumn { table: String, column: String },

    #[error("write to the event log failed: {message}")]
    WriteFailed { message: String },

    #[error("the event log is closed")]
    Closed,

    #[error("the transaction was rolled back")]
    RolledBack,

    /// a server backend cannot be reached or refused the request
    #[error("{what}: {message}")]
    Unavailable { what: String, message: String },

    /// a backend address that cannot be used
    #[error("{what}: {message}")]
    BadAddress { what: String, message: String },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { path, source }
    }
}

impl StorageError {
    pub fn arrow(e: arrow::error::ArrowError) -> StorageError {
        StorageError::Arrow {
            message: e.to_string(),
        }
    }

    pub(crate) fn parquet(path: &std::path::Path, e: &dyn std::fmt::Display) -> StorageError {
        StorageError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

impl Coded for StorageError {
    fn code(&self) -> ErrorCode {
        match self {
            StorageError::Locked { .. }
            | StorageError::UnsupportedFormat { .. }
            | StorageError::NotADataDir { .. } => ErrorCode::FailedPrecondition,
            StorageError::Io { .. }
            | StorageError::WriteFailed { .. }
            | StorageError::Closed
            | StorageError::Unavailable { .. } => ErrorCode::Unavailable,
            StorageError::BadAddress { .. } => ErrorCode::InvalidArgument,
            StorageError::RolledBack => ErrorCode::Internal,
            StorageError::Corrupt { .. } | StorageError::DataLoss { .. } => ErrorCode::DataLoss,
            StorageError::Parquet { .. } | StorageError::Arrow { .. } => ErrorCode::Internal,
            StorageError::SchemaMismatch { .. }
            | StorageError::UnknownColumn { .. }
            | StorageError::BadKey { .. } => ErrorCode::InvalidArgument,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StorageError::Locked { .. } => {
                Some("stop the other process, or pass --data-dir to use another directory".into())
            }
            StorageError::UnsupportedFormat { .. } => {
                Some("upgrade encore, or use another --data-dir".into())
            }
            StorageError::NotADataDir { .. } => {
                Some("pass --data-dir pointing to an empty or encore-created directory".into())
            }
            StorageError::Corrupt { .. } => {
                Some("restore the file from a backup, or move it aside to recover the rest".into())
            }
            StorageError::DataLoss { .. } => Some(
                "run `encore events repair` (or `encore traces repair`): it keeps every intact \
                 record, moves the damaged file unchanged into <data>/quarantine/ and reports \
                 what was lost; or restore the file from a backup"
                    .into(),
            ),
            StorageError::Io { .. }
            | StorageError::Parquet { .. }
            | StorageError::Arrow { .. }
            | StorageError::SchemaMismatch { .. }
            | StorageError::UnknownColumn { .. }
            | StorageError::BadKey { .. }
            | StorageError::WriteFailed { .. }
            | StorageError::RolledBack
            | StorageError::Closed
            | StorageError::BadAddress { .. } => None,
            StorageError::Unavailable { .. } => {
                Some("retry; check that the server is up and the credentials are right".into())
            }
        }
    }
}

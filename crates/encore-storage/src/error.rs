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
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { path, source }
    }
}

impl Coded for StorageError {
    fn code(&self) -> ErrorCode {
        match self {
            StorageError::Locked { .. }
            | StorageError::UnsupportedFormat { .. }
            | StorageError::NotADataDir { .. } => ErrorCode::FailedPrecondition,
            StorageError::Io { .. } => ErrorCode::Unavailable,
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
            StorageError::Io { .. } => None,
        }
    }
}

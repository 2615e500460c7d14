use encore_core::{Coded, ErrorCode};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot encode {}: {message}", path.display())]
    Encode { path: PathBuf, message: String },

    #[error("output directory {} is not empty", path.display())]
    OutputNotEmpty { path: PathBuf },

    #[error("invalid simulation setting `{field}`: {message}")]
    InvalidConfig {
        field: &'static str,
        message: String,
    },
}

impl SimError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SimError {
        let path = path.into();
        move |source| SimError::Io { path, source }
    }
}

impl Coded for SimError {
    fn code(&self) -> ErrorCode {
        match self {
            SimError::Io { .. } => ErrorCode::Unavailable,
            SimError::Encode { .. } => ErrorCode::Internal,
            SimError::OutputNotEmpty { .. } => ErrorCode::Conflict,
            SimError::InvalidConfig { .. } => ErrorCode::InvalidArgument,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SimError::OutputNotEmpty { .. } => {
                Some("choose an empty --out directory, or pass --force to replace a world".into())
            }
            SimError::Io { .. } => {
                Some("check that the path is writable and the disk has room".into())
            }
            SimError::Encode { .. } | SimError::InvalidConfig { .. } => None,
        }
    }
}

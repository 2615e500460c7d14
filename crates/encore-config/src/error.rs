use crate::Source;
use encore_core::{Coded, ErrorCode};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "invalid config {}:{line}:{column}: {}{message}",
        path.display(),
        key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default()
    )]
    File {
        path: PathBuf,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },

    #[error("unknown config key `{key}` (from {origin})")]
    UnknownKey {
        key: String,
        origin: Source,
        known: Vec<String>,
    },

    #[error("bad value for `{key}` from {origin}: {message}")]
    Invalid {
        key: String,
        origin: Source,
        message: String,
    },

    #[error("config file {} already exists", path.display())]
    Exists { path: PathBuf },

    #[error("cannot write config file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("config internal error: {message}")]
    Internal { message: String },
}

impl Coded for ConfigError {
    fn code(&self) -> ErrorCode {
        match self {
            ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorCode::NotFound
            }
            ConfigError::Read { .. } | ConfigError::Write { .. } => ErrorCode::Unavailable,
            ConfigError::File { .. }
            | ConfigError::UnknownKey { .. }
            | ConfigError::Invalid { .. } => ErrorCode::InvalidArgument,
            ConfigError::Exists { .. } => ErrorCode::Conflict,
            ConfigError::Internal { .. } => ErrorCode::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Read { .. } => {
                Some("check the --config path, or omit it to use ./encore.toml".into())
            }
            ConfigError::File { .. } | ConfigError::Invalid { .. } => {
                Some("run `encore config init` to see every key, its type and default".into())
            }
            ConfigError::UnknownKey { known, .. } => Some(format!(
                "known keys: {}; env overrides are ENCORE__SECTION__KEY",
                known.join(", ")
            )),
            ConfigError::Exists { .. } => Some("pass --force to overwrite it".into()),
            ConfigError::Write { .. } | ConfigError::Internal { .. } => None,
        }
    }
}

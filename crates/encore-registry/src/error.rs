use encore_core::{Coded, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} does not exist")]
    NotFound { what: String },
    #[error("invalid {what} name {name:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    InvalidName { what: String, name: String },
    #[error("the gate refused {model} v{version} for production: {}", failures.join("; "))]
    GateRefused {
        model: String,
        version: u32,
        failures: Vec<String>,
    },
    #[error("a forced promotion needs a reason")]
    ReasonRequired,
    #[error("{model} v{version} is what {} point(s) at", aliases.join(", "))]
    InUse {
        model: String,
        version: u32,
        aliases: Vec<String>,
    },
    #[error("alias {alias} of {model} (v{version}) has no earlier version to roll back to")]
    NothingToRollBack {
        model: String,
        alias: String,
        version: u32,
    },
    #[error("registry: {0}")]
    Io(String),
    #[error(transparent)]
    Metadata(#[from] encore_storage::metadata::MetadataError),
    #[error("artifact store: {0}")]
    Objects(#[from] encore_storage::StorageError),
    #[error(transparent)]
    Artifact(#[from] encore_models::artifact::ArtifactError),
    #[error("registry record: {0}")]
    Json(#[from] serde_json::Error),
}

impl Coded for RegistryError {
    fn code(&self) -> ErrorCode {
        match self {
            RegistryError::NotFound { .. } => ErrorCode::NotFound,
            RegistryError::InvalidName { .. } | RegistryError::ReasonRequired => {
                ErrorCode::InvalidArgument
            }
            RegistryError::GateRefused { .. }
            | RegistryError::InUse { .. }
            | RegistryError::NothingToRollBack { .. } => ErrorCode::FailedPrecondition,
            RegistryError::Metadata(e) => e.code(),
            RegistryError::Objects(e) => e.code(),
            RegistryError::Artifact(e) => e.code(),
            RegistryError::Io(_) => ErrorCode::Unavailable,
            RegistryError::Json(_) => ErrorCode::DataLoss,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RegistryError::GateRefused { .. } => Some(
                "improve the model, or override with --force --reason \"...\" (recorded in the history)"
                    .into(),
            ),
            RegistryError::InUse { .. } => {
                Some("move those aliases to another version first".into())
            }
            RegistryError::NotFound { .. } => Some("see `encore models list`".into()),
            RegistryError::ReasonRequired => Some("add --reason \"...\"".into()),
            RegistryError::Metadata(e) => e.hint(),
            _ => None,
        }
    }
}

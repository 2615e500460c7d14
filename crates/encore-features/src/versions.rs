//! Applied definitions, versioned in the model registry (`registry.sqlite`, beside the models
//! they feed): each apply keeps the file's text and where it was applied from (relative source
//! paths are taken from its directory). Applying the current text from the same file changes
//! nothing. Data directories of the first layout (`features/v000001.toml` and `CURRENT`) are
//! carried over on first use.

use crate::def::{DefError, Definitions};
use encore_registry::Registry;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(transparent)]
    Def(#[from] DefError),
    #[error("feature definitions: {0}")]
    Registry(#[from] encore_registry::RegistryError),
    #[error("no feature definitions are applied (run `encore features apply FILE`)")]
    None,
}

impl encore_core::Coded for VersionError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            VersionError::Def(_) => encore_core::ErrorCode::InvalidArgument,
            VersionError::Registry(_) => encore_core::ErrorCode::Unavailable,
            VersionError::None => encore_core::ErrorCode::FailedPrecondition,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Versions {
    root: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Current {
    pub version: u32,
    pub text: String,
    /// the file the definitions were applied from
    pub origin: String,
    pub definitions: Definitions,
}

impl Versions {
    pub fn new(root: &Path) -> Versions {
        Versions {
            root: root.to_path_buf(),
        }
    }

    fn registry(&self) -> Result<Registry, VersionError> {
        let mut r = Registry::open(&self.root)?;
        // the first layout kept versions as files; the current one moves into the registry
        let old = self.root.join("features");
        if r.feature_definitions()?.is_none()
            && let Ok(v) = std::fs::read_to_string(old.join("CURRENT"))
            && let Ok(v) = v.trim().parse::<u32>()
        {
            let path = old.join(format!("v{v:06}.toml"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                r.put_feature_definitions(&text, &path.display().to_string())?;
            }
        }
        Ok(r)
    }

    pub fn current(&self) -> Result<Option<Current>, VersionError> {
        let Some(d) = self.registry()?.feature_definitions()? else {
            return Ok(None);
        };
        let definitions = Definitions::parse(&d.text, &d.origin)?;
        Ok(Some(Current {
            version: d.version,
            text: d.text,
            origin: d.origin,
            definitions,
        }))
    }

    pub fn require(&self) -> Result<Current, VersionError> {
        self.current()?.ok_or(VersionError::None)
    }

    /// Every version: number, time applied (ms) and origin, oldest first.
    pub fn history(&self) -> Result<Vec<(u32, i64, String)>, VersionError> {
        Ok(self.registry()?.feature_definition_versions()?)
    }

    /// Checks `text` (from `file`) and makes it the current version; returns the version and
    /// whether it is new.
    pub fn apply(&self, text: &str, file: &Path) -> Result<(Current, bool), VersionError> {
        let origin = std::path::absolute(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display()
            .to_string();
        let definitions = Definitions::parse(text, &origin)?;
        let (d, new) = self.registry()?.put_feature_definitions(text, &origin)?;
        Ok((
            Current {
                version: d.version,
                text: d.text,
                origin: d.origin,
                definitions,
            },
            new,
        ))
    }
}

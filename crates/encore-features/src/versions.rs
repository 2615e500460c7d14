//! Applied definitions, versioned under `<data dir>/features/`: `v000001.toml`, ... and `CURRENT`
//! naming the version in use. Applying text equal to the current version changes nothing.

use crate::def::{DefError, Definitions};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(transparent)]
    Def(#[from] DefError),
    #[error("feature definitions at {path}: {message}")]
    Io { path: String, message: String },
    #[error("no feature definitions are applied (run `encore features apply FILE`)")]
    None,
}

impl encore_core::Coded for VersionError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            VersionError::Def(_) => encore_core::ErrorCode::InvalidArgument,
            VersionError::Io { .. } => encore_core::ErrorCode::Unavailable,
            VersionError::None => encore_core::ErrorCode::FailedPrecondition,
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> VersionError {
    VersionError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The applied definitions of a data directory.
#[derive(Debug, Clone)]
pub struct Versions {
    dir: PathBuf,
}

/// A version in use.
#[derive(Debug, Clone)]
pub struct Current {
    pub version: u32,
    pub text: String,
    pub definitions: Definitions,
}

impl Versions {
    pub fn new(root: &Path) -> Versions {
        Versions {
            dir: root.join("features"),
        }
    }

    fn file(&self, v: u32) -> PathBuf {
        self.dir.join(format!("v{v:06}.toml"))
    }

    /// The version in use, if any.
    pub fn current(&self) -> Result<Option<Current>, VersionError> {
        let cur = self.dir.join("CURRENT");
        let v: u32 = match std::fs::read_to_string(&cur) {
            Ok(s) => s.trim().parse().map_err(|_| VersionError::Io {
                path: cur.display().to_string(),
                message: format!("{s:?} is not a version number"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&cur, e)),
        };
        let path = self.file(v);
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let definitions = Definitions::parse(&text, &path.display().to_string())?;
        Ok(Some(Current {
            version: v,
            text,
            definitions,
        }))
    }

    pub fn require(&self) -> Result<Current, VersionError> {
        self.current()?.ok_or(VersionError::None)
    }

    /// Checks `text` (from `file`) and makes it the current version; returns the version and
    /// whether it is new.
    pub fn apply(&self, text: &str, file: &str) -> Result<(Current, bool), VersionError> {
        let definitions = Definitions::parse(text, file)?;
        let current = self.current()?;
        if let Some(c) = &current
            && c.text == text
        {
            return Ok((c.clone(), false));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let version = current.map_or(1, |c| c.version + 1);
        let path = self.file(version);
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        let cur = self.dir.join("CURRENT");
        let tmp = self.dir.join("CURRENT.tmp");
        std::fs::write(&tmp, format!("{version}\n")).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &cur).map_err(|e| io(&cur, e))?;
        Ok((
            Current {
                version,
                text: text.to_owned(),
                definitions,
            },
            true,
        ))
    }
}

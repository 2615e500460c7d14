//! The data directory: created on first use with a format file, and held with an exclusive lock
//! for the life of the process so two encore processes never write the same files.

use crate::StorageError;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The on-disk layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const FORMAT_FILE: &str = "FORMAT";
const LOCK_FILE: &str = "encore.lock";

/// Contents of the `FORMAT` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatInfo {
    pub format_version: u32,
    /// version of the encore that created the directory
    pub created_by: String,
}

/// An open, locked data directory. The lock is released when this value is dropped (or the
/// process dies: the OS drops `flock` locks with the file descriptor, so a crash never leaves a
/// stale lock behind).
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    format: FormatInfo,
    _lock: File,
}

impl DataDir {
    /// Opens `path`, creating it (and its format file) when missing, and takes the exclusive lock.
    pub fn open(path: impl AsRef<Path>) -> Result<DataDir, StorageError> {
        let root = path.as_ref().to_path_buf();
        if root.exists() && !root.is_dir() {
            return Err(StorageError::NotADataDir {
                path: root,
                reason: "not a directory".into(),
            });
        }
        std::fs::create_dir_all(&root).map_err(StorageError::io(&root))?;
        let lock = acquire_lock(&root)?;
        let format = read_or_create_format(&root)?;
        Ok(DataDir {
            root,
            format,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn format(&self) -> &FormatInfo {
        &self.format
    }

    /// A subdirectory of the data directory, created if missing.
    pub fn subdir(&self, name: &str) -> Result<PathBuf, StorageError> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(StorageError::io(&dir))?;
        Ok(dir)
    }
}

fn acquire_lock(root: &Path) -> Result<File, StorageError> {
    let path = root.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(StorageError::io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(StorageError::Locked {
                path: root.to_path_buf(),
                pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(StorageError::Io { path, source: e }),
    }
    // we hold the lock: record our pid for whoever comes next
    file.set_len(0).map_err(StorageError::io(&path))?;
    file.seek(SeekFrom::Start(0))
        .map_err(StorageError::io(&path))?;
    writeln!(file, "{}", std::process::id()).map_err(StorageError::io(&path))?;
    file.sync_data().map_err(StorageError::io(&path))?;
    Ok(file)
}

fn read_or_create_format(root: &Path) -> Result<FormatInfo, StorageError> {
    let path = root.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let info: FormatInfo =
                serde_json::from_str(&text).map_err(|e| StorageError::NotADataDir {
                    path: root.to_path_buf(),
                    reason: format!("{FORMAT_FILE}: {e}"),
                })?;
            if info.format_version > FORMAT_VERSION {
                return Err(StorageError::UnsupportedFormat {
                    path: root.to_path_buf(),
                    found: info.format_version,
                    supported: FORMAT_VERSION,
                });
            }
            Ok(info)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let is_fresh = std::fs::read_dir(root)
                .map_err(StorageError::io(root))?
                .filter_map(Result::ok)
                .all(|entry| entry.file_name() == LOCK_FILE);
            if !is_fresh {
                return Err(StorageError::NotADataDir {
                    path: root.to_path_buf(),
                    reason: format!("it has files but no {FORMAT_FILE} file"),
                });
            }
            let info = FormatInfo {
                format_version: FORMAT_VERSION,
                created_by: format!("encore {}", env!("CARGO_PKG_VERSION")),
            };
            let tmp = root.join(format!("{FORMAT_FILE}.tmp"));
            let mut text = serde_json::to_string_pretty(&info).unwrap_or_default();
            text.push('\n');
            std::fs::write(&tmp, text).map_err(StorageError::io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(StorageError::io(&path))?;
            Ok(info)
        }
        Err(e) => Err(StorageError::Io { path, source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_format_file_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        let dir = DataDir::open(&root).unwrap();
        assert_eq!(dir.format().format_version, FORMAT_VERSION);
        assert!(dir.subdir("events").unwrap().is_dir());
        drop(dir);
        let again = DataDir::open(&root).unwrap();
        assert_eq!(again.format().format_version, FORMAT_VERSION);
    }

    #[test]
    fn second_open_fails_naming_the_holder_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = DataDir::open(tmp.path()).unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        let pid = std::process::id();
        assert!(matches!(err, StorageError::Locked { pid: Some(p), .. } if p == pid));
        assert!(
            err.to_string()
                .contains(&format!("in use by another encore process (pid {pid})"))
        );
    }

    #[test]
    fn lock_is_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        drop(DataDir::open(tmp.path()).unwrap());
        DataDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn newer_format_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join(FORMAT_FILE),
            r#"{"format_version": 99, "created_by": "encore 9.0.0"}"#,
        )
        .unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "data directory {} has format version 99; this build reads up to 1",
                tmp.path().display()
            )
        );
    }

    #[test]
    fn foreign_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("thesis.tex"), "...").unwrap();
        let err = DataDir::open(tmp.path()).unwrap_err();
        assert!(
            err.to_string().contains("has files but no FORMAT file"),
            "{err}"
        );
        let file = tmp.path().join("thesis.tex");
        assert!(
            DataDir::open(&file)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }
}

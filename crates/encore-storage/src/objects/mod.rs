//! The object store role: whole immutable-ish blobs by key (model artifacts, HNSW indexes,
//! exported segments), written atomically (a reader sees the old object or the new one, never a
//! torn mix) and durably. The embedded backend keeps them as files under a directory
//! ([`LocalObjects`]); an S3 backend implements the same trait and passes the same suite.

pub mod s3;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use crate::StorageError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a data directory's objects live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// files under the data directory
    #[default]
    Local,
    /// `s3://bucket/prefix`, shared by every node that names it
    S3 { url: String },
}

impl Backend {
    /// `""` (files in the data directory) or `s3://bucket/prefix`.
    pub fn parse(url: &str) -> Result<Backend, StorageError> {
        if url.is_empty() {
            return Ok(Backend::Local);
        }
        s3::parse_url(url)?;
        Ok(Backend::S3 {
            url: url.to_owned(),
        })
    }
}

static BOUND: crate::binding::Bound<Backend> = crate::binding::Bound::new();

/// Keeps the objects of the data directory `root` in `backend` for the rest of the process
/// (what the binary does once `[storage] objects` is read).
pub fn bind(root: &Path, backend: Backend) {
    BOUND.set(root, (backend != Backend::Local).then_some(backend));
}

/// Where the objects of the data directory `root` live.
pub fn backend(root: &Path) -> Backend {
    BOUND.get(root).unwrap_or_default()
}

/// The object store of the data directory `root`: what domain crates open, never naming a
/// backend. Local: files under `root`; bound to S3 ([`bind`]): the bucket and prefix, with
/// local copies for memory-mapping readers under `<root>/cache/objects`.
pub fn open(root: &Path) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Ok(match BOUND.get(root).unwrap_or_default() {
        Backend::Local => Arc::new(LocalObjects::open(root)?),
        Backend::S3 { url } => Arc::new(s3::S3Objects::open(&url, &root.join("cache"))?),
    })
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key`, replacing what was there, atomically and durably.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// The object under `key`, or `None`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// The objects whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;
    /// Deletes `key`; whether it existed.
    fn delete(&self, key: &str) -> Result<bool, StorageError>;
    /// A local file holding `key`, for readers that memory-map (an index): the object itself
    /// on a local backend, a cached copy on a remote one.
    fn local_path(&self, key: &str) -> Result<Option<PathBuf>, StorageError>;
    /// Whether an object is stored under `key`.
    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.list(key)?.iter().any(|m| m.key == key))
    }
    /// Where `key` lives, for messages (a file path, an `s3://` address).
    fn describe(&self, key: &str) -> String {
        key.to_owned()
    }
}

/// Writes `bytes` to a temporary file beside `path` (unique to this writer), syncs it, renames
/// it over `path` and syncs the directory: readers see the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StorageError::io(path)(e)
    })
}

/// Keys are relative paths of `/`-separated segments of letters, digits, `-`, `_`, `.`, `=`
/// (a Hive partition, `day=2026-01-05`; no empty segment, no `.` or `..`, not ending `.tmp`, which marks a write in progress): what
/// every backend can store and no key escapes the
/// store's root.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.ends_with(".tmp")
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '='))
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::BadKey {
            key: key.chars().take(200).collect(),
        })
    }
}

/// Objects as files under a directory.
#[derive(Debug, Clone)]
pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    pub fn open(root: &Path) -> Result<LocalObjects, StorageError> {
        std::fs::create_dir_all(root).map_err(|e| StorageError::io(root)(e))?;
        Ok(LocalObjects {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

impl ObjectStore for LocalObjects {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir)(e))?;
        write_atomic(&path, bytes)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(&path)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let mut out = Vec::new();
        // start the walk at the deepest directory the prefix names whole
        let dir = prefix.rfind('/').map_or("", |at| &prefix[..at]);
        let start = if dir
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        {
            self.root.join(dir)
        } else {
            self.root.clone()
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(StorageError::io(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io(&dir)(e))?;
                let path = entry.path();
                let meta = entry.metadata().map_err(|e| StorageError::io(&path)(e))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                // files being written (temporary names) are not objects yet
                if key.starts_with(prefix) && check_key(&key).is_ok() {
                    out.push(ObjectMeta {
                        key,
                        size: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(&path)(e)),
        }
    }

    fn local_path(&self, key: &str) -> Result<Option<PathBuf>, StorageError> {
        let path = self.path(key)?;
        Ok(path.is_file().then_some(path))
    }

    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.path(key)?.is_file())
    }

    fn describe(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_pass_the_object_store_conformance_suite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        testsuite::run(&|name| Box::new(LocalObjects::open(&dir.join(name)).unwrap()));
    }
}

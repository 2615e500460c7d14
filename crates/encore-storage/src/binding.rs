//! What server backends data directories are bound to, for the rest of the process: the binary
//! binds a data directory once its configuration is read, and every component that opens a
//! store of that directory gets the bound backend. Unbound directories are embedded.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Backends of type `T`, by data directory.
pub(crate) struct Bound<T>(Mutex<Vec<(PathBuf, T)>>);

fn key(root: &Path) -> PathBuf {
    std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf())
}

impl<T: Clone> Bound<T> {
    pub(crate) const fn new() -> Self {
        Bound(Mutex::new(Vec::new()))
    }

    /// Binds `root` to `backend` (`None`: embedded again).
    pub(crate) fn set(&self, root: &Path, backend: Option<T>) {
        let root = key(root);
        let mut bound = self.0.lock().unwrap_or_else(|p| p.into_inner());
        bound.retain(|(r, _)| *r != root);
        if let Some(b) = backend {
            bound.push((root, b));
        }
    }

    pub(crate) fn get(&self, root: &Path) -> Option<T> {
        let root = key(root);
        let bound = self.0.lock().unwrap_or_else(|p| p.into_inner());
        bound
            .iter()
            .find(|(r, _)| *r == root)
            .map(|(_, b)| b.clone())
    }
}

/// Runs `f`, which blocks on a driver's own async runtime, off the async runtime the caller may
/// be on (a request handler of the server): a runtime cannot be blocked on from inside another,
/// so a multi-threaded runtime hands this worker's tasks to others meanwhile.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

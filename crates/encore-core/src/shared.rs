//! Where tests find `../shared` (the datasets, oracles and anchor benchmarks beside the
//! repository; `ENCORE_SHARED` names another place). A user's clone has no `../shared`, so tests
//! that need it skip, but only for that reason: when the directory is there, a missing or
//! renamed file inside it is a failure, and with `ENCORE_REQUIRE_SHARED` set (CI sets it) a
//! missing directory is a failure too. No test can turn green by skipping where the data is.

use std::path::PathBuf;

/// The shared directory for the crate at `manifest_dir` (pass `env!("CARGO_MANIFEST_DIR")`).
pub fn root(manifest_dir: &str) -> PathBuf {
    std::env::var_os("ENCORE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(manifest_dir).join("../../../shared"))
}

/// `<shared>/<relative>`, which must exist when the shared directory does; `None` (with a note
/// on stderr) only when the whole shared directory is absent and CI does not require it.
///
/// # Panics
/// When the shared directory is there but `relative` is not, or when `ENCORE_REQUIRE_SHARED`
/// is set and the shared directory is absent.
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
pub fn path(manifest_dir: &str, relative: &str) -> Option<PathBuf> {
    let root = root(manifest_dir);
    if !root.is_dir() {
        assert!(
            std::env::var_os("ENCORE_REQUIRE_SHARED").is_none(),
            "ENCORE_REQUIRE_SHARED is set but {} is absent",
            root.display()
        );
        eprintln!(
            "skipping: {} is absent (the shared data is not beside this clone)",
            root.display()
        );
        return None;
    }
    let path = root.join(relative);
    assert!(
        path.exists(),
        "{} is missing from the shared directory {} (renamed or moved?)",
        relative,
        root.display()
    );
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_inside_a_present_directory_fails() {
        let tmp = std::env::temp_dir();
        // the manifest dir three levels under a directory that has `shared` beside it
        let here = tmp.join(format!("encore-shared-{}", std::process::id()));
        let manifest = here.join("a/b/c");
        std::fs::create_dir_all(here.join("shared/datasets")).unwrap();
        std::fs::create_dir_all(&manifest).unwrap();
        let m = manifest.to_str().unwrap();
        if std::env::var_os("ENCORE_SHARED").is_none() {
            assert!(path(m, "datasets").is_some());
            let missing = std::panic::catch_unwind(|| path(m, "datasets/renamed.csv"));
            assert!(missing.is_err(), "a missing file must fail, not skip");
        }
        let _ = std::fs::remove_dir_all(&here);
    }
}

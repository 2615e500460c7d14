//! The statistics against the public reference vectors of `../shared/oracles` (skipped when
//! that directory is absent).

// tests print what they measured
#![allow(clippy::print_stderr)]

use std::path::PathBuf;

fn vectors() -> Option<serde_json::Value> {
    let root = std::env::var_os("ENCORE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = root.join("oracles/stats-vectors.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(_) => {
            eprintln!("skipping: {} is absent", path.display());
            None
        }
    }
}

#[test]
fn all_public_vectors_pass_within_tolerance() {
    let Some(file) = vectors() else { return };
    let v = encore_stats::oracle::verify(&file);
    for (id, failures) in &v.failures {
        eprintln!("{id}:\n  {}", failures.join("\n  "));
    }
    eprintln!(
        "{} vectors pass, {} fail, {} not supported yet: {:?}",
        v.results.len() - v.failures.len(),
        v.failures.len(),
        v.unsupported.len(),
        v.unsupported
    );
    assert!(v.failures.is_empty(), "{} vectors fail", v.failures.len());
    assert!(v.unsupported.is_empty(), "unsupported: {:?}", v.unsupported);
    assert_eq!(v.results.len(), 61, "the public set has 61 vectors");
}

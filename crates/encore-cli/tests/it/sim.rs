use crate::cli::{encore, stderr, stdout};
use std::path::Path;

fn generate(cwd: &Path, out: &str, seed: &str, format: &str) -> serde_json::Value {
    let o = encore(
        cwd,
        &[
            "sim", "generate", "--users", "150", "--days", "3", "--seed", seed, "--out", out,
            "--format", format, "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "catalog", "events"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn generate_is_deterministic_and_matches_its_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let report = generate(tmp.path(), "a", "7", "jsonl");
    generate(tmp.path(), "b", "7", "jsonl");
    generate(tmp.path(), "c", "8", "jsonl");
    assert_eq!(tree(&tmp.path().join("a")), tree(&tmp.path().join("b")));
    assert_ne!(tree(&tmp.path().join("a")), tree(&tmp.path().join("c")));

    // the manifest's counts are the files' line counts
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("a/manifest.json")).unwrap())
            .unwrap();
    let mut playback_lines = 0;
    for f in manifest["files"].as_array().unwrap() {
        let text = std::fs::read_to_string(tmp.path().join("a").join(f["path"].as_str().unwrap()))
            .unwrap();
        assert_eq!(
            text.lines().count() as u64,
            f["rows"].as_u64().unwrap(),
            "{}",
            f["path"]
        );
        if f["kind"] == "playback" {
            playback_lines += text.lines().count() as u64;
        }
    }
    assert_eq!(
        playback_lines,
        manifest["counts"]["playback_events"].as_u64().unwrap()
    );
    assert_eq!(report["counts"], manifest["counts"]);

    let o = encore(tmp.path(), &["sim", "verify", "a"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // a second run into the same directory is refused, and allowed with --force
    let o = encore(
        tmp.path(),
        &[
            "sim", "generate", "--users", "10", "--days", "1", "--out", "a",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not empty"));
    let o = encore(
        tmp.path(),
        &[
            "sim", "generate", "--users", "10", "--days", "1", "--out", "a", "--force",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn parquet_world_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let report = generate(tmp.path(), "w", "3", "parquet");
    assert_eq!(report["format"], "parquet");
    assert!(tmp.path().join("w/events/events-0002.parquet").is_file());
    let o = encore(tmp.path(), &["sim", "verify", "w", "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn demo_makes_a_world_in_the_data_dir_and_reuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "demo",
        "--users",
        "120",
        "--days",
        "2",
        "--data-dir",
        "d",
        "--json",
    ];
    let o = encore(tmp.path(), &args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["reused"], false);
    assert!(v["world"]["counts"]["playback_events"].as_u64().unwrap() > 100);
    assert!(tmp.path().join("d/FORMAT").is_file());
    assert!(tmp.path().join("d/worlds/demo/manifest.json").is_file());
    // it trains and evaluates on what it ingested: popularity, then ALS
    assert_eq!(v["models"][0]["model"], "popularity");
    assert_eq!(v["models"][1]["model"], "als");
    assert!(v["models"][1]["users_evaluated"].as_u64().unwrap() > 50);
    let o = encore(tmp.path(), &args, &[]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["reused"], true);

    // the time-based split of the same log: the last day is the test period
    let o = encore(
        tmp.path(),
        &["eval", "--test-days", "1", "--data-dir", "d", "--json"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["model"], "als");
    assert!(v["users_evaluated"].as_u64().unwrap() > 10, "{v}");
    assert!(v["metrics"]["ndcg@10"].as_f64().unwrap() > 0.0, "{v}");
}

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
        "--no-serve",
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
    // and registers ALS as recommender v1 in production, with the numbers it printed
    assert_eq!(v["registered"]["version"], 1);
    assert_eq!(v["registered"]["promoted"]["to"], 1);
    assert_eq!(
        v["registered"]["metrics"]["ndcg@10"],
        v["models"][1]["metrics"]["ndcg@10"]
    );
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

    // train on the whole log: a loss per iteration, falling, and a content-addressed artifact
    let o = encore(
        tmp.path(),
        &[
            "train",
            "--model",
            "als",
            "--factors",
            "8",
            "--iterations",
            "4",
            "--name",
            "home",
            "--data-dir",
            "d",
            "--out",
            "m.encore",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let loss: Vec<f64> = serde_json::from_value(v["loss"].clone()).unwrap();
    assert_eq!(loss.len(), 4, "{v}");
    assert!(loss[3] < loss[0], "{loss:?}");
    assert_eq!(v["source"], "event-log");
    // shown relative to the data directory, as `models show` shows it
    let checksum = v["checksum"].as_str().unwrap();
    assert_eq!(v["artifact"], format!("models/artifacts/{checksum}.encore"));
    let artifact = tmp.path().join("d").join(v["artifact"].as_str().unwrap());
    let bytes = std::fs::read(&artifact).unwrap();
    assert_eq!(bytes.len() as u64, v["artifact_bytes"].as_u64().unwrap());
    assert_eq!(std::fs::read(tmp.path().join("m.encore")).unwrap(), bytes);
    assert_eq!(v["name"], "home");
    assert_eq!(v["version"], 1);
    assert!(
        v["lineage"]["snapshot_sha256"].as_str().unwrap().len() == 64,
        "{v}"
    );

    // the registry: ALS v2 into production, a deliberately worse v3 (1 iteration, 4 factors)
    // refused, forced, rolled back
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", "d", "--json"]);
        let o = encore(tmp.path(), &all, &[("ENCORE_ACTOR", "ci")]);
        (o.status.code(), stdout(&o), stderr(&o))
    };
    let (code, out, err) = run(&[
        "train",
        "--name",
        "home",
        "--model",
        "als",
        "--promote",
        "--tag",
        "team=discovery",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v2: serde_json::Value = serde_json::from_str(&out).unwrap();
    let als_ndcg = v2["metrics"]["ndcg@10"].as_f64().unwrap();
    assert_eq!(v2["promoted"]["to"], 2);
    let (code, out, err) = run(&[
        "train",
        "--name",
        "home",
        "--model",
        "als",
        "--iterations",
        "1",
        "--factors",
        "4",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v3: serde_json::Value = serde_json::from_str(&out).unwrap();
    let worse = v3["metrics"]["ndcg@10"].as_f64().unwrap();
    assert!(worse < als_ndcg - 0.005, "{worse} vs {als_ndcg}");
    let (code, _, err) = run(&["models", "promote", "home", "3"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{worse:.4}")) && err.contains(&format!("{als_ndcg:.4}")),
        "{err}"
    );
    let (code, _, err) = run(&[
        "models", "promote", "home", "3", "--force", "--reason", "test",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&["models", "rollback", "home", "--reason", "worse"]);
    assert_eq!(code, Some(0), "{err}");
    let back: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (back["from"].as_u64(), back["to"].as_u64()),
        (Some(3), Some(2))
    );
    let (_, out, _) = run(&["models", "history", "home"]);
    let history: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1]["forced"], true);
    assert!(history.iter().all(|m| m["actor"] == "ci"));
    // the card shows the numbers `models show` has
    let (_, out, _) = run(&["models", "show", "home@production"]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["tags"]["team"], "discovery");
    let o = encore(
        tmp.path(),
        &["models", "card", "home@production", "--data-dir", "d"],
        &[],
    );
    let card = stdout(&o);
    let ndcg = shown["metrics"]["ndcg@10"].as_f64().unwrap();
    let pop = shown["baseline"]["ndcg@10"].as_f64().unwrap();
    assert!(
        card.contains(&format!("| ndcg@10 | {ndcg:.4} | {pop:.4} | {ndcg:.4} |")),
        "{card}"
    );
    let (code, _, err) = run(&["models", "delete", "home@2"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("production"), "{err}");

    // a flipped byte in the production artifact: show and card refuse, naming the file
    // shown relative to the data directory
    let artifact = shown["artifact"].as_str().unwrap().to_owned();
    assert!(artifact.starts_with("models/artifacts/"), "{artifact}");
    let artifact = tmp.path().join("d").join(&artifact);
    let mut bytes = std::fs::read(&artifact).unwrap();
    let at = bytes.len() - 9;
    bytes[at] ^= 0x01;
    std::fs::write(&artifact, &bytes).unwrap();
    for cmd in ["show", "card"] {
        let (code, _, err) = run(&["models", cmd, "home@production"]);
        assert_eq!(code, Some(1), "{cmd}: {err}");
        assert!(
            err.contains(".encore") && err.contains("checksum"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn train_reads_a_tsv_and_names_the_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tsv = String::from("userID\tartistID\tweight\n");
    for u in 0..30 {
        for i in 0..6 {
            tsv.push_str(&format!("{u}\t{}\t{}\n", (u % 3) * 5 + i, 1 + i));
        }
    }
    std::fs::write(tmp.path().join("pairs.tsv"), &tsv).unwrap();
    let o = encore(
        tmp.path(),
        &[
            "train",
            "--train",
            "pairs.tsv",
            "--model",
            "bpr",
            "--epochs",
            "5",
            "--factors",
            "4",
            "--data-dir",
            "d",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["users"].as_u64(), v["interactions"].as_u64()),
        (Some(30), Some(180))
    );
    assert_eq!(v["loss"].as_array().unwrap().len(), 5);
    assert_eq!(v["config"]["regularization"].as_f64(), Some(0.01f32 as f64));

    tsv.push_str("7\tnot-a-number\t3\n");
    std::fs::write(tmp.path().join("pairs.tsv"), &tsv).unwrap();
    let o = encore(
        tmp.path(),
        &["train", "--train", "pairs.tsv", "--data-dir", "d"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("pairs.tsv:182") && err.contains("item id"),
        "{err}"
    );
}

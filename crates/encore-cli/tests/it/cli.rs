use std::path::Path;
use std::process::{Command, Output};

pub fn encore(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_encore"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("ENCORE_CONFIG")
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ENCORE__")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run encore")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_lists_commands_on_every_level() {
    let tmp = tempfile::tempdir().unwrap();
    let o = encore(tmp.path(), &["--help"], &[]);
    assert!(o.status.success());
    for cmd in ["demo", "config", "sim", "data"] {
        assert!(stdout(&o).contains(cmd), "--help misses {cmd}");
    }
    for args in [
        &["sim", "--help"][..],
        &["sim", "generate", "--help"],
        &["config", "show", "--help"],
    ] {
        let o = encore(tmp.path(), args, &[]);
        assert!(o.status.success(), "{args:?}");
        assert!(
            stdout(&o).contains("--json"),
            "{args:?} has the global flags"
        );
    }
    let o = encore(tmp.path(), &["--version"], &[]);
    assert_eq!(
        stdout(&o).trim(),
        format!("encore {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let o = encore(tmp.path(), &["frobnicate"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let o = encore(
        tmp.path(),
        &["sim", "generate", "--out", "x", "--start", "2026-02-30"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        "error: --start \"2026-02-30\" is not a date (use YYYY-MM-DD, e.g. 2026-01-05)"
    );
}

#[test]
fn config_file_errors_name_key_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("encore.toml"),
        "[server]\nbind = \"127.0.0.1:1\"\n\n[log]\nlevl = \"debug\"\n",
    )
    .unwrap();
    let o = encore(tmp.path(), &["config", "show"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: invalid config encore.toml:5:1: key `log.levl`: unknown field `levl`, expected `level` or `format` (run `encore config init`"),
        "{err}"
    );
    assert!(
        !err.contains("stack backtrace") && !err.contains("caused by"),
        "no backtrace by default"
    );
}

#[test]
fn config_layers_and_sources_are_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let o = encore(tmp.path(), &["config", "init"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(tmp.path().join("encore.toml")).unwrap();
    assert!(text.contains("# One of: error, warn, info, debug, trace"));
    let o = encore(tmp.path(), &["config", "init"], &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "refuses to overwrite without --force"
    );

    let o = encore(
        tmp.path(),
        &["config", "show", "--json", "--log-format", "json"],
        &[("ENCORE__DEMO__SEED", "99")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["values"]["demo.seed"]["value"], 99);
    assert_eq!(
        v["values"]["demo.seed"]["source"]["var"],
        "ENCORE__DEMO__SEED"
    );
    assert_eq!(v["values"]["log.format"]["source"]["name"], "--log-format");
    assert_eq!(v["values"]["data.dir"]["source"]["layer"], "file");
    assert_eq!(v["values"]["data.dir"]["source"]["line"], 9);
}

#[test]
fn bad_env_override_exits_2_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let o = encore(
        tmp.path(),
        &["config", "show"],
        &[("ENCORE__DEMO__USERS", "lots")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        "error: bad value for `demo.users` from env ENCORE__DEMO__USERS: \"lots\" is not valid: \
         expected an integer (run `encore config init` to see every key, its type and default)"
    );
    let o = encore(
        tmp.path(),
        &["config", "show", "--json"],
        &[("ENCORE__NOPE__X", "1")],
    );
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["error"]["code"], "invalid_argument");
    assert_eq!(
        v["error"]["message"],
        "unknown config key `nope.x` (from env ENCORE__NOPE__X)"
    );
}

#[test]
fn debug_level_prints_the_error_details() {
    let tmp = tempfile::tempdir().unwrap();
    let o = encore(
        tmp.path(),
        &["config", "show", "--log-level", "debug"],
        &[("ENCORE__DEMO__DAYS", "0")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("code: invalid_argument"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn second_process_on_a_locked_data_dir_fails_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let held = encore_storage::DataDir::open(&data).unwrap();
    let o = encore(
        tmp.path(),
        &["data", "info", "--data-dir", data.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let expected = format!(
        "error: data directory {} is in use by another encore process (pid {}) (stop the other \
         process, or pass --data-dir to use another directory)",
        data.display(),
        std::process::id()
    );
    assert_eq!(stderr(&o).trim(), expected);
    drop(held);
    let o = encore(
        tmp.path(),
        &[
            "data",
            "info",
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["format_version"], 1);
}

/// Numeric flags outside their range exit 2 naming it (never a panic or a nonsense model);
/// read-only commands refuse a data directory that does not exist instead of making it.
#[test]
fn numeric_flags_and_missing_data_dirs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, range) in [
        (&["train", "--factors", "0"][..], "1..=1024"),
        (&["train", "--iterations", "0"], "1..=1000"),
        (
            &["train", "--model", "bpr", "--learning-rate=-0.1"],
            "(0, inf)",
        ),
        (&["eval", "--alpha", "nan"], "(0, inf)"),
        (&["eval", "--k", "0"], "1..=10000"),
        (&["experiments", "report", "x", "--alpha", "1.5"], "(0, 1)"),
        (
            &["sim", "generate", "--days", "0", "--out", "w"],
            "1..=3650",
        ),
        (&["events", "quarantine", "--limit", "0"], "1..=10000000"),
        (&["traces", "stats", "--bucket-minutes=-5"], "0..=525600"),
        (
            &["models", "promote", "m", "2", "--gate-tolerance=-1"],
            "[0, inf)",
        ),
        (&["models", "promote", "m", "0"], "1..=4000000000"),
    ] {
        let o = encore(tmp.path(), args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(range), "{args:?}: {}", stderr(&o));
    }
    for args in [
        &["events", "stats"][..],
        &["models", "list"],
        &["traces", "list"],
        &["audit", "verify"],
        &["data", "info"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--data-dir", "TYPO"]);
        let o = encore(tmp.path(), &all, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("TYPO does not exist"), "{}", stderr(&o));
    }
    assert!(!tmp.path().join("TYPO").exists(), "nothing made");

    // an ingest whose every row is rejected fails (exit 1); one good row makes it a success
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"user_id\": \"u1\"}\nnot json\n").unwrap();
    let o = encore(tmp.path(), &["ingest", bad.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("every row was rejected"),
        "{}",
        stderr(&o)
    );
}

/// A Spotify export given to `ingest` is refused with the importer's command, and the
/// importer names the rows it leaves out.
#[test]
fn spotify_exports_are_pointed_to_the_importer() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("StreamingHistory_music_0.json");
    std::fs::write(
        &file,
        r#"[{"endTime":"2023-01-05 13:45","artistName":"Robyn","trackName":"Dancing On My Own","msPlayed":287000},
            {"endTime":"soon","artistName":"A","trackName":"B","msPlayed":1}]"#,
    )
    .unwrap();
    let o = encore(tmp.path(), &["ingest", file.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("encore import spotify-history"),
        "{}",
        stderr(&o)
    );
    let o = encore(
        tmp.path(),
        &[
            "import",
            "spotify-history",
            file.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["ingest"]["accepted"], 1);
    assert_eq!(r["dropped"]["no end time"], 1);
    assert!(
        r["dropped_examples"][0]
            .as_str()
            .unwrap()
            .ends_with("entry 1: no end time")
    );
}

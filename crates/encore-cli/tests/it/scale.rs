//! Several nodes sharing one deployment's state: metadata on PostgreSQL, model artifacts on
//! S3 (a moto server in CI), each node with a data directory of its own.

use crate::serve::{Stop, start_full};
use encore_storage::metadata::testsuite::PostgresScratch;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The S3-protocol test server (`ENCORE_TEST_S3`, default `http://127.0.0.1:5055`) with the
/// bucket `encore-test`; `None` when there is none and CI does not require it.
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
fn s3_endpoint() -> Option<String> {
    use std::io::{Read, Write};
    let endpoint =
        std::env::var("ENCORE_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:5055".into());
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let made = std::net::TcpStream::connect(host).and_then(|mut c| {
        write!(
            c,
            "PUT /encore-test HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        c.read_to_string(&mut answer)?;
        Ok(answer)
    });
    match made {
        Ok(answer) => {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            Some(endpoint)
        }
        Err(e) => {
            assert!(
                std::env::var_os("ENCORE_REQUIRE_SERVICES").is_none(),
                "ENCORE_REQUIRE_SERVICES is set but no S3 server answers at {endpoint}: {e}"
            );
            eprintln!("skipped: no S3 server at {endpoint} ({e}); set ENCORE_TEST_S3");
            None
        }
    }
}

fn encore(cwd: &Path, env: &[(String, String)], args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "encore {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn served_version(port: u16) -> Option<u64> {
    let r = encore_http::request(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/v1/users/u0/recommendations?n=3",
        b"",
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v["model_version"].as_u64()
}

#[test]
fn serve_nodes_share_the_registry_and_artifacts_and_outlive_each_other() {
    let Some(pg) = PostgresScratch::new() else {
        return;
    };
    let Some(s3) = s3_endpoint() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("ENCORE__STORAGE__METADATA", pg.url.clone()),
        ("ENCORE__STORAGE__METADATA_SCHEMA", pg.prefix.clone()),
        (
            "ENCORE__STORAGE__OBJECTS",
            format!("s3://encore-test/{}", pg.prefix),
        ),
        ("ENCORE__SERVING__MODEL", "home".into()),
        ("AWS_ENDPOINT_URL", s3),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let dir = tmp.path();
    encore(
        dir,
        &env,
        &[
            "sim", "generate", "--out", "world", "--users", "200", "--days", "10", "--seed", "5",
        ],
    );
    // a training node: its own data directory, the shared registry and artifacts
    encore(dir, &env, &["ingest", "world", "--data-dir", "train"]);
    encore(
        dir,
        &env,
        &[
            "train",
            "--model",
            "als",
            "--name",
            "home",
            "--promote",
            "--data-dir",
            "train",
        ],
    );
    encore(
        dir,
        &env,
        &[
            "train",
            "--model",
            "bpr",
            "--name",
            "home",
            "--data-dir",
            "train",
        ],
    );
    assert!(
        !dir.join("train/models").exists(),
        "artifacts went to the object store, not the data directory"
    );
    // two serving nodes, each with an empty data directory of its own
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (a, port_a, _) = start_full(&dir.join("a"), &pairs);
    let _a = Stop(a);
    let (b, port_b, _) = start_full(&dir.join("b"), &pairs);
    let mut b = Stop(b);
    assert_eq!(served_version(port_a), Some(1));
    assert_eq!(served_version(port_b), Some(1));
    // a promotion through node b is served by node a
    let r = encore_http::request(
        &format!("127.0.0.1:{port_b}"),
        "POST",
        "/v1/models/home/aliases/production",
        br#"{"version": 2, "force": true, "reason": "two nodes"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // both nodes pick the move up from the shared registry (each polls it every 200 ms)
    let started = Instant::now();
    while [port_a, port_b]
        .iter()
        .any(|p| served_version(*p) != Some(2))
    {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "2 s after the promotion through node b: node a serves {:?}, node b {:?}",
            served_version(port_a),
            served_version(port_b)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // node b killed: node a keeps answering, and the move is in the shared history
    b.0.kill().unwrap();
    let _ = b.0.wait();
    assert_eq!(served_version(port_a), Some(2));
    let history = encore(
        dir,
        &env,
        &["models", "history", "home", "--data-dir", "train", "--json"],
    );
    assert!(history.contains("two nodes"), "{history}");
    for node in ["a", "b"] {
        assert!(!dir.join(node).join("models").exists(), "{node}");
    }
}

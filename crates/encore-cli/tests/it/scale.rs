//! Several nodes sharing one deployment's state: metadata on PostgreSQL, model artifacts on
//! S3 (a moto server in CI), each node with a data directory of its own.

use crate::serve::{Stop, start_full};
use encore_storage::kv::testsuite::RedisScratch;
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

/// A training node and two serving nodes (`--role serve`) on the real services (metadata on
/// PostgreSQL, artifacts on S3, the bus on NATS, online features on Redis), each with a data
/// directory of its own: a promotion through either serving node is served by both within
/// 2 s; after SIGKILL of one, the other keeps answering; no node's directory holds an artifact.
#[test]
fn serve_nodes_share_the_registry_and_artifacts_and_outlive_each_other() {
    let Some(pg) = PostgresScratch::new() else {
        return;
    };
    let Some(s3) = s3_endpoint() else {
        return;
    };
    let Some(nats) = nats_url() else {
        return;
    };
    let Some(redis) = RedisScratch::new("models") else {
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
        ("ENCORE__STORAGE__BUS", nats),
        (
            "ENCORE__STORAGE__BUS_STREAM",
            format!("models_{}", pg.prefix),
        ),
        ("ENCORE__STORAGE__ONLINE", redis.url.clone()),
        ("ENCORE__STORAGE__ONLINE_PREFIX", redis.prefix.clone()),
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
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("ENCORE__SERVER__ROLE", "serve"));
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
    // and a promotion through node a (a rollback to 1) is served by node b
    let r = encore_http::request(
        &format!("127.0.0.1:{port_a}"),
        "POST",
        "/v1/models/home/aliases/production",
        br#"{"version": 1, "force": true, "reason": "back through a"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let started = Instant::now();
    while [port_a, port_b]
        .iter()
        .any(|p| served_version(*p) != Some(1))
    {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "2 s after the promotion through node a: node a serves {:?}, node b {:?}",
            served_version(port_a),
            served_version(port_b)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // node b killed: node a keeps answering, and the moves are in the shared history
    b.0.kill().unwrap();
    let _ = b.0.wait();
    for _ in 0..20 {
        assert_eq!(served_version(port_a), Some(1));
    }
    let history = encore(
        dir,
        &env,
        &["models", "history", "home", "--data-dir", "train", "--json"],
    );
    assert!(history.contains("two nodes"), "{history}");
    assert!(history.contains("back through a"), "{history}");
    for node in ["a", "b"] {
        assert!(!dir.join(node).join("models").exists(), "{node}");
    }
}

/// What DuckDB (with httpfs) reads in the lake on S3 under `s3://encore-test/<prefix>/lake`:
/// playback rows and distinct event ids.
fn lake_on_s3(python: &Path, endpoint: &str, prefix: &str) -> (u64, u64) {
    let script = r#"
import json, os, sys, duckdb, duckdb_extension_httpfs
endpoint, prefix = sys.argv[1], sys.argv[2]
ext = os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions",
                   "v" + duckdb.__version__, "httpfs.duckdb_extension")
con = duckdb.connect()
con.execute(f"LOAD '{ext}'")
host = endpoint.split("://", 1)[1].rstrip("/")
for k, v in [("s3_endpoint", host), ("s3_use_ssl", "false"), ("s3_url_style", "path"),
             ("s3_access_key_id", "test"), ("s3_secret_access_key", "test"),
             ("s3_region", "us-east-1")]:
    con.execute(f"SET {k} = '{v}'")
try:
    rows = con.execute(f"""
        SELECT count(*), count(DISTINCT event_id)
        FROM read_parquet('s3://encore-test/{prefix}/lake/playback/*/*.parquet',
                          hive_partitioning = true)""").fetchone()
except duckdb.IOException:
    rows = (0, 0)  # no segment yet
print(json.dumps(rows))
"#;
    let out = Command::new(python)
        .args(["-c", script, endpoint, prefix])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: (u64, u64) = serde_json::from_slice(&out.stdout).unwrap();
    v
}

/// The NATS server with JetStream (`ENCORE_TEST_NATS`, default `nats://127.0.0.1:4222`);
/// `None` when there is none and CI does not require it.
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
fn nats_url() -> Option<String> {
    let url = std::env::var("ENCORE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    match std::net::TcpStream::connect(url.trim_start_matches("nats://")) {
        Ok(_) => Some(url),
        Err(e) => {
            assert!(
                std::env::var_os("ENCORE_REQUIRE_SERVICES").is_none(),
                "ENCORE_REQUIRE_SERVICES is set but no NATS server answers at {url}: {e}"
            );
            eprintln!("skipped: no NATS server at {url} ({e}); set ENCORE_TEST_NATS");
            None
        }
    }
}

const BUS_FEATURES: &str = r#"
[entities.user]
keys = ["user_id"]

[views.listening]
entity = "user"
ttl = "3d"
features = [{ name = "plays_1d", agg = "count", window = "1d" }]

[services.home]
views = ["listening"]
"#;

/// `n` plays of `user` in the last minute, with event ids of their own.
fn recent_plays(user: &str, first: u64, n: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (first..first + n)
        .map(|i| {
            serde_json::json!({"event_id": format!("0b7f6c1e-9d2a-4c8e-8f3a-{i:012x}"),
                "schema_version": 1, "user_id": user, "session_id": "s1",
                "ts_start_ms": now - 60_000 + i as i64, "ts_end_ms": now - 30_000 + i as i64,
                "item_id": "t1", "item_type": "track", "item_duration_ms": 200000,
                "ms_played": 30_000, "reason_start": "clickrow", "reason_end": "trackdone",
                "context_type": "album", "platform": "ios", "country": "SE", "tier": "premium",
                "consent": {"personalization": true, "analytics": true}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn plays_1d(port: u16, user: &str) -> Option<f64> {
    let body = serde_json::json!({"service": "home", "entities": [{"user_id": user}]}).to_string();
    let r = encore_http::request(
        &format!("127.0.0.1:{port}"),
        "POST",
        "/v1/features",
        body.as_bytes(),
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    v["rows"][0]["values"]["listening__plays_1d"].as_f64()
}

/// Nodes with roles on the real services: the bus on NATS JetStream, metadata on PostgreSQL,
/// online features on Redis, objects (the lake) on S3. An ingest node, a worker writing the
/// bus into its event log and the online store (a second worker standing by: the lease is the
/// first one's), two serving nodes reading the online store. Plays posted to the ingest node
/// show in online features on both serving nodes within 2 s; the ingest node killed with
/// SIGKILL in the middle of a stream of batches loses no acknowledged event: each is in the
/// worker's log exactly once, and DuckDB reads as many rows, all distinct, in the lake on S3.
#[test]
fn an_ingest_node_a_worker_and_two_serving_nodes_share_the_bus() {
    use encore_ingest::{IngestOptions, Ingestor};
    let Some(pg) = PostgresScratch::new() else {
        return;
    };
    let Some(nats) = nats_url() else {
        return;
    };
    let Some(redis) = RedisScratch::new("bus") else {
        return;
    };
    let Some(s3) = s3_endpoint() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let env: Vec<(String, String)> = [
        ("ENCORE__STORAGE__METADATA", pg.url.clone()),
        ("ENCORE__STORAGE__METADATA_SCHEMA", pg.prefix.clone()),
        ("ENCORE__STORAGE__BUS", nats),
        ("ENCORE__STORAGE__BUS_STREAM", format!("bus_{}", pg.prefix)),
        ("ENCORE__STORAGE__ONLINE", redis.url.clone()),
        ("ENCORE__STORAGE__ONLINE_PREFIX", redis.prefix.clone()),
        (
            "ENCORE__STORAGE__OBJECTS",
            format!("s3://encore-test/{}", pg.prefix),
        ),
        ("ENCORE__STORAGE__SEAL_INTERVAL_S", "1".into()),
        ("AWS_ENDPOINT_URL", s3.clone()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // the feature definitions, shared through PostgreSQL
    std::fs::write(dir.join("features.toml"), BUS_FEATURES).unwrap();
    encore(
        dir,
        &env,
        &["features", "apply", "features.toml", "--data-dir", "a"],
    );
    let node = |name: &str, role: &str| {
        let mut pairs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("ENCORE__SERVER__ROLE", role));
        let (child, port, _) = start_full(&dir.join(name), &pairs);
        (Stop(child), port)
    };
    let (worker, port_w) = node("worker", "worker");
    // a second worker stands by: the lake's lease is the first one's
    let (_standby, port_standby) = node("standby", "worker");
    let (_a, port_a) = node("a", "serve");
    let (_b, port_b) = node("b", "serve");
    let (mut ingest, port_i) = node("ingest", "ingest");

    // plays through the ingest node reach both serving nodes' online features
    let r = encore_http::request(
        &format!("127.0.0.1:{port_i}"),
        "POST",
        "/v1/events",
        recent_plays("bus-u1", 1, 3).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let acked = Instant::now();
    while [port_a, port_b]
        .iter()
        .any(|p| plays_1d(*p, "bus-u1") != Some(3.0))
    {
        assert!(
            acked.elapsed() < Duration::from_secs(2),
            "2 s after the ingest node's acknowledgement: node a has {:?}, node b {:?}",
            plays_1d(port_a, "bus-u1"),
            plays_1d(port_b, "bus-u1")
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // a stream of batches into the ingest node, killed with SIGKILL in the middle of it
    let batches = crate::serve::batches();
    let total: usize = batches.iter().map(|b| b.0.len()).sum();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&sent);
    let client = std::thread::spawn(move || {
        let mut acked: Vec<String> = Vec::new();
        for (ids, body) in &batches {
            match encore_http::request(&format!("127.0.0.1:{port_i}"), "POST", "/v1/events", body) {
                Ok(r) if r.status == 200 => {
                    acked.extend(ids.iter().cloned());
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(r) => panic!("unexpected {}: {}", r.status, r.body),
                // the node died: the batch in flight was not acknowledged
                Err(_) => break,
            }
        }
        acked
    });
    // killed while the client sends its third batch
    while sent.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    ingest.0.kill().unwrap();
    let _ = ingest.0.wait();
    let acked = client.join().unwrap();
    assert!(
        !acked.is_empty(),
        "some batches were acknowledged before the kill"
    );
    // the ingest node back on its data directory: its outbox hands on what it still holds
    let (_ingest, _) = node("ingest", "ingest");
    // every acknowledged event reaches the worker's log, once
    // the worker has them all once its log holds as many plays (it is read, id by id, once
    // the worker has stopped: it holds its data directory)
    let started = Instant::now();
    let plays = |port: u16| -> u64 {
        encore_http::request(&format!("127.0.0.1:{port}"), "GET", "/v1/events/stats", b"")
            .ok()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["plays"].as_u64())
            .unwrap_or(0)
    };
    while plays(port_w) < acked.len() as u64 + 3 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the worker's log holds {} plays, {} were acknowledged",
            plays(port_w),
            acked.len() + 3
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        plays(port_standby),
        0,
        "the standby worker wrote the lake too"
    );
    // the lake on S3, as DuckDB reads it, holds what the worker's log holds, each event once
    let logged = plays(port_w);
    match crate::ecosystem::python() {
        Some(python) => {
            let mut lake = (0, 0);
            while lake != (logged, logged) {
                assert!(
                    started.elapsed() < Duration::from_secs(40),
                    "DuckDB reads {lake:?} (rows, distinct ids) in the lake on S3; the worker's \
                     log holds {logged}"
                );
                std::thread::sleep(Duration::from_millis(500));
                lake = lake_on_s3(&python, &s3, &pg.prefix);
            }
            #[allow(clippy::print_stderr, reason = "the test says what it measured")]
            {
                eprintln!(
                    "DuckDB reads {} rows, {} distinct ids, in the lake on S3",
                    lake.0, lake.1
                );
            }
        }
        None => {
            assert!(
                std::env::var_os("ENCORE_REQUIRE_TOOLS").is_none(),
                "ENCORE_REQUIRE_TOOLS is set but there is no python with duckdb"
            );
            #[allow(clippy::print_stderr, reason = "a skipped step says why")]
            {
                eprintln!("the lake on S3 not read: no python with duckdb");
            }
        }
    }
    drop(worker);
    let ingestor = Ingestor::open(&dir.join("worker"), IngestOptions::default()).unwrap();
    let stored = crate::serve::stored_ids(&ingestor);
    for id in &acked {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged event {id} is in the worker's log exactly once ({} acknowledged, \
             {} stored, {:?} after the kill)",
            acked.len(),
            stored.len(),
            started.elapsed()
        );
    }
    assert_eq!(stored.get("0b7f6c1e-9d2a-4c8e-8f3a-000000000001"), Some(&1));
    let kv =
        encore_storage::kv::redis::RedisKv::open(&redis.url, &format!("{}:features", redis.prefix))
            .unwrap();
    let kv: &dyn encore_storage::kv::KvStore = &kv;
    // the serving nodes read bus-u1's features from there (the worker wrote them)
    let mut entities = Vec::new();
    kv.reader()
        .unwrap()
        .range("columns", "", "\u{10ffff}", &mut |k, _| {
            entities.push(k.to_owned());
            true
        })
        .unwrap();
    assert!(
        entities.iter().any(|k| k.ends_with("bus-u1")),
        "no online features of bus-u1 in Redis: {entities:?}"
    );
    #[allow(clippy::print_stderr, reason = "the test says what it measured")]
    {
        eprintln!(
            "{} of {total} events acknowledged before the SIGKILL, {} in the worker's log {:?} \
             after it",
            acked.len(),
            stored.len(),
            started.elapsed()
        );
    }
}

//! Hostile input against a real `encore serve`: huge and malformed parameters, gzip bombs,
//! encodings it does not read, bodies over the limit. Every answer is a 4xx with the JSON error
//! body, and the server keeps serving; and the storage commands on damaged files: `events
//! verify` changes nothing and fails, `events repair` keeps every intact record.

use crate::serve::{start, terminate};
use encore_server::client::Connection;

fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, serde_json::Value) {
    let r = Connection::open(addr)
        .unwrap()
        .send(method, path, headers, body)
        .unwrap();
    let v = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{method} {path}: {} is not JSON ({e}): {}", r.status, r.body));
    (r.status, v)
}

fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn hostile_parameters_and_bodies_get_4xx_and_the_server_lives_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, port) = start(&tmp.path().join("data"));
    let addr = format!("127.0.0.1:{port}");

    for path in [
        "/v1/evals/calibration?judge=a&human=b&bins=1469635329",
        "/v1/evals/calibration?judge=a&human=b&bins=0",
        "/v1/alerts/history?limit=9223372036854775808",
        "/v1/alerts/history?limit=100000000000",
        "/v1/evals/quality?limit=9223372036854775808",
        "/v1/evals/scores?limit=0",
        "/v1/spans?limit=18446744073709551616",
        "/v1/spans/stats?limit=99999999",
        "/v1/evals/quality?from_ms=abc",
    ] {
        let (status, v) = send(&addr, "GET", path, &[], b"");
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(error_code(&v), "invalid_argument", "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("limit")
                || v["error"]["message"].as_str().unwrap().contains("bins")
                || v["error"]["message"].as_str().unwrap().contains("from_ms"),
            "{path}: the message names the parameter: {v}"
        );
    }

    // a gzip bomb: 64 MiB of zeros in 64 KiB, against a 16 MiB ceiling
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let proto = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "gzip"),
    ];
    let (status, v) = send(&addr, "POST", "/v1/traces", &proto, &bomb);
    assert_eq!((status, error_code(&v)), (413, "too_large"), "{v}");

    // encodings that are not read are refused, not taken as plain bytes
    let br = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "br"),
    ];
    let (status, v) = send(&addr, "POST", "/v1/traces", &br, b"xx");
    assert_eq!((status, error_code(&v)), (415, "unsupported_media"), "{v}");
    let (status, v) = send(&addr, "POST", "/v1/events", &[("Content-Encoding", "gzip")], b"[]");
    assert_eq!((status, error_code(&v)), (415, "unsupported_media"), "{v}");

    // a body over the limit is the same 413 JSON error on every route
    let huge = vec![b' '; (16 << 20) + 1];
    for path in ["/v1/events", "/v1/features", "/v1/recommendations", "/v1/evals/rules"] {
        let (status, v) = send(&addr, "POST", path, &[], &huge);
        assert_eq!((status, error_code(&v)), (413, "too_large"), "{path}: {v}");
    }
    // a method the route does not have: JSON too
    let (status, v) = send(&addr, "DELETE", "/v1/events/stats", &[], b"");
    assert_eq!(status, 405, "{v}");

    // still serving
    let (status, v) = send(&addr, "GET", "/healthz", &[], b"");
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")), "{v}");
    assert_eq!(v["storage"], "ok");
    terminate(&child);
}

fn encore(data: &std::path::Path, args: &[&str]) -> (bool, serde_json::Value, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    // the report first; a failing command adds its JSON error after it
    let v = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<serde_json::Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or(serde_json::Value::Null);
    (
        o.status.success(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The newest WAL file of the playback log that holds records.
fn playback_wal(data: &std::path::Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(data.join("events/playback/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 8)
        .collect();
    files.sort();
    files.pop().unwrap()
}

/// The issue's second reproduction, end to end: events acknowledged over HTTP, SIGKILL, one byte
/// flipped in the middle of the WAL. The server refuses to start naming the file and offset,
/// `events verify` fails without changing a byte, `events repair` keeps every record after the
/// damage, and the server then holds every acknowledged event but the damaged record's.
#[test]
fn a_flipped_wal_byte_is_refused_verified_and_repaired_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let batches = crate::serve::batches();
    let (mut child, port) = start(&data);
    let addr = format!("127.0.0.1:{port}");
    let mut acked = 0usize;
    for (ids, body) in batches.iter().take(6) {
        let r = encore_server::client::request(&addr, "POST", "/v1/events", body).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        acked += ids.len();
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let wal = playback_wal(&data);
    let mut bytes = std::fs::read(&wal).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&wal, &bytes).unwrap();

    let (ok, v, _) = encore(&data, &["events", "verify"]);
    assert!(!ok, "verify fails on damage: {v}");
    let problems = v["problems"].to_string();
    assert!(problems.contains("damaged") && problems.contains("offset"), "{v}");
    assert_eq!(std::fs::read(&wal).unwrap(), bytes, "verify changed nothing");

    let serve = std::process::Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("ENCORE__SERVER__OTLP_GRPC", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "serve refuses to start");
    assert!(
        stderr.contains("is damaged") && stderr.contains(&wal.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("encore events repair"), "the error says what to do: {stderr}");

    let (ok, v, err) = encore(&data, &["events", "repair"]);
    assert!(ok, "{err}");
    let wal_report = &v["tables"][0][1]["wal"][0];
    let kept = wal_report["rows_kept"].as_u64().unwrap() as usize;
    let quarantined = wal_report["quarantined"].as_str().unwrap();
    assert!(quarantined.contains("quarantine/damaged"), "{v}");
    assert_eq!(std::fs::read(quarantined).unwrap(), bytes, "the original, unchanged");
    assert!(kept > 0, "records after the damage are kept: {v}");

    let (ok, v, err) = encore(&data, &["events", "verify"]);
    assert!(ok, "verify passes after repair: {v} {err}");
    let stored: u64 = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[1]["sealed_rows"].as_u64().unwrap() + t[1]["unsealed_rows"].as_u64().unwrap())
        .sum();
    // one batch of 1,000 events was one WAL record: exactly that was lost
    assert_eq!(stored as usize, acked - 1_000, "{v}");
}

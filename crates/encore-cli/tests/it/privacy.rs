//! Personal data through a real server: a corpus of emails, card numbers, phone numbers and
//! addresses in every string a span has leaves no raw value in the data directory (Parquet
//! decoded, WAL and SQLite read as bytes) or in any answer; lookalikes are kept; listeners whose
//! ids hold an email stay distinct.

use crate::serve::{Stop, start_full, terminate};
use std::path::{Path, PathBuf};

/// Every string of every column of a Parquet file (nested columns included).
fn parquet_strings(path: &Path) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;
    fn walk(a: &dyn Array, out: &mut Vec<String>) {
        match a.data_type() {
            DataType::Utf8 => out.extend(a.as_string::<i32>().iter().flatten().map(str::to_owned)),
            DataType::LargeUtf8 => {
                out.extend(a.as_string::<i64>().iter().flatten().map(str::to_owned))
            }
            DataType::Binary => out.extend(
                a.as_binary::<i32>()
                    .iter()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            ),
            DataType::Struct(_) => a.as_struct().columns().iter().for_each(|c| walk(c, out)),
            DataType::List(_) => walk(a.as_list::<i32>().values(), out),
            DataType::Map(..) => {
                let m = a.as_map();
                walk(m.keys(), out);
                walk(m.values(), out);
            }
            _ => {}
        }
    }
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        for c in batch.columns() {
            walk(c.as_ref(), &mut out);
        }
    }
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Where in the data directory (file, needle) any of `needles` is found, decompressed.
pub(crate) fn find_in_data_dir(dir: &Path, needles: &[&str]) -> Vec<(String, String)> {
    let mut hits = Vec::new();
    for f in files(dir) {
        let name = f.display().to_string();
        let texts: Vec<Vec<u8>> = if name.ends_with(".parquet") {
            parquet_strings(&f)
                .into_iter()
                .map(String::into_bytes)
                .collect()
        } else if name.ends_with(".zst") {
            vec![zstd::decode_all(std::fs::File::open(&f).unwrap()).unwrap_or_default()]
        } else {
            vec![std::fs::read(&f).unwrap()]
        };
        for n in needles {
            if texts
                .iter()
                .any(|t| t.windows(n.len()).any(|w| w == n.as_bytes()))
            {
                hits.push((name.clone(), (*n).to_owned()));
            }
        }
    }
    hits
}

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const PHONE: &str = "+33 6 12 34 56 78";
const IPV4: &str = "203.0.113.77";
const IPV6: &str = "2001:db8:85a3::8a2e:370:7334";

fn corpus_export(now_ns: u64) -> Vec<u8> {
    let s = |v: &str| serde_json::json!({"stringValue": v});
    let span = |i: u64, user: &str| {
        serde_json::json!({
            "traceId": format!("{:032x}", 0xabc0 + i),
            "spanId": format!("{:016x}", i + 1),
            "name": format!("chat for {EMAIL}"),
            "kind": 3,
            "startTimeUnixNano": (now_ns - 60_000_000_000 + i).to_string(),
            "endTimeUnixNano": (now_ns - 59_000_000_000 + i).to_string(),
            "attributes": [
                {"key": "gen_ai.operation.name", "value": s(&format!("chat {PHONE}"))},
                {"key": "gen_ai.request.model", "value": s(&format!("gpt-4o-mini-{IPV4}"))},
                {"key": "gen_ai.response.model", "value": s(&format!("gpt-4o-mini {IPV6}"))},
                {"key": "gen_ai.system", "value": s(&format!("openai {CARD}"))},
                {"key": "user.id", "value": s(user)},
                {"key": "session.id", "value": s(&format!("session-{EMAIL}"))},
                {"key": "error.type", "value": s(&format!("Timeout from {IPV4}"))},
                {"key": format!("app.note.{EMAIL}"), "value": s("kept key, redacted")},
                {"key": "app.when", "value": s("2024-03-01 07:04:00")},
                {"key": "app.version", "value": s("version 1.2.3.4")},
                {"key": "gen_ai.input.messages", "value": s(&format!("call me at {PHONE} or {EMAIL}, card {CARD}, from {IPV4} / {IPV6}; at 2024-03-01 07:04:00 on version 1.2.3.4"))},
                {"key": "gen_ai.output.messages", "value": s(&format!("noted {EMAIL}"))}
            ],
            "status": {"code": 2, "message": format!("upstream {IPV6} refused {EMAIL}")}
        })
    };
    serde_json::to_vec(&serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": s(&format!("writer-{EMAIL}"))},
            {"key": "openinference.project.name", "value": s(&format!("proj {PHONE}"))}
        ]},
        "scopeSpans": [{"spans": [span(0, "alice@example.com"), span(1, "bob@example.com")]}]
    }]}))
    .unwrap()
}

#[test]
fn personal_data_in_any_span_field_is_never_stored_or_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (child, port, _) = start_full(&data, &[("ENCORE__TELEMETRY__SELF_TRACE_RATE", "0")]);
    let server = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let r = encore_server::client::Connection::open(&addr)
        .unwrap()
        .send(
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/json")],
            &corpus_export(now_ns),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let raw = [
        EMAIL,
        CARD,
        PHONE,
        IPV4,
        IPV6,
        "alice@example.com",
        "bob@example.com",
    ];
    let get = |path: &str| {
        let r = encore_server::client::request(&addr, "GET", path, b"").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body
    };
    let listed = get("/v1/spans?limit=10");
    let spans: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(spans["spans"].as_array().unwrap().len(), 2, "{listed}");
    let tree = get(&format!("/v1/traces/{:032x}", 0xabc0));
    let stats = get("/v1/spans/stats?group_by=user");
    for answer in [&listed, &tree, &stats] {
        for n in raw {
            assert!(!answer.contains(n), "{n} in an answer: {answer}");
        }
    }
    // lookalikes survive; the two listeners stay two
    assert!(
        tree.contains("2024-03-01 07:04:00") && tree.contains("version 1.2.3.4"),
        "{tree}"
    );
    let users: std::collections::BTreeSet<&str> = spans["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(
        users.iter().all(|u| u.starts_with("redacted-")),
        "{users:?}"
    );
    // the same listener maps to the same id: their spans still group
    let one = users.iter().next().unwrap();
    let by_user: serde_json::Value =
        serde_json::from_str(&get(&format!("/v1/spans?user={one}"))).unwrap();
    assert_eq!(by_user["spans"].as_array().unwrap().len(), 1);
    // nothing raw on disk: the WAL now, the sealed Parquet segments after shutdown
    assert_eq!(
        find_in_data_dir(&data, &raw),
        Vec::<(String, String)>::new()
    );
    terminate(&server.0);
    drop(server);
    assert!(
        files(&data)
            .iter()
            .any(|f| f.display().to_string().ends_with(".parquet")),
        "the spans were sealed into segments"
    );
    assert_eq!(
        find_in_data_dir(&data, &raw),
        Vec::<(String, String)>::new()
    );
    // the scan itself finds what it looks for (a file written with a needle in it)
    std::fs::write(data.join("probe.txt"), EMAIL).unwrap();
    assert_eq!(find_in_data_dir(&data, &[EMAIL]).len(), 1);
}

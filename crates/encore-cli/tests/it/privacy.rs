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
    let r = encore_http::Connection::open(&addr)
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
        let r = encore_http::request(&addr, "GET", path, b"").unwrap();
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

/// Whether `needle` occurs in `hay` as a whole token (not inside a longer id such as `u120`).
fn token_in(hay: &[u8], needle: &[u8]) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    hay.windows(needle.len()).enumerate().any(|(i, w)| {
        w == needle
            && (i == 0 || !word(hay[i - 1]))
            && hay.get(i + needle.len()).is_none_or(|b| !word(*b))
    })
}

/// Files of the data directory holding `id` as a token, decoded.
fn holding(dir: &Path, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in files(dir) {
        let name = f.display().to_string();
        let texts: Vec<Vec<u8>> = if name.ends_with(".parquet") {
            parquet_strings(&f)
                .into_iter()
                .map(String::into_bytes)
                .collect()
        } else {
            vec![std::fs::read(&f).unwrap()]
        };
        if texts.iter().any(|t| token_in(t, id.as_bytes())) {
            out.push(name);
        }
    }
    out
}

#[test]
fn erasure_leaves_nothing_of_the_listener_and_export_returns_every_kind_first() {
    use crate::serve::encore_json;
    use serde_json::{Value, json};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("d");
    let data_s = data.to_str().unwrap();
    let run = |args: &[&str]| encore_json(dir, data_s, args);
    run(&["demo", "--users", "120", "--days", "2", "--no-serve"]);
    std::fs::write(
        dir.join("features.toml"),
        "[entities.user]\nkeys = [\"user_id\"]\n\n[views.listening]\nentity = \"user\"\nttl = \"30d\"\nfeatures = [{ name = \"plays_30d\", agg = \"count\", window = \"30d\" }]\n\n[services.home]\nviews = [\"listening\"]\n",
    )
    .unwrap();
    run(&["features", "apply", "features.toml"]);
    run(&["features", "materialize"]);
    let (child, port, _) = start_full(
        &data,
        &[
            ("ENCORE__TELEMETRY__SELF_TRACE_RATE", "1"),
            ("ENCORE__SERVING__CACHE_SECONDS", "0"),
        ],
    );
    let server = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    let call = |method: &str, path: &str, body: &Value| -> Value {
        let b = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let r = encore_http::request(&addr, method, path, &b).unwrap();
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    };
    // a listener the model knows: home lists (impressions, and a self-trace span each)
    let who = (0..120)
        .map(|i| format!("u{i}"))
        .find(|u| {
            call(
                "GET",
                &format!("/v1/users/{u}/recommendations?n=5"),
                &Value::Null,
            )["strategy"]
                == "personalized"
        })
        .unwrap();
    let other = if who == "u7" { "u8" } else { "u7" };
    // an exposure: an impression served under an experiment arm
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let exposure = json!({"event_id": "5e0f6c1e-9d2a-4c8e-8f3a-2d1e5b6a7c90", "schema_version": 1,
        "user_id": who, "session_id": "s-erase", "ts_ms": now_ms - 1000,
        "kind": "impression", "item_id": "t1", "platform": "ios", "country": "SE",
        "tier": "premium", "experiments": [{"id": "home-als", "variant": "treatment"}],
        "consent": {"personalization": true, "analytics": true}});
    let r = call("POST", "/v1/events", &exposure);
    assert_eq!(r["accepted"], 1, "{r}");
    let mut save = exposure;
    save["event_id"] = json!("5e0f6c1e-9d2a-4c8e-8f3a-2d1e5b6a7c91");
    save["kind"] = json!("save");
    save["experiments"] = json!([]);
    assert_eq!(call("POST", "/v1/events", &save)["accepted"], 1);
    // an LLM span of theirs, with content, and a score of it
    let now_ns = now_ms as u64 * 1_000_000;
    let span = |user: &str, tid: u64| {
        json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "dj"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": format!("{tid:032x}"), "spanId": format!("{tid:016x}"),
            "name": "chat", "kind": 3,
            "startTimeUnixNano": (now_ns - 5_000_000_000).to_string(),
            "endTimeUnixNano": (now_ns - 4_000_000_000).to_string(),
            "attributes": [
                {"key": "user.id", "value": {"stringValue": user}},
                {"key": "gen_ai.input.messages", "value": {"stringValue": format!("a mix for {user}")}},
                {"key": "gen_ai.output.messages", "value": {"stringValue": "here it is"}}
            ]}]}]}]})
    };
    call("POST", "/v1/traces", &span(&who, 0xe1));
    call("POST", "/v1/traces", &span(other, 0xe2));
    call(
        "POST",
        "/v1/evals/scores",
        &json!({"project": "default", "trace_id": format!("{:032x}", 0xe1), "span_id": format!("{:016x}", 0xe1), "evaluator": "human_ok", "value": 1.0}),
    );
    // a human label of their span, through an annotation queue
    call(
        "POST",
        "/v1/queues",
        &json!({"name": "review", "schema": {"kind": "categorical", "name": "ok", "values": ["yes", "no"]}}),
    );
    let added = call(
        "POST",
        "/v1/queues/review/items",
        &json!({"traces": {"service": "dj", "limit": 10}}),
    );
    assert_eq!(added["added"], 2, "{added}");
    for idx in 0..2 {
        call(
            "POST",
            &format!("/v1/queues/review/items/{idx}/label"),
            &json!({"labeller": "ann", "label": "yes"}),
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    terminate(&server.0);
    drop(server);

    // export first: every kind of record
    let export = dir.join("export");
    let v = run(&["privacy", "export", &who, "--out", export.to_str().unwrap()]);
    for kind in [
        "events",
        "impressions",
        "exposures",
        "features",
        "spans",
        "content",
        "scores",
        "models",
        "assignments",
    ] {
        assert!(v["files"][kind].as_u64().unwrap() > 0, "{kind}: {v}");
    }
    let spans = std::fs::read_to_string(export.join("spans.jsonl")).unwrap();
    assert!(
        spans.contains(&who) && !spans.contains(&format!("\"{other}\"")),
        "{spans}"
    );
    assert!(
        !holding(&data, &who).is_empty(),
        "the scan finds the listener before erasure"
    );

    // erase: nowhere in the data directory afterwards but as the ledger's keyed hash
    let erased = run(&["privacy", "erase", &who]);
    let removed = &erased["removed"];
    assert!(removed["playback"].as_u64().unwrap() > 0, "{erased}");
    assert!(removed["spans"].as_u64().unwrap() >= 1, "{erased}");
    assert!(
        removed["evaluation_rows"].as_u64().unwrap() >= 1,
        "{erased}"
    );
    assert!(removed["feature_keys"].as_u64().unwrap() >= 1, "{erased}");
    assert_eq!(
        removed["models_flagged"].as_array().unwrap().len(),
        1,
        "{erased}"
    );
    assert_eq!(holding(&data, &who), Vec::<String>::new());
    let ledger = run(&["privacy", "erasures"]);
    assert_eq!(ledger[0]["listener"], erased["listener"]);
    // the other listener is intact
    assert!(!holding(&data, other).is_empty());
    // the model card recommends retraining; training afterwards does not see them
    let card = run(&["models", "card", "recommender@production"]);
    assert_eq!(card["erased_listeners"], 1, "{card}");
    let trained = run(&["train", "--name", "after-erasure", "--model", "popularity"]);
    assert!(trained["data"]["users"].as_u64().is_some() || trained.is_object());
    assert_eq!(
        holding(&data, &who),
        Vec::<String>::new(),
        "retraining brought them back"
    );
    let again = run(&[
        "privacy",
        "export",
        &who,
        "--out",
        dir.join("again").to_str().unwrap(),
    ]);
    assert!(
        again["files"].as_object().unwrap().values().all(|n| n == 0),
        "{again}"
    );
    // the world kept in the directory still verifies against its (updated) manifest
    let world = data.join("worlds/demo");
    let verify = || crate::cli::encore(dir, &["sim", "verify", world.to_str().unwrap()], &[]);
    let v = verify();
    assert!(v.status.success(), "{}", crate::cli::stderr(&v));
    // erasing an id that is no listener's (an artist, a genre, a track) changes nothing: ids
    // are matched by field, not anywhere in the catalogue
    let tracks = std::fs::read(world.join("catalog/tracks.jsonl")).unwrap();
    for id in ["ar1", "rock", "t1"] {
        let r = run(&["privacy", "erase", id]);
        assert!(
            r["removed"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| v == 0 || v == &json!([])),
            "{id}: {r}"
        );
    }
    assert_eq!(
        std::fs::read(world.join("catalog/tracks.jsonl")).unwrap(),
        tracks
    );
    assert!(verify().status.success());
}

/// Erasure through a running server: only a `privacy:admin` key may; afterwards, once the
/// server has stopped, nothing of the listener is left on disk.
#[test]
fn erasure_over_http_needs_its_scope_and_leaves_nothing() {
    use crate::serve::encore_json;
    use serde_json::{Value, json};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let data_s = data.to_str().unwrap();
    let key = |name: &str, scopes: &str| -> String {
        encore_json(
            tmp.path(),
            data_s,
            &["keys", "create", "--name", name, "--scopes", scopes],
        )["key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (ops, dpo) = (key("ops", "admin"), key("dpo", "privacy:admin"));
    let weak = key("ingest", "events:write,traces:write");
    let (child, port, _) = start_full(&data, &[("ENCORE__SERVER__AUTH", "required")]);
    let server = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    let send = |k: &str, path: &str, body: &Value| {
        let r = encore_http::Connection::open(&addr)
            .unwrap()
            .with_key(Some(k))
            .request("POST", path, body.to_string().as_bytes())
            .unwrap();
        (
            r.status,
            serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null),
        )
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let play = |id: u32, user: &str| {
        json!({"event_id": format!("7a0f6c1e-9d2a-4c8e-8f3a-2d1e5b6a{id:04x}"),
        "schema_version": 1, "user_id": user, "session_id": "s", "ts_start_ms": now_ms - 200_000,
        "ts_end_ms": now_ms - 1_000, "item_id": "t1", "item_type": "track",
        "item_duration_ms": 200_000, "ms_played": 190_000, "reason_start": "clickrow",
        "reason_end": "trackdone", "context_type": "album", "platform": "ios", "country": "SE",
        "tier": "premium", "consent": {"personalization": true, "analytics": true}})
    };
    let (s, v) = send(
        &weak,
        "/v1/events",
        &json!([play(1, "listener-x"), play(2, "listener-y")]),
    );
    assert_eq!((s, v["accepted"].as_u64()), (200, Some(2)), "{v}");
    let (s, v) = send(
        &weak,
        "/v1/privacy/erasures",
        &json!({"user_id": "listener-x"}),
    );
    assert_eq!(s, 403, "{v}");
    let (s, v) = send(
        &dpo,
        "/v1/privacy/erasures",
        &json!({"user_id": "listener-x"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["removed"]["playback"], 1, "{v}");
    // the erasure is audited under the key's name, and ledgered by keyed hash only
    let audit = encore_http::Connection::open(&addr)
        .unwrap()
        .with_key(Some(&ops))
        .request("GET", "/v1/audit", b"")
        .unwrap();
    assert!(
        audit.body.contains("\"key_name\":\"dpo\"") && audit.body.contains("/v1/privacy/erasures")
    );
    assert!(!audit.body.contains("listener-x"), "{}", audit.body);
    terminate(&server.0);
    drop(server);
    assert_eq!(holding(&data, "listener-x"), Vec::<String>::new());
    assert!(!holding(&data, "listener-y").is_empty());
}

/// `[ingest] retention_days`: segments of events older than it are gone once the server runs.
#[test]
fn events_past_their_retention_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    crate::serve::encore_json(
        tmp.path(),
        data.to_str().unwrap(),
        &["demo", "--users", "60", "--days", "2", "--no-serve"],
    );
    let segments = || {
        files(&data.join("events"))
            .iter()
            .filter(|f| f.display().to_string().ends_with(".parquet"))
            .count()
    };
    let before = segments();
    assert!(before > 0);
    // a retention longer than the world's age keeps everything
    let (child, _, _) = start_full(&data, &[("ENCORE__INGEST__RETENTION_DAYS", "36500")]);
    drop(Stop(child));
    assert_eq!(segments(), before);
    // the demo's world is months old: a one-day retention drops all of its days
    let (child, _, _) = start_full(&data, &[("ENCORE__INGEST__RETENTION_DAYS", "1")]);
    let _server = Stop(child);
    let t0 = std::time::Instant::now();
    while segments() > 0 && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(segments(), 0, "segments older than a day are kept");
}

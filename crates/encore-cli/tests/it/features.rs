//! The feature store end to end: definitions applied with the CLI, a real `encore serve` whose
//! online values follow ingested plays within 2 s and null out past the TTL, and a training set
//! written by the CLI that agrees.

use crate::cli::{encore, stderr};
use crate::serve::{Stop, encore_json, start_full};
use encore_http::request;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const DEFS: &str = r#"
[entities.user]
keys = ["user_id"]

[views.listening]
entity = "user"
ttl = "3d"
features = [
  { name = "plays_1d", agg = "count", window = "1d" },
  { name = "streams_1d", agg = "count", window = "1d", filter = "stream" },
  { name = "skip_rate_1d", agg = "ratio", window = "1d", numerator = { agg = "count", filter = "skip" }, denominator = { agg = "count" } },
]

[services.home]
views = ["listening"]
"#;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn play(id: &str, user: &str, end_ms: i64, ms_played: u32, reason_end: &str) -> Value {
    json!({"event_id": format!("0b7f6c1e-9d2a-4c8e-8f3a-2d1e5b6a7c9{id}"), "schema_version": 1, "user_id": user, "session_id": "s1",
        "ts_start_ms": end_ms - i64::from(ms_played) - 1, "ts_end_ms": end_ms, "item_id": "t1",
        "item_type": "track", "item_duration_ms": 200000, "ms_played": ms_played,
        "reason_start": "clickrow", "reason_end": reason_end, "context_type": "album",
        "platform": "ios", "country": "SE", "tier": "premium",
        "consent": {"personalization": true, "analytics": true}})
}

fn features(addr: &str, users: &[&str]) -> Value {
    let entities: Vec<Value> = users.iter().map(|u| json!({"user_id": u})).collect();
    let body = json!({"service": "home", "entities": entities}).to_string();
    let r = request(addr, "POST", "/v1/features", body.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn online_features_follow_ingestion_within_2s_and_expire_with_the_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    // a bad definition is refused with its file and line
    std::fs::write(
        dir.join("bad.toml"),
        DEFS.replace(
            "window = \"1d\" },\n  { name = \"streams",
            "window = \"1 day\" },\n  { name = \"streams",
        ),
    )
    .unwrap();
    let o = encore(
        dir,
        &["features", "apply", "bad.toml", "--data-dir", data_s],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bad.toml:9: view listening: feature plays_1d: duration"),
        "{}",
        stderr(&o)
    );
    std::fs::write(dir.join("features.toml"), DEFS).unwrap();
    let v = encore_json(dir, data_s, &["features", "apply", "features.toml"]);
    assert_eq!(
        (v["version"].as_u64(), v["changed"].as_bool()),
        (Some(1), Some(true))
    );
    let v = encore_json(dir, data_s, &["features", "apply", "features.toml"]);
    assert_eq!(
        (v["version"].as_u64(), v["changed"].as_bool()),
        (Some(1), Some(false))
    );

    let (child, port, _) = start_full(&data, &[]);
    let server = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    // an entity never seen: nulls, flagged missing, not an error
    let f = features(&addr, &["u1"]);
    assert_eq!(f["rows"][0]["missing"], true, "{f}");
    assert_eq!(f["rows"][0]["values"]["listening__plays_1d"], Value::Null);
    let r = request(
        &addr,
        "POST",
        "/v1/features",
        br#"{"service": "nope", "entities": []}"#,
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    let r = request(
        &addr,
        "POST",
        "/v1/features",
        br#"{"service": "home", "entities": [{"artist_id": "a"}]}"#,
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("user_id"), "{}", r.body);

    // plays of u1, and of a listener last heard 4 days ago (past the 3-day TTL)
    let now = now_ms();
    let body = [
        play("1", "u1", now - 60_000, 199_000, "trackdone"),
        play("2", "u1", now - 30_000, 4_000, "fwdbtn"),
        play("3", "old", now - 4 * 86_400_000, 199_000, "trackdone"),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let r = request(&addr, "POST", "/v1/events", body.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"accepted\":3"), "{}", r.body);
    let acked = Instant::now();
    let fresh = loop {
        let f = features(&addr, &["u1", "old"]);
        if f["rows"][0]["values"]["listening__plays_1d"] == 2.0 {
            break f;
        }
        assert!(
            acked.elapsed() < Duration::from_secs(2),
            "not fresh within 2 s: {f}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "online features fresh {} ms after the ingest acknowledgement",
            acked.elapsed().as_millis()
        );
    }
    let row = &fresh["rows"][0];
    assert_eq!(row["values"]["listening__streams_1d"], 1.0);
    assert_eq!(row["values"]["listening__skip_rate_1d"], 0.5);
    assert_eq!(row["status"]["listening"], "live");
    assert!(row["age_ms"]["listening"].as_i64().unwrap() < 2_000);
    let old = &fresh["rows"][1];
    assert_eq!(old["status"]["listening"], "expired", "{old}");
    assert_eq!(old["values"]["listening__plays_1d"], Value::Null);
    assert_eq!(old["missing"], false);
    // u1 is now in the read cache; the next play replaces it there too
    let r = request(
        &addr,
        "POST",
        "/v1/events",
        play("4", "u1", now - 10_000, 199_000, "trackdone")
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let acked = Instant::now();
    while features(&addr, &["u1"])["rows"][0]["values"]["listening__plays_1d"] != 3.0 {
        assert!(
            acked.elapsed() < Duration::from_secs(2),
            "a cached entity went stale"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // the arrays format: names once, values in their order
    let r = request(
        &addr,
        "POST",
        "/v1/features",
        br#"{"service": "home", "format": "arrays", "entities": [{"user_id": "u1"}, {"user_id": "nobody"}]}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let a: Value = serde_json::from_str(&r.body).unwrap();
    let names: Vec<&str> = a["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let at = names
        .iter()
        .position(|n| *n == "listening__plays_1d")
        .unwrap();
    assert_eq!(a["rows"][0]["values"][at], 3.0, "{a}");
    assert_eq!(a["rows"][0]["status"][0], "live", "{a}");
    assert_eq!(a["rows"][1]["missing"], true, "{a}");
    assert_eq!(a["rows"][1]["values"][at], Value::Null, "{a}");
    // expired and missing reads are counted, and the cache served repeated reads
    let r = request(&addr, "GET", "/v1/features/services", b"").unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["reads"]["expired"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["reads"]["missing"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["cache"]["hits"].as_u64().unwrap() >= 1, "{v}");
    // stopped: the data directory is the CLI's again
    drop(server);
    // no skew between what the server stored and the offline recomputation
    let skew = encore_json(dir, data_s, &["features", "skew", "--service", "home"]);
    for f in skew.as_array().unwrap() {
        assert_eq!(f["entities"], 2, "{f}");
        assert_eq!(f["differ"], 0, "{f}");
    }

    // offline: a training set as of now agrees, the stale listener expired there too
    std::fs::write(
        dir.join("entities.csv"),
        format!(
            "user_id,ts\nu1,{now}\nold,{now}\nu1,{}\nnobody,{now}\n",
            now - 45_000
        ),
    )
    .unwrap();
    encore_json(
        dir,
        data_s,
        &[
            "features",
            "training-set",
            "--entities",
            "entities.csv",
            "--service",
            "home",
            "--out",
            "train.parquet",
        ],
    );
    let file = std::fs::File::open(dir.join("train.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batch = reader.map(Result::unwrap).next().unwrap();
    let plays = batch
        .column_by_name("listening__plays_1d")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap();
    let status = batch
        .column_by_name("listening__status")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    use arrow::array::Array;
    assert_eq!(plays.value(0), 3.0);
    assert!(plays.is_null(1));
    assert_eq!(status.value(1), "expired");
    // 45 s ago only the first play had ended: point in time
    assert_eq!(plays.value(2), 1.0);
    assert_eq!(status.value(3), "missing");
    // a bad entities file names its line
    std::fs::write(dir.join("bad.csv"), "user_id,ts\nu1,yesterday\n").unwrap();
    let o = encore(
        dir,
        &[
            "features",
            "training-set",
            "--entities",
            "bad.csv",
            "--service",
            "home",
            "--out",
            "x.parquet",
            "--data-dir",
            data_s,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bad.csv:2: ts \"yesterday\""),
        "{}",
        stderr(&o)
    );
}

/// The same definitions serve training sets and the home list: with `[serving] rerank_feature`
/// set to a listener-artist skip rate, skipping an artist's tracks moves the artist down the
/// listener's next home list.
#[test]
fn a_skip_rate_feature_demotes_the_artist_in_home_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("d");
    let data_s = data.to_str().unwrap();
    let run = |args: &[&str]| encore_json(dir, data_s, args);
    run(&["demo", "--users", "120", "--days", "2", "--no-serve"]);
    std::fs::write(
        dir.join("features.toml"),
        r#"
[entities.user_artist]
keys = ["user_id", "artist_id"]

[views.user_artist]
entity = "user_artist"
ttl = "30d"
features = [{ name = "skip_rate_30d", agg = "ratio", window = "30d", numerator = { agg = "count", filter = "skip" }, denominator = { agg = "count" } }]

[services.reranker]
views = ["user_artist"]
"#,
    )
    .unwrap();
    run(&["features", "apply", "features.toml"]);
    let (child, port, _) = start_full(
        &data,
        &[
            (
                "ENCORE__SERVING__RERANK_FEATURE",
                "user_artist__skip_rate_30d",
            ),
            ("ENCORE__SERVING__RERANK_WEIGHT", "1"),
            ("ENCORE__SERVING__CACHE_SECONDS", "0"),
        ],
    );
    let _server = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    let home = || -> Value {
        let r = request(&addr, "GET", "/v1/users/u1/recommendations?n=10", b"").unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    };
    let before = home();
    let top = &before["items"][0];
    let artist = top["artist_id"].as_str().unwrap().to_owned();
    let item = top["id"].as_str().unwrap().to_owned();
    let position = |s: &Value| {
        s["items"]
            .as_array()
            .unwrap()
            .iter()
            .position(|i| i["artist_id"] == artist.as_str())
    };
    assert_eq!(position(&before), Some(0));
    // u1 skips that artist's track three times
    let now = now_ms();
    let body = (1..=3)
        .map(|k| play(&k.to_string(), "u1", now - 10_000 * k, 3_000, "fwdbtn"))
        .map(|mut v| {
            v["item_id"] = Value::from(item.clone());
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let r = request(&addr, "POST", "/v1/events", body.as_bytes()).unwrap();
    assert!(r.body.contains("\"accepted\":3"), "{}", r.body);
    let t0 = Instant::now();
    let after = loop {
        let s = home();
        if position(&s) != Some(0) {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{artist} still first: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        position(&after).is_none_or(|p| p >= 3),
        "{artist} at {:?}",
        position(&after)
    );
    drop(_server);

    // attribute views: the catalog's track attributes, and a listener file (relative to the
    // definitions), materialized online; the online values, the training set and the skew
    // check agree
    std::fs::write(
        dir.join("plans.csv"),
        "user_id,premium\nu1,true\nu2,false\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.join("features.toml")).unwrap()
        + r#"
[entities.item]
keys = ["item_id"]
[entities.user]
keys = ["user_id"]
[views.track]
entity = "item"
source = "catalog"
features = [{ name = "duration_ms" }, { name = "popularity" }]
[views.plan]
entity = "user"
source = "file"
path = "plans.csv"
features = [{ name = "premium" }]
[services.items]
views = ["track"]
[services.profile]
views = ["plan"]
"#;
    std::fs::write(dir.join("more.toml"), text).unwrap();
    let v = run(&["features", "apply", "more.toml"]);
    assert_eq!(v["version"], 2, "{v}");
    let m = run(&["features", "materialize"]);
    assert_eq!(m["attribute_entities"]["plan"], 2, "{m}");
    assert!(
        m["attribute_entities"]["track"].as_u64().unwrap() > 10,
        "{m}"
    );
    let entity = format!("item_id={item}");
    let got = run(&["features", "get", "--service", "items", "--entity", &entity]);
    let duration = got[0]["values"]["track__duration_ms"].as_f64().unwrap();
    assert!(duration > 10_000.0, "{got}");
    let got = run(&[
        "features",
        "get",
        "--service",
        "profile",
        "--entity",
        "user_id=u2",
    ]);
    assert_eq!(got[0]["values"]["plan__premium"], 0.0, "{got}");
    for service in ["items", "profile"] {
        for f in run(&["features", "skew", "--service", service])
            .as_array()
            .unwrap()
        {
            assert!(f["entities"].as_u64().unwrap() >= 2, "{f}");
            assert_eq!(f["differ"], 0, "{f}");
        }
    }
    std::fs::write(dir.join("items.csv"), format!("item_id,ts\n{item},{now}\n")).unwrap();
    run(&[
        "features",
        "training-set",
        "--entities",
        "items.csv",
        "--service",
        "items",
        "--out",
        "items.parquet",
    ]);
    let file = std::fs::File::open(dir.join("items.parquet")).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let col = batch
        .column_by_name("track__duration_ms")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap()
        .value(0);
    assert_eq!(col, duration);
    // the versions are kept in the registry
    let listed = run(&["features", "list"]);
    assert_eq!(listed["version"], 2, "{listed}");
}

/// Consent on the live path, through a real server: plays without personalization consent or
/// in a private session give no fold-in and no personal feature values; a listener who withdrew
/// consent gets a popular list saying so (never a 404), also after a restart; a consenting new
/// listener (the control) is folded in.
#[test]
fn consent_is_honoured_on_the_live_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("d");
    let data_s = data.to_str().unwrap();
    let run = |args: &[&str]| encore_json(dir, data_s, args);
    run(&["demo", "--users", "120", "--days", "2", "--no-serve"]);
    std::fs::write(dir.join("features.toml"), DEFS).unwrap();
    run(&["features", "apply", "features.toml"]);
    let env = [("ENCORE__SERVING__CACHE_SECONDS", "0")];
    let (child, port, _) = start_full(&data, &env);
    let server = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    let get = |addr: &str, path: &str| -> (u16, Value) {
        let r = request(addr, "GET", path, b"").unwrap();
        (r.status, serde_json::from_str(&r.body).unwrap_or_default())
    };
    // a listener the model knows, and tracks of the catalogue
    let (known, slate) = (0..120)
        .map(|i| format!("u{i}"))
        .find_map(|u| {
            let (s, v) = get(&addr, &format!("/v1/users/{u}/recommendations?n=5"));
            (s == 200 && v["strategy"] == "personalized").then_some((u, v))
        })
        .expect("a personalized listener");
    let tracks: Vec<String> = slate["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let now = now_ms();
    let plays = |user: &str, id: &str, consent: bool, private: bool| -> String {
        tracks
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let mut p = play("0", user, now - 60_000 + k as i64, 190_000, "trackdone");
                p["event_id"] = Value::from(format!("0b7f6c1e-9d2a-4c8e-8f3a-{id}{k:011x}"));
                p["item_id"] = Value::from(t.as_str());
                p["consent"]["personalization"] = Value::from(consent);
                p["private_session"] = Value::from(private);
                p.to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let post = |body: String| {
        let r = request(&addr, "POST", "/v1/events", body.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("\"accepted\":5"), "{}", r.body);
    };
    post(plays("nocon", "1", false, false));
    post(plays("incognito", "2", true, true));
    post(plays("control", "3", true, false));
    post(plays(&known, "4", false, false));
    std::thread::sleep(Duration::from_millis(2_500));

    let (s, control) = get(&addr, "/v1/users/control/recommendations?n=5");
    assert_eq!(
        (s, control["strategy"].as_str()),
        (200, Some("fold_in")),
        "{control}"
    );
    for user in ["nocon", "incognito"] {
        let (s, v) = get(&addr, &format!("/v1/users/{user}/recommendations?n=5"));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["strategy"], "popular_fallback", "{user}: {v}");
        assert!(
            v["note"].as_str().unwrap().starts_with("not personalized"),
            "{v}"
        );
    }
    let f = features(&addr, &["nocon", "incognito", "control"]);
    assert_eq!(f["rows"][0]["missing"], true, "{f}");
    assert_eq!(f["rows"][1]["missing"], true, "{f}");
    assert_eq!(f["rows"][2]["values"]["listening__plays_1d"], 5.0, "{f}");
    // the known listener withdrew consent with their newest plays: no trained vector either
    let withdrawn = |addr: &str| {
        let (s, v) = get(addr, &format!("/v1/users/{known}/recommendations?n=5"));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["strategy"], "popular_fallback", "{v}");
        assert_eq!(v["note"], encore_serving::NOTE_WITHDRAWN, "{v}");
        let (s, v) = get(addr, &format!("/v1/users/{known}/mixes"));
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (412, Some("failed_precondition")),
            "{v}"
        );
    };
    withdrawn(&addr);
    // a listener never heard of: the most popular items too, not a 404
    let (s, v) = get(&addr, "/v1/users/someone-new/recommendations?n=5");
    assert_eq!(
        (s, v["note"].as_str()),
        (200, Some(encore_serving::NOTE_NO_HISTORY)),
        "{v}"
    );
    drop(server);
    // after a restart the withdrawal is read back from the log
    let (child, port, _) = start_full(&data, &env);
    let _server = Stop(child);
    withdrawn(&format!("127.0.0.1:{port}"));
}

/// The online store and fold-in hear only of rows that were stored: a batch mixing good rows
/// with rows the contract rejects (a future timestamp, a bad country) and with duplicates (in
/// the batch, and a whole batch sent again) moves on exactly what was accepted, and the values
/// hold across a restart.
#[test]
fn rejected_and_duplicate_rows_never_reach_fold_in_or_online_features() {
    const SUMS: &str = r#"
[entities.user]
keys = ["user_id"]

[views.listening]
entity = "user"
ttl = "3d"
features = [
  { name = "plays_1d", agg = "count", window = "1d" },
  { name = "ms_1d", agg = "sum", field = "ms_played", window = "1d" },
]

[services.home]
views = ["listening"]
"#;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("d");
    let data_s = data.to_str().unwrap();
    let run = |args: &[&str]| encore_json(dir, data_s, args);
    run(&["demo", "--users", "120", "--days", "2", "--no-serve"]);
    std::fs::write(dir.join("features.toml"), SUMS).unwrap();
    run(&["features", "apply", "features.toml"]);
    let env = [("ENCORE__SERVING__CACHE_SECONDS", "0")];
    let (child, port, _) = start_full(&data, &env);
    let server = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    let get = |addr: &str, path: &str| -> Value {
        let r = request(addr, "GET", path, b"").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap()
    };
    // tracks of the catalogue, from a listener the model knows
    let tracks: Vec<String> = (0..120)
        .find_map(|i| {
            let v = get(&addr, &format!("/v1/users/u{i}/recommendations?n=6"));
            (v["strategy"] == "personalized").then_some(v)
        })
        .expect("a personalized listener")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let now = now_ms();
    let row = |k: u32, track: &str, end_ms: i64, ms: u32| {
        let mut p = play("0", "mixed", end_ms, ms, "trackdone");
        p["event_id"] = Value::from(format!("0b7f6c1e-9d2a-4c8e-8f3a-{k:012x}"));
        p["item_id"] = Value::from(track);
        p
    };
    let good_a = row(1, &tracks[0], now - 60_000, 100_000);
    let good_b = row(2, &tracks[1], now - 50_000, 80_000);
    let mut future = row(3, &tracks[2], now + 86_400_000, 150_000);
    future["ts_start_ms"] = Value::from(now + 86_400_000 - 150_001);
    let mut bad_country = row(4, &tracks[3], now - 40_000, 120_000);
    bad_country["country"] = Value::from("Sweden");
    // a rejected row that would withdraw the listener's consent if it were acted on
    let mut bad_withdrawal = row(5, &tracks[4], now - 30_000, 90_000);
    bad_withdrawal["country"] = Value::from("??");
    bad_withdrawal["consent"]["personalization"] = Value::from(false);
    let body = |rows: &[&Value]| -> String {
        rows.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let post = |b: String| -> Value {
        let r = request(&addr, "POST", "/v1/events", b.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    };
    let o = post(body(&[
        &good_a,
        &future,
        &good_b,
        &bad_country,
        &good_a,
        &bad_withdrawal,
    ]));
    assert_eq!(
        (
            o["accepted"].as_u64(),
            o["duplicates"].as_u64(),
            o["rejected"].as_u64()
        ),
        (Some(2), Some(1), Some(3)),
        "{o}"
    );
    // the whole batch again: everything is a duplicate or rejected again
    let o = post(body(&[&good_a, &good_b, &future, &bad_withdrawal]));
    assert_eq!(
        (o["accepted"].as_u64(), o["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "{o}"
    );
    let exact = |addr: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let f = features(addr, &["mixed"]);
            let v = &f["rows"][0]["values"];
            if v["listening__plays_1d"].as_f64() >= Some(2.0) {
                // settled: the writer applies batches whole, so nothing more is coming
                std::thread::sleep(Duration::from_millis(400));
                let f = features(addr, &["mixed"]);
                let v = &f["rows"][0]["values"];
                assert_eq!(
                    (
                        v["listening__plays_1d"].as_f64(),
                        v["listening__ms_1d"].as_f64()
                    ),
                    (Some(2.0), Some(180_000.0)),
                    "features counted rows that were not stored: {f}"
                );
                return;
            }
            assert!(Instant::now() < deadline, "not fresh within 5 s: {f}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    exact(&addr);
    // fold-in saw the two stored plays, and no withdrawal of consent
    let v = get(&addr, "/v1/users/mixed/recommendations?n=20");
    assert_eq!(v["strategy"], "fold_in", "{v}");
    assert!(v.get("note").is_none(), "{v}");
    let listed: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(
        !listed.contains(&tracks[0].as_str()) && !listed.contains(&tracks[1].as_str()),
        "played tracks are listed again: {listed:?}"
    );
    // the same after a restart (consent and features rebuilt from what was stored)
    drop(server);
    let (child, port, _) = start_full(&data, &env);
    let _server = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    exact(&addr);
    let v = get(&addr, "/v1/users/mixed/recommendations?n=20");
    assert_ne!(v["note"], encore_serving::NOTE_WITHDRAWN, "{v}");
}

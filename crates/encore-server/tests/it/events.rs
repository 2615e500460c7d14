use encore_ingest::{IngestOptions, Ingestor};
use encore_server::client::request;
use encore_server::{AppState, Limits};
use encore_sim::{SimConfig, World};
use std::sync::Arc;

/// Starts a server over a fresh data directory; returns its address.
fn start(limits: Limits) -> (String, tempfile::TempDir, tokio::runtime::Runtime) {
    let tmp = tempfile::tempdir().unwrap();
    let ingestor = Arc::new(Ingestor::open(tmp.path(), IngestOptions::default()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(encore_server::serve(
        listener,
        AppState::new(ingestor, limits),
        std::future::pending(),
    ));
    (addr, tmp, rt)
}

fn events(n: usize) -> Vec<serde_json::Value> {
    let mut world = World::new(SimConfig::new(50, 1, 2));
    let day = world.simulate_day();
    day.plays
        .iter()
        .take(n)
        .map(|p| serde_json::to_value(world.playback_event(p)).unwrap())
        .collect()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

#[test]
fn good_rows_are_kept_and_bad_rows_explained() {
    let (addr, _tmp, _rt) = start(Limits::default());
    let mut ev = events(3);
    ev[1]["ms_played"] = serde_json::json!(-5);
    let r = request(
        &addr,
        "POST",
        "/v1/events",
        serde_json::to_string(&ev).unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r.body);
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(v["rejects"][0]["location"], "batch index 1");
    assert_eq!(v["rejects"][0]["violations"][0]["field"], "ms_played");

    // NDJSON works too, and a re-send is a duplicate, not a second copy
    let ndjson: String = ev.iter().map(|e| format!("{e}\n")).collect();
    let r = request(&addr, "POST", "/v1/events", ndjson.as_bytes()).unwrap();
    let v = json(&r.body);
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(v["rejects"][0]["location"], "body:2");

    let r = request(&addr, "GET", "/v1/events/stats", b"").unwrap();
    assert_eq!(json(&r.body)["ingest"]["accepted"], 2);
}

#[test]
fn unparseable_body_is_400() {
    let (addr, _tmp, _rt) = start(Limits::default());
    let r = request(&addr, "POST", "/v1/events", b"{{{{ nope").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(json(&r.body)["error"]["code"], "invalid_argument");
    let r = request(&addr, "GET", "/v2/nothing", b"").unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn oversized_bodies_and_batches_are_413() {
    let (addr, _tmp, _rt) = start(Limits {
        max_body_bytes: 4_000,
        max_batch_rows: 2,
        max_in_flight: 4,
    });
    let body = serde_json::to_string(&events(3)).unwrap();
    assert!(body.len() > 1_000);
    let r = request(&addr, "POST", "/v1/events", body.as_bytes()).unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(json(&r.body)["error"]["code"], "too_large");
    let big = serde_json::to_string(&vec![events(1)[0].clone(); 20]).unwrap();
    let r = request(&addr, "POST", "/v1/events", big.as_bytes()).unwrap();
    assert_eq!(r.status, 413);
}

#[test]
fn full_queue_is_503_with_retry_after() {
    let (addr, _tmp, _rt) = start(Limits {
        max_in_flight: 0,
        ..Limits::default()
    });
    let body = serde_json::to_string(&events(1)).unwrap();
    let r = request(&addr, "POST", "/v1/events", body.as_bytes()).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(json(&r.body)["error"]["code"], "unavailable");
}

#[test]
fn strict_batches_are_all_or_nothing() {
    let (addr, _tmp, _rt) = start(Limits::default());
    let mut ev = events(2);
    ev[0]["platform"] = "toaster".into();
    let r = request(
        &addr,
        "POST",
        "/v1/events?strict=true",
        serde_json::to_string(&ev).unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        json(&r.body)["error"]["details"][0]["violations"][0]["rule"],
        "enum"
    );
    let r = request(&addr, "GET", "/v1/events/stats", b"").unwrap();
    assert_eq!(json(&r.body)["plays"], 0);
}

/// `curl -d` sends a form content type and a bare request none: either body is read as the JSON
/// it is. A declared type other than JSON is still refused.
#[test]
fn json_bodies_are_read_without_a_json_content_type() {
    let (addr, _tmp, _rt) = start(Limits::default());
    let body = br#"{"seed_items": ["t1"], "n": 3}"#;
    let mut statuses = Vec::new();
    for headers in [
        &[("Content-Type", "application/x-www-form-urlencoded")][..],
        &[("content-type", "application/json; charset=utf-8")],
        &[("Content-Type", "text/csv")],
    ] {
        let r = encore_http::Connection::open(&addr)
            .unwrap()
            .send("POST", "/v1/recommendations", headers, body)
            .unwrap();
        statuses.push(r.status);
    }
    // without a served model the route answers 503 whatever the body's label, never 415
    assert_eq!(statuses[0], statuses[1], "{statuses:?}");
    assert_ne!(statuses[0], 415);
    assert_eq!(statuses[2], 415);
    // and no content type at all: a raw request
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with(&format!("HTTP/1.1 {}", statuses[1])),
        "{out}"
    );
}

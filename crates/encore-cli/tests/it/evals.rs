//! Evaluation of LLM features through a real `encore serve`: an OpenAI-compatible judge and a
//! webhook receiver, both started here on 127.0.0.1.
//!
//! - online rules score ingested spans with the judge (which fails some calls), the judge's own
//!   calls land in the trace store, humans label a queue, the judge is calibrated against them,
//!   a backfill scores spans stored before its rule existed, and two experiment runs over a
//!   dataset are compared;
//! - an alert on error rate fires when failing spans come in, notifies the webhook (which fails
//!   its first delivery), and resolves when the errors stop.

use crate::serve::{Stop, start_full};
use encore_http::request;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// An OTLP/JSON export of spans of `service`, starting now: (span number, error?, output).
fn spans(service: &str, batch: u64, items: &[(u64, bool, &str)]) -> Vec<u8> {
    let now = now_ns();
    let spans: Vec<Value> = items
        .iter()
        .map(|(i, error, output)| {
            json!({
                "traceId": format!("{:016x}{:016x}", batch + 1, i + 1),
                "spanId": format!("{:08x}{:08x}", batch + 1, i + 1),
                "name": "chat gpt-4o-mini",
                "kind": 3,
                "startTimeUnixNano": now.to_string(),
                "endTimeUnixNano": (now + 50_000_000).to_string(),
                "attributes": [
                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "500"}},
                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "60"}},
                    {"key": "gen_ai.input.messages", "value": {"stringValue": "songs like Heartbeats"}},
                    {"key": "gen_ai.output.messages", "value": {"stringValue": *output}}
                ],
                "status": {"code": if *error { 2 } else { 1 }}
            })
        })
        .collect();
    serde_json::to_vec(&json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": spans}]
    }]}))
    .unwrap()
}

fn call(addr: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let b = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let r = request(addr, method, path, &b).unwrap();
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

fn ok(addr: &str, method: &str, path: &str, body: Value) -> Value {
    let (status, v) = call(addr, method, path, &body);
    assert_eq!(status, 200, "{method} {path}: {v}");
    v
}

fn export(addr: &str, body: &[u8]) {
    let r = request(addr, "POST", "/v1/traces", body).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Waits up to `secs` for `f` to give something.
fn wait<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads one HTTP request: (path, body).
fn read_request(stream: &std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    read_signed(stream).map(|(p, b, _)| (p, b))
}

/// The path, body and `X-Encore-Signature` of one request.
fn read_signed(stream: &std::net::TcpStream) -> Option<(String, Vec<u8>, Option<String>)> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut len = 0;
    let mut signature = None;
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        if let Some(v) = l.strip_prefix("x-encore-signature:") {
            signature = Some(v.trim().to_owned());
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((path, body, signature))
}

fn respond(mut stream: &std::net::TcpStream, status: u16, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// An OpenAI-compatible server: judge prompts get `hallucinated` when the answer names the
/// imaginary band, `factual` otherwise; task prompts (`Q: ...`) are echoed by model `echo` and
/// answered "no idea" by any other. Every fourth request fails with 503.
fn llm_server() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let Some((_, body)) = read_request(&stream) else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                if n.is_multiple_of(4) {
                    return respond(&stream, 503, "{\"error\": \"busy\"}");
                }
                let v: Value = serde_json::from_slice(&body).unwrap();
                let prompt = v["messages"][1]["content"].as_str().unwrap_or("");
                let model = v["model"].as_str().unwrap_or("");
                let content = if let Some(answer) = prompt.split("[Answer]: ").nth(1) {
                    if answer.contains("Imaginary") {
                        "{\"label\": \"hallucinated\", \"explanation\": \"no such band\"}"
                            .to_owned()
                    } else {
                        "{\"score\": 0.9, \"label\": \"factual\"}".to_owned()
                    }
                } else if model == "echo" {
                    prompt.split("Q: ").nth(1).unwrap_or("").to_owned()
                } else {
                    "no idea".to_owned()
                };
                let reply = json!({
                    "model": model,
                    "choices": [{"message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 200, "completion_tokens": 20}
                });
                respond(&stream, 200, &reply.to_string());
            });
        }
    });
    (url, calls)
}

#[test]
fn online_rules_judges_labels_datasets_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (judge_url, judge_calls) = llm_server();
    let (child, port, _) = start_full(
        dir.path(),
        &[
            ("ENCORE__EVALS__JUDGE__BASE_URL", judge_url.as_str()),
            ("ENCORE__EVALS__JUDGE__MODEL", "gpt-4o-mini"),
            ("ENCORE__EVALS__JUDGE__BACKOFF_MS", "10"),
            ("ENCORE__TELEMETRY__SELF_TRACE_RATE", "0"),
        ],
    );
    let _stop = Stop(child);
    let addr = format!("127.0.0.1:{port}");

    // a rule with a bad evaluator is refused with the reason
    let (status, e) = call(
        &addr,
        "POST",
        "/v1/evals/rules",
        &json!({"name": "bad", "rate": 1.0, "evaluators": [{"kind": "judge", "rubric": "vibes"}]}),
    );
    assert_eq!(status, 400, "{e}");
    assert!(e.to_string().contains("unknown rubric"), "{e}");
    // spans stored before any rule exists (for the backfill below)
    let early: Vec<(u64, bool, &str)> = (0..10).map(|i| (i, false, "Eple by Röyksopp")).collect();
    export(&addr, &spans("playlist-writer", 0, &early));

    ok(
        &addr,
        "POST",
        "/v1/evals/rules",
        json!({"name": "halluc", "service": "playlist-writer", "rate": 1.0,
               "evaluators": [{"kind": "judge", "rubric": "hallucination"}, {"kind": "json_valid"}]}),
    );
    // 20 spans: every fifth names a band that does not exist
    let items: Vec<(u64, bool, &str)> = (0..20)
        .map(|i| {
            let out = if i % 5 == 0 {
                "Try Imaginary Band - Nowhere"
            } else {
                "Heartbeats by The Knife"
            };
            (i, false, out)
        })
        .collect();
    export(&addr, &spans("playlist-writer", 1, &items));
    // spans of another service are not picked
    export(&addr, &spans("support-bot", 2, &items[..5]));

    let scores = wait(60, "20 judge scores", || {
        let v = ok(
            &addr,
            "GET",
            "/v1/evals/scores?evaluator=judge_hallucination&limit=100",
            Value::Null,
        );
        let s = v["scores"].as_array().unwrap().clone();
        (s.len() >= 20).then_some(s)
    });
    assert_eq!(scores.len(), 20);
    let hallucinated = scores
        .iter()
        .filter(|s| s["label"] == "hallucinated")
        .count();
    assert_eq!(hallucinated, 4);
    for s in &scores {
        assert_eq!(s["service"], "playlist-writer");
        assert_eq!(s["source"], "rule:halluc");
        assert!(s["span_id"].as_str().unwrap().starts_with("00000002"));
    }
    let events = ok(
        &addr,
        "GET",
        "/v1/evals/scores?evaluator=judge_hallucination&format=otel&limit=1",
        Value::Null,
    );
    let e = &events["events"][0];
    assert_eq!(e["name"], "gen_ai.evaluation.result");
    assert_eq!(
        e["attributes"]["gen_ai.evaluation.name"],
        "judge_hallucination"
    );
    assert!(e["attributes"]["gen_ai.evaluation.score.label"].is_string());
    // quality: the hallucination rate with its Wilson interval
    let q = ok(
        &addr,
        "GET",
        "/v1/evals/quality?evaluator=judge_hallucination",
        Value::Null,
    );
    let q = &q["quality"][0];
    assert_eq!(q["n"], 20);
    assert!(
        (q["fail_rate"].as_f64().unwrap() - 0.2).abs() < 1e-12,
        "{q}"
    );
    let ci = q["fail_ci"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() < 0.2 && ci[1].as_f64().unwrap() > 0.2);
    // every fourth judge call failed and was retried: 20 verdicts took more calls
    assert!(judge_calls.load(Ordering::SeqCst) > 20);
    // the judge's own calls are traced (service encore-evals, errors included)
    let traced = wait(20, "judge spans", || {
        let v = ok(
            &addr,
            "GET",
            "/v1/spans?service=encore-evals&limit=1000",
            Value::Null,
        );
        let n = v["spans"].as_array().unwrap().len();
        (n >= judge_calls.load(Ordering::SeqCst).min(25)).then_some(v)
    });
    assert!(
        traced["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["status"] == "error")
    );
    // the same export again (an exporter's retry): stored once, so evaluated once
    export(&addr, &spans("playlist-writer", 1, &items));
    let online = ok(&addr, "GET", "/v1/evals/online", Value::Null);
    assert_eq!(
        (online["sampled"].as_u64(), online["dropped"].as_u64()),
        (Some(20), Some(0)),
        "a retried export reached online evaluation again: {online}"
    );

    // humans label five of the spans; the judge is calibrated against them
    ok(
        &addr,
        "POST",
        "/v1/queues",
        json!({"name": "review", "schema": {"kind": "categorical", "name": "hallucination", "values": ["factual", "hallucinated"]}}),
    );
    let (status, _) = call(
        &addr,
        "POST",
        "/v1/queues/review/items/0/label",
        &json!({"labeller": "ann", "label": "factual"}),
    );
    assert_eq!(status, 404, "an empty queue has no item 0");
    let added = ok(
        &addr,
        "POST",
        "/v1/queues/review/items",
        json!({"traces": {"service": "playlist-writer", "text": "Imaginary", "limit": 3}}),
    );
    assert_eq!(added["added"], 3);
    ok(
        &addr,
        "POST",
        "/v1/queues/review/items",
        json!({"traces": {"service": "playlist-writer", "text": "Knife", "limit": 2}}),
    );
    let items = ok(
        &addr,
        "GET",
        "/v1/queues/review/items?status=pending",
        Value::Null,
    );
    let items = items["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 5);
    let (status, e) = call(
        &addr,
        "POST",
        "/v1/queues/review/items/0/label",
        &json!({"labeller": "ann", "label": "maybe"}),
    );
    assert_eq!(status, 400, "{e}");
    for it in &items {
        // the human disagrees with the judge on one hallucination
        let out = it["output"].as_str().unwrap();
        let label = if out.contains("Imaginary") && it["idx"] != 0 {
            "hallucinated"
        } else {
            "factual"
        };
        ok(
            &addr,
            "POST",
            &format!("/v1/queues/review/items/{}/label", it["idx"]),
            json!({"labeller": "ann", "label": label}),
        );
    }
    let c = ok(
        &addr,
        "GET",
        "/v1/evals/calibration?judge=judge_hallucination&human=hallucination&bins=5",
        Value::Null,
    );
    assert_eq!(c["pairs"], 5, "{c}");
    assert!(
        (c["agreement"].as_f64().unwrap() - 0.8).abs() < 1e-12,
        "{c}"
    );
    assert_eq!(c["reliability"].as_array().unwrap().len(), 5);

    // a backfill scores the spans stored before the rule, and is idempotent
    ok(
        &addr,
        "POST",
        "/v1/evals/rules",
        json!({"name": "length", "service": "playlist-writer", "rate": 1.0,
               "evaluators": [{"kind": "length_bounds", "min": 1, "max": 20}]}),
    );
    for _ in 0..2 {
        let b = ok(&addr, "POST", "/v1/evals/rules/length/backfill", json!({}));
        assert_eq!(
            (b["spans"].as_u64(), b["picked"].as_u64()),
            (Some(30), Some(30)),
            "{b}"
        );
    }
    let v = ok(
        &addr,
        "GET",
        "/v1/evals/scores?source=backfill:length&limit=1000",
        Value::Null,
    );
    assert_eq!(v["scores"].as_array().unwrap().len(), 30);

    // a dataset from JSONL (a bad line named, the rest kept), two runs, compared
    let jsonl: String = (0..12)
        .map(|i| format!("{{\"input\": \"song {i}\", \"expected\": \"song {i}\"}}\n"))
        .chain(["{\"expected\": \"no input\"}\n".to_owned()])
        .collect();
    let d = ok(
        &addr,
        "POST",
        "/v1/datasets",
        json!({"name": "echo", "jsonl": jsonl}),
    );
    assert_eq!(
        (d["version"].as_u64(), d["items"].as_u64()),
        (Some(1), Some(12)),
        "{d}"
    );
    assert!(
        d["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(":13: field `input`")
    );
    let run = |model: &str| {
        ok(
            &addr,
            "POST",
            "/v1/evals/runs",
            json!({"dataset": "echo", "task": {"kind": "chat", "model": model, "prompt": "Q: {{input}}"},
                   "evaluators": [{"kind": "exact_match"}, {"kind": "token_f1"}], "concurrency": 3}),
        )
    };
    let a = run("baseline");
    let b = run("echo");
    assert_eq!(
        (a["errors"].as_u64(), b["errors"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(b["summary"][0]["mean"], 1.0);
    let cmp = ok(
        &addr,
        "GET",
        &format!(
            "/v1/evals/compare?a={}&b={}",
            a["id"].as_str().unwrap(),
            b["id"].as_str().unwrap()
        ),
        Value::Null,
    );
    let exact = &cmp["comparisons"][0];
    assert_eq!(
        (exact["pairs"].as_u64(), exact["improved"].as_u64()),
        (Some(12), Some(12)),
        "{cmp}"
    );
    assert_eq!(exact["difference"], 1.0);
}

#[test]
fn an_error_rate_alert_fires_notifies_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    // the webhook receiver: the first delivery fails (500), later ones succeed
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hooks/encore", hook.local_addr().unwrap());
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    {
        let received = received.clone();
        std::thread::spawn(move || {
            for (n, stream) in hook.incoming().flatten().enumerate() {
                let Some((path, body, signature)) = read_signed(&stream) else {
                    continue;
                };
                assert_eq!(path, "/hooks/encore");
                // signed with the configured key, over this very body, just now
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                assert!(
                    encore_http::outbound::verify_signature(
                        b"hook-key",
                        signature.as_deref().unwrap_or(""),
                        &body,
                        now,
                        Duration::from_secs(60)
                    ),
                    "bad signature {signature:?}"
                );
                if n == 0 {
                    respond(&stream, 500, "{}");
                    continue;
                }
                received
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                respond(&stream, 200, "{}");
            }
        });
    }
    let (child, port, _) = start_full(
        dir.path(),
        &[
            ("ENCORE__EVALS__ALERT_INTERVAL_MS", "250"),
            ("ENCORE__TELEMETRY__SELF_TRACE_RATE", "0"),
            ("ENCORE__SERVER__WEBHOOK_ALLOW", r#"["*", "127.0.0.1"]"#),
            ("ENCORE__SERVER__WEBHOOK_SECRET", "hook-key"),
        ],
    );
    let _stop = Stop(child);
    let addr = format!("127.0.0.1:{port}");
    // destinations the allow list does not name are refused when the rule is made
    for hostile in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1:8080/admin",
        "http://[::1]:19999/internal",
        "gopher://127.0.0.1/",
    ] {
        let (status, e) = call(
            &addr,
            "POST",
            "/v1/alerts/rules",
            &json!({"name": "ssrf", "metric": {"kind": "error_rate"}, "window_s": 3, "op": "above",
                    "threshold": 0.2, "webhook": hostile}),
        );
        assert_eq!(status, 400, "{hostile}: {e}");
    }
    let (status, e) = call(
        &addr,
        "POST",
        "/v1/alerts/rules",
        &json!({"name": "checkout errors", "metric": {"kind": "error_rate"}, "window_s": 3, "op": "above", "threshold": 0.2}),
    );
    assert_eq!(status, 400, "{e}");
    ok(
        &addr,
        "POST",
        "/v1/alerts/rules",
        json!({"name": "errors", "metric": {"kind": "error_rate"}, "service": "checkout-bot",
               "slice_by": "model", "window_s": 3, "op": "above", "threshold": 0.2,
               "for_s": 1, "min_count": 3, "webhook": hook_url}),
    );
    // healthy traffic: nothing fires
    let mut batch = 10;
    let mut send = |error_share: u64| {
        batch += 1;
        let items: Vec<(u64, bool, &str)> = (0..10).map(|i| (i, i < error_share, "fine")).collect();
        export(&addr, &spans("checkout-bot", batch, &items));
    };
    for _ in 0..6 {
        send(0);
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(received.lock().unwrap().is_empty());
    // failing spans: half of every batch errors
    let t0 = Instant::now();
    let firing = wait(30, "the firing notification", || {
        send(5);
        std::thread::sleep(Duration::from_millis(200));
        received.lock().unwrap().first().cloned()
    });
    assert_eq!(firing["state"], "firing", "{firing}");
    assert_eq!(firing["alert"], "errors");
    assert_eq!(firing["slice"], "model=gpt-4o-mini");
    assert!(firing["value"].as_f64().unwrap() > 0.2);
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "fired before the for-duration"
    );
    let states = ok(&addr, "GET", "/v1/alerts", Value::Null);
    assert_eq!(states["alerts"][0]["state"]["phase"], "firing", "{states}");
    // the errors stop: the window empties of them and the alert resolves
    let resolved = wait(30, "the resolved notification", || {
        send(0);
        std::thread::sleep(Duration::from_millis(200));
        received.lock().unwrap().get(1).cloned()
    });
    assert_eq!(resolved["state"], "resolved", "{resolved}");
    // the history: firing then resolved, the first delivery retried after the receiver's 500
    let h = ok(&addr, "GET", "/v1/alerts/history?rule=errors", Value::Null);
    let events = h["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{h}");
    assert_eq!(
        (events[0]["state"].as_str(), events[1]["state"].as_str()),
        (Some("resolved"), Some("firing"))
    );
    assert_eq!(events[1]["attempts"], 2);
    assert_eq!(events[1]["delivered"], true);
    assert_eq!(received.lock().unwrap().len(), 2);
}

/// The command-line twins on a stopped server's data directory.
#[test]
fn the_cli_scores_imports_labels_and_keeps_alert_rules() {
    use crate::cli::{encore, stderr, stdout};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let json = |o: &std::process::Output| -> Value {
        assert!(o.status.success(), "{}", stderr(o));
        serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
    };
    // ad-hoc scores: a JSON schema and refusal
    let schema = r#"{"kind": "json_schema", "schema": {"type": "object", "required": ["tracks"]}}"#;
    let o = encore(
        dir,
        &[
            "--json",
            "evals",
            "score",
            "--evaluator",
            schema,
            "--evaluator",
            "refusal",
            "--output",
            "{\"title\": \"x\"}",
        ],
        &[],
    );
    let v = json(&o);
    assert_eq!(v[0]["value"], 0.0);
    assert!(
        v[0]["explanation"]
            .as_str()
            .unwrap()
            .contains("missing properties 'tracks'"),
        "{}",
        v[0]["explanation"]
    );
    assert_eq!(v[1]["evaluator"], "refusal");
    let o = encore(
        dir,
        &["evals", "score", "--evaluator", "vibes", "--output", "x"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("\"vibes\""));
    // a dataset from JSONL: the bad line named by file and line, the rest kept; versions
    let file = dir.join("golden.jsonl");
    std::fs::write(
        &file,
        "{\"input\": \"a\", \"expected\": \"A\"}\nnot json\n{\"input\": \"b\"}\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let v = json(&encore(
        dir,
        &["--json", "datasets", "import", "golden", "--file", f],
        &[],
    ));
    assert_eq!(
        (v["version"].as_u64(), v["items"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("golden.jsonl:2: not JSON")
    );
    let v = json(&encore(
        dir,
        &[
            "--json", "datasets", "import", "golden", "--file", f, "--append",
        ],
        &[],
    ));
    assert_eq!(
        (v["version"].as_u64(), v["items"].as_u64()),
        (Some(2), Some(4))
    );
    let v = json(&encore(
        dir,
        &["--json", "datasets", "show", "golden@1"],
        &[],
    ));
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    // a queue of the dataset's items, labelled on a numeric schema
    let o = encore(
        dir,
        &[
            "evals",
            "queue",
            "create",
            "rel",
            "--schema",
            r#"{"kind": "numeric", "name": "relevance", "min": 1, "max": 5}"#,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&encore(
        dir,
        &[
            "--json",
            "evals",
            "queue",
            "fill",
            "rel",
            "--dataset",
            "golden@1",
        ],
        &[],
    ));
    assert_eq!(v["added"], 2);
    let o = encore(
        dir,
        &[
            "evals",
            "queue",
            "label",
            "rel",
            "0",
            "--labeller",
            "bob",
            "--label",
            "9",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("expected a number in [1, 5]"),
        "{}",
        stderr(&o)
    );
    let v = json(&encore(
        dir,
        &[
            "--json",
            "evals",
            "queue",
            "label",
            "rel",
            "1",
            "--labeller",
            "bob",
            "--label",
            "4",
        ],
        &[],
    ));
    assert_eq!(
        (v["value"].as_f64(), v["source"].as_str()),
        (Some(0.75), Some("human:bob"))
    );
    let v = json(&encore(
        dir,
        &["--json", "evals", "scores", "--source", "human:"],
        &[],
    ));
    assert_eq!(v.as_array().unwrap().len(), 1);
    // alert rules are checked, stored and listed
    let o = encore(
        dir,
        &[
            "alerts",
            "add",
            r#"{"name": "x", "metric": {"kind": "error_rate"}, "window_s": 0, "op": "above", "threshold": 1}"#,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("window_s"), "{}", stderr(&o));
    let rule = r#"{"name": "halluc", "metric": {"kind": "fail_rate", "evaluator": "judge_hallucination"}, "window_s": 3600, "op": "above", "threshold": 0.1, "min_count": 50}"#;
    assert!(encore(dir, &["alerts", "add", rule], &[]).status.success());
    let v = json(&encore(dir, &["--json", "alerts", "list"], &[]));
    assert_eq!(v[0]["metric"]["evaluator"], "judge_hallucination");
    assert!(
        json(&encore(dir, &["--json", "alerts", "history"], &[]))
            .as_array()
            .unwrap()
            .is_empty()
    );
}

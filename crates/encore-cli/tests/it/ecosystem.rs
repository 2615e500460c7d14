//! encore read by tools nobody here wrote: promtool and both prometheus_client parsers on
//! `/metrics`, DuckDB on the Parquet lake, the OpenTelemetry `openai-v2` and OpenInference
//! instrumentations of the OpenAI client. A tool that cannot be had here makes its test skip with a message; CI sets
//! `ENCORE_REQUIRE_TOOLS=1`, under which a missing tool fails the test instead.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Skips (or, in CI, fails) for want of `what`.
pub(crate) fn missing(what: &str) {
    if std::env::var_os("ENCORE_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("ENCORE_REQUIRE_TOOLS=1 and {what} is missing");
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("skipping: {what} is missing (CI installs it)");
    }
}

/// The Python packages the ecosystem tests drive.
pub(crate) const PACKAGES: [&str; 11] = [
    "prometheus-client==0.21.1",
    "duckdb==1.1.3",
    "openai==3.63.0",
    "httpx==0.28.1",
    "wrapt==1.17.3",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
    "opentelemetry-instrumentation-openai-v2==2.3b0",
    "opentelemetry-util-genai==1.3b0",
    "openinference-instrumentation-openai==0.1.66",
    "openinference-instrumentation==0.1.72",
];

/// What the venv must import to be ready.
const IMPORTS: &str = "import prometheus_client, duckdb, openai, httpx, \
    opentelemetry.instrumentation.openai_v2, openinference.instrumentation.openai";

/// A python3 with [`PACKAGES`]: `ENCORE_ECOSYSTEM_PYTHON`, or a venv made (once) under the
/// cache directory.
pub(crate) fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENCORE_ECOSYSTEM_PYTHON") {
        return Some(p.into());
    }
    let venv = PathBuf::from(std::env::var_os("HOME")?).join(".cache/encore-ecosystem-venv");
    let python = venv.join("bin/python");
    let ready = |p: &PathBuf| {
        Command::new(p)
            .args(["-c", IMPORTS])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let _ = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        let _ = Command::new(venv.join("bin/pip"))
            .args(["install", "-q"])
            .args(PACKAGES)
            .status();
    }
    ready(&python).then_some(python)
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn scrape(addr: &str, accept: Option<&str>) -> (String, String) {
    let headers: Vec<(&str, &str)> = accept.map(|a| vec![("Accept", a)]).unwrap_or_default();
    let r = encore_http::Connection::open(addr)
        .unwrap()
        .send("GET", "/metrics", &headers, b"")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    (r.header("content-type").unwrap_or("").to_owned(), r.body)
}

/// `/metrics` speaks the classic text format to a plain scrape and OpenMetrics to a scraper
/// that asks for it; promtool finds nothing to complain about, and prometheus_client's two
/// parsers read every family, with the ingest counts, queue depth, process and build metrics.
#[test]
fn metrics_pass_promtool_and_both_parsers() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, port) = crate::serve::start(&tmp.path().join("data"));
    let addr = format!("127.0.0.1:{port}");
    let (_, body) = &crate::serve::batches()[0];
    let r = encore_server::client::request(&addr, "POST", "/v1/events", body).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let bad = br#"[{"event_id": "x1", "user_id": "u1"}]"#;
    encore_server::client::request(&addr, "POST", "/v1/events", bad).unwrap();

    let (content_type, text) = scrape(&addr, None);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(!text.contains("# EOF"));
    for needle in [
        "# TYPE encore_http_requests_total counter",
        "encore_events_ingested_total{outcome=\"accepted\"} 1000",
        "encore_events_ingested_total{outcome=\"rejected\"} 1",
        "# TYPE encore_event_log_queue_depth gauge",
        "encore_build_info{version=",
        "# TYPE process_cpu_seconds_total counter",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("encore_events_rejected_by_rule_total{rule=")),
        "{text}"
    );
    let (content_type, open) = scrape(
        &addr,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(open.ends_with("# EOF\n"));
    let _ = child.kill();
    let _ = child.wait();

    match which("promtool") {
        Some(promtool) => {
            let (ok, out) =
                run_with_stdin(Command::new(promtool).args(["check", "metrics"]), &text);
            assert!(
                ok && out.trim().is_empty(),
                "promtool check metrics:\n{out}"
            );
        }
        None => missing("promtool (Debian package prometheus)"),
    }
    match python() {
        Some(python) => {
            let check = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families as classic
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
text, om = open(sys.argv[1]).read(), open(sys.argv[2]).read()
a = {f.name: f.type for f in classic(text)}
b = {f.name: f.type for f in openmetrics(om)}
assert a["encore_events_ingested"] == "counter", a
assert b["encore_events_ingested"] == "counter", b
assert a["encore_http_request_duration_seconds"] == "histogram", a
untyped = [n for n, t in a.items() if t in ("untyped", "unknown")]
assert not untyped, untyped
assert set(a) == set(b), set(a) ^ set(b)
print(len(a), "families")
"#;
            let (t, o) = (tmp.path().join("text"), tmp.path().join("om"));
            std::fs::write(&t, &text).unwrap();
            std::fs::write(&o, &open).unwrap();
            let out = Command::new(python)
                .args(["-c", check])
                .arg(&t)
                .arg(&o)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => missing("python3 with prometheus_client"),
    }
}

/// `name` on the PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What DuckDB counts in the lake under `data`: events, their time column's type, ms_played's
/// type, spans and their time column's type. The query is the README's.
fn duckdb_counts(python: &std::path::Path, data: &std::path::Path) -> serde_json::Value {
    let script = r#"
import json, sys, duckdb
data = sys.argv[1]
con = duckdb.connect()
def one(sql):
    try:
        return con.execute(sql).fetchone()
    except duckdb.IOException:
        return (0, None, None)  # no segment yet
events = one(f"""
    SELECT count(*), typeof(any_value(ts_start_ms)), typeof(any_value(ms_played))
    FROM read_parquet('{data}/events/playback/segments/*/*.parquet', hive_partitioning = true)""")
spans = one(f"""
    SELECT count(*), typeof(any_value(ts_start_ns)), typeof(any_value(ts_start_ms))
    FROM read_parquet('{data}/traces/spans/segments/*/*.parquet', hive_partitioning = true)""")
print(json.dumps({"events": events, "spans": spans}))
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Events and spans posted to a running server are in the Parquet lake for DuckDB within
/// `[storage] seal_interval_s`, times as UTC timestamps and counts as signed integers.
#[test]
fn duckdb_reads_the_lake_while_the_server_runs() {
    let Some(python) = python() else {
        return missing("python3 with duckdb");
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut child, port, _) =
        crate::serve::start_full(&data, &[("ENCORE__STORAGE__SEAL_INTERVAL_S", "1")]);
    let addr = format!("127.0.0.1:{port}");
    let (_, body) = &crate::serve::batches()[0];
    let r = encore_server::client::request(&addr, "POST", "/v1/events", body).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, _) = crate::traces::post(
        &addr,
        &crate::traces::json_batch("lake", 0, 40),
        "application/json",
        false,
    )
    .unwrap();
    assert_eq!(status, 200);
    // nothing reached seal_rows (4,000 events, 100,000 spans): only the interval seals
    let started = std::time::Instant::now();
    let counts = loop {
        let c = duckdb_counts(&python, &data);
        if c["events"][0] == 1000 && c["spans"][0] == 40 {
            break c;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "not in the lake: {c}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_eq!(counts["events"][1], "TIMESTAMP WITH TIME ZONE", "{counts}");
    assert_eq!(counts["events"][2], "BIGINT", "{counts}");
    assert_eq!(counts["spans"][1], "TIMESTAMP WITH TIME ZONE", "{counts}");
    assert_eq!(counts["spans"][2], "TIMESTAMP WITH TIME ZONE", "{counts}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The OpenAI client instrumented by `openai-v2` (prompts and completions as log events, its
/// default content mode) and by OpenInference (the request in `llm.invocation_parameters`):
/// through encore's API each call has its models, tokens, cost, parameters and content, a
/// failed call its request model, and `model=gpt-4o-mini` finds the dated response model too.
#[test]
fn genai_instrumentors_give_model_tokens_cost_and_content() {
    let Some(python) = python() else {
        return missing("python3 with the openai-v2 and OpenInference instrumentations");
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, port) = crate::serve::start(&tmp.path().join("data"));
    let addr = format!("127.0.0.1:{port}");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel/instrumentors.py");
    for mode in ["openai-v2", "openinference"] {
        let out = Command::new(&python)
            .arg(&script)
            .arg(format!("http://{addr}"))
            .arg(mode)
            .arg(mode)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let traces: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(traces.len(), 2, "{mode}");
        let llm_span = |trace: &str| -> serde_json::Value {
            let r =
                encore_server::client::request(&addr, "GET", &format!("/v1/traces/{trace}"), b"")
                    .unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            let t: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            t["spans"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["request_model"].is_string())
                .cloned()
                .unwrap_or_else(|| panic!("{mode}: no model call in {t}"))
        };
        let ok = llm_span(&traces[0]);
        assert_eq!(ok["request_model"], "gpt-4o-mini", "{mode}: {ok}");
        assert_eq!(
            ok["response_model"], "gpt-4o-mini-2024-07-18",
            "{mode}: {ok}"
        );
        assert_eq!(
            (ok["input_tokens"].as_i64(), ok["output_tokens"].as_i64()),
            (Some(41), Some(9))
        );
        let cost = ok["cost_usd"].as_f64().unwrap();
        assert!(
            (cost - (41.0 * 0.15 + 9.0 * 0.6) / 1e6).abs() < 1e-12,
            "{mode}: {ok}"
        );
        assert_eq!(
            ok["attributes"]["gen_ai.request.temperature"], 0.3,
            "{mode}: {ok}"
        );
        let input = ok["input"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode}: no input: {ok}"));
        assert!(input.contains("rainy sunday trip-hop"), "{mode}: {input}");
        let output = ok["output"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode}: no output: {ok}"));
        assert!(output.contains("Teardrop"), "{mode}: {output}");
        // the failed call: its request model, no made-up tokens or cost
        let failed = llm_span(&traces[1]);
        assert_eq!(failed["status"], "error", "{mode}: {failed}");
        assert_eq!(failed["request_model"], "gpt-4o-mini", "{mode}: {failed}");
        assert!(
            failed["cost_usd"].is_null() && failed["input_tokens"].is_null(),
            "{failed}"
        );
        // a model filter finds both calls by family
        let r = encore_server::client::request(
            &addr,
            "GET",
            &format!("/v1/spans?project={mode}&model=gpt-4o-mini"),
            b"",
        )
        .unwrap();
        let listed: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            listed["spans"].as_array().unwrap().len(),
            2,
            "{mode}: {listed}"
        );
        let r = encore_server::client::request(
            &addr,
            "GET",
            &format!("/v1/spans?project={mode}&model=gpt-4o"),
            b"",
        )
        .unwrap();
        let listed: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(
            listed["spans"].as_array().unwrap().is_empty(),
            "gpt-4o is another family"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

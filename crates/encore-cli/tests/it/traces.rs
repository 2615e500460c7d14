//! Traces through a real `encore serve`: OTLP/HTTP in (JSON and gzip protobuf), spans out, and
//! no acknowledged span lost to SIGKILL.

use crate::serve::{start, terminate};
use std::time::Duration;

/// An OTLP/JSON export of `n` LLM spans of project `project`, the ids numbered from `first`.
pub(crate) fn json_batch(project: &str, first: usize, n: usize) -> Vec<u8> {
    let spans: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            // an hour ago: within any retention
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            let start = now - 3_600_000_000_000 + i as u64 * 1_000;
            serde_json::json!({
                "traceId": format!("{:032x}", i / 4 + 1),
                "spanId": format!("{:016x}", i + 1),
                "name": "chat gpt-4o-mini",
                "kind": 3,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 120_000_000).to_string(),
                "attributes": [
                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "800"}},
                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "100"}},
                    {"key": "gen_ai.input.messages", "value": {"stringValue": "a playlist for a rainy sunday, write to me at fan@example.org"}}
                ],
                "status": {"code": 1}
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "playlist-writer"}},
            {"key": "openinference.project.name", "value": {"stringValue": project}}
        ]},
        "scopeSpans": [{"spans": spans}]
    }]}))
    .unwrap()
}

pub(crate) fn post(
    addr: &str,
    body: &[u8],
    content_type: &str,
    gzip: bool,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let enc = if gzip {
        "Content-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        s,
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n{enc}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, out))
}

fn get(addr: &str, path: &str) -> serde_json::Value {
    let r = encore_http::request(addr, "GET", path, b"").unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn otlp_exports_are_queryable_and_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (per_batch, batches) = (200, 40);
    let mut acked = 0usize;
    let mut next = 0;
    let mut kills = 0;
    while next < batches {
        let (mut child, port) = start(&data);
        let addr = format!("127.0.0.1:{port}");
        let kill_at = if kills < 2 {
            next + 3 + kills * 2
        } else {
            usize::MAX
        };
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // the kill lands while the client sends its next batch
        let killer = std::thread::spawn(move || {
            if rx.recv().is_ok() {
                std::thread::sleep(Duration::from_millis(2));
                let _ = child.kill();
                let _ = child.wait();
                return (true, child);
            }
            (false, child)
        });
        while next < batches {
            if next == kill_at {
                let _ = tx.send(());
            }
            match post(
                &addr,
                &json_batch("crash", next * per_batch, per_batch),
                "application/json",
                false,
            ) {
                Ok((200, _)) => {
                    acked += per_batch;
                    next += 1;
                }
                Ok((503, _)) => std::thread::sleep(Duration::from_millis(20)),
                Ok((status, body)) if status != 0 => panic!("unexpected {status}: {body}"),
                _ => break,
            }
        }
        drop(tx);
        let (killed, mut child) = killer.join().unwrap();
        if killed {
            kills += 1;
            continue;
        }
        // every acknowledged span is there after the restarts, once: a batch cut by a kill may
        // have been stored before its answer was lost, and its retry is recognized
        let count = get(&addr, "/v1/spans/count?project=crash")["count"]
            .as_u64()
            .unwrap();
        assert_eq!(
            count as usize, acked,
            "{count} stored, {acked} acknowledged"
        );
        // an exporter's retry of an acknowledged batch changes nothing
        let (status, _) = post(
            &addr,
            &json_batch("crash", 0, per_batch),
            "application/json",
            false,
        )
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            get(&addr, "/v1/spans/count?project=crash")["count"].as_u64(),
            Some(acked as u64)
        );
        // gzip protobuf from a real OTLP encoder, and the listing filters
        use prost::Message;
        let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
            serde_json::from_slice(&json_batch("proto", 1_000_000, 30)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &req.encode_to_vec()).unwrap();
        let (status, body) =
            post(&addr, &gz.finish().unwrap(), "application/x-protobuf", true).unwrap();
        assert_eq!(status, 200, "{body}");
        let listed = get(&addr, "/v1/spans?project=proto&model=gpt-4o-mini&limit=100");
        let spans = listed["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 30);
        let s = &spans[0];
        assert_eq!(
            (s["input_tokens"].as_i64(), s["output_tokens"].as_i64()),
            (Some(800), Some(100))
        );
        let want = (800.0 * 0.15 + 100.0 * 0.60) / 1e6;
        assert!(
            (s["cost_usd"].as_f64().unwrap() - want).abs() < 1e-12,
            "{s}"
        );
        assert_eq!(get(&addr, "/v1/spans/count?project=proto")["count"], 30);
        let (status, _) = post(&addr, b"not protobuf", "application/x-protobuf", false).unwrap();
        assert_eq!(status, 400);
        let metrics = encore_http::request(&addr, "GET", "/metrics", b"")
            .unwrap()
            .body;
        assert!(
            metrics.contains("encore_redactions_total{kind=\"email\"}"),
            "{metrics}"
        );
        terminate(&child);
        assert!(child.wait().unwrap().success());
    }
    assert!(kills >= 1);
    // the same store from the command line, the server stopped
    let cli = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--data-dir", data.to_str().unwrap(), "traces"];
        all.extend_from_slice(args);
        all.push("--json");
        let o = crate::cli::encore(tmp.path(), &all, &[]);
        assert!(o.status.success(), "{}", crate::cli::stderr(&o));
        serde_json::from_str(&crate::cli::stdout(&o)).unwrap()
    };
    assert_eq!(cli(&["count", "--project", "proto"])["count"], 30);
    let stats = cli(&["stats", "--project", "crash", "--group-by", "model"]);
    assert_eq!(stats[0]["group"], "gpt-4o-mini");
    assert_eq!(stats[0]["count"].as_u64(), Some(acked as u64));
    let listed = cli(&["list", "--project", "proto", "--limit", "5"]);
    assert_eq!(listed.as_array().unwrap().len(), 5);
    let tid = listed[0]["trace_id"].as_str().unwrap().to_owned();
    let tree = cli(&["show", &tid]);
    assert!(!tree.as_array().unwrap().is_empty());
    // prices change in config: recompute, and every gpt-4o-mini span costs twice as much
    std::fs::write(
        tmp.path().join("encore.toml"),
        "[telemetry]\nprices = [{ model = \"gpt-4o-mini\", input = 0.30, output = 1.20 }]\n",
    )
    .unwrap();
    let before = cli(&["list", "--project", "proto", "--limit", "1"])[0]["cost_usd"]
        .as_f64()
        .unwrap();
    let redone = cli(&["recompute-costs"]);
    assert_eq!(
        redone["changed"].as_u64(),
        Some(acked as u64 + 30),
        "{redone}"
    );
    assert!(redone["prices"].as_str().unwrap().contains("+config-"));
    let after = cli(&["list", "--project", "proto", "--limit", "1"])[0]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!((after - 2.0 * before).abs() < 1e-12, "{before} -> {after}");
}

/// A Python with the OpenTelemetry SDK and its OTLP/HTTP exporter: `ENCORE_OTEL_PYTHON`, or a
/// venv made (once) under the cache directory. `None` when neither can be had (no python3, no
/// package index): the test then says so and skips; CI sets `ENCORE_OTEL_PYTHON`.
fn otel_python() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("ENCORE_OTEL_PYTHON") {
        return Some(p.into());
    }
    let home = std::env::var_os("HOME")?;
    let venv = std::path::Path::new(&home).join(".cache/encore-otel-venv");
    let python = venv.join("bin/python");
    let ready = |p: &std::path::Path| {
        std::process::Command::new(p)
            .args([
                "-c",
                "import opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return Some(python);
    }
    let ok = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "-q",
                "opentelemetry-sdk",
                "opentelemetry-exporter-otlp-proto-http",
                "opentelemetry-exporter-otlp-proto-grpc",
            ])
            .status()
            .is_ok_and(|s| s.success());
    (ok && ready(&python)).then_some(python)
}

#[test]
fn the_opentelemetry_python_sdk_exports_genai_spans() {
    let Some(python) = otel_python() else {
        crate::ecosystem::missing("python3 with the OpenTelemetry SDK (set ENCORE_OTEL_PYTHON)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (child, port, grpc) = crate::serve::start_full(
        &tmp.path().join("data"),
        &[("ENCORE__SERVER__OTLP_GRPC", "127.0.0.1:0")],
    );
    let addr = format!("127.0.0.1:{port}");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel/export_genai.py");
    let export = |endpoint: String, project: &str| {
        let status = std::process::Command::new(&python)
            .arg(&script)
            .arg(endpoint)
            .arg("25")
            .arg(project)
            .status()
            .unwrap();
        assert!(status.success());
    };
    export(format!("http://{addr}/v1/traces"), "sdk");
    // the same over OTLP/gRPC
    let grpc = grpc.expect("an OTLP/gRPC port");
    export(format!("grpc://{grpc}"), "sdk-grpc");
    assert_eq!(get(&addr, "/v1/spans/count?project=sdk-grpc")["count"], 50);
    let over_grpc = get(&addr, "/v1/spans?project=sdk-grpc&operation=chat&limit=100");
    assert_eq!(over_grpc["spans"].as_array().unwrap().len(), 25);
    assert_eq!(over_grpc["spans"][0]["output_tokens"], 300);
    // the SDK returned after its exports were acknowledged: all 50 spans are there now
    assert_eq!(get(&addr, "/v1/spans/count?project=sdk")["count"], 50);
    let llm = get(&addr, "/v1/spans?project=sdk&operation=chat&limit=100");
    let spans = llm["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 25);
    for s in spans {
        let input = s["input_tokens"].as_i64().unwrap();
        assert!((1200..1225).contains(&input), "{s}");
        assert_eq!(s["output_tokens"], 300);
        assert_eq!(s["cache_read_tokens"], 1000);
        assert_eq!(s["provider"], "anthropic");
        assert_eq!(s["response_model"], "claude-sonnet-4-20250514");
        assert_eq!(s["kind"], "client");
        assert!(s["parent_span_id"].is_string());
        // (input - cached) at 3.00, cached at 0.30, output at 15.00 per million
        let want = ((input - 1000) as f64 * 3.0 + 1000.0 * 0.30 + 300.0 * 15.0) / 1e6;
        assert!(
            (s["cost_usd"].as_f64().unwrap() - want).abs() < 1e-12,
            "{s}"
        );
    }
    let roots = get(&addr, "/v1/spans?project=sdk&root=true&limit=100");
    assert_eq!(roots["spans"].as_array().unwrap().len(), 25);
    // aggregates: per model, the 25 LLM calls with their tokens and cost; top users by cost
    let by_model = get(
        &addr,
        "/v1/spans/stats?project=sdk&operation=chat&group_by=model",
    );
    let row = &by_model["rows"][0];
    assert_eq!(row["group"], "claude-sonnet-4-20250514", "{by_model}");
    assert_eq!(row["count"], 25);
    assert_eq!(row["tokens"]["output"], 25 * 300);
    assert_eq!(
        row["tokens"]["input"],
        (0..25).map(|i| 1200 + i).sum::<i64>()
    );
    let total: f64 = spans.iter().map(|s| s["cost_usd"].as_f64().unwrap()).sum();
    assert!((row["cost_usd"].as_f64().unwrap() - total).abs() < 1e-9);
    assert!(
        row["latency_ms"]["p99"].as_f64().unwrap() >= row["latency_ms"]["p50"].as_f64().unwrap()
    );
    // the LLM calls inherit their trace's user from the root span: cost per user adds up
    let top = get(&addr, "/v1/spans/stats?project=sdk&group_by=user&limit=3");
    let top = top["rows"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert!(top[0]["cost_usd"].as_f64().unwrap() >= top[1]["cost_usd"].as_f64().unwrap());
    let all_users = get(&addr, "/v1/spans/stats?project=sdk&group_by=user");
    let per_user: f64 = all_users["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .sum();
    assert!((per_user - total).abs() < 1e-9, "{all_users}");
    // search in the prompts (stored redacted), and one trace as a tree
    let found = get(&addr, "/v1/spans?project=sdk&q=nick%20drake&limit=100");
    assert_eq!(found["spans"].as_array().unwrap().len(), 25);
    let tid = spans[0]["trace_id"].as_str().unwrap();
    let tree = get(&addr, &format!("/v1/traces/{tid}"));
    let tree = tree["spans"].as_array().unwrap();
    assert_eq!(tree.len(), 2);
    assert_eq!(
        (tree[0]["depth"].as_u64(), tree[1]["depth"].as_u64()),
        (Some(0), Some(1))
    );
    let prompt = tree[1]["input"].as_str().unwrap();
    assert!(
        prompt.contains("Nick Drake")
            && prompt.contains("[EMAIL]")
            && !prompt.contains("me@example.net")
    );
    let one = get(&addr, "/v1/spans?project=sdk&user=listener-3&root=true");
    assert!(!one["spans"].as_array().unwrap().is_empty());
    terminate(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_telemetry_config_drops_content_and_hashes_user_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, port, _) = crate::serve::start_full(
        &tmp.path().join("data"),
        &[
            ("ENCORE__TELEMETRY__CONTENT", "metadata_only"),
            ("ENCORE__TELEMETRY__USER_ID_KEY", "k3y"),
        ],
    );
    let addr = format!("127.0.0.1:{port}");
    let mut body: serde_json::Value = serde_json::from_slice(&json_batch("cfg", 0, 4)).unwrap();
    for s in body["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array_mut()
        .unwrap()
    {
        s["attributes"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"key": "user.id", "value": {"stringValue": "listener-42"}}));
    }
    let (status, _) = post(
        &addr,
        &serde_json::to_vec(&body).unwrap(),
        "application/json",
        false,
    )
    .unwrap();
    assert_eq!(status, 200);
    let listed = get(&addr, "/v1/spans?project=cfg");
    let span = &listed["spans"][0];
    let user = span["user_id"].as_str().unwrap();
    assert_ne!(user, "listener-42");
    assert_eq!(user.len(), 32, "a keyed hash, hex");
    // the same listener hashes the same way: their spans can still be grouped
    assert_eq!(
        get(&addr, &format!("/v1/spans?project=cfg&user={user}"))["spans"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let tree = get(
        &addr,
        &format!("/v1/traces/{}", span["trace_id"].as_str().unwrap()),
    );
    assert!(tree["spans"][0]["input"].is_null(), "{tree}");
    assert_eq!(span["input_tokens"], 800, "metadata is kept");
    terminate(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
}

/// A trace key limited to a project reads and writes that project only; prompts and completions
/// need `traces:content`, and reading them is audited.
#[test]
fn project_limited_keys_see_their_project_only() {
    use encore_http::Connection;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    let key = |name: &str, scopes: &str, projects: Option<&str>| -> String {
        let mut args = vec!["keys", "create", "--name", name, "--scopes", scopes];
        if let Some(p) = projects {
            args.extend(["--projects", p]);
        }
        crate::serve::encore_json(tmp.path(), data_s, &args)["key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let writer = key("writer", "traces:write", None);
    let alpha = key("alpha-reader", "traces:read,traces:write", Some("alpha"));
    let content = key("alpha-content", "traces:read,traces:content", Some("alpha"));
    let admin = key("ops", "admin", None);
    let (child, port, _) = crate::serve::start_full(&data, &[("ENCORE__SERVER__AUTH", "required")]);
    let _server = crate::serve::Stop(child);
    let addr = format!("127.0.0.1:{port}");
    let call = |k: &str, method: &str, path: &str, body: &[u8]| {
        let r = Connection::open(&addr)
            .unwrap()
            .with_key(Some(k))
            .send(method, path, &[("Content-Type", "application/json")], body)
            .unwrap();
        (
            r.status,
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap_or_default(),
        )
    };
    assert_eq!(
        call(&writer, "POST", "/v1/traces", &json_batch("alpha", 0, 4)).0,
        200
    );
    assert_eq!(
        call(&writer, "POST", "/v1/traces", &json_batch("beta", 100, 4)).0,
        200
    );
    // writes: a limited key may not write another project
    let (s, v) = call(&alpha, "POST", "/v1/traces", &json_batch("beta", 200, 1));
    assert_eq!(s, 403, "{v}");
    // reads: its own project, with or without naming it; never another
    let (s, v) = call(&alpha, "GET", "/v1/spans", b"");
    assert_eq!(s, 200, "{v}");
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 4);
    assert!(spans.iter().all(|s| s["project"] == "alpha"), "{v}");
    assert_eq!(call(&alpha, "GET", "/v1/spans?project=beta", b"").0, 403);
    assert_eq!(
        call(&alpha, "GET", "/v1/spans/stats?project=beta", b"").0,
        403
    );
    assert_eq!(
        call(&alpha, "GET", "/v1/spans/count?project=beta", b"").0,
        403
    );
    let beta_trace = format!("/v1/traces/{:032x}", 100 / 4 + 1);
    assert_eq!(
        call(&alpha, "GET", &beta_trace, b"").0,
        404,
        "another project's trace is not there"
    );
    assert_eq!(call(&admin, "GET", &beta_trace, b"").0, 200);
    // content: only with traces:content, and that read is audited
    let alpha_trace = format!("/v1/traces/{:032x}", 1);
    let (_, v) = call(&alpha, "GET", &alpha_trace, b"");
    assert!(v["spans"][0]["input"].is_null(), "{v}");
    assert_eq!(call(&alpha, "GET", "/v1/spans?q=rainy", b"").0, 403);
    let (_, v) = call(&content, "GET", &alpha_trace, b"");
    assert!(
        v["spans"][0]["input"].as_str().unwrap().contains("rainy"),
        "{v}"
    );
    let (_, audit) = call(&admin, "GET", "/v1/audit", b"");
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["key_name"] == "alpha-content" && e["target"] == alpha_trace.as_str()),
        "{audit}"
    );
}

/// OTLP exporters send the key as they send any header: `authorization` metadata over gRPC, an
/// HTTP header over OTLP/HTTP (`OTEL_EXPORTER_OTLP_HEADERS`); without one nothing is stored.
#[test]
fn otlp_exporters_authenticate_with_the_same_keys() {
    let Some(python) = otel_python() else {
        crate::ecosystem::missing("python3 with the OpenTelemetry SDK (set ENCORE_OTEL_PYTHON)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_s = data.to_str().unwrap();
    let key = |name: &str, scopes: &str| -> String {
        crate::serve::encore_json(
            tmp.path(),
            data_s,
            &["keys", "create", "--name", name, "--scopes", scopes],
        )["key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (writer, reader) = (key("sdk", "traces:write"), key("ops", "traces:read"));
    let (child, port, grpc) = crate::serve::start_full(
        &data,
        &[
            ("ENCORE__SERVER__OTLP_GRPC", "127.0.0.1:0"),
            ("ENCORE__SERVER__AUTH", "required"),
        ],
    );
    let _server = crate::serve::Stop(child);
    let addr = format!("127.0.0.1:{port}");
    let grpc = grpc.expect("an OTLP/gRPC port");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel/export_genai.py");
    let export = |endpoint: String, project: &str, key: Option<&str>| {
        let mut cmd = std::process::Command::new(&python);
        cmd.arg(&script).arg(endpoint).arg("3").arg(project);
        match key {
            Some(k) => cmd.env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("authorization=Bearer%20{k}"),
            ),
            None => cmd.env_remove("OTEL_EXPORTER_OTLP_HEADERS"),
        };
        assert!(
            cmd.stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        );
    };
    export(format!("grpc://{grpc}"), "anon-grpc", None);
    export(format!("http://{addr}/v1/traces"), "anon-http", None);
    export(format!("grpc://{grpc}"), "keyed-grpc", Some(&writer));
    export(
        format!("http://{addr}/v1/traces"),
        "keyed-http",
        Some(&writer),
    );
    let count = |project: &str| {
        let r = encore_http::Connection::open(&addr)
            .unwrap()
            .with_key(Some(&reader))
            .request("GET", &format!("/v1/spans/count?project={project}"), b"")
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!((count("anon-grpc"), count("anon-http")), (0, 0));
    assert_eq!((count("keyed-grpc"), count("keyed-http")), (6, 6));
}

/// OTLP/gRPC over TLS (`[server] tls_cert`/`tls_key`): the OpenTelemetry SDK exports through it
/// when it trusts the CA, with its key, and nothing arrives from a client that does not.
#[test]
fn otlp_grpc_speaks_tls() {
    let Some(python) = otel_python() else {
        crate::ecosystem::missing("python3 with the OpenTelemetry SDK (set ENCORE_OTEL_PYTHON)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ca = encore_http::testing::TestCa::new();
    let files = ["ca.pem", "cert.pem", "key.pem"].map(|f| tmp.path().join(f));
    std::fs::write(&files[0], &ca.ca_pem).unwrap();
    std::fs::write(&files[1], &ca.cert_pem).unwrap();
    std::fs::write(&files[2], &ca.key_pem).unwrap();
    let data = tmp.path().join("data");
    let key = crate::serve::encore_json(
        tmp.path(),
        data.to_str().unwrap(),
        &[
            "keys",
            "create",
            "--name",
            "sdk",
            "--scopes",
            "traces:write,traces:read",
        ],
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (child, port, grpc) = crate::serve::start_full(
        &data,
        &[
            ("ENCORE__SERVER__OTLP_GRPC", "127.0.0.1:0"),
            ("ENCORE__SERVER__AUTH", "required"),
            ("ENCORE__SERVER__TLS_CERT", files[1].to_str().unwrap()),
            ("ENCORE__SERVER__TLS_KEY", files[2].to_str().unwrap()),
        ],
    );
    let _server = crate::serve::Stop(child);
    let grpc_port = grpc
        .expect("an OTLP/gRPC port")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel/export_genai.py");
    let export = |endpoint: String, project: &str| {
        let status = std::process::Command::new(&python)
            .arg(&script)
            .arg(endpoint)
            .arg("2")
            .arg(project)
            .env(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("authorization=Bearer%20{key}"),
            )
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &files[0])
            // the plaintext attempt is retried until this runs out
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    export(format!("grpcs://localhost:{grpc_port}"), "tls");
    // plaintext to the TLS port: refused at the handshake, nothing stored
    export(format!("grpc://127.0.0.1:{grpc_port}"), "plain");
    let client = encore_http::outbound::Outbound::new(encore_http::outbound::Options {
        extra_roots_pem: Some(ca.ca_pem.as_bytes().to_vec()),
        ..Default::default()
    })
    .unwrap();
    let auth = format!("Bearer {key}");
    let count = |project: &str| {
        let r = client
            .get(
                &format!("https://localhost:{port}/v1/spans/count?project={project}"),
                &[("Authorization", auth.as_str())],
            )
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!((count("tls"), count("plain")), (4, 0));
}

//! The normalization table against the public fixtures of `../shared` (skipped when absent),
//! OTLP decoding, and privacy: raw personal data reaches neither the WAL nor the segments.

use encore_telemetry::normalize::map;
use encore_telemetry::otlp::{Normalizer, decode};
use encore_telemetry::{Filter, Redactions, SpanStore};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};
use prost::Message;
use serde_json::{Map, Value};
use std::path::PathBuf;

fn fixtures() -> Option<PathBuf> {
    encore_core::shared::path(
        env!("CARGO_MANIFEST_DIR"),
        "datasets/llm-observability-fixtures",
    )
}

fn object(path: PathBuf) -> Map<String, Value> {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn three_vocabularies_map_to_the_same_canonical_span() {
    let Some(dir) = fixtures() else { return };
    let genai = map(&object(
        dir.join("openinference-genai/otel_genai_client_span_tool_calls.json"),
    ));
    let old = map(&object(dir.join(
        "openinference-genai/otel_genai_deprecated_client_span_tool_calls.json",
    )));
    let oi = map(&object(dir.join(
        "openinference-genai/openinference_client_span_tool_calls.json",
    )));
    for m in [&genai, &old, &oi] {
        assert_eq!(m.provider.as_deref(), Some("openai"), "{m:?}");
        assert_eq!(m.response_model.as_deref(), Some("gpt-4-0613"));
        assert_eq!(m.tokens.input, Some(97));
        assert_eq!(m.tokens.output, Some(52));
        assert!(m.input.as_deref().unwrap().contains("Weather in Paris?"));
        assert!(m.output.as_deref().unwrap().contains("rainy"));
    }
    assert_eq!(genai.operation.as_deref(), Some("chat"));
    assert_eq!(genai.request_model.as_deref(), Some("gpt-4"));
    assert_eq!(oi.ai_kind.as_deref(), Some("LLM"));
    assert_eq!(oi.tokens.total, Some(149));
    // consumed keys are not kept twice; the rest are
    assert!(!genai.attributes.contains_key("gen_ai.usage.input_tokens"));
    assert_eq!(genai.attributes["gen_ai.request.temperature"], 0.5);
    let tool = map(&object(
        dir.join("openinference-genai/otel_genai_tool_execution_span.json"),
    ));
    assert_eq!(tool.operation.as_deref(), Some("execute_tool"));
    assert_eq!(tool.attributes["gen_ai.tool.name"], "get_weather");
    // spans captured from the Vercel AI SDK: ai.* and gen_ai.* side by side
    let spans: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("openinference-vercel-v6-spans/all-spans.json")).unwrap(),
    )
    .unwrap();
    let mut with_tokens = 0;
    for s in &spans {
        let m = map(s["attributes"].as_object().unwrap());
        assert!(m.request_model.is_some(), "{}", s["name"]);
        if let Some(i) = m.tokens.input {
            assert!(i > 0);
            with_tokens += 1;
        }
    }
    assert!(
        with_tokens >= 5,
        "{with_tokens} of {} spans with tokens",
        spans.len()
    );
}

#[test]
fn the_official_otlp_json_example_decodes() {
    let Some(dir) = fixtures() else { return };
    let body = std::fs::read(dir.join("otlp-proto-examples/trace.json")).unwrap();
    let req = decode(&body, "application/json", false, 1 << 24).unwrap();
    let spans = Normalizer::default().spans(&req, &mut Redactions::default());
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(s.span_id, "eee19b7ec3c1b174");
    assert_eq!(s.kind, "server");
    assert_eq!(s.service, "my.service");
    assert_eq!(s.project, "default");
    assert!(s.end_ns > s.start_ns);
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A request of `n` LLM spans whose prompts carry `prompt`.
fn request(project: &str, n: usize, prompt: &str) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| OtlpSpan {
            trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "chat gpt-4o-mini".into(),
            kind: 3,
            start_time_unix_nano: 1_790_000_000_000_000_000 + i as u64 * 1_000_000,
            end_time_unix_nano: 1_790_000_000_000_000_000 + i as u64 * 1_000_000 + 250_000_000,
            attributes: vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.provider.name", s("openai")),
                kv("gen_ai.request.model", s("gpt-4o-mini")),
                kv("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
                kv(
                    "gen_ai.usage.input_tokens",
                    any_value::Value::IntValue(1_000),
                ),
                kv(
                    "gen_ai.usage.output_tokens",
                    any_value::Value::IntValue(200),
                ),
                kv(
                    "gen_ai.usage.cache_read.input_tokens",
                    any_value::Value::IntValue(400),
                ),
                kv("user.id", s("listener-7")),
                kv(
                    "gen_ai.input.messages",
                    s(&format!("[{{\"role\":\"user\",\"content\":\"{prompt}\"}}]")),
                ),
                kv("app.note", s(prompt)),
            ],
            status: Some(Status {
                code: if i % 10 == 0 { 2 } else { 1 },
                message: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("playlist-writer")),
                    kv("openinference.project.name", s(project)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Rows of the content table (sealed and not).
fn content_rows(store: &SpanStore) -> usize {
    let mut n = 0;
    store
        .content
        .scan(Some(&["key"]), |b| {
            n += b.num_rows();
            Ok(())
        })
        .unwrap();
    n
}

const PII: &[&str] = &[
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "+44 20 7946 0958",
    "(415) 555-2671",
    "203.0.113.77",
    "2001:db8::ff00:42:8329",
];

fn files_under(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn personal_data_is_redacted_before_the_wal_and_spans_are_priced_and_queryable() {
    let tmp = tempfile::tempdir().unwrap();
    let prompt = format!(
        "I am {}, card {}, backup card {}, call {} or {}, from {} / {}; order 4111 1111 1111 1112",
        PII[0], PII[1], PII[2], PII[3], PII[4], PII[5], PII[6]
    );
    let body = request("pii", 50, &prompt).encode_to_vec();
    // gzip on the wire too
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &body).unwrap();
    let req = decode(
        &gz.finish().unwrap(),
        "application/x-protobuf",
        true,
        1 << 24,
    )
    .unwrap();
    let mut counts = Redactions::default();
    let spans = Normalizer::default().spans(&req, &mut counts);
    assert_eq!(spans.len(), 50);
    // per span, in content and in the attribute: 1 email, 2 cards, 2 phones, 2 IPs
    assert_eq!(
        (counts.emails, counts.cards, counts.phones, counts.ips),
        (100, 200, 200, 200),
        "{counts:?}"
    );
    let input = spans[0].mapped.input.as_deref().unwrap();
    assert!(input.contains("[EMAIL]") && input.contains("[CARD]") && input.contains("[PHONE]"));
    // not a card (Luhn fails): kept
    assert!(input.contains("4111 1111 1111 1112"), "{input}");
    // priced from the table: 600 uncached + 400 cached input, 200 output
    let cost = spans[0].cost.as_ref().unwrap();
    let want = (600.0 * 0.15 + 400.0 * 0.075 + 200.0 * 0.60) / 1e6;
    assert!((cost.usd - want).abs() < 1e-15, "{cost:?}");

    let store = SpanStore::open(tmp.path(), Default::default()).unwrap();
    store.append(&spans).unwrap();
    assert_eq!(store.count(Some("pii")).unwrap(), 50);
    assert_eq!(store.count(Some("other")).unwrap(), 0);
    let errors = store
        .list(
            &Filter {
                project: Some("pii".into()),
                status: Some("error".into()),
                model: Some("gpt-4o-mini-2024-07-18".into()),
                ..Default::default()
            },
            100,
            None,
        )
        .unwrap();
    assert_eq!(errors.len(), 5);
    assert!(errors.windows(2).all(|w| w[0].start_ns > w[1].start_ns));
    // keyset pages cover everything once
    let (mut seen, mut before) = (0, None);
    loop {
        let page = store.list(&Filter::default(), 7, before).unwrap();
        seen += page.len();
        if page.len() < 7 {
            break;
        }
        before = page.last().map(|r| r.start_ns);
    }
    assert_eq!(seen, 50);
    let listed =
        serde_json::to_string(&store.list(&Filter::default(), 100, None).unwrap()).unwrap();

    // the raw values are nowhere: not in the WAL (before sealing), not in the segments
    let raw_absent = |what: &str| {
        let mut files = Vec::new();
        files_under(&tmp.path().join("traces"), &mut files);
        assert!(!files.is_empty());
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            for v in PII {
                assert!(
                    !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                    "{what}: {v} found in {}",
                    f.display()
                );
            }
        }
    };
    raw_absent("wal");
    let before_seal = store.list(&Filter::default(), 20, None).unwrap();
    store.seal().unwrap();
    raw_absent("segments (compressed)");
    // the same page from the segments, newest first
    assert_eq!(
        store.list(&Filter::default(), 20, None).unwrap(),
        before_seal
    );
    assert_eq!(store.count(Some("pii")).unwrap(), 50);
    let mut text = listed;
    for log in [&store.spans, &store.content] {
        log.scan(None, |b| {
            for c in b.columns() {
                if let Some(a) = c.as_any().downcast_ref::<arrow::array::StringArray>() {
                    for v in a.iter().flatten() {
                        text.push_str(v);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    }
    assert!(text.contains("[CARD]"));
    for v in PII {
        assert!(
            !text.contains(v),
            "{v} in decompressed rows or query results"
        );
    }
}

#[test]
fn full_text_search_in_any_script_and_traces_as_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SpanStore::open(tmp.path(), Default::default()).unwrap();
    let texts = [
        "Música para días de LLUVIA",
        "雨の日のプレイリスト",
        "songs for a sunny afternoon",
    ];
    let mut req = request("search", 3, "placeholder");
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    for (span, t) in spans.iter_mut().zip(texts) {
        for kv in span.attributes.iter_mut() {
            if kv.key == "gen_ai.input.messages" {
                kv.value = Some(AnyValue {
                    value: Some(s(&format!("[{{\"content\": \"{t}\"}}]"))),
                });
            }
        }
    }
    // the third call's trace: a root and a tool call under the LLM span
    let llm = spans[2].clone();
    let mut root = llm.clone();
    root.span_id = vec![0, 0, 0, 0, 0, 0, 0, 99];
    root.name = "playlist.generate".into();
    root.start_time_unix_nano -= 1_000_000;
    root.attributes.clear();
    spans[2].parent_span_id = root.span_id.clone();
    let mut tool = llm.clone();
    tool.span_id = vec![0, 0, 0, 0, 0, 0, 0, 98];
    tool.parent_span_id = llm.span_id;
    tool.name = "execute_tool catalog.resolve_tracks".into();
    tool.start_time_unix_nano += 5_000_000;
    tool.attributes.clear();
    spans.push(root);
    spans.push(tool);
    let normalized = Normalizer::default().spans(&req, &mut Redactions::default());
    assert_eq!(store.append(&normalized).unwrap(), 5);
    // a retried export is stored once
    assert_eq!(store.append(&normalized).unwrap(), 0);
    assert_eq!(store.count(Some("search")).unwrap(), 5);
    let find = |q: &str| {
        store
            .list(
                &Filter {
                    project: Some("search".into()),
                    text: Some(q.into()),
                    ..Default::default()
                },
                10,
                None,
            )
            .unwrap()
            .len()
    };
    assert_eq!(find("lluvia"), 1);
    assert_eq!(find("MÚSICA"), 1);
    assert_eq!(find("雨の日"), 1);
    assert_eq!(find("playlist"), 0);
    assert_eq!(find("sunny"), 1);
    // attribute equals, on the attributes no rule mapped (here `app.note`)
    let by_attr = |k: &str, v: &str| {
        store
            .list(
                &Filter {
                    project: Some("search".into()),
                    attributes: vec![(k.into(), v.into())],
                    ..Default::default()
                },
                10,
                None,
            )
            .unwrap()
            .len()
    };
    assert_eq!(by_attr("app.note", "placeholder"), 3);
    assert_eq!(by_attr("app.note", "other"), 0);
    assert_eq!(by_attr("missing.key", "placeholder"), 0);
    let tree = store.trace(&normalized[2].trace_id).unwrap();
    let shape: Vec<(usize, &str)> = tree
        .iter()
        .map(|t| (t.depth, t.span.name.as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            (0, "playlist.generate"),
            (1, "chat gpt-4o-mini"),
            (2, "execute_tool catalog.resolve_tracks")
        ]
    );
    assert_eq!(tree[0].offset_ms, 0.0);
    assert!((tree[1].offset_ms - 1.0).abs() < 1e-9);
    assert!(tree[1].input.as_deref().unwrap().contains("sunny"));
}

#[test]
fn sampling_keeps_errors_slow_spans_and_a_share_of_the_rest_whole() {
    use encore_telemetry::otlp::Sampling;
    // 1,000 single-span traces: every tenth an error; 50 ms each, except trace 7 (3 s)
    let mut req = request("sampled", 1_000, "hello");
    for (i, s) in req.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        // random-looking trace ids, as real tracers make them
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        s.trace_id = (u128::from(x) << 64 | u128::from(x.rotate_left(13)))
            .to_be_bytes()
            .to_vec();
        s.end_time_unix_nano =
            s.start_time_unix_nano + if i == 7 { 3_000_000_000 } else { 50_000_000 };
    }
    let mut spans = Normalizer::default().spans(&req, &mut Redactions::default());
    let sampling = Sampling {
        rate: 0.2,
        keep_slower_than_ms: 2_000.0,
    };
    let dropped = sampling.apply(&mut spans);
    assert_eq!(dropped + spans.len(), 1_000);
    assert_eq!(
        spans.iter().filter(|s| s.status == "error").count(),
        100,
        "every error kept"
    );
    assert!(
        spans.iter().any(|s| s.duration_ns() >= 3_000_000_000),
        "the slow one kept"
    );
    let ok = spans.iter().filter(|s| s.status != "error").count();
    // about 20 % of the 900 others (binomial sd 12)
    assert!((130..=230).contains(&ok), "{ok}");
}

#[test]
fn retention_drops_expired_days_of_both_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SpanStore::open(tmp.path(), Default::default()).unwrap();
    let day_ns = 86_400_000_000_000u64;
    for (project, days_back) in [("old", 40u64), ("new", 1)] {
        let mut req = request(project, 10, "hi");
        for (i, s) in req.resource_spans[0].scope_spans[0]
            .spans
            .iter_mut()
            .enumerate()
        {
            s.trace_id[0] = days_back as u8;
            s.start_time_unix_nano = 1_790_000_000_000_000_000 - days_back * day_ns + i as u64;
            s.end_time_unix_nano = s.start_time_unix_nano + 1_000_000;
        }
        let spans = Normalizer::default().spans(&req, &mut Redactions::default());
        store.append(&spans).unwrap();
    }
    store.seal().unwrap();
    assert_eq!(store.count(None).unwrap(), 20);
    let cutoff_ms = (1_790_000_000_000_000_000 - 30 * day_ns) as i64 / 1_000_000;
    assert_eq!(store.drop_before(cutoff_ms).unwrap(), 10);
    assert_eq!(store.count(Some("old")).unwrap(), 0);
    assert_eq!(store.count(Some("new")).unwrap(), 10);
    // the content of the expired days is gone as well
    assert_eq!(content_rows(&store), 10);
    // and it stays gone after a reopen
    drop(store);
    let store = SpanStore::open(tmp.path(), Default::default()).unwrap();
    assert_eq!(store.count(None).unwrap(), 10);
}

#[test]
fn retention_per_project_and_costs_recomputed_for_a_time_range() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SpanStore::open(tmp.path(), Default::default()).unwrap();
    let day_ns = 86_400_000_000_000u64;
    let base = 1_790_000_000_000_000_000u64;
    // two projects with spans 10 and 2 days old
    for (k, (project, days_back)) in [("short", 10u64), ("short", 2), ("long", 10), ("long", 2)]
        .into_iter()
        .enumerate()
    {
        let mut req = request(project, 5, "hi");
        for (i, s) in req.resource_spans[0].scope_spans[0]
            .spans
            .iter_mut()
            .enumerate()
        {
            s.trace_id[0] = k as u8 + 1;
            s.start_time_unix_nano = base - days_back * day_ns + i as u64;
            s.end_time_unix_nano = s.start_time_unix_nano + 1_000_000;
        }
        let spans = Normalizer::default().spans(&req, &mut Redactions::default());
        store.append(&spans).unwrap();
    }
    store.seal().unwrap();
    assert_eq!(store.count(None).unwrap(), 20);
    let now_ms = (base / 1_000_000) as i64;
    let policy = encore_telemetry::store::Retention {
        default_days: 30,
        by_project: std::collections::HashMap::from([("short".to_string(), 7u32)]),
        ..Default::default()
    };
    // short keeps 7 days, long (the default) 30: only short's 10-day-old spans go
    assert_eq!(store.apply_retention(now_ms, &policy).unwrap(), 5);
    // a second pass changes nothing (and rewrites nothing)
    assert_eq!(store.apply_retention(now_ms, &policy).unwrap(), 0);
    assert_eq!(store.count(Some("short")).unwrap(), 5);
    assert_eq!(store.count(Some("long")).unwrap(), 10);
    assert_eq!(content_rows(&store), 15);

    // prices change: the last 5 days are recomputed, older spans keep their cost
    let mut prices = encore_telemetry::cost::PriceTable::default();
    prices.version = "2026-12".into();
    for p in prices
        .prices
        .iter_mut()
        .filter(|p| p.model.starts_with("gpt-4o-mini-2024-07-18"))
    {
        p.input *= 2.0;
        p.output *= 2.0;
        p.cached_input = p.cached_input.map(|c| c * 2.0);
    }
    let from = now_ms - 5 * 86_400_000;
    assert_eq!(store.recompute_costs(from, now_ms, prices).unwrap(), 10);
    let rows = store.list(&Filter::default(), 100, None).unwrap();
    let first = (600.0 * 0.15 + 400.0 * 0.075 + 200.0 * 0.60) / 1e6;
    for r in &rows {
        let want = if r.start_ns / 1_000_000 >= from {
            2.0 * first
        } else {
            first
        };
        assert!((r.cost_usd.unwrap() - want).abs() < 1e-15, "{r:?}");
    }
}

#[test]
fn retention_per_service_and_thinning_of_old_traces_at_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SpanStore::open(tmp.path(), Default::default()).unwrap();
    let day_ns = 86_400_000_000_000u64;
    let base = 1_790_000_000_000_000_000u64;
    // 400 one-span traces 10 days old, every tenth an error, half of them from service "chatty"
    let mut req = request("p", 400, "hi");
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    for (i, s) in spans.iter_mut().enumerate() {
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 31;
        s.trace_id = (u128::from(x) << 64 | u128::from(x.rotate_left(7)))
            .to_be_bytes()
            .to_vec();
        s.start_time_unix_nano = base - 10 * day_ns + i as u64;
        s.end_time_unix_nano = s.start_time_unix_nano + 1_000_000;
    }
    let mut chatty = req.clone();
    chatty.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes[0] = kv("service.name", s("chatty"));
    chatty.resource_spans[0].scope_spans[0]
        .spans
        .retain(|sp| sp.span_id[7] % 2 == 0);
    req.resource_spans[0].scope_spans[0]
        .spans
        .retain(|sp| sp.span_id[7] % 2 == 1);
    for r in [&req, &chatty] {
        let spans = Normalizer::default().spans(r, &mut Redactions::default());
        store.append(&spans).unwrap();
    }
    store.seal().unwrap();
    assert_eq!(store.count(None).unwrap(), 400);
    let now_ms = (base / 1_000_000) as i64;
    // "chatty" keeps 7 days: its 200 spans go, content too
    let policy = encore_telemetry::store::Retention {
        default_days: 30,
        by_service: std::collections::HashMap::from([("chatty".to_string(), 7u32)]),
        ..Default::default()
    };
    assert_eq!(store.apply_retention(now_ms, &policy).unwrap(), 200);
    let services = store
        .stats(
            &Filter::default(),
            encore_telemetry::store::GroupBy::Service,
            0,
        )
        .unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].group.as_deref(), Some("playlist-writer"));
    // past 5 days, traces are thinned to 25 %, errors kept
    let errors_before = store
        .list(
            &Filter {
                status: Some("error".into()),
                ..Default::default()
            },
            1_000,
            None,
        )
        .unwrap()
        .len();
    let thin = encore_telemetry::store::Retention {
        default_days: 30,
        sample_after_days: 5,
        sample_rate: 0.25,
        keep_slower_than_ms: 60_000.0,
        ..Default::default()
    };
    store.apply_retention(now_ms, &thin).unwrap();
    let left = store.count(None).unwrap() as usize;
    let errors_after = store
        .list(
            &Filter {
                status: Some("error".into()),
                ..Default::default()
            },
            1_000,
            None,
        )
        .unwrap()
        .len();
    assert_eq!(errors_after, errors_before, "every error trace kept");
    let others = left - errors_after;
    // about a quarter of the 180 others (binomial sd 6)
    assert!((25..=70).contains(&others), "{others}");
    assert_eq!(content_rows(&store), left, "content follows its spans");
}

#[test]
fn a_gzip_bomb_stops_at_the_inflate_ceiling() {
    // 64 MiB of zeros in about 64 KiB of gzip
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
    }
    let body = gz.finish().unwrap();
    assert!(body.len() < 1 << 20);
    let err = decode(&body, "application/x-protobuf", true, 1 << 24).unwrap_err();
    assert!(
        matches!(err, encore_telemetry::otlp::DecodeError::TooLarge(n) if n == 1 << 24),
        "{err}"
    );
    assert_eq!(
        encore_core::Coded::code(&err),
        encore_core::ErrorCode::TooLarge
    );
}

/// A stream without usage: the tokens are estimated from the content (4 characters a token),
/// marked as estimated in the attributes and the cost's source; a call that failed is not.
#[test]
fn streams_without_usage_get_estimated_tokens() {
    let mut req = request("p", 2, "rainy sunday trip-hop, please");
    for span in &mut req.resource_spans[0].scope_spans[0].spans {
        span.attributes
            .retain(|kv| !kv.key.starts_with("gen_ai.usage."));
        span.attributes.push(kv(
            "gen_ai.output.messages",
            s(r#"[{"role":"assistant","content":"1. Teardrop by Massive Attack"}]"#),
        ));
    }
    let spans = Normalizer::default().spans(&req, &mut Redactions::default());
    let (failed, ok) = (&spans[0], &spans[1]);
    assert_eq!(failed.status, "error");
    assert_eq!(
        failed.mapped.tokens.input, None,
        "a failed call is not estimated"
    );
    let input = ok.mapped.input.as_deref().unwrap().chars().count();
    let output = ok.mapped.output.as_deref().unwrap().chars().count();
    assert_eq!(ok.mapped.tokens.input, Some(input.div_ceil(4) as i64));
    assert_eq!(ok.mapped.tokens.output, Some(output.div_ceil(4) as i64));
    assert_eq!(
        ok.mapped.attributes["encore.tokens.estimated"],
        serde_json::json!(["input", "output"])
    );
    let cost = ok.cost.as_ref().unwrap();
    assert!(cost.source.ends_with("+estimated"), "{cost:?}");
}

/// GenAI events sent as OTLP log records become the content of the span they name: the
/// message and choice events, and the newer operation-details event; records that are not
/// GenAI events, or name no span, are left out; content policies apply.
#[test]
fn genai_log_events_become_span_content() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let kvlist = |pairs: &[(&str, &str)]| AnyValue {
        value: Some(any_value::Value::KvlistValue(
            opentelemetry_proto::tonic::common::v1::KeyValueList {
                values: pairs.iter().map(|(k, v)| kv(k, s(v))).collect(),
            },
        )),
    };
    let record = |name: &str, span: u64, body: Option<AnyValue>, attrs: Vec<KeyValue>| LogRecord {
        time_unix_nano: 1_790_000_000_000_000_000,
        event_name: name.into(),
        trace_id: 7u128.to_be_bytes().to_vec(),
        span_id: span.to_be_bytes().to_vec(),
        body,
        attributes: attrs,
        ..Default::default()
    };
    let req = |service: &str| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(
                        "gen_ai.system.message",
                        1,
                        Some(kvlist(&[("content", "be brief")])),
                        vec![],
                    ),
                    record(
                        "gen_ai.user.message",
                        1,
                        Some(kvlist(&[("content", "jazz for fan@example.org")])),
                        vec![],
                    ),
                    record(
                        "gen_ai.choice",
                        1,
                        Some(kvlist(&[("finish_reason", "stop")])),
                        vec![],
                    ),
                    record(
                        "gen_ai.client.inference.operation.details",
                        2,
                        None,
                        vec![
                            kv(
                                "gen_ai.input.messages",
                                s(r#"[{"role":"user","content":"hi"}]"#),
                            ),
                            kv(
                                "gen_ai.output.messages",
                                s(r#"[{"role":"assistant","content":"hello"}]"#),
                            ),
                        ],
                    ),
                    record("app.started", 3, Some(kvlist(&[("x", "y")])), vec![]),
                    LogRecord {
                        event_name: "gen_ai.user.message".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let n = Normalizer::default();
    let mut counts = Redactions::default();
    let got = n.log_content(&req("chat"), &mut counts);
    assert_eq!(got.ignored, 2, "not a GenAI event; no span");
    assert_eq!(got.spans.len(), 2);
    let first = &got.spans[0];
    assert_eq!(first.span_id, format!("{:016x}", 1));
    let input: Value = serde_json::from_str(first.input.as_deref().unwrap()).unwrap();
    assert_eq!(input[0]["role"], "system");
    assert_eq!(input[1]["role"], "user");
    assert!(
        !first.input.as_deref().unwrap().contains("fan@example.org"),
        "redacted"
    );
    assert_eq!(counts.emails, 1);
    assert!(first.output.as_deref().unwrap().contains("stop"));
    assert!(got.spans[1].output.as_deref().unwrap().contains("hello"));
    // a service whose content is not kept gives no content rows
    let mut strict = Normalizer::default();
    strict.content_by_service.insert(
        "chat".into(),
        encore_telemetry::otlp::ContentPolicy::MetadataOnly,
    );
    assert!(
        strict
            .log_content(&req("chat"), &mut counts)
            .spans
            .is_empty()
    );

    // stored beside the span, read back as its content
    let tmp = tempfile::tempdir().unwrap();
    let store = SpanStore::open(tmp.path(), Default::default()).unwrap();
    let mut spans = Normalizer::default().spans(&request("default", 1, "x"), &mut counts);
    spans[0].trace_id = format!("{:032x}", 7);
    spans[0].span_id = format!("{:016x}", 1);
    spans[0].mapped.input = None;
    spans[0].mapped.output = None;
    store.append(&spans).unwrap();
    store.append_content(&got.spans).unwrap();
    // a retried export repeats the rows: read once
    store.append_content(&got.spans).unwrap();
    let trace = store.trace(&format!("{:032x}", 7)).unwrap();
    let input: Value = serde_json::from_str(trace[0].input.as_deref().unwrap()).unwrap();
    assert_eq!(input.as_array().unwrap().len(), 2, "{input}");
}

/// OpenInference's `llm.invocation_parameters` give the request model (when the call failed,
/// the only model there is) and the sampling parameters.
#[test]
fn openinference_invocation_parameters_are_mapped() {
    let mut attrs = Map::new();
    attrs.insert("openinference.span.kind".into(), "LLM".into());
    attrs.insert(
        "llm.invocation_parameters".into(),
        r#"{"model": "gpt-4o-mini", "temperature": 0.3, "max_tokens": 200}"#.into(),
    );
    let m = map(&attrs);
    assert_eq!(m.request_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(m.attributes["gen_ai.request.temperature"], 0.3);
    assert_eq!(m.attributes["gen_ai.request.max_tokens"], 200);
    // the response model stays the response's, the request's comes from the parameters
    attrs.insert("llm.model_name".into(), "gpt-4o-mini-2024-07-18".into());
    let m = map(&attrs);
    assert_eq!(m.request_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(m.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
}

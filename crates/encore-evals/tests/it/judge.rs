//! The LLM judge against a real OpenAI-compatible server on 127.0.0.1 that answers from a lookup
//! table and misbehaves on purpose: it fails calls (503, 500, 401), answers too slowly, and sends
//! malformed replies.

use encore_evals::judge::{JudgeCall, JudgeConfig, LlmJudge, Rubric};
use encore_evals::{Evaluator, Sample};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    /// attempts per answer
    attempts: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    authorized: AtomicUsize,
}

fn reply(status: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn completion(content: &str) -> String {
    serde_json::json!({
        "id": "c1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    })
    .to_string()
}

/// The answer for the `n`th attempt (1-based) at the sample whose answer is `answer`.
fn respond(answer: &str, n: usize) -> (u16, String, Duration) {
    let ok = |content: &str| (200, completion(content), Duration::ZERO);
    match (answer, n) {
        ("down", _) => (500, "{\"error\": \"overloaded\"}".into(), Duration::ZERO),
        ("locked", _) => (401, "{\"error\": \"bad key\"}".into(), Duration::ZERO),
        ("flaky", 1) => (503, "{}".into(), Duration::ZERO),
        ("slow", 1) => (
            200,
            completion("{\"label\": \"factual\"}"),
            Duration::from_millis(1500),
        ),
        ("garbled", 1) => (200, "{not json".into(), Duration::ZERO),
        ("garbled", 2) => ok("I would rather not say."),
        ("garbled", _) => ok("Score: 1/4"),
        (a, _) if a.starts_with("fact") => {
            ok("{\"score\": 0.9, \"label\": \"factual\", \"explanation\": \"supported\"}")
        }
        (a, _) if a.starts_with("made") => {
            ok("```json\n{\"label\": \"hallucinated\", \"explanation\": \"invented\"}\n```")
        }
        _ => ok("factual"),
    }
}

fn serve(seen: Arc<Seen>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let (mut line, mut len) = (String::new(), 0usize);
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if l == "authorization: bearer sk-test" {
                        seen.authorized.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let prompt = v["messages"][1]["content"].as_str().unwrap();
                let answer = prompt
                    .split("[Answer]: ")
                    .nth(1)
                    .and_then(|s| s.lines().next())
                    .unwrap()
                    .to_owned();
                let n = {
                    let mut a = seen.attempts.lock().unwrap();
                    let c = a.entry(answer.clone()).or_default();
                    *c += 1;
                    *c
                };
                let (status, body, delay) = respond(&answer, n);
                std::thread::sleep(delay);
                // done before the client can see the reply (and start its next request)
                seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                // a reader that gave up (timeout) makes this write fail: fine
                let _ = stream.write_all(reply(status, &body).as_bytes());
            });
        }
    });
    format!("http://{addr}/v1")
}

fn judge(url: &str, traced: Arc<Mutex<Vec<JudgeCall>>>) -> LlmJudge {
    let config = JudgeConfig {
        base_url: url.into(),
        model: "gpt-4o-mini".into(),
        api_key: "sk-test".into(),
        timeout_ms: 500,
        max_retries: 2,
        backoff_ms: 10,
        concurrency: 3,
        ..Default::default()
    };
    LlmJudge::new(
        config,
        Rubric::hallucination(),
        Default::default(),
        Some(Arc::new(move |c| traced.lock().unwrap().push(c))),
    )
    .unwrap()
}

fn sample(answer: &str) -> Sample<'_> {
    Sample {
        input: "Who produced the album?",
        output: answer,
        expected: None,
        context: Some("liner notes"),
    }
}

#[test]
fn the_judge_survives_failures_timeouts_and_malformed_replies() {
    let seen = Arc::new(Seen::default());
    let url = serve(seen.clone());
    let traced = Arc::new(Mutex::new(Vec::new()));
    let j = judge(&url, traced.clone());

    // 24 well-behaved samples, judged 8 at a time against a limit of 3 in flight
    let answers: Vec<String> = (0..24)
        .map(|i| {
            if i % 3 == 0 {
                format!("made up {i}")
            } else {
                format!("fact {i}")
            }
        })
        .collect();
    let scores: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = answers
            .chunks(3)
            .map(|chunk| {
                let j = &j;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|a| j.evaluate(&sample(a)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (a, s) in answers.iter().zip(&scores) {
        let (value, label) = if a.starts_with("made") {
            (0.0, "hallucinated")
        } else {
            (0.9, "factual")
        };
        assert_eq!((s.value, s.label.as_deref()), (value, Some(label)), "{a}");
        assert_eq!(s.evaluator, "judge_hallucination");
    }
    assert!(
        seen.max_in_flight.load(Ordering::SeqCst) <= 3,
        "concurrency limit exceeded"
    );

    // a 503 is retried
    let s = j.evaluate(&sample("flaky")).unwrap();
    assert_eq!(s.label.as_deref(), Some("factual"));
    // a reply slower than the timeout is abandoned and retried
    let s = j.evaluate(&sample("slow")).unwrap();
    assert_eq!(s.label.as_deref(), Some("factual"));
    // a body that is not JSON, then prose without a verdict, then "Score: 1/4"
    let s = j.evaluate(&sample("garbled")).unwrap();
    assert_eq!((s.value, s.label.as_deref()), (0.25, Some("hallucinated")));
    // a server error on every attempt: 1 + max_retries attempts, then an error naming it
    let e = j.evaluate(&sample("down")).unwrap_err().to_string();
    assert!(
        e.contains("HTTP 500") && e.contains("after 3 attempts"),
        "{e}"
    );
    // a client error is not retried
    let e = j.evaluate(&sample("locked")).unwrap_err().to_string();
    assert!(e.contains("HTTP 401") && !e.contains("attempts"), "{e}");

    let attempts = seen.attempts.lock().unwrap().clone();
    assert_eq!(attempts["flaky"], 2);
    assert_eq!(attempts["slow"], 2);
    assert_eq!(attempts["garbled"], 3);
    assert_eq!(attempts["down"], 3);
    assert_eq!(attempts["locked"], 1);

    // accounting: every attempt traced; tokens and cost from the replies that carried usage
    let u = j.usage();
    let total: usize = attempts.values().sum();
    assert_eq!(u.calls, 29);
    assert_eq!(u.attempts as usize, total);
    assert_eq!(u.retries, 1 + 1 + 2 + 2);
    assert_eq!(u.failures, 2);
    assert_eq!(seen.authorized.load(Ordering::SeqCst), total);
    let calls = traced.lock().unwrap();
    assert_eq!(calls.len(), total);
    // replies with usage: the 24, flaky's and slow's second attempts (the abandoned slow one
    // counts nothing), garbled's last two
    let with_usage = calls.iter().filter(|c| c.input_tokens.is_some()).count();
    assert_eq!(with_usage, 24 + 2 + 2);
    assert_eq!(u.input_tokens, 100 * with_usage as i64);
    assert_eq!(u.output_tokens, 10 * with_usage as i64);
    let expected_cost = with_usage as f64 * (100.0 * 0.15 + 10.0 * 0.60) / 1e6;
    assert!(
        (u.cost_usd - expected_cost).abs() < 1e-12,
        "{} vs {expected_cost}",
        u.cost_usd
    );
    let errors = calls.iter().filter(|c| c.error.is_some()).count();
    assert_eq!(errors, 1 + 1 + 2 + 3 + 1);
    // as spans: GenAI chat spans of service encore-evals, errors flagged
    let span = calls
        .iter()
        .find(|c| c.http_status == Some(500))
        .unwrap()
        .span("evals", 7);
    assert_eq!(
        (span.service.as_str(), span.status),
        ("encore-evals", "error")
    );
    assert_eq!(span.mapped.operation.as_deref(), Some("chat"));
    assert_eq!(span.mapped.error_type.as_deref(), Some("500"));
}

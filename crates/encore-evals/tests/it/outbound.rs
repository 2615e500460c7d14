//! Outbound https against a local server whose certificate a throwaway CA signed: a judge and a
//! webhook work when the CA is trusted (and not otherwise); webhooks are signed, retried as the
//! answer says, and never sent where the allow list does not reach.

use encore_evals::judge::{JudgeConfig, LlmJudge, Rubric};
use encore_evals::{Evaluator, Sample};
use encore_http::outbound::{Allow, Options, Outbound, Retry, deliver, verify_signature};
use encore_http::testing::{Answer, Request, TestCa, https_server};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn json(status: u16, body: &str) -> Answer {
    (
        status,
        vec![("Content-Type".into(), "application/json".into())],
        body.as_bytes().to_vec(),
    )
}

fn trusting(ca: &TestCa, allow: Allow) -> Outbound {
    Outbound::new(Options {
        timeout: Duration::from_secs(5),
        extra_roots_pem: Some(ca.ca_pem.as_bytes().to_vec()),
        allow,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_judge_over_https_with_a_company_ca() {
    let ca = TestCa::new();
    let addr = https_server(&ca, |r: &Request| {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/chat/completions")
        );
        json(
            200,
            r#"{"model": "gpt-4o-mini", "choices": [{"message": {"content": "{\"label\": \"factual\", \"explanation\": \"ok\"}"}}], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}"#,
        )
    });
    let config = |roots: Option<Vec<u8>>| JudgeConfig {
        base_url: format!("https://localhost:{}/v1", addr.port()),
        model: "gpt-4o-mini".into(),
        max_retries: 0,
        timeout_ms: 5_000,
        extra_roots_pem: roots,
        ..Default::default()
    };
    let sample = Sample {
        input: "Who wrote Hey Jude?",
        output: "Paul McCartney",
        expected: None,
        context: None,
    };
    let judge = LlmJudge::new(
        config(Some(ca.ca_pem.as_bytes().to_vec())),
        Rubric::hallucination(),
        Default::default(),
        None,
    )
    .unwrap();
    let score = judge.evaluate(&sample).unwrap();
    assert_eq!(score.label.as_deref(), Some("factual"), "{score:?}");
    // the same endpoint without the CA: the certificate is refused, with a reason
    let untrusting = LlmJudge::new(
        config(None),
        Rubric::hallucination(),
        Default::default(),
        None,
    )
    .unwrap();
    let e = untrusting.evaluate(&sample).unwrap_err().to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

#[test]
fn webhooks_over_https_are_signed_and_retried_as_answered() {
    let ca = TestCa::new();
    let seen: Arc<Mutex<Vec<(Request, Instant)>>> = Arc::default();
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::new(Mutex::new(vec![
        (429, vec![("Retry-After".into(), "1".into())], Vec::new()),
        json(503, "{}"),
        json(200, "{}"),
        json(400, "{}"),
        json(408, "{}"),
        json(204, ""),
    ]));
    let addr = {
        let (seen, answers) = (seen.clone(), answers);
        https_server(&ca, move |r: &Request| {
            seen.lock().unwrap().push((r.clone(), Instant::now()));
            answers.lock().unwrap().remove(0)
        })
    };
    let client = trusting(
        &ca,
        Allow::parse(&["*".into(), "127.0.0.1".into()]).unwrap(),
    );
    let url = format!("https://127.0.0.1:{}/hooks", addr.port());
    let retry = Retry {
        attempts: 4,
        backoff: Duration::from_millis(20),
        max_wait: Duration::from_secs(5),
    };
    let body = br#"{"alert": "errors", "state": "firing"}"#;
    // 429 with Retry-After: 1, then 503, then 200: three attempts, the first wait a second
    let d = deliver(&client, "alert", &url, body, Some(b"hook-key"), retry);
    assert!(d.delivered, "{d:?}");
    assert_eq!(d.attempts, 3);
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen[1].1 - seen[0].1 >= Duration::from_millis(950),
            "Retry-After not honoured"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for (r, _) in seen.iter() {
            let sig = r.header("x-encore-signature").unwrap();
            assert!(
                verify_signature(b"hook-key", sig, &r.body, now, Duration::from_secs(60)),
                "{sig}"
            );
            assert!(!verify_signature(
                b"other-key",
                sig,
                &r.body,
                now,
                Duration::from_secs(60)
            ));
        }
    }
    // 400: final, not retried
    let d = deliver(&client, "alert", &url, body, Some(b"hook-key"), retry);
    assert_eq!((d.delivered, d.attempts), (false, 1), "{d:?}");
    assert_eq!(d.last_error.as_deref(), Some("HTTP 400"));
    // 408: retried, then delivered
    let d = deliver(&client, "alert", &url, body, None, retry);
    assert_eq!((d.delivered, d.attempts), (true, 2), "{d:?}");
    // the allow list without 127.0.0.1: refused at the connection, once, whatever the name
    let strict = trusting(&ca, Allow::parse(&["*".into()]).unwrap());
    for u in [url, format!("https://localhost:{}/hooks", addr.port())] {
        let d = deliver(&strict, "alert", &u, body, None, retry);
        assert_eq!((d.delivered, d.attempts), (false, 1), "{d:?}");
        assert!(d.last_error.unwrap().contains("not an allowed destination"));
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        6,
        "no request reached the refused destination"
    );
}

#[test]
fn redirects_and_answers_are_bounded() {
    let ca = TestCa::new();
    // an endless redirect to itself, and a redirect to a private address not allowed
    let addr = https_server(&ca, |r: &Request| match r.path.as_str() {
        "/loop" => (303, vec![("Location".into(), "/loop".into())], Vec::new()),
        "/away" => (
            303,
            vec![("Location".into(), "https://10.255.255.1/admin".into())],
            Vec::new(),
        ),
        // a POST is not re-sent on 307
        "/again" => (307, vec![("Location".into(), "/big".into())], Vec::new()),
        _ => json(200, &"x".repeat(2 << 20)),
    });
    let client = Outbound::new(Options {
        timeout: Duration::from_secs(5),
        extra_roots_pem: Some(ca.ca_pem.as_bytes().to_vec()),
        allow: Allow::parse(&["127.0.0.1".into()]).unwrap(),
        max_response_bytes: 1 << 20,
        ..Default::default()
    })
    .unwrap();
    let base = format!("https://127.0.0.1:{}", addr.port());
    let e = client
        .post_json(&format!("{base}/loop"), &[], b"{}")
        .unwrap_err();
    assert!(e.to_string().contains("too many redirects"), "{e}");
    let e = client
        .post_json(&format!("{base}/again"), &[], b"{}")
        .unwrap_err();
    assert!(e.to_string().contains("redirect"), "{e}");
    let e = client
        .post_json(&format!("{base}/away"), &[], b"{}")
        .unwrap_err();
    assert!(
        matches!(e, encore_http::outbound::OutboundError::Refused(_)),
        "{e}"
    );
    assert!(e.to_string().contains("not an allowed destination"), "{e}");
    let e = client
        .post_json(&format!("{base}/big"), &[], b"{}")
        .unwrap_err();
    assert!(e.to_string().contains("over"), "{e}");
}

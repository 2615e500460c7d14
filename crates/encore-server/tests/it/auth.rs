//! Keys and scopes over every route of the spec: no key is 401, a key without the route's scope
//! is 403, a key with it gets past authorization; and what was done is in the audit log.

use encore_access::{Keys, NewKey, Scope};
use encore_ingest::{IngestOptions, Ingestor};
use encore_server::client::Connection;
use encore_server::keys::{Auth, DEFAULT_OPEN, Mode, required};
use encore_server::{AppState, Limits};
use std::sync::Arc;

fn start(root: &std::path::Path) -> (String, tokio::runtime::Runtime) {
    let ingestor = Arc::new(Ingestor::open(root, IngestOptions::default()).unwrap());
    let auth = Auth::open(root, Mode::Required, &DEFAULT_OPEN.map(String::from)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = AppState::new(ingestor, Limits::default()).with_auth(auth);
    rt.spawn(encore_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    (addr, rt)
}

/// Every (method, concrete path, route template) of the committed spec.
fn routes() -> Vec<(String, String, String)> {
    let spec: serde_json::Value =
        serde_json::from_str(&encore_server::openapi::spec_json()).unwrap();
    let mut out = Vec::new();
    for (template, ops) in spec["paths"].as_object().unwrap() {
        let concrete = template
            .replace("{trace_id}", "0123456789abcdef0123456789abcdef")
            .replace("{idx}", "0")
            .replace(['{', '}'], "");
        for method in ops.as_object().unwrap().keys() {
            out.push((method.to_uppercase(), concrete.clone(), template.clone()));
        }
    }
    assert!(out.len() > 40, "the spec lists {} operations", out.len());
    out
}

fn send(addr: &str, key: Option<&str>, method: &str, path: &str) -> (u16, serde_json::Value) {
    let body: &[u8] = if method == "GET" || method == "DELETE" {
        b""
    } else {
        b"{}"
    };
    let r = Connection::open(addr)
        .unwrap()
        .with_key(key)
        .request(method, path, body)
        .unwrap();
    (r.status, serde_json::from_str(&r.body).unwrap_or_default())
}

#[test]
fn every_route_needs_its_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, _rt) = start(tmp.path());
    let keys = Keys::open(tmp.path()).unwrap();
    let routes = routes();
    let mut checked = 0;
    for (method, path, template) in &routes {
        let m = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
        if DEFAULT_OPEN.contains(&template.as_str()) {
            let (status, _) = send(&addr, None, method, path);
            assert!(
                status != 401 && status != 403,
                "{method} {path} is open: {status}"
            );
            continue;
        }
        let need = required(&m, template)
            .unwrap_or_else(|| panic!("{method} {template} has no scope in auth::required"));
        // the table itself: a read never needs less than its resource's read scope, and a
        // request that changes something needs a write scope (the POSTs that only compute
        // an answer excepted)
        let reads_by_post = encore_server::keys::reads_by_post;
        let writes = [
            Scope::EventsWrite,
            Scope::TracesWrite,
            Scope::EvalsWrite,
            Scope::ModelsWrite,
            Scope::ExperimentsWrite,
            Scope::PrivacyAdmin,
            Scope::Admin,
        ];
        if method != "GET" && !reads_by_post(template) {
            assert!(
                writes.contains(&need),
                "{method} {template} changes state but needs only {need}"
            );
        }
        let expected = [
            (
                "POST",
                "/v1/models/{name}/aliases/{alias}",
                Scope::ModelsWrite,
            ),
            ("POST", "/v1/events", Scope::EventsWrite),
            ("POST", "/v1/traces", Scope::TracesWrite),
            ("GET", "/v1/traces/{trace_id}", Scope::TracesRead),
            ("GET", "/v1/queues/{name}/items", Scope::TracesContent),
            ("GET", "/v1/users/{id}/recommendations", Scope::RecsRead),
            ("DELETE", "/v1/evals/rules/{name}", Scope::EvalsWrite),
            ("GET", "/v1/audit", Scope::Admin),
        ];
        if let Some((.., s)) = expected
            .iter()
            .find(|(m, t, _)| m == method && t == template)
        {
            assert_eq!(need, *s, "{method} {template}");
        }
        // no key, a malformed header, a made-up key
        for key in [None, Some("nope"), Some("enc_0000_1111")] {
            let (status, body) = send(&addr, key, method, path);
            assert_eq!(status, 401, "{method} {path} with {key:?}: {body}");
            assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
        }
        // every scope but the one it needs (and admin)
        let others: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| *s != need && *s != Scope::Admin)
            .collect();
        let wrong = keys.create(&NewKey::new("wrong", others)).unwrap();
        let (status, body) = send(&addr, Some(&wrong.secret), method, path);
        assert_eq!(status, 403, "{method} {path} without {need}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(need.as_str()),
            "{body}"
        );
        // exactly that scope, and admin
        for scopes in [vec![need], vec![Scope::Admin]] {
            let right = keys.create(&NewKey::new("right", scopes)).unwrap();
            let (status, body) = send(&addr, Some(&right.secret), method, path);
            assert!(
                status != 401 && status != 403,
                "{method} {path} with {need}: {status} {body}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 40, "{checked} routes checked");

    // refusals of known keys and every mutation are in the audit log, with the key's name
    let audit = encore_access::audit::AuditLog::open(tmp.path()).unwrap();
    let entries = audit.list(0, 100_000).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.key_name == "wrong" && e.status == 403 && e.detail.starts_with("needs "))
    );
    assert!(entries.iter().any(|e| e.key_name == "right"
        && e.method == "POST"
        && e.route == "/v1/models/{name}/aliases/{alias}"
        && e.target == "/v1/models/name/aliases/alias"
        && e.source.starts_with("127.0.0.1:")));
    // a POST that only reads (features, seeded recommendations, radio, blend) is not audited
    // like a mutation: it is as frequent as a GET
    assert!(
        entries
            .iter()
            .all(|e| e.status == 403 || !encore_server::keys::reads_by_post(&e.route)),
        "read-only POSTs audited"
    );
    assert!(entries.iter().any(|e| e.route == "/v1/events"));
    // 401s are counted, not logged (an unauthenticated flood cannot fill the disk)
    assert!(entries.iter().all(|e| !e.key_name.is_empty()));
    assert_eq!(audit.verify().unwrap(), entries.len() as u64);
    let (_, metrics) = {
        let r = encore_server::client::request(&addr, "GET", "/metrics", b"").unwrap();
        (r.status, r.body)
    };
    assert!(metrics.contains("encore_auth_refused_total{kind=\"unauthenticated\"}"));
}

#[test]
fn expired_and_revoked_keys_stop_working() {
    let tmp = tempfile::tempdir().unwrap();
    let (addr, _rt) = start(tmp.path());
    let keys = Keys::open(tmp.path()).unwrap();
    let k = keys
        .create(&NewKey::new("reader", vec![Scope::EventsRead]))
        .unwrap();
    assert_eq!(
        send(&addr, Some(&k.secret), "GET", "/v1/events/stats").0,
        200
    );
    keys.revoke(&k.key.id).unwrap();
    let mut refused = false;
    for _ in 0..40 {
        if send(&addr, Some(&k.secret), "GET", "/v1/events/stats").0 == 401 {
            refused = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(refused, "a revoked key still works after 4 s");
    // no race with the clock: an hour-long key works; a millisecond one, once it has passed, not
    let mut long = NewKey::new("long", vec![Scope::EventsRead]);
    long.ttl = Some(std::time::Duration::from_secs(3_600));
    let l = keys.create(&long).unwrap();
    assert_eq!(
        send(&addr, Some(&l.secret), "GET", "/v1/events/stats").0,
        200
    );
    let mut short = NewKey::new("short", vec![Scope::EventsRead]);
    short.ttl = Some(std::time::Duration::from_millis(1));
    let s = keys.create(&short).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        send(&addr, Some(&s.secret), "GET", "/v1/events/stats").0,
        401
    );
    // a header that is not valid text, and a huge one, are 401s too, not crashes
    let r = Connection::open(&addr)
        .unwrap()
        .send(
            "GET",
            "/v1/events/stats",
            &[("Authorization", &format!("Bearer enc_{}", "x".repeat(6000)))],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
}

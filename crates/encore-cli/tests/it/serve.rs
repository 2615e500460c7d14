//! The HTTP server as a real process: acknowledged events survive SIGKILL exactly once.

use encore_ingest::{IngestOptions, Ingestor, Table};
use encore_sim::{SimConfig, World};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `encore serve` on a free port; returns the child and the port.
pub(crate) fn start(data: &Path) -> (Child, u16) {
    start_with(data, &[])
}

pub(crate) fn start_with(data: &Path, env: &[(&str, &str)]) -> (Child, u16) {
    let (child, port, _) = start_full(data, env);
    (child, port)
}

/// Starts `encore serve` (no OTLP/gRPC port unless `env` asks for one); returns the child, the
/// HTTP port and the OTLP/gRPC address if any.
pub(crate) fn start_full(data: &Path, env: &[(&str, &str)]) -> (Child, u16, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("ENCORE__INGEST__SEAL_ROWS", "4000")
        .env("ENCORE__SERVER__OTLP_GRPC", "")
        // loopback only: the tests of keys ask for them with ENCORE__SERVER__AUTH=required
        .env("ENCORE__SERVER__AUTH", "off")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start encore serve");
    // the whole report is one write; read it to its last line
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let last = line.starts_with("data directory");
        lines.push(line);
        if last {
            break;
        }
    }
    let port = lines[0]
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {:?}", lines[0]));
    let grpc = lines
        .iter()
        .find_map(|l| l.split("OTLP/gRPC on ").nth(1))
        .map(|rest| rest.trim().trim_end_matches(')').to_owned())
        .filter(|a| a != "no port");
    (child, port, grpc)
}

/// How often each event id is in the playback log of `ingestor`.
pub(crate) fn stored_ids(ingestor: &Ingestor) -> HashMap<String, usize> {
    let mut stored: HashMap<String, usize> = HashMap::new();
    ingestor
        .log(Table::Playback)
        .scan(Some(&["event_id"]), |b| {
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            for id in ids.iter().flatten() {
                *stored.entry(id.to_owned()).or_default() += 1;
            }
            Ok(())
        })
        .unwrap();
    stored
}

pub(crate) fn batches() -> Vec<(Vec<String>, Vec<u8>)> {
    let mut world = World::new(SimConfig::new(400, 3, 77));
    let mut events = Vec::new();
    for _ in 0..3 {
        let day = world.simulate_day();
        events.extend(day.plays.iter().map(|p| world.playback_event(p)));
    }
    events
        .chunks(1_000)
        .map(|c| {
            let ids = c.iter().map(|e| e.event_id.0.clone()).collect();
            (ids, serde_json::to_vec(c).unwrap())
        })
        .collect()
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let batches = batches();
    let total: usize = batches.iter().map(|b| b.0.len()).sum();
    let mut acked: Vec<String> = Vec::new();
    // a cheap varying seed: where the kills land differs from run to run
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut next = 0;
    let mut kills = 0;
    while next < batches.len() {
        let (mut child, port) = start(&data);
        // after a few batches (fewer while kills remain), kill the server mid-stream
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let kill_after = if kills < 3 {
            2 + (seed >> 16) as usize % 6
        } else {
            usize::MAX
        };
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let killer = std::thread::spawn(move || {
            // kill once the client has sent `kill_after` batches, while it sends the next
            let mut sent = 0;
            while let Ok(n) = rx.recv() {
                sent = n;
                if sent >= kill_after {
                    std::thread::sleep(Duration::from_millis(u64::from(seed % 7)));
                    let _ = child.kill();
                    let _ = child.wait();
                    return (true, child);
                }
            }
            let _ = sent;
            (false, child)
        });
        let mut sent_here = 0;
        while next < batches.len() {
            let (ids, body) = &batches[next];
            let addr = format!("127.0.0.1:{port}");
            match encore_http::request(&addr, "POST", "/v1/events", body)
                .map(|r| (r.status, r.body))
            {
                Ok((200, resp)) => {
                    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
                    assert_eq!(v["rejected"], 0, "{resp}");
                    // accepted or duplicate: either way the server vouches the rows are stored
                    acked.extend(ids.iter().cloned());
                    next += 1;
                    sent_here += 1;
                    let _ = tx.send(sent_here);
                }
                Ok((503, _)) => std::thread::sleep(Duration::from_millis(20)),
                Ok((status, resp)) => panic!("unexpected {status}: {resp}"),
                Err(_) => break, // the server died: the batch in flight was not acknowledged
            }
        }
        drop(tx);
        let (killed, mut child) = killer.join().unwrap();
        if killed {
            kills += 1;
        } else {
            // all batches sent: stop gracefully
            terminate(&child);
            let _ = child.wait();
        }
    }
    assert!(kills >= 1, "the server was killed at least once");

    let ingestor = Ingestor::open(&data, IngestOptions::default()).unwrap();
    let log = ingestor.log(Table::Playback);
    assert_eq!(
        log.verify().unwrap(),
        Vec::<String>::new(),
        "the log passes its own check"
    );
    let stored = stored_ids(&ingestor);
    for id in &acked {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged event {id} must be stored exactly once"
        );
    }
    assert_eq!(
        stored.len(),
        total,
        "every event was eventually acknowledged"
    );
}

/// SIGTERM through the `kill` command (no libc binding needed).
/// Stops a server when the test ends, passed or failed, and waits for it to exit.
pub(crate) struct Stop(pub(crate) Child);

impl Drop for Stop {
    fn drop(&mut self) {
        terminate(&self.0);
        let _ = self.0.wait();
    }
}

pub(crate) fn terminate(child: &Child) {
    // quiet when the process is already gone (a test that killed it)
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Reads one HTTP request from `conn` and returns its body, whose `X-Encore-Signature` must
/// verify with the key `hook-key`; answers `status`.
fn receive_hook(conn: &mut std::net::TcpStream, status: &str) -> String {
    use std::io::{Read, Write};
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let (mut line, mut length, mut signature) = (String::new(), 0, String::new());
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if let Some(v) = line
            .to_ascii_lowercase()
            .strip_prefix("x-encore-signature:")
        {
            signature = v.trim().to_owned();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        encore_http::outbound::verify_signature(
            b"hook-key",
            &signature,
            &body,
            now,
            Duration::from_secs(60)
        ),
        "webhook signature {signature:?} does not verify"
    );
    write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
    String::from_utf8(body).unwrap()
}

/// Runs `encore ARGS --data-dir DATA --json` in `cwd`, which must succeed, and parses its output.
pub(crate) fn encore_json(cwd: &Path, data: &str, args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(args)
        .args(["--data-dir", data, "--json"])
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn registry_over_http_gates_production_and_posts_webhooks() {
    use encore_http::{Connection, request};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let data_arg = data.to_str().unwrap();
    let run = |args: &[&str]| encore_json(tmp.path(), data_arg, args);
    // the demo's small world; ALS into production, then a worse popularity version
    run(&["demo", "--users", "120", "--days", "2", "--no-serve"]);
    let v1 = run(&["train", "--name", "home", "--model", "als", "--promote"]);
    let v2 = run(&["train", "--name", "home", "--model", "popularity"]);
    let (als, pop) = (
        v1["metrics"]["ndcg@10"].as_f64().unwrap(),
        v2["metrics"]["ndcg@10"].as_f64().unwrap(),
    );
    // keys, made beside the data directory before and while the server runs
    let ops = run(&[
        "keys",
        "create",
        "--name",
        "ops",
        "--scopes",
        "models:read,models:write",
    ]);
    let reader = run(&[
        "keys",
        "create",
        "--name",
        "viewer",
        "--scopes",
        "models:read",
    ]);
    let (ops, reader) = (
        ops["key"].as_str().unwrap().to_owned(),
        reader["key"].as_str().unwrap().to_owned(),
    );

    let hooks = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("[\"http://{}/hook\"]", hooks.local_addr().unwrap());
    let (child, port) = start_with(
        &data,
        &[
            ("ENCORE__SERVER__AUTH", "required"),
            ("ENCORE__SERVER__WEBHOOK_ALLOW", r#"["127.0.0.1"]"#),
            ("ENCORE__SERVER__WEBHOOK_SECRET", "hook-key"),
            ("ENCORE__REGISTRY__WEBHOOKS", hook_url.as_str()),
            ("ENCORE__REGISTRY__WEBHOOK_BACKOFF_MS", "20"),
        ],
    );
    let addr = format!("127.0.0.1:{port}");
    let as_key = |key: &str, method: &str, path: &str, body: &[u8]| {
        Connection::open(&addr)
            .unwrap()
            .with_key(Some(key))
            .request(method, path, body)
            .unwrap()
    };
    // anyone who reaches the port: nothing but health
    assert_eq!(
        request(&addr, "GET", "/v1/models", b"").unwrap().status,
        401
    );
    assert_eq!(request(&addr, "GET", "/healthz", b"").unwrap().status, 200);
    let list = as_key(&reader, "GET", "/v1/models", b"");
    assert_eq!(list.status, 200, "{}", list.body);
    let list: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    assert_eq!(list[0]["name"], "home");
    assert_eq!(list[0]["aliases"]["production"], 1);
    let versions = as_key(&reader, "GET", "/v1/models/home/versions", b"");
    let versions: serde_json::Value = serde_json::from_str(&versions.body).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);

    let path = "/v1/models/home/aliases/production";
    let body = br#"{"version": 2, "force": true, "reason": "load test"}"#;
    let denied = request(&addr, "POST", path, body).unwrap();
    assert_eq!(denied.status, 401, "{}", denied.body);
    let denied = as_key(&reader, "POST", path, body);
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body.contains("models:write"), "{}", denied.body);
    let refused = as_key(&ops, "POST", path, br#"{"version": 2}"#);
    assert_eq!(refused.status, 412, "{}", refused.body);
    assert!(
        refused.body.contains(&format!("{pop:.4}")) && refused.body.contains(&format!("{als:.4}")),
        "{}",
        refused.body
    );
    let bad = as_key(&ops, "POST", path, br#"{"versoin": 2}"#);
    assert_eq!(bad.status, 400, "{}", bad.body);
    // the body cannot name the actor: the key's name is the actor
    let claimed = as_key(
        &ops,
        "POST",
        path,
        br#"{"version": 2, "force": true, "actor": "release-bot"}"#,
    );
    assert_eq!(claimed.status, 400, "{}", claimed.body);
    let missing = as_key(&reader, "GET", "/v1/models/nope/history", b"");
    assert_eq!(missing.status, 404, "{}", missing.body);
    let forced = as_key(&ops, "POST", path, body);
    assert_eq!(forced.status, 200, "{}", forced.body);

    // the move reaches the webhook (the first delivery fails and is retried)
    let mut first = hooks.accept().unwrap().0;
    let a = receive_hook(&mut first, "503 Service Unavailable");
    let mut second = hooks.accept().unwrap().0;
    let b = receive_hook(&mut second, "200 OK");
    assert_eq!(a, b);
    let event: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(event["move"]["to"], 2);
    assert_eq!(event["move"]["forced"], true);
    assert_eq!(event["move"]["actor"], "ops");

    let history = as_key(&reader, "GET", "/v1/models/home/history", b"");
    let history: serde_json::Value = serde_json::from_str(&history.body).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1]["actor"], "ops");

    // the audit log has every attempt at production, by key name and address; the CLI's key
    // creations too
    let audit = run(&["audit", "list"]);
    let moves: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == path)
        .map(|e| {
            (
                e["key_name"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("viewer", 403),
            ("ops", 412),
            ("ops", 400),
            ("ops", 400),
            ("ops", 200)
        ]
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["route"] == "keys create")
    );
    assert_eq!(run(&["audit", "verify"])["intact"], true);
    // revoked: refused within the cache's lifetime
    let ops_id = run(&["keys", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ops")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    run(&["keys", "revoke", &ops_id]);
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(as_key(&ops, "GET", "/v1/models", b"").status, 401);
    terminate(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
}

#[test]
fn serves_https_with_keys() {
    use encore_http::outbound::{Allow, Options, Outbound};
    let tmp = tempfile::tempdir().unwrap();
    let ca = encore_http::testing::TestCa::new();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, &ca.cert_pem).unwrap();
    std::fs::write(&key, &ca.key_pem).unwrap();
    let data = tmp.path().join("d");
    let created = encore_json(
        tmp.path(),
        data.to_str().unwrap(),
        &["keys", "create", "--name", "ops", "--scopes", "events:read"],
    );
    let secret = created["key"].as_str().unwrap().to_owned();
    let (child, port) = start_with(
        &data,
        &[
            ("ENCORE__SERVER__AUTH", "required"),
            ("ENCORE__SERVER__TLS_CERT", cert.to_str().unwrap()),
            ("ENCORE__SERVER__TLS_KEY", key.to_str().unwrap()),
        ],
    );
    let _server = Stop(child);
    let client = Outbound::new(Options {
        extra_roots_pem: Some(ca.ca_pem.as_bytes().to_vec()),
        allow: Allow::everything(),
        ..Default::default()
    })
    .unwrap();
    let base = format!("https://localhost:{port}");
    let auth = format!("Bearer {secret}");
    let get = |path: &str, key: bool| {
        let headers: Vec<(&str, &str)> = if key {
            vec![("Authorization", auth.as_str())]
        } else {
            Vec::new()
        };
        client
            .get(&format!("{base}{path}"), &headers)
            .unwrap()
            .status
    };
    assert_eq!(get("/healthz", false), 200);
    assert_eq!(get("/v1/events/stats", false), 401);
    assert_eq!(get("/v1/events/stats", true), 200);
    // plain http to the TLS port gets no HTTP answer
    let plain = encore_http::request(&format!("127.0.0.1:{port}"), "GET", "/healthz", b"");
    assert!(plain.is_err() || plain.unwrap().status != 200);
    // a client that does not trust the CA is refused at the handshake
    let untrusting = Outbound::new(Options::default()).unwrap();
    let e = untrusting
        .post_json(&format!("{base}/healthz"), &[], b"")
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // a slow client that never finishes its handshake does not hold the server
    let _idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(get("/healthz", false), 200);
}

#[test]
fn serve_refuses_auth_off_beyond_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(["serve", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("d"))
        .env("ENCORE__SERVER__AUTH", "off")
        .env("ENCORE__SERVER__OTLP_GRPC", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0") && stderr.contains("auth = \"off\""),
        "{stderr}"
    );
    // the gRPC receiver counts too
    let o = Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("d"))
        .env("ENCORE__SERVER__AUTH", "off")
        .env("ENCORE__SERVER__OTLP_GRPC", "0.0.0.0:0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to listen on 0.0.0.0:0"));
}

/// A GET or POST against the server, parsed as JSON.
fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = encore_http::request(addr, method, path, body.as_bytes()).unwrap();
    let v = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

fn ids(slate: &serde_json::Value) -> Vec<String> {
    slate["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_surface_serves_and_hot_swap_drops_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let data_arg = data.to_str().unwrap();
    let run = |args: &[&str]| encore_json(tmp.path(), data_arg, args);
    // the demo's world: ALS v1 in production; a v2 to swap to later
    run(&["demo", "--users", "120", "--days", "2", "--no-serve"]);
    run(&["train", "--model", "als", "--factors", "32"]);
    let shown = run(&["models", "show", "recommender@production"]);
    let artifact =
        encore_models::artifact::Artifact::load(&data.join(shown["artifact"].as_str().unwrap()))
            .unwrap();
    let plays = artifact.interactions.as_ref().unwrap();
    let explicit: std::collections::HashSet<String> =
        std::fs::read_to_string(data.join("catalog/sim/tracks.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|t| t["explicit"] == true)
            .map(|t| t["track_id"].as_str().unwrap().to_string())
            .collect();

    // an experiment on the home surface, started before the server
    std::fs::write(
        tmp.path().join("exp.json"),
        r#"{"id": "home-mmr", "hypothesis": "diversity", "domain": "home", "traffic": 0.5,
            "variants": [{"name": "control", "weight": 1}, {"name": "mmr", "weight": 1}],
            "treatments": {"mmr": {"artist_cap": 1}}}"#,
    )
    .unwrap();
    run(&["experiments", "create", "exp.json"]);
    run(&["experiments", "start", "home-mmr"]);
    // every home request of this server is also a span in its trace store
    let (child, port) = start_with(&data, &[("ENCORE__TELEMETRY__SELF_TRACE_RATE", "1")]);
    let addr = format!("127.0.0.1:{port}");
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        let (status, got) = call(&addr, "GET", &format!("/v1/assignments?user_id={u}"), "");
        assert_eq!(status, 200, "{got}");
        let cli = run(&["experiments", "assign", u]);
        assert_eq!(got["assignments"], cli["assignments"], "{u}");
    }
    let (status, _) = call(&addr, "GET", "/v1/assignments", "");
    assert_eq!(status, 400, "user_id is required");
    // a known listener in the treatment arm gets its rule (one track per artist), and the list
    // says which variant it was served under
    let treated = artifact
        .users
        .iter()
        .find(|u| {
            let (_, a) = call(&addr, "GET", &format!("/v1/assignments?user_id={u}"), "");
            a["assignments"][0]["variant"] == "mmr"
        })
        .expect("some listener is in the treatment arm")
        .clone();
    // every home list this test is served, by listener: the variant it says it was served
    // under (the exposures the report must count, exactly)
    let shown = std::cell::RefCell::new(std::collections::BTreeMap::<String, String>::new());
    let saw = |user: &str, slate: &serde_json::Value| {
        for arm in slate["experiments"].as_array().into_iter().flatten() {
            let variant = arm["variant"].as_str().unwrap().to_string();
            let before = shown.borrow_mut().insert(user.to_string(), variant.clone());
            assert!(
                before.is_none_or(|b| b == variant),
                "{user} changed variant"
            );
        }
    };
    let (_, list) = call(
        &addr,
        "GET",
        &format!("/v1/users/{treated}/recommendations?n=15"),
        "",
    );
    saw(&treated, &list);
    assert_eq!(list["experiments"][0]["experiment"], "home-mmr", "{list}");
    assert_eq!(list["experiments"][0]["variant"], "mmr");
    let artists: std::collections::HashSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["artist_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        artists.len(),
        list["items"].as_array().unwrap().len(),
        "the treatment's artist cap"
    );
    let (status, ready) = call(&addr, "GET", "/readyz", "");
    assert_eq!(
        (status, ready["model_version"].as_u64()),
        (200, Some(1)),
        "{ready}"
    );

    // home: personalized, nothing already played, at most 2 per artist, explicit filter
    let user = artifact.users[3].clone();
    let played: std::collections::HashSet<&str> = plays
        .row(3)
        .0
        .iter()
        .map(|&i| artifact.items[i as usize].as_str())
        .collect();
    let (status, home) = call(
        &addr,
        "GET",
        &format!("/v1/users/{user}/recommendations?n=20"),
        "",
    );
    assert_eq!(status, 200, "{home}");
    saw(&user, &home);
    assert_eq!(home["strategy"], "personalized");
    assert_eq!(home["model"], "recommender");
    assert!(home["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let got = ids(&home);
    assert_eq!(got.len(), 20);
    assert!(
        got.iter().all(|i| !played.contains(i.as_str())),
        "played item served"
    );
    let mut per_artist = HashMap::new();
    for it in home["items"].as_array().unwrap() {
        *per_artist
            .entry(it["artist_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        assert!(it["reason"]["kind"].is_string() && it["propensity"].is_number());
    }
    assert!(per_artist.values().all(|&c| c <= 2), "{per_artist:?}");
    // asked again: the same list from the cache, under its own request id
    let (_, again) = call(
        &addr,
        "GET",
        &format!("/v1/users/{user}/recommendations?n=20"),
        "",
    );
    saw(&user, &again);
    assert_eq!(ids(&again), ids(&home));
    assert_ne!(again["request_id"], home["request_id"]);
    let (_, capped) = call(
        &addr,
        "GET",
        &format!("/v1/users/{user}/recommendations?n=15&artist_cap=1&explicit=false"),
        "",
    );
    saw(&user, &capped);
    let got = ids(&capped);
    assert!(
        got.iter().all(|i| !explicit.contains(i)),
        "explicit item served"
    );
    let artists: std::collections::HashSet<&str> = capped["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["artist_id"].as_str().unwrap())
        .collect();
    assert_eq!(artists.len(), got.len(), "artist cap 1");

    // a new listener: plays posted now are folded in
    let seeds: Vec<&String> = artifact.items.iter().take(40).step_by(8).collect();
    let events: Vec<serde_json::Value> = seeds
        .iter()
        .enumerate()
        .map(|(k, item)| {
            serde_json::json!({
                "event_id": format!("00000000-0000-4000-8000-{k:012x}"), "schema_version": 1,
                "user_id": "newbie", "session_id": "s-new", "ts_start_ms": 1_764_000_000_000i64 + k as i64 * 200_000,
                "ts_end_ms": 1_764_000_180_000i64 + k as i64 * 200_000, "item_id": item,
                "item_type": "track", "item_duration_ms": 200_000, "ms_played": 180_000,
                "reason_start": "clickrow", "reason_end": "trackdone", "context_type": "search",
                "platform": "ios", "country": "SE", "tier": "free",
                "consent": {"personalization": true, "analytics": true},
            })
        })
        .collect();
    let (status, ack) = call(
        &addr,
        "POST",
        "/v1/events",
        &serde_json::to_string(&events).unwrap(),
    );
    assert_eq!((status, ack["accepted"].as_u64()), (200, Some(5)), "{ack}");
    let (status, fresh) = call(&addr, "GET", "/v1/users/newbie/recommendations?n=10", "");
    assert_eq!(status, 200, "{fresh}");
    saw("newbie", &fresh);
    assert_eq!(fresh["strategy"], "fold_in");
    assert!(ids(&fresh).iter().all(|i| !seeds.contains(&i)));
    // a listener never heard of: the most popular tracks, saying why (cold start, not a 404)
    let (status, unknown) = call(&addr, "GET", "/v1/users/never-seen/recommendations", "");
    saw("never-seen", &unknown);
    assert_eq!(
        (
            status,
            unknown["strategy"].as_str(),
            unknown["note"].as_str()
        ),
        (
            200,
            Some("popular_fallback"),
            Some(encore_serving::NOTE_NO_HISTORY)
        )
    );
    let (status, bad) = call(
        &addr,
        "GET",
        &format!("/v1/users/{user}/recommendations?n=abc"),
        "",
    );
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"].as_str().unwrap().contains('n'),
        "{bad}"
    );
    let (status, bad) = call(
        &addr,
        "GET",
        &format!("/v1/users/{user}/recommendations?n=0"),
        "",
    );
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("`n`"),
        "{bad}"
    );

    // seeds (anonymous), popularity without them, similar items, radio
    let body = serde_json::json!({"seed_items": [seeds[0], seeds[1]], "n": 8}).to_string();
    let (status, anon) = call(&addr, "POST", "/v1/recommendations", &body);
    assert_eq!(
        (status, anon["strategy"].as_str()),
        (200, Some("fold_in")),
        "{anon}"
    );
    let (_, popular) = call(&addr, "POST", "/v1/recommendations", "{}");
    assert_eq!(popular["strategy"], "popular_fallback");
    let (status, similar) = call(
        &addr,
        "GET",
        &format!("/v1/items/{}/similar?n=5", seeds[2]),
        "",
    );
    assert_eq!(status, 200, "{similar}");
    assert_eq!(ids(&similar).len(), 5);
    assert!(!ids(&similar).contains(seeds[2]));
    let (status, _) = call(&addr, "GET", "/v1/items/no-such-track/similar", "");
    assert_eq!(status, 404);
    let body = serde_json::json!({"seeds": [seeds[0]], "exclude": [seeds[1]], "n": 12}).to_string();
    let (status, station) = call(&addr, "POST", "/v1/radio", &body);
    assert_eq!(status, 200, "{station}");
    let got = ids(&station);
    let unique: std::collections::HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len());
    assert!(!got.contains(seeds[0]) && !got.contains(seeds[1]));

    // daily mixes and a blend of two listeners
    let (status, mixes) = call(
        &addr,
        "GET",
        &format!("/v1/users/{user}/mixes?max=3&size=10"),
        "",
    );
    assert_eq!(status, 200, "{mixes}");
    let mixes = mixes["mixes"].as_array().unwrap();
    assert!(!mixes.is_empty() && mixes.len() <= 3);
    assert!(
        mixes
            .iter()
            .all(|m| m["items"].as_array().unwrap().len() <= 10)
    );
    let body = serde_json::json!({"users": [user, artifact.users[7]], "n": 10}).to_string();
    let (status, blend) = call(&addr, "POST", "/v1/blend", &body);
    assert_eq!(status, 200, "{blend}");
    assert_eq!(ids(&blend).len(), 10);
    assert!(blend["taste_match"].as_u64().unwrap() <= 100);
    let counts: Vec<u64> = serde_json::from_value(blend["per_member"].clone()).unwrap();
    assert!(counts[0].abs_diff(counts[1]) <= 1, "{counts:?}");
    let (status, _) = call(&addr, "POST", "/v1/blend", r#"{"users": ["only-one"]}"#);
    assert_eq!(status, 400);

    // the lists served to known listeners were logged as impressions (fire and forget)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = call(&addr, "GET", "/v1/events/stats", "");
        let logged = stats["interactions_by_kind"]["impression"]
            .as_u64()
            .unwrap_or(0);
        let exposures = stats["interactions_by_kind"]["exposure"]
            .as_u64()
            .unwrap_or(0);
        if logged >= 20 + 15 + 10 && exposures >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "impressions missing: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // the API's description, the same as the committed one
    let (status, spec) = call(&addr, "GET", "/openapi.json", "");
    assert_eq!(status, 200);
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(spec, committed);

    // Prometheus metrics: per-route latency histograms, the model, candidates scored
    let r = encore_http::request(&addr, "GET", "/metrics", b"").unwrap();
    assert_eq!(r.status, 200);
    for needle in [
        "encore_http_request_duration_seconds_count{route=\"/v1/users/{id}/recommendations\",method=\"GET\",status=\"200\"}",
        "encore_http_requests_total{route=\"/v1/items/{id}/similar\",method=\"GET\",status=\"404\"}",
        "encore_model_version{model=\"recommender\"} 1",
        "encore_candidates_scored_total",
        "encore_requests_shed_total 0",
        "encore_cache_hits_total 1",
        "encore_impressions_logged_total",
    ] {
        assert!(r.body.contains(needle), "{needle} not in\n{}", r.body);
    }

    // hot swap under load: four clients keep asking while production moves to v2
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let users: Vec<String> = artifact.users.iter().take(40).cloned().collect();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (addr, stop, users) = (addr.clone(), stop.clone(), users.clone());
            std::thread::spawn(move || {
                let mut conn = encore_http::Connection::open(&addr).unwrap();
                let (mut ok, mut failed, mut versions) = (0, 0, std::collections::BTreeSet::new());
                let mut arms = Vec::new();
                let mut k = c;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && ok + failed < 3_000 {
                    let path = format!("/v1/users/{}/recommendations?n=10", users[k % users.len()]);
                    let r = conn.request("GET", &path, b"").unwrap();
                    if r.status == 200 {
                        ok += 1;
                        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                        versions.insert(v["model_version"].as_u64().unwrap());
                        arms.push((users[k % users.len()].clone(), v));
                    } else {
                        failed += 1;
                    }
                    k += 1;
                }
                (ok, failed, versions, arms)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    run(&[
        "models",
        "promote",
        "recommender",
        "2",
        "--force",
        "--reason",
        "swap test",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, ready) = call(&addr, "GET", "/readyz", "");
        if ready["model_version"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "v2 was not swapped in"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen_versions = std::collections::BTreeSet::new();
    for c in clients {
        let (ok, failed, versions, arms) = c.join().unwrap();
        for (user, slate) in &arms {
            saw(user, slate);
        }
        assert_eq!(failed, 0, "{failed} failed requests during the swap");
        assert!(ok > 0);
        seen_versions.extend(versions);
    }
    assert!(seen_versions.contains(&2), "{seen_versions:?}");
    // the experiment's results, from the server itself (it holds the log)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let results = loop {
        let (status, r) = call(&addr, "GET", "/v1/experiments/home-mmr/results", "");
        if status == 200 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no results: {status} {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(results["exposed"].as_u64().unwrap() >= 4, "{results}");
    no_ship_without_outcomes(&results);
    let (status, _) = call(&addr, "GET", "/v1/experiments/nope/results", "");
    assert_eq!(status, 404);
    // encore's own home requests, in the trace store beside LLM spans
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let own = loop {
        let (_, r) = call(
            &addr,
            "GET",
            "/v1/spans?project=encore&operation=recommend&limit=5",
            "",
        );
        if r["spans"].as_array().is_some_and(|s| !s.is_empty()) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no own spans: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let span = &own["spans"][0];
    assert_eq!(span["service"], "encore-serving");
    assert!(
        span["response_model"]
            .as_str()
            .unwrap()
            .starts_with("recommender@"),
        "{span}"
    );
    let r = encore_http::request(&addr, "GET", "/metrics", b"").unwrap();
    assert!(
        r.body
            .contains("encore_model_version{model=\"recommender\"} 2")
            && r.body.contains("encore_model_swaps_total 2"),
        "{}",
        r.body
    );
    // the exposures: each listener shown a home list under an arm, once, by variant (each the
    // variant the server assigns them); analysed are those whose events give analytics consent
    let withheld: std::collections::BTreeSet<String> =
        std::fs::read_to_string(data.join("worlds/demo/users.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|u| u["consent"]["analytics"] == false)
            .map(|u| u["user_id"].as_str().unwrap().to_string())
            .collect();
    assert!(!withheld.is_empty());
    let mut want: std::collections::BTreeMap<String, u64> = Default::default();
    for (u, variant) in shown.borrow().iter() {
        let (_, a) = call(&addr, "GET", &format!("/v1/assignments?user_id={u}"), "");
        assert_eq!(a["assignments"][0]["variant"], variant.as_str(), "{u}");
        if !withheld.contains(u) {
            *want.entry(variant.clone()).or_default() += 1;
        }
    }
    // the server's results reach exactly that many (exposures are written behind requests)
    let total: u64 = want.values().sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = call(&addr, "GET", "/v1/experiments/home-mmr/results", "");
        if r["exposed"] == total {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server reports {} exposed, {total} were shown a list under an arm: {r}",
            r["exposed"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());

    // the experiment's report from the log: exactly those exposures per variant, SRM, a
    // decision
    let report = run(&["experiments", "report", "home-mmr"]);
    let per_variant: std::collections::BTreeMap<String, u64> =
        serde_json::from_value::<Vec<(String, u64)>>(report["per_variant"].clone())
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(per_variant, want, "{report}");
    assert_eq!(
        want.len(),
        2,
        "40 listeners at half traffic fill both arms: {want:?}"
    );
    assert!(total >= 10, "{want:?}");
    assert_eq!(report["exposed"], total);
    no_ship_without_outcomes(&report);
}

/// No play follows an exposure in this test, so the analysis has nothing to ship on: the
/// decision is inconclusive, or untrustworthy only when the sample ratio test says so.
fn no_ship_without_outcomes(report: &serde_json::Value) {
    let p = report["srm_p_value"].as_f64().unwrap();
    match report["decision"].as_str() {
        Some("inconclusive") => {}
        Some("untrustworthy") => assert!(p < 0.001, "untrustworthy with SRM p {p}: {report}"),
        other => panic!("decision {other:?} without any outcome: {report}"),
    }
}

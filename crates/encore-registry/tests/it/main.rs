//! The registry end to end on real SQLite files and real artifacts.

use encore_models::artifact::Artifact;
use encore_models::data::Csr;
use encore_models::model::{Model, ModelConfig};
use encore_registry::{Gate, NewVersion, PRODUCTION, Promotion, Registry, RegistryError};
use std::collections::BTreeMap;
use std::path::Path;

/// Fits a small ALS model, stores its artifact and returns the record to register.
fn version(root: &Path, factors: usize, ndcg: f64) -> NewVersion {
    let plays = Csr::from_entries(
        6,
        5,
        (0..6u32)
            .flat_map(|u| {
                (0..5u32)
                    .filter(move |i| (u + i) % 3 != 0)
                    .map(move |i| (u, i, 1.0 + i as f32))
            })
            .collect(),
    );
    let config = ModelConfig::Als(encore_models::als::AlsConfig {
        factors,
        iterations: 2,
        ..Default::default()
    });
    let model = Model::fit(&config, &plays, false, &mut |_| {});
    let artifact = Artifact {
        config: config.clone(),
        model,
        users: (0..6).map(|u| format!("u{u}")).collect(),
        items: (0..5).map(|i| format!("t{i}")).collect(),
        metadata: serde_json::Value::Null,
        interactions: Some(plays),
        skipped: None,
    };
    let (path, checksum, _) = artifact
        .store(&root.join("models").join("artifacts"))
        .unwrap();
    NewVersion {
        kind: "als".into(),
        checksum,
        artifact: path.display().to_string(),
        config: serde_json::to_value(&config).unwrap(),
        metrics: BTreeMap::from([("ndcg@10".into(), ndcg), ("coverage@10".into(), 0.5)]),
        baseline: BTreeMap::from([("ndcg@10".into(), 0.08)]),
        split: Some("holdout-20pct-seed42".into()),
        data: serde_json::json!({"users": 6, "items": 5, "interactions": 20}),
        ..Default::default()
    }
}

fn how<'a>(reason: &'a str, force: bool) -> Promotion<'a> {
    Promotion {
        alias: PRODUCTION,
        actor: "tester",
        reason,
        force,
    }
}

/// Runs `case` on a fresh data directory with embedded metadata, then on one whose metadata is
/// on PostgreSQL (when the test server is there).
fn on_every_backend(case: fn(&tempfile::TempDir)) {
    case(&tempfile::tempdir().unwrap());
    if let Some(pg) = encore_storage::metadata::testsuite::PostgresScratch::new() {
        let tmp = tempfile::tempdir().unwrap();
        pg.bind(tmp.path());
        case(&tmp);
        assert_eq!(pg.schemas(), [format!("{}_registry", pg.prefix)]);
    }
}

#[test]
fn promote_refuse_force_rollback_and_history() {
    on_every_backend(promote_flow);
}

fn promote_flow(tmp: &tempfile::TempDir) {
    let mut reg = Registry::open(tmp.path()).unwrap();
    let gate = Gate::default();
    let v1 = reg
        .register("home", &version(tmp.path(), 8, 0.2260))
        .unwrap();
    assert_eq!(v1, 1);
    reg.promote("home", 1, &how("first", false), &gate).unwrap();
    // a deliberately worse model: 4 factors and a much lower NDCG
    let v2 = reg
        .register("home", &version(tmp.path(), 4, 0.1100))
        .unwrap();
    assert_eq!(v2, 2);
    let err = reg
        .promote("home", 2, &how("try", false), &gate)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::GateRefused { .. }), "{msg}");
    assert!(msg.contains("0.1100") && msg.contains("0.2260"), "{msg}");
    assert_eq!(reg.resolve("home@production").unwrap().version, 1);
    // forcing needs a reason, and is recorded
    assert!(matches!(
        reg.promote("home", 2, &how(" ", true), &gate),
        Err(RegistryError::ReasonRequired)
    ));
    let forced = reg
        .promote(
            "home",
            2,
            &how("hotfix for a catalogue change", true),
            &gate,
        )
        .unwrap();
    assert!(forced.forced && forced.from == Some(1) && forced.to == 2);
    let back = reg.rollback("home", &how("v2 regressed", false)).unwrap();
    assert_eq!(
        (back.from, back.to, back.action.as_str()),
        (Some(2), 1, "rollback")
    );
    assert_eq!(reg.resolve("home@production").unwrap().version, 1);
    let history = reg.history("home").unwrap();
    let moves: Vec<_> = history
        .iter()
        .map(|m| (m.from, m.to, m.action.as_str(), m.forced))
        .collect();
    assert_eq!(
        moves,
        vec![
            (None, 1, "promote", false),
            (Some(1), 2, "promote", true),
            (Some(2), 1, "rollback", false)
        ]
    );
    // nothing earlier than v1
    assert!(matches!(
        reg.rollback("home", &how("again", false)),
        Err(RegistryError::NothingToRollBack { .. })
    ));
    // deleting what production points at is refused; v2 can go
    assert!(matches!(
        reg.delete("home", 1),
        Err(RegistryError::InUse { .. })
    ));
    let v2 = reg.resolve("home@2").unwrap();
    // stored and shown relative to the data directory: no host path in any answer
    assert!(
        v2.record.artifact.starts_with("models/artifacts/"),
        "{}",
        v2.record.artifact
    );
    let artifact2 = tmp.path().join(&v2.record.artifact);
    assert!(artifact2.exists());
    // the graph index built from it goes with it
    let index = encore_registry::index_key(&v2.record.checksum);
    reg.objects().put(&index, b"graph").unwrap();
    reg.delete("home", 2).unwrap();
    assert!(!artifact2.exists());
    assert!(!reg.objects().exists(&index).unwrap());
    assert!(reg.resolve("home@2").is_err());
    // the card agrees with the registry
    let card = reg.card("home@production").unwrap();
    assert_eq!(card.version, 1);
    let md = card.markdown();
    assert!(
        md.contains("| ndcg@10 | 0.2260 | 0.0800 | 0.2260 |"),
        "{md}"
    );
    assert!(
        md.contains("rollback") && md.contains("promote (forced)"),
        "{md}"
    );
}

#[test]
fn a_copied_data_directory_serves_its_own_artifacts() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    let mut reg = Registry::open(&a).unwrap();
    reg.register("home", &version(&a, 8, 0.2)).unwrap();
    drop(reg);
    // a copy, and the original gone: the copy's registry finds the copy's artifact
    std::process::Command::new("cp")
        .arg("-r")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    std::fs::remove_dir_all(&a).unwrap();
    let reg = Registry::open(&b).unwrap();
    let v = reg.resolve("home@1").unwrap();
    assert!(b.join(&v.record.artifact).is_file());
    reg.load_artifact(&v).unwrap();
    // an absolute path recorded by an earlier version reads the same way
    assert_eq!(
        encore_registry::relative_artifact("/srv/old/data/models/artifacts/ab12.encore"),
        "models/artifacts/ab12.encore"
    );
}

#[test]
fn a_corrupted_artifact_fails_the_gate_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut reg = Registry::open(tmp.path()).unwrap();
    let record = version(tmp.path(), 8, 0.2);
    let mut bytes = std::fs::read(&record.artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&record.artifact, &bytes).unwrap();
    reg.register("home", &record).unwrap();
    let err = reg
        .promote("home", 1, &how("", false), &Gate::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum") && err.contains(&record.artifact),
        "{err}"
    );
    let direct = Artifact::load(Path::new(&record.artifact))
        .unwrap_err()
        .to_string();
    assert!(
        direct.contains("checksum") && direct.contains(&record.artifact),
        "{direct}"
    );
}

#[test]
fn concurrent_promotions_keep_one_target_and_every_move() {
    on_every_backend(concurrent_promotions);
}

fn concurrent_promotions(tmp: &tempfile::TempDir) {
    {
        let mut reg = Registry::open(tmp.path()).unwrap();
        for _ in 0..4 {
            reg.register("home", &version(tmp.path(), 4, 0.2)).unwrap();
        }
    }
    let per_thread = 10;
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let root = tmp.path().to_path_buf();
            s.spawn(move || {
                // each thread its own connection, as separate processes would have
                let mut reg = Registry::open(&root).unwrap();
                for i in 0..per_thread {
                    let v = 1 + (t + i) % 4;
                    let reason = format!("thread {t} move {i}");
                    reg.promote("home", v, &how(&reason, true), &Gate::default())
                        .unwrap();
                }
            });
        }
    });
    let reg = Registry::open(tmp.path()).unwrap();
    let history = reg.history("home").unwrap();
    assert_eq!(history.len(), 4 * per_thread as usize, "no move lost");
    // the moves form one chain: each starts where the previous ended
    for pair in history.windows(2) {
        assert_eq!(pair[1].from, Some(pair[0].to), "{pair:?}");
    }
    let aliases = reg.aliases("home").unwrap();
    assert_eq!(aliases.len(), 1);
    assert_eq!(aliases[PRODUCTION], history.last().unwrap().to);
}

#[test]
fn watchers_see_moves_from_other_connections_and_webhooks_retry() {
    on_every_backend(watchers_and_webhooks);
}

fn watchers_and_webhooks(tmp: &tempfile::TempDir) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::Duration;
    let mut reg = Registry::open(tmp.path()).unwrap();
    reg.register("home", &version(tmp.path(), 4, 0.2)).unwrap();
    let watcher = encore_registry::Watcher::start(tmp.path(), Duration::from_millis(20)).unwrap();
    let seen = watcher.subscribe();
    let hooked = watcher.subscribe();

    // a webhook receiver that fails the first delivery
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/models", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for (n, conn) in listener.incoming().take(2).enumerate() {
            let mut conn = conn.unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut line, mut length) = (String::new(), 0);
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with("POST /hooks/models "), "{line}");
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            bodies.push(String::from_utf8(body).unwrap());
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "204 No Content"
            };
            write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
        }
        bodies
    });
    let (tx, results) = std::sync::mpsc::channel();
    let client = encore_http::outbound::Outbound::new(Default::default()).unwrap();
    let retry = encore_http::outbound::Retry {
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_wait: Duration::from_secs(1),
    };
    let deliver = move |u: &str, body: &[u8]| {
        let d = encore_http::outbound::deliver(&client, "webhook", u, body, None, retry);
        (d.attempts, d.delivered)
    };
    let hooks = encore_registry::webhooks(
        hooked,
        vec![url.clone()],
        deliver,
        move |u, m, tries, ok| {
            tx.send((u.to_string(), m.to, tries, ok)).unwrap();
        },
    )
    .unwrap();

    // another connection (as another process would) moves production
    let mut other = Registry::open(tmp.path()).unwrap();
    other
        .promote("home", 1, &how("ship it", false), &Gate::default())
        .unwrap();
    let m = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (m.alias.as_str(), m.to, m.reason.as_str()),
        (PRODUCTION, 1, "ship it")
    );
    let delivered = results.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        delivered,
        (url, 1, 2, true),
        "delivered on the second attempt"
    );
    let bodies = server.join().unwrap();
    assert_eq!(bodies[0], bodies[1]);
    let event: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
    assert_eq!(event["event"], "alias_moved");
    assert_eq!(event["move"]["to"], 1);
    drop(watcher);
    hooks.join().unwrap();
}

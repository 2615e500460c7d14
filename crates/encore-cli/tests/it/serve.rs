//! The HTTP server as a real process: acknowledged events survive SIGKILL exactly once.

use encore_ingest::{IngestOptions, Ingestor, Table};
use encore_sim::{SimConfig, World};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `encore serve` on a free port; returns the child and the port.
fn start(data: &Path) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("ENCORE__INGEST__SEAL_ROWS", "4000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start encore serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (child, port)
}

fn batches() -> Vec<(Vec<String>, Vec<u8>)> {
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
            match encore_server::client::request(&addr, "POST", "/v1/events", body)
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
    let mut stored: HashMap<String, usize> = HashMap::new();
    log.scan(Some(&["event_id"]), |b| {
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
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

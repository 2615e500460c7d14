//! `encore bench http-ingest`: a loopback load generator for `POST /v1/events`.

use crate::cli::BenchCommand;
use crate::error::CliError;
use crate::output::{Output, thousands};
use encore_server::client::Connection;
use serde::Serialize;
use std::io::BufRead;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Serialize)]
struct HttpReport {
    events: u64,
    requests: u64,
    seconds: f64,
    events_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    batch: usize,
    connections: usize,
    retries_503: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(cmd: BenchCommand, out: &Output) -> Result<(), CliError> {
    let BenchCommand::HttpIngest {
        addr,
        files,
        batch,
        connections,
        limit,
    } = cmd;
    if !(addr.starts_with("127.") || addr.starts_with("localhost")) {
        return Err(CliError::usage(
            format!("--addr {addr} is not a loopback address"),
            "load only servers on this machine",
        ));
    }
    // bodies prepared up front, so the client measures the server, not file reading
    let mut bodies: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut current = Vec::new();
    let mut rows = 0;
    let mut total = 0;
    'files: for f in &files {
        let file = std::fs::File::open(f)
            .map_err(|e| CliError::failed(format!("{}: {e}", f.display()), "check the path"))?;
        for line in std::io::BufReader::new(file).split(b'\n') {
            let line = line
                .map_err(|e| CliError::failed(format!("{}: {e}", f.display()), "check the file"))?;
            current.extend_from_slice(&line);
            current.push(b'\n');
            rows += 1;
            total += 1;
            if rows == batch {
                bodies.push((rows, std::mem::take(&mut current)));
                rows = 0;
            }
            if limit.is_some_and(|l| total >= l) {
                break 'files;
            }
        }
    }
    if rows > 0 {
        bodies.push((rows, current));
    }
    let next = Mutex::new(0usize);
    let latencies = Mutex::new(Vec::with_capacity(bodies.len()));
    let retries = Mutex::new(0u64);
    let started = Instant::now();
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..connections.max(1) {
            s.spawn(|| {
                let mut conn = match Connection::open(&addr) {
                    Ok(c) => c,
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        return;
                    }
                };
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                        *n += 1;
                        *n - 1
                    };
                    let Some((_, body)) = bodies.get(i) else {
                        return;
                    };
                    loop {
                        let t = Instant::now();
                        match conn.request("POST", "/v1/events", body) {
                            Ok(r) if r.status == 200 => {
                                latencies
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(t.elapsed().as_secs_f64() * 1e3);
                                break;
                            }
                            Ok(r) if r.status == 503 => {
                                *retries.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                                std::thread::sleep(std::time::Duration::from_millis(5));
                            }
                            Ok(r) => {
                                *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(format!("status {}: {}", r.status, r.body));
                                return;
                            }
                            Err(e) => {
                                *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(e.to_string());
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(f) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(CliError::failed(
            format!("load generator failed: {f}"),
            "is `encore serve` running at --addr?",
        ));
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut lat = latencies.into_inner().unwrap_or_else(|p| p.into_inner());
    lat.sort_by(f64::total_cmp);
    let events: u64 = bodies.iter().map(|(n, _)| *n as u64).sum();
    let report = HttpReport {
        events,
        requests: bodies.len() as u64,
        seconds,
        events_per_second: events as f64 / seconds,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        batch,
        connections,
        retries_503: retries.into_inner().unwrap_or_else(|p| p.into_inner()),
    };
    out.emit(&report, || {
        format!(
            "{} events in {} requests over {} connections: {:.1} s, {} events/s; ack latency p50 {:.1} ms, p99 {:.1} ms",
            thousands(report.events),
            report.requests,
            report.connections,
            report.seconds,
            thousands(report.events_per_second as u64),
            report.p50_ms,
            report.p99_ms
        )
    });
    Ok(())
}

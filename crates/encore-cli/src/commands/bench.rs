//! Loopback load generators: `encore bench http-ingest` (`POST /v1/events` as fast as the server
//! acknowledges) and `encore bench http-get` (GET requests at a fixed rate).

use crate::cli::BenchCommand;
use crate::error::CliError;
use crate::output::{Output, thousands};
use encore_http::Connection;
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
    /// what the server's acknowledgements counted: stored, rejected (quarantined), duplicates
    accepted: u64,
    rejected: u64,
    duplicates: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn loopback_only(addr: &str) -> Result<(), CliError> {
    if addr.starts_with("127.") || addr.starts_with("localhost") {
        Ok(())
    } else {
        Err(CliError::usage(
            format!("--addr {addr} is not a loopback address"),
            "load only servers on this machine",
        ))
    }
}

pub fn run(cmd: BenchCommand, out: &Output) -> Result<(), CliError> {
    let (addr, files, batch, connections, limit) = match cmd {
        BenchCommand::HttpIngest {
            addr,
            files,
            batch,
            connections,
            limit,
        } => (addr, files, batch, connections, limit),
        BenchCommand::HttpGet {
            addr,
            paths,
            rate,
            seconds,
            connections,
        } => return http_get(&addr, &paths, rate, seconds, connections, out),
        BenchCommand::Assign { users, domains } => return assign(users, domains, out),
        BenchCommand::FeaturesOffline {
            events,
            rows,
            users,
            artists,
            days,
            uniform,
            write_definitions,
        } => {
            if let Some(path) = write_definitions {
                std::fs::write(&path, BENCH_FEATURES).map_err(|e| {
                    CliError::failed(format!("{}: {e}", path.display()), "check the path")
                })?;
                return Ok(());
            }
            let shape = Shape {
                events,
                rows,
                users,
                artists,
                days,
                uniform,
            };
            return features_offline(&shape, out);
        }
        BenchCommand::Ann {
            artifact,
            synthetic,
            width,
            clusters,
            queries,
            ef,
            connectivity,
            ef_construction,
            k,
        } => {
            let (items, queries, width, source) = match (artifact, synthetic) {
                (Some(path), _) => {
                    let a = encore_models::artifact::Artifact::load(&path)?;
                    let (items, w) = a.model.item_vectors().ok_or_else(|| {
                        CliError::usage(
                            format!("{} has no item vectors", path.display()),
                            "use an ALS or BPR model",
                        )
                    })?;
                    let (users, _) = a.model.user_vectors().unwrap_or((&[], w));
                    let q = users.len().min(queries * w);
                    (
                        items.to_vec(),
                        users[..q].to_vec(),
                        w,
                        path.display().to_string(),
                    )
                }
                (None, Some(n)) => (
                    synthetic_vectors(n, width, clusters, 1),
                    synthetic_vectors(queries, width, clusters, 2),
                    width,
                    match clusters {
                        0 => format!("synthetic {n} x {width}"),
                        c => format!("synthetic {n} x {width} in {c} clusters"),
                    },
                ),
                (None, None) => {
                    return Err(CliError::usage(
                        "no vectors to index",
                        "pass --artifact FILE or --synthetic N",
                    ));
                }
            };
            let params = encore_index::HnswParams {
                connectivity,
                expansion_add: ef_construction,
                expansion_search: 128,
            };
            return ann(&items, &queries, width, &source, params, &ef, k, out);
        }
    };
    loopback_only(&addr)?;
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
    let counted = Mutex::new([0u64; 3]);
    let started = Instant::now();
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..connections.max(1) {
            s.spawn(|| {
                let mut conn = match Connection::open(&addr).map(with_key) {
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
                                let ack: serde_json::Value =
                                    serde_json::from_str(&r.body).unwrap_or_default();
                                let mut c = counted.lock().unwrap_or_else(|p| p.into_inner());
                                for (n, key) in
                                    ["accepted", "rejected", "duplicates"].iter().enumerate()
                                {
                                    c[n] += ack[key].as_u64().unwrap_or(0);
                                }
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
    let [accepted, rejected, duplicates] = counted.into_inner().unwrap_or_else(|p| p.into_inner());
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
        accepted,
        rejected,
        duplicates,
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

#[derive(Serialize)]
struct GetReport {
    target_rate: f64,
    seconds: f64,
    connections: usize,
    sent: u64,
    ok: u64,
    shed_503: u64,
    errors: u64,
    achieved_rate: f64,
    ok_rate: f64,
    /// of 200 responses, from the scheduled send time
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// of 200 responses, from the actual send time (the server's part when the generator
    /// itself falls behind)
    service_p50_ms: f64,
    service_p99_ms: f64,
}

/// What one connection of [`http_get`] saw.
#[derive(Default)]
struct ConnectionTally {
    /// ms from schedule, of 200s
    lat: Vec<f64>,
    /// ms from send, of 200s
    service: Vec<f64>,
    shed: u64,
    errors: u64,
    sent: u64,
}

/// Open-loop load: request k of connection c is due at `(k * connections + c) / rate`; a late
/// connection sends at once, and its latency still counts from the due time.
fn http_get(
    addr: &str,
    paths_file: &std::path::Path,
    rate: f64,
    seconds: f64,
    connections: usize,
    out: &Output,
) -> Result<(), CliError> {
    loopback_only(addr)?;
    if !(rate > 0.0 && seconds > 0.0 && seconds <= 600.0) {
        return Err(CliError::usage(
            format!("--rate {rate} --seconds {seconds}"),
            "a positive rate and 0 < seconds <= 600",
        ));
    }
    let text = std::fs::read_to_string(paths_file).map_err(|e| {
        CliError::failed(format!("{}: {e}", paths_file.display()), "check the path")
    })?;
    let paths: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    if paths.is_empty() {
        return Err(CliError::usage(
            format!("{} has no request paths", paths_file.display()),
            "one path per line",
        ));
    }
    let connections = connections.max(1);
    let total = (rate * seconds) as u64;
    let start = Instant::now();
    let results: Vec<ConnectionTally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                let paths = &paths;
                s.spawn(move || {
                    let (mut lat, mut shed, mut errors, mut sent) = (Vec::new(), 0u64, 0u64, 0u64);
                    let mut service = Vec::new();
                    let mut conn = Connection::open(addr).ok().map(with_key);
                    let mut k = c as u64;
                    while k < total {
                        let due = std::time::Duration::from_secs_f64(k as f64 / rate);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                        let line = paths[k as usize % paths.len()];
                        // `POST PATH BODY` lines post a body; others are GET paths
                        let (method, path, body) = match line.strip_prefix("POST ") {
                            Some(rest) => {
                                let (p, b) = rest.split_once(' ').unwrap_or((rest, ""));
                                ("POST", p, b.as_bytes())
                            }
                            None => ("GET", line, &b""[..]),
                        };
                        sent += 1;
                        let sent_at = Instant::now();
                        let reply = match conn.as_mut() {
                            Some(cn) => cn.request(method, path, body),
                            None => Err(std::io::Error::other("not connected")),
                        };
                        match reply {
                            Ok(r) if r.status == 200 => {
                                lat.push((start.elapsed() - due).as_secs_f64() * 1e3);
                                service.push(sent_at.elapsed().as_secs_f64() * 1e3);
                            }
                            Ok(r) if r.status == 503 => shed += 1,
                            Ok(_) => errors += 1,
                            Err(_) => {
                                errors += 1;
                                conn = Connection::open(addr).ok().map(with_key);
                            }
                        }
                        k += connections as u64;
                    }
                    ConnectionTally {
                        lat,
                        service,
                        shed,
                        errors,
                        sent,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = results.iter().flat_map(|r| r.lat.iter().copied()).collect();
    lat.sort_by(f64::total_cmp);
    let mut service: Vec<f64> = results
        .iter()
        .flat_map(|r| r.service.iter().copied())
        .collect();
    service.sort_by(f64::total_cmp);
    let shed = results.iter().map(|r| r.shed).sum::<u64>();
    let errors = results.iter().map(|r| r.errors).sum::<u64>();
    let sent = results.iter().map(|r| r.sent).sum::<u64>();
    let report = GetReport {
        target_rate: rate,
        seconds: elapsed,
        connections,
        sent,
        ok: lat.len() as u64,
        shed_503: shed,
        errors,
        achieved_rate: sent as f64 / elapsed,
        ok_rate: lat.len() as f64 / elapsed,
        p50_ms: percentile(&lat, 0.5),
        p90_ms: percentile(&lat, 0.9),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        service_p50_ms: percentile(&service, 0.5),
        service_p99_ms: percentile(&service, 0.99),
    };
    out.emit(&report, || {
        format!(
            "{} requests at {:.0}/s target ({:.0}/s sent) over {} connections: {} ok, {} shed (503), {} errors; latency of ok from schedule p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
            report.sent,
            report.target_rate,
            report.achieved_rate,
            report.connections,
            report.ok,
            report.shed_503,
            report.errors,
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms
        )
    });
    Ok(())
}

/// A synthetic catalogue with the statistics of trained ALS item factors (measured on the
/// HetRec Last.fm ALS model, 64 factors): nearly isotropic directions around a shared mean
/// direction (the mean of the unit vectors has length about 0.28) and log-normal norms
/// (sigma 0.85 in log space), so a few long vectors dominate inner products as in real models.
/// `n` vectors with the statistics of ALS factors: lengths log-normal (popular items long),
/// directions around one shared mean with isotropic noise, or with `clusters`, each near one of
/// that many cluster directions (shared by every seed, so queries fall in the items' clusters).
fn synthetic_vectors(n: usize, width: usize, clusters: usize, seed: u64) -> Vec<f32> {
    fn normals(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        let mut uniform = move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            ((encore_models::split::splitmix64(s) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        move || {
            let (a, b) = (uniform(), uniform());
            ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
        }
    }
    let unit = |v: Vec<f32>| {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let mut normal = normals(seed);
    // the directions items lean towards: a mean of this seed's own, or cluster centres shared
    // by every seed
    let mut shape = normals(0xC1);
    let centres: Vec<Vec<f32>> = match clusters {
        0 => vec![unit((0..width).map(|_| normal()).collect())],
        c => (0..c)
            .map(|_| unit((0..width).map(|_| shape()).collect()))
            .collect(),
    };
    // how far an item leans: 0.29 of its length towards the mean, or most of it towards its
    // cluster's centre
    let lean = if clusters == 0 { 0.29 } else { 0.8 };
    let mut out = Vec::with_capacity(n * width);
    let mut v = vec![0f32; width];
    let per_dim = 1.0 / (width as f32).sqrt();
    let spread = if clusters == 0 { 1.0 } else { 0.6 };
    for i in 0..n {
        let centre = &centres[if clusters == 0 {
            0
        } else {
            (encore_models::split::splitmix64((seed << 40) ^ i as u64) % clusters as u64) as usize
        }];
        for (x, m) in v.iter_mut().zip(centre) {
            *x = lean * m + spread * per_dim * normal();
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let length = (0.85 * normal()).exp();
        out.extend(v.iter().map(|x| x / norm * length));
    }
    out
}

#[derive(Serialize)]
struct AnnRow {
    ef: usize,
    recall: f64,
    qps: f64,
    p50_us: f64,
    p99_us: f64,
}

#[derive(Serialize)]
struct AnnReport {
    source: String,
    items: usize,
    width: usize,
    queries: usize,
    k: usize,
    connectivity: usize,
    ef_construction: usize,
    build_seconds: f64,
    build_threads: usize,
    index_bytes: u64,
    exact_qps: f64,
    hnsw: Vec<AnnRow>,
}

#[allow(clippy::too_many_arguments)]
fn ann(
    items: &[f32],
    queries: &[f32],
    width: usize,
    source: &str,
    params: encore_index::HnswParams,
    efs: &[usize],
    k: usize,
    out: &Output,
) -> Result<(), CliError> {
    use encore_index::{Choice, Retriever};
    let n_queries = queries.len() / width;
    let t = Instant::now();
    let index = Retriever::build(items, width, Choice::Hnsw(params))?;
    let build_seconds = t.elapsed().as_secs_f64();
    let dir = std::env::temp_dir().join(format!("encore-ann-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::failed(format!("{}: {e}", dir.display()), "check /tmp"))?;
    let path = dir.join("items.usearch");
    index.save_hnsw(&path)?;
    let index_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    // the saved graph, mapped read-only: what serving would use
    let index = Retriever::load_hnsw(&path, items, width, true)?;
    let t = Instant::now();
    let truth: Vec<Vec<u32>> = queries
        .chunks(width)
        .map(|q| index.exact(q, k, &|_| true).iter().map(|x| x.1).collect())
        .collect();
    let exact_qps = n_queries as f64 / t.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for &ef in efs {
        index.set_expansion_search(ef.max(k));
        let mut lat = Vec::with_capacity(n_queries);
        let t = Instant::now();
        let found: Vec<Vec<u32>> = queries
            .chunks(width)
            .map(|q| {
                let t = Instant::now();
                let r = index.search_all(q, k).iter().map(|x| x.1).collect();
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                r
            })
            .collect();
        let qps = n_queries as f64 / t.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        rows.push(AnnRow {
            ef,
            recall: encore_index::recall(&found, &truth),
            qps,
            p50_us: percentile(&lat, 0.5),
            p99_us: percentile(&lat, 0.99),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    let report = AnnReport {
        source: source.into(),
        items: items.len() / width,
        width,
        queries: n_queries,
        k,
        connectivity: params.connectivity,
        ef_construction: params.expansion_add,
        build_seconds,
        build_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        index_bytes,
        exact_qps,
        hnsw: rows,
    };
    out.emit(&report, || {
        let mut text = format!(
            "{}: {} items x {}, {} queries; HNSW M={} ef_construction={} built in {:.1} s ({} MiB); exact {:.0} queries/s\n",
            report.source,
            report.items,
            report.width,
            report.queries,
            report.connectivity,
            report.ef_construction,
            report.build_seconds,
            report.index_bytes >> 20,
            report.exact_qps
        );
        for r in &report.hnsw {
            text.push_str(&format!(
                "  ef={:<4} recall@{} {:.3}  {:>8.0} queries/s  p50 {:.0} us  p99 {:.0} us\n",
                r.ef, report.k, r.recall, r.qps, r.p50_us, r.p99_us
            ));
        }
        text
    });
    Ok(())
}

#[derive(Serialize)]
struct AssignReport {
    users: usize,
    domains: usize,
    experiments: usize,
    plan_seconds: f64,
    assign_seconds: f64,
    users_per_second: f64,
    assignments: usize,
}

/// Builds a plan (two experiments per domain, 40 % of its buckets each, a 5 % global holdout)
/// and times assigning `users` synthetic listeners on this thread.
fn assign(users: usize, domains: usize, out: &Output) -> Result<(), CliError> {
    use encore_experiments::assignment::{Context, ExperimentSpec, Plan, Targeting, Variant};
    let experiments: Vec<ExperimentSpec> = (0..domains)
        .flat_map(|d| {
            (0..2).map(move |e| ExperimentSpec {
                id: format!("d{d}-e{e}"),
                domain: format!("domain-{d}"),
                traffic: 0.4,
                variants: ["control", "treatment"]
                    .iter()
                    .map(|v| Variant {
                        name: (*v).into(),
                        weight: 1.0,
                    })
                    .collect(),
                targeting: Targeting::default(),
                stretch: Vec::new(),
                ramps: Vec::new(),
            })
        })
        .collect();
    let t = Instant::now();
    let plan = Plan::new(&experiments, &Default::default(), 0.05, "holdout")
        .map_err(|e| CliError::failed(e.to_string(), "fewer experiments per domain"))?;
    let plan_seconds = t.elapsed().as_secs_f64();
    let ids: Vec<String> = (0..users).map(|i| format!("user-{i}")).collect();
    let context = Context {
        country: "SE",
        platform: "ios",
        tier: "premium",
        new_user: false,
    };
    let t = Instant::now();
    let assignments: usize = ids.iter().map(|u| plan.assign(u, &context).len()).sum();
    let assign_seconds = t.elapsed().as_secs_f64();
    let report = AssignReport {
        users,
        domains,
        experiments: experiments.len(),
        plan_seconds,
        assign_seconds,
        users_per_second: users as f64 / assign_seconds,
        assignments,
    };
    out.emit(&report, || {
        format!(
            "{} listeners over {} domains ({} experiments): plan built in {:.2} s; {} listeners/s on one thread ({} assignments)",
            thousands(report.users as u64),
            report.domains,
            report.experiments,
            report.plan_seconds,
            thousands(report.users_per_second as u64),
            thousands(report.assignments as u64)
        )
    });
    Ok(())
}

/// A training set of 20 features from `events` synthetic plays of `users` listeners over `days`
/// days, as of `rows` random (listener, time) rows: grouping and sorting the events, the sweep
/// per view, and the Parquet write, timed apart; peak RSS from the kernel.
/// The offline feature benchmark's workload.
struct Shape {
    events: usize,
    rows: usize,
    users: usize,
    artists: usize,
    days: i64,
    /// everything uniform (the first workload); otherwise popularity-skewed listeners and
    /// artists, and rows from plays
    uniform: bool,
}

impl Shape {
    /// An index below `n`: uniform, or by popularity (log-uniform ranks, P(k) ∝ 1/k, the
    /// long tail of listening).
    fn draw(&self, rng: &mut encore_sim::rng::Rng, n: usize) -> usize {
        if self.uniform {
            rng.below(n)
        } else {
            ((n as f64).powf(rng.f64()) as usize)
                .saturating_sub(1)
                .min(n - 1)
        }
    }
}

/// A training set of 20 features over synthetic plays. By default its rows are shaped like a
/// re-ranker's: half are plays (the listener and the artist, just before the play started),
/// half candidates shown beside them (the same listener and time, an artist drawn by
/// popularity).
fn features_offline(shape: &Shape, out: &Output) -> Result<(), CliError> {
    use encore_features::event::{FeatureEvent, Raw};
    use encore_features::offline::{EntityRows, Grouper, compute_view, write_parquet};
    use encore_features::online::kinds;
    let defs = encore_features::Definitions::parse(BENCH_FEATURES, "bench")
        .map_err(|e| CliError::failed(e.to_string(), "the benchmark's definitions are built in"))?;
    let &Shape {
        events,
        rows,
        users,
        artists,
        days,
        uniform,
    } = shape;
    let span = days * 86_400_000;
    let start = 1_790_000_000_000i64;
    let mut rng = encore_sim::rng::Rng::new(42);
    let platforms = ["ios", "android", "web"];
    let reasons = ["trackdone", "fwdbtn", "trackdone", "endplay"];
    // the plays the rows are drawn from: (listener, artist, start)
    let keep = if uniform {
        0.0
    } else {
        (rows as f64 / 2.0 / events as f64).min(1.0)
    };
    let mut kept: Vec<(usize, usize, i64)> = Vec::with_capacity((keep * events as f64) as usize);
    // generated straight into the grouper, as the event log's batches are in a real run
    let mut grouper = Grouper::new(&kinds(&defs));
    let mut generate = std::time::Duration::ZERO;
    let t1 = Instant::now();
    for _ in 0..events {
        let g0 = Instant::now();
        let u = shape.draw(&mut rng, users);
        let user = format!("u{u}");
        let artist = shape.draw(&mut rng, artists);
        let ms = rng.below(240_000) as u32;
        let artist_id = format!("a{artist}");
        let item_id = format!("t{}", artist * 10 + rng.below(10));
        let ts_end_ms = start + rng.below(span as usize) as i64;
        if keep > 0.0 && rng.chance(keep) {
            kept.push((u, artist, ts_end_ms - i64::from(ms) - 1));
        }
        let e = FeatureEvent::new(&Raw {
            personal: true,
            ts_end_ms,
            ms_played: ms,
            item_duration_ms: 240_000,
            shuffle: false,
            offline: false,
            item_id: &item_id,
            artist_id: Some(&artist_id),
            platform: platforms[rng.below(3)],
            country: "SE",
            context_type: "album",
            reason_start: "clickrow",
            reason_end: reasons[rng.below(4)],
        });
        generate += g0.elapsed();
        grouper.add(&user, &item_id, Some(&artist_id), e);
    }
    let grouped = grouper.finish();
    let generated_s = generate.as_secs_f64();
    let group_s = t1.elapsed().as_secs_f64() - generated_s;
    let mut er = EntityRows {
        columns: vec!["user_id".into(), "artist_id".into()],
        ..Default::default()
    };
    let mut push = |u: usize, a: usize, ts: i64| {
        er.keys.push(vec![format!("u{u}"), format!("a{a}")]);
        er.ts.push(ts);
    };
    // a play, then a candidate shown beside it; the rest (all, when uniform) drawn at random
    let from_plays = kept.len().min(rows / 2);
    for &(u, a, ts) in &kept[..from_plays] {
        push(u, a, ts);
        push(u, shape.draw(&mut rng, artists), ts);
    }
    for _ in 2 * from_plays..rows {
        push(
            shape.draw(&mut rng, users),
            shape.draw(&mut rng, artists),
            start + rng.below(span as usize) as i64,
        );
    }
    let t2 = Instant::now();
    let mut computed = Vec::new();
    for v in defs.views.values() {
        computed.push((v, compute_view(v, &grouped[&v.kind], &er)?));
    }
    let compute_s = t2.elapsed().as_secs_f64();
    // rows whose listener has played the artist before: the live share of the pair view
    let with_history = computed
        .iter()
        .filter(|(v, _)| v.kind == encore_features::def::EntityKind::UserArtist)
        .map(|(_, c)| {
            c.status
                .iter()
                .filter(|s| !matches!(s, encore_features::compute::Status::Missing))
                .count()
        })
        .next()
        .unwrap_or(0);
    let t3 = Instant::now();
    let path = std::env::temp_dir().join(format!(
        "encore-bench-training-{}.parquet",
        std::process::id()
    ));
    let n = write_parquet(&path, &er, &computed)?;
    let write_s = t3.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    let features: usize = defs.views.values().map(|v| v.features.len()).sum();
    let peak_mb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0);
    let body = serde_json::json!({
        "events": events, "rows": n, "features": features, "users": users, "artists": artists,
        "workload": if uniform { "uniform" } else { "popular, rows from plays" },
        "rows_from_plays": from_plays, "rows_with_history": with_history,
        "generate_s": generated_s, "group_sort_s": group_s, "compute_s": compute_s,
        "write_parquet_s": write_s, "training_set_s": group_s + compute_s + write_s,
        "parquet_bytes": bytes, "peak_rss_mb": peak_mb,
    });
    out.emit(&body, || {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        )
    });
    Ok(())
}

/// Twenty features over two views (listener; listener and artist), as a re-ranker would use.
pub const BENCH_FEATURES: &str = r#"
[entities.user]
keys = ["user_id"]
[entities.user_artist]
keys = ["user_id", "artist_id"]
[views.user]
entity = "user"
ttl = "30d"
features = [
  { name = "plays_1h", agg = "count", window = "1h" },
  { name = "plays_1d", agg = "count", window = "1d" },
  { name = "plays_7d", agg = "count", window = "7d" },
  { name = "plays_30d", agg = "count", window = "30d" },
  { name = "streams_1d", agg = "count", window = "1d", filter = "stream" },
  { name = "streams_7d", agg = "count", window = "7d", filter = "stream" },
  { name = "ms_7d", agg = "sum", field = "ms_played", window = "7d" },
  { name = "ms_30d", agg = "sum", field = "ms_played", window = "30d" },
  { name = "completion_7d", agg = "mean", field = "completion", window = "7d" },
  { name = "skip_rate_1d", agg = "ratio", window = "1d", numerator = { agg = "count", filter = "skip" }, denominator = { agg = "count" } },
  { name = "skip_rate_7d", agg = "ratio", window = "7d", numerator = { agg = "count", filter = "skip" }, denominator = { agg = "count" } },
  { name = "artists_7d", agg = "distinct", field = "artist_id", window = "7d" },
  { name = "ios_share_7d", agg = "ratio", window = "7d", numerator = { agg = "count", filter = "platform == ios" }, denominator = { agg = "count" } },
  { name = "last_completion", agg = "last", field = "completion" },
]
[views.user_artist]
entity = "user_artist"
ttl = "90d"
features = [
  { name = "plays_7d", agg = "count", window = "7d" },
  { name = "plays_90d", agg = "count", window = "90d" },
  { name = "streams_30d", agg = "count", window = "30d", filter = "stream" },
  { name = "skip_rate_30d", agg = "ratio", window = "30d", numerator = { agg = "count", filter = "skip" }, denominator = { agg = "count" } },
  { name = "ms_30d", agg = "sum", field = "ms_played", window = "30d" },
  { name = "last_ms", agg = "last", field = "ms_played" },
]
[services.reranker]
views = ["user", "user_artist"]
"#;

/// Load generators send the key in `ENCORE_API_KEY` (a key with the scopes the routes need).
fn with_key(c: Connection) -> Connection {
    c.with_key(std::env::var("ENCORE_API_KEY").ok().as_deref())
}

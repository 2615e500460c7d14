//! `encore train`: fit a model on the event log (or a TSV of pairs), with a progress bar and the
//! training loss per iteration, and store it as a checksummed model artifact in the data
//! directory (`models/artifacts/<sha256>.encore`).

use crate::cli::TrainArgs;
use crate::commands::eval::{cpu_seconds, evaluate, pool};
use crate::error::CliError;
use crate::output::{Output, thousands};
use encore_core::time::now_ms;
use encore_models::artifact::Artifact;
use encore_models::data::{Csr, read_tsv};
use encore_models::model::Model;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Training pairs with the ids of their rows and columns.
pub struct TrainingData {
    pub plays: Csr,
    /// skips per listener and track (the event log only): served lists leave them out
    pub skipped: Option<Csr>,
    pub users: Vec<String>,
    pub items: Vec<String>,
    /// where they came from: `event-log` or the TSV's path
    pub source: String,
    /// first and last play (epoch ms), for the event log
    pub time_range_ms: Option<(i64, i64)>,
    /// what exactly was read: the event log's segments and unsealed rows, or the file's hash
    pub snapshot: serde_json::Value,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

impl TrainingData {
    /// Every stream in the event log, counted per listener and track.
    pub fn from_log(ingestor: &encore_ingest::Ingestor) -> Result<TrainingData, CliError> {
        use encore_ingest::matrix::{MatrixOptions, build_matrix};
        let m = build_matrix(ingestor, MatrixOptions::default())?;
        if m.nnz() == 0 {
            return Err(CliError::usage(
                "the event log has no streams to train on",
                "ingest events first (`encore ingest` or `encore import`), or pass --train FILE",
            ));
        }
        let indptr: Vec<usize> = m.indptr.iter().map(|&p| p as usize).collect();
        let plays = Csr {
            n_rows: m.users.len(),
            n_cols: m.items.len(),
            indptr,
            indices: m.indices.clone(),
            values: m.plays.iter().map(|&p| p as f32).collect(),
        };
        // segments are immutable, so their list (ids, files, rows, bytes, times) and the count
        // of rows not yet sealed identify what was read
        let log = ingestor.log(encore_ingest::Table::Playback);
        let segments = log.segments();
        let unsealed = log.stats().unsealed_rows;
        let listing = serde_json::to_vec(&(&segments, unsealed)).unwrap_or_default();
        let snapshot = serde_json::json!({
            "table": "playback",
            "segments": segments,
            "unsealed_rows": unsealed,
            "snapshot_sha256": sha256_hex(&listing),
        });
        let first = m.first_ts_ms.iter().copied().min().unwrap_or(0);
        let last = m.last_ts_ms.iter().copied().max().unwrap_or(0);
        let skipped = Csr::from_entries(
            m.users.len(),
            m.items.len(),
            m.skipped
                .iter()
                .map(|&(u, i, n)| (u, i, n as f32))
                .collect(),
        );
        Ok(TrainingData {
            plays,
            skipped: Some(skipped),
            users: m.users,
            items: m.items,
            source: "event-log".into(),
            time_range_ms: Some((first, last)),
            snapshot,
        })
    }

    /// A TSV of `user<TAB>item<TAB>weight` (the shared split format).
    pub fn from_tsv(path: &std::path::Path) -> Result<TrainingData, CliError> {
        let rows = read_tsv(path)?;
        let bytes = std::fs::read(path).unwrap_or_default();
        let snapshot = serde_json::json!({
            "file": path.display().to_string(),
            "snapshot_sha256": sha256_hex(&bytes),
        });
        let ds = encore_models::data::Dataset::new(&rows, &[]);
        Ok(TrainingData {
            plays: ds.train,
            skipped: None,
            users: ds.users.iter().map(u64::to_string).collect(),
            items: ds.items.iter().map(u64::to_string).collect(),
            source: path.display().to_string(),
            time_range_ms: None,
            snapshot,
        })
    }
}

#[derive(Serialize)]
pub struct TrainReport {
    pub model: &'static str,
    pub config: serde_json::Value,
    pub source: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// training loss after each iteration (ALS: weighted squared error per unit of confidence;
    /// BPR: mean −ln σ of the sampled pairs)
    pub loss: Vec<f64>,
    pub fit_seconds: f64,
    pub fit_cpu_seconds: f64,
    pub threads: usize,
    /// data snapshot, code version, host, start and end
    pub lineage: serde_json::Value,
    pub artifact: String,
    pub checksum: String,
    pub artifact_bytes: u64,
    /// offline metrics on the holdout split (empty with --no-eval)
    pub metrics: BTreeMap<String, f64>,
    /// popularity's metrics on the same split
    pub baseline: BTreeMap<String, f64>,
    pub name: String,
    pub version: u32,
    /// the production move, with --promote
    pub promoted: Option<encore_registry::AliasMove>,
}

/// Metric name (`ndcg@10`, ...) to value.
type Metrics = BTreeMap<String, f64>;

/// The split train-time evaluation uses: the shared holdout rule.
pub const EVAL_SPLIT: &str = "holdout-20pct-seed42";

/// Metrics of `args`' model and of popularity on the holdout split of `data`.
fn holdout_metrics(
    data: &TrainingData,
    args: &TrainArgs,
    out: &Output,
) -> Result<(Metrics, Metrics), CliError> {
    let mut rows = Vec::with_capacity(data.plays.nnz());
    for u in 0..data.plays.n_rows {
        let (items, plays) = data.plays.row(u);
        for (&i, &w) in items.iter().zip(plays) {
            rows.push(encore_models::split::Triple {
                user: u as u64,
                item: u64::from(i),
                weight: f64::from(w),
            });
        }
    }
    let (train, test) = encore_models::split::holdout(&rows, 42, 5);
    let ds = encore_models::data::Dataset::new(&train, &test);
    let model = evaluate(&ds, &args.model, args.threads, 10, out)?;
    let popularity = crate::cli::ModelArgs::defaults(crate::cli::ModelArg::Popularity);
    let baseline = evaluate(&ds, &popularity, args.threads, 10, out)?;
    Ok((model.metrics, baseline.metrics))
}

pub fn run(loaded: &encore_config::Loaded, args: &TrainArgs, out: &Output) -> Result<(), CliError> {
    let (dir, ingestor) = crate::commands::events::open(loaded)?;
    let data = match &args.train {
        Some(path) => TrainingData::from_tsv(path)?,
        None => TrainingData::from_log(&ingestor)?,
    };
    let mut report = train(dir.path(), &data, args, out)?;
    let (metrics, baseline) = if args.no_eval {
        Default::default()
    } else {
        holdout_metrics(&data, args, out)?
    };
    register(
        loaded,
        dir.path(),
        &data,
        args,
        &mut report,
        metrics,
        baseline,
    )?;
    out.emit(&report, || {
        let loss = report
            .loss
            .last()
            .map(|l| format!(", final loss {l:.5}"))
            .unwrap_or_default();
        format!(
            "trained {} on {} users x {} items ({} interactions, {}) in {:.2} s ({:.2} CPU s, {} thread(s)){loss}\nartifact {} ({} bytes, sha256 {})\nregistered {}@{}{}{}",
            report.model,
            thousands(report.users as u64),
            thousands(report.items as u64),
            thousands(report.interactions as u64),
            report.source,
            report.fit_seconds,
            report.fit_cpu_seconds,
            report.threads,
            report.artifact,
            thousands(report.artifact_bytes),
            report.checksum,
            report.name,
            report.version,
            report
                .metrics
                .get("ndcg@10")
                .map(|m| format!(
                    ", holdout ndcg@10 {m:.4} (popularity {:.4})",
                    report.baseline.get("ndcg@10").copied().unwrap_or(0.0)
                ))
                .unwrap_or_default(),
            if report.promoted.is_some() {
                ", now production"
            } else {
                ""
            },
        )
    });
    Ok(())
}

/// Registers the trained model as a new version of `args.name` with its offline metrics, and
/// moves `production` to it through the gate with `args.promote`.
pub fn register(
    loaded: &encore_config::Loaded,
    root: &std::path::Path,
    data: &TrainingData,
    args: &TrainArgs,
    report: &mut TrainReport,
    metrics: Metrics,
    baseline: Metrics,
) -> Result<(), CliError> {
    let mut registry = encore_registry::Registry::open(root)?;
    let record = encore_registry::NewVersion {
        kind: report.model.into(),
        checksum: report.checksum.clone(),
        artifact: std::fs::canonicalize(&report.artifact)
            .map_or(report.artifact.clone(), |p| p.display().to_string()),
        config: report.config.clone(),
        lineage: report.lineage.clone(),
        metrics: metrics.clone(),
        baseline: baseline.clone(),
        split: (!metrics.is_empty()).then(|| EVAL_SPLIT.to_string()),
        data: serde_json::json!({
            "source": data.source,
            "users": report.users,
            "items": report.items,
            "interactions": report.interactions,
            "time_range_ms": data.time_range_ms.map(|(a, b)| [a, b]),
        }),
        tags: args.tags.iter().cloned().collect(),
        description: args.description.clone(),
    };
    report.version = registry.register(&args.name, &record)?;
    report.name = args.name.clone();
    report.metrics = metrics;
    report.baseline = baseline;
    if args.promote {
        let actor = crate::commands::models::actor();
        let how = encore_registry::Promotion {
            alias: encore_registry::PRODUCTION,
            actor: &actor,
            reason: "encore train --promote",
            force: false,
        };
        report.promoted = Some(registry.promote(
            &args.name,
            report.version,
            &how,
            &args.gate.gate(&loaded.config.registry),
        )?);
    }
    Ok(())
}

/// Fits, then stores the artifact under `data_dir/models/artifacts/` (and at `args.out`).
pub fn train(
    data_dir: &std::path::Path,
    data: &TrainingData,
    args: &TrainArgs,
    out: &Output,
) -> Result<TrainReport, CliError> {
    let pool = pool(args.threads)?;
    let config = args.model.config();
    let bar = out.progress(config.steps() as u64, config.kind());
    let mut loss = Vec::new();
    let started_ms = now_ms();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let model = pool.install(|| {
        Model::fit(&config, &data.plays, !args.no_loss, &mut |p| {
            bar.set_position(p.step as u64);
            if let Some(l) = p.loss {
                bar.set_message(format!("{} loss {l:.5}", config.kind()));
                loss.push(l);
            }
        })
    });
    let (fit_seconds, fit_cpu_seconds) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    bar.finish_and_clear();
    let lineage = serde_json::json!({
        "snapshot_sha256": data.snapshot.get("snapshot_sha256"),
        "data": data.snapshot,
        "code_version": format!("{} ({})", env!("CARGO_PKG_VERSION"), env!("ENCORE_GIT_SHA")),
        "host": host(),
        "started_ms": started_ms,
        "finished_ms": now_ms(),
    });
    let metadata = serde_json::json!({
        "lineage": lineage,
        "source": data.source,
        "interactions": data.plays.nnz(),
        "time_range_ms": data.time_range_ms,
        "fit_seconds": fit_seconds,
        "loss": loss,
        "encore_version": env!("CARGO_PKG_VERSION"),
    });
    let artifact = Artifact {
        config: config.clone(),
        model,
        users: data.users.clone(),
        items: data.items.clone(),
        metadata,
        interactions: Some(data.plays.clone()),
        skipped: data.skipped.clone(),
    };
    let (path, checksum, artifact_bytes) =
        artifact.store(&data_dir.join("models").join("artifacts"))?;
    if let Some(extra) = &args.out {
        artifact.save(extra)?;
    }
    Ok(TrainReport {
        model: config.kind(),
        config: serde_json::to_value(&config).unwrap_or_default(),
        source: data.source.clone(),
        users: data.users.len(),
        items: data.items.len(),
        interactions: data.plays.nnz(),
        loss,
        fit_seconds,
        fit_cpu_seconds,
        threads: pool.current_num_threads(),
        lineage,
        artifact: path.display().to_string(),
        checksum,
        artifact_bytes,
        metrics: BTreeMap::new(),
        baseline: BTreeMap::new(),
        name: String::new(),
        version: 0,
        promoted: None,
    })
}

/// This machine's name, for lineage.
fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

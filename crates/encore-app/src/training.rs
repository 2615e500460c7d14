//! The training pipeline: a snapshot of the event log (or a TSV of pairs) as training data, the
//! fit, the offline evaluation on the shared holdout beside popularity, the registration with
//! lineage, and the gated move of `production`. `encore train`, `encore demo` and
//! `encore experiments simulate` run it; `encore eval` runs [`evaluate`].

use crate::AppError;
use encore_core::ErrorCode;
use encore_core::time::now_ms;
use encore_models::artifact::Artifact;
use encore_models::data::{Csr, Dataset, read_tsv};
use encore_models::metrics::ranking_metrics;
use encore_models::model::{Model, ModelConfig};
use encore_models::popularity::Popularity;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Metric name (`ndcg@10`, ...) to value.
pub type Metrics = BTreeMap<String, f64>;

/// The split train-time evaluation uses: the shared holdout rule.
pub const EVAL_SPLIT: &str = "holdout-20pct-seed42";

/// CPU seconds used by this process so far (user + system), from `/proc/self/stat`
/// (clock ticks of 1/100 s, the Linux default).
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // fields after the parenthesised command name: state is field 3, utime 14, stime 15
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A rayon pool of `threads` threads (0: one per core).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, AppError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            AppError::new(
                ErrorCode::Unavailable,
                format!("cannot start {threads} threads: {e} (try fewer threads)"),
            )
        })
}

/// Training pairs with the ids of their rows and columns.
#[derive(Debug)]
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
    pub fn from_log(ingestor: &encore_ingest::Ingestor) -> Result<TrainingData, AppError> {
        use encore_ingest::matrix::{MatrixOptions, build_matrix};
        let m = build_matrix(ingestor, MatrixOptions::default())?;
        if m.nnz() == 0 {
            return Err(AppError::new(
                ErrorCode::InvalidArgument,
                "the event log has no streams to train on (ingest events first: `encore ingest` \
                 or `encore import`, or pass --train FILE)",
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
    pub fn from_tsv(path: &Path) -> Result<TrainingData, AppError> {
        let rows = read_tsv(path).map_err(|e| AppError::of(&e))?;
        let bytes = std::fs::read(path).unwrap_or_default();
        let snapshot = serde_json::json!({
            "file": path.display().to_string(),
            "snapshot_sha256": sha256_hex(&bytes),
        });
        let ds = Dataset::new(&rows, &[]);
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

    /// The shared holdout split of these pairs (seed 42, 20 %, listeners with 5 items or more).
    pub fn holdout(&self) -> Dataset {
        let mut rows = Vec::with_capacity(self.plays.nnz());
        for u in 0..self.plays.n_rows {
            let (items, plays) = self.plays.row(u);
            for (&i, &w) in items.iter().zip(plays) {
                rows.push(encore_models::split::Triple {
                    user: u as u64,
                    item: u64::from(i),
                    weight: f64::from(w),
                });
            }
        }
        let (train, test) = encore_models::split::holdout(&rows, 42, 5);
        Dataset::new(&train, &test)
    }
}

/// The event log's stream counts as a dataset: users and items numbered in order of appearance,
/// split by the shared holdout rule (seed 42, 20 %, users with at least 5 items).
pub fn dataset_from_log(ingestor: &encore_ingest::Ingestor) -> Result<Dataset, AppError> {
    let m = encore_ingest::matrix::build_matrix(
        ingestor,
        encore_ingest::matrix::MatrixOptions::default(),
    )?;
    let mut rows = Vec::with_capacity(m.nnz());
    for u in 0..m.users.len() {
        for (i, plays) in m.row(u) {
            rows.push(encore_models::split::Triple {
                user: u as u64,
                item: u64::from(i),
                weight: f64::from(plays),
            });
        }
    }
    let (train, test) = encore_models::split::holdout(&rows, 42, 5);
    Ok(Dataset::new(&train, &test))
}

/// The time-based split of the event log: streams of the last `days` days (before the newest
/// stream) are the test period; a listener's test items are the tracks they first streamed then,
/// and training counts only plays from before it.
pub fn dataset_by_time(ingestor: &encore_ingest::Ingestor, days: u32) -> Result<Dataset, AppError> {
    use encore_ingest::matrix::{MatrixOptions, build_matrix};
    let full = build_matrix(ingestor, MatrixOptions::default())?;
    let newest = full.last_ts_ms.iter().copied().max().unwrap_or(0);
    let cutoff = newest - i64::from(days) * encore_core::time::MS_PER_DAY;
    let before = build_matrix(
        ingestor,
        MatrixOptions {
            until_ms: Some(cutoff),
            ..MatrixOptions::default()
        },
    )?;
    let index = |names: &[String]| -> std::collections::HashMap<String, u64> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u64))
            .collect()
    };
    let (users, items) = (index(&full.users), index(&full.items));
    let mut train = Vec::with_capacity(before.nnz());
    for u in 0..before.users.len() {
        for (i, plays) in before.row(u) {
            train.push(encore_models::split::Triple {
                user: users[&before.users[u]],
                item: items[&before.items[i as usize]],
                weight: f64::from(plays),
            });
        }
    }
    // listeners new in the test period have nothing to learn from: not evaluated here
    let known: std::collections::HashSet<u64> = train.iter().map(|t| t.user).collect();
    let mut test = Vec::new();
    for u in (0..full.users.len()).filter(|u| known.contains(&(*u as u64))) {
        let (a, b) = (full.indptr[u] as usize, full.indptr[u + 1] as usize);
        for k in a..b {
            if full.first_ts_ms[k] >= cutoff {
                test.push(encore_models::split::Triple {
                    user: u as u64,
                    item: u64::from(full.indices[k]),
                    weight: 1.0,
                });
            }
        }
    }
    Ok(Dataset::new(&train, &test))
}

/// What an offline evaluation measured.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub model: &'static str,
    pub config: serde_json::Value,
    pub metrics: Metrics,
    pub fit_seconds: f64,
    pub fit_cpu_seconds: f64,
    pub recommend_seconds: f64,
    pub recommend_cpu_seconds: f64,
    pub users_evaluated: usize,
    pub users: usize,
    pub items: usize,
    pub threads: usize,
}

impl EvalReport {
    pub fn ndcg(&self) -> f64 {
        self.metrics
            .iter()
            .find(|(k, _)| k.starts_with("ndcg@"))
            .map_or(0.0, |(_, v)| *v)
    }
}

/// Fits `config` on `ds.train` and scores it on `ds.test` (timings only when the test set is
/// empty); `progress(step)` follows the fit.
pub fn evaluate(
    ds: &Dataset,
    config: &ModelConfig,
    threads: usize,
    k: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<EvalReport, AppError> {
    let pool = pool(threads)?;
    let (model, fit_s, fit_cpu, recs, rec_s, rec_cpu) = pool.install(|| {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let model = Model::fit(config, &ds.train, false, &mut |p| progress(p.step as u64));
        let (fit_s, fit_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let (t1, c1) = (Instant::now(), cpu_seconds());
        let recs = model.recommend_all(&ds.train, k);
        let (rec_s, rec_cpu) = (t1.elapsed().as_secs_f64(), cpu_seconds() - c1);
        (model, fit_s, fit_cpu, recs, rec_s, rec_cpu)
    });
    let test_rows: Vec<&[u32]> = (0..ds.users.len()).map(|u| ds.test.row(u).0).collect();
    let m = ranking_metrics(&recs, &test_rows, k, ds.items.len());
    let mut metrics = BTreeMap::new();
    if m.users > 0 {
        let popularity = Popularity::fit(&ds.train).counts;
        let vectors = model.item_vectors();
        let list = encore_models::metrics::list_metrics(&recs, &popularity, ds.users.len(), |i| {
            vectors.map_or(&[][..], |(v, w)| &v[i as usize * w..(i as usize + 1) * w])
        });
        metrics = m.named(k);
        metrics.insert(format!("novelty@{k}"), list.novelty);
        metrics.insert(format!("average_popularity@{k}"), list.average_popularity);
        if vectors.is_some() {
            metrics.insert(
                format!("intra_list_diversity@{k}"),
                list.intra_list_diversity,
            );
        }
    }
    Ok(EvalReport {
        model: model.kind(),
        config: serde_json::to_value(config).unwrap_or_default(),
        metrics,
        fit_seconds: fit_s,
        fit_cpu_seconds: fit_cpu,
        recommend_seconds: rec_s,
        recommend_cpu_seconds: rec_cpu,
        users_evaluated: m.users,
        users: ds.users.len(),
        items: ds.items.len(),
        threads: pool.current_num_threads(),
    })
}

/// How to train and register.
#[derive(Debug, Clone)]
pub struct Training {
    pub config: ModelConfig,
    /// 0: one per core
    pub threads: usize,
    /// compute the training loss after each iteration
    pub loss: bool,
    /// also save the artifact here
    pub out: Option<PathBuf>,
    /// the registered model's name
    pub name: String,
    /// evaluate on the holdout beside popularity before registering
    pub evaluate: bool,
    /// move `production` to the new version through `gate`
    pub promote: bool,
    pub gate: encore_registry::Gate,
    /// who promotes (recorded in the alias history)
    pub actor: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    /// `VERSION (GIT SHA)` of the build, for lineage
    pub code_version: String,
}

#[derive(Debug, Serialize)]
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
    /// offline metrics on the holdout split (empty without evaluation)
    pub metrics: Metrics,
    /// popularity's metrics on the same split
    pub baseline: Metrics,
    pub name: String,
    pub version: u32,
    /// the production move, when promoted
    pub promoted: Option<encore_registry::AliasMove>,
}

/// What the pipeline reports as it goes.
pub trait Progress: Sync {
    /// a stage starts: `steps` to go (`fit`, `evaluate`, `baseline`)
    fn stage(&self, name: &str, steps: u64);
    fn step(&self, step: u64, loss: Option<f64>);
    fn done(&self);
}

/// No progress reported.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn stage(&self, _: &str, _: u64) {}
    fn step(&self, _: u64, _: Option<f64>) {}
    fn done(&self) {}
}

/// The whole pipeline on `data`: fit, evaluate (unless told not to), register in the data
/// directory `root`, promote (when told to, through the gate).
pub fn train_and_register(
    root: &Path,
    data: &TrainingData,
    t: &Training,
    progress: &dyn Progress,
) -> Result<TrainReport, AppError> {
    let mut report = fit(root, data, t, progress)?;
    let (metrics, baseline) = if t.evaluate {
        holdout_metrics(data, t, progress)?
    } else {
        Default::default()
    };
    register(root, data, t, &mut report, metrics, baseline)?;
    Ok(report)
}

/// Metrics of `t`'s model and of popularity on the holdout split of `data`.
pub fn holdout_metrics(
    data: &TrainingData,
    t: &Training,
    progress: &dyn Progress,
) -> Result<(Metrics, Metrics), AppError> {
    let ds = data.holdout();
    let run = |config: &ModelConfig, stage: &str| {
        progress.stage(stage, config.steps() as u64);
        let r = evaluate(&ds, config, t.threads, 10, &|s| progress.step(s, None));
        progress.done();
        r
    };
    let model = run(&t.config, "evaluate")?;
    let baseline = run(&ModelConfig::Popularity(Default::default()), "baseline")?;
    Ok((model.metrics, baseline.metrics))
}

/// Fits, then stores the artifact in the registry's object store (and at `t.out`).
pub fn fit(
    root: &Path,
    data: &TrainingData,
    t: &Training,
    progress: &dyn Progress,
) -> Result<TrainReport, AppError> {
    let pool = pool(t.threads)?;
    let config = &t.config;
    progress.stage("fit", config.steps() as u64);
    let loss = std::sync::Mutex::new(Vec::new());
    let started_ms = now_ms();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let model = pool.install(|| {
        Model::fit(config, &data.plays, t.loss, &mut |p| {
            progress.step(p.step as u64, p.loss);
            if let Some(l) = p.loss {
                loss.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            }
        })
    });
    let (fit_seconds, fit_cpu_seconds) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    progress.done();
    let loss = loss.into_inner().unwrap_or_else(|e| e.into_inner());
    let lineage = serde_json::json!({
        "snapshot_sha256": data.snapshot.get("snapshot_sha256"),
        "data": data.snapshot,
        "code_version": t.code_version,
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
    let stored = encore_registry::Registry::open(root)?.store_artifact(&artifact)?;
    if let Some(extra) = &t.out {
        artifact.save(extra)?;
    }
    Ok(TrainReport {
        model: config.kind(),
        config: serde_json::to_value(config).unwrap_or_default(),
        source: data.source.clone(),
        users: data.users.len(),
        items: data.items.len(),
        interactions: data.plays.nnz(),
        loss,
        fit_seconds,
        fit_cpu_seconds,
        threads: pool.current_num_threads(),
        lineage,
        artifact: stored.key,
        checksum: stored.checksum,
        artifact_bytes: stored.bytes,
        metrics: BTreeMap::new(),
        baseline: BTreeMap::new(),
        name: String::new(),
        version: 0,
        promoted: None,
    })
}

/// Registers the trained model as a new version of `t.name` with its offline metrics, and
/// moves `production` to it through the gate when `t.promote`.
pub fn register(
    root: &Path,
    data: &TrainingData,
    t: &Training,
    report: &mut TrainReport,
    metrics: Metrics,
    baseline: Metrics,
) -> Result<(), AppError> {
    let mut registry = encore_registry::Registry::open(root)?;
    let record = encore_registry::NewVersion {
        kind: report.model.into(),
        checksum: report.checksum.clone(),
        artifact: report.artifact.clone(),
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
        tags: t.tags.clone(),
        description: t.description.clone(),
    };
    report.version = registry.register(&t.name, &record)?;
    report.name = t.name.clone();
    report.metrics = metrics;
    report.baseline = baseline;
    if t.promote {
        let how = encore_registry::Promotion {
            alias: encore_registry::PRODUCTION,
            actor: &t.actor,
            reason: "encore train --promote",
            force: false,
        };
        report.promoted = Some(registry.promote(&t.name, report.version, &how, &t.gate)?);
    }
    Ok(())
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

//! `encore train`: fit a model on the event log (or a TSV of pairs), with a progress bar and the
//! training loss per iteration, and store it as a checksummed model artifact in the data
//! directory (`models/artifacts/<sha256>.encore`).

use crate::cli::TrainArgs;
use crate::commands::eval::{cpu_seconds, pool};
use crate::error::CliError;
use crate::output::{Output, thousands};
use encore_models::artifact::Artifact;
use encore_models::data::{Csr, read_tsv};
use encore_models::model::Model;
use serde::Serialize;
use std::time::Instant;

/// Training pairs with the ids of their rows and columns.
pub struct TrainingData {
    pub plays: Csr,
    pub users: Vec<String>,
    pub items: Vec<String>,
    /// where they came from: `event-log` or the TSV's path
    pub source: String,
    /// first and last play (epoch ms), for the event log
    pub time_range_ms: Option<(i64, i64)>,
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
        let first = m.first_ts_ms.iter().copied().min().unwrap_or(0);
        let last = m.last_ts_ms.iter().copied().max().unwrap_or(0);
        Ok(TrainingData {
            plays,
            users: m.users,
            items: m.items,
            source: "event-log".into(),
            time_range_ms: Some((first, last)),
        })
    }

    /// A TSV of `user<TAB>item<TAB>weight` (the shared split format).
    pub fn from_tsv(path: &std::path::Path) -> Result<TrainingData, CliError> {
        let rows = read_tsv(path)?;
        let ds = encore_models::data::Dataset::new(&rows, &[]);
        Ok(TrainingData {
            plays: ds.train,
            users: ds.users.iter().map(u64::to_string).collect(),
            items: ds.items.iter().map(u64::to_string).collect(),
            source: path.display().to_string(),
            time_range_ms: None,
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
    pub artifact: String,
    pub checksum: String,
    pub artifact_bytes: u64,
}

pub fn run(loaded: &encore_config::Loaded, args: &TrainArgs, out: &Output) -> Result<(), CliError> {
    let (dir, ingestor) = crate::commands::events::open(loaded)?;
    let data = match &args.train {
        Some(path) => TrainingData::from_tsv(path)?,
        None => TrainingData::from_log(&ingestor)?,
    };
    let report = train(dir.path(), &data, args, out)?;
    out.emit(&report, || {
        let loss = report
            .loss
            .last()
            .map(|l| format!(", final loss {l:.5}"))
            .unwrap_or_default();
        format!(
            "trained {} on {} users x {} items ({} interactions, {}) in {:.2} s ({:.2} CPU s, {} thread(s)){loss}\nartifact {} ({} bytes, sha256 {})",
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
        )
    });
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
    let metadata = serde_json::json!({
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
        artifact: path.display().to_string(),
        checksum,
        artifact_bytes,
    })
}

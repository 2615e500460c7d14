//! `encore train`: fit a model on the event log (or a TSV of pairs), with a progress bar and the
//! training loss per iteration, evaluate it beside popularity, register it with its lineage and,
//! with `--promote`, move `production` to it through the gate (`encore_app::training`).

use crate::cli::TrainArgs;
use crate::error::CliError;
use crate::output::{Output, thousands};
use encore_app::training::{self, Progress, TrainingData};

/// Progress bars of the pipeline's stages on the terminal (hidden with `--json`).
pub struct Bars<'a> {
    out: &'a Output,
    bar: std::sync::Mutex<Option<(indicatif::ProgressBar, String)>>,
}

impl<'a> Bars<'a> {
    pub fn new(out: &'a Output) -> Bars<'a> {
        Bars {
            out,
            bar: std::sync::Mutex::default(),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Option<(indicatif::ProgressBar, String)>)) {
        f(&mut self.bar.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl Progress for Bars<'_> {
    fn stage(&self, name: &str, steps: u64) {
        let bar = self.out.progress(steps, name);
        self.with(|b| *b = Some((bar, name.to_owned())));
    }

    fn step(&self, step: u64, loss: Option<f64>) {
        self.with(|b| {
            if let Some((bar, name)) = b {
                bar.set_position(step);
                if let Some(l) = loss {
                    bar.set_message(format!("{name} loss {l:.5}"));
                }
            }
        });
    }

    fn done(&self) {
        self.with(|b| {
            if let Some((bar, _)) = b.take() {
                bar.finish_and_clear();
            }
        });
    }
}

/// `args` as the pipeline's settings.
pub fn settings(loaded: &encore_config::Loaded, args: &TrainArgs) -> training::Training {
    training::Training {
        config: args.model.config(),
        threads: args.threads,
        loss: !args.no_loss,
        out: args.out.clone(),
        name: args.name.clone(),
        evaluate: !args.no_eval,
        promote: args.promote,
        gate: args.gate.gate(&loaded.config.registry),
        actor: crate::commands::models::actor(),
        description: args.description.clone(),
        tags: args.tags.iter().cloned().collect(),
        code_version: format!("{} ({})", env!("CARGO_PKG_VERSION"), env!("ENCORE_GIT_SHA")),
    }
}

pub fn run(loaded: &encore_config::Loaded, args: &TrainArgs, out: &Output) -> Result<(), CliError> {
    let (dir, ingestor) = crate::commands::events::open(loaded)?;
    let data = match &args.train {
        Some(path) => TrainingData::from_tsv(path)?,
        None => TrainingData::from_log(&ingestor)?,
    };
    let t = settings(loaded, args);
    let report = training::train_and_register(dir.path(), &data, &t, &Bars::new(out))?;
    // what this version was trained on, for monitors that compare with it
    if let Some(range) = data.time_range_ms {
        let saved = encore_app::monitors::MonitorStore::open(dir.path()).and_then(|store| {
            encore_app::monitors::save_reference(
                &store,
                &ingestor,
                &encore_app::node::node_name(&loaded.config, dir.path()),
                &report.name,
                report.version,
                range,
            )
        });
        if let Err(e) = saved {
            tracing::warn!(
                "the training profile of {}@{} was not saved: {e}",
                report.name,
                report.version
            );
        }
    }
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

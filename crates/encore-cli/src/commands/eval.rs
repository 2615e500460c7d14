//! `encore eval`: fit a model on a train split, recommend top-k for every user (training items
//! excluded), and report the ranking metrics of the shared benchmark protocol with timings.

use crate::cli::{EvalArgs, ModelArgs};
use crate::error::CliError;
use crate::output::Output;
use encore_app::training::{self, EvalReport, dataset_by_time, dataset_from_log};
use encore_models::data::{Dataset, read_tsv};

pub fn run(loaded: &encore_config::Loaded, args: &EvalArgs, out: &Output) -> Result<(), CliError> {
    let ds = match (&args.train, &args.test) {
        (Some(train), Some(test)) => Dataset::new(&read_tsv(train)?, &read_tsv(test)?),
        (Some(train), None) => Dataset::new(&read_tsv(train)?, &[]),
        _ => {
            let (_dir, ingestor) = crate::commands::events::open(loaded)?;
            match args.test_days {
                Some(days) => dataset_by_time(&ingestor, days)?,
                None => dataset_from_log(&ingestor)?,
            }
        }
    };
    let report = evaluate(&ds, &args.model, args.threads, args.k, out)?;
    out.emit(&report, || text(&report));
    Ok(())
}

/// Fits the model of `args` on `ds.train` and scores it on `ds.test`, with a progress bar.
pub fn evaluate(
    ds: &Dataset,
    args: &ModelArgs,
    threads: usize,
    k: usize,
    out: &Output,
) -> Result<EvalReport, CliError> {
    let config = args.config();
    let bar = out.progress(config.steps() as u64, config.kind());
    let report = training::evaluate(ds, &config, threads, k, &|s| bar.set_position(s));
    bar.finish_and_clear();
    Ok(report?)
}

/// The report as text.
pub fn text(report: &EvalReport) -> String {
    let metrics: Vec<String> = report
        .metrics
        .iter()
        .map(|(n, v)| format!("{n} {v:.4}"))
        .collect();
    format!(
        "{}: {}\nfit {:.2} s ({:.2} CPU s), recommend {:.2} s for {} users x {} items, {} evaluated, {} thread(s)",
        report.model,
        metrics.join(", "),
        report.fit_seconds,
        report.fit_cpu_seconds,
        report.recommend_seconds,
        report.users,
        report.items,
        report.users_evaluated,
        report.threads
    )
}

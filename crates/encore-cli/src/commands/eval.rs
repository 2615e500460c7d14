//! `encore eval`: fit a model on a train split, recommend top-k for every user (training items
//! excluded), and report the ranking metrics of the shared benchmark protocol with timings.

use crate::cli::{EvalArgs, ModelArgs};
use crate::error::CliError;
use crate::output::Output;
use encore_models::data::{Dataset, read_tsv};
use encore_models::metrics::ranking_metrics;
use encore_models::model::Model;
use encore_models::popularity::Popularity;

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Serialize)]
pub struct EvalReport {
    pub model: &'static str,
    pub config: serde_json::Value,
    pub metrics: BTreeMap<String, f64>,
    pub fit_seconds: f64,
    pub fit_cpu_seconds: f64,
    pub recommend_seconds: f64,
    pub recommend_cpu_seconds: f64,
    pub users_evaluated: usize,
    pub users: usize,
    pub items: usize,
    pub threads: usize,
}

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

/// The event log's stream counts as a dataset: users and items numbered in order of appearance,
/// split by the shared holdout rule (seed 42, 20 %, users with at least 5 items).
pub fn dataset_from_log(ingestor: &encore_ingest::Ingestor) -> Result<Dataset, CliError> {
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
pub fn dataset_by_time(ingestor: &encore_ingest::Ingestor, days: u32) -> Result<Dataset, CliError> {
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
    out.emit(&report, || report.text());
    Ok(())
}

/// A rayon pool of `threads` threads (0: one per core).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, CliError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            CliError::failed(
                format!("cannot start {threads} threads: {e}"),
                "try --threads 1",
            )
        })
}

/// Fits the model of `args` on `ds.train` and scores it on `ds.test` (timings only when the
/// test set is empty).
pub fn evaluate(
    ds: &Dataset,
    args: &ModelArgs,
    threads: usize,
    k: usize,
    out: &Output,
) -> Result<EvalReport, CliError> {
    let pool = pool(threads)?;
    let config = args.config();
    let bar = out.progress(config.steps() as u64, config.kind());
    let (model, fit_s, fit_cpu, recs, rec_s, rec_cpu) = pool.install(|| {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let model = Model::fit(&config, &ds.train, false, &mut |p| {
            bar.set_position(p.step as u64)
        });
        let (fit_s, fit_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let (t1, c1) = (Instant::now(), cpu_seconds());
        let recs = model.recommend_all(&ds.train, k);
        let (rec_s, rec_cpu) = (t1.elapsed().as_secs_f64(), cpu_seconds() - c1);
        (model, fit_s, fit_cpu, recs, rec_s, rec_cpu)
    });
    bar.finish_and_clear();
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
        config: serde_json::to_value(&config).unwrap_or_default(),
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

impl EvalReport {
    pub fn ndcg(&self) -> f64 {
        self.metrics
            .iter()
            .find(|(k, _)| k.starts_with("ndcg@"))
            .map_or(0.0, |(_, v)| *v)
    }

    pub fn text(&self) -> String {
        let report = self;
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
}

//! `encore eval`: fit a model on a train split, recommend top-k for every user (training items
//! excluded), and report the ranking metrics of the shared benchmark protocol with timings.

use crate::cli::{EvalArgs, ModelArg};
use crate::error::CliError;
use crate::output::Output;
use encore_models::als::{AlsConfig, AlsModel};
use encore_models::data::{Dataset, read_tsv};
use encore_models::metrics::ranking_metrics;
use encore_models::popularity::Popularity;

use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Serialize)]
pub struct EvalReport {
    pub model: &'static str,
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
fn cpu_seconds() -> f64 {
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
        _ => {
            let (_dir, ingestor) = crate::commands::events::open(loaded)?;
            match args.test_days {
                Some(days) => dataset_by_time(&ingestor, days)?,
                None => dataset_from_log(&ingestor)?,
            }
        }
    };
    let report = evaluate(&ds, args, out)?;
    out.emit(&report, || report.text());
    Ok(())
}

/// Top-k lists of every user, in parallel; `rec(user, scratch)` gets a scores buffer per thread.
fn recommend_all(
    ds: &Dataset,
    rec: impl Fn(usize, &mut [f32]) -> Vec<u32> + Sync,
) -> Vec<Vec<u32>> {
    (0..ds.users.len())
        .into_par_iter()
        .map_init(|| vec![0f32; ds.items.len()], |scores, u| rec(u, scores))
        .collect()
}

/// Top-k lists of a latent-factor model (row-major factors of `width`), training items excluded.
fn factor_recommendations(
    ds: &Dataset,
    users: &[f32],
    items: &[f32],
    width: usize,
    k: usize,
) -> Vec<Vec<u32>> {
    let tiles = encore_models::als::ItemTiles::new(items, width);
    recommend_all(ds, |u, scores| {
        tiles.scores(&users[u * width..(u + 1) * width], scores);
        encore_models::recommend::top_k_masked(scores, ds.train.row(u).0, k)
    })
}

/// Fits `args.model` on `ds.train` and scores it on `ds.test`.
pub fn evaluate(ds: &Dataset, args: &EvalArgs, out: &Output) -> Result<EvalReport, CliError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .map_err(|e| {
            CliError::failed(
                format!("cannot start {} threads: {e}", args.threads),
                "try --threads 1",
            )
        })?;
    let threads = pool.current_num_threads();
    let k = args.k;
    let (name, fit_s, fit_cpu, recs, rec_s, rec_cpu, vectors) = pool.install(|| {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        match args.model {
            ModelArg::Popularity => {
                let model = Popularity::fit(&ds.train);
                let (fit_s, fit_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
                let (t1, c1) = (Instant::now(), cpu_seconds());
                let recs: Vec<Vec<u32>> = (0..ds.users.len())
                    .into_par_iter()
                    .map(|u| model.recommend(&ds.train, u, k))
                    .collect();
                (
                    "popularity",
                    fit_s,
                    fit_cpu,
                    recs,
                    t1.elapsed().as_secs_f64(),
                    cpu_seconds() - c1,
                    None,
                )
            }
            ModelArg::Bpr => {
                let config = encore_models::bpr::BprConfig {
                    factors: args.factors,
                    epochs: args.epochs,
                    learning_rate: args.learning_rate,
                    regularization: args.regularization,
                    seed: args.seed,
                };
                let bar = out.progress(args.epochs as u64, "bpr");
                let model = encore_models::bpr::BprModel::fit(&ds.train, &config, &mut |i| {
                    bar.set_position(i as u64 + 1)
                });
                bar.finish_and_clear();
                let (fit_s, fit_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
                let (t1, c1) = (Instant::now(), cpu_seconds());
                let recs = factor_recommendations(
                    ds,
                    &model.user_factors,
                    &model.item_factors,
                    model.width,
                    k,
                );
                (
                    "bpr",
                    fit_s,
                    fit_cpu,
                    recs,
                    t1.elapsed().as_secs_f64(),
                    cpu_seconds() - c1,
                    Some((model.item_factors.clone(), model.width)),
                )
            }
            ModelArg::Itemknn => {
                let alpha = args.alpha;
                let conf = ds.train.map_values(|w| 1.0 + alpha * w.ln_1p());
                let model = encore_models::itemknn::ItemKnn::fit(&conf, args.neighbors);
                let (fit_s, fit_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
                let (t1, c1) = (Instant::now(), cpu_seconds());
                let recs = recommend_all(ds, |u, scores| model.recommend(&conf, u, k, scores));
                (
                    "itemknn",
                    fit_s,
                    fit_cpu,
                    recs,
                    t1.elapsed().as_secs_f64(),
                    cpu_seconds() - c1,
                    None,
                )
            }
            ModelArg::Als => {
                let alpha = args.alpha;
                let conf = ds.train.map_values(|w| 1.0 + alpha * w.ln_1p());
                let config = AlsConfig {
                    factors: args.factors,
                    iterations: args.iterations,
                    regularization: args.regularization,
                    cg_steps: args.cg_steps,
                    seed: args.seed,
                    exact: args.exact,
                };
                let bar = out.progress(args.iterations as u64, "als");
                let model = AlsModel::fit(&conf, &config, &mut |i| bar.set_position(i as u64 + 1));
                bar.finish_and_clear();
                let (fit_s, fit_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
                let (t1, c1) = (Instant::now(), cpu_seconds());
                let recs = factor_recommendations(
                    ds,
                    &model.user_factors,
                    &model.item_factors,
                    model.factors,
                    k,
                );
                (
                    "als",
                    fit_s,
                    fit_cpu,
                    recs,
                    t1.elapsed().as_secs_f64(),
                    cpu_seconds() - c1,
                    Some((model.item_factors.clone(), model.factors)),
                )
            }
        }
    });
    let test_rows: Vec<&[u32]> = (0..ds.users.len()).map(|u| ds.test.row(u).0).collect();
    let m = ranking_metrics(&recs, &test_rows, k, ds.items.len());
    let popularity = Popularity::fit(&ds.train).counts;
    let empty: &[f32] = &[];
    let list = match &vectors {
        Some((v, w)) => {
            encore_models::metrics::list_metrics(&recs, &popularity, ds.users.len(), |i| {
                &v[i as usize * w..(i as usize + 1) * w]
            })
        }
        None => encore_models::metrics::list_metrics(&recs, &popularity, ds.users.len(), |_| empty),
    };
    let mut metrics = m.named(k);
    metrics.insert(format!("novelty@{k}"), list.novelty);
    metrics.insert(format!("average_popularity@{k}"), list.average_popularity);
    if vectors.is_some() {
        metrics.insert(
            format!("intra_list_diversity@{k}"),
            list.intra_list_diversity,
        );
    }
    let report = EvalReport {
        model: name,
        metrics,
        fit_seconds: fit_s,
        fit_cpu_seconds: fit_cpu,
        recommend_seconds: rec_s,
        recommend_cpu_seconds: rec_cpu,
        users_evaluated: m.users,
        users: ds.users.len(),
        items: ds.items.len(),
        threads,
    };
    Ok(report)
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

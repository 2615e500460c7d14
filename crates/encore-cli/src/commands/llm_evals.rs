//! `encore evals`, `encore datasets` and `encore alerts`: evaluation of LLM features on the data
//! directory (the server's REST API under `/v1/evals`, `/v1/datasets`, `/v1/queues` and
//! `/v1/alerts` does the same while it runs).

use crate::cli::{
    AlertsCommand, DatasetsCommand, EvalsCommand, QueueCommand, RulesCommand, ScoreFilterArgs,
    TraceQueryArgs,
};
use crate::error::CliError;
use crate::output::Output;
use encore_evals::Sample;
use encore_evals::alerts::AlertRule;
use encore_evals::online::Rule;
use encore_evals::ops;
use encore_evals::spec::{Context, EvaluatorSpec};
use encore_evals::store::{EvalStore, LabelSchema, Queue, ScoreFilter};
use std::sync::Mutex;

/// A JSON argument, or `@FILE` holding it.
fn json_arg<T: serde::de::DeserializeOwned>(arg: &str, what: &str) -> Result<T, CliError> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| {
                CliError::usage(format!("cannot read {path}: {e}"), "check the path")
            })?,
            path.to_owned(),
        ),
        None => (arg.to_owned(), "the argument".to_owned()),
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(
            format!("{what} in {origin}: {e}"),
            format!("see `encore {what} --help` for the fields"),
        )
    })
}

/// `NAME` or `NAME@VERSION`.
fn dataset_ref(arg: &str) -> Result<(String, Option<u32>), CliError> {
    match arg.split_once('@') {
        None => Ok((arg.to_owned(), None)),
        Some((name, v)) => v.parse().map(|v| (name.to_owned(), Some(v))).map_err(|_| {
            CliError::usage(
                format!("dataset {arg:?}: the version after '@' is not a number"),
                "write NAME or NAME@VERSION, e.g. golden@2",
            )
        }),
    }
}

fn specs(args: &[String]) -> Result<Vec<EvaluatorSpec>, CliError> {
    args.iter()
        .map(|a| {
            EvaluatorSpec::parse(a)
                .map_err(|e| CliError::usage(e, "see `encore evals score --help`"))
        })
        .collect()
}

impl ScoreFilterArgs {
    fn filter(&self) -> ScoreFilter {
        let a = self.clone();
        ScoreFilter {
            project: a.project,
            trace_id: a.trace_id,
            span_id: a.span_id,
            evaluator: a.evaluator,
            source: a.source,
            service: a.service,
            model: a.model,
            from_ms: a.from_ms,
            to_ms: a.to_ms,
        }
    }
}

impl TraceQueryArgs {
    fn query(&self) -> ops::TraceQuery {
        let a = self.clone();
        ops::TraceQuery {
            project: a.project,
            service: a.service,
            operation: a.operation,
            model: a.model,
            status: a.status,
            from_ms: a.from_ms,
            to_ms: a.to_ms,
            text: a.text,
            limit: a.limit.unwrap_or(100),
        }
    }
}

/// The data directory's evals store, trace store and evaluator context.
struct Opened {
    _dir: encore_storage::DataDir,
    store: Mutex<EvalStore>,
    spans: encore_telemetry::SpanStore,
    ctx: Context,
}

fn open(loaded: &encore_config::Loaded, with_catalog: bool) -> Result<Opened, CliError> {
    let dir = encore_storage::DataDir::open(&loaded.config.data.dir)?;
    let catalog = if with_catalog {
        let catalog = encore_ingest::catalog::CatalogStore::open(&dir.path().join("catalog"))?;
        encore_app::setup::catalog_index(&encore_app::setup::catalog_items(&catalog))
    } else {
        None
    };
    Ok(Opened {
        store: Mutex::new(EvalStore::open(dir.path())?),
        spans: encore_telemetry::SpanStore::open(dir.path(), Default::default())?,
        ctx: encore_app::setup::eval_context(&loaded.config, catalog, None)?,
        _dir: dir,
    })
}

fn lock(o: &Opened) -> std::sync::MutexGuard<'_, EvalStore> {
    o.store.lock().unwrap_or_else(|e| e.into_inner())
}

fn pct((lo, hi): (f64, f64)) -> String {
    format!("[{:.1}, {:.1}] %", 100.0 * lo, 100.0 * hi)
}

pub fn evals(
    loaded: &encore_config::Loaded,
    cmd: EvalsCommand,
    out: &Output,
) -> Result<(), CliError> {
    let needs_catalog = matches!(
        &cmd,
        EvalsCommand::Score { .. } | EvalsCommand::Run { .. } | EvalsCommand::Rules(_)
    );
    let o = open(loaded, needs_catalog)?;
    match cmd {
        EvalsCommand::Score {
            evaluators,
            input,
            output,
            expected,
            context,
        } => {
            let sample = Sample {
                input: &input,
                output: &output,
                expected: expected.as_deref(),
                context: context.as_deref(),
            };
            let mut results = Vec::new();
            for spec in specs(&evaluators)? {
                let e = spec.build(&o.ctx).map_err(|e| {
                    CliError::usage(e.to_string(), "see `encore evals score --help`")
                })?;
                results.push(match e.evaluate(&sample) {
                    Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                    Err(err) => {
                        serde_json::json!({"evaluator": e.name(), "error": err.to_string()})
                    }
                });
            }
            out.emit(&results, || {
                results
                    .iter()
                    .map(|r| {
                        format!(
                            "{:<22} {}  {}\n",
                            r["evaluator"].as_str().unwrap_or(""),
                            r.get("value")
                                .and_then(|v| v.as_f64())
                                .map_or("error".to_owned(), |v| format!("{v:.3}")),
                            r.get("explanation")
                                .or_else(|| r.get("error"))
                                .and_then(|v| v.as_str())
                                .unwrap_or("")
                        )
                    })
                    .collect()
            });
        }
        EvalsCommand::Scores { filter, limit } => {
            let rows = lock(&o).scores(&filter.filter(), limit.max(1))?;
            out.emit(&rows, || {
                let mut t = String::new();
                for r in &rows {
                    t.push_str(&format!(
                        "{} {}  {:<22} {:.3} {:<14} {}\n",
                        r.target.trace_id,
                        r.target.span_id,
                        r.score.evaluator,
                        r.score.value,
                        r.score.label.as_deref().unwrap_or("-"),
                        r.source
                    ));
                }
                if rows.is_empty() {
                    t.push_str("no scores match\n");
                }
                t
            });
        }
        EvalsCommand::Quality { filter, slice } => {
            let slice = slice
                .map(|s| {
                    serde_json::from_value(serde_json::Value::String(s.clone())).map_err(|_| {
                        CliError::usage(
                            format!("--slice {s:?} is not a slice"),
                            "use service, model or user",
                        )
                    })
                })
                .transpose()?;
            let rows = lock(&o).scores(&filter.filter(), 10_000_000)?;
            let q = encore_evals::quality::quality(&rows, slice);
            out.emit(&q, || {
                let mut t = format!(
                    "{:<22} {:<16} {:>7} {:>6} {:>8} {:>18} {:>12} {:>10}\n",
                    "evaluator",
                    "slice",
                    "n",
                    "mean",
                    "fail",
                    "fail 95 % CI",
                    "cost/item",
                    "ms/item"
                );
                for r in &q {
                    t.push_str(&format!(
                        "{:<22} {:<16} {:>7} {:>6.3} {:>7.1}% {:>18} {:>12} {:>10}\n",
                        r.evaluator,
                        r.slice.as_deref().unwrap_or("-"),
                        r.n,
                        r.mean,
                        100.0 * r.fail_rate,
                        pct(r.fail_ci),
                        r.cost_per_item_usd
                            .map_or("-".into(), |c| format!("${c:.6}")),
                        r.latency_ms_per_item
                            .map_or("-".into(), |l| format!("{l:.0}")),
                    ));
                }
                t
            });
        }
        EvalsCommand::Calibration { judge, human, bins } => {
            let rows = lock(&o).scores(&ScoreFilter::default(), 10_000_000)?;
            let c = encore_evals::quality::calibrate(&rows, &judge, &human, bins);
            out.emit(&c, || {
                let r = &c.report;
                let mut t = format!(
                    "{judge} against {human}: {} spans labelled by both\n\
                     agreement {:.3}  kappa {:.3}  precision {:.3}  recall {:.3}  Brier {:.4}  ECE {:.4}\n",
                    c.pairs, r.agreement, r.kappa, r.precision, r.recall, r.brier, r.ece
                );
                for b in &r.reliability {
                    t.push_str(&format!(
                        "  [{:.1}, {:.1})  n {:>6}  predicted {:.3}  observed {:.3}\n",
                        b.lo, b.hi, b.count, b.mean_predicted, b.observed_rate
                    ));
                }
                t
            });
        }
        EvalsCommand::Rules(cmd) => match cmd {
            RulesCommand::List => {
                let rules: Vec<Rule> = lock(&o).documents(ops::RULE)?;
                out.emit(&rules, || {
                    rules
                        .iter()
                        .map(|r| {
                            format!(
                                "{:<20} rate {:<6} service {:<14} model {:<14} {} evaluators\n",
                                r.name,
                                r.rate,
                                r.service.as_deref().unwrap_or("*"),
                                r.model.as_deref().unwrap_or("*"),
                                r.evaluators.len()
                            )
                        })
                        .collect()
                });
            }
            RulesCommand::Add { rule } => {
                let rule: Rule = json_arg(&rule, "evals rules add")?;
                ops::put_rule(&o.store, &rule, &o.ctx)?;
                out.emit(&rule, || {
                    format!(
                        "rule {} stored; a running server applies it after a restart or through \
                         POST /v1/evals/rules\n",
                        rule.name
                    )
                });
            }
            RulesCommand::Delete { name } => {
                if !lock(&o).delete_document(ops::RULE, &name)? {
                    return Err(CliError::usage(
                        format!("rule {name} does not exist"),
                        "list rules with `encore evals rules list`",
                    ));
                }
                out.emit(&serde_json::json!({ "deleted": name }), || {
                    format!("rule {name} deleted\n")
                });
            }
            RulesCommand::Backfill {
                name,
                from_ms,
                to_ms,
                limit,
            } => {
                let r =
                    ops::backfill_rule(&o.store, &o.spans, &name, from_ms, to_ms, limit, &o.ctx)?;
                out.emit(&r, || {
                    format!(
                        "rule {}: {} spans read, {} picked, {} scores stored, {} failed\n",
                        r.rule, r.spans, r.picked, r.scores, r.failures
                    )
                });
            }
        },
        EvalsCommand::Run {
            dataset,
            task,
            evaluators,
            concurrency,
        } => {
            let (dataset, version) = dataset_ref(&dataset)?;
            let req = ops::RunRequest {
                dataset,
                version,
                task: json_arg(&task, "evals run --task")?,
                evaluators: specs(&evaluators)?,
                concurrency,
            };
            let run = ops::run_experiment(&o.store, &req, &o.ctx)?;
            let summary = serde_json::json!({
                "id": run.id, "dataset": run.dataset, "version": run.version,
                "items": run.items.len(), "errors": run.errors, "cost_usd": run.cost_usd,
                "mean_latency_ms": run.mean_latency_ms, "summary": run.summary,
            });
            out.emit(&summary, || {
                let mut t = format!(
                    "run {}: {} items of {}@{}, {} errors, mean latency {:.0} ms, cost ${:.6}\n",
                    run.id,
                    run.items.len(),
                    run.dataset,
                    run.version,
                    run.errors,
                    run.mean_latency_ms,
                    run.cost_usd
                );
                for s in &run.summary {
                    t.push_str(&format!(
                        "  {:<22} n {:>5}  mean {:.3}  pass {:.1} % {}\n",
                        s.evaluator,
                        s.n,
                        s.mean,
                        100.0 * s.pass_rate,
                        pct(s.pass_ci)
                    ));
                }
                t
            });
        }
        EvalsCommand::Runs => {
            let ids = lock(&o).run_ids()?;
            out.emit(&ids, || ids.iter().map(|i| format!("{i}\n")).collect());
        }
        EvalsCommand::Compare { a, b, items } => {
            let (ra, rb) = {
                let s = lock(&o);
                (s.run(&a)?, s.run(&b)?)
            };
            let c = encore_evals::experiment::compare(&ra, &rb, items);
            out.emit(&c, || {
                let mut t = format!("{b} against {a}\n");
                for x in &c {
                    t.push_str(&format!(
                        "  {:<22} pairs {:>5}  {:.3} -> {:.3}  diff {:+.3} [{:+.3}, {:+.3}]  t {:.2}  p {:.4}  better {} worse {} same {}\n",
                        x.evaluator, x.pairs, x.mean_a, x.mean_b, x.difference, x.ci.0, x.ci.1,
                        x.t, x.p_value, x.improved, x.regressed, x.unchanged
                    ));
                    for d in &x.items {
                        t.push_str(&format!(
                            "      {:+.3}  {}\n",
                            d.b - d.a,
                            d.input.chars().take(80).collect::<String>()
                        ));
                    }
                }
                t
            });
        }
        EvalsCommand::Queue(cmd) => queue(&o, cmd, out)?,
    }
    Ok(())
}

fn queue(o: &Opened, cmd: QueueCommand, out: &Output) -> Result<(), CliError> {
    match cmd {
        QueueCommand::Create {
            name,
            schema,
            description,
        } => {
            let schema: LabelSchema = json_arg(&schema, "evals queue create --schema")?;
            let q = Queue {
                name,
                schema,
                description,
                created_ms: 0,
            };
            lock(o).create_queue(&q)?;
            out.emit(&q, || format!("queue {} created\n", q.name));
        }
        QueueCommand::Fill {
            name,
            traces,
            dataset,
        } => {
            let q = traces.query();
            let from_traces = dataset.is_none().then_some(&q);
            let dataset = dataset.as_deref().map(dataset_ref).transpose()?;
            let n = ops::fill_queue(
                &o.store,
                Some(&o.spans),
                &name,
                from_traces,
                dataset.as_ref().map(|(d, v)| (d.as_str(), *v)),
            )?;
            out.emit(&serde_json::json!({ "added": n }), || {
                format!("{n} items added to {name}\n")
            });
        }
        QueueCommand::Items {
            name,
            status,
            limit,
        } => {
            let items = lock(o).queue_items(&name, status.as_deref(), limit.max(1))?;
            out.emit(&items, || {
                let mut t = String::new();
                for i in &items {
                    t.push_str(&format!(
                        "#{:<5} {:<8} {}  in: {}  out: {}\n",
                        i.idx,
                        i.status,
                        i.label.as_ref().map_or("-".into(), |l| l.to_string()),
                        i.input
                            .as_deref()
                            .unwrap_or("")
                            .chars()
                            .take(60)
                            .collect::<String>(),
                        i.output
                            .as_deref()
                            .unwrap_or("")
                            .chars()
                            .take(60)
                            .collect::<String>()
                    ));
                }
                t
            });
        }
        QueueCommand::Label {
            name,
            idx,
            labeller,
            label,
            explanation,
        } => {
            // a number when it reads as one, else a category
            let value = label
                .parse::<f64>()
                .ok()
                .and_then(|x| serde_json::Number::from_f64(x).map(serde_json::Value::Number))
                .unwrap_or(serde_json::Value::String(label));
            let s = lock(o).label(&name, idx, &labeller, &value, explanation)?;
            out.emit(&s, || {
                format!(
                    "labelled {name} #{idx}: {} = {} ({})\n",
                    s.score.evaluator, s.score.value, s.source
                )
            });
        }
    }
    Ok(())
}

pub fn datasets(
    loaded: &encore_config::Loaded,
    cmd: DatasetsCommand,
    out: &Output,
) -> Result<(), CliError> {
    let o = open(loaded, false)?;
    let show = |r: &ops::Imported| {
        let mut t = format!(
            "{}@{}: {} items ({})\n",
            r.version.name, r.version.version, r.version.items, r.version.source
        );
        for x in &r.rejected {
            t.push_str(&format!("  rejected: {}\n", x.reason));
        }
        t
    };
    match cmd {
        DatasetsCommand::Import { name, file, append } => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                CliError::usage(
                    format!("cannot read {}: {e}", file.display()),
                    "check the path",
                )
            })?;
            let source = ops::DatasetSource {
                jsonl: Some(text),
                traces: None,
                append,
            };
            let r = ops::add_dataset(&o.store, None, &name, &source, &file.display().to_string())?;
            out.emit(&r, || show(&r));
        }
        DatasetsCommand::FromTraces {
            name,
            traces,
            append,
        } => {
            let source = ops::DatasetSource {
                jsonl: None,
                traces: Some(traces.query()),
                append,
            };
            let r = ops::add_dataset(&o.store, Some(&o.spans), &name, &source, "traces")?;
            out.emit(&r, || show(&r));
        }
        DatasetsCommand::List => {
            let v = lock(&o).datasets(None)?;
            out.emit(&v, || {
                v.iter()
                    .map(|d| {
                        format!(
                            "{}@{}  {} items  {}\n",
                            d.name, d.version, d.items, d.source
                        )
                    })
                    .collect()
            });
        }
        DatasetsCommand::Show { name } => {
            let (name, version) = dataset_ref(&name)?;
            let (v, items) = lock(&o).dataset_items(&name, version)?;
            let body = serde_json::json!({ "name": name, "version": v, "items": items });
            out.emit(&body, || {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, it)| {
                        format!(
                            "#{i:<5} {}  ->  {}\n",
                            it.input.chars().take(70).collect::<String>(),
                            it.expected
                                .as_deref()
                                .unwrap_or("-")
                                .chars()
                                .take(50)
                                .collect::<String>()
                        )
                    })
                    .collect()
            });
        }
    }
    Ok(())
}

pub fn alerts(
    loaded: &encore_config::Loaded,
    cmd: AlertsCommand,
    out: &Output,
) -> Result<(), CliError> {
    let o = open(loaded, false)?;
    match cmd {
        AlertsCommand::Add { rule } => {
            let rule: AlertRule = json_arg(&rule, "alerts add")?;
            ops::put_alert(
                &o.store,
                &rule,
                &encore_app::setup::webhook_allow(&loaded.config.server)?,
            )?;
            out.emit(&rule, || format!("alert {} stored\n", rule.name));
        }
        AlertsCommand::List => {
            let rules: Vec<AlertRule> = lock(&o).documents(ops::ALERT)?;
            out.emit(&rules, || {
                rules
                    .iter()
                    .map(|r| {
                        format!(
                            "{:<20} {} {:?} {} over {} s (for {} s, cooldown {} s){}\n",
                            r.name,
                            serde_json::to_string(&r.metric).unwrap_or_default(),
                            r.op,
                            r.threshold,
                            r.window_s,
                            r.for_s,
                            r.cooldown_s,
                            r.webhook
                                .as_deref()
                                .map_or(String::new(), |w| format!(" -> {w}"))
                        )
                    })
                    .collect()
            });
        }
        AlertsCommand::Delete { name } => {
            if !lock(&o).delete_document(ops::ALERT, &name)? {
                return Err(CliError::usage(
                    format!("alert {name} does not exist"),
                    "list alerts with `encore alerts list`",
                ));
            }
            out.emit(&serde_json::json!({ "deleted": name }), || {
                format!("alert {name} deleted\n")
            });
        }
        AlertsCommand::History { rule, limit } => {
            let events = lock(&o).alert_events(rule.as_deref(), limit.max(1))?;
            out.emit(&events, || {
                let mut t = String::new();
                for e in &events {
                    t.push_str(&format!(
                        "{}  {:<20} {:<20} {:<9} value {:.4} (threshold {})  webhook: {}\n",
                        e.at_ms,
                        e.rule,
                        e.slice,
                        e.state,
                        e.value,
                        e.threshold,
                        if e.delivered {
                            format!("delivered ({} attempts)", e.attempts)
                        } else if e.attempts > 0 {
                            format!(
                                "failed after {} attempts: {}",
                                e.attempts,
                                e.error.as_deref().unwrap_or("")
                            )
                        } else {
                            "-".into()
                        }
                    ));
                }
                t
            });
        }
    }
    Ok(())
}

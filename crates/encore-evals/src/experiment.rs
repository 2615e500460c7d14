//! Experiments: a task run over a dataset version, scored by chosen evaluators, and two runs
//! compared item by item with a paired t-test.
//!
//! A task is an OpenAI-compatible chat call with a prompt template (`{{input}}`, and any
//! metadata key as `{{key}}`), or an HTTP endpoint of the user's that takes
//! `{"input": ..., "metadata": {...}}` and answers `{"output": ...}` (or plain text).

use crate::judge::{ChatClient, JudgeConfig};
use crate::quality::wilson;
use crate::spec::{Context, EvaluatorSpec};
use crate::store::{DatasetItem, ScoreValue};
use crate::{Evaluator, Sample};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    Chat {
        /// the endpoint; the configured judge's when empty
        #[serde(default)]
        base_url: Option<String>,
        #[serde(default)]
        model: Option<String>,
        prompt: String,
        #[serde(default)]
        system: Option<String>,
    },
    Http {
        url: String,
        #[serde(default = "thirty_s")]
        timeout_ms: u64,
    },
}

fn thirty_s() -> u64 {
    30_000
}

/// One item's result.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunItem {
    pub idx: usize,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub latency_ms: f64,
    pub cost_usd: Option<f64>,
    pub scores: Vec<ScoreValue>,
}

/// An evaluator's results over a run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub evaluator: String,
    pub n: usize,
    pub mean: f64,
    pub pass_rate: f64,
    /// `[low, high]`
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub pass_ci: (f64, f64),
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub dataset: String,
    pub version: u32,
    pub task: Task,
    pub evaluators: Vec<EvaluatorSpec>,
    pub created_ms: i64,
    pub items: Vec<RunItem>,
    pub summary: Vec<Summary>,
    pub errors: usize,
    pub cost_usd: f64,
    pub mean_latency_ms: f64,
}

fn render(template: &str, item: &DatasetItem) -> String {
    let mut s = template.replace("{{input}}", &item.input);
    for (k, v) in &item.metadata {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        s = s.replace(&format!("{{{{{k}}}}}"), &v);
    }
    s
}

/// Calls the task on one item: (output, cost) or an error.
type Caller<'a> = Box<dyn Fn(&DatasetItem) -> Result<(String, Option<f64>), String> + Sync + 'a>;

fn caller<'a>(task: &'a Task, ctx: &Context) -> Result<Caller<'a>, String> {
    match task {
        Task::Chat {
            base_url,
            model,
            prompt,
            system,
        } => {
            let base = ctx.judge.clone().unwrap_or_default();
            // an endpoint the caller names goes where the caller's destinations may go
            let allow = match base_url {
                Some(_) => ctx.destinations.clone(),
                None => base.allow.clone(),
            };
            let config = JudgeConfig {
                base_url: base_url.clone().unwrap_or(base.base_url.clone()),
                model: model.clone().unwrap_or(base.model.clone()),
                allow,
                ..base
            };
            let client = ChatClient::new(config, ctx.prices.clone(), ctx.tracer.clone())
                .map_err(|e| format!("task: {e}"))?;
            let system = system
                .clone()
                .unwrap_or_else(|| "You are a helpful music assistant.".into());
            Ok(Box::new(move |item| {
                client
                    .complete(
                        "task",
                        &system,
                        &render(prompt, item),
                        &|t| Ok(t.to_owned()),
                    )
                    .map(|(out, c)| (out, c.cost_usd))
                    .map_err(|e| e.message)
            }))
        }
        Task::Http { url, timeout_ms } => {
            let client = encore_http::outbound::Outbound::new(encore_http::outbound::Options {
                timeout: Duration::from_millis(*timeout_ms),
                extra_roots_pem: ctx.judge.as_ref().and_then(|j| j.extra_roots_pem.clone()),
                allow: ctx
                    .destinations
                    .clone()
                    .unwrap_or_else(encore_http::outbound::Allow::everything),
                ..Default::default()
            })
            .map_err(|e| format!("task: {e}"))?;
            if let Some(allow) = &ctx.destinations {
                allow.check_url(url).map_err(|e| format!("task: {e}"))?;
            }
            Ok(Box::new(move |item| {
                let body =
                    serde_json::json!({"input": item.input, "metadata": item.metadata}).to_string();
                let mut last = String::new();
                for attempt in 0..3u32 {
                    match client.post_json(url, &[], body.as_bytes()) {
                        Ok(r) if r.status == 200 => {
                            let out = match serde_json::from_str::<serde_json::Value>(&r.body) {
                                Ok(v) => match v.get("output") {
                                    Some(serde_json::Value::String(s)) => s.clone(),
                                    Some(other) => other.to_string(),
                                    None => r.body.clone(),
                                },
                                Err(_) => r.body.clone(),
                            };
                            return Ok((out, None));
                        }
                        Ok(r) if r.status < 500 && r.status != 429 => {
                            return Err(format!("{url}: HTTP {}", r.status));
                        }
                        Ok(r) => last = format!("{url}: HTTP {}", r.status),
                        Err(e) => last = format!("{url}: {e}"),
                    }
                    std::thread::sleep(Duration::from_millis(100 << attempt));
                }
                Err(format!("{last} after 3 attempts"))
            }))
        }
    }
}

/// Runs `task` over `items` (dataset `dataset` at `version`), `concurrency` items at a time,
/// and scores each output with `evaluators`.
pub fn run(
    dataset: &str,
    version: u32,
    items: &[DatasetItem],
    task: &Task,
    evaluators: &[EvaluatorSpec],
    ctx: &Context,
    concurrency: usize,
) -> Result<Run, encore_core::Invalid> {
    let built: Vec<Box<dyn Evaluator>> = evaluators
        .iter()
        .map(|e| e.build(ctx))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let call = caller(task, ctx)?;
    let next = AtomicUsize::new(0);
    let mut results: Vec<RunItem> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency.clamp(1, 64))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let t0 = Instant::now();
                        let called = call(item);
                        let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
                        let (output, cost_usd, error) = match called {
                            Ok((o, c)) => (Some(o), c, None),
                            Err(e) => (None, None, Some(e)),
                        };
                        let scores = output.as_deref().map_or_else(Vec::new, |o| {
                            let sample = Sample {
                                input: &item.input,
                                output: o,
                                expected: item.expected.as_deref(),
                                context: item.context.as_deref(),
                            };
                            built
                                .iter()
                                .filter_map(|e| e.evaluate(&sample).ok().map(ScoreValue::from))
                                .collect()
                        });
                        out.push(RunItem {
                            idx: i,
                            input: item.input.clone(),
                            output,
                            error,
                            latency_ms,
                            cost_usd,
                            scores,
                        });
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|r| r.idx);
    let summary = built
        .iter()
        .map(|e| {
            let vals: Vec<f64> = results
                .iter()
                .filter_map(|r| r.scores.iter().find(|s| s.evaluator == e.name()))
                .map(|s| s.value)
                .collect();
            let pass = vals.iter().filter(|v| **v >= 0.5).count();
            Summary {
                evaluator: e.name().to_owned(),
                n: vals.len(),
                mean: vals.iter().sum::<f64>() / vals.len().max(1) as f64,
                pass_rate: pass as f64 / vals.len().max(1) as f64,
                pass_ci: wilson(pass as u64, vals.len() as u64, 1.96),
            }
        })
        .collect();
    let created_ms = encore_core::time::now_ms();
    Ok(Run {
        id: format!("{dataset}-v{version}-{created_ms:x}"),
        dataset: dataset.into(),
        version,
        task: task.clone(),
        evaluators: evaluators.to_vec(),
        created_ms,
        errors: results.iter().filter(|r| r.error.is_some()).count(),
        cost_usd: results.iter().filter_map(|r| r.cost_usd).sum(),
        mean_latency_ms: results.iter().map(|r| r.latency_ms).sum::<f64>()
            / results.len().max(1) as f64,
        summary,
        items: results,
    })
}

/// One item scored differently by two runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemDiff {
    pub input: String,
    pub a: f64,
    pub b: f64,
    pub output_a: Option<String>,
    pub output_b: Option<String>,
}

/// Two runs on one evaluator.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub evaluator: String,
    /// items both runs scored (matched by input)
    pub pairs: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// mean of b − a
    pub difference: f64,
    /// `[low, high]`
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub ci: (f64, f64),
    pub t: f64,
    pub p_value: f64,
    pub improved: usize,
    pub regressed: usize,
    pub unchanged: usize,
    /// the changed items, largest change first
    pub items: Vec<ItemDiff>,
}

/// Compares run `b` with run `a` per evaluator both used: items matched by input, the paired
/// t-test of the score differences (`b − a`, two-sided, 95 %).
pub fn compare(a: &Run, b: &Run, max_items: usize) -> Vec<Comparison> {
    let by_input: std::collections::HashMap<&str, &RunItem> =
        a.items.iter().map(|r| (r.input.as_str(), r)).collect();
    let mut names: Vec<&str> = a.summary.iter().map(|s| s.evaluator.as_str()).collect();
    names.retain(|n| b.summary.iter().any(|s| s.evaluator == *n));
    names
        .into_iter()
        .map(|name| {
            let value = |r: &RunItem| {
                r.scores
                    .iter()
                    .find(|s| s.evaluator == name)
                    .map(|s| s.value)
            };
            let mut diffs = Vec::new();
            let mut items = Vec::new();
            let (mut sa, mut sb) = (0.0, 0.0);
            for rb in &b.items {
                let Some(ra) = by_input.get(rb.input.as_str()) else {
                    continue;
                };
                let (Some(va), Some(vb)) = (value(ra), value(rb)) else {
                    continue;
                };
                sa += va;
                sb += vb;
                diffs.push(vb - va);
                if vb != va {
                    items.push(ItemDiff {
                        input: rb.input.clone(),
                        a: va,
                        b: vb,
                        output_a: ra.output.clone(),
                        output_b: rb.output.clone(),
                    });
                }
            }
            items.sort_by(|x, y| (y.b - y.a).abs().total_cmp(&(x.b - x.a).abs()));
            items.truncate(max_items);
            let n = diffs.len();
            let m = encore_stats::Moments::from_slice(&diffs);
            let (t, p_value, ci) = if n >= 2 && m.var() > 0.0 {
                let inf = encore_stats::infer(
                    m.mean,
                    (m.var() / n as f64).sqrt(),
                    Some(n as f64 - 1.0),
                    0.05,
                    encore_stats::Alternative::TwoSided,
                );
                (inf.stat, inf.p_value, inf.ci)
            } else {
                // identical differences: no variance to test against
                (0.0, if m.mean == 0.0 { 1.0 } else { 0.0 }, (m.mean, m.mean))
            };
            Comparison {
                evaluator: name.to_owned(),
                pairs: n,
                mean_a: sa / n.max(1) as f64,
                mean_b: sb / n.max(1) as f64,
                difference: m.mean,
                ci,
                t,
                p_value,
                improved: diffs.iter().filter(|d| **d > 0.0).count(),
                regressed: diffs.iter().filter(|d| **d < 0.0).count(),
                unchanged: diffs.iter().filter(|d| **d == 0.0).count(),
                items,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(values: &[f64]) -> Run {
        Run {
            id: "r".into(),
            dataset: "d".into(),
            version: 1,
            task: Task::Http {
                url: "http://127.0.0.1:1".into(),
                timeout_ms: 1,
            },
            evaluators: vec![],
            created_ms: 0,
            items: values
                .iter()
                .enumerate()
                .map(|(i, v)| RunItem {
                    idx: i,
                    input: format!("q{i}"),
                    output: Some(format!("a{v}")),
                    error: None,
                    latency_ms: 1.0,
                    cost_usd: None,
                    scores: vec![ScoreValue {
                        evaluator: "f1".into(),
                        version: 1,
                        value: *v,
                        label: None,
                        explanation: None,
                    }],
                })
                .collect(),
            summary: vec![Summary {
                evaluator: "f1".into(),
                n: values.len(),
                mean: 0.0,
                pass_rate: 0.0,
                pass_ci: (0.0, 1.0),
            }],
            errors: 0,
            cost_usd: 0.0,
            mean_latency_ms: 1.0,
        }
    }

    /// An HTTP task endpoint on 127.0.0.1: echoes the input upper-cased; "flaky" fails once
    /// with 503, "refused" always with 400.
    #[test]
    fn http_tasks_are_called_retried_and_scored() {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/answer", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut flaky_seen = false;
            for mut stream in l.incoming().flatten() {
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let (mut line, mut len) = (String::new(), 0usize);
                loop {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let input = v["input"].as_str().unwrap().to_owned();
                let (status, reply) = match input.as_str() {
                    "flaky" if !flaky_seen => {
                        flaky_seen = true;
                        (503, String::new())
                    }
                    "refused" => (400, String::new()),
                    _ => (
                        200,
                        serde_json::json!({"output": input.to_uppercase()}).to_string(),
                    ),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        let items: Vec<DatasetItem> = ["abc", "flaky", "refused", "Low"]
            .iter()
            .map(|i| DatasetItem {
                input: (*i).into(),
                expected: Some(i.to_uppercase()),
                ..Default::default()
            })
            .collect();
        let task = Task::Http {
            url,
            timeout_ms: 5_000,
        };
        let r = run(
            "d",
            1,
            &items,
            &task,
            &[EvaluatorSpec::ExactMatch],
            &Context::default(),
            1,
        )
        .unwrap();
        let outputs: Vec<Option<&str>> = r.items.iter().map(|i| i.output.as_deref()).collect();
        assert_eq!(outputs, vec![Some("ABC"), Some("FLAKY"), None, Some("LOW")]);
        assert!(r.items[2].error.as_deref().unwrap().contains("HTTP 400"));
        assert_eq!(r.errors, 1);
        assert_eq!((r.summary[0].n, r.summary[0].mean), (3, 1.0));
    }

    #[test]
    fn the_paired_test_matches_scipy() {
        // scipy 1.17.1 stats.ttest_rel(b, a): statistic 3.5032452487268526, pvalue 0.0172245496803414
        let a = run_of(&[0.2, 0.4, 0.5, 0.1, 0.6, 0.3]);
        let b = run_of(&[0.3, 0.6, 0.5, 0.4, 0.7, 0.5]);
        let c = &compare(&a, &b, 10)[0];
        assert_eq!(
            (c.pairs, c.improved, c.regressed, c.unchanged),
            (6, 5, 0, 1)
        );
        assert!((c.difference - 0.15).abs() < 1e-12);
        assert!((c.t - 3.5032452487268526).abs() < 1e-9, "{}", c.t);
        assert!(
            (c.p_value - 0.0172245496803414).abs() < 1e-9,
            "{}",
            c.p_value
        );
        assert_eq!(c.items.len(), 5);
        assert_eq!(c.items[0].input, "q3", "largest change first");
    }
}

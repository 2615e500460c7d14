//! `GET /metrics` in the Prometheus text format: requests and latency by route and status, shed
//! requests, candidates scored, impressions, the served model's version, and model swaps.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use crate::meters::{KindLabel, Metrics, RouteLabels};

/// Records every routed request.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let start = std::time::Instant::now();
    let response = next.run(req).await;
    let labels = RouteLabels {
        route,
        method,
        status: response.status().as_u16().to_string(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Which exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
    /// the classic Prometheus text format, `text/plain; version=0.0.4`
    Text,
}

impl Format {
    /// OpenMetrics when `Accept` names it (Prometheus asks for it first), else the classic
    /// text format that every parser reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let wants_openmetrics = accept.is_some_and(|a| {
            a.split(',').any(|part| {
                let mut fields = part.split(';');
                let media = fields.next().unwrap_or("").trim();
                let q_zero = fields.any(|f| {
                    f.trim()
                        .strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
            })
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// OpenMetrics text as the classic Prometheus text format: a counter's `# HELP` and `# TYPE`
/// name its `_total` samples, `# UNIT`, `# EOF` and `_created` samples go, `info` becomes a
/// gauge, `unknown` untyped, and exemplars are cut.
pub fn to_classic_text(open: &str) -> String {
    let mut types: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            types.insert(name, kind.trim());
        }
    }
    let renamed = |name: &str| -> String {
        match types.get(name).copied() {
            Some("counter") if !name.ends_with("_total") => format!("{name}_total"),
            Some("info") => format!("{name}_info"),
            _ => name.to_owned(),
        }
    };
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = match kind.trim() {
                "info" => "gauge",
                "unknown" | "stateset" | "gaugehistogram" => "untyped",
                other => other,
            };
            out.push_str(&format!("# TYPE {} {kind}\n", renamed(name)));
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if let Some(base) = line[..name_end].strip_suffix("_created")
            && types.get(base) == Some(&"counter")
        {
            continue;
        }
        // an exemplar follows ` # ` after the value
        let sample = match line.find(" # {") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// Process metrics of this process from `/proc` (Linux), with the standard names.
fn process_metrics(registry: &mut Registry) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // fields after the parenthesised command name
    let Some(after) = stat.rfind(')').map(|at| &stat[at + 2..]) else {
        return;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // clock ticks per second: 100 on every Linux encore runs on
    const TICKS: f64 = 100.0;
    let page = 4096.0;
    let (utime, stime) = (field(11), field(12));
    let threads = field(17);
    let start_ticks = field(19);
    let (vsize, rss) = (field(20), field(21));
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|b| b.trim().parse::<f64>().ok())
    });
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as f64)
        .ok();
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    if let (Some(u), Some(s)) = (utime, stime) {
        let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        cpu.inc_by((u + s) / TICKS);
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            cpu,
        );
    }
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            rss.map(|p| p * page),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            vsize,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors",
            open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors",
            max_fds,
        ),
        (
            "process_threads",
            "Number of OS threads in the process",
            threads,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            boot.zip(start_ticks).map(|(b, t)| b + t / TICKS),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            g.set(v);
            registry.register(name, help, g);
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    git_sha: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    purpose: String,
    outcome: String,
}

/// A counter family with one value per label set, read from where it is kept.
fn counters<L>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, u64)>,
) where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).inc_by(v);
    }
    registry.register(name, help, family);
}

/// A gauge family, likewise.
fn gauges<L>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).set(v);
    }
    registry.register(name, help, family);
}

/// The metrics read at scrape time from the stores, queues and models they describe.
fn float_gauges<L>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, f64)>,
) where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).set(v);
    }
    registry.register(name, help, family);
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MonitorLabels {
    monitor: String,
    slice: String,
    attribute: String,
}

/// Each monitor's verdicts on its latest judged window.
fn monitor_metrics(r: &mut Registry, monitors: &encore_app::monitors::Monitoring) {
    let latest = monitors.latest();
    let labels = |x: &encore_app::monitors::MonitorResult| MonitorLabels {
        monitor: x.monitor.clone(),
        slice: x.slice.clone(),
        attribute: x.attribute.clone().unwrap_or_default(),
    };
    float_gauges(
        r,
        "monitor_value",
        "each monitor's statistic on its latest judged window, per slice and attribute",
        latest.iter().map(|x| (labels(x), x.value)),
    );
    gauges(
        r,
        "monitor_firing",
        "1 when a monitor's latest judged window fired for the slice and attribute",
        latest.iter().map(|x| (labels(x), i64::from(x.fired))),
    );
    counters(
        r,
        "monitor_runs",
        "runs of the monitors job on this node, by outcome",
        [
            (
                "ok",
                monitors.runs.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "failed",
                monitors.failures.load(std::sync::atomic::Ordering::Relaxed),
            ),
        ]
        .map(|(o, n)| (OutcomeLabel { outcome: o.into() }, n)),
    );
}

fn live(state: &AppState) -> Registry {
    let mut root = Registry::default();
    process_metrics(&mut root);
    let r = root.sub_registry_with_prefix("encore");
    let m = &state.metrics;
    gauges(
        r,
        "build_info",
        "the running build: 1, labelled with its version and commit",
        [(
            BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                git_sha: m
                    .build_sha
                    .get()
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
            },
            1,
        )],
    );
    let (events, traces) = crate::health::storage_health(state);
    gauges(
        r,
        "storage_writes_failing",
        "1 while writes to a store fail (disk full, I/O errors; /readyz says why), else 0",
        [("events", events.is_some()), ("traces", traces.is_some())]
            .map(|(kind, failing)| (KindLabel { kind }, i64::from(failing))),
    );
    let c = state.ingestor.counters();
    counters(
        r,
        "events_ingested",
        "event rows ingested by outcome: accepted, rejected (by a data contract), duplicate",
        [
            ("accepted", c.accepted),
            ("rejected", c.rejected),
            ("duplicate", c.duplicates),
        ]
        .map(|(o, n)| (OutcomeLabel { outcome: o.into() }, n)),
    );
    counters(
        r,
        "events_rejected_by_rule",
        "event rows rejected, by the contract rule they broke",
        c.rejects_by_rule
            .iter()
            .map(|(rule, n)| (RuleLabel { rule: rule.clone() }, *n)),
    );
    counters(
        r,
        "events_unknown_items",
        "accepted plays of items not in the catalog",
        [(
            OutcomeLabel {
                outcome: "accepted".into(),
            },
            c.unknown_items,
        )],
    );
    let tables: Vec<(String, encore_storage::LogStats)> = encore_ingest::Table::ALL
        .iter()
        .map(|t| (t.name().to_owned(), state.ingestor.log(*t).stats()))
        .collect();
    gauges(
        r,
        "event_log_queue_depth",
        "appends waiting for the event log's writer, by table",
        tables
            .iter()
            .map(|(t, s)| (TableLabel { table: t.clone() }, s.queued as i64)),
    );
    gauges(
        r,
        "event_log_unsealed_rows",
        "durable rows in the write-ahead log not yet sealed into Parquet, by table",
        tables
            .iter()
            .map(|(t, s)| (TableLabel { table: t.clone() }, s.unsealed_rows as i64)),
    );
    gauges(
        r,
        "event_log_segments",
        "sealed Parquet segments, by table",
        tables
            .iter()
            .map(|(t, s)| (TableLabel { table: t.clone() }, s.segments as i64)),
    );
    if let Some(served) = state.serving.as_ref().map(|s| &s.served) {
        let (name, version, items) = match served.get() {
            Some(model) => (
                model.name.clone(),
                i64::from(model.version),
                model.n_items() as i64,
            ),
            None => (String::new(), 0, 0),
        };
        gauges(
            r,
            "model_version",
            "version of the served model (0: none), labelled with its registered name",
            [(
                ModelLabel {
                    model: name.clone(),
                },
                version,
            )],
        );
        gauges(
            r,
            "model_items",
            "items in the served model's catalogue",
            [(ModelLabel { model: name }, items)],
        );
        let (swaps, failed) = served.swap_counts();
        let (hits, misses) = served.cache.counts();
        for (name, help, v) in [
            ("model_swaps", "model versions swapped in", swaps),
            (
                "model_swap_failures",
                "model versions that failed to load",
                failed,
            ),
            (
                "cache_hits",
                "home lists answered from the per-listener cache",
                hits,
            ),
            (
                "cache_misses",
                "home lists computed (not in the cache)",
                misses,
            ),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(v);
            r.register(name, help, counter);
        }
    }
    if let Some(evals) = &state.evals {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &evals.online.stats;
        counters(
            r,
            "online_eval_spans",
            "spans met by online evaluation: sampled by a rule, dropped (queue full), skipped (nothing to score)",
            [
                ("sampled", s.sampled.load(Relaxed)),
                ("dropped", s.dropped.load(Relaxed)),
                ("skipped", s.skipped.load(Relaxed)),
            ]
            .map(|(o, n)| (OutcomeLabel { outcome: o.into() }, n)),
        );
        counters(
            r,
            "online_eval_runs",
            "evaluator runs by the online workers (heuristics and judges): scored, or failed (no score)",
            [
                ("scored", s.scores.load(Relaxed)),
                ("failed", s.failures.load(Relaxed)),
            ]
            .map(|(o, n)| (OutcomeLabel { outcome: o.into() }, n)),
        );
        gauges(
            r,
            "online_eval_queue_depth",
            "sampled spans waiting for an online evaluation worker",
            [(
                OutcomeLabel {
                    outcome: "pending".into(),
                },
                s.pending.load(Relaxed) as i64,
            )],
        );
    }
    if let Some(monitors) = &state.monitors {
        monitor_metrics(r, monitors);
    }
    let deliveries = encore_http::outbound::delivery_counts();
    counters(
        r,
        "deliveries",
        "outbound webhook and alert deliveries, by purpose and outcome (delivered, failed after retries)",
        deliveries
            .iter()
            .filter(|(_, o, _)| *o != "attempts")
            .map(|(p, o, n)| {
                (
                    DeliveryLabels {
                        purpose: (*p).into(),
                        outcome: (*o).into(),
                    },
                    *n,
                )
            }),
    );
    counters(
        r,
        "delivery_attempts",
        "outbound delivery attempts (retries included), by purpose",
        deliveries
            .iter()
            .filter(|(_, o, _)| *o == "attempts")
            .map(|(p, _, n)| {
                (
                    DeliveryLabels {
                        purpose: (*p).into(),
                        outcome: "attempted".into(),
                    },
                    *n,
                )
            }),
    );
    root
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format (`text/plain; version=0.0.4`), or OpenMetrics when `Accept` asks for `application/openmetrics-text`", content_type = "text/plain", body = String)))]
pub async fn render(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let mut text = String::new();
    let encoded = {
        let registry = state
            .metrics
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode_registry(&mut text, &registry)
    }
    .and_then(|()| {
        let live = live(&state);
        prometheus_client::encoding::text::encode_registry(&mut text, &live)
    })
    .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut text));
    if encoded.is_err() {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode metrics",
        )
            .into_response();
    }
    let body = match format {
        Format::OpenMetrics => text,
        Format::Text => to_classic_text(&text),
    };
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Text
        );
    }

    #[test]
    fn classic_text_names_counters_by_their_samples() {
        let open = "# HELP a_requests some help.\n# TYPE a_requests counter\n# UNIT a_requests requests\n\
                    a_requests_total{x=\"1\"} 3 # {trace_id=\"t\"} 1.0\na_requests_created 17\n\
                    # HELP b_build build.\n# TYPE b_build info\nb_build_info{v=\"1\"} 1\n# EOF\n";
        assert_eq!(
            to_classic_text(open),
            "# HELP a_requests_total some help.\n# TYPE a_requests_total counter\n\
             a_requests_total{x=\"1\"} 3\n# HELP b_build_info build.\n# TYPE b_build_info gauge\n\
             b_build_info{v=\"1\"} 1\n"
        );
    }
}

//! `encore traces`: the spans `encore serve` stored, read from the data directory.

use crate::cli::{SpanFilterArgs, TracesCommand};
use crate::error::CliError;
use crate::output::Output;
use encore_telemetry::store::GroupBy;
use encore_telemetry::{Filter, SpanStore};

impl SpanFilterArgs {
    fn filter(&self) -> Filter {
        let a = self.clone();
        Filter {
            project: a.project,
            service: a.service,
            operation: a.operation,
            model: a.model,
            provider: a.provider,
            status: a.status,
            user: a.user,
            session: a.session,
            root: a.root,
            text: a.text,
            attributes: a.attributes,
            min_duration_ms: a.min_duration_ms,
            min_cost: a.min_cost,
            ..Default::default()
        }
    }
}

fn group_by(s: &str) -> Result<GroupBy, CliError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        CliError::usage(
            format!("--group-by {s:?} is not a grouping"),
            "use model, service, user, operation, provider, status or none",
        )
    })
}

fn money(usd: f64) -> String {
    if usd >= 1.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.6}")
    }
}

/// The span store's tables under the data directory `root`: span keys once within the store's
/// deduplication window; content rows may repeat a key (content is written first, so a retry
/// after its core row failed writes it again).
pub(crate) fn tables(root: &std::path::Path) -> Vec<crate::commands::integrity::TableDir> {
    SpanStore::tables(root)
        .into_iter()
        .map(|(path, spec)| {
            let ids = if spec.name == "spans" {
                encore_storage::Ids::OnceWithin(encore_core::time::MS_PER_DAY)
            } else {
                encore_storage::Ids::Repeatable
            };
            (spec.name.to_owned(), path, spec, ids)
        })
        .collect()
}

pub fn run(
    loaded: &encore_config::Loaded,
    cmd: TracesCommand,
    out: &Output,
) -> Result<(), CliError> {
    let dir = encore_storage::DataDir::open(&loaded.config.data.dir)?;
    if matches!(cmd, TracesCommand::Verify | TracesCommand::Repair) {
        use crate::commands::integrity;
        let tables = tables(dir.path());
        return match cmd {
            TracesCommand::Verify => integrity::verify(&tables, "span store", out),
            _ => integrity::repair(&dir, &tables, out),
        };
    }
    let store = SpanStore::open(dir.path(), Default::default())?;
    match cmd {
        TracesCommand::RecomputeCosts { from_ms, to_ms } => {
            let prices = encore_app::setup::price_table(&loaded.config.telemetry);
            let version = prices.version.clone();
            let n = store.recompute_costs(
                from_ms.unwrap_or(i64::MIN),
                to_ms.unwrap_or(i64::MAX),
                prices,
            )?;
            out.emit(
                &serde_json::json!({ "changed": n, "prices": version }),
                || format!("{n} span costs changed (prices {version})"),
            );
        }
        TracesCommand::Count { project } => {
            let n = store.count(project.as_deref())?;
            out.emit(&serde_json::json!({ "count": n }), || format!("{n} spans"));
        }
        TracesCommand::List {
            filter,
            limit,
            before_ns,
        } => {
            let rows = store.list(&filter.filter(), limit.max(1), before_ns)?;
            out.emit(&rows, || {
                let mut t = String::new();
                for r in &rows {
                    t.push_str(&format!(
                        "{} {}  {:<36} {:>9.1} ms  {:<6} {:<28} {:>6} in {:>6} out  {}\n",
                        &r.trace_id,
                        &r.span_id,
                        r.name,
                        r.duration_ms,
                        r.status,
                        r.response_model
                            .as_deref()
                            .or(r.request_model.as_deref())
                            .unwrap_or("-"),
                        r.input_tokens.map_or("-".into(), |v| v.to_string()),
                        r.output_tokens.map_or("-".into(), |v| v.to_string()),
                        r.cost_usd.map_or("-".into(), money),
                    ));
                }
                if rows.is_empty() {
                    t.push_str("no spans match\n");
                }
                t
            });
        }
        TracesCommand::Verify | TracesCommand::Repair => {}
        TracesCommand::Show { trace_id } => {
            let spans = store.trace(&trace_id.to_ascii_lowercase())?;
            if spans.is_empty() {
                return Err(CliError::usage(
                    format!("trace {trace_id} has no stored spans"),
                    "list traces with `encore traces list`",
                ));
            }
            out.emit(&spans, || {
                let mut t = String::new();
                for s in &spans {
                    t.push_str(&format!(
                        "{:>9.1} ms {}{} ({:.1} ms, {}{})\n",
                        s.offset_ms,
                        "  ".repeat(s.depth),
                        s.span.name,
                        s.span.duration_ms,
                        s.span.status,
                        s.span
                            .cost_usd
                            .map_or(String::new(), |c| format!(", {}", money(c))),
                    ));
                }
                t
            });
        }
        TracesCommand::Stats {
            filter,
            group_by: g,
            bucket_minutes,
        } => {
            let rows = store.stats(
                &filter.filter(),
                group_by(&g)?,
                bucket_minutes.max(0) * 60_000,
            )?;
            out.emit(&rows, || {
                let mut t = format!(
                    "{:<32} {:>8} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>12}\n",
                    g,
                    "spans",
                    "errors",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "in tokens",
                    "out tokens",
                    "cost"
                );
                for r in &rows {
                    t.push_str(&format!(
                        "{:<32} {:>8} {:>6.1}% {:>9.1} {:>9.1} {:>9.1} {:>10} {:>10} {:>12}\n",
                        r.group.as_deref().unwrap_or("(none)"),
                        r.count,
                        100.0 * r.error_rate,
                        r.latency_ms.p50,
                        r.latency_ms.p95,
                        r.latency_ms.p99,
                        r.tokens.input,
                        r.tokens.output,
                        money(r.cost_usd),
                    ));
                }
                t
            });
        }
    }
    store.seal()?;
    Ok(())
}

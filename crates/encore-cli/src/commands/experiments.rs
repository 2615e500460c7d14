//! `encore experiments ...`: definitions and lifecycle in the data directory's experiment store
//! (SQLite, safe beside a running server), and a listener's assignments.

use crate::cli::ExperimentsCommand;
use crate::error::CliError;
use crate::output::Output;
use encore_experiments::assignment::{Context, Plan};
use encore_experiments::store::{Definition, Store};

use encore_server::experiments::{HOLDOUT, HOLDOUT_SALT};

fn read_definition(path: &std::path::Path) -> Result<Definition, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(
            format!("cannot read {}: {e}", path.display()),
            "pass a JSON file",
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(
            format!("{}: {e}", path.display()),
            "see `encore experiments create --help` for the fields",
        )
    })
}

pub fn run(
    loaded: &encore_config::Loaded,
    cmd: ExperimentsCommand,
    out: &Output,
) -> Result<(), CliError> {
    let dir = &loaded.config.data.dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::failed(
            format!("cannot create {}: {e}", dir.display()),
            "check the path",
        )
    })?;
    let mut store = Store::open(dir)?;
    match cmd {
        ExperimentsCommand::Create { file } => {
            let d = read_definition(&file)?;
            store.create(&d)?;
            let e = store.get(d.id())?;
            out.emit(&e, || format!("created {} (draft)", d.id()));
        }
        ExperimentsCommand::Update { file } => {
            let d = read_definition(&file)?;
            store.update(&d)?;
            let e = store.get(d.id())?;
            out.emit(&e, || format!("updated {}", d.id()));
        }
        ExperimentsCommand::Start { id } => {
            store.start(&id)?;
            let e = store.get(&id)?;
            out.emit(&e, || format!("{id} is running"));
        }
        ExperimentsCommand::Stop { id } => {
            store.stop(&id)?;
            let e = store.get(&id)?;
            out.emit(&e, || format!("{id} is stopped"));
        }
        ExperimentsCommand::List => {
            let all = store.list()?;
            out.emit(&all, || {
                if all.is_empty() {
                    return "no experiments".into();
                }
                all.iter()
                    .map(|e| {
                        let a = &e.definition.allocation;
                        let variants: Vec<String> = a
                            .variants
                            .iter()
                            .map(|v| format!("{}:{}", v.name, v.weight))
                            .collect();
                        format!(
                            "{} [{:?}] domain {} traffic {:.0} % variants {}",
                            a.id,
                            e.state,
                            a.domain,
                            a.traffic * 100.0,
                            variants.join(" ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ExperimentsCommand::Show { id } => {
            let e = store.get(&id)?;
            out.emit(&e, || serde_json::to_string_pretty(&e).unwrap_or_default());
        }
        ExperimentsCommand::Report {
            id,
            pre_days,
            alpha,
        } => {
            let e = store.get(&id)?;
            drop(store);
            let report = report(loaded, &e.definition, pre_days, alpha)?;
            out.emit(&report, || report_text(&report));
        }
        ExperimentsCommand::Assign {
            user,
            country,
            platform,
            tier,
        } => {
            let plan = Plan::new(
                &store.running()?,
                &Default::default(),
                HOLDOUT,
                HOLDOUT_SALT,
            )?;
            let context = Context {
                country: &country,
                platform: &platform,
                tier: &tier,
                new_user: false,
            };
            let assignments = plan.assign(&user, &context);
            let report = serde_json::json!({
                "user_id": user,
                "holdout": plan.held_out(&user),
                "assignments": assignments,
            });
            out.emit(&report, || {
                if plan.held_out(&user) {
                    return format!("{user} is in the global holdout");
                }
                if assignments.is_empty() {
                    return format!("{user} is in no running experiment");
                }
                assignments
                    .iter()
                    .map(|a| format!("{}: {}", a.experiment, a.variant))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

/// The per-listener metrics a definition may name.
fn metric_value(name: &str) -> Option<fn(&encore_ingest::exposure::Listening) -> f64> {
    use encore_ingest::exposure::Listening;
    let f: fn(&Listening) -> f64 = match name {
        "streams_per_user" => |l| l.streams,
        "plays_per_user" => |l| l.plays,
        "listening_minutes" | "listening_minutes_per_user" => |l| l.minutes,
        "stream_rate" => Listening::stream_rate,
        "skip_rate" => Listening::skip_rate,
        "saves_per_user" => |l| l.saves,
        _ => return None,
    };
    Some(f)
}

const KNOWN_METRICS: &str =
    "streams_per_user, plays_per_user, listening_minutes, stream_rate, skip_rate, saves_per_user";

#[derive(serde::Serialize)]
struct ExperimentReport {
    experiment: String,
    hypothesis: String,
    exposed: usize,
    per_variant: Vec<(String, usize)>,
    #[serde(flatten)]
    analysis: encore_experiments::analysis::Report,
}

fn report(
    loaded: &encore_config::Loaded,
    def: &Definition,
    pre_days: u32,
    alpha: f64,
) -> Result<ExperimentReport, CliError> {
    use encore_experiments::analysis::{ArmData, MetricSpec, Role, analyze};
    let metrics: Vec<MetricSpec> = if def.metrics.is_empty() {
        vec![
            MetricSpec {
                name: "streams_per_user".into(),
                role: Role::Success,
                higher_is_better: true,
            },
            MetricSpec {
                name: "listening_minutes".into(),
                role: Role::Guardrail { margin: 0.01 },
                higher_is_better: true,
            },
            MetricSpec {
                name: "skip_rate".into(),
                role: Role::Deterioration,
                higher_is_better: false,
            },
        ]
    } else {
        def.metrics.clone()
    };
    let values = metrics
        .iter()
        .map(|m| {
            metric_value(&m.name).ok_or_else(|| {
                CliError::usage(
                    format!("experiment {}: unknown metric {:?}", def.id(), m.name),
                    format!("known metrics: {KNOWN_METRICS}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (_dir, ingestor) = crate::commands::events::open(loaded)?;
    let outcomes = encore_ingest::exposure::outcomes(&ingestor, def.id(), pre_days)?;
    let variants = &def.allocation.variants;
    let arms: Vec<ArmData> = variants
        .iter()
        .map(|v| {
            let mut per_metric = vec![encore_stats::CoMoments::default(); metrics.len()];
            let mut users = 0.0;
            for o in outcomes.values().filter(|o| o.variant == v.name) {
                users += 1.0;
                for (m, value) in per_metric.iter_mut().zip(&values) {
                    m.push(value(&o.pre), value(&o.post));
                }
            }
            ArmData {
                variant: v.name.clone(),
                users,
                metrics: per_metric,
            }
        })
        .collect();
    if arms.iter().any(|a| a.users < 2.0) {
        return Err(CliError::failed(
            format!(
                "experiment {}: every variant needs at least 2 exposed listeners (have {:?})",
                def.id(),
                arms.iter()
                    .map(|a| (a.variant.clone(), a.users))
                    .collect::<Vec<_>>()
            ),
            "serve the experiment's surface to more listeners first",
        ));
    }
    let weights: Vec<f64> = variants.iter().map(|v| v.weight).collect();
    Ok(ExperimentReport {
        experiment: def.id().into(),
        hypothesis: def.hypothesis.clone(),
        exposed: outcomes.len(),
        per_variant: arms
            .iter()
            .map(|a| (a.variant.clone(), a.users as usize))
            .collect(),
        analysis: analyze(&metrics, &arms, &weights, alpha, 0.001),
    })
}

fn report_text(r: &ExperimentReport) -> String {
    let mut t = format!(
        "{}: {}\nexposed {} ({}); SRM chi-square {:.2}, p {:.3}{}\n",
        r.experiment,
        r.hypothesis,
        r.exposed,
        r.per_variant
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.analysis.srm_chi2,
        r.analysis.srm_p_value,
        if r.analysis.srm_ok { "" } else { " (MISMATCH)" }
    );
    for m in &r.analysis.results {
        t.push_str(&format!(
            "  {:<20} {:<10} control {:.4} treatment {:.4}  lift {:+.2} % [{:+.2}, {:+.2}] (CUPED; unadjusted {:+.2} %)  p {:.3}{}\n",
            m.metric,
            m.variant,
            m.control_mean,
            m.treatment_mean,
            100.0 * m.cuped.lift,
            100.0 * m.cuped.lift_ci.0,
            100.0 * m.cuped.lift_ci.1,
            100.0 * m.unadjusted.lift,
            m.p_adjusted.unwrap_or(m.cuped.p_value),
            if m.better { "  better" } else if m.worse { "  WORSE" } else { "" }
        ));
    }
    t.push_str(&format!("decision: {:?}\n", r.analysis.decision));
    for reason in &r.analysis.reasons {
        t.push_str(&format!("  - {reason}\n"));
    }
    t
}

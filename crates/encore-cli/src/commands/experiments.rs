//! `encore experiments ...`: definitions and lifecycle in the data directory's experiment store
//! (SQLite, safe beside a running server), and a listener's assignments.

use crate::cli::ExperimentsCommand;
use crate::error::CliError;
use crate::output::Output;
use encore_experiments::assignment::{Context, Plan};
use encore_experiments::store::{Definition, Store};

use encore_app::experiments::{HOLDOUT, HOLDOUT_SALT};

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
    let cmd = match cmd {
        ExperimentsCommand::Simulate(args) => {
            return crate::commands::simulate::run(loaded, &args, out);
        }
        other => other,
    };
    let dir = &loaded.config.data.dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::failed(
            format!("cannot create {}: {e}", dir.display()),
            "check the path",
        )
    })?;
    let mut store = Store::open(dir)?;
    match cmd {
        // handled above: it makes its own data directory
        ExperimentsCommand::Simulate(_) => {}
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
            let (_dir, ingestor) = crate::commands::events::open(loaded)?;
            let report =
                encore_app::experiments::report(&ingestor, &e.definition, pre_days, alpha)?;
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

fn report_text(r: &encore_app::experiments::ExperimentReport) -> String {
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

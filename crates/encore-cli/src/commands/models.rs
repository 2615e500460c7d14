//! `encore models ...`: the registry from the command line. These commands do not take the data
//! directory's lock (the registry is SQLite, safe for concurrent processes), so they work while
//! `encore serve` runs.

use crate::cli::ModelsCommand;
use crate::error::CliError;
use crate::output::Output;
use encore_registry::{Promotion, Registry};

/// The registry of the configured data directory.
pub fn open(loaded: &encore_config::Loaded) -> Result<Registry, CliError> {
    let dir = &loaded.config.data.dir;
    if !dir.join("FORMAT").is_file() {
        return Err(CliError::usage(
            format!("{} is not an encore data directory", dir.display()),
            "pass --data-dir, or train a model first (`encore train`)",
        ));
    }
    Ok(Registry::open(dir)?)
}

/// Who moves aliases: `$ENCORE_ACTOR`, else the login name, else `local`.
pub fn actor() -> String {
    ["ENCORE_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "local".into())
}

fn fmt_move(m: &encore_registry::AliasMove) -> String {
    format!(
        "#{} {} {}: {} -> v{} ({}{}) by {}{}",
        m.id,
        m.model,
        m.alias,
        m.from.map_or("none".into(), |f| format!("v{f}")),
        m.to,
        m.action,
        if m.forced { ", forced" } else { "" },
        m.actor,
        if m.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", m.reason)
        }
    )
}

pub fn run(
    loaded: &encore_config::Loaded,
    cmd: ModelsCommand,
    out: &Output,
) -> Result<(), CliError> {
    let mut reg = open(loaded)?;
    let actor = actor();
    match cmd {
        ModelsCommand::List => {
            let models = reg.list()?;
            out.emit(&models, || {
                if models.is_empty() {
                    return "no registered models (train one with `encore train`)".into();
                }
                models
                    .iter()
                    .map(|m| {
                        let aliases: Vec<String> =
                            m.aliases.iter().map(|(a, v)| format!("{a}=v{v}")).collect();
                        format!(
                            "{}: {} version(s), latest v{}{}",
                            m.name,
                            m.versions,
                            m.latest,
                            if aliases.is_empty() {
                                String::new()
                            } else {
                                format!(", {}", aliases.join(" "))
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ModelsCommand::Show { reference } => {
            let v = reg.resolve(&reference)?;
            // what is shown is what would be served: a damaged artifact names itself
            reg.load_artifact(&v)?;
            out.emit(&v, || {
                let metrics: Vec<String> = v
                    .record
                    .metrics
                    .iter()
                    .map(|(k, x)| format!("{k} {x:.4}"))
                    .collect();
                format!(
                    "{} v{} ({}){}\nartifact {}\nsplit {}\nmetrics: {}\nconfig: {}",
                    v.model,
                    v.version,
                    v.record.kind,
                    if v.aliases.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", v.aliases.join(", "))
                    },
                    v.record.artifact,
                    v.record.split.as_deref().unwrap_or("none"),
                    if metrics.is_empty() {
                        "none".into()
                    } else {
                        metrics.join(", ")
                    },
                    v.record.config
                )
            });
        }
        ModelsCommand::Promote {
            name,
            number,
            alias,
            force,
            reason,
            gate,
        } => {
            let how = Promotion {
                alias: &alias,
                actor: &actor,
                reason: &reason,
                force,
            };
            let m = reg.promote(&name, number, &how, &gate.gate(&loaded.config.registry))?;
            out.emit(&m, || fmt_move(&m));
        }
        ModelsCommand::Rollback {
            name,
            alias,
            reason,
        } => {
            let how = Promotion {
                alias: &alias,
                actor: &actor,
                reason: &reason,
                force: false,
            };
            let m = reg.rollback(&name, &how)?;
            out.emit(&m, || fmt_move(&m));
        }
        ModelsCommand::History { name } => {
            let moves = reg.history(&name)?;
            out.emit(&moves, || {
                if moves.is_empty() {
                    return format!("no alias of {name} has moved yet");
                }
                moves.iter().map(fmt_move).collect::<Vec<_>>().join("\n")
            });
        }
        ModelsCommand::Card { reference } => {
            let v = reg.resolve(&reference)?;
            reg.load_artifact(&v)?;
            let card = reg.card(&reference)?;
            out.emit(&card, || card.markdown());
        }
        ModelsCommand::Delete { reference } => {
            let (name, version) = reference
                .split_once('@')
                .and_then(|(n, v)| Some((n.to_string(), v.parse::<u32>().ok()?)))
                .ok_or_else(|| {
                    CliError::usage(
                        format!("{reference:?} is not NAME@VERSION"),
                        "e.g. `encore models delete recommender@3`",
                    )
                })?;
            reg.delete(&name, version)?;
            let done = serde_json::json!({"deleted": format!("{name}@{version}")});
            out.emit(&done, || format!("deleted {name}@{version}"));
        }
    }
    Ok(())
}

//! `encore privacy export USER --out DIR` and `encore privacy erase USER`: what encore holds
//! about one listener (GDPR articles 15 and 17), on a stopped server's data directory (the
//! command takes the directory's lock).
//!
//! Erasure goes through every store: the event log (segments rewritten, the WAL sealed into
//! them first), the quarantine (rejected rows rewritten; damaged originals that hold the id
//! removed), simulated worlds kept in the directory, the online feature store (keys removed,
//! file compacted), the trace store (spans and their content), the evaluation store (scores,
//! queue items and dataset items of their traces, securely deleted), and model artifacts (the
//! id replaced by its keyed hash, the version flagged for retraining). The ledger keeps a keyed
//! hash of the id, when, who, and what went.

use crate::cli::PrivacyCommand;
use crate::error::CliError;
use crate::output::Output;
use encore_config::Loaded;
use encore_ingest::Table;
use serde_json::{Value, json};
use std::path::Path;

pub fn run(loaded: &Loaded, cmd: PrivacyCommand, out: &Output) -> Result<(), CliError> {
    match cmd {
        PrivacyCommand::Export { user, out: dest } => export(loaded, &user, &dest, out),
        PrivacyCommand::Erase { user } => erase(loaded, &user, out),
        PrivacyCommand::Erasures => {
            let root = &loaded.config.data.dir;
            let list = encore_access::ledger::list(root)?;
            out.emit(&list, || {
                list.iter()
                    .map(|e| {
                        format!(
                            "{:>4} {} {} by {}: {}\n",
                            e.seq,
                            encore_core::time::format_ms(e.ts_ms),
                            &e.listener[..16],
                            e.actor,
                            e.report
                        )
                    })
                    .collect()
            });
            Ok(())
        }
    }
}

/// The forms a listener's id takes in the trace store: as sent, and as the normalizer stores
/// an id (a keyed hash when it carries personal data or when user ids are hashed).
fn stored_forms(loaded: &Loaded, root: &Path, user: &str) -> Result<Vec<String>, CliError> {
    let n = encore_app::setup::normalizer(&loaded.config.telemetry, root)?;
    let mut forms = vec![user.to_owned(), n.user_id(user)];
    forms.dedup();
    Ok(forms)
}

fn user_rows(log: &encore_storage::EventLog, user: &str) -> Result<Vec<Value>, CliError> {
    use arrow::array::{Array, StringArray};
    let mut rows = Vec::new();
    log.scan(None, |b| {
        let Some(users) = b
            .column_by_name("user_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        else {
            return Ok(());
        };
        for i in 0..b.num_rows() {
            if !users.is_null(i) && users.value(i) == user {
                rows.push(encore_storage::json::row(b, i));
            }
        }
        Ok(())
    })?;
    Ok(rows)
}

fn write_jsonl(path: &Path, rows: &[Value]) -> Result<(), CliError> {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).map_err(|e| {
        CliError::failed(
            format!("cannot write {}: {e}", path.display()),
            "check --out",
        )
    })
}

/// Registered versions whose artifact lists `user` among its listeners.
fn versions_with(
    reg: &encore_registry::Registry,
    user: &str,
) -> Result<Vec<(encore_registry::Version, encore_models::artifact::Artifact)>, CliError> {
    let mut out = Vec::new();
    for v in reg.all_versions()? {
        let Ok(a) = reg.load_artifact(&v) else {
            continue;
        };
        if a.users.iter().any(|u| u == user) {
            out.push((v, a));
        }
    }
    Ok(out)
}

fn export(loaded: &Loaded, user: &str, dest: &Path, out: &Output) -> Result<(), CliError> {
    let (dir, ingestor) = crate::commands::events::open(loaded)?;
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(dest).map_err(|e| {
        CliError::failed(
            format!("cannot create {}: {e}", dest.display()),
            "check --out",
        )
    })?;
    let mut counts = serde_json::Map::new();
    let mut put = |name: &str, rows: Vec<Value>| -> Result<(), CliError> {
        counts.insert(name.into(), rows.len().into());
        write_jsonl(&dest.join(format!("{name}.jsonl")), &rows)
    };
    let plays = user_rows(ingestor.log(Table::Playback), user)?;
    let interactions = user_rows(ingestor.log(Table::Interaction), user)?;
    let kind = |r: &Value| r["kind"].as_str().unwrap_or("").to_owned();
    let (impressions, other): (Vec<Value>, Vec<Value>) = interactions
        .into_iter()
        .partition(|r| kind(r) == "impression");
    // experiment arms the listener was served under, as their events recorded them
    let mut arms = std::collections::BTreeSet::new();
    for r in plays.iter().chain(&impressions) {
        for a in r["experiments"].as_array().into_iter().flatten() {
            arms.insert(a.to_string());
        }
    }
    let exposures: Vec<Value> = impressions
        .iter()
        .filter(|r| r["experiments"].as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
        .collect();
    put("events", plays)?;
    put("interactions", other)?;
    put("impressions", impressions)?;
    put("exposures", exposures)?;
    put(
        "assignments",
        arms.iter()
            .filter_map(|a| serde_json::from_str(a).ok())
            .collect(),
    )?;
    put(
        "quarantine",
        encore_app::privacy::quarantined(ingestor.quarantine().dir(), user)
            .into_iter()
            .map(|(_, _, l)| serde_json::from_str(&l).unwrap_or(Value::String(l)))
            .collect(),
    )?;
    // online features
    let features = match encore_features::versions::Versions::new(&root).current()? {
        Some(cur) => encore_features::online::OnlineStore::open(&root)?.user_values(
            &cur.definitions,
            user,
            encore_core::time::now_ms(),
        )?,
        None => Vec::new(),
    };
    put("features", features)?;
    // traces: the spans, and their prompts and completions
    let spans = encore_telemetry::SpanStore::open(&root, Default::default())?;
    let forms = stored_forms(loaded, &root, user)?;
    let mut span_rows = Vec::new();
    let mut traces = std::collections::BTreeSet::new();
    for f in &forms {
        let filter = encore_telemetry::Filter {
            user: Some(f.clone()),
            ..Default::default()
        };
        for s in spans.list(&filter, 1_000_000, None)? {
            traces.insert(s.trace_id.clone());
            span_rows.push(serde_json::to_value(&s).unwrap_or_default());
        }
    }
    let mut content = Vec::new();
    for t in &traces {
        for s in spans.trace(t)? {
            if s.span.user_id.as_ref().is_some_and(|u| forms.contains(u)) {
                content.push(json!({"trace_id": t, "span_id": s.span.span_id, "input": s.input, "output": s.output}));
            }
        }
    }
    put("spans", span_rows)?;
    put("content", content)?;
    let trace_ids: Vec<String> = traces.into_iter().collect();
    let about = encore_evals::store::EvalStore::open(&root)?.about(&forms, &trace_ids)?;
    put("scores", about.scores)?;
    put("labels", about.queue_items)?;
    put("dataset_items", about.dataset_items)?;
    let reg = encore_registry::Registry::open(&root)?;
    put(
        "models",
        versions_with(&reg, user)?
            .into_iter()
            .map(|(v, _)| json!({"model": v.model, "version": v.version, "trained_on_their_data": true}))
            .collect(),
    )?;
    let manifest = json!({
        "user_id": user,
        "exported_ms": encore_core::time::now_ms(),
        "files": counts,
        "notes": [
            "assignments: encore assigns by hashing the listener id; it stores no assignment, so these are the experiment arms the listener's own events recorded",
            "models: versions whose training data included the listener (the artifact holds a vector learned from their listening)"
        ],
    });
    std::fs::write(
        dest.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )
    .map_err(|e| CliError::failed(format!("cannot write manifest: {e}"), "check --out"))?;
    crate::commands::access::audit_local(
        &root,
        "privacy export",
        "listener",
        &format!("to {}", dest.display()),
    );
    out.emit(&manifest, || {
        format!(
            "exported what encore holds about {user} to {}:\n{}\n",
            dest.display(),
            serde_json::to_string_pretty(&manifest["files"]).unwrap_or_default()
        )
    });
    Ok(())
}

fn erase(loaded: &Loaded, user: &str, out: &Output) -> Result<(), CliError> {
    let (dir, ingestor) = crate::commands::events::open(loaded)?;
    let root = dir.path().to_path_buf();
    let key = encore_app::setup::privacy_key(&root)?;
    let spans = encore_telemetry::SpanStore::open(&root, Default::default())?;
    let evals = std::sync::Mutex::new(encore_evals::store::EvalStore::open(&root)?);
    let online = match encore_features::versions::Versions::new(&root).current()? {
        Some(cur) => Some((
            encore_features::online::OnlineStore::open(&root)?,
            cur.definitions,
        )),
        None => None,
    };
    let stores = encore_app::privacy::Stores {
        root: &root,
        ingestor: &ingestor,
        spans: Some(&spans),
        evals: Some(&evals),
        online: online.as_ref().map(|(s, d)| (s, d)),
        privacy_key: &key,
        forms: stored_forms(loaded, &root, user)?,
    };
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let answer = encore_app::privacy::erase(&stores, user, &actor)?;
    crate::commands::access::audit_local(
        &root,
        "privacy erase",
        answer["listener"]
            .as_str()
            .unwrap_or("")
            .get(..16)
            .unwrap_or(""),
        &answer["removed"].to_string(),
    );
    out.emit(&answer, || {
        format!(
            "erased listener (ledger #{}, {}):\n{}\n",
            answer["ledger_seq"],
            answer["listener"]
                .as_str()
                .unwrap_or("")
                .get(..16)
                .unwrap_or(""),
            serde_json::to_string_pretty(&answer["removed"]).unwrap_or_default()
        )
    });
    Ok(())
}

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
use std::path::{Path, PathBuf};

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
    let n = crate::commands::serve::normalizer(&loaded.config.telemetry, root)?;
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

/// Quarantined rows that name `user` (their raw text is parsed when it is JSON).
fn quarantined(dir: &Path, user: &str) -> Vec<(PathBuf, usize, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if names(line, user) {
                out.push((p.clone(), i, line.to_owned()));
            }
        }
    }
    out
}

/// Whether the JSON text `line` (or a JSON document in one of its strings) has a string value
/// equal to `user`.
fn names(line: &str, user: &str) -> bool {
    fn walk(v: &Value, user: &str) -> bool {
        match v {
            Value::String(s) => {
                s == user
                    || (s.starts_with(['{', '['])
                        && serde_json::from_str::<Value>(s).is_ok_and(|x| walk(&x, user)))
            }
            Value::Array(a) => a.iter().any(|x| walk(x, user)),
            Value::Object(o) => o.values().any(|x| walk(x, user)),
            _ => false,
        }
    }
    line.contains(user) && serde_json::from_str::<Value>(line).map_or(true, |v| walk(&v, user))
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
        let Ok(a) = encore_models::artifact::Artifact::load(&reg.artifact_path(&v)) else {
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
        quarantined(ingestor.quarantine().dir(), user)
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

/// Rewrites the simulated worlds' files in the data directory without `user`'s rows.
fn scrub_worlds(root: &Path, user: &str) -> Result<u64, CliError> {
    let mut removed = 0u64;
    let worlds = root.join("worlds");
    let mut stack = vec![worlds];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.display().to_string();
            if name.ends_with(".jsonl") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let kept: Vec<&str> = text.lines().filter(|l| !names(l, user)).collect();
                let gone = text.lines().count() - kept.len();
                if gone > 0 {
                    removed += gone as u64;
                    replace_file(&p, format!("{}\n", kept.join("\n")).as_bytes())?;
                }
            } else if name.ends_with(".parquet") {
                removed += scrub_parquet(&p, user)?;
            }
        }
    }
    Ok(removed)
}

/// Rewrites a Parquet file without the rows whose `user_id` is `user`.
fn scrub_parquet(path: &Path, user: &str) -> Result<u64, CliError> {
    use arrow::array::{Array, BooleanArray, StringArray};
    let failed =
        |e: String| CliError::failed(format!("{}: {e}", path.display()), "see the message");
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| failed(e.to_string()))?;
    let schema = reader.schema().clone();
    if schema.field_with_name("user_id").is_err() {
        return Ok(0);
    }
    let mut batches = Vec::new();
    let mut removed = 0u64;
    for b in reader.build().map_err(|e| failed(e.to_string()))? {
        let b = b.map_err(|e| failed(e.to_string()))?;
        let users = b
            .column_by_name("user_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| failed("user_id is not text".into()))?;
        let keep: BooleanArray = (0..b.num_rows())
            .map(|i| Some(users.is_null(i) || users.value(i) != user))
            .collect();
        let kept =
            arrow::compute::filter_record_batch(&b, &keep).map_err(|e| failed(e.to_string()))?;
        removed += (b.num_rows() - kept.num_rows()) as u64;
        batches.push(kept);
    }
    if removed == 0 {
        return Ok(0);
    }
    let mut buf = Vec::new();
    {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(props))
            .map_err(|e| failed(e.to_string()))?;
        for b in &batches {
            w.write(b).map_err(|e| failed(e.to_string()))?;
        }
        w.close().map_err(|e| failed(e.to_string()))?;
    }
    replace_file(path, &buf)?;
    Ok(removed)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let failed = |e: std::io::Error| {
        CliError::failed(
            format!("cannot rewrite {}: {e}", path.display()),
            "check disk space and permissions",
        )
    };
    let tmp = path.with_extension("erasing");
    let mut f = std::fs::File::create(&tmp).map_err(failed)?;
    f.write_all(bytes).map_err(failed)?;
    f.sync_all().map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

fn erase(loaded: &Loaded, user: &str, out: &Output) -> Result<(), CliError> {
    if user.trim().is_empty() {
        return Err(CliError::usage(
            "an empty listener id",
            "name the listener to erase",
        ));
    }
    let (dir, ingestor) = crate::commands::events::open(loaded)?;
    let root = dir.path().to_path_buf();
    let key = crate::commands::access::privacy_key(&root)?;
    let listener = encore_access::ledger::listener_hash(&key, user);
    let mut report = serde_json::Map::new();
    // the event log: what is in the WAL is sealed into segments, which are then rewritten
    for t in Table::ALL {
        let log = ingestor.log(t);
        log.seal()?;
        let u = user.to_owned();
        let stats = log.rewrite(i64::MIN, i64::MAX, true, move |b| {
            use arrow::array::{Array, BooleanArray, StringArray};
            let Some(users) = b
                .column_by_name("user_id")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            else {
                return Ok(b);
            };
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| Some(users.is_null(i) || users.value(i) != u))
                .collect();
            arrow::compute::filter_record_batch(&b, &keep).map_err(|e| {
                encore_storage::StorageError::Arrow {
                    message: e.to_string(),
                }
            })
        })?;
        report.insert(
            t.name().into(),
            (stats.rows_before - stats.rows_after).into(),
        );
    }
    // the quarantine: rejected rows that name them; damaged originals that hold the id
    let mut q = 0u64;
    let mut by_file: std::collections::BTreeMap<PathBuf, Vec<usize>> = Default::default();
    for (p, line, _) in quarantined(ingestor.quarantine().dir(), user) {
        by_file.entry(p).or_default().push(line);
    }
    for (p, lines) in by_file {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let kept: String = text
            .lines()
            .enumerate()
            .filter(|(i, _)| !lines.contains(i))
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        q += lines.len() as u64;
        replace_file(&p, kept.as_bytes())?;
    }
    let damaged = root.join("quarantine").join("damaged");
    let mut damaged_removed = 0u64;
    for f in files_under(&damaged) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        if bytes.windows(user.len()).any(|w| w == user.as_bytes()) {
            std::fs::remove_file(&f).map_err(|e| {
                CliError::failed(
                    format!("cannot remove {}: {e}", f.display()),
                    "check permissions",
                )
            })?;
            damaged_removed += 1;
        }
    }
    report.insert("quarantined_rows".into(), q.into());
    report.insert("damaged_files".into(), damaged_removed.into());
    report.insert("world_rows".into(), scrub_worlds(&root, user)?.into());
    // online features
    let keys = match encore_features::versions::Versions::new(&root).current()? {
        Some(cur) => {
            encore_features::online::OnlineStore::open(&root)?.erase_user(&cur.definitions, user)?
        }
        None => 0,
    };
    report.insert("feature_keys".into(), keys.into());
    // traces, then what evaluation kept of them
    let forms = stored_forms(loaded, &root, user)?;
    let spans = encore_telemetry::SpanStore::open(&root, Default::default())?;
    let erased = spans.erase_users(&forms)?;
    drop(spans);
    report.insert("spans".into(), erased.spans.into());
    report.insert("span_content".into(), erased.content_rows.into());
    let evals = encore_evals::store::EvalStore::open(&root)?.erase(&forms, &erased.trace_ids)?;
    report.insert("evaluation_rows".into(), evals.into());
    // models: the id leaves the artifact; the version is flagged for retraining
    let mut reg = encore_registry::Registry::open(&root)?;
    let mut flagged = Vec::new();
    for (v, mut a) in versions_with(&reg, user)? {
        for u in a.users.iter_mut().filter(|u| *u == user) {
            *u = format!("erased-{}", &listener[..16]);
        }
        let (path, checksum, _) = a.store(&reg.artifacts_dir())?;
        reg.replace_artifact(&v.model, v.version, &path.display().to_string(), &checksum)?;
        reg.flag_erasure(&v.model, v.version, &listener)?;
        flagged.push(format!("{}@{}", v.model, v.version));
    }
    report.insert("models_flagged".into(), json!(flagged));
    let report = Value::Object(report);
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let seq = encore_access::ledger::record(&root, &listener, &actor, &report)?;
    crate::commands::access::audit_local(
        &root,
        "privacy erase",
        &listener[..16],
        &report.to_string(),
    );
    drop(ingestor);
    drop(dir);
    let answer = json!({"ledger_seq": seq, "listener": listener, "removed": report});
    out.emit(&answer, || {
        format!(
            "erased listener (ledger #{seq}, {}):\n{}\n",
            &listener[..16],
            serde_json::to_string_pretty(&answer["removed"]).unwrap_or_default()
        )
    });
    Ok(())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

//! Erasure of one listener (GDPR article 17) from every store of a data directory, shared by
//! `encore privacy erase` (on a stopped server's directory, [`erase`]) and
//! `POST /v1/privacy/erasures` (through a running node's own handles, [`erase_live`]).
//!
//! - the event log: the WAL is sealed into segments, which are rewritten without the rows;
//! - the quarantine: rejected rows naming them are dropped; damaged originals holding the id go;
//! - simulated worlds kept in the directory: their rows are dropped;
//! - the online feature store: their entities are removed and the file compacted;
//! - the trace store: their spans and the spans' content;
//! - the evaluation store: scores, queue items and dataset items of their traces (secure delete);
//! - model artifacts: the id is replaced by its keyed hash; the version is flagged for
//!   retraining on its card;
//! - the ledger: a keyed hash of the id, when, who, and what went.

use encore_core::{Coded, ErrorCode};
use encore_ingest::{Ingestor, Table};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why an erasure stopped (what was done before it is in the stores, not in the ledger).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PrivacyError {
    pub code: ErrorCode,
    pub message: String,
}

impl Coded for PrivacyError {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

fn fail<E: Coded>(e: E) -> PrivacyError {
    PrivacyError {
        code: e.code(),
        message: e.to_string(),
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> PrivacyError {
    PrivacyError {
        code: ErrorCode::Unavailable,
        message: format!("{}: {e}", path.display()),
    }
}

/// The stores of one data directory, as the caller holds them.
#[derive(Debug)]
pub struct Stores<'a> {
    pub root: &'a Path,
    pub ingestor: &'a Ingestor,
    pub spans: Option<&'a encore_telemetry::SpanStore>,
    pub evals: Option<&'a Mutex<encore_evals::store::EvalStore>>,
    pub online: Option<(
        &'a encore_features::online::OnlineStore,
        &'a encore_features::Definitions,
    )>,
    /// the data directory's privacy key (the ledger's hashes)
    pub privacy_key: &'a [u8],
    /// the forms the listener's id takes in the trace store (as sent, hashed)
    pub forms: Vec<String>,
}

/// Quarantined rows that name `user` (their raw text is parsed when it is JSON).
pub fn quarantined(dir: &Path, user: &str) -> Vec<(PathBuf, usize, String)> {
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

/// Whether a quarantined row names `user`: its raw text's `user_id` when the row was JSON; the
/// id as a whole token of the raw text otherwise (a CSV line, a line that did not parse).
fn names(line: &str, user: &str) -> bool {
    let token = |t: &str| holds_token(t.as_bytes(), user.as_bytes());
    let Ok(entry) = serde_json::from_str::<Value>(line) else {
        return token(line);
    };
    match entry.get("raw").and_then(Value::as_str) {
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(row) if row.is_object() => row.get("user_id").and_then(Value::as_str) == Some(user),
            _ => token(raw),
        },
        None => entry.get("user_id").and_then(Value::as_str) == Some(user),
    }
}

/// Rewrites the simulated worlds kept in the data directory without the rows whose `user_id`
/// is `user` (events, interactions, the listener table; the catalog has none), and updates each
/// world's manifest so `encore sim verify` still holds.
fn scrub_worlds(root: &Path, user: &str) -> Result<u64, PrivacyError> {
    let mut removed = 0u64;
    let Ok(worlds) = std::fs::read_dir(root.join("worlds")) else {
        return Ok(0);
    };
    for world in worlds.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let mut changed: Vec<(String, u64)> = Vec::new();
        for p in files_under(&world) {
            let rel = p
                .strip_prefix(&world)
                .map_or_else(|_| p.display().to_string(), |r| r.display().to_string());
            let gone = if rel.ends_with(".jsonl") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let mine = |l: &str| {
                    serde_json::from_str::<Value>(l)
                        .is_ok_and(|v| v.get("user_id").and_then(Value::as_str) == Some(user))
                };
                let kept: Vec<&str> = text.lines().filter(|l| !mine(l)).collect();
                let gone = (text.lines().count() - kept.len()) as u64;
                if gone > 0 {
                    let body: String = kept.iter().map(|l| format!("{l}\n")).collect();
                    replace_file(&p, body.as_bytes())?;
                }
                gone
            } else if rel.ends_with(".parquet") {
                scrub_parquet(&p, user)?
            } else {
                0
            };
            if gone > 0 {
                removed += gone;
                changed.push((rel, gone));
            }
        }
        if !changed.is_empty() {
            update_manifest(&world, &changed)?;
        }
    }
    Ok(removed)
}

/// The world's manifest after rows left files: their sizes, hashes and row counts.
fn update_manifest(world: &Path, changed: &[(String, u64)]) -> Result<(), PrivacyError> {
    use sha2::Digest;
    let path = world.join("manifest.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut m: Value = serde_json::from_str(&text).map_err(|e| io(&path, e))?;
    for f in m["files"].as_array_mut().into_iter().flatten() {
        let Some((rel, gone)) = changed.iter().find(|(r, _)| f["path"] == r.as_str()) else {
            continue;
        };
        let bytes = std::fs::read(world.join(rel)).map_err(|e| io(&world.join(rel), e))?;
        f["bytes"] = Value::from(bytes.len() as u64);
        f["sha256"] = Value::from(format!("{:x}", sha2::Sha256::digest(&bytes)));
        f["rows"] = Value::from(f["rows"].as_u64().unwrap_or(0).saturating_sub(*gone));
    }
    let body = serde_json::to_vec_pretty(&m).map_err(|e| io(&path, e))?;
    replace_file(&path, &body)
}

/// Rewrites a Parquet file without the rows whose `user_id` is `user`.
fn scrub_parquet(path: &Path, user: &str) -> Result<u64, PrivacyError> {
    use arrow::array::{Array, BooleanArray, StringArray};
    let failed = |e: String| io(path, e);
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
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), PrivacyError> {
    use std::io::Write;
    let tmp = path.with_extension("erasing");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// Removes `user` from every store of `s`; records the erasure in the ledger as `actor`.
/// Returns `{ledger_seq, listener (keyed hash), removed: {store: count}}`.
pub fn erase(s: &Stores<'_>, user: &str, actor: &str) -> Result<Value, PrivacyError> {
    if user.trim().is_empty() {
        return Err(PrivacyError {
            code: ErrorCode::InvalidArgument,
            message: "an empty listener id: name the listener to erase".into(),
        });
    }
    let listener = encore_access::ledger::listener_hash(s.privacy_key, user);
    let mut report = serde_json::Map::new();
    // the event log: what is in the WAL is sealed into segments, which are then rewritten
    for t in Table::ALL {
        let log = s.ingestor.log(t);
        log.seal().map_err(fail)?;
        let u = user.to_owned();
        let stats = log
            .rewrite(i64::MIN, i64::MAX, true, move |b| {
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
            })
            .map_err(fail)?;
        report.insert(
            t.name().into(),
            (stats.rows_before - stats.rows_after).into(),
        );
    }
    // the quarantine: rejected rows that name them; damaged originals that hold the id
    let mut q = 0u64;
    let mut by_file: std::collections::BTreeMap<PathBuf, Vec<usize>> = Default::default();
    for (p, line, _) in quarantined(s.ingestor.quarantine().dir(), user) {
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
    // damaged originals cannot be parsed: one that holds the id as a token goes, but only
    // when the id is a listener's (the log had rows of theirs), so erasing a track or artist
    // id by mistake does not delete evidence of damage
    let listener_rows: u64 = Table::ALL
        .iter()
        .filter_map(|t| report.get(t.name()).and_then(Value::as_u64))
        .sum::<u64>()
        + q;
    let mut damaged = 0u64;
    for f in files_under(&s.root.join("quarantine").join("damaged")) {
        if listener_rows == 0 {
            break;
        }
        let bytes = std::fs::read(&f).unwrap_or_default();
        if holds_token(&bytes, user.as_bytes()) {
            std::fs::remove_file(&f).map_err(|e| io(&f, e))?;
            damaged += 1;
        }
    }
    report.insert("quarantined_rows".into(), q.into());
    report.insert("damaged_files".into(), damaged.into());
    report.insert("world_rows".into(), scrub_worlds(s.root, user)?.into());
    let keys = match s.online {
        Some((store, defs)) => store.erase_user(defs, user).map_err(fail)?,
        None => 0,
    };
    report.insert("feature_keys".into(), keys.into());
    // traces, then what evaluation kept of them
    let erased = match s.spans {
        Some(spans) => spans.erase_users(&s.forms).map_err(fail)?,
        None => Default::default(),
    };
    report.insert("spans".into(), erased.spans.into());
    report.insert("span_content".into(), erased.content_rows.into());
    let evals = match s.evals {
        Some(e) => e
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .erase(&s.forms, &erased.trace_ids)
            .map_err(fail)?,
        None => 0,
    };
    report.insert("evaluation_rows".into(), evals.into());
    // models: the id leaves the artifact; the version is flagged for retraining
    let mut reg = encore_registry::Registry::open(s.root).map_err(fail)?;
    let mut flagged = Vec::new();
    for v in reg.all_versions().map_err(fail)? {
        let Ok(mut a) = reg.load_artifact(&v) else {
            continue;
        };
        if !a.users.iter().any(|u| u == user) {
            continue;
        }
        for u in a.users.iter_mut().filter(|u| *u == user) {
            *u = format!("erased-{}", &listener[..16]);
        }
        let stored = reg.store_artifact(&a).map_err(fail)?;
        reg.replace_artifact(&v.model, v.version, &stored.key, &stored.checksum)
            .map_err(fail)?;
        reg.flag_erasure(&v.model, v.version, &listener)
            .map_err(fail)?;
        flagged.push(format!("{}@{}", v.model, v.version));
    }
    report.insert("models_flagged".into(), json!(flagged));
    let report = Value::Object(report);
    let seq = encore_access::ledger::record(s.root, &listener, actor, &report).map_err(fail)?;
    Ok(json!({"ledger_seq": seq, "listener": listener, "removed": report}))
}

/// Whether `id` occurs in `hay` as a whole token: erasing `u1` must not touch a file that
/// only holds `u12`.
fn holds_token(hay: &[u8], id: &[u8]) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    !id.is_empty()
        && hay.windows(id.len()).enumerate().any(|(i, w)| {
            w == id
                && (i == 0 || !word(hay[i - 1]))
                && hay.get(i + id.len()).is_none_or(|b| !word(*b))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_match_whole_tokens_only() {
        assert!(super::holds_token(b"{\"user_id\":\"u1\"}", b"u1"));
        assert!(!super::holds_token(b"{\"user_id\":\"u12\"}", b"u1"));
        assert!(!super::holds_token(b"xu1", b"u1"));
        assert!(!super::holds_token(b"anything", b""));
        assert!(super::names(r#"{"user_id": "u1", "n": 3}"#, "u1"));
        assert!(!super::names(r#"{"user_id": "u12"}"#, "u1"));
        assert!(super::names(r#"{"raw": "{\"user_id\": \"u1\"}"}"#, "u1"));
        assert!(super::names(r#"{"raw": "e1,u1,2024"}"#, "u1"));
        // another row that merely plays track t1 is not t1's
        assert!(!super::names(
            r#"{"raw": "{\"user_id\": \"u9\", \"item_id\": \"t1\"}"}"#,
            "t1"
        ));
    }
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

/// What a running node holds of a data directory.
#[derive(Debug)]
pub struct Live<'a> {
    pub root: &'a Path,
    pub privacy_key: &'a [u8],
    pub ingestor: &'a Ingestor,
    pub telemetry: Option<&'a crate::telemetry::Telemetry>,
    pub evals: Option<&'a crate::evals::Evals>,
    pub features: Option<&'a crate::features::OnlineFeatures>,
    pub serving: Option<&'a crate::serving::Serving>,
}

/// [`erase`] through a running node's handles, then forgets what the node holds of `user` in
/// memory (recent plays, cached lists).
pub fn erase_live(node: &Live<'_>, user: &str, actor: &str) -> Result<Value, PrivacyError> {
    let forms = match node.telemetry {
        Some(t) => {
            let mut f = vec![user.to_owned(), t.normalizer.user_id(user)];
            f.dedup();
            f
        }
        None => vec![user.to_owned()],
    };
    let stores = Stores {
        root: node.root,
        ingestor: node.ingestor,
        spans: node.telemetry.map(|t| &t.store),
        evals: node.evals.map(|e| e.store.as_ref()),
        online: node
            .features
            .map(|f| (f.store.as_ref(), f.definitions.as_ref())),
        privacy_key: node.privacy_key,
        forms,
    };
    let answer = erase(&stores, user, actor)?;
    if let Some(s) = node.serving {
        s.served.recent.forget(user);
        s.served.cache.invalidate(user);
    }
    Ok(answer)
}

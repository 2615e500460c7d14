//! Rejected rows, kept with their reasons in the data directory and listable later.

use crate::error::IngestError;
use crate::source::Reject;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One quarantined row, as stored (one JSON object per line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// the ingest run that rejected it
    pub ingest_id: String,
    pub table: String,
    pub location: String,
    pub violations: Vec<crate::contract::Violation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    pub fn new(dir: PathBuf) -> Quarantine {
        Quarantine { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `rejects` to the run's file `<ingest_id>.jsonl`; returns its path.
    pub fn write(
        &self,
        ingest_id: &str,
        table: &str,
        rejects: &[Reject],
    ) -> Result<Option<PathBuf>, IngestError> {
        if rejects.is_empty() {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.dir).map_err(IngestError::io(&self.dir))?;
        let path = self.dir.join(format!("{ingest_id}.jsonl"));
        let mut buf = Vec::new();
        for r in rejects {
            let entry = QuarantineEntry {
                ingest_id: ingest_id.to_owned(),
                table: table.to_owned(),
                location: r.location.clone(),
                violations: r.violations.clone(),
                raw: r.raw.clone(),
            };
            serde_json::to_writer(&mut buf, &entry).map_err(|e| IngestError::Internal {
                message: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(IngestError::io(&path))?;
        let before = file.metadata().map_err(IngestError::io(&path))?.len();
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // a partial line must not run into the next write's first line: cut it back
            let _ = file.set_len(before).and_then(|()| file.sync_data());
            return Err(IngestError::Io { path, source: e });
        }
        Ok(Some(path))
    }

    /// The most recent entries first, at most `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<QuarantineEntry>, IngestError> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(IngestError::Io {
                    path: self.dir.clone(),
                    source: e,
                });
            }
        };
        files.sort();
        let mut out = Vec::new();
        for path in files.iter().rev() {
            let text = std::fs::read_to_string(path).map_err(IngestError::io(path))?;
            let mut entries: Vec<QuarantineEntry> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            entries.reverse();
            for e in entries {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(e);
            }
        }
        Ok(out)
    }
}

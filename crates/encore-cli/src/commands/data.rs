//! `encore data info`

use crate::cli::DataCommand;
use crate::error::CliError;
use crate::output::{Output, human_bytes};
use encore_config::Loaded;
use encore_storage::DataDir;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct Info {
    path: String,
    format_version: u32,
    created_by: String,
    entries: Vec<(String, u64)>,
}

fn size_of(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| rd.filter_map(Result::ok).map(|e| size_of(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

pub fn run(loaded: &Loaded, cmd: &DataCommand, out: &Output) -> Result<(), CliError> {
    match cmd {
        DataCommand::Info => {
            let dir = DataDir::open(&loaded.config.data.dir)?;
            let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir.path())
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| {
                            (
                                e.file_name().to_string_lossy().into_owned(),
                                size_of(&e.path()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            entries.sort();
            let info = Info {
                path: dir.path().display().to_string(),
                format_version: dir.format().format_version,
                created_by: dir.format().created_by.clone(),
                entries,
            };
            out.emit(&info, || {
                let mut text = format!(
                    "data directory {} (format {}, created by {})\n",
                    info.path, info.format_version, info.created_by
                );
                for (name, bytes) in &info.entries {
                    text.push_str(&format!("  {name:<20} {}\n", human_bytes(*bytes)));
                }
                text
            });
        }
    }
    Ok(())
}

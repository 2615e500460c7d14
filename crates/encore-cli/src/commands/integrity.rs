//! `encore events verify|repair` and `encore traces verify|repair`: read-only checks of a log's
//! files, and repair of damage (every intact record kept, the damaged file moved unchanged into
//! `<data>/quarantine/damaged/`).

use crate::error::CliError;
use crate::output::{Output, thousands};
use encore_storage::{DataDir, EventLog, Ids, Inspection, RepairReport, TableSpec};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One log of the data directory: its name, where it lives, its spec, what it promises of ids.
pub type TableDir = (String, PathBuf, TableSpec, Ids);

#[derive(Serialize)]
struct VerifyReport {
    ok: bool,
    problems: Vec<String>,
    notes: Vec<String>,
    tables: Vec<(String, Inspection)>,
}

/// Checks every table without changing a byte: segments against their checksums, WAL records,
/// ids once within the deduplication window. Fails (exit status) on any problem.
pub fn verify(tables: &[TableDir], what: &str, out: &Output) -> Result<(), CliError> {
    let mut report = VerifyReport {
        ok: true,
        problems: Vec::new(),
        notes: Vec::new(),
        tables: Vec::new(),
    };
    for (name, dir, spec, ids) in tables {
        let found = encore_storage::inspect(dir, spec, *ids)?;
        report
            .problems
            .extend(found.problems.iter().map(|p| format!("{name}: {p}")));
        report
            .notes
            .extend(found.notes.iter().map(|p| format!("{name}: {p}")));
        report.tables.push((name.clone(), found));
    }
    report.ok = report.problems.is_empty();
    out.emit(&report, || {
        let rows: u64 = report
            .tables
            .iter()
            .map(|(_, s)| s.sealed_rows + s.unsealed_rows)
            .sum();
        let mut text = if report.ok {
            format!(
                "{what} ok: {} rows, every id once within the window, every segment and WAL \
                 record as written",
                thousands(rows)
            )
        } else {
            report.problems.join("\n")
        };
        for n in &report.notes {
            text.push_str(&format!("\nnote: {n}"));
        }
        text
    });
    if !report.ok {
        return Err(CliError::failed(
            format!("the {what} has {} problem(s)", report.problems.len()),
            "see the list above; damage is repaired by the `repair` command of the same noun",
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct Repaired {
    tables: Vec<(String, RepairReport)>,
}

/// Repairs every table (the data directory is held, so nothing else writes meanwhile).
pub fn repair_tables(
    dir: &DataDir,
    tables: &[TableDir],
) -> Result<Vec<(String, RepairReport)>, CliError> {
    let quarantine = quarantine_dir(dir.path());
    let mut out = Vec::new();
    for (name, path, spec, _) in tables {
        let r = EventLog::repair(
            path,
            spec,
            &quarantine.join(name),
            &encore_storage::fs::RealFs,
        )?;
        out.push((name.clone(), r));
    }
    Ok(out)
}

/// [`repair_tables`], reported.
pub fn repair(dir: &DataDir, tables: &[TableDir], out: &Output) -> Result<(), CliError> {
    let report = Repaired {
        tables: repair_tables(dir, tables)?,
    };
    out.emit(&report, || {
        let mut lines = Vec::new();
        for (name, r) in &report.tables {
            for w in &r.wal {
                let lost: Vec<String> = w
                    .wal
                    .damage
                    .iter()
                    .map(|d| format!("{} bytes at offset {}", d.bytes, d.offset))
                    .collect();
                lines.push(format!(
                    "{name}: {}: lost {}{}; kept {} intact records ({} rows); original in {}",
                    w.wal.file.display(),
                    if lost.is_empty() {
                        format!("a torn record of {} bytes", w.wal.torn_bytes)
                    } else {
                        lost.join(", ")
                    },
                    if w.damaged_rows_readable > 0 {
                        format!(
                            " (~{} rows, ids such as {})",
                            w.damaged_rows_readable,
                            w.damaged_ids.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                        )
                    } else {
                        String::new()
                    },
                    w.wal.records_kept,
                    thousands(w.rows_kept),
                    w.wal.quarantined.display()
                ));
            }
            for s in &r.segments {
                lines.push(format!(
                    "{name}: {}: lost {} rows in {} damaged range(s){}; kept {} rows; original in {}",
                    s.segment,
                    thousands(s.rows_lost),
                    s.damage.len(),
                    if s.lost_ids.is_empty() {
                        String::new()
                    } else {
                        format!(" (ids such as {})", s.lost_ids.iter().take(3).cloned().collect::<Vec<_>>().join(", "))
                    },
                    thousands(s.rows_kept),
                    s.quarantined.display()
                ));
            }
        }
        if lines.is_empty() {
            "nothing to repair: no damage found".to_owned()
        } else {
            lines.join("\n")
        }
    });
    Ok(())
}

/// Where repair moves damaged files: beside the rejected rows, apart from them.
pub fn quarantine_dir(root: &Path) -> PathBuf {
    root.join("quarantine").join("damaged")
}

//! `encore ingest`, `encore import ...`, `encore events stats|quarantine|verify`

use crate::cli::{EventsCommand, ImportCommand, IngestArgs, TableArg};
use crate::error::CliError;
use crate::output::{Output, human_bytes, thousands};
use encore_config::Loaded;
use encore_core::time::MS_PER_DAY;
use encore_ingest::import::ImportReport;
use encore_ingest::{IngestOptions, IngestSummary, Ingestor, Table};
use encore_sim::output::MANIFEST_FILE;
use encore_storage::{DataDir, LogOptions};
use std::path::PathBuf;

/// The ingest settings of the config.
pub fn ingest_options(loaded: &Loaded) -> IngestOptions {
    let c = &loaded.config.ingest;
    IngestOptions {
        dedup_window_ms: i64::from(c.dedup_window_days) * MS_PER_DAY,
        log: LogOptions {
            seal_rows: c.seal_rows as usize,
            seal_interval: loaded.config.storage.seal_interval(),
            queue_capacity: c.write_queue as usize,
            ..LogOptions::default()
        },
    }
}

/// Opens the data directory (taking its lock) and the ingest path inside it.
pub fn open(loaded: &Loaded) -> Result<(DataDir, Ingestor), CliError> {
    let dir = DataDir::open(&loaded.config.data.dir)?;
    let ingestor = Ingestor::open(dir.path(), ingest_options(loaded))?;
    Ok((dir, ingestor))
}

/// Files to ingest: plain files as given; a simulated world's directory expands to its event
/// files, and its catalog is loaded first (as source `sim`).
fn expand(ingestor: &Ingestor, paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for p in paths {
        if !p.is_dir() {
            files.push(p.clone());
            continue;
        }
        let manifest_path = p.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).map_err(|_| {
            CliError::usage(
                format!("{} is a directory without a {MANIFEST_FILE}", p.display()),
                "pass event files, or a directory written by `encore sim generate`",
            )
        })?;
        let manifest: encore_sim::Manifest = serde_json::from_str(&text).map_err(|e| {
            CliError::usage(
                format!("{}: {e}", manifest_path.display()),
                "regenerate the world",
            )
        })?;
        ingestor
            .catalog_mut()
            .replace_from_dir("sim", &p.join("catalog"))?;
        files.extend(
            manifest
                .files
                .iter()
                .filter(|f| f.kind == "playback" || f.kind == "interaction")
                .map(|f| p.join(&f.path)),
        );
    }
    Ok(files)
}

/// Ingests `paths` with a progress bar; shared by `ingest` and `demo`.
pub fn ingest_paths(
    ingestor: &Ingestor,
    paths: &[PathBuf],
    table: Option<Table>,
    strict: bool,
    out: &Output,
) -> Result<IngestSummary, CliError> {
    let files = expand(ingestor, paths)?;
    let bar = out.progress_bytes(0, "ingesting");
    let summary = ingestor.ingest_files(&files, table, strict, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    // everything ingested is durable in the WAL; sealing makes it Parquet for other tools too
    for t in Table::ALL {
        ingestor.log(t).seal()?;
    }
    Ok(summary)
}

pub fn summary_text(s: &IngestSummary) -> String {
    let rate = (s.accepted + s.rejected + s.duplicates) as f64 / s.seconds.max(1e-9);
    let mut text = format!(
        "accepted {}, rejected {}, duplicates {}, unknown items {} in {:.1} s ({} rows/s)\n",
        thousands(s.accepted),
        thousands(s.rejected),
        thousands(s.duplicates),
        thousands(s.unknown_items),
        s.seconds,
        thousands(rate as u64),
    );
    if !s.rejects_by_rule.is_empty() {
        let rules: Vec<String> = s
            .rejects_by_rule
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        text.push_str(&format!("rejects by rule: {}\n", rules.join(", ")));
    }
    for r in &s.first_rejects {
        text.push_str(&format!("  {r}\n"));
    }
    if let Some(q) = &s.quarantined_to {
        text.push_str(&format!(
            "rejected rows and reasons: {} (see `encore events quarantine`)\n",
            q.display()
        ));
    }
    if s.aborted {
        text.push_str("strict: files with bad rows were not stored\n");
    }
    text
}

/// Refuses a Spotify streaming-history export given to `ingest` (its rows are not encore
/// events), pointing to the importer that reads it.
fn refuse_spotify_exports(paths: &[PathBuf]) -> Result<(), CliError> {
    use std::io::Read;
    for p in paths.iter().filter(|p| p.is_file()) {
        let mut head = Vec::with_capacity(64 << 10);
        if let Ok(f) = std::fs::File::open(p) {
            let _ = f.take(64 << 10).read_to_end(&mut head);
        }
        if encore_ingest::spotify::looks_like_spotify_export(&head) {
            return Err(CliError::usage(
                format!(
                    "{} is a Spotify streaming-history export, not encore events",
                    p.display()
                ),
                format!(
                    "import it with `encore import spotify-history {} --user NAME`, together \
                     with the export's other files",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}

pub fn ingest(loaded: &Loaded, args: &IngestArgs, out: &Output) -> Result<(), CliError> {
    refuse_spotify_exports(&args.paths)?;
    let (_dir, ingestor) = open(loaded)?;
    let table = args.table.map(|t| match t {
        TableArg::Playback => Table::Playback,
        TableArg::Interaction => Table::Interaction,
    });
    let summary = ingest_paths(&ingestor, &args.paths, table, args.strict, out)?;
    out.emit(&summary, || summary_text(&summary));
    if summary.aborted {
        return Err(CliError::failed(
            format!(
                "strict ingest: {} bad row(s), their files were not stored",
                summary.rejected
            ),
            "fix the rows listed above, or ingest without --strict to keep the good rows",
        ));
    }
    if summary.rejected > 0 && summary.accepted == 0 && summary.duplicates == 0 {
        return Err(CliError::failed(
            format!("every row was rejected ({})", thousands(summary.rejected)),
            "see the reasons above and `encore events quarantine`",
        ));
    }
    Ok(())
}

fn import_text(r: &ImportReport) -> String {
    let c = &r.catalog;
    let mut dropped = String::new();
    if !r.dropped.is_empty() {
        let reasons: Vec<String> = r
            .dropped
            .iter()
            .map(|(why, n)| format!("{why} {}", thousands(*n)))
            .collect();
        dropped = format!("left out before ingest: {}\n", reasons.join(", "));
        for e in &r.dropped_examples {
            dropped.push_str(&format!("  {e}\n"));
        }
    }
    format!(
        "imported {}: {} users, {} rows\ncatalog: {} artists, {} tracks, {} items, {} tags, {} tag assignments\n{}{dropped}",
        r.source,
        thousands(r.users),
        thousands(r.rows),
        thousands(c.artists),
        thousands(c.tracks),
        thousands(c.items),
        thousands(c.tags),
        thousands(c.tag_assignments),
        summary_text(&r.ingest)
    )
}

pub fn import(loaded: &Loaded, cmd: ImportCommand, out: &Output) -> Result<(), CliError> {
    let (_dir, ingestor) = open(loaded)?;
    let report = match &cmd {
        ImportCommand::HetrecLastfm { dir } => {
            encore_ingest::import::hetrec_lastfm(&ingestor, dir)?
        }
        ImportCommand::Movielens { dir } => encore_ingest::import::movielens(&ingestor, dir)?,
        ImportCommand::SpotifyHistory { files, user } => {
            encore_ingest::spotify::spotify_history(&ingestor, files, user)?
        }
    };
    for t in Table::ALL {
        ingestor.log(t).seal()?;
    }
    out.emit(&report, || import_text(&report));
    Ok(())
}

/// The event tables of the data directory under `root`: every event id once within the
/// deduplication window.
pub(crate) fn tables(
    root: &std::path::Path,
    window_ms: i64,
) -> Vec<crate::commands::integrity::TableDir> {
    Table::ALL
        .iter()
        .map(|t| {
            (
                t.name().to_owned(),
                root.join("events").join(t.name()),
                t.spec(),
                encore_storage::Ids::OnceWithin(window_ms),
            )
        })
        .collect()
}

pub fn run(loaded: &Loaded, cmd: &EventsCommand, out: &Output) -> Result<(), CliError> {
    use crate::commands::integrity;
    match cmd {
        // read-only: the logs are not opened (opening recovers, which writes)
        EventsCommand::Verify | EventsCommand::Repair => {
            let dir = DataDir::open(&loaded.config.data.dir)?;
            let window = i64::from(loaded.config.ingest.dedup_window_days) * MS_PER_DAY;
            let tables = tables(dir.path(), window);
            return match cmd {
                EventsCommand::Verify => integrity::verify(&tables, "event log", out),
                _ => integrity::repair(&dir, &tables, out),
            };
        }
        _ => {}
    }
    let (_dir, ingestor) = open(loaded)?;
    match cmd {
        EventsCommand::Stats => {
            let s = encore_ingest::stats::event_stats(&ingestor)?;
            out.emit(&s, || {
                let plays = s.plays.max(1) as f64;
                let mut text = format!(
                    "plays {} ({:.1}% streams, {:.1}% skips), listeners {}, items {}, interactions {}\n",
                    thousands(s.plays),
                    100.0 * s.streams as f64 / plays,
                    100.0 * s.skips as f64 / plays,
                    thousands(s.users),
                    thousands(s.items),
                    thousands(s.interactions),
                );
                for (kind, n) in &s.interactions_by_kind {
                    text.push_str(&format!("  {kind:<14} {}\n", thousands(*n)));
                }
                text.push_str(&format!(
                    "storage: playback {} segments ({}), interaction {} segments ({})\n",
                    s.playback_log.segments,
                    human_bytes(s.playback_log.segment_bytes),
                    s.interaction_log.segments,
                    human_bytes(s.interaction_log.segment_bytes),
                ));
                let i = &s.ingest;
                text.push_str(&format!(
                    "ingest: accepted {}, rejected {}, duplicates {}, unknown items {}\n",
                    thousands(i.accepted),
                    thousands(i.rejected),
                    thousands(i.duplicates),
                    thousands(i.unknown_items)
                ));
                for (rule, n) in &i.rejects_by_rule {
                    text.push_str(&format!("  rejected by {rule:<26} {}\n", thousands(*n)));
                }
                text.push_str("day         plays     streams   skips\n");
                for d in &s.days {
                    text.push_str(&format!("{}  {:>9} {:>9} {:>9}\n", d.day, d.plays, d.streams, d.skips));
                }
                text
            });
        }
        EventsCommand::Quarantine { limit } => {
            let entries = ingestor.quarantine().list(*limit)?;
            out.emit(&entries, || {
                if entries.is_empty() {
                    return "no rejected rows".into();
                }
                let mut text = String::new();
                for e in &entries {
                    let reasons = encore_ingest::contract::Violation::describe_all(&e.violations);
                    text.push_str(&format!("{} [{}] {}\n", e.location, e.table, reasons));
                }
                text
            });
        }
        EventsCommand::Matrix { min_ms_played } => {
            let started = std::time::Instant::now();
            let options = encore_ingest::matrix::MatrixOptions {
                min_ms_played: *min_ms_played,
                include_play_counts: true,
                until_ms: None,
            };
            let m = encore_ingest::matrix::build_matrix(&ingestor, options)?;
            let report = serde_json::json!({
                "users": m.users.len(),
                "items": m.items.len(),
                "nnz": m.nnz(),
                "plays": m.plays.iter().map(|&p| u64::from(p)).sum::<u64>(),
                "seconds": started.elapsed().as_secs_f64(),
            });
            out.emit(&report, || {
                format!(
                    "interaction matrix: {} users x {} items, {} non-zeros ({} plays) in {:.2} s",
                    thousands(m.users.len() as u64),
                    thousands(m.items.len() as u64),
                    thousands(m.nnz() as u64),
                    thousands(report["plays"].as_u64().unwrap_or(0)),
                    started.elapsed().as_secs_f64()
                )
            });
        }
        EventsCommand::Verify | EventsCommand::Repair => {}
    }
    Ok(())
}

//! `encore sim generate|verify`

use crate::cli::{FormatArg, GenerateArgs, SimCommand};
use crate::error::CliError;
use crate::output::{Output, human_bytes, thousands};
use encore_core::time::Date;
use encore_sim::output::{Counts, MANIFEST_FILE};
use encore_sim::{Format, Manifest, SimConfig, SimError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `sim generate` and `demo` report about a world.
#[derive(Debug, Serialize)]
pub struct WorldReport {
    pub out: PathBuf,
    pub format: Format,
    pub seed: u64,
    pub users: u64,
    pub days: u32,
    pub counts: Counts,
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

impl WorldReport {
    pub fn new(out: &Path, m: &Manifest, seconds: f64) -> WorldReport {
        WorldReport {
            out: out.to_path_buf(),
            format: m.format,
            seed: m.seed,
            users: m.users,
            days: m.days,
            counts: m.counts.clone(),
            files: m.files.len(),
            bytes: m.files.iter().map(|f| f.bytes).sum(),
            seconds,
            events_per_second: if seconds > 0.0 {
                m.counts.playback_events as f64 / seconds
            } else {
                0.0
            },
        }
    }

    pub fn text(&self) -> String {
        let c = &self.counts;
        let plays = c.playback_events.max(1) as f64;
        format!(
            "world      {} ({} files, {}, {:?})\n\
             listeners  {}\n\
             catalog    {} tracks by {} artists on {} albums, {} tags\n\
             events     {} plays over {} days ({} interactions: saves, follows, playlist adds)\n\
             behaviour  {:.1}% streams (>= 30 s), {:.1}% skips\n",
            self.out.display(),
            self.files,
            human_bytes(self.bytes),
            self.format,
            thousands(self.users),
            thousands(c.tracks),
            thousands(c.artists),
            thousands(c.albums),
            c.tags,
            thousands(c.playback_events),
            self.days,
            thousands(c.interaction_events),
            100.0 * c.streams as f64 / plays,
            100.0 * c.skips as f64 / plays,
        ) + &if c.broken_rows + c.duplicate_rows > 0 {
            format!(
                "faults     {} broken rows, {} sent twice\n",
                thousands(c.broken_rows),
                thousands(c.duplicate_rows)
            )
        } else {
            String::new()
        } + &if self.seconds > 0.0 {
            format!(
                "took       {:.1} s ({} plays/s)\n",
                self.seconds,
                thousands(self.events_per_second as u64)
            )
        } else {
            String::new()
        }
    }
}

pub fn run(cmd: SimCommand, out: &Output) -> Result<(), CliError> {
    match cmd {
        SimCommand::Generate(args) => generate(&args, out),
        SimCommand::Verify { dir } => {
            let problems = encore_sim::verify(&dir)?;
            let ok = problems.is_empty();
            out.emit(
                &serde_json::json!({ "dir": dir, "ok": ok, "problems": problems }),
                || {
                    if ok {
                        format!("{}: every file matches the manifest", dir.display())
                    } else {
                        problems.join("\n")
                    }
                },
            );
            if ok {
                Ok(())
            } else {
                Err(SimError::Encode {
                    path: dir.join(MANIFEST_FILE),
                    message: format!("{} file(s) do not match the manifest", problems.len()),
                }
                .into())
            }
        }
    }
}

fn generate(args: &GenerateArgs, out: &Output) -> Result<(), CliError> {
    let start = Date::parse(&args.start).ok_or_else(|| {
        CliError::usage(
            format!("--start {:?} is not a date", args.start),
            "use YYYY-MM-DD, e.g. 2026-01-05",
        )
    })?;
    if args.users == 0 || args.days == 0 {
        return Err(CliError::usage(
            "--users and --days must be at least 1",
            "e.g. --users 2000 --days 30",
        ));
    }
    if let Some(late) = args.shifts.iter().find(|s| s.day >= args.days) {
        return Err(CliError::usage(
            format!(
                "--shift {}: day {} is past the last simulated day ({})",
                late.describe(),
                late.day,
                args.days.saturating_sub(1)
            ),
            "days count from 0, the first day of the world",
        ));
    }
    if args.tracks == Some(0) {
        return Err(CliError::usage(
            "--tracks must be at least 1",
            "omit it to scale with --users",
        ));
    }
    let config = SimConfig {
        users: args.users as usize,
        days: args.days,
        seed: args.seed,
        tracks: args.tracks.map(|t| t as usize),
        start,
        faults: args.faults,
        shifts: args.shifts.clone(),
    };
    let format = match args.format {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Parquet => Format::Parquet,
    };
    let report = write_world(&config, &args.out, format, args.force, out)?;
    out.emit(&report, || report.text());
    Ok(())
}

/// Generates `config` into `dir` with a progress bar. `dir` must be missing, empty, or (with
/// `force`) hold an earlier world, which is replaced.
pub fn write_world(
    config: &SimConfig,
    dir: &Path,
    format: Format,
    force: bool,
    out: &Output,
) -> Result<WorldReport, CliError> {
    prepare_out(dir, force)?;
    let bar = out.progress(u64::from(config.days), "simulating");
    let started = Instant::now();
    let manifest = encore_sim::generate(config, dir, format, &mut |done, _| {
        bar.set_position(u64::from(done))
    })?;
    bar.finish_and_clear();
    tracing::info!(dir = %dir.display(), plays = manifest.counts.playback_events, "world written");
    Ok(WorldReport::new(
        dir,
        &manifest,
        started.elapsed().as_secs_f64(),
    ))
}

fn prepare_out(dir: &Path, force: bool) -> Result<(), SimError> {
    let io = |e: std::io::Error| SimError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    if !dir.exists() {
        return Ok(());
    }
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let is_world = dir.join(MANIFEST_FILE).is_file();
    if !(force && is_world) {
        return Err(SimError::OutputNotEmpty {
            path: dir.to_path_buf(),
        });
    }
    for name in ["catalog", "events"] {
        let sub = dir.join(name);
        if sub.is_dir() {
            std::fs::remove_dir_all(&sub).map_err(io)?;
        }
    }
    for name in ["users.jsonl", MANIFEST_FILE] {
        let file = dir.join(name);
        if file.is_file() {
            std::fs::remove_file(&file).map_err(io)?;
        }
    }
    Ok(())
}

//! `encore monitors apply|list|delete|run|results|calibrate`

use crate::cli::MonitorsCommand;
use crate::error::CliError;
use crate::output::{Output, thousands};
use encore_app::monitors::eval::Hours;
use encore_app::monitors::profiling::{self, Profiler};
use encore_app::monitors::{self, Monitor, MonitorResult, MonitorStore, ResultFilter, spec};
use encore_config::Loaded;
use encore_core::time::MS_PER_DAY;
use encore_sim::{ShiftAt, SimConfig, World};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

pub fn run(loaded: &Loaded, cmd: MonitorsCommand, out: &Output) -> Result<(), CliError> {
    if let MonitorsCommand::Calibrate {
        worlds,
        users,
        days,
        shift_day,
    } = cmd
    {
        return calibrate(worlds, users, days as u32, shift_day as u32, out);
    }
    let root = loaded.config.data.dir.clone();
    match cmd {
        MonitorsCommand::Apply { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                CliError::usage(
                    format!("cannot read {}: {e}", file.display()),
                    "give a TOML file of [[monitor]] tables (docs/MONITORING.md)",
                )
            })?;
            let monitors = spec::parse_toml(&text, &file.display().to_string())
                .map_err(|e| CliError::usage(e.to_string(), "see docs/MONITORING.md"))?;
            let dir = encore_storage::DataDir::open(&root)?;
            MonitorStore::open(dir.path())?.apply(&monitors)?;
            let names: Vec<&str> = monitors.iter().map(|m| m.name.as_str()).collect();
            out.emit(&monitors, || {
                format!("{} monitor(s) applied: {}\n", names.len(), names.join(", "))
            });
        }
        MonitorsCommand::List => {
            let store = MonitorStore::open(&root)?;
            let monitors = store.list()?;
            let (monitors, defaults) = if monitors.is_empty() {
                (spec::defaults(), true)
            } else {
                (monitors, false)
            };
            let mut rows = Vec::new();
            for m in monitors {
                let latest = store.latest(&m.name)?;
                rows.push(Listed {
                    firing: latest.iter().filter(|r| r.fired).cloned().collect(),
                    latest_window_ms: latest.first().map(|r| r.window_start_ms),
                    monitor: m,
                });
            }
            let span = store.span()?;
            let listing = Listing {
                defaults,
                profiled_from_ms: span.map(|s| s.0),
                profiled_through_ms: span.map(|s| s.1 + profiling::HOUR_MS),
                monitors: rows,
            };
            out.emit(&listing, || list_text(&listing));
        }
        MonitorsCommand::Delete { name } => {
            let dir = encore_storage::DataDir::open(&root)?;
            if !MonitorStore::open(dir.path())?.delete(&name)? {
                return Err(CliError::usage(
                    format!("monitor {name} does not exist"),
                    "list monitors with `encore monitors list`",
                ));
            }
            out.emit(&serde_json::json!({ "deleted": name }), || {
                format!("monitor {name} deleted\n")
            });
        }
        MonitorsCommand::Run { all, partial } => {
            let (dir, ingestor) = crate::commands::events::open(loaded)?;
            let store = MonitorStore::open(dir.path())?;
            let node = encore_app::node::node_name(&loaded.config, dir.path());
            // rows still in memory are profiled too (this process holds the data directory)
            for t in encore_ingest::Table::ALL {
                ingestor.log(t).seal()?;
            }
            let facts = profiling::item_facts(&ingestor.catalog());
            let profiled = monitors::profile_segments(&ingestor, &store, &node, &facts)?;
            let monitors = store.list_or_defaults()?;
            let reference =
                monitors::production_reference(&store, dir.path(), &loaded.config.serving.model)?;
            let started = std::time::Instant::now();
            let results = monitors::evaluate(
                &store,
                &monitors,
                &monitors::Judging {
                    now_ms: encore_core::time::now_ms(),
                    logs: Some(&ingestor),
                    partial,
                    reference: reference.as_ref(),
                },
            )?;
            let report = RunReport {
                profiled,
                judged: results.len(),
                fired: results.iter().filter(|r| r.fired).count(),
                evaluate_seconds: started.elapsed().as_secs_f64(),
                results: results.into_iter().filter(|r| all || r.fired).collect(),
            };
            out.emit(&report, || run_text(&report));
        }
        MonitorsCommand::Results {
            name,
            fired,
            slice,
            limit,
        } => {
            let store = MonitorStore::open(&root)?;
            if !store.list()?.iter().any(|m| m.name == name)
                && !spec::defaults().iter().any(|m| m.name == name)
            {
                return Err(CliError::usage(
                    format!("monitor {name} does not exist"),
                    "list monitors with `encore monitors list`",
                ));
            }
            let results = store.results(
                &name,
                &ResultFilter {
                    fired_only: fired,
                    slice,
                    limit,
                    ..ResultFilter::default()
                },
            )?;
            out.emit(&results, || {
                if results.is_empty() {
                    return "no verdicts yet (run `encore monitors run`)\n".to_owned();
                }
                results.iter().map(result_line).collect()
            });
        }
        MonitorsCommand::Calibrate { .. } => {}
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    monitor: Monitor,
    latest_window_ms: Option<i64>,
    firing: Vec<MonitorResult>,
}

#[derive(Debug, Serialize)]
struct Listing {
    /// true: nothing applied yet, these are the defaults
    defaults: bool,
    /// the hours the profiles cover: plays from, and up to (an end long past says traffic
    /// stopped, or the profiles are not being made)
    profiled_from_ms: Option<i64>,
    profiled_through_ms: Option<i64>,
    monitors: Vec<Listed>,
}

#[derive(Debug, Serialize)]
struct RunReport {
    profiled: monitors::ProfileReport,
    /// new verdicts
    judged: usize,
    fired: usize,
    evaluate_seconds: f64,
    results: Vec<MonitorResult>,
}

fn list_text(l: &Listing) -> String {
    let mut s = String::new();
    if l.defaults {
        s.push_str("no monitors applied: the defaults (stored at the first `monitors run`)\n");
    }
    match (l.profiled_from_ms, l.profiled_through_ms) {
        (Some(a), Some(b)) => s.push_str(&format!(
            "plays profiled from {} to {}\n",
            day_hour(a),
            day_hour(b)
        )),
        _ => s.push_str("no plays profiled yet (run `encore monitors run`)\n"),
    }
    for r in &l.monitors {
        let m = &r.monitor;
        let slice = match m.slice_by {
            Some(spec::SliceBy::Platform) => " by platform",
            Some(spec::SliceBy::Country) => " by country",
            Some(spec::SliceBy::Model) => " by model",
            None => "",
        };
        let state = match (r.latest_window_ms, r.firing.len()) {
            (None, _) => "no verdict yet".to_owned(),
            (Some(w), 0) => format!("ok at {}", day_hour(w)),
            (Some(w), n) => format!("FIRING at {} ({n} slice(s))", day_hour(w)),
        };
        s.push_str(&format!(
            "{:<22} {:?} per {:?}{slice}, {} > {}: {state}\n",
            m.name,
            m.kind,
            m.window,
            m.statistic_name(),
            m.threshold
        ));
        for f in &r.firing {
            s.push_str(&format!("    {}", result_line(f)));
        }
    }
    s
}

fn day_hour(ms: i64) -> String {
    let day = encore_core::time::Date::from_days(ms.div_euclid(MS_PER_DAY));
    format!("{day} {:02}:00", ms.rem_euclid(MS_PER_DAY) / 3_600_000)
}

fn result_line(r: &MonitorResult) -> String {
    let attr = r
        .attribute
        .as_deref()
        .map_or(String::new(), |a| format!(" {a}"));
    let moves: Vec<String> = r
        .moves
        .iter()
        .take(2)
        .map(|m| {
            format!(
                "{} {:.1}% -> {:.1}%",
                m.value,
                100.0 * m.baseline,
                100.0 * m.current
            )
        })
        .collect();
    format!(
        "{} {} {}{attr}: {} {:.3} (threshold {}{}){} rows {}{}\n",
        day_hour(r.window_start_ms),
        r.monitor,
        r.slice,
        r.statistic,
        r.value,
        r.threshold,
        r.noise.map_or(String::new(), |n| format!(", noise {n:.3}")),
        if r.fired { " FIRED" } else { "" },
        thousands(r.rows),
        if moves.is_empty() {
            String::new()
        } else {
            format!("; {}", moves.join(", "))
        }
    )
}

fn run_text(r: &RunReport) -> String {
    let mut s = format!(
        "profiled {} segment(s), {} rows in {:.1} s; {} new verdict(s), {} fired ({:.2} s)\n",
        r.profiled.segments,
        thousands(r.profiled.rows),
        r.profiled.seconds,
        r.judged,
        r.fired,
        r.evaluate_seconds
    );
    for x in &r.results {
        s.push_str(&result_line(x));
    }
    s
}

/// One world of the calibration and what its monitors said.
struct WorldRun {
    results: Vec<MonitorResult>,
    /// the first window's start (day 0, 00:00 UTC)
    start_ms: i64,
}

/// Simulates one world and judges it with the default monitors.
fn judge_world(config: SimConfig, monitors: &[Monitor]) -> Result<WorldRun, CliError> {
    let start_ms = config.start.to_days() * MS_PER_DAY;
    let days = config.days;
    let mut config = config;
    config.days += 1;
    let mut world = World::new(config);
    let facts: HashMap<String, profiling::ItemFacts> = (0..world.catalog.tracks.genre.len())
        .map(|t| {
            (
                encore_sim::catalog::Catalog::track_id(t as u32),
                profiling::ItemFacts {
                    genre: Some(
                        world
                            .catalog
                            .genre_name(world.catalog.tracks.genre[t])
                            .to_owned(),
                    ),
                    popularity: Some(world.catalog.track_popularity[t]),
                },
            )
        })
        .collect();
    let mut hours = Hours::default();
    // a listener's day runs past the UTC day: one more day completes the last
    for _ in 0..=days {
        let log = world.simulate_day();
        let events: Vec<_> = log.plays.iter().map(|p| world.playback_event(p)).collect();
        let batch = encore_core::arrow::playback_batch(&events)
            .map_err(|e| CliError::failed(format!("simulated rows: {e}"), "a bug: report it"))?;
        let mut profiler = Profiler::new(&facts);
        profiler
            .observe(&batch, None)
            .map_err(|e| CliError::failed(e.to_string(), "a bug: report it"))?;
        for h in profiler.finish() {
            hours
                .add(h.hour_ms, &h.slice, &h.profile)
                .map_err(|e| CliError::failed(e.to_string(), "a bug: report it"))?;
        }
    }
    let end = start_ms + i64::from(days) * MS_PER_DAY;
    let mut results = Vec::new();
    for m in monitors {
        results.extend(
            monitors::judge(m, &mut hours, None, start_ms, end)
                .map_err(|e| CliError::failed(e.to_string(), "a bug: report it"))?
                .0,
        );
    }
    Ok(WorldRun { results, start_ms })
}

#[derive(Debug, Default, Serialize)]
struct MonitorRate {
    windows: u64,
    fired: u64,
}

#[derive(Debug, Serialize)]
struct ShiftCheck {
    shift: String,
    monitor: &'static str,
    /// the window the shift must be caught in (the shift's first day, or its first hour with
    /// a verdict for the slice)
    expected_window_ms: i64,
    expected_slice: String,
    caught: bool,
    value: Option<f64>,
    attribute: Option<String>,
    /// the value that moved most, as the verdict names it
    named: Option<String>,
    /// alarms on the days before the shift
    alarms_before: usize,
    /// the expected window's strongest verdict on the slice, fired or not
    strongest: Option<MonitorResult>,
}

#[derive(Debug, Serialize)]
struct Calibration {
    worlds: usize,
    users: usize,
    days: u32,
    /// days with a verdict from any default monitor, over the unshifted worlds
    days_judged: u64,
    /// those with any alarm
    days_with_alarm: u64,
    false_alarm_rate: f64,
    by_monitor: BTreeMap<String, MonitorRate>,
    /// the unshifted worlds' alarms (at most 20)
    alarms: Vec<MonitorResult>,
    shifts: Vec<ShiftCheck>,
    seconds: f64,
}

fn calibrate(
    worlds: usize,
    users: usize,
    days: u32,
    shift_day: u32,
    out: &Output,
) -> Result<(), CliError> {
    if shift_day + 1 >= days {
        return Err(CliError::usage(
            format!("--shift-day {shift_day} must be before the last day ({days} days)"),
            "give more --days or an earlier --shift-day",
        ));
    }
    let started = std::time::Instant::now();
    let monitors = spec::defaults();
    let mut by_monitor: BTreeMap<String, MonitorRate> = BTreeMap::new();
    let (mut days_judged, mut days_with_alarm) = (0u64, 0u64);
    let mut alarms = Vec::new();
    let bar = out.progress(worlds as u64 + 4, "worlds");
    for seed in 1..=worlds as u64 {
        let run = judge_world(SimConfig::new(users, days, seed), &monitors)?;
        let mut judged: BTreeMap<i64, bool> = BTreeMap::new();
        for r in &run.results {
            let day = (r.window_start_ms - run.start_ms).div_euclid(MS_PER_DAY);
            *judged.entry(day).or_default() |= r.fired;
            let rate = by_monitor.entry(r.monitor.clone()).or_default();
            rate.windows += 1;
            rate.fired += u64::from(r.fired);
            if r.fired && alarms.len() < 20 {
                alarms.push(r.clone());
            }
        }
        days_judged += judged.len() as u64;
        days_with_alarm += judged.values().filter(|a| **a).count() as u64;
        bar.inc(1);
    }
    let cases: [(String, &'static str, String); 4] = [
        (
            format!("taste:metal@{shift_day}"),
            "events-drift",
            "all".to_owned(),
        ),
        (
            format!("release@{shift_day}"),
            "catalog-share",
            "all".to_owned(),
        ),
        (
            format!("client-bug:ios@{shift_day}"),
            "playback-by-platform",
            "platform=ios".to_owned(),
        ),
        (
            format!("dropout:BR@{shift_day}"),
            "volume-by-country",
            "country=BR".to_owned(),
        ),
    ];
    let mut shifts = Vec::new();
    for (i, (shift, monitor, slice)) in cases.into_iter().enumerate() {
        let mut config = SimConfig::new(users, days, 1_000 + i as u64);
        config.shifts = vec![ShiftAt::parse(&shift)?];
        let run = judge_world(config, &monitors)?;
        let shift_ms = run.start_ms + i64::from(shift_day) * MS_PER_DAY;
        let alarms_before = run
            .results
            .iter()
            .filter(|r| r.fired && r.window_start_ms < shift_ms)
            .count();
        // the first window at or after the shift with a verdict on the slice
        let first = run
            .results
            .iter()
            .filter(|r| r.monitor == monitor && r.slice == slice && r.window_start_ms >= shift_ms)
            .map(|r| r.window_start_ms)
            .min()
            .unwrap_or(shift_ms);
        let verdicts: Vec<&MonitorResult> = run
            .results
            .iter()
            .filter(|r| r.monitor == monitor && r.slice == slice && r.window_start_ms == first)
            .collect();
        let strongest = verdicts
            .iter()
            .max_by(|a, b| a.value.abs().total_cmp(&b.value.abs()))
            .map(|r| (*r).clone());
        let hit = verdicts
            .into_iter()
            .filter(|r| r.fired)
            .max_by(|a, b| a.value.abs().total_cmp(&b.value.abs()));
        shifts.push(ShiftCheck {
            shift,
            monitor,
            expected_window_ms: first,
            expected_slice: slice,
            caught: hit.is_some(),
            value: hit.map(|r| r.value),
            attribute: hit.and_then(|r| r.attribute.clone()),
            named: hit.and_then(|r| r.moves.first().map(|m| m.value.clone())),
            alarms_before,
            strongest,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = Calibration {
        worlds,
        users,
        days,
        days_judged,
        days_with_alarm,
        false_alarm_rate: days_with_alarm as f64 / days_judged.max(1) as f64,
        by_monitor,
        alarms,
        shifts,
        seconds: started.elapsed().as_secs_f64(),
    };
    out.emit(&report, || calibration_text(&report));
    let missed: Vec<&str> = report
        .shifts
        .iter()
        .filter(|s| !s.caught)
        .map(|s| s.shift.as_str())
        .collect();
    if report.false_alarm_rate > 0.05 || !missed.is_empty() {
        return Err(CliError::failed(
            format!(
                "calibration failed: false alarms on {:.1}% of days (at most 5% wanted); \
                 missed: {}",
                100.0 * report.false_alarm_rate,
                if missed.is_empty() {
                    "none".to_owned()
                } else {
                    missed.join(", ")
                }
            ),
            "adjust the default thresholds in crates/encore-app/src/monitors/spec.rs",
        ));
    }
    Ok(())
}

fn calibration_text(c: &Calibration) -> String {
    let mut s = format!(
        "{} unshifted worlds of {} listeners x {} days: false alarms on {} of {} judged days \
         ({:.1}%) in {:.0} s\n",
        c.worlds,
        thousands(c.users as u64),
        c.days,
        c.days_with_alarm,
        c.days_judged,
        100.0 * c.false_alarm_rate,
        c.seconds
    );
    for (name, r) in &c.by_monitor {
        s.push_str(&format!(
            "  {name:<22} {} of {} verdicts fired\n",
            r.fired, r.windows
        ));
    }
    for a in c.alarms.iter().take(5) {
        s.push_str(&format!("  alarm: {}", result_line(a)));
    }
    for x in &c.shifts {
        s.push_str(&format!(
            "{:<24} {:<22} {} at {} on {}{}{} (alarms before the shift: {})\n",
            x.shift,
            x.monitor,
            if x.caught { "caught" } else { "MISSED" },
            day_hour(x.expected_window_ms),
            x.expected_slice,
            x.attribute
                .as_deref()
                .map_or(String::new(), |a| format!(" {a}")),
            x.named
                .as_deref()
                .map_or(String::new(), |n| format!(", naming {n}")),
            x.alarms_before
        ));
        if let Some(v) = x.strongest.as_ref().filter(|_| !x.caught) {
            s.push_str(&format!("    strongest: {}", result_line(v)));
        }
    }
    s
}

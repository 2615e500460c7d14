//! Monitoring of the listening data: every sealed playback segment is profiled once (hourly
//! profiles per slice, [`profiling`]), and monitors ([`spec`]) judge each complete window of
//! those profiles against the same window on the previous days ([`eval`]); profiles,
//! definitions and verdicts live in the metadata store ([`store`]).
//!
//! Profiling reads sealed segments, never the ingest path: a request is not slowed by
//! monitoring, and what a monitor sees is exactly what the log holds (a segment dropped by
//! retention or rewritten by an erasure takes its profiles with it). Rows reach a profile within
//! a seal interval (`[storage] seal_interval_s`) and a run of the job.

pub mod eval;
pub mod profiling;
pub mod quality;
pub mod spec;
pub mod store;

pub use eval::{MonitorResult, Move, Reference};
pub use spec::Monitor;
pub use store::{MonitorStore, ResultFilter};

use crate::AppError;
use encore_storage::EventLog;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// How long after a window ends its rows may still be arriving: windows are judged once this
/// has passed (a seal interval and more).
pub const LATENESS_MS: i64 = 5 * 60_000;

/// What a profiling pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProfileReport {
    pub segments: usize,
    pub rows: u64,
    /// segments gone from the log whose profiles were forgotten
    pub forgotten: usize,
    pub seconds: f64,
}

/// Profiles the sealed segments of `node`'s playback and interaction logs not profiled yet (in
/// parallel), and forgets the profiles of segments the logs no longer hold. `facts` says what
/// the catalog knows of each item (see [`profiling::item_facts`]).
pub fn profile_segments(
    ingestor: &encore_ingest::Ingestor,
    store: &MonitorStore,
    node: &str,
    facts: &HashMap<String, profiling::ItemFacts>,
) -> Result<ProfileReport, AppError> {
    let started = std::time::Instant::now();
    let mut report = ProfileReport::default();
    for table in [
        encore_ingest::Table::Playback,
        encore_ingest::Table::Interaction,
    ] {
        let r = profile_log(ingestor.log(table), table, store, node, facts)?;
        report.segments += r.segments;
        report.rows += r.rows;
        report.forgotten += r.forgotten;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn profile_log(
    log: &EventLog,
    table: encore_ingest::Table,
    store: &MonitorStore,
    node: &str,
    facts: &HashMap<String, profiling::ItemFacts>,
) -> Result<ProfileReport, AppError> {
    let name = table.name();
    let playback = table == encore_ingest::Table::Playback;
    let segments = log.segments();
    let done = store.profiled_segments(name, node)?;
    let held: std::collections::BTreeSet<u64> = segments.iter().map(|s| s.id).collect();
    let gone: Vec<u64> = done.difference(&held).copied().collect();
    store.drop_segments(name, node, &gone)?;
    let todo: Vec<_> = segments.iter().filter(|s| !done.contains(&s.id)).collect();
    let profiled: Vec<(u64, u64, Vec<profiling::HourProfile>)> = todo
        .par_iter()
        .map(|seg| {
            // a segment is written when sealed: its file's time is when its rows had arrived
            let arrived_ms = std::fs::metadata(log.dir().join(&seg.path))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64);
            let mut profiler = profiling::Profiler::new(facts);
            let mut failed = None;
            let columns = if playback {
                profiling::COLUMNS
            } else {
                profiling::IMPRESSION_COLUMNS
            };
            let held = log.scan_segment(seg.id, Some(columns), |batch| {
                let r = if playback {
                    profiler.observe(batch, arrived_ms)
                } else {
                    profiler.observe_impressions(batch)
                };
                if let Err(e) = r {
                    failed.get_or_insert(e);
                }
                Ok(())
            })?;
            if let Some(e) = failed {
                return Err(AppError::new(
                    encore_core::ErrorCode::Internal,
                    format!("profiling segment {}: {e}", seg.path),
                ));
            }
            let profiles = if held { profiler.finish() } else { Vec::new() };
            Ok((seg.id, seg.rows, profiles))
        })
        .collect::<Result<_, AppError>>()?;
    let mut report = ProfileReport {
        forgotten: gone.len(),
        ..ProfileReport::default()
    };
    for (id, rows, profiles) in &profiled {
        // (a segment of interactions without impressions has no profile, and is profiled)
        store.put_segment(name, node, *id, profiles)?;
        report.segments += 1;
        report.rows += rows;
    }
    Ok(report)
}

/// When monitors are judged, and with what.
#[derive(Debug, Clone, Copy)]
pub struct Judging<'a> {
    pub now_ms: i64,
    /// the event logs, for the monitors that join them (quality); without them those give no
    /// verdict
    pub logs: Option<&'a encore_ingest::Ingestor>,
    /// also judge the windows still open (up to `now_ms`), without storing any verdict: what
    /// the current window looks like so far
    pub partial: bool,
    /// what the production model was trained on, for monitors with a reference baseline
    pub reference: Option<&'a Reference>,
}

/// Saves what `model`@`version` was trained on (the plays of `[from_ms, to_ms]`, per slice),
/// profiling the logs' new segments first, so that monitors with a reference baseline compare
/// with it while the version is in production.
pub fn save_reference(
    store: &MonitorStore,
    ingestor: &encore_ingest::Ingestor,
    node: &str,
    model: &str,
    version: u32,
    (from_ms, to_ms): (i64, i64),
) -> Result<Reference, AppError> {
    let facts = profiling::item_facts(&ingestor.catalog());
    profile_segments(ingestor, store, node, &facts)?;
    let from = from_ms.div_euclid(profiling::HOUR_MS) * profiling::HOUR_MS;
    let hours = store.hours(from, to_ms + profiling::HOUR_MS)?;
    let mut slices: std::collections::BTreeMap<String, encore_stats::profile::Profile> =
        std::collections::BTreeMap::new();
    for (slice, p) in hours.profiles() {
        if slice.starts_with(profiling::SERVED) {
            continue;
        }
        // profiles of one deployment bin alike; one that does not is left out
        let _ = slices.entry(slice.to_owned()).or_default().merge(p);
    }
    let reference = Reference {
        model: model.to_owned(),
        version,
        from_ms,
        to_ms,
        slices,
    };
    store.put_reference(&reference)?;
    Ok(reference)
}

/// Windows judged this long before the newest judged one are judged again when rows arrived
/// for them since (a late batch, a node's backlog).
pub const REJUDGE_MS: i64 = 2 * encore_core::time::MS_PER_DAY;

/// Judges every monitor's complete windows not judged yet, in time order, and stores the
/// verdicts. A window is complete once `now_ms` is [`LATENESS_MS`] past its end; windows are
/// judged from the first profiled hour to the window of the last (traffic that stopped
/// altogether leaves no window to judge: the profiles' end, in `encore monitors list`, shows
/// it). A window judged in the last [`REJUDGE_MS`] that has gained rows since is judged again
/// (its verdicts replaced). Returns the new verdicts.
pub fn evaluate(
    store: &MonitorStore,
    monitors: &[Monitor],
    judging: &Judging<'_>,
) -> Result<Vec<MonitorResult>, AppError> {
    let now_ms = judging.now_ms;
    let Some((first_hour, last_hour)) = store.span()? else {
        return Ok(Vec::new());
    };
    let mut plans = Vec::new();
    for m in monitors {
        let len = m.window.ms();
        let horizon = if m.kind == spec::Kind::Quality {
            i64::from(m.horizon_s) * 1000
        } else {
            0
        };
        let complete_end = if judging.partial {
            eval::window_start(m, now_ms) + len
        } else {
            eval::window_start(m, now_ms - LATENESS_MS - horizon)
        };
        let data_end = eval::window_start(m, last_hour) + len;
        let through = complete_end.min(data_end);
        let first = eval::window_start(m, first_hour);
        let (from, recheck) = match store.evaluated_through(&m.name)? {
            Some(t) => (t, eval::window_start(m, (t - REJUDGE_MS).max(first))),
            None => (first, first),
        };
        plans.push((m, from, recheck.min(from), through));
    }
    let Some(load_from) = plans
        .iter()
        .map(|(m, _, recheck, _)| {
            recheck - i64::from(m.baseline_days) * encore_core::time::MS_PER_DAY
        })
        .min()
    else {
        return Ok(Vec::new());
    };
    let load_to = plans.iter().map(|p| p.3).max().unwrap_or(load_from);
    let mut hours = store.hours(load_from, load_to)?;
    hours.set_reference(judging.reference.cloned());
    let mut out = Vec::new();
    for (m, from, recheck, through) in plans {
        let len = m.window.ms();
        let slice = match m.source {
            spec::Source::Plays => profiling::ALL,
            spec::Source::Served => profiling::SERVED,
        };
        // judged windows that gained rows since
        let mut windows: Vec<i64> = store
            .judged(&m.name, recheck, from)?
            .into_iter()
            .filter(|j| hours.window(j.window_ms, len, slice).map_or(0, |p| p.rows) != j.rows)
            .map(|j| j.window_ms)
            .collect();
        let mut start = from;
        while start + len <= through {
            windows.push(start);
            start += len;
        }
        if windows.is_empty() {
            continue;
        }
        let mut results = Vec::new();
        let mut judged = Vec::new();
        for w in windows {
            results.extend(judge_window(m, &mut hours, judging.logs, w)?);
            judged.push(store::Judged {
                window_ms: w,
                rows: hours.window(w, len, slice).map_or(0, |p| p.rows),
            });
        }
        if !judging.partial {
            store.put_results(&m.name, &judged, &results, start.max(from))?;
        }
        out.extend(results);
    }
    Ok(out)
}

/// `m`'s verdicts on the window starting at `start`.
fn judge_window(
    m: &Monitor,
    hours: &mut eval::Hours,
    logs: Option<&encore_ingest::Ingestor>,
    start: i64,
) -> Result<Vec<MonitorResult>, AppError> {
    Ok(match (m.kind, logs) {
        (spec::Kind::Quality, Some(logs)) => quality::judge_window(m, logs, start)?,
        (spec::Kind::Quality, None) => Vec::new(),
        _ => eval::evaluate(m, hours, start),
    })
}

/// `m`'s verdicts on every window that starts at or after `from` and ends by `through`, in
/// time order, and the end of the last window judged.
pub fn judge(
    m: &Monitor,
    hours: &mut eval::Hours,
    logs: Option<&encore_ingest::Ingestor>,
    from: i64,
    through: i64,
) -> Result<(Vec<MonitorResult>, i64), AppError> {
    let len = m.window.ms();
    let mut results = Vec::new();
    let mut start = eval::window_start(m, from);
    while start + len <= through {
        results.extend(judge_window(m, hours, logs, start)?);
        start += len;
    }
    Ok((results, start))
}

/// What the production version of `model` was trained on, if it was saved (`None` too when
/// the registry has no production version).
pub fn production_reference(
    store: &MonitorStore,
    root: &std::path::Path,
    model: &str,
) -> Result<Option<Reference>, AppError> {
    let Ok(registry) = encore_registry::Registry::open(root) else {
        return Ok(None);
    };
    let Some(version) = registry
        .aliases(model)
        .ok()
        .and_then(|a| a.get(encore_registry::PRODUCTION).copied())
    else {
        return Ok(None);
    };
    store.reference(model, version)
}

/// A node's monitoring: the store, the latest verdicts (for `/metrics` and the API), and the
/// job that profiles this node's new segments and judges complete windows.
#[derive(Debug)]
pub struct Monitoring {
    store: MonitorStore,
    /// one thread: a server's profiling takes at most a core from ingest and serving
    pool: rayon::ThreadPool,
    root: std::path::PathBuf,
    /// the served model, whose production version's training profile is the reference
    model: String,
    latest: std::sync::Mutex<Vec<MonitorResult>>,
    /// what the catalog says of each item, and the catalog size it was read at
    facts: std::sync::Mutex<(usize, std::sync::Arc<HashMap<String, profiling::ItemFacts>>)>,
    pub runs: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
}

/// What one run of the job did.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    pub profiled: ProfileReport,
    /// new verdicts, and how many of them fired
    pub judged: usize,
    pub fired: usize,
    /// false: another worker holds the lease on judging
    pub judging: bool,
}

impl Monitoring {
    pub fn open(root: &std::path::Path, model: &str) -> Result<Monitoring, AppError> {
        let store = MonitorStore::open(root)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "monitors-profile".into())
            .build()
            .map_err(|e| {
                AppError::new(
                    encore_core::ErrorCode::Internal,
                    format!("cannot start the monitors' profiling thread: {e}"),
                )
            })?;
        let m = Monitoring {
            store,
            pool,
            root: root.to_path_buf(),
            model: model.to_owned(),
            latest: std::sync::Mutex::default(),
            facts: std::sync::Mutex::new((usize::MAX, std::sync::Arc::default())),
            runs: std::sync::atomic::AtomicU64::new(0),
            failures: std::sync::atomic::AtomicU64::new(0),
        };
        m.refresh()?;
        Ok(m)
    }

    pub fn store(&self) -> &MonitorStore {
        &self.store
    }

    /// What the production version of the served model was trained on, if saved.
    pub fn production_reference(&self) -> Result<Option<Reference>, AppError> {
        production_reference(&self.store, &self.root, &self.model)
    }

    /// Every monitor's verdicts on its latest judged window.
    pub fn latest(&self) -> Vec<MonitorResult> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the latest verdicts from the store again.
    pub fn refresh(&self) -> Result<(), AppError> {
        let mut latest = Vec::new();
        let monitors = match self.store.list()? {
            m if m.is_empty() => spec::defaults(),
            m => m,
        };
        for m in &monitors {
            latest.extend(self.store.latest(&m.name)?);
        }
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = latest;
        Ok(())
    }

    fn facts(
        &self,
        ingestor: &encore_ingest::Ingestor,
    ) -> std::sync::Arc<HashMap<String, profiling::ItemFacts>> {
        let catalog = ingestor.catalog();
        let size = catalog.item_count();
        let mut g = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != size {
            *g = (size, std::sync::Arc::new(profiling::item_facts(&catalog)));
        }
        std::sync::Arc::clone(&g.1)
    }

    /// One run: profiles this node's new playback segments, then (when `judge`) judges every
    /// complete window not judged yet, up to `now_ms`.
    pub fn tick(
        &self,
        ingestor: &encore_ingest::Ingestor,
        node: &str,
        judge: bool,
        now_ms: i64,
    ) -> Result<Tick, AppError> {
        let facts = self.facts(ingestor);
        let profiled = self
            .pool
            .install(|| profile_segments(ingestor, &self.store, node, &facts))?;
        let mut tick = Tick {
            profiled,
            judged: 0,
            fired: 0,
            judging: judge,
        };
        if judge {
            let monitors = self.store.list_or_defaults()?;
            let reference = self.production_reference()?;
            let results = evaluate(
                &self.store,
                &monitors,
                &Judging {
                    now_ms,
                    logs: Some(ingestor),
                    partial: false,
                    reference: reference.as_ref(),
                },
            )?;
            tick.judged = results.len();
            tick.fired = results.iter().filter(|r| r.fired).count();
        }
        self.refresh()?;
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(tick)
    }

    /// Runs [`Monitoring::tick`] every `period` while `ingestor` lives; judging only while
    /// `lease` (when given: a deployment sharing its metadata) is held.
    pub fn start(
        self: &std::sync::Arc<Self>,
        ingestor: &std::sync::Arc<encore_ingest::Ingestor>,
        node: String,
        period: std::time::Duration,
        lease: Option<crate::lease::Lease>,
    ) -> std::io::Result<()> {
        let me = std::sync::Arc::clone(self);
        let keeper = std::sync::Mutex::new(lease.map(crate::lease::Keeper::new));
        crate::worker::every(
            "monitors",
            period,
            false,
            std::sync::Arc::downgrade(ingestor),
            move |ingestor: &encore_ingest::Ingestor| {
                let judge = keeper
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                    .is_none_or(|k| k.held());
                match me.tick(ingestor, &node, judge, encore_core::time::now_ms()) {
                    Ok(t) if t.profiled.segments + t.judged > 0 => tracing::info!(
                        segments = t.profiled.segments,
                        rows = t.profiled.rows,
                        judged = t.judged,
                        fired = t.fired,
                        "monitors ran"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        me.failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!("monitors: {e}");
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encore_stats::profile::Profile;

    const DAY: i64 = encore_core::time::MS_PER_DAY;

    fn day(d: i64, rows: u64) -> Vec<profiling::HourProfile> {
        (0..24)
            .map(|h| profiling::HourProfile {
                hour_ms: d * DAY + h * profiling::HOUR_MS,
                slice: profiling::ALL.to_owned(),
                profile: Profile {
                    rows: rows / 24,
                    ..Profile::default()
                },
            })
            .collect()
    }

    #[test]
    fn a_window_that_gains_rows_after_its_verdict_is_judged_again() {
        let tmp = tempfile::tempdir().unwrap();
        let store = MonitorStore::open(tmp.path()).unwrap();
        let volume = Monitor {
            kind: spec::Kind::Volume,
            slice_by: None,
            ..spec::defaults()
                .into_iter()
                .find(|m| m.name == "volume-by-country")
                .unwrap()
        };
        store.apply(std::slice::from_ref(&volume)).unwrap();
        let start = 20_000;
        for d in 0..7 {
            store
                .put_segment("playback", "n", d as u64, &day(start + d, 24_000))
                .unwrap();
        }
        // the last day arrives in two batches: a third first
        store
            .put_segment("playback", "n", 7, &day(start + 7, 8_000))
            .unwrap();
        let judging = Judging {
            now_ms: (start + 30) * DAY,
            logs: None,
            partial: false,
            reference: None,
        };
        let first = evaluate(&store, std::slice::from_ref(&volume), &judging).unwrap();
        let last = |rs: &[MonitorResult]| {
            rs.iter()
                .find(|r| r.window_start_ms == (start + 7) * DAY)
                .cloned()
                .unwrap()
        };
        assert!(
            last(&first).fired,
            "a third of the plays: {:?}",
            last(&first)
        );
        // nothing new: nothing judged again
        assert!(
            evaluate(&store, std::slice::from_ref(&volume), &judging)
                .unwrap()
                .is_empty()
        );
        // the rest of the day: judged again, the alarm withdrawn
        store
            .put_segment("playback", "n", 8, &day(start + 7, 16_000))
            .unwrap();
        let again = evaluate(&store, std::slice::from_ref(&volume), &judging).unwrap();
        assert_eq!(again.len(), 1, "{again:?}");
        assert!(!again[0].fired && again[0].value.abs() < 0.01, "{again:?}");
        let kept = store
            .results(&volume.name, &ResultFilter::default())
            .unwrap();
        assert!(
            kept.iter()
                .filter(|r| r.window_start_ms == (start + 7) * DAY)
                .all(|r| !r.fired),
            "{kept:?}"
        );
    }
}

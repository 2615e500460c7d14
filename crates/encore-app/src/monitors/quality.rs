//! Online quality of what was served: the impressions of a window joined, by request and
//! item, to the plays that followed within a horizon, per model version. Computed from the
//! event logs when a window is judged (a join, not a sum of profiles).
//!
//! Per version: impressions, plays of served items, streams (30 s or more) and skips (within
//! 30 s). A version is judged against the incumbent of the window (the version with the most
//! impressions): it fires when its streams per impression are lower by more than the
//! threshold (relative) and the 95 % interval of the difference ([`encore_stats::two_proportions`])
//! lies below zero, or its skips per play are higher by as much, likewise.

use super::eval::{MonitorResult, Move};
use super::spec::Monitor;
use crate::AppError;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, UInt32Type};
use encore_ingest::{Ingestor, Table};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// What followed the impressions of one model version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub impressions: u64,
    pub plays: u64,
    pub streams: u64,
    pub skips: u64,
}

fn key(request: &str, item: &str) -> u64 {
    // a fixed-key hash: the same pair gives the same key on every run
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request.hash(&mut h);
    item.hash(&mut h);
    h.finish()
}

/// The outcomes, per model version (`context_id` of the impressions), of the impressions
/// served in `[from_ms, to_ms)`, counting plays of a served item under its request up to
/// `horizon_ms` after `to_ms`.
pub fn outcomes(
    logs: &Ingestor,
    from_ms: i64,
    to_ms: i64,
    horizon_ms: i64,
) -> Result<BTreeMap<String, Outcomes>, AppError> {
    let mut versions: Vec<String> = Vec::new();
    let mut index: HashMap<String, u16> = HashMap::new();
    let mut served: HashMap<u64, u16> = HashMap::new();
    let mut counts: Vec<Outcomes> = Vec::new();
    let bad = |what: &str| {
        AppError::new(
            encore_core::ErrorCode::Internal,
            format!("the event log's {what} column has an unexpected type"),
        )
    };
    let mut failed = None;
    logs.log(Table::Interaction).scan_range(
        from_ms,
        to_ms,
        true,
        Some(&["ts_ms", "kind", "request_id", "item_id", "context_id"]),
        |b| {
            let (Some(ts), Some(kind), Some(req), Some(item), Some(ctx)) = (
                b.column(0).as_primitive_opt::<Int64Type>(),
                b.column(1).as_string_opt::<i32>(),
                b.column(2).as_string_opt::<i32>(),
                b.column(3).as_string_opt::<i32>(),
                b.column(4).as_string_opt::<i32>(),
            ) else {
                failed.get_or_insert_with(|| bad("interaction"));
                return Ok(());
            };
            for i in 0..b.num_rows() {
                let t = ts.value(i);
                if t < from_ms
                    || t >= to_ms
                    || kind.value(i) != "impression"
                    || !req.is_valid(i)
                    || !item.is_valid(i)
                {
                    continue;
                }
                let version = if ctx.is_valid(i) {
                    ctx.value(i)
                } else {
                    super::profiling::UNKNOWN
                };
                let v = match index.get(version) {
                    Some(v) => *v,
                    None => {
                        let v = versions.len() as u16;
                        versions.push(version.to_owned());
                        index.insert(version.to_owned(), v);
                        counts.push(Outcomes::default());
                        v
                    }
                };
                // the same impression logged twice counts once
                if served.insert(key(req.value(i), item.value(i)), v).is_none() {
                    counts[v as usize].impressions += 1;
                }
            }
            Ok(())
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    if served.is_empty() {
        return Ok(BTreeMap::new());
    }
    logs.log(Table::Playback).scan_range(
        from_ms,
        to_ms + horizon_ms,
        true,
        Some(&[
            "ts_start_ms",
            "request_id",
            "item_id",
            "ms_played",
            "item_duration_ms",
            "reason_end",
        ]),
        |b| {
            let (Some(ts), Some(req), Some(item), Some(ms), Some(dur), Some(reason)) = (
                b.column(0).as_primitive_opt::<Int64Type>(),
                b.column(1).as_string_opt::<i32>(),
                b.column(2).as_string_opt::<i32>(),
                b.column(3).as_primitive_opt::<UInt32Type>(),
                b.column(4).as_primitive_opt::<UInt32Type>(),
                b.column(5).as_string_opt::<i32>(),
            ) else {
                failed.get_or_insert_with(|| bad("playback"));
                return Ok(());
            };
            for i in 0..b.num_rows() {
                let t = ts.value(i);
                if t < from_ms || t >= to_ms + horizon_ms || !req.is_valid(i) {
                    continue;
                }
                let Some(v) = served.get(&key(req.value(i), item.value(i))) else {
                    continue;
                };
                let c = &mut counts[*v as usize];
                let (played, duration) = (ms.value(i), dur.value(i));
                c.plays += 1;
                if played >= encore_core::event::STREAM_THRESHOLD_MS {
                    c.streams += 1;
                } else if matches!(reason.value(i), "fwdbtn" | "backbtn") && played < duration {
                    c.skips += 1;
                }
            }
            Ok(())
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(versions.into_iter().zip(counts).collect())
}

/// `m`'s verdicts on the window starting at `start`: streams per impression and skips per
/// play of each version with at least `min_rows` impressions, against the incumbent's.
pub fn judge_window(
    m: &Monitor,
    logs: &Ingestor,
    start: i64,
) -> Result<Vec<MonitorResult>, AppError> {
    let len = m.window.ms();
    let all = outcomes(logs, start, start + len, i64::from(m.horizon_s) * 1000)?;
    let Some((incumbent, inc)) = all
        .iter()
        .max_by_key(|(name, o)| (o.impressions, std::cmp::Reverse(name.as_str())))
        .map(|(n, o)| (n.clone(), *o))
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (version, o) in &all {
        if o.impressions < m.min_rows {
            continue;
        }
        let rates = [
            (
                "stream_rate",
                o.streams,
                o.impressions,
                inc.streams,
                inc.impressions,
                -1.0,
            ),
            ("skip_rate", o.skips, o.plays, inc.skips, inc.plays, 1.0),
        ];
        for (attribute, x, n, x_inc, n_inc, worse) in rates {
            if n == 0 || n_inc == 0 {
                continue;
            }
            let rate = x as f64 / n as f64;
            let rate_inc = x_inc as f64 / n_inc as f64;
            let vs_incumbent = *version != incumbent;
            let p =
                encore_stats::two_proportions(x_inc as f64, n_inc as f64, x as f64, n as f64, 0.05);
            let relative = if rate_inc > 0.0 {
                rate / rate_inc - 1.0
            } else {
                0.0
            };
            // worse by more than the threshold, and surely worse
            let fired = vs_incumbent
                && rate_inc > 0.0
                && worse * relative > m.threshold
                && if worse < 0.0 {
                    p.unpooled.ci.1 < 0.0
                } else {
                    p.unpooled.ci.0 > 0.0
                };
            out.push(MonitorResult {
                monitor: m.name.clone(),
                window_start_ms: start,
                window_end_ms: start + len,
                slice: format!("{}{version}", super::profiling::SERVED_MODEL),
                attribute: Some(attribute.to_owned()),
                statistic: attribute.to_owned(),
                value: rate,
                threshold: m.threshold,
                fired,
                rows: n,
                baseline_rows: if vs_incumbent { n_inc } else { 0 },
                baseline_windows: 0,
                noise: None,
                interval: vs_incumbent.then_some(super::eval::Interval {
                    low: p.unpooled.ci.0,
                    high: p.unpooled.ci.1,
                }),
                moves: if vs_incumbent {
                    vec![Move {
                        value: format!("incumbent {incumbent}"),
                        baseline: rate_inc,
                        current: rate,
                    }]
                } else {
                    Vec::new()
                },
            });
        }
    }
    Ok(out)
}

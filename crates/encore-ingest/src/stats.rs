//! What the event log holds: per-day volumes, listeners, items, streams and skips, interactions by
//! kind, storage footprint, and the running ingest counters (rejects by rule, duplicates).

use crate::error::IngestError;
use crate::ingest::{Counters, Ingestor};
use crate::table::Table;
use arrow::array::{Array, Int64Array, StringArray, UInt32Array};
use encore_core::event::STREAM_THRESHOLD_MS;
use encore_core::time::Date;
use encore_storage::{LogStats, StorageError};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize)]
pub struct DayStats {
    pub day: String,
    pub plays: u64,
    pub streams: u64,
    pub skips: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventStats {
    pub plays: u64,
    pub streams: u64,
    pub skips: u64,
    pub users: u64,
    pub items: u64,
    pub interactions: u64,
    pub interactions_by_kind: BTreeMap<String, u64>,
    pub days: Vec<DayStats>,
    pub playback_log: LogStats,
    pub interaction_log: LogStats,
    pub ingest: Counters,
}

/// Scans both tables once.
pub fn event_stats(ingestor: &Ingestor) -> Result<EventStats, IngestError> {
    let mut out = EventStats::default();
    let mut users: HashSet<String> = HashSet::new();
    let mut items: HashSet<String> = HashSet::new();
    let mut days: BTreeMap<i64, DayStats> = BTreeMap::new();
    let cols = [
        "ts_start_ms",
        "user_id",
        "item_id",
        "ms_played",
        "reason_end",
        "item_duration_ms",
    ];
    ingestor.log(Table::Playback).scan(Some(&cols), |b| {
        let get = |i: usize| b.column(i).as_any();
        let (Some(ts), Some(user), Some(item), Some(ms), Some(reason), Some(dur)) = (
            get(0).downcast_ref::<Int64Array>(),
            get(1).downcast_ref::<StringArray>(),
            get(2).downcast_ref::<StringArray>(),
            get(3).downcast_ref::<UInt32Array>(),
            get(4).downcast_ref::<StringArray>(),
            get(5).downcast_ref::<UInt32Array>(),
        ) else {
            return Err(StorageError::Arrow {
                message: "unexpected playback column types".into(),
            });
        };
        for i in 0..b.num_rows() {
            let day = days
                .entry(ts.value(i).div_euclid(encore_core::time::MS_PER_DAY))
                .or_default();
            day.plays += 1;
            let stream = ms.value(i) >= STREAM_THRESHOLD_MS;
            let skip =
                matches!(reason.value(i), "fwdbtn" | "backbtn") && ms.value(i) < dur.value(i);
            day.streams += u64::from(stream);
            day.skips += u64::from(skip);
            if !users.contains(user.value(i)) {
                users.insert(user.value(i).to_owned());
            }
            if !items.contains(item.value(i)) {
                items.insert(item.value(i).to_owned());
            }
        }
        Ok(())
    })?;
    ingestor
        .log(Table::Interaction)
        .scan(Some(&["kind", "user_id"]), |b| {
            let (Some(kind), Some(user)) = (
                b.column(0).as_any().downcast_ref::<StringArray>(),
                b.column(1).as_any().downcast_ref::<StringArray>(),
            ) else {
                return Err(StorageError::Arrow {
                    message: "unexpected interaction column types".into(),
                });
            };
            for i in 0..b.num_rows() {
                *out.interactions_by_kind
                    .entry(kind.value(i).to_owned())
                    .or_default() += 1;
                if !user.is_null(i) && !users.contains(user.value(i)) {
                    users.insert(user.value(i).to_owned());
                }
            }
            out.interactions += b.num_rows() as u64;
            Ok(())
        })?;
    for (day, mut s) in days {
        s.day = Date::from_days(day).to_string();
        out.plays += s.plays;
        out.streams += s.streams;
        out.skips += s.skips;
        out.days.push(s);
    }
    out.users = users.len() as u64;
    out.items = items.len() as u64;
    out.playback_log = ingestor.log(Table::Playback).stats();
    out.interaction_log = ingestor.log(Table::Interaction).stats();
    out.ingest = ingestor.counters();
    Ok(out)
}

//! The online store (redb, `<data dir>/features.redb`): per view and entity, the entity's recent
//! events (those within the view's horizon, the longest of its windows and TTL), sorted by time,
//! with the time of the last update. A read computes each feature as of now with the same code
//! as a training set's point-in-time value, so online and offline agree by construction, windows
//! slide without writes, and TTL is enforced on read (expired: null, with the reason, counted).
//!
//! Writes come from materialization (a time range of the event log, incremental from a
//! watermark) and from ingestion as events arrive; both merge into the buffers, dropping exact
//! duplicates, so replaying a range is harmless.

use crate::compute::{Status, status, values};
use crate::def::{Definitions, EntityKind, View};
use crate::event::FeatureEvent;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

const BUFFERS: TableDefinition<&str, &[u8]> = TableDefinition::new("buffers");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const WATERMARK: &str = "materialized_to_ms";

#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error("online store: {0}")]
    Store(String),
    #[error("{0}")]
    Invalid(String),
    #[error("feature service {0} is not defined")]
    UnknownService(String),
}

impl encore_core::Coded for OnlineError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            OnlineError::Store(_) => encore_core::ErrorCode::Unavailable,
            OnlineError::Invalid(_) => encore_core::ErrorCode::InvalidArgument,
            OnlineError::UnknownService(_) => encore_core::ErrorCode::NotFound,
        }
    }
}

fn dberr<E: Into<redb::Error>>(e: E) -> OnlineError {
    OnlineError::Store(e.into().to_string())
}

const EVENT_BYTES: usize = 8 + 3 * 8 + 1 + 7 * 8;

fn encode(updated_ms: i64, events: &[FeatureEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + events.len() * EVENT_BYTES);
    out.extend_from_slice(&updated_ms.to_le_bytes());
    for e in events {
        out.extend_from_slice(&e.ts.to_le_bytes());
        for x in e.num {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.push(e.flags);
        for c in e.cat {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    out
}

/// The buffer's update time and its events with `ts > from_ms`.
fn decode(bytes: &[u8], from_ms: i64) -> (i64, Vec<FeatureEvent>) {
    let word = |b: &[u8], at: usize| -> [u8; 8] {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        w
    };
    if bytes.len() < 8 {
        return (0, Vec::new());
    }
    let updated = i64::from_le_bytes(word(bytes, 0));
    let body = &bytes[8..];
    let n = body.len() / EVENT_BYTES;
    // events are sorted: skip the old ones by their time alone
    let first = (0..n)
        .find(|&i| i64::from_le_bytes(word(body, i * EVENT_BYTES)) > from_ms)
        .unwrap_or(n);
    let mut out = Vec::with_capacity(n - first);
    for i in first..n {
        let b = &body[i * EVENT_BYTES..(i + 1) * EVENT_BYTES];
        let f = |k: usize| f64::from_le_bytes(word(b, 8 + k * 8));
        let mut cat = [0u64; 7];
        for (k, c) in cat.iter_mut().enumerate() {
            *c = u64::from_le_bytes(word(b, 33 + k * 8));
        }
        out.push(FeatureEvent {
            ts: i64::from_le_bytes(word(b, 0)),
            num: [f(0), f(1), f(2)],
            flags: b[32],
            cat,
        });
    }
    (updated, out)
}

fn buffer_key(view: &str, entity: &str) -> String {
    format!("{view}\u{0}{entity}")
}

/// One event with the fields entity keys are made of.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub user_id: String,
    pub item_id: String,
    pub artist_id: Option<String>,
    pub event: FeatureEvent,
}

/// Reads of the online store so far.
#[derive(Debug, Default, Serialize)]
pub struct OnlineStats {
    pub reads: AtomicU64,
    /// view values served as null because the entity's newest event is older than the TTL
    pub expired: AtomicU64,
    /// view values served as null because the entity has no events
    pub missing: AtomicU64,
    pub events_applied: AtomicU64,
}

/// A compiled retrieval plan of a feature service: per view, which request fields make its key.
#[derive(Debug, Clone)]
pub struct Plan {
    pub service: String,
    pub views: Vec<(View, Vec<&'static str>)>,
    /// every request field the plan needs
    pub fields: Vec<&'static str>,
    /// per view, its features' output names (`<view>__<feature>`)
    pub names: Vec<Vec<String>>,
}

impl Plan {
    pub fn new(defs: &Definitions, service: &str) -> Result<Plan, OnlineError> {
        let views = defs
            .service(service)
            .ok_or_else(|| OnlineError::UnknownService(service.to_owned()))?;
        let mut fields: Vec<&'static str> = Vec::new();
        let views = views
            .into_iter()
            .map(|v| {
                let keys = v.kind.keys().to_vec();
                for k in &keys {
                    if !fields.contains(k) {
                        fields.push(k);
                    }
                }
                (v.clone(), keys)
            })
            .collect();
        let views: Vec<(View, Vec<&'static str>)> = views;
        let names = views
            .iter()
            .map(|(v, _)| {
                v.features
                    .iter()
                    .map(|f| format!("{}__{}", v.name, f.name))
                    .collect()
            })
            .collect();
        Ok(Plan {
            service: service.into(),
            views,
            fields,
            names,
        })
    }
}

/// The features of one entity row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureRow {
    /// `<view>__<feature>` → value (null when undefined, expired or missing)
    pub values: BTreeMap<String, Option<f64>>,
    /// per view
    pub status: BTreeMap<String, Status>,
    /// per view: ms since the entity's buffer was last updated (absent when missing)
    pub age_ms: BTreeMap<String, i64>,
    /// true when no view knows the entity
    pub missing: bool,
}

#[derive(Debug)]
pub struct OnlineStore {
    db: Database,
    pub stats: OnlineStats,
}

impl OnlineStore {
    pub fn open(root: &std::path::Path) -> Result<OnlineStore, OnlineError> {
        let db = Database::create(root.join("features.redb")).map_err(dberr)?;
        let tx = db.begin_write().map_err(dberr)?;
        {
            tx.open_table(BUFFERS).map_err(dberr)?;
            tx.open_table(META).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(OnlineStore {
            db,
            stats: OnlineStats::default(),
        })
    }

    /// Merges `events` into the buffers of every view of `defs` (one transaction), pruning each
    /// touched buffer to the view's horizon before `now_ms`.
    pub fn apply(
        &self,
        defs: &Definitions,
        events: &[Keyed],
        now_ms: i64,
    ) -> Result<usize, OnlineError> {
        if events.is_empty() || defs.views.is_empty() {
            return Ok(0);
        }
        // (view, entity) -> new events
        let mut groups: HashMap<String, (i64, Vec<FeatureEvent>)> = HashMap::new();
        for v in defs.views.values() {
            let from = now_ms - v.horizon_ms();
            for k in events {
                if let Some(entity) = v.kind.key(&k.user_id, &k.item_id, k.artist_id.as_deref()) {
                    let g = groups
                        .entry(buffer_key(&v.name, &entity))
                        .or_insert_with(|| (from, Vec::new()));
                    // an event past the horizon is not kept, but the entity is known: its
                    // values read as expired, not missing
                    if k.event.ts > from {
                        g.1.push(k.event);
                    }
                }
            }
        }
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(BUFFERS).map_err(dberr)?;
            for (key, (from, mut new)) in groups {
                let (_, mut have) = match t.get(key.as_str()).map_err(dberr)? {
                    Some(g) => decode(g.value(), from),
                    None => (0, Vec::new()),
                };
                new.sort_by_key(|e| e.ts);
                for e in new {
                    let at = have.partition_point(|x| x.ts <= e.ts);
                    // an exact duplicate (a replayed range) is kept once
                    if have[..at]
                        .iter()
                        .rev()
                        .take_while(|x| x.ts == e.ts)
                        .any(|x| *x == e)
                    {
                        continue;
                    }
                    have.insert(at, e);
                }
                t.insert(key.as_str(), encode(now_ms, &have).as_slice())
                    .map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        self.stats
            .events_applied
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(events.len())
    }

    /// Up to `limit` entity keys the store holds for `view` (key fields joined by U+001F).
    pub fn entities(&self, view: &str, limit: usize) -> Result<Vec<String>, OnlineError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(BUFFERS).map_err(dberr)?;
        let (lo, hi) = (format!("{view}\u{0}"), format!("{view}\u{1}"));
        let mut out = Vec::new();
        for item in t.range(lo.as_str()..hi.as_str()).map_err(dberr)? {
            let (k, _) = item.map_err(dberr)?;
            out.push(k.value()[lo.len()..].to_owned());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Feature `feature` of `view` for every entity whose key starts with `prefix` (e.g. a
    /// listener's user-artist pairs): the rest of each key and the value, live entities only.
    pub fn prefix_values(
        &self,
        view: &View,
        feature: usize,
        prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, f64)>, OnlineError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(BUFFERS).map_err(dberr)?;
        let lo = format!("{}\u{0}{prefix}\u{1f}", view.name);
        let hi = format!("{}\u{0}{prefix}\u{20}", view.name);
        let from = now_ms - view.horizon_ms();
        let f = std::slice::from_ref(&view.features[feature]);
        let mut out = Vec::new();
        for item in t.range(lo.as_str()..hi.as_str()).map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            let (_, events) = decode(v.value(), from);
            if status(&events, now_ms, view.ttl_ms) != Status::Live {
                continue;
            }
            if let Some(x) = values(f, &events, now_ms)[0] {
                out.push((k.value()[lo.len()..].to_owned(), x));
            }
        }
        Ok(out)
    }

    /// The time materialization has reached (0 when never run).
    pub fn watermark(&self) -> Result<i64, OnlineError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(META).map_err(dberr)?;
        Ok(t.get(WATERMARK).map_err(dberr)?.map_or(0, |g| g.value()))
    }

    pub fn set_watermark(&self, ms: i64) -> Result<(), OnlineError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(META).map_err(dberr)?;
            t.insert(WATERMARK, ms).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// The features of `plan` for each row of `rows` (request field → value), as of `now_ms`,
    /// in one read transaction. A row without a field the plan needs is an error naming it.
    pub fn read(
        &self,
        plan: &Plan,
        rows: &[BTreeMap<String, String>],
        now_ms: i64,
    ) -> Result<Vec<FeatureRow>, OnlineError> {
        for (i, r) in rows.iter().enumerate() {
            if let Some(f) = plan.fields.iter().find(|f| !r.contains_key(**f)) {
                return Err(OnlineError::Invalid(format!(
                    "entities[{i}]: field {f:?} is missing (service {} needs {})",
                    plan.service,
                    plan.fields.join(", ")
                )));
            }
        }
        // fetch and decode in one read transaction; then compute, rows in parallel
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(BUFFERS).map_err(dberr)?;
        let mut fetched: Vec<Vec<(i64, Vec<FeatureEvent>)>> = Vec::with_capacity(rows.len());
        let mut key = String::new();
        for r in rows {
            let mut per_view = Vec::with_capacity(plan.views.len());
            for (v, keys) in &plan.views {
                key.clear();
                key.push_str(&v.name);
                key.push('\u{0}');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        key.push('\u{1f}');
                    }
                    key.push_str(&r[*k]);
                }
                let from = now_ms - v.horizon_ms();
                per_view.push(match t.get(key.as_str()).map_err(dberr)? {
                    Some(g) => decode(g.value(), from),
                    None => (0, Vec::new()),
                });
            }
            fetched.push(per_view);
        }
        let compute = |per_view: &Vec<(i64, Vec<FeatureEvent>)>| -> FeatureRow {
            let mut row = FeatureRow {
                values: BTreeMap::new(),
                status: BTreeMap::new(),
                age_ms: BTreeMap::new(),
                missing: true,
            };
            for (((v, _), (updated, events)), names) in
                plan.views.iter().zip(per_view).zip(&plan.names)
            {
                let mut st = status(events, now_ms, v.ttl_ms);
                // a buffer pruned to nothing still knows the entity: expired, not missing
                if st == Status::Missing && *updated > 0 {
                    st = Status::Expired;
                }
                match st {
                    Status::Live | Status::Expired => row.missing = false,
                    Status::Missing => {}
                }
                if *updated > 0 {
                    row.age_ms.insert(v.name.clone(), now_ms - updated);
                }
                let vals = if st == Status::Live {
                    values(&v.features, events, now_ms)
                } else {
                    vec![None; v.features.len()]
                };
                for (name, x) in names.iter().zip(vals) {
                    row.values.insert(name.clone(), x);
                }
                row.status.insert(v.name.clone(), st);
            }
            row
        };
        let out: Vec<FeatureRow> = if fetched.len() >= 16 {
            use rayon::prelude::*;
            fetched.par_iter().map(compute).collect()
        } else {
            fetched.iter().map(compute).collect()
        };
        for row in &out {
            for st in row.status.values() {
                match st {
                    Status::Expired => self.stats.expired.fetch_add(1, Ordering::Relaxed),
                    Status::Missing => self.stats.missing.fetch_add(1, Ordering::Relaxed),
                    Status::Live => 0,
                };
            }
        }
        self.stats
            .reads
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        Ok(out)
    }
}

/// The entity kinds of `defs`' views.
pub fn kinds(defs: &Definitions) -> Vec<EntityKind> {
    let mut k: Vec<EntityKind> = defs.views.values().map(|v| v.kind).collect();
    k.sort_by_key(|k| *k as u8);
    k.dedup();
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_round_trip_and_skip_old_events() {
        let e = |ts: i64| FeatureEvent {
            ts,
            num: [ts as f64, 2.0, 0.5],
            flags: 3,
            cat: [1, 2, 3, 4, 5, 6, ts as u64],
        };
        let events = vec![e(10), e(20), e(30)];
        let bytes = encode(99, &events);
        assert_eq!(decode(&bytes, 20).1, vec![e(30)]);
        assert_eq!(decode(&bytes, 0), (99, events));
    }
}

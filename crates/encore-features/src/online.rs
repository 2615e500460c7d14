//! The online store (redb, `<data dir>/features.redb`): per view and entity, the entity's recent
//! events (those within the view's horizon, the longest of its windows and TTL), sorted by time,
//! with the time of the last update. A read computes each feature as of now with the same code
//! as a training set's point-in-time value, so online and offline agree by construction, windows
//! slide without writes, and TTL is enforced on read (expired: null, with the reason, counted).
//!
//! Writes come from materialization (a time range of the event log, incremental from a
//! watermark) and from ingestion as events arrive; both merge into the buffers, dropping exact
//! duplicates, so replaying a range is harmless.

use crate::compute::{Status, status, values, values_of};
use crate::def::{Agg, Definitions, EntityKind, Feature, View};
use crate::event::FeatureEvent;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
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
/// after each event: running sums of the numeric fields and running counts of the flags, up to
/// and including it, so counts and sums over any window are two lookups
const CUM_BYTES: usize = 3 * 8 + 4 * 4;
const RECORD: usize = EVENT_BYTES + CUM_BYTES;

fn encode(updated_ms: i64, events: &[FeatureEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + events.len() * RECORD);
    out.extend_from_slice(&updated_ms.to_le_bytes());
    let (mut sums, mut flags) = ([0f64; 3], [0u32; 4]);
    for e in events {
        out.extend_from_slice(&e.ts.to_le_bytes());
        for x in e.num {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.push(e.flags);
        for c in e.cat {
            out.extend_from_slice(&c.to_le_bytes());
        }
        for (k, s) in sums.iter_mut().enumerate() {
            *s += e.num[k];
            out.extend_from_slice(&s.to_le_bytes());
        }
        for (k, c) in flags.iter_mut().enumerate() {
            *c += u32::from(e.flag(k));
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    out
}

/// A stored buffer read in place: events by index, binary search by time, running sums.
struct Buf<'a> {
    body: &'a [u8],
    n: usize,
}

impl<'a> Buf<'a> {
    /// The update time and the events.
    fn new(bytes: &'a [u8]) -> (i64, Buf<'a>) {
        if bytes.len() < 8 {
            return (0, Buf { body: &[], n: 0 });
        }
        let body = &bytes[8..];
        (
            i64::from_le_bytes(word(bytes, 0)),
            Buf {
                body,
                n: body.len() / RECORD,
            },
        )
    }

    fn ts(&self, i: usize) -> i64 {
        i64::from_le_bytes(word(self.body, i * RECORD))
    }

    /// Events with `ts <= t`: the end of the prefix.
    fn upto(&self, t: i64) -> usize {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.ts(mid) <= t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn event(&self, i: usize) -> FeatureEvent {
        let b = &self.body[i * RECORD..i * RECORD + EVENT_BYTES];
        let f = |k: usize| f64::from_le_bytes(word(b, 8 + k * 8));
        let mut cat = [0u64; 7];
        for (k, c) in cat.iter_mut().enumerate() {
            *c = u64::from_le_bytes(word(b, 33 + k * 8));
        }
        FeatureEvent {
            ts: i64::from_le_bytes(word(b, 0)),
            num: [f(0), f(1), f(2)],
            flags: b[32],
            cat,
        }
    }

    /// The sum of numeric field `k` over events `[0, end)`.
    fn sum(&self, end: usize, k: usize) -> f64 {
        if end == 0 {
            return 0.0;
        }
        f64::from_le_bytes(word(self.body, (end - 1) * RECORD + EVENT_BYTES + k * 8))
    }

    /// How many of events `[0, end)` have flag `k`.
    fn flagged(&self, end: usize, k: usize) -> u64 {
        if end == 0 {
            return 0;
        }
        let at = (end - 1) * RECORD + EVENT_BYTES + 24 + k * 4;
        let mut w = [0u8; 4];
        w.copy_from_slice(&self.body[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    }

    /// Events `[lo, hi)` passing `filter`, if it is answerable from the running counts
    /// (no filter, or one flag).
    fn count(&self, filter: &crate::def::Filter, lo: usize, hi: usize) -> Option<u64> {
        use crate::def::Term;
        match filter.terms.as_slice() {
            [] => Some((hi - lo) as u64),
            [Term::Flag { index, want }] => {
                let with = self.flagged(hi, *index) - self.flagged(lo, *index);
                Some(if *want { with } else { (hi - lo) as u64 - with })
            }
            _ => None,
        }
    }
}

fn word(b: &[u8], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    w
}

/// The buffer's update time and its events with `ts > from_ms`.
fn decode(bytes: &[u8], from_ms: i64) -> (i64, Vec<FeatureEvent>) {
    let (updated, buf) = Buf::new(bytes);
    let first = buf.upto(from_ms);
    (updated, (first..buf.n).map(|i| buf.event(i)).collect())
}

/// `f` over events `[lo, hi)` of `buf` from the running sums, when it can be (counts with no
/// filter or one flag; sums and means without a filter; ratios of those).
fn from_sums(f: &Feature, buf: &Buf<'_>, lo: usize, hi: usize) -> Option<Option<f64>> {
    let part = |(field, filter): &(Option<usize>, crate::def::Filter)| -> Option<(u64, f64)> {
        let n = buf.count(filter, lo, hi)?;
        match field {
            None => Some((n, n as f64)),
            Some(k) if filter.terms.is_empty() => Some((n, buf.sum(hi, *k) - buf.sum(lo, *k))),
            Some(_) => None,
        }
    };
    Some(match &f.agg {
        Agg::Count => Some(buf.count(&f.filter, lo, hi)? as f64),
        Agg::Sum(k) if f.filter.terms.is_empty() => Some(buf.sum(hi, *k) - buf.sum(lo, *k)),
        Agg::Mean(k) if f.filter.terms.is_empty() => {
            let n = hi - lo;
            (n > 0).then(|| (buf.sum(hi, *k) - buf.sum(lo, *k)) / n as f64)
        }
        Agg::Ratio { num, den } => {
            let (_, x) = part(num)?;
            let (dn, d) = part(den)?;
            (dn > 0 && d != 0.0).then(|| x / d)
        }
        _ => return None,
    })
}

/// Every feature of `view` as of `t` straight from a stored buffer: counts, sums, means and
/// ratios from the running sums by binary search; the rest from the events of their windows.
/// The status says whether the view is live (values are null otherwise).
fn view_values(view: &View, bytes: &[u8], t: i64) -> (i64, Status, Vec<Option<f64>>) {
    let (updated, buf) = Buf::new(bytes);
    let hi = buf.upto(t);
    let mut st = match hi {
        0 => Status::Missing,
        h if buf.ts(h - 1) <= t - view.ttl_ms => Status::Expired,
        _ => Status::Live,
    };
    // a buffer pruned to nothing still knows the entity: expired, not missing
    if st == Status::Missing && updated > 0 {
        st = Status::Expired;
    }
    if st != Status::Live {
        return (updated, st, vec![None; view.features.len()]);
    }
    let mut out = vec![None; view.features.len()];
    let mut rest: Vec<usize> = Vec::new();
    for (i, f) in view.features.iter().enumerate() {
        let lo = buf.upto(t - f.span_ms);
        if let Agg::Last(k) = f.agg {
            // the newest event of the window that passes the filter: usually the newest
            out[i] = (lo..hi)
                .rev()
                .map(|j| buf.event(j))
                .find(|e| f.filter.accepts(e))
                .map(|e| e.num[k]);
            continue;
        }
        match from_sums(f, &buf, lo, hi) {
            Some(v) => out[i] = v,
            None => rest.push(i),
        }
    }
    if !rest.is_empty() {
        let span = rest
            .iter()
            .map(|&i| view.features[i].span_ms)
            .max()
            .unwrap_or(0);
        let lo = buf.upto(t - span);
        let events: Vec<FeatureEvent> = (lo..hi).map(|i| buf.event(i)).collect();
        let features: Vec<&Feature> = rest.iter().map(|&i| &view.features[i]).collect();
        for (&i, v) in rest.iter().zip(values_of(&features, &events, t)) {
            out[i] = v;
        }
    }
    (updated, st, out)
}

/// What an online read of `view` computes as of `t` from a buffer holding `events` (sorted by
/// time): the status and every feature's value.
pub fn read_as_of(view: &View, events: &[FeatureEvent], t: i64) -> (Status, Vec<Option<f64>>) {
    let (_, st, v) = view_values(view, &encode(0, events), t);
    (st, v)
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
    /// every feature's output name (`<view>__<feature>`), views in order
    pub names: Arc<Vec<String>>,
    /// the views' names, in order
    pub view_names: Arc<Vec<String>>,
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
        Ok(Plan::of(service, views, fields))
    }

    /// A plan of `views` (each with the request fields that key it).
    pub fn of(
        service: &str,
        views: Vec<(View, Vec<&'static str>)>,
        fields: Vec<&'static str>,
    ) -> Plan {
        let names = views
            .iter()
            .flat_map(|(v, _)| {
                v.features
                    .iter()
                    .map(move |f| format!("{}__{}", v.name, f.name))
            })
            .collect();
        let view_names = views.iter().map(|(v, _)| v.name.clone()).collect();
        Plan {
            service: service.into(),
            views,
            fields,
            names: Arc::new(names),
            view_names: Arc::new(view_names),
        }
    }
}

/// The features of one entity row. Serialized as
/// `{"values": {"<view>__<feature>": number|null}, "status": {"<view>": ...}, "age_ms": {...},
/// "missing": bool}`; names are shared with the plan, not copied per row.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    names: Arc<Vec<String>>,
    views: Arc<Vec<String>>,
    /// in the plan's order of features
    pub values: Vec<Option<f64>>,
    /// per view, in the plan's order
    pub status: Vec<Status>,
    /// per view: ms since the entity's buffer was last updated (None when missing)
    pub age_ms: Vec<Option<i64>>,
    /// true when no view knows the entity
    pub missing: bool,
}

impl FeatureRow {
    /// The value of `<view>__<feature>` (None when null or not in the plan).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.values[i])
    }

    /// The status of `view`.
    pub fn status_of(&self, view: &str) -> Option<Status> {
        self.views
            .iter()
            .position(|v| v == view)
            .map(|i| self.status[i])
    }

    /// `(name, value)` in the plan's order.
    pub fn named(&self) -> impl Iterator<Item = (&str, Option<f64>)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().copied())
    }
}

impl Serialize for FeatureRow {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Pairs<'a, K, V>(&'a [K], &'a [V]);
        impl<K: Serialize, V: Serialize> Serialize for Pairs<'_, K, V> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0.iter().zip(self.1) {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        struct Ages<'a>(&'a [String], &'a [Option<i64>]);
        impl Serialize for Ages<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(None)?;
                for (k, v) in self.0.iter().zip(self.1) {
                    if let Some(v) = v {
                        m.serialize_entry(k, v)?;
                    }
                }
                m.end()
            }
        }
        let mut m = ser.serialize_map(Some(4))?;
        m.serialize_entry("values", &Pairs(&self.names, &self.values))?;
        m.serialize_entry("status", &Pairs(&self.views, &self.status))?;
        m.serialize_entry("age_ms", &Ages(&self.views, &self.age_ms))?;
        m.serialize_entry("missing", &self.missing)?;
        m.end()
    }
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
        let mut entity = String::new();
        for v in defs.views.values() {
            let from = now_ms - v.horizon_ms();
            for k in events {
                if v.kind
                    .write_key(&mut entity, &k.user_id, &k.item_id, k.artist_id.as_deref())
                {
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
        // each buffer is read in place, inside the transaction: counts and sums come from its
        // running sums, the other features from the events of their windows
        let mut out = Vec::with_capacity(rows.len());
        let mut key = String::new();
        let n_features = plan.names.len();
        for r in rows {
            let mut row = FeatureRow {
                names: Arc::clone(&plan.names),
                views: Arc::clone(&plan.view_names),
                values: Vec::with_capacity(n_features),
                status: Vec::with_capacity(plan.views.len()),
                age_ms: Vec::with_capacity(plan.views.len()),
                missing: true,
            };
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
                let guard = t.get(key.as_str()).map_err(dberr)?;
                let (updated, st, vals) =
                    view_values(v, guard.as_ref().map_or(&[], |g| g.value()), now_ms);
                if st != Status::Missing {
                    row.missing = false;
                }
                row.age_ms.push((updated > 0).then(|| now_ms - updated));
                row.values.extend(vals);
                row.status.push(st);
            }
            out.push(row);
        }
        for row in &out {
            for st in &row.status {
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

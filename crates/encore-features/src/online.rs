//! The online store (a key-value store, embedded: `<data dir>/features.redb`): per view and
//! entity, the entity's recent
//! events (those within the view's horizon, the longest of its windows and TTL), sorted by time,
//! with the time of the last update. A read computes each feature as of now with the same code
//! as a training set's point-in-time value, so online and offline agree by construction, windows
//! slide without writes, and TTL is enforced on read (expired: null, with the reason, counted).
//!
//! Writes come from materialization (a time range of the event log, incremental from a
//! watermark) and from ingestion as events arrive; both merge into the buffers, dropping exact
//! duplicates, so replaying a range is harmless.

use crate::cache::Cache;
use crate::columns::Layout;
use crate::compute::{Status, status, values};
use crate::def::{Definitions, EntityKind, View};
use crate::event::FeatureEvent;
use encore_storage::StorageError;
use encore_storage::kv::{Change, KvRead, KvStore, Watch};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// per view and entity: the events within the view's horizon (the source of truth)
const EVENTS: &str = "events";
/// per view and entity: the prefix columns reads use ([`Layout`])
const COLUMNS: &str = "columns";
/// the store's first layout (events with running sums in one table), replaced by the two above
const OLD_BUFFERS: &str = "buffers";
/// the store's bookkeeping (little-endian integers)
const META: &str = "watermarks";
/// where an earlier layout kept the watermark (typed integers)
const OLD_META: &str = "meta";
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

impl From<StorageError> for OnlineError {
    fn from(e: StorageError) -> OnlineError {
        OnlineError::Store(e.to_string())
    }
}

const RECORD: usize = 8 + 3 * 8 + 1 + 7 * 8;

fn encode(updated_ms: i64, events: &[FeatureEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + events.len() * RECORD);
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
    if bytes.len() < 8 {
        return (0, Vec::new());
    }
    let body = &bytes[8..];
    let n = body.len() / RECORD;
    let ts = |i: usize| i64::from_le_bytes(word(body, i * RECORD));
    let (mut first, mut end) = (0, n);
    while first < end {
        let mid = (first + end) / 2;
        if ts(mid) <= from_ms {
            first = mid + 1;
        } else {
            end = mid;
        }
    }
    let events = (first..n)
        .map(|i| {
            let b = &body[i * RECORD..(i + 1) * RECORD];
            let f = |k: usize| f64::from_le_bytes(word(b, 8 + k * 8));
            let mut cat = [0u64; 7];
            for (k, c) in cat.iter_mut().enumerate() {
                *c = u64::from_le_bytes(word(b, 33 + k * 8));
            }
            FeatureEvent {
                ts: ts(i),
                num: [f(0), f(1), f(2)],
                flags: b[32],
                cat,
            }
        })
        .collect();
    (i64::from_le_bytes(word(bytes, 0)), events)
}

fn word(b: &[u8], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    w
}

/// Every feature of `view` as of `t` from an entity's stored events (the slow path: a buffer
/// written under other definitions), appended to `out`, with the view's status.
fn from_events(view: &View, bytes: &[u8], t: i64, out: &mut Vec<Option<f64>>) -> (i64, Status) {
    let (updated, events) = decode(bytes, t - view.horizon_ms());
    let mut st = status(&events, t, view.ttl_ms);
    // a buffer pruned to nothing still knows the entity: expired, not missing
    if st == Status::Missing && updated > 0 {
        st = Status::Expired;
    }
    if st == Status::Live {
        out.extend(values(&view.features, &events, t));
    } else {
        out.extend(std::iter::repeat_n(None, view.features.len()));
    }
    (updated, st)
}

/// What an online read of `view` computes as of `t` from a buffer holding `events` (sorted by
/// time): the status and every feature's value.
pub fn read_as_of(view: &View, events: &[FeatureEvent], t: i64) -> (Status, Vec<Option<f64>>) {
    let layout = Layout::of(view);
    let mut out = Vec::new();
    let (_, st) = match layout.read(&layout.encode(0, events), t, &mut out) {
        Some(r) => r,
        None => from_events(view, &encode(0, events), t, &mut out),
    };
    (st, out)
}

fn buffer_key(view: &str, entity: &str) -> String {
    format!("{view}\u{0}{entity}")
}

pub use crate::event::Keyed;

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
    /// the views' read layouts, in order
    pub layouts: Vec<Layout>,
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
        let layouts = views.iter().map(|(v, _)| Layout::of(v)).collect();
        Plan {
            layouts,
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
    /// the key-value store behind it (embedded: `<data dir>/features.redb`)
    kv: Box<dyn KvStore>,
    pub stats: OnlineStats,
    /// hot entities' columns in memory ([`OnlineStore::with_cache`])
    pub cache: Option<Arc<Cache>>,
    /// other processes' writes evicting from the cache (a shared store), while it lives
    _watch: Option<Watch>,
}

impl OnlineStore {
    /// The online store of the data directory `root`, in the key-value store it uses.
    pub fn open(root: &std::path::Path) -> Result<OnlineStore, OnlineError> {
        OnlineStore::with_store(encore_storage::kv::open(root, "features")?)
    }

    /// The online store kept in `kv`.
    pub fn with_store(kv: Box<dyn KvStore>) -> Result<OnlineStore, OnlineError> {
        let (old_layout, old_meta) = kv.write(|tx| {
            Ok::<_, StorageError>((tx.drop_table(OLD_BUFFERS)?, tx.drop_table(OLD_META)?))
        })?;
        if old_layout || old_meta {
            // a store of an earlier layout is brought up to date by materializing again
            kv.write(|tx| tx.delete(META, WATERMARK))?;
            tracing::warn!(
                "the online feature store was rebuilt for a new layout: run `encore features materialize`"
            );
        }
        Ok(OnlineStore {
            kv,
            stats: OnlineStats::default(),
            cache: None,
            _watch: None,
        })
    }

    /// Keeps up to `bytes` of hot entities' columns in memory for reads (0: none). Writes
    /// through this handle keep it current; a store other processes write (Redis) announces
    /// their writes, which evict what they touched (and everything, when the announcements
    /// were interrupted). A shared store whose announcements cannot be followed is read
    /// without a cache.
    pub fn with_cache(mut self, bytes: usize) -> OnlineStore {
        if bytes == 0 {
            self.cache = None;
            return self;
        }
        let cache = Arc::new(Cache::new(bytes));
        let evicting = Arc::clone(&cache);
        let watched = self.kv.watch(Box::new(move |c| match c {
            Change::Written { table, key } if table == COLUMNS => evicting.evict([key]),
            Change::Written { .. } => {}
            Change::Missed => evicting.clear(),
        }));
        match watched {
            Ok(w) => {
                self._watch = w;
                self.cache = Some(cache);
            }
            Err(e) => tracing::warn!("online features read without a cache: {e}"),
        }
        self
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
        let mut groups: HashMap<String, (i64, usize, Vec<FeatureEvent>)> = HashMap::new();
        let mut entity = String::new();
        let layouts: Vec<Layout> = defs.views.values().map(Layout::of).collect();
        for (vi, v) in defs.views.values().enumerate() {
            if !v.source.is_events() {
                continue;
            }
            let from = now_ms - v.horizon_ms();
            for k in events {
                if v.kind.is_personal() && !k.event.is_personal() {
                    continue;
                }
                if v.kind
                    .write_key(&mut entity, &k.user_id, &k.item_id, k.artist_id.as_deref())
                {
                    let g = groups
                        .entry(buffer_key(&v.name, &entity))
                        .or_insert_with(|| (from, vi, Vec::new()));
                    // an event past the horizon is not kept, but the entity is known: its
                    // values read as expired, not missing
                    if k.event.ts > from {
                        g.2.push(k.event);
                    }
                }
            }
        }
        if let Some(c) = &self.cache {
            c.begin_write();
        }
        let mut written = Vec::new();
        let done = self.write(groups, &layouts, now_ms, &mut written);
        if let Some(c) = &self.cache {
            match done {
                Ok(()) => c.end_write(
                    written
                        .iter()
                        .map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
                ),
                Err(_) => c.abort_write(),
            }
        }
        done?;
        self.stats
            .events_applied
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(events.len())
    }

    /// Merges grouped events into the store in one transaction; with a cache, `written` gets
    /// each written key's columns.
    fn write(
        &self,
        groups: HashMap<String, (i64, usize, Vec<FeatureEvent>)>,
        layouts: &[Layout],
        now_ms: i64,
        written: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), OnlineError> {
        let cached = self.cache.is_some();
        let remote = self.kv.is_remote();
        self.kv.write(|tx| {
            if remote {
                // the buffers merged into, read in one round trip
                let keys: Vec<&str> = groups.keys().map(String::as_str).collect();
                tx.prefetch(EVENTS, &keys)?;
            }
            for (key, (from, vi, mut new)) in groups {
                let mut have = Vec::new();
                tx.get(EVENTS, &key, &mut |v| {
                    if let Some(b) = v {
                        have = decode(b, from).1;
                    }
                })?;
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
                // a shared store forgets an entity twice its horizon after its last write
                // (until then its values read as expired, as in the embedded store)
                let ttl = std::time::Duration::from_millis(
                    u64::try_from(now_ms.saturating_sub(from)).unwrap_or(0) * 2,
                )
                .max(std::time::Duration::from_secs(3_600));
                tx.put_expiring(EVENTS, &key, &encode(now_ms, &have), ttl)?;
                let columns = layouts[vi].encode(now_ms, &have);
                tx.put_expiring(COLUMNS, &key, &columns, ttl)?;
                if cached {
                    written.push((key, columns));
                }
            }
            Ok(())
        })
    }

    /// Replaces the stored rows of attribute view `view` with `table`: entities no longer in
    /// it are removed (so a churned entity reads as missing, not as its last values).
    pub fn put_attributes(
        &self,
        view: &View,
        table: &crate::attrs::AttrTable,
        now_ms: i64,
    ) -> Result<usize, OnlineError> {
        let layout = Layout::of(view);
        let (lo, hi) = (format!("{}\u{0}", view.name), format!("{}\u{1}", view.name));
        if let Some(c) = &self.cache {
            c.begin_write();
        }
        let mut written: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        let cached = self.cache.is_some();
        let done = self.kv.write(|tx| {
            let mut stale = Vec::new();
            tx.range(COLUMNS, &lo, &hi, &mut |k, _| {
                if !table.rows.contains_key(&k[lo.len()..]) {
                    stale.push(k.to_owned());
                }
                true
            })?;
            for k in stale {
                tx.delete(COLUMNS, &k)?;
                written.push((k, None));
            }
            for (entity, rows) in &table.rows {
                let key = format!("{lo}{entity}");
                let bytes = layout.encode_rows(now_ms, rows);
                tx.put(COLUMNS, &key, &bytes)?;
                if cached {
                    written.push((key, Some(bytes)));
                }
            }
            Ok::<_, OnlineError>(())
        });
        if let Some(c) = &self.cache {
            match done {
                Ok(()) => c.end_write(written.iter().map(|(k, v)| (k.as_str(), v.as_deref()))),
                Err(_) => c.abort_write(),
            }
        }
        done?;
        Ok(table.rows.len())
    }

    /// Up to `limit` entity keys the store holds for `view` (key fields joined by U+001F).
    pub fn entities(&self, view: &str, limit: usize) -> Result<Vec<String>, OnlineError> {
        let (lo, hi) = (format!("{view}\u{0}"), format!("{view}\u{1}"));
        let mut out = Vec::new();
        self.kv.reader()?.range(COLUMNS, &lo, &hi, &mut |k, _| {
            out.push(k[lo.len()..].to_owned());
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Feature `feature` of `view` for every entity whose key starts with `prefix` (e.g. a
    /// listener's user-artist pairs): the rest of each key and the value, live entities only.
    pub fn prefix_values(
        &self,
        view: &View,
        layout: &Layout,
        feature: usize,
        prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, f64)>, OnlineError> {
        let r = self.kv.reader()?;
        let lo = format!("{}\u{0}{prefix}\u{1f}", view.name);
        let hi = format!("{}\u{0}{prefix}\u{20}", view.name);
        let mut out = Vec::new();
        // columns a layout cannot read (written under other definitions) fall back to events
        let mut from_buffers = Vec::new();
        let mut vals = Vec::with_capacity(view.features.len());
        r.range(COLUMNS, &lo, &hi, &mut |k, v| {
            vals.clear();
            match layout.read(v, now_ms, &mut vals) {
                Some((_, Status::Live)) => {
                    if let Some(x) = vals[feature] {
                        out.push((k[lo.len()..].to_owned(), x));
                    }
                }
                Some(_) => {}
                None => from_buffers.push(k.to_owned()),
            }
            true
        })?;
        for k in from_buffers {
            vals.clear();
            let mut st = Status::Missing;
            r.get(EVENTS, &k, &mut |b| {
                st = from_events(view, b.unwrap_or(&[]), now_ms, &mut vals).1;
            })?;
            if let (Status::Live, Some(x)) = (st, vals.get(feature).copied().flatten()) {
                out.push((k[lo.len()..].to_owned(), x));
            }
        }
        Ok(out)
    }

    /// The keys (view and entity) of `user`'s entities in the views keyed by the listener.
    fn user_keys(
        &self,
        defs: &Definitions,
        user: &str,
    ) -> Result<Vec<(String, String)>, OnlineError> {
        let r = self.kv.reader()?;
        let mut out = std::collections::BTreeSet::new();
        for v in defs.views.values().filter(|v| v.kind.is_personal()) {
            let exact = buffer_key(&v.name, user);
            let (lo, hi) = (format!("{exact}\u{1f}"), format!("{exact}\u{20}"));
            for table in [COLUMNS, EVENTS] {
                let mut there = false;
                r.get(table, &exact, &mut |b| there = b.is_some())?;
                if there {
                    out.insert((v.name.clone(), exact.clone()));
                }
                r.range(table, &lo, &hi, &mut |k, _| {
                    out.insert((v.name.clone(), k.to_owned()));
                    true
                })?;
            }
        }
        Ok(out.into_iter().collect())
    }

    /// What the store holds about `user`: per view and entity, each feature's value at `now_ms`.
    pub fn user_values(
        &self,
        defs: &Definitions,
        user: &str,
        now_ms: i64,
    ) -> Result<Vec<serde_json::Value>, OnlineError> {
        let keys = self.user_keys(defs, user)?;
        let r = self.kv.reader()?;
        let mut out = Vec::new();
        for (view, key) in keys {
            let Some(v) = defs.views.get(&view) else {
                continue;
            };
            let mut vals = Vec::with_capacity(v.features.len());
            let mut st = Status::Missing;
            r.get(EVENTS, &key, &mut |b| {
                st = from_events(v, b.unwrap_or(&[]), now_ms, &mut vals).1;
            })?;
            let values: serde_json::Map<String, serde_json::Value> = v
                .features
                .iter()
                .zip(&vals)
                .map(|(f, x)| {
                    (
                        f.name.clone(),
                        x.map_or(serde_json::Value::Null, serde_json::Value::from),
                    )
                })
                .collect();
            out.push(serde_json::json!({
                "view": view,
                "entity": key[view.len() + 1..].replace('\u{1f}', "/"),
                "status": format!("{st:?}").to_lowercase(),
                "values": values,
            }));
        }
        Ok(out)
    }

    /// Removes every entity of `user` from the views keyed by the listener; returns how many
    /// keys went. The file's freed pages are compacted away when this handle is the only one.
    pub fn erase_user(&self, defs: &Definitions, user: &str) -> Result<usize, OnlineError> {
        let keys = self.user_keys(defs, user)?;
        if keys.is_empty() {
            return Ok(0);
        }
        if let Some(c) = &self.cache {
            c.begin_write();
        }
        let committed = self.kv.write(|tx| {
            for (_, k) in &keys {
                tx.delete(COLUMNS, k)?;
                tx.delete(EVENTS, k)?;
            }
            Ok::<_, StorageError>(())
        });
        if let Some(c) = &self.cache {
            match &committed {
                Ok(()) => c.end_write(keys.iter().map(|(_, k)| (k.as_str(), None))),
                Err(_) => c.abort_write(),
            }
        }
        committed?;
        self.compact()?;
        Ok(keys.len())
    }

    /// Rewrites the store so freed pages (which still hold erased bytes) are gone.
    pub fn compact(&self) -> Result<(), OnlineError> {
        Ok(self.kv.compact()?)
    }

    /// The time materialization has reached (0 when never run).
    pub fn watermark(&self) -> Result<i64, OnlineError> {
        let mut ms = 0;
        self.kv.reader()?.get(META, WATERMARK, &mut |b| {
            ms = b
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, i64::from_le_bytes);
        })?;
        Ok(ms)
    }

    pub fn set_watermark(&self, ms: i64) -> Result<(), OnlineError> {
        Ok(self
            .kv
            .write(|tx| tx.put(META, WATERMARK, &ms.to_le_bytes()))?)
    }

    /// The features of `plan` for each row of `rows` (request field → value), as of `now_ms`,
    /// in one read transaction. A row without a field the plan needs is an error naming it.
    pub fn read<K: std::borrow::Borrow<str> + Ord, V: AsRef<str>>(
        &self,
        plan: &Plan,
        rows: &[BTreeMap<K, V>],
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
        // entities missing from the cache are read in one transaction, opened at the first
        let mut txn: Option<Txn<'_>> = None;
        if self.kv.is_remote() {
            self.prefetch(&mut txn, plan, rows, now_ms)?;
        }
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
            for ((v, keys), layout) in plan.views.iter().zip(&plan.layouts) {
                entity_key(&mut key, v, keys, r);
                let (updated, st) =
                    self.read_view(&mut txn, v, layout, &key, now_ms, &mut row.values)?;
                if st != Status::Missing {
                    row.missing = false;
                }
                row.age_ms.push((updated > 0).then(|| now_ms - updated));
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

/// The store key of `view`'s entity named by `keys` of `row`, into `key`.
fn entity_key<K: std::borrow::Borrow<str> + Ord, V: AsRef<str>>(
    key: &mut String,
    view: &View,
    keys: &[&str],
    row: &BTreeMap<K, V>,
) {
    key.clear();
    key.push_str(&view.name);
    key.push('\u{0}');
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            key.push('\u{1f}');
        }
        key.push_str(row[*k].as_ref());
    }
}

/// A read snapshot of the online store, with the epoch of the cache when it began.
struct Txn<'a> {
    epoch: u64,
    reader: Box<dyn KvRead + 'a>,
}

impl OnlineStore {
    fn txn<'a, 's>(&'s self, slot: &'a mut Option<Txn<'s>>) -> Result<&'a Txn<'s>, OnlineError> {
        if slot.is_none() {
            let epoch = self.cache.as_ref().map_or(0, |c| c.epoch());
            *slot = Some(Txn {
                epoch,
                reader: self.kv.reader()?,
            });
        }
        Ok(slot.as_ref().expect("opened above"))
    }

    /// Fetches the columns of `rows`' entities the cache does not hold in one round trip (a
    /// server store), then, in a second, the events of those whose columns cannot answer as
    /// of `now_ms`.
    fn prefetch<'s, K: std::borrow::Borrow<str> + Ord, V: AsRef<str>>(
        &'s self,
        txn: &mut Option<Txn<'s>>,
        plan: &Plan,
        rows: &[BTreeMap<K, V>],
        now_ms: i64,
    ) -> Result<(), OnlineError> {
        // (entity key, the index of its view's layout in the plan)
        let mut wanted: Vec<(String, usize)> = Vec::with_capacity(rows.len() * plan.views.len());
        let mut key = String::new();
        for r in rows {
            for (vi, (v, keys)) in plan.views.iter().enumerate() {
                entity_key(&mut key, v, keys, r);
                let cached = self
                    .cache
                    .as_ref()
                    .is_some_and(|c| c.lock(&key).get(&key).is_some());
                if !cached {
                    wanted.push((key.clone(), vi));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        wanted.sort_unstable();
        wanted.dedup();
        let names: Vec<&str> = wanted.iter().map(|(k, _)| k.as_str()).collect();
        let t = self.txn(txn)?;
        t.reader.prefetch(COLUMNS, &names)?;
        let mut events: Vec<&str> = Vec::new();
        for (k, vi) in &wanted {
            t.reader.get(COLUMNS, k, &mut |b| {
                if b.is_some_and(|b| plan.layouts[*vi].needs_events(b, now_ms)) {
                    events.push(k);
                }
            })?;
        }
        t.reader.prefetch(EVENTS, &events)?;
        Ok(())
    }

    /// `view` of the entity `key` as of `now_ms`, appended to `out`: from the cache, else the
    /// store's columns, else (written under other definitions) its events.
    fn read_view<'s>(
        &'s self,
        txn: &mut Option<Txn<'s>>,
        view: &View,
        layout: &Layout,
        key: &str,
        now_ms: i64,
        out: &mut Vec<Option<f64>>,
    ) -> Result<(i64, Status), OnlineError> {
        let missing = |out: &mut Vec<Option<f64>>| {
            out.extend(std::iter::repeat_n(None, view.features.len()));
            (0, Status::Missing)
        };
        if let Some(c) = &self.cache {
            let g = c.lock(key);
            if let Some(cached) = g.get(key) {
                c.hits.fetch_add(1, Ordering::Relaxed);
                return match cached {
                    None => Ok(missing(out)),
                    Some(b) => match layout.read(b, now_ms, out) {
                        Some(r) => Ok(r),
                        None => self.read_events(self.txn(txn)?, view, key, now_ms, out),
                    },
                };
            }
            c.misses.fetch_add(1, Ordering::Relaxed);
        }
        let t = self.txn(txn)?;
        // None: no such entity; Some(None): columns this layout cannot read
        let mut read = None;
        t.reader.get(COLUMNS, key, &mut |bytes| {
            if let Some(c) = &self.cache {
                c.insert(t.epoch, key, bytes);
            }
            if let Some(b) = bytes {
                read = Some(layout.read(b, now_ms, out));
            }
        })?;
        match read {
            None => Ok(missing(out)),
            Some(Some(r)) => Ok(r),
            Some(None) => self.read_events(t, view, key, now_ms, out),
        }
    }

    fn read_events(
        &self,
        t: &Txn<'_>,
        view: &View,
        key: &str,
        now_ms: i64,
        out: &mut Vec<Option<f64>>,
    ) -> Result<(i64, Status), OnlineError> {
        let mut r = (0, Status::Missing);
        t.reader.get(EVENTS, key, &mut |b| {
            r = from_events(view, b.unwrap_or(&[]), now_ms, out);
        })?;
        Ok(r)
    }
}

/// The entity kinds of `defs`' views of events.
pub fn kinds(defs: &Definitions) -> Vec<EntityKind> {
    let mut k: Vec<EntityKind> = defs
        .views
        .values()
        .filter(|v| v.source.is_events())
        .map(|v| v.kind)
        .collect();
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

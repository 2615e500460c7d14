//! Training sets: every feature of a service as of each entity row's time, point-in-time
//! correct, written as Parquet.
//!
//! Events are read once from the playback log, grouped by entity and sorted by time (arrival
//! order does not matter). Entity rows are grouped the same way and sorted by time; each
//! feature is then one sweep per entity ([`crate::compute::column`]).

use crate::compute::{Status, column, statuses};
use crate::def::{EntityKind, View};
use crate::event::{FeatureEvent, Raw};
use arrow::array::{
    ArrayRef, BooleanArray, Float64Builder, Int64Array, RecordBatch, StringArray, StringBuilder,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use encore_storage::event_store::EventStore;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Storage(#[from] encore_storage::StorageError),
    #[error("writing {path}: {message}")]
    Output { path: String, message: String },
}

impl encore_core::Coded for OfflineError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            OfflineError::Input(_) => encore_core::ErrorCode::InvalidArgument,
            OfflineError::Storage(e) => e.code(),
            OfflineError::Output { .. } => encore_core::ErrorCode::Unavailable,
        }
    }
}

/// Events by entity key, each entity's events contiguous and sorted by time: keys interned to
/// dense ids, one flat array of events (no allocation per entity).
#[derive(Debug, Clone, Default)]
pub struct ByEntity {
    ids: HashMap<String, u32>,
    /// while building: the entity id of each event
    owner: Vec<u32>,
    /// after [`ByEntity::finish`]: entity `i`'s events are `events[offsets[i]..offsets[i + 1]]`
    offsets: Vec<usize>,
    events: Vec<FeatureEvent>,
}

impl ByEntity {
    fn push(&mut self, key: &str, e: FeatureEvent) {
        let id = match self.ids.get(key) {
            Some(&id) => id,
            None => {
                let id = self.ids.len() as u32;
                self.ids.insert(key.to_owned(), id);
                id
            }
        };
        self.owner.push(id);
        self.events.push(e);
    }

    /// Orders events by (entity, time), stably: events at the same time keep their arrival
    /// order.
    fn finish(&mut self) {
        let n = self.ids.len();
        let mut counts = vec![0usize; n + 1];
        for &o in &self.owner {
            counts[o as usize + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut sorted = vec![
            FeatureEvent {
                ts: 0,
                num: [0.0; 3],
                flags: 0,
                cat: [0; 7],
            };
            self.events.len()
        ];
        for (e, &o) in self.events.iter().zip(&self.owner) {
            sorted[next[o as usize]] = *e;
            next[o as usize] += 1;
        }
        for i in 0..n {
            sorted[counts[i]..counts[i + 1]].sort_by_key(|e| e.ts);
        }
        self.events = sorted;
        self.offsets = counts;
        self.owner = Vec::new();
    }

    /// The events of entity `key`, sorted by time (empty when unknown).
    pub fn get(&self, key: &str) -> &[FeatureEvent] {
        match self.ids.get(key) {
            Some(&id) => &self.events[self.offsets[id as usize]..self.offsets[id as usize + 1]],
            None => &[],
        }
    }

    /// Entities, and events in all.
    pub fn len(&self) -> (usize, usize) {
        (self.ids.len(), self.events.len())
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, OfflineError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| OfflineError::Input(format!("playback log: column {name} is missing")))
}

/// Reads the playback events with `ts_end_ms <= to_ms` and groups them by the keys of each of
/// `kinds`; `artists` maps an item to its artist (from the catalog).
pub fn load_events(
    log: &dyn EventStore,
    artists: &HashMap<String, String>,
    kinds: &[EntityKind],
    to_ms: i64,
) -> Result<HashMap<EntityKind, ByEntity>, OfflineError> {
    let mut out: HashMap<EntityKind, ByEntity> =
        kinds.iter().map(|k| (*k, ByEntity::default())).collect();
    scan_events(log, artists, i64::MIN, to_ms, |user, item, artist, e| {
        add(&mut out, user, item, artist, e)
    })?;
    sort(&mut out);
    Ok(out)
}

/// The playback events with `from_ms < ts_end_ms <= to_ms`, with their keys.
pub fn load_keyed(
    log: &dyn EventStore,
    artists: &HashMap<String, String>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<crate::event::Keyed>, OfflineError> {
    let mut out = Vec::new();
    scan_events(log, artists, from_ms, to_ms, |user, item, artist, event| {
        out.push(crate::event::Keyed {
            user_id: user.to_owned(),
            item_id: item.to_owned(),
            artist_id: artist.map(str::to_owned),
            event,
        })
    })?;
    Ok(out)
}

/// Calls `f` with every playback event with `from_ms < ts_end_ms <= to_ms`.
fn scan_events(
    log: &dyn EventStore,
    artists: &HashMap<String, String>,
    from_ms: i64,
    to_ms: i64,
    mut f: impl FnMut(&str, &str, Option<&str>, FeatureEvent),
) -> Result<(), OfflineError> {
    let mut err = None;
    // segments are by play start; a play ends less than a day after it starts
    let lo = from_ms.saturating_sub(encore_core::time::MS_PER_DAY);
    log.scan(lo, to_ms, Some(&PLAYBACK_COLUMNS), &mut |b| {
        if err.is_none()
            && let Err(e) = batch_events(b, artists, from_ms, to_ms, &mut f)
        {
            err = Some(e);
        }
        Ok(())
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The playback columns feature events are computed from.
pub const PLAYBACK_COLUMNS: [&str; 14] = [
    "user_id",
    "item_id",
    "ts_end_ms",
    "ms_played",
    "item_duration_ms",
    "shuffle",
    "offline",
    "platform",
    "country",
    "context_type",
    "reason_start",
    "reason_end",
    "private_session",
    "consent",
];

/// Calls `f(user, item, artist, event)` for every playback row of `b` (a batch in the playback
/// schema, or a projection holding [`PLAYBACK_COLUMNS`]) with `from_ms < ts_end_ms <= to_ms`:
/// the one conversion from stored rows to feature events, for offline and online alike.
pub fn batch_events(
    b: &RecordBatch,
    artists: &HashMap<String, String>,
    from_ms: i64,
    to_ms: i64,
    mut f: impl FnMut(&str, &str, Option<&str>, FeatureEvent),
) -> Result<(), OfflineError> {
    let user: &StringArray = col(b, "user_id")?;
    let item: &StringArray = col(b, "item_id")?;
    let ts: &Int64Array = col(b, "ts_end_ms")?;
    let played: &UInt32Array = col(b, "ms_played")?;
    let dur: &UInt32Array = col(b, "item_duration_ms")?;
    let shuffle: &BooleanArray = col(b, "shuffle")?;
    let offline: &BooleanArray = col(b, "offline")?;
    let private: &BooleanArray = col(b, "private_session")?;
    let consent: &arrow::array::StructArray = col(b, "consent")?;
    let personalization = consent
        .column_by_name("personalization")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .ok_or_else(|| {
            OfflineError::Input("playback log: column consent.personalization is missing".into())
        })?;
    let s = |n: &str| col::<StringArray>(b, n);
    let (platform, country, ctx, rs, re) = (
        s("platform")?,
        s("country")?,
        s("context_type")?,
        s("reason_start")?,
        s("reason_end")?,
    );
    for i in 0..b.num_rows() {
        if ts.value(i) > to_ms || ts.value(i) <= from_ms {
            continue;
        }
        let artist = artists.get(item.value(i)).map(String::as_str);
        let e = FeatureEvent::new(&Raw {
            personal: !private.value(i) && personalization.value(i),
            ts_end_ms: ts.value(i),
            ms_played: played.value(i),
            item_duration_ms: dur.value(i),
            shuffle: shuffle.value(i),
            offline: offline.value(i),
            item_id: item.value(i),
            artist_id: artist,
            platform: platform.value(i),
            country: country.value(i),
            context_type: ctx.value(i),
            reason_start: rs.value(i),
            reason_end: re.value(i),
        });
        f(user.value(i), item.value(i), artist, e);
    }
    Ok(())
}

fn add(
    out: &mut HashMap<EntityKind, ByEntity>,
    user: &str,
    item: &str,
    artist: Option<&str>,
    e: FeatureEvent,
) {
    thread_local! {
        static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    KEY.with(|k| {
        let mut k = k.borrow_mut();
        for (kind, by) in out.iter_mut() {
            if kind.is_personal() && !e.is_personal() {
                continue;
            }
            if kind.write_key(&mut k, user, item, artist) {
                by.push(&k, e);
            }
        }
    });
}

fn sort(out: &mut HashMap<EntityKind, ByEntity>) {
    for by in out.values_mut() {
        by.finish();
    }
}

/// Groups events one at a time, in any order, by the keys of each of `kinds`.
#[derive(Debug)]
pub struct Grouper(HashMap<EntityKind, ByEntity>);

impl Grouper {
    pub fn new(kinds: &[EntityKind]) -> Grouper {
        Grouper(kinds.iter().map(|k| (*k, ByEntity::default())).collect())
    }

    pub fn add(&mut self, user: &str, item: &str, artist: Option<&str>, e: FeatureEvent) {
        add(&mut self.0, user, item, artist, e);
    }

    /// Each entity's events, sorted by time.
    pub fn finish(mut self) -> HashMap<EntityKind, ByEntity> {
        sort(&mut self.0);
        self.0
    }
}

/// Groups events (in any order) by the keys of each of `kinds`, each group sorted by time.
pub fn group_events(
    events: &[crate::event::Keyed],
    kinds: &[EntityKind],
) -> HashMap<EntityKind, ByEntity> {
    let mut out: HashMap<EntityKind, ByEntity> =
        kinds.iter().map(|k| (*k, ByEntity::default())).collect();
    for k in events {
        add(
            &mut out,
            &k.user_id,
            &k.item_id,
            k.artist_id.as_deref(),
            k.event,
        );
    }
    sort(&mut out);
    out
}

/// Entity rows: key values per key column, and times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityRows {
    pub columns: Vec<String>,
    /// per row: the key values in column order
    pub keys: Vec<Vec<String>>,
    pub ts: Vec<i64>,
}

impl EntityRows {
    /// Where `view`'s key fields are among the columns, or which one is missing.
    pub fn key_columns(&self, view: &View) -> Result<Vec<usize>, OfflineError> {
        view.kind
            .keys()
            .iter()
            .map(|k| {
                self.columns.iter().position(|c| c == k).ok_or_else(|| {
                    OfflineError::Input(format!(
                        "view {}: the entity rows have no column {k:?}",
                        view.name
                    ))
                })
            })
            .collect()
    }
}

/// Reads entity rows from CSV with a header: the key columns `keys` and `ts` (ms since the
/// epoch). A bad row is an error naming its line.
pub fn read_entities_csv(
    text: &str,
    file: &str,
    keys: &[&str],
) -> Result<EntityRows, OfflineError> {
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| OfflineError::Input(format!("{file}:1: {e}")))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let find = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            OfflineError::Input(format!(
                "{file}:1: no column {name:?} (the entity rows need {} and ts)",
                keys.join(", ")
            ))
        })
    };
    let key_idx: Vec<usize> = keys.iter().map(|k| find(k)).collect::<Result<_, _>>()?;
    let ts_idx = find("ts")?;
    let mut rows = EntityRows {
        columns: keys.iter().map(|k| (*k).to_owned()).collect(),
        ..Default::default()
    };
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| OfflineError::Input(format!("{file}:{line}: {e}")))?;
        let ts = rec.get(ts_idx).unwrap_or("").trim();
        let ts: i64 = ts.parse().map_err(|_| {
            OfflineError::Input(format!(
                "{file}:{line}: ts {ts:?} is not a time in ms since the epoch"
            ))
        })?;
        rows.keys.push(
            key_idx
                .iter()
                .map(|&k| rec.get(k).unwrap_or("").to_owned())
                .collect(),
        );
        rows.ts.push(ts);
    }
    Ok(rows)
}

/// One view's values for every entity row: per feature a column, and the status per row.
#[derive(Debug, Clone)]
pub struct ViewColumns {
    pub values: Vec<Vec<Option<f64>>>,
    pub status: Vec<Status>,
}

/// Computes `view` for `rows` from `events` (grouped by the view's entity key).
/// The rows must have the view's key columns.
pub fn compute_view(
    view: &View,
    events: &ByEntity,
    rows: &EntityRows,
) -> Result<ViewColumns, OfflineError> {
    let n = rows.ts.len();
    let cols = rows.key_columns(view)?;
    let key_of = |i: usize| -> String {
        cols.iter()
            .map(|&c| rows.keys[i][c].as_str())
            .collect::<Vec<_>>()
            .join("\u{1f}")
    };
    // row indices grouped by entity, each group sorted by time
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for i in 0..n {
        groups.entry(key_of(i)).or_default().push(i);
    }
    let mut values = vec![vec![None; n]; view.features.len()];
    let mut status = vec![Status::Missing; n];
    for (key, mut idx) in groups {
        idx.sort_by_key(|&i| rows.ts[i]);
        let times: Vec<i64> = idx.iter().map(|&i| rows.ts[i]).collect();
        let ev = events.get(&key);
        let st = statuses(ev, &times, view.ttl_ms);
        for (j, &i) in idx.iter().enumerate() {
            status[i] = st[j];
        }
        for (fi, f) in view.features.iter().enumerate() {
            let c = column(f, ev, &times);
            for (j, &i) in idx.iter().enumerate() {
                values[fi][i] = if st[j] == Status::Live { c[j] } else { None };
            }
        }
    }
    Ok(ViewColumns { values, status })
}

/// Writes the training set: key columns, `ts`, then per view `<view>__<feature>` columns and a
/// `<view>__status` column (`live`, `expired`, `missing`).
pub fn write_parquet(
    path: &std::path::Path,
    rows: &EntityRows,
    views: &[(&View, ViewColumns)],
) -> Result<usize, OfflineError> {
    let out_err = |message: String| OfflineError::Output {
        path: path.display().to_string(),
        message,
    };
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (c, name) in rows.columns.iter().enumerate() {
        fields.push(Field::new(name, DataType::Utf8, false));
        let mut b = StringBuilder::new();
        for k in &rows.keys {
            b.append_value(&k[c]);
        }
        arrays.push(Arc::new(b.finish()));
    }
    fields.push(Field::new("ts", DataType::Int64, false));
    arrays.push(Arc::new(Int64Array::from(rows.ts.clone())));
    for (view, cols) in views {
        for (f, vals) in view.features.iter().zip(&cols.values) {
            fields.push(Field::new(
                format!("{}__{}", view.name, f.name),
                DataType::Float64,
                true,
            ));
            let mut b = Float64Builder::with_capacity(vals.len());
            for v in vals {
                b.append_option(*v);
            }
            arrays.push(Arc::new(b.finish()));
        }
        fields.push(Field::new(
            format!("{}__status", view.name),
            DataType::Utf8,
            false,
        ));
        let mut b = StringBuilder::new();
        for s in &cols.status {
            b.append_value(match s {
                Status::Live => "live",
                Status::Expired => "expired",
                Status::Missing => "missing",
            });
        }
        arrays.push(Arc::new(b.finish()));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| out_err(e.to_string()))?;
    let file = std::fs::File::create(path).map_err(|e| out_err(e.to_string()))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props))
        .map_err(|e| out_err(e.to_string()))?;
    w.write(&batch).map_err(|e| out_err(e.to_string()))?;
    w.close().map_err(|e| out_err(e.to_string()))?;
    Ok(batch.num_rows())
}

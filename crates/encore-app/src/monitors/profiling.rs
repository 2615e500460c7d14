//! Profiles of the playback log: per hour of play (the log's time, `ts_start_ms`) and per
//! slice (every row, each platform, each country), the counts of what monitors compare. They
//! are [`Profile`]s of `encore-stats`, so hours, days and segments add up exactly.
//!
//! Per row: the categorical attributes `platform`, `country`, `context_type`, `reason_end`,
//! `tier`, `genre` (the track's artist's primary genre, `(unknown)` off the catalog) and `skip`
//! (`none`, `instant`, `early`, `late`, as [`encore_core::event::SkipClass`] says), and the
//! numeric `ms_played`, `completion` (ms played over the track's duration) and `lag_s` (how
//! long after it ended the row arrived, when the arrival is known). The slice of every row
//! also counts its `item`s: the [`TOP_ITEMS`] most played of the hour by name, the rest as
//! `(other)`, so a track taking a large share of plays shows by name.
//!
//! What was served is profiled the same way from the impressions of the interaction log
//! ([`Profiler::observe_impressions`]), in slices `served` and `served model=NAME@VERSION`:
//! the catalog `popularity` (0 to 100) of each served item, its `genre`, its `position`, its
//! `score` (as the model gave it), the number of genres in each list (`list_genres`, once per
//! list: diversity), and in `served` the share of each `model` version.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, UInt32Type};
use encore_stats::profile::{Histogram, Profile};
use std::collections::{BTreeMap, HashMap};

pub const HOUR_MS: i64 = 3_600_000;
/// The slice of every row.
pub const ALL: &str = "all";
/// Items kept by name per hour (the rest count as `(other)`).
pub const TOP_ITEMS: usize = 200;
pub const OTHER: &str = "(other)";
pub const UNKNOWN: &str = "(unknown)";

/// The columns of the playback log a profile reads.
pub const COLUMNS: &[&str] = &[
    "ts_start_ms",
    "ts_end_ms",
    "item_id",
    "item_duration_ms",
    "ms_played",
    "reason_end",
    "context_type",
    "platform",
    "country",
    "tier",
];

/// The columns of the interaction log an impressions profile reads.
pub const IMPRESSION_COLUMNS: &[&str] = &[
    "ts_ms",
    "kind",
    "item_id",
    "context_id",
    "position",
    "request_id",
    "value",
];
/// The slice of every served item, and the prefix of the slices per model version.
pub const SERVED: &str = "served";
pub const SERVED_MODEL: &str = "served model=";
/// The numeric attributes of served items and their bin edges.
pub const SERVED_NUMERIC: [(&str, &[f64]); 4] = [
    (
        "popularity",
        &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0],
    ),
    ("position", &[1.0, 3.0, 5.0, 10.0, 20.0, 50.0]),
    (
        "score",
        &[
            -1.0, 0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1_000.0,
        ],
    ),
    // once per list, not per item
    ("list_genres", &[2.0, 3.0, 4.0, 5.0, 7.0, 10.0]),
];

/// The list being read: its request, hour, version and genres.
#[derive(Debug, Default)]
struct List {
    request: String,
    hour: i64,
    model: String,
    genres: std::collections::BTreeSet<u32>,
}

/// What the catalog says of an item, as profiles read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemFacts {
    /// its artist's primary genre
    pub genre: Option<String>,
    /// 0 to 100, relative within the catalog
    pub popularity: Option<u8>,
}

/// The categorical attributes, in profile order.
pub const CATEGORICAL: [&str; 7] = [
    "platform",
    "country",
    "context_type",
    "reason_end",
    "tier",
    "genre",
    "skip",
];
/// The numeric attributes and their bin edges.
pub const NUMERIC: [(&str, &[f64]); 3] = [
    (
        "ms_played",
        &[
            1.0, 5_000.0, 30_000.0, 60_000.0, 120_000.0, 180_000.0, 240_000.0, 360_000.0,
        ],
    ),
    ("completion", &[0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]),
    (
        "lag_s",
        &[
            10.0,
            60.0,
            300.0,
            900.0,
            3_600.0,
            21_600.0,
            86_400.0,
            604_800.0,
            2_592_000.0,
        ],
    ),
];

/// How a profile is sliced: by nothing, by platform or by country.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Dim {
    All,
    Platform,
    Country,
}

/// FNV-1a: a fast hash for keys the contract bounds (platforms, countries, contexts, how plays
/// end, tiers: enumerations and ISO codes) and for numbers. Item ids, which clients choose, keep
/// the standard library's keyed hash.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// Values of one attribute as small numbers (no allocation once a value was seen).
#[derive(Debug, Default)]
struct Interner<S = std::hash::BuildHasherDefault<Fnv>> {
    ids: HashMap<String, u32, S>,
    names: Vec<String>,
}

impl<S: std::hash::BuildHasher> Interner<S> {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_owned());
        self.ids.insert(s.to_owned(), i);
        i
    }
}

/// One (hour, slice)'s counts while rows come in.
#[derive(Debug, Default)]
struct Acc {
    rows: u64,
    cat: [Vec<u64>; CATEGORICAL.len()],
    /// per numeric attribute: one count per bin, then the missing values
    num: [Vec<u64>; NUMERIC.len()],
    /// plays per item (the slice of every row only)
    items: FastMap<u32, u64>,
}

impl Acc {
    fn bump(v: &mut Vec<u64>, i: u32) {
        let i = i as usize;
        if v.len() <= i {
            v.resize(i + 1, 0);
        }
        v[i] += 1;
    }
}

/// Builds hourly profiles from batches of playback rows (or of impressions).
#[derive(Debug)]
pub struct Profiler<'g> {
    facts: &'g HashMap<String, ItemFacts>,
    values: [Interner; CATEGORICAL.len()],
    /// item ids (chosen by clients: the standard keyed hash), and each one's genre value
    items: Interner<std::collections::hash_map::RandomState>,
    item_genre: Vec<u32>,
    accs: FastMap<(i64, Dim, u32), Acc>,
    /// served items: by hour and model version (`None`: every version)
    served: HashMap<(i64, Option<String>), Profile>,
    /// the impressions of one list come together: its genres so far
    list: Option<List>,
}

/// The profile of one hour and slice.
#[derive(Debug, Clone, PartialEq)]
pub struct HourProfile {
    pub hour_ms: i64,
    /// `all`, `platform=ios`, `country=SE`
    pub slice: String,
    pub profile: Profile,
}

/// The bin of `x` over `edges` (as [`Histogram`] bins).
fn bin(edges: &[f64], x: f64) -> u32 {
    edges.partition_point(|e| *e <= x) as u32
}

/// A batch a profiler cannot read: a column missing or of another type (a bug, not input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("the rows have no column {0:?}")]
    MissingColumn(String),
    #[error("the column {0:?} has an unexpected type")]
    WrongType(String),
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, ProfileError> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| ProfileError::MissingColumn(name.to_owned()))
}

impl<'g> Profiler<'g> {
    /// A profiler that reads genres and popularity from `facts` (by item id).
    pub fn new(facts: &'g HashMap<String, ItemFacts>) -> Profiler<'g> {
        Profiler {
            facts,
            values: Default::default(),
            items: Interner::default(),
            item_genre: Vec::new(),
            accs: FastMap::default(),
            served: HashMap::new(),
            list: None,
        }
    }

    /// Counts the impressions among `batch`'s interaction rows (holding at least
    /// [`IMPRESSION_COLUMNS`]); other kinds are left out.
    pub fn observe_impressions(&mut self, batch: &RecordBatch) -> Result<(), ProfileError> {
        let wrong = |name: &str| ProfileError::WrongType(name.to_owned());
        let ts = column(batch, "ts_ms")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| wrong("ts_ms"))?;
        let text = |name: &str| {
            column(batch, name)?
                .as_string_opt::<i32>()
                .ok_or_else(|| wrong(name))
        };
        let (kind, item, context) = (text("kind")?, text("item_id")?, text("context_id")?);
        let position = column(batch, "position")?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| wrong("position"))?;
        let request = text("request_id")?;
        let score = column(batch, "value")?
            .as_primitive_opt::<arrow::datatypes::Float64Type>()
            .ok_or_else(|| wrong("value"))?;
        for row in 0..batch.num_rows() {
            if kind.value(row) != "impression" {
                continue;
            }
            let hour = ts.value(row).div_euclid(HOUR_MS) * HOUR_MS;
            let facts = item
                .is_valid(row)
                .then(|| self.facts.get(item.value(row)))
                .flatten();
            let genre = facts.and_then(|f| f.genre.as_deref()).unwrap_or(UNKNOWN);
            let popularity = facts.and_then(|f| f.popularity).map(f64::from);
            let pos = position
                .is_valid(row)
                .then(|| f64::from(position.value(row)));
            let model = if context.is_valid(row) {
                context.value(row)
            } else {
                UNKNOWN
            };
            let scored = score
                .is_valid(row)
                .then(|| score.value(row))
                .filter(|x| x.is_finite());
            // a list's genres, counted once it ends
            let req = if request.is_valid(row) {
                request.value(row)
            } else {
                ""
            };
            if self.list.as_ref().is_none_or(|l| l.request != req) {
                self.end_list();
                self.list = Some(List {
                    request: req.to_owned(),
                    hour,
                    model: model.to_owned(),
                    genres: Default::default(),
                });
            }
            let genre_no = self.values[5].id(genre);
            if let Some(l) = &mut self.list {
                l.genres.insert(genre_no);
            }
            for slice in [None, Some(model)] {
                let p = self
                    .served
                    .entry((hour, slice.map(str::to_owned)))
                    .or_default();
                p.rows += 1;
                p.count("genre", genre);
                if slice.is_none() {
                    p.count("model", model);
                }
                p.observe(SERVED_NUMERIC[0].0, SERVED_NUMERIC[0].1, popularity);
                p.observe(SERVED_NUMERIC[1].0, SERVED_NUMERIC[1].1, pos);
                p.observe(SERVED_NUMERIC[2].0, SERVED_NUMERIC[2].1, scored);
            }
        }
        Ok(())
    }

    /// Counts the genres of the list just read (once per list).
    fn end_list(&mut self) {
        let Some(l) = self.list.take() else {
            return;
        };
        let n = Some(l.genres.len() as f64);
        for slice in [None, Some(l.model)] {
            if let Some(p) = self.served.get_mut(&(l.hour, slice)) {
                p.observe(SERVED_NUMERIC[3].0, SERVED_NUMERIC[3].1, n);
            }
        }
    }

    /// Counts every row of `batch` (playback rows holding at least [`COLUMNS`]), which arrived
    /// at `arrived_ms` when known.
    pub fn observe(
        &mut self,
        batch: &RecordBatch,
        arrived_ms: Option<i64>,
    ) -> Result<(), ProfileError> {
        let wrong = |name: &str| ProfileError::WrongType(name.to_owned());
        let ts = column(batch, "ts_start_ms")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| wrong("ts_start_ms"))?;
        let ts_end = column(batch, "ts_end_ms")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| wrong("ts_end_ms"))?;
        let duration = column(batch, "item_duration_ms")?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| wrong("item_duration_ms"))?;
        let played = column(batch, "ms_played")?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| wrong("ms_played"))?;
        let text = |name: &str| {
            column(batch, name)?
                .as_string_opt::<i32>()
                .ok_or_else(|| wrong(name))
        };
        let item = text("item_id")?;
        let strings = [
            text("platform")?,
            text("country")?,
            text("context_type")?,
            text("reason_end")?,
            text("tier")?,
        ];
        let mut cat = [0u32; CATEGORICAL.len()];
        let mut num = [0u32; NUMERIC.len()];
        for row in 0..batch.num_rows() {
            let hour = ts.value(row).div_euclid(HOUR_MS) * HOUR_MS;
            for (k, col) in strings.iter().enumerate() {
                cat[k] = self.values[k].id(col.value(row));
            }
            let item_id = item.value(row);
            let item_no = self.items.id(item_id);
            if item_no as usize == self.item_genre.len() {
                let genre = self
                    .facts
                    .get(item_id)
                    .and_then(|f| f.genre.as_deref())
                    .unwrap_or(UNKNOWN);
                self.item_genre.push(self.values[5].id(genre));
            }
            cat[5] = self.item_genre[item_no as usize];
            let (ms, dur) = (played.value(row), duration.value(row));
            let reason = strings[3].value(row);
            let skipped = matches!(reason, "fwdbtn" | "backbtn") && ms < dur;
            let skip = match (skipped, ms) {
                (false, _) => "none",
                (true, ms) if ms < 5_000 => "instant",
                (true, ms) if ms < encore_core::event::STREAM_THRESHOLD_MS => "early",
                (true, _) => "late",
            };
            cat[6] = self.values[6].id(skip);
            num[0] = bin(NUMERIC[0].1, f64::from(ms));
            num[1] = if dur == 0 {
                NUMERIC[1].1.len() as u32 + 1
            } else {
                bin(NUMERIC[1].1, f64::from(ms) / f64::from(dur))
            };
            num[2] = match arrived_ms {
                Some(at) => bin(NUMERIC[2].1, (at - ts_end.value(row)) as f64 / 1000.0),
                None => NUMERIC[2].1.len() as u32 + 1,
            };
            for (dim, value, skip_attr) in [
                (Dim::All, 0, None),
                (Dim::Platform, cat[0], Some(0)),
                (Dim::Country, cat[1], Some(1)),
            ] {
                let acc = self.accs.entry((hour, dim, value)).or_default();
                acc.rows += 1;
                for (k, v) in cat.iter().enumerate() {
                    if Some(k) != skip_attr {
                        Acc::bump(&mut acc.cat[k], *v);
                    }
                }
                for (k, b) in num.iter().enumerate() {
                    Acc::bump(&mut acc.num[k], *b);
                }
                if dim == Dim::All {
                    *acc.items.entry(item_no).or_default() += 1;
                }
            }
        }
        Ok(())
    }

    /// The profiles of every hour and slice seen, by hour then slice.
    pub fn finish(mut self) -> Vec<HourProfile> {
        self.end_list();
        let mut out: BTreeMap<(i64, String), Profile> = BTreeMap::new();
        for ((hour, dim, value), acc) in self.accs {
            let slice = match dim {
                Dim::All => ALL.to_owned(),
                Dim::Platform => format!("platform={}", self.values[0].names[value as usize]),
                Dim::Country => format!("country={}", self.values[1].names[value as usize]),
            };
            let mut p = Profile {
                rows: acc.rows,
                ..Profile::default()
            };
            for (k, counts) in acc.cat.iter().enumerate() {
                if counts.iter().all(|c| *c == 0) {
                    continue;
                }
                let values: BTreeMap<String, u64> = counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(i, c)| (self.values[k].names[i].clone(), *c))
                    .collect();
                p.categorical.insert(CATEGORICAL[k].to_owned(), values);
            }
            for (k, counts) in acc.num.iter().enumerate() {
                let edges = NUMERIC[k].1;
                let mut h = Histogram::new(edges);
                let mut counts = counts.clone();
                counts.resize(edges.len() + 2, 0);
                h.missing = counts[edges.len() + 1];
                h.counts = counts[..=edges.len()].to_vec();
                p.numeric.insert(NUMERIC[k].0.to_owned(), h);
            }
            if !acc.items.is_empty() {
                let mut items: Vec<(u32, u64)> = acc.items.into_iter().collect();
                items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let named: u64 = items.iter().take(TOP_ITEMS).map(|x| x.1).sum();
                let mut values: BTreeMap<String, u64> = items
                    .iter()
                    .take(TOP_ITEMS)
                    .map(|(i, c)| (self.items.names[*i as usize].clone(), *c))
                    .collect();
                if acc.rows > named {
                    values.insert(OTHER.to_owned(), acc.rows - named);
                }
                p.categorical.insert("item".to_owned(), values);
            }
            out.insert((hour, slice), p);
        }
        for ((hour, model), p) in self.served {
            let slice = match model {
                None => SERVED.to_owned(),
                Some(m) => format!("{SERVED_MODEL}{m}"),
            };
            out.insert((hour, slice), p);
        }
        out.into_iter()
            .map(|((hour_ms, slice), profile)| HourProfile {
                hour_ms,
                slice,
                profile,
            })
            .collect()
    }
}

/// Item id → its artist's primary genre and its popularity, from the catalog's records.
pub fn item_facts(catalog: &encore_ingest::catalog::CatalogStore) -> HashMap<String, ItemFacts> {
    let Ok(records) = catalog.records(&["artists", "tracks", "items"]) else {
        return HashMap::new();
    };
    let mut artist_genre: HashMap<&str, &str> = HashMap::new();
    for (id, v) in &records {
        if v.get("track_id").is_none()
            && v.get("item_id").is_none()
            && let Some(g) = v
                .get("genres")
                .and_then(|g| g.as_array())
                .and_then(|g| g.first())
                .and_then(|g| g.as_str())
        {
            artist_genre.insert(id.as_str(), g);
        }
    }
    let mut out = HashMap::new();
    for (id, v) in &records {
        let genre = if v.get("track_id").is_some() {
            v.get("artist_id")
                .and_then(|a| a.as_str())
                .and_then(|a| artist_genre.get(a))
                .map(|g| (*g).to_owned())
        } else if v.get("item_id").is_some() {
            v.get("genres")
                .and_then(|g| g.as_array())
                .and_then(|g| g.first())
                .and_then(|g| g.as_str())
                .map(str::to_owned)
        } else {
            continue;
        };
        let popularity = v
            .get("popularity")
            .and_then(|p| p.as_u64())
            .map(|p| p.min(100) as u8);
        out.insert(id.clone(), ItemFacts { genre, popularity });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impression(request: &str, item: &str, position: u32, score: f64) -> serde_json::Value {
        serde_json::json!({
            "event_id": format!("00000000-0000-4000-8000-{:012}", position + 100 * request.len() as u32),
            "schema_version": 1,
            "user_id": "u1",
            "ts_ms": 1_767_571_200_000i64 + 1_000,
            "kind": "impression",
            "item_id": item,
            "item_type": "track",
            "context_type": "recommendation",
            "context_id": "als@3",
            "request_id": request,
            "position": position,
            "propensity": 1.0,
            "value": score,
            "platform": "ios",
            "country": "SE",
            "tier": "free",
        })
    }

    #[test]
    fn served_lists_count_their_genres_once_and_their_scores_per_item() {
        let facts: HashMap<String, ItemFacts> = [("t1", "rock"), ("t2", "rock"), ("t3", "jazz")]
            .into_iter()
            .map(|(t, g)| {
                (
                    t.to_owned(),
                    ItemFacts {
                        genre: Some(g.to_owned()),
                        popularity: Some(50),
                    },
                )
            })
            .collect();
        let rows = [
            impression("a", "t1", 0, 0.5),
            impression("a", "t2", 1, 0.4),
            impression("a", "t3", 2, 0.2),
            impression("b", "t1", 0, 5.0),
            impression("b", "t2", 1, 4.0),
        ];
        let events: Vec<encore_core::event::InteractionEvent> = rows
            .iter()
            .map(|r| serde_json::from_value(r.clone()).unwrap())
            .collect();
        let batch = encore_core::arrow::interaction_batch(&events).unwrap();
        let mut p = Profiler::new(&facts);
        // the second list is cut across two batches: still one list
        p.observe_impressions(&batch.slice(0, 4)).unwrap();
        p.observe_impressions(&batch.slice(4, 1)).unwrap();
        let out = p.finish();
        let served = out.iter().find(|h| h.slice == SERVED).unwrap();
        let by_model = out
            .iter()
            .find(|h| h.slice == format!("{SERVED_MODEL}als@3"))
            .unwrap();
        for h in [served, by_model] {
            assert_eq!(h.profile.rows, 5);
            let lists = &h.profile.numeric["list_genres"];
            // list a spans 2 genres, list b 1
            assert_eq!(lists.counts[0], 1, "{lists:?}");
            assert_eq!(lists.counts[1], 1, "{lists:?}");
            assert_eq!(lists.counts.iter().sum::<u64>(), 2);
            let scores = &h.profile.numeric["score"];
            assert_eq!(scores.counts.iter().sum::<u64>(), 5);
            assert_eq!(h.profile.categorical["genre"]["rock"], 4);
        }
        assert_eq!(served.profile.categorical["model"]["als@3"], 5);
    }
}

//! encore-features integration tests: point-in-time correctness against a naive reference, and
//! the online store against the offline computation.

use encore_features::Definitions;
use encore_features::columns::Layout;
use encore_features::compute::{self, Status};
use encore_features::def::{Agg, Feature, View};
use encore_features::event::{FeatureEvent, Raw};
use encore_features::offline::{EntityRows, compute_view, group_events};
use encore_features::online::{Keyed, OnlineStore, Plan};
use encore_storage::kv::redis::RedisKv;
use encore_storage::kv::testsuite::RedisScratch;
use proptest::prelude::*;
use std::collections::BTreeMap;

const DEFS: &str = r#"
[entities.user]
keys = ["user_id"]

[entities.user_artist]
keys = ["user_id", "artist_id"]

[views.user]
entity = "user"
ttl = "3d"
features = [
  { name = "plays_1h", agg = "count", window = "1h" },
  { name = "streams_1d", agg = "count", window = "1d", filter = "stream" },
  { name = "ms_7d", agg = "sum", field = "ms_played", window = "7d" },
  { name = "completion_1d", agg = "mean", field = "completion", window = "1d", filter = "not skip" },
  { name = "skip_rate_1d", agg = "ratio", window = "1d", numerator = { agg = "count", filter = "skip" }, denominator = { agg = "count" } },
  { name = "listen_share_1d", agg = "ratio", window = "1d", numerator = { agg = "sum", field = "ms_played" }, denominator = { agg = "sum", field = "item_duration_ms" } },
  { name = "artists_1d", agg = "distinct", field = "artist_id", window = "1d" },
  { name = "ios_plays_1d", agg = "count", window = "1d", filter = "platform == ios and ms_played >= 60000" },
  { name = "last_ms", agg = "last", field = "ms_played" },
  { name = "non_skips_1d", agg = "count", window = "1d", filter = "not skip" },
  { name = "streamed_artists_1d", agg = "distinct", field = "artist_id", window = "1d", filter = "stream" },
  { name = "streamed_share_1d", agg = "ratio", window = "1d", numerator = { agg = "sum", field = "ms_played", filter = "stream" }, denominator = { agg = "sum", field = "ms_played" } },
]

[views.user_artist]
entity = "user_artist"
ttl = "1d"
features = [
  { name = "plays_7d", agg = "count", window = "7d" },
  { name = "last_completion", agg = "last", field = "completion", filter = "stream" },
]

[services.reranker]
views = ["user", "user_artist"]
"#;

const HALF_HOUR: i64 = 1_800_000;

/// An event from small domains, so times, artists and boundaries collide often.
fn event(slot: i64, ms_played: u32, skip: bool, ios: bool, artist: u8) -> FeatureEvent {
    FeatureEvent::new(&Raw {
        personal: true,
        ts_end_ms: slot * HALF_HOUR,
        ms_played,
        item_duration_ms: 200_000,
        shuffle: false,
        offline: false,
        item_id: "t",
        artist_id: Some(["a0", "a1", "a2"][artist as usize % 3]),
        platform: if ios { "ios" } else { "android" },
        country: "SE",
        context_type: "album",
        reason_start: "clickrow",
        reason_end: if skip { "fwdbtn" } else { "trackdone" },
    })
}

/// The reference: scan every event of the entity, keep those in `(t − span, t]` that pass the
/// filter, aggregate from scratch.
fn naive(f: &Feature, all: &[FeatureEvent], t: i64) -> Option<f64> {
    let w: Vec<&FeatureEvent> = all
        .iter()
        .filter(|e| e.ts <= t && e.ts > t - f.span_ms)
        .collect();
    let pass: Vec<&&FeatureEvent> = w.iter().filter(|e| f.filter.accepts(e)).collect();
    match &f.agg {
        Agg::Count => Some(pass.len() as f64),
        Agg::Sum(i) => Some(pass.iter().map(|e| e.num[*i]).sum()),
        Agg::Mean(i) => (!pass.is_empty())
            .then(|| pass.iter().map(|e| e.num[*i]).sum::<f64>() / pass.len() as f64),
        Agg::Distinct(i) => {
            let mut v: Vec<u64> = pass.iter().map(|e| e.cat[*i]).collect();
            v.sort_unstable();
            v.dedup();
            Some(v.len() as f64)
        }
        // the newest passing event; among events at the same time, the one that arrived last
        Agg::Value(_) => None,
        Agg::Last(i) => {
            let newest = pass.iter().map(|e| e.ts).max()?;
            pass.iter()
                .rev()
                .find(|e| e.ts == newest)
                .map(|e| e.num[*i])
        }
        Agg::Ratio { num, den } => {
            let s = |(field, filter): &(Option<usize>, encore_features::def::Filter)| -> f64 {
                w.iter()
                    .filter(|e| filter.accepts(e))
                    .map(|e| field.map_or(1.0, |k| e.num[k]))
                    .sum()
            };
            let d = s(den);
            (d != 0.0).then(|| s(num) / d)
        }
    }
}

fn naive_status(view: &View, all: &[FeatureEvent], t: i64) -> Status {
    match all.iter().filter(|e| e.ts <= t).map(|e| e.ts).max() {
        None => Status::Missing,
        Some(newest) if newest <= t - view.ttl_ms => Status::Expired,
        Some(_) => Status::Live,
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs())),
        _ => false,
    }
}

type Ev = (u8, i64, u32, bool, bool, u8);

fn keyed(events: &[Ev]) -> Vec<Keyed> {
    events
        .iter()
        .map(|&(user, slot, ms, skip, ios, artist)| Keyed {
            user_id: format!("u{user}"),
            item_id: "t".into(),
            artist_id: Some(["a0", "a1", "a2"][artist as usize % 3].into()),
            event: event(slot, ms, skip, ios, artist),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every training-set value equals the naive reference, for random event streams in random
    /// arrival order and entity times on and around window and TTL boundaries.
    #[test]
    fn training_sets_are_point_in_time_correct(
        events in prop::collection::vec((0u8..3, 0i64..400, prop::sample::select(vec![0u32, 5_000, 29_999, 30_000, 90_000, 200_000]), any::<bool>(), any::<bool>(), 0u8..3), 0..120),
        rows in prop::collection::vec((0u8..4, 0i64..420, prop::sample::select(vec![0i64, -1, 1])), 1..40),
    ) {
        let defs = Definitions::parse(DEFS, "defs.toml").unwrap();
        let keyed = keyed(&events);
        let kinds = encore_features::online::kinds(&defs);
        let grouped = group_events(&keyed, &kinds);
        for view in defs.views.values() {
            // entity rows: for user_artist, artist a0
            let mut er = EntityRows { columns: view.kind.keys().iter().map(|k| (*k).to_owned()).collect(), ..Default::default() };
            for &(user, slot, nudge) in &rows {
                let mut k = vec![format!("u{user}")];
                if k.len() < er.columns.len() {
                    k.push("a0".into());
                }
                er.keys.push(k);
                er.ts.push(slot * HALF_HOUR + nudge);
            }
            let cols = compute_view(view, &grouped[&view.kind], &er).unwrap();
            for (r, key) in er.keys.iter().enumerate() {
                let t = er.ts[r];
                let all: Vec<FeatureEvent> = keyed
                    .iter()
                    .filter(|k| k.user_id == key[0] && (key.len() == 1 || k.artist_id.as_deref() == Some(key[1].as_str())))
                    .map(|k| k.event)
                    .collect();
                let st = naive_status(view, &all, t);
                prop_assert_eq!(cols.status[r], st, "view {} row {:?} at {}", view.name, key, t);
                // an online read of a stored buffer of the same events
                let mut sorted = all.clone();
                sorted.sort_by_key(|e| e.ts);
                // as of the newest event too (windows reaching the buffer's end, the usual
                // online read)
                if let Some(n) = sorted.last().map(|e| e.ts) {
                    let (st, got) = encore_features::online::read_as_of(view, &sorted, n);
                    prop_assert_eq!(st, naive_status(view, &all, n));
                    for (fi, f) in view.features.iter().enumerate() {
                        let want = if st == Status::Live { naive(f, &all, n) } else { None };
                        prop_assert!(close(got[fi], want), "online read {}.{} for {:?} as of its newest event {}: {:?} vs naive {:?}", view.name, f.name, key, n, got[fi], want);
                    }
                }
                // a server store fetches events ahead exactly when the columns cannot answer
                let layout = Layout::of(view);
                let stored = layout.encode(420 * HALF_HOUR, &sorted);
                let mut scratch = Vec::new();
                prop_assert_eq!(layout.needs_events(&stored, t), layout.read(&stored, t, &mut scratch).is_none(), "{} {:?} at {}", view.name, key, t);
                let (online_status, online_values) = encore_features::online::read_as_of(view, &sorted, t);
                prop_assert_eq!(online_status, st, "online status of {} {:?} at {}", view.name, key, t);
                for (fi, f) in view.features.iter().enumerate() {
                    let want = if st == Status::Live { naive(f, &all, t) } else { None };
                    prop_assert!(close(online_values[fi], want), "online read {}.{} for {:?} at {}: {:?} vs naive {:?}", view.name, f.name, key, t, online_values[fi], want);
                    prop_assert!(close(cols.values[fi][r], want), "{}.{} for {:?} at {}: {:?} vs naive {:?}", view.name, f.name, key, t, cols.values[fi][r], want);
                    // the online paths (one value by binary search; every value in one pass)
                    // agree too
                    if st == Status::Live {
                        prop_assert!(close(compute::value(f, &sorted, t), want), "online {}.{}", view.name, f.name);
                        let one_pass = compute::values(&view.features, &sorted, t);
                        prop_assert!(close(one_pass[fi], want), "one pass {}.{}: {:?} vs {:?}", view.name, f.name, one_pass[fi], want);
                    }
                }
            }
        }
    }
}

#[test]
fn invalid_definitions_fail_with_file_line_and_reason() {
    let bad = DEFS.replace(
        "agg = \"distinct\", field = \"artist_id\"",
        "agg = \"distinct\", field = \"ms_played\"",
    );
    let e = Definitions::parse(&bad, "features.toml").unwrap_err();
    assert_eq!(e.line, 18, "{e}");
    assert!(e.to_string().contains("features.toml:18: view user: feature artists_1d: field \"ms_played\" is not one of item_id"), "{e}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The online store serves what the offline computation gives as of now; TTL makes a stale
/// entity's values null (expired) both online and offline; an unknown entity is missing.
#[test]
fn online_reads_match_offline_values_and_enforce_ttl() {
    let dir = tempfile::tempdir().unwrap();
    reads_match_offline(OnlineStore::open(dir.path()).unwrap());
    reads_match_offline(OnlineStore::open(dir.path()).unwrap().with_cache(1 << 20));
    if let Some(redis) = RedisScratch::new("parity") {
        let open = || {
            OnlineStore::with_store(Box::new(RedisKv::open(&redis.url, &redis.prefix).unwrap()))
                .unwrap()
        };
        reads_match_offline(open());
        reads_match_offline(open().with_cache(1 << 20));
    }
}

/// Two nodes' handles on one online store in Redis, each with its cache: what one writes, the
/// other reads at once (its cached columns of the entity were evicted by the announcement),
/// and an erasure through one leaves nothing cached in the other.
#[test]
fn caches_in_front_of_a_shared_store_stay_coherent() {
    let Some(redis) = RedisScratch::new("coherence") else {
        return;
    };
    let (url, prefix) = (&redis.url, &redis.prefix);
    let open = || {
        OnlineStore::with_store(Box::new(RedisKv::open(url, prefix).unwrap()))
            .unwrap()
            .with_cache(1 << 20)
    };
    let (writer, reader) = (open(), open());
    let defs = Definitions::parse(DEFS, "defs.toml").unwrap();
    let plan = Plan::new(&defs, "reranker").unwrap();
    let now = now_ms();
    let play = |n: i64| Keyed {
        user_id: "u1".into(),
        item_id: "t".into(),
        artist_id: Some("a0".into()),
        event: FeatureEvent::new(&Raw {
            personal: true,
            ts_end_ms: now - 60_000 - n,
            ms_played: 100_000,
            item_duration_ms: 200_000,
            shuffle: false,
            offline: false,
            item_id: "t",
            artist_id: Some("a0"),
            platform: "ios",
            country: "SE",
            context_type: "album",
            reason_start: "clickrow",
            reason_end: "trackdone",
        }),
    };
    let row: BTreeMap<String, String> = [
        ("user_id".to_owned(), "u1".to_owned()),
        ("artist_id".to_owned(), "a0".to_owned()),
    ]
    .into();
    let ms_7d = |s: &OnlineStore| {
        s.read(&plan, std::slice::from_ref(&row), now_ms()).unwrap()[0].value("user__ms_7d")
    };
    // the reader caches the entity as absent, then as it is after each write
    assert_eq!(ms_7d(&reader), None);
    for n in 1..=5 {
        writer.apply(&defs, &[play(n)], now).unwrap();
        let want = Some(100_000.0 * n as f64);
        let t = std::time::Instant::now();
        while ms_7d(&reader) != want {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(2),
                "write {n}: the other handle reads {:?}, expected {want:?}",
                ms_7d(&reader)
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let cache = reader.cache.as_ref().unwrap();
    assert!(
        cache.hits.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the reader's cache was used"
    );
    // an erasure through the writer: the reader's cached columns go too
    assert!(writer.erase_user(&defs, "u1").unwrap() > 0);
    let t = std::time::Instant::now();
    while !reader
        .read(&plan, std::slice::from_ref(&row), now_ms())
        .unwrap()[0]
        .missing
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "the erased listener is still read"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn reads_match_offline(store: OnlineStore) {
    let defs = Definitions::parse(DEFS, "defs.toml").unwrap();
    let now = now_ms();
    let hour = 3_600_000;
    let at = |ago_h: i64, user: &str, artist: &str, ms: u32, skip: bool| Keyed {
        user_id: user.into(),
        item_id: "t".into(),
        artist_id: Some(artist.into()),
        event: FeatureEvent::new(&Raw {
            personal: true,
            ts_end_ms: now - ago_h * hour,
            ms_played: ms,
            item_duration_ms: 200_000,
            shuffle: false,
            offline: false,
            item_id: "t",
            artist_id: Some(artist),
            platform: "ios",
            country: "SE",
            context_type: "album",
            reason_start: "clickrow",
            reason_end: if skip { "fwdbtn" } else { "trackdone" },
        }),
    };
    let events = vec![
        at(30, "fresh", "a0", 200_000, false),
        at(5, "fresh", "a1", 10_000, true),
        at(2, "fresh", "a0", 120_000, false),
        // the newest play is 4 days old: past the user view's 3-day TTL
        at(96, "stale", "a0", 200_000, false),
        at(100, "stale", "a1", 200_000, false),
    ];
    // applied in two batches, one replayed: duplicates are kept once
    store.apply(&defs, &events[..3], now).unwrap();
    store.apply(&defs, &events, now).unwrap();
    let plan = Plan::new(&defs, "reranker").unwrap();
    let row = |u: &str, a: &str| -> BTreeMap<String, String> {
        [
            ("user_id".to_owned(), u.to_owned()),
            ("artist_id".to_owned(), a.to_owned()),
        ]
        .into()
    };
    let got = store
        .read(
            &plan,
            &[row("fresh", "a0"), row("stale", "a0"), row("nobody", "a0")],
            now,
        )
        .unwrap();
    // offline, as of now, for the same rows
    let kinds = encore_features::online::kinds(&defs);
    let grouped = group_events(&events, &kinds);
    for (view_name, key) in [
        ("user", vec!["fresh"]),
        ("user", vec!["stale"]),
        ("user_artist", vec!["fresh", "a0"]),
    ] {
        let view = &defs.views[view_name];
        let rows = EntityRows {
            columns: view.kind.keys().iter().map(|k| (*k).to_owned()).collect(),
            keys: vec![key.iter().map(|k| (*k).to_owned()).collect()],
            ts: vec![now],
        };
        let cols = compute_view(view, &grouped[&view.kind], &rows).unwrap();
        let online = &got[if key[0] == "fresh" { 0 } else { 1 }];
        assert_eq!(
            online.status_of(view_name).unwrap(),
            cols.status[0],
            "{view_name} {key:?}"
        );
        for (fi, f) in view.features.iter().enumerate() {
            let name = format!("{view_name}__{}", f.name);
            assert!(
                close(online.value(&name), cols.values[fi][0]),
                "{name}: online {:?} offline {:?}",
                online.value(&name),
                cols.values[fi][0]
            );
        }
    }
    assert_eq!(got[0].value("user__plays_1h"), Some(0.0));
    assert_eq!(
        got[0].value("user__ms_7d"),
        Some(330_000.0),
        "the replayed batch is counted once"
    );
    assert_eq!(got[0].value("user__skip_rate_1d"), Some(0.5));
    assert_eq!(got[1].status_of("user").unwrap(), Status::Expired);
    assert_eq!(got[1].value("user__ms_7d"), None);
    assert!(!got[1].missing);
    assert!(got[2].missing);
    assert_eq!(got[2].status_of("user").unwrap(), Status::Missing);
    assert!(
        store
            .stats
            .expired
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // one listener's artists with a feature (what demotes artists in home lists)
    let mut per_artist = store
        .prefix_values(
            &defs.views["user_artist"],
            &Layout::of(&defs.views["user_artist"]),
            0,
            "fresh",
            now,
        )
        .unwrap();
    per_artist.sort_by(|a, b| a.0.cmp(&b.0));
    // user_artist's TTL is 1 day: the 30-hour-old play of a0 is out, a0's 2-hour one is in
    assert_eq!(
        per_artist,
        vec![("a0".to_owned(), 1.0), ("a1".to_owned(), 1.0)]
    );
    assert!(
        store
            .prefix_values(
                &defs.views["user_artist"],
                &Layout::of(&defs.views["user_artist"]),
                0,
                "stale",
                now
            )
            .unwrap()
            .is_empty()
    );
    // a request without a field the plan needs names it
    let e = store
        .read(
            &plan,
            &[[("user_id".to_owned(), "x".to_owned())].into()],
            now,
        )
        .unwrap_err();
    assert!(e.to_string().contains("\"artist_id\" is missing"), "{e}");
    // the next run on the same store starts from nothing
    for u in ["fresh", "stale"] {
        store.erase_user(&defs, u).unwrap();
    }
}

const ATTR_DEFS: &str = r#"
[entities.user]
keys = ["user_id"]

[entities.item]
keys = ["item_id"]

# a listener's profile from a file: each row holds from its time, for at most 10 s
[views.profile]
entity = "user"
source = "file"
path = "profiles.csv"
timestamp = "updated_ms"
ttl = "1m"
features = [{ name = "age" }, { name = "premium", field = "is_premium" }]

[views.track]
entity = "item"
source = "catalog"
features = [{ name = "duration_ms" }, { name = "genres" }, { name = "explicit" }]

[services.profile]
views = ["profile"]
"#;

/// Attribute views from a file with a timestamp column: as of each time, the entity's newest
/// row at or before it, expired past the TTL; the same offline, online (at any read time), and
/// from Parquet as from CSV. A later load without an entity removes it, cached or not.
#[test]
fn attribute_views_are_point_in_time_from_files_and_the_catalog() {
    use encore_features::attrs::AttrTable;
    let dir = tempfile::tempdir().unwrap();
    let defs_path = dir.path().join("features.toml");
    let defs = Definitions::parse(ATTR_DEFS, &defs_path.display().to_string()).unwrap();
    std::fs::write(
        dir.path().join("profiles.csv"),
        "user_id,updated_ms,age,is_premium\nu1,1000,30,false\nu1,5000,31,true\nu2,2000,,true\n",
    )
    .unwrap();
    let view = &defs.views["profile"];
    let table = AttrTable::from_file(view).unwrap();
    // the reference: the newest row at or before t, live within the 60 s TTL
    let rows_of = |u: &str| -> Vec<(i64, Vec<Option<f64>>)> {
        match u {
            "u1" => vec![
                (1000, vec![Some(30.0), Some(0.0)]),
                (5000, vec![Some(31.0), Some(1.0)]),
            ],
            "u2" => vec![(2000, vec![None, Some(1.0)])],
            _ => vec![],
        }
    };
    let store = OnlineStore::open(dir.path()).unwrap().with_cache(1 << 20);
    assert_eq!(store.put_attributes(view, &table, 1).unwrap(), 2);
    let plan = Plan::new(&defs, "profile").unwrap();
    let times = [
        0, 999, 1000, 1001, 4999, 5000, 61_000, 62_000, 64_999, 65_000,
    ];
    let users = ["u1", "u2", "u3"];
    let rows = EntityRows {
        columns: vec!["user_id".into()],
        keys: times
            .iter()
            .flat_map(|_| users.iter().map(|u| vec![(*u).to_owned()]))
            .collect(),
        ts: times
            .iter()
            .flat_map(|t| users.iter().map(move |_| *t))
            .collect(),
    };
    let offline = table.compute(view, &rows).unwrap();
    for (r, (key, &t)) in rows.keys.iter().zip(&rows.ts).enumerate() {
        let all = rows_of(&key[0]);
        let newest = all.iter().rev().find(|(ts, _)| *ts <= t);
        let (st, want) = match newest {
            None => (Status::Missing, vec![None, None]),
            Some((ts, _)) if *ts <= t - 60_000 => (Status::Expired, vec![None, None]),
            Some((_, v)) => (Status::Live, v.clone()),
        };
        assert_eq!(offline.status[r], st, "{key:?} at {t}");
        assert_eq!(
            vec![offline.values[0][r], offline.values[1][r]],
            want,
            "{key:?} at {t}"
        );
        // online, read as of t (twice: the second from the cache)
        let entity: BTreeMap<String, String> = [("user_id".to_owned(), key[0].clone())].into();
        for _ in 0..2 {
            let got = &store.read(&plan, std::slice::from_ref(&entity), t).unwrap()[0];
            assert_eq!(got.status_of("profile"), Some(st), "online {key:?} at {t}");
            assert_eq!(got.values, want, "online {key:?} at {t}");
        }
    }
    // Parquet gives the same table
    {
        use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
        let batch = arrow::record_batch::RecordBatch::try_from_iter([
            (
                "user_id",
                std::sync::Arc::new(StringArray::from(vec!["u1", "u1", "u2"])) as ArrayRef,
            ),
            (
                "updated_ms",
                std::sync::Arc::new(Int64Array::from(vec![1000, 5000, 2000])) as ArrayRef,
            ),
            (
                "age",
                std::sync::Arc::new(Float64Array::from(vec![Some(30.0), Some(31.0), None]))
                    as ArrayRef,
            ),
            (
                "is_premium",
                std::sync::Arc::new(arrow::array::BooleanArray::from(vec![false, true, true]))
                    as ArrayRef,
            ),
        ])
        .unwrap();
        let f = std::fs::File::create(dir.path().join("profiles.parquet")).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let text = ATTR_DEFS.replace("profiles.csv", "profiles.parquet");
        let d = Definitions::parse(&text, &defs_path.display().to_string()).unwrap();
        assert_eq!(AttrTable::from_file(&d.views["profile"]).unwrap(), table);
    }
    // u2 leaves the file: after the next load it reads missing, though it was cached
    std::fs::write(
        dir.path().join("profiles.csv"),
        "user_id,updated_ms,age,is_premium\nu1,1000,30,false\n",
    )
    .unwrap();
    store
        .put_attributes(view, &AttrTable::from_file(view).unwrap(), 2)
        .unwrap();
    let u2: BTreeMap<String, String> = [("user_id".to_owned(), "u2".to_owned())].into();
    let got = &store.read(&plan, &[u2], 2500).unwrap()[0];
    assert!(got.missing, "{got:?}");
    // a bad cell is named by file, line and column
    std::fs::write(
        dir.path().join("profiles.csv"),
        "user_id,updated_ms,age,is_premium\nu1,1000,thirty,false\n",
    )
    .unwrap();
    let e = AttrTable::from_file(view).unwrap_err().to_string();
    assert!(
        e.contains("profiles.csv:2: column age: \"thirty\" is not a number"),
        "{e}"
    );

    // catalog attributes: numbers, lists as their length, booleans as 0 or 1
    let track = &defs.views["track"];
    let records = vec![(
        "t1".to_owned(),
        serde_json::json!({"track_id": "t1", "duration_ms": 200000, "genres": ["rock", "indie"], "explicit": true}),
    )];
    let t = AttrTable::from_catalog(track, &records).unwrap();
    assert_eq!(
        t.rows["t1"],
        vec![(0, vec![Some(200_000.0), Some(2.0), Some(1.0)])]
    );
    let bad = Definitions::parse(
        &ATTR_DEFS.replace("name = \"genres\"", "name = \"tempo\""),
        "f.toml",
    )
    .unwrap();
    let e = AttrTable::from_catalog(&bad.views["track"], &records)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no catalog record has the attribute \"tempo\""),
        "{e}"
    );
    // definitions: an attribute view cannot aggregate, a catalog view has no TTL
    let e = Definitions::parse(
        &ATTR_DEFS.replace("{ name = \"age\" }", "{ name = \"age\", agg = \"sum\" }"),
        "f.toml",
    )
    .unwrap_err();
    assert!(
        e.message.contains("aggregations need source = \"events\""),
        "{e}"
    );
    let e = Definitions::parse(
        &ATTR_DEFS.replace("source = \"catalog\"", "source = \"catalog\"\nttl = \"1d\""),
        "f.toml",
    )
    .unwrap_err();
    assert!(e.message.contains("catalog attributes have no time"), "{e}");
}

/// Plays without personalization consent (or in a private session) never reach a feature keyed
/// by the listener, online or offline; features keyed by what was played still count them.
#[test]
fn plays_without_consent_feed_no_personal_feature() {
    let dir = tempfile::tempdir().unwrap();
    let defs = Definitions::parse(
        &format!(
            "{DEFS}\n[entities.artist]\nkeys = [\"artist_id\"]\n\n[views.artist]\nentity = \"artist\"\nttl = \"30d\"\nfeatures = [{{ name = \"plays_7d\", agg = \"count\", window = \"7d\" }}]\n"
        ),
        "defs.toml",
    )
    .unwrap();
    let store = OnlineStore::open(dir.path()).unwrap();
    let now = now_ms();
    let play = |user: &str, personal: bool| Keyed {
        user_id: user.into(),
        item_id: "t".into(),
        artist_id: Some("a0".into()),
        event: FeatureEvent::new(&Raw {
            personal,
            ts_end_ms: now - 3_600_000,
            ms_played: 200_000,
            item_duration_ms: 200_000,
            shuffle: false,
            offline: false,
            item_id: "t",
            artist_id: Some("a0"),
            platform: "ios",
            country: "SE",
            context_type: "album",
            reason_start: "clickrow",
            reason_end: "trackdone",
        }),
    };
    let events = vec![
        play("private", false),
        play("private", false),
        play("open", true),
    ];
    store.apply(&defs, &events, now).unwrap();
    let plan = Plan::new(&defs, "reranker").unwrap();
    let row = |u: &str| -> BTreeMap<String, String> {
        [
            ("user_id".to_owned(), u.to_owned()),
            ("artist_id".to_owned(), "a0".to_owned()),
        ]
        .into()
    };
    let got = store
        .read(&plan, &[row("private"), row("open")], now)
        .unwrap();
    assert!(got[0].missing, "a listener known only by unconsented plays");
    assert_eq!(got[0].value("user__ms_7d"), None);
    assert_eq!(got[1].value("user__ms_7d"), Some(200_000.0));
    // offline: no group for the listener, and the artist counts all three plays
    let kinds = encore_features::online::kinds(&defs);
    let grouped = group_events(&events, &kinds);
    let view = &defs.views["user"];
    let rows = EntityRows {
        columns: vec!["user_id".into()],
        keys: vec![vec!["private".into()], vec!["open".into()]],
        ts: vec![now, now],
    };
    let cols = compute_view(view, &grouped[&view.kind], &rows).unwrap();
    assert_eq!(cols.status[0], Status::Missing);
    assert_eq!(cols.status[1], Status::Live);
    let artist = &defs.views["artist"];
    let rows = EntityRows {
        columns: vec!["artist_id".into()],
        keys: vec![vec!["a0".into()]],
        ts: vec![now],
    };
    let cols = compute_view(artist, &grouped[&artist.kind], &rows).unwrap();
    assert_eq!(cols.values[0][0], Some(3.0));
}

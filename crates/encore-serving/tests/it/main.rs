//! The pipeline on a small world with three taste groups, a model trained on it, and catalogue
//! facts (artists, explicit tracks).

use encore_models::artifact::Artifact;
use encore_models::data::Csr;
use encore_models::model::{Model, ModelConfig};
use encore_serving::{ItemFacts, Rules, ServingError, ServingModel, Strategy};
use std::collections::HashMap;

const GROUPS: u32 = 3;
const PER_GROUP: u32 = 20;

fn group_of(item: u32) -> u32 {
    item / PER_GROUP
}

/// 90 listeners, each playing 10 of the 20 tracks of their group; 5 artists of 4 tracks per
/// group; every 7th track explicit.
fn world() -> ServingModel {
    world_with(encore_serving::Retrieval::default())
}

fn world_with(retrieval: encore_serving::Retrieval) -> ServingModel {
    build(retrieval, None)
}

/// The world, with `skipped` (listener, track) pairs stored in the artifact.
fn build(retrieval: encore_serving::Retrieval, skipped: Option<&[(u32, u32)]>) -> ServingModel {
    let mut entries = Vec::new();
    for u in 0..90u32 {
        let g = u % GROUPS;
        for k in 0..10u32 {
            let i = g * PER_GROUP + (u * 7 + k * 3) % PER_GROUP;
            entries.push((u, i, 1.0 + (k % 4) as f32));
        }
    }
    let plays = Csr::from_entries(90, (GROUPS * PER_GROUP) as usize, entries);
    let config = ModelConfig::Als(encore_models::als::AlsConfig {
        factors: 8,
        regularization: 0.1,
        ..Default::default()
    });
    let model = Model::fit(&config, &plays, false, &mut |_| {});
    let items: Vec<String> = (0..GROUPS * PER_GROUP).map(|i| format!("t{i}")).collect();
    let facts: HashMap<String, ItemFacts> = (0..GROUPS * PER_GROUP)
        .map(|i| {
            (
                format!("t{i}"),
                ItemFacts {
                    title: format!("Track {i}"),
                    artist_id: Some(format!("a{}", i / 4)),
                    explicit: i.is_multiple_of(7),
                },
            )
        })
        .collect();
    let artifact = Artifact {
        config,
        model,
        users: (0..90).map(|u| format!("u{u}")).collect(),
        items,
        metadata: serde_json::Value::Null,
        skipped: skipped.map(|pairs| {
            let entries = pairs.iter().map(|&(u, i)| (u, i, 1.0)).collect();
            Csr::from_entries(plays.n_rows, plays.n_cols, entries)
        }),
        interactions: Some(plays),
    };
    ServingModel::with_retrieval("home", 3, artifact, &facts, retrieval).unwrap()
}

fn index(id: &str) -> u32 {
    id.trim_start_matches('t').parse().unwrap()
}

#[test]
fn home_is_personal_unseen_capped_and_filtered() {
    let m = world();
    let rules = Rules::default();
    let s = m.home("u4", &[], 10, true, &rules).unwrap();
    assert_eq!(s.strategy, Strategy::Personalized);
    assert_eq!((s.model.as_str(), s.model_version), ("home", 3));
    assert_eq!(s.items.len(), 10);
    let seen: Vec<u32> = (0..10u32)
        .map(|k| (4 * 7 + k * 3) % PER_GROUP + PER_GROUP)
        .collect();
    let mut per_artist: HashMap<String, usize> = HashMap::new();
    for (p, it) in s.items.iter().enumerate() {
        assert_eq!(it.position as usize, p);
        assert!(
            !seen.contains(&index(&it.id)),
            "{} was already played",
            it.id
        );
        *per_artist.entry(it.artist_id.clone().unwrap()).or_default() += 1;
        assert_eq!(it.reason.kind, "similar_to_played");
        assert_eq!(it.propensity, 1.0);
    }
    assert!(per_artist.values().all(|&c| c <= 2), "{per_artist:?}");
    // the unseen tracks of the listener's own group come first
    let own = s
        .items
        .iter()
        .take(5)
        .filter(|i| group_of(index(&i.id)) == 1)
        .count();
    assert!(own >= 4, "{:?}", s.items);
    assert!(s.items.windows(2).all(|w| w[0].score >= w[1].score));

    let strict = Rules {
        allow_explicit: false,
        banned_artists: vec!["a6".into()],
        ..Rules::default()
    };
    let s = m.home("u4", &[], 20, true, &strict).unwrap();
    assert!(
        s.items.iter().all(|i| !index(&i.id).is_multiple_of(7)),
        "explicit filtered"
    );
    assert!(s.items.iter().all(|i| i.artist_id.as_deref() != Some("a6")));

    // with exclude_seen off, played tracks may come back
    let s = m.home("u4", &[], 10, false, &Rules::default()).unwrap();
    assert!(s.items.iter().any(|i| seen.contains(&index(&i.id))));
}

/// A skip is a play: with `exclude_seen`, what a listener skipped (in training, or since, in
/// `recent` with no stream) is never served back; a skip alone is no history to fold in.
#[test]
fn exclude_seen_leaves_out_skipped_tracks() {
    let plain = world();
    let ids = |s: &encore_serving::Slate| -> Vec<String> {
        s.items.iter().map(|i| i.id.clone()).collect()
    };
    let top = ids(&plain.home("u4", &[], 10, true, &Rules::default()).unwrap());
    let skipped: Vec<(u32, u32)> = top[..3].iter().map(|id| (4, index(id))).collect();
    let m = build(encore_serving::Retrieval::default(), Some(&skipped));
    let s = m.home("u4", &[], 10, true, &Rules::default()).unwrap();
    assert_eq!(s.strategy, Strategy::Personalized);
    for id in &top[..3] {
        assert!(
            !ids(&s).contains(id),
            "{id} was skipped in training: {:?}",
            ids(&s)
        );
    }
    // exclude_seen=false may serve them again
    let again = m.home("u4", &[], 10, false, &Rules::default()).unwrap();
    assert!(top[..3].iter().any(|id| ids(&again).contains(id)));
    // a skip since training: still the listener's vector, the track left out
    let recent = vec![(top[3].clone(), 0)];
    let s = m.home("u4", &recent, 10, true, &Rules::default()).unwrap();
    assert_eq!(s.strategy, Strategy::Personalized);
    assert!(!ids(&s).contains(&top[3]));
    // a new listener who only skipped gets the popular list without what they skipped
    let popular = ids(&m
        .popular(5, &Rules::default(), encore_serving::NOTE_NO_HISTORY)
        .unwrap());
    let recent = vec![(popular[0].clone(), 0)];
    let s = m.home("new", &recent, 5, true, &Rules::default()).unwrap();
    assert_eq!(s.strategy, Strategy::PopularFallback);
    assert!(!ids(&s).contains(&popular[0]));
    assert_eq!(ids(&s)[..4], popular[1..]);
}

/// A feature service's demotion of an artist (say, the listener skips it) moves its tracks
/// down the list; a full demotion puts them below every other candidate.
#[test]
fn demoted_artists_move_down() {
    let m = world();
    let plain = m.home("u4", &[], 10, true, &Rules::default()).unwrap();
    let top_artist = plain.items[0].artist_id.clone().unwrap();
    let rules = Rules {
        artist_demotion: [(top_artist.clone(), 1.0)].into(),
        ..Rules::default()
    };
    let demoted = m.home("u4", &[], 10, true, &rules).unwrap();
    let first = |s: &encore_serving::Slate| {
        s.items
            .iter()
            .position(|i| i.artist_id.as_deref() == Some(top_artist.as_str()))
    };
    assert_eq!(first(&plain), Some(0));
    assert!(
        first(&demoted).is_none_or(|p| p >= 5),
        "{top_artist} still at {:?}",
        first(&demoted)
    );
    // a slight demotion keeps the artist in the list
    let rules = Rules {
        artist_demotion: [(top_artist.clone(), 0.1)].into(),
        ..Rules::default()
    };
    let partial = m.home("u4", &[], 10, true, &rules).unwrap();
    assert!(
        first(&partial).is_some_and(|p| p < 5),
        "{:?}",
        first(&partial)
    );
}

#[test]
fn new_listeners_are_folded_in_and_unknown_ones_refused() {
    let m = world();
    let recent = vec![
        ("t41".to_string(), 3),
        ("t45".to_string(), 1),
        ("t50".to_string(), 2),
    ];
    let s = m
        .home("new-listener", &recent, 5, true, &Rules::default())
        .unwrap();
    assert_eq!(s.strategy, Strategy::FoldIn);
    assert!(
        s.items
            .iter()
            .all(|i| !["t41", "t45", "t50"].contains(&i.id.as_str()))
    );
    let own = s
        .items
        .iter()
        .filter(|i| group_of(index(&i.id)) == 2)
        .count();
    assert!(own >= 4, "{:?}", s.items);
    // a known listener with new plays is folded in too
    let s = m.home("u0", &recent, 5, true, &Rules::default()).unwrap();
    assert_eq!(s.strategy, Strategy::FoldIn);
    // a listener with no history yet gets the most popular items, saying so
    let cold = m.home("nobody", &[], 5, true, &Rules::default()).unwrap();
    assert_eq!(cold.strategy, Strategy::PopularFallback);
    assert_eq!(cold.note, Some(encore_serving::NOTE_NO_HISTORY));
    assert_eq!(cold.items.len(), 5);
    assert!(cold.items.iter().all(|i| i.reason.kind == "popular"));
    assert_eq!(
        cold.items.iter().map(|i| &i.id).collect::<Vec<_>>(),
        m.from_seeds(&[], 5, &Rules::default())
            .unwrap()
            .items
            .iter()
            .map(|i| &i.id)
            .collect::<Vec<_>>()
    );
    assert!(matches!(
        m.home("u0", &[], 0, true, &Rules::default()),
        Err(ServingError::BadParameter { name: "n", .. })
    ));
    let s = m.from_seeds(&[], 5, &Rules::default()).unwrap();
    assert_eq!(s.strategy, Strategy::PopularFallback);
    assert_eq!(s.items[0].reason.kind, "popular");
    let s = m
        .from_seeds(&["t3".into(), "t9".into()], 5, &Rules::default())
        .unwrap();
    assert_eq!(s.strategy, Strategy::FoldIn);
    assert!(matches!(
        m.from_seeds(&["t999".into()], 5, &Rules::default()),
        Err(ServingError::UnknownItem(_))
    ));
}

#[test]
fn similar_items_and_radio() {
    let m = world();
    let s = m.similar("t22", 5, &Rules::default()).unwrap();
    assert!(s.items.iter().all(|i| i.id != "t22"));
    assert!(
        s.items
            .iter()
            .filter(|i| group_of(index(&i.id)) == 1)
            .count()
            >= 4
    );
    assert_eq!(s.items[0].reason.item_id.as_deref(), Some("t22"));

    let rules = Rules {
        artist_cap: 0,
        artist_window: 3,
        ..Rules::default()
    };
    let seeds = vec!["t2".to_string(), "t5".to_string()];
    let exclude = vec!["t6".to_string()];
    let s = m.radio(&seeds, &exclude, 12, &rules).unwrap();
    assert_eq!(s.items.len(), 12);
    let ids: Vec<&str> = s.items.iter().map(|i| i.id.as_str()).collect();
    assert!(
        !ids.iter().any(|i| ["t2", "t5", "t6"].contains(i)),
        "{ids:?}"
    );
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no repeats");
    for w in s.items.windows(3) {
        assert!(
            w[0].artist_id != w[1].artist_id
                && w[1].artist_id != w[2].artist_id
                && w[0].artist_id != w[2].artist_id,
            "an artist repeats within 3: {ids:?}"
        );
    }
    assert!(matches!(
        m.radio(&[], &[], 5, &rules),
        Err(ServingError::BadParameter { name: "seeds", .. })
    ));
}

#[test]
fn diversity_trades_relevance_for_variety() {
    let m = world();
    let plain = m.home("u7", &[], 8, true, &Rules::default()).unwrap();
    let diverse = m
        .home(
            "u7",
            &[],
            8,
            true,
            &Rules {
                relevance_weight: 0.3,
                ..Rules::default()
            },
        )
        .unwrap();
    let groups = |s: &encore_serving::Slate| {
        let mut g: Vec<u32> = s.items.iter().map(|i| group_of(index(&i.id))).collect();
        g.sort_unstable();
        g.dedup();
        g.len()
    };
    assert!(
        groups(&diverse) >= groups(&plain),
        "MMR should not narrow the list"
    );
    assert_ne!(
        plain.items.iter().map(|i| &i.id).collect::<Vec<_>>(),
        diverse.items.iter().map(|i| &i.id).collect::<Vec<_>>()
    );
}

#[test]
fn daily_mixes_are_mostly_familiar_with_new_tracks_and_never_repeat() {
    let m = world();
    let mixes = m.mixes("u4", &[], 3, 8).unwrap();
    assert!(!mixes.mixes.is_empty() && mixes.mixes.len() <= 3);
    let seen: Vec<String> = (0..10u32)
        .map(|k| format!("t{}", (4 * 7 + k * 3) % PER_GROUP + PER_GROUP))
        .collect();
    let mut all = Vec::new();
    for mix in &mixes.mixes {
        assert!(mix.items.len() <= 8);
        assert!(mix.familiar >= mix.new, "{mix:?}");
        for it in &mix.items {
            let familiar = seen.contains(&it.id);
            assert_eq!(familiar, it.reason.kind == "familiar", "{it:?}");
            all.push(it.id.clone());
        }
        assert!(mix.items.iter().any(|i| i.reason.kind == "new_in_mix"));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a track in two mixes");
    assert!(matches!(
        m.mixes("u4", &[], 0, 8),
        Err(ServingError::BadParameter { name: "max", .. })
    ));
}

#[test]
fn blend_is_fair_attributed_and_scores_taste_match() {
    let m = world();
    let pair = |a: &str, b: &str| vec![(a.to_string(), vec![]), (b.to_string(), vec![])];
    let apart = m.blend(&pair("u0", "u1"), 10, &Rules::default()).unwrap();
    assert_eq!(apart.slate.items.len(), 10);
    assert_eq!(apart.per_member, vec![5, 5]);
    for it in &apart.slate.items {
        assert_eq!(it.reason.kind, "for_member");
        let member = it.reason.user_id.as_deref().unwrap();
        let group = group_of(index(&it.id));
        assert_eq!(group, if member == "u0" { 0 } else { 1 }, "{it:?}");
    }
    let alike = m.blend(&pair("u0", "u3"), 10, &Rules::default()).unwrap();
    assert!(
        alike.taste_match > apart.taste_match,
        "{} vs {}",
        alike.taste_match,
        apart.taste_match
    );
    assert!(matches!(
        m.blend(&pair("u0", "u0")[..1], 10, &Rules::default()),
        Err(ServingError::BadParameter { name: "users", .. })
    ));
}

#[test]
fn graph_retrieval_serves_the_same_rules_and_caches_its_index() {
    let dir = std::env::temp_dir().join(format!("encore-serving-hnsw-{}", std::process::id()));
    let objects = std::sync::Arc::new(encore_storage::objects::LocalObjects::open(&dir).unwrap());
    let cache = dir.join("indexes/home-v3.usearch");
    let retrieval = encore_serving::Retrieval {
        choice: encore_index::Choice::Hnsw(encore_index::HnswParams::default()),
        cache: Some(encore_serving::IndexCache {
            objects,
            key: "indexes/home-v3.usearch".into(),
        }),
    };
    let graph = world_with(retrieval.clone());
    assert!(
        cache.is_file(),
        "the built graph is saved for the next load"
    );
    // a damaged cached graph is rebuilt, not served
    std::fs::write(&cache, b"not a graph").unwrap();
    let rebuilt = world_with(retrieval.clone());
    assert!(
        std::fs::metadata(&cache).unwrap().len() > 100,
        "saved again"
    );
    let exact = world();
    let strict = Rules {
        allow_explicit: false,
        ..Rules::default()
    };
    let a = graph.home("u4", &[], 10, true, &strict).unwrap();
    let b = exact.home("u4", &[], 10, true, &strict).unwrap();
    let ids = |s: &encore_serving::Slate| s.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "a 60-item graph search is exhaustive");
    assert!(a.items.iter().all(|i| !index(&i.id).is_multiple_of(7)));
    assert_eq!(
        ids(&rebuilt.home("u4", &[], 10, true, &strict).unwrap()),
        ids(&a)
    );
    // loaded again: from the cached graph, memory-mapped
    let again = world_with(retrieval);
    assert_eq!(
        ids(&again.home("u4", &[], 10, true, &strict).unwrap()),
        ids(&a)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

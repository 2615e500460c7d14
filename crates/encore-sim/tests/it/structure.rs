//! Planted structure: personalization must matter. A cheap stand-in for the models issue's check
//! (ALS >= 2x popularity NDCG@10 on a 20k-user world): on a held-out split of each listener's
//! tracks, a recommender that knows only each listener's observed genre mix (from the public
//! catalog) must beat global popularity by 2x NDCG@10, with training items excluded as in the
//! models' protocol.

use encore_sim::{Rng, SimConfig, World};
use std::collections::{HashMap, HashSet};

fn ndcg_at_10(ranked: &[u32], relevant: &HashSet<u32>) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .filter(|(_, t)| relevant.contains(t))
        .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(10))
        .map(|i| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    dcg / ideal
}

/// The 10 best-scoring tracks not in `exclude`.
fn top10(scores: impl Iterator<Item = (u32, f64)>, exclude: &HashSet<u32>) -> Vec<u32> {
    let mut best: Vec<(f64, u32)> = Vec::with_capacity(11);
    for (t, s) in scores {
        if s <= 0.0 || exclude.contains(&t) {
            continue;
        }
        if best.len() < 10 || s > best[best.len() - 1].0 {
            let pos = best.partition_point(|(b, _)| *b >= s);
            best.insert(pos, (s, t));
            best.truncate(10);
        }
    }
    best.into_iter().map(|(_, t)| t).collect()
}

#[test]
fn genre_aware_recommender_beats_popularity_by_2x() {
    let mut world = World::new(SimConfig::new(3_000, 14, 11));
    let mut items: Vec<HashMap<u32, u32>> = vec![HashMap::new(); 3_000];
    for _ in 0..14 {
        for p in world.simulate_day().plays {
            *items[p.user as usize].entry(p.track).or_default() += 1;
        }
    }
    let catalog = &world.catalog;
    let n_tracks = catalog.tracks.len();
    let n_genres = catalog.genre_tag.len();

    // split: 20 % of each listener's distinct tracks held out (listeners with >= 5 tracks)
    let mut rng = Rng::new(42);
    let mut train: Vec<HashSet<u32>> = Vec::new();
    let mut test: Vec<HashSet<u32>> = Vec::new();
    for user_items in &items {
        let mut tracks: Vec<u32> = user_items.keys().copied().collect();
        tracks.sort_unstable();
        if tracks.len() < 5 {
            continue;
        }
        let (mut tr, mut te) = (HashSet::new(), HashSet::new());
        for t in tracks {
            if rng.chance(0.2) {
                te.insert(t)
            } else {
                tr.insert(t)
            };
        }
        if !te.is_empty() {
            train.push(tr);
            test.push(te);
        }
    }

    let mut popularity = vec![0f64; n_tracks];
    for tr in &train {
        for &t in tr {
            popularity[t as usize] += 1.0;
        }
    }
    let (mut pop_ndcg, mut genre_ndcg) = (0.0, 0.0);
    for (tr, te) in train.iter().zip(&test) {
        let by_pop = top10(
            popularity.iter().enumerate().map(|(t, &s)| (t as u32, s)),
            tr,
        );
        pop_ndcg += ndcg_at_10(&by_pop, te);

        let mut mix = vec![0f64; n_genres];
        for &t in tr {
            mix[catalog.tracks.genre[t as usize] as usize] += 1.0;
        }
        let scores = popularity
            .iter()
            .enumerate()
            .map(|(t, &s)| (t as u32, s * mix[catalog.tracks.genre[t] as usize]));
        genre_ndcg += ndcg_at_10(&top10(scores, tr), te);
    }
    let users = train.len() as f64;
    let (pop_ndcg, genre_ndcg) = (pop_ndcg / users, genre_ndcg / users);
    eprintln!("users {users} popularity NDCG@10 {pop_ndcg:.4}, genre-aware {genre_ndcg:.4}");
    assert!(users > 2_000.0);
    assert!(pop_ndcg > 0.0);
    assert!(
        genre_ndcg >= 2.0 * pop_ndcg,
        "genre-aware {genre_ndcg:.4} vs popularity {pop_ndcg:.4}"
    );
}

#[test]
fn served_slates_respond_to_affinity() {
    let mut world = World::new(SimConfig::new(400, 3, 5));
    for _ in 0..3 {
        world.simulate_day();
    }
    let n = world.catalog.tracks.len() as u32;
    let mut rng = Rng::new(9);
    let (mut good, mut random) = ((0, 0, 0), (0, 0, 0));
    for user in 0..400u32 {
        // a slate of the 10 highest-affinity tracks among 500 sampled, against 10 random tracks
        let mut pool: Vec<u32> = (0..500).map(|_| rng.below(n as usize) as u32).collect();
        pool.sort_by(|a, b| {
            world
                .affinity(user, *b)
                .total_cmp(&world.affinity(user, *a))
        });
        let best: Vec<u32> = pool[..10].to_vec();
        let rand: Vec<u32> = pool[250..260].to_vec();
        for (slate, acc) in [(&best, &mut good), (&rand, &mut random)] {
            for r in world.respond(user, slate, &mut rng) {
                acc.0 += usize::from(r.streamed());
                acc.1 += usize::from(r.skipped);
                acc.2 += usize::from(r.played);
            }
        }
    }
    eprintln!("streams/skips/plays: best {good:?} random {random:?}");
    assert!(
        good.0 > 2 * random.0,
        "streams best {} vs random {}",
        good.0,
        random.0
    );
    let skip_rate = |a: (usize, usize, usize)| a.1 as f64 / a.2.max(1) as f64;
    assert!(skip_rate(good) < skip_rate(random));
}

#[test]
fn position_bias_lowers_engagement_down_the_slate() {
    let world = World::new(SimConfig::new(200, 1, 3));
    let mut rng = Rng::new(1);
    let slate: Vec<u32> = (0..10).collect();
    let mut examined = [0usize; 10];
    for _ in 0..20 {
        for user in 0..200 {
            for r in world.respond(user, &slate, &mut rng) {
                examined[r.position as usize] += usize::from(r.examined);
            }
        }
    }
    assert!(examined[0] > 2 * examined[9], "{examined:?}");
    let expected = encore_sim::examination_probability(0) * 4_000.0;
    assert!((examined[0] as f64 - expected).abs() < 0.05 * expected);
}

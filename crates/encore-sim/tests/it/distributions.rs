//! The simulated world looks like a streaming service: long-tailed popularity, plausible skip and
//! stream rates, listeners concentrated on their own taste.

use encore_sim::{SimConfig, World};
use std::collections::HashMap;

pub struct Stats {
    pub plays: usize,
    pub skip_rate: f64,
    pub stream_share: f64,
    pub top1_share: f64,
    pub taste_share: f64,
    pub taste_share_random: f64,
    pub interactions: usize,
}

pub fn stats(users: usize, days: u32, seed: u64) -> Stats {
    let mut world = World::new(SimConfig::new(users, days, seed));
    let mut plays = Vec::new();
    let mut interactions = 0;
    for _ in 0..days {
        let log = world.simulate_day();
        interactions += log.interactions.len();
        plays.extend(log.plays);
    }
    let n = plays.len();
    let events: Vec<_> = plays.iter().map(|p| world.playback_event(p)).collect();
    let skips = events.iter().filter(|e| e.skip_class().is_skip()).count();
    let streams = events.iter().filter(|e| e.is_stream()).count();
    let mut per_track: HashMap<u32, usize> = HashMap::new();
    for p in &plays {
        *per_track.entry(p.track).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_track.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top = (world.catalog.tracks.len() / 100).max(1);
    let top1: usize = counts.iter().take(top).sum();
    // share of each listener's plays on genres in their hidden taste, against what a listener
    // picking tracks uniformly at random would get
    let catalog = &world.catalog;
    let in_taste = plays
        .iter()
        .filter(|p| {
            let g = catalog.tracks.genre[p.track as usize];
            world.profiles[p.user as usize].genre_weight(g) > 0.0
        })
        .count();
    let random_share: f64 = plays
        .iter()
        .map(|p| {
            let profile = &world.profiles[p.user as usize];
            let t = (p.track as usize * 7919 + p.user as usize * 104_729) % catalog.tracks.len();
            f64::from(u8::from(
                profile.genre_weight(catalog.tracks.genre[t]) > 0.0,
            ))
        })
        .sum::<f64>()
        / n as f64;
    Stats {
        plays: n,
        skip_rate: skips as f64 / n as f64,
        stream_share: streams as f64 / n as f64,
        top1_share: top1 as f64 / n as f64,
        taste_share: in_taste as f64 / n as f64,
        taste_share_random: random_share,
        interactions,
    }
}

#[test]
fn listening_distributions_are_realistic() {
    let s = stats(2_000, 14, 7);
    eprintln!(
        "plays {} skip {:.3} streams {:.3} top1% {:.3} taste {:.3} (random {:.3}) interactions {}",
        s.plays,
        s.skip_rate,
        s.stream_share,
        s.top1_share,
        s.taste_share,
        s.taste_share_random,
        s.interactions
    );
    assert!(
        (0.15..=0.40).contains(&s.top1_share),
        "top 1% of tracks get {:.3} of plays",
        s.top1_share
    );
    assert!(
        (0.20..=0.50).contains(&s.skip_rate),
        "skip rate {:.3}",
        s.skip_rate
    );
    assert!(
        (0.50..=0.80).contains(&s.stream_share),
        "share of plays >= 30 s {:.3}",
        s.stream_share
    );
    assert!(
        s.taste_share > 0.75 && s.taste_share > 2.0 * s.taste_share_random,
        "plays on own taste clusters {:.3} vs {:.3} at random",
        s.taste_share,
        s.taste_share_random
    );
    // a few plays per listener per day, as on a real service
    let per_user_day = s.plays as f64 / (2_000.0 * 14.0);
    assert!(
        (5.0..=40.0).contains(&per_user_day),
        "{per_user_day:.1} plays per listener-day"
    );
}

#[test]
fn result_does_not_depend_on_thread_count() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut world = World::new(SimConfig::new(500, 2, 21));
            world.simulate_day();
            world.simulate_day().plays
        })
    };
    assert_eq!(run(1), run(3));
}

mod invariants {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Whatever the seed: plays fit their tracks, a listener's plays never overlap, and a play
        /// starts for the reason the previous one in its session ended.
        #[test]
        fn plays_are_physically_consistent(seed in any::<u64>(), users in 1usize..60) {
            let mut world = World::new(SimConfig::new(users, 2, seed));
            let mut plays = world.simulate_day().plays;
            plays.extend(world.simulate_day().plays);
            let mut by_user: HashMap<u32, Vec<_>> = HashMap::new();
            for p in &plays {
                let e = world.playback_event(p);
                prop_assert!(e.ms_played >= 1 && e.ms_played <= e.item_duration_ms);
                by_user.entry(p.user).or_default().push(e);
            }
            for events in by_user.values() {
                for w in events.windows(2) {
                    prop_assert!(w[1].ts_start_ms >= w[0].ts_end_ms, "overlap");
                    if w[0].session_id == w[1].session_id {
                        use encore_core::event::{ReasonEnd as E, ReasonStart as S};
                        let expected = match w[0].reason_end {
                            E::Fwdbtn => S::Fwdbtn,
                            E::Backbtn => S::Backbtn,
                            _ => S::Trackdone,
                        };
                        prop_assert_eq!(w[1].reason_start, expected);
                    }
                }
            }
        }
    }
}

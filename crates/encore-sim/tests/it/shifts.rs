//! Shifts injected from a day on (at its UTC midnight): each changes what it names from that
//! instant, and nothing before.

use encore_core::event::Platform;
use encore_core::time::MS_PER_DAY;
use encore_sim::{Shift, ShiftAt, SimConfig, World};

const DAYS: u32 = 6;
const FROM: u32 = 3;

/// Per UTC day: (plays, plays matching `f`), for a world of `shifts`. A listener's day runs
/// past the UTC day by their time zone, so a day is complete once the next was simulated:
/// the last simulated day is left out.
fn per_day(
    shifts: Vec<ShiftAt>,
    f: &dyn Fn(&World, &encore_sim::listen::Play) -> bool,
) -> Vec<(usize, usize)> {
    per_day_of(shifts, &|w, p| (f(w, p), p.track)).0
}

/// As [`per_day`], with the share of each day's most played track.
fn per_day_of(
    shifts: Vec<ShiftAt>,
    f: &dyn Fn(&World, &encore_sim::listen::Play) -> (bool, u32),
) -> (Vec<(usize, usize)>, Vec<f64>) {
    let mut config = SimConfig::new(400, DAYS + 1, 11);
    config.shifts = shifts;
    let start_ms = config.start.to_days() * MS_PER_DAY;
    let mut world = World::new(config);
    let mut days = vec![(0usize, 0usize); DAYS as usize];
    let mut tracks = vec![std::collections::HashMap::<u32, usize>::new(); DAYS as usize];
    for _ in 0..=DAYS {
        let log = world.simulate_day();
        for p in &log.plays {
            let d = (p.ts_start_ms - start_ms).div_euclid(MS_PER_DAY);
            if let Ok(d) = usize::try_from(d)
                && d < DAYS as usize
            {
                let (hit, track) = f(&world, p);
                days[d].0 += 1;
                days[d].1 += usize::from(hit);
                *tracks[d].entry(track).or_default() += 1;
            }
        }
    }
    let top = tracks
        .iter()
        .zip(&days)
        .map(|(t, d)| t.values().max().copied().unwrap_or(0) as f64 / d.0.max(1) as f64)
        .collect();
    (days, top)
}

fn share(d: (usize, usize)) -> f64 {
    d.1 as f64 / d.0.max(1) as f64
}

#[test]
fn a_client_bug_zeroes_one_platform_from_its_day() {
    let bug = ShiftAt::parse(&format!("client-bug:android@{FROM}")).unwrap();
    let days = per_day(vec![bug], &|_, p| {
        p.platform == Platform::Android && p.ms_played == 0
    });
    for (d, day) in days.iter().enumerate() {
        if (d as u32) < FROM {
            assert_eq!(day.1, 0, "day {d}");
        } else {
            assert!(share(*day) > 0.05, "day {d}: {day:?}");
        }
    }
    // and only that platform
    let others = per_day(
        vec![ShiftAt::parse(&format!("client-bug:android@{FROM}")).unwrap()],
        &|_, p| p.platform != Platform::Android && p.ms_played == 0,
    );
    assert!(others.iter().all(|d| d.1 == 0), "{others:?}");
}

#[test]
fn a_dropout_removes_one_country_from_its_day() {
    let gone = ShiftAt::parse(&format!("dropout:SE@{FROM}")).unwrap();
    let baseline = per_day(vec![], &|w, p| w.profiles[p.user as usize].country == "SE");
    let shifted = per_day(vec![gone], &|w, p| {
        w.profiles[p.user as usize].country == "SE"
    });
    for d in 0..DAYS as usize {
        if (d as u32) < FROM {
            assert_eq!(
                shifted[d], baseline[d],
                "day {d}: the world before the shift is the same"
            );
            assert!(baseline[d].1 > 0);
        } else {
            assert_eq!(shifted[d].1, 0, "day {d}");
            assert_eq!(
                shifted[d].0,
                baseline[d].0 - baseline[d].1,
                "day {d}: only SE went"
            );
        }
    }
}

#[test]
fn a_taste_shift_and_a_release_move_plays_from_their_day() {
    let metal = ShiftAt::parse(&format!("taste:metal@{FROM}")).unwrap();
    let Shift::Taste { genre } = metal.shift else {
        unreachable!()
    };
    let in_genre = move |w: &World, p: &encore_sim::listen::Play| {
        let artist = w.catalog.tracks.artist[p.track as usize];
        w.catalog.artists[artist as usize].genres.first() == Some(&genre)
    };
    let base = per_day(vec![], &in_genre);
    let shifted = per_day(vec![metal], &in_genre);
    for d in 0..DAYS as usize {
        if (d as u32) < FROM {
            assert_eq!(shifted[d], base[d], "day {d}");
        } else {
            assert!(
                share(shifted[d]) > 1.3 * share(base[d]),
                "day {d}: {:.3} vs {:.3}",
                share(shifted[d]),
                share(base[d])
            );
        }
    }
    // the release: one track takes a share no track had
    let release = ShiftAt::parse(&format!("release@{FROM}")).unwrap();
    let (_, top) = per_day_of(vec![release], &|_, p| (false, p.track));
    for (d, top) in top.iter().enumerate() {
        if (d as u32) < FROM {
            assert!(*top < 0.02, "day {d}: top track {top:.3}");
        } else {
            assert!(*top > 0.04, "day {d}: top track {top:.3}");
        }
    }
}

#[test]
fn shifts_are_parsed_with_what_was_expected() {
    for (bad, says) in [
        ("taste:metal", "expected KIND@DAY"),
        ("taste:nope@3", "no genre \"nope\""),
        ("client-bug:fridge@1", "no platform \"fridge\""),
        ("dropout:XX@1", "no country \"XX\""),
        ("release@x", "not a day number"),
        ("weather@2", "expected taste:GENRE"),
    ] {
        let e = ShiftAt::parse(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    for good in [
        "taste:metal@3",
        "release@0",
        "client-bug:android@2",
        "dropout:SE@5",
    ] {
        assert_eq!(ShiftAt::parse(good).unwrap().describe(), good);
    }
}

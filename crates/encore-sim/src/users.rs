//! Listeners: public attributes (country, platform, tier), hidden taste, habits, and the state that
//! evolves as they listen (library, recent plays, followed artists).

use crate::catalog::{Catalog, DIM, Vector, dot, gaussian_vector, normalize};
use crate::rng::{Alias, Rng};
use crate::vocab::{COUNTRIES, COUNTRY_GENRE_BOOST, GENRES};
use encore_core::event::{Consent, Platform, Tier};

/// How many recent streams a listener remembers for repeat listening.
pub const RECENT_CAPACITY: usize = 200;

#[derive(Debug, Clone)]
pub struct UserProfile {
    pub country: &'static str,
    /// minutes east of UTC
    pub utc_offset_min: i32,
    pub platform: Platform,
    pub second_platform: Platform,
    pub tier: Tier,
    pub consent: Consent,
    /// mean sessions per day (lognormal across listeners)
    pub activity: f64,
    /// mean tracks per session
    pub session_len: f64,
    /// taste: a sparse mixture over genre clusters, weights summing to 1
    pub genres: Vec<(u16, f64)>,
    /// hidden position in taste space
    pub vector: Vector,
    /// (local hour of the peak, weight) of the two daily listening habits
    pub peaks: [(f64, f64); 2],
    /// additive shift of the skip logit: some people skip more than others
    pub skip_bias: f64,
    /// probability of reaching for the charts instead of one's own taste
    pub mainstream: f64,
    /// never plays explicit tracks (family and kids accounts)
    pub explicit_filter: bool,
}

impl UserProfile {
    /// Weight of genre `g` in this listener's taste (0 when absent).
    pub fn genre_weight(&self, g: u16) -> f64 {
        self.genres
            .iter()
            .find(|(x, _)| *x == g)
            .map_or(0.0, |(_, w)| *w)
    }

    pub fn pick_genre(&self, rng: &mut Rng) -> u16 {
        let mut x = rng.f64();
        for (g, w) in &self.genres {
            if x < *w {
                return *g;
            }
            x -= w;
        }
        self.genres[self.genres.len() - 1].0
    }
}

/// What a listener has accumulated; changes as the simulation runs.
#[derive(Debug, Clone, Default)]
pub struct UserState {
    /// saved tracks, sorted
    pub library: Vec<u32>,
    /// followed artists (loyalty), in the order they were followed
    pub favorites: Vec<u32>,
    /// last streamed tracks, a ring of [`RECENT_CAPACITY`]
    pub recent: Vec<u32>,
    pub recent_next: usize,
    /// number of playlists the listener has made
    pub playlists: u32,
    /// end of the listener's last play: a session running past midnight delays the next day's
    pub busy_until_ms: i64,
}

impl UserState {
    pub fn has_saved(&self, track: u32) -> bool {
        self.library.binary_search(&track).is_ok()
    }

    /// Adds `track` to the library; false when it was already there.
    pub fn save(&mut self, track: u32) -> bool {
        match self.library.binary_search(&track) {
            Ok(_) => false,
            Err(pos) => {
                self.library.insert(pos, track);
                true
            }
        }
    }

    pub fn follows(&self, artist: u32) -> bool {
        self.favorites.contains(&artist)
    }

    pub fn remember(&mut self, track: u32) {
        if self.recent.len() < RECENT_CAPACITY {
            self.recent.push(track);
        } else {
            self.recent[self.recent_next] = track;
            self.recent_next = (self.recent_next + 1) % RECENT_CAPACITY;
        }
    }
}

/// The hidden affinity of a listener for a track, in (0, 1): the probability-like quantity that
/// drives completion, skips, saves and responses to served slates.
pub fn affinity(catalog: &Catalog, user: &UserProfile, state: &UserState, track: u32) -> f64 {
    let t = track as usize;
    let genre = catalog.tracks.genre[t];
    let artist = catalog.tracks.artist[t];
    let x = 2.5 * f64::from(dot(&user.vector, &catalog.tracks.vectors[t]))
        + 2.0 * user.genre_weight(genre)
        + if state.follows(artist) { 1.0 } else { 0.0 }
        + if state.has_saved(track) { 0.6 } else { 0.0 }
        + 0.6 * f64::from(catalog.tracks.quality[t])
        - 1.0;
    1.0 / (1.0 + (-x).exp())
}

fn weighted_alias<T>(items: &[T], w: impl Fn(&T) -> f64) -> Alias {
    Alias::new(&items.iter().map(w).collect::<Vec<_>>())
}

/// Draws `n` listeners and their starting state (the history they bring into the window).
pub fn generate_users(seed: u64, n: usize, catalog: &Catalog) -> Vec<(UserProfile, UserState)> {
    let countries = weighted_alias(COUNTRIES, |c| c.1);
    let platforms = [
        (Platform::Android, 0.40),
        (Platform::Ios, 0.35),
        (Platform::Desktop, 0.12),
        (Platform::Web, 0.05),
        (Platform::SmartSpeaker, 0.04),
        (Platform::Car, 0.02),
        (Platform::Tv, 0.02),
    ];
    let platform_alias = weighted_alias(&platforms, |p| p.1);
    let tiers = [
        (Tier::Free, 0.45),
        (Tier::Premium, 0.35),
        (Tier::Family, 0.12),
        (Tier::Student, 0.08),
    ];
    let tier_alias = weighted_alias(&tiers, |t| t.1);
    let peak_hours = [8.0, 12.5, 17.5, 20.5, 23.0];

    (0..n)
        .map(|u| {
            let mut rng = Rng::stream(seed, &[2, u as u64]);
            let (country, _, utc_offset_min) = COUNTRIES[countries.sample(&mut rng)];
            let platform = platforms[platform_alias.sample(&mut rng)].0;
            let second_platform = platforms[platform_alias.sample(&mut rng)].0;
            let tier = tiers[tier_alias.sample(&mut rng)].0;

            // taste: 1-4 genres, country-flavoured, Dirichlet(0.7) weights (concentrated)
            let mut share: Vec<f64> = GENRES.iter().map(|g| g.share).collect();
            for (c, g, boost) in COUNTRY_GENRE_BOOST {
                if *c == country
                    && let Some(i) = GENRES.iter().position(|x| x.name == *g)
                {
                    share[i] *= boost;
                }
            }
            let k = (1 + rng.poisson(0.9)).min(4) as usize;
            let mut genres: Vec<(u16, f64)> = Vec::with_capacity(k);
            while genres.len() < k {
                let g = rng.weighted(&share) as u16;
                share[g as usize] = 0.0;
                genres.push((g, rng.gamma(0.7).max(1e-6)));
            }
            let total: f64 = genres.iter().map(|(_, w)| w).sum();
            genres.iter_mut().for_each(|(_, w)| *w /= total);
            genres.sort_by(|a, b| b.1.total_cmp(&a.1));

            let mut vector = gaussian_vector(&mut rng);
            vector.iter_mut().for_each(|x| *x *= 0.25);
            for (g, w) in &genres {
                for (x, y) in vector.iter_mut().zip(&catalog.genre_vectors[*g as usize]) {
                    *x += *w as f32 * y;
                }
            }
            normalize(&mut vector);
            debug_assert_eq!(vector.len(), DIM);

            let main_peak = peak_hours[rng.below(peak_hours.len())];
            let second_peak = peak_hours[rng.below(peak_hours.len())];
            let first_weight = rng.range_f64(0.5, 0.9);
            let profile = UserProfile {
                country,
                utc_offset_min,
                platform,
                second_platform,
                tier,
                consent: Consent {
                    personalization: rng.chance(0.96),
                    analytics: rng.chance(0.9),
                },
                activity: rng.lognormal(0.0, 0.8),
                session_len: rng.range_f64(6.0, 18.0),
                genres,
                vector,
                peaks: [(main_peak, first_weight), (second_peak, 1.0 - first_weight)],
                skip_bias: 0.5 * rng.normal(),
                mainstream: rng.range_f64(0.0, 0.2),
                explicit_filter: tier == Tier::Family && rng.chance(0.3),
            };

            // history before the window: a few loved artists and a library drawn from taste
            let mut state = UserState::default();
            for _ in 0..2 + rng.poisson(3.0) {
                let g = profile.pick_genre(&mut rng);
                if let Some(a) = catalog.artist_of_genre(g, &mut rng)
                    && !state.follows(a)
                {
                    state.favorites.push(a);
                }
            }
            let library_size = rng.lognormal(3.0, 0.8) as usize;
            for _ in 0..library_size {
                let track = if !state.favorites.is_empty() && rng.chance(0.4) {
                    let a = state.favorites[rng.below(state.favorites.len())];
                    catalog.track_of_artist(a, &mut rng)
                } else {
                    let g = profile.pick_genre(&mut rng);
                    match catalog.artist_of_genre(g, &mut rng) {
                        Some(a) => catalog.track_of_artist(a, &mut rng),
                        None => catalog.chart_track(&mut rng),
                    }
                };
                if !(profile.explicit_filter && catalog.tracks.explicit[track as usize]) {
                    state.save(track);
                }
            }
            state.playlists = rng.poisson(2.0);
            state.busy_until_ms = i64::MIN;
            (profile, state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use encore_core::time::Date;

    #[test]
    fn taste_is_sparse_and_affinity_follows_it() {
        let catalog = Catalog::generate(1, 20_000, Date::parse("2026-01-05").unwrap());
        let users = generate_users(1, 300, &catalog);
        let mut in_taste = (0.0, 0);
        let mut out_taste = (0.0, 0);
        let mut rng = Rng::new(4);
        for (profile, state) in &users {
            assert!((1..=4).contains(&profile.genres.len()));
            let sum: f64 = profile.genres.iter().map(|(_, w)| w).sum();
            assert!((sum - 1.0).abs() < 1e-9);
            for _ in 0..20 {
                let t = rng.below(catalog.tracks.len()) as u32;
                let a = affinity(&catalog, profile, state, t);
                assert!(a > 0.0 && a < 1.0);
                if profile.genre_weight(catalog.tracks.genre[t as usize]) > 0.2 {
                    in_taste.0 += a;
                    in_taste.1 += 1;
                } else if profile.genre_weight(catalog.tracks.genre[t as usize]) == 0.0 {
                    out_taste.0 += a;
                    out_taste.1 += 1;
                }
            }
        }
        let (inside, outside) = (
            in_taste.0 / in_taste.1 as f64,
            out_taste.0 / out_taste.1 as f64,
        );
        assert!(
            inside > outside + 0.3,
            "in-taste {inside:.2} vs out-of-taste {outside:.2}"
        );
    }
}

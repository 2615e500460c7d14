//! The simulated catalog: genres with latent centroids, artists, albums and tracks, stored as
//! struct-of-arrays so the listening loop touches contiguous memory.

use crate::rng::{Alias, Rng};
use crate::vocab::{ADJECTIVES, FIRST_NAMES, GENRES, GLOBAL_TAGS, LAST_NAMES, NOUNS};
use encore_core::time::Date;
use std::ops::Range;

/// Dimension of the hidden taste space.
pub const DIM: usize = 16;

/// A unit vector in the hidden taste space.
pub type Vector = [f32; DIM];

#[derive(Debug)]
pub struct Artist {
    pub name: String,
    /// primary genre first
    pub genres: Vec<u16>,
    /// indices into [`Catalog::tags`]
    pub tags: Vec<u16>,
    /// prior popularity weight (heavy-tailed)
    pub weight: f64,
    pub albums: Range<u32>,
    pub tracks: Range<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlbumKind {
    Album,
    Single,
    Ep,
}

impl AlbumKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlbumKind::Album => "album",
            AlbumKind::Single => "single",
            AlbumKind::Ep => "ep",
        }
    }
}

#[derive(Debug)]
pub struct Album {
    pub artist: u32,
    pub title: String,
    pub kind: AlbumKind,
    pub release: Date,
    pub tracks: Range<u32>,
}

/// Tracks as columns; index = track number in the world.
#[derive(Debug, Default)]
pub struct Tracks {
    pub title: Vec<String>,
    pub album: Vec<u32>,
    pub artist: Vec<u32>,
    pub genre: Vec<u16>,
    pub number: Vec<u32>,
    pub duration_ms: Vec<u32>,
    pub explicit: Vec<bool>,
    /// prior popularity weight: artist weight x track weight
    pub weight: Vec<f64>,
    /// intrinsic appeal beyond taste match; raises completion for everyone
    pub quality: Vec<f32>,
    /// hidden position in taste space, DIM floats per track
    pub vectors: Vec<Vector>,
}

impl Tracks {
    pub fn len(&self) -> usize {
        self.album.len()
    }

    pub fn is_empty(&self) -> bool {
        self.album.is_empty()
    }
}

/// The whole catalog plus the sampling tables the listening model draws from.
#[derive(Debug)]
pub struct Catalog {
    pub tags: Vec<String>,
    /// genre -> tag index of the genre's own name
    pub genre_tag: Vec<u16>,
    pub genre_vectors: Vec<Vector>,
    pub artists: Vec<Artist>,
    pub albums: Vec<Album>,
    pub tracks: Tracks,
    /// popularity 0..=100 per artist and per track (log-scaled weight percentile)
    pub artist_popularity: Vec<u8>,
    pub track_popularity: Vec<u8>,
    /// genre -> artists of that primary genre, with an alias table over their weights
    pub(crate) genre_artists: Vec<(Vec<u32>, Alias)>,
    /// genre -> sum of its artists' weights
    pub(crate) genre_weight: Vec<f64>,
    /// prefix sums of track weights, restarting at each artist's first track
    pub(crate) artist_cum: Vec<f64>,
    /// all tracks by weight: the "charts" everyone sees
    pub(crate) chart: Alias,
    pub(crate) total_weight: f64,
}

pub(crate) fn normalize(v: &mut Vector) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

pub(crate) fn gaussian_vector(rng: &mut Rng) -> Vector {
    let mut v = [0f32; DIM];
    v.iter_mut().for_each(|x| *x = rng.normal() as f32);
    v
}

pub(crate) fn dot(a: &Vector, b: &Vector) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn title_case(words: &[&str]) -> String {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let mut chars = w.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

fn pick<'a>(rng: &mut Rng, words: &[&'a str]) -> &'a str {
    words[rng.below(words.len())]
}

fn artist_name(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => title_case(&[pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES)]),
        1 => title_case(&[
            "the",
            pick(rng, ADJECTIVES),
            &format!("{}s", pick(rng, NOUNS)),
        ]),
        2 => title_case(&[pick(rng, ADJECTIVES), pick(rng, NOUNS)]),
        _ => title_case(&[
            pick(rng, FIRST_NAMES),
            "and the",
            &format!("{}s", pick(rng, NOUNS)),
        ]),
    }
}

fn song_title(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => title_case(&[pick(rng, NOUNS)]),
        1 => title_case(&[pick(rng, ADJECTIVES), pick(rng, NOUNS)]),
        _ => title_case(&[
            pick(rng, NOUNS),
            "of",
            pick(rng, ADJECTIVES),
            pick(rng, NOUNS),
        ]),
    }
}

/// Popularity 0..=100 from weights: 100 x the weight's percentile, squared so the top is rare.
fn popularity(weights: &[f64]) -> Vec<u8> {
    let mut order: Vec<u32> = (0..weights.len() as u32).collect();
    order.sort_by(|&a, &b| weights[a as usize].total_cmp(&weights[b as usize]));
    let mut out = vec![0u8; weights.len()];
    let n = weights.len().max(2) as f64 - 1.0;
    for (rank, &i) in order.iter().enumerate() {
        let pct = rank as f64 / n;
        out[i as usize] = (100.0 * pct * pct).round() as u8;
    }
    out
}

impl Catalog {
    /// Generates a catalog of exactly `n_tracks` tracks (at least 1) from `seed`.
    pub fn generate(seed: u64, n_tracks: usize, world_start: Date) -> Catalog {
        let n_tracks = n_tracks.max(1);
        let mut rng = Rng::stream(seed, &[1]);

        // tags: genre names, then each genre's styles, then cross-genre descriptors
        let mut tags: Vec<String> = GENRES.iter().map(|g| g.name.to_owned()).collect();
        let genre_tag: Vec<u16> = (0..GENRES.len() as u16).collect();
        let mut genre_style_tags: Vec<Vec<u16>> = Vec::new();
        for g in GENRES {
            let mut ids = Vec::new();
            for t in g.tags {
                ids.push(tags.len() as u16);
                tags.push((*t).to_owned());
            }
            genre_style_tags.push(ids);
        }
        let global_tags: Vec<u16> = GLOBAL_TAGS
            .iter()
            .map(|t| {
                tags.push((*t).to_owned());
                (tags.len() - 1) as u16
            })
            .collect();

        let genre_vectors: Vec<Vector> = GENRES
            .iter()
            .map(|_| {
                let mut v = gaussian_vector(&mut rng);
                normalize(&mut v);
                v
            })
            .collect();
        let genre_share = Alias::new(&GENRES.iter().map(|g| g.share).collect::<Vec<_>>());
        // Zipf-like weights for picking tags within a list: the first ones are used far more
        let zipf = |n: usize| (1..=n).map(|r| 1.0 / r as f64).collect::<Vec<f64>>();
        let global_zipf = zipf(global_tags.len());
        let end_day = world_start.to_days();

        let mut artists = Vec::new();
        let mut albums = Vec::new();
        let mut tracks = Tracks::default();
        while tracks.len() < n_tracks {
            let artist_idx = artists.len() as u32;
            let genre = genre_share.sample(&mut rng) as u16;
            let spec = &GENRES[genre as usize];
            let mut genres = vec![genre];
            let mut vector = genre_vectors[genre as usize];
            if rng.chance(0.25) {
                let second = genre_share.sample(&mut rng) as u16;
                if second != genre {
                    genres.push(second);
                    for (x, y) in vector.iter_mut().zip(&genre_vectors[second as usize]) {
                        *x += 0.45 * y;
                    }
                }
            }
            let noise = gaussian_vector(&mut rng);
            for (x, n) in vector.iter_mut().zip(noise) {
                *x += 0.22 * n;
            }
            normalize(&mut vector);

            let mut artist_tags = vec![genre_tag[genre as usize]];
            let styles = &genre_style_tags[genre as usize];
            let style_w = zipf(styles.len());
            for _ in 0..1 + rng.below(3) {
                let t = styles[rng.weighted(&style_w)];
                if !artist_tags.contains(&t) {
                    artist_tags.push(t);
                }
            }
            if genres.len() > 1 {
                artist_tags.push(genre_tag[genres[1] as usize]);
            }
            for _ in 0..rng.below(4) {
                let t = global_tags[rng.weighted(&global_zipf)];
                if !artist_tags.contains(&t) {
                    artist_tags.push(t);
                }
            }

            let weight = rng.lognormal(0.0, 1.45);
            let explicit_rate = (spec.explicit_rate * rng.range_f64(0.2, 1.8)).min(0.95);
            // careers: debut between 1960 and a year before the world starts, recent years likelier
            let career_days = (end_day
                - Date {
                    year: 1960,
                    month: 1,
                    day: 1,
                }
                .to_days()) as f64;
            let debut = end_day - (career_days * rng.f64().powi(2)) as i64 - 365;
            let n_albums = (1 + rng.poisson(0.8 + weight.min(6.0) * 0.5)).min(12) as usize;
            let album_start = albums.len() as u32;
            let track_start = tracks.len() as u32;
            for a in 0..n_albums {
                let kind = match rng.f64() {
                    x if x < 0.3 => AlbumKind::Single,
                    x if x < 0.5 => AlbumKind::Ep,
                    _ => AlbumKind::Album,
                };
                let n = match kind {
                    AlbumKind::Single => 1 + rng.below(2),
                    AlbumKind::Ep => 4 + rng.below(3),
                    AlbumKind::Album => 8 + rng.below(7),
                };
                let span = (end_day - debut).max(1) as f64;
                let release = Date::from_days(
                    debut + (span * (a as f64 + rng.f64()) / n_albums as f64) as i64,
                );
                let album_idx = albums.len() as u32;
                let first = tracks.len() as u32;
                for k in 0..n {
                    if tracks.len() >= n_tracks {
                        break;
                    }
                    // the opener of each release is its single: it gets the attention
                    let hit = if k == 0 { rng.lognormal(0.8, 0.5) } else { 1.0 };
                    let track_weight = rng.lognormal(0.0, 1.0) * hit;
                    let mut v = vector;
                    let noise = gaussian_vector(&mut rng);
                    for (x, n) in v.iter_mut().zip(noise) {
                        *x += 0.12 * n;
                    }
                    normalize(&mut v);
                    let duration_s =
                        (spec.duration_s * rng.lognormal(0.0, 0.25)).clamp(45.0, 1_200.0);
                    tracks.title.push(song_title(&mut rng));
                    tracks.album.push(album_idx);
                    tracks.artist.push(artist_idx);
                    tracks.genre.push(genre);
                    tracks.number.push(k as u32 + 1);
                    tracks.duration_ms.push((duration_s * 1_000.0) as u32);
                    tracks.explicit.push(rng.chance(explicit_rate));
                    tracks.weight.push(weight * track_weight);
                    tracks
                        .quality
                        .push((0.25 * track_weight.ln() + 0.5 * rng.normal()) as f32);
                    tracks.vectors.push(v);
                }
                let title = if kind == AlbumKind::Single {
                    tracks
                        .title
                        .get(first as usize)
                        .cloned()
                        .unwrap_or_else(|| song_title(&mut rng))
                } else {
                    song_title(&mut rng)
                };
                albums.push(Album {
                    artist: artist_idx,
                    title,
                    kind,
                    release,
                    tracks: first..tracks.len() as u32,
                });
                if tracks.len() >= n_tracks {
                    break;
                }
            }
            artists.push(Artist {
                name: artist_name(&mut rng),
                genres,
                tags: artist_tags,
                weight,
                albums: album_start..albums.len() as u32,
                tracks: track_start..tracks.len() as u32,
            });
        }
        // every album and artist holds at least one track: one is only started under budget
        Catalog::index(tags, genre_tag, genre_vectors, artists, albums, tracks)
    }

    fn index(
        tags: Vec<String>,
        genre_tag: Vec<u16>,
        genre_vectors: Vec<Vector>,
        artists: Vec<Artist>,
        albums: Vec<Album>,
        tracks: Tracks,
    ) -> Catalog {
        let mut artist_cum = vec![0.0; tracks.len()];
        let mut artist_total = vec![0.0; artists.len()];
        for (a, artist) in artists.iter().enumerate() {
            let mut acc = 0.0;
            for t in artist.tracks.clone() {
                acc += tracks.weight[t as usize];
                artist_cum[t as usize] = acc;
            }
            artist_total[a] = acc;
        }
        let mut genre_artists: Vec<Vec<u32>> = vec![Vec::new(); GENRES.len()];
        for (a, artist) in artists.iter().enumerate() {
            if !artist.tracks.is_empty() {
                genre_artists[artist.genres[0] as usize].push(a as u32);
            }
        }
        let genre_weight: Vec<f64> = genre_artists
            .iter()
            .map(|list| list.iter().map(|&a| artist_total[a as usize]).sum())
            .collect();
        let genre_artists = genre_artists
            .into_iter()
            .map(|list| {
                let weights: Vec<f64> = if list.is_empty() {
                    vec![1.0]
                } else {
                    list.iter().map(|&a| artist_total[a as usize]).collect()
                };
                (list, Alias::new(&weights))
            })
            .collect();
        let chart = Alias::new(&tracks.weight);
        let total_weight = tracks.weight.iter().sum();
        let artist_popularity = popularity(&artist_total);
        let track_popularity = popularity(&tracks.weight);
        Catalog {
            tags,
            genre_tag,
            genre_vectors,
            artists,
            albums,
            tracks,
            artist_popularity,
            track_popularity,
            genre_artists,
            genre_weight,
            artist_cum,
            chart,
            total_weight,
        }
    }

    /// A track of `artist`, drawn by track weight.
    pub(crate) fn track_of_artist(&self, artist: u32, rng: &mut Rng) -> u32 {
        let range = self.artists[artist as usize].tracks.clone();
        let cum = &self.artist_cum[range.start as usize..range.end as usize];
        let total = cum.last().copied().unwrap_or(0.0);
        let x = rng.f64() * total;
        let i = cum
            .partition_point(|&c| c <= x)
            .min(cum.len().saturating_sub(1));
        range.start + i as u32
    }

    /// Probability that [`Self::track_of_artist`] returns `track`.
    pub(crate) fn p_track_given_artist(&self, track: u32) -> f64 {
        let artist = self.tracks.artist[track as usize] as usize;
        let range = &self.artists[artist].tracks;
        let total = self.artist_cum[range.end as usize - 1];
        self.tracks.weight[track as usize] / total
    }

    /// An artist of genre `g` by weight, or `None` if the genre has no artists in this catalog.
    pub(crate) fn artist_of_genre(&self, g: u16, rng: &mut Rng) -> Option<u32> {
        let (list, alias) = &self.genre_artists[g as usize];
        if list.is_empty() {
            None
        } else {
            Some(list[alias.sample(rng)])
        }
    }

    /// Probability that [`Self::artist_of_genre`] returns `artist` (for its primary genre).
    pub(crate) fn p_artist_given_genre(&self, artist: u32) -> f64 {
        let a = &self.artists[artist as usize];
        let total: f64 = self.artist_cum[a.tracks.end as usize - 1];
        total / self.genre_weight[a.genres[0] as usize]
    }

    pub(crate) fn chart_track(&self, rng: &mut Rng) -> u32 {
        self.chart.sample(rng) as u32
    }

    pub(crate) fn p_chart(&self, track: u32) -> f64 {
        self.tracks.weight[track as usize] / self.total_weight
    }

    pub fn genre_name(&self, g: u16) -> &str {
        &self.tags[self.genre_tag[g as usize] as usize]
    }

    pub fn track_id(t: u32) -> String {
        format!("t{t}")
    }

    pub fn artist_id(a: u32) -> String {
        format!("ar{a}")
    }

    pub fn album_id(a: u32) -> String {
        format!("al{a}")
    }

    pub fn tag_id(t: u16) -> String {
        format!("tag{t}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Date {
        Date::parse("2026-01-05").unwrap()
    }

    #[test]
    fn exact_track_count_and_consistent_ranges() {
        for n in [1, 1_000, 12_345] {
            let c = Catalog::generate(9, n, start());
            assert_eq!(c.tracks.len(), n);
            for (a, artist) in c.artists.iter().enumerate() {
                for t in artist.tracks.clone() {
                    assert_eq!(c.tracks.artist[t as usize], a as u32);
                }
                for al in artist.albums.clone() {
                    assert_eq!(c.albums[al as usize].artist, a as u32);
                }
            }
            for (i, album) in c.albums.iter().enumerate() {
                for t in album.tracks.clone() {
                    assert_eq!(c.tracks.album[t as usize], i as u32);
                }
                assert!(album.release < start());
            }
        }
    }

    #[test]
    fn hundreds_of_tags_with_long_tailed_use() {
        let c = Catalog::generate(3, 50_000, start());
        assert!((200..=400).contains(&c.tags.len()), "{} tags", c.tags.len());
        let mut uses = vec![0usize; c.tags.len()];
        for a in &c.artists {
            for &t in &a.tags {
                uses[t as usize] += 1;
            }
        }
        uses.sort_unstable_by(|a, b| b.cmp(a));
        let total: usize = uses.iter().sum();
        let top10: usize = uses[..uses.len() / 10].iter().sum();
        // the top tenth of tags carry most assignments; the tail is still used
        assert!(
            top10 as f64 / total as f64 > 0.4,
            "top-10% share {top10}/{total}"
        );
        assert!(uses.iter().filter(|&&u| u > 0).count() > c.tags.len() * 8 / 10);
    }

    #[test]
    fn samplers_match_their_probabilities() {
        let c = Catalog::generate(5, 3_000, start());
        let artist = c.genre_artists[0].0[0];
        let mut rng = Rng::new(1);
        let n = 50_000;
        let first = c.artists[artist as usize].tracks.start;
        let hits = (0..n)
            .filter(|_| c.track_of_artist(artist, &mut rng) == first)
            .count();
        let p = c.p_track_given_artist(first);
        assert!((hits as f64 / n as f64 - p).abs() < 0.01, "{hits} vs {p}");
        let sum: f64 = c.genre_artists[0]
            .0
            .iter()
            .map(|&a| c.p_artist_given_genre(a))
            .sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }
}

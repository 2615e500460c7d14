//! The listening model: a listener's day as sessions, each session a context (album, playlist,
//! radio, ...) that picks tracks, and each play an outcome (completed, skipped, stopped) driven by
//! the hidden affinity of listener and track.

use crate::catalog::Catalog;
use crate::rng::Rng;
use crate::users::{UserProfile, UserState, affinity};
use encore_core::event::{ContextType, InteractionKind, Platform, ReasonEnd, ReasonStart};
use encore_core::time::{MS_PER_HOUR, MS_PER_MINUTE};

/// What a play's `context_id` refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextRef {
    None,
    Album(u32),
    Artist(u32),
    /// the listener's n-th playlist
    Playlist(u32),
    /// a genre radio station
    Radio(u16),
    Collection,
    /// the home surface of the service's current recommender
    Home,
}

/// A served recommendation that a play is attributed to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attribution {
    pub request: (u64, u64),
    pub position: u32,
    pub propensity: f64,
}

/// One playback in compact form (ids are indices; strings are made when writing).
#[derive(Debug, Clone, PartialEq)]
pub struct Play {
    pub user: u32,
    pub track: u32,
    pub session: u64,
    pub event_id: (u64, u64),
    pub ts_start_ms: i64,
    pub ms_played: u32,
    pub reason_start: ReasonStart,
    pub reason_end: ReasonEnd,
    pub context: ContextType,
    pub context_ref: ContextRef,
    pub shuffle: bool,
    pub offline: bool,
    pub private_session: bool,
    pub taste_excluded: bool,
    pub platform: Platform,
    pub attribution: Option<Attribution>,
}

/// What an interaction acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Track(u32),
    Artist(u32),
}

/// One non-playback action in compact form.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub user: u32,
    pub session: u64,
    pub event_id: (u64, u64),
    pub ts_ms: i64,
    pub kind: InteractionKind,
    pub target: Target,
    pub context: ContextType,
    pub context_ref: ContextRef,
    pub platform: Platform,
}

/// How one playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub ms_played: u32,
    pub reason_end: ReasonEnd,
    pub skipped: bool,
}

/// The playback outcome for a listener with hidden affinity `aff` for a track of `duration_ms`.
/// `context_bias` shifts the skip logit: negative where the listener chose the item themselves.
pub fn playback_outcome(
    aff: f64,
    duration_ms: u32,
    context_bias: f64,
    skip_bias: f64,
    rng: &mut Rng,
) -> Outcome {
    let logit = context_bias + skip_bias + 1.1 - 4.0 * (aff - 0.45);
    let p_skip = 1.0 / (1.0 + (-logit).exp());
    let d = f64::from(duration_ms);
    if rng.chance(p_skip) {
        // the worse the match, the sooner the skip
        let ms = match rng.f64() {
            x if x < 0.5 - 0.3 * aff => rng.range_f64(300.0, 5_000.0),
            x if x < 0.95 - 0.2 * aff => rng.range_f64(5_000.0, 30_000.0),
            _ => rng.range_f64(30_000.0, d * 0.9),
        };
        let ms = ms.min(d - 1.0).max(1.0) as u32;
        let reason_end = if rng.chance(0.06) {
            ReasonEnd::Backbtn
        } else {
            ReasonEnd::Fwdbtn
        };
        Outcome {
            ms_played: ms,
            reason_end,
            skipped: true,
        }
    } else {
        Outcome {
            ms_played: duration_ms,
            reason_end: ReasonEnd::Trackdone,
            skipped: false,
        }
    }
}

/// Read-only inputs of one listener-day.
pub(crate) struct DayInput<'a> {
    pub catalog: &'a Catalog,
    /// global genre shares, summing to 1
    pub genre_share: &'a [f64],
    pub profile: &'a UserProfile,
    pub user: u32,
    /// UTC midnight of the day
    pub day_start_ms: i64,
    /// 0 = Monday
    pub weekday: u32,
    /// a taste shift: the genre a third of taste picks go to, from a time on (UTC epoch ms)
    pub taste_shift: Option<(u16, i64)>,
    /// a release: the track 8 % of plays go to, from a time on (UTC epoch ms)
    pub hit: Option<(u32, i64)>,
}

/// A slot-filling policy fixed for the length of a session.
#[derive(Clone, Copy)]
enum Plan {
    Collection,
    Playlist,
    Album { artist: u32, album: u32, next: u32 },
    Artist(u32),
    Radio(u16),
    Recommendation { request: (u64, u64) },
    Search,
}

struct Session<'a, 'b> {
    input: &'a DayInput<'b>,
    rng: &'a mut Rng,
    state: &'a mut UserState,
    /// when the pick is made (shifts start at an instant)
    at_ms: i64,
}

impl Session<'_, '_> {
    /// A track from the listener's taste: genre from the mixture (with some exploration), artist by
    /// weight within the genre, track by weight within the artist.
    fn taste_track(&mut self) -> u32 {
        let catalog = self.input.catalog;
        // (a shift draws from the stream only when in force: unshifted worlds stay the same)
        if let Some((g, from_ms)) = self.input.taste_shift
            && self.at_ms >= from_ms
            && self.rng.chance(1.0 / 3.0)
            && let Some(a) = catalog.artist_of_genre(g, self.rng)
        {
            return catalog.track_of_artist(a, self.rng);
        }
        let genre = if self.rng.chance(0.08) {
            self.rng.weighted(self.input.genre_share) as u16
        } else {
            self.input.profile.pick_genre(self.rng)
        };
        match catalog.artist_of_genre(genre, self.rng) {
            Some(a) => catalog.track_of_artist(a, self.rng),
            None => catalog.chart_track(self.rng),
        }
    }

    fn favorite_artist(&mut self) -> Option<u32> {
        let favs = &self.state.favorites;
        (!favs.is_empty()).then(|| favs[self.rng.below(favs.len())])
    }

    fn chosen_artist(&mut self) -> u32 {
        match self.favorite_artist() {
            Some(a) if self.rng.chance(0.6) => a,
            _ => {
                let t = self.taste_track();
                self.input.catalog.tracks.artist[t as usize]
            }
        }
    }

    fn library_track(&mut self) -> Option<u32> {
        let lib = &self.state.library;
        (!lib.is_empty()).then(|| lib[self.rng.below(lib.len())])
    }

    fn recent_track(&mut self) -> Option<u32> {
        let recent = &self.state.recent;
        (!recent.is_empty()).then(|| recent[self.rng.below(recent.len())])
    }

    fn plan(&mut self) -> (Plan, ContextType, ContextRef) {
        let lib = self.state.library.len();
        let weights = [
            if lib >= 10 { 0.18 } else { 0.0 },
            if lib >= 5 && self.state.playlists > 0 {
                0.17
            } else {
                0.0
            },
            0.14,
            0.10,
            0.16,
            0.13,
            0.12,
        ];
        match self.rng.weighted(&weights) {
            0 => (
                Plan::Collection,
                ContextType::Collection,
                ContextRef::Collection,
            ),
            1 => {
                let k = self.rng.below(self.state.playlists as usize) as u32;
                (
                    Plan::Playlist,
                    ContextType::Playlist,
                    ContextRef::Playlist(k),
                )
            }
            2 => {
                let artist = self.chosen_artist();
                let albums = self.input.catalog.artists[artist as usize].albums.clone();
                let album = albums.start + self.rng.below(albums.len()) as u32;
                let next = self.input.catalog.albums[album as usize].tracks.start;
                (
                    Plan::Album {
                        artist,
                        album,
                        next,
                    },
                    ContextType::Album,
                    ContextRef::Album(album),
                )
            }
            3 => {
                let artist = self.chosen_artist();
                (
                    Plan::Artist(artist),
                    ContextType::Artist,
                    ContextRef::Artist(artist),
                )
            }
            4 => {
                let g = self.input.profile.pick_genre(self.rng);
                (Plan::Radio(g), ContextType::Radio, ContextRef::Radio(g))
            }
            5 => {
                let request = (self.rng.next_u64(), self.rng.next_u64());
                (
                    Plan::Recommendation { request },
                    ContextType::Recommendation,
                    ContextRef::Home,
                )
            }
            _ => (Plan::Search, ContextType::Search, ContextRef::None),
        }
    }

    /// The service's current recommender (the logging policy): charts 15 %, otherwise the
    /// listener's genres (90 %) blended with global shares (10 %). Returns the track and the exact
    /// probability the policy had of choosing it.
    fn recommend(&mut self) -> (u32, f64) {
        let catalog = self.input.catalog;
        let profile = self.input.profile;
        let track = if self.rng.chance(0.15) {
            catalog.chart_track(self.rng)
        } else {
            let genre = if self.rng.chance(0.1) {
                self.rng.weighted(self.input.genre_share) as u16
            } else {
                profile.pick_genre(self.rng)
            };
            match catalog.artist_of_genre(genre, self.rng) {
                Some(a) => catalog.track_of_artist(a, self.rng),
                None => catalog.chart_track(self.rng),
            }
        };
        let t = track as usize;
        let g = catalog.tracks.genre[t];
        let mix = 0.9 * profile.genre_weight(g) + 0.1 * self.input.genre_share[g as usize];
        let p = 0.15 * catalog.p_chart(track)
            + 0.85
                * mix
                * catalog.p_artist_given_genre(catalog.tracks.artist[t])
                * catalog.p_track_given_artist(track);
        (track, p)
    }

    /// Fills one slot; `None` ends the session (an album ran out).
    fn next_track(&mut self, plan: &mut Plan) -> Option<(u32, Option<f64>)> {
        let catalog = self.input.catalog;
        // a release everyone plays, whatever they were listening to
        if let Some((t, from_ms)) = self.input.hit
            && self.at_ms >= from_ms
            && self.rng.chance(0.08)
        {
            return Some((t, None));
        }
        let track = match plan {
            Plan::Collection => self.library_track().unwrap_or_else(|| self.taste_track()),
            Plan::Playlist => {
                let pick = if self.rng.chance(0.5) {
                    self.library_track()
                } else {
                    self.recent_track()
                };
                pick.unwrap_or_else(|| self.taste_track())
            }
            Plan::Album {
                artist,
                album,
                next,
            } => {
                if *next >= catalog.albums[*album as usize].tracks.end {
                    // the album is over: half the listeners stop, the others go on with another
                    // release of the same artist
                    if self.rng.chance(0.5) {
                        return None;
                    }
                    let albums = catalog.artists[*artist as usize].albums.clone();
                    *album = albums.start + self.rng.below(albums.len()) as u32;
                    *next = catalog.albums[*album as usize].tracks.start;
                }
                *next += 1;
                *next - 1
            }
            Plan::Artist(a) => catalog.track_of_artist(*a, self.rng),
            Plan::Radio(g) => match self.favorite_artist() {
                Some(a) if self.rng.chance(0.2) => catalog.track_of_artist(a, self.rng),
                _ => match catalog.artist_of_genre(*g, self.rng) {
                    Some(a) => catalog.track_of_artist(a, self.rng),
                    None => self.taste_track(),
                },
            },
            Plan::Recommendation { .. } => {
                let (t, p) = self.recommend();
                return Some((t, Some(p)));
            }
            Plan::Search => match self.rng.f64() {
                x if x < 0.35 => catalog.chart_track(self.rng),
                x if x < 0.70 => match self.favorite_artist() {
                    Some(a) => catalog.track_of_artist(a, self.rng),
                    None => self.taste_track(),
                },
                _ => self.taste_track(),
            },
        };
        Some((track, None))
    }
}

/// Shift of the skip logit by context: listeners skip less of what they picked themselves.
pub(crate) fn context_bias(context: ContextType) -> f64 {
    match context {
        ContextType::Album | ContextType::Collection | ContextType::Playlist => -0.7,
        ContextType::Search => -0.9,
        ContextType::Artist => -0.4,
        ContextType::Radio | ContextType::Recommendation | ContextType::Unknown => 0.0,
    }
}

fn first_reason(context: ContextType, rng: &mut Rng) -> ReasonStart {
    if rng.chance(0.05) {
        return ReasonStart::Appload;
    }
    match context {
        ContextType::Collection | ContextType::Radio | ContextType::Recommendation => {
            ReasonStart::Playbtn
        }
        _ => ReasonStart::Clickrow,
    }
}

/// Simulates one listener-day, appending plays and interactions (in time order).
pub(crate) fn simulate_day(
    input: &DayInput<'_>,
    state: &mut UserState,
    rng: &mut Rng,
    plays: &mut Vec<Play>,
    interactions: &mut Vec<Interaction>,
) {
    let profile = input.profile;
    let weekend = if input.weekday >= 5 { 1.2 } else { 1.0 };
    let n_sessions = rng.poisson(profile.activity * weekend);
    let mut starts: Vec<i64> = (0..n_sessions)
        .map(|_| {
            let peak = if rng.chance(profile.peaks[0].1) {
                profile.peaks[0].0
            } else {
                profile.peaks[1].0
            };
            let hour = (peak + 1.3 * rng.normal()).rem_euclid(24.0);
            input.day_start_ms + (hour * MS_PER_HOUR as f64) as i64
                - i64::from(profile.utc_offset_min) * MS_PER_MINUTE
        })
        .collect();
    starts.sort_unstable();

    let mut clock = state.busy_until_ms;
    for start in starts {
        let mut t = start.max(clock.saturating_add(2 * MS_PER_MINUTE));
        let session_id = rng.next_u64();
        let (mut plan, context, context_ref) = Session {
            input,
            rng: &mut *rng,
            state: &mut *state,
            at_ms: t,
        }
        .plan();
        let free = profile.tier == encore_core::event::Tier::Free;
        let shuffle = match context {
            ContextType::Playlist | ContextType::Collection | ContextType::Artist => {
                rng.chance(if free { 0.9 } else { 0.4 })
            }
            _ => false,
        };
        let platform = if rng.chance(0.85) {
            profile.platform
        } else {
            profile.second_platform
        };
        let mobile = matches!(platform, Platform::Ios | Platform::Android);
        let offline = mobile && rng.chance(0.03);
        let private_session = rng.chance(0.015);
        let taste_excluded = context == ContextType::Playlist && rng.chance(0.04);
        let length = 1 + rng.geometric(1.0 / profile.session_len);
        let mut reason_start = first_reason(context, rng);

        for slot in 0..length {
            let mut session = Session {
                input,
                rng: &mut *rng,
                state: &mut *state,
                at_ms: t,
            };
            let mut pick = None;
            for _ in 0..4 {
                match session.next_track(&mut plan) {
                    None => break,
                    Some((track, _))
                        if profile.explicit_filter
                            && input.catalog.tracks.explicit[track as usize] => {}
                    found => {
                        pick = found;
                        break;
                    }
                }
            }
            let Some((track, propensity)) = pick else {
                break;
            };
            let catalog = input.catalog;
            let aff = affinity(catalog, profile, state, track);
            let duration = catalog.tracks.duration_ms[track as usize];
            let mut outcome =
                playback_outcome(aff, duration, context_bias(context), profile.skip_bias, rng);
            if slot + 1 == length && !outcome.skipped && rng.chance(0.45) {
                // the listener stops partway through the session's last track
                outcome.ms_played = (f64::from(duration) * rng.range_f64(0.05, 0.95)) as u32;
                outcome.reason_end = if rng.chance(0.7) {
                    ReasonEnd::Endplay
                } else {
                    ReasonEnd::Logout
                };
            }
            let attribution = match (plan, propensity) {
                (Plan::Recommendation { request }, Some(p)) => Some(Attribution {
                    request,
                    position: slot,
                    propensity: p,
                }),
                _ => None,
            };
            let event_id = (rng.next_u64(), rng.next_u64());
            // an album session may have moved on to another release of the artist
            let context_ref = match plan {
                Plan::Album { album, .. } => ContextRef::Album(album),
                _ => context_ref,
            };
            plays.push(Play {
                user: input.user,
                track,
                session: session_id,
                event_id,
                ts_start_ms: t,
                ms_played: outcome.ms_played,
                reason_start,
                reason_end: outcome.reason_end,
                context,
                context_ref,
                shuffle,
                offline,
                private_session,
                taste_excluded,
                platform,
                attribution,
            });
            let ts_end = t + i64::from(outcome.ms_played);
            let mut act = |kind, target, rng: &mut Rng| {
                interactions.push(Interaction {
                    user: input.user,
                    session: session_id,
                    event_id: (rng.next_u64(), rng.next_u64()),
                    ts_ms: ts_end,
                    kind,
                    target,
                    context,
                    context_ref,
                    platform,
                });
            };
            let streamed = outcome.ms_played >= encore_core::event::STREAM_THRESHOLD_MS;
            if streamed && !private_session {
                state.remember(track);
            }
            if !outcome.skipped
                && streamed
                && !state.has_saved(track)
                && rng.chance(0.25 * aff.powi(3))
            {
                state.save(track);
                act(InteractionKind::Save, Target::Track(track), rng);
                let artist = catalog.tracks.artist[track as usize];
                if !state.follows(artist) && rng.chance(0.12) {
                    state.favorites.push(artist);
                    act(InteractionKind::Follow, Target::Artist(artist), rng);
                }
            }
            if !outcome.skipped && aff > 0.6 && state.playlists > 0 && rng.chance(0.02) {
                act(InteractionKind::PlaylistAdd, Target::Track(track), rng);
            }
            if outcome.skipped && outcome.ms_played < 5_000 && aff < 0.3 && rng.chance(0.02) {
                act(InteractionKind::Ban, Target::Track(track), rng);
            }

            reason_start = match outcome.reason_end {
                ReasonEnd::Fwdbtn => ReasonStart::Fwdbtn,
                ReasonEnd::Backbtn => ReasonStart::Backbtn,
                _ => ReasonStart::Trackdone,
            };
            t = ts_end + rng.below(1_500) as i64;
            if matches!(outcome.reason_end, ReasonEnd::Endplay | ReasonEnd::Logout) {
                break;
            }
        }
        clock = t;
    }
    state.busy_until_ms = clock;
}

//! The world: catalog + listeners + the clock, advanced one day at a time.

use crate::catalog::Catalog;
use crate::listen::{
    ContextRef, DayInput, Interaction, Play, Target, context_bias, playback_outcome, simulate_day,
};
use crate::rng::{Rng, uuid_string};
use crate::users::{UserProfile, UserState, affinity, generate_users};
use crate::vocab::GENRES;
use encore_core::event::{
    ContextType, InteractionEvent, InteractionKind, ItemType, PlaybackEvent, ReasonEnd,
    ReasonStart, SCHEMA_VERSION,
};
use encore_core::time::{Date, MS_PER_DAY};
use rayon::prelude::*;

/// A change injected into the world from one day on: what monitoring must notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shift {
    /// listeners' taste moves toward one genre: a third of their taste picks go to it
    Taste { genre: u16 },
    /// a new release takes a large share of plays: 8 % of plays go to one track
    Release,
    /// a client release on one platform reports every play with `ms_played` = 0
    ClientBug {
        platform: encore_core::event::Platform,
    },
    /// one country's traffic stops arriving
    Dropout { country: &'static str },
}

/// A [`Shift`] and the day (0-based, from the first simulated day) it starts, at that day's
/// UTC midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftAt {
    pub shift: Shift,
    pub day: u32,
}

impl ShiftAt {
    /// `KIND@DAY`: `taste:GENRE`, `release`, `client-bug:PLATFORM` or `dropout:COUNTRY`, from
    /// day DAY (0 is the first simulated day).
    pub fn parse(s: &str) -> Result<ShiftAt, crate::SimError> {
        Self::parse_text(s).map_err(|message| crate::SimError::InvalidConfig {
            field: "shift",
            message,
        })
    }

    fn parse_text(s: &str) -> Result<ShiftAt, String> {
        use crate::vocab::COUNTRIES;
        let (kind, day) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("{s:?}: expected KIND@DAY, e.g. taste:metal@10"))?;
        let day: u32 = day
            .parse()
            .map_err(|_| format!("{s:?}: the day {day:?} is not a day number (0 is the first)"))?;
        let (name, arg) = kind.split_once(':').unwrap_or((kind, ""));
        let shift = match name {
            "taste" => {
                let genre = GENRES.iter().position(|g| g.name == arg).ok_or_else(|| {
                    let names: Vec<&str> = GENRES.iter().map(|g| g.name).collect();
                    format!("{s:?}: no genre {arg:?} (one of {})", names.join(", "))
                })?;
                Shift::Taste {
                    genre: genre as u16,
                }
            }
            "release" if arg.is_empty() => Shift::Release,
            "client-bug" => Shift::ClientBug {
                platform: encore_core::event::Platform::parse(arg).ok_or_else(|| {
                    let names: Vec<&str> = encore_core::event::Platform::ALL
                        .iter()
                        .map(|p| p.as_str())
                        .collect();
                    format!("{s:?}: no platform {arg:?} (one of {})", names.join(", "))
                })?,
            },
            "dropout" => Shift::Dropout {
                country: COUNTRIES
                    .iter()
                    .map(|c| c.0)
                    .find(|c| *c == arg)
                    .ok_or_else(|| {
                        let names: Vec<&str> = COUNTRIES.iter().map(|c| c.0).collect();
                        format!(
                            "{s:?}: no country {arg:?} in the world (one of {})",
                            names.join(", ")
                        )
                    })?,
            },
            _ => {
                return Err(format!(
                    "{s:?}: expected taste:GENRE, release, client-bug:PLATFORM or dropout:COUNTRY \
                     before @DAY"
                ));
            }
        };
        Ok(ShiftAt { shift, day })
    }

    /// The shift as `parse` reads it.
    pub fn describe(&self) -> String {
        let kind = match &self.shift {
            Shift::Taste { genre } => format!("taste:{}", GENRES[*genre as usize].name),
            Shift::Release => "release".to_owned(),
            Shift::ClientBug { platform } => format!("client-bug:{}", platform.as_str()),
            Shift::Dropout { country } => format!("dropout:{country}"),
        };
        format!("{kind}@{}", self.day)
    }
}

/// What to simulate. The same config always gives the same world, byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub users: usize,
    pub days: u32,
    pub seed: u64,
    /// catalog size; `None` scales with the number of users (5 per user, 1k..1M)
    pub tracks: Option<usize>,
    /// first simulated day (UTC)
    pub start: Date,
    /// Share of playback rows written broken (as buggy clients send them: played past the
    /// track's end, ending before they start, an unknown country, a cut event id, a zero
    /// duration), and the same share sent a second time (the same event id, later in the
    /// day's file). The world itself is the same: only its files carry the faults.
    pub faults: f64,
    /// changes injected from a day on (none: the world's habits hold throughout)
    pub shifts: Vec<ShiftAt>,
}

impl SimConfig {
    pub fn new(users: usize, days: u32, seed: u64) -> SimConfig {
        SimConfig {
            users,
            days,
            seed,
            tracks: None,
            faults: 0.0,
            shifts: Vec::new(),
            start: Date {
                year: 2026,
                month: 1,
                day: 5,
            },
        }
    }

    pub fn n_tracks(&self) -> usize {
        self.tracks
            .unwrap_or((self.users * 5).clamp(1_000, 1_000_000))
    }
}

/// One simulated day: plays and interactions, each sorted by time.
#[derive(Debug, Clone, Default)]
pub struct DayLog {
    pub day: u32,
    pub plays: Vec<Play>,
    pub interactions: Vec<Interaction>,
}

#[derive(Debug)]
pub struct World {
    pub config: SimConfig,
    pub catalog: Catalog,
    pub profiles: Vec<UserProfile>,
    pub states: Vec<UserState>,
    genre_share: Vec<f64>,
    next_day: u32,
}

/// Position bias of a served slate: probability that position `p` (0-based) is looked at.
pub fn examination_probability(position: usize) -> f64 {
    0.95 * 0.85f64.powi(position as i32)
}

/// A listener's reaction to one item of a served slate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlateResponse {
    pub track: u32,
    pub position: u32,
    pub examined: bool,
    pub played: bool,
    pub ms_played: u32,
    pub reason_end: ReasonEnd,
    pub skipped: bool,
    pub saved: bool,
}

impl SlateResponse {
    pub fn streamed(&self) -> bool {
        self.ms_played >= encore_core::event::STREAM_THRESHOLD_MS
    }
}

impl World {
    /// Builds the catalog and the listeners (with the history they bring into the window).
    pub fn new(config: SimConfig) -> World {
        let catalog = Catalog::generate(config.seed, config.n_tracks(), config.start);
        let (profiles, states) = generate_users(config.seed, config.users, &catalog)
            .into_iter()
            .unzip();
        let total: f64 = GENRES.iter().map(|g| g.share).sum();
        let genre_share = GENRES.iter().map(|g| g.share / total).collect();
        World {
            config,
            catalog,
            profiles,
            states,
            genre_share,
            next_day: 0,
        }
    }

    /// Days simulated so far by [`World::simulate_day`].
    pub fn days_done(&self) -> u32 {
        self.next_day
    }

    /// Simulates the next day for every listener (in parallel; the result does not depend on the
    /// number of threads because each listener-day has its own random stream).
    pub fn simulate_day(&mut self) -> DayLog {
        let day = self.next_day;
        let mut states = std::mem::take(&mut self.states);
        let log = self.step(day, &mut states);
        self.states = states;
        self.next_day += 1;
        log
    }

    /// Simulates `day` with the listeners' state held outside the world, so that the world can be
    /// read (to write the previous day) while the next one is simulated.
    pub(crate) fn step(&self, day: u32, states: &mut [UserState]) -> DayLog {
        let date = Date::from_days(self.config.start.to_days() + i64::from(day));
        let day_start_ms = date.to_days() * MS_PER_DAY;
        let weekday = date.weekday();
        let seed = self.config.seed;
        let catalog = &self.catalog;
        let genre_share = &self.genre_share;
        // a shift starts at UTC midnight of its day; a listener's day runs past the UTC day
        // (by their time zone), so the day before it may hold plays after it
        let shifts: Vec<(&Shift, i64)> = self
            .config
            .shifts
            .iter()
            .filter(|s| day + 1 >= s.day)
            .map(|s| (&s.shift, self.shift_start_ms(s.day)))
            .collect();
        let taste_shift = shifts.iter().find_map(|(s, from)| match s {
            Shift::Taste { genre } => Some((*genre, *from)),
            _ => None,
        });
        // the release: one track of the catalog, the same for every day of a world
        let hit = shifts
            .iter()
            .find(|(s, _)| **s == Shift::Release)
            .map(|(_, from)| {
                (
                    Rng::stream(seed, &[9]).below(catalog.tracks.artist.len()) as u32,
                    *from,
                )
            });
        let per_user: Vec<(Vec<Play>, Vec<Interaction>)> = self
            .profiles
            .par_iter()
            .zip(states.par_iter_mut())
            .enumerate()
            .map(|(u, (profile, state))| {
                let mut rng = Rng::stream(seed, &[3, u as u64, u64::from(day)]);
                let input = DayInput {
                    catalog,
                    genre_share,
                    profile,
                    user: u as u32,
                    day_start_ms,
                    weekday,
                    taste_shift,
                    hit,
                };
                let mut plays = Vec::new();
                let mut interactions = Vec::new();
                simulate_day(&input, state, &mut rng, &mut plays, &mut interactions);
                (plays, interactions)
            })
            .collect();
        let (play_lists, interaction_lists): (Vec<_>, Vec<_>) = per_user.into_iter().unzip();
        let mut plays: Vec<Play> = play_lists.into_iter().flatten().collect();
        let mut interactions: Vec<Interaction> = interaction_lists.into_iter().flatten().collect();
        // what reaches the logs: a buggy client's reports, a country's traffic gone (the
        // listeners' habits are unchanged)
        for (shift, from) in &shifts {
            match shift {
                Shift::ClientBug { platform } => plays
                    .iter_mut()
                    .filter(|p| p.platform == *platform && p.ts_start_ms >= *from)
                    .for_each(|p| p.ms_played = 0),
                Shift::Dropout { country } => {
                    let gone = |u: u32| self.profiles[u as usize].country == *country;
                    plays.retain(|p| !(gone(p.user) && p.ts_start_ms >= *from));
                    interactions.retain(|i| !(gone(i.user) && i.ts_ms >= *from));
                }
                Shift::Taste { .. } | Shift::Release => {}
            }
        }
        // stable: a listener's own events keep their order on equal timestamps
        plays.par_sort_by_key(|p| (p.ts_start_ms, p.user));
        interactions.par_sort_by_key(|i| (i.ts_ms, i.user));
        DayLog {
            day,
            plays,
            interactions,
        }
    }

    /// When a shift of day `day` starts: that day's UTC midnight.
    pub fn shift_start_ms(&self, day: u32) -> i64 {
        (self.config.start.to_days() + i64::from(day)) * MS_PER_DAY
    }

    /// Detaches the listeners' evolving state (see [`World::step`]).
    pub(crate) fn take_states(&mut self) -> Vec<UserState> {
        std::mem::take(&mut self.states)
    }

    pub fn user_id(user: u32) -> String {
        format!("u{user}")
    }

    fn context_id(&self, user: u32, context: ContextRef) -> Option<String> {
        match context {
            ContextRef::None | ContextRef::Collection => None,
            ContextRef::Album(a) => Some(Catalog::album_id(a)),
            ContextRef::Artist(a) => Some(Catalog::artist_id(a)),
            ContextRef::Playlist(k) => Some(format!("pl-u{user}-{k}")),
            ContextRef::Radio(g) => Some(format!("radio:{}", self.catalog.genre_name(g))),
            ContextRef::Home => Some("home".to_owned()),
        }
    }

    /// The canonical event of a simulated play.
    pub fn playback_event(&self, play: &Play) -> PlaybackEvent {
        let profile = &self.profiles[play.user as usize];
        let t = play.track as usize;
        PlaybackEvent {
            event_id: uuid_string(play.event_id).into(),
            schema_version: SCHEMA_VERSION,
            user_id: World::user_id(play.user).into(),
            session_id: format!("{:016x}", play.session).into(),
            ts_start_ms: play.ts_start_ms,
            ts_end_ms: play.ts_start_ms + i64::from(play.ms_played),
            item_id: Catalog::track_id(play.track).into(),
            item_type: ItemType::Track,
            item_duration_ms: self.catalog.tracks.duration_ms[t],
            ms_played: play.ms_played,
            reason_start: play.reason_start,
            reason_end: play.reason_end,
            context_type: play.context,
            context_id: self.context_id(play.user, play.context_ref),
            request_id: play.attribution.map(|a| uuid_string(a.request)),
            position: play.attribution.map(|a| a.position),
            propensity: play.attribution.map(|a| a.propensity),
            experiments: Vec::new(),
            shuffle: play.shuffle,
            offline: play.offline,
            private_session: play.private_session,
            taste_excluded: play.taste_excluded,
            platform: play.platform,
            country: profile.country.to_owned(),
            tier: profile.tier,
            consent: profile.consent,
        }
    }

    /// The canonical event of a simulated interaction.
    pub fn interaction_event(&self, i: &Interaction) -> InteractionEvent {
        let profile = &self.profiles[i.user as usize];
        let (item_id, item_type) = match i.target {
            Target::Track(t) => (Catalog::track_id(t), Some(ItemType::Track)),
            Target::Artist(a) => (Catalog::artist_id(a), None),
        };
        InteractionEvent {
            event_id: uuid_string(i.event_id).into(),
            schema_version: SCHEMA_VERSION,
            user_id: World::user_id(i.user).into(),
            session_id: Some(format!("{:016x}", i.session).into()),
            ts_ms: i.ts_ms,
            kind: i.kind,
            item_id: Some(item_id.into()),
            item_type,
            context_type: Some(i.context),
            context_id: self.context_id(i.user, i.context_ref),
            request_id: None,
            position: None,
            propensity: None,
            experiments: Vec::new(),
            count: None,
            query: None,
            value: None,
            platform: i.platform,
            country: profile.country.to_owned(),
            tier: profile.tier,
            consent: profile.consent,
        }
    }

    /// The hidden affinity of `user` for `track` in (0, 1), as the listener is now.
    pub fn affinity(&self, user: u32, track: u32) -> f64 {
        let u = user as usize;
        affinity(&self.catalog, &self.profiles[u], &self.states[u], track)
    }

    /// Simulates how `user` reacts to a served `slate`, top to bottom, from the same hidden
    /// affinities that drive organic listening: each position is looked at with a decaying
    /// probability (position bias), a looked-at item is played with a probability that grows with
    /// affinity, and a play ends as organic plays do. The world is not changed.
    pub fn respond(&self, user: u32, slate: &[u32], rng: &mut Rng) -> Vec<SlateResponse> {
        let u = user as usize;
        let (profile, state) = (&self.profiles[u], &self.states[u]);
        slate
            .iter()
            .enumerate()
            .map(|(pos, &track)| {
                let mut r = SlateResponse {
                    track,
                    position: pos as u32,
                    examined: rng.chance(examination_probability(pos)),
                    played: false,
                    ms_played: 0,
                    reason_end: ReasonEnd::Trackdone,
                    skipped: false,
                    saved: false,
                };
                if !r.examined {
                    return r;
                }
                let aff = affinity(&self.catalog, profile, state, track);
                r.played = rng.chance(0.9 * aff.powf(1.5));
                if r.played {
                    let duration = self.catalog.tracks.duration_ms[track as usize];
                    let outcome = playback_outcome(
                        aff,
                        duration,
                        context_bias(ContextType::Recommendation),
                        profile.skip_bias,
                        rng,
                    );
                    r.ms_played = outcome.ms_played;
                    r.reason_end = outcome.reason_end;
                    r.skipped = outcome.skipped;
                    r.saved =
                        !r.skipped && !state.has_saved(track) && rng.chance(0.25 * aff.powi(3));
                }
                r
            })
            .collect()
    }

    /// [`World::respond`] as events: a play for each item played (one after another from
    /// `ts_ms`, in one session on the listener's main platform) and a save for each item saved.
    pub fn respond_events(
        &self,
        user: u32,
        slate: &[u32],
        ts_ms: i64,
        rng: &mut Rng,
    ) -> (Vec<Play>, Vec<Interaction>) {
        let platform = self.profiles[user as usize].platform;
        let session = rng.next_u64();
        let (mut plays, mut saves) = (Vec::new(), Vec::new());
        let mut ts = ts_ms;
        for r in self
            .respond(user, slate, rng)
            .into_iter()
            .filter(|r| r.played)
        {
            plays.push(Play {
                user,
                track: r.track,
                session,
                event_id: (rng.next_u64(), rng.next_u64()),
                ts_start_ms: ts,
                ms_played: r.ms_played,
                reason_start: ReasonStart::Clickrow,
                reason_end: r.reason_end,
                context: ContextType::Recommendation,
                context_ref: ContextRef::Home,
                shuffle: false,
                offline: false,
                private_session: false,
                taste_excluded: false,
                platform,
                attribution: None,
            });
            ts += i64::from(r.ms_played);
            if r.saved {
                saves.push(Interaction {
                    user,
                    session,
                    event_id: (rng.next_u64(), rng.next_u64()),
                    ts_ms: ts,
                    kind: InteractionKind::Save,
                    target: Target::Track(r.track),
                    context: ContextType::Recommendation,
                    context_ref: ContextRef::Home,
                    platform,
                });
            }
        }
        (plays, saves)
    }
}

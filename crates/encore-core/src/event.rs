//! The canonical events: one [`PlaybackEvent`] per playback (sent when it ends) and one
//! [`InteractionEvent`] per other user action (save, playlist add, follow, ...). Field names are the
//! wire names of DESIGN.md; Spotify's "extended streaming history" export uses the same core fields.

use crate::ids::{EventId, ItemId, SessionId, UserId};
use serde::{Deserialize, Serialize};

/// The event schema version this build writes. Readers accept every version up to this one.
pub const SCHEMA_VERSION: u32 = 1;

/// A play counts as a stream from 30 seconds on (the industry's royalty threshold).
pub const STREAM_THRESHOLD_MS: u32 = 30_000;

/// Declares a wire enum: snake_case names, an `ALL` list and `as_str`, so contracts, Arrow
/// dictionaries and error messages ("expected one of ...") share one source of truth.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        // by hand: a derive does not see the wire names through the macro
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($name::NAMES.iter().copied()))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The wire names, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($wire),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($wire => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// What kind of item was played.
    ItemType { Track = "track", Episode = "episode", Chapter = "chapter" }
);

wire_enum!(
    /// Why a playback started.
    ReasonStart {
        /// the previous item finished
        Trackdone = "trackdone",
        /// the user skipped the previous item
        Fwdbtn = "fwdbtn",
        /// the user went back
        Backbtn = "backbtn",
        /// the user picked the item from a list
        Clickrow = "clickrow",
        /// the user pressed play
        Playbtn = "playbtn",
        /// playback resumed when the app opened
        Appload = "appload",
        /// another device started it
        Remote = "remote",
        /// the previous item failed to play
        Trackerror = "trackerror",
        Unknown = "unknown",
    }
);

wire_enum!(
    /// Why a playback ended.
    ReasonEnd {
        /// the item played to its end
        Trackdone = "trackdone",
        /// the user skipped forward
        Fwdbtn = "fwdbtn",
        /// the user went back
        Backbtn = "backbtn",
        /// the user stopped playback
        Endplay = "endplay",
        /// the user logged out or closed the app
        Logout = "logout",
        /// another device took over
        Remote = "remote",
        Trackerror = "trackerror",
        UnexpectedExit = "unexpected-exit",
        Unknown = "unknown",
    }
);

wire_enum!(
    /// Where a playback was started from.
    ContextType {
        Playlist = "playlist",
        Album = "album",
        Artist = "artist",
        Radio = "radio",
        Search = "search",
        /// the user's own saved tracks
        Collection = "collection",
        /// a surface served by a recommender (attributed through `request_id`)
        Recommendation = "recommendation",
        Unknown = "unknown",
    }
);

wire_enum!(
    /// The client platform.
    Platform {
        Ios = "ios",
        Android = "android",
        Web = "web",
        Desktop = "desktop",
        SmartSpeaker = "smart_speaker",
        Car = "car",
        Tv = "tv",
        Other = "other",
    }
);

wire_enum!(
    /// The subscription tier.
    Tier {
        Free = "free",
        Premium = "premium",
        Family = "family",
        Student = "student",
        /// imported data that does not say
        Unknown = "unknown",
    }
);

wire_enum!(
    /// Kinds of [`InteractionEvent`].
    InteractionKind {
        Save = "save",
        Unsave = "unsave",
        PlaylistAdd = "playlist_add",
        Follow = "follow",
        Ban = "ban",
        Share = "share",
        Impression = "impression",
        Search = "search",
        /// an aggregated play count imported from a dataset that has no individual plays
        PlayCount = "play_count",
        /// an explicit rating (`value`), e.g. stars imported from a ratings dataset
        Rating = "rating",
        /// the listener was served a variant of an experiment (named in `experiments`); the
        /// first one per listener and experiment starts their exposure
        Exposure = "exposure",
    }
);

/// How a playback ended from the listener's point of view (derived, never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipClass {
    /// not ended by the listener skipping
    NotSkipped,
    /// skipped within 5 seconds: the listener rejected the item outright
    Instant,
    /// skipped before the 30-second stream threshold
    Early,
    /// skipped after counting as a stream
    Late,
}

impl SkipClass {
    pub fn is_skip(self) -> bool {
        self != SkipClass::NotSkipped
    }
}

/// One experiment assignment carried by an event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentAssignment {
    pub id: String,
    pub variant: String,
}

/// What the listener allowed. Missing flags mean "not granted".
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Consent {
    #[serde(default)]
    pub personalization: bool,
    #[serde(default)]
    pub analytics: bool,
}

impl Consent {
    pub const ALL_GRANTED: Consent = Consent {
        personalization: true,
        analytics: true,
    };
}

/// One playback, sent when it ends.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaybackEvent {
    /// UUID; the idempotency key
    pub event_id: EventId,
    pub schema_version: u32,
    pub user_id: UserId,
    pub session_id: SessionId,
    /// UTC epoch ms when playback started
    pub ts_start_ms: i64,
    /// UTC epoch ms when playback ended
    pub ts_end_ms: i64,
    pub item_id: ItemId,
    pub item_type: ItemType,
    pub item_duration_ms: u32,
    pub ms_played: u32,
    pub reason_start: ReasonStart,
    pub reason_end: ReasonEnd,
    pub context_type: ContextType,
    #[serde(default)]
    pub context_id: Option<String>,
    /// the served recommendation this play is attributed to
    #[serde(default)]
    pub request_id: Option<String>,
    /// 0-based position of the item in the served slate
    #[serde(default)]
    pub position: Option<u32>,
    /// probability with which the serving policy showed the item there (off-policy evaluation)
    #[serde(default)]
    pub propensity: Option<f64>,
    #[serde(default)]
    pub experiments: Vec<ExperimentAssignment>,
    #[serde(default)]
    pub shuffle: bool,
    #[serde(default)]
    pub offline: bool,
    #[serde(default)]
    pub private_session: bool,
    /// the listener excluded this context from their taste profile
    #[serde(default)]
    pub taste_excluded: bool,
    pub platform: Platform,
    /// ISO-3166 alpha-2, never derived from an IP in storage
    pub country: String,
    pub tier: Tier,
    #[serde(default)]
    pub consent: Consent,
}

impl PlaybackEvent {
    /// At least 30 seconds played.
    pub fn is_stream(&self) -> bool {
        self.ms_played >= STREAM_THRESHOLD_MS
    }

    pub fn skip_class(&self) -> SkipClass {
        let skipped = matches!(self.reason_end, ReasonEnd::Fwdbtn | ReasonEnd::Backbtn)
            && self.ms_played < self.item_duration_ms;
        match (skipped, self.ms_played) {
            (false, _) => SkipClass::NotSkipped,
            (true, ms) if ms < 5_000 => SkipClass::Instant,
            (true, ms) if ms < STREAM_THRESHOLD_MS => SkipClass::Early,
            (true, _) => SkipClass::Late,
        }
    }

    /// Whether the play may feed anything personal about the listener (personal features,
    /// the recent plays that fold-in serves from): personalization consent, not a private
    /// session.
    pub fn may_personalize(&self) -> bool {
        !self.private_session && self.consent.personalization
    }

    /// Whether the play may shape the listener's taste profile (training data, fold-in).
    pub fn counts_for_taste(&self) -> bool {
        !self.private_session && !self.taste_excluded && self.consent.personalization
    }
}

/// Any non-playback action; shares the envelope of [`PlaybackEvent`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionEvent {
    pub event_id: EventId,
    pub schema_version: u32,
    pub user_id: UserId,
    #[serde(default)]
    pub session_id: Option<SessionId>,
    pub ts_ms: i64,
    pub kind: InteractionKind,
    /// the track, album, artist or playlist acted on (absent for searches)
    #[serde(default)]
    pub item_id: Option<ItemId>,
    #[serde(default)]
    pub item_type: Option<ItemType>,
    #[serde(default)]
    pub context_type: Option<ContextType>,
    #[serde(default)]
    pub context_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub position: Option<u32>,
    #[serde(default)]
    pub propensity: Option<f64>,
    #[serde(default)]
    pub experiments: Vec<ExperimentAssignment>,
    /// aggregated count for [`InteractionKind::PlayCount`]
    #[serde(default)]
    pub count: Option<u64>,
    /// search text for [`InteractionKind::Search`]
    #[serde(default)]
    pub query: Option<String>,
    /// the rating for [`InteractionKind::Rating`]
    #[serde(default)]
    pub value: Option<f64>,
    pub platform: Platform,
    pub country: String,
    pub tier: Tier,
    #[serde(default)]
    pub consent: Consent,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(ms_played: u32, reason_end: ReasonEnd) -> PlaybackEvent {
        PlaybackEvent {
            event_id: "e".into(),
            schema_version: SCHEMA_VERSION,
            user_id: "u".into(),
            session_id: "s".into(),
            ts_start_ms: 0,
            ts_end_ms: i64::from(ms_played),
            item_id: "t".into(),
            item_type: ItemType::Track,
            item_duration_ms: 200_000,
            ms_played,
            reason_start: ReasonStart::Clickrow,
            reason_end,
            context_type: ContextType::Album,
            context_id: None,
            request_id: None,
            position: None,
            propensity: None,
            experiments: vec![],
            shuffle: false,
            offline: false,
            private_session: false,
            taste_excluded: false,
            platform: Platform::Ios,
            country: "SE".into(),
            tier: Tier::Premium,
            consent: Consent::ALL_GRANTED,
        }
    }

    #[test]
    fn skip_classes() {
        assert_eq!(
            play(2_000, ReasonEnd::Fwdbtn).skip_class(),
            SkipClass::Instant
        );
        assert_eq!(
            play(12_000, ReasonEnd::Fwdbtn).skip_class(),
            SkipClass::Early
        );
        assert_eq!(
            play(90_000, ReasonEnd::Backbtn).skip_class(),
            SkipClass::Late
        );
        assert_eq!(
            play(12_000, ReasonEnd::Endplay).skip_class(),
            SkipClass::NotSkipped
        );
        assert_eq!(
            play(200_000, ReasonEnd::Fwdbtn).skip_class(),
            SkipClass::NotSkipped
        );
        assert!(play(30_000, ReasonEnd::Fwdbtn).is_stream());
        assert!(!play(29_999, ReasonEnd::Trackdone).is_stream());
    }

    #[test]
    fn wire_names_round_trip() {
        let event = play(45_000, ReasonEnd::UnexpectedExit);
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""reason_end":"unexpected-exit""#), "{json}");
        let back: PlaybackEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(*p));
        }
    }

    #[test]
    fn optional_fields_default_when_absent() {
        let json = r#"{"event_id":"e","schema_version":1,"user_id":"u","session_id":"s",
            "ts_start_ms":0,"ts_end_ms":1,"item_id":"t","item_type":"episode",
            "item_duration_ms":10,"ms_played":1,"reason_start":"playbtn","reason_end":"endplay",
            "context_type":"search","platform":"web","country":"BR","tier":"free"}"#;
        let event: PlaybackEvent = serde_json::from_str(json).unwrap();
        assert!(event.experiments.is_empty());
        assert!(!event.consent.personalization);
        assert!(!event.counts_for_taste());
    }
}

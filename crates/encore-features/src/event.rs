//! Playback events as features see them: a time, a few numbers, flags, and categorical values as
//! stable 64-bit hashes (so the offline and the persisted online computations agree on
//! identity without sharing an interner).

use encore_core::event::PlaybackEvent;
use serde::{Deserialize, Serialize};

/// Numeric fields.
pub const NUMERIC: [&str; 3] = ["ms_played", "item_duration_ms", "completion"];
/// Boolean fields.
pub const FLAGS: [&str; 4] = ["stream", "skip", "shuffle", "offline"];
/// Categorical fields.
pub const CATEGORICAL: [&str; 7] = [
    "item_id",
    "artist_id",
    "platform",
    "country",
    "context_type",
    "reason_start",
    "reason_end",
];

/// The flag bit of [`Raw::personal`] (after the [`FLAGS`] bits; not a filter field).
const PERSONAL: u8 = 1 << 4;

/// One event: `ts` is when it became known (the play's end), in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureEvent {
    pub ts: i64,
    pub num: [f64; 3],
    pub flags: u8,
    pub cat: [u64; 7],
}

/// FNV-1a of a categorical value.
pub fn hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Whether a play was skipped: ended by the forward or back button before its end.
pub fn is_skip(reason_end: &str, ms_played: u32, item_duration_ms: u32) -> bool {
    matches!(reason_end, "fwdbtn" | "backbtn") && ms_played < item_duration_ms
}

/// The raw values of one playback event that features read.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    /// the listener allowed personalization and was not in a private session: only then does
    /// the play count for features keyed by the listener
    pub personal: bool,
    pub ts_end_ms: i64,
    pub ms_played: u32,
    pub item_duration_ms: u32,
    pub shuffle: bool,
    pub offline: bool,
    pub item_id: &'a str,
    pub artist_id: Option<&'a str>,
    pub platform: &'a str,
    pub country: &'a str,
    pub context_type: &'a str,
    pub reason_start: &'a str,
    pub reason_end: &'a str,
}

impl FeatureEvent {
    pub fn new(r: &Raw<'_>) -> FeatureEvent {
        let mut flags = 0u8;
        if r.ms_played >= encore_core::event::STREAM_THRESHOLD_MS {
            flags |= 1;
        }
        if is_skip(r.reason_end, r.ms_played, r.item_duration_ms) {
            flags |= 2;
        }
        if r.shuffle {
            flags |= 4;
        }
        if r.offline {
            flags |= 8;
        }
        if r.personal {
            flags |= PERSONAL;
        }
        let completion = if r.item_duration_ms > 0 {
            (f64::from(r.ms_played) / f64::from(r.item_duration_ms)).min(1.0)
        } else {
            0.0
        };
        FeatureEvent {
            ts: r.ts_end_ms,
            num: [
                f64::from(r.ms_played),
                f64::from(r.item_duration_ms),
                completion,
            ],
            flags,
            cat: [
                hash(r.item_id),
                r.artist_id.map_or(0, hash),
                hash(r.platform),
                hash(r.country),
                hash(r.context_type),
                hash(r.reason_start),
                hash(r.reason_end),
            ],
        }
    }

    pub fn from_playback(e: &PlaybackEvent, artist_id: Option<&str>) -> FeatureEvent {
        FeatureEvent::new(&Raw {
            personal: e.may_personalize(),
            ts_end_ms: e.ts_end_ms,
            ms_played: e.ms_played,
            item_duration_ms: e.item_duration_ms,
            shuffle: e.shuffle,
            offline: e.offline,
            item_id: e.item_id.as_str(),
            artist_id,
            platform: e.platform.as_str(),
            country: &e.country,
            context_type: e.context_type.as_str(),
            reason_start: e.reason_start.as_str(),
            reason_end: e.reason_end.as_str(),
        })
    }

    pub fn flag(&self, i: usize) -> bool {
        self.flags & (1 << i) != 0
    }

    /// Whether the play may count for a feature keyed by its listener.
    pub fn is_personal(&self) -> bool {
        self.flags & PERSONAL != 0
    }
}

/// One event with the fields entity keys are made of.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub user_id: String,
    pub item_id: String,
    pub artist_id: Option<String>,
    pub event: FeatureEvent,
}

//! A person's Spotify streaming history, in both shapes Spotify exports it:
//!
//! - **account data** (`StreamingHistory*.json`, `StreamingHistory_music_*.json`,
//!   `StreamingHistory_podcast_*.json`): `endTime` (UTC, to the minute), `msPlayed`, and
//!   `artistName` + `trackName`, or `podcastName` + `episodeName`;
//! - **extended streaming history** (`Streaming_History_Audio_*.json`, `..._Video_*.json`):
//!   `ts` (UTC, end of play), `ms_played`, `spotify_track_uri` with the track, album artist and
//!   album names, `spotify_episode_uri` with `episode_name` and `episode_show_name`, audiobook
//!   chapters, `reason_start`, `reason_end`, `skipped`, `shuffle`, `offline`, `incognito_mode`,
//!   `platform`, `conn_country`. IP addresses are never read into encore.
//!
//! Items are named by their Spotify URI (`spotify:track:...`); a play the account-data shape
//! gives only by name takes the URI an extended row of the same names gives (in this import or
//! an earlier one), else an id made from the names. Names go into the catalog (source
//! `spotify-history`: tracks, artists, albums, episodes and chapters as items).
//!
//! One play is one event whatever shape it came in: its id is made from the listener, the
//! minute it ended, the creator and title names and the time played, which both shapes carry.
//! Of a play in both shapes the extended row is kept (it knows the incognito flag, the skip,
//! the reasons and the country), so import both shapes in one command, or the extended one
//! first.
//!
//! A play is a skip when `skipped` is true or it ended with the forward or back button. The
//! exports carry no duration, so a play's duration is stored as its lower bound: the time
//! played, and one millisecond more for a skip (the item went on after it).
//!
//! Rows that cannot be a play (no end time, no time played, nothing named) are left out and
//! counted by reason, with the first few named by file and entry.

use crate::catalog::CatalogLoad;
use crate::error::IngestError;
use crate::import::{ImportReport, content_uuid, parse_utc, platform_of};
use crate::ingest::Ingestor;
use crate::table::Table;
use encore_core::arrow::playback_batch;
use encore_core::catalog::{Album, Artist, Item, Track};
use encore_core::event::{
    Consent, ContextType, ItemType, Platform, PlaybackEvent, ReasonEnd, ReasonStart,
    SCHEMA_VERSION, Tier,
};
use encore_core::time::MS_PER_MINUTE;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The catalog source the imports share.
pub const SOURCE: &str = "spotify-history";

/// How many dropped rows the report names.
const EXAMPLES: usize = 10;

/// Whether `head` (the start of a file) looks like a Spotify streaming-history export rather
/// than encore events: a JSON array of objects with Spotify's field names.
pub fn looks_like_spotify_export(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let has = |k: &str| text.contains(&format!("\"{k}\""));
    text.trim_start().starts_with('[')
        && (has("msPlayed") || has("ms_played"))
        && (has("endTime") || has("ts"))
        && [
            "trackName",
            "episodeName",
            "podcastName",
            "master_metadata_track_name",
            "spotify_track_uri",
            "episode_name",
        ]
        .iter()
        .any(|k| has(k))
}

/// One row read, before it becomes an event.
struct Play {
    end_ms: i64,
    ms_played: u32,
    /// artist, show or audiobook (may be empty)
    creator: String,
    /// track, episode or chapter (may be empty)
    title: String,
    album: Option<String>,
    uri: Option<String>,
    item_type: ItemType,
    skipped: bool,
    reason_start: ReasonStart,
    reason_end: ReasonEnd,
    shuffle: bool,
    offline: bool,
    private: bool,
    platform: Platform,
    country: String,
    /// the file's index, for the id's occurrence count
    file: usize,
    /// from the extended shape, which knows more (incognito, skips, reasons, country)
    extended: bool,
}

fn text(row: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| row.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_owned)
}

fn flag(row: &Map<String, Value>, key: &str) -> bool {
    row.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Reads one row, or says why it is not a play.
fn play(row: &Map<String, Value>, file: usize) -> Result<Play, &'static str> {
    let extended = row.contains_key("ts");
    let end = if extended {
        text(row, &["ts"])
    } else {
        text(row, &["endTime"])
    };
    let end_ms = end.as_deref().and_then(parse_utc).ok_or("no end time")?;
    let ms = row
        .get(if extended { "ms_played" } else { "msPlayed" })
        .and_then(Value::as_u64)
        .ok_or("no time played")?;
    let ms_played = u32::try_from(ms).unwrap_or(u32::MAX);
    let (item_type, uri, creator, title, album) =
        if let Some(uri) = text(row, &["spotify_track_uri"]) {
            (
                ItemType::Track,
                Some(uri),
                text(row, &["master_metadata_album_artist_name"]),
                text(row, &["master_metadata_track_name"]),
                text(row, &["master_metadata_album_album_name"]),
            )
        } else if let Some(uri) = text(row, &["spotify_episode_uri"]) {
            (
                ItemType::Episode,
                Some(uri),
                text(row, &["episode_show_name"]),
                text(row, &["episode_name"]),
                None,
            )
        } else if let Some(uri) = text(row, &["audiobook_chapter_uri"]) {
            (
                ItemType::Chapter,
                Some(uri),
                text(row, &["audiobook_title"]),
                text(row, &["audiobook_chapter_title"]),
                None,
            )
        } else if row.contains_key("podcastName") || row.contains_key("episodeName") {
            (
                ItemType::Episode,
                None,
                text(row, &["podcastName"]),
                text(row, &["episodeName"]),
                None,
            )
        } else {
            (
                ItemType::Track,
                None,
                text(row, &["artistName", "master_metadata_album_artist_name"]),
                text(row, &["trackName", "master_metadata_track_name"]),
                None,
            )
        };
    if uri.is_none() && creator.is_none() && title.is_none() {
        return Err("names no track, episode or chapter");
    }
    let reason_end = text(row, &["reason_end"])
        .as_deref()
        .and_then(ReasonEnd::parse)
        .unwrap_or(ReasonEnd::Unknown);
    let by_button = matches!(reason_end, ReasonEnd::Fwdbtn | ReasonEnd::Backbtn);
    Ok(Play {
        end_ms,
        ms_played,
        creator: creator.unwrap_or_default(),
        title: title.unwrap_or_default(),
        album,
        uri,
        item_type,
        skipped: row.get("skipped").and_then(Value::as_bool) == Some(true) || by_button,
        reason_start: text(row, &["reason_start"])
            .as_deref()
            .and_then(ReasonStart::parse)
            .unwrap_or(ReasonStart::Unknown),
        reason_end,
        shuffle: flag(row, "shuffle"),
        offline: flag(row, "offline"),
        private: flag(row, "incognito_mode"),
        platform: text(row, &["platform"]).map_or(Platform::Other, |p| platform_of(&p)),
        country: text(row, &["conn_country"])
            .filter(|c| crate::contract::is_country(c))
            .unwrap_or_else(|| "ZZ".into()),
        file,
        extended,
    })
}

/// The names of a play as one key: lower-cased creator and title.
fn names(creator: &str, title: &str) -> (String, String) {
    (creator.to_lowercase(), title.to_lowercase())
}

fn short_hash(parts: &[&str]) -> String {
    content_uuid(&parts.join("\u{1f}")).replace('-', "")[..16].to_owned()
}

fn artist_id(name: &str) -> String {
    format!("spotify-artist:{}", short_hash(&[&name.to_lowercase()]))
}

/// Reads `files` (either shape, in any order) and ingests their plays as `user`'s.
pub fn spotify_history(
    ingestor: &Ingestor,
    files: &[PathBuf],
    user: &str,
) -> Result<ImportReport, IngestError> {
    let mut plays = Vec::new();
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let mut examples = Vec::new();
    for (f, path) in files.iter().enumerate() {
        let rows = read_rows(path)?;
        for (i, row) in rows.iter().enumerate() {
            let parsed = row
                .as_object()
                .ok_or("is not a JSON object")
                .and_then(|r| play(r, f));
            match parsed {
                Ok(p) => plays.push(p),
                Err(reason) => {
                    *dropped.entry(reason.to_owned()).or_default() += 1;
                    if examples.len() < EXAMPLES {
                        examples.push(format!("{}: entry {i}: {reason}", path.display()));
                    }
                }
            }
        }
    }

    // what a name means: the URI an extended row (now or in an earlier import) gave it
    let mut load = ingestor.catalog().source_load(SOURCE)?;
    let mut uri_of: HashMap<(String, String), String> = HashMap::new();
    let artist_names: HashMap<&str, &str> = load
        .artists
        .iter()
        .map(|a| (a.artist_id.0.as_str(), a.name.as_str()))
        .collect();
    for t in load
        .tracks
        .iter()
        .filter(|t| t.track_id.0.starts_with("spotify:"))
    {
        if let Some(artist) = artist_names.get(t.artist_id.0.as_str()) {
            uri_of.insert(names(artist, &t.title), t.track_id.0.clone());
        }
    }
    for p in &plays {
        if let Some(uri) = &p.uri
            && !(p.creator.is_empty() && p.title.is_empty())
        {
            uri_of.insert(names(&p.creator, &p.title), uri.clone());
        }
    }

    // of one play in both shapes the extended row is stored, the other found a duplicate
    plays.sort_by_key(|p| !p.extended);
    let mut catalog = Entities::from(std::mem::take(&mut load));
    let mut occurrences: HashMap<(usize, String), Vec<i64>> = HashMap::new();
    let mut events = Vec::with_capacity(plays.len());
    for p in &plays {
        let key_names = names(&p.creator, &p.title);
        let item_id = p
            .uri
            .clone()
            .or_else(|| uri_of.get(&key_names).cloned())
            .unwrap_or_else(|| {
                format!("spotify-name:{}", short_hash(&[&key_names.0, &key_names.1]))
            });
        catalog.add(p, &item_id);
        let minute = p.end_ms.div_euclid(MS_PER_MINUTE) * MS_PER_MINUTE;
        let what = if p.creator.is_empty() && p.title.is_empty() {
            item_id.clone()
        } else {
            format!("{}\u{1f}{}", key_names.0, key_names.1)
        };
        // a replay ending in the same minute is another play, with its own id
        let base = format!("spotify/{user}/{minute}/{what}/{}", p.ms_played);
        // (rows of the same second are one play listed twice)
        let ends = occurrences.entry((p.file, base.clone())).or_default();
        let n = match ends.iter().position(|&e| e == p.end_ms) {
            Some(n) => n,
            None => {
                ends.push(p.end_ms);
                ends.len() - 1
            }
        };
        let key = if n == 0 { base } else { format!("{base}#{n}") };
        let (reason_end, duration) = if p.skipped {
            let end = if matches!(p.reason_end, ReasonEnd::Backbtn) {
                ReasonEnd::Backbtn
            } else {
                ReasonEnd::Fwdbtn
            };
            (end, p.ms_played.saturating_add(1))
        } else {
            (p.reason_end, p.ms_played.max(1))
        };
        events.push(PlaybackEvent {
            event_id: content_uuid(&key).into(),
            schema_version: SCHEMA_VERSION,
            user_id: user.into(),
            session_id: format!("{user}-{}", p.end_ms / (30 * MS_PER_MINUTE)).into(),
            ts_start_ms: p.end_ms - i64::from(p.ms_played),
            ts_end_ms: p.end_ms,
            item_id: item_id.into(),
            item_type: p.item_type,
            item_duration_ms: duration,
            ms_played: p.ms_played,
            reason_start: p.reason_start,
            reason_end,
            context_type: ContextType::Unknown,
            context_id: None,
            request_id: None,
            position: None,
            propensity: None,
            experiments: Vec::new(),
            shuffle: p.shuffle,
            offline: p.offline,
            private_session: p.private,
            taste_excluded: false,
            platform: p.platform,
            country: p.country.clone(),
            tier: Tier::Unknown,
            consent: Consent::ALL_GRANTED,
        });
    }
    let counts = ingestor
        .catalog_mut()
        .replace(SOURCE, &catalog.into_load())?;
    let batch = playback_batch(&events).map_err(|e| IngestError::Internal {
        message: e.to_string(),
    })?;
    let label = files
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let ingest = ingestor.ingest_batch(Table::Playback, batch, &label)?;
    Ok(ImportReport {
        source: SOURCE.into(),
        users: 1,
        rows: events.len() as u64,
        dropped,
        dropped_examples: examples,
        catalog: counts,
        ingest,
    })
}

fn read_rows(path: &Path) -> Result<Vec<Value>, IngestError> {
    let bytes = std::fs::read(path).map_err(IngestError::io(path))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| IngestError::Malformed {
        path: path.to_path_buf(),
        message: format!("expected a JSON array of plays: {e}"),
    })?;
    match value {
        Value::Array(rows) => Ok(rows),
        _ => Err(IngestError::Malformed {
            path: path.to_path_buf(),
            message: "expected a JSON array of plays".into(),
        }),
    }
}

/// The source's catalog being extended, by id (a later row's names win).
struct Entities {
    tracks: BTreeMap<String, Track>,
    artists: BTreeMap<String, Artist>,
    albums: BTreeMap<String, Album>,
    items: BTreeMap<String, Item>,
    rest: CatalogLoad,
}

impl From<CatalogLoad> for Entities {
    fn from(mut load: CatalogLoad) -> Entities {
        Entities {
            tracks: std::mem::take(&mut load.tracks)
                .into_iter()
                .map(|t| (t.track_id.0.clone(), t))
                .collect(),
            artists: std::mem::take(&mut load.artists)
                .into_iter()
                .map(|a| (a.artist_id.0.clone(), a))
                .collect(),
            albums: std::mem::take(&mut load.albums)
                .into_iter()
                .map(|a| (a.album_id.0.clone(), a))
                .collect(),
            items: std::mem::take(&mut load.items)
                .into_iter()
                .map(|i| (i.item_id.0.clone(), i))
                .collect(),
            rest: load,
        }
    }
}

impl Entities {
    fn add(&mut self, p: &Play, item_id: &str) {
        match p.item_type {
            ItemType::Track => {
                let artist = (!p.creator.is_empty()).then(|| artist_id(&p.creator));
                if let Some(id) = &artist {
                    self.artists.entry(id.clone()).or_insert_with(|| Artist {
                        artist_id: id.clone().into(),
                        name: p.creator.clone(),
                        genres: Vec::new(),
                        tags: Vec::new(),
                        popularity: 0,
                    });
                }
                let album = p.album.as_ref().map(|title| {
                    let id = format!(
                        "spotify-album:{}",
                        short_hash(&[&p.creator.to_lowercase(), &title.to_lowercase()])
                    );
                    self.albums.entry(id.clone()).or_insert_with(|| Album {
                        album_id: id.clone().into(),
                        artist_id: artist.clone().unwrap_or_default().into(),
                        title: title.clone(),
                        album_type: String::new(),
                        release_date: String::new(),
                        track_count: 0,
                    });
                    id
                });
                let known = self.tracks.get(item_id);
                // a row with more names than the stored record improves it
                if known.is_none_or(|t| {
                    t.title.is_empty() || (t.album_id.0.is_empty() && album.is_some())
                }) {
                    self.tracks.insert(
                        item_id.to_owned(),
                        Track {
                            track_id: item_id.to_owned().into(),
                            album_id: album.unwrap_or_default().into(),
                            artist_id: artist.unwrap_or_default().into(),
                            title: p.title.clone(),
                            track_number: 0,
                            duration_ms: 0,
                            release_date: String::new(),
                            explicit: false,
                            popularity: 0,
                        },
                    );
                }
            }
            ItemType::Episode | ItemType::Chapter => {
                let title = match (p.title.is_empty(), p.creator.is_empty()) {
                    (false, false) => format!("{} ({})", p.title, p.creator),
                    (false, true) => p.title.clone(),
                    _ => p.creator.clone(),
                };
                let kind = if p.item_type == ItemType::Episode {
                    "episode"
                } else {
                    "chapter"
                };
                let known = self.items.get(item_id);
                if known.is_none_or(|i| i.title.is_empty()) {
                    self.items.insert(
                        item_id.to_owned(),
                        Item {
                            item_id: item_id.to_owned().into(),
                            kind: kind.into(),
                            title,
                            release_date: None,
                            genres: Vec::new(),
                        },
                    );
                }
            }
        }
    }

    fn into_load(self) -> CatalogLoad {
        CatalogLoad {
            tracks: self.tracks.into_values().collect(),
            artists: self.artists.into_values().collect(),
            albums: self.albums.into_values().collect(),
            items: self.items.into_values().collect(),
            ..self.rest
        }
    }
}

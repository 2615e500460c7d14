//! Adapters for public dataset formats. Each reads the files as published (Latin-1 text and CRLF
//! line ends included), stores the catalog under its own source name, and sends the interactions
//! or plays through the normal ingest path (contract, dedup, log). Event ids are derived from the
//! rows' content, so importing the same data twice stores nothing new.
//!
//! Aggregated play counts (HetRec) are stored as `play_count` interactions with a `count`, not as
//! made-up individual plays; ratings (MovieLens) as `rating` interactions with a `value`.

use crate::catalog::{CatalogCounts, CatalogLoad};
use crate::error::IngestError;
use crate::ingest::{IngestSummary, Ingestor};
use crate::table::Table;
use encore_core::arrow::interaction_batch;
use encore_core::catalog::{Artist, Item, Tag, TagAssignment};
use encore_core::event::{
    Consent, InteractionEvent, InteractionKind, Platform, SCHEMA_VERSION, Tier,
};
use encore_core::time::{Date, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;

/// HetRec publishes no time for its play counts: they are stamped with the dataset's release.
pub const HETREC_RELEASE: &str = "2011-05-01";

/// What an import read and stored.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub source: String,
    pub users: u64,
    /// the interaction or play rows read from the dataset
    pub rows: u64,
    /// rows left out before ingest, by reason (e.g. a play of nothing the export names)
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// the first rows left out: `file: entry N: reason`
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_examples: Vec<String>,
    pub catalog: CatalogCounts,
    pub ingest: IngestSummary,
}

/// A UUID (version 8, RFC 9562 "custom") from the SHA-256 of `key`: the same row always gets
/// the same event id.
pub fn content_uuid(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Decodes ISO-8859-1: every byte is the code point of the same value.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn read(path: &Path) -> Result<Vec<u8>, IngestError> {
    std::fs::read(path).map_err(IngestError::io(path))
}

/// Lines after the header line.
fn skip_header(text: &str) -> Vec<(usize, &str)> {
    lines(text).skip(1).collect()
}

/// Lines without their `\n` / `\r\n`, skipping empty ones, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.is_empty())
}

fn field<'a>(
    parts: &[&'a str],
    i: usize,
    path: &Path,
    line: usize,
    name: &str,
) -> Result<&'a str, IngestError> {
    parts.get(i).copied().ok_or_else(|| IngestError::Malformed {
        path: path.to_path_buf(),
        message: format!("line {line}: missing column {} (`{name}`)", i + 1),
    })
}

fn int(parts: &[&str], i: usize, path: &Path, line: usize, name: &str) -> Result<i64, IngestError> {
    let s = field(parts, i, path, line, name)?;
    s.trim().parse().map_err(|_| IngestError::Malformed {
        path: path.to_path_buf(),
        message: format!("line {line}: column `{name}` is {s:?}, expected an integer"),
    })
}

fn imported_interaction(
    user: String,
    item: String,
    ts_ms: i64,
    kind: InteractionKind,
    key: &str,
) -> InteractionEvent {
    InteractionEvent {
        event_id: content_uuid(key).into(),
        schema_version: SCHEMA_VERSION,
        user_id: user.into(),
        session_id: None,
        ts_ms,
        kind,
        item_id: Some(item.into()),
        item_type: None,
        context_type: None,
        context_id: None,
        request_id: None,
        position: None,
        propensity: None,
        experiments: Vec::new(),
        count: None,
        query: None,
        value: None,
        platform: Platform::Other,
        country: "ZZ".into(),
        tier: Tier::Unknown,
        // research datasets were collected for recommendation research
        consent: Consent::ALL_GRANTED,
    }
}

/// Sends imported interactions through the ingest path, locating rows in `path`.
fn ingest_interactions(
    ingestor: &Ingestor,
    events: &[InteractionEvent],
    path: &Path,
) -> Result<IngestSummary, IngestError> {
    let batch = interaction_batch(events).map_err(|e| IngestError::Internal {
        message: e.to_string(),
    })?;
    ingestor.ingest_batch(Table::Interaction, batch, &path.display().to_string())
}

/// HetRec 2011 Last.fm 2K: `artists.dat`, `tags.dat` (Latin-1), `user_artists.dat` (play
/// counts), `user_taggedartists.dat` (tag assignments with dates).
pub fn hetrec_lastfm(ingestor: &Ingestor, dir: &Path) -> Result<ImportReport, IngestError> {
    let file = |name: &str| dir.join(name);

    let mut load = CatalogLoad::default();
    let path = file("artists.dat");
    let text = String::from_utf8(read(&path)?).unwrap_or_else(|e| latin1(e.as_bytes()));
    for (line, l) in skip_header(&text) {
        let parts: Vec<&str> = l.split('\t').collect();
        let id = int(&parts, 0, &path, line, "id")?;
        load.artists.push(Artist {
            artist_id: format!("lfm-ar{id}").into(),
            name: field(&parts, 1, &path, line, "name")?.to_owned(),
            genres: Vec::new(),
            tags: Vec::new(),
            popularity: 0,
        });
    }
    let path = file("tags.dat");
    let text = latin1(&read(&path)?);
    for (line, l) in skip_header(&text) {
        let parts: Vec<&str> = l.split('\t').collect();
        let id = int(&parts, 0, &path, line, "tagID")?;
        load.tags.push(Tag {
            tag_id: format!("lfm-tag{id}"),
            name: field(&parts, 1, &path, line, "tagValue")?.to_owned(),
        });
    }
    let path = file("user_taggedartists.dat");
    let text = latin1(&read(&path)?);
    for (line, l) in skip_header(&text) {
        let p: Vec<&str> = l.split('\t').collect();
        let (user, artist, tag) = (
            int(&p, 0, &path, line, "userID")?,
            int(&p, 1, &path, line, "artistID")?,
            int(&p, 2, &path, line, "tagID")?,
        );
        let (day, month, year) = (
            int(&p, 3, &path, line, "day")?,
            int(&p, 4, &path, line, "month")?,
            int(&p, 5, &path, line, "year")?,
        );
        let date = Date::parse(&format!("{year:04}-{month:02}-{day:02}")).map(|d| d.to_string());
        load.tag_assignments.push(TagAssignment {
            artist_id: format!("lfm-ar{artist}").into(),
            tag_id: format!("lfm-tag{tag}"),
            user_id: Some(format!("lfm-u{user}").into()),
            date,
        });
    }
    let catalog = ingestor.catalog_mut().replace("hetrec-lastfm", &load)?;

    let path = file("user_artists.dat");
    let text = latin1(&read(&path)?);
    let ts = Date::parse(HETREC_RELEASE).map_or(0, Date::to_epoch_ms);
    let mut events = Vec::new();
    let mut users = HashSet::new();
    for (line, l) in skip_header(&text) {
        let p: Vec<&str> = l.split('\t').collect();
        let (user, artist, weight) = (
            int(&p, 0, &path, line, "userID")?,
            int(&p, 1, &path, line, "artistID")?,
            int(&p, 2, &path, line, "weight")?,
        );
        users.insert(user);
        let mut e = imported_interaction(
            format!("lfm-u{user}"),
            format!("lfm-ar{artist}"),
            ts,
            InteractionKind::PlayCount,
            &format!("hetrec-lastfm/user_artists/{user}/{artist}"),
        );
        e.count = u64::try_from(weight).ok();
        events.push(e);
    }
    let ingest = ingest_interactions(ingestor, &events, &path)?;
    Ok(ImportReport {
        source: "hetrec-lastfm".into(),
        users: users.len() as u64,
        rows: events.len() as u64,
        catalog,
        ingest,
        dropped: Default::default(),
        dropped_examples: Vec::new(),
    })
}

/// MovieLens 100K: `u.data` (ratings with Unix-second timestamps) and `u.item` (Latin-1, `|`).
pub fn movielens(ingestor: &Ingestor, dir: &Path) -> Result<ImportReport, IngestError> {
    const GENRES: [&str; 19] = [
        "unknown",
        "action",
        "adventure",
        "animation",
        "children's",
        "comedy",
        "crime",
        "documentary",
        "drama",
        "fantasy",
        "film-noir",
        "horror",
        "musical",
        "mystery",
        "romance",
        "sci-fi",
        "thriller",
        "war",
        "western",
    ];
    let mut load = CatalogLoad::default();
    let path = dir.join("u.item");
    let text = latin1(&read(&path)?);
    for (line, l) in lines(&text) {
        let p: Vec<&str> = l.split('|').collect();
        let id = int(&p, 0, &path, line, "movie_id")?;
        let release = field(&p, 2, &path, line, "release_date")?;
        let genres = GENRES
            .iter()
            .enumerate()
            .filter(|(g, _)| p.get(5 + g).is_some_and(|f| *f == "1"))
            .map(|(_, name)| (*name).to_owned())
            .collect();
        load.items.push(Item {
            item_id: format!("ml-m{id}").into(),
            kind: "movie".into(),
            title: field(&p, 1, &path, line, "title")?.to_owned(),
            release_date: parse_movielens_date(release),
            genres,
        });
    }
    let catalog = ingestor.catalog_mut().replace("movielens", &load)?;

    let path = dir.join("u.data");
    let text = latin1(&read(&path)?);
    let mut events = Vec::new();
    let mut users = HashSet::new();
    for (line, l) in lines(&text) {
        let p: Vec<&str> = l.split('\t').collect();
        let (user, item, rating, ts) = (
            int(&p, 0, &path, line, "user_id")?,
            int(&p, 1, &path, line, "item_id")?,
            int(&p, 2, &path, line, "rating")?,
            int(&p, 3, &path, line, "timestamp")?,
        );
        users.insert(user);
        let mut e = imported_interaction(
            format!("ml-u{user}"),
            format!("ml-m{item}"),
            ts * MS_PER_SECOND,
            InteractionKind::Rating,
            &format!("movielens/u.data/{user}/{item}/{ts}"),
        );
        e.value = Some(rating as f64);
        events.push(e);
    }
    let ingest = ingest_interactions(ingestor, &events, &path)?;
    Ok(ImportReport {
        source: "movielens".into(),
        users: users.len() as u64,
        rows: events.len() as u64,
        catalog,
        ingest,
        dropped: Default::default(),
        dropped_examples: Vec::new(),
    })
}

/// `01-Jan-1995` -> `1995-01-01`
fn parse_movielens_date(s: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut it = s.split('-');
    let day: u32 = it.next()?.parse().ok()?;
    let month = MONTHS.iter().position(|m| Some(*m) == it.next())? as u32 + 1;
    let year: i32 = it.next()?.parse().ok()?;
    Date::parse(&format!("{year:04}-{month:02}-{day:02}")).map(|d| d.to_string())
}

/// `2023-01-05 13:45` or `2023-01-05T13:45:12Z` (UTC) -> epoch ms.
pub(crate) fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once(['T', ' '])?;
    let date = Date::parse(date)?;
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let sec: f64 = hms.next().map_or(Some(0.0), |x| x.parse().ok())?;
    Some(date.to_epoch_ms() + h * MS_PER_HOUR + m * MS_PER_MINUTE + (sec * 1_000.0) as i64)
}

pub(crate) fn platform_of(s: &str) -> Platform {
    let s = s.to_ascii_lowercase();
    if s.contains("android") {
        Platform::Android
    } else if s.contains("ios") || s.contains("iphone") || s.contains("ipad") {
        Platform::Ios
    } else if s.contains("web") {
        Platform::Web
    } else if s.contains("windows")
        || s.contains("os x")
        || s.contains("osx")
        || s.contains("linux")
        || s.contains("mac")
    {
        Platform::Desktop
    } else if s.contains("cast")
        || s.contains("speaker")
        || s.contains("sonos")
        || s.contains("echo")
    {
        Platform::SmartSpeaker
    } else if s.contains("tv") {
        Platform::Tv
    } else if s.contains("car") {
        Platform::Car
    } else {
        Platform::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let id = content_uuid("x");
        assert!(crate::contract::is_uuid(&id));
        assert_eq!(&id[14..15], "8");
        assert_eq!(id, content_uuid("x"));
        assert_eq!(latin1(&[0x4D, 0x69, 0x73, 0xE9]), "Mis\u{e9}");
        assert_eq!(
            parse_movielens_date("01-Jan-1995").as_deref(),
            Some("1995-01-01")
        );
        assert_eq!(parse_movielens_date(""), None);
        assert_eq!(parse_utc("1970-01-02 00:01"), Some(86_460_000));
        assert_eq!(parse_utc("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(
            platform_of("Android OS 12 API 31 (samsung, SM-G991B)"),
            Platform::Android
        );
        assert_eq!(platform_of("iOS 16.1 (iPhone14,2)"), Platform::Ios);
        assert_eq!(platform_of("windows"), Platform::Desktop);
    }
}

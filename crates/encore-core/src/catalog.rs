//! Catalog entities: what can be played and who made it.

use crate::ids::{AlbumId, ArtistId, ItemId};
use serde::{Deserialize, Serialize};

/// A tag (genre, mood, era, ...), as used on artists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub tag_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artist {
    pub artist_id: ArtistId,
    pub name: String,
    /// primary genre first
    pub genres: Vec<String>,
    /// tag names, most characteristic first
    pub tags: Vec<String>,
    /// 0..=100, relative within the catalog
    pub popularity: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Album {
    pub album_id: AlbumId,
    pub artist_id: ArtistId,
    pub title: String,
    /// `album`, `single` or `ep`
    pub album_type: String,
    /// `YYYY-MM-DD`
    pub release_date: String,
    pub track_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub track_id: ItemId,
    pub album_id: AlbumId,
    pub artist_id: ArtistId,
    pub title: String,
    /// 1-based position on the album
    pub track_number: u32,
    pub duration_ms: u32,
    /// `YYYY-MM-DD`
    pub release_date: String,
    pub explicit: bool,
    /// 0..=100, relative within the catalog
    pub popularity: u8,
}

/// A tag given to an artist, by a listener when known, on a date when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagAssignment {
    pub artist_id: ArtistId,
    pub tag_id: String,
    #[serde(default)]
    pub user_id: Option<crate::ids::UserId>,
    /// `YYYY-MM-DD`
    #[serde(default)]
    pub date: Option<String>,
}

/// A catalog item that is not a track (a movie, a show, ...), e.g. from a non-music dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub item_id: ItemId,
    /// `movie`, `episode`, ...
    pub kind: String,
    pub title: String,
    /// `YYYY-MM-DD`
    #[serde(default)]
    pub release_date: Option<String>,
    #[serde(default)]
    pub genres: Vec<String>,
}

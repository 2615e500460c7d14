//! The catalog store: tracks, artists, albums, tags and tag assignments, kept as JSON lines per
//! source under `<data>/catalog/<source>/`. A load replaces that source's files atomically, so
//! re-importing a dataset is idempotent. Every known item id (track, artist, album) is held in
//! memory for the "unknown item" count of ingestion.

use crate::error::IngestError;
use encore_core::catalog::{Album, Artist, Item, Tag, TagAssignment, Track};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Entity kinds and their file names.
pub const KINDS: [&str; 6] = [
    "tracks",
    "artists",
    "albums",
    "items",
    "tags",
    "tag_assignments",
];

/// What one source holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CatalogCounts {
    pub tracks: u64,
    pub artists: u64,
    pub albums: u64,
    pub items: u64,
    pub tags: u64,
    pub tag_assignments: u64,
}

/// The entities of one source, to be stored together.
#[derive(Debug, Default)]
pub struct CatalogLoad {
    pub tracks: Vec<Track>,
    pub artists: Vec<Artist>,
    pub albums: Vec<Album>,
    pub items: Vec<Item>,
    pub tags: Vec<Tag>,
    pub tag_assignments: Vec<TagAssignment>,
}

/// An item as serving sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ItemInfo {
    pub title: String,
    pub artist_id: Option<String>,
    pub explicit: bool,
}

#[derive(Debug)]
pub struct CatalogStore {
    dir: PathBuf,
    items: HashSet<String>,
}

fn id_field(kind: &str) -> Option<&'static str> {
    match kind {
        "tracks" => Some("track_id"),
        "artists" => Some("artist_id"),
        "albums" => Some("album_id"),
        "items" => Some("item_id"),
        _ => None,
    }
}

impl CatalogStore {
    pub fn open(dir: &Path) -> Result<CatalogStore, IngestError> {
        std::fs::create_dir_all(dir).map_err(IngestError::io(dir))?;
        let mut store = CatalogStore {
            dir: dir.to_path_buf(),
            items: HashSet::new(),
        };
        for source in store.sources()? {
            for kind in ["tracks", "artists", "albums", "items"] {
                let path = dir.join(&source).join(format!("{kind}.jsonl"));
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let field = id_field(kind).unwrap_or_default();
                for line in text.lines() {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                        && let Some(id) = v.get(field).and_then(|x| x.as_str())
                    {
                        store.items.insert(id.to_owned());
                    }
                }
            }
        }
        Ok(store)
    }

    /// What serving needs to know of each item (track, artist-as-item or generic item), across
    /// every source: title, artist and the explicit flag. Later sources override earlier ones.
    /// Calls `f` with each parseable record of the given kinds, source by source.
    fn each_record(
        &self,
        kinds: &[&str],
        mut f: impl FnMut(&str, serde_json::Value),
    ) -> Result<(), IngestError> {
        for source in self.sources()? {
            for kind in kinds {
                let path = self.dir.join(&source).join(format!("{kind}.jsonl"));
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                for line in text.lines() {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                        f(kind, v);
                    }
                }
            }
        }
        Ok(())
    }

    pub fn item_info(&self) -> Result<HashMap<String, ItemInfo>, IngestError> {
        let mut out = HashMap::new();
        self.each_record(&["artists", "items", "tracks"], |kind, v| {
            let text_of = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            let (id, info) = match kind {
                "tracks" => (
                    text_of("track_id"),
                    ItemInfo {
                        title: text_of("title").unwrap_or_default(),
                        artist_id: text_of("artist_id"),
                        explicit: v.get("explicit").and_then(|x| x.as_bool()) == Some(true),
                    },
                ),
                // an artist recommended as an item is its own artist
                "artists" => (
                    text_of("artist_id"),
                    ItemInfo {
                        title: text_of("name").unwrap_or_default(),
                        artist_id: text_of("artist_id"),
                        explicit: false,
                    },
                ),
                _ => (
                    text_of("item_id"),
                    ItemInfo {
                        title: text_of("title").unwrap_or_default(),
                        artist_id: None,
                        explicit: false,
                    },
                ),
            };
            if let Some(id) = id {
                out.insert(id, info);
            }
        })?;
        Ok(out)
    }

    /// Every record of the given kinds (`tracks`, `items`, `artists`, `albums`) across sources,
    /// with its id (a later source's record of an id replaces an earlier one's).
    pub fn records(&self, kinds: &[&str]) -> Result<Vec<(String, serde_json::Value)>, IngestError> {
        let mut out: HashMap<String, serde_json::Value> = HashMap::new();
        self.each_record(kinds, |kind, v| {
            let id = id_field(kind)
                .and_then(|f| v.get(f))
                .and_then(|x| x.as_str());
            if let Some(k) = id.map(str::to_owned) {
                out.insert(k, v);
            }
        })?;
        Ok(out.into_iter().collect())
    }

    pub fn sources(&self) -> Result<Vec<String>, IngestError> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(IngestError::io(&self.dir))?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn contains(&self, item_id: &str) -> bool {
        self.items.contains(item_id)
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// What `source` holds now (empty when it holds nothing), to be extended and stored again.
    pub fn source_load(&self, source: &str) -> Result<CatalogLoad, IngestError> {
        fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, IngestError> {
            let Ok(text) = std::fs::read_to_string(path) else {
                return Ok(Vec::new());
            };
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(i, l)| {
                    serde_json::from_str(l).map_err(|e| IngestError::Malformed {
                        path: path.to_path_buf(),
                        message: format!("line {}: {e}", i + 1),
                    })
                })
                .collect()
        }
        let dir = self.dir.join(source);
        Ok(CatalogLoad {
            tracks: read(&dir.join("tracks.jsonl"))?,
            artists: read(&dir.join("artists.jsonl"))?,
            albums: read(&dir.join("albums.jsonl"))?,
            items: read(&dir.join("items.jsonl"))?,
            tags: read(&dir.join("tags.jsonl"))?,
            tag_assignments: read(&dir.join("tag_assignments.jsonl"))?,
        })
    }

    /// Replaces the catalog of `source` with `load`.
    pub fn replace(
        &mut self,
        source: &str,
        load: &CatalogLoad,
    ) -> Result<CatalogCounts, IngestError> {
        let dir = self.dir.join(source);
        std::fs::create_dir_all(&dir).map_err(IngestError::io(&dir))?;
        write_lines(&dir.join("tracks.jsonl"), &load.tracks)?;
        write_lines(&dir.join("artists.jsonl"), &load.artists)?;
        write_lines(&dir.join("albums.jsonl"), &load.albums)?;
        write_lines(&dir.join("items.jsonl"), &load.items)?;
        write_lines(&dir.join("tags.jsonl"), &load.tags)?;
        write_lines(&dir.join("tag_assignments.jsonl"), &load.tag_assignments)?;
        self.items
            .extend(load.tracks.iter().map(|t| t.track_id.0.clone()));
        self.items
            .extend(load.artists.iter().map(|a| a.artist_id.0.clone()));
        self.items
            .extend(load.albums.iter().map(|a| a.album_id.0.clone()));
        self.items
            .extend(load.items.iter().map(|a| a.item_id.0.clone()));
        Ok(CatalogCounts {
            tracks: load.tracks.len() as u64,
            artists: load.artists.len() as u64,
            albums: load.albums.len() as u64,
            items: load.items.len() as u64,
            tags: load.tags.len() as u64,
            tag_assignments: load.tag_assignments.len() as u64,
        })
    }

    /// Replaces the catalog of `source` with JSON-lines files from `from` (e.g. a simulated
    /// world's `catalog/` directory holding `tracks.jsonl`, `artists.jsonl`, ...).
    pub fn replace_from_dir(
        &mut self,
        source: &str,
        from: &Path,
    ) -> Result<CatalogCounts, IngestError> {
        let dir = self.dir.join(source);
        std::fs::create_dir_all(&dir).map_err(IngestError::io(&dir))?;
        let mut counts = CatalogCounts::default();
        for kind in KINDS {
            let src = from.join(format!("{kind}.jsonl"));
            if !src.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&src).map_err(IngestError::io(&src))?;
            let mut rows = 0u64;
            for (n, line) in text.lines().enumerate() {
                let v: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| IngestError::Malformed {
                        path: src.clone(),
                        message: format!("line {}: {e}", n + 1),
                    })?;
                if let Some(field) = id_field(kind) {
                    match v.get(field).and_then(|x| x.as_str()) {
                        Some(id) => {
                            self.items.insert(id.to_owned());
                        }
                        None => {
                            return Err(IngestError::Malformed {
                                path: src,
                                message: format!("line {}: missing string field `{field}`", n + 1),
                            });
                        }
                    }
                }
                rows += 1;
            }
            let dst = dir.join(format!("{kind}.jsonl"));
            let tmp = dst.with_extension("jsonl.tmp");
            std::fs::write(&tmp, &text).map_err(IngestError::io(&tmp))?;
            std::fs::rename(&tmp, &dst).map_err(IngestError::io(&dst))?;
            match kind {
                "tracks" => counts.tracks = rows,
                "artists" => counts.artists = rows,
                "albums" => counts.albums = rows,
                "items" => counts.items = rows,
                "tags" => counts.tags = rows,
                _ => counts.tag_assignments = rows,
            }
        }
        Ok(counts)
    }

    /// Row counts of every source.
    pub fn counts(&self) -> Result<Vec<(String, CatalogCounts)>, IngestError> {
        let mut out = Vec::new();
        for source in self.sources()? {
            let mut c = CatalogCounts::default();
            for kind in KINDS {
                let path = self.dir.join(&source).join(format!("{kind}.jsonl"));
                let n = std::fs::read(&path)
                    .map(|b| b.iter().filter(|&&x| x == b'\n').count() as u64)
                    .unwrap_or(0);
                match kind {
                    "tracks" => c.tracks = n,
                    "artists" => c.artists = n,
                    "albums" => c.albums = n,
                    "items" => c.items = n,
                    "tags" => c.tags = n,
                    _ => c.tag_assignments = n,
                }
            }
            out.push((source, c));
        }
        Ok(out)
    }
}

fn write_lines<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), IngestError> {
    let tmp = path.with_extension("jsonl.tmp");
    let file = std::fs::File::create(&tmp).map_err(IngestError::io(&tmp))?;
    let mut w = std::io::BufWriter::new(file);
    for r in rows {
        serde_json::to_writer(&mut w, r).map_err(|e| IngestError::Internal {
            message: e.to_string(),
        })?;
        w.write_all(b"\n").map_err(IngestError::io(&tmp))?;
    }
    let file = w.into_inner().map_err(|e| IngestError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(IngestError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(IngestError::io(path))
}

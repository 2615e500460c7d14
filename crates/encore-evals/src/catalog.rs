//! Catalog grounding: the tracks and artists an LLM feature names or returns must exist in the
//! catalog. An entity that does not resolve to a catalog id is a hallucination; the share of
//! unresolved entities is the feature's hallucination rate.
//!
//! Entities are read from the output:
//! - JSON (a Markdown fence is unwrapped): every object with `track_id`, `item_id` or `id` is an
//!   id; otherwise one with `track`, `title` or `song` is a track (with its `artist` when given);
//!   otherwise one with `artist` (or `name` inside an `artists` list) is an artist; strings inside
//!   an `artists` list are artists;
//! - text: one entity per line (list bullets and numbers stripped), as `"Title" by Artist`,
//!   `Title by Artist`, or `Artist - Title` (also with an en or em dash).
//!
//! Names match after normalization: lower case, letters and digits only, one space between
//! words, a leading "the " dropped. A track named with an artist resolves only if that artist
//! has a track of that title.

use crate::heuristic::unfence;
use crate::{EvalError, Evaluator, Sample, Score};
use encore_core::catalog::{Artist, Track};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// An entity named by an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    Track {
        title: String,
        artist: Option<String>,
    },
    Artist(String),
    Id(String),
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entity::Track {
                title,
                artist: Some(a),
            } => write!(f, "{title:?} by {a}"),
            Entity::Track {
                title,
                artist: None,
            } => write!(f, "track {title:?}"),
            Entity::Artist(a) => write!(f, "artist {a:?}"),
            Entity::Id(id) => write!(f, "id {id}"),
        }
    }
}

/// Names in comparable form.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for w in name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
    match out.strip_prefix("the ") {
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => out,
    }
}

/// The catalog, indexed by normalized names and by id.
#[derive(Debug, Clone, Default)]
pub struct CatalogIndex {
    /// title -> the normalized names of the artists with a track of that title
    titles: HashMap<String, Vec<String>>,
    artists: HashSet<String>,
    ids: HashSet<String>,
}

impl CatalogIndex {
    pub fn new(artists: &[Artist], tracks: &[Track]) -> CatalogIndex {
        let mut idx = CatalogIndex::default();
        let names: HashMap<&str, &str> = artists
            .iter()
            .map(|a| (a.artist_id.as_str(), a.name.as_str()))
            .collect();
        for a in artists {
            idx.add_artist(a.artist_id.as_str(), &a.name);
        }
        for t in tracks {
            let by = names.get(t.artist_id.as_str()).copied().unwrap_or("");
            idx.add_track(t.track_id.as_str(), &t.title, by);
        }
        idx
    }

    pub fn add_artist(&mut self, id: &str, name: &str) {
        self.ids.insert(id.to_owned());
        self.artists.insert(normalize(name));
    }

    /// A track of `title` by the artist named `artist`.
    pub fn add_track(&mut self, id: &str, title: &str, artist: &str) {
        self.ids.insert(id.to_owned());
        self.titles
            .entry(normalize(title))
            .or_default()
            .push(normalize(artist));
    }

    pub fn tracks(&self) -> usize {
        self.titles.values().map(Vec::len).sum()
    }

    /// Whether `e` resolves to the catalog; when not, why.
    pub fn resolve(&self, e: &Entity) -> Result<(), encore_core::Invalid> {
        match e {
            Entity::Id(id) => self
                .ids
                .contains(id)
                .then_some(())
                .ok_or_else(|| encore_core::Invalid(format!("{e}: no such id"))),
            Entity::Artist(a) => self
                .artists
                .contains(&normalize(a))
                .then_some(())
                .ok_or_else(|| encore_core::Invalid(format!("{e}: no such artist"))),
            Entity::Track { title, artist } => {
                let Some(by) = self.titles.get(&normalize(title)) else {
                    return Err(format!("{e}: no track of that title").into());
                };
                match artist {
                    Some(a) if !by.contains(&normalize(a)) => {
                        Err(format!("{e}: the catalog has the title, not by that artist").into())
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

fn str_of<'a>(o: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| o.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
}

fn walk(v: &Value, in_artists: bool, out: &mut Vec<Entity>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| walk(x, in_artists, out)),
        Value::String(s) if in_artists && !s.trim().is_empty() => {
            out.push(Entity::Artist(s.trim().to_owned()))
        }
        Value::Object(o) => {
            if let Some(id) = str_of(o, &["track_id", "item_id", "id"]) {
                out.push(Entity::Id(id.to_owned()));
            } else if let Some(title) = str_of(o, &["track", "title", "song"]) {
                out.push(Entity::Track {
                    title: title.to_owned(),
                    artist: str_of(o, &["artist"]).map(str::to_owned),
                });
            } else if let Some(a) = str_of(o, &["artist"])
                .or_else(|| in_artists.then(|| str_of(o, &["name"])).flatten())
            {
                out.push(Entity::Artist(a.to_owned()));
            } else {
                for (k, x) in o {
                    walk(x, k == "artists", out);
                }
            }
        }
        _ => {}
    }
}

fn strip_bullet(line: &str) -> &str {
    let t = line.trim();
    let t = t.trim_start_matches(['-', '*', '•']).trim_start();
    let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 {
        let rest = &t[digits..];
        if let Some(r) = rest.strip_prefix(['.', ')']) {
            return r.trim_start();
        }
    }
    t
}

fn unquote(s: &str) -> &str {
    s.trim()
        .trim_matches(|c| matches!(c, '"' | '“' | '”' | '\'' | '*'))
        .trim()
}

fn from_line(line: &str) -> Option<Entity> {
    let l = strip_bullet(line);
    if l.is_empty() {
        return None;
    }
    if let Some((title, artist)) = l.rsplit_once(" by ") {
        return Some(Entity::Track {
            title: unquote(title).to_owned(),
            artist: Some(unquote(artist).to_owned()),
        });
    }
    for dash in [" - ", " – ", " — "] {
        if let Some((artist, title)) = l.split_once(dash) {
            return Some(Entity::Track {
                title: unquote(title).to_owned(),
                artist: Some(unquote(artist).to_owned()),
            });
        }
    }
    None
}

/// The entities `output` names.
pub fn extract(output: &str) -> Vec<Entity> {
    let mut out = Vec::new();
    match serde_json::from_str::<Value>(unfence(output)) {
        Ok(v) => walk(&v, false, &mut out),
        Err(_) => out.extend(output.lines().filter_map(from_line)),
    }
    out
}

/// What [`CatalogGrounding::check`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Grounded {
    pub named: usize,
    /// the reasons the unresolved entities did not resolve
    pub unresolved: Vec<String>,
}

impl Grounded {
    /// Unresolved over named (0 when nothing is named).
    pub fn hallucination_rate(&self) -> f64 {
        if self.named == 0 {
            0.0
        } else {
            self.unresolved.len() as f64 / self.named as f64
        }
    }
}

/// The share of the entities an output names that resolve to the catalog; labelled
/// `hallucinated` when any does not, `grounded` when all do, `no_entities` when none is named.
#[derive(Debug, Clone)]
pub struct CatalogGrounding {
    pub catalog: std::sync::Arc<CatalogIndex>,
}

impl CatalogGrounding {
    pub fn check(&self, output: &str) -> Grounded {
        let entities = extract(output);
        Grounded {
            named: entities.len(),
            unresolved: entities
                .iter()
                .filter_map(|e| self.catalog.resolve(e).err().map(String::from))
                .collect(),
        }
    }
}

impl Evaluator for CatalogGrounding {
    fn name(&self) -> &'static str {
        "catalog_grounding"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let g = self.check(s.output);
        if g.named == 0 {
            return Ok(self.score(
                1.0,
                Some("no_entities"),
                Some("names no track or artist".into()),
            ));
        }
        let resolved = g.named - g.unresolved.len();
        let explanation = if g.unresolved.is_empty() {
            format!("all {} named entities are in the catalog", g.named)
        } else {
            format!(
                "{} of {} named entities are not in the catalog: {}",
                g.unresolved.len(),
                g.named,
                g.unresolved.join("; ")
            )
        };
        Ok(self.score(
            resolved as f64 / g.named as f64,
            Some(if g.unresolved.is_empty() {
                "grounded"
            } else {
                "hallucinated"
            }),
            Some(explanation),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encore_core::ids::{AlbumId, ArtistId, ItemId};

    fn catalog() -> CatalogGrounding {
        let artist = |id: &str, name: &str| Artist {
            artist_id: ArtistId::from(id),
            name: name.into(),
            genres: vec![],
            tags: vec![],
            popularity: 50,
        };
        let track = |id: &str, artist: &str, title: &str| Track {
            track_id: ItemId::from(id),
            album_id: AlbumId::from("al"),
            artist_id: ArtistId::from(artist),
            title: title.into(),
            track_number: 1,
            duration_ms: 200_000,
            release_date: "2001-01-01".into(),
            explicit: false,
            popularity: 50,
        };
        let artists = [artist("a1", "The Knife"), artist("a2", "Röyksopp")];
        let tracks = [
            track("t1", "a1", "Heartbeats"),
            track("t2", "a2", "Eple"),
            track("t3", "a2", "What Else Is There?"),
        ];
        CatalogGrounding {
            catalog: std::sync::Arc::new(CatalogIndex::new(&artists, &tracks)),
        }
    }

    #[test]
    fn names_normalize() {
        assert_eq!(normalize("  The KNIFE!"), "knife");
        assert_eq!(normalize("What Else Is There?"), "what else is there");
        assert_eq!(normalize("Röyksopp"), "röyksopp");
        assert_eq!(normalize("The"), "the");
    }

    #[test]
    fn text_lists_resolve_by_title_and_artist() {
        let c = catalog();
        let out = "Here you go:\n1. \"Heartbeats\" by The Knife\n2. Röyksopp - Eple\n- Eple by The Knife\n* Made Up Song by Nobody\n";
        let g = c.check(out);
        assert_eq!(g.named, 4);
        assert_eq!(g.unresolved.len(), 2, "{:?}", g.unresolved);
        assert!(g.unresolved[0].contains("not by that artist"));
        assert!(g.unresolved[1].contains("no track of that title"));
        assert_eq!(g.hallucination_rate(), 0.5);
        let s = c
            .evaluate(&Sample {
                output: out,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((s.value, s.label.as_deref()), (0.5, Some("hallucinated")));
    }

    #[test]
    fn json_outputs_resolve_ids_tracks_and_artists() {
        let c = catalog();
        let out = r#"```json
{"playlist": {"tracks": [{"track_id": "t2"}, {"track_id": "t9"},
   {"title": "what else is there", "artist": "ROYKSOPP"},
   {"song": "Heartbeats"}],
 "artists": ["The Knife", {"name": "Imaginary Band"}]}}
```"#;
        let g = c.check(out);
        assert_eq!(g.named, 6);
        // t9 is not an id; "Royksopp" without the diaeresis is another name; the band is made up
        assert_eq!(g.unresolved.len(), 3, "{:?}", g.unresolved);
        let none = c
            .evaluate(&Sample {
                output: "I like music.",
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            (none.value, none.label.as_deref()),
            (1.0, Some("no_entities"))
        );
    }
}

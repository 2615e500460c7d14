//! Feature definitions in TOML, checked and compiled.
//!
//! ```toml
//! [entities.user]
//! keys = ["user_id"]
//!
//! [entities.user_artist]
//! keys = ["user_id", "artist_id"]
//!
//! [views.user_listening]
//! entity = "user"
//! ttl = "30d"
//! features = [
//!   { name = "plays_7d", agg = "count", window = "7d" },
//!   { name = "streams_7d", agg = "count", window = "7d", filter = "stream" },
//!   { name = "minutes_30d", agg = "sum", field = "ms_played", window = "30d" },
//!   { name = "skip_rate_7d", agg = "ratio", window = "7d",
//!     numerator = { agg = "count", filter = "skip" }, denominator = { agg = "count" } },
//!   { name = "artists_30d", agg = "distinct", field = "artist_id", window = "30d" },
//!   { name = "last_completion", agg = "last", field = "completion" },
//! ]
//!
//! [services.reranker]
//! views = ["user_listening"]
//! ```
//!
//! Entities are keyed by `user_id`, `item_id` and `artist_id` (an item's artist comes from the
//! catalog). A view's `source` is the playback event log (the default), `catalog` (attributes of
//! items or artists) or `file` (a Parquet or CSV table at `path`, with an optional `timestamp`
//! column): see [`crate::attrs`]. An attribute view's features are values (`field`: the column,
//! by default the feature's name). For views of events, aggregations: `count`, `sum`,
//! `mean`, `distinct`, `last`, and `ratio` of two counts or sums. Windows are `<n>m`, `<n>h` or
//! `<n>d`. A filter is a conjunction (`and`) of terms: a flag (`stream`, `skip`, `shuffle`,
//! `offline`, optionally `not`), a numeric comparison (`ms_played >= 60000`), or a categorical
//! equality (`platform == ios`, `reason_end != trackdone`).
//!
//! Point in time: a feature of an entity as of time `t` aggregates the entity's events with
//! `t − span < ts ≤ t`, where `span` is the shorter of the window and the view's TTL (a feature
//! without a window looks back one TTL). When the entity has no event at all in `(t − ttl, t]`,
//! every feature of the view is null, flagged expired (or missing, when the entity has no event
//! at or before `t`).

use crate::event::{CATEGORICAL, FLAGS, NUMERIC, hash};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A definition error: the file, the line and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DefError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    #[serde(default)]
    entities: BTreeMap<String, toml::Spanned<EntityDef>>,
    #[serde(default)]
    views: BTreeMap<String, toml::Spanned<ViewDef>>,
    #[serde(default)]
    services: BTreeMap<String, toml::Spanned<ServiceDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityDef {
    keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewDef {
    entity: String,
    #[serde(default = "events")]
    source: String,
    /// a file source's table
    #[serde(default)]
    path: Option<String>,
    /// a file source's column of times (ms since the epoch) at which each row took effect
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    ttl: Option<String>,
    features: Vec<toml::Spanned<FeatureDef>>,
}

fn events() -> String {
    "events".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureDef {
    name: String,
    #[serde(default)]
    agg: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    numerator: Option<PartDef>,
    #[serde(default)]
    denominator: Option<PartDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartDef {
    agg: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    filter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDef {
    views: Vec<String>,
}

/// One term of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Term {
    Flag {
        index: usize,
        want: bool,
    },
    Num {
        index: usize,
        op: Op,
        value: f64,
    },
    Cat {
        index: usize,
        equal: bool,
        hash: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

/// A conjunction of terms; empty passes everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub text: String,
    pub terms: Vec<Term>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, encore_core::Invalid> {
        let mut terms = Vec::new();
        for raw in text.split(" and ") {
            let t = raw.trim();
            if t.is_empty() {
                return Err(format!("filter {text:?}: an empty term").into());
            }
            let words: Vec<&str> = t.split_whitespace().collect();
            let term = match words.as_slice() {
                [flag] | ["not", flag] => {
                    let index = FLAGS.iter().position(|f| f == flag).ok_or_else(|| {
                        format!(
                            "filter term {t:?}: {flag:?} is not a flag ({})",
                            FLAGS.join(", ")
                        )
                    })?;
                    Term::Flag {
                        index,
                        want: words.len() == 1,
                    }
                }
                [field, op, value] => {
                    let op = match *op {
                        ">=" => Op::Ge,
                        ">" => Op::Gt,
                        "<=" => Op::Le,
                        "<" => Op::Lt,
                        "==" => Op::Eq,
                        "!=" => Op::Ne,
                        other => {
                            return Err(format!(
                                "filter term {t:?}: {other:?} is not one of >=, >, <=, <, ==, !="
                            )
                            .into());
                        }
                    };
                    if let Some(index) = NUMERIC.iter().position(|f| f == field) {
                        let value = value
                            .parse()
                            .map_err(|_| format!("filter term {t:?}: {value:?} is not a number"))?;
                        Term::Num { index, op, value }
                    } else if let Some(index) = CATEGORICAL.iter().position(|f| f == field) {
                        if !matches!(op, Op::Eq | Op::Ne) {
                            return Err(format!(
                                "filter term {t:?}: {field} is categorical: use == or !="
                            )
                            .into());
                        }
                        Term::Cat {
                            index,
                            equal: op == Op::Eq,
                            hash: hash(value.trim_matches('"')),
                        }
                    } else {
                        return Err(format!(
                            "filter term {t:?}: {field:?} is not a field ({}, {})",
                            NUMERIC.join(", "),
                            CATEGORICAL.join(", ")
                        )
                        .into());
                    }
                }
                _ => {
                    return Err(format!(
                        "filter term {t:?}: expected FLAG, not FLAG, or FIELD OP VALUE"
                    )
                    .into());
                }
            };
            terms.push(term);
        }
        Ok(Filter {
            text: text.to_owned(),
            terms,
        })
    }

    pub fn accepts(&self, e: &crate::event::FeatureEvent) -> bool {
        self.terms.iter().all(|t| match *t {
            Term::Flag { index, want } => e.flag(index) == want,
            Term::Num { index, op, value } => {
                let x = e.num[index];
                match op {
                    Op::Ge => x >= value,
                    Op::Gt => x > value,
                    Op::Le => x <= value,
                    Op::Lt => x < value,
                    Op::Eq => x == value,
                    Op::Ne => x != value,
                }
            }
            Term::Cat { index, equal, hash } => (e.cat[index] == hash) == equal,
        })
    }
}

/// What is aggregated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Agg {
    Count,
    Sum(usize),
    Mean(usize),
    Distinct(usize),
    Last(usize),
    /// an attribute view's value: the source's column (or catalog attribute) of this name
    Value(String),
    /// numerator and denominator: each a count (None) or a sum of a numeric field, filtered
    Ratio {
        num: (Option<usize>, Filter),
        den: (Option<usize>, Filter),
    },
}

/// A checked feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub agg: Agg,
    /// the look-back in ms: the shorter of the window and the view's TTL
    pub span_ms: i64,
    pub filter: Filter,
}

/// Whose features: the entity's key fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntityKind {
    User,
    Item,
    Artist,
    UserArtist,
    UserItem,
}

impl EntityKind {
    /// Keyed by the listener: fed only by plays with personalization consent outside private
    /// sessions.
    pub fn is_personal(self) -> bool {
        self.keys().contains(&"user_id")
    }

    pub fn keys(self) -> &'static [&'static str] {
        match self {
            EntityKind::User => &["user_id"],
            EntityKind::Item => &["item_id"],
            EntityKind::Artist => &["artist_id"],
            EntityKind::UserArtist => &["user_id", "artist_id"],
            EntityKind::UserItem => &["user_id", "item_id"],
        }
    }

    fn from_keys(keys: &[String]) -> Option<EntityKind> {
        let k: Vec<&str> = keys.iter().map(String::as_str).collect();
        [
            EntityKind::User,
            EntityKind::Item,
            EntityKind::Artist,
            EntityKind::UserArtist,
            EntityKind::UserItem,
        ]
        .into_iter()
        .find(|e| e.keys() == k.as_slice())
    }

    /// Writes the entity key of an event's fields into `buf` (cleared first); false when a
    /// needed field is unknown.
    pub fn write_key(self, buf: &mut String, user: &str, item: &str, artist: Option<&str>) -> bool {
        buf.clear();
        match self {
            EntityKind::User => buf.push_str(user),
            EntityKind::Item => buf.push_str(item),
            EntityKind::Artist => match artist {
                Some(a) => buf.push_str(a),
                None => return false,
            },
            EntityKind::UserArtist => match artist {
                Some(a) => {
                    buf.push_str(user);
                    buf.push('\u{1f}');
                    buf.push_str(a);
                }
                None => return false,
            },
            EntityKind::UserItem => {
                buf.push_str(user);
                buf.push('\u{1f}');
                buf.push_str(item);
            }
        }
        true
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub name: String,
    pub entity: String,
    pub kind: EntityKind,
    #[serde(default)]
    pub source: Source,
    /// [`NO_TTL`] when the view's values never expire
    pub ttl_ms: i64,
    pub features: Vec<Feature>,
}

/// The TTL of an attribute view without one: its values never expire.
pub const NO_TTL: i64 = i64::MAX / 4;

/// Where a view's values come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// windowed aggregations over the playback log
    #[default]
    Events,
    /// attributes of the imported catalog's items or artists (numbers, booleans as 0 or 1,
    /// lists as their length), as of now: the catalog keeps no history
    Catalog,
    /// a Parquet or CSV table with the entity's key columns and the features' columns; with a
    /// `timestamp` column, a row holds from its time on (point in time), else always
    File {
        path: String,
        timestamp: Option<String>,
    },
}

impl Source {
    pub fn is_events(&self) -> bool {
        matches!(self, Source::Events)
    }
}

impl View {
    /// The longest look-back of the view's features (and its TTL).
    pub fn horizon_ms(&self) -> i64 {
        self.features
            .iter()
            .map(|f| f.span_ms)
            .max()
            .unwrap_or(0)
            .max(self.ttl_ms)
    }
}

/// Every checked definition of a file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    pub entities: BTreeMap<String, EntityKind>,
    pub views: BTreeMap<String, View>,
    pub services: BTreeMap<String, Vec<String>>,
}

/// `<n>m`, `<n>h` or `<n>d` in ms.
pub fn duration_ms(s: &str) -> Result<i64, encore_core::Invalid> {
    let t = s.trim();
    // the unit is the last character, whatever its width in bytes
    let unit = t.chars().last().unwrap_or(' ');
    let n: i64 = t[..t.len() - unit.len_utf8().min(t.len())]
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("duration {s:?}: expected a positive number then m, h or d"))?;
    let per_unit: i64 = match unit {
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return Err(format!("duration {s:?}: the unit must be m, h or d").into()),
    };
    n.checked_mul(per_unit)
        .filter(|ms| *ms <= 100 * 366 * 86_400_000)
        .ok_or_else(|| encore_core::Invalid(format!("duration {s:?}: longer than 100 years")))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn numeric(field: Option<&str>, what: &str) -> Result<usize, String> {
    let f = field.ok_or_else(|| format!("{what} needs a numeric `field`"))?;
    NUMERIC
        .iter()
        .position(|n| *n == f)
        .ok_or_else(|| format!("{what}: {f:?} is not numeric ({})", NUMERIC.join(", ")))
}

fn part(p: &PartDef, what: &str) -> Result<(Option<usize>, Filter), String> {
    let filter = Filter::parse(p.filter.as_deref().unwrap_or("").trim()).or_else(|e| {
        if p.filter.is_none() {
            Ok(Filter::default())
        } else {
            Err(e)
        }
    })?;
    match p.agg.as_str() {
        "count" => Ok((None, filter)),
        "sum" => Ok((Some(numeric(p.field.as_deref(), what)?), filter)),
        other => Err(format!("{what}: agg {other:?} must be count or sum")),
    }
}

/// A view's source; a relative file path is taken from the definitions file's directory.
fn source(name: &str, v: &ViewDef, kind: EntityKind, file: &str) -> Result<Source, String> {
    let only_files = |what: &str| format!("view {name}: `{what}` is for file sources");
    match v.source.as_str() {
        "events" | "catalog" if v.path.is_some() => Err(only_files("path")),
        "events" | "catalog" if v.timestamp.is_some() => Err(only_files("timestamp")),
        "events" => Ok(Source::Events),
        "catalog" if matches!(kind, EntityKind::Item | EntityKind::Artist) => Ok(Source::Catalog),
        "catalog" => Err(format!(
            "view {name}: the catalog describes items and artists: its entity must be keyed by item_id or artist_id"
        )),
        "file" => {
            let path = v
                .path
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| {
                    format!("view {name}: a file source needs `path` (a .parquet or .csv table)")
                })?;
            if !(path.ends_with(".parquet") || path.ends_with(".csv")) {
                return Err(format!(
                    "view {name}: path {path:?}: expected a .parquet or .csv file"
                ));
            }
            let p = std::path::Path::new(path);
            let path = if p.is_absolute() {
                path.to_owned()
            } else {
                let base = std::path::Path::new(file)
                    .parent()
                    .unwrap_or(std::path::Path::new(""));
                base.join(p).display().to_string()
            };
            Ok(Source::File {
                path,
                timestamp: v.timestamp.clone(),
            })
        }
        other => Err(format!(
            "view {name}: source {other:?} is not one of events (the playback log), catalog, file"
        )),
    }
}

/// A feature of an attribute view: a column (`field`, by default the feature's name).
fn attribute(f: &FeatureDef, ttl_ms: i64) -> Result<Feature, String> {
    let what = format!("feature {}", f.name);
    if let Some(a) = f.agg.as_deref().filter(|a| *a != "value") {
        return Err(format!(
            "{what}: agg {a:?}: an attribute view's features are values (agg = \"value\" or none); aggregations need source = \"events\""
        ));
    }
    if f.window.is_some() || f.filter.is_some() || f.numerator.is_some() || f.denominator.is_some()
    {
        return Err(format!(
            "{what}: windows and filters apply to views of events, not attributes"
        ));
    }
    check_name(&f.name)?;
    Ok(Feature {
        name: f.name.clone(),
        agg: Agg::Value(f.field.clone().unwrap_or_else(|| f.name.clone())),
        span_ms: ttl_ms,
        filter: Filter::default(),
    })
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "feature name {name:?}: expected letters, digits and _"
        ));
    }
    Ok(())
}

fn feature(f: &FeatureDef, ttl_ms: i64) -> Result<Feature, String> {
    let what = format!("feature {}", f.name);
    let agg_name = f
        .agg
        .as_deref()
        .ok_or_else(|| format!("{what}: no `agg` (count, sum, mean, distinct, last or ratio)"))?;
    let filter = match &f.filter {
        None => Filter::default(),
        Some(t) => Filter::parse(t)?,
    };
    let field_of = |kinds: &[&str], all: &[&str]| -> Result<usize, String> {
        let fld = f
            .field
            .as_deref()
            .ok_or_else(|| format!("{what}: agg {agg_name} needs a `field`"))?;
        all.iter()
            .position(|n| *n == fld)
            .ok_or_else(|| format!("{what}: field {fld:?} is not one of {}", kinds.join(", ")))
    };
    let agg = match agg_name {
        "count" => Agg::Count,
        "sum" => Agg::Sum(field_of(&NUMERIC, &NUMERIC)?),
        "mean" => Agg::Mean(field_of(&NUMERIC, &NUMERIC)?),
        "last" => Agg::Last(field_of(&NUMERIC, &NUMERIC)?),
        "distinct" => Agg::Distinct(field_of(&CATEGORICAL, &CATEGORICAL)?),
        "ratio" => {
            let (n, d) = match (&f.numerator, &f.denominator) {
                (Some(n), Some(d)) => (n, d),
                _ => {
                    return Err(format!(
                        "{what}: a ratio needs `numerator` and `denominator`"
                    ));
                }
            };
            if f.filter.is_some() {
                return Err(format!(
                    "{what}: a ratio filters its numerator and denominator, not itself"
                ));
            }
            Agg::Ratio {
                num: part(n, &format!("{what} numerator"))?,
                den: part(d, &format!("{what} denominator"))?,
            }
        }
        other => {
            return Err(format!(
                "{what}: agg {other:?} is not one of count, sum, mean, distinct, last, ratio"
            ));
        }
    };
    let span_ms = match &f.window {
        Some(w) => duration_ms(w)
            .map_err(|e| format!("{what}: {e}"))?
            .min(ttl_ms),
        None => ttl_ms,
    };
    check_name(&f.name)?;
    Ok(Feature {
        name: f.name.clone(),
        agg,
        span_ms,
        filter,
    })
}

impl Definitions {
    /// Parses and checks `text` (from `file`, named in errors).
    pub fn parse(text: &str, file: &str) -> Result<Definitions, DefError> {
        let err = |offset: usize, message: String| DefError {
            file: file.to_owned(),
            line: line_of(text, offset),
            message,
        };
        let raw: FileDef = toml::from_str(text).map_err(|e| {
            err(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_owned(),
            )
        })?;
        let mut d = Definitions::default();
        for (name, e) in &raw.entities {
            let kind = EntityKind::from_keys(&e.get_ref().keys).ok_or_else(|| {
                err(
                    e.span().start,
                    format!(
                        "entity {name}: keys {:?} are not one of [user_id], [item_id], [artist_id], [user_id, artist_id], [user_id, item_id]",
                        e.get_ref().keys
                    ),
                )
            })?;
            d.entities.insert(name.clone(), kind);
        }
        for (name, v) in &raw.views {
            let at = v.span().start;
            let view = v.get_ref();
            let kind = *d.entities.get(&view.entity).ok_or_else(|| {
                err(
                    at,
                    format!("view {name}: entity {:?} is not defined", view.entity),
                )
            })?;
            let source = source(name, view, kind, file).map_err(|m| err(at, m))?;
            let ttl_ms = match (&view.ttl, &source) {
                (Some(t), Source::Catalog) => {
                    return Err(err(
                        at,
                        format!(
                            "view {name}: ttl {t:?}: catalog attributes have no time to expire from"
                        ),
                    ));
                }
                (Some(t), _) => {
                    duration_ms(t).map_err(|e| err(at, format!("view {name}: ttl: {e}")))?
                }
                (None, Source::Events) => {
                    return Err(err(
                        at,
                        format!("view {name}: a view of events needs a ttl (e.g. ttl = \"30d\")"),
                    ));
                }
                (None, _) => NO_TTL,
            };
            let mut features = Vec::new();
            for f in &view.features {
                let feat = if source.is_events() {
                    feature(f.get_ref(), ttl_ms)
                } else {
                    attribute(f.get_ref(), ttl_ms)
                }
                .map_err(|e| err(f.span().start, format!("view {name}: {e}")))?;
                if features.iter().any(|x: &Feature| x.name == feat.name) {
                    return Err(err(
                        f.span().start,
                        format!("view {name}: feature {} is defined twice", feat.name),
                    ));
                }
                features.push(feat);
            }
            if features.is_empty() {
                return Err(err(at, format!("view {name}: no features")));
            }
            d.views.insert(
                name.clone(),
                View {
                    name: name.clone(),
                    entity: view.entity.clone(),
                    kind,
                    source,
                    ttl_ms,
                    features,
                },
            );
        }
        for (name, s) in &raw.services {
            for v in &s.get_ref().views {
                if !d.views.contains_key(v) {
                    return Err(err(
                        s.span().start,
                        format!("service {name}: view {v:?} is not defined"),
                    ));
                }
            }
            d.services.insert(name.clone(), s.get_ref().views.clone());
        }
        Ok(d)
    }

    /// The views of service `name`.
    pub fn service(&self, name: &str) -> Option<Vec<&View>> {
        self.services
            .get(name)
            .map(|vs| vs.iter().filter_map(|v| self.views.get(v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the `feature_toml` fuzz target): a window whose last character is
    /// wider than a byte split a character in two and panicked; a huge number overflowed.
    #[test]
    fn durations_with_wide_characters_or_huge_numbers_are_errors() {
        assert_eq!(duration_ms("7d"), Ok(7 * 86_400_000));
        assert_eq!(duration_ms(" 90m "), Ok(90 * 60_000));
        for bad in [
            "ћ",
            "7ћ",
            "ћd",
            "",
            "d",
            "0d",
            "-3h",
            "999999999999999999d",
            "40000d",
        ] {
            assert!(duration_ms(bad).is_err(), "{bad:?}");
        }
        let text = "[entities.u]\nkeys = [\"user_id\"]\n[views.v]\nentity = \"u\"\nttl = \"30d\"\n\
                    features = [{ name = \"n\", agg = \"count\", window = \"ћ\" }]\n";
        let err = Definitions::parse(text, "f.toml").unwrap_err().to_string();
        assert!(err.contains("f.toml") && err.contains("duration"), "{err}");
    }

    pub const EXAMPLE: &str = r#"
[entities.user]
keys = ["user_id"]

[entities.user_artist]
keys = ["user_id", "artist_id"]

[views.user_listening]
entity = "user"
ttl = "30d"
features = [
  { name = "plays_7d", agg = "count", window = "7d" },
  { name = "streams_7d", agg = "count", window = "7d", filter = "stream" },
  { name = "minutes_30d", agg = "sum", field = "ms_played", window = "30d" },
  { name = "skip_rate_7d", agg = "ratio", window = "7d", numerator = { agg = "count", filter = "skip" }, denominator = { agg = "count" } },
  { name = "artists_30d", agg = "distinct", field = "artist_id", window = "30d" },
  { name = "last_completion", agg = "last", field = "completion" },
]

[views.user_artist]
entity = "user_artist"
ttl = "90d"
features = [{ name = "plays_90d", agg = "count", window = "120d" }]

[services.reranker]
views = ["user_listening", "user_artist"]
"#;

    #[test]
    fn the_example_compiles() {
        let d = Definitions::parse(EXAMPLE, "features.toml").unwrap();
        let v = &d.views["user_listening"];
        assert_eq!(v.features.len(), 6);
        assert_eq!(v.features[0].span_ms, 7 * 86_400_000);
        assert_eq!(v.features[5].span_ms, 30 * 86_400_000, "no window: one TTL");
        // a window longer than the TTL is cut to it
        assert_eq!(d.views["user_artist"].features[0].span_ms, 90 * 86_400_000);
        assert_eq!(d.service("reranker").unwrap().len(), 2);
    }

    #[test]
    fn errors_name_the_file_line_and_reason() {
        let bad = EXAMPLE.replace(r#"window = "30d" },"#, r#"window = "30 days" },"#);
        let e = Definitions::parse(&bad, "f.toml").unwrap_err();
        assert_eq!(e.line, 14, "{e}");
        assert!(
            e.to_string()
                .starts_with("f.toml:14: view user_listening: feature minutes_30d: duration"),
            "{e}"
        );
        let bad = EXAMPLE.replace("filter = \"stream\"", "filter = \"streamed\"");
        let e = Definitions::parse(&bad, "f.toml").unwrap_err();
        assert_eq!(e.line, 13, "{e}");
        assert!(e.message.contains("\"streamed\" is not a flag"), "{e}");
        let bad = EXAMPLE.replace("entity = \"user_artist\"", "entity = \"listener\"");
        let e = Definitions::parse(&bad, "f.toml").unwrap_err();
        assert!(
            e.message.contains("entity \"listener\" is not defined"),
            "{e}"
        );
        assert!((20..=23).contains(&e.line), "{e}");
        let bad = EXAMPLE.replace("keys = [\"user_id\"]\n", "keys = [\"user_id\"]\nkind = 1\n");
        let e = Definitions::parse(&bad, "f.toml").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = Definitions::parse("[views.x", "f.toml").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn filters_parse_and_apply() {
        let f = Filter::parse("stream and not skip and ms_played >= 60000 and platform == ios")
            .unwrap();
        assert_eq!(f.terms.len(), 4);
        assert!(
            Filter::parse("ms_played ~ 3")
                .unwrap_err()
                .0
                .contains("\"~\"")
        );
        assert!(
            Filter::parse("platform > ios")
                .unwrap_err()
                .0
                .contains("categorical")
        );
        assert!(
            Filter::parse("tempo > 3")
                .unwrap_err()
                .0
                .contains("not a field")
        );
        let raw = crate::event::Raw {
            personal: true,
            ts_end_ms: 0,
            ms_played: 90_000,
            item_duration_ms: 200_000,
            shuffle: false,
            offline: false,
            item_id: "t1",
            artist_id: Some("a1"),
            platform: "ios",
            country: "SE",
            context_type: "album",
            reason_start: "clickrow",
            reason_end: "trackdone",
        };
        let e = crate::event::FeatureEvent::new(&raw);
        assert!(f.accepts(&e));
        assert!(!Filter::parse("skip").unwrap().accepts(&e));
        assert!(Filter::parse("reason_end != fwdbtn").unwrap().accepts(&e));
    }
}

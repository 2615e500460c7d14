//! Writing a world to disk: catalog, listeners, one event file per simulated day, and a manifest
//! with counts and sha256 of every file. Nothing time- or machine-dependent is written, so the same
//! config gives byte-identical files.

use crate::catalog::Catalog;
use crate::error::SimError;
use crate::world::{DayLog, SimConfig, World};
use encore_core::arrow::{interaction_batch, playback_batch};
use encore_core::catalog::{Album, Artist, Tag, Track};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Rows per parallel conversion chunk.
const CHUNK: usize = 32_768;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Parquet,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

/// One file of the output, as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// relative to the output directory, `/`-separated
    pub path: String,
    /// `playback`, `interaction`, `tracks`, `artists`, `albums`, `tags` or `users`
    pub kind: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub users: u64,
    pub tracks: u64,
    pub artists: u64,
    pub albums: u64,
    pub tags: u64,
    pub playback_events: u64,
    /// playback rows written broken (`SimConfig::faults`), not counted in `playback_events`
    #[serde(default)]
    pub broken_rows: u64,
    /// playback rows written a second time (`SimConfig::faults`)
    #[serde(default)]
    pub duplicate_rows: u64,
    pub interaction_events: u64,
    /// plays of at least 30 s
    pub streams: u64,
    /// plays ended by a forward/back skip before the end
    pub skips: u64,
}

/// `DIR/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub generator: String,
    pub seed: u64,
    pub users: u64,
    pub days: u32,
    pub start_date: String,
    pub format: Format,
    pub event_schema_version: u32,
    pub counts: Counts,
    pub files: Vec<FileEntry>,
    /// the shifts injected (`KIND@DAY`), if any
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shifts: Vec<String>,
}

pub const MANIFEST_FILE: &str = "manifest.json";

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct Out<'a> {
    root: &'a Path,
    files: Vec<FileEntry>,
}

impl Out<'_> {
    fn create(&self, rel: &str) -> Result<Hashing<BufWriter<File>>, SimError> {
        let path = self.root.join(rel);
        let file = File::create(&path).map_err(SimError::io(&path))?;
        Ok(Hashing {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    fn finish(
        &mut self,
        rel: &str,
        kind: &str,
        rows: u64,
        mut w: Hashing<BufWriter<File>>,
    ) -> Result<(), SimError> {
        let path = self.root.join(rel);
        w.flush().map_err(SimError::io(&path))?;
        self.files.push(FileEntry {
            path: rel.to_owned(),
            kind: kind.to_owned(),
            rows,
            bytes: w.bytes,
            sha256: format!("{:x}", w.hasher.finalize()),
        });
        Ok(())
    }

    /// Writes `rows` as JSON lines, serializing chunks in parallel.
    fn jsonl<T: Sync, S: Serialize>(
        &mut self,
        rel: &str,
        kind: &str,
        rows: &[T],
        to_wire: impl Fn(&T) -> S + Sync,
    ) -> Result<(), SimError> {
        let mut w = self.create(rel)?;
        let path = self.root.join(rel);
        let chunks: Vec<Result<Vec<u8>, serde_json::Error>> = rows
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut buf = Vec::with_capacity(chunk.len() * 512);
                for row in chunk {
                    serde_json::to_writer(&mut buf, &to_wire(row))?;
                    buf.push(b'\n');
                }
                Ok(buf)
            })
            .collect();
        for chunk in chunks {
            let chunk = chunk.map_err(|e| SimError::Encode {
                path: path.clone(),
                message: e.to_string(),
            })?;
            w.write_all(&chunk).map_err(SimError::io(&path))?;
        }
        self.finish(rel, kind, rows.len() as u64, w)
    }

    /// Writes record batches (built in parallel by `batch`) as one zstd Parquet file.
    fn parquet<T: Sync>(
        &mut self,
        rel: &str,
        kind: &str,
        rows: &[T],
        schema: arrow::datatypes::SchemaRef,
        batch: impl Fn(&[T]) -> Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError>
        + Sync,
    ) -> Result<(), SimError> {
        let path = self.root.join(rel);
        let encode = |e: &dyn std::fmt::Display| SimError::Encode {
            path: path.clone(),
            message: e.to_string(),
        };
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).map_err(|e| encode(&e))?,
            ))
            .set_max_row_group_row_count(Some(256 * 1024))
            .set_created_by(format!("encore-sim {}", env!("CARGO_PKG_VERSION")))
            .build();
        let mut writer =
            ArrowWriter::try_new(self.create(rel)?, schema, Some(props)).map_err(|e| encode(&e))?;
        let batches: Vec<_> = rows.par_chunks(CHUNK).map(&batch).collect();
        for b in batches {
            writer
                .write(&b.map_err(|e| encode(&e))?)
                .map_err(|e| encode(&e))?;
        }
        let w = writer.into_inner().map_err(|e| encode(&e))?;
        self.finish(rel, kind, rows.len() as u64, w)
    }
}

/// Simulates `config` and writes it under `out` in `format`. `on_day(done, total)` is called after
/// each day is written (for progress bars).
pub fn generate(
    config: &SimConfig,
    out: &Path,
    format: Format,
    on_day: &mut dyn FnMut(u32, u32),
) -> Result<Manifest, SimError> {
    for sub in ["catalog", "events"] {
        let dir = out.join(sub);
        std::fs::create_dir_all(&dir).map_err(SimError::io(&dir))?;
    }
    let mut world = World::new(config.clone());
    let mut out = Out {
        root: out,
        files: Vec::new(),
    };
    write_catalog(&world, &mut out)?;

    let mut counts = Counts {
        users: config.users as u64,
        tracks: world.catalog.tracks.len() as u64,
        artists: world.catalog.artists.len() as u64,
        albums: world.catalog.albums.len() as u64,
        tags: world.catalog.tags.len() as u64,
        ..Counts::default()
    };
    // Day d is written while day d + 1 is simulated: both halves are parallel inside, and
    // overlapping them keeps both cores busy through the sequential parts (Parquet encoding,
    // hashing, the write itself).
    let mut states = world.take_states();
    let mut pending: Option<DayLog> = None;
    for day in 0..=config.days {
        let world = &world;
        let (next, written) = rayon::join(
            || (day < config.days).then(|| world.step(day, &mut states)),
            || -> Result<Option<u32>, SimError> {
                let Some(log) = pending.take() else {
                    return Ok(None);
                };
                count_day(world, &log, &mut counts);
                write_day(world, &log, format, &mut out)?;
                Ok(Some(log.day))
            },
        );
        if let Some(done) = written? {
            on_day(done + 1, config.days);
        }
        pending = next;
    }

    let manifest = Manifest {
        manifest_version: 1,
        generator: format!("encore-sim {}", env!("CARGO_PKG_VERSION")),
        seed: config.seed,
        users: config.users as u64,
        days: config.days,
        start_date: config.start.to_string(),
        format,
        event_schema_version: encore_core::event::SCHEMA_VERSION,
        counts,
        files: out.files,
        shifts: config.shifts.iter().map(crate::ShiftAt::describe).collect(),
    };
    let path = out.root.join(MANIFEST_FILE);
    let mut text = serde_json::to_string_pretty(&manifest).map_err(|e| SimError::Encode {
        path: path.clone(),
        message: e.to_string(),
    })?;
    text.push('\n');
    std::fs::write(&path, text).map_err(SimError::io(&path))?;
    Ok(manifest)
}

/// How a written playback row is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    PlayedPastTheEnd,
    EndsBeforeStart,
    UnknownCountry,
    CutEventId,
    ZeroDuration,
}

const BREAKAGES: [Fault; 5] = [
    Fault::PlayedPastTheEnd,
    Fault::EndsBeforeStart,
    Fault::UnknownCountry,
    Fault::CutEventId,
    Fault::ZeroDuration,
];

/// The rows of a day's playback file, as indexes into its plays: each play once, and with
/// `faults` some of them broken and some sent again at the end (deterministic by seed and
/// day). A broken row is not also sent again.
fn playback_rows(world: &World, log: &DayLog) -> Vec<(u32, Fault)> {
    let rate = world.config.faults;
    let mut rows: Vec<(u32, Fault)> = (0..log.plays.len() as u32)
        .map(|i| (i, Fault::None))
        .collect();
    if rate <= 0.0 {
        return rows;
    }
    let mut rng = crate::Rng::stream(world.config.seed, &[0xFA17, u64::from(log.day)]);
    let mut again = Vec::new();
    for row in &mut rows {
        if rng.chance(rate) {
            row.1 = BREAKAGES[rng.below(BREAKAGES.len())];
        } else if rng.chance(rate / (1.0 - rate)) {
            again.push((row.0, Fault::None));
        }
    }
    rows.extend(again);
    rows
}

/// `event` broken as `fault` says; each breaks exactly one rule of the ingest contract.
fn faulty(
    mut event: encore_core::event::PlaybackEvent,
    fault: Fault,
) -> encore_core::event::PlaybackEvent {
    match fault {
        Fault::None => {}
        Fault::PlayedPastTheEnd => {
            event.ms_played = event.item_duration_ms + 60_000;
            event.ts_end_ms = event.ts_start_ms + i64::from(event.ms_played);
        }
        Fault::EndsBeforeStart => event.ts_end_ms = event.ts_start_ms - 1_000,
        Fault::UnknownCountry => event.country = "XX".into(),
        Fault::CutEventId => event.event_id = event.event_id.as_str()[..8].to_string().into(),
        Fault::ZeroDuration => event.item_duration_ms = 0,
    }
    event
}

fn count_day(world: &World, log: &DayLog, counts: &mut Counts) {
    counts.playback_events += log.plays.len() as u64;
    if world.config.faults > 0.0 {
        let rows = playback_rows(world, log);
        counts.broken_rows += rows.iter().filter(|r| r.1 != Fault::None).count() as u64;
        counts.duplicate_rows += (rows.len() - log.plays.len()) as u64;
    }
    counts.interaction_events += log.interactions.len() as u64;
    for p in &log.plays {
        counts.streams += u64::from(p.ms_played >= encore_core::event::STREAM_THRESHOLD_MS);
        let duration = world.catalog.tracks.duration_ms[p.track as usize];
        let skipped = matches!(
            p.reason_end,
            encore_core::event::ReasonEnd::Fwdbtn | encore_core::event::ReasonEnd::Backbtn
        ) && p.ms_played < duration;
        counts.skips += u64::from(skipped);
    }
}

fn write_day(
    world: &World,
    log: &DayLog,
    format: Format,
    out: &mut Out<'_>,
) -> Result<(), SimError> {
    let ext = format.extension();
    let plays = format!("events/events-{:04}.{ext}", log.day);
    let interactions = format!("events/interactions-{:04}.{ext}", log.day);
    let rows = playback_rows(world, log);
    let event =
        |&(i, fault): &(u32, Fault)| faulty(world.playback_event(&log.plays[i as usize]), fault);
    match format {
        Format::Jsonl => {
            out.jsonl(&plays, "playback", &rows, event)?;
            out.jsonl(&interactions, "interaction", &log.interactions, |i| {
                world.interaction_event(i)
            })
        }
        Format::Parquet => {
            out.parquet(
                &plays,
                "playback",
                &rows,
                encore_core::arrow::playback_schema(),
                |c| playback_batch(&c.iter().map(event).collect::<Vec<_>>()),
            )?;
            out.parquet(
                &interactions,
                "interaction",
                &log.interactions,
                encore_core::arrow::interaction_schema(),
                |c| {
                    interaction_batch(
                        &c.iter()
                            .map(|i| world.interaction_event(i))
                            .collect::<Vec<_>>(),
                    )
                },
            )
        }
    }
}

/// Public listener attributes (what a service knows; the hidden taste is not written).
#[derive(Debug, Serialize)]
struct UserRow<'a> {
    user_id: String,
    country: &'a str,
    platform: encore_core::event::Platform,
    tier: encore_core::event::Tier,
    consent: encore_core::event::Consent,
}

/// The catalog and listeners are written as JSON lines whatever the event format: they are small
/// next to the events and every tool reads JSON lines.
fn write_catalog(world: &World, out: &mut Out<'_>) -> Result<(), SimError> {
    let c = &world.catalog;
    let tags: Vec<u16> = (0..c.tags.len() as u16).collect();
    out.jsonl("catalog/tags.jsonl", "tags", &tags, |&t| Tag {
        tag_id: Catalog::tag_id(t),
        name: c.tags[t as usize].clone(),
    })?;
    let artists: Vec<u32> = (0..c.artists.len() as u32).collect();
    out.jsonl("catalog/artists.jsonl", "artists", &artists, |&a| {
        let artist = &c.artists[a as usize];
        Artist {
            artist_id: Catalog::artist_id(a).into(),
            name: artist.name.clone(),
            genres: artist
                .genres
                .iter()
                .map(|&g| c.genre_name(g).to_owned())
                .collect(),
            tags: artist
                .tags
                .iter()
                .map(|&t| c.tags[t as usize].clone())
                .collect(),
            popularity: c.artist_popularity[a as usize],
        }
    })?;
    let albums: Vec<u32> = (0..c.albums.len() as u32).collect();
    out.jsonl("catalog/albums.jsonl", "albums", &albums, |&a| {
        let album = &c.albums[a as usize];
        Album {
            album_id: Catalog::album_id(a).into(),
            artist_id: Catalog::artist_id(album.artist).into(),
            title: album.title.clone(),
            album_type: album.kind.as_str().to_owned(),
            release_date: album.release.to_string(),
            track_count: album.tracks.len() as u32,
        }
    })?;
    let tracks: Vec<u32> = (0..c.tracks.len() as u32).collect();
    out.jsonl("catalog/tracks.jsonl", "tracks", &tracks, |&t| {
        let i = t as usize;
        let album = c.tracks.album[i];
        Track {
            track_id: Catalog::track_id(t).into(),
            album_id: Catalog::album_id(album).into(),
            artist_id: Catalog::artist_id(c.tracks.artist[i]).into(),
            title: c.tracks.title[i].clone(),
            track_number: c.tracks.number[i],
            duration_ms: c.tracks.duration_ms[i],
            release_date: c.albums[album as usize].release.to_string(),
            explicit: c.tracks.explicit[i],
            popularity: c.track_popularity[i],
        }
    })?;
    let users: Vec<u32> = (0..world.profiles.len() as u32).collect();
    out.jsonl("users.jsonl", "users", &users, |&u| {
        let p = &world.profiles[u as usize];
        UserRow {
            user_id: World::user_id(u),
            country: p.country,
            platform: p.platform,
            tier: p.tier,
            consent: p.consent,
        }
    })
}

/// Checks a written world against its manifest: every file exists with the listed size, sha256
/// and row count. Returns the problems found (empty when all is well).
pub fn verify(dir: &Path) -> Result<Vec<String>, SimError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(SimError::io(&path))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| SimError::Encode {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let problems: Vec<String> = manifest
        .files
        .par_iter()
        .filter_map(|entry| check_file(dir, entry).err())
        .collect();
    Ok(problems)
}

fn check_file(dir: &Path, entry: &FileEntry) -> Result<(), String> {
    let path: PathBuf = dir.join(&entry.path);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 != entry.bytes {
        return Err(format!(
            "{}: {} bytes, manifest says {}",
            entry.path,
            bytes.len(),
            entry.bytes
        ));
    }
    let sha = format!("{:x}", Sha256::digest(&bytes));
    if sha != entry.sha256 {
        return Err(format!(
            "{}: sha256 {sha}, manifest says {}",
            entry.path, entry.sha256
        ));
    }
    let rows = if entry.path.ends_with(".parquet") {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = SerializedFileReader::new(file).map_err(|e| format!("{}: {e}", entry.path))?;
        reader.metadata().file_metadata().num_rows() as u64
    } else {
        bytes.iter().filter(|&&b| b == b'\n').count() as u64
    };
    if rows != entry.rows {
        return Err(format!(
            "{}: {rows} rows, manifest says {}",
            entry.path, entry.rows
        ));
    }
    Ok(())
}

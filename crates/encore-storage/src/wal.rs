//! The write-ahead log: a file of framed, checksummed records.
//!
//! ```text
//! file   := "ENCWAL02" record*
//! record := mark: u32 LE = 0x57_43_4e_45 | len: u32 LE | crc32(len LE ++ payload): u32 LE | payload
//! ```
//! Format 1 (`ENCWAL01`, `len | crc32(payload) | payload`) is still read.
//!
//! A record is durable once [`WalWriter::sync`] returns. Records are buffered in memory and written
//! with one positioned write per sync, so a failed write or fsync is cut back to the last durable
//! offset before anything else is accepted: a partial record is never followed by later ones.
//!
//! [`read_wal`] tells the two kinds of bad bytes apart. A **torn tail** is an incomplete record at
//! the end (a crash during a write that was never acknowledged): it is cut on open. **Damage** is
//! a complete record with a bad checksum, or bad bytes followed by valid records (a flipped bit,
//! a bad sector): acknowledged data was lost, which is reported with the file and offset, and
//! [`repair`] keeps every intact record and moves the damaged file aside, unchanged. The mark
//! lets the reader find the next record after damage.

use crate::StorageError;
use crate::fs::{Fs, FsFile};
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC_V1: &[u8; 8] = b"ENCWAL01";
const MAGIC: &[u8; 8] = b"ENCWAL02";
const MARK: [u8; 4] = 0x57_43_4e_45_u32.to_le_bytes();
const HEADER: usize = 12;
/// Upper bound of one record; anything larger in a length field is a torn or foreign header.
pub const MAX_RECORD: usize = 1 << 30;

/// Appends records to one WAL file. Not thread-safe: one writer owns it.
#[derive(Debug)]
pub struct WalWriter {
    path: PathBuf,
    file: Box<dyn FsFile>,
    /// framed records not yet written
    pending: Vec<u8>,
    /// length of the file that is known durable (fsynced)
    durable: u64,
    /// why the bytes after `durable` could not be cut after a failed write; no write is accepted
    /// until [`WalWriter::heal`] succeeds
    broken: Option<String>,
}

impl WalWriter {
    /// Creates a new, empty WAL file (it must not exist).
    pub fn create(fs: &Arc<dyn Fs>, path: &Path) -> Result<WalWriter, StorageError> {
        let io = |e| StorageError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let mut file = fs.create_new(path).map_err(io)?;
        let written = file
            .write_all_at(MAGIC, 0)
            .and_then(|()| file.sync_all())
            .map_err(io)
            .and_then(|()| match path.parent() {
                Some(dir) => fs.sync_dir(dir).map_err(StorageError::io(dir)),
                None => Ok(()),
            });
        if let Err(e) = written {
            // an empty or short file holds nothing acknowledged; recovery would skip it anyway
            drop(file);
            let _ = fs.remove_file(path);
            return Err(e);
        }
        Ok(WalWriter {
            path: path.to_path_buf(),
            file,
            pending: Vec::with_capacity(1 << 20),
            durable: MAGIC.len() as u64,
            broken: None,
        })
    }

    /// Buffers one record; it is durable only after [`WalWriter::sync`].
    pub fn append(&mut self, payload: &[u8]) -> Result<(), StorageError> {
        self.append_with(|buf| {
            buf.extend_from_slice(payload);
            Ok(())
        })
    }

    /// Buffers one record whose payload `f` writes at the end of the buffer (no copy).
    pub fn append_with(
        &mut self,
        f: impl FnOnce(&mut Vec<u8>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let start = self.pending.len();
        self.pending.extend_from_slice(&[0u8; HEADER]);
        let framed = f(&mut self.pending).and_then(|()| {
            let len = self.pending.len() - start - HEADER;
            match u32::try_from(len)
                .ok()
                .filter(|&l| l > 0 && (l as usize) <= MAX_RECORD)
            {
                Some(len) => Ok(len),
                None => Err(StorageError::Corrupt {
                    path: self.path.clone(),
                    message: format!(
                        "a record of {len} bytes cannot be written (1 to {MAX_RECORD})"
                    ),
                }),
            }
        });
        let len = match framed {
            Ok(len) => len,
            Err(e) => {
                self.pending.truncate(start);
                return Err(e);
            }
        };
        let len_bytes = len.to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&len_bytes);
        crc.update(&self.pending[start + HEADER..]);
        let header = &mut self.pending[start..start + HEADER];
        header[..4].copy_from_slice(&MARK);
        header[4..8].copy_from_slice(&len_bytes);
        header[8..].copy_from_slice(&crc.finalize().to_le_bytes());
        Ok(())
    }

    /// Drops the records buffered since the last sync.
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Writes and fsyncs (data only) everything appended: it is durable once this returns. On
    /// failure nothing appended since the last sync is durable, and the file is cut back to its
    /// durable length before this returns; when even that fails, the writer refuses every write
    /// until [`WalWriter::heal`] succeeds.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if self.broken.is_some()
            && let Err(e) = self.heal()
        {
            self.pending.clear();
            return Err(e);
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all_at(&self.pending, self.durable)
            .and_then(|()| self.file.sync_data());
        let len = self.pending.len() as u64;
        self.pending.clear();
        match written {
            Ok(()) => {
                self.durable += len;
                Ok(())
            }
            Err(e) => {
                self.broken = Some(e.to_string());
                if let Err(cut) = self.heal() {
                    tracing::error!(path = %self.path.display(), error = %cut,
                        "a failed WAL write could not be cut back; writes are refused until it is");
                }
                Err(StorageError::Io {
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }

    /// Cuts the file back to its durable length after a failed write (and fsyncs that).
    pub fn heal(&mut self) -> Result<(), StorageError> {
        let Some(cause) = self.broken.clone() else {
            return Ok(());
        };
        match self
            .file
            .set_len(self.durable)
            .and_then(|()| self.file.sync_all())
        {
            Ok(()) => {
                self.broken = None;
                Ok(())
            }
            Err(e) => Err(StorageError::WriteFailed {
                message: format!(
                    "{} could not be cut back to {} bytes after a failed write ({cause}): {e}",
                    self.path.display(),
                    self.durable
                ),
            }),
        }
    }

    /// Why writes are refused, when a failed write could not be cut back yet.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Durable bytes of the file.
    pub fn bytes(&self) -> u64 {
        self.durable
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Bytes of a WAL file that could not be read although records follow them, or a complete record
/// with a bad checksum: acknowledged data that was damaged at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    pub offset: u64,
    pub bytes: u64,
}

/// What [`read_wal`] found in one file.
#[derive(Debug, Default)]
pub struct WalContents {
    data: Vec<u8>,
    records: Vec<Range<usize>>,
    /// 1 or 2
    pub format: u32,
    /// damaged ranges, in file order
    pub damage: Vec<Damage>,
    /// length of the file without its torn tail
    pub valid_len: u64,
    /// bytes of an incomplete record at the end (a write that was never acknowledged)
    pub torn_bytes: u64,
}

impl WalContents {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The payloads of the intact records, in file order.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.records.iter().map(|r| &self.data[r.clone()])
    }

    /// The raw bytes of a damaged range (to salvage what can still be read from it).
    pub fn damaged_bytes(&self, d: &Damage) -> &[u8] {
        let start = usize::try_from(d.offset).unwrap_or(self.data.len());
        let end = start.saturating_add(usize::try_from(d.bytes).unwrap_or(0));
        &self.data[start.min(self.data.len())..end.min(self.data.len())]
    }
}

/// The payload range of a valid format-2 record at `pos`, if there is one.
fn record_at(data: &[u8], pos: usize) -> Option<Range<usize>> {
    let header = data.get(pos..pos.checked_add(HEADER)?)?;
    if header[..4] != MARK {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[8..].try_into().ok()?);
    let payload = pos + HEADER..(pos + HEADER).checked_add(len)?;
    if len == 0 || len > MAX_RECORD || payload.end > data.len() {
        return None;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&header[4..8]);
    h.update(&data[payload.clone()]);
    (h.finalize() == crc).then_some(payload)
}

/// A header at `pos` whose length fits the file: a complete record (if its checksum fails, it was
/// damaged after it was written, since a torn write is always cut short).
fn complete_header_at(data: &[u8], pos: usize) -> bool {
    let Some(header) = data.get(pos..pos + HEADER) else {
        return false;
    };
    let len = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default()) as usize;
    header[..4] == MARK && len > 0 && len <= MAX_RECORD && pos + HEADER + len <= data.len()
}

/// Reads every intact record of a WAL file, and where its bad bytes are. Never modifies it.
pub fn read_wal(path: &Path) -> Result<WalContents, StorageError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(StorageError::io(path))?;
    Ok(parse(data))
}

/// [`read_wal`] of bytes already in memory.
pub fn parse(data: Vec<u8>) -> WalContents {
    let n = data.len();
    let mut out = WalContents {
        format: 2,
        ..WalContents::default()
    };
    if n >= MAGIC.len() && &data[..MAGIC.len()] == MAGIC_V1 {
        out.format = 1;
        let pos = parse_v1(&data, &mut out.records);
        out.valid_len = pos as u64;
        out.torn_bytes = (n - pos) as u64;
        out.data = data;
        return out;
    }
    if n < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        // a crash between create and the first sync can leave a short magic: nothing was acked
        out.torn_bytes = n as u64;
        out.data = data;
        return out;
    }
    let mut pos = MAGIC.len();
    while pos < n {
        if let Some(r) = record_at(&data, pos) {
            pos = r.end;
            out.records.push(r);
            continue;
        }
        let next = (pos + 1..n.saturating_sub(HEADER - 1))
            .filter(|&q| data[q..q + 4] == MARK)
            .find_map(|q| record_at(&data, q).map(|_| q));
        match next {
            Some(q) => {
                out.damage.push(Damage {
                    offset: pos as u64,
                    bytes: (q - pos) as u64,
                });
                pos = q;
            }
            None if complete_header_at(&data, pos) => {
                out.damage.push(Damage {
                    offset: pos as u64,
                    bytes: (n - pos) as u64,
                });
                pos = n;
            }
            None => break,
        }
    }
    out.valid_len = pos as u64;
    out.torn_bytes = (n - pos) as u64;
    out.data = data;
    out
}

/// Format 1 has no marks: everything after the first bad record is taken as a torn tail.
fn parse_v1(data: &[u8], records: &mut Vec<Range<usize>>) -> usize {
    let mut pos = MAGIC_V1.len();
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap_or_default());
        let end = pos + 8 + len;
        if len > MAX_RECORD || end > data.len() || crc32fast::hash(&data[pos + 8..end]) != crc {
            break;
        }
        records.push(pos + 8..end);
        pos = end;
    }
    pos
}

/// Cuts a WAL file back to `len` bytes (its torn tail) and fsyncs it.
pub fn truncate(fs: &dyn Fs, path: &Path, len: u64) -> Result<(), StorageError> {
    let mut file = fs.open_write(path).map_err(StorageError::io(path))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(StorageError::io(path))
}

/// What [`repair`] did to one WAL file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WalRepair {
    pub file: PathBuf,
    /// where the damaged file was moved, unchanged
    pub quarantined: PathBuf,
    pub records_kept: usize,
    pub damage: Vec<Damage>,
    pub torn_bytes: u64,
}

/// Rewrites a damaged WAL file with every intact record (in order, in format 2) and moves the
/// original, unchanged, into `quarantine_dir`. Crash-safe: the repaired file replaces the
/// original by rename only after it is durable, and the original is linked into quarantine first.
pub fn repair(
    fs: &dyn Fs,
    path: &Path,
    contents: &WalContents,
    quarantine_dir: &Path,
) -> Result<WalRepair, StorageError> {
    let tmp = path.with_extension("wal.repaired");
    let mut buf = Vec::with_capacity(contents.data.len());
    buf.extend_from_slice(MAGIC);
    for payload in contents.records() {
        let len = (payload.len() as u32).to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&len);
        crc.update(payload);
        buf.extend_from_slice(&MARK);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(&crc.finalize().to_le_bytes());
        buf.extend_from_slice(payload);
    }
    let mut file = fs.create(&tmp).map_err(StorageError::io(&tmp))?;
    file.write_all_at(&buf, 0)
        .and_then(|()| file.sync_all())
        .map_err(StorageError::io(&tmp))?;
    drop(file);

    std::fs::create_dir_all(quarantine_dir).map_err(StorageError::io(quarantine_dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "wal".into());
    let mut quarantined = quarantine_dir.join(&name);
    let mut k = 1;
    while quarantined.exists() {
        quarantined = quarantine_dir.join(format!("{name}.{k}"));
        k += 1;
    }
    std::fs::hard_link(path, &quarantined)
        .or_else(|_| std::fs::copy(path, &quarantined).map(|_| ()))
        .map_err(StorageError::io(&quarantined))?;
    fs.sync_dir(quarantine_dir)
        .map_err(StorageError::io(quarantine_dir))?;
    fs.rename(&tmp, path).map_err(StorageError::io(path))?;
    if let Some(dir) = path.parent() {
        fs.sync_dir(dir).map_err(StorageError::io(dir))?;
    }
    Ok(WalRepair {
        file: path.to_path_buf(),
        quarantined,
        records_kept: contents.len(),
        damage: contents.damage.clone(),
        torn_bytes: contents.torn_bytes,
    })
}

/// fsync of a directory, so a created, renamed or removed entry survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FaultyFs, real};

    fn write(path: &Path, records: &[&[u8]]) -> u64 {
        let mut w = WalWriter::create(&real(), path).unwrap();
        for r in records {
            w.append(r).unwrap();
        }
        w.sync().unwrap();
        w.bytes()
    }

    fn payloads(c: &WalContents) -> Vec<Vec<u8>> {
        c.records().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("1.wal");
        let full = write(&path, &[b"first", b"x", &[7u8; 1000]]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
        let c = read_wal(&path).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!((c.valid_len, c.torn_bytes, c.damage.len()), (full, 0, 0));

        // every cut inside the last record loses exactly that record, as a torn tail
        let bytes = std::fs::read(&path).unwrap();
        let last = full - 1012;
        for cut in (last + 1)..full {
            std::fs::write(&path, &bytes[..cut as usize]).unwrap();
            let c = read_wal(&path).unwrap();
            assert_eq!(
                payloads(&c),
                vec![b"first".to_vec(), b"x".to_vec()],
                "cut at {cut}"
            );
            assert_eq!((c.valid_len, c.damage.len()), (last, 0), "cut at {cut}");
        }
        // a zero-filled tail (a crash after the size grew) is torn, not records
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&path, &zeros).unwrap();
        let c = read_wal(&path).unwrap();
        assert_eq!((c.len(), c.torn_bytes, c.damage.len()), (3, 4096, 0));
        truncate(&*real(), &path, c.valid_len).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn a_flipped_byte_anywhere_is_damage_and_every_other_record_survives() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("1.wal");
        let recs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 50 + i as usize]).collect();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        write(&path, &refs);
        let bytes = std::fs::read(&path).unwrap();
        let mut start = MAGIC.len();
        for (k, r) in recs.iter().enumerate() {
            let end = start + HEADER + r.len();
            // the last record's mark and length are ambiguous with a torn write (nothing
            // follows to tell); its checksum and payload are not
            let first = if k + 1 == recs.len() {
                start + 8
            } else {
                start
            };
            for at in first..end {
                let mut flipped = bytes.clone();
                flipped[at] ^= 0x10;
                let c = parse(flipped);
                let mut expected = recs.clone();
                expected.remove(k);
                assert_eq!(payloads(&c), expected, "record {k}, byte {at}");
                assert_eq!(
                    c.damage,
                    vec![Damage {
                        offset: start as u64,
                        bytes: (end - start) as u64
                    }],
                    "record {k}, byte {at}"
                );
                assert_eq!(c.torn_bytes, 0);
            }
            start = end;
        }
    }

    #[test]
    fn repair_keeps_intact_records_and_quarantines_the_original() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("1.wal");
        write(&path, &[b"one", b"two", b"three"]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[MAGIC.len() + HEADER + 3 + HEADER] ^= 1; // first byte of "two"
        bytes.extend_from_slice(&MARK); // and a torn tail
        std::fs::write(&path, &bytes).unwrap();
        let c = read_wal(&path).unwrap();
        let report = repair(&*real(), &path, &c, &tmp.path().join("q")).unwrap();
        assert_eq!(report.records_kept, 2);
        assert_eq!(report.damage.len(), 1);
        assert_eq!(report.torn_bytes, 4);
        assert_eq!(std::fs::read(&report.quarantined).unwrap(), bytes);
        let c = read_wal(&path).unwrap();
        assert_eq!(payloads(&c), vec![b"one".to_vec(), b"three".to_vec()]);
        assert!(c.damage.is_empty() && c.torn_bytes == 0);
    }

    #[test]
    fn format_1_files_are_still_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("1.wal");
        let mut bytes = MAGIC_V1.to_vec();
        for p in [&b"alpha"[..], b"beta"] {
            bytes.extend_from_slice(&(p.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            bytes.extend_from_slice(p);
        }
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let c = read_wal(&path).unwrap();
        assert_eq!(c.format, 1);
        assert_eq!(payloads(&c), vec![b"alpha".to_vec(), b"beta".to_vec()]);
        assert_eq!(c.torn_bytes, 3);
    }

    /// Disk full at every byte of a group commit: the failed write is cut back, later records
    /// follow the last durable one directly, and every synced record reads back.
    #[test]
    fn a_write_failing_at_any_byte_is_cut_back_before_the_next() {
        let tmp = tempfile::tempdir().unwrap();
        let group = 2 * (HEADER + 20);
        for space in 0..group as u64 {
            let path = tmp.path().join(format!("{space}.wal"));
            let faulty = FaultyFs::new();
            let mut w = WalWriter::create(&faulty.shared(), &path).unwrap();
            w.append(b"acknowledged-before").unwrap();
            w.sync().unwrap();
            faulty.set_space(Some(space));
            w.append(&[1u8; 20]).unwrap();
            w.append(&[2u8; 20]).unwrap();
            assert!(w.sync().is_err(), "space {space}");
            faulty.set_space(None);
            w.append(b"after").unwrap();
            w.sync().unwrap();
            let c = read_wal(&path).unwrap();
            assert_eq!(
                payloads(&c),
                vec![b"acknowledged-before".to_vec(), b"after".to_vec()],
                "space {space}"
            );
            assert!(c.damage.is_empty() && c.torn_bytes == 0, "space {space}");
        }
    }

    #[test]
    fn a_failed_fsync_or_cut_refuses_writes_until_healed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("1.wal");
        let faulty = FaultyFs::new();
        let mut w = WalWriter::create(&faulty.shared(), &path).unwrap();
        faulty.update(|f| {
            f.failing_syncs = 1;
            f.failing_truncate = true;
        });
        w.append(b"lost").unwrap();
        assert!(w.sync().is_err());
        assert!(w.broken().is_some());
        w.append(b"refused").unwrap();
        assert!(
            w.sync().is_err(),
            "no write while the bad bytes are in the file"
        );
        faulty.heal();
        w.append(b"kept").unwrap();
        w.sync().unwrap();
        assert!(w.broken().is_none());
        assert_eq!(payloads(&read_wal(&path).unwrap()), vec![b"kept".to_vec()]);

        // short writes are retried to the end
        faulty.update(|f| f.short_writes = Some(3));
        w.append(&[9u8; 100]).unwrap();
        w.sync().unwrap();
        assert_eq!(read_wal(&path).unwrap().len(), 2);
    }
}

//! The write-ahead log: a file of length- and checksum-framed records.
//!
//! ```text
//! file   := MAGIC record*
//! record := len: u32 LE | crc32(payload): u32 LE | payload: len bytes
//! ```
//! A record is durable once [`WalWriter::sync`] returns. A crash can leave a torn record at the tail
//! of the last file (short header, short payload or bad checksum); [`read_wal`] stops there and
//! reports the length of the valid prefix so the caller can truncate it.

use crate::StorageError;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"ENCWAL01";
/// Upper bound of one record; anything larger in a length field is a torn or foreign header.
pub const MAX_RECORD: usize = 1 << 30;

#[derive(Debug)]
pub struct WalWriter {
    path: PathBuf,
    file: BufWriter<File>,
    bytes: u64,
}

impl WalWriter {
    /// Creates a new, empty WAL file (it must not exist).
    pub fn create(path: &Path) -> Result<WalWriter, StorageError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(StorageError::io(path))?;
        file.write_all(MAGIC).map_err(StorageError::io(path))?;
        file.sync_all().map_err(StorageError::io(path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(WalWriter {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            bytes: MAGIC.len() as u64,
        })
    }

    /// Buffers one record; it is durable only after [`WalWriter::sync`].
    pub fn append(&mut self, payload: &[u8]) -> Result<(), StorageError> {
        let io = StorageError::io(&self.path);
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| (l as usize) <= MAX_RECORD)
            .ok_or_else(|| StorageError::Corrupt {
                path: self.path.clone(),
                message: format!("record of {} bytes is over the limit", payload.len()),
            })?;
        let crc = crc32fast::hash(payload);
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&crc.to_le_bytes());
        self.file
            .write_all(&header)
            .map_err(StorageError::io(&self.path))?;
        self.file.write_all(payload).map_err(io)?;
        self.bytes += 8 + payload.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs (data only): everything appended so far is now durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.file.flush().map_err(StorageError::io(&self.path))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(StorageError::io(&self.path))
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`read_wal`] found in one file.
#[derive(Debug)]
pub struct WalContents {
    pub records: Vec<Vec<u8>>,
    /// length of the valid prefix of the file
    pub valid_len: u64,
    /// bytes after the valid prefix (a torn or corrupt tail)
    pub torn_bytes: u64,
}

/// Reads every intact record of a WAL file, stopping at the first torn or corrupt one.
pub fn read_wal(path: &Path) -> Result<WalContents, StorageError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(StorageError::io(path))?;
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        // a crash between create and the first sync can leave a short magic: nothing was acked
        return Ok(WalContents {
            records: Vec::new(),
            valid_len: 0,
            torn_bytes: data.len() as u64,
        });
    }
    let mut pos = MAGIC.len();
    let mut records = Vec::new();
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap_or_default());
        let end = pos + 8 + len;
        if len > MAX_RECORD || end > data.len() || crc32fast::hash(&data[pos + 8..end]) != crc {
            break;
        }
        records.push(data[pos + 8..end].to_vec());
        pos = end;
    }
    Ok(WalContents {
        records,
        valid_len: pos as u64,
        torn_bytes: (data.len() - pos) as u64,
    })
}

/// Cuts a WAL file back to its valid prefix.
pub fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(StorageError::io(path))?;
    file.set_len(len).map_err(StorageError::io(path))?;
    file.sync_all().map_err(StorageError::io(path))
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

    #[test]
    fn records_round_trip_and_torn_tails_are_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("1.wal");
        let mut w = WalWriter::create(&path).unwrap();
        w.append(b"first").unwrap();
        w.append(b"").unwrap();
        w.append(&[7u8; 1000]).unwrap();
        w.sync().unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        let c = read_wal(&path).unwrap();
        assert_eq!(c.records.len(), 3);
        assert_eq!(c.valid_len, full);
        assert_eq!(c.torn_bytes, 0);

        // every cut inside the last record loses exactly that record
        let bytes = std::fs::read(&path).unwrap();
        for cut in (full - 1008 + 1)..full {
            std::fs::write(&path, &bytes[..cut as usize]).unwrap();
            let c = read_wal(&path).unwrap();
            assert_eq!(
                c.records,
                vec![b"first".to_vec(), Vec::new()],
                "cut at {cut}"
            );
            assert_eq!(c.valid_len, full - 1008);
        }

        // a flipped bit in the payload is caught by the checksum
        let mut flipped = bytes;
        flipped[full as usize - 10] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let c = read_wal(&path).unwrap();
        assert_eq!(c.records.len(), 2);
        truncate(&path, c.valid_len).unwrap();
        assert_eq!(read_wal(&path).unwrap().torn_bytes, 0);
    }
}

//! The file-system seam of the embedded backends. Every write of the event log's files (WAL
//! records, Parquet segments, the manifest) goes through [`Fs`], so tests inject the faults a real
//! disk has (disk full, I/O errors, short and torn writes, failed fsyncs) with [`FaultyFs`] and
//! check that nothing acknowledged is lost. Reads use `std::fs` directly: damage on the read side
//! is what checksums are for.
//!
//! ```
//! use encore_storage::fs::{FaultyFs, Fs};
//! let tmp = tempfile::tempdir().unwrap();
//! let fs = FaultyFs::new();
//! fs.set_space(Some(4)); // four more bytes fit on the "disk"
//! let mut f = fs.create(&tmp.path().join("a")).unwrap();
//! let err = f.write_all_at(b"hello", 0).unwrap_err();
//! assert_eq!(err.raw_os_error(), Some(28)); // ENOSPC, after a torn write of "hell"
//! assert_eq!(std::fs::read(tmp.path().join("a")).unwrap(), b"hell");
//! ```

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A file opened for writing through an [`Fs`].
pub trait FsFile: Write + Seek + Send + fmt::Debug {
    /// Writes all of `buf` at `offset` (a short write is retried; an error may leave a prefix).
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()>;
    fn sync_all(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The file operations the writers need.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Creates `path` for writing; it must not exist.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Creates or truncates `path` for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Opens an existing file for writing (to cut it back).
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory, so a created, renamed or removed entry survives a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

impl Write for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for RealFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl FsFile for RealFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for RealFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        Ok(Box::new(RealFile(File::create(path)?)))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The default file system of a writer: [`RealFs`].
pub fn real() -> Arc<dyn Fs> {
    Arc::new(RealFs)
}

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// What [`FaultyFs`] does wrong, and to which files.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// bytes that still fit on the disk (`None`: unlimited). A write that does not fit writes the
    /// part that does, then fails with ENOSPC: a torn write at any byte.
    pub space: Option<u64>,
    /// every write fails with EIO (after writing nothing)
    pub eio: bool,
    /// the next this many fsyncs (of files or directories) fail with EIO
    pub failing_syncs: u32,
    /// `set_len` fails with EIO (a failed write cannot be cut back)
    pub failing_truncate: bool,
    /// creating files fails with ENOSPC
    pub failing_create: bool,
    /// every `write` call writes at most this many bytes (short writes, which callers must retry)
    pub short_writes: Option<usize>,
    /// every operation after this many (writes, fsyncs, truncations, creations, renames,
    /// removals) fails with EIO: the disk is gone from that point, as at a crash
    pub fail_after_ops: Option<u64>,
    /// only paths containing this string are affected (`None`: all)
    pub scope: Option<String>,
}

/// A real file system with injected faults, changed at any time through [`FaultyFs::update`].
/// Clones share one fault plan: a test keeps one and hands another to the writer.
#[derive(Debug, Clone, Default)]
pub struct FaultyFs(Arc<Plan>);

#[derive(Debug, Default)]
struct Plan {
    faults: Mutex<Faults>,
    /// writes, fsyncs and truncations seen
    ops: Mutex<u64>,
}

impl FaultyFs {
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    pub fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.0.faults.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Bytes that still fit (`None`: the disk has space again).
    pub fn set_space(&self, space: Option<u64>) {
        self.update(|f| f.space = space);
    }

    /// No faults from now on.
    pub fn heal(&self) {
        self.update(|f| *f = Faults::default());
    }

    /// Operations seen so far.
    pub fn ops(&self) -> u64 {
        *self.0.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This fault plan as the `Fs` of a writer.
    pub fn shared(&self) -> Arc<dyn Fs> {
        Arc::new(self.clone())
    }

    /// Counts one operation on `path`; fails it once past [`Faults::fail_after_ops`].
    fn op(&self, path: &Path) -> io::Result<()> {
        let n = {
            let mut ops = self.0.ops.lock().unwrap_or_else(|p| p.into_inner());
            *ops += 1;
            *ops
        };
        match self.faults_for(path) {
            Some(f) if f.fail_after_ops.is_some_and(|k| n > k) => {
                Err(io::Error::from_raw_os_error(EIO))
            }
            _ => Ok(()),
        }
    }

    fn faults_for(&self, path: &Path) -> Option<std::sync::MutexGuard<'_, Faults>> {
        let faults = self.0.faults.lock().unwrap_or_else(|p| p.into_inner());
        let applies = faults
            .scope
            .as_deref()
            .is_none_or(|s| path.to_string_lossy().contains(s));
        applies.then_some(faults)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.op(path)?;
        if let Some(mut f) = self.faults_for(path)
            && f.failing_syncs > 0
        {
            f.failing_syncs -= 1;
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }

    fn wrap(&self, inner: File, path: &Path) -> Box<dyn FsFile> {
        Box::new(FaultyFile {
            inner,
            path: path.to_path_buf(),
            fs: self.clone(),
        })
    }

    fn check_create(&self, path: &Path) -> io::Result<()> {
        self.op(path)?;
        if self.faults_for(path).is_some_and(|f| f.failing_create) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: File,
    path: std::path::PathBuf,
    fs: FaultyFs,
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = buf.len();
        self.fs.op(&self.path)?;
        if let Some(mut f) = self.fs.faults_for(&self.path) {
            if f.eio {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            if let Some(max) = f.short_writes {
                n = n.min(max.max(1));
            }
            if let Some(space) = f.space.as_mut() {
                if *space == 0 && n > 0 {
                    return Err(io::Error::from_raw_os_error(ENOSPC));
                }
                n = n.min(usize::try_from(*space).unwrap_or(usize::MAX));
                *space -= n as u64;
            }
        }
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for FaultyFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl FsFile for FaultyFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.sync(&self.path)?;
        self.inner.sync_data()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.fs.sync(&self.path)?;
        self.inner.sync_all()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.fs.op(&self.path)?;
        if self
            .fs
            .faults_for(&self.path)
            .is_some_and(|f| f.failing_truncate)
        {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.set_len(len)
    }
}

impl Fs for FaultyFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.check_create(path)?;
        let f = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(self.wrap(f, path))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        self.check_create(path)?;
        Ok(self.wrap(File::create(path)?, path))
    }
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new().write(true).open(path)?;
        Ok(self.wrap(f, path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.op(to)?;
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.op(path)?;
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sync(dir)?;
        File::open(dir)?.sync_all()
    }
}

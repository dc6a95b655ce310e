//! Open-file reuse for cgroup files.
//!
//! A [`CgroupFile`] opens its file on first use, keeps the descriptor, and
//! re-reads it with `pread` at offset 0 into the caller's reused buffer: the
//! kernel regenerates a cgroup file's contents on every read from offset 0,
//! so one `open` per container lifetime replaces one per tick.
//!
//! It tells apart the three ways a read can come back empty-handed:
//! - the file does not exist but its directory does: the kernel or the
//!   configuration lacks it (`memory.peak` before 5.19, `memory.swap.current`
//!   without swap accounting, a v2 controller not enabled). It is remembered
//!   as absent and never retried.
//! - the directory is gone: the cgroup was removed ([`FileError::Gone`]). An
//!   open descriptor of a removed cgroup fails with `ENODEV`; the file reopens
//!   once in case the cgroup was recreated under the same path (a restarted
//!   systemd service) before reporting it.
//! - anything else ([`FileError::Io`]).
//!
//! One `pread` per file per tick: the cgroup counter files are single-record
//! `seq_file`s, whose first read at offset 0 returns the whole contents when
//! the buffer is large enough, so a read that does not fill the buffer has
//! read everything (as it has for a regular file). Only a full buffer leads
//! to growing it and reading on. Confirming EOF with a second `pread` would
//! add ~0.4 µs per file, a quarter of a container's read cost. Multi-record
//! files (`cgroup.procs`) are read with [`CgroupFile::read_head`] for their
//! first line only.
//!
//! [`read_parsed`] turns those outcomes, plus a parser's verdict, into what a
//! reader needs: a value, "absent", or a reason to stop (vanished, or
//! malformed and counted in [`Skips`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::parse::ParseError;
use super::reader::ReadError;
use crate::skips::Skips;

/// Initial size of the read buffer; most cgroup files are far smaller, a v2
/// `memory.stat` is ~1.5 KiB.
pub const INITIAL_BUF_BYTES: usize = 8 * 1024;

/// Largest file [`CgroupFile::read`] will read; beyond this something is
/// wrong and the read fails rather than growing the buffer without bound.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Why a cgroup file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file's directory no longer exists: the cgroup was removed.
    #[error("cgroup directory is gone")]
    Gone,
    /// Any other I/O failure.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"opening"`, `"reading"`, `"writing"`).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{0}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
}

impl FileError {
    /// True when a write was refused for good: read-only mount (`EROFS`), no
    /// permission (`EACCES`, `EPERM`), the file does not take writes
    /// (`EINVAL`, or `EBADF` after falling back to a read-only open).
    pub fn is_write_refused(&self) -> bool {
        match self {
            FileError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::EROFS | libc::EACCES | libc::EPERM | libc::EINVAL | libc::EBADF)
            ),
            FileError::Gone | FileError::TooLarge(_) => false,
        }
    }
}

/// How a [`CgroupFile`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only.
    Read,
    /// Read and write on the same descriptor (peak resets); falls back to
    /// read-only if the open for writing is refused.
    ReadWrite,
}

#[derive(Debug)]
enum State {
    /// Not opened yet (or closed after `ENODEV`).
    Closed,
    /// Open; `writable` says whether it was opened for writing.
    Open { file: File, writable: bool },
    /// Known not to exist while its directory does; never retried.
    Absent,
}

/// One cgroup file, opened lazily and kept open between reads.
#[derive(Debug)]
pub struct CgroupFile {
    path: PathBuf,
    access: Access,
    state: State,
    /// A settings file: reads are served from `cached` until
    /// [`CgroupFile::expire`].
    settings: bool,
    /// A settings file's last bytes read from the kernel, while fresh.
    cached: Option<Vec<u8>>,
}

fn is_gone_errno(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV))
}

fn is_write_refused_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS | libc::EACCES | libc::EPERM)
    )
}

impl CgroupFile {
    /// A read-only file at `dir/name`.
    pub fn new(dir: &Path, name: &str) -> Self {
        Self::with_access(dir, name, Access::Read)
    }

    /// A file at `dir/name` opened with `access`.
    pub fn with_access(dir: &Path, name: &str, access: Access) -> Self {
        CgroupFile {
            path: dir.join(name),
            access,
            state: State::Closed,
            settings: false,
            cached: None,
        }
    }

    /// A settings file (a limit, quota or weight): read from the kernel on
    /// the first read and on the first read after [`CgroupFile::expire`];
    /// the reads in between return the last bytes read. The readers expire
    /// settings on every [`super::cadence::SETTINGS_EVERY_FULL_READS`]th
    /// full read ([`super::cadence`]), so a change shows up at most
    /// `FULL_READ_EVERY × SETTINGS_EVERY_FULL_READS` ticks late. A counter
    /// must never be read this way.
    pub fn settings(dir: &Path, name: &str) -> Self {
        CgroupFile {
            settings: true,
            ..Self::new(dir, name)
        }
    }

    /// Makes the next read of a settings file go to the kernel (no effect on
    /// a counter file, which always does).
    pub fn expire(&mut self) {
        self.cached = None;
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once the file is known not to exist (while its directory does).
    pub fn is_absent(&self) -> bool {
        matches!(self.state, State::Absent)
    }

    /// Remembers the file as absent: it will not be opened again.
    pub fn mark_absent(&mut self) {
        self.state = State::Absent;
    }

    /// True when the file exists and is open for writing. Opens it if needed;
    /// `Ok(false)` when it is absent or only readable.
    pub fn open_writable(&mut self) -> Result<bool, FileError> {
        self.ensure_open()?;
        Ok(matches!(self.state, State::Open { writable: true, .. }))
    }

    /// Opens the file unless it is open or known absent. `ENOENT` with the
    /// directory present marks it absent; with the directory gone it is
    /// [`FileError::Gone`].
    fn ensure_open(&mut self) -> Result<(), FileError> {
        if !matches!(self.state, State::Closed) {
            return Ok(());
        }
        let writable = self.access == Access::ReadWrite;
        let opened = if writable {
            match OpenOptions::new().read(true).write(true).open(&self.path) {
                Err(e) if is_write_refused_errno(&e) => {
                    File::open(&self.path).map(|file| (file, false))
                }
                other => other.map(|file| (file, true)),
            }
        } else {
            File::open(&self.path).map(|file| (file, false))
        };
        match opened {
            Ok((file, writable)) => {
                self.state = State::Open { file, writable };
                Ok(())
            }
            Err(e) if is_gone_errno(&e) => {
                if self.dir_exists() {
                    self.state = State::Absent;
                    Ok(())
                } else {
                    Err(FileError::Gone)
                }
            }
            Err(source) => Err(FileError::Io {
                op: "opening",
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn dir_exists(&self) -> bool {
        self.path.parent().is_some_and(Path::is_dir)
    }

    /// Reads the whole file from offset 0 into `buf` (scratch space whose
    /// length is unspecified afterwards) and returns its contents, or
    /// `Ok(None)` when the file is absent.
    ///
    /// A `pread` that does not fill `buf` ends the read (see the module
    /// docs: true of regular files and of single-record `seq_file`s, i.e.
    /// every cgroup counter file); a full `buf` is grown and read on until
    /// `pread` returns 0 bytes.
    pub fn read<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Option<&'b [u8]>, FileError> {
        if !self.settings {
            return self.read_inner(buf, false);
        }
        if let Some(bytes) = &self.cached {
            buf.clear();
            buf.extend_from_slice(bytes);
            return Ok(Some(buf.as_slice()));
        }
        let read = self.read_inner(buf, false)?;
        if let Some(bytes) = read {
            self.cached = Some(bytes.to_vec());
        }
        Ok(read)
    }

    /// Like [`CgroupFile::read`] but with a single `pread`: enough for the
    /// head of a long file (the first pid of `cgroup.procs`).
    pub fn read_head<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Option<&'b [u8]>, FileError> {
        self.read_inner(buf, true)
    }

    fn read_inner<'b>(
        &mut self,
        buf: &'b mut Vec<u8>,
        head_only: bool,
    ) -> Result<Option<&'b [u8]>, FileError> {
        if buf.len() < INITIAL_BUF_BYTES {
            buf.resize(INITIAL_BUF_BYTES, 0);
        }
        let mut reopened = false;
        loop {
            self.ensure_open()?;
            let State::Open { file, .. } = &self.state else {
                return Ok(None);
            };
            match read_all_at0(file, buf, head_only) {
                Ok(n) => return Ok(buf.get(..n)),
                Err(ReadFail::TooLarge) => return Err(FileError::TooLarge(self.path.clone())),
                Err(ReadFail::Io(e)) if is_gone_errno(&e) && !reopened => {
                    // Removed cgroup (ENODEV on the old descriptor); maybe
                    // recreated under the same path: reopen once.
                    self.state = State::Closed;
                    reopened = true;
                }
                Err(ReadFail::Io(e)) if is_gone_errno(&e) => {
                    self.state = State::Closed;
                    return Err(FileError::Gone);
                }
                Err(ReadFail::Io(source)) => {
                    return Err(FileError::Io {
                        op: "reading",
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Writes `data` at offset 0 on the same descriptor the reads use (v2
    /// `memory.peak` resets are per descriptor). Opens the file if needed;
    /// an absent file is an `ENOENT` [`FileError::Io`].
    pub fn write(&mut self, data: &[u8]) -> Result<(), FileError> {
        self.ensure_open()?;
        let State::Open { file, .. } = &self.state else {
            return Err(FileError::Io {
                op: "writing",
                path: self.path.clone(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
        };
        match file.write_at(data, 0) {
            Ok(n) if n == data.len() => Ok(()),
            Ok(_) => Err(FileError::Io {
                op: "writing",
                path: self.path.clone(),
                source: io::Error::from(io::ErrorKind::WriteZero),
            }),
            Err(e) if is_gone_errno(&e) => {
                self.state = State::Closed;
                if self.dir_exists() {
                    Err(FileError::Io {
                        op: "writing",
                        path: self.path.clone(),
                        source: e,
                    })
                } else {
                    Err(FileError::Gone)
                }
            }
            Err(source) => Err(FileError::Io {
                op: "writing",
                path: self.path.clone(),
                source,
            }),
        }
    }
}

enum ReadFail {
    Io(io::Error),
    TooLarge,
}

/// `pread`s `file` from offset 0 into `buf` until a read leaves `buf` not
/// full or returns 0 (or once, for `head_only`), growing `buf` as needed;
/// returns the byte count.
fn read_all_at0(file: &File, buf: &mut Vec<u8>, head_only: bool) -> Result<usize, ReadFail> {
    let mut filled = 0usize;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_FILE_BYTES {
                return Err(ReadFail::TooLarge);
            }
            let grown = buf
                .len()
                .saturating_mul(2)
                .clamp(INITIAL_BUF_BYTES, MAX_FILE_BYTES);
            buf.resize(grown, 0);
        }
        let Some(spare) = buf.get_mut(filled..) else {
            return Ok(filled);
        };
        match file.read_at(spare, filled as u64) {
            Ok(0) => return Ok(filled),
            Ok(n) => {
                filled = filled.saturating_add(n);
                if head_only || filled < buf.len() {
                    return Ok(filled);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadFail::Io(e)),
        }
    }
}

/// Why a reader stops reading one part of a cgroup (CPU, memory, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The cgroup is gone: the whole read fails.
    Vanished,
    /// A file was malformed or unreadable; already counted in [`Skips`].
    /// The part is dropped for this tick.
    Skipped,
}

/// Reads `file` and parses it with `parse`.
///
/// Returns `Ok(Some(value))`; `Ok(None)` when the file is absent (also when
/// its directory is gone but the cgroup's `primary_dir` still exists: the
/// cgroup just is not in that hierarchy, and the file is marked absent);
/// `Err(Stop::Vanished)` when `primary_dir` is gone too (or not given);
/// `Err(Stop::Skipped)` after counting a parse or I/O failure in `skips`.
pub fn read_parsed<T>(
    file: &mut CgroupFile,
    buf: &mut Vec<u8>,
    skips: &mut Skips,
    primary_dir: Option<&Path>,
    parse: impl FnOnce(&[u8]) -> Result<T, ParseError>,
) -> Result<Option<T>, Stop> {
    match file.read(buf) {
        Ok(Some(bytes)) => match parse(bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                skips.malformed(file.path(), &e.to_string());
                Err(Stop::Skipped)
            }
        },
        Ok(None) => Ok(None),
        Err(FileError::Gone) => {
            if primary_dir.is_some_and(Path::is_dir) {
                file.mark_absent();
                Ok(None)
            } else {
                Err(Stop::Vanished)
            }
        }
        Err(e) => {
            skips.malformed(file.path(), &e.to_string());
            Err(Stop::Skipped)
        }
    }
}

/// Turns a part's outcome into the part's value: a skipped part is `None`,
/// a vanished cgroup is [`ReadError::Vanished`].
pub fn part<T>(outcome: Result<Option<T>, Stop>) -> Result<Option<T>, ReadError> {
    match outcome {
        Ok(v) => Ok(v),
        Err(Stop::Skipped) => Ok(None),
        Err(Stop::Vanished) => Err(ReadError::Vanished),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn settings_files_are_reread_only_after_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("memory.max"), "100\n").expect("write");
        let mut f = CgroupFile::settings(dir.path(), "memory.max");
        let mut buf = Vec::new();
        assert_eq!(f.read(&mut buf).expect("read"), Some(&b"100\n"[..]));
        std::fs::write(dir.path().join("memory.max"), "200\n").expect("write");
        for _ in 0..10 {
            assert_eq!(
                f.read(&mut buf).expect("read"),
                Some(&b"100\n"[..]),
                "served from the last read"
            );
        }
        f.expire();
        assert_eq!(
            f.read(&mut buf).expect("read"),
            Some(&b"200\n"[..]),
            "re-read after expiry"
        );
        std::fs::write(dir.path().join("memory.max"), "250\n").expect("write");
        assert_eq!(f.read(&mut buf).expect("read"), Some(&b"200\n"[..]));
        // Counters are never cached.
        let mut counter = CgroupFile::new(dir.path(), "memory.max");
        assert_eq!(counter.read(&mut buf).expect("read"), Some(&b"250\n"[..]));
        std::fs::write(dir.path().join("memory.max"), "300\n").expect("write");
        assert_eq!(counter.read(&mut buf).expect("read"), Some(&b"300\n"[..]));
    }

    use super::*;

    #[test]
    fn reads_grows_and_remembers_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = vec![b'7'; 3 * INITIAL_BUF_BYTES + 5];
        std::fs::write(dir.path().join("big"), &big).expect("write");
        let mut buf = Vec::new();
        let mut f = CgroupFile::new(dir.path(), "big");
        assert_eq!(f.read(&mut buf).expect("read"), Some(&big[..]));
        // Re-read after the contents change: same descriptor, offset 0.
        std::fs::write(dir.path().join("big"), b"12\n").expect("write");
        assert_eq!(f.read(&mut buf).expect("read"), Some(&b"12\n"[..]));

        let mut missing = CgroupFile::new(dir.path(), "nope");
        assert!(matches!(missing.read(&mut buf), Ok(None)));
        assert!(missing.is_absent());
        // Created later: still absent (not retried).
        std::fs::write(dir.path().join("nope"), b"1").expect("write");
        assert!(matches!(missing.read(&mut buf), Ok(None)));
    }

    #[test]
    fn gone_directory_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("cg");
        let mut f = CgroupFile::new(&sub, "memory.current");
        let mut buf = Vec::new();
        assert!(matches!(f.read(&mut buf), Err(FileError::Gone)));
        assert!(!f.is_absent());
    }

    #[test]
    fn writes_on_the_same_descriptor() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("memory.peak"), b"12345\n").expect("write");
        let mut f = CgroupFile::with_access(dir.path(), "memory.peak", Access::ReadWrite);
        assert!(f.open_writable().expect("open"));
        f.write(b"0\n").expect("write");
        let mut buf = Vec::new();
        assert_eq!(f.read(&mut buf).expect("read"), Some(&b"0\n345\n"[..]));
    }
}

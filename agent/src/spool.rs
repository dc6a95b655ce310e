//! The agent's bounded on-disk spool of unacknowledged batches.
//!
//! Every tick the shipper encodes one batch, [`Spool::append`]s it (which
//! assigns its `seq`), and only then sends it. The collector acknowledges
//! cumulatively ("everything ≤ seq N is stored") and [`Spool::ack`] forgets
//! what it covers. After a reconnect, or a crash and restart of the agent,
//! [`Spool::unacked`] replays what is left, in seq order. Together with the
//! collector ignoring an `(agent_id, seq)` it already stored, this gives
//! exactly-once storage across crashes of either side.
//!
//! # On disk
//!
//! A directory holding segment files (`<first seq>.seg`, each a header and
//! checksummed records, see [`format`](mod@format)) and a small state file
//! (`state`, see below). Appends are sequential writes to the newest (active) segment; a
//! segment is deleted when every record in it is acknowledged, or when the
//! spool is full and it is the oldest.
//!
//! # Identity and sequence numbers
//!
//! The state file holds the agent id (128 random bits, hex), the last
//! acknowledged seq, the next seq to assign and the running totals of what
//! was dropped because the spool was full. It is saved by writing a
//! temporary file, fsyncing it and renaming it over the old one. The
//! temporary file is then rewritten with the same content and kept: it is a
//! backup copy, and since it already owns its disk blocks the next save
//! overwrites them rather than allocating, so the state can usually still
//! be saved on a full disk (which matters: a failed append still uses up
//! its seq, and that must be remembered).
//!
//! `next_seq` never goes backwards: on open it is the maximum of the state
//! file's `next_seq`, `acked_seq + 1`, and one past the highest seq found in
//! (or named by) any segment. Segments are only deleted after the state
//! that makes them unnecessary was saved. Each segment header also names the
//! agent id, so losing the state file alone keeps the identity.
//!
//! If the state file *and* every segment are lost, nothing on this node
//! remembers which seqs were used, so the spool starts over with a **new
//! agent id** at seq 1: the collector deduplicates on `(agent_id, seq)`, and
//! reusing the old id with restarted seqs would make it drop new batches as
//! duplicates. The old id's history simply ends. (The same happens if the
//! state is lost and no segment header is readable; batches found in such
//! segments are then replayed under the new id and may be stored twice.)
//!
//! # Damage
//!
//! Opening never fails because of what is inside the files: a record cut
//! short by a crash mid-write at the end of the newest segment is truncated
//! away; a corrupt record or garbage segment elsewhere is skipped, the file
//! rewritten without it, and the loss counted in the [`RecoveryReport`] and
//! logged. A missing or corrupt state file is rebuilt from its backup or
//! from the segments. Only failing to create or list the directory is an
//! error.
//!
//! One process owns a spool directory at a time; nothing locks it.

pub mod format;
mod recovery;
mod replay;
mod state;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, Scanned, Scanner};
use state::State;

pub use replay::{Replay, SpooledBatch};

/// Default bound on the spool's size on disk: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Default size at which the active segment is closed and a new one started:
/// 8 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// A segment is never larger than this fraction of `max_bytes`, so making
/// room when the spool is full drops at most about this share of it.
const MAX_SEGMENTS_SHARE: u64 = 8;

/// How the spool is bounded and how hard it tries to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Bound on the bytes of all segment files together (headers included).
    /// When an append would exceed it, the oldest segments are dropped first.
    pub max_bytes: u64,
    /// Target size of one segment file. Capped at `max_bytes / 8`, so that
    /// making room drops at most about an eighth of the spool at once. A
    /// batch larger than a segment gets a segment of its own.
    pub segment_bytes: u64,
    /// Fsync every appended record, and the directory after creating,
    /// renaming or deleting files. Without it a host crash (not an agent
    /// crash) can lose the most recent batches.
    pub fsync: bool,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: true,
        }
    }
}

/// Errors of the spool. Each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The configuration cannot work.
    #[error("invalid spool configuration: {0}")]
    InvalidConfig(String),
    /// Another process (or another `Spool` in this one) has the spool open:
    /// two agents sharing a spool would hand out the same seqs.
    #[error(
        "the spool {path} is in use by another upid-agent; give each agent its own --spool-dir"
    )]
    Locked {
        /// The spool directory.
        path: PathBuf,
    },
    /// The spool's lock file could not be opened or locked.
    #[error("locking the spool {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The spool directory could not be created.
    #[error("creating spool directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The spool directory could not be listed.
    #[error("listing spool directory {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The batch can never fit, even in an empty spool. Nothing was written
    /// and no seq was used.
    #[error(
        "batch of {payload_bytes} bytes cannot fit in a spool of at most {max_bytes} bytes \
         ({} bytes of headers per batch and segment); raise the spool size or send smaller batches",
        format::RECORD_HEADER_BYTES + format::SEGMENT_HEADER_BYTES
    )]
    TooLarge {
        /// Size of the rejected payload.
        payload_bytes: u64,
        /// The configured bound.
        max_bytes: u64,
    },
    /// Writing a batch failed (disk full, I/O error). The batch is not in
    /// the spool, but its `seq` is used up: send it from memory under that
    /// seq and count it as unspooled. The spool stays consistent.
    #[error("spooling batch seq {seq} to {path}: {source}")]
    Append {
        /// The seq assigned to the batch that could not be written.
        seq: u64,
        /// The segment file being written or created.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// An ack for a seq that was never assigned.
    #[error("ack for seq {seq}, but the last seq this spool assigned is {last_assigned}")]
    AckBeyondLast {
        /// The acknowledged seq.
        seq: u64,
        /// The highest seq assigned so far (0 if none).
        last_assigned: u64,
    },
    /// Saving the state file failed. The change took effect in memory and
    /// the next save (every ack) tries again.
    #[error("saving spool state {path}: {source}")]
    SaveState {
        /// The file or directory that failed.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Reading a segment failed.
    #[error("reading spool segment {path}: {source}")]
    Read {
        /// The segment file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A segment holds bytes that are not a valid record (damaged after the
    /// spool was opened, or left in place because repairing failed).
    #[error(
        "spool segment {path}: {bytes} bytes at offset {offset} are not a valid record; skipped"
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the bad bytes start.
        offset: u64,
        /// How many bytes were skipped.
        bytes: u64,
    },
}

impl SpoolError {
    /// True when the error is the file system being full (or over quota).
    pub fn is_disk_full(&self) -> bool {
        let source = match self {
            SpoolError::Append { source, .. }
            | SpoolError::SaveState { source, .. }
            | SpoolError::CreateDir { source, .. } => source,
            _ => return false,
        };
        matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
    }

    /// The seq used up by a failed append, which the caller should still
    /// send from memory.
    pub fn unspooled_seq(&self) -> Option<u64> {
        match self {
            SpoolError::Append { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

/// Batches and bytes dropped because the spool was full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropReport {
    /// Unacknowledged batches dropped.
    pub batches: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

impl DropReport {
    /// True when nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.batches == 0 && self.bytes == 0
    }
}

/// The result of a successful [`Spool::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The seq assigned to the batch.
    pub seq: u64,
    /// What had to be dropped (oldest first) to make room for it; already
    /// logged and added to [`Spool::dropped_total`].
    pub dropped: DropReport,
}

/// Where the identity and counters came from when the spool was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRecovery {
    /// The state file was valid.
    Loaded,
    /// The state file was missing or corrupt (`problem`); its backup copy
    /// was valid and used.
    FromBackup {
        /// What was wrong with the state file.
        problem: String,
    },
    /// No usable state file: the agent id came from the segment headers and
    /// the next seq from the records. The acked seq restarts at 0 (so
    /// acknowledged batches still on disk are replayed; the collector
    /// ignores them) and the drop totals restart at 0.
    FromSegments {
        /// What was wrong with the state file.
        problem: String,
    },
    /// No usable state and no segment naming an agent: a new agent id was
    /// generated and seqs start at 1. `problem` is `None` for a new spool.
    NewAgentId {
        /// What was lost, if this was not simply a new spool.
        problem: Option<String>,
    },
}

/// What was wrong with a damaged file found when opening the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The newest segment ended in a partial record (a crash mid-write).
    TornTail,
    /// Records failing their length, checksum or sequence check.
    CorruptRecords,
    /// The file does not start with a valid segment header (garbage, or a
    /// crash while the segment was being created).
    BadHeader,
    /// The segment header names another agent: not written by this spool.
    ForeignAgent {
        /// The agent id in the header.
        agent_id: String,
    },
    /// The file could not be opened or read.
    Unreadable {
        /// What the OS said.
        error: String,
    },
}

/// What was done about a damaged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Cut back to the end of its last valid record.
    Truncated,
    /// Rewritten with only its valid records.
    Rewritten,
    /// Deleted: nothing usable was left in it.
    Removed,
    /// Left as it is (repairing failed, see `error`); its valid records are
    /// still replayed and the bad bytes skipped on every read.
    LeftInPlace {
        /// Why it could not be repaired.
        error: String,
    },
}

/// One damaged file found when opening the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedFile {
    /// The file.
    pub path: PathBuf,
    /// What was wrong.
    pub damage: Damage,
    /// Unacknowledged batches lost. Exact where the seqs around the damage
    /// are known (the gap between them); one per damaged stretch with no
    /// valid record after it (such as a torn last record).
    pub lost_records: u64,
    /// Bytes skipped.
    pub lost_bytes: u64,
    /// What was done about it.
    pub repair: Repair,
}

/// What [`Spool::open`] found and repaired. Everything in it was also logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Where identity and counters came from.
    pub state: StateRecovery,
    /// Set when the recovered state could not be saved (it is kept in
    /// memory and saved again on the next ack).
    pub state_save_error: Option<String>,
    /// Segment files in use.
    pub segments: usize,
    /// Unacknowledged batches waiting to be replayed.
    pub pending_batches: u64,
    /// Their payload bytes.
    pub pending_bytes: u64,
    /// Damaged files, oldest first.
    pub damaged: Vec<DamagedFile>,
}

impl RecoveryReport {
    /// Batches lost to damage, over all files.
    pub fn lost_records(&self) -> u64 {
        self.damaged.iter().map(|d| d.lost_records).sum()
    }

    /// Bytes skipped because of damage, over all files.
    pub fn lost_bytes(&self) -> u64 {
        self.damaged.iter().map(|d| d.lost_bytes).sum()
    }

    /// True when nothing was damaged or lost, and the state file was used
    /// as is (or the spool is new).
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
            && self.state_save_error.is_none()
            && matches!(
                self.state,
                StateRecovery::Loaded | StateRecovery::NewAgentId { problem: None }
            )
    }
}

/// One segment file in use, in memory: where it is and what it holds.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes of the file that belong to the spool (header and records).
    file_bytes: u64,
    /// Offset of the first record.
    data_start: u64,
    /// Valid records in the file.
    records: u64,
    /// Seq of the first and last record (meaningless when `records == 0`).
    first_seq: u64,
    last_seq: u64,
    /// Payload bytes of all records.
    payload_bytes: u64,
    /// How many of the records, and their payload bytes, are acknowledged
    /// (always a prefix).
    acked_records: u64,
    acked_payload_bytes: u64,
    /// Offset just past the acknowledged prefix.
    ack_cursor: u64,
}

impl Segment {
    fn pending_batches(&self) -> u64 {
        self.records - self.acked_records
    }

    fn pending_bytes(&self) -> u64 {
        self.payload_bytes - self.acked_payload_bytes
    }

    fn fully_acked(&self) -> bool {
        self.acked_records == self.records
    }

    /// Moves the acknowledged prefix forward to cover every record ≤ `acked`.
    fn advance_ack(&mut self, acked: u64) -> Result<(), SpoolError> {
        if self.fully_acked() || self.first_seq > acked {
            return Ok(());
        }
        if self.last_seq <= acked {
            self.acked_records = self.records;
            self.acked_payload_bytes = self.payload_bytes;
            self.ack_cursor = self.file_bytes;
            return Ok(());
        }
        let read_err = |source| SpoolError::Read {
            path: self.path.clone(),
            source,
        };
        let file = File::open(&self.path).map_err(read_err)?;
        let mut scanner = Scanner::new(file, self.ack_cursor, self.file_bytes);
        while let Some(item) = scanner.next_item().map_err(read_err)? {
            match item {
                Scanned::Record(r) if r.seq <= acked => {
                    self.acked_records += 1;
                    self.acked_payload_bytes += r.payload_bytes;
                    self.ack_cursor = r.end();
                }
                Scanned::Record(_) => break,
                Scanned::Damaged { offset, bytes } => {
                    tracing::warn!(path = %self.path.display(), offset, bytes, "spool segment damaged since it was opened; skipping bad bytes");
                    self.ack_cursor = offset + bytes;
                }
            }
        }
        Ok(())
    }
}

/// The spool: see the [module docs](self).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    /// Effective segment size (see [`SpoolConfig::segment_bytes`]).
    segment_limit_bytes: u64,
    state: State,
    agent_id_hex: String,
    /// Oldest first. When `active` is set, the last one is being appended to.
    segments: VecDeque<Segment>,
    active: Option<File>,
    /// Sum of `file_bytes` over `segments`.
    disk_bytes: u64,
    /// Reused buffer for encoding records.
    scratch: Vec<u8>,
    /// Holds the exclusive lock on `<dir>/lock` while the spool is open.
    _lock: File,
}

/// Name of the lock file in the spool directory.
pub const LOCK_FILE: &str = "lock";

/// Takes the spool directory's exclusive lock, creating the directory and
/// the lock file when missing. Released when the returned file is dropped
/// (also when the process dies).
fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    fs::create_dir_all(dir).map_err(|source| SpoolError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| SpoolError::Lock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(source)) => Err(SpoolError::Lock { path, source }),
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, recovering whatever a
    /// previous run left there; see the [module docs](self) for what is
    /// repaired. Fails only if the configuration is unusable or the
    /// directory cannot be created or listed.
    pub fn open(
        dir: impl AsRef<Path>,
        config: SpoolConfig,
    ) -> Result<(Spool, RecoveryReport), SpoolError> {
        let min_bytes = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 1;
        if config.max_bytes < min_bytes {
            return Err(SpoolError::InvalidConfig(format!(
                "max_bytes is {} but must be at least {min_bytes}",
                config.max_bytes
            )));
        }
        let dir = dir.as_ref().to_path_buf();
        let lock = lock_dir(&dir)?;
        let recovered = recovery::recover(&dir, &config)?;
        let disk_bytes = recovered.segments.iter().map(|s| s.file_bytes).sum();
        let spool = Spool {
            segment_limit_bytes: config
                .segment_bytes
                .min(config.max_bytes / MAX_SEGMENTS_SHARE)
                .max(SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES),
            agent_id_hex: state::agent_id_hex(&recovered.state.agent_id),
            dir,
            config,
            state: recovered.state,
            segments: recovered.segments,
            active: recovered.active,
            disk_bytes,
            scratch: Vec::new(),
            _lock: lock,
        };
        Ok((spool, recovered.report))
    }

    /// Spools one batch: assigns it the next seq and writes it (fsynced if
    /// configured) before returning, so it survives a crash from here on.
    ///
    /// If the spool would exceed `max_bytes`, the oldest segments are
    /// dropped first (whole segments), counted in [`Spool::dropped_total`]
    /// and logged; [`Appended::dropped`] says what went.
    ///
    /// Errors: [`SpoolError::TooLarge`] if the batch could never fit (no seq
    /// used); [`SpoolError::Append`] if writing failed, e.g. on a full disk
    /// ([`SpoolError::is_disk_full`]). After a write failure the partial
    /// record is cut off again, the seq stays used (see
    /// [`SpoolError::unspooled_seq`]) and the spool remains usable.
    pub fn append(&mut self, payload: &[u8]) -> Result<Appended, SpoolError> {
        let payload_bytes = payload.len() as u64;
        let record_bytes = RECORD_HEADER_BYTES + payload_bytes;
        if u32::try_from(payload.len()).is_err()
            || SEGMENT_HEADER_BYTES + record_bytes > self.config.max_bytes
        {
            return Err(SpoolError::TooLarge {
                payload_bytes,
                max_bytes: self.config.max_bytes,
            });
        }
        let seq = self.state.next_seq;
        self.state.next_seq = seq.saturating_add(1);

        let active_full = self.active.is_some()
            && self.segments.back().is_some_and(|s| {
                s.records > 0 && s.file_bytes + record_bytes > self.segment_limit_bytes
            });
        if active_full {
            self.active = None;
            self.remove_acked_segments_saving_state();
        }
        let dropped = self.make_room(record_bytes);
        match self.write_record(seq, payload) {
            Ok(()) => Ok(Appended { seq, dropped }),
            Err(e) => {
                // The seq is used up (the caller sends the batch from
                // memory under it), so it must not be handed out again
                // after a restart.
                if let Err(save) = self.save_state() {
                    tracing::warn!(error = %save, seq, "could not record the used-up seq of an unspooled batch");
                }
                Err(e)
            }
        }
    }

    /// Records that the collector stored every batch with seq ≤ `seq`, and
    /// deletes segments that hold nothing else. Acks are cumulative; one at
    /// or below an earlier ack is a no-op.
    ///
    /// Errors: [`SpoolError::AckBeyondLast`] for a seq never assigned
    /// (nothing changes). [`SpoolError::SaveState`] or
    /// [`SpoolError::Read`] when persisting or accounting failed: the ack
    /// still took effect in memory, and segments are only deleted once a
    /// later save succeeds.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let last_assigned = self.last_assigned_seq();
        if seq > last_assigned {
            return Err(SpoolError::AckBeyondLast { seq, last_assigned });
        }
        if seq <= self.state.acked_seq {
            return Ok(());
        }
        self.state.acked_seq = seq;
        let mut first_err = None;
        for seg in self.segments.iter_mut() {
            if seg.records == 0 {
                continue;
            }
            if seg.first_seq > seq {
                break;
            }
            if let Err(e) = seg.advance_ack(seq) {
                first_err.get_or_insert(e);
            }
        }
        self.save_state()?;
        let removable = self.removable_acked_segments();
        self.remove_front_segments(removable);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Replays every unacknowledged batch, oldest first. Reads one record at
    /// a time, so memory use is bounded by the largest batch. See
    /// [`Replay`] for how read errors and damage show up.
    pub fn unacked(&self) -> Replay<'_> {
        self.replay_from(self.state.acked_seq.saturating_add(1))
    }

    /// Replays the spooled batches with seq ≥ `from_seq`, oldest first
    /// (acknowledged batches not yet deleted included).
    pub fn replay_from(&self, from_seq: u64) -> Replay<'_> {
        Replay::new(self, from_seq)
    }

    /// Unacknowledged batches in the spool.
    pub fn pending_batches(&self) -> u64 {
        self.segments.iter().map(Segment::pending_batches).sum()
    }

    /// Payload bytes of the unacknowledged batches in the spool.
    pub fn pending_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::pending_bytes).sum()
    }

    /// Bytes of all segment files, the figure bounded by `max_bytes`.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Running totals of batches and payload bytes dropped because the
    /// spool was full, since the spool was created (persisted).
    pub fn dropped_total(&self) -> DropReport {
        DropReport {
            batches: self.state.dropped_batches,
            bytes: self.state.dropped_bytes,
        }
    }

    /// Counts a batch that could never be spooled ([`SpoolError::TooLarge`])
    /// as dropped, so the loss reaches the collector like a full spool's
    /// instead of vanishing. It uses up the seq the batch was built with,
    /// as a batch dropped from a full spool does: the collector sees a gap,
    /// and delivered + dropped = seqs assigned still holds.
    pub fn record_unspoolable(&mut self, payload_bytes: u64) {
        self.state.next_seq = self.state.next_seq.saturating_add(1);
        self.state.dropped_batches = self.state.dropped_batches.saturating_add(1);
        self.state.dropped_bytes = self.state.dropped_bytes.saturating_add(payload_bytes);
        tracing::warn!(
            payload_bytes,
            max_bytes = self.config.max_bytes,
            dropped_batches_total = self.state.dropped_batches,
            "a batch larger than the whole spool was dropped; raise --spool-max-mib"
        );
        if let Err(e) = self.save_state() {
            tracing::warn!(error = %e, "could not record the dropped batch in the spool state");
        }
    }

    /// This agent's id: 32 lower-case hex digits, stable across restarts.
    pub fn agent_id(&self) -> &str {
        &self.agent_id_hex
    }

    /// The seq the next append will get (seqs start at 1).
    pub fn next_seq(&self) -> u64 {
        self.state.next_seq
    }

    /// The highest acknowledged seq (0 if none).
    pub fn acked_seq(&self) -> u64 {
        self.state.acked_seq
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the spool was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    fn last_assigned_seq(&self) -> u64 {
        self.state.next_seq.saturating_sub(1)
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        state::save(&self.dir, &self.state, self.config.fsync)
            .map_err(|(path, source)| SpoolError::SaveState { path, source })
    }

    /// How many segments at the front are fully acknowledged and not the
    /// active one.
    fn removable_acked_segments(&self) -> usize {
        let n = self.segments.iter().take_while(|s| s.fully_acked()).count();
        if self.active.is_some() && n == self.segments.len() {
            n.saturating_sub(1)
        } else {
            n
        }
    }

    /// Deletes fully acknowledged segments, after saving the state that
    /// makes them unnecessary.
    fn remove_acked_segments_saving_state(&mut self) {
        let n = self.removable_acked_segments();
        if n == 0 {
            return;
        }
        match self.save_state() {
            Ok(()) => self.remove_front_segments(n),
            Err(e) => {
                tracing::warn!(error = %e, "keeping acknowledged spool segments until the state can be saved");
            }
        }
    }

    /// Deletes the `n` oldest segments (whose loss is already accounted
    /// for and saved).
    fn remove_front_segments(&mut self, n: usize) {
        for _ in 0..n {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            if self.segments.is_empty() {
                self.active = None;
            }
            self.disk_bytes -= seg.file_bytes;
            if let Err(e) = fs::remove_file(&seg.path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %seg.path.display(), error = %e, "could not delete spool segment");
            }
        }
        if n > 0
            && self.config.fsync
            && let Err(e) = state::sync_dir(&self.dir)
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not fsync spool directory");
        }
    }

    /// Drops the oldest segments until a record of `record_bytes` fits.
    fn make_room(&mut self, record_bytes: u64) -> DropReport {
        let mut n = 0;
        let mut freed_bytes = 0;
        let mut dropped = DropReport::default();
        loop {
            let left = self.segments.len() - n;
            // Would the record go into a new segment (needing a header)?
            let new_segment = self.active.is_none() || left == 0;
            let needed = record_bytes + if new_segment { SEGMENT_HEADER_BYTES } else { 0 };
            if self.disk_bytes - freed_bytes + needed <= self.config.max_bytes {
                break;
            }
            let Some(oldest) = self.segments.get(n) else {
                break;
            };
            dropped.batches += oldest.pending_batches();
            dropped.bytes += oldest.pending_bytes();
            freed_bytes += oldest.file_bytes;
            n += 1;
        }
        if n == 0 {
            return dropped;
        }
        if !dropped.is_empty() {
            self.state.dropped_batches += dropped.batches;
            self.state.dropped_bytes += dropped.bytes;
            tracing::warn!(
                dropped_batches = dropped.batches,
                dropped_bytes = dropped.bytes,
                dropped_batches_total = self.state.dropped_batches,
                max_bytes = self.config.max_bytes,
                "spool full: dropped the oldest unacknowledged batches"
            );
        }
        // Counts and next_seq are saved before the segments go, so a crash
        // in between neither forgets the drop nor reuses a seq.
        if let Err(e) = self.save_state() {
            tracing::warn!(error = %e, "could not save spool drop counts; kept in memory");
        }
        self.remove_front_segments(n);
        dropped
    }

    /// Writes one record to the active segment, starting one if needed. On
    /// failure cuts the file back to where it was.
    fn write_record(&mut self, seq: u64, payload: &[u8]) -> Result<(), SpoolError> {
        if self.active.is_none() {
            self.start_segment(seq)?;
        }
        let (Some(file), Some(seg)) = (self.active.as_ref(), self.segments.back_mut()) else {
            return Err(SpoolError::Append {
                seq,
                path: self.dir.clone(),
                source: io::Error::other("no active segment"),
            });
        };
        let offset = seg.file_bytes;
        self.scratch.clear();
        format::encode_record(seq, payload, &mut self.scratch);
        let written = file.write_all_at(&self.scratch, offset).and_then(|()| {
            if self.config.fsync {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        let record_bytes = self.scratch.len() as u64;
        if self.scratch.capacity() > 4 * 1024 * 1024 {
            self.scratch = Vec::new();
        }
        if let Err(source) = written {
            let undone = file.set_len(offset).and_then(|()| {
                if self.config.fsync {
                    file.sync_data()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = undone {
                // Leave this segment for good; the next append starts a
                // new one, and the bytes past `file_bytes` are skipped as
                // damage when the spool is next opened.
                tracing::warn!(path = %seg.path.display(), error = %e, "could not cut a failed record off the spool segment; starting a new segment");
                self.active = None;
            }
            return Err(SpoolError::Append {
                seq,
                path: seg.path.clone(),
                source,
            });
        }
        if seg.records == 0 {
            seg.first_seq = seq;
        }
        seg.records += 1;
        seg.last_seq = seq;
        seg.payload_bytes += payload.len() as u64;
        seg.file_bytes += record_bytes;
        self.disk_bytes += record_bytes;
        Ok(())
    }

    /// Creates a new segment file for records from `first_seq` on and makes
    /// it the active one.
    fn start_segment(&mut self, first_seq: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(format::segment_file_name(first_seq));
        let created = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            file.write_all_at(&format::segment_header(&self.state.agent_id), 0)?;
            if self.config.fsync {
                file.sync_data()?;
                state::sync_dir(&self.dir)?;
            }
            Ok::<_, io::Error>(file)
        })();
        match created {
            Ok(file) => {
                self.segments.push_back(Segment {
                    path,
                    file_bytes: SEGMENT_HEADER_BYTES,
                    data_start: SEGMENT_HEADER_BYTES,
                    records: 0,
                    first_seq,
                    last_seq: first_seq,
                    payload_bytes: 0,
                    acked_records: 0,
                    acked_payload_bytes: 0,
                    ack_cursor: SEGMENT_HEADER_BYTES,
                });
                self.disk_bytes += SEGMENT_HEADER_BYTES;
                self.active = Some(file);
                Ok(())
            }
            Err(source) => {
                let _ = fs::remove_file(&path);
                Err(SpoolError::Append {
                    seq: first_seq,
                    path,
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;

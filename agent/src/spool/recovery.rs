//! Opening a spool directory: load the state, validate every segment, repair
//! what a crash or bad disk left behind, and count what was lost.
//!
//! Three phases, so that no repair can make a used seq look unused:
//! 1. scan every segment (read only), counting damage and planning repairs;
//! 2. save the state, with `next_seq` past every seq seen or implied;
//! 3. repair: truncate torn tails, rewrite or delete damaged files, delete
//!    leftovers that are fully acknowledged.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, RecordAt, SEGMENT_HEADER_BYTES, Scanned, Scanner};
use super::state::{self, AgentId, Loaded, STATE_FILE, STATE_TMP_FILE, State};
use super::{
    Damage, DamagedFile, RecoveryReport, Repair, Segment, SpoolConfig, SpoolError, StateRecovery,
};

/// Suffix of a segment being rewritten during recovery.
const REWRITE_SUFFIX: &str = ".tmp";

/// What [`recover`] hands to the spool.
pub(super) struct Recovered {
    pub state: State,
    pub segments: VecDeque<Segment>,
    pub active: Option<File>,
    pub report: RecoveryReport,
}

/// A segment file found in the directory.
struct Candidate {
    /// The seq in its name.
    name_seq: u64,
    path: PathBuf,
    /// The open file and its length, or why it could not be opened.
    opened: Result<(File, u64), io::Error>,
    /// The agent id in its header, if the header is valid.
    header: Option<AgentId>,
}

/// Running summary of the valid records of one segment, in file order.
struct Summary {
    data_start: u64,
    records: u64,
    first_seq: u64,
    last_seq: u64,
    payload_bytes: u64,
    acked_records: u64,
    acked_payload_bytes: u64,
    ack_cursor: u64,
}

impl Summary {
    fn new(data_start: u64) -> Summary {
        Summary {
            data_start,
            records: 0,
            first_seq: 0,
            last_seq: 0,
            payload_bytes: 0,
            acked_records: 0,
            acked_payload_bytes: 0,
            ack_cursor: data_start,
        }
    }

    fn add(&mut self, r: &RecordAt, acked: u64) {
        if self.records == 0 {
            self.first_seq = r.seq;
        }
        self.records += 1;
        self.last_seq = r.seq;
        self.payload_bytes += r.payload_bytes;
        // Seqs increase, so the acknowledged records are a prefix.
        if r.seq <= acked {
            self.acked_records += 1;
            self.acked_payload_bytes += r.payload_bytes;
            self.ack_cursor = r.end();
        }
    }

    fn into_segment(self, path: PathBuf, file_bytes: u64) -> Segment {
        Segment {
            path,
            file_bytes,
            data_start: self.data_start,
            records: self.records,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            payload_bytes: self.payload_bytes,
            acked_records: self.acked_records,
            acked_payload_bytes: self.acked_payload_bytes,
            ack_cursor: self.ack_cursor,
        }
    }
}

/// What phase 3 does with a file.
enum Plan {
    /// Clean: use as is.
    Keep,
    /// Clean but without records: delete quietly.
    DropEmpty,
    /// A torn last record: cut the file at this offset.
    Truncate(u64),
    /// Damaged, with valid records: rewrite it with only those.
    Rewrite,
    /// Nothing usable in it: delete.
    Remove,
    /// Could not be read: leave it alone.
    Leave,
}

/// One segment file after phase 1.
struct Planned {
    path: PathBuf,
    len: u64,
    /// The last valid seq before this file (what the rewrite must exceed).
    prev_seq_before: u64,
    summary: Summary,
    plan: Plan,
    /// Index of this file in the report's damaged files.
    damaged: Option<usize>,
    /// The newest readable file of this agent: the one appends continue in.
    is_last: bool,
}

/// Damaged stretches whose lost seqs are not known yet: each waits for the
/// next valid record, whose seq closes the gap.
struct OpenGaps {
    /// (index into the report's damaged files, lowest seq the stretch can
    /// hold: one past the last valid seq, and at least the seq its file is
    /// named after).
    waiting: Vec<(usize, u64)>,
}

impl OpenGaps {
    fn push(&mut self, damaged_index: usize, lowest_seq: u64) {
        self.waiting.push((damaged_index, lowest_seq));
    }

    /// A valid record with `seq` follows: the unacknowledged seqs the
    /// stretch could hold, up to it, are lost. The whole gap is charged to
    /// the first damaged stretch.
    fn close(&mut self, seq: u64, acked: u64, damaged: &mut [DamagedFile]) {
        if let Some(&(index, lowest)) = self.waiting.first() {
            let gap = seq.saturating_sub(lowest.max(acked.saturating_add(1)));
            if let Some(d) = damaged.get_mut(index) {
                d.lost_records += gap;
            }
        }
        self.waiting.clear();
    }

    /// No valid record follows: count one lost record per stretch (unless
    /// it can only have held an acknowledged seq). Returns whether there
    /// was any such stretch.
    fn finish(&mut self, acked: u64, damaged: &mut [DamagedFile]) -> bool {
        for &(index, lowest) in &self.waiting {
            if let Some(d) = damaged.get_mut(index)
                && lowest > acked
            {
                d.lost_records += 1;
            }
        }
        let any = !self.waiting.is_empty();
        self.waiting.clear();
        any
    }
}

/// Recovers the spool in `dir`; see the spool module docs.
pub(super) fn recover(dir: &Path, config: &SpoolConfig) -> Result<Recovered, SpoolError> {
    fs::create_dir_all(dir).map_err(|source| SpoolError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let candidates = list_segments(dir)?;
    let (mut st, state_recovery) = resolve_state(dir, &candidates);
    let acked = st.acked_seq;

    // Phase 1: scan.
    let mut damaged: Vec<DamagedFile> = Vec::new();
    let mut gaps = OpenGaps {
        waiting: Vec::new(),
    };
    let mut prev_seq = 0u64;
    let mut highest_named = 0u64;
    let mut planned: Vec<Planned> = Vec::new();
    let mut foreign: Vec<(PathBuf, usize)> = Vec::new();
    let is_own = |c: &Candidate| c.opened.is_ok() && c.header.is_none_or(|h| h == st.agent_id);
    let last_own = candidates.iter().rposition(is_own);

    for (i, c) in candidates.into_iter().enumerate() {
        let Candidate {
            name_seq,
            path,
            opened,
            header,
        } = c;
        let (file, len) = match opened {
            Ok(x) => x,
            Err(e) => {
                highest_named = highest_named.max(name_seq);
                let lost_bytes = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
                damaged.push(DamagedFile {
                    path,
                    damage: Damage::Unreadable {
                        error: e.to_string(),
                    },
                    lost_records: 0,
                    lost_bytes,
                    repair: Repair::LeftInPlace {
                        error: e.to_string(),
                    },
                });
                gaps.push(damaged.len() - 1, prev_seq.saturating_add(1).max(name_seq));
                continue;
            }
        };
        if let Some(other) = header.filter(|h| *h != st.agent_id) {
            damaged.push(DamagedFile {
                path: path.clone(),
                damage: Damage::ForeignAgent {
                    agent_id: state::agent_id_hex(&other),
                },
                lost_records: count_records(file, len),
                lost_bytes: len,
                repair: Repair::Removed,
            });
            foreign.push((path, damaged.len() - 1));
            continue;
        }
        highest_named = highest_named.max(name_seq);
        let is_last = Some(i) == last_own;
        let prev_seq_before = prev_seq;

        if header.is_none() && len < SEGMENT_HEADER_BYTES {
            // Created but its header never (fully) written: a crash right
            // after starting a segment. No record can be in it.
            let index = (len > 0).then(|| {
                damaged.push(DamagedFile {
                    path: path.clone(),
                    damage: Damage::BadHeader,
                    lost_records: 0,
                    lost_bytes: len,
                    repair: Repair::Removed,
                });
                damaged.len() - 1
            });
            planned.push(Planned {
                path,
                len,
                prev_seq_before,
                summary: Summary::new(SEGMENT_HEADER_BYTES),
                plan: Plan::Remove,
                damaged: index,
                is_last,
            });
            continue;
        }

        let data_start = if header.is_some() {
            SEGMENT_HEADER_BYTES
        } else {
            0
        };
        let mut summary = Summary::new(data_start);
        let mut regions: Vec<(u64, u64)> = Vec::new();
        let mut read_error = None;
        let mut my_damage: Option<usize> = None;
        let mut scanner = Scanner::new(file, data_start, len);
        let mut pos = data_start;
        loop {
            let item = match scanner.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    // Unreadable from here on: the rest is lost.
                    read_error = Some(e.to_string());
                    Scanned::Damaged {
                        offset: pos,
                        bytes: len - pos,
                    }
                }
            };
            let (offset, bytes, opens_gap) = match item {
                Scanned::Record(r) if r.seq > prev_seq => {
                    gaps.close(r.seq, acked, &mut damaged);
                    prev_seq = r.seq;
                    summary.add(&r, acked);
                    pos = r.end();
                    continue;
                }
                // Valid but out of order: a stale or duplicated copy. Skipped
                // like damage, but it hides no seq we have not seen.
                Scanned::Record(r) => (r.offset, r.total_bytes(), false),
                Scanned::Damaged { offset, bytes } => (offset, bytes, true),
            };
            let index = *my_damage.get_or_insert_with(|| {
                damaged.push(DamagedFile {
                    path: path.clone(),
                    damage: if header.is_some() {
                        Damage::CorruptRecords
                    } else {
                        Damage::BadHeader
                    },
                    lost_records: 0,
                    lost_bytes: 0,
                    repair: Repair::Removed,
                });
                damaged.len() - 1
            });
            if let Some(d) = damaged.get_mut(index) {
                d.lost_bytes += bytes;
            }
            if opens_gap {
                gaps.push(index, prev_seq.saturating_add(1).max(name_seq));
            }
            regions.push((offset, bytes));
            pos = offset + bytes;
            if read_error.is_some() {
                break;
            }
        }

        let plan = match (my_damage, read_error) {
            (None, _) if summary.records == 0 => Plan::DropEmpty,
            (None, _) => Plan::Keep,
            (Some(index), Some(error)) => {
                if let Some(d) = damaged.get_mut(index) {
                    d.damage = Damage::Unreadable {
                        error: error.clone(),
                    };
                    d.repair = Repair::LeftInPlace { error };
                }
                Plan::Leave
            }
            (Some(index), None) => {
                let torn_tail = is_last
                    && header.is_some()
                    && regions.len() == 1
                    && regions.first().is_some_and(|&(o, b)| o + b == len);
                if torn_tail && let Some(d) = damaged.get_mut(index) {
                    d.damage = Damage::TornTail;
                }
                if summary.records == 0 {
                    Plan::Remove
                } else if torn_tail {
                    Plan::Truncate(regions.first().map_or(len, |&(o, _)| o))
                } else {
                    Plan::Rewrite
                }
            }
        };
        planned.push(Planned {
            path,
            len,
            prev_seq_before,
            summary,
            plan,
            damaged: my_damage,
            is_last,
        });
    }
    let damaged_after_last_record = gaps.finish(acked, &mut damaged);

    // Phase 2: next_seq never goes backwards. Take the max over everything
    // that remembers a used seq, and save it before any file is changed.
    st.next_seq = st
        .next_seq
        .max(st.acked_seq.saturating_add(1))
        .max(prev_seq.saturating_add(1))
        .max(highest_named.saturating_add(1));
    if damaged_after_last_record {
        // The damaged record after the last valid one (typically a torn
        // write) may have had its seq handed out already (without fsync, or
        // if the disk lied): never hand it out again.
        st.next_seq = st.next_seq.max(prev_seq.saturating_add(2));
    }
    let state_save_error = match state::save(dir, &st, config.fsync) {
        Ok(()) => None,
        Err((path, e)) => {
            tracing::warn!(path = %path.display(), error = %e, "could not save spool state; keeping it in memory");
            Some(format!("{}: {e}", path.display()))
        }
    };

    // Phase 3: repair.
    let mut touched_dir = false;
    for (path, index) in foreign {
        set_repair(&mut damaged, Some(index), remove(&path));
        touched_dir = true;
    }
    let mut segments = VecDeque::new();
    let mut active = None;
    for p in planned {
        let Planned {
            path,
            len,
            prev_seq_before,
            summary,
            plan,
            damaged: index,
            is_last,
        } = p;
        let mut usable_for_appends = true;
        let (summary, file_bytes) = match plan {
            Plan::Keep => (summary, len),
            Plan::DropEmpty | Plan::Remove => {
                let repair = remove(&path);
                touched_dir = true;
                set_repair(&mut damaged, index, repair);
                continue;
            }
            Plan::Leave => {
                usable_for_appends = false;
                (summary, len)
            }
            Plan::Truncate(at) => {
                touched_dir = true;
                match truncate(&path, at, config.fsync) {
                    Ok(()) => {
                        set_repair(&mut damaged, index, Repair::Truncated);
                        (summary, at)
                    }
                    Err(e) => {
                        usable_for_appends = false;
                        set_repair(&mut damaged, index, left_in_place(&e));
                        (summary, len)
                    }
                }
            }
            Plan::Rewrite => {
                touched_dir = true;
                let start = summary.data_start;
                match rewrite(
                    &path,
                    &st.agent_id,
                    start,
                    len,
                    prev_seq_before,
                    acked,
                    config.fsync,
                ) {
                    Ok((rewritten, new_len)) => {
                        set_repair(&mut damaged, index, Repair::Rewritten);
                        (rewritten, new_len)
                    }
                    Err(e) => {
                        // Still readable: replay skips the bad bytes.
                        usable_for_appends = false;
                        set_repair(&mut damaged, index, left_in_place(&e));
                        (summary, len)
                    }
                }
            }
        };
        let seg = summary.into_segment(path, file_bytes);
        if !is_last && seg.fully_acked() {
            // Acknowledged, then a crash before the segment was deleted.
            let _ = remove(&seg.path);
            touched_dir = true;
            continue;
        }
        if is_last && usable_for_appends {
            match OpenOptions::new().read(true).write(true).open(&seg.path) {
                Ok(f) => active = Some(f),
                Err(e) => {
                    tracing::warn!(path = %seg.path.display(), error = %e, "cannot reopen the newest spool segment for appending; starting a new one");
                }
            }
        }
        segments.push_back(seg);
    }
    if touched_dir
        && config.fsync
        && let Err(e) = state::sync_dir(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not fsync spool directory");
    }

    let report = RecoveryReport {
        state: state_recovery,
        state_save_error,
        segments: segments.len(),
        pending_batches: segments.iter().map(Segment::pending_batches).sum(),
        pending_bytes: segments.iter().map(Segment::pending_bytes).sum(),
        damaged,
    };
    log_report(dir, &report, &st);
    Ok(Recovered {
        state: st,
        segments,
        active,
        report,
    })
}

fn set_repair(damaged: &mut [DamagedFile], index: Option<usize>, repair: Repair) {
    if let Some(d) = index.and_then(|i| damaged.get_mut(i)) {
        d.repair = repair;
    }
}

fn left_in_place(e: &io::Error) -> Repair {
    Repair::LeftInPlace {
        error: e.to_string(),
    }
}

/// Segment files in `dir`, oldest first, opened and with their headers
/// read. Leftover rewrite temporaries are deleted.
fn list_segments(dir: &Path) -> Result<Vec<Candidate>, SpoolError> {
    let read_dir_err = |source| SpoolError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_dir_err)? {
        let entry = entry.map_err(read_dir_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::debug!(file = ?name, "ignoring a file with a non-UTF-8 name in the spool directory");
            continue;
        };
        let path = entry.path();
        if let Some(name_seq) = format::parse_segment_file_name(name) {
            let opened = File::open(&path).and_then(|f| {
                let meta = f.metadata()?;
                if !meta.is_file() {
                    return Err(io::Error::other("not a regular file"));
                }
                Ok((f, meta.len()))
            });
            let header = match &opened {
                Ok((f, len)) if *len >= SEGMENT_HEADER_BYTES => {
                    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
                    match f.read_exact_at(&mut h, 0) {
                        Ok(()) => format::parse_segment_header(&h),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            out.push(Candidate {
                name_seq,
                path,
                opened,
                header,
            });
        } else if name
            .strip_suffix(REWRITE_SUFFIX)
            .is_some_and(|n| format::parse_segment_file_name(n).is_some())
        {
            tracing::debug!(path = %path.display(), "removing an unfinished segment rewrite");
            let _ = fs::remove_file(&path);
        } else if name != STATE_FILE && name != STATE_TMP_FILE {
            tracing::debug!(path = %path.display(), "ignoring an unknown file in the spool directory");
        }
    }
    out.sort_by_key(|c| c.name_seq);
    Ok(out)
}

/// The state to start from, and where it came from.
fn resolve_state(dir: &Path, candidates: &[Candidate]) -> (State, StateRecovery) {
    match state::load(dir) {
        Loaded::Ok(s) => (s, StateRecovery::Loaded),
        Loaded::FromBackup { state, problem } => (state, StateRecovery::FromBackup { problem }),
        Loaded::Unusable { problem } => {
            let from_segments = candidates.iter().rev().find_map(|c| c.header);
            let problem_or_missing = || {
                problem
                    .clone()
                    .unwrap_or_else(|| format!("{} is missing", dir.join(STATE_FILE).display()))
            };
            match from_segments {
                Some(id) => (
                    State::fresh(id),
                    StateRecovery::FromSegments {
                        problem: problem_or_missing(),
                    },
                ),
                None => {
                    let problem = if problem.is_none() && candidates.is_empty() {
                        None
                    } else {
                        Some(format!(
                            "{}; no segment names the agent",
                            problem_or_missing()
                        ))
                    };
                    (
                        State::fresh(state::new_agent_id()),
                        StateRecovery::NewAgentId { problem },
                    )
                }
            }
        }
    }
}

fn remove(path: &Path) -> Repair {
    match fs::remove_file(path) {
        Ok(()) => Repair::Removed,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Repair::Removed,
        Err(e) => left_in_place(&e),
    }
}

fn truncate(path: &Path, len: u64, fsync: bool) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    if fsync {
        f.sync_data()?;
    }
    Ok(())
}

/// Counts the valid records in a file (for reporting a foreign segment).
fn count_records(file: File, len: u64) -> u64 {
    let mut scanner = Scanner::new(file, SEGMENT_HEADER_BYTES, len);
    let mut n = 0;
    while let Ok(Some(item)) = scanner.next_item() {
        if matches!(item, Scanned::Record(_)) {
            n += 1;
        }
    }
    n
}

/// Rewrites `path` with a fresh header and only the records phase 1 kept
/// (valid, and with seqs increasing past `prev_seq`), through a temporary
/// file renamed over it. Returns the new file's summary and length.
fn rewrite(
    path: &Path,
    agent_id: &AgentId,
    data_start: u64,
    len: u64,
    mut prev_seq: u64,
    acked: u64,
    fsync: bool,
) -> io::Result<(Summary, u64)> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(REWRITE_SUFFIX);
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut scanner = Scanner::new(File::open(path)?, data_start, len);
        let out = File::create(&tmp)?;
        let mut w = BufWriter::new(&out);
        w.write_all(&format::segment_header(agent_id))?;
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut summary = Summary::new(SEGMENT_HEADER_BYTES);
        let mut record = Vec::new();
        while let Some(item) = scanner.next_item()? {
            let Scanned::Record(r) = item else { continue };
            if r.seq <= prev_seq {
                continue;
            }
            prev_seq = r.seq;
            let payload = scanner.take_payload();
            record.clear();
            format::encode_record(r.seq, &payload, &mut record);
            w.write_all(&record)?;
            let moved = RecordAt { offset, ..r };
            summary.add(&moved, acked);
            offset = moved.end();
        }
        w.flush()?;
        drop(w);
        if fsync {
            out.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if fsync && let Some(parent) = path.parent() {
            state::sync_dir(parent)?;
        }
        Ok((summary, offset))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn log_report(dir: &Path, report: &RecoveryReport, st: &State) {
    match &report.state {
        StateRecovery::Loaded | StateRecovery::NewAgentId { problem: None } => {}
        StateRecovery::FromBackup { problem } => {
            tracing::warn!(dir = %dir.display(), %problem, "spool state file unusable; restored from its backup copy");
        }
        StateRecovery::FromSegments { problem } => {
            tracing::warn!(dir = %dir.display(), %problem, "spool state file lost; agent id and seq rebuilt from the segments, drop totals restart at 0");
        }
        StateRecovery::NewAgentId {
            problem: Some(problem),
        } => {
            tracing::warn!(dir = %dir.display(), %problem, agent_id = %state::agent_id_hex(&st.agent_id), "spool state and segments lost; starting over under a new agent id");
        }
    }
    for d in &report.damaged {
        tracing::warn!(
            path = %d.path.display(),
            damage = ?d.damage,
            lost_records = d.lost_records,
            lost_bytes = d.lost_bytes,
            repair = ?d.repair,
            "damaged spool file"
        );
    }
    tracing::info!(
        dir = %dir.display(),
        agent_id = %state::agent_id_hex(&st.agent_id),
        next_seq = st.next_seq,
        acked_seq = st.acked_seq,
        segments = report.segments,
        pending_batches = report.pending_batches,
        pending_bytes = report.pending_bytes,
        lost_records = report.lost_records(),
        "spool opened"
    );
}

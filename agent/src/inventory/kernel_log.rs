//! OOM kills as the kernel itself logs them, from `/dev/kmsg`.
//!
//! Container runtimes learn of an OOM kill from the memory cgroup's
//! notification, which they register only once the container runs: a
//! process killed in the first milliseconds (a `dd` whose buffer cannot
//! fit, a JVM sized above its limit) is often reported by Docker as a
//! plain `exit 137` with `OOMKilled: false` and no `oom` event (three times
//! in fifteen on this project's cgroup v1 test host). The kernel logs every
//! kill, with the cgroup of the task it killed; cAdvisor reads the same
//! lines. [`run`] follows the log from the moment it opens it and sends
//! one [`SourceUpdate::Event`] of kind `oom` per kill in a container
//! cgroup; the tracker then prefers these to the runtime's reports for
//! everything after [`SourceUpdate::OomWatch`]'s time.
//!
//! Two formats are understood: the one-line summary of kernels since 4.19
//! (`oom-kill:constraint=…,oom_memcg=…,task_memcg=…,task=…,pid=…,uid=…`)
//! and the older pair `Task in <cgroup> killed as a result of limit of
//! <cgroup>` … `Killed process <pid> (<comm>)`.
//!
//! With a state directory (the agent's spool directory), a restarted agent
//! resumes where it stopped ([`cursor`]): kills logged while it was down are
//! replayed, stamped with the time the kernel logged them.
//!
//! Reading `/dev/kmsg` needs root (or `CAP_SYSLOG` when
//! `kernel.dmesg_restrict` is 1) and, in a container, the device itself.
//! Where it cannot be opened, the agent logs why once and OOM kills come
//! from the runtimes alone, as before.

pub mod cursor;

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use upid::wire::v1;

use super::{Source, SourceUpdate, shutdown_requested, unix_now_ns};
use crate::cgroup::identity::identify;

/// The kernel log device when no other is configured.
pub const DEFAULT_KMSG_PATH: &str = "/dev/kmsg";

/// A `/dev/kmsg` record is at most about 1 KiB of text plus its
/// dictionary; a read into a smaller buffer fails with `EINVAL`.
const RECORD_BUFFER_BYTES: usize = 8192;

/// Where to read the kernel log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLogConfig {
    /// The kernel log device, normally [`DEFAULT_KMSG_PATH`].
    pub path: PathBuf,
    /// Where the read position is kept across restarts (the spool
    /// directory); `None` follows the log from its end at every start.
    pub state_dir: Option<PathBuf>,
    /// The host's `/proc` (`/host/proc` in a container), where a killed
    /// process's cgroup is looked up when the kernel did not log it.
    pub proc_root: PathBuf,
}

impl Default for KernelLogConfig {
    fn default() -> Self {
        KernelLogConfig {
            path: PathBuf::from(DEFAULT_KMSG_PATH),
            state_dir: None,
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// One record of `/dev/kmsg`: `<prio>,<seq>,<usec>,<flags>[,…];<text>`,
/// then dictionary lines that start with a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmsgRecord<'a> {
    /// The record's sequence number (gaps mean records were overwritten).
    pub seq: u64,
    /// Microseconds since boot on the kernel's clock.
    pub monotonic_us: u64,
    /// The message's first line, without the prefix.
    pub message: &'a str,
}

/// Splits one record as `read(2)` returned it; `None` when it has no
/// valid prefix.
pub fn parse_record(text: &str) -> Option<KmsgRecord<'_>> {
    let (prefix, rest) = text.split_once(';')?;
    let mut fields = prefix.split(',');
    let _priority: u32 = fields.next()?.parse().ok()?;
    let seq = fields.next()?.parse().ok()?;
    let monotonic_us = fields.next()?.parse().ok()?;
    let message = rest.split('\n').next().unwrap_or_default();
    Some(KmsgRecord {
        seq,
        monotonic_us,
        message,
    })
}

/// One OOM kill, as the kernel logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    /// The cgroup (memory hierarchy, relative to its root) of the killed
    /// task.
    pub task_cgroup: String,
    /// What ran out: a cgroup's limit, or the node's memory.
    pub limit: OomLimit,
    /// The killed task's command name (`comm`), when logged.
    pub task: String,
    /// The killed task's process id, when logged.
    pub pid: Option<u32>,
}

/// Why the OOM killer killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OomLimit {
    /// This cgroup's memory limit was reached.
    Cgroup(String),
    /// A cgroup's memory limit was reached; the kernel rate-limited the
    /// report that would have named it (see [`OomRecord::Unattributed`]).
    UnnamedCgroup,
    /// The whole node ran out of memory.
    Node,
}

/// What one message of the kernel log says about an OOM kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OomRecord {
    /// A kill with the killed task's cgroup, as logged.
    Kill(OomKill),
    /// A kill of which the kernel logged only its `Killed process PID
    /// (COMM)` line: it prints the report before it (the header and the
    /// `oom-kill:` summary with the cgroups) for at most 10 kills in 5 s,
    /// the kill line always. The task's cgroup has to be looked up
    /// ([`task_cgroup_of`]) while the process still exists.
    Unattributed(UnattributedKill),
}

/// A kill whose cgroups the kernel did not log (see
/// [`OomRecord::Unattributed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnattributedKill {
    /// The killed process (init pid namespace).
    pub pid: u32,
    /// Its command name.
    pub task: String,
    /// `Memory cgroup out of memory`: some cgroup's limit was reached
    /// (which one was not logged); else the node ran out of memory.
    pub memcg: bool,
}

impl UnattributedKill {
    /// The kill, once the task's cgroup is known.
    pub fn attributed(&self, task_cgroup: String) -> OomKill {
        OomKill {
            limit: if self.memcg {
                OomLimit::UnnamedCgroup
            } else {
                OomLimit::Node
            },
            task_cgroup,
            task: self.task.clone(),
            pid: Some(self.pid),
        }
    }
}

/// The cgroup path of process `pid` in the memory hierarchy, from
/// `<proc_root>/<pid>/cgroup`: the v1 `memory` line, else the v2 `0::`
/// line. `None` when the process is gone: reaped, or a zombie (the kernel
/// moves an exiting task to the root cgroup, so a zombie's file names `/`).
pub fn task_cgroup_of(proc_root: &Path, pid: u32) -> Option<String> {
    let dir = proc_root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // `pid (comm) S …`: the state follows the last ')'.
    let state = stat.rsplit_once(") ")?.1.chars().next()?;
    if matches!(state, 'Z' | 'X' | 'x') {
        return None;
    }
    let text = std::fs::read_to_string(dir.join("cgroup")).ok()?;
    let mut unified = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(path.to_string());
        }
        if controllers.is_empty() {
            unified = Some(path.to_string());
        }
    }
    unified
}

impl OomKill {
    /// What a person reads in the event: who was killed and why.
    pub fn detail(&self) -> String {
        let who = match self.pid {
            Some(pid) => format!("{} (pid {pid})", self.task),
            None => self.task.clone(),
        };
        match &self.limit {
            OomLimit::UnnamedCgroup => format!(
                "the kernel OOM killer killed {who}: a memory limit was reached (the kernel rate-limited its report, so not which one)"
            ),
            OomLimit::Cgroup(limit) if *limit == self.task_cgroup => {
                format!(
                    "the kernel OOM killer killed {who}: the container's memory limit was reached"
                )
            }
            OomLimit::Cgroup(limit) => {
                format!(
                    "the kernel OOM killer killed {who}: the memory limit of {limit} was reached"
                )
            }
            OomLimit::Node => {
                format!("the kernel OOM killer killed {who}: the node ran out of memory")
            }
        }
    }
}

/// Turns kernel log messages into [`OomKill`]s, one message at a time
/// (the older kernels' format spans several records).
#[derive(Debug, Default)]
pub struct OomParser {
    /// The task and limit cgroups of an older kernel's `Task in …` line,
    /// waiting for its `Killed process` line.
    pending: Option<(String, String)>,
    /// The pid of the last kill reported in full (summary or `Task in`
    /// pair): its `Killed process` line that follows is the same kill.
    reported_pid: Option<u32>,
}

impl OomParser {
    /// Feeds one message; returns the kill it completes when the kernel
    /// logged the killed task's cgroup (see [`OomParser::feed_record`] for
    /// the kills it did not).
    pub fn feed(&mut self, message: &str) -> Option<OomKill> {
        match self.feed_record(message)? {
            OomRecord::Kill(kill) => Some(kill),
            OomRecord::Unattributed(_) => None,
        }
    }

    /// Feeds one message; returns what it completes: a kill with its
    /// cgroup, or a `Killed process` line without the report that should
    /// have come before it.
    pub fn feed_record(&mut self, message: &str) -> Option<OomRecord> {
        if let Some(summary) = message.strip_prefix("oom-kill:") {
            self.pending = None;
            let kill = parse_summary(summary)?;
            self.reported_pid = kill.pid;
            return Some(OomRecord::Kill(kill));
        }
        if let Some(rest) = message.strip_prefix("Task in ") {
            let (task, limit) = rest.split_once(" killed as a result of limit of ")?;
            self.pending = Some((task.to_string(), limit.trim_end().to_string()));
            return None;
        }
        let (before, killed) = message
            .split_once("Killed process ")
            .or_else(|| message.split_once("Kill process "))?;
        let (pid, rest) = killed.split_once(' ')?;
        let pid: Option<u32> = pid.parse().ok();
        let task = rest
            .strip_prefix('(')
            .and_then(|r| r.rsplit_once(')'))
            .map(|(comm, _)| comm.to_string())
            .unwrap_or_default();
        if let Some((task_cgroup, limit)) = self.pending.take() {
            self.reported_pid = pid;
            return Some(OomRecord::Kill(OomKill {
                task_cgroup,
                limit: OomLimit::Cgroup(limit),
                task,
                pid,
            }));
        }
        if pid.is_some() && self.reported_pid == pid {
            // The kill line of a kill already reported in full.
            return None;
        }
        // Only the OOM killer's own line ("Memory cgroup out of memory:
        // Killed process …", "Out of memory: …", "Out of memory
        // (oom_kill_allocating_task): …") is a kill; older kernels repeat
        // it in a plain "Killed process" line.
        let oom_killer_line = before.ends_with(": ")
            && (before.contains("out of memory") || before.contains("Out of memory"));
        if !oom_killer_line {
            return None;
        }
        Some(OomRecord::Unattributed(UnattributedKill {
            pid: pid?,
            task,
            memcg: before.starts_with("Memory cgroup"),
        }))
    }
}

/// The fields of `oom-kill:constraint=…,…,task_memcg=…,task=…,pid=…,uid=…`,
/// taken from the right: cgroup paths and command names may hold commas.
fn parse_summary(summary: &str) -> Option<OomKill> {
    let (rest, _uid) = summary.rsplit_once(",uid=")?;
    let (rest, pid) = rest.rsplit_once(",pid=")?;
    let (rest, task) = rest.rsplit_once(",task=")?;
    let (rest, task_cgroup) = rest.rsplit_once(",task_memcg=")?;
    let limit = rest
        .rsplit_once(",oom_memcg=")
        .map_or(OomLimit::Node, |(_, limit)| {
            OomLimit::Cgroup(limit.to_string())
        });
    if !task_cgroup.starts_with('/') {
        return None;
    }
    Some(OomKill {
        task_cgroup: task_cgroup.to_string(),
        limit,
        task: task.to_string(),
        pid: pid.parse().ok(),
    })
}

/// The container a cgroup path belongs to: the path itself or its nearest
/// ancestor that is a container (a process in a sub-cgroup a container
/// made for itself is still that container's).
pub fn container_of(cgroup_path: &str) -> Option<String> {
    let mut path = cgroup_path.trim_end_matches('/');
    loop {
        if let Some(id) = identify(path).and_then(|i| i.container_id) {
            return Some(id);
        }
        let (parent, _) = path.rsplit_once('/')?;
        if parent.is_empty() {
            return None;
        }
        path = parent;
    }
}

/// The `oom` event of a kill, or `None` when the killed task was in no
/// container (a host service, a session).
pub fn oom_event(kill: &OomKill, timestamp_unix_ns: i64) -> Option<v1::LifecycleEvent> {
    let container_id = container_of(&kill.task_cgroup)?;
    Some(v1::LifecycleEvent {
        timestamp_unix_ns,
        container_id,
        kind: v1::EventKind::Oom as i32,
        detail: kill.detail(),
        ..Default::default()
    })
}

/// Why the kernel log could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum KernelLogError {
    /// Opening or positioning the device failed (not root, no
    /// `CAP_SYSLOG`, no device in this container).
    #[error("cannot read the kernel log {path}: {source}")]
    Open {
        /// The device.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A read failed for another reason than lost records.
    #[error("reading the kernel log {path} failed: {source}")]
    Read {
        /// The device.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// Opens the log at its oldest record when `resume` (a cursor of this
/// boot says where to go on from), else at its end: what was logged
/// before is someone else's.
fn open(path: &Path, resume: bool) -> Result<File, KernelLogError> {
    let open_error = |source| KernelLogError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(open_error)?;
    if !resume {
        file.seek(SeekFrom::End(0)).map_err(open_error)?;
    }
    Ok(file)
}

/// Where reading starts and how replayed records are stamped.
#[derive(Debug)]
struct Start {
    /// The cursor file, when there is a state directory and a boot id.
    cursor: Option<cursor::CursorFile>,
    /// Records up to this one were handled by an earlier run.
    handled_through: Option<u64>,
    /// Wall clock and the log's clock ([`log_clock_ns`]) at opening:
    /// records logged before are stamped `wall - (log clock - record)`.
    opened: Option<(i64, i64)>,
}

/// The clock the kernel stamps its log with, in ns: `CLOCK_MONOTONIC`.
///
/// Both count from boot and stop while the machine is suspended (unlike
/// `/proc/uptime`, which also has only 10 ms resolution). The log's clock
/// is the scheduler's (`local_clock`), which runs a few ms apart from
/// `CLOCK_MONOTONIC` (2 ms ahead, measured on this project's test VM), so a
/// replayed kill is stamped within a few ms of when it was logged.
fn log_clock_ns() -> i64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec)
}

impl Start {
    fn new(config: &KernelLogConfig) -> Start {
        let mut cursor = config
            .state_dir
            .as_deref()
            .zip(cursor::boot_id())
            .map(|(dir, boot)| cursor::CursorFile::new(dir, boot));
        let handled_through = cursor.as_mut().and_then(cursor::CursorFile::load);
        let opened = Some((unix_now_ns(), log_clock_ns()));
        Start {
            cursor,
            handled_through,
            opened,
        }
    }

    /// The time to stamp a kill with: when the kernel logged it, for a
    /// record from before opening; else now (it was just logged).
    fn stamp(&self, record_us: u64) -> i64 {
        let record_ns = i64::try_from(record_us.saturating_mul(1000)).unwrap_or(i64::MAX);
        match self.opened {
            Some((wall_ns, boot_ns)) if record_ns < boot_ns => wall_ns - (boot_ns - record_ns),
            _ => unix_now_ns(),
        }
    }
}

/// Follows the kernel log until `shutdown` turns true or `tx`'s receiver
/// goes: sends [`SourceUpdate::OomWatch`] with the time it started, then
/// one `oom` [`SourceUpdate::Event`] per kill in a container. When the log
/// cannot be opened it logs why (once) and returns; when a read fails it
/// sends `OomWatch { since_unix_ns: None }` and returns.
///
/// The reads block in a thread of their own (`upid-kmsg`), so a kill is
/// passed on as the kernel logs it, before the runtime's report of the
/// container's exit; that thread ends at the first record after the
/// receiver is gone (or with the process).
pub async fn run(
    config: KernelLogConfig,
    tx: mpsc::Sender<SourceUpdate>,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = Start::new(&config);
    let file = match open(&config.path, start.handled_through.is_some()) {
        Ok(file) => file,
        Err(e) => {
            warn!(
                "{e}; OOM kills are taken from the container runtime alone (the agent needs root or CAP_SYSLOG, and in a container the device)"
            );
            return;
        }
    };
    let watching = SourceUpdate::OomWatch {
        since_unix_ns: Some(unix_now_ns()),
    };
    if tx.send(watching).await.is_err() {
        return;
    }
    match start.handled_through {
        Some(seq) => {
            info!(path = %config.path.display(), after_seq = seq, "following the kernel log for OOM kills, replaying what came after the last run")
        }
        None => info!(path = %config.path.display(), "following the kernel log for OOM kills"),
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let reader_tx = tx.clone();
    let path = config.path.clone();
    let proc_root = config.proc_root.clone();
    let spawned = std::thread::Builder::new()
        .name("upid-kmsg".to_string())
        .stack_size(READER_STACK_BYTES)
        .spawn(move || {
            follow(&path, &proc_root, file, start, &reader_tx);
            drop(done_tx);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the kernel log reader; OOM kills are taken from the container runtime alone");
        let _ = tx
            .send(SourceUpdate::OomWatch {
                since_unix_ns: None,
            })
            .await;
        return;
    }
    tokio::select! {
        _ = done_rx => {}
        () = shutdown_requested(&mut shutdown) => {}
        () = tx.closed() => {}
    }
}

/// Stack of the reader thread: it holds a few small values, the record
/// buffer is on the heap.
const READER_STACK_BYTES: usize = 128 * 1024;

/// The reader thread: blocking reads, one record each, until a read fails
/// or `tx`'s receiver is gone.
fn follow(
    path: &Path,
    proc_root: &Path,
    mut file: File,
    mut start: Start,
    tx: &mpsc::Sender<SourceUpdate>,
) {
    let mut parser = OomParser::default();
    let mut last_seq: Option<u64> = start.handled_through;
    let mut lost_records = 0u64;
    let mut malformed_records = 0u64;
    let mut unattributed_kills = 0u64;
    let mut note_lost = |count: u64| {
        lost_records += count;
        warn!(
            lost_records_total = lost_records,
            "kernel log: records were overwritten before the agent read them; an OOM kill among them is missed"
        );
    };
    let mut buf = vec![0u8; RECORD_BUFFER_BYTES];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => {
                warn!(path = %path.display(), "the kernel log ended; OOM kills are taken from the container runtime alone from now on");
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // EPIPE: the ring buffer overwrote records before they were
            // read; the next read returns the oldest one left.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                note_lost(1);
                continue;
            }
            Err(source) => {
                let failure = KernelLogError::Read {
                    path: path.to_path_buf(),
                    source,
                };
                warn!(
                    "{failure}; OOM kills are taken from the container runtime alone from now on"
                );
                break;
            }
        };
        if tx.is_closed() {
            return;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        let Some(record) = parse_record(&text) else {
            malformed_records += 1;
            // Once, then every 100th: a broken device must not flood the log.
            if malformed_records % 100 == 1 {
                warn!(
                    malformed_records_total = malformed_records,
                    "kernel log: a record without a valid `<prio>,<seq>,<usec>,…;` prefix, skipped"
                );
            }
            continue;
        };
        if start.handled_through.is_some_and(|done| record.seq <= done) {
            continue;
        }
        if let Some(last) = last_seq
            && record.seq > last.saturating_add(1)
        {
            note_lost(record.seq - last - 1);
        }
        last_seq = Some(record.seq);
        let kill = match parser.feed_record(record.message) {
            Some(OomRecord::Kill(kill)) => Some(kill),
            Some(OomRecord::Unattributed(kill)) => {
                match task_cgroup_of(proc_root, kill.pid) {
                    Some(cgroup) => Some(kill.attributed(cgroup)),
                    None => {
                        unattributed_kills += 1;
                        // Once, then every 100th: an OOM storm must not
                        // flood the log.
                        if unattributed_kills % 100 == 1 {
                            warn!(
                                unattributed_kills_total = unattributed_kills,
                                pid = kill.pid,
                                task = %kill.task,
                                "kernel log: an OOM kill whose report the kernel rate-limited, of a process already gone: not attributed to a container (its oom_kill counter still counts it)"
                            );
                        }
                        None
                    }
                }
            }
            None => None,
        };
        if let Some(cursor) = start.cursor.as_mut()
            && kill.is_none()
        {
            cursor.save_if_due(record.seq);
        }
        let Some(kill) = kill else {
            continue;
        };
        let Some(event) = oom_event(&kill, start.stamp(record.monotonic_us)) else {
            debug!(cgroup = %kill.task_cgroup, task = %kill.task, "OOM kill outside any container");
            continue;
        };
        let update = SourceUpdate::Event {
            source: Source::Kernel,
            event,
        };
        if tx.blocking_send(update).is_err() {
            return;
        }
        if let Some(cursor) = start.cursor.as_mut() {
            cursor.save(record.seq);
        }
    }
    let _ = tx.blocking_send(SourceUpdate::OomWatch {
        since_unix_ns: None,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ID: &str = "44480a8643c06107bb8c978e693fbf52858dfc7663c55cce11d2355c5ca472a1";

    #[test]
    fn a_record_splits_into_sequence_time_and_message() {
        let text = format!("6,2207,1346224064,-;oom-kill:task_memcg=/docker/{ID}\n SUBSYSTEM=x\n");
        let record = parse_record(&text).unwrap();
        assert_eq!(record.seq, 2207);
        assert_eq!(record.monotonic_us, 1_346_224_064);
        assert_eq!(record.message, format!("oom-kill:task_memcg=/docker/{ID}"));
        assert_eq!(parse_record("garbage"), None);
        assert_eq!(parse_record("6,x,1,-;m"), None);
        assert_eq!(parse_record(";"), None);
    }

    #[test]
    fn container_of_walks_up_to_the_container() {
        assert_eq!(container_of(&format!("/docker/{ID}")).as_deref(), Some(ID));
        assert_eq!(
            container_of(&format!("/docker/{ID}/init.scope")).as_deref(),
            Some(ID)
        );
        assert_eq!(container_of("/system.slice/cron.service"), None);
        assert_eq!(container_of("/"), None);
        assert_eq!(container_of(""), None);
    }
    /// Verbatim from this project's test host (kernel 6.18, cgroup v1).
    const MEMCG_SUMMARY: &str = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=44480a8643c06107bb8c978e693fbf52858dfc7663c55cce11d2355c5ca472a1,mems_allowed=0,oom_memcg=/docker/44480a8643c06107bb8c978e693fbf52858dfc7663c55cce11d2355c5ca472a1,task_memcg=/docker/44480a8643c06107bb8c978e693fbf52858dfc7663c55cce11d2355c5ca472a1,task=busybox,pid=6798,uid=0";

    #[test]
    fn the_one_line_summary_of_a_memcg_kill() {
        let mut p = OomParser::default();
        let kill = p.feed(MEMCG_SUMMARY).unwrap();
        assert_eq!(kill.task_cgroup, format!("/docker/{ID}"));
        assert_eq!(kill.limit, OomLimit::Cgroup(format!("/docker/{ID}")));
        assert_eq!((kill.task.as_str(), kill.pid), ("busybox", Some(6798)));
        let event = oom_event(&kill, 7).unwrap();
        assert_eq!(event.container_id, ID);
        assert_eq!(event.kind, v1::EventKind::Oom as i32);
        assert_eq!(
            event.detail,
            "the kernel OOM killer killed busybox (pid 6798): the container's memory limit was reached"
        );
        // The line that follows on these kernels is not a second kill.
        assert_eq!(
            p.feed("Memory cgroup out of memory: Killed process 6798 (busybox) total-vm:67804kB, anon-rss:15872kB, file-rss:116kB, shmem-rss:0kB, UID:0 pgtables:72kB oom_score_adj:0"),
            None
        );
    }

    #[test]
    fn a_global_kill_of_a_pod_container_under_systemd() {
        let line = format!(
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f4c2a6e_1b2c_4d5e_8f90_123456789abc.slice/cri-containerd-{ID}.scope,task=java,pid=4242,uid=1000"
        );
        let kill = OomParser::default().feed(&line).unwrap();
        assert_eq!(kill.limit, OomLimit::Node);
        let event = oom_event(&kill, 7).unwrap();
        assert_eq!(event.container_id, ID);
        assert!(
            event.detail.ends_with("the node ran out of memory"),
            "{}",
            event.detail
        );
    }

    #[test]
    fn a_pod_level_limit_names_the_pod_cgroup() {
        let pod = "/kubepods/burstable/pod0f4c2a6e-1b2c-4d5e-8f90-123456789abc";
        let line = format!(
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={ID},mems_allowed=0,oom_memcg={pod},task_memcg={pod}/{ID},task=a,b,pid=9,uid=0"
        );
        let kill = OomParser::default().feed(&line).unwrap();
        assert_eq!(kill.task, "a,b", "a command name with a comma");
        assert_eq!(oom_event(&kill, 1).unwrap().container_id, ID);
        assert!(
            kill.detail()
                .contains(&format!("the memory limit of {pod}"))
        );
    }

    #[test]
    fn the_older_kernels_two_lines() {
        let mut p = OomParser::default();
        assert_eq!(
            p.feed(&format!(
                "Task in /docker/{ID} killed as a result of limit of /docker/{ID}"
            )),
            None
        );
        assert_eq!(
            p.feed("memory: usage 16384kB, limit 16384kB, failcnt 37"),
            None
        );
        let kill = p
            .feed(
                "Memory cgroup out of memory: Kill process 2211 (dd) score 1000 or sacrifice child",
            )
            .unwrap();
        assert_eq!((kill.task.as_str(), kill.pid), ("dd", Some(2211)));
        assert_eq!(oom_event(&kill, 1).unwrap().container_id, ID);
        assert_eq!(
            p.feed("Killed process 2211 (dd) total-vm:67804kB, anon-rss:15872kB"),
            None,
            "one kill, not two"
        );
    }

    #[test]
    fn kills_outside_containers_and_other_lines_give_no_event() {
        let mut p = OomParser::default();
        let host = p
            .feed("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/cron.service,task_memcg=/system.slice/cron.service,task=cron,pid=1,uid=0")
            .unwrap();
        assert_eq!(oom_event(&host, 1), None);
        for line in [
            "oom-kill:",
            "oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=docker,task=x,pid=1,uid=0",
            "Killed process 1 (init)",
            "Task in /docker",
            "eth0: link up",
        ] {
            assert_eq!(p.feed(line), None, "{line}");
        }
    }

    /// Verbatim from this project's test host: the 11th kill within 5 s,
    /// whose report (header and summary) the kernel left out.
    const RATE_LIMITED_KILL: &str = "Memory cgroup out of memory: Killed process 1200 (dd) total-vm:265120kB, anon-rss:32512kB, file-rss:1732kB, shmem-rss:0kB, UID:0 pgtables:112kB oom_score_adj:0";

    #[test]
    fn a_kill_without_its_report_is_found_and_attributed_by_pid() {
        let mut p = OomParser::default();
        let Some(OomRecord::Unattributed(kill)) = p.feed_record(RATE_LIMITED_KILL) else {
            panic!("a kill line alone is a kill");
        };
        assert_eq!(
            kill,
            UnattributedKill {
                pid: 1200,
                task: "dd".into(),
                memcg: true,
            }
        );
        let attributed = kill.attributed(format!("/docker/{ID}"));
        let event = oom_event(&attributed, 1).unwrap();
        assert_eq!(event.container_id, ID);
        assert_eq!(
            event.detail,
            "the kernel OOM killer killed dd (pid 1200): a memory limit was reached (the kernel rate-limited its report, so not which one)"
        );
        let global = p
            .feed_record("Out of memory: Killed process 77 (java) total-vm:1kB")
            .unwrap();
        let OomRecord::Unattributed(global) = global else {
            panic!("{global:?}");
        };
        assert!(!global.memcg);
        assert!(
            global
                .attributed(format!("/docker/{ID}"))
                .detail()
                .ends_with("the node ran out of memory")
        );
    }

    #[test]
    fn the_kill_line_after_a_full_report_is_not_a_second_kill() {
        let mut p = OomParser::default();
        assert!(matches!(
            p.feed_record(MEMCG_SUMMARY),
            Some(OomRecord::Kill(_))
        ));
        assert_eq!(
            p.feed_record(
                "Memory cgroup out of memory: Killed process 6798 (busybox) total-vm:1kB"
            ),
            None
        );
        // Lines that merely mention a kill are not kills.
        assert_eq!(p.feed_record("Killed process 5 (x) total-vm:1kB"), None);
        assert_eq!(
            p.feed_record("Memory cgroup out of memory: Killed process x (y)"),
            None
        );
    }

    #[test]
    fn a_process_cgroup_is_read_from_proc() {
        let dir = tempfile::tempdir().unwrap();
        let write = |pid: &str, text: &str| {
            std::fs::create_dir_all(dir.path().join(pid)).unwrap();
            std::fs::write(dir.path().join(pid).join("cgroup"), text).unwrap();
            let stat = format!("{pid} (a) b) S 1 1 1");
            std::fs::write(dir.path().join(pid).join("stat"), stat).unwrap();
        };
        write(
            "10",
            &format!(
                "12:pids:/docker/{ID}\n4:memory:/docker/{ID}\n0::/system.slice/docker.service\n"
            ),
        );
        write("11", "0::/kubepods.slice/x.scope\n");
        write("12", "garbage\n");
        assert_eq!(
            task_cgroup_of(dir.path(), 10),
            Some(format!("/docker/{ID}"))
        );
        assert_eq!(
            task_cgroup_of(dir.path(), 11).as_deref(),
            Some("/kubepods.slice/x.scope")
        );
        assert_eq!(task_cgroup_of(dir.path(), 12), None);
        write("14", "4:memory:/docker/x\n");
        std::fs::write(dir.path().join("14/stat"), "14 (dd) Z 1 1 1").unwrap();
        assert_eq!(task_cgroup_of(dir.path(), 14), None, "a zombie");
        assert_eq!(
            task_cgroup_of(dir.path(), 13),
            None,
            "a process already gone"
        );
        // This process's own, on this host.
        assert!(task_cgroup_of(Path::new("/proc"), std::process::id()).is_some());
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(lines in proptest::collection::vec(".{0,200}", 0..8)) {
            let mut p = OomParser::default();
            for line in &lines {
                let _ = parse_record(line);
                match p.feed_record(line) {
                    Some(OomRecord::Kill(kill)) => {
                        let _ = oom_event(&kill, 0);
                    }
                    Some(OomRecord::Unattributed(kill)) => {
                        let _ = oom_event(&kill.attributed(String::new()), 0);
                    }
                    None => {}
                }
            }
        }

        #[test]
        fn truncated_summaries_never_panic(cut in 0usize..400) {
            let line = MEMCG_SUMMARY.get(..cut.min(MEMCG_SUMMARY.len())).unwrap_or_default();
            let _ = OomParser::default().feed(line);
        }
    }
}

//! Which reads of a cgroup are *full* reads, and what a *partial* read may
//! carry over from the previous one.
//!
//! Most of what the agent reads per container per tick cannot change unless
//! a task of the cgroup ran: block IO is counted when a task submits it, a
//! task count changes by `fork` and `exit`, an OOM kill is counted when a
//! task of the cgroup charges memory or when its victim dies. So a reader
//! first reads the CPU counter (and the memory usage, which reclaim from
//! outside can lower). When the CPU counter has not moved since the previous
//! tick, nothing ran, and the reader keeps the previous values of the files
//! that only running tasks move, instead of reading them again. On cgroup v1
//! that turns 11 system calls into 2 for an idle container.
//!
//! Every [`FULL_READ_EVERY`]th read of a cgroup is full: it reads every
//! counter file whatever the CPU counter says, and every
//! [`SETTINGS_EVERY_FULL_READS`]th full read also re-reads settings (limits,
//! quotas, weights) from the kernel. That bounds how late a change nobody
//! could see coming shows up: a cache flush that moved no byte (it counts as
//! an IO operation) or an OOM kill in a tick where a `fork` kept the task
//! count level within [`FULL_READ_EVERY`] ticks, a settings change (`docker
//! update`, a resized pod) within [`FULL_READ_EVERY`] ×
//! [`SETTINGS_EVERY_FULL_READS`]. The counters are cumulative, so a late
//! change is never lost; its timestamp is late. What is carried over is
//! exact otherwise.
//!
//! Full reads and settings reads are staggered across cgroups (by a hash of
//! the cgroup path), so each tick does about the same amount of work.
//!
//! Block IO has one more source of certainty: the parent's recursive
//! counters, checked once per tick for all its sampled children
//! ([`super::io_groups`]). When they stood still, a child's IO is carried
//! over whether or not its tasks ran, on full reads too
//! ([`ReadStart::carried_io`]). On v2 the CPU rule alone is not exact for
//! IO: the writeback of pages a cgroup dirtied is charged to it later, by a
//! kernel thread.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use upid::model::{CgroupStats, CpuStats, IoStats, MemoryStats, PidsStats};

use super::io_groups::IoHint;

/// Every this many reads of a cgroup, one is full: every counter file is
/// read. At the default 10 s interval, once a minute.
pub const FULL_READ_EVERY: u32 = 6;

/// Every this many full reads of a cgroup (and on its first read),
/// settings (limits, quotas, weights) are re-read from the kernel. At the
/// default 10 s interval, every 3 minutes: a limit changes far less often
/// than a counter, and four settings files are half of what a full read
/// adds to a partial one.
pub const SETTINGS_EVERY_FULL_READS: u32 = 3;

/// Counts a cgroup's reads and says which ones are full.
#[derive(Debug, Clone)]
pub struct FullReads {
    /// Reads left until the next full one; 0 = the next read is full.
    countdown: u32,
    /// Where in the cycle this cgroup's full reads fall after the first.
    phase: u32,
    first: bool,
    /// Full reads left until the next one that re-reads settings.
    settings_countdown: u32,
    /// Where in their cycle this cgroup's settings reads fall after the
    /// first read, so each tick re-reads about as many settings as any
    /// other.
    settings_phase: u32,
}

impl FullReads {
    /// The schedule for the cgroup at `cgroup_path`: the first read is full,
    /// the next full read comes at a point in the cycle chosen by the path,
    /// then every [`FULL_READ_EVERY`] reads.
    pub fn new(cgroup_path: &str) -> Self {
        let mut h = DefaultHasher::new();
        cgroup_path.hash(&mut h);
        let hash = h.finish();
        let phase = u32::try_from(hash % u64::from(FULL_READ_EVERY)).unwrap_or(0);
        let settings_phase = u32::try_from(
            (hash / u64::from(FULL_READ_EVERY)) % u64::from(SETTINGS_EVERY_FULL_READS),
        )
        .unwrap_or(0);
        FullReads {
            countdown: 0,
            phase,
            first: true,
            settings_countdown: 0,
            settings_phase,
        }
    }

    /// Starts a read of the cgroup whose previous result is in `last`:
    /// whether this read is full, whether it re-reads settings (the caller
    /// then expires its settings files), and the previous result. `last` is
    /// left empty; the reader stores this read's result there when it is
    /// done.
    pub fn start(&mut self, last: &mut Option<CgroupStats>) -> ReadStart {
        let first = self.first;
        let full = self.next_is_full();
        let settings = full && self.next_full_reads_settings(first);
        ReadStart {
            full,
            settings,
            previous: last.take(),
        }
    }

    /// Whether this full read (`first`: the cgroup's first read) re-reads
    /// settings; advances that schedule.
    fn next_full_reads_settings(&mut self, first: bool) -> bool {
        if first {
            self.settings_countdown = self.settings_phase;
            return true;
        }
        if self.settings_countdown > 0 {
            self.settings_countdown -= 1;
            return false;
        }
        self.settings_countdown = SETTINGS_EVERY_FULL_READS - 1;
        true
    }

    /// Whether this read is full; advances the schedule.
    pub fn next_is_full(&mut self) -> bool {
        if self.countdown > 0 {
            self.countdown -= 1;
            return false;
        }
        self.countdown = if self.first {
            self.first = false;
            self.phase
        } else {
            FULL_READ_EVERY - 1
        };
        true
    }
}

/// The start of one read of a cgroup ([`FullReads::start`]).
#[derive(Debug)]
pub struct ReadStart {
    /// Whether this read is full.
    pub full: bool,
    /// Whether this read re-reads settings from the kernel (the first read
    /// and every [`SETTINGS_EVERY_FULL_READS`]th full read).
    pub settings: bool,
    /// The previous read's result (`None` on the first read).
    previous: Option<CgroupStats>,
}

impl ReadStart {
    /// The previous result a partial read may carry over from; `None` on a
    /// full read, which reads everything.
    pub fn last(&self) -> Option<&CgroupStats> {
        self.previous.as_ref().filter(|_| !self.full)
    }

    /// The previous block IO reading when it cannot have changed, so the
    /// IO files need not be read; `None` means read them.
    ///
    /// - The parent's recursive counters stood still ([`IoHint::Quiet`]):
    ///   exact, so it holds on full reads too.
    /// - Otherwise, on a partial read, when no task ran (`ran` false): IO is
    ///   counted when a task submits it. On v2 (`writeback_charged`) the
    ///   kernel also charges a cgroup for the writeback of pages it dirtied,
    ///   done later by a kernel thread, so there a moved parent
    ///   ([`IoHint::Moved`]) means read; with no parent to ask
    ///   ([`IoHint::Unknown`]) such writeback shows at the next full read.
    pub fn carried_io(&self, hint: IoHint, ran: bool, writeback_charged: bool) -> Option<IoStats> {
        match hint {
            IoHint::Quiet => self.previous.as_ref()?.io,
            IoHint::Moved if writeback_charged => None,
            IoHint::Moved | IoHint::Unknown => unless_ran(self.last()?.io, ran),
            IoHint::Uncounted => None,
        }
    }
}

/// Whether a task of the cgroup ran between two reads: its CPU counter
/// moved. Without both readings nobody can tell, so it counts as ran.
pub(crate) fn task_ran(now: Option<&CpuStats>, last: Option<&CpuStats>) -> bool {
    match (now, last) {
        (Some(now), Some(last)) => now.usage_ns != last.usage_ns,
        _ => true,
    }
}

/// The previous value of a part only running tasks move (block IO, the
/// task count), when no task ran; `None` means read it.
pub(crate) fn unless_ran<T>(last: Option<T>, ran: bool) -> Option<T> {
    last.filter(|_| !ran)
}

/// Whether a task of the cgroup may have ended between two reads: the task
/// count dropped, or one of the counts is unknown. An OOM kill ends a task,
/// so without this the OOM counter has not moved (or, when a `fork` kept the
/// count level, it shows at the next full read).
pub(crate) fn task_ended(now: Option<PidsStats>, last: Option<PidsStats>) -> bool {
    match (now, last) {
        (Some(now), Some(last)) => now.current < last.current,
        _ => true,
    }
}

/// What a partial read of memory may take from the previous read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryCarry<'a> {
    /// The previous read's memory part (`None` on full reads).
    pub last: Option<&'a MemoryStats>,
    /// A task ran since the previous read ([`task_ran`]).
    pub ran: bool,
    /// A task may have ended since the previous read ([`task_ended`]).
    pub task_ended: bool,
}

impl MemoryCarry<'_> {
    /// The previous memory reading, when nothing ran and the usage just read
    /// equals the previous one: nothing was charged or reclaimed, so the
    /// statistics stand and the peak since the previous read is the usage
    /// (its reset can wait until something changes).
    pub(crate) fn unchanged(&self, usage_bytes: u64) -> Option<MemoryStats> {
        let last = self.last?;
        (!self.ran && last.usage_bytes == usage_bytes).then(|| MemoryStats {
            peak_bytes: usage_bytes,
            ..last.clone()
        })
    }

    /// The previous OOM kill count when no task ended since, so the OOM
    /// counter need not be read.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        self.last.filter(|_| !self.task_ended).map(|l| l.oom_kills)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_read_is_full_then_one_in_every_cycle() {
        for path in [
            "/docker/a",
            "/kubepods/pod1/b",
            "/system.slice/c.service",
            "",
        ] {
            let mut s = FullReads::new(path);
            assert!(s.next_is_full(), "{path}: the first read is full");
            let fulls: Vec<usize> = (0..(FULL_READ_EVERY as usize * 4))
                .filter(|_| s.next_is_full())
                .collect();
            assert!(
                fulls.len() >= 3 && fulls.len() <= 4,
                "{path}: about one full read per cycle, got {fulls:?}"
            );
            for w in fulls.windows(2) {
                assert_eq!(
                    w[1] - w[0],
                    FULL_READ_EVERY as usize,
                    "{path}: full reads are a cycle apart"
                );
            }
            let first_gap = fulls.first().copied().unwrap_or(usize::MAX);
            assert!(
                first_gap < FULL_READ_EVERY as usize,
                "{path}: the second full read comes within one cycle"
            );
        }
    }

    #[test]
    fn settings_are_reread_on_the_first_read_then_every_few_full_reads() {
        let cycle = (FULL_READ_EVERY * SETTINGS_EVERY_FULL_READS) as usize;
        let mut per_tick = vec![0_u32; cycle];
        for i in 0..300 {
            let mut s = FullReads::new(&format!("/docker/{i:064x}"));
            let mut none = None;
            let reads: Vec<ReadStart> = (0..cycle * 4).map(|_| s.start(&mut none)).collect();
            assert!(
                reads[0].full && reads[0].settings,
                "the first read re-reads settings"
            );
            let settings: Vec<usize> = (1..reads.len()).filter(|&t| reads[t].settings).collect();
            assert!(
                settings.iter().all(|&t| reads[t].full),
                "settings are re-read on full reads only"
            );
            for w in settings.windows(2) {
                assert_eq!(w[1] - w[0], cycle, "settings reads a cycle apart");
            }
            assert!(
                settings.first().is_some_and(|&t| t <= cycle),
                "the second settings read comes within one cycle: {settings:?}"
            );
            for &t in &settings {
                per_tick[t % cycle] += 1;
            }
        }
        // Spread over the cycle: every tick of it re-reads some, none more
        // than twice its share (all in one tick would be `cycle` times it).
        let total: u32 = per_tick.iter().sum();
        let share = total / cycle as u32;
        assert!(
            per_tick.iter().all(|&n| n > 0 && n <= 2 * share),
            "settings reads per tick of the cycle: {per_tick:?}"
        );
    }

    #[test]
    fn phases_spread_over_the_cycle() {
        let phases: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| FullReads::new(&format!("/docker/{i:064x}")).phase)
            .collect();
        assert_eq!(phases.len(), FULL_READ_EVERY as usize, "{phases:?}");
    }
}

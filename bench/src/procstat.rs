//! CPU time and memory of threads and processes, read from `/proc` without
//! unsafe code.
//!
//! CPU time comes from `schedstat` (first field: nanoseconds on CPU, user
//! and kernel time together), which is exact where `/proc/<pid>/stat`
//! counts in clock ticks of 10 ms. Both are read for processes: `stat`
//! also counts threads that already exited, `schedstat` does not.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, bail};

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`
/// (`USER_HZ`, 100 on every Linux architecture upid runs on).
pub const CLOCK_TICKS_PER_SEC: u64 = 100;

/// Nanoseconds per clock tick of `/proc/<pid>/stat`.
const NS_PER_TICK: u64 = 1_000_000_000 / CLOCK_TICKS_PER_SEC;

/// CPU clock of the calling thread, from `/proc/thread-self/schedstat`.
///
/// The kernel prints the thread's accumulated run time as of the last
/// scheduler accounting, which for a thread that is running can be one
/// timer tick (4 ms at `HZ=250`) old. Each reading therefore first calls
/// `sched_yield` ([`std::thread::yield_now`]), which accounts the running
/// time up to now; the reading is then exact to the microsecond. The file is
/// opened once and re-read at offset 0, so a reading costs two syscalls
/// (about 1.5 µs, included in whatever it brackets). Only the thread that
/// created the clock may read it: the open file names that thread.
#[derive(Debug)]
pub struct ThreadCpuClock {
    file: File,
    buf: Vec<u8>,
}

impl ThreadCpuClock {
    /// Opens the calling thread's `schedstat`.
    pub fn for_current_thread() -> anyhow::Result<Self> {
        let path = "/proc/thread-self/schedstat";
        let file = File::open(path).with_context(|| format!("opening {path}"))?;
        Ok(ThreadCpuClock {
            file,
            buf: vec![0; 128],
        })
    }

    /// Nanoseconds this thread has spent on a CPU so far.
    pub fn now_ns(&mut self) -> anyhow::Result<u64> {
        // Bring the kernel's run-time accounting of this thread up to date.
        std::thread::yield_now();
        let n = self
            .file
            .read_at(&mut self.buf, 0)
            .context("reading /proc/thread-self/schedstat")?;
        parse_schedstat(&self.buf[..n]).context("parsing /proc/thread-self/schedstat")
    }
}

/// First field of a `schedstat` file: nanoseconds on CPU.
pub fn parse_schedstat(text: &[u8]) -> anyhow::Result<u64> {
    let text = std::str::from_utf8(text).context("not UTF-8")?;
    let first = text
        .split_ascii_whitespace()
        .next()
        .context("empty schedstat")?;
    first
        .parse()
        .with_context(|| format!("bad run time {first:?}"))
}

/// CPU time of a whole process, two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessCpu {
    /// Sum of `/proc/<pid>/task/*/schedstat` run times (ns, exact; live
    /// threads only).
    pub schedstat_ns: u64,
    /// `utime + stime` from `/proc/<pid>/stat`, converted to ns (10 ms
    /// resolution; includes exited threads).
    pub stat_ns: u64,
}

impl ProcessCpu {
    /// The better of the two readings: exact `schedstat` unless threads
    /// that exited make `stat` (which keeps their time) larger by more than
    /// its resolution.
    pub fn best_ns(&self) -> u64 {
        if self.stat_ns > self.schedstat_ns + 2 * NS_PER_TICK {
            self.stat_ns
        } else {
            self.schedstat_ns
        }
    }

    /// CPU used between `earlier` and `self`, by [`ProcessCpu::best_ns`].
    pub fn since(&self, earlier: &ProcessCpu) -> u64 {
        self.best_ns().saturating_sub(earlier.best_ns())
    }
}

/// Reads the CPU time of process `pid`.
pub fn process_cpu(pid: u32) -> anyhow::Result<ProcessCpu> {
    let tasks = format!("/proc/{pid}/task");
    let mut schedstat_ns = 0u64;
    for entry in std::fs::read_dir(&tasks).with_context(|| format!("listing {tasks}"))? {
        let entry = entry.with_context(|| format!("listing {tasks}"))?;
        let path = entry.path().join("schedstat");
        match std::fs::read(&path) {
            Ok(text) => {
                schedstat_ns += parse_schedstat(&text)
                    .with_context(|| format!("parsing {}", path.display()))?;
            }
            // The thread exited between listing and reading.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).with_context(|| format!("reading {stat_path}"))?;
    let (utime, stime) = parse_stat_times(&stat).with_context(|| format!("parsing {stat_path}"))?;
    Ok(ProcessCpu {
        schedstat_ns,
        stat_ns: (utime + stime) * NS_PER_TICK,
    })
}

/// `utime` and `stime` (clock ticks) from the text of `/proc/<pid>/stat`.
pub fn parse_stat_times(stat: &str) -> anyhow::Result<(u64, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces
    // or parentheses; fields after the last `)` are plain.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no `)` after the command name")?;
    // After `)`: field 3 (state) is index 0, so utime (14) is index 11.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime = fields
        .next()
        .context("no utime")?
        .parse()
        .context("bad utime")?;
    let stime = fields
        .next()
        .context("no stime")?
        .parse()
        .context("bad stime")?;
    Ok((utime, stime))
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessMemory {
    /// `VmRSS`: resident now, bytes.
    pub rss_bytes: u64,
    /// `VmHWM`: the most ever resident, bytes.
    pub hwm_bytes: u64,
}

/// Reads `VmRSS` and `VmHWM` of process `pid`.
pub fn process_memory(pid: u32) -> anyhow::Result<ProcessMemory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_memory(&text).with_context(|| format!("parsing {path}"))
}

/// `VmRSS` and `VmHWM` from the text of `/proc/<pid>/status`.
pub fn parse_status_memory(status: &str) -> anyhow::Result<ProcessMemory> {
    let mut rss = None;
    let mut hwm = None;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            rss = Some(parse_kib(v)?);
        } else if let Some(v) = line.strip_prefix("VmHWM:") {
            hwm = Some(parse_kib(v)?);
        }
    }
    match (rss, hwm) {
        (Some(rss_bytes), Some(hwm_bytes)) => Ok(ProcessMemory {
            rss_bytes,
            hwm_bytes,
        }),
        _ => bail!("no VmRSS/VmHWM (is it a zombie or a kernel thread?)"),
    }
}

/// `"   1234 kB"` → bytes.
fn parse_kib(value: &str) -> anyhow::Result<u64> {
    let number = value
        .trim()
        .strip_suffix("kB")
        .map(str::trim)
        .context("value not in kB")?;
    let kib: u64 = number
        .parse()
        .with_context(|| format!("bad number {number:?}"))?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schedstat() {
        assert_eq!(
            parse_schedstat(b"26684716 1895505 60\n").ok(),
            Some(26_684_716)
        );
        assert!(parse_schedstat(b"").is_err());
    }

    #[test]
    fn parses_stat_times_with_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat_times(stat).ok(), Some((7, 3)));
    }

    #[test]
    fn parses_status_memory() {
        let status = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        let m = parse_status_memory(status).ok();
        assert_eq!(
            m,
            Some(ProcessMemory {
                rss_bytes: 1024 * 1024,
                hwm_bytes: 2048 * 1024
            })
        );
        assert!(parse_status_memory("Name:\tkthreadd\n").is_err());
    }

    #[test]
    fn thread_clock_advances_with_work() -> anyhow::Result<()> {
        let mut clock = ThreadCpuClock::for_current_thread()?;
        // Spin 2 ms: shorter than a timer tick at HZ=250, so without the
        // yield in `now_ns` the clock would often not move at all.
        let before = clock.now_ns()?;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        let spent = clock.now_ns()? - before;
        let wall = started.elapsed().as_nanos() as u64;
        // No timing claim (the thread may be preempted): only that the
        // clock moved, and not faster than the wall clock.
        assert!(
            spent > 0 && spent <= wall + 100_000,
            "spent {spent} ns in {wall} ns"
        );
        Ok(())
    }

    #[test]
    fn reads_own_process() -> anyhow::Result<()> {
        let me = std::process::id();
        assert!(process_cpu(me)?.schedstat_ns > 0);
        assert!(process_memory(me)?.rss_bytes > 0);
        Ok(())
    }
}

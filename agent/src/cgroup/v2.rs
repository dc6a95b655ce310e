//! Reading one cgroup on the unified (v2) hierarchy, plus the pieces v1
//! shares with it: the pids controller's files ([`PidsFiles`], same format on
//! both) and PSI ([`PsiFiles`], which hybrid hosts read from the unified
//! mount).
//!
//! Files of a full read ([`super::cadence`]): `cpu.stat`, `cpu.max`,
//! `cpu.weight`, `memory.current`, `memory.stat`, `memory.max`,
//! `memory.swap.current`, `memory.events`, `memory.peak` (read + reset),
//! `io.stat`, `pids.current`, `pids.max`, `{cpu,memory,io}.pressure`. Files a
//! kernel or configuration lacks are remembered as absent after the first
//! tick and cost nothing afterwards.
//!
//! A partial read always reads `cpu.stat`, `memory.current` and the PSI
//! files. When `usage_usec` did not move (no task ran), `io.stat`,
//! `pids.current` and `memory.events` are carried over from the previous
//! read, and with `memory.current` unchanged too, all of memory.
//! `memory.events` is also carried over while `pids.current` does not drop.
//! `io.stat` follows the parent's when the parent is checked
//! ([`super::io_groups`]): carried over, on full reads too, while the
//! parent's stood still, and read whenever it moved, even with no task
//! running (writeback is charged to the cgroup that dirtied the pages).
//! Settings are read from the kernel on every third full read only
//! ([`super::cadence::SETTINGS_EVERY_FULL_READS`]).

use std::path::{Path, PathBuf};

use upid::model::{CgroupStats, CpuStats, IoStats, MemoryStats, PeakSource, PidsStats, Pressure};

use super::cadence::{FullReads, MemoryCarry, task_ended, task_ran, unless_ran};
use super::files::{Access, CgroupFile, FileError, Stop, part, read_parsed};
use super::io_groups::IoHint;
use super::parse::{
    self, parse_cpu_max, parse_cpu_weight_as_shares, parse_flat_keys, parse_io_stat, parse_limit,
    parse_pressure, parse_required_keys, parse_single_u64,
};
use super::reader::ReadError;
use crate::skips::Skips;

/// What a v2 `memory.peak` reset writes ("any non-empty string").
const PEAK_RESET: &[u8] = b"0\n";

/// How the memory peak is obtained, decided on the first read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeakMode {
    /// Not tried yet: the first read tries a reset.
    Untried,
    /// Reset after every read: the kernel's peak since the previous tick.
    Reset,
    /// Reset impossible or not allowed: peak = the usage read.
    Sampled,
}

impl PeakMode {
    /// The starting mode: [`PeakMode::Untried`] when resets are allowed.
    pub(crate) fn initial(reset_peaks: bool) -> Self {
        if reset_peaks {
            PeakMode::Untried
        } else {
            PeakMode::Sampled
        }
    }
}

/// Resets the kernel's high-water mark in `file` and keeps `mode` up to
/// date. Returns `Err(Stop::Vanished)` only when the cgroup is gone.
pub(crate) fn reset_peak(
    file: &mut CgroupFile,
    mode: &mut PeakMode,
    primary_dir: Option<&Path>,
) -> Result<(), Stop> {
    if *mode == PeakMode::Untried {
        match file.open_writable() {
            Ok(true) => {}
            Ok(false) => {
                // Absent, or readable only (kernel < 6.12 for memory.peak, a
                // read-only mount): never resettable, so never read either.
                file.mark_absent();
                *mode = PeakMode::Sampled;
                return Ok(());
            }
            Err(FileError::Gone) if !primary_dir.is_some_and(Path::is_dir) => {
                return Err(Stop::Vanished);
            }
            Err(e) => {
                tracing::debug!(path = %file.path().display(), error = %e, "peak not resettable; sampling usage instead");
                file.mark_absent();
                *mode = PeakMode::Sampled;
                return Ok(());
            }
        }
    }
    match file.write(PEAK_RESET) {
        Ok(()) => {
            *mode = PeakMode::Reset;
            Ok(())
        }
        Err(FileError::Gone) if !primary_dir.is_some_and(Path::is_dir) => Err(Stop::Vanished),
        Err(e) if e.is_write_refused() || *mode == PeakMode::Untried => {
            tracing::debug!(path = %file.path().display(), error = %e, "peak reset refused; sampling usage instead");
            file.mark_absent();
            *mode = PeakMode::Sampled;
            Ok(())
        }
        Err(e) => {
            // Transient: this tick's reading stands, try again next tick.
            tracing::debug!(path = %file.path().display(), error = %e, "peak reset failed");
            Ok(())
        }
    }
}

/// `pids.current` and `pids.max` (same format on v1 and v2).
#[derive(Debug)]
pub struct PidsFiles {
    current: CgroupFile,
    max: CgroupFile,
}

impl PidsFiles {
    /// The pids files of the cgroup directory `dir`.
    pub fn new(dir: &Path) -> Self {
        PidsFiles {
            current: CgroupFile::new(dir, "pids.current"),
            max: CgroupFile::settings(dir, "pids.max"),
        }
    }

    /// Reads the task count and limit; `Ok(None)` without `pids.current`.
    pub fn read(
        &mut self,
        buf: &mut Vec<u8>,
        skips: &mut Skips,
        primary_dir: Option<&Path>,
    ) -> Result<Option<PidsStats>, Stop> {
        let Some(current) =
            read_parsed(&mut self.current, buf, skips, primary_dir, parse_single_u64)?
        else {
            return Ok(None);
        };
        let limit = read_parsed(&mut self.max, buf, skips, primary_dir, parse_limit)?.flatten();
        Ok(Some(PidsStats { current, limit }))
    }

    /// Makes `pids.max` read from the kernel on the next read.
    pub fn expire_settings(&mut self) {
        self.max.expire();
    }
}

/// `cpu.pressure`, `memory.pressure`, `io.pressure` of one cgroup on the
/// unified hierarchy.
#[derive(Debug)]
pub struct PsiFiles {
    cpu: CgroupFile,
    memory: CgroupFile,
    io: CgroupFile,
}

impl PsiFiles {
    /// The PSI files of the unified-hierarchy directory `dir`.
    pub fn new(dir: &Path) -> Self {
        PsiFiles {
            cpu: CgroupFile::new(dir, "cpu.pressure"),
            memory: CgroupFile::new(dir, "memory.pressure"),
            io: CgroupFile::new(dir, "io.pressure"),
        }
    }

    /// Reads the three PSI files; a malformed one leaves only that resource
    /// `None`; `Ok(None)` when none is exposed. `primary_dir` decides whether
    /// a missing directory means the cgroup vanished (on hybrid hosts the
    /// unified directory may never have existed).
    pub fn read(
        &mut self,
        buf: &mut Vec<u8>,
        skips: &mut Skips,
        primary_dir: Option<&Path>,
    ) -> Result<Option<Pressure>, ReadError> {
        let pressure = Pressure {
            cpu: part(read_parsed(
                &mut self.cpu,
                buf,
                skips,
                primary_dir,
                parse_pressure,
            ))?,
            memory: part(read_parsed(
                &mut self.memory,
                buf,
                skips,
                primary_dir,
                parse_pressure,
            ))?,
            io: part(read_parsed(
                &mut self.io,
                buf,
                skips,
                primary_dir,
                parse_pressure,
            ))?,
        };
        Ok((!pressure.is_empty()).then_some(pressure))
    }
}

/// Reads one cgroup on the unified (v2) hierarchy; files stay open between
/// reads.
#[derive(Debug)]
pub struct V2Reader {
    dir: PathBuf,
    cpu_stat: CgroupFile,
    cpu_max: CgroupFile,
    cpu_weight: CgroupFile,
    memory_current: CgroupFile,
    memory_stat: CgroupFile,
    memory_max: CgroupFile,
    memory_swap: CgroupFile,
    memory_events: CgroupFile,
    memory_peak: CgroupFile,
    peak_mode: PeakMode,
    io_stat: CgroupFile,
    pids: PidsFiles,
    psi: PsiFiles,
    procs: CgroupFile,
    full_reads: FullReads,
    /// The previous read's result, for partial reads to carry over.
    last: Option<CgroupStats>,
}

impl V2Reader {
    /// A reader for the cgroup directory `dir` (e.g.
    /// `/sys/fs/cgroup/system.slice/docker-<id>.scope`). With `reset_peaks`,
    /// `memory.peak` is reset after each read (kernel ≥ 6.12; the reset is
    /// private to this reader's descriptor).
    pub fn new(dir: PathBuf, reset_peaks: bool) -> Self {
        V2Reader {
            cpu_stat: CgroupFile::new(&dir, "cpu.stat"),
            cpu_max: CgroupFile::settings(&dir, "cpu.max"),
            cpu_weight: CgroupFile::settings(&dir, "cpu.weight"),
            memory_current: CgroupFile::new(&dir, "memory.current"),
            memory_stat: CgroupFile::new(&dir, "memory.stat"),
            memory_max: CgroupFile::settings(&dir, "memory.max"),
            memory_swap: CgroupFile::new(&dir, "memory.swap.current"),
            memory_events: CgroupFile::new(&dir, "memory.events"),
            memory_peak: CgroupFile::with_access(&dir, "memory.peak", Access::ReadWrite),
            peak_mode: PeakMode::initial(reset_peaks),
            io_stat: CgroupFile::new(&dir, "io.stat"),
            pids: PidsFiles::new(&dir),
            psi: PsiFiles::new(&dir),
            procs: CgroupFile::new(&dir, "cgroup.procs"),
            full_reads: FullReads::new(&dir.to_string_lossy()),
            last: None,
            dir,
        }
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every controller, fully or partially ([`super::cadence`]); a
    /// malformed file drops its part (counted in `skips`);
    /// `Err(ReadError::Vanished)` when the cgroup is gone.
    pub fn read(
        &mut self,
        buf: &mut Vec<u8>,
        skips: &mut Skips,
        io_hint: IoHint,
    ) -> Result<CgroupStats, ReadError> {
        let start = self.full_reads.start(&mut self.last);
        if start.settings {
            for settings in [
                &mut self.cpu_max,
                &mut self.cpu_weight,
                &mut self.memory_max,
            ] {
                settings.expire();
            }
            self.pids.expire_settings();
        }
        let last = start.last();
        let cpu = part(self.read_cpu(buf, skips))?;
        let ran = task_ran(cpu.as_ref(), last.and_then(|l| l.cpu.as_ref()));
        let last_pids = last.and_then(|l| l.pids);
        let pids = match unless_ran(last_pids, ran) {
            Some(before) => Some(before),
            None => part(self.pids.read(buf, skips, Some(&self.dir)))?,
        };
        let carry = MemoryCarry {
            last: last.and_then(|l| l.memory.as_ref()),
            ran,
            task_ended: task_ended(pids, last_pids),
        };
        let memory = part(self.read_memory(buf, skips, carry))?;
        let io = match start.carried_io(io_hint, ran, true) {
            _ if io_hint == IoHint::Uncounted => None,
            Some(before) => Some(before),
            None => part(self.read_io(buf, skips))?,
        };
        let stats = CgroupStats {
            cpu,
            memory,
            io,
            pids,
            pressure: self.psi.read(buf, skips, Some(&self.dir))?,
        };
        self.last = Some(stats.clone());
        Ok(stats)
    }

    fn read_cpu(&mut self, buf: &mut Vec<u8>, skips: &mut Skips) -> Result<Option<CpuStats>, Stop> {
        let dir = Some(self.dir.as_path());
        let Some(stat) = read_parsed(&mut self.cpu_stat, buf, skips, dir, |b| {
            parse_flat_keys(
                b,
                &[
                    "usage_usec",
                    "user_usec",
                    "system_usec",
                    "nr_periods",
                    "nr_throttled",
                    "throttled_usec",
                ],
            )
        })?
        else {
            return Ok(None);
        };
        let [usage, user, system, periods, throttled, throttled_usec] = stat;
        let Some(usage_usec) = usage else {
            skips.malformed(self.cpu_stat.path(), "missing key `usage_usec`");
            return Err(Stop::Skipped);
        };
        let us_to_ns = |us: u64| us.saturating_mul(1_000);
        let limit_millicores =
            read_parsed(&mut self.cpu_max, buf, skips, dir, parse_cpu_max)?.flatten();
        let shares = read_parsed(
            &mut self.cpu_weight,
            buf,
            skips,
            dir,
            parse_cpu_weight_as_shares,
        )?;
        Ok(Some(CpuStats {
            usage_ns: us_to_ns(usage_usec),
            user_ns: user.map(us_to_ns),
            system_ns: system.map(us_to_ns),
            periods: periods.unwrap_or(0),
            throttled_periods: throttled.unwrap_or(0),
            throttled_ns: throttled_usec.map(us_to_ns).unwrap_or(0),
            limit_millicores,
            shares,
        }))
    }

    fn read_memory(
        &mut self,
        buf: &mut Vec<u8>,
        skips: &mut Skips,
        carry: MemoryCarry<'_>,
    ) -> Result<Option<MemoryStats>, Stop> {
        let dir = Some(self.dir.as_path());
        let Some(usage_bytes) =
            read_parsed(&mut self.memory_current, buf, skips, dir, parse_single_u64)?
        else {
            return Ok(None);
        };
        if let Some(unchanged) = carry.unchanged(usage_bytes) {
            return Ok(Some(unchanged));
        }
        let Some([anon, file, inactive_file]) =
            read_parsed(&mut self.memory_stat, buf, skips, dir, |b| {
                parse_required_keys(b, &["anon", "file", "inactive_file"])
            })?
        else {
            return Ok(None);
        };
        let limit_bytes =
            read_parsed(&mut self.memory_max, buf, skips, dir, parse_limit)?.flatten();
        let swap_bytes = read_parsed(&mut self.memory_swap, buf, skips, dir, parse_single_u64)?;
        let oom_kills = match carry.oom_kills() {
            Some(kills) => kills,
            None => read_parsed(&mut self.memory_events, buf, skips, dir, |b| {
                parse_flat_keys(b, &["oom_kill"])
            })?
            .and_then(|[k]| k)
            .unwrap_or(0),
        };

        let (peak_bytes, peak_source) = self.read_peak(usage_bytes, buf, skips)?;
        Ok(Some(MemoryStats {
            usage_bytes,
            working_set_bytes: usage_bytes.saturating_sub(inactive_file),
            rss_bytes: anon,
            cache_bytes: file,
            swap_bytes,
            limit_bytes,
            peak_bytes,
            peak_source,
            oom_kills,
        }))
    }

    /// `memory.peak` since the previous tick where the kernel can reset it
    /// per descriptor, otherwise the usage just read.
    fn read_peak(
        &mut self,
        usage_bytes: u64,
        buf: &mut Vec<u8>,
        skips: &mut Skips,
    ) -> Result<(u64, PeakSource), Stop> {
        let dir = Some(self.dir.as_path());
        if self.peak_mode == PeakMode::Untried {
            // Reset before the first read, so the first tick's peak is not
            // the all-time high-water mark.
            reset_peak(&mut self.memory_peak, &mut self.peak_mode, dir)?;
        }
        if self.peak_mode != PeakMode::Reset {
            return Ok((usage_bytes, PeakSource::Sampled));
        }
        let Some(peak) = read_parsed(&mut self.memory_peak, buf, skips, dir, parse_single_u64)?
        else {
            self.peak_mode = PeakMode::Sampled;
            return Ok((usage_bytes, PeakSource::Sampled));
        };
        reset_peak(&mut self.memory_peak, &mut self.peak_mode, dir)?;
        Ok((peak.max(usage_bytes), PeakSource::KernelReset))
    }

    fn read_io(&mut self, buf: &mut Vec<u8>, skips: &mut Skips) -> Result<Option<IoStats>, Stop> {
        read_parsed(
            &mut self.io_stat,
            buf,
            skips,
            Some(&self.dir),
            parse_io_stat,
        )
    }

    /// First pid in `cgroup.procs`; `None` if empty or unreadable.
    pub fn first_pid(&mut self, buf: &mut Vec<u8>) -> Option<u32> {
        first_pid(&mut self.procs, buf)
    }
}

/// First pid of a `cgroup.procs` file (one `pread`); `None` if the cgroup
/// has no tasks or the file cannot be read.
pub(crate) fn first_pid(procs: &mut CgroupFile, buf: &mut Vec<u8>) -> Option<u32> {
    let bytes = procs.read_head(buf).ok()??;
    // A single pread may end mid-line; only complete first lines count.
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    parse::parse_first_pid(bytes.get(..end)?).ok()?
}

//! Reading one cgroup across the v1 controller hierarchies (and, on hybrid
//! hosts, its PSI from the unified mount).
//!
//! Each controller is its own mount (`cpu` and `cpuacct` may be separate or
//! co-mounted); the same cgroup path is looked up under each. A cgroup
//! missing from one hierarchy (a systemd service without memory accounting)
//! just lacks that part; it has vanished only when its directory in the
//! primary hierarchy ([`Hierarchies::primary`]) is gone.
//!
//! Files of a full read ([`super::cadence`]): `cpuacct.usage`,
//! `cpuacct.stat`, `cpu.stat`, `cpu.cfs_quota_us`, `cpu.cfs_period_us`,
//! `cpu.shares`, `memory.usage_in_bytes`, `memory.stat`,
//! `memory.limit_in_bytes`, `memory.max_usage_in_bytes` (read + reset),
//! `memory.oom_control`, `blkio.throttle.io_service_bytes[_recursive]`,
//! `blkio.throttle.io_serviced[_recursive]`, `pids.current`, `pids.max`, and
//! on hybrid hosts `{cpu,memory,io}.pressure`.
//!
//! A partial read (five of every six) always reads `cpuacct.usage`,
//! `memory.usage_in_bytes` and the PSI files, and takes the rest from the
//! previous read where it cannot have changed:
//! - `cpuacct.usage` unchanged (no task ran): CPU, block IO, task count and
//!   OOM kills are carried over, and with `memory.usage_in_bytes` unchanged
//!   too, all of memory (the peak is then the usage: nothing was charged).
//! - no CFS quota: `cpu.stat` is carried over (throttling needs a quota).
//! - `io_service_bytes` unchanged: `io_serviced` is carried over.
//! - the parent's recursive block IO counters stood still
//!   ([`super::io_groups`]): block IO is carried over, on full reads too.
//! - `pids.current` did not drop: `memory.oom_control` is carried over (a
//!   kill ends a task).
//!
//! Settings (quota, period, shares, memory and pids limits) are read from
//! the kernel on every third full read only
//! ([`super::cadence::SETTINGS_EVERY_FULL_READS`]).

use std::path::{Path, PathBuf};

use upid::model::{CgroupStats, CpuStats, IoStats, MemoryStats, PeakSource};

use super::Hierarchies;
use super::cadence::{FullReads, MemoryCarry, task_ended, task_ran, unless_ran};
use super::files::{Access, CgroupFile, Stop, part, read_parsed};
use super::io_groups::IoHint;
use super::parse::{
    self, cfs_millicores, parse_blkio, parse_cpuacct_stat, parse_flat_keys, parse_single_i64,
    parse_single_u64, parse_v1_limit_bytes,
};
use super::reader::ReadError;
use super::v2::{PeakMode, PidsFiles, PsiFiles, reset_peak};
use crate::skips::Skips;

/// `cpuacct` files (usage is required for a CPU part).
#[derive(Debug)]
struct Cpuacct {
    usage: CgroupFile,
    stat: CgroupFile,
}

/// `cpu` controller files (throttling, quota, shares).
#[derive(Debug)]
struct CpuCtl {
    stat: CgroupFile,
    quota: CgroupFile,
    period: CgroupFile,
    shares: CgroupFile,
}

#[derive(Debug)]
struct Memory {
    usage: CgroupFile,
    stat: CgroupFile,
    limit: CgroupFile,
    max_usage: CgroupFile,
    peak_mode: PeakMode,
    oom_control: CgroupFile,
    memsw_usage: CgroupFile,
}

#[derive(Debug)]
struct Blkio {
    bytes_recursive: CgroupFile,
    bytes: CgroupFile,
    ops_recursive: CgroupFile,
    ops: CgroupFile,
}

/// Reads one cgroup across the v1 hierarchies; files stay open between
/// reads.
#[derive(Debug)]
pub struct V1Reader {
    primary: Option<PathBuf>,
    cpuacct: Option<Cpuacct>,
    cpu: Option<CpuCtl>,
    memory: Option<Memory>,
    blkio: Option<Blkio>,
    pids: Option<PidsFiles>,
    psi: Option<PsiFiles>,
    procs: Option<CgroupFile>,
    full_reads: FullReads,
    /// The previous read's result, for partial reads to carry over.
    last: Option<CgroupStats>,
}

impl V1Reader {
    /// A reader for `cgroup_path` (relative to each hierarchy root, starting
    /// with `/`) on the v1 hierarchies of `h`, plus PSI from the unified
    /// mount when `h` has one (hybrid hosts). With `reset_peaks`,
    /// `memory.max_usage_in_bytes` is reset after each read — for every
    /// reader of that file on the host.
    pub fn new(h: &Hierarchies, cgroup_path: &str, reset_peaks: bool) -> Self {
        let dir = |controller: &str| {
            h.v1_controller(controller)
                .map(|mount| Hierarchies::join(mount, cgroup_path))
        };
        let cpuacct = dir("cpuacct").map(|d| Cpuacct {
            usage: CgroupFile::new(&d, "cpuacct.usage"),
            stat: CgroupFile::new(&d, "cpuacct.stat"),
        });
        let cpu = dir("cpu").map(|d| CpuCtl {
            stat: CgroupFile::new(&d, "cpu.stat"),
            quota: CgroupFile::settings(&d, "cpu.cfs_quota_us"),
            period: CgroupFile::settings(&d, "cpu.cfs_period_us"),
            shares: CgroupFile::settings(&d, "cpu.shares"),
        });
        let memory = dir("memory").map(|d| Memory {
            usage: CgroupFile::new(&d, "memory.usage_in_bytes"),
            stat: CgroupFile::new(&d, "memory.stat"),
            limit: CgroupFile::settings(&d, "memory.limit_in_bytes"),
            max_usage: CgroupFile::with_access(&d, "memory.max_usage_in_bytes", Access::ReadWrite),
            peak_mode: PeakMode::initial(reset_peaks),
            oom_control: CgroupFile::new(&d, "memory.oom_control"),
            memsw_usage: CgroupFile::new(&d, "memory.memsw.usage_in_bytes"),
        });
        let blkio = dir("blkio").map(|d| Blkio {
            bytes_recursive: CgroupFile::new(&d, "blkio.throttle.io_service_bytes_recursive"),
            bytes: CgroupFile::new(&d, "blkio.throttle.io_service_bytes"),
            ops_recursive: CgroupFile::new(&d, "blkio.throttle.io_serviced_recursive"),
            ops: CgroupFile::new(&d, "blkio.throttle.io_serviced"),
        });
        let pids = dir("pids").map(|d| PidsFiles::new(&d));
        let psi = h
            .unified
            .as_deref()
            .map(|u| PsiFiles::new(&Hierarchies::join(u, cgroup_path)));
        let primary = h.primary().map(|p| Hierarchies::join(p, cgroup_path));
        let procs = primary
            .as_deref()
            .map(|p| CgroupFile::new(p, "cgroup.procs"));
        V1Reader {
            primary,
            cpuacct,
            cpu,
            memory,
            blkio,
            pids,
            psi,
            procs,
            full_reads: FullReads::new(cgroup_path),
            last: None,
        }
    }

    /// Makes the settings files read from the kernel on the next read.
    fn expire_settings(&mut self) {
        if let Some(cpu) = &mut self.cpu {
            cpu.quota.expire();
            cpu.period.expire();
            cpu.shares.expire();
        }
        if let Some(m) = &mut self.memory {
            m.limit.expire();
        }
        if let Some(p) = &mut self.pids {
            p.expire_settings();
        }
    }

    /// Reads every controller, fully or partially ([`super::cadence`]); a
    /// malformed file drops its part (counted in `skips`);
    /// `Err(ReadError::Vanished)` when the cgroup's primary directory is
    /// gone.
    pub fn read(
        &mut self,
        buf: &mut Vec<u8>,
        skips: &mut Skips,
        io_hint: IoHint,
    ) -> Result<CgroupStats, ReadError> {
        let start = self.full_reads.start(&mut self.last);
        if start.settings {
            self.expire_settings();
        }
        let last = start.last();
        let primary = self.primary.as_deref();
        let last_cpu = last.and_then(|l| l.cpu.as_ref());
        let cpu = match &mut self.cpuacct {
            Some(acct) => part(read_cpu(
                acct,
                self.cpu.as_mut(),
                buf,
                skips,
                primary,
                last_cpu,
            ))?,
            None => None,
        };
        let ran = task_ran(cpu.as_ref(), last_cpu);
        let last_pids = last.and_then(|l| l.pids);
        let pids = match (&mut self.pids, unless_ran(last_pids, ran)) {
            (Some(_), Some(before)) => Some(before),
            (Some(p), None) => part(p.read(buf, skips, primary))?,
            (None, _) => None,
        };
        let memory = match &mut self.memory {
            Some(m) => {
                let carry = MemoryCarry {
                    last: last.and_then(|l| l.memory.as_ref()),
                    ran,
                    task_ended: task_ended(pids, last_pids),
                };
                part(read_memory(m, buf, skips, primary, carry))?
            }
            None => None,
        };
        let io = match (&mut self.blkio, start.carried_io(io_hint, ran, false)) {
            _ if io_hint == IoHint::Uncounted => None,
            (Some(_), Some(before)) => Some(before),
            (Some(b), None) => part(read_blkio(b, buf, skips, primary, last.and_then(|l| l.io)))?,
            (None, _) => None,
        };
        let pressure = match &mut self.psi {
            Some(p) => p.read(buf, skips, primary)?,
            None => None,
        };
        let stats = CgroupStats {
            cpu,
            memory,
            io,
            pids,
            pressure,
        };
        self.last = Some(stats.clone());
        Ok(stats)
    }

    /// First pid in the primary hierarchy's `cgroup.procs`; `None` if empty
    /// or unreadable.
    pub fn first_pid(&mut self, buf: &mut Vec<u8>) -> Option<u32> {
        super::v2::first_pid(self.procs.as_mut()?, buf)
    }
}

fn read_cpu(
    acct: &mut Cpuacct,
    ctl: Option<&mut CpuCtl>,
    buf: &mut Vec<u8>,
    skips: &mut Skips,
    primary: Option<&Path>,
    last: Option<&CpuStats>,
) -> Result<Option<CpuStats>, Stop> {
    let Some(usage_ns) = read_parsed(&mut acct.usage, buf, skips, primary, parse_single_u64)?
    else {
        return Ok(None);
    };
    if let Some(last) = last
        && last.usage_ns == usage_ns
    {
        // No task ran: nothing else here can have moved.
        return Ok(Some(last.clone()));
    }
    let user_system = read_parsed(&mut acct.stat, buf, skips, primary, parse_cpuacct_stat)?;
    let mut cpu = CpuStats {
        usage_ns,
        user_ns: user_system.map(|s| s.user_ns),
        system_ns: user_system.map(|s| s.system_ns),
        ..CpuStats::default()
    };
    let Some(ctl) = ctl else {
        return Ok(Some(cpu));
    };
    let quota_us =
        read_parsed(&mut ctl.quota, buf, skips, primary, parse_single_i64)?.filter(|q| *q >= 0);
    if let Some(quota_us) = quota_us {
        // The period only matters under a quota: skip reading it otherwise.
        if let Some(period_us) =
            read_parsed(&mut ctl.period, buf, skips, primary, parse_single_u64)?
        {
            match cfs_millicores(quota_us, period_us) {
                Ok(m) => cpu.limit_millicores = m,
                Err(e) => {
                    skips.malformed(ctl.period.path(), &e.to_string());
                    return Err(Stop::Skipped);
                }
            }
        }
    }
    match last {
        // Throttling needs a quota: without one the counters stand still.
        Some(last) if quota_us.is_none() => {
            cpu.periods = last.periods;
            cpu.throttled_periods = last.throttled_periods;
            cpu.throttled_ns = last.throttled_ns;
        }
        _ => {
            if let Some([periods, throttled, throttled_ns]) =
                read_parsed(&mut ctl.stat, buf, skips, primary, |b| {
                    parse_flat_keys(b, &["nr_periods", "nr_throttled", "throttled_time"])
                })?
            {
                cpu.periods = periods.unwrap_or(0);
                cpu.throttled_periods = throttled.unwrap_or(0);
                cpu.throttled_ns = throttled_ns.unwrap_or(0);
            }
        }
    }
    cpu.shares = read_parsed(&mut ctl.shares, buf, skips, primary, parse_single_u64)?;
    Ok(Some(cpu))
}

fn read_memory(
    m: &mut Memory,
    buf: &mut Vec<u8>,
    skips: &mut Skips,
    primary: Option<&Path>,
    carry: MemoryCarry<'_>,
) -> Result<Option<MemoryStats>, Stop> {
    let Some(usage_bytes) = read_parsed(&mut m.usage, buf, skips, primary, parse_single_u64)?
    else {
        return Ok(None);
    };
    if let Some(unchanged) = carry.unchanged(usage_bytes) {
        return Ok(Some(unchanged));
    }
    let Some((required, total_swap)) = read_parsed(&mut m.stat, buf, skips, primary, |b| {
        let [rss, cache, inactive_file, swap] = parse_flat_keys(
            b,
            &[
                "total_rss",
                "total_cache",
                "total_inactive_file",
                "total_swap",
            ],
        )?;
        let need = |v: Option<u64>, k| v.ok_or(parse::ParseError::MissingKey(k));
        Ok((
            [
                need(rss, "total_rss")?,
                need(cache, "total_cache")?,
                need(inactive_file, "total_inactive_file")?,
            ],
            swap,
        ))
    })?
    else {
        return Ok(None);
    };
    let [rss_bytes, cache_bytes, inactive_file] = required;
    let limit_bytes =
        read_parsed(&mut m.limit, buf, skips, primary, parse_v1_limit_bytes)?.flatten();
    let oom_kills = match carry.oom_kills() {
        Some(kills) => kills,
        None => read_parsed(&mut m.oom_control, buf, skips, primary, |b| {
            parse_flat_keys(b, &["oom_kill"])
        })?
        .and_then(|[k]| k)
        .unwrap_or(0),
    };
    let swap_bytes = match total_swap {
        Some(s) => Some(s),
        // No `total_swap` in memory.stat: derive from memsw where present.
        None => read_parsed(&mut m.memsw_usage, buf, skips, primary, parse_single_u64)?
            .map(|memsw| memsw.saturating_sub(usage_bytes)),
    };
    let (peak_bytes, peak_source) = read_peak(m, usage_bytes, buf, skips, primary)?;
    Ok(Some(MemoryStats {
        usage_bytes,
        working_set_bytes: usage_bytes.saturating_sub(inactive_file),
        rss_bytes,
        cache_bytes,
        swap_bytes,
        limit_bytes,
        peak_bytes,
        peak_source,
        oom_kills,
    }))
}

/// `memory.max_usage_in_bytes` since the previous tick when it can be reset,
/// otherwise the usage just read.
fn read_peak(
    m: &mut Memory,
    usage_bytes: u64,
    buf: &mut Vec<u8>,
    skips: &mut Skips,
    primary: Option<&Path>,
) -> Result<(u64, PeakSource), Stop> {
    if m.peak_mode == PeakMode::Untried {
        // Reset first so the first tick does not report the all-time peak.
        reset_peak(&mut m.max_usage, &mut m.peak_mode, primary)?;
    }
    if m.peak_mode != PeakMode::Reset {
        return Ok((usage_bytes, PeakSource::Sampled));
    }
    let Some(peak) = read_parsed(&mut m.max_usage, buf, skips, primary, parse_single_u64)? else {
        m.peak_mode = PeakMode::Sampled;
        return Ok((usage_bytes, PeakSource::Sampled));
    };
    reset_peak(&mut m.max_usage, &mut m.peak_mode, primary)?;
    Ok((peak.max(usage_bytes), PeakSource::KernelReset))
}

/// Reads the `_recursive` variant, falling back to the plain file on kernels
/// without it (the absent file costs nothing after the first tick).
fn read_blkio_file(
    recursive: &mut CgroupFile,
    plain: &mut CgroupFile,
    buf: &mut Vec<u8>,
    skips: &mut Skips,
    primary: Option<&Path>,
) -> Result<Option<parse::BlkioTotals>, Stop> {
    if let Some(t) = read_parsed(recursive, buf, skips, primary, parse_blkio)? {
        return Ok(Some(t));
    }
    read_parsed(plain, buf, skips, primary, parse_blkio)
}

/// Block IO; `last` is the previous read's (`None` on full reads), for
/// skipping the operation counts when no byte moved.
fn read_blkio(
    b: &mut Blkio,
    buf: &mut Vec<u8>,
    skips: &mut Skips,
    primary: Option<&Path>,
    last: Option<IoStats>,
) -> Result<Option<IoStats>, Stop> {
    let Some(bytes) = read_blkio_file(&mut b.bytes_recursive, &mut b.bytes, buf, skips, primary)?
    else {
        return Ok(None);
    };
    let (read_ops, write_ops) = match last {
        // No byte moved: no operation either, but for a cache flush, which
        // the next full read counts.
        Some(last) if last.read_bytes == bytes.read && last.write_bytes == bytes.write => {
            (last.read_ops, last.write_ops)
        }
        _ => {
            let ops = read_blkio_file(&mut b.ops_recursive, &mut b.ops, buf, skips, primary)?
                .unwrap_or_default();
            (ops.read, ops.write)
        }
    };
    Ok(Some(IoStats {
        read_bytes: bytes.read,
        write_bytes: bytes.write,
        read_ops,
        write_ops,
    }))
}

//! Node-level usage from the host's `/proc`: CPU time, memory, load, boot
//! time and PSI. Parsed with `procfs` (read from the host root, so it works
//! under `--host-root`).

use std::path::{Path, PathBuf};

use procfs::prelude::*;
use procfs::{ExplicitSystemInfo, KernelStats, LoadAverage, Meminfo};
use upid::model::{CgroupLayout, NodeSample, Pressure};

use crate::cgroup::parse;
use crate::host::HostRoot;
use crate::skips::Skips;

/// Nanoseconds per USER_HZ tick. Linux fixes USER_HZ at 100 on every
/// architecture we run on, whatever CONFIG_HZ is.
const NS_PER_USER_HZ_TICK: u64 = 10_000_000;

/// A node file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct NodeError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: procfs::ProcError,
}

/// Reads [`NodeSample`]s from one host's `/proc`.
#[derive(Debug)]
pub struct NodeReader {
    proc_dir: PathBuf,
    node_name: String,
    layout: CgroupLayout,
    system_info: ExplicitSystemInfo,
}

impl NodeReader {
    /// A reader for the host at `host`, reporting itself as `node_name`
    /// (the hostname when `None`).
    pub fn new(host: &HostRoot, node_name: Option<String>, layout: CgroupLayout) -> Self {
        let proc_dir = host.proc();
        let node_name = node_name.unwrap_or_else(|| hostname(&proc_dir));
        NodeReader {
            proc_dir,
            node_name,
            layout,
            system_info: ExplicitSystemInfo {
                boot_time_secs: 0,
                ticks_per_second: 100,
                page_size: 4096,
                is_little_endian: cfg!(target_endian = "little"),
            },
        }
    }

    /// The name this node reports.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Reads the node now. `/proc/stat`, `/proc/meminfo` and `/proc/loadavg`
    /// are required; PSI is optional (absent on kernels without it, and a
    /// malformed pressure file is a counted skip).
    pub fn read(&self, timestamp_unix_ns: i64, skips: &mut Skips) -> Result<NodeSample, NodeError> {
        let stat_path = self.proc_dir.join("stat");
        let stat =
            KernelStats::from_file(&stat_path, &self.system_info).map_err(|source| NodeError {
                path: stat_path,
                source,
            })?;
        let mem_path = self.proc_dir.join("meminfo");
        let mem = Meminfo::from_file(&mem_path).map_err(|source| NodeError {
            path: mem_path,
            source,
        })?;
        let load_path = self.proc_dir.join("loadavg");
        let load = LoadAverage::from_file(&load_path).map_err(|source| NodeError {
            path: load_path,
            source,
        })?;

        let t = &stat.total;
        let idle_ticks = t.idle + t.iowait.unwrap_or(0);
        // guest time is already included in user/nice; do not count it twice.
        let total_ticks = t.user
            + t.nice
            + t.system
            + t.idle
            + t.iowait.unwrap_or(0)
            + t.irq.unwrap_or(0)
            + t.softirq.unwrap_or(0)
            + t.steal.unwrap_or(0);
        let cpu_count = u32::try_from(stat.cpu_time.len())
            .unwrap_or(u32::MAX)
            .max(1);

        Ok(NodeSample {
            node_name: self.node_name.clone(),
            timestamp_unix_ns,
            boot_time_unix_s: stat.btime,
            cpu_count,
            cpu_total_ns: total_ticks.saturating_mul(NS_PER_USER_HZ_TICK),
            cpu_idle_ns: idle_ticks.saturating_mul(NS_PER_USER_HZ_TICK),
            memory_total_bytes: mem.mem_total,
            memory_available_bytes: mem.mem_available.unwrap_or(mem.mem_free),
            load1: f64::from(load.one),
            load5: f64::from(load.five),
            load15: f64::from(load.fifteen),
            pressure: read_node_pressure(&self.proc_dir.join("pressure"), skips),
            cgroup_layout: self.layout,
        })
    }
}

/// Reads `/proc/pressure/{cpu,memory,io}`; `None` when the kernel has no PSI.
fn read_node_pressure(dir: &Path, skips: &mut Skips) -> Option<Pressure> {
    let mut read_one = |name: &str| {
        let path = dir.join(name);
        let text = std::fs::read(&path).ok()?;
        match parse::parse_pressure(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                skips.malformed(&path, &e.to_string());
                None
            }
        }
    };
    let pressure = Pressure {
        cpu: read_one("cpu"),
        memory: read_one("memory"),
        io: read_one("io"),
    };
    (!pressure.is_empty()).then_some(pressure)
}

/// The host's name from `<proc>/sys/kernel/hostname`, or `unknown`.
fn hostname(proc_dir: &Path) -> String {
    std::fs::read_to_string(proc_dir.join("sys/kernel/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_hosts_proc() {
        let reader = NodeReader::new(&HostRoot::default(), None, CgroupLayout::Hybrid);
        let mut skips = Skips::default();
        let node = reader
            .read(1, &mut skips)
            .expect("this host's /proc is readable");
        assert!(node.cpu_count >= 1);
        assert!(node.cpu_total_ns > node.cpu_idle_ns);
        assert!(node.memory_total_bytes > node.memory_available_bytes);
        // /proc/meminfo says kB; the model says bytes.
        let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
        let total_kb: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("MemTotal line");
        assert_eq!(node.memory_total_bytes, total_kb * 1024);
        assert!(node.boot_time_unix_s > 1_500_000_000);
        assert_eq!(skips.malformed_count(), 0);
    }

    #[test]
    fn missing_proc_is_a_clear_error() {
        let reader = NodeReader::new(
            &HostRoot::new("/nonexistent-upid-root"),
            Some("n".into()),
            CgroupLayout::V2,
        );
        let err = reader
            .read(1, &mut Skips::default())
            .expect_err("no /proc there");
        assert!(
            err.to_string().contains("/nonexistent-upid-root/proc/stat"),
            "{err}"
        );
    }
}

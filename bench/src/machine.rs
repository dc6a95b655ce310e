//! What machine a result was measured on, for the record.

use serde_json::{Value, json};
use upid_agent::cgroup::Hierarchies;

/// The facts about this machine that a benchmark result depends on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `uname -r`.
    pub kernel: String,
    /// `MemTotal`, bytes.
    pub memory_bytes: u64,
    /// Cgroup layout as the agent detected it (`v1`, `v2`, `hybrid`).
    pub cgroup_layout: String,
    /// Where the cgroup2 hierarchy is mounted, if anywhere.
    pub unified_mount: Option<String>,
    /// v1 hierarchies, `controller=mount`.
    pub v1_mounts: Vec<String>,
    /// Whether the kernel counts cgroup v1 block IO: the `blkio` root's
    /// recursive byte counter lists a device (it lists none until a
    /// throttle rule was set since boot; docs/metrics.md). `None` without a
    /// readable v1 `blkio` hierarchy. When it does not count, the agent
    /// reads no block IO files at all, which changes its cost.
    pub v1_block_io_counted: Option<bool>,
}

impl Machine {
    /// Reads the machine's facts; unknown ones become `"unknown"`/0.
    pub fn detect(hierarchies: &Hierarchies) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| {
                        v.trim()
                            .strip_suffix("kB")
                            .and_then(|n| n.trim().parse::<u64>().ok())
                    })
            })
            .map_or(0, |kib| kib * 1024);
        let v1_block_io_counted = hierarchies
            .v1_controller("blkio")
            .and_then(|m| {
                std::fs::read_to_string(m.join("blkio.throttle.io_service_bytes_recursive")).ok()
            })
            .map(|text| {
                text.lines()
                    .any(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            });
        Machine {
            v1_block_io_counted,
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            kernel,
            memory_bytes,
            cgroup_layout: format!("{:?}", hierarchies.layout).to_lowercase(),
            unified_mount: hierarchies
                .unified
                .as_ref()
                .map(|p| p.display().to_string()),
            v1_mounts: hierarchies
                .v1
                .iter()
                .map(|(c, p)| format!("{c}={}", p.display()))
                .collect(),
        }
    }

    /// As a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "kernel": self.kernel,
            "memory_bytes": self.memory_bytes,
            "cgroup_layout": self.cgroup_layout,
            "unified_mount": self.unified_mount,
            "v1_mounts": self.v1_mounts,
            "v1_block_io_counted": self.v1_block_io_counted,
        })
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} CPUs ({}), {:.1} GiB, kernel {}, cgroups {} ({} v1 hierarchies{}{})",
            self.cpus,
            self.cpu_model,
            self.memory_bytes as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.cgroup_layout,
            self.v1_mounts.len(),
            self.unified_mount
                .as_deref()
                .map(|u| format!(", cgroup2 at {u}"))
                .unwrap_or_default(),
            match self.v1_block_io_counted {
                Some(true) => ", v1 block IO counted",
                Some(false) => ", v1 block IO NOT counted (no throttle rule since boot)",
                None => "",
            },
        )
    }
}

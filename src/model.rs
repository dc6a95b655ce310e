//! The measurement model: what the agent samples per node and per container.
//!
//! Counters are cumulative, exactly as the kernel reports them; rates are
//! derived by whoever holds two samples. Units are in the field names.
//! `Option` means "the kernel or the layout does not expose this", never zero.

use serde::{Deserialize, Serialize};

/// Which runtime or source created a sampled cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Docker Engine (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
    /// containerd CRI (`cri-containerd-<id>.scope`, kubelet cgroupfs paths).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    Crio,
    /// Podman (`libpod-<id>.scope`).
    Podman,
    /// A systemd service (`system.slice/<name>.service`).
    Systemd,
    /// A cgroup matched by a configured glob.
    Cgroup,
}

impl Runtime {
    /// Lower-case name as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Podman => "podman",
            Runtime::Systemd => "systemd",
            Runtime::Cgroup => "cgroup",
        }
    }
}

/// Kubernetes QoS class of a pod, read from the kubelet's cgroup path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    /// Requests equal limits for every container.
    Guaranteed,
    /// Some requests set.
    Burstable,
    /// No requests or limits.
    BestEffort,
}

impl QosClass {
    /// Name as Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// How [`MemoryStats::peak_bytes`] was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeakSource {
    /// The kernel's high-water mark, reset after every read: the true peak
    /// since the previous tick (v2 `memory.peak` per-fd reset, v1
    /// `memory.max_usage_in_bytes` reset).
    KernelReset,
    /// The largest usage the agent read during the tick; may miss spikes.
    Sampled,
}

/// Cgroup hierarchy layout of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupLayout {
    /// Only v1 controller hierarchies.
    V1,
    /// Only the unified cgroup2 hierarchy.
    V2,
    /// v1 controllers plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`).
    Hybrid,
}

/// Who a cgroup belongs to, derived from its path alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CgroupIdentity {
    /// Path relative to the hierarchy root, e.g. `/docker/<id>`.
    pub cgroup_path: String,
    /// Runtime or source that created it.
    pub runtime: Runtime,
    /// Full 64-hex container id; `None` for services and glob matches.
    pub container_id: Option<String>,
    /// Kubernetes pod UID (with dashes); `None` outside Kubernetes.
    pub pod_uid: Option<String>,
    /// Kubernetes QoS class; `None` outside Kubernetes.
    pub qos: Option<QosClass>,
    /// systemd unit name for services.
    pub unit: Option<String>,
}

impl CgroupIdentity {
    /// Short name for tables: 12-hex container id, unit name, or the path.
    pub fn short_name(&self) -> &str {
        if let Some(id) = &self.container_id {
            id.get(..12).unwrap_or(id)
        } else if let Some(unit) = &self.unit {
            unit
        } else {
            &self.cgroup_path
        }
    }
}

/// CPU counters of one cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Cumulative CPU time used, all CPUs.
    pub usage_ns: u64,
    /// Cumulative user-mode CPU time, where exposed.
    pub user_ns: Option<u64>,
    /// Cumulative kernel-mode CPU time, where exposed.
    pub system_ns: Option<u64>,
    /// CFS enforcement periods elapsed.
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    pub throttled_periods: u64,
    /// Cumulative time throttled.
    pub throttled_ns: u64,
    /// CFS quota / period in millicores; `None` when unlimited.
    pub limit_millicores: Option<u64>,
    /// CPU shares (v1 `cpu.shares`, or v2 `cpu.weight` converted to shares).
    pub shares: Option<u64>,
}

/// Memory state of one cgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Charged memory, page cache included.
    pub usage_bytes: u64,
    /// `usage − inactive_file`, floored at 0: what the OOM killer looks at.
    pub working_set_bytes: u64,
    /// Anonymous memory (v2 `anon`, v1 `total_rss`).
    pub rss_bytes: u64,
    /// Page cache (v2 `file`, v1 `total_cache`).
    pub cache_bytes: u64,
    /// Swap in use, where exposed.
    pub swap_bytes: Option<u64>,
    /// Hard limit; `None` when unlimited.
    pub limit_bytes: Option<u64>,
    /// Peak usage since the previous tick (see [`PeakSource`]).
    pub peak_bytes: u64,
    /// How `peak_bytes` was obtained.
    pub peak_source: PeakSource,
    /// Cumulative OOM kills inside this cgroup.
    pub oom_kills: u64,
}

/// Pressure stall totals of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PressureStats {
    /// Cumulative time some task stalled.
    pub some_total_us: u64,
    /// Cumulative time all tasks stalled, where the kernel reports it.
    pub full_total_us: Option<u64>,
}

/// Pressure stall information (PSI) for CPU, memory and IO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pressure {
    /// CPU pressure.
    pub cpu: Option<PressureStats>,
    /// Memory pressure.
    pub memory: Option<PressureStats>,
    /// IO pressure.
    pub io: Option<PressureStats>,
}

impl Pressure {
    /// True when no resource reported pressure.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.io.is_none()
    }
}

/// Block IO counters of one cgroup, summed over devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStats {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ops: u64,
    /// Write operations.
    pub write_ops: u64,
}

/// Process count of one cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Tasks in the cgroup now.
    pub current: u64,
    /// `pids.max`; `None` when unlimited.
    pub limit: Option<u64>,
}

/// Everything read from one cgroup in one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupStats {
    /// CPU counters, if the cpu/cpuacct controller is reachable.
    pub cpu: Option<CpuStats>,
    /// Memory state, if the memory controller is reachable.
    pub memory: Option<MemoryStats>,
    /// Block IO, if the io/blkio controller is reachable.
    pub io: Option<IoStats>,
    /// Task count, if the pids controller is reachable.
    pub pids: Option<PidsStats>,
    /// PSI, where the kernel exposes it for this cgroup.
    pub pressure: Option<Pressure>,
}

/// One container (or service) in one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSample {
    /// Who this is.
    pub identity: CgroupIdentity,
    /// When it was read (Unix epoch, ns).
    pub timestamp_unix_ns: i64,
    /// What was read.
    #[serde(flatten)]
    pub stats: CgroupStats,
    /// Network namespace, joining [`NetworkSample::netns_inode`]; `None` in
    /// the host's namespace or when no task could be inspected.
    pub netns_inode: Option<u64>,
}

/// Traffic of one network namespace, `lo` excluded, read once per tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSample {
    /// Inode of the namespace (`/proc/<pid>/ns/net`).
    pub netns_inode: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}

/// The node as a whole, from `/proc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSample {
    /// Node name (Kubernetes node name or hostname).
    pub node_name: String,
    /// When it was read (Unix epoch, ns).
    pub timestamp_unix_ns: i64,
    /// Boot time (Unix epoch, s): a change means counters restarted.
    pub boot_time_unix_s: u64,
    /// Online CPUs.
    pub cpu_count: u32,
    /// Cumulative CPU time of all CPUs, idle included.
    pub cpu_total_ns: u64,
    /// Cumulative idle + iowait time of all CPUs.
    pub cpu_idle_ns: u64,
    /// `MemTotal`.
    pub memory_total_bytes: u64,
    /// `MemAvailable`.
    pub memory_available_bytes: u64,
    /// 1-minute load average.
    pub load1: f64,
    /// 5-minute load average.
    pub load5: f64,
    /// 15-minute load average.
    pub load15: f64,
    /// Node PSI from `/proc/pressure`, where present.
    pub pressure: Option<Pressure>,
    /// The node's cgroup layout.
    pub cgroup_layout: CgroupLayout,
}

/// Everything one tick produced on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The node.
    pub node: NodeSample,
    /// Every sampled container and service.
    pub containers: Vec<ContainerSample>,
    /// Every network namespace the containers live in (host excluded).
    pub networks: Vec<NetworkSample>,
    /// Files that could not be parsed this tick (counted, logged, skipped).
    pub malformed_skips: u64,
    /// Cgroups that vanished while being read this tick.
    pub vanished: u64,
}

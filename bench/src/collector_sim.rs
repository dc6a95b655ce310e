//! The simulated agents of the collector benchmark: deterministic,
//! realistic container samples.
//!
//! Every container has its own character (CPU use and limit, working set,
//! IO, whether it gets throttled), drawn from a seed, and moves a little
//! every tick: cumulative counters (CPU ns, throttling, IO, PSI) only grow,
//! memory wobbles around its level, an OOM kill happens now and then. A
//! tick is [`TICK_INTERVAL_NS`] of simulated time, whatever the send rate,
//! so the stored series look like a real history (what matters for
//! compression). The same `(agent, container)` always produces the same
//! series, so the Prometheus comparison can write exactly the values the
//! collector stored.

use upid::wire::v1::{
    Batch, CgroupIdentity, CgroupLayout, ContainerSample, CpuStats, IoStats, MemoryStats,
    NodeSample, PeakSource, PidsStats, Pressure, PressureStats, Runtime, Snapshot, SpoolStats,
};

/// Simulated time between two ticks of one agent (the agent's default
/// interval).
pub const TICK_INTERVAL_NS: i64 = 10_000_000_000;

/// Simulated time of tick 0, on a 2-hour boundary (Prometheus cuts blocks
/// there): 2023-11-14T22:00:00Z.
pub const EPOCH_UNIX_NS: i64 =
    1_700_000_000_000_000_000 - 1_700_000_000_000_000_000 % 7_200_000_000_000;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// Whether a metric only grows (Prometheus `counter`) or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Cumulative.
    Counter,
    /// Level.
    Gauge,
}

/// One numeric field of a container sample that counts as a stored value.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Prometheus metric name (without `_total`).
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Reads the field (0 when absent; the simulation sets them all).
    pub get: fn(&ContainerSample) -> u64,
}

macro_rules! metric {
    ($name:literal, $kind:ident, |$s:ident| $get:expr) => {
        Metric {
            name: $name,
            kind: MetricKind::$kind,
            get: |$s: &ContainerSample| $get,
        }
    };
}

/// Every numeric field the simulation sets, in `container_samples` column
/// order. Each is one stored value per sample. Not counted: the timestamp
/// and identity, `netns_inode` (an identity) and `peak_source` (an enum),
/// which the collector stores too; its bytes per value are charged for
/// them.
pub const METRICS: [Metric; 28] = [
    metric!("upid_cpu_usage_ns", Counter, |s| s
        .cpu
        .as_ref()
        .map_or(0, |c| c.usage_ns)),
    metric!("upid_cpu_user_ns", Counter, |s| s
        .cpu
        .as_ref()
        .and_then(|c| c.user_ns)
        .unwrap_or(0)),
    metric!("upid_cpu_system_ns", Counter, |s| s
        .cpu
        .as_ref()
        .and_then(|c| c.system_ns)
        .unwrap_or(0)),
    metric!("upid_cpu_periods", Counter, |s| s
        .cpu
        .as_ref()
        .map_or(0, |c| c.periods)),
    metric!("upid_cpu_throttled_periods", Counter, |s| s
        .cpu
        .as_ref()
        .map_or(0, |c| c.throttled_periods)),
    metric!("upid_cpu_throttled_ns", Counter, |s| s
        .cpu
        .as_ref()
        .map_or(0, |c| c.throttled_ns)),
    metric!("upid_cpu_limit_millicores", Gauge, |s| s
        .cpu
        .as_ref()
        .and_then(|c| c.limit_millicores)
        .unwrap_or(0)),
    metric!("upid_cpu_shares", Gauge, |s| s
        .cpu
        .as_ref()
        .and_then(|c| c.shares)
        .unwrap_or(0)),
    metric!("upid_memory_usage_bytes", Gauge, |s| s
        .memory
        .as_ref()
        .map_or(0, |m| m.usage_bytes)),
    metric!("upid_memory_working_set_bytes", Gauge, |s| s
        .memory
        .as_ref()
        .map_or(0, |m| m.working_set_bytes)),
    metric!("upid_memory_rss_bytes", Gauge, |s| s
        .memory
        .as_ref()
        .map_or(0, |m| m.rss_bytes)),
    metric!("upid_memory_cache_bytes", Gauge, |s| s
        .memory
        .as_ref()
        .map_or(0, |m| m.cache_bytes)),
    metric!("upid_memory_swap_bytes", Gauge, |s| s
        .memory
        .as_ref()
        .and_then(|m| m.swap_bytes)
        .unwrap_or(0)),
    metric!("upid_memory_limit_bytes", Gauge, |s| s
        .memory
        .as_ref()
        .and_then(|m| m.limit_bytes)
        .unwrap_or(0)),
    metric!("upid_memory_peak_bytes", Gauge, |s| s
        .memory
        .as_ref()
        .map_or(0, |m| m.peak_bytes)),
    metric!("upid_memory_oom_kills", Counter, |s| s
        .memory
        .as_ref()
        .map_or(0, |m| m.oom_kills)),
    metric!("upid_io_read_bytes", Counter, |s| s
        .io
        .as_ref()
        .map_or(0, |i| i.read_bytes)),
    metric!("upid_io_write_bytes", Counter, |s| s
        .io
        .as_ref()
        .map_or(0, |i| i.write_bytes)),
    metric!("upid_io_read_ops", Counter, |s| s
        .io
        .as_ref()
        .map_or(0, |i| i.read_ops)),
    metric!("upid_io_write_ops", Counter, |s| s
        .io
        .as_ref()
        .map_or(0, |i| i.write_ops)),
    metric!("upid_pids_current", Gauge, |s| s
        .pids
        .as_ref()
        .map_or(0, |p| p.current)),
    metric!("upid_pids_limit", Gauge, |s| s
        .pids
        .as_ref()
        .and_then(|p| p.limit)
        .unwrap_or(0)),
    metric!("upid_psi_cpu_some_us", Counter, |s| psi(
        s,
        |p| p.cpu.as_ref(),
        false
    )),
    metric!("upid_psi_cpu_full_us", Counter, |s| psi(
        s,
        |p| p.cpu.as_ref(),
        true
    )),
    metric!("upid_psi_memory_some_us", Counter, |s| psi(
        s,
        |p| p.memory.as_ref(),
        false
    )),
    metric!("upid_psi_memory_full_us", Counter, |s| psi(
        s,
        |p| p.memory.as_ref(),
        true
    )),
    metric!("upid_psi_io_some_us", Counter, |s| psi(
        s,
        |p| p.io.as_ref(),
        false
    )),
    metric!("upid_psi_io_full_us", Counter, |s| psi(
        s,
        |p| p.io.as_ref(),
        true
    )),
];

fn psi(s: &ContainerSample, which: fn(&Pressure) -> Option<&PressureStats>, full: bool) -> u64 {
    let stats = s.pressure.as_ref().and_then(which);
    if full {
        stats.and_then(|p| p.full_total_us).unwrap_or(0)
    } else {
        stats.map_or(0, |p| p.some_total_us)
    }
}

/// SplitMix64: a small, good, deterministic mixer.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A deterministic random stream.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Name of simulated agent `index` (also its node's name, with `node-`).
pub fn agent_id(index: usize) -> String {
    format!("bench-agent-{index:04}")
}

/// Name of simulated agent `index`'s node.
pub fn node_name(index: usize) -> String {
    format!("bench-node-{index:04}")
}

/// The 64-hex-digit Docker id of container `container` of agent `agent`.
pub fn container_id(agent: usize, container: usize) -> String {
    let seed = ((agent as u64) << 32) | container as u64;
    (0..4)
        .map(|i| format!("{:016x}", mix(seed ^ (i << 60))))
        .collect()
}

/// One simulated container: its character and its counters so far.
#[derive(Debug, Clone)]
pub struct SimContainer {
    rng: Rng,
    identity: CgroupIdentity,
    /// Offset of its samples from the tick's time, ns.
    offset_ns: i64,
    netns_inode: u64,
    cpu_mean_millicores: f64,
    cpu_limit_millicores: u64,
    memory_level_bytes: f64,
    memory_limit_bytes: u64,
    io_busy: f64,
    pids_level: u64,
    // Cumulative counters.
    usage_ns: u64,
    user_ns: u64,
    system_ns: u64,
    periods: u64,
    throttled_periods: u64,
    throttled_ns: u64,
    oom_kills: u64,
    read_bytes: u64,
    write_bytes: u64,
    read_ops: u64,
    write_ops: u64,
    psi_us: [u64; 6],
    // Levels.
    working_set_bytes: f64,
    pids_current: u64,
}

impl SimContainer {
    /// Container `container` of agent `agent`, before its first tick.
    pub fn new(agent: usize, container: usize) -> SimContainer {
        let id = container_id(agent, container);
        let mut rng = Rng(mix(((agent as u64) << 32) ^ container as u64 ^ 0x5eed));
        // Most containers idle along, a few are busy, some run at their limit.
        let cpu_limit_millicores = [250, 500, 1000, 2000, 4000][rng.range(0, 5) as usize];
        let busy = rng.unit();
        let cpu_mean_millicores = if busy < 0.6 {
            5.0 + rng.unit() * 50.0
        } else if busy < 0.9 {
            50.0 + rng.unit() * cpu_limit_millicores as f64 * 0.5
        } else {
            cpu_limit_millicores as f64 * (0.85 + rng.unit() * 0.3)
        };
        let memory_level_bytes = (20 + rng.range(0, 1500)) as f64 * MIB as f64;
        let memory_limit_bytes = ((memory_level_bytes as u64 * 2) / (64 * MIB) + 1) * 64 * MIB;
        SimContainer {
            identity: CgroupIdentity {
                cgroup_path: format!("/system.slice/docker-{id}.scope"),
                runtime: Runtime::Docker as i32,
                container_id: id,
                pod_uid: String::new(),
                qos: 0,
                unit: String::new(),
            },
            offset_ns: container as i64 * 180_000,
            netns_inode: 4_026_531_840 + ((agent as u64) << 12) + container as u64,
            cpu_mean_millicores,
            cpu_limit_millicores,
            memory_level_bytes,
            memory_limit_bytes,
            io_busy: rng.unit(),
            pids_level: rng.range(1, 60),
            usage_ns: rng.range(0, 1 << 40),
            user_ns: 0,
            system_ns: 0,
            periods: 0,
            throttled_periods: 0,
            throttled_ns: 0,
            oom_kills: 0,
            read_bytes: 0,
            write_bytes: 0,
            read_ops: 0,
            write_ops: 0,
            psi_us: [0; 6],
            working_set_bytes: memory_level_bytes,
            pids_current: 0,
            rng,
        }
    }

    /// Advances one tick and returns the sample at `tick_unix_ns`.
    pub fn next(&mut self, tick_unix_ns: i64) -> ContainerSample {
        let rng = &mut self.rng;
        let interval_s = TICK_INTERVAL_NS as f64 / 1e9;
        // CPU: the mean with ±50 % noise, capped by the limit (the excess is
        // throttled).
        let wanted = self.cpu_mean_millicores * (0.5 + rng.unit());
        let limit = self.cpu_limit_millicores as f64;
        let used = wanted.min(limit);
        let used_ns = (used * 1e6 * interval_s) as u64;
        self.usage_ns += used_ns;
        let user = used_ns * 7 / 10;
        self.user_ns += user;
        self.system_ns += used_ns - user;
        let periods = TICK_INTERVAL_NS as u64 / 100_000_000;
        self.periods += periods;
        if wanted > limit * 0.9 {
            let throttled = rng.range(1, periods / 3);
            self.throttled_periods += throttled;
            self.throttled_ns += throttled * rng.range(1_000_000, 40_000_000);
            self.psi_us[0] += rng.range(10_000, 2_000_000);
            self.psi_us[1] += rng.range(0, 500_000);
        } else if rng.chance(0.1) {
            self.psi_us[0] += rng.range(0, 5_000);
        }
        // Memory wobbles around its level, in pages.
        let step = (rng.unit() - 0.5) * 0.02 * self.memory_level_bytes;
        self.working_set_bytes = (self.working_set_bytes + step)
            .clamp(self.memory_level_bytes * 0.8, self.memory_level_bytes * 1.2);
        let working_set_bytes = self.working_set_bytes as u64 / PAGE * PAGE;
        let cache_bytes = working_set_bytes / 4 / PAGE * PAGE + rng.range(0, 64) * PAGE;
        let inactive_file = cache_bytes / 2 / PAGE * PAGE;
        let usage_bytes = working_set_bytes + inactive_file;
        let peak_bytes = usage_bytes + rng.range(0, 512) * PAGE;
        if rng.chance(0.0002) {
            self.oom_kills += 1;
            self.psi_us[2] += rng.range(100_000, 3_000_000);
            self.psi_us[3] += rng.range(10_000, 1_000_000);
        } else if rng.chance(0.05) {
            self.psi_us[2] += rng.range(0, 20_000);
        }
        // IO: busy containers read and write every tick, others now and then.
        if rng.chance(self.io_busy) {
            let read = rng.range(0, 256) * PAGE;
            let write = rng.range(0, 512) * PAGE;
            self.read_bytes += read;
            self.write_bytes += write;
            self.read_ops += read / PAGE / 2;
            self.write_ops += write / PAGE / 3;
            self.psi_us[4] += rng.range(0, 100_000);
            self.psi_us[5] += rng.range(0, 20_000);
        }
        self.pids_current = (self.pids_level + rng.range(0, 4)).saturating_sub(1).max(1);
        ContainerSample {
            identity: Some(self.identity.clone()),
            timestamp_unix_ns: tick_unix_ns + self.offset_ns + rng.range(0, 2_000_000) as i64,
            cpu: Some(CpuStats {
                usage_ns: self.usage_ns,
                user_ns: Some(self.user_ns),
                system_ns: Some(self.system_ns),
                periods: self.periods,
                throttled_periods: self.throttled_periods,
                throttled_ns: self.throttled_ns,
                limit_millicores: Some(self.cpu_limit_millicores),
                shares: Some(self.cpu_limit_millicores * 1024 / 1000),
            }),
            memory: Some(MemoryStats {
                usage_bytes,
                working_set_bytes,
                rss_bytes: working_set_bytes * 9 / 10 / PAGE * PAGE,
                cache_bytes,
                swap_bytes: Some(0),
                limit_bytes: Some(self.memory_limit_bytes),
                peak_bytes,
                peak_source: PeakSource::KernelReset as i32,
                oom_kills: self.oom_kills,
            }),
            io: Some(IoStats {
                read_bytes: self.read_bytes,
                write_bytes: self.write_bytes,
                read_ops: self.read_ops,
                write_ops: self.write_ops,
            }),
            pids: Some(PidsStats {
                current: self.pids_current,
                limit: Some(4096),
            }),
            pressure: Some(Pressure {
                cpu: Some(PressureStats {
                    some_total_us: self.psi_us[0],
                    full_total_us: Some(self.psi_us[1]),
                }),
                memory: Some(PressureStats {
                    some_total_us: self.psi_us[2],
                    full_total_us: Some(self.psi_us[3]),
                }),
                io: Some(PressureStats {
                    some_total_us: self.psi_us[4],
                    full_total_us: Some(self.psi_us[5]),
                }),
            }),
            netns_inode: Some(self.netns_inode),
        }
    }
}

/// Time of tick `seq` (1-based) of agent `agent`: ticks are
/// [`TICK_INTERVAL_NS`] apart, agents spread over the interval.
pub fn tick_unix_ns(agent: usize, seq: u64) -> i64 {
    EPOCH_UNIX_NS + seq as i64 * TICK_INTERVAL_NS + (agent as i64 % 1000) * 9_000_000
}

/// One simulated agent: its node and containers.
#[derive(Debug, Clone)]
pub struct SimAgent {
    index: usize,
    agent_id: String,
    node_name: String,
    containers: Vec<SimContainer>,
    seq: u64,
    node_cpu_ns: u64,
}

impl SimAgent {
    /// Agent `index` with `containers` containers, before its first batch.
    pub fn new(index: usize, containers: usize) -> SimAgent {
        SimAgent {
            index,
            agent_id: agent_id(index),
            node_name: node_name(index),
            containers: (0..containers)
                .map(|c| SimContainer::new(index, c))
                .collect(),
            seq: 0,
            node_cpu_ns: 0,
        }
    }

    /// Its agent id.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Its node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Containers per batch.
    pub fn containers(&self) -> usize {
        self.containers.len()
    }

    /// Sequence number of the latest batch made (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The next tick's batch (seq one higher than the last).
    pub fn next_batch(&mut self) -> Batch {
        self.seq += 1;
        let tick = tick_unix_ns(self.index, self.seq);
        let containers: Vec<ContainerSample> =
            self.containers.iter_mut().map(|c| c.next(tick)).collect();
        self.node_cpu_ns += 4 * TICK_INTERVAL_NS as u64;
        Batch {
            inventory: None,
            agent_id: self.agent_id.clone(),
            node_name: self.node_name.clone(),
            seq: self.seq,
            snapshot: Some(Snapshot {
                node: Some(NodeSample {
                    node_name: self.node_name.clone(),
                    timestamp_unix_ns: tick,
                    boot_time_unix_s: (EPOCH_UNIX_NS / 1_000_000_000) as u64 - 86_400,
                    cpu_count: 4,
                    cpu_total_ns: self.node_cpu_ns,
                    cpu_idle_ns: self.node_cpu_ns / 5 * 3,
                    memory_total_bytes: 16 << 30,
                    memory_available_bytes: 8 << 30,
                    load1: 1.25,
                    load5: 1.0,
                    load15: 0.75,
                    pressure: None,
                    cgroup_layout: CgroupLayout::V2 as i32,
                }),
                containers,
                networks: Vec::new(),
                malformed_skips: 0,
                vanished: 0,
            }),
            spool: Some(SpoolStats::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_agent_makes_the_same_series() {
        let mut a = SimAgent::new(3, 5);
        let mut b = SimAgent::new(3, 5);
        for _ in 0..20 {
            assert_eq!(a.next_batch(), b.next_batch());
        }
        assert_eq!(a.seq(), 20);
        let mut other = SimAgent::new(4, 5);
        assert_ne!(
            a.next_batch().snapshot.map(|s| s.containers),
            other.next_batch().snapshot.map(|s| s.containers)
        );
    }

    #[test]
    fn counters_grow_and_gauges_stay_near_their_level() {
        let mut c = SimContainer::new(1, 2);
        let mut previous = c.next(tick_unix_ns(1, 1));
        for seq in 2..500 {
            let s = c.next(tick_unix_ns(1, seq));
            for m in METRICS.iter().filter(|m| m.kind == MetricKind::Counter) {
                assert!((m.get)(&s) >= (m.get)(&previous), "{} went down", m.name);
            }
            assert!(s.timestamp_unix_ns > previous.timestamp_unix_ns);
            let mem = s.memory.as_ref().expect("memory");
            assert!(mem.working_set_bytes <= mem.usage_bytes);
            assert!(mem.usage_bytes <= mem.peak_bytes);
            assert!(mem.usage_bytes < mem.limit_bytes.unwrap_or(0));
            previous = s;
        }
        let cpu = previous.cpu.as_ref().expect("cpu");
        assert!(cpu.usage_ns > 0 && cpu.periods == 499 * 100);
    }

    #[test]
    fn container_ids_look_like_docker_ids() {
        let id = container_id(7, 42);
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, container_id(7, 43));
    }
}

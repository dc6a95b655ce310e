//! Rates from two consecutive snapshots: what `upid-agent top` shows.
//!
//! Counters are cumulative; a counter that went backwards means the cgroup
//! was recreated (a restart under the same path), so that interval has no
//! rate rather than a wrong one.

use std::collections::HashMap;

use serde::Serialize;
use upid::model::{CgroupIdentity, ContainerSample, NetworkSample, Snapshot};

/// One container's usage over the interval between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerRates {
    /// Who.
    pub identity: CgroupIdentity,
    /// Interval length.
    pub interval_s: f64,
    /// CPU used, in cores (1.0 = one full core).
    pub cpu_cores: Option<f64>,
    /// CPU limit in cores, if any.
    pub cpu_limit_cores: Option<f64>,
    /// Fraction of CFS periods in which the cgroup was throttled.
    pub throttled_ratio: Option<f64>,
    /// Seconds spent throttled per second.
    pub throttled_s_per_s: Option<f64>,
    /// Working set now.
    pub memory_working_set_bytes: Option<u64>,
    /// Memory limit, if any.
    pub memory_limit_bytes: Option<u64>,
    /// Peak memory during the interval.
    pub memory_peak_bytes: Option<u64>,
    /// OOM kills during the interval.
    pub oom_kills: Option<u64>,
    /// Network receive rate of the container's namespace.
    pub net_rx_bytes_per_s: Option<f64>,
    /// Network send rate of the container's namespace.
    pub net_tx_bytes_per_s: Option<f64>,
}

/// The node's usage over the interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRates {
    /// Node name.
    pub node_name: String,
    /// Busy CPU in cores.
    pub cpu_busy_cores: Option<f64>,
    /// Online CPUs.
    pub cpu_count: u32,
    /// Memory in use (total − available).
    pub memory_used_bytes: u64,
    /// Total memory.
    pub memory_total_bytes: u64,
    /// 1-minute load.
    pub load1: f64,
}

/// Rates for the node and every container present in both snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    /// The node.
    pub node: NodeRates,
    /// The containers, in the order of the newer snapshot.
    pub containers: Vec<ContainerRates>,
}

fn delta(prev: u64, cur: u64) -> Option<u64> {
    cur.checked_sub(prev)
}

fn per_s(d: Option<u64>, interval_s: f64) -> Option<f64> {
    if interval_s <= 0.0 {
        return None;
    }
    d.map(|d| d as f64 / interval_s)
}

/// Computes rates between `prev` and `cur`.
pub fn rates(prev: &Snapshot, cur: &Snapshot) -> Rates {
    let node_interval_s = (cur.node.timestamp_unix_ns - prev.node.timestamp_unix_ns) as f64 / 1e9;
    let busy = |s: &Snapshot| s.node.cpu_total_ns.saturating_sub(s.node.cpu_idle_ns);
    let node = NodeRates {
        node_name: cur.node.node_name.clone(),
        cpu_busy_cores: per_s(delta(busy(prev), busy(cur)), node_interval_s).map(|ns| ns / 1e9),
        cpu_count: cur.node.cpu_count,
        memory_used_bytes: cur
            .node
            .memory_total_bytes
            .saturating_sub(cur.node.memory_available_bytes),
        memory_total_bytes: cur.node.memory_total_bytes,
        load1: cur.node.load1,
    };

    let prev_by_path: HashMap<&str, &ContainerSample> = prev
        .containers
        .iter()
        .map(|c| (c.identity.cgroup_path.as_str(), c))
        .collect();
    let prev_net: HashMap<u64, &NetworkSample> =
        prev.networks.iter().map(|n| (n.netns_inode, n)).collect();
    let cur_net: HashMap<u64, &NetworkSample> =
        cur.networks.iter().map(|n| (n.netns_inode, n)).collect();

    let containers = cur
        .containers
        .iter()
        .filter_map(|c| {
            let p = prev_by_path.get(c.identity.cgroup_path.as_str())?;
            Some(container_rates(p, c, &prev_net, &cur_net))
        })
        .collect();
    Rates { node, containers }
}

fn container_rates(
    p: &ContainerSample,
    c: &ContainerSample,
    prev_net: &HashMap<u64, &NetworkSample>,
    cur_net: &HashMap<u64, &NetworkSample>,
) -> ContainerRates {
    let interval_s = (c.timestamp_unix_ns - p.timestamp_unix_ns) as f64 / 1e9;
    let cpu_pair = p.stats.cpu.as_ref().zip(c.stats.cpu.as_ref());
    let cpu_cores = cpu_pair
        .and_then(|(p, c)| per_s(delta(p.usage_ns, c.usage_ns), interval_s))
        .map(|ns| ns / 1e9);
    let throttled_ratio = cpu_pair.and_then(|(p, c)| {
        let periods = delta(p.periods, c.periods)?;
        let throttled = delta(p.throttled_periods, c.throttled_periods)?;
        (periods > 0).then(|| throttled as f64 / periods as f64)
    });
    let throttled_s_per_s = cpu_pair
        .and_then(|(p, c)| per_s(delta(p.throttled_ns, c.throttled_ns), interval_s))
        .map(|ns| ns / 1e9);
    let mem = c.stats.memory.as_ref();
    let oom_kills = p
        .stats
        .memory
        .as_ref()
        .zip(mem)
        .and_then(|(p, c)| delta(p.oom_kills, c.oom_kills));
    let net = c
        .netns_inode
        .filter(|inode| p.netns_inode == Some(*inode))
        .and_then(|inode| Some((*prev_net.get(&inode)?, *cur_net.get(&inode)?)));
    ContainerRates {
        identity: c.identity.clone(),
        interval_s,
        cpu_cores,
        cpu_limit_cores: c
            .stats
            .cpu
            .as_ref()
            .and_then(|c| c.limit_millicores)
            .map(|m| m as f64 / 1000.0),
        throttled_ratio,
        throttled_s_per_s,
        memory_working_set_bytes: mem.map(|m| m.working_set_bytes),
        memory_limit_bytes: mem.and_then(|m| m.limit_bytes),
        memory_peak_bytes: mem.map(|m| m.peak_bytes),
        oom_kills,
        net_rx_bytes_per_s: net.and_then(|(p, c)| per_s(delta(p.rx_bytes, c.rx_bytes), interval_s)),
        net_tx_bytes_per_s: net.and_then(|(p, c)| per_s(delta(p.tx_bytes, c.tx_bytes), interval_s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upid::model::*;

    fn snapshot(
        t_s: i64,
        usage_ns: u64,
        periods: u64,
        throttled: u64,
        ooms: u64,
        rx: u64,
    ) -> Snapshot {
        Snapshot {
            node: NodeSample {
                node_name: "n1".into(),
                timestamp_unix_ns: t_s * 1_000_000_000,
                boot_time_unix_s: 1,
                cpu_count: 2,
                cpu_total_ns: t_s as u64 * 2_000_000_000,
                cpu_idle_ns: t_s as u64 * 1_500_000_000,
                memory_total_bytes: 100,
                memory_available_bytes: 60,
                load1: 0.5,
                load5: 0.0,
                load15: 0.0,
                pressure: None,
                cgroup_layout: CgroupLayout::V2,
            },
            containers: vec![ContainerSample {
                identity: CgroupIdentity {
                    cgroup_path: "/docker/abc".into(),
                    runtime: Runtime::Docker,
                    container_id: None,
                    pod_uid: None,
                    qos: None,
                    unit: None,
                },
                timestamp_unix_ns: t_s * 1_000_000_000,
                stats: CgroupStats {
                    cpu: Some(CpuStats {
                        usage_ns,
                        periods,
                        throttled_periods: throttled,
                        throttled_ns: throttled * 10_000_000,
                        limit_millicores: Some(500),
                        ..Default::default()
                    }),
                    memory: Some(MemoryStats {
                        usage_bytes: 10,
                        working_set_bytes: 8,
                        rss_bytes: 5,
                        cache_bytes: 5,
                        swap_bytes: None,
                        limit_bytes: Some(64),
                        peak_bytes: 12,
                        peak_source: PeakSource::KernelReset,
                        oom_kills: ooms,
                    }),
                    ..Default::default()
                },
                netns_inode: Some(7),
            }],
            networks: vec![NetworkSample {
                netns_inode: 7,
                rx_bytes: rx,
                ..Default::default()
            }],
            malformed_skips: 0,
            vanished: 0,
        }
    }

    #[test]
    fn derives_cores_throttling_ooms_and_network() {
        let a = snapshot(100, 10_000_000_000, 1000, 100, 1, 1000);
        let b = snapshot(110, 15_000_000_000, 1100, 150, 3, 21_000);
        let r = rates(&a, &b);
        let c = &r.containers[0];
        assert_eq!(c.cpu_cores, Some(0.5));
        assert_eq!(c.cpu_limit_cores, Some(0.5));
        assert_eq!(c.throttled_ratio, Some(0.5));
        assert_eq!(c.throttled_s_per_s, Some(0.05));
        assert_eq!(c.oom_kills, Some(2));
        assert_eq!(c.net_rx_bytes_per_s, Some(2000.0));
        assert_eq!(r.node.cpu_busy_cores, Some(0.5));
        assert_eq!(r.node.memory_used_bytes, 40);
    }

    #[test]
    fn counter_reset_gives_no_rate_not_a_wrong_one() {
        let a = snapshot(100, 10_000_000_000, 1000, 100, 3, 5000);
        let b = snapshot(110, 1_000_000_000, 10, 0, 0, 100);
        let c = &rates(&a, &b).containers[0];
        assert_eq!(c.cpu_cores, None);
        assert_eq!(c.oom_kills, None);
        assert_eq!(c.net_rx_bytes_per_s, None);
        assert_eq!(c.memory_working_set_bytes, Some(8));
    }
}

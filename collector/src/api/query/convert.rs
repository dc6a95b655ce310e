//! Store read-side types as `upid.v1` wire messages.

use upid::model;
use upid::wire::v1;

use std::collections::HashMap;

use crate::store::{
    ContainerDetail, ContainerInfo, InventoryRecord, NodeInfo, Rates, StoredSample, TopEntry,
};

/// Inventory records by container id (see `Reader::inventory`).
pub(super) type Inventory = HashMap<String, InventoryRecord>;

/// The inventory record of a stored container, if any.
pub(super) fn info_of<'a>(
    c: &ContainerInfo,
    inventory: &'a Inventory,
) -> Option<&'a v1::ContainerInfo> {
    c.container_id
        .as_deref()
        .and_then(|id| inventory.get(id))
        .map(|r| &r.info)
}

/// A node, with whether its agent has an ingest stream open right now.
pub(super) fn node(n: NodeInfo, connected: bool) -> v1::Node {
    v1::Node {
        node_name: n.node_name,
        agent_id: n.agent_id,
        agent_version: n.agent_version.unwrap_or_default(),
        cgroup_layout: n
            .cgroup_layout
            .map_or(v1::CgroupLayout::Unspecified, layout) as i32,
        cpu_count: n.cpu_count,
        memory_total_bytes: n.memory_total_bytes,
        last_seen_unix_ns: n.last_seen_unix_ns,
        last_seq: n.last_seq,
        containers: u32::try_from(n.containers).unwrap_or(u32::MAX),
        connected,
        spool_dropped_batches_total: n.spool_dropped_batches_total,
        clock_skew_ns: n.clock_skew_ns.unwrap_or(0),
    }
}

fn layout(l: model::CgroupLayout) -> v1::CgroupLayout {
    match l {
        model::CgroupLayout::V1 => v1::CgroupLayout::V1,
        model::CgroupLayout::V2 => v1::CgroupLayout::V2,
        model::CgroupLayout::Hybrid => v1::CgroupLayout::Hybrid,
    }
}

fn qos(q: Option<model::QosClass>) -> v1::QosClass {
    match q {
        None => v1::QosClass::Unspecified,
        Some(model::QosClass::Guaranteed) => v1::QosClass::Guaranteed,
        Some(model::QosClass::Burstable) => v1::QosClass::Burstable,
        Some(model::QosClass::BestEffort) => v1::QosClass::BestEffort,
    }
}

/// A container's identity as the agent sent it (unknown enums as
/// `UNSPECIFIED`).
fn identity(c: &ContainerInfo) -> v1::CgroupIdentity {
    v1::CgroupIdentity {
        cgroup_path: c.cgroup_path.clone(),
        runtime: c
            .runtime
            .map_or(v1::Runtime::Unspecified, v1::Runtime::from) as i32,
        container_id: c.container_id.clone().unwrap_or_default(),
        pod_uid: c.pod_uid.clone().unwrap_or_default(),
        qos: qos(c.qos) as i32,
        unit: c.unit.clone().unwrap_or_default(),
    }
}

/// Rates over one interval.
pub(super) fn rates(r: Rates) -> v1::Rates {
    v1::Rates {
        start_unix_ns: r.start_unix_ns,
        end_unix_ns: r.end_unix_ns,
        cpu_cores: r.cpu_cores,
        cpu_throttled_ratio: r.cpu_throttled_ratio,
        memory_working_set_bytes: r.memory_working_set_bytes,
        memory_peak_bytes: r.memory_peak_bytes,
        oom_kills: r.oom_kills,
        net_rx_bytes_per_s: r.net_rx_bytes_per_s,
        net_tx_bytes_per_s: r.net_tx_bytes_per_s,
    }
}

/// Where a container is.
pub(super) fn container_ref(c: &ContainerInfo) -> v1::ContainerRef {
    v1::ContainerRef {
        node_name: c.node_name.clone(),
        identity: Some(identity(c)),
    }
}

/// A container with its latest rates, if it has any, and its inventory.
pub(super) fn summary(
    c: &ContainerInfo,
    latest: Option<Rates>,
    inventory: &Inventory,
) -> v1::ContainerSummary {
    v1::ContainerSummary {
        info: info_of(c, inventory).cloned(),
        gone: c.gone,
        r#ref: Some(container_ref(c)),
        first_seen_unix_ns: c.first_seen_unix_ns,
        last_seen_unix_ns: c.last_seen_unix_ns,
        cpu_limit_millicores: c.cpu_limit_millicores,
        memory_limit_bytes: c.memory_limit_bytes,
        oom_kills_total: c.oom_kills_total,
        latest: latest.map(rates),
    }
}

/// A container listed with its latest rates (`Top`, `ListContainers`).
pub(super) fn entry(e: TopEntry, inventory: &Inventory) -> v1::ContainerSummary {
    summary(&e.container, Some(e.latest), inventory)
}

/// One container in detail.
pub(super) fn detail(d: ContainerDetail, inventory: &Inventory) -> v1::ContainerDetail {
    v1::ContainerDetail {
        summary: Some(summary(&d.container, d.latest, inventory)),
        latest_sample: d.latest_sample.map(|s| sample(&d.container, s)),
        samples_stored: d.container.samples_stored,
    }
}

fn sample(c: &ContainerInfo, s: StoredSample) -> v1::ContainerSample {
    v1::ContainerSample {
        identity: Some(identity(c)),
        timestamp_unix_ns: s.timestamp_unix_ns,
        cpu: s.stats.cpu.map(Into::into),
        memory: s.stats.memory.map(Into::into),
        io: s.stats.io.map(Into::into),
        pids: s.stats.pids.map(Into::into),
        pressure: s.stats.pressure.map(Into::into),
        netns_inode: s.netns_inode,
    }
}

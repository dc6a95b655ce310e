//! Generated `upid.v1` protobuf types and their conversions to and from
//! [`crate::model`].
//!
//! Conversions from the wire are fallible only where an enum arrives with a
//! value this build does not know ([`WireError`]); everything else maps one
//! to one.

use crate::model;

/// The `upid.v1` package, generated from `proto/` at build time.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/upid.v1.rs"));
}

/// Encoded `FileDescriptorSet` of `upid.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/upid_v1_descriptor.bin"));

/// A wire message that cannot become a model value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// An enum field carried a value this build does not know.
    #[error("field {field}: unknown enum value {value}")]
    UnknownEnum {
        /// Field name.
        field: &'static str,
        /// The raw value received.
        value: i32,
    },
    /// A required message field was absent.
    #[error("field {0} is required")]
    Missing(&'static str),
}

fn some_if_not_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

impl From<model::Runtime> for v1::Runtime {
    fn from(r: model::Runtime) -> Self {
        match r {
            model::Runtime::Docker => v1::Runtime::Docker,
            model::Runtime::Containerd => v1::Runtime::Containerd,
            model::Runtime::Crio => v1::Runtime::Crio,
            model::Runtime::Podman => v1::Runtime::Podman,
            model::Runtime::Systemd => v1::Runtime::Systemd,
            model::Runtime::Cgroup => v1::Runtime::Cgroup,
        }
    }
}

fn runtime_from_wire(value: i32) -> Result<model::Runtime, WireError> {
    match v1::Runtime::try_from(value) {
        Ok(v1::Runtime::Docker) => Ok(model::Runtime::Docker),
        Ok(v1::Runtime::Containerd) => Ok(model::Runtime::Containerd),
        Ok(v1::Runtime::Crio) => Ok(model::Runtime::Crio),
        Ok(v1::Runtime::Podman) => Ok(model::Runtime::Podman),
        Ok(v1::Runtime::Systemd) => Ok(model::Runtime::Systemd),
        Ok(v1::Runtime::Cgroup) => Ok(model::Runtime::Cgroup),
        Ok(v1::Runtime::Unspecified) | Err(_) => Err(WireError::UnknownEnum {
            field: "runtime",
            value,
        }),
    }
}

fn qos_to_wire(q: Option<model::QosClass>) -> i32 {
    (match q {
        None => v1::QosClass::Unspecified,
        Some(model::QosClass::Guaranteed) => v1::QosClass::Guaranteed,
        Some(model::QosClass::Burstable) => v1::QosClass::Burstable,
        Some(model::QosClass::BestEffort) => v1::QosClass::BestEffort,
    }) as i32
}

fn qos_from_wire(value: i32) -> Result<Option<model::QosClass>, WireError> {
    match v1::QosClass::try_from(value) {
        Ok(v1::QosClass::Unspecified) => Ok(None),
        Ok(v1::QosClass::Guaranteed) => Ok(Some(model::QosClass::Guaranteed)),
        Ok(v1::QosClass::Burstable) => Ok(Some(model::QosClass::Burstable)),
        Ok(v1::QosClass::BestEffort) => Ok(Some(model::QosClass::BestEffort)),
        Err(_) => Err(WireError::UnknownEnum {
            field: "qos",
            value,
        }),
    }
}

fn layout_to_wire(l: model::CgroupLayout) -> i32 {
    (match l {
        model::CgroupLayout::V1 => v1::CgroupLayout::V1,
        model::CgroupLayout::V2 => v1::CgroupLayout::V2,
        model::CgroupLayout::Hybrid => v1::CgroupLayout::Hybrid,
    }) as i32
}

fn layout_from_wire(value: i32) -> Result<model::CgroupLayout, WireError> {
    match v1::CgroupLayout::try_from(value) {
        Ok(v1::CgroupLayout::V1) => Ok(model::CgroupLayout::V1),
        Ok(v1::CgroupLayout::V2) => Ok(model::CgroupLayout::V2),
        Ok(v1::CgroupLayout::Hybrid) => Ok(model::CgroupLayout::Hybrid),
        _ => Err(WireError::UnknownEnum {
            field: "cgroup_layout",
            value,
        }),
    }
}

fn peak_source_from_wire(value: i32) -> Result<model::PeakSource, WireError> {
    match v1::PeakSource::try_from(value) {
        Ok(v1::PeakSource::KernelReset) => Ok(model::PeakSource::KernelReset),
        Ok(v1::PeakSource::Sampled) => Ok(model::PeakSource::Sampled),
        _ => Err(WireError::UnknownEnum {
            field: "peak_source",
            value,
        }),
    }
}

impl From<model::CgroupIdentity> for v1::CgroupIdentity {
    fn from(i: model::CgroupIdentity) -> Self {
        v1::CgroupIdentity {
            cgroup_path: i.cgroup_path,
            runtime: v1::Runtime::from(i.runtime) as i32,
            container_id: i.container_id.unwrap_or_default(),
            pod_uid: i.pod_uid.unwrap_or_default(),
            qos: qos_to_wire(i.qos),
            unit: i.unit.unwrap_or_default(),
        }
    }
}

impl TryFrom<v1::CgroupIdentity> for model::CgroupIdentity {
    type Error = WireError;
    fn try_from(i: v1::CgroupIdentity) -> Result<Self, WireError> {
        Ok(model::CgroupIdentity {
            cgroup_path: i.cgroup_path,
            runtime: runtime_from_wire(i.runtime)?,
            container_id: some_if_not_empty(i.container_id),
            pod_uid: some_if_not_empty(i.pod_uid),
            qos: qos_from_wire(i.qos)?,
            unit: some_if_not_empty(i.unit),
        })
    }
}

impl From<model::CpuStats> for v1::CpuStats {
    fn from(c: model::CpuStats) -> Self {
        v1::CpuStats {
            usage_ns: c.usage_ns,
            user_ns: c.user_ns,
            system_ns: c.system_ns,
            periods: c.periods,
            throttled_periods: c.throttled_periods,
            throttled_ns: c.throttled_ns,
            limit_millicores: c.limit_millicores,
            shares: c.shares,
        }
    }
}

impl From<v1::CpuStats> for model::CpuStats {
    fn from(c: v1::CpuStats) -> Self {
        model::CpuStats {
            usage_ns: c.usage_ns,
            user_ns: c.user_ns,
            system_ns: c.system_ns,
            periods: c.periods,
            throttled_periods: c.throttled_periods,
            throttled_ns: c.throttled_ns,
            limit_millicores: c.limit_millicores,
            shares: c.shares,
        }
    }
}

impl From<model::MemoryStats> for v1::MemoryStats {
    fn from(m: model::MemoryStats) -> Self {
        v1::MemoryStats {
            usage_bytes: m.usage_bytes,
            working_set_bytes: m.working_set_bytes,
            rss_bytes: m.rss_bytes,
            cache_bytes: m.cache_bytes,
            swap_bytes: m.swap_bytes,
            limit_bytes: m.limit_bytes,
            peak_bytes: m.peak_bytes,
            peak_source: match m.peak_source {
                model::PeakSource::KernelReset => v1::PeakSource::KernelReset,
                model::PeakSource::Sampled => v1::PeakSource::Sampled,
            } as i32,
            oom_kills: m.oom_kills,
        }
    }
}

impl TryFrom<v1::MemoryStats> for model::MemoryStats {
    type Error = WireError;
    fn try_from(m: v1::MemoryStats) -> Result<Self, WireError> {
        Ok(model::MemoryStats {
            usage_bytes: m.usage_bytes,
            working_set_bytes: m.working_set_bytes,
            rss_bytes: m.rss_bytes,
            cache_bytes: m.cache_bytes,
            swap_bytes: m.swap_bytes,
            limit_bytes: m.limit_bytes,
            peak_bytes: m.peak_bytes,
            peak_source: peak_source_from_wire(m.peak_source)?,
            oom_kills: m.oom_kills,
        })
    }
}

impl From<model::PressureStats> for v1::PressureStats {
    fn from(p: model::PressureStats) -> Self {
        v1::PressureStats {
            some_total_us: p.some_total_us,
            full_total_us: p.full_total_us,
        }
    }
}

impl From<v1::PressureStats> for model::PressureStats {
    fn from(p: v1::PressureStats) -> Self {
        model::PressureStats {
            some_total_us: p.some_total_us,
            full_total_us: p.full_total_us,
        }
    }
}

impl From<model::Pressure> for v1::Pressure {
    fn from(p: model::Pressure) -> Self {
        v1::Pressure {
            cpu: p.cpu.map(Into::into),
            memory: p.memory.map(Into::into),
            io: p.io.map(Into::into),
        }
    }
}

impl From<v1::Pressure> for model::Pressure {
    fn from(p: v1::Pressure) -> Self {
        model::Pressure {
            cpu: p.cpu.map(Into::into),
            memory: p.memory.map(Into::into),
            io: p.io.map(Into::into),
        }
    }
}

impl From<model::IoStats> for v1::IoStats {
    fn from(i: model::IoStats) -> Self {
        v1::IoStats {
            read_bytes: i.read_bytes,
            write_bytes: i.write_bytes,
            read_ops: i.read_ops,
            write_ops: i.write_ops,
        }
    }
}

impl From<v1::IoStats> for model::IoStats {
    fn from(i: v1::IoStats) -> Self {
        model::IoStats {
            read_bytes: i.read_bytes,
            write_bytes: i.write_bytes,
            read_ops: i.read_ops,
            write_ops: i.write_ops,
        }
    }
}

impl From<model::PidsStats> for v1::PidsStats {
    fn from(p: model::PidsStats) -> Self {
        v1::PidsStats {
            current: p.current,
            limit: p.limit,
        }
    }
}

impl From<v1::PidsStats> for model::PidsStats {
    fn from(p: v1::PidsStats) -> Self {
        model::PidsStats {
            current: p.current,
            limit: p.limit,
        }
    }
}

impl From<model::ContainerSample> for v1::ContainerSample {
    fn from(c: model::ContainerSample) -> Self {
        v1::ContainerSample {
            identity: Some(c.identity.into()),
            timestamp_unix_ns: c.timestamp_unix_ns,
            cpu: c.stats.cpu.map(Into::into),
            memory: c.stats.memory.map(Into::into),
            io: c.stats.io.map(Into::into),
            pids: c.stats.pids.map(Into::into),
            pressure: c.stats.pressure.map(Into::into),
            netns_inode: c.netns_inode,
        }
    }
}

impl TryFrom<v1::ContainerSample> for model::ContainerSample {
    type Error = WireError;
    fn try_from(c: v1::ContainerSample) -> Result<Self, WireError> {
        Ok(model::ContainerSample {
            identity: c
                .identity
                .ok_or(WireError::Missing("identity"))?
                .try_into()?,
            timestamp_unix_ns: c.timestamp_unix_ns,
            stats: model::CgroupStats {
                cpu: c.cpu.map(Into::into),
                memory: c.memory.map(TryInto::try_into).transpose()?,
                io: c.io.map(Into::into),
                pids: c.pids.map(Into::into),
                pressure: c.pressure.map(Into::into),
            },
            netns_inode: c.netns_inode,
        })
    }
}

impl From<model::NetworkSample> for v1::NetworkSample {
    fn from(n: model::NetworkSample) -> Self {
        v1::NetworkSample {
            netns_inode: n.netns_inode,
            rx_bytes: n.rx_bytes,
            tx_bytes: n.tx_bytes,
            rx_packets: n.rx_packets,
            tx_packets: n.tx_packets,
            rx_dropped: n.rx_dropped,
            tx_dropped: n.tx_dropped,
        }
    }
}

impl From<v1::NetworkSample> for model::NetworkSample {
    fn from(n: v1::NetworkSample) -> Self {
        model::NetworkSample {
            netns_inode: n.netns_inode,
            rx_bytes: n.rx_bytes,
            tx_bytes: n.tx_bytes,
            rx_packets: n.rx_packets,
            tx_packets: n.tx_packets,
            rx_dropped: n.rx_dropped,
            tx_dropped: n.tx_dropped,
        }
    }
}

impl From<model::NodeSample> for v1::NodeSample {
    fn from(n: model::NodeSample) -> Self {
        v1::NodeSample {
            node_name: n.node_name,
            timestamp_unix_ns: n.timestamp_unix_ns,
            boot_time_unix_s: n.boot_time_unix_s,
            cpu_count: n.cpu_count,
            cpu_total_ns: n.cpu_total_ns,
            cpu_idle_ns: n.cpu_idle_ns,
            memory_total_bytes: n.memory_total_bytes,
            memory_available_bytes: n.memory_available_bytes,
            load1: n.load1,
            load5: n.load5,
            load15: n.load15,
            pressure: n.pressure.map(Into::into),
            cgroup_layout: layout_to_wire(n.cgroup_layout),
        }
    }
}

impl TryFrom<v1::NodeSample> for model::NodeSample {
    type Error = WireError;
    fn try_from(n: v1::NodeSample) -> Result<Self, WireError> {
        Ok(model::NodeSample {
            node_name: n.node_name,
            timestamp_unix_ns: n.timestamp_unix_ns,
            boot_time_unix_s: n.boot_time_unix_s,
            cpu_count: n.cpu_count,
            cpu_total_ns: n.cpu_total_ns,
            cpu_idle_ns: n.cpu_idle_ns,
            memory_total_bytes: n.memory_total_bytes,
            memory_available_bytes: n.memory_available_bytes,
            load1: n.load1,
            load5: n.load5,
            load15: n.load15,
            pressure: n.pressure.map(Into::into),
            cgroup_layout: layout_from_wire(n.cgroup_layout)?,
        })
    }
}

impl From<model::Snapshot> for v1::Snapshot {
    fn from(s: model::Snapshot) -> Self {
        v1::Snapshot {
            node: Some(s.node.into()),
            containers: s.containers.into_iter().map(Into::into).collect(),
            networks: s.networks.into_iter().map(Into::into).collect(),
            malformed_skips: s.malformed_skips,
            vanished: s.vanished,
        }
    }
}

impl TryFrom<v1::Snapshot> for model::Snapshot {
    type Error = WireError;
    fn try_from(s: v1::Snapshot) -> Result<Self, WireError> {
        Ok(model::Snapshot {
            node: s.node.ok_or(WireError::Missing("node"))?.try_into()?,
            containers: s
                .containers
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            networks: s.networks.into_iter().map(Into::into).collect(),
            malformed_skips: s.malformed_skips,
            vanished: s.vanished,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn snapshot() -> model::Snapshot {
        model::Snapshot {
            node: model::NodeSample {
                node_name: "node-a".into(),
                timestamp_unix_ns: 1_700_000_000_000_000_000,
                boot_time_unix_s: 1_699_000_000,
                cpu_count: 8,
                cpu_total_ns: 123_456_789_000,
                cpu_idle_ns: 100_000_000_000,
                memory_total_bytes: 32 << 30,
                memory_available_bytes: 20 << 30,
                load1: 1.5,
                load5: 1.25,
                load15: 1.0,
                pressure: Some(model::Pressure {
                    cpu: Some(model::PressureStats {
                        some_total_us: 5,
                        full_total_us: None,
                    }),
                    memory: None,
                    io: Some(model::PressureStats {
                        some_total_us: 7,
                        full_total_us: Some(3),
                    }),
                }),
                cgroup_layout: model::CgroupLayout::Hybrid,
            },
            containers: vec![model::ContainerSample {
                identity: model::CgroupIdentity {
                    cgroup_path: "/kubepods/burstable/podabc/0123".into(),
                    runtime: model::Runtime::Containerd,
                    container_id: Some("0123".repeat(16)),
                    pod_uid: Some("abc".into()),
                    qos: Some(model::QosClass::Burstable),
                    unit: None,
                },
                timestamp_unix_ns: 1_700_000_000_000_000_001,
                stats: model::CgroupStats {
                    cpu: Some(model::CpuStats {
                        usage_ns: 10,
                        user_ns: Some(6),
                        system_ns: Some(4),
                        periods: 100,
                        throttled_periods: 3,
                        throttled_ns: 9_000,
                        limit_millicores: Some(1500),
                        shares: Some(1024),
                    }),
                    memory: Some(model::MemoryStats {
                        usage_bytes: 100,
                        working_set_bytes: 80,
                        rss_bytes: 60,
                        cache_bytes: 40,
                        swap_bytes: None,
                        limit_bytes: Some(256),
                        peak_bytes: 120,
                        peak_source: model::PeakSource::KernelReset,
                        oom_kills: 2,
                    }),
                    io: Some(model::IoStats {
                        read_bytes: 1,
                        write_bytes: 2,
                        read_ops: 3,
                        write_ops: 4,
                    }),
                    pids: Some(model::PidsStats {
                        current: 5,
                        limit: None,
                    }),
                    pressure: None,
                },
                netns_inode: Some(4_026_532_000),
            }],
            networks: vec![model::NetworkSample {
                netns_inode: 4_026_532_000,
                rx_bytes: 9,
                ..Default::default()
            }],
            malformed_skips: 1,
            vanished: 2,
        }
    }

    #[test]
    fn snapshot_round_trips_through_protobuf_bytes() {
        let original = snapshot();
        let bytes = v1::Snapshot::from(original.clone()).encode_to_vec();
        let decoded = v1::Snapshot::decode(bytes.as_slice()).expect("decodes");
        let back = model::Snapshot::try_from(decoded).expect("converts");
        assert_eq!(back, original);
    }

    #[test]
    fn garbage_bytes_are_a_decode_error_not_a_panic() {
        for garbage in [&b"\xff\xff\xff\xff"[..], b"\x0a\x05abc", b"\x12"] {
            assert!(v1::Snapshot::decode(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn unknown_enum_values_and_missing_fields_are_typed_errors() {
        let mut wire = v1::Snapshot::from(snapshot());
        wire.containers[0]
            .identity
            .as_mut()
            .expect("identity")
            .runtime = 99;
        assert_eq!(
            model::Snapshot::try_from(wire).expect_err("unknown runtime"),
            WireError::UnknownEnum {
                field: "runtime",
                value: 99
            }
        );
        let mut wire = v1::Snapshot::from(snapshot());
        wire.node = None;
        assert_eq!(
            model::Snapshot::try_from(wire).expect_err("no node"),
            WireError::Missing("node")
        );
    }

    #[test]
    fn descriptor_set_is_embedded_for_reflection() {
        let package = b"upid.v1";
        assert!(
            FILE_DESCRIPTOR_SET
                .windows(package.len())
                .any(|w| w == package)
        );
    }
}

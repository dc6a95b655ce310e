//! What `-o json` and `-o yaml` print: flat records with unit-named fields,
//! built from the query API's responses. Field names are a stable interface
//! for scripts (documented in docs/cli.md); add fields, never rename them.

pub mod analysis;
pub mod analyze;
pub mod events;
pub mod inventory;
pub mod updates;

use serde::Serialize;

pub use analysis::{CostLineView, CostView, IdleView, RecommendationView};
pub use analyze::AnalyzeView;
pub use events::EventView;
pub use inventory::{ContainerInfoView, ImageView, WorkloadRefView};

use crate::cli::units;
use crate::model;
use crate::wire::v1;

/// A node and the agent that reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    /// Node name.
    pub node_name: String,
    /// Agent that reported the latest tick.
    pub agent_id: String,
    /// That agent's version (`null` before its first hello).
    pub agent_version: Option<String>,
    /// `v1`, `v2`, `hybrid`, or `null` when unknown.
    pub cgroup_layout: Option<model::CgroupLayout>,
    /// Online CPUs.
    pub cpu_count: u32,
    /// Physical memory.
    pub memory_total_bytes: u64,
    /// Containers in the latest tick.
    pub containers: u32,
    /// Whether the agent has an open stream to the collector now.
    pub connected: bool,
    /// Latest contact (Unix ns).
    pub last_seen_unix_ns: i64,
    /// Latest contact, RFC 3339 UTC.
    pub last_seen: Option<String>,
    /// Highest batch sequence stored.
    pub last_seq: u64,
    /// Batches the agent's spool had to drop (cumulative).
    pub spool_dropped_batches_total: u64,
    /// Agent clock minus collector clock at the last hello.
    pub clock_skew_ns: i64,
}

impl From<&v1::Node> for NodeView {
    fn from(n: &v1::Node) -> Self {
        NodeView {
            node_name: n.node_name.clone(),
            agent_id: n.agent_id.clone(),
            agent_version: non_empty(&n.agent_version),
            cgroup_layout: layout(n.cgroup_layout),
            cpu_count: n.cpu_count,
            memory_total_bytes: n.memory_total_bytes,
            containers: n.containers,
            connected: n.connected,
            last_seen_unix_ns: n.last_seen_unix_ns,
            last_seen: units::rfc3339(n.last_seen_unix_ns),
            last_seq: n.last_seq,
            spool_dropped_batches_total: n.spool_dropped_batches_total,
            clock_skew_ns: n.clock_skew_ns,
        }
    }
}

/// A node whose agent has no stream open and sent nothing for this long is
/// silent.
pub const SILENT_AFTER_NS: i64 = 60_000_000_000;

/// Whether a node's data is flowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// The agent has a stream open to the collector.
    Connected,
    /// No stream, but data arrived within [`SILENT_AFTER_NS`] (a
    /// standalone collector's own node, or an agent reconnecting).
    Reporting,
    /// No stream and nothing for longer.
    Disconnected,
}

impl NodeStatus {
    /// Of `connected` and `last_seen_unix_ns` at `now_unix_ns`.
    pub fn of(connected: bool, last_seen_unix_ns: i64, now_unix_ns: i64) -> Self {
        if connected {
            NodeStatus::Connected
        } else if last_seen_unix_ns > 0
            && now_unix_ns.saturating_sub(last_seen_unix_ns) <= SILENT_AFTER_NS
        {
            NodeStatus::Reporting
        } else {
            NodeStatus::Disconnected
        }
    }

    /// Name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Connected => "Connected",
            NodeStatus::Reporting => "Reporting",
            NodeStatus::Disconnected => "Disconnected",
        }
    }
}

/// A container (or service, or glob-matched cgroup) with its latest usage
/// and, where the agent has inventory, who it is and what state it is in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerView {
    /// What `upid describe container` takes: the full container id, else
    /// `NODE:CGROUP_PATH`.
    pub id: String,
    /// The NAME column: the container name from inventory, else the
    /// systemd unit, else the 12-character id, else the cgroup path.
    pub name: String,
    /// Kubernetes namespace, else the compose project (`null` for a bare
    /// container or a cgroup).
    pub namespace: Option<String>,
    /// `kind/name` of the owning workload, e.g. `deployment/web`.
    pub workload: Option<String>,
    /// Image reference as configured, e.g. `nginx:1.25.3-alpine`.
    pub image: Option<String>,
    /// Image tag.
    pub image_tag: Option<String>,
    /// Image repository digest (`sha256:…`).
    pub image_digest: Option<String>,
    /// The STATE column: `gone` when the node no longer reports the
    /// container, else the runtime's state (`running`, `exited`,
    /// `waiting`, ...); `null` without inventory.
    pub state: Option<String>,
    /// Why it is in its state, e.g. `CrashLoopBackOff`.
    pub state_reason: Option<String>,
    /// `none`, `starting`, `healthy`, `unhealthy`; `null` without inventory.
    pub health: Option<String>,
    /// Restarts counted by the runtime; `null` without inventory.
    pub restarts: Option<u32>,
    /// The node no longer reports this container.
    pub gone: bool,
    /// Kubernetes pod name.
    pub pod_name: Option<String>,
    /// Kubernetes CPU request.
    pub cpu_request_millicores: Option<u64>,
    /// Kubernetes memory request.
    pub memory_request_bytes: Option<u64>,
    /// Last start (Unix ns), from inventory.
    pub started_unix_ns: Option<i64>,
    /// Last start, RFC 3339 UTC.
    pub started: Option<String>,
    /// Node it runs on.
    pub node_name: String,
    /// Full 64-hex container id (`null` for services and cgroups).
    pub container_id: Option<String>,
    /// `docker`, `containerd`, `crio`, `podman`, `systemd`, `cgroup`, or
    /// `null` when unknown.
    pub runtime: Option<model::Runtime>,
    /// Cgroup path on the node.
    pub cgroup_path: String,
    /// Kubernetes pod UID.
    pub pod_uid: Option<String>,
    /// Kubernetes QoS class: `guaranteed`, `burstable`, `besteffort`.
    pub qos: Option<model::QosClass>,
    /// systemd unit.
    pub unit: Option<String>,
    /// First sample (Unix ns).
    pub first_seen_unix_ns: i64,
    /// First sample, RFC 3339 UTC.
    pub first_seen: Option<String>,
    /// Latest sample (Unix ns).
    pub last_seen_unix_ns: i64,
    /// Latest sample, RFC 3339 UTC.
    pub last_seen: Option<String>,
    /// CPU used over the latest interval, in cores.
    pub cpu_cores: Option<f64>,
    /// Share of CFS periods throttled over the latest interval (0..1).
    pub cpu_throttled_ratio: Option<f64>,
    /// CPU limit (`null`: unlimited or unknown).
    pub cpu_limit_millicores: Option<u64>,
    /// Working set at the latest interval.
    pub memory_working_set_bytes: Option<u64>,
    /// Peak memory in the latest interval.
    pub memory_peak_bytes: Option<u64>,
    /// Memory limit (`null`: unlimited or unknown).
    pub memory_limit_bytes: Option<u64>,
    /// Network received per second (the container's network namespace).
    pub net_rx_bytes_per_s: Option<f64>,
    /// Network sent per second.
    pub net_tx_bytes_per_s: Option<f64>,
    /// OOM kills over the whole stored history.
    pub oom_kills_total: u64,
    /// Start of the interval the usage fields cover (Unix ns).
    pub usage_start_unix_ns: Option<i64>,
    /// End of that interval (Unix ns).
    pub usage_end_unix_ns: Option<i64>,
    /// Everything inventory knows (`null` without inventory).
    pub info: Option<ContainerInfoView>,
}

impl From<&v1::ContainerSummary> for ContainerView {
    fn from(c: &v1::ContainerSummary) -> Self {
        let (node_name, identity) = match &c.r#ref {
            Some(r) => (r.node_name.clone(), r.identity.clone().unwrap_or_default()),
            None => (String::new(), v1::CgroupIdentity::default()),
        };
        let container_id = non_empty(&identity.container_id);
        let latest = c.latest.unwrap_or_default();
        let has_interval = c.latest.is_some() && latest.end_unix_ns > 0;
        let info = c.info.as_ref().map(ContainerInfoView::from);
        let i = info.as_ref();
        let image = i.and_then(|i| i.image.as_ref());
        let unit = non_empty(&identity.unit);
        let name = i
            .and_then(|i| i.name.clone())
            .or_else(|| unit.clone())
            .unwrap_or_else(|| {
                let id = &identity.container_id;
                match id.get(..12) {
                    Some(short) => short.to_owned(),
                    None if !id.is_empty() => id.clone(),
                    None => identity.cgroup_path.clone(),
                }
            });
        let state = if c.gone {
            Some("gone".to_owned())
        } else {
            i.and_then(|i| i.state.clone())
        };
        let started_unix_ns = i.and_then(|i| i.started_unix_ns);
        ContainerView {
            id: container_key(&node_name, &identity),
            name,
            namespace: i.and_then(|i| i.effective_namespace().map(str::to_owned)),
            workload: i.and_then(ContainerInfoView::workload_label),
            image: image.and_then(|i| i.reference.clone()),
            image_tag: image.and_then(|i| i.tag.clone()),
            image_digest: image.and_then(|i| i.digest.clone()),
            state,
            state_reason: i.and_then(|i| i.state_reason.clone()),
            health: i.and_then(|i| i.health.clone()),
            restarts: i.map(|i| i.restart_count),
            gone: c.gone,
            pod_name: i.and_then(|i| i.pod_name.clone()),
            cpu_request_millicores: i.and_then(|i| i.cpu_request_millicores),
            memory_request_bytes: i.and_then(|i| i.memory_request_bytes),
            started_unix_ns,
            started: started_unix_ns.and_then(units::rfc3339),
            node_name,
            container_id,
            runtime: runtime(identity.runtime).or_else(|| i.and_then(|i| i.runtime)),
            cgroup_path: identity.cgroup_path.clone(),
            pod_uid: non_empty(&identity.pod_uid).or_else(|| i.and_then(|i| i.pod_uid.clone())),
            qos: qos(identity.qos).or_else(|| i.and_then(|i| i.qos)),
            unit,
            first_seen_unix_ns: c.first_seen_unix_ns,
            first_seen: units::rfc3339(c.first_seen_unix_ns),
            last_seen_unix_ns: c.last_seen_unix_ns,
            last_seen: units::rfc3339(c.last_seen_unix_ns),
            cpu_cores: latest.cpu_cores,
            cpu_throttled_ratio: latest.cpu_throttled_ratio,
            cpu_limit_millicores: c
                .cpu_limit_millicores
                .or_else(|| i.and_then(|i| i.cpu_limit_millicores)),
            memory_working_set_bytes: latest.memory_working_set_bytes,
            memory_peak_bytes: latest.memory_peak_bytes,
            memory_limit_bytes: c
                .memory_limit_bytes
                .or_else(|| i.and_then(|i| i.memory_limit_bytes)),
            net_rx_bytes_per_s: latest.net_rx_bytes_per_s,
            net_tx_bytes_per_s: latest.net_tx_bytes_per_s,
            oom_kills_total: c.oom_kills_total,
            usage_start_unix_ns: has_interval.then_some(latest.start_unix_ns),
            usage_end_unix_ns: has_interval.then_some(latest.end_unix_ns),
            info,
        }
    }
}

impl ContainerView {
    /// 12-hex container id, or the cgroup path for cgroups without one.
    pub fn short_id(&self) -> &str {
        match &self.container_id {
            Some(id) => id.get(..12).unwrap_or(id),
            None => &self.cgroup_path,
        }
    }

    /// Full container id, or the cgroup path.
    pub fn full_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or(&self.cgroup_path)
    }

    /// Pod UID, else systemd unit, else `-`.
    pub fn pod_or_unit(&self) -> &str {
        self.pod_uid
            .as_deref()
            .or(self.unit.as_deref())
            .unwrap_or(units::NONE)
    }

    /// CPU used as a share of the limit.
    pub fn cpu_of_limit(&self) -> Option<f64> {
        let limit = self.cpu_limit_millicores.filter(|l| *l > 0)?;
        Some(self.cpu_cores? * 1000.0 / limit as f64)
    }

    /// When AGE counts from: the last start, else the first sample.
    pub fn age_from_unix_ns(&self) -> i64 {
        self.started_unix_ns
            .filter(|t| *t > 0)
            .unwrap_or(self.first_seen_unix_ns)
    }

    /// Working set as a share of the limit.
    pub fn memory_of_limit(&self) -> Option<f64> {
        let limit = self.memory_limit_bytes.filter(|l| *l > 0)?;
        Some(self.memory_working_set_bytes? as f64 / limit as f64)
    }
}

/// A workload (Kubernetes owner, compose service, container, ...) with
/// its containers' summed usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadView {
    /// Kubernetes namespace or compose project (empty when none).
    pub namespace: String,
    /// Short lower-case kind: `deployment`, `statefulset`, `daemonset`,
    /// `job`, `cronjob`, `replicaset`, `pod`, `compose`, `container`,
    /// `other`; without inventory also `service`, `cgroup`.
    pub kind: String,
    /// Owner name.
    pub name: String,
    /// `kind/name`, as the WORKLOAD column of containers and events shows
    /// it (and `upid events --workload` takes it).
    pub workload: String,
    /// Pods (Kubernetes) or containers (Docker) running.
    pub replicas: u32,
    /// Containers counted (all replicas, all container names).
    pub containers: u32,
    /// Distinct image references its containers run.
    pub images: Vec<String>,
    /// Restarts of its current containers, summed.
    pub restarts: u32,
    /// OOM kills of its current containers, summed.
    pub oom_kills: u64,
    /// CPU used, in cores.
    pub cpu_cores: Option<f64>,
    /// Working set.
    pub memory_working_set_bytes: Option<u64>,
}

impl From<&v1::Workload> for WorkloadView {
    fn from(w: &v1::Workload) -> Self {
        let kind = inventory::normalize_kind(&w.kind);
        WorkloadView {
            namespace: w.namespace.clone(),
            workload: format!("{kind}/{}", w.name),
            kind,
            name: w.name.clone(),
            replicas: w.replicas,
            containers: w.containers,
            images: w.images.clone(),
            restarts: w.restarts,
            oom_kills: w.oom_kills,
            cpu_cores: w.cpu_cores,
            memory_working_set_bytes: w.memory_working_set_bytes,
        }
    }
}

/// Usage over one interval of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointView {
    /// Interval start (Unix ns).
    pub start_unix_ns: i64,
    /// Interval end (Unix ns).
    pub end_unix_ns: i64,
    /// Interval start, RFC 3339 UTC.
    pub start: Option<String>,
    /// CPU used, in cores.
    pub cpu_cores: Option<f64>,
    /// Share of CFS periods throttled (0..1).
    pub cpu_throttled_ratio: Option<f64>,
    /// Largest working set in the interval.
    pub memory_working_set_bytes: Option<u64>,
    /// Largest peak in the interval.
    pub memory_peak_bytes: Option<u64>,
    /// OOM kills in the interval.
    pub oom_kills: Option<u64>,
    /// Network received per second.
    pub net_rx_bytes_per_s: Option<f64>,
    /// Network sent per second.
    pub net_tx_bytes_per_s: Option<f64>,
}

impl From<&v1::Rates> for PointView {
    fn from(r: &v1::Rates) -> Self {
        PointView {
            start_unix_ns: r.start_unix_ns,
            end_unix_ns: r.end_unix_ns,
            start: units::rfc3339(r.start_unix_ns),
            cpu_cores: r.cpu_cores,
            cpu_throttled_ratio: r.cpu_throttled_ratio,
            memory_working_set_bytes: r.memory_working_set_bytes,
            memory_peak_bytes: r.memory_peak_bytes,
            oom_kills: r.oom_kills,
            net_rx_bytes_per_s: r.net_rx_bytes_per_s,
            net_tx_bytes_per_s: r.net_tx_bytes_per_s,
        }
    }
}

/// A container's recent usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesView {
    /// Start of the range asked for (Unix ns).
    pub start_unix_ns: i64,
    /// End of the range (Unix ns).
    pub end_unix_ns: i64,
    /// Width of each point.
    pub step_ns: i64,
    /// The points, oldest first.
    pub points: Vec<PointView>,
}

/// Everything `upid describe container` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DescribeView {
    /// The container and its latest usage.
    pub container: ContainerView,
    /// Samples stored for it.
    pub samples_stored: u64,
    /// The latest sample as stored: cumulative counters, as the agent read
    /// them (the same shape as `upid-agent sample -o json` containers).
    pub latest_sample: Option<model::ContainerSample>,
    /// The recent series, when it could be fetched.
    pub series: Option<SeriesView>,
    /// Why the series is missing.
    pub series_error: Option<String>,
    /// Its recent events, newest first (`null` when they could not be
    /// fetched; empty for cgroups without a container id).
    pub events: Option<Vec<EventView>>,
    /// Why `events` is missing.
    pub events_error: Option<String>,
}

impl DescribeView {
    /// Builds the view from the detail and, if fetched, the series and the
    /// events.
    pub fn new(
        detail: &v1::ContainerDetail,
        series: Result<(i64, i64, &v1::GetContainerSeriesResponse), String>,
        events: Result<&[v1::Event], String>,
    ) -> Self {
        let container = detail
            .summary
            .as_ref()
            .map(ContainerView::from)
            .unwrap_or_else(|| ContainerView::from(&v1::ContainerSummary::default()));
        let latest_sample = detail
            .latest_sample
            .clone()
            .and_then(|s| model::ContainerSample::try_from(s).ok());
        let (series, series_error) = match series {
            Ok((start_unix_ns, end_unix_ns, s)) => (
                Some(SeriesView {
                    start_unix_ns,
                    end_unix_ns,
                    step_ns: s.step_ns,
                    points: s.points.iter().map(PointView::from).collect(),
                }),
                None,
            ),
            Err(e) => (None, Some(e)),
        };
        let (events, events_error) = match events {
            Ok(e) => (Some(e.iter().map(EventView::from).collect()), None),
            Err(e) => (None, Some(e)),
        };
        DescribeView {
            container,
            samples_stored: detail.samples_stored,
            latest_sample,
            series,
            series_error,
            events,
            events_error,
        }
    }
}

/// The store key of a container: its full id, else `NODE:CGROUP_PATH`.
pub fn container_key(node_name: &str, identity: &v1::CgroupIdentity) -> String {
    if identity.container_id.is_empty() {
        format!("{node_name}:{}", identity.cgroup_path)
    } else {
        identity.container_id.clone()
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn runtime(value: i32) -> Option<model::Runtime> {
    match v1::Runtime::try_from(value).ok()? {
        v1::Runtime::Docker => Some(model::Runtime::Docker),
        v1::Runtime::Containerd => Some(model::Runtime::Containerd),
        v1::Runtime::Crio => Some(model::Runtime::Crio),
        v1::Runtime::Podman => Some(model::Runtime::Podman),
        v1::Runtime::Systemd => Some(model::Runtime::Systemd),
        v1::Runtime::Cgroup => Some(model::Runtime::Cgroup),
        v1::Runtime::Unspecified => None,
    }
}

fn qos(value: i32) -> Option<model::QosClass> {
    match v1::QosClass::try_from(value).ok()? {
        v1::QosClass::Guaranteed => Some(model::QosClass::Guaranteed),
        v1::QosClass::Burstable => Some(model::QosClass::Burstable),
        v1::QosClass::BestEffort => Some(model::QosClass::BestEffort),
        v1::QosClass::Unspecified => None,
    }
}

fn layout(value: i32) -> Option<model::CgroupLayout> {
    match v1::CgroupLayout::try_from(value).ok()? {
        v1::CgroupLayout::V1 => Some(model::CgroupLayout::V1),
        v1::CgroupLayout::V2 => Some(model::CgroupLayout::V2),
        v1::CgroupLayout::Hybrid => Some(model::CgroupLayout::Hybrid),
        v1::CgroupLayout::Unspecified => None,
    }
}

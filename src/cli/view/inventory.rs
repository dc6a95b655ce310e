//! Inventory from Docker and Kubernetes as JSON/YAML records: who a
//! container is (name, image, workload, pod), what state it is in, and the
//! lower-case names the CLI uses for the wire enums.
//!
//! Names (stable, documented in docs/cli.md):
//! - states: `created`, `running`, `paused`, `restarting`, `exited`,
//!   `dead`, `removing`, `waiting`;
//! - health: `none`, `starting`, `healthy`, `unhealthy`;
//! - workload kinds: `deployment`, `statefulset`, `daemonset`, `job`,
//!   `cronjob`, `replicaset`, `pod`, `compose`, `container`, `other`
//!   (and, for cgroups without inventory, `service` and `cgroup`).
//!
//! A value this build does not know (a newer collector) is `unknown`, never
//! an error: listing must not fail on one odd record.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cli::units;
use crate::model;
use crate::wire::v1;

/// Shown for an enum value this build does not know.
pub const UNKNOWN: &str = "unknown";

/// Lower-case name of a `ContainerState`; `None` when unspecified.
pub fn state_name(value: i32) -> Option<&'static str> {
    let name = match v1::ContainerState::try_from(value) {
        Ok(v1::ContainerState::Unspecified) => return None,
        Ok(v1::ContainerState::Created) => "created",
        Ok(v1::ContainerState::Running) => "running",
        Ok(v1::ContainerState::Paused) => "paused",
        Ok(v1::ContainerState::Restarting) => "restarting",
        Ok(v1::ContainerState::Exited) => "exited",
        Ok(v1::ContainerState::Dead) => "dead",
        Ok(v1::ContainerState::Removing) => "removing",
        Ok(v1::ContainerState::Waiting) => "waiting",
        Err(_) => UNKNOWN,
    };
    Some(name)
}

/// Lower-case name of a `HealthStatus`; `None` when unspecified.
pub fn health_name(value: i32) -> Option<&'static str> {
    let name = match v1::HealthStatus::try_from(value) {
        Ok(v1::HealthStatus::Unspecified) => return None,
        Ok(v1::HealthStatus::None) => "none",
        Ok(v1::HealthStatus::Starting) => "starting",
        Ok(v1::HealthStatus::Healthy) => "healthy",
        Ok(v1::HealthStatus::Unhealthy) => "unhealthy",
        Err(_) => UNKNOWN,
    };
    Some(name)
}

/// Short lower-case name of a `WorkloadKind` (`deployment`, `compose`...);
/// unspecified and unknown values are `other`.
pub fn workload_kind_name(value: i32) -> &'static str {
    match v1::WorkloadKind::try_from(value) {
        Ok(v1::WorkloadKind::Deployment) => "deployment",
        Ok(v1::WorkloadKind::StatefulSet) => "statefulset",
        Ok(v1::WorkloadKind::DaemonSet) => "daemonset",
        Ok(v1::WorkloadKind::Job) => "job",
        Ok(v1::WorkloadKind::CronJob) => "cronjob",
        Ok(v1::WorkloadKind::ReplicaSet) => "replicaset",
        Ok(v1::WorkloadKind::Pod) => "pod",
        Ok(v1::WorkloadKind::ComposeService) => "compose",
        Ok(v1::WorkloadKind::Container) => "container",
        Ok(v1::WorkloadKind::Other | v1::WorkloadKind::Unspecified) | Err(_) => "other",
    }
}

/// The short lower-case kind for a kind as `ListWorkloads` spells it
/// (`Deployment`, `ComposeService`, `WORKLOAD_KIND_STATEFUL_SET`,
/// `stateful_set`...): the same names as [`workload_kind_name`]; a kind
/// this build does not know is lower-cased as given (`Service` becomes
/// `service`).
pub fn normalize_kind(kind: &str) -> String {
    let squashed: String = kind
        .trim()
        .trim_start_matches("WORKLOAD_KIND_")
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    match squashed.as_str() {
        "composeservice" => "compose".into(),
        "unspecified" => "other".into(),
        _ => squashed,
    }
}

/// `kind/name`, e.g. `deployment/web`, `compose/web`; `None` when the
/// workload has no name.
pub fn workload_label(w: &v1::WorkloadRef) -> Option<String> {
    (!w.name.is_empty()).then(|| format!("{}/{}", workload_kind_name(w.kind), w.name))
}

/// A digest shortened like `docker images` does: the first 12 hex
/// characters after the algorithm (`sha256:0123456789abcdef…` becomes
/// `0123456789ab`).
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.get(..12).unwrap_or(hex)
}

/// The workload that owns a container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadRefView {
    /// Short lower-case kind: `deployment`, `statefulset`, `daemonset`,
    /// `job`, `cronjob`, `replicaset`, `pod`, `compose`, `container`,
    /// `other`.
    pub kind: String,
    /// Kubernetes namespace or compose project (`null` for a bare
    /// container).
    pub namespace: Option<String>,
    /// Owner name.
    pub name: String,
    /// Why the owner chain could not be followed to the top (`null` when
    /// it could).
    pub detail: Option<String>,
}

impl From<&v1::WorkloadRef> for WorkloadRefView {
    fn from(w: &v1::WorkloadRef) -> Self {
        WorkloadRefView {
            kind: workload_kind_name(w.kind).into(),
            namespace: non_empty(&w.namespace),
            name: w.name.clone(),
            detail: non_empty(&w.detail),
        }
    }
}

/// The image a container runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageView {
    /// As configured, e.g. `nginx:1.25.3-alpine`.
    pub reference: Option<String>,
    /// Without tag or digest, e.g. `docker.io/library/nginx`.
    pub repository: Option<String>,
    /// `null` when the reference has no tag.
    pub tag: Option<String>,
    /// Repository digest (`sha256:…`) when the runtime knows it.
    pub digest: Option<String>,
    /// Local image id (`sha256:…`).
    pub image_id: Option<String>,
}

impl From<&v1::ImageRef> for ImageView {
    fn from(i: &v1::ImageRef) -> Self {
        ImageView {
            reference: non_empty(&i.reference),
            repository: non_empty(&i.repository),
            tag: non_empty(&i.tag),
            digest: non_empty(&i.digest),
            image_id: non_empty(&i.image_id),
        }
    }
}

/// Everything the runtime and Kubernetes say about one container (the
/// `info` object of a container record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerInfoView {
    /// Full 64-hex container id.
    pub container_id: String,
    /// `docker`, `containerd`, `crio`, `podman`... or `null`.
    pub runtime: Option<model::Runtime>,
    /// Docker container name, or the Kubernetes container name.
    pub name: Option<String>,
    /// The image (`null` when the runtime gave none).
    pub image: Option<ImageView>,
    /// Labels, sorted by key.
    pub labels: BTreeMap<String, String>,
    /// `created`, `running`, `paused`, `restarting`, `exited`, `dead`,
    /// `removing`, `waiting`, `unknown`, or `null`.
    pub state: Option<String>,
    /// Why it is in that state, e.g. `CrashLoopBackOff`, `OOMKilled`.
    pub state_reason: Option<String>,
    /// `none` (no healthcheck), `starting`, `healthy`, `unhealthy`,
    /// `unknown`, or `null`.
    pub health: Option<String>,
    /// Restarts counted by the runtime.
    pub restart_count: u32,
    /// Exit code of the last exit (`null` while it never exited).
    pub exit_code: Option<i32>,
    /// The last exit was an OOM kill.
    pub oom_killed: bool,
    /// Last start (Unix ns).
    pub started_unix_ns: Option<i64>,
    /// Last start, RFC 3339 UTC.
    pub started: Option<String>,
    /// Last exit (Unix ns).
    pub finished_unix_ns: Option<i64>,
    /// Last exit, RFC 3339 UTC.
    pub finished: Option<String>,
    /// Configured CPU limit.
    pub cpu_limit_millicores: Option<u64>,
    /// Configured memory limit.
    pub memory_limit_bytes: Option<u64>,
    /// Kubernetes CPU request.
    pub cpu_request_millicores: Option<u64>,
    /// Kubernetes memory request.
    pub memory_request_bytes: Option<u64>,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Kubernetes pod name.
    pub pod_name: Option<String>,
    /// Kubernetes pod UID.
    pub pod_uid: Option<String>,
    /// `guaranteed`, `burstable`, `besteffort`, or `null`.
    pub qos: Option<model::QosClass>,
    /// Kubernetes `lastState.terminated.reason`, e.g. `OOMKilled`.
    pub last_termination_reason: Option<String>,
    /// The workload that owns it.
    pub workload: Option<WorkloadRefView>,
    /// Which sources contributed: `docker`, `kubernetes`.
    pub sources: Vec<String>,
}

impl From<&v1::ContainerInfo> for ContainerInfoView {
    fn from(i: &v1::ContainerInfo) -> Self {
        ContainerInfoView {
            container_id: i.container_id.clone(),
            runtime: super::runtime(i.runtime),
            name: non_empty(&i.name),
            image: i.image.as_ref().map(ImageView::from),
            labels: i
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            state: state_name(i.state).map(Into::into),
            state_reason: non_empty(&i.state_reason),
            health: health_name(i.health).map(Into::into),
            restart_count: i.restart_count,
            exit_code: i.exit_code,
            oom_killed: i.oom_killed,
            started_unix_ns: i.started_unix_ns,
            started: i.started_unix_ns.and_then(units::rfc3339),
            finished_unix_ns: i.finished_unix_ns,
            finished: i.finished_unix_ns.and_then(units::rfc3339),
            cpu_limit_millicores: i.cpu_limit_millicores,
            memory_limit_bytes: i.memory_limit_bytes,
            cpu_request_millicores: i.cpu_request_millicores,
            memory_request_bytes: i.memory_request_bytes,
            namespace: non_empty(&i.namespace),
            pod_name: non_empty(&i.pod_name),
            pod_uid: non_empty(&i.pod_uid),
            qos: super::qos(i.qos),
            last_termination_reason: non_empty(&i.last_termination_reason),
            workload: i
                .workload
                .as_ref()
                .filter(|w| !w.name.is_empty())
                .map(WorkloadRefView::from),
            sources: i.sources.clone(),
        }
    }
}

impl ContainerInfoView {
    /// The namespace a person filters by: the Kubernetes namespace, else
    /// the workload's (the compose project).
    pub fn effective_namespace(&self) -> Option<&str> {
        self.namespace
            .as_deref()
            .or_else(|| self.workload.as_ref().and_then(|w| w.namespace.as_deref()))
    }

    /// `kind/name` of the workload.
    pub fn workload_label(&self) -> Option<String> {
        self.workload
            .as_ref()
            .map(|w| format!("{}/{}", w.kind, w.name))
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_list_workloads_become_the_short_names() {
        for (given, want) in [
            ("Deployment", "deployment"),
            ("StatefulSet", "statefulset"),
            ("DaemonSet", "daemonset"),
            ("CronJob", "cronjob"),
            ("ReplicaSet", "replicaset"),
            ("ComposeService", "compose"),
            ("compose_service", "compose"),
            ("WORKLOAD_KIND_STATEFUL_SET", "statefulset"),
            ("Container", "container"),
            ("Service", "service"),
            ("Cgroup", "cgroup"),
            ("deployment", "deployment"),
        ] {
            assert_eq!(normalize_kind(given), want, "{given}");
        }
        for kind in [
            v1::WorkloadKind::Deployment,
            v1::WorkloadKind::StatefulSet,
            v1::WorkloadKind::DaemonSet,
            v1::WorkloadKind::Job,
            v1::WorkloadKind::CronJob,
            v1::WorkloadKind::ReplicaSet,
            v1::WorkloadKind::Pod,
            v1::WorkloadKind::ComposeService,
            v1::WorkloadKind::Container,
            v1::WorkloadKind::Other,
        ] {
            // The enum's own proto name normalizes to the same short name.
            let proto = kind.as_str_name();
            assert_eq!(
                normalize_kind(proto),
                workload_kind_name(kind as i32),
                "{proto}"
            );
        }
    }

    #[test]
    fn enum_values_from_a_newer_collector_are_unknown_not_errors() {
        assert_eq!(state_name(99), Some(UNKNOWN));
        assert_eq!(state_name(0), None);
        assert_eq!(
            state_name(v1::ContainerState::Waiting as i32),
            Some("waiting")
        );
        assert_eq!(health_name(42), Some(UNKNOWN));
        assert_eq!(health_name(v1::HealthStatus::None as i32), Some("none"));
        assert_eq!(workload_kind_name(77), "other");
    }

    #[test]
    fn digests_are_shortened_like_docker_images() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123456789abcdef"),
            "0123456789ab"
        );
        assert_eq!(short_digest("abc"), "abc");
    }
}

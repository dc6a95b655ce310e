//! Workloads: what a person deploys, with the containers it runs now.
//!
//! Where the agent sent inventory for a container (Docker or Kubernetes),
//! its workload is the one inventory names: a Kubernetes owner resolved to
//! the top (`Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`,
//! `ReplicaSet`, or a bare `Pod`) in its namespace, a compose service
//! (`ComposeService`, namespace = the compose project), or a Docker
//! container outside compose (`Container`, named by its name).
//!
//! Without inventory (a systemd service, a host where no runtime API
//! answers) the workload is the smallest unit the cgroup path names:
//!
//! | identity                                   | kind        | name                    | namespace |
//! |--------------------------------------------|-------------|-------------------------|-----------|
//! | kubelet pod (`pod_uid`)                    | `Pod`       | the pod UID             | `""`      |
//! | Docker/containerd/CRI-O/Podman, no pod     | `Container` | the 12-character id     | `""`      |
//! | systemd service                            | `Service`   | the unit                | `""`      |
//! | anything else (glob-matched cgroup)        | `Cgroup`    | the cgroup path         | `""`      |
//!
//! Services and glob-matched cgroups are named without their node, so the
//! same unit on several nodes is one workload (as a DaemonSet is), its
//! `containers` counting the nodes' cgroups.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use upid::wire::v1;

use crate::store::{ContainerInfo, InventoryRecord, TopEntry};

/// Kind of a workload that is one Kubernetes pod (named by its UID).
const KIND_POD: &str = "Pod";
/// Kind of a workload that is one container outside Kubernetes (named by
/// its short id).
const KIND_CONTAINER: &str = "Container";
/// Kind of a systemd service (named by its unit).
const KIND_SERVICE: &str = "Service";
/// Kind of a cgroup matched by a configured glob (named by its path).
const KIND_CGROUP: &str = "Cgroup";

/// Characters of a container id that name it (as `docker ps` shows it).
const SHORT_ID_CHARS: usize = 12;

/// Kind names as `ListWorkloads` gives them, Kubernetes-style.
pub(crate) fn kind_name(kind: i32) -> &'static str {
    match v1::WorkloadKind::try_from(kind) {
        Ok(v1::WorkloadKind::Deployment) => "Deployment",
        Ok(v1::WorkloadKind::StatefulSet) => "StatefulSet",
        Ok(v1::WorkloadKind::DaemonSet) => "DaemonSet",
        Ok(v1::WorkloadKind::Job) => "Job",
        Ok(v1::WorkloadKind::CronJob) => "CronJob",
        Ok(v1::WorkloadKind::ReplicaSet) => "ReplicaSet",
        Ok(v1::WorkloadKind::Pod) => KIND_POD,
        Ok(v1::WorkloadKind::ComposeService) => "ComposeService",
        Ok(v1::WorkloadKind::Container) => KIND_CONTAINER,
        Ok(v1::WorkloadKind::Other | v1::WorkloadKind::Unspecified) | Err(_) => "Other",
    }
}

/// The workload `(namespace, kind, name)` a container belongs to: the one
/// its inventory names, else what its cgroup identity tells.
pub(super) fn workload_of(
    c: &ContainerInfo,
    info: Option<&v1::ContainerInfo>,
) -> (String, &'static str, String) {
    if let Some(w) = info
        .and_then(|i| i.workload.as_ref())
        .filter(|w| !w.name.is_empty())
    {
        return (w.namespace.clone(), kind_name(w.kind), w.name.clone());
    }
    let namespace = info.map(|i| i.namespace.clone()).unwrap_or_default();
    if let Some(pod) = c.pod_uid.as_deref().filter(|p| !p.is_empty()) {
        return (namespace, KIND_POD, pod.to_owned());
    }
    if let Some(id) = c.container_id.as_deref().filter(|i| !i.is_empty()) {
        let short = id.get(..SHORT_ID_CHARS).unwrap_or(id);
        return (namespace, KIND_CONTAINER, short.to_owned());
    }
    if let Some(unit) = c.unit.as_deref().filter(|u| !u.is_empty()) {
        return (namespace, KIND_SERVICE, unit.to_owned());
    }
    (namespace, KIND_CGROUP, c.cgroup_path.clone())
}

/// Groups containers (with their latest rates) into workloads in
/// `namespace` (empty: every namespace), by namespace, kind and name.
///
/// A workload's CPU and working set are the sums over its containers' latest
/// rates; `None` when none of them has the value yet (a single sample gives
/// no CPU rate).
pub(super) fn group(
    entries: &[TopEntry],
    inventory: &HashMap<String, InventoryRecord>,
    namespace: &str,
) -> Vec<v1::Workload> {
    let mut workloads: BTreeMap<(String, &'static str, String), v1::Workload> = BTreeMap::new();
    let mut replicas: BTreeMap<(String, &'static str, String), BTreeSet<String>> = BTreeMap::new();
    for e in entries {
        let info = e
            .container
            .container_id
            .as_deref()
            .and_then(|id| inventory.get(id))
            .map(|r| &r.info);
        let (ns, kind, name) = workload_of(&e.container, info);
        if !namespace.is_empty() && ns != namespace {
            continue;
        }
        let w = workloads
            .entry((ns.clone(), kind, name.clone()))
            .or_insert_with(|| v1::Workload {
                namespace: ns,
                kind: kind.to_owned(),
                name,
                ..Default::default()
            });
        w.containers = w.containers.saturating_add(1);
        w.oom_kills = w.oom_kills.saturating_add(e.container.oom_kills_total);
        if let Some(info) = info {
            w.restarts = w.restarts.saturating_add(info.restart_count);
            if let Some(image) = info.image.as_ref().filter(|i| !i.reference.is_empty())
                && !w.images.contains(&image.reference)
            {
                w.images.push(image.reference.clone());
                w.images.sort();
            }
        }
        // A replica is a pod, or a container outside Kubernetes.
        let replica = match info {
            Some(i) if !i.pod_uid.is_empty() => i.pod_uid.clone(),
            _ => e
                .container
                .pod_uid
                .clone()
                .unwrap_or_else(|| e.container.key.clone()),
        };
        replicas
            .entry((w.namespace.clone(), kind, w.name.clone()))
            .or_default()
            .insert(replica);
        if let Some(cores) = e.latest.cpu_cores {
            w.cpu_cores = Some(w.cpu_cores.unwrap_or(0.0) + cores);
        }
        if let Some(ws) = e.latest.memory_working_set_bytes {
            w.memory_working_set_bytes =
                Some(w.memory_working_set_bytes.unwrap_or(0).saturating_add(ws));
        }
    }
    for (key, w) in &mut workloads {
        w.replicas = replicas
            .get(key)
            .map_or(0, |r| u32::try_from(r.len()).unwrap_or(u32::MAX));
    }
    workloads.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Rates;

    fn entry(
        pod: Option<&str>,
        id: Option<&str>,
        unit: Option<&str>,
        cores: Option<f64>,
    ) -> TopEntry {
        TopEntry {
            container: ContainerInfo {
                key: "k".into(),
                node_name: "n".into(),
                cgroup_path: "/custom/batch".into(),
                runtime: None,
                container_id: id.map(Into::into),
                pod_uid: pod.map(Into::into),
                qos: None,
                unit: unit.map(Into::into),
                first_seen_unix_ns: 0,
                last_seen_unix_ns: 0,
                gone: false,
                samples_stored: 1,
                cpu_limit_millicores: None,
                memory_limit_bytes: None,
                oom_kills_total: 0,
            },
            latest: Rates {
                cpu_cores: cores,
                memory_working_set_bytes: Some(100),
                ..Default::default()
            },
        }
    }

    #[test]
    fn pods_containers_services_and_cgroups_are_named_by_what_identifies_them() {
        let id = "0123456789abcdef".repeat(4);
        let entries = [
            entry(Some("pod-1"), Some(&id), None, Some(0.5)),
            entry(Some("pod-1"), Some("ffff"), None, None),
            entry(None, Some(&id), None, Some(0.25)),
            entry(None, None, Some("nginx.service"), None),
            entry(None, None, None, Some(1.0)),
        ];
        let got: Vec<_> = group(&entries, &HashMap::new(), "")
            .into_iter()
            .map(|w| {
                (
                    w.kind,
                    w.name,
                    w.containers,
                    w.cpu_cores,
                    w.memory_working_set_bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Cgroup".into(),
                    "/custom/batch".into(),
                    1,
                    Some(1.0),
                    Some(100)
                ),
                (
                    "Container".into(),
                    "0123456789ab".into(),
                    1,
                    Some(0.25),
                    Some(100)
                ),
                ("Pod".into(), "pod-1".into(), 2, Some(0.5), Some(200)),
                ("Service".into(), "nginx.service".into(), 1, None, Some(100)),
            ]
        );
        assert!(group(&entries, &HashMap::new(), "default").is_empty());
    }
}

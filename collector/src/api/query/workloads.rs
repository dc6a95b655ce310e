//! Workloads derived from what a cgroup's identity tells, until the
//! Kubernetes and Docker inventory lands.
//!
//! Without inventory the collector does not know a pod's owner (Deployment,
//! StatefulSet, DaemonSet, Job...) nor its namespace, so a workload is the
//! smallest unit the cgroup path names:
//!
//! | identity                                   | kind        | name                    | namespace |
//! |--------------------------------------------|-------------|-------------------------|-----------|
//! | kubelet pod (`pod_uid`)                    | `Pod`       | the pod UID             | `""`      |
//! | Docker/containerd/CRI-O/Podman, no pod     | `Container` | the 12-character id     | `""`      |
//! | systemd service                            | `Service`   | the unit                | `""`      |
//! | anything else (glob-matched cgroup)        | `Cgroup`    | the cgroup path         | `""`      |
//!
//! Once inventory lands, pods are grouped under their owners
//! (`Deployment`, `StatefulSet`, ... named as in Kubernetes, with their
//! namespace) and Docker containers under their Compose service; clients
//! should show `kind` and `name` as given and not rely on today's names.
//!
//! Services and glob-matched cgroups are named without their node, so the
//! same unit on several nodes is one workload (as a DaemonSet is), its
//! `containers` counting the nodes' cgroups.

use std::collections::BTreeMap;

use upid::wire::v1;

use crate::store::{ContainerInfo, TopEntry};

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

/// The workload `(namespace, kind, name)` a container belongs to.
fn workload_of(c: &ContainerInfo) -> (String, &'static str, String) {
    let namespace = String::new();
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
pub(super) fn group(entries: &[TopEntry], namespace: &str) -> Vec<v1::Workload> {
    let mut workloads: BTreeMap<(String, &'static str, String), v1::Workload> = BTreeMap::new();
    for e in entries {
        let (ns, kind, name) = workload_of(&e.container);
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
        if let Some(cores) = e.latest.cpu_cores {
            w.cpu_cores = Some(w.cpu_cores.unwrap_or(0.0) + cores);
        }
        if let Some(ws) = e.latest.memory_working_set_bytes {
            w.memory_working_set_bytes =
                Some(w.memory_working_set_bytes.unwrap_or(0).saturating_add(ws));
        }
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
        let got: Vec<_> = group(&entries, "")
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
        assert!(group(&entries, "default").is_empty());
    }
}

//! One pod as the API server reports it → one `ContainerInfo` per
//! container that exists on the node (a status with a `containerID`): its
//! id and runtime, image, state, restarts, last termination, readiness,
//! requests and limits, QoS and the pod's labels.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateTerminated, ContainerStatus, Pod,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use upid::wire::v1;

use super::quantity;
use crate::inventory::Source;
use crate::inventory::image::{digest_of, parse_reference};

/// Splits a status `containerID` (`containerd://<id>`, `docker://<id>`,
/// `cri-o://<id>`) into the runtime and the bare id. An unknown scheme keeps
/// the id with runtime unspecified; an empty id is `None`.
pub fn split_container_id(raw: &str) -> Option<(v1::Runtime, &str)> {
    let (runtime, id) = match raw.split_once("://") {
        Some(("containerd", id)) => (v1::Runtime::Containerd, id),
        Some(("docker", id)) => (v1::Runtime::Docker, id),
        Some(("cri-o", id)) => (v1::Runtime::Crio, id),
        Some((_, id)) => (v1::Runtime::Unspecified, id),
        None => (v1::Runtime::Unspecified, raw),
    };
    let id = id.trim();
    (!id.is_empty()).then_some((runtime, id))
}

/// Counts resource quantities that could not be parsed (the field is left
/// absent); the first of each pod/container/field is logged at `warn`.
#[derive(Debug, Default)]
pub struct QuantitySkips {
    count: u64,
    logged: HashSet<String>,
}

impl QuantitySkips {
    /// Quantities skipped so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn skip(&mut self, pod: &str, container: &str, field: &str, value: &str) {
        self.count += 1;
        let key = format!("{pod}/{container}/{field}");
        if self.logged.len() < 10_000 && self.logged.insert(key) {
            tracing::warn!(
                pod,
                container,
                field,
                value,
                skipped_total = self.count,
                "skipping unparsable Kubernetes resource quantity"
            );
        } else {
            tracing::debug!(pod, container, field, value, "unparsable quantity again");
        }
    }
}

/// Annotations with this prefix are copied into a container's labels.
pub const UPID_ANNOTATION_PREFIX: &str = "upid.io/";

/// The container records of `pod`, owned by `workload`. Statuses without a
/// `containerID` (not created yet) have no cgroup to join and are left out.
pub fn container_records(
    pod: &Pod,
    workload: &v1::WorkloadRef,
    skips: &mut QuantitySkips,
) -> Vec<v1::ContainerInfo> {
    let meta = &pod.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let pod_name = meta.name.clone().unwrap_or_default();
    let pod_uid = meta.uid.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = meta
        .labels
        .as_ref()
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    // upid's own annotations (update policy: `upid.io/update-policy`, ...)
    // travel with the labels, so the collector reads one map whatever the
    // runtime; an annotation wins over a label of the same key. Other
    // annotations stay behind: they can be large (last-applied configs).
    for (k, v) in meta.annotations.iter().flatten() {
        if k.starts_with(UPID_ANNOTATION_PREFIX) {
            labels.insert(k.clone(), v.clone());
        }
    }
    let qos = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .map_or(v1::QosClass::Unspecified, qos_class);

    // Name → (image, resources) from the spec, for every container kind.
    let mut specs: HashMap<&str, (Option<&str>, Option<&ResourceRequirements>)> = HashMap::new();
    if let Some(spec) = &pod.spec {
        let regular = spec.containers.iter();
        let init = spec.init_containers.iter().flatten();
        for c in regular.chain(init) {
            specs.insert(&c.name, (c.image.as_deref(), c.resources.as_ref()));
        }
        for c in spec.ephemeral_containers.iter().flatten() {
            specs.insert(&c.name, (c.image.as_deref(), c.resources.as_ref()));
        }
    }

    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let statuses = [
        (&status.container_statuses, false),
        (&status.init_container_statuses, true),
        (&status.ephemeral_container_statuses, false),
    ];
    let mut out = Vec::new();
    for (list, is_init) in statuses {
        for cs in list.iter().flatten() {
            let Some((runtime, id)) = cs.container_id.as_deref().and_then(split_container_id)
            else {
                continue;
            };
            let (spec_image, spec_resources) = specs.get(cs.name.as_str()).copied().unzip();
            let mut info = v1::ContainerInfo {
                container_id: id.to_string(),
                runtime: runtime as i32,
                name: cs.name.clone(),
                labels: labels.clone(),
                restart_count: u32::try_from(cs.restart_count).unwrap_or(0),
                namespace: namespace.clone(),
                pod_name: pod_name.clone(),
                pod_uid: pod_uid.clone(),
                qos: qos as i32,
                workload: Some(workload.clone()),
                sources: vec![Source::Kubernetes.as_str().to_string()],
                image: Some(image_ref(spec_image.flatten(), cs)),
                ..Default::default()
            };
            apply_state(&mut info, cs, is_init);
            // The resources the kubelet actually applied (in-place resize)
            // win over the spec.
            let resources = cs.resources.as_ref().or(spec_resources.flatten());
            if let Some(r) = resources {
                let who = (pod_name.as_str(), cs.name.as_str());
                apply_resources(&mut info, r, who, skips);
            }
            out.push(info);
        }
    }
    out
}

fn qos_class(s: &str) -> v1::QosClass {
    match s {
        "Guaranteed" => v1::QosClass::Guaranteed,
        "Burstable" => v1::QosClass::Burstable,
        "BestEffort" => v1::QosClass::BestEffort,
        _ => v1::QosClass::Unspecified,
    }
}

/// The configured reference (spec image, else status image), with the
/// digest the node actually pulled (from `imageID`).
fn image_ref(spec_image: Option<&str>, cs: &ContainerStatus) -> v1::ImageRef {
    let reference = spec_image.filter(|s| !s.is_empty()).unwrap_or(&cs.image);
    let mut image = parse_reference(reference);
    let pulled = digest_of(&cs.image_id);
    if !pulled.is_empty() {
        image.digest = pulled.to_string();
    }
    image.image_id.clone_from(&cs.image_id);
    image
}

fn unix_ns(t: Option<&Time>) -> Option<i64> {
    t.and_then(|t| i64::try_from(t.0.as_nanosecond()).ok())
}

fn apply_state(info: &mut v1::ContainerInfo, cs: &ContainerStatus, is_init: bool) {
    let state = cs.state.as_ref();
    let last_terminated = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let mut running = false;
    let mut terminated_now: Option<&ContainerStateTerminated> = None;
    match state {
        Some(K8sState {
            running: Some(r), ..
        }) => {
            info.state = v1::ContainerState::Running as i32;
            info.started_unix_ns = unix_ns(r.started_at.as_ref());
            running = true;
        }
        Some(K8sState {
            terminated: Some(t),
            ..
        }) => {
            info.state = v1::ContainerState::Exited as i32;
            info.state_reason = t.reason.clone().unwrap_or_default();
            info.started_unix_ns = unix_ns(t.started_at.as_ref());
            terminated_now = Some(t);
        }
        Some(K8sState {
            waiting: Some(w), ..
        }) => {
            info.state = v1::ContainerState::Waiting as i32;
            info.state_reason = w.reason.clone().unwrap_or_default();
        }
        _ => {}
    }
    if let Some(t) = terminated_now.or(last_terminated) {
        info.exit_code = Some(t.exit_code);
        info.finished_unix_ns = unix_ns(t.finished_at.as_ref());
    }
    info.last_termination_reason = last_terminated
        .and_then(|t| t.reason.clone())
        .unwrap_or_default();
    let oom = |t: Option<&ContainerStateTerminated>| {
        t.and_then(|t| t.reason.as_deref()) == Some("OOMKilled")
    };
    info.oom_killed = oom(terminated_now) || oom(last_terminated);
    info.health = if terminated_now.is_some() || (is_init && !running) {
        // Readiness means nothing for a container that has stopped, or for
        // an init container that is not a running sidecar.
        v1::HealthStatus::None
    } else if cs.ready {
        v1::HealthStatus::Healthy
    } else if running && cs.started == Some(false) {
        v1::HealthStatus::Starting
    } else {
        v1::HealthStatus::Unhealthy
    } as i32;
}

fn apply_resources(
    info: &mut v1::ContainerInfo,
    r: &ResourceRequirements,
    (pod, container): (&str, &str),
    skips: &mut QuantitySkips,
) {
    let mut get = |map: &Option<BTreeMap<String, Quantity>>,
                   key: &str,
                   field: &str,
                   parse: fn(&str) -> Option<u64>| {
        let q = map.as_ref()?.get(key)?;
        let v = parse(&q.0);
        if v.is_none() {
            skips.skip(pod, container, field, &q.0);
        }
        v
    };
    info.cpu_request_millicores = get(&r.requests, "cpu", "requests.cpu", quantity::cpu_millicores);
    info.memory_request_bytes = get(
        &r.requests,
        "memory",
        "requests.memory",
        quantity::memory_bytes,
    );
    info.cpu_limit_millicores = get(&r.limits, "cpu", "limits.cpu", quantity::cpu_millicores);
    info.memory_limit_bytes = get(&r.limits, "memory", "limits.memory", quantity::memory_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("pod json")
    }

    fn workload() -> v1::WorkloadRef {
        v1::WorkloadRef {
            kind: v1::WorkloadKind::Pod as i32,
            namespace: "default".into(),
            name: "p".into(),
            detail: String::new(),
        }
    }

    const ID: &str = "4c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0";

    #[test]
    fn container_ids_lose_their_scheme() {
        assert_eq!(
            split_container_id(&format!("containerd://{ID}")),
            Some((v1::Runtime::Containerd, ID))
        );
        assert_eq!(
            split_container_id("docker://abc"),
            Some((v1::Runtime::Docker, "abc"))
        );
        assert_eq!(
            split_container_id("cri-o://abc"),
            Some((v1::Runtime::Crio, "abc"))
        );
        assert_eq!(
            split_container_id("rkt://abc"),
            Some((v1::Runtime::Unspecified, "abc"))
        );
        assert_eq!(split_container_id("containerd://"), None);
        assert_eq!(split_container_id(""), None);
    }

    #[test]
    fn a_crashlooping_container_after_an_oom_kill() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u-1",
                "labels": {"app": "p", "upid.io/update-policy": "minor"},
                "annotations": {"upid.io/update-policy": "patch", "upid.io/min-age": "3d",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25",
                "resources": {"requests": {"cpu": "250m", "memory": "bogus"},
                              "limits": {"cpu": "1", "memory": "128Mi"}}}]},
            "status": {"qosClass": "Burstable", "containerStatuses": [{
                "name": "c", "containerID": format!("containerd://{ID}"), "ready": false,
                "restartCount": 5, "image": "docker.io/library/nginx:1.25",
                "imageID": "docker.io/library/nginx@sha256:aa",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                    "startedAt": "2025-05-01T10:00:00Z", "finishedAt": "2025-05-01T10:05:00Z"}}
            }, {
                "name": "not-created", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                "state": {"waiting": {"reason": "ContainerCreating"}}
            }]}
        }));
        let mut skips = QuantitySkips::default();
        let got = container_records(&p, &workload(), &mut skips);
        assert_eq!(got.len(), 1, "the container without an id is not recorded");
        let c = &got[0];
        assert_eq!(c.container_id, ID);
        assert_eq!(c.state, v1::ContainerState::Waiting as i32);
        assert_eq!(c.state_reason, "CrashLoopBackOff");
        assert_eq!(c.restart_count, 5);
        assert_eq!(c.exit_code, Some(137));
        assert!(c.oom_killed);
        assert_eq!(c.last_termination_reason, "OOMKilled");
        assert_eq!(c.finished_unix_ns, Some(1_746_093_900_000_000_000));
        assert_eq!(c.health, v1::HealthStatus::Unhealthy as i32);
        assert_eq!(c.cpu_request_millicores, Some(250));
        assert_eq!(c.memory_request_bytes, None, "garbage quantity is absent");
        assert_eq!(skips.count(), 1, "and counted");
        assert_eq!(c.cpu_limit_millicores, Some(1000));
        assert_eq!(c.memory_limit_bytes, Some(128 << 20));
        assert_eq!(c.qos, v1::QosClass::Burstable as i32);
        let image = c.image.as_ref().expect("image");
        assert_eq!(image.reference, "nginx:1.25");
        assert_eq!(image.repository, "docker.io/library/nginx");
        assert_eq!(image.digest, "sha256:aa");
        assert_eq!(image.image_id, "docker.io/library/nginx@sha256:aa");
        assert_eq!(c.labels.get("app").map(String::as_str), Some("p"));
        assert_eq!(
            c.labels.get("upid.io/update-policy").map(String::as_str),
            Some("patch"),
            "upid.io annotations travel with the labels and win over a label"
        );
        assert_eq!(
            c.labels.get("upid.io/min-age").map(String::as_str),
            Some("3d")
        );
        assert!(
            !c.labels
                .contains_key("kubectl.kubernetes.io/last-applied-configuration"),
            "other annotations stay behind"
        );
        assert_eq!(c.sources, vec!["kubernetes".to_string()]);
    }

    #[test]
    fn readiness_maps_to_health() {
        let status = |ready: bool, started: Option<bool>| {
            pod(serde_json::json!({
                "metadata": {"name": "p", "namespace": "d", "uid": "u"},
                "status": {"containerStatuses": [{
                    "name": "c", "containerID": "cri-o://abc", "ready": ready, "started": started,
                    "restartCount": 0, "image": "i", "imageID": "",
                    "state": {"running": {"startedAt": "2025-05-01T10:00:00Z"}}}]}
            }))
        };
        let health =
            |p: Pod| container_records(&p, &workload(), &mut QuantitySkips::default())[0].health;
        assert_eq!(
            health(status(true, Some(true))),
            v1::HealthStatus::Healthy as i32
        );
        assert_eq!(
            health(status(false, Some(true))),
            v1::HealthStatus::Unhealthy as i32
        );
        assert_eq!(
            health(status(false, Some(false))),
            v1::HealthStatus::Starting as i32
        );
    }
}

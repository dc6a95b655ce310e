//! One `docker inspect` result as a `upid.v1.ContainerInfo`: a pure
//! mapping, so every field can be checked against JSON captured from a
//! real engine (the fixtures beside this file).

use std::collections::HashMap;

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum, HostConfig,
};
use upid::wire::v1;

use super::rfc3339;
use crate::inventory::Source;
use crate::inventory::image::{digest_of, normalize_repository, parse_reference};

/// Compose project label: the workload's namespace.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// Compose service label: the workload's name.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// Labels cri-dockerd (and dockershim before it) put on the containers it
/// runs for the kubelet.
pub const KUBE_POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// The pod's name.
pub const KUBE_POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// The pod's namespace.
pub const KUBE_POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The container's name in the pod spec.
pub const KUBE_CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// The kernel's CFS period when Docker was given a quota without one.
const DEFAULT_CPU_PERIOD_US: i64 = 100_000;

/// Maps one container's inspect result to its inventory record.
/// `image_repo_digests` is the `RepoDigests` of the container's image
/// (`docker image inspect`), used for the image digest when the configured
/// reference carries none. `None` when the result has no full 64-hex id:
/// such a record could never be joined to samples.
///
/// Docker resets `ExitCode` and `OOMKilled` when a container starts again,
/// so a running or paused container has no `exit_code`: the exit it had
/// before is not known any more (the tracker saw it, if it was watching).
pub fn container_info(
    inspect: &ContainerInspectResponse,
    image_repo_digests: &[String],
) -> Option<v1::ContainerInfo> {
    let id = inspect.id.as_deref()?;
    if !is_full_id(id) {
        return None;
    }
    let config = inspect.config.as_ref();
    let labels: HashMap<String, String> = config.and_then(|c| c.labels.clone()).unwrap_or_default();
    let docker_name = inspect
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/');

    let state = inspect.state.as_ref();
    let status = state.and_then(|s| s.status);
    let oom_killed = state.and_then(|s| s.oom_killed).unwrap_or(false);
    let started_unix_ns = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(rfc3339::unix_ns);
    let finished_unix_ns = state
        .and_then(|s| s.finished_at.as_deref())
        .and_then(rfc3339::unix_ns);
    let running_now = matches!(
        status,
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::PAUSED)
    );
    let exit_code = match (finished_unix_ns, running_now) {
        (Some(_), false) => state
            .and_then(|s| s.exit_code)
            .and_then(|c| i32::try_from(c).ok()),
        _ => None,
    };
    let error = state.and_then(|s| s.error.as_deref()).unwrap_or_default();
    let state_reason = if oom_killed {
        "OOMKilled".to_string()
    } else {
        error.trim().to_string()
    };

    let kube = is_kubernetes_managed(&labels);
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let name = match labels.get(KUBE_CONTAINER_NAME_LABEL) {
        Some(k) if kube && !k.is_empty() => k.clone(),
        _ => docker_name.to_string(),
    };
    let workload = if kube {
        None
    } else {
        Some(workload_of(&labels, docker_name))
    };
    let (namespace, pod_name, pod_uid) = if kube {
        (
            label(KUBE_POD_NAMESPACE_LABEL),
            label(KUBE_POD_NAME_LABEL),
            label(KUBE_POD_UID_LABEL),
        )
    } else {
        // A compose project is the namespace of its containers, as a
        // Kubernetes namespace is of its pods (`upid get containers -n`).
        let project = workload
            .as_ref()
            .map(|w| w.namespace.clone())
            .unwrap_or_default();
        (project, String::new(), String::new())
    };

    let host = inspect.host_config.as_ref();
    Some(v1::ContainerInfo {
        container_id: id.to_string(),
        runtime: v1::Runtime::Docker as i32,
        name,
        image: Some(image_of(
            config.and_then(|c| c.image.as_deref()).unwrap_or_default(),
            inspect.image.as_deref().unwrap_or_default(),
            image_repo_digests,
        )),
        state: state_of(status) as i32,
        state_reason,
        health: health_of(inspect) as i32,
        restart_count: inspect
            .restart_count
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
        exit_code,
        oom_killed,
        started_unix_ns,
        finished_unix_ns,
        cpu_limit_millicores: host.and_then(cpu_limit_millicores),
        memory_limit_bytes: host
            .and_then(|h| h.memory)
            .filter(|m| *m > 0)
            .and_then(|m| u64::try_from(m).ok()),
        namespace,
        pod_name,
        pod_uid,
        workload,
        sources: vec![Source::Docker.as_str().to_string()],
        labels,
        ..Default::default()
    })
}

/// True for a full container id: 64 lower-case hex digits.
pub fn is_full_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Containers the kubelet runs through cri-dockerd: the Kubernetes source
/// says which workload owns them.
fn is_kubernetes_managed(labels: &HashMap<String, String>) -> bool {
    labels.contains_key(KUBE_POD_UID_LABEL) || labels.contains_key(KUBE_CONTAINER_NAME_LABEL)
}

fn workload_of(labels: &HashMap<String, String>, docker_name: &str) -> v1::WorkloadRef {
    let project = labels.get(COMPOSE_PROJECT_LABEL).filter(|v| !v.is_empty());
    let service = labels.get(COMPOSE_SERVICE_LABEL).filter(|v| !v.is_empty());
    match (project, service) {
        (Some(project), Some(service)) => v1::WorkloadRef {
            kind: v1::WorkloadKind::ComposeService as i32,
            namespace: project.clone(),
            name: service.clone(),
            detail: String::new(),
        },
        _ => v1::WorkloadRef {
            kind: v1::WorkloadKind::Container as i32,
            namespace: String::new(),
            name: docker_name.to_string(),
            detail: String::new(),
        },
    }
}

fn state_of(status: Option<ContainerStateStatusEnum>) -> v1::ContainerState {
    use v1::ContainerState as S;
    match status {
        Some(ContainerStateStatusEnum::CREATED) => S::Created,
        // "stopping" (newer engines): the process still runs.
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING) => S::Running,
        Some(ContainerStateStatusEnum::PAUSED) => S::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => S::Restarting,
        Some(ContainerStateStatusEnum::EXITED) => S::Exited,
        Some(ContainerStateStatusEnum::DEAD) => S::Dead,
        Some(ContainerStateStatusEnum::REMOVING) => S::Removing,
        Some(ContainerStateStatusEnum::EMPTY) | None => S::Unspecified,
    }
}

fn health_of(inspect: &ContainerInspectResponse) -> v1::HealthStatus {
    use v1::HealthStatus as H;
    let health = inspect.state.as_ref().and_then(|s| s.health.as_ref());
    match health.and_then(|h| h.status) {
        Some(HealthStatusEnum::STARTING) => H::Starting,
        Some(HealthStatusEnum::HEALTHY) => H::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => H::Unhealthy,
        Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => H::None,
    }
}

/// `--cpus` (NanoCpus) wins; otherwise `--cpu-quota` over `--cpu-period`.
fn cpu_limit_millicores(host: &HostConfig) -> Option<u64> {
    if let Some(nano) = host.nano_cpus.filter(|n| *n > 0) {
        return u64::try_from(nano / 1_000_000).ok();
    }
    let quota = host.cpu_quota.filter(|q| *q > 0)?;
    let period = host
        .cpu_period
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_CPU_PERIOD_US);
    u64::try_from(quota.checked_mul(1000)? / period).ok()
}

/// The configured reference (`Config.Image`), the local image id
/// (`.Image`), and a repository digest: the one of the reference's own
/// repository when the image has several.
fn image_of(reference: &str, image_id: &str, repo_digests: &[String]) -> v1::ImageRef {
    if is_image_id(reference, image_id) {
        // `docker run sha256:…` or a short id: there is no repository.
        return v1::ImageRef {
            reference: reference.to_string(),
            image_id: image_id.to_string(),
            ..Default::default()
        };
    }
    let mut image = parse_reference(reference);
    image.image_id = image_id.to_string();
    if image.digest.is_empty() {
        let same_repository = repo_digests.iter().find(|rd| {
            rd.rsplit_once('@')
                .is_some_and(|(repo, _)| normalize_repository(repo) == image.repository)
        });
        let chosen =
            same_repository.or_else(|| repo_digests.iter().find(|rd| !digest_of(rd).is_empty()));
        if let Some(rd) = chosen {
            image.digest = digest_of(rd).to_string();
        }
    }
    image
}

/// True when `reference` names the image by (a prefix of) its id.
fn is_image_id(reference: &str, image_id: &str) -> bool {
    if reference.starts_with("sha256:") {
        return true;
    }
    let hex = image_id.trim_start_matches("sha256:");
    reference.len() >= 12
        && reference.bytes().all(|c| c.is_ascii_hexdigit())
        && hex.starts_with(reference)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The busybox image the fixtures ran (built from scratch here).
    const IMAGE_ID: &str =
        "sha256:faf8c4bc4b63ab38707f0198525534db0ad26d86a0c4411f28a3b60ee9ba2022";
    /// Its manifest digest after `docker push localhost:5055/upid/fixture:1.0`.
    const PUSHED_DIGEST: &str =
        "sha256:fe7e62848a26afb802fb941e664c1b89dd941c59c4bf3376522e1205ad40d963";

    fn fixture(name: &str) -> ContainerInspectResponse {
        let text = match name {
            "compose_web" => include_str!("fixtures/compose_web.json"),
            "oom_killed" => include_str!("fixtures/oom_killed.json"),
            "created" => include_str!("fixtures/created.json"),
            "kube_restarted" => include_str!("fixtures/kube_restarted.json"),
            "unhealthy" => include_str!("fixtures/unhealthy.json"),
            "start_error" => include_str!("fixtures/start_error.json"),
            other => panic!("no fixture {other}"),
        };
        serde_json::from_str(text).unwrap()
    }

    fn pushed_repo_digests() -> Vec<String> {
        let image: bollard::models::ImageInspect =
            serde_json::from_str(include_str!("fixtures/image_pushed.json")).unwrap();
        image.repo_digests.unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn local_image(reference: &str) -> v1::ImageRef {
        v1::ImageRef {
            reference: reference.to_string(),
            repository: format!("docker.io/library/{}", reference.split(':').next().unwrap()),
            tag: reference.split(':').nth(1).unwrap_or_default().to_string(),
            digest: String::new(),
            image_id: IMAGE_ID.to_string(),
        }
    }

    fn docker_only() -> Vec<String> {
        vec!["docker".to_string()]
    }

    fn container(name: &str) -> v1::WorkloadRef {
        v1::WorkloadRef {
            kind: v1::WorkloadKind::Container as i32,
            name: name.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn compose_service_with_limits_and_healthcheck() {
        // docker run -d --name upid-dinv-web --label team=payments
        //   --label com.docker.compose.project=shop --label com.docker.compose.service=web
        //   --memory 64m --cpus 1.5 --health-cmd true --health-interval 1s
        //   localhost:5055/upid/fixture:1.0 sleep 3600
        let got = container_info(&fixture("compose_web"), &pushed_repo_digests()).unwrap();
        let want = v1::ContainerInfo {
            container_id: "de6755593984f46b72b42fe92f1375334e71c6113b866cd381f7e4ed98f5cdf7"
                .to_string(),
            runtime: v1::Runtime::Docker as i32,
            name: "upid-dinv-web".to_string(),
            image: Some(v1::ImageRef {
                reference: "localhost:5055/upid/fixture:1.0".to_string(),
                repository: "localhost:5055/upid/fixture".to_string(),
                tag: "1.0".to_string(),
                digest: PUSHED_DIGEST.to_string(),
                image_id: IMAGE_ID.to_string(),
            }),
            labels: labels(&[
                ("team", "payments"),
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "web"),
            ]),
            state: v1::ContainerState::Running as i32,
            health: v1::HealthStatus::Healthy as i32,
            // date -u -d 2026-11-24T00:46:29.096124611Z +%s%N
            started_unix_ns: Some(1_795_481_189_096_124_611),
            cpu_limit_millicores: Some(1500),
            memory_limit_bytes: Some(64 << 20),
            namespace: "shop".to_string(),
            workload: Some(v1::WorkloadRef {
                kind: v1::WorkloadKind::ComposeService as i32,
                namespace: "shop".to_string(),
                name: "web".to_string(),
                detail: String::new(),
            }),
            sources: docker_only(),
            ..Default::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn oom_killed_container_with_cpu_quota() {
        // docker run -d --name upid-dinv-oom --memory 16m --cpu-quota 50000
        //   --cpu-period 100000 upid-dinv-fixture:1.0 sh -c 'x=$(head -c 64m /dev/zero | tr "\0" a); sleep 1'
        let got = container_info(&fixture("oom_killed"), &[]).unwrap();
        let want = v1::ContainerInfo {
            container_id: "0e36d9e464b75e62c9910549e2e3e3cb20a992a8f4b1a67f3501b8318b616d0e"
                .to_string(),
            runtime: v1::Runtime::Docker as i32,
            name: "upid-dinv-oom".to_string(),
            image: Some(local_image("upid-dinv-fixture:1.0")),
            state: v1::ContainerState::Exited as i32,
            state_reason: "OOMKilled".to_string(),
            health: v1::HealthStatus::None as i32,
            exit_code: Some(137),
            oom_killed: true,
            // 2026-11-24T00:46:29.433434252Z, 2026-11-24T00:46:29.674696651Z
            started_unix_ns: Some(1_795_481_189_433_434_252),
            finished_unix_ns: Some(1_795_481_189_674_696_651),
            cpu_limit_millicores: Some(500),
            memory_limit_bytes: Some(16 << 20),
            workload: Some(container("upid-dinv-oom")),
            sources: docker_only(),
            ..Default::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn created_container_never_ran() {
        // docker create --name upid-dinv-created upid-dinv-fixture:1.0
        let got = container_info(&fixture("created"), &[]).unwrap();
        let want = v1::ContainerInfo {
            container_id: "ca21ba03257764dc7f3d186f8ebcb8cd9d95791c2efa735a75ae18bbd38d7b64"
                .to_string(),
            runtime: v1::Runtime::Docker as i32,
            name: "upid-dinv-created".to_string(),
            image: Some(local_image("upid-dinv-fixture:1.0")),
            state: v1::ContainerState::Created as i32,
            health: v1::HealthStatus::None as i32,
            workload: Some(container("upid-dinv-created")),
            sources: docker_only(),
            ..Default::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn kubernetes_container_takes_its_pod_from_labels() {
        // cri-dockerd's labels on a container restarted twice by
        // --restart on-failure:2 running sh -c 'exit 3'.
        let got = container_info(&fixture("kube_restarted"), &[]).unwrap();
        let want = v1::ContainerInfo {
            container_id: "4293e94f845989769dbcada14882cb5bbe77af10815d644f5948916f1d8f8a21"
                .to_string(),
            runtime: v1::Runtime::Docker as i32,
            name: "app".to_string(),
            image: Some(local_image("upid-dinv-fixture:1.0")),
            labels: labels(&[
                ("io.kubernetes.container.name", "app"),
                ("io.kubernetes.pod.name", "mypod-7d9f"),
                ("io.kubernetes.pod.namespace", "default"),
                (
                    "io.kubernetes.pod.uid",
                    "0b7c1a2e-3f4d-4e5f-8a9b-1c2d3e4f5a6b",
                ),
                ("io.kubernetes.docker.type", "container"),
            ]),
            state: v1::ContainerState::Exited as i32,
            health: v1::HealthStatus::None as i32,
            restart_count: 2,
            exit_code: Some(3),
            // 2026-11-24T00:46:30.997536541Z, 2026-11-24T00:46:31.002309476Z
            started_unix_ns: Some(1_795_481_190_997_536_541),
            finished_unix_ns: Some(1_795_481_191_002_309_476),
            namespace: "default".to_string(),
            pod_name: "mypod-7d9f".to_string(),
            pod_uid: "0b7c1a2e-3f4d-4e5f-8a9b-1c2d3e4f5a6b".to_string(),
            // The Kubernetes source knows the owner.
            workload: None,
            sources: docker_only(),
            ..Default::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn failing_healthcheck_is_unhealthy() {
        // --health-cmd false --health-interval 1s --health-retries 1
        let got = container_info(&fixture("unhealthy"), &[]).unwrap();
        assert_eq!(got.health, v1::HealthStatus::Unhealthy as i32);
        assert_eq!(got.state, v1::ContainerState::Running as i32);
        assert_eq!(got.state_reason, "");
        assert_eq!(got.exit_code, None);
        assert_eq!(got.finished_unix_ns, None);
        assert_eq!(got.started_unix_ns, Some(1_795_481_190_476_949_440));
    }

    #[test]
    fn start_error_is_the_reason_without_an_exit() {
        // docker run --entrypoint /nonexistent: created, ExitCode 127, never finished.
        let got = container_info(&fixture("start_error"), &[]).unwrap();
        assert_eq!(got.state, v1::ContainerState::Created as i32);
        assert!(
            got.state_reason.contains("no such file or directory"),
            "{}",
            got.state_reason
        );
        assert_eq!(got.exit_code, None);
        assert_eq!(got.started_unix_ns, None);
    }

    #[test]
    fn running_container_has_no_stale_exit_code() {
        // Docker zeroes ExitCode on start but keeps FinishedAt.
        let mut inspect = fixture("compose_web");
        let state = inspect.state.as_mut().unwrap();
        state.finished_at = Some("2026-11-24T00:40:00Z".to_string());
        state.exit_code = Some(0);
        let got = container_info(&inspect, &[]).unwrap();
        assert_eq!(got.exit_code, None);
        assert!(got.finished_unix_ns.is_some());
    }

    #[test]
    fn odd_api_data_never_panics() {
        assert_eq!(
            container_info(&ContainerInspectResponse::default(), &[]),
            None
        );
        let short = ContainerInspectResponse {
            id: Some("de6755593984".to_string()),
            ..Default::default()
        };
        assert_eq!(container_info(&short, &[]), None);
        let mut inspect = fixture("oom_killed");
        inspect.restart_count = Some(-1);
        inspect.state.as_mut().unwrap().exit_code = Some(i64::MAX);
        inspect.state.as_mut().unwrap().finished_at = Some("garbage".to_string());
        let host = inspect.host_config.as_mut().unwrap();
        host.cpu_quota = Some(i64::MAX);
        host.memory = Some(-1);
        let got = container_info(&inspect, &["no-digest".to_string()]).unwrap();
        assert_eq!(got.restart_count, 0);
        assert_eq!(got.exit_code, None);
        assert_eq!(got.cpu_limit_millicores, None);
        assert_eq!(got.memory_limit_bytes, None);
        assert_eq!(got.image.unwrap().digest, "");
        // Only the id: a record with defaults, not a skip.
        let bare = ContainerInspectResponse {
            id: Some(
                "de6755593984f46b72b42fe92f1375334e71c6113b866cd381f7e4ed98f5cdf7".to_string(),
            ),
            ..Default::default()
        };
        let got = container_info(&bare, &[]).unwrap();
        assert_eq!(got.state, v1::ContainerState::Unspecified as i32);
        assert_eq!(
            got.workload.unwrap().kind,
            v1::WorkloadKind::Container as i32
        );
    }

    #[test]
    fn image_digest_prefers_the_references_repository() {
        let digests = [
            "other.example/mirror/app@sha256:1111".to_string(),
            "registry:5000/team/app@sha256:2222".to_string(),
        ];
        let image = image_of("registry:5000/team/app:v2", IMAGE_ID, &digests);
        assert_eq!(image.digest, "sha256:2222");
        let image = image_of("app:v2", IMAGE_ID, &digests);
        assert_eq!(image.digest, "sha256:1111", "any digest beats none");
        let image = image_of("nginx", IMAGE_ID, &["nginx@sha256:3333".to_string()]);
        assert_eq!(image.digest, "sha256:3333", "normalised repositories match");
        let image = image_of("app@sha256:4444", IMAGE_ID, &digests);
        assert_eq!(
            image.digest, "sha256:4444",
            "the reference's own digest wins"
        );
    }

    #[test]
    fn image_named_by_id_has_no_repository() {
        for reference in [IMAGE_ID, "faf8c4bc4b63", "sha256:faf8c4bc4b63"] {
            let image = image_of(reference, IMAGE_ID, &[]);
            assert_eq!(image.repository, "", "{reference}");
            assert_eq!(image.image_id, IMAGE_ID);
            assert_eq!(image.reference, reference);
        }
        // A name that happens to be hex but is not the id stays a name.
        assert_eq!(
            image_of("deadbeefcafe", IMAGE_ID, &[]).repository,
            "docker.io/library/deadbeefcafe"
        );
    }

    #[test]
    fn cpu_limit_from_quota_without_period_uses_the_kernel_default() {
        let host = HostConfig {
            cpu_quota: Some(25_000),
            ..Default::default()
        };
        assert_eq!(cpu_limit_millicores(&host), Some(250));
        assert_eq!(cpu_limit_millicores(&HostConfig::default()), None);
    }
}

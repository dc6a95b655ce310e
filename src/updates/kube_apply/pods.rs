//! What the pods of one revision did during a window, read from `Pod`
//! objects as the API server lists them, and turned into the health gate's
//! [`Window`].
//!
//! Only the updated container of each pod is judged (a sidecar that
//! crashes as often before as after is not the update's doing); the
//! pod's `Ready` condition counts the ready replicas.
//!
//! | gate input | from |
//! |---|---|
//! | restarts | the container's `restartCount`: its growth since first seen (BEFORE), or all of it for pods created by the update (AFTER) |
//! | OOM kills | each termination seen (`lastState.terminated` or `state.terminated`, told apart by container id and `finishedAt`) with reason `OOMKilled` |
//! | non-zero exits | each termination seen with an exit code other than 0, in order |
//! | health | `Unhealthy`: waiting in `CrashLoopBackOff`, `ImagePullBackOff`, `ErrImagePull` and other reasons that do not pass by themselves, terminated with a non-zero code, or not ready any more after having been ready under a readiness probe; `Starting`: not running yet, or running but not yet ready under a readiness probe; `Healthy`: ready under a readiness probe; `None`: running without a readiness probe |
//! | replicas ready | pods (not being deleted) whose `Ready` condition is `True` |
//!
//! Terminations that already happened when an old pod is first seen are
//! history, not part of the BEFORE window; a pod of the new revision is
//! new, so everything it shows happened after the change. CPU and memory
//! are not read here (the API server has no usage without metrics-server):
//! [`super::usage`] asks the collector for the containers of
//! [`PodsObserver::containers`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod};

use super::usage::WatchedContainer;
use crate::updates::gate::{HealthStatus, Window};

/// Waiting reasons that do not pass without a change: the container is
/// broken, not merely starting.
pub const FAILING_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreStartHookError",
    "PostStartHookError",
];

/// What was seen of one pod.
#[derive(Debug, Clone)]
struct Track {
    name: String,
    node: Option<String>,
    /// `restartCount` when first seen (0 for a fresh revision).
    base_restarts: u64,
    restarts: u64,
    /// Terminations already seen, by container id, finish time and code.
    terminations: BTreeSet<String>,
    ever_ready: bool,
    /// In the last list.
    present: bool,
    /// Being deleted (`metadata.deletionTimestamp`).
    terminating: bool,
    ready: bool,
    health: HealthStatus,
    /// Why it is unhealthy or not running, in words.
    problem: Option<String>,
    container_ids: Vec<String>,
}

/// What the pods of one revision did since the observer was made.
#[derive(Debug, Clone)]
pub struct PodsObserver {
    container: String,
    fresh: bool,
    pods: BTreeMap<String, Track>,
    oom_kills: u64,
    nonzero_exit_codes: Vec<i64>,
    unhealthy_seen: bool,
    /// Problems seen, each once, in order (`web-7f9c-x2k7p: CrashLoopBackOff: back-off 40s ...`).
    problems: Vec<String>,
    lists: u32,
}

impl PodsObserver {
    /// Watches `container` in the pods handed to [`PodsObserver::observe`].
    /// `fresh`: the pods were created by the change being judged, so all
    /// they show counts; otherwise what a pod shows when first seen is its
    /// history and only what happens afterwards counts.
    pub fn new(container: &str, fresh: bool) -> PodsObserver {
        PodsObserver {
            container: container.to_string(),
            fresh,
            pods: BTreeMap::new(),
            oom_kills: 0,
            nonzero_exit_codes: Vec::new(),
            unhealthy_seen: false,
            problems: Vec::new(),
            lists: 0,
        }
    }

    /// Takes one list of the revision's pods (all of them, as listed now).
    pub fn observe(&mut self, pods: &[Pod]) {
        self.lists += 1;
        for track in self.pods.values_mut() {
            track.present = false;
        }
        for pod in pods {
            self.observe_pod(pod);
        }
    }

    fn observe_pod(&mut self, pod: &Pod) {
        let meta = &pod.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let key = meta.uid.clone().unwrap_or_else(|| name.clone());
        let spec_container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == self.container));
        let has_readiness_probe = spec_container.is_some_and(|c| c.readiness_probe.is_some());
        let status = pod.status.as_ref();
        let container_status = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|all| all.iter().find(|c| c.name == self.container));
        let pod_ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let unscheduled = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            })
            .map(|c| {
                format!(
                    "not scheduled: {}: {}",
                    c.reason.as_deref().unwrap_or("PodScheduled is False"),
                    c.message.as_deref().unwrap_or("no message")
                )
            });
        let restart_count =
            container_status.map_or(0, |c| u64::try_from(c.restart_count).unwrap_or(0));
        let first_sight = !self.pods.contains_key(&key);
        let fresh = self.fresh;
        let track = self.pods.entry(key).or_insert_with(|| Track {
            name: name.clone(),
            node: None,
            base_restarts: if fresh { 0 } else { restart_count },
            restarts: restart_count,
            terminations: BTreeSet::new(),
            ever_ready: false,
            present: true,
            terminating: false,
            ready: false,
            health: HealthStatus::Starting,
            problem: None,
            container_ids: Vec::new(),
        });
        track.present = true;
        track.node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        track.terminating = meta.deletion_timestamp.is_some();
        // A restart count never goes down; a lower one is a stale read.
        track.restarts = track.restarts.max(restart_count);
        track.ready = pod_ready && !track.terminating;
        if let Some(id) = container_status
            .and_then(|c| c.container_id.as_deref())
            .map(strip_runtime)
            .filter(|id| !id.is_empty())
            && !track.container_ids.iter().any(|known| known == id)
        {
            track.container_ids.push(id.to_string());
        }

        // Terminations: the last one and the current one.
        let mut new_terminations = Vec::new();
        if let Some(cs) = container_status {
            for state in [cs.last_state.as_ref(), cs.state.as_ref()]
                .into_iter()
                .flatten()
            {
                if let Some(t) = &state.terminated {
                    let finished = t
                        .finished_at
                        .as_ref()
                        .map_or(String::new(), |f| f.0.as_millisecond().to_string());
                    let id = t.container_id.as_deref().unwrap_or_default();
                    let key = format!("{id}/{finished}/{}", t.exit_code);
                    if track.terminations.insert(key) && (fresh || !first_sight) {
                        new_terminations.push((t.exit_code, t.reason.clone().unwrap_or_default()));
                    }
                }
            }
        }
        let (health, problem) =
            container_health(container_status, has_readiness_probe, track.ever_ready);
        let problem = problem.or(unscheduled);
        if health == HealthStatus::Healthy {
            track.ever_ready = true;
        }
        track.health = if track.terminating {
            track.health
        } else {
            health
        };
        track.problem = problem.clone();
        let pod_name = track.name.clone();
        let counted_health = !track.terminating;

        for (code, reason) in new_terminations {
            if reason == "OOMKilled" {
                self.oom_kills += 1;
            }
            if code != 0 {
                self.nonzero_exit_codes.push(i64::from(code));
            }
            let what = if reason.is_empty() {
                format!("{pod_name}: {} exited with code {code}", self.container)
            } else {
                format!(
                    "{pod_name}: {} terminated: {reason} (exit code {code})",
                    self.container
                )
            };
            self.note(what);
        }
        if counted_health && health == HealthStatus::Unhealthy {
            self.unhealthy_seen = true;
        }
        if let Some(p) = problem {
            self.note(format!("{pod_name}: {p}"));
        }
    }

    fn note(&mut self, problem: String) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// How many lists were observed.
    pub fn lists(&self) -> u32 {
        self.lists
    }

    /// The gate's window: `image` ran for `duration_ms` in pods of which
    /// `replicas_desired` should run. CPU and memory are left unmeasured
    /// (see [`super::usage`]).
    pub fn window(&self, image: &str, duration_ms: u64, replicas_desired: u32) -> Window {
        let live: Vec<&Track> = self
            .pods
            .values()
            .filter(|t| t.present && !t.terminating)
            .collect();
        let health_end = if live.is_empty() {
            if self.fresh {
                HealthStatus::Starting
            } else {
                HealthStatus::None
            }
        } else {
            live.iter()
                .map(|t| t.health)
                .max_by_key(|h| health_rank(*h))
                .unwrap_or(HealthStatus::None)
        };
        Window {
            image: image.to_string(),
            duration_ms,
            replicas_desired,
            replicas_ready: u32::try_from(live.iter().filter(|t| t.ready).count())
                .unwrap_or(u32::MAX),
            restarts: self
                .pods
                .values()
                .map(|t| t.restarts.saturating_sub(t.base_restarts))
                .sum(),
            oom_kills: self.oom_kills,
            nonzero_exit_codes: self.nonzero_exit_codes.clone(),
            health_end,
            unhealthy_seen: self.unhealthy_seen || health_end == HealthStatus::Unhealthy,
            cpu_cores_per_replica: None,
            memory_bytes_per_replica: None,
            resource_samples: 0,
        }
    }

    /// Names of the pods seen, in name order.
    pub fn pod_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.pods.values().map(|t| t.name.clone()).collect();
        names.sort();
        names
    }

    /// Runtime ids of the watched container in the pods seen (without the
    /// `containerd://` prefix), as the agent reports them.
    pub fn container_ids(&self) -> Vec<String> {
        self.pods
            .values()
            .flat_map(|t| t.container_ids.iter().cloned())
            .collect()
    }

    /// The watched container of every pod seen, each runtime id once (a
    /// restarted container has a new one), with its pod and node: what the
    /// collector is asked about for CPU and memory. In pod name order.
    pub fn containers(&self) -> Vec<WatchedContainer> {
        let mut all: Vec<WatchedContainer> = self
            .pods
            .values()
            .flat_map(|t| {
                t.container_ids.iter().map(|id| WatchedContainer {
                    id: id.clone(),
                    pod: t.name.clone(),
                    node: t.node.clone(),
                })
            })
            .collect();
        all.sort_by(|a, b| a.pod.cmp(&b.pod));
        all
    }

    /// Nodes the pods ran on, each once.
    pub fn nodes(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.pods.values().filter_map(|t| t.node.clone()).collect();
        set.into_iter().collect()
    }

    /// What went wrong in the pods, each once, in the order seen.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

/// Worst last: the rank the window's health is the maximum of.
fn health_rank(h: HealthStatus) -> u8 {
    match h {
        HealthStatus::Healthy => 0,
        HealthStatus::None => 1,
        HealthStatus::Starting => 2,
        HealthStatus::Unhealthy => 3,
    }
}

/// `containerd://abc` → `abc` (also `docker://`, `cri-o://` and any other
/// scheme), trimmed: the id as the agent's inventory reports it
/// (`split_container_id` in the agent), so the collector knows it by it.
fn strip_runtime(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest).trim()
}

/// The health of one container from its status, and why it is unhealthy
/// or not running when it is not fine.
fn container_health(
    status: Option<&ContainerStatus>,
    has_readiness_probe: bool,
    ever_ready: bool,
) -> (HealthStatus, Option<String>) {
    let Some(cs) = status else {
        return (HealthStatus::Starting, None);
    };
    match cs.state.as_ref() {
        Some(ContainerState {
            waiting: Some(w), ..
        }) => {
            let reason = w.reason.clone().unwrap_or_default();
            if FAILING_WAITING_REASONS.contains(&reason.as_str()) {
                let message = w
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                (
                    HealthStatus::Unhealthy,
                    Some(format!("{} waiting: {reason}{message}", cs.name)),
                )
            } else {
                (HealthStatus::Starting, None)
            }
        }
        Some(ContainerState {
            terminated: Some(t),
            ..
        }) if t.exit_code != 0 => (HealthStatus::Unhealthy, None),
        Some(ContainerState {
            running: Some(_), ..
        }) => {
            if !has_readiness_probe {
                (HealthStatus::None, None)
            } else if cs.ready {
                (HealthStatus::Healthy, None)
            } else if ever_ready {
                (
                    HealthStatus::Unhealthy,
                    Some(format!(
                        "{} running but not ready any more (its readiness probe fails)",
                        cs.name
                    )),
                )
            } else {
                (HealthStatus::Starting, None)
            }
        }
        _ => (HealthStatus::Starting, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        match serde_json::from_value(json) {
            Ok(p) => p,
            Err(e) => panic!("pod fixture: {e}"),
        }
    }

    /// A pod of `web` whose `app` container has the given status.
    fn web(name: &str, ready: bool, app_status: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "shop"},
            "spec": {"nodeName": "worker-1", "containers": [
                {"name": "app", "image": "web:2", "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}},
                {"name": "log-shipper", "image": "fluent-bit:3"}
            ]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [app_status,
                    {"name": "log-shipper", "image": "fluent-bit:3", "imageID": "", "ready": true, "restartCount": 9,
                     "state": {"running": {"startedAt": "2025-05-01T10:00:00Z"}}}]
            }
        }))
    }

    fn running(restarts: i32, ready: bool) -> serde_json::Value {
        serde_json::json!({"name": "app", "image": "web:2", "imageID": "", "ready": ready,
            "restartCount": restarts, "containerID": "containerd://aaa",
            "state": {"running": {"startedAt": "2025-05-01T10:00:00Z"}}})
    }

    fn oom_crashloop(restarts: i32) -> serde_json::Value {
        serde_json::json!({"name": "app", "image": "web:2", "imageID": "", "ready": false,
            "restartCount": restarts, "containerID": "containerd://bbb",
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                "containerID": "containerd://bbb",
                "startedAt": "2025-05-01T10:00:05Z", "finishedAt": format!("2025-05-01T10:00:{:02}Z", 10 + restarts)}},
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                "message": "back-off 20s restarting failed container=app pod=web-1"}}})
    }

    #[test]
    fn ready_pods_with_a_probe_are_healthy_and_sidecar_restarts_do_not_count() {
        let mut o = PodsObserver::new("app", true);
        o.observe(&[
            web("web-1", true, running(0, true)),
            web("web-2", true, running(0, true)),
        ]);
        let w = o.window("web:2", 30_000, 2);
        assert_eq!(w.health_end, HealthStatus::Healthy);
        assert_eq!((w.replicas_ready, w.replicas_desired), (2, 2));
        assert_eq!(w.restarts, 0);
        assert!(!w.unhealthy_seen);
        assert_eq!(
            o.container_ids(),
            vec!["aaa".to_string(), "aaa".to_string()]
        );
        assert_eq!(o.nodes(), vec!["worker-1".to_string()]);
        assert_eq!(
            o.containers(),
            vec![
                WatchedContainer {
                    id: "aaa".into(),
                    pod: "web-1".into(),
                    node: Some("worker-1".into())
                },
                WatchedContainer {
                    id: "aaa".into(),
                    pod: "web-2".into(),
                    node: Some("worker-1".into())
                }
            ]
        );
    }

    #[test]
    fn runtime_prefixes_are_stripped_as_the_agent_strips_them() {
        assert_eq!(strip_runtime("containerd://abc"), "abc");
        assert_eq!(strip_runtime("docker://abc"), "abc");
        assert_eq!(strip_runtime("cri-o://abc "), "abc");
        assert_eq!(strip_runtime("abc"), "abc");
        assert_eq!(strip_runtime("containerd://"), "");
    }

    #[test]
    fn a_crash_looping_oom_killed_new_pod_is_unhealthy_with_its_restarts_and_exit() {
        let mut o = PodsObserver::new("app", true);
        o.observe(&[web("web-1", false, running(0, false))]);
        o.observe(&[web("web-1", false, oom_crashloop(2))]);
        o.observe(&[web("web-1", false, oom_crashloop(2))]);
        let w = o.window("web:2", 10_000, 3);
        assert_eq!(w.restarts, 2);
        assert_eq!(w.oom_kills, 1);
        assert_eq!(w.nonzero_exit_codes, vec![137]);
        assert_eq!(w.health_end, HealthStatus::Unhealthy);
        assert_eq!(w.replicas_ready, 0);
        assert!(
            o.problems().iter().any(|p| p.contains("CrashLoopBackOff")),
            "{:?}",
            o.problems()
        );
        assert!(
            o.problems()
                .iter()
                .any(|p| p.contains("OOMKilled (exit code 137)")),
            "{:?}",
            o.problems()
        );
    }

    #[test]
    fn an_old_pods_history_is_not_part_of_the_before_window() {
        let mut o = PodsObserver::new("app", false);
        // Restarted 5 times and OOM-killed once before the window began.
        o.observe(&[web("web-1", false, oom_crashloop(5))]);
        let w = o.window("web:1", 10_000, 1);
        assert_eq!((w.restarts, w.oom_kills), (0, 0));
        assert!(w.nonzero_exit_codes.is_empty());
        // One more crash during the window counts.
        o.observe(&[web("web-1", false, oom_crashloop(6))]);
        let w = o.window("web:1", 10_000, 1);
        assert_eq!((w.restarts, w.oom_kills), (1, 1));
        assert_eq!(w.nonzero_exit_codes, vec![137]);
    }

    #[test]
    fn not_ready_after_ready_is_unhealthy_and_never_ready_is_starting() {
        let mut o = PodsObserver::new("app", true);
        o.observe(&[web("web-1", false, running(0, false))]);
        assert_eq!(o.window("web:2", 1, 1).health_end, HealthStatus::Starting);
        o.observe(&[web("web-1", true, running(0, true))]);
        o.observe(&[web("web-1", false, running(0, false))]);
        let w = o.window("web:2", 1, 1);
        assert_eq!(w.health_end, HealthStatus::Unhealthy);
        assert!(w.unhealthy_seen);
    }

    #[test]
    fn a_pod_without_status_is_starting_and_no_pods_at_all_too() {
        let mut o = PodsObserver::new("app", true);
        assert_eq!(o.window("web:2", 1, 3).health_end, HealthStatus::Starting);
        o.observe(&[pod(serde_json::json!({
            "metadata": {"name": "web-1", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "web:2"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        }))]);
        let w = o.window("web:2", 1, 3);
        assert_eq!(w.health_end, HealthStatus::Starting);
        assert_eq!(w.replicas_ready, 0);
    }

    #[test]
    fn an_image_pull_back_off_is_unhealthy_and_names_the_reason() {
        let mut o = PodsObserver::new("app", true);
        o.observe(&[web("web-1", false, serde_json::json!({"name": "app", "image": "web:9", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"web:9\""}}}))]);
        let w = o.window("web:9", 1, 1);
        assert_eq!(w.health_end, HealthStatus::Unhealthy);
        assert_eq!(
            o.problems(),
            &[
                "web-1: app waiting: ImagePullBackOff: Back-off pulling image \"web:9\""
                    .to_string()
            ]
        );
    }
}

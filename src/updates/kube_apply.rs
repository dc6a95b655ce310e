//! Applying an image update to a Kubernetes workload (Deployment,
//! StatefulSet, DaemonSet) through its pod template, watching the rollout,
//! proven by the health gate, with automatic rollback: the Kubernetes
//! counterpart of [`super::docker_apply`].
//!
//! [`apply`] does, in order:
//! 1. Checks before touching anything: the workload exists, has the
//!    container, rolls by itself (a paused Deployment or an `OnDelete`
//!    StatefulSet/DaemonSet does not), is not in the middle of a rollout
//!    (its pods are all of one revision, so there is a clean before), and
//!    does not already run the image.
//! 2. BEFORE window: lists the pods of the current revision every
//!    [`KubeApplyOptions::poll_interval`] for
//!    [`KubeApplyOptions::before_window`] (see [`pods`] for what counts).
//! 3. Patches the pod template: a strategic merge patch that sets only that
//!    container's image, and notes the old image (`upid.io/previous-image`)
//!    and why (`kubernetes.io/change-cause`) on the workload ([`patch`]).
//! 4. Watches the rollout as `kubectl rollout status` does ([`rollout`]),
//!    for at most [`KubeApplyOptions::rollout_timeout`], following the pods
//!    of the new revision all along. It ends early when those pods are
//!    plainly failing: crash-looping, unable to pull, OOM-killed or exiting
//!    non-zero when the old ones did none of that (the gate's own checks,
//!    so waiting longer could not change the verdict).
//! 5. AFTER window: once the rollout completed, watches the new pods for
//!    [`KubeApplyOptions::gate_window`] more (ending early the same way).
//!    The window runs from the patch, so everything the new pods did
//!    counts.
//! 6. Runs the gate ([`super::gate::verdict`]) on the two windows, and:
//!    - rollout failed (progress deadline exceeded, or not complete within
//!      the timeout) or gate `failed`: rolls back by patching the previous
//!      image back, and watches that rollout to completion;
//!    - `degraded`: keeps the update (the previous image stays in the
//!      `upid.io/previous-image` annotation for a rollback by hand);
//!      [`KubeApplyOptions::rollback_on_degraded`] rolls back instead;
//!    - `healthy`: keeps it.
//!
//! Every step is a timestamped [`UpdateEvent`] for the workload
//! (`NAMESPACE/KIND/NAME`). When a request fails after the template was
//! patched, the old image is patched back; when even that fails, the error
//! gives the `kubectl` command that finishes the job.
//!
//! CPU and memory per replica come from the collector ([`usage`]): the
//! agents on the nodes sample every container, and the collector serves
//! each one's series; the old revision's containers are asked for over
//! the BEFORE window, the new revision's over the gate window (from the
//! rollout's completion). When the collector has no samples for them (no
//! agent on those nodes) or too few, the gate skips those two checks and
//! their evidence says why, naming the containers and nodes.

pub mod patch;
pub mod pods;
pub mod rollout;
pub mod usage;
pub mod workload;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::event::{EventLog, UpdateEvent, UpdateEventKind};
use super::gate::{
    self, CheckKind, GateVerdict, HealthStatus, Outcome, Thresholds, Verdict, Window,
};
use pods::PodsObserver;
use rollout::RolloutStatus;
use usage::{DEFAULT_MIN_RESOURCE_SAMPLES, Usage, UsageSource};
use workload::{Object, RequestFailure, Workloads};

/// Default [`KubeApplyOptions::before_window`]: 10 s.
pub const DEFAULT_BEFORE_WINDOW: Duration = Duration::from_secs(10);
/// Default [`KubeApplyOptions::rollout_timeout`]: 5 min.
pub const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`KubeApplyOptions::gate_window`]: 30 s.
pub const DEFAULT_GATE_WINDOW: Duration = Duration::from_secs(30);
/// Default [`KubeApplyOptions::poll_interval`]: 1 s (each poll is one GET
/// of the workload and one or two lists).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long one request may go unanswered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The kinds of workload whose pod template can be updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
}

impl WorkloadKind {
    /// The kind as written before `/` in `KIND/NAME`, as kubectl takes it:
    /// `deployment`, `deployments`, `deploy`, `deployment.apps`,
    /// `statefulset(s)`, `sts`, `daemonset(s)`, `ds`, in any case.
    pub fn parse(text: &str) -> Option<WorkloadKind> {
        let lower = text.trim().to_ascii_lowercase();
        let bare = lower
            .strip_suffix(".apps")
            .or_else(|| lower.strip_suffix(".v1.apps"))
            .unwrap_or(&lower);
        match bare {
            "deployment" | "deployments" | "deploy" => Some(WorkloadKind::Deployment),
            "statefulset" | "statefulsets" | "sts" => Some(WorkloadKind::StatefulSet),
            "daemonset" | "daemonsets" | "ds" => Some(WorkloadKind::DaemonSet),
            _ => None,
        }
    }

    /// `deployment`, `statefulset`, `daemonset`: as in `deployment/web`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
        }
    }

    /// `Deployment`, `StatefulSet`, `DaemonSet`: the API kind, as the
    /// collector names workload kinds.
    pub fn kind(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }

    /// The resource in API paths (`deployments`).
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
        }
    }
}

/// Which workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkloadRef {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Accepted spellings of `KIND` in `KIND/NAME`, for messages.
pub const KINDS_ACCEPTED: &str = "deployment (deploy), statefulset (sts), daemonset (ds)";

impl WorkloadRef {
    /// Reads `KIND/NAME` (`deployment/web`, `sts/db`). `Ok(None)` when
    /// `target` is not of that form: a Docker container name (which cannot
    /// hold `/`; a leading `/`, as Docker prints names, is not a kind).
    /// An unknown kind or an empty name is an error saying what works.
    pub fn parse(target: &str, namespace: &str) -> Result<Option<WorkloadRef>, String> {
        let Some((kind, name)) = target.split_once('/') else {
            return Ok(None);
        };
        if kind.is_empty() {
            return Ok(None);
        }
        let Some(kind) = WorkloadKind::parse(kind) else {
            return Err(format!(
                "`{target}`: `{kind}` is not a workload kind upid can update; use {KINDS_ACCEPTED} (deployment/NAME), or a Docker container name"
            ));
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!(
                "`{target}`: expected KIND/NAME with one `/`, such as deployment/web"
            ));
        }
        Ok(Some(WorkloadRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }))
    }

    /// `shop/deployment/web`: how its update events are recorded and asked
    /// for (`upid updates events shop/deployment/web`).
    pub fn target(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind.as_str(), self.name)
    }
}

impl std::fmt::Display for WorkloadRef {
    /// `deployment/web`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// Where the Kubernetes API is and who we are: a kube client and the
/// server it talks to (for messages).
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: kube::Client,
    /// The API server's URL.
    pub server: String,
    /// The namespace of the kubeconfig context (`default` without one),
    /// for a workload given without `-n`.
    pub default_namespace: String,
}

impl Cluster {
    /// Connects as kubectl would: `kubeconfig` (a file) or `$KUBECONFIG`
    /// or `~/.kube/config`, with `context` or the current context; without
    /// either flag, falls back to the in-cluster service account
    /// ([`kube::Config::infer`]).
    pub async fn connect(
        kubeconfig: Option<&std::path::Path>,
        context: Option<&str>,
    ) -> Result<Cluster, KubeApplyError> {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let options = KubeConfigOptions {
            context: context.map(str::to_string),
            ..KubeConfigOptions::default()
        };
        let config = match (kubeconfig, context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path).map_err(|e| KubeApplyError::Config {
                    detail: format!("reading the kubeconfig {}: {e}", path.display()),
                })?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| KubeApplyError::Config {
                        detail: format!(
                            "the kubeconfig {}{}: {e}",
                            path.display(),
                            context.map(|c| format!(", context {c:?}")).unwrap_or_default()
                        ),
                    })?
            }
            (None, Some(c)) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| KubeApplyError::Config {
                    detail: format!("context {c:?} of the kubeconfig ($KUBECONFIG or ~/.kube/config): {e}"),
                })?,
            (None, None) => kube::Config::infer().await.map_err(|e| KubeApplyError::Config {
                detail: format!(
                    "neither a kubeconfig ($KUBECONFIG or ~/.kube/config) nor an in-cluster service account was found ({e}); give --kubeconfig FILE"
                ),
            })?,
        };
        Cluster::from_config(config)
    }

    /// A client for `config` (a read timeout of [`REQUEST_TIMEOUT`] is
    /// added when it has none, so a silent API server is an error, not a
    /// hang).
    pub fn from_config(mut config: kube::Config) -> Result<Cluster, KubeApplyError> {
        if config.read_timeout.is_none() {
            config.read_timeout = Some(REQUEST_TIMEOUT);
            config.reset_reader_on_write = true;
        }
        let server = config.cluster_url.to_string();
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| KubeApplyError::Config {
            detail: format!("a client for {server}: {e}"),
        })?;
        Ok(Cluster {
            client,
            server,
            default_namespace,
        })
    }
}

/// How to apply an update. Every field has a documented default.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeApplyOptions {
    /// How long the current pods are watched before the change (default
    /// [`DEFAULT_BEFORE_WINDOW`]).
    pub before_window: Duration,
    /// Longest wait for a rollout (the update's, then a rollback's) to
    /// complete (default [`DEFAULT_ROLLOUT_TIMEOUT`]).
    pub rollout_timeout: Duration,
    /// How long the new pods are watched once the rollout completed
    /// (default [`DEFAULT_GATE_WINDOW`]).
    pub gate_window: Duration,
    /// Time between two reads (default [`DEFAULT_POLL_INTERVAL`]).
    pub poll_interval: Duration,
    /// Roll back a `degraded` update too (default false).
    pub rollback_on_degraded: bool,
    /// `kubernetes.io/change-cause` of the update; `None`: `upid updates
    /// apply: CONTAINER FROM -> TO`.
    pub change_cause: Option<String>,
    /// The gate's thresholds.
    pub thresholds: Thresholds,
    /// Fewest collector samples (all containers of a window together) for
    /// CPU and memory to count as measured (default
    /// [`DEFAULT_MIN_RESOURCE_SAMPLES`]).
    pub min_resource_samples: u32,
}

impl Default for KubeApplyOptions {
    fn default() -> Self {
        KubeApplyOptions {
            before_window: DEFAULT_BEFORE_WINDOW,
            rollout_timeout: DEFAULT_ROLLOUT_TIMEOUT,
            gate_window: DEFAULT_GATE_WINDOW,
            poll_interval: DEFAULT_POLL_INTERVAL,
            rollback_on_degraded: false,
            change_cause: None,
            thresholds: Thresholds::default(),
            min_resource_samples: DEFAULT_MIN_RESOURCE_SAMPLES,
        }
    }
}

/// The workload as found before the update.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspected {
    /// The workload.
    pub workload: WorkloadRef,
    /// The container to update.
    pub container: String,
    /// Its image in the pod template, as written there.
    pub image: String,
    /// Every container of the pod template: name and image.
    pub containers: Vec<(String, String)>,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutOutcome {
    /// It completed.
    pub completed: bool,
    /// kubectl's words for where it ended (`deployment "web" successfully
    /// rolled out`, `... exceeded its progress deadline`, or what it still
    /// waited for at the timeout), or why it was not waited for.
    pub message: String,
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubeApplyReport {
    /// The workload.
    pub workload: WorkloadRef,
    /// The container updated.
    pub container: String,
    /// Its image before, as the template wrote it.
    pub from_image: String,
    /// The image it was updated to.
    pub to_image: String,
    /// The revision before (`revision 7`).
    pub from_revision: String,
    /// The revision the update made (`revision 8`).
    pub to_revision: String,
    /// How the update's rollout ended.
    pub rollout: RolloutOutcome,
    /// Pods of the old revision watched in the BEFORE window.
    pub old_pods: Vec<String>,
    /// Pods of the new revision watched in the AFTER window.
    pub new_pods: Vec<String>,
    /// Runtime ids of the container in the old pods.
    pub old_container_ids: Vec<String>,
    /// ...and in the new pods.
    pub new_container_ids: Vec<String>,
    /// Nodes the watched pods ran on.
    pub nodes: Vec<String>,
    /// The BEFORE window.
    pub before: Window,
    /// The AFTER window.
    pub after: Window,
    /// What the collector had for the old containers in the BEFORE window.
    pub before_usage: Usage,
    /// ...and for the new containers in the gate window.
    pub after_usage: Usage,
    /// The gate's verdict with its evidence.
    pub gate: GateVerdict,
    /// A rollback was started (the rollout failed, the gate failed, or it
    /// was degraded with `rollback_on_degraded`).
    pub rollback_started: bool,
    /// The rollback completed: the old image runs again on every replica.
    pub rolled_back: bool,
    /// Every step, in order.
    pub events: Vec<UpdateEvent>,
}

/// Why an update could not be applied. Each message names the request that
/// failed, says what state the workload is in, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KubeApplyError {
    /// No usable configuration.
    #[error("no Kubernetes API to talk to: {detail}; nothing was changed")]
    Config {
        /// What was tried and what failed.
        detail: String,
    },
    /// The workload does not exist.
    #[error(
        "{workload} not found in namespace {namespace}: {request} answered {detail}; check the name and -n/--namespace (kubectl get {resource} -n {namespace}); nothing was changed"
    )]
    NotFound {
        /// `deployment/web`.
        workload: String,
        /// The namespace looked in.
        namespace: String,
        /// `deployments`.
        resource: String,
        /// The request.
        request: String,
        /// What came back.
        detail: String,
    },
    /// The API server said 403.
    #[error(
        "the Kubernetes API refused to {}: {} answered {}; {}",
        .0.action, .0.request, .0.detail, .0.state
    )]
    Forbidden(Box<RequestError>),
    /// Any other failed request or unreadable answer.
    #[error("the Kubernetes API failed to {}: {}: {}; {}", .0.action, .0.request, .0.detail, .0.state)]
    Api(Box<RequestError>),
    /// No container of that name in the pod template.
    #[error(
        "{workload} in namespace {namespace} has no container {container:?} in its pod template (it has {containers}); nothing was changed"
    )]
    ContainerNotFound {
        /// The workload.
        workload: String,
        /// Its namespace.
        namespace: String,
        /// The container asked for.
        container: String,
        /// The containers it has.
        containers: String,
    },
    /// Several containers and none named.
    #[error(
        "{workload} in namespace {namespace} has several containers ({containers}): say which with --container NAME; nothing was changed"
    )]
    ContainerRequired {
        /// The workload.
        workload: String,
        /// Its namespace.
        namespace: String,
        /// The containers it has.
        containers: String,
    },
    /// A rollout would not run by itself.
    #[error(
        "{workload} in namespace {namespace} cannot be updated with the health gate: {reason}; nothing was changed"
    )]
    CannotRoll {
        /// The workload.
        workload: String,
        /// Its namespace.
        namespace: String,
        /// Why.
        reason: String,
    },
    /// A rollout is under way already.
    #[error(
        "{workload} in namespace {namespace} is in the middle of a rollout ({status}): there is no settled before to judge an update against; wait for it (kubectl rollout status {workload} -n {namespace}) and retry; nothing was changed"
    )]
    MidRollout {
        /// The workload.
        workload: String,
        /// Its namespace.
        namespace: String,
        /// kubectl's words.
        status: String,
    },
    /// The template already names that image.
    #[error("{workload} container {container} already runs {image}; nothing to do")]
    AlreadyUpToDate {
        /// The workload.
        workload: String,
        /// The container.
        container: String,
        /// The image.
        image: String,
    },
    /// The rollback could not be patched.
    #[error("failed to {}: {}; {}", .0.action, .0.detail, .0.state)]
    RollbackFailed(Box<RequestError>),
}

/// A request that failed once something may have been done: what was being
/// done, the request, what came back, the state the workload is left in,
/// and the events so far.
#[derive(Debug, Clone)]
pub struct RequestError {
    /// What was being done (`patch the pod template of deployment/web`).
    pub action: String,
    /// The request (`PATCH https://…/apis/apps/v1/namespaces/shop/deployments/web`).
    pub request: String,
    /// What came back, or why it could not be read (for a 403, with the
    /// permissions upid needs).
    pub detail: String,
    /// The state the workload is left in, and what to do.
    pub state: String,
    /// Events so far.
    pub events: Vec<UpdateEvent>,
}

impl KubeApplyError {
    /// The events recorded before the error (empty when it happened before
    /// anything was done).
    pub fn events(&self) -> &[UpdateEvent] {
        match self {
            KubeApplyError::Forbidden(e)
            | KubeApplyError::Api(e)
            | KubeApplyError::RollbackFailed(e) => &e.events,
            _ => &[],
        }
    }
}

/// The error for a failed request: 404 of the workload itself, 403, or
/// any other.
fn request_error(
    workload: &WorkloadRef,
    action: &str,
    failure: RequestFailure,
    state: &str,
    events: Vec<UpdateEvent>,
) -> KubeApplyError {
    match failure.code {
        Some(404) if events.is_empty() => KubeApplyError::NotFound {
            workload: workload.to_string(),
            namespace: workload.namespace.clone(),
            resource: workload.kind.resource().to_string(),
            request: failure.request,
            detail: failure.detail,
        },
        Some(403) => KubeApplyError::Forbidden(Box::new(RequestError {
            action: action.to_string(),
            request: failure.request,
            detail: format!(
                "{}; upid needs get and patch on {}.apps and list on pods (and replicasets for a Deployment) in namespace {}",
                failure.detail,
                workload.kind.resource(),
                workload.namespace
            ),
            state: state.to_string(),
            events,
        })),
        _ => KubeApplyError::Api(Box::new(RequestError {
            action: action.to_string(),
            request: failure.request,
            detail: failure.detail,
            state: state.to_string(),
            events,
        })),
    }
}

const NOTHING_CHANGED: &str = "nothing was changed";

fn names(containers: &[(String, String)]) -> String {
    containers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the workload and finds the container to update: `container`, or
/// the only one. Changes nothing.
pub async fn inspect(
    cluster: &Cluster,
    workload: &WorkloadRef,
    container: Option<&str>,
) -> Result<Inspected, KubeApplyError> {
    let api = Workloads::new(cluster, workload);
    let object = api.get().await.map_err(|f| {
        request_error(
            workload,
            &format!("read {workload}"),
            f,
            NOTHING_CHANGED,
            Vec::new(),
        )
    })?;
    inspected(workload, &object, container)
}

fn inspected(
    workload: &WorkloadRef,
    object: &Object,
    container: Option<&str>,
) -> Result<Inspected, KubeApplyError> {
    let containers: Vec<(String, String)> = object
        .containers()
        .iter()
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect();
    let chosen = match container {
        Some(name) => containers
            .iter()
            .find(|(n, _)| n == name)
            .cloned()
            .ok_or_else(|| KubeApplyError::ContainerNotFound {
                workload: workload.to_string(),
                namespace: workload.namespace.clone(),
                container: name.to_string(),
                containers: if containers.is_empty() {
                    "none".to_string()
                } else {
                    names(&containers)
                },
            })?,
        None => match containers.as_slice() {
            [only] => only.clone(),
            [] => {
                return Err(KubeApplyError::ContainerNotFound {
                    workload: workload.to_string(),
                    namespace: workload.namespace.clone(),
                    container: String::new(),
                    containers: "none".to_string(),
                });
            }
            _ => {
                return Err(KubeApplyError::ContainerRequired {
                    workload: workload.to_string(),
                    namespace: workload.namespace.clone(),
                    containers: names(&containers),
                });
            }
        },
    };
    Ok(Inspected {
        workload: workload.clone(),
        container: chosen.0,
        image: chosen.1,
        containers,
    })
}

/// `... over 10 s: 0 restarts, 0 OOM kills, 0 non-zero exits, health
/// healthy, 3/3 ready (pods a, b, c)`.
fn describe_window(w: &Window, pods: &[String]) -> String {
    format!(
        "{} over {}: {} restarts, {} OOM kills, {} non-zero exits, health {}{}, {}/{} ready ({} {})",
        w.image,
        gate::span_words(w.duration_ms),
        w.restarts,
        w.oom_kills,
        w.nonzero_exit_codes.len(),
        w.health_end,
        if w.unhealthy_seen && w.health_end != HealthStatus::Unhealthy {
            " (unhealthy during the window)"
        } else {
            ""
        },
        w.replicas_ready,
        w.replicas_desired,
        if pods.len() == 1 { "pod" } else { "pods" },
        if pods.is_empty() {
            "none".to_string()
        } else {
            pods.join(", ")
        }
    )
}

/// Why waiting longer could not change a failed verdict, if it could not:
/// a restart, OOM kill or non-zero exit where the old pods had none (the
/// counts only grow), or unhealthy seen (it stays seen).
fn plainly_failing(before: &Window, after: &Window, thresholds: &Thresholds) -> Option<String> {
    gate::verdict(before, after, thresholds)
        .checks
        .into_iter()
        .find(|c| {
            c.outcome == Outcome::Failed
                && match c.check {
                    CheckKind::Restarts | CheckKind::OomKills | CheckKind::NonzeroExits => {
                        c.before_value == Some(0.0)
                    }
                    CheckKind::Health => true,
                    _ => false,
                }
        })
        .map(|c| format!("{}: {}", c.check.as_str(), c.reason))
}

/// Nanoseconds since the Unix epoch now, as the collector's times are.
fn now_unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How a watched rollout ended.
enum RolloutEnd {
    Done(String),
    Failed(String),
    TimedOut(String),
    PodsFailing(String),
}

/// One update in progress.
struct Run<'a> {
    api: Workloads<'a>,
    workload: &'a WorkloadRef,
    container: String,
    options: &'a KubeApplyOptions,
    log: EventLog,
}

impl Run<'_> {
    /// Watches the rollout of `image` until it completes, fails, times out
    /// or (with `before`) its pods plainly fail; every poll also lists the
    /// revision's pods into `pods`.
    async fn watch_rollout(
        &self,
        pods: &mut PodsObserver,
        image: &str,
        before: Option<&Window>,
        since: Instant,
    ) -> Result<(RolloutEnd, Object), RequestFailure> {
        let deadline = Instant::now() + self.options.rollout_timeout;
        loop {
            let object = self.api.get().await?;
            let status = object.rollout_status();
            let list = self
                .api
                .revision_pods(&object, &self.container, image)
                .await?;
            pods.observe(&list);
            let waiting = match status {
                RolloutStatus::Done(m) => return Ok((RolloutEnd::Done(m), object)),
                RolloutStatus::Failed(m) => return Ok((RolloutEnd::Failed(m), object)),
                RolloutStatus::Waiting(m) => m,
            };
            if let Some(before) = before {
                let after = pods.window(image, elapsed_ms(since), object.desired_replicas());
                if let Some(why) = plainly_failing(before, &after, &self.options.thresholds) {
                    return Ok((
                        RolloutEnd::PodsFailing(format!(
                            "{waiting} The new pods are failing: {why}"
                        )),
                        object,
                    ));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok((
                    RolloutEnd::TimedOut(format!(
                        "not complete after {}: {waiting}",
                        gate::span_words(
                            u64::try_from(self.options.rollout_timeout.as_millis())
                                .unwrap_or(u64::MAX)
                        )
                    )),
                    object,
                ));
            }
            tokio::time::sleep(self.options.poll_interval.min(deadline - now)).await;
        }
    }

    /// Watches the pods of `image` until `until`, or until they plainly
    /// fail against `before`.
    async fn watch_pods(
        &self,
        pods: &mut PodsObserver,
        image: &str,
        before: Option<&Window>,
        since: Instant,
        until: Instant,
    ) -> Result<Object, RequestFailure> {
        loop {
            let object = self.api.get().await?;
            let list = self
                .api
                .revision_pods(&object, &self.container, image)
                .await?;
            pods.observe(&list);
            if let Some(before) = before {
                let after = pods.window(image, elapsed_ms(since), object.desired_replicas());
                if plainly_failing(before, &after, &self.options.thresholds).is_some() {
                    return Ok(object);
                }
            }
            let now = Instant::now();
            if now >= until {
                return Ok(object);
            }
            tokio::time::sleep(self.options.poll_interval.min(until - now)).await;
        }
    }

    /// Patches `image` back after a request failed mid-update; says what
    /// state things are in.
    async fn undo(&mut self, from_image: &str, to_image: &str, why: &str) -> String {
        let patch = patch::image_patch(
            &self.container,
            from_image,
            to_image,
            &format!(
                "upid updates apply: {} back to {from_image} ({why})",
                self.container
            ),
        );
        match self.api.patch(&patch).await {
            Ok(_) => {
                self.log.push(
                    UpdateEventKind::ApplyAborted,
                    format!("{why}; the pod template was patched back to {from_image}"),
                );
                format!(
                    "the pod template was patched back to {from_image} (kubectl rollout status {} -n {} follows that rollout)",
                    self.workload, self.workload.namespace
                )
            }
            Err(e) => {
                let state = format!(
                    "patching {from_image} back failed too ({}: {}): the template still names {to_image}; run kubectl -n {} set image {} {}={from_image}",
                    e.request, e.detail, self.workload.namespace, self.workload, self.container
                );
                self.log
                    .push(UpdateEventKind::ApplyAborted, format!("{why}; {state}"));
                state
            }
        }
    }
}

/// Updates `container` of `workload` to `new_image` through its pod
/// template, watches the rollout, runs the health gate, and rolls back
/// when the rollout or the gate fails (see the module documentation).
/// `usage` is the collector, asked for CPU and memory per replica; `None`
/// leaves those checks skipped ("no collector was asked").
pub async fn apply(
    cluster: &Cluster,
    workload: &WorkloadRef,
    container: &str,
    new_image: &str,
    options: &KubeApplyOptions,
    usage: Option<&dyn UsageSource>,
) -> Result<KubeApplyReport, KubeApplyError> {
    let api = Workloads::new(cluster, workload);
    let object = api.get().await.map_err(|f| {
        request_error(
            workload,
            &format!("read {workload}"),
            f,
            NOTHING_CHANGED,
            Vec::new(),
        )
    })?;
    let found = inspected(workload, &object, Some(container))?;
    let from_image = found.image.clone();
    if from_image == new_image {
        return Err(KubeApplyError::AlreadyUpToDate {
            workload: workload.to_string(),
            container: container.to_string(),
            image: new_image.to_string(),
        });
    }
    if let Some(reason) = object.cannot_roll() {
        return Err(KubeApplyError::CannotRoll {
            workload: workload.to_string(),
            namespace: workload.namespace.clone(),
            reason,
        });
    }
    match object.rollout_status() {
        RolloutStatus::Done(_) => {}
        RolloutStatus::Waiting(status) | RolloutStatus::Failed(status) => {
            return Err(KubeApplyError::MidRollout {
                workload: workload.to_string(),
                namespace: workload.namespace.clone(),
                status,
            });
        }
    }
    let from_revision = object.revision_words();
    let desired = object.desired_replicas();
    let mut run = Run {
        api,
        workload,
        container: container.to_string(),
        options,
        log: EventLog::new(workload.target(), from_image.clone(), new_image.to_string()),
    };
    run.log.push(
        UpdateEventKind::ApplyStarted,
        format!(
            "updating {workload} in namespace {} (container {container}, {from_revision}, {desired} desired replicas) from {from_image} to {new_image}",
            workload.namespace
        ),
    );

    // BEFORE window.
    let mut old_pods = PodsObserver::new(container, false);
    let before_start = Instant::now();
    let before_start_unix_ns = now_unix_ns();
    if let Err(f) = run
        .watch_pods(
            &mut old_pods,
            &from_image,
            None,
            before_start,
            before_start + options.before_window,
        )
        .await
    {
        return Err(request_error(
            workload,
            &format!("list the pods of {workload}"),
            f,
            NOTHING_CHANGED,
            run.log.events,
        ));
    }
    let before_end_unix_ns = now_unix_ns();
    let mut before = old_pods.window(&from_image, elapsed_ms(before_start), desired);
    run.log.push(
        UpdateEventKind::BeforeRecorded,
        describe_window(&before, &old_pods.pod_names()),
    );

    // The patch.
    let cause = options
        .change_cause
        .clone()
        .unwrap_or_else(|| format!("upid updates apply: {container} {from_image} -> {new_image}"));
    let patched = match run
        .api
        .patch(&patch::image_patch(
            container,
            new_image,
            &from_image,
            &cause,
        ))
        .await
    {
        Ok(p) => p,
        Err(f) => {
            return Err(request_error(
                workload,
                &format!("patch the pod template of {workload}"),
                f,
                NOTHING_CHANGED,
                run.log.events,
            ));
        }
    };
    let changed_at = Instant::now();
    let changed_at_unix_ns = now_unix_ns();
    let now_names = patched.image_of(container).unwrap_or_default();
    if now_names != new_image {
        let why = format!(
            "the API server accepted the patch, but the pod template of {workload} names {now_names:?} for container {container}, not {new_image}"
        );
        let state = run.undo(&from_image, new_image, &why).await;
        return Err(KubeApplyError::Api(Box::new(RequestError {
            action: format!("set the image of {workload}"),
            request: format!("PATCH {}", cluster.server),
            detail: why,
            state,
            events: run.log.events,
        })));
    }
    run.log.push(
        UpdateEventKind::TemplatePatched,
        format!(
            "pod template of {workload}: container {container} image {from_image} → {new_image} (generation {} → {}); annotations {}={from_image}, {}={cause:?}",
            object.generation(),
            patched.generation(),
            patch::PREVIOUS_IMAGE_ANNOTATION,
            patch::CHANGE_CAUSE_ANNOTATION,
        ),
    );

    // The rollout, then the AFTER window.
    let mut new_pods = PodsObserver::new(container, true);
    let watched = run
        .watch_rollout(&mut new_pods, new_image, Some(&before), changed_at)
        .await;
    let (end, latest) = match watched {
        Ok(x) => x,
        Err(f) => {
            let why = format!("following the rollout failed ({}: {})", f.request, f.detail);
            let state = run.undo(&from_image, new_image, &why).await;
            return Err(request_error(
                workload,
                &format!("follow the rollout of {workload}"),
                f,
                &state,
                run.log.events,
            ));
        }
    };
    let to_revision = latest.revision_words();
    let rollout = match &end {
        RolloutEnd::Done(m) => {
            run.log.push(
                UpdateEventKind::RolloutCompleted,
                format!(
                    "{m} ({to_revision}, after {})",
                    gate::span_words(elapsed_ms(changed_at))
                ),
            );
            RolloutOutcome {
                completed: true,
                message: m.clone(),
            }
        }
        RolloutEnd::Failed(m) | RolloutEnd::TimedOut(m) | RolloutEnd::PodsFailing(m) => {
            let mut message = m.clone();
            if !new_pods.problems().is_empty() {
                message.push_str(&format!("; {}", new_pods.problems().join("; ")));
            }
            run.log
                .push(UpdateEventKind::RolloutFailed, message.clone());
            RolloutOutcome {
                completed: false,
                message,
            }
        }
    };
    let mut latest = latest;
    let gate_start_unix_ns = if rollout.completed {
        now_unix_ns()
    } else {
        changed_at_unix_ns
    };
    if rollout.completed {
        let until = Instant::now() + options.gate_window;
        match run
            .watch_pods(&mut new_pods, new_image, Some(&before), changed_at, until)
            .await
        {
            Ok(o) => latest = o,
            Err(f) => {
                let why = format!("watching the new pods failed ({}: {})", f.request, f.detail);
                let state = run.undo(&from_image, new_image, &why).await;
                return Err(request_error(
                    workload,
                    &format!("watch the pods of {workload}"),
                    f,
                    &state,
                    run.log.events,
                ));
            }
        }
    }
    let end_unix_ns = now_unix_ns();
    let mut after = new_pods.window(new_image, elapsed_ms(changed_at), latest.desired_replicas());
    // CPU and memory per replica from the collector: asked for now, when
    // the BEFORE window's samples have long been shipped. The old pods'
    // usage is history the collector already holds, so it is read back as
    // far as the gate window is long (when that is longer than the BEFORE
    // window), giving both sides of the comparison the same span without
    // waiting longer before the change.
    let lookback_ns = i64::try_from(options.before_window.max(options.gate_window).as_nanos())
        .unwrap_or(i64::MAX);
    let before_usage = usage::measure(
        usage,
        &old_pods.containers(),
        "the BEFORE window",
        before_start_unix_ns.min(before_end_unix_ns.saturating_sub(lookback_ns)),
        before_end_unix_ns,
        options.min_resource_samples,
    )
    .await;
    let after_usage = usage::measure(
        usage,
        &new_pods.containers(),
        if rollout.completed {
            "the gate window"
        } else {
            "the AFTER window"
        },
        gate_start_unix_ns,
        end_unix_ns,
        options.min_resource_samples,
    )
    .await;
    before_usage.fill(&mut before);
    after_usage.fill(&mut after);
    let mut verdict = gate::verdict(&before, &after, &options.thresholds);
    usage::explain(&mut verdict, &before_usage, &after_usage);
    let roll_back = !rollout.completed
        || match verdict.verdict {
            Verdict::Healthy => false,
            Verdict::Degraded => options.rollback_on_degraded,
            Verdict::Failed => true,
        };
    let mut message = format!(
        "{}. After: {}; before: {}; after: {}",
        verdict.summary,
        describe_window(&after, &new_pods.pod_names()),
        before_usage.describe(),
        after_usage.describe()
    );
    if !new_pods.problems().is_empty() {
        message.push_str(&format!("; seen: {}", new_pods.problems().join("; ")));
    }
    if !rollout.completed {
        message.push_str(&format!(
            "; the rollout did not complete: {}",
            rollout.message
        ));
    }
    message.push_str(if roll_back {
        "; rolling back"
    } else if verdict.verdict == Verdict::Degraded {
        "; keeping the update (rollback_on_degraded is off)"
    } else {
        "; keeping the update"
    });
    let kind = match verdict.verdict {
        Verdict::Healthy => UpdateEventKind::GatePassed,
        Verdict::Degraded => UpdateEventKind::GateDegraded,
        Verdict::Failed => UpdateEventKind::GateFailed,
    };
    run.log.push(kind, message);

    let mut report = KubeApplyReport {
        workload: workload.clone(),
        container: container.to_string(),
        from_image: from_image.clone(),
        to_image: new_image.to_string(),
        from_revision,
        to_revision,
        rollout,
        old_pods: old_pods.pod_names(),
        new_pods: new_pods.pod_names(),
        old_container_ids: old_pods.container_ids(),
        new_container_ids: new_pods.container_ids(),
        nodes: {
            let mut n = old_pods.nodes();
            for node in new_pods.nodes() {
                if !n.contains(&node) {
                    n.push(node);
                }
            }
            n
        },
        before,
        after,
        before_usage,
        after_usage,
        gate: verdict,
        rollback_started: roll_back,
        rolled_back: false,
        events: Vec::new(),
    };

    if roll_back {
        let why = if report.rollout.completed {
            format!("gate {}", report.gate.verdict)
        } else {
            "rollout failed".to_string()
        };
        run.log.push(
            UpdateEventKind::RollbackStarted,
            format!(
                "patching the pod template of {workload} back to {from_image} (container {container}) and following that rollout"
            ),
        );
        let patch = patch::image_patch(
            container,
            &from_image,
            new_image,
            &format!(
                "upid updates apply: rolled back {container} to {from_image} ({why} on {new_image})"
            ),
        );
        if let Err(f) = run.api.patch(&patch).await {
            let state = format!(
                "the pod template still names {new_image}; roll back by hand: kubectl -n {} set image {workload} {container}={from_image} (or kubectl -n {} rollout undo {workload})",
                workload.namespace, workload.namespace
            );
            let detail = format!("{}: {}", f.request, f.detail);
            run.log.push(
                UpdateEventKind::RollbackFailed,
                format!("{detail}; {state}"),
            );
            return Err(KubeApplyError::RollbackFailed(Box::new(RequestError {
                action: format!("roll back {workload} in namespace {}", workload.namespace),
                request: f.request,
                detail,
                state,
                events: run.log.events,
            })));
        }
        let restored_at = Instant::now();
        let mut restored = PodsObserver::new(container, true);
        match run.watch_rollout(&mut restored, &from_image, None, restored_at).await {
            Ok((RolloutEnd::Done(m), object)) => {
                report.rolled_back = true;
                let w = restored.window(&from_image, elapsed_ms(restored_at), object.desired_replicas());
                run.log.push(
                    UpdateEventKind::RolledBack,
                    format!(
                        "{workload} runs {from_image} again: {m} ({}, {}/{} ready, after {})",
                        object.revision_words(),
                        w.replicas_ready,
                        w.replicas_desired,
                        gate::span_words(elapsed_ms(restored_at))
                    ),
                );
            }
            Ok((RolloutEnd::Failed(m) | RolloutEnd::TimedOut(m) | RolloutEnd::PodsFailing(m), _)) => {
                run.log.push(
                    UpdateEventKind::RollbackFailed,
                    format!(
                        "the pod template names {from_image} again, but its rollout did not complete: {m}; see kubectl -n {} rollout status {workload} and kubectl -n {} get pods -l {}",
                        workload.namespace,
                        workload.namespace,
                        latest.selector()
                    ),
                );
            }
            Err(f) => run.log.push(
                UpdateEventKind::RollbackFailed,
                format!(
                    "the pod template names {from_image} again, but following its rollout failed ({}: {}); see kubectl -n {} rollout status {workload}",
                    f.request, f.detail, workload.namespace
                ),
            ),
        }
    } else if report.gate.verdict == Verdict::Degraded {
        run.log.push(
            UpdateEventKind::Warning,
            format!(
                "keeping a degraded update; to roll back by hand: kubectl -n {} set image {workload} {container}={from_image} (the {} annotation holds it)",
                workload.namespace,
                patch::PREVIOUS_IMAGE_ANNOTATION
            ),
        );
    }
    report.events = run.log.events;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_as_kubectl_reads_them() {
        for (text, kind) in [
            ("deployment", WorkloadKind::Deployment),
            ("Deployments", WorkloadKind::Deployment),
            ("deploy", WorkloadKind::Deployment),
            ("deployment.apps", WorkloadKind::Deployment),
            ("sts", WorkloadKind::StatefulSet),
            ("StatefulSet", WorkloadKind::StatefulSet),
            ("ds", WorkloadKind::DaemonSet),
            ("daemonsets.apps", WorkloadKind::DaemonSet),
        ] {
            assert_eq!(WorkloadKind::parse(text), Some(kind), "{text}");
        }
        assert_eq!(WorkloadKind::parse("pod"), None);
        assert_eq!(WorkloadKind::parse("replicaset"), None);
    }

    #[test]
    fn docker_names_are_not_workloads_and_bad_kinds_say_what_works() {
        assert_eq!(WorkloadRef::parse("web", "default"), Ok(None));
        assert_eq!(WorkloadRef::parse("/web", "default"), Ok(None));
        assert_eq!(WorkloadRef::parse("my_app-1.2", "default"), Ok(None));
        let w = WorkloadRef::parse("deploy/web", "shop")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("deploy/web is a workload"));
        assert_eq!(w.kind, WorkloadKind::Deployment);
        assert_eq!(w.to_string(), "deployment/web");
        assert_eq!(w.target(), "shop/deployment/web");
        let e = WorkloadRef::parse("pod/web-1", "shop")
            .err()
            .unwrap_or_default();
        assert!(e.contains("deployment (deploy)"), "{e}");
        assert!(WorkloadRef::parse("deployment/", "shop").is_err());
        assert!(WorkloadRef::parse("deployment/a/b", "shop").is_err());
    }

    fn window(restarts: u64, health: HealthStatus) -> Window {
        Window {
            image: "web:1".into(),
            duration_ms: 10_000,
            replicas_desired: 3,
            replicas_ready: 3,
            restarts,
            oom_kills: 0,
            nonzero_exit_codes: Vec::new(),
            health_end: health,
            unhealthy_seen: health == HealthStatus::Unhealthy,
            cpu_cores_per_replica: None,
            memory_bytes_per_replica: None,
            resource_samples: 0,
        }
    }

    #[test]
    fn only_verdicts_that_cannot_recover_end_a_watch_early() {
        let t = Thresholds::default();
        let quiet = window(0, HealthStatus::Healthy);
        // Still starting, not ready: could still pass.
        let mut starting = window(0, HealthStatus::Starting);
        starting.replicas_ready = 0;
        assert_eq!(plainly_failing(&quiet, &starting, &t), None);
        // A restart where there were none: it cannot un-happen.
        let why =
            plainly_failing(&quiet, &window(1, HealthStatus::Healthy), &t).unwrap_or_default();
        assert!(why.starts_with("restarts: 1 restart"), "{why}");
        // Restarts where the old pods restarted too: a rate, it may settle.
        assert_eq!(
            plainly_failing(
                &window(2, HealthStatus::Healthy),
                &window(3, HealthStatus::Healthy),
                &t
            ),
            None
        );
        // Unhealthy stays seen.
        assert!(plainly_failing(&quiet, &window(0, HealthStatus::Unhealthy), &t).is_some());
    }
}

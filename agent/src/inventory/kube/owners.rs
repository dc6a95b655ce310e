//! The workload a person knows a pod by: its controller owner reference,
//! followed up one level where Kubernetes puts one in between (ReplicaSet →
//! Deployment, Job → CronJob). Lookups are cached per owner uid so a node
//! full of replicas costs one GET per ReplicaSet, not one per pod.
//!
//! A failed lookup (403 for missing RBAC, 404 for an owner deleted a moment
//! ago, any API error) never fails the pod: the workload is guessed (the
//! ReplicaSet name minus the pod's `pod-template-hash` is the Deployment;
//! a Job is taken as itself), `WorkloadRef.detail` says so, and a
//! [`Problem`] tells the caller what to report.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Api, Client};
use tokio::time::Instant;
use upid::wire::v1;

/// How long one owner lookup may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a failed lookup is remembered before it is tried again.
const FAILURE_TTL: Duration = Duration::from_secs(60);
/// The label the Deployment controller puts on its ReplicaSets and pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Something that stops owners from being resolved, for
/// `SourceUpdate::Degraded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Identifies the problem (resource and kind of failure), so it is
    /// reported once, not once per pod.
    pub key: String,
    /// What is wrong and what to do, for a person.
    pub reason: String,
}

/// Resolves pods to workloads, with a cache.
pub struct Owners {
    client: Client,
    ttl: Duration,
    cache: HashMap<String, Cached>,
}

struct Cached {
    workload: v1::WorkloadRef,
    expires: Instant,
}

/// A failed GET of a pod's owner.
struct LookupError {
    /// `Some(403)`, `Some(404)`, …; `None` when the API was not reached.
    code: Option<u16>,
    /// The API server's message, or the client error.
    message: String,
}

impl LookupError {
    fn from_kube(e: &kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => LookupError {
                code: Some(status.code),
                message: if status.message.is_empty() {
                    format!("{} {}", status.code, status.reason)
                } else {
                    status.message.clone()
                },
            },
            other => LookupError {
                code: None,
                message: other.to_string(),
            },
        }
    }

    /// The API server's message up to its explanation
    /// (`replicasets.apps "x" is forbidden`), for `WorkloadRef.detail`.
    fn short(&self) -> &str {
        self.message
            .split_once(": ")
            .map_or(self.message.as_str(), |(head, _)| head)
    }
}

impl Owners {
    /// A resolver using `client`, remembering resolved owners for `ttl`.
    pub fn new(client: Client, ttl: Duration) -> Self {
        Owners {
            client,
            ttl,
            cache: HashMap::new(),
        }
    }

    /// Drops expired cache entries (owners deleted since are forgotten).
    pub fn prune(&mut self) {
        let now = Instant::now();
        self.cache.retain(|_, c| c.expires > now);
    }

    /// The workload owning `pod`, and a problem to report when its owner
    /// chain could not be followed.
    pub async fn workload_of(&mut self, pod: &Pod) -> (v1::WorkloadRef, Option<Problem>) {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let pod_name = meta.name.clone().unwrap_or_default();
        let workload = |kind: v1::WorkloadKind, name: &str, detail: String| v1::WorkloadRef {
            kind: kind as i32,
            namespace: namespace.clone(),
            name: name.to_string(),
            detail,
        };
        let Some(owner) = controller_of(meta) else {
            return (
                workload(v1::WorkloadKind::Pod, &pod_name, String::new()),
                None,
            );
        };
        let group = owner.api_version.split('/').next().unwrap_or_default();
        match (group, owner.kind.as_str()) {
            ("apps", "StatefulSet") => (
                workload(v1::WorkloadKind::StatefulSet, &owner.name, String::new()),
                None,
            ),
            ("apps", "DaemonSet") => (
                workload(v1::WorkloadKind::DaemonSet, &owner.name, String::new()),
                None,
            ),
            // A static pod's mirror: the pod is the workload.
            ("v1", "Node") => (
                workload(v1::WorkloadKind::Pod, &pod_name, String::new()),
                None,
            ),
            ("apps", "ReplicaSet") | ("batch", "Job") => {
                let key = cache_key(&namespace, owner);
                if let Some(c) = self.cache.get(&key)
                    && c.expires > Instant::now()
                {
                    return (c.workload.clone(), None);
                }
                let (resolved, problem, ok) = if owner.kind == "ReplicaSet" {
                    self.replica_set_owner(pod, &namespace, &owner.name).await
                } else {
                    self.job_owner(&namespace, &owner.name).await
                };
                let ttl = if ok {
                    self.ttl
                } else {
                    self.ttl.min(FAILURE_TTL)
                };
                self.cache.insert(
                    key,
                    Cached {
                        workload: resolved.clone(),
                        expires: Instant::now() + ttl,
                    },
                );
                (resolved, problem)
            }
            _ => (
                workload(
                    v1::WorkloadKind::Other,
                    &owner.name,
                    format!(
                        "owned by {} {}, not followed further",
                        owner.api_version, owner.kind
                    ),
                ),
                None,
            ),
        }
    }

    /// ReplicaSet → its Deployment (or the ReplicaSet itself). The bool is
    /// false when the lookup failed (cached for a shorter time).
    async fn replica_set_owner(
        &self,
        pod: &Pod,
        namespace: &str,
        rs_name: &str,
    ) -> (v1::WorkloadRef, Option<Problem>, bool) {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let got = lookup(api.get(rs_name)).await;
        let workload = |kind: v1::WorkloadKind, name: &str, detail: String| v1::WorkloadRef {
            kind: kind as i32,
            namespace: namespace.to_string(),
            name: name.to_string(),
            detail,
        };
        match got {
            Ok(rs) => {
                let w = workload_above(
                    &rs.metadata,
                    namespace,
                    ("ReplicaSet", rs_name, v1::WorkloadKind::ReplicaSet),
                    ("Deployment", v1::WorkloadKind::Deployment),
                );
                (w, None, true)
            }
            Err(e) => {
                let hash = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POD_TEMPLATE_HASH));
                let deployment = hash.and_then(|h| {
                    rs_name
                        .strip_suffix(h.as_str())
                        .and_then(|n| n.strip_suffix('-'))
                        .filter(|n| !n.is_empty())
                });
                let w = match deployment {
                    Some(name) => workload(
                        v1::WorkloadKind::Deployment,
                        name,
                        format!("{}: resolved from {POD_TEMPLATE_HASH}", e.short()),
                    ),
                    None => workload(
                        v1::WorkloadKind::ReplicaSet,
                        rs_name,
                        format!("{}: owner of the ReplicaSet unknown", e.short()),
                    ),
                };
                let problem = problem(
                    "replicasets.apps",
                    namespace,
                    &e,
                    "Deployments are guessed from the pod-template-hash label",
                    "get on replicasets (API group apps)",
                );
                log_failure("ReplicaSet", namespace, rs_name, &e, &w);
                (w, problem, false)
            }
        }
    }

    /// Job → its CronJob (or the Job itself).
    async fn job_owner(
        &self,
        namespace: &str,
        job_name: &str,
    ) -> (v1::WorkloadRef, Option<Problem>, bool) {
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let got = lookup(api.get(job_name)).await;
        let workload = |kind: v1::WorkloadKind, name: &str, detail: String| v1::WorkloadRef {
            kind: kind as i32,
            namespace: namespace.to_string(),
            name: name.to_string(),
            detail,
        };
        match got {
            Ok(job) => {
                let w = workload_above(
                    &job.metadata,
                    namespace,
                    ("Job", job_name, v1::WorkloadKind::Job),
                    ("CronJob", v1::WorkloadKind::CronJob),
                );
                (w, None, true)
            }
            Err(e) => {
                let w = workload(
                    v1::WorkloadKind::Job,
                    job_name,
                    format!("{}: a CronJob above it is unknown", e.short()),
                );
                let problem = problem(
                    "jobs.batch",
                    namespace,
                    &e,
                    "Jobs are reported without their CronJob",
                    "get on jobs (API group batch)",
                );
                log_failure("Job", namespace, job_name, &e, &w);
                (w, problem, false)
            }
        }
    }
}

/// The workload above an intermediate object (a ReplicaSet, a Job) whose
/// metadata was fetched: its controller when that is the `expected` kind,
/// the object itself when it has no controller, and `Other` (saying why)
/// for any other controller.
fn workload_above(
    meta: &ObjectMeta,
    namespace: &str,
    (own_kind, own_name, own_workload): (&str, &str, v1::WorkloadKind),
    (expected_kind, expected_workload): (&str, v1::WorkloadKind),
) -> v1::WorkloadRef {
    let (kind, name, detail) = match controller_of(meta) {
        Some(o) if o.kind == expected_kind => (expected_workload, o.name.as_str(), String::new()),
        Some(o) => (
            v1::WorkloadKind::Other,
            o.name.as_str(),
            format!(
                "{own_kind} {own_name} is owned by {} {}, not followed further",
                o.api_version, o.kind
            ),
        ),
        None => (own_workload, own_name, String::new()),
    };
    v1::WorkloadRef {
        kind: kind as i32,
        namespace: namespace.to_string(),
        name: name.to_string(),
        detail,
    }
}

/// The controlling owner reference (the first owner when none is marked
/// as controller).
fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    let refs = meta.owner_references.as_deref()?;
    refs.iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| refs.first())
}

fn cache_key(namespace: &str, owner: &OwnerReference) -> String {
    if owner.uid.is_empty() {
        format!("{namespace}/{}/{}", owner.kind, owner.name)
    } else {
        owner.uid.clone()
    }
}

async fn lookup<T>(get: impl Future<Output = Result<T, kube::Error>>) -> Result<T, LookupError> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, get).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LookupError::from_kube(&e)),
        Err(_) => Err(LookupError {
            code: None,
            message: format!("no answer within {}s", LOOKUP_TIMEOUT.as_secs()),
        }),
    }
}

/// The problem to report for a failed lookup; `None` for a 404 (the owner
/// was deleted a moment ago: the pod goes next, nothing to fix).
fn problem(
    resource: &str,
    namespace: &str,
    e: &LookupError,
    consequence: &str,
    rbac: &str,
) -> Option<Problem> {
    match e.code {
        Some(404) => None,
        Some(403) => Some(Problem {
            key: format!("{resource}:403"),
            reason: format!(
                "kubernetes: cannot read {resource} (403 Forbidden in namespace {namespace}: {}); \
                 {consequence}. Grant the agent's ServiceAccount {rbac} in a ClusterRole",
                e.message
            ),
        }),
        Some(code) => Some(Problem {
            key: format!("{resource}:{code}"),
            reason: format!(
                "kubernetes: reading {resource} failed with HTTP {code} ({}); {consequence}",
                e.message
            ),
        }),
        None => Some(Problem {
            key: format!("{resource}:unreachable"),
            reason: format!(
                "kubernetes: reading {resource} failed ({}); {consequence}",
                e.message
            ),
        }),
    }
}

fn log_failure(kind: &str, namespace: &str, name: &str, e: &LookupError, w: &v1::WorkloadRef) {
    let code = e.code.map_or_else(|| "none".to_string(), |c| c.to_string());
    if e.code == Some(404) {
        tracing::info!(kind, namespace, name, code, workload = %w.name, detail = %w.detail,
            "owner of a pod is gone; workload guessed");
    } else {
        tracing::warn!(kind, namespace, name, code, error = %e.message, workload = %w.name,
            detail = %w.detail, "cannot look up the owner of a pod; workload guessed");
    }
}

//! One Deployment, StatefulSet or DaemonSet as the API server returns it,
//! and the requests made about it: read it, patch it, list the pods of its
//! current revision. Failed requests say which request it was.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::Value;

use super::rollout::{self, RolloutStatus};
use super::{Cluster, WorkloadKind, WorkloadRef};

/// The annotation the Deployment controller numbers revisions with, on
/// the Deployment and on its ReplicaSets.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The label the Deployment controller puts on a ReplicaSet's pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The label the StatefulSet controller puts on its pods: the revision
/// they were made from.
const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// Field manager named in patches (`kubectl` uses `kubectl-set`).
pub const FIELD_MANAGER: &str = "upid";

/// A workload object as read.
#[derive(Debug, Clone)]
pub enum Object {
    /// `apps/v1` Deployment.
    Deployment(Box<Deployment>),
    /// `apps/v1` StatefulSet.
    StatefulSet(Box<StatefulSet>),
    /// `apps/v1` DaemonSet.
    DaemonSet(Box<DaemonSet>),
}

impl Object {
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Deployment(d) => &d.metadata,
            Object::StatefulSet(s) => &s.metadata,
            Object::DaemonSet(d) => &d.metadata,
        }
    }

    /// `metadata.generation`.
    pub fn generation(&self) -> i64 {
        self.meta().generation.unwrap_or(0)
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        self.meta().uid.as_deref().unwrap_or_default()
    }

    /// The pod template's containers (empty when the object has no spec).
    pub fn containers(&self) -> &[Container] {
        let spec = match self {
            Object::Deployment(d) => d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
            Object::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
            Object::DaemonSet(d) => d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
        };
        spec.map_or(&[], |s| s.containers.as_slice())
    }

    /// The image the template gives `container`.
    pub fn image_of(&self, container: &str) -> Option<String> {
        self.containers()
            .iter()
            .find(|c| c.name == container)
            .and_then(|c| c.image.clone())
    }

    /// The pod selector as `labelSelector=` takes it.
    pub fn selector(&self) -> String {
        let selector = match self {
            Object::Deployment(d) => d.spec.as_ref().map(|s| &s.selector),
            Object::StatefulSet(s) => s.spec.as_ref().map(|s| &s.selector),
            Object::DaemonSet(d) => d.spec.as_ref().map(|s| &s.selector),
        };
        selector.map(rollout::selector_string).unwrap_or_default()
    }

    /// Replicas that should run: `spec.replicas` (default 1), or for a
    /// DaemonSet the nodes it should run on.
    pub fn desired_replicas(&self) -> u32 {
        let n = match self {
            Object::Deployment(d) => d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            Object::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            Object::DaemonSet(d) => d.status.as_ref().map_or(0, |s| s.desired_number_scheduled),
        };
        u32::try_from(n).unwrap_or(0)
    }

    /// Where its rollout stands (see [`rollout`]).
    pub fn rollout_status(&self) -> RolloutStatus {
        match self {
            Object::Deployment(d) => rollout::deployment_status(d),
            Object::StatefulSet(s) => rollout::statefulset_status(s),
            Object::DaemonSet(d) => rollout::daemonset_status(d),
        }
    }

    /// The revision it is at, in words (`revision 7`, `revision
    /// db-7b9d6c`, `generation 3`).
    pub fn revision_words(&self) -> String {
        match self {
            Object::Deployment(d) => d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .map_or_else(
                    || format!("generation {}", self.generation()),
                    |r| format!("revision {r}"),
                ),
            Object::StatefulSet(s) => s
                .status
                .as_ref()
                .and_then(|st| st.update_revision.clone())
                .map_or_else(
                    || format!("generation {}", self.generation()),
                    |r| format!("revision {r}"),
                ),
            Object::DaemonSet(_) => format!("generation {}", self.generation()),
        }
    }

    /// Why a rollout of it would not run by itself (paused, `OnDelete`);
    /// `None` when it rolls.
    pub fn cannot_roll(&self) -> Option<String> {
        match self {
            Object::Deployment(d) => d
                .spec
                .as_ref()
                .and_then(|s| s.paused)
                .filter(|p| *p)
                .map(|_| "it is paused (kubectl rollout resume to unpause it): a change to its pod template would not roll out".to_string()),
            Object::StatefulSet(s) => rollout::update_strategy_problem(
                "StatefulSet",
                s.spec
                    .as_ref()
                    .and_then(|s| s.update_strategy.as_ref())
                    .and_then(|u| u.type_.as_deref()),
            ),
            Object::DaemonSet(d) => rollout::update_strategy_problem(
                "DaemonSet",
                d.spec
                    .as_ref()
                    .and_then(|s| s.update_strategy.as_ref())
                    .and_then(|u| u.type_.as_deref()),
            ),
        }
    }
}

/// A request that failed: which one, the HTTP status when there was one,
/// and what came back.
#[derive(Debug, Clone)]
pub struct RequestFailure {
    /// `GET https://10.0.0.1:6443/apis/apps/v1/namespaces/shop/deployments/web`.
    pub request: String,
    /// The HTTP status, when the API server answered with one.
    pub code: Option<u16>,
    /// What it said, or what could not be read.
    pub detail: String,
}

/// Reads and changes one workload.
pub struct Workloads<'a> {
    cluster: &'a Cluster,
    workload: &'a WorkloadRef,
}

impl<'a> Workloads<'a> {
    /// Requests about `workload` through `cluster`.
    pub fn new(cluster: &'a Cluster, workload: &'a WorkloadRef) -> Workloads<'a> {
        Workloads { cluster, workload }
    }

    fn path(&self) -> String {
        format!(
            "/apis/apps/v1/namespaces/{}/{}/{}",
            self.workload.namespace,
            self.workload.kind.resource(),
            self.workload.name
        )
    }

    fn failure(&self, method: &str, path: &str, kind: &str, e: kube::Error) -> RequestFailure {
        let request = format!(
            "{method} {}{path}",
            self.cluster.server.trim_end_matches('/')
        );
        let (code, detail) = match e {
            kube::Error::Api(status) => {
                let mut words = format!("{} {}", status.code, status.reason);
                if !status.message.is_empty() {
                    words.push_str(": ");
                    words.push_str(&status.message);
                }
                (Some(status.code), words)
            }
            kube::Error::SerdeError(e) => (
                None,
                format!("the answer is not a {kind} as the Kubernetes API returns it ({e})"),
            ),
            kube::Error::HyperError(e) => (None, format!("no answer: {e}")),
            kube::Error::Service(e) => (None, format!("no answer: {e}")),
            other => (None, other.to_string()),
        };
        RequestFailure {
            request,
            code,
            detail,
        }
    }

    /// GETs the workload.
    pub async fn get(&self) -> Result<Object, RequestFailure> {
        let (ns, name, client) = (
            self.workload.namespace.as_str(),
            self.workload.name.as_str(),
            self.cluster.client.clone(),
        );
        let kind = self.workload.kind.kind();
        let result = match self.workload.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(client, ns)
                .get(name)
                .await
                .map(|d| Object::Deployment(Box::new(d))),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client, ns)
                .get(name)
                .await
                .map(|s| Object::StatefulSet(Box::new(s))),
            WorkloadKind::DaemonSet => Api::<DaemonSet>::namespaced(client, ns)
                .get(name)
                .await
                .map(|d| Object::DaemonSet(Box::new(d))),
        };
        result.map_err(|e| self.failure("GET", &self.path(), kind, e))
    }

    /// PATCHes the workload with a strategic merge patch; returns the
    /// object as changed.
    pub async fn patch(&self, patch: &Value) -> Result<Object, RequestFailure> {
        let (ns, name, client) = (
            self.workload.namespace.as_str(),
            self.workload.name.as_str(),
            self.cluster.client.clone(),
        );
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let patch = Patch::Strategic(patch);
        let kind = self.workload.kind.kind();
        let result = match self.workload.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(client, ns)
                .patch(name, &params, &patch)
                .await
                .map(|d| Object::Deployment(Box::new(d))),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client, ns)
                .patch(name, &params, &patch)
                .await
                .map(|s| Object::StatefulSet(Box::new(s))),
            WorkloadKind::DaemonSet => Api::<DaemonSet>::namespaced(client, ns)
                .patch(name, &params, &patch)
                .await
                .map(|d| Object::DaemonSet(Box::new(d))),
        };
        result.map_err(|e| self.failure("PATCH", &self.path(), kind, e))
    }

    /// The pods of `object`'s current revision whose `container` runs
    /// `image`: for a Deployment, those of the ReplicaSet at the
    /// Deployment's revision (by `pod-template-hash`); for a StatefulSet,
    /// those at `status.updateRevision` (by `controller-revision-hash`);
    /// for a DaemonSet, its pods. Always narrowed to the image, so a pod of
    /// another revision never counts.
    pub async fn revision_pods(
        &self,
        object: &Object,
        container: &str,
        image: &str,
    ) -> Result<Vec<Pod>, RequestFailure> {
        let mut selector = object.selector();
        match object {
            Object::Deployment(d) => {
                if let Some(hash) = self.replicaset_hash(d, &selector).await? {
                    push_term(&mut selector, &format!("{POD_TEMPLATE_HASH}={hash}"));
                }
            }
            Object::StatefulSet(s) => {
                if let Some(revision) = s
                    .status
                    .as_ref()
                    .and_then(|st| st.update_revision.as_deref())
                {
                    push_term(
                        &mut selector,
                        &format!("{CONTROLLER_REVISION_HASH}={revision}"),
                    );
                }
            }
            Object::DaemonSet(_) => {}
        }
        let ns = self.workload.namespace.as_str();
        let path = format!(
            "/api/v1/namespaces/{ns}/pods?labelSelector={}",
            query_escape(&selector)
        );
        let list = Api::<Pod>::namespaced(self.cluster.client.clone(), ns)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.failure("GET", &path, "PodList", e))?;
        let uid = object.uid().to_string();
        Ok(list
            .items
            .into_iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|c| c.name == container))
                    .and_then(|c| c.image.as_deref())
                    == Some(image)
            })
            .filter(|p| match object {
                // A DaemonSet's pods are its own: checked by owner, as its
                // selector may match pods of another DaemonSet.
                Object::DaemonSet(_) => p
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid),
                _ => true,
            })
            .collect())
    }

    /// The `pod-template-hash` of the Deployment's ReplicaSet at its
    /// current revision; `None` when there is none yet (the controller has
    /// not made it).
    async fn replicaset_hash(
        &self,
        d: &Deployment,
        selector: &str,
    ) -> Result<Option<String>, RequestFailure> {
        let Some(revision) = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION))
        else {
            return Ok(None);
        };
        let ns = self.workload.namespace.as_str();
        let path = format!(
            "/apis/apps/v1/namespaces/{ns}/replicasets?labelSelector={}",
            query_escape(selector)
        );
        let list = Api::<ReplicaSet>::namespaced(self.cluster.client.clone(), ns)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| self.failure("GET", &path, "ReplicaSetList", e))?;
        let uid = d.metadata.uid.as_deref().unwrap_or_default();
        Ok(list
            .items
            .iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
            .find(|rs| {
                rs.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION_ANNOTATION))
                    == Some(revision)
            })
            .and_then(|rs| rs.metadata.labels.as_ref()?.get(POD_TEMPLATE_HASH).cloned()))
    }
}

fn push_term(selector: &mut String, term: &str) {
    if !selector.is_empty() {
        selector.push(',');
    }
    selector.push_str(term);
}

/// Percent-escapes what a query value cannot hold, for messages that name
/// the request as it was sent.
fn query_escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

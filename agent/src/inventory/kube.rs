//! Kubernetes inventory: the pods of this node, watched through the API
//! server (kube-runtime's watcher with the field selector
//! `spec.nodeName=<node>`), turned into one `ContainerInfo` per container
//! ([`pod`]) with the workload a person knows it by ([`owners`]).
//!
//! A (re)list sends [`SourceUpdate::Full`]; a changed pod sends
//! [`SourceUpdate::Upsert`] / [`SourceUpdate::Remove`] for the containers
//! that changed, appeared or went away (a restart gives a container a new
//! id). The watcher is restarted every [`KubeConfig::resync`], so a missed
//! event cannot outlive one resync. Missing permissions and API errors are
//! reported as [`SourceUpdate::Degraded`] once per condition; the watch is
//! retried with backoff and owner lookups fall back to a best guess.

pub mod owners;
pub mod pod;
pub mod quantity;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use upid::wire::v1;

use self::owners::Owners;
use self::pod::QuantitySkips;
use super::{Source, SourceUpdate};

/// How long a resolved owner (ReplicaSet → Deployment, Job → CronJob) is
/// reused before it is looked up again.
pub const OWNER_TTL: Duration = Duration::from_secs(10 * 60);

/// The reason sent when the agent runs outside Kubernetes.
pub const NOT_IN_CLUSTER: &str =
    "not in a Kubernetes cluster: no in-cluster config and no kubeconfig";

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// This node's name (from the downward API, `spec.nodeName`): only its
    /// pods are watched.
    pub node_name: String,
    /// How often the pods are listed again from scratch (default 10 min).
    pub resync: Duration,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            node_name: String::new(),
            resync: Duration::from_secs(10 * 60),
        }
    }
}

/// Runs until `shutdown`: in-cluster config or kubeconfig
/// (`kube::Client::try_default`); when neither exists, one
/// [`SourceUpdate::Degraded`] ([`NOT_IN_CLUSTER`]) and return.
pub async fn run(
    config: KubeConfig,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: watch::Receiver<bool>,
) {
    match Client::try_default().await {
        Ok(client) => run_with_client(client, config, tx, shutdown).await,
        Err(e) => {
            let reason = if no_cluster_config(&e) {
                NOT_IN_CLUSTER.to_string()
            } else {
                format!("kubernetes: cannot configure the API client: {e}")
            };
            tracing::info!(%reason, "Kubernetes inventory disabled");
            // The agent may be shutting down already: nothing to do then.
            let _ = tx
                .send(SourceUpdate::Degraded {
                    source: Source::Kubernetes,
                    reason,
                })
                .await;
        }
    }
}

/// True when the client failed only because there is neither an in-cluster
/// environment nor a kubeconfig file.
fn no_cluster_config(e: &kube::Error) -> bool {
    use kube::config::KubeconfigError;
    let kube::Error::InferConfig(infer) = e else {
        return false;
    };
    let no_kubeconfig =
        match std::error::Error::source(infer).and_then(|s| s.downcast_ref::<KubeconfigError>()) {
            Some(KubeconfigError::FindPath) => true,
            Some(KubeconfigError::ReadConfig(io, _)) => io.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        };
    no_kubeconfig && std::env::var_os("KUBERNETES_SERVICE_HOST").is_none()
}

/// [`run`] with a given client (tests point it at a replay server).
pub async fn run_with_client(
    client: Client,
    config: KubeConfig,
    tx: mpsc::Sender<SourceUpdate>,
    mut shutdown: watch::Receiver<bool>,
) {
    let node = config.node_name.trim().to_string();
    let mut state = State::new(Owners::new(client.clone(), OWNER_TTL), tx, node.clone());
    if node.is_empty() {
        let reason = "kubernetes: node name unknown, so this node's pods cannot be selected; \
                      set it from the downward API (fieldRef spec.nodeName)";
        let _ = state.degraded(reason.to_string()).await;
        return;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let api: Api<Pod> = Api::all(client);
    // Any semantic: the list may come from the API server's watch cache
    // instead of etcd, which matters with one agent per node.
    let wc = watcher::Config::default()
        .fields(&format!("spec.nodeName={node}"))
        .any_semantic();
    let resync = config.resync.max(Duration::from_secs(1));
    let mut node_labels_failed = false;
    loop {
        // The Node's labels, for pricing by label: at start and on every
        // resync. Without `get nodes` permission only they are missing.
        match nodes.get_opt(&node).await {
            Ok(Some(n)) => {
                let labels = n.metadata.labels.unwrap_or_default();
                if state
                    .send(SourceUpdate::NodeLabels {
                        source: Source::Kubernetes,
                        labels,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => tracing::debug!(node, "node object not found; no node labels"),
            Err(e) if !node_labels_failed => {
                node_labels_failed = true;
                tracing::info!(node, error = %e, "cannot read this node's labels (RBAC `get nodes`?): pricing by node label will not apply to it");
            }
            Err(_) => {}
        }
        let mut stream = watcher::watcher(api.clone(), wc.clone())
            .default_backoff()
            .boxed();
        let next_resync = tokio::time::sleep(resync);
        tokio::pin!(next_resync);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let step = tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                () = &mut next_resync => break,
                ev = stream.next() => match ev {
                    None => break,
                    Some(Ok(event)) => state.handle(event).await,
                    Some(Err(e)) => state.watch_failed(&e).await,
                },
            };
            if step.is_err() {
                tracing::debug!("inventory receiver gone; Kubernetes source stops");
                return;
            }
        }
        state.owners.prune();
        tracing::debug!(node, "resync: listing this node's pods again");
    }
}

/// The receiver of source updates is gone.
struct Closed;

/// Classes of watch failure, so one condition is reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WatchProblem {
    Forbidden,
    Api(u16),
    Other,
}

struct State {
    owners: Owners,
    tx: mpsc::Sender<SourceUpdate>,
    node: String,
    /// Records per pod (key: uid), by container id.
    pods: HashMap<String, BTreeMap<String, v1::ContainerInfo>>,
    /// Pods listed since the last `Init`, until `InitDone`.
    relist: Option<HashMap<String, BTreeMap<String, v1::ContainerInfo>>>,
    skips: QuantitySkips,
    /// Owner problems already reported.
    reported: HashSet<String>,
    watch_problem: Option<WatchProblem>,
}

impl State {
    fn new(owners: Owners, tx: mpsc::Sender<SourceUpdate>, node: String) -> Self {
        State {
            owners,
            tx,
            node,
            pods: HashMap::new(),
            relist: None,
            skips: QuantitySkips::default(),
            reported: HashSet::new(),
            watch_problem: None,
        }
    }

    async fn send(&self, update: SourceUpdate) -> Result<(), Closed> {
        self.tx.send(update).await.map_err(|_| Closed)
    }

    async fn degraded(&self, reason: String) -> Result<(), Closed> {
        tracing::warn!(%reason, "Kubernetes inventory degraded");
        self.send(SourceUpdate::Degraded {
            source: Source::Kubernetes,
            reason,
        })
        .await
    }

    /// The records of one pod, its owner resolved (and a new owner problem
    /// reported).
    async fn records(&mut self, pod: &Pod) -> Result<BTreeMap<String, v1::ContainerInfo>, Closed> {
        let (workload, problem) = self.owners.workload_of(pod).await;
        if let Some(p) = problem
            && self.reported.insert(p.key)
        {
            self.degraded(p.reason).await?;
        }
        Ok(pod::container_records(pod, &workload, &mut self.skips)
            .into_iter()
            .map(|c| (c.container_id.clone(), c))
            .collect())
    }

    async fn handle(&mut self, event: Event<Pod>) -> Result<(), Closed> {
        // `Init` comes before the list is even tried: only a finished list
        // or a watch event shows the API answers again.
        let works = !matches!(event, Event::Init | Event::InitApply(_));
        if works && self.watch_problem.take().is_some() {
            tracing::info!(node = %self.node, "Kubernetes pod watch works again");
            // Owner problems are reported again should they persist.
            self.reported.clear();
            self.send(SourceUpdate::Recovered {
                source: Source::Kubernetes,
            })
            .await?;
        }
        match event {
            Event::Init => self.relist = Some(HashMap::new()),
            Event::InitApply(pod) => {
                let records = self.records(&pod).await?;
                self.relist
                    .get_or_insert_default()
                    .insert(pod_key(&pod), records);
            }
            Event::InitDone => {
                self.pods = self.relist.take().unwrap_or_default();
                let containers: Vec<v1::ContainerInfo> = self
                    .pods
                    .values()
                    .flat_map(|m| m.values().cloned())
                    .collect();
                tracing::debug!(
                    node = %self.node,
                    pods = self.pods.len(),
                    containers = containers.len(),
                    quantity_skips = self.skips.count(),
                    "listed this node's pods"
                );
                self.send(SourceUpdate::Full {
                    source: Source::Kubernetes,
                    containers,
                })
                .await?;
            }
            Event::Apply(pod) => {
                let new = self.records(&pod).await?;
                let old = self.pods.remove(&pod_key(&pod)).unwrap_or_default();
                for (id, c) in &new {
                    if old.get(id) != Some(c) {
                        self.send(SourceUpdate::Upsert {
                            source: Source::Kubernetes,
                            container: c.clone(),
                        })
                        .await?;
                    }
                }
                for id in old.keys().filter(|id| !new.contains_key(*id)) {
                    self.send(SourceUpdate::Remove {
                        source: Source::Kubernetes,
                        container_id: id.clone(),
                    })
                    .await?;
                }
                self.pods.insert(pod_key(&pod), new);
            }
            Event::Delete(pod) => {
                let old = self.pods.remove(&pod_key(&pod)).unwrap_or_default();
                for id in old.into_keys() {
                    self.send(SourceUpdate::Remove {
                        source: Source::Kubernetes,
                        container_id: id,
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// A failed list or watch: reported once per kind of failure; the
    /// watcher retries with backoff.
    async fn watch_failed(&mut self, e: &watcher::Error) -> Result<(), Closed> {
        let status: Option<(u16, &str)> = match e {
            watcher::Error::InitialListFailed(k)
            | watcher::Error::WatchStartFailed(k)
            | watcher::Error::WatchFailed(k) => match k {
                kube::Error::Api(s) => Some((s.code, s.message.as_str())),
                _ => None,
            },
            watcher::Error::WatchError(s) => Some((s.code, s.message.as_str())),
            watcher::Error::NoResourceVersion => None,
        };
        let node = &self.node;
        let (problem, reason) = match status {
            // The resource version expired: the watcher lists again.
            Some((410, _)) => {
                tracing::debug!(error = %e, "pod watch expired; listing again");
                return Ok(());
            }
            Some((403, message)) => (
                WatchProblem::Forbidden,
                format!(
                    "kubernetes: cannot list/watch the pods of node {node} (403 Forbidden: \
                     {message}); the agent's ServiceAccount needs a ClusterRole rule \
                     apiGroups [\"\"] resources [\"pods\"] verbs [\"get\", \"list\", \"watch\"]; \
                     retrying with backoff"
                ),
            ),
            Some((code, message)) => (
                WatchProblem::Api(code),
                format!(
                    "kubernetes: watching the pods of node {node} failed with HTTP {code} \
                     ({message}); retrying with backoff"
                ),
            ),
            None => (
                WatchProblem::Other,
                format!(
                    "kubernetes: watching the pods of node {node} failed ({e}); retrying with \
                     backoff"
                ),
            ),
        };
        if self.watch_problem.as_ref() == Some(&problem) {
            tracing::debug!(error = %e, "pod watch still failing");
            return Ok(());
        }
        self.watch_problem = Some(problem);
        self.degraded(reason).await
    }
}

/// Identifies a pod across events: its uid, else namespace/name.
fn pod_key(pod: &Pod) -> String {
    match &pod.metadata.uid {
        Some(uid) if !uid.is_empty() => uid.clone(),
        _ => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

//! Running the inventory: the source tasks, and the task that folds their
//! updates into one [`Tracker`] the sampling loop takes changes from.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use upid::wire::v1;

use super::docker::{self, DockerConfig};
use super::kernel_log::{self, KernelLogConfig};
use super::kube::{self, KubeConfig};
use super::tracker::{DEFAULT_FULL_EVERY, Tracker};
use super::{Source, SourceUpdate, unix_now_ns};

/// Which sources run and how often a full inventory is sent.
#[derive(Debug, Clone)]
pub struct InventoryConfig {
    /// Docker; `None` disables it.
    pub docker: Option<DockerConfig>,
    /// Kubernetes; `None` disables it.
    pub kube: Option<KubeConfig>,
    /// OOM kills from the kernel log; `None` disables it.
    pub kernel_log: Option<KernelLogConfig>,
    /// Time between full inventory snapshots.
    pub full_every: Duration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            docker: Some(DockerConfig::default()),
            kube: None,
            kernel_log: Some(KernelLogConfig::default()),
            full_every: DEFAULT_FULL_EVERY,
        }
    }
}

/// The running inventory: take what changed every tick.
#[derive(Debug, Clone)]
pub struct InventoryHandle {
    tracker: Arc<Mutex<Tracker>>,
}

/// Updates a source may queue before it waits for the fold task.
const UPDATE_QUEUE: usize = 1024;

impl InventoryHandle {
    /// Starts the configured sources and the fold task on the current
    /// tokio runtime; they stop when `shutdown` turns true. With no source
    /// configured, [`InventoryHandle::take`] always answers `None`.
    pub fn start(
        config: InventoryConfig,
        shutdown: watch::Receiver<bool>,
    ) -> (InventoryHandle, Vec<JoinHandle<()>>) {
        let mut sources = Vec::new();
        if config.docker.is_some() {
            sources.push(Source::Docker);
        }
        if config.kube.is_some() {
            sources.push(Source::Kubernetes);
        }
        let tracker = Arc::new(Mutex::new(Tracker::new(&sources, config.full_every)));
        let (tx, mut rx) = mpsc::channel::<SourceUpdate>(UPDATE_QUEUE);
        let mut tasks = Vec::new();
        if let Some(docker_config) = config.docker {
            tasks.push(tokio::spawn(docker::run(
                docker_config,
                tx.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(kube_config) = config.kube {
            tasks.push(tokio::spawn(kube::run(
                kube_config,
                tx.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(kernel_config) = config.kernel_log {
            tasks.push(tokio::spawn(kernel_log::run(
                kernel_config,
                tx.clone(),
                shutdown.clone(),
            )));
        }
        drop(tx);
        let folding = Arc::clone(&tracker);
        tasks.push(tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                log_update(&update);
                folding
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply(update, unix_now_ns());
            }
        }));
        (InventoryHandle { tracker }, tasks)
    }

    /// What the next batch carries (see [`Tracker::take`]).
    pub fn take(&self) -> Option<v1::Inventory> {
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now())
    }

    /// The merged record of every known container, sorted by id.
    pub fn containers(&self) -> Vec<v1::ContainerInfo> {
        let tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<v1::ContainerInfo> = tracker.containers().cloned().collect();
        all.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        all
    }
}

/// Degradations are logged once per change of condition (sources send
/// them so); routine updates only at debug level.
fn log_update(update: &SourceUpdate) {
    match update {
        SourceUpdate::Degraded { source, reason } => {
            tracing::warn!(source = source.as_str(), "inventory degraded: {reason}");
        }
        SourceUpdate::Recovered { source } => {
            tracing::info!(source = source.as_str(), "inventory recovered");
        }
        SourceUpdate::Full { source, containers } => {
            tracing::debug!(
                source = source.as_str(),
                containers = containers.len(),
                "full inventory"
            );
        }
        _ => tracing::trace!(?update, "inventory update"),
    }
}

//! `upid-collector standalone`: the agent's sampler in the collector's own
//! process, storing straight into the writer (no network, no spool).
//!
//! The host is an agent named `standalone-<node>`, so its series look like
//! any agent's, inventory included: the Docker Engine, when one answers,
//! names the containers (see `upid_agent::inventory`). Sequence numbers continue from what the store holds, so a
//! restart never reuses one. A tick that cannot be stored (store error)
//! waits in a bounded in-memory queue and is retried on the next tick; when
//! the queue is full the oldest is dropped, counted and logged, and the
//! count travels in the next batch's spool stats like an agent's.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use upid::wire::v1::{Batch, Hello, SpoolStats};
use upid_agent::cgroup::identity::{CgroupGlob, GlobError};
use upid_agent::cgroup::reader::ReaderOptions;
use upid_agent::host::HostRoot;
use upid_agent::inventory::docker::DockerConfig;
use upid_agent::inventory::kernel_log::KernelLogConfig;
use upid_agent::inventory::{InventoryConfig, InventoryHandle};
use upid_agent::sampler::{Sampler, SamplerConfig, SamplerError};

use crate::api::ConnectedAgents;
use crate::config::SamplingSettings;
use crate::store::{IngestOutcome, WriterError, WriterHandle};

/// Ticks kept in memory while the store refuses writes (an hour at 10 s).
pub const MAX_QUEUED_TICKS: usize = 360;

/// Why standalone sampling could not start.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// A `--cgroup-glob` is invalid.
    #[error("--cgroup-glob {pattern:?}: {source}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// Why.
        source: GlobError,
    },
    /// The sampler could not start (no cgroup hierarchy found, /proc unreadable...).
    #[error("starting the sampler on {host_root}: {source}")]
    Sampler {
        /// The host root it looked at.
        host_root: String,
        /// Why.
        source: SamplerError,
    },
    /// The sampling thread died (a bug: the sampler must not panic).
    #[error("the sampling task failed: {0}")]
    SamplerTask(String),
    /// The store refused the host's hello.
    #[error("registering this host in the store: {0}")]
    Hello(WriterError),
}

/// The sampler and its identity, ready to run.
pub struct HostSampler {
    sampler: Sampler,
    agent_id: String,
    node_name: String,
    interval: Duration,
    inventory: InventoryConfig,
}

impl HostSampler {
    /// Starts the sampler with `settings` (reads the cgroup layout now, so
    /// a broken host fails before the collector says it is ready). The
    /// kernel log's read position is kept in `state_dir` (the store's
    /// directory), so a restarted collector replays the OOM kills logged
    /// while it was down; `None` starts at the log's end every time.
    pub fn new(
        settings: &SamplingSettings,
        state_dir: Option<&Path>,
    ) -> Result<HostSampler, StandaloneError> {
        let globs = settings
            .cgroup_globs
            .iter()
            .map(|pattern| {
                CgroupGlob::new(pattern).map_err(|source| StandaloneError::Glob {
                    pattern: pattern.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = SamplerConfig {
            host_root: HostRoot::new(&settings.host_root),
            node_name: settings.node_name.clone(),
            globs,
            reader: ReaderOptions {
                reset_peaks: settings.reset_peaks,
            },
        };
        let sampler = Sampler::new(config).map_err(|source| StandaloneError::Sampler {
            host_root: settings.host_root.display().to_string(),
            source,
        })?;
        let node_name = sampler.node_name().to_owned();
        Ok(HostSampler {
            sampler,
            agent_id: format!("standalone-{node_name}"),
            node_name,
            interval: settings.interval,
            inventory: InventoryConfig {
                docker: settings.docker.then(|| DockerConfig {
                    host: settings.docker_host.clone(),
                    ..DockerConfig::default()
                }),
                kernel_log: settings.kernel_log.then(|| KernelLogConfig {
                    state_dir: state_dir.map(Path::to_path_buf),
                    proc_root: HostRoot::new(&settings.host_root).proc(),
                    ..KernelLogConfig::default()
                }),
                ..InventoryConfig::default()
            },
        })
    }

    /// Uses `inventory` instead of the default (Docker on, Kubernetes off).
    #[must_use]
    pub fn with_inventory(mut self, inventory: InventoryConfig) -> HostSampler {
        self.inventory = inventory;
        self
    }

    /// The node name samples are stored under.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Samples every interval and stores each tick until `shutdown` turns
    /// true.
    pub async fn run(
        self,
        writer: WriterHandle,
        connected: Arc<ConnectedAgents>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), StandaloneError> {
        let HostSampler {
            mut sampler,
            agent_id,
            node_name,
            interval,
            inventory,
        } = self;
        let hello = Hello {
            agent_id: agent_id.clone(),
            node_name: node_name.clone(),
            agent_version: format!("collector-standalone/{}", env!("CARGO_PKG_VERSION")),
            sent_unix_ns: upid_agent::sampler::unix_now_ns(),
        };
        let mut next_seq = writer
            .hello(hello, upid_agent::sampler::unix_now_ns())
            .await
            .map_err(StandaloneError::Hello)?
            + 1;
        // The host counts as connected while it samples in this process.
        let _connected = connected.hold(&agent_id);
        tracing::info!(%agent_id, %node_name, next_seq, interval = %humantime::format_duration(interval), "sampling this host");
        let (inventory, _sources) = InventoryHandle::start(inventory, shutdown.clone());
        let mut queue: VecDeque<Batch> = VecDeque::new();
        let mut dropped_batches_total = 0u64;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                _ = ticker.tick() => {}
            }
            let (back, result) = tokio::task::spawn_blocking(move || {
                let result = sampler.sample();
                (sampler, result)
            })
            .await
            .map_err(|e| StandaloneError::SamplerTask(e.to_string()))?;
            sampler = back;
            let snapshot = match result {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    tracing::warn!(error = %e, "sampling this host failed; skipping the tick");
                    continue;
                }
            };
            if queue.len() >= MAX_QUEUED_TICKS {
                queue.pop_front();
                dropped_batches_total += 1;
                tracing::warn!(
                    dropped_batches_total,
                    "the store has refused writes for {MAX_QUEUED_TICKS} ticks; dropped the oldest"
                );
            }
            queue.push_back(Batch {
                agent_id: agent_id.clone(),
                node_name: node_name.clone(),
                seq: next_seq,
                snapshot: Some(snapshot.into()),
                inventory: inventory.take(),
                spool: Some(SpoolStats {
                    dropped_batches_total,
                    dropped_bytes_total: 0,
                    pending_batches: queue.len() as u64,
                    pending_bytes: 0,
                }),
            });
            next_seq += 1;
            while let Some(batch) = queue.front().cloned() {
                match writer.submit(batch).await {
                    Ok(IngestOutcome::Rejected(reason)) => {
                        tracing::warn!(%reason, "the store rejected this host's sample");
                        queue.pop_front();
                    }
                    Ok(_) => {
                        queue.pop_front();
                    }
                    Err(e @ (WriterError::Closed | WriterError::NoAnswer)) => {
                        tracing::info!(error = %e, "the store stopped; sampling ends");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, queued = queue.len(), "storing this host's sample failed; retrying next tick");
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

//! Who each sampled container is, and what happens to it: inventory from
//! the container runtime ([`docker`], through its API) and from Kubernetes
//! ([`kube`], the pods of this node), joined by container id in
//! [`tracker::Tracker`], which also turns changes into lifecycle events;
//! OOM kills also straight from the kernel's log ([`kernel_log`]).
//!
//! Sources run as tasks and send [`SourceUpdate`]s over a channel; the
//! tracker merges them and, every tick, hands the shipper what changed
//! (a `upid.v1.Inventory`), plus a full snapshot after start and
//! periodically. A source that cannot work here (no Docker socket, no
//! Kubernetes API, a missing permission) reports [`SourceUpdate::Degraded`]
//! once and the agent keeps sampling.

pub mod docker;
pub mod image;
pub mod kernel_log;
pub mod kube;
pub mod service;
pub mod tracker;

use tokio::sync::watch;
use upid::wire::v1;

pub use service::{InventoryConfig, InventoryHandle};
pub use tracker::Tracker;

/// Where an inventory record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The Docker Engine API (bollard).
    Docker,
    /// The Kubernetes API (kube): pods of this node and their owners.
    Kubernetes,
    /// The kernel log (`/dev/kmsg`): OOM kills only, never records.
    Kernel,
}

impl Source {
    /// Lower-case name, as in `ContainerInfo.sources`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Docker => "docker",
            Source::Kubernetes => "kubernetes",
            Source::Kernel => "kernel",
        }
    }
}

/// What a source tells the tracker.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "updates are moved once through a channel; boxing a record would only add an allocation"
)]
pub enum SourceUpdate {
    /// Everything this source knows now (after start, after a reconnect,
    /// on a periodic resync): its records not listed here are gone.
    Full {
        /// Which source.
        source: Source,
        /// Its containers, each with a non-empty `container_id`.
        containers: Vec<v1::ContainerInfo>,
    },
    /// One container is new or changed.
    Upsert {
        /// Which source.
        source: Source,
        /// The whole record (not a delta), with a non-empty `container_id`.
        container: v1::ContainerInfo,
    },
    /// One container was removed.
    Remove {
        /// Which source.
        source: Source,
        /// Its full id.
        container_id: String,
    },
    /// An event the source observed directly that no state diff can show
    /// (Docker's `oom` event for a process killed inside a container that
    /// keeps running). State changes (start, die, restart, health, image)
    /// are derived by the tracker from successive records; sources must not
    /// send those as events too.
    Event {
        /// Which source.
        source: Source,
        /// The event.
        event: v1::LifecycleEvent,
    },
    /// The source cannot deliver (no socket, API unreachable, permission
    /// missing); `reason` says what and what to do. Sent once per change of
    /// condition, not on every retry.
    Degraded {
        /// Which source.
        source: Source,
        /// What is wrong, for a person.
        reason: String,
    },
    /// The kernel log is followed for OOM kills from `since_unix_ns` on
    /// (`Some`), or no longer (`None`): while it is, every OOM kill after
    /// that time comes from it, and the runtimes' reports of the same
    /// kills are not passed on a second time.
    OomWatch {
        /// When following started; `None` when it stopped.
        since_unix_ns: Option<i64>,
    },
    /// The source works again after [`SourceUpdate::Degraded`].
    Recovered {
        /// Which source.
        source: Source,
    },
    /// The node's labels as this source knows them (the Kubernetes Node
    /// object's labels; the Docker Engine's labels), for pricing by node
    /// label. Sent at start and on every resync.
    NodeLabels {
        /// Which source.
        source: Source,
        /// Label → value.
        labels: std::collections::BTreeMap<String, String>,
    },
}

/// Current time in nanoseconds since the Unix epoch (0 if the clock is
/// before 1970).
pub fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Returns once `shutdown` is true or its sender is gone.
pub async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

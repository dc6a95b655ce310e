//! Docker inventory: who each Docker container is (name, image, labels,
//! compose service or Kubernetes pod, limits) and what state it is in,
//! from the Engine API through bollard.
//!
//! [`run`] sends a full snapshot, then follows the events stream instead
//! of polling: every container event that can change the record
//! (create, start, die, kill, stop, restart, pause, unpause, rename,
//! update, health_status) makes it inspect that container and send the
//! whole record; `destroy` (or a 404) sends a removal. Docker's `oom`
//! event is the one event passed on as such: a process OOM-killed inside
//! a container that keeps running shows in no record. Starts, exits and
//! health changes are left to the tracker, which derives them from
//! successive records. A full snapshot goes out again every
//! [`DockerConfig::resync`] and after every reconnect.
//!
//! When the daemon goes away (restart, crash, socket not mounted) the
//! source sends [`SourceUpdate::Degraded`] once, retries with exponential
//! backoff and jitter (capped at [`MAX_BACKOFF`]), and on success sends
//! [`SourceUpdate::Recovered`] and a full snapshot.
//!
//! The API version is negotiated, so older Engines (API 1.41, Docker
//! 20.10) work with bollard's newer default.

mod backoff;
mod record;
mod rfc3339;
mod session;

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

pub use record::container_info;

use super::shutdown_requested;
use super::{Source, SourceUpdate};
use backoff::Backoff;
use session::{End, Endpoint, Link, Session};

/// The Engine's socket when neither the config nor `DOCKER_HOST` names one.
pub const DEFAULT_SOCKET_PATH: &str = "/var/run/docker.sock";
/// Default interval between full resyncs.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(300);
/// First retry delay after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay (before jitter takes up to half of it off).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A session must have lasted this long for the backoff to start over:
/// a daemon that accepts connections and then fails at once (an events
/// endpoint refused by an authorization plugin, say) is retried ever more
/// slowly instead of every half second.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// How to reach Docker and how often to resync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// `unix:///path`, a bare socket path, or `tcp://host:port`. `None`:
    /// `DOCKER_HOST`, else [`DEFAULT_SOCKET_PATH`].
    pub host: Option<String>,
    /// Interval between full snapshots while connected.
    pub resync: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: None,
            resync: DEFAULT_RESYNC,
        }
    }
}

/// Runs until `shutdown` turns true (or its sender or `tx`'s receiver is
/// dropped): sends [`SourceUpdate::Full`] first, then `Upsert`, `Remove`
/// and `Event` as the events stream reports changes, a `Full` again every
/// `resync` and after every reconnect. Never returns early on errors: it
/// reports them as [`SourceUpdate::Degraded`] and keeps retrying.
pub async fn run(
    config: DockerConfig,
    tx: mpsc::Sender<SourceUpdate>,
    mut shutdown: watch::Receiver<bool>,
) {
    let env_host = std::env::var("DOCKER_HOST").ok();
    let endpoint = Endpoint::resolve(
        config.host.as_deref(),
        env_host.as_deref(),
        DEFAULT_SOCKET_PATH,
    );
    // A zero interval would spin; one second is already far more than needed.
    let resync = config.resync.max(Duration::from_secs(1));
    let mut link = Link {
        tx,
        degraded: false,
        last_event_ns: 0,
        skipped: 0,
    };
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut last_reason = String::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let session_start = tokio::time::Instant::now();
        let end = match Session::connect(&endpoint) {
            Ok(session) => session.run(&mut link, &shutdown, resync).await,
            Err(failure) => End::Failed {
                failure,
                connected: false,
            },
        };
        let (failure, connected) = match end {
            End::Stop => return,
            End::Failed { failure, connected } => (failure, connected),
        };
        if connected && session_start.elapsed() >= STABLE_SESSION {
            backoff.reset();
        }
        let reason = failure.to_string();
        if !link.degraded {
            warn!(%reason, "docker inventory degraded");
            let update = SourceUpdate::Degraded {
                source: Source::Docker,
                reason: reason.clone(),
            };
            if link.tx.send(update).await.is_err() {
                return;
            }
            link.degraded = true;
        } else if reason != last_reason {
            warn!(%reason, "docker inventory still degraded");
        } else {
            debug!(%reason, "docker inventory: retry failed");
        }
        last_reason = reason;
        let wait = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown_requested(&mut shutdown) => return,
            () = link.tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn missing_socket_degrades_once_and_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let (tx, mut rx) = mpsc::channel(8);
        let (stop, stop_rx) = watch::channel(false);
        let config = DockerConfig {
            host: Some(format!("unix://{}", socket.display())),
            ..DockerConfig::default()
        };
        let task = tokio::spawn(run(config, tx, stop_rx));
        let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap();
        assert_eq!(
            first,
            Some(SourceUpdate::Degraded {
                source: Source::Docker,
                reason: format!(
                    "no Docker socket at {} (set DOCKER_HOST or mount the socket); \
                     sampling continues without container names",
                    socket.display()
                ),
            })
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
        // The retries before the stop were quiet; the channel is closed.
        assert_eq!(rx.recv().await, None);
    }
}

//! One connection to the Docker Engine: negotiate the API version, list
//! and inspect every container (the full snapshot), then follow the
//! events stream, inspecting each container an event names, until the
//! stream or a call fails or the agent stops.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use upid::wire::v1;

use super::record::{container_info, is_full_id};
use crate::inventory::{Source, SourceUpdate, shutdown_requested};

/// Seconds a single API call may take before it counts as failed (the
/// events stream only needs its response headers within this time).
const CALL_TIMEOUT_S: u64 = 30;

/// Where the Engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket at this path.
    Unix(String),
    /// Anything else bollard understands (`tcp://`, `http://`, ...).
    Uri(String),
}

impl Endpoint {
    /// `configured` wins, then `docker_host_env` (the `DOCKER_HOST`
    /// variable), then `default_socket`. A bare path is a Unix socket.
    pub fn resolve(
        configured: Option<&str>,
        docker_host_env: Option<&str>,
        default_socket: &str,
    ) -> Endpoint {
        let host = [configured, docker_host_env]
            .into_iter()
            .flatten()
            .map(str::trim)
            .find(|h| !h.is_empty())
            .unwrap_or(default_socket);
        if let Some(path) = host.strip_prefix("unix://") {
            Endpoint::Unix(path.to_string())
        } else if host.starts_with('/') {
            Endpoint::Unix(host.to_string())
        } else {
            Endpoint::Uri(host.to_string())
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{path}"),
            Endpoint::Uri(uri) => f.write_str(uri),
        }
    }
}

/// Why a session ended without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The socket file does not exist (Docker not installed, not running,
    /// or not mounted into the agent's container).
    #[error(
        "no Docker socket at {path} (set DOCKER_HOST or mount the socket); sampling continues without container names"
    )]
    NoSocket {
        /// The path looked at.
        path: String,
    },
    /// bollard could not build a client for the endpoint.
    #[error("cannot connect to Docker at {endpoint}: {source}")]
    Connect {
        /// Where.
        endpoint: String,
        /// bollard's error.
        source: DockerError,
    },
    /// An API call failed (daemon down, restarting, permission denied).
    #[error("Docker API at {endpoint} failed ({call}): {source}; retrying")]
    Call {
        /// Where.
        endpoint: String,
        /// Which call, e.g. "list containers".
        call: &'static str,
        /// bollard's error.
        source: DockerError,
    },
    /// The events stream closed: the daemon stopped or restarted.
    #[error("Docker events stream at {endpoint} ended (daemon stopped or restarted?); retrying")]
    StreamEnded {
        /// Where.
        endpoint: String,
    },
}

/// How a session ended.
#[derive(Debug)]
pub enum End {
    /// Shutdown was requested or the tracker went away: stop for good.
    Stop,
    /// Something failed; `connected` is true when the session got as far
    /// as delivering a full snapshot (the backoff starts over then).
    Failed {
        /// What failed.
        failure: Failure,
        /// The session delivered a full snapshot before failing.
        connected: bool,
    },
}

/// What outlives a session: the channel to the tracker and what was
/// already told to it.
#[derive(Debug)]
pub struct Link {
    /// Updates to the tracker.
    pub tx: mpsc::Sender<SourceUpdate>,
    /// `Degraded` was sent and no `Recovered` since.
    pub degraded: bool,
    /// `timeNano` of the newest event handled: the next session asks the
    /// daemon to replay what came after it, and OOM events at or before
    /// it are not sent twice.
    pub last_event_ns: i64,
    /// Records and events skipped because the API sent something unusable.
    pub skipped: u64,
}

/// The tracker is gone: the agent is stopping.
struct Closed;

impl Link {
    async fn send(&self, update: SourceUpdate) -> Result<(), Closed> {
        self.tx.send(update).await.map_err(|_| Closed)
    }

    fn skip(&mut self, what: std::fmt::Arguments<'_>) {
        self.skipped += 1;
        warn!(
            skipped_total = self.skipped,
            "docker inventory: skipped {what}"
        );
    }
}

/// Why the inner loop stopped.
enum Stop {
    Closed,
    Shutdown,
    Failed(Failure),
}

impl From<Closed> for Stop {
    fn from(_: Closed) -> Stop {
        Stop::Closed
    }
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        Stop::Failed(f)
    }
}

/// One connection's state.
pub struct Session<'a> {
    endpoint: &'a Endpoint,
    docker: Docker,
    /// `RepoDigests` by image id, emptied at every full resync so a push
    /// or pull that added a digest is seen within one resync.
    repo_digests: HashMap<String, Vec<String>>,
}

impl<'a> Session<'a> {
    /// Connects (without talking to the daemon yet).
    pub fn connect(endpoint: &'a Endpoint) -> Result<Session<'a>, Failure> {
        let docker = match endpoint {
            Endpoint::Unix(path) => {
                if !Path::new(path).exists() {
                    return Err(Failure::NoSocket { path: path.clone() });
                }
                Docker::connect_with_unix(path, CALL_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
            }
            Endpoint::Uri(uri) => Docker::connect_with_host(uri)
                .map(|d| d.with_timeout(Duration::from_secs(CALL_TIMEOUT_S))),
        }
        .map_err(|source| match source {
            DockerError::SocketNotFoundError(path) => Failure::NoSocket { path },
            source => Failure::Connect {
                endpoint: endpoint.to_string(),
                source,
            },
        })?;
        Ok(Session {
            endpoint,
            docker,
            repo_digests: HashMap::new(),
        })
    }

    fn call_failed(&self, call: &'static str) -> impl FnOnce(DockerError) -> Failure + '_ {
        move |source| Failure::Call {
            endpoint: self.endpoint.to_string(),
            call,
            source,
        }
    }

    /// Runs until shutdown, a closed channel or a failure. Shutdown is
    /// watched around every step, so a hung API call cannot hold it up.
    pub async fn run(
        mut self,
        link: &mut Link,
        shutdown: &watch::Receiver<bool>,
        resync: Duration,
    ) -> End {
        let mut shutdown = shutdown.clone();
        let mut connected = false;
        let stop = tokio::select! {
            stop = self.follow(link, resync, &mut connected) => stop,
            () = shutdown_requested(&mut shutdown) => Stop::Shutdown,
        };
        match stop {
            Stop::Closed | Stop::Shutdown => End::Stop,
            Stop::Failed(failure) => End::Failed { failure, connected },
        }
    }

    async fn follow(&mut self, link: &mut Link, resync: Duration, connected: &mut bool) -> Stop {
        // Version negotiation: the Engine here may be older than bollard.
        let docker = match self.docker.clone().negotiate_version().await {
            Ok(d) => d,
            Err(e) => return Stop::Failed((self.call_failed("negotiate API version"))(e)),
        };
        self.docker = docker;
        let session_start_ns = crate::inventory::unix_now_ns();
        let containers = match self.full_list(link).await {
            Ok(c) => c,
            Err(stop) => return stop,
        };
        if link.degraded {
            if let Err(c) = link
                .send(SourceUpdate::Recovered {
                    source: Source::Docker,
                })
                .await
            {
                return c.into();
            }
            link.degraded = false;
            info!(endpoint = %self.endpoint, "docker inventory: connected again");
        } else {
            info!(endpoint = %self.endpoint, "docker inventory: connected");
        }
        if let Err(c) = link
            .send(SourceUpdate::Full {
                source: Source::Docker,
                containers,
            })
            .await
        {
            return c.into();
        }
        // The Engine's labels (`dockerd --label`) are this host's node
        // labels, for pricing by label; a failure only loses those.
        match self.docker.info().await {
            Ok(info) => {
                let labels = engine_labels(info.labels.as_deref().unwrap_or_default());
                if let Err(c) = link
                    .send(SourceUpdate::NodeLabels {
                        source: Source::Docker,
                        labels,
                    })
                    .await
                {
                    return c.into();
                }
            }
            Err(e) => tracing::debug!(error = %e, "docker info failed; no engine labels"),
        }
        *connected = true;

        // Events since the newest one already handled (a reconnect to a
        // daemon that kept running replays what was missed), or since just
        // before the listing above, so nothing between the two is lost.
        // (A second early: duplicates only cost an inspect.)
        let since_ns = if link.last_event_ns > 0 {
            link.last_event_ns
        } else {
            session_start_ns.saturating_sub(1_000_000_000)
        };
        let options = EventsOptions {
            since: Some(format!(
                "{}.{:09}",
                since_ns.div_euclid(1_000_000_000),
                since_ns.rem_euclid(1_000_000_000)
            )),
            until: None,
            filters: Some(HashMap::from([(
                "type".to_string(),
                vec!["container".to_string()],
            )])),
        };
        let mut events = self.docker.events(Some(options));
        let mut resync_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
        resync_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            tokio::select! {
                _ = resync_timer.tick() => {
                    let containers = match self.full_list(link).await {
                        Ok(c) => c,
                        Err(stop) => return stop,
                    };
                    debug!(count = containers.len(), "docker inventory: resync");
                    if let Err(c) = link.send(SourceUpdate::Full { source: Source::Docker, containers }).await {
                        return c.into();
                    }
                }
                item = events.next() => match item {
                    None => {
                        return Stop::Failed(Failure::StreamEnded { endpoint: self.endpoint.to_string() });
                    }
                    Some(Err(DockerError::JsonDataError { message, .. })) => {
                        link.skip(format_args!("an event that is not valid JSON: {message}"));
                    }
                    Some(Err(DockerError::JsonSerdeError { err })) => {
                        link.skip(format_args!("an event with unexpected fields: {err}"));
                    }
                    Some(Err(e)) => return Stop::Failed((self.call_failed("events stream"))(e)),
                    Some(Ok(event)) => {
                        if let Err(stop) = self.on_event(link, event).await {
                            return stop;
                        }
                    }
                },
            }
        }
    }

    /// Every container, stopped ones too, inspected.
    async fn full_list(&mut self, link: &mut Link) -> Result<Vec<v1::ContainerInfo>, Stop> {
        self.repo_digests.clear();
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(self.call_failed("list containers"))?;
        let mut containers = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(id) = summary.id.filter(|id| is_full_id(id)) else {
                link.skip(format_args!("a listed container without a full id"));
                continue;
            };
            if let Inspected::Found(info) = self.inspect(link, &id).await? {
                containers.push(*info);
            }
        }
        Ok(containers)
    }

    /// Inspects one container and maps it to its record.
    async fn inspect(&mut self, link: &mut Link, id: &str) -> Result<Inspected, Failure> {
        let inspected = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await;
        let inspect = match inspected {
            Ok(i) => i,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(Inspected::Gone),
            Err(e) if is_data_error(&e) || is_server_error(&e) => {
                link.skip(format_args!("container {id}: inspect failed: {e}"));
                return Ok(Inspected::Skipped);
            }
            Err(e) => return Err((self.call_failed("inspect container"))(e)),
        };
        let image_id = inspect.image.clone().unwrap_or_default();
        let digests = self.repo_digests_of(&image_id).await;
        match container_info(&inspect, &digests) {
            Some(info) => Ok(Inspected::Found(Box::new(info))),
            None => {
                link.skip(format_args!(
                    "container {id}: inspect result without a full id"
                ));
                Ok(Inspected::Skipped)
            }
        }
    }

    /// `RepoDigests` of an image, cached; empty when it cannot be had (an
    /// image removed under a container, a locally built image).
    async fn repo_digests_of(&mut self, image_id: &str) -> Vec<String> {
        if image_id.is_empty() {
            return Vec::new();
        }
        if let Some(d) = self.repo_digests.get(image_id) {
            return d.clone();
        }
        let digests = match self.docker.inspect_image(image_id).await {
            Ok(image) => image.repo_digests.unwrap_or_default(),
            Err(e) => {
                debug!(image_id, error = %e, "docker inventory: image inspect failed; no digest");
                Vec::new()
            }
        };
        self.repo_digests
            .insert(image_id.to_string(), digests.clone());
        digests
    }

    async fn on_event(&mut self, link: &mut Link, event: EventMessage) -> Result<(), Stop> {
        if event.typ != Some(EventMessageTypeEnum::CONTAINER) {
            return Ok(());
        }
        let action = event.action.as_deref().unwrap_or_default();
        // "health_status: healthy", "exec_start: sh -c …"
        let verb = action.split(':').next().unwrap_or_default().trim();
        let id = event
            .actor
            .as_ref()
            .and_then(|a| a.id.as_deref())
            .unwrap_or_default()
            .to_string();
        let time_ns = event
            .time_nano
            .or_else(|| event.time.and_then(|s| s.checked_mul(1_000_000_000)))
            .unwrap_or(0);
        if !is_full_id(&id) {
            link.skip(format_args!(
                "a {action:?} event without a full container id"
            ));
            return Ok(());
        }
        let seen_before = time_ns > 0 && time_ns <= link.last_event_ns;
        link.last_event_ns = link.last_event_ns.max(time_ns);
        match verb {
            "destroy" => {
                link.send(SourceUpdate::Remove {
                    source: Source::Docker,
                    container_id: id,
                })
                .await?;
            }
            "oom" => {
                if !seen_before {
                    let event = v1::LifecycleEvent {
                        timestamp_unix_ns: if time_ns > 0 {
                            time_ns
                        } else {
                            crate::inventory::unix_now_ns()
                        },
                        container_id: id.clone(),
                        kind: v1::EventKind::Oom as i32,
                        detail: "the kernel OOM killer killed a process in the container"
                            .to_string(),
                        ..Default::default()
                    };
                    link.send(SourceUpdate::Event {
                        source: Source::Docker,
                        event,
                    })
                    .await?;
                }
                self.upsert(link, id).await?;
            }
            "create" | "start" | "die" | "kill" | "stop" | "restart" | "pause" | "unpause"
            | "rename" | "update" | "health_status" => self.upsert(link, id).await?,
            // attach, exec_*, resize, top, commit, copy, export, ...: no
            // change to what the inventory holds.
            _ => {}
        }
        Ok(())
    }

    /// Inspects `id` and sends its record, or its removal when it is gone.
    async fn upsert(&mut self, link: &mut Link, id: String) -> Result<(), Stop> {
        match self.inspect(link, &id).await? {
            Inspected::Found(container) => {
                link.send(SourceUpdate::Upsert {
                    source: Source::Docker,
                    container: *container,
                })
                .await?;
            }
            Inspected::Gone => {
                link.send(SourceUpdate::Remove {
                    source: Source::Docker,
                    container_id: id,
                })
                .await?;
            }
            // Unusable answer, not a removal: the tracker keeps what it has.
            Inspected::Skipped => {}
        }
        Ok(())
    }
}

/// What inspecting one container gave.
enum Inspected {
    /// Its record.
    Found(Box<v1::ContainerInfo>),
    /// 404: it no longer exists.
    Gone,
    /// The daemon answered something unusable (counted, logged).
    Skipped,
}

fn is_data_error(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::JsonDataError { .. } | DockerError::JsonSerdeError { .. }
    )
}

/// An HTTP error status from a daemon that answered (not a transport
/// failure): one container's problem, not the connection's.
fn is_server_error(e: &DockerError) -> bool {
    matches!(e, DockerError::DockerResponseServerError { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_prefers_config_then_env_then_default() {
        let d = "/var/run/docker.sock";
        assert_eq!(
            Endpoint::resolve(None, None, d),
            Endpoint::Unix(d.to_string())
        );
        assert_eq!(
            Endpoint::resolve(None, Some("unix:///run/user/1000/docker.sock"), d),
            Endpoint::Unix("/run/user/1000/docker.sock".to_string())
        );
        assert_eq!(
            Endpoint::resolve(Some("/tmp/x.sock"), Some("tcp://10.0.0.1:2375"), d),
            Endpoint::Unix("/tmp/x.sock".to_string())
        );
        assert_eq!(
            Endpoint::resolve(None, Some("tcp://10.0.0.1:2375"), d),
            Endpoint::Uri("tcp://10.0.0.1:2375".to_string())
        );
        assert_eq!(
            Endpoint::resolve(Some(" "), Some(""), d),
            Endpoint::Unix(d.to_string())
        );
    }

    #[test]
    fn missing_socket_says_what_to_do() {
        let endpoint = Endpoint::Unix("/nonexistent/docker.sock".to_string());
        let Err(failure) = Session::connect(&endpoint) else {
            panic!("connected to a socket that does not exist");
        };
        assert_eq!(
            failure.to_string(),
            "no Docker socket at /nonexistent/docker.sock (set DOCKER_HOST or mount the socket); \
             sampling continues without container names"
        );
    }
}

/// Docker Engine labels (`key=value` strings) as a map; an entry without
/// `=` is a key with an empty value.
pub(crate) fn engine_labels(raw: &[String]) -> std::collections::BTreeMap<String, String> {
    raw.iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (l.trim().to_owned(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod engine_label_tests {
    use super::engine_labels;

    #[test]
    fn engine_labels_are_key_value_pairs() {
        let raw = vec![
            "pool=spot".to_owned(),
            "node.kubernetes.io/instance-type=m5.large".to_owned(),
            "flag".to_owned(),
            " ".to_owned(),
        ];
        let m = engine_labels(&raw);
        assert_eq!(m.get("pool").map(String::as_str), Some("spot"));
        assert_eq!(
            m.get("node.kubernetes.io/instance-type")
                .map(String::as_str),
            Some("m5.large")
        );
        assert_eq!(m.get("flag").map(String::as_str), Some(""));
        assert_eq!(m.len(), 3);
    }
}

//! Applying an image update to one Docker container, proven by the health
//! gate, with automatic rollback.
//!
//! [`apply`] does, in order:
//! 1. Checks before touching anything: the container exists and runs (not
//!    paused, not restarting), was not started with `--rm` (stopping it
//!    would delete it, leaving nothing to roll back to), no container is
//!    already called `<name>-upid-rollback`, and the new image is on the
//!    host (pulled when it is not; a failed pull is an error here, with
//!    the old container untouched).
//! 2. BEFORE window: watches the running container for
//!    [`ApplyOptions::before_window`] (restarts, OOM kills, exits, health,
//!    CPU and memory from one-shot `stats` reads every
//!    [`ApplyOptions::poll_interval`]).
//! 3. Recreates it with the new image, keeping its configuration (what is
//!    kept and what the new image supplies is documented in
//!    `docker_apply/recreate.rs`): renames the old container to
//!    `<name>-upid-rollback`, stops it, creates the new one under the
//!    original name, connects its other networks, starts it.
//! 4. AFTER window: waits until the health check decides (healthy or
//!    unhealthy, polled until [`ApplyOptions::health_timeout`]), then
//!    watches for [`ApplyOptions::gate_window`] more, reading CPU and memory
//!    only then, so start-up work is not counted as a regression. Either
//!    phase ends early once the container is plainly broken (unhealthy,
//!    exited for good, or removed).
//! 5. Runs the gate ([`super::gate::verdict`]):
//!    - `healthy`: removes the old container (keeps it, stopped, with
//!      [`ApplyOptions::keep_old`]);
//!    - `failed`: rolls back: stops and removes the new container, renames
//!      the old one back, starts it, and checks it runs (and is healthy when
//!      it has a healthcheck);
//!    - `degraded`: by default keeps the new container AND the old one,
//!      stopped, under `<name>-upid-rollback`, and says how to roll back by
//!      hand: a degraded update works (it only uses more, or its health
//!      could not be proven in time), so undoing it automatically would
//!      throw away a working update on a judgement call, but the way back
//!      stays one command away. [`ApplyOptions::rollback_on_degraded`]
//!      rolls back instead.
//!
//! A container kept aside gets the restart policy `no`, so a daemon restart
//! cannot start it next to its replacement (the hand rollback commands in
//! the `old_container_kept` event restore the policy).
//!
//! Every step is a timestamped [`UpdateEvent`]. When a Docker call fails
//! mid-way, everything done so far is undone (the old container runs again
//! under its name) and the error says so; when even that fails, the error
//! says what state things are in and the commands that finish the job.
//!
//! Removing containers never removes volumes: the new container is given
//! the old one's unnamed volumes by name, so they hold the same data; an
//! unnamed volume that only the new image declares is left behind when
//! the new container is rolled back (`docker volume prune` removes it).

mod observe;
mod recreate;

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, ContainerUpdateBody, ImageInspect, NetworkConnectRequest,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, RemoveContainerOptions, RenameContainerOptions,
    StopContainerOptions,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::event::{EventLog, UpdateEvent, UpdateEventKind};
use super::gate::{self, GateVerdict, HealthStatus, Thresholds, Verdict, Window};
use super::reference::ImageReference;
use observe::{Observer, Until, is_not_found};

/// Appended to a container's name while it is kept aside for a rollback.
pub const ROLLBACK_SUFFIX: &str = "-upid-rollback";

/// Default [`ApplyOptions::before_window`]: 10 s.
pub const DEFAULT_BEFORE_WINDOW: Duration = Duration::from_secs(10);
/// Default [`ApplyOptions::health_timeout`]: 120 s, enough for Docker's
/// default healthcheck (30 s interval, 3 retries) to report unhealthy.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// Default [`ApplyOptions::gate_window`]: 30 s.
pub const DEFAULT_GATE_WINDOW: Duration = Duration::from_secs(30);
/// Default [`ApplyOptions::poll_interval`]: 500 ms.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How to apply an update. Every field has a documented default.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOptions {
    /// How long to watch the old container before the change (default
    /// [`DEFAULT_BEFORE_WINDOW`]).
    pub before_window: Duration,
    /// Longest wait for the new container's health check to say healthy or
    /// unhealthy (default [`DEFAULT_HEALTH_TIMEOUT`]); also the wait for the
    /// old container after a rollback. Without a healthcheck there is no
    /// wait.
    pub health_timeout: Duration,
    /// How long to watch the new container once its health decided
    /// (default [`DEFAULT_GATE_WINDOW`]).
    pub gate_window: Duration,
    /// Time between two reads of state, health, CPU and memory (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    pub poll_interval: Duration,
    /// Grace period when stopping a container before it is killed;
    /// `None` (default): the container's own `StopTimeout`, else Docker's
    /// 10 s.
    pub stop_timeout: Option<Duration>,
    /// Keep the old container (stopped, renamed `<name>-upid-rollback`)
    /// after a healthy update instead of removing it (default false).
    pub keep_old: bool,
    /// Roll back a `degraded` update too (default false: keep it, warn, and
    /// keep the old container aside for a rollback by hand).
    pub rollback_on_degraded: bool,
    /// Pull the new image when it is not on the host (default true).
    pub pull_if_missing: bool,
    /// The gate's thresholds.
    pub thresholds: Thresholds,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            before_window: DEFAULT_BEFORE_WINDOW,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            gate_window: DEFAULT_GATE_WINDOW,
            poll_interval: DEFAULT_POLL_INTERVAL,
            stop_timeout: None,
            keep_old: false,
            rollback_on_degraded: false,
            pull_if_missing: true,
            thresholds: Thresholds::default(),
        }
    }
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// The container's name (without Docker's leading `/`).
    pub container: String,
    /// The image it ran before, as it was created with (`app:1.0`).
    pub from_image: String,
    /// That image's id (`sha256:…`).
    pub from_image_id: String,
    /// The image it was updated to, as given.
    pub to_image: String,
    /// That image's id.
    pub to_image_id: String,
    /// The old container's id. After a rollback it runs again under the
    /// original name.
    pub old_container_id: String,
    /// The new container's id (removed again after a rollback).
    pub new_container_id: String,
    /// The old container's BEFORE window.
    pub before: Window,
    /// The new container's AFTER window.
    pub after: Window,
    /// The gate's verdict with its evidence.
    pub gate: GateVerdict,
    /// The old container is back under its name and running.
    pub rolled_back: bool,
    /// The name the old container is kept under, stopped, when it was
    /// neither removed nor rolled back to.
    pub old_container_kept_as: Option<String>,
    /// Every step, in order.
    pub events: Vec<UpdateEvent>,
}

/// Why an update could not be applied. Each message says what state the
/// containers are in and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// No such container.
    #[error(
        "no container {container:?} on this Docker host (docker ps -a lists them); nothing was changed"
    )]
    ContainerNotFound {
        /// The name or id given.
        container: String,
    },
    /// The container is not running, so there is no BEFORE to compare with.
    #[error(
        "container {container} is {status}, not running: an update is only applied to a running container, so the health gate has a before to compare with; start it first (docker start {container}); nothing was changed"
    )]
    NotRunning {
        /// The container.
        container: String,
        /// Docker's status word (`exited`, `paused`, `restarting`...).
        status: String,
    },
    /// Started with `--rm`: stopping it would delete it.
    #[error(
        "container {container} was started with --rm: stopping it would delete it and leave nothing to roll back to; recreate it without --rm first; nothing was changed"
    )]
    AutoRemove {
        /// The container.
        container: String,
    },
    /// The name the old container would be kept under is taken.
    #[error(
        "a container named {name} already exists (left by an earlier update?): remove it (docker rm {name}) or rename it, then retry; {container} was not changed"
    )]
    RollbackNameTaken {
        /// The container.
        container: String,
        /// `<container>-upid-rollback`.
        name: String,
    },
    /// The new image is not on the host and could not be pulled.
    #[error(
        "image {image} is not usable: {reason}; {container} was not changed (docker pull or docker load the image, then retry)"
    )]
    ImageUnavailable {
        /// The container.
        container: String,
        /// The image as given.
        image: String,
        /// What failed.
        reason: String,
        /// Events so far.
        events: Vec<UpdateEvent>,
    },
    /// The container already runs that very image.
    #[error("container {container} already runs {image} ({image_id}); nothing to do")]
    AlreadyUpToDate {
        /// The container.
        container: String,
        /// The image as given.
        image: String,
        /// Its id.
        image_id: String,
    },
    /// A Docker call failed; `state` says what was undone.
    #[error("Docker API failed to {step}: {source}; {state}")]
    Docker {
        /// What was being done.
        step: String,
        /// bollard's error (boxed: it is large).
        source: Box<DockerError>,
        /// The state things are left in, and what to do.
        state: String,
        /// Events so far, the undo included.
        events: Vec<UpdateEvent>,
    },
    /// The new container was created but Docker could not start it (a
    /// missing entrypoint, a port taken...); it was removed again.
    #[error("the new container for {container} ({image}) did not start: {source}; {state}")]
    NewContainerDidNotStart {
        /// The container.
        container: String,
        /// The new image.
        image: String,
        /// bollard's error (Docker's message), boxed.
        source: Box<DockerError>,
        /// The state things are left in, and what to do.
        state: String,
        /// Events so far, the undo included.
        events: Vec<UpdateEvent>,
    },
    /// The gate asked for a rollback and a Docker call of the rollback
    /// failed.
    #[error("rolling back {container} failed to {step}: {source}; {state}")]
    RollbackFailed {
        /// The container.
        container: String,
        /// What was being done.
        step: String,
        /// bollard's error (boxed: it is large).
        source: Box<DockerError>,
        /// The state things are left in, and what to do.
        state: String,
        /// Events so far (the gate's verdict included).
        events: Vec<UpdateEvent>,
    },
}

impl ApplyError {
    /// The events recorded before the error (empty when it happened before
    /// anything was done).
    pub fn events(&self) -> &[UpdateEvent] {
        match self {
            ApplyError::ImageUnavailable { events, .. }
            | ApplyError::Docker { events, .. }
            | ApplyError::NewContainerDidNotStart { events, .. }
            | ApplyError::RollbackFailed { events, .. } => events,
            _ => &[],
        }
    }
}

/// The first 12 characters of an id (`sha256:` dropped), as Docker shows it.
fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

fn describe_window(w: &Window) -> String {
    let cpu = w
        .cpu_cores_per_replica
        .map_or("CPU not measured".to_string(), |c| format!("{c:.3} cores"));
    let memory = w
        .memory_bytes_per_replica
        .map_or("memory not measured".to_string(), gate::bytes_words);
    format!(
        "{} over {}: {} restarts, {} OOM kills, {} non-zero exits, health {}{}, {cpu}, {memory} ({} samples)",
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
        w.resource_samples
    )
}

/// How far the swap got, so it can be undone exactly.
struct Swap {
    docker: Docker,
    name: String,
    aside: String,
    old_id: String,
    from_image: String,
    stop_t: Option<i32>,
    renamed: bool,
    stopped: bool,
    new_id: Option<String>,
}

impl Swap {
    /// Undoes what was done, newest first: removes the new container,
    /// renames the old one back, starts it. Stops at the first failure,
    /// leaving the flags saying what is still to be undone.
    async fn undo(&mut self) -> Result<(), (String, DockerError)> {
        if let Some(id) = self.new_id.clone() {
            // A graceful stop first; errors are fine (it may never have run).
            let _ = self
                .docker
                .stop_container(
                    &id,
                    Some(StopContainerOptions {
                        t: self.stop_t,
                        signal: None,
                    }),
                )
                .await;
            let options = RemoveContainerOptions {
                v: false,
                force: true,
                link: false,
            };
            match self.docker.remove_container(&id, Some(options)).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err((format!("remove the new container {}", short(&id)), e));
                }
            }
            self.new_id = None;
        }
        if self.renamed {
            let options = RenameContainerOptions {
                name: self.name.clone(),
            };
            if let Err(e) = self.docker.rename_container(&self.old_id, options).await {
                return Err((
                    format!(
                        "rename the old container {} back to {}",
                        self.aside, self.name
                    ),
                    e,
                ));
            }
            self.renamed = false;
        }
        if self.stopped {
            match self.docker.start_container(&self.old_id, None).await {
                Ok(()) => {}
                // 304: already started.
                Err(DockerError::DockerResponseServerError {
                    status_code: 304, ..
                }) => {}
                Err(e) => {
                    return Err((format!("start the old container {}", self.name), e));
                }
            }
            self.stopped = false;
        }
        Ok(())
    }

    /// What is left to undo, in words and as commands.
    fn state(&self) -> String {
        let mut facts = Vec::new();
        let mut todo = Vec::new();
        if let Some(id) = &self.new_id {
            facts.push(format!(
                "the new container {} still exists under the name {}",
                short(id),
                self.name
            ));
            todo.push(format!("docker rm -f {}", short(id)));
        }
        if self.renamed {
            facts.push(format!(
                "the old container {} is named {}",
                short(&self.old_id),
                self.aside
            ));
            todo.push(format!("docker rename {} {}", self.aside, self.name));
        }
        if self.stopped {
            facts.push(format!(
                "the old container {} is stopped",
                short(&self.old_id)
            ));
            todo.push(format!("docker start {}", short(&self.old_id)));
        }
        if facts.is_empty() {
            format!(
                "undone: {} ({}) runs again with {}",
                self.name,
                short(&self.old_id),
                self.from_image
            )
        } else {
            format!(
                "NOT undone: {}; to restore it by hand: {}",
                facts.join(", "),
                todo.join(" && ")
            )
        }
    }

    /// Undoes after `step` failed; logs it; returns the state in words.
    async fn abort(&mut self, step: &str, error: &DockerError, log: &mut EventLog) -> String {
        let undo = self.undo().await;
        let state = self.state();
        let message = match undo {
            Ok(()) => format!("failed to {step} ({error}); {state}"),
            Err((undo_step, undo_error)) => format!(
                "failed to {step} ({error}); undoing it then failed to {undo_step} ({undo_error}); {state}"
            ),
        };
        log.push(UpdateEventKind::ApplyAborted, message);
        state
    }
}

/// Makes sure `image` is on the host, pulling it when allowed.
async fn ensure_image(
    docker: &Docker,
    image: &str,
    pull: bool,
    log: &mut EventLog,
) -> Result<ImageInspect, ApplyError> {
    let unavailable = |reason: String, log: &EventLog| ApplyError::ImageUnavailable {
        container: log.container.clone(),
        image: image.to_string(),
        reason,
        events: log.events.clone(),
    };
    match docker.inspect_image(image).await {
        Ok(i) => return Ok(i),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(unavailable(format!("inspecting it failed: {e}"), log)),
    }
    if !pull {
        return Err(unavailable(
            "it is not on this Docker host and pulling is turned off".to_string(),
            log,
        ));
    }
    let reference = ImageReference::parse(image).map_err(|e| unavailable(e.to_string(), log))?;
    let tag = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".to_string());
    let options = CreateImageOptions {
        from_image: Some(reference.name()),
        tag: Some(tag),
        ..CreateImageOptions::default()
    };
    let mut stream = docker.create_image(Some(options), None, None);
    while let Some(item) = stream.next().await {
        let failure = match item {
            Ok(info) => info
                .error_detail
                .map(|d| d.message.unwrap_or_else(|| "no message".to_string())),
            Err(e) => Some(e.to_string()),
        };
        if let Some(failure) = failure {
            return Err(unavailable(
                format!("it is not on this Docker host and pulling it failed: {failure}"),
                log,
            ));
        }
    }
    match docker.inspect_image(image).await {
        Ok(i) => {
            log.push(
                UpdateEventKind::ImagePulled,
                format!(
                    "{image} was not on this host: pulled {} ({})",
                    reference,
                    short(i.id.as_deref().unwrap_or_default())
                ),
            );
            Ok(i)
        }
        Err(e) => Err(unavailable(
            format!("pulled, but inspecting it then failed: {e}"),
            log,
        )),
    }
}

/// The checks that need no change: returns the container's name, id,
/// image reference and image id.
fn preflight(
    container: &str,
    old: &ContainerInspectResponse,
) -> Result<(String, String, String, String), ApplyError> {
    let name = old
        .name
        .as_deref()
        .unwrap_or(container)
        .trim_start_matches('/')
        .to_string();
    let id = old.id.clone().unwrap_or_default();
    let from_image_id = old.image.clone().unwrap_or_default();
    let from_image = old
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| from_image_id.clone());
    let state = old.state.clone().unwrap_or_default();
    let running = state.running.unwrap_or(false)
        && !state.paused.unwrap_or(false)
        && !state.restarting.unwrap_or(false);
    if !running {
        return Err(ApplyError::NotRunning {
            container: name,
            status: state
                .status
                .map_or_else(|| "not running".to_string(), |s| s.to_string()),
        });
    }
    if old
        .host_config
        .as_ref()
        .and_then(|h| h.auto_remove)
        .unwrap_or(false)
    {
        return Err(ApplyError::AutoRemove { container: name });
    }
    Ok((name, id, from_image, from_image_id))
}

/// Applies `new_image` to the running container `container` (name or id):
/// records a BEFORE window, recreates the container with the new image
/// and its configuration, runs the health gate over an AFTER window, and
/// removes the old container, keeps it, or rolls back to it, as the
/// verdict and `options` say (see the module documentation).
///
/// `docker` may be any connection; the API version is negotiated here, so
/// older Engines work. Pulls use its timeout (bollard's default: 120 s).
pub async fn apply(
    docker: &Docker,
    container: &str,
    new_image: &str,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let nothing = "nothing was changed".to_string();
    let docker = docker
        .clone()
        .negotiate_version()
        .await
        .map_err(|source| ApplyError::Docker {
            step: "negotiate the API version".to_string(),
            source: Box::new(source),
            state: nothing.clone(),
            events: Vec::new(),
        })?;

    let old = match docker.inspect_container(container, None).await {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => {
            return Err(ApplyError::ContainerNotFound {
                container: container.to_string(),
            });
        }
        Err(source) => {
            return Err(ApplyError::Docker {
                step: format!("inspect container {container}"),
                source: Box::new(source),
                state: nothing,
                events: Vec::new(),
            });
        }
    };
    let (name, old_id, from_image, from_image_id) = preflight(container, &old)?;
    let aside = format!("{name}{ROLLBACK_SUFFIX}");
    match docker.inspect_container(&aside, None).await {
        Ok(_) => {
            return Err(ApplyError::RollbackNameTaken {
                container: name,
                name: aside,
            });
        }
        Err(e) if is_not_found(&e) => {}
        Err(source) => {
            return Err(ApplyError::Docker {
                step: format!("look for a container named {aside}"),
                source: Box::new(source),
                state: nothing,
                events: Vec::new(),
            });
        }
    }

    let mut log = EventLog::new(name.clone(), from_image.clone(), new_image.to_string());
    log.push(
        UpdateEventKind::ApplyStarted,
        format!(
            "updating {name} ({}) from {from_image} ({}) to {new_image}",
            short(&old_id),
            short(&from_image_id)
        ),
    );
    let new_image_info =
        ensure_image(&docker, new_image, options.pull_if_missing, &mut log).await?;
    let to_image_id = new_image_info.id.clone().unwrap_or_default();
    if to_image_id == from_image_id {
        return Err(ApplyError::AlreadyUpToDate {
            container: name,
            image: new_image.to_string(),
            image_id: to_image_id,
        });
    }
    let old_image_config = match docker.inspect_image(&from_image_id).await {
        Ok(i) => i.config,
        Err(e) => {
            log.push(
                UpdateEventKind::Warning,
                format!(
                    "the old image {} could not be inspected ({e}): every setting of {name} is kept as it was, including what it got from the old image",
                    short(&from_image_id)
                ),
            );
            None
        }
    };

    // BEFORE window.
    let mut before_watch = Observer::start(&docker, &old_id);
    if let Err(source) = before_watch
        .watch(
            Instant::now() + options.before_window,
            options.poll_interval,
            Until::Deadline,
            true,
        )
        .await
    {
        return Err(ApplyError::Docker {
            step: format!("watch {name} before the update"),
            source: Box::new(source),
            state: nothing,
            events: log.events,
        });
    }
    if !before_watch.running() {
        return Err(ApplyError::NotRunning {
            container: name,
            status: before_watch.state_words(),
        });
    }
    let before = before_watch.window(&from_image);
    log.push(UpdateEventKind::BeforeRecorded, describe_window(&before));

    // The swap.
    let plan = recreate::plan(&old, old_image_config.as_ref(), new_image);
    let stop_t = options
        .stop_timeout
        .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX));
    let mut swap = Swap {
        docker: docker.clone(),
        name: name.clone(),
        aside: aside.clone(),
        old_id: old_id.clone(),
        from_image: from_image.clone(),
        stop_t,
        renamed: false,
        stopped: false,
        new_id: None,
    };
    macro_rules! abort {
        ($step:expr, $source:expr) => {{
            let step: String = $step;
            let source: DockerError = $source;
            let state = swap.abort(&step, &source, &mut log).await;
            return Err(ApplyError::Docker {
                step,
                source: Box::new(source),
                state,
                events: log.events,
            });
        }};
    }

    let rename = RenameContainerOptions {
        name: aside.clone(),
    };
    if let Err(e) = docker.rename_container(&old_id, rename).await {
        abort!(format!("rename {name} to {aside}"), e);
    }
    swap.renamed = true;
    log.push(
        UpdateEventKind::OldContainerRenamed,
        format!("old container {} renamed {name} → {aside}", short(&old_id)),
    );
    let stop = StopContainerOptions {
        t: stop_t,
        signal: None,
    };
    if let Err(e) = docker.stop_container(&old_id, Some(stop)).await {
        abort!(format!("stop the old container {aside}"), e);
    }
    swap.stopped = true;
    log.push(
        UpdateEventKind::OldContainerStopped,
        format!("old container {} stopped", short(&old_id)),
    );
    let create = CreateContainerOptions {
        name: Some(name.clone()),
        platform: String::new(),
    };
    let created = match docker.create_container(Some(create), plan.body).await {
        Ok(c) => c,
        Err(e) => abort!(
            format!("create the new container {name} from {new_image}"),
            e
        ),
    };
    let new_id = created.id.clone();
    swap.new_id = Some(new_id.clone());
    let mut message = format!(
        "new container {} created as {name} from {new_image} ({}); {}",
        short(&new_id),
        short(&to_image_id),
        plan.notes.join("; ")
    );
    if !created.warnings.is_empty() {
        message.push_str(&format!("; Docker warned: {}", created.warnings.join("; ")));
    }
    log.push(UpdateEventKind::ContainerRecreated, message);
    for (network, endpoint) in plan.extra_networks {
        let request = NetworkConnectRequest {
            container: new_id.clone(),
            endpoint_config: Some(endpoint),
        };
        if let Err(e) = docker.connect_network(&network, request).await {
            abort!(format!("connect the new container to network {network}"), e);
        }
    }
    let mut after_watch = Observer::start(&docker, &new_id);
    if let Err(source) = docker.start_container(&new_id, None).await {
        let step = format!("start the new container {name}");
        let state = swap.abort(&step, &source, &mut log).await;
        return Err(ApplyError::NewContainerDidNotStart {
            container: name,
            image: new_image.to_string(),
            source: Box::new(source),
            state,
            events: log.events,
        });
    }
    log.push(
        UpdateEventKind::ContainerStarted,
        format!("new container {} started", short(&new_id)),
    );

    // AFTER window: health first, then the gate window.
    let health_deadline = Instant::now() + options.health_timeout;
    if let Err(e) = after_watch
        .watch(
            health_deadline,
            options.poll_interval,
            Until::HealthDecided,
            false,
        )
        .await
    {
        abort!(format!("watch the new container {name}"), e);
    }
    if !after_watch.broken()
        && let Err(e) = after_watch
            .watch(
                Instant::now() + options.gate_window,
                options.poll_interval,
                Until::Broken,
                true,
            )
            .await
    {
        abort!(format!("watch the new container {name}"), e);
    }
    let after = after_watch.window(new_image);
    let verdict = gate::verdict(&before, &after, &options.thresholds);
    let roll_back = match verdict.verdict {
        Verdict::Healthy => false,
        Verdict::Degraded => options.rollback_on_degraded,
        Verdict::Failed => true,
    };
    let mut message = format!("{}. After: {}", verdict.summary, describe_window(&after));
    if let Some(output) = after_watch
        .last_health_output()
        .filter(|_| verdict.verdict != Verdict::Healthy)
    {
        message.push_str(&format!("; {output}"));
    }
    if let Some(lost) = after_watch.events_lost() {
        message.push_str(&format!(
            "; {lost}, so OOM kills and exits come from inspect alone"
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
    log.push(kind, message);

    let mut report = ApplyReport {
        container: name.clone(),
        from_image: from_image.clone(),
        from_image_id,
        to_image: new_image.to_string(),
        to_image_id,
        old_container_id: old_id.clone(),
        new_container_id: new_id.clone(),
        before,
        after,
        gate: verdict,
        rolled_back: false,
        old_container_kept_as: None,
        events: Vec::new(),
    };

    if roll_back {
        log.push(
            UpdateEventKind::RollbackStarted,
            format!(
                "stopping and removing {} ({new_image}), renaming {aside} back to {name}, starting it",
                short(&new_id)
            ),
        );
        if let Err((step, source)) = swap.undo().await {
            let state = swap.state();
            log.push(
                UpdateEventKind::RollbackFailed,
                format!("failed to {step} ({source}); {state}"),
            );
            return Err(ApplyError::RollbackFailed {
                container: name,
                step,
                source: Box::new(source),
                state,
                events: log.events,
            });
        }
        // The old container runs again: is it well?
        let mut check = Observer::start(&docker, &old_id);
        let checked = check
            .watch(
                Instant::now() + options.health_timeout,
                options.poll_interval,
                Until::HealthDecided,
                false,
            )
            .await;
        match checked {
            Ok(()) if check.running() && check.health() != HealthStatus::Unhealthy => {
                report.rolled_back = true;
                log.push(
                    UpdateEventKind::RolledBack,
                    format!(
                        "{name} ({}) runs again with {from_image}: {}",
                        short(&old_id),
                        check.state_words()
                    ),
                );
            }
            Ok(()) => log.push(
                UpdateEventKind::RollbackFailed,
                format!(
                    "{name} ({}) was restored under its name with {from_image} but is {}: see docker logs {name}",
                    short(&old_id),
                    check.state_words()
                ),
            ),
            Err(e) => log.push(
                UpdateEventKind::RollbackFailed,
                format!(
                    "{name} ({}) was restored under its name and started, but inspecting it failed ({e}): check it with docker ps -a",
                    short(&old_id)
                ),
            ),
        }
    } else if options.keep_old || report.gate.verdict == Verdict::Degraded {
        report.old_container_kept_as = Some(aside.clone());
        keep_aside(&docker, &old, &old_id, &name, &aside, &mut log).await;
    } else {
        let remove = RemoveContainerOptions {
            v: false,
            force: false,
            link: false,
        };
        match docker.remove_container(&old_id, Some(remove)).await {
            Ok(()) => log.push(
                UpdateEventKind::OldContainerRemoved,
                format!(
                    "old container {} ({aside}) removed; its volumes were kept",
                    short(&old_id)
                ),
            ),
            Err(e) => {
                report.old_container_kept_as = Some(aside.clone());
                log.push(
                    UpdateEventKind::Warning,
                    format!(
                        "the update is in place, but the old container {} could not be removed ({e}): it is stopped as {aside}; remove it with docker rm {aside}",
                        short(&old_id)
                    ),
                );
            }
        }
    }
    report.events = log.events;
    Ok(report)
}

/// Keeps the old container aside, stopped, with restart policy `no`, and
/// logs how to roll back by hand.
async fn keep_aside(
    docker: &Docker,
    old: &ContainerInspectResponse,
    old_id: &str,
    name: &str,
    aside: &str,
    log: &mut EventLog,
) {
    let policy = old
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.clone())
        .unwrap_or_default();
    let policy_word = recreate::restart_policy_words(&policy);
    let mut restore = String::new();
    if policy_word != "no" {
        let update = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..ContainerUpdateBody::default()
        };
        match docker.update_container(old_id, update).await {
            Ok(()) => restore = format!(" && docker update --restart {policy_word} {name}"),
            Err(e) => log.push(
                UpdateEventKind::Warning,
                format!(
                    "could not set the restart policy of {aside} to no ({e}): a daemon restart may start it next to {name}"
                ),
            ),
        }
    }
    log.push(
        UpdateEventKind::OldContainerKept,
        format!(
            "old container {} kept, stopped, as {aside}; to roll back by hand: docker rm -f {name} && docker rename {aside} {name}{restore} && docker start {name}",
            short(old_id)
        ),
    );
}

//! Watching one container for a window: its state and health from
//! `inspect`, CPU and memory from one-shot `stats` reads (each poll), and
//! OOM kills and exit codes from the Engine's events stream, which misses
//! nothing between polls.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerStateStatusEnum, ContainerStatsResponse, EventMessage, HealthStatusEnum,
};
use bollard::query_parameters::{EventsOptions, StatsOptions};
use futures_util::{Stream, StreamExt};

use crate::updates::gate::{HealthStatus, Window};

type Events = Pin<Box<dyn Stream<Item = Result<EventMessage, DockerError>> + Send>>;

/// When a watch may end before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Only at the deadline (or when the container is gone).
    Deadline,
    /// At the deadline, or as soon as the container is plainly broken
    /// (see [`Observer::broken`]).
    Broken,
    /// As soon as the health check decided (healthy, unhealthy, or there is
    /// none), or the container is plainly broken.
    HealthDecided,
}

/// What was seen of one container since [`Observer::start`].
pub(crate) struct Observer {
    docker: Docker,
    id: String,
    events: Option<Events>,
    /// Why the events stream stopped, if it did.
    events_lost: Option<String>,
    started: Instant,
    ended: Instant,
    restart_count_first: Option<i64>,
    restart_count_last: i64,
    oom_killed_first: Option<bool>,
    oom_killed_last: bool,
    oom_events: u64,
    exit_codes: Vec<i64>,
    status_last: String,
    running_last: bool,
    restarting_last: bool,
    exit_code_last: i64,
    health_last: HealthStatus,
    unhealthy_seen: bool,
    /// The last healthcheck run: exit code and output.
    health_log_last: Option<(i64, String)>,
    gone: bool,
    /// (when, cumulative CPU ns) per stats read.
    cpu_samples: Vec<(Instant, u64)>,
    memory_samples: Vec<u64>,
}

/// `inspect` said 404: the container is gone.
pub(crate) fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn health_status(s: Option<&HealthStatusEnum>) -> HealthStatus {
    match s {
        Some(HealthStatusEnum::STARTING) => HealthStatus::Starting,
        Some(HealthStatusEnum::HEALTHY) => HealthStatus::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => HealthStatus::Unhealthy,
        Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => HealthStatus::None,
    }
}

/// `1700000000.123456789`, as the events API takes `since`.
fn since_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Working set as `docker stats` computes it: usage minus inactive page
/// cache (`total_inactive_file` on cgroup v1, `inactive_file` on v2).
fn working_set_bytes(stats: &ContainerStatsResponse) -> Option<u64> {
    let memory = stats.memory_stats.as_ref()?;
    let usage = memory.usage.filter(|u| *u > 0)?;
    let empty = HashMap::new();
    let detail = memory.stats.as_ref().unwrap_or(&empty);
    let inactive = detail
        .get("total_inactive_file")
        .or_else(|| detail.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    Some(usage.saturating_sub(inactive))
}

impl Observer {
    /// Starts watching `id` now: subscribes to its events from this
    /// instant. Nothing is read until [`Observer::watch`].
    pub(crate) fn start(docker: &Docker, id: &str) -> Observer {
        let options = EventsOptions {
            since: Some(since_now()),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("container".to_string(), vec![id.to_string()]),
            ])),
        };
        let events: Events = Box::pin(docker.events(Some(options)));
        let now = Instant::now();
        Observer {
            docker: docker.clone(),
            id: id.to_string(),
            events: Some(events),
            events_lost: None,
            started: now,
            ended: now,
            restart_count_first: None,
            restart_count_last: 0,
            oom_killed_first: None,
            oom_killed_last: false,
            oom_events: 0,
            exit_codes: Vec::new(),
            status_last: String::new(),
            running_last: false,
            restarting_last: false,
            exit_code_last: 0,
            health_last: HealthStatus::None,
            unhealthy_seen: false,
            health_log_last: None,
            gone: false,
            cpu_samples: Vec::new(),
            memory_samples: Vec::new(),
        }
    }

    /// Plainly broken: gone, stopped for good, or unhealthy now.
    pub(crate) fn broken(&self) -> bool {
        self.gone
            || (self.restart_count_first.is_some() && !self.running_last && !self.restarting_last)
            || self.health_last == HealthStatus::Unhealthy
    }

    /// Health as last seen.
    pub(crate) fn health(&self) -> HealthStatus {
        self.health_last
    }

    /// Running (and not restarting) as last seen.
    pub(crate) fn running(&self) -> bool {
        self.running_last && !self.restarting_last && !self.gone
    }

    /// `running`, `exited (code 3)`, `gone`... as last seen.
    pub(crate) fn state_words(&self) -> String {
        if self.gone {
            "gone (removed by someone else)".to_string()
        } else if self.running_last && !self.restarting_last {
            format!("running, health {}", self.health_last)
        } else if self.status_last == "exited" {
            format!("exited (code {})", self.exit_code_last)
        } else {
            self.status_last.clone()
        }
    }

    /// The last healthcheck run in words, when there was one.
    pub(crate) fn last_health_output(&self) -> Option<String> {
        self.health_log_last.as_ref().map(|(code, output)| {
            let output: String = output.trim().chars().take(300).collect();
            if output.is_empty() {
                format!("last healthcheck exited with {code} and printed nothing")
            } else {
                format!("last healthcheck exited with {code}: {output}")
            }
        })
    }

    /// Why the events stream was lost, if it was (OOM kills and exits then
    /// come from `inspect` alone).
    pub(crate) fn events_lost(&self) -> Option<&str> {
        self.events_lost.as_deref()
    }

    /// Polls every `poll` until `deadline` (or earlier, see [`Until`]),
    /// reading CPU and memory too when `sample_resources`. Fails only
    /// when `inspect` fails for another reason than the container being
    /// gone.
    pub(crate) async fn watch(
        &mut self,
        deadline: Instant,
        poll: Duration,
        until: Until,
        sample_resources: bool,
    ) -> Result<(), DockerError> {
        let poll = poll.max(Duration::from_millis(50));
        let mut next_poll = tokio::time::Instant::now();
        let deadline_tokio = tokio::time::Instant::from_std(deadline);
        loop {
            let events = self.events.as_mut();
            tokio::select! {
                item = async {
                    match events {
                        Some(e) => e.next().await,
                        None => std::future::pending().await,
                    }
                } => self.on_event(item),
                () = tokio::time::sleep_until(next_poll) => {
                    self.poll(sample_resources).await?;
                    self.ended = Instant::now();
                    let stop = match until {
                        Until::Deadline => self.gone,
                        Until::Broken => self.broken(),
                        Until::HealthDecided => {
                            self.broken() || self.health_last != HealthStatus::Starting
                        }
                    };
                    if stop || Instant::now() >= deadline {
                        return Ok(());
                    }
                    next_poll = (next_poll + poll).min(deadline_tokio);
                    if next_poll < tokio::time::Instant::now() {
                        next_poll = tokio::time::Instant::now();
                    }
                }
            }
        }
    }

    fn on_event(&mut self, item: Option<Result<EventMessage, DockerError>>) {
        match item {
            None => {
                self.events = None;
                self.events_lost = Some("the Engine closed the events stream".to_string());
            }
            Some(Err(e)) => {
                self.events = None;
                self.events_lost = Some(format!("the events stream failed: {e}"));
            }
            Some(Ok(event)) => {
                let matches = event
                    .actor
                    .as_ref()
                    .and_then(|a| a.id.as_deref())
                    .is_some_and(|id| id == self.id);
                if !matches {
                    return;
                }
                match event.action.as_deref() {
                    Some("oom") => self.oom_events += 1,
                    Some("die") => {
                        let code = event
                            .actor
                            .as_ref()
                            .and_then(|a| a.attributes.as_ref())
                            .and_then(|a| a.get("exitCode"))
                            .and_then(|c| c.parse::<i64>().ok());
                        if let Some(code) = code {
                            self.exit_codes.push(code);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    async fn poll(&mut self, sample_resources: bool) -> Result<(), DockerError> {
        let inspect = match self.docker.inspect_container(&self.id, None).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => {
                self.gone = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let restart_count = inspect.restart_count.unwrap_or(0);
        self.restart_count_first.get_or_insert(restart_count);
        self.restart_count_last = restart_count;
        let state = inspect.state.unwrap_or_default();
        let oom_killed = state.oom_killed.unwrap_or(false);
        self.oom_killed_first.get_or_insert(oom_killed);
        self.oom_killed_last = oom_killed;
        self.status_last = state
            .status
            .as_ref()
            .map(ContainerStateStatusEnum::to_string)
            .unwrap_or_default();
        self.running_last = state.running.unwrap_or(false);
        self.restarting_last = state.restarting.unwrap_or(false);
        self.exit_code_last = state.exit_code.unwrap_or(0);
        let health = state.health.as_ref();
        self.health_last = health_status(health.and_then(|h| h.status.as_ref()));
        if self.health_last == HealthStatus::Unhealthy {
            self.unhealthy_seen = true;
        }
        if let Some(last) = health.and_then(|h| h.log.as_ref()).and_then(|l| l.last()) {
            self.health_log_last = Some((
                last.exit_code.unwrap_or(-1),
                last.output.clone().unwrap_or_default(),
            ));
        }
        if sample_resources && self.running_last {
            self.sample().await;
        }
        Ok(())
    }

    /// One `stats` read; a failed read is a missing sample, not an error
    /// (the container may be restarting).
    async fn sample(&mut self) {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = self.docker.stats(&self.id, Some(options));
        let Some(Ok(stats)) = stream.next().await else {
            return;
        };
        let at = Instant::now();
        if let Some(ns) = stats
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .filter(|ns| *ns > 0)
        {
            self.cpu_samples.push((at, ns));
        }
        if let Some(bytes) = working_set_bytes(&stats) {
            self.memory_samples.push(bytes);
        }
    }

    /// Mean cores between the first and last read; pairs across a restart
    /// (the counter went back) are left out.
    fn cpu_cores(&self) -> Option<f64> {
        let mut ns = 0u64;
        let mut secs = 0f64;
        for pair in self.cpu_samples.windows(2) {
            let [(t0, c0), (t1, c1)] = pair else { continue };
            if c1 >= c0 {
                ns += c1 - c0;
                secs += t1.duration_since(*t0).as_secs_f64();
            }
        }
        (secs > 0.0).then(|| ns as f64 / 1e9 / secs)
    }

    /// The window seen so far, for the gate.
    pub(crate) fn window(&self, image: &str) -> Window {
        let first = self.restart_count_first.unwrap_or(self.restart_count_last);
        let restarts = u64::try_from(self.restart_count_last - first).unwrap_or(0);
        let mut oom_kills = self.oom_events;
        if oom_kills == 0 && self.oom_killed_last && self.oom_killed_first == Some(false) {
            oom_kills = 1;
        }
        let mut nonzero_exit_codes: Vec<i64> = self
            .exit_codes
            .iter()
            .copied()
            .filter(|c| *c != 0)
            .collect();
        if self.exit_codes.is_empty()
            && !self.running_last
            && !self.gone
            && self.exit_code_last != 0
        {
            nonzero_exit_codes.push(self.exit_code_last);
        }
        let samples = self.memory_samples.len().max(self.cpu_samples.len());
        let memory = (!self.memory_samples.is_empty()).then(|| {
            let sum: u128 = self.memory_samples.iter().map(|b| u128::from(*b)).sum();
            u64::try_from(sum / self.memory_samples.len() as u128).unwrap_or(u64::MAX)
        });
        Window {
            image: image.to_string(),
            duration_ms: u64::try_from(self.ended.duration_since(self.started).as_millis())
                .unwrap_or(u64::MAX),
            replicas_desired: 1,
            replicas_ready: u32::from(self.running()),
            restarts,
            oom_kills,
            nonzero_exit_codes,
            health_end: self.health_last,
            unhealthy_seen: self.unhealthy_seen,
            cpu_cores_per_replica: self.cpu_cores(),
            memory_bytes_per_replica: memory,
            resource_samples: u32::try_from(samples).unwrap_or(u32::MAX),
        }
    }
}

//! CPU and memory per replica for the Kubernetes health gate, from the
//! collector.
//!
//! The API server has no usage (without metrics-server), but the upid
//! agents on the nodes sample every container's cgroup, and the collector
//! serves each container's series (`QueryService.GetContainerSeries`, the
//! RPC behind `upid describe container`). So the gate's CPU and memory
//! inputs come from there:
//!
//! - BEFORE: the old revision's containers (their ids from the pods'
//!   `status.containerStatuses[].containerID`, without the runtime
//!   prefix, as the agent's inventory reports them) over the BEFORE window;
//! - AFTER: the new revision's containers over the gate window (from the
//!   rollout's completion; from the patch when it did not complete).
//!
//! Each container is asked for its series at a 1 s step (so that each
//! point is one agent sample); every point of every container counts as
//! one sample of one replica:
//!
//! | gate input | from |
//! |---|---|
//! | CPU per replica | mean of the points' `cpu_cores` (the collector's rate between two samples), in millicores in the evidence |
//! | memory per replica | mean of the points' `memory_working_set_bytes`; the peak (highest point) is in the evidence |
//! | samples | points with a CPU or memory value |
//!
//! When the collector has no samples for a window's containers (no agent
//! on those nodes, the agent not yet shipped, the container unknown), or
//! fewer than [`DEFAULT_MIN_RESOURCE_SAMPLES`], the window's CPU and memory
//! stay unmeasured, the gate skips the two checks, and [`explain`] writes
//! why in their evidence, naming the containers, pods and nodes.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::updates::gate::{self, CheckKind, GateVerdict, Outcome, Window};
use crate::wire::v1;

/// Default minimum samples (all containers of a window together) for CPU
/// and memory to count as measured: 2.
pub const DEFAULT_MIN_RESOURCE_SAMPLES: u32 = 2;
/// The step asked for: 1 s, the finest the agents sample at, so that a
/// point is one sample.
pub const SERIES_STEP_NS: i64 = 1_000_000_000;
/// At most this many points are asked per container (the collector
/// refuses more than 11,000); a longer window gets a wider step.
pub const MAX_SERIES_POINTS: i64 = 10_000;

/// One container of one pod whose usage is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchedContainer {
    /// The runtime's container id, without `containerd://` and the like.
    pub id: String,
    /// The pod it runs in.
    pub pod: String,
    /// The node the pod runs on; `None`: not scheduled (yet).
    pub node: Option<String>,
}

/// Why a container's series could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesError {
    /// The collector knows no container of that id.
    NotFound,
    /// Asking failed (the message says how).
    Failed(String),
}

/// The future [`UsageSource::series`] returns.
pub type SeriesFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<v1::Rates>, SeriesError>> + Send + 'a>>;

/// Where containers' usage comes from: the collector's
/// `GetContainerSeries`.
pub trait UsageSource: Send + Sync {
    /// The points of container `container_id` from `start_unix_ns`
    /// (inclusive) to `end_unix_ns` (exclusive), one per `step_ns`.
    fn series<'a>(
        &'a self,
        container_id: &'a str,
        start_unix_ns: i64,
        end_unix_ns: i64,
        step_ns: i64,
    ) -> SeriesFuture<'a>;
}

/// What the collector had for one window's containers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// Start of the window asked for (Unix ns, inclusive).
    pub start_unix_ns: i64,
    /// End of the window asked for (Unix ns, exclusive).
    pub end_unix_ns: i64,
    /// Mean CPU per replica in millicores; `None`: no CPU samples.
    pub cpu_millicores_mean: Option<f64>,
    /// Mean memory working set per replica; `None`: no memory samples.
    pub memory_working_set_mean_bytes: Option<u64>,
    /// Highest memory working set of any replica in the window.
    pub memory_working_set_peak_bytes: Option<u64>,
    /// Samples (points with a CPU or memory value), all containers.
    pub samples: u32,
    /// Containers asked for.
    pub containers: u32,
    /// Containers the collector had samples for.
    pub containers_with_samples: u32,
    /// Containers it had none for.
    pub missing: Vec<WatchedContainer>,
    /// Requests that failed (other than "no such container").
    pub errors: Vec<String>,
    /// Why CPU and memory count as not measured; `None`: measured.
    pub unmeasured: Option<String>,
}

impl Usage {
    fn empty(start_unix_ns: i64, end_unix_ns: i64, containers: usize, why: String) -> Usage {
        Usage {
            start_unix_ns,
            end_unix_ns,
            cpu_millicores_mean: None,
            memory_working_set_mean_bytes: None,
            memory_working_set_peak_bytes: None,
            samples: 0,
            containers: u32::try_from(containers).unwrap_or(u32::MAX),
            containers_with_samples: 0,
            missing: Vec::new(),
            errors: Vec::new(),
            unmeasured: Some(why),
        }
    }

    /// Sets the window's CPU and memory from this usage, when measured.
    pub fn fill(&self, window: &mut Window) {
        if self.unmeasured.is_some() {
            return;
        }
        window.cpu_cores_per_replica = self.cpu_millicores_mean.map(|m| m / 1000.0);
        window.memory_bytes_per_replica = self.memory_working_set_mean_bytes;
        window.resource_samples = self.samples;
    }

    /// `120 millicores, 180.0 MiB (peak 190.0 MiB), 9 samples from 3 pods`,
    /// or why not measured.
    pub fn describe(&self) -> String {
        if let Some(why) = &self.unmeasured {
            return format!("CPU and memory not measured: {why}");
        }
        let cpu = self
            .cpu_millicores_mean
            .map_or("CPU not measured".to_string(), |m| {
                format!("{m:.0} millicores")
            });
        let memory = match (
            self.memory_working_set_mean_bytes,
            self.memory_working_set_peak_bytes,
        ) {
            (Some(mean), Some(peak)) => format!(
                "{} (peak {})",
                gate::bytes_words(mean),
                gate::bytes_words(peak)
            ),
            _ => "memory not measured".to_string(),
        };
        format!("{cpu}, {memory} per replica, {}", self.sources())
    }

    /// `9 samples from 3 containers`.
    fn sources(&self) -> String {
        format!(
            "{} samples from {} container{}",
            self.samples,
            self.containers_with_samples,
            if self.containers_with_samples == 1 {
                ""
            } else {
                "s"
            }
        )
    }

    /// What was missing though the window counts as measured.
    fn partial(&self) -> Option<String> {
        if self.missing.is_empty() && self.errors.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(no_samples_words(&self.missing, ""));
        }
        parts.extend(self.errors.iter().cloned());
        Some(parts.join("; "))
    }
}

/// The first 12 characters of a container id, as runtimes show it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `no samples from the collector{context} for containers c9de1e415bc8
/// (pod web-1 on worker-3): is upid-agent running on node worker-3?`
fn no_samples_words(missing: &[WatchedContainer], context: &str) -> String {
    let list: Vec<String> = missing
        .iter()
        .map(|c| match &c.node {
            Some(node) => format!("{} (pod {} on {node})", short(&c.id), c.pod),
            None => format!("{} (pod {}, not scheduled)", short(&c.id), c.pod),
        })
        .collect();
    let mut nodes: Vec<&str> = missing.iter().filter_map(|c| c.node.as_deref()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let question = match nodes.as_slice() {
        [] => String::new(),
        [one] => format!(": is upid-agent running on node {one}?"),
        many => format!(": is upid-agent running on nodes {}?", many.join(", ")),
    };
    format!(
        "no samples from the collector{context} for container{} {}{question}",
        if missing.len() == 1 { "" } else { "s" },
        list.join(", ")
    )
}

/// The step for a window of `span_ns`: [`SERIES_STEP_NS`], wider when the
/// window would need more than [`MAX_SERIES_POINTS`] points.
fn step_for(span_ns: i64) -> i64 {
    let needed = span_ns.saturating_add(MAX_SERIES_POINTS - 1) / MAX_SERIES_POINTS;
    needed.max(SERIES_STEP_NS)
}

/// Asks `source` for the usage of `containers` from `start_unix_ns` to
/// `end_unix_ns` (`what`: `the BEFORE window`, for messages) and averages
/// it per replica. Never fails: what could not be had is said in
/// [`Usage::unmeasured`], [`Usage::missing`] and [`Usage::errors`].
pub async fn measure(
    source: Option<&dyn UsageSource>,
    containers: &[WatchedContainer],
    what: &str,
    start_unix_ns: i64,
    end_unix_ns: i64,
    min_samples: u32,
) -> Usage {
    let Some(source) = source else {
        return Usage::empty(
            start_unix_ns,
            end_unix_ns,
            containers.len(),
            "no collector was asked".to_string(),
        );
    };
    if containers.is_empty() {
        return Usage::empty(
            start_unix_ns,
            end_unix_ns,
            0,
            format!("no container of {what} had started (no container id in the pods' status)"),
        );
    }
    if end_unix_ns <= start_unix_ns {
        return Usage::empty(
            start_unix_ns,
            end_unix_ns,
            containers.len(),
            format!("{what} was empty (0 s): no samples can fall in it"),
        );
    }
    let step_ns = step_for(end_unix_ns - start_unix_ns);
    let mut cpu = Vec::new();
    let mut memory = Vec::new();
    let mut samples = 0u32;
    let mut with_samples = 0u32;
    let mut missing = Vec::new();
    let mut errors = Vec::new();
    for c in containers {
        match source
            .series(&c.id, start_unix_ns, end_unix_ns, step_ns)
            .await
        {
            Ok(points) => {
                let mut mine = 0u32;
                for p in &points {
                    if p.cpu_cores.is_none() && p.memory_working_set_bytes.is_none() {
                        continue;
                    }
                    mine += 1;
                    if let Some(cores) = p.cpu_cores.filter(|c| c.is_finite() && *c >= 0.0) {
                        cpu.push(cores);
                    }
                    if let Some(bytes) = p.memory_working_set_bytes {
                        memory.push(bytes);
                    }
                }
                if mine == 0 {
                    missing.push(c.clone());
                } else {
                    with_samples += 1;
                    samples = samples.saturating_add(mine);
                }
            }
            Err(SeriesError::NotFound) => missing.push(c.clone()),
            Err(SeriesError::Failed(e)) => errors.push(format!(
                "asking the collector for container {} (pod {}) failed: {e}",
                short(&c.id),
                c.pod
            )),
        }
    }
    let mut usage = Usage {
        start_unix_ns,
        end_unix_ns,
        cpu_millicores_mean: (!cpu.is_empty())
            .then(|| cpu.iter().sum::<f64>() / cpu.len() as f64 * 1000.0),
        memory_working_set_mean_bytes: (!memory.is_empty()).then(|| {
            let sum: u128 = memory.iter().map(|b| u128::from(*b)).sum();
            u64::try_from(sum / memory.len() as u128).unwrap_or(u64::MAX)
        }),
        memory_working_set_peak_bytes: memory.iter().copied().max(),
        samples,
        containers: u32::try_from(containers.len()).unwrap_or(u32::MAX),
        containers_with_samples: with_samples,
        missing,
        errors,
        unmeasured: None,
    };
    let span = gate::span_words(
        u64::try_from((end_unix_ns - start_unix_ns) / 1_000_000).unwrap_or(u64::MAX),
    );
    if samples == 0 {
        let mut parts = Vec::new();
        if !usage.missing.is_empty() {
            parts.push(no_samples_words(
                &usage.missing,
                &format!(" in {what} ({span})"),
            ));
        }
        parts.extend(usage.errors.iter().cloned());
        usage.unmeasured = Some(parts.join("; "));
    } else if samples < min_samples {
        usage.unmeasured = Some(format!(
            "too few samples from the collector in {what} ({span}): {samples}, at least {min_samples} needed; the agents sample every 10 s by default (upid-agent --interval), a longer window gives more"
        ));
    }
    usage
}

/// Writes where the CPU and memory checks' numbers came from into their
/// evidence: the mean and peak and how many samples from how many
/// containers when measured; when not, why (no samples for which
/// containers on which nodes, too few samples, the collector not
/// answering), in place of the gate's bare "not measured". A healthy
/// summary says when CPU and memory were not checked.
pub fn explain(verdict: &mut GateVerdict, before: &Usage, after: &Usage) {
    let mut unchecked = None;
    for check in &mut verdict.checks {
        let is_memory = match check.check {
            CheckKind::CpuPerReplica => false,
            CheckKind::MemoryPerReplica => true,
            _ => continue,
        };
        let words = |u: &Usage| -> String {
            if u.unmeasured.is_some() {
                return "not measured".to_string();
            }
            if is_memory {
                match (
                    u.memory_working_set_mean_bytes,
                    u.memory_working_set_peak_bytes,
                ) {
                    (Some(mean), Some(peak)) => format!(
                        "{} mean, {} peak ({})",
                        gate::bytes_words(mean),
                        gate::bytes_words(peak),
                        u.sources()
                    ),
                    _ => "not measured".to_string(),
                }
            } else {
                match u.cpu_millicores_mean {
                    Some(m) => format!("{m:.0} millicores ({})", u.sources()),
                    None => "not measured".to_string(),
                }
            }
        };
        check.before = words(before);
        check.after = words(after);
        if check.outcome == Outcome::Skipped {
            let mut why = Vec::new();
            if let Some(w) = &before.unmeasured {
                why.push(format!("before: {w}"));
            }
            if let Some(w) = &after.unmeasured {
                why.push(format!("after: {w}"));
            }
            if why.is_empty() {
                why.push(format!(
                    "{} not in the collector's samples in both windows",
                    if is_memory { "memory" } else { "CPU" }
                ));
            }
            check.reason = format!("not measured: {}", why.join("; "));
            unchecked.get_or_insert_with(|| check.reason.clone());
        } else {
            let mut notes = Vec::new();
            if let Some(p) = before.partial() {
                notes.push(format!("before: {p}"));
            }
            if let Some(p) = after.partial() {
                notes.push(format!("after: {p}"));
            }
            if !notes.is_empty() {
                check.reason = format!(
                    "{} (per replica from the containers that had samples; {})",
                    check.reason,
                    notes.join("; ")
                );
            }
        }
    }
    if let Some(why) = unchecked
        && verdict.verdict == gate::Verdict::Healthy
    {
        verdict.summary = format!(
            "{}; CPU and memory per replica were not checked: {}",
            verdict.summary.trim_end_matches(
                " (restarts, OOM kills, exits, health, replicas, CPU and memory)"
            ),
            why.trim_start_matches("not measured: ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const MIB: u64 = 1024 * 1024;

    /// Recorded points per container id, served for any range (a fake
    /// collector, named as such).
    struct Recorded(HashMap<String, Result<Vec<v1::Rates>, SeriesError>>);

    impl UsageSource for Recorded {
        fn series<'a>(&'a self, container_id: &'a str, _: i64, _: i64, _: i64) -> SeriesFuture<'a> {
            let answer = self
                .0
                .get(container_id)
                .cloned()
                .unwrap_or(Err(SeriesError::NotFound));
            Box::pin(async move { answer })
        }
    }

    fn point(cores: f64, ws_mib: u64) -> v1::Rates {
        v1::Rates {
            cpu_cores: Some(cores),
            memory_working_set_bytes: Some(ws_mib * MIB),
            ..Default::default()
        }
    }

    fn container(id: &str, pod: &str, node: &str) -> WatchedContainer {
        WatchedContainer {
            id: id.to_string(),
            pod: pod.to_string(),
            node: Some(node.to_string()),
        }
    }

    #[tokio::test]
    async fn means_are_per_replica_over_every_sample_and_the_peak_is_the_highest() {
        let source = Recorded(HashMap::from([
            ("a".to_string(), Ok(vec![point(0.1, 100), point(0.3, 120)])),
            ("b".to_string(), Ok(vec![point(0.2, 140)])),
        ]));
        let u = measure(
            Some(&source),
            &[container("a", "web-1", "w1"), container("b", "web-2", "w2")],
            "the BEFORE window",
            1_000,
            10_000_001_000,
            2,
        )
        .await;
        assert_eq!(u.unmeasured, None);
        assert_eq!(u.samples, 3);
        assert_eq!(u.containers_with_samples, 2);
        assert!((u.cpu_millicores_mean.unwrap_or_default() - 200.0).abs() < 1e-9);
        assert_eq!(u.memory_working_set_mean_bytes, Some(120 * MIB));
        assert_eq!(u.memory_working_set_peak_bytes, Some(140 * MIB));
        let mut w = Window {
            image: "web:1".into(),
            duration_ms: 10_000,
            replicas_desired: 2,
            replicas_ready: 2,
            restarts: 0,
            oom_kills: 0,
            nonzero_exit_codes: Vec::new(),
            health_end: gate::HealthStatus::Healthy,
            unhealthy_seen: false,
            cpu_cores_per_replica: None,
            memory_bytes_per_replica: None,
            resource_samples: 0,
        };
        u.fill(&mut w);
        assert!((w.cpu_cores_per_replica.unwrap_or_default() - 0.2).abs() < 1e-9);
        assert_eq!(w.memory_bytes_per_replica, Some(120 * MIB));
        assert_eq!(w.resource_samples, 3);
    }

    #[tokio::test]
    async fn no_samples_name_the_containers_and_nodes_and_too_few_say_so() {
        let source = Recorded(HashMap::from([
            ("a".to_string(), Ok(Vec::new())),
            (
                "c".to_string(),
                Err(SeriesError::Failed("status: Unavailable".into())),
            ),
        ]));
        let u = measure(
            Some(&source),
            &[
                container("a0123456789abcdef", "web-1", "w1"),
                container("b", "web-2", "w2"),
            ],
            "the BEFORE window",
            0,
            10_000_000_000,
            2,
        )
        .await;
        assert_eq!(
            u.unmeasured.as_deref(),
            Some(
                "no samples from the collector in the BEFORE window (10 s) for containers a0123456789a (pod web-1 on w1), b (pod web-2 on w2): is upid-agent running on nodes w1, w2?"
            )
        );
        let u = measure(
            Some(&source),
            &[container("c", "web-3", "w3")],
            "the gate window",
            0,
            1_000_000_000,
            2,
        )
        .await;
        assert_eq!(
            u.unmeasured.as_deref(),
            Some("asking the collector for container c (pod web-3) failed: status: Unavailable")
        );
        let one = Recorded(HashMap::from([("a".to_string(), Ok(vec![point(0.1, 10)]))]));
        let u = measure(
            Some(&one),
            &[container("a", "web-1", "w1")],
            "the gate window",
            0,
            30_000_000_000,
            2,
        )
        .await;
        assert!(
            u.unmeasured.as_deref().unwrap_or_default().starts_with(
                "too few samples from the collector in the gate window (30 s): 1, at least 2 needed"
            ),
            "{u:?}"
        );
        let u = measure(None, &[container("a", "p", "n")], "x", 0, 1, 2).await;
        assert_eq!(u.unmeasured.as_deref(), Some("no collector was asked"));
        let u = measure(
            Some(&one),
            &[container("a", "p", "n")],
            "the BEFORE window",
            5,
            5,
            2,
        )
        .await;
        assert_eq!(
            u.unmeasured.as_deref(),
            Some("the BEFORE window was empty (0 s): no samples can fall in it")
        );
    }

    #[test]
    fn long_windows_get_a_wider_step() {
        assert_eq!(step_for(10_000_000_000), SERIES_STEP_NS);
        assert_eq!(step_for(20_000 * SERIES_STEP_NS), 2 * SERIES_STEP_NS);
    }
}

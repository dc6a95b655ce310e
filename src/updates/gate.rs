//! The health gate: after the running image of a container or workload
//! changed, compare what it did in a window BEFORE the change with a window
//! AFTER it and say whether the update is `healthy`, `degraded` or
//! `failed`, with the evidence for each check and the image to roll back to.
//!
//! Pure logic over two [`Window`]s: the Docker apply
//! ([`super::docker_apply`]) fills them from the Engine API, the collector
//! can fill them from stored history. Windows may differ in length: counted
//! events (restarts, OOM kills, non-zero exits) are compared per hour.
//!
//! # Rules (defaults in [`Thresholds`])
//!
//! `failed` (roll back):
//! - **restarts**, **OOM kills**, **non-zero exits**: the AFTER window has at
//!   least one, and more per hour than the BEFORE window. With a quiet
//!   BEFORE window that is "any new one"; a container that already crashed
//!   as often before is not made worse by the update, and rolling back would
//!   not help, so that case passes (the numbers are still in the evidence).
//! - **health**: unhealthy at the end of the AFTER window or at any point in
//!   it, while it was not unhealthy BEFORE. (Unhealthy before and after is
//!   `degraded`: the update did not fix it, and the old image is no better.)
//! - **ready replicas**: fewer ready replicas than before, while fewer than
//!   desired (a workload scaled down on purpose and fully ready passes).
//!
//! `degraded` (kept and warned by default, see the Docker apply):
//! - **health** still `starting` at the end of the AFTER window: it runs, but
//!   its health was not proven in time; or the old image reported a health
//!   status and the new one reports none.
//! - **memory per replica** above `memory_ratio_degraded` (1.5) times before
//!   AND at least `memory_min_increase_bytes` (32 MiB) more.
//! - **CPU per replica** above `cpu_ratio_degraded` (2.0) times before AND at
//!   least `cpu_min_increase_cores` (0.05 cores) more.
//!
//! The absolute floors keep noise out: an idle process going from 0.001 to
//! 0.003 cores, or from 2 MiB to 4 MiB, is not a regression anyone should
//! act on. Memory is allowed less growth than CPU because it is the
//! resource that kills (OOM) when it runs out, while CPU only slows down;
//! 1.5x memory usually means a request or limit is now wrong. CPU and memory
//! not measured in either window skip their check (said so in the evidence).

use serde::{Deserialize, Serialize};

/// Health as Docker's healthcheck (or a pod's readiness) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No healthcheck: nothing reports health.
    None,
    /// The healthcheck has not decided yet.
    Starting,
    /// The healthcheck passes.
    Healthy,
    /// The healthcheck failed its allowed number of retries.
    Unhealthy,
}

impl HealthStatus {
    /// The word Docker uses (`none`, `starting`, `healthy`, `unhealthy`).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::None => "none",
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one container or workload did during one window of time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The image running during the window (reference as the user wrote it,
    /// or an id when nothing better is known).
    pub image: String,
    /// Length of the window in milliseconds.
    pub duration_ms: u64,
    /// Replicas that should run (1 for a Docker container).
    pub replicas_desired: u32,
    /// Replicas running (and not restarting) at the end of the window.
    pub replicas_ready: u32,
    /// Restarts during the window, summed over replicas.
    pub restarts: u64,
    /// OOM kills during the window, summed over replicas.
    pub oom_kills: u64,
    /// Exit codes other than 0 seen during the window, in order.
    pub nonzero_exit_codes: Vec<i64>,
    /// Health at the end of the window (the worst replica's).
    pub health_end: HealthStatus,
    /// Some replica was reported unhealthy at some point in the window.
    pub unhealthy_seen: bool,
    /// Typical (mean) CPU use per replica in cores; `None`: not measured.
    pub cpu_cores_per_replica: Option<f64>,
    /// Typical (mean) memory working set per replica in bytes; `None`: not
    /// measured.
    pub memory_bytes_per_replica: Option<u64>,
    /// How many CPU/memory samples the two numbers above come from.
    pub resource_samples: u32,
}

/// Where `degraded` starts. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// Memory per replica above this many times before is degraded
    /// (default 1.5).
    pub memory_ratio_degraded: f64,
    /// ...and only when it grew by at least this many bytes
    /// (default 32 MiB).
    pub memory_min_increase_bytes: u64,
    /// CPU per replica above this many times before is degraded
    /// (default 2.0).
    pub cpu_ratio_degraded: f64,
    /// ...and only when it grew by at least this many cores (default 0.05).
    pub cpu_min_increase_cores: f64,
}

/// Default [`Thresholds::memory_ratio_degraded`].
pub const DEFAULT_MEMORY_RATIO_DEGRADED: f64 = 1.5;
/// Default [`Thresholds::memory_min_increase_bytes`]: 32 MiB.
pub const DEFAULT_MEMORY_MIN_INCREASE_BYTES: u64 = 32 * 1024 * 1024;
/// Default [`Thresholds::cpu_ratio_degraded`].
pub const DEFAULT_CPU_RATIO_DEGRADED: f64 = 2.0;
/// Default [`Thresholds::cpu_min_increase_cores`].
pub const DEFAULT_CPU_MIN_INCREASE_CORES: f64 = 0.05;

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            memory_ratio_degraded: DEFAULT_MEMORY_RATIO_DEGRADED,
            memory_min_increase_bytes: DEFAULT_MEMORY_MIN_INCREASE_BYTES,
            cpu_ratio_degraded: DEFAULT_CPU_RATIO_DEGRADED,
            cpu_min_increase_cores: DEFAULT_CPU_MIN_INCREASE_CORES,
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing got worse.
    Healthy,
    /// It works, but something got worse or could not be proven.
    Degraded,
    /// It is broken or crashing more: roll back.
    Failed,
}

impl Verdict {
    /// `healthy`, `degraded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Restarts per hour.
    Restarts,
    /// OOM kills per hour.
    OomKills,
    /// Non-zero exits per hour.
    NonzeroExits,
    /// Health status.
    Health,
    /// Ready replicas against desired.
    ReadyReplicas,
    /// Mean CPU per replica.
    CpuPerReplica,
    /// Mean memory working set per replica.
    MemoryPerReplica,
}

impl CheckKind {
    /// snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Restarts => "restarts",
            CheckKind::OomKills => "oom_kills",
            CheckKind::NonzeroExits => "nonzero_exits",
            CheckKind::Health => "health",
            CheckKind::ReadyReplicas => "ready_replicas",
            CheckKind::CpuPerReplica => "cpu_per_replica",
            CheckKind::MemoryPerReplica => "memory_per_replica",
        }
    }
}

/// What one check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not worse.
    Pass,
    /// Worse, or not proven: makes the verdict at least `degraded`.
    Degraded,
    /// Broken: makes the verdict `failed`.
    Failed,
    /// Could not be checked (not measured).
    Skipped,
}

impl Outcome {
    /// `pass`, `degraded`, `failed` or `skipped`, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Degraded => "degraded",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One check with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Which check.
    pub check: CheckKind,
    /// What it concluded.
    pub outcome: Outcome,
    /// The BEFORE number in words (`0 in 10 s`, `healthy`, `0.120 cores`).
    pub before: String,
    /// The AFTER number in words.
    pub after: String,
    /// The BEFORE number for machines (count, cores, bytes, ready
    /// replicas); `None` for health and for what was not measured.
    pub before_value: Option<f64>,
    /// The AFTER number for machines.
    pub after_value: Option<f64>,
    /// Why, in a sentence a person can check against the numbers.
    pub reason: String,
}

/// The verdict with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// Healthy, degraded or failed: the worst outcome of the checks.
    pub verdict: Verdict,
    /// Every check, in a fixed order, passed ones included.
    pub checks: Vec<Check>,
    /// The image before the change.
    pub from_image: String,
    /// The image after the change.
    pub to_image: String,
    /// The image to roll back to (the BEFORE window's image).
    pub rollback_image: String,
    /// One line: the verdict and the reasons of the checks that did not pass.
    pub summary: String,
}

/// Judges the AFTER window against the BEFORE window (see the module
/// documentation for the rules).
pub fn verdict(before: &Window, after: &Window, thresholds: &Thresholds) -> GateVerdict {
    let checks = vec![
        count_check(
            CheckKind::Restarts,
            "restart",
            before.restarts,
            before.duration_ms,
            after.restarts,
            after.duration_ms,
        ),
        count_check(
            CheckKind::OomKills,
            "OOM kill",
            before.oom_kills,
            before.duration_ms,
            after.oom_kills,
            after.duration_ms,
        ),
        exits_check(before, after),
        health_check(before, after),
        ready_check(before, after),
        cpu_check(before, after, thresholds),
        memory_check(before, after, thresholds),
    ];
    let verdict = if checks.iter().any(|c| c.outcome == Outcome::Failed) {
        Verdict::Failed
    } else if checks.iter().any(|c| c.outcome == Outcome::Degraded) {
        Verdict::Degraded
    } else {
        Verdict::Healthy
    };
    let reasons: Vec<String> = checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed | Outcome::Degraded))
        .map(|c| format!("{}: {}", c.check.as_str(), c.reason))
        .collect();
    let summary = if reasons.is_empty() {
        format!(
            "{verdict}: {} did no worse than {} (restarts, OOM kills, exits, health, replicas, CPU and memory)",
            after.image, before.image
        )
    } else {
        format!("{verdict}: {}", reasons.join("; "))
    };
    GateVerdict {
        verdict,
        checks,
        from_image: before.image.clone(),
        to_image: after.image.clone(),
        rollback_image: before.image.clone(),
        summary,
    }
}

/// Events per hour; 0 for an empty window without events.
fn per_hour(count: u64, duration_ms: u64) -> f64 {
    if count == 0 {
        0.0
    } else if duration_ms == 0 {
        f64::INFINITY
    } else {
        count as f64 * 3_600_000.0 / duration_ms as f64
    }
}

/// `3 in 2 min (90.0/h)`.
fn count_words(count: u64, duration_ms: u64) -> String {
    let rate = per_hour(count, duration_ms);
    if count == 0 {
        format!("0 in {}", span_words(duration_ms))
    } else if rate.is_finite() {
        format!("{count} in {} ({rate:.1}/h)", span_words(duration_ms))
    } else {
        format!("{count} in {}", span_words(duration_ms))
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// The rule shared by restarts, OOM kills and non-zero exits.
fn count_check(
    check: CheckKind,
    noun: &str,
    before: u64,
    before_ms: u64,
    after: u64,
    after_ms: u64,
) -> Check {
    let before_rate = per_hour(before, before_ms);
    let after_rate = per_hour(after, after_ms);
    let (outcome, reason) = if after == 0 {
        (Outcome::Pass, format!("no {noun} after the update"))
    } else if after_rate > before_rate {
        let was = if before == 0 {
            format!("none in the {} before", span_words(before_ms))
        } else {
            format!("{before_rate:.1}/h before")
        };
        (
            Outcome::Failed,
            format!(
                "{} in the {} after the update, {was}",
                plural(after, noun),
                span_words(after_ms)
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!(
                "{} after the update, no more often than before ({after_rate:.1}/h against {before_rate:.1}/h)",
                plural(after, noun)
            ),
        )
    };
    Check {
        check,
        outcome,
        before: count_words(before, before_ms),
        after: count_words(after, after_ms),
        before_value: Some(before as f64),
        after_value: Some(after as f64),
        reason,
    }
}

fn exits_check(before: &Window, after: &Window) -> Check {
    let mut check = count_check(
        CheckKind::NonzeroExits,
        "non-zero exit",
        before.nonzero_exit_codes.len() as u64,
        before.duration_ms,
        after.nonzero_exit_codes.len() as u64,
        after.duration_ms,
    );
    if !after.nonzero_exit_codes.is_empty() {
        let codes: Vec<String> = after
            .nonzero_exit_codes
            .iter()
            .map(i64::to_string)
            .collect();
        check.reason = format!("{} (exit codes {})", check.reason, codes.join(", "));
    }
    check
}

fn health_words(w: &Window) -> String {
    if w.unhealthy_seen && w.health_end != HealthStatus::Unhealthy {
        format!("{} at the end, unhealthy during the window", w.health_end)
    } else {
        w.health_end.to_string()
    }
}

fn health_check(before: &Window, after: &Window) -> Check {
    let before_unhealthy = before.unhealthy_seen || before.health_end == HealthStatus::Unhealthy;
    let after_unhealthy = after.unhealthy_seen || after.health_end == HealthStatus::Unhealthy;
    let (outcome, reason) = if after_unhealthy && !before_unhealthy {
        let when = if after.health_end == HealthStatus::Unhealthy {
            "at the end of the window"
        } else {
            "during the window"
        };
        (
            Outcome::Failed,
            format!(
                "{} was unhealthy {when} after the update ({} before)",
                after.image, before.health_end
            ),
        )
    } else if after_unhealthy {
        (
            Outcome::Degraded,
            format!(
                "unhealthy after the update, and {} was unhealthy before too: the update did not fix it, and rolling back would not help",
                before.image
            ),
        )
    } else if after.health_end == HealthStatus::Starting {
        (
            Outcome::Degraded,
            format!(
                "health still starting at the end of the {} window: running, but not proven healthy",
                span_words(after.duration_ms)
            ),
        )
    } else if after.health_end == HealthStatus::None && before.health_end != HealthStatus::None {
        (
            Outcome::Degraded,
            format!(
                "{} reports no health status ({} did: {}), so its health cannot be proven",
                after.image, before.image, before.health_end
            ),
        )
    } else if after.health_end == HealthStatus::None {
        (
            Outcome::Pass,
            "no healthcheck before or after: judged on the other checks".to_string(),
        )
    } else {
        (
            Outcome::Pass,
            format!("healthy after the update ({} before)", before.health_end),
        )
    };
    Check {
        check: CheckKind::Health,
        outcome,
        before: health_words(before),
        after: health_words(after),
        before_value: None,
        after_value: None,
        reason,
    }
}

fn ready_check(before: &Window, after: &Window) -> Check {
    let words = |w: &Window| format!("{}/{} ready", w.replicas_ready, w.replicas_desired);
    let (outcome, reason) = if after.replicas_ready < before.replicas_ready
        && after.replicas_ready < after.replicas_desired
    {
        (
            Outcome::Failed,
            format!(
                "{} of {} replicas ready at the end of the window after the update, {} before",
                after.replicas_ready, after.replicas_desired, before.replicas_ready
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!(
                "{} of {} replicas ready after the update ({} before)",
                after.replicas_ready, after.replicas_desired, before.replicas_ready
            ),
        )
    };
    Check {
        check: CheckKind::ReadyReplicas,
        outcome,
        before: words(before),
        after: words(after),
        before_value: Some(f64::from(before.replicas_ready)),
        after_value: Some(f64::from(after.replicas_ready)),
        reason,
    }
}

/// The rule shared by CPU and memory: degraded when `after` is above
/// `ratio` times `before` and at least `min_increase` more.
fn growth_outcome(before: f64, after: f64, ratio: f64, min_increase: f64) -> bool {
    after > before * ratio && after - before >= min_increase
}

fn cpu_check(before: &Window, after: &Window, t: &Thresholds) -> Check {
    let words = |w: &Window| match w.cpu_cores_per_replica {
        Some(c) => format!("{c:.3} cores ({} samples)", w.resource_samples),
        None => "not measured".to_string(),
    };
    let (outcome, reason) = match (before.cpu_cores_per_replica, after.cpu_cores_per_replica) {
        (Some(b), Some(a)) => {
            if growth_outcome(b, a, t.cpu_ratio_degraded, t.cpu_min_increase_cores) {
                (
                    Outcome::Degraded,
                    format!(
                        "CPU per replica went from {b:.3} to {a:.3} cores: more than {}x and at least {} cores more",
                        t.cpu_ratio_degraded, t.cpu_min_increase_cores
                    ),
                )
            } else {
                (
                    Outcome::Pass,
                    format!(
                        "CPU per replica {b:.3} → {a:.3} cores (degraded above {}x and +{} cores)",
                        t.cpu_ratio_degraded, t.cpu_min_increase_cores
                    ),
                )
            }
        }
        _ => (
            Outcome::Skipped,
            "CPU not measured in both windows".to_string(),
        ),
    };
    Check {
        check: CheckKind::CpuPerReplica,
        outcome,
        before: words(before),
        after: words(after),
        before_value: before.cpu_cores_per_replica,
        after_value: after.cpu_cores_per_replica,
        reason,
    }
}

fn memory_check(before: &Window, after: &Window, t: &Thresholds) -> Check {
    let words = |w: &Window| match w.memory_bytes_per_replica {
        Some(m) => format!("{} ({} samples)", bytes_words(m), w.resource_samples),
        None => "not measured".to_string(),
    };
    let (outcome, reason) = match (
        before.memory_bytes_per_replica,
        after.memory_bytes_per_replica,
    ) {
        (Some(b), Some(a)) => {
            if growth_outcome(
                b as f64,
                a as f64,
                t.memory_ratio_degraded,
                t.memory_min_increase_bytes as f64,
            ) {
                (
                    Outcome::Degraded,
                    format!(
                        "memory per replica went from {} to {}: more than {}x and at least {} more",
                        bytes_words(b),
                        bytes_words(a),
                        t.memory_ratio_degraded,
                        bytes_words(t.memory_min_increase_bytes)
                    ),
                )
            } else {
                (
                    Outcome::Pass,
                    format!(
                        "memory per replica {} → {} (degraded above {}x and +{})",
                        bytes_words(b),
                        bytes_words(a),
                        t.memory_ratio_degraded,
                        bytes_words(t.memory_min_increase_bytes)
                    ),
                )
            }
        }
        _ => (
            Outcome::Skipped,
            "memory not measured in both windows".to_string(),
        ),
    };
    Check {
        check: CheckKind::MemoryPerReplica,
        outcome,
        before: words(before),
        after: words(after),
        before_value: before.memory_bytes_per_replica.map(|b| b as f64),
        after_value: after.memory_bytes_per_replica.map(|b| b as f64),
        reason,
    }
}

/// `512 B`, `3.2 MiB`, `1.50 GiB`.
pub(crate) fn bytes_words(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    }
}

/// `850 ms`, `12 s`, `2 min 5 s`, `3 h 10 min`.
pub(crate) fn span_words(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    let s = ms / 1_000;
    if s < 60 {
        // One decimal below 10 s, where it matters.
        if s < 10 && !ms.is_multiple_of(1_000) {
            return format!("{:.1} s", ms as f64 / 1_000.0);
        }
        return format!("{s} s");
    }
    let (h, m, s) = (s / 3_600, (s % 3_600) / 60, s % 60);
    match (h, m, s) {
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// A healthy, quiet single-container window of `duration_ms`.
    fn quiet(image: &str, duration_ms: u64) -> Window {
        Window {
            image: image.to_string(),
            duration_ms,
            replicas_desired: 1,
            replicas_ready: 1,
            restarts: 0,
            oom_kills: 0,
            nonzero_exit_codes: Vec::new(),
            health_end: HealthStatus::Healthy,
            unhealthy_seen: false,
            cpu_cores_per_replica: Some(0.2),
            memory_bytes_per_replica: Some(100 * MIB),
            resource_samples: 10,
        }
    }

    fn check(v: &GateVerdict, kind: CheckKind) -> &Check {
        match v.checks.iter().find(|c| c.check == kind) {
            Some(c) => c,
            None => panic!("no {kind:?} check in {v:?}"),
        }
    }

    fn judge(before: &Window, after: &Window) -> GateVerdict {
        verdict(before, after, &Thresholds::default())
    }

    #[test]
    fn quiet_windows_are_healthy_with_every_check_listed() {
        let v = judge(&quiet("app:1.0", 10_000), &quiet("app:1.1", 30_000));
        assert_eq!(v.verdict, Verdict::Healthy);
        assert_eq!(v.checks.len(), 7);
        assert!(
            v.checks.iter().all(|c| c.outcome == Outcome::Pass),
            "{v:#?}"
        );
        assert_eq!(v.rollback_image, "app:1.0");
        assert_eq!(v.from_image, "app:1.0");
        assert_eq!(v.to_image, "app:1.1");
        assert!(
            v.summary
                .starts_with("healthy: app:1.1 did no worse than app:1.0")
        );
    }

    #[test]
    fn a_new_restart_fails_with_its_numbers() {
        let mut after = quiet("app:1.1", 30_000);
        after.restarts = 2;
        let v = judge(&quiet("app:1.0", 10_000), &after);
        assert_eq!(v.verdict, Verdict::Failed);
        let c = check(&v, CheckKind::Restarts);
        assert_eq!(c.outcome, Outcome::Failed);
        assert_eq!(c.before, "0 in 10 s");
        assert_eq!(c.after, "2 in 30 s (240.0/h)");
        assert_eq!((c.before_value, c.after_value), (Some(0.0), Some(2.0)));
        assert_eq!(
            c.reason,
            "2 restarts in the 30 s after the update, none in the 10 s before"
        );
        assert_eq!(v.rollback_image, "app:1.0");
        assert!(
            v.summary.starts_with("failed: restarts: 2 restarts"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn restarts_no_more_often_than_before_pass() {
        // 24 restarts in 24 h before (1/h), 1 in the hour after (1/h).
        let mut before = quiet("app:1.0", 24 * 3_600_000);
        before.restarts = 24;
        let mut after = quiet("app:1.1", 3_600_000);
        after.restarts = 1;
        let v = judge(&before, &after);
        let c = check(&v, CheckKind::Restarts);
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
        assert!(
            c.reason.contains("no more often than before"),
            "{}",
            c.reason
        );
        // Twice in that hour is more often than before: failed.
        after.restarts = 2;
        let c = judge(&before, &after).checks[0].clone();
        assert_eq!(c.outcome, Outcome::Failed);
        assert_eq!(
            c.reason,
            "2 restarts in the 1 h after the update, 1.0/h before"
        );
    }

    #[test]
    fn any_new_oom_kill_fails() {
        let mut after = quiet("app:1.1", 30_000);
        after.oom_kills = 1;
        let v = judge(&quiet("app:1.0", 10_000), &after);
        assert_eq!(v.verdict, Verdict::Failed);
        let c = check(&v, CheckKind::OomKills);
        assert_eq!(c.outcome, Outcome::Failed);
        assert_eq!(
            c.reason,
            "1 OOM kill in the 30 s after the update, none in the 10 s before"
        );
    }

    #[test]
    fn a_nonzero_exit_fails_and_names_the_code() {
        let mut after = quiet("app:1.1", 30_000);
        after.nonzero_exit_codes = vec![3, 137];
        after.replicas_ready = 0;
        let v = judge(&quiet("app:1.0", 10_000), &after);
        assert_eq!(v.verdict, Verdict::Failed);
        let c = check(&v, CheckKind::NonzeroExits);
        assert_eq!(c.outcome, Outcome::Failed);
        assert!(c.reason.ends_with("(exit codes 3, 137)"), "{}", c.reason);
        assert_eq!(c.after_value, Some(2.0));
    }

    #[test]
    fn an_empty_before_window_still_judges_counts() {
        let mut after = quiet("app:1.1", 30_000);
        after.restarts = 1;
        let c = judge(&quiet("app:1.0", 0), &after).checks[0].clone();
        assert_eq!(c.outcome, Outcome::Failed);
        let c = judge(&quiet("app:1.0", 0), &quiet("app:1.1", 0)).checks[0].clone();
        assert_eq!(c.outcome, Outcome::Pass);
    }

    #[test]
    fn unhealthy_after_fails_unless_it_was_unhealthy_before() {
        let mut after = quiet("app:1.2", 30_000);
        after.health_end = HealthStatus::Unhealthy;
        after.unhealthy_seen = true;
        let v = judge(&quiet("app:1.1", 10_000), &after);
        assert_eq!(v.verdict, Verdict::Failed);
        let c = check(&v, CheckKind::Health);
        assert_eq!(c.outcome, Outcome::Failed);
        assert_eq!(
            (c.before.as_str(), c.after.as_str()),
            ("healthy", "unhealthy")
        );
        assert_eq!(
            c.reason,
            "app:1.2 was unhealthy at the end of the window after the update (healthy before)"
        );

        let mut before = quiet("app:1.1", 10_000);
        before.health_end = HealthStatus::Unhealthy;
        let v = judge(&before, &after);
        assert_eq!(v.verdict, Verdict::Degraded);
        assert_eq!(check(&v, CheckKind::Health).outcome, Outcome::Degraded);
    }

    #[test]
    fn unhealthy_during_the_window_fails_even_if_healthy_at_the_end() {
        let mut after = quiet("app:1.2", 30_000);
        after.unhealthy_seen = true;
        let v = judge(&quiet("app:1.1", 10_000), &after);
        let c = check(&v, CheckKind::Health);
        assert_eq!(c.outcome, Outcome::Failed);
        assert_eq!(c.after, "healthy at the end, unhealthy during the window");
        assert!(c.reason.contains("during the window"), "{}", c.reason);
    }

    #[test]
    fn still_starting_at_the_end_is_degraded() {
        let mut after = quiet("app:1.1", 30_000);
        after.health_end = HealthStatus::Starting;
        let v = judge(&quiet("app:1.0", 10_000), &after);
        assert_eq!(v.verdict, Verdict::Degraded);
        let c = check(&v, CheckKind::Health);
        assert_eq!(c.outcome, Outcome::Degraded);
        assert_eq!(
            c.reason,
            "health still starting at the end of the 30 s window: running, but not proven healthy"
        );
    }

    #[test]
    fn losing_the_healthcheck_is_degraded_and_none_on_both_sides_passes() {
        let mut after = quiet("app:1.1", 30_000);
        after.health_end = HealthStatus::None;
        let v = judge(&quiet("app:1.0", 10_000), &after);
        assert_eq!(check(&v, CheckKind::Health).outcome, Outcome::Degraded);

        let mut before = quiet("app:1.0", 10_000);
        before.health_end = HealthStatus::None;
        let v = judge(&before, &after);
        assert_eq!(v.verdict, Verdict::Healthy);
        assert_eq!(check(&v, CheckKind::Health).outcome, Outcome::Pass);
    }

    #[test]
    fn fewer_ready_replicas_fail_but_a_ready_scale_down_passes() {
        let mut before = quiet("app:1.0", 10_000);
        before.replicas_desired = 3;
        before.replicas_ready = 3;
        let mut after = quiet("app:1.1", 30_000);
        after.replicas_desired = 3;
        after.replicas_ready = 2;
        let v = judge(&before, &after);
        let c = check(&v, CheckKind::ReadyReplicas);
        assert_eq!(c.outcome, Outcome::Failed);
        assert_eq!(
            (c.before.as_str(), c.after.as_str()),
            ("3/3 ready", "2/3 ready")
        );
        assert_eq!(
            c.reason,
            "2 of 3 replicas ready at the end of the window after the update, 3 before"
        );
        after.replicas_desired = 2;
        let v = judge(&before, &after);
        assert_eq!(check(&v, CheckKind::ReadyReplicas).outcome, Outcome::Pass);
    }

    #[test]
    fn memory_growth_needs_both_the_ratio_and_the_floor() {
        let before = quiet("app:1.0", 10_000); // 100 MiB
        let mut after = quiet("app:1.1", 30_000);
        after.memory_bytes_per_replica = Some(151 * MIB);
        let v = judge(&before, &after);
        assert_eq!(v.verdict, Verdict::Degraded);
        let c = check(&v, CheckKind::MemoryPerReplica);
        assert_eq!(c.outcome, Outcome::Degraded);
        assert_eq!(c.before, "100.0 MiB (10 samples)");
        assert_eq!(c.after, "151.0 MiB (10 samples)");
        assert_eq!(
            c.reason,
            "memory per replica went from 100.0 MiB to 151.0 MiB: more than 1.5x and at least 32.0 MiB more"
        );
        // Exactly 1.5x is not above it.
        after.memory_bytes_per_replica = Some(150 * MIB);
        assert_eq!(judge(&before, &after).verdict, Verdict::Healthy);
        // 5x of a tiny number is noise under the 32 MiB floor.
        let mut small_before = quiet("app:1.0", 10_000);
        small_before.memory_bytes_per_replica = Some(2 * MIB);
        let mut small_after = quiet("app:1.1", 30_000);
        small_after.memory_bytes_per_replica = Some(10 * MIB);
        assert_eq!(judge(&small_before, &small_after).verdict, Verdict::Healthy);
    }

    #[test]
    fn cpu_growth_needs_both_the_ratio_and_the_floor() {
        let before = quiet("app:1.0", 10_000); // 0.2 cores
        let mut after = quiet("app:1.1", 30_000);
        after.cpu_cores_per_replica = Some(0.45);
        let v = judge(&before, &after);
        let c = check(&v, CheckKind::CpuPerReplica);
        assert_eq!(c.outcome, Outcome::Degraded);
        assert_eq!(
            c.reason,
            "CPU per replica went from 0.200 to 0.450 cores: more than 2x and at least 0.05 cores more"
        );
        after.cpu_cores_per_replica = Some(0.4);
        assert_eq!(judge(&before, &after).verdict, Verdict::Healthy);
        let mut idle_before = quiet("app:1.0", 10_000);
        idle_before.cpu_cores_per_replica = Some(0.001);
        let mut idle_after = quiet("app:1.1", 30_000);
        idle_after.cpu_cores_per_replica = Some(0.02);
        assert_eq!(judge(&idle_before, &idle_after).verdict, Verdict::Healthy);
    }

    #[test]
    fn thresholds_are_configurable() {
        let before = quiet("app:1.0", 10_000);
        let mut after = quiet("app:1.1", 30_000);
        after.memory_bytes_per_replica = Some(130 * MIB);
        let strict = Thresholds {
            memory_ratio_degraded: 1.2,
            memory_min_increase_bytes: 10 * MIB,
            ..Thresholds::default()
        };
        assert_eq!(verdict(&before, &after, &strict).verdict, Verdict::Degraded);
        assert_eq!(judge(&before, &after).verdict, Verdict::Healthy);
        // Partial config files keep the other defaults.
        let parsed: Result<Thresholds, _> = serde_json::from_str(r#"{"cpu_ratio_degraded": 3.0}"#);
        match parsed {
            Ok(t) => {
                assert_eq!(t.cpu_ratio_degraded, 3.0);
                assert_eq!(t.memory_ratio_degraded, DEFAULT_MEMORY_RATIO_DEGRADED);
            }
            Err(e) => panic!("thresholds did not parse: {e}"),
        }
    }

    #[test]
    fn resources_not_measured_are_skipped_not_failed() {
        let mut before = quiet("app:1.0", 10_000);
        before.cpu_cores_per_replica = None;
        before.memory_bytes_per_replica = None;
        let v = judge(&before, &quiet("app:1.1", 30_000));
        assert_eq!(v.verdict, Verdict::Healthy);
        let c = check(&v, CheckKind::CpuPerReplica);
        assert_eq!(c.outcome, Outcome::Skipped);
        assert_eq!(c.before, "not measured");
        assert_eq!(
            check(&v, CheckKind::MemoryPerReplica).outcome,
            Outcome::Skipped
        );
    }

    #[test]
    fn failed_wins_over_degraded_and_the_summary_lists_both() {
        let mut after = quiet("app:1.1", 30_000);
        after.oom_kills = 1;
        after.memory_bytes_per_replica = Some(400 * MIB);
        let v = judge(&quiet("app:1.0", 10_000), &after);
        assert_eq!(v.verdict, Verdict::Failed);
        assert!(v.summary.contains("oom_kills: 1 OOM kill"), "{}", v.summary);
        assert!(
            v.summary
                .contains("memory_per_replica: memory per replica went"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn verdicts_serialize_in_snake_case() {
        let v = judge(&quiet("app:1.0", 10_000), &quiet("app:1.1", 30_000));
        let json = match serde_json::to_value(&v) {
            Ok(j) => j,
            Err(e) => panic!("serialize: {e}"),
        };
        assert_eq!(json["verdict"], "healthy");
        assert_eq!(json["checks"][1]["check"], "oom_kills");
        assert_eq!(json["checks"][1]["outcome"], "pass");
        assert_eq!(json["rollback_image"], "app:1.0");
    }

    #[test]
    fn spans_and_bytes_read_as_people_write_them() {
        assert_eq!(span_words(850), "850 ms");
        assert_eq!(span_words(2_500), "2.5 s");
        assert_eq!(span_words(12_000), "12 s");
        assert_eq!(span_words(125_000), "2 min 5 s");
        assert_eq!(span_words(3_600_000), "1 h");
        assert_eq!(span_words(3_600_000 + 600_000), "1 h 10 min");
        assert_eq!(bytes_words(512), "512 B");
        assert_eq!(bytes_words(3 * MIB + MIB / 5), "3.2 MiB");
    }
}

//! `upid updates`, `upid updates events` and `upid updates rollouts` as
//! JSON/YAML records.

use serde::Serialize;

use crate::cli::units;
use crate::wire::v1;

/// Every decision and what was skipped (`upid updates -o json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdatesView {
    /// One per workload container and image.
    pub decisions: Vec<UpdateDecisionView>,
    /// Containers not decided, with why.
    pub skipped: Vec<String>,
}

/// One decision for one running image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateDecisionView {
    /// Namespace or compose project ('' for plain containers).
    pub namespace: String,
    /// Workload kind (`Deployment`, `ComposeService`, `Container`...).
    pub workload_kind: String,
    /// Workload name.
    pub workload: String,
    /// Container name.
    pub container: String,
    /// The image as it runs.
    pub current: String,
    /// Its digest where the runtime reports one.
    pub running_digest: Option<String>,
    /// The reference to move to; `null` when there is none.
    pub candidate: Option<String>,
    /// major, minor, patch, build, date, prerelease, digest, ... or none.
    pub change: String,
    /// approve, review, hold, block, or none.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// The policy level that applied.
    pub policy: String,
    /// Where it came from: default, labels.
    pub policy_source: String,
    /// Seconds since the candidate was created; `null` when unknown.
    pub candidate_age_s: Option<i64>,
    /// Why the candidate's age is unknown, when it is.
    pub candidate_age_unknown: Option<String>,
    /// The newest newer tag, when it is not the candidate.
    pub newest: Option<String>,
    /// Why the registry could not be asked, when it could not.
    pub registry_error: Option<String>,
    /// Containers and nodes the decision covers.
    pub container_ids: Vec<String>,
    /// See `container_ids`.
    pub nodes: Vec<String>,
    /// When the registry was asked (RFC 3339).
    pub checked_at: Option<String>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl From<&v1::UpdateDecision> for UpdateDecisionView {
    fn from(d: &v1::UpdateDecision) -> Self {
        UpdateDecisionView {
            namespace: d.namespace.clone(),
            workload_kind: d.workload_kind.clone(),
            workload: d.workload.clone(),
            container: d.container.clone(),
            current: d.current.clone(),
            running_digest: non_empty(&d.running_digest),
            candidate: d.candidate.clone(),
            change: d.change.clone(),
            decision: d.decision.clone(),
            reason: d.reason.clone(),
            policy: d.policy.clone(),
            policy_source: d.policy_source.clone(),
            candidate_age_s: d.candidate_age_s,
            candidate_age_unknown: non_empty(&d.candidate_age_unknown),
            newest: d.newest.clone(),
            registry_error: non_empty(&d.registry_error),
            container_ids: d.container_ids.clone(),
            nodes: d.nodes.clone(),
            checked_at: units::rfc3339(d.checked_unix_ns),
        }
    }
}

/// Recorded steps of applied updates (`upid updates events -o json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateEventsView {
    /// Newest first.
    pub events: Vec<UpdateEventView>,
}

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateEventView {
    /// When (RFC 3339).
    pub time: Option<String>,
    /// Unix ns.
    pub timestamp_unix_ns: i64,
    /// Container or workload name.
    pub target: String,
    /// apply_started, container_recreated, gate_passed, gate_failed,
    /// rolled_back, ...
    pub kind: String,
    /// Image before.
    pub from_image: String,
    /// Image the update moved to.
    pub to_image: String,
    /// What happened, with the evidence.
    pub message: String,
    /// Host it happened on.
    pub node: String,
    /// Containers involved.
    pub container_ids: Vec<String>,
}

impl From<&v1::UpdateEvent> for UpdateEventView {
    fn from(e: &v1::UpdateEvent) -> Self {
        UpdateEventView {
            time: units::rfc3339(e.timestamp_unix_ns),
            timestamp_unix_ns: e.timestamp_unix_ns,
            target: e.target.clone(),
            kind: e.kind.clone(),
            from_image: e.from_image.clone(),
            to_image: e.to_image.clone(),
            message: e.message.clone(),
            node: e.node.clone(),
            container_ids: e.container_ids.clone(),
        }
    }
}

/// What `upid updates apply` did (`-o json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyView {
    /// The container's name.
    pub container: String,
    /// The image it ran, and the one it was updated to.
    pub from_image: String,
    /// See `from_image`.
    pub to_image: String,
    /// The health gate's verdict: healthy, degraded or failed.
    pub verdict: String,
    /// The old container runs again.
    pub rolled_back: bool,
    /// The decision that was applied (`null` with --force --to).
    pub decision: Option<UpdateDecisionView>,
    /// Applied with --force.
    pub forced: bool,
    /// The old container's id (running again after a rollback); empty for
    /// a Kubernetes workload (see `kubernetes`).
    pub old_container_id: String,
    /// The new container's id (removed after a rollback); empty for a
    /// Kubernetes workload.
    pub new_container_id: String,
    /// The name the old container is kept under, stopped.
    pub old_container_kept_as: Option<String>,
    /// Each check of the gate with its before and after numbers.
    pub gate: crate::updates::gate::GateVerdict,
    /// Every step, in order.
    pub events: Vec<crate::updates::event::UpdateEvent>,
    /// Why the steps could not be recorded at the collector, if they
    /// could not.
    pub recording_error: Option<String>,
    /// For a Kubernetes workload: the workload, its revisions, the rollout
    /// and the pods judged (absent for a Docker container, whose
    /// `old_container_id` and `new_container_id` say the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubeApplyView>,
}

/// What `upid updates apply KIND/NAME` did to the workload (`kubernetes` in
/// `-o json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubeApplyView {
    /// The namespace.
    pub namespace: String,
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    /// The workload's name.
    pub name: String,
    /// `NAMESPACE/KIND/NAME`, the target its events are recorded under.
    pub target: String,
    /// The revision before (`revision 7`) and the one the update made.
    pub from_revision: String,
    /// See `from_revision`.
    pub to_revision: String,
    /// The update's rollout completed.
    pub rollout_completed: bool,
    /// Where it ended, in kubectl's words.
    pub rollout: String,
    /// A rollback was started (rollout failed, gate failed, or degraded
    /// with --rollback-on-degraded).
    pub rollback_started: bool,
    /// Pods of the old revision watched before the change.
    pub old_pods: Vec<String>,
    /// Pods of the new revision watched after it.
    pub new_pods: Vec<String>,
    /// The container's runtime ids in the old pods.
    pub old_container_ids: Vec<String>,
    /// ...and in the new ones.
    pub new_container_ids: Vec<String>,
    /// Nodes those pods ran on.
    pub nodes: Vec<String>,
}

/// Image changes the collector found, judged (`upid updates rollouts -o
/// json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutsView {
    /// Newest change first.
    pub rollouts: Vec<RolloutView>,
    /// Length of the windows before and after each change, seconds.
    pub window_s: u32,
    /// Changes from this time on were looked at (RFC 3339; `null`: all).
    pub since: Option<String>,
    /// When the collector answered (RFC 3339).
    pub at: Option<String>,
    /// Unix ns of `at`, for ages.
    #[serde(skip)]
    pub at_unix_ns: i64,
}

/// One window of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowView {
    /// Start (RFC 3339).
    pub start: Option<String>,
    /// End (RFC 3339).
    pub end: Option<String>,
    /// End minus start, seconds.
    pub duration_s: i64,
}

impl WindowView {
    fn new(start_unix_ns: i64, end_unix_ns: i64) -> WindowView {
        WindowView {
            start: units::rfc3339(start_unix_ns),
            end: units::rfc3339(end_unix_ns),
            duration_s: end_unix_ns.saturating_sub(start_unix_ns) / 1_000_000_000,
        }
    }
}

/// One check of the health gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateCheckView {
    /// restarts, oom_kills, nonzero_exits, health, ready_replicas,
    /// cpu_per_replica, memory_per_replica.
    pub check: String,
    /// pass, degraded, failed, skipped.
    pub outcome: String,
    /// Before, in words.
    pub before: String,
    /// After, in words.
    pub after: String,
    /// Before, for machines (`null` for health and what was not measured).
    pub before_value: Option<f64>,
    /// After, for machines.
    pub after_value: Option<f64>,
    /// Why.
    pub reason: String,
}

/// One image change of one workload container, judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    /// Namespace or compose project ('' for plain containers).
    pub namespace: String,
    /// Workload kind (`Deployment`, `ComposeService`, `Container`...).
    pub workload_kind: String,
    /// Workload name.
    pub workload: String,
    /// Container name (the service for compose).
    pub container: String,
    /// Image before the change.
    pub from_image: String,
    /// Image after it.
    pub to_image: String,
    /// First start of a container with the new image (RFC 3339).
    pub changed_at: Option<String>,
    /// The same in Unix ns.
    pub changed_unix_ns: i64,
    /// Window length asked for, seconds.
    pub window_s: u32,
    /// The window judged before the change.
    pub before: WindowView,
    /// The window judged after it.
    pub after: WindowView,
    /// healthy, degraded or failed.
    pub verdict: String,
    /// The after window is not over: the verdict may still change.
    pub provisional: bool,
    /// Every check with its numbers.
    pub checks: Vec<GateCheckView>,
    /// The verdict and why.
    pub summary: String,
    /// The image to roll back to.
    pub rollback_image: String,
    /// Containers on the old image in the before window.
    pub from_container_ids: Vec<String>,
    /// Containers on the new image in the after window.
    pub to_container_ids: Vec<String>,
    /// Their nodes.
    pub nodes: Vec<String>,
    /// What to know about the windows (in progress, cut short...).
    pub note: Option<String>,
}

impl From<&v1::Rollout> for RolloutView {
    fn from(r: &v1::Rollout) -> Self {
        RolloutView {
            namespace: r.namespace.clone(),
            workload_kind: r.workload_kind.clone(),
            workload: r.workload.clone(),
            container: r.container.clone(),
            from_image: r.from_image.clone(),
            to_image: r.to_image.clone(),
            changed_at: units::rfc3339(r.changed_unix_ns),
            changed_unix_ns: r.changed_unix_ns,
            window_s: r.window_s,
            before: WindowView::new(r.before_start_unix_ns, r.before_end_unix_ns),
            after: WindowView::new(r.after_start_unix_ns, r.after_end_unix_ns),
            verdict: r.verdict.clone(),
            provisional: r.in_progress,
            checks: r
                .checks
                .iter()
                .map(|c| GateCheckView {
                    check: c.check.clone(),
                    outcome: c.outcome.clone(),
                    before: c.before.clone(),
                    after: c.after.clone(),
                    before_value: c.before_value,
                    after_value: c.after_value,
                    reason: c.reason.clone(),
                })
                .collect(),
            summary: r.summary.clone(),
            rollback_image: r.rollback_image.clone(),
            from_container_ids: r.from_container_ids.clone(),
            to_container_ids: r.to_container_ids.clone(),
            nodes: r.nodes.clone(),
            note: non_empty(&r.note),
        }
    }
}

impl From<&v1::ListRolloutsResponse> for RolloutsView {
    fn from(r: &v1::ListRolloutsResponse) -> Self {
        RolloutsView {
            rollouts: r.rollouts.iter().map(RolloutView::from).collect(),
            window_s: r.window_s,
            since: units::rfc3339(r.since_unix_ns),
            at: units::rfc3339(r.at_unix_ns),
            at_unix_ns: r.at_unix_ns,
        }
    }
}

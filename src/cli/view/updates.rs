//! `upid updates` and `upid updates events` as JSON/YAML records.

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
    /// The old container's id (running again after a rollback).
    pub old_container_id: String,
    /// The new container's id (removed after a rollback).
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
}

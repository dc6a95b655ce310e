//! Whether a workload's rollout is done, still going, or failed: the rules
//! of `kubectl rollout status`, read from the objects the API server
//! returns.
//!
//! - Deployment: nothing is known until `status.observedGeneration`
//!   reaches `metadata.generation`; then a `Progressing` condition with
//!   reason `ProgressDeadlineExceeded` is a failure; otherwise done once
//!   `updatedReplicas` reaches `spec.replicas`, no old replicas are left
//!   (`replicas` = `updatedReplicas`) and `availableReplicas` reaches
//!   `updatedReplicas`.
//! - StatefulSet (RollingUpdate only): observed generation as above;
//!   `readyReplicas` must reach `spec.replicas`; with a partition,
//!   `updatedReplicas` must reach `replicas - partition`; without one,
//!   `updateRevision` must equal `currentRevision`.
//! - DaemonSet (RollingUpdate only): observed generation as above;
//!   `updatedNumberScheduled` and `numberAvailable` must reach
//!   `desiredNumberScheduled`.
//!
//! The messages are kubectl's.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    /// Complete; kubectl's words.
    Done(String),
    /// Still going; what it waits for.
    Waiting(String),
    /// It cannot complete (the progress deadline passed).
    Failed(String),
}

/// The reason of a Deployment's `Progressing` condition when it gave up.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// A Deployment's rollout, as `kubectl rollout status` judges it.
pub fn deployment_status(d: &Deployment) -> RolloutStatus {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutStatus::Waiting(
            "Waiting for deployment spec update to be observed...".to_string(),
        );
    }
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)
    {
        let detail = c
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return RolloutStatus::Failed(format!(
            "deployment {name:?} exceeded its progress deadline{detail}"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if let Some(wanted) = d.spec.as_ref().and_then(|s| s.replicas)
        && updated < wanted
    {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutStatus::Done(format!("deployment {name:?} successfully rolled out"))
}

/// A StatefulSet's rollout, as `kubectl rollout status` judges it.
pub fn statefulset_status(s: &StatefulSet) -> RolloutStatus {
    let generation = s.metadata.generation.unwrap_or(0);
    let status = s.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || generation > observed {
        return RolloutStatus::Waiting(
            "Waiting for statefulset spec update to be observed...".to_string(),
        );
    }
    let spec = s.spec.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    if let Some(wanted) = spec.replicas
        && ready < wanted
    {
        return RolloutStatus::Waiting(format!(
            "Waiting for {} pods to be ready...",
            wanted - ready
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if let (Some(replicas), Some(partition)) = (
        spec.replicas,
        spec.update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition),
    ) {
        if updated < replicas - partition {
            return RolloutStatus::Waiting(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                replicas - partition
            ));
        }
        return RolloutStatus::Done(format!(
            "partitioned roll out complete: {updated} new pods have been updated..."
        ));
    }
    let update = status.update_revision.clone().unwrap_or_default();
    if status.update_revision != status.current_revision {
        return RolloutStatus::Waiting(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update}..."
        ));
    }
    RolloutStatus::Done(format!(
        "statefulset rolling update complete {} pods at revision {update}...",
        status.current_replicas.unwrap_or(0)
    ))
}

/// A DaemonSet's rollout, as `kubectl rollout status` judges it.
pub fn daemonset_status(d: &DaemonSet) -> RolloutStatus {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutStatus::Waiting(
            "Waiting for daemon set spec update to be observed...".to_string(),
        );
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    if updated < desired {
        return RolloutStatus::Waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
        ));
    }
    let available = status.number_available.unwrap_or(0);
    if available < desired {
        return RolloutStatus::Waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
        ));
    }
    RolloutStatus::Done(format!("daemon set {name:?} successfully rolled out"))
}

/// Why a rollout of this StatefulSet or DaemonSet would never start by
/// itself: `kubectl rollout status` refuses anything but `RollingUpdate`
/// (with `OnDelete`, pods take the new template only when deleted by
/// hand). `None` when it rolls.
pub fn update_strategy_problem(kind: &str, strategy_type: Option<&str>) -> Option<String> {
    match strategy_type {
        None | Some("RollingUpdate") => None,
        Some(other) => Some(format!(
            "its update strategy is {other}, so changing the pod template replaces no pod by itself and there is no rollout to watch; only RollingUpdate {kind}s can be updated with the health gate"
        )),
    }
}

/// A label selector in the form `labelSelector=` takes:
/// `app=web,tier in (front,back),!legacy`.
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    terms.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
        match serde_json::from_value(json) {
            Ok(v) => v,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    fn deployment(generation: i64, spec_replicas: i32, status: serde_json::Value) -> Deployment {
        from(serde_json::json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": spec_replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}},
            "status": status
        }))
    }

    #[test]
    fn deployment_follows_kubectl_step_by_step() {
        let d = deployment(
            8,
            3,
            serde_json::json!({"observedGeneration": 7, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(
            deployment_status(&d),
            RolloutStatus::Waiting("Waiting for deployment spec update to be observed...".into())
        );
        let d = deployment(
            8,
            3,
            serde_json::json!({"observedGeneration": 8, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
        );
        assert_eq!(
            deployment_status(&d),
            RolloutStatus::Waiting("Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...".into())
        );
        let d = deployment(
            8,
            3,
            serde_json::json!({"observedGeneration": 8, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(
            deployment_status(&d),
            RolloutStatus::Waiting("Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...".into())
        );
        let d = deployment(
            8,
            3,
            serde_json::json!({"observedGeneration": 8, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
        );
        assert_eq!(
            deployment_status(&d),
            RolloutStatus::Waiting("Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...".into())
        );
        let d = deployment(
            8,
            3,
            serde_json::json!({"observedGeneration": 8, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(
            deployment_status(&d),
            RolloutStatus::Done("deployment \"web\" successfully rolled out".into())
        );
    }

    #[test]
    fn a_progress_deadline_is_a_failure_with_the_controllers_message() {
        let d = deployment(
            8,
            3,
            serde_json::json!({"observedGeneration": 8, "replicas": 4, "updatedReplicas": 1,
            "availableReplicas": 3, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"web-6c4d8b7f9\" has timed out progressing."}]}),
        );
        assert_eq!(
            deployment_status(&d),
            RolloutStatus::Failed("deployment \"web\" exceeded its progress deadline: ReplicaSet \"web-6c4d8b7f9\" has timed out progressing.".into())
        );
    }

    #[test]
    fn statefulset_waits_for_ready_then_revisions_or_the_partition() {
        let sts = |status: serde_json::Value, partition: Option<i32>| -> StatefulSet {
            let mut strategy = serde_json::json!({"type": "RollingUpdate"});
            if let Some(p) = partition {
                strategy["rollingUpdate"] = serde_json::json!({"partition": p});
            }
            from(serde_json::json!({
                "metadata": {"name": "db", "generation": 4},
                "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                         "updateStrategy": strategy,
                         "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16.3"}]}}},
                "status": status
            }))
        };
        let s = sts(
            serde_json::json!({"observedGeneration": 3, "replicas": 3}),
            None,
        );
        assert!(
            matches!(statefulset_status(&s), RolloutStatus::Waiting(m) if m.contains("spec update"))
        );
        let s = sts(
            serde_json::json!({"observedGeneration": 4, "replicas": 3, "readyReplicas": 2}),
            None,
        );
        assert_eq!(
            statefulset_status(&s),
            RolloutStatus::Waiting("Waiting for 1 pods to be ready...".into())
        );
        let s = sts(
            serde_json::json!({"observedGeneration": 4, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1,
            "currentRevision": "db-5f8c", "updateRevision": "db-7b9d", "currentReplicas": 2}),
            None,
        );
        assert_eq!(
            statefulset_status(&s),
            RolloutStatus::Waiting(
                "waiting for statefulset rolling update to complete 1 pods at revision db-7b9d..."
                    .into()
            )
        );
        let s = sts(
            serde_json::json!({"observedGeneration": 4, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
            "currentRevision": "db-7b9d", "updateRevision": "db-7b9d", "currentReplicas": 3}),
            None,
        );
        assert_eq!(
            statefulset_status(&s),
            RolloutStatus::Done(
                "statefulset rolling update complete 3 pods at revision db-7b9d...".into()
            )
        );
        let s = sts(
            serde_json::json!({"observedGeneration": 4, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1,
            "currentRevision": "db-5f8c", "updateRevision": "db-7b9d"}),
            Some(2),
        );
        assert_eq!(
            statefulset_status(&s),
            RolloutStatus::Done(
                "partitioned roll out complete: 1 new pods have been updated...".into()
            )
        );
    }

    #[test]
    fn daemonset_waits_for_updated_then_available_pods() {
        let ds = |updated: i32, available: i32| -> DaemonSet {
            from(serde_json::json!({
                "metadata": {"name": "node-exporter", "generation": 2},
                "spec": {"selector": {"matchLabels": {"app": "ne"}},
                         "template": {"spec": {"containers": [{"name": "ne", "image": "prom/node-exporter:v1.8.1"}]}}},
                "status": {"observedGeneration": 2, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
                           "numberMisscheduled": 0, "numberReady": available,
                           "updatedNumberScheduled": updated, "numberAvailable": available}
            }))
        };
        assert_eq!(
            daemonset_status(&ds(2, 4)),
            RolloutStatus::Waiting("Waiting for daemon set \"node-exporter\" rollout to finish: 2 out of 4 new pods have been updated...".into())
        );
        assert_eq!(
            daemonset_status(&ds(4, 3)),
            RolloutStatus::Waiting("Waiting for daemon set \"node-exporter\" rollout to finish: 3 of 4 updated pods are available...".into())
        );
        assert_eq!(
            daemonset_status(&ds(4, 4)),
            RolloutStatus::Done("daemon set \"node-exporter\" successfully rolled out".into())
        );
    }

    #[test]
    fn on_delete_cannot_be_watched() {
        assert!(update_strategy_problem("StatefulSet", Some("OnDelete")).is_some());
        assert_eq!(
            update_strategy_problem("DaemonSet", Some("RollingUpdate")),
            None
        );
        assert_eq!(update_strategy_problem("DaemonSet", None), None);
    }

    #[test]
    fn selectors_are_written_as_the_api_reads_them() {
        let s: LabelSelector = from(serde_json::json!({
            "matchLabels": {"app": "web", "tier": "front"},
            "matchExpressions": [
                {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"}
            ]
        }));
        assert_eq!(
            selector_string(&s),
            "app=web,tier=front,track in (stable,canary),!legacy,zone"
        );
    }
}

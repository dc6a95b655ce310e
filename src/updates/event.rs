//! What happened during an image update, step by step, as timestamped
//! events: the CLI prints them and sends them to the collector, which keeps
//! them with the container's history.

use serde::{Deserialize, Serialize};

/// One step of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateEventKind {
    /// The update began: the container and both images were found.
    ApplyStarted,
    /// The new image was not on the host and was pulled.
    ImagePulled,
    /// Something did not go as planned but the update went on (the old
    /// image could not be inspected, an old container could not be removed).
    Warning,
    /// The BEFORE window of the old container was recorded.
    BeforeRecorded,
    /// The old container was renamed aside (`<name>-upid-rollback`).
    OldContainerRenamed,
    /// The old container was stopped.
    OldContainerStopped,
    /// The new container was created under the original name, with the
    /// old one's configuration and the new image.
    ContainerRecreated,
    /// The new container was started.
    ContainerStarted,
    /// The gate's verdict was healthy.
    GatePassed,
    /// The gate's verdict was degraded.
    GateDegraded,
    /// The gate's verdict was failed.
    GateFailed,
    /// The old container was removed (the update is final).
    OldContainerRemoved,
    /// The old container was kept, stopped, under its aside name, for a
    /// rollback by hand.
    OldContainerKept,
    /// The rollback began.
    RollbackStarted,
    /// The old container runs again under its name.
    RolledBack,
    /// The rollback could not be completed; the message says what state
    /// things are in and what to do.
    RollbackFailed,
    /// A Docker or Kubernetes API call failed mid-way; the message says
    /// what was undone.
    ApplyAborted,
    /// Kubernetes: the workload's pod template was patched with the new
    /// image.
    TemplatePatched,
    /// Kubernetes: the rollout completed (as `kubectl rollout status`
    /// says it).
    RolloutCompleted,
    /// Kubernetes: the rollout failed (progress deadline exceeded, not
    /// complete in time, or its new pods failing).
    RolloutFailed,
}

impl UpdateEventKind {
    /// snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateEventKind::ApplyStarted => "apply_started",
            UpdateEventKind::ImagePulled => "image_pulled",
            UpdateEventKind::Warning => "warning",
            UpdateEventKind::BeforeRecorded => "before_recorded",
            UpdateEventKind::OldContainerRenamed => "old_container_renamed",
            UpdateEventKind::OldContainerStopped => "old_container_stopped",
            UpdateEventKind::ContainerRecreated => "container_recreated",
            UpdateEventKind::ContainerStarted => "container_started",
            UpdateEventKind::GatePassed => "gate_passed",
            UpdateEventKind::GateDegraded => "gate_degraded",
            UpdateEventKind::GateFailed => "gate_failed",
            UpdateEventKind::OldContainerRemoved => "old_container_removed",
            UpdateEventKind::OldContainerKept => "old_container_kept",
            UpdateEventKind::RollbackStarted => "rollback_started",
            UpdateEventKind::RolledBack => "rolled_back",
            UpdateEventKind::RollbackFailed => "rollback_failed",
            UpdateEventKind::ApplyAborted => "apply_aborted",
            UpdateEventKind::TemplatePatched => "template_patched",
            UpdateEventKind::RolloutCompleted => "rollout_completed",
            UpdateEventKind::RolloutFailed => "rollout_failed",
        }
    }
}

impl std::fmt::Display for UpdateEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timestamped step of an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateEvent {
    /// When, in milliseconds since the Unix epoch.
    pub ts_unix_ms: i64,
    /// Which step.
    pub kind: UpdateEventKind,
    /// The container (or workload) name.
    pub container: String,
    /// The image before the update.
    pub from_image: String,
    /// The image the update moves to.
    pub to_image: String,
    /// What happened, in words, with the numbers and ids involved.
    pub message: String,
}

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970).
pub(crate) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The events of one update (Docker or Kubernetes), in the order they
/// happened, each stamped with the update's target and images.
pub(crate) struct EventLog {
    /// The container (Docker) or `NAMESPACE/KIND/NAME` (Kubernetes).
    pub(crate) container: String,
    /// The image before the update.
    pub(crate) from_image: String,
    /// The image the update moves to.
    pub(crate) to_image: String,
    /// What happened so far.
    pub(crate) events: Vec<UpdateEvent>,
}

impl EventLog {
    /// A log with no events yet.
    pub(crate) fn new(container: String, from_image: String, to_image: String) -> EventLog {
        EventLog {
            container,
            from_image,
            to_image,
            events: Vec::new(),
        }
    }

    /// Records one step, stamped now.
    pub(crate) fn push(&mut self, kind: UpdateEventKind, message: impl Into<String>) {
        self.events.push(UpdateEvent {
            ts_unix_ms: now_unix_ms(),
            kind,
            container: self.container.clone(),
            from_image: self.from_image.clone(),
            to_image: self.to_image.clone(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_snake_case_kinds_and_round_trip() {
        let event = UpdateEvent {
            ts_unix_ms: 1_700_000_000_123,
            kind: UpdateEventKind::GateFailed,
            container: "web".to_string(),
            from_image: "app:1.1".to_string(),
            to_image: "app:1.2".to_string(),
            message: "failed: health: unhealthy".to_string(),
        };
        let json = match serde_json::to_value(&event) {
            Ok(j) => j,
            Err(e) => panic!("serialize: {e}"),
        };
        assert_eq!(json["kind"], "gate_failed");
        assert_eq!(json["ts_unix_ms"], 1_700_000_000_123_i64);
        let back: UpdateEvent = match serde_json::from_value(json) {
            Ok(e) => e,
            Err(e) => panic!("deserialize: {e}"),
        };
        assert_eq!(back, event);
        assert_eq!(
            UpdateEventKind::RollbackFailed.to_string(),
            "rollback_failed"
        );
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_unix_ms() > 1_577_836_800_000);
    }
}

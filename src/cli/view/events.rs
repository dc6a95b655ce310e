//! Lifecycle events as JSON/YAML records (`upid events`, and the events
//! of `upid describe container`).

use serde::Serialize;

use crate::cli::args::EventType;
use crate::cli::units;
use crate::cli::view::inventory::{UNKNOWN, WorkloadRefView, workload_label};
use crate::wire::v1;

/// One lifecycle event of one container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    /// When it happened (Unix ns).
    pub time_unix_ns: i64,
    /// When it happened, RFC 3339 UTC.
    pub time: Option<String>,
    /// `start`, `die`, `oom`, `restart`, `image-change`, `health-change`,
    /// `create`, `destroy`, or `unknown`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Kubernetes namespace or compose project.
    pub namespace: Option<String>,
    /// `kind/name` of the owning workload, e.g. `deployment/web`.
    pub workload: Option<String>,
    /// The owning workload in full.
    pub workload_ref: Option<WorkloadRefView>,
    /// What the CONTAINER column shows: the container name, else the
    /// 12-character id.
    pub container: String,
    /// Container name (`null` when unknown).
    pub container_name: Option<String>,
    /// Full container id.
    pub container_id: String,
    /// Node it ran on.
    pub node_name: String,
    /// Image reference it ran.
    pub image: Option<String>,
    /// Exit code (`die`).
    pub exit_code: Option<i32>,
    /// Previous value of a change (health status name, image reference).
    pub from: Option<String>,
    /// New value of a change.
    pub to: Option<String>,
    /// What the DETAIL column shows: exit code, `from → to`, and the
    /// runtime's text.
    pub detail: Option<String>,
    /// The runtime's or agent's own text, e.g. `exit 137 (OOMKilled)`.
    pub event_detail: Option<String>,
}

impl From<&v1::Event> for EventView {
    fn from(e: &v1::Event) -> Self {
        let ev = e.event.clone().unwrap_or_default();
        let event_type = EventType::of_kind(ev.kind).map_or(UNKNOWN, EventType::name);
        let workload_ref = e
            .workload
            .as_ref()
            .filter(|w| !w.name.is_empty())
            .map(WorkloadRefView::from);
        let namespace = non_empty(&e.namespace).or_else(|| {
            workload_ref
                .as_ref()
                .and_then(|w: &WorkloadRefView| w.namespace.clone())
        });
        let short_id = ev.container_id.get(..12).unwrap_or(&ev.container_id);
        EventView {
            time_unix_ns: ev.timestamp_unix_ns,
            time: units::rfc3339(ev.timestamp_unix_ns),
            event_type: event_type.into(),
            namespace,
            workload: e.workload.as_ref().and_then(workload_label),
            workload_ref,
            container: if e.container_name.is_empty() {
                short_id.to_owned()
            } else {
                e.container_name.clone()
            },
            container_name: non_empty(&e.container_name),
            container_id: ev.container_id.clone(),
            node_name: e.node_name.clone(),
            image: non_empty(&e.image),
            exit_code: ev.exit_code,
            from: non_empty(&ev.from),
            to: non_empty(&ev.to),
            detail: detail_text(&ev),
            event_detail: non_empty(&ev.detail),
        }
    }
}

/// The DETAIL column: `exit 137`, `healthy → unhealthy`, then the event's
/// own text when it says more (`exit 137 (OOMKilled)` replaces `exit 137`).
fn detail_text(ev: &v1::LifecycleEvent) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(code) = ev.exit_code {
        parts.push(format!("exit {code}"));
    }
    if !ev.from.is_empty() || !ev.to.is_empty() {
        let side = |s: &str| {
            if s.is_empty() {
                units::NONE.to_owned()
            } else {
                s.to_owned()
            }
        };
        parts.push(format!("{} → {}", side(&ev.from), side(&ev.to)));
    }
    let ours = parts.join(", ");
    let theirs = ev.detail.trim();
    let text = if theirs.is_empty() {
        ours
    } else if ours.is_empty() || parts.iter().all(|p| theirs.contains(p.as_str())) {
        theirs.to_owned()
    } else {
        format!("{ours}: {theirs}")
    };
    (!text.is_empty()).then_some(text)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(exit: Option<i32>, from: &str, to: &str, detail: &str) -> v1::LifecycleEvent {
        v1::LifecycleEvent {
            exit_code: exit,
            from: from.into(),
            to: to.into(),
            detail: detail.into(),
            ..Default::default()
        }
    }

    #[test]
    fn details_say_exit_codes_and_changes_without_repeating() {
        assert_eq!(
            detail_text(&ev(Some(137), "", "", "")).as_deref(),
            Some("exit 137")
        );
        assert_eq!(
            detail_text(&ev(Some(137), "", "", "exit 137 (OOMKilled)")).as_deref(),
            Some("exit 137 (OOMKilled)")
        );
        assert_eq!(
            detail_text(&ev(Some(1), "", "", "Error")).as_deref(),
            Some("exit 1: Error")
        );
        assert_eq!(
            detail_text(&ev(None, "healthy", "unhealthy", "")).as_deref(),
            Some("healthy → unhealthy")
        );
        assert_eq!(
            detail_text(&ev(None, "", "nginx:1.25", "")).as_deref(),
            Some("- → nginx:1.25")
        );
        assert_eq!(detail_text(&ev(None, "", "", "")), None);
        assert_eq!(
            detail_text(&ev(None, "", "", "killed by the kernel")).as_deref(),
            Some("killed by the kernel")
        );
    }
}

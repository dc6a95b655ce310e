//! Joins what the sources report about each container and turns the
//! differences between successive records into lifecycle events.
//!
//! One record per container id and source; the merged record a batch
//! carries prefers Kubernetes for who the container is (namespace, pod,
//! workload, requests) and fills the rest from Docker (labels, digests,
//! times). Events come from comparing the merged record with the previous
//! one, so every source gets the same rules:
//! - `start` at the runtime's start time when that time changes,
//! - `die` at the runtime's finish time when it changes (exit code, reason),
//! - `oom` with a die whose reason is an OOM kill, for sources that do not
//!   report OOM kills themselves (Docker reports them as events; a process
//!   OOM-killed inside a container that keeps running is only visible so),
//! - while the kernel log is followed ([`super::kernel_log`]), `oom` from
//!   the kernel for every kill; a runtime's report of an OOM kill is then
//!   held for [`OOM_HOLD`] and dropped when the kernel reported a kill of
//!   that container within [`OOM_MATCH_NS`] of it (a runtime that missed
//!   the kill, as Docker does for processes killed at start, is made good
//!   by the kernel's report, and a die with exit 137 after a kernel-reported
//!   kill reads `OOMKilled`; such a die that reaches the tracker before the
//!   kernel's line is held for it as long),
//! - `restart` when the restart count rises, also across the new container
//!   id Kubernetes gives every restart (tracked per pod and container name),
//! - `health_change` and `image_change` between two known values,
//! - `create` for a container first seen in the created state, `destroy`
//!   when every source dropped it.
//!
//! Events carrying a runtime timestamp are idempotent: the collector keys
//! events by container, kind and time, so the START an agent derives again
//! after its own restart is stored once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use upid::wire::v1::{self, ContainerInfo, EventKind, LifecycleEvent};

use super::{Source, SourceUpdate};

/// Default interval between full inventory snapshots.
pub const DEFAULT_FULL_EVERY: Duration = Duration::from_secs(600);

/// How long a runtime's OOM report waits for the kernel's report of the
/// same kill while the kernel log is followed (the kernel's normally comes
/// first: it is logged before the process is even gone).
pub const OOM_HOLD: Duration = Duration::from_secs(2);

/// A runtime's and the kernel's report of an OOM kill in one container
/// this close in time are the same kill.
pub const OOM_MATCH_NS: i64 = 10_000_000_000;

/// Kernel-reported OOM kill times kept per container.
const KERNEL_OOMS_KEPT: usize = 16;

/// The merged inventory of one node and what changed since the last batch.
#[derive(Debug)]
pub struct Tracker {
    /// Each source's current records, by container id.
    by_source: BTreeMap<Source, HashMap<String, ContainerInfo>>,
    /// The merged record of every container, as last computed.
    merged: HashMap<String, ContainerInfo>,
    /// Restart count last seen per pod container (or container id).
    restarts: HashMap<String, u32>,
    changed: BTreeSet<String>,
    removed: BTreeSet<String>,
    events: Vec<LifecycleEvent>,
    /// Containers whose source reported an OOM kill as an event of its own
    /// (Docker's `oom`) that no die has consumed yet.
    oom_reported: HashSet<String>,
    /// The kernel log is followed (since this time): runtime OOM reports
    /// are held for the kernel's.
    kernel_oom_since_ns: Option<i64>,
    /// Times of the kernel-reported OOM kills of each container, newest
    /// last, at most [`KERNEL_OOMS_KEPT`].
    kernel_ooms: HashMap<String, VecDeque<i64>>,
    /// Runtime OOM reports waiting for the kernel's, with their arrival.
    held_ooms: Vec<(Instant, LifecycleEvent)>,
    /// Dies with exit 137 and no OOM reason waiting for the kernel's report
    /// of a kill, with their arrival and the run's start: the runtime's die
    /// can reach the tracker before the kernel log reader's line does.
    held_dies: Vec<(Instant, LifecycleEvent, i64)>,
    /// The node's labels per source; Kubernetes' win over Docker's.
    node_labels: BTreeMap<Source, BTreeMap<String, String>>,
    /// Node labels changed since the last batch.
    node_labels_changed: bool,
    degraded: BTreeMap<Source, String>,
    /// Sources that have not yet reported their first full list or a
    /// degradation: no full snapshot goes out before they have.
    waiting_for: BTreeSet<Source>,
    full_every: Duration,
    next_full: Option<Instant>,
}

impl Tracker {
    /// A tracker expecting reports from `sources`; a full snapshot goes
    /// out once all of them reported, then every `full_every`.
    pub fn new(sources: &[Source], full_every: Duration) -> Tracker {
        Tracker {
            by_source: sources.iter().map(|s| (*s, HashMap::new())).collect(),
            merged: HashMap::new(),
            restarts: HashMap::new(),
            changed: BTreeSet::new(),
            removed: BTreeSet::new(),
            events: Vec::new(),
            oom_reported: HashSet::new(),
            kernel_oom_since_ns: None,
            kernel_ooms: HashMap::new(),
            held_ooms: Vec::new(),
            held_dies: Vec::new(),
            node_labels: BTreeMap::new(),
            node_labels_changed: false,
            degraded: BTreeMap::new(),
            waiting_for: sources.iter().copied().collect(),
            full_every,
            next_full: None,
        }
    }

    /// The merged record of every known container.
    pub fn containers(&self) -> impl Iterator<Item = &ContainerInfo> {
        self.merged.values()
    }

    /// The merged record of one container.
    pub fn get(&self, container_id: &str) -> Option<&ContainerInfo> {
        self.merged.get(container_id)
    }

    /// Sources currently degraded, with why.
    pub fn degraded(&self) -> impl Iterator<Item = (Source, &str)> {
        self.degraded.iter().map(|(s, r)| (*s, r.as_str()))
    }

    /// Folds one source update in; `now_unix_ns` stamps events the runtime
    /// gives no time for.
    pub fn apply(&mut self, update: SourceUpdate, now_unix_ns: i64) {
        match update {
            SourceUpdate::Full { source, containers } => {
                self.waiting_for.remove(&source);
                let records = self.by_source.entry(source).or_default();
                let mut touched: BTreeSet<String> = records.keys().cloned().collect();
                records.clear();
                for c in containers {
                    if c.container_id.is_empty() {
                        continue;
                    }
                    touched.insert(c.container_id.clone());
                    records.insert(c.container_id.clone(), c);
                }
                for id in touched {
                    self.recompute(&id, now_unix_ns);
                }
            }
            SourceUpdate::Upsert { source, container } => {
                if container.container_id.is_empty() {
                    return;
                }
                let id = container.container_id.clone();
                self.by_source
                    .entry(source)
                    .or_default()
                    .insert(id.clone(), container);
                self.recompute(&id, now_unix_ns);
            }
            SourceUpdate::Remove {
                source,
                container_id,
            } => {
                if let Some(records) = self.by_source.get_mut(&source) {
                    records.remove(&container_id);
                }
                self.recompute(&container_id, now_unix_ns);
            }
            SourceUpdate::Event { source, event } => {
                if event.container_id.is_empty() {
                    return;
                }
                if event.kind != EventKind::Oom as i32 {
                    self.events.push(event);
                } else if source == Source::Kernel {
                    let id = event.container_id.clone();
                    let times = self.kernel_ooms.entry(id.clone()).or_default();
                    if times.len() == KERNEL_OOMS_KEPT {
                        times.pop_front();
                    }
                    times.push_back(event.timestamp_unix_ns);
                    self.events.push(event);
                    // The record may read OOMKilled now (see with_kernel_oom),
                    // and a held die of this kill goes out saying so.
                    self.recompute(&id, now_unix_ns);
                    self.release_held_dies(Some(Instant::now()));
                } else {
                    self.oom_reported.insert(event.container_id.clone());
                    self.runtime_oom(event);
                }
            }
            SourceUpdate::OomWatch { since_unix_ns } => {
                self.kernel_oom_since_ns = since_unix_ns;
                if since_unix_ns.is_none() {
                    // Nothing will confirm the held reports any more.
                    self.release_held_ooms(None);
                    self.release_held_dies(None);
                }
            }
            SourceUpdate::Degraded { source, reason } => {
                self.waiting_for.remove(&source);
                self.degraded.insert(source, reason);
            }
            SourceUpdate::Recovered { source } => {
                self.degraded.remove(&source);
            }
            SourceUpdate::NodeLabels { source, labels } => {
                if self.node_labels.get(&source) != Some(&labels) {
                    self.node_labels.insert(source, labels);
                    self.node_labels_changed = true;
                }
            }
        }
    }

    /// The node's labels from every source, Kubernetes' last so they win;
    /// `None` before any source reported them.
    fn merged_node_labels(&self) -> Option<std::collections::HashMap<String, String>> {
        if self.node_labels.is_empty() {
            return None;
        }
        let mut out = std::collections::HashMap::new();
        for source in [Source::Docker, Source::Kubernetes] {
            if let Some(labels) = self.node_labels.get(&source) {
                out.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Some(out)
    }

    /// What the next batch carries: a full snapshot when one is due (all
    /// sources reported, and first or `full_every` after the previous),
    /// else the changes since the previous call; `None` when nothing
    /// changed.
    pub fn take(&mut self, now: Instant) -> Option<v1::Inventory> {
        self.release_held_ooms(Some(now));
        self.release_held_dies(Some(now));
        let full_due = self.waiting_for.is_empty()
            && !self.by_source.is_empty()
            && self.next_full.is_none_or(|at| now >= at);
        let degraded = self
            .degraded
            .iter()
            .map(|(s, r)| format!("{}: {r}", s.as_str()))
            .collect();
        if full_due {
            self.next_full = Some(now + self.full_every);
            self.forget_gone_restart_slots();
            self.changed.clear();
            self.removed.clear();
            let mut containers: Vec<ContainerInfo> = self.merged.values().cloned().collect();
            containers.sort_by(|a, b| a.container_id.cmp(&b.container_id));
            self.node_labels_changed = false;
            let node_labels = self.merged_node_labels();
            return Some(v1::Inventory {
                full: true,
                containers,
                removed_container_ids: Vec::new(),
                events: std::mem::take(&mut self.events),
                degraded,
                node_labels_known: node_labels.is_some(),
                node_labels: node_labels.unwrap_or_default(),
            });
        }
        if self.changed.is_empty()
            && self.removed.is_empty()
            && self.events.is_empty()
            && !self.node_labels_changed
        {
            return None;
        }
        let node_labels = if std::mem::take(&mut self.node_labels_changed) {
            self.merged_node_labels()
        } else {
            None
        };
        let containers = std::mem::take(&mut self.changed)
            .iter()
            .filter_map(|id| self.merged.get(id).cloned())
            .collect();
        Some(v1::Inventory {
            full: false,
            containers,
            removed_container_ids: std::mem::take(&mut self.removed).into_iter().collect(),
            events: std::mem::take(&mut self.events),
            degraded,
            node_labels_known: node_labels.is_some(),
            node_labels: node_labels.unwrap_or_default(),
        })
    }

    /// Drops the restart counts of pod containers (or containers) no
    /// source lists any more, so pod churn does not grow the map forever.
    /// Runs with each full snapshot: a restart's new container id arrives
    /// within one update of the old one going, long before that.
    fn forget_gone_restart_slots(&mut self) {
        let live: std::collections::HashSet<String> =
            self.merged.values().map(restart_slot).collect();
        self.restarts.retain(|slot, _| live.contains(slot));
    }

    fn recompute(&mut self, id: &str, now_unix_ns: i64) {
        let docker = self.by_source.get(&Source::Docker).and_then(|m| m.get(id));
        let kube = self
            .by_source
            .get(&Source::Kubernetes)
            .and_then(|m| m.get(id));
        let new = merge(docker, kube).map(|c| self.with_kernel_oom(c));
        let old = self.merged.get(id).cloned();
        match (old, new) {
            (None, None) => {}
            (Some(_), None) => {
                self.merged.remove(id);
                self.changed.remove(id);
                self.removed.insert(id.to_string());
                self.oom_reported.remove(id);
                self.kernel_ooms.remove(id);
                self.events.push(event(id, EventKind::Destroy, now_unix_ns));
            }
            (old, Some(new)) => {
                if old.as_ref() == Some(&new) {
                    return;
                }
                let events = self.derive_events(old.as_ref(), &new, now_unix_ns);
                for e in events {
                    if e.kind == EventKind::Oom as i32 {
                        self.runtime_oom(e);
                    } else if e.kind == EventKind::Die as i32
                        && e.exit_code == Some(137)
                        && !new.oom_killed
                        && self.kernel_oom_since_ns.is_some()
                    {
                        let started = new.started_unix_ns.unwrap_or(0);
                        self.held_dies.push((Instant::now(), e, started));
                    } else {
                        self.events.push(e);
                    }
                }
                self.removed.remove(id);
                self.changed.insert(id.to_string());
                self.merged.insert(id.to_string(), new);
            }
        }
    }

    /// A runtime's report of an OOM kill: passed on at once unless the
    /// kernel log is followed; then held for the kernel's report (or
    /// dropped at once when the kernel's is already in).
    fn runtime_oom(&mut self, event: LifecycleEvent) {
        if self.kernel_oom_since_ns.is_none() {
            self.events.push(event);
        } else if !self.kernel_reported(&event) {
            self.held_ooms.push((Instant::now(), event));
        }
    }

    /// The kernel reported an OOM kill of `event`'s container close to its
    /// time.
    fn kernel_reported(&self, event: &LifecycleEvent) -> bool {
        self.kernel_ooms
            .get(&event.container_id)
            .is_some_and(|times| {
                times
                    .iter()
                    .any(|t| t.abs_diff(event.timestamp_unix_ns) <= OOM_MATCH_NS.unsigned_abs())
            })
    }

    /// Passes on the held dies: those the kernel reported a kill for in
    /// their run (at once, reading `OOMKilled`), and the others
    /// [`OOM_HOLD`] after their arrival (all of them when `now` is `None`).
    fn release_held_dies(&mut self, now: Option<Instant>) {
        let held = std::mem::take(&mut self.held_dies);
        for (arrived, mut die, started) in held {
            let killed = self
                .kernel_ooms
                .get(&die.container_id)
                .is_some_and(|times| {
                    times.iter().any(|t| {
                        *t >= started && *t <= die.timestamp_unix_ns.saturating_add(OOM_MATCH_NS)
                    })
                });
            if killed {
                die.detail = "exit 137 (OOMKilled)".to_string();
                self.events.push(die);
            } else if now.is_none_or(|now| now >= arrived + OOM_HOLD) {
                self.events.push(die);
            } else {
                self.held_dies.push((arrived, die, started));
            }
        }
    }

    /// Passes on the held runtime OOM reports that the kernel did not
    /// match within [`OOM_HOLD`] of their arrival (`now`; all of them when
    /// `None`) and drops those it did.
    fn release_held_ooms(&mut self, now: Option<Instant>) {
        let held = std::mem::take(&mut self.held_ooms);
        for (arrived, event) in held {
            if self.kernel_reported(&event) {
                continue;
            }
            if now.is_none_or(|now| now >= arrived + OOM_HOLD) {
                self.events.push(event);
            } else {
                self.held_ooms.push((arrived, event));
            }
        }
    }

    /// A record that exited with 137 after a kernel-reported OOM kill in
    /// its last run reads `OOMKilled`, as the runtime would have said had
    /// it seen the kill.
    fn with_kernel_oom(&self, mut c: ContainerInfo) -> ContainerInfo {
        if c.oom_killed || c.exit_code != Some(137) {
            return c;
        }
        let (Some(finished), Some(times)) =
            (c.finished_unix_ns, self.kernel_ooms.get(&c.container_id))
        else {
            return c;
        };
        let started = c.started_unix_ns.unwrap_or(0);
        if finished >= started
            && times
                .iter()
                .any(|t| *t >= started && *t <= finished.saturating_add(OOM_MATCH_NS))
        {
            c.oom_killed = true;
        }
        c
    }

    fn derive_events(
        &mut self,
        old: Option<&ContainerInfo>,
        new: &ContainerInfo,
        now_unix_ns: i64,
    ) -> Vec<LifecycleEvent> {
        let id = new.container_id.as_str();
        let mut out = Vec::new();
        if old.is_none() && new.state == v1::ContainerState::Created as i32 {
            out.push(event(id, EventKind::Create, now_unix_ns));
        }
        if let Some(finished) = new.finished_unix_ns
            && old.is_none_or(|o| o.finished_unix_ns != Some(finished))
            && new.exit_code.is_some()
        {
            let mut die = event(id, EventKind::Die, finished);
            die.exit_code = new.exit_code;
            let reason = termination_reason(new);
            die.detail = match (new.exit_code, reason) {
                (Some(code), Some(r)) => format!("exit {code} ({r})"),
                (Some(code), None) => format!("exit {code}"),
                (None, _) => String::new(),
            };
            out.push(die);
            // Docker reports OOM kills as events of its own, just before
            // the die; but a container that was killed before the agent
            // watched (or while its event stream was down) never gets one,
            // so the record's OOMKilled flag speaks for it then.
            let reports_ooms_itself = new.sources.iter().any(|s| s == Source::Docker.as_str());
            let reported = self.oom_reported.remove(id);
            if new.oom_killed && !(reports_ooms_itself && reported) {
                let mut oom = event(id, EventKind::Oom, finished);
                oom.detail = "OOMKilled".to_string();
                out.push(oom);
            }
        }
        if let Some(started) = new.started_unix_ns
            && old.is_none_or(|o| o.started_unix_ns != Some(started))
        {
            out.push(event(id, EventKind::Start, started));
        }
        let slot = restart_slot(new);
        if let Some(&before) = self.restarts.get(&slot)
            && new.restart_count > before
        {
            let mut restart = event(
                id,
                EventKind::Restart,
                new.started_unix_ns.unwrap_or(now_unix_ns),
            );
            restart.from = before.to_string();
            restart.to = new.restart_count.to_string();
            restart.detail = format!("restart count {before} → {}", new.restart_count);
            out.push(restart);
        }
        self.restarts.insert(slot, new.restart_count);
        if let Some(old) = old {
            let (was, is) = (old.health, new.health);
            if was != is
                && was != v1::HealthStatus::Unspecified as i32
                && is != v1::HealthStatus::Unspecified as i32
            {
                let mut health = event(id, EventKind::HealthChange, now_unix_ns);
                health.from = health_name(was).to_string();
                health.to = health_name(is).to_string();
                health.detail = format!("{} → {}", health.from, health.to);
                out.push(health);
            }
            let old_image = old
                .image
                .as_ref()
                .map(|i| i.image_id.as_str())
                .unwrap_or("");
            let new_image = new
                .image
                .as_ref()
                .map(|i| i.image_id.as_str())
                .unwrap_or("");
            if !old_image.is_empty() && !new_image.is_empty() && old_image != new_image {
                let mut change = event(id, EventKind::ImageChange, now_unix_ns);
                change.from = image_name(old);
                change.to = image_name(new);
                change.detail = format!("{} → {}", change.from, change.to);
                out.push(change);
            }
        }
        out
    }
}

fn event(container_id: &str, kind: EventKind, timestamp_unix_ns: i64) -> LifecycleEvent {
    LifecycleEvent {
        timestamp_unix_ns,
        container_id: container_id.to_string(),
        kind: kind as i32,
        ..Default::default()
    }
}

/// Why the container last stopped, when a source said.
fn termination_reason(c: &ContainerInfo) -> Option<&str> {
    if c.oom_killed {
        return Some("OOMKilled");
    }
    [c.last_termination_reason.as_str(), c.state_reason.as_str()]
        .into_iter()
        .find(|r| !r.is_empty())
}

/// Kubernetes gives a restarted container a new id; its restart count
/// lives with the pod's container name.
fn restart_slot(c: &ContainerInfo) -> String {
    if c.pod_uid.is_empty() || c.name.is_empty() {
        c.container_id.clone()
    } else {
        format!("{}/{}", c.pod_uid, c.name)
    }
}

/// Lower-case health name, as events carry it.
pub fn health_name(value: i32) -> &'static str {
    match v1::HealthStatus::try_from(value) {
        Ok(v1::HealthStatus::None) => "none",
        Ok(v1::HealthStatus::Starting) => "starting",
        Ok(v1::HealthStatus::Healthy) => "healthy",
        Ok(v1::HealthStatus::Unhealthy) => "unhealthy",
        Ok(v1::HealthStatus::Unspecified) | Err(_) => "unknown",
    }
}

fn image_name(c: &ContainerInfo) -> String {
    c.image.as_ref().map_or_else(String::new, |i| {
        if i.reference.is_empty() {
            i.image_id.clone()
        } else {
            i.reference.clone()
        }
    })
}

/// The joined record: Kubernetes says who the container is, Docker fills
/// what Kubernetes does not know.
fn merge(docker: Option<&ContainerInfo>, kube: Option<&ContainerInfo>) -> Option<ContainerInfo> {
    let (d, k) = match (docker, kube) {
        (None, None) => return None,
        (Some(one), None) | (None, Some(one)) => return Some(one.clone()),
        (Some(d), Some(k)) => (d, k),
    };
    let mut m = k.clone();
    if m.runtime == v1::Runtime::Unspecified as i32 {
        m.runtime = d.runtime;
    }
    match (&mut m.image, &d.image) {
        (Some(mi), Some(di)) => {
            if mi.digest.is_empty() {
                mi.digest.clone_from(&di.digest);
            }
            if mi.image_id.is_empty() {
                mi.image_id.clone_from(&di.image_id);
            }
        }
        (None, Some(di)) => m.image = Some(di.clone()),
        _ => {}
    }
    for (key, value) in &d.labels {
        m.labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    if m.health == v1::HealthStatus::Unspecified as i32 {
        m.health = d.health;
    }
    m.started_unix_ns = m.started_unix_ns.or(d.started_unix_ns);
    m.finished_unix_ns = m.finished_unix_ns.or(d.finished_unix_ns);
    m.exit_code = m.exit_code.or(d.exit_code);
    m.oom_killed |= d.oom_killed;
    m.cpu_limit_millicores = m.cpu_limit_millicores.or(d.cpu_limit_millicores);
    m.memory_limit_bytes = m.memory_limit_bytes.or(d.memory_limit_bytes);
    let mut sources: BTreeSet<String> = m.sources.drain(..).collect();
    sources.extend(d.sources.iter().cloned());
    m.sources = sources.into_iter().collect();
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn docker(state: v1::ContainerState) -> ContainerInfo {
        ContainerInfo {
            container_id: ID.to_string(),
            runtime: v1::Runtime::Docker as i32,
            name: "web".to_string(),
            state: state as i32,
            health: v1::HealthStatus::None as i32,
            sources: vec!["docker".to_string()],
            ..Default::default()
        }
    }

    fn kinds(inv: &v1::Inventory) -> Vec<EventKind> {
        inv.events
            .iter()
            .map(|e| EventKind::try_from(e.kind).unwrap_or(EventKind::Unspecified))
            .collect()
    }

    fn upsert(c: ContainerInfo) -> SourceUpdate {
        SourceUpdate::Upsert {
            source: Source::Docker,
            container: c,
        }
    }

    #[test]
    fn no_full_snapshot_before_every_source_reported() {
        let mut t = Tracker::new(&[Source::Docker, Source::Kubernetes], DEFAULT_FULL_EVERY);
        let now = Instant::now();
        t.apply(
            SourceUpdate::Full {
                source: Source::Docker,
                containers: vec![docker(v1::ContainerState::Running)],
            },
            1,
        );
        let delta = t.take(now).expect("the docker record is a change");
        assert!(!delta.full, "kubernetes has not reported yet");
        assert_eq!(delta.containers.len(), 1);
        t.apply(
            SourceUpdate::Degraded {
                source: Source::Kubernetes,
                reason: "not in a cluster".into(),
            },
            2,
        );
        let full = t.take(now).expect("all sources reported");
        assert!(full.full);
        assert_eq!(full.containers.len(), 1);
        assert_eq!(
            full.degraded,
            vec!["kubernetes: not in a cluster".to_string()]
        );
        assert!(t.take(now).is_none(), "nothing changed since");
        assert!(t.take(now + DEFAULT_FULL_EVERY).is_some_and(|i| i.full));
    }

    #[test]
    fn docker_lifecycle_becomes_start_health_die_restart_destroy() {
        let mut t = Tracker::new(&[Source::Docker], DEFAULT_FULL_EVERY);
        let now = Instant::now();
        let mut c = docker(v1::ContainerState::Running);
        c.started_unix_ns = Some(100);
        c.health = v1::HealthStatus::Starting as i32;
        t.apply(
            SourceUpdate::Full {
                source: Source::Docker,
                containers: vec![c.clone()],
            },
            1,
        );
        assert_eq!(
            kinds(&t.take(now).unwrap_or_default()),
            vec![EventKind::Start]
        );

        c.health = v1::HealthStatus::Unhealthy as i32;
        t.apply(upsert(c.clone()), 5);
        let inv = t.take(now).unwrap_or_default();
        assert_eq!(kinds(&inv), vec![EventKind::HealthChange]);
        assert_eq!(
            (inv.events[0].from.as_str(), inv.events[0].to.as_str()),
            ("starting", "unhealthy")
        );

        c.state = v1::ContainerState::Exited as i32;
        c.exit_code = Some(137);
        c.oom_killed = true;
        c.finished_unix_ns = Some(200);
        t.apply(
            SourceUpdate::Event {
                source: Source::Docker,
                event: event(ID, EventKind::Oom, 199),
            },
            6,
        );
        t.apply(upsert(c.clone()), 6);
        let inv = t.take(now).unwrap_or_default();
        assert_eq!(
            kinds(&inv),
            vec![EventKind::Oom, EventKind::Die],
            "docker's own oom event, and no second one from the record"
        );
        assert_eq!(inv.events[1].detail, "exit 137 (OOMKilled)");
        assert_eq!(inv.events[1].timestamp_unix_ns, 200);

        c.state = v1::ContainerState::Running as i32;
        c.started_unix_ns = Some(300);
        c.restart_count = 1;
        t.apply(upsert(c.clone()), 7);
        assert_eq!(
            kinds(&t.take(now).unwrap_or_default()),
            vec![EventKind::Start, EventKind::Restart]
        );

        t.apply(
            SourceUpdate::Remove {
                source: Source::Docker,
                container_id: ID.into(),
            },
            8,
        );
        let inv = t.take(now).unwrap_or_default();
        assert_eq!(kinds(&inv), vec![EventKind::Destroy]);
        assert_eq!(inv.removed_container_ids, vec![ID.to_string()]);
    }

    #[test]
    fn node_labels_travel_with_full_snapshots_and_changes_kubernetes_winning() {
        let mut t = Tracker::new(&[Source::Docker], DEFAULT_FULL_EVERY);
        let now = Instant::now();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        t.apply(
            SourceUpdate::NodeLabels {
                source: Source::Docker,
                labels: labels(&[("pool", "spot"), ("zone", "a")]),
            },
            1,
        );
        t.apply(
            SourceUpdate::Full {
                source: Source::Docker,
                containers: vec![],
            },
            1,
        );
        let inv = t.take(now).unwrap_or_default();
        assert!(inv.full && inv.node_labels_known);
        assert_eq!(
            inv.node_labels.get("pool").map(String::as_str),
            Some("spot")
        );
        assert!(t.take(now).is_none(), "nothing changed");
        t.apply(
            SourceUpdate::NodeLabels {
                source: Source::Kubernetes,
                labels: labels(&[("pool", "on-demand")]),
            },
            2,
        );
        let inv = t.take(now).unwrap_or_default();
        assert!(!inv.full && inv.node_labels_known, "{inv:?}");
        assert_eq!(
            inv.node_labels.get("pool").map(String::as_str),
            Some("on-demand"),
            "Kubernetes' labels win"
        );
        assert_eq!(inv.node_labels.get("zone").map(String::as_str), Some("a"));
    }

    #[test]
    fn a_docker_container_oom_killed_before_the_agent_watched_still_gets_its_oom_event() {
        let mut t = Tracker::new(&[Source::Docker], DEFAULT_FULL_EVERY);
        let mut c = docker(v1::ContainerState::Exited);
        c.started_unix_ns = Some(100);
        c.finished_unix_ns = Some(150);
        c.exit_code = Some(137);
        c.oom_killed = true;
        t.apply(
            SourceUpdate::Full {
                source: Source::Docker,
                containers: vec![c],
            },
            1,
        );
        let inv = t.take(Instant::now()).unwrap_or_default();
        assert_eq!(
            kinds(&inv),
            vec![EventKind::Die, EventKind::Oom, EventKind::Start],
            "{inv:?}"
        );
        assert_eq!(inv.events[1].timestamp_unix_ns, 150);
    }

    #[test]
    fn kubernetes_restart_with_a_new_container_id_is_a_restart_and_an_oom() {
        let mut t = Tracker::new(&[Source::Kubernetes], DEFAULT_FULL_EVERY);
        let now = Instant::now();
        let first = ContainerInfo {
            container_id: "a".repeat(64),
            name: "app".into(),
            pod_uid: "uid-1".into(),
            started_unix_ns: Some(10),
            sources: vec!["kubernetes".into()],
            ..Default::default()
        };
        t.apply(
            SourceUpdate::Full {
                source: Source::Kubernetes,
                containers: vec![first.clone()],
            },
            1,
        );
        t.take(now);
        let second = ContainerInfo {
            container_id: "b".repeat(64),
            restart_count: 1,
            started_unix_ns: Some(50),
            finished_unix_ns: Some(40),
            exit_code: Some(137),
            oom_killed: true,
            last_termination_reason: "OOMKilled".into(),
            ..first.clone()
        };
        t.apply(
            SourceUpdate::Full {
                source: Source::Kubernetes,
                containers: vec![second],
            },
            2,
        );
        let inv = t.take(now).unwrap_or_default();
        let mut got = kinds(&inv);
        got.sort_by_key(|k| *k as i32);
        assert_eq!(
            got,
            vec![
                EventKind::Start,
                EventKind::Die,
                EventKind::Oom,
                EventKind::Restart,
                EventKind::Destroy
            ]
        );
    }

    #[test]
    fn restart_counts_of_gone_pods_are_forgotten_at_the_next_full_snapshot() {
        let mut t = Tracker::new(&[Source::Kubernetes], DEFAULT_FULL_EVERY);
        let now = Instant::now();
        let pod = |uid: &str, fill: char| ContainerInfo {
            container_id: fill.to_string().repeat(64),
            name: "app".into(),
            pod_uid: uid.into(),
            ..Default::default()
        };
        t.apply(
            SourceUpdate::Full {
                source: Source::Kubernetes,
                containers: vec![pod("uid-1", 'a'), pod("uid-2", 'b')],
            },
            1,
        );
        t.take(now);
        assert_eq!(t.restarts.len(), 2);
        t.apply(
            SourceUpdate::Remove {
                source: Source::Kubernetes,
                container_id: "a".repeat(64),
            },
            2,
        );
        assert_eq!(t.restarts.len(), 2, "kept until the next full snapshot");
        t.take(now + DEFAULT_FULL_EVERY);
        assert_eq!(t.restarts.keys().collect::<Vec<_>>(), vec!["uid-2/app"]);
    }

    #[test]
    fn kubernetes_identity_wins_and_docker_fills_the_gaps() {
        let mut t = Tracker::new(&[Source::Docker, Source::Kubernetes], DEFAULT_FULL_EVERY);
        let mut d = docker(v1::ContainerState::Running);
        d.name = "k8s_app_web-1_shop_uid_0".into();
        d.labels
            .insert("io.kubernetes.pod.name".into(), "web-1".into());
        d.image = Some(v1::ImageRef {
            image_id: "sha256:img".into(),
            ..Default::default()
        });
        let k = ContainerInfo {
            container_id: ID.into(),
            name: "app".into(),
            namespace: "shop".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            image: Some(v1::ImageRef {
                reference: "shop/web:1.2".into(),
                ..Default::default()
            }),
            sources: vec!["kubernetes".into()],
            ..Default::default()
        };
        t.apply(
            SourceUpdate::Upsert {
                source: Source::Docker,
                container: d,
            },
            1,
        );
        t.apply(
            SourceUpdate::Upsert {
                source: Source::Kubernetes,
                container: k,
            },
            1,
        );
        let m = t.get(ID).cloned().unwrap_or_default();
        assert_eq!((m.name.as_str(), m.namespace.as_str()), ("app", "shop"));
        assert_eq!(m.runtime, v1::Runtime::Docker as i32);
        let image = m.image.unwrap_or_default();
        assert_eq!(
            (image.reference.as_str(), image.image_id.as_str()),
            ("shop/web:1.2", "sha256:img")
        );
        assert_eq!(m.labels.len(), 2);
        assert_eq!(
            m.sources,
            vec!["docker".to_string(), "kubernetes".to_string()]
        );
    }
    const S: i64 = 1_000_000_000;

    fn kernel_oom(at: i64) -> SourceUpdate {
        let mut e = event(ID, EventKind::Oom, at);
        e.detail = "the kernel OOM killer killed dd (pid 7)".into();
        SourceUpdate::Event {
            source: Source::Kernel,
            event: e,
        }
    }

    fn watched_running() -> (Tracker, ContainerInfo) {
        let mut t = Tracker::new(&[Source::Docker], DEFAULT_FULL_EVERY);
        t.apply(
            SourceUpdate::OomWatch {
                since_unix_ns: Some(50 * S),
            },
            50 * S,
        );
        let mut c = docker(v1::ContainerState::Running);
        c.started_unix_ns = Some(100 * S);
        t.apply(
            SourceUpdate::Full {
                source: Source::Docker,
                containers: vec![c.clone()],
            },
            100 * S,
        );
        (t, c)
    }

    fn exited_137(mut c: ContainerInfo, oom_killed: bool) -> ContainerInfo {
        c.state = v1::ContainerState::Exited as i32;
        c.exit_code = Some(137);
        c.oom_killed = oom_killed;
        c.finished_unix_ns = Some(101 * S);
        c
    }

    #[test]
    fn the_kernel_makes_good_a_kill_the_runtime_missed() {
        let (mut t, c) = watched_running();
        let now = Instant::now();
        t.take(now);
        t.apply(kernel_oom(101 * S), 101 * S);
        t.apply(upsert(exited_137(c, false)), 101 * S);
        let inv = t.take(now + OOM_HOLD * 2).unwrap_or_default();
        assert_eq!(kinds(&inv), vec![EventKind::Oom, EventKind::Die]);
        assert_eq!(
            inv.events[0].detail,
            "the kernel OOM killer killed dd (pid 7)"
        );
        assert_eq!(inv.events[1].detail, "exit 137 (OOMKilled)");
        assert!(
            t.get(ID).is_some_and(|r| r.oom_killed),
            "the record says so too"
        );
        assert!(t.take(now + OOM_HOLD * 4).is_none(), "and nothing later");
    }

    /// A watched container whose runtime reported an exit 137 without an
    /// OOM kill (Docker's die when it missed the kill), folded in before
    /// any kernel line: the die is held.
    fn held_137_die() -> (Tracker, Instant) {
        let (mut t, c) = watched_running();
        let now = Instant::now();
        t.take(now);
        t.apply(upsert(exited_137(c, false)), 101 * S);
        assert!(
            t.take(now).is_none_or(|inv| inv.events.is_empty()),
            "the die waits"
        );
        (t, now)
    }

    #[test]
    fn a_die_that_beats_the_kernels_line_still_reads_oom_killed() {
        let (mut t, now) = held_137_die();
        t.apply(kernel_oom(100 * S + 900_000_000), 101 * S);
        let inv = t.take(now).unwrap_or_default();
        assert_eq!(kinds(&inv), vec![EventKind::Oom, EventKind::Die]);
        assert_eq!(inv.events[1].detail, "exit 137 (OOMKilled)");
        assert!(t.get(ID).is_some_and(|r| r.oom_killed));
        assert!(t.take(now + OOM_HOLD * 2).is_none(), "sent once");
    }

    #[test]
    fn an_exit_137_the_kernel_never_reports_goes_out_after_the_hold() {
        let (mut t, _) = held_137_die();
        let inv = t.take(Instant::now() + OOM_HOLD).unwrap_or_default();
        assert_eq!(kinds(&inv), vec![EventKind::Die]);
        assert_eq!(inv.events[0].detail, "exit 137");
    }

    #[test]
    fn a_kill_reported_by_the_runtime_and_the_kernel_is_one_event() {
        for kernel_first in [true, false] {
            let (mut t, c) = watched_running();
            let now = Instant::now();
            t.take(now);
            let docker_oom = SourceUpdate::Event {
                source: Source::Docker,
                event: event(ID, EventKind::Oom, 100 * S + 5),
            };
            if kernel_first {
                t.apply(kernel_oom(100 * S + 9), 101 * S);
                t.apply(docker_oom, 101 * S);
            } else {
                t.apply(docker_oom, 101 * S);
                t.apply(upsert(exited_137(c.clone(), true)), 101 * S);
                t.apply(kernel_oom(100 * S + 9), 101 * S);
            }
            t.apply(upsert(exited_137(c, true)), 101 * S);
            let inv = t.take(now + OOM_HOLD * 2).unwrap_or_default();
            let (expected, oom) = if kernel_first {
                (vec![EventKind::Oom, EventKind::Die], 0)
            } else {
                (vec![EventKind::Die, EventKind::Oom], 1)
            };
            assert_eq!(kinds(&inv), expected, "kernel first: {kernel_first}");
            assert!(inv.events[oom].detail.starts_with("the kernel"));
            assert!(t.take(now + OOM_HOLD * 4).is_none(), "nothing held back");
        }
    }

    #[test]
    fn a_runtime_report_the_kernel_never_confirms_goes_out_after_the_hold() {
        let (mut t, c) = watched_running();
        let now = Instant::now();
        t.take(now);
        t.apply(upsert(exited_137(c, true)), 101 * S);
        let inv = t.take(now).unwrap_or_default();
        assert_eq!(kinds(&inv), vec![EventKind::Die], "the oom is held");
        let inv = t.take(Instant::now() + OOM_HOLD).unwrap_or_default();
        assert_eq!(kinds(&inv), vec![EventKind::Oom]);
        assert_eq!(inv.events[0].timestamp_unix_ns, 101 * S);
    }

    #[test]
    fn held_reports_go_out_when_the_kernel_log_stops() {
        let (mut t, _) = watched_running();
        let now = Instant::now();
        t.take(now);
        t.apply(
            SourceUpdate::Event {
                source: Source::Docker,
                event: event(ID, EventKind::Oom, 100 * S),
            },
            101 * S,
        );
        assert!(t.take(now).is_none(), "held");
        t.apply(
            SourceUpdate::OomWatch {
                since_unix_ns: None,
            },
            102 * S,
        );
        assert_eq!(
            kinds(&t.take(now).unwrap_or_default()),
            vec![EventKind::Oom]
        );
    }

    #[test]
    fn a_kill_in_an_earlier_run_does_not_mark_a_later_exit() {
        let (mut t, c) = watched_running();
        t.apply(kernel_oom(90 * S), 100 * S);
        t.apply(upsert(exited_137(c, false)), 101 * S);
        assert!(
            t.get(ID).is_some_and(|r| !r.oom_killed),
            "killed before this run started"
        );
    }
}

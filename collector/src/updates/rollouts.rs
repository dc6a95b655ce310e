//! `ListRollouts`: image changes found in the stored history, whoever made
//! them (a Kubernetes rollout, `docker compose up` with a new image,
//! `upid updates apply`), each judged by the health gate
//! (`upid::updates::gate`) over a window before and after the change.
//!
//! # What a rollout is
//!
//! Containers are grouped by workload container: namespace, workload and
//! container name (for a compose service, the service: its replicas have
//! different container names; for a plain Docker container, its name, with
//! the `-upid-rollback` suffix `upid updates apply` gives the old container
//! taken off). Within a group, a **replica** is a pod (all containers of one
//! pod uid: a Kubernetes restart is a new container id in the same pod) or
//! a Docker container (a restart keeps its id). Replicas are walked in the
//! order they first started; a replica whose image (by image id, else by
//! reference) differs from the current one is a change, at its first start,
//! unless another replica of its image started before it and was still
//! running then (an old replica restarted or rescheduled during a rollout
//! is not a rollback).
//!
//! # The two windows (W = `updates.rollout_window_s`, 30 min)
//!
//! - BEFORE: `[change - W, change)`, cut to when the old image's replicas
//!   first started, over the old image's replicas running in it.
//! - AFTER: `[change, min(change + W, now)]`, cut at the next change of the
//!   group, over the new image's replicas started from the change on. When
//!   `change + W` is still ahead, the rollout is **in progress** and the
//!   verdict provisional.
//!
//! Each window gives the gate: restarts (`restart` events; for an open
//! AFTER window at least the new replicas' restart counts, all of which
//! happened since the change), OOM kills (`oom` events or the `usage` rows'
//! kill counts, whichever saw more), non-zero exit codes (`die` events; an
//! old container's last exit in the minute before the change is the
//! rollout stopping it and is not counted), health at the end of the window
//! (replayed from `health_change` events, else the inventory's current
//! health) and whether it was unhealthy in it, replicas desired (old
//! replicas running just before the change, or just before the first of
//! them was stopped for it, within a minute before) and ready (running and
//! healthy, or without a healthcheck, at the end of the window), and mean
//! CPU and working set per replica from the `usage` rows overlapping the
//! window.

use std::collections::{BTreeMap, HashMap};

use upid::updates::decide::span;
use upid::updates::docker_apply::ROLLBACK_SUFFIX;
use upid::updates::gate::{self, HealthStatus, Thresholds, Window};
use upid::wire::v1;

use super::settings::{DEFAULT_ROLLOUT_WINDOW_S, MAX_ROLLOUT_WINDOW_S, MIN_ROLLOUT_WINDOW_S};
use crate::api::query::workloads::kind_name;
use crate::store::{
    ContainerLifetime, GateEvent, InventoryRecord, QueryError, Reader, UsageWindow,
};

const NS_PER_S: i64 = 1_000_000_000;
/// Rollouts listed when the request gives no `since_unix_ns`: the last day.
pub const DEFAULT_SINCE_S: i64 = 86_400;
/// An old container's last exit this close before the change is the
/// rollout stopping it, not a crash.
const STOP_GRACE_NS: i64 = 60 * NS_PER_S;

/// A workload container: what one rollout changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct GroupKey {
    namespace: String,
    workload_kind: String,
    workload: String,
    container: String,
}

/// One container as the rollout logic sees it.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    node: String,
    /// Earliest known start.
    first_start: i64,
    /// When it stopped (exit, else removal); `None` while it runs.
    end: Option<i64>,
    /// Health as last reported.
    health_now: HealthStatus,
    restart_count: u32,
}

impl Member {
    fn alive_at(&self, t: i64) -> bool {
        self.first_start <= t && self.end.is_none_or(|e| e > t)
    }
}

/// The image of a replica, three ways.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ImageNames {
    /// What tells images apart: the image id, else the reference.
    key: String,
    /// As the user wrote it (or the id when nothing better is known).
    reference: String,
    /// Pinned: `repository@digest`, else the image id, else the reference.
    pinned: String,
    /// `reference@digest` or `reference (image id)`: for two images under
    /// the same reference.
    distinct: String,
}

/// A pod, or a Docker container: one replica of a workload container.
#[derive(Debug, Clone)]
struct Replica {
    image: ImageNames,
    members: Vec<Member>,
    first_start: i64,
}

impl Replica {
    fn alive_at(&self, t: i64) -> bool {
        self.members.iter().any(|m| m.alive_at(t))
    }

    /// `None` while some container of it runs.
    fn end(&self) -> Option<i64> {
        self.members
            .iter()
            .map(|m| m.end)
            .try_fold(i64::MIN, |acc, e| e.map(|e| acc.max(e)))
    }
}

/// One image change of a group.
#[derive(Debug, Clone)]
struct Change {
    at: i64,
    from: ImageNames,
    to: ImageNames,
    /// The group's next change, which ends this one's AFTER window.
    next: Option<(i64, String)>,
}

/// Lifecycle events by container id, oldest first.
type EventsById<'a> = HashMap<&'a str, Vec<&'a GateEvent>>;

/// Answers `ListRollouts` from `reader` as of `now_unix_ns`;
/// `default_window_s` is the collector's `updates.rollout_window_s`.
pub fn list_rollouts(
    reader: &Reader,
    request: &v1::ListRolloutsRequest,
    default_window_s: u64,
    now_unix_ns: i64,
) -> Result<v1::ListRolloutsResponse, QueryError> {
    let window_s = match request.window_s {
        0 => default_window_s,
        w => u64::from(w),
    };
    if !(MIN_ROLLOUT_WINDOW_S..=MAX_ROLLOUT_WINDOW_S).contains(&window_s) {
        return Err(QueryError::InvalidArgument {
            message: format!(
                "window_s {window_s}: use {MIN_ROLLOUT_WINDOW_S} (a minute) to {MAX_ROLLOUT_WINDOW_S} (a week), or 0 for the collector's {} s",
                if default_window_s == 0 {
                    DEFAULT_ROLLOUT_WINDOW_S
                } else {
                    default_window_s
                }
            ),
        });
    }
    let since_unix_ns = match request.since_unix_ns {
        None => now_unix_ns.saturating_sub(DEFAULT_SINCE_S * NS_PER_S),
        Some(s) if s < 0 => {
            return Err(QueryError::InvalidArgument {
                message: format!("since_unix_ns {s} is negative: give a time, or 0 for all"),
            });
        }
        Some(s) => s,
    };
    let window_ns = i64::try_from(window_s)
        .unwrap_or(i64::MAX / NS_PER_S)
        .saturating_mul(NS_PER_S);
    let mut response = v1::ListRolloutsResponse {
        rollouts: Vec::new(),
        at_unix_ns: now_unix_ns,
        window_s: u32::try_from(window_s).unwrap_or(u32::MAX),
        since_unix_ns,
    };

    let inventory = reader.inventory()?;
    let lifetimes = reader.container_lifetimes()?;
    let groups = group_replicas(&inventory, &lifetimes, request);
    let mut selected: Vec<(&GroupKey, &[Replica], Change)> = Vec::new();
    for (key, replicas) in &groups {
        let changes = find_changes(replicas);
        let mut wanted = changes.into_iter().filter(|c| c.at >= since_unix_ns);
        if request.all {
            selected.extend(wanted.map(|c| (key, replicas.as_slice(), c)));
        } else if let Some(latest) = wanted.next_back() {
            selected.push((key, replicas.as_slice(), latest));
        }
    }
    if selected.is_empty() {
        return Ok(response);
    }
    let events_since = selected
        .iter()
        .map(|(_, _, c)| c.at.saturating_sub(window_ns))
        .min()
        .unwrap_or(since_unix_ns);
    let events = reader.gate_events(events_since)?;
    let mut by_id: EventsById<'_> = HashMap::new();
    for e in &events {
        by_id.entry(e.container_id.as_str()).or_default().push(e);
    }
    let thresholds = Thresholds::default();
    for (key, replicas, change) in selected {
        response.rollouts.push(judge(
            reader,
            key,
            replicas,
            &change,
            &by_id,
            window_ns,
            now_unix_ns,
            &thresholds,
        )?);
    }
    response.rollouts.sort_by(|a, b| {
        b.changed_unix_ns.cmp(&a.changed_unix_ns).then_with(|| {
            (&a.namespace, &a.workload, &a.container).cmp(&(
                &b.namespace,
                &b.workload,
                &b.container,
            ))
        })
    });
    Ok(response)
}

/// The names of a record's image; `None` when it has none.
fn image_names(image: Option<&v1::ImageRef>) -> Option<ImageNames> {
    let i = image?;
    let reference = if !i.reference.is_empty() {
        i.reference.clone()
    } else if !i.repository.is_empty() && !i.tag.is_empty() {
        format!("{}:{}", i.repository, i.tag)
    } else if !i.repository.is_empty() {
        i.repository.clone()
    } else {
        i.image_id.clone()
    };
    if reference.is_empty() {
        return None;
    }
    let key = if i.image_id.is_empty() {
        reference.clone()
    } else {
        i.image_id.clone()
    };
    let repository = if i.repository.is_empty() {
        // `name:tag` → `name`; a registry port has no `/` after its colon.
        match reference.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
            _ => reference.clone(),
        }
    } else {
        i.repository.clone()
    };
    let pinned = if !i.digest.is_empty() && !reference.contains('@') {
        format!("{repository}@{}", i.digest)
    } else if !i.image_id.is_empty() && i.image_id != reference {
        i.image_id.clone()
    } else {
        reference.clone()
    };
    let distinct = if !i.digest.is_empty() && !reference.contains('@') {
        format!("{reference}@{}", i.digest)
    } else if !i.image_id.is_empty() && i.image_id != reference {
        format!("{reference} ({})", i.image_id)
    } else {
        reference.clone()
    };
    Some(ImageNames {
        key,
        reference,
        pinned,
        distinct,
    })
}

fn health_of(value: i32) -> HealthStatus {
    match v1::HealthStatus::try_from(value) {
        Ok(v1::HealthStatus::Starting) => HealthStatus::Starting,
        Ok(v1::HealthStatus::Healthy) => HealthStatus::Healthy,
        Ok(v1::HealthStatus::Unhealthy) => HealthStatus::Unhealthy,
        _ => HealthStatus::None,
    }
}

fn parse_health(name: &str) -> HealthStatus {
    match name {
        "starting" => HealthStatus::Starting,
        "healthy" => HealthStatus::Healthy,
        "unhealthy" => HealthStatus::Unhealthy,
        _ => HealthStatus::None,
    }
}

/// Worse health ranks higher; no healthcheck ranks lowest, so one replica
/// without a status does not hide another's.
fn health_rank(h: HealthStatus) -> u8 {
    match h {
        HealthStatus::None => 0,
        HealthStatus::Healthy => 1,
        HealthStatus::Starting => 2,
        HealthStatus::Unhealthy => 3,
    }
}

/// Every started container of the inventory that `request` selects, as
/// replicas per workload container, in the order they first started.
fn group_replicas(
    inventory: &HashMap<String, InventoryRecord>,
    lifetimes: &HashMap<String, ContainerLifetime>,
    request: &v1::ListRolloutsRequest,
) -> BTreeMap<GroupKey, Vec<Replica>> {
    // (group, replica key, image key) → replica
    let mut replicas: BTreeMap<(GroupKey, String, String), Replica> = BTreeMap::new();
    for (id, record) in inventory {
        let info = &record.info;
        let Some(image) = image_names(info.image.as_ref()) else {
            continue;
        };
        let life = lifetimes.get(id);
        let Some(first_start) = [
            life.and_then(|l| l.first_start_unix_ns),
            info.started_unix_ns,
        ]
        .into_iter()
        .flatten()
        .min() else {
            // Never started: nothing ran.
            continue;
        };
        let name = info
            .name
            .strip_suffix(ROLLBACK_SUFFIX)
            .unwrap_or(&info.name)
            .to_owned();
        let key = match &info.workload {
            Some(w) if !w.name.is_empty() => {
                let kind = kind_name(w.kind);
                let workload = if w.kind == v1::WorkloadKind::Container as i32 {
                    w.name
                        .strip_suffix(ROLLBACK_SUFFIX)
                        .unwrap_or(&w.name)
                        .to_owned()
                } else {
                    w.name.clone()
                };
                let container = if w.kind == v1::WorkloadKind::ComposeService as i32 {
                    workload.clone()
                } else {
                    name
                };
                GroupKey {
                    namespace: info.namespace.clone(),
                    workload_kind: kind.to_owned(),
                    workload,
                    container,
                }
            }
            _ => GroupKey {
                namespace: info.namespace.clone(),
                workload_kind: kind_name(v1::WorkloadKind::Container as i32).to_owned(),
                workload: name.clone(),
                container: name,
            },
        };
        if (!request.namespace.is_empty() && request.namespace != key.namespace)
            || (!request.workload.is_empty() && request.workload != key.workload)
        {
            continue;
        }
        let running = !record.removed && info.state == v1::ContainerState::Running as i32;
        let end = if running {
            None
        } else {
            Some(
                info.finished_unix_ns
                    .or(life.and_then(|l| l.removed_unix_ns))
                    .or(life.map(|l| l.updated_unix_ns))
                    .unwrap_or(first_start)
                    .max(first_start),
            )
        };
        let member = Member {
            id: id.clone(),
            node: record.node_name.clone(),
            first_start,
            end,
            health_now: health_of(info.health),
            restart_count: info.restart_count,
        };
        let replica_key = if info.pod_uid.is_empty() {
            id.clone()
        } else {
            info.pod_uid.clone()
        };
        let replica = replicas
            .entry((key, replica_key, image.key.clone()))
            .or_insert_with(|| Replica {
                image,
                members: Vec::new(),
                first_start,
            });
        replica.first_start = replica.first_start.min(first_start);
        replica.members.push(member);
    }
    let mut groups: BTreeMap<GroupKey, Vec<Replica>> = BTreeMap::new();
    for ((key, _, _), mut replica) in replicas {
        replica
            .members
            .sort_by(|a, b| (a.first_start, &a.id).cmp(&(b.first_start, &b.id)));
        groups.entry(key).or_default().push(replica);
    }
    for list in groups.values_mut() {
        list.sort_by(|a, b| {
            let first = |r: &Replica| r.members.first().map(|m| m.id.clone());
            (a.first_start, first(a)).cmp(&(b.first_start, first(b)))
        });
    }
    groups
}

/// The image changes of one group's replicas (sorted by first start).
fn find_changes(replicas: &[Replica]) -> Vec<Change> {
    let mut changes: Vec<Change> = Vec::new();
    let Some(first) = replicas.first() else {
        return changes;
    };
    let mut current = first.image.clone();
    for (i, r) in replicas.iter().enumerate() {
        if r.image.key == current.key {
            continue;
        }
        let leftover = replicas[..i]
            .iter()
            .any(|o| o.image.key == r.image.key && o.alive_at(r.first_start));
        if leftover {
            continue;
        }
        changes.push(Change {
            at: r.first_start,
            from: current.clone(),
            to: r.image.clone(),
            next: None,
        });
        current = r.image.clone();
    }
    for i in 1..changes.len() {
        let next = (changes[i].at, changes[i].to.reference.clone());
        changes[i - 1].next = Some(next);
    }
    changes
}

/// Health of `member` at `t`: the last change at or before `t`, else what
/// the first change after `t` changed from, else as last reported.
fn health_at(member: &Member, t: i64, events: &EventsById<'_>) -> HealthStatus {
    let changes = events
        .get(member.id.as_str())
        .into_iter()
        .flatten()
        .filter(|e| e.kind == v1::EventKind::HealthChange);
    let mut before: Option<&GateEvent> = None;
    for e in changes {
        if e.ts_unix_ns <= t {
            before = Some(e);
        } else {
            return match before {
                Some(b) => parse_health(&b.to),
                None => parse_health(&e.from),
            };
        }
    }
    before.map_or(member.health_now, |b| parse_health(&b.to))
}

/// One side of a rollout: its replicas and its window.
struct Side<'a> {
    image: String,
    replicas: Vec<&'a Replica>,
    start: i64,
    end: i64,
    /// The window includes its end instant (AFTER) or not (BEFORE).
    end_inclusive: bool,
    /// When health and readiness are read.
    health_at: i64,
}

impl Side<'_> {
    fn contains(&self, ts: i64) -> bool {
        ts >= self.start
            && if self.end_inclusive {
                ts <= self.end
            } else {
                ts < self.end
            }
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.replicas.iter().flat_map(|r| r.members.iter())
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.members().map(|m| m.id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// The facts of one side that are not resources.
struct Counted {
    restarts: u64,
    oom_events: u64,
    nonzero_exit_codes: Vec<i64>,
    health_end: HealthStatus,
    unhealthy_seen: bool,
    alive_at_end: u32,
    ready_at_end: u32,
}

/// Counts `side`'s events; `stop_at`: an old container's last exit within
/// [`STOP_GRACE_NS`] before it is the rollout stopping it.
fn count(side: &Side<'_>, events: &EventsById<'_>, stop_at: Option<i64>) -> Counted {
    let mut c = Counted {
        restarts: 0,
        oom_events: 0,
        nonzero_exit_codes: Vec::new(),
        health_end: HealthStatus::None,
        unhealthy_seen: false,
        alive_at_end: 0,
        ready_at_end: 0,
    };
    let mut exits: Vec<(i64, i64)> = Vec::new();
    for m in side.members() {
        for e in events.get(m.id.as_str()).into_iter().flatten() {
            if !side.contains(e.ts_unix_ns) {
                continue;
            }
            match e.kind {
                v1::EventKind::Restart => c.restarts += 1,
                v1::EventKind::Oom => c.oom_events += 1,
                v1::EventKind::Die => {
                    let stopped_by_rollout = stop_at.is_some_and(|at| {
                        m.end == Some(e.ts_unix_ns) && e.ts_unix_ns >= at - STOP_GRACE_NS
                    });
                    match e.exit_code {
                        Some(code) if code != 0 && !stopped_by_rollout => {
                            exits.push((e.ts_unix_ns, i64::from(code)));
                        }
                        _ => {}
                    }
                }
                v1::EventKind::HealthChange if parse_health(&e.to) == HealthStatus::Unhealthy => {
                    c.unhealthy_seen = true;
                }
                _ => {}
            }
        }
        if m.alive_at(side.start) && health_at(m, side.start, events) == HealthStatus::Unhealthy {
            c.unhealthy_seen = true;
        }
    }
    exits.sort_unstable();
    c.nonzero_exit_codes = exits.into_iter().map(|(_, code)| code).collect();

    let t = side.health_at;
    let mut worst_alive: Option<HealthStatus> = None;
    let mut worst_any: Option<HealthStatus> = None;
    let worse = |a: Option<HealthStatus>, b: HealthStatus| match a {
        Some(a) if health_rank(a) >= health_rank(b) => Some(a),
        _ => Some(b),
    };
    for r in &side.replicas {
        let mut alive = false;
        let mut ready = false;
        for m in &r.members {
            let h = health_at(m, t, events);
            worst_any = worse(worst_any, h);
            if m.alive_at(t) {
                alive = true;
                worst_alive = worse(worst_alive, h);
                if matches!(h, HealthStatus::Healthy | HealthStatus::None) {
                    ready = true;
                }
            }
        }
        c.alive_at_end += u32::from(alive);
        c.ready_at_end += u32::from(ready);
    }
    c.health_end = worst_alive.or(worst_any).unwrap_or(HealthStatus::None);
    if c.health_end == HealthStatus::Unhealthy {
        c.unhealthy_seen = true;
    }
    c
}

fn window_of(
    side: &Side<'_>,
    counted: &Counted,
    usage: &UsageWindow,
    desired: u32,
    restarts: u64,
) -> Window {
    Window {
        image: side.image.clone(),
        duration_ms: u64::try_from((side.end - side.start) / 1_000_000).unwrap_or(0),
        replicas_desired: desired,
        replicas_ready: counted.ready_at_end,
        restarts,
        oom_kills: counted.oom_events.max(usage.oom_kills),
        nonzero_exit_codes: counted.nonzero_exit_codes.clone(),
        health_end: counted.health_end,
        unhealthy_seen: counted.unhealthy_seen,
        cpu_cores_per_replica: usage.cpu_cores,
        memory_bytes_per_replica: usage
            .memory_working_set_bytes
            .map(|m| m.max(0.0).round() as u64),
        resource_samples: u32::try_from(usage.rows).unwrap_or(u32::MAX),
    }
}

/// One rollout, judged.
#[allow(clippy::too_many_arguments)]
fn judge(
    reader: &Reader,
    key: &GroupKey,
    replicas: &[Replica],
    change: &Change,
    events: &EventsById<'_>,
    window_ns: i64,
    now: i64,
    thresholds: &Thresholds,
) -> Result<v1::Rollout, QueryError> {
    let at = change.at;
    let same_reference = change.from.reference == change.to.reference;
    let (from_name, to_name) = if same_reference {
        (change.from.distinct.clone(), change.to.distinct.clone())
    } else {
        (change.from.reference.clone(), change.to.reference.clone())
    };

    let before_from = at.saturating_sub(window_ns);
    let old: Vec<&Replica> = replicas
        .iter()
        .filter(|r| {
            r.image.key == change.from.key
                && r.first_start < at
                && r.end().is_none_or(|e| e > before_from)
        })
        .collect();
    // Old replicas are often stopped just before the new ones start (a
    // compose recreate, `upid updates apply`): read their health and
    // readiness just before the first of those stops.
    let stopped_for_change = old
        .iter()
        .filter_map(|r| r.end())
        .filter(|e| *e < at && *e >= at - STOP_GRACE_NS)
        .min();
    let before = Side {
        image: from_name.clone(),
        start: old
            .iter()
            .map(|r| r.first_start)
            .min()
            .map_or(before_from, |s| s.max(before_from)),
        end: at,
        end_inclusive: false,
        health_at: stopped_for_change.map_or(at - 1, |s| s - 1),
        replicas: old,
    };

    let full_end = at.saturating_add(window_ns);
    let next_at = change.next.as_ref().map(|(t, _)| *t);
    let cut_by_next = next_at.is_some_and(|n| n < full_end);
    let after_end = match next_at {
        Some(n) if cut_by_next => n,
        _ => full_end.min(now),
    }
    .max(at);
    let in_progress = !cut_by_next && full_end > now;
    let new: Vec<&Replica> = replicas
        .iter()
        .filter(|r| {
            r.image.key == change.to.key
                && r.first_start >= at
                && next_at.is_none_or(|n| r.first_start < n)
        })
        .collect();
    let after = Side {
        image: to_name.clone(),
        start: at,
        end: after_end,
        end_inclusive: true,
        health_at: after_end,
        replicas: new,
    };

    let before_counted = count(&before, events, Some(at));
    let after_counted = count(&after, events, None);
    let before_ids = before.ids();
    let after_ids = after.ids();
    let before_usage = reader.usage_window(&before_ids, before.start, before.end)?;
    let after_usage = reader.usage_window(&after_ids, after.start, after.end)?;

    let desired = before_counted.alive_at_end.max(1);
    let mut after_restarts = after_counted.restarts;
    if after.end >= now {
        // Every restart of a replica started since the change happened in
        // the (open) AFTER window.
        let counted: u64 = after
            .replicas
            .iter()
            .map(|r| u64::from(r.members.iter().map(|m| m.restart_count).max().unwrap_or(0)))
            .sum();
        after_restarts = after_restarts.max(counted);
    }
    let before_window = window_of(
        &before,
        &before_counted,
        &before_usage,
        desired,
        before_counted.restarts,
    );
    let after_window = window_of(
        &after,
        &after_counted,
        &after_usage,
        desired,
        after_restarts,
    );
    let verdict = gate::verdict(&before_window, &after_window, thresholds);

    let mut notes: Vec<String> = Vec::new();
    let window_s = u64::try_from(window_ns / NS_PER_S).unwrap_or(0);
    if in_progress {
        let so_far = u64::try_from((after_end - at) / NS_PER_S).unwrap_or(0);
        notes.push(format!(
            "in progress: {} of the {} after window so far; the verdict is provisional",
            span(so_far),
            span(window_s)
        ));
    }
    if cut_by_next && let Some((n, image)) = &change.next {
        notes.push(format!(
            "the after window ends after {}, when {image} replaced it",
            span(u64::try_from((n - at) / NS_PER_S).unwrap_or(0))
        ));
    }
    if before.replicas.is_empty() {
        notes.push(format!(
            "nothing ran {from_name} in the {} before the change: the before window is empty",
            span(window_s)
        ));
    } else if before_counted.alive_at_end == 0 {
        notes.push(format!(
            "no replica of {from_name} was running just before the change"
        ));
    }

    let rollback_image = if same_reference {
        change.from.pinned.clone()
    } else {
        change.from.reference.clone()
    };
    let mut nodes: Vec<String> = before
        .members()
        .chain(after.members())
        .map(|m| m.node.clone())
        .filter(|n| !n.is_empty())
        .collect();
    nodes.sort();
    nodes.dedup();
    let summary = if in_progress {
        format!("{} (provisional)", verdict.summary)
    } else {
        verdict.summary.clone()
    };
    Ok(v1::Rollout {
        namespace: key.namespace.clone(),
        workload_kind: key.workload_kind.clone(),
        workload: key.workload.clone(),
        container: key.container.clone(),
        from_image: from_name,
        to_image: to_name,
        changed_unix_ns: at,
        window_s: u32::try_from(window_s).unwrap_or(u32::MAX),
        before_start_unix_ns: before.start,
        before_end_unix_ns: before.end,
        after_start_unix_ns: after.start,
        after_end_unix_ns: after.end,
        verdict: verdict.verdict.as_str().to_owned(),
        in_progress,
        checks: verdict
            .checks
            .iter()
            .map(|c| v1::GateCheck {
                check: c.check.as_str().to_owned(),
                outcome: c.outcome.as_str().to_owned(),
                before: c.before.clone(),
                after: c.after.clone(),
                before_value: c.before_value,
                after_value: c.after_value,
                reason: c.reason.clone(),
            })
            .collect(),
        summary,
        rollback_image,
        from_container_ids: before_ids,
        to_container_ids: after_ids,
        nodes,
        note: notes.join("; "),
    })
}

//! Storing the inventory a batch carries, inside the batch's transaction:
//! container records, their pods, workloads and images, and lifecycle
//! events.
//!
//! Inventory is small and rare next to the samples (a record only when a
//! container changed, a full snapshot every few minutes), so it is written
//! with plain upserts rather than the Appender.
//!
//! Two things are decided here rather than on the agent, because only the
//! collector sees every node:
//! - a full snapshot marks this agent's containers it no longer lists as
//!   removed;
//! - an `image_change` event when a workload's container (by container
//!   name) starts with another image than the one recorded for it: that is
//!   how a rolling update or a recreated compose service shows, since the
//!   new image comes with a new container. Only a container started after
//!   the recorded image's start counts, so an old replica still running on
//!   another node does not flip it back.

use duckdb::{Connection, OptionalExt, params};
use prost::Message;
use upid::wire::v1::{self, ContainerInfo, EventKind, Inventory, LifecycleEvent, WorkloadKind};

use super::StoreError;
use super::schema::names;

fn sql(step: &'static str) -> impl Fn(duckdb::Error) -> StoreError {
    move |source| StoreError::Ingest { step, source }
}

/// Stores one batch's inventory; `agent_id`/`node_name` are the batch's.
pub(crate) fn store(
    conn: &Connection,
    agent_id: &str,
    node_name: &str,
    inventory: &Inventory,
    received_unix_ns: i64,
) -> Result<(), StoreError> {
    if inventory.node_labels_known {
        store_node_labels(conn, node_name, &inventory.node_labels, received_unix_ns)?;
    }
    for c in &inventory.containers {
        if c.container_id.is_empty() {
            tracing::warn!(agent_id, "inventory record without a container id skipped");
            continue;
        }
        upsert_container(conn, agent_id, node_name, c, received_unix_ns)?;
    }
    for id in &inventory.removed_container_ids {
        conn.prepare_cached(
            "UPDATE container_inventory SET removed_unix_ns = ?
             WHERE container_id = ? AND removed_unix_ns IS NULL",
        )
        .and_then(|mut s| s.execute(params![received_unix_ns, id]))
        .map_err(sql("mark a container removed"))?;
    }
    if inventory.full {
        let listed: Vec<&str> = inventory
            .containers
            .iter()
            .map(|c| c.container_id.as_str())
            .collect();
        mark_unlisted_removed(conn, agent_id, &listed, received_unix_ns)?;
    }
    for e in &inventory.events {
        insert_event(conn, agent_id, node_name, e, received_unix_ns)?;
    }
    Ok(())
}

/// `<kind>/<namespace>/<name>`, or '' when the record names no workload.
pub(crate) fn workload_key(c: &ContainerInfo) -> String {
    match &c.workload {
        Some(w) if !w.name.is_empty() => {
            format!("{}/{}/{}", workload_kind_name(w.kind), w.namespace, w.name)
        }
        _ => String::new(),
    }
}

fn upsert_container(
    conn: &Connection,
    agent_id: &str,
    node_name: &str,
    c: &ContainerInfo,
    now: i64,
) -> Result<(), StoreError> {
    let image = c.image.clone().unwrap_or_default();
    let workload = workload_key(c);
    conn.prepare_cached(
        "INSERT INTO container_inventory VALUES (
             ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
             ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
         ON CONFLICT (container_id) DO UPDATE SET
             agent_id = excluded.agent_id, node_name = excluded.node_name,
             runtime = excluded.runtime, name = excluded.name,
             namespace = excluded.namespace, pod_name = excluded.pod_name,
             pod_uid = excluded.pod_uid, workload_key = excluded.workload_key,
             image_reference = excluded.image_reference,
             image_repository = excluded.image_repository,
             image_tag = excluded.image_tag, image_digest = excluded.image_digest,
             image_id = excluded.image_id, state = excluded.state,
             state_reason = excluded.state_reason, health = excluded.health,
             restart_count = excluded.restart_count, exit_code = excluded.exit_code,
             oom_killed = excluded.oom_killed, started_unix_ns = excluded.started_unix_ns,
             finished_unix_ns = excluded.finished_unix_ns,
             cpu_limit_millicores = excluded.cpu_limit_millicores,
             memory_limit_bytes = excluded.memory_limit_bytes,
             cpu_request_millicores = excluded.cpu_request_millicores,
             memory_request_bytes = excluded.memory_request_bytes,
             qos = excluded.qos, last_termination_reason = excluded.last_termination_reason,
             info_pb = excluded.info_pb, updated_unix_ns = excluded.updated_unix_ns,
             removed_unix_ns = NULL",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.container_id,
            agent_id,
            node_name,
            names::runtime(c.runtime),
            c.name,
            c.namespace,
            c.pod_name,
            c.pod_uid,
            workload,
            image.reference,
            image.repository,
            image.tag,
            image.digest,
            image.image_id,
            state_name(c.state),
            c.state_reason,
            health_name(c.health),
            c.restart_count,
            c.exit_code,
            c.oom_killed,
            c.started_unix_ns,
            c.finished_unix_ns,
            c.cpu_limit_millicores,
            c.memory_limit_bytes,
            c.cpu_request_millicores,
            c.memory_request_bytes,
            names::qos(c.qos),
            c.last_termination_reason,
            c.encode_to_vec(),
            now,
            now,
        ])
    })
    .map_err(sql("upsert a container's inventory"))?;

    if let Some(w) = c.workload.as_ref().filter(|_| !workload.is_empty()) {
        conn.prepare_cached(
            "INSERT INTO workloads VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (workload_key) DO UPDATE SET
                 detail = excluded.detail, last_seen_unix_ns = excluded.last_seen_unix_ns",
        )
        .and_then(|mut s| {
            s.execute(params![
                workload,
                workload_kind_name(w.kind),
                w.namespace,
                w.name,
                w.detail,
                now,
                now
            ])
        })
        .map_err(sql("upsert a workload"))?;
    }
    if !c.pod_uid.is_empty() {
        conn.prepare_cached(
            "INSERT INTO pods VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (pod_uid) DO UPDATE SET
                 node_name = excluded.node_name, qos = excluded.qos,
                 workload_key = excluded.workload_key,
                 last_seen_unix_ns = excluded.last_seen_unix_ns",
        )
        .and_then(|mut s| {
            s.execute(params![
                c.pod_uid,
                c.namespace,
                c.pod_name,
                node_name,
                names::qos(c.qos),
                workload,
                now,
                now
            ])
        })
        .map_err(sql("upsert a pod"))?;
    }
    let image_key = image_key(&image);
    if !image_key.is_empty() {
        conn.prepare_cached(
            "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (image_key) DO UPDATE SET
                 digest = CASE WHEN excluded.digest <> '' THEN excluded.digest ELSE images.digest END,
                 last_seen_unix_ns = excluded.last_seen_unix_ns",
        )
        .and_then(|mut s| {
            s.execute(params![
                image_key,
                image.reference,
                image.repository,
                image.tag,
                image.digest,
                image.image_id,
                now,
                now
            ])
        })
        .map_err(sql("upsert an image"))?;
        if !workload.is_empty() {
            track_workload_image(
                conn, agent_id, node_name, c, &workload, &image, &image_key, now,
            )?;
        }
    }
    Ok(())
}

fn image_key(image: &v1::ImageRef) -> String {
    if image.image_id.is_empty() {
        image.reference.clone()
    } else {
        image.image_id.clone()
    }
}

/// Records the image of the workload's container and emits `image_change`
/// when a container started after the recorded one runs another image.
#[allow(clippy::too_many_arguments)]
fn track_workload_image(
    conn: &Connection,
    agent_id: &str,
    node_name: &str,
    c: &ContainerInfo,
    workload: &str,
    image: &v1::ImageRef,
    image_key: &str,
    now: i64,
) -> Result<(), StoreError> {
    let started = c.started_unix_ns.unwrap_or(now);
    let recorded: Option<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT image_key, image_reference, since_unix_ns FROM workload_images
             WHERE workload_key = ? AND container_name = ?",
        )
        .and_then(|mut s| {
            s.query_row(params![workload, c.name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(sql("read a workload's image"))?;
    let replace = match &recorded {
        None => true,
        Some((key, _, since)) => key != image_key && started > *since,
    };
    if !replace {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO workload_images VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (workload_key, container_name) DO UPDATE SET
             image_key = excluded.image_key, image_reference = excluded.image_reference,
             since_unix_ns = excluded.since_unix_ns",
    )
    .and_then(|mut s| {
        s.execute(params![
            workload,
            c.name,
            image_key,
            image.reference,
            started
        ])
    })
    .map_err(sql("record a workload's image"))?;
    if let Some((_, from, _)) = recorded {
        let to = image.reference.clone();
        let event = LifecycleEvent {
            timestamp_unix_ns: started,
            container_id: c.container_id.clone(),
            kind: EventKind::ImageChange as i32,
            exit_code: None,
            detail: format!("{workload} container {:?}: {from} → {to}", c.name),
            from,
            to,
        };
        insert_event(conn, agent_id, node_name, &event, now)?;
    }
    Ok(())
}

fn mark_unlisted_removed(
    conn: &Connection,
    agent_id: &str,
    listed: &[&str],
    now: i64,
) -> Result<(), StoreError> {
    let present: Vec<String> = conn
        .prepare_cached(
            "SELECT container_id FROM container_inventory
             WHERE agent_id = ? AND removed_unix_ns IS NULL",
        )
        .and_then(|mut s| {
            s.query_map(params![agent_id], |r| r.get::<_, String>(0))?
                .collect()
        })
        .map_err(sql("list an agent's containers"))?;
    let listed: std::collections::HashSet<&str> = listed.iter().copied().collect();
    for id in present.iter().filter(|id| !listed.contains(id.as_str())) {
        conn.prepare_cached(
            "UPDATE container_inventory SET removed_unix_ns = ? WHERE container_id = ?",
        )
        .and_then(|mut s| s.execute(params![now, id]))
        .map_err(sql("mark a container removed"))?;
    }
    Ok(())
}

fn insert_event(
    conn: &Connection,
    agent_id: &str,
    node_name: &str,
    e: &LifecycleEvent,
    now: i64,
) -> Result<(), StoreError> {
    let Some(kind) = event_kind_name(e.kind) else {
        tracing::warn!(agent_id, kind = e.kind, "event of an unknown kind skipped");
        return Ok(());
    };
    if e.container_id.is_empty() {
        tracing::warn!(agent_id, kind, "event without a container id skipped");
        return Ok(());
    }
    // Who the container is, as far as the store knows now.
    let who: Option<(String, String, String, String)> = conn
        .prepare_cached(
            "SELECT name, namespace, workload_key, image_reference
             FROM container_inventory WHERE container_id = ?",
        )
        .and_then(|mut s| {
            s.query_row(params![e.container_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(sql("look up an event's container"))?;
    let (name, namespace, workload, image) = who.unwrap_or_default();
    conn.prepare_cached(
        "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            e.timestamp_unix_ns,
            e.container_id,
            kind,
            agent_id,
            node_name,
            e.exit_code,
            e.from,
            e.to,
            e.detail,
            name,
            namespace,
            workload,
            image,
            now,
        ])
    })
    .map_err(sql("insert an event"))?;
    Ok(())
}

/// Stored name of a wire `ContainerState`.
pub fn state_name(value: i32) -> Option<&'static str> {
    use v1::ContainerState as S;
    Some(match S::try_from(value).ok()? {
        S::Unspecified => return None,
        S::Created => "created",
        S::Running => "running",
        S::Paused => "paused",
        S::Restarting => "restarting",
        S::Exited => "exited",
        S::Dead => "dead",
        S::Removing => "removing",
        S::Waiting => "waiting",
    })
}

/// Stored name of a wire `HealthStatus`.
pub fn health_name(value: i32) -> Option<&'static str> {
    use v1::HealthStatus as H;
    Some(match H::try_from(value).ok()? {
        H::Unspecified => return None,
        H::None => "none",
        H::Starting => "starting",
        H::Healthy => "healthy",
        H::Unhealthy => "unhealthy",
    })
}

/// Stored name of a wire `WorkloadKind` (`other` for unknown values).
pub fn workload_kind_name(value: i32) -> &'static str {
    match WorkloadKind::try_from(value) {
        Ok(WorkloadKind::Deployment) => "deployment",
        Ok(WorkloadKind::StatefulSet) => "statefulset",
        Ok(WorkloadKind::DaemonSet) => "daemonset",
        Ok(WorkloadKind::Job) => "job",
        Ok(WorkloadKind::CronJob) => "cronjob",
        Ok(WorkloadKind::ReplicaSet) => "replicaset",
        Ok(WorkloadKind::Pod) => "pod",
        Ok(WorkloadKind::ComposeService) => "compose",
        Ok(WorkloadKind::Container) => "container",
        Ok(WorkloadKind::Other | WorkloadKind::Unspecified) | Err(_) => "other",
    }
}

/// Stored name of a wire `EventKind`; `None` for unspecified or unknown.
pub fn event_kind_name(value: i32) -> Option<&'static str> {
    Some(match EventKind::try_from(value).ok()? {
        EventKind::Unspecified => return None,
        EventKind::Start => "start",
        EventKind::Die => "die",
        EventKind::Oom => "oom",
        EventKind::Restart => "restart",
        EventKind::ImageChange => "image_change",
        EventKind::HealthChange => "health_change",
        EventKind::Create => "create",
        EventKind::Destroy => "destroy",
    })
}

/// The wire `EventKind` of a stored name.
pub fn parse_event_kind(name: &str) -> Option<EventKind> {
    [
        EventKind::Start,
        EventKind::Die,
        EventKind::Oom,
        EventKind::Restart,
        EventKind::ImageChange,
        EventKind::HealthChange,
        EventKind::Create,
        EventKind::Destroy,
    ]
    .into_iter()
    .find(|k| event_kind_name(*k as i32) == Some(name))
}

/// `node_labels`: the latest labels each node's agent reported.
pub(crate) const NODE_LABELS_DDL: &str = "CREATE TABLE IF NOT EXISTS node_labels (
    node_name       VARCHAR PRIMARY KEY,
    labels          MAP(VARCHAR, VARCHAR) NOT NULL,
    updated_unix_ns BIGINT NOT NULL
)";

/// Replaces `node_name`'s labels.
fn store_node_labels(
    conn: &Connection,
    node_name: &str,
    labels: &std::collections::HashMap<String, String>,
    received_unix_ns: i64,
) -> Result<(), StoreError> {
    // No map parameter in the Rust binding: keys and values go as two
    // lists of one text each, split on a separator no label has.
    let mut sorted: Vec<(&String, &String)> = labels.iter().collect();
    sorted.sort();
    let keys: Vec<String> = sorted
        .iter()
        .map(|(k, _)| k.replace('\u{1f}', ""))
        .collect();
    let values: Vec<String> = sorted
        .iter()
        .map(|(_, v)| v.replace('\u{1f}', ""))
        .collect();
    conn.prepare_cached(
        "INSERT OR REPLACE INTO node_labels VALUES (?,
            CASE WHEN ? = 0 THEN MAP()::MAP(VARCHAR, VARCHAR)
                 ELSE MAP(string_split(?, chr(31)), string_split(?, chr(31))) END, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            node_name,
            keys.len() as i64,
            keys.join("\u{1f}"),
            values.join("\u{1f}"),
            received_unix_ns
        ])
    })
    .map_err(sql("store node labels"))?;
    Ok(())
}

//! Reading the inventory back: every container's latest record, and
//! lifecycle events with filters.

use std::collections::HashMap;

use duckdb::{ToSql, params_from_iter};
use prost::Message;
use upid::wire::v1;

use super::inventory::{event_kind_name, parse_event_kind};
use super::query::{QueryError, Reader, sql};

/// Most events one query returns when the caller does not say.
pub const DEFAULT_EVENT_LIMIT: u32 = 1000;
/// Most events one query returns at all.
pub const MAX_EVENT_LIMIT: u32 = 100_000;

/// A container's latest inventory record.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRecord {
    /// As the agent sent it.
    pub info: v1::ContainerInfo,
    /// Node that reported it.
    pub node_name: String,
    /// The runtime no longer lists it.
    pub removed: bool,
}

/// Which events to list; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Earliest event time (inclusive); 0: unbounded.
    pub since_unix_ns: i64,
    /// Latest event time (inclusive); 0: unbounded.
    pub until_unix_ns: i64,
    /// Node name.
    pub node_name: String,
    /// Kubernetes namespace or compose project.
    pub namespace: String,
    /// Workload name, or `kind/name`, or its full key `kind/namespace/name`.
    pub workload: String,
    /// Container id prefix (at least 4 characters) or container name.
    pub container: String,
    /// Event kinds (wire values).
    pub kinds: Vec<i32>,
    /// At most this many (0: [`DEFAULT_EVENT_LIMIT`]).
    pub limit: u32,
}

impl Reader {
    /// Every container's latest inventory record, by container id.
    pub fn inventory(&self) -> Result<HashMap<String, InventoryRecord>, QueryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT container_id, node_name, info_pb, removed_unix_ns IS NOT NULL
                 FROM container_inventory",
            )
            .map_err(sql("read the inventory"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })
            .map_err(sql("read the inventory"))?;
        let mut out = HashMap::new();
        for row in rows {
            let (id, node_name, pb, removed) = row.map_err(sql("read the inventory"))?;
            match v1::ContainerInfo::decode(pb.as_slice()) {
                Ok(info) => {
                    out.insert(
                        id,
                        InventoryRecord {
                            info,
                            node_name,
                            removed,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(container_id = %id, error = %e, "stored inventory record is unreadable; skipped");
                }
            }
        }
        Ok(out)
    }

    /// Events matching `filter`, newest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<v1::Event>, QueryError> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        if filter.since_unix_ns > 0 {
            clauses.push("e.ts_unix_ns >= ?");
            args.push(Box::new(filter.since_unix_ns));
        }
        if filter.until_unix_ns > 0 {
            clauses.push("e.ts_unix_ns <= ?");
            args.push(Box::new(filter.until_unix_ns));
        }
        if !filter.node_name.is_empty() {
            clauses.push("e.node_name = ?");
            args.push(Box::new(filter.node_name.clone()));
        }
        if !filter.namespace.is_empty() {
            clauses.push("e.namespace = ?");
            args.push(Box::new(filter.namespace.clone()));
        }
        if !filter.workload.is_empty() {
            clauses.push("(e.workload_key = ? OR w.name = ? OR (w.kind || '/' || w.name) = ?)");
            for _ in 0..3 {
                args.push(Box::new(filter.workload.clone()));
            }
        }
        if !filter.container.is_empty() {
            clauses.push("(starts_with(e.container_id, ?) OR e.container_name = ?)");
            args.push(Box::new(filter.container.to_ascii_lowercase()));
            args.push(Box::new(filter.container.clone()));
        }
        let kinds: Vec<&str> = filter
            .kinds
            .iter()
            .map(|k| {
                event_kind_name(*k).ok_or_else(|| QueryError::InvalidArgument {
                    message: format!("unknown event kind {k}"),
                })
            })
            .collect::<Result<_, _>>()?;
        let placeholders = vec!["?"; kinds.len()].join(", ");
        let kind_clause = format!("e.kind IN ({placeholders})");
        if !kinds.is_empty() {
            clauses.push(&kind_clause);
            for k in &kinds {
                args.push(Box::new((*k).to_string()));
            }
        }
        let limit = match filter.limit {
            0 => DEFAULT_EVENT_LIMIT,
            n => n.min(MAX_EVENT_LIMIT),
        };
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let query = format!(
            "SELECT e.ts_unix_ns, e.container_id, e.kind, e.exit_code, e.from_value, e.to_value,
                    e.detail, e.node_name, e.container_name, e.namespace, e.image_reference,
                    w.kind, w.namespace, w.name, w.detail
             FROM events e LEFT JOIN workloads w ON w.workload_key = e.workload_key
             {where_sql}
             ORDER BY e.ts_unix_ns DESC, e.container_id, e.kind
             LIMIT {limit}"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&query).map_err(sql("list events"))?;
        let rows = stmt
            .query_map(params_from_iter(args.iter().map(AsRef::as_ref)), |r| {
                let kind: String = r.get(2)?;
                let workload_kind: Option<String> = r.get(11)?;
                Ok(v1::Event {
                    event: Some(v1::LifecycleEvent {
                        timestamp_unix_ns: r.get(0)?,
                        container_id: r.get(1)?,
                        kind: parse_event_kind(&kind).map_or(0, |k| k as i32),
                        exit_code: r.get(3)?,
                        from: r.get(4)?,
                        to: r.get(5)?,
                        detail: r.get(6)?,
                    }),
                    node_name: r.get(7)?,
                    container_name: r.get(8)?,
                    namespace: r.get(9)?,
                    image: r.get(10)?,
                    workload: workload_kind
                        .map(|kind| {
                            Ok::<_, duckdb::Error>(v1::WorkloadRef {
                                kind: parse_workload_kind(&kind) as i32,
                                namespace: r.get(12)?,
                                name: r.get(13)?,
                                detail: r.get(14)?,
                            })
                        })
                        .transpose()?,
                })
            })
            .map_err(sql("list events"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list events"))
    }
}

/// The wire kind of a stored workload kind name.
pub fn parse_workload_kind(name: &str) -> v1::WorkloadKind {
    use v1::WorkloadKind as K;
    [
        K::Deployment,
        K::StatefulSet,
        K::DaemonSet,
        K::Job,
        K::CronJob,
        K::ReplicaSet,
        K::Pod,
        K::ComposeService,
        K::Container,
    ]
    .into_iter()
    .find(|k| super::inventory::workload_kind_name(*k as i32) == name)
    .unwrap_or(K::Other)
}

impl Reader {
    /// Every node's latest reported labels (nodes that reported none are
    /// absent).
    pub fn node_labels(
        &self,
    ) -> Result<HashMap<String, std::collections::BTreeMap<String, String>>, QueryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT node_name, array_to_string(map_keys(labels), chr(31)),
                    array_to_string(map_values(labels), chr(31))
                 FROM node_labels",
            )
            .map_err(sql("read node labels"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                ))
            })
            .map_err(sql("read node labels"))?;
        let mut out = HashMap::new();
        for row in rows {
            let (node, keys, values) = row.map_err(sql("read node labels"))?;
            let labels = if keys.is_empty() {
                std::collections::BTreeMap::new()
            } else {
                keys.split('\u{1f}')
                    .map(str::to_owned)
                    .zip(values.split('\u{1f}').map(str::to_owned))
                    .collect()
            };
            out.insert(node, labels);
        }
        Ok(out)
    }
}

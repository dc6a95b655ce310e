//! What judging a rollout from stored history reads besides the inventory
//! records: when each container first started and stopped being listed,
//! the lifecycle events the health gate counts, and mean usage of a set of
//! containers over a window (`crate::updates::rollouts`).

use std::collections::HashMap;

use duckdb::{ToSql, params_from_iter};
use upid::wire::v1::EventKind;

use super::inventory::{event_kind_name, parse_event_kind};
use super::query::{QueryError, Reader, sql};

/// What the store knows of a container's life beyond its latest record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLifetime {
    /// Earliest `start` event stored for it (a restarted Docker container
    /// keeps its id, and its record only has the latest start).
    pub first_start_unix_ns: Option<i64>,
    /// When the collector first stored its record (collector clock).
    pub first_seen_unix_ns: i64,
    /// When its record last changed (collector clock).
    pub updated_unix_ns: i64,
    /// When the runtime stopped listing it; `None` while it exists.
    pub removed_unix_ns: Option<i64>,
}

/// One lifecycle event the health gate counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateEvent {
    /// When it happened (runtime clock where the runtime said).
    pub ts_unix_ns: i64,
    /// The container.
    pub container_id: String,
    /// `Die`, `Oom`, `Restart` or `HealthChange`.
    pub kind: EventKind,
    /// Exit code of a `Die`.
    pub exit_code: Option<i32>,
    /// Previous value (health before a `HealthChange`).
    pub from: String,
    /// New value (health after a `HealthChange`).
    pub to: String,
}

/// Mean usage of some containers over a window, from `usage` rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageWindow {
    /// `usage` rows overlapping the window.
    pub rows: u64,
    /// Mean CPU in cores per container (weighted by each row's interval);
    /// `None` without a CPU figure.
    pub cpu_cores: Option<f64>,
    /// Mean working set in bytes per container; `None` without one.
    pub memory_working_set_bytes: Option<f64>,
    /// OOM kills counted in those rows.
    pub oom_kills: u64,
}

/// Kinds [`Reader::gate_events`] returns.
const GATE_KINDS: [EventKind; 4] = [
    EventKind::Die,
    EventKind::Oom,
    EventKind::Restart,
    EventKind::HealthChange,
];

impl Reader {
    /// Per container id of the inventory: its earliest stored `start`
    /// event, when it was first and last stored, and when it was removed.
    pub fn container_lifetimes(&self) -> Result<HashMap<String, ContainerLifetime>, QueryError> {
        let start = event_kind_name(EventKind::Start as i32).unwrap_or("start");
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT i.container_id, s.first_start, i.first_seen_unix_ns,
                        i.updated_unix_ns, i.removed_unix_ns
                 FROM container_inventory i
                 LEFT JOIN (SELECT container_id, min(ts_unix_ns) AS first_start
                            FROM events WHERE kind = ? GROUP BY container_id) s
                   ON s.container_id = i.container_id",
            )
            .map_err(sql("read container lifetimes"))?;
        let rows = stmt
            .query_map([start], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    ContainerLifetime {
                        first_start_unix_ns: r.get(1)?,
                        first_seen_unix_ns: r.get(2)?,
                        updated_unix_ns: r.get(3)?,
                        removed_unix_ns: r.get(4)?,
                    },
                ))
            })
            .map_err(sql("read container lifetimes"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read container lifetimes"))
    }

    /// `die`, `oom`, `restart` and `health_change` events at or after
    /// `since_unix_ns`, oldest first.
    pub fn gate_events(&self, since_unix_ns: i64) -> Result<Vec<GateEvent>, QueryError> {
        let names: Vec<&str> = GATE_KINDS
            .iter()
            .filter_map(|k| event_kind_name(*k as i32))
            .collect();
        let query = format!(
            "SELECT ts_unix_ns, container_id, kind, exit_code, from_value, to_value
             FROM events WHERE ts_unix_ns >= ? AND kind IN ({})
             ORDER BY ts_unix_ns, container_id, kind",
            vec!["?"; names.len()].join(", ")
        );
        let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(since_unix_ns)];
        for n in &names {
            args.push(Box::new((*n).to_owned()));
        }
        let conn = self.conn();
        let mut stmt = conn.prepare(&query).map_err(sql("read gate events"))?;
        let rows = stmt
            .query_map(params_from_iter(args.iter().map(AsRef::as_ref)), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i32>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(sql("read gate events"))?;
        let mut out = Vec::new();
        for row in rows {
            let (ts_unix_ns, container_id, kind, exit_code, from, to) =
                row.map_err(sql("read gate events"))?;
            if let Some(kind) = parse_event_kind(&kind) {
                out.push(GateEvent {
                    ts_unix_ns,
                    container_id,
                    kind,
                    exit_code,
                    from,
                    to,
                });
            }
        }
        Ok(out)
    }

    /// Mean CPU and working set per container, and OOM kills, of the
    /// `usage` rows of `container_ids` that overlap `[from, to)`.
    pub fn usage_window(
        &self,
        container_ids: &[String],
        from_unix_ns: i64,
        to_unix_ns: i64,
    ) -> Result<UsageWindow, QueryError> {
        if container_ids.is_empty() || to_unix_ns <= from_unix_ns {
            return Ok(UsageWindow::default());
        }
        let query = format!(
            "SELECT count(*),
                    sum(cpu_cores * interval_s)
                        / nullif(sum(CASE WHEN cpu_cores IS NOT NULL THEN interval_s END), 0),
                    sum(memory_working_set_bytes::DOUBLE * interval_s)
                        / nullif(sum(CASE WHEN memory_working_set_bytes IS NOT NULL
                                          THEN interval_s END), 0),
                    coalesce(sum(oom_kills), 0)::BIGINT
             FROM usage
             WHERE container_id IN ({})
               AND ts_unix_ns < ?
               AND ts_unix_ns + CAST(interval_s * 1e9 AS BIGINT) > ?",
            vec!["?"; container_ids.len()].join(", ")
        );
        let mut args: Vec<Box<dyn ToSql>> = container_ids
            .iter()
            .map(|id| Box::new(id.clone()) as Box<dyn ToSql>)
            .collect();
        args.push(Box::new(to_unix_ns));
        args.push(Box::new(from_unix_ns));
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&query)
            .map_err(sql("read usage of a window"))?;
        stmt.query_row(params_from_iter(args.iter().map(AsRef::as_ref)), |r| {
            Ok(UsageWindow {
                rows: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                cpu_cores: r.get(1)?,
                memory_working_set_bytes: r.get(2)?,
                oom_kills: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            })
        })
        .map_err(sql("read usage of a window"))
    }
}

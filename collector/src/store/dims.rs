//! The dimension tables (`agents`, `nodes`, `containers`) mirrored in memory
//! by the writer.
//!
//! The single writer is the only one changing these tables, so it keeps
//! their rows in memory: an ingest computes the new rows in Rust (first and
//! last seen, OOM totals, surrogate keys) into a [`DimChanges`], writes them
//! set-based inside the ingest transaction (new rows appended, changed rows
//! staged in a temp table and applied with one `UPDATE ... FROM`), and
//! applies them to memory only after COMMIT returned Ok. A rolled-back
//! ingest leaves memory as it was.

use std::collections::HashMap;
use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Int64Builder, UInt32Builder, UInt64Builder};
use duckdb::arrow::datatypes::{Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Appender, Connection, params};

use super::StoreError;

/// A row of `agents`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentRow {
    pub agent_id: String,
    pub node_name: String,
    pub agent_version: Option<String>,
    pub last_seq: u64,
    pub first_seen_unix_ns: i64,
    pub last_seen_unix_ns: i64,
    pub spool_dropped_batches_total: u64,
    pub spool_dropped_bytes_total: u64,
    pub spool_pending_batches: u64,
    pub spool_pending_bytes: u64,
    pub clock_skew_ns: Option<i64>,
    pub batches_stored: u64,
    pub malformed_skips_total: u64,
    pub vanished_total: u64,
}

impl AgentRow {
    /// A row for an agent never seen before.
    pub fn new(agent_id: &str, node_name: &str, now_unix_ns: i64) -> AgentRow {
        AgentRow {
            agent_id: agent_id.to_owned(),
            node_name: node_name.to_owned(),
            agent_version: None,
            last_seq: 0,
            first_seen_unix_ns: now_unix_ns,
            last_seen_unix_ns: now_unix_ns,
            spool_dropped_batches_total: 0,
            spool_dropped_bytes_total: 0,
            spool_pending_batches: 0,
            spool_pending_bytes: 0,
            clock_skew_ns: None,
            batches_stored: 0,
            malformed_skips_total: 0,
            vanished_total: 0,
        }
    }
}

/// A row of `nodes`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeRow {
    pub node_name: String,
    pub agent_id: String,
    pub cgroup_layout: Option<String>,
    pub cpu_count: u32,
    pub memory_total_bytes: u64,
    pub boot_time_unix_s: u64,
    pub first_seen_unix_ns: i64,
    pub last_seen_unix_ns: i64,
}

/// A row of `containers`: its key, surrogate key, identity and state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerRow {
    pub container_key: String,
    pub container_sk: u32,
    /// Shared with the change sets of ingests, which compare every newer
    /// sample's identity with it.
    pub identity: Arc<ContainerIdentity>,
    pub state: ContainerState,
}

/// The identity columns of a `containers` row: they rarely change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerIdentity {
    pub node_name: String,
    pub cgroup_path: String,
    pub runtime: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub qos: Option<String>,
    pub unit: Option<String>,
}

/// The columns of a `containers` row that every sample moves (those of
/// `stage_container_state`); small and `Copy`, so an ingest copies them
/// instead of the whole row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ContainerState {
    pub first_seen_unix_ns: i64,
    pub last_seen_unix_ns: i64,
    pub last_tick_unix_ns: i64,
    pub samples_stored: u64,
    pub cpu_limit_millicores: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub oom_kills_last: Option<u64>,
    pub oom_kills_total: u64,
}

/// How an ingest changes one container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContainerChange {
    /// Its surrogate key.
    pub sk: u32,
    /// Never stored before: the whole row is inserted.
    pub is_new: bool,
    /// Its identity changed: the whole row is updated.
    pub identity_changed: bool,
    /// Its identity as of its newest sample.
    pub identity: Arc<ContainerIdentity>,
    /// Its new state.
    pub state: ContainerState,
}

/// The committed state of the dimension tables.
#[derive(Debug, Default)]
pub(crate) struct Dims {
    pub agents: HashMap<String, AgentRow>,
    pub nodes: HashMap<String, NodeRow>,
    pub containers: HashMap<String, ContainerRow>,
    /// Next free `container_sk`.
    pub next_sk: u32,
}

/// Rows an ingest changes, applied to [`Dims`] after COMMIT.
#[derive(Debug, Default)]
pub(crate) struct DimChanges {
    pub agents: HashMap<String, AgentRow>,
    pub nodes: HashMap<String, NodeRow>,
    /// Changed containers by `container_key`.
    pub containers: HashMap<String, ContainerChange>,
    pub next_sk: u32,
}

impl Dims {
    /// Reads the three tables.
    pub fn load(conn: &Connection) -> Result<Dims, StoreError> {
        let load = |table: &'static str| move |source| StoreError::Load { table, source };
        let mut dims = Dims::default();

        let mut stmt = conn
            .prepare(
                "SELECT agent_id, node_name, agent_version, last_seq, first_seen_unix_ns,
                        last_seen_unix_ns, spool_dropped_batches_total, spool_dropped_bytes_total,
                        spool_pending_batches, spool_pending_bytes, clock_skew_ns, batches_stored,
                        malformed_skips_total, vanished_total
                 FROM agents",
            )
            .map_err(load("agents"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AgentRow {
                    agent_id: r.get(0)?,
                    node_name: r.get(1)?,
                    agent_version: r.get(2)?,
                    last_seq: r.get(3)?,
                    first_seen_unix_ns: r.get(4)?,
                    last_seen_unix_ns: r.get(5)?,
                    spool_dropped_batches_total: r.get(6)?,
                    spool_dropped_bytes_total: r.get(7)?,
                    spool_pending_batches: r.get(8)?,
                    spool_pending_bytes: r.get(9)?,
                    clock_skew_ns: r.get(10)?,
                    batches_stored: r.get(11)?,
                    malformed_skips_total: r.get(12)?,
                    vanished_total: r.get(13)?,
                })
            })
            .map_err(load("agents"))?;
        for row in rows {
            let row = row.map_err(load("agents"))?;
            dims.agents.insert(row.agent_id.clone(), row);
        }

        let mut stmt = conn
            .prepare(
                "SELECT node_name, agent_id, cgroup_layout, cpu_count, memory_total_bytes,
                        boot_time_unix_s, first_seen_unix_ns, last_seen_unix_ns
                 FROM nodes",
            )
            .map_err(load("nodes"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(NodeRow {
                    node_name: r.get(0)?,
                    agent_id: r.get(1)?,
                    cgroup_layout: r.get(2)?,
                    cpu_count: r.get(3)?,
                    memory_total_bytes: r.get(4)?,
                    boot_time_unix_s: r.get(5)?,
                    first_seen_unix_ns: r.get(6)?,
                    last_seen_unix_ns: r.get(7)?,
                })
            })
            .map_err(load("nodes"))?;
        for row in rows {
            let row = row.map_err(load("nodes"))?;
            dims.nodes.insert(row.node_name.clone(), row);
        }

        let mut stmt = conn
            .prepare(
                "SELECT container_key, container_sk, node_name, cgroup_path, runtime,
                        container_id, pod_uid, qos, unit, first_seen_unix_ns, last_seen_unix_ns,
                        last_tick_unix_ns, samples_stored, cpu_limit_millicores,
                        memory_limit_bytes, oom_kills_last, oom_kills_total
                 FROM containers",
            )
            .map_err(load("containers"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ContainerRow {
                    container_key: r.get(0)?,
                    container_sk: r.get(1)?,
                    identity: Arc::new(ContainerIdentity {
                        node_name: r.get(2)?,
                        cgroup_path: r.get(3)?,
                        runtime: r.get(4)?,
                        container_id: r.get(5)?,
                        pod_uid: r.get(6)?,
                        qos: r.get(7)?,
                        unit: r.get(8)?,
                    }),
                    state: ContainerState {
                        first_seen_unix_ns: r.get(9)?,
                        last_seen_unix_ns: r.get(10)?,
                        last_tick_unix_ns: r.get(11)?,
                        samples_stored: r.get(12)?,
                        cpu_limit_millicores: r.get(13)?,
                        memory_limit_bytes: r.get(14)?,
                        oom_kills_last: r.get(15)?,
                        oom_kills_total: r.get(16)?,
                    },
                })
            })
            .map_err(load("containers"))?;
        for row in rows {
            let row = row.map_err(load("containers"))?;
            dims.next_sk = dims.next_sk.max(row.container_sk.saturating_add(1));
            dims.containers.insert(row.container_key.clone(), row);
        }
        Ok(dims)
    }

    /// Highest stored seq of an agent, 0 when unknown.
    pub fn last_seq(&self, agent_id: &str) -> u64 {
        self.agents.get(agent_id).map_or(0, |a| a.last_seq)
    }

    /// A change set starting from this state.
    pub fn begin(&self) -> DimChanges {
        DimChanges {
            next_sk: self.next_sk,
            ..DimChanges::default()
        }
    }

    /// Makes committed changes the new state.
    pub fn apply(&mut self, changes: DimChanges) {
        self.agents.extend(changes.agents);
        self.nodes.extend(changes.nodes);
        for (key, change) in changes.containers {
            match self.containers.get_mut(&key) {
                Some(row) => {
                    row.identity = change.identity;
                    row.state = change.state;
                }
                None => {
                    let row = ContainerRow {
                        container_key: key.clone(),
                        container_sk: change.sk,
                        identity: change.identity,
                        state: change.state,
                    };
                    self.containers.insert(key, row);
                }
            }
        }
        self.next_sk = changes.next_sk;
    }
}

impl DimChanges {
    /// The changed (or committed, or new) row of an agent.
    pub fn agent(
        &mut self,
        dims: &Dims,
        agent_id: &str,
        init: impl FnOnce() -> AgentRow,
    ) -> &mut AgentRow {
        self.agents
            .entry(agent_id.to_owned())
            .or_insert_with(|| dims.agents.get(agent_id).cloned().unwrap_or_else(init))
    }

    /// Writes every changed row inside the caller's transaction: new rows
    /// are appended to their table; changed rows are appended to a temp
    /// staging table and applied with one `UPDATE ... FROM`. (DuckDB's
    /// `INSERT OR REPLACE` takes seconds for 50,000 existing rows; this takes
    /// milliseconds.) A container whose identity did not change (the common
    /// case: only last-seen and counters moved) goes through a narrow
    /// staging table of its volatile columns. Every appender is flushed
    /// explicitly.
    pub fn write(&self, conn: &Connection, dims: &Dims) -> Result<(), StoreError> {
        let agents = sorted(self.agents.values(), |a| a.agent_id.clone());
        let (old, new): (Vec<_>, Vec<_>) = agents
            .into_iter()
            .partition(|a| dims.agents.contains_key(&a.agent_id));
        append_rows(conn, "agents", false, &new, append_agent)?;
        update_from_stage(conn, "stage_agents", UPDATE_AGENTS, &old, append_agent)?;

        let nodes = sorted(self.nodes.values(), |n| n.node_name.clone());
        let (old, new): (Vec<_>, Vec<_>) = nodes
            .into_iter()
            .partition(|n| dims.nodes.contains_key(&n.node_name));
        append_rows(conn, "nodes", false, &new, append_node)?;
        update_from_stage(conn, "stage_nodes", UPDATE_NODES, &old, append_node)?;

        let mut changed: Vec<(&String, &ContainerChange)> = self.containers.iter().collect();
        changed.sort_unstable_by_key(|(_, c)| c.sk);
        let mut new = Vec::new();
        let mut renamed = Vec::new();
        let mut moved = Vec::new();
        for (key, c) in changed {
            let whole = (key.as_str(), c.sk, &*c.identity, c.state);
            if c.is_new {
                new.push(whole);
            } else if c.identity_changed {
                renamed.push(whole);
            } else {
                moved.push((c.sk, c.state));
            }
        }
        let new: Vec<&WholeContainer<'_>> = new.iter().collect();
        append_rows(conn, "containers", false, &new, append_container)?;
        let renamed: Vec<&WholeContainer<'_>> = renamed.iter().collect();
        update_from_stage(
            conn,
            "stage_containers",
            UPDATE_CONTAINERS,
            &renamed,
            append_container,
        )?;
        stage_container_states(conn, &moved)
    }
}

/// A whole `containers` row: key, surrogate key, identity, state.
type WholeContainer<'a> = (&'a str, u32, &'a ContainerIdentity, ContainerState);

/// Applies the state of `moved` containers (sorted by surrogate key) with
/// one `UPDATE ... FROM stage_container_state`, the stage filled a column
/// at a time: this runs in every ingest, once per container touched.
fn stage_container_states(
    conn: &Connection,
    moved: &[(u32, ContainerState)],
) -> Result<(), StoreError> {
    if moved.is_empty() {
        return Ok(());
    }
    let table = "stage_container_state";
    let failed = |source| StoreError::Append { table, source };
    execute_cached(conn, "DELETE FROM temp.main.stage_container_state").map_err(|source| {
        StoreError::Ingest {
            step: "clear a staging table",
            source,
        }
    })?;
    let n = moved.len();
    let mut sk = UInt32Builder::with_capacity(n);
    let mut first_seen = Int64Builder::with_capacity(n);
    let mut last_seen = Int64Builder::with_capacity(n);
    let mut last_tick = Int64Builder::with_capacity(n);
    let mut samples = UInt64Builder::with_capacity(n);
    let mut cpu_limit = UInt64Builder::with_capacity(n);
    let mut memory_limit = UInt64Builder::with_capacity(n);
    let mut oom_last = UInt64Builder::with_capacity(n);
    let mut oom_total = UInt64Builder::with_capacity(n);
    for (key, s) in moved {
        sk.append_value(*key);
        first_seen.append_value(s.first_seen_unix_ns);
        last_seen.append_value(s.last_seen_unix_ns);
        last_tick.append_value(s.last_tick_unix_ns);
        samples.append_value(s.samples_stored);
        cpu_limit.append_option(s.cpu_limit_millicores);
        memory_limit.append_option(s.memory_limit_bytes);
        oom_last.append_option(s.oom_kills_last);
        oom_total.append_value(s.oom_kills_total);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(sk.finish()),
        Arc::new(first_seen.finish()),
        Arc::new(last_seen.finish()),
        Arc::new(last_tick.finish()),
        Arc::new(samples.finish()),
        Arc::new(cpu_limit.finish()),
        Arc::new(memory_limit.finish()),
        Arc::new(oom_last.finish()),
        Arc::new(oom_total.finish()),
    ];
    let fields: Vec<Field> = STAGE_CONTAINER_STATE_COLUMNS
        .iter()
        .zip(&columns)
        .map(|(name, c)| Field::new(*name, c.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| failed(duckdb::Error::ToSqlConversionFailure(Box::new(e))))?;
    let mut app = conn
        .appender_to_catalog_and_db(table, "temp", "main")
        .map_err(failed)?;
    app.append_record_batch(batch).map_err(failed)?;
    app.flush().map_err(failed)?;
    drop(app);
    execute_cached(conn, UPDATE_CONTAINER_STATE).map_err(|source| StoreError::Ingest {
        step: "update a dimension table",
        source,
    })?;
    Ok(())
}

/// Columns of `stage_container_state`, in order.
pub(crate) const STAGE_CONTAINER_STATE_COLUMNS: [&str; 9] = [
    "container_sk",
    "first_seen_unix_ns",
    "last_seen_unix_ns",
    "last_tick_unix_ns",
    "samples_stored",
    "cpu_limit_millicores",
    "memory_limit_bytes",
    "oom_kills_last",
    "oom_kills_total",
];

fn append_agent(app: &mut Appender<'_>, a: &AgentRow) -> duckdb::Result<()> {
    app.append_row(params![
        a.agent_id,
        a.node_name,
        a.agent_version,
        a.last_seq,
        a.first_seen_unix_ns,
        a.last_seen_unix_ns,
        a.spool_dropped_batches_total,
        a.spool_dropped_bytes_total,
        a.spool_pending_batches,
        a.spool_pending_bytes,
        a.clock_skew_ns,
        a.batches_stored,
        a.malformed_skips_total,
        a.vanished_total,
    ])
}

fn append_node(app: &mut Appender<'_>, n: &NodeRow) -> duckdb::Result<()> {
    app.append_row(params![
        n.node_name,
        n.agent_id,
        n.cgroup_layout,
        n.cpu_count,
        n.memory_total_bytes,
        n.boot_time_unix_s,
        n.first_seen_unix_ns,
        n.last_seen_unix_ns,
    ])
}

fn append_container(app: &mut Appender<'_>, c: &WholeContainer<'_>) -> duckdb::Result<()> {
    let (key, sk, i, s) = c;
    app.append_row(params![
        key,
        sk,
        i.node_name,
        i.cgroup_path,
        i.runtime,
        i.container_id,
        i.pod_uid,
        i.qos,
        i.unit,
        s.first_seen_unix_ns,
        s.last_seen_unix_ns,
        s.last_tick_unix_ns,
        s.samples_stored,
        s.cpu_limit_millicores,
        s.memory_limit_bytes,
        s.oom_kills_last,
        s.oom_kills_total,
    ])
}

const UPDATE_AGENTS: &str = "
UPDATE agents SET
    node_name = s.node_name, agent_version = s.agent_version, last_seq = s.last_seq,
    first_seen_unix_ns = s.first_seen_unix_ns, last_seen_unix_ns = s.last_seen_unix_ns,
    spool_dropped_batches_total = s.spool_dropped_batches_total,
    spool_dropped_bytes_total = s.spool_dropped_bytes_total,
    spool_pending_batches = s.spool_pending_batches,
    spool_pending_bytes = s.spool_pending_bytes, clock_skew_ns = s.clock_skew_ns,
    batches_stored = s.batches_stored, malformed_skips_total = s.malformed_skips_total,
    vanished_total = s.vanished_total
FROM temp.main.stage_agents s
WHERE agents.agent_id = s.agent_id";

const UPDATE_NODES: &str = "
UPDATE nodes SET
    agent_id = s.agent_id, cgroup_layout = s.cgroup_layout, cpu_count = s.cpu_count,
    memory_total_bytes = s.memory_total_bytes, boot_time_unix_s = s.boot_time_unix_s,
    first_seen_unix_ns = s.first_seen_unix_ns, last_seen_unix_ns = s.last_seen_unix_ns
FROM temp.main.stage_nodes s
WHERE nodes.node_name = s.node_name";

const UPDATE_CONTAINERS: &str = "
UPDATE containers SET
    node_name = s.node_name, cgroup_path = s.cgroup_path, runtime = s.runtime,
    container_id = s.container_id, pod_uid = s.pod_uid, qos = s.qos, unit = s.unit,
    first_seen_unix_ns = s.first_seen_unix_ns, last_seen_unix_ns = s.last_seen_unix_ns,
    last_tick_unix_ns = s.last_tick_unix_ns, samples_stored = s.samples_stored,
    cpu_limit_millicores = s.cpu_limit_millicores, memory_limit_bytes = s.memory_limit_bytes,
    oom_kills_last = s.oom_kills_last, oom_kills_total = s.oom_kills_total
FROM temp.main.stage_containers s
WHERE containers.container_sk = s.container_sk";

const UPDATE_CONTAINER_STATE: &str = "
UPDATE containers SET
    first_seen_unix_ns = s.first_seen_unix_ns, last_seen_unix_ns = s.last_seen_unix_ns,
    last_tick_unix_ns = s.last_tick_unix_ns, samples_stored = s.samples_stored,
    cpu_limit_millicores = s.cpu_limit_millicores, memory_limit_bytes = s.memory_limit_bytes,
    oom_kills_last = s.oom_kills_last, oom_kills_total = s.oom_kills_total
FROM temp.main.stage_container_state s
WHERE containers.container_sk = s.container_sk";

/// Rows in key order. Order matters to DuckDB: an `UPDATE` whose rows come
/// in the table's physical order (new rows are appended in the same order)
/// takes milliseconds for 50,000 rows; in hash-map order it takes seconds
/// once the rows carry earlier updates.
fn sorted<'a, R, K: Ord>(rows: impl Iterator<Item = &'a R>, key: impl Fn(&R) -> K) -> Vec<&'a R> {
    let mut rows: Vec<&R> = rows.collect();
    rows.sort_by_cached_key(|r| key(r));
    rows
}

/// Appends `rows` to `table` (in the temp catalog when `temp`) and flushes
/// explicitly: a flush error must fail the transaction, not vanish in Drop.
fn append_rows<R>(
    conn: &Connection,
    table: &'static str,
    temp: bool,
    rows: &[&R],
    append: impl Fn(&mut Appender<'_>, &R) -> duckdb::Result<()>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let failed = |source| StoreError::Append { table, source };
    let mut app = if temp {
        conn.appender_to_catalog_and_db(table, "temp", "main")
    } else {
        conn.appender(table)
    }
    .map_err(failed)?;
    for row in rows {
        append(&mut app, row).map_err(failed)?;
    }
    app.flush().map_err(failed)
}

/// Runs a statement prepared once per connection: every ingest runs the
/// same few, and parsing and planning them again costs more than running
/// them on a small group.
fn execute_cached(conn: &Connection, sql: &str) -> duckdb::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// Replaces the staging table's content with `rows` and runs `update`.
fn update_from_stage<R>(
    conn: &Connection,
    stage: &'static str,
    update: &str,
    rows: &[&R],
    append: impl Fn(&mut Appender<'_>, &R) -> duckdb::Result<()>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    execute_cached(conn, &format!("DELETE FROM temp.main.{stage}")).map_err(|source| {
        StoreError::Ingest {
            step: "clear a staging table",
            source,
        }
    })?;
    append_rows(conn, stage, true, rows, append)?;
    execute_cached(conn, update).map_err(|source| StoreError::Ingest {
        step: "update a dimension table",
        source,
    })?;
    Ok(())
}

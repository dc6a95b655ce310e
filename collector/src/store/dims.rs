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
//!
//! Write-behind: new rows (a new agent, node or container) and a
//! container's changed identity are written in the ingest that brings them,
//! so every stored sample has its `containers` row. The state every batch
//! moves (last seen, counts, limits, OOM totals, last seq) is written at
//! most once per flush interval (see `Store::set_dims_flush_interval`):
//! updating thousands of rows in every transaction was more than half of
//! the writer's time. Each flush also records the collector time of the
//! newest ledger row it covers (`dims_flush`). Memory is always current,
//! so ingest and the `Welcome` never read the lag; readers of the tables
//! see state up to one interval old.
//!
//! After a crash, opening the store rebuilds what the last flush missed
//! ([`Dims::recover`]) from what every ingest committed: the ledger rows
//! received after the flush (agents' last seq, counts and last seen;
//! nodes' latest tick) and the samples newer than each container's stored
//! last sample (its count, limits, OOM total). Samples replayed out of
//! order (older than the container's newest) in that last interval are
//! stored but not counted in `samples_stored`.

use std::collections::{HashMap, HashSet};
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

impl ContainerState {
    /// Takes a sample at `ts_unix_ns`, at or after the newest one, as the
    /// latest facts: last seen, limits, and the OOM counter's increase.
    pub fn record_latest(
        &mut self,
        ts_unix_ns: i64,
        cpu_limit_millicores: Option<u64>,
        memory_limit_bytes: Option<u64>,
        oom_kills: Option<u64>,
    ) {
        self.last_seen_unix_ns = ts_unix_ns;
        self.cpu_limit_millicores = cpu_limit_millicores;
        self.memory_limit_bytes = memory_limit_bytes;
        if let Some(oom_kills) = oom_kills {
            let increase = match self.oom_kills_last {
                Some(last) if oom_kills >= last => oom_kills - last,
                // First sample, or the counter reset: the new value is what
                // accumulated since the cgroup was (re)created.
                _ => oom_kills,
            };
            self.oom_kills_total = self.oom_kills_total.saturating_add(increase);
            self.oom_kills_last = Some(oom_kills);
        }
    }
}

/// What [`Dims::recover`] rebuilt.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Ledger rows received after the last flush.
    pub batches: u64,
    /// Container samples newer than their container's stored state.
    pub container_samples: u64,
    /// Newest collector time among those ledger rows (`i64::MIN` when
    /// none).
    pub last_received_unix_ns: i64,
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
    /// Rows whose committed state is newer than their stored row.
    pub dirty: Dirty,
}

/// How much older than its batch's tick a container sample may be, at
/// most, for recovery: an agent samples its node and containers within
/// one tick loop, which takes milliseconds.
const RECOVERY_SLACK_NS: i64 = 10 * 60 * 1_000_000_000;

/// Keys of rows whose state in memory is newer than in their table.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub agents: HashSet<String>,
    pub nodes: HashSet<String>,
    pub containers: HashSet<String>,
}

impl Dirty {
    /// True when every row is stored as it is in memory.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.nodes.is_empty() && self.containers.is_empty()
    }
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

    /// The watermark of the last flush: the dimension tables hold what
    /// every ledger row received up to it stored.
    pub fn load_watermark(conn: &Connection) -> Result<i64, StoreError> {
        conn.query_row(
            "SELECT coalesce(max(flushed_received_unix_ns), -9223372036854775808) FROM dims_flush",
            [],
            |r| r.get(0),
        )
        .map_err(|source| StoreError::Load {
            table: "dims_flush",
            source,
        })
    }

    /// Rebuilds in memory what ingests committed after the last flush (at
    /// `watermark_unix_ns`) and marks those rows dirty: a crash left their
    /// stored state behind. See the module documentation for what is
    /// rebuilt from where.
    pub fn recover(
        &mut self,
        conn: &Connection,
        watermark_unix_ns: i64,
    ) -> Result<Recovered, StoreError> {
        let mut recovered = Recovered {
            last_received_unix_ns: i64::MIN,
            ..Recovered::default()
        };
        let load = |table: &'static str| move |source| StoreError::Load { table, source };
        let mut stmt = conn
            .prepare(
                "SELECT agent_id, count(*), sum(malformed_skips)::UBIGINT, sum(vanished)::UBIGINT,
                        max(seq), min(received_unix_ns), max(received_unix_ns),
                        arg_max(node_name, seq), min(tick_unix_ns)
                 FROM batches WHERE received_unix_ns > ? GROUP BY agent_id",
            )
            .map_err(load("batches"))?;
        let rows = stmt
            .query_map(params![watermark_unix_ns], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, u64>(2)?,
                    r.get::<_, u64>(3)?,
                    r.get::<_, u64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            })
            .map_err(load("batches"))?;
        let mut oldest_tick = i64::MAX;
        for row in rows {
            let (agent_id, batches, malformed, vanished, seq, first, last, node, tick) =
                row.map_err(load("batches"))?;
            oldest_tick = oldest_tick.min(tick);
            recovered.batches += batches;
            recovered.last_received_unix_ns = recovered.last_received_unix_ns.max(last);
            let Some(agent) = self.agents.get_mut(&agent_id) else {
                // An agent's row is written with its first batch or hello.
                tracing::warn!(%agent_id, first_received_unix_ns = first, "ledger rows of an agent without a row in agents");
                continue;
            };
            agent.batches_stored += batches;
            agent.malformed_skips_total = agent.malformed_skips_total.saturating_add(malformed);
            agent.vanished_total = agent.vanished_total.saturating_add(vanished);
            agent.last_seen_unix_ns = agent.last_seen_unix_ns.max(last);
            if seq > agent.last_seq {
                agent.last_seq = seq;
                agent.node_name = node;
            }
            self.dirty.agents.insert(agent_id);
        }
        if recovered.batches == 0 {
            return Ok(recovered);
        }

        // Each node's latest tick among those batches, with its facts.
        let mut stmt = conn
            .prepare(
                "WITH latest AS (
                     SELECT node_name, max(tick_unix_ns) AS tick,
                            arg_max(agent_id, tick_unix_ns) AS agent_id
                     FROM batches WHERE received_unix_ns > ? GROUP BY node_name)
                 SELECT l.node_name, l.tick, l.agent_id, any_value(s.cpu_count),
                        any_value(s.memory_total_bytes), any_value(s.boot_time_unix_s)
                 FROM latest l LEFT JOIN node_samples s
                   ON s.node_name = l.node_name AND s.ts_unix_ns = l.tick
                 GROUP BY l.node_name, l.tick, l.agent_id",
            )
            .map_err(load("nodes"))?;
        let rows = stmt
            .query_map(params![watermark_unix_ns], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<u32>>(3)?,
                    r.get::<_, Option<u64>>(4)?,
                    r.get::<_, Option<u64>>(5)?,
                ))
            })
            .map_err(load("nodes"))?;
        let mut latest_tick: HashMap<String, i64> = HashMap::new();
        for row in rows {
            let (node_name, tick, agent_id, cpus, memory, boot) = row.map_err(load("nodes"))?;
            latest_tick.insert(node_name.clone(), tick);
            let Some(node) = self.nodes.get_mut(&node_name) else {
                // Every node's row is written with its first batch.
                continue;
            };
            if tick >= node.last_seen_unix_ns {
                node.last_seen_unix_ns = tick;
                node.agent_id = agent_id;
                node.cpu_count = cpus.unwrap_or(node.cpu_count);
                node.memory_total_bytes = memory.unwrap_or(node.memory_total_bytes);
                node.boot_time_unix_s = boot.unwrap_or(node.boot_time_unix_s);
                self.dirty.nodes.insert(node_name);
            }
        }

        // Samples newer than each container's stored newest one, in order.
        // They came in those batches, sampled in the same tick loop as
        // their node: never ten minutes before the oldest tick, a bound
        // that lets DuckDB skip every older row group.
        let by_sk: HashMap<u32, String> = self
            .containers
            .values()
            .map(|c| (c.container_sk, c.container_key.clone()))
            .collect();
        let mut stmt = conn
            .prepare(
                "SELECT s.container_sk, s.ts_unix_ns, s.cpu_limit_millicores,
                        s.memory_limit_bytes, s.memory_oom_kills
                 FROM container_samples s JOIN containers c USING (container_sk)
                 WHERE s.ts_unix_ns > c.last_seen_unix_ns AND s.ts_unix_ns >= ?
                 ORDER BY s.container_sk, s.ts_unix_ns",
            )
            .map_err(load("container_samples"))?;
        let since = oldest_tick.saturating_sub(RECOVERY_SLACK_NS);
        let rows = stmt
            .query_map(params![since], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<u64>>(2)?,
                    r.get::<_, Option<u64>>(3)?,
                    r.get::<_, Option<u64>>(4)?,
                ))
            })
            .map_err(load("container_samples"))?;
        for row in rows {
            let (sk, ts, cpu_limit, memory_limit, oom_kills) =
                row.map_err(load("container_samples"))?;
            let Some(row) = by_sk.get(&sk).and_then(|k| self.containers.get_mut(k)) else {
                continue;
            };
            recovered.container_samples += 1;
            let state = &mut row.state;
            state.samples_stored += 1;
            state.record_latest(ts, cpu_limit, memory_limit, oom_kills);
            // Taken to be in its node's latest batch: true unless it
            // vanished in the last interval before the crash, and the
            // node's next batch corrects that.
            if let Some(tick) = latest_tick.get(&row.identity.node_name) {
                state.last_tick_unix_ns = state.last_tick_unix_ns.max(*tick);
            }
            self.dirty.containers.insert(row.container_key.clone());
        }
        Ok(recovered)
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

    /// Makes committed changes the new state. `flushed`: the transaction
    /// wrote every changed and dirty row ([`DimChanges::write`] with a
    /// watermark); otherwise the rows it changed but did not write become
    /// dirty.
    pub fn apply(&mut self, changes: DimChanges, flushed: bool) {
        if flushed {
            self.dirty = Dirty::default();
        } else {
            for key in changes.agents.keys() {
                if self.agents.contains_key(key) {
                    self.dirty.agents.insert(key.clone());
                }
            }
            for key in changes.nodes.keys() {
                if self.nodes.contains_key(key) {
                    self.dirty.nodes.insert(key.clone());
                }
            }
            for (key, change) in &changes.containers {
                if !change.is_new && !change.identity_changed {
                    self.dirty.containers.insert(key.clone());
                }
            }
        }
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

    /// True when it adds an agent: its new row holds this change's
    /// counts, which recovery would add again from the ledger, so such a
    /// change must be written with a watermark.
    pub fn adds_agent(&self, dims: &Dims) -> bool {
        self.agents.keys().any(|k| !dims.agents.contains_key(k))
    }

    /// Writes inside the caller's transaction: new rows are appended to
    /// their table, and a container whose identity changed is rewritten
    /// whole (changed rows go to a temp staging table and are applied with
    /// one `UPDATE ... FROM`; DuckDB's `INSERT OR REPLACE` takes seconds for
    /// 50,000 existing rows, this takes milliseconds).
    ///
    /// With `flush_watermark`, also the state of every other changed row
    /// and of every row `dims` holds dirty, containers through a narrow
    /// staging table of their volatile columns, and the watermark: the
    /// collector time of the newest ledger row the written state covers.
    /// Every appender is flushed explicitly.
    pub fn write(
        &self,
        conn: &Connection,
        dims: &Dims,
        flush_watermark: Option<i64>,
    ) -> Result<(), StoreError> {
        let flush = flush_watermark.is_some();
        let agents = sorted(self.agents.values(), |a| a.agent_id.clone());
        let (old, new): (Vec<_>, Vec<_>) = agents
            .into_iter()
            .partition(|a| dims.agents.contains_key(&a.agent_id));
        append_rows(conn, "agents", false, &new, append_agent)?;
        if flush {
            let old = with_dirty(old, &dims.dirty.agents, &self.agents, &dims.agents, |a| {
                a.agent_id.clone()
            });
            update_from_stage(conn, "stage_agents", UPDATE_AGENTS, &old, append_agent)?;
        }

        let nodes = sorted(self.nodes.values(), |n| n.node_name.clone());
        let (old, new): (Vec<_>, Vec<_>) = nodes
            .into_iter()
            .partition(|n| dims.nodes.contains_key(&n.node_name));
        append_rows(conn, "nodes", false, &new, append_node)?;
        if flush {
            let old = with_dirty(old, &dims.dirty.nodes, &self.nodes, &dims.nodes, |n| {
                n.node_name.clone()
            });
            update_from_stage(conn, "stage_nodes", UPDATE_NODES, &old, append_node)?;
        }

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
            } else if flush {
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
        let Some(watermark) = flush_watermark else {
            return Ok(());
        };
        let unchanged_dirty = dims
            .dirty
            .containers
            .iter()
            .filter(|k| !self.containers.contains_key(*k))
            .filter_map(|k| dims.containers.get(k));
        let before = moved.len();
        moved.extend(unchanged_dirty.map(|row| (row.container_sk, row.state)));
        if moved.len() > before {
            moved.sort_unstable_by_key(|(sk, _)| *sk);
        }
        stage_container_states(conn, &moved)?;
        write_watermark(conn, watermark)
    }
}

/// `changed` rows plus the dirty rows of `committed` this change does not
/// touch, in key order.
fn with_dirty<'a, R, K: Ord>(
    mut changed: Vec<&'a R>,
    dirty: &HashSet<String>,
    in_change: &HashMap<String, R>,
    committed: &'a HashMap<String, R>,
    key: impl Fn(&R) -> K,
) -> Vec<&'a R> {
    let before = changed.len();
    changed.extend(
        dirty
            .iter()
            .filter(|k| !in_change.contains_key(*k))
            .filter_map(|k| committed.get(k)),
    );
    if changed.len() > before {
        changed.sort_by_cached_key(|r| key(r));
    }
    changed
}

/// Records that the dimension tables hold what every ledger row received
/// up to `watermark_unix_ns` stored.
fn write_watermark(conn: &Connection, watermark_unix_ns: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE dims_flush SET flushed_received_unix_ns = ?")
        .and_then(|mut stmt| stmt.execute(params![watermark_unix_ns]))
        .map_err(|source| StoreError::Ingest {
            step: "record the dimension flush",
            source,
        })?;
    Ok(())
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

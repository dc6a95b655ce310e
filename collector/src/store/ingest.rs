//! Exactly-once ingest: a slice of batches, one transaction, acknowledged
//! only after COMMIT.
//!
//! For each batch of the slice, in order:
//! 1. validate it (outside any transaction, so a bad batch is answered
//!    [`IngestOutcome::Rejected`] without failing the others of the group);
//! 2. skip it as [`IngestOutcome::Duplicate`] if its `(agent_id, seq)` is in
//!    the `batches` ledger or earlier in the same slice, and as
//!    [`IngestOutcome::Expired`] if retention already dropped what it would
//!    add to (see [`super::retention`]);
//! 3. otherwise append its ledger row and samples with DuckDB Appenders and
//!    fold it into the dimension rows (see [`super::dims`]).
//!
//! Then every Appender is flushed explicitly and its error checked (an error
//! in the implicit flush on drop would be lost, and DuckDB then happily
//! commits a transaction without those rows), the dimensions are upserted,
//! and the transaction commits. Appender rows go into the connection's open
//! transaction, so any error before COMMIT rolls back the whole slice: the
//! agents replay it and nothing is half-stored.

use std::borrow::Cow;
use std::collections::HashSet;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use duckdb::arrow::array::{
    Array, ArrayRef, Int64Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use duckdb::arrow::compute::concat;
use duckdb::arrow::datatypes::{Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Connection, params};
use upid::wire::v1::{Batch, CgroupIdentity, Hello, NetworkSample, NodeSample, Snapshot};

use super::dims::{
    AgentRow, ContainerChange, ContainerIdentity, ContainerState, DimChanges, Dims, NodeRow,
};
use super::prepare::{PreparedBatch, SampleFold};
use super::schema::names;
use super::{Store, StoreError, unix_now_ns};

/// What became of one batch of an ingest slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored and committed: safe to acknowledge.
    Stored {
        /// Container samples stored.
        container_samples: usize,
        /// Network samples stored.
        network_samples: usize,
    },
    /// Its `(agent_id, seq)` was already stored: nothing written, still safe
    /// to acknowledge.
    Duplicate,
    /// Malformed: not stored; the agent must not expect an ack for it.
    Rejected(RejectReason),
    /// Older than retention keeps agent samples: its tick is before the
    /// raw horizon, or its seq is at or below the highest one whose ledger
    /// row retention dropped (so it may have been stored before). Not
    /// stored, so a very late replay can never store a batch twice nor
    /// make the rollup rebuild minutes whose samples are gone; safe to
    /// acknowledge.
    Expired,
}

/// Why a batch was rejected (the agent sent something that cannot be stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// `agent_id` is empty.
    #[error("agent_id is empty")]
    EmptyAgentId,
    /// `seq` is 0; sequence numbers start at 1.
    #[error("seq is 0; sequence numbers start at 1")]
    ZeroSeq,
    /// `node_name` is empty.
    #[error("node_name is empty")]
    EmptyNodeName,
    /// `snapshot` is absent.
    #[error("snapshot is missing")]
    MissingSnapshot,
    /// `snapshot.node` is absent.
    #[error("snapshot.node is missing")]
    MissingNodeSample,
    /// The batch and its node sample name different nodes.
    #[error("node_name {batch:?} differs from snapshot.node.node_name {snapshot:?}")]
    NodeNameMismatch {
        /// `Batch.node_name`.
        batch: String,
        /// `Snapshot.node.node_name`.
        snapshot: String,
    },
    /// The node sample's timestamp is not after the Unix epoch.
    #[error("snapshot.node.timestamp_unix_ns {0} is not after the Unix epoch")]
    NodeTimestamp(i64),
    /// A container sample has no identity.
    #[error("snapshot.containers[{index}] has no identity")]
    ContainerWithoutIdentity {
        /// Index in `Snapshot.containers`.
        index: usize,
    },
    /// A container sample has an empty cgroup path.
    #[error("snapshot.containers[{index}] has an empty cgroup_path")]
    EmptyCgroupPath {
        /// Index in `Snapshot.containers`.
        index: usize,
    },
    /// A container sample's timestamp is not after the Unix epoch.
    #[error("snapshot.containers[{index}].timestamp_unix_ns {ts} is not after the Unix epoch")]
    ContainerTimestamp {
        /// Index in `Snapshot.containers`.
        index: usize,
        /// The timestamp received.
        ts: i64,
    },
}

/// The parts of a prepared batch validation guarantees.
struct Valid<'a> {
    prepared: &'a PreparedBatch,
    batch: &'a Batch,
    snapshot: &'a Snapshot,
    node: &'a NodeSample,
}

impl<'a> Valid<'a> {
    /// The parts of `prepared`, or why it cannot be stored.
    fn of(prepared: &'a PreparedBatch) -> Result<Valid<'a>, RejectReason> {
        prepared.verdict.clone()?;
        let batch = &prepared.batch;
        let snapshot = batch
            .snapshot
            .as_ref()
            .ok_or(RejectReason::MissingSnapshot)?;
        let node = snapshot
            .node
            .as_ref()
            .ok_or(RejectReason::MissingNodeSample)?;
        Ok(Valid {
            prepared,
            batch,
            snapshot,
            node,
        })
    }
}

/// Checks what storing `batch` needs (its container samples included).
pub(crate) fn validate(batch: &Batch) -> Result<(), RejectReason> {
    if batch.agent_id.is_empty() {
        return Err(RejectReason::EmptyAgentId);
    }
    if batch.seq == 0 {
        return Err(RejectReason::ZeroSeq);
    }
    if batch.node_name.is_empty() {
        return Err(RejectReason::EmptyNodeName);
    }
    let snapshot = batch
        .snapshot
        .as_ref()
        .ok_or(RejectReason::MissingSnapshot)?;
    let node = snapshot
        .node
        .as_ref()
        .ok_or(RejectReason::MissingNodeSample)?;
    if !node.node_name.is_empty() && node.node_name != batch.node_name {
        return Err(RejectReason::NodeNameMismatch {
            batch: batch.node_name.clone(),
            snapshot: node.node_name.clone(),
        });
    }
    if node.timestamp_unix_ns <= 0 {
        return Err(RejectReason::NodeTimestamp(node.timestamp_unix_ns));
    }
    for (index, c) in snapshot.containers.iter().enumerate() {
        let identity = c
            .identity
            .as_ref()
            .ok_or(RejectReason::ContainerWithoutIdentity { index })?;
        if identity.cgroup_path.is_empty() {
            return Err(RejectReason::EmptyCgroupPath { index });
        }
        if c.timestamp_unix_ns <= 0 {
            return Err(RejectReason::ContainerTimestamp {
                index,
                ts: c.timestamp_unix_ns,
            });
        }
    }
    Ok(())
}

/// The key of a container in `containers`: its full id when it has one, else
/// `<node>:<cgroup_path>` (services and glob matches have no id).
pub(crate) fn container_key<'a>(
    node_name: &str,
    container_id: &'a str,
    cgroup_path: &str,
) -> Cow<'a, str> {
    if container_id.is_empty() {
        Cow::Owned(format!("{node_name}:{cgroup_path}"))
    } else {
        Cow::Borrowed(container_id)
    }
}

impl Store {
    /// Stores `batches` in one transaction, stamped with the collector's
    /// clock; see [`Store::ingest_at`].
    pub fn ingest(&mut self, batches: &[Batch]) -> Result<Vec<IngestOutcome>, StoreError> {
        self.ingest_at(batches, unix_now_ns())
    }

    /// Stores `batches` in one transaction (group commit) and returns one
    /// outcome per batch, in order.
    ///
    /// `Ok` means every [`IngestOutcome::Stored`] batch is committed, so it
    /// (and every `Duplicate`) may be acknowledged. `Err` means nothing of the
    /// slice was stored. `received_unix_ns` is the collector's clock, recorded
    /// in the ledger and as the agents' last-seen time.
    pub fn ingest_at(
        &mut self,
        batches: &[Batch],
        received_unix_ns: i64,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let prepared: Vec<PreparedBatch> =
            batches.iter().cloned().map(PreparedBatch::new).collect();
        self.ingest_prepared_at(&prepared, received_unix_ns)
    }

    /// [`Store::ingest_at`] for batches already prepared (what the writer
    /// thread runs: the preparation happened on the threads that received
    /// the batches).
    pub fn ingest_prepared_at(
        &mut self,
        batches: &[PreparedBatch],
        received_unix_ns: i64,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut accepted = Vec::new();
        let mut in_slice: HashSet<(&str, u64)> = HashSet::new();
        for prepared in batches {
            let valid = match Valid::of(prepared) {
                Ok(v) => v,
                Err(reason) => {
                    outcomes.push(IngestOutcome::Rejected(reason));
                    continue;
                }
            };
            let batch = valid.batch;
            if !in_slice.insert((batch.agent_id.as_str(), batch.seq)) {
                outcomes.push(IngestOutcome::Duplicate);
                continue;
            }
            match ledger_state(&self.conn, &self.dims, &batch.agent_id, batch.seq)? {
                Ledger::Stored => {
                    outcomes.push(IngestOutcome::Duplicate);
                    continue;
                }
                Ledger::Pruned => {
                    outcomes.push(IngestOutcome::Expired);
                    continue;
                }
                Ledger::New => {}
            }
            if valid.node.timestamp_unix_ns < self.raw_horizon_unix_ns() {
                outcomes.push(IngestOutcome::Expired);
                continue;
            }
            // Replaced below once stored.
            outcomes.push(IngestOutcome::Duplicate);
            accepted.push((outcomes.len() - 1, valid));
        }
        if accepted.is_empty() {
            return Ok(outcomes);
        }

        let flush = &mut self.dims_flush;
        let received_unix_ns = if flush.interval.is_zero() {
            received_unix_ns
        } else {
            received_unix_ns.max(flush.last_received_unix_ns.saturating_add(1))
        };
        let watermark = flush.last_received_unix_ns.max(received_unix_ns);
        let mut changes = self.dims.begin();
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Ingest {
                step: "begin",
                source,
            })?;
        let mut flushed = false;
        let written = append_all(&tx, &self.dims, &mut changes, &accepted, received_unix_ns)
            .and_then(|counts| {
                let flush = &self.dims_flush;
                let held = flush.hold.load(std::sync::atomic::Ordering::SeqCst);
                flushed = flush.interval.is_zero()
                    || (!held && flush.last.elapsed() >= flush.interval)
                    || changes.adds_agent(&self.dims);
                changes
                    .write(&tx, &self.dims, flushed.then_some(watermark))
                    .map(|()| counts)
            })
            .and_then(|counts| {
                for (_, v) in &accepted {
                    if let Some(inventory) = &v.batch.inventory {
                        super::inventory::store(
                            &tx,
                            &v.batch.agent_id,
                            &v.batch.node_name,
                            inventory,
                            received_unix_ns,
                        )?;
                    }
                }
                Ok(counts)
            });
        let counts = match written {
            Ok(counts) => counts,
            Err(e) => {
                if let Err(rollback) = tx.rollback() {
                    tracing::warn!(error = %rollback, "rollback after a failed ingest");
                }
                return Err(e);
            }
        };
        tx.commit().map_err(|source| StoreError::Commit {
            batches: accepted.len(),
            source,
        })?;
        self.dims.apply(changes, flushed);
        self.dims_flush.last_received_unix_ns = watermark;
        if flushed {
            self.dims_flush.last = std::time::Instant::now();
        }
        for ((index, _), (container_samples, network_samples)) in accepted.iter().zip(counts) {
            outcomes[*index] = IngestOutcome::Stored {
                container_samples,
                network_samples,
            };
        }
        Ok(outcomes)
    }

    /// Records an agent's hello (version, clock skew against
    /// `received_unix_ns`) and returns its last stored seq for the Welcome.
    pub fn record_hello(
        &mut self,
        hello: &Hello,
        received_unix_ns: i64,
    ) -> Result<u64, StoreError> {
        if hello.agent_id.is_empty() {
            return Err(StoreError::HelloWithoutAgentId);
        }
        let mut changes = self.dims.begin();
        let agent = changes.agent(&self.dims, &hello.agent_id, || {
            AgentRow::new(&hello.agent_id, &hello.node_name, received_unix_ns)
        });
        if !hello.agent_version.is_empty() {
            agent.agent_version = Some(hello.agent_version.clone());
        }
        if !hello.node_name.is_empty() {
            agent.node_name.clone_from(&hello.node_name);
        }
        if hello.sent_unix_ns > 0 {
            agent.clock_skew_ns = Some(hello.sent_unix_ns.saturating_sub(received_unix_ns));
        }
        agent.last_seen_unix_ns = agent.last_seen_unix_ns.max(received_unix_ns);
        let last_seq = agent.last_seq;

        // Written with everything held back: a new agent's row must not
        // be ahead of the watermark (see `DimChanges::adds_agent`).
        self.write_dims_with_held_back(changes, "begin hello")?;
        Ok(last_seq)
    }
}

/// What the ledger knows of a batch.
enum Ledger {
    /// Never stored.
    New,
    /// In the ledger: stored.
    Stored,
    /// Not in the ledger, at or below the highest seq retention dropped
    /// from it: may have been stored.
    Pruned,
}

/// What the ledger knows of `(agent_id, seq)`. Anything above the agent's
/// highest stored seq is new without asking DuckDB (the common case).
fn ledger_state(
    conn: &Connection,
    dims: &Dims,
    agent_id: &str,
    seq: u64,
) -> Result<Ledger, StoreError> {
    if seq > dims.last_seq(agent_id) {
        return Ok(Ledger::New);
    }
    let found: Option<i32> = conn
        .prepare_cached("SELECT 1 FROM batches WHERE agent_id = ? AND seq = ?")
        .and_then(|mut stmt| {
            let mut rows = stmt.query(params![agent_id, seq])?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })
        .map_err(|source| StoreError::Ingest {
            step: "look up the ledger",
            source,
        })?;
    if found.is_some() {
        return Ok(Ledger::Stored);
    }
    let pruned: Option<u64> = conn
        .prepare_cached("SELECT pruned_through_seq FROM ledger_horizon WHERE agent_id = ?")
        .and_then(|mut stmt| {
            let mut rows = stmt.query(params![agent_id])?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })
        .map_err(|source| StoreError::Ingest {
            step: "look up the ledger horizon",
            source,
        })?;
    Ok(match pruned {
        Some(through) if seq <= through => Ledger::Pruned,
        _ => Ledger::New,
    })
}

/// Appends every accepted batch and flushes; returns (container, network)
/// sample counts per batch.
fn append_all(
    conn: &Connection,
    dims: &Dims,
    changes: &mut DimChanges,
    accepted: &[(usize, Valid<'_>)],
    received_unix_ns: i64,
) -> Result<Vec<(usize, usize)>, StoreError> {
    let appender = |table: &'static str| {
        conn.appender(table)
            .map_err(|source| StoreError::Append { table, source })
    };
    let mut ledger = appender("batches")?;
    let mut nodes = appender("node_samples")?;
    let container_rows: usize = accepted.iter().map(|(_, v)| v.prepared.samples.len()).sum();
    let network_rows: usize = accepted
        .iter()
        .map(|(_, v)| v.snapshot.networks.len())
        .sum();
    let mut sks = UInt32Builder::with_capacity(container_rows);
    let mut networks = NetworkColumns::with_capacity(network_rows);
    let mut counts = Vec::with_capacity(accepted.len());

    for (_, v) in accepted {
        let b = v.batch;
        let tick = v.node.timestamp_unix_ns;
        let samples = &v.prepared.samples;
        ledger
            .append_row(params![
                b.agent_id,
                b.seq,
                received_unix_ns,
                b.node_name,
                tick,
                u32::try_from(samples.len()).unwrap_or(u32::MAX),
                u32::try_from(v.snapshot.networks.len()).unwrap_or(u32::MAX),
                v.snapshot.malformed_skips,
                v.snapshot.vanished,
            ])
            .map_err(|source| StoreError::Append {
                table: "batches",
                source,
            })?;
        append_node(&mut nodes, v.node).map_err(|source| StoreError::Append {
            table: "node_samples",
            source,
        })?;
        for sample in samples {
            sks.append_value(fold_container(dims, changes, &b.node_name, tick, sample)?);
        }
        for n in &v.snapshot.networks {
            networks.push(&b.node_name, tick, n);
        }
        fold_agent_and_node(dims, changes, v, received_unix_ns);
        counts.push((samples.len(), v.snapshot.networks.len()));
    }

    append_columns(conn, "container_samples", container_columns(sks, accepted))?;
    append_columns(conn, "network_samples", networks.finish())?;

    // Explicit flushes: their errors (constraint violations, I/O) must fail
    // the transaction, not vanish in Drop.
    for (table, app) in [("batches", &mut ledger), ("node_samples", &mut nodes)] {
        app.flush()
            .map_err(|source| StoreError::Append { table, source })?;
    }
    Ok(counts)
}

/// The `container_samples` rows of the accepted batches as one record
/// batch: the surrogate keys the writer assigned, then every prepared
/// column, concatenated batch after batch. `None` when there are no rows.
fn container_columns(
    mut sks: UInt32Builder,
    accepted: &[(usize, Valid<'_>)],
) -> Result<Option<RecordBatch>, duckdb::arrow::error::ArrowError> {
    let sks = sks.finish();
    if sks.is_empty() {
        return Ok(None);
    }
    let with_rows: Vec<&PreparedBatch> = accepted
        .iter()
        .map(|(_, v)| v.prepared)
        .filter(|p| !p.samples.is_empty())
        .collect();
    let width = CONTAINER_SAMPLE_COLUMNS.len() - 1;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(CONTAINER_SAMPLE_COLUMNS.len());
    columns.push(Arc::new(sks));
    for i in 0..width {
        let parts: Vec<&dyn Array> = with_rows
            .iter()
            .map(|p| p.columns.get(i).map(|c| c.as_ref()))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                duckdb::arrow::error::ArrowError::SchemaError(format!(
                    "a prepared batch lacks container_samples column {}",
                    i + 1
                ))
            })?;
        columns.push(if parts.len() == 1 {
            Arc::clone(&with_rows[0].columns[i])
        } else {
            concat(&parts)?
        });
    }
    record_batch(&CONTAINER_SAMPLE_COLUMNS, columns).map(Some)
}

fn append_node(app: &mut duckdb::Appender<'_>, n: &NodeSample) -> duckdb::Result<()> {
    let psi = n.pressure.as_ref();
    let cpu = psi.and_then(|p| p.cpu.as_ref());
    let mem = psi.and_then(|p| p.memory.as_ref());
    let io = psi.and_then(|p| p.io.as_ref());
    app.append_row(params![
        n.node_name,
        n.timestamp_unix_ns,
        n.boot_time_unix_s,
        n.cpu_count,
        n.cpu_total_ns,
        n.cpu_idle_ns,
        n.memory_total_bytes,
        n.memory_available_bytes,
        n.load1,
        n.load5,
        n.load15,
        cpu.map(|s| s.some_total_us),
        cpu.and_then(|s| s.full_total_us),
        mem.map(|s| s.some_total_us),
        mem.and_then(|s| s.full_total_us),
        io.map(|s| s.some_total_us),
        io.and_then(|s| s.full_total_us),
    ])
}

/// Appends one Arrow record batch to `table` and flushes: a whole column
/// at a time, where `append_row` costs a C call and several allocations
/// per value.
fn append_columns(
    conn: &Connection,
    table: &'static str,
    columns: Result<Option<RecordBatch>, duckdb::arrow::error::ArrowError>,
) -> Result<(), StoreError> {
    let failed = |source| StoreError::Append { table, source };
    let columns =
        columns.map_err(|e| failed(duckdb::Error::ToSqlConversionFailure(Box::new(e))))?;
    let Some(columns) = columns else {
        return Ok(());
    };
    let mut app = conn.appender(table).map_err(failed)?;
    app.append_record_batch(columns).map_err(failed)?;
    app.flush().map_err(failed)
}

/// Columns of `container_samples` in table order: the two keys, the
/// `UBIGINT`s up to `memory_peak_bytes`, `memory_peak_source`, the
/// `UBIGINT`s after it (see `prepare`); [`record_batch`] checks the count.
pub(crate) const CONTAINER_SAMPLE_COLUMNS: [&str; 32] = [
    "container_sk",
    "ts_unix_ns",
    "cpu_usage_ns",
    "cpu_user_ns",
    "cpu_system_ns",
    "cpu_periods",
    "cpu_throttled_periods",
    "cpu_throttled_ns",
    "cpu_limit_millicores",
    "cpu_shares",
    "memory_usage_bytes",
    "memory_working_set_bytes",
    "memory_rss_bytes",
    "memory_cache_bytes",
    "memory_swap_bytes",
    "memory_limit_bytes",
    "memory_peak_bytes",
    "memory_peak_source",
    "memory_oom_kills",
    "io_read_bytes",
    "io_write_bytes",
    "io_read_ops",
    "io_write_ops",
    "pids_current",
    "pids_limit",
    "psi_cpu_some_total_us",
    "psi_cpu_full_total_us",
    "psi_memory_some_total_us",
    "psi_memory_full_total_us",
    "psi_io_some_total_us",
    "psi_io_full_total_us",
    "netns_inode",
];

/// `UBIGINT` columns before `memory_peak_source`.
pub(crate) const HEAD_U64: usize = 15;
/// `UBIGINT` columns after `memory_peak_source`.
pub(crate) const TAIL_U64: usize = 14;

/// A record batch whose fields are named `names`, typed as `columns` are.
fn record_batch(
    names: &[&str],
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch, duckdb::arrow::error::ArrowError> {
    if names.len() != columns.len() {
        return Err(duckdb::arrow::error::ArrowError::SchemaError(format!(
            "{} column names for {} columns",
            names.len(),
            columns.len()
        )));
    }
    let fields: Vec<Field> = names
        .iter()
        .zip(&columns)
        .map(|(name, column)| Field::new(*name, column.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Columns of `network_samples` in table order.
pub(crate) const NETWORK_SAMPLE_COLUMNS: [&str; 9] = [
    "node_name",
    "netns_inode",
    "ts_unix_ns",
    "rx_bytes",
    "tx_bytes",
    "rx_packets",
    "tx_packets",
    "rx_dropped",
    "tx_dropped",
];

/// The `network_samples` rows of one ingest, column by column.
struct NetworkColumns {
    rows: usize,
    node_name: StringBuilder,
    netns_inode: UInt64Builder,
    ts: Int64Builder,
    counters: [UInt64Builder; 6],
}

impl NetworkColumns {
    fn with_capacity(rows: usize) -> NetworkColumns {
        NetworkColumns {
            rows: 0,
            node_name: StringBuilder::with_capacity(rows, rows * 16),
            netns_inode: UInt64Builder::with_capacity(rows),
            ts: Int64Builder::with_capacity(rows),
            counters: std::array::from_fn(|_| UInt64Builder::with_capacity(rows)),
        }
    }

    fn push(&mut self, node_name: &str, tick_unix_ns: i64, n: &NetworkSample) {
        self.rows += 1;
        self.node_name.append_value(node_name);
        self.netns_inode.append_value(n.netns_inode);
        self.ts.append_value(tick_unix_ns);
        let counters = [
            n.rx_bytes,
            n.tx_bytes,
            n.rx_packets,
            n.tx_packets,
            n.rx_dropped,
            n.tx_dropped,
        ];
        for (column, value) in self.counters.iter_mut().zip(counters) {
            column.append_value(value);
        }
    }

    /// The record batch, `None` when empty.
    fn finish(mut self) -> Result<Option<RecordBatch>, duckdb::arrow::error::ArrowError> {
        if self.rows == 0 {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.node_name.finish()),
            Arc::new(self.netns_inode.finish()),
            Arc::new(self.ts.finish()),
        ];
        columns.extend(
            self.counters
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        record_batch(&NETWORK_SAMPLE_COLUMNS, columns).map(Some)
    }
}

fn allocate_sk(next_sk: &mut u32) -> Result<u32, StoreError> {
    let sk = *next_sk;
    *next_sk = sk
        .checked_add(1)
        .ok_or(StoreError::ContainerKeysExhausted)?;
    Ok(sk)
}

fn set_if_changed(slot: &mut Option<String>, value: Option<&str>) {
    if slot.as_deref() != value {
        *slot = value.map(str::to_owned);
    }
}

fn non_empty(s: &str) -> Option<&str> {
    if s.is_empty() { None } else { Some(s) }
}

/// Folds one container sample into its dimension row; returns its
/// surrogate key (a new one for a container never seen).
///
/// Per sample this costs one hash lookup and a few comparisons; only a
/// container's first sample in an ingest copies its state (and the key),
/// and only a new or renamed container allocates its identity.
fn fold_container(
    dims: &Dims,
    changes: &mut DimChanges,
    node_name: &str,
    tick_unix_ns: i64,
    sample: &SampleFold,
) -> Result<u32, StoreError> {
    let identity = &sample.identity;
    let key = container_key(node_name, &identity.container_id, &identity.cgroup_path);
    let ts = sample.timestamp_unix_ns;
    let change = match changes.containers.get_mut(&*key) {
        Some(change) => change,
        None => {
            let change = match dims.containers.get(&*key) {
                Some(row) => ContainerChange {
                    sk: row.container_sk,
                    is_new: false,
                    identity_changed: false,
                    identity: Arc::clone(&row.identity),
                    state: row.state,
                },
                None => ContainerChange {
                    sk: allocate_sk(&mut changes.next_sk)?,
                    is_new: true,
                    identity_changed: false,
                    identity: Arc::new(container_identity(node_name, identity)),
                    state: ContainerState {
                        first_seen_unix_ns: ts,
                        last_seen_unix_ns: ts,
                        last_tick_unix_ns: tick_unix_ns,
                        samples_stored: 0,
                        cpu_limit_millicores: None,
                        memory_limit_bytes: None,
                        oom_kills_last: None,
                        oom_kills_total: 0,
                    },
                },
            };
            changes.containers.entry(key.into_owned()).or_insert(change)
        }
    };
    let state = &mut change.state;
    state.samples_stored += 1;
    state.first_seen_unix_ns = state.first_seen_unix_ns.min(ts);
    state.last_tick_unix_ns = state.last_tick_unix_ns.max(tick_unix_ns);
    // Only the newest sample updates the latest facts; a late, older sample
    // (replayed out of order) is stored but cannot be placed in the OOM sum.
    if ts >= state.last_seen_unix_ns {
        state.record_latest(
            ts,
            sample.cpu_limit_millicores,
            sample.memory_limit_bytes,
            sample.oom_kills,
        );
        if !same_identity(&change.identity, node_name, identity) {
            // The container id is part of the key: it never changes.
            change.identity = Arc::new(ContainerIdentity {
                container_id: change.identity.container_id.clone(),
                ..container_identity(node_name, identity)
            });
            change.identity_changed = !change.is_new;
        }
    }
    Ok(change.sk)
}

/// The stored identity of a container sample's cgroup on `node_name`.
fn container_identity(node_name: &str, identity: &CgroupIdentity) -> ContainerIdentity {
    ContainerIdentity {
        node_name: node_name.to_owned(),
        cgroup_path: identity.cgroup_path.clone(),
        runtime: names::runtime(identity.runtime).map(str::to_owned),
        container_id: non_empty(&identity.container_id).map(str::to_owned),
        pod_uid: non_empty(&identity.pod_uid).map(str::to_owned),
        qos: names::qos(identity.qos).map(str::to_owned),
        unit: non_empty(&identity.unit).map(str::to_owned),
    }
}

/// Whether `stored` already says what a sample's identity says (the
/// container id excepted: it is part of the key).
fn same_identity(stored: &ContainerIdentity, node_name: &str, identity: &CgroupIdentity) -> bool {
    stored.node_name == node_name
        && stored.cgroup_path == identity.cgroup_path
        && stored.runtime.as_deref() == names::runtime(identity.runtime)
        && stored.pod_uid.as_deref() == non_empty(&identity.pod_uid)
        && stored.qos.as_deref() == names::qos(identity.qos)
        && stored.unit.as_deref() == non_empty(&identity.unit)
}

fn fold_agent_and_node(
    dims: &Dims,
    changes: &mut DimChanges,
    v: &Valid<'_>,
    received_unix_ns: i64,
) {
    let b = v.batch;
    let agent = changes.agent(dims, &b.agent_id, || {
        AgentRow::new(&b.agent_id, &b.node_name, received_unix_ns)
    });
    agent.last_seen_unix_ns = agent.last_seen_unix_ns.max(received_unix_ns);
    agent.batches_stored += 1;
    agent.malformed_skips_total = agent
        .malformed_skips_total
        .saturating_add(v.snapshot.malformed_skips);
    agent.vanished_total = agent.vanished_total.saturating_add(v.snapshot.vanished);
    // Spool stats are cumulative on the agent: the highest seq has the news.
    if b.seq > agent.last_seq {
        agent.last_seq = b.seq;
        if agent.node_name != b.node_name {
            agent.node_name.clone_from(&b.node_name);
        }
        if let Some(s) = b.spool.as_ref() {
            agent.spool_dropped_batches_total = s.dropped_batches_total;
            agent.spool_dropped_bytes_total = s.dropped_bytes_total;
            agent.spool_pending_batches = s.pending_batches;
            agent.spool_pending_bytes = s.pending_bytes;
        }
    }

    let n = v.node;
    let tick = n.timestamp_unix_ns;
    let layout = names::cgroup_layout(n.cgroup_layout);
    let row =
        match changes.nodes.entry(b.node_name.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(dims.nodes.get(&b.node_name).cloned().unwrap_or_else(
                || NodeRow {
                    node_name: b.node_name.clone(),
                    agent_id: b.agent_id.clone(),
                    cgroup_layout: layout.map(str::to_owned),
                    cpu_count: n.cpu_count,
                    memory_total_bytes: n.memory_total_bytes,
                    boot_time_unix_s: n.boot_time_unix_s,
                    first_seen_unix_ns: tick,
                    last_seen_unix_ns: tick,
                },
            )),
        };
    row.first_seen_unix_ns = row.first_seen_unix_ns.min(tick);
    if tick >= row.last_seen_unix_ns {
        row.last_seen_unix_ns = tick;
        if row.agent_id != b.agent_id {
            row.agent_id.clone_from(&b.agent_id);
        }
        set_if_changed(&mut row.cgroup_layout, layout);
        row.cpu_count = n.cpu_count;
        row.memory_total_bytes = n.memory_total_bytes;
        row.boot_time_unix_s = n.boot_time_unix_s;
    }
}

#[cfg(test)]
mod tests {
    use upid::wire::v1::ContainerSample;

    use super::*;

    fn batch() -> Batch {
        Batch {
            inventory: None,
            agent_id: "a".into(),
            node_name: "n".into(),
            seq: 1,
            snapshot: Some(Snapshot {
                node: Some(NodeSample {
                    node_name: "n".into(),
                    timestamp_unix_ns: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            spool: None,
        }
    }

    #[test]
    fn validation_names_what_is_wrong() {
        assert!(validate(&batch()).is_ok());
        type Mutation = Box<dyn Fn(&mut Batch)>;
        let cases: Vec<(Mutation, RejectReason)> = vec![
            (Box::new(|b| b.agent_id.clear()), RejectReason::EmptyAgentId),
            (Box::new(|b| b.seq = 0), RejectReason::ZeroSeq),
            (
                Box::new(|b| b.node_name.clear()),
                RejectReason::EmptyNodeName,
            ),
            (
                Box::new(|b| b.snapshot = None),
                RejectReason::MissingSnapshot,
            ),
            (
                Box::new(|b| b.snapshot.as_mut().expect("snapshot").node = None),
                RejectReason::MissingNodeSample,
            ),
            (
                Box::new(|b| b.node_name = "m".into()),
                RejectReason::NodeNameMismatch {
                    batch: "m".into(),
                    snapshot: "n".into(),
                },
            ),
            (
                Box::new(|b| {
                    b.snapshot
                        .as_mut()
                        .expect("snapshot")
                        .containers
                        .push(ContainerSample {
                            timestamp_unix_ns: 1,
                            ..Default::default()
                        })
                }),
                RejectReason::ContainerWithoutIdentity { index: 0 },
            ),
        ];
        for (mutate, reason) in cases {
            let mut b = batch();
            mutate(&mut b);
            assert_eq!(validate(&b).err(), Some(reason));
        }
    }

    #[test]
    fn column_lists_match_the_tables() -> Result<(), Box<dyn std::error::Error>> {
        let store = Store::open_in_memory()?;
        for (table, expected) in [
            ("container_samples", &CONTAINER_SAMPLE_COLUMNS[..]),
            ("network_samples", &NETWORK_SAMPLE_COLUMNS[..]),
        ] {
            let mut stmt = store.conn.prepare(
                "SELECT column_name FROM information_schema.columns
                 WHERE table_name = ? ORDER BY ordinal_position",
            )?;
            let names = stmt
                .query_map([table], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            assert_eq!(names, expected, "{table}");
        }
        assert_eq!(CONTAINER_SAMPLE_COLUMNS[2 + HEAD_U64], "memory_peak_source");
        assert_eq!(2 + HEAD_U64 + 1 + TAIL_U64, CONTAINER_SAMPLE_COLUMNS.len());
        Ok(())
    }

    #[test]
    fn container_key_prefers_the_container_id() {
        assert_eq!(container_key("n", "abc", "/docker/abc"), "abc");
        assert_eq!(
            container_key("n", "", "/system.slice/x.service"),
            "n:/system.slice/x.service"
        );
    }
}

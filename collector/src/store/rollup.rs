//! The rollup of agent samples into `usage`: one row per container per
//! minute (CPU mean, throttled share, working-set mean, peak, OOM kills,
//! network, requests and limits, and who the container is), which is what
//! analysis reads and export writes.
//!
//! Progress is tracked against the exactly-once ledger: batches received
//! after `rollup_state.rolled_up_received_unix_ns` are new, and each node's
//! oldest new tick says from which minute its rows must be recomputed. A
//! late batch (an agent replaying its spool after an outage) therefore
//! recomputes the minutes it falls into, and nothing is rolled up twice:
//! the node's agent rows from that minute on are deleted and rebuilt in the
//! same transaction, and so is the hourly summary of the node's series
//! from that minute's hour on (see `usage_summary`). The rollup runs on its
//! own connection (it writes only `usage`, the summary tables and
//! `rollup_state`, never what the ingest writer writes).
//!
//! Retention drops samples older than its raw horizon
//! (`retention_state`): minutes before the horizon plus [`LOOKBACK_NS`]
//! are never recomputed, since their samples (or the ones before them that
//! rates need) may be gone and a rebuild would lose what `usage` holds.

use duckdb::{Connection, params};

use super::{Store, StoreError};

/// One minute in ns: the rollup's interval.
pub const MINUTE_NS: i64 = 60_000_000_000;

/// How far before the first minute to recompute to find each container's
/// previous sample (rates need two).
pub(crate) const LOOKBACK_NS: i64 = 10 * MINUTE_NS;

/// What one rollup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupStats {
    /// Nodes with new batches.
    pub nodes: usize,
    /// `usage` rows written.
    pub rows: u64,
}

/// Rolls agent samples up into `usage`; one per store (see module docs).
pub struct Rollup {
    conn: Connection,
}

impl std::fmt::Debug for Rollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollup").finish_non_exhaustive()
    }
}

/// Nodes rolled up by one pass over the samples: one pass per node read
/// the whole recent window once per node (24 s a minute for 100 nodes
/// after a burst, bench/RESULTS.md); one pass for all held every node's
/// window in memory at once (1.5 GiB more resident). Passes of this many
/// nodes keep both small.
pub const NODES_PER_PASS: usize = 16;

/// The nodes whose agent rows are rebuilt and the minute each is rebuilt
/// from: a temporary table of the rollup's connection, filled in its
/// transaction.
pub(crate) const DIRTY_TABLE: &str = "rollup_dirty";

/// Deletes the agent rows of every dirty node from its first minute on;
/// `$1` the earliest node's first minute (a constant bound lets the scan
/// skip older row groups).
const DELETE_DIRTY_SQL: &str = "
DELETE FROM usage USING rollup_dirty d
WHERE usage.ts_unix_ns >= $1
  AND usage.source = 'agent' AND usage.node = d.node_name AND usage.ts_unix_ns >= d.from_unix_ns";

/// Rebuilds the agent rows of every node listed in [`DIRTY_TABLE`] from
/// its first minute on, in one pass over the samples (see
/// [`NODES_PER_PASS`]); `$1` lookback, `$2` the earliest node's first
/// minute (a constant bound lets the scans skip older row
/// groups).
const ROLLUP_DIRTY_SQL: &str = "
INSERT INTO usage
WITH dc AS (
    SELECT c.container_sk, d.from_unix_ns
    FROM containers c JOIN rollup_dirty d ON d.node_name = c.node_name
),
s AS (
    SELECT cs.container_sk, cs.ts_unix_ns, dc.from_unix_ns,
        cs.ts_unix_ns - lag(cs.ts_unix_ns) OVER w AS dt_ns,
        counter_delta(cs.cpu_usage_ns, lag(cs.cpu_usage_ns) OVER w) AS d_cpu,
        counter_delta(cs.cpu_periods, lag(cs.cpu_periods) OVER w) AS d_periods,
        counter_delta(cs.cpu_throttled_periods, lag(cs.cpu_throttled_periods) OVER w) AS d_thr,
        counter_delta(cs.memory_oom_kills, lag(cs.memory_oom_kills) OVER w) AS d_oom,
        cs.memory_working_set_bytes AS ws, cs.memory_peak_bytes AS peak,
        cs.cpu_limit_millicores, cs.memory_limit_bytes, cs.netns_inode
    FROM container_samples cs JOIN dc USING (container_sk)
    WHERE cs.ts_unix_ns >= $2 - $1
      AND cs.ts_unix_ns >= dc.from_unix_ns - $1
    WINDOW w AS (PARTITION BY cs.container_sk ORDER BY cs.ts_unix_ns)
),
m AS (
    SELECT container_sk, (ts_unix_ns // 60000000000) * 60000000000 AS minute,
        coalesce(sum(dt_ns) FILTER (d_cpu IS NOT NULL OR ws IS NOT NULL), 0) / 1e9 AS interval_s,
        sum(d_cpu)::DOUBLE / nullif(sum(dt_ns) FILTER (d_cpu IS NOT NULL), 0) AS cpu_cores,
        sum(d_thr)::DOUBLE / nullif(sum(d_periods), 0) AS throttled,
        avg(ws) AS ws_mean,
        max(greatest(coalesce(peak, ws), coalesce(ws, peak))) AS peak,
        sum(d_oom) AS ooms,
        arg_max(cpu_limit_millicores, ts_unix_ns) AS cpu_limit_m,
        arg_max(memory_limit_bytes, ts_unix_ns) AS mem_limit,
        arg_max(netns_inode, ts_unix_ns) AS netns
    FROM s WHERE ts_unix_ns >= from_unix_ns AND dt_ns IS NOT NULL
    GROUP BY container_sk, minute
),
n AS (
    SELECT ns.node_name, ns.netns_inode, ns.ts_unix_ns, d.from_unix_ns,
        counter_delta(ns.rx_bytes, lag(ns.rx_bytes) OVER wn) AS d_rx,
        counter_delta(ns.tx_bytes, lag(ns.tx_bytes) OVER wn) AS d_tx
    FROM network_samples ns JOIN rollup_dirty d ON d.node_name = ns.node_name
    WHERE ns.ts_unix_ns >= $2 - $1
      AND ns.ts_unix_ns >= d.from_unix_ns - $1
    WINDOW wn AS (PARTITION BY ns.node_name, ns.netns_inode ORDER BY ns.ts_unix_ns)
),
nm AS (
    SELECT node_name, netns_inode, (ts_unix_ns // 60000000000) * 60000000000 AS minute,
        sum(d_rx) AS rx, sum(d_tx) AS tx
    FROM n WHERE ts_unix_ns >= from_unix_ns
    GROUP BY node_name, netns_inode, minute
)
SELECT c.container_key, 'agent', m.minute, m.interval_s, c.node_name,
    coalesce(c.container_id, ''),
    coalesce(w.namespace, i.namespace, ''),
    coalesce(i.pod_name, ''),
    CASE WHEN w.kind = 'compose' THEN w.name
         WHEN coalesce(i.name, '') <> '' THEN i.name
         WHEN coalesce(c.unit, '') <> '' THEN c.unit
         WHEN coalesce(c.container_id, '') <> '' THEN left(c.container_id, 12)
         ELSE c.cgroup_path END,
    CASE WHEN w.kind IS NOT NULL THEN
            CASE w.kind WHEN 'deployment' THEN 'Deployment' WHEN 'statefulset' THEN 'StatefulSet'
                WHEN 'daemonset' THEN 'DaemonSet' WHEN 'job' THEN 'Job' WHEN 'cronjob' THEN 'CronJob'
                WHEN 'replicaset' THEN 'ReplicaSet' WHEN 'pod' THEN 'Pod'
                WHEN 'compose' THEN 'ComposeService' WHEN 'container' THEN 'Container'
                ELSE 'Other' END
         WHEN coalesce(c.pod_uid, '') <> '' THEN 'Pod'
         WHEN coalesce(c.container_id, '') <> '' THEN 'Container'
         WHEN coalesce(c.unit, '') <> '' THEN 'Service'
         ELSE 'Cgroup' END,
    CASE WHEN w.name IS NOT NULL THEN w.name
         WHEN coalesce(c.pod_uid, '') <> '' THEN coalesce(nullif(i.pod_name, ''), c.pod_uid)
         WHEN coalesce(c.container_id, '') <> '' THEN coalesce(nullif(i.name, ''), left(c.container_id, 12))
         WHEN coalesce(c.unit, '') <> '' THEN c.unit
         ELSE c.cgroup_path END,
    coalesce(i.image_reference, ''),
    m.cpu_cores, m.throttled, round(m.ws_mean)::UBIGINT, m.peak, m.ooms::UBIGINT,
    nm.rx::UBIGINT, nm.tx::UBIGINT,
    i.cpu_request_millicores / 1000.0,
    coalesce(m.cpu_limit_m, i.cpu_limit_millicores) / 1000.0,
    i.memory_request_bytes,
    coalesce(m.mem_limit, i.memory_limit_bytes)
FROM m JOIN containers c USING (container_sk)
LEFT JOIN container_inventory i ON i.container_id = c.container_id
LEFT JOIN workloads w ON w.workload_key = i.workload_key
LEFT JOIN nm ON nm.node_name = c.node_name AND nm.netns_inode = m.netns AND nm.minute = m.minute";

impl Rollup {
    /// A rollup on its own connection to `store`'s database.
    pub fn new(store: &Store) -> Result<Rollup, StoreError> {
        let conn = store.conn.try_clone().map_err(StoreError::Clone)?;
        Ok(Rollup { conn })
    }

    /// Rolls up everything received since the last run, in one transaction.
    pub fn run(&mut self) -> Result<RollupStats, StoreError> {
        let err = |step: &'static str| move |source| StoreError::Rollup { step, source };
        let tx = self.conn.transaction().map_err(err("begin"))?;
        let watermark: i64 = tx
            .query_row(
                "SELECT coalesce(max(rolled_up_received_unix_ns), -1) FROM rollup_state",
                [],
                |r| r.get(0),
            )
            .map_err(err("read rollup_state"))?;
        let dirty: Vec<(String, i64, i64)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT node_name, min(tick_unix_ns), max(received_unix_ns)
                     FROM batches WHERE received_unix_ns > ? GROUP BY node_name",
                )
                .map_err(err("find new batches"))?;
            let rows = stmt
                .query_map(params![watermark], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(err("find new batches"))?;
            rows.collect::<Result<_, _>>()
                .map_err(err("find new batches"))?
        };
        let mut stats = RollupStats::default();
        let Some(new_watermark) = dirty.iter().map(|d| d.2).max() else {
            tx.commit().map_err(err("commit"))?;
            return Ok(stats);
        };
        // The first minute whose samples and lookback retention kept.
        let kept_from: Option<i64> = tx
            .query_row(
                "SELECT max(raw_horizon_unix_ns) FROM retention_state",
                [],
                |r| r.get(0),
            )
            .map_err(err("read retention_state"))?;
        let kept_from = kept_from.map(|h| {
            h.saturating_add(LOOKBACK_NS)
                .saturating_add(MINUTE_NS - 1)
                .div_euclid(MINUTE_NS)
                .saturating_mul(MINUTE_NS)
        });
        tx.execute_batch(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {DIRTY_TABLE} (node_name VARCHAR NOT NULL, from_unix_ns BIGINT NOT NULL, from_hour_unix_ns BIGINT NOT NULL);"
        ))
        .map_err(err("list the nodes to roll up"))?;
        for chunk in dirty.chunks(NODES_PER_PASS) {
            tx.execute_batch(&format!("DELETE FROM {DIRTY_TABLE};"))
                .map_err(err("list the nodes to roll up"))?;
            let mut first_from = i64::MAX;
            {
                let mut insert = tx
                    .prepare(&format!("INSERT INTO {DIRTY_TABLE} VALUES (?, ?, ?)"))
                    .map_err(err("list the nodes to roll up"))?;
                for (node, oldest_tick, _) in chunk {
                    // A container's samples carry their own timestamps, a
                    // little before or after the tick's: start a minute
                    // earlier.
                    let from =
                        oldest_tick.saturating_sub(MINUTE_NS).div_euclid(MINUTE_NS) * MINUTE_NS;
                    let from = kept_from.map_or(from, |k| from.max(k));
                    first_from = first_from.min(from);
                    let from_hour = super::usage_summary::floor_hour(from);
                    insert
                        .execute(params![node, from, from_hour])
                        .map_err(err("list the nodes to roll up"))?;
                }
            }
            tx.execute(DELETE_DIRTY_SQL, params![first_from])
                .map_err(err("delete recomputed minutes"))?;
            let rows = tx
                .execute(ROLLUP_DIRTY_SQL, params![LOOKBACK_NS, first_from])
                .map_err(err("roll up samples"))?;
            // The hourly summary of the nodes' series, from the hour of
            // each one's first rebuilt minute on (imported rows of those
            // hours too).
            super::usage_summary::refresh_dirty_nodes(&tx)
                .map_err(err("refresh the hourly usage summary"))?;
            stats.rows += rows as u64;
        }
        stats.nodes = dirty.len();
        tx.execute_batch("DELETE FROM rollup_state")
            .map_err(err("write rollup_state"))?;
        tx.execute(
            "INSERT INTO rollup_state VALUES (?)",
            params![new_watermark],
        )
        .map_err(err("write rollup_state"))?;
        tx.commit().map_err(err("commit"))?;
        Ok(stats)
    }
}

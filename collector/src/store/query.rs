//! The read side: nodes, containers, a container's series, and "top", with
//! rates derived in SQL from the stored cumulative counters.
//!
//! Rates use `counter_delta` (see [`super::schema::COUNTER_DELTA_MACRO`]): a
//! counter that went down restarted, and its new value is taken as the
//! increase, as Prometheus `rate()` does.
//!
//! A [`Reader`] has its own DuckDB connection: queries see what is committed
//! and never wait for the writer. Methods block (DuckDB is synchronous): call
//! them from `spawn_blocking` in async code.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use duckdb::{Connection, Row, ToSql, params, params_from_iter};
use upid::model;

use super::schema::names;
use super::store_bytes;

/// A container not sampled for this long (collector clock against its last
/// sample's timestamp) is gone, even if its node stopped reporting too.
///
/// A container is also gone as soon as its node reports a tick without it.
pub const GONE_AFTER_NS: i64 = 5 * 60 * 1_000_000_000;

/// How far before a range, or before a container's last sample, to look for
/// the previous sample a rate needs.
const LOOKBACK_NS: i64 = 10 * 60 * 1_000_000_000;

/// At most this many points per series (Prometheus uses the same cap).
pub const MAX_SERIES_POINTS: i64 = 11_000;

/// Points a series gets when the caller lets the server choose the step.
const DEFAULT_SERIES_POINTS: i64 = 300;

/// Shortest container id prefix accepted.
pub const MIN_ID_PREFIX: usize = 4;

/// Most candidates an [`QueryError::AmbiguousContainer`] lists.
const MAX_CANDIDATES: usize = 10;

/// What went wrong answering a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Nothing matches the id.
    #[error(
        "no container matches {id:?}: give a full or unique-prefix container id, or <node>:<cgroup path>"
    )]
    ContainerNotFound {
        /// The id asked for.
        id: String,
    },
    /// The prefix matches several containers.
    #[error(
        "{id:?} matches {count} containers ({}{}): give more characters",
        candidates.join(", "),
        if *count > candidates.len() { ", ..." } else { "" }
    )]
    AmbiguousContainer {
        /// The id asked for.
        id: String,
        /// Keys of the first matches.
        candidates: Vec<String>,
        /// How many containers match.
        count: usize,
    },
    /// The prefix is too short to look up.
    #[error(
        "container id prefix {id:?} is too short: give at least {min} characters, the full id, or <node>:<cgroup path>"
    )]
    PrefixTooShort {
        /// The id asked for.
        id: String,
        /// Minimum prefix length.
        min: usize,
    },
    /// The time range is empty, reversed, or starts before the Unix epoch.
    #[error("invalid range [{start_unix_ns}, {end_unix_ns}): give 0 <= start < end, in Unix ns")]
    InvalidRange {
        /// Range start.
        start_unix_ns: i64,
        /// Range end.
        end_unix_ns: i64,
    },
    /// A negative step.
    #[error("invalid step {step_ns} ns: give a positive step, or 0 to let the server choose")]
    InvalidStep {
        /// The step asked for.
        step_ns: i64,
    },
    /// The range and step give too many points.
    #[error("step {step_ns} ns gives {points} points, more than {max}: use a larger step")]
    TooManyPoints {
        /// The step asked for.
        step_ns: i64,
        /// Points it would give.
        points: i64,
        /// The cap.
        max: i64,
    },
    /// A request field is invalid (an unknown enum value, ...).
    #[error("{message}")]
    InvalidArgument {
        /// What is wrong and what to give instead.
        message: String,
    },
    /// DuckDB failed.
    #[error("query {what}: {source}")]
    Sql {
        /// Which query.
        what: &'static str,
        /// Underlying error.
        source: duckdb::Error,
    },
}

pub(super) fn sql(what: &'static str) -> impl Fn(duckdb::Error) -> QueryError {
    move |source| QueryError::Sql { what, source }
}

/// A node and the agent that reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Node name.
    pub node_name: String,
    /// Agent that reported the latest tick.
    pub agent_id: String,
    /// That agent's version, once it said hello.
    pub agent_version: Option<String>,
    /// Cgroup layout (`None` when the agent sent one this build does not know).
    pub cgroup_layout: Option<model::CgroupLayout>,
    /// Online CPUs at the latest tick.
    pub cpu_count: u32,
    /// `MemTotal` at the latest tick.
    pub memory_total_bytes: u64,
    /// Boot time at the latest tick.
    pub boot_time_unix_s: u64,
    /// First tick (agent clock).
    pub first_seen_unix_ns: i64,
    /// Latest tick (agent clock).
    pub last_seen_unix_ns: i64,
    /// Last batch or hello received from the agent (collector clock).
    pub agent_last_seen_unix_ns: i64,
    /// Highest seq stored for the agent.
    pub last_seq: u64,
    /// Containers present in the latest tick.
    pub containers: u64,
    /// Batches the agent's spool dropped (cumulative, never silent).
    pub spool_dropped_batches_total: u64,
    /// Bytes of those batches.
    pub spool_dropped_bytes_total: u64,
    /// Batches waiting in the agent's spool at its latest batch.
    pub spool_pending_batches: u64,
    /// The agent's clock minus the collector's at its last hello.
    pub clock_skew_ns: Option<i64>,
    /// Files the agent could not parse, summed over stored batches.
    pub malformed_skips_total: u64,
    /// Cgroups that vanished while being read, summed over stored batches.
    pub vanished_total: u64,
}

/// A container (or service, or glob-matched cgroup) as the store knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    /// Store key: the full container id, else `<node>:<cgroup_path>`.
    pub key: String,
    /// Node it runs on.
    pub node_name: String,
    /// Cgroup path on that node.
    pub cgroup_path: String,
    /// Runtime (`None` when the agent sent one this build does not know).
    pub runtime: Option<model::Runtime>,
    /// Full container id, if it has one.
    pub container_id: Option<String>,
    /// Kubernetes pod UID.
    pub pod_uid: Option<String>,
    /// Kubernetes QoS class.
    pub qos: Option<model::QosClass>,
    /// systemd unit.
    pub unit: Option<String>,
    /// First sample (agent clock).
    pub first_seen_unix_ns: i64,
    /// Latest sample (agent clock).
    pub last_seen_unix_ns: i64,
    /// Exited: its node's latest tick did not include it, or it was not
    /// sampled for [`GONE_AFTER_NS`].
    pub gone: bool,
    /// Samples stored.
    pub samples_stored: u64,
    /// CPU limit at the latest sample; `None` when unlimited or unknown.
    pub cpu_limit_millicores: Option<u64>,
    /// Memory limit at the latest sample; `None` when unlimited or unknown.
    pub memory_limit_bytes: Option<u64>,
    /// OOM kills over the whole stored history (counter resets handled).
    pub oom_kills_total: u64,
}

/// Usage over one interval, derived from consecutive samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rates {
    /// Interval start.
    pub start_unix_ns: i64,
    /// Interval end.
    pub end_unix_ns: i64,
    /// Container samples in the interval.
    pub samples: u64,
    /// CPU used, in cores (Δusage_ns / Δt_ns).
    pub cpu_cores: Option<f64>,
    /// Share of CFS periods throttled (Δthrottled_periods / Δperiods);
    /// `None` without a CPU limit.
    pub cpu_throttled_ratio: Option<f64>,
    /// Largest working set sampled in the interval.
    pub memory_working_set_bytes: Option<u64>,
    /// Largest peak reported in the interval.
    pub memory_peak_bytes: Option<u64>,
    /// OOM kills in the interval.
    pub oom_kills: Option<u64>,
    /// Bytes received per second by the container's network namespace(s).
    pub net_rx_bytes_per_s: Option<f64>,
    /// Bytes sent per second by the container's network namespace(s).
    pub net_tx_bytes_per_s: Option<f64>,
}

/// A container with its latest rates.
#[derive(Debug, Clone, PartialEq)]
pub struct TopEntry {
    /// The container.
    pub container: ContainerInfo,
    /// Rates between its last two samples. With only one sample, the
    /// interval is that sample's instant and only gauges are set.
    pub latest: Rates,
}

/// One container in detail.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerDetail {
    /// The container.
    pub container: ContainerInfo,
    /// Its latest rates (see [`TopEntry::latest`]).
    pub latest: Option<Rates>,
    /// Its latest sample as stored (cumulative counters).
    pub latest_sample: Option<StoredSample>,
}

/// A stored container sample, in model types.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    /// When it was read (agent clock).
    pub timestamp_unix_ns: i64,
    /// What was read. A stored peak source this build does not know reads
    /// back as [`model::PeakSource::Sampled`], the weaker claim.
    pub stats: model::CgroupStats,
    /// Network namespace inode.
    pub netns_inode: Option<u64>,
}

/// A container's usage over a range, one point per step.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The container.
    pub container: ContainerInfo,
    /// Width of each point.
    pub step_ns: i64,
    /// Points in time order; steps without samples are left out.
    pub points: Vec<Rates>,
}

/// A read connection to the store.
///
/// Holds one DuckDB connection behind a mutex, so one `Reader` answers one
/// query at a time; [`Reader::try_clone`] gives another for parallel queries.
#[derive(Debug)]
pub struct Reader {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
}

/// `ContainerInfo` columns; needs `c` (containers), `n` (nodes, left
/// joined), `$1` (now) and `$2` (gone after). The 17th column is the
/// surrogate key.
const INFO_COLUMNS: &str = "
    c.container_key, c.node_name, c.cgroup_path, c.runtime, c.container_id, c.pod_uid,
    c.qos, c.unit, c.first_seen_unix_ns, c.last_seen_unix_ns,
    (c.last_tick_unix_ns < coalesce(n.last_seen_unix_ns, c.last_tick_unix_ns)
        OR c.last_seen_unix_ns < $1::BIGINT - $2::BIGINT) AS gone,
    c.samples_stored, c.cpu_limit_millicores, c.memory_limit_bytes, c.oom_kills_total,
    c.container_sk";

/// Number of [`INFO_COLUMNS`], surrogate key included.
const INFO_WIDTH: usize = 16;

fn container_info(r: &Row<'_>) -> duckdb::Result<(ContainerInfo, u32)> {
    let runtime: Option<String> = r.get(3)?;
    let qos: Option<String> = r.get(6)?;
    Ok((
        ContainerInfo {
            key: r.get(0)?,
            node_name: r.get(1)?,
            cgroup_path: r.get(2)?,
            runtime: runtime.as_deref().and_then(names::parse_runtime),
            container_id: r.get(4)?,
            pod_uid: r.get(5)?,
            qos: qos.as_deref().and_then(names::parse_qos),
            unit: r.get(7)?,
            first_seen_unix_ns: r.get(8)?,
            last_seen_unix_ns: r.get(9)?,
            gone: r.get(10)?,
            samples_stored: r.get(11)?,
            cpu_limit_millicores: r.get(12)?,
            memory_limit_bytes: r.get(13)?,
            oom_kills_total: r.get(14)?,
        },
        r.get(15)?,
    ))
}

/// Latest-rates query shared by `top` and `container`. Parameters: `$1` now,
/// `$2` gone after, `$3` lookback, `$4` oldest sample to read, `$5` node or
/// NULL, `$6` surrogate key or NULL, `$7` include gone containers.
static LATEST_RATES_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH targets AS (
            SELECT {INFO_COLUMNS}
            FROM containers c LEFT JOIN nodes n ON n.node_name = c.node_name
            WHERE ($5::VARCHAR IS NULL OR c.node_name = $5::VARCHAR)
              AND ($6::UINTEGER IS NULL OR c.container_sk = $6::UINTEGER)
        ),
        chosen AS (SELECT * FROM targets WHERE $7::BOOLEAN OR NOT gone),
        last2 AS (
            SELECT s.container_sk, s.ts_unix_ns AS ts, s.netns_inode, s.cpu_usage_ns,
                   s.cpu_periods, s.cpu_throttled_periods, s.memory_oom_kills,
                   s.memory_working_set_bytes, s.memory_peak_bytes,
                   row_number() OVER (PARTITION BY s.container_sk ORDER BY s.ts_unix_ns DESC) AS rn
            FROM container_samples s
            JOIN chosen t ON s.container_sk = t.container_sk
                         AND s.ts_unix_ns >= t.last_seen_unix_ns - $3::BIGINT
            WHERE s.ts_unix_ns >= $4::BIGINT
            QUALIFY rn <= 2
        ),
        pair AS (
            SELECT cur.container_sk, cur.netns_inode,
                   coalesce(prev.ts, cur.ts) AS start_ts, cur.ts AS end_ts,
                   CASE WHEN prev.ts IS NULL THEN 1 ELSE 2 END AS samples,
                   counter_delta(cur.cpu_usage_ns, prev.cpu_usage_ns)::DOUBLE
                       / nullif(cur.ts - prev.ts, 0) AS cpu_cores,
                   counter_delta(cur.cpu_throttled_periods, prev.cpu_throttled_periods)::DOUBLE
                       / nullif(counter_delta(cur.cpu_periods, prev.cpu_periods), 0) AS throttled,
                   cur.memory_working_set_bytes AS ws, cur.memory_peak_bytes AS peak,
                   counter_delta(cur.memory_oom_kills, prev.memory_oom_kills)::UBIGINT AS oom
            FROM last2 cur LEFT JOIN last2 prev
                 ON prev.container_sk = cur.container_sk AND prev.rn = 2
            WHERE cur.rn = 1
        ),
        netns AS (
            SELECT DISTINCT t.node_name, p.netns_inode
            FROM pair p JOIN chosen t USING (container_sk)
            WHERE p.netns_inode IS NOT NULL
        ),
        netl AS (
            SELECT ns.node_name, ns.netns_inode, ns.ts_unix_ns AS ts, ns.rx_bytes, ns.tx_bytes,
                   row_number() OVER (PARTITION BY ns.node_name, ns.netns_inode
                                      ORDER BY ns.ts_unix_ns DESC) AS rn
            FROM network_samples ns
            JOIN netns k ON k.node_name = ns.node_name AND k.netns_inode = ns.netns_inode
            WHERE ns.ts_unix_ns >= $4::BIGINT
            QUALIFY rn <= 2
        ),
        netp AS (
            SELECT cur.node_name, cur.netns_inode,
                   counter_delta(cur.rx_bytes, prev.rx_bytes)::DOUBLE * 1e9
                       / nullif(cur.ts - prev.ts, 0) AS rx,
                   counter_delta(cur.tx_bytes, prev.tx_bytes)::DOUBLE * 1e9
                       / nullif(cur.ts - prev.ts, 0) AS tx
            FROM netl cur JOIN netl prev
                 ON prev.node_name = cur.node_name AND prev.netns_inode = cur.netns_inode
                AND prev.rn = 2
            WHERE cur.rn = 1
        )
        SELECT t.*, p.start_ts, p.end_ts, p.samples, p.cpu_cores, p.throttled, p.ws, p.peak,
               p.oom, np.rx, np.tx
        FROM chosen t
        JOIN pair p ON p.container_sk = t.container_sk
        LEFT JOIN netp np ON np.node_name = t.node_name AND np.netns_inode = p.netns_inode
        ORDER BY p.cpu_cores DESC NULLS LAST, t.container_key"
    )
});

fn rates_at(r: &Row<'_>, base: usize) -> duckdb::Result<Rates> {
    let samples: i64 = r.get(base + 2)?;
    Ok(Rates {
        start_unix_ns: r.get(base)?,
        end_unix_ns: r.get(base + 1)?,
        samples: u64::try_from(samples).unwrap_or(0),
        cpu_cores: r.get(base + 3)?,
        cpu_throttled_ratio: r.get(base + 4)?,
        memory_working_set_bytes: r.get(base + 5)?,
        memory_peak_bytes: r.get(base + 6)?,
        oom_kills: r.get(base + 7)?,
        net_rx_bytes_per_s: r.get(base + 8)?,
        net_tx_bytes_per_s: r.get(base + 9)?,
    })
}

/// Series query. Parameters: `$1` surrogate key, `$2` start, `$3` end,
/// `$4` step, `$5` lookback, `$6` node.
///
/// Each interval between consecutive samples belongs to the step holding
/// its end. Per step: cpu cores = ΣΔusage / ΣΔt over its intervals;
/// throttled ratio = ΣΔthrottled_periods / ΣΔperiods; OOM kills = ΣΔoom;
/// working set and peak = max over its samples. Network rates come from the
/// namespace's own samples (they have the tick's timestamp, not the
/// container's), per step, summed over the namespaces the container used in
/// that step.
const SERIES_SQL: &str = "
WITH s AS (
    SELECT ts_unix_ns AS ts,
           lag(ts_unix_ns) OVER w AS prev_ts,
           netns_inode,
           counter_delta(cpu_usage_ns, lag(cpu_usage_ns) OVER w) AS d_cpu_ns,
           counter_delta(cpu_periods, lag(cpu_periods) OVER w) AS d_periods,
           counter_delta(cpu_throttled_periods, lag(cpu_throttled_periods) OVER w) AS d_throttled,
           counter_delta(memory_oom_kills, lag(memory_oom_kills) OVER w) AS d_oom,
           memory_working_set_bytes AS ws,
           memory_peak_bytes AS peak
    FROM container_samples
    WHERE container_sk = $1::UINTEGER
      AND ts_unix_ns >= $2::BIGINT - $5::BIGINT AND ts_unix_ns < $3::BIGINT
    WINDOW w AS (ORDER BY ts_unix_ns)
),
d AS (SELECT (ts - $2::BIGINT) // $4::BIGINT AS bucket, * FROM s WHERE ts >= $2::BIGINT),
agg AS (
    SELECT bucket,
           count(*) AS samples,
           sum(d_cpu_ns)::DOUBLE
               / nullif(sum(ts - prev_ts) FILTER (WHERE d_cpu_ns IS NOT NULL), 0) AS cpu_cores,
           sum(d_throttled)::DOUBLE / nullif(sum(d_periods), 0) AS throttled,
           max(ws) AS ws,
           max(peak) AS peak,
           sum(d_oom)::UBIGINT AS oom
    FROM d GROUP BY bucket
),
used AS (SELECT DISTINCT bucket, netns_inode FROM d WHERE netns_inode IS NOT NULL),
n AS (
    SELECT netns_inode, ts_unix_ns AS ts, lag(ts_unix_ns) OVER w AS prev_ts,
           counter_delta(rx_bytes, lag(rx_bytes) OVER w) AS d_rx,
           counter_delta(tx_bytes, lag(tx_bytes) OVER w) AS d_tx
    FROM network_samples
    WHERE node_name = $6::VARCHAR
      AND netns_inode IN (SELECT netns_inode FROM used)
      AND ts_unix_ns >= $2::BIGINT - $5::BIGINT AND ts_unix_ns < $3::BIGINT
    WINDOW w AS (PARTITION BY netns_inode ORDER BY ts_unix_ns)
),
nb AS (
    SELECT (ts - $2::BIGINT) // $4::BIGINT AS bucket, netns_inode,
           sum(d_rx)::DOUBLE * 1e9 / nullif(sum(ts - prev_ts), 0) AS rx,
           sum(d_tx)::DOUBLE * 1e9 / nullif(sum(ts - prev_ts), 0) AS tx
    FROM n WHERE ts >= $2::BIGINT AND prev_ts IS NOT NULL
    GROUP BY ALL
),
net AS (
    SELECT bucket, sum(rx) AS rx, sum(tx) AS tx
    FROM nb JOIN used USING (bucket, netns_inode)
    GROUP BY bucket
)
SELECT $2::BIGINT + agg.bucket * $4::BIGINT AS start_ts,
       least($2::HUGEINT + (agg.bucket + 1)::HUGEINT * $4::HUGEINT, $3::HUGEINT)::BIGINT
           AS end_ts,
       agg.samples, agg.cpu_cores, agg.throttled, agg.ws, agg.peak, agg.oom, net.rx, net.tx
FROM agg LEFT JOIN net USING (bucket)
ORDER BY agg.bucket";

impl Reader {
    pub(crate) fn new(conn: Connection, path: Option<PathBuf>) -> Reader {
        Reader {
            conn: Mutex::new(conn),
            path,
        }
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on this reader's connection, e.g. a report's `COPY (...) TO`
    /// (`crate::report`). Other queries of this reader wait meanwhile.
    pub(crate) fn with_connection<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.conn())
    }

    /// Another read connection to the same database.
    pub fn try_clone(&self) -> Result<Reader, QueryError> {
        let conn = self
            .conn()
            .try_clone()
            .map_err(sql("open a read connection"))?;
        Ok(Reader::new(conn, self.path.clone()))
    }

    /// Bytes on disk: the database file plus its WAL (0 in memory).
    pub fn store_bytes(&self) -> u64 {
        self.path.as_deref().map_or(0, store_bytes)
    }

    /// Highest seq stored for `agent_id`, 0 when none, as of the writer's
    /// last write of agent state (at most its flush interval behind, see
    /// `WriterConfig::dims_flush_interval`).
    pub fn last_stored_seq(&self, agent_id: &str) -> Result<u64, QueryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT last_seq FROM agents WHERE agent_id = ?")
            .map_err(sql("last stored seq"))?;
        let mut rows = stmt.query([agent_id]).map_err(sql("last stored seq"))?;
        match rows.next().map_err(sql("last stored seq"))? {
            Some(r) => r.get(0).map_err(sql("last stored seq")),
            None => Ok(0),
        }
    }

    /// Every node, by name.
    pub fn list_nodes(&self) -> Result<Vec<NodeInfo>, QueryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT n.node_name, n.agent_id, a.agent_version, n.cgroup_layout, n.cpu_count,
                        n.memory_total_bytes, n.boot_time_unix_s, n.first_seen_unix_ns,
                        n.last_seen_unix_ns, coalesce(a.last_seen_unix_ns, 0),
                        coalesce(a.last_seq, 0),
                        (SELECT count(*) FROM containers c
                          WHERE c.node_name = n.node_name
                            AND c.last_tick_unix_ns >= n.last_seen_unix_ns),
                        coalesce(a.spool_dropped_batches_total, 0),
                        coalesce(a.spool_dropped_bytes_total, 0),
                        coalesce(a.spool_pending_batches, 0),
                        a.clock_skew_ns,
                        coalesce(a.malformed_skips_total, 0),
                        coalesce(a.vanished_total, 0)
                 FROM nodes n LEFT JOIN agents a ON a.agent_id = n.agent_id
                 ORDER BY n.node_name",
            )
            .map_err(sql("list nodes"))?;
        let rows = stmt
            .query_map([], |r| {
                let layout: Option<String> = r.get(3)?;
                let containers: i64 = r.get(11)?;
                Ok(NodeInfo {
                    node_name: r.get(0)?,
                    agent_id: r.get(1)?,
                    agent_version: r.get(2)?,
                    cgroup_layout: layout.as_deref().and_then(names::parse_cgroup_layout),
                    cpu_count: r.get(4)?,
                    memory_total_bytes: r.get(5)?,
                    boot_time_unix_s: r.get(6)?,
                    first_seen_unix_ns: r.get(7)?,
                    last_seen_unix_ns: r.get(8)?,
                    agent_last_seen_unix_ns: r.get(9)?,
                    last_seq: r.get(10)?,
                    containers: u64::try_from(containers).unwrap_or(0),
                    spool_dropped_batches_total: r.get(12)?,
                    spool_dropped_bytes_total: r.get(13)?,
                    spool_pending_batches: r.get(14)?,
                    clock_skew_ns: r.get(15)?,
                    malformed_skips_total: r.get(16)?,
                    vanished_total: r.get(17)?,
                })
            })
            .map_err(sql("list nodes"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list nodes"))
    }

    /// Containers, by node then key; gone ones only with `include_gone`.
    /// `now_unix_ns` is the collector's clock (see [`GONE_AFTER_NS`]).
    pub fn list_containers(
        &self,
        node: Option<&str>,
        include_gone: bool,
        now_unix_ns: i64,
    ) -> Result<Vec<ContainerInfo>, QueryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {INFO_COLUMNS}
                 FROM containers c LEFT JOIN nodes n ON n.node_name = c.node_name
                 WHERE ($3::VARCHAR IS NULL OR c.node_name = $3::VARCHAR)
                 ORDER BY c.node_name, c.container_key"
            ))
            .map_err(sql("list containers"))?;
        let rows = stmt
            .query_map(params![now_unix_ns, GONE_AFTER_NS, node], container_info)
            .map_err(sql("list containers"))?;
        let mut out = Vec::new();
        for row in rows {
            let (info, _) = row.map_err(sql("list containers"))?;
            if include_gone || !info.gone {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Finds one container by full id, unique id prefix (at least
    /// [`MIN_ID_PREFIX`] characters), its store key, or
    /// `<node>:<cgroup_path>`.
    fn resolve(&self, id: &str, now_unix_ns: i64) -> Result<(ContainerInfo, u32), QueryError> {
        let conn = self.conn();
        let base = format!(
            "SELECT {INFO_COLUMNS}, count(*) OVER () AS matches
             FROM containers c LEFT JOIN nodes n ON n.node_name = c.node_name"
        );
        let run = |filter: &str,
                   args: &[&str]|
         -> Result<Vec<(ContainerInfo, u32, i64)>, QueryError> {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{base} WHERE {filter} ORDER BY c.last_seen_unix_ns DESC, c.container_key LIMIT {MAX_CANDIDATES}"
                ))
                .map_err(sql("find container"))?;
            let rows = stmt
                .query_map(
                    params_from_iter(
                        [&now_unix_ns as &dyn ToSql, &GONE_AFTER_NS]
                            .into_iter()
                            .chain(args.iter().map(|a| a as &dyn ToSql)),
                    ),
                    |r| {
                        let (info, sk) = container_info(r)?;
                        Ok((info, sk, r.get(INFO_WIDTH)?))
                    },
                )
                .map_err(sql("find container"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sql("find container"))
        };
        let one = |found: Vec<(ContainerInfo, u32, i64)>| match found.len() {
            0 => Err(QueryError::ContainerNotFound { id: id.to_owned() }),
            1 => found
                .into_iter()
                .next()
                .map(|(info, sk, _)| (info, sk))
                .ok_or_else(|| QueryError::ContainerNotFound { id: id.to_owned() }),
            _ => Err(QueryError::AmbiguousContainer {
                id: id.to_owned(),
                count: found
                    .first()
                    .map_or(0, |f| usize::try_from(f.2).unwrap_or(usize::MAX)),
                candidates: found.into_iter().map(|(info, _, _)| info.key).collect(),
            }),
        };

        let exact = run("c.container_key = $3::VARCHAR", &[id])?;
        if !exact.is_empty() {
            return one(exact);
        }
        if let Some((node, path)) = id.split_once(':') {
            return one(run(
                "c.node_name = $3::VARCHAR AND c.cgroup_path = $4::VARCHAR",
                &[node, path],
            )?);
        }
        if id.chars().count() < MIN_ID_PREFIX {
            return Err(QueryError::PrefixTooShort {
                id: id.to_owned(),
                min: MIN_ID_PREFIX,
            });
        }
        one(run(
            "starts_with(c.container_id, $3::VARCHAR)",
            &[&id.to_ascii_lowercase()],
        )?)
    }

    /// One container in detail; `id` as for [`Reader::series`].
    pub fn container(&self, id: &str, now_unix_ns: i64) -> Result<ContainerDetail, QueryError> {
        let (info, sk) = self.resolve(id, now_unix_ns)?;
        let cutoff = info.last_seen_unix_ns.saturating_sub(LOOKBACK_NS);
        let latest = self
            .latest_rates(now_unix_ns, cutoff, None, Some(sk), true)?
            .into_iter()
            .next()
            .map(|e| e.latest);
        let latest_sample = self.latest_sample(sk, info.last_seen_unix_ns)?;
        Ok(ContainerDetail {
            container: info,
            latest,
            latest_sample,
        })
    }

    /// Every present container (on `node`, or everywhere) with the rates
    /// between its last two samples, busiest CPU first.
    pub fn top(&self, node: Option<&str>, now_unix_ns: i64) -> Result<Vec<TopEntry>, QueryError> {
        let cutoff = now_unix_ns
            .saturating_sub(GONE_AFTER_NS)
            .saturating_sub(LOOKBACK_NS);
        self.latest_rates(now_unix_ns, cutoff, node, None, false)
    }

    /// Containers (on `node`, or everywhere) with their latest rates, by
    /// node then key: what [`Reader::list_containers`] lists, plus
    /// [`TopEntry::latest`]. Gone containers only with `include_gone`; their
    /// rates are those of their last two samples, however old.
    pub fn list_containers_with_rates(
        &self,
        node: Option<&str>,
        include_gone: bool,
        now_unix_ns: i64,
    ) -> Result<Vec<TopEntry>, QueryError> {
        let cutoff = if include_gone {
            i64::MIN
        } else {
            now_unix_ns
                .saturating_sub(GONE_AFTER_NS)
                .saturating_sub(LOOKBACK_NS)
        };
        let mut entries = self.latest_rates(now_unix_ns, cutoff, node, None, include_gone)?;
        entries.sort_by(|a, b| {
            (&a.container.node_name, &a.container.key)
                .cmp(&(&b.container.node_name, &b.container.key))
        });
        Ok(entries)
    }

    fn latest_rates(
        &self,
        now_unix_ns: i64,
        cutoff_unix_ns: i64,
        node: Option<&str>,
        sk: Option<u32>,
        include_gone: bool,
    ) -> Result<Vec<TopEntry>, QueryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&LATEST_RATES_SQL)
            .map_err(sql("latest rates"))?;
        let rows = stmt
            .query_map(
                params![
                    now_unix_ns,
                    GONE_AFTER_NS,
                    LOOKBACK_NS,
                    cutoff_unix_ns,
                    node,
                    sk,
                    include_gone
                ],
                |r| {
                    let (container, _) = container_info(r)?;
                    Ok(TopEntry {
                        container,
                        latest: rates_at(r, INFO_WIDTH)?,
                    })
                },
            )
            .map_err(sql("latest rates"))?;
        rows.collect::<Result<_, _>>().map_err(sql("latest rates"))
    }

    fn latest_sample(
        &self,
        sk: u32,
        last_seen_unix_ns: i64,
    ) -> Result<Option<StoredSample>, QueryError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT ts_unix_ns, cpu_usage_ns, cpu_user_ns, cpu_system_ns, cpu_periods,
                        cpu_throttled_periods, cpu_throttled_ns, cpu_limit_millicores, cpu_shares,
                        memory_usage_bytes, memory_working_set_bytes, memory_rss_bytes,
                        memory_cache_bytes, memory_swap_bytes, memory_limit_bytes,
                        memory_peak_bytes, memory_peak_source, memory_oom_kills,
                        io_read_bytes, io_write_bytes, io_read_ops, io_write_ops,
                        pids_current, pids_limit,
                        psi_cpu_some_total_us, psi_cpu_full_total_us,
                        psi_memory_some_total_us, psi_memory_full_total_us,
                        psi_io_some_total_us, psi_io_full_total_us, netns_inode
                 FROM container_samples
                 WHERE container_sk = ? AND ts_unix_ns >= ?
                 ORDER BY ts_unix_ns DESC LIMIT 1",
            )
            .map_err(sql("latest sample"))?;
        let mut rows = stmt
            .query(params![sk, last_seen_unix_ns])
            .map_err(sql("latest sample"))?;
        let Some(r) = rows.next().map_err(sql("latest sample"))? else {
            return Ok(None);
        };
        stored_sample(r).map(Some).map_err(sql("latest sample"))
    }

    /// A container's usage from `start_unix_ns` (inclusive) to `end_unix_ns`
    /// (exclusive; `0 <= start < end`), one point per `step_ns` (0: about
    /// 300 points, at least 1 s each; at most [`MAX_SERIES_POINTS`]). `id` is a full container id, a unique prefix of one (at
    /// least [`MIN_ID_PREFIX`] characters), or `<node>:<cgroup_path>`.
    pub fn series(
        &self,
        id: &str,
        start_unix_ns: i64,
        end_unix_ns: i64,
        step_ns: i64,
    ) -> Result<Series, QueryError> {
        if start_unix_ns < 0 || end_unix_ns <= start_unix_ns {
            return Err(QueryError::InvalidRange {
                start_unix_ns,
                end_unix_ns,
            });
        }
        if step_ns < 0 {
            return Err(QueryError::InvalidStep { step_ns });
        }
        let span = end_unix_ns.saturating_sub(start_unix_ns);
        let step_ns = if step_ns == 0 {
            (span.saturating_add(DEFAULT_SERIES_POINTS - 1) / DEFAULT_SERIES_POINTS)
                .max(1_000_000_000)
        } else {
            step_ns
        };
        let points = span / step_ns + i64::from(span % step_ns != 0);
        if points > MAX_SERIES_POINTS {
            return Err(QueryError::TooManyPoints {
                step_ns,
                points,
                max: MAX_SERIES_POINTS,
            });
        }
        let (container, sk) = self.resolve(id, end_unix_ns)?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(SERIES_SQL).map_err(sql("series"))?;
        let rows = stmt
            .query_map(
                params![
                    sk,
                    start_unix_ns,
                    end_unix_ns,
                    step_ns,
                    LOOKBACK_NS.max(step_ns),
                    container.node_name
                ],
                |r| rates_at(r, 0),
            )
            .map_err(sql("series"))?;
        let points = rows.collect::<Result<_, _>>().map_err(sql("series"))?;
        Ok(Series {
            container,
            step_ns,
            points,
        })
    }
}

fn stored_sample(r: &Row<'_>) -> duckdb::Result<StoredSample> {
    let g = |i: usize| r.get::<_, Option<u64>>(i);
    let cpu = match g(1)? {
        None => None,
        Some(usage_ns) => Some(model::CpuStats {
            usage_ns,
            user_ns: g(2)?,
            system_ns: g(3)?,
            periods: g(4)?.unwrap_or(0),
            throttled_periods: g(5)?.unwrap_or(0),
            throttled_ns: g(6)?.unwrap_or(0),
            limit_millicores: g(7)?,
            shares: g(8)?,
        }),
    };
    let memory = match g(9)? {
        None => None,
        Some(usage_bytes) => {
            let source: Option<String> = r.get(16)?;
            Some(model::MemoryStats {
                usage_bytes,
                working_set_bytes: g(10)?.unwrap_or(0),
                rss_bytes: g(11)?.unwrap_or(0),
                cache_bytes: g(12)?.unwrap_or(0),
                swap_bytes: g(13)?,
                limit_bytes: g(14)?,
                peak_bytes: g(15)?.unwrap_or(0),
                peak_source: source
                    .as_deref()
                    .and_then(names::parse_peak_source)
                    .unwrap_or(model::PeakSource::Sampled),
                oom_kills: g(17)?.unwrap_or(0),
            })
        }
    };
    let io = match g(18)? {
        None => None,
        Some(read_bytes) => Some(model::IoStats {
            read_bytes,
            write_bytes: g(19)?.unwrap_or(0),
            read_ops: g(20)?.unwrap_or(0),
            write_ops: g(21)?.unwrap_or(0),
        }),
    };
    let pids = match g(22)? {
        None => None,
        Some(current) => Some(model::PidsStats {
            current,
            limit: g(23)?,
        }),
    };
    let psi = |some: usize| -> duckdb::Result<Option<model::PressureStats>> {
        Ok(match g(some)? {
            None => None,
            Some(some_total_us) => Some(model::PressureStats {
                some_total_us,
                full_total_us: g(some + 1)?,
            }),
        })
    };
    let pressure = model::Pressure {
        cpu: psi(24)?,
        memory: psi(26)?,
        io: psi(28)?,
    };
    Ok(StoredSample {
        timestamp_unix_ns: r.get(0)?,
        stats: model::CgroupStats {
            cpu,
            memory,
            io,
            pids,
            pressure: (!pressure.is_empty()).then_some(pressure),
        },
        netns_inode: g(30)?,
    })
}

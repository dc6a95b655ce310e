//! The DuckDB schema: created idempotently on open, versioned in
//! `schema_version`.
//!
//! Conventions:
//! - Timestamps are `BIGINT` nanoseconds since the Unix epoch, named
//!   `*_unix_ns`. That is exactly what the agent sends (no rounding to the
//!   microseconds of `TIMESTAMP`), costs 8 bytes and compresses like any
//!   integer, has no time zone to get wrong, and makes deltas (`ts - prev_ts`)
//!   plain integer arithmetic in rate queries.
//! - Counters and gauges are `UBIGINT`, as the kernel reports them; units are
//!   in the column names. Rate queries convert to `HUGEINT` before
//!   subtracting (see [`COUNTER_DELTA_MACRO`]) because `UBIGINT` subtraction
//!   overflows on a counter reset.
//! - A column is `NULL` exactly where the model has `None`: the kernel or the
//!   layout did not expose the value (never zero-filled).
//! - Enums are stored as the names `upid::model` gives them (`docker`,
//!   `Burstable`, `v2`, `kernel_reset`; see [`names`]), `NULL` when the agent
//!   sent a value this build does not know, so a newer agent's batches are
//!   still stored.
//! - `container_samples` carries a dense integer `container_sk` instead of the
//!   64-character container key: it is what every query filters on and it
//!   compresses to a few bits per row; `containers` maps it back to the key.
//!   The view `container_samples_named` joins the two for people and exports.

use duckdb::Connection;
use upid::model;
use upid::wire::v1;

use super::StoreError;

/// WAL size at which DuckDB checkpoints by itself: a backstop far above
/// what the writer's own schedule lets accumulate.
pub const WAL_CHECKPOINT_THRESHOLD: &str = "256MB";

/// Version of the schema this build creates and understands.
pub const SCHEMA_VERSION: i32 = 6;

/// Versions this build opens and upgrades to [`SCHEMA_VERSION`]: versions 2
/// (the inventory), 3 (`usage`, `rollup_state`), 4 (the hourly usage
/// summary), 5 (retention's `retention_state` and `ledger_horizon`;
/// `node_labels` and `update_events`, created unversioned before) and 6
/// (`dims_flush`: the dimension tables' state may lag the ledger, see
/// `store::dims`) only added tables, which `CREATE ... IF NOT EXISTS`
/// creates in an older store. The summary of usage rows an older store
/// already holds is built when the store opens (see `usage_summary`). An
/// older build refuses a version-6 store: it would trust dimension rows
/// that may lag the ledger.
const UPGRADABLE_VERSIONS: &[i32] = &[1, 2, 3, 4, 5];

/// `counter_delta(cur, prev)`: the increase of a cumulative counter between
/// two samples, with counter resets handled as Prometheus `rate()` does.
///
/// When the counter went down (the cgroup was recreated, the node rebooted)
/// the counter restarted from zero, so the new value *is* what accumulated
/// since the restart: it is used as the delta. That is a lower bound of the
/// true increase (whatever was used between the previous sample and the
/// restart is lost), which is better than dropping the interval: dropping
/// would lose the post-restart usage too and hide the restart's interval from
/// sums such as OOM counts. `NULL` when either sample lacks the counter.
pub const COUNTER_DELTA_MACRO: &str = "\
CREATE OR REPLACE MACRO counter_delta(cur, prev) AS
    CASE
        WHEN cur IS NULL OR prev IS NULL THEN NULL
        WHEN cur >= prev THEN cur::HUGEINT - prev::HUGEINT
        ELSE cur::HUGEINT
    END;";

/// Every table, `IF NOT EXISTS` so that opening an existing store is a no-op.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    version              INTEGER NOT NULL,
    applied_unix_ns      BIGINT  NOT NULL
);

-- One row per agent. Written by the collector from batches and hellos.
CREATE TABLE IF NOT EXISTS agents (
    agent_id                    VARCHAR PRIMARY KEY,
    node_name                   VARCHAR NOT NULL,
    -- From the agent's Hello; NULL until it said hello to this store.
    agent_version               VARCHAR,
    -- Highest seq stored (what Welcome.last_stored_seq reports).
    last_seq                    UBIGINT NOT NULL,
    -- Collector clock: first and last time a batch or hello arrived.
    first_seen_unix_ns          BIGINT  NOT NULL,
    last_seen_unix_ns           BIGINT  NOT NULL,
    -- SpoolStats of the highest-seq batch (cumulative on the agent).
    spool_dropped_batches_total UBIGINT NOT NULL,
    spool_dropped_bytes_total   UBIGINT NOT NULL,
    spool_pending_batches       UBIGINT NOT NULL,
    spool_pending_bytes         UBIGINT NOT NULL,
    -- The agent's clock minus the collector's at its last hello.
    clock_skew_ns               BIGINT,
    batches_stored              UBIGINT NOT NULL,
    malformed_skips_total       UBIGINT NOT NULL,
    vanished_total              UBIGINT NOT NULL
);

-- The exactly-once ledger: one row per stored batch.
CREATE TABLE IF NOT EXISTS batches (
    agent_id             VARCHAR NOT NULL,
    seq                  UBIGINT NOT NULL,
    -- Collector clock when the batch was stored.
    received_unix_ns     BIGINT  NOT NULL,
    node_name            VARCHAR NOT NULL,
    -- The tick's node timestamp (agent clock).
    tick_unix_ns         BIGINT  NOT NULL,
    containers           UINTEGER NOT NULL,
    networks             UINTEGER NOT NULL,
    malformed_skips      UBIGINT NOT NULL,
    vanished             UBIGINT NOT NULL,
    PRIMARY KEY (agent_id, seq)
);

-- Schema version 6: the dimension tables (agents, nodes, containers) hold
-- what every ledger row received up to this collector time stored; what
-- later rows changed is rebuilt from the ledger and the samples when the
-- store opens (see store/dims.rs). One row.
CREATE TABLE IF NOT EXISTS dims_flush (
    flushed_received_unix_ns BIGINT NOT NULL
);

-- One row per node: facts from its latest tick.
CREATE TABLE IF NOT EXISTS nodes (
    node_name            VARCHAR PRIMARY KEY,
    -- The agent that reported the latest tick.
    agent_id             VARCHAR NOT NULL,
    cgroup_layout        VARCHAR,
    cpu_count            UINTEGER NOT NULL,
    memory_total_bytes   UBIGINT NOT NULL,
    boot_time_unix_s     UBIGINT NOT NULL,
    -- Agent clock: first and latest tick.
    first_seen_unix_ns   BIGINT  NOT NULL,
    last_seen_unix_ns    BIGINT  NOT NULL
);

CREATE TABLE IF NOT EXISTS node_samples (
    node_name                 VARCHAR NOT NULL,
    ts_unix_ns                BIGINT  NOT NULL,
    boot_time_unix_s          UBIGINT NOT NULL,
    cpu_count                 UINTEGER NOT NULL,
    cpu_total_ns              UBIGINT NOT NULL,
    cpu_idle_ns               UBIGINT NOT NULL,
    memory_total_bytes        UBIGINT NOT NULL,
    memory_available_bytes    UBIGINT NOT NULL,
    load1                     DOUBLE  NOT NULL,
    load5                     DOUBLE  NOT NULL,
    load15                    DOUBLE  NOT NULL,
    psi_cpu_some_total_us     UBIGINT,
    psi_cpu_full_total_us     UBIGINT,
    psi_memory_some_total_us  UBIGINT,
    psi_memory_full_total_us  UBIGINT,
    psi_io_some_total_us      UBIGINT,
    psi_io_full_total_us      UBIGINT
);

-- One row per container (or service, or glob-matched cgroup) ever seen.
CREATE TABLE IF NOT EXISTS containers (
    -- Full container id when there is one, else `<node>:<cgroup_path>`.
    container_key          VARCHAR PRIMARY KEY,
    -- Dense surrogate key used by container_samples (unique, assigned by
    -- the single writer).
    container_sk           UINTEGER NOT NULL,
    node_name              VARCHAR NOT NULL,
    cgroup_path            VARCHAR NOT NULL,
    runtime                VARCHAR,
    container_id           VARCHAR,
    pod_uid                VARCHAR,
    qos                    VARCHAR,
    unit                   VARCHAR,
    -- Agent clock: first and latest sample.
    first_seen_unix_ns     BIGINT  NOT NULL,
    last_seen_unix_ns      BIGINT  NOT NULL,
    -- Node timestamp of the latest tick that included this container; older
    -- than nodes.last_seen_unix_ns means the node no longer reports it.
    last_tick_unix_ns      BIGINT  NOT NULL,
    samples_stored         UBIGINT NOT NULL,
    -- From the latest sample.
    cpu_limit_millicores   UBIGINT,
    memory_limit_bytes     UBIGINT,
    -- Raw kernel OOM counter of the latest sample, and the sum of its
    -- increases over the whole history (resets handled as counter_delta).
    oom_kills_last         UBIGINT,
    oom_kills_total        UBIGINT NOT NULL
);

-- Wide rows: one per container per tick. Column order is the append order.
CREATE TABLE IF NOT EXISTS container_samples (
    container_sk               UINTEGER NOT NULL,
    ts_unix_ns                 BIGINT  NOT NULL,
    cpu_usage_ns               UBIGINT,
    cpu_user_ns                UBIGINT,
    cpu_system_ns              UBIGINT,
    cpu_periods                UBIGINT,
    cpu_throttled_periods      UBIGINT,
    cpu_throttled_ns           UBIGINT,
    cpu_limit_millicores       UBIGINT,
    cpu_shares                 UBIGINT,
    memory_usage_bytes         UBIGINT,
    memory_working_set_bytes   UBIGINT,
    memory_rss_bytes           UBIGINT,
    memory_cache_bytes         UBIGINT,
    memory_swap_bytes          UBIGINT,
    memory_limit_bytes         UBIGINT,
    memory_peak_bytes          UBIGINT,
    memory_peak_source         VARCHAR,
    memory_oom_kills           UBIGINT,
    io_read_bytes              UBIGINT,
    io_write_bytes             UBIGINT,
    io_read_ops                UBIGINT,
    io_write_ops               UBIGINT,
    pids_current               UBIGINT,
    pids_limit                 UBIGINT,
    psi_cpu_some_total_us      UBIGINT,
    psi_cpu_full_total_us      UBIGINT,
    psi_memory_some_total_us   UBIGINT,
    psi_memory_full_total_us   UBIGINT,
    psi_io_some_total_us       UBIGINT,
    psi_io_full_total_us       UBIGINT,
    netns_inode                UBIGINT
);

-- Traffic per network namespace per tick. The agent reads each namespace
-- once per tick and sends no timestamp of its own, so ts_unix_ns is the
-- tick's node timestamp.
CREATE TABLE IF NOT EXISTS network_samples (
    node_name        VARCHAR NOT NULL,
    netns_inode      UBIGINT NOT NULL,
    ts_unix_ns       BIGINT  NOT NULL,
    rx_bytes         UBIGINT NOT NULL,
    tx_bytes         UBIGINT NOT NULL,
    rx_packets       UBIGINT NOT NULL,
    tx_packets       UBIGINT NOT NULL,
    rx_dropped       UBIGINT NOT NULL,
    tx_dropped       UBIGINT NOT NULL
);

-- Inventory (schema version 2): who each container is, from the runtime's
-- API (Docker) and Kubernetes, as the agents last reported it. Keyed by
-- the container id that joins containers.container_id.
CREATE TABLE IF NOT EXISTS container_inventory (
    container_id             VARCHAR PRIMARY KEY,
    agent_id                 VARCHAR NOT NULL,
    node_name                VARCHAR NOT NULL,
    runtime                  VARCHAR,
    -- Docker container name or Kubernetes container name.
    name                     VARCHAR NOT NULL,
    -- Kubernetes namespace or compose project; '' when neither.
    namespace                VARCHAR NOT NULL,
    pod_name                 VARCHAR NOT NULL,
    pod_uid                  VARCHAR NOT NULL,
    -- workloads.workload_key; '' when the agent knows no workload.
    workload_key             VARCHAR NOT NULL,
    image_reference          VARCHAR NOT NULL,
    image_repository         VARCHAR NOT NULL,
    image_tag                VARCHAR NOT NULL,
    image_digest             VARCHAR NOT NULL,
    image_id                 VARCHAR NOT NULL,
    -- created, running, paused, restarting, exited, dead, removing, waiting.
    state                    VARCHAR,
    state_reason             VARCHAR NOT NULL,
    -- none, starting, healthy, unhealthy.
    health                   VARCHAR,
    restart_count            UINTEGER NOT NULL,
    exit_code                INTEGER,
    oom_killed               BOOLEAN NOT NULL,
    started_unix_ns          BIGINT,
    finished_unix_ns         BIGINT,
    cpu_limit_millicores     UBIGINT,
    memory_limit_bytes       UBIGINT,
    cpu_request_millicores   UBIGINT,
    memory_request_bytes     UBIGINT,
    qos                      VARCHAR,
    last_termination_reason  VARCHAR NOT NULL,
    -- The whole upid.v1.ContainerInfo as sent (labels included), encoded.
    info_pb                  BLOB NOT NULL,
    -- Collector clock.
    first_seen_unix_ns       BIGINT NOT NULL,
    updated_unix_ns          BIGINT NOT NULL,
    -- When the runtime stopped listing it; NULL while it exists.
    removed_unix_ns          BIGINT
);

-- What a person deploys: Kubernetes owners, compose services, bare
-- containers. workload_key is '<kind>/<namespace>/<name>'.
CREATE TABLE IF NOT EXISTS workloads (
    workload_key        VARCHAR PRIMARY KEY,
    -- deployment, statefulset, daemonset, job, cronjob, replicaset, pod,
    -- compose, container, other.
    kind                VARCHAR NOT NULL,
    namespace           VARCHAR NOT NULL,
    name                VARCHAR NOT NULL,
    -- Why the owner chain stopped short (missing permission), else ''.
    detail              VARCHAR NOT NULL,
    first_seen_unix_ns  BIGINT NOT NULL,
    last_seen_unix_ns   BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS pods (
    pod_uid             VARCHAR PRIMARY KEY,
    namespace           VARCHAR NOT NULL,
    pod_name            VARCHAR NOT NULL,
    node_name           VARCHAR NOT NULL,
    qos                 VARCHAR,
    workload_key        VARCHAR NOT NULL,
    first_seen_unix_ns  BIGINT NOT NULL,
    last_seen_unix_ns   BIGINT NOT NULL
);

-- Images ever run, by image id (or by reference when the id is unknown).
CREATE TABLE IF NOT EXISTS images (
    image_key           VARCHAR PRIMARY KEY,
    reference           VARCHAR NOT NULL,
    repository          VARCHAR NOT NULL,
    tag                 VARCHAR NOT NULL,
    digest              VARCHAR NOT NULL,
    image_id            VARCHAR NOT NULL,
    first_seen_unix_ns  BIGINT NOT NULL,
    last_seen_unix_ns   BIGINT NOT NULL
);

-- The image each workload's container (by container name) runs now; a
-- change is an image_change event.
CREATE TABLE IF NOT EXISTS workload_images (
    workload_key        VARCHAR NOT NULL,
    container_name      VARCHAR NOT NULL,
    image_key           VARCHAR NOT NULL,
    image_reference     VARCHAR NOT NULL,
    -- Start time of the first container seen with this image.
    since_unix_ns       BIGINT NOT NULL,
    PRIMARY KEY (workload_key, container_name)
);

-- Lifecycle events. An event with a runtime timestamp arrives again after
-- an agent restart; the key stores it once.
CREATE TABLE IF NOT EXISTS events (
    ts_unix_ns          BIGINT  NOT NULL,
    container_id        VARCHAR NOT NULL,
    -- start, die, oom, restart, image_change, health_change, create, destroy.
    kind                VARCHAR NOT NULL,
    agent_id            VARCHAR NOT NULL,
    node_name           VARCHAR NOT NULL,
    exit_code           INTEGER,
    from_value          VARCHAR NOT NULL,
    to_value            VARCHAR NOT NULL,
    detail              VARCHAR NOT NULL,
    -- Who the container was when the event was stored.
    container_name      VARCHAR NOT NULL,
    namespace           VARCHAR NOT NULL,
    workload_key        VARCHAR NOT NULL,
    image_reference     VARCHAR NOT NULL,
    received_unix_ns    BIGINT  NOT NULL,
    PRIMARY KEY (container_id, kind, ts_unix_ns)
);

-- Usage per container per interval: what analysis (rightsizing, idle,
-- cost) reads and the Parquet export writes (docs/export.md has the same
-- columns). Agent samples are rolled up into 1-minute rows by the
-- collector (source 'agent'); imports add rows of their own interval
-- (source 'prometheus' or 'parquet'). Identity columns are copied into
-- every row (DuckDB's dictionary compression stores them once per row
-- group); analysis takes a series' identity from its latest row.
CREATE TABLE IF NOT EXISTS usage (
    -- containers.container_key for agent rows; for imports the container id
    -- when known, else 'node/namespace/pod/container'.
    series_key                VARCHAR NOT NULL,
    -- agent, prometheus, parquet.
    source                    VARCHAR NOT NULL,
    -- Start of the interval (UTC).
    ts_unix_ns                BIGINT  NOT NULL,
    -- Seconds of the interval covered by the row's data.
    interval_s                DOUBLE  NOT NULL,
    node                      VARCHAR NOT NULL,
    container_id              VARCHAR NOT NULL,
    namespace                 VARCHAR NOT NULL,
    pod                       VARCHAR NOT NULL,
    container                 VARCHAR NOT NULL,
    workload_kind             VARCHAR NOT NULL,
    workload                  VARCHAR NOT NULL,
    image                     VARCHAR NOT NULL,
    -- Mean over the interval.
    cpu_cores                 DOUBLE,
    -- Throttled CFS periods / all periods in the interval.
    cpu_throttled_ratio       DOUBLE,
    -- Mean of the readings in the interval.
    memory_working_set_bytes  UBIGINT,
    -- Highest memory use in the interval (the agent's per-tick peak where it
    -- has one, else the highest working-set reading).
    memory_peak_bytes         UBIGINT,
    oom_kills                 UBIGINT,
    net_rx_bytes              UBIGINT,
    net_tx_bytes              UBIGINT,
    cpu_request_cores         DOUBLE,
    cpu_limit_cores           DOUBLE,
    memory_request_bytes      UBIGINT,
    memory_limit_bytes        UBIGINT
);

-- Progress of the agent-sample rollup into usage: batches received after
-- this (collector clock, batches.received_unix_ns) are not rolled up yet.
CREATE TABLE IF NOT EXISTS rollup_state (
    rolled_up_received_unix_ns BIGINT NOT NULL
);

-- What retention dropped (schema version 5; see store/retention.rs), one
-- row: agent samples (container_samples, node_samples, network_samples)
-- and ledger rows timed before raw_horizon_unix_ns are gone, so ingest
-- refuses batches whose tick is older and the rollup never recomputes
-- minutes it cannot rebuild from samples; usage rows, their hourly summary
-- and events before usage_horizon_unix_ns are gone.
CREATE TABLE IF NOT EXISTS retention_state (
    raw_horizon_unix_ns       BIGINT NOT NULL,
    usage_horizon_unix_ns     BIGINT NOT NULL
);

-- Per agent, the highest seq whose ledger row retention dropped: a replayed
-- batch at or below it is not in the ledger any more but may have been
-- stored, so ingest answers it as expired instead of storing it again.
CREATE TABLE IF NOT EXISTS ledger_horizon (
    agent_id                  VARCHAR PRIMARY KEY,
    pruned_through_seq        UBIGINT NOT NULL,
    -- Collector clock of the retention run that dropped it.
    pruned_unix_ns            BIGINT  NOT NULL
);

-- The hourly usage summary (schema version 4): what analysis reads instead
-- of every usage row (docs/analysis.md, section How analysis stays fast). It is
-- rebuilt, in the same transaction, for every hour the rollup or an import
-- changes, and checked against usage when the store opens.
--
-- One row per identity a series had: a series whose rows carry two
-- identities (a new image, another node) has two ids.
CREATE TABLE IF NOT EXISTS usage_series (
    series_id                 INTEGER PRIMARY KEY,
    series_key                VARCHAR NOT NULL,
    node                      VARCHAR NOT NULL,
    container_id              VARCHAR NOT NULL,
    namespace                 VARCHAR NOT NULL,
    pod                       VARCHAR NOT NULL,
    container                 VARCHAR NOT NULL,
    workload_kind             VARCHAR NOT NULL,
    workload                  VARCHAR NOT NULL,
    image                     VARCHAR NOT NULL
);

-- Usage rows aggregated per series identity and UTC hour (of ts_unix_ns).
-- Every column is an aggregate that adds up across hours exactly (sums,
-- maxima, latest values with their time); usage_summary.rs has the SQL.
CREATE TABLE IF NOT EXISTS usage_hourly (
    series_id                 INTEGER NOT NULL,
    hour_unix_ns              BIGINT  NOT NULL,
    row_count                 UBIGINT NOT NULL,
    first_unix_ns             BIGINT  NOT NULL,
    last_unix_ns              BIGINT  NOT NULL,
    -- Sums of interval_s: all rows, rows with a CPU figure, with a
    -- throttling figure, with a working set.
    interval_s                DOUBLE  NOT NULL,
    cpu_s                     DOUBLE,
    throttle_s                DOUBLE,
    ws_s                      DOUBLE,
    -- Sums of value x interval_s.
    cpu_core_s                DOUBLE,
    throttled_s               DOUBLE,
    ws_byte_s                 DOUBLE,
    cpu_max_cores             DOUBLE,
    -- Highest of memory_peak_bytes and memory_working_set_bytes.
    memory_peak_bytes         UBIGINT,
    oom_kills                 UBIGINT,
    last_oom_unix_ns          BIGINT,
    -- Highest of limit, peak and working set in rows with an OOM kill.
    oom_base_bytes            UBIGINT,
    -- Highest (rx + tx) / interval_s: of all rows (missing counts as 0,
    -- as the activity test counts it), and of rows with a network figure.
    activity_net_max          DOUBLE,
    net_max_bytes_per_s       DOUBLE,
    net_bytes                 UBIGINT,
    has_network               BOOLEAN NOT NULL,
    -- OpenCost: max(request, usage) x interval_s, price-free (core-seconds
    -- and byte-seconds); the requested-but-unused part; requests alone.
    charged_core_s            DOUBLE  NOT NULL,
    charged_byte_s            DOUBLE  NOT NULL,
    idle_core_s               DOUBLE  NOT NULL,
    idle_byte_s               DOUBLE  NOT NULL,
    request_core_s            DOUBLE  NOT NULL,
    request_byte_s            DOUBLE  NOT NULL,
    -- Latest non-NULL requests and limits, each with its row's time.
    cpu_request_cores         DOUBLE,
    cpu_request_unix_ns       BIGINT,
    cpu_limit_cores           DOUBLE,
    cpu_limit_unix_ns         BIGINT,
    memory_request_bytes      UBIGINT,
    memory_request_unix_ns    BIGINT,
    memory_limit_bytes        UBIGINT,
    memory_limit_unix_ns      BIGINT
);

-- The CPU histogram per series identity and hour, decay factored out:
-- weight_s = sum of interval_s x 2^((ts - hour) / half_life), which does
-- not depend on when analysis runs (it multiplies by
-- 2^((hour - now) / half_life)). Bucket index and half-life are those
-- recorded in usage_summary_state.
CREATE TABLE IF NOT EXISTS usage_hourly_cpu (
    series_id                 INTEGER NOT NULL,
    hour_unix_ns              BIGINT  NOT NULL,
    bucket                    INTEGER NOT NULL,
    weight_s                  DOUBLE  NOT NULL
);

-- What usage_hourly_cpu was built with (one row): the bucket index as a
-- SQL expression of cpu_cores, and the half-life in seconds. Analysis with
-- other settings reads usage instead.
CREATE TABLE IF NOT EXISTS usage_summary_state (
    cpu_bucket_sql            VARCHAR NOT NULL,
    cpu_half_life_s           DOUBLE  NOT NULL
);

CREATE VIEW IF NOT EXISTS container_samples_named AS
    SELECT c.container_key, c.node_name, s.*
    FROM container_samples s JOIN containers c USING (container_sk);
";

/// Per-connection staging tables for the set-based dimension updates: the
/// writer appends changed rows here, then applies them with `UPDATE ... FROM`.
pub(crate) const STAGING: &str = "
CREATE TEMP TABLE IF NOT EXISTS stage_agents AS SELECT * FROM agents LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_nodes AS SELECT * FROM nodes LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_containers AS SELECT * FROM containers LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_container_state AS
    SELECT container_sk, first_seen_unix_ns, last_seen_unix_ns, last_tick_unix_ns,
           samples_stored, cpu_limit_millicores, memory_limit_bytes, oom_kills_last,
           oom_kills_total
    FROM containers LIMIT 0;
";

/// Creates what is missing and checks the stored version.
///
/// Runs in one transaction, so a half-created schema is never left behind.
pub(crate) fn ensure(
    conn: &mut Connection,
    path: &str,
    now_unix_ns: i64,
) -> Result<(), StoreError> {
    let sql = |step: &'static str| move |source| StoreError::Schema { step, source };
    let tx = conn.transaction().map_err(sql("begin"))?;
    tx.execute_batch(TABLES).map_err(sql("create tables"))?;
    tx.execute_batch(super::inventory::NODE_LABELS_DDL)
        .map_err(sql("create table node_labels"))?;
    tx.execute_batch(super::update_events::UPDATE_EVENTS_DDL)
        .map_err(sql("create table update_events"))?;
    tx.execute_batch(COUNTER_DELTA_MACRO)
        .map_err(sql("create macro counter_delta"))?;
    let found: Option<i32> = tx
        .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
        .map_err(sql("read schema_version"))?;
    match found {
        None => {
            tx.execute(
                "INSERT INTO schema_version VALUES (?, ?)",
                duckdb::params![SCHEMA_VERSION, now_unix_ns],
            )
            .map_err(sql("write schema_version"))?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        Some(v) if UPGRADABLE_VERSIONS.contains(&v) => {
            tx.execute(
                "INSERT INTO schema_version VALUES (?, ?)",
                duckdb::params![SCHEMA_VERSION, now_unix_ns],
            )
            .map_err(sql("upgrade schema_version"))?;
            tracing::info!(path, from = v, to = SCHEMA_VERSION, "store schema upgraded");
        }
        Some(found) => {
            return Err(StoreError::SchemaVersion {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
    }
    // A store from before version 6 wrote its dimension rows in every
    // ingest: they hold everything the ledger does.
    tx.execute_batch(
        "INSERT INTO dims_flush
             SELECT coalesce(max(received_unix_ns), -9223372036854775808) FROM batches
             WHERE NOT EXISTS (SELECT 1 FROM dims_flush)",
    )
    .map_err(sql("seed dims_flush"))?;
    tx.commit().map_err(sql("commit"))?;
    conn.execute_batch(STAGING)
        .map_err(sql("create staging tables"))?;
    // The writer checkpoints on its own schedule (see `WriterConfig`).
    // DuckDB's default, a checkpoint inside any commit that finds the WAL
    // over 16 MB, ran several times a second under load: each rewrote the
    // table's unfinished row group (CPU, a stall in that commit, and blocks
    // left free in the file).
    conn.execute_batch(&format!(
        "SET checkpoint_threshold = '{WAL_CHECKPOINT_THRESHOLD}'"
    ))
    .map_err(sql("set checkpoint_threshold"))?;
    Ok(())
}

/// How enums are spelled in the store, both ways.
pub mod names {
    use super::{model, v1};

    /// Stored name of a wire `Runtime`; `None` for unspecified or unknown.
    pub fn runtime(value: i32) -> Option<&'static str> {
        let r = match v1::Runtime::try_from(value).ok()? {
            v1::Runtime::Unspecified => return None,
            v1::Runtime::Docker => model::Runtime::Docker,
            v1::Runtime::Containerd => model::Runtime::Containerd,
            v1::Runtime::Crio => model::Runtime::Crio,
            v1::Runtime::Podman => model::Runtime::Podman,
            v1::Runtime::Systemd => model::Runtime::Systemd,
            v1::Runtime::Cgroup => model::Runtime::Cgroup,
        };
        Some(r.as_str())
    }

    /// The runtime a stored name stands for.
    pub fn parse_runtime(name: &str) -> Option<model::Runtime> {
        [
            model::Runtime::Docker,
            model::Runtime::Containerd,
            model::Runtime::Crio,
            model::Runtime::Podman,
            model::Runtime::Systemd,
            model::Runtime::Cgroup,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }

    /// Stored name of a wire `QosClass`; `None` outside Kubernetes or unknown.
    pub fn qos(value: i32) -> Option<&'static str> {
        let q = match v1::QosClass::try_from(value).ok()? {
            v1::QosClass::Unspecified => return None,
            v1::QosClass::Guaranteed => model::QosClass::Guaranteed,
            v1::QosClass::Burstable => model::QosClass::Burstable,
            v1::QosClass::BestEffort => model::QosClass::BestEffort,
        };
        Some(q.as_str())
    }

    /// The QoS class a stored name stands for.
    pub fn parse_qos(name: &str) -> Option<model::QosClass> {
        [
            model::QosClass::Guaranteed,
            model::QosClass::Burstable,
            model::QosClass::BestEffort,
        ]
        .into_iter()
        .find(|q| q.as_str() == name)
    }

    /// Stored name of a wire `CgroupLayout`.
    pub fn cgroup_layout(value: i32) -> Option<&'static str> {
        match v1::CgroupLayout::try_from(value).ok()? {
            v1::CgroupLayout::Unspecified => None,
            v1::CgroupLayout::V1 => Some("v1"),
            v1::CgroupLayout::V2 => Some("v2"),
            v1::CgroupLayout::Hybrid => Some("hybrid"),
        }
    }

    /// The layout a stored name stands for.
    pub fn parse_cgroup_layout(name: &str) -> Option<model::CgroupLayout> {
        match name {
            "v1" => Some(model::CgroupLayout::V1),
            "v2" => Some(model::CgroupLayout::V2),
            "hybrid" => Some(model::CgroupLayout::Hybrid),
            _ => None,
        }
    }

    /// Stored name of a wire `PeakSource`.
    pub fn peak_source(value: i32) -> Option<&'static str> {
        match v1::PeakSource::try_from(value).ok()? {
            v1::PeakSource::Unspecified => None,
            v1::PeakSource::KernelReset => Some("kernel_reset"),
            v1::PeakSource::Sampled => Some("sampled"),
        }
    }

    /// The peak source a stored name stands for.
    pub fn parse_peak_source(name: &str) -> Option<model::PeakSource> {
        match name {
            "kernel_reset" => Some(model::PeakSource::KernelReset),
            "sampled" => Some(model::PeakSource::Sampled),
            _ => None,
        }
    }
}

//! What each report table holds: the SQL of the two tables read straight
//! from the store (`samples`, `containers`) and the columns of the four
//! built from the analyses' answers (`rightsizing`, `idle`, `cost`,
//! `updates`). docs/export.md documents every column; a test here checks
//! that the files written have exactly the documented columns and types.
//!
//! Conventions (stable, see docs/export.md): times are `*_ts` columns of
//! type TIMESTAMP WITH TIME ZONE (UTC, microseconds); units are in the
//! names (`_bytes`, `_cores`, `_millicores`, `_s`); counts and bytes are
//! signed 64-bit; money is in the collector's `pricing.currency` (the
//! `currency` column).

use duckdb::types::Value;
use upid::wire::v1;

/// One report table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Usage rows (the documented `usage` export schema).
    Samples,
    /// One row per container series seen in the day, with its inventory.
    Containers,
    /// Rightsizing recommendations per workload container.
    Rightsizing,
    /// Idle detection per workload.
    Idle,
    /// Cost of the day per workload.
    Cost,
    /// Image update decisions.
    Updates,
}

impl Table {
    /// Every table, in the order they are written and listed.
    pub const ALL: [Table; 6] = [
        Table::Samples,
        Table::Containers,
        Table::Rightsizing,
        Table::Idle,
        Table::Cost,
        Table::Updates,
    ];

    /// The table's name: its directory under the reports directory.
    pub fn name(self) -> &'static str {
        match self {
            Table::Samples => "samples",
            Table::Containers => "containers",
            Table::Rightsizing => "rightsizing",
            Table::Idle => "idle",
            Table::Cost => "cost",
            Table::Updates => "updates",
        }
    }

    /// The table named `name` (exactly as [`Table::name`] spells it).
    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name.trim())
    }

    /// The tables `names` select, each once, in [`Table::ALL`]'s order;
    /// every table when `names` is empty. The error names the unknown one
    /// and lists the valid names.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Table>, String> {
        if names.is_empty() {
            return Ok(Table::ALL.to_vec());
        }
        let mut wanted = Vec::new();
        for name in names {
            let name = name.as_ref();
            let table = Table::parse(name).ok_or_else(|| {
                format!(
                    "unknown table {name:?}: use {}",
                    Table::ALL.map(Table::name).join(", ")
                )
            })?;
            if !wanted.contains(&table) {
                wanted.push(table);
            }
        }
        wanted.sort();
        Ok(wanted)
    }
}

/// `BIGINT` Unix ns as the TIMESTAMP WITH TIME ZONE (µs) the files carry.
fn ts_sql(column: &str) -> String {
    format!("make_timestamp({column} // 1000)::TIMESTAMPTZ")
}

/// A table read from the store: `raw` runs on the store and returns plain
/// columns (times as `*_unix_ns`); `project`, over the staged rows (table
/// `stage`, in their order), makes the file's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreQuery {
    /// The query on the store.
    pub raw: String,
    /// The query on the staged rows.
    pub project: String,
}

/// The `samples` rows whose interval starts in `[from, until)`: the
/// `usage` table's documented export schema (docs/export.md), ordered by
/// time. Also what `upid-collector export parquet` writes.
pub fn samples(from_unix_ns: i64, until_unix_ns: i64) -> StoreQuery {
    let raw = format!(
        "SELECT ts_unix_ns, interval_s, node,
                container_id, namespace, pod, container, workload_kind, workload, image,
                cpu_cores, cpu_throttled_ratio,
                memory_working_set_bytes::BIGINT AS memory_working_set_bytes,
                memory_peak_bytes::BIGINT AS memory_peak_bytes,
                oom_kills::BIGINT AS oom_kills,
                net_rx_bytes::BIGINT AS net_rx_bytes,
                net_tx_bytes::BIGINT AS net_tx_bytes,
                cpu_request_cores, cpu_limit_cores,
                memory_request_bytes::BIGINT AS memory_request_bytes,
                memory_limit_bytes::BIGINT AS memory_limit_bytes
         FROM usage
         WHERE ts_unix_ns >= {from_unix_ns} AND ts_unix_ns < {until_unix_ns}
         ORDER BY ts_unix_ns, series_key, source"
    );
    let project = format!(
        "SELECT {ts} AS ts, interval_s, node,
                container_id, namespace, pod, container, workload_kind, workload, image,
                cpu_cores, cpu_throttled_ratio, memory_working_set_bytes, memory_peak_bytes,
                oom_kills, net_rx_bytes, net_tx_bytes, cpu_request_cores, cpu_limit_cores,
                memory_request_bytes, memory_limit_bytes
         FROM stage ORDER BY rowid",
        ts = ts_sql("ts_unix_ns")
    );
    StoreQuery { raw, project }
}

/// How many `usage` rows start in `[from, until)`: a day without any gets
/// no report.
pub fn usage_rows_query(from_unix_ns: i64, until_unix_ns: i64) -> String {
    format!(
        "SELECT count(*) FROM usage WHERE ts_unix_ns >= {from_unix_ns} AND ts_unix_ns < {until_unix_ns}"
    )
}

/// The `containers` rows of `[from, until)`: one per series (container)
/// with `usage` rows in the range; identity from its latest row there,
/// the range's aggregates, and the runtime inventory the store holds for
/// its container id (the latest record, not a history).
pub fn containers(from_unix_ns: i64, until_unix_ns: i64) -> StoreQuery {
    let raw = format!(
        "WITH s AS (
            SELECT series_key,
                arg_max(node, ts_unix_ns) AS node,
                arg_max(container_id, ts_unix_ns) AS container_id,
                arg_max(namespace, ts_unix_ns) AS namespace,
                arg_max(pod, ts_unix_ns) AS pod,
                arg_max(container, ts_unix_ns) AS container,
                arg_max(workload_kind, ts_unix_ns) AS workload_kind,
                arg_max(workload, ts_unix_ns) AS workload,
                arg_max(image, ts_unix_ns) AS image,
                min(ts_unix_ns) AS first_unix_ns,
                max(ts_unix_ns) AS last_unix_ns,
                count(*)::BIGINT AS usage_rows,
                sum(interval_s) AS covered_s,
                sum(cpu_cores * interval_s)
                    / nullif(sum(CASE WHEN cpu_cores IS NOT NULL THEN interval_s END), 0)
                    AS cpu_mean_cores,
                max(cpu_cores) AS cpu_max_cores,
                max(cpu_throttled_ratio) AS cpu_throttled_max_ratio,
                round(sum(memory_working_set_bytes::DOUBLE * interval_s)
                    / nullif(sum(CASE WHEN memory_working_set_bytes IS NOT NULL
                                      THEN interval_s END), 0))::BIGINT
                    AS memory_working_set_mean_bytes,
                max(memory_working_set_bytes)::BIGINT AS memory_working_set_max_bytes,
                max(memory_peak_bytes)::BIGINT AS memory_peak_max_bytes,
                sum(oom_kills)::BIGINT AS oom_kills,
                sum(net_rx_bytes)::BIGINT AS net_rx_bytes,
                sum(net_tx_bytes)::BIGINT AS net_tx_bytes,
                arg_max(cpu_request_cores, ts_unix_ns) AS cpu_request_cores,
                arg_max(cpu_limit_cores, ts_unix_ns) AS cpu_limit_cores,
                arg_max(memory_request_bytes, ts_unix_ns)::BIGINT AS memory_request_bytes,
                arg_max(memory_limit_bytes, ts_unix_ns)::BIGINT AS memory_limit_bytes
            FROM usage
            WHERE ts_unix_ns >= {from_unix_ns} AND ts_unix_ns < {until_unix_ns}
            GROUP BY series_key
        )
        SELECT s.node, s.container_id, s.namespace, s.pod, s.container,
               s.workload_kind, s.workload, s.image,
               s.first_unix_ns, s.last_unix_ns,
               s.usage_rows, s.covered_s,
               s.cpu_mean_cores, s.cpu_max_cores, s.cpu_throttled_max_ratio,
               s.memory_working_set_mean_bytes, s.memory_working_set_max_bytes,
               s.memory_peak_max_bytes, s.oom_kills, s.net_rx_bytes, s.net_tx_bytes,
               s.cpu_request_cores, s.cpu_limit_cores,
               s.memory_request_bytes, s.memory_limit_bytes,
               i.runtime, i.pod_uid, i.image_digest, i.state, i.health,
               i.restart_count::BIGINT AS restart_count, i.exit_code::BIGINT AS exit_code,
               i.oom_killed, i.qos,
               i.started_unix_ns, i.finished_unix_ns, i.removed_unix_ns,
               i.updated_unix_ns AS inventory_updated_unix_ns
        FROM s
        LEFT JOIN container_inventory i
            ON s.container_id <> '' AND i.container_id = s.container_id
        ORDER BY s.node, s.namespace, s.pod, s.container, s.container_id, s.series_key"
    );
    let project = format!(
        "SELECT node, container_id, namespace, pod, container, workload_kind, workload, image,
                {first} AS first_ts, {last} AS last_ts,
                usage_rows, covered_s,
                cpu_mean_cores, cpu_max_cores, cpu_throttled_max_ratio,
                memory_working_set_mean_bytes, memory_working_set_max_bytes,
                memory_peak_max_bytes, oom_kills, net_rx_bytes, net_tx_bytes,
                cpu_request_cores, cpu_limit_cores, memory_request_bytes, memory_limit_bytes,
                runtime, pod_uid, image_digest, state, health, restart_count, exit_code,
                oom_killed, qos,
                {started} AS started_ts, {finished} AS finished_ts,
                {removed} AS removed_ts, {updated} AS inventory_updated_ts
         FROM stage ORDER BY rowid",
        first = ts_sql("first_unix_ns"),
        last = ts_sql("last_unix_ns"),
        started = ts_sql("started_unix_ns"),
        finished = ts_sql("finished_unix_ns"),
        removed = ts_sql("removed_unix_ns"),
        updated = ts_sql("inventory_updated_unix_ns"),
    );
    StoreQuery { raw, project }
}

/// The type of a column built from an analysis answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// STRING.
    Text,
    /// INT64.
    Int64,
    /// DOUBLE.
    Float64,
    /// BOOLEAN.
    Bool,
    /// TIMESTAMP WITH TIME ZONE (µs), given as Unix ns.
    Timestamp,
    /// LIST of STRING, given as each item preceded by [`LIST_SEPARATOR`]
    /// (so an empty list, `[]`, and a list of one empty item, `[""]`,
    /// stay apart).
    TextList,
}

/// Precedes each item of a [`ColumnType::TextList`] value while staging.
pub const LIST_SEPARATOR: char = '\u{1f}';

impl ColumnType {
    /// The staging table's column type.
    pub(super) fn stage_sql(self) -> &'static str {
        match self {
            ColumnType::Text | ColumnType::TextList => "VARCHAR",
            ColumnType::Int64 | ColumnType::Timestamp => "BIGINT",
            ColumnType::Float64 => "DOUBLE",
            ColumnType::Bool => "BOOLEAN",
        }
    }

    /// The expression that turns staged `column` into the file's column.
    pub(super) fn select_sql(self, column: &str) -> String {
        match self {
            ColumnType::Timestamp => format!("{} AS {column}", ts_sql(column)),
            ColumnType::TextList => format!(
                "CASE WHEN {column} IS NULL THEN NULL WHEN {column} = '' THEN []::VARCHAR[] \
                 ELSE string_split({column}, chr({}))[2:] END AS {column}",
                LIST_SEPARATOR as u32
            ),
            _ => column.to_owned(),
        }
    }
}

/// A column built from rows of type `T`: its name, type and value.
pub struct Column<T> {
    /// Name in the file (documented in docs/export.md).
    pub name: &'static str,
    /// Type.
    pub ty: ColumnType,
    /// The value of a row.
    pub value: fn(&T) -> Value,
}

/// An analysis answer's item with what the file adds to it.
#[derive(Debug, Clone)]
pub struct Row<R> {
    /// Start of the window the item covers (cost), Unix ns.
    pub start_unix_ns: i64,
    /// The analysis time: end of the window, Unix ns.
    pub at_unix_ns: i64,
    /// `pricing.currency`.
    pub currency: String,
    /// The item.
    pub item: R,
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn opt_text(s: Option<&String>) -> Value {
    s.map_or(Value::Null, |s| text(s))
}

fn int(v: u64) -> Value {
    Value::BigInt(i64::try_from(v).unwrap_or(i64::MAX))
}

fn opt_int(v: Option<u64>) -> Value {
    v.map_or(Value::Null, int)
}

fn float(v: f64) -> Value {
    Value::Double(v)
}

/// A time where 0 means "none".
fn ts(unix_ns: i64) -> Value {
    if unix_ns == 0 {
        Value::Null
    } else {
        Value::BigInt(unix_ns)
    }
}

fn list(items: &[String]) -> Value {
    Value::Text(items.iter().fold(String::new(), |mut out, item| {
        out.push(LIST_SEPARATOR);
        out.push_str(item);
        out
    }))
}

/// A rightsizing recommendation and its evidence (never absent here).
#[derive(Debug, Clone)]
pub struct Rightsized {
    /// The recommendation.
    pub rec: v1::Recommendation,
    /// Its current resources.
    pub current: v1::CurrentResources,
    /// Its evidence.
    pub evidence: v1::RightsizeEvidence,
}

impl Rightsized {
    /// `rec` with its optional parts filled in (defaults where absent).
    pub fn of(mut rec: v1::Recommendation) -> Rightsized {
        Rightsized {
            current: rec.current.take().unwrap_or_default(),
            evidence: rec.evidence.take().unwrap_or_default(),
            rec,
        }
    }
}

type R = Row<Rightsized>;

/// `rightsizing`: one row per workload container (replicas pooled), as
/// `upid rightsize` shows it, evaluated at the end of the day.
#[rustfmt::skip]
pub static RIGHTSIZING: &[Column<R>] = &[
    Column { name: "window_end_ts", ty: ColumnType::Timestamp, value: |r| ts(r.at_unix_ns) },
    Column { name: "namespace", ty: ColumnType::Text, value: |r| text(&r.item.rec.namespace) },
    Column { name: "workload_kind", ty: ColumnType::Text, value: |r| text(&r.item.rec.workload_kind) },
    Column { name: "workload", ty: ColumnType::Text, value: |r| text(&r.item.rec.workload) },
    Column { name: "container", ty: ColumnType::Text, value: |r| text(&r.item.rec.container) },
    Column { name: "replicas", ty: ColumnType::Int64, value: |r| int(r.item.rec.replicas.into()) },
    Column { name: "current_cpu_request_millicores", ty: ColumnType::Int64, value: |r| opt_int(r.item.current.cpu_request_millicores) },
    Column { name: "current_cpu_limit_millicores", ty: ColumnType::Int64, value: |r| opt_int(r.item.current.cpu_limit_millicores) },
    Column { name: "current_memory_request_bytes", ty: ColumnType::Int64, value: |r| opt_int(r.item.current.memory_request_bytes) },
    Column { name: "current_memory_limit_bytes", ty: ColumnType::Int64, value: |r| opt_int(r.item.current.memory_limit_bytes) },
    Column { name: "enough_data", ty: ColumnType::Bool, value: |r| Value::Boolean(r.item.rec.enough_data) },
    Column { name: "cpu_request_millicores", ty: ColumnType::Int64, value: |r| opt_int(r.item.rec.cpu_request_millicores) },
    Column { name: "cpu_limit_millicores", ty: ColumnType::Int64, value: |r| opt_int(r.item.rec.cpu_limit_millicores) },
    Column { name: "memory_request_bytes", ty: ColumnType::Int64, value: |r| opt_int(r.item.rec.memory_request_bytes) },
    Column { name: "memory_limit_bytes", ty: ColumnType::Int64, value: |r| opt_int(r.item.rec.memory_limit_bytes) },
    Column { name: "cpu_lower_millicores", ty: ColumnType::Int64, value: |r| opt_int(r.item.rec.cpu_lower_millicores) },
    Column { name: "cpu_upper_millicores", ty: ColumnType::Int64, value: |r| opt_int(r.item.rec.cpu_upper_millicores) },
    Column { name: "memory_lower_bytes", ty: ColumnType::Int64, value: |r| opt_int(r.item.rec.memory_lower_bytes) },
    Column { name: "memory_upper_bytes", ty: ColumnType::Int64, value: |r| opt_int(r.item.rec.memory_upper_bytes) },
    Column { name: "confidence", ty: ColumnType::Float64, value: |r| float(r.item.rec.confidence) },
    Column { name: "confidence_days", ty: ColumnType::Float64, value: |r| float(r.item.rec.confidence_days) },
    Column { name: "samples", ty: ColumnType::Int64, value: |r| int(r.item.rec.samples) },
    Column { name: "window_s", ty: ColumnType::Int64, value: |r| Value::BigInt(r.item.rec.window_s) },
    Column { name: "first_sample_ts", ty: ColumnType::Timestamp, value: |r| ts(r.item.evidence.first_sample_unix_ns) },
    Column { name: "last_sample_ts", ty: ColumnType::Timestamp, value: |r| ts(r.item.evidence.last_sample_unix_ns) },
    Column { name: "cpu_p50_cores", ty: ColumnType::Float64, value: |r| float(r.item.evidence.cpu_p50_cores) },
    Column { name: "cpu_p90_cores", ty: ColumnType::Float64, value: |r| float(r.item.evidence.cpu_p90_cores) },
    Column { name: "cpu_p95_cores", ty: ColumnType::Float64, value: |r| float(r.item.evidence.cpu_p95_cores) },
    Column { name: "cpu_max_cores", ty: ColumnType::Float64, value: |r| float(r.item.evidence.cpu_max_cores) },
    Column { name: "cpu_throttled_ratio", ty: ColumnType::Float64, value: |r| r.item.evidence.cpu_throttled_ratio.map_or(Value::Null, float) },
    Column { name: "memory_p90_daily_peak_bytes", ty: ColumnType::Int64, value: |r| int(r.item.evidence.memory_p90_daily_peak_bytes) },
    Column { name: "memory_max_peak_bytes", ty: ColumnType::Int64, value: |r| int(r.item.evidence.memory_max_peak_bytes) },
    Column { name: "memory_days", ty: ColumnType::Int64, value: |r| int(r.item.evidence.memory_days.into()) },
    Column { name: "oom_kills", ty: ColumnType::Int64, value: |r| int(r.item.evidence.oom_kills) },
    Column { name: "last_oom_ts", ty: ColumnType::Timestamp, value: |r| ts(r.item.evidence.last_oom_unix_ns) },
    Column { name: "oom_bump_bytes", ty: ColumnType::Int64, value: |r| int(r.item.evidence.oom_bump_bytes) },
    Column { name: "restarts", ty: ColumnType::Int64, value: |r| int(r.item.evidence.restarts.into()) },
    Column { name: "cpu_request_driver", ty: ColumnType::Text, value: |r| text(&r.item.evidence.cpu_request_driver) },
    Column { name: "cpu_limit_driver", ty: ColumnType::Text, value: |r| text(&r.item.evidence.cpu_limit_driver) },
    Column { name: "memory_request_driver", ty: ColumnType::Text, value: |r| text(&r.item.evidence.memory_request_driver) },
    Column { name: "memory_limit_driver", ty: ColumnType::Text, value: |r| text(&r.item.evidence.memory_limit_driver) },
    Column { name: "monthly_cost_current", ty: ColumnType::Float64, value: |r| float(r.item.rec.monthly_cost_current) },
    Column { name: "monthly_cost_recommended", ty: ColumnType::Float64, value: |r| float(r.item.rec.monthly_cost_recommended) },
    Column { name: "monthly_saving", ty: ColumnType::Float64, value: |r| float(r.item.rec.monthly_saving) },
    Column { name: "currency", ty: ColumnType::Text, value: |r| text(&r.currency) },
    Column { name: "reason", ty: ColumnType::Text, value: |r| text(&r.item.rec.reason) },
];

type I = Row<v1::IdleWorkload>;

/// `idle`: every workload with whether it is idle (active ones too, with
/// why not), as `upid idle --all` shows it, evaluated at the end of the
/// day.
#[rustfmt::skip]
pub static IDLE: &[Column<I>] = &[
    Column { name: "window_end_ts", ty: ColumnType::Timestamp, value: |r| ts(r.at_unix_ns) },
    Column { name: "namespace", ty: ColumnType::Text, value: |r| text(&r.item.namespace) },
    Column { name: "workload_kind", ty: ColumnType::Text, value: |r| text(&r.item.workload_kind) },
    Column { name: "workload", ty: ColumnType::Text, value: |r| text(&r.item.workload) },
    Column { name: "replicas", ty: ColumnType::Int64, value: |r| int(r.item.replicas.into()) },
    Column { name: "idle", ty: ColumnType::Bool, value: |r| Value::Boolean(r.item.idle) },
    Column { name: "idle_since_ts", ty: ColumnType::Timestamp, value: |r| ts(r.item.idle_since_unix_ns) },
    Column { name: "idle_for_s", ty: ColumnType::Int64, value: |r| Value::BigInt(r.item.idle_for_s) },
    Column { name: "cpu_max_cores", ty: ColumnType::Float64, value: |r| float(r.item.cpu_max_cores) },
    Column { name: "cpu_mean_cores", ty: ColumnType::Float64, value: |r| float(r.item.cpu_mean_cores) },
    Column { name: "net_max_bytes_per_s", ty: ColumnType::Float64, value: |r| float(r.item.net_max_bytes_per_s) },
    Column { name: "net_bytes", ty: ColumnType::Int64, value: |r| int(r.item.net_bytes_total) },
    Column { name: "cpu_threshold_cores", ty: ColumnType::Float64, value: |r| float(r.item.cpu_threshold_cores) },
    Column { name: "net_threshold_bytes_per_s", ty: ColumnType::Float64, value: |r| float(r.item.net_threshold_bytes_per_s) },
    Column { name: "window_s", ty: ColumnType::Int64, value: |r| Value::BigInt(r.item.window_s) },
    Column { name: "cost_since_idle", ty: ColumnType::Float64, value: |r| float(r.item.cost_since_idle) },
    Column { name: "monthly_cost", ty: ColumnType::Float64, value: |r| float(r.item.monthly_cost) },
    Column { name: "currency", ty: ColumnType::Text, value: |r| text(&r.currency) },
    Column { name: "last_sample_ts", ty: ColumnType::Timestamp, value: |r| ts(r.item.last_sample_unix_ns) },
    Column { name: "reason", ty: ColumnType::Text, value: |r| text(&r.item.reason) },
];

/// A cost line and the prices it was charged at.
#[derive(Debug, Clone)]
pub struct Costed {
    /// The line.
    pub line: v1::CostLine,
    /// Default price per vCPU-hour.
    pub cpu_core_hour: f64,
    /// Default price per GiB-hour.
    pub memory_gib_hour: f64,
}

type C = Row<Costed>;

/// `cost`: what each workload cost over the day (charged on max(request,
/// usage)), its waste, and the monthly projections, as `upid cost`
/// shows them for a window of exactly the day.
#[rustfmt::skip]
pub static COST: &[Column<C>] = &[
    Column { name: "window_start_ts", ty: ColumnType::Timestamp, value: |r| ts(r.start_unix_ns) },
    Column { name: "window_end_ts", ty: ColumnType::Timestamp, value: |r| ts(r.at_unix_ns) },
    Column { name: "namespace", ty: ColumnType::Text, value: |r| text(&r.item.line.namespace) },
    Column { name: "workload_kind", ty: ColumnType::Text, value: |r| text(&r.item.line.workload_kind) },
    Column { name: "workload", ty: ColumnType::Text, value: |r| text(&r.item.line.workload) },
    Column { name: "containers", ty: ColumnType::Int64, value: |r| int(r.item.line.containers.into()) },
    Column { name: "cost", ty: ColumnType::Float64, value: |r| float(r.item.line.cost) },
    Column { name: "cpu_cost", ty: ColumnType::Float64, value: |r| float(r.item.line.cpu_cost) },
    Column { name: "memory_cost", ty: ColumnType::Float64, value: |r| float(r.item.line.memory_cost) },
    Column { name: "waste", ty: ColumnType::Float64, value: |r| float(r.item.line.waste) },
    Column { name: "monthly_cost", ty: ColumnType::Float64, value: |r| float(r.item.line.monthly_cost) },
    Column { name: "monthly_waste", ty: ColumnType::Float64, value: |r| float(r.item.line.monthly_waste) },
    Column { name: "monthly_saving", ty: ColumnType::Float64, value: |r| float(r.item.line.monthly_saving) },
    Column { name: "cpu_request_cores", ty: ColumnType::Float64, value: |r| float(r.item.line.cpu_request_cores) },
    Column { name: "cpu_usage_cores", ty: ColumnType::Float64, value: |r| float(r.item.line.cpu_usage_cores) },
    Column { name: "memory_request_bytes", ty: ColumnType::Float64, value: |r| float(r.item.line.memory_request_bytes) },
    Column { name: "memory_usage_bytes", ty: ColumnType::Float64, value: |r| float(r.item.line.memory_usage_bytes) },
    Column { name: "container_hours", ty: ColumnType::Float64, value: |r| float(r.item.line.hours) },
    Column { name: "currency", ty: ColumnType::Text, value: |r| text(&r.currency) },
    Column { name: "cpu_core_hour_price", ty: ColumnType::Float64, value: |r| float(r.item.cpu_core_hour) },
    Column { name: "memory_gib_hour_price", ty: ColumnType::Float64, value: |r| float(r.item.memory_gib_hour) },
];

type U = Row<v1::UpdateDecision>;

/// `updates`: the update decision for every running workload container's
/// image, as `upid updates` shows it, at the time the report was written.
#[rustfmt::skip]
pub static UPDATES: &[Column<U>] = &[
    Column { name: "checked_ts", ty: ColumnType::Timestamp, value: |r| ts(r.item.checked_unix_ns) },
    Column { name: "namespace", ty: ColumnType::Text, value: |r| text(&r.item.namespace) },
    Column { name: "workload_kind", ty: ColumnType::Text, value: |r| text(&r.item.workload_kind) },
    Column { name: "workload", ty: ColumnType::Text, value: |r| text(&r.item.workload) },
    Column { name: "container", ty: ColumnType::Text, value: |r| text(&r.item.container) },
    Column { name: "container_ids", ty: ColumnType::TextList, value: |r| list(&r.item.container_ids) },
    Column { name: "nodes", ty: ColumnType::TextList, value: |r| list(&r.item.nodes) },
    Column { name: "current", ty: ColumnType::Text, value: |r| text(&r.item.current) },
    Column { name: "running_digest", ty: ColumnType::Text, value: |r| text(&r.item.running_digest) },
    Column { name: "candidate", ty: ColumnType::Text, value: |r| opt_text(r.item.candidate.as_ref()) },
    Column { name: "change", ty: ColumnType::Text, value: |r| text(&r.item.change) },
    Column { name: "decision", ty: ColumnType::Text, value: |r| text(&r.item.decision) },
    Column { name: "policy", ty: ColumnType::Text, value: |r| text(&r.item.policy) },
    Column { name: "policy_source", ty: ColumnType::Text, value: |r| text(&r.item.policy_source) },
    Column { name: "candidate_age_s", ty: ColumnType::Int64, value: |r| r.item.candidate_age_s.map_or(Value::Null, Value::BigInt) },
    Column { name: "candidate_age_unknown", ty: ColumnType::Text, value: |r| text(&r.item.candidate_age_unknown) },
    Column { name: "newest", ty: ColumnType::Text, value: |r| opt_text(r.item.newest.as_ref()) },
    Column { name: "registry_error", ty: ColumnType::Text, value: |r| text(&r.item.registry_error) },
    Column { name: "reason", ty: ColumnType::Text, value: |r| text(&r.item.reason) },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_parse_in_a_fixed_order_and_name_unknown_tables() {
        assert_eq!(Table::parse_list::<&str>(&[]), Ok(Table::ALL.to_vec()));
        assert_eq!(
            Table::parse_list(&["cost", "samples", "cost"]),
            Ok(vec![Table::Samples, Table::Cost])
        );
        let e = Table::parse_list(&["samples", "usage"])
            .err()
            .unwrap_or_default();
        assert_eq!(
            e,
            "unknown table \"usage\": use samples, containers, rightsizing, idle, cost, updates"
        );
    }

    #[test]
    fn text_lists_keep_empty_items_and_empty_lists_apart() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("lists.parquet");
        let columns: &[Column<Vec<String>>] = &[Column {
            name: "l",
            ty: ColumnType::TextList,
            value: |r| list(r),
        }];
        let rows: Vec<Vec<String>> = [&[][..], &[""], &["a"], &["", "b"], &["a", "", "c"]]
            .iter()
            .map(|r| r.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        super::super::writer::write_rows(columns, &rows, "", &file)?;
        let conn = duckdb::Connection::open_in_memory()?;
        let mut read = conn.prepare(&format!(
            "SELECT len(l), array_to_string(list_transform(l, lambda x: '<' || x || '>'), ',') \
             FROM read_parquet({})",
            super::super::writer::sql_string(&file)
        ))?;
        let got: Vec<(i64, String)> = read
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let want: Vec<(i64, String)> = [
            (0, ""),
            (1, "<>"),
            (1, "<a>"),
            (2, "<>,<b>"),
            (3, "<a>,<>,<c>"),
        ]
        .iter()
        .map(|(n, s)| (*n, (*s).to_owned()))
        .collect();
        assert_eq!(got, want);
        Ok(())
    }
}

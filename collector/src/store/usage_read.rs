//! The analysis' reads over `usage`: per-series facts, CPU histogram
//! buckets, daily memory peaks, quiet stretches and charged cost. Each is
//! one aggregate query, so the work stays inside DuckDB and what comes back
//! is small (a row per series, per series-day or per series-bucket).
//!
//! A series' identity (namespace, workload, container name, node, image) is
//! that of its latest row; scope filters match rows.
//!
//! Each read is answered from the hourly summary (`usage_summary_read`)
//! when the summary can answer it exactly, else from `usage` rows with the
//! queries below (the reference the summary is tested against).

use duckdb::{Row, ToSql, params_from_iter};

use super::query::{QueryError, Reader, sql};
use super::usage_summary::MIN_CPU_HALF_LIFE_S;

/// Where the analysis reads come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UsageReadPath {
    /// The hourly summary wherever it answers exactly (in step with
    /// `usage`, built with the CPU histogram settings asked for, a range
    /// after 1970), else `usage` rows.
    #[default]
    Summary,
    /// Always `usage` rows: the reference answers, slow on long histories.
    Raw,
}

/// Which rows an analysis reads: a time range and identity filters
/// (`None` matches everything).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageScope {
    /// Oldest row (interval start, inclusive).
    pub from_unix_ns: i64,
    /// Newest row (interval start, exclusive).
    pub until_unix_ns: i64,
    /// Kubernetes namespace or compose project.
    pub namespace: Option<String>,
    /// Workload name.
    pub workload: Option<String>,
    /// Node name.
    pub node: Option<String>,
    /// Pod name.
    pub pod: Option<String>,
    /// Container name.
    pub container: Option<String>,
    /// Summary or `usage` rows.
    pub read_path: UsageReadPath,
}

/// `WHERE` clause of [`UsageScope`]: parameters `$1`..`$7`.
const SCOPE_WHERE: &str = "ts_unix_ns >= $1 AND ts_unix_ns < $2
    AND ($3::VARCHAR IS NULL OR namespace = $3::VARCHAR)
    AND ($4::VARCHAR IS NULL OR workload = $4::VARCHAR)
    AND ($5::VARCHAR IS NULL OR node = $5::VARCHAR)
    AND ($6::VARCHAR IS NULL OR pod = $6::VARCHAR)
    AND ($7::VARCHAR IS NULL OR container = $7::VARCHAR)";

impl UsageScope {
    fn params(&self) -> Vec<Box<dyn ToSql>> {
        vec![
            Box::new(self.from_unix_ns),
            Box::new(self.until_unix_ns),
            Box::new(self.namespace.clone()),
            Box::new(self.workload.clone()),
            Box::new(self.node.clone()),
            Box::new(self.pod.clone()),
            Box::new(self.container.clone()),
        ]
    }
}

/// Who a series is: its latest row's identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesIdentity {
    /// `usage.series_key`.
    pub series_key: String,
    /// Node.
    pub node: String,
    /// Container id ('' when unknown).
    pub container_id: String,
    /// Kubernetes namespace or compose project.
    pub namespace: String,
    /// Pod name ('' outside Kubernetes).
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Workload kind (`Deployment`, `ComposeService`, ...).
    pub workload_kind: String,
    /// Workload name.
    pub workload: String,
    /// Image reference.
    pub image: String,
}

/// Which minutes count as active for idle detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivityThresholds {
    /// CPU at or above this (cores) is activity.
    pub cpu_cores: f64,
    /// Network at or above this (rx + tx bytes/s) is activity.
    pub net_bytes_per_s: f64,
}

/// Prices as SQL sees them: a default and per-node overrides, each
/// (vCPU-hour, GiB-hour).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlPrices {
    /// Default (vCPU-hour, GiB-hour).
    pub default: (f64, f64),
    /// Node name → (vCPU-hour, GiB-hour).
    pub nodes: Vec<(String, f64, f64)>,
}

impl SqlPrices {
    /// `prices(node, cpu, mem)` as a CTE; a node not listed gets the
    /// default through `coalesce`.
    pub(super) fn cte(&self) -> String {
        let mut values = vec!["(NULL::VARCHAR, 0.0::DOUBLE, 0.0::DOUBLE)".to_owned()];
        for (node, cpu, mem) in &self.nodes {
            values.push(format!(
                "('{}', {}::DOUBLE, {}::DOUBLE)",
                node.replace('\'', "''"),
                finite(*cpu),
                finite(*mem)
            ));
        }
        format!(
            "prices(p_node, p_cpu, p_mem) AS (VALUES {})",
            values.join(", ")
        )
    }

    /// Hourly-price expressions for a row joined with `prices`.
    pub(super) fn cpu_price(&self) -> String {
        format!("coalesce(p_cpu, {}::DOUBLE)", finite(self.default.0))
    }

    pub(super) fn mem_price(&self) -> String {
        format!("coalesce(p_mem, {}::DOUBLE)", finite(self.default.1))
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// Per-row charged CPU cores and memory GiB (OpenCost: max(request, usage))
/// and the requested-but-unused part.
const CHARGED_CPU: &str = "greatest(coalesce(cpu_request_cores, 0), coalesce(cpu_cores, 0))";
const CHARGED_MEM_GIB: &str = "greatest(coalesce(memory_request_bytes, 0), coalesce(memory_working_set_bytes, 0)) / 1073741824.0";
const IDLE_CPU: &str = "greatest(coalesce(cpu_request_cores, 0) - coalesce(cpu_cores, 0), 0)";
const IDLE_MEM_GIB: &str = "greatest(coalesce(memory_request_bytes, 0)::DOUBLE - coalesce(memory_working_set_bytes, 0)::DOUBLE, 0) / 1073741824.0";

/// What one series did over the scope's range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesFacts {
    /// Who it is.
    pub id: SeriesIdentity,
    /// First and latest interval start.
    pub first_unix_ns: i64,
    /// See `first_unix_ns`.
    pub last_unix_ns: i64,
    /// Rows (1-minute intervals for agent data).
    pub samples: u64,
    /// Seconds of the intervals.
    pub covered_s: f64,
    /// Time-weighted mean and highest 1-minute CPU (cores).
    pub cpu_mean_cores: Option<f64>,
    /// See `cpu_mean_cores`.
    pub cpu_max_cores: Option<f64>,
    /// Time-weighted throttled share of CFS periods.
    pub cpu_throttled_ratio: Option<f64>,
    /// Seconds with a throttling figure (a CPU limit).
    pub throttle_covered_s: f64,
    /// Highest memory peak.
    pub memory_max_peak_bytes: Option<u64>,
    /// OOM kills, and the latest interval with one.
    pub oom_kills: u64,
    /// See `oom_kills`.
    pub last_oom_unix_ns: Option<i64>,
    /// Requests and limits of the latest row.
    pub cpu_request_cores: Option<f64>,
    /// See `cpu_request_cores`.
    pub cpu_limit_cores: Option<f64>,
    /// See `cpu_request_cores`.
    pub memory_request_bytes: Option<u64>,
    /// See `cpu_request_cores`.
    pub memory_limit_bytes: Option<u64>,
    /// Latest interval where CPU or network reached the activity
    /// thresholds (`None` also when read without thresholds).
    pub last_active_unix_ns: Option<i64>,
    /// Some row had a network figure.
    pub has_network: bool,
    /// Over the run-rate stretch (from `run_rate_from_unix_ns`): seconds
    /// covered, charged cost, and mean CPU and working set.
    pub run_rate_covered_s: f64,
    /// See `run_rate_covered_s`.
    pub run_rate_cost: f64,
    /// See `run_rate_covered_s`.
    pub run_rate_cpu_mean_cores: Option<f64>,
    /// See `run_rate_covered_s`.
    pub run_rate_memory_mean_bytes: Option<f64>,
}

/// Daily memory peak of one series (UTC days).
#[derive(Debug, Clone, PartialEq)]
pub struct DailyPeak {
    /// `usage.series_key`.
    pub series_key: String,
    /// Start of the day, Unix ns.
    pub day_unix_ns: i64,
    /// Highest memory in the day.
    pub peak_bytes: u64,
    /// OOM kills that day.
    pub oom_kills: u64,
    /// Memory when the OOM killer struck: the higher of the limit and the
    /// peak of the intervals with a kill.
    pub oom_base_bytes: Option<u64>,
}

/// Weight of one CPU histogram bucket of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuBucket {
    /// `usage.series_key`.
    pub series_key: String,
    /// Bucket index (see `analysis::histogram`).
    pub bucket: usize,
    /// Decayed, time-weighted sample weight.
    pub weight: f64,
}

/// A series' quiet stretch: rows after its workload's last active minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuietStretch {
    /// `usage.series_key`.
    pub series_key: String,
    /// Highest 1-minute CPU (cores) and network rate (bytes/s).
    pub cpu_max_cores: Option<f64>,
    /// Time-weighted CPU sum (core-seconds) and the seconds it covers.
    pub cpu_core_s: f64,
    /// See `cpu_core_s`.
    pub cpu_covered_s: f64,
    /// See `cpu_max_cores`.
    pub net_max_bytes_per_s: Option<f64>,
    /// rx + tx bytes.
    pub net_bytes: u64,
    /// Charged cost of the stretch.
    pub cost: f64,
}

/// Charged cost of one series over a cost window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesCost {
    /// Who it is.
    pub id: SeriesIdentity,
    /// Charged cost, and its CPU and memory parts.
    pub cost: f64,
    /// See `cost`.
    pub cpu_cost: f64,
    /// See `cost`.
    pub memory_cost: f64,
    /// Requested and unused.
    pub waste: f64,
    /// Cost and waste over the run-rate stretch, and the seconds it covers.
    pub run_rate_cost: f64,
    /// See `run_rate_cost`.
    pub run_rate_waste: f64,
    /// See `run_rate_cost`.
    pub run_rate_covered_s: f64,
    /// First and latest row.
    pub first_unix_ns: i64,
    /// See `first_unix_ns`.
    pub last_unix_ns: i64,
    /// Seconds charged.
    pub covered_s: f64,
    /// Time-weighted means of requests and usage.
    pub cpu_request_core_s: f64,
    /// See `cpu_request_core_s`.
    pub cpu_usage_core_s: f64,
    /// See `cpu_request_core_s`.
    pub memory_request_byte_s: f64,
    /// See `cpu_request_core_s`.
    pub memory_usage_byte_s: f64,
}

/// Identity columns, latest row first (a CTE or query over `usage`).
const IDENTITY: &str = "series_key,
    arg_max(node, ts_unix_ns), arg_max(container_id, ts_unix_ns),
    arg_max(namespace, ts_unix_ns), arg_max(pod, ts_unix_ns),
    arg_max(container, ts_unix_ns), arg_max(workload_kind, ts_unix_ns),
    arg_max(workload, ts_unix_ns), arg_max(image, ts_unix_ns)";

fn identity(r: &Row<'_>) -> duckdb::Result<SeriesIdentity> {
    Ok(SeriesIdentity {
        series_key: r.get(0)?,
        node: r.get(1)?,
        container_id: r.get(2)?,
        namespace: r.get(3)?,
        pod: r.get(4)?,
        container: r.get(5)?,
        workload_kind: r.get(6)?,
        workload: r.get(7)?,
        image: r.get(8)?,
    })
}

/// [`SeriesFacts`] from a row of identity and facts columns, in the order
/// both facts queries (usage rows and summary) select them.
pub(super) fn facts_row(r: &Row<'_>) -> duckdb::Result<SeriesFacts> {
    Ok(SeriesFacts {
        id: identity(r)?,
        first_unix_ns: r.get(9)?,
        last_unix_ns: r.get(10)?,
        samples: r.get::<_, i64>(11)?.max(0).unsigned_abs(),
        covered_s: r.get::<_, Option<f64>>(12)?.unwrap_or(0.0),
        cpu_mean_cores: r.get(13)?,
        cpu_max_cores: r.get(14)?,
        cpu_throttled_ratio: r.get(15)?,
        throttle_covered_s: r.get::<_, Option<f64>>(16)?.unwrap_or(0.0),
        memory_max_peak_bytes: r.get(17)?,
        oom_kills: r.get(18)?,
        last_oom_unix_ns: r.get(19)?,
        cpu_request_cores: r.get(20)?,
        cpu_limit_cores: r.get(21)?,
        memory_request_bytes: r.get(22)?,
        memory_limit_bytes: r.get(23)?,
        last_active_unix_ns: r.get(24)?,
        has_network: r.get::<_, Option<bool>>(25)?.unwrap_or(false),
        run_rate_covered_s: r.get::<_, Option<f64>>(26)?.unwrap_or(0.0),
        run_rate_cost: r.get::<_, Option<f64>>(27)?.unwrap_or(0.0),
        run_rate_cpu_mean_cores: r.get(28)?,
        run_rate_memory_mean_bytes: r.get(29)?,
    })
}

/// [`SeriesCost`] from a row of identity and cost columns, in the order
/// both cost queries select them.
pub(super) fn cost_row(r: &Row<'_>) -> duckdb::Result<SeriesCost> {
    Ok(SeriesCost {
        id: identity(r)?,
        cost: r.get(9)?,
        cpu_cost: r.get(10)?,
        memory_cost: r.get(11)?,
        waste: r.get(12)?,
        run_rate_cost: r.get(13)?,
        run_rate_waste: r.get(14)?,
        run_rate_covered_s: r.get(15)?,
        first_unix_ns: r.get(16)?,
        last_unix_ns: r.get(17)?,
        covered_s: r.get(18)?,
        cpu_request_core_s: r.get(19)?,
        cpu_usage_core_s: r.get(20)?,
        memory_request_byte_s: r.get(21)?,
        memory_usage_byte_s: r.get(22)?,
    })
}

/// A quiet-stretch row: series key, CPU max, core-seconds, covered
/// seconds, network max rate, network bytes, cost (both read paths).
pub(super) fn quiet_stretch(r: &Row<'_>) -> duckdb::Result<QuietStretch> {
    Ok(QuietStretch {
        series_key: r.get(0)?,
        cpu_max_cores: r.get(1)?,
        cpu_core_s: r.get(2)?,
        cpu_covered_s: r.get(3)?,
        net_max_bytes_per_s: r.get(4)?,
        net_bytes: r.get(5)?,
        cost: r.get(6)?,
    })
}

impl Reader {
    /// Facts of every series in `scope`; `run_rate_from_unix_ns` starts the
    /// stretch monthly figures are scaled from. Without `activity` the
    /// latest active minute is not looked for (`None`).
    pub fn usage_series(
        &self,
        scope: &UsageScope,
        activity: Option<ActivityThresholds>,
        prices: &SqlPrices,
        run_rate_from_unix_ns: i64,
    ) -> Result<Vec<SeriesFacts>, QueryError> {
        if self.summary_for(scope)?.is_some() {
            return self.summary_series(scope, activity, prices, run_rate_from_unix_ns);
        }
        let cost = format!(
            "interval_s / 3600.0 * ({CHARGED_CPU} * {} + {CHARGED_MEM_GIB} * {})",
            prices.cpu_price(),
            prices.mem_price()
        );
        let query = format!(
            "WITH {prices_cte}
            SELECT {IDENTITY},
                min(ts_unix_ns), max(ts_unix_ns), count(*), sum(interval_s),
                sum(cpu_cores * interval_s) / nullif(sum(interval_s) FILTER (cpu_cores IS NOT NULL), 0),
                max(cpu_cores),
                sum(cpu_throttled_ratio * interval_s) / nullif(sum(interval_s) FILTER (cpu_throttled_ratio IS NOT NULL), 0),
                coalesce(sum(interval_s) FILTER (cpu_throttled_ratio IS NOT NULL), 0),
                max(greatest(coalesce(memory_peak_bytes, memory_working_set_bytes), coalesce(memory_working_set_bytes, memory_peak_bytes))),
                coalesce(sum(oom_kills), 0)::UBIGINT,
                max(ts_unix_ns) FILTER (oom_kills > 0),
                arg_max(cpu_request_cores, ts_unix_ns), arg_max(cpu_limit_cores, ts_unix_ns),
                arg_max(memory_request_bytes, ts_unix_ns), arg_max(memory_limit_bytes, ts_unix_ns),
                max(ts_unix_ns) FILTER (cpu_cores >= $8 OR (coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0)) / nullif(interval_s, 0) >= $9),
                bool_or(net_rx_bytes IS NOT NULL OR net_tx_bytes IS NOT NULL),
                coalesce(sum(interval_s) FILTER (ts_unix_ns >= $10), 0),
                coalesce(sum({cost}) FILTER (ts_unix_ns >= $10), 0),
                sum(cpu_cores * interval_s) FILTER (ts_unix_ns >= $10) / nullif(sum(interval_s) FILTER (ts_unix_ns >= $10 AND cpu_cores IS NOT NULL), 0),
                sum(memory_working_set_bytes::DOUBLE * interval_s) FILTER (ts_unix_ns >= $10) / nullif(sum(interval_s) FILTER (ts_unix_ns >= $10 AND memory_working_set_bytes IS NOT NULL), 0)
            FROM usage LEFT JOIN prices ON p_node = node
            WHERE {SCOPE_WHERE}
            GROUP BY series_key",
            prices_cte = prices.cte(),
        );
        let mut params = scope.params();
        params.push(Box::new(activity.map(|a| a.cpu_cores)));
        params.push(Box::new(activity.map(|a| a.net_bytes_per_s)));
        params.push(Box::new(run_rate_from_unix_ns));
        let conn = self.conn();
        let mut stmt = conn.prepare(&query).map_err(sql("usage per series"))?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), facts_row)
            .map_err(sql("usage per series"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("usage per series"))
    }

    /// Decayed CPU histogram buckets of every series: weight = interval
    /// seconds × 2^((t − until) / half_life). `bucket_sql` is the bucket
    /// index expression over the column `cpu_cores`.
    pub fn usage_cpu_buckets(
        &self,
        scope: &UsageScope,
        bucket_sql: &str,
        half_life_s: f64,
    ) -> Result<Vec<CpuBucket>, QueryError> {
        if let Some(state) = self.summary_for(scope)? {
            // The summary's weights hold its own bucket index and half-life.
            let half_life_s = half_life_s.max(1.0);
            if state.cpu_bucket_sql == bucket_sql
                && state.cpu_half_life_s == half_life_s
                && half_life_s >= MIN_CPU_HALF_LIFE_S
            {
                return self.summary_cpu_buckets(scope, bucket_sql, half_life_s);
            }
        }
        let query = format!(
            "SELECT series_key, {bucket} AS b,
                sum(interval_s * pow(2.0, (ts_unix_ns - $2) / 1e9 / $8))
            FROM usage
            WHERE {SCOPE_WHERE} AND cpu_cores IS NOT NULL AND isfinite(cpu_cores)
            GROUP BY series_key, b",
            bucket = bucket_sql,
        );
        let mut params = scope.params();
        params.push(Box::new(half_life_s.max(1.0)));
        let conn = self.conn();
        let mut stmt = conn.prepare(&query).map_err(sql("CPU histogram"))?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), |r| {
                Ok(CpuBucket {
                    series_key: r.get(0)?,
                    bucket: usize::try_from(r.get::<_, i32>(1)?.max(0)).unwrap_or(0),
                    weight: r.get(2)?,
                })
            })
            .map_err(sql("CPU histogram"))?;
        rows.collect::<Result<_, _>>().map_err(sql("CPU histogram"))
    }

    /// Daily memory peaks (UTC days) of every series, with the day's OOM
    /// kills.
    pub fn usage_daily_peaks(&self, scope: &UsageScope) -> Result<Vec<DailyPeak>, QueryError> {
        if self.summary_for(scope)?.is_some() {
            return self.summary_daily_peaks(scope);
        }
        let query = format!(
            "SELECT series_key, (ts_unix_ns // 86400000000000) * 86400000000000 AS day,
                max(greatest(coalesce(memory_peak_bytes, memory_working_set_bytes), coalesce(memory_working_set_bytes, memory_peak_bytes))),
                coalesce(sum(oom_kills), 0)::UBIGINT,
                max(greatest(coalesce(memory_limit_bytes, 0), coalesce(memory_peak_bytes, 0), coalesce(memory_working_set_bytes, 0))) FILTER (oom_kills > 0)
            FROM usage
            WHERE {SCOPE_WHERE}
            GROUP BY series_key, day
            HAVING count(memory_peak_bytes) + count(memory_working_set_bytes) > 0"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&query).map_err(sql("daily memory peaks"))?;
        let rows = stmt
            .query_map(params_from_iter(scope.params().iter()), |r| {
                Ok(DailyPeak {
                    series_key: r.get(0)?,
                    day_unix_ns: r.get(1)?,
                    peak_bytes: r.get::<_, Option<u64>>(2)?.unwrap_or(0),
                    oom_kills: r.get(3)?,
                    oom_base_bytes: r.get::<_, Option<u64>>(4)?.filter(|b| *b > 0),
                })
            })
            .map_err(sql("daily memory peaks"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("daily memory peaks"))
    }

    /// The quiet stretch of every series: its rows after the latest active
    /// minute of any series of the same workload (latest identity).
    /// `facts` are [`Reader::usage_series`] of the same scope with the same
    /// `activity` (the summary path takes the active minutes from them).
    pub fn usage_quiet_stretches(
        &self,
        scope: &UsageScope,
        activity: ActivityThresholds,
        prices: &SqlPrices,
        facts: &[SeriesFacts],
    ) -> Result<Vec<QuietStretch>, QueryError> {
        if self.summary_for(scope)?.is_some() {
            return self.summary_quiet_stretches(scope, prices, facts);
        }
        let query = format!(
            "WITH {prices_cte},
            u AS (SELECT * FROM usage WHERE {SCOPE_WHERE}),
            ids AS (
                SELECT series_key, arg_max(namespace, ts_unix_ns) AS ns,
                    arg_max(workload_kind, ts_unix_ns) AS kind, arg_max(workload, ts_unix_ns) AS wl,
                    max(ts_unix_ns) FILTER (cpu_cores >= $8 OR (coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0)) / nullif(interval_s, 0) >= $9) AS active
                FROM u GROUP BY series_key),
            w AS (SELECT ns, kind, wl, max(active) AS active FROM ids GROUP BY ns, kind, wl),
            q AS (SELECT ids.series_key, w.active FROM ids JOIN w USING (ns, kind, wl))
            SELECT u.series_key, max(cpu_cores),
                coalesce(sum(cpu_cores * interval_s), 0),
                coalesce(sum(interval_s) FILTER (cpu_cores IS NOT NULL), 0),
                max((coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0)) / nullif(interval_s, 0))
                    FILTER (net_rx_bytes IS NOT NULL OR net_tx_bytes IS NOT NULL),
                coalesce(sum(coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0)), 0)::UBIGINT,
                coalesce(sum(interval_s / 3600.0 * ({CHARGED_CPU} * {cpu} + {CHARGED_MEM_GIB} * {mem})), 0)
            FROM u JOIN q USING (series_key) LEFT JOIN prices ON p_node = u.node
            WHERE q.active IS NULL OR u.ts_unix_ns > q.active
            GROUP BY u.series_key",
            prices_cte = prices.cte(),
            cpu = prices.cpu_price(),
            mem = prices.mem_price(),
        );
        let mut params = scope.params();
        params.push(Box::new(activity.cpu_cores));
        params.push(Box::new(activity.net_bytes_per_s));
        let conn = self.conn();
        let mut stmt = conn.prepare(&query).map_err(sql("quiet stretches"))?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), quiet_stretch)
            .map_err(sql("quiet stretches"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("quiet stretches"))
    }

    /// Charged cost of every series over `scope`'s range (OpenCost's rule:
    /// max(request, usage) per interval), with the run-rate stretch from
    /// `run_rate_from_unix_ns`.
    pub fn usage_costs(
        &self,
        scope: &UsageScope,
        prices: &SqlPrices,
        run_rate_from_unix_ns: i64,
    ) -> Result<Vec<SeriesCost>, QueryError> {
        if self.summary_for(scope)?.is_some() {
            return self.summary_costs(scope, prices, run_rate_from_unix_ns);
        }
        let (cpu, mem) = (prices.cpu_price(), prices.mem_price());
        let cost =
            format!("interval_s / 3600.0 * ({CHARGED_CPU} * {cpu} + {CHARGED_MEM_GIB} * {mem})");
        let waste = format!("interval_s / 3600.0 * ({IDLE_CPU} * {cpu} + {IDLE_MEM_GIB} * {mem})");
        let query = format!(
            "WITH {prices_cte}
            SELECT {IDENTITY},
                coalesce(sum({cost}), 0),
                coalesce(sum(interval_s / 3600.0 * {CHARGED_CPU} * {cpu}), 0),
                coalesce(sum(interval_s / 3600.0 * {CHARGED_MEM_GIB} * {mem}), 0),
                coalesce(sum({waste}), 0),
                coalesce(sum({cost}) FILTER (ts_unix_ns >= $8), 0),
                coalesce(sum({waste}) FILTER (ts_unix_ns >= $8), 0),
                coalesce(sum(interval_s) FILTER (ts_unix_ns >= $8), 0),
                min(ts_unix_ns),
                max(ts_unix_ns),
                coalesce(sum(interval_s), 0),
                coalesce(sum(interval_s * coalesce(cpu_request_cores, 0)), 0),
                coalesce(sum(interval_s * coalesce(cpu_cores, 0)), 0),
                coalesce(sum(interval_s * coalesce(memory_request_bytes, 0)::DOUBLE), 0),
                coalesce(sum(interval_s * coalesce(memory_working_set_bytes, 0)::DOUBLE), 0)
            FROM usage LEFT JOIN prices ON p_node = node
            WHERE {SCOPE_WHERE}
            GROUP BY series_key",
            prices_cte = prices.cte(),
        );
        let mut params = scope.params();
        params.push(Box::new(run_rate_from_unix_ns));
        let conn = self.conn();
        let mut stmt = conn.prepare(&query).map_err(sql("cost per series"))?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), cost_row)
            .map_err(sql("cost per series"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("cost per series"))
    }
}

//! The analysis reads answered from the hourly summary (see
//! `usage_summary`): the same questions as `usage_read`'s queries over
//! `usage`, with the same answers.
//!
//! A read range rarely falls on hours. It is split into whole hours, read
//! from `usage_hourly` (and `usage_hourly_cpu`), and the rest, read from
//! `usage` rows with the aggregates the summary is built with (`PARTIAL`):
//! the partial hours at either end, and the hour holding any cut point
//! inside the range (the start of the run-rate stretch). Both kinds of part
//! carry `seg_unix_ns`, the start of the stretch between cut points their
//! rows lie in, so "rows from the cut on" is `seg_unix_ns >= cut` for both.
//! Parts are aggregated per series identity (an integer), then per series
//! (`series_key`) with the latest identity's names.
//!
//! The latest active minute (idle detection) is exact: the summary says in
//! which hour a series was last active (an hour holds an active row exactly
//! when its highest CPU or highest network rate reaches the threshold), and
//! a small query over that hour's rows finds the minute.

use std::collections::{BTreeSet, HashMap};

use duckdb::{Connection, ToSql, params_from_iter};

use super::query::{QueryError, Reader, sql};
use super::usage_read::{
    ActivityThresholds, CpuBucket, DailyPeak, QuietStretch, SeriesCost, SeriesFacts, SqlPrices,
    UsageReadPath, UsageScope, cost_row, facts_row,
};
use super::usage_summary::{
    HOUR_NS, HOUR_OF_TS, IDENTITY_COLUMNS, MIN_CPU_HALF_LIFE_S, PARTIAL, SummaryState, ceil_hour,
    floor_hour,
};

const DAY_NS: i64 = 86_400_000_000_000;

/// Bytes in a GiB (prices are per GiB-hour).
const GIB: &str = "1073741824.0";

/// The series identities in scope; parameters `$1`..`$5`.
const SCOPE_IDS: &str = "ids AS (
    SELECT series_id FROM usage_series
    WHERE ($1::VARCHAR IS NULL OR namespace = $1::VARCHAR)
      AND ($2::VARCHAR IS NULL OR workload = $2::VARCHAR)
      AND ($3::VARCHAR IS NULL OR node = $3::VARCHAR)
      AND ($4::VARCHAR IS NULL OR pod = $4::VARCHAR)
      AND ($5::VARCHAR IS NULL OR container = $5::VARCHAR))";

/// A `usage` row reaching the activity thresholds `$6` (cores) and `$7`
/// (bytes/s): as `usage_read` tests it.
const ACTIVE_ROW: &str = "(cpu_cores >= $6 OR (coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0)) / nullif(interval_s, 0) >= $7)";

/// Which parts of a range come from where.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    /// Whole hours read from the summary: starts in [.0, .1), except
    /// `excluded`.
    hours: Option<(i64, i64)>,
    /// Whole hours holding a cut point, read from `usage`.
    excluded: Vec<i64>,
    /// Stretches read from `usage` rows, [start, end), sorted, disjoint.
    raw: Vec<(i64, i64)>,
}

impl Plan {
    /// The plan of [from, until) with cut points `cuts` (those inside the
    /// range and off the hour make their hour a `usage` read).
    pub(super) fn new(from: i64, until: i64, cuts: &[i64]) -> Plan {
        let first = ceil_hour(from);
        let end = floor_hour(until);
        let Some(first) = first.filter(|f| *f < end) else {
            return Plan {
                hours: None,
                excluded: Vec::new(),
                raw: vec![(from, until)],
            };
        };
        let excluded: BTreeSet<i64> = cuts
            .iter()
            .filter(|c| from < **c && **c < until && floor_hour(**c) != **c)
            .map(|c| floor_hour(*c))
            .filter(|h| (first..end).contains(h))
            .collect();
        let mut raw = Vec::new();
        if from < first {
            raw.push((from, first));
        }
        raw.extend(excluded.iter().map(|h| (*h, h + HOUR_NS)));
        if end < until {
            raw.push((end, until));
        }
        Plan {
            hours: Some((first, end)),
            excluded: excluded.into_iter().collect(),
            raw: merge(raw),
        }
    }

    /// Condition on a summary table's `hour_unix_ns`.
    fn hours_where(&self) -> String {
        let Some((first, end)) = self.hours else {
            return "false".to_owned();
        };
        let mut s = format!("hour_unix_ns >= {first} AND hour_unix_ns < {end}");
        if !self.excluded.is_empty() {
            let list: Vec<String> = self.excluded.iter().map(i64::to_string).collect();
            s.push_str(&format!(" AND hour_unix_ns NOT IN ({})", list.join(", ")));
        }
        s
    }

    /// Condition on `usage.ts_unix_ns` for the rows read directly.
    fn raw_where(&self) -> String {
        ranges_where(&self.raw)
    }
}

fn merge(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => out.push(r),
        }
    }
    out
}

/// `ts_unix_ns` in one of `ranges` (constant bounds, so DuckDB skips row
/// groups by their min/max).
fn ranges_where(ranges: &[(i64, i64)]) -> String {
    if ranges.is_empty() {
        return "false".to_owned();
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|(a, b)| format!("(ts_unix_ns >= {a} AND ts_unix_ns < {b})"))
        .collect();
    format!("({})", parts.join(" OR "))
}

/// SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `parts` CTE over `plan` (needs `ids`): summary hours and `usage`
/// rows aggregated alike, per series identity and stretch. `cut` splits the
/// raw rows' stretches; `active` adds the exact latest active row of raw
/// parts (parameters `$6`, `$7`).
fn parts(plan: &Plan, cut: Option<i64>, active: bool) -> String {
    let seg = match cut {
        Some(c) => format!(
            "CASE WHEN ts_unix_ns >= {c} THEN greatest({HOUR_OF_TS}, {c}) ELSE {HOUR_OF_TS} END"
        ),
        None => HOUR_OF_TS.to_owned(),
    };
    let active = if active {
        format!("max(CASE WHEN {ACTIVE_ROW} THEN ts_unix_ns END)")
    } else {
        "NULL::BIGINT".to_owned()
    };
    format!(
        "parts AS (
        SELECT series_id, hour_unix_ns AS seg_unix_ns, false AS raw, NULL::BIGINT AS active_unix_ns,
            * EXCLUDE (series_id, hour_unix_ns)
        FROM usage_hourly
        WHERE {hours} AND series_id IN (SELECT series_id FROM ids)
        UNION ALL BY NAME
        SELECT s.series_id, {seg} AS seg_unix_ns, true AS raw, {active} AS active_unix_ns, {PARTIAL}
        FROM usage u JOIN usage_series s USING ({IDENTITY_COLUMNS})
        WHERE {raw} AND s.series_id IN (SELECT series_id FROM ids)
        GROUP BY s.series_id, seg_unix_ns)",
        hours = plan.hours_where(),
        raw = plan.raw_where(),
    )
}

/// Identity of the latest row, from per-identity aggregates `v`.
const LATEST_IDENTITY: &str = "s.series_key,
    arg_max(s.node, v.last_unix_ns), arg_max(s.container_id, v.last_unix_ns),
    arg_max(s.namespace, v.last_unix_ns), arg_max(s.pod, v.last_unix_ns),
    arg_max(s.container, v.last_unix_ns), arg_max(s.workload_kind, v.last_unix_ns),
    arg_max(s.workload, v.last_unix_ns), arg_max(s.image, v.last_unix_ns)";

fn scope_params(scope: &UsageScope) -> Vec<Box<dyn ToSql>> {
    vec![
        Box::new(scope.namespace.clone()),
        Box::new(scope.workload.clone()),
        Box::new(scope.node.clone()),
        Box::new(scope.pod.clone()),
        Box::new(scope.container.clone()),
    ]
}

fn rows<T>(
    conn: &Connection,
    what: &'static str,
    query: &str,
    params: &[Box<dyn ToSql>],
    map: impl FnMut(&duckdb::Row<'_>) -> duckdb::Result<T>,
) -> Result<Vec<T>, QueryError> {
    let mut stmt = conn.prepare(query).map_err(sql(what))?;
    let rows = stmt
        .query_map(params_from_iter(params.iter()), map)
        .map_err(sql(what))?;
    rows.collect::<Result<_, _>>().map_err(sql(what))
}

impl Reader {
    /// The summary's state when `scope` may be read from it: not asked for
    /// raw reads, a range after 1970, and a summary in step with `usage`
    /// (equal row counts; see `usage_summary` for how it is kept so). A
    /// summary out of step is logged and `usage` is read instead.
    pub(super) fn summary_for(
        &self,
        scope: &UsageScope,
    ) -> Result<Option<SummaryState>, QueryError> {
        if scope.read_path == UsageReadPath::Raw
            || scope.from_unix_ns < 0
            || scope.until_unix_ns <= scope.from_unix_ns
        {
            return Ok(None);
        }
        let conn = self.conn();
        let (in_step, bucket_sql, half_life): (bool, Option<String>, Option<f64>) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM usage) = (SELECT coalesce(sum(row_count), 0) FROM usage_hourly),
                    (SELECT max(cpu_bucket_sql) FROM usage_summary_state),
                    (SELECT max(cpu_half_life_s) FROM usage_summary_state)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(sql("usage summary state"))?;
        if !in_step {
            tracing::warn!(
                "the hourly usage summary is out of step with the usage table (rows written \
                 around the collector?): analysis reads usage rows, slowly, until the store is \
                 reopened, which rebuilds the hours that differ"
            );
            return Ok(None);
        }
        Ok(bucket_sql
            .zip(half_life)
            .map(|(cpu_bucket_sql, cpu_half_life_s)| SummaryState {
                cpu_bucket_sql,
                cpu_half_life_s,
            }))
    }

    /// [`Reader::usage_series`] from the summary.
    pub(super) fn summary_series(
        &self,
        scope: &UsageScope,
        activity: Option<ActivityThresholds>,
        prices: &SqlPrices,
        run_rate_from_unix_ns: i64,
    ) -> Result<Vec<SeriesFacts>, QueryError> {
        let rr = run_rate_from_unix_ns;
        let plan = Plan::new(scope.from_unix_ns, scope.until_unix_ns, &[rr]);
        let (cpu, mem) = (prices.cpu_price(), prices.mem_price());
        let f = format!("FILTER (seg_unix_ns >= {rr})");
        let query = format!(
            "WITH {prices_cte}, {SCOPE_IDS}, {parts},
            v AS (
                SELECT series_id, min(first_unix_ns) AS first_unix_ns, max(last_unix_ns) AS last_unix_ns,
                    sum(row_count) AS row_count, sum(interval_s) AS interval_s,
                    sum(cpu_core_s) AS cpu_core_s, sum(cpu_s) AS cpu_s, max(cpu_max_cores) AS cpu_max_cores,
                    sum(throttled_s) AS throttled_s, sum(throttle_s) AS throttle_s,
                    max(memory_peak_bytes) AS memory_peak_bytes, sum(oom_kills) AS oom_kills,
                    max(last_oom_unix_ns) AS last_oom_unix_ns,
                    arg_max(cpu_request_cores, cpu_request_unix_ns) AS cpu_request_cores,
                    max(cpu_request_unix_ns) AS cpu_request_unix_ns,
                    arg_max(cpu_limit_cores, cpu_limit_unix_ns) AS cpu_limit_cores,
                    max(cpu_limit_unix_ns) AS cpu_limit_unix_ns,
                    arg_max(memory_request_bytes, memory_request_unix_ns) AS memory_request_bytes,
                    max(memory_request_unix_ns) AS memory_request_unix_ns,
                    arg_max(memory_limit_bytes, memory_limit_unix_ns) AS memory_limit_bytes,
                    max(memory_limit_unix_ns) AS memory_limit_unix_ns,
                    max(active_unix_ns) AS active_unix_ns,
                    max(seg_unix_ns) FILTER (NOT raw AND (cpu_max_cores >= $6 OR activity_net_max >= $7)) AS active_hour_unix_ns,
                    bool_or(has_network) AS has_network,
                    sum(interval_s) {f} AS rr_s,
                    sum(charged_core_s) {f} AS rr_charged_core_s,
                    sum(charged_byte_s) {f} AS rr_charged_byte_s,
                    sum(cpu_core_s) {f} AS rr_cpu_core_s,
                    sum(cpu_s) {f} AS rr_cpu_s,
                    sum(ws_byte_s) {f} AS rr_ws_byte_s,
                    sum(ws_s) {f} AS rr_ws_s
                FROM parts GROUP BY series_id)
            SELECT {LATEST_IDENTITY},
                min(first_unix_ns), max(last_unix_ns), sum(row_count)::BIGINT, sum(interval_s),
                sum(cpu_core_s) / nullif(sum(cpu_s), 0), max(cpu_max_cores),
                sum(throttled_s) / nullif(sum(throttle_s), 0), coalesce(sum(throttle_s), 0),
                max(memory_peak_bytes), coalesce(sum(oom_kills), 0)::UBIGINT, max(last_oom_unix_ns),
                arg_max(cpu_request_cores, cpu_request_unix_ns), arg_max(cpu_limit_cores, cpu_limit_unix_ns),
                arg_max(memory_request_bytes, memory_request_unix_ns),
                arg_max(memory_limit_bytes, memory_limit_unix_ns),
                max(active_unix_ns), bool_or(has_network),
                coalesce(sum(rr_s), 0),
                coalesce(sum((rr_charged_core_s * {cpu} + rr_charged_byte_s / {GIB} * {mem}) / 3600.0), 0),
                sum(rr_cpu_core_s) / nullif(sum(rr_cpu_s), 0),
                sum(rr_ws_byte_s) / nullif(sum(rr_ws_s), 0),
                max(active_hour_unix_ns)
            FROM v JOIN usage_series s USING (series_id) LEFT JOIN prices ON p_node = s.node
            GROUP BY s.series_key",
            prices_cte = prices.cte(),
            parts = parts(&plan, Some(rr), true),
        );
        let mut params = scope_params(scope);
        params.push(Box::new(activity.map(|a| a.cpu_cores)));
        params.push(Box::new(activity.map(|a| a.net_bytes_per_s)));
        let conn = self.conn();
        let found = rows(&conn, "usage per series (summary)", &query, &params, |r| {
            Ok((facts_row(r)?, r.get::<_, Option<i64>>(30)?))
        })?;
        // Series whose latest activity lies in a summary hour: find the
        // minute in that hour's rows.
        let need: Vec<(&str, i64)> = found
            .iter()
            .filter_map(|(f, hour)| {
                let hour = (*hour)?;
                f.last_active_unix_ns
                    .is_none_or(|raw| raw < hour)
                    .then_some((f.id.series_key.as_str(), hour))
            })
            .collect();
        let mut exact: HashMap<String, i64> = HashMap::new();
        for chunk in need.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|(k, h)| format!("({}, {h})", quote(k)))
                .collect();
            let hours: Vec<(i64, i64)> = merge(
                chunk
                    .iter()
                    .map(|(_, h)| (*h, h.saturating_add(HOUR_NS)))
                    .collect(),
            );
            let query = format!(
                "WITH {SCOPE_IDS}, f(series_key, hour_unix_ns) AS (VALUES {values})
                SELECT s.series_key, max(u.ts_unix_ns)
                FROM usage u JOIN usage_series s USING ({IDENTITY_COLUMNS})
                JOIN f ON f.series_key = s.series_key
                WHERE {ranges} AND u.ts_unix_ns >= f.hour_unix_ns AND u.ts_unix_ns < f.hour_unix_ns + {HOUR_NS}
                  AND s.series_id IN (SELECT series_id FROM ids) AND {ACTIVE_ROW}
                GROUP BY s.series_key",
                values = values.join(", "),
                ranges = ranges_where(&hours),
            );
            for (k, t) in rows(&conn, "latest active minute", &query, &params, |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })? {
                exact.insert(k, t);
            }
        }
        Ok(found
            .into_iter()
            .map(|(mut f, _)| {
                if let Some(t) = exact.get(&f.id.series_key) {
                    f.last_active_unix_ns =
                        Some(f.last_active_unix_ns.map_or(*t, |raw| raw.max(*t)));
                }
                f
            })
            .collect())
    }

    /// [`Reader::usage_cpu_buckets`] from the summary (its bucket index and
    /// half-life are the ones asked for).
    pub(super) fn summary_cpu_buckets(
        &self,
        scope: &UsageScope,
        bucket_sql: &str,
        half_life_s: f64,
    ) -> Result<Vec<CpuBucket>, QueryError> {
        let plan = Plan::new(scope.from_unix_ns, scope.until_unix_ns, &[]);
        let until = scope.until_unix_ns;
        let query = format!(
            "WITH {SCOPE_IDS},
            parts AS (
                SELECT series_id, bucket, weight_s * pow(2.0, (hour_unix_ns - {until}) / 1e9 / $6) AS w
                FROM usage_hourly_cpu
                WHERE {hours} AND series_id IN (SELECT series_id FROM ids)
                UNION ALL
                SELECT s.series_id, {bucket_sql}, interval_s * pow(2.0, (ts_unix_ns - {until}) / 1e9 / $6)
                FROM usage u JOIN usage_series s USING ({IDENTITY_COLUMNS})
                WHERE {raw} AND s.series_id IN (SELECT series_id FROM ids)
                  AND cpu_cores IS NOT NULL AND isfinite(cpu_cores)),
            v AS (SELECT series_id, bucket, sum(w) AS w FROM parts GROUP BY series_id, bucket)
            SELECT s.series_key, v.bucket, sum(v.w)
            FROM v JOIN usage_series s USING (series_id)
            GROUP BY s.series_key, v.bucket",
            hours = plan.hours_where(),
            raw = plan.raw_where(),
        );
        let mut params = scope_params(scope);
        params.push(Box::new(half_life_s.max(MIN_CPU_HALF_LIFE_S)));
        let conn = self.conn();
        rows(&conn, "CPU histogram (summary)", &query, &params, |r| {
            Ok(CpuBucket {
                series_key: r.get(0)?,
                bucket: usize::try_from(r.get::<_, i32>(1)?.max(0)).unwrap_or(0),
                weight: r.get(2)?,
            })
        })
    }

    /// [`Reader::usage_daily_peaks`] from the summary.
    pub(super) fn summary_daily_peaks(
        &self,
        scope: &UsageScope,
    ) -> Result<Vec<DailyPeak>, QueryError> {
        let plan = Plan::new(scope.from_unix_ns, scope.until_unix_ns, &[]);
        let query = format!(
            "WITH {SCOPE_IDS}, {parts},
            v AS (
                SELECT series_id, seg_unix_ns // {DAY_NS} * {DAY_NS} AS day, max(memory_peak_bytes) AS peak,
                    sum(oom_kills) AS oom_kills, max(oom_base_bytes) AS oom_base
                FROM parts GROUP BY series_id, day)
            SELECT s.series_key, v.day, max(v.peak), coalesce(sum(v.oom_kills), 0)::UBIGINT, max(v.oom_base)
            FROM v JOIN usage_series s USING (series_id)
            GROUP BY s.series_key, v.day
            HAVING max(v.peak) IS NOT NULL",
            parts = parts(&plan, None, false),
        );
        let conn = self.conn();
        rows(
            &conn,
            "daily memory peaks (summary)",
            &query,
            &scope_params(scope),
            |r| {
                Ok(DailyPeak {
                    series_key: r.get(0)?,
                    day_unix_ns: r.get(1)?,
                    peak_bytes: r.get::<_, Option<u64>>(2)?.unwrap_or(0),
                    oom_kills: r.get(3)?,
                    oom_base_bytes: r.get::<_, Option<u64>>(4)?.filter(|b| *b > 0),
                })
            },
        )
    }

    /// [`Reader::usage_quiet_stretches`] from the summary; each workload's
    /// latest active minute comes from `facts` (with activity).
    pub(super) fn summary_quiet_stretches(
        &self,
        scope: &UsageScope,
        prices: &SqlPrices,
        facts: &[SeriesFacts],
    ) -> Result<Vec<QuietStretch>, QueryError> {
        if facts.is_empty() {
            return Ok(Vec::new());
        }
        let mut active: HashMap<(&str, &str, &str), Option<i64>> = HashMap::new();
        for f in facts {
            let a = active
                .entry((
                    f.id.namespace.as_str(),
                    f.id.workload_kind.as_str(),
                    f.id.workload.as_str(),
                ))
                .or_insert(None);
            *a = (*a).max(f.last_active_unix_ns);
        }
        let cut_of = |f: &SeriesFacts| {
            active
                .get(&(
                    f.id.namespace.as_str(),
                    f.id.workload_kind.as_str(),
                    f.id.workload.as_str(),
                ))
                .copied()
                .flatten()
        };
        let plan = Plan::new(scope.from_unix_ns, scope.until_unix_ns, &[]);
        let values: Vec<String> = facts
            .iter()
            .map(|f| {
                let cut = cut_of(f).map_or_else(|| "NULL".to_owned(), |c| c.to_string());
                format!("({}, {cut}::BIGINT)", quote(&f.id.series_key))
            })
            .collect();
        let cut_hours: BTreeSet<i64> = facts.iter().filter_map(cut_of).map(floor_hour).collect();
        let mut read = plan.raw.clone();
        read.extend(cut_hours.iter().map(|h| (*h, h.saturating_add(HOUR_NS))));
        let (cpu, mem) = (prices.cpu_price(), prices.mem_price());
        let (from, until) = (scope.from_unix_ns, scope.until_unix_ns);
        let query = format!(
            "WITH {prices_cte}, {SCOPE_IDS},
            c(series_key, cut) AS (VALUES {values}),
            vc AS (
                SELECT s.series_id, c.cut FROM usage_series s JOIN c USING (series_key)
                WHERE s.series_id IN (SELECT series_id FROM ids)),
            parts AS (
                SELECT series_id, cpu_max_cores, cpu_core_s, cpu_s, net_max_bytes_per_s, net_bytes,
                    charged_core_s, charged_byte_s
                FROM usage_hourly JOIN vc USING (series_id)
                WHERE {hours} AND (cut IS NULL OR hour_unix_ns > cut)
                UNION ALL BY NAME
                SELECT s.series_id, max(cpu_cores) AS cpu_max_cores,
                    sum(cpu_cores * interval_s) AS cpu_core_s,
                    sum(CASE WHEN cpu_cores IS NOT NULL THEN interval_s END) AS cpu_s,
                    max(CASE WHEN net_rx_bytes IS NOT NULL OR net_tx_bytes IS NOT NULL
                        THEN (coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0)) / nullif(interval_s, 0) END)
                        AS net_max_bytes_per_s,
                    sum(coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0))::UBIGINT AS net_bytes,
                    coalesce(sum(interval_s * greatest(coalesce(cpu_request_cores, 0.0), coalesce(cpu_cores, 0.0))), 0)
                        AS charged_core_s,
                    coalesce(sum(interval_s * greatest(coalesce(memory_request_bytes::DOUBLE, 0.0),
                        coalesce(memory_working_set_bytes::DOUBLE, 0.0))), 0) AS charged_byte_s
                FROM usage u JOIN usage_series s USING ({IDENTITY_COLUMNS}) JOIN vc ON vc.series_id = s.series_id
                WHERE {read} AND ts_unix_ns >= {from} AND ts_unix_ns < {until}
                  AND (cut IS NULL OR ts_unix_ns > cut)
                  AND ({raw} OR (cut IS NOT NULL AND {HOUR_OF_TS} = cut - ((cut % {HOUR_NS}) + {HOUR_NS}) % {HOUR_NS}))
                GROUP BY s.series_id)
            SELECT s.series_key, max(cpu_max_cores), coalesce(sum(cpu_core_s), 0), coalesce(sum(cpu_s), 0),
                max(net_max_bytes_per_s), coalesce(sum(net_bytes), 0)::UBIGINT,
                coalesce(sum((charged_core_s * {cpu} + charged_byte_s / {GIB} * {mem}) / 3600.0), 0)
            FROM parts JOIN usage_series s USING (series_id) LEFT JOIN prices ON p_node = s.node
            GROUP BY s.series_key",
            prices_cte = prices.cte(),
            values = values.join(", "),
            hours = plan.hours_where(),
            read = ranges_where(&merge(read)),
            raw = plan.raw_where(),
        );
        let conn = self.conn();
        rows(
            &conn,
            "quiet stretches (summary)",
            &query,
            &scope_params(scope),
            super::usage_read::quiet_stretch,
        )
    }

    /// [`Reader::usage_costs`] from the summary.
    pub(super) fn summary_costs(
        &self,
        scope: &UsageScope,
        prices: &SqlPrices,
        run_rate_from_unix_ns: i64,
    ) -> Result<Vec<SeriesCost>, QueryError> {
        let rr = run_rate_from_unix_ns;
        let plan = Plan::new(scope.from_unix_ns, scope.until_unix_ns, &[rr]);
        let (cpu, mem) = (prices.cpu_price(), prices.mem_price());
        let f = format!("FILTER (seg_unix_ns >= {rr})");
        let charged = |core: &str, byte: &str| {
            format!("coalesce(sum(({core} * {cpu} + {byte} / {GIB} * {mem}) / 3600.0), 0)")
        };
        let query = format!(
            "WITH {prices_cte}, {SCOPE_IDS}, {parts},
            v AS (
                SELECT series_id, min(first_unix_ns) AS first_unix_ns, max(last_unix_ns) AS last_unix_ns,
                    sum(interval_s) AS interval_s,
                    sum(charged_core_s) AS cc, sum(charged_byte_s) AS cb,
                    sum(idle_core_s) AS ic, sum(idle_byte_s) AS ib,
                    sum(charged_core_s) {f} AS rr_cc, sum(charged_byte_s) {f} AS rr_cb,
                    sum(idle_core_s) {f} AS rr_ic, sum(idle_byte_s) {f} AS rr_ib,
                    sum(interval_s) {f} AS rr_s,
                    sum(request_core_s) AS request_core_s, sum(cpu_core_s) AS cpu_core_s,
                    sum(request_byte_s) AS request_byte_s, sum(ws_byte_s) AS ws_byte_s
                FROM parts GROUP BY series_id)
            SELECT {LATEST_IDENTITY},
                {cost}, coalesce(sum(cc * {cpu} / 3600.0), 0), coalesce(sum(cb / {GIB} * {mem} / 3600.0), 0),
                {waste}, {rr_cost}, {rr_waste}, coalesce(sum(rr_s), 0),
                min(first_unix_ns), max(last_unix_ns), coalesce(sum(interval_s), 0),
                coalesce(sum(request_core_s), 0), coalesce(sum(cpu_core_s), 0),
                coalesce(sum(request_byte_s), 0), coalesce(sum(ws_byte_s), 0)
            FROM v JOIN usage_series s USING (series_id) LEFT JOIN prices ON p_node = s.node
            GROUP BY s.series_key",
            prices_cte = prices.cte(),
            parts = parts(&plan, Some(rr), false),
            cost = charged("cc", "cb"),
            waste = charged("ic", "ib"),
            rr_cost = charged("rr_cc", "rr_cb"),
            rr_waste = charged("rr_ic", "rr_ib"),
        );
        let conn = self.conn();
        rows(
            &conn,
            "cost per series (summary)",
            &query,
            &scope_params(scope),
            cost_row,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_NS;

    #[test]
    fn a_range_splits_into_summary_hours_and_raw_edges() {
        // 10:20 to 15:40, cut at 12:30: hours 11, 13, 14 from the summary;
        // 10:20-11:00, 12:00-13:00 and 15:00-15:40 from usage.
        let m = 60_000_000_000;
        let p = Plan::new(10 * H + 20 * m, 15 * H + 40 * m, &[12 * H + 30 * m]);
        assert_eq!(p.hours, Some((11 * H, 15 * H)));
        assert_eq!(p.excluded, vec![12 * H]);
        assert_eq!(
            p.raw,
            vec![
                (10 * H + 20 * m, 11 * H),
                (12 * H, 13 * H),
                (15 * H, 15 * H + 40 * m)
            ]
        );
        // Aligned ends and an aligned cut: all summary.
        let p = Plan::new(10 * H, 15 * H, &[12 * H]);
        assert_eq!((p.hours, p.raw.len()), (Some((10 * H, 15 * H)), 0));
        // Within one hour, or less than a whole hour: all raw.
        let p = Plan::new(10 * H + m, 11 * H + m, &[]);
        assert_eq!(p.hours, None);
        assert_eq!(p.raw, vec![(10 * H + m, 11 * H + m)]);
        assert_eq!(p.hours_where(), "false");
        // A cut outside the range changes nothing.
        let p = Plan::new(10 * H, 12 * H, &[20 * H + m, 5 * H + m]);
        assert!(p.excluded.is_empty() && p.raw.is_empty());
    }

    #[test]
    fn adjacent_raw_stretches_merge_and_quotes_are_escaped() {
        assert_eq!(merge(vec![(5, 7), (0, 5), (9, 10)]), vec![(0, 7), (9, 10)]);
        assert_eq!(quote("a'b"), "'a''b'");
        assert_eq!(ranges_where(&[]), "false");
    }
}

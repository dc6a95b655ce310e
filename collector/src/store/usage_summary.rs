//! The hourly usage summary: `usage` aggregated per series identity and UTC
//! hour (`usage_series`, `usage_hourly`, `usage_hourly_cpu`; the schema
//! explains each column), so analysis reads a row per series-hour instead of
//! one per series-minute (docs/analysis.md, "How analysis stays fast").
//!
//! Every stored figure is an aggregate that combines across hours exactly:
//! sums, maxima, counts, the latest value with its time. Nothing in it
//! depends on analysis settings except the CPU histogram's bucket index and
//! half-life, which `usage_summary_state` records (analysis with other
//! settings reads `usage`).
//!
//! Maintenance, always in the transaction that changed `usage`:
//! - the rollup, after rebuilding a node's minutes from minute `m`,
//!   recomputes that node's series from the hour of `m` on;
//! - an import recomputes the hours its new and replaced rows fall into;
//! - opening the store compares the summary's row count with `usage`'s and
//!   rebuilds the hours whose counts differ (an upgraded store, rows written
//!   by other programs).

use duckdb::{Connection, params};

/// One hour in ns: the summary's grain.
pub const HOUR_NS: i64 = 3_600_000_000_000;

/// The columns that make up a series identity, in `usage` and
/// `usage_series`.
pub(crate) const IDENTITY_COLUMNS: &str =
    "series_key, node, container_id, namespace, pod, container, workload_kind, workload, image";

/// The start of a row's hour: floor, also before 1970.
pub(crate) const HOUR_OF_TS: &str =
    "(ts_unix_ns - ((ts_unix_ns % 3600000000000) + 3600000000000) % 3600000000000)";

/// The CPU histogram half-life the summary starts with (the VPA's and
/// `analysis.rightsize.cpu_half_life_s`'s default).
pub const DEFAULT_CPU_HALF_LIFE_S: f64 = 86_400.0;

/// The shortest half-life the summary's histogram may be built with:
/// within an hour the factored-out decay then stays below 2, so no weight
/// over- or underflows.
pub const MIN_CPU_HALF_LIFE_S: f64 = 3_600.0;

/// Aggregates of a set of `usage` rows (grouped by the caller), named as
/// the columns of `usage_hourly`. The read side computes the same over the
/// rows of partial hours, so stored and fresh parts add up alike.
pub(crate) const PARTIAL: &str = "count(*) AS row_count,
    min(ts_unix_ns) AS first_unix_ns,
    max(ts_unix_ns) AS last_unix_ns,
    sum(interval_s) AS interval_s,
    sum(CASE WHEN cpu_cores IS NOT NULL THEN interval_s END) AS cpu_s,
    sum(CASE WHEN cpu_throttled_ratio IS NOT NULL THEN interval_s END) AS throttle_s,
    sum(CASE WHEN memory_working_set_bytes IS NOT NULL THEN interval_s END) AS ws_s,
    sum(cpu_cores * interval_s) AS cpu_core_s,
    sum(cpu_throttled_ratio * interval_s) AS throttled_s,
    sum(memory_working_set_bytes::DOUBLE * interval_s) AS ws_byte_s,
    max(cpu_cores) AS cpu_max_cores,
    greatest(max(memory_peak_bytes), max(memory_working_set_bytes)) AS memory_peak_bytes,
    sum(oom_kills)::UBIGINT AS oom_kills,
    max(CASE WHEN oom_kills > 0 THEN ts_unix_ns END) AS last_oom_unix_ns,
    max(CASE WHEN oom_kills > 0 THEN greatest(coalesce(memory_limit_bytes, 0), coalesce(memory_peak_bytes, 0), coalesce(memory_working_set_bytes, 0)) END) AS oom_base_bytes,
    max((coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0)) / nullif(interval_s, 0)) AS activity_net_max,
    max(CASE WHEN net_rx_bytes IS NOT NULL OR net_tx_bytes IS NOT NULL
        THEN (coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0)) / nullif(interval_s, 0) END) AS net_max_bytes_per_s,
    sum(coalesce(net_rx_bytes, 0) + coalesce(net_tx_bytes, 0))::UBIGINT AS net_bytes,
    coalesce(bool_or(net_rx_bytes IS NOT NULL OR net_tx_bytes IS NOT NULL), false) AS has_network,
    coalesce(sum(interval_s * greatest(coalesce(cpu_request_cores, 0.0), coalesce(cpu_cores, 0.0))), 0) AS charged_core_s,
    coalesce(sum(interval_s * greatest(coalesce(memory_request_bytes::DOUBLE, 0.0), coalesce(memory_working_set_bytes::DOUBLE, 0.0))), 0) AS charged_byte_s,
    coalesce(sum(interval_s * greatest(coalesce(cpu_request_cores, 0.0) - coalesce(cpu_cores, 0.0), 0.0)), 0) AS idle_core_s,
    coalesce(sum(interval_s * greatest(coalesce(memory_request_bytes::DOUBLE, 0.0) - coalesce(memory_working_set_bytes::DOUBLE, 0.0), 0.0)), 0) AS idle_byte_s,
    coalesce(sum(interval_s * coalesce(cpu_request_cores, 0.0)), 0) AS request_core_s,
    coalesce(sum(interval_s * coalesce(memory_request_bytes::DOUBLE, 0.0)), 0) AS request_byte_s,
    arg_max(cpu_request_cores, ts_unix_ns) AS cpu_request_cores,
    max(CASE WHEN cpu_request_cores IS NOT NULL THEN ts_unix_ns END) AS cpu_request_unix_ns,
    arg_max(cpu_limit_cores, ts_unix_ns) AS cpu_limit_cores,
    max(CASE WHEN cpu_limit_cores IS NOT NULL THEN ts_unix_ns END) AS cpu_limit_unix_ns,
    arg_max(memory_request_bytes, ts_unix_ns) AS memory_request_bytes,
    max(CASE WHEN memory_request_bytes IS NOT NULL THEN ts_unix_ns END) AS memory_request_unix_ns,
    arg_max(memory_limit_bytes, ts_unix_ns) AS memory_limit_bytes,
    max(CASE WHEN memory_limit_bytes IS NOT NULL THEN ts_unix_ns END) AS memory_limit_unix_ns";

/// What the summary's CPU histogram was built with.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryState {
    /// Bucket index: a SQL expression of `cpu_cores`.
    pub cpu_bucket_sql: String,
    /// Half-life of the factored-out decay, seconds.
    pub cpu_half_life_s: f64,
}

impl SummaryState {
    /// What a new store's summary is built with: the VPA's CPU buckets and
    /// half-life, as analysis uses them by default.
    pub fn default_for_this_build() -> SummaryState {
        SummaryState {
            cpu_bucket_sql: crate::analysis::histogram::CPU_CORES.bucket_sql("cpu_cores"),
            cpu_half_life_s: DEFAULT_CPU_HALF_LIFE_S,
        }
    }
}

/// What a check of the summary against `usage` found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SummaryRepair {
    /// Hours whose row counts differed, recomputed.
    pub hours: u64,
    /// The CPU histogram was rebuilt for other bucket settings.
    pub cpu_rebuilt: bool,
}

/// Start of the hour holding `ts` (saturating at the ends of time).
pub(crate) fn floor_hour(ts: i64) -> i64 {
    ts.div_euclid(HOUR_NS)
        .checked_mul(HOUR_NS)
        .unwrap_or(i64::MIN)
}

/// Smallest hour start at or after `ts`; `None` past the end of time.
pub(crate) fn ceil_hour(ts: i64) -> Option<i64> {
    let f = floor_hour(ts);
    if f == ts {
        Some(ts)
    } else {
        f.checked_add(HOUR_NS)
    }
}

/// The recorded state; `None` before the first open of this build.
pub(crate) fn state(conn: &Connection) -> duckdb::Result<Option<SummaryState>> {
    let mut stmt =
        conn.prepare("SELECT cpu_bucket_sql, cpu_half_life_s FROM usage_summary_state LIMIT 1")?;
    let mut rows = stmt.query([])?;
    match rows.next()? {
        Some(r) => Ok(Some(SummaryState {
            cpu_bucket_sql: r.get(0)?,
            cpu_half_life_s: r.get(1)?,
        })),
        None => Ok(None),
    }
}

fn write_state(conn: &Connection, s: &SummaryState) -> duckdb::Result<()> {
    conn.execute("DELETE FROM usage_summary_state", [])?;
    conn.execute(
        "INSERT INTO usage_summary_state VALUES (?, ?)",
        params![s.cpu_bucket_sql, s.cpu_half_life_s],
    )?;
    Ok(())
}

/// Recomputes the summary of the hours from the one holding `from_unix_ns`
/// up to the one holding `until_unix_ns` (exclusive; `None`: every later
/// hour) from `usage`, for the series identities of `node` (`None`: all).
/// Run it in the transaction that changed those rows.
pub(crate) fn refresh(
    conn: &Connection,
    node: Option<&str>,
    from_unix_ns: i64,
    until_unix_ns: Option<i64>,
) -> duckdb::Result<()> {
    let lo = floor_hour(from_unix_ns);
    let hi = until_unix_ns.and_then(ceil_hour);
    let mut rows = format!("ts_unix_ns >= {lo}");
    let mut hours = format!("hour_unix_ns >= {lo}");
    if let Some(hi) = hi {
        rows.push_str(&format!(" AND ts_unix_ns < {hi}"));
        hours.push_str(&format!(" AND hour_unix_ns < {hi}"));
    }
    if node.is_some() {
        rows.push_str(" AND node = $1::VARCHAR");
        hours.push_str(
            " AND series_id IN (SELECT series_id FROM usage_series WHERE node = $1::VARCHAR)",
        );
    }
    rebuild(conn, &rows, &|_| hours.clone(), node)
}

/// Recomputes, for every node the rollup lists in its temporary table
/// (`rollup::DIRTY_TABLE`: node and the hour its rebuilt rows start in),
/// the summary of that node's series from that hour on, in one statement
/// per table rather than five per node.
pub(crate) fn refresh_dirty_nodes(conn: &Connection) -> duckdb::Result<()> {
    let dirty = super::rollup::DIRTY_TABLE;
    let first_hour: Option<i64> = conn.query_row(
        &format!("SELECT min(from_hour_unix_ns) FROM {dirty}"),
        [],
        |r| r.get(0),
    )?;
    let Some(lo) = first_hour else {
        return Ok(());
    };
    // The constant bound lets the scan skip older row groups; the
    // correlated one is each node's own.
    let rows = format!(
        "ts_unix_ns >= {lo} AND ts_unix_ns >= (SELECT d.from_hour_unix_ns FROM {dirty} d WHERE d.node_name = node)"
    );
    let hours = |table: &str| {
        format!(
            "hour_unix_ns >= {lo} AND hour_unix_ns >= (SELECT d.from_hour_unix_ns FROM usage_series s2 JOIN {dirty} d ON d.node_name = s2.node WHERE s2.series_id = {table}.series_id)"
        )
    };
    rebuild(conn, &rows, &hours, None)
}

/// The summary rebuild itself: the series identities new in the `usage`
/// rows matching `rows`, and the hourly rows of every table matching
/// `hours(table)` replaced by aggregates of those `usage` rows. `node`
/// binds `$1` in both conditions when given.
fn rebuild(
    conn: &Connection,
    rows: &str,
    hours: &dyn Fn(&str) -> String,
    node: Option<&str>,
) -> duckdb::Result<()> {
    let state = match state(conn)? {
        Some(s) => s,
        None => {
            let s = SummaryState::default_for_this_build();
            write_state(conn, &s)?;
            s
        }
    };
    let run = |sql: &str| -> duckdb::Result<usize> {
        match node {
            Some(n) => conn.execute(sql, params![n]),
            None => conn.execute(sql, []),
        }
    };
    // New identities first, numbered after the highest id.
    run(&format!(
        "INSERT INTO usage_series
         SELECT (SELECT coalesce(max(series_id), 0) FROM usage_series) + row_number() OVER (), *
         FROM (SELECT DISTINCT {IDENTITY_COLUMNS} FROM usage WHERE {rows}
               EXCEPT SELECT {IDENTITY_COLUMNS} FROM usage_series)"
    ))?;
    run(&format!(
        "DELETE FROM usage_hourly WHERE {}",
        hours("usage_hourly")
    ))?;
    run(&format!(
        "DELETE FROM usage_hourly_cpu WHERE {}",
        hours("usage_hourly_cpu")
    ))?;
    run(&format!(
        "INSERT INTO usage_hourly BY NAME
         SELECT s.series_id, {HOUR_OF_TS} AS hour_unix_ns, {PARTIAL}
         FROM usage u JOIN usage_series s USING ({IDENTITY_COLUMNS})
         WHERE {rows}
         GROUP BY s.series_id, hour_unix_ns"
    ))?;
    run(&cpu_insert(&state, rows))?;
    Ok(())
}

/// The insert of CPU histogram rows for the `usage` rows matching `rows`,
/// with `state`'s buckets and the half-life recorded in the table (the
/// stored double itself, so analysis compares exactly what was used).
fn cpu_insert(state: &SummaryState, rows: &str) -> String {
    format!(
        "INSERT INTO usage_hourly_cpu BY NAME
         SELECT s.series_id, {HOUR_OF_TS} AS hour_unix_ns, {bucket} AS bucket,
             sum(interval_s * pow(2.0, (ts_unix_ns - {HOUR_OF_TS}) / 1e9
                 / (SELECT max(cpu_half_life_s) FROM usage_summary_state))) AS weight_s
         FROM usage u JOIN usage_series s USING ({IDENTITY_COLUMNS})
         WHERE {rows} AND cpu_cores IS NOT NULL AND isfinite(cpu_cores)
         GROUP BY s.series_id, hour_unix_ns, bucket",
        bucket = state.cpu_bucket_sql,
    )
}

/// Rebuilds the CPU histogram of every hour with `state`'s settings and
/// records them.
fn rebuild_cpu(conn: &Connection, state: &SummaryState) -> duckdb::Result<()> {
    write_state(conn, state)?;
    conn.execute("DELETE FROM usage_hourly_cpu", [])?;
    conn.execute(&cpu_insert(state, "true"), [])?;
    Ok(())
}

/// Brings the summary in step with `usage` and this build (in one
/// transaction): records the default state in a new store, rebuilds the
/// CPU histogram when this build buckets CPU differently, and recomputes
/// every hour whose row count differs between `usage` and `usage_hourly`.
/// The usual case, counts equal, costs two counts.
pub(crate) fn repair(conn: &mut Connection) -> duckdb::Result<SummaryRepair> {
    let tx = conn.transaction()?;
    let mut out = SummaryRepair::default();
    let wanted = SummaryState::default_for_this_build();
    match state(&tx)? {
        None => write_state(&tx, &wanted)?,
        Some(s) if s.cpu_bucket_sql != wanted.cpu_bucket_sql => {
            rebuild_cpu(
                &tx,
                &SummaryState {
                    cpu_half_life_s: s.cpu_half_life_s,
                    ..wanted
                },
            )?;
            out.cpu_rebuilt = true;
        }
        Some(_) => {}
    }
    let in_step: bool = tx.query_row(
        "SELECT (SELECT count(*) FROM usage) = (SELECT coalesce(sum(row_count), 0) FROM usage_hourly)",
        [],
        |r| r.get(0),
    )?;
    if !in_step {
        let hours: Vec<i64> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT hour FROM (SELECT {HOUR_OF_TS} AS hour, count(*) AS n FROM usage GROUP BY hour) u
                 FULL OUTER JOIN (SELECT hour_unix_ns AS hour, sum(row_count) AS n FROM usage_hourly GROUP BY hour) h
                 USING (hour)
                 WHERE u.n IS DISTINCT FROM h.n
                 ORDER BY hour"
            ))?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        out.hours = hours.len() as u64;
        for (from, until) in runs_of_hours(&hours) {
            refresh(&tx, None, from, Some(until))?;
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Consecutive hours merged into [from, until) ranges.
fn runs_of_hours(hours: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &h in hours {
        let end = h.saturating_add(HOUR_NS);
        match out.last_mut() {
            Some(last) if last.1 == h => last.1 = end,
            _ => out.push((h, end)),
        }
    }
    out
}

/// Rebuilds the CPU histogram for another half-life (at least
/// [`MIN_CPU_HALF_LIFE_S`]), so analysis with that half-life reads the
/// summary; nothing happens when it already has it. True when rebuilt.
pub(crate) fn set_cpu_half_life(conn: &mut Connection, half_life_s: f64) -> duckdb::Result<bool> {
    let tx = conn.transaction()?;
    let current = state(&tx)?.unwrap_or_else(SummaryState::default_for_this_build);
    if !half_life_s.is_finite()
        || half_life_s < MIN_CPU_HALF_LIFE_S
        || current.cpu_half_life_s == half_life_s
    {
        tx.commit()?;
        return Ok(false);
    }
    rebuild_cpu(
        &tx,
        &SummaryState {
            cpu_half_life_s: half_life_s,
            ..current
        },
    )?;
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_floored_and_ceiled_also_before_1970() {
        assert_eq!(floor_hour(HOUR_NS + 5), HOUR_NS);
        assert_eq!(floor_hour(-5), -HOUR_NS);
        assert_eq!(ceil_hour(HOUR_NS + 5), Some(2 * HOUR_NS));
        assert_eq!(ceil_hour(2 * HOUR_NS), Some(2 * HOUR_NS));
        assert_eq!(ceil_hour(i64::MAX), None);
        assert_eq!(floor_hour(i64::MIN), i64::MIN);
    }

    #[test]
    fn consecutive_hours_become_one_range() {
        let h = HOUR_NS;
        assert_eq!(
            runs_of_hours(&[0, h, 2 * h, 5 * h]),
            vec![(0, 3 * h), (5 * h, 6 * h)]
        );
        assert!(runs_of_hours(&[]).is_empty());
    }
}

//! The part of every import after reading: candidate rows in the temporary
//! table `import_rows` are checked, de-duplicated, matched against what the
//! store already holds, and stored in `usage` in one transaction.

use duckdb::Connection;

use super::{ImportError, ImportSummary, Source};

/// Rows not stored for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// Why, for a person.
    pub reason: String,
    /// How many rows.
    pub rows: u64,
}

/// The candidate rows an importer fills: `usage`'s columns, with every
/// number a `DOUBLE` so one set of checks covers all inputs.
pub(crate) const CREATE_ROWS: &str = "
CREATE OR REPLACE TEMP TABLE import_rows (
    series_key                VARCHAR,
    ts_unix_ns                BIGINT,
    interval_s                DOUBLE,
    node                      VARCHAR,
    container_id              VARCHAR,
    namespace                 VARCHAR,
    pod                       VARCHAR,
    container                 VARCHAR,
    workload_kind             VARCHAR,
    workload                  VARCHAR,
    image                     VARCHAR,
    cpu_cores                 DOUBLE,
    cpu_throttled_ratio       DOUBLE,
    memory_working_set_bytes  DOUBLE,
    memory_peak_bytes         DOUBLE,
    oom_kills                 DOUBLE,
    net_rx_bytes              DOUBLE,
    net_tx_bytes              DOUBLE,
    cpu_request_cores         DOUBLE,
    cpu_limit_cores           DOUBLE,
    memory_request_bytes      DOUBLE,
    memory_limit_bytes        DOUBLE
)";

/// Numeric columns stored as `DOUBLE` in `usage`.
const REAL_COLUMNS: &[&str] = &[
    "cpu_cores",
    "cpu_throttled_ratio",
    "cpu_request_cores",
    "cpu_limit_cores",
];

/// Numeric columns stored as `UBIGINT` (rounded to the nearest integer).
const COUNT_COLUMNS: &[&str] = &[
    "memory_working_set_bytes",
    "memory_peak_bytes",
    "oom_kills",
    "net_rx_bytes",
    "net_tx_bytes",
    "memory_request_bytes",
    "memory_limit_bytes",
];

/// `usage`'s numeric columns in table order.
const USAGE_NUMBERS: &[&str] = &[
    "cpu_cores",
    "cpu_throttled_ratio",
    "memory_working_set_bytes",
    "memory_peak_bytes",
    "oom_kills",
    "net_rx_bytes",
    "net_tx_bytes",
    "cpu_request_cores",
    "cpu_limit_cores",
    "memory_request_bytes",
    "memory_limit_bytes",
];

/// The insert of the checked rows into `usage`, columns in table order,
/// counts rounded to `UBIGINT`.
fn insert_select(source: Source) -> String {
    let numbers = USAGE_NUMBERS
        .iter()
        .map(|c| {
            if COUNT_COLUMNS.contains(c) {
                format!("CAST(round({c}) AS UBIGINT)")
            } else {
                (*c).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO usage SELECT series_key, '{}', ts_unix_ns, interval_s, node, container_id, \
         namespace, pod, container, workload_kind, workload, image, {numbers} FROM import_new",
        source.as_str()
    )
}

/// The first reason a row cannot be stored, `NULL` when it can.
fn skip_reason_case() -> String {
    let mut case = String::from(
        "CASE
            WHEN ts_unix_ns IS NULL THEN 'ts is NULL'
            WHEN interval_s IS NULL THEN 'interval_s is NULL'
            WHEN isnan(interval_s) OR isinf(interval_s) OR interval_s <= 0
                THEN 'interval_s is not a positive finite number'
            WHEN container_id = '' AND node = '' AND namespace = '' AND pod = '' AND container = ''
                THEN 'no identity (container_id, node, namespace, pod and container all empty)'\n",
    );
    for c in REAL_COLUMNS.iter().chain(COUNT_COLUMNS) {
        case.push_str(&format!(
            "            WHEN {c} IS NOT NULL AND (isnan({c}) OR isinf({c}) OR {c} < 0) \
             THEN '{c} is negative, NaN or infinite'\n"
        ));
    }
    for c in COUNT_COLUMNS {
        case.push_str(&format!(
            "            WHEN {c} >= 18446744073709551615.0 THEN '{c} is too large'\n"
        ));
    }
    case.push_str(
        "            WHEN cpu_throttled_ratio > 1 THEN 'cpu_throttled_ratio is above 1'
            ELSE NULL END",
    );
    case
}

/// Overlap of row `a`'s interval with row `b`'s, in SQL.
fn overlaps(a: &str, b: &str) -> String {
    format!(
        "{b}.ts_unix_ns < {a}.ts_unix_ns + CAST(round({a}.interval_s * 1e9) AS BIGINT) \
         AND {a}.ts_unix_ns < {b}.ts_unix_ns + CAST(round({b}.interval_s * 1e9) AS BIGINT)"
    )
}

fn sql(step: &'static str) -> impl FnOnce(duckdb::Error) -> ImportError {
    move |source| ImportError::Sql { step, source }
}

fn count(conn: &Connection, step: &'static str, query: &str) -> Result<u64, ImportError> {
    let n: i64 = conn.query_row(query, [], |r| r.get(0)).map_err(sql(step))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Checks the rows in `import_rows` and stores the good ones in `usage` as
/// `source`, in one transaction (rolled back when `dry_run`). `summary`
/// carries what the importer already knows (notes); its counts are filled
/// here.
pub(crate) fn store_rows(
    conn: &mut Connection,
    source: Source,
    dry_run: bool,
    mut summary: ImportSummary,
) -> Result<ImportSummary, ImportError> {
    summary.dry_run = dry_run;
    summary.rows_read = count(
        conn,
        "counting rows read",
        "SELECT count(*) FROM import_rows",
    )?;

    conn.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE import_checked AS
         SELECT *, {} AS skip_reason FROM import_rows",
        skip_reason_case()
    ))
    .map_err(sql("checking rows"))?;
    let mut skipped = Vec::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT skip_reason, count(*) FROM import_checked
                 WHERE skip_reason IS NOT NULL GROUP BY skip_reason ORDER BY 2 DESC, 1",
            )
            .map_err(sql("counting invalid rows"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sql("counting invalid rows"))?;
        for row in rows {
            let (reason, n) = row.map_err(sql("counting invalid rows"))?;
            skipped.push(Skip {
                reason,
                rows: u64::try_from(n).unwrap_or(0),
            });
        }
    }

    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE import_valid AS
         SELECT * EXCLUDE (skip_reason) FROM import_checked WHERE skip_reason IS NULL
         QUALIFY row_number() OVER (PARTITION BY series_key, ts_unix_ns ORDER BY interval_s DESC) = 1",
    )
    .map_err(sql("removing duplicate rows"))?;
    let valid = count(
        conn,
        "counting valid rows",
        "SELECT count(*) FROM import_checked WHERE skip_reason IS NULL",
    )?;
    let distinct = count(
        conn,
        "counting distinct rows",
        "SELECT count(*) FROM import_valid",
    )?;
    if valid > distinct {
        skipped.push(Skip {
            reason: "duplicate (series_key, ts) within the input (one kept)".into(),
            rows: valid - distinct,
        });
    }

    let tx = conn.transaction().map_err(sql("begin"))?;
    // Rows another source already holds for the same series and time: the
    // agent's measurements win, then whichever import came first.
    tx.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE import_covered AS
         SELECT v.series_key, v.ts_unix_ns,
                bool_or(u.source = 'agent') AS by_agent, min(u.source) AS other_source
         FROM import_valid v
         JOIN usage u ON u.series_key = v.series_key AND u.source <> '{src}' AND {overlap}
         WHERE u.ts_unix_ns >= (SELECT min(ts_unix_ns) FROM import_valid) - 86400000000000
           AND u.ts_unix_ns <= (SELECT max(ts_unix_ns) FROM import_valid)
                + (SELECT CAST(max(interval_s) * 1e9 AS BIGINT) FROM import_valid)
         GROUP BY v.series_key, v.ts_unix_ns;
         CREATE OR REPLACE TEMP TABLE import_new AS
         SELECT v.* FROM import_valid v ANTI JOIN import_covered c USING (series_key, ts_unix_ns);",
        src = source.as_str(),
        overlap = overlaps("v", "u"),
    ))
    .map_err(sql("matching rows already stored"))?;
    {
        let mut stmt = tx
            .prepare(
                "SELECT CASE WHEN by_agent THEN 'covered by agent data (agent data wins)'
                             ELSE 'covered by an earlier ' || other_source || ' import' END,
                        count(*)
                 FROM import_covered GROUP BY 1 ORDER BY 1",
            )
            .map_err(sql("counting covered rows"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sql("counting covered rows"))?;
        for row in rows {
            let (reason, n) = row.map_err(sql("counting covered rows"))?;
            skipped.push(Skip {
                reason,
                rows: u64::try_from(n).unwrap_or(0),
            });
        }
    }

    // Re-import: the same source's rows that the new rows overlap go first.
    let replaced_rows = format!(
        "u.source = '{src}' AND EXISTS (
             SELECT 1 FROM import_new v WHERE v.series_key = u.series_key AND {overlap})",
        src = source.as_str(),
        overlap = overlaps("v", "u"),
    );
    // Their times, for the hourly usage summary below.
    let (replaced_first, replaced_last): (Option<i64>, Option<i64>) = if dry_run {
        (None, None)
    } else {
        tx.query_row(
            &format!("SELECT min(ts_unix_ns), max(ts_unix_ns) FROM usage u WHERE {replaced_rows}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("finding rows of an earlier import"))?
    };
    let replaced = tx
        .execute(&format!("DELETE FROM usage u WHERE {replaced_rows}"), [])
        .map_err(sql("deleting rows of an earlier import"))?;
    let stored = tx
        .execute(&insert_select(source), [])
        .map_err(sql("inserting into usage"))?;
    let (series, first, last): (i64, Option<i64>, Option<i64>) = tx
        .query_row(
            "SELECT count(DISTINCT series_key), min(ts_unix_ns), max(ts_unix_ns) FROM import_new",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(sql("summarising stored rows"))?;
    // The hourly usage summary of the hours the new and the replaced rows
    // fall into, in the same transaction (see store::usage_summary).
    let touched_first = [first, replaced_first].into_iter().flatten().min();
    let touched_last = [last, replaced_last].into_iter().flatten().max();
    if let (false, Some(from), Some(to)) = (dry_run, touched_first, touched_last) {
        crate::store::refresh_usage_summary(&tx, None, from, Some(to.saturating_add(1)))
            .map_err(sql("refreshing the hourly usage summary"))?;
    }
    if dry_run {
        tx.rollback().map_err(sql("rollback of the dry run"))?;
    } else {
        tx.commit().map_err(sql("commit"))?;
        conn.execute_batch("CHECKPOINT")
            .map_err(sql("checkpoint"))?;
    }
    conn.execute_batch(
        "DROP TABLE IF EXISTS import_checked; DROP TABLE IF EXISTS import_valid;
         DROP TABLE IF EXISTS import_covered; DROP TABLE IF EXISTS import_new;",
    )
    .map_err(sql("dropping temporary tables"))?;

    for s in &skipped {
        tracing::warn!(rows = s.rows, reason = %s.reason, source = source.as_str(), "rows skipped");
    }
    summary.rows_stored = stored as u64;
    summary.rows_replaced = replaced as u64;
    summary.skipped = skipped;
    summary.series = u64::try_from(series).unwrap_or(0);
    summary.first_ts_unix_ns = first;
    summary.last_ts_unix_ns = last;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_numeric_column_is_checked_and_inserted() {
        let case = skip_reason_case();
        let insert = insert_select(Source::Parquet);
        for c in REAL_COLUMNS.iter().chain(COUNT_COLUMNS) {
            assert!(case.contains(&format!("isnan({c})")), "{c} not checked");
            assert!(insert.contains(c), "{c} not inserted");
        }
        assert_eq!(
            REAL_COLUMNS.len() + COUNT_COLUMNS.len(),
            USAGE_NUMBERS.len()
        );
    }
}

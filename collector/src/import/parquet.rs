//! `upid-collector import parquet FILE`: usage rows from a Parquet file with
//! the export schema (docs/export.md), read by DuckDB's `read_parquet`.

use std::path::Path;

use super::stage::{self, CREATE_ROWS};
use super::{ImportError, ImportSummary, Source, open_store_for_write};

/// What a column of the file may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A point in time (UTC).
    Timestamp,
    /// Any integer, decimal or floating-point type.
    Number,
    /// Text.
    Text,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Timestamp => "TIMESTAMP or TIMESTAMP WITH TIME ZONE (UTC)",
            Kind::Number => "a number (integer, DECIMAL, FLOAT or DOUBLE)",
            Kind::Text => "VARCHAR (string)",
        }
    }

    fn accepts(self, duckdb_type: &str) -> bool {
        let t = duckdb_type.to_ascii_uppercase();
        match self {
            Kind::Timestamp => matches!(
                t.as_str(),
                "TIMESTAMP"
                    | "TIMESTAMP WITH TIME ZONE"
                    | "TIMESTAMPTZ"
                    | "TIMESTAMP_NS"
                    | "TIMESTAMP_MS"
                    | "TIMESTAMP_S"
            ),
            Kind::Number => {
                t.starts_with("DECIMAL")
                    || matches!(
                        t.as_str(),
                        "TINYINT"
                            | "SMALLINT"
                            | "INTEGER"
                            | "BIGINT"
                            | "HUGEINT"
                            | "UTINYINT"
                            | "USMALLINT"
                            | "UINTEGER"
                            | "UBIGINT"
                            | "UHUGEINT"
                            | "FLOAT"
                            | "DOUBLE"
                    )
            }
            Kind::Text => t == "VARCHAR",
        }
    }
}

/// The columns a usage Parquet file has, in export order.
const COLUMNS: &[(&str, Kind)] = &[
    ("ts", Kind::Timestamp),
    ("interval_s", Kind::Number),
    ("node", Kind::Text),
    ("container_id", Kind::Text),
    ("namespace", Kind::Text),
    ("pod", Kind::Text),
    ("container", Kind::Text),
    ("workload_kind", Kind::Text),
    ("workload", Kind::Text),
    ("image", Kind::Text),
    ("cpu_cores", Kind::Number),
    ("cpu_throttled_ratio", Kind::Number),
    ("memory_working_set_bytes", Kind::Number),
    ("memory_peak_bytes", Kind::Number),
    ("oom_kills", Kind::Number),
    ("net_rx_bytes", Kind::Number),
    ("net_tx_bytes", Kind::Number),
    ("cpu_request_cores", Kind::Number),
    ("cpu_limit_cores", Kind::Number),
    ("memory_request_bytes", Kind::Number),
    ("memory_limit_bytes", Kind::Number),
];

/// `path` as a SQL string literal.
pub(crate) fn sql_string(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// DuckDB's message without the SQL excerpt it appends on later lines.
fn first_line(e: &duckdb::Error) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().trim().to_owned()
}

/// Checks that `file` is Parquet with every column of the usage schema in
/// an acceptable type. Extra columns are ignored (logged).
fn check_schema(conn: &duckdb::Connection, file: &Path) -> Result<(), ImportError> {
    let not_parquet = |e: duckdb::Error| ImportError::NotParquet {
        path: file.to_path_buf(),
        detail: first_line(&e),
    };
    let mut stmt = conn
        .prepare(&format!(
            "DESCRIBE SELECT * FROM read_parquet({})",
            sql_string(file)
        ))
        .map_err(not_parquet)?;
    let found: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(not_parquet)?
        .collect::<Result<_, _>>()
        .map_err(not_parquet)?;
    let missing: Vec<String> = COLUMNS
        .iter()
        .filter(|(name, _)| !found.iter().any(|(n, _)| n == name))
        .map(|(name, kind)| format!("{name} ({})", kind.expected()))
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::MissingColumns {
            path: file.to_path_buf(),
            missing,
        });
    }
    for (name, kind) in COLUMNS {
        if let Some((_, t)) = found.iter().find(|(n, _)| n == name)
            && !kind.accepts(t)
        {
            return Err(ImportError::ColumnType {
                path: file.to_path_buf(),
                column: (*name).to_owned(),
                found: t.clone(),
                expected: kind.expected(),
            });
        }
    }
    let extra: Vec<&str> = found
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !COLUMNS.iter().any(|(c, _)| c == n))
        .collect();
    if !extra.is_empty() {
        tracing::warn!(file = %file.display(), columns = %extra.join(", "), "ignoring extra columns");
    }
    Ok(())
}

/// Imports the usage rows of the Parquet file `file` into the store at
/// `store` (created if missing) as source `parquet`; with `dry_run`,
/// reports what would be stored and writes nothing.
///
/// A file that is not Parquet, lacks a column or has one in a wrong type is
/// an error before anything is written. Rows with a NULL `ts` or
/// `interval_s`, or a negative or NaN number, are skipped and counted, as
/// are rows agent data (or an earlier import from another source) already
/// covers. Importing the same file again replaces its rows.
pub fn import_parquet(
    store: &Path,
    file: &Path,
    dry_run: bool,
) -> Result<ImportSummary, ImportError> {
    std::fs::metadata(file).map_err(|source| ImportError::ReadFile {
        path: file.to_path_buf(),
        source,
    })?;
    let mut conn = open_store_for_write(store)?;
    check_schema(&conn, file)?;
    let text = |c: &str| format!("coalesce(CAST({c} AS VARCHAR), '')");
    let number = |c: &str| format!("CAST({c} AS DOUBLE)");
    let fill = format!(
        "INSERT INTO import_rows
         SELECT CASE WHEN {cid} <> '' THEN {cid}
                     ELSE {node} || '/' || {ns} || '/' || {pod} || '/' || {ctr} END,
                epoch_ns(ts), {interval}, {node}, {cid}, {ns}, {pod}, {ctr}, {wk}, {w}, {image},
                {numbers}
         FROM read_parquet({file})",
        cid = text("container_id"),
        node = text("node"),
        ns = text("namespace"),
        pod = text("pod"),
        ctr = text("container"),
        wk = text("workload_kind"),
        w = text("workload"),
        image = text("image"),
        interval = number("interval_s"),
        numbers = COLUMNS[10..]
            .iter()
            .map(|(c, _)| number(c))
            .collect::<Vec<_>>()
            .join(", "),
        file = sql_string(file),
    );
    conn.execute_batch(CREATE_ROWS)
        .map_err(|source| ImportError::Sql {
            step: "creating the staging table",
            source,
        })?;
    conn.execute_batch(&fill)
        .map_err(|e| ImportError::NotParquet {
            path: file.to_path_buf(),
            detail: first_line(&e),
        })?;
    let summary = stage::store_rows(
        &mut conn,
        Source::Parquet,
        dry_run,
        ImportSummary::default(),
    )?;
    conn.execute_batch("DROP TABLE IF EXISTS import_rows")
        .map_err(|source| ImportError::Sql {
            step: "dropping the staging table",
            source,
        })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_accepted_by_meaning() {
        assert!(Kind::Timestamp.accepts("TIMESTAMP WITH TIME ZONE"));
        assert!(Kind::Timestamp.accepts("TIMESTAMP_NS"));
        assert!(!Kind::Timestamp.accepts("BIGINT"));
        assert!(Kind::Number.accepts("DECIMAL(18,3)"));
        assert!(Kind::Number.accepts("UBIGINT"));
        assert!(!Kind::Number.accepts("VARCHAR"));
        assert!(Kind::Text.accepts("VARCHAR"));
        assert!(!Kind::Text.accepts("INTEGER"));
    }

    #[test]
    fn quotes_in_paths_are_escaped() {
        assert_eq!(
            sql_string(Path::new("/tmp/it's.parquet")),
            "'/tmp/it''s.parquet'"
        );
    }
}

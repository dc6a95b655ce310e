//! `upid-bench store-sizes`: where the bytes of a store go. Each table (and
//! with `--columns`, each column of `container_samples`) is copied alone
//! into a fresh DuckDB file and checkpointed; the file's size less that of
//! an empty database is its share. Columns are also copied sorted by
//! container and time, to show what ordering would save. Read-only on the
//! store (e.g. one kept by `upid-bench collector --keep`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Options of `upid-bench store-sizes`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreSizesArgs {
    /// The store file to measure.
    #[arg(long)]
    pub store: PathBuf,
    /// Also size each column of `container_samples`, in stored order and
    /// sorted by container and time.
    #[arg(long)]
    pub columns: bool,
}

/// Copies `select` (reading the store as `src`) into a fresh file under
/// `dir` and returns that file's size in bytes.
fn copied_bytes(dir: &Path, store: &Path, select: &str, name: &str) -> Result<u64> {
    let path = dir.join(format!("{name}.duckdb"));
    let conn = duckdb::Connection::open(&path).with_context(|| format!("creating {name}"))?;
    let store = store.to_string_lossy().replace('\'', "''");
    conn.execute_batch(&format!(
        "ATTACH '{store}' AS src (READ_ONLY); CREATE TABLE t AS {select}; CHECKPOINT; DETACH src;"
    ))
    .with_context(|| format!("copying {name}"))?;
    drop(conn);
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    std::fs::remove_file(&path).with_context(|| format!("removing the copy of {name}"))?;
    Ok(bytes)
}

/// Prints the sizes; the report is the printout (a probe, not a goal).
pub fn run(args: &StoreSizesArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("a scratch directory")?;
    let store = args.store.as_path();
    let file_bytes = std::fs::metadata(store)
        .with_context(|| format!("reading {}", store.display()))?
        .len();
    let conn = duckdb::Connection::open_with_flags(
        store,
        duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?,
    )
    .with_context(|| format!("opening {} read-only", store.display()))?;
    let (blocks, used, free, block_size): (i64, i64, i64, i64) = conn.query_row(
        "SELECT total_blocks, used_blocks, free_blocks, block_size FROM pragma_database_size()",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    println!(
        "{}: {file_bytes} bytes; blocks of {block_size} B: {blocks} total, {used} used, {free} free ({} bytes free)",
        store.display(),
        free.saturating_mul(block_size)
    );
    let tables: Vec<(String, i64)> = {
        let mut stmt = conn.prepare(
            "SELECT table_name, estimated_size FROM duckdb_tables()
             WHERE database_name = current_database() AND schema_name = 'main'
             ORDER BY table_name",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let columns: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT column_name FROM information_schema.columns
             WHERE table_name = 'container_samples' ORDER BY ordinal_position",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    drop(conn);

    let empty = copied_bytes(dir.path(), store, "SELECT 1 AS x", "empty")?;
    println!("an empty database is {empty} bytes; each share below is less that");
    println!(
        "{:<28} {:>12} {:>14} {:>10}",
        "table", "rows", "bytes", "B/row"
    );
    let mut sum = 0u64;
    let mut samples_rows = 0i64;
    for (table, rows) in &tables {
        let bytes = copied_bytes(
            dir.path(),
            store,
            &format!("SELECT * FROM src.{table}"),
            table,
        )?
        .saturating_sub(empty);
        sum += bytes;
        if table == "container_samples" {
            samples_rows = *rows;
        }
        let per_row = if *rows > 0 {
            bytes as f64 / *rows as f64
        } else {
            0.0
        };
        println!("{table:<28} {rows:>12} {bytes:>14} {per_row:>10.2}");
    }
    println!("{:<28} {:>12} {sum:>14}", "tables copied alone", "");
    if !args.columns || samples_rows <= 0 {
        return Ok(());
    }
    println!(
        "{:<28} {:>12} {:>12}",
        "container_samples column", "B/row", "B/row sorted"
    );
    let per_row = |bytes: u64| bytes.saturating_sub(empty) as f64 / samples_rows as f64;
    let (mut total, mut total_sorted) = (0.0, 0.0);
    for column in &columns {
        let plain = copied_bytes(
            dir.path(),
            store,
            &format!("SELECT \"{column}\" FROM src.container_samples"),
            column,
        )?;
        let sorted = copied_bytes(
            dir.path(),
            store,
            &format!(
                "SELECT \"{column}\" FROM src.container_samples ORDER BY container_sk, ts_unix_ns"
            ),
            &format!("{column}_sorted"),
        )?;
        total += per_row(plain);
        total_sorted += per_row(sorted);
        println!(
            "{column:<28} {:>12.3} {:>12.3}",
            per_row(plain),
            per_row(sorted)
        );
    }
    println!("{:<28} {total:>12.3} {total_sorted:>12.3}", "total");
    Ok(())
}

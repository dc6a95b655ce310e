//! Parquet files that appear whole or not at all.
//!
//! A private staging DuckDB (in memory, spilling to a hidden directory
//! beside the destination, without async I/O threads: see [`staging`])
//! writes every file: the rows of an analysis are appended to it, the rows
//! of a store query are streamed into it as Arrow batches
//! ([`write_from`]). It writes the file (`COPY (query) TO ... (FORMAT
//! PARQUET, COMPRESSION ZSTD)`) under a temporary name in the destination's
//! own directory: `.<name>.tmp-<pid>-<n>`, which starts with `.` and does
//! not end in `.parquet`, so DuckDB's, pyarrow's and polars' dataset readers
//! (and `*.parquet` globs) never pick it up. The file is fsynced, renamed
//! over the destination (atomic within a directory), and the directory is
//! fsynced, so after a crash either the old file or the new one is there.
//! On any error the temporary file is removed and the destination is left
//! as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use duckdb::Connection;

use super::tables::{Column, StoreQuery};

/// What went wrong writing a Parquet file. The destination is untouched.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The destination's directory could not be created.
    #[error("creating the directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// DuckDB failed running the query or writing the file.
    #[error("writing {path}: {source}")]
    Copy {
        /// The destination.
        path: PathBuf,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// Staging rows in DuckDB before writing failed.
    #[error("staging the rows of {path}: {source}")]
    Stage {
        /// The destination.
        path: PathBuf,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// Syncing or renaming failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Numbers temporary files within this process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Marks a temporary file's name, after the destination's name.
const TEMP_MARK: &str = ".tmp-";

/// Marks a staging database's spill directory, after the destination's name.
const SPILL_MARK: &str = ".spill-";

/// A fresh temporary name for `dest`, in `dest`'s directory:
/// `.<name>.tmp-<pid>-<n>`.
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export.parquet".to_owned());
    let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}{TEMP_MARK}{}-{n}", std::process::id()))
}

/// `path` as a SQL string literal.
pub fn sql_string(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io { step, path, source }
}

fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory", dir))
}

/// Creates `dir` and its missing parents; each new directory's entry is
/// synced into its parent, so a file renamed into it survives a crash.
pub fn ensure_dir(dir: &Path) -> Result<(), WriteError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    std::fs::create_dir_all(dir).map_err(|source| WriteError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    for d in missing.iter().rev() {
        sync_dir(dir_of(d))?;
    }
    Ok(())
}

/// Removes temporary files and spill directories a crashed run left for
/// `dest` (best effort; they are hidden from readers anyway). Only names
/// this writer makes (`.<name>.tmp-...`, `.<name>.spill-...`) are touched.
pub fn remove_stale_temps(dest: &Path) {
    let (Some(name), Ok(entries)) = (dest.file_name(), std::fs::read_dir(dir_of(dest))) else {
        return;
    };
    let name = name.to_string_lossy();
    let temp = format!(".{name}{TEMP_MARK}");
    let spill = format!(".{name}{SPILL_MARK}");
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let removed = if entry_name.starts_with(&temp) {
            std::fs::remove_file(&path)
        } else if entry_name.starts_with(&spill) {
            std::fs::remove_dir_all(&path)
        } else {
            continue;
        };
        match removed {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed what a crashed report run left")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove what a crashed report run left")
            }
        }
    }
}

/// fsync `tmp`, rename it to `dest`, fsync the directory. `tmp` is removed
/// when any step fails.
fn publish(tmp: &Path, dest: &Path) -> Result<(), WriteError> {
    let done = std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", tmp))
        .and_then(|()| {
            std::fs::rename(tmp, dest).map_err(io("renaming the temporary file to", dest))
        });
    if let Err(e) = done {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(dir_of(dest))
}

/// Memory a staging database may use before it spills to disk.
const STAGING_MEMORY_LIMIT: &str = "256MB";

/// A private in-memory DuckDB that writes the Parquet files, spilling to
/// `spill_dir` past [`STAGING_MEMORY_LIMIT`].
///
/// It runs without async I/O threads (`async_threads = 0`), so DuckDB's
/// Parquet writer writes synchronously: its asynchronous file writer can
/// deadlock when a COPY fails halfway (the abort waits for a write task
/// that waits for a lock the abort holds), found by this module's tests.
/// The setting is per database, so the store keeps its own.
fn staging(spill_dir: &Path) -> Result<Connection, duckdb::Error> {
    let config = duckdb::Config::default()
        .with("async_threads", "0")?
        .with("memory_limit", STAGING_MEMORY_LIMIT)?
        .with("temp_directory", spill_dir.to_string_lossy())?;
    Connection::open_in_memory_with_flags(config)
}

/// A fresh spill directory name for `dest`: `.<name>.spill-<pid>-<n>`.
fn spill_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}{SPILL_MARK}{}-{n}", std::process::id()))
}

/// Runs `f` with a staging database for `dest`, then removes its spill
/// directory (DuckDB creates it only when it spills).
fn with_staging<T>(
    dest: &Path,
    f: impl FnOnce(&Connection) -> Result<T, WriteError>,
) -> Result<T, WriteError> {
    ensure_dir(dir_of(dest))?;
    remove_stale_temps(dest);
    let spill = spill_path(dest);
    let result = staging(&spill)
        .map_err(|source| WriteError::Stage {
            path: dest.to_path_buf(),
            source,
        })
        .and_then(|conn| f(&conn));
    if spill.exists() {
        let _ = std::fs::remove_dir_all(&spill);
    }
    result
}

/// COPYs `select` on the staging `conn` to `dest`, atomically.
fn copy_to(conn: &Connection, select: &str, dest: &Path) -> Result<u64, WriteError> {
    let tmp = temp_path(dest);
    let written = conn.execute(
        &format!(
            "COPY ({select}) TO {} (FORMAT PARQUET, COMPRESSION ZSTD)",
            sql_string(&tmp)
        ),
        [],
    );
    let rows = match written {
        Ok(n) => n as u64,
        Err(source) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(WriteError::Copy {
                path: dest.to_path_buf(),
                source,
            });
        }
    };
    publish(&tmp, dest)?;
    Ok(rows)
}

/// Writes the result of `select` (a self-contained query: it sees no
/// store) to `dest` as Parquet (ZSTD), atomically (see the module doc);
/// returns the rows written. The destination's directory is created when
/// missing.
pub fn write_query(select: &str, dest: &Path) -> Result<u64, WriteError> {
    with_staging(dest, |conn| copy_to(conn, select, dest))
}

/// Writes a table read from `source` (the store) to `dest`, atomically:
/// `query.raw` runs on `source` and its rows are streamed as Arrow batches
/// into a staging database, where `query.project` (over table `stage`)
/// makes the file's columns.
pub fn write_from(source: &Connection, query: &StoreQuery, dest: &Path) -> Result<u64, WriteError> {
    let read = |source| WriteError::Copy {
        path: dest.to_path_buf(),
        source,
    };
    with_staging(dest, |conn| {
        let stage = |source| WriteError::Stage {
            path: dest.to_path_buf(),
            source,
        };
        // The staging table has the raw query's own column types.
        let mut describe = source
            .prepare(&format!("DESCRIBE {}", query.raw))
            .map_err(read)?;
        let defs: Vec<String> = describe
            .query_map([], |r| {
                Ok(format!(
                    "\"{}\" {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?
                ))
            })
            .map_err(read)?
            .collect::<Result<_, _>>()
            .map_err(read)?;
        conn.execute_batch(&format!("CREATE TABLE stage ({})", defs.join(", ")))
            .map_err(stage)?;
        let mut statement = source.prepare(&query.raw).map_err(read)?;
        let mut appender = conn.appender("stage").map_err(stage)?;
        for batch in statement.stream_arrow([]).map_err(read)? {
            appender
                .append_record_batch(batch.map_err(read)?)
                .map_err(stage)?;
        }
        appender.flush().map_err(stage)?;
        drop(appender);
        copy_to(conn, &query.project, dest)
    })
}

/// Writes `rows` as Parquet with `columns` (in their order) to `dest`,
/// atomically, ordered by `order_by` (column names, comma-separated;
/// empty: as given). The rows are staged in a private DuckDB, which also
/// writes the file, so the store is not touched.
pub fn write_rows<T>(
    columns: &[Column<T>],
    rows: &[T],
    order_by: &str,
    dest: &Path,
) -> Result<u64, WriteError> {
    with_staging(dest, |conn| {
        let stage = |source| WriteError::Stage {
            path: dest.to_path_buf(),
            source,
        };
        let defs: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.ty.stage_sql()))
            .collect();
        conn.execute_batch(&format!("CREATE TABLE stage ({})", defs.join(", ")))
            .map_err(stage)?;
        {
            let mut appender = conn.appender("stage").map_err(stage)?;
            for row in rows {
                appender
                    .append_row(duckdb::appender_params_from_iter(
                        columns.iter().map(|c| (c.value)(row)),
                    ))
                    .map_err(stage)?;
            }
            appender.flush().map_err(stage)?;
        }
        let select: Vec<String> = columns.iter().map(|c| c.ty.select_sql(c.name)).collect();
        // rowid keeps the given order where the sort keys tie.
        let order = if order_by.is_empty() {
            " ORDER BY rowid".to_owned()
        } else {
            format!(" ORDER BY {order_by}, rowid")
        };
        let query = format!("SELECT {} FROM stage{order}", select.join(", "));
        copy_to(conn, &query, dest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_hidden_and_not_parquet() {
        let t = temp_path(Path::new("/r/samples/date=2024-05-01/part-0.parquet"));
        let name = t
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(name.starts_with(".part-0.parquet.tmp-"), "{name}");
        assert!(!name.ends_with(".parquet"), "{name}");
        assert_eq!(t.parent(), Some(Path::new("/r/samples/date=2024-05-01")));
        assert_ne!(
            t,
            temp_path(Path::new("/r/samples/date=2024-05-01/part-0.parquet"))
        );
    }
}

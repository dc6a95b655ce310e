//! `upid-collector export parquet`: the `usage` table as a Parquet file in
//! the documented schema (docs/export.md), which `import parquet` reads back.
//!
//! DuckDB writes the file (`COPY (...) TO ... (FORMAT PARQUET)`) next to the
//! destination as `FILE.tmp-<pid>`; it is synced and renamed into place, so
//! a reader never sees half a file and a failed export leaves the old file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};

use crate::config::FileConfig;
use crate::import::parquet::sql_string;
use crate::import::{ImportError, is_lock_error, resolve_store_path};

/// What went wrong exporting. The destination is untouched on error.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store file does not exist.
    #[error("no store at {path}: pass --store PATH")]
    NoStore {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Another process (a running collector) holds the store's lock.
    #[error(
        "the store {path} is in use by a running upid-collector; stop it, export, start it again"
    )]
    StoreInUse {
        /// The store file.
        path: PathBuf,
    },
    /// DuckDB could not open the store.
    #[error("opening the store {path}: {source}")]
    Open {
        /// The store file.
        path: PathBuf,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// Writing the Parquet file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The temporary file being written.
        path: PathBuf,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// Syncing or renaming the file failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The time range is empty or unparsable.
    #[error("{0}")]
    Range(String),
    /// Resolving the store path failed.
    #[error(transparent)]
    StorePath(#[from] ImportError),
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The file written.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Start of the range (inclusive), Unix ns.
    pub since_unix_ns: i64,
    /// End of the range (exclusive), Unix ns.
    pub until_unix_ns: i64,
}

/// The query whose result is the file: `usage`'s columns minus
/// `series_key` and `source`, `ts` as a UTC timestamp (microseconds),
/// counts and bytes as signed 64-bit integers (readable by Spark and
/// BigQuery, which lack unsigned 64-bit types).
fn export_query(since_unix_ns: i64, until_unix_ns: i64) -> String {
    format!(
        "SELECT make_timestamp(ts_unix_ns // 1000)::TIMESTAMPTZ AS ts, interval_s, node,
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
         WHERE ts_unix_ns >= {since_unix_ns} AND ts_unix_ns < {until_unix_ns}
         ORDER BY ts_unix_ns, series_key, source"
    )
}

/// Writes the `usage` rows whose interval starts in
/// `[since_unix_ns, until_unix_ns)` from the store at `store` to `out` as
/// Parquet, atomically. The store is opened read-only (a running collector
/// holds it exclusively: [`ExportError::StoreInUse`]).
pub fn export_parquet(
    store: &Path,
    out: &Path,
    since_unix_ns: i64,
    until_unix_ns: i64,
) -> Result<ExportSummary, ExportError> {
    if since_unix_ns >= until_unix_ns {
        return Err(ExportError::Range(format!(
            "the range {} .. {} is empty",
            crate::import::format_ts(since_unix_ns),
            crate::import::format_ts(until_unix_ns)
        )));
    }
    if !store.exists() {
        return Err(ExportError::NoStore {
            path: store.to_path_buf(),
        });
    }
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .map_err(|source| ExportError::Open {
            path: store.to_path_buf(),
            source,
        })?;
    let conn = duckdb::Connection::open_with_flags(store, config).map_err(|source| {
        if is_lock_error(&source) {
            ExportError::StoreInUse {
                path: store.to_path_buf(),
            }
        } else {
            ExportError::Open {
                path: store.to_path_buf(),
                source,
            }
        }
    })?;
    let file_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export.parquet".to_owned());
    let tmp = out.with_file_name(format!("{file_name}.tmp-{}", std::process::id()));
    let written = conn.execute(
        &format!(
            "COPY ({}) TO {} (FORMAT PARQUET, COMPRESSION ZSTD)",
            export_query(since_unix_ns, until_unix_ns),
            sql_string(&tmp)
        ),
        [],
    );
    let rows = match written {
        Ok(n) => n as u64,
        Err(source) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(ExportError::Write { path: tmp, source });
        }
    };
    drop(conn);
    if let Err(e) = sync_and_rename(&tmp, out) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(ExportSummary {
        path: out.to_path_buf(),
        rows,
        since_unix_ns,
        until_unix_ns,
    })
}

/// fsync `tmp`, rename it to `out`, fsync the directory.
fn sync_and_rename(tmp: &Path, out: &Path) -> Result<(), ExportError> {
    let io = |step: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { step, path, source }
    };
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", tmp))?;
    std::fs::rename(tmp, out).map_err(io("renaming the temporary file to", out))?;
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory", dir))?;
    Ok(())
}

/// A point in time given as a duration before `now` (`7d`, `36h`) or as
/// RFC 3339 (`2025-01-31T00:00:00Z`); Unix ns.
pub fn parse_time(setting: &str, value: &str, now: SystemTime) -> Result<i64, ExportError> {
    let t = match humantime::parse_duration(value) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(value).map_err(|_| {
            ExportError::Range(format!(
                "{setting} {value:?} is neither a duration (7d, 12h) nor an RFC 3339 time \
                 (2025-01-31T00:00:00Z)"
            ))
        })?,
    };
    let ns = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(i64::try_from(ns.as_nanos()).unwrap_or(i64::MAX))
}

/// `upid-collector export ...`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write usage rows as one Parquet file (schema: docs/export.md). Stop
    /// the collector first.
    Parquet(ExportArgs),
}

/// Options of `export parquet`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The Parquet file to write (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Start of the range: a duration before now (7d, 12h) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// End of the range (exclusive): a duration before now or an RFC 3339
    /// time [default: now].
    #[arg(long)]
    pub until: Option<String>,
    /// DuckDB store file [default: the config file's `store`, else
    /// /var/lib/upid/upid.duckdb or $XDG_DATA_HOME/upid/upid.duckdb,
    /// whichever exists].
    #[arg(long, env = "UPID_STORE")]
    pub store: Option<PathBuf>,
}

/// Runs an export command and prints what it wrote.
pub fn run_cli(command: ExportCommand, file: &FileConfig) -> anyhow::Result<()> {
    let ExportCommand::Parquet(args) = command;
    let store = resolve_store_path(args.store.as_deref(), file)?;
    let now = SystemTime::now();
    let since = parse_time("--since", &args.since, now)?;
    let until = match &args.until {
        Some(v) => parse_time("--until", v, now)?,
        None => parse_time("--until", "0s", now)?,
    };
    let summary = export_parquet(&store, &args.out, since, until)?;
    println!(
        "wrote {} rows ({} .. {}) to {}",
        summary.rows,
        crate::import::format_ts(summary.since_unix_ns),
        crate::import::format_ts(summary.until_unix_ns),
        summary.path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_durations_ago_or_rfc3339() {
        let now = UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        assert_eq!(
            parse_time("--since", "7d", now).ok(),
            Some(3 * 86_400 * 1_000_000_000)
        );
        assert_eq!(
            parse_time("--since", "1970-01-02T00:00:00Z", now).ok(),
            Some(86_400 * 1_000_000_000)
        );
        assert!(parse_time("--since", "last week", now).is_err());
    }
}

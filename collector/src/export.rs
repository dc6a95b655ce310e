//! `upid-collector export parquet`: the `usage` table as a Parquet file in
//! the documented schema (docs/export.md), which `import parquet` reads back.
//!
//! The file is written by the reports' atomic writer
//! ([`crate::report::writer`]): DuckDB writes a hidden temporary file next
//! to the destination, which is synced and renamed into place, so a reader
//! never sees half a file and a failed export leaves the old file. The
//! rows are those of the reports' `samples` table.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};

use crate::config::FileConfig;
use crate::import::{ImportError, is_lock_error, resolve_store_path};
use crate::report::tables::samples;
use crate::report::writer::{WriteError, write_from};

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
    /// Writing, syncing or renaming the Parquet file failed.
    #[error(transparent)]
    Write(#[from] WriteError),
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
    let rows = write_from(&conn, &samples(since_unix_ns, until_unix_ns), out)?;
    drop(conn);
    Ok(ExportSummary {
        path: out.to_path_buf(),
        rows,
        since_unix_ns,
        until_unix_ns,
    })
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

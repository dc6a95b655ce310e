//! History import: usage measured before upid ran, from a Parquet file
//! ([`parquet`]) or a Prometheus server ([`prometheus`]), stored in the
//! `usage` table so rightsizing, idle detection and cost have data on day one.
//!
//! Both importers fill a temporary table of candidate rows; [`stage`] then
//! checks them (counted, logged skips for NULL times and negative or NaN
//! values), and stores them in one transaction with these rules:
//! - Agent data wins: a row whose series already has agent rows overlapping
//!   its interval is skipped and counted.
//! - The first import source wins over another import source the same way
//!   (a Prometheus import never doubles a Parquet import's hours).
//! - Re-importing replaces: rows of the *same* source for the same series
//!   that overlap the new rows are deleted first (delete-then-insert), so
//!   importing a file twice stores each `(series_key, ts)` once.
//!
//! The store file is opened for writing, which DuckDB allows one process at
//! a time: a running collector must be stopped first
//! ([`ImportError::StoreInUse`]).

mod http;
pub mod parquet;
pub mod prometheus;
pub mod promql;
mod stage;
pub(crate) mod store_path;

use std::fmt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

pub use stage::Skip;
pub use store_path::resolve_store_path;

use crate::config::FileConfig;
use crate::store::{Store, StoreError};

/// What went wrong importing. Nothing is written to `usage` when an import
/// fails.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Another process (a running collector) holds the store's write lock.
    #[error(
        "the store {path} is in use by a running upid-collector; stop it, import, start it again"
    )]
    StoreInUse {
        /// The store file.
        path: PathBuf,
    },
    /// The store could not be opened (not a DuckDB file, newer schema, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A DuckDB statement failed.
    #[error("{step}: {source}")]
    Sql {
        /// What was being done.
        step: &'static str,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// The input file does not exist or cannot be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// DuckDB could not read the file as Parquet.
    #[error("{path} is not a readable Parquet file: {detail}")]
    NotParquet {
        /// The file.
        path: PathBuf,
        /// What DuckDB said.
        detail: String,
    },
    /// Required columns are absent.
    #[error("{path} lacks required columns: {}", missing.join(", "))]
    MissingColumns {
        /// The file.
        path: PathBuf,
        /// `name (expected type)` for each missing column.
        missing: Vec<String>,
    },
    /// A column has a type that cannot hold what it means.
    #[error("{path}: column {column} is {found}, expected {expected}")]
    ColumnType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// Its type in the file (DuckDB's name).
        found: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A Prometheus request failed or was refused.
    #[error("Prometheus at {url}, query {query}: {problem}")]
    Prometheus {
        /// The endpoint called.
        url: String,
        /// The PromQL sent (or what was being asked).
        query: String,
        /// What went wrong.
        problem: String,
    },
    /// No store given and none at the default paths.
    #[error(
        "no --store given and no store exists at the defaults ({tried}): pass --store PATH \
         (the store the collector is started with; an import creates it if missing)"
    )]
    NoStore {
        /// The default paths looked at, comma-separated.
        tried: String,
    },
    /// A command-line value is invalid.
    #[error("{setting} {value:?}: {problem}")]
    Invalid {
        /// The option.
        setting: &'static str,
        /// What was given.
        value: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// TLS settings for Prometheus could not be loaded.
    #[error("TLS for Prometheus: {0}")]
    Tls(String),
}

/// Where an imported row came from, stored in `usage.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `upid-collector import parquet`.
    Parquet,
    /// `upid-collector import prometheus`.
    Prometheus,
}

impl Source {
    /// The value of `usage.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Parquet => "parquet",
            Source::Prometheus => "prometheus",
        }
    }
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportSummary {
    /// Candidate rows read from the input.
    pub rows_read: u64,
    /// Rows stored in `usage`.
    pub rows_stored: u64,
    /// Rows of an earlier import from the same source that the new rows
    /// replaced (deleted first).
    pub rows_replaced: u64,
    /// Rows not stored, by reason.
    pub skipped: Vec<Skip>,
    /// Distinct series (`series_key`) among the stored rows.
    pub series: u64,
    /// Start of the earliest stored row, Unix ns.
    pub first_ts_unix_ns: Option<i64>,
    /// Start of the latest stored row, Unix ns.
    pub last_ts_unix_ns: Option<i64>,
    /// True when nothing was written (`--dry-run`).
    pub dry_run: bool,
    /// Extra lines about the input (Prometheus: series and points per
    /// metric), printed before the totals.
    pub notes: Vec<String>,
}

impl ImportSummary {
    /// Rows skipped for any reason.
    pub fn rows_skipped(&self) -> u64 {
        self.skipped.iter().map(|s| s.rows).sum()
    }

    /// Rows skipped for a reason containing `needle`.
    pub fn skipped_for(&self, needle: &str) -> u64 {
        self.skipped
            .iter()
            .filter(|s| s.reason.contains(needle))
            .map(|s| s.rows)
            .sum()
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        let dry = if self.dry_run {
            " (dry run: would be stored, nothing written)"
        } else {
            ""
        };
        writeln!(f, "rows read:     {}", self.rows_read)?;
        writeln!(f, "rows stored:   {}{dry}", self.rows_stored)?;
        if self.rows_replaced > 0 {
            writeln!(
                f,
                "rows replaced: {} (from an earlier import of the same source)",
                self.rows_replaced
            )?;
        }
        writeln!(f, "rows skipped:  {}", self.rows_skipped())?;
        for s in &self.skipped {
            writeln!(f, "  {:>10}  {}", s.rows, s.reason)?;
        }
        writeln!(f, "series:        {}", self.series)?;
        match (self.first_ts_unix_ns, self.last_ts_unix_ns) {
            (Some(first), Some(last)) => write!(
                f,
                "time range:    {} .. {} (interval starts, UTC)",
                format_ts(first),
                format_ts(last)
            ),
            _ => write!(f, "time range:    none"),
        }
    }
}

/// RFC 3339 in UTC, seconds precision.
pub(crate) fn format_ts(ts_unix_ns: i64) -> String {
    let secs = u64::try_from(ts_unix_ns.div_euclid(1_000_000_000)).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Opens the store for an import: creates it (and its schema) when it does
/// not exist yet, and tells a locked store apart from other failures.
pub(crate) fn open_store_for_write(path: &Path) -> Result<duckdb::Connection, ImportError> {
    // The collector's own open creates or upgrades the schema (and refuses
    // a file that is not a DuckDB store); then a plain connection runs the
    // import's SQL.
    drop(Store::open(path).map_err(|e| store_error(path, e))?);
    duckdb::Connection::open(path).map_err(|source| {
        if is_lock_error(&source) {
            ImportError::StoreInUse {
                path: path.to_path_buf(),
            }
        } else {
            ImportError::Store(StoreError::Open {
                path: path.to_path_buf(),
                source,
            })
        }
    })
}

/// [`ImportError::StoreInUse`] for DuckDB's lock error, the error itself
/// otherwise.
pub(crate) fn store_error(path: &Path, e: StoreError) -> ImportError {
    match &e {
        StoreError::Open { source, .. } if is_lock_error(source) => ImportError::StoreInUse {
            path: path.to_path_buf(),
        },
        _ => ImportError::Store(e),
    }
}

/// True for DuckDB's "another process holds this file" error, whose text
/// is `IO Error: Could not set lock on file "PATH": Conflicting lock is
/// held in PROGRAM (PID N) ...`.
pub(crate) fn is_lock_error(e: &duckdb::Error) -> bool {
    let text = e.to_string();
    text.contains("Could not set lock on file") || text.contains("Conflicting lock is held")
}

/// `upid-collector import ...`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import usage history from a Parquet file with the export schema
    /// (docs/export.md). Stop the collector first.
    Parquet {
        /// The Parquet file.
        file: PathBuf,
        /// Store options.
        #[command(flatten)]
        common: ImportArgs,
    },
    /// Import usage history from a Prometheus server's cAdvisor and
    /// kube-state-metrics series (docs/export.md). Stop the collector first.
    Prometheus {
        /// What to fetch.
        #[command(flatten)]
        prometheus: prometheus::PrometheusArgs,
        /// Store options.
        #[command(flatten)]
        common: ImportArgs,
    },
}

/// Options every import takes.
#[derive(Debug, Clone, Default, Args)]
pub struct ImportArgs {
    /// DuckDB store file [default: the config file's `store`, else
    /// /var/lib/upid/upid.duckdb or $XDG_DATA_HOME/upid/upid.duckdb,
    /// whichever exists].
    #[arg(long, env = "UPID_STORE")]
    pub store: Option<PathBuf>,
    /// Read and check everything, print the summary, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs an import command and prints its summary on stdout.
pub fn run_cli(command: ImportCommand, file: &FileConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    let (summary, what) = match command {
        ImportCommand::Parquet {
            file: input,
            common,
        } => {
            let store = resolve_store_path(common.store.as_deref(), file)?;
            let what = format!("importing {} into {}", input.display(), store.display());
            let summary = parquet::import_parquet(&store, &input, common.dry_run)
                .with_context(|| what.clone())?;
            (summary, what)
        }
        ImportCommand::Prometheus { prometheus, common } => {
            let store = resolve_store_path(common.store.as_deref(), file)?;
            let options = prometheus.options(common.dry_run)?;
            let what = format!("importing from {} into {}", options.url, store.display());
            let summary =
                prometheus::import_prometheus(&store, &options).with_context(|| what.clone())?;
            (summary, what)
        }
    };
    tracing::info!(
        stored = summary.rows_stored,
        skipped = summary.rows_skipped(),
        "{what}: done"
    );
    println!("{summary}");
    Ok(())
}

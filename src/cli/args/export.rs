//! Flags of `upid export`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::time_arg::{self, TimeArg};

/// A report table, as `--tables` takes it (docs/export.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum ExportTable {
    /// Usage rows: one per container per interval.
    Samples,
    /// One row per container seen that day, with its inventory.
    Containers,
    /// Rightsizing recommendations per workload container.
    Rightsizing,
    /// Idle detection per workload.
    Idle,
    /// Cost of the day per workload.
    Cost,
    /// Image update decisions (range reaching yesterday or today only).
    Updates,
}

impl ExportTable {
    /// The name the collector knows the table by.
    pub fn name(self) -> &'static str {
        match self {
            ExportTable::Samples => "samples",
            ExportTable::Containers => "containers",
            ExportTable::Rightsizing => "rightsizing",
            ExportTable::Idle => "idle",
            ExportTable::Cost => "cost",
            ExportTable::Updates => "updates",
        }
    }
}

/// Flags of `upid export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Start of the range: a duration back from now (`7d`), an RFC 3339
    /// time, or a date (`2024-05-01`, midnight UTC).
    #[arg(long, value_name = "WHEN", default_value = "7d", value_parser = time_arg::parse)]
    pub since: TimeArg,
    /// End of the range, exclusive (same forms as --since). Default: now.
    #[arg(long, value_name = "WHEN", value_parser = time_arg::parse)]
    pub until: Option<TimeArg>,
    /// Directory to write into (created when missing): files land as
    /// `<table>/date=YYYY-MM-DD/part-0.parquet`, each replaced atomically.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only these tables, comma-separated or repeated. Default: all.
    #[arg(long, value_name = "TABLE", value_enum, value_delimiter = ',')]
    pub tables: Vec<ExportTable>,
}

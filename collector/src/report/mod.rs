//! Parquet reports, Hive-partitioned by date (docs/export.md): the usage
//! rows (`samples`), the containers seen, and what the analyses decided
//! (`rightsizing`, `idle`, `cost`, `updates`), one file per table and UTC
//! day:
//!
//! ```text
//! <dir>/<table>/date=YYYY-MM-DD/part-0.parquet
//! ```
//!
//! - [`tables`]: what each table's columns are (SQL over the store, or
//!   the analyses' answers).
//! - [`writer`]: atomic Parquet files (hidden temporary name, fsync,
//!   rename, fsync of the directory).
//! - [`schedule`]: the collector's periodic task (default daily, backfill
//!   of missing days at start, old partitions removed).
//! - [`settings`]: the `reports:` section of the config file.
//!
//! [`write_day`] is the one place a day's files are made: the periodic
//! task writes into the reports directory, the `Export` RPC into a
//! temporary directory it then streams to `upid export`.

pub mod schedule;
pub mod settings;
pub mod tables;
pub mod writer;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use upid::wire::v1;

use self::tables::{Costed, Rightsized, Row, Table};
pub use self::writer::WriteError;
use crate::analysis::{AnalysisError, Analyzer};
use crate::store::{QueryError, Reader};

/// Nanoseconds in a day (one partition).
pub const DAY_NS: i64 = 86_400 * NS_PER_S;
const NS_PER_S: i64 = 1_000_000_000;

/// The file name inside every partition. Stable, so writing a day again
/// replaces its file instead of adding one.
pub const PART_FILE: &str = "part-0.parquet";

/// What went wrong writing a day's report. Files already written for the
/// day stay (each is whole); the failed one is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A store query failed.
    #[error("{table} of {date}: {source}")]
    Query {
        /// The table being written.
        table: &'static str,
        /// The day.
        date: String,
        /// Underlying error.
        source: Box<QueryError>,
    },
    /// An analysis failed.
    #[error("{table} of {date}: {source}")]
    Analysis {
        /// The table being written.
        table: &'static str,
        /// The day.
        date: String,
        /// Underlying error.
        source: Box<AnalysisError>,
    },
    /// Writing a file failed.
    #[error("{table} of {date}: {source}")]
    Write {
        /// The table being written.
        table: &'static str,
        /// The day.
        date: String,
        /// Underlying error.
        source: Box<WriteError>,
    },
}

/// One UTC day of a report, possibly cut short by the range asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySpan {
    /// `YYYY-MM-DD` (the partition's `date=` value).
    pub date: String,
    /// Start of the day, Unix ns.
    pub day_start_unix_ns: i64,
    /// Start of what is written: the day's start, or later for the first
    /// day of a range.
    pub from_unix_ns: i64,
    /// End (exclusive) of what is written, and the analysis time: the
    /// day's end, or earlier for the last day of a range.
    pub until_unix_ns: i64,
}

impl DaySpan {
    /// Whether the span is the whole day.
    pub fn is_whole_day(&self) -> bool {
        self.from_unix_ns == self.day_start_unix_ns
            && self.until_unix_ns == self.day_start_unix_ns + DAY_NS
    }
}

/// Start of the UTC day holding `unix_ns`.
pub fn day_start(unix_ns: i64) -> i64 {
    unix_ns.div_euclid(DAY_NS) * DAY_NS
}

/// `YYYY-MM-DD` of the UTC day holding `unix_ns` (from 1970 on).
pub fn date_of(unix_ns: i64) -> String {
    let secs = u64::try_from(day_start(unix_ns) / NS_PER_S).unwrap_or(0);
    let mut date =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
    date.truncate(10);
    date
}

/// The days `[since, until)` touches, oldest first, each cut to the range.
pub fn days_of(since_unix_ns: i64, until_unix_ns: i64) -> Vec<DaySpan> {
    let mut days = Vec::new();
    let mut start = day_start(since_unix_ns);
    while start < until_unix_ns {
        days.push(DaySpan {
            date: date_of(start),
            day_start_unix_ns: start,
            from_unix_ns: since_unix_ns.max(start),
            until_unix_ns: until_unix_ns.min(start + DAY_NS),
        });
        start += DAY_NS;
    }
    days
}

/// `<table>/date=<date>/part-0.parquet`, relative to a reports directory.
pub fn relative_path(table: Table, date: &str) -> PathBuf {
    Path::new(table.name())
        .join(format!("date={date}"))
        .join(PART_FILE)
}

/// A file a report run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its table.
    pub table: Table,
    /// Its day (`YYYY-MM-DD`).
    pub date: String,
    /// Path relative to the reports directory.
    pub relative: PathBuf,
    /// Rows in it.
    pub rows: u64,
}

/// Writes the files of `tables` for `day` under `dir` (blocking: DuckDB).
///
/// A span without any `usage` row gets no usage-based file (nothing was
/// measured); `updates`, when given, is written for the day whatever the
/// usage (the decisions are about what runs now). `rightsizing`, `idle`
/// and `cost` are the analyses evaluated at the span's end with the
/// collector's settings; `cost` is charged over the span itself.
pub fn write_day(
    reader: &Reader,
    analyzer: &Analyzer,
    dir: &Path,
    day: &DaySpan,
    tables: &[Table],
    updates: Option<&v1::ListUpdatesResponse>,
) -> Result<Vec<WrittenFile>, ReportError> {
    let (from, at) = (day.from_unix_ns, day.until_unix_ns);
    let date = day.date.clone();
    let query_error = |table: Table| {
        let date = date.clone();
        move |source| ReportError::Query {
            table: table.name(),
            date,
            source: Box::new(source),
        }
    };
    let usage_rows = reader
        .with_connection(|c| {
            c.query_row(&tables::usage_rows_query(from, at), [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map_err(|source| QueryError::Sql {
            what: "usage rows of a report day",
            source,
        })
        .map_err(query_error(Table::Samples))?;
    let mut files = Vec::new();
    for &table in tables {
        if table != Table::Updates && usage_rows == 0 {
            continue;
        }
        let relative = relative_path(table, &day.date);
        let dest = dir.join(&relative);
        let analysis = |source| ReportError::Analysis {
            table: table.name(),
            date: day.date.clone(),
            source: Box::new(source),
        };
        let currency = analyzer.pricing.currency.as_str();
        let written = match table {
            Table::Samples => {
                reader.with_connection(|c| writer::write_from(c, &tables::samples(from, at), &dest))
            }
            Table::Containers => reader
                .with_connection(|c| writer::write_from(c, &tables::containers(from, at), &dest)),
            Table::Rightsizing => {
                let request = v1::RightsizeRequest {
                    scope: None,
                    group_by: v1::RightsizeGrouping::Workload as i32,
                    cpu_limit_ratio: None,
                };
                let answer = analyzer.rightsize(reader, &request, at).map_err(analysis)?;
                let rows: Vec<_> = answer
                    .recommendations
                    .into_iter()
                    .map(|r| row(from, at, currency, Rightsized::of(r)))
                    .collect();
                writer::write_rows(
                    tables::RIGHTSIZING,
                    &rows,
                    "namespace, workload_kind, workload, container",
                    &dest,
                )
            }
            Table::Idle => {
                let request = v1::IdleRequest {
                    scope: None,
                    include_active: true,
                };
                let answer = analyzer.idle(reader, &request, at).map_err(analysis)?;
                let rows: Vec<_> = answer
                    .workloads
                    .into_iter()
                    .map(|w| row(from, at, currency, w))
                    .collect();
                writer::write_rows(
                    tables::IDLE,
                    &rows,
                    "namespace, workload_kind, workload",
                    &dest,
                )
            }
            Table::Cost => {
                let window_s = ((at - from) / NS_PER_S).max(1);
                let request = v1::CostRequest {
                    scope: None,
                    group_by: v1::CostGrouping::Workload as i32,
                    window_s,
                };
                let answer = analyzer.cost(reader, &request, at).map_err(analysis)?;
                let pricing = answer.pricing.unwrap_or_default();
                let start = answer.start_unix_ns;
                let rows: Vec<_> = answer
                    .lines
                    .into_iter()
                    .map(|line| {
                        row(
                            start,
                            at,
                            currency,
                            Costed {
                                line,
                                cpu_core_hour: pricing.cpu_core_hour,
                                memory_gib_hour: pricing.memory_gib_hour,
                            },
                        )
                    })
                    .collect();
                writer::write_rows(
                    tables::COST,
                    &rows,
                    "namespace, workload_kind, workload",
                    &dest,
                )
            }
            Table::Updates => {
                let Some(answer) = updates else { continue };
                let rows: Vec<_> = answer
                    .decisions
                    .iter()
                    .map(|d| row(from, at, currency, d.clone()))
                    .collect();
                writer::write_rows(
                    tables::UPDATES,
                    &rows,
                    "namespace, workload, container, current",
                    &dest,
                )
            }
        };
        let rows = written.map_err(|source| ReportError::Write {
            table: table.name(),
            date: day.date.clone(),
            source: Box::new(source),
        })?;
        files.push(WrittenFile {
            table,
            date: day.date.clone(),
            relative,
            rows,
        });
    }
    Ok(files)
}

fn row<R>(start_unix_ns: i64, at_unix_ns: i64, currency: &str, item: R) -> Row<R> {
    Row {
        start_unix_ns,
        at_unix_ns,
        currency: currency.to_owned(),
        item,
    }
}

/// Whether the decisions of now belong in `day`'s partition: only for the
/// current UTC day and the one just over (they say what runs now, not
/// what ran then).
pub fn takes_updates(day: &DaySpan, now_unix_ns: i64) -> bool {
    day.day_start_unix_ns >= day_start(now_unix_ns) - DAY_NS
}

/// What `/metrics` shows of the reports.
#[derive(Debug, Default)]
pub struct ReportMetrics {
    /// Report files written (one per table and day).
    pub files_written: AtomicU64,
    /// Report days that failed (retried by a later run).
    pub failures: AtomicU64,
    /// When the latest run without a failure finished, Unix seconds (0:
    /// none yet).
    pub last_success_unix_s: AtomicU64,
    /// Date partitions removed for being older than `reports.keep_days`.
    pub partitions_removed: AtomicU64,
}

impl ReportMetrics {
    /// Appends the report families in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, kind, help, value) in [
            (
                "upid_collector_reports_written_total",
                "counter",
                "Parquet report files written (one per table and day).",
                load(&self.files_written),
            ),
            (
                "upid_collector_report_failures_total",
                "counter",
                "Report days that failed to write (the next run retries them).",
                load(&self.failures),
            ),
            (
                "upid_collector_report_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the latest report run that finished without a failure (0: none yet).",
                load(&self.last_success_unix_s),
            ),
            (
                "upid_collector_report_partitions_removed_total",
                "counter",
                "Report date partitions removed for being older than reports.keep_days.",
                load(&self.partitions_removed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-05-01T00:00:00Z.
    const MAY_1: i64 = 1_714_521_600 * NS_PER_S;

    #[test]
    fn days_are_utc_and_cut_to_the_range() {
        assert_eq!(date_of(MAY_1), "2024-05-01");
        assert_eq!(date_of(MAY_1 + DAY_NS - 1), "2024-05-01");
        assert_eq!(date_of(MAY_1 - 1), "2024-04-30");
        let days = days_of(MAY_1 - 3600 * NS_PER_S, MAY_1 + DAY_NS + 60 * NS_PER_S);
        let dates: Vec<_> = days.iter().map(|d| d.date.as_str()).collect();
        assert_eq!(dates, ["2024-04-30", "2024-05-01", "2024-05-02"]);
        assert_eq!(days[0].from_unix_ns, MAY_1 - 3600 * NS_PER_S);
        assert_eq!(days[0].until_unix_ns, MAY_1);
        assert!(days[1].is_whole_day() && !days[0].is_whole_day());
        assert_eq!(days[2].until_unix_ns, MAY_1 + DAY_NS + 60 * NS_PER_S);
        assert!(days_of(MAY_1, MAY_1).is_empty());
        assert_eq!(days_of(MAY_1, MAY_1 + DAY_NS).len(), 1);
        assert_eq!(
            relative_path(Table::Cost, "2024-05-01"),
            PathBuf::from("cost/date=2024-05-01/part-0.parquet")
        );
    }

    #[test]
    fn only_today_and_yesterday_take_the_current_update_decisions() {
        let now = MAY_1 + 3 * DAY_NS + 3600 * NS_PER_S;
        let days = days_of(MAY_1, now);
        let takes: Vec<bool> = days.iter().map(|d| takes_updates(d, now)).collect();
        assert_eq!(takes, [false, false, true, true]);
    }

    #[test]
    fn report_metrics_are_rendered() {
        let m = ReportMetrics::default();
        m.files_written.fetch_add(6, Ordering::Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("upid_collector_reports_written_total 6\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE upid_collector_report_last_success_timestamp_seconds gauge\n")
        );
    }
}

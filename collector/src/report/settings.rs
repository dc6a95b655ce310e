//! The `reports:` section of the collector's config file: whether, where,
//! how often and how far back the periodic Parquet reports are written.
//! Every field is optional; the defaults are those docs/export.md lists.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::tables::Table;

/// Seconds in a day (one partition).
pub const DAY_S: u64 = 86_400;
/// Default [`ReportSettings::interval_s`]: a day.
pub const DEFAULT_INTERVAL_S: u64 = DAY_S;
/// Shortest [`ReportSettings::interval_s`]: an hour.
pub const MIN_INTERVAL_S: u64 = 3_600;
/// Default [`ReportSettings::delay_s`]: 10 minutes, so the rollup (every
/// minute) and agents' last batches of the day are in.
pub const DEFAULT_DELAY_S: u64 = 600;
/// Longest [`ReportSettings::delay_s`]: 6 hours.
pub const MAX_DELAY_S: u64 = 6 * 3_600;
/// Default [`ReportSettings::backfill_days`].
pub const DEFAULT_BACKFILL_DAYS: u32 = 7;
/// Longest [`ReportSettings::backfill_days`].
pub const MAX_BACKFILL_DAYS: u32 = 366;
/// Default [`ReportSettings::keep_days`].
pub const DEFAULT_KEEP_DAYS: u32 = 90;
/// Name of the reports directory beside the store file.
pub const DEFAULT_DIR_NAME: &str = "reports";

/// Periodic Parquet reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportSettings {
    /// Write reports (serve and standalone alike).
    pub enabled: bool,
    /// Where; `None`: `reports/` beside the store file.
    pub dir: Option<PathBuf>,
    /// Time between runs (seconds): a day, or a divisor of a day down to an
    /// hour (then each run also rewrites today so far), or whole days.
    pub interval_s: u64,
    /// How long after a day ends (UTC) its report is written (seconds).
    pub delay_s: u64,
    /// Days before today whose missing reports a run writes (at start
    /// too), so a collector that was down catches up.
    pub backfill_days: u32,
    /// Date partitions older than this many days are deleted (0: never).
    pub keep_days: u32,
    /// The tables to write, by name; empty: every table.
    pub tables: Vec<String>,
}

impl Default for ReportSettings {
    fn default() -> ReportSettings {
        ReportSettings {
            enabled: true,
            dir: None,
            interval_s: DEFAULT_INTERVAL_S,
            delay_s: DEFAULT_DELAY_S,
            backfill_days: DEFAULT_BACKFILL_DAYS,
            keep_days: DEFAULT_KEEP_DAYS,
            tables: Vec::new(),
        }
    }
}

impl ReportSettings {
    /// Checks values that parse but cannot work; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let i = self.interval_s;
        let divides_a_day = (MIN_INTERVAL_S..DAY_S).contains(&i) && DAY_S.is_multiple_of(i);
        let whole_days = i >= DAY_S && i.is_multiple_of(DAY_S);
        if !(divides_a_day || whole_days) {
            return Err(format!(
                "reports.interval_s is {i}: use 86400 (a day), a divisor of a day down to 3600 \
                 (3600, 7200, 10800, 14400, 21600, 28800, 43200) or whole days"
            ));
        }
        if self.delay_s > MAX_DELAY_S {
            return Err(format!(
                "reports.delay_s is {}: use 0 to {MAX_DELAY_S} (6 hours)",
                self.delay_s
            ));
        }
        if self.backfill_days > MAX_BACKFILL_DAYS {
            return Err(format!(
                "reports.backfill_days is {}: use 0 to {MAX_BACKFILL_DAYS}",
                self.backfill_days
            ));
        }
        let interval_days = i.div_ceil(DAY_S);
        if u64::from(self.backfill_days) < interval_days {
            return Err(format!(
                "reports.backfill_days is {} but reports.interval_s is {i} ({interval_days} days): \
                 backfill at least as many days as an interval spans, or days are skipped",
                self.backfill_days
            ));
        }
        if self.keep_days != 0 && self.keep_days < self.backfill_days {
            return Err(format!(
                "reports.keep_days is {} but reports.backfill_days is {}: keep at least the \
                 backfilled days (or 0: keep everything), or each run rewrites what the last deleted",
                self.keep_days, self.backfill_days
            ));
        }
        self.table_set().map(|_| ())
    }

    /// The tables to write, in their fixed order.
    pub fn table_set(&self) -> Result<Vec<Table>, String> {
        Table::parse_list(&self.tables).map_err(|e| format!("reports.tables: {e}"))
    }

    /// The reports directory for a collector whose store is `store`.
    pub fn dir_for(&self, store: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) => dir.clone(),
            None => store
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join(DEFAULT_DIR_NAME),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> ReportSettings {
        match serde_norway::from_str(yaml) {
            Ok(s) => s,
            Err(e) => panic!("{yaml:?} does not parse: {e}"),
        }
    }

    #[test]
    fn report_defaults_are_daily_beside_the_store() {
        let s = parse("enabled: true\n");
        assert_eq!(s, ReportSettings::default());
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(
            s.dir_for(Path::new("/var/lib/upid/upid.duckdb")),
            PathBuf::from("/var/lib/upid/reports")
        );
        assert_eq!(
            parse("dir: /srv/r\n").dir_for(Path::new("/x/upid.duckdb")),
            PathBuf::from("/srv/r")
        );
        assert_eq!(s.table_set().map(|t| t.len()), Ok(Table::ALL.len()));
    }

    #[test]
    fn report_settings_out_of_range_are_named() {
        for (yaml, needle) in [
            ("interval_s: 5000\n", "reports.interval_s is 5000"),
            ("interval_s: 600\n", "reports.interval_s is 600"),
            ("interval_s: 100000\n", "reports.interval_s is 100000"),
            ("delay_s: 99999\n", "reports.delay_s"),
            ("backfill_days: 1000\n", "reports.backfill_days"),
            (
                "interval_s: 604800\nbackfill_days: 3\n",
                "backfill at least as many days",
            ),
            ("keep_days: 2\n", "reports.keep_days is 2"),
            (
                "tables: [samples, bogus]\n",
                "reports.tables: unknown table \"bogus\"",
            ),
        ] {
            let why = parse(yaml).validate().err().unwrap_or_default();
            assert!(why.contains(needle), "{yaml}: {why}");
        }
        for ok in [
            "interval_s: 3600\n",
            "interval_s: 21600\n",
            "interval_s: 604800\nbackfill_days: 7\n",
            "keep_days: 0\n",
            "tables: [cost, samples]\n",
        ] {
            assert_eq!(parse(ok).validate(), Ok(()), "{ok}");
        }
    }
}

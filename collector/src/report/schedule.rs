//! The periodic report task of a running collector.
//!
//! Runs are aligned to multiples of `reports.interval_s` counted from
//! midnight UTC, plus `reports.delay_s` (default: daily at 00:10 UTC), and
//! one runs at start. Each run writes every day of the last
//! `reports.backfill_days` that has ended (plus the delay) and has no
//! final report yet: a day whose files are missing, or were written before
//! the day was over (by a run of a shorter interval, which also rewrites
//! today so far each time). A day without usage rows gets no files. Then
//! date partitions older than `reports.keep_days` are removed. A run with
//! a failure is retried after [`RETRY_AFTER`]; every failure is logged and
//! counted (`upid_collector_report_failures_total`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use upid::wire::v1;

use super::settings::ReportSettings;
use super::tables::Table;
use super::{DAY_NS, DaySpan, ReportMetrics, date_of, day_start, relative_path, takes_updates};
use crate::analysis::Analyzer;
use crate::store::{InventoryRecord, Reader, Rollup};
use crate::updates::UpdateChecker;

/// A run with a failure is tried again this much later (or at the next
/// regular run, if sooner).
pub const RETRY_AFTER: Duration = Duration::from_secs(600);

/// The task wakes at least this often to look at the clock again (a
/// suspended machine or a clock step must not delay a run by a day).
const MAX_SLEEP: Duration = Duration::from_secs(300);

const NS_PER_S: i64 = 1_000_000_000;

/// Why a report has no `updates` table when update checks are off.
pub const UPDATES_OFF: &str =
    "update checks are off (updates.enabled is false in the collector's config file)";

/// What a report run reads from and writes to.
pub struct ReportTask {
    /// The reports directory.
    pub dir: PathBuf,
    /// The tables to write.
    pub tables: Vec<Table>,
    /// Schedule and retention.
    pub settings: ReportSettings,
    /// A reader of its own (report queries never hold the query API's).
    pub reader: Arc<Reader>,
    /// The collector's analyses, with its settings and prices.
    pub analyzer: Arc<Analyzer>,
    /// The update checker; `None` when update checks are off.
    pub updates: Option<Arc<UpdateChecker>>,
    /// Rolls agent samples into `usage` before a run.
    pub rollup: Option<Arc<Mutex<Rollup>>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<ReportMetrics>,
}

/// Unix ns now.
fn now_unix_ns() -> i64 {
    crate::store::unix_now_ns()
}

/// The first run time after `now`: a multiple of `interval_ns` since the
/// epoch (midnight UTC for intervals dividing a day) plus `delay_ns`.
pub fn next_run(now_unix_ns: i64, interval_ns: i64, delay_ns: i64) -> i64 {
    let interval = interval_ns.max(1);
    ((now_unix_ns - delay_ns).div_euclid(interval) + 1) * interval + delay_ns
}

/// Rolls agent samples up into `usage` so a report holds the latest
/// minute; a failure is logged (the report is written with what is there).
pub async fn roll_up(rollup: Option<&Arc<Mutex<Rollup>>>) {
    let Some(rollup) = rollup.cloned() else {
        return;
    };
    let done = tokio::task::spawn_blocking(move || {
        rollup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .run()
    })
    .await;
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "rollup before a report failed"),
        Err(e) => tracing::error!(error = %e, "the rollup task before a report failed"),
    }
}

/// The current update decisions for every running container of
/// `inventory`; `Err` says why there are none.
pub async fn current_decisions(
    checker: Option<&Arc<UpdateChecker>>,
    inventory: Result<HashMap<String, InventoryRecord>, String>,
    now_unix_ns: i64,
) -> Result<v1::ListUpdatesResponse, String> {
    let Some(checker) = checker else {
        return Err(UPDATES_OFF.to_owned());
    };
    let inventory = inventory.map_err(|e| format!("reading the inventory: {e}"))?;
    Ok(checker
        .decide_running(&inventory, &v1::ListUpdatesRequest::default(), now_unix_ns)
        .await)
}

impl ReportTask {
    /// Starts the task; it ends when `stop` turns true (between days).
    pub fn spawn(self, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tracing::info!(
            dir = %self.dir.display(),
            interval_s = self.settings.interval_s,
            backfill_days = self.settings.backfill_days,
            tables = %self.tables.iter().map(|t| t.name()).collect::<Vec<_>>().join(","),
            "periodic Parquet reports on"
        );
        tokio::spawn(self.run(stop))
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let interval_ns =
            i64::try_from(self.settings.interval_s).unwrap_or(i64::MAX / 2) * NS_PER_S;
        let delay_ns = i64::try_from(self.settings.delay_s).unwrap_or(0) * NS_PER_S;
        let retry_ns = i64::try_from(RETRY_AFTER.as_nanos()).unwrap_or(i64::MAX);
        let mut due = now_unix_ns();
        loop {
            if now_unix_ns() >= due {
                let ok = self.run_once(now_unix_ns(), &stop).await;
                if *stop.borrow() {
                    return;
                }
                let now = now_unix_ns();
                due = next_run(now, interval_ns, delay_ns);
                if !ok {
                    due = due.min(now.saturating_add(retry_ns));
                }
            }
            let wait_ns = u64::try_from(due.saturating_sub(now_unix_ns())).unwrap_or(0);
            let wait = Duration::from_nanos(wait_ns).min(MAX_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// The days a run at `now` writes, oldest first.
    pub fn due_days(&self, now_unix_ns: i64) -> Vec<DaySpan> {
        let today = day_start(now_unix_ns);
        let delay_ns = i64::try_from(self.settings.delay_s).unwrap_or(0) * NS_PER_S;
        let mut days = Vec::new();
        for back in (1..=i64::from(self.settings.backfill_days)).rev() {
            let start = today - back * DAY_NS;
            let final_after = start + DAY_NS + delay_ns;
            if now_unix_ns < final_after {
                continue;
            }
            let day = DaySpan {
                date: date_of(start),
                day_start_unix_ns: start,
                from_unix_ns: start,
                until_unix_ns: start + DAY_NS,
            };
            if !self.is_final(&day, final_after) {
                days.push(day);
            }
        }
        if self.settings.interval_s < super::settings::DAY_S && now_unix_ns > today {
            days.push(DaySpan {
                date: date_of(today),
                day_start_unix_ns: today,
                from_unix_ns: today,
                until_unix_ns: now_unix_ns,
            });
        }
        days
    }

    /// Whether `day` has every usage-based file, each written after
    /// `final_after` (Unix ns). `updates` alone only counts when it is the
    /// only table.
    fn is_final(&self, day: &DaySpan, final_after: i64) -> bool {
        let final_after =
            UNIX_EPOCH + Duration::from_nanos(u64::try_from(final_after).unwrap_or(0));
        let mut checked = self
            .tables
            .iter()
            .filter(|t| **t != Table::Updates)
            .peekable();
        if checked.peek().is_none() {
            return self.file_written_after(Table::Updates, day, final_after);
        }
        checked.all(|t| self.file_written_after(*t, day, final_after))
    }

    fn file_written_after(&self, table: Table, day: &DaySpan, after: SystemTime) -> bool {
        std::fs::metadata(self.dir.join(relative_path(table, &day.date)))
            .and_then(|m| m.modified())
            .is_ok_and(|written| written >= after)
    }

    /// One run; false when something failed.
    async fn run_once(&self, now_unix_ns: i64, stop: &watch::Receiver<bool>) -> bool {
        let days = self.due_days(now_unix_ns);
        let mut ok = true;
        if !days.is_empty() {
            roll_up(self.rollup.as_ref()).await;
        }
        let wants_updates = self.tables.contains(&Table::Updates);
        let last = days.len().checked_sub(1);
        let mut decisions = None;
        if wants_updates && last.is_some_and(|i| takes_updates(&days[i], now_unix_ns)) {
            // Without a checker there is nothing to read the inventory for.
            let inventory = match &self.updates {
                Some(_) => {
                    let reader = self.reader.clone();
                    tokio::task::spawn_blocking(move || reader.inventory())
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                }
                None => Ok(HashMap::new()),
            };
            match current_decisions(self.updates.as_ref(), inventory, now_unix_ns).await {
                Ok(d) => decisions = Some(Arc::new(d)),
                Err(why) => tracing::info!(reason = %why, "reports: no updates table written"),
            }
        }
        for (i, day) in days.into_iter().enumerate() {
            if *stop.borrow() {
                return ok;
            }
            let updates = decisions.clone().filter(|_| Some(i) == last);
            let (reader, analyzer, dir, tables) = (
                self.reader.clone(),
                self.analyzer.clone(),
                self.dir.clone(),
                self.tables.clone(),
            );
            let date = day.date.clone();
            let done = tokio::task::spawn_blocking(move || {
                super::write_day(&reader, &analyzer, &dir, &day, &tables, updates.as_deref())
            })
            .await;
            match done {
                Ok(Ok(files)) if files.is_empty() => {
                    tracing::debug!(date = %date, "reports: no usage rows that day, nothing written");
                }
                Ok(Ok(files)) => {
                    let rows: u64 = files.iter().map(|f| f.rows).sum();
                    self.metrics
                        .files_written
                        .fetch_add(files.len() as u64, Ordering::Relaxed);
                    tracing::info!(date = %date, files = files.len(), rows, dir = %self.dir.display(), "report written");
                }
                Ok(Err(e)) => {
                    ok = false;
                    self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(date = %date, error = %e, "report failed; a later run retries it");
                }
                Err(e) => {
                    ok = false;
                    self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(date = %date, error = %e, "the report task failed; a later run retries it");
                }
            }
        }
        if self.settings.keep_days > 0 {
            let cutoff =
                date_of(day_start(now_unix_ns) - i64::from(self.settings.keep_days) * DAY_NS);
            let removed = remove_partitions_before(&self.dir, &cutoff);
            if removed > 0 {
                self.metrics
                    .partitions_removed
                    .fetch_add(removed, Ordering::Relaxed);
            }
        }
        if ok {
            let secs = u64::try_from(now_unix_ns / NS_PER_S).unwrap_or(0);
            self.metrics
                .last_success_unix_s
                .store(secs, Ordering::Relaxed);
        }
        ok
    }
}

/// Removes `<dir>/<table>/date=D` for every table and every `D` before
/// `cutoff` (`YYYY-MM-DD`); returns how many. Each removal is logged;
/// anything else in the directory is left alone.
pub fn remove_partitions_before(dir: &Path, cutoff: &str) -> u64 {
    let mut removed = 0;
    for table in Table::ALL {
        let Ok(entries) = std::fs::read_dir(dir.join(table.name())) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(date) = name.strip_prefix("date=") else {
                continue;
            };
            let well_formed = date.len() == 10
                && date.chars().enumerate().all(|(i, c)| {
                    if i == 4 || i == 7 {
                        c == '-'
                    } else {
                        c.is_ascii_digit()
                    }
                });
            if !well_formed || date >= cutoff {
                continue;
            }
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(path = %path.display(), keep_before = cutoff, "old report partition removed");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an old report partition");
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * NS_PER_S;
    /// 2024-05-01T00:00:00Z.
    const MAY_1: i64 = 1_714_521_600 * NS_PER_S;

    #[test]
    fn report_runs_are_aligned_to_midnight_plus_the_delay() {
        let day = 24 * H;
        let delay = H / 6;
        assert_eq!(next_run(MAY_1 + 5 * H, day, delay), MAY_1 + day + delay);
        assert_eq!(next_run(MAY_1 + delay / 2, day, delay), MAY_1 + delay);
        assert_eq!(next_run(MAY_1 + delay, day, delay), MAY_1 + day + delay);
        assert_eq!(next_run(MAY_1 + 5 * H, 6 * H, 0), MAY_1 + 6 * H);
    }

    #[test]
    fn old_report_partitions_are_removed_and_nothing_else() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("upid-report-keep-{}", std::process::id()));
        for p in [
            "samples/date=2024-04-01",
            "samples/date=2024-05-01",
            "cost/date=2024-04-30",
            "cost/notes",
            "cost/date=garbage",
        ] {
            std::fs::create_dir_all(dir.join(p))?;
        }
        assert_eq!(remove_partitions_before(&dir, "2024-05-01"), 2);
        assert!(dir.join("samples/date=2024-05-01").is_dir());
        assert!(!dir.join("samples/date=2024-04-01").exists());
        assert!(!dir.join("cost/date=2024-04-30").exists());
        assert!(dir.join("cost/notes").is_dir() && dir.join("cost/date=garbage").is_dir());
        std::fs::remove_dir_all(&dir)
    }
}

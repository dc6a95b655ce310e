//! What retention did, for `/metrics`: counters added up from each run's
//! [`RetentionReport`], and the store's size as the latest run measured it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{RetentionReason, RetentionReport, TABLE_COUNT, TABLES};

/// Retention's counters and gauges, rendered in the Prometheus text format.
#[derive(Debug, Default)]
pub struct RetentionCounters {
    runs: AtomicU64,
    failures: AtomicU64,
    /// Rows dropped per table of [`TABLES`], by reason (age, budget).
    dropped: [[AtomicU64; 2]; TABLE_COUNT],
    used_bytes: AtomicU64,
    budget_bytes: AtomicU64,
    budget_exceeded: AtomicU64,
}

fn reason_index(reason: RetentionReason) -> usize {
    match reason {
        RetentionReason::Age => 0,
        RetentionReason::Budget => 1,
    }
}

impl RetentionCounters {
    /// Adds up what a run dropped and keeps what it measured.
    pub fn record(&self, report: &RetentionReport) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        for d in &report.dropped {
            if let Some(t) = TABLES.iter().position(|t| *t == d.table) {
                self.dropped[t][reason_index(d.reason)].fetch_add(d.rows, Ordering::Relaxed);
            }
        }
        self.used_bytes
            .store(report.used_bytes_after, Ordering::Relaxed);
        self.budget_bytes
            .store(report.budget_bytes, Ordering::Relaxed);
        self.budget_exceeded
            .store(u64::from(!report.budget_met), Ordering::Relaxed);
    }

    /// Counts a run that failed.
    pub fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the budget shown before the first run (0: none).
    pub fn set_budget_bytes(&self, bytes: u64) {
        self.budget_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Rows dropped from `table` for `reason` so far.
    pub fn dropped_rows(&self, table: &str, reason: RetentionReason) -> u64 {
        TABLES.iter().position(|t| *t == table).map_or(0, |t| {
            self.dropped[t][reason_index(reason)].load(Ordering::Relaxed)
        })
    }

    /// Appends the retention families to `out`.
    pub fn render(&self, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let one = |out: &mut String, name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        one(
            out,
            "upid_collector_retention_runs_total",
            "counter",
            "Retention runs completed.",
            load(&self.runs),
        );
        one(
            out,
            "upid_collector_retention_failures_total",
            "counter",
            "Retention runs that failed (the next run retries).",
            load(&self.failures),
        );
        let name = "upid_collector_retention_dropped_rows_total";
        let _ = writeln!(
            out,
            "# HELP {name} Rows retention dropped, by table and reason (age: older than kept; budget: to get under the disk budget).\n# TYPE {name} counter"
        );
        for (t, table) in TABLES.iter().enumerate() {
            for reason in [RetentionReason::Age, RetentionReason::Budget] {
                let _ = writeln!(
                    out,
                    "{name}{{table=\"{table}\",reason=\"{}\"}} {}",
                    reason.as_str(),
                    load(&self.dropped[t][reason_index(reason)])
                );
            }
        }
        one(
            out,
            "upid_collector_store_used_bytes",
            "gauge",
            "Bytes the store uses by DuckDB's accounting (blocks in use x block size, plus the WAL), as the latest retention run measured.",
            load(&self.used_bytes),
        );
        one(
            out,
            "upid_collector_disk_budget_bytes",
            "gauge",
            "The store's disk budget (retention.disk_budget_bytes; 0: none).",
            load(&self.budget_bytes),
        );
        one(
            out,
            "upid_collector_disk_budget_exceeded",
            "gauge",
            "1 when the latest retention run could not get the store under its disk budget.",
            load(&self.budget_exceeded),
        );
    }
}

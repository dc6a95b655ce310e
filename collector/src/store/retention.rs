//! Retention: old data is dropped, oldest first, by age and to stay within
//! a disk budget; every drop is logged and counted.
//!
//! What is kept (whole UTC days before the current one, see
//! [`RetentionSettings`]):
//! - agent samples (`container_samples`, `node_samples`,
//!   `network_samples`) and the `batches` ledger: `raw_days` (7);
//! - the 1-minute `usage` rows with their hourly summary (`usage_hourly`,
//!   `usage_hourly_cpu`, identities left without hours in `usage_series`),
//!   lifecycle `events`, `update_events`, and the `container_inventory` of
//!   containers gone (removed, or not reported) that long: `usage_days`
//!   (90). `usage` keeps per minute the mean, the peak, throttling and OOM
//!   kills: what percentiles and daily peaks are computed from.
//!
//! Raw samples are dropped only once the rollup consumed them: the cutoff
//! is lowered to a day before the oldest tick of a batch the rollup has not
//! read yet (`rollup_state`), with the rollup's lookback. The collector
//! runs retention right after a rollup, under the rollup's lock, so they
//! never work on the same rows at once.
//!
//! Summary rows are dropped for the same hours as the usage rows (cutoffs
//! are whole days), in the same transaction, so the row counts per hour
//! that the store checks at open still agree and nothing is rebuilt.
//!
//! The ledger: a batch whose ledger row was dropped could be replayed by an
//! agent and stored again. Retention records per agent the highest seq it
//! dropped (`ledger_horizon`), and ingest answers such a batch, and any
//! batch whose tick is older than the raw horizon (`retention_state`),
//! [`IngestOutcome::Expired`](super::IngestOutcome::Expired): acknowledged,
//! not stored, counted. The rollup never recomputes minutes before the raw
//! horizon plus its lookback.
//!
//! The disk budget is measured as DuckDB accounts for it: blocks in use
//! (`pragma_database_size()`: `used_blocks` x `block_size`) plus the WAL,
//! not the file's size: DuckDB reuses blocks freed by deletes but never
//! shrinks the file. Over budget, whole oldest days are dropped, agent
//! samples first (only those already rolled up), then usage days, each
//! followed by a checkpoint (which frees the blocks) and a new measure, until
//! under the budget. The current day and the one before are never dropped
//! for the budget; when that is not enough, the run says so in an error
//! log and in [`RetentionReport::budget_met`].

mod counters;
mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use duckdb::{Connection, Transaction, params};

pub use counters::RetentionCounters;
pub use settings::{
    DEFAULT_DISK_BUDGET_BYTES, DEFAULT_INTERVAL_S, DEFAULT_RAW_DAYS, DEFAULT_USAGE_DAYS, MAX_DAYS,
    MAX_INTERVAL_S, MIN_DISK_BUDGET_BYTES, MIN_INTERVAL_S, RetentionSettings,
};

use super::rollup::{LOOKBACK_NS, MINUTE_NS};
use super::{Store, StoreError, unix_now_ns};

/// One day in ns: retention's grain.
pub const DAY_NS: i64 = 86_400_000_000_000;

/// Whole days before the current one that the budget never drops: with the
/// current day, at least a day of history stays.
pub const BUDGET_FLOOR_DAYS: i64 = 1;

/// Number of tables retention drops rows from.
pub const TABLE_COUNT: usize = 11;

/// The tables retention drops rows from (the `table` label of its metric).
pub const TABLES: [&str; TABLE_COUNT] = [
    "container_samples",
    "node_samples",
    "network_samples",
    "batches",
    "usage",
    "usage_hourly",
    "usage_hourly_cpu",
    "usage_series",
    "events",
    "update_events",
    "container_inventory",
];

/// Why rows were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionReason {
    /// Older than retention keeps.
    Age,
    /// To get the store under its disk budget.
    Budget,
}

impl RetentionReason {
    /// The name in logs and the metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionReason::Age => "age",
            RetentionReason::Budget => "budget",
        }
    }
}

/// Rows dropped from one table in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedRows {
    /// One of [`TABLES`].
    pub table: &'static str,
    /// Rows timed before this were dropped (Unix ns; for
    /// `container_inventory`, containers gone before it).
    pub before_unix_ns: i64,
    /// Rows dropped.
    pub rows: u64,
    /// Why.
    pub reason: RetentionReason,
}

/// One step taken to get under the disk budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStep {
    /// `true`: agent samples and ledger; `false`: usage and what goes with
    /// it.
    pub raw: bool,
    /// What was timed before this was dropped.
    pub before_unix_ns: i64,
    /// Bytes in use after the step's checkpoint.
    pub used_bytes_after: u64,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// The run's clock (Unix ns).
    pub now_unix_ns: i64,
    /// Raw samples before this are older than `raw_days`.
    pub raw_cutoff_unix_ns: i64,
    /// Usage rows before this are older than `usage_days`.
    pub usage_cutoff_unix_ns: i64,
    /// Set when raw samples older than the age cutoff were kept because
    /// the rollup has not consumed batches that need them: the cutoff used.
    pub raw_held_for_rollup_unix_ns: Option<i64>,
    /// Every table's drops, in the order done (tables with no rows
    /// dropped are left out).
    pub dropped: Vec<DroppedRows>,
    /// Steps taken for the budget, in order.
    pub budget_steps: Vec<BudgetStep>,
    /// Bytes in use (DuckDB's blocks plus WAL) before the run.
    pub used_bytes_before: u64,
    /// Bytes in use after the run.
    pub used_bytes_after: u64,
    /// The budget (0: none).
    pub budget_bytes: u64,
    /// `false` when the store stayed over the budget with everything
    /// droppable dropped (or a checkpoint failed).
    pub budget_met: bool,
    /// The budget never drops data from this time on (Unix ns).
    pub budget_floor_unix_ns: i64,
    /// Raw horizon after the run (`i64::MIN`: no samples ever dropped).
    pub raw_horizon_unix_ns: i64,
}

impl RetentionReport {
    /// Rows dropped from `table` for `reason` in this run.
    pub fn rows(&self, table: &str, reason: RetentionReason) -> u64 {
        self.dropped
            .iter()
            .filter(|d| d.table == table && d.reason == reason)
            .map(|d| d.rows)
            .sum()
    }

    /// Rows dropped in this run, all tables and reasons.
    pub fn total_rows(&self) -> u64 {
        self.dropped.iter().map(|d| d.rows).sum()
    }
}

/// Runs retention on its own connection to a store; one per store.
pub struct Retention {
    conn: Connection,
    path: Option<PathBuf>,
    raw_horizon: Arc<AtomicI64>,
    settings: RetentionSettings,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("path", &self.path)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Start of the UTC day holding `ts`.
fn floor_day(ts: i64) -> i64 {
    ts.div_euclid(DAY_NS).saturating_mul(DAY_NS)
}

/// RFC 3339 of a Unix ns time for logs (the number when before 1970).
fn shown(ts: i64) -> String {
    u64::try_from(ts).map_or_else(
        |_| ts.to_string(),
        |ns| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns)).to_string(),
    )
}

fn err(step: &'static str) -> impl Fn(duckdb::Error) -> StoreError {
    move |source| StoreError::Retention { step, source }
}

/// The raw horizon recorded in the store (`i64::MIN` when none).
pub(crate) fn load_raw_horizon(conn: &Connection) -> Result<i64, StoreError> {
    let h: Option<i64> = conn
        .query_row(
            "SELECT max(raw_horizon_unix_ns) FROM retention_state",
            [],
            |r| r.get(0),
        )
        .map_err(|source| StoreError::Load {
            table: "retention_state",
            source,
        })?;
    Ok(h.unwrap_or(i64::MIN))
}

/// `(raw, usage)` horizons as recorded in `tx`.
fn horizons(tx: &Transaction<'_>) -> Result<(Option<i64>, Option<i64>), StoreError> {
    tx.query_row(
        "SELECT max(raw_horizon_unix_ns), max(usage_horizon_unix_ns) FROM retention_state",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(err("read retention_state"))
}

fn write_horizons(
    tx: &Transaction<'_>,
    raw: Option<i64>,
    usage: Option<i64>,
) -> Result<(), StoreError> {
    tx.execute_batch("DELETE FROM retention_state")
        .map_err(err("write retention_state"))?;
    tx.execute(
        "INSERT INTO retention_state VALUES (?, ?)",
        params![raw.unwrap_or(i64::MIN), usage.unwrap_or(i64::MIN)],
    )
    .map_err(err("write retention_state"))?;
    Ok(())
}

/// The rollup's watermark (`-1` before the first rollup).
fn rollup_watermark(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT coalesce(max(rolled_up_received_unix_ns), -1) FROM rollup_state",
        [],
        |r| r.get(0),
    )
    .map_err(err("read rollup_state"))
}

/// The latest raw cutoff that keeps every sample the rollup still needs:
/// the start of the day before the oldest tick of a batch it has not read
/// (less a minute for samples timed before their tick and its lookback);
/// `None` when it has read every batch.
fn unrolled_limit(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let watermark = rollup_watermark(conn)?;
    let oldest: Option<i64> = conn
        .query_row(
            "SELECT min(tick_unix_ns) FROM batches WHERE received_unix_ns > ?",
            params![watermark],
            |r| r.get(0),
        )
        .map_err(err("find batches not rolled up"))?;
    Ok(oldest.map(|t| floor_day(t.saturating_sub(MINUTE_NS + LOOKBACK_NS))))
}

/// Smallest of the `ts` columns of agent data (the ledger by tick).
fn oldest_raw(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let mut oldest: Option<i64> = None;
    for sql in [
        "SELECT min(ts_unix_ns) FROM container_samples",
        "SELECT min(ts_unix_ns) FROM node_samples",
        "SELECT min(ts_unix_ns) FROM network_samples",
        "SELECT min(tick_unix_ns) FROM batches",
    ] {
        let t: Option<i64> = conn
            .query_row(sql, [], |r| r.get(0))
            .map_err(err("find the oldest sample"))?;
        oldest = match (oldest, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(oldest)
}

fn oldest_usage(conn: &Connection) -> Result<Option<i64>, StoreError> {
    conn.query_row("SELECT min(ts_unix_ns) FROM usage", [], |r| r.get(0))
        .map_err(err("find the oldest usage row"))
}

/// Size of the WAL beside `path` (0 when there is none).
fn wal_bytes(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    std::fs::metadata(Path::new(&wal)).map_or(0, |m| m.len())
}

impl Retention {
    /// Retention with `settings` on its own connection to `store`'s
    /// database.
    pub fn new(store: &Store, settings: RetentionSettings) -> Result<Retention, StoreError> {
        let conn = store.conn.try_clone().map_err(StoreError::Clone)?;
        Ok(Retention {
            conn,
            path: store.path.clone(),
            raw_horizon: Arc::clone(&store.raw_horizon),
            settings,
        })
    }

    /// What it runs with.
    pub fn settings(&self) -> &RetentionSettings {
        &self.settings
    }

    /// Bytes the store uses as DuckDB accounts for them: blocks in use
    /// times the block size, plus the WAL (0 in memory).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let (used_blocks, block_size): (i64, i64) = self
            .conn
            .query_row(
                "SELECT coalesce(sum(used_blocks), 0)::BIGINT, coalesce(max(block_size), 0)::BIGINT
                 FROM pragma_database_size() WHERE database_name = current_database()",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err("measure the store (pragma_database_size)"))?;
        let blocks = u64::try_from(used_blocks.max(0))
            .unwrap_or(0)
            .saturating_mul(u64::try_from(block_size.max(0)).unwrap_or(0));
        Ok(blocks.saturating_add(self.path.as_deref().map_or(0, wal_bytes)))
    }

    /// Runs once with the collector's clock; see [`Retention::run_at`].
    pub fn run(&mut self) -> Result<RetentionReport, StoreError> {
        self.run_at(unix_now_ns())
    }

    /// Drops what is older than retention keeps as of `now_unix_ns`, then,
    /// with a budget, whole oldest days until the store is under it (see
    /// the module docs). Each step is its own transaction: on an error,
    /// what earlier steps committed stays dropped.
    pub fn run_at(&mut self, now_unix_ns: i64) -> Result<RetentionReport, StoreError> {
        let today = floor_day(now_unix_ns);
        let days = |n: u32| DAY_NS.saturating_mul(i64::from(n));
        let mut report = RetentionReport {
            now_unix_ns,
            raw_cutoff_unix_ns: today.saturating_sub(days(self.settings.raw_days)),
            usage_cutoff_unix_ns: today.saturating_sub(days(self.settings.usage_days)),
            budget_bytes: self.settings.disk_budget_bytes,
            budget_met: true,
            budget_floor_unix_ns: today.saturating_sub(BUDGET_FLOOR_DAYS * DAY_NS),
            raw_horizon_unix_ns: self.raw_horizon.load(Ordering::Relaxed),
            ..RetentionReport::default()
        };
        report.used_bytes_before = self.used_bytes()?;

        let mut dropped =
            self.drop_raw(report.raw_cutoff_unix_ns, RetentionReason::Age, &mut report)?;
        dropped += self.drop_usage(
            report.usage_cutoff_unix_ns,
            RetentionReason::Age,
            &mut report,
        )?;
        if dropped > 0 {
            // A failure is logged; the budget loop checkpoints again.
            let _ = self.checkpoint();
        }
        let mut used = self.used_bytes()?;
        let budget = report.budget_bytes;
        let floor = report.budget_floor_unix_ns;
        while budget > 0 && used > budget {
            let unrolled = unrolled_limit(&self.conn)?;
            let raw_limit = unrolled.map_or(floor, |l| l.min(floor));
            let oldest = oldest_raw(&self.conn)?;
            let step = match oldest.filter(|o| *o < raw_limit) {
                Some(o) => Some((true, floor_day(o).saturating_add(DAY_NS).min(raw_limit))),
                None => {
                    if raw_limit < floor && oldest.is_some_and(|o| o < floor) {
                        // Samples the budget would drop wait for the rollup.
                        report.raw_held_for_rollup_unix_ns = Some(
                            report
                                .raw_held_for_rollup_unix_ns
                                .map_or(raw_limit, |h| h.min(raw_limit)),
                        );
                    }
                    oldest_usage(&self.conn)?
                        .filter(|o| *o < floor)
                        .map(|o| (false, floor_day(o).saturating_add(DAY_NS).min(floor)))
                }
            };
            let Some((raw, before)) = step else {
                report.budget_met = false;
                tracing::error!(
                    used_bytes = used,
                    budget_bytes = budget,
                    kept_from = %shown(floor),
                    "the store stays over its disk budget with everything retention may drop dropped \
                     (the current and previous day, and samples not rolled up yet, are kept): \
                     raise retention.disk_budget_bytes or give the store more disk"
                );
                break;
            };
            if raw {
                self.drop_raw(before, RetentionReason::Budget, &mut report)?;
            } else {
                self.drop_usage(before, RetentionReason::Budget, &mut report)?;
            }
            if !self.checkpoint() {
                // Nothing freed can be measured before a checkpoint: stop
                // rather than drop more; the next run measures again.
                report.budget_met = false;
                used = self.used_bytes()?;
                break;
            }
            used = self.used_bytes()?;
            report.budget_steps.push(BudgetStep {
                raw,
                before_unix_ns: before,
                used_bytes_after: used,
            });
        }
        report.used_bytes_after = used;
        report.raw_horizon_unix_ns = self.raw_horizon.load(Ordering::Relaxed);
        if report.total_rows() > 0 || !report.budget_met {
            tracing::info!(
                rows = report.total_rows(),
                used_bytes_before = report.used_bytes_before,
                used_bytes_after = report.used_bytes_after,
                budget_bytes = report.budget_bytes,
                budget_met = report.budget_met,
                "retention run done"
            );
        }
        Ok(report)
    }

    /// Writes the WAL into the file so freed blocks are freed and reused.
    /// `FORCE CHECKPOINT` waits for running write transactions (ingest
    /// commits are short) instead of failing beside them, and so frees the
    /// blocks of deleted row groups (a checkpoint next to writers would
    /// only be a concurrent one). False when it failed (logged).
    fn checkpoint(&self) -> bool {
        match self.conn.execute_batch("FORCE CHECKPOINT") {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "retention: checkpoint after dropping rows failed; the next run measures again");
                false
            }
        }
    }

    /// Drops agent samples and ledger rows timed before `before` (lowered
    /// to keep what the rollup has not consumed) in one transaction; rows
    /// dropped.
    fn drop_raw(
        &mut self,
        before: i64,
        reason: RetentionReason,
        report: &mut RetentionReport,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction().map_err(err("begin"))?;
        let mut cutoff = before;
        if let Some(limit) = unrolled_limit(&tx)?
            && limit < cutoff
        {
            cutoff = limit;
            report.raw_held_for_rollup_unix_ns = Some(
                report
                    .raw_held_for_rollup_unix_ns
                    .map_or(limit, |h| h.min(limit)),
            );
            tracing::info!(
                asked = %shown(before),
                kept_from = %shown(limit),
                "retention keeps older agent samples: batches that need them are not rolled up yet"
            );
        }
        let watermark = rollup_watermark(&tx)?;
        tx.execute(
            "INSERT INTO ledger_horizon
             SELECT agent_id, max(seq), ?::BIGINT FROM batches
             WHERE tick_unix_ns < ?::BIGINT AND received_unix_ns <= ?::BIGINT
             GROUP BY agent_id
             ON CONFLICT (agent_id) DO UPDATE SET
                 pruned_through_seq = greatest(pruned_through_seq, excluded.pruned_through_seq),
                 pruned_unix_ns = excluded.pruned_unix_ns",
            params![report.now_unix_ns, cutoff, watermark],
        )
        .map_err(err("record the ledger horizon"))?;
        let mut counts = Vec::with_capacity(4);
        counts.push((
            "batches",
            tx.execute(
                "DELETE FROM batches WHERE tick_unix_ns < ? AND received_unix_ns <= ?",
                params![cutoff, watermark],
            )
            .map_err(err("drop ledger rows"))?,
        ));
        let mut samples = 0;
        for table in ["container_samples", "node_samples", "network_samples"] {
            let rows = tx
                .execute(
                    &format!("DELETE FROM {table} WHERE ts_unix_ns < ?"),
                    params![cutoff],
                )
                .map_err(err("drop agent samples"))?;
            samples += rows;
            counts.push((table, rows));
        }
        let (raw_h, usage_h) = horizons(&tx)?;
        let mut new_raw = raw_h;
        if samples > 0 {
            new_raw = Some(raw_h.map_or(cutoff, |h| h.max(cutoff)));
            write_horizons(&tx, new_raw, usage_h)?;
        }
        tx.commit().map_err(err("commit"))?;
        if let Some(h) = new_raw {
            self.raw_horizon.fetch_max(h, Ordering::Relaxed);
        }
        Ok(Self::note(report, cutoff, reason, counts))
    }

    /// Drops usage rows timed before `before` (whole hours) with their
    /// hourly summary, and events and inventory as old, in one
    /// transaction; rows dropped.
    fn drop_usage(
        &mut self,
        before: i64,
        reason: RetentionReason,
        report: &mut RetentionReport,
    ) -> Result<u64, StoreError> {
        let cutoff = super::usage_summary::floor_hour(before);
        let tx = self.conn.transaction().map_err(err("begin"))?;
        let mut counts = Vec::with_capacity(7);
        // Identities whose every hour is dropped go with them (before the
        // hours, to be found).
        let series = tx
            .execute(
                "DELETE FROM usage_series
                 WHERE series_id IN (SELECT series_id FROM usage_hourly WHERE hour_unix_ns < $1::BIGINT)
                   AND series_id NOT IN (SELECT series_id FROM usage_hourly WHERE hour_unix_ns >= $1::BIGINT)",
                params![cutoff],
            )
            .map_err(err("drop series identities left without hours"))?;
        for (table, sql, step) in [
            (
                "usage",
                "DELETE FROM usage WHERE ts_unix_ns < ?",
                "drop usage rows",
            ),
            (
                "usage_hourly",
                "DELETE FROM usage_hourly WHERE hour_unix_ns < ?",
                "drop hourly summary rows",
            ),
            (
                "usage_hourly_cpu",
                "DELETE FROM usage_hourly_cpu WHERE hour_unix_ns < ?",
                "drop hourly summary rows",
            ),
            (
                "events",
                "DELETE FROM events WHERE ts_unix_ns < ?",
                "drop events",
            ),
            (
                "update_events",
                "DELETE FROM update_events WHERE ts_unix_ns < ?",
                "drop update events",
            ),
            (
                "container_inventory",
                "DELETE FROM container_inventory
                 WHERE coalesce(removed_unix_ns, updated_unix_ns) < ?",
                "drop inventory of containers gone",
            ),
        ] {
            let rows = tx.execute(sql, params![cutoff]).map_err(err(step))?;
            counts.push((table, rows));
        }
        counts.push(("usage_series", series));
        let usage_rows = counts.first().map_or(0, |c| c.1);
        if usage_rows > 0 {
            let (raw_h, usage_h) = horizons(&tx)?;
            write_horizons(&tx, raw_h, Some(usage_h.map_or(cutoff, |h| h.max(cutoff))))?;
        }
        tx.commit().map_err(err("commit"))?;
        Ok(Self::note(report, cutoff, reason, counts))
    }

    /// Logs and records the drops of one step; their total.
    fn note(
        report: &mut RetentionReport,
        cutoff: i64,
        reason: RetentionReason,
        counts: Vec<(&'static str, usize)>,
    ) -> u64 {
        let mut total = 0;
        for (table, rows) in counts {
            if rows == 0 {
                continue;
            }
            let rows = rows as u64;
            total += rows;
            tracing::info!(
                table,
                before = %shown(cutoff),
                rows,
                reason = reason.as_str(),
                "retention dropped rows"
            );
            report.dropped.push(DroppedRows {
                table,
                before_unix_ns: cutoff,
                rows,
                reason,
            });
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_floored_also_before_1970() {
        assert_eq!(floor_day(DAY_NS + 5), DAY_NS);
        assert_eq!(floor_day(-5), -DAY_NS);
        assert_eq!(floor_day(0), 0);
    }

    #[test]
    fn times_are_shown_in_rfc3339() {
        assert_eq!(shown(0), "1970-01-01T00:00:00Z");
        assert_eq!(shown(1_700_000_000_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(shown(-1), "-1");
    }

    #[test]
    fn every_table_is_counted_once() {
        let mut seen = std::collections::HashSet::new();
        assert!(TABLES.iter().all(|t| seen.insert(*t)));
    }
}

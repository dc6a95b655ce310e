//! The collector's own metrics, rendered in the Prometheus text format
//! (version 0.0.4) for `/metrics`.
//!
//! Counters the ingest path keeps live here as atomics; what the store
//! writer counts is read from its [`WriterStats`] at render time, so every
//! number has one source.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::store::WriterStats;

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative latency histogram with [`LATENCY_BUCKETS_S`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in LATENCY_BUCKETS_S.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum_s = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum_s}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// How long the store writer's transactions and checkpoints take: an
/// acknowledgement waits for both, so their tails are the ack latency's.
/// Shared with the writer thread, which observes them.
#[derive(Debug, Default)]
pub struct WriterDurations {
    /// Each ingest transaction, COMMIT included.
    pub commit: Histogram,
    /// Each checkpoint that succeeded.
    pub checkpoint: Histogram,
}

/// What an agent last reported about its spool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SpoolReport {
    node: String,
    dropped_batches_total: u64,
    dropped_bytes_total: u64,
    pending_batches: u64,
}

/// Everything `/metrics` shows that is not the writer's.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Batches received on agent streams (before storing).
    pub batches_received: AtomicU64,
    /// Agent streams ended because an agent was over its rate.
    pub rate_limited: Arc<AtomicU64>,
    /// Calls refused for a missing, unknown or under-privileged token.
    pub auth_failures: Arc<AtomicU64>,
    /// Agent streams ended by a protocol error (no hello, wrong agent id...).
    pub protocol_errors: AtomicU64,
    /// Agent streams opened.
    pub streams_opened: AtomicU64,
    /// Batches received to ack sent.
    pub ack_latency: Histogram,
    /// Duration of each periodic rollup of samples into `usage`.
    pub rollup_duration: Histogram,
    /// The store writer's transaction and checkpoint durations
    /// ([`crate::store::WriterHandle::durations`]).
    pub writer_durations: Arc<WriterDurations>,
    /// `usage` rows the periodic rollups wrote.
    pub rollup_rows: AtomicU64,
    /// Periodic rollups that failed (the next one retries).
    pub rollup_failures: AtomicU64,
    /// What retention dropped and measured.
    pub retention: crate::store::RetentionCounters,
    /// Periodic Parquet reports' counters.
    pub reports: Arc<crate::report::ReportMetrics>,
    query_latency: Mutex<BTreeMap<&'static str, Arc<Histogram>>>,
    spool: Mutex<HashMap<String, SpoolReport>>,
}

/// Values owned elsewhere, read when rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// The writer's counters.
    pub writer: WriterStats,
    /// Jobs waiting for the writer.
    pub writer_queued: usize,
    /// Bytes of the store on disk.
    pub store_bytes: u64,
    /// Agents with an open stream.
    pub agents_connected: usize,
    /// The update checker's registry counters (`None`: update checks off).
    pub registry: Option<upid::registry::RegistryStats>,
}

impl Metrics {
    /// Metrics that show the store writer's `durations`
    /// ([`crate::store::WriterHandle::durations`]).
    pub fn with_writer_durations(durations: Arc<WriterDurations>) -> Metrics {
        Metrics {
            writer_durations: durations,
            ..Metrics::default()
        }
    }

    /// Records an agent's spool report (cumulative values, so the latest wins).
    pub fn record_spool(
        &self,
        agent_id: &str,
        node: &str,
        dropped_batches_total: u64,
        dropped_bytes_total: u64,
        pending_batches: u64,
    ) {
        let mut spool = self.spool.lock().unwrap_or_else(PoisonError::into_inner);
        let report = SpoolReport {
            node: node.to_owned(),
            dropped_batches_total,
            dropped_bytes_total,
            pending_batches,
        };
        match spool.get_mut(agent_id) {
            Some(existing) => *existing = report,
            None => {
                spool.insert(agent_id.to_owned(), report);
            }
        }
    }

    /// Records how long a query method took.
    pub fn observe_query(&self, method: &'static str, took: Duration) {
        let histogram = {
            let mut map = self
                .query_latency
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.entry(method).or_default().clone()
        };
        histogram.observe(took);
    }

    /// Renders everything in the Prometheus text format.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let w = gauges.writer;
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "upid_collector_batches_received_total",
            "Batches received on agent streams.",
            load(&self.batches_received),
        );
        counter(
            &mut out,
            "upid_collector_batches_stored_total",
            "Batches stored and committed.",
            w.batches_stored,
        );
        counter(
            &mut out,
            "upid_collector_batches_duplicate_total",
            "Batches ignored because their (agent_id, seq) was already stored.",
            w.batches_duplicate,
        );
        counter(
            &mut out,
            "upid_collector_batches_rejected_total",
            "Malformed batches refused (not stored).",
            w.batches_rejected,
        );
        counter(
            &mut out,
            "upid_collector_batches_expired_total",
            "Batches older than retention keeps agent samples, acknowledged and not stored.",
            w.batches_expired,
        );
        counter(
            &mut out,
            "upid_collector_batches_failed_total",
            "Batches whose transaction failed (not acknowledged; the agent replays them).",
            w.batches_failed,
        );
        counter(
            &mut out,
            "upid_collector_container_samples_stored_total",
            "Container samples stored.",
            w.container_samples_stored,
        );
        counter(
            &mut out,
            "upid_collector_network_samples_stored_total",
            "Network namespace samples stored.",
            w.network_samples_stored,
        );
        counter(
            &mut out,
            "upid_collector_commits_total",
            "Ingest transactions committed.",
            w.commits,
        );
        counter(
            &mut out,
            "upid_collector_checkpoints_total",
            "Store checkpoints done.",
            w.checkpoints,
        );
        counter(
            &mut out,
            "upid_collector_checkpoint_errors_total",
            "Store checkpoints that failed.",
            w.checkpoint_errors,
        );
        counter(
            &mut out,
            "upid_collector_rate_limited_total",
            "Agent streams ended with RESOURCE_EXHAUSTED for going over the per-agent rate.",
            load(&self.rate_limited),
        );
        counter(
            &mut out,
            "upid_collector_auth_failures_total",
            "Calls refused for a missing, unknown or under-privileged token.",
            load(&self.auth_failures),
        );
        counter(
            &mut out,
            "upid_collector_protocol_errors_total",
            "Agent streams ended by a protocol error.",
            load(&self.protocol_errors),
        );
        counter(
            &mut out,
            "upid_collector_agent_streams_opened_total",
            "Agent streams opened.",
            load(&self.streams_opened),
        );
        gauge(
            &mut out,
            "upid_collector_agents_connected",
            "Agents with an open stream.",
            gauges.agents_connected as u64,
        );
        let r = gauges.registry.unwrap_or_default();
        for (name, help, value) in [
            (
                "upid_collector_registry_requests_total",
                "HTTP requests sent to image registries and their token services (update checks).",
                r.requests_sent,
            ),
            (
                "upid_collector_registry_cache_hits_total",
                "Registry answers served from the update checker's cache.",
                r.cache_hits,
            ),
            (
                "upid_collector_registry_cache_misses_total",
                "Registry answers that had to be fetched.",
                r.cache_misses,
            ),
            (
                "upid_collector_registry_rate_limit_waits_total",
                "Registry requests that waited for the per-registry rate limit.",
                r.rate_limit_waits,
            ),
            (
                "upid_collector_registry_retries_total",
                "Registry requests retried after a transient failure.",
                r.retries,
            ),
        ] {
            counter(&mut out, name, help, value);
        }
        gauge(
            &mut out,
            "upid_collector_writer_queue_jobs",
            "Jobs waiting for the store writer.",
            gauges.writer_queued as u64,
        );
        gauge(
            &mut out,
            "upid_collector_store_bytes",
            "Bytes of the DuckDB store on disk (database and WAL).",
            gauges.store_bytes,
        );
        self.reports.render(&mut out);
        self.retention.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP upid_collector_last_commit_seconds Duration of the latest ingest transaction.\n# TYPE upid_collector_last_commit_seconds gauge\nupid_collector_last_commit_seconds {}",
            w.last_commit_ns as f64 / 1e9
        );

        for (name, help, h) in [
            (
                "upid_collector_ack_latency_seconds",
                "Batch received to acknowledgement sent (after COMMIT).",
                &self.ack_latency,
            ),
            (
                "upid_collector_rollup_duration_seconds",
                "Duration of each periodic rollup of agent samples into usage.",
                &self.rollup_duration,
            ),
            (
                "upid_collector_commit_duration_seconds",
                "Duration of each ingest transaction, COMMIT included.",
                &self.writer_durations.commit,
            ),
            (
                "upid_collector_checkpoint_duration_seconds",
                "Duration of each store checkpoint (ingest waits while one runs).",
                &self.writer_durations.checkpoint,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.render(&mut out, name, "");
        }
        counter(
            &mut out,
            "upid_collector_rollup_rows_total",
            "Usage rows the periodic rollups wrote.",
            load(&self.rollup_rows),
        );
        counter(
            &mut out,
            "upid_collector_rollup_failures_total",
            "Periodic rollups that failed (the next one retries).",
            load(&self.rollup_failures),
        );

        let queries = self
            .query_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let _ = writeln!(
            out,
            "# HELP upid_collector_query_duration_seconds Time to answer a query API call.\n# TYPE upid_collector_query_duration_seconds histogram"
        );
        for (method, histogram) in &queries {
            histogram.render(
                &mut out,
                "upid_collector_query_duration_seconds",
                &format!("method=\"{method}\""),
            );
        }

        let spool = self
            .spool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut agents: Vec<_> = spool.iter().collect();
        agents.sort_by(|a, b| a.0.cmp(b.0));
        let per_agent =
            |out: &mut String, name: &str, help: &str, value: &dyn Fn(&SpoolReport) -> u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for (agent, report) in &agents {
                    let _ = writeln!(
                        out,
                        "{name}{{agent_id=\"{}\",node=\"{}\"}} {}",
                        escape_label(agent),
                        escape_label(&report.node),
                        value(report)
                    );
                }
            };
        per_agent(
            &mut out,
            "upid_collector_agent_spool_dropped_batches",
            "Batches the agent's full spool dropped (cumulative, as last reported).",
            &|r| r.dropped_batches_total,
        );
        per_agent(
            &mut out,
            "upid_collector_agent_spool_dropped_bytes",
            "Bytes the agent's full spool dropped (cumulative, as last reported).",
            &|r| r.dropped_bytes_total,
        );
        per_agent(
            &mut out,
            "upid_collector_agent_spool_pending_batches",
            "Batches waiting in the agent's spool, as last reported.",
            &|r| r.pending_batches,
        );
        out
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.0025\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn spool_drops_are_per_agent_and_latest_wins() {
        let m = Metrics::default();
        m.record_spool("a1", "node \"a\"", 3, 300, 1);
        m.record_spool("a1", "node \"a\"", 5, 500, 0);
        m.record_spool("a2", "b", 0, 0, 0);
        let out = m.render(Gauges::default());
        assert!(
            out.contains("upid_collector_agent_spool_dropped_batches{agent_id=\"a1\",node=\"node \\\"a\\\"\"} 5\n"),
            "{out}"
        );
        assert!(out.contains(
            "upid_collector_agent_spool_dropped_batches{agent_id=\"a2\",node=\"b\"} 0\n"
        ));
    }

    #[test]
    fn every_documented_family_is_rendered() {
        let m = Metrics::default();
        m.observe_query("ListNodes", Duration::from_millis(3));
        let out = m.render(Gauges {
            store_bytes: 12345,
            agents_connected: 2,
            ..Gauges::default()
        });
        for name in [
            "upid_collector_batches_received_total 0",
            "upid_collector_batches_stored_total 0",
            "upid_collector_batches_duplicate_total 0",
            "upid_collector_batches_rejected_total 0",
            "upid_collector_container_samples_stored_total 0",
            "upid_collector_ack_latency_seconds_count 0",
            "upid_collector_rollup_duration_seconds_count 0",
            "upid_collector_commit_duration_seconds_count 0",
            "upid_collector_checkpoint_duration_seconds_count 0",
            "upid_collector_rollup_rows_total 0",
            "upid_collector_rollup_failures_total 0",
            "upid_collector_agents_connected 2",
            "upid_collector_rate_limited_total 0",
            "upid_collector_auth_failures_total 0",
            "upid_collector_store_bytes 12345",
            "upid_collector_batches_expired_total 0",
            "upid_collector_retention_runs_total 0",
            "upid_collector_retention_dropped_rows_total{table=\"container_samples\",reason=\"age\"} 0",
            "upid_collector_store_used_bytes 0",
            "upid_collector_disk_budget_bytes 0",
            "upid_collector_query_duration_seconds_count{method=\"ListNodes\"} 1",
            "upid_collector_reports_written_total 0",
            "upid_collector_report_failures_total 0",
            "upid_collector_report_last_success_timestamp_seconds 0",
        ] {
            assert!(out.contains(name), "missing {name}:\n{out}");
        }
    }
}

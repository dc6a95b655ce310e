//! `upid-bench analysis`: issue #5's goal, full rightsizing, idle detection
//! and cost over 2,000 containers with 14 days of 1-minute data in at most
//! 5 s.
//!
//! Builds a real store file whose `usage` table holds `--containers` ×
//! `--days` × 1,440 rows (what the agent rollup or an import writes), with
//! varied shapes: a daily cycle, per-container levels, spikes, throttled
//! and OOM-killed containers, network traffic, a tenth of the workloads
//! idle. Rows are written hour by hour, in time order, as the rollup
//! writes them. Opening the store then builds the hourly usage summary
//! analysis reads (timed on its own: ingest-side cost). Then runs the
//! three analyses as the query API does (one reader each, in-process, no
//! gRPC) `--runs` times at a time in the middle of an hour (so every range
//! has partial hours at its ends) and reports the wall and CPU time of the
//! three together. `--raw` reads every usage row instead of the summary
//! (the reference path, for comparison).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use upid::wire::v1;
use upid_collector::analysis::Analyzer;
use upid_collector::store::{Store, UsageReadPath};

use crate::procstat;
use crate::report::{Bound, Goal};
use crate::stats::Summary;

/// Options of `upid-bench analysis`.
#[derive(Debug, Args)]
pub struct AnalysisArgs {
    /// Containers (5 replicas per workload, 20 namespaces, 10 nodes).
    #[arg(long, default_value_t = 2000)]
    pub containers: u32,
    /// Days of 1-minute history per container.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Measured runs of the three analyses.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Store file to build (reused when it already holds the same data
    /// shape); default: a temporary directory, removed afterwards.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// One JSON line on stdout, the summary on stderr.
    #[arg(long)]
    pub json: bool,
    /// Read every usage row (the reference path) instead of the hourly
    /// summary.
    #[arg(long)]
    pub raw: bool,
}

/// What one run measured.
pub struct AnalysisReport {
    containers: u32,
    days: u32,
    rows: u64,
    build_s: f64,
    summary_build_s: Option<f64>,
    summary: Vec<(&'static str, u64, u64)>,
    raw: bool,
    store_bytes: u64,
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    parts_ms: Vec<(&'static str, f64)>,
    recommendations: usize,
    idle: usize,
    goal: Goal,
}

const MIN_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 60 * MIN_NS;

/// Fills `usage` with the synthetic fleet: 1-minute rows up to the minute
/// holding `at_ns`, written an hour at a time (time order, as the rollup
/// writes them, so a row group holds about an hour).
fn build(path: &std::path::Path, containers: u32, days: u32, at_ns: i64) -> anyhow::Result<u64> {
    drop(Store::open(path).with_context(|| format!("creating {}", path.display()))?);
    let conn = duckdb::Connection::open(path).context("opening the store to fill it")?;
    let end = at_ns - at_ns.rem_euclid(MIN_NS);
    let from = end - i64::from(days) * 1440 * MIN_NS;
    // c: container index; w = c / 5 the workload; a tenth of workloads
    // (w % 10 = 0) idle; every 7th container throttled, every 50th killed
    // once a day at a time of its own.
    let sql = format!(
        "INSERT INTO usage
         SELECT 'bench-' || c, 'parquet', ts, 60.0, 'node-' || (c % 10), 'bench-' || c,
            'ns-' || ((c // 5) % 20), 'pod-' || c, 'app', 'Deployment', 'wl-' || (c // 5),
            'registry.local/wl-' || (c // 5) || ':1.' || (c % 3),
            CASE WHEN (c // 5) % 10 = 0 THEN 0.002
                 ELSE (0.05 + (c % 17) * 0.03) * (1.2 + sin(ts / 1e9 / 86400 * 2 * pi()))
                      + CASE WHEN (ts // {MIN_NS}) % 97 = c % 97 THEN 1.0 ELSE 0 END END,
            CASE WHEN c % 7 = 0 THEN 0.1 + (c % 5) * 0.05 ELSE NULL END,
            ((64 + (c % 23) * 32) * 1048576 * (1.1 + 0.1 * cos(ts / 1e9 / 86400 * 2 * pi())))::UBIGINT,
            ((64 + (c % 23) * 32) * 1048576 * (1.3 + 0.1 * cos(ts / 1e9 / 86400 * 2 * pi())))::UBIGINT,
            CASE WHEN c % 50 = 0 AND (ts // {MIN_NS}) % 1440 = c % 1440 THEN 1 ELSE 0 END,
            CASE WHEN (c // 5) % 10 = 0 THEN 60 ELSE 60000 + (c % 13) * 1000 END,
            CASE WHEN (c // 5) % 10 = 0 THEN 60 ELSE 90000 END,
            0.25 + (c % 4) * 0.25,
            CASE WHEN c % 7 = 0 THEN 0.5 ELSE NULL END,
            ((c % 4) + 1) * 268435456,
            ((c % 4) + 2) * 268435456
         FROM range({containers}) AS r(c), range($1::BIGINT, $2::BIGINT, {MIN_NS}::BIGINT) AS t(ts)"
    );
    let mut rows = 0;
    conn.execute_batch("BEGIN").context("begin")?;
    let mut hour = from;
    while hour < end {
        let next = (hour - hour.rem_euclid(HOUR_NS) + HOUR_NS).min(end);
        rows += conn
            .execute(&sql, duckdb::params![hour, next])
            .context("generating usage rows")?;
        hour = next;
    }
    conn.execute_batch("COMMIT; CHECKPOINT")
        .context("commit and checkpoint")?;
    Ok(rows as u64)
}

/// Rows and approximate bytes (blocks in use) of the summary tables.
fn summary_sizes(path: &std::path::Path) -> anyhow::Result<Vec<(&'static str, u64, u64)>> {
    let conn = duckdb::Connection::open(path).context("opening the store to measure it")?;
    let block: i64 = conn
        .query_row("SELECT block_size FROM pragma_database_size()", [], |r| {
            r.get(0)
        })
        .context("block size")?;
    let mut out = Vec::new();
    for table in ["usage", "usage_series", "usage_hourly", "usage_hourly_cpu"] {
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .with_context(|| format!("counting {table}"))?;
        let blocks: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(DISTINCT block_id) FROM pragma_storage_info('{table}') WHERE persistent"
                ),
                [],
                |r| r.get(0),
            )
            .with_context(|| format!("storage of {table}"))?;
        out.push((
            table,
            rows.max(0).unsigned_abs(),
            (blocks * block).max(0).unsigned_abs(),
        ));
    }
    Ok(out)
}

/// Runs the benchmark.
pub fn run(args: &AnalysisArgs) -> anyhow::Result<AnalysisReport> {
    let temp;
    let path = match &args.store {
        Some(p) => p.clone(),
        None => {
            temp = tempfile::tempdir().context("temporary directory")?;
            temp.path().join("upid.duckdb")
        }
    };
    // A fixed analysis time, so the store can be reused: 23 min 37 s past
    // an hour, so every range starts and ends in a partial hour.
    let at_ns: i64 = (1_795_132_800 + 23 * 60 + 37) * 1_000_000_000;
    let expected = u64::from(args.containers) * u64::from(args.days) * 1440;
    let started = Instant::now();
    let existing = if path.exists() {
        let conn = duckdb::Connection::open(&path).context("opening the existing store")?;
        conn.query_row("SELECT count(*) FROM usage", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0).unsigned_abs())
            .unwrap_or(0)
    } else {
        0
    };
    let rows = if existing == expected {
        eprintln!("reusing {} ({existing} rows)", path.display());
        existing
    } else {
        if path.exists() {
            anyhow::bail!(
                "{} holds {existing} usage rows, not the {expected} this shape needs: remove it",
                path.display()
            );
        }
        eprintln!("building {} rows in {} ...", expected, path.display());
        build(&path, args.containers, args.days, at_ns)?
    };
    let build_s = started.elapsed().as_secs_f64();
    let summarised = {
        let conn = duckdb::Connection::open(&path).context("opening the store")?;
        conn.query_row("SELECT count(*) FROM usage_hourly", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or(0)
            > 0
    };
    // Opening builds the hourly summary of rows it has not summarised.
    let opened = Instant::now();
    let mut store = Store::open(&path).context("opening the store")?;
    let summary_build_s = (!summarised).then(|| opened.elapsed().as_secs_f64());
    store.checkpoint().context("checkpoint")?;
    drop(store);
    let summary = summary_sizes(&path)?;
    let store = Store::open(&path).context("opening the store")?;
    let store_bytes = store.store_bytes();
    let reader = store.reader().context("reader")?;
    let analyzer = Analyzer::default().with_read_path(if args.raw {
        UsageReadPath::Raw
    } else {
        UsageReadPath::Summary
    });
    let pid = std::process::id();
    let (mut wall_ms, mut cpu_ms) = (Vec::new(), Vec::new());
    let mut parts_ms = Vec::new();
    let (mut recommendations, mut idle) = (0, 0);
    for run in 0..args.runs.max(1) {
        let cpu0 = procstat::process_cpu(pid)?;
        let t0 = Instant::now();
        let r = analyzer.rightsize(&reader, &v1::RightsizeRequest::default(), at_ns)?;
        let t1 = Instant::now();
        let i = analyzer.idle(&reader, &v1::IdleRequest::default(), at_ns)?;
        let t2 = Instant::now();
        let _c = analyzer.cost(&reader, &v1::CostRequest::default(), at_ns)?;
        let t3 = Instant::now();
        let cpu1 = procstat::process_cpu(pid)?;
        wall_ms.push((t3 - t0).as_secs_f64() * 1e3);
        cpu_ms.push(cpu1.since(&cpu0) as f64 / 1e6);
        if run == 0 {
            recommendations = r.recommendations.len();
            idle = i.workloads.len();
            parts_ms = vec![
                ("rightsize", (t1 - t0).as_secs_f64() * 1e3),
                ("idle", (t2 - t1).as_secs_f64() * 1e3),
                ("cost", (t3 - t2).as_secs_f64() * 1e3),
            ];
        }
    }
    let median = Summary::of(&wall_ms).median;
    Ok(AnalysisReport {
        containers: args.containers,
        days: args.days,
        rows,
        build_s,
        summary_build_s,
        summary,
        raw: args.raw,
        store_bytes,
        wall_ms,
        cpu_ms,
        parts_ms,
        recommendations,
        idle,
        goal: Goal {
            name: "analysis_wall_median",
            description: "rightsize + idle + cost, wall time (median)",
            value: Some(median * 1e6),
            target: 5e9,
            bound: Bound::AtMost,
            unit: "ns",
        },
    })
}

impl AnalysisReport {
    /// For people.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .parts_ms
            .iter()
            .map(|(n, ms)| format!("{n} {ms:.0} ms"))
            .collect();
        let tables: Vec<String> = self
            .summary
            .iter()
            .map(|(t, rows, bytes)| {
                format!("{t} {rows} rows ~{:.1} MiB", *bytes as f64 / 1_048_576.0)
            })
            .collect();
        format!(
            "upid-bench analysis: {} containers x {} days = {} rows ({:.1} MiB store, usage ready in {:.0} s, \
             summary built in {}){}\n\
             tables: {}\n\
             runs: wall {:?} ms, CPU {:?} ms; first run: {}\n\
             {} recommendations, {} idle workloads\n{}\n",
            self.containers,
            self.days,
            self.rows,
            self.store_bytes as f64 / 1_048_576.0,
            self.build_s,
            self.summary_build_s
                .map_or_else(|| "an earlier run".to_owned(), |s| format!("{s:.1} s")),
            if self.raw {
                "; reading usage rows (--raw)"
            } else {
                ""
            },
            tables.join(", "),
            self.wall_ms.iter().map(|v| v.round()).collect::<Vec<_>>(),
            self.cpu_ms.iter().map(|v| v.round()).collect::<Vec<_>>(),
            parts.join(", "),
            self.recommendations,
            self.idle,
            self.goal.line()
        )
    }

    /// One JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "benchmark": "analysis",
            "containers": self.containers,
            "days": self.days,
            "rows": self.rows,
            "store_bytes": self.store_bytes,
            "build_s": self.build_s,
            "summary_build_s": self.summary_build_s,
            "read_path": if self.raw { "raw" } else { "summary" },
            "tables": self.summary.iter().map(|(t, rows, bytes)| json!({"table": t, "rows": rows, "bytes": bytes})).collect::<Vec<_>>(),
            "wall_ms": Summary::of(&self.wall_ms).to_json(),
            "cpu_ms": Summary::of(&self.cpu_ms).to_json(),
            "parts_ms": self.parts_ms.iter().map(|(n, v)| json!({"part": n, "ms": v.round()})).collect::<Vec<_>>(),
            "recommendations": self.recommendations,
            "idle_workloads": self.idle,
            "goals": [self.goal.to_json()],
        })
    }
}

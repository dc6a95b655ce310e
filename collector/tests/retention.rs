//! Retention on real DuckDB store files, with data stored through the
//! collector's own paths (Parquet import of usage history, agent batches
//! through ingest, the rollup, update events through the reader): which
//! days each table loses and keeps at a fixed clock, that the hourly summary
//! stays what a rebuild from `usage` gives and the store reopens without a
//! repair, that analysis reads the remaining window alike from the summary
//! and from rows, that the report counts exactly the rows dropped, that
//! samples the rollup has not read are kept, that a very late replay is
//! answered expired instead of stored twice, and the disk budget: oldest
//! days first, samples before usage, until under it, or down to the floor
//! and said so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use upid::wire::v1::{
    self, Batch, CgroupIdentity, ContainerInfo, ContainerSample, CpuStats, EventKind, Inventory,
    LifecycleEvent, MemoryStats, NetworkSample, NodeSample, Runtime, Snapshot,
};
use upid_collector::analysis::Analyzer;
use upid_collector::analysis::settings::{AnalysisSettings, Pricing};
use upid_collector::import::parquet::import_parquet;
use upid_collector::store::{
    ActivityThresholds, IngestOutcome, Retention, RetentionCounters, RetentionReason,
    RetentionReport, RetentionSettings, Rollup, SqlPrices, Store, UsageReadPath, UsageScope,
};

mod common;
mod float_eq;
use common::TempDir;
use float_eq::assert_nearly_same;

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const MIB: u64 = 1 << 20;
/// 2026-11-20T00:00:00Z: the current day starts here.
const D0: i64 = 1_795_132_800 * SEC;
/// The clock every run uses: noon of the current day.
const NOW: i64 = D0 + 12 * HOUR;
/// Ticks every 30 minutes from ten days before the current day to `NOW`.
const CURRENT_TICKS: u64 = 21 * 24 + 1;

// ---------------------------------------------------------------------
// Building a store through the collector's paths.
// ---------------------------------------------------------------------

fn docker_id(fill: &str) -> String {
    fill.repeat(64 / fill.len())
}

/// A container sample at `ts`, `k` ticks of `tick_s` seconds after its
/// first: 0.3 cores, 10 % throttled, 100 MiB working set.
fn sample(id: &str, ts: i64, k: u64, tick_s: u64) -> ContainerSample {
    ContainerSample {
        identity: Some(CgroupIdentity {
            cgroup_path: format!("/docker/{id}"),
            runtime: Runtime::Docker as i32,
            container_id: id.into(),
            ..Default::default()
        }),
        timestamp_unix_ns: ts,
        cpu: Some(CpuStats {
            usage_ns: 300_000_000 * tick_s * k,
            periods: 10 * tick_s * k,
            throttled_periods: tick_s * k,
            ..Default::default()
        }),
        memory: Some(MemoryStats {
            usage_bytes: 100 * MIB,
            working_set_bytes: 100 * MIB + (k % 7) * MIB,
            peak_bytes: 110 * MIB,
            ..Default::default()
        }),
        netns_inode: Some(7),
        ..Default::default()
    }
}

/// Ticks of `agent` on `node` every `tick_s` seconds from `from` (`count`
/// of them, seqs from `first_seq`), each with a sample of every container
/// of `ids` and one network sample.
fn ticks(
    agent: &str,
    node: &str,
    ids: &[String],
    from: i64,
    tick_s: u64,
    count: u64,
    first_seq: u64,
) -> Vec<Batch> {
    (0..count)
        .map(|k| {
            let ts = from + (tick_s * k) as i64 * SEC;
            Batch {
                agent_id: agent.into(),
                node_name: node.into(),
                seq: first_seq + k,
                snapshot: Some(Snapshot {
                    node: Some(NodeSample {
                        node_name: node.into(),
                        timestamp_unix_ns: ts,
                        cpu_count: 4,
                        memory_total_bytes: 8 << 30,
                        ..Default::default()
                    }),
                    containers: ids.iter().map(|id| sample(id, ts, k, tick_s)).collect(),
                    networks: vec![NetworkSample {
                        netns_inode: 7,
                        rx_bytes: 1000 * k,
                        tx_bytes: 500 * k,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                inventory: None,
                spool: None,
            }
        })
        .collect()
}

fn record(id: &str, name: &str) -> ContainerInfo {
    ContainerInfo {
        container_id: id.into(),
        runtime: Runtime::Docker as i32,
        name: name.into(),
        state: v1::ContainerState::Running as i32,
        ..Default::default()
    }
}

fn event(id: &str, kind: EventKind, ts: i64) -> LifecycleEvent {
    LifecycleEvent {
        timestamp_unix_ns: ts,
        container_id: id.into(),
        kind: kind as i32,
        ..Default::default()
    }
}

/// Stores `batches` one by one, each received `delay` after its tick.
fn ingest(store: &mut Store, batches: &[Batch], delay: i64) -> Vec<IngestOutcome> {
    batches
        .iter()
        .flat_map(|b| {
            let tick = b
                .snapshot
                .as_ref()
                .and_then(|s| s.node.as_ref())
                .map_or(0, |n| n.timestamp_unix_ns);
            store
                .ingest_at(std::slice::from_ref(b), tick + delay)
                .expect("ingest")
        })
        .collect()
}

fn all_stored(outcomes: &[IngestOutcome]) {
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, IngestOutcome::Stored { .. })),
        "{outcomes:?}"
    );
}

/// Writes a Parquet file of 1-minute usage rows every `step` from `from`
/// (inclusive) to `to` (exclusive) for `series` pods, with DuckDB.
fn write_usage_parquet(path: &Path, series: u32, from: i64, to: i64, step: i64) {
    let conn = duckdb::Connection::open_in_memory().expect("in-memory duckdb");
    conn.execute_batch(&format!(
        "COPY (
            SELECT make_timestamp(ts // 1000) AS ts, 60.0 AS interval_s, 'node-p' AS node,
                '' AS container_id, 'shop' AS namespace, 'web-' || s AS pod, 'app' AS container,
                'Deployment' AS workload_kind, 'web-' || (s % 3) AS workload,
                'nginx:1.25' AS image,
                0.1 + (s % 7) / 10.0 + ((ts // {MIN}) % 11) / 100.0 AS cpu_cores,
                0.05 AS cpu_throttled_ratio,
                CAST({mib} * (100 + s) + ((ts // {MIN}) % 13) * 4096 AS BIGINT) AS memory_working_set_bytes,
                CAST({mib} * (120 + s) AS BIGINT) AS memory_peak_bytes,
                CAST(0 AS INTEGER) AS oom_kills,
                1000 * s AS net_rx_bytes, 500 AS net_tx_bytes,
                0.5 AS cpu_request_cores, CAST(NULL AS DOUBLE) AS cpu_limit_cores,
                CAST({mib} * 256 AS BIGINT) AS memory_request_bytes,
                CAST(NULL AS BIGINT) AS memory_limit_bytes
            FROM range({from}::BIGINT, {to}::BIGINT, {step}::BIGINT) r(ts), range({series}) t(s)
        ) TO '{file}' (FORMAT PARQUET)",
        mib = MIB,
        file = path.display(),
    ))
    .expect("writing the test Parquet file");
}

/// Imports `series` pods of usage every `step` over [from, to) into the
/// (closed) store at `store`.
fn import_history(
    dir: &TempDir,
    store: &Path,
    name: &str,
    series: u32,
    from: i64,
    to: i64,
    step: i64,
) {
    let file = dir.path(&format!("{name}.parquet"));
    write_usage_parquet(&file, series, from, to, step);
    let summary = import_parquet(store, &file, false).expect("import");
    assert_eq!(summary.rows_skipped(), 0, "{summary}");
    let _ = std::fs::remove_file(&file);
}

fn settings(raw_days: u32, usage_days: u32, disk_budget_bytes: u64) -> RetentionSettings {
    RetentionSettings {
        raw_days,
        usage_days,
        disk_budget_bytes,
        ..RetentionSettings::default()
    }
}

// ---------------------------------------------------------------------
// Looking at a closed store with plain SQL.
// ---------------------------------------------------------------------

fn sql(path: &Path) -> duckdb::Connection {
    duckdb::Connection::open(path).expect("open the store with duckdb")
}

fn one(path: &Path, query: &str) -> i64 {
    sql(path)
        .query_row(query, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Rows of `table` per UTC day of `column`.
type Days = BTreeMap<i64, i64>;

fn per_day(path: &Path, table: &str, column: &str) -> Days {
    let conn = sql(path);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT ({column} // {DAY}) * {DAY} AS day, count(*) FROM {table} GROUP BY day ORDER BY day"
        ))
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The day-keyed tables retention drops from, with their time column and
/// whether they follow the raw (true) or the usage (false) cutoff.
const DAY_TABLES: [(&str, &str, bool); 9] = [
    ("container_samples", "ts_unix_ns", true),
    ("node_samples", "ts_unix_ns", true),
    ("network_samples", "ts_unix_ns", true),
    ("batches", "tick_unix_ns", true),
    ("usage", "ts_unix_ns", false),
    ("usage_hourly", "hour_unix_ns", false),
    ("usage_hourly_cpu", "hour_unix_ns", false),
    ("events", "ts_unix_ns", false),
    ("update_events", "ts_unix_ns", false),
];

fn all_days(path: &Path) -> BTreeMap<&'static str, Days> {
    DAY_TABLES
        .iter()
        .map(|(t, c, _)| (*t, per_day(path, t, c)))
        .collect()
}

fn from_day(days: &Days, cutoff: i64) -> Days {
    days.iter()
        .filter(|(d, _)| **d >= cutoff)
        .map(|(d, n)| (*d, *n))
        .collect()
}

fn before_day(days: &Days, cutoff: i64) -> i64 {
    days.iter()
        .filter(|(d, _)| **d < cutoff)
        .map(|(_, n)| n)
        .sum()
}

/// Hours whose row count differs between `usage` and the summary: what
/// opening the store would rebuild.
fn hours_out_of_step(path: &Path) -> i64 {
    one(
        path,
        "SELECT count(*) FROM
            (SELECT (ts_unix_ns // 3600000000000) * 3600000000000 AS hour, count(*) AS n
             FROM usage GROUP BY hour) u
         FULL OUTER JOIN
            (SELECT hour_unix_ns AS hour, sum(row_count) AS n FROM usage_hourly GROUP BY hour) h
         USING (hour) WHERE u.n IS DISTINCT FROM h.n",
    )
}

/// The summary as text per row, identities instead of ids, sorted.
fn summary_rows(path: &Path) -> Vec<String> {
    let conn = sql(path);
    let mut out = Vec::new();
    for query in [
        "SELECT CAST(x AS VARCHAR) FROM (SELECT s.* EXCLUDE (series_id), h.* EXCLUDE (series_id)
             FROM usage_hourly h JOIN usage_series s USING (series_id)) x ORDER BY 1",
        "SELECT CAST(x AS VARCHAR) FROM (SELECT s.* EXCLUDE (series_id), h.* EXCLUDE (series_id)
             FROM usage_hourly_cpu h JOIN usage_series s USING (series_id)) x ORDER BY 1",
        "SELECT CAST(x AS VARCHAR) FROM (SELECT * EXCLUDE (series_id) FROM usage_series) x ORDER BY 1",
    ] {
        let mut stmt = conn.prepare(query).expect("prepare");
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        out.push(format!("{} rows", rows.len()));
        out.extend(rows);
    }
    out
}

/// The summary after retention equals the one a rebuild from `usage`
/// gives: wipe it, let opening rebuild it, compare.
fn assert_summary_is_a_rebuild(path: &Path) {
    let kept = summary_rows(path);
    sql(path)
        .execute_batch(
            "DELETE FROM usage_hourly; DELETE FROM usage_hourly_cpu; DELETE FROM usage_series;",
        )
        .expect("wipe the summary");
    let store = Store::open(path).expect("reopen: rebuilds the summary");
    drop(store);
    let rebuilt = summary_rows(path);
    assert_eq!(kept.len(), rebuilt.len(), "summary rows");
    for (a, b) in kept.iter().zip(&rebuilt) {
        assert_nearly_same("summary row kept vs rebuilt", ("kept", "rebuilt"), a, b);
    }
}

/// Every analysis read of [from, until) from the summary and from usage
/// rows: the same answers, and some series.
fn assert_reads_agree(store: &Store, from: i64, until: i64) {
    let reader = store.reader().expect("reader");
    let prices = SqlPrices {
        default: (0.031_611, 0.004_237),
        nodes: vec![("node-r".to_owned(), 0.05, 0.01)],
    };
    let activity = ActivityThresholds {
        cpu_cores: 0.35,
        net_bytes_per_s: 1e9,
    };
    let read = |path: UsageReadPath| {
        let scope = UsageScope {
            from_unix_ns: from,
            until_unix_ns: until,
            read_path: path,
            ..Default::default()
        };
        let mut facts = reader
            .usage_series(&scope, Some(activity), &prices, until - 1800 * SEC)
            .expect("facts");
        facts.sort_by(|a, b| a.id.series_key.cmp(&b.id.series_key));
        let mut quiet = reader
            .usage_quiet_stretches(&scope, activity, &prices, &facts)
            .expect("quiet");
        quiet.sort_by(|a, b| a.series_key.cmp(&b.series_key));
        let mut days = reader.usage_daily_peaks(&scope).expect("days");
        days.sort_by(|a, b| (&a.series_key, a.day_unix_ns).cmp(&(&b.series_key, b.day_unix_ns)));
        let mut costs = reader
            .usage_costs(&scope, &prices, until - 5400 * SEC)
            .expect("costs");
        costs.sort_by(|a, b| a.id.series_key.cmp(&b.id.series_key));
        [
            format!("{facts:?}"),
            format!("{quiet:?}"),
            format!("{days:?}"),
            format!("{costs:?}"),
        ]
    };
    let (s, r) = (read(UsageReadPath::Summary), read(UsageReadPath::Raw));
    assert!(
        s[0].contains("series_key"),
        "no series in [{from}, {until})"
    );
    for (what, (a, b)) in ["facts", "quiet stretches", "daily peaks", "costs"]
        .into_iter()
        .zip(s.iter().zip(&r))
    {
        assert_nearly_same(what, ("summary", "rows"), a, b);
    }
}

/// Exactly the rows of days before each cutoff are gone, the others kept,
/// and the report counts what is gone, for `reason`.
fn assert_days_dropped(
    before: &BTreeMap<&'static str, Days>,
    after: &BTreeMap<&'static str, Days>,
    raw_cutoff: i64,
    usage_cutoff: i64,
    report: &RetentionReport,
    reason: RetentionReason,
) {
    for (table, _, raw) in DAY_TABLES {
        let cutoff = if raw { raw_cutoff } else { usage_cutoff };
        let (b, a) = (&before[table], &after[table]);
        assert_eq!(a, &from_day(b, cutoff), "{table}: days kept");
        assert_eq!(
            report.rows(table, reason),
            u64::try_from(before_day(b, cutoff)).unwrap_or(0),
            "{table}: rows reported"
        );
    }
}

// ---------------------------------------------------------------------
// Age.
// ---------------------------------------------------------------------

/// 100 days of imported history, an agent on a node gone 95 days ago, and
/// a current agent ticking every 30 minutes for the last 10.5 days.
fn hundred_days(dir: &TempDir) -> PathBuf {
    let path = dir.path("upid.duckdb");
    drop(Store::open(&path).expect("create store"));
    import_history(dir, &path, "history", 2, D0 - 100 * DAY, D0, 20 * MIN);
    let mut store = Store::open(&path).expect("open");
    let mut rollup = Rollup::new(&store).expect("rollup");
    // Gone: container Y on node-old, three ticks 95 days ago, its record,
    // its start event, then removed.
    let y = docker_id("e");
    let mut old = ticks(
        "agent-old",
        "node-old",
        std::slice::from_ref(&y),
        D0 - 95 * DAY,
        30,
        3,
        1,
    );
    old[0].inventory = Some(Inventory {
        full: true,
        containers: vec![record(&y, "old-app")],
        events: vec![event(&y, EventKind::Start, D0 - 95 * DAY)],
        ..Default::default()
    });
    old[2].inventory = Some(Inventory {
        removed_container_ids: vec![y.clone()],
        ..Default::default()
    });
    all_stored(&ingest(&mut store, &old, SEC));
    // Current: container X on node-r.
    let x = docker_id("a");
    let mut now = ticks(
        "agent-r",
        "node-r",
        std::slice::from_ref(&x),
        D0 - 10 * DAY,
        1800,
        CURRENT_TICKS,
        1,
    );
    now[0].inventory = Some(Inventory {
        full: true,
        containers: vec![record(&x, "app")],
        events: vec![event(&x, EventKind::Start, D0 - 10 * DAY)],
        ..Default::default()
    });
    now[200].inventory = Some(Inventory {
        events: vec![event(&x, EventKind::Oom, D0 - 10 * DAY + 200 * 1800 * SEC)],
        ..Default::default()
    });
    all_stored(&ingest(&mut store, &now, 2 * SEC));
    rollup.run().expect("rollup");
    let reader = store.reader().expect("reader");
    let update = |ts: i64, kind: &str| v1::UpdateEvent {
        timestamp_unix_ns: ts,
        target: "app".into(),
        kind: kind.into(),
        from_image: "app:1.0".into(),
        to_image: "app:1.1".into(),
        message: "test".into(),
        node: "node-r".into(),
        container_ids: vec![x.clone()],
    };
    reader
        .record_update_events(
            &[
                update(D0 - 93 * DAY, "apply_started"),
                update(D0 - 2 * DAY, "apply_started"),
            ],
            NOW,
        )
        .expect("update events");
    path
}

#[test]
fn old_days_go_per_table_and_the_summary_stays_what_a_rebuild_gives() {
    let dir = TempDir::new("retention-age");
    let path = hundred_days(&dir);
    let before = all_days(&path);
    let series_before = one(&path, "SELECT count(*) FROM usage_series");
    let inventory_before = one(&path, "SELECT count(*) FROM container_inventory");
    let (raw_cutoff, usage_cutoff) = (D0 - 7 * DAY, D0 - 90 * DAY);
    for (table, _, raw) in DAY_TABLES {
        let cutoff = if raw { raw_cutoff } else { usage_cutoff };
        assert!(
            before_day(&before[table], cutoff) > 0 && !from_day(&before[table], cutoff).is_empty(),
            "{table} must have rows on both sides of its cutoff: {:?}",
            before[table]
        );
    }

    let report = {
        let store = Store::open(&path).expect("open");
        let mut retention = Retention::new(&store, settings(7, 90, 0)).expect("retention");
        let report = retention.run_at(NOW).expect("retention run");
        // Nothing left to drop: a second run is a no-op.
        assert_eq!(retention.run_at(NOW).expect("again").total_rows(), 0);
        assert_eq!(store.raw_horizon_unix_ns(), raw_cutoff);
        report
    };
    assert_eq!(report.raw_cutoff_unix_ns, raw_cutoff);
    assert_eq!(report.usage_cutoff_unix_ns, usage_cutoff);
    assert_eq!(report.raw_held_for_rollup_unix_ns, None);
    assert!(report.budget_met);
    assert!(report.budget_steps.is_empty());
    assert!(
        report
            .dropped
            .iter()
            .all(|d| d.reason == RetentionReason::Age),
        "{report:?}"
    );

    let after = all_days(&path);
    assert_days_dropped(
        &before,
        &after,
        raw_cutoff,
        usage_cutoff,
        &report,
        RetentionReason::Age,
    );
    // The gone node's series lost its every hour: its identity went too;
    // its inventory record (removed 95 days ago) went, the current one
    // stayed.
    assert_eq!(report.rows("usage_series", RetentionReason::Age), 1);
    assert_eq!(
        one(&path, "SELECT count(*) FROM usage_series"),
        series_before - 1
    );
    assert_eq!(
        one(
            &path,
            "SELECT count(*) FROM usage_series WHERE node = 'node-old'"
        ),
        0
    );
    assert_eq!(report.rows("container_inventory", RetentionReason::Age), 1);
    assert_eq!(
        one(&path, "SELECT count(*) FROM container_inventory"),
        inventory_before - 1
    );
    assert_eq!(
        one(
            &path,
            &format!(
                "SELECT count(*) FROM container_inventory WHERE container_id = '{}'",
                docker_id("a")
            )
        ),
        1
    );
    // What was recorded: the raw and usage horizons, and per agent the
    // highest seq whose ledger row went (node-old's 3; node-r's ticks
    // before D0 - 7 days are the first 3 x 48).
    assert_eq!(
        one(&path, "SELECT raw_horizon_unix_ns FROM retention_state"),
        raw_cutoff
    );
    assert_eq!(
        one(&path, "SELECT usage_horizon_unix_ns FROM retention_state"),
        usage_cutoff
    );
    assert_eq!(
        one(
            &path,
            "SELECT pruned_through_seq::BIGINT FROM ledger_horizon WHERE agent_id = 'agent-old'"
        ),
        3
    );
    assert_eq!(
        one(
            &path,
            "SELECT pruned_through_seq::BIGINT FROM ledger_horizon WHERE agent_id = 'agent-r'"
        ),
        3 * 48
    );

    // The metrics count exactly what the report says.
    let counters = RetentionCounters::default();
    counters.record(&report);
    let mut text = String::new();
    counters.render(&mut text);
    for (table, _, _) in DAY_TABLES {
        let rows = report.rows(table, RetentionReason::Age);
        assert_eq!(counters.dropped_rows(table, RetentionReason::Age), rows);
        assert!(
            text.contains(&format!(
                "upid_collector_retention_dropped_rows_total{{table=\"{table}\",reason=\"age\"}} {rows}\n"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains("upid_collector_retention_runs_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("upid_collector_disk_budget_exceeded 0\n"),
        "{text}"
    );

    // The summary is in step by row count per hour (so opening rebuilds
    // nothing), a check at open finds nothing to repair, and the kept
    // summary is what a rebuild from usage gives.
    assert_eq!(hours_out_of_step(&path), 0);
    {
        let mut store = Store::open(&path).expect("reopen");
        assert_eq!(store.repair_usage_summary().expect("repair").hours, 0);
        // Analysis reads the remaining window alike from the summary and
        // from the rows, and still recommends.
        assert_reads_agree(&store, D0 - 89 * DAY, NOW);
        assert_reads_agree(&store, D0 - 10 * DAY + 7 * MIN, NOW - 13 * MIN);
        let reader = store.reader().expect("reader");
        // Over all that remains of usage, counting series seen in the last
        // day as running (the imported history ends at the day's start).
        let analyzer = Analyzer::new(
            AnalysisSettings {
                history_s: 89 * 86_400,
                stale_after_s: 86_400,
                ..AnalysisSettings::default()
            },
            Pricing::default(),
        );
        let recs = analyzer
            .rightsize(&reader, &v1::RightsizeRequest::default(), NOW + MIN)
            .expect("rightsize")
            .recommendations;
        for workload in ["web-0", "web-1", "app"] {
            assert!(
                recs.iter().any(|r| r.workload == workload),
                "{workload}: {recs:#?}"
            );
        }
    }
    assert_summary_is_a_rebuild(&path);
}

// ---------------------------------------------------------------------
// The rollup and the ledger.
// ---------------------------------------------------------------------

#[test]
fn samples_not_rolled_up_are_kept_and_late_replays_expire_instead_of_doubling() {
    let dir = TempDir::new("retention-ledger");
    let path = dir.path("upid.duckdb");
    let x = docker_id("a");
    let z = docker_id("c");
    let current = ticks(
        "agent-r",
        "node-r",
        std::slice::from_ref(&x),
        D0 - 10 * DAY,
        1800,
        CURRENT_TICKS,
        1,
    );
    {
        let mut store = Store::open(&path).expect("open");
        let mut rollup = Rollup::new(&store).expect("rollup");
        all_stored(&ingest(&mut store, &current, 2 * SEC));
        rollup.run().expect("rollup");
        // A late agent replays six ticks of nine days ago (same node),
        // received after the rollup ran: not rolled up when retention runs.
        let late = ticks(
            "agent-late",
            "node-r",
            std::slice::from_ref(&z),
            D0 - 9 * DAY,
            1800,
            6,
            1,
        );
        all_stored(&ingest(&mut store, &late, 9 * DAY + 13 * HOUR));
        let mut retention = Retention::new(&store, settings(7, 90, 0)).expect("retention");
        let report = retention.run_at(NOW).expect("run");
        // Kept from the day before the oldest tick not rolled up (less
        // the rollup's minute and lookback): nothing of these samples goes.
        assert_eq!(report.raw_held_for_rollup_unix_ns, Some(D0 - 10 * DAY));
        assert_eq!(report.total_rows(), 0, "{report:?}");
        assert_eq!(store.raw_horizon_unix_ns(), i64::MIN);
    }
    assert_eq!(
        one(&path, "SELECT count(*) FROM container_samples"),
        i64::try_from(CURRENT_TICKS).unwrap_or(0) + 6
    );
    let agent_usage_before_horizon = |path: &Path| {
        one(
            path,
            &format!(
                "SELECT count(*) FROM usage WHERE node = 'node-r' AND ts_unix_ns < {}",
                D0 - 7 * DAY + 10 * MIN
            ),
        )
    };
    let agent_minutes = {
        let store = Store::open(&path).expect("open");
        let mut rollup = Rollup::new(&store).expect("rollup");
        rollup.run().expect("rollup the late ticks");
        let mut retention = Retention::new(&store, settings(7, 90, 0)).expect("retention");
        let report = retention.run_at(NOW).expect("run");
        assert_eq!(report.raw_held_for_rollup_unix_ns, None);
        assert_eq!(store.raw_horizon_unix_ns(), D0 - 7 * DAY);
        // Ticks of the first three days (3 x 48) and the six late ones.
        assert_eq!(
            report.rows("container_samples", RetentionReason::Age),
            3 * 48 + 6
        );
        assert_eq!(report.rows("batches", RetentionReason::Age), 3 * 48 + 6);
        drop(store);
        agent_usage_before_horizon(&path)
    };
    assert!(agent_minutes > 3 * 48, "{agent_minutes}");
    assert_eq!(
        one(
            &path,
            &format!(
                "SELECT count(*) FROM container_samples WHERE ts_unix_ns < {}",
                D0 - 7 * DAY
            )
        ),
        0
    );
    let samples = one(&path, "SELECT count(*) FROM container_samples");

    // Reopened (the horizon is read back from the store): replays.
    let mut store = Store::open(&path).expect("reopen");
    assert_eq!(store.raw_horizon_unix_ns(), D0 - 7 * DAY);
    // Its ledger row dropped: it may have been stored, so never again.
    assert_eq!(
        store.ingest_at(&current[..1], NOW).expect("replay seq 1"),
        vec![IngestOutcome::Expired]
    );
    // Still in the ledger: a duplicate, as ever.
    assert_eq!(
        store
            .ingest_at(&current[400..401], NOW)
            .expect("replay seq 401"),
        vec![IngestOutcome::Duplicate]
    );
    // New seqs of a late agent: older than the horizon expire; from the
    // horizon on they are stored, and the rollup does not rebuild minutes
    // whose samples (or the lookback before them) are gone: x's row of the
    // horizon's minute was computed from a sample now dropped, and would be
    // lost by a rebuild from the minute before this tick.
    let older = ticks(
        "agent-late",
        "node-r",
        std::slice::from_ref(&z),
        D0 - 8 * DAY,
        1800,
        1,
        7,
    );
    assert_eq!(
        store.ingest_at(&older, NOW).expect("older"),
        vec![IngestOutcome::Expired]
    );
    let newer = ticks(
        "agent-late",
        "node-r",
        std::slice::from_ref(&z),
        D0 - 7 * DAY + 30 * SEC,
        1800,
        1,
        8,
    );
    // Received after everything rolled up so far, so the rollup reads it.
    all_stored(&store.ingest_at(&newer, D0 + DAY).expect("newer"));
    let stats = Rollup::new(&store)
        .expect("rollup")
        .run()
        .expect("rollup after the horizon");
    assert_eq!(stats.nodes, 1, "the rollup read the new batch");
    drop(store);
    assert_eq!(
        one(&path, "SELECT count(*) FROM container_samples"),
        samples + 1
    );
    assert_eq!(agent_usage_before_horizon(&path), agent_minutes);
    assert_eq!(hours_out_of_step(&path), 0);
}

// ---------------------------------------------------------------------
// The disk budget.
// ---------------------------------------------------------------------

#[test]
fn over_budget_the_oldest_days_go_samples_first_until_under_it() {
    let dir = TempDir::new("retention-budget");
    let path = dir.path("upid.duckdb");
    drop(Store::open(&path).expect("create store"));
    // Twelve days of 1-minute usage of 100 pods, imported a day at a time
    // (as daily exports would be), so each day fills its own row groups.
    for day in 1..=12 {
        let from = D0 - day * DAY;
        import_history(
            &dir,
            &path,
            &format!("day-{day}"),
            100,
            from,
            from + DAY,
            MIN,
        );
    }
    let x: Vec<String> = ["a", "b", "c", "d", "f"]
        .into_iter()
        .map(docker_id)
        .collect();
    let used = {
        let mut store = Store::open(&path).expect("open");
        let mut rollup = Rollup::new(&store).expect("rollup");
        // Four and a half days of samples of five containers every 10 min.
        let current = ticks("agent-r", "node-r", &x, D0 - 4 * DAY, 600, 4 * 144 + 72, 1);
        all_stored(&ingest(&mut store, &current, 2 * SEC));
        rollup.run().expect("rollup");
        let mut retention = Retention::new(&store, settings(30, 90, 0)).expect("retention");
        let report = retention.run_at(NOW).expect("measure");
        assert_eq!(report.total_rows(), 0);
        report.used_bytes_after
    };
    assert!(
        used > 8 * MIB,
        "{used} bytes: too little data to test a budget"
    );
    let before = all_days(&path);
    let budget = used / 2;
    let report = {
        let store = Store::open(&path).expect("open");
        let mut retention = Retention::new(&store, settings(30, 90, budget)).expect("retention");
        retention.run_at(NOW).expect("run over budget")
    };
    let after = all_days(&path);
    assert!(report.budget_met, "{report:?}");
    assert!(report.used_bytes_after <= budget, "{report:?}");
    assert!(report.used_bytes_before > budget, "{report:?}");
    let steps = &report.budget_steps;
    // Samples first, a day at a time, oldest first, down to the floor (the
    // previous day); then usage days, oldest first.
    let raw: Vec<i64> = steps
        .iter()
        .filter(|s| s.raw)
        .map(|s| s.before_unix_ns)
        .collect();
    assert_eq!(raw, vec![D0 - 3 * DAY, D0 - 2 * DAY, D0 - DAY], "{steps:?}");
    assert!(steps.iter().take(3).all(|s| s.raw), "{steps:?}");
    let usage: Vec<i64> = steps
        .iter()
        .filter(|s| !s.raw)
        .map(|s| s.before_unix_ns)
        .collect();
    assert!(!usage.is_empty(), "{steps:?}");
    for (i, cutoff) in usage.iter().enumerate() {
        assert_eq!(*cutoff, D0 - (11 - i as i64) * DAY, "{steps:?}");
    }
    // It stopped as soon as it was under: the step before the last was not.
    if let [.., prev, last] = steps.as_slice() {
        assert!(prev.used_bytes_after > budget, "{steps:?}");
        assert!(last.used_bytes_after <= budget, "{steps:?}");
    }
    let usage_cutoff = *usage.last().unwrap_or(&i64::MIN);
    assert_days_dropped(
        &before,
        &after,
        D0 - DAY,
        usage_cutoff,
        &report,
        RetentionReason::Budget,
    );
    assert!(
        report
            .dropped
            .iter()
            .all(|d| d.reason == RetentionReason::Budget)
    );
    assert_eq!(hours_out_of_step(&path), 0);
    let store = Store::open(&path).expect("reopen");
    assert_reads_agree(&store, usage_cutoff, NOW);
}

#[test]
fn a_budget_that_cannot_be_met_keeps_the_floor_and_unrolled_samples_and_says_so() {
    let dir = TempDir::new("retention-floor");
    let path = dir.path("upid.duckdb");
    drop(Store::open(&path).expect("create store"));
    import_history(&dir, &path, "history", 2, D0 - 20 * DAY, NOW, 20 * MIN);
    let x = docker_id("a");
    let report = {
        let mut store = Store::open(&path).expect("open");
        let mut rollup = Rollup::new(&store).expect("rollup");
        let current = ticks(
            "agent-r",
            "node-r",
            std::slice::from_ref(&x),
            D0 - 8 * DAY,
            1800,
            8 * 48 + 24,
            1,
        );
        all_stored(&ingest(&mut store, &current, 2 * SEC));
        rollup.run().expect("rollup");
        // Not rolled up: a late agent's ticks of five days ago, received
        // after the rollup ran.
        let late = ticks(
            "agent-late",
            "node-r",
            &[docker_id("c")],
            D0 - 5 * DAY,
            1800,
            4,
            1,
        );
        all_stored(&ingest(&mut store, &late, 5 * DAY + 12 * HOUR));
        // One byte: nothing could ever fit.
        let mut retention = Retention::new(&store, settings(30, 90, 1)).expect("retention");
        retention.run_at(NOW).expect("run")
    };
    assert!(!report.budget_met, "{report:?}");
    assert!(report.used_bytes_after > 1);
    assert_eq!(report.budget_floor_unix_ns, D0 - DAY);
    assert_eq!(report.raw_held_for_rollup_unix_ns, Some(D0 - 6 * DAY));
    // Samples: only those the rollup still needs (from the day before the
    // late ticks) and the floor's are left; usage: the floor's days.
    let samples = per_day(&path, "container_samples", "ts_unix_ns");
    assert_eq!(
        samples.keys().copied().collect::<Vec<_>>(),
        (0..7).map(|d| D0 - (6 - d) * DAY).collect::<Vec<_>>(),
        "{samples:?}"
    );
    let usage = per_day(&path, "usage", "ts_unix_ns");
    assert_eq!(
        usage.keys().copied().collect::<Vec<_>>(),
        vec![D0 - DAY, D0],
        "{usage:?}"
    );
    let counters = RetentionCounters::default();
    counters.record(&report);
    let mut text = String::new();
    counters.render(&mut text);
    assert!(
        text.contains("upid_collector_disk_budget_exceeded 1\n"),
        "{text}"
    );
    assert!(
        text.contains("upid_collector_disk_budget_bytes 1\n"),
        "{text}"
    );
    assert_eq!(hours_out_of_step(&path), 0);
}

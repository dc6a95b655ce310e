//! The Parquet reports against real files and a real store: the atomic
//! writer when DuckDB fails halfway through a file (the previous file
//! stays, nothing partial is visible), a day's files written from a store
//! holding imported history (read back with DuckDB, values worked out by
//! hand) and replaced when written again, the documented schema of every
//! table (docs/export.md), and which days the periodic task considers
//! due.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use upid::wire::v1;
use upid_collector::analysis::Analyzer;
use upid_collector::import::parquet::import_parquet;
use upid_collector::report::schedule::ReportTask;
use upid_collector::report::settings::ReportSettings;
use upid_collector::report::tables::{self, Table};
use upid_collector::report::{DAY_NS, DaySpan, ReportMetrics, days_of, write_day, writer};
use upid_collector::store::Store;

mod common;
use common::TempDir;

const S: i64 = 1_000_000_000;
const MIN_NS: i64 = 60 * S;
/// 2024-05-01T00:00:00Z.
const MAY_1: i64 = 1_714_521_600 * S;
const MIB: u64 = 1 << 20;

/// Every file under `dir` (hidden ones included), relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn parquet_rows(file: &Path) -> i64 {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    conn.query_row(
        &format!("SELECT count(*) FROM read_parquet('{}')", file.display()),
        [],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
}

#[test]
fn a_report_write_failing_halfway_leaves_the_previous_file_and_nothing_partial() {
    let dir = TempDir::new("report-atomic");
    let dest = dir.path("samples/date=2024-05-01/part-0.parquet");
    let rows =
        writer::write_query("SELECT i FROM range(1000) t(i)", &dest).expect("a first good file");
    assert_eq!(rows, 1000);
    let before = std::fs::read(&dest).expect("the file");

    // A temporary file and a spill directory a crashed run left behind are
    // cleaned up by the next write of the same file.
    let stale = dest.with_file_name(".part-0.parquet.tmp-1-1");
    std::fs::write(&stale, b"half a file").expect("a stale temporary file");
    let spill = dest.with_file_name(".part-0.parquet.spill-1-1");
    std::fs::create_dir_all(spill.join("x")).expect("a stale spill directory");

    // DuckDB fails after it has started writing: rows go out in row groups
    // of 122,880, and error() fires only on row 500,000. Many times over:
    // DuckDB's asynchronous file writer used to deadlock on such an abort
    // now and then (about 1 run in 20 here), which the writer avoids by
    // writing from a database without async I/O threads.
    let failing = "SELECT CASE WHEN i < 500000 THEN i ELSE error('boom at row ' || i) END AS i \
                   FROM range(1000000) t(i)";
    for _ in 0..25 {
        let e = writer::write_query(failing, &dest).expect_err("the query fails halfway");
        assert!(e.to_string().contains("boom at row"), "{e}");
        assert_eq!(
            std::fs::read(&dest).ok(),
            Some(before.clone()),
            "the previous file is intact"
        );
        assert_eq!(
            tree(&dir.path("samples")),
            ["date=2024-05-01/part-0.parquet"]
        );
    }
    assert_eq!(parquet_rows(&dest), 1000);

    // A store query failing halfway (a count too large for the file's
    // signed 64-bit column, on its last row): same guarantees.
    let store = duckdb::Connection::open_in_memory().expect("duckdb");
    store
        .execute_batch(
            "CREATE TABLE t AS SELECT i::UBIGINT AS v FROM range(300000) t(i);
             INSERT INTO t VALUES (18446744073709551615);",
        )
        .expect("a source table");
    let query = tables::StoreQuery {
        raw: "SELECT v::BIGINT AS v FROM t".into(),
        project: "SELECT v FROM stage ORDER BY rowid".into(),
    };
    let e = writer::write_from(&store, &query, &dest).expect_err("the cast overflows");
    assert!(e.to_string().contains(&dest.display().to_string()), "{e}");
    assert_eq!(std::fs::read(&dest).ok(), Some(before.clone()));
    assert_eq!(
        tree(&dir.path("samples")),
        ["date=2024-05-01/part-0.parquet"]
    );
    let fine = tables::StoreQuery {
        raw: "SELECT v FROM t WHERE v < 1000 ORDER BY v".into(),
        project: "SELECT v::BIGINT AS v FROM stage ORDER BY rowid".into(),
    };
    let other = dir.path("samples/date=2024-05-02/part-0.parquet");
    assert_eq!(
        writer::write_from(&store, &fine, &other).expect("staged"),
        1000
    );
    assert_eq!(parquet_rows(&other), 1000);
    std::fs::remove_dir_all(other.parent().expect("its day")).expect("clean up");

    // A query that cannot even start: same guarantees.
    let e = writer::write_query("SELECT * FROM no_such_table", &dest).expect_err("no such table");
    assert!(e.to_string().contains("no_such_table"), "{e}");
    assert_eq!(std::fs::read(&dest).ok(), Some(before));
    assert_eq!(
        tree(&dir.path("samples")),
        ["date=2024-05-01/part-0.parquet"]
    );

    // A destination that is a directory: the rename fails, the temporary
    // file is removed.
    let blocked = dir.path("cost/date=2024-05-01/part-0.parquet");
    std::fs::create_dir_all(blocked.join("occupied")).expect("a directory in the way");
    let e = writer::write_query("SELECT 1 AS x", &blocked).expect_err("rename fails");
    assert!(e.to_string().contains("renaming the temporary file"), "{e}");
    assert!(
        tree(&dir.path("cost")).is_empty(),
        "{:?}",
        tree(&dir.path("cost"))
    );
}

/// Three days of 1-minute history from May 1st (the export schema):
/// `api-1` (workload api: 0.25 cores, 100 MiB, requesting 1 core and
/// 512 MiB) and `batch-1` (workload batch: 0.5 cores, 200 MiB, no
/// requests; OOM-killed once on May 2nd at 12:00).
fn write_history(file: &Path) {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let (from, end) = (MAY_1, MAY_1 + 3 * DAY_NS);
    let oom_at = MAY_1 + DAY_NS + DAY_NS / 2;
    let sql = format!(
        "COPY (
            SELECT make_timestamp(ts // 1000) AS ts, 60.0::DOUBLE AS interval_s,
                'node-1' AS node, s.id AS container_id, 'shop' AS namespace,
                s.id || '-pod' AS pod, 'app' AS container, 'Deployment' AS workload_kind,
                s.wl AS workload, 'registry.local/' || s.wl || ':1.0' AS image,
                s.cpu AS cpu_cores, NULL::DOUBLE AS cpu_throttled_ratio,
                s.mem AS memory_working_set_bytes, s.mem AS memory_peak_bytes,
                (CASE WHEN s.wl = 'batch' AND ts = {oom_at} THEN 1 ELSE 0 END)::UBIGINT AS oom_kills,
                300::UBIGINT AS net_rx_bytes, 300::UBIGINT AS net_tx_bytes,
                s.req_cpu AS cpu_request_cores, NULL::DOUBLE AS cpu_limit_cores,
                s.req_mem AS memory_request_bytes, NULL::UBIGINT AS memory_limit_bytes
            FROM range({from}::BIGINT, {end}::BIGINT, {MIN_NS}::BIGINT) t(ts),
                (VALUES ('api-1', 'api', 0.25, {api_mem}::UBIGINT, 1.0, {api_req}::UBIGINT),
                        ('batch-1', 'batch', 0.5, {batch_mem}::UBIGINT, NULL, NULL))
                    s(id, wl, cpu, mem, req_cpu, req_mem)
        ) TO '{}' (FORMAT PARQUET)",
        file.display(),
        api_mem = 100 * MIB,
        api_req = 512 * MIB,
        batch_mem = 200 * MIB,
    );
    conn.execute_batch(&sql).expect("write the Parquet history");
}

fn store_with_history(dir: &TempDir) -> PathBuf {
    let history = dir.path("history.parquet");
    write_history(&history);
    let store = dir.path("upid.duckdb");
    let summary = import_parquet(&store, &history, false).expect("import");
    assert_eq!(summary.rows_stored, 2 * 3 * 1440, "{summary:?}");
    store
}

#[test]
fn a_report_day_is_written_from_the_store_and_replaced_when_written_again() {
    let dir = TempDir::new("report-day");
    let store_path = store_with_history(&dir);
    let store = Store::open(&store_path).expect("open the store");
    let reader = store.reader().expect("reader");
    let analyzer = Analyzer::default();
    let out = dir.path("reports");
    let may_2 = &days_of(MAY_1 + DAY_NS, MAY_1 + 2 * DAY_NS)[0];
    assert!(may_2.is_whole_day());

    let files = write_day(&reader, &analyzer, &out, may_2, &Table::ALL, None).expect("May 2nd");
    let written: Vec<(&str, u64)> = files.iter().map(|f| (f.table.name(), f.rows)).collect();
    // No update decisions given: no updates file.
    assert_eq!(
        written,
        [
            ("samples", 2880),
            ("containers", 2),
            ("rightsizing", 2),
            ("idle", 2),
            ("cost", 2)
        ]
    );
    assert_eq!(
        tree(&out),
        [
            "containers/date=2024-05-02/part-0.parquet",
            "cost/date=2024-05-02/part-0.parquet",
            "idle/date=2024-05-02/part-0.parquet",
            "rightsizing/date=2024-05-02/part-0.parquet",
            "samples/date=2024-05-02/part-0.parquet",
        ]
    );
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let file = |t: &str| format!("'{}/{t}/date=2024-05-02/part-0.parquet'", out.display());

    // Samples: the day's rows only, UTC timestamps, the OOM kill at noon.
    let (rows, first, last, ooms): (i64, String, String, i64) = conn
        .query_row(
            &format!(
                "SELECT count(*), strftime(min(ts)::TIMESTAMP, '%Y-%m-%dT%H:%M:%S'),
                        strftime(max(ts)::TIMESTAMP, '%Y-%m-%dT%H:%M:%S'), sum(oom_kills)
                 FROM read_parquet({})",
                file("samples")
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("samples");
    assert_eq!(
        (rows, first.as_str(), last.as_str(), ooms),
        (2880, "2024-05-02T00:00:00", "2024-05-02T23:59:00", 1)
    );

    // Containers: one row per container with the day's aggregates.
    let (id, rows_of, covered, cpu, ooms, req): (String, i64, f64, f64, i64, Option<i64>) = conn
        .query_row(
            &format!(
                "SELECT container_id, usage_rows, covered_s, cpu_mean_cores, oom_kills,
                        memory_request_bytes
                 FROM read_parquet({}) WHERE workload = 'batch'",
                file("containers")
            ),
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("containers");
    assert_eq!(
        (id.as_str(), rows_of, ooms, req),
        ("batch-1", 1440, 1, None)
    );
    assert!(
        (covered - 86_400.0).abs() < 1e-6 && (cpu - 0.5).abs() < 1e-9,
        "{covered} {cpu}"
    );

    // Cost of the day: api is charged on its requests (1 core, 0.5 GiB)
    // for 24 h at OpenCost's default prices; batch on its usage.
    let (api_cost, api_hours, window_s): (f64, f64, i64) = conn
        .query_row(
            &format!(
                "SELECT cost, container_hours, (epoch(window_end_ts::TIMESTAMP) - epoch(window_start_ts::TIMESTAMP))::BIGINT
                 FROM read_parquet({}) WHERE workload = 'api'",
                file("cost")
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("cost");
    let expected = 24.0 * (1.0 * 0.031_611 + 0.5 * 0.004_237);
    assert!(
        (api_cost - expected).abs() < 1e-6,
        "api cost {api_cost}, expected {expected}"
    );
    assert!((api_hours - 24.0).abs() < 1e-6, "{api_hours}");
    assert_eq!(window_s, 86_400);

    // Rightsizing at the day's end: batch's OOM kill is in its evidence.
    let (ooms, replicas, end): (i64, i64, String) = conn
        .query_row(
            &format!(
                "SELECT oom_kills, replicas, strftime(window_end_ts::TIMESTAMP, '%Y-%m-%dT%H:%M:%S')
                 FROM read_parquet({}) WHERE workload = 'batch'",
                file("rightsizing")
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("rightsizing");
    assert_eq!(
        (ooms, replicas, end.as_str()),
        (1, 1, "2024-05-03T00:00:00")
    );

    // Writing the day again replaces each file: the same rows, one file each.
    let again = write_day(&reader, &analyzer, &out, may_2, &Table::ALL, None).expect("again");
    assert_eq!(again, files);
    assert_eq!(tree(&out).len(), 5);
    assert_eq!(
        parquet_rows(&out.join("samples/date=2024-05-02/part-0.parquet")),
        2880
    );

    // A day without usage rows gets nothing (and the range's partial last
    // day is cut at its end).
    let empty = DaySpan {
        date: "2024-04-20".into(),
        day_start_unix_ns: MAY_1 - 11 * DAY_NS,
        from_unix_ns: MAY_1 - 11 * DAY_NS,
        until_unix_ns: MAY_1 - 10 * DAY_NS,
    };
    assert!(
        write_day(&reader, &analyzer, &out, &empty, &Table::ALL, None)
            .expect("empty day")
            .is_empty()
    );
    let partial = &days_of(MAY_1 + 2 * DAY_NS, MAY_1 + 2 * DAY_NS + 90 * MIN_NS)[0];
    let files = write_day(
        &reader,
        &analyzer,
        &dir.path("partial"),
        partial,
        &[Table::Samples],
        None,
    )
    .expect("partial");
    assert_eq!(files[0].rows, 2 * 90);
}

/// The documented columns of `table` in docs/export.md: the rows of the
/// table under its `### \`table\`` heading, as (name, type).
fn documented(table: &str) -> Vec<(String, String)> {
    let doc = include_str!("../../docs/export.md");
    let heading = format!("### `{table}`");
    let at = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/export.md has no {heading} section"));
    doc[at + heading.len()..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.trim_matches('`').to_owned();
            Some((name, cells.get(2)?.to_string()))
        })
        .collect()
}

/// The Parquet type names docs/export.md uses, from DuckDB's.
fn doc_type(duckdb_type: &str) -> &'static str {
    match duckdb_type {
        "VARCHAR" => "STRING",
        "BIGINT" => "INT64",
        "DOUBLE" => "DOUBLE",
        "BOOLEAN" => "BOOLEAN",
        "TIMESTAMP WITH TIME ZONE" => "TIMESTAMP (UTC, µs)",
        "VARCHAR[]" => "LIST of STRING",
        other => panic!("a report column of type {other} is not documented as a Parquet type"),
    }
}

fn schema_of(file: &Path) -> Vec<(String, String)> {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let mut stmt = conn
        .prepare(&format!(
            "DESCRIBE SELECT * FROM read_parquet('{}', hive_partitioning = false)",
            file.display()
        ))
        .expect("describe");
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("query")
        .map(|r| {
            let (name, ty) = r.expect("row");
            let ty = doc_type(&ty).to_owned();
            (name, ty)
        })
        .collect()
}

#[test]
fn every_report_table_has_exactly_the_documented_columns_and_types() {
    let dir = TempDir::new("report-schema");
    let store_path = store_with_history(&dir);
    let store = Store::open(&store_path).expect("open the store");
    let reader = store.reader().expect("reader");
    let out = dir.path("reports");
    let day = &days_of(MAY_1 + DAY_NS, MAY_1 + 2 * DAY_NS)[0];
    // One made-up decision, so the updates table is written too.
    let updates = v1::ListUpdatesResponse {
        decisions: vec![v1::UpdateDecision {
            namespace: "shop".into(),
            workload_kind: "Deployment".into(),
            workload: "api".into(),
            container: "app".into(),
            container_ids: vec!["api-1".into(), "api-2".into()],
            nodes: vec!["node-1".into()],
            current: "registry.local/api:1.0".into(),
            candidate: Some("1.0.1".into()),
            change: "patch".into(),
            decision: "approve".into(),
            checked_unix_ns: MAY_1 + 2 * DAY_NS,
            ..Default::default()
        }],
        ..Default::default()
    };
    let files = write_day(
        &reader,
        &Analyzer::default(),
        &out,
        day,
        &Table::ALL,
        Some(&updates),
    )
    .expect("every table");
    assert_eq!(files.len(), Table::ALL.len());
    for table in Table::ALL {
        let file = out
            .join(table.name())
            .join("date=2024-05-02/part-0.parquet");
        assert_eq!(
            schema_of(&file),
            documented(table.name()),
            "{}: the file's columns (left) and docs/export.md (right) differ",
            table.name()
        );
    }
    // The list columns hold lists.
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let ids: String = conn
        .query_row(
            &format!(
                "SELECT array_to_string(container_ids, ' ') FROM read_parquet('{}/updates/date=2024-05-02/part-0.parquet')",
                out.display()
            ),
            [],
            |r| r.get(0),
        )
        .expect("updates");
    assert_eq!(ids, "api-1 api-2");
    // The staged columns and the documented ones agree too.
    for (name, columns) in [
        (
            "rightsizing",
            tables::RIGHTSIZING
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>(),
        ),
        ("idle", tables::IDLE.iter().map(|c| c.name).collect()),
        ("cost", tables::COST.iter().map(|c| c.name).collect()),
        ("updates", tables::UPDATES.iter().map(|c| c.name).collect()),
    ] {
        let doc: Vec<String> = documented(name).into_iter().map(|(n, _)| n).collect();
        assert_eq!(columns, doc, "{name}");
    }
}

#[test]
fn the_report_schedule_writes_missing_and_stale_days_only() {
    let dir = TempDir::new("report-due");
    let store_path = store_with_history(&dir);
    let store = Store::open(&store_path).expect("open the store");
    let out = dir.path("reports");
    let settings = ReportSettings {
        backfill_days: 3,
        delay_s: 600,
        ..ReportSettings::default()
    };
    let task = ReportTask {
        dir: out.clone(),
        tables: settings.table_set().expect("tables"),
        settings: settings.clone(),
        reader: Arc::new(store.reader().expect("reader")),
        analyzer: Arc::new(Analyzer::default()),
        updates: None,
        rollup: None,
        metrics: Arc::new(ReportMetrics::default()),
    };
    let dates =
        |now: i64| -> Vec<String> { task.due_days(now).into_iter().map(|d| d.date).collect() };
    // May 4th, 00:05: May 3rd is not over plus the 10-minute delay yet.
    let may_4 = MAY_1 + 3 * DAY_NS;
    assert_eq!(dates(may_4 + 5 * MIN_NS), ["2024-05-01", "2024-05-02"]);
    assert_eq!(
        dates(may_4 + 10 * MIN_NS),
        ["2024-05-01", "2024-05-02", "2024-05-03"]
    );
    // Backfill is 3 days: on May 5th, May 1st is out of reach.
    assert_eq!(
        dates(may_4 + DAY_NS + H),
        ["2024-05-02", "2024-05-03", "2024-05-04"]
    );

    // Once written (after the day ended), May 2nd is final.
    let reader = store.reader().expect("reader");
    let may_2 = &days_of(MAY_1 + DAY_NS, MAY_1 + 2 * DAY_NS)[0];
    write_day(
        &reader,
        &Analyzer::default(),
        &out,
        may_2,
        &task.tables,
        None,
    )
    .expect("write");
    assert_eq!(dates(may_4 + H), ["2024-05-01", "2024-05-03"]);

    // A file written before the day was over (a shorter interval's run)
    // is not final: the day is due again.
    let early = UNIX_EPOCH + Duration::from_nanos((MAY_1 + DAY_NS + H) as u64);
    std::fs::File::options()
        .write(true)
        .open(out.join("cost/date=2024-05-02/part-0.parquet"))
        .and_then(|f| f.set_modified(early))
        .expect("backdate a file");
    assert_eq!(dates(may_4 + H), ["2024-05-01", "2024-05-02", "2024-05-03"]);

    // With an interval shorter than a day, each run also writes today so far.
    let hourly = ReportTask {
        settings: ReportSettings {
            interval_s: 3600,
            ..settings
        },
        ..task
    };
    let days = hourly.due_days(may_4 + 2 * H);
    let last = days.last().expect("today");
    assert_eq!(
        (last.date.as_str(), last.from_unix_ns, last.until_unix_ns),
        ("2024-05-04", may_4, may_4 + 2 * H)
    );
}

const H: i64 = 3600 * S;

//! Parquet import and export of the `usage` table against real files: the
//! Parquet inputs are written by DuckDB in the test, imported into real
//! store files, and checked with SQL on the store. Covers the schema checks
//! (missing column, wrong type, not Parquet), counted skips, re-import,
//! agent data winning, export → import round trips, and the store lock of a
//! running collector.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use upid_collector::export::{ExportError, export_parquet};
use upid_collector::import::ImportError;
use upid_collector::import::parquet::import_parquet;
use upid_collector::store::Store;

mod common;
use common::TempDir;

/// 2023-11-14T22:13:20Z, in microseconds and nanoseconds.
const T0_US: i64 = 1_700_000_000_000_000;
const T0_NS: i64 = T0_US * 1000;
const MIN_NS: i64 = 60_000_000_000;
const MIB: i64 = 1 << 20;

fn container_id() -> String {
    "ab".repeat(32)
}

/// The columns of a good file, as `(name, SQL expression)` over
/// `range(10) r(i)` × `range(2) t(s)`: series 0 has a container id,
/// series 1 has none (its key is node/namespace/pod/container).
fn good_columns() -> Vec<(&'static str, String)> {
    vec![
        ("ts", format!("make_timestamp({T0_US} + i * 60000000)")),
        ("interval_s", "60.0".into()),
        ("node", "'node-1'".into()),
        (
            "container_id",
            format!("CASE WHEN s = 0 THEN '{}' ELSE '' END", container_id()),
        ),
        ("namespace", "'shop'".into()),
        ("pod", "'web-' || s".into()),
        ("container", "'app'".into()),
        ("workload_kind", "'Deployment'".into()),
        ("workload", "'web'".into()),
        ("image", "'nginx:1.25'".into()),
        ("cpu_cores", "0.25 + i / 100".into()),
        ("cpu_throttled_ratio", "0.1".into()),
        (
            "memory_working_set_bytes",
            format!("CAST({} + i AS BIGINT)", 100 * MIB),
        ),
        (
            "memory_peak_bytes",
            format!("CAST({} AS BIGINT)", 120 * MIB),
        ),
        ("oom_kills", "CAST(i = 5 AS INTEGER)".into()),
        ("net_rx_bytes", "1000 * i".into()),
        ("net_tx_bytes", "500 * i".into()),
        ("cpu_request_cores", "0.5".into()),
        ("cpu_limit_cores", "CASE WHEN s = 0 THEN 1.0 END".into()),
        (
            "memory_request_bytes",
            format!("CAST({} AS BIGINT)", 128 * MIB),
        ),
        ("memory_limit_bytes", "CAST(NULL AS BIGINT)".into()),
    ]
}

/// Writes `columns` over the 20 rows of [`good_columns`] to `path` with
/// DuckDB.
fn write_parquet(path: &Path, columns: &[(&str, String)]) {
    let select = columns
        .iter()
        .map(|(name, expr)| format!("{expr} AS {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    let conn = duckdb::Connection::open_in_memory().expect("in-memory duckdb");
    conn.execute_batch(&format!(
        "COPY (SELECT {select} FROM range(10) r(i), range(2) t(s)) TO '{}' (FORMAT PARQUET)",
        path.display()
    ))
    .expect("writing the test Parquet file");
}

/// A store file with the schema created (and nothing else).
fn new_store(dir: &TempDir) -> PathBuf {
    let path = dir.path("upid.duckdb");
    drop(Store::open(&path).expect("create store"));
    path
}

fn sql(store: &Path) -> duckdb::Connection {
    duckdb::Connection::open(store).expect("open store with duckdb")
}

fn count(store: &Path, filter: &str) -> i64 {
    sql(store)
        .query_row(
            &format!("SELECT count(*) FROM usage WHERE {filter}"),
            [],
            |r| r.get(0),
        )
        .expect("count usage rows")
}

/// Every row of `usage` (without `source`) as text, sorted.
fn usage_rows(store: &Path) -> Vec<String> {
    let conn = sql(store);
    let mut stmt = conn
        .prepare(
            "SELECT CAST(u AS VARCHAR) FROM (SELECT * EXCLUDE (source) FROM usage) u ORDER BY 1",
        )
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_file_is_imported_with_its_values_and_keys() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    let file = dir.path("usage.parquet");
    write_parquet(&file, &good_columns());

    let summary = import_parquet(&store, &file, false).expect("import");
    assert_eq!(summary.rows_read, 20);
    assert_eq!(summary.rows_stored, 20);
    assert_eq!(summary.rows_skipped(), 0, "{summary}");
    assert_eq!(summary.series, 2);
    assert_eq!(summary.first_ts_unix_ns, Some(T0_NS));
    assert_eq!(summary.last_ts_unix_ns, Some(T0_NS + 9 * MIN_NS));

    assert_eq!(count(&store, "source = 'parquet'"), 20);
    assert_eq!(
        count(&store, &format!("series_key = '{}'", container_id())),
        10
    );
    assert_eq!(count(&store, "series_key = 'node-1/shop/web-1/app'"), 10);
    type Row = (
        f64,
        f64,
        u64,
        u64,
        u64,
        u64,
        Option<f64>,
        Option<u64>,
        String,
    );
    let row: Row = sql(&store)
        .query_row(
            &format!(
                "SELECT cpu_cores, interval_s, memory_working_set_bytes, memory_peak_bytes,
                        oom_kills, net_rx_bytes, cpu_limit_cores, memory_limit_bytes, workload
                 FROM usage WHERE series_key = '{}' AND ts_unix_ns = {}",
                container_id(),
                T0_NS + 5 * MIN_NS
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
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            },
        )
        .expect("row at minute 5");
    assert!((row.0 - 0.30).abs() < 1e-9, "cpu_cores {}", row.0);
    assert_eq!(row.1, 60.0);
    assert_eq!(row.2, (100 * MIB + 5) as u64);
    assert_eq!(row.3, (120 * MIB) as u64);
    assert_eq!(row.4, 1, "the OOM at minute 5");
    assert_eq!(row.5, 5000);
    assert_eq!(row.6, Some(1.0));
    assert_eq!(row.7, None, "NULL stays NULL");
    assert_eq!(row.8, "web");
}

#[test]
fn timestamps_with_time_zone_are_accepted() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    let file = dir.path("tz.parquet");
    let mut columns = good_columns();
    columns[0].1 = format!("CAST(make_timestamp({T0_US} + i * 60000000) AS TIMESTAMPTZ)");
    write_parquet(&file, &columns);

    let summary = import_parquet(&store, &file, false).expect("import");
    assert_eq!(summary.rows_stored, 20);
    assert_eq!(summary.first_ts_unix_ns, Some(T0_NS));
    assert_eq!(count(&store, &format!("ts_unix_ns = {T0_NS}")), 2);
}

#[test]
fn a_missing_column_is_named_and_nothing_is_written() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    let file = dir.path("missing.parquet");
    let columns: Vec<_> = good_columns()
        .into_iter()
        .filter(|(n, _)| *n != "cpu_limit_cores")
        .collect();
    write_parquet(&file, &columns);

    let err = import_parquet(&store, &file, false).expect_err("a column is missing");
    assert!(
        matches!(&err, ImportError::MissingColumns { missing, .. }
            if missing.len() == 1 && missing[0].starts_with("cpu_limit_cores (a number")),
        "{err}"
    );
    assert!(err.to_string().contains("cpu_limit_cores"), "{err}");
    assert_eq!(count(&store, "true"), 0);
}

#[test]
fn a_wrongly_typed_column_is_named_with_the_expected_type() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    let file = dir.path("typed.parquet");
    let mut columns = good_columns();
    columns[10].1 = "'a quarter'".into();
    write_parquet(&file, &columns);

    let err = import_parquet(&store, &file, false).expect_err("cpu_cores is text");
    let text = err.to_string();
    assert!(
        matches!(&err, ImportError::ColumnType { column, found, .. }
            if column == "cpu_cores" && found == "VARCHAR"),
        "{text}"
    );
    assert!(
        text.contains("cpu_cores is VARCHAR, expected a number"),
        "{text}"
    );
    assert_eq!(count(&store, "true"), 0);

    let mut columns = good_columns();
    columns[0].1 = format!("{T0_US} + i");
    write_parquet(&file, &columns);
    let err = import_parquet(&store, &file, false).expect_err("ts is an integer");
    assert!(
        err.to_string()
            .contains("ts is BIGINT, expected TIMESTAMP or TIMESTAMP WITH TIME ZONE"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_parquet_is_refused() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    let file = dir.path("garbage.parquet");
    std::fs::write(&file, b"ts,cpu_cores\n2025-01-01T00:00:00Z,0.5\n").expect("write");

    let err = import_parquet(&store, &file, false).expect_err("CSV is not Parquet");
    assert!(matches!(err, ImportError::NotParquet { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("garbage.parquet is not a readable Parquet file")
    );

    let err = import_parquet(&store, &dir.path("absent.parquet"), false).expect_err("no such file");
    assert!(matches!(err, ImportError::ReadFile { .. }), "{err}");
    assert_eq!(count(&store, "true"), 0);
}

#[test]
fn bad_rows_are_skipped_and_counted_by_reason() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    let file = dir.path("bad-rows.parquet");
    let mut columns = good_columns();
    // Series 1 only: minute 0 has no ts, minute 1 no interval, minute 2 a
    // negative CPU, minute 3 a NaN working set.
    columns[0].1 = format!(
        "CASE WHEN s = 1 AND i = 0 THEN NULL ELSE make_timestamp({T0_US} + i * 60000000) END"
    );
    columns[1].1 = "CASE WHEN s = 1 AND i = 1 THEN NULL ELSE 60.0 END".into();
    columns[10].1 = "CASE WHEN s = 1 AND i = 2 THEN -0.5 ELSE 0.25 END".into();
    columns[12].1 = "CASE WHEN s = 1 AND i = 3 THEN CAST('NaN' AS DOUBLE) ELSE 1e8 END".into();
    write_parquet(&file, &columns);

    let summary = import_parquet(&store, &file, false).expect("import");
    assert_eq!(summary.rows_read, 20);
    assert_eq!(summary.rows_stored, 16, "{summary}");
    assert_eq!(summary.skipped_for("ts is NULL"), 1, "{summary}");
    assert_eq!(summary.skipped_for("interval_s is NULL"), 1, "{summary}");
    assert_eq!(summary.skipped_for("cpu_cores is negative"), 1, "{summary}");
    assert_eq!(
        summary.skipped_for("memory_working_set_bytes is negative, NaN"),
        1,
        "{summary}"
    );
    assert_eq!(summary.rows_skipped(), 4);
    assert_eq!(count(&store, "series_key = 'node-1/shop/web-1/app'"), 6);
    let printed = summary.to_string();
    assert!(printed.contains("rows skipped:  4"), "{printed}");
}

#[test]
fn importing_the_same_file_again_stores_each_row_once() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    let file = dir.path("again.parquet");
    write_parquet(&file, &good_columns());

    import_parquet(&store, &file, false).expect("first import");
    let before = usage_rows(&store);
    let second = import_parquet(&store, &file, false).expect("second import");
    assert_eq!(second.rows_stored, 20);
    assert_eq!(second.rows_replaced, 20, "{second}");
    assert_eq!(usage_rows(&store), before);
    assert_eq!(count(&store, "true"), 20);

    let dry = import_parquet(&store, &file, true).expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(dry.rows_stored, 20);
    assert_eq!(usage_rows(&store), before, "a dry run writes nothing");
}

#[test]
fn agent_data_wins_over_imported_rows() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    // The agent measured the container of series 0 for minutes 3..=5.
    sql(&store)
        .execute_batch(&format!(
            "INSERT INTO usage (series_key, source, ts_unix_ns, interval_s, node, container_id,
                                namespace, pod, container, workload_kind, workload, image,
                                cpu_cores)
             SELECT '{id}', 'agent', {T0_NS} + i * {MIN_NS}, 60.0, 'node-1', '{id}', 'shop',
                    'web-0', 'app', 'Deployment', 'web', 'nginx:1.25', 2.0
             FROM range(3, 6) r(i)",
            id = container_id()
        ))
        .expect("agent rows");
    let file = dir.path("history.parquet");
    write_parquet(&file, &good_columns());

    let summary = import_parquet(&store, &file, false).expect("import");
    assert_eq!(summary.rows_stored, 17, "{summary}");
    assert_eq!(summary.skipped_for("covered by agent data"), 3, "{summary}");
    assert_eq!(count(&store, "source = 'agent' AND cpu_cores = 2.0"), 3);
    assert_eq!(
        count(
            &store,
            &format!("series_key = '{}' AND source = 'parquet'", container_id())
        ),
        7
    );
}

#[test]
fn export_then_import_gives_the_same_rows() {
    let dir = TempDir::new("usage-parquet");
    let source_store = new_store(&dir);
    let file = dir.path("in.parquet");
    write_parquet(&file, &good_columns());
    import_parquet(&source_store, &file, false).expect("import into the first store");
    // Agent rows are exported too (as rows like any other).
    sql(&source_store)
        .execute_batch(&format!(
            "INSERT INTO usage VALUES ('agentkey', 'agent', {}, 60.0, 'node-2', '', 'ops', 'job-1',
                 'run', 'Job', 'job', 'busybox', 1.5, NULL, 2048, 4096, 0, 10, 20, NULL, NULL,
                 NULL, 8192)",
            T0_NS + 30 * MIN_NS
        ))
        .expect("agent row");

    let out = dir.path("out.parquet");
    let exported =
        export_parquet(&source_store, &out, T0_NS, T0_NS + 3600 * 1_000_000_000).expect("export");
    assert_eq!(exported.rows, 21);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path(""))
        .expect("list dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let other = TempDir::new("usage-parquet");
    let copy = new_store(&other);
    let summary = import_parquet(&copy, &out, false).expect("import the export");
    assert_eq!(summary.rows_stored, 21, "{summary}");
    // The agent row has no container id, so its key becomes the names.
    let mut expected: Vec<String> = usage_rows(&source_store)
        .into_iter()
        .map(|r| r.replace("agentkey", "node-2/ops/job-1/run"))
        .collect();
    expected.sort();
    assert_eq!(usage_rows(&copy), expected);

    // Only the range asked for is written.
    let later = export_parquet(&source_store, &out, T0_NS + 5 * MIN_NS, T0_NS + 6 * MIN_NS)
        .expect("export one minute");
    assert_eq!(later.rows, 2);
    let err = export_parquet(&source_store, &out, T0_NS, T0_NS).expect_err("empty range");
    assert!(matches!(err, ExportError::Range(_)), "{err}");
}

#[test]
fn a_store_held_by_a_running_collector_is_named_as_such() {
    let dir = TempDir::new("usage-parquet");
    let store = new_store(&dir);
    let file = dir.path("usage.parquet");
    write_parquet(&file, &good_columns());

    let mut collector = Command::new(env!("CARGO_BIN_EXE_upid-collector"))
        .arg("serve")
        .arg("--store")
        .arg(&store)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start upid-collector serve");
    let stdout = collector.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("upid-collector: ready") {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(60));
    let outcome = ready.map(|()| {
        let lib = import_parquet(&store, &file, false);
        let cli = Command::new(env!("CARGO_BIN_EXE_upid-collector"))
            .args(["import", "parquet"])
            .arg(&file)
            .arg("--store")
            .arg(&store)
            .output()
            .expect("run upid-collector import");
        let export = export_parquet(&store, &dir.path("x.parquet"), 0, i64::MAX);
        (lib, cli, export)
    });
    let _ = collector.kill();
    let _ = collector.wait();
    let (lib, cli, export) = outcome.expect("the collector printed its ready line within 60 s");

    let err = lib.expect_err("the store is locked");
    assert!(matches!(err, ImportError::StoreInUse { .. }), "{err}");
    let expected = format!(
        "the store {} is in use by a running upid-collector; stop it, import, start it again",
        store.display()
    );
    assert_eq!(err.to_string(), expected);
    assert!(!cli.status.success());
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains(&expected), "{stderr}");
    let err = export.expect_err("the store is locked");
    assert!(matches!(err, ExportError::StoreInUse { .. }), "{err}");

    // Stopped, the same import goes through.
    assert_eq!(
        import_parquet(&store, &file, false)
            .expect("import after stop")
            .rows_stored,
        20
    );
}

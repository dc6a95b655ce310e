//! Parquet reports end to end: three days of usage history (the export
//! schema, written here with DuckDB) are imported by the real
//! `upid-collector import parquet`; a real `upid-collector serve` with
//! reports on writes the past days by itself at start (backfill), and the
//! real `upid export` downloads the same tables for a range. Every file is
//! then read on its own, and each table as a Hive-partitioned dataset, by
//! DuckDB's Python package, pyarrow and polars from PyPI
//! (tests/python/read_reports.py): row counts per day equal what was
//! imported, and a few values are the ones written. Also: no temporary
//! file is ever left visible, a restarted collector writes only what is
//! missing (and says why it has no updates table with update checks
//! off), and a garbage or empty range is INVALID_ARGUMENT.
//!
//! Skips loudly without python3 and the three packages (CI installs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use upid::wire::v1;
use upid_e2e::harness::grpc::{self, connect, query_client};
use upid_e2e::harness::{Collector, collector};
use upid_e2e::{bin, skip_unless};

const S: i64 = 1_000_000_000;
const MIN_NS: i64 = 60 * S;
const DAY_NS: i64 = 86_400 * S;
const MIB: i64 = 1 << 20;

/// The tables a day with usage rows gets (updates aside).
const USAGE_TABLES: [&str; 5] = ["samples", "containers", "rightsizing", "idle", "cost"];

fn python_readers_available() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb, pyarrow, polars"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

/// `YYYY-MM-DD` (UTC) of a time, as DuckDB formats it.
fn date(unix_ns: i64) -> String {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    conn.query_row(
        &format!(
            "SELECT strftime(make_timestamp({} // 1000), '%Y-%m-%d')",
            unix_ns
        ),
        [],
        |r| r.get(0),
    )
    .expect("format a date")
}

/// 1-minute history of two containers from `from` to `end` (the export
/// schema): `api-1` (workload api, 0.25 cores, 100 MiB, requesting 1 core
/// and 512 MiB) and `batch-1` (workload batch, 0.5 cores, 200 MiB).
fn write_history(file: &Path, from: i64, end: i64) {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let sql = format!(
        "COPY (
            SELECT make_timestamp(ts // 1000) AS ts, 60.0::DOUBLE AS interval_s,
                'node-1' AS node, s.id AS container_id, 'shop' AS namespace,
                s.id || '-pod' AS pod, 'app' AS container, 'Deployment' AS workload_kind,
                s.wl AS workload, 'registry.local/' || s.wl || ':1.0' AS image,
                s.cpu AS cpu_cores, NULL::DOUBLE AS cpu_throttled_ratio,
                s.mem AS memory_working_set_bytes, s.mem AS memory_peak_bytes,
                0::UBIGINT AS oom_kills, 300::UBIGINT AS net_rx_bytes, 300::UBIGINT AS net_tx_bytes,
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

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn upid(server: &str) -> Command {
    let mut cmd = Command::new(bin("upid"));
    for var in ["UPID_SERVER", "UPID_CA", "UPID_TOKEN_FILE", "UPID_TIMEOUT"] {
        cmd.env_remove(var);
    }
    cmd.args(["--server", server]);
    cmd
}

/// Every file under `dir` (hidden ones too), relative, sorted.
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

fn part(table: &str, day: &str) -> String {
    format!("{table}/date={day}/part-0.parquet")
}

/// Starts `serve` on `store` with `config` (YAML) and waits until its
/// first report run has finished without a failure.
fn start_with_reports(dir: &Path, store: &Path, name: &str, config: &str) -> Collector {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, config).expect("write the config");
    let c = collector::serve(store)
        .args(["--config", file.to_str().expect("utf-8 path")])
        .start();
    c.wait_for_metrics(
        "a report run without failure",
        Duration::from_secs(120),
        |m| {
            m.value("upid_collector_report_failures_total", &[]) > 0.0
                || m.value("upid_collector_report_last_success_timestamp_seconds", &[]) > 0.0
        },
    );
    let m = c.scrape();
    assert_eq!(
        m.value("upid_collector_report_failures_total", &[]),
        0.0,
        "a report failed:\n{}",
        c.proc.output()
    );
    c
}

/// What one reports directory must hold, for the Python readers.
struct Expected {
    dir: PathBuf,
    files: BTreeMap<String, u64>,
    samples_per_day: BTreeMap<String, u64>,
    values: Vec<serde_json::Value>,
}

impl Expected {
    fn json(&self) -> serde_json::Value {
        let mut tables: Vec<&str> = self
            .files
            .keys()
            .filter_map(|f| f.split('/').next())
            .collect();
        tables.dedup();
        json!({
            "dir": self.dir,
            "files": self.files,
            "samples_per_day": self.samples_per_day,
            "tables": tables,
            "values": self.values,
        })
    }
}

#[test]
fn reports_are_written_by_the_collector_and_by_upid_export_and_read_by_duckdb_pyarrow_and_polars() {
    if skip_unless(
        python_readers_available(),
        "python3 with duckdb, pyarrow and polars is needed (python3 -m pip install duckdb pyarrow polars)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let store = dir.join("store/upid.duckdb");
    std::fs::create_dir_all(store.parent().expect("store dir")).expect("mkdir");

    // Three whole days before today, and today up to the current minute.
    let now = now_ns();
    let today = now.div_euclid(DAY_NS) * DAY_NS;
    let first = today - 3 * DAY_NS;
    let end = now / MIN_NS * MIN_NS;
    let history = dir.join("history.parquet");
    write_history(&history, first, end);
    let import = run(Command::new(bin("upid-collector")).args([
        "import",
        "parquet",
        history.to_str().expect("utf-8 path"),
        "--store",
        store.to_str().expect("utf-8 path"),
    ]));
    let rows_today = (2 * (end - today) / MIN_NS) as u64;
    let summary = String::from_utf8_lossy(&import.stdout);
    assert!(
        summary.contains(&(3 * 2 * 1440 + rows_today).to_string()),
        "{summary}"
    );
    let days: Vec<String> = (0..3).map(|d| date(first + d * DAY_NS)).collect();
    let yesterday = days[2].clone();

    // The periodic reports: written at start for the days that ended.
    let reports = dir.join("reports");
    let config = format!(
        "reports:\n  dir: {}\n  delay_s: 0\n  backfill_days: 5\n",
        reports.display()
    );
    let c = start_with_reports(dir, &store, "reports", &config);
    let m = c.scrape();
    let mut periodic = Expected {
        dir: reports.clone(),
        files: BTreeMap::new(),
        samples_per_day: BTreeMap::new(),
        values: Vec::new(),
    };
    for day in &days {
        for (table, rows) in USAGE_TABLES.iter().zip([2 * 1440, 2, 2, 2, 2]) {
            periodic.files.insert(part(table, day), rows);
        }
        periodic.samples_per_day.insert(day.clone(), 2 * 1440);
    }
    // Update decisions (none: nothing runs now) go to yesterday only.
    periodic.files.insert(part("updates", &yesterday), 0);
    assert_eq!(
        tree(&reports),
        periodic.files.keys().cloned().collect::<Vec<_>>(),
        "the Hive layout, and no temporary file left"
    );
    assert_eq!(
        m.value("upid_collector_reports_written_total", &[]),
        periodic.files.len() as f64
    );
    let noon = first + DAY_NS + DAY_NS / 2;
    periodic.values = vec![
        json!({"file": part("samples", &days[1]), "container_id": "api-1",
               "ts_unix_s": noon / S, "cpu_cores": 0.25, "memory_working_set_bytes": 100 * MIB}),
        json!({"file": part("samples", &days[0]), "container_id": "batch-1",
               "ts_unix_s": first / S, "cpu_cores": 0.5, "memory_working_set_bytes": 200 * MIB}),
        // A whole day of api on its requests (1 core, 0.5 GiB) at
        // OpenCost's default prices.
        json!({"file": part("cost", &days[1]), "workload": "api",
               "cost": 24.0 * (1.0 * 0.031_611 + 0.5 * 0.004_237)}),
    ];

    // A garbage or empty range is INVALID_ARGUMENT, saying what to give.
    let url = c.url();
    grpc::runtime().block_on(async {
        let channel = connect(&url, None).await.expect("connect");
        let mut client = query_client(channel, None);
        for (request, needle) in [
            (v1::ExportRequest::default(), "since_unix_ns is required"),
            (
                v1::ExportRequest {
                    since_unix_ns: today,
                    until_unix_ns: today - S,
                    tables: vec![],
                },
                "the range is empty",
            ),
            (
                v1::ExportRequest {
                    since_unix_ns: today,
                    until_unix_ns: 0,
                    tables: vec!["usage".into()],
                },
                "unknown table \"usage\"",
            ),
        ] {
            let status = client
                .export(request)
                .await
                .err()
                .unwrap_or_else(|| panic!("{needle}: the collector accepted it"));
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains(needle), "{status:?}");
        }
    });
    let garbage = upid(&url)
        .args(["export", "--since", "last tuesday", "--out"])
        .arg(dir.join("x"))
        .output()
        .expect("run upid");
    assert!(!garbage.status.success());
    assert!(
        String::from_utf8_lossy(&garbage.stderr).contains("is neither a duration"),
        "{garbage:?}"
    );

    // On demand: from the first day to now, into a fresh directory.
    let out_dir = dir.join("export");
    let mut export_cmd = upid(&url);
    export_cmd
        .args(["export", "--since", &days[0], "--out"])
        .arg(&out_dir);
    let out = run(&mut export_cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut exported = Expected {
        dir: out_dir.clone(),
        files: periodic.files.clone(),
        samples_per_day: periodic.samples_per_day.clone(),
        values: periodic.values.clone(),
    };
    exported.files.remove(&part("updates", &yesterday));
    let today_date = date(today);
    if rows_today > 0 {
        for (table, rows) in USAGE_TABLES.iter().zip([rows_today, 2, 2, 2, 2]) {
            exported.files.insert(part(table, &today_date), rows);
        }
        exported
            .samples_per_day
            .insert(today_date.clone(), rows_today);
    }
    exported.files.insert(part("updates", &today_date), 0);
    assert_eq!(
        tree(&out_dir),
        exported.files.keys().cloned().collect::<Vec<_>>()
    );
    assert!(
        stdout.starts_with(&format!("wrote {} files (", exported.files.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} sample rows", 3 * 2 * 1440 + rows_today)),
        "{stdout}"
    );
    assert_eq!(stderr, "", "no terminal: no progress bar, no notes");
    // The scratch directory beside the store is gone with the stream.
    let beside_store = tree(store.parent().expect("store dir"));
    assert!(
        beside_store.iter().all(|f| !f.contains(".upid-export-")),
        "{beside_store:?}"
    );

    // The same export again replaces each file: same files, same rows.
    let again = run(&mut export_cmd);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).lines().count(),
        1,
        "{again:?}"
    );
    assert_eq!(
        tree(&out_dir),
        exported.files.keys().cloned().collect::<Vec<_>>()
    );

    // JSON lists every file with its rows and checksum.
    let json_out = run(upid(&url)
        .args([
            "export", "--since", &days[1], "--until", &days[2], "--tables", "samples", "-o",
            "json", "--out",
        ])
        .arg(dir.join("one-day")));
    let v: serde_json::Value =
        serde_json::from_slice(&json_out.stdout).expect("upid export -o json");
    assert_eq!(v["files"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert_eq!(v["files"][0]["path"], part("samples", &days[1]));
    assert_eq!(v["files"][0]["rows"], 2 * 1440);
    assert_eq!(v["files"][0]["sha256"].as_str().map(str::len), Some(64));

    // Read everything with DuckDB, pyarrow and polars.
    let expectations = dir.join("expectations.json");
    std::fs::write(
        &expectations,
        json!({"dirs": [periodic.json(), exported.json()]}).to_string(),
    )
    .expect("write expectations");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/read_reports.py");
    let read = run(Command::new("python3").arg(&script).arg(&expectations));
    let said = String::from_utf8_lossy(&read.stdout);
    assert_eq!(said.lines().last(), Some("ok"), "{said}");
    eprintln!("{said}");
    c.stop();

    // A restarted collector writes only what is missing: yesterday's cost
    // file is gone, so yesterday is written again (its other files
    // replaced); the days before are left as they were. With update
    // checks off it writes no updates file and says why.
    let before: Vec<SystemTime> = USAGE_TABLES
        .iter()
        .map(|t| modified(&reports.join(part(t, &days[0]))))
        .collect();
    std::fs::remove_file(reports.join(part("cost", &yesterday))).expect("remove a file");
    let updates_before = modified(&reports.join(part("updates", &yesterday)));
    let c = start_with_reports(
        dir,
        &store,
        "restart",
        &format!("{config}updates:\n  enabled: false\n"),
    );
    assert_eq!(
        c.scrape()
            .value("upid_collector_reports_written_total", &[]),
        USAGE_TABLES.len() as f64
    );
    assert_eq!(
        tree(&reports),
        periodic.files.keys().cloned().collect::<Vec<_>>()
    );
    let after: Vec<SystemTime> = USAGE_TABLES
        .iter()
        .map(|t| modified(&reports.join(part(t, &days[0]))))
        .collect();
    assert_eq!(before, after, "days already written are not rewritten");
    assert_eq!(
        updates_before,
        modified(&reports.join(part("updates", &yesterday)))
    );
    assert!(
        c.proc.count_lines_with("update checks are off") > 0,
        "{}",
        c.proc.output()
    );
    c.stop();
}

fn modified(file: &Path) -> SystemTime {
    std::fs::metadata(file)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

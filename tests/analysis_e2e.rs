//! Day one, end to end: usage history written to a Parquet file (the
//! export schema) is imported by the real `upid-collector import parquet`,
//! a real `upid-collector serve` analyses it, and the real `upid` prints
//! rightsizing, idle workloads, cost and the analyze summary. The history
//! ends at the current minute, so the collector's own clock is "now".
//!
//! The answers are worked out by hand below (see docs/analysis.md for the
//! rules): a steady 0.25-core service asking for a whole core, and a
//! service that has been quiet for four days; then the hard cases, each
//! checked in what `upid rightsize` prints: daily spikes between samples,
//! heavy throttling, an OOM kill, two hours of history, and a workload
//! whose container is replaced every six hours.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use upid_e2e::bin;
use upid_e2e::harness::collector;

const MIN_NS: i64 = 60_000_000_000;
const DAY_NS: i64 = 1440 * MIN_NS;

fn now_minute_ns() -> i64 {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64;
    ns / MIN_NS * MIN_NS
}

/// Four days of 1-minute history ending at `end`: `api` (two replicas at
/// 0.25 cores and 100 MiB, requesting 1 core and 512 MiB) and `forgotten`
/// (2m CPU, 10 B/s, requesting 0.5 cores and 256 MiB).
fn write_history(file: &Path, end: i64) {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let from = end - 4 * DAY_NS;
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
                (VALUES ('api-1', 'api', 0.25, 104857600::UBIGINT, 1.0, 536870912::UBIGINT),
                        ('api-2', 'api', 0.25, 104857600::UBIGINT, 1.0, 536870912::UBIGINT),
                        ('old-1', 'forgotten', 0.002, 104857600::UBIGINT, 0.5, 268435456::UBIGINT))
                    s(id, wl, cpu, mem, req_cpu, req_mem)
        ) TO '{}' (FORMAT PARQUET)",
        file.display()
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

fn upid(server: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(bin("upid"));
    for var in ["UPID_SERVER", "UPID_CA", "UPID_TOKEN_FILE", "UPID_TIMEOUT"] {
        cmd.env_remove(var);
    }
    cmd.args(["--server", server]).args(args);
    String::from_utf8_lossy(&run(&mut cmd).stdout).into_owned()
}

fn upid_json(server: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let out = upid(server, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("upid {args:?}: not JSON ({e}):\n{out}"))
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

#[test]
fn imported_history_is_rightsized_found_idle_and_costed_through_upid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("upid.duckdb");
    let history = dir.path().join("history.parquet");
    let end = now_minute_ns();
    write_history(&history, end);

    let import = run(Command::new(bin("upid-collector")).args([
        "import",
        "parquet",
        history.to_str().expect("utf-8 path"),
        "--store",
        store.to_str().expect("utf-8 path"),
    ]));
    let summary = String::from_utf8_lossy(&import.stdout);
    assert!(summary.contains(&(3 * 4 * 1440).to_string()), "{summary}");

    let c = collector::serve(&store).start();
    let server = c.url();

    // Rightsizing: p90 of 0.25 cores + 15 % (one histogram bucket up at
    // most: 0.25 × 1.05 + 0.01), memory p90 of 100 MiB daily peaks + 15 %.
    let recs = upid_json(&server, &["rightsize"]);
    let list = recs.as_array().expect("a list of recommendations");
    let api = list
        .iter()
        .find(|r| r["workload"] == "api")
        .unwrap_or_else(|| panic!("no api row in {recs:#}"));
    assert_eq!(api["namespace"], "shop");
    assert_eq!(api["container"], "app");
    assert_eq!(api["replicas"], 2);
    assert_eq!(api["current"]["cpu_request_millicores"], 1000);
    assert_eq!(api["current"]["memory_request_bytes"], 536_870_912u64);
    let cpu = f64_of(api, "cpu_request_millicores");
    assert!((288.0..=314.0).contains(&cpu), "cpu request {cpu}");
    let mem = f64_of(api, "memory_request_bytes") / 1_048_576.0;
    assert!((115.0..=132.0).contains(&mem), "memory request {mem} MiB");
    assert!(api["cpu_limit_millicores"].is_null(), "{api:#}");
    assert_eq!(api["samples"], 2 * 4 * 1440);
    assert_eq!(api["window_s"], 4 * 86_400 - 60);
    assert!(f64_of(api, "confidence") > 0.5);
    assert!(
        api["reason"].as_str().unwrap_or("").contains("CPU p90"),
        "{api:#}"
    );
    assert!(f64_of(api, "monthly_saving") > 30.0, "{api:#}");

    // Idle: `forgotten` never reached 20m CPU or 1 KiB/s in 4 days.
    let idle = upid_json(&server, &["idle"]);
    let idle = idle.as_array().expect("a list of idle workloads");
    assert_eq!(idle.len(), 1, "{idle:#?}");
    assert_eq!(idle[0]["workload"], "forgotten");
    // Charged on its request: 0.5 cores and 0.25 GiB at OpenCost's prices.
    let monthly = 730.0 * (0.5 * 0.031_611 + 0.25 * 0.004_237);
    assert!(
        (f64_of(&idle[0], "monthly_cost") - monthly).abs() < 0.01,
        "{:#}",
        idle[0]
    );

    // Cost by namespace over the last day: everything is in `shop`.
    let cost = upid_json(&server, &["cost", "--by", "namespace", "--window", "1d"]);
    let lines = cost["lines"].as_array().expect("cost lines");
    assert_eq!(lines.len(), 1, "{cost:#}");
    let hourly = 2.0 * (1.0 * 0.031_611 + 0.5 * 0.004_237) + (0.5 * 0.031_611 + 0.25 * 0.004_237);
    assert!(
        (f64_of(&lines[0], "cost") - 24.0 * hourly).abs() < 0.01,
        "{cost:#}"
    );

    // The one-screen summary names what matters.
    let screen = upid(&server, &["analyze", "cluster"]);
    for section in ["Cost", "Top savings", "Idle workloads", "forgotten", "api"] {
        assert!(screen.contains(section), "no {section:?} in:\n{screen}");
    }
    c.stop();
}

/// A recommended CPU request from a percentile known to lie in [`v`,
/// `v` × 1.05 + 0.01] (one VPA CPU bucket above the truth) × `factor`,
/// rounded up to millicores.
fn cpu_range(v: f64, factor: f64) -> std::ops::RangeInclusive<f64> {
    (v * factor * 1000.0 - 1.0)..=((v * 1.05 + 0.01) * factor * 1000.0 + 1.0)
}

/// The hard cases of docs/analysis.md, four days ending at `end` (the
/// export schema; workloads named after their case):
/// - `spiky`: 0.1 cores, 200 MiB working set, but a per-tick peak of
///   800 MiB for one minute every day at 12:00;
/// - `encoder`: pegged at its 0.5-core limit, throttled in 40 % of periods;
/// - `killed`: 200 MiB under a 256 MiB limit, OOM-killed once, 2 days ago;
/// - `newcomer`: two hours of history only;
/// - `flaky`: a new container id every 6 hours (restarts), 0.3 cores.
fn write_hard_cases(file: &Path, end: i64) {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let from = end - 4 * DAY_NS;
    let killed_at = (end - 2 * DAY_NS) / MIN_NS * MIN_NS;
    let row = |id: &str,
               wl: &str,
               cpu: &str,
               thr: &str,
               ws: &str,
               peak: &str,
               oom: &str,
               lim: &str,
               since: i64| {
        format!(
            "SELECT make_timestamp(ts // 1000) AS ts, 60.0::DOUBLE AS interval_s,
                'node-1' AS node, {id} AS container_id, 'cases' AS namespace,
                {id} || '-pod' AS pod, 'app' AS container, 'Deployment' AS workload_kind,
                '{wl}' AS workload, 'registry.local/{wl}:1.0' AS image,
                ({cpu})::DOUBLE AS cpu_cores, ({thr})::DOUBLE AS cpu_throttled_ratio,
                ({ws})::UBIGINT AS memory_working_set_bytes, ({peak})::UBIGINT AS memory_peak_bytes,
                ({oom})::UBIGINT AS oom_kills, 300::UBIGINT AS net_rx_bytes, 300::UBIGINT AS net_tx_bytes,
                NULL::DOUBLE AS cpu_request_cores, ({lim})::DOUBLE AS cpu_limit_cores,
                NULL::UBIGINT AS memory_request_bytes,
                (CASE WHEN '{wl}' = 'killed' THEN 268435456 ELSE NULL END)::UBIGINT AS memory_limit_bytes
            FROM range({since}::BIGINT, {end}::BIGINT, {MIN_NS}::BIGINT) t(ts)"
        )
    };
    let mib = |n: u64| (n * 1_048_576).to_string();
    let parts = [
        row(
            "'spiky-1'",
            "spiky",
            "0.1",
            "NULL",
            &mib(200),
            &format!(
                "CASE WHEN ts % {DAY_NS} = {} THEN {} ELSE {} END",
                DAY_NS / 2,
                mib(800),
                mib(200)
            ),
            "0",
            "NULL",
            from,
        ),
        row(
            "'enc-1'",
            "encoder",
            "0.5",
            "0.4",
            &mib(64),
            &mib(64),
            "0",
            "0.5",
            from,
        ),
        row(
            "'killed-1'",
            "killed",
            "0.05",
            "NULL",
            &mib(200),
            &mib(200),
            &format!("CASE WHEN ts = {killed_at} THEN 1 ELSE 0 END"),
            "NULL",
            from,
        ),
        row(
            "'new-1'",
            "newcomer",
            "0.3",
            "NULL",
            &mib(50),
            &mib(50),
            "0",
            "NULL",
            end - 120 * MIN_NS,
        ),
        row(
            &format!("'flaky-' || ((ts - {from}) // {})", 6 * 60 * MIN_NS),
            "flaky",
            "0.3",
            "NULL",
            &mib(64),
            &mib(64),
            "0",
            "NULL",
            from,
        ),
    ];
    let sql = format!(
        "COPY ({}) TO '{}' (FORMAT PARQUET)",
        parts.join(" UNION ALL "),
        file.display()
    );
    conn.execute_batch(&sql).expect("write the Parquet history");
}

#[test]
fn the_hard_cases_reach_upid_as_worked_out_by_hand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("upid.duckdb");
    let history = dir.path().join("cases.parquet");
    let end = now_minute_ns();
    write_hard_cases(&history, end);
    run(Command::new(bin("upid-collector")).args([
        "import",
        "parquet",
        history.to_str().expect("utf-8 path"),
        "--store",
        store.to_str().expect("utf-8 path"),
    ]));
    let c = collector::serve(&store).start();
    let server = c.url();
    let recs = upid_json(&server, &["rightsize", "-n", "cases"]);
    let rec = |wl: &str| {
        recs.as_array()
            .and_then(|a| a.iter().find(|r| r["workload"] == wl))
            .cloned()
            .unwrap_or_else(|| panic!("no {wl} row in {recs:#}"))
    };

    // Spikes between samples: every daily peak is 800 MiB, so the memory
    // request covers it (p90 of daily peaks, one bucket of 5 % + 10 MB at
    // most, + 15 %), not the 200 MiB working set.
    let spiky = rec("spiky");
    let mem = f64_of(&spiky, "memory_request_bytes") / 1_048_576.0;
    let hi = (800.0 * 1.05 + 1e7 / 1_048_576.0) * 1.15;
    assert!(
        (920.0..=hi + 1.0).contains(&mem),
        "spiky memory {mem} MiB: {spiky:#}"
    );
    assert_eq!(
        spiky["evidence"]["memory_max_peak_bytes"],
        800u64 * 1_048_576
    );

    // Throttling: p95 of 0.5 cores × (1 + 0.4) × 1.15.
    let enc = rec("encoder");
    let cpu = f64_of(&enc, "cpu_request_millicores");
    assert!(
        cpu_range(0.5, 1.4 * 1.15).contains(&cpu),
        "encoder cpu {cpu}: {enc:#}"
    );
    assert_eq!(
        enc["evidence"]["cpu_request_driver"], "throttling",
        "{enc:#}"
    );
    assert!(
        enc["reason"]
            .as_str()
            .unwrap_or("")
            .contains("throttled in 40%"),
        "{enc:#}"
    );

    // The OOM kill: killed at its 256 MiB limit, so memory goes to at
    // least max(256 + 100, 256 × 1.2) = 356 MiB; the kill is evidence.
    let killed = rec("killed");
    assert_eq!(killed["evidence"]["oom_kills"], 1, "{killed:#}");
    assert!(
        f64_of(&killed, "memory_request_bytes") >= 356.0 * 1_048_576.0,
        "{killed:#}"
    );
    // The bump is max(256 + 100, 256 × 1.2) = 356 MiB exactly; it becomes
    // the kill day's peak (so the request driver stays the daily-peak
    // percentile) and sets the limit.
    assert_eq!(
        killed["evidence"]["oom_bump_bytes"],
        356u64 * 1_048_576,
        "{killed:#}"
    );
    assert_eq!(
        killed["evidence"]["memory_limit_driver"], "oom",
        "{killed:#}"
    );
    assert!(
        killed["reason"]
            .as_str()
            .unwrap_or("")
            .contains("OOM-killed 1× at 256Mi"),
        "{killed:#}"
    );

    // Two hours of history: no numbers, says why.
    let young = rec("newcomer");
    assert!(young["cpu_request_millicores"].is_null(), "{young:#}");
    assert_eq!(young["samples"], 120);
    assert!(
        young["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("not enough data"),
        "{young:#}"
    );

    // Restarts: 16 container ids of 6 hours are one workload, one
    // running replica, 0.3 cores + 15 %.
    let flaky = rec("flaky");
    assert_eq!(flaky["replicas"], 1, "{flaky:#}");
    assert!(
        flaky["evidence"]["restarts"].as_u64().unwrap_or(0) >= 15,
        "{flaky:#}"
    );
    let cpu = f64_of(&flaky, "cpu_request_millicores");
    assert!(
        cpu_range(0.3, 1.15).contains(&cpu),
        "flaky cpu {cpu}: {flaky:#}"
    );

    // The table people read says the same.
    let table = upid(&server, &["rightsize", "-n", "cases"]);
    for wl in ["spiky", "encoder", "killed", "newcomer", "flaky"] {
        assert!(table.contains(wl), "no {wl} in:\n{table}");
    }
    assert!(table.contains("not enough data"), "{table}");
    c.stop();
}

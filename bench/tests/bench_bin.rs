//! The `upid-bench` binary runs: a small `analysis` benchmark (40
//! containers, 4 days) ends with a JSON report holding its goal. Timing
//! goals are judged in bench/RESULTS.md, never here.

use std::process::Command;

#[test]
fn analysis_benchmark_runs_and_reports_its_goal() {
    let out = Command::new(env!("CARGO_BIN_EXE_upid-bench"))
        .args([
            "analysis",
            "--containers",
            "40",
            "--days",
            "4",
            "--runs",
            "1",
            "--json",
        ])
        .output()
        .expect("run upid-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "upid-bench failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");
    assert_eq!(report["rows"], 40 * 4 * 1440);
    assert_eq!(report["goals"][0]["name"], "analysis_wall_median");
    // 8 workloads of 5 replicas: each gets a recommendation (4 days of
    // history is enough); a tenth of the fleet's workloads (here wl-0) use
    // 2m CPU and 2 B/s, idle for longer than the 3-day window.
    assert_eq!(report["recommendations"], 8);
    assert_eq!(report["idle_workloads"], 1);
}

#[test]
fn updates_benchmark_runs_and_reports_its_goal() {
    let out = Command::new(env!("CARGO_BIN_EXE_upid-bench"))
        .args([
            "updates", "--images", "60", "--tags", "50", "--runs", "1", "--json",
        ])
        .output()
        .expect("run upid-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "upid-bench failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");
    assert_eq!(report["images"], 60);
    assert_eq!(report["goals"][0]["name"], "updates_cpu_median");
    // Every image got a decision, and the mix of policies produced both
    // approvals and non-approvals.
    let verdicts = report["verdicts"].as_object().expect("verdict counts");
    let total: u64 = verdicts
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(total, 60, "{verdicts:?}");
    assert!(
        verdicts
            .get("approve")
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
            > 0,
        "{verdicts:?}"
    );
    assert!(verdicts.len() >= 2, "{verdicts:?}");
}

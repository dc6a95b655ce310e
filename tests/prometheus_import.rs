//! `upid-collector import prometheus` against a real Prometheus (Debian's
//! `prometheus` package): synthetic cAdvisor and kube-state-metrics series
//! with known values are written as OpenMetrics text, turned into TSDB
//! blocks by `promtool tsdb create-blocks-from openmetrics`, served by a
//! real `prometheus` on loopback, and imported by the real binary; the
//! `usage` rows are then read back from the store with SQL, and analysed by
//! a real `upid-collector serve` over that store through `upid rightsize`
//! and `upid cost` (values worked out by hand).
//!
//! Skips loudly without `prometheus`/`promtool`; with `CI=true` their
//! absence fails (CI installs them, see .ci/run).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use upid_e2e::harness::collector::http_get;
use upid_e2e::harness::{Proc, free_port, serve, store};
use upid_e2e::{bin, have, run, skip_unless, wait_for};

const MIB: u64 = 1 << 20;
const NS: i64 = 1_000_000_000;
/// Seconds between synthetic scrapes.
const SCRAPE_S: i64 = 30;
/// Length of the synthetic history.
const HISTORY_S: i64 = 24 * 3600;

const HEX_A: &str = "a1a2a3a4a5a6a7a8a9a0b1b2b3b4b5b6b7b8b9b0c1c2c3c4c5c6c7c8c9c0d1d2";
const HEX_PAUSE: &str = "e1e2e3e4e5e6e7e8e9e0f1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6a7a8a9a0b1b2";
const HEX_C: &str = "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c";
const POD_A: &str = "web-7d9f8b6c5d-x2x4z";

/// The synthetic history: what each series holds at time `t`.
struct History {
    /// First sample, Unix seconds.
    base: i64,
    /// When container B is OOM-killed (between two scrapes).
    oom_at: i64,
}

impl History {
    fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (0..=HISTORY_S / SCRAPE_S).map(move |i| self.base + i * SCRAPE_S)
    }

    /// Memory of B: 200 MiB with one 300 MiB reading 6 hours in.
    fn memory_b(&self, t: i64) -> u64 {
        if t == self.base + 6 * 3600 {
            300 * MIB
        } else {
            200 * MIB
        }
    }

    /// OpenMetrics text of every series, one family at a time, `# EOF` last.
    fn openmetrics(&self) -> String {
        let a_id = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1111_2222.slice/cri-containerd-{HEX_A}.scope"
        );
        let a = format!(
            r#"container="web",id="{a_id}",image="registry.example/web:1.4.2",instance="node-1:10250",job="kubelet",namespace="shop",pod="{POD_A}""#
        );
        // No container id in its cgroup path: keyed by names.
        let b = r#"container="db",id="/kubepods/burstable/poddb0/db",image="registry.example/db:15",instance="10.0.0.2:10250",node="node-2",job="kubelet",namespace="data",pod="db-0""#;
        let c = format!(
            r#"container="solo",id="/kubepods/besteffort/pod33/{HEX_C}",image="busybox:1.36",instance="node-1:10250",job="kubelet",namespace="ops",pod="solo""#
        );
        // Network of A's pod, reported on the sandbox and on the pod cgroup
        // (the same namespace twice: must not be added up).
        let net_sandbox = format!(
            r#"container="POD",id="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1111_2222.slice/cri-containerd-{HEX_PAUSE}.scope",interface="eth0",instance="node-1:10250",namespace="shop",pod="{POD_A}""#
        );
        let net_pod = format!(
            r#"container="",id="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1111_2222.slice",interface="eth0",instance="node-1:10250",namespace="shop",pod="{POD_A}""#
        );
        let ksm_a = format!(r#"container="web",namespace="shop",pod="{POD_A}""#);
        let ksm_b = r#"container="db",namespace="data",pod="db-0""#;

        let mut text = String::new();
        let times: Vec<i64> = self.times().collect();
        let mut family = |name: &str, kind: &str, series: &[Values<'_>]| {
            write_family(&mut text, &times, name, kind, series);
        };
        let base = self.base;
        let oom_at = self.oom_at;
        let since = move |t: i64| (t - base) as f64;
        family(
            "container_cpu_usage_seconds",
            "counter",
            &[
                (a.clone(), &|t| Some(1000.0 + 0.25 * since(t))),
                (b.to_owned(), &|t| Some(0.5 * since(t))),
                (c.clone(), &|t| Some(0.05 * since(t))),
            ],
        );
        family(
            "container_memory_working_set_bytes",
            "gauge",
            &[
                (a.clone(), &|_| Some((100 * MIB) as f64)),
                (b.to_owned(), &|t| Some(self.memory_b(t) as f64)),
                (c.clone(), &|_| Some((10 * MIB) as f64)),
            ],
        );
        family(
            "container_cpu_cfs_periods",
            "counter",
            &[(a.clone(), &|t| Some(10.0 * since(t)))],
        );
        family(
            "container_cpu_cfs_throttled_periods",
            "counter",
            &[(a.clone(), &|t| Some(since(t)))],
        );
        family(
            "container_oom_events",
            "counter",
            &[
                (a.clone(), &|_| Some(0.0)),
                (b.to_owned(), &|t| Some(if t >= oom_at { 1.0 } else { 0.0 })),
            ],
        );
        family(
            "container_network_receive_bytes",
            "counter",
            &[
                (net_sandbox.clone(), &|t| Some(1000.0 * since(t))),
                (net_pod.clone(), &|t| Some(1000.0 * since(t))),
            ],
        );
        family(
            "container_network_transmit_bytes",
            "counter",
            &[
                (net_sandbox.clone(), &|t| Some(500.0 * since(t))),
                (net_pod.clone(), &|t| Some(500.0 * since(t))),
            ],
        );
        family(
            "kube_pod_container_resource_requests",
            "gauge",
            &[
                (format!(r#"{ksm_a},resource="cpu",unit="core""#), &|_| {
                    Some(0.5)
                }),
                (format!(r#"{ksm_a},resource="memory",unit="byte""#), &|_| {
                    Some((128 * MIB) as f64)
                }),
            ],
        );
        family(
            "kube_pod_container_resource_limits",
            "gauge",
            &[
                (format!(r#"{ksm_a},resource="cpu",unit="core""#), &|_| {
                    Some(1.0)
                }),
                (format!(r#"{ksm_a},resource="memory",unit="byte""#), &|_| {
                    Some((256 * MIB) as f64)
                }),
            ],
        );
        family(
            "kube_pod_owner",
            "gauge",
            &[
                (
                    format!(
                        r#"namespace="shop",owner_is_controller="true",owner_kind="ReplicaSet",owner_name="web-7d9f8b6c5d",pod="{POD_A}""#
                    ),
                    &|_| Some(1.0),
                ),
                (
                    r#"namespace="data",owner_is_controller="true",owner_kind="StatefulSet",owner_name="db",pod="db-0""#.to_owned(),
                    &|_| Some(1.0),
                ),
                (
                    r#"namespace="ops",owner_is_controller="<none>",owner_kind="<none>",owner_name="<none>",pod="solo""#.to_owned(),
                    &|_| Some(1.0),
                ),
            ],
        );
        // kube-state-metrics sees the same kill: a restart, and the last
        // termination reason from then on.
        family(
            "kube_pod_container_status_restarts",
            "counter",
            &[(ksm_b.to_owned(), &|t| {
                Some(if t >= oom_at { 1.0 } else { 0.0 })
            })],
        );
        family(
            "kube_pod_container_status_last_terminated_reason",
            "gauge",
            &[(format!(r#"{ksm_b},reason="OOMKilled""#), &|t| {
                (t >= oom_at).then_some(1.0)
            })],
        );
        text.push_str("# EOF\n");
        text
    }
}

/// One series of a family: its labels and its value at each time.
type Values<'a> = (String, &'a dyn Fn(i64) -> Option<f64>);

/// Appends a metric family's samples, series after series, in time order.
fn write_family(text: &mut String, times: &[i64], name: &str, kind: &str, series: &[Values<'_>]) {
    let _ = writeln!(text, "# TYPE {name} {kind}");
    let sample = if kind == "counter" {
        format!("{name}_total")
    } else {
        name.to_owned()
    };
    for (labels, value) in series {
        for &t in times {
            if let Some(v) = value(t) {
                let _ = writeln!(text, "{sample}{{{labels}}} {v} {t}");
            }
        }
    }
}

/// One `usage` row, as read back.
#[derive(Debug)]
struct Row {
    ts_unix_ns: i64,
    node: String,
    container_id: String,
    workload_kind: String,
    workload: String,
    image: String,
    cpu_cores: Option<f64>,
    cpu_throttled_ratio: Option<f64>,
    memory_working_set_bytes: Option<u64>,
    memory_peak_bytes: Option<u64>,
    oom_kills: Option<u64>,
    net_rx_bytes: Option<u64>,
    net_tx_bytes: Option<u64>,
    cpu_request_cores: Option<f64>,
    cpu_limit_cores: Option<f64>,
    memory_request_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
}

fn rows(store_path: &Path, series_key: &str) -> Vec<Row> {
    let conn = store::open(store_path);
    let mut stmt = conn
        .prepare(
            "SELECT ts_unix_ns, node, container_id, workload_kind, workload, image, cpu_cores,
                    cpu_throttled_ratio, memory_working_set_bytes, memory_peak_bytes, oom_kills,
                    net_rx_bytes, net_tx_bytes, cpu_request_cores, cpu_limit_cores,
                    memory_request_bytes, memory_limit_bytes
             FROM usage WHERE series_key = ? AND source = 'prometheus' ORDER BY ts_unix_ns",
        )
        .expect("prepare");
    stmt.query_map([series_key], |r| {
        Ok(Row {
            ts_unix_ns: r.get(0)?,
            node: r.get(1)?,
            container_id: r.get(2)?,
            workload_kind: r.get(3)?,
            workload: r.get(4)?,
            image: r.get(5)?,
            cpu_cores: r.get(6)?,
            cpu_throttled_ratio: r.get(7)?,
            memory_working_set_bytes: r.get(8)?,
            memory_peak_bytes: r.get(9)?,
            oom_kills: r.get(10)?,
            net_rx_bytes: r.get(11)?,
            net_tx_bytes: r.get(12)?,
            cpu_request_cores: r.get(13)?,
            cpu_limit_cores: r.get(14)?,
            memory_request_bytes: r.get(15)?,
            memory_limit_bytes: r.get(16)?,
        })
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

fn close(a: Option<f64>, b: f64, what: &str, ts: i64) {
    let a = a.unwrap_or_else(|| panic!("{what} is NULL at {ts}"));
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        "{what} at {ts}: {a} != {b}"
    );
}

/// Starts Prometheus on the TSDB in `data` and waits until it is ready.
fn start_prometheus(dir: &Path, data: &Path) -> (Proc, SocketAddr) {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 30s\n").expect("write config");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let proc = Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address={addr}")),
    );
    wait_for(Duration::from_secs(60), "Prometheus /-/ready", || {
        http_get(addr, "/-/ready").ok()
    });
    (proc, addr)
}

fn import(store_path: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    Command::new(bin("upid-collector"))
        .args([
            "import",
            "prometheus",
            "--url",
            url,
            "--since",
            "3d",
            "--step",
            "60s",
        ])
        .args(extra)
        .arg("--store")
        .arg(store_path)
        .env("UPID_LOG", "warn")
        .output()
        .expect("run upid-collector import prometheus")
}

#[test]
fn history_is_imported_from_a_real_prometheus() {
    let available = have("prometheus") && have("promtool");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert!(
            available,
            "CI=true but prometheus/promtool are missing: apt-get install prometheus (.ci/run does)"
        );
    }
    if skip_unless(
        available,
        "prometheus and promtool are needed (apt-get install prometheus)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    // A day of history that ended two hours ago, starting on the hour.
    let base = (now / 3600) * 3600 - 26 * 3600;
    let history = History {
        base,
        oom_at: base + 12 * 3600 + 15,
    };
    let input = dir.path().join("history.om");
    std::fs::write(&input, history.openmetrics()).expect("write OpenMetrics");
    let data = dir.path().join("tsdb");
    run(Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data));
    let (_prometheus, addr) = start_prometheus(dir.path(), &data);
    let url = format!("http://{addr}");

    // The agent already measured A for ten minutes two hours in: those
    // rows must not be imported.
    let store_path = dir.path().join("upid.duckdb");
    drop(upid_collector::store::Store::open(&store_path).expect("create store"));
    let agent_from = base + 2 * 3600;
    {
        let conn = duckdb::Connection::open(&store_path).expect("open store");
        conn.execute_batch(&format!(
            "INSERT INTO usage (series_key, source, ts_unix_ns, interval_s, node, container_id,
                                namespace, pod, container, workload_kind, workload, image, cpu_cores)
             SELECT '{HEX_A}', 'agent', ({agent_from} + i * 60) * {NS}, 60.0, 'node-1', '{HEX_A}',
                    'shop', '{POD_A}', 'web', 'Deployment', 'web', 'registry.example/web:1.4.2', 0.3
             FROM range(10) r(i)"
        ))
        .expect("agent rows");
    }

    let first = import(&store_path, &url, &[]);
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(first.status.success(), "import failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("covered by agent data"), "{stdout}");
    eprintln!("first import:\n{stdout}");

    let interior = |r: &Row| {
        r.ts_unix_ns >= (base + 3600) * NS && r.ts_unix_ns < (base + HISTORY_S - 3600) * NS
    };

    // A: a Deployment's container, keyed by its container id.
    let a = rows(&store_path, HEX_A);
    assert!(
        (1420..=1450).contains(&(a.len() + 10)),
        "a day at 60 s is ~1440 rows, got {} (+10 agent rows)",
        a.len()
    );
    assert!(
        a.iter()
            .all(|r| r.ts_unix_ns < agent_from * NS || r.ts_unix_ns >= (agent_from + 600) * NS),
        "rows the agent covers were imported"
    );
    let a_interior: Vec<&Row> = a.iter().filter(|r| interior(r)).collect();
    assert!(
        a_interior.len() > 1300,
        "{} interior rows",
        a_interior.len()
    );
    for r in &a_interior {
        let ts = r.ts_unix_ns;
        assert_eq!(r.node, "node-1", "instance without its port");
        assert_eq!(r.container_id, HEX_A);
        assert_eq!(
            (r.workload_kind.as_str(), r.workload.as_str()),
            ("Deployment", "web")
        );
        assert_eq!(r.image, "registry.example/web:1.4.2");
        close(r.cpu_cores, 0.25, "A cpu_cores", ts);
        close(r.cpu_throttled_ratio, 0.1, "A cpu_throttled_ratio", ts);
        assert_eq!(r.memory_working_set_bytes, Some(100 * MIB), "at {ts}");
        assert_eq!(r.memory_peak_bytes, Some(100 * MIB), "at {ts}");
        assert_eq!(r.oom_kills, Some(0), "at {ts}");
        close(
            r.net_rx_bytes.map(|v| v as f64),
            60_000.0,
            "A net_rx_bytes",
            ts,
        );
        close(
            r.net_tx_bytes.map(|v| v as f64),
            30_000.0,
            "A net_tx_bytes",
            ts,
        );
        close(r.cpu_request_cores, 0.5, "A cpu_request_cores", ts);
        close(r.cpu_limit_cores, 1.0, "A cpu_limit_cores", ts);
        assert_eq!(r.memory_request_bytes, Some(128 * MIB));
        assert_eq!(r.memory_limit_bytes, Some(256 * MIB));
    }

    // B: a StatefulSet's container without a container id, one OOM kill.
    let b = rows(&store_path, "node-2/data/db-0/db");
    assert!(b.len() > 1400, "{} rows for B", b.len());
    let ooms: Vec<(i64, u64)> = b
        .iter()
        .filter(|r| r.oom_kills.unwrap_or(0) > 0)
        .map(|r| (r.ts_unix_ns, r.oom_kills.unwrap_or(0)))
        .collect();
    assert_eq!(
        ooms,
        vec![((base + 12 * 3600) * NS, 1)],
        "one OOM, in the minute it happened, counted once though cAdvisor and kube-state-metrics both saw it"
    );
    let spike = (base + 6 * 3600) * NS;
    for r in b.iter().filter(|r| interior(r)) {
        let ts = r.ts_unix_ns;
        assert_eq!(r.node, "node-2");
        assert_eq!(
            (r.workload_kind.as_str(), r.workload.as_str()),
            ("StatefulSet", "db")
        );
        close(r.cpu_cores, 0.5, "B cpu_cores", ts);
        assert_eq!(r.cpu_throttled_ratio, None, "B has no CFS series");
        assert_eq!(r.net_rx_bytes, None, "B's pod has no network series");
        assert_eq!(r.cpu_request_cores, None, "B has no requests");
        if (ts - spike).abs() > 120 * NS {
            assert_eq!(r.memory_peak_bytes, Some(200 * MIB), "at {ts}");
            assert_eq!(r.memory_working_set_bytes, Some(200 * MIB), "at {ts}");
        }
    }
    let peak = b.iter().filter_map(|r| r.memory_peak_bytes).max();
    assert_eq!(peak, Some(300 * MIB), "the one 300 MiB reading is B's peak");

    // C: a bare pod.
    let c = rows(&store_path, HEX_C);
    assert!(c.len() > 1400, "{} rows for C", c.len());
    for r in c.iter().filter(|r| interior(r)) {
        assert_eq!(
            (r.workload_kind.as_str(), r.workload.as_str()),
            ("Pod", "solo")
        );
        close(r.cpu_cores, 0.05, "C cpu_cores", r.ts_unix_ns);
        assert_eq!(r.memory_working_set_bytes, Some(10 * MIB));
    }

    // Nothing but these three containers (not the sandbox, not the pod
    // cgroup).
    let conn = store::open(&store_path);
    let keys = store::count(
        &conn,
        "SELECT count(DISTINCT series_key) FROM usage WHERE source = 'prometheus'",
    );
    assert_eq!(keys, 3);
    let total = store::count(&conn, "SELECT count(*) FROM usage");
    drop(conn);

    // Importing again replaces, never doubles; a dry run writes nothing.
    let again = import(&store_path, &url, &[]);
    let again_out = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success(), "{again_out}");
    assert!(again_out.contains("rows replaced"), "{again_out}");
    let dry = import(&store_path, &url, &["--dry-run"]);
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("dry run"));
    let conn = store::open(&store_path);
    assert_eq!(store::count(&conn, "SELECT count(*) FROM usage"), total);
    drop(conn);

    // Analysed: a real collector over the imported store answers `upid
    // rightsize` and `upid cost` from the imported history. The history
    // ended two hours ago and is one day long: the config says containers
    // count as running for a day and a day of history is enough.
    let config = dir.path().join("collector.yaml");
    std::fs::write(
        &config,
        "analysis:\n  stale_after_s: 172800\n  rightsize:\n    min_history_s: 3600\n",
    )
    .expect("write config");
    let collector = serve(&store_path)
        .args(["--config", config.to_str().unwrap_or_default()])
        .start();
    let server = collector.url();
    let upid_json = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(bin("upid"))
            .args(["--server", server.as_str()])
            .args(args)
            .output()
            .expect("run upid");
        assert!(
            out.status.success(),
            "upid {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("upid prints JSON")
    };
    let recs = upid_json(&["rightsize", "--by", "container", "-o", "json"]);
    let rec = |container: &str| {
        recs.as_array()
            .and_then(|a| a.iter().find(|r| r["container"] == container))
            .cloned()
            .unwrap_or_else(|| panic!("no recommendation for {container}: {recs:#}"))
    };
    // A used 0.25 cores throughout, throttled in 10 % of its periods
    // (over the 5 % threshold): the end of 0.25's histogram bucket
    // (0.01 × (1.05^17 − 1) / 0.05 = 0.2584 cores) × (1 + 0.10) for the
    // throttling × 1.15 margin = 0.3269 cores, rounded up to 327m.
    let web = rec("web");
    let cpu = web["cpu_request_millicores"].as_u64().unwrap_or(0);
    assert!(
        (326..=328).contains(&cpu),
        "web CPU request {cpu}m: {web:#}"
    );
    assert!(
        web["evidence"]["cpu_request_driver"]
            .as_str()
            .is_some_and(|d| d.contains("throttl")),
        "{web:#}"
    );
    assert!(web["samples"].as_u64().unwrap_or(0) >= 1400, "{web:#}");
    // B was OOM-killed once, around 200 MiB with a 300 MiB reading: the
    // kill is in the evidence and memory goes above what it used.
    let db = rec("db");
    assert_eq!(db["evidence"]["oom_kills"], 1, "{db:#}");
    let mem = db["memory_request_bytes"].as_u64().unwrap_or(0);
    assert!(mem >= 300 * MIB, "db memory request {mem}: {db:#}");
    // Cost by namespace covers the three imported namespaces.
    let cost = upid_json(&["cost", "--by", "namespace", "-o", "json"]);
    let text = cost.to_string();
    for ns in ["shop", "data", "ops"] {
        assert!(
            text.contains(&format!("\"{ns}\"")),
            "cost lists {ns}: {cost:#}"
        );
    }
    drop(collector);

    // Not Prometheus' API under that path: the HTTP status is named.
    let wrong = format!("{url}/not-prometheus");
    let failed = import(&store_path, &wrong, &[]);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        err.contains(&format!("Prometheus at {wrong}/api/v1/query_range"))
            && err.contains("HTTP 404"),
        "{err}"
    );

    // Nothing listening: the error names the URL and the query.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let failed = import(&store_path, &nowhere, &[]);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        err.contains(&format!("Prometheus at {nowhere}/api/v1/query_range"))
            && err.contains("container_cpu_usage_seconds_total")
            && err.contains("unreachable"),
        "{err}"
    );
}

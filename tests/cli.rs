//! The `upid` CLI end to end: the real binary against a real
//! `upid-collector standalone` process sampling this host, over loopback.
//!
//! As root, the collector is also given a cgroup of the test's own (a
//! `sleep` with a 0.5-core CPU quota and a 64 MiB memory limit), so
//! `get containers`, `top` and `describe` are checked on a container whose
//! limits are known. Without root those checks run on whatever this host's
//! collector samples, and are skipped loudly if that is nothing.
//!
//! The TLS and token test needs the `openssl` command for its certificates.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use upid::model::CgroupLayout;
use upid_agent::cgroup::mountinfo;
use upid_agent::host::HostRoot;
use upid_e2e::{TestCgroup, bin, have, is_root, skip_unless, wait_for};

/// The node name the test collector reports.
const NODE: &str = "upid-cli-e2e";
/// How long a collector may take to say it is ready (opening DuckDB).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the collector may take to store what the tests wait for.
const DATA_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// A running `upid-collector standalone`, killed when dropped (also when a
/// check panics, after printing its log).
struct Collector {
    child: Child,
    /// gRPC address, `127.0.0.1:PORT`.
    grpc: String,
    log: PathBuf,
}

impl Collector {
    /// Starts `upid-collector standalone` storing in `dir`, with `extra`
    /// flags, and waits for its ready line.
    fn start(dir: &Path, extra: &[&str]) -> Collector {
        let log = dir.join("collector.log");
        let stderr = std::fs::File::create(&log).expect("create collector log");
        let mut child = Command::new(bin("upid-collector"))
            .arg("standalone")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
            .arg("--store")
            .arg(dir.join("u.duckdb"))
            .args(["--interval", "1s", "--node-name", NODE])
            .args(extra)
            .env("UPID_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn upid-collector");
        let stdout = child.stdout.take().expect("collector stdout");
        let mut collector = Collector {
            child,
            grpc: String::new(),
            log,
        };
        let (tx, rx) = mpsc::channel();
        // Reads every line (so the pipe never fills) and hands them over.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        collector.grpc = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|e| match e {
                mpsc::RecvTimeoutError::Timeout => {
                    panic!("no ready line from upid-collector within {READY_TIMEOUT:?}")
                }
                mpsc::RecvTimeoutError::Disconnected => {
                    panic!("upid-collector exited before its ready line")
                }
            });
            if let Some(grpc) = ready_grpc(&line) {
                break grpc;
            }
        };
        collector
    }

    fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    fn https_url(&self) -> String {
        format!("https://{}", self.grpc)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- upid-collector log (last 40 lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `grpc=HOST:PORT` of the ready line
/// `upid-collector: ready grpc=HOST:PORT metrics=... store=...`.
fn ready_grpc(line: &str) -> Option<String> {
    let rest = line.strip_prefix("upid-collector: ready ")?;
    rest.split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .map(str::to_owned)
}

/// Polls `f` every 200 ms until it returns `Some`, or gives up after
/// `timeout` with `None`.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `upid --server SERVER ARGS...` with no `UPID_*` settings inherited.
fn upid_env(server: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("upid"));
    for var in [
        "UPID_SERVER",
        "UPID_CA",
        "UPID_CLIENT_CERT",
        "UPID_CLIENT_KEY",
        "UPID_TLS_DOMAIN",
        "UPID_TOKEN_FILE",
        "UPID_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(["--server", server])
        .args(args)
        .envs(env.iter().copied());
    cmd.output().expect("run upid")
}

fn upid(server: &str, args: &[&str]) -> Output {
    upid_env(server, args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs upid, asserts it succeeded, returns stdout.
fn upid_ok(server: &str, args: &[&str]) -> String {
    let o = upid(server, args);
    assert!(
        o.status.success(),
        "upid {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs upid with `-o json`, asserts success, parses stdout.
fn upid_json(server: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let out = upid_ok(server, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("upid {args:?}: not JSON ({e}):\n{out}"))
}

/// A cgroup of the test's own with a 0.5-core quota and a 64 MiB limit,
/// a `sleep` in it, in every hierarchy the collector's sampler reads.
fn test_cgroup() -> TestCgroup {
    let h = mountinfo::detect(&HostRoot::default()).expect("this host's cgroup layout");
    let name = format!("upid-e2e-{}-cli", std::process::id());
    let mut mounts: Vec<PathBuf> = match h.layout {
        CgroupLayout::V2 => h.unified.iter().cloned().collect(),
        CgroupLayout::V1 | CgroupLayout::Hybrid => ["cpu", "cpuacct", "memory", "pids", "blkio"]
            .iter()
            .filter_map(|c| h.v1_controller(c).map(Path::to_path_buf))
            .collect(),
    };
    mounts.sort();
    mounts.dedup();
    let refs: Vec<&Path> = mounts.iter().map(PathBuf::as_path).collect();
    let mut cg = TestCgroup::create(&name, &refs);
    match h.layout {
        CgroupLayout::V2 => {
            let m = h.unified.clone().expect("unified mount");
            cg.set(&m, "cpu.max", "50000 100000");
            cg.set(&m, "memory.max", &(64 * MIB).to_string());
        }
        _ => {
            let cpu = h
                .v1_controller("cpu")
                .expect("cpu controller")
                .to_path_buf();
            cg.set(&cpu, "cpu.cfs_period_us", "100000");
            cg.set(&cpu, "cpu.cfs_quota_us", "50000");
            let mem = h
                .v1_controller("memory")
                .expect("memory controller")
                .to_path_buf();
            cg.set(&mem, "memory.limit_in_bytes", &(64 * MIB).to_string());
        }
    }
    cg.spawn("sleep", &["600"]);
    cg
}

/// Fields every container record of `-o json` carries (docs/cli.md).
const CONTAINER_FIELDS: &[&str] = &[
    "id",
    "node_name",
    "container_id",
    "runtime",
    "cgroup_path",
    "pod_uid",
    "qos",
    "unit",
    "first_seen_unix_ns",
    "first_seen",
    "last_seen_unix_ns",
    "last_seen",
    "cpu_cores",
    "cpu_throttled_ratio",
    "cpu_limit_millicores",
    "memory_working_set_bytes",
    "memory_peak_bytes",
    "memory_limit_bytes",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
    "oom_kills_total",
    "usage_start_unix_ns",
    "usage_end_unix_ns",
];

#[test]
fn cli_lists_tops_describes_and_doctors_a_standalone_collector() {
    let cgroup = if is_root() {
        Some(test_cgroup())
    } else {
        skip_unless(
            false,
            "not root: no test cgroup; container checks use whatever this host's collector samples",
        );
        None
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let glob = cgroup.as_ref().map(|c| c.path.clone());
    let mut extra = Vec::new();
    if let Some(g) = &glob {
        extra.extend(["--cgroup-glob", g.as_str()]);
    }
    let collector = Collector::start(dir.path(), &extra);
    let server = collector.url();

    // get nodes: this host, once its first tick is stored.
    let nodes = wait_for(DATA_TIMEOUT, "one node in `upid get nodes -o json`", || {
        let o = upid(&server, &["get", "nodes", "-o", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        (v.as_array()?.len() == 1).then_some(v)
    });
    let node = &nodes[0];
    assert_eq!(node["node_name"], NODE);
    assert!(node["cpu_count"].as_u64().unwrap_or(0) >= 1, "{node}");
    assert!(
        node["memory_total_bytes"].as_u64().unwrap_or(0) > 0,
        "{node}"
    );
    assert!(
        node["last_seen_unix_ns"].as_i64().unwrap_or(0) > 0,
        "{node}"
    );
    assert!(node["last_seen"].is_string(), "{node}");
    for field in [
        "agent_id",
        "cgroup_layout",
        "connected",
        "clock_skew_ns",
        "spool_dropped_batches_total",
    ] {
        assert!(node.get(field).is_some(), "node lacks {field}: {node}");
    }
    let table = upid_ok(&server, &["get", "nodes"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("STATUS"),
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap_or_default().starts_with(NODE),
        "{table}"
    );

    // get containers -o json: unit-named fields; our cgroup with its limits.
    let containers: Vec<Value> = match &glob {
        Some(path) => wait_for(DATA_TIMEOUT, "our cgroup with CPU rates", || {
            let v = upid_json(&server, &["get", "containers"]);
            let list = v.as_array()?.clone();
            list.iter()
                .any(|c| c["cgroup_path"] == path.as_str() && c["cpu_cores"].is_number())
                .then_some(list)
        }),
        // Whatever this host has: give it a few ticks to get rates.
        None => poll(Duration::from_secs(15), || {
            let v = upid_json(&server, &["get", "containers"]);
            let list = v.as_array()?.clone();
            list.iter()
                .any(|c| c["cpu_cores"].is_number())
                .then_some(list)
        })
        .unwrap_or_else(|| {
            let v = upid_json(&server, &["get", "containers"]);
            v.as_array().cloned().unwrap_or_default()
        }),
    };
    for c in &containers {
        for field in CONTAINER_FIELDS {
            assert!(c.get(*field).is_some(), "container lacks {field}: {c}");
        }
        assert_eq!(c["node_name"], NODE, "{c}");
    }
    let ours = match &glob {
        Some(path) => {
            let c = containers
                .iter()
                .find(|c| c["cgroup_path"] == path.as_str())
                .expect("our cgroup is listed")
                .clone();
            assert_eq!(c["id"], format!("{NODE}:{path}"));
            assert_eq!(c["runtime"], "cgroup");
            assert_eq!(c["container_id"], Value::Null);
            assert_eq!(c["cpu_limit_millicores"], 500, "{c}");
            assert_eq!(c["memory_limit_bytes"], 64 * MIB, "{c}");
            assert!(c["memory_working_set_bytes"].as_u64().is_some(), "{c}");
            Some(c)
        }
        None => containers.first().cloned(),
    };

    // Tables: headers a person expects; our cgroup with human units.
    let table = upid_ok(&server, &["get", "containers"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "WORKLOAD",
            "IMAGE",
            "STATE",
            "HEALTH",
            "RESTARTS",
            "OOMS",
            "CPU",
            "MEMORY"
        ]
    );
    // Wide: where it runs and its limits, with human units.
    let wide = upid_ok(&server, &["get", "containers", "-o", "wide"]);
    let wide_header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for column in ["NODE", "ID", "CPU_LIMIT", "MEM_LIMIT", "CGROUP"] {
        assert!(wide_header.contains(&column), "{column} in {wide_header:?}");
    }
    if let Some(path) = &glob {
        let row: Vec<&str> = wide
            .lines()
            .find(|l| l.contains(path.as_str()))
            .unwrap_or_else(|| panic!("{path} not in\n{wide}"))
            .split_whitespace()
            .collect();
        assert_eq!(row.len(), wide_header.len(), "one word per cell: {row:?}");
        let cell = |name: &str| {
            let i = wide_header
                .iter()
                .position(|h| *h == name)
                .unwrap_or(usize::MAX);
            row.get(i).copied().unwrap_or_default()
        };
        assert_eq!(cell("NODE"), NODE);
        assert_eq!(
            (cell("CPU_LIMIT"), cell("MEM_LIMIT")),
            ("0.5", "64Mi"),
            "{wide}"
        );
    }
    let yaml = upid_ok(
        &server,
        &["get", "containers", "--node", NODE, "-o", "yaml"],
    );
    assert!(yaml.contains("memory_working_set_bytes:"), "{yaml}");

    // Empty results: `[]` for scripts, a hint on stderr for people.
    let none = upid_json(&server, &["get", "containers", "--node", "no-such-node"]);
    assert_eq!(none, Value::Array(Vec::new()));
    let o = upid(&server, &["get", "containers", "--node", "no-such-node"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).starts_with("No containers found on node no-such-node (agents connected: "),
        "{}",
        stderr(&o)
    );

    // top: busiest first.
    let top = upid_ok(&server, &["top"]);
    assert!(
        top.lines().next().unwrap_or_default().contains("CPU%"),
        "{top}"
    );
    if let Some(path) = &glob {
        assert!(top.contains(path.as_str()), "{top}");
    }
    let top = upid_json(&server, &["top", "--node", NODE]);
    let cpus: Vec<f64> = top
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["cpu_cores"].as_f64())
        .collect();
    assert!(
        cpus.windows(2).all(|w| w[0] >= w[1]),
        "not sorted by CPU: {cpus:?}"
    );
    let by_memory = upid_json(&server, &["top", "--sort", "memory"]);
    let mems: Vec<u64> = by_memory
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["memory_working_set_bytes"].as_u64())
        .collect();
    assert!(
        mems.windows(2).all(|w| w[0] >= w[1]),
        "not sorted by memory: {mems:?}"
    );

    // describe: by the id the listing gave.
    match &ours {
        Some(c) => {
            let id = c["id"].as_str().expect("id");
            let text = upid_ok(&server, &["describe", "container", id, "--since", "10m"]);
            assert!(text.contains(&format!("{:<16}{id}\n", "ID:")), "{text}");
            assert!(text.contains(&format!("{:<16}{NODE}\n", "Node:")), "{text}");
            assert!(text.contains("Limits:"), "{text}");
            assert!(text.contains("Recent usage (last 10m"), "{text}");
            // Rates mean two samples; the count follows within the
            // writer's flush interval (docs/collector.md).
            let v = wait_for(DATA_TIMEOUT, "`describe` to count two samples", || {
                let v = upid_json(&server, &["describe", "container", id]);
                (v["samples_stored"].as_u64().unwrap_or(0) >= 2).then_some(v)
            });
            assert_eq!(v["container"]["id"], id);
            assert!(v["latest_sample"]["timestamp_unix_ns"].is_i64(), "{v}");
            assert!(v["series"]["points"].is_array(), "{v}");
        }
        None => {
            skip_unless(
                false,
                "this host's collector samples no container: describe not checked",
            );
        }
    }
    let o = upid(&server, &["describe", "container", "ffffffffffffffffffff"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("ffffffffffffffffffff"),
        "{}",
        stderr(&o)
    );

    // workloads: a list (empty outside Kubernetes).
    assert!(upid_json(&server, &["get", "workloads"]).is_array());

    // doctor: every check passes (warnings allowed), versions printed.
    let o = upid(&server, &["doctor"]);
    let text = stdout(&o);
    assert!(o.status.success(), "doctor failed:\n{text}{}", stderr(&o));
    for check in ["✓ dns", "✓ tcp", "✓ tls", "✓ health", "✓ auth", "✓ version"] {
        assert!(text.contains(check), "doctor lacks `{check}`:\n{text}");
    }
    assert!(text.contains(&format!("node {NODE}")), "{text}");
    assert!(!text.contains('✗'), "{text}");
    let report = upid_json(&server, &["doctor"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["collector_version"], report["client_version"],
        "{report}"
    );
    assert!(report["clock_skew_ns"].is_i64(), "{report}");

    // https:// against this plaintext collector: explained, not a TLS riddle.
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    if !skip_unless(
        Path::new(bundle).exists(),
        "no system CA bundle: https mismatch not checked",
    ) {
        let o = upid_env(
            &collector.https_url(),
            &["get", "nodes"],
            &[("SSL_CERT_FILE", bundle)],
        );
        assert!(!o.status.success());
        assert!(stderr(&o).contains("use http://"), "{}", stderr(&o));
    }

    drop(collector);
    drop(cgroup);
}

#[test]
fn doctor_and_commands_against_a_closed_port_say_what_to_do() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let server = format!("http://127.0.0.1:{port}");

    let o = upid(&server, &["doctor"]);
    let text = stdout(&o);
    assert!(
        !o.status.success(),
        "doctor passed against a closed port:\n{text}"
    );
    assert!(text.contains("✗ tcp"), "{text}");
    assert!(
        text.contains("fix: ") && text.contains("upid-collector standalone"),
        "{text}"
    );
    assert!(text.contains("- health   skipped"), "{text}");

    let o = upid(&server, &["get", "nodes"]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "error: cannot reach the collector at {server} (connection refused): is `upid-collector standalone` running? set --server or UPID_SERVER"
        )
    );
}

#[test]
fn completion_scripts_complete_upid() {
    for shell in ["bash", "zsh", "fish"] {
        let out = upid_ok("http://127.0.0.1:1", &["completion", shell]);
        assert!(out.contains("upid"), "{shell}:\n{out}");
        assert!(out.contains("describe"), "{shell} script lacks subcommands");
    }
}

/// `openssl` in `dir`, panicking with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed
/// (`server.pem`, `server-key.pem`), in `dir`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-subj",
        "/CN=upid cli test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    openssl(dir, &ca);
    let mut server = vec!["req", "-x509", "-CA", "ca.pem", "-CAkey", "ca-key.pem"];
    server.extend(ec);
    server.extend([
        "-subj",
        "/CN=upid cli test server",
        "-addext",
        "basicConstraints=CA:FALSE",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout",
        "server-key.pem",
        "-out",
        "server.pem",
    ]);
    openssl(dir, &server);
}

#[test]
fn tls_and_token_problems_are_found_and_explained() {
    if skip_unless(
        have("openssl"),
        "openssl is not installed (apt-get install openssl)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_certificates(d);
    std::fs::write(
        d.join("tokens"),
        "cli s3cret-query-0123456789 query\nnode1 s3cret-agent-0123456789 agent\n",
    )
    .expect("tokens file");
    std::fs::write(d.join("query.token"), "s3cret-query-0123456789\n").expect("token");
    std::fs::write(d.join("agent.token"), "s3cret-agent-0123456789\n").expect("token");
    let path = |f: &str| d.join(f).display().to_string();
    let collector = Collector::start(
        d,
        &[
            "--tls-cert",
            &path("server.pem"),
            "--tls-key",
            &path("server-key.pem"),
            "--tokens-file",
            &path("tokens"),
        ],
    );
    let https = collector.https_url();
    let ca = path("ca.pem");
    let query_token = path("query.token");

    // Everything right: doctor passes over TLS with the token.
    let o = upid(
        &https,
        &["--ca", &ca, "--token-file", &query_token, "doctor"],
    );
    let text = stdout(&o);
    assert!(
        o.status.success(),
        "doctor failed over TLS:\n{text}{}",
        stderr(&o)
    );
    assert!(text.contains("✓ tls"), "{text}");
    assert!(text.contains("token from"), "{text}");
    let nodes = wait_for(DATA_TIMEOUT, "a node over TLS", || {
        let o = upid(
            &https,
            &[
                "--ca",
                &ca,
                "--token-file",
                &query_token,
                "get",
                "nodes",
                "-o",
                "json",
            ],
        );
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        (v.as_array()?.len() == 1).then_some(v)
    });
    assert_eq!(nodes[0]["node_name"], NODE);

    // http:// against TLS: the scheme is named, for a command and for doctor.
    let o = upid(
        &collector.url(),
        &["--token-file", &query_token, "get", "nodes"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("use https://"), "{}", stderr(&o));
    let o = upid(&collector.url(), &["doctor"]);
    let text = stdout(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("✗ tls") && text.contains("use https://"),
        "{text}"
    );

    // A CA that did not sign the server: --ca is the fix.
    let o = upid_env(
        &https,
        &["--token-file", &query_token, "get", "nodes"],
        &[("SSL_CERT_FILE", &path("server.pem"))],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--ca"), "{}", stderr(&o));

    // No token, then a token without the query role.
    let o = upid(&https, &["--ca", &ca, "get", "nodes"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--token-file"), "{}", stderr(&o));
    let o = upid(
        &https,
        &[
            "--ca",
            &ca,
            "--token-file",
            &path("agent.token"),
            "get",
            "nodes",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("role `query`"), "{}", stderr(&o));
    let o = upid(&https, &["--ca", &ca, "doctor"]);
    let text = stdout(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("✗ auth") && text.contains("fix: pass --token-file"),
        "{text}"
    );
}

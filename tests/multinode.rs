//! A run that looks like production, on the real Docker Engine: both
//! images built by `deploy/images/build.sh --bin-dir` from the binaries
//! this test run built (debug profile; no cargo build, nothing pulled), a
//! collector container with its store on a host directory and bearer
//! tokens, three agent containers acting as three nodes (own node name,
//! own spool volume and so own agent id, the host's `/proc` and
//! `/sys/fs/cgroup` read-only under `/host`, the Docker socket, host PID
//! namespace and SYS_PTRACE, 1 s ticks), all on a private network, plus
//! three workload containers from a from-scratch busybox image (one of
//! them not running as root).
//!
//! The three agents run on one host, so all three see the same cgroups and
//! report the same containers (the agent has no flag to sample only some
//! containers): the store keys a container by its id, so each workload is
//! one container row sampled by three nodes, and every tick of every agent
//! carries it, with its network namespace.
//!
//! `upid` (the real CLI, on the collector's published port) must show all
//! three nodes and the workloads. Then the collector container is killed
//! (SIGKILL) and started again; one agent is cut off the network for
//! several ticks while another container takes its address, so it comes
//! back with a new one and its TCP connection is dead without a word
//! (HTTP/2 keepalive notices, it reconnects and replays); and one agent is
//! restarted. Afterwards, with everything stopped, the spools are opened
//! and the store is read with plain SQL: for each agent exactly the
//! batches 1..=N its spool says it made, each once; as many node samples
//! as batches; as many container samples as the stored batches say they
//! carried, none twice, and every workload in every batch with its network
//! namespace; nothing dropped by a spool; the ticks made while the
//! collector was down or the agent was cut off are stored, and were
//! received only after the collector was back / the agent reconnected.
//!
//! Two more tests check `deploy/compose/docker-compose.yaml`: valid for
//! `docker-compose`, and brought up as its header says.
//!
//! Skips loudly without a Docker Engine, root or `docker-compose`; with
//! `CI=true` it fails instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use upid_e2e::harness::collector::{Ready, http_get};
use upid_e2e::harness::images::{
    self, AGENT_IMAGE, COLLECTOR_IMAGE, Container, ImageTag, Network, docker,
};
use upid_e2e::harness::{Metrics, SpoolFacts, spool_facts, store};
use upid_e2e::{bin, build_busybox_image, run, wait_for};

/// Deadline of one awaited condition (a busy 2-core machine).
const WAIT: Duration = Duration::from_secs(60);
/// Deadline for an agent whose connection died silently: HTTP/2 keepalive
/// (30 s interval, 10 s timeout) notices, then it reconnects.
const SILENT_DEATH_WAIT: Duration = Duration::from_secs(120);
/// Ticks of the other agents to wait while one agent is cut off.
const OUTAGE_TICKS: u64 = 6;
/// Grace period of `docker stop`; the agents drain for up to 30 s.
const STOP_GRACE: Duration = Duration::from_secs(60);
const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const GRPC_PORT: &str = "7070/tcp";
const METRICS_PORT: &str = "7071/tcp";

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A token of 32 hex digits from /dev/urandom.
fn token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `pending=N` values of the agent's "collector unreachable" log lines,
/// in order.
fn pending_while_unreachable(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.contains("collector unreachable"))
        .filter_map(|l| {
            l.split("pending=")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Writes `text` to `path` with `mode`.
fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// `upid` pointed at a collector's published gRPC port, with the query
/// token.
struct Upid {
    grpc: SocketAddr,
    query_token: PathBuf,
}

impl Upid {
    /// `upid --server URL --token-file QUERY_TOKEN ARGS -o json`; `None`
    /// (said) when it fails, so callers can poll.
    fn json(&self, args: &[&str]) -> Option<Value> {
        let out = Command::new(bin("upid"))
            .args(["--server", &format!("http://{}", self.grpc)])
            .arg("--token-file")
            .arg(&self.query_token)
            .args(args)
            .args(["-o", "json"])
            .output()
            .unwrap_or_else(|e| panic!("running upid {args:?}: {e}"));
        if !out.status.success() {
            eprintln!(
                "upid {args:?} failed (retried): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `upid get nodes`, by node name.
    fn nodes(&self) -> BTreeMap<String, Value> {
        self.json(&["get", "nodes"])
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| Some((n["node_name"].as_str()?.to_string(), n)))
            .collect()
    }

    /// The highest seq stored from `node` and the time of its latest tick.
    fn progress(&self, node: &str) -> Option<(u64, i64)> {
        let nodes = self.nodes();
        let n = nodes.get(node)?;
        Some((n["last_seq"].as_u64()?, n["last_seen_unix_ns"].as_i64()?))
    }

    /// Waits until `node`'s stored progress satisfies `f`.
    fn wait_progress(
        &self,
        node: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(u64, i64) -> bool,
    ) {
        wait_for(timeout, &format!("{node}: {what}"), || {
            self.progress(node).filter(|(s, t)| f(*s, *t))
        });
    }
}

/// The collector container and how to reach it from the host.
struct CollectorBox {
    container: Container,
    upid: Upid,
    metrics: SocketAddr,
}

impl CollectorBox {
    /// Waits for its `starts`-th ready line (it prints one per start), then
    /// reads where its ports are published now.
    fn wait_ready(&mut self, starts: usize) {
        self.container
            .wait_for_logs(&format!("ready line number {starts}"), WAIT, |lines| {
                (lines.iter().filter_map(|l| Ready::parse(l)).count() >= starts).then_some(())
            });
        self.upid.grpc = self.container.published(GRPC_PORT);
        self.metrics = self.container.published(METRICS_PORT);
    }

    fn scrape(&self) -> Metrics {
        let body = http_get(self.metrics, "/metrics")
            .unwrap_or_else(|e| panic!("GET http://{}/metrics: {e}", self.metrics));
        Metrics::parse(&body)
    }
}

#[test]
fn three_agent_containers_deliver_every_sample_once_through_a_collector_kill_an_outage_and_a_restart()
 {
    if images::skip_without_docker_and_root() {
        return;
    }
    let log = images::build_images();
    eprintln!("{log}");
    eprintln!(
        "image sizes (debug-profile binaries, stripped): {} {} bytes, {} {} bytes",
        AGENT_IMAGE,
        images::image_size_bytes(AGENT_IMAGE),
        COLLECTOR_IMAGE,
        images::image_size_bytes(COLLECTOR_IMAGE)
    );

    let prefix = format!("upid-mn-{}", std::process::id());
    let work_image = ImageTag(format!("upid-e2e/multinode-{}:work", std::process::id()));
    build_busybox_image(&work_image.0);
    let dir = tempfile::tempdir().expect("tempdir");

    // The collector's data directory belongs to its user (65532); tokens:
    // one per agent, one for `upid`.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir data");
    run(Command::new("chown").arg("65532:65532").arg(&data));
    let agent_tokens: Vec<String> = NODES.iter().map(|_| token()).collect();
    let query = token();
    let mut tokens = String::from("# NAME TOKEN ROLE\n");
    for (node, t) in NODES.iter().zip(&agent_tokens) {
        tokens.push_str(&format!("{node} {t} agent\n"));
    }
    tokens.push_str(&format!("ops {query} query\n"));
    let tokens_file = dir.path().join("tokens");
    write_file(&tokens_file, &tokens, 0o400);
    run(Command::new("chown").arg("65532:65532").arg(&tokens_file));
    let query_token = dir.path().join("query-token");
    write_file(&query_token, &format!("{query}\n"), 0o600);

    let network = Network::create(&format!("{prefix}-net"));
    let collector_name = format!("{prefix}-collector");
    let data_mount = format!("{}:/var/lib/upid", data.display());
    let tokens_mount = format!("{}:/etc/upid/tokens:ro", tokens_file.display());
    let container = Container::run(
        &collector_name,
        &[
            "--network",
            &network.name,
            "-v",
            &data_mount,
            "-v",
            &tokens_mount,
            "-p",
            "127.0.0.1::7070",
            "-p",
            "127.0.0.1::7071",
            "-e",
            "UPID_LOG=info",
            COLLECTOR_IMAGE,
            "serve",
            "--tokens-file",
            "/etc/upid/tokens",
        ],
    );
    let placeholder: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let mut collector = CollectorBox {
        container,
        upid: Upid {
            grpc: placeholder,
            query_token,
        },
        metrics: placeholder,
    };
    collector.wait_ready(1);
    assert_eq!(
        collector.container.inspect("{{.Config.User}}"),
        "65532:65532",
        "the collector runs as upid"
    );

    // Workloads first, so every tick of every agent carries them; the
    // third runs as another user than root, as many real ones do (the
    // agents need SYS_PTRACE to find its network namespace).
    let workloads: Vec<Container> = (1..=3)
        .map(|i| {
            let name = format!("{prefix}-work-{i}");
            let memory = format!("{}m", 32 * i);
            let user = if i == 3 { "1000:1000" } else { "0:0" };
            Container::run(
                &name,
                &[
                    "--memory",
                    &memory,
                    "--user",
                    user,
                    &work_image.0,
                    "sleep",
                    "3600",
                ],
            )
        })
        .collect();

    let collector_url = format!("http://{collector_name}:7070");
    let spools: Vec<PathBuf> = NODES
        .iter()
        .map(|n| dir.path().join(format!("spool-{n}")))
        .collect();
    let token_files: Vec<PathBuf> = NODES
        .iter()
        .zip(&agent_tokens)
        .map(|(n, t)| {
            let f = dir.path().join(format!("token-{n}"));
            write_file(&f, &format!("{t}\n"), 0o600);
            f
        })
        .collect();
    let start_agent = |i: usize| {
        let spool = format!("{}:/var/lib/upid/spool", spools[i].display());
        let token = format!("{}:/etc/upid/token:ro", token_files[i].display());
        Container::run(
            &format!("{prefix}-agent-{}", i + 1),
            &[
                "--network",
                &network.name,
                "--pid",
                "host",
                "--cap-add",
                "SYS_PTRACE",
                "-v",
                "/proc:/host/proc:ro",
                "-v",
                "/sys/fs/cgroup:/host/sys/fs/cgroup:ro",
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                &spool,
                "-v",
                &token,
                "-e",
                "UPID_LOG=info",
                "-e",
                &format!("UPID_NODE_NAME={}", NODES[i]),
                AGENT_IMAGE,
                "run",
                "--collector",
                &collector_url,
                "--token-file",
                "/etc/upid/token",
                "--interval",
                "1s",
                "--drain-timeout",
                "30s",
            ],
        )
    };
    let agents: Vec<Container> = (0..NODES.len()).map(start_agent).collect();

    // 1. `upid` shows the three nodes, connected and delivering, and the
    //    workloads.
    wait_for(
        WAIT,
        "three nodes with three batches each in `upid get nodes`",
        || {
            let nodes = collector.upid.nodes();
            NODES
                .iter()
                .all(|n| {
                    nodes.get(*n).is_some_and(|v| {
                        v["connected"] == true && v["last_seq"].as_u64().unwrap_or(0) >= 3
                    })
                })
                .then_some(())
        },
    );
    let listed = wait_for(WAIT, "the workloads in `upid get containers`", || {
        let list = collector.upid.json(&["get", "containers"])?;
        let list = list.as_array()?.clone();
        workloads
            .iter()
            .all(|w| list.iter().any(|c| c["container_id"] == w.id.as_str()))
            .then_some(list)
    });
    for w in &workloads {
        let c = listed
            .iter()
            .find(|c| c["container_id"] == w.id.as_str())
            .expect("found above");
        assert!(
            NODES.contains(&c["node_name"].as_str().unwrap_or_default()),
            "a workload is reported by one of the three nodes: {c}"
        );
    }

    // 2. The collector is killed; the agents spool; it starts again on the
    //    same store.
    let before_kill: Vec<usize> = agents
        .iter()
        .map(|a| pending_while_unreachable(&a.log_lines()).len())
        .collect();
    docker(&["kill", &collector_name]);
    let killed_ns = now_ns();
    // Each agent finds it gone and spools four more ticks (its pending
    // count, logged at each failed reconnect, grows by four; the first of
    // them may have been taken a moment before `docker kill` returned).
    for (a, before) in agents.iter().zip(&before_kill) {
        a.wait_for_logs(
            "four ticks spooled while the collector is down",
            WAIT,
            |lines| {
                let pending = pending_while_unreachable(lines);
                let since_kill = pending.get(*before..)?;
                let first = since_kill.first()?;
                since_kill.iter().any(|p| *p >= first + 4).then_some(())
            },
        );
    }
    let restarted_ns = now_ns();
    docker(&["start", &collector_name]);
    collector.wait_ready(2);
    for node in NODES {
        collector.upid.wait_progress(
            node,
            "delivers ticks made while the collector was down",
            WAIT,
            |_, t| t > restarted_ns,
        );
    }

    // 3. Node 2 is cut off the network for several ticks (measured by
    //    node 1's ticks arriving). Meanwhile another container joins the
    //    network, so node 2 comes back with a new address, and its TCP
    //    connection to the collector is dead without a word (nothing of it
    //    reaches node 2 any more): HTTP/2 keepalive must notice, and the
    //    agent must reconnect and replay.
    let agent2 = &agents[1];
    let address = |c: &Container| {
        c.inspect(&format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            network.name
        ))
    };
    let old_address = address(agent2);
    let connections_before = agent2.count_log_lines("connected to the collector");
    let (seq1, _) = collector.upid.progress("node-1").expect("node-1 listed");
    docker(&["network", "disconnect", &network.name, &agent2.name]);
    let cut_ns = now_ns();
    let squatter = Container::run(
        &format!("{prefix}-squatter"),
        &["--network", &network.name, &work_image.0, "sleep", "3600"],
    );
    collector
        .upid
        .wait_progress("node-1", "ticks while node-2 is cut off", WAIT, |s, _| {
            s >= seq1 + OUTAGE_TICKS
        });
    let reconnected_ns = now_ns();
    docker(&["network", "connect", &network.name, &agent2.name]);
    let new_address = address(agent2);
    assert_ne!(
        new_address,
        old_address,
        "node-2 came back with a new address (the squatter has {})",
        address(&squatter)
    );
    collector.upid.wait_progress(
        "node-2",
        "delivers again after the outage",
        SILENT_DEATH_WAIT,
        |_, t| t > reconnected_ns,
    );
    let connections = agent2.count_log_lines("connected to the collector") - connections_before;
    eprintln!(
        "node-2 cut off for {:.1} s ({old_address} -> {new_address}), delivering again {:.1} s \
         after the reconnect, over {connections} new connection(s)",
        (reconnected_ns - cut_ns) as f64 / 1e9,
        (now_ns() - reconnected_ns) as f64 / 1e9,
    );
    assert!(
        connections >= 1,
        "node-2's old connection was dead, so it delivered over a new one"
    );

    // 4. Node 3's agent is restarted (SIGTERM, drain, start) with the same
    //    spool, so the same agent id.
    let agent3 = &agents[2];
    let (seq3, _) = collector.upid.progress("node-3").expect("node-3 listed");
    docker(&[
        "restart",
        "-t",
        &STOP_GRACE.as_secs().to_string(),
        &agent3.name,
    ]);
    collector
        .upid
        .wait_progress("node-3", "delivers after its restart", WAIT, |s, _| {
            s >= seq3 + 3
        });
    assert_eq!(
        agent3.count_log_lines("sampler ready"),
        2,
        "node-3's agent started twice"
    );

    // 5. Stop the agents (they drain their spools), check the collector's
    //    counters, stop it.
    for a in &agents {
        let code = a.stop(STOP_GRACE);
        assert_eq!(code, 0, "{} exit code", a.name);
    }
    let m = collector.scrape();
    let received = m.value("upid_collector_batches_received_total", &[]);
    let stored = m.value("upid_collector_batches_stored_total", &[]);
    let duplicates = m.value("upid_collector_batches_duplicate_total", &[]);
    assert_eq!(
        m.value("upid_collector_batches_rejected_total", &[]),
        0.0,
        "no batch of a real agent is malformed\n{}",
        m.text
    );
    assert_eq!(
        received,
        stored + duplicates,
        "every batch received since the restart is stored or a duplicate\n{}",
        m.text
    );
    assert_eq!(
        m.value("upid_collector_agent_spool_dropped_batches", &[]),
        0.0,
        "no agent reported spool drops\n{}",
        m.text
    );
    let code = collector.container.stop(STOP_GRACE);
    assert_eq!(code, 0, "the collector exits cleanly on SIGTERM");
    for w in &workloads {
        docker(&["rm", "-f", &w.name]);
    }

    // 6. The spools and the store.
    let facts: Vec<(&str, SpoolFacts)> = NODES
        .iter()
        .zip(&spools)
        .map(|(n, s)| (*n, spool_facts(s)))
        .collect();
    eprintln!(
        "spools: {facts:?}; second collector received {received}, stored {stored}, duplicates {duplicates}"
    );
    let store_path = data.join("upid.duckdb");
    assert_exactly_once(&store_path, &facts);
    let conn = store::open(&store_path);

    // Every workload in every tick of every agent, once.
    let batches: u64 = facts.iter().map(|(_, f)| f.last_seq).sum();
    for w in &workloads {
        let samples = store::count(
            &conn,
            &format!(
                "SELECT count(*) FROM container_samples JOIN containers USING (container_sk) \
                 WHERE container_id = '{}'",
                w.id
            ),
        );
        assert_eq!(
            samples as u64, batches,
            "samples of workload {} (every batch of the three agents carries it)",
            w.name
        );
        let without_netns = store::count(
            &conn,
            &format!(
                "SELECT count(*) FROM container_samples JOIN containers USING (container_sk) \
                 WHERE container_id = '{}' AND netns_inode IS NULL",
                w.id
            ),
        );
        assert_eq!(
            without_netns, 0,
            "samples of workload {} without its network namespace",
            w.name
        );
    }

    // Ticks made while the collector was down: stored, and received only
    // after it was back.
    for node in NODES {
        let (made, early) = window(&conn, node, killed_ns, restarted_ns);
        eprintln!("{node} made {made} ticks while the collector was down");
        assert!(
            made >= 3,
            "{node}: ticks made while the collector was down are stored ({made})"
        );
        assert_eq!(
            early, 0,
            "{node}: {early} of them were received before the collector came back"
        );
    }
    // Ticks node-2 made while cut off: stored, and received only after it
    // was reconnected.
    let (made, early) = window(&conn, "node-2", cut_ns, reconnected_ns);
    eprintln!("node-2 made {made} ticks while cut off");
    assert!(
        made >= 3,
        "node-2: ticks made while it was cut off are stored ({made})"
    );
    assert_eq!(
        early, 0,
        "node-2: {early} of them were received while it was cut off"
    );
    // Dropped in reverse order: the containers, then the network.
}

/// Of `node`'s stored batches ticked strictly between `from_ns` and
/// `to_ns`: how many there are, and how many the collector received
/// before `to_ns`.
fn window(conn: &duckdb::Connection, node: &str, from_ns: i64, to_ns: i64) -> (u64, u64) {
    let made = store::count(
        conn,
        &format!(
            "SELECT count(*) FROM batches WHERE node_name = '{node}' \
             AND tick_unix_ns > {from_ns} AND tick_unix_ns < {to_ns}"
        ),
    );
    let early = store::count(
        conn,
        &format!(
            "SELECT count(*) FROM batches WHERE node_name = '{node}' \
             AND tick_unix_ns > {from_ns} AND tick_unix_ns < {to_ns} AND received_unix_ns < {to_ns}"
        ),
    );
    (made as u64, early as u64)
}

/// Asserts that the store holds exactly batches 1..=last_seq of each agent
/// (its spool says how many it made), each once, from its node, with one
/// node sample each and exactly the container samples the batches carried;
/// and that no spool dropped or kept anything.
fn assert_exactly_once(store_path: &Path, agents: &[(&str, SpoolFacts)]) {
    let conn = store::open(store_path);
    let stored = store::seqs_by_agent(&conn);
    assert_eq!(
        stored.len(),
        agents.len(),
        "one agent id per node, kept across the restart: {:?}",
        stored.keys().collect::<Vec<_>>()
    );
    for (node, facts) in agents {
        let (stored_node, seqs) = stored
            .get(&facts.agent_id)
            .unwrap_or_else(|| panic!("nothing stored for {node} ({})", facts.agent_id));
        assert_eq!(stored_node, node, "node name of agent {}", facts.agent_id);
        assert!(
            facts.last_seq >= 10,
            "{node} made only {} batches",
            facts.last_seq
        );
        let expected: Vec<u64> = (1..=facts.last_seq).collect();
        assert_eq!(
            seqs, &expected,
            "{node} made batches 1..={} (its spool says so); the store must hold each exactly once",
            facts.last_seq
        );
        assert_eq!(
            facts.pending_batches, 0,
            "{node} left batches unacknowledged"
        );
        assert_eq!(facts.dropped_batches, 0, "{node}'s spool dropped batches");
        let node_rows = store::count(
            &conn,
            &format!("SELECT count(*) FROM node_samples WHERE node_name = '{node}'"),
        );
        let distinct_ticks = store::count(
            &conn,
            &format!(
                "SELECT count(DISTINCT ts_unix_ns) FROM node_samples WHERE node_name = '{node}'"
            ),
        );
        assert_eq!(node_rows as u64, facts.last_seq, "node samples of {node}");
        assert_eq!(distinct_ticks, node_rows, "a tick of {node} stored twice");
        let reported_drops = store::count(
            &conn,
            &format!(
                "SELECT coalesce(sum(spool_dropped_batches_total), 0)::BIGINT FROM agents \
                 WHERE agent_id = '{}'",
                facts.agent_id
            ),
        );
        assert_eq!(reported_drops, 0, "{node} reported spool drops");
    }
    let carried = store::count(
        &conn,
        "SELECT coalesce(sum(containers), 0)::BIGINT FROM batches",
    );
    let rows = store::count(&conn, "SELECT count(*) FROM container_samples");
    let distinct = store::count(
        &conn,
        "SELECT count(*) FROM (SELECT DISTINCT container_sk, ts_unix_ns FROM container_samples)",
    );
    assert_eq!(
        rows, carried,
        "container_samples rows vs batches.containers"
    );
    assert_eq!(distinct, rows, "a container sample stored twice");
    let total = store::count(&conn, "SELECT count(*) FROM batches");
    let made: u64 = agents.iter().map(|(_, f)| f.last_seq).sum();
    assert_eq!(total as u64, made, "batches stored vs batches made");
}

/// `deploy/compose/docker-compose.yaml` is valid for `docker-compose`
/// (1.29, what Debian ships), with the images, mounts and wiring
/// docs/images.md describes; a misspelled key in a copy of it is refused,
/// so the check can fail. Skips loudly without `docker-compose`; with
/// `CI=true` it fails instead (`.ci/run` installs it).
#[test]
fn the_compose_file_is_valid_for_docker_compose() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !upid_e2e::have("docker-compose") {
        assert!(!ci, "CI=true but docker-compose is not installed");
        upid_e2e::skip_unless(false, "docker-compose is not installed");
        return;
    }
    let file = images::repo_root().join("deploy/compose/docker-compose.yaml");
    let compose = |file: &Path, args: &[&str]| {
        Command::new("docker-compose")
            .arg("-f")
            .arg(file)
            .args(args)
            .env_remove("UPID_NODE_NAME")
            .env_remove("UPID_INTERVAL")
            .env_remove("UPID_PUBLISH_GRPC")
            .env_remove("UPID_PUBLISH_METRICS")
            .output()
            .expect("running docker-compose")
    };
    let out = compose(&file, &["config"]);
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = String::from_utf8_lossy(&out.stdout);
    let services = compose(&file, &["config", "--services"]);
    let mut names: Vec<String> = String::from_utf8_lossy(&services.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, ["agent", "collector"], "{config}");
    for expected in [
        "image: upid/agent:0.1.0",
        "image: upid/collector:0.1.0",
        "- /proc:/host/proc:ro",
        "- /sys/fs/cgroup:/host/sys/fs/cgroup:ro",
        "- /var/run/docker.sock:/var/run/docker.sock:rw",
        "- agent-spool:/var/lib/upid/spool:rw",
        "- collector-data:/var/lib/upid:rw",
        "/tokens:/etc/upid/tokens:ro",
        "/agent-token:/etc/upid/agent-token:ro",
        "- --collector=http://collector:7070",
        "- --token-file=/etc/upid/agent-token",
        "- --tokens-file",
        "pid: host",
        "- SYS_PTRACE",
        "- SYSLOG",
        "- /dev/kmsg:/dev/kmsg:r",
        "UPID_NODE_NAME: docker-host",
        "- 127.0.0.1:7070:7070/tcp",
        "- 127.0.0.1:7071:7071/tcp",
    ] {
        assert!(
            config.lines().any(|l| l.trim_end().ends_with(expected)),
            "`docker-compose config` lacks {expected:?}:\n{config}"
        );
    }

    // The same file with one key misspelled is refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("docker-compose.yaml");
    let text = std::fs::read_to_string(&file).expect("read the compose file");
    assert!(text.contains("    read_only: true\n"), "{text}");
    std::fs::write(
        &broken,
        text.replacen("    read_only: true\n", "    read_olny: true\n", 1),
    )
    .expect("write the broken copy");
    let out = compose(&broken, &["config", "-q"]);
    assert!(
        !out.status.success(),
        "docker-compose accepted a misspelled key: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read_olny"),
        "the error names the key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A compose project started from a copy of the compose file; `down -v`
/// when dropped (its logs first when dropped during a panic).
struct ComposeProject {
    file: PathBuf,
    name: String,
    env: Vec<(String, String)>,
}

impl ComposeProject {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        run(&mut self.command(args))
    }

    /// The id of the container of `service`.
    fn container(&self, service: &str) -> String {
        self.run(&["ps", "-q", service]).trim().to_string()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(out) = self
                .command(&["logs", "--no-color", "--tail", "60"])
                .output()
        {
            eprintln!(
                "----- docker-compose logs of {} -----\n{}----- end -----",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let _ = self.command(&["down", "-v", "--timeout", "60"]).output();
    }
}

/// `deploy/compose/docker-compose.yaml`, as its header says to use it
/// (token files beside it, the collector's owned by 65532), brings up a
/// collector and an agent on this host: `upid` sees the node connected and
/// delivering, and the collector container (uid 65532, read-only root
/// filesystem) with its network traffic (which needs the agent's host PID
/// namespace and SYS_PTRACE). Both stop cleanly. Published ports are
/// moved to free ones with the file's variables.
#[test]
fn the_compose_file_runs_a_collector_and_an_agent_that_delivers() {
    if images::skip_without_docker_and_root() {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !upid_e2e::have("docker-compose") {
        assert!(!ci, "CI=true but docker-compose is not installed");
        upid_e2e::skip_unless(false, "docker-compose is not installed");
        return;
    }
    images::build_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("docker-compose.yaml");
    std::fs::copy(
        images::repo_root().join("deploy/compose/docker-compose.yaml"),
        &file,
    )
    .expect("copy the compose file");
    let (agent, query) = (token(), token());
    write_file(
        &dir.path().join("agent-token"),
        &format!("{agent}\n"),
        0o600,
    );
    let query_token = dir.path().join("query-token");
    write_file(&query_token, &format!("{query}\n"), 0o600);
    let tokens = dir.path().join("tokens");
    write_file(
        &tokens,
        &format!("agent {agent} agent\nops {query} query\n"),
        0o400,
    );
    run(Command::new("chown").arg("65532:65532").arg(&tokens));

    let node = format!("compose-{}", std::process::id());
    let grpc: SocketAddr = format!("127.0.0.1:{}", upid_e2e::harness::free_port())
        .parse()
        .expect("addr");
    let metrics = format!("127.0.0.1:{}", upid_e2e::harness::free_port());
    let project = ComposeProject {
        file,
        name: format!("upid-compose-{}", std::process::id()),
        env: vec![
            ("UPID_NODE_NAME".into(), node.clone()),
            ("UPID_INTERVAL".into(), "1s".into()),
            ("UPID_PUBLISH_GRPC".into(), grpc.to_string()),
            ("UPID_PUBLISH_METRICS".into(), metrics),
        ],
    };
    project.run(&["up", "-d"]);
    let collector_id = project.container("collector");
    let agent_id = project.container("agent");
    for (id, user) in [(&collector_id, "65532:65532"), (&agent_id, "0:0")] {
        let seen = docker(&[
            "inspect",
            "--format",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}",
            id,
        ]);
        assert_eq!(
            seen,
            format!("{user} true"),
            "user and read-only root of {id}"
        );
    }

    let upid = Upid { grpc, query_token };
    wait_for(WAIT, "the node delivering in `upid get nodes`", || {
        upid.nodes()
            .get(&node)
            .filter(|n| n["connected"] == true && n["last_seq"].as_u64().unwrap_or(0) >= 3)
            .cloned()
    });
    let seen = wait_for(
        WAIT,
        "the collector container with its traffic in `upid get containers`",
        || {
            let list = upid.json(&["get", "containers"])?;
            list.as_array()?
                .iter()
                .find(|c| {
                    c["container_id"] == collector_id.as_str()
                        && c["net_rx_bytes_per_s"].as_f64().is_some_and(|r| r > 0.0)
                })
                .cloned()
        },
    );
    assert_eq!(seen["node_name"], node.as_str(), "{seen}");
    assert_eq!(seen["workload"], "compose/collector", "{seen}");
    // The kernel log device and SYSLOG are enough to follow OOM kills.
    let out = Command::new("docker")
        .args(["logs", &agent_id])
        .output()
        .expect("docker logs");
    // The agent logs to stderr, which `docker logs` replays as its own.
    let logs =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        logs.contains("following the kernel log for OOM kills")
            && !logs.contains("cannot read the kernel log"),
        "the agent container follows /dev/kmsg:\n{logs}"
    );

    project.run(&["stop", "--timeout", "60"]);
    for id in [&collector_id, &agent_id] {
        assert_eq!(
            docker(&["inspect", "--format", "{{.State.ExitCode}}", id]),
            "0",
            "{id} stops cleanly"
        );
    }
}

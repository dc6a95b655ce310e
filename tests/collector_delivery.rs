//! Delivery from real agents to a real collector: nothing acknowledged is
//! lost and nothing is stored twice, across `kill -9` of either side; spool
//! losses are reported; a full disk or a damaged spool file is not fatal.
//!
//! Every process is real (`upid-collector serve`, `upid-agent run` sampling
//! this host) on loopback; the store is checked afterwards with plain SQL.
//! Run as root, the agents also sample test cgroups, so batches carry
//! container samples; unprivileged they carry only node samples (said
//! loudly), and the disk-full test, which mounts a tmpfs, skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use upid::wire::v1::ListNodesRequest;
use upid_e2e::harness::grpc::{self, connect, query_client};
use upid_e2e::harness::{
    self, Collector, Proc, SpoolFacts, Stream, agent, free_port, serve, spool_facts, store,
};
use upid_e2e::{is_root, skip_unless, wait_for};

const MINUTE: Duration = Duration::from_secs(60);

/// The seqs stored per agent id, ascending, with the agent's node name.
fn stored_seqs(store_path: &Path) -> BTreeMap<String, (String, Vec<u64>)> {
    store::seqs_by_agent(&store::open(store_path))
}

/// Waits until the collector has `n` agents connected and has stored at
/// least `at_least` batches since it started.
fn wait_streaming(c: &Collector, n: f64, at_least: f64) {
    c.wait_for_metrics(
        &format!("{n} agents connected and {at_least} batches stored"),
        MINUTE,
        |m| {
            m.value("upid_collector_agents_connected", &[]) == n
                && m.value("upid_collector_batches_stored_total", &[]) >= at_least
        },
    );
}

/// Waits until the agent, failing to reach the collector, says it holds at
/// least `pending` unacknowledged batches, in a log line after the first
/// `skip` lines of its stderr.
fn wait_spooling(agent: &Proc, skip: usize, pending: u64) {
    wait_for(
        MINUTE,
        &format!(
            "{} to spool {pending} batches while the collector is down",
            agent.name()
        ),
        || {
            agent
                .lines(Stream::Stderr)
                .iter()
                .skip(skip)
                .filter(|l| l.contains("collector unreachable"))
                .filter_map(|l| {
                    l.split("pending=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .any(|p| p >= pending)
                .then_some(())
        },
    );
}

/// Asserts that the store holds exactly batches 1..=last_seq of each agent,
/// each once, with exactly the samples those batches carried.
fn assert_exactly_once(store_path: &Path, agents: &[(&str, SpoolFacts)]) {
    let conn = store::open(store_path);
    let stored = store::seqs_by_agent(&conn);
    for (node, facts) in agents {
        let (stored_node, seqs) = stored
            .get(&facts.agent_id)
            .unwrap_or_else(|| panic!("nothing stored for {node} ({})", facts.agent_id));
        assert_eq!(stored_node, node, "node name of agent {}", facts.agent_id);
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
        // One node sample per batch, none twice.
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
        // The agent's row agrees with the ledger, though a crash lost what
        // the collector held back of it (rebuilt when the store opened).
        let (last_seq, batches_stored) = store::count_pair(
            &conn,
            &format!(
                "SELECT last_seq::BIGINT, batches_stored::BIGINT FROM agents \
                 WHERE agent_id = '{}'",
                facts.agent_id
            ),
        );
        assert_eq!(
            (last_seq as u64, batches_stored as u64),
            (facts.last_seq, facts.last_seq),
            "agents row of {node}: last_seq, batches_stored"
        );
    }
    // Container samples: exactly what the stored batches say they carried,
    // and no container sampled twice at the same instant.
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
    let counted = store::count(
        &conn,
        "SELECT coalesce(sum(samples_stored), 0)::BIGINT FROM containers",
    );
    assert_eq!(
        counted, rows,
        "containers.samples_stored vs container_samples rows"
    );
    let total = store::count(&conn, "SELECT count(*) FROM batches");
    let made: u64 = agents.iter().map(|(_, f)| f.last_seq).sum();
    assert_eq!(total as u64, made, "batches stored vs batches made");
}

/// Test cgroups the agents sample when this runs as root (`None` and a
/// loud note otherwise).
fn sampled_cgroups(prefix: &str) -> Option<harness::agent::SampledCgroups> {
    if skip_unless(
        is_root(),
        "not root: no test cgroups, so batches carry node samples only (container samples unchecked)",
    ) {
        return None;
    }
    Some(harness::agent::sampled_cgroups(prefix, 3))
}

#[test]
fn every_batch_is_stored_exactly_once_across_crashes_of_the_collector_and_an_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("upid.duckdb");
    let listen = format!("127.0.0.1:{}", free_port());
    let cgroups = sampled_cgroups("upid-e2e-delivery");
    let glob: Vec<String> = cgroups
        .iter()
        .flat_map(|c| ["--cgroup-glob".to_string(), c.glob.clone()])
        .collect();

    let collector = serve(&store_path).listen(&listen).start();
    let url = collector.url();
    let nodes = ["node-a", "node-b", "node-c"];
    let spools: Vec<PathBuf> = nodes
        .iter()
        .map(|n| dir.path().join(format!("spool-{n}")))
        .collect();
    let start_agent = |i: usize| agent(nodes[i], &url, &spools[i]).args(&glob).start();
    let mut agents: Vec<Proc> = (0..nodes.len()).map(start_agent).collect();
    wait_streaming(&collector, 3.0, 6.0);

    // The collector crashes; the agents keep sampling into their spools.
    let stored_before_crash = collector
        .scrape()
        .value("upid_collector_batches_stored_total", &[]);
    collector.crash();
    let logged: Vec<usize> = agents
        .iter()
        .map(|a| a.lines(Stream::Stderr).len())
        .collect();
    for (a, skip) in agents.iter().zip(logged) {
        wait_spooling(a, skip, 3);
    }

    // It comes back on the same port with the same store.
    let collector = serve(&store_path).listen(&listen).start();
    wait_streaming(&collector, 3.0, 3.0);

    // An agent crashes and restarts with the same spool; what it makes
    // after the restart arrives.
    let last_seq_b = wait_for(MINUTE, "node-b to deliver again", || {
        node_last_seq(&collector, "node-b").filter(|s| *s > 0)
    });
    agents[1].kill9();
    agents[1] = start_agent(1);
    wait_for(MINUTE, "node-b to deliver after its restart", || {
        node_last_seq(&collector, "node-b").filter(|s| *s >= last_seq_b + 3)
    });

    // Each agent stops on SIGTERM after delivering what it spooled.
    for a in &mut agents {
        let status = a.terminate(MINUTE);
        assert!(status.success(), "{} exited with {status}", a.name());
    }
    let facts: Vec<(&str, SpoolFacts)> = nodes
        .iter()
        .zip(&spools)
        .map(|(n, s)| (*n, spool_facts(s)))
        .collect();

    // The second collector's counters agree with what it got.
    let m = collector.scrape();
    let received = m.value("upid_collector_batches_received_total", &[]);
    let stored = m.value("upid_collector_batches_stored_total", &[]);
    let duplicates = m.value("upid_collector_batches_duplicate_total", &[]);
    let rejected = m.value("upid_collector_batches_rejected_total", &[]);
    assert_eq!(
        rejected, 0.0,
        "no batch of a real agent is malformed\n{}",
        m.text
    );
    assert_eq!(
        received,
        stored + duplicates,
        "every batch received is stored or a duplicate\n{}",
        m.text
    );
    collector.stop();
    eprintln!(
        "made {:?}; first collector stored >= {stored_before_crash}, second received {received}, stored {stored}, duplicates {duplicates}",
        facts
            .iter()
            .map(|(n, f)| (n, f.last_seq))
            .collect::<Vec<_>>()
    );

    assert_exactly_once(&store_path, &facts);
    let made: u64 = facts.iter().map(|(_, f)| f.last_seq).sum();
    if let Some(c) = &cgroups {
        // Every batch carried the test cgroups, each stored once.
        let like = c.glob.replace('*', "%");
        let samples = store::count(
            &store::open(&store_path),
            &format!(
                "SELECT count(*) FROM container_samples JOIN containers USING (container_sk) \
                 WHERE cgroup_path LIKE '{like}'"
            ),
        );
        assert_eq!(
            samples as u64,
            made * c.cgroups.len() as u64,
            "test cgroup samples"
        );
    }
    assert!(
        made as f64 - stored >= stored_before_crash,
        "the first collector stored at least the {stored_before_crash} batches it reported \
         (made {made}, the second stored {stored})"
    );
    drop(cgroups);
}

/// The highest seq the collector stored from the agent of `node`.
fn node_last_seq(collector: &Collector, node: &str) -> Option<u64> {
    rt_list_nodes(&collector.url())
        .into_iter()
        .find(|n| n.node_name == node)
        .map(|n| n.last_seq)
}

/// ListNodes on a plain-text collector.
fn rt_list_nodes(url: &str) -> Vec<upid::wire::v1::Node> {
    grpc::runtime().block_on(async {
        let channel = connect(url, None).await.expect("connect");
        query_client(channel, None)
            .list_nodes(ListNodesRequest {})
            .await
            .expect("ListNodes")
            .into_inner()
            .nodes
    })
}

#[test]
fn batches_the_spool_had_to_drop_are_reported_to_the_collector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("upid.duckdb");
    let spool = dir.path().join("spool");
    let listen = format!("127.0.0.1:{}", free_port());

    // No collector yet: a tiny spool must drop its oldest batches.
    let mut a = agent("node-drop", &format!("http://{listen}"), &spool)
        .args(["--spool-max-kib", "2"])
        .start();
    a.wait_for_line(
        Stream::Stderr,
        "the spool to drop batches",
        2 * MINUTE,
        |l| l.contains("spool full").then_some(()),
    );

    let collector = serve(&store_path).listen(&listen).start();
    collector.wait_for_metrics("the agent's spool losses in /metrics", 2 * MINUTE, |m| {
        m.value(
            "upid_collector_agent_spool_dropped_batches",
            &[("node", "node-drop")],
        ) > 0.0
    });
    // /metrics shows a batch's report when it arrives, ListNodes once it
    // is committed: poll rather than race the writer.
    wait_for(MINUTE, "ListNodes to report the drops", || {
        rt_list_nodes(&collector.url())
            .into_iter()
            .find(|n| n.node_name == "node-drop")
            .filter(|n| n.spool_dropped_batches_total > 0)
    });

    let status = a.terminate(MINUTE);
    assert!(status.success(), "agent exit: {status}");
    collector.stop();
    let facts = spool_facts(&spool);
    assert!(facts.dropped_batches > 0, "{facts:?}");
    let stored = stored_seqs(&store_path);
    let (_, seqs) = &stored[&facts.agent_id];
    assert!(
        seqs[0] > 1,
        "the oldest batches were dropped by the spool, so seq 1 never arrived: {seqs:?}"
    );
    // A batch still unacknowledged when the drain timed out stays in the
    // spool for the next start, and a batch the spool dropped while it was
    // already on the wire may still have been stored: so the count a user
    // relies on is that no batch is unaccounted for, not an equality.
    let unaccounted = facts
        .last_seq
        .saturating_sub(seqs.len() as u64 + facts.pending_batches);
    assert!(
        unaccounted <= facts.dropped_batches,
        "every batch made is stored, still in the spool, or counted as dropped: \
         made {}, stored {}, spooled {}, dropped {}",
        facts.last_seq,
        seqs.len(),
        facts.pending_batches,
        facts.dropped_batches
    );
    assert!(
        seqs.iter().all(|&s| s <= facts.last_seq) && seqs.windows(2).all(|w| w[0] < w[1]),
        "stored seqs are distinct and were made by the agent: {seqs:?}"
    );
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct TinyTmpfs(PathBuf);

impl TinyTmpfs {
    fn mount(dir: &Path, size: &str) -> TinyTmpfs {
        std::fs::create_dir_all(dir).expect("mkdir");
        upid_e2e::run(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
        );
        TinyTmpfs(dir.to_path_buf())
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = [0u8; 4096];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
}

#[test]
fn a_full_disk_under_the_spool_is_reported_and_delivery_goes_on() {
    if skip_unless(is_root(), "mounting a tmpfs needs root") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("upid.duckdb");
    let mount = dir.path().join("tiny");
    let tmpfs = TinyTmpfs::mount(&mount, "256k");
    let spool = mount.join("spool");
    let listen = format!("127.0.0.1:{}", free_port());
    // Batches of a few KiB (ten cgroups each) use up the last free page of
    // the spool's segment file within a tick or two.
    let cgroups = harness::agent::sampled_cgroups("upid-e2e-diskfull", 10);

    let mut a = agent("node-full", &format!("http://{listen}"), &spool)
        .args(["--cgroup-glob", &cgroups.glob])
        .start();
    wait_for(MINUTE, "the agent to create its spool", || {
        spool.join("state").exists().then_some(())
    });
    fill_disk(&mount.join("filler"));
    let failed_seq: u64 = a.wait_for_line(
        Stream::Stderr,
        "a spool write to fail for lack of space",
        MINUTE,
        |l| {
            if !l.contains("spool disk full") {
                return None;
            }
            let at = l.find("spooling batch seq ")? + "spooling batch seq ".len();
            l[at..].split(' ').next()?.parse().ok()
        },
    );

    // The collector appears; batches made while the disk stays full still
    // arrive (sent from memory).
    let collector = serve(&store_path).listen(&listen).start();
    wait_for(
        2 * MINUTE,
        "batches made on the full disk to arrive",
        || node_last_seq(&collector, "node-full").filter(|s| *s >= failed_seq + 3),
    );
    assert!(a.is_running(), "a full disk is not fatal:\n{}", a.output());

    let status = a.terminate(MINUTE);
    assert!(status.success(), "agent exit: {status}\n{}", a.output());
    collector.stop();
    drop(tmpfs);
    drop(cgroups);
}

#[test]
fn a_damaged_spool_file_is_reported_and_delivery_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("upid.duckdb");
    let spool = dir.path().join("spool");
    let unreachable = format!("http://127.0.0.1:{}", free_port());

    // A first run with no collector: --count fails, its batches stay spooled.
    let mut first = agent("node-damaged", &unreachable, &spool)
        .args(["--count", "6", "--drain-timeout", "1s"])
        .start();
    let status = first.wait_exit(MINUTE);
    assert!(
        !status.success(),
        "nothing was delivered, so --count must fail"
    );
    assert!(
        first.output().contains("were not acknowledged"),
        "a clear message: {}",
        first.output()
    );
    let before = spool_facts(&spool);
    assert_eq!(
        (before.last_seq, before.pending_batches),
        (6, 6),
        "{before:?}"
    );

    // Garbage lands in the middle of the segment file.
    let segment = std::fs::read_dir(&spool)
        .expect("spool dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 24] {
        *b = 0xA5;
    }
    std::fs::write(&segment, &bytes).expect("write segment");

    // The next run reports the damage and delivers the rest.
    let collector = serve(&store_path).start();
    let mut second = agent("node-damaged", &collector.url(), &spool)
        .args(["--count", "3"])
        .start();
    let status = second.wait_exit(2 * MINUTE);
    assert!(
        status.success(),
        "the second run delivers everything it can: {status}\n{}",
        second.output()
    );
    assert!(
        second.output().contains("the spool was damaged"),
        "the damage is reported:\n{}",
        second.output()
    );
    collector.stop();

    let after = spool_facts(&spool);
    assert_eq!(
        after.agent_id, before.agent_id,
        "same agent after the damage"
    );
    let stored = stored_seqs(&store_path);
    let (_, seqs) = &stored[&after.agent_id];
    assert!(
        seqs.ends_with(&[7, 8, 9]),
        "the new batches arrive after the damaged ones: {seqs:?}"
    );
    assert!(
        seqs.len() < 9 && seqs.len() >= 4,
        "only the damaged batch(es) are missing: {seqs:?}"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "no duplicates: {seqs:?}"
    );
}

//! The DuckDB store against real database files in temporary directories:
//! exact round trips, exactly-once ingest across reopen, rollback of a failed
//! group, rates with counter resets, lookups, and the writer thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod float_eq;

use upid::model;
use upid::wire::v1::{
    Batch, CgroupIdentity, CgroupLayout, ContainerSample, CpuStats, Hello, IoStats, MemoryStats,
    NetworkSample, NodeSample, PeakSource, PidsStats, Pressure, PressureStats, QosClass, Runtime,
    Snapshot, SpoolStats,
};
use upid_collector::store::{
    IngestOutcome, QueryError, RejectReason, Store, StoreError, Writer, WriterConfig, WriterError,
};

const T0: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "upid-store-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn docker_id(fill: &str) -> String {
    fill.repeat(64 / fill.len())
}

fn node(name: &str, ts: i64) -> NodeSample {
    NodeSample {
        node_name: name.into(),
        timestamp_unix_ns: ts,
        boot_time_unix_s: 1_699_000_000,
        cpu_count: 8,
        cpu_total_ns: 123_456_789_000,
        cpu_idle_ns: 100_000_000_000,
        memory_total_bytes: 32 << 30,
        memory_available_bytes: 20 << 30,
        load1: 1.5,
        load5: 1.25,
        load15: 1.0,
        pressure: Some(Pressure {
            cpu: Some(PressureStats {
                some_total_us: 5,
                full_total_us: None,
            }),
            memory: None,
            io: Some(PressureStats {
                some_total_us: 7,
                full_total_us: Some(3),
            }),
        }),
        cgroup_layout: CgroupLayout::V2 as i32,
    }
}

/// A Docker container sample with every field set.
fn full_sample(id: &str, ts: i64) -> ContainerSample {
    ContainerSample {
        identity: Some(CgroupIdentity {
            cgroup_path: format!("/system.slice/docker-{id}.scope"),
            runtime: Runtime::Docker as i32,
            container_id: id.into(),
            pod_uid: "5f1c-pod".into(),
            qos: QosClass::Burstable as i32,
            unit: String::new(),
        }),
        timestamp_unix_ns: ts,
        cpu: Some(CpuStats {
            usage_ns: 10_000_000_000,
            user_ns: Some(6_000_000_000),
            system_ns: Some(4_000_000_000),
            periods: 100,
            throttled_periods: 3,
            throttled_ns: 9_000,
            limit_millicores: Some(1500),
            shares: Some(1024),
        }),
        memory: Some(MemoryStats {
            usage_bytes: 100 << 20,
            working_set_bytes: 80 << 20,
            rss_bytes: 60 << 20,
            cache_bytes: 40 << 20,
            swap_bytes: None,
            limit_bytes: Some(256 << 20),
            peak_bytes: 120 << 20,
            peak_source: PeakSource::KernelReset as i32,
            oom_kills: 2,
        }),
        io: Some(IoStats {
            read_bytes: 1,
            write_bytes: 2,
            read_ops: 3,
            write_ops: 4,
        }),
        pids: Some(PidsStats {
            current: 5,
            limit: None,
        }),
        pressure: Some(Pressure {
            cpu: Some(PressureStats {
                some_total_us: 11,
                full_total_us: Some(12),
            }),
            memory: Some(PressureStats {
                some_total_us: 13,
                full_total_us: None,
            }),
            io: None,
        }),
        netns_inode: Some(4_026_532_000),
    }
}

/// A systemd service sample: no container id, only CPU and memory.
fn service_sample(unit: &str, ts: i64) -> ContainerSample {
    ContainerSample {
        identity: Some(CgroupIdentity {
            cgroup_path: format!("/system.slice/{unit}"),
            runtime: Runtime::Systemd as i32,
            unit: unit.into(),
            ..Default::default()
        }),
        timestamp_unix_ns: ts,
        cpu: Some(CpuStats {
            usage_ns: 1_000,
            ..Default::default()
        }),
        memory: Some(MemoryStats {
            usage_bytes: 10,
            working_set_bytes: 9,
            peak_bytes: 11,
            peak_source: PeakSource::Sampled as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container sample with the counters rate tests look at.
#[allow(clippy::too_many_arguments)]
fn counters_sample(
    id: &str,
    ts: i64,
    usage_ns: u64,
    periods: u64,
    throttled_periods: u64,
    oom_kills: u64,
    working_set_bytes: u64,
    peak_bytes: u64,
    netns_inode: Option<u64>,
) -> ContainerSample {
    ContainerSample {
        identity: Some(CgroupIdentity {
            cgroup_path: format!("/docker/{id}"),
            runtime: Runtime::Docker as i32,
            container_id: id.into(),
            ..Default::default()
        }),
        timestamp_unix_ns: ts,
        cpu: Some(CpuStats {
            usage_ns,
            periods,
            throttled_periods,
            ..Default::default()
        }),
        memory: Some(MemoryStats {
            usage_bytes: working_set_bytes,
            working_set_bytes,
            peak_bytes,
            peak_source: PeakSource::KernelReset as i32,
            oom_kills,
            ..Default::default()
        }),
        netns_inode,
        ..Default::default()
    }
}

fn net(netns_inode: u64, rx_bytes: u64) -> NetworkSample {
    NetworkSample {
        netns_inode,
        rx_bytes,
        tx_bytes: 2 * rx_bytes,
        rx_packets: 1,
        tx_packets: 2,
        rx_dropped: 3,
        tx_dropped: 4,
    }
}

fn batch(
    agent: &str,
    node_name: &str,
    seq: u64,
    tick: i64,
    containers: Vec<ContainerSample>,
    networks: Vec<NetworkSample>,
) -> Batch {
    Batch {
        inventory: None,
        agent_id: agent.into(),
        node_name: node_name.into(),
        seq,
        snapshot: Some(Snapshot {
            node: Some(node(node_name, tick)),
            containers,
            networks,
            malformed_skips: 1,
            vanished: 2,
        }),
        spool: Some(SpoolStats {
            dropped_batches_total: 7,
            dropped_bytes_total: 7000,
            pending_batches: seq,
            pending_bytes: 100,
        }),
    }
}

fn stored(containers: usize, networks: usize) -> IngestOutcome {
    IngestOutcome::Stored {
        container_samples: containers,
        network_samples: networks,
    }
}

/// Counts rows with a plain DuckDB connection (the store must be closed).
fn count(path: &Path, sql: &str) -> i64 {
    let conn = duckdb::Connection::open(path).expect("open raw");
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

fn approx(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("a value");
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected}, got {actual}"
    );
}

#[test]
fn a_batch_round_trips_with_exact_values() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    let id = docker_id("0123456789abcdef");
    let sample = full_sample(&id, T0 + 5);
    let b = batch(
        "agent-1",
        "node-a",
        1,
        T0,
        vec![sample.clone(), service_sample("cron.service", T0 + 6)],
        vec![net(4_026_532_000, 9)],
    );
    let mut store = Store::open(&path).expect("open");
    assert_eq!(
        store.ingest_at(&[b], T0 + SEC).expect("ingest"),
        vec![stored(2, 1)]
    );
    assert_eq!(store.last_stored_seq("agent-1"), 1);
    let reader = store.reader().expect("reader");

    let nodes = reader.list_nodes().expect("nodes");
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0];
    assert_eq!(n.node_name, "node-a");
    assert_eq!(n.agent_id, "agent-1");
    assert_eq!(n.cgroup_layout, Some(model::CgroupLayout::V2));
    assert_eq!(n.cpu_count, 8);
    assert_eq!(n.memory_total_bytes, 32 << 30);
    assert_eq!(n.boot_time_unix_s, 1_699_000_000);
    assert_eq!((n.first_seen_unix_ns, n.last_seen_unix_ns), (T0, T0));
    assert_eq!(n.agent_last_seen_unix_ns, T0 + SEC);
    assert_eq!(n.last_seq, 1);
    assert_eq!(n.containers, 2);
    assert_eq!(n.spool_dropped_batches_total, 7);
    assert_eq!(n.spool_dropped_bytes_total, 7000);
    assert_eq!(n.spool_pending_batches, 1);
    assert_eq!((n.malformed_skips_total, n.vanished_total), (1, 2));
    assert_eq!(n.agent_version, None);

    let containers = reader
        .list_containers(None, false, T0 + SEC)
        .expect("containers");
    let keys: Vec<&str> = containers.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, [id.as_str(), "node-a:/system.slice/cron.service"]);
    let c = &containers[0];
    assert_eq!(c.node_name, "node-a");
    assert_eq!(c.cgroup_path, format!("/system.slice/docker-{id}.scope"));
    assert_eq!(c.runtime, Some(model::Runtime::Docker));
    assert_eq!(c.container_id.as_deref(), Some(id.as_str()));
    assert_eq!(c.pod_uid.as_deref(), Some("5f1c-pod"));
    assert_eq!(c.qos, Some(model::QosClass::Burstable));
    assert_eq!(c.unit, None);
    assert_eq!(
        (c.first_seen_unix_ns, c.last_seen_unix_ns),
        (T0 + 5, T0 + 5)
    );
    assert!(!c.gone);
    assert_eq!(c.samples_stored, 1);
    assert_eq!(c.cpu_limit_millicores, Some(1500));
    assert_eq!(c.memory_limit_bytes, Some(256 << 20));
    assert_eq!(c.oom_kills_total, 2);
    let svc = &containers[1];
    assert_eq!(svc.runtime, Some(model::Runtime::Systemd));
    assert_eq!(svc.unit.as_deref(), Some("cron.service"));
    assert_eq!(svc.container_id, None);
    assert_eq!(svc.qos, None);

    // The stored sample reads back as exactly what the model says was sent.
    let detail = reader.container(&id, T0 + SEC).expect("detail");
    let expected = model::ContainerSample::try_from(sample).expect("model");
    let latest = detail.latest_sample.expect("latest sample");
    assert_eq!(latest.timestamp_unix_ns, T0 + 5);
    assert_eq!(latest.stats, expected.stats);
    assert_eq!(latest.netns_inode, Some(4_026_532_000));
    let rates = detail.latest.expect("latest rates");
    assert_eq!((rates.start_unix_ns, rates.end_unix_ns), (T0 + 5, T0 + 5));
    assert_eq!(rates.samples, 1);
    assert_eq!(rates.cpu_cores, None);
    assert_eq!(rates.memory_working_set_bytes, Some(80 << 20));
    assert_eq!(rates.memory_peak_bytes, Some(120 << 20));
    drop(reader);
    drop(store);

    // Independently, with a plain DuckDB connection on the closed file.
    assert_eq!(count(&path, "SELECT count(*) FROM container_samples"), 2);
    assert_eq!(
        count(
            &path,
            "SELECT psi_io_full_total_us FROM node_samples WHERE node_name = 'node-a'"
        ),
        3
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM container_samples_named
             WHERE node_name = 'node-a' AND memory_peak_source = 'kernel_reset'
               AND memory_swap_bytes IS NULL AND cpu_shares = 1024"
        ),
        1
    );
    assert_eq!(
        count(
            &path,
            "SELECT tx_bytes FROM network_samples WHERE netns_inode = 4026532000 AND ts_unix_ns = 1700000000000000000"
        ),
        18
    );
}

#[test]
fn duplicates_are_ignored_within_a_slice_across_calls_and_across_reopen() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    let b1 = batch(
        "agent-1",
        "node-a",
        1,
        T0,
        vec![full_sample(&docker_id("a1"), T0)],
        vec![],
    );
    let b2 = batch(
        "agent-1",
        "node-a",
        2,
        T0 + 10 * SEC,
        vec![full_sample(&docker_id("a1"), T0 + 10 * SEC)],
        vec![],
    );
    {
        let mut store = Store::open(&path).expect("open");
        let outcomes = store
            .ingest(&[b1.clone(), b1.clone(), b2.clone()])
            .expect("ingest");
        assert_eq!(
            outcomes,
            [stored(1, 0), IngestOutcome::Duplicate, stored(1, 0)]
        );
        assert_eq!(
            store.ingest(&[b2.clone(), b1.clone()]).expect("again"),
            [IngestOutcome::Duplicate, IngestOutcome::Duplicate]
        );
    }
    {
        let mut store = Store::open(&path).expect("reopen");
        assert_eq!(store.last_stored_seq("agent-1"), 2);
        assert_eq!(store.last_stored_seq("unknown"), 0);
        assert_eq!(
            store.ingest(&[b1, b2]).expect("after reopen"),
            [IngestOutcome::Duplicate, IngestOutcome::Duplicate]
        );
        let reader = store.reader().expect("reader");
        let c = reader.container("a1a1", T0 + 10 * SEC).expect("container");
        assert_eq!(c.container.samples_stored, 2);
    }
    assert_eq!(count(&path, "SELECT count(*) FROM batches"), 2);
    assert_eq!(count(&path, "SELECT count(*) FROM container_samples"), 2);
    assert_eq!(count(&path, "SELECT count(*) FROM node_samples"), 2);
}

#[test]
fn a_rejected_batch_does_not_stop_the_others_of_its_group() {
    let dir = TempDir::new();
    let mut store = Store::open(dir.path("upid.duckdb")).expect("open");
    let good_a = batch(
        "agent-a",
        "node-a",
        1,
        T0,
        vec![full_sample(&docker_id("aa"), T0)],
        vec![],
    );
    let good_b = batch(
        "agent-b",
        "node-b",
        1,
        T0,
        vec![full_sample(&docker_id("bb"), T0)],
        vec![],
    );
    let mut zero_seq = good_a.clone();
    zero_seq.seq = 0;
    let mut no_node = batch("agent-c", "node-c", 1, T0, vec![], vec![]);
    if let Some(s) = no_node.snapshot.as_mut() {
        s.node = None;
    }
    let mut no_agent = good_b.clone();
    no_agent.agent_id.clear();
    let outcomes = store
        .ingest(&[good_a, zero_seq, no_node, good_b, no_agent])
        .expect("ingest");
    assert_eq!(
        outcomes,
        [
            stored(1, 0),
            IngestOutcome::Rejected(RejectReason::ZeroSeq),
            IngestOutcome::Rejected(RejectReason::MissingNodeSample),
            stored(1, 0),
            IngestOutcome::Rejected(RejectReason::EmptyAgentId),
        ]
    );
    assert_eq!(store.last_stored_seq("agent-a"), 1);
    assert_eq!(store.last_stored_seq("agent-b"), 1);
    assert_eq!(store.last_stored_seq("agent-c"), 0);
}

/// A ledger row planted behind the store's back makes the group's ledger
/// flush fail: nothing of the group may be stored, and the store stays usable.
#[test]
fn a_failed_group_is_rolled_back_entirely() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    drop(Store::open(&path).expect("create"));
    {
        let conn = duckdb::Connection::open(&path).expect("raw");
        conn.execute_batch("INSERT INTO batches VALUES ('agent-x', 5, 0, 'node-x', 1, 0, 0, 0, 0)")
            .expect("plant ledger row");
    }
    let mut store = Store::open(&path).expect("reopen");
    let good = batch(
        "agent-y",
        "node-y",
        1,
        T0,
        vec![full_sample(&docker_id("cc"), T0)],
        vec![net(1, 1)],
    );
    let conflicting = batch("agent-x", "node-x", 5, T0, vec![], vec![]);
    let err = store
        .ingest(&[good.clone(), conflicting])
        .expect_err("ledger conflict");
    assert!(
        matches!(
            err,
            StoreError::Append {
                table: "batches",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.last_stored_seq("agent-y"), 0);
    let reader = store.reader().expect("reader");
    assert!(reader.list_nodes().expect("nodes").is_empty());
    assert!(
        reader
            .list_containers(None, true, T0)
            .expect("containers")
            .is_empty()
    );
    // Memory and tables agree again: the good batch alone goes in.
    assert_eq!(store.ingest(&[good]).expect("retry"), [stored(1, 1)]);
    drop(reader);
    drop(store);
    assert_eq!(count(&path, "SELECT count(*) FROM container_samples"), 1);
    assert_eq!(count(&path, "SELECT count(*) FROM network_samples"), 1);
    assert_eq!(count(&path, "SELECT count(*) FROM batches"), 2);
}

#[test]
fn a_container_identity_learned_later_replaces_the_stored_one() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    let id = docker_id("5a");
    let mut early = full_sample(&id, T0);
    if let Some(identity) = early.identity.as_mut() {
        identity.pod_uid.clear();
        identity.qos = QosClass::Unspecified as i32;
    }
    {
        let mut store = Store::open(&path).expect("open");
        store
            .ingest(&[batch("agent-1", "node-a", 1, T0, vec![early], vec![])])
            .expect("first");
    }
    let mut store = Store::open(&path).expect("reopen");
    store
        .ingest(&[batch(
            "agent-1",
            "node-a",
            2,
            T0 + 10 * SEC,
            vec![full_sample(&id, T0 + 10 * SEC)],
            vec![],
        )])
        .expect("second");
    let reader = store.reader().expect("reader");
    let all = reader
        .list_containers(None, true, T0 + 10 * SEC)
        .expect("containers");
    assert_eq!(all.len(), 1);
    let c = &all[0];
    assert_eq!(c.pod_uid.as_deref(), Some("5f1c-pod"));
    assert_eq!(c.qos, Some(model::QosClass::Burstable));
    assert_eq!(
        (c.first_seen_unix_ns, c.last_seen_unix_ns),
        (T0, T0 + 10 * SEC)
    );
    assert_eq!(c.samples_stored, 2);
    // Same OOM counter in both samples: no new kills.
    assert_eq!(c.oom_kills_total, 2);
    assert!(matches!(
        store.record_hello(&Hello::default(), T0),
        Err(StoreError::HelloWithoutAgentId)
    ));
}

/// Seven ticks 10 s apart; every counter restarts at tick 4.
fn reset_series_batches(id: &str) -> Vec<Batch> {
    let usage = [
        0,
        5e9 as u64,
        10e9 as u64,
        15e9 as u64,
        1e9 as u64,
        6e9 as u64,
        11e9 as u64,
    ];
    let periods = [0, 100, 200, 300, 10, 110, 210];
    let throttled = [0, 10, 20, 50, 5, 5, 5];
    let oom = [0, 0, 1, 1, 0, 1, 1];
    let ws = [100, 200, 150, 300, 50, 60, 70];
    let peak = [110, 210, 400, 310, 60, 65, 75];
    let rx = [0, 1000, 2000, 3000, 500, 1500, 2500];
    (0..7)
        .map(|i| {
            let tick = T0 + i as i64 * 10 * SEC;
            batch(
                "agent-1",
                "node-a",
                i as u64 + 1,
                tick,
                // Container samples are read 1 ms after the tick's node sample.
                vec![counters_sample(
                    id,
                    tick + 1_000_000,
                    usage[i],
                    periods[i],
                    throttled[i],
                    oom[i],
                    ws[i],
                    peak[i],
                    Some(4242),
                )],
                vec![net(4242, rx[i])],
            )
        })
        .collect()
}

#[test]
fn series_derives_rates_and_handles_counter_resets() {
    let dir = TempDir::new();
    let mut store = Store::open(dir.path("upid.duckdb")).expect("open");
    let id = docker_id("de");
    // One tick per transaction, as they would arrive.
    for b in reset_series_batches(&id) {
        assert_eq!(store.ingest(&[b]).expect("ingest"), [stored(1, 1)]);
    }
    let reader = store.reader().expect("reader");
    let series = reader
        .series(&id[..8], T0, T0 + 70 * SEC, 20 * SEC)
        .expect("series");
    assert_eq!(series.container.key, id);
    assert_eq!(series.step_ns, 20 * SEC);
    let p = &series.points;
    assert_eq!(p.len(), 4);
    let bounds: Vec<(i64, i64)> = p.iter().map(|r| (r.start_unix_ns, r.end_unix_ns)).collect();
    assert_eq!(
        bounds,
        [
            (T0, T0 + 20 * SEC),
            (T0 + 20 * SEC, T0 + 40 * SEC),
            (T0 + 40 * SEC, T0 + 60 * SEC),
            (T0 + 60 * SEC, T0 + 70 * SEC),
        ]
    );
    assert_eq!(
        p.iter().map(|r| r.samples).collect::<Vec<_>>(),
        [2, 2, 2, 1]
    );
    // Step 0 holds the first sample (no predecessor) and one interval.
    approx(p[0].cpu_cores, 0.5);
    approx(p[0].cpu_throttled_ratio, 0.1);
    assert_eq!(p[0].oom_kills, Some(0));
    assert_eq!(
        (p[0].memory_working_set_bytes, p[0].memory_peak_bytes),
        (Some(200), Some(210))
    );
    approx(p[0].net_rx_bytes_per_s, 100.0);
    approx(p[0].net_tx_bytes_per_s, 200.0);

    approx(p[1].cpu_cores, 0.5);
    approx(p[1].cpu_throttled_ratio, 40.0 / 200.0);
    assert_eq!(p[1].oom_kills, Some(1));
    assert_eq!(
        (p[1].memory_working_set_bytes, p[1].memory_peak_bytes),
        (Some(300), Some(400))
    );
    approx(p[1].net_rx_bytes_per_s, 100.0);

    // The restart: each counter's new value is its increase (1e9 ns, 10
    // periods, 5 throttled, 0 OOMs, 500 bytes), as Prometheus rate() does.
    approx(p[2].cpu_cores, (1e9 + 5e9) / 20e9);
    approx(p[2].cpu_throttled_ratio, 5.0 / 110.0);
    assert_eq!(p[2].oom_kills, Some(1));
    assert_eq!(
        (p[2].memory_working_set_bytes, p[2].memory_peak_bytes),
        (Some(60), Some(65))
    );
    approx(p[2].net_rx_bytes_per_s, 1500.0 / 20.0);
    approx(p[2].net_tx_bytes_per_s, 3000.0 / 20.0);

    approx(p[3].cpu_cores, 0.5);
    approx(p[3].cpu_throttled_ratio, 0.0);
    assert_eq!(p[3].oom_kills, Some(0));
    approx(p[3].net_rx_bytes_per_s, 100.0);

    // A range starting after the first sample still rates its first
    // interval, from the sample before the range.
    let later = reader
        .series(&id, T0 + 10 * SEC, T0 + 30 * SEC, 20 * SEC)
        .expect("later");
    assert_eq!(later.points.len(), 1);
    approx(later.points[0].cpu_cores, 0.5);
    assert_eq!(later.points[0].samples, 2);

    // The whole-history OOM count handles the reset the same way.
    let detail = reader.container(&id, T0 + 60 * SEC).expect("detail");
    assert_eq!(detail.container.oom_kills_total, 2);

    // A server-chosen step: about 300 points, at least 1 s.
    let auto = reader.series(&id, T0, T0 + 70 * SEC, 0).expect("auto");
    assert_eq!(auto.step_ns, SEC);
    assert_eq!(auto.points.len(), 7);

    assert!(matches!(
        reader.series(&id, T0, T0, 0),
        Err(QueryError::InvalidRange { .. })
    ));
    assert!(matches!(
        reader.series(&id, T0, T0 + 86_400 * SEC, 1),
        Err(QueryError::TooManyPoints { .. })
    ));
}

#[test]
fn top_shows_present_containers_with_their_latest_rates() {
    let dir = TempDir::new();
    let mut store = Store::open(dir.path("upid.duckdb")).expect("open");
    let busy = docker_id("b0");
    let idle = docker_id("1d");
    let exited = docker_id("e0");
    let other = docker_id("0f");
    let tick = |i: i64| T0 + i * 10 * SEC;
    let s = |id: &str, i: i64, usage: u64, netns: Option<u64>| {
        counters_sample(
            id,
            tick(i),
            usage,
            0,
            0,
            0,
            1000 + usage / 1_000_000,
            2000,
            netns,
        )
    };
    store
        .ingest(&[
            batch(
                "agent-a",
                "node-a",
                1,
                tick(0),
                vec![
                    s(&busy, 0, 0, Some(7)),
                    s(&idle, 0, 0, None),
                    s(&exited, 0, 0, None),
                ],
                vec![net(7, 0)],
            ),
            batch(
                "agent-a",
                "node-a",
                2,
                tick(1),
                vec![
                    s(&busy, 1, 20_000_000_000, Some(7)),
                    s(&idle, 1, 100_000_000, None),
                ],
                vec![net(7, 5000)],
            ),
            batch(
                "agent-b",
                "node-b",
                1,
                tick(1),
                vec![s(&other, 1, 0, None)],
                vec![],
            ),
        ])
        .expect("ingest");
    let reader = store.reader().expect("reader");
    let now = tick(1) + SEC;

    let top = reader.top(Some("node-a"), now).expect("top");
    let keys: Vec<&str> = top.iter().map(|e| e.container.key.as_str()).collect();
    // The exited container is absent from node-a's latest tick.
    assert_eq!(keys, [busy.as_str(), idle.as_str()]);
    let l = &top[0].latest;
    assert_eq!(
        (l.start_unix_ns, l.end_unix_ns, l.samples),
        (tick(0), tick(1), 2)
    );
    approx(l.cpu_cores, 2.0);
    approx(l.net_rx_bytes_per_s, 500.0);
    approx(l.net_tx_bytes_per_s, 1000.0);
    assert_eq!(l.memory_working_set_bytes, Some(1000 + 20_000));
    approx(top[1].latest.cpu_cores, 0.01);
    assert_eq!(top[1].latest.net_rx_bytes_per_s, None);

    // Every node; the single-sample container has gauges but no rates.
    let all = reader.top(None, now).expect("top all");
    assert_eq!(all.len(), 3);
    let single = all
        .iter()
        .find(|e| e.container.key == other)
        .expect("other node's container");
    assert_eq!(single.latest.cpu_cores, None);
    assert_eq!(single.latest.samples, 1);
    assert_eq!(single.latest.memory_working_set_bytes, Some(1000));

    // Long after the last tick everything is gone.
    assert!(
        reader
            .top(None, now + 3_600 * SEC)
            .expect("later")
            .is_empty()
    );
    let gone = reader
        .list_containers(Some("node-a"), true, now)
        .expect("with gone");
    assert_eq!(gone.iter().filter(|c| c.gone).count(), 1);
    assert_eq!(
        reader
            .list_containers(Some("node-a"), false, now)
            .expect("present")
            .len(),
        2
    );
}

#[test]
fn containers_are_found_by_prefix_key_or_node_and_path() {
    let dir = TempDir::new();
    let mut store = Store::open(dir.path("upid.duckdb")).expect("open");
    let first = format!("abcd1111{}", "0".repeat(56));
    let second = format!("abcd2222{}", "0".repeat(56));
    store
        .ingest(&[batch(
            "agent-a",
            "node-a",
            1,
            T0,
            vec![
                full_sample(&first, T0),
                full_sample(&second, T0),
                service_sample("nginx.service", T0),
            ],
            vec![],
        )])
        .expect("ingest");
    let reader = store.reader().expect("reader");
    let find = |id: &str| reader.container(id, T0).map(|d| d.container.key);

    assert_eq!(find(&first).expect("full id"), first);
    assert_eq!(find("abcd1").expect("unique prefix"), first);
    assert_eq!(find("ABCD2").expect("case-insensitive prefix"), second);
    assert_eq!(
        find("node-a:/system.slice/nginx.service").expect("service key"),
        "node-a:/system.slice/nginx.service"
    );
    assert_eq!(
        find(&format!("node-a:/system.slice/docker-{second}.scope")).expect("node and path"),
        second
    );
    match find("abcd") {
        Err(QueryError::AmbiguousContainer {
            candidates, count, ..
        }) => {
            assert_eq!(count, 2);
            let mut candidates = candidates;
            candidates.sort();
            assert_eq!(candidates, [first.clone(), second.clone()]);
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    assert!(matches!(
        find("abc"),
        Err(QueryError::PrefixTooShort { min: 4, .. })
    ));
    assert!(matches!(
        find("ffff"),
        Err(QueryError::ContainerNotFound { .. })
    ));
    assert!(matches!(
        find("node-b:/system.slice/nginx.service"),
        Err(QueryError::ContainerNotFound { .. })
    ));
}

#[test]
fn a_file_that_is_not_duckdb_is_refused_by_name_and_left_alone() {
    let dir = TempDir::new();
    for (name, content) in [
        ("garbage.duckdb", vec![0x42u8; 10_000]),
        ("short.duckdb", b"hello".to_vec()),
        ("empty.duckdb", Vec::new()),
    ] {
        let path = dir.path(name);
        std::fs::write(&path, &content).expect("write garbage");
        let err = Store::open(&path).expect_err("garbage opens");
        assert!(
            matches!(&err, StoreError::NotADuckDbFile { path: p } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(std::fs::read(&path).expect("read back"), content);
    }
}

#[test]
fn open_creates_parent_directories_and_refuses_a_newer_schema() {
    let dir = TempDir::new();
    let path = dir.path("a/b/c/upid.duckdb");
    let store = Store::open(&path).expect("open nested");
    assert!(store.store_bytes() > 0);
    drop(store);
    {
        let conn = duckdb::Connection::open(&path).expect("raw");
        conn.execute_batch("UPDATE schema_version SET version = 99")
            .expect("bump version");
    }
    let err = Store::open(&path).expect_err("newer schema");
    assert!(
        matches!(
            err,
            StoreError::SchemaVersion {
                found: 99,
                supported: upid_collector::store::schema::SCHEMA_VERSION,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_writer_answers_after_commit_and_survives_restart() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    let store = Store::open(&path).expect("open");
    let reader = store.reader().expect("reader");
    let writer = Writer::spawn(store).expect("spawn");

    let hello = Hello {
        agent_id: "agent-1".into(),
        node_name: "node-a".into(),
        agent_version: "0.1.0".into(),
        sent_unix_ns: T0 + 2 * SEC,
    };
    assert_eq!(writer.hello(hello.clone(), T0).await.expect("hello"), 0);
    let id = docker_id("ab");
    let b = batch(
        "agent-1",
        "node-a",
        1,
        T0,
        vec![full_sample(&id, T0)],
        vec![],
    );
    assert_eq!(
        writer.submit(b.clone()).await.expect("submit"),
        stored(1, 0)
    );
    // Answered, so committed: another connection sees it at once (a new
    // container's row is written with it); the agent's state follows
    // within the flush interval.
    let seen = reader.container(&id, T0).expect("visible after the answer");
    assert_eq!(seen.container.samples_stored, 1);
    eventually("the agent's last seq", || {
        (reader.last_stored_seq("agent-1").expect("seq") == 1).then_some(())
    })
    .await;
    let node = &reader.list_nodes().expect("nodes")[0];
    assert_eq!(node.agent_version.as_deref(), Some("0.1.0"));
    assert_eq!(node.clock_skew_ns, Some(2 * SEC));

    writer.shutdown().await.expect("shutdown");
    assert!(matches!(
        writer.submit(b.clone()).await,
        Err(WriterError::Closed)
    ));
    assert!(writer.stats().checkpoints >= 1);
    // Each transaction and checkpoint is timed for /metrics.
    let durations = writer.durations();
    assert_eq!(durations.commit.count(), writer.stats().commits);
    assert_eq!(durations.checkpoint.count(), writer.stats().checkpoints);
    drop(reader);

    // A new writer on the same file: the replay is a duplicate.
    let writer = Writer::spawn(Store::open(&path).expect("reopen")).expect("respawn");
    assert_eq!(writer.hello(hello, T0).await.expect("hello again"), 1);
    assert_eq!(
        writer.submit(b).await.expect("replay"),
        IngestOutcome::Duplicate
    );
    writer.shutdown().await.expect("shutdown again");
    assert_eq!(count(&path, "SELECT count(*) FROM container_samples"), 1);
}

#[tokio::test]
async fn the_writer_group_commits_concurrent_submits() {
    let dir = TempDir::new();
    let store = Store::open(dir.path("upid.duckdb")).expect("open");
    let reader = store.reader().expect("reader");
    let config = WriterConfig {
        max_group_wait: Duration::from_millis(20),
        ..WriterConfig::default()
    };
    let writer = Writer::spawn_with(store, config).expect("spawn");
    let agents = 20u64;
    let per_agent = 10u64;
    let mut tasks = Vec::new();
    for a in 0..agents {
        for seq in 1..=per_agent {
            let writer = writer.clone();
            let agent = format!("agent-{a}");
            let node_name = format!("node-{a}");
            let id = format!("{a:02}{}", "c".repeat(62));
            tasks.push(tokio::spawn(async move {
                let tick = T0 + seq as i64 * 10 * SEC;
                writer
                    .submit(batch(
                        &agent,
                        &node_name,
                        seq,
                        tick,
                        vec![full_sample(&id, tick)],
                        vec![],
                    ))
                    .await
            }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.expect("join").expect("submit"), stored(1, 0));
    }
    let stats = writer.stats();
    let total = agents * per_agent;
    assert_eq!(stats.batches_stored, total);
    assert_eq!(stats.container_samples_stored, total);
    assert!(
        stats.commits < total && stats.largest_group_batches > 1,
        "no group commit: {stats:?}"
    );
    let nodes = reader.list_nodes().expect("nodes");
    assert_eq!(nodes.len(), agents as usize);
    assert!(nodes.iter().all(|n| n.last_seq == per_agent));
    writer.shutdown().await.expect("shutdown");
}

/// The writer stores a group one batch at a time when the group fails, so
/// only the culprit's agent gets the error.
#[tokio::test]
async fn the_writer_isolates_a_batch_that_fails_its_group() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    drop(Store::open(&path).expect("create"));
    {
        let conn = duckdb::Connection::open(&path).expect("raw");
        conn.execute_batch("INSERT INTO batches VALUES ('agent-x', 5, 0, 'node-x', 1, 0, 0, 0, 0)")
            .expect("plant ledger row");
    }
    let config = WriterConfig {
        max_group_wait: Duration::from_millis(200),
        ..WriterConfig::default()
    };
    let writer = Writer::spawn_with(Store::open(&path).expect("open"), config).expect("spawn");
    let good = batch(
        "agent-y",
        "node-y",
        1,
        T0,
        vec![full_sample(&docker_id("cd"), T0)],
        vec![],
    );
    let bad = batch("agent-x", "node-x", 5, T0, vec![], vec![]);
    let (good, bad) = tokio::join!(writer.submit(good), writer.submit(bad));
    assert_eq!(good.expect("good batch"), stored(1, 0));
    assert!(matches!(bad, Err(WriterError::Store(_))), "{bad:?}");
    assert_eq!(writer.stats().batches_failed, 1);
    writer.shutdown().await.expect("shutdown");
}

/// A large group holds several ticks of the same containers (the writer
/// groups up to thousands of batches under load): every sample is stored,
/// and the container rows end as if the ticks had come one by one, across
/// a reopen too.
#[test]
fn a_group_with_many_ticks_of_the_same_containers_keeps_the_newest_facts() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    let id = docker_id("7c");
    let tick = |seq: u64, oom_kills: u64, pod_uid: &str, limit: Option<u64>| {
        let ts = T0 + seq as i64 * 10 * SEC;
        let mut s = full_sample(&id, ts);
        if let Some(identity) = s.identity.as_mut() {
            identity.pod_uid = pod_uid.into();
        }
        if let Some(m) = s.memory.as_mut() {
            m.oom_kills = oom_kills;
            m.limit_bytes = limit;
        }
        let service = service_sample("cron.service", ts);
        batch(
            "agent-1",
            "node-a",
            seq,
            ts,
            vec![s, service],
            vec![net(7, seq)],
        )
    };
    {
        let mut store = Store::open(&path).expect("open");
        // The OOM counter goes 1, 3, then resets to 1: 1 + 2 + 1 kills. The
        // pod UID is learned at the second tick, the limit dropped at the third.
        let group = vec![
            tick(1, 1, "", Some(1 << 30)),
            tick(2, 3, "pod-x", Some(1 << 30)),
            tick(3, 1, "pod-x", None),
        ];
        let outcomes = store.ingest(&group).expect("group");
        assert_eq!(outcomes, vec![stored(2, 1); 3]);
    }
    let mut store = Store::open(&path).expect("reopen");
    // A late replay of an older tick is stored but moves no latest fact.
    let late = {
        let mut b = tick(4, 9, "pod-late", Some(5));
        for s in &mut b.snapshot.as_mut().expect("snapshot").containers {
            s.timestamp_unix_ns = T0 + 5 * SEC;
        }
        b
    };
    assert_eq!(store.ingest(&[late]).expect("late"), vec![stored(2, 1)]);
    let reader = store.reader().expect("reader");
    let all = reader
        .list_containers(None, true, T0 + 40 * SEC)
        .expect("containers");
    assert_eq!(all.len(), 2);
    let c = all.iter().find(|c| c.key == id).expect("the container");
    assert_eq!(c.samples_stored, 4);
    assert_eq!(
        (c.first_seen_unix_ns, c.last_seen_unix_ns),
        (T0 + 5 * SEC, T0 + 30 * SEC)
    );
    assert_eq!(c.pod_uid.as_deref(), Some("pod-x"));
    assert_eq!(c.memory_limit_bytes, None);
    assert_eq!(c.oom_kills_total, 4);
    let service = all.iter().find(|c| c.key != id).expect("the service");
    assert_eq!(service.samples_stored, 4);
    assert_eq!(service.unit.as_deref(), Some("cron.service"));
    drop(reader);
    drop(store);
    assert_eq!(count(&path, "SELECT count(*) FROM container_samples"), 8);
    assert_eq!(count(&path, "SELECT count(*) FROM network_samples"), 4);
    assert_eq!(
        count(
            &path,
            "SELECT count(DISTINCT container_sk) FROM container_samples"
        ),
        2
    );
}

/// A usage row as the rollup wrote it: (minute, interval_s, cpu_cores,
/// throttled, working set, peak, oom kills, rx, tx, kind, workload).
type UsageRow = (
    i64,
    f64,
    Option<f64>,
    Option<f64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    String,
    String,
);

fn usage_rows(path: &Path, key: &str) -> Vec<UsageRow> {
    let conn = duckdb::Connection::open(path).expect("open raw");
    let mut stmt = conn
        .prepare(
            "SELECT ts_unix_ns, interval_s, cpu_cores, cpu_throttled_ratio,
                memory_working_set_bytes, memory_peak_bytes, oom_kills, net_rx_bytes,
                net_tx_bytes, workload_kind, workload
             FROM usage WHERE series_key = ? AND source = 'agent' ORDER BY ts_unix_ns",
        )
        .expect("prepare");
    stmt.query_map([key], |r| {
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
            r.get(9)?,
            r.get(10)?,
        ))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// Ticks every 10 s from 5 s into minute `m0`: samples of a container at
/// 0.5 cores, throttled in a quarter of its periods, 100 MiB working set,
/// one 150 MiB peak and one OOM kill in the second minute, and its network
/// namespace moving 1000 B in and 2000 B out per tick.
fn rollup_batches(id: &str, agent: &str, m0: i64, ticks: u64, first_seq: u64) -> Vec<Batch> {
    rollup_batches_on("node-r", id, agent, m0, ticks, first_seq)
}

/// [`rollup_batches`] from an agent on `node`.
fn rollup_batches_on(
    node: &str,
    id: &str,
    agent: &str,
    m0: i64,
    ticks: u64,
    first_seq: u64,
) -> Vec<Batch> {
    const MIB: u64 = 1024 * 1024;
    (0..ticks)
        .map(|k| {
            let ts = m0 + 5 * SEC + 10 * SEC * k as i64;
            let sample = counters_sample(
                id,
                ts,
                5_000_000_000 * k,
                100 * k,
                25 * k,
                u64::from(k >= 8),
                100 * MIB,
                if k == 8 { 150 * MIB } else { 100 * MIB },
                Some(7),
            );
            let mut network = net(7, 1000 * k);
            network.tx_bytes = 2000 * k;
            batch(agent, node, first_seq + k, ts, vec![sample], vec![network])
        })
        .collect()
}

#[test]
fn samples_roll_up_into_minutes_and_a_late_batch_recomputes_its_minute_once() {
    const MIB: u64 = 1024 * 1024;
    let dir = TempDir::new();
    let path = dir.path("rollup.duckdb");
    let m0 = (T0 / (60 * SEC) + 1) * 60 * SEC;
    let a = docker_id("a");
    let b = docker_id("b");
    {
        let mut store = Store::open(&path).expect("open");
        let mut rollup = upid_collector::store::Rollup::new(&store).expect("rollup");
        store
            .ingest(&rollup_batches(&a, "agent-r", m0, 18, 1))
            .expect("ingest");
        let stats = rollup.run().expect("rollup");
        assert_eq!(stats.nodes, 1);
        assert_eq!(stats.rows, 3);
        // Nothing new: nothing recomputed.
        assert_eq!(rollup.run().expect("rollup again").rows, 0);
        // A late batch (a replayed spool) of another container on the same
        // node, in the first minute: that minute and later are rebuilt.
        store
            .ingest(&rollup_batches(&b, "agent-r2", m0, 3, 1))
            .expect("ingest late");
        let stats = rollup.run().expect("rollup late");
        assert_eq!(stats.rows, 4, "3 minutes of a, 1 of b");
    }
    let rows = usage_rows(&path, &a);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let short = &a[..12];
    // Minute 1: the first sample has no predecessor, so 5 intervals of
    // 10 s; minutes 2 and 3: 6 each.
    for (i, (interval, rx)) in [(50.0, 5000), (60.0, 6000), (60.0, 6000)]
        .into_iter()
        .enumerate()
    {
        let r = &rows[i];
        assert_eq!(r.0, m0 + 60 * SEC * i as i64);
        assert!((r.1 - interval).abs() < 1e-9, "interval {r:?}");
        approx(r.2, 0.5);
        approx(r.3, 0.25);
        assert_eq!(r.4, Some(100 * MIB));
        assert_eq!(r.7, Some(rx));
        assert_eq!(r.8, Some(2 * rx));
        assert_eq!((r.9.as_str(), r.10.as_str()), ("Container", short));
    }
    // The peak and the kill fall in the second minute (tick 8 at m0 + 85 s).
    assert_eq!(rows[1].5, Some(150 * MIB));
    assert_eq!(rows[1].6, Some(1));
    assert_eq!(rows[0].5, Some(100 * MIB));
    assert_eq!((rows[0].6, rows[2].6), (Some(0), Some(0)));
    assert_eq!(usage_rows(&path, &b).len(), 1);
}

/// One rollup covers many nodes at once (one pass over the samples for up
/// to `NODES_PER_PASS` nodes): each
/// node is rebuilt from its own first new minute, and network namespaces
/// with the same inode on two nodes are two namespaces.
#[test]
fn one_rollup_rebuilds_each_node_from_its_own_minute() {
    let dir = TempDir::new();
    let path = dir.path("rollup-nodes.duckdb");
    let m0 = (T0 / (60 * SEC) + 1) * 60 * SEC;
    let (a, c, d) = (docker_id("a"), docker_id("c"), docker_id("d"));
    let rx_of = |key: &str| -> Vec<Option<u64>> {
        usage_rows(&path, key).into_iter().map(|r| r.7).collect()
    };
    {
        let mut store = Store::open(&path).expect("open");
        let mut rollup = upid_collector::store::Rollup::new(&store).expect("rollup");
        store
            .ingest(&rollup_batches_on("node-r", &a, "agent-r", m0, 18, 1))
            .expect("ingest r");
        store
            .ingest(&rollup_batches_on("node-s", &c, "agent-s", m0, 18, 1))
            .expect("ingest s");
        let stats = rollup.run().expect("rollup");
        assert_eq!((stats.nodes, stats.rows), (2, 6));
        // Both nodes' namespaces have inode 7: each minute counts its own.
        assert_eq!(rx_of(&a), vec![Some(5000), Some(6000), Some(6000)]);
        assert_eq!(rx_of(&c), vec![Some(5000), Some(6000), Some(6000)]);

        // A late batch on node-s only, in its last minute: node-s is
        // rebuilt from the minute before it, node-r not at all.
        store
            .ingest(&rollup_batches_on(
                "node-s",
                &d,
                "agent-s2",
                m0 + 120 * SEC,
                3,
                1,
            ))
            .expect("ingest late");
        let stats = rollup.run().expect("rollup late");
        assert_eq!(stats.nodes, 1);
        assert_eq!(stats.rows, 3, "minutes 2 and 3 of c, minute 3 of d");
    }
    assert_eq!(rx_of(&a), vec![Some(5000), Some(6000), Some(6000)]);
    assert_eq!(usage_rows(&path, &c).len(), 3);
    assert_eq!(usage_rows(&path, &d).len(), 1);
}

/// More nodes than one pass takes are rolled up in several, every one.
#[test]
fn nodes_beyond_one_pass_are_all_rolled_up() {
    let dir = TempDir::new();
    let path = dir.path("rollup-passes.duckdb");
    let m0 = (T0 / (60 * SEC) + 1) * 60 * SEC;
    let nodes = upid_collector::store::NODES_PER_PASS * 2 + 3;
    let ids: Vec<String> = (0..nodes).map(|n| docker_id(&format!("{n:02x}"))).collect();
    {
        let mut store = Store::open(&path).expect("open");
        let mut rollup = upid_collector::store::Rollup::new(&store).expect("rollup");
        for (n, id) in ids.iter().enumerate() {
            store
                .ingest(&rollup_batches_on(
                    &format!("node-{n}"),
                    id,
                    &format!("agent-{n}"),
                    m0,
                    18,
                    1,
                ))
                .expect("ingest");
        }
        let stats = rollup.run().expect("rollup");
        assert_eq!((stats.nodes, stats.rows), (nodes, 3 * nodes as u64));
    }
    for id in &ids {
        let rx: Vec<Option<u64>> = usage_rows(&path, id).into_iter().map(|r| r.7).collect();
        assert_eq!(rx, vec![Some(5000), Some(6000), Some(6000)], "{id}");
    }
}

// ---------------------------------------------------------------------
// The hourly usage summary (schema version 4) stays in step with `usage`.
// ---------------------------------------------------------------------

use upid_collector::store::{ActivityThresholds, SqlPrices, UsageReadPath, UsageScope};

fn assert_same_reads(what: &str, summary: String, rows: String) {
    float_eq::assert_nearly_same(what, ("summary", "rows   "), &summary, &rows);
}

/// Every analysis read of [from, until) from the summary and from the
/// usage rows: the same answers.
fn assert_summary_reads_match_rows(store: &Store, from: i64, until: i64) {
    let reader = store.reader().expect("reader");
    let prices = SqlPrices {
        default: (0.031_611, 0.004_237),
        nodes: vec![("node-r".to_owned(), 0.05, 0.01)],
    };
    let activity = ActivityThresholds {
        cpu_cores: 0.6,
        net_bytes_per_s: 1e9,
    };
    let bucket_sql = "least(CAST(floor(ln(greatest(cpu_cores, 0) * 5.000000000000004 + 1) / 0.04879016416943205) AS INTEGER), 300)";
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
        let mut cpu = reader
            .usage_cpu_buckets(&scope, bucket_sql, 86_400.0)
            .expect("buckets");
        cpu.sort_by(|a, b| (&a.series_key, a.bucket).cmp(&(&b.series_key, b.bucket)));
        (
            format!("{facts:?}"),
            format!("{quiet:?}"),
            format!("{days:?}"),
            format!("{costs:?}"),
            format!("{cpu:?}"),
        )
    };
    let (s, r) = (read(UsageReadPath::Summary), read(UsageReadPath::Raw));
    assert!(s.0.contains("series_key"), "no series in [{from}, {until})");
    assert_same_reads("facts", s.0, r.0);
    assert_same_reads("quiet stretches", s.1, r.1);
    assert_same_reads("daily peaks", s.2, r.2);
    assert_same_reads("costs", s.3, r.3);
    // Bucket weights: this bucket SQL is not the summary's, so both read
    // rows; the summary's own buckets are compared in tests/analysis.rs.
    assert_same_reads("CPU buckets", s.4, r.4);
}

/// Ticks every 10 s from `m0` for `ticks` ticks: a container whose CPU
/// changes every tick (0.1 to 0.7 cores), `ws_mib` working set, one OOM
/// kill at tick 100, and network traffic.
fn varied_batches(
    id: &str,
    agent: &str,
    m0: i64,
    ticks: u64,
    ws_mib: u64,
    offset_s: i64,
) -> Vec<Batch> {
    const MIB: u64 = 1024 * 1024;
    let mut usage_ns = 0;
    (0..ticks)
        .map(|k| {
            let ts = m0 + offset_s * SEC + 10 * SEC * k as i64;
            usage_ns += 1_000_000_000 * (1 + k % 7);
            let sample = counters_sample(
                id,
                ts,
                usage_ns,
                100 * k,
                10 * k,
                u64::from(k >= 100),
                ws_mib * MIB,
                (ws_mib + k % 13) * MIB,
                Some(9),
            );
            batch(
                agent,
                "node-r",
                k + 1,
                ts,
                vec![sample],
                vec![net(9, 1000 * k)],
            )
        })
        .collect()
}

#[test]
fn the_rollup_keeps_the_summary_right_when_a_late_batch_rewrites_old_minutes() {
    let dir = TempDir::new();
    let path = dir.path("summary-rollup.duckdb");
    // 40 minutes past an hour: the data spans parts of four hours.
    let h0 = T0 - T0.rem_euclid(3600 * SEC);
    let m0 = h0 + 40 * 60 * SEC;
    let (a, b) = (docker_id("a"), docker_id("b"));
    let end = m0 + 150 * 60 * SEC;
    let ranges = [
        (h0 - 3600 * SEC, end + 3600 * SEC),
        (m0 + 7 * 60 * SEC + 3 * SEC, end - 13 * 60 * SEC),
        (h0 + 3600 * SEC, h0 + 3 * 3600 * SEC),
    ];
    let mut store = Store::open(&path).expect("open");
    let mut rollup = upid_collector::store::Rollup::new(&store).expect("rollup");
    store
        .ingest(&varied_batches(&a, "agent-r", m0, 900, 100, 5))
        .expect("ingest");
    rollup.run().expect("rollup");
    for (from, until) in ranges {
        assert_summary_reads_match_rows(&store, from, until);
    }
    let peak_of_a = |store: &Store| {
        let reader = store.reader().expect("reader");
        let scope = UsageScope {
            from_unix_ns: ranges[0].0,
            until_unix_ns: ranges[0].1,
            ..Default::default()
        };
        reader
            .usage_series(
                &scope,
                None,
                &SqlPrices {
                    default: (1.0, 1.0),
                    nodes: Vec::new(),
                },
                0,
            )
            .expect("facts")
            .into_iter()
            .find(|f| f.id.series_key == a)
            .and_then(|f| f.memory_max_peak_bytes)
    };
    let before = peak_of_a(&store);
    // Late batches (a replayed spool): samples of `a` between its stored
    // ones, with a larger working set, an hour and more back (same minutes,
    // new values), and a container `b` in old minutes (new rows).
    store
        .ingest(&varied_batches(
            &a,
            "agent-late",
            m0 + 60 * 60 * SEC,
            120,
            300,
            0,
        ))
        .expect("ingest late a");
    store
        .ingest(&varied_batches(
            &b,
            "agent-late-b",
            m0 + 20 * 60 * SEC,
            200,
            50,
            3,
        ))
        .expect("ingest late b");
    rollup.run().expect("rollup late");
    for (from, until) in ranges {
        assert_summary_reads_match_rows(&store, from, until);
    }
    assert!(
        peak_of_a(&store) > before,
        "{:?} {before:?}",
        peak_of_a(&store)
    );
    // The rollup kept the summary in step: nothing to repair.
    let repair = store.repair_usage_summary().expect("repair");
    assert_eq!(repair.hours, 0);
}

#[test]
fn a_version_3_store_with_usage_opens_as_version_4_with_its_summary_built() {
    let dir = TempDir::new();
    let path = dir.path("v3.duckdb");
    let h0 = T0 - T0.rem_euclid(3600 * SEC);
    {
        let mut store = Store::open(&path).expect("open");
        let mut rollup = upid_collector::store::Rollup::new(&store).expect("rollup");
        store
            .ingest(&varied_batches(
                &docker_id("c"),
                "agent-c",
                h0 + 20 * 60 * SEC,
                600,
                80,
                5,
            ))
            .expect("ingest");
        rollup.run().expect("rollup");
    }
    // What a version 3 store is: usage without the summary tables.
    {
        let conn = duckdb::Connection::open(&path).expect("open raw");
        conn.execute_batch(
            "DROP TABLE usage_hourly; DROP TABLE usage_hourly_cpu; DROP TABLE usage_series;
             DROP TABLE usage_summary_state; UPDATE schema_version SET version = 3;",
        )
        .expect("make it version 3");
    }
    let store = Store::open(&path).expect("upgrade");
    drop(store);
    assert_eq!(
        count(&path, "SELECT max(version) FROM schema_version"),
        i64::from(upid_collector::store::schema::SCHEMA_VERSION)
    );
    assert_eq!(upid_collector::store::schema::SCHEMA_VERSION, 6);
    let rows = count(&path, "SELECT count(*) FROM usage");
    assert!(rows > 90, "{rows}");
    assert_eq!(
        count(&path, "SELECT sum(row_count)::BIGINT FROM usage_hourly"),
        rows
    );
    let store = Store::open(&path).expect("reopen");
    assert_summary_reads_match_rows(&store, h0 - 3600 * SEC, h0 + 5 * 3600 * SEC);
    assert_summary_reads_match_rows(&store, h0 + 21 * 60 * SEC, h0 + 97 * 60 * SEC + 7);
}

/// DuckDB's worker threads carry a name of their own (they inherit the
/// name of the thread that opened the store), so `top -H` and `perf` tell
/// them from the collector's threads. nextest runs each test in a process
/// of its own, so the threads listed are this store's.
/// The names of this process's threads (at most 15 bytes each, as Linux
/// keeps them).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn duckdb_threads_are_named_upid_duckdb() {
    let dir = TempDir::new();
    let store = Store::open(dir.path("upid.duckdb")).expect("open");
    let names = thread_names();
    assert!(
        names
            .iter()
            .any(|n| n == upid_collector::store::DUCKDB_THREAD_NAME),
        "{names:?}"
    );
    drop(store);
}

/// What `kill -9` of the collector leaves on disk: the database file and its
/// WAL as they are between two transactions.
fn copy_as_crashed(from: &Path, to: &Path) {
    let wal = |p: &Path| {
        let mut name = p.as_os_str().to_owned();
        name.push(".wal");
        PathBuf::from(name)
    };
    std::fs::copy(from, to).expect("copy the database file");
    if wal(from).exists() {
        std::fs::copy(wal(from), wal(to)).expect("copy the WAL");
    }
}

/// The state written behind (last seq, counts, last seen, limits, OOM
/// totals) is lost by a crash and rebuilt when the store opens: the
/// crashed copy reads exactly as the store that wrote it, and knows which
/// batches it holds.
#[test]
fn state_held_back_by_the_flush_interval_is_rebuilt_after_a_crash() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    let crashed = dir.path("crashed.duckdb");
    let id = docker_id("9d");
    let tick = |seq: u64, oom_kills: u64, limit: Option<u64>| {
        let ts = T0 + seq as i64 * 10 * SEC;
        let mut s = full_sample(&id, ts);
        if let Some(m) = s.memory.as_mut() {
            m.oom_kills = oom_kills;
            m.limit_bytes = limit;
        }
        let service = service_sample("cron.service", ts);
        batch("agent-1", "node-a", seq, ts, vec![s, service], vec![])
    };
    let mut store = Store::open(&path).expect("open");
    store.set_dims_flush_interval(Duration::from_secs(3600));
    // The first batch adds the agent, its node and containers: written.
    assert_eq!(
        store.ingest(&[tick(1, 0, Some(1 << 30))]).expect("first"),
        vec![stored(2, 0)]
    );
    // The next ones only move state: held back. The OOM counter goes
    // 0, 1, 3, then resets to 1: 1 + 2 + 1 kills.
    for (seq, oom_kills, limit) in [(2, 1, Some(1 << 30)), (3, 3, Some(1 << 29)), (4, 1, None)] {
        assert_eq!(
            store
                .ingest(&[tick(seq, oom_kills, limit)])
                .expect("held back"),
            vec![stored(2, 0)]
        );
    }
    assert_eq!(store.last_stored_seq("agent-1"), 4);
    copy_as_crashed(&path, &crashed);
    let now = T0 + 60 * SEC;
    let reader = store.reader().expect("reader");
    store.flush_dims().expect("flush");
    let nodes = reader.list_nodes().expect("nodes");
    let containers = reader.list_containers(None, true, now).expect("containers");
    drop(reader);
    drop(store);

    // The crash left the tables as the first batch made them.
    assert_eq!(count(&crashed, "SELECT last_seq FROM agents"), 1);
    assert_eq!(
        count(
            &crashed,
            "SELECT max(samples_stored)::BIGINT FROM containers"
        ),
        1
    );

    let mut store = Store::open(&crashed).expect("open what the crash left");
    assert_eq!(store.last_stored_seq("agent-1"), 4);
    let reader = store.reader().expect("reader");
    // Everything but the spool figures, which only batches carry: the
    // crash left those of batch 1 until the agent's next batch.
    let mut expected = nodes.clone();
    expected[0].spool_pending_batches = 1;
    assert_eq!(reader.list_nodes().expect("nodes"), expected);
    let rebuilt = reader.list_containers(None, true, now).expect("containers");
    assert_eq!(rebuilt, containers);
    let c = rebuilt.iter().find(|c| c.key == id).expect("the container");
    assert_eq!(
        (c.samples_stored, c.oom_kills_total, c.memory_limit_bytes),
        (4, 4, None)
    );
    assert_eq!(nodes[0].last_seq, 4);
    // Batches it holds are duplicates; the next one is stored.
    assert_eq!(
        store
            .ingest(&[tick(3, 3, None), tick(5, 2, None)])
            .expect("replay"),
        vec![IngestOutcome::Duplicate, stored(2, 0)]
    );
    drop(reader);
    drop(store);
    // Opened and closed in order: the tables hold everything.
    assert_eq!(count(&crashed, "SELECT last_seq FROM agents"), 5);
    assert_eq!(
        count(&crashed, "SELECT batches_stored::BIGINT FROM agents"),
        5
    );
    assert_eq!(
        count(
            &crashed,
            "SELECT sum(samples_stored)::BIGINT FROM containers"
        ),
        10
    );
}

/// The writer writes held-back state once the interval has passed, also
/// when no further batch comes.
#[tokio::test]
async fn the_writer_writes_held_back_state_when_idle() {
    let dir = TempDir::new();
    let store = Store::open(dir.path("upid.duckdb")).expect("open");
    let reader = store.reader().expect("reader");
    let config = WriterConfig {
        dims_flush_interval: Duration::from_secs(2),
        ..WriterConfig::default()
    };
    let writer = Writer::spawn_with(store, config).expect("spawn");
    let id = docker_id("1d");
    // The first batch adds the agent and is written at once; the interval
    // runs from its answer.
    let mut first_answered = None;
    for seq in 1..=4u64 {
        let tick = T0 + seq as i64 * 10 * SEC;
        let b = batch(
            "agent-1",
            "node-a",
            seq,
            tick,
            vec![full_sample(&id, tick)],
            vec![],
        );
        assert_eq!(writer.submit(b).await.expect("submit"), stored(1, 0));
        first_answered.get_or_insert_with(std::time::Instant::now);
    }
    // Held back: answered, not yet in the tables (checked only when the
    // four answers came well within the interval, as they do in
    // milliseconds).
    let held = reader.list_nodes().expect("nodes");
    if first_answered.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
        assert_eq!(
            held.first().map(|n| n.last_seq),
            Some(1),
            "state written before the interval passed"
        );
    }
    eventually(
        "the last seq and sample count of the batches answered",
        || {
            let nodes = reader.list_nodes().expect("nodes");
            let c = reader.container(&id, T0 + 60 * SEC).expect("container");
            (nodes.first().map(|n| n.last_seq) == Some(4) && c.container.samples_stored == 4)
                .then_some(())
        },
    )
    .await;
    writer.shutdown().await.expect("shutdown");
}

/// Polls `check` until it gives a value; fails after 10 s, far beyond the
/// writer's flush interval.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not written 10 s after the last batch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checkpoints run on a thread of their own beside ingest: with one after
/// every batch, concurrent agents still get every batch stored exactly
/// once, the checkpoints are counted and timed, the state held back while
/// each ran is written afterwards, and the store closes with its WAL
/// written into the file.
#[tokio::test]
async fn checkpoints_beside_ingest_lose_and_hold_back_nothing() {
    let dir = TempDir::new();
    let path = dir.path("upid.duckdb");
    let store = Store::open(&path).expect("open");
    let reader = store.reader().expect("reader");
    let config = WriterConfig {
        checkpoint_every_batches: 1,
        dims_flush_interval: Duration::from_millis(50),
        ..WriterConfig::default()
    };
    let writer = Writer::spawn_with(store, config).expect("spawn");
    let agents = 4u64;
    let ticks = 25u64;
    let mut tasks = Vec::new();
    for a in 0..agents {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let id = docker_id(&format!("{a:02x}"));
            for seq in 1..=ticks {
                let tick = T0 + seq as i64 * 10 * SEC;
                let b = batch(
                    &format!("agent-{a}"),
                    &format!("node-{a}"),
                    seq,
                    tick,
                    vec![full_sample(&id, tick)],
                    vec![],
                );
                assert_eq!(writer.submit(b).await.expect("submit"), stored(1, 0));
            }
        }));
    }
    for task in tasks {
        task.await.expect("agent task");
    }
    eventually("every node's last seq", || {
        let nodes = reader.list_nodes().expect("nodes");
        (nodes.len() == agents as usize && nodes.iter().all(|n| n.last_seq == ticks)).then_some(())
    })
    .await;
    let stats = writer.stats();
    assert!(stats.checkpoints >= 2, "{stats:?}");
    assert_eq!(stats.checkpoint_errors, 0, "{stats:?}");
    assert_eq!(writer.durations().checkpoint.count(), stats.checkpoints);
    // Named by the thread itself once it runs: looked at after the
    // checkpoints it ran.
    let threads = thread_names();
    assert!(
        threads
            .iter()
            .any(|n| n == upid_collector::store::CHECKPOINT_THREAD_NAME),
        "no checkpoint thread beside the writer: {threads:?}"
    );
    writer.shutdown().await.expect("shutdown");
    drop(reader);
    let wal = PathBuf::from(format!("{}.wal", path.display()));
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
        "the WAL was left unwritten at close"
    );
    assert_eq!(
        count(&path, "SELECT count(*) FROM container_samples"),
        (agents * ticks) as i64
    );
    assert_eq!(
        count(&path, "SELECT sum(samples_stored)::BIGINT FROM containers"),
        (agents * ticks) as i64
    );
}

//! `upid.v1.QueryService` end to end in-process: a real tonic server on
//! 127.0.0.1:0 over a real DuckDB file filled with the batches two agents
//! would send, called with the generated client, as `upid` calls it.
//!
//! The history is at fixed times and the service's clock is pinned to just
//! after its last tick, so "present" and "gone" are deterministic.

mod common;

use std::sync::{Arc, Mutex, PoisonError};

use common::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Server};
use upid::wire::v1::query_service_client::QueryServiceClient;
use upid::wire::v1::{
    Batch, CgroupIdentity, CgroupLayout, ContainerSample, ContainerSummary, CpuStats,
    GetContainerRequest, GetContainerSeriesRequest, GetServerInfoRequest, Hello,
    ListContainersRequest, ListNodesRequest, ListWorkloadsRequest, MemoryStats, NetworkSample,
    NodeSample, PeakSource, QosClass, Runtime, Snapshot, SpoolStats, TopRequest,
};
use upid_collector::api::query::QueryApi;
use upid_collector::api::{ConnectedAgents, ServerFacts};
use upid_collector::store::{MAX_SERIES_POINTS, Store};

const SEC: i64 = 1_000_000_000;
/// First tick of the stored history.
const T0: i64 = 1_700_000_000 * SEC;
/// Ticks stored per node, 10 s apart.
const TICKS: usize = 7;
/// The service's clock: 5 s after the last tick.
const NOW: i64 = T0 + 65 * SEC;
/// When the collector "started".
const STARTED: i64 = T0 - 3600 * SEC;
const MIB: u64 = 1 << 20;

const POD_UID: &str = "5b2e4c1a-0f3d-4a8e-9c77-1d2e3f4a5b6c";
/// Two containers of one pod; their ids share the prefix `abcd`.
const POD_APP: &str = "abcd1111abcd1111abcd1111abcd1111abcd1111abcd1111abcd1111abcd1111";
const POD_SIDECAR: &str = "abcd2222abcd2222abcd2222abcd2222abcd2222abcd2222abcd2222abcd2222";
/// A Docker container whose cgroup was recreated before the last tick.
const RESTARTED: &str = "d0c0ffeed0c0ffeed0c0ffeed0c0ffeed0c0ffeed0c0ffeed0c0ffeed0c0ffee";
/// A Docker container that exited after tick 3.
const EXITED: &str = "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0";
/// The busiest container, on node-b.
const BUSY: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
const POD_NETNS: u64 = 4_026_532_100;

fn tick_ts(i: usize) -> i64 {
    T0 + i as i64 * 10 * SEC
}

fn pod_identity(id: &str) -> CgroupIdentity {
    let slice_uid = POD_UID.replace('-', "_");
    CgroupIdentity {
        cgroup_path: format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slice_uid}.slice/cri-containerd-{id}.scope"
        ),
        runtime: Runtime::Containerd as i32,
        container_id: id.into(),
        pod_uid: POD_UID.into(),
        qos: QosClass::Burstable as i32,
        unit: String::new(),
    }
}

fn docker_identity(id: &str) -> CgroupIdentity {
    CgroupIdentity {
        cgroup_path: format!("/system.slice/docker-{id}.scope"),
        runtime: Runtime::Docker as i32,
        container_id: id.into(),
        ..Default::default()
    }
}

fn service_identity(unit: &str) -> CgroupIdentity {
    CgroupIdentity {
        cgroup_path: format!("/system.slice/{unit}"),
        runtime: Runtime::Systemd as i32,
        unit: unit.into(),
        ..Default::default()
    }
}

fn glob_identity(path: &str) -> CgroupIdentity {
    CgroupIdentity {
        cgroup_path: path.into(),
        runtime: Runtime::Cgroup as i32,
        ..Default::default()
    }
}

/// A sample read 1 ms after its tick's node sample.
fn sample(
    identity: CgroupIdentity,
    tick: usize,
    usage_ns: u64,
    working_set_bytes: u64,
    oom_kills: u64,
) -> ContainerSample {
    let netns_inode = (!identity.pod_uid.is_empty()).then_some(POD_NETNS);
    ContainerSample {
        identity: Some(identity),
        timestamp_unix_ns: tick_ts(tick) + 1_000_000,
        cpu: Some(CpuStats {
            usage_ns,
            user_ns: Some(usage_ns / 2),
            system_ns: Some(usage_ns / 2),
            periods: tick as u64 * 100,
            throttled_periods: tick as u64 * 10,
            throttled_ns: tick as u64 * 1_000,
            limit_millicores: Some(2000),
            shares: Some(1024),
        }),
        memory: Some(MemoryStats {
            usage_bytes: working_set_bytes + 10 * MIB,
            working_set_bytes,
            rss_bytes: working_set_bytes / 2,
            cache_bytes: 10 * MIB,
            swap_bytes: None,
            limit_bytes: Some(512 * MIB),
            peak_bytes: working_set_bytes + MIB,
            peak_source: PeakSource::KernelReset as i32,
            oom_kills,
        }),
        netns_inode,
        ..Default::default()
    }
}

/// CPU ns a load of `millicores` accumulates in one 10 s tick.
fn per_tick(millicores: u64) -> u64 {
    millicores * 10_000_000
}

fn node_sample(name: &str, tick: usize) -> NodeSample {
    NodeSample {
        node_name: name.into(),
        timestamp_unix_ns: tick_ts(tick),
        boot_time_unix_s: 1_699_000_000,
        cpu_count: 8,
        cpu_total_ns: tick as u64 * 80 * SEC as u64,
        cpu_idle_ns: tick as u64 * 70 * SEC as u64,
        memory_total_bytes: 32 << 30,
        memory_available_bytes: 20 << 30,
        load1: 1.0,
        load5: 1.0,
        load15: 1.0,
        pressure: None,
        cgroup_layout: CgroupLayout::V2 as i32,
    }
}

fn batch(
    agent: &str,
    node: &str,
    tick: usize,
    containers: Vec<ContainerSample>,
    networks: Vec<NetworkSample>,
) -> Batch {
    Batch {
        inventory: None,
        agent_id: agent.into(),
        node_name: node.into(),
        seq: tick as u64 + 1,
        snapshot: Some(Snapshot {
            node: Some(node_sample(node, tick)),
            containers,
            networks,
            malformed_skips: 0,
            vanished: 0,
        }),
        spool: Some(SpoolStats {
            dropped_batches_total: 3,
            dropped_bytes_total: 3000,
            pending_batches: 0,
            pending_bytes: 0,
        }),
    }
}

/// node-a (agent-a): a pod of two containers (0.5 and 0.25 cores, 100 and
/// 50 MiB, pod traffic 1000 B/s in), a Docker container at 1 core whose
/// counters restart at the last tick (0.2 cores since), a container that
/// exits after tick 3, nginx.service and a glob-matched cgroup.
fn node_a_batch(tick: usize) -> Batch {
    let t = tick as u64;
    // Cumulative CPU of the restarted container: 1 core, then its cgroup
    // is recreated and it used 2 s of CPU in the last 10 s.
    let restarted_usage = if tick + 1 < TICKS {
        t * per_tick(1000)
    } else {
        2 * SEC as u64
    };
    let restarted_oom = if tick >= 3 && tick + 1 < TICKS { 1 } else { 0 };
    let mut containers = vec![
        sample(pod_identity(POD_APP), tick, t * per_tick(500), 100 * MIB, 0),
        sample(
            pod_identity(POD_SIDECAR),
            tick,
            t * per_tick(250),
            50 * MIB,
            0,
        ),
        sample(
            docker_identity(RESTARTED),
            tick,
            restarted_usage,
            200 * MIB,
            restarted_oom,
        ),
        sample(
            service_identity("nginx.service"),
            tick,
            t * per_tick(10),
            20 * MIB,
            0,
        ),
        sample(
            glob_identity("/custom/batch"),
            tick,
            t * per_tick(300),
            30 * MIB,
            0,
        ),
    ];
    if tick <= 3 {
        containers.push(sample(
            docker_identity(EXITED),
            tick,
            t * per_tick(100),
            10 * MIB,
            0,
        ));
    }
    let networks = vec![NetworkSample {
        netns_inode: POD_NETNS,
        rx_bytes: t * 10_000,
        tx_bytes: t * 20_000,
        ..Default::default()
    }];
    batch("agent-a", "node-a", tick, containers, networks)
}

/// node-b (agent-b): a busy Docker container at 2 cores and nginx.service.
fn node_b_batch(tick: usize) -> Batch {
    let t = tick as u64;
    let containers = vec![
        sample(
            docker_identity(BUSY),
            tick,
            t * per_tick(2000),
            300 * MIB,
            0,
        ),
        sample(
            service_identity("nginx.service"),
            tick,
            t * per_tick(20),
            25 * MIB,
            0,
        ),
    ];
    batch("agent-b", "node-b", tick, containers, vec![])
}

/// A running query service over a store holding both nodes' history.
struct Fixture {
    client: QueryServiceClient<Channel>,
    connected: Arc<ConnectedAgents>,
    observed: Arc<Mutex<Vec<&'static str>>>,
    store_path: String,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    // Dropped last: the store's file lives in it.
    _store: Store,
    _dir: TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = TempDir::new("query-api");
        let path = dir.path("upid.duckdb");
        let mut store = Store::open(&path).expect("open store");
        store
            .record_hello(
                &Hello {
                    agent_id: "agent-a".into(),
                    node_name: "node-a".into(),
                    agent_version: "0.1.0-test".into(),
                    sent_unix_ns: T0 - 2 * SEC,
                },
                T0 - 3 * SEC,
            )
            .expect("hello");
        for tick in 0..TICKS {
            // One transaction per tick and node, as they would arrive.
            for b in [node_a_batch(tick), node_b_batch(tick)] {
                store.ingest_at(&[b], tick_ts(tick) + SEC).expect("ingest");
            }
        }
        let connected = Arc::new(ConnectedAgents::default());
        connected.connect("agent-a");
        let store_path = path.display().to_string();
        let facts = ServerFacts {
            started_unix_ns: STARTED,
            store_path: store_path.clone(),
            tls: false,
            auth_required: true,
            connected: Arc::clone(&connected),
        };
        let observed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&observed);
        // Two readers, so concurrent calls must share them.
        let api = QueryApi::with_readers(store.reader().expect("reader"), facts, 2)
            .expect("query api")
            .with_clock(Arc::new(|| NOW))
            .with_observer(Arc::new(move |method, _took| {
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(method);
            }));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(
            Server::builder()
                .add_service(api.into_server())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let client = QueryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        Fixture {
            client,
            connected,
            observed,
            store_path,
            server,
            _store: store,
            _dir: dir,
        }
    }

    fn observed(&self) -> Vec<&'static str> {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn id_of(c: &ContainerSummary) -> &str {
    c.r#ref
        .as_ref()
        .and_then(|r| r.identity.as_ref())
        .map_or("", |i| {
            if i.container_id.is_empty() {
                &i.cgroup_path
            } else {
                &i.container_id
            }
        })
}

fn cpu(c: &ContainerSummary) -> f64 {
    c.latest
        .as_ref()
        .and_then(|r| r.cpu_cores)
        .unwrap_or_else(|| panic!("{} has no CPU rate", id_of(c)))
}

fn approx(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected}, got {actual}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_info_reports_version_clock_store_and_connections() {
    let mut f = Fixture::start().await;
    let info = f
        .client
        .get_server_info(GetServerInfoRequest {})
        .await
        .expect("server info")
        .into_inner();
    assert_eq!(info.collector_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.server_unix_ns, NOW);
    assert_eq!(info.started_unix_ns, STARTED);
    assert_eq!(info.store_path, f.store_path);
    assert!(info.store_bytes > 0, "a store with data has bytes on disk");
    assert_eq!(info.agents_connected, 1);
    assert!(!info.tls);
    assert!(info.auth_required);

    f.connected.connect("agent-b");
    let info = f
        .client
        .get_server_info(GetServerInfoRequest {})
        .await
        .expect("server info")
        .into_inner();
    assert_eq!(info.agents_connected, 2);
    assert_eq!(f.observed(), ["GetServerInfo", "GetServerInfo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_listed_with_their_agent_and_whether_it_is_connected() {
    let mut f = Fixture::start().await;
    let nodes = f
        .client
        .list_nodes(ListNodesRequest {})
        .await
        .expect("list nodes")
        .into_inner()
        .nodes;
    let names: Vec<_> = nodes.iter().map(|n| n.node_name.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b"]);
    let (a, b) = (&nodes[0], &nodes[1]);
    assert_eq!(
        (
            a.agent_id.as_str(),
            a.connected,
            b.agent_id.as_str(),
            b.connected
        ),
        ("agent-a", true, "agent-b", false)
    );
    assert_eq!(a.agent_version, "0.1.0-test");
    assert_eq!(a.clock_skew_ns, SEC);
    assert_eq!(a.cgroup_layout, CgroupLayout::V2 as i32);
    assert_eq!((a.cpu_count, a.memory_total_bytes), (8, 32 << 30));
    assert_eq!(a.last_seen_unix_ns, tick_ts(TICKS - 1));
    assert_eq!(a.last_seq, TICKS as u64);
    // The exited container is not in node-a's latest tick.
    assert_eq!((a.containers, b.containers), (5, 2));
    assert_eq!(a.spool_dropped_batches_total, 3);

    // The flag follows the ingest streams.
    f.connected.disconnect("agent-a");
    f.connected.connect("agent-b");
    let nodes = f
        .client
        .list_nodes(ListNodesRequest {})
        .await
        .expect("list nodes")
        .into_inner()
        .nodes;
    let flags: Vec<_> = nodes.iter().map(|n| n.connected).collect();
    assert_eq!(flags, [false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_carry_latest_rates_derived_from_counters() {
    let mut f = Fixture::start().await;
    let listed = f
        .client
        .list_containers(ListContainersRequest {
            node_name: "node-a".into(),
            include_gone: false,
            namespace: String::new(),
        })
        .await
        .expect("list containers")
        .into_inner()
        .containers;
    let ids: Vec<_> = listed.iter().map(id_of).collect();
    assert_eq!(
        ids,
        [
            POD_APP,
            POD_SIDECAR,
            RESTARTED,
            "/custom/batch",
            "/system.slice/nginx.service",
        ],
        "node-a's present containers, by key (container id, else node:path)"
    );
    let app = &listed[0];
    let r = app.r#ref.as_ref().expect("ref");
    assert_eq!(r.node_name, "node-a");
    let identity = r.identity.as_ref().expect("identity");
    assert_eq!(identity.pod_uid, POD_UID);
    assert_eq!(identity.runtime, Runtime::Containerd as i32);
    assert_eq!(identity.qos, QosClass::Burstable as i32);
    assert_eq!(app.first_seen_unix_ns, tick_ts(0) + 1_000_000);
    assert_eq!(app.last_seen_unix_ns, tick_ts(TICKS - 1) + 1_000_000);
    assert_eq!(app.cpu_limit_millicores, Some(2000));
    assert_eq!(app.memory_limit_bytes, Some(512 * MIB));
    let latest = app.latest.as_ref().expect("latest rates");
    assert_eq!(
        (latest.start_unix_ns, latest.end_unix_ns),
        (
            tick_ts(TICKS - 2) + 1_000_000,
            tick_ts(TICKS - 1) + 1_000_000
        )
    );
    // 5e9 ns of CPU over 10 s.
    approx(cpu(app), 0.5);
    approx(latest.cpu_throttled_ratio.expect("throttling"), 0.1);
    assert_eq!(latest.memory_working_set_bytes, Some(100 * MIB));
    assert_eq!(latest.memory_peak_bytes, Some(101 * MIB));
    assert_eq!(latest.oom_kills, Some(0));
    approx(latest.net_rx_bytes_per_s.expect("rx"), 1000.0);
    approx(latest.net_tx_bytes_per_s.expect("tx"), 2000.0);
    approx(cpu(&listed[1]), 0.25);

    // The exited container only when asked for, with its last rates.
    let all = f
        .client
        .list_containers(ListContainersRequest {
            node_name: String::new(),
            include_gone: true,
            namespace: String::new(),
        })
        .await
        .expect("list all")
        .into_inner()
        .containers;
    let ids: Vec<_> = all.iter().map(id_of).collect();
    assert_eq!(all.len(), 8, "{ids:?}");
    let exited = all
        .iter()
        .find(|c| id_of(c) == EXITED)
        .expect("the exited container with include_gone");
    assert_eq!(exited.last_seen_unix_ns, tick_ts(3) + 1_000_000);
    approx(cpu(exited), 0.1);
    assert!(ids.contains(&BUSY));

    let none = f
        .client
        .list_containers(ListContainersRequest {
            node_name: "node-z".into(),
            include_gone: true,
            namespace: String::new(),
        })
        .await
        .expect("unknown node")
        .into_inner()
        .containers;
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_container_never_shows_negative_cpu() {
    let mut f = Fixture::start().await;
    // Its counter fell from 50e9 to 2e9 ns: the new value is what it used
    // since the restart.
    let top = f
        .client
        .top(TopRequest {
            node_name: String::new(),
        })
        .await
        .expect("top")
        .into_inner()
        .containers;
    let restarted = top
        .iter()
        .find(|c| id_of(c) == RESTARTED)
        .expect("restarted container in top");
    approx(cpu(restarted), 0.2);
    // Its OOM counter restarted too: one kill over the whole history.
    assert_eq!(restarted.oom_kills_total, 1);
    assert_eq!(restarted.latest.as_ref().and_then(|r| r.oom_kills), Some(0));

    let detail = f
        .client
        .get_container(GetContainerRequest {
            id: RESTARTED[..12].into(),
        })
        .await
        .expect("get container")
        .into_inner();
    let summary = detail.summary.expect("summary");
    approx(cpu(&summary), 0.2);

    let series = f
        .client
        .get_container_series(GetContainerSeriesRequest {
            id: RESTARTED.into(),
            start_unix_ns: T0,
            end_unix_ns: T0 + 70 * SEC,
            step_ns: 10 * SEC,
        })
        .await
        .expect("series")
        .into_inner();
    let cores: Vec<f64> = series.points.iter().filter_map(|p| p.cpu_cores).collect();
    assert_eq!(cores.len(), TICKS - 1, "one rate per interval: {cores:?}");
    assert!(cores.iter().all(|c| *c >= 0.0), "never negative: {cores:?}");
    for c in &cores[..TICKS - 2] {
        approx(*c, 1.0);
    }
    approx(cores[TICKS - 2], 0.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_ambiguous_ids_get_clear_statuses() {
    let mut f = Fixture::start().await;
    let err = f
        .client
        .get_container(GetContainerRequest {
            id: "feedfacefeed".into(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("feedfacefeed"), "{}", err.message());

    let err = f
        .client
        .get_container_series(GetContainerSeriesRequest {
            id: "node-a:/system.slice/nope.service".into(),
            start_unix_ns: T0,
            end_unix_ns: NOW,
            step_ns: 0,
        })
        .await
        .expect_err("unknown path");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message().contains("node-a:/system.slice/nope.service"),
        "{}",
        err.message()
    );

    // Both containers of the pod start with "abcd".
    let err = f
        .client
        .get_container(GetContainerRequest { id: "abcd".into() })
        .await
        .expect_err("ambiguous");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    for candidate in [POD_APP, POD_SIDECAR] {
        assert!(
            err.message().contains(candidate),
            "candidates listed: {}",
            err.message()
        );
    }
    assert!(
        err.message().contains("matches 2 containers"),
        "{}",
        err.message()
    );

    let err = f
        .client
        .get_container(GetContainerRequest { id: "ab".into() })
        .await
        .expect_err("too short");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("at least 4"), "{}", err.message());

    let err = f
        .client
        .get_container(GetContainerRequest { id: String::new() })
        .await
        .expect_err("empty");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("id is required"),
        "{}",
        err.message()
    );

    // One more character is unique; so is <node>:<cgroup path> for a
    // service that runs on both nodes.
    let detail = f
        .client
        .get_container(GetContainerRequest { id: "abcd2".into() })
        .await
        .expect("unique prefix")
        .into_inner();
    let summary = detail.summary.as_ref().expect("summary");
    assert_eq!(id_of(summary), POD_SIDECAR);
    assert_eq!(detail.samples_stored, TICKS as u64);
    let sample = detail.latest_sample.expect("latest sample");
    assert_eq!(sample.timestamp_unix_ns, tick_ts(TICKS - 1) + 1_000_000);
    let cpu_stats = sample.cpu.expect("cpu");
    assert_eq!(cpu_stats.usage_ns, (TICKS as u64 - 1) * per_tick(250));
    assert_eq!(cpu_stats.limit_millicores, Some(2000));
    let memory = sample.memory.expect("memory");
    assert_eq!(memory.working_set_bytes, 50 * MIB);
    assert_eq!(memory.peak_source, PeakSource::KernelReset as i32);
    assert_eq!(sample.netns_inode, Some(POD_NETNS));
    assert_eq!(
        sample.identity.expect("identity").pod_uid,
        POD_UID,
        "the sample carries the container's identity"
    );

    let detail = f
        .client
        .get_container(GetContainerRequest {
            id: "node-b:/system.slice/nginx.service".into(),
        })
        .await
        .expect("by node and path")
        .into_inner();
    let summary = detail.summary.expect("summary");
    assert_eq!(
        summary.r#ref.as_ref().map(|r| r.node_name.as_str()),
        Some("node-b")
    );
    approx(cpu(&summary), 0.02);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_steps_are_validated_and_chosen_when_zero() {
    let mut f = Fixture::start().await;
    let series = |start_unix_ns, end_unix_ns, step_ns| GetContainerSeriesRequest {
        id: POD_APP[..8].into(),
        start_unix_ns,
        end_unix_ns,
        step_ns,
    };

    let s = f
        .client
        .get_container_series(series(T0, T0 + 70 * SEC, 20 * SEC))
        .await
        .expect("20 s steps")
        .into_inner();
    assert_eq!(s.step_ns, 20 * SEC);
    let r = s.r#ref.as_ref().expect("ref");
    assert_eq!(r.node_name, "node-a");
    assert_eq!(
        r.identity.as_ref().map(|i| i.container_id.as_str()),
        Some(POD_APP)
    );
    let bounds: Vec<_> = s
        .points
        .iter()
        .map(|p| (p.start_unix_ns - T0, p.end_unix_ns - T0))
        .collect();
    assert_eq!(
        bounds,
        [
            (0, 20 * SEC),
            (20 * SEC, 40 * SEC),
            (40 * SEC, 60 * SEC),
            (60 * SEC, 70 * SEC)
        ],
        "the last step is cut at the range's end"
    );
    for p in &s.points {
        approx(p.cpu_cores.expect("cpu per step"), 0.5);
        approx(p.net_rx_bytes_per_s.expect("rx per step"), 1000.0);
        assert_eq!(p.memory_working_set_bytes, Some(100 * MIB));
    }

    // Step 0: the server chooses (about 300 points, at least 1 s each).
    let s = f
        .client
        .get_container_series(series(T0, T0 + 70 * SEC, 0))
        .await
        .expect("server-chosen step")
        .into_inner();
    assert_eq!(s.step_ns, SEC);
    assert_eq!(s.points.len(), TICKS, "one point per step holding a sample");
    let s = f
        .client
        .get_container_series(series(T0, T0 + 3000 * SEC, 0))
        .await
        .expect("server-chosen step, long range")
        .into_inner();
    assert_eq!(s.step_ns, 10 * SEC);

    for (start, end, step, says) in [
        (T0, T0, 0, "0 <= start < end"),
        (T0 + SEC, T0, 0, "0 <= start < end"),
        (-SEC, T0, 0, "0 <= start < end"),
        (T0, T0 + 70 * SEC, -1, "give a positive step, or 0"),
        (
            T0,
            T0 + 86_400 * SEC,
            1,
            &*format!("more than {MAX_SERIES_POINTS}"),
        ),
    ] {
        let err = f
            .client
            .get_container_series(series(start, end, step))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(says), "{}", err.message());
    }

    // Extreme but valid: nothing overflows, the one point is cut at the end.
    let s = f
        .client
        .get_container_series(series(1, i64::MAX, i64::MAX - 1))
        .await
        .expect("extreme range")
        .into_inner();
    assert_eq!(s.points.len(), 1);
    assert_eq!(s.points[0].end_unix_ns, i64::MAX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_group_containers_by_pod_container_service_and_cgroup() {
    let mut f = Fixture::start().await;
    let workloads = f
        .client
        .list_workloads(ListWorkloadsRequest {
            namespace: String::new(),
        })
        .await
        .expect("workloads")
        .into_inner()
        .workloads;
    let got: Vec<_> = workloads
        .iter()
        .map(|w| {
            (
                w.namespace.as_str(),
                w.kind.as_str(),
                w.name.as_str(),
                w.containers,
                w.memory_working_set_bytes,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("", "Cgroup", "/custom/batch", 1, Some(30 * MIB)),
            ("", "Container", &BUSY[..12], 1, Some(300 * MIB)),
            ("", "Container", &RESTARTED[..12], 1, Some(200 * MIB)),
            ("", "Pod", POD_UID, 2, Some(150 * MIB)),
            // The same unit on both nodes.
            ("", "Service", "nginx.service", 2, Some(45 * MIB)),
        ],
        "present containers only, by kind and name"
    );
    let cores: Vec<f64> = workloads
        .iter()
        .map(|w| w.cpu_cores.expect("cpu"))
        .collect();
    for (got, expected) in cores.into_iter().zip([0.3, 2.0, 0.2, 0.75, 0.03]) {
        approx(got, expected);
    }

    // No inventory yet: every workload is in the empty namespace.
    let filtered = f
        .client
        .list_workloads(ListWorkloadsRequest {
            namespace: "default".into(),
        })
        .await
        .expect("workloads in default")
        .into_inner()
        .workloads;
    assert!(filtered.is_empty(), "{filtered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_lists_present_containers_busiest_first_with_a_node_filter() {
    let mut f = Fixture::start().await;
    let top = f
        .client
        .top(TopRequest {
            node_name: String::new(),
        })
        .await
        .expect("top")
        .into_inner()
        .containers;
    let ids: Vec<_> = top.iter().map(id_of).collect();
    assert_eq!(
        ids,
        [
            BUSY,
            POD_APP,
            "/custom/batch",
            POD_SIDECAR,
            RESTARTED,
            "/system.slice/nginx.service",
            "/system.slice/nginx.service",
        ]
    );
    let cores: Vec<f64> = top.iter().map(cpu).collect();
    assert!(
        cores.windows(2).all(|w| w[0] >= w[1]),
        "busiest first: {cores:?}"
    );
    approx(cores[0], 2.0);

    let b = f
        .client
        .top(TopRequest {
            node_name: "node-b".into(),
        })
        .await
        .expect("top node-b")
        .into_inner()
        .containers;
    let ids: Vec<_> = b.iter().map(id_of).collect();
    assert_eq!(ids, [BUSY, "/system.slice/nginx.service"]);
    assert!(
        b.iter()
            .all(|c| c.r#ref.as_ref().map(|r| r.node_name.as_str()) == Some("node-b"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_share_the_readers_and_are_all_observed() {
    let f = Fixture::start().await;
    // Sixteen calls at once over two readers: every one is answered.
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let mut client = f.client.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    client
                        .top(TopRequest {
                            node_name: String::new(),
                        })
                        .await
                        .map(|r| r.into_inner().containers.len())
                } else {
                    client
                        .list_nodes(ListNodesRequest {})
                        .await
                        .map(|r| r.into_inner().nodes.len())
                }
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let n = call.await.expect("join").expect("answered");
        assert_eq!(n, if i % 2 == 0 { 7 } else { 2 });
    }
    let mut observed = f.observed();
    observed.sort_unstable();
    assert_eq!(observed.len(), 16);
    assert_eq!(observed.iter().filter(|m| **m == "Top").count(), 8);
    assert_eq!(observed.iter().filter(|m| **m == "ListNodes").count(), 8);
}

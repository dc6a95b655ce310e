//! The shipper against a real gRPC server on loopback.
//!
//! The server here is an in-process implementation of upid's own
//! `AgentService` contract (dedupe by (agent_id, seq), cumulative acks after
//! "storing" in a map), standing in for the DuckDB collector so that the
//! agent side can be tested alone; the collector's own tests cover storage.
//! Real sockets, real HTTP/2, real zstd, real spool files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::{Stream, wrappers::TcpListenerStream};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};
use upid::model::{CgroupLayout, NodeSample, Snapshot};
use upid::wire::v1::agent_service_server::{AgentService, AgentServiceServer};
use upid::wire::v1::{self, agent_message, collector_message};
use upid_agent::ship::{CollectorEndpoint, ShipperConfig, ship};
use upid_agent::spool::{Spool, SpoolConfig};

/// What the test server stored: (agent_id, seq) → node name, plus how many
/// duplicates it ignored.
#[derive(Default)]
struct Ledger {
    stored: BTreeMap<(String, u64), String>,
    duplicates: u64,
    /// When false, the server stores but never acknowledges.
    acking: bool,
}

#[derive(Clone)]
struct TestCollector(Arc<Mutex<Ledger>>);

type Out = Pin<Box<dyn Stream<Item = Result<v1::CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for TestCollector {
    type StreamStream = Out;

    async fn stream(
        &self,
        req: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Out>, Status> {
        let mut inbound = req.into_inner();
        let ledger = self.0.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut agent = String::new();
            while let Ok(Some(msg)) = inbound.message().await {
                let reply = match msg.msg {
                    Some(agent_message::Msg::Hello(h)) => {
                        agent = h.agent_id;
                        let l = ledger.lock().expect("ledger");
                        let last = l
                            .stored
                            .keys()
                            .filter(|(a, _)| *a == agent)
                            .map(|(_, s)| *s)
                            .max()
                            .unwrap_or(0);
                        collector_message::Msg::Welcome(v1::Welcome {
                            last_stored_seq: last,
                            collector_version: "test".into(),
                            server_unix_ns: upid_agent::sampler::unix_now_ns(),
                        })
                    }
                    Some(agent_message::Msg::Batch(b)) => {
                        let mut l = ledger.lock().expect("ledger");
                        assert_eq!(b.agent_id, agent, "batch of another agent on this stream");
                        if l.stored
                            .insert((b.agent_id.clone(), b.seq), b.node_name.clone())
                            .is_some()
                        {
                            l.duplicates += 1;
                        }
                        if !l.acking {
                            continue;
                        }
                        collector_message::Msg::Ack(v1::Ack { seq: b.seq })
                    }
                    None => continue,
                };
                if tx
                    .send(Ok(v1::CollectorMessage { msg: Some(reply) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// A running test server on its own runtime and thread; `stop` drops that
/// runtime, which kills every connection and task at once, like a crash.
struct Server {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn serve(addr: SocketAddr, ledger: Arc<Mutex<Ledger>>) -> (Server, SocketAddr) {
    let listener = std::net::TcpListener::bind(addr).expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let svc = AgentServiceServer::new(TestCollector(ledger))
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Zstd);
            let server = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener));
            tokio::select! {
                r = server => r.expect("test server"),
                _ = stopped => {}
            }
        });
        // Dropping the runtime here cancels every connection task.
        drop(rt);
    });
    (
        Server {
            stop: Some(stop),
            thread: Some(thread),
        },
        addr,
    )
}

impl Server {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join().expect("server thread"))
                .await
                .expect("join");
        }
    }
}

fn snapshot(n: i64) -> Snapshot {
    Snapshot {
        node: NodeSample {
            node_name: "node-t".into(),
            timestamp_unix_ns: n,
            boot_time_unix_s: 1,
            cpu_count: 2,
            cpu_total_ns: 10,
            cpu_idle_ns: 5,
            memory_total_bytes: 100,
            memory_available_bytes: 50,
            load1: 0.0,
            load5: 0.0,
            load15: 0.0,
            pressure: None,
            cgroup_layout: CgroupLayout::V2,
        },
        containers: vec![],
        networks: vec![],
        malformed_skips: 0,
        vanished: 0,
    }
}

fn config(addr: SocketAddr) -> ShipperConfig {
    ShipperConfig {
        endpoint: CollectorEndpoint {
            url: format!("http://{addr}"),
            token: None,
            ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
            tls_domain: None,
            max_message_bytes: 4 << 20,
        },
        max_in_flight: 4,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        handshake_timeout: Duration::from_secs(5),
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stored(ledger: &Arc<Mutex<Ledger>>) -> usize {
    ledger.lock().expect("ledger").stored.len()
}

fn open_spool(dir: &std::path::Path) -> Spool {
    Spool::open(
        dir,
        SpoolConfig {
            fsync: false,
            ..Default::default()
        },
    )
    .expect("spool")
    .0
}

#[tokio::test]
async fn every_batch_arrives_once_across_a_collector_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(Mutex::new(Ledger {
        acking: true,
        ..Default::default()
    }));
    let (server, addr) = serve("127.0.0.1:0".parse().expect("addr"), ledger.clone()).await;

    let (tx, rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shipper = tokio::spawn(ship(
        open_spool(dir.path()),
        config(addr),
        "node-t".into(),
        rx,
        stop_rx,
    ));
    for n in 1..=5 {
        tx.send(snapshot(n)).await.expect("send");
    }
    wait_until("the first five batches", || stored(&ledger) == 5).await;

    // The collector dies; the agent keeps sampling into its spool.
    server.stop().await;
    for n in 6..=12 {
        tx.send(snapshot(n)).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stored(&ledger),
        5,
        "nothing can arrive while the collector is down"
    );

    // It comes back on the same address; the agent reconnects and replays.
    let (server, _) = serve(addr, ledger.clone()).await;
    wait_until("all twelve batches after the restart", || {
        stored(&ledger) == 12
    })
    .await;
    stop_tx.send(true).expect("stop");
    let stats = shipper.await.expect("join").expect("ship");
    server.stop().await;

    let l = ledger.lock().expect("ledger");
    let seqs: Vec<u64> = l.stored.keys().map(|(_, s)| *s).collect();
    assert_eq!(
        seqs,
        (1..=12).collect::<Vec<_>>(),
        "every seq exactly once, none skipped"
    );
    assert!(stats.connections >= 2, "{stats:?}");
    assert_eq!(stats.acked_seq, 12);
    assert_eq!(
        open_spool(dir.path()).pending_batches(),
        0,
        "acked batches leave the spool"
    );
}

#[tokio::test]
async fn a_restarted_agent_replays_what_was_never_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    // First life: the collector stores but never acknowledges.
    let ledger = Arc::new(Mutex::new(Ledger {
        acking: false,
        ..Default::default()
    }));
    let (server, addr) = serve("127.0.0.1:0".parse().expect("addr"), ledger.clone()).await;
    let (tx, rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shipper = tokio::spawn(ship(
        open_spool(dir.path()),
        config(addr),
        "node-t".into(),
        rx,
        stop_rx,
    ));
    for n in 1..=3 {
        tx.send(snapshot(n)).await.expect("send");
    }
    wait_until("three unacknowledged batches", || stored(&ledger) == 3).await;
    stop_tx.send(true).expect("stop");
    shipper.await.expect("join").expect("ship");
    let spool = open_spool(dir.path());
    assert_eq!(
        spool.pending_batches(),
        3,
        "unacknowledged batches survive the agent"
    );
    let agent_id = spool.agent_id().to_string();
    drop(spool);

    // Second life: acks work. The welcome says 3 are stored, so nothing is
    // resent; new batches continue the sequence.
    ledger.lock().expect("ledger").acking = true;
    let (tx, rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let reopened = open_spool(dir.path());
    assert_eq!(reopened.agent_id(), agent_id, "same agent after a restart");
    let shipper = tokio::spawn(ship(reopened, config(addr), "node-t".into(), rx, stop_rx));
    tx.send(snapshot(4)).await.expect("send");
    wait_until("the fourth batch", || stored(&ledger) == 4).await;
    stop_tx.send(true).expect("stop");
    let stats = shipper.await.expect("join").expect("ship");
    server.stop().await;

    let l = ledger.lock().expect("ledger");
    assert_eq!(
        l.stored.keys().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        l.duplicates, 0,
        "the welcome told the agent what was already stored"
    );
    assert_eq!(stats.acked_seq, 4);
    assert_eq!(open_spool(dir.path()).pending_batches(), 0);
}

#[tokio::test]
async fn an_unreachable_collector_only_delays_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Reserve a free port, then leave nothing listening on it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let (tx, rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shipper = tokio::spawn(ship(
        open_spool(dir.path()),
        config(addr),
        "node-t".into(),
        rx,
        stop_rx,
    ));
    for n in 1..=4 {
        tx.send(snapshot(n)).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).expect("stop");
    let stats = shipper
        .await
        .expect("join")
        .expect("ship keeps going without a collector");
    assert_eq!(stats.spooled, 4);
    assert_eq!(stats.connections, 0);
    assert_eq!(
        open_spool(dir.path()).pending_batches(),
        4,
        "everything waits in the spool"
    );
}

#[tokio::test]
async fn bad_endpoint_settings_fail_fast_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config("127.0.0.1:1".parse().expect("addr"));
    cfg.endpoint.url = "https://127.0.0.1:1".into();
    cfg.endpoint.ca_pem = Some(dir.path().join("missing-ca.pem"));
    let (_tx, rx) = mpsc::channel::<upid::model::Snapshot>(1);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let err = ship(
        open_spool(&dir.path().join("spool")),
        cfg,
        "n".into(),
        rx,
        stop_rx,
    )
    .await
    .expect_err("an unreadable CA file is a configuration error");
    assert!(err.to_string().contains("missing-ca.pem"), "{err}");
}

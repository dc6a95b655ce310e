//! AgentService over a real collector (`server::run` on 127.0.0.1:0 with a
//! DuckDB file on disk), called with the generated tonic client: the
//! delivery contract an agent relies on.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use common::TempDir;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::metadata::MetadataValue;
use upid::wire::v1::agent_message::Msg as AgentMsg;
use upid::wire::v1::agent_service_client::AgentServiceClient;
use upid::wire::v1::collector_message::Msg as CollectorMsg;
use upid::wire::v1::{
    AgentMessage, Batch, CgroupIdentity, CollectorMessage, ContainerSample, CpuStats, Hello,
    NodeSample, Snapshot, SpoolStats,
};
use upid_collector::config::{Mode, Settings};

struct Collector {
    addr: SocketAddr,
    metrics: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start(dir: &TempDir, tokens: Option<&str>, rate: u32, burst: u32) -> Collector {
        let tokens_file = tokens.map(|t| {
            let path = dir.path("tokens");
            std::fs::write(&path, t).unwrap();
            path
        });
        let settings = Settings {
            mode: Mode::Serve,
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            store: dir.path("u.duckdb"),
            tls: None,
            tokens_file,
            agent_rate_limit_per_s: NonZeroU32::new(rate).unwrap(),
            agent_rate_burst: NonZeroU32::new(burst).unwrap(),
            max_message_bytes: 1024 * 1024,
            sampling: None,
            analysis: Default::default(),
            pricing: Default::default(),
            updates: Default::default(),
            // Off: these batches are stamped 2023, which retention would
            // drop (and then refuse) whenever its first run comes after them.
            retention: upid_collector::store::RetentionSettings {
                enabled: false,
                ..Default::default()
            },
            reports: Default::default(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let done = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            upid_collector::server::run(
                settings,
                async move {
                    let _ = stopped.await;
                },
                move |ready| {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send((ready.grpc, ready.metrics));
                    }
                },
            )
            .await
            .expect("collector runs");
        });
        let (addr, metrics) = ready_rx.await.expect("collector ready");
        Collector {
            addr,
            metrics: metrics.unwrap(),
            stop: Some(stop),
            done,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.done)
            .await
            .expect("collector stops")
            .expect("collector task");
    }

    async fn metrics_text(&self) -> String {
        let addr = self.metrics;
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap()
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn batch(agent: &str, seq: u64, containers: usize) -> Batch {
    let ts = 1_700_000_000_000_000_000 + seq as i64 * 10_000_000_000;
    Batch {
        inventory: None,
        agent_id: agent.into(),
        node_name: format!("node-{agent}"),
        seq,
        snapshot: Some(Snapshot {
            node: Some(NodeSample {
                node_name: format!("node-{agent}"),
                timestamp_unix_ns: ts,
                cpu_count: 2,
                memory_total_bytes: 1 << 30,
                ..NodeSample::default()
            }),
            containers: (0..containers)
                .map(|i| ContainerSample {
                    identity: Some(CgroupIdentity {
                        cgroup_path: format!("/docker/{i:064x}"),
                        container_id: format!("{i:064x}"),
                        runtime: 1,
                        ..CgroupIdentity::default()
                    }),
                    timestamp_unix_ns: ts,
                    cpu: Some(CpuStats {
                        usage_ns: seq * 1_000_000_000,
                        ..CpuStats::default()
                    }),
                    ..ContainerSample::default()
                })
                .collect(),
            ..Snapshot::default()
        }),
        spool: Some(SpoolStats {
            dropped_batches_total: 3,
            ..SpoolStats::default()
        }),
    }
}

fn hello(agent: &str) -> AgentMessage {
    AgentMessage {
        msg: Some(AgentMsg::Hello(Hello {
            agent_id: agent.into(),
            node_name: format!("node-{agent}"),
            agent_version: "test".into(),
            sent_unix_ns: 1,
        })),
    }
}

fn send(b: Batch) -> AgentMessage {
    AgentMessage {
        msg: Some(AgentMsg::Batch(b)),
    }
}

/// One open agent stream.
struct Stream {
    tx: mpsc::Sender<AgentMessage>,
    rx: tonic::Streaming<CollectorMessage>,
}

async fn open(
    addr: SocketAddr,
    token: Option<&str>,
    first: AgentMessage,
) -> Result<Stream, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token: Option<MetadataValue<_>> = token.map(|t| format!("Bearer {t}").parse().unwrap());
    let mut client =
        AgentServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            if let Some(t) = &token {
                r.metadata_mut().insert("authorization", t.clone());
            }
            Ok(r)
        });
    let (tx, rx) = mpsc::channel(256);
    tx.send(first).await.unwrap();
    let rx = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    Ok(Stream { tx, rx })
}

async fn next(s: &mut Stream) -> Result<Option<CollectorMsg>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(30), s.rx.message())
        .await
        .expect("collector answers within 30 s")
        .map(|m| m.and_then(|m| m.msg))
}

async fn welcome(s: &mut Stream) -> u64 {
    match next(s).await {
        Ok(Some(CollectorMsg::Welcome(w))) => w.last_stored_seq,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// Reads acks until `seq` is acknowledged; returns every ack seen.
async fn acks_until(s: &mut Stream, seq: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        match next(s).await {
            Ok(Some(CollectorMsg::Ack(a))) => {
                seen.push(a.seq);
                if a.seq >= seq {
                    return seen;
                }
            }
            other => panic!("expected acks up to {seq}, got {other:?} after {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_acked_in_order_after_commit_and_replays_are_not_stored_twice() {
    let dir = TempDir::new("agent-api");
    let collector = Collector::start(&dir, None, 1000, 1000).await;
    let mut s = open(collector.addr, None, hello("a1")).await.unwrap();
    assert_eq!(welcome(&mut s).await, 0, "a new agent has nothing stored");
    for seq in 1..=20 {
        s.tx.send(send(batch("a1", seq, 5))).await.unwrap();
    }
    let acks = acks_until(&mut s, 20).await;
    assert!(
        acks.windows(2).all(|w| w[0] < w[1]),
        "acks ascend: {acks:?}"
    );
    drop(s);

    // Reconnect: the Welcome says what is stored; a replay of 15..=25 is
    // acked, and only 21..=25 are new.
    let mut s = open(collector.addr, None, hello("a1")).await.unwrap();
    assert_eq!(welcome(&mut s).await, 20);
    for seq in 15..=25 {
        s.tx.send(send(batch("a1", seq, 5))).await.unwrap();
    }
    acks_until(&mut s, 25).await;
    let text = collector.metrics_text().await;
    assert_eq!(metric(&text, "upid_collector_batches_stored_total"), 25.0);
    assert_eq!(metric(&text, "upid_collector_batches_duplicate_total"), 6.0);
    assert_eq!(
        metric(&text, "upid_collector_container_samples_stored_total"),
        125.0
    );
    assert_eq!(metric(&text, "upid_collector_agents_connected"), 1.0);
    assert!(
        text.contains(
            "upid_collector_agent_spool_dropped_batches{agent_id=\"a1\",node=\"node-a1\"} 3"
        ),
        "spool drops reported by the agent reach /metrics:\n{text}"
    );
    drop(s);
    collector.stop().await;

    // What is on disk after a clean stop: 25 batches, 125 samples, no twins.
    let conn = duckdb::Connection::open(dir.path("u.duckdb")).unwrap();
    let (batches, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT seq) FROM batches WHERE agent_id = 'a1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((batches, distinct), (25, 25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_acked_past_but_not_stored() {
    let dir = TempDir::new("agent-api");
    let collector = Collector::start(&dir, None, 1000, 1000).await;
    let mut s = open(collector.addr, None, hello("a2")).await.unwrap();
    welcome(&mut s).await;
    let mut bad = batch("a2", 2, 1);
    if let Some(snapshot) = bad.snapshot.as_mut() {
        snapshot.node = None;
    }
    s.tx.send(send(batch("a2", 1, 1))).await.unwrap();
    s.tx.send(send(bad)).await.unwrap();
    s.tx.send(send(batch("a2", 3, 1))).await.unwrap();
    assert_eq!(acks_until(&mut s, 3).await, vec![1, 2, 3]);
    let text = collector.metrics_text().await;
    assert_eq!(metric(&text, "upid_collector_batches_stored_total"), 2.0);
    assert_eq!(metric(&text, "upid_collector_batches_rejected_total"), 1.0);
    drop(s);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_end_the_stream_with_invalid_argument() {
    let dir = TempDir::new("agent-api");
    let collector = Collector::start(&dir, None, 1000, 1000).await;
    // A batch before Hello.
    let mut s = open(collector.addr, None, send(batch("a3", 1, 1)))
        .await
        .unwrap();
    let e = next(&mut s).await.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("Hello"), "{e:?}");
    // A batch naming another agent.
    let mut s = open(collector.addr, None, hello("a3")).await.unwrap();
    welcome(&mut s).await;
    s.tx.send(send(batch("someone-else", 1, 1))).await.unwrap();
    let e = next(&mut s).await.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("someone-else"), "{e:?}");
    // The server goes on.
    let mut s = open(collector.addr, None, hello("a3")).await.unwrap();
    welcome(&mut s).await;
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_an_agent_gets_resource_exhausted_and_others_go_on() {
    let dir = TempDir::new("agent-api");
    let collector = Collector::start(&dir, None, 1, 5).await;
    let mut flood = open(collector.addr, None, hello("flood")).await.unwrap();
    welcome(&mut flood).await;
    for seq in 1..=50 {
        if flood.tx.send(send(batch("flood", seq, 1))).await.is_err() {
            break;
        }
    }
    let status = loop {
        match next(&mut flood).await {
            Ok(Some(CollectorMsg::Ack(_))) => continue,
            Err(status) => break status,
            other => panic!("expected acks then RESOURCE_EXHAUSTED, got {other:?}"),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("flood"), "{status:?}");

    let mut calm = open(collector.addr, None, hello("calm")).await.unwrap();
    welcome(&mut calm).await;
    for seq in 1..=3 {
        calm.tx.send(send(batch("calm", seq, 1))).await.unwrap();
    }
    assert_eq!(acks_until(&mut calm, 3).await.last(), Some(&3));
    let text = collector.metrics_text().await;
    assert!(metric(&text, "upid_collector_rate_limited_total") >= 1.0);
    drop(calm);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_may_ingest() {
    let dir = TempDir::new("agent-api");
    let tokens = "node-a agent-token-0123456789\ncli query-token-0123456789 query\n";
    let collector = Collector::start(&dir, Some(tokens), 1000, 1000).await;
    let e = open(collector.addr, None, hello("a4"))
        .await
        .err()
        .expect("no token refused");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = open(collector.addr, Some("agent-token-wrong-00000"), hello("a4"))
        .await
        .err()
        .expect("unknown token refused");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = open(collector.addr, Some("query-token-0123456789"), hello("a4"))
        .await
        .err()
        .expect("query token cannot ingest");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mut s = open(collector.addr, Some("agent-token-0123456789"), hello("a4"))
        .await
        .unwrap();
    welcome(&mut s).await;
    s.tx.send(send(batch("a4", 1, 1))).await.unwrap();
    acks_until(&mut s, 1).await;
    let text = collector.metrics_text().await;
    assert_eq!(metric(&text, "upid_collector_auth_failures_total"), 3.0);
    drop(s);
    collector.stop().await;
}

//! What stands between the network and the collector's store: bearer tokens
//! and roles, client certificates checked in the TLS handshake, per-agent
//! rate limits, a maximum message size, and a server that survives garbage.
//!
//! Real `upid-collector serve` and `upid-agent run` processes on loopback;
//! hostile clients are tonic clients built from the project's own wire types
//! (what any generated client sends) and raw TCP sockets. Certificates come
//! from the `openssl` command (the test skips loudly without it). No timing
//! is asserted: every wait polls a condition with a generous deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use upid::wire::v1::{GetServerInfoRequest, ListNodesRequest};
use upid_e2e::harness::grpc::{
    self, AgentStream, agent_client, batch, connect, health, query_client, tls,
};
use upid_e2e::harness::pki::Pki;
use upid_e2e::harness::{Collector, Stream, agent, serve, spool_facts, store};
use upid_e2e::{have, skip_unless, wait_for};

const MINUTE: Duration = Duration::from_secs(60);
const AGENT_TOKEN: &str = "agent-secret-0123456789";
const QUERY_TOKEN: &str = "query-secret-0123456789";

/// A tokens file with one agent and one query token.
fn tokens_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tokens");
    std::fs::write(
        &path,
        format!(
            "# name token role\nnode-agent {AGENT_TOKEN} agent\ndashboard {QUERY_TOKEN} query\n"
        ),
    )
    .expect("write tokens");
    path
}

/// Batches the collector stored, per node name (after it exited).
fn stored_per_node(store_path: &Path) -> std::collections::BTreeMap<String, usize> {
    store::seqs_by_agent(&store::open(store_path))
        .into_values()
        .map(|(node, seqs)| (node, seqs.len()))
        .collect()
}

/// Runs a real agent with `--count n` and asserts it exits 0: every batch
/// acknowledged.
fn agent_delivers(collector_url: &str, node: &str, spool: &Path, extra: &[&str], n: u32) {
    let mut a = agent(node, collector_url, spool)
        .args(["--count", &n.to_string()])
        .args(extra)
        .start();
    let status = a.wait_exit(2 * MINUTE);
    assert!(
        status.success(),
        "{node} could not deliver its {n} batches: {status}\n{}",
        a.output()
    );
}

#[test]
fn calls_without_a_fitting_token_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("upid.duckdb");
    let collector = serve(&store_path)
        .args(["--tokens-file"])
        .args([tokens_file(dir.path()).display().to_string()])
        .start();
    let url = collector.url();
    let rt = grpc::runtime();

    rt.block_on(async {
        let channel = connect(&url, None).await.expect("connect");
        let code = |r: Result<AgentStream, tonic::Status>| r.err().map(|s| s.code());

        // No token, a wrong token: UNAUTHENTICATED.
        let mut anonymous = agent_client(channel.clone(), None);
        assert_eq!(
            code(AgentStream::open(&mut anonymous, "intruder", "n").await),
            Some(Code::Unauthenticated)
        );
        let mut wrong = agent_client(channel.clone(), Some("not-a-token"));
        assert_eq!(
            code(AgentStream::open(&mut wrong, "intruder", "n").await),
            Some(Code::Unauthenticated)
        );
        // A query token cannot ingest, an agent token cannot query.
        let mut reader = agent_client(channel.clone(), Some(QUERY_TOKEN));
        assert_eq!(
            code(AgentStream::open(&mut reader, "intruder", "n").await),
            Some(Code::PermissionDenied)
        );
        let denied = query_client(channel.clone(), Some(AGENT_TOKEN))
            .list_nodes(ListNodesRequest {})
            .await
            .expect_err("an agent token cannot query");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        let anonymous_query = query_client(channel.clone(), None)
            .get_server_info(GetServerInfoRequest {})
            .await
            .expect_err("queries need a token too");
        assert_eq!(anonymous_query.code(), Code::Unauthenticated);

        // The right tokens work, and health stays open.
        let info = query_client(channel.clone(), Some(QUERY_TOKEN))
            .get_server_info(GetServerInfoRequest {})
            .await
            .expect("a query token can query")
            .into_inner();
        assert!(info.auth_required, "{info:?}");
        let mut good = agent_client(channel.clone(), Some(AGENT_TOKEN));
        let mut stream = AgentStream::open(&mut good, "good-agent", "node-good")
            .await
            .expect("an agent token can ingest");
        assert!(stream.send(batch("good-agent", "node-good", 1)).await);
        assert_eq!(stream.ack_of(1).await.expect("ack"), 1);
        assert_eq!(
            health(channel).await.expect("health"),
            ServingStatus::Serving
        );
    });

    // A real agent with a wrong token keeps retrying and stores nothing.
    let spool = dir.path().join("spool-wrong");
    let token = dir.path().join("wrong-token");
    std::fs::write(&token, "not-a-token\n").expect("write token");
    let mut a = agent("node-wrong-token", &url, &spool)
        .args(["--token-file", &token.display().to_string()])
        .start();
    wait_for(MINUTE, "the agent to be refused three times", || {
        (a.count_lines_with("Unauthenticated") >= 3).then_some(())
    });
    assert!(
        a.is_running(),
        "a refused agent keeps retrying:\n{}",
        a.output()
    );
    let m = collector.scrape();
    assert!(
        m.value("upid_collector_auth_failures_total", &[]) >= 3.0 + 5.0,
        "refusals are counted:\n{}",
        m.text
    );
    let status = a.terminate(MINUTE);
    assert!(status.success(), "{status}");
    collector.stop();

    let facts = spool_facts(&spool);
    assert!(
        facts.pending_batches > 0,
        "its batches wait in its spool: {facts:?}"
    );
    let stored = stored_per_node(&store_path);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        vec!["node-good"],
        "only the authenticated agent's batch is stored"
    );
}

/// Certificates, or a loud skip when `openssl` is missing.
fn pki(dir: &Path) -> Option<Pki> {
    if skip_unless(have("openssl"), "the openssl command is not installed") {
        return None;
    }
    Some(Pki::generate(dir))
}

#[test]
fn client_certificates_not_signed_by_the_client_ca_are_refused_in_the_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pki) = pki(dir.path()) else { return };
    let store_path = dir.path().join("upid.duckdb");
    let path = |p: &Path| p.display().to_string();
    let collector = serve(&store_path)
        .args(["--tls-cert", &path(&pki.server.cert)])
        .args(["--tls-key", &path(&pki.server.key)])
        .args(["--client-ca", &path(&pki.ca.cert)])
        .start();
    let url = collector.https_url();
    let rt = grpc::runtime();

    rt.block_on(async {
        // Without a client certificate, or with one from another CA, the
        // handshake fails: no call gets through.
        for (what, client) in [("no", None), ("a rogue", Some(&pki.rogue_client))] {
            let refused = match connect(&url, Some(tls(&pki.ca, client))).await {
                Err(e) => format!("{e:?}"),
                Ok(channel) => match health(channel).await {
                    Ok(s) => panic!("{what} client certificate got through: {s:?}"),
                    Err(status) => {
                        // A status the server sent would mean TLS let the
                        // call through; the connection itself must fail.
                        let transport = std::error::Error::source(&status)
                            .is_some_and(|e| e.is::<tonic::transport::Error>());
                        assert!(transport, "{what} client certificate: {status:?}");
                        format!("{status:?}")
                    }
                },
            };
            eprintln!("{what} client certificate refused: {refused}");
        }
        // Plain text to a TLS port gets nowhere either.
        if let Ok(channel) = connect(&collector.url(), None).await {
            health(channel)
                .await
                .expect_err("plain HTTP/2 to a TLS port");
        }
        // The right certificate works.
        let channel = connect(&url, Some(tls(&pki.ca, Some(&pki.client))))
            .await
            .expect("the CA's client certificate is accepted");
        assert_eq!(
            health(channel).await.expect("health"),
            ServingStatus::Serving
        );
    });

    // A real agent: the rogue certificate never gets a batch in; the right
    // one delivers everything.
    let mut rogue = agent("node-rogue", &url, &dir.path().join("spool-rogue"))
        .args(["--ca", &path(&pki.ca.cert)])
        .args(["--client-cert", &path(&pki.rogue_client.cert)])
        .args(["--client-key", &path(&pki.rogue_client.key)])
        .start();
    wait_for(MINUTE, "the rogue agent to be refused twice", || {
        (rogue.count_lines_with("collector unreachable") >= 2).then_some(())
    });
    agent_delivers(
        &url,
        "node-mtls",
        &dir.path().join("spool-mtls"),
        &[
            "--ca",
            &path(&pki.ca.cert),
            "--client-cert",
            &path(&pki.client.cert),
            "--client-key",
            &path(&pki.client.key),
        ],
        3,
    );
    assert!(rogue.is_running(), "{}", rogue.output());
    let status = rogue.terminate(MINUTE);
    assert!(status.success(), "{status}");
    collector.stop();

    let stored = stored_per_node(&store_path);
    assert_eq!(stored.get("node-mtls"), Some(&3), "{stored:?}");
    assert!(!stored.contains_key("node-rogue"), "{stored:?}");
}

#[test]
fn a_flooding_agent_is_cut_off_while_a_normal_agent_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("upid.duckdb");
    let collector = serve(&store_path)
        .args(["--agent-rate-limit", "5", "--agent-rate-burst", "20"])
        .start();
    let url = collector.url();
    let rt = grpc::runtime();

    // A normal agent runs alongside the flood.
    let mut normal = agent("node-normal", &url, &dir.path().join("spool-normal"))
        .args(["--count", "5"])
        .start();

    let ended = rt.block_on(async {
        let channel = connect(&url, None).await.expect("connect");
        let mut client = agent_client(channel, None);
        let stream = AgentStream::open(&mut client, "flooder", "node-flood")
            .await
            .expect("the flooder's stream opens");
        let AgentStream {
            tx, mut inbound, ..
        } = stream;
        // Send as fast as the stream takes them (bounded: 100 000 at most).
        let sender = tokio::spawn(async move {
            for seq in 1..=100_000u64 {
                let msg = upid::wire::v1::AgentMessage {
                    msg: Some(upid::wire::v1::agent_message::Msg::Batch(batch(
                        "flooder",
                        "node-flood",
                        seq,
                    ))),
                };
                if tx.send(msg).await.is_err() {
                    return seq;
                }
            }
            u64::MAX
        });
        let status = loop {
            match inbound.message().await {
                Ok(Some(_)) => {}
                Ok(None) => break tonic::Status::ok("stream closed without a status"),
                Err(status) => break status,
            }
        };
        sender.abort();
        status
    });
    assert_eq!(
        ended.code(),
        Code::ResourceExhausted,
        "the flood ends with RESOURCE_EXHAUSTED: {ended:?}"
    );

    let status = normal.wait_exit(2 * MINUTE);
    assert!(
        status.success(),
        "the normal agent's batches are all acknowledged: {status}\n{}",
        normal.output()
    );
    let m = collector.scrape();
    assert!(
        m.value("upid_collector_rate_limited_total", &[]) >= 1.0,
        "{}",
        m.text
    );
    collector.stop();
    let stored = stored_per_node(&store_path);
    assert_eq!(stored.get("node-normal"), Some(&5), "{stored:?}");
    let flood = stored.get("node-flood").copied().unwrap_or(0);
    assert!(flood < 100_000, "the flood was cut off: {flood} stored");
}

/// Writes `bytes` on a fresh TCP connection and reads whatever comes back
/// until the server closes it (or stops talking).
fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may close before everything is written: that is fine.
    let _ = s.write_all(bytes);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

/// Bytes that look random (xorshift), reproducible.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// The server still answers health and a real agent still ingests.
fn assert_still_serving(collector: &Collector, node: &str, spool: &Path) {
    let url = collector.url();
    grpc::runtime().block_on(grpc::wait_serving(&url, MINUTE));
    agent_delivers(&url, node, spool, &[], 2);
}

#[test]
fn garbage_and_oversized_messages_get_an_error_and_the_server_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("upid.duckdb");
    let collector = serve(&store_path)
        .args(["--max-message-bytes", "65536"])
        .start();
    let addr = collector.grpc;

    // Random bytes instead of HTTP/2.
    let answer = raw_exchange(addr, &garbage(64 * 1024, 0x9e37_79b9_7f4a_7c15));
    eprintln!("random bytes: {} bytes back", answer.len());
    assert_still_serving(&collector, "node-after-random", &dir.path().join("s1"));

    // A valid HTTP/2 preface, then garbage frames: the server answers with
    // a GOAWAY frame (type 7) or closes.
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(garbage(16 * 1024, 0x1234_5678_9abc_def1));
    let answer = raw_exchange(addr, &bytes);
    eprintln!("preface + garbage: {} bytes back", answer.len());
    assert!(
        answer.len() < 9 || has_goaway(&answer),
        "a GOAWAY or nothing, not a served request: {answer:?}"
    );
    assert_still_serving(&collector, "node-after-preface", &dir.path().join("s2"));

    // A batch bigger than --max-message-bytes.
    let status = grpc::runtime().block_on(async {
        let channel = connect(&collector.url(), None).await.expect("connect");
        let mut client = agent_client(channel, None).max_encoding_message_size(16 << 20);
        let mut stream = AgentStream::open(&mut client, "big-agent", "node-big")
            .await
            .expect("open");
        let mut big = batch("big-agent", "node-big", 1);
        if let Some(node) = big.snapshot.as_mut().and_then(|s| s.node.as_mut()) {
            // Random text does not compress: 256 KiB on the wire.
            node.node_name = garbage(256 * 1024, 7)
                .iter()
                .map(|b| char::from(b'a' + b % 26))
                .collect();
        }
        stream.send(big).await;
        stream
            .ack_of(1)
            .await
            .expect_err("no ack for an oversized batch")
    });
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "an oversized batch gets RESOURCE_EXHAUSTED or OUT_OF_RANGE: {status:?}"
    );
    assert_still_serving(&collector, "node-after-big", &dir.path().join("s3"));

    let mut c = collector;
    assert!(c.proc.is_running());
    let lines = c.proc.lines(Stream::Stderr);
    eprintln!("collector logged {} lines", lines.len());
    c.stop();
    let stored = stored_per_node(&store_path);
    for node in ["node-after-random", "node-after-preface", "node-after-big"] {
        assert_eq!(stored.get(node), Some(&2), "{stored:?}");
    }
    assert!(!stored.contains_key("node-big"), "{stored:?}");
}

/// True when `bytes` (server-to-client HTTP/2) contain a GOAWAY frame.
fn has_goaway(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == 7 {
            return true;
        }
        at += 9 + len;
    }
    false
}

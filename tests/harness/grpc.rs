//! Talking gRPC to a collector from a test: clients with an optional bearer
//! token and TLS, the health check, and hand-made agent streams (what a
//! misbehaving or hostile agent would send).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use upid::wire::v1::agent_service_client::AgentServiceClient;
use upid::wire::v1::query_service_client::QueryServiceClient;
use upid::wire::v1::{self, agent_message, collector_message};

use super::pki::CertFiles;

/// A runtime for a synchronous test's gRPC calls (`rt.block_on(...)`).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Adds `authorization: Bearer TOKEN` to every call when a token is set.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// `None`: no authorization header at all.
    pub fn new(token: Option<&str>) -> Bearer {
        Bearer(token.map(|t| {
            format!("Bearer {t}")
                .parse()
                .expect("a token fit for an HTTP header")
        }))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A query client.
pub type QueryClient = QueryServiceClient<InterceptedService<Channel, Bearer>>;

/// An agent-side client (no compression: what any generated client does).
pub type AgentClient = AgentServiceClient<InterceptedService<Channel, Bearer>>;

/// TLS settings of a client: the CA to trust and an optional client
/// certificate.
pub fn tls(ca: &CertFiles, client: Option<&CertFiles>) -> ClientTlsConfig {
    let read = |p: &std::path::Path| {
        std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&ca.cert)))
        .domain_name("localhost");
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(read(&c.cert), read(&c.key)));
    }
    tls
}

/// Connects to `url` (`http://` or, with `tls`, `https://`).
pub async fn connect(
    url: &str,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

/// A query client on `channel` sending `token`.
pub fn query_client(channel: Channel, token: Option<&str>) -> QueryClient {
    QueryServiceClient::with_interceptor(channel, Bearer::new(token))
}

/// An agent client on `channel` sending `token`.
pub fn agent_client(channel: Channel, token: Option<&str>) -> AgentClient {
    AgentServiceClient::with_interceptor(channel, Bearer::new(token))
}

/// The standard health check of the whole server (`service: ""`).
pub async fn health(channel: Channel) -> Result<ServingStatus, Status> {
    let reply = HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown))
}

/// Polls the health check at `url` until it says SERVING.
pub async fn wait_serving(url: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match connect(url, None).await {
            Ok(ch) => format!("{:?}", health(ch).await),
            Err(e) => format!("{e:?}"),
        };
        if last == format!("{:?}", Ok::<_, Status>(ServingStatus::Serving)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} not SERVING after {timeout:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A valid batch with no containers, as an agent on `node` would send it.
pub fn batch(agent_id: &str, node: &str, seq: u64) -> v1::Batch {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(1);
    v1::Batch {
        inventory: None,
        agent_id: agent_id.to_string(),
        node_name: node.to_string(),
        seq,
        snapshot: Some(v1::Snapshot {
            node: Some(v1::NodeSample {
                node_name: node.to_string(),
                timestamp_unix_ns: now_ns,
                boot_time_unix_s: 1,
                cpu_count: 2,
                cpu_total_ns: 1_000 * seq,
                cpu_idle_ns: 500 * seq,
                memory_total_bytes: 1 << 30,
                memory_available_bytes: 1 << 29,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spool: Some(v1::SpoolStats::default()),
    }
}

/// An open agent stream: send with `tx`, read acks from `inbound`.
pub struct AgentStream {
    /// Outgoing messages.
    pub tx: mpsc::Sender<v1::AgentMessage>,
    /// What the collector sends back.
    pub inbound: Streaming<v1::CollectorMessage>,
    /// The collector's welcome.
    pub welcome: v1::Welcome,
}

impl AgentStream {
    /// Opens the stream, says hello as `agent_id` on `node`, and waits for
    /// the welcome.
    pub async fn open(
        client: &mut AgentClient,
        agent_id: &str,
        node: &str,
    ) -> Result<AgentStream, Status> {
        let (tx, rx) = mpsc::channel(1024);
        let hello = v1::AgentMessage {
            msg: Some(agent_message::Msg::Hello(v1::Hello {
                agent_id: agent_id.to_string(),
                node_name: node.to_string(),
                agent_version: "e2e-test".into(),
                sent_unix_ns: 1,
            })),
        };
        tx.send(hello)
            .await
            .map_err(|_| Status::internal("stream closed before the hello"))?;
        let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        match inbound.message().await? {
            Some(v1::CollectorMessage {
                msg: Some(collector_message::Msg::Welcome(welcome)),
            }) => Ok(AgentStream {
                tx,
                inbound,
                welcome,
            }),
            other => Err(Status::internal(format!(
                "expected a welcome, got {other:?}"
            ))),
        }
    }

    /// Queues one batch; false when the stream is gone.
    pub async fn send(&self, batch: v1::Batch) -> bool {
        self.tx
            .send(v1::AgentMessage {
                msg: Some(agent_message::Msg::Batch(batch)),
            })
            .await
            .is_ok()
    }

    /// Reads until an ack of at least `seq`; returns the ack's seq, or the
    /// status that ended the stream.
    pub async fn ack_of(&mut self, seq: u64) -> Result<u64, Status> {
        loop {
            match self.inbound.message().await? {
                Some(v1::CollectorMessage {
                    msg: Some(collector_message::Msg::Ack(ack)),
                }) if ack.seq >= seq => return Ok(ack.seq),
                Some(_) => {}
                None => return Err(Status::unavailable("the collector closed the stream")),
            }
        }
    }
}

//! `upid.v1.AgentService`: one long-lived stream per agent, acknowledged
//! only after COMMIT.
//!
//! Per stream, a reader task takes the agent's messages (Hello first, then
//! Batches), checks them, applies the per-agent rate limit, prepares each
//! batch for the store (checked and put into columns on this task, see
//! [`PreparedBatch`]) and queues it for the writer in arrival order without
//! waiting for it, so up to
//! [`AgentApiConfig::max_in_flight`] batches of one agent are stored
//! together (group commit). An acker task answers them strictly in the
//! order they arrived: `Ack{seq}` is cumulative, so it is sent only once
//! every earlier batch of the stream is committed too. A stream that must
//! end (rate limit, protocol error, store failure, shutdown) first acks
//! what committed before the problem, then ends with a status; the agent
//! reconnects with backoff and replays the rest, which the store
//! deduplicates.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use upid::wire::v1::agent_message::Msg as AgentMsg;
use upid::wire::v1::agent_service_server::AgentService;
use upid::wire::v1::collector_message::Msg as CollectorMsg;
use upid::wire::v1::{Ack, AgentMessage, Batch, CollectorMessage, Hello, Welcome};

use super::ConnectedAgents;
use crate::auth::Principal;
use crate::metrics::Metrics;
use crate::store::{IngestOutcome, PendingBatch, PreparedBatch, WriterError, WriterHandle};

/// How agent streams are handled.
#[derive(Debug, Clone)]
pub struct AgentApiConfig {
    /// Batches per second one agent may send (replays included).
    pub rate_per_s: NonZeroU32,
    /// Batches above the rate an agent may send at once.
    pub burst: NonZeroU32,
    /// Batches of one stream handed to the writer and not yet answered.
    pub max_in_flight: usize,
    /// How long a new stream may take to say Hello.
    pub hello_timeout: Duration,
}

impl Default for AgentApiConfig {
    fn default() -> Self {
        AgentApiConfig {
            rate_per_s: NonZeroU32::MIN.saturating_add(49),
            burst: NonZeroU32::MIN.saturating_add(499),
            max_in_flight: 64,
            hello_timeout: Duration::from_secs(30),
        }
    }
}

struct Shared {
    writer: WriterHandle,
    limiter: DefaultKeyedRateLimiter<String>,
    config: AgentApiConfig,
    metrics: Arc<Metrics>,
    connected: Arc<ConnectedAgents>,
    shutdown: watch::Receiver<bool>,
}

/// The AgentService implementation; clone-cheap.
#[derive(Clone)]
pub struct AgentApi {
    shared: Arc<Shared>,
}

impl AgentApi {
    /// Streams store through `writer`; `shutdown` turning true ends every
    /// stream (after acking what committed) so the server can stop.
    pub fn new(
        writer: WriterHandle,
        config: AgentApiConfig,
        metrics: Arc<Metrics>,
        connected: Arc<ConnectedAgents>,
        shutdown: watch::Receiver<bool>,
    ) -> AgentApi {
        let quota = Quota::per_second(config.rate_per_s).allow_burst(config.burst);
        AgentApi {
            shared: Arc::new(Shared {
                writer,
                limiter: RateLimiter::keyed(quota),
                config,
                metrics,
                connected,
                shutdown,
            }),
        }
    }

    /// Forgets rate-limit state of agents that have been quiet; call now
    /// and then so the limiter's memory stays bounded.
    pub fn forget_quiet_agents(&self) {
        self.shared.limiter.retain_recent();
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type StreamStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let principal = request.extensions().get::<Principal>().cloned();
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.shared.config.max_in_flight + 4);
        self.shared
            .metrics
            .streams_opened
            .fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let who = principal.map(|p| p.name).unwrap_or_default();
            run_stream(shared, inbound, tx, peer, who).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Outbound = mpsc::Sender<Result<CollectorMessage, Status>>;

/// What the reader hands the acker, in arrival order.
enum Item {
    /// A batch being stored.
    Stored {
        seq: u64,
        received: Instant,
        pending: PendingBatch,
    },
    /// End the stream with this status once everything before is answered.
    End(Status),
}

async fn run_stream(
    shared: Arc<Shared>,
    mut inbound: Streaming<AgentMessage>,
    tx: Outbound,
    peer: String,
    token_name: String,
) {
    let hello = match first_hello(&shared, &mut inbound).await {
        Ok(hello) => hello,
        Err(status) => {
            shared
                .metrics
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, error = %status.message(), "agent stream refused before hello");
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let agent_id = hello.agent_id.clone();
    let node = hello.node_name.clone();
    let last_stored_seq = match shared.writer.hello(hello, unix_now_ns()).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(%agent_id, error = %e, "recording an agent's hello failed");
            let _ = tx.send(Err(writer_status(&e))).await;
            return;
        }
    };
    let welcome = CollectorMessage {
        msg: Some(CollectorMsg::Welcome(Welcome {
            last_stored_seq,
            collector_version: env!("CARGO_PKG_VERSION").to_owned(),
            server_unix_ns: unix_now_ns(),
        })),
    };
    if tx.send(Ok(welcome)).await.is_err() {
        return;
    }
    tracing::info!(%agent_id, %node, %peer, token = %token_name, last_stored_seq, "agent connected");
    let _connected = shared.connected.hold(&agent_id);

    let (items_tx, items_rx) = mpsc::channel(shared.config.max_in_flight.max(1));
    let acker = tokio::spawn(ack_in_order(
        items_rx,
        tx.clone(),
        shared.metrics.clone(),
        agent_id.clone(),
    ));
    read_batches(&shared, &mut inbound, &items_tx, &agent_id).await;
    drop(items_tx);
    if let Err(e) = acker.await {
        tracing::error!(%agent_id, error = %e, "the ack task of an agent stream failed");
    }
    tracing::info!(%agent_id, %node, "agent stream ended");
}

/// Takes messages until the stream ends or must end; every batch goes to
/// the writer and (as an [`Item`]) to the acker.
async fn read_batches(
    shared: &Arc<Shared>,
    inbound: &mut Streaming<AgentMessage>,
    items: &mpsc::Sender<Item>,
    agent_id: &str,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let message = tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    let _ = items.send(Item::End(Status::unavailable(
                        "the collector is shutting down; reconnect and replay",
                    ))).await;
                    return;
                }
                continue;
            }
            message = inbound.message() => message,
        };
        let batch = match message {
            Ok(Some(AgentMessage {
                msg: Some(AgentMsg::Batch(batch)),
            })) => batch,
            Ok(Some(AgentMessage {
                msg: Some(AgentMsg::Hello(_)),
            })) => {
                end_with_protocol_error(shared, items, "a second Hello on one stream").await;
                return;
            }
            Ok(Some(AgentMessage { msg: None })) => {
                end_with_protocol_error(shared, items, "an empty AgentMessage").await;
                return;
            }
            // The agent closed its side: answer what is in flight, then end.
            Ok(None) => return,
            Err(status) => {
                // Oversized or undecodable messages, or a broken connection.
                tracing::warn!(%agent_id, code = ?status.code(), error = %status.message(), "agent stream failed");
                let _ = items.send(Item::End(status)).await;
                return;
            }
        };
        let received = Instant::now();
        shared
            .metrics
            .batches_received
            .fetch_add(1, Ordering::Relaxed);
        if batch.agent_id != agent_id {
            let message = format!(
                "batch seq {} names agent {:?}, but this stream said hello as {agent_id:?}",
                batch.seq, batch.agent_id
            );
            end_with_protocol_error(shared, items, &message).await;
            return;
        }
        if shared.limiter.check_key(&batch.agent_id).is_err() {
            shared.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            let message = format!(
                "agent {agent_id:?} is over its rate of {} batches/s (burst {}): back off and replay",
                shared.config.rate_per_s, shared.config.burst
            );
            tracing::warn!(%agent_id, seq = batch.seq, "rate limited");
            let _ = items
                .send(Item::End(Status::resource_exhausted(message)))
                .await;
            return;
        }
        record_spool(shared, &batch);
        let seq = batch.seq;
        // Checked and turned into columns here, off the writer thread, and
        // queued in arrival order.
        let pending = match shared.writer.enqueue(PreparedBatch::new(batch)).await {
            Ok(pending) => pending,
            Err(e) => {
                let _ = items.send(Item::End(writer_status(&e))).await;
                return;
            }
        };
        if items
            .send(Item::Stored {
                seq,
                received,
                pending,
            })
            .await
            .is_err()
        {
            // The acker stopped (store failure or the agent went away).
            return;
        }
    }
}

fn record_spool(shared: &Shared, batch: &Batch) {
    if let Some(spool) = &batch.spool {
        shared.metrics.record_spool(
            &batch.agent_id,
            &batch.node_name,
            spool.dropped_batches_total,
            spool.dropped_bytes_total,
            spool.pending_batches,
        );
    }
}

async fn end_with_protocol_error(shared: &Shared, items: &mpsc::Sender<Item>, what: &str) {
    shared
        .metrics
        .protocol_errors
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(problem = what, "agent protocol error");
    let _ = items
        .send(Item::End(Status::invalid_argument(format!(
            "protocol error: {what}"
        ))))
        .await;
}

/// Answers items in arrival order: an ack after each commit, the end
/// status last.
async fn ack_in_order(
    mut items: mpsc::Receiver<Item>,
    tx: Outbound,
    metrics: Arc<Metrics>,
    agent_id: String,
) {
    while let Some(item) = items.recv().await {
        match item {
            Item::End(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
            Item::Stored {
                seq,
                received,
                pending,
            } => {
                let outcome = pending.outcome().await;
                match outcome {
                    Ok(IngestOutcome::Rejected(reason)) => {
                        // Never storable: ack past it so the agent does not
                        // replay it forever; counted by the writer.
                        tracing::warn!(%agent_id, seq, %reason, "malformed batch rejected, not stored");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(%agent_id, seq, error = %e, "storing a batch failed; the agent will replay it");
                        let _ = tx.send(Err(writer_status(&e))).await;
                        return;
                    }
                }
                let ack = CollectorMessage {
                    msg: Some(CollectorMsg::Ack(Ack { seq })),
                };
                if tx.send(Ok(ack)).await.is_err() {
                    return;
                }
                metrics.ack_latency.observe(received.elapsed());
            }
        }
    }
}

async fn first_hello(
    shared: &Shared,
    inbound: &mut Streaming<AgentMessage>,
) -> Result<Hello, Status> {
    let timeout = shared.config.hello_timeout;
    let first = tokio::time::timeout(timeout, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no Hello within {}",
                humantime::format_duration(timeout)
            ))
        })??;
    match first {
        Some(AgentMessage {
            msg: Some(AgentMsg::Hello(hello)),
        }) if !hello.agent_id.is_empty() && !hello.node_name.is_empty() => Ok(hello),
        Some(AgentMessage {
            msg: Some(AgentMsg::Hello(_)),
        }) => Err(Status::invalid_argument(
            "protocol error: Hello needs agent_id and node_name",
        )),
        Some(_) => Err(Status::invalid_argument(
            "protocol error: the first message of a stream must be Hello",
        )),
        None => Err(Status::cancelled(
            "the agent closed the stream before Hello",
        )),
    }
}

fn writer_status(e: &WriterError) -> Status {
    match e {
        WriterError::Closed | WriterError::NoAnswer => {
            Status::unavailable(format!("{e}; reconnect and replay"))
        }
        WriterError::Store(_) | WriterError::Spawn(_) => {
            Status::internal(format!("{e}; unacknowledged batches will be replayed"))
        }
    }
}

fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

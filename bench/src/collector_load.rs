//! The load: simulated agents, each on its own gRPC connection and
//! `AgentService.Stream`, doing what the real agent does on the wire.
//!
//! Each agent says Hello, checks the Welcome, then sends one batch per
//! simulated tick ([`SimAgent`]) with increasing `seq`, keeping at most
//! `window` batches unacknowledged (the real agent's `max_in_flight`, 64).
//! Acks are cumulative: an ack for `seq` answers every batch up to it. The
//! latency of a batch is from the moment it was due to be sent to its ack;
//! at a fixed rate a batch that had to wait for the window counts its wait
//! too (no coordinated omission).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::Endpoint;
use upid::wire::v1::agent_message::Msg as AgentMsg;
use upid::wire::v1::agent_service_client::AgentServiceClient;
use upid::wire::v1::collector_message::Msg as CollectorMsg;
use upid::wire::v1::{AgentMessage, Hello};

use crate::collector_sim::SimAgent;

mod wire;

pub use wire::{Pregenerated, pregenerate};

/// Largest message either side may send (the collector's default).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How long a stopping agent waits for the acks of what it sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Message compression on the agent streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// zstd, as `upid-agent run` sends.
    Zstd,
    /// Uncompressed.
    None,
}

/// How the agents connect.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The collector's gRPC address (loopback).
    pub addr: SocketAddr,
    /// Unacknowledged batches per agent, at most.
    pub window: usize,
    /// Message compression.
    pub compression: Compression,
}

/// When agents send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as acks allow, until stopped.
    Max,
    /// `per_agent_hz` batches per second per agent, agents evenly spread
    /// over the interval, until stopped.
    Rate {
        /// Batches per second of one agent.
        per_agent_hz: f64,
    },
    /// As fast as acks allow, until each agent's seq reaches this.
    UpToSeq(u64),
}

/// Counters every agent adds to as acks arrive.
#[derive(Debug, Default)]
pub struct Acked {
    batches: AtomicU64,
    samples: AtomicU64,
    /// Pre-generated agents that sent every batch they had before they
    /// were stopped.
    ran_out: AtomicU64,
}

impl Acked {
    /// `(batches, container samples)` acknowledged so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }

    /// Pre-generated agents that ran out of batches before they were
    /// stopped (their rate is a lower bound).
    pub fn ran_out(&self) -> u64 {
        self.ran_out.load(Ordering::Relaxed)
    }
}

/// One acknowledged batch, for latency statistics.
#[derive(Debug, Clone, Copy)]
pub struct AckedBatch {
    /// When it was due to be sent.
    pub due: Instant,
    /// From `due` to its ack.
    pub latency: Duration,
}

/// What one agent did in a phase.
#[derive(Debug)]
pub struct AgentDone {
    /// The simulation, to continue in the next phase.
    pub sim: SimAgent,
    /// Every batch acknowledged in the phase.
    pub acked: Vec<AckedBatch>,
    /// Times a batch came due while the window was full (it was sent late).
    pub window_waits: u64,
}

/// A running phase: agents sending until [`Phase::stop`].
#[derive(Debug)]
pub struct Phase {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<AgentDone>>>,
    acked: Arc<Acked>,
}

impl Phase {
    /// Starts one task per agent in `runtime`. `sims` carry on from where
    /// they are (their next batch has the next seq).
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        config: &LoadConfig,
        sims: Vec<SimAgent>,
        pace: Pace,
    ) -> Phase {
        let (stop, stop_rx) = watch::channel(false);
        let acked = Arc::new(Acked::default());
        let agents = sims.len().max(1);
        let started = Instant::now();
        let tasks = sims
            .into_iter()
            .enumerate()
            .map(|(i, sim)| {
                let first_due = match pace {
                    Pace::Rate { per_agent_hz } => {
                        started + Duration::from_secs_f64(i as f64 / agents as f64 / per_agent_hz)
                    }
                    Pace::Max | Pace::UpToSeq(_) => started,
                };
                runtime.spawn(run_agent(
                    config.clone(),
                    sim,
                    pace,
                    first_due,
                    stop_rx.clone(),
                    Arc::clone(&acked),
                ))
            })
            .collect();
        Phase { stop, tasks, acked }
    }

    /// Starts one task per pre-generated agent (see [`pregenerate`]): each
    /// sends its ready frames as fast as its window allows.
    pub fn start_pregenerated(
        runtime: &tokio::runtime::Runtime,
        config: &LoadConfig,
        agents: Vec<Pregenerated>,
    ) -> Phase {
        let (stop, stop_rx) = watch::channel(false);
        let acked = Arc::new(Acked::default());
        let tasks = agents
            .into_iter()
            .map(|agent| {
                runtime.spawn(wire::run_agent(
                    config.clone(),
                    agent,
                    stop_rx.clone(),
                    Arc::clone(&acked),
                ))
            })
            .collect();
        Phase { stop, tasks, acked }
    }

    /// What has been acknowledged so far.
    pub fn acked(&self) -> &Acked {
        &self.acked
    }

    /// True when every agent has finished on its own (`UpToSeq`) or failed.
    pub fn all_finished(&self) -> bool {
        self.tasks.iter().all(|t| t.is_finished())
    }

    /// Tells every agent to stop sending, waits until each has the acks
    /// of everything it sent, and returns what they did.
    pub fn stop(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<AgentDone>> {
        let _ = self.stop.send(true);
        runtime.block_on(async move {
            let mut done = Vec::with_capacity(self.tasks.len());
            for task in self.tasks {
                done.push(task.await.context("an agent task panicked")??);
            }
            Ok(done)
        })
    }
}

/// One agent for one phase.
async fn run_agent(
    config: LoadConfig,
    mut sim: SimAgent,
    pace: Pace,
    first_due: Instant,
    mut stop: watch::Receiver<bool>,
    acked: Arc<Acked>,
) -> anyhow::Result<AgentDone> {
    let agent = sim.agent_id().to_owned();
    let url = format!("http://{}", config.addr);
    let channel = Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad collector URL {url}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("{agent}: connecting to {url}"))?;
    let mut client = AgentServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    if config.compression == Compression::Zstd {
        client = client
            .send_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Zstd);
    }
    let (tx, rx) = mpsc::channel::<AgentMessage>(config.window + 4);
    let hello = AgentMessage {
        msg: Some(AgentMsg::Hello(Hello {
            agent_id: agent.clone(),
            node_name: sim.node_name().to_owned(),
            agent_version: concat!("upid-bench ", env!("CARGO_PKG_VERSION")).to_owned(),
            sent_unix_ns: unix_now_ns(),
        })),
    };
    tx.send(hello)
        .await
        .map_err(|_| anyhow::anyhow!("{agent}: the stream closed before Hello"))?;
    let mut inbound = client
        .stream(ReceiverStream::new(rx))
        .await
        .with_context(|| format!("{agent}: opening AgentService.Stream"))?
        .into_inner();
    match inbound.message().await {
        Ok(Some(m)) => match m.msg {
            Some(CollectorMsg::Welcome(w)) if w.last_stored_seq == sim.seq() => {}
            Some(CollectorMsg::Welcome(w)) => bail!(
                "{agent}: the collector has seq {} stored, the simulation is at {} (a store left from another run?)",
                w.last_stored_seq,
                sim.seq()
            ),
            other => bail!("{agent}: expected Welcome, got {other:?}"),
        },
        Ok(None) => bail!("{agent}: the collector ended the stream before Welcome"),
        Err(status) => bail!("{agent}: waiting for Welcome: {status}"),
    }

    let interval = match pace {
        Pace::Rate { per_agent_hz } => Some(Duration::from_secs_f64(1.0 / per_agent_hz)),
        Pace::Max | Pace::UpToSeq(_) => None,
    };
    let last_seq = match pace {
        Pace::UpToSeq(n) => n,
        Pace::Max | Pace::Rate { .. } => u64::MAX,
    };
    // (seq, due, container samples) of every unacknowledged batch, in order.
    let mut in_flight: VecDeque<(u64, Instant, u64)> = VecDeque::with_capacity(config.window);
    let mut done = Vec::new();
    let mut window_waits = 0u64;
    let mut window_blocked = false;
    let mut next_due = first_due;
    let mut stopping = false;
    let mut drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let now = Instant::now();
        while !stopping
            && in_flight.len() < config.window
            && sim.seq() < last_seq
            && (interval.is_none() || next_due <= now)
        {
            let batch = sim.next_batch();
            let samples = batch.snapshot.as_ref().map_or(0, |s| s.containers.len()) as u64;
            let due = match interval {
                Some(interval) => {
                    let due = next_due;
                    next_due += interval;
                    due
                }
                None => Instant::now(),
            };
            in_flight.push_back((batch.seq, due, samples));
            tx.send(AgentMessage {
                msg: Some(AgentMsg::Batch(batch)),
            })
            .await
            .map_err(|_| anyhow::anyhow!("{agent}: the stream closed while sending"))?;
        }
        if in_flight.is_empty() && (stopping || sim.seq() >= last_seq) {
            break;
        }
        // A batch is due but the window is full: it will be sent late.
        let blocked =
            interval.is_some() && !stopping && in_flight.len() >= config.window && next_due <= now;
        if blocked && !window_blocked {
            window_waits += 1;
        }
        window_blocked = blocked;
        let can_send_later = !stopping && interval.is_some() && in_flight.len() < config.window;
        tokio::select! {
            message = inbound.message() => {
                let seq = match message {
                    Ok(Some(m)) => match m.msg {
                        Some(CollectorMsg::Ack(ack)) => ack.seq,
                        other => bail!("{agent}: expected Ack, got {other:?}"),
                    },
                    Ok(None) => bail!("{agent}: the collector ended the stream with {} batches unacknowledged", in_flight.len()),
                    Err(status) => bail!("{agent}: stream failed: {status}"),
                };
                let now = Instant::now();
                while let Some(&(s, due, samples)) = in_flight.front() {
                    if s > seq {
                        break;
                    }
                    in_flight.pop_front();
                    acked.batches.fetch_add(1, Ordering::Relaxed);
                    acked.samples.fetch_add(samples, Ordering::Relaxed);
                    done.push(AckedBatch { due, latency: now.saturating_duration_since(due) });
                }
            }
            _ = tokio::time::sleep_until(next_due), if can_send_later => {}
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    drain_deadline = Instant::now() + DRAIN_TIMEOUT;
                }
            }
            _ = tokio::time::sleep_until(drain_deadline), if stopping => {
                bail!("{agent}: {} batches still unacknowledged {} after stopping", in_flight.len(), humantime::format_duration(DRAIN_TIMEOUT));
            }
        }
    }
    // Closing our side ends the stream cleanly.
    drop(tx);
    Ok(AgentDone {
        sim,
        acked: done,
        window_waits,
    })
}

fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

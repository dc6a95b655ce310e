//! Pre-encoded agents for the max mode: every batch is made, encoded and
//! compressed before the clock starts, and sent as ready gRPC frames on a
//! plain HTTP/2 stream.
//!
//! Why: the simulated agents share this machine's two cores with the
//! collector. Making a batch live (simulating 50 containers, protobuf,
//! a fresh zstd context per message as tonic makes) costs about 3 µs per
//! container sample, so at the 500,000 samples/s goal the agents alone
//! would need 1.5 of the 2 cores. On a real cluster every agent runs on
//! its own node; here their work is done ahead, and what is left in the
//! measured interval is what a network would do: bytes written to a
//! socket, acks read.
//!
//! The wire is exactly what `upid-agent` sends: `AgentService/Stream`,
//! Hello first, then one `Batch` per tick, each message zstd-compressed
//! as tonic compresses (level 3, streaming) with the gRPC compressed flag set and
//! `grpc-encoding: zstd`, so the collector decodes and decompresses every
//! message as it does in production. Acks are read the same way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;
use upid::wire::v1::agent_message::Msg as AgentMsg;
use upid::wire::v1::collector_message::Msg as CollectorMsg;
use upid::wire::v1::{AgentMessage, CollectorMessage, Hello};

use super::{Acked, AckedBatch, AgentDone, Compression, DRAIN_TIMEOUT, LoadConfig, unix_now_ns};
use crate::collector_sim::SimAgent;

/// The gRPC path of `AgentService.Stream`.
const STREAM_PATH: &str = "/upid.v1.AgentService/Stream";

/// zstd level tonic compresses with (`zstd::DEFAULT_COMPRESSION_LEVEL`).
const ZSTD_LEVEL: i32 = 3;

/// Largest message accepted from the collector.
const MAX_INBOUND_BYTES: usize = 1 << 20;

/// One agent's batches, ready to send.
#[derive(Debug)]
pub struct Pregenerated {
    /// The agent as it was before the first pre-generated batch.
    pub sim: SimAgent,
    /// One gRPC frame per batch, seqs `sim.seq() + 1` onwards.
    pub frames: VecDeque<Bytes>,
}

/// Compresses a message as tonic does (`tonic::codec::compression`): a
/// streaming encoder at level 3 without a pledged size, so the frame
/// header asks the collector for the same window a real agent's do.
fn zstd_like_tonic(encoded: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder =
        zstd::stream::read::Encoder::new(encoded, ZSTD_LEVEL).context("creating a zstd encoder")?;
    let mut out = Vec::with_capacity(encoded.len() / 2);
    std::io::copy(&mut encoder, &mut out).context("zstd-compressing a batch")?;
    Ok(out)
}

/// One gRPC length-prefixed message: flag, big-endian length, payload
/// (zstd-compressed when `compress`).
fn frame(message: &AgentMessage, compress: bool) -> anyhow::Result<Bytes> {
    let encoded = message.encode_to_vec();
    let (flag, payload) = if compress {
        (1u8, zstd_like_tonic(&encoded)?)
    } else {
        (0u8, encoded)
    };
    let len = u32::try_from(payload.len()).context("a batch over 4 GiB")?;
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u8(flag);
    out.put_u32(len);
    out.extend_from_slice(&payload);
    Ok(out.freeze())
}

/// Makes `batches` batches of every agent (their seqs follow each
/// agent's current one), on all cores. Returns the frames and their total
/// bytes.
pub fn pregenerate(
    sims: Vec<SimAgent>,
    batches: u64,
    compression: Compression,
) -> anyhow::Result<(Vec<Pregenerated>, u64)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(sims.len().max(1));
    let per_thread = sims.len().div_ceil(threads);
    let mut chunks: Vec<Vec<SimAgent>> = Vec::new();
    let mut rest = sims;
    while !rest.is_empty() {
        let tail = rest.split_off(per_thread.min(rest.len()));
        chunks.push(rest);
        rest = tail;
    }
    let results: Vec<anyhow::Result<Vec<Pregenerated>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || -> anyhow::Result<Vec<Pregenerated>> {
                    let compress = compression == Compression::Zstd;
                    chunk
                        .into_iter()
                        .map(|sim| {
                            let start = sim.clone();
                            let mut sim = sim;
                            let mut frames = VecDeque::with_capacity(batches as usize);
                            for _ in 0..batches {
                                let message = AgentMessage {
                                    msg: Some(AgentMsg::Batch(sim.next_batch())),
                                };
                                frames.push_back(frame(&message, compress)?);
                            }
                            Ok(Pregenerated { sim: start, frames })
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a generator thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    let bytes = out
        .iter()
        .flat_map(|p| p.frames.iter())
        .map(|f| f.len() as u64)
        .sum();
    Ok((out, bytes))
}

/// The collector's side of one stream: gRPC messages out of HTTP/2 DATA.
struct Inbound {
    body: h2::RecvStream,
    buf: BytesMut,
    decompressor: zstd::bulk::Decompressor<'static>,
}

impl Inbound {
    /// The next message, `None` at the end of the stream. Cancel-safe: the
    /// buffer only changes once a chunk has arrived.
    async fn message(&mut self) -> anyhow::Result<Option<CollectorMessage>> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if len > MAX_INBOUND_BYTES {
                    bail!("the collector sent a {len}-byte message");
                }
                if self.buf.len() >= 5 + len {
                    let flag = self.buf[0];
                    self.buf.advance(5);
                    let payload = self.buf.split_to(len);
                    let message = if flag == 1 {
                        let plain = self
                            .decompressor
                            .decompress(&payload, MAX_INBOUND_BYTES)
                            .context("zstd-decompressing a collector message")?;
                        CollectorMessage::decode(plain.as_slice())
                    } else {
                        CollectorMessage::decode(payload)
                    }
                    .context("decoding a collector message")?;
                    return Ok(Some(message));
                }
            }
            match self.body.data().await {
                Some(Ok(chunk)) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(e).context("reading the collector's stream"),
                None => return Ok(None),
            }
        }
    }

    /// The `grpc-status` and message the stream ended with.
    async fn status(&mut self) -> String {
        match self.body.trailers().await {
            Ok(Some(t)) => grpc_status(&t),
            Ok(None) => "no trailers".to_owned(),
            Err(e) => format!("reading trailers: {e}"),
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    format!("grpc-status {} {}", get("grpc-status"), get("grpc-message"))
}

/// One pre-generated agent for the max mode: sends its frames as fast as
/// the window allows until stopped (or out of frames, counted in
/// [`Acked::ran_out`]), then waits for the acks of what it sent. The returned simulation is at the last seq sent,
/// so the next phase carries on from there.
pub async fn run_agent(
    config: LoadConfig,
    pregenerated: Pregenerated,
    mut stop: watch::Receiver<bool>,
    acked: Arc<Acked>,
) -> anyhow::Result<AgentDone> {
    let Pregenerated {
        mut sim,
        mut frames,
    } = pregenerated;
    let agent = sim.agent_id().to_owned();
    let samples_per_batch = sim.containers() as u64;
    let tcp = tokio::net::TcpStream::connect(config.addr)
        .await
        .with_context(|| format!("{agent}: connecting to {}", config.addr))?;
    tcp.set_nodelay(true)?;
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 22)
        .handshake::<_, Bytes>(tcp)
        .await
        .with_context(|| format!("{agent}: HTTP/2 handshake"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.context("HTTP/2 connection")?;
    let compressed = config.compression == Compression::Zstd;
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{}{STREAM_PATH}", config.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-accept-encoding", "zstd");
    if compressed {
        request = request.header("grpc-encoding", "zstd");
    }
    let request = request.body(()).context("building the request")?;
    let (response, mut send) = client
        .send_request(request, false)
        .with_context(|| format!("{agent}: opening {STREAM_PATH}"))?;
    let hello = AgentMessage {
        msg: Some(AgentMsg::Hello(Hello {
            agent_id: agent.clone(),
            node_name: sim.node_name().to_owned(),
            agent_version: concat!("upid-bench ", env!("CARGO_PKG_VERSION")).to_owned(),
            sent_unix_ns: unix_now_ns(),
        })),
    };
    send.send_data(frame(&hello, compressed)?, false)
        .with_context(|| format!("{agent}: sending Hello"))?;
    let response = response
        .await
        .with_context(|| format!("{agent}: waiting for the response headers"))?;
    if response.headers().contains_key("grpc-status") {
        bail!(
            "{agent}: the collector refused the stream: {}",
            grpc_status(response.headers())
        );
    }
    let mut inbound = Inbound {
        body: response.into_body(),
        buf: BytesMut::with_capacity(4096),
        decompressor: zstd::bulk::Decompressor::new()?,
    };
    match inbound.message().await? {
        Some(CollectorMessage {
            msg: Some(CollectorMsg::Welcome(w)),
        }) if w.last_stored_seq == sim.seq() => {}
        Some(CollectorMessage {
            msg: Some(CollectorMsg::Welcome(w)),
        }) => bail!(
            "{agent}: the collector has seq {} stored, the simulation is at {}",
            w.last_stored_seq,
            sim.seq()
        ),
        Some(other) => bail!("{agent}: expected Welcome, got {other:?}"),
        None => bail!(
            "{agent}: the collector ended the stream before Welcome: {}",
            inbound.status().await
        ),
    }

    let first_seq = sim.seq() + 1;
    let mut next_seq = first_seq;
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(config.window);
    let mut done = Vec::new();
    let mut stopping = false;
    let mut ran_out = false;
    let mut drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        while !stopping && in_flight.len() < config.window {
            let Some(frame) = frames.pop_front() else {
                ran_out = true;
                break;
            };
            in_flight.push_back((next_seq, Instant::now()));
            next_seq += 1;
            send.send_data(frame, false)
                .with_context(|| format!("{agent}: sending a batch"))?;
        }
        if in_flight.is_empty() && stopping {
            break;
        }
        tokio::select! {
            message = inbound.message() => {
                let seq = match message? {
                    Some(CollectorMessage { msg: Some(CollectorMsg::Ack(ack)) }) => ack.seq,
                    Some(other) => bail!("{agent}: expected Ack, got {other:?}"),
                    None => bail!(
                        "{agent}: the collector ended the stream with {} batches unacknowledged: {}",
                        in_flight.len(),
                        inbound.status().await
                    ),
                };
                let now = Instant::now();
                while let Some(&(s, due)) = in_flight.front() {
                    if s > seq {
                        break;
                    }
                    in_flight.pop_front();
                    acked.batches.fetch_add(1, Ordering::Relaxed);
                    acked.samples.fetch_add(samples_per_batch, Ordering::Relaxed);
                    done.push(AckedBatch { due, latency: now.saturating_duration_since(due) });
                }
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    drain_deadline = Instant::now() + DRAIN_TIMEOUT;
                }
            }
            _ = tokio::time::sleep_until(drain_deadline), if stopping => {
                bail!("{agent}: {} batches still unacknowledged after stopping", in_flight.len());
            }
        }
    }
    // End our side cleanly, and free what was not sent.
    let _ = send.send_data(Bytes::new(), true);
    drop(frames);
    let sent = next_seq - first_seq;
    let sim = tokio::task::spawn_blocking(move || {
        for _ in 0..sent {
            sim.next_batch();
        }
        sim
    })
    .await
    .context("fast-forwarding a simulated agent")?;
    if ran_out {
        acked.ran_out.fetch_add(1, Ordering::Relaxed);
    }
    Ok(AgentDone {
        sim,
        acked: done,
        window_waits: 0,
    })
}

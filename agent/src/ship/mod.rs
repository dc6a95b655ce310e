//! Shipping snapshots to the collector without losing any.
//!
//! Every snapshot becomes a `upid.v1.Batch` with the next sequence number
//! and is written to the [`Spool`] **before** it is sent. One long-lived
//! bidirectional stream carries batches out and cumulative acks back; an ack
//! deletes what it covers from the spool. When the stream breaks, the agent
//! reconnects with [`Backoff`] and replays everything unacknowledged, in
//! order, a window at a time. The collector ignores sequence numbers it
//! already stored, so a replay never doubles a sample.
//!
//! Stopping drains: no more snapshots are taken, and the shipper keeps
//! delivering until everything spooled is acknowledged or the [`Drain`] time
//! is up; the rest waits in the spool for the next run.

pub mod backoff;
pub mod connect;

use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use upid::model::Snapshot;
use upid::wire::v1::{self, agent_message, collector_message};

pub use backoff::Backoff;
pub use connect::{CollectorEndpoint, ConnectError};

use crate::spool::{Spool, SpoolError};

/// What one tick hands the shipper: the samples, and the inventory changes
/// since the previous tick (see [`crate::inventory::Tracker::take`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// What the sampler read.
    pub snapshot: Snapshot,
    /// Inventory changes, or a full inventory; `None` when nothing changed.
    pub inventory: Option<v1::Inventory>,
}

impl From<Snapshot> for Tick {
    fn from(snapshot: Snapshot) -> Tick {
        Tick {
            snapshot,
            inventory: None,
        }
    }
}

/// How the shipper behaves.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// The collector.
    pub endpoint: CollectorEndpoint,
    /// Batches sent but not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// How long to wait for the collector's Welcome after connecting.
    pub handshake_timeout: Duration,
}

/// What the shipper did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipStats {
    /// Batches spooled.
    pub spooled: u64,
    /// Batch sends (first sends and replays).
    pub sent: u64,
    /// Highest sequence number acknowledged.
    pub acked_seq: u64,
    /// Connections established.
    pub connections: u64,
    /// Batches that could not be written to the spool (disk full, I/O
    /// error); they were sent from memory when connected, else lost.
    pub spool_write_failures: u64,
    /// Batches still unacknowledged in the spool when shipping stopped
    /// (sent by the next run).
    pub pending_batches: u64,
}

/// A connected stream.
struct Conn {
    tx: mpsc::Sender<v1::AgentMessage>,
    inbound: Streaming<v1::CollectorMessage>,
    /// Highest seq handed to this stream.
    sent_up_to: u64,
}

/// Why shipping stopped for good (connection problems never stop it).
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The endpoint settings are invalid (bad URL, unreadable certificate).
    #[error(transparent)]
    Config(#[from] ConnectError),
}

/// How long a stopping shipper keeps delivering what is spooled before it
/// returns (what is left stays in the spool for the next run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// After the snapshot channel closed: every snapshot was taken (e.g.
    /// `upid-agent run --count`).
    pub after_last_snapshot: Duration,
    /// After `shutdown` turned true (SIGTERM, SIGINT). Also cuts a drain
    /// that is already running down to this.
    pub after_shutdown: Duration,
}

/// The drain of [`ship`]: a short grace period either way.
pub const DEFAULT_DRAIN: Drain = Drain {
    after_last_snapshot: Duration::from_secs(2),
    after_shutdown: Duration::from_secs(2),
};

/// Ships snapshots from `snapshots` through `spool` to the collector until
/// `shutdown` turns true or the snapshot channel closes, then delivers what
/// is still unacknowledged for up to 2 s (see [`ship_then_drain`]).
pub async fn ship<T: Into<Tick>>(
    spool: Spool,
    config: ShipperConfig,
    node_name: String,
    snapshots: mpsc::Receiver<T>,
    shutdown: watch::Receiver<bool>,
) -> Result<ShipStats, ShipError> {
    ship_then_drain(spool, config, node_name, snapshots, shutdown, DEFAULT_DRAIN).await
}

/// Ships snapshots from `snapshots` through `spool` to the collector;
/// returns what it did. Connection failures are retried forever with
/// backoff; only invalid endpoint settings are an error.
///
/// Stopping has two steps. When the snapshot channel closes, or `shutdown`
/// turns true (or its sender is dropped), no more snapshots are taken:
/// those already queued in the channel are spooled, then the shipper keeps
/// connecting, replaying and collecting acks until every spooled batch is
/// acknowledged or the [`Drain`] time is up. [`ShipStats::pending_batches`]
/// tells which: what is left stays in the spool and is sent by the next run.
pub async fn ship_then_drain<T: Into<Tick>>(
    spool: Spool,
    config: ShipperConfig,
    node_name: String,
    mut snapshots: mpsc::Receiver<T>,
    mut shutdown: watch::Receiver<bool>,
    drain: Drain,
) -> Result<ShipStats, ShipError> {
    // Reject bad settings up front instead of retrying them forever.
    config.endpoint.endpoint()?;
    let mut s = Shipper::new(spool, config, node_name);
    let stopped_early = *shutdown.borrow_and_update();

    // Shipping: until the last snapshot or a shutdown.
    let mut shutdown_seen = stopped_early;
    let mut deadline = if stopped_early {
        Instant::now() + drain.after_shutdown
    } else {
        loop {
            s.connect_and_fill().await;
            tokio::select! {
                snapshot = snapshots.recv() => match snapshot {
                    Some(tick) => s.spool_snapshot(tick.into()).await,
                    None => break Instant::now() + drain.after_last_snapshot,
                },
                msg = next_message(&mut s.conn) => s.handle(msg),
                _ = tokio::time::sleep_until(s.retry_at), if s.conn.is_none() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow_and_update() {
                        shutdown_seen = true;
                        break Instant::now() + drain.after_shutdown;
                    }
                }
            }
        }
    };

    // Snapshots already taken are spooled, never thrown away.
    snapshots.close();
    while let Ok(tick) = snapshots.try_recv() {
        s.spool_snapshot(tick.into()).await;
    }

    // Draining: deliver what is spooled until it is all acknowledged or the
    // time is up.
    tracing::info!(
        pending = s.spool.pending_batches(),
        "delivering the spooled batches before stopping"
    );
    loop {
        if s.drained() || Instant::now() >= deadline {
            break;
        }
        if tokio::time::timeout_at(deadline, s.connect_and_fill())
            .await
            .is_err()
        {
            break;
        }
        if s.drained() {
            break;
        }
        tokio::select! {
            msg = next_message(&mut s.conn) => s.handle(msg),
            _ = tokio::time::sleep_until(s.retry_at), if s.conn.is_none() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            changed = shutdown.changed(), if !shutdown_seen => {
                if changed.is_err() || *shutdown.borrow_and_update() {
                    shutdown_seen = true;
                    deadline = deadline.min(Instant::now() + drain.after_shutdown);
                }
            }
        }
    }
    s.stats.pending_batches = s.spool.pending_batches();
    Ok(s.stats)
}

/// The shipper's state between events.
struct Shipper {
    spool: Spool,
    config: ShipperConfig,
    node_name: String,
    stats: ShipStats,
    backoff: Backoff,
    conn: Option<Conn>,
    /// When to try connecting again (while `conn` is `None`).
    retry_at: Instant,
}

impl Shipper {
    fn new(spool: Spool, config: ShipperConfig, node_name: String) -> Shipper {
        let stats = ShipStats {
            acked_seq: spool.acked_seq(),
            ..ShipStats::default()
        };
        Shipper {
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            spool,
            config,
            node_name,
            stats,
            conn: None,
            retry_at: Instant::now(),
        }
    }

    /// Connects when due, then sends spooled batches while the window has
    /// room.
    async fn connect_and_fill(&mut self) {
        if self.conn.is_none() && Instant::now() >= self.retry_at {
            match open(&self.config, &mut self.spool, &self.node_name).await {
                Ok(c) => {
                    tracing::info!(url = %self.config.endpoint.url, resume_after = c.sent_up_to, "connected to the collector");
                    self.stats.connections += 1;
                    self.stats.acked_seq = self.spool.acked_seq();
                    self.backoff.reset();
                    self.conn = Some(c);
                }
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, pending = self.spool.pending_batches(), "collector unreachable; batches wait in the spool");
                    self.retry_at = Instant::now() + delay;
                }
            }
        }
        if let Some(c) = &mut self.conn
            && let Err(e) = fill_window(
                c,
                &mut self.spool,
                self.config.max_in_flight,
                &mut self.stats,
            )
            .await
        {
            tracing::warn!(error = %e, "stream to the collector broke while sending");
            self.disconnect();
        }
    }

    /// Handles what the collector sent (or that the stream ended).
    fn handle(&mut self, msg: Result<v1::CollectorMessage, tonic::Status>) {
        match msg {
            Ok(v1::CollectorMessage {
                msg: Some(collector_message::Msg::Ack(ack)),
            }) => {
                match self.spool.ack(ack.seq) {
                    Err(e @ SpoolError::AckBeyondLast { .. }) => {
                        tracing::error!(error = %e, seq = ack.seq, "collector acknowledged a batch this agent never sent; reconnecting");
                        self.disconnect();
                        return;
                    }
                    // The ack took effect in memory; the spool saves it later.
                    Err(e) => {
                        tracing::warn!(error = %e, seq = ack.seq, "could not record an ack in the spool")
                    }
                    Ok(()) => {}
                }
                self.stats.acked_seq = self.stats.acked_seq.max(ack.seq);
            }
            Ok(other) => tracing::debug!(?other, "ignoring unexpected collector message"),
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "stream to the collector ended");
                self.disconnect();
            }
        }
    }

    /// Drops the stream and schedules a reconnect.
    fn disconnect(&mut self) {
        self.conn = None;
        self.retry_at = Instant::now() + self.backoff.next_delay();
    }

    /// Everything spooled is acknowledged, and so is every batch sent.
    fn drained(&self) -> bool {
        self.spool.pending_batches() == 0
            && self
                .conn
                .as_ref()
                .is_none_or(|c| self.spool.acked_seq() >= c.sent_up_to)
    }

    /// Encodes the tick as the next batch and spools it; if the spool
    /// cannot take it, sends it from memory when connected.
    async fn spool_snapshot(&mut self, tick: Tick) {
        spool_snapshot(
            &mut self.spool,
            &self.node_name,
            tick,
            &mut self.conn,
            &mut self.stats,
        )
        .await;
    }
}

/// Connects, says hello, waits for the welcome and drops from the spool
/// what the collector already has.
async fn open(config: &ShipperConfig, spool: &mut Spool, node_name: &str) -> Result<Conn, String> {
    let mut client = config.endpoint.connect().await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(config.max_in_flight.max(1) + 2);
    let hello = v1::AgentMessage {
        msg: Some(agent_message::Msg::Hello(v1::Hello {
            agent_id: spool.agent_id().to_string(),
            node_name: node_name.to_string(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            sent_unix_ns: crate::sampler::unix_now_ns(),
        })),
    };
    tx.send(hello)
        .await
        .map_err(|_| "stream closed before hello".to_string())?;
    let mut inbound = client
        .stream(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let first = tokio::time::timeout(config.handshake_timeout, inbound.message())
        .await
        .map_err(|_| "no welcome from the collector in time".to_string())?
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    let Some(v1::CollectorMessage {
        msg: Some(collector_message::Msg::Welcome(welcome)),
    }) = first
    else {
        return Err(format!("expected a welcome, got {first:?}"));
    };
    let last_assigned = spool.next_seq().saturating_sub(1);
    if welcome.last_stored_seq > last_assigned {
        tracing::error!(
            stored = welcome.last_stored_seq,
            last_assigned,
            "the collector holds newer batches of this agent id than this spool ever made (spool replaced?); its batches would be ignored as duplicates"
        );
    } else if welcome.last_stored_seq > spool.acked_seq() {
        spool
            .ack(welcome.last_stored_seq)
            .map_err(|e| e.to_string())?;
    }
    let skew_ns = crate::sampler::unix_now_ns() - welcome.server_unix_ns;
    if skew_ns.unsigned_abs() > 5_000_000_000 {
        tracing::warn!(
            skew_ms = skew_ns / 1_000_000,
            "this node's clock differs from the collector's by more than 5 s"
        );
    }
    Ok(Conn {
        tx,
        inbound,
        sent_up_to: spool.acked_seq(),
    })
}

/// Sends spooled batches after `sent_up_to` while fewer than `window` are
/// unacknowledged.
async fn fill_window(
    c: &mut Conn,
    spool: &mut Spool,
    window: usize,
    stats: &mut ShipStats,
) -> Result<(), String> {
    let last = spool.next_seq().saturating_sub(1);
    let in_flight = c.sent_up_to.saturating_sub(spool.acked_seq());
    let room = (window as u64).saturating_sub(in_flight);
    if room == 0 || c.sent_up_to >= last {
        return Ok(());
    }
    let mut to_send = Vec::new();
    for record in spool.replay_from(c.sent_up_to + 1).take(room as usize) {
        match record {
            Ok(r) => to_send.push(r),
            Err(e) => {
                // Counted and reported by the spool; skip past it.
                tracing::warn!(error = %e, "unreadable spooled batch skipped");
            }
        }
    }
    for r in to_send {
        let batch = v1::Batch::decode(r.payload.as_slice())
            .map_err(|e| format!("spooled batch {} undecodable: {e}", r.seq))?;
        c.tx.send(v1::AgentMessage {
            msg: Some(agent_message::Msg::Batch(batch)),
        })
        .await
        .map_err(|_| "stream closed".to_string())?;
        c.sent_up_to = r.seq;
        stats.sent += 1;
    }
    Ok(())
}

/// Encodes the tick as the next batch and spools it; if the spool cannot
/// take it, sends it from memory when connected.
async fn spool_snapshot(
    spool: &mut Spool,
    node_name: &str,
    tick: Tick,
    conn: &mut Option<Conn>,
    stats: &mut ShipStats,
) {
    let seq = spool.next_seq();
    let batch = v1::Batch {
        agent_id: spool.agent_id().to_string(),
        node_name: node_name.to_string(),
        seq,
        snapshot: Some(tick.snapshot.into()),
        inventory: tick.inventory,
        spool: Some(v1::SpoolStats {
            dropped_batches_total: spool.dropped_total().batches,
            dropped_bytes_total: spool.dropped_total().bytes,
            pending_batches: spool.pending_batches(),
            pending_bytes: spool.pending_bytes(),
        }),
    };
    let bytes = batch.encode_to_vec();
    match spool.append(&bytes) {
        Ok(appended) => {
            debug_assert_eq!(appended.seq, seq);
            stats.spooled += 1;
        }
        Err(SpoolError::TooLarge { payload_bytes, .. }) => {
            // It can never be spooled, so it is dropped like the oldest
            // batch of a full spool: its seq is used up (the next batch must
            // not reuse it, or the collector takes that one for a
            // duplicate) and the loss is counted and reported.
            stats.spool_write_failures += 1;
            spool.record_unspoolable(payload_bytes);
        }
        Err(e) => {
            stats.spool_write_failures += 1;
            log_spool_failure(&e);
            // Not replayable; deliver it now if we can. Only once every
            // spooled batch before it went out: acks are cumulative, so
            // overtaking them would mark them delivered. Batches lost while
            // disconnected leave a gap, which is fine.
            if let Some(c) = conn
                && c.sent_up_to < seq
                && !spool
                    .replay_from(c.sent_up_to + 1)
                    .any(|r| r.is_ok_and(|r| r.seq < seq))
                && c.tx
                    .send(v1::AgentMessage {
                        msg: Some(agent_message::Msg::Batch(batch)),
                    })
                    .await
                    .is_ok()
            {
                c.sent_up_to = seq;
                stats.sent += 1;
            }
        }
    }
}

fn log_spool_failure(e: &SpoolError) {
    if e.is_disk_full() {
        tracing::error!(error = %e, "spool disk full: this batch is not protected against loss");
    } else {
        tracing::error!(error = %e, "cannot write the spool: this batch is not protected against loss");
    }
}

async fn next_message(conn: &mut Option<Conn>) -> Result<v1::CollectorMessage, tonic::Status> {
    match conn {
        Some(c) => match c.inbound.message().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(tonic::Status::unavailable(
                "the collector closed the stream",
            )),
            Err(s) => Err(s),
        },
        None => std::future::pending().await,
    }
}

//! The one writer: a dedicated thread owning the [`Store`], fed by a bounded
//! channel.
//!
//! Group commit: the thread takes the first queued job, then everything
//! else already queued (up to [`WriterConfig::max_group_batches`]), and
//! stores all those batches in one transaction. While a COMMIT runs, new
//! batches queue up and form the next group, so groups grow with load by
//! themselves; [`WriterConfig::max_group_wait`] can additionally hold a small
//! group open to collect more (off by default: it only adds latency when
//! there is no load). Every sender is answered after COMMIT returned.
//!
//! A full channel makes [`WriterHandle::submit`] wait: backpressure reaches
//! the agents' streams instead of memory growing.
//!
//! Checkpoints come on a schedule (time or batch count) and run on a
//! thread of their own ([`BackgroundCheckpoint`](super::BackgroundCheckpoint)),
//! so ingest commits go on while DuckDB writes one; the writer checkpoints
//! once more itself when it stops: after [`WriterHandle::shutdown`], or
//! when every handle is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use upid::wire::v1::{Batch, Hello};

use super::{IngestOutcome, PreparedBatch, Store, StoreError, unix_now_ns};
use crate::metrics::WriterDurations;

/// How the writer batches and checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Jobs the channel holds before `submit` waits (backpressure).
    pub queue_capacity: usize,
    /// Most batches stored in one transaction. Large groups are what makes
    /// ingest fast under load: the dimension rows (one per container
    /// touched) are written once per transaction, and DuckDB's per-commit
    /// costs are paid once; at low load groups stay small by themselves.
    pub max_group_batches: usize,
    /// How long to hold a group open for more batches once the queue is
    /// empty; zero (the default) commits at once.
    pub max_group_wait: Duration,
    /// Checkpoint at least this often while there are new writes.
    pub checkpoint_interval: Duration,
    /// Checkpoint after this many stored batches.
    pub checkpoint_every_batches: u64,
    /// Longest the stored state of agents, nodes and containers may lag
    /// the samples (see [`Store::set_dims_flush_interval`]); queries see
    /// last-seen times and counts up to this old.
    pub dims_flush_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 4096,
            max_group_batches: 2048,
            max_group_wait: Duration::ZERO,
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_every_batches: 10_000,
            dims_flush_interval: DEFAULT_DIMS_FLUSH_INTERVAL,
        }
    }
}

/// How long the writer lets the stored state of agents, nodes and
/// containers lag: writing it in every transaction was more than half the
/// writer's time under load (bench/RESULTS.md).
pub const DEFAULT_DIMS_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a job was not answered with a result from the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriterError {
    /// The writer has stopped (shut down, or its thread died).
    #[error("the store writer has stopped")]
    Closed,
    /// The writer stopped before answering this job; it may or may not be
    /// stored, so it must not be acknowledged (a replay is harmless).
    #[error("the store writer stopped before answering")]
    NoAnswer,
    /// Storing failed; nothing of the job was stored.
    #[error("storing failed: {0}")]
    Store(Arc<StoreError>),
    /// The writer thread or its timer runtime could not be started.
    #[error("starting the store writer: {0}")]
    Spawn(Arc<std::io::Error>),
}

/// Counters of what the writer did, since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Batches stored and committed.
    pub batches_stored: u64,
    /// Batches ignored as already stored.
    pub batches_duplicate: u64,
    /// Batches rejected as malformed.
    pub batches_rejected: u64,
    /// Batches answered expired: older than retention keeps samples.
    pub batches_expired: u64,
    /// Batches that failed to store (answered with an error).
    pub batches_failed: u64,
    /// Container samples stored.
    pub container_samples_stored: u64,
    /// Network samples stored.
    pub network_samples_stored: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Most batches in one transaction.
    pub largest_group_batches: u64,
    /// Duration of the latest ingest transaction, COMMIT included.
    pub last_commit_ns: u64,
    /// Checkpoints done.
    pub checkpoints: u64,
    /// Checkpoints that failed (retried at the next occasion).
    pub checkpoint_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches_stored: AtomicU64,
    batches_duplicate: AtomicU64,
    batches_rejected: AtomicU64,
    batches_expired: AtomicU64,
    batches_failed: AtomicU64,
    container_samples_stored: AtomicU64,
    network_samples_stored: AtomicU64,
    commits: AtomicU64,
    largest_group_batches: AtomicU64,
    last_commit_ns: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_errors: AtomicU64,
    durations: Arc<WriterDurations>,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> WriterStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WriterStats {
            batches_stored: get(&self.batches_stored),
            batches_duplicate: get(&self.batches_duplicate),
            batches_rejected: get(&self.batches_rejected),
            batches_expired: get(&self.batches_expired),
            batches_failed: get(&self.batches_failed),
            container_samples_stored: get(&self.container_samples_stored),
            network_samples_stored: get(&self.network_samples_stored),
            commits: get(&self.commits),
            largest_group_batches: get(&self.largest_group_batches),
            last_commit_ns: get(&self.last_commit_ns),
            checkpoints: get(&self.checkpoints),
            checkpoint_errors: get(&self.checkpoint_errors),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, WriterError>>;

enum Job {
    Batch {
        // Boxed: a batch is large and the queue holds many jobs.
        batch: Box<PreparedBatch>,
        reply: Reply<IngestOutcome>,
    },
    Hello {
        hello: Hello,
        received_unix_ns: i64,
        reply: Reply<u64>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Starts the writer thread.
#[derive(Debug)]
pub struct Writer;

impl Writer {
    /// Moves `store` onto a new writer thread with the default
    /// [`WriterConfig`].
    pub fn spawn(store: Store) -> Result<WriterHandle, WriterError> {
        Writer::spawn_with(store, WriterConfig::default())
    }

    /// Moves `store` onto a new writer thread.
    pub fn spawn_with(mut store: Store, config: WriterConfig) -> Result<WriterHandle, WriterError> {
        store.set_dims_flush_interval(config.dims_flush_interval);
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| WriterError::Spawn(Arc::new(e)))?;
        let thread_counters = Arc::clone(&counters);
        // Freeing a stored group (thousands of decoded strings and column
        // buffers) is work the one writer thread need not do.
        let (dropper, to_drop) = std::sync::mpsc::channel::<Vec<PreparedBatch>>();
        let dropper = std::thread::Builder::new()
            .name("upid-store-free".into())
            .spawn(move || to_drop.iter().for_each(drop))
            .map(|_| dropper)
            .ok();
        let checkpointer = match store.background_checkpoint() {
            Ok(background) => Checkpointer::spawn(background),
            Err(e) => {
                tracing::warn!(error = %e, "no connection for background checkpoints; the writer checkpoints itself and ingest waits during each");
                None
            }
        };
        std::thread::Builder::new()
            .name("upid-store-writer".into())
            .spawn(move || {
                WriterThread {
                    checkpointer,
                    store,
                    rx,
                    config,
                    counters: thread_counters,
                    runtime,
                    last_checkpoint: Instant::now(),
                    since_checkpoint: 0,
                    dropper,
                }
                .run();
            })
            .map_err(|e| WriterError::Spawn(Arc::new(e)))?;
        Ok(WriterHandle { tx, counters })
    }
}

/// Submits work to the writer; cheap to clone, one per agent stream.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

impl WriterHandle {
    /// The writer's transaction and checkpoint durations, observed as they
    /// happen (for `/metrics`).
    pub fn durations(&self) -> Arc<WriterDurations> {
        Arc::clone(&self.counters.durations)
    }

    /// Stores one batch (grouped with whatever else is queued) and answers
    /// after COMMIT: `Stored` and `Duplicate` may be acknowledged to the
    /// agent. Waits while the queue is full.
    ///
    /// The batch is checked and its samples put into columns here, on the
    /// caller's thread (see [`PreparedBatch`]): the writer thread only
    /// stores.
    pub async fn submit(&self, batch: Batch) -> Result<IngestOutcome, WriterError> {
        self.enqueue(PreparedBatch::new(batch))
            .await?
            .outcome()
            .await
    }

    /// Queues a prepared batch (waiting while the queue is full) and
    /// returns at once; the answer comes after COMMIT. Batches enqueued one
    /// after the other are stored in that order, which keeps an agent's
    /// seqs in order (a seq below the agent's highest stored one costs a
    /// ledger query).
    pub async fn enqueue(&self, batch: PreparedBatch) -> Result<PendingBatch, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::Batch {
                batch: Box::new(batch),
                reply,
            })
            .await
            .map_err(|_| WriterError::Closed)?;
        Ok(PendingBatch(answer))
    }

    /// Records an agent's hello in order with its batches and returns its
    /// last stored seq, for the Welcome. `received_unix_ns` is the
    /// collector's clock when the hello arrived.
    pub async fn hello(&self, hello: Hello, received_unix_ns: i64) -> Result<u64, WriterError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::Hello {
                hello,
                received_unix_ns,
                reply,
            })
            .await
            .map_err(|_| WriterError::Closed)?;
        answer.await.map_err(|_| WriterError::NoAnswer)?
    }

    /// Stores everything queued before this call, checkpoints, closes the
    /// database and stops the thread; later submits get
    /// [`WriterError::Closed`]. Returns once the thread is done.
    pub async fn shutdown(&self) -> Result<(), WriterError> {
        let (done, finished) = oneshot::channel();
        self.tx
            .send(Job::Shutdown { done })
            .await
            .map_err(|_| WriterError::Closed)?;
        finished.await.map_err(|_| WriterError::NoAnswer)
    }

    /// What the writer did so far.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// Jobs waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// A queued batch; [`PendingBatch::outcome`] waits for its answer.
#[derive(Debug)]
pub struct PendingBatch(oneshot::Receiver<Result<IngestOutcome, WriterError>>);

impl PendingBatch {
    /// What became of the batch, after COMMIT.
    pub async fn outcome(self) -> Result<IngestOutcome, WriterError> {
        self.0.await.map_err(|_| WriterError::NoAnswer)?
    }
}

/// Name of the thread that runs the writer's checkpoints (15 bytes: the
/// most Linux keeps, so `top -H` shows all of it).
pub const CHECKPOINT_THREAD_NAME: &str = "upid-checkpoint";

/// How often an idle writer looks whether its checkpoint thread finished.
const CHECKPOINT_POLL: Duration = Duration::from_millis(20);

/// What a background checkpoint came to, and how long it took.
type CheckpointResult = (Result<(), StoreError>, std::time::Duration);

/// The writer's line to its checkpoint thread.
struct Checkpointer {
    requests: std::sync::mpsc::Sender<()>,
    results: std::sync::mpsc::Receiver<CheckpointResult>,
    /// The writer's batch count since the previous checkpoint when it
    /// asked for the running one (`None`: none running).
    in_flight: Option<u64>,
}

impl Checkpointer {
    /// Starts the checkpoint thread; `None` (the writer then checkpoints
    /// itself) when it cannot be started.
    fn spawn(background: super::BackgroundCheckpoint) -> Option<Checkpointer> {
        let (requests, todo) = std::sync::mpsc::channel::<()>();
        let (done, results) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(CHECKPOINT_THREAD_NAME.into())
            .spawn(move || {
                for () in todo.iter() {
                    let started = std::time::Instant::now();
                    let result = background.run();
                    if done.send((result, started.elapsed())).is_err() {
                        break;
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Checkpointer {
                requests,
                results,
                in_flight: None,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the checkpoint thread; the writer checkpoints itself and ingest waits during each");
                None
            }
        }
    }
}

struct WriterThread {
    checkpointer: Option<Checkpointer>,
    store: Store,
    rx: mpsc::Receiver<Job>,
    config: WriterConfig,
    counters: Arc<Counters>,
    runtime: tokio::runtime::Runtime,
    last_checkpoint: Instant,
    since_checkpoint: u64,
    /// Frees stored groups on another thread (`None`: here).
    dropper: Option<std::sync::mpsc::Sender<Vec<PreparedBatch>>>,
}

impl WriterThread {
    fn run(mut self) {
        let mut done = Vec::new();
        while done.is_empty() {
            let Some(first) = self.next_job() else {
                break;
            };
            let jobs = self.gather(first);
            done = self.process(jobs);
            self.poll_checkpoint();
            if self.checkpoint_due() {
                self.checkpoint();
            }
        }
        // Stopping: store what was queued before the channel closed.
        self.rx.close();
        if let Some(mut c) = self.checkpointer.take()
            && c.in_flight.take().is_some()
        {
            let _ = c.results.recv();
        }
        let mut rest = Vec::new();
        while let Ok(job) = self.rx.try_recv() {
            rest.push(job);
        }
        done.extend(self.process(rest));
        self.checkpoint();
        let Self { store, .. } = self;
        drop(store);
        for done in done {
            let _ = done.send(());
        }
        tracing::debug!("store writer stopped");
    }

    /// The next job, writing held-back dimension state and checkpointing
    /// when their schedules come due while idle. `None` once every handle
    /// is gone.
    fn next_job(&mut self) -> Option<Job> {
        loop {
            self.poll_checkpoint();
            let idle_checkpoint = self.since_checkpoint > 0
                && self
                    .checkpointer
                    .as_ref()
                    .is_none_or(|c| c.in_flight.is_none());
            let checkpoint_at =
                idle_checkpoint.then(|| self.last_checkpoint + self.config.checkpoint_interval);
            let flush_at = self.store.dims_flush_due_at().map(Instant::from_std);
            let poll_at = self
                .checkpointer
                .as_ref()
                .and_then(|c| c.in_flight)
                .map(|_| Instant::now() + CHECKPOINT_POLL);
            let flush_at = match (flush_at, poll_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let deadline = match (checkpoint_at, flush_at) {
                (None, None) => return self.runtime.block_on(self.rx.recv()),
                (Some(at), None) | (None, Some(at)) => at,
                (Some(a), Some(b)) => a.min(b),
            };
            let rx = &mut self.rx;
            let received = self
                .runtime
                .block_on(async move { tokio::time::timeout_at(deadline, rx.recv()).await });
            match received {
                Ok(job) => return job,
                Err(_idle) if checkpoint_at.is_some_and(|at| at <= Instant::now()) => {
                    self.checkpoint();
                }
                Err(_idle)
                    if self
                        .store
                        .dims_flush_due_at()
                        .is_none_or(|at| Instant::from_std(at) > Instant::now()) => {}
                Err(_idle) => {
                    if let Err(e) = self.store.flush_dims() {
                        // Retried at the next ingest, checkpoint or stop.
                        tracing::warn!(error = %e, "writing held-back agent, node and container state failed");
                    }
                }
            }
        }
    }

    /// `first` plus whatever else is queued, up to the group limit; stops
    /// after a shutdown request.
    fn gather(&mut self, first: Job) -> Vec<Job> {
        let mut batches = usize::from(matches!(first, Job::Batch { .. }));
        let mut jobs = vec![first];
        let linger_until = Instant::now() + self.config.max_group_wait;
        while batches < self.config.max_group_batches
            && !matches!(jobs.last(), Some(Job::Shutdown { .. }))
        {
            let job = match self.rx.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Empty) if !self.config.max_group_wait.is_zero() => {
                    let rx = &mut self.rx;
                    let received = self.runtime.block_on(async move {
                        tokio::time::timeout_at(linger_until, rx.recv()).await
                    });
                    match received {
                        Ok(Some(job)) => job,
                        Ok(None) | Err(_) => break,
                    }
                }
                Err(_) => break,
            };
            batches += usize::from(matches!(job, Job::Batch { .. }));
            jobs.push(job);
        }
        jobs
    }

    /// Runs jobs in order: consecutive batches as one transaction. Returns
    /// the shutdown requests among them.
    fn process(&mut self, jobs: Vec<Job>) -> Vec<oneshot::Sender<()>> {
        let mut shutdown = Vec::new();
        let mut group = Vec::new();
        for job in jobs {
            match job {
                Job::Batch { batch, reply } => group.push((*batch, reply)),
                Job::Hello {
                    hello,
                    received_unix_ns,
                    reply,
                } => {
                    self.commit_group(std::mem::take(&mut group));
                    let answer = self
                        .store
                        .record_hello(&hello, received_unix_ns)
                        .map_err(|e| {
                            tracing::warn!(agent_id = %hello.agent_id, error = %e, "recording hello");
                            WriterError::Store(Arc::new(e))
                        });
                    let _ = reply.send(answer);
                }
                Job::Shutdown { done } => shutdown.push(done),
            }
        }
        self.commit_group(group);
        shutdown
    }

    fn commit_group(&mut self, group: Vec<(PreparedBatch, Reply<IngestOutcome>)>) {
        if group.is_empty() {
            return;
        }
        let (batches, replies): (Vec<PreparedBatch>, Vec<_>) = group.into_iter().unzip();
        let started = Instant::now();
        match self.store.ingest_prepared_at(&batches, unix_now_ns()) {
            Ok(outcomes) => {
                let took = started.elapsed();
                self.counters.durations.commit.observe(took);
                let elapsed = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
                self.counters
                    .last_commit_ns
                    .store(elapsed, Ordering::Relaxed);
                Counters::add(&self.counters.commits, 1);
                self.counters
                    .largest_group_batches
                    .fetch_max(batches.len() as u64, Ordering::Relaxed);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    self.count(&outcome);
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) if batches.len() > 1 => {
                // One batch may have failed the group: store them one by one
                // so only the culprit's agent gets the error.
                tracing::warn!(
                    batches = batches.len(),
                    error = %e,
                    "group ingest failed; retrying batch by batch"
                );
                for (batch, reply) in batches.iter().zip(replies) {
                    let answer = match self
                        .store
                        .ingest_prepared_at(std::slice::from_ref(batch), unix_now_ns())
                    {
                        Ok(outcomes) => match outcomes.into_iter().next() {
                            Some(outcome) => {
                                Counters::add(&self.counters.commits, 1);
                                self.count(&outcome);
                                Ok(outcome)
                            }
                            None => Err(WriterError::NoAnswer),
                        },
                        Err(e) => self.failed(batch, e),
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                if let (Some(batch), Some(reply)) = (batches.first(), replies.into_iter().next()) {
                    let _ = reply.send(self.failed(batch, e));
                }
            }
        }
        if let Some(dropper) = &self.dropper {
            // A closed channel hands the batches back: dropped here.
            let _ = dropper.send(batches);
        }
    }

    fn failed(&self, batch: &PreparedBatch, e: StoreError) -> Result<IngestOutcome, WriterError> {
        tracing::warn!(agent_id = %batch.agent_id(), seq = batch.seq(), error = %e, "storing a batch failed");
        Counters::add(&self.counters.batches_failed, 1);
        Err(WriterError::Store(Arc::new(e)))
    }

    fn count(&mut self, outcome: &IngestOutcome) {
        let c = &self.counters;
        match outcome {
            IngestOutcome::Stored {
                container_samples,
                network_samples,
            } => {
                Counters::add(&c.batches_stored, 1);
                Counters::add(&c.container_samples_stored, *container_samples as u64);
                Counters::add(&c.network_samples_stored, *network_samples as u64);
                self.since_checkpoint += 1;
            }
            IngestOutcome::Duplicate => Counters::add(&c.batches_duplicate, 1),
            IngestOutcome::Rejected(_) => Counters::add(&c.batches_rejected, 1),
            IngestOutcome::Expired => Counters::add(&c.batches_expired, 1),
        }
    }

    /// Takes the background checkpoint's result, if it finished.
    fn poll_checkpoint(&mut self) {
        let Some(c) = self.checkpointer.as_mut() else {
            return;
        };
        let Some(asked_at) = c.in_flight else {
            return;
        };
        let (result, took) = match c.results.try_recv() {
            Ok(done) => done,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                tracing::error!(
                    "the checkpoint thread stopped; the writer checkpoints itself from now on"
                );
                self.checkpointer = None;
                return;
            }
        };
        c.in_flight = None;
        match result {
            Ok(()) => {
                self.counters.durations.checkpoint.observe(took);
                self.since_checkpoint = self.since_checkpoint.saturating_sub(asked_at);
                Counters::add(&self.counters.checkpoints, 1);
            }
            Err(e) => {
                Counters::add(&self.counters.checkpoint_errors, 1);
                tracing::warn!(error = %e, "checkpoint failed; will retry");
            }
        }
    }

    fn checkpoint_due(&self) -> bool {
        self.checkpointer
            .as_ref()
            .is_none_or(|c| c.in_flight.is_none())
            && self.since_checkpoint > 0
            && (self.since_checkpoint >= self.config.checkpoint_every_batches
                || self.last_checkpoint.elapsed() >= self.config.checkpoint_interval)
    }

    /// Asks the checkpoint thread for a checkpoint, or checkpoints here
    /// when there is none.
    fn checkpoint(&mut self) {
        // Failed or not, wait a full interval before the next attempt.
        let started = Instant::now();
        self.last_checkpoint = started;
        if let Some(c) = self.checkpointer.as_mut()
            && c.requests.send(()).is_ok()
        {
            c.in_flight = Some(self.since_checkpoint);
            return;
        }
        match self.store.checkpoint() {
            Ok(()) => {
                self.counters
                    .durations
                    .checkpoint
                    .observe(started.elapsed());
                self.since_checkpoint = 0;
                Counters::add(&self.counters.checkpoints, 1);
            }
            Err(e) => {
                Counters::add(&self.counters.checkpoint_errors, 1);
                tracing::warn!(error = %e, "checkpoint failed; will retry");
            }
        }
    }
}

//! The collector's DuckDB store: what agents sent, stored exactly once.
//!
//! - [`Store`] owns the write connection: [`Store::ingest`] stores a slice of
//!   agents' [`Batch`](upid::wire::v1::Batch)es in one transaction (group
//!   commit), skipping `(agent_id, seq)` pairs already stored.
//! - [`Writer`] runs the one `Store` on a dedicated thread fed by a bounded
//!   channel, so async code submits batches and is answered after COMMIT.
//! - [`Reader`] is a separate connection for queries (rates derived in SQL);
//!   it never waits for the writer.
//!
//! The schema is in [`schema`].

mod dims;
mod ingest;
mod inventory;
mod inventory_read;
mod prepare;
mod query;
pub mod retention;
mod rollout_read;
mod rollup;
pub mod schema;
mod update_events;
mod usage_read;
mod usage_summary;
mod usage_summary_read;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duckdb::Connection;

pub use ingest::{IngestOutcome, RejectReason};
pub use inventory::{
    event_kind_name, health_name, parse_event_kind, state_name, workload_kind_name,
};
pub use inventory_read::{
    DEFAULT_EVENT_LIMIT, EventFilter, InventoryRecord, MAX_EVENT_LIMIT, parse_workload_kind,
};
pub use prepare::PreparedBatch;
pub use query::{
    ContainerDetail, ContainerInfo, GONE_AFTER_NS, MAX_SERIES_POINTS, MIN_ID_PREFIX, NodeInfo,
    QueryError, Rates, Reader, Series, StoredSample, TopEntry,
};
pub use retention::{
    DroppedRows, Retention, RetentionCounters, RetentionReason, RetentionReport, RetentionSettings,
};
pub use rollout_read::{ContainerLifetime, GateEvent, UsageWindow};
pub use rollup::{NODES_PER_PASS, Rollup, RollupStats};
pub use update_events::{DEFAULT_UPDATE_EVENT_LIMIT, MAX_RECORDED_EVENTS};
pub use usage_read::{
    ActivityThresholds, CpuBucket, DailyPeak, QuietStretch, SeriesCost, SeriesFacts,
    SeriesIdentity, SqlPrices, UsageReadPath, UsageScope,
};
pub(crate) use usage_summary::refresh as refresh_usage_summary;
pub use usage_summary::{
    DEFAULT_CPU_HALF_LIFE_S, HOUR_NS, MIN_CPU_HALF_LIFE_S, SummaryRepair, SummaryState,
};
pub use writer::{
    CHECKPOINT_THREAD_NAME, DEFAULT_DIMS_FLUSH_INTERVAL, PendingBatch, Writer, WriterConfig,
    WriterError, WriterHandle, WriterStats,
};

/// What went wrong opening or writing the store. Every variant names what
/// failed; query-side errors are [`QueryError`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's directory could not be created.
    #[error("creating the store directory {path}: {source}")]
    CreateDir {
        /// Directory that could not be created.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file exists but is not a DuckDB database.
    #[error(
        "{path} exists but is not a DuckDB database file (corrupt, or another program's file): \
         move it away or point the store at another path"
    )]
    NotADuckDbFile {
        /// The offending file.
        path: PathBuf,
    },
    /// The file could not be read to check what it is.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// DuckDB refused to open the file (locked by another process, damaged, ...).
    #[error("opening DuckDB store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// Creating or checking the schema failed.
    #[error("store schema, {step}: {source}")]
    Schema {
        /// The step that failed.
        step: &'static str,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// The file was written by a build with another schema version.
    #[error(
        "store {path} has schema version {found}, this build supports {supported}: \
         use a collector built for that version or start a new store"
    )]
    SchemaVersion {
        /// The file.
        path: String,
        /// Version stored in the file.
        found: i32,
        /// Version this build writes.
        supported: i32,
    },
    /// Loading the dimension tables into memory at open failed.
    #[error("loading {table} at open: {source}")]
    Load {
        /// Table being loaded.
        table: &'static str,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// A statement of the ingest transaction failed; nothing of the slice
    /// was stored.
    #[error("ingest, {step}: {source}")]
    Ingest {
        /// The step that failed.
        step: &'static str,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// Appending to a table failed (a flush error surfaces here, never lost
    /// on drop); nothing of the slice was stored.
    #[error("appending to {table}: {source}")]
    Append {
        /// Table being appended to.
        table: &'static str,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// COMMIT failed; nothing of the slice was stored.
    #[error("commit of {batches} batches: {source}")]
    Commit {
        /// Batches in the failed transaction.
        batches: usize,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// A hello without an agent id.
    #[error("hello without agent_id")]
    HelloWithoutAgentId,
    /// More containers than the 32-bit surrogate key can number.
    #[error("container surrogate keys exhausted")]
    ContainerKeysExhausted,
    /// `CHECKPOINT` failed.
    #[error("checkpoint: {0}")]
    Checkpoint(duckdb::Error),
    /// Rolling agent samples up into `usage` failed (the transaction was
    /// rolled back; the next run retries the same minutes).
    #[error("rollup: {step}: {source}")]
    Rollup {
        /// What it was doing.
        step: &'static str,
        /// Underlying error.
        source: duckdb::Error,
    },
    /// Opening a second connection for reading failed.
    #[error("opening a read connection: {0}")]
    Clone(duckdb::Error),
    /// A retention run failed (its open transaction was rolled back; what
    /// earlier steps of the run committed stays dropped, and the next run
    /// continues).
    #[error("retention: {step}: {source}")]
    Retention {
        /// What it was doing.
        step: &'static str,
        /// Underlying error.
        source: duckdb::Error,
    },
}

/// The collector's DuckDB database, holding the one write connection.
///
/// Only one `Store` may write a file: run it inside a [`Writer`]. Queries go
/// through [`Store::reader`].
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
    dims: dims::Dims,
    /// `retention_state.raw_horizon_unix_ns` (`i64::MIN` before the first
    /// retention run), shared with [`Retention`]: ingest answers batches
    /// whose tick is older as expired.
    raw_horizon: Arc<AtomicI64>,
    /// When the dimension tables' state is written (see [`dims`]).
    dims_flush: DimsFlush,
}

/// The write-behind schedule of the dimension tables' state.
#[derive(Debug)]
struct DimsFlush {
    /// Longest the stored state may lag; zero writes it in every ingest.
    interval: Duration,
    /// When it was last written.
    last: Instant,
    /// Newest collector time stamped on a ledger row: the watermark the
    /// next flush records. While the state is written behind, each ingest
    /// is stamped after the previous one (the clock stepping back cannot
    /// put a later ingest at or under a recorded watermark).
    last_received_unix_ns: i64,
    /// Set while a [`BackgroundCheckpoint`] runs: the state is then held
    /// back, since its UPDATEs would wait for the checkpoint to finish.
    hold: Arc<std::sync::atomic::AtomicBool>,
}

/// Writes the WAL into the database file (`CHECKPOINT`) on a connection of
/// its own, so that the writer's ingest goes on meanwhile.
///
/// DuckDB lets commits run during a checkpoint; an append waits only
/// while the checkpoint writes that same table. Two things cannot run
/// beside one: a transaction that UPDATEs (it takes the checkpoint lock
/// shared, so the checkpoint is refused while one is open, and one that
/// starts during a checkpoint waits for it), and a vacuum of deleted rows
/// while other transactions are open (DuckDB then checkpoints without it).
/// The writer's only UPDATEs are the write-behind of agent, node and
/// container state, which it holds back while a checkpoint runs.
pub struct BackgroundCheckpoint {
    conn: Connection,
    hold: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for BackgroundCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundCheckpoint")
            .finish_non_exhaustive()
    }
}

/// How long [`BackgroundCheckpoint::run`] retries a checkpoint that DuckDB
/// refused because an UPDATE was under way, and how often.
const CHECKPOINT_RETRY_FOR: Duration = Duration::from_secs(1);
const CHECKPOINT_RETRY_EVERY: Duration = Duration::from_millis(10);

impl BackgroundCheckpoint {
    /// Writes the WAL into the database file. The writer holds back its
    /// UPDATEs meanwhile; a checkpoint refused because one was under way
    /// is retried for up to a second.
    pub fn run(&self) -> Result<(), StoreError> {
        let _held = HoldWhileCheckpointing::new(&self.hold);
        let started = Instant::now();
        loop {
            match self.conn.execute_batch("CHECKPOINT") {
                Err(e)
                    if started.elapsed() < CHECKPOINT_RETRY_FOR
                        && e.to_string().contains("other write transactions") =>
                {
                    std::thread::sleep(CHECKPOINT_RETRY_EVERY);
                }
                other => break other.map_err(StoreError::Checkpoint),
            }
        }
    }
}

/// Holds the write-behind back until dropped, so a checkpoint that fails
/// or panics never leaves it held for good.
struct HoldWhileCheckpointing<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> HoldWhileCheckpointing<'a> {
    fn new(hold: &'a std::sync::atomic::AtomicBool) -> Self {
        hold.store(true, Ordering::SeqCst);
        HoldWhileCheckpointing(hold)
    }
}

impl Drop for HoldWhileCheckpointing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Name of the thread that opens a store: DuckDB starts its worker threads
/// at the open and they inherit the name, so `top -H` and `perf` tell them
/// apart from the collector's own threads.
pub const DUCKDB_THREAD_NAME: &str = "upid-duckdb";

/// Opens the DuckDB file at `path` on a thread named
/// [`DUCKDB_THREAD_NAME`]; where no thread can be started, on this one.
fn open_on_named_thread(path: &Path) -> duckdb::Result<Connection> {
    let owned = path.to_path_buf();
    let opened = std::thread::Builder::new()
        .name(DUCKDB_THREAD_NAME.into())
        .spawn(move || Connection::open(owned))
        .map(std::thread::JoinHandle::join);
    match opened {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread could be started: open here, threads unnamed.
        Err(_) => Connection::open(path),
    }
}

/// Magic bytes of a DuckDB file, at offset 8 of its header.
const DUCKDB_MAGIC: &[u8; 4] = b"DUCK";

impl Store {
    /// Opens (creating it and its parent directories if needed) the store at
    /// `path`, creating missing tables.
    ///
    /// A file that exists but is not a DuckDB database is
    /// [`StoreError::NotADuckDbFile`], naming the file; it is never
    /// overwritten.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        check_is_duckdb_or_absent(&path)?;
        let conn = open_on_named_thread(&path).map_err(|source| {
            if source
                .to_string()
                .contains("not a valid DuckDB database file")
            {
                StoreError::NotADuckDbFile { path: path.clone() }
            } else {
                StoreError::Open {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        Self::init(conn, Some(path))
    }

    /// Opens a fresh in-memory store (for unit tests; nothing persists).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Self::init(conn, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Store, StoreError> {
        let shown = path
            .as_deref()
            .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
        schema::ensure(&mut conn, &shown, unix_now_ns())?;
        let started = std::time::Instant::now();
        let repair = usage_summary::repair(&mut conn).map_err(|source| StoreError::Schema {
            step: "bring the hourly usage summary in step with usage",
            source,
        })?;
        if repair != SummaryRepair::default() {
            tracing::info!(
                path = %shown,
                hours = repair.hours,
                cpu_rebuilt = repair.cpu_rebuilt,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "hourly usage summary rebuilt where it differed from usage"
            );
        }
        let mut dims = dims::Dims::load(&conn)?;
        let watermark = dims::Dims::load_watermark(&conn)?;
        let started = std::time::Instant::now();
        let recovered = dims.recover(&conn, watermark)?;
        let raw_horizon = retention::load_raw_horizon(&conn)?;
        let mut store = Store {
            conn,
            path,
            dims,
            raw_horizon: Arc::new(AtomicI64::new(raw_horizon)),
            dims_flush: DimsFlush {
                interval: Duration::ZERO,
                last: Instant::now(),
                last_received_unix_ns: watermark.max(recovered.last_received_unix_ns),
                hold: Arc::default(),
            },
        };
        if recovered.batches > 0 {
            store.flush_dims()?;
            tracing::info!(
                path = %shown,
                batches = recovered.batches,
                container_samples = recovered.container_samples,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "agents, nodes and containers brought up to date with what was stored \
                 after their last write (the collector stopped without writing them)"
            );
        }
        Ok(store)
    }

    /// Brings the hourly usage summary in step with `usage` (what opening
    /// does): recomputes the hours whose row counts differ, e.g. after
    /// rows were written into `usage` by another program.
    pub fn repair_usage_summary(&mut self) -> Result<SummaryRepair, StoreError> {
        usage_summary::repair(&mut self.conn).map_err(|source| StoreError::Schema {
            step: "bring the hourly usage summary in step with usage",
            source,
        })
    }

    /// Rebuilds the summary's CPU histogram for another half-life (the
    /// collector's `analysis.rightsize.cpu_half_life_s`), so rightsizing
    /// with it reads the summary instead of every usage row. Half-lives
    /// under [`MIN_CPU_HALF_LIFE_S`] are not summarised. True when rebuilt.
    pub fn set_usage_summary_cpu_half_life(
        &mut self,
        half_life_s: f64,
    ) -> Result<bool, StoreError> {
        usage_summary::set_cpu_half_life(&mut self.conn, half_life_s).map_err(|source| {
            StoreError::Schema {
                step: "rebuild the usage summary's CPU histogram",
                source,
            }
        })
    }

    /// The database file; `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A read connection to the same database (sees what is committed).
    pub fn reader(&self) -> Result<Reader, StoreError> {
        let conn = self.conn.try_clone().map_err(StoreError::Clone)?;
        Ok(Reader::new(conn, self.path.clone()))
    }

    /// Highest seq stored for `agent_id`, 0 when none: what `Welcome`
    /// reports. Answered from memory (kept equal to the `agents` table).
    pub fn last_stored_seq(&self, agent_id: &str) -> u64 {
        self.dims.last_seq(agent_id)
    }

    /// Sets how long the stored state of agents, nodes and containers (last
    /// seen, counts, limits, OOM totals) may lag what was ingested: it is
    /// then written at most once per `interval`, by an ingest, or by
    /// [`Store::flush_dims`] when the caller finds it due
    /// ([`Store::dims_flush_due_at`]). Zero (the default) writes it in
    /// every ingest. New rows are always written at once; a crash loses
    /// nothing (see the `dims` module).
    pub fn set_dims_flush_interval(&mut self, interval: Duration) {
        self.dims_flush.interval = interval;
    }

    /// When state held back by the flush interval must be written; `None`
    /// when none is held back, or while a [`BackgroundCheckpoint`] runs.
    /// After a failed write, at least 100 ms later (with a zero interval
    /// too).
    pub fn dims_flush_due_at(&self) -> Option<Instant> {
        let wait = self.dims_flush.interval.max(Duration::from_millis(100));
        (!self.dims.dirty.is_empty() && !self.dims_flush.hold.load(Ordering::SeqCst))
            .then(|| self.dims_flush.last + wait)
    }

    /// Writes the state held back by the flush interval, in its own
    /// transaction (nothing when none is).
    pub fn flush_dims(&mut self) -> Result<(), StoreError> {
        // Failed or not, the next attempt is an interval away.
        self.dims_flush.last = Instant::now();
        if self.dims.dirty.is_empty() {
            return Ok(());
        }
        self.write_dims_with_held_back(self.dims.begin(), "begin a dimension flush")
    }

    /// Writes `changes` and everything held back in a transaction of
    /// their own, with the watermark; `begin_step` names its BEGIN.
    fn write_dims_with_held_back(
        &mut self,
        changes: dims::DimChanges,
        begin_step: &'static str,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Ingest {
                step: begin_step,
                source,
            })?;
        changes.write(&tx, &self.dims, Some(self.dims_flush.last_received_unix_ns))?;
        tx.commit()
            .map_err(|source| StoreError::Commit { batches: 0, source })?;
        self.dims.apply(changes, true);
        self.dims_flush.last = Instant::now();
        Ok(())
    }

    /// A checkpoint on a connection of its own, for a thread of its own
    /// (see [`BackgroundCheckpoint`]).
    pub fn background_checkpoint(&self) -> Result<BackgroundCheckpoint, StoreError> {
        Ok(BackgroundCheckpoint {
            conn: self.conn.try_clone().map_err(StoreError::Clone)?,
            hold: Arc::clone(&self.dims_flush.hold),
        })
    }

    /// Writes held-back state, then the WAL into the database file
    /// (`CHECKPOINT`).
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.flush_dims()?;
        self.conn
            .execute_batch("CHECKPOINT")
            .map_err(StoreError::Checkpoint)
    }

    /// Bytes on disk: the database file plus its WAL (0 in memory).
    pub fn store_bytes(&self) -> u64 {
        self.path.as_deref().map_or(0, store_bytes)
    }

    /// Agent samples timed before this were dropped by retention (Unix
    /// ns; `i64::MIN` when none were): ingest answers batches whose tick
    /// is older [`IngestOutcome::Expired`].
    pub fn raw_horizon_unix_ns(&self) -> i64 {
        self.raw_horizon.load(Ordering::Relaxed)
    }
}

impl Drop for Store {
    /// Writes the state held back by the flush interval, so a store closed
    /// in order opens without rebuilding it.
    fn drop(&mut self) {
        if let Err(e) = self.flush_dims() {
            tracing::warn!(
                error = %e,
                "writing agents, nodes and containers at close failed; \
                 the next open rebuilds them from the ledger and the samples"
            );
        }
    }
}

/// Refuses an existing file that does not carry DuckDB's magic bytes, before
/// DuckDB gets to it.
fn check_is_duckdb_or_absent(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::ReadFile {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut header = [0u8; 12];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(StoreError::ReadFile {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    if read < header.len() || &header[8..12] != DUCKDB_MAGIC {
        return Err(StoreError::NotADuckDbFile {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Size of a DuckDB file plus its `.wal`, 0 for what does not exist.
pub(crate) fn store_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    size(path) + size(Path::new(&wal))
}

/// The collector's clock, Unix ns (saturating far in the future, 0 before 1970).
pub(crate) fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

//! `upid-bench collector`: issue #3's goals for the collector's ingest,
//! measured against a real `upid-collector serve` on loopback.
//!
//! 1. [`collector_proc`](crate::collector_proc): starts the collector with
//!    a temporary store, its rate limit out of the way.
//! 2. **max**: N simulated agents ([`collector_load`](crate::collector_load))
//!    send as fast as their acks allow (their batches made, encoded and
//!    compressed before the clock starts, unless `--live-agents`); after a
//!    warm-up, container samples
//!    acknowledged per second (cross-checked with the collector's
//!    `/metrics`), its CPU and memory.
//! 3. **latency**: the agents send at a fixed total rate (10 % of the max
//!    by default); ack latency percentiles.
//! 4. SIGTERM (the collector checkpoints), then the store's bytes per value.
//! 5. **storage**: a fresh collector gets exactly `--storage-ticks` ticks of
//!    every agent, and [`collector_prom`](crate::collector_prom) gives
//!    Prometheus the same series and values; bytes per value of both.
//! 6. The goals, PASS/MISS, as text and as one JSON line.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use upid::wire::v1::IdleRequest;
use upid::wire::v1::query_service_client::QueryServiceClient;

use crate::collector_load::{AckedBatch, Compression, LoadConfig, Pace, Phase};
use crate::collector_proc::{self, CollectorProcess, Scrape};
use crate::collector_prom::{self, PromReport};
use crate::collector_sim::{METRICS, SimAgent};
use crate::interrupt::Interrupt;
use crate::machine::Machine;
use crate::procstat::{self, ProcessCpu};
use crate::report::{Bound, Goal, human};

/// Issue #3: container samples stored per second, at least.
pub const GOAL_SAMPLES_PER_S: f64 = 500_000.0;
/// Issue #3: p99 ack latency at 10 % of the max rate, ns.
pub const GOAL_P99_LATENCY_NS: f64 = 250_000_000.0;

/// How often the collector's memory is polled.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// How long the collector may take to stop (final checkpoint included).
const STOP_TIMEOUT: Duration = Duration::from_secs(600);

/// Options of `upid-bench collector`.
#[derive(Debug, Clone, Args)]
pub struct CollectorArgs {
    /// Simulated agents, each with its own connection and stream.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Containers per agent (container samples per batch).
    #[arg(long, default_value_t = 50)]
    pub containers: usize,
    /// Unacknowledged batches per agent, at most (the agent's default).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Max mode: measured time, after the warm-up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Max mode: unmeasured time first.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Latency mode: measured time (after one second unmeasured); long
    /// enough to hold the collector's periodic rollups (every minute).
    #[arg(long, default_value = "150s", value_parser = humantime::parse_duration)]
    pub latency_duration: Duration,
    /// Latency mode: the rate, as a fraction of the max mode's.
    #[arg(long, default_value_t = 0.1)]
    pub latency_fraction: f64,
    /// Latency mode: this rate in container samples per second instead.
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// Storage comparison: ticks of every agent stored in a fresh
    /// collector and written to Prometheus (360 = one hour at 10 s); 0
    /// skips the comparison.
    #[arg(long, default_value_t = 360)]
    pub storage_ticks: u64,
    /// Message compression on the agent streams (the agent sends zstd).
    #[arg(long, value_enum, default_value_t = Compression::Zstd)]
    pub compression: Compression,
    /// Threads of this benchmark's own runtime (the simulated agents).
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Max mode: make, encode and compress the agents' batches live while
    /// measuring (about 3 µs of this machine's CPU per container sample),
    /// instead of before the clock starts.
    #[arg(long)]
    pub live_agents: bool,
    /// Max mode: batches are pre-generated for this many container
    /// samples per second over the warm-up and the measured time; agents
    /// that run out stop sending (reported: the rate is then a lower
    /// bound).
    #[arg(long, default_value_t = 700_000.0)]
    pub pregenerate_rate: f64,
    /// The `upid-collector` binary (default: next to this benchmark's binary).
    #[arg(long)]
    pub collector_bin: Option<PathBuf>,
    /// The `promtool` program (Debian package `prometheus`).
    #[arg(long, default_value = "promtool")]
    pub promtool: PathBuf,
    /// Do not run the Prometheus comparison.
    #[arg(long)]
    pub no_prometheus: bool,
    /// Where the temporary stores and blocks go (default: the system
    /// temporary directory). They are deleted at the end.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the stores (and the Prometheus blocks) for inspection instead
    /// of deleting them; their directory is printed.
    #[arg(long)]
    pub keep: bool,
    /// Append the collectors' stderr (their logs; set `UPID_LOG` to
    /// choose what they log) to this file instead of a temporary one, to
    /// line stalls up with what the collector did.
    #[arg(long)]
    pub collector_log: Option<PathBuf>,
    /// Print one JSON line on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// CPU and memory of a process over a measured interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Wall time of the interval.
    pub wall: Duration,
    /// CPU time the collector used in it.
    pub collector_cpu_ns: u64,
    /// CPU time this benchmark (the simulated agents) used in it.
    pub bench_cpu_ns: u64,
    /// Largest collector `VmRSS` polled in it.
    pub collector_max_rss_bytes: u64,
}

impl Usage {
    /// Collector CPU in cores (1.0 = one core busy the whole time).
    pub fn collector_cores(&self) -> f64 {
        self.collector_cpu_ns as f64 / self.wall.as_nanos().max(1) as f64
    }

    /// Benchmark CPU in cores.
    pub fn bench_cores(&self) -> f64 {
        self.bench_cpu_ns as f64 / self.wall.as_nanos().max(1) as f64
    }

    fn to_json(self) -> Value {
        json!({
            "wall_s": self.wall.as_secs_f64(),
            "collector_cpu_ns": self.collector_cpu_ns,
            "collector_cores": self.collector_cores(),
            "bench_cpu_ns": self.bench_cpu_ns,
            "bench_cores": self.bench_cores(),
            "collector_max_rss_bytes": self.collector_max_rss_bytes,
        })
    }
}

/// The max mode's result.
#[derive(Debug, Clone)]
pub struct MaxReport {
    /// Container samples acknowledged per second in the measured interval.
    pub samples_per_s: f64,
    /// Batches acknowledged per second.
    pub batches_per_s: f64,
    /// The collector's own count of container samples stored per second
    /// (`/metrics`), same interval.
    pub metrics_samples_per_s: f64,
    /// CPU and memory in the interval.
    pub usage: Usage,
    /// Ack latency under full load, ms.
    pub latency_ms: Latency,
}

/// Ack latency percentiles, in ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Acknowledged batches measured.
    pub batches: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of the batches due in `[from, to)`.
    fn of(acked: &[AckedBatch], from: tokio::time::Instant, to: tokio::time::Instant) -> Latency {
        let mut ms: Vec<f64> = acked
            .iter()
            .filter(|a| a.due >= from && a.due < to)
            .map(|a| a.latency.as_secs_f64() * 1e3)
            .collect();
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            batches: ms.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms[ms.len() - 1],
        }
    }

    fn to_json(self) -> Value {
        json!({
            "batches": self.batches,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "max_ms": self.max_ms,
        })
    }
}

/// The latency mode's result.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    /// The rate asked for, container samples per second.
    pub target_samples_per_s: f64,
    /// The rate achieved (acknowledged), container samples per second.
    pub samples_per_s: f64,
    /// Ack latency, from when each batch was due.
    pub latency: Latency,
    /// Times an agent had a batch due while its window was full.
    pub window_waits: u64,
    /// CPU and memory in the interval.
    pub usage: Usage,
    /// How long the collector took, after the max mode, to roll up its
    /// burst before this mode started.
    pub catch_up: Duration,
}

/// Bytes per stored value of one store.
#[derive(Debug, Clone)]
pub struct StoreSize {
    /// Container samples stored.
    pub container_samples: u64,
    /// Values: container samples × [`METRICS`].
    pub values: u64,
    /// The DuckDB file plus WAL after the collector's final checkpoint.
    pub file_bytes: u64,
    /// From SIGTERM to exit (final commits and checkpoint).
    pub shutdown: Duration,
}

impl StoreSize {
    /// File bytes per value.
    pub fn bytes_per_value(&self) -> f64 {
        self.file_bytes as f64 / self.values.max(1) as f64
    }

    fn to_json(&self) -> Value {
        json!({
            "container_samples": self.container_samples,
            "values": self.values,
            "file_bytes": self.file_bytes,
            "bytes_per_value": self.bytes_per_value(),
            "shutdown_s": self.shutdown.as_secs_f64(),
        })
    }
}

/// The storage comparison's result.
#[derive(Debug, Clone)]
pub struct StorageReport {
    /// Ticks per agent.
    pub ticks: u64,
    /// The collector's store.
    pub upid: StoreSize,
    /// Storing took (agents sending as fast as acks allow).
    pub ingest_wall: Duration,
    /// Prometheus, or why it was not run.
    pub prometheus: Result<PromReport, String>,
}

/// Everything one `upid-bench collector` run measured.
#[derive(Debug, Clone)]
pub struct CollectorBenchReport {
    /// When the run finished (RFC 3339).
    pub date: String,
    /// The options used.
    pub args: CollectorArgs,
    /// The collector binary measured.
    pub collector_bin: PathBuf,
    /// The machine.
    pub machine: Machine,
    /// Max mode.
    pub max: MaxReport,
    /// Latency mode.
    pub latency: LatencyReport,
    /// The store after both modes.
    pub store: StoreSize,
    /// Collector peak resident memory over both modes (`VmHWM`).
    pub collector_hwm_bytes: u64,
    /// Periodic rollups the collector ran over both modes, and their
    /// seconds in all (its `/metrics`).
    pub rollups: (u64, f64),
    /// Store checkpoints over both modes, and their seconds in all (ingest
    /// waits while one runs).
    pub checkpoints: (u64, f64),
    /// The storage comparison, unless `--storage-ticks 0`.
    pub storage: Option<StorageReport>,
}

/// Runs the whole benchmark; the collector processes and temporary files
/// are cleaned up however it ends.
pub fn run(args: &CollectorArgs, interrupt: &Interrupt) -> anyhow::Result<CollectorBenchReport> {
    if args.agents == 0 || args.containers == 0 || args.window == 0 {
        bail!("--agents, --containers and --window must be at least 1");
    }
    let collector_bin = match &args.collector_bin {
        Some(path) => path.clone(),
        None => collector_proc::default_binary()?,
    };
    collector_proc::check_binary(&collector_bin)?;
    let promtool = if args.no_prometheus || args.storage_ticks == 0 {
        Err("not run (--no-prometheus or --storage-ticks 0)".to_owned())
    } else {
        collector_prom::find_promtool(&args.promtool).ok_or_else(|| {
            format!(
                "skipped: no {} found; install it with `apt-get install prometheus`",
                args.promtool.display()
            )
        })
    };
    if let Err(why) = &promtool {
        eprintln!("Prometheus comparison {why}");
    }
    let work = match &args.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("upid-bench-collector-")
            .tempdir_in(dir),
        None => tempfile::Builder::new()
            .prefix("upid-bench-collector-")
            .tempdir(),
    }
    .context("creating the benchmark's temporary directory")?;
    let work = Work::new(work, args.keep);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .context("starting the agents' runtime")?;
    let hierarchies = upid_agent::cgroup::mountinfo::detect(&upid_agent::host::HostRoot::new("/"))
        .unwrap_or(upid_agent::cgroup::Hierarchies {
            layout: upid::model::CgroupLayout::V2,
            unified: None,
            v1: Default::default(),
        });
    let machine = Machine::detect(&hierarchies);

    // Modes 1 and 2 on one collector.
    let store_path = work.path().join("run").join("upid.duckdb");
    let mut collector = CollectorProcess::start(
        &collector_bin,
        &store_path,
        args.collector_log.as_deref(),
        interrupt,
    )?;
    eprintln!(
        "upid-collector pid {} ready: grpc {} metrics {}",
        collector.pid(),
        collector.ready().grpc,
        collector.ready().metrics
    );
    let config = LoadConfig {
        addr: collector.ready().grpc,
        window: args.window,
        compression: args.compression,
    };
    let sims: Vec<SimAgent> = (0..args.agents)
        .map(|i| SimAgent::new(i, args.containers))
        .collect();

    eprintln!(
        "max: {} agents × {} containers, window {}, {:?} compression, {} warm-up + {} measured",
        args.agents,
        args.containers,
        args.window,
        args.compression,
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.duration)
    );
    let phase = if args.live_agents {
        Phase::start(&runtime, &config, sims, Pace::Max)
    } else {
        let seconds = (args.warmup + args.duration).as_secs_f64();
        let batches = (args.pregenerate_rate * seconds / (args.agents * args.containers) as f64)
            .ceil() as u64;
        let started = Instant::now();
        let (agents, bytes) =
            crate::collector_load::pregenerate(sims, batches.max(1), args.compression)?;
        eprintln!(
            "max: pre-generated {batches} batches per agent ({} on the wire) in {:.1} s",
            human(bytes as f64, "bytes"),
            started.elapsed().as_secs_f64()
        );
        Phase::start_pregenerated(&runtime, &config, agents)
    };
    let max_start = tokio::time::Instant::now() + args.warmup;
    let max_end = max_start + args.duration;
    let Measured {
        usage,
        acked,
        scrapes,
    } = measure(
        &mut collector,
        &phase,
        args.warmup,
        args.duration,
        interrupt,
    )?;
    let ran_out = phase.acked().ran_out();
    let done = phase.stop(&runtime)?;
    if ran_out > 0 {
        eprintln!(
            "warning: {ran_out} agents sent every pre-generated batch before the end; \
             the max rate is a lower bound (raise --pregenerate-rate)"
        );
    }
    let wall = usage.wall.as_secs_f64();
    let acked_batches: Vec<AckedBatch> =
        done.iter().flat_map(|d| d.acked.iter().copied()).collect();
    let max = MaxReport {
        samples_per_s: acked.1 as f64 / wall,
        batches_per_s: acked.0 as f64 / wall,
        metrics_samples_per_s: (scrapes.1.container_samples_stored
            - scrapes.0.container_samples_stored)
            / wall,
        usage,
        latency_ms: Latency::of(&acked_batches, max_start, max_end),
    };
    eprintln!(
        "max: {:.0} container samples/s acknowledged ({:.0}/s by /metrics), collector {:.2} cores, agents {:.2} cores",
        max.samples_per_s,
        max.metrics_samples_per_s,
        usage.collector_cores(),
        usage.bench_cores()
    );
    let sims: Vec<SimAgent> = done.into_iter().map(|d| d.sim).collect();

    let target = args
        .latency_rate
        .unwrap_or(max.samples_per_s * args.latency_fraction);
    if target.is_nan() || target <= 0.0 {
        bail!("the latency mode's rate is {target} samples/s: nothing to measure");
    }
    // The max mode leaves the collector about a minute of background work
    // (rolling up its burst: hours of simulated samples of every agent);
    // this mode measures the steady state at its rate, so it starts once
    // that is done.
    let catch_up = catch_up(&runtime, &collector)?;
    eprintln!(
        "latency: the collector rolled up the max mode's samples in {:.1} s",
        catch_up.as_secs_f64()
    );
    let per_agent_hz = target / (args.agents * args.containers) as f64;
    eprintln!(
        "latency: {target:.0} container samples/s ({per_agent_hz:.2} batches/s per agent) for {}",
        humantime::format_duration(args.latency_duration)
    );
    let phase = Phase::start(&runtime, &config, sims, Pace::Rate { per_agent_hz });
    let settle = Duration::from_secs(1);
    let lat_start = tokio::time::Instant::now() + settle;
    let lat_end = lat_start + args.latency_duration;
    let Measured { usage, acked, .. } = measure(
        &mut collector,
        &phase,
        settle,
        args.latency_duration,
        interrupt,
    )?;
    let done = phase.stop(&runtime)?;
    let acked_batches: Vec<AckedBatch> =
        done.iter().flat_map(|d| d.acked.iter().copied()).collect();
    let latency = LatencyReport {
        target_samples_per_s: target,
        samples_per_s: acked.1 as f64 / usage.wall.as_secs_f64(),
        latency: Latency::of(&acked_batches, lat_start, lat_end),
        window_waits: done.iter().map(|d| d.window_waits).sum(),
        usage,
        catch_up,
    };
    eprintln!(
        "latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} batches",
        latency.latency.p50_ms,
        latency.latency.p99_ms,
        latency.latency.max_ms,
        latency.latency.batches
    );
    let container_samples: u64 = done
        .iter()
        .map(|d| d.sim.seq() * args.containers as u64)
        .sum();
    let final_scrape = collector.scrape()?;
    if final_scrape.container_samples_stored as u64 != container_samples {
        eprintln!(
            "warning: /metrics says {} container samples stored, the agents had {container_samples} acknowledged",
            final_scrape.container_samples_stored
        );
    }
    let collector_hwm_bytes = collector.memory()?.hwm_bytes;
    let rollups = (final_scrape.rollups as u64, final_scrape.rollup_seconds);
    let checkpoints = (
        final_scrape.checkpoints as u64,
        final_scrape.checkpoint_seconds,
    );
    eprintln!("stopping upid-collector (SIGTERM: final commits and checkpoint)");
    let stopped = collector.stop(STOP_TIMEOUT)?;
    drop(collector);
    let store = StoreSize {
        container_samples,
        values: container_samples * METRICS.len() as u64,
        file_bytes: collector_proc::store_file_bytes(&store_path),
        shutdown: stopped.shutdown,
    };
    eprintln!(
        "store: {} for {} values = {:.3} bytes per value (shutdown {:.1} s)",
        human(store.file_bytes as f64, "bytes"),
        store.values,
        store.bytes_per_value(),
        store.shutdown.as_secs_f64()
    );
    work.remove("run");

    let storage = if args.storage_ticks == 0 {
        None
    } else {
        Some(storage(
            args,
            &collector_bin,
            &runtime,
            &work,
            promtool,
            interrupt,
        )?)
    };

    Ok(CollectorBenchReport {
        date: crate::report::now_rfc3339(),
        args: args.clone(),
        collector_bin,
        machine,
        max,
        latency,
        store,
        collector_hwm_bytes,
        rollups,
        checkpoints,
        storage,
    })
}

/// The benchmark's temporary directory: deleted at the end, or kept
/// (`--keep`).
struct Work {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Work {
    fn new(dir: tempfile::TempDir, keep: bool) -> Work {
        let path = dir.path().to_path_buf();
        if keep {
            eprintln!("keeping the stores under {}", path.display());
            // Not deleted on drop.
            let _kept = dir.keep();
            Work { dir: None, path }
        } else {
            Work {
                dir: Some(dir),
                path,
            }
        }
    }

    fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Deletes `sub` now (when not keeping), to free the disk early.
    fn remove(&self, sub: &str) {
        if self.dir.is_some() {
            let _ = std::fs::remove_dir_all(self.path.join(sub));
        }
    }
}

/// What [`measure`] saw in its interval.
struct Measured {
    usage: Usage,
    /// `(batches, container samples)` acknowledged.
    acked: (u64, u64),
    /// `/metrics` at both ends.
    scrapes: (Scrape, Scrape),
}

/// Polls the collector while `phase` runs: `skip` unmeasured, then
/// `measured`. Returns the usage, the `(batches, samples)` acknowledged
/// and the `/metrics` scrapes at both ends of the measured interval.
fn measure(
    collector: &mut CollectorProcess,
    phase: &Phase,
    skip: Duration,
    measured: Duration,
    interrupt: &Interrupt,
) -> anyhow::Result<Measured> {
    let begin = Instant::now() + skip;
    while Instant::now() < begin {
        collector.check_alive()?;
        if phase.all_finished() {
            bail!("every simulated agent stopped early (see the errors above)");
        }
        interrupt.sleep_until(begin.min(Instant::now() + POLL_EVERY))?;
    }
    let scrape0 = collector.scrape()?;
    let acked0 = phase.acked().get();
    let cpu0 = collector.cpu()?;
    let bench0 = procstat::process_cpu(std::process::id())?;
    let started = Instant::now();
    let end = started + measured;
    let mut max_rss = 0;
    while Instant::now() < end {
        collector.check_alive()?;
        if phase.all_finished() {
            bail!("every simulated agent stopped early (see the errors above)");
        }
        max_rss = max_rss.max(collector.memory()?.rss_bytes);
        interrupt.sleep_until(end.min(Instant::now() + POLL_EVERY))?;
    }
    let acked1 = phase.acked().get();
    let cpu1: ProcessCpu = collector.cpu()?;
    let bench1 = procstat::process_cpu(std::process::id())?;
    let wall = started.elapsed();
    let scrape1 = collector.scrape()?;
    max_rss = max_rss.max(collector.memory()?.rss_bytes);
    Ok(Measured {
        usage: Usage {
            wall,
            collector_cpu_ns: cpu1.since(&cpu0),
            bench_cpu_ns: bench1.since(&bench0),
            collector_max_rss_bytes: max_rss,
        },
        acked: (acked1.0 - acked0.0, acked1.1 - acked0.1),
        scrapes: (scrape0, scrape1),
    })
}

/// Mode 5: exactly `--storage-ticks` ticks per agent into a fresh store,
/// then the same into Prometheus.
fn storage(
    args: &CollectorArgs,
    collector_bin: &std::path::Path,
    runtime: &tokio::runtime::Runtime,
    work: &Work,
    promtool: Result<PathBuf, String>,
    interrupt: &Interrupt,
) -> anyhow::Result<StorageReport> {
    let ticks = args.storage_ticks;
    let store_path = work.path().join("storage").join("upid.duckdb");
    let mut collector = CollectorProcess::start(
        collector_bin,
        &store_path,
        args.collector_log.as_deref(),
        interrupt,
    )?;
    let config = LoadConfig {
        addr: collector.ready().grpc,
        window: args.window,
        compression: args.compression,
    };
    eprintln!(
        "storage: {ticks} ticks of {} agents × {} containers into a fresh store",
        args.agents, args.containers
    );
    let sims: Vec<SimAgent> = (0..args.agents)
        .map(|i| SimAgent::new(i, args.containers))
        .collect();
    let started = Instant::now();
    let phase = Phase::start(runtime, &config, sims, Pace::UpToSeq(ticks));
    while !phase.all_finished() {
        collector.check_alive()?;
        interrupt.sleep_until(Instant::now() + Duration::from_millis(100))?;
    }
    let done = phase.stop(runtime)?;
    let ingest_wall = started.elapsed();
    let container_samples: u64 = done
        .iter()
        .map(|d| d.sim.seq() * args.containers as u64)
        .sum();
    let expected = ticks * (args.agents * args.containers) as u64;
    if container_samples != expected {
        bail!("storage: {container_samples} container samples acknowledged, {expected} expected");
    }
    let stopped = collector.stop(STOP_TIMEOUT)?;
    drop(collector);
    let upid = StoreSize {
        container_samples,
        values: container_samples * METRICS.len() as u64,
        file_bytes: collector_proc::store_file_bytes(&store_path),
        shutdown: stopped.shutdown,
    };
    eprintln!(
        "storage: upid {} for {} values = {:.3} bytes per value",
        human(upid.file_bytes as f64, "bytes"),
        upid.values,
        upid.bytes_per_value()
    );
    work.remove("storage");
    let prometheus = match promtool {
        Ok(promtool) => {
            let dir = work.path().join("prometheus");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let report = collector_prom::compare(
                &promtool,
                &dir,
                args.agents,
                args.containers,
                ticks,
                interrupt,
            )?;
            eprintln!(
                "storage: Prometheus {} in {} blocks for {} values = {:.3} bytes per value",
                human(report.block_bytes as f64, "bytes"),
                report.blocks,
                report.values,
                report.bytes_per_value()
            );
            work.remove("prometheus");
            Ok(report)
        }
        Err(why) => Err(why),
    };
    Ok(StorageReport {
        ticks,
        upid,
        ingest_wall,
        prometheus,
    })
}

/// Waits until the collector has rolled up every sample stored so far (an
/// analysis call rolls up before it answers) and returns how long that
/// took.
fn catch_up(
    runtime: &tokio::runtime::Runtime,
    collector: &CollectorProcess,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let addr = collector.ready().grpc;
    runtime
        .block_on(async move {
            let mut client = QueryServiceClient::connect(format!("http://{addr}")).await?;
            client.list_idle(IdleRequest::default()).await?;
            anyhow::Ok(())
        })
        .context("asking the collector to roll up (ListIdle)")?;
    Ok(started.elapsed())
}

impl CollectorBenchReport {
    /// Issue #3's goals with the measured values.
    pub fn goals(&self) -> Vec<Goal> {
        let storage = self.storage.as_ref();
        let prometheus = storage.and_then(|s| s.prometheus.as_ref().ok());
        vec![
            Goal {
                name: "container_samples_per_s_max",
                description: "container samples stored per second (max)",
                value: Some(self.max.samples_per_s.round()),
                target: GOAL_SAMPLES_PER_S,
                bound: Bound::AtLeast,
                unit: "samples/s",
            },
            Goal {
                name: "ack_latency_p99_at_10pct",
                description: "p99 ack latency at 10 % of the max rate",
                value: (self.args.latency_rate.is_none()
                    && (self.args.latency_fraction - 0.1).abs() < 1e-9)
                    .then_some(self.latency.latency.p99_ms * 1e6),
                target: GOAL_P99_LATENCY_NS,
                bound: Bound::Below,
                unit: "ns",
            },
            Goal {
                name: "bytes_per_value_vs_prometheus",
                description: "store bytes per value, below Prometheus's",
                value: prometheus
                    .and(storage)
                    .map(|s| (s.upid.bytes_per_value() * 1000.0).round() / 1000.0),
                target: prometheus.map_or(0.0, |p| (p.bytes_per_value() * 1000.0).round() / 1000.0),
                bound: Bound::Below,
                unit: "B/value",
            },
        ]
    }

    /// The human-readable summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let a = &self.args;
        line(format!("upid-bench collector  {}", self.date));
        line(format!("machine: {}", self.machine.summary()));
        line(format!(
            "load: {} agents × {} containers ({} values per container sample), window {}, {:?} compression, agents on {} threads; max mode batches {}",
            a.agents,
            a.containers,
            METRICS.len(),
            a.window,
            a.compression,
            a.client_threads,
            if a.live_agents {
                "made live"
            } else {
                "pre-generated"
            }
        ));
        line(String::new());
        let m = &self.max;
        line(format!(
            "max ({} measured after {} warm-up):",
            humantime::format_duration(a.duration),
            humantime::format_duration(a.warmup)
        ));
        line(format!(
            "  {:.0} container samples/s acknowledged ({:.0} batches/s); /metrics says {:.0}/s",
            m.samples_per_s, m.batches_per_s, m.metrics_samples_per_s
        ));
        line(format!(
            "  collector CPU {:.2} cores ({:.2} µs per container sample), RSS max {}; agents' CPU {:.2} cores",
            m.usage.collector_cores(),
            m.usage.collector_cpu_ns as f64
                / (m.samples_per_s * m.usage.wall.as_secs_f64()).max(1.0)
                / 1e3,
            human(m.usage.collector_max_rss_bytes as f64, "bytes"),
            m.usage.bench_cores()
        ));
        line(format!(
            "  ack latency under full load: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            m.latency_ms.p50_ms, m.latency_ms.p99_ms, m.latency_ms.max_ms
        ));
        let l = &self.latency;
        line(format!(
            "latency ({} at {:.0} container samples/s; achieved {:.0}/s):",
            humantime::format_duration(a.latency_duration),
            l.target_samples_per_s,
            l.samples_per_s
        ));
        line(format!(
            "  ack latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} batches; an agent's window was full {} times)",
            l.latency.p50_ms,
            l.latency.p99_ms,
            l.latency.p999_ms,
            l.latency.max_ms,
            l.latency.batches,
            l.window_waits
        ));
        line(format!(
            "  collector CPU {:.2} cores, RSS max {}; agents' CPU {:.2} cores",
            l.usage.collector_cores(),
            human(l.usage.collector_max_rss_bytes as f64, "bytes"),
            l.usage.bench_cores()
        ));
        line(format!(
            "collector peak RSS (VmHWM) {}",
            human(self.collector_hwm_bytes as f64, "bytes")
        ));
        line(format!(
            "periodic rollups: {} taking {:.2} s in all",
            self.rollups.0, self.rollups.1
        ));
        line(format!(
            "store checkpoints: {} taking {:.2} s in all",
            self.checkpoints.0, self.checkpoints.1
        ));
        let s = &self.store;
        line(format!(
            "store after both modes: {} for {} container samples ({} values) = {:.3} bytes per value; shutdown with checkpoint {:.1} s",
            human(s.file_bytes as f64, "bytes"),
            s.container_samples,
            s.values,
            s.bytes_per_value(),
            s.shutdown.as_secs_f64()
        ));
        line(String::new());
        match &self.storage {
            None => line("storage comparison: not run (--storage-ticks 0)".to_owned()),
            Some(st) => {
                line(format!(
                    "storage comparison: {} ticks × {} containers × {} values = {} values",
                    st.ticks,
                    a.agents * a.containers,
                    METRICS.len(),
                    st.upid.values
                ));
                line(format!(
                    "  upid (DuckDB, after checkpoint)  {:>10}  {:.3} bytes per value (stored in {:.1} s)",
                    human(st.upid.file_bytes as f64, "bytes"),
                    st.upid.bytes_per_value(),
                    st.ingest_wall.as_secs_f64()
                ));
                match &st.prometheus {
                    Ok(p) => line(format!(
                        "  Prometheus TSDB ({} blocks)     {:>10}  {:.3} bytes per value ({}; promtool {:.1} s)",
                        p.blocks,
                        human(p.block_bytes as f64, "bytes"),
                        p.bytes_per_value(),
                        p.promtool_version,
                        p.promtool_wall.as_secs_f64()
                    )),
                    Err(why) => line(format!("  Prometheus: {why}")),
                }
            }
        }
        line(String::new());
        line("goals (issue #3):".to_owned());
        for goal in self.goals() {
            line(format!("  {}", goal.line()));
        }
        out
    }

    /// The whole report as one JSON object.
    pub fn to_json(&self) -> Value {
        let a = &self.args;
        json!({
            "bench": "collector",
            "date": self.date,
            "machine": self.machine.to_json(),
            "config": {
                "agents": a.agents,
                "containers": a.containers,
                "values_per_container_sample": METRICS.len(),
                "window": a.window,
                "duration_s": a.duration.as_secs_f64(),
                "warmup_s": a.warmup.as_secs_f64(),
                "latency_duration_s": a.latency_duration.as_secs_f64(),
                "latency_fraction": a.latency_fraction,
                "latency_rate": a.latency_rate,
                "storage_ticks": a.storage_ticks,
                "compression": format!("{:?}", a.compression).to_lowercase(),
                "client_threads": a.client_threads,
                "live_agents": a.live_agents,
                "pregenerate_rate": a.pregenerate_rate,
                "collector_bin": self.collector_bin.display().to_string(),
            },
            "max": {
                "samples_per_s": self.max.samples_per_s,
                "batches_per_s": self.max.batches_per_s,
                "metrics_samples_per_s": self.max.metrics_samples_per_s,
                "usage": self.max.usage.to_json(),
                "latency": self.max.latency_ms.to_json(),
            },
            "latency": {
                "target_samples_per_s": self.latency.target_samples_per_s,
                "samples_per_s": self.latency.samples_per_s,
                "latency": self.latency.latency.to_json(),
                "window_waits": self.latency.window_waits,
                "usage": self.latency.usage.to_json(),
                "catch_up_s": self.latency.catch_up.as_secs_f64(),
            },
            "collector_hwm_bytes": self.collector_hwm_bytes,
            "rollups": {"count": self.rollups.0, "seconds": self.rollups.1},
            "checkpoints": {"count": self.checkpoints.0, "seconds": self.checkpoints.1},
            "store": self.store.to_json(),
            "storage": self.storage.as_ref().map(|s| json!({
                "ticks": s.ticks,
                "upid": s.upid.to_json(),
                "ingest_wall_s": s.ingest_wall.as_secs_f64(),
                "prometheus": match &s.prometheus {
                    Ok(p) => json!({
                        "promtool_version": p.promtool_version,
                        "series": p.series,
                        "values": p.values,
                        "text_bytes": p.text_bytes,
                        "block_bytes": p.block_bytes,
                        "blocks": p.blocks,
                        "bytes_per_value": p.bytes_per_value(),
                        "promtool_wall_s": p.promtool_wall.as_secs_f64(),
                    }),
                    Err(why) => json!({ "skipped": why }),
                },
            })),
            "goals": self.goals().iter().map(Goal::to_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_of_the_window_only() {
        let t0 = tokio::time::Instant::now();
        let acked: Vec<AckedBatch> = (0..200u64)
            .map(|i| AckedBatch {
                due: t0 + Duration::from_millis(i),
                latency: Duration::from_millis(if i < 100 { 1000 } else { i - 99 }),
            })
            .collect();
        // Only the second hundred (latencies 1..=100 ms) is in the window.
        let l = Latency::of(
            &acked,
            t0 + Duration::from_millis(100),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(l.batches, 100);
        assert!((l.p50_ms - 50.0).abs() < 1e-9);
        assert!((l.p99_ms - 99.0).abs() < 1e-9);
        assert!((l.max_ms - 100.0).abs() < 1e-9);
        assert_eq!(Latency::of(&[], t0, t0).batches, 0);
    }
}

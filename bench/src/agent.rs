//! `upid-bench agent`: issue #2's goals for the node agent, measured with
//! real cgroups.
//!
//! 1. [`cgroups`](crate::cgroups): N cgroups `upid-bench/docker-<id>.scope` in every
//!    hierarchy the sampler reads, one `sleep` process each.
//! 2. [`agent_tick`](crate::agent_tick): sampler CPU per container per tick,
//!    in process.
//! 3. [`agent_proc`](crate::agent_proc): the real `upid-agent sample`
//!    binary's CPU share and resident memory over a run, and beside it
//! 4. [`exporter`](crate::exporter): `prometheus-node-exporter`'s CPU per
//!    scrape and memory, for comparison.
//! 5. The goals, PASS/MISS, as text and as one JSON line.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use upid_agent::cgroup::identity::CgroupGlob;
use upid_agent::sampler::{Sampler, SamplerConfig};

use crate::agent_proc::{self, AgentProcess, ProcessReport};
use crate::agent_tick::{self, TickConfig, TickReport};
use crate::cgroups::{self, BenchCgroups, Load, Mounts};
use crate::exporter::{Exporter, ExporterReport};
use crate::file_costs::{self, FileCost};
use crate::interrupt::Interrupt;
use crate::machine::Machine;
use crate::report::{Bound, Goal, human};

/// Issue #2: sampler CPU per container per tick (median), ns.
pub const GOAL_CPU_PER_CONTAINER_NS: f64 = 25_000.0;
/// Issue #2: agent resident memory, bytes.
pub const GOAL_RSS_BYTES: f64 = 16.0 * 1024.0 * 1024.0;
/// Issue #2: agent CPU share of one core at a 10 s interval, percent.
pub const GOAL_CPU_SHARE_PCT: f64 = 0.2;
/// The interval the CPU-share goal is stated for.
pub const GOAL_INTERVAL: Duration = Duration::from_secs(10);

/// Prefix of the benchmark cgroups' paths.
const BENCH_PREFIX: &str = "/upid-bench/";

/// How many per-file costs the summary shows.
const FILE_COSTS_SHOWN: usize = 30;

/// How often the agent's memory is polled during the run.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Options of `upid-bench agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Cgroups to create (each with one process, in every hierarchy).
    #[arg(long, default_value_t = 500)]
    pub containers: usize,
    /// In-process ticks to measure.
    #[arg(long, default_value_t = 50)]
    pub ticks: usize,
    /// In-process ticks to run first, unmeasured.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// How long to run the real agent process.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The agent's `--interval` (the CPU-share goal is stated for 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Measured `/metrics` scrapes of the exporter.
    #[arg(long, default_value_t = 20)]
    pub scrapes: usize,
    /// The `upid-agent` binary (default: next to this benchmark's binary).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// The node exporter binary.
    #[arg(long, default_value = "prometheus-node-exporter")]
    pub exporter_bin: PathBuf,
    /// Do not run the exporter comparison.
    #[arg(long)]
    pub no_exporter: bool,
    /// Also measure one read of every control file of the benchmark
    /// cgroups, to show which reads dominate a tick.
    #[arg(long)]
    pub file_costs: bool,
    /// Print one JSON line on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Create the cgroups in the v1 hierarchies only, as Docker's cgroupfs
    /// driver does on a hybrid host (no cgroup2 twin, so no PSI to read).
    /// By default they are also created in the cgroup2 hierarchy, as
    /// systemd-managed cgroups are on hybrid hosts.
    #[arg(long)]
    pub v1_only: bool,
    /// What runs in each cgroup: `idle` (a `sleep`) or `busy` (wakes every
    /// second, runs and allocates, so every tick sees its CPU and memory
    /// counters move).
    #[arg(long, value_enum, default_value_t = Load::Idle)]
    pub load: Load,
    /// Pause before each in-process tick. Longer than the busy load's 1 s
    /// period, so every busy container ran between two ticks.
    #[arg(long, default_value = "1200ms", value_parser = humantime::parse_duration)]
    pub tick_gap: Duration,
}

/// Everything one `upid-bench agent` run measured.
#[derive(Debug, Clone)]
pub struct AgentBenchReport {
    /// When the run finished (RFC 3339).
    pub date: String,
    /// The options used.
    pub args: AgentArgs,
    /// The agent binary measured.
    pub agent_bin: PathBuf,
    /// The machine.
    pub machine: Machine,
    /// Hierarchies holding the benchmark's cgroups.
    pub hierarchies: Vec<PathBuf>,
    /// Hierarchies left out, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// In-process tick cost.
    pub tick: TickReport,
    /// Cgroups the agent binary saw in its `--once` check.
    pub agent_saw: usize,
    /// The agent process.
    pub process: ProcessReport,
    /// The exporter, unless `--no-exporter`.
    pub exporter: Option<ExporterReport>,
    /// Per-file read costs with `--file-costs` (most costly first).
    pub file_costs: Vec<FileCost>,
}

/// Runs the whole benchmark. Cgroups and processes are cleaned up however
/// it ends.
pub fn run(args: &AgentArgs, interrupt: &Interrupt) -> anyhow::Result<AgentBenchReport> {
    let agent_bin = match &args.agent_bin {
        Some(path) => path.clone(),
        None => agent_proc::default_binary()?,
    };
    agent_proc::check_binary(&agent_bin)?;

    let globs =
        vec![CgroupGlob::new(cgroups::GLOB).context("compiling the benchmark's cgroup glob")?];
    let mut sampler = Sampler::new(SamplerConfig {
        globs: globs.clone(),
        ..SamplerConfig::default()
    })
    .context("detecting the cgroup layout")?;
    let machine = Machine::detect(sampler.hierarchies());
    let mut mounts = Mounts::of(sampler.hierarchies());
    if args.v1_only {
        mounts.unified = None;
    }

    let removed =
        cgroups::remove_leftovers(&mounts).context("removing a previous run's cgroups")?;
    if removed > 0 {
        eprintln!("removed {removed} cgroups left by an earlier run");
    }
    eprintln!(
        "creating {} cgroups, each with one process, in {}",
        args.containers,
        list(mounts.all())
    );
    let mut cgroups = BenchCgroups::create(&mounts, args.containers, args.load, interrupt)?;
    for (mount, why) in cgroups.skipped() {
        eprintln!("left out {}: {why}", mount.display());
    }

    eprintln!(
        "in-process ticks: {} warm-up, {} measured",
        args.warmup, args.ticks
    );
    let tick_config = TickConfig {
        warmup: args.warmup,
        ticks: args.ticks,
        expect_containers: args.containers,
        gap: args.tick_gap,
    };
    let tick = agent_tick::run(&mut sampler, &globs, BENCH_PREFIX, tick_config, interrupt)?;
    // Close the sampler's files before the agent process runs.
    drop(sampler);

    let mut file_costs = Vec::new();
    if args.file_costs {
        eprintln!("measuring one read of every control file");
        for mount in cgroups.hierarchies() {
            file_costs.extend(file_costs::measure(
                mount,
                &cgroups.dirs_in(mount),
                interrupt,
            )?);
        }
        file_costs.sort_by(|a, b| b.cpu_per_read_ns.total_cmp(&a.cpu_per_read_ns));
    }

    let agent_saw =
        agent_proc::verify_sees(&agent_bin, cgroups::GLOB, BENCH_PREFIX, args.containers)?;
    eprintln!(
        "running {} sample --interval {} -o json --cgroup-glob '{}' for {}",
        agent_bin.display(),
        humantime::format_duration(args.interval),
        cgroups::GLOB,
        humantime::format_duration(args.duration)
    );
    let mut agent = AgentProcess::start(&agent_bin, args.interval, cgroups::GLOB, &cgroups)?;
    let deadline = agent.started() + args.duration;

    let exporter = if args.no_exporter {
        None
    } else {
        let mut exporter = Exporter::start(&args.exporter_bin, &cgroups, interrupt)?;
        eprintln!(
            "scraping prometheus-node-exporter on {} {} times",
            exporter.addr(),
            args.scrapes
        );
        let report = exporter.measure(args.scrapes, interrupt)?;
        // Stop it now, so it does not share the CPUs with the agent longer
        // than needed.
        drop(exporter);
        Some(report)
    };

    while Instant::now() < deadline {
        agent.poll()?;
        interrupt.sleep_until(deadline.min(Instant::now() + POLL_EVERY))?;
    }
    let tick_wall = Duration::from_nanos(tick.wall_per_tick_ns.median as u64);
    let process = agent.finish(tick_wall)?;
    drop(agent);

    let report = AgentBenchReport {
        date: crate::report::now_rfc3339(),
        args: args.clone(),
        agent_bin,
        machine,
        hierarchies: cgroups.hierarchies().to_vec(),
        skipped: cgroups.skipped().to_vec(),
        tick,
        agent_saw,
        process,
        exporter,
        file_costs,
    };
    cgroups
        .cleanup()
        .context("cleaning up the benchmark cgroups")?;
    Ok(report)
}

/// Paths joined by `, `.
fn list<'a>(paths: impl Iterator<Item = &'a std::path::Path>) -> String {
    paths
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl AgentBenchReport {
    /// Issue #2's goals with the measured values.
    pub fn goals(&self) -> Vec<Goal> {
        vec![
            Goal {
                name: "cpu_per_container_per_tick_median",
                description: "sampler CPU per container per tick (median)",
                value: Some(self.tick.cpu_per_container_ns.median),
                target: GOAL_CPU_PER_CONTAINER_NS,
                bound: Bound::AtMost,
                unit: "ns",
            },
            Goal {
                name: "agent_max_rss",
                description: "agent resident memory (max)",
                value: Some(self.process.max_rss_bytes() as f64),
                target: GOAL_RSS_BYTES,
                bound: Bound::AtMost,
                unit: "bytes",
            },
            Goal {
                name: "agent_cpu_share_10s",
                description: "agent CPU, % of one core at 10 s interval",
                value: (self.process.interval == GOAL_INTERVAL)
                    .then_some(self.process.cpu_share_pct),
                target: GOAL_CPU_SHARE_PCT,
                bound: Bound::Below,
                unit: "%",
            },
        ]
    }

    /// The human-readable summary.
    pub fn summary(&self) -> String {
        let t = &self.tick;
        let p = &self.process;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("upid-bench agent  {}", self.date));
        line(format!("machine: {}", self.machine.summary()));
        line(format!(
            "cgroups: {} {} × {} hierarchies ({}){}",
            self.args.containers,
            self.args.load.name(),
            self.hierarchies.len(),
            list(self.hierarchies.iter().map(PathBuf::as_path)),
            self.skipped
                .iter()
                .map(|(m, why)| format!("; left out {}: {why}", m.display()))
                .collect::<String>()
        ));
        line(String::new());
        line(format!(
            "in-process sampler, {} ticks after {} warm-up, {} containers ({} benchmark), {} netns, skips {} malformed / {} vanished",
            t.ticks,
            self.args.warmup,
            t.containers,
            t.bench_containers,
            t.networks,
            t.malformed_skips,
            t.vanished
        ));
        line(format!(
            "  CPU per container per tick  median {:>10}  p90 {:>10}",
            human(t.cpu_per_container_ns.median, "ns"),
            human(t.cpu_per_container_ns.p90, "ns")
        ));
        line(format!(
            "  CPU per tick                median {:>10}  p90 {:>10}",
            human(t.cpu_per_tick_ns.median, "ns"),
            human(t.cpu_per_tick_ns.p90, "ns")
        ));
        line(format!(
            "  wall per tick               median {:>10}  p90 {:>10}",
            human(t.wall_per_tick_ns.median, "ns"),
            human(t.wall_per_tick_ns.p90, "ns")
        ));
        line(format!(
            "  of which discovery alone    median {:>10}  p90 {:>10}  per container",
            human(t.discover_per_container_ns.median, "ns"),
            human(t.discover_per_container_ns.p90, "ns")
        ));
        line(String::new());
        line(format!(
            "upid-agent process ({} sample --interval {} -o json, saw {} benchmark cgroups), {:.1} s, ≈{} ticks",
            self.agent_bin.display(),
            humantime::format_duration(p.interval),
            self.agent_saw,
            p.wall.as_secs_f64(),
            p.ticks_estimated
        ));
        line(format!(
            "  CPU {} ({} by stat) = {} of one core, ≈{} per tick",
            human(p.cpu.schedstat_ns as f64, "ns"),
            human(p.cpu.stat_ns as f64, "ns"),
            human(p.cpu_share_pct, "%"),
            human(
                p.cpu.best_ns() as f64 / p.ticks_estimated.max(1) as f64,
                "ns"
            )
        ));
        if let (Some(ns), Some(pct)) = (p.steady_cpu_per_tick_ns, p.steady_cpu_share_pct) {
            line(format!(
                "  after the first tick: {} per tick = {} of one core",
                human(ns, "ns"),
                human(pct, "%")
            ));
        }
        line(format!(
            "  RSS now {}, peak {} (VmHWM), polled max {}",
            human(p.memory.rss_bytes as f64, "bytes"),
            human(p.memory.hwm_bytes as f64, "bytes"),
            human(p.max_rss_polled_bytes as f64, "bytes")
        ));
        line(String::new());
        match &self.exporter {
            Some(e) => {
                line(format!(
                    "prometheus-node-exporter (default collectors), {} scrapes of /metrics",
                    e.scrapes
                ));
                line(format!(
                    "  CPU per scrape  median {:>10}  p90 {:>10}  (one scrape per 10 s = {} of one core)",
                    human(e.cpu_per_scrape_ns.median, "ns"),
                    human(e.cpu_per_scrape_ns.p90, "ns"),
                    human(e.cpu_per_scrape_ns.median / 1e10 * 100.0, "%")
                ));
                line(format!(
                    "  wall per scrape median {:>10}; one scrape is {} bytes",
                    human(e.wall_per_scrape_ns.median, "ns"),
                    e.scrape_bytes
                ));
                line(format!(
                    "  RSS now {}, peak {} (VmHWM)",
                    human(e.memory.rss_bytes as f64, "bytes"),
                    human(e.memory.hwm_bytes as f64, "bytes")
                ));
            }
            None => line("prometheus-node-exporter: not run (--no-exporter)".to_owned()),
        }
        if !self.file_costs.is_empty() {
            line(String::new());
            line(format!(
                "control-file reads (--file-costs; CPU per pread at offset 0, {} most costly of {}):",
                FILE_COSTS_SHOWN.min(self.file_costs.len()),
                self.file_costs.len()
            ));
            for cost in self.file_costs.iter().take(FILE_COSTS_SHOWN) {
                line(format!(
                    "  {:>10}  {:>6} B  {}",
                    human(cost.cpu_per_read_ns, "ns"),
                    cost.bytes,
                    cost.file.display()
                ));
            }
        }
        line(String::new());
        line("goals (issue #2):".to_owned());
        for goal in self.goals() {
            line(format!("  {}", goal.line()));
        }
        out
    }

    /// The whole report as one JSON object.
    pub fn to_json(&self) -> Value {
        let t = &self.tick;
        let p = &self.process;
        json!({
            "bench": "agent",
            "date": self.date,
            "machine": self.machine.to_json(),
            "config": {
                "containers": self.args.containers,
                "load": self.args.load.name(),
                "tick_gap_s": self.args.tick_gap.as_secs_f64(),
                "v1_only": self.args.v1_only,
                "ticks": self.args.ticks,
                "warmup": self.args.warmup,
                "duration_s": self.args.duration.as_secs_f64(),
                "interval_s": self.args.interval.as_secs_f64(),
                "scrapes": self.args.scrapes,
                "agent_bin": self.agent_bin.display().to_string(),
                "hierarchies": self.hierarchies.iter().map(|h| h.display().to_string()).collect::<Vec<_>>(),
                "skipped": self.skipped.iter().map(|(m, why)| json!({"mount": m.display().to_string(), "why": why})).collect::<Vec<_>>(),
            },
            "tick": {
                "ticks": t.ticks,
                "containers": t.containers,
                "bench_containers": t.bench_containers,
                "networks": t.networks,
                "malformed_skips": t.malformed_skips,
                "vanished": t.vanished,
                "cpu_per_container_ns": t.cpu_per_container_ns.to_json(),
                "cpu_per_tick_ns": t.cpu_per_tick_ns.to_json(),
                "wall_per_tick_ns": t.wall_per_tick_ns.to_json(),
                "discover_per_container_ns": t.discover_per_container_ns.to_json(),
            },
            "agent_process": {
                "saw_bench_containers": self.agent_saw,
                "wall_s": p.wall.as_secs_f64(),
                "interval_s": p.interval.as_secs_f64(),
                "ticks_estimated": p.ticks_estimated,
                "cpu_schedstat_ns": p.cpu.schedstat_ns,
                "cpu_stat_ns": p.cpu.stat_ns,
                "cpu_share_pct": p.cpu_share_pct,
                "steady_cpu_per_tick_ns": p.steady_cpu_per_tick_ns,
                "steady_cpu_share_pct": p.steady_cpu_share_pct,
                "rss_bytes": p.memory.rss_bytes,
                "hwm_bytes": p.memory.hwm_bytes,
                "max_rss_polled_bytes": p.max_rss_polled_bytes,
            },
            "exporter": self.exporter.as_ref().map(|e| json!({
                "scrapes": e.scrapes,
                "cpu_per_scrape_ns": e.cpu_per_scrape_ns.to_json(),
                "wall_per_scrape_ns": e.wall_per_scrape_ns.to_json(),
                "scrape_bytes": e.scrape_bytes,
                "rss_bytes": e.memory.rss_bytes,
                "hwm_bytes": e.memory.hwm_bytes,
            })),
            "file_costs": self.file_costs.iter().map(FileCost::to_json).collect::<Vec<_>>(),
            "goals": self.goals().iter().map(Goal::to_json).collect::<Vec<_>>(),
        })
    }
}

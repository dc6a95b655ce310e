//! The real `upid-agent` binary as a user runs it
//! (`upid-agent sample --interval 10s -o json --cgroup-glob ...`, stdout to
//! `/dev/null`): its CPU share over the run and its resident memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use upid::model::Snapshot;

use crate::cgroups::BenchCgroups;
use crate::child::ChildGuard;
use crate::procstat::{self, ProcessCpu, ProcessMemory};

/// Where `upid-agent` is when the user did not say: next to this binary in
/// the cargo target directory.
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this benchmark's own path")?;
    let dir = exe
        .parent()
        .context("this benchmark's path has no parent directory")?;
    Ok(dir.join("upid-agent"))
}

/// Fails with a build hint when `binary` is missing.
pub fn check_binary(binary: &Path) -> anyhow::Result<()> {
    if !binary.is_file() {
        bail!(
            "no upid-agent binary at {}; build it first: \
             `cargo build --release -p upid-agent -p upid-bench` (or pass --agent-bin)",
            binary.display()
        );
    }
    Ok(())
}

/// Runs `binary sample --once -o json --cgroup-glob GLOB` and checks that
/// the snapshot holds at least `expected` cgroups under `prefix`, so the
/// long run below measures the intended load. Returns how many it saw.
pub fn verify_sees(
    binary: &Path,
    glob: &str,
    prefix: &str,
    expected: usize,
) -> anyhow::Result<usize> {
    let output = Command::new(binary)
        .args(["sample", "--once", "-o", "json", "--cgroup-glob", glob])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} sample --once", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} sample --once failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let snapshot: Snapshot = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "parsing the JSON snapshot of {} sample --once",
            binary.display()
        )
    })?;
    let seen = snapshot
        .containers
        .iter()
        .filter(|c| c.identity.cgroup_path.starts_with(prefix))
        .count();
    if seen < expected {
        bail!(
            "upid-agent sample --once saw {seen} benchmark cgroups under {prefix:?}, expected at least {expected} \
             (is {} an old build? rebuild with `cargo build --release -p upid-agent`)",
            binary.display()
        );
    }
    Ok(seen)
}

/// What running the agent cost.
#[derive(Debug, Clone)]
pub struct ProcessReport {
    /// Wall time from spawn to the final reading.
    pub wall: Duration,
    /// The agent's sampling interval.
    pub interval: Duration,
    /// CPU time used over `wall`.
    pub cpu: ProcessCpu,
    /// CPU used as a share of one core over `wall`, in percent.
    pub cpu_share_pct: f64,
    /// Ticks the agent ran in `wall`, estimated from the interval and the
    /// in-process tick wall time (its stdout goes to `/dev/null`).
    pub ticks_estimated: u64,
    /// Memory at the end (`VmRSS`), and the peak (`VmHWM`).
    pub memory: ProcessMemory,
    /// Largest `VmRSS` seen while polling once a second.
    pub max_rss_polled_bytes: u64,
    /// CPU per tick after the first one (start-up and the first tick,
    /// which opens every file, excluded): the CPU used from half an
    /// interval after the start to the end, over the ticks in that window.
    /// `None` when the run was shorter than half an interval.
    pub steady_cpu_per_tick_ns: Option<f64>,
    /// [`ProcessReport::steady_cpu_per_tick_ns`] as a share of one core at
    /// one tick per `interval` plus tick time, in percent.
    pub steady_cpu_share_pct: Option<f64>,
}

impl ProcessReport {
    /// The larger of `VmHWM` and the polled maximum: the peak resident set.
    pub fn max_rss_bytes(&self) -> u64 {
        self.memory.hwm_bytes.max(self.max_rss_polled_bytes)
    }
}

/// A running `upid-agent sample` process, stopped on drop.
#[derive(Debug)]
pub struct AgentProcess {
    child: ChildGuard,
    started: Instant,
    interval: Duration,
    max_rss_polled_bytes: u64,
    /// CPU used by half an interval after the start: after start-up and
    /// the first tick, before the second.
    after_first_tick: Option<ProcessCpu>,
}

impl AgentProcess {
    /// Starts `binary sample --interval INTERVAL -o json --cgroup-glob GLOB`
    /// with stdout to `/dev/null`.
    pub fn start(
        binary: &Path,
        interval: Duration,
        glob: &str,
        cgroups: &BenchCgroups,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command.args([
            "sample",
            "--interval",
            &humantime::format_duration(interval).to_string(),
            "-o",
            "json",
            "--cgroup-glob",
            glob,
        ]);
        let started = Instant::now();
        let child = ChildGuard::spawn("upid-agent", command)?;
        cgroups.adopt_runner(child.pid())?;
        Ok(AgentProcess {
            child,
            started,
            interval,
            max_rss_polled_bytes: 0,
            after_first_tick: None,
        })
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// When it was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Checks that the agent still runs and records its resident memory
    /// (and, once half an interval has passed, its CPU so far). Call about
    /// once a second.
    pub fn poll(&mut self) -> anyhow::Result<()> {
        self.child.check_alive()?;
        let memory = procstat::process_memory(self.pid())?;
        self.max_rss_polled_bytes = self.max_rss_polled_bytes.max(memory.rss_bytes);
        if self.after_first_tick.is_none() && self.started.elapsed() >= self.interval / 2 {
            self.after_first_tick = Some(procstat::process_cpu(self.pid())?);
        }
        Ok(())
    }

    /// Reads the final CPU and memory figures (the agent keeps running
    /// until dropped). `tick_wall` is the wall time of one tick, used to
    /// estimate how many ticks ran.
    pub fn finish(&mut self, tick_wall: Duration) -> anyhow::Result<ProcessReport> {
        self.poll()?;
        let pid = self.pid();
        let cpu = procstat::process_cpu(pid)?;
        let memory = procstat::process_memory(pid)?;
        let wall = self.started.elapsed();
        let cpu_share_pct = cpu.best_ns() as f64 / wall.as_nanos() as f64 * 100.0;
        // `sample` ticks, then sleeps `interval`: tick k starts at
        // k * (interval + tick_wall).
        let period = (self.interval + tick_wall).as_secs_f64();
        let ticks_estimated = if period > 0.0 {
            (wall.as_secs_f64() / period).floor() as u64 + 1
        } else {
            1
        };
        let steady_cpu_per_tick_ns = self
            .after_first_tick
            .filter(|_| ticks_estimated > 1)
            .map(|mark| cpu.since(&mark) as f64 / (ticks_estimated - 1) as f64);
        let steady_cpu_share_pct = steady_cpu_per_tick_ns.map(|ns| ns / (period * 1e9) * 100.0);
        Ok(ProcessReport {
            wall,
            steady_cpu_per_tick_ns,
            steady_cpu_share_pct,
            interval: self.interval,
            cpu,
            cpu_share_pct,
            ticks_estimated,
            memory,
            max_rss_polled_bytes: self.max_rss_polled_bytes.max(memory.rss_bytes),
        })
    }
}

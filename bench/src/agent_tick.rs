//! Cost of one sampler tick, in process: the CPU time the sampling thread
//! spends in [`Sampler::sample`], per container, and the tick's wall time.
//!
//! CPU time is read from `/proc/thread-self/schedstat` before and after
//! each tick: nanoseconds on CPU, kernel time included (most of a tick is
//! `open`/`read` of cgroup files in the kernel). The two reads bracketing a
//! tick cost a few microseconds per tick, i.e. well under 0.1 µs per
//! container at 500 containers; they are not subtracted.

use std::time::Instant;

use anyhow::{Context, bail};
use upid_agent::cgroup::discover;
use upid_agent::cgroup::identity::CgroupGlob;
use upid_agent::sampler::Sampler;

use crate::interrupt::Interrupt;
use crate::procstat::ThreadCpuClock;
use crate::stats::Summary;

/// How to run the tick benchmark.
#[derive(Debug, Clone, Copy)]
pub struct TickConfig {
    /// Ticks run first and not measured (open files, fill caches).
    pub warmup: usize,
    /// Ticks measured.
    pub ticks: usize,
    /// The fewest benchmark containers a snapshot must hold for the result
    /// to mean anything.
    pub expect_containers: usize,
    /// Pause before each tick, so a `busy` load runs between ticks (and
    /// caches cool a little, as between a real agent's ticks).
    pub gap: std::time::Duration,
}

/// What the tick benchmark measured.
#[derive(Debug, Clone)]
pub struct TickReport {
    /// Ticks measured.
    pub ticks: usize,
    /// Containers per snapshot (all sampled cgroups, the fewest seen in a
    /// measured tick).
    pub containers: usize,
    /// Benchmark cgroups per snapshot (the fewest seen).
    pub bench_containers: usize,
    /// Network namespaces per snapshot (the most seen).
    pub networks: usize,
    /// Malformed-file skips summed over the measured ticks.
    pub malformed_skips: u64,
    /// Vanished cgroups summed over the measured ticks.
    pub vanished: u64,
    /// Sampling-thread CPU per tick, divided by the containers in that
    /// tick's snapshot (ns).
    pub cpu_per_container_ns: Summary,
    /// Sampling-thread CPU per tick (ns).
    pub cpu_per_tick_ns: Summary,
    /// Wall time per tick (ns).
    pub wall_per_tick_ns: Summary,
    /// CPU of discovery alone ([`discover::discover`], the walk of the
    /// hierarchy that finds the cgroups), per discovered cgroup (ns): the
    /// part of a tick that does not read counters.
    pub discover_per_container_ns: Summary,
}

/// Runs `config.warmup` unmeasured and `config.ticks` measured ticks of
/// `sampler` on the calling thread, then as many runs of discovery alone
/// with `globs` (those `sampler` was built with). Fails when a snapshot
/// holds fewer than `config.expect_containers` cgroups under
/// `bench_prefix`: the numbers would not describe the load the benchmark
/// claims.
pub fn run(
    sampler: &mut Sampler,
    globs: &[CgroupGlob],
    bench_prefix: &str,
    config: TickConfig,
    interrupt: &Interrupt,
) -> anyhow::Result<TickReport> {
    if config.ticks == 0 {
        bail!("--ticks must be at least 1");
    }
    let mut clock = ThreadCpuClock::for_current_thread()?;
    for i in 0..config.warmup {
        interrupt.check()?;
        std::thread::sleep(config.gap);
        let snapshot = sampler
            .sample()
            .with_context(|| format!("warm-up tick {i}"))?;
        check_count(&snapshot, bench_prefix, config.expect_containers)?;
    }

    let mut per_container = Vec::with_capacity(config.ticks);
    let mut per_tick = Vec::with_capacity(config.ticks);
    let mut wall = Vec::with_capacity(config.ticks);
    let mut containers = usize::MAX;
    let mut bench_containers = usize::MAX;
    let mut networks = 0;
    let mut malformed_skips = 0;
    let mut vanished = 0;
    for i in 0..config.ticks {
        interrupt.check()?;
        std::thread::sleep(config.gap);
        let cpu_before = clock.now_ns()?;
        let wall_before = Instant::now();
        let snapshot = sampler.sample();
        let wall_ns = wall_before.elapsed().as_nanos();
        let cpu_ns = clock.now_ns()?.saturating_sub(cpu_before);
        let snapshot = snapshot.with_context(|| format!("measured tick {i}"))?;
        let bench = check_count(&snapshot, bench_prefix, config.expect_containers)?;
        let n = snapshot.containers.len();
        per_container.push(cpu_ns as f64 / n as f64);
        per_tick.push(cpu_ns as f64);
        wall.push(wall_ns as f64);
        containers = containers.min(n);
        bench_containers = bench_containers.min(bench);
        networks = networks.max(snapshot.networks.len());
        malformed_skips += snapshot.malformed_skips;
        vanished += snapshot.vanished;
    }

    let mut discover_per_container = Vec::with_capacity(config.ticks);
    for i in 0..config.ticks {
        interrupt.check()?;
        let cpu_before = clock.now_ns()?;
        let found = discover::discover(sampler.hierarchies(), globs);
        let cpu_ns = clock.now_ns()?.saturating_sub(cpu_before);
        let found = found.with_context(|| format!("discovery run {i}"))?;
        discover_per_container.push(cpu_ns as f64 / found.len().max(1) as f64);
    }

    Ok(TickReport {
        ticks: config.ticks,
        containers,
        bench_containers,
        networks,
        malformed_skips,
        vanished,
        cpu_per_container_ns: Summary::of(&per_container),
        cpu_per_tick_ns: Summary::of(&per_tick),
        wall_per_tick_ns: Summary::of(&wall),
        discover_per_container_ns: Summary::of(&discover_per_container),
    })
}

/// Number of containers under `bench_prefix` in `snapshot`; an error when
/// fewer than `expected`.
fn check_count(
    snapshot: &upid::model::Snapshot,
    bench_prefix: &str,
    expected: usize,
) -> anyhow::Result<usize> {
    let bench = snapshot
        .containers
        .iter()
        .filter(|c| c.identity.cgroup_path.starts_with(bench_prefix))
        .count();
    if bench < expected {
        bail!(
            "the sampler saw {bench} benchmark cgroups under {bench_prefix:?} ({} containers in all), \
             expected at least {expected}: the benchmark would measure the wrong load \
             (skips this tick: {} malformed, {} vanished)",
            snapshot.containers.len(),
            snapshot.malformed_skips,
            snapshot.vanished,
        );
    }
    Ok(bench)
}

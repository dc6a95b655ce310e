//! Real cgroups for the benchmarks: `upid-bench/docker-<id>.scope` in every hierarchy
//! the sampler reads, each holding one real process: `sleep` for an idle
//! container, or this binary's hidden `busy-child` for a container that
//! runs and touches memory every second ([`Load`]).
//!
//! [`BenchCgroups`] is a guard: dropping it (normal return, error, panic,
//! or Ctrl-C turned into an error by [`crate::interrupt`]) kills its
//! processes and removes the cgroups. [`remove_leftovers`] clears what a
//! crashed earlier run left behind, killing only processes found inside the
//! benchmark's own cgroups.
//!
//! Processes the benchmark runs beside the cgroups (the agent, the
//! exporter) are put into a separate `upid-bench-run` cgroup, outside the
//! sampled glob, so a later run can find and stop them too.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use upid_agent::cgroup::Hierarchies;

use crate::interrupt::Interrupt;

/// Name of the parent cgroup of the benchmark's cgroups, in every hierarchy.
pub const PARENT: &str = "upid-bench";

/// Glob (for `--cgroup-glob` and [`upid_agent::sampler::SamplerConfig`])
/// matching exactly the benchmark's cgroups.
pub const GLOB: &str = "/upid-bench/*";

/// Cgroup holding the processes the benchmark runs beside its cgroups
/// (agent, exporter), so a later run can stop them if this one crashed.
pub const RUNNER: &str = "upid-bench-run";

/// v1 controllers whose hierarchies the sampler reads.
pub const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "blkio", "pids"];

/// How long to wait for a cgroup to empty or to become removable.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What runs in each benchmark cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Load {
    /// One `sleep` per cgroup: nothing runs between ticks, as in an idle or
    /// abandoned container.
    Idle,
    /// One `upid-bench busy-child` per cgroup: wakes every second, runs
    /// briefly and allocates and frees 1 MiB, so its CPU counter and memory
    /// usage move in every tick, as in a serving container.
    Busy,
}

impl Load {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Load::Idle => "idle",
            Load::Busy => "busy",
        }
    }

    fn command(self) -> anyhow::Result<Command> {
        Ok(match self {
            Load::Idle => {
                let mut c = Command::new("sleep");
                c.arg("100000");
                c
            }
            Load::Busy => {
                let exe = std::env::current_exe()
                    .context("finding this binary to run `busy-child` in the cgroups")?;
                let mut c = Command::new(exe);
                c.arg("busy-child");
                c
            }
        })
    }
}

/// The `busy-child` process ([`Load::Busy`]): every second, allocate and
/// touch 1 MiB (charging it to the cgroup), then free it. Runs until killed.
pub fn busy_child() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        // Above malloc's mmap threshold: the pages are faulted in (charged)
        // here and returned to the kernel by the drop.
        let touched = vec![1u8; 1 << 20];
        std::hint::black_box(&touched);
    }
}

/// Where the benchmark creates cgroups on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    /// Mount points of the v1 hierarchies of [`V1_CONTROLLERS`], each once
    /// (co-mounted controllers share one).
    pub v1: Vec<PathBuf>,
    /// The cgroup2 mount, if any.
    pub unified: Option<PathBuf>,
}

impl Mounts {
    /// The mounts the sampler reads for `hierarchies`.
    pub fn of(hierarchies: &Hierarchies) -> Self {
        let mut v1: Vec<PathBuf> = Vec::new();
        for controller in V1_CONTROLLERS {
            if let Some(mount) = hierarchies.v1_controller(controller)
                && !v1.iter().any(|m| m == mount)
            {
                v1.push(mount.to_path_buf());
            }
        }
        Mounts {
            v1,
            unified: hierarchies.unified.clone(),
        }
    }

    /// Every mount, v1 first.
    pub fn all(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(PathBuf::as_path)
            .chain(self.unified.as_deref())
    }

    /// The mount that holds the [`RUNNER`] cgroup: `pids` if it is there,
    /// else the first hierarchy.
    fn runner_mount(&self) -> Option<&Path> {
        self.v1
            .iter()
            .find(|m| m.ends_with("pids"))
            .or(self.v1.first())
            .map(PathBuf::as_path)
            .or(self.unified.as_deref())
    }
}

/// The benchmark's cgroups and their processes; cleaned up on drop.
#[derive(Debug)]
pub struct BenchCgroups {
    mounts: Mounts,
    /// Hierarchies in which [`PARENT`] was created.
    used: Vec<PathBuf>,
    /// Hierarchies left out, and why.
    skipped: Vec<(PathBuf, String)>,
    /// The `sleep` processes, one per cgroup.
    children: Vec<Child>,
    /// Names of the cgroups under [`PARENT`] (`c000`, ...).
    names: Vec<String>,
    /// Where the [`RUNNER`] cgroup was created.
    runner: Option<PathBuf>,
    cleaned: bool,
}

impl BenchCgroups {
    /// Creates `count` cgroups `upid-bench/docker-<id>.scope` in every hierarchy of
    /// `mounts` (the cgroup2 mount only if it is writable), each with one
    /// process running `load` in it. Whatever was created is removed again
    /// if this fails.
    pub fn create(
        mounts: &Mounts,
        count: usize,
        load: Load,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Self> {
        if mounts.v1.is_empty() && mounts.unified.is_none() {
            bail!(
                "no cgroup hierarchy to create benchmark cgroups in (is /sys/fs/cgroup mounted?)"
            );
        }
        let mut cgroups = BenchCgroups {
            mounts: mounts.clone(),
            used: Vec::new(),
            skipped: Vec::new(),
            children: Vec::with_capacity(count),
            names: Vec::with_capacity(count),
            runner: None,
            cleaned: false,
        };
        for mount in &mounts.v1 {
            let parent = mount.join(PARENT);
            mkdir(&parent)?;
            cgroups.used.push(mount.clone());
        }
        if let Some(unified) = &mounts.unified {
            let parent = unified.join(PARENT);
            match std::fs::create_dir(&parent) {
                Ok(()) => cgroups.used.push(unified.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    cgroups.used.push(unified.clone())
                }
                Err(e) => cgroups
                    .skipped
                    .push((unified.clone(), format!("not writable: {e}"))),
            }
        }
        if let Some(mount) = mounts.runner_mount() {
            let runner = mount.join(RUNNER);
            mkdir(&runner)?;
            cgroups.runner = Some(runner);
        }

        for i in 0..count {
            interrupt.check()?;
            // Named as Docker's systemd driver names containers, so the
            // agent identifies each as a container (and, as for real ones,
            // does not walk below it) without needing the glob.
            let name = container_cgroup_name(i);
            let child = load
                .command()?
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Own process group: a terminal's Ctrl-C reaches only the
                // benchmark, which then tears everything down in order.
                .process_group(0)
                .spawn()
                .with_context(|| {
                    format!("spawning the {} load for a benchmark cgroup", load.name())
                })?;
            let pid = child.id();
            cgroups.children.push(child);
            cgroups.names.push(name.clone());
            for mount in &cgroups.used {
                let dir = mount.join(PARENT).join(&name);
                mkdir(&dir)?;
                write_pid(&dir, pid)?;
            }
        }
        Ok(cgroups)
    }

    /// Hierarchies holding the benchmark's cgroups.
    pub fn hierarchies(&self) -> &[PathBuf] {
        &self.used
    }

    /// The benchmark cgroups' directories in hierarchy `mount`.
    pub fn dirs_in(&self, mount: &Path) -> Vec<PathBuf> {
        self.names
            .iter()
            .map(|n| mount.join(PARENT).join(n))
            .collect()
    }

    /// Hierarchies left out, with the reason.
    pub fn skipped(&self) -> &[(PathBuf, String)] {
        &self.skipped
    }

    /// Moves process `pid` into the [`RUNNER`] cgroup, so a later run can
    /// stop it if this one dies without cleaning up.
    pub fn adopt_runner(&self, pid: u32) -> anyhow::Result<()> {
        match &self.runner {
            Some(dir) => write_pid(dir, pid),
            None => Ok(()),
        }
    }

    /// Kills the processes and removes every cgroup; idempotent. Returns
    /// the first error, after trying everything.
    pub fn cleanup(&mut self) -> anyhow::Result<()> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut first_error = None;
        for child in &mut self.children {
            // Already gone is fine; what matters is that it is reaped.
            let _ = child.kill();
            if let Err(e) = child.wait() {
                first_error
                    .get_or_insert(anyhow::Error::new(e).context("waiting for a `sleep` child"));
            }
        }
        self.children.clear();
        if let Err(e) = remove_tree(&self.mounts) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for BenchCgroups {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("upid-bench: warning: cleaning up benchmark cgroups: {e:#}");
        }
    }
}

/// Removes the benchmark cgroups a crashed earlier run left in `mounts`,
/// killing the processes still inside them. Returns how many cgroups were
/// removed.
pub fn remove_leftovers(mounts: &Mounts) -> anyhow::Result<usize> {
    remove_tree(mounts)
}

/// Kills whatever is left in `upid-bench/*` and `upid-bench-run` in every
/// mount, then removes those cgroups. Returns how many were removed.
fn remove_tree(mounts: &Mounts) -> anyhow::Result<usize> {
    let mut removed = 0;
    for mount in mounts.all() {
        let parent = mount.join(PARENT);
        if parent.is_dir() {
            let entries = std::fs::read_dir(&parent)
                .with_context(|| format!("listing {}", parent.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("listing {}", parent.display()))?;
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    empty_and_remove(&entry.path())?;
                    removed += 1;
                }
            }
            empty_and_remove(&parent)?;
            removed += 1;
        }
        let runner = mount.join(RUNNER);
        if runner.is_dir() {
            empty_and_remove(&runner)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Kills the processes in cgroup `dir`, waits until it is empty, removes it.
fn empty_and_remove(dir: &Path) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let pids = read_pids(dir)?;
        if pids.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "{} still holds processes {pids:?} after SIGKILL",
                dir.display()
            );
        }
        kill(&pids)?;
        std::thread::sleep(Duration::from_millis(20));
    }
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // Exiting tasks can keep a cgroup busy for a moment.
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("removing cgroup {}", dir.display())),
        }
    }
}

/// Pids listed in `dir/cgroup.procs` (none if the cgroup is gone).
fn read_pids(dir: &Path) -> anyhow::Result<Vec<u32>> {
    let path = dir.join("cgroup.procs");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .map(|l| {
            l.trim()
                .parse::<u32>()
                .with_context(|| format!("bad pid {l:?} in {}", path.display()))
        })
        .collect()
}

/// Sends SIGKILL to `pids` with kill(1) (no unsafe `kill(2)` binding).
fn kill(pids: &[u32]) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status()
        .context("running kill(1)")?;
    // A non-zero status means some pid was already gone: fine, the caller
    // re-reads cgroup.procs.
    let _ = status;
    Ok(())
}

/// `mkdir`, accepting an existing directory.
fn mkdir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("creating cgroup {} (run as root)", dir.display()))
        }
    }
}

/// Moves process `pid` into cgroup `dir`.
fn write_pid(dir: &Path, pid: u32) -> anyhow::Result<()> {
    let path = dir.join("cgroup.procs");
    std::fs::write(&path, pid.to_string())
        .with_context(|| format!("moving pid {pid} into {}", path.display()))
}

/// `docker-<64 hex>.scope`, the id derived from `index`.
pub fn container_cgroup_name(index: usize) -> String {
    format!("docker-{:064x}.scope", 0xb3_0000_0000u64 + index as u64)
}

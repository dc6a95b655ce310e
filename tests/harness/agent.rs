//! Running `upid-agent run` as a real process against a collector, and
//! reading what its spool says afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use upid_agent::spool::{Spool, SpoolConfig};

use super::process::Proc;

/// A `upid-agent run` command line being put together.
#[derive(Debug, Clone)]
pub struct AgentCmd {
    node_name: String,
    collector_url: String,
    spool_dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// `upid-agent --node-name NODE run --collector URL --spool-dir DIR
/// --interval 1s`.
pub fn agent(node_name: &str, collector_url: &str, spool_dir: &Path) -> AgentCmd {
    AgentCmd {
        node_name: node_name.to_string(),
        collector_url: collector_url.to_string(),
        spool_dir: spool_dir.to_path_buf(),
        args: Vec::new(),
        env: Vec::new(),
    }
}

impl AgentCmd {
    /// Extra arguments of `run` (`--count 5`, `--token-file F`, ...).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// An environment variable for the process (e.g. `UPID_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The full command.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(crate::bin("upid-agent"));
        cmd.args(["--node-name", &self.node_name])
            .arg("run")
            .args(["--collector", &self.collector_url])
            .arg("--spool-dir")
            .arg(&self.spool_dir)
            .args(["--interval", "1s"])
            .args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the agent.
    pub fn start(&self) -> Proc {
        Proc::spawn(
            &format!("upid-agent {}", self.node_name),
            &mut self.command(),
        )
    }
}

/// What an agent's spool says (read after the agent exited: opening the
/// spool repairs what it finds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFacts {
    /// The agent's id.
    pub agent_id: String,
    /// The last seq the agent assigned: it made batches 1..=last_seq.
    pub last_seq: u64,
    /// The highest seq the collector acknowledged.
    pub acked_seq: u64,
    /// Unacknowledged batches waiting in the spool.
    pub pending_batches: u64,
    /// Batches dropped because the spool was full.
    pub dropped_batches: u64,
}

/// Opens the spool in `dir` and reports its state.
pub fn spool_facts(dir: &Path) -> SpoolFacts {
    let (spool, _) = Spool::open(
        dir,
        SpoolConfig {
            fsync: false,
            ..SpoolConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("opening the spool at {}: {e}", dir.display()));
    SpoolFacts {
        agent_id: spool.agent_id().to_string(),
        last_seq: spool.next_seq().saturating_sub(1),
        acked_seq: spool.acked_seq(),
        pending_batches: spool.pending_batches(),
        dropped_batches: spool.dropped_total().batches,
    }
}

/// Empty cgroups created for one test in every v1 hierarchy (or the v2
/// tree) of this host, which an agent samples with `--cgroup-glob`, so its
/// batches carry container samples; removed when dropped. Needs root.
pub struct SampledCgroups {
    /// The cgroups (each removed when dropped).
    pub cgroups: Vec<crate::TestCgroup>,
    /// The `--cgroup-glob` value that matches them.
    pub glob: String,
}

/// Creates `count` empty cgroups named `<prefix>-<pid>-<n>` (root only).
pub fn sampled_cgroups(prefix: &str, count: usize) -> SampledCgroups {
    let root = Path::new("/sys/fs/cgroup");
    let mut mounts: Vec<PathBuf> = ["cpu", "cpuacct", "memory", "pids", "blkio"]
        .iter()
        .map(|c| root.join(c))
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    if mounts.is_empty() {
        // cgroup v2 only.
        mounts.push(root.to_path_buf());
    }
    // Hierarchies mounted together (cpu,cpuacct) are one directory.
    mounts.sort_by_key(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    mounts.dedup_by_key(|p| std::fs::canonicalize(&*p).unwrap_or_else(|_| p.clone()));
    let refs: Vec<&Path> = mounts.iter().map(PathBuf::as_path).collect();
    let base = format!("{prefix}-{}", std::process::id());
    let cgroups = (0..count)
        .map(|n| crate::TestCgroup::create(&format!("{base}-{n}"), &refs))
        .collect();
    SampledCgroups {
        cgroups,
        glob: format!("/{base}-*"),
    }
}

//! Command-line interface of `upid-agent`: argument definitions and the
//! commands they run. `main.rs` only parses and calls [`run`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::cgroup::identity::CgroupGlob;
use crate::cgroup::reader::ReaderOptions;
use crate::host::HostRoot;
use crate::rate;
use crate::render::{self, Format};
use crate::sampler::{Sampler, SamplerConfig};

/// upid node agent: measures what every container on this node really uses.
#[derive(Debug, Parser)]
#[command(name = "upid-agent", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Sampling options shared by every command.
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Options that decide what is sampled and how.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Where the host's filesystem is mounted when the agent runs in a
    /// container (reads `<root>/proc` and `<root>/sys/fs/cgroup`).
    #[arg(long, global = true, env = "UPID_HOST_ROOT", default_value = "/")]
    pub host_root: PathBuf,
    /// Node name to report (Kubernetes: from the downward API).
    #[arg(long, global = true, env = "UPID_NODE_NAME")]
    pub node_name: Option<String>,
    /// Also sample cgroups whose path matches this glob (`*` within a path
    /// segment, `**` across segments); repeatable.
    #[arg(
        long = "cgroup-glob",
        global = true,
        env = "UPID_CGROUP_GLOB",
        value_delimiter = ','
    )]
    pub cgroup_globs: Vec<String>,
    /// Never reset the kernel's memory high-water marks (v1
    /// `memory.max_usage_in_bytes`, v2 `memory.peak`); per-tick peaks then
    /// fall back to sampled usage.
    #[arg(long, global = true, env = "UPID_NO_RESET_PEAKS")]
    pub no_reset_peaks: bool,
}

/// The agent's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print snapshots of the node and every container cgroup, counters as
    /// read (cumulative).
    Sample {
        /// Print one snapshot and exit.
        #[arg(long)]
        once: bool,
        /// Time between snapshots when not `--once`.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Live per-container CPU cores, working set, throttling and OOMs,
    /// computed from consecutive samples.
    Top {
        /// Time between refreshes.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

impl SamplingArgs {
    /// The sampler configuration these flags describe.
    pub fn sampler_config(&self) -> anyhow::Result<SamplerConfig> {
        let globs = self
            .cgroup_globs
            .iter()
            .map(|g| CgroupGlob::new(g).with_context(|| format!("--cgroup-glob {g:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SamplerConfig {
            host_root: HostRoot::new(&self.host_root),
            node_name: self.node_name.clone(),
            globs,
            reader: ReaderOptions {
                reset_peaks: !self.no_reset_peaks,
            },
        })
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.sampling.sampler_config()?;
    let host_root = cli.sampling.host_root.display().to_string();
    let mut sampler = Sampler::new(config).with_context(|| {
        format!("finding the cgroup hierarchies under host root {host_root:?} (is /sys/fs/cgroup mounted? inside a container, mount the host's / at --host-root)")
    })?;
    tracing::info!(layout = ?sampler.hierarchies().layout, node = sampler.node_name(), "sampler ready");
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Sample {
            once,
            interval,
            output,
        } => loop {
            let snapshot = sampler.sample().context("sampling")?;
            let text = match output {
                Format::Json if once => render::snapshot_json(&snapshot)?,
                Format::Json => serde_json::to_string(&snapshot)?,
                Format::Table => render::snapshot_table(&snapshot),
            };
            writeln!(stdout, "{text}")?;
            stdout.flush()?;
            if once {
                return Ok(());
            }
            std::thread::sleep(interval);
        },
        Command::Top {
            interval,
            count,
            output,
        } => {
            if interval.is_zero() {
                bail!("--interval must be greater than zero");
            }
            let live = output == Format::Table && std::io::stdout().is_terminal();
            let mut prev = sampler.sample().context("sampling")?;
            let mut shown = 0u64;
            while count.is_none_or(|c| shown < c) {
                std::thread::sleep(interval);
                let cur = sampler.sample().context("sampling")?;
                let rates = rate::rates(&prev, &cur);
                let text = match output {
                    Format::Json => serde_json::to_string(&rates)?,
                    Format::Table => render::rates_table(&rates),
                };
                if live {
                    // Clear the screen and home the cursor, like top(1).
                    write!(stdout, "\x1b[2J\x1b[H")?;
                }
                writeln!(stdout, "{text}")?;
                stdout.flush()?;
                prev = cur;
                shown += 1;
            }
            Ok(())
        }
    }
}

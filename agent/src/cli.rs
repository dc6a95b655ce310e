//! Command-line interface of `upid-agent`: argument definitions and the
//! commands they run. `main.rs` only parses and calls [`run`].

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::cgroup::identity::CgroupGlob;
use crate::cgroup::reader::ReaderOptions;
use crate::host::HostRoot;
use crate::inventory::InventoryHandle;
use crate::rate;
use crate::render::{self, Format};
use crate::sampler::{Sampler, SamplerConfig};
use crate::ship::{CollectorEndpoint, Drain, ShipStats, ShipperConfig, Tick, ship_then_drain};

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
    /// Sample every tick and ship to the collector; unacknowledged batches
    /// wait in a bounded disk spool and survive restarts.
    Run(Box<RunArgs>),
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

/// Options of `upid-agent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Collector URL (`http://host:port`, or `https://` for TLS).
    #[arg(long, env = "UPID_COLLECTOR")]
    pub collector: String,
    /// File holding this agent's bearer token.
    #[arg(long, env = "UPID_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle that signed the collector's certificate.
    #[arg(long, env = "UPID_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (with --client-key) for collectors that require one.
    #[arg(long, env = "UPID_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// PEM key of --client-cert.
    #[arg(long, env = "UPID_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// Server name to verify when it differs from the URL's host.
    #[arg(long, env = "UPID_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// Time between samples (1 s at the least).
    #[arg(long, env = "UPID_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Directory of the disk spool (unacknowledged batches, agent id).
    #[arg(long, env = "UPID_SPOOL_DIR", default_value = "/var/lib/upid/spool")]
    pub spool_dir: PathBuf,
    /// Spool size limit in MiB; when full, the oldest batches are dropped
    /// and counted.
    #[arg(long, env = "UPID_SPOOL_MAX_MIB", default_value_t = 256)]
    pub spool_max_mib: u64,
    /// Spool size limit in KiB, for small disks (and tests); replaces
    /// --spool-max-mib when given.
    #[arg(long, env = "UPID_SPOOL_MAX_KIB")]
    pub spool_max_kib: Option<u64>,
    /// Batches sent but not yet acknowledged, at most.
    #[arg(long, env = "UPID_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,
    /// Take this many samples, deliver them, and exit: 0 once every spooled
    /// batch is acknowledged, 1 if some are not within --drain-timeout
    /// (they stay in the spool for the next run).
    #[arg(long)]
    pub count: Option<u64>,
    /// How long to keep delivering spooled batches when stopping
    /// [default: 30s after --count, 5s after SIGTERM or SIGINT].
    #[arg(long, env = "UPID_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Where container names, images and workloads come from.
    #[command(flatten)]
    pub inventory: InventoryArgs,
}

/// Options of the inventory (who each container is).
#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Do not ask the Docker Engine for container names, images, state and
    /// events.
    #[arg(long, env = "UPID_NO_DOCKER")]
    pub no_docker: bool,
    /// Docker Engine to ask (`unix:///var/run/docker.sock`, `tcp://host:2375`)
    /// [default: $DOCKER_HOST, else the local socket].
    #[arg(long, env = "UPID_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Watch this node's pods in Kubernetes: `auto` does when running in a
    /// cluster (KUBERNETES_SERVICE_HOST is set), `on` also from a
    /// kubeconfig, `off` never.
    #[arg(long, env = "UPID_KUBERNETES", value_enum, default_value = "auto")]
    pub kubernetes: KubernetesMode,
    /// Time between full inventory snapshots (changes are sent every tick).
    #[arg(long, env = "UPID_INVENTORY_FULL_EVERY", default_value = "10m", value_parser = humantime::parse_duration)]
    pub inventory_full_every: Duration,
    /// Time between full resyncs with the Docker Engine (its event stream
    /// is followed in between).
    #[arg(long, env = "UPID_DOCKER_RESYNC", default_value = "5m", value_parser = humantime::parse_duration)]
    pub docker_resync: Duration,
    /// Kernel log device followed for OOM kills (the runtimes miss kills
    /// of processes killed as they start).
    #[arg(long, env = "UPID_KERNEL_LOG", default_value = crate::inventory::kernel_log::DEFAULT_KMSG_PATH)]
    pub kernel_log: PathBuf,
    /// Do not follow the kernel log: OOM kills come from the runtimes alone.
    #[arg(long, env = "UPID_NO_KERNEL_LOG")]
    pub no_kernel_log: bool,
}

/// When to watch Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KubernetesMode {
    /// In a cluster only.
    Auto,
    /// Always (in-cluster config, else kubeconfig).
    On,
    /// Never.
    Off,
}

impl InventoryArgs {
    /// The inventory configuration these flags describe, for the node
    /// called `node_name`.
    pub fn config(&self, node_name: &str) -> crate::inventory::InventoryConfig {
        use crate::inventory::{docker::DockerConfig, kube::KubeConfig};
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let kube = match self.kubernetes {
            KubernetesMode::On => true,
            KubernetesMode::Auto => in_cluster,
            KubernetesMode::Off => false,
        };
        crate::inventory::InventoryConfig {
            docker: (!self.no_docker).then(|| DockerConfig {
                host: self.docker_host.clone(),
                resync: self.docker_resync,
            }),
            kube: kube.then(|| KubeConfig {
                node_name: node_name.to_string(),
                ..KubeConfig::default()
            }),
            kernel_log: (!self.no_kernel_log).then(|| {
                crate::inventory::kernel_log::KernelLogConfig {
                    path: self.kernel_log.clone(),
                    ..Default::default()
                }
            }),
            full_every: self.inventory_full_every,
        }
    }
}

/// Drain after the last sample of `--count` when --drain-timeout is not given.
pub const DRAIN_AFTER_COUNT: Duration = Duration::from_secs(30);

/// Drain after SIGTERM or SIGINT when --drain-timeout is not given.
pub const DRAIN_AFTER_SIGNAL: Duration = Duration::from_secs(5);

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
    let config_proc_root = config.host_root.proc();
    let host_root = cli.sampling.host_root.display().to_string();
    let mut sampler = Sampler::new(config).with_context(|| {
        format!("finding the cgroup hierarchies under host root {host_root:?} (is /sys/fs/cgroup mounted? inside a container, mount the host's / at --host-root)")
    })?;
    tracing::info!(layout = ?sampler.hierarchies().layout, node = sampler.node_name(), "sampler ready");
    if let Command::Run(args) = cli.command {
        return run_agent(sampler, &config_proc_root, *args);
    }
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Run(_) => Ok(()),
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

/// `upid-agent run`: sample every tick on a blocking thread, ship through the
/// spool; after `--count` samples or on SIGINT/SIGTERM, stop sampling and
/// deliver what is spooled for up to the drain time.
fn run_agent(sampler: Sampler, proc_root: &Path, args: RunArgs) -> anyhow::Result<()> {
    if args.interval < Duration::from_secs(1) {
        bail!("--interval must be at least 1s");
    }
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    if args.count == Some(0) {
        bail!("--count must be at least 1");
    }
    let max_bytes = match args.spool_max_kib {
        Some(kib) => kib.saturating_mul(1024),
        None => args.spool_max_mib.saturating_mul(1024 * 1024),
    };
    let spool_config = crate::spool::SpoolConfig {
        max_bytes,
        ..Default::default()
    };
    let (spool, report) = crate::spool::Spool::open(&args.spool_dir, spool_config)
        .with_context(|| format!("opening the spool at {}", args.spool_dir.display()))?;
    if !report.is_clean() {
        tracing::warn!(
            ?report,
            "the spool was damaged; what could be saved was kept, the rest is counted"
        );
    }
    let config = ShipperConfig {
        endpoint: CollectorEndpoint {
            url: args.collector.clone(),
            token,
            ca_pem: args.ca.clone(),
            client_cert_pem: args.client_cert.clone(),
            client_key_pem: args.client_key.clone(),
            tls_domain: args.tls_domain.clone(),
            max_message_bytes: 64 * 1024 * 1024,
        },
        max_in_flight: args.max_in_flight.max(1),
        backoff_initial: Duration::from_millis(250),
        backoff_max: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(10),
    };
    let drain = Drain {
        after_last_snapshot: args.drain_timeout.unwrap_or(DRAIN_AFTER_COUNT),
        after_shutdown: args.drain_timeout.unwrap_or(DRAIN_AFTER_SIGNAL),
    };
    let node_name = sampler.node_name().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (interval, count) = (args.interval, args.count);
    let mut inventory_config = args.inventory.config(&node_name);
    // The kernel log's read position lives beside the spool, so a
    // restarted agent replays the OOM kills it missed.
    // Killed processes' cgroups are looked up in the host's /proc.
    if let Some(kernel_log) = inventory_config.kernel_log.as_mut() {
        kernel_log.state_dir = Some(args.spool_dir.clone());
        kernel_log.proc_root = proc_root.to_path_buf();
    }
    let (stats, signalled) = runtime.block_on(async move {
        let (snap_tx, snap_rx) = tokio::sync::mpsc::channel(4);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (inventory, _sources) = InventoryHandle::start(inventory_config, stop_rx.clone());
        let sampling = tokio::spawn(sample_every(
            sampler,
            inventory,
            interval,
            count,
            snap_tx,
            stop_rx.clone(),
        ));
        let mut shipping = tokio::spawn(ship_then_drain(
            spool, config, node_name, snap_rx, stop_rx, drain,
        ));
        // With --count the shipper ends by itself once the last sample is
        // delivered (or the drain time is up); a signal ends it sooner.
        let (shipped, signalled) = tokio::select! {
            _ = wait_for_stop_signal() => {
                tracing::info!("stopping: delivering what is spooled, briefly");
                let _ = stop_tx.send(true);
                (shipping.await, true)
            }
            shipped = &mut shipping => (shipped, false),
        };
        let _ = stop_tx.send(true);
        let _ = sampling.await;
        let stats = shipped.context("shipper task")??;
        Ok::<_, anyhow::Error>((stats, signalled))
    })?;
    report_stop(&stats, &args, signalled, drain)
}

/// Logs how the run ended; with `--count`, undelivered batches are an error.
fn report_stop(
    stats: &ShipStats,
    args: &RunArgs,
    signalled: bool,
    drain: Drain,
) -> anyhow::Result<()> {
    let spool = args.spool_dir.display();
    if stats.pending_batches == 0 {
        tracing::info!(?stats, "stopped: every spooled batch is acknowledged");
        return Ok(());
    }
    if signalled || args.count.is_none() {
        tracing::warn!(
            ?stats,
            "stopped with {} unacknowledged batches; they stay in the spool at {spool} and are sent by the next run",
            stats.pending_batches
        );
        return Ok(());
    }
    bail!(
        "{} batches were not acknowledged by the collector at {} within {} (--drain-timeout); they stay in the spool at {spool} and are sent by the next run",
        stats.pending_batches,
        args.collector,
        humantime::format_duration(drain.after_last_snapshot),
    )
}

/// Takes a sample every `interval` (`count` of them at most) and hands it
/// to the shipper with the inventory's changes; returns after the last one
/// or when `stop` changes.
async fn sample_every(
    sampler: Sampler,
    inventory: InventoryHandle,
    interval: Duration,
    count: Option<u64>,
    tx: tokio::sync::mpsc::Sender<Tick>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sampler = Some(sampler);
    let mut taken = 0u64;
    while count.is_none_or(|c| taken < c) {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        taken += 1;
        let Some(s) = sampler.take() else { return };
        let (s, result) = match tokio::task::spawn_blocking(move || {
            let mut s = s;
            let r = s.sample();
            (s, r)
        })
        .await
        {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(error = %e, "sampling thread failed");
                return;
            }
        };
        sampler = Some(s);
        match result {
            Ok(snapshot) => {
                let tick = Tick {
                    snapshot,
                    inventory: inventory.take(),
                };
                if tx.send(tick).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(error = %e, "sampling failed this tick"),
        }
    }
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

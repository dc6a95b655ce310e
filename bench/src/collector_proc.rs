//! The measured `upid-collector serve` process: started on loopback with a
//! temporary store, its ready line parsed, `/metrics` scraped, CPU and
//! memory read from `/proc`, stopped with SIGTERM (it checkpoints then).
//! Dropping the guard kills and reaps it, however the benchmark ends.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::exporter::http_get;
use crate::interrupt::Interrupt;
use crate::procstat::{self, ProcessCpu, ProcessMemory};

/// How long the collector may take to open its store and print the ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How much of the collector's stderr to show when it dies.
const LOG_TAIL_BYTES: u64 = 4096;

/// Per-agent batches per second the collector is told to allow: far above
/// anything the benchmark sends, so its rate limit never throttles.
pub const NO_RATE_LIMIT: u32 = 1_000_000;

/// The collector binary next to this benchmark's own.
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this benchmark's own path")?;
    let dir = exe
        .parent()
        .context("this benchmark's path has no parent directory")?;
    Ok(dir.join("upid-collector"))
}

/// Fails with a build hint when `binary` is missing.
pub fn check_binary(binary: &Path) -> anyhow::Result<()> {
    if !binary.is_file() {
        bail!(
            "no upid-collector binary at {}; build it first: \
             `cargo build --profile perf -p upid-collector -p upid-bench` (see bench/RESULTS.md; or pass --collector-bin)",
            binary.display()
        );
    }
    Ok(())
}

/// What `upid-collector serve` printed when ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// gRPC address.
    pub grpc: SocketAddr,
    /// `/metrics` address.
    pub metrics: SocketAddr,
    /// The store file.
    pub store: PathBuf,
}

/// Parses `upid-collector: ready grpc=HOST:PORT metrics=HOST:PORT store=PATH`.
pub fn parse_ready(line: &str) -> anyhow::Result<Ready> {
    let rest = line
        .trim_end()
        .strip_prefix("upid-collector: ready ")
        .with_context(|| format!("not a ready line: {line:?}"))?;
    let field = |name: &str| {
        rest.split_ascii_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .with_context(|| format!("no {name} in the ready line {line:?}"))
    };
    let addr = |name: &str| -> anyhow::Result<SocketAddr> {
        let text = field(name)?;
        text.parse()
            .with_context(|| format!("bad address {text:?} after {name} in {line:?}"))
    };
    let store = rest
        .split_once(" store=")
        .map(|(_, p)| PathBuf::from(p))
        .with_context(|| format!("no store= in the ready line {line:?}"))?;
    Ok(Ready {
        grpc: addr("grpc=")?,
        metrics: addr("metrics=")?,
        store,
    })
}

/// The counters of the collector's `/metrics` the benchmark reads.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scrape {
    /// `upid_collector_container_samples_stored_total`.
    pub container_samples_stored: f64,
    /// `upid_collector_batches_stored_total`.
    pub batches_stored: f64,
    /// `upid_collector_batches_duplicate_total`.
    pub batches_duplicate: f64,
    /// `upid_collector_batches_rejected_total`.
    pub batches_rejected: f64,
    /// `upid_collector_rate_limited_total`.
    pub rate_limited: f64,
    /// `upid_collector_rollup_duration_seconds_count`: periodic rollups run.
    pub rollups: f64,
    /// `upid_collector_rollup_duration_seconds_sum`: their seconds.
    pub rollup_seconds: f64,
    /// `upid_collector_checkpoint_duration_seconds_count`: store checkpoints.
    pub checkpoints: f64,
    /// `upid_collector_checkpoint_duration_seconds_sum`: their seconds.
    pub checkpoint_seconds: f64,
}

/// Reads the counters above from a Prometheus text exposition (absent ones
/// are 0).
pub fn parse_scrape(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let slot = match name.trim() {
            "upid_collector_container_samples_stored_total" => &mut s.container_samples_stored,
            "upid_collector_batches_stored_total" => &mut s.batches_stored,
            "upid_collector_batches_duplicate_total" => &mut s.batches_duplicate,
            "upid_collector_batches_rejected_total" => &mut s.batches_rejected,
            "upid_collector_rate_limited_total" => &mut s.rate_limited,
            "upid_collector_rollup_duration_seconds_count" => &mut s.rollups,
            "upid_collector_rollup_duration_seconds_sum" => &mut s.rollup_seconds,
            "upid_collector_checkpoint_duration_seconds_count" => &mut s.checkpoints,
            "upid_collector_checkpoint_duration_seconds_sum" => &mut s.checkpoint_seconds,
            _ => continue,
        };
        *slot = value;
    }
    s
}

/// How the collector stopped.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// From SIGTERM to exit (finishing commits and the final checkpoint).
    pub shutdown: Duration,
}

/// A running `upid-collector serve`, killed on drop.
#[derive(Debug)]
pub struct CollectorProcess {
    child: Child,
    ready: Ready,
    log: std::fs::File,
}

impl CollectorProcess {
    /// Starts `binary serve` on `127.0.0.1:0` with its store at `store`
    /// and the rate limit out of the way, and waits for its ready line.
    /// Its stderr is appended to `log_path`, or to a temporary file.
    pub fn start(
        binary: &Path,
        store: &Path,
        log_path: Option<&Path>,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Self> {
        let log = match log_path {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(path)
                .with_context(|| format!("opening the collector log {}", path.display()))?,
            None => tempfile::tempfile().context("creating a temporary log file")?,
        };
        let stderr = log.try_clone().context("duplicating the log file")?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--store")
            .arg(store)
            .args([
                "--agent-rate-limit",
                &NO_RATE_LIMIT.to_string(),
                "--agent-rate-burst",
                &NO_RATE_LIMIT.to_string(),
            ])
            .env_remove("UPID_TOKENS_FILE")
            .env_remove("UPID_TLS_CERT")
            .env_remove("UPID_TLS_KEY")
            .env_remove("UPID_CLIENT_CA")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Own process group: a terminal's Ctrl-C reaches only the
            // benchmark, which then stops this one itself.
            .process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (lines_tx, lines_rx) = mpsc::channel();
        // Reads every stdout line for the process's whole life, so a full
        // pipe never blocks it; the first line is the one that matters.
        std::thread::Builder::new()
            .name("collector-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = lines_tx.send(line);
                }
            })
            .context("starting the stdout reader")?;
        let mut process = CollectorProcess {
            child,
            ready: Ready {
                grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
                metrics: SocketAddr::from(([127, 0, 0, 1], 0)),
                store: store.to_path_buf(),
            },
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            interrupt.check()?;
            process.check_alive()?;
            match lines_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with("upid-collector: ready ") => {
                    process.ready = parse_ready(&line)?;
                    return Ok(process);
                }
                Ok(_other) => {}
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "upid-collector printed no ready line within {}; its stderr ends with:\n{}",
                        humantime::format_duration(READY_TIMEOUT),
                        process.log_tail()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed: it is exiting; check_alive says why.
                    std::thread::sleep(Duration::from_millis(100));
                    process.check_alive()?;
                    bail!("upid-collector closed its stdout before the ready line");
                }
            }
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where it listens and stores.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// An error, with the end of its log, if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self
            .child
            .try_wait()
            .context("checking on upid-collector")?
        {
            bail!(
                "upid-collector exited early ({status}); its stderr ends with:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Its CPU time so far.
    pub fn cpu(&self) -> anyhow::Result<ProcessCpu> {
        procstat::process_cpu(self.pid())
    }

    /// Its resident memory now and at most.
    pub fn memory(&self) -> anyhow::Result<ProcessMemory> {
        procstat::process_memory(self.pid())
    }

    /// Scrapes its `/metrics`.
    pub fn scrape(&self) -> anyhow::Result<Scrape> {
        match http_get(self.ready.metrics, "/metrics")? {
            (200, body) => Ok(parse_scrape(&String::from_utf8_lossy(&body))),
            (status, _) => bail!(
                "GET http://{}/metrics returned status {status}",
                self.ready.metrics
            ),
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit (it finishes
    /// its commits and checkpoints first).
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<Stopped> {
        let started = Instant::now();
        // The `kill` program: this crate forbids the unsafe libc call.
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed ({status})", self.pid());
        }
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("waiting for upid-collector")?
            {
                if !status.success() {
                    bail!(
                        "upid-collector exited with {status} after SIGTERM; its stderr ends with:\n{}",
                        self.log_tail()
                    );
                }
                return Ok(Stopped {
                    shutdown: started.elapsed(),
                });
            }
            if started.elapsed() > timeout {
                bail!(
                    "upid-collector did not exit within {} of SIGTERM",
                    humantime::format_duration(timeout)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last few KiB of its stderr (best effort).
    pub fn log_tail(&mut self) -> String {
        let mut text = String::new();
        let len = self.log.seek(SeekFrom::End(0)).unwrap_or(0);
        if self
            .log
            .seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
            .is_ok()
        {
            let mut bytes = Vec::new();
            if self.log.read_to_end(&mut bytes).is_ok() {
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        if text.trim().is_empty() {
            "(nothing)".to_owned()
        } else {
            text
        }
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        // Already exited is fine; what matters is that it is reaped.
        let _ = self.child.kill();
        if let Err(e) = self.child.wait() {
            eprintln!("upid-bench: warning: reaping upid-collector: {e}");
        }
    }
}

/// Bytes of a file plus its DuckDB `.wal` beside it (0 for what is absent).
pub fn store_file_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    size(path) + size(Path::new(&wal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_line() -> anyhow::Result<()> {
        let ready = parse_ready(
            "upid-collector: ready grpc=127.0.0.1:40123 metrics=127.0.0.1:40124 store=/tmp/a b/upid.duckdb\n",
        )?;
        assert_eq!(ready.grpc, "127.0.0.1:40123".parse()?);
        assert_eq!(ready.metrics, "127.0.0.1:40124".parse()?);
        assert_eq!(ready.store, PathBuf::from("/tmp/a b/upid.duckdb"));
        assert!(parse_ready("upid-collector: ready grpc=127.0.0.1:1 metrics=off store=x").is_err());
        assert!(parse_ready("hello").is_err());
        Ok(())
    }

    #[test]
    fn reads_the_counters_it_needs() {
        let text = "# HELP upid_collector_container_samples_stored_total x\n\
                    # TYPE upid_collector_container_samples_stored_total counter\n\
                    upid_collector_container_samples_stored_total 12345\n\
                    upid_collector_batches_stored_total 250\n\
                    upid_collector_ack_latency_seconds_bucket{le=\"0.1\"} 3\n";
        let s = parse_scrape(text);
        assert_eq!(s.container_samples_stored, 12345.0);
        assert_eq!(s.batches_stored, 250.0);
        assert_eq!(s.rate_limited, 0.0);
    }
}

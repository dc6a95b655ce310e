//! The Prometheus TSDB comparison: the same series and values the
//! collector stored, written as OpenMetrics text and turned into TSDB
//! blocks by `promtool tsdb create-blocks-from openmetrics` (Debian's
//! `prometheus` package), whose bytes on disk are counted.
//!
//! One series per container and [`METRICS`] entry, labelled with the node
//! and the 64-hex-digit container id; one sample per tick, with the
//! container sample's timestamp (Prometheus keeps milliseconds).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::collector_sim::{self, METRICS, MetricKind, SimContainer};
use crate::interrupt::Interrupt;

/// What the comparison measured.
#[derive(Debug, Clone)]
pub struct PromReport {
    /// `promtool --version`, first line.
    pub promtool_version: String,
    /// Series written.
    pub series: u64,
    /// Values written (one per series per tick).
    pub values: u64,
    /// Size of the OpenMetrics text.
    pub text_bytes: u64,
    /// Bytes of the TSDB blocks (every file under the output directory).
    pub block_bytes: u64,
    /// Blocks created.
    pub blocks: usize,
    /// How long `promtool` took.
    pub promtool_wall: Duration,
}

impl PromReport {
    /// Block bytes per stored value.
    pub fn bytes_per_value(&self) -> f64 {
        self.block_bytes as f64 / self.values.max(1) as f64
    }
}

/// Finds `promtool` (`name` as given if it has a slash, else on `PATH`).
pub fn find_promtool(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Writes `agents × containers` simulated containers' first `ticks` ticks
/// as OpenMetrics text into `dir`, runs promtool on it and measures the
/// blocks. The text is deleted afterwards (it is large).
pub fn compare(
    promtool: &Path,
    dir: &Path,
    agents: usize,
    containers: usize,
    ticks: u64,
    interrupt: &Interrupt,
) -> anyhow::Result<PromReport> {
    let version = Command::new(promtool)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", promtool.display()))?;
    let promtool_version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("unknown")
        .to_owned();

    let text = dir.join("series.om.txt");
    let (series, values) = write_openmetrics(&text, agents, containers, ticks, interrupt)?;
    let text_bytes = std::fs::metadata(&text).map_or(0, |m| m.len());
    let blocks_dir = dir.join("blocks");
    std::fs::create_dir_all(&blocks_dir)
        .with_context(|| format!("creating {}", blocks_dir.display()))?;
    eprintln!(
        "promtool tsdb create-blocks-from openmetrics ({} of text, {values} values)",
        crate::report::human(text_bytes as f64, "bytes")
    );
    let started = Instant::now();
    let output = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&text)
        .arg(&blocks_dir)
        .output()
        .with_context(|| format!("running {}", promtool.display()))?;
    let promtool_wall = started.elapsed();
    // Free the disk space before anything can fail.
    let _ = std::fs::remove_file(&text);
    if !output.status.success() {
        bail!(
            "promtool tsdb create-blocks-from openmetrics failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let blocks = std::fs::read_dir(&blocks_dir)
        .with_context(|| format!("listing {}", blocks_dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("meta.json").is_file())
        .count();
    if blocks == 0 {
        bail!("promtool created no block in {}", blocks_dir.display());
    }
    let block_bytes = tree_bytes(&blocks_dir)?;
    Ok(PromReport {
        promtool_version,
        series,
        values,
        text_bytes,
        block_bytes,
        blocks,
        promtool_wall,
    })
}

/// Writes the OpenMetrics text: metric family by metric family (families
/// must not interleave), each series' samples in time order. Returns
/// `(series, values)`.
fn write_openmetrics(
    path: &Path,
    agents: usize,
    containers: usize,
    ticks: u64,
    interrupt: &Interrupt,
) -> anyhow::Result<(u64, u64)> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let write_err = |e| anyhow::Error::new(e).context(format!("writing {}", path.display()));
    let mut values = 0u64;
    let ids: Vec<Vec<String>> = (0..agents)
        .map(|a| {
            (0..containers)
                .map(|c| collector_sim::container_id(a, c))
                .collect()
        })
        .collect();
    for (index, metric) in METRICS.iter().enumerate() {
        interrupt.check()?;
        let (kind, suffix) = match metric.kind {
            MetricKind::Counter => ("counter", "_total"),
            MetricKind::Gauge => ("gauge", ""),
        };
        writeln!(out, "# TYPE {} {kind}", metric.name).map_err(write_err)?;
        for (a, agent_ids) in ids.iter().enumerate() {
            let node = collector_sim::node_name(a);
            for (c, id) in agent_ids.iter().enumerate() {
                let mut sim = SimContainer::new(a, c);
                for seq in 1..=ticks {
                    let sample = sim.next(collector_sim::tick_unix_ns(a, seq));
                    let ms = sample.timestamp_unix_ns / 1_000_000;
                    writeln!(
                        out,
                        "{}{suffix}{{node=\"{node}\",container_id=\"{id}\"}} {} {}.{:03}",
                        metric.name,
                        (metric.get)(&sample),
                        ms / 1000,
                        ms % 1000
                    )
                    .map_err(write_err)?;
                    values += 1;
                }
            }
        }
        if index == 0 {
            eprintln!(
                "writing OpenMetrics text: 1 of {} families done",
                METRICS.len()
            );
        }
    }
    writeln!(out, "# EOF").map_err(write_err)?;
    out.flush().map_err(write_err)?;
    let series = (agents * containers * METRICS.len()) as u64;
    Ok((series, values))
}

/// Sum of the lengths of every file under `dir`.
pub fn tree_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            total += tree_bytes(&entry.path())?;
        } else {
            total += entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?
                .len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_text_has_every_value_once_in_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.txt");
        let (series, values) = write_openmetrics(&path, 2, 3, 4, &Interrupt::default())?;
        assert_eq!(series, 2 * 3 * METRICS.len() as u64);
        assert_eq!(values, series * 4);
        let text = std::fs::read_to_string(&path)?;
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len() as u64, values);
        assert!(text.ends_with("# EOF\n"));
        assert!(
            samples[0]
                .starts_with("upid_cpu_usage_ns_total{node=\"bench-node-0000\",container_id=\"")
        );
        // The first series' samples are in time order.
        let ts: Vec<f64> = samples[..4]
            .iter()
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0.0)
            })
            .collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
        Ok(())
    }

    #[test]
    fn counts_bytes_of_a_tree() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("a"))?;
        std::fs::write(dir.path().join("a/x"), [0u8; 10])?;
        std::fs::write(dir.path().join("y"), [0u8; 5])?;
        assert_eq!(tree_bytes(dir.path())?, 15);
        Ok(())
    }
}

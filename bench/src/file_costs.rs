//! What one read of each cgroup control file costs, to show which reads
//! dominate a tick (`upid-bench agent --file-costs`).
//!
//! For every readable regular file in the first benchmark cgroup of each
//! hierarchy, the same file is opened in every benchmark cgroup and read
//! with `pread` at offset 0, round after round, the way the agent re-reads
//! kept-open files; the CPU per read (kernel time included) is the median
//! over the rounds. The list is not limited to the files the sampler reads:
//! compare it with `strace -c -f -p <agent pid>` to see which ones it uses.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::interrupt::Interrupt;
use crate::procstat::ThreadCpuClock;
use crate::stats::Summary;

/// Rounds of reads per file.
const ROUNDS: usize = 7;

/// The cost of reading one control file.
#[derive(Debug, Clone)]
pub struct FileCost {
    /// `<hierarchy mount>/upid-bench/docker-*/<file name>`.
    pub file: PathBuf,
    /// Bytes one read returned.
    pub bytes: usize,
    /// CPU per read, median over rounds (ns).
    pub cpu_per_read_ns: f64,
}

impl FileCost {
    /// As a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file.display().to_string(),
            "bytes": self.bytes,
            "cpu_per_read_ns": self.cpu_per_read_ns.round(),
        })
    }
}

/// Measures every readable file of the cgroups `dirs` (the same cgroup
/// names in one hierarchy, `mount/upid-bench/docker-<id>.scope`); most costly first.
pub fn measure(
    mount: &Path,
    dirs: &[PathBuf],
    interrupt: &Interrupt,
) -> anyhow::Result<Vec<FileCost>> {
    let Some(first) = dirs.first() else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = std::fs::read_dir(first)
        .with_context(|| format!("listing {}", first.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut clock = ThreadCpuClock::for_current_thread()?;
    let mut buf = vec![0u8; 1 << 16];
    let mut costs = Vec::new();
    for name in names {
        interrupt.check()?;
        // Write-only and unreadable files fail to open or to read: skip.
        let Ok(files) = dirs
            .iter()
            .map(|d| File::open(d.join(&name)))
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        let Ok(bytes) = files[0].read_at(&mut buf, 0) else {
            continue;
        };
        let mut per_read = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let before = clock.now_ns()?;
            for file in &files {
                // An error here would only make the file look cheap; the
                // first read above already proved it readable.
                let _ = file.read_at(&mut buf, 0);
            }
            let cpu = clock.now_ns()?.saturating_sub(before);
            per_read.push(cpu as f64 / files.len() as f64);
        }
        costs.push(FileCost {
            file: mount
                .join(crate::cgroups::PARENT)
                .join("docker-*")
                .join(&name),
            bytes,
            cpu_per_read_ns: Summary::of(&per_read).median,
        });
    }
    costs.sort_by(|a, b| b.cpu_per_read_ns.total_cmp(&a.cpu_per_read_ns));
    Ok(costs)
}

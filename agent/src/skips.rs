//! Counted, logged skips: a malformed kernel file never panics and never
//! disappears silently. Each skip is counted; the first skip of each file is
//! logged at `warn`, repeats at `debug`, so a broken file cannot flood logs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Counts malformed-file skips and vanished cgroups during sampling.
#[derive(Debug, Default)]
pub struct Skips {
    malformed: u64,
    vanished: u64,
    logged: HashSet<PathBuf>,
}

impl Skips {
    /// Records that `path` could not be parsed; `what` says why.
    pub fn malformed(&mut self, path: &Path, what: &str) {
        self.malformed += 1;
        if self.logged.len() < 10_000 && self.logged.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), reason = what, "skipping malformed cgroup/proc file");
        } else {
            tracing::debug!(path = %path.display(), reason = what, "skipping malformed file again");
        }
    }

    /// Records that a cgroup disappeared while it was being read.
    pub fn vanished(&mut self, cgroup_path: &str) {
        self.vanished += 1;
        tracing::debug!(
            cgroup = cgroup_path,
            "cgroup vanished mid-read; dropped from this tick"
        );
    }

    /// Malformed files counted since the last [`Skips::take`].
    pub fn malformed_count(&self) -> u64 {
        self.malformed
    }

    /// Vanished cgroups counted since the last [`Skips::take`].
    pub fn vanished_count(&self) -> u64 {
        self.vanished
    }

    /// Returns `(malformed, vanished)` and resets both counts (the per-file
    /// log memory is kept).
    pub fn take(&mut self) -> (u64, u64) {
        let out = (self.malformed, self.vanished);
        self.malformed = 0;
        self.vanished = 0;
        out
    }
}

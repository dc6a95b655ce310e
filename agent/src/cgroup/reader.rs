//! Reading one cgroup's counters into [`CgroupStats`], whatever the host's
//! layout: [`CgroupReader`] picks the v2 reader on unified hosts and the v1
//! reader elsewhere (with PSI from the unified mount on hybrid hosts).
//!
//! A reader is built once per cgroup and kept across ticks: it keeps the
//! cgroup's files open and re-reads them with `pread` at offset 0 into one
//! caller-owned buffer, and remembers which files this kernel lacks.
//!
//! ```no_run
//! # use upid_agent::cgroup::{Hierarchies, reader::{CgroupReader, ReaderOptions}};
//! # use upid_agent::skips::Skips;
//! # fn demo(h: &Hierarchies) {
//! let mut reader = CgroupReader::new(h, "/docker/0123abcd", &ReaderOptions::default());
//! let (mut buf, mut skips) = (Vec::new(), Skips::default());
//! match reader.read(&mut buf, &mut skips) {
//!     Ok(stats) => println!("{:?}", stats.memory.map(|m| m.working_set_bytes)),
//!     Err(e) => println!("{e}"), // drop the reader
//! }
//! # }
//! ```

use upid::model::{CgroupLayout, CgroupStats};

use super::Hierarchies;
use super::io_groups::IoHint;
use super::v1::V1Reader;
use super::v2::V2Reader;
use crate::skips::Skips;

/// How a [`CgroupReader`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Reset the kernel's peak-usage counter after each read, so each tick
    /// reports the true peak since the previous one
    /// ([`upid::model::PeakSource::KernelReset`]). On v2 (kernel ≥ 6.12) the
    /// reset is private to the reader's descriptor; on v1 it resets
    /// `memory.max_usage_in_bytes` for every reader of the host (cAdvisor
    /// included). When false, or where the kernel refuses, the peak is the
    /// usage read ([`upid::model::PeakSource::Sampled`]).
    pub reset_peaks: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions { reset_peaks: true }
    }
}

/// Why a cgroup could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The cgroup's directory disappeared (the container exited). The caller
    /// drops the reader and counts it with [`Skips::vanished`].
    #[error("cgroup vanished while being read")]
    Vanished,
}

#[derive(Debug)]
enum Inner {
    V1(Box<V1Reader>),
    V2(Box<V2Reader>),
    /// The layout has no hierarchy to read from (v2 without a unified
    /// mount).
    Nothing,
}

/// Reads one cgroup's counters, tick after tick, on v1, v2 and hybrid
/// hosts.
#[derive(Debug)]
pub struct CgroupReader {
    inner: Inner,
}

impl CgroupReader {
    /// A reader for `cgroup_path` (relative to the hierarchy roots, starting
    /// with `/`, e.g. `/docker/<64hex>`). Opens nothing yet: files are opened
    /// on the first [`CgroupReader::read`].
    pub fn new(h: &Hierarchies, cgroup_path: &str, opts: &ReaderOptions) -> Self {
        let inner = match (h.layout, h.unified.as_deref()) {
            (CgroupLayout::V2, Some(unified)) => Inner::V2(Box::new(V2Reader::new(
                Hierarchies::join(unified, cgroup_path),
                opts.reset_peaks,
            ))),
            (CgroupLayout::V2, None) => Inner::Nothing,
            (CgroupLayout::V1, _) => {
                // A v1 layout has no unified mount to take PSI from.
                let v1_only = Hierarchies {
                    unified: None,
                    ..h.clone()
                };
                Inner::V1(Box::new(V1Reader::new(
                    &v1_only,
                    cgroup_path,
                    opts.reset_peaks,
                )))
            }
            (CgroupLayout::Hybrid, _) => {
                Inner::V1(Box::new(V1Reader::new(h, cgroup_path, opts.reset_peaks)))
            }
        };
        CgroupReader { inner }
    }

    /// Reads everything. A malformed (or unreadable) file leaves its part
    /// (`cpu`, `memory`, `io`, `pids`, one PSI resource) `None` and is
    /// counted with [`Skips::malformed`]; a file the kernel lacks leaves its
    /// field `None` (or the part, for a part's main file). The cgroup
    /// directory gone → `Err(ReadError::Vanished)`.
    ///
    /// `buf` is scratch space reused across files and calls.
    pub fn read(&mut self, buf: &mut Vec<u8>, skips: &mut Skips) -> Result<CgroupStats, ReadError> {
        self.read_hinted(buf, skips, IoHint::Unknown)
    }

    /// [`CgroupReader::read`] with what the cgroup's parent said about its
    /// children's block IO this tick ([`super::io_groups`]): with
    /// [`IoHint::Quiet`] the block IO files are not read.
    pub fn read_hinted(
        &mut self,
        buf: &mut Vec<u8>,
        skips: &mut Skips,
        io_hint: IoHint,
    ) -> Result<CgroupStats, ReadError> {
        match &mut self.inner {
            Inner::V1(r) => r.read(buf, skips, io_hint),
            Inner::V2(r) => r.read(buf, skips, io_hint),
            Inner::Nothing => Ok(CgroupStats::default()),
        }
    }

    /// First pid listed in this cgroup's `cgroup.procs` (primary hierarchy),
    /// for network-namespace lookup; `None` if empty or unreadable.
    pub fn first_pid(&mut self, buf: &mut Vec<u8>) -> Option<u32> {
        match &mut self.inner {
            Inner::V1(r) => r.first_pid(buf),
            Inner::V2(r) => r.first_pid(buf),
            Inner::Nothing => None,
        }
    }
}

//! Everything about cgroups: where the hierarchies are mounted
//! ([`mountinfo`]), which cgroups are containers ([`discover`], [`identity`]),
//! and reading their counters ([`reader`], with the v1 and v2 specifics in
//! [`v1`] and [`v2`], the file formats in [`parse`], open-file reuse in
//! [`files`], which reads are full in [`cadence`], and sibling cgroups'
//! block IO checked through their parent in [`io_groups`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use upid::model::CgroupLayout;

pub mod cadence;
pub mod discover;
pub mod files;
pub mod identity;
pub mod io_groups;
pub mod mountinfo;
pub mod parse;
pub mod reader;
pub mod v1;
pub mod v2;

/// The cgroup hierarchies of a node, as the agent sees them (host-root
/// adjusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies {
    /// v1, v2 or hybrid.
    pub layout: CgroupLayout,
    /// The cgroup2 mount, if any (`/sys/fs/cgroup` on v2 hosts,
    /// `/sys/fs/cgroup/unified` on hybrid hosts).
    pub unified: Option<PathBuf>,
    /// v1 controller name → mount point. Co-mounted controllers
    /// (`cpu,cpuacct`) appear under each name. Named hierarchies such as
    /// `name=systemd` appear as `name=systemd`.
    pub v1: BTreeMap<String, PathBuf>,
}

impl Hierarchies {
    /// Mount point of a v1 controller (`"memory"`, `"cpuacct"`, ...).
    pub fn v1_controller(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// The hierarchy walked to discover cgroups: the unified hierarchy on
    /// pure v2 hosts, otherwise the first v1 hierarchy present of `memory`,
    /// `cpuacct`, `cpu`, `pids`, `name=systemd`.
    pub fn primary(&self) -> Option<&Path> {
        match self.layout {
            CgroupLayout::V2 => self.unified.as_deref(),
            CgroupLayout::V1 | CgroupLayout::Hybrid => {
                ["memory", "cpuacct", "cpu", "pids", "name=systemd"]
                    .iter()
                    .find_map(|c| self.v1_controller(c))
            }
        }
    }

    /// The directory of `cgroup_path` (relative, starting with `/`) inside
    /// the hierarchy rooted at `mount`.
    pub fn join(mount: &Path, cgroup_path: &str) -> PathBuf {
        mount.join(cgroup_path.trim_start_matches('/'))
    }
}

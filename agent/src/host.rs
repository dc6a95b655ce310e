//! Where the host's `/proc` and `/sys/fs/cgroup` are: `/` on a host, or a
//! mount such as `/host` when the agent runs inside a container.

use std::path::{Path, PathBuf};

/// Root under which the host's filesystem is visible (`--host-root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    root: PathBuf,
}

impl Default for HostRoot {
    fn default() -> Self {
        HostRoot::new("/")
    }
}

impl HostRoot {
    /// A host root at `root` (`/` when running directly on the host).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot { root: root.into() }
    }

    /// The root itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the agent reads the host through a prefix, not `/`.
    pub fn is_prefixed(&self) -> bool {
        self.root != Path::new("/")
    }

    /// The host's `/proc`.
    pub fn proc(&self) -> PathBuf {
        self.root.join("proc")
    }

    /// Maps an absolute host path (as the host's mount table names it) to
    /// where the agent sees it: `/sys/fs/cgroup/memory` becomes
    /// `/host/sys/fs/cgroup/memory` under `--host-root /host`.
    pub fn host_path(&self, absolute: &Path) -> PathBuf {
        match absolute.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(absolute),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_host_paths_under_a_prefix() {
        let h = HostRoot::new("/host");
        assert_eq!(h.proc(), PathBuf::from("/host/proc"));
        assert_eq!(
            h.host_path(Path::new("/sys/fs/cgroup/memory")),
            PathBuf::from("/host/sys/fs/cgroup/memory")
        );
        assert!(h.is_prefixed());
        let d = HostRoot::default();
        assert_eq!(
            d.host_path(Path::new("/sys/fs/cgroup")),
            PathBuf::from("/sys/fs/cgroup")
        );
        assert!(!d.is_prefixed());
    }
}

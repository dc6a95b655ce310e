//! Block IO of sibling cgroups checked with one read of their parent.
//!
//! A cgroup's recursive block IO counters (v1
//! `blkio.throttle.io_service_bytes_recursive` and
//! `blkio.throttle.io_serviced_recursive`, v2 `io.stat`) add up those of
//! every live descendant, and a counter only grows while no descendant is
//! removed. So when a parent's recursive counters read byte for byte as they
//! did at the previous tick, and none of its sampled children vanished in
//! between, none of them moved a byte or an operation, and each child's
//! block IO is carried over without reading it. On most nodes most
//! containers do no block IO in a given tick (they log to pipes and talk
//! over the network), so one read of `/docker` or of a pod's cgroup stands
//! in for one per container.
//!
//! [`IoGroups::check`] runs at the start of a tick, before any container of
//! the tick is read, and reads the parent of every two or more sampled
//! cgroups that share one. That order makes the carry-over exact: a child's
//! last reading was taken after the parent reading it is compared from, so
//! any IO after the child's reading also comes after that parent reading
//! and moves the parent.
//!
//! A removed child's counts leave its parent's sum (seen on Linux 6.18,
//! cgroup v1), so a parent whose sampled child vanished since the previous
//! check counts as moved for that tick. The one case this cannot see: an
//! unsampled child of the same parent is removed in the very tick a sampled
//! sibling does exactly as much IO, in bytes and operations of every kind
//! and device, as the removed one had done. A parent that cannot be read (a
//! kernel without the recursive v1 files, a v2 parent without `io.stat`)
//! gives no hint, and its children follow the per-cgroup rules of
//! [`super::cadence`].

use std::collections::HashMap;
use std::path::PathBuf;

use upid::model::CgroupLayout;

use super::Hierarchies;
use super::files::CgroupFile;

/// What a parent's recursive block IO counters say about its children since
/// the previous tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoHint {
    /// Not known: the cgroup has no sampled sibling, or its parent's
    /// counters cannot be read. The reader decides alone.
    Unknown,
    /// The parent's counters did not move: no child moved a byte or an
    /// operation, and the previous IO reading stands.
    Quiet,
    /// The parent's counters moved (or it was not checked before, or a
    /// sibling vanished): some child may have done IO.
    Moved,
    /// The kernel counts no block IO on this host (cgroup v1 before any
    /// `blkio.throttle.*_device` rule was set since boot, see
    /// docs/metrics.md): block IO is absent, not zero, and not read.
    Uncounted,
}

/// The recursive IO files of one parent cgroup and what they said last.
#[derive(Debug)]
struct Group {
    files: Vec<CgroupFile>,
    /// The files' contents, concatenated, at the previous check.
    last: Option<Vec<u8>>,
    /// Sampled children seen in the current check.
    children: u32,
    /// The check that last saw a child of this parent.
    seen_in: u64,
    /// A child vanished since the previous check.
    lost_child: bool,
    /// The parent's files are missing or unreadable: no hints from it.
    unreadable: bool,
    hint: IoHint,
}

/// The parents of the sampled cgroups, checked once per tick.
#[derive(Debug)]
pub struct IoGroups {
    /// The hierarchy holding the IO counters (v1 `blkio` mount or the
    /// unified mount); `None` when there is none: every hint is
    /// [`IoHint::Unknown`].
    mount: Option<PathBuf>,
    /// The recursive counter files read in each parent.
    names: &'static [&'static str],
    groups: HashMap<String, Group>,
    /// v1: the root's recursive byte counter, whose device lines say
    /// whether the kernel counts block IO at all.
    v1_root: Option<CgroupFile>,
    /// The kernel counted block IO at the previous check (for logging the
    /// change once).
    counting: bool,
    checks: u64,
    /// Scratch space for the concatenated contents of the current check.
    now: Vec<u8>,
}

const V1_FILES: &[&str] = &[
    "blkio.throttle.io_service_bytes_recursive",
    "blkio.throttle.io_serviced_recursive",
];
const V2_FILES: &[&str] = &["io.stat"];

/// The parent of a cgroup path (`/docker/abc` → `/docker`, `/a` → `/`);
/// `None` for the root.
fn parent_of(cgroup_path: &str) -> Option<&str> {
    let trimmed = cgroup_path.trim_end_matches('/');
    let cut = trimmed.rfind('/')?;
    Some(if cut == 0 { "/" } else { &trimmed[..cut] })
}

impl IoGroups {
    /// Parent checks for the block IO hierarchy of `h`.
    pub fn new(h: &Hierarchies) -> Self {
        let (mount, names) = match h.layout {
            CgroupLayout::V2 => (h.unified.clone(), V2_FILES),
            CgroupLayout::V1 | CgroupLayout::Hybrid => (
                h.v1_controller("blkio").map(std::path::Path::to_path_buf),
                V1_FILES,
            ),
        };
        let v1_root = match h.layout {
            CgroupLayout::V2 => None,
            CgroupLayout::V1 | CgroupLayout::Hybrid => mount
                .as_deref()
                .map(|m| CgroupFile::new(m, "blkio.throttle.io_service_bytes_recursive")),
        };
        IoGroups {
            mount,
            names,
            groups: HashMap::new(),
            v1_root,
            counting: true,
            checks: 0,
            now: Vec::new(),
        }
    }

    /// Notes that the sampled cgroup `cgroup_path` vanished, so its parent's
    /// next check says [`IoHint::Moved`].
    pub fn forget(&mut self, cgroup_path: &str) {
        if let Some(group) = parent_of(cgroup_path).and_then(|p| self.groups.get_mut(p)) {
            group.lost_child = true;
        }
    }

    /// Checks the parents of `cgroup_paths` (this tick's sampled cgroups, in
    /// the order they will be read) and returns one hint per path, in the
    /// same order. Reads each parent with two or more of the paths as
    /// children once; `buf` is scratch space.
    pub fn check<'a>(
        &mut self,
        cgroup_paths: impl Iterator<Item = &'a str> + Clone,
        buf: &mut Vec<u8>,
    ) -> Vec<IoHint> {
        let Some(mount) = self.mount.clone() else {
            return cgroup_paths.map(|_| IoHint::Unknown).collect();
        };
        if !self.kernel_counts(buf) {
            return cgroup_paths.map(|_| IoHint::Uncounted).collect();
        }
        self.checks += 1;
        let check = self.checks;
        for path in cgroup_paths.clone() {
            let Some(parent) = parent_of(path) else {
                continue;
            };
            let group = match self.groups.get_mut(parent) {
                Some(group) => group,
                None => {
                    let dir = Hierarchies::join(&mount, parent);
                    let files = self
                        .names
                        .iter()
                        .map(|n| CgroupFile::new(&dir, n))
                        .collect();
                    self.groups.entry(parent.to_owned()).or_insert(Group {
                        files,
                        last: None,
                        children: 0,
                        seen_in: 0,
                        lost_child: false,
                        unreadable: false,
                        hint: IoHint::Unknown,
                    })
                }
            };
            if group.seen_in != check {
                group.seen_in = check;
                group.children = 0;
            }
            group.children += 1;
        }
        self.groups.retain(|_, g| g.seen_in == check);
        for group in self.groups.values_mut() {
            group.hint = if group.children < 2 || group.unreadable {
                group.last = None;
                IoHint::Unknown
            } else {
                read_group(group, buf, &mut self.now)
            };
            group.lost_child = false;
        }
        cgroup_paths
            .map(|path| {
                parent_of(path)
                    .and_then(|p| self.groups.get(p))
                    .map_or(IoHint::Unknown, |g| g.hint)
            })
            .collect()
    }
}

impl IoGroups {
    /// Whether the kernel counts block IO: on v1, whether the root's
    /// recursive byte counter lists any device (it lists none, only
    /// `Total 0`, until a throttle rule was set since boot; with counting on,
    /// every disk with IO since appears). Unreadable or v2: assumed to count.
    fn kernel_counts(&mut self, buf: &mut Vec<u8>) -> bool {
        let Some(root) = &mut self.v1_root else {
            return true;
        };
        let counting = match root.read(buf) {
            Ok(Some(bytes)) => bytes
                .split(|&b| b == b'\n')
                .any(|line| line.first().is_some_and(u8::is_ascii_digit)),
            Ok(None) | Err(_) => true,
        };
        if counting != self.counting {
            self.counting = counting;
            if counting {
                tracing::info!("the kernel now counts cgroup v1 block IO; reporting it again");
            } else {
                tracing::warn!(
                    file = %root.path().display(),
                    "this kernel counts no cgroup v1 block IO until a blkio.throttle.*_device rule \
                     is set for the disk (see docs/metrics.md); block IO is reported as absent"
                );
            }
        }
        counting
    }
}

/// Reads a parent's files into `now` and compares them with the previous
/// check's contents.
fn read_group(group: &mut Group, buf: &mut Vec<u8>, now: &mut Vec<u8>) -> IoHint {
    now.clear();
    for file in &mut group.files {
        match file.read(buf) {
            Ok(Some(bytes)) => now.extend_from_slice(bytes),
            // Absent (an old kernel, a controller not enabled): never
            // retried. Gone or unreadable: no hint this tick.
            Ok(None) => {
                group.unreadable = true;
                group.last = None;
                return IoHint::Unknown;
            }
            Err(_) => {
                group.last = None;
                return IoHint::Unknown;
            }
        }
    }
    let quiet = !group.lost_child && group.last.as_deref() == Some(now.as_slice());
    match &mut group.last {
        Some(_) if quiet => {}
        Some(last) => {
            last.clear();
            last.extend_from_slice(now);
        }
        None => group.last = Some(now.clone()),
    }
    if quiet { IoHint::Quiet } else { IoHint::Moved }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent_of("/docker/abc"), Some("/docker"));
        assert_eq!(
            parent_of("/kubepods/burstable/pod1/c1"),
            Some("/kubepods/burstable/pod1")
        );
        assert_eq!(parent_of("/init.scope"), Some("/"));
        assert_eq!(parent_of("/a/b/"), Some("/a"));
        assert_eq!(parent_of("/"), None);
        assert_eq!(parent_of(""), None);
        assert_eq!(parent_of("relative"), None);
    }
}

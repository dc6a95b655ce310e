//! Which cgroups to sample: a walk of the primary hierarchy that classifies
//! every directory with [`identify`] and the user's [`CgroupGlob`]s.
//!
//! It runs every tick, so it keeps one path buffer for the whole walk, skips
//! control files by their directory-entry type (no `stat`, no name copy),
//! and never descends into a container (its children are the runtime's
//! internals).

use std::collections::HashSet;
use std::fs::ReadDir;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use upid::model::CgroupIdentity;

use super::Hierarchies;
use super::identity::{CgroupGlob, identify};

/// Directories deeper than this below the hierarchy root are not visited.
pub const MAX_DEPTH: usize = 12;

/// Why cgroups could not be discovered at all.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The layout names no hierarchy to walk.
    #[error(
        "no cgroup hierarchy to walk: expected a cgroup2 mount or a v1 memory, cpuacct, cpu, pids or name=systemd hierarchy"
    )]
    NoPrimaryHierarchy,
    /// The hierarchy root could not be listed.
    #[error("listing cgroup hierarchy root {path}: {source}")]
    ReadRoot {
        /// The hierarchy root.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Every container, systemd service and glob-matched cgroup in the primary
/// hierarchy of `h` ([`Hierarchies::primary`]), sorted by path.
///
/// The hierarchy root itself is not a candidate. [`identify`] decides first;
/// a cgroup it does not recognise is kept when any glob matches
/// ([`upid::model::Runtime::Cgroup`]). Containers are not descended into,
/// nor is anything deeper than [`MAX_DEPTH`]. A cgroup that vanishes during
/// the walk is skipped silently; any other error on a subdirectory is logged
/// and that subtree skipped. Only an unreadable root is an error.
pub fn discover(
    h: &Hierarchies,
    globs: &[CgroupGlob],
) -> Result<Vec<CgroupIdentity>, DiscoverError> {
    let root = h.primary().ok_or(DiscoverError::NoPrimaryHierarchy)?;
    let root_iter = std::fs::read_dir(root).map_err(|source| DiscoverError::ReadRoot {
        path: root.to_path_buf(),
        source,
    })?;

    struct Frame {
        entries: ReadDir,
        /// Length of `rel` before this directory's name was appended.
        parent_len: usize,
    }

    let mut found = Vec::new();
    // The directory being listed, absolute and relative to the root; names
    // are pushed when descending and popped when a listing is done.
    let mut abs = root.to_path_buf();
    let mut rel = String::new();
    let mut stack = vec![Frame {
        entries: root_iter,
        parent_len: 0,
    }];

    while let Some(frame) = stack.last_mut() {
        let entry = match frame.entries.next() {
            Some(Ok(entry)) => Some(entry),
            Some(Err(e)) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn_once(&abs, &e);
                }
                None
            }
            None => None,
        };
        let Some(entry) = entry else {
            // Listing done (or broken): back to the parent.
            let parent_len = frame.parent_len;
            stack.pop();
            if !stack.is_empty() {
                abs.pop();
                rel.truncate(parent_len);
            }
            continue;
        };

        // Control files (`cgroup.procs`, `memory.stat`, v1's `tasks`, ...)
        // are skipped by their directory-entry type, before the name is even
        // copied out: no `stat`, no allocation.
        match entry.file_type() {
            Ok(t) if t.is_dir() => {}
            Ok(_) => continue,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn_once(&entry.path(), &e);
                }
                continue;
            }
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::debug!(path = %entry.path().display(), "skipping cgroup with a non-UTF-8 name");
            continue;
        };

        let depth = stack.len(); // root's children are at depth 1
        let parent_len = rel.len();
        rel.push('/');
        rel.push_str(name);

        let identity = identify(&rel).or_else(|| {
            globs
                .iter()
                .any(|g| g.matches(&rel))
                .then(|| CgroupGlob::identity(&rel))
        });
        let is_container = identity.as_ref().is_some_and(|i| i.container_id.is_some());
        if let Some(identity) = identity {
            found.push(identity);
        }

        if is_container || depth >= MAX_DEPTH {
            rel.truncate(parent_len);
            continue;
        }
        abs.push(name);
        match std::fs::read_dir(&abs) {
            Ok(entries) => stack.push(Frame {
                entries,
                parent_len,
            }),
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn_once(&abs, &e);
                }
                abs.pop();
                rel.truncate(parent_len);
            }
        }
    }

    found.sort_unstable_by(|a, b| a.cgroup_path.cmp(&b.cgroup_path));
    Ok(found)
}

/// Logs an I/O error on a cgroup directory at `warn` the first time per
/// path, then at `debug`: discovery runs every tick and a permanently
/// unreadable cgroup must not flood the log.
fn warn_once(path: &Path, error: &io::Error) {
    static WARNED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let first = WARNED
        .get_or_init(Mutex::default)
        .lock()
        .map(|mut seen| seen.len() < 10_000 && seen.insert(path.to_path_buf()))
        .unwrap_or(true);
    if first {
        tracing::warn!(path = %path.display(), %error, "skipping unreadable cgroup directory");
    } else {
        tracing::debug!(path = %path.display(), %error, "skipping unreadable cgroup directory again");
    }
}

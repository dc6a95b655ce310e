//! Where the cgroup hierarchies are mounted, read from the kernel's mount
//! table (`/proc/<pid>/mountinfo`), and whether the node is cgroup v1, v2 or
//! hybrid.
//!
//! [`parse_mountinfo`] is pure (text in, cgroup mounts out); [`detect`] reads
//! the right file for a [`HostRoot`] and turns the mounts into
//! [`Hierarchies`] with [`hierarchies_from_mounts`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use upid::model::CgroupLayout;

use super::Hierarchies;
use crate::host::HostRoot;

/// The agent's own mount table, read when not running under a host prefix
/// and as the fallback when the host's table is unreadable.
const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

/// What a mountinfo line must look like, quoted in errors.
const EXPECTED_LINE: &str = "`<id> <parent> <major:minor> <root> <mount point> <options> [optional fields...] - <fs type> <source> <super options>`";

/// Which cgroup filesystem a mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// `cgroup` (v1): one hierarchy per controller or set of co-mounted
    /// controllers.
    V1,
    /// `cgroup2`: the unified hierarchy.
    V2,
}

/// One `cgroup` or `cgroup2` entry of a mountinfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// The cgroup mounted here, relative to the hierarchy root as the reading
    /// process sees it (`/` for a whole hierarchy; `/docker/<id>` or
    /// `/../..` inside containers). Octal escapes decoded.
    pub root: String,
    /// Where it is mounted, octal escapes (`\040` for a space) decoded.
    pub mount_point: PathBuf,
    /// v1 controllers bound to the hierarchy, from the super options
    /// (`rw,cpu,cpuacct` gives `cpu` and `cpuacct`; named hierarchies such
    /// as `name=systemd` are kept as `name=systemd`). Empty for v2.
    pub controllers: Vec<String>,
}

/// The cgroup mounts of a mountinfo file, and how many lines were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mountinfo {
    /// `cgroup` and `cgroup2` mounts, in file order.
    pub mounts: Vec<CgroupMount>,
    /// Lines that did not have the mountinfo shape (any filesystem type);
    /// skipped, not fatal.
    pub malformed: usize,
}

/// A mountinfo text that cannot be a mount table at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountinfoError {
    /// Not one of the non-blank lines had the mountinfo shape.
    #[error(
        "none of {lines} non-blank lines is a mountinfo entry; expected lines like {EXPECTED_LINE}"
    )]
    NoValidLines {
        /// Non-blank lines seen.
        lines: usize,
    },
}

/// Why the cgroup layout of a node could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The mount table could not be read.
    #[error("reading mount table {path}: {source}")]
    Read {
        /// File read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Neither the host's mount table nor the agent's own could be read.
    #[error(
        "reading the host's mount table {host_path} failed ({host_error}), and so did the fallback {path}: {source}"
    )]
    ReadFallback {
        /// The host's table tried first.
        host_path: PathBuf,
        /// Why it failed.
        host_error: std::io::Error,
        /// The agent's own table tried next.
        path: PathBuf,
        /// Why that failed.
        source: std::io::Error,
    },
    /// The file is not a mount table.
    #[error("parsing mount table {path}: {source}")]
    Parse {
        /// File read.
        path: PathBuf,
        /// What was wrong.
        source: MountinfoError,
    },
    /// The mount table has no cgroup filesystem (under the host root, when
    /// falling back to the agent's own table).
    #[error(
        "no cgroup mount in {path}{}: expected a `cgroup2` mount (e.g. /sys/fs/cgroup) or cgroup v1 controller mounts (e.g. /sys/fs/cgroup/memory); is cgroupfs mounted{}?",
        under.as_ref().map(|u| format!(" under {}", u.display())).unwrap_or_default(),
        under.as_ref().map(|u| format!(" inside {}", u.display())).unwrap_or_default()
    )]
    NoCgroupMounts {
        /// File read.
        path: PathBuf,
        /// The host root mounts had to be under, for the fallback read.
        under: Option<PathBuf>,
    },
}

/// Parses the `cgroup` and `cgroup2` entries of a mountinfo file.
///
/// Lines that do not have the mountinfo shape are skipped; use
/// [`parse_mountinfo_counted`] to learn how many. Fails only when the text
/// has non-blank lines and none of them is a mountinfo entry.
pub fn parse_mountinfo(text: &str) -> Result<Vec<CgroupMount>, MountinfoError> {
    parse_mountinfo_counted(text).map(|m| m.mounts)
}

/// [`parse_mountinfo`], also counting the malformed lines skipped.
pub fn parse_mountinfo_counted(text: &str) -> Result<Mountinfo, MountinfoError> {
    let mut out = Mountinfo::default();
    let mut lines = 0usize;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        lines += 1;
        match parse_line(line) {
            Some(Some(mount)) => out.mounts.push(mount),
            Some(None) => {}
            None => out.malformed += 1,
        }
    }
    if lines > 0 && out.malformed == lines {
        return Err(MountinfoError::NoValidLines { lines });
    }
    Ok(out)
}

/// `None`: malformed. `Some(None)`: a well-formed non-cgroup mount.
fn parse_line(line: &str) -> Option<Option<CgroupMount>> {
    let mut fields = line.split(' ');
    let id = fields.next()?;
    let parent = fields.next()?;
    let dev = fields.next()?;
    let root = fields.next()?;
    let mount_point = fields.next()?;
    let _options = fields.next()?;
    if id.parse::<u64>().is_err() || parent.parse::<u64>().is_err() {
        return None;
    }
    let (major, minor) = dev.split_once(':')?;
    if major.parse::<u32>().is_err() || minor.parse::<u32>().is_err() {
        return None;
    }
    // The root is a path for most filesystems, but e.g. `net:[4026532184]`
    // for the nsfs bind mounts Docker keeps under /run/docker/netns: valid
    // lines, just not cgroup ones (checked below).
    if root.is_empty() || !mount_point.starts_with('/') {
        return None;
    }
    // Optional fields (`shared:1`, `master:2`, ...) until the lone `-`.
    fields.by_ref().find(|f| *f == "-")?;
    let fs_type = fields.next()?;
    let _source = fields.next()?;
    let super_options = fields.next()?;
    if fs_type.is_empty() {
        return None;
    }
    let version = match fs_type {
        "cgroup" => CgroupVersion::V1,
        "cgroup2" => CgroupVersion::V2,
        _ => return Some(None),
    };
    // A cgroup mount's root is always a path inside the hierarchy.
    if !root.starts_with('/') {
        return None;
    }
    let controllers = match version {
        CgroupVersion::V1 => super_options
            .split(',')
            .filter(|o| is_v1_controller(o))
            .map(|o| unescape(o).to_string_lossy().into_owned())
            .collect(),
        CgroupVersion::V2 => Vec::new(),
    };
    Some(Some(CgroupMount {
        version,
        root: unescape(root).to_string_lossy().into_owned(),
        mount_point: PathBuf::from(unescape(mount_point)),
        controllers,
    }))
}

/// True for a v1 super option naming a controller or a named hierarchy. The
/// kernel rejects unknown options, so anything not a known generic or cgroup
/// option is a controller.
fn is_v1_controller(option: &str) -> bool {
    const NOT_CONTROLLERS: &[&str] = &[
        "rw",
        "ro",
        "sync",
        "dirsync",
        "mand",
        "lazytime",
        "none",
        "all",
        "noprefix",
        "clone_children",
        "cpuset_v2_mode",
        "xattr",
        "favordynmods",
        "nofavordynmods",
        "sane_behavior",
    ];
    if let Some(name) = option.strip_prefix("name=") {
        return !name.is_empty();
    }
    !option.is_empty() && !option.contains('=') && !NOT_CONTROLLERS.contains(&option)
}

/// Decodes the kernel's `\ooo` octal escapes (space, tab, newline,
/// backslash); anything else is kept as is.
fn unescape(field: &str) -> OsString {
    if !field.contains('\\') {
        return OsString::from(field);
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// Builds the [`Hierarchies`] of a node from its cgroup mounts (mount points
/// already as the agent sees them). `None` when there is no cgroup mount.
///
/// Mounts of a whole hierarchy (root `/`) are preferred over mounts of a
/// sub-cgroup; among equals the first in file order wins, per controller.
/// Pure v2 when no real v1 controller is mounted (a named v1 hierarchy such
/// as `name=systemd` alone does not count), hybrid when v1 controllers and a
/// cgroup2 mount coexist, v1 otherwise.
pub fn hierarchies_from_mounts(mounts: &[CgroupMount]) -> Option<Hierarchies> {
    let whole = mounts.iter().filter(|m| m.root == "/");
    let partial = mounts.iter().filter(|m| m.root != "/");
    let ordered: Vec<&CgroupMount> = whole.chain(partial).collect();

    let unified = ordered
        .iter()
        .find(|m| m.version == CgroupVersion::V2)
        .map(|m| m.mount_point.clone());
    let mut v1 = BTreeMap::new();
    for mount in ordered.iter().filter(|m| m.version == CgroupVersion::V1) {
        for controller in &mount.controllers {
            v1.entry(controller.clone())
                .or_insert_with(|| mount.mount_point.clone());
        }
    }
    let has_v1_controller = v1.keys().any(|c| !c.starts_with("name="));
    let layout = match (has_v1_controller, unified.is_some()) {
        (true, true) => CgroupLayout::Hybrid,
        (true, false) => CgroupLayout::V1,
        (false, true) => CgroupLayout::V2,
        (false, false) if !v1.is_empty() => CgroupLayout::V1,
        (false, false) => return None,
    };
    Some(Hierarchies {
        layout,
        unified,
        v1,
    })
}

/// Finds the node's cgroup hierarchies.
///
/// On the host (`/`) it reads `/proc/self/mountinfo`. Under a prefix such as
/// `--host-root /host` it reads the host's table, `<host>/proc/1/mountinfo`,
/// and maps every mount point under the prefix; if that file is unreadable
/// it falls back to `/proc/self/mountinfo`, keeping only mounts under the
/// prefix (the host's cgroupfs bind-mounted into the agent's container).
pub fn detect(host: &HostRoot) -> Result<Hierarchies, LayoutError> {
    detect_in(host, Path::new(SELF_MOUNTINFO))
}

/// [`detect`] with the agent's own mount table at `self_mountinfo`.
fn detect_in(host: &HostRoot, self_mountinfo: &Path) -> Result<Hierarchies, LayoutError> {
    if !host.is_prefixed() {
        let mounts = read_mounts(self_mountinfo, |e| LayoutError::Read {
            path: self_mountinfo.to_path_buf(),
            source: e,
        })?;
        return from_mounts(&mounts, self_mountinfo, None);
    }

    let host_table = host.proc().join("1").join("mountinfo");
    let host_error = match std::fs::read_to_string(&host_table) {
        Ok(text) => {
            let mut mounts = parse_logged(&text, &host_table)?;
            for mount in &mut mounts {
                mount.mount_point = host.host_path(&mount.mount_point);
            }
            return from_mounts(&mounts, &host_table, None);
        }
        Err(e) => e,
    };
    tracing::warn!(
        path = %host_table.display(),
        error = %host_error,
        fallback = %self_mountinfo.display(),
        "host mount table unreadable; using the agent's own, mounts under the host root only"
    );
    let mut mounts = read_mounts(self_mountinfo, |e| LayoutError::ReadFallback {
        host_path: host_table.clone(),
        host_error,
        path: self_mountinfo.to_path_buf(),
        source: e,
    })?;
    mounts.retain(|m| m.mount_point.starts_with(host.root()));
    from_mounts(&mounts, self_mountinfo, Some(host.root()))
}

fn read_mounts(
    path: &Path,
    on_error: impl FnOnce(std::io::Error) -> LayoutError,
) -> Result<Vec<CgroupMount>, LayoutError> {
    let text = std::fs::read_to_string(path).map_err(on_error)?;
    parse_logged(&text, path)
}

fn parse_logged(text: &str, path: &Path) -> Result<Vec<CgroupMount>, LayoutError> {
    let parsed = parse_mountinfo_counted(text).map_err(|source| LayoutError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if parsed.malformed > 0 {
        tracing::warn!(
            path = %path.display(),
            malformed = parsed.malformed,
            "skipped malformed mountinfo lines"
        );
    }
    Ok(parsed.mounts)
}

fn from_mounts(
    mounts: &[CgroupMount],
    path: &Path,
    under: Option<&Path>,
) -> Result<Hierarchies, LayoutError> {
    hierarchies_from_mounts(mounts).ok_or_else(|| LayoutError::NoCgroupMounts {
        path: path.to_path_buf(),
        under: under.map(Path::to_path_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTAINER_VIEW: &str =
        include_str!("../../tests/fixtures/mountinfo/container-self-host-bind.mountinfo");

    fn fixture_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write fixture");
        file
    }

    #[test]
    fn nsfs_bind_mounts_are_well_formed_not_malformed() {
        // Docker keeps each container's network namespace bind-mounted like this.
        let text = "89 27 0:4 net:[4026532184] /run/docker/netns/b583a2fd38bd rw - nsfs nsfs rw\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let parsed = parse_mountinfo_counted(text).expect("parses");
        assert_eq!(parsed.malformed, 0);
        assert_eq!(parsed.mounts.len(), 1);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/mnt/my\040disk"), OsString::from("/mnt/my disk"));
        assert_eq!(unescape(r"/a\134b"), OsString::from(r"/a\b"));
        assert_eq!(unescape(r"/a\01"), OsString::from(r"/a\01"));
        assert_eq!(unescape(r"/a\999"), OsString::from(r"/a\999"));
        assert_eq!(unescape(r"\777"), OsString::from(r"\777"));
    }

    #[test]
    fn v1_super_options() {
        let ok = ["cpu", "cpuacct", "net_cls", "name=systemd", "misc"];
        let not = [
            "rw",
            "ro",
            "xattr",
            "release_agent=/x",
            "name=",
            "",
            "noprefix",
        ];
        assert!(ok.iter().all(|o| is_v1_controller(o)));
        assert!(!not.iter().any(|o| is_v1_controller(o)));
    }

    #[test]
    fn falls_back_to_own_table_under_the_host_root() {
        let own = fixture_file(CONTAINER_VIEW);
        let host = HostRoot::new("/host");
        let h = detect_in(&host, own.path()).expect("fallback detects");
        assert_eq!(h.layout, CgroupLayout::V2);
        assert_eq!(h.unified, Some(PathBuf::from("/host/sys/fs/cgroup")));
        assert!(h.v1.is_empty());
    }

    #[test]
    fn fallback_without_host_mounts_names_file_and_root() {
        let own = fixture_file(CONTAINER_VIEW);
        let host = HostRoot::new("/elsewhere");
        let err = detect_in(&host, own.path()).expect_err("nothing under /elsewhere");
        let msg = err.to_string();
        assert!(msg.contains(&own.path().display().to_string()), "{msg}");
        assert!(msg.contains("under /elsewhere"), "{msg}");
        assert!(msg.contains("cgroup2"), "{msg}");
    }

    #[test]
    fn both_tables_unreadable_names_both() {
        let host = HostRoot::new("/nonexistent-upid-host");
        let err = detect_in(&host, Path::new("/nonexistent-upid-self/mountinfo"))
            .expect_err("unreadable");
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent-upid-host/proc/1/mountinfo"),
            "{msg}"
        );
        assert!(msg.contains("/nonexistent-upid-self/mountinfo"), "{msg}");
    }
}

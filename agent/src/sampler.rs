//! One tick: discover the node's container cgroups, read each one, read the
//! node and every container network namespace once, and return a
//! [`Snapshot`].
//!
//! The sampler keeps one [`CgroupReader`] per cgroup across ticks (open
//! files, peak-reset state) and forgets readers of cgroups that are gone.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use upid::model::{ContainerSample, Snapshot};

use crate::cgroup::Hierarchies;
use crate::cgroup::discover::{self, DiscoverError};
use crate::cgroup::identity::CgroupGlob;
use crate::cgroup::io_groups::IoGroups;
use crate::cgroup::mountinfo::{self, LayoutError};
use crate::cgroup::reader::{CgroupReader, ReadError, ReaderOptions};
use crate::host::HostRoot;
use crate::netns::{NetRead, NetnsReader};
use crate::node::{NodeError, NodeReader};
use crate::skips::Skips;

/// How the sampler is set up.
#[derive(Debug, Clone, Default)]
pub struct SamplerConfig {
    /// Where the host's `/proc` and `/sys/fs/cgroup` are.
    pub host_root: HostRoot,
    /// Name to report for this node (hostname when `None`).
    pub node_name: Option<String>,
    /// Extra cgroups to sample, by glob over their paths.
    pub globs: Vec<CgroupGlob>,
    /// Reader behaviour (peak resets).
    pub reader: ReaderOptions,
}

/// Why a tick (or the sampler) failed as a whole. Per-container problems
/// never fail a tick: they are counted skips.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The cgroup layout could not be found.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The cgroup hierarchy could not be walked.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The node's `/proc` could not be read.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Ticks between re-checks of a cgroup's network namespace. A container's
/// namespace is fixed for its life (a restart makes a new cgroup), so it is
/// looked up on first sight and then only re-checked now and then (a
/// systemd service restarted with `PrivateNetwork=` gets a new one), or at
/// once when the process it was found through is gone.
const NETNS_RECHECK_TICKS: u32 = 30;

/// One sampled cgroup's reader and its cached network namespace.
#[derive(Debug)]
struct Tracked {
    reader: CgroupReader,
    /// `(pid, netns inode)` found last, `None` when in the host's namespace
    /// or not known yet.
    netns: Option<(u32, u64)>,
    /// Ticks since the namespace was last looked up (`u32::MAX`: never).
    netns_age: u32,
}

/// Samples one node, tick after tick.
#[derive(Debug)]
pub struct Sampler {
    hierarchies: Hierarchies,
    globs: Vec<CgroupGlob>,
    reader_options: ReaderOptions,
    tracked: HashMap<String, Tracked>,
    /// Parents checked once per tick for their children's block IO.
    io_groups: IoGroups,
    node: NodeReader,
    netns: NetnsReader,
    skips: Skips,
    buf: Vec<u8>,
}

impl Sampler {
    /// Detects the cgroup layout of the host and prepares to sample it.
    pub fn new(config: SamplerConfig) -> Result<Self, SamplerError> {
        let hierarchies = mountinfo::detect(&config.host_root)?;
        Ok(Self::with_hierarchies(config, hierarchies))
    }

    /// Prepares to sample the given hierarchies (tests and benchmarks use
    /// this to point the sampler at a tree of their own).
    pub fn with_hierarchies(config: SamplerConfig, hierarchies: Hierarchies) -> Self {
        let node = NodeReader::new(&config.host_root, config.node_name, hierarchies.layout);
        let netns = NetnsReader::new(config.host_root.proc());
        let io_groups = IoGroups::new(&hierarchies);
        Sampler {
            hierarchies,
            globs: config.globs,
            reader_options: config.reader,
            tracked: HashMap::new(),
            io_groups,
            node,
            netns,
            skips: Skips::default(),
            buf: Vec::with_capacity(8192),
        }
    }

    /// The hierarchies being sampled.
    pub fn hierarchies(&self) -> &Hierarchies {
        &self.hierarchies
    }

    /// The node name reported.
    pub fn node_name(&self) -> &str {
        self.node.node_name()
    }

    /// Takes one snapshot of the node and every discovered cgroup.
    pub fn sample(&mut self) -> Result<Snapshot, SamplerError> {
        let identities = discover::discover(&self.hierarchies, &self.globs)?;
        let now_ns = unix_now_ns();
        let node = self.node.read(now_ns, &mut self.skips)?;

        let live: HashSet<&str> = identities.iter().map(|i| i.cgroup_path.as_str()).collect();
        let io_groups = &mut self.io_groups;
        self.tracked.retain(|path, _| {
            let keep = live.contains(path.as_str());
            if !keep {
                io_groups.forget(path);
            }
            keep
        });
        // Before any container is read: see `io_groups` for why.
        let io_hints = self.io_groups.check(
            identities.iter().map(|i| i.cgroup_path.as_str()),
            &mut self.buf,
        );

        let mut containers = Vec::with_capacity(identities.len());
        let mut networks = Vec::new();
        let mut netns_seen: HashSet<u64> = HashSet::new();
        for (identity, io_hint) in identities.into_iter().zip(io_hints) {
            let tracked = self
                .tracked
                .entry(identity.cgroup_path.clone())
                .or_insert_with(|| Tracked {
                    reader: CgroupReader::new(
                        &self.hierarchies,
                        &identity.cgroup_path,
                        &self.reader_options,
                    ),
                    netns: None,
                    netns_age: u32::MAX,
                });
            let stats = match tracked
                .reader
                .read_hinted(&mut self.buf, &mut self.skips, io_hint)
            {
                Ok(stats) => stats,
                Err(ReadError::Vanished) => {
                    self.io_groups.forget(&identity.cgroup_path);
                    self.skips.vanished(&identity.cgroup_path);
                    continue;
                }
            };
            let timestamp_unix_ns = unix_now_ns();
            if tracked.netns_age >= NETNS_RECHECK_TICKS {
                match tracked.reader.first_pid(&mut self.buf) {
                    Some(pid) => {
                        tracked.netns = self.netns.netns_of(pid).map(|inode| (pid, inode));
                        tracked.netns_age = 0;
                    }
                    // No process yet (or any more): look again next tick.
                    None => tracked.netns = None,
                }
            } else {
                tracked.netns_age += 1;
            }
            if let Some((pid, inode)) = tracked.netns
                && netns_seen.insert(inode)
            {
                match self.netns.read(pid, inode, &mut self.buf) {
                    NetRead::Sample(n) => networks.push(n),
                    NetRead::Gone => {
                        // The process we knew is gone: look again next tick.
                        netns_seen.remove(&inode);
                        tracked.netns = None;
                        tracked.netns_age = u32::MAX;
                    }
                    NetRead::Malformed(path, e) => self.skips.malformed(&path, &e.to_string()),
                }
            }
            let netns_inode = tracked.netns;
            containers.push(ContainerSample {
                identity,
                timestamp_unix_ns,
                stats,
                netns_inode: netns_inode.map(|(_, inode)| inode),
            });
        }
        let (malformed_skips, vanished) = self.skips.take();
        Ok(Snapshot {
            node,
            containers,
            networks,
            malformed_skips,
            vanished,
        })
    }
}

/// Wall-clock now as Unix nanoseconds (0 if the clock is before 1970).
pub fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

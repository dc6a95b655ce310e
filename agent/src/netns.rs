//! Network traffic per network namespace, read once per namespace per tick
//! from `/proc/<pid>/net/dev` (`lo` excluded).
//!
//! Containers of one pod share a namespace, so the traffic belongs to the
//! namespace, not to each container: the sampler reads it once and every
//! container carries the namespace inode. Containers in the host's own
//! namespace (`--network host`) get no namespace: their traffic is the
//! node's, and attributing it to them would be wrong.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use upid::model::NetworkSample;

/// A `net/dev` file that could not be parsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NetDevError {
    /// The two header lines were missing.
    #[error("missing the two header lines")]
    NoHeader,
    /// A line did not have `iface: <16 numbers>`.
    #[error("line {line}: expected `<iface>: <16 counters>`")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
}

/// Totals over every interface except `lo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetTotals {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}

/// Parses `/proc/<pid>/net/dev`, summing every interface but `lo`.
pub fn parse_net_dev(text: &[u8]) -> Result<NetTotals, NetDevError> {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines();
    if lines.next().is_none() || lines.next().is_none() {
        return Err(NetDevError::NoHeader);
    }
    let mut totals = NetTotals::default();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = NetDevError::BadLine { line: i + 3 };
        let (iface, counters) = line.split_once(':').ok_or(bad.clone())?;
        let mut values = [0u64; 16];
        let mut n = 0;
        for field in counters.split_ascii_whitespace() {
            let slot = values.get_mut(n).ok_or(bad.clone())?;
            *slot = field.parse().map_err(|_| bad.clone())?;
            n += 1;
        }
        if n != 16 {
            return Err(bad);
        }
        if iface.trim() == "lo" {
            continue;
        }
        // Columns: rx bytes packets errs drop fifo frame compressed multicast,
        //          tx bytes packets errs drop fifo colls carrier compressed.
        totals.rx_bytes = totals.rx_bytes.saturating_add(values[0]);
        totals.rx_packets = totals.rx_packets.saturating_add(values[1]);
        totals.rx_dropped = totals.rx_dropped.saturating_add(values[3]);
        totals.tx_bytes = totals.tx_bytes.saturating_add(values[8]);
        totals.tx_packets = totals.tx_packets.saturating_add(values[9]);
        totals.tx_dropped = totals.tx_dropped.saturating_add(values[11]);
    }
    Ok(totals)
}

/// What reading one namespace's traffic gave.
#[derive(Debug)]
pub enum NetRead {
    /// The namespace's traffic.
    Sample(NetworkSample),
    /// The process exited before it could be read.
    Gone,
    /// The file was there but malformed.
    Malformed(PathBuf, NetDevError),
}

/// Finds a process's network namespace and reads its traffic, under one
/// host's `/proc`.
#[derive(Debug)]
pub struct NetnsReader {
    proc_dir: PathBuf,
    host_netns_inode: Option<u64>,
}

impl NetnsReader {
    /// A reader for the `/proc` at `proc_dir`. The host's own namespace is
    /// that of pid 1 there, or, where pid 1 cannot be inspected (a sandbox,
    /// a restricted pid 1), the agent's own: a node agent runs in the host
    /// network namespace (`hostNetwork: true` in Kubernetes).
    pub fn new(proc_dir: PathBuf) -> Self {
        let host_netns_inode = netns_inode(&proc_dir.join("1/ns/net"))
            .or_else(|| netns_inode(&proc_dir.join("self/ns/net")));
        if host_netns_inode.is_none() {
            tracing::warn!(proc = %proc_dir.display(), "cannot tell the host network namespace; host-network containers will be shown with the node's traffic");
        }
        NetnsReader {
            proc_dir,
            host_netns_inode,
        }
    }

    /// The namespace inode of `pid`, or `None` when it is the host's own
    /// namespace or the process is gone or not inspectable.
    pub fn netns_of(&self, pid: u32) -> Option<u64> {
        let inode = netns_inode_at(&self.proc_dir, pid)?;
        (Some(inode) != self.host_netns_inode).then_some(inode)
    }

    /// Reads the traffic of the namespace `netns_inode` through `pid`, one
    /// of its processes.
    pub fn read(&self, pid: u32, netns_inode: u64, buf: &mut Vec<u8>) -> NetRead {
        let path = self.proc_dir.join(pid.to_string()).join("net/dev");
        buf.clear();
        match std::fs::File::open(&path).and_then(|mut f| std::io::Read::read_to_end(&mut f, buf)) {
            Ok(_) => {}
            Err(_) => return NetRead::Gone,
        }
        match parse_net_dev(buf) {
            Ok(t) => NetRead::Sample(NetworkSample {
                netns_inode,
                rx_bytes: t.rx_bytes,
                tx_bytes: t.tx_bytes,
                rx_packets: t.rx_packets,
                tx_packets: t.tx_packets,
                rx_dropped: t.rx_dropped,
                tx_dropped: t.tx_dropped,
            }),
            Err(e) => NetRead::Malformed(path, e),
        }
    }
}

fn netns_inode_at(proc_dir: &std::path::Path, pid: u32) -> Option<u64> {
    netns_inode(&proc_dir.join(pid.to_string()).join("ns/net"))
}

fn netns_inode(ns_link: &std::path::Path) -> Option<u64> {
    std::fs::metadata(ns_link).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   12345     100    0    0    0     0          0         0    12345     100    0    0    0     0       0          0
  eth0: 1000000    2000    0    3    0     0          0         0   500000    1500    0    4    0     0       0          0
  eth1:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
";

    #[test]
    fn sums_interfaces_except_lo() {
        let t = parse_net_dev(NET_DEV.as_bytes()).expect("valid");
        assert_eq!(
            t,
            NetTotals {
                rx_bytes: 1_000_100,
                rx_packets: 2001,
                rx_dropped: 3,
                tx_bytes: 500_200,
                tx_packets: 1502,
                tx_dropped: 4,
            }
        );
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        assert_eq!(parse_net_dev(b""), Err(NetDevError::NoHeader));
        assert_eq!(
            parse_net_dev(b"a\nb\n  eth0: 1 2 3\n"),
            Err(NetDevError::BadLine { line: 3 })
        );
        assert!(parse_net_dev(b"a\nb\neth0 1 2\n").is_err());
        assert!(parse_net_dev(b"a\nb\neth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n").is_err());
    }

    #[test]
    fn own_process_is_in_the_host_namespace_here() {
        let r = NetnsReader::new(PathBuf::from("/proc"));
        // This test runs in the host's namespace (no `unshare`), so it has none of its own.
        assert_eq!(r.netns_of(std::process::id()), None);
        let mut buf = Vec::new();
        match r.read(std::process::id(), 1, &mut buf) {
            NetRead::Sample(s) => assert_eq!(s.netns_inode, 1),
            other => panic!("expected a sample, got {other:?}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_input(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_net_dev(&bytes);
        }

        #[test]
        fn never_panics_on_truncation(cut in 0usize..NET_DEV.len()) {
            let _ = parse_net_dev(&NET_DEV.as_bytes()[..cut]);
        }
    }
}

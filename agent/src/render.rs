//! What `upid-agent sample` and `upid-agent top` print: JSON for programs,
//! aligned tables for people.

use std::fmt::Write as _;

use upid::model::Snapshot;

use crate::rate::Rates;

/// Output format chosen with `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// The full record as JSON (one document per snapshot).
    Json,
}

/// A table whose columns are padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with two spaces between columns.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(
                        line,
                        "{cell:<width$}  ",
                        width = widths.get(i).copied().unwrap_or(0)
                    );
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1.5Gi`-style binary size, or `-` when absent.
pub fn bytes(v: Option<u64>) -> String {
    let Some(v) = v else { return "-".into() };
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut value = v as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v}")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The snapshot as pretty JSON.
pub fn snapshot_json(s: &Snapshot) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(s)
}

/// The snapshot as a table of cumulative counters, as read.
pub fn snapshot_table(s: &Snapshot) -> String {
    let n = &s.node;
    let mut out = format!(
        "NODE {}  layout={:?}  cpus={}  mem={}/{} available  load={:.2} {:.2} {:.2}\n\n",
        n.node_name,
        n.cgroup_layout,
        n.cpu_count,
        bytes(Some(n.memory_available_bytes)),
        bytes(Some(n.memory_total_bytes)),
        n.load1,
        n.load5,
        n.load15
    );
    let mut t = Table::new(&[
        "NAME",
        "RUNTIME",
        "POD",
        "QOS",
        "CPU_USAGE_S",
        "THROTTLED",
        "MEM_USAGE",
        "WORKING_SET",
        "LIMIT",
        "PEAK",
        "OOM",
        "PIDS",
        "NETNS",
    ]);
    for c in &s.containers {
        let cpu = c.stats.cpu.as_ref();
        let mem = c.stats.memory.as_ref();
        t.row(vec![
            c.identity.short_name().to_string(),
            c.identity.runtime.as_str().to_string(),
            c.identity.pod_uid.clone().unwrap_or_else(|| "-".into()),
            c.identity.qos.map_or("-", |q| q.as_str()).to_string(),
            cpu.map_or("-".into(), |c| format!("{:.2}", c.usage_ns as f64 / 1e9)),
            cpu.map_or("-".into(), |c| {
                format!("{}/{}", c.throttled_periods, c.periods)
            }),
            bytes(mem.map(|m| m.usage_bytes)),
            bytes(mem.map(|m| m.working_set_bytes)),
            bytes(mem.and_then(|m| m.limit_bytes)),
            bytes(mem.map(|m| m.peak_bytes)),
            opt(mem.map(|m| m.oom_kills)),
            opt(c.stats.pids.map(|p| p.current)),
            opt(c.netns_inode),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\n{} cgroups, {} network namespaces; {} malformed files skipped, {} vanished mid-read",
        s.containers.len(),
        s.networks.len(),
        s.malformed_skips,
        s.vanished
    );
    out
}

/// Live rates as a table, busiest CPU first.
pub fn rates_table(r: &Rates) -> String {
    let n = &r.node;
    let mut out = format!(
        "NODE {}  cpu={}/{} cores  mem={}/{}  load1={:.2}\n\n",
        n.node_name,
        n.cpu_busy_cores.map_or("-".into(), |c| format!("{c:.2}")),
        n.cpu_count,
        bytes(Some(n.memory_used_bytes)),
        bytes(Some(n.memory_total_bytes)),
        n.load1
    );
    let mut rows: Vec<_> = r.containers.iter().collect();
    rows.sort_by(|a, b| {
        b.cpu_cores
            .unwrap_or(0.0)
            .total_cmp(&a.cpu_cores.unwrap_or(0.0))
    });
    let mut t = Table::new(&[
        "NAME",
        "RUNTIME",
        "CPU",
        "CPU_LIMIT",
        "THROTTLED",
        "WORKING_SET",
        "MEM_LIMIT",
        "PEAK",
        "OOM",
        "NET_RX/s",
        "NET_TX/s",
    ]);
    for c in rows {
        t.row(vec![
            c.identity.short_name().to_string(),
            c.identity.runtime.as_str().to_string(),
            c.cpu_cores.map_or("-".into(), |v| format!("{v:.3}")),
            c.cpu_limit_cores.map_or("-".into(), |v| format!("{v:.2}")),
            c.throttled_ratio
                .map_or("-".into(), |v| format!("{:.0}%", v * 100.0)),
            bytes(c.memory_working_set_bytes),
            bytes(c.memory_limit_bytes),
            bytes(c.memory_peak_bytes),
            opt(c.oom_kills),
            bytes(c.net_rx_bytes_per_s.map(|v| v as u64)),
            bytes(c.net_tx_bytes_per_s.map(|v| v as u64)),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes() {
        assert_eq!(bytes(None), "-");
        assert_eq!(bytes(Some(512)), "512");
        assert_eq!(bytes(Some(256 * 1024 * 1024)), "256.0Mi");
        assert_eq!(bytes(Some(3 * 1024 * 1024 * 1024 / 2)), "1.5Gi");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "BBB"]);
        t.row(vec!["long".into(), "x".into()]);
        assert_eq!(t.render(), "A     BBB\nlong  x\n");
    }
}

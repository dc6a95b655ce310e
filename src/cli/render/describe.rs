//! `upid describe container`: identity, limits, latest usage, the latest
//! stored counters and a short recent series, kubectl-describe style.

use std::fmt::Write as _;

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::{Table, structured};
use crate::cli::units::{
    NONE, duration_ns, opt_bytes, opt_bytes_per_s, opt_cores, opt_limit_cores, opt_percent,
    rfc3339, when,
};
use crate::cli::view::{DescribeView, SeriesView};
use crate::model::{self, PeakSource};

/// Width of the label column (labels include their colon).
const LABEL_WIDTH: usize = 16;

/// Lines of `Label:   value`, values aligned.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn kv(&mut self, indent: usize, label: &str, value: impl AsRef<str>) {
        let label = format!("{}{label}:", " ".repeat(indent));
        let _ = writeln!(
            self.0,
            "{label:<width$}{}",
            value.as_ref(),
            width = LABEL_WIDTH.max(label.chars().count() + 1)
        );
    }

    fn heading(&mut self, text: &str) {
        let _ = writeln!(self.0, "{text}:");
    }
}

fn or_none(v: Option<&str>) -> &str {
    v.unwrap_or(NONE)
}

/// Seconds from nanoseconds, for cumulative CPU time: `12.3s`.
fn seconds_ns(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 10.0 {
        format!("{s:.2}s")
    } else {
        format!("{s:.1}s")
    }
}

/// With the share of a limit when there is one: `0.253 (17% of limit)`.
fn with_share(value: String, share: Option<f64>) -> String {
    match share {
        Some(_) => format!("{value} ({} of limit)", opt_percent(share)),
        None => value,
    }
}

fn sample_lines(out: &mut Lines, s: &model::ContainerSample) {
    out.heading(&format!(
        "Latest sample ({}, cumulative counters)",
        rfc3339(s.timestamp_unix_ns).as_deref().unwrap_or(NONE)
    ));
    match &s.stats.cpu {
        Some(c) => {
            let split = match (c.user_ns, c.system_ns) {
                (Some(u), Some(sys)) => {
                    format!(" (user {}, system {})", seconds_ns(u), seconds_ns(sys))
                }
                _ => String::new(),
            };
            out.kv(2, "CPU time", format!("{}{split}", seconds_ns(c.usage_ns)));
            out.kv(
                2,
                "Throttled",
                format!(
                    "{} of {} periods, {}",
                    c.throttled_periods,
                    c.periods,
                    seconds_ns(c.throttled_ns)
                ),
            );
        }
        None => out.kv(2, "CPU", "not readable (no cpu controller)"),
    }
    match &s.stats.memory {
        Some(m) => {
            out.kv(
                2,
                "Memory",
                format!(
                    "usage {}, working set {}, rss {}, cache {}, swap {}",
                    opt_bytes(Some(m.usage_bytes)),
                    opt_bytes(Some(m.working_set_bytes)),
                    opt_bytes(Some(m.rss_bytes)),
                    opt_bytes(Some(m.cache_bytes)),
                    opt_bytes(m.swap_bytes)
                ),
            );
            let source = match m.peak_source {
                PeakSource::KernelReset => "kernel high-water mark since the previous tick",
                PeakSource::Sampled => "largest usage read during the tick",
            };
            out.kv(
                2,
                "Peak",
                format!("{} ({source})", opt_bytes(Some(m.peak_bytes))),
            );
            out.kv(2, "OOM kills", m.oom_kills.to_string());
        }
        None => out.kv(2, "Memory", "not readable (no memory controller)"),
    }
    if let Some(io) = &s.stats.io {
        out.kv(
            2,
            "Block IO",
            format!(
                "read {} ({} ops), write {} ({} ops)",
                opt_bytes(Some(io.read_bytes)),
                io.read_ops,
                opt_bytes(Some(io.write_bytes)),
                io.write_ops
            ),
        );
    }
    if let Some(p) = &s.stats.pids {
        let limit = p
            .limit
            .map_or_else(|| "no limit".into(), |l| format!("limit {l}"));
        out.kv(2, "Tasks", format!("{} ({limit})", p.current));
    }
    if let Some(p) = &s.stats.pressure {
        let mut parts = Vec::new();
        for (name, stats) in [("cpu", p.cpu), ("memory", p.memory), ("io", p.io)] {
            if let Some(st) = stats {
                let full = st
                    .full_total_us
                    .map(|f| format!(" full {}", seconds_ns(f * 1000)))
                    .unwrap_or_default();
                parts.push(format!(
                    "{name} some {}{full}",
                    seconds_ns(st.some_total_us * 1000)
                ));
            }
        }
        if !parts.is_empty() {
            out.kv(2, "Pressure", parts.join("; "));
        }
    }
}

fn series_lines(out: &mut Lines, series: &SeriesView) {
    out.heading(&format!(
        "Recent usage (last {}, step {})",
        duration_ns(series.end_unix_ns - series.start_unix_ns),
        duration_ns(series.step_ns)
    ));
    if series.points.is_empty() {
        out.0.push_str("  no samples in this window\n");
        return;
    }
    let mut t = Table::new(&[
        "TIME",
        "CPU",
        "THROTTLED",
        "MEMORY",
        "PEAK",
        "NET_RX",
        "NET_TX",
        "OOMS",
    ]);
    for p in &series.points {
        t.row(vec![
            p.start.clone().unwrap_or_else(|| NONE.into()),
            opt_cores(p.cpu_cores),
            opt_percent(p.cpu_throttled_ratio),
            opt_bytes(p.memory_working_set_bytes),
            opt_bytes(p.memory_peak_bytes),
            opt_bytes_per_s(p.net_rx_bytes_per_s),
            opt_bytes_per_s(p.net_tx_bytes_per_s),
            p.oom_kills.map_or_else(|| NONE.into(), |o| o.to_string()),
        ]);
    }
    for line in t.render().lines() {
        let _ = writeln!(out.0, "  {line}");
    }
}

/// The container in detail; JSON and YAML print the [`DescribeView`].
pub fn describe(d: &DescribeView, format: Format, now_unix_ns: i64) -> Result<String, CliError> {
    if let Some(s) = structured(d, format) {
        return s;
    }
    let c = &d.container;
    let mut out = Lines::default();
    out.kv(0, "Name", c.full_id());
    out.kv(0, "ID", &c.id);
    out.kv(0, "Node", &c.node_name);
    out.kv(0, "Runtime", c.runtime.map_or(NONE, |r| r.as_str()));
    out.kv(0, "Cgroup", &c.cgroup_path);
    out.kv(0, "Pod UID", or_none(c.pod_uid.as_deref()));
    out.kv(0, "QoS", c.qos.map_or(NONE, |q| q.as_str()));
    out.kv(0, "Unit", or_none(c.unit.as_deref()));
    out.kv(0, "First seen", when(now_unix_ns, c.first_seen_unix_ns));
    out.kv(0, "Last seen", when(now_unix_ns, c.last_seen_unix_ns));
    out.kv(0, "Samples", d.samples_stored.to_string());
    out.heading("Limits");
    out.kv(
        2,
        "CPU",
        match c.cpu_limit_millicores {
            Some(_) => format!("{} cores", opt_limit_cores(c.cpu_limit_millicores)),
            None => "unlimited".into(),
        },
    );
    out.kv(
        2,
        "Memory",
        match c.memory_limit_bytes {
            Some(_) => opt_bytes(c.memory_limit_bytes),
            None => "unlimited".into(),
        },
    );
    let interval = match (c.usage_start_unix_ns, c.usage_end_unix_ns) {
        (Some(s), Some(e)) if e > s => format!(
            "{} to {}",
            rfc3339(s).as_deref().unwrap_or(NONE),
            rfc3339(e).as_deref().unwrap_or(NONE)
        ),
        (_, Some(e)) => format!("single sample at {}", rfc3339(e).as_deref().unwrap_or(NONE)),
        _ => "no samples".into(),
    };
    out.heading(&format!("Usage ({interval})"));
    out.kv(
        2,
        "CPU",
        with_share(
            match c.cpu_cores {
                Some(_) => format!("{} cores", opt_cores(c.cpu_cores)),
                None => NONE.into(),
            },
            c.cpu_of_limit(),
        ),
    );
    out.kv(
        2,
        "Throttled",
        match c.cpu_throttled_ratio {
            Some(_) => format!("{} of periods", opt_percent(c.cpu_throttled_ratio)),
            None => NONE.into(),
        },
    );
    out.kv(
        2,
        "Working set",
        with_share(opt_bytes(c.memory_working_set_bytes), c.memory_of_limit()),
    );
    out.kv(2, "Peak", opt_bytes(c.memory_peak_bytes));
    out.kv(
        2,
        "Network",
        format!(
            "rx {}, tx {}",
            opt_bytes_per_s(c.net_rx_bytes_per_s),
            opt_bytes_per_s(c.net_tx_bytes_per_s)
        ),
    );
    out.kv(2, "OOM kills", format!("{} in total", c.oom_kills_total));
    if let Some(s) = &d.latest_sample {
        sample_lines(&mut out, s);
    }
    match (&d.series, &d.series_error) {
        (Some(series), _) => series_lines(&mut out, series),
        (None, Some(e)) => {
            out.heading("Recent usage");
            let _ = writeln!(out.0, "  unavailable: {e}");
        }
        (None, None) => {}
    }
    Ok(out.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::fixtures::{self, DOCKER_ID, NOW_NS};

    fn view() -> DescribeView {
        let series = fixtures::series();
        DescribeView::new(
            &fixtures::detail(),
            Ok((NOW_NS - 3600 * 1_000_000_000, NOW_NS, &series)),
        )
    }

    #[test]
    fn describe_reads_like_kubectl_describe() {
        let out = describe(&view(), Format::Table, NOW_NS).expect("renders");
        let expected = format!(
            "\
Name:           {DOCKER_ID}
ID:             {DOCKER_ID}
Node:           node-a
Runtime:        docker
Cgroup:         /system.slice/docker-{DOCKER_ID}.scope
Pod UID:        -
QoS:            -
Unit:           -
First seen:     2023-11-11T22:13:20Z (3d ago)
Last seen:      2023-11-14T22:13:15Z (5s ago)
Samples:        1234
Limits:
  CPU:          1.5 cores
  Memory:       512Mi
Usage (2023-11-14T22:13:05Z to 2023-11-14T22:13:15Z):
  CPU:          0.253 cores (17% of limit)
  Throttled:    3.2% of periods
  Working set:  120Mi (23% of limit)
  Peak:         130Mi
  Network:      rx 2Ki/s, tx 300B/s
  OOM kills:    2 in total
Latest sample (2023-11-14T22:13:15Z, cumulative counters):
  CPU time:     12.3s (user 10.0s, system 2.30s)
  Throttled:    3 of 100 periods, 0.01s
  Memory:       usage 150Mi, working set 120Mi, rss 100Mi, cache 40Mi, swap -
  Peak:         130Mi (kernel high-water mark since the previous tick)
  OOM kills:    2
  Block IO:     read 1Mi (3 ops), write 2Mi (4 ops)
  Tasks:        5 (no limit)
Recent usage (last 1h, step 5m):
  TIME                   CPU     THROTTLED   MEMORY   PEAK    NET_RX   NET_TX   OOMS
  2023-11-14T22:03:20Z   0.200   3.2%        110Mi    120Mi   2Ki/s    300B/s   0
  2023-11-14T22:08:20Z   0.300   3.2%        121Mi    131Mi   2Ki/s    300B/s   0
"
        );
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn describe_json_nests_the_container_sample_and_series() {
        let out = describe(&view(), Format::Json, NOW_NS).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v["container"]["id"], DOCKER_ID);
        assert_eq!(v["samples_stored"], 1234);
        assert_eq!(v["latest_sample"]["cpu"]["usage_ns"], 12_300_000_000u64);
        assert_eq!(v["latest_sample"]["memory"]["peak_source"], "kernel_reset");
        assert_eq!(v["series"]["step_ns"], 300_000_000_000i64);
        assert_eq!(v["series"]["points"][1]["cpu_cores"], 0.3);
        assert_eq!(v["series"]["points"][0]["start"], "2023-11-14T22:03:20Z");
        assert_eq!(v["series_error"], serde_json::Value::Null);
    }

    #[test]
    fn a_missing_series_is_said_not_hidden() {
        let d = DescribeView::new(&fixtures::detail(), Err("collector too old".into()));
        let out = describe(&d, Format::Table, NOW_NS).expect("renders");
        assert!(
            out.ends_with("Recent usage:\n  unavailable: collector too old\n"),
            "{out}"
        );
    }
}

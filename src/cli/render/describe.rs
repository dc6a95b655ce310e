//! `upid describe container`: identity, limits, latest usage, the latest
//! stored counters and a short recent series, kubectl-describe style.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::cli::args::{DESCRIBE_EVENT_LIMIT, Format};
use crate::cli::error::CliError;
use crate::cli::render::{Table, structured};
use crate::cli::units::{
    NONE, age, duration_ns, opt_bytes, opt_bytes_per_s, opt_cores, opt_limit_cores, opt_percent,
    rfc3339, when,
};
use crate::cli::view::{ContainerView, DescribeView, SeriesView};
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
    let info = c.info.as_ref();
    let mut out = Lines::default();
    out.kv(
        0,
        "Name",
        info.and_then(|i| i.name.as_deref()).unwrap_or(c.full_id()),
    );
    out.kv(0, "ID", &c.id);
    out.kv(0, "Namespace", or_none(c.namespace.as_deref()));
    out.kv(0, "Pod", or_none(c.pod_name.as_deref()));
    out.kv(0, "Pod UID", or_none(c.pod_uid.as_deref()));
    out.kv(0, "Workload", workload_line(c));
    out.kv(0, "Node", &c.node_name);
    out.kv(0, "Runtime", c.runtime.map_or(NONE, |r| r.as_str()));
    image_lines(&mut out, c);
    out.kv(0, "State", state_line(c));
    out.kv(
        0,
        "Health",
        match c.health.as_deref() {
            Some("none") => "none (no healthcheck)",
            other => or_none(other),
        },
    );
    out.kv(
        0,
        "Restarts",
        c.restarts.map_or_else(|| NONE.into(), |r| r.to_string()),
    );
    out.kv(0, "Exit code", exit_line(c));
    out.kv(
        0,
        "OOM killed",
        match info {
            Some(i) if i.oom_killed => "yes (the last exit)",
            Some(_) => "no",
            None => NONE,
        },
    );
    out.kv(
        0,
        "Started",
        when(now_unix_ns, c.started_unix_ns.unwrap_or(0)),
    );
    out.kv(
        0,
        "Finished",
        when(
            now_unix_ns,
            info.and_then(|i| i.finished_unix_ns).unwrap_or(0),
        ),
    );
    out.kv(0, "QoS", c.qos.map_or(NONE, |q| q.as_str()));
    out.kv(0, "Cgroup", &c.cgroup_path);
    out.kv(0, "Unit", or_none(c.unit.as_deref()));
    out.kv(
        0,
        "Sources",
        match info.map(|i| i.sources.join(", ")) {
            Some(s) if !s.is_empty() => s,
            _ => NONE.into(),
        },
    );
    label_lines(&mut out, info.map(|i| &i.labels));
    out.kv(0, "First seen", when(now_unix_ns, c.first_seen_unix_ns));
    out.kv(0, "Last seen", when(now_unix_ns, c.last_seen_unix_ns));
    out.kv(0, "Samples", d.samples_stored.to_string());
    out.heading("Requests");
    out.kv(
        2,
        "CPU",
        match c.cpu_request_millicores {
            Some(_) => format!("{} cores", opt_limit_cores(c.cpu_request_millicores)),
            None => NONE.into(),
        },
    );
    out.kv(2, "Memory", opt_bytes(c.memory_request_bytes));
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
    event_lines(&mut out, d, now_unix_ns);
    Ok(out.0)
}

/// `deployment/web`, with why the owner could not be resolved when it
/// could not: `replicaset/web-7d9f (degraded: replicasets.apps is forbidden)`.
fn workload_line(c: &ContainerView) -> String {
    let Some(w) = c.info.as_ref().and_then(|i| i.workload.as_ref()) else {
        return NONE.into();
    };
    let mut line = format!("{}/{}", w.kind, w.name);
    if let Some(ns) = &w.namespace
        && c.namespace.as_deref() != Some(ns.as_str())
    {
        line.push_str(&format!(" in {ns}"));
    }
    if let Some(detail) = &w.detail {
        line.push_str(&format!(" (degraded: {detail})"));
    }
    line
}

fn image_lines(out: &mut Lines, c: &ContainerView) {
    let image = c.info.as_ref().and_then(|i| i.image.as_ref());
    out.kv(
        0,
        "Image",
        or_none(image.and_then(|i| i.reference.as_deref())),
    );
    if let Some(i) = image {
        out.kv(2, "Repository", or_none(i.repository.as_deref()));
        out.kv(2, "Tag", or_none(i.tag.as_deref()));
        out.kv(2, "Digest", or_none(i.digest.as_deref()));
        out.kv(2, "Image ID", or_none(i.image_id.as_deref()));
    }
}

/// `running`, `waiting (CrashLoopBackOff)`, `gone (no longer reported by
/// its node; last state: exited (OOMKilled))`.
fn state_line(c: &ContainerView) -> String {
    let reported = c.info.as_ref().and_then(|i| i.state.as_deref());
    let state = match (reported, &c.state_reason) {
        (Some(s), Some(r)) => Some(format!("{s} ({r})")),
        (Some(s), None) => Some(s.to_owned()),
        (None, Some(r)) => Some(format!("{NONE} ({r})")),
        (None, None) => None,
    };
    match (c.gone, state) {
        (true, Some(s)) => format!("gone (no longer reported by its node; last state: {s})"),
        (true, None) => "gone (no longer reported by its node)".into(),
        (false, Some(s)) => s,
        (false, None) => NONE.into(),
    }
}

/// `137 (OOMKilled)`, or `-` while it never exited.
fn exit_line(c: &ContainerView) -> String {
    let Some(info) = &c.info else {
        return NONE.into();
    };
    match (info.exit_code, &info.last_termination_reason) {
        (Some(code), Some(reason)) => format!("{code} ({reason})"),
        (Some(code), None) => code.to_string(),
        (None, Some(reason)) => format!("- ({reason})"),
        (None, None) => "- (never exited)".into(),
    }
}

/// `Labels:  a=b`, one per line, sorted, values aligned.
fn label_lines(out: &mut Lines, labels: Option<&BTreeMap<String, String>>) {
    let mut pairs = labels.into_iter().flatten();
    match pairs.next() {
        None => out.kv(0, "Labels", NONE),
        Some((k, v)) => {
            out.kv(0, "Labels", format!("{k}={v}"));
            for (k, v) in pairs {
                let _ = writeln!(out.0, "{:LABEL_WIDTH$}{k}={v}", "");
            }
        }
    }
}

/// The container's recent events, newest first.
fn event_lines(out: &mut Lines, d: &DescribeView, now_unix_ns: i64) {
    match (&d.events, &d.events_error) {
        (Some(events), _) => {
            out.heading(&format!(
                "Events (newest first, up to {DESCRIBE_EVENT_LIMIT})"
            ));
            if events.is_empty() {
                let why = if d.container.container_id.is_some() {
                    "  none recorded\n"
                } else {
                    "  none (events are the container runtime's; this cgroup has no container id)\n"
                };
                out.0.push_str(why);
                return;
            }
            let mut t = Table::new(&["AGE", "TIME", "TYPE", "DETAIL"]);
            for e in events {
                t.row(vec![
                    age(now_unix_ns, e.time_unix_ns),
                    e.time.clone().unwrap_or_else(|| NONE.into()),
                    e.event_type.clone(),
                    e.detail.clone().unwrap_or_else(|| NONE.into()),
                ]);
            }
            for line in t.render().lines() {
                let _ = writeln!(out.0, "  {line}");
            }
        }
        (None, Some(e)) => {
            out.heading("Events");
            let _ = writeln!(out.0, "  unavailable: {e}");
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::fixtures::{self, DOCKER_ID, NOW_NS, POD_ID};
    use crate::wire::v1;

    /// The events of one container, as `ListEvents` with `container` set
    /// returns them.
    fn events_of(id: &str) -> Vec<v1::Event> {
        fixtures::events()
            .into_iter()
            .filter(|e| e.event.as_ref().is_some_and(|e| e.container_id == id))
            .collect()
    }

    fn view() -> DescribeView {
        let series = fixtures::series();
        let events = events_of(DOCKER_ID);
        DescribeView::new(
            &fixtures::detail(),
            Ok((NOW_NS - 3600 * 1_000_000_000, NOW_NS, &series)),
            Ok(&events),
        )
    }

    #[test]
    fn describe_reads_like_kubectl_describe() {
        let out = describe(&view(), Format::Table, NOW_NS).expect("renders");
        let expected = format!(
            "\
Name:           shop-web-1
ID:             {DOCKER_ID}
Namespace:      shop
Pod:            -
Pod UID:        -
Workload:       compose/web
Node:           node-a
Runtime:        docker
Image:          registry.local:5000/shop/web:1.1
  Repository:   registry.local:5000/shop/web
  Tag:          1.1
  Digest:       sha256:a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90
  Image ID:     sha256:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100
State:          running
Health:         healthy
Restarts:       0
Exit code:      - (never exited)
OOM killed:     no
Started:        2023-11-13T22:13:20Z (24h ago)
Finished:       -
QoS:            -
Cgroup:         /system.slice/docker-{DOCKER_ID}.scope
Unit:           -
Sources:        docker
Labels:         com.docker.compose.project=shop
                com.docker.compose.service=web
First seen:     2023-11-11T22:13:20Z (3d ago)
Last seen:      2023-11-14T22:13:15Z (5s ago)
Samples:        1234
Requests:
  CPU:          -
  Memory:       -
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
Events (newest first, up to 20):
  AGE    TIME                   TYPE            DETAIL
  42m    2023-11-14T21:31:20Z   health-change   healthy → unhealthy
  125m   2023-11-14T20:08:20Z   image-change    shop/web:1.0 → shop/web:1.1
  3d     2023-11-11T22:13:20Z   start           -
"
        );
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn describe_shows_kubernetes_identity_requests_and_a_degraded_owner() {
        let events = events_of(POD_ID);
        let d = DescribeView::new(
            &fixtures::degraded_detail(),
            Err("not asked".into()),
            Ok(&events),
        );
        let out = describe(&d, Format::Table, NOW_NS).expect("renders");
        for line in [
            "Name:           checkout\n",
            "Namespace:      shop\n",
            "Pod:            checkout-7d9f8-x2k4q\n",
            "Pod UID:        1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809\n",
            "Workload:       replicaset/checkout-7d9f8 (degraded: replicasets.apps is forbidden: owner resolved from the pod-template-hash)\n",
            "  Tag:          2.3.1\n  Digest:       -\n",
            "State:          running\n",
            "Health:         none (no healthcheck)\n",
            "Restarts:       3\n",
            "Exit code:      137 (OOMKilled)\n",
            "OOM killed:     yes (the last exit)\n",
            "Finished:       2023-11-14T22:08:19Z (5m1s ago)\n",
            "QoS:            Burstable\n",
            "Labels:         app=checkout\n                pod-template-hash=7d9f8\n",
            "Requests:\n  CPU:          0.25 cores\n  Memory:       256Mi\n",
            "Limits:\n  CPU:          unlimited\n  Memory:       unlimited\n",
        ] {
            assert!(out.contains(line), "lacks {line:?}:\n{out}");
        }
        let events = out.split("Events (newest first, up to 20):\n").nth(1);
        let events = events.expect("an events section");
        assert!(
            events.contains("oom") && events.contains("exit 137 (OOMKilled)"),
            "{out}"
        );
        let json = describe(&d, Format::Json, NOW_NS).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let w = &v["container"]["info"]["workload"];
        assert_eq!(w["kind"], "replicaset");
        assert_eq!(
            w["detail"],
            "replicasets.apps is forbidden: owner resolved from the pod-template-hash"
        );
    }

    #[test]
    fn a_gone_container_says_so_with_its_last_state() {
        let detail = v1::ContainerDetail {
            summary: Some(fixtures::gone()),
            latest_sample: None,
            samples_stored: 40,
        };
        let d = DescribeView::new(&detail, Err("no samples".into()), Ok(&[]));
        let out = describe(&d, Format::Table, NOW_NS).expect("renders");
        assert!(
            out.contains(
                "State:          gone (no longer reported by its node; last state: exited (Error))\n"
            ),
            "{out}"
        );
        assert!(out.contains("Exit code:      1\n"), "{out}");
        assert!(
            out.contains("Workload:       container/batch-once\n"),
            "{out}"
        );
        assert!(
            out.ends_with("Events (newest first, up to 20):\n  none recorded\n"),
            "{out}"
        );
    }

    #[test]
    fn describe_json_nests_the_container_sample_series_and_events() {
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
        let info = &v["container"]["info"];
        assert_eq!(info["name"], "shop-web-1");
        assert_eq!(info["state"], "running");
        assert_eq!(info["health"], "healthy");
        assert_eq!(info["image"]["tag"], "1.1");
        assert_eq!(info["workload"]["kind"], "compose");
        assert_eq!(info["labels"]["com.docker.compose.service"], "web");
        assert_eq!(info["started"], "2023-11-13T22:13:20Z");
        assert_eq!(v["events"][0]["type"], "health-change");
        assert_eq!(v["events"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["events_error"], serde_json::Value::Null);
    }

    #[test]
    fn missing_series_and_events_are_said_not_hidden() {
        let d = DescribeView::new(
            &fixtures::detail(),
            Err("collector too old".into()),
            Err("the collector does not implement ListEvents".into()),
        );
        let out = describe(&d, Format::Table, NOW_NS).expect("renders");
        assert!(
            out.ends_with(
                "Recent usage:\n  unavailable: collector too old\n\
                 Events:\n  unavailable: the collector does not implement ListEvents\n"
            ),
            "{out}"
        );
    }
}

//! Idle workloads: no replica used the CPU threshold or moved the network
//! threshold in any minute for the whole window. Reported with since when,
//! the evidence over the quiet stretch, and what it costs.

use std::collections::{BTreeMap, HashMap};

use upid::wire::v1;

use super::rightsize::{Clock, duration};
use super::settings::AnalysisSettings;
use crate::store::{QuietStretch, SeriesFacts};

/// One minute: an active row at `t` makes the workload active until
/// `t + ROW_NS`.
const ROW_NS: i64 = 60_000_000_000;

/// Decides, per workload (namespace, kind, name of the series' latest
/// identity) with at least one running replica.
pub fn decide(
    facts: &[SeriesFacts],
    quiet: &[QuietStretch],
    settings: &AnalysisSettings,
    clock: Clock,
    include_active: bool,
) -> Vec<v1::IdleWorkload> {
    let quiet_of: HashMap<&str, &QuietStretch> =
        quiet.iter().map(|q| (q.series_key.as_str(), q)).collect();
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&SeriesFacts>> = BTreeMap::new();
    for f in facts {
        groups
            .entry((&f.id.namespace, &f.id.workload_kind, &f.id.workload))
            .or_default()
            .push(f);
    }
    let idle = &settings.idle;
    let cpu_threshold = idle.cpu_threshold_millicores as f64 / 1000.0;
    let window_ns = idle.window_s.saturating_mul(1_000_000_000);
    let mut out = Vec::new();
    for ((namespace, kind, workload), members) in groups {
        let live: Vec<&&SeriesFacts> = members
            .iter()
            .filter(|f| f.last_unix_ns >= clock.live_from_unix_ns)
            .collect();
        if live.is_empty() {
            continue;
        }
        let first = members.iter().map(|f| f.first_unix_ns).min().unwrap_or(0);
        let last = members.iter().map(|f| f.last_unix_ns).max().unwrap_or(0);
        let last_active = members.iter().filter_map(|f| f.last_active_unix_ns).max();
        let since = last_active.map_or(first, |t| t.saturating_add(ROW_NS));
        let quiet_ns = clock.at_unix_ns.saturating_sub(since).max(0);
        let is_idle = quiet_ns >= window_ns;
        let has_network = members.iter().any(|f| f.has_network);
        let mut w = v1::IdleWorkload {
            namespace: namespace.to_owned(),
            workload_kind: kind.to_owned(),
            workload: workload.to_owned(),
            replicas: u32::try_from(live.len()).unwrap_or(u32::MAX),
            idle: is_idle,
            idle_since_unix_ns: if since <= last { since } else { 0 },
            idle_for_s: if since <= last {
                quiet_ns / 1_000_000_000
            } else {
                0
            },
            cpu_threshold_cores: cpu_threshold,
            net_threshold_bytes_per_s: idle.net_threshold_bytes_per_s,
            window_s: idle.window_s,
            last_sample_unix_ns: last,
            ..Default::default()
        };
        let (mut core_s, mut cpu_s) = (0.0, 0.0);
        for f in &members {
            if let Some(q) = quiet_of.get(f.id.series_key.as_str()) {
                w.cpu_max_cores = w.cpu_max_cores.max(q.cpu_max_cores.unwrap_or(0.0));
                w.net_max_bytes_per_s = w
                    .net_max_bytes_per_s
                    .max(q.net_max_bytes_per_s.unwrap_or(0.0));
                w.net_bytes_total = w.net_bytes_total.saturating_add(q.net_bytes);
                w.cost_since_idle += q.cost;
                core_s += q.cpu_core_s;
                cpu_s += q.cpu_covered_s;
            }
        }
        w.cpu_mean_cores = if cpu_s > 0.0 { core_s / cpu_s } else { 0.0 };
        w.monthly_cost = live
            .iter()
            .map(|f| super::monthly(f.run_rate_cost, f.run_rate_covered_s, true))
            .sum();
        let thresholds = format!(
            "{}m CPU or {} network per replica",
            idle.cpu_threshold_millicores,
            rate(idle.net_threshold_bytes_per_s)
        );
        let quiet_for = duration(quiet_ns as f64 / 1e9);
        let history = clock.at_unix_ns.saturating_sub(first) as f64 / 1e9;
        w.reason = if is_idle {
            let never = last_active.is_none();
            format!(
                "{} reached {thresholds} {} {quiet_for} (window {}); highest since: {}m CPU, {}",
                if never {
                    "no replica ever"
                } else {
                    "no replica"
                },
                if never { "in" } else { "for" },
                duration(idle.window_s as f64),
                (w.cpu_max_cores * 1000.0).round(),
                rate(w.net_max_bytes_per_s),
            )
        } else if since > last {
            let active_at = last_active.unwrap_or(last);
            format!(
                "active {} ago (≥ {thresholds})",
                duration(clock.at_unix_ns.saturating_sub(active_at) as f64 / 1e9)
            )
        } else if last_active.is_none() {
            format!(
                "quiet for all of its {} of history, shorter than the {} window",
                duration(history),
                duration(idle.window_s as f64)
            )
        } else {
            format!(
                "quiet for {quiet_for}, less than the {} window",
                duration(idle.window_s as f64)
            )
        };
        if !has_network {
            w.reason
                .push_str(" (no network figures: judged on CPU alone)");
        }
        if is_idle || include_active {
            out.push(w);
        }
    }
    out.sort_by(|a, b| {
        b.idle
            .cmp(&a.idle)
            .then_with(|| b.monthly_cost.total_cmp(&a.monthly_cost))
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.workload.cmp(&b.workload))
    });
    out
}

/// Bytes per second as people read them.
fn rate(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1_048_576.0 {
        format!("{:.1} MiB/s", bytes_per_s / 1_048_576.0)
    } else if bytes_per_s >= 1024.0 {
        format!("{:.1} KiB/s", bytes_per_s / 1024.0)
    } else {
        format!("{bytes_per_s:.0} B/s")
    }
}

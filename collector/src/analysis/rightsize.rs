//! Rightsizing: what a container should request and limit, from the VPA
//! recommender's algorithm with upid's corrections (docs/analysis.md):
//!
//! - CPU request: p90 of decayed CPU usage + 15 %. Where CPU was throttled
//!   (≥ 5 % of CFS periods) usage was capped by the limit, so the need is
//!   at least p95 × (1 + throttled share) + 15 %.
//! - Memory request: p90 of decayed daily peaks + 15 %, where a peak is the
//!   agent's per-tick peak (spikes between samples count), and a day with an
//!   OOM kill counts as max(used + 100 MiB, used × 1.2), "used" being the
//!   limit it hit. The bump is capped (2 × the highest peak of days without
//!   a kill) so kills cannot ratchet memory up forever, and holds the
//!   request up for 7 days, after which only its decayed weight remains.
//! - Memory limit: highest peak (or the OOM bump) + 20 %. CPU limit only when
//!   asked for (request × ratio).
//! - Bounds and confidence as the VPA; less than a day of history gives
//!   "not enough data" instead of numbers.

use std::collections::HashMap;

use upid::wire::v1;

use super::histogram::{self, CPU_CORES, Histogram, MEMORY_BYTES};
use super::settings::{HOURS_PER_MONTH, MIB_BYTES, Pricing, RightsizeSettings};
use crate::store::{DailyPeak, SeriesFacts};

/// Everything one recommendation is computed from: the pooled series.
#[derive(Debug)]
pub struct GroupInput<'a> {
    /// The series pooled (one per container instance).
    pub members: Vec<&'a SeriesFacts>,
    /// Their CPU histograms, added up.
    pub cpu: Histogram,
    /// Their daily memory peaks.
    pub days: Vec<&'a DailyPeak>,
}

impl GroupInput<'_> {
    /// An empty group.
    pub fn new<'a>() -> GroupInput<'a> {
        GroupInput {
            members: Vec::new(),
            cpu: Histogram::new(CPU_CORES),
            days: Vec::new(),
        }
    }
}

/// When the analysis runs, and what counts as still running.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Analysis time, Unix ns.
    pub at_unix_ns: i64,
    /// Series whose latest row is older than this no longer run.
    pub live_from_unix_ns: i64,
}

const NS_PER_S: f64 = 1e9;

/// The recommendation for one group. `cpu_limit_ratio` overrides the
/// settings' ratio.
pub fn recommend(
    group: &GroupInput<'_>,
    settings: &RightsizeSettings,
    cpu_limit_ratio: Option<f64>,
    pricing: &Pricing,
    clock: Clock,
) -> v1::Recommendation {
    let latest = group.members.iter().max_by_key(|f| f.last_unix_ns).copied();
    let first = group
        .members
        .iter()
        .map(|f| f.first_unix_ns)
        .min()
        .unwrap_or(0);
    let last = group
        .members
        .iter()
        .map(|f| f.last_unix_ns)
        .max()
        .unwrap_or(0);
    let span_s = (last.saturating_sub(first)) as f64 / NS_PER_S;
    let covered_s: f64 = group.members.iter().map(|f| f.covered_s).sum();
    let samples: u64 = group.members.iter().map(|f| f.samples).sum();
    // The VPA's confidence: days of history, or days' worth of samples
    // when there are fewer.
    let confidence_s = span_s.min(covered_s).max(0.0);
    let confidence_days = confidence_s / 86_400.0;
    let enough = confidence_s >= settings.min_history_s as f64 && !group.cpu.is_empty();
    let margin = 1.0 + settings.safety_margin;
    // Bounds need a positive confidence; a minute is the least there is.
    let conf = confidence_days.max(1.0 / 1440.0);
    let upper_factor = 1.0 + 1.0 / conf;
    let lower_factor = (1.0 + 0.001 / conf).powi(-2);

    let mut evidence = v1::RightsizeEvidence {
        first_sample_unix_ns: first,
        last_sample_unix_ns: last,
        ..Default::default()
    };

    // CPU.
    let pct = |h: &Histogram, p: f64| h.percentile(p).unwrap_or(0.0);
    let cpu_p50 = pct(&group.cpu, settings.lower_percentile);
    let cpu_p90 = pct(&group.cpu, settings.cpu_percentile);
    let cpu_p95 = pct(&group.cpu, settings.upper_percentile);
    evidence.cpu_p50_cores = cpu_p50;
    evidence.cpu_p90_cores = cpu_p90;
    evidence.cpu_p95_cores = cpu_p95;
    evidence.cpu_max_cores = group
        .members
        .iter()
        .filter_map(|f| f.cpu_max_cores)
        .fold(0.0, f64::max);
    let throttle_s: f64 = group.members.iter().map(|f| f.throttle_covered_s).sum();
    let throttled = (throttle_s > 0.0).then(|| {
        group
            .members
            .iter()
            .map(|f| f.cpu_throttled_ratio.unwrap_or(0.0) * f.throttle_covered_s)
            .sum::<f64>()
            / throttle_s
    });
    evidence.cpu_throttled_ratio = throttled;
    let mut cpu_target = cpu_p90 * margin;
    let mut cpu_driver = "p90";
    let mut cpu_words = format!(
        "CPU p90 {} +{}%",
        cores(cpu_p90),
        percent(settings.safety_margin)
    );
    if let Some(t) = throttled.filter(|t| *t >= settings.throttle_threshold) {
        let need = cpu_p95 * (1.0 + t) * margin;
        if need > cpu_target {
            cpu_target = need;
            cpu_driver = "throttling";
            cpu_words = format!(
                "CPU throttled in {}% of periods, so usage was capped by the limit: p95 {} × {:.2} +{}%",
                percent(t),
                cores(cpu_p95),
                1.0 + t,
                percent(settings.safety_margin)
            );
        }
    }
    let cpu_floor = settings.min_cpu_millicores as f64 / 1000.0;
    if cpu_target < cpu_floor {
        cpu_target = cpu_floor;
        cpu_driver = "floor";
        cpu_words = format!(
            "CPU floor {}m (p90 {})",
            settings.min_cpu_millicores,
            cores(cpu_p90)
        );
    }
    let cpu_lower = (cpu_p50 * margin * lower_factor)
        .max(cpu_floor)
        .min(cpu_target);
    let cpu_upper = (cpu_p95 * margin * upper_factor).max(cpu_target);

    // Memory: daily peaks, OOM days bumped (capped).
    let mut peak_max = group
        .members
        .iter()
        .filter_map(|f| f.memory_max_peak_bytes)
        .max()
        .unwrap_or(0);
    let quiet_peak = group
        .days
        .iter()
        .filter(|d| d.oom_kills == 0)
        .map(|d| d.peak_bytes)
        .max();
    let oom_bases = group.days.iter().filter_map(|d| d.oom_base_bytes);
    let baseline = quiet_peak.or_else(|| oom_bases.clone().min()).unwrap_or(0) as f64;
    let cap = baseline * settings.oom_bump_cap_ratio;
    let bump_of = |base: u64| -> (f64, bool) {
        let base = base as f64;
        let bump = (base + settings.oom_min_bump_bytes as f64).max(base * settings.oom_bump_ratio);
        if cap > 0.0 && bump > cap {
            (cap.max(base), true)
        } else {
            (bump, false)
        }
    };
    let mut memory = Histogram::new(MEMORY_BYTES);
    let half_life_s = settings.memory_half_life_s as f64;
    let mut latest_oom_day: Option<&DailyPeak> = None;
    for d in &group.days {
        let mut value = d.peak_bytes as f64;
        if d.oom_kills > 0 {
            if let Some(base) = d.oom_base_bytes {
                value = value.max(bump_of(base).0);
            }
            if latest_oom_day.is_none_or(|l| l.day_unix_ns < d.day_unix_ns) {
                latest_oom_day = Some(d);
            }
        }
        let age_s = clock.at_unix_ns.saturating_sub(d.day_unix_ns) as f64 / NS_PER_S;
        memory.add(value, histogram::decay(age_s, half_life_s));
    }
    evidence.memory_days = u32::try_from(
        group
            .days
            .iter()
            .map(|d| d.day_unix_ns)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
    )
    .unwrap_or(u32::MAX);
    let mem_p50 = pct(&memory, settings.lower_percentile);
    let mem_p90 = pct(&memory, settings.memory_percentile);
    let mem_p95 = pct(&memory, settings.upper_percentile);
    evidence.memory_p90_daily_peak_bytes = mem_p90 as u64;
    evidence.oom_kills = group.members.iter().map(|f| f.oom_kills).sum();
    evidence.last_oom_unix_ns = group
        .members
        .iter()
        .filter_map(|f| f.last_oom_unix_ns)
        .max()
        .unwrap_or(0);
    let mut mem_target = mem_p90 * margin;
    let mut mem_driver = "p90 daily peak";
    let mut mem_words = format!(
        "memory p90 of {} daily peaks {} +{}%",
        evidence.memory_days,
        bytes(mem_p90),
        percent(settings.safety_margin)
    );
    let mut limit_floor = 0.0;
    let mut limit_driver = "peak";
    if let Some((day, base)) = latest_oom_day.and_then(|d| d.oom_base_bytes.map(|base| (d, base))) {
        {
            let (bump, capped) = bump_of(base);
            evidence.oom_bump_bytes = (base as f64 + settings.oom_min_bump_bytes as f64)
                .max(base as f64 * settings.oom_bump_ratio)
                as u64;
            limit_floor = bump;
            limit_driver = "oom";
            let held = clock
                .at_unix_ns
                .saturating_sub(evidence.last_oom_unix_ns.max(day.day_unix_ns))
                <= settings.oom_hold_s.saturating_mul(1_000_000_000);
            let mut words = format!(
                "OOM-killed {}× at {}: memory ≥ max(used + {}, used × {})",
                evidence.oom_kills,
                bytes(base as f64),
                bytes(settings.oom_min_bump_bytes as f64),
                settings.oom_bump_ratio
            );
            if capped {
                words.push_str(&format!(
                    ", capped at {} ({}× the highest peak without an OOM kill): kills continue as memory grows, look for a leak",
                    bytes(bump),
                    settings.oom_bump_cap_ratio
                ));
            }
            if held && bump > mem_target {
                mem_target = bump;
                mem_driver = "oom";
                mem_words = format!("{words} = {}", bytes(bump));
            } else {
                mem_words = format!("{mem_words}; {words}");
            }
        }
    }
    let mem_floor = settings.min_memory_bytes as f64;
    if mem_target < mem_floor {
        mem_target = mem_floor;
        mem_driver = "floor";
        mem_words = format!("memory floor {}", bytes(mem_floor));
    }
    peak_max = peak_max.max(group.days.iter().map(|d| d.peak_bytes).max().unwrap_or(0));
    evidence.memory_max_peak_bytes = peak_max;
    let mem_lower = (mem_p50 * margin * lower_factor)
        .max(mem_floor)
        .min(mem_target);
    let mem_upper = (mem_p95 * margin * upper_factor).max(mem_target);
    let mem_limit = ((peak_max as f64).max(limit_floor) * (1.0 + settings.memory_limit_headroom))
        .max(mem_target);

    let cpu_request_m = millicores(cpu_target);
    let ratio = cpu_limit_ratio.or(settings.cpu_limit_ratio);
    let cpu_limit_m = ratio.map(|r| millicores(cpu_request_m as f64 / 1000.0 * r));

    let current = latest.map(current_resources).unwrap_or_default();
    let running = group
        .members
        .iter()
        .filter(|f| f.last_unix_ns >= clock.live_from_unix_ns)
        .count();
    // Instances that stopped within the window: restarts (Kubernetes gives
    // a restarted container a new id) and replaced replicas.
    evidence.restarts = u32::try_from(group.members.len() - running).unwrap_or(u32::MAX);
    let mut rec = v1::Recommendation {
        replicas: u32::try_from(running).unwrap_or(u32::MAX),
        current: Some(current),
        confidence: (confidence_s / settings.full_confidence_s as f64).clamp(0.0, 1.0),
        confidence_days,
        samples,
        window_s: span_s.round() as i64,
        enough_data: enough,
        ..Default::default()
    };
    if let Some(l) = latest {
        rec.namespace = l.id.namespace.clone();
        rec.workload_kind = l.id.workload_kind.clone();
        rec.workload = l.id.workload.clone();
        rec.container = l.id.container.clone();
    }
    let history = format!("{} of history", duration(span_s));
    if enough {
        rec.cpu_request_millicores = Some(cpu_request_m);
        rec.cpu_limit_millicores = cpu_limit_m;
        rec.memory_request_bytes = Some(round_up_mib(mem_target));
        rec.memory_limit_bytes = Some(round_up_mib(mem_limit));
        rec.cpu_lower_millicores = Some(millicores(cpu_lower));
        rec.cpu_upper_millicores = Some(millicores(cpu_upper));
        rec.memory_lower_bytes = Some(round_up_mib(mem_lower));
        rec.memory_upper_bytes = Some(round_up_mib(mem_upper));
        evidence.cpu_request_driver = cpu_driver.to_owned();
        evidence.cpu_limit_driver = if ratio.is_some() {
            "request × ratio"
        } else {
            "no limit asked"
        }
        .to_owned();
        evidence.memory_request_driver = mem_driver.to_owned();
        evidence.memory_limit_driver = limit_driver.to_owned();
        rec.reason = format!("{cpu_words}; {mem_words}; {history}");
    } else {
        for d in [
            &mut evidence.cpu_request_driver,
            &mut evidence.cpu_limit_driver,
            &mut evidence.memory_request_driver,
            &mut evidence.memory_limit_driver,
        ] {
            "not enough data".clone_into(d);
        }
        rec.reason = format!(
            "not enough data: {} of history, needs {} (import history with `upid-collector import prometheus` or `import parquet`)",
            duration(confidence_s),
            duration(settings.min_history_s as f64)
        );
    }

    // Monthly cost of the running replicas, at the current requests and at
    // the recommendation; both charge max(request, mean usage).
    let (mut now_cost, mut rec_cost) = (0.0, 0.0);
    for f in group
        .members
        .iter()
        .filter(|f| f.last_unix_ns >= clock.live_from_unix_ns)
    {
        let cpu_used = f
            .run_rate_cpu_mean_cores
            .or(f.cpu_mean_cores)
            .unwrap_or(0.0);
        let mem_used = f.run_rate_memory_mean_bytes.unwrap_or(0.0);
        let cur_cpu = f.cpu_request_cores.unwrap_or(0.0).max(cpu_used);
        let cur_mem = (f.memory_request_bytes.unwrap_or(0) as f64).max(mem_used);
        now_cost += pricing.hourly(&f.id.node, cur_cpu, cur_mem) * HOURS_PER_MONTH;
        if enough {
            let r_cpu = (cpu_request_m as f64 / 1000.0).max(cpu_used);
            let r_mem = (round_up_mib(mem_target) as f64).max(mem_used);
            rec_cost += pricing.hourly(&f.id.node, r_cpu, r_mem) * HOURS_PER_MONTH;
        }
    }
    if !enough {
        rec_cost = now_cost;
    }
    rec.monthly_cost_current = now_cost;
    rec.monthly_cost_recommended = rec_cost;
    rec.monthly_saving = now_cost - rec_cost;
    rec.evidence = Some(evidence);
    rec
}

fn current_resources(f: &SeriesFacts) -> v1::CurrentResources {
    v1::CurrentResources {
        cpu_request_millicores: f.cpu_request_cores.map(millicores),
        cpu_limit_millicores: f.cpu_limit_cores.map(millicores),
        memory_request_bytes: f.memory_request_bytes,
        memory_limit_bytes: f.memory_limit_bytes,
    }
}

/// Cores to whole millicores, rounded up.
fn millicores(cores: f64) -> u64 {
    if cores.is_finite() && cores > 0.0 {
        // Rounding error must not turn 250.0000001 into 251.
        ((cores * 1000.0) - 1e-6).ceil().max(0.0) as u64
    } else {
        0
    }
}

/// Bytes rounded up to whole MiB.
fn round_up_mib(b: f64) -> u64 {
    if !(b.is_finite() && b > 0.0) {
        return 0;
    }
    let mib = (b / MIB_BYTES as f64 - 1e-9).ceil().max(0.0) as u64;
    mib * MIB_BYTES
}

fn percent(ratio: f64) -> String {
    format!("{:.0}", ratio * 100.0)
}

fn cores(c: f64) -> String {
    format!("{}m", millicores(c))
}

/// Bytes as people read them (MiB/GiB, one decimal).
pub(crate) fn bytes(b: f64) -> String {
    let mib = b / MIB_BYTES as f64;
    if mib >= 1024.0 {
        format!("{:.1}Gi", mib / 1024.0)
    } else {
        format!("{mib:.0}Mi")
    }
}

/// Seconds as `14d`, `2h`, `35m`.
pub(crate) fn duration(s: f64) -> String {
    let s = s.max(0.0);
    if s >= 86_400.0 {
        let d = s / 86_400.0;
        if (d - d.round()).abs() < 0.05 {
            format!("{:.0}d", d)
        } else {
            format!("{d:.1}d")
        }
    } else if s >= 3600.0 {
        format!("{:.0}h", s / 3600.0)
    } else {
        format!("{:.0}m", s / 60.0)
    }
}

/// Groups series by workload and container name (or one group per
/// series), keyed for sorting.
pub fn group_series(
    facts: &[SeriesFacts],
    per_container: bool,
) -> HashMap<(String, String, String, String), Vec<&SeriesFacts>> {
    let mut groups: HashMap<_, Vec<&SeriesFacts>> = HashMap::new();
    for f in facts {
        let key = if per_container {
            (
                f.id.namespace.clone(),
                f.id.workload.clone(),
                f.id.container.clone(),
                f.id.series_key.clone(),
            )
        } else {
            (
                f.id.namespace.clone(),
                f.id.workload_kind.clone(),
                f.id.workload.clone(),
                f.id.container.clone(),
            )
        };
        groups.entry(key).or_default().push(f);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_up() {
        assert_eq!(millicores(0.25), 250);
        assert_eq!(millicores(0.2875), 288);
        assert_eq!(millicores(0.0), 0);
        assert_eq!(round_up_mib(100.0 * MIB_BYTES as f64), 100 * MIB_BYTES);
        assert_eq!(round_up_mib(100.5 * MIB_BYTES as f64), 101 * MIB_BYTES);
        assert_eq!(duration(14.0 * 86_400.0), "14d");
        assert_eq!(duration(7200.0), "2h");
    }
}

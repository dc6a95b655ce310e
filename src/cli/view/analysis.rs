//! The collector's analysis answers as JSON/YAML records: rightsizing
//! recommendations with their evidence (`upid rightsize`), idle workloads
//! (`upid idle`) and cost lines (`upid cost`).
//!
//! As everywhere in the CLI's JSON: field names carry their unit and are
//! stable; absent values are `null`, never `0`; timestamps come twice,
//! `*_unix_ns` and RFC 3339 UTC.

use std::cmp::Ordering;

use serde::Serialize;

use crate::cli::args::CostBy;
use crate::cli::units;
use crate::cli::view::inventory::normalize_kind;
use crate::wire::v1;

/// Requests and limits as they are now; `null` where there is none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResourcesView {
    /// CPU request.
    pub cpu_request_millicores: Option<u64>,
    /// CPU limit.
    pub cpu_limit_millicores: Option<u64>,
    /// Memory request.
    pub memory_request_bytes: Option<u64>,
    /// Memory limit.
    pub memory_limit_bytes: Option<u64>,
}

impl From<&v1::CurrentResources> for ResourcesView {
    fn from(c: &v1::CurrentResources) -> Self {
        ResourcesView {
            cpu_request_millicores: c.cpu_request_millicores,
            cpu_limit_millicores: c.cpu_limit_millicores,
            memory_request_bytes: c.memory_request_bytes,
            memory_limit_bytes: c.memory_limit_bytes,
        }
    }
}

/// What a recommendation was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceView {
    /// First sample used (Unix ns; `null` when none).
    pub first_sample_unix_ns: Option<i64>,
    /// First sample used, RFC 3339 UTC.
    pub first_sample: Option<String>,
    /// Latest sample used (Unix ns).
    pub last_sample_unix_ns: Option<i64>,
    /// Latest sample used, RFC 3339 UTC.
    pub last_sample: Option<String>,
    /// Decayed median CPU use, in cores.
    pub cpu_p50_cores: f64,
    /// Decayed 90th percentile of CPU use, in cores.
    pub cpu_p90_cores: f64,
    /// Decayed 95th percentile of CPU use, in cores.
    pub cpu_p95_cores: f64,
    /// Highest 1-minute mean CPU use, in cores.
    pub cpu_max_cores: f64,
    /// Throttled CFS periods / all periods (0..1); `null` without a CPU
    /// limit.
    pub cpu_throttled_ratio: Option<f64>,
    /// 90th percentile of the daily memory peaks (decayed).
    pub memory_p90_daily_peak_bytes: u64,
    /// Highest memory peak seen.
    pub memory_max_peak_bytes: u64,
    /// Days that contributed a memory peak.
    pub memory_days: u32,
    /// OOM kills in the window.
    pub oom_kills: u64,
    /// Latest OOM kill in the window (Unix ns; `null` when none).
    pub last_oom_unix_ns: Option<i64>,
    /// Latest OOM kill, RFC 3339 UTC.
    pub last_oom: Option<String>,
    /// The memory recommendation an OOM forced, before its cap (`null`
    /// when none).
    pub oom_bump_bytes: Option<u64>,
    /// What drove the CPU request: `p90`, `throttling`, `floor`, `peak`,
    /// `oom`, `not enough data`, `no limit asked`.
    pub cpu_request_driver: Option<String>,
    /// What drove the CPU limit.
    pub cpu_limit_driver: Option<String>,
    /// What drove the memory request.
    pub memory_request_driver: Option<String>,
    /// What drove the memory limit.
    pub memory_limit_driver: Option<String>,
    /// Restarts of the containers in the window.
    pub restarts: u32,
}

impl From<&v1::RightsizeEvidence> for EvidenceView {
    fn from(e: &v1::RightsizeEvidence) -> Self {
        let at = |t: i64| (t > 0).then_some(t);
        EvidenceView {
            first_sample_unix_ns: at(e.first_sample_unix_ns),
            first_sample: units::rfc3339(e.first_sample_unix_ns),
            last_sample_unix_ns: at(e.last_sample_unix_ns),
            last_sample: units::rfc3339(e.last_sample_unix_ns),
            cpu_p50_cores: e.cpu_p50_cores,
            cpu_p90_cores: e.cpu_p90_cores,
            cpu_p95_cores: e.cpu_p95_cores,
            cpu_max_cores: e.cpu_max_cores,
            cpu_throttled_ratio: e.cpu_throttled_ratio,
            memory_p90_daily_peak_bytes: e.memory_p90_daily_peak_bytes,
            memory_max_peak_bytes: e.memory_max_peak_bytes,
            memory_days: e.memory_days,
            oom_kills: e.oom_kills,
            last_oom_unix_ns: at(e.last_oom_unix_ns),
            last_oom: units::rfc3339(e.last_oom_unix_ns),
            oom_bump_bytes: (e.oom_bump_bytes > 0).then_some(e.oom_bump_bytes),
            cpu_request_driver: non_empty(&e.cpu_request_driver),
            cpu_limit_driver: non_empty(&e.cpu_limit_driver),
            memory_request_driver: non_empty(&e.memory_request_driver),
            memory_limit_driver: non_empty(&e.memory_limit_driver),
            restarts: e.restarts,
        }
    }
}

/// One rightsizing recommendation: a workload's container (replicas
/// pooled), or one container instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecommendationView {
    /// Kubernetes namespace or compose project (`null` when none).
    pub namespace: Option<String>,
    /// Short lower-case kind (`deployment`, `compose`, ...; the names of
    /// `get workloads`); `null` when unknown.
    pub workload_kind: Option<String>,
    /// Workload name (`null` when none).
    pub workload: Option<String>,
    /// Container name.
    pub container: String,
    /// Grouped by container: the container's id (or series key).
    pub container_id: Option<String>,
    /// Grouped by container: its node.
    pub node_name: Option<String>,
    /// Containers whose samples were pooled.
    pub replicas: u32,
    /// Requests and limits now.
    pub current: ResourcesView,
    /// Recommended CPU request (`null`: not enough data).
    pub cpu_request_millicores: Option<u64>,
    /// Recommended CPU limit (`null`: not enough data, or none asked for).
    pub cpu_limit_millicores: Option<u64>,
    /// Recommended memory request.
    pub memory_request_bytes: Option<u64>,
    /// Recommended memory limit.
    pub memory_limit_bytes: Option<u64>,
    /// Lower bound of the CPU request.
    pub cpu_lower_millicores: Option<u64>,
    /// Upper bound of the CPU request (widened for short histories).
    pub cpu_upper_millicores: Option<u64>,
    /// Lower bound of the memory request.
    pub memory_lower_bytes: Option<u64>,
    /// Upper bound of the memory request.
    pub memory_upper_bytes: Option<u64>,
    /// 0..1: history against the collector's full-confidence history.
    pub confidence: f64,
    /// The VPA's confidence: days of history (or days' worth of samples).
    pub confidence_days: f64,
    /// 1-minute samples pooled.
    pub samples: u64,
    /// Span of history they cover, in seconds.
    pub window_s: i64,
    /// What drove the numbers, in one line.
    pub reason: String,
    /// False when the recommendation is unset for lack of history.
    pub enough_data: bool,
    /// Monthly cost (730 h) at the current requests (or usage, if higher).
    pub monthly_cost_current: f64,
    /// Monthly cost at the recommendation.
    pub monthly_cost_recommended: f64,
    /// current − recommended (negative: it needs more than it asks for).
    pub monthly_saving: f64,
    /// Currency of the costs (e.g. `USD`).
    pub currency: String,
    /// What the numbers were computed from (`null` when not sent).
    pub evidence: Option<EvidenceView>,
}

impl RecommendationView {
    /// The view of `r`, with costs in `currency`.
    pub fn new(r: &v1::Recommendation, currency: &str) -> Self {
        RecommendationView {
            namespace: non_empty(&r.namespace),
            workload_kind: (!r.workload_kind.is_empty()).then(|| normalize_kind(&r.workload_kind)),
            workload: non_empty(&r.workload),
            container: r.container.clone(),
            container_id: non_empty(&r.container_id),
            node_name: non_empty(&r.node_name),
            replicas: r.replicas,
            current: r
                .current
                .as_ref()
                .map(ResourcesView::from)
                .unwrap_or_default(),
            cpu_request_millicores: r.cpu_request_millicores,
            cpu_limit_millicores: r.cpu_limit_millicores,
            memory_request_bytes: r.memory_request_bytes,
            memory_limit_bytes: r.memory_limit_bytes,
            cpu_lower_millicores: r.cpu_lower_millicores,
            cpu_upper_millicores: r.cpu_upper_millicores,
            memory_lower_bytes: r.memory_lower_bytes,
            memory_upper_bytes: r.memory_upper_bytes,
            confidence: r.confidence,
            confidence_days: r.confidence_days,
            samples: r.samples,
            window_s: r.window_s,
            reason: r.reason.clone(),
            enough_data: r.enough_data,
            monthly_cost_current: r.monthly_cost_current,
            monthly_cost_recommended: r.monthly_cost_recommended,
            monthly_saving: r.monthly_saving,
            currency: currency.to_owned(),
            evidence: r.evidence.as_ref().map(EvidenceView::from),
        }
    }

    /// The recommendations of a response.
    pub fn all(r: &v1::RightsizeResponse) -> Vec<RecommendationView> {
        r.recommendations
            .iter()
            .map(|x| RecommendationView::new(x, &r.currency))
            .collect()
    }

    /// OOM kills in its evidence.
    pub fn oom_kills(&self) -> u64 {
        self.evidence.as_ref().map_or(0, |e| e.oom_kills)
    }

    /// Throttled share of CFS periods in its evidence.
    pub fn throttled_ratio(&self) -> Option<f64> {
        self.evidence.as_ref().and_then(|e| e.cpu_throttled_ratio)
    }
}

/// A workload and whether it is idle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleView {
    /// Kubernetes namespace or compose project (`null` when none).
    pub namespace: Option<String>,
    /// Short lower-case kind; `null` when unknown.
    pub workload_kind: Option<String>,
    /// Workload name.
    pub workload: String,
    /// Containers of the workload still reporting.
    pub replicas: u32,
    /// Whether it is idle now.
    pub idle: bool,
    /// Start of the quiet stretch that runs to now (Unix ns; `null` when
    /// the latest minute was active).
    pub idle_since_unix_ns: Option<i64>,
    /// Start of the quiet stretch, RFC 3339 UTC.
    pub idle_since: Option<String>,
    /// Length of the quiet stretch, in seconds.
    pub idle_for_s: i64,
    /// Highest 1-minute CPU of any replica over the quiet stretch.
    pub cpu_max_cores: f64,
    /// Mean CPU per replica over the quiet stretch.
    pub cpu_mean_cores: f64,
    /// Highest 1-minute network rate (received + sent) of any replica.
    pub net_max_bytes_per_s: f64,
    /// Traffic of all replicas over the quiet stretch.
    pub net_bytes_total: u64,
    /// CPU threshold that applied.
    pub cpu_threshold_cores: f64,
    /// Network threshold that applied.
    pub net_threshold_bytes_per_s: f64,
    /// Window looked at, in seconds.
    pub window_s: i64,
    /// What it cost since it went quiet.
    pub cost_since_idle: f64,
    /// What it costs per month at today's rate.
    pub monthly_cost: f64,
    /// Currency of the costs.
    pub currency: String,
    /// Why it is (or is not) idle.
    pub reason: String,
    /// Latest sample (Unix ns; `null` when none).
    pub last_sample_unix_ns: Option<i64>,
    /// Latest sample, RFC 3339 UTC.
    pub last_sample: Option<String>,
}

impl IdleView {
    /// The view of `w`, with costs in `currency`.
    pub fn new(w: &v1::IdleWorkload, currency: &str) -> Self {
        IdleView {
            namespace: non_empty(&w.namespace),
            workload_kind: (!w.workload_kind.is_empty()).then(|| normalize_kind(&w.workload_kind)),
            workload: w.workload.clone(),
            replicas: w.replicas,
            idle: w.idle,
            idle_since_unix_ns: (w.idle_since_unix_ns > 0).then_some(w.idle_since_unix_ns),
            idle_since: units::rfc3339(w.idle_since_unix_ns),
            idle_for_s: w.idle_for_s,
            cpu_max_cores: w.cpu_max_cores,
            cpu_mean_cores: w.cpu_mean_cores,
            net_max_bytes_per_s: w.net_max_bytes_per_s,
            net_bytes_total: w.net_bytes_total,
            cpu_threshold_cores: w.cpu_threshold_cores,
            net_threshold_bytes_per_s: w.net_threshold_bytes_per_s,
            window_s: w.window_s,
            cost_since_idle: w.cost_since_idle,
            monthly_cost: w.monthly_cost,
            currency: currency.to_owned(),
            reason: w.reason.clone(),
            last_sample_unix_ns: (w.last_sample_unix_ns > 0).then_some(w.last_sample_unix_ns),
            last_sample: units::rfc3339(w.last_sample_unix_ns),
        }
    }

    /// The workloads of a response.
    pub fn all(r: &v1::IdleResponse) -> Vec<IdleView> {
        r.workloads
            .iter()
            .map(|w| IdleView::new(w, &r.currency))
            .collect()
    }
}

/// Default prices of the collector.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PricingView {
    /// Currency code, e.g. `USD`.
    pub currency: String,
    /// Price of one CPU core for one hour.
    pub cpu_core_hour: f64,
    /// Price of one GiB of memory for one hour.
    pub memory_gib_hour: f64,
}

/// What one group of containers cost over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostLineView {
    /// The group: namespace, `kind/namespace/name`, node, image or
    /// container id (`null` on the total).
    pub key: Option<String>,
    /// Namespace, where the grouping has one.
    pub namespace: Option<String>,
    /// Short lower-case workload kind, where the grouping has one.
    pub workload_kind: Option<String>,
    /// Workload name, where the grouping has one.
    pub workload: Option<String>,
    /// Containers charged.
    pub containers: u32,
    /// Charged over the window on max(request, usage).
    pub cost: f64,
    /// Its CPU part.
    pub cpu_cost: f64,
    /// Its memory part.
    pub memory_cost: f64,
    /// Requested and never used, over the window.
    pub waste: f64,
    /// The window's rate over a month (730 h).
    pub monthly_cost: f64,
    /// Waste over a month.
    pub monthly_waste: f64,
    /// What applying the recommendations would save per month.
    pub monthly_saving: f64,
    /// CPU requested, in cores: the mean over the part of the window the
    /// group has data for, summed over its containers.
    pub cpu_request_cores: f64,
    /// CPU used, in cores (mean, summed as above).
    pub cpu_usage_cores: f64,
    /// Memory requested (mean, summed as above).
    pub memory_request_bytes: u64,
    /// Memory used (mean, summed as above).
    pub memory_usage_bytes: u64,
    /// Hours of container runtime charged.
    pub hours: f64,
}

impl From<&v1::CostLine> for CostLineView {
    fn from(l: &v1::CostLine) -> Self {
        CostLineView {
            key: non_empty(&l.key),
            namespace: non_empty(&l.namespace),
            workload_kind: (!l.workload_kind.is_empty()).then(|| normalize_kind(&l.workload_kind)),
            workload: non_empty(&l.workload),
            containers: l.containers,
            cost: l.cost,
            cpu_cost: l.cpu_cost,
            memory_cost: l.memory_cost,
            waste: l.waste,
            monthly_cost: l.monthly_cost,
            monthly_waste: l.monthly_waste,
            monthly_saving: l.monthly_saving,
            cpu_request_cores: l.cpu_request_cores,
            cpu_usage_cores: l.cpu_usage_cores,
            memory_request_bytes: whole_bytes(l.memory_request_bytes),
            memory_usage_bytes: whole_bytes(l.memory_usage_bytes),
            hours: l.hours,
        }
    }
}

/// What `upid cost` prints: the window, the prices, a line per group and
/// the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostView {
    /// What a line is: `namespace`, `workload`, `node`, `image`,
    /// `container`.
    pub group_by: String,
    /// Length of the window charged, in seconds.
    pub window_s: i64,
    /// Start of the window (Unix ns).
    pub start_unix_ns: i64,
    /// Start of the window, RFC 3339 UTC.
    pub start: Option<String>,
    /// End of the window (Unix ns).
    pub end_unix_ns: i64,
    /// End of the window, RFC 3339 UTC.
    pub end: Option<String>,
    /// Default prices (nodes may have their own).
    pub pricing: PricingView,
    /// One per group.
    pub lines: Vec<CostLineView>,
    /// Every line together.
    pub total: CostLineView,
}

impl CostView {
    /// The view of a response to a request grouped `by`.
    pub fn new(r: &v1::CostResponse, by: CostBy) -> Self {
        let pricing = r
            .pricing
            .as_ref()
            .map(|p| PricingView {
                currency: p.currency.clone(),
                cpu_core_hour: p.cpu_core_hour,
                memory_gib_hour: p.memory_gib_hour,
            })
            .unwrap_or_default();
        let total = r.total.clone().unwrap_or_default();
        CostView {
            group_by: by.name().to_owned(),
            window_s: r.end_unix_ns.saturating_sub(r.start_unix_ns).max(0) / 1_000_000_000,
            start_unix_ns: r.start_unix_ns,
            start: units::rfc3339(r.start_unix_ns),
            end_unix_ns: r.end_unix_ns,
            end: units::rfc3339(r.end_unix_ns),
            pricing,
            lines: r.lines.iter().map(CostLineView::from).collect(),
            total: CostLineView {
                key: None,
                ..CostLineView::from(&total)
            },
        }
    }
}

/// Biggest monthly saving first, then by namespace, workload, container,
/// node and id (a stable order, whatever order the collector sent).
pub fn sort_recommendations(rows: &mut [RecommendationView]) {
    rows.sort_by(|a, b| desc(a.monthly_saving, b.monthly_saving).then_with(|| by_name(a, b)));
}

/// Idle workloads first, costliest first, then by namespace, kind, name.
pub fn sort_idle(rows: &mut [IdleView]) {
    rows.sort_by(|a, b| {
        b.idle
            .cmp(&a.idle)
            .then_with(|| desc(a.monthly_cost, b.monthly_cost))
            .then_with(|| {
                (&a.namespace, &a.workload_kind, &a.workload).cmp(&(
                    &b.namespace,
                    &b.workload_kind,
                    &b.workload,
                ))
            })
    });
}

/// Costliest per month first, then by key.
pub fn sort_cost_lines(lines: &mut [CostLineView]) {
    lines.sort_by(|a, b| desc(a.monthly_cost, b.monthly_cost).then_with(|| a.key.cmp(&b.key)));
}

/// Highest first; NaN counts as equal.
pub(crate) fn desc(a: f64, b: f64) -> Ordering {
    b.partial_cmp(&a).unwrap_or(Ordering::Equal)
}

/// By namespace, workload, container, node, id.
pub(crate) fn by_name(a: &RecommendationView, b: &RecommendationView) -> Ordering {
    (
        &a.namespace,
        &a.workload,
        &a.container,
        &a.node_name,
        &a.container_id,
    )
        .cmp(&(
            &b.namespace,
            &b.workload,
            &b.container,
            &b.node_name,
            &b.container_id,
        ))
}

fn whole_bytes(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

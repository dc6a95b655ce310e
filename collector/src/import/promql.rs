//! The PromQL the Prometheus import runs (docs/export.md lists it).
//!
//! Every range query is evaluated at the *end* of each interval: the value
//! at `t` describes the row `[t - step, t)`, so gauges use `[step]` windows
//! that tile time exactly. `rate()` needs at least two samples in its
//! window, so CPU, throttling and network use [`rate_window`]
//! (`max(step, 2m)`): exact tiling from a 2-minute step up, and at the
//! default 60 s step the mean over the 2 minutes ending at the interval's
//! end (4 samples at a 30 s scrape interval).

use std::time::Duration;

/// Selector for the containers cAdvisor reports: not the pod-level cgroup
/// (`container=""`) and not the pause container (`container="POD"`).
pub const CONTAINERS: &str = r#"container!="",container!="POD""#;

/// Labels one row's identity is made of (cAdvisor's `id` is the cgroup
/// path, which holds the container id).
pub const IDENTITY: &str = "id, namespace, pod, container, image, node, instance";

/// Shortest `rate()` window.
pub const MIN_RATE_WINDOW: Duration = Duration::from_secs(120);

/// The `rate()` window for `step`: `max(step, 2m)`.
pub fn rate_window(step: Duration) -> Duration {
    step.max(MIN_RATE_WINDOW)
}

/// A PromQL duration in whole seconds (`60s`).
pub fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// One query the import runs, and what its values become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Name of the metric in the staging table (`cpu`, `mem_avg`, ...).
    pub metric: &'static str,
    /// The PromQL.
    pub promql: String,
    /// Range query (one value per step) or instant query at the chunk end
    /// over the whole chunk.
    pub range: bool,
}

/// The range queries, evaluated every `step`.
pub fn range_queries(step: Duration) -> Vec<Query> {
    let s = seconds(step);
    let w = seconds(rate_window(step));
    let range = |metric, promql: String| Query {
        metric,
        promql,
        range: true,
    };
    vec![
        range(
            "cpu",
            format!(
                "max by ({IDENTITY}) (rate(container_cpu_usage_seconds_total{{{CONTAINERS}}}[{w}]))"
            ),
        ),
        range(
            "throttled",
            format!(
                "max by ({IDENTITY}) (clamp_max(\
                 rate(container_cpu_cfs_throttled_periods_total{{{CONTAINERS}}}[{w}]) \
                 / rate(container_cpu_cfs_periods_total{{{CONTAINERS}}}[{w}]), 1))"
            ),
        ),
        range(
            "mem_avg",
            format!(
                "max by ({IDENTITY}) (avg_over_time(container_memory_working_set_bytes{{{CONTAINERS}}}[{s}]))"
            ),
        ),
        range(
            "mem_max",
            format!(
                "max by ({IDENTITY}) (max_over_time(container_memory_working_set_bytes{{{CONTAINERS}}}[{s}]))"
            ),
        ),
        // The counter's increase between the last samples at or before the
        // interval's two ends: no extrapolation (increase() would turn one
        // OOM into 1.33 or 2), a reset counts nothing.
        range(
            "oom",
            format!(
                "max by ({IDENTITY}) (clamp_min(container_oom_events_total{{{CONTAINERS}}} \
                 - container_oom_events_total{{{CONTAINERS}}} offset {s}, 0))"
            ),
        ),
        // kube-state-metrics: restarts in the interval of containers whose
        // last termination was an OOM kill.
        range(
            "ksm_oom",
            format!(
                "max by (namespace, pod, container) (clamp_min(\
                 kube_pod_container_status_restarts_total \
                 - kube_pod_container_status_restarts_total offset {s}, 0)) \
                 and on (namespace, pod, container) (max by (namespace, pod, container) \
                 (kube_pod_container_status_last_terminated_reason{{reason=\"OOMKilled\"}}) == 1)"
            ),
        ),
        // Network is per pod (cAdvisor reports it on the pod's sandbox and
        // sometimes its pod cgroup too): the max per interface removes
        // those duplicates, the sum adds the interfaces. Bytes per second;
        // the import multiplies by the step.
        range(
            "net_rx",
            format!(
                "sum by (namespace, pod) (max by (namespace, pod, interface) \
                 (rate(container_network_receive_bytes_total{{pod!=\"\"}}[{w}])))"
            ),
        ),
        range(
            "net_tx",
            format!(
                "sum by (namespace, pod) (max by (namespace, pod, interface) \
                 (rate(container_network_transmit_bytes_total{{pod!=\"\"}}[{w}])))"
            ),
        ),
    ]
}

/// The instant queries, evaluated at the end of each chunk over the whole
/// chunk (`window`): requests, limits and owners change rarely, and one
/// value per pod per chunk is far less to fetch than one per step.
pub fn chunk_queries(window: Duration) -> Vec<Query> {
    let d = seconds(window);
    let instant = |metric, promql: String| Query {
        metric,
        promql,
        range: false,
    };
    vec![
        instant(
            "requests",
            format!(
                "max by (namespace, pod, container, resource) (max_over_time(\
                 kube_pod_container_resource_requests{{resource=~\"cpu|memory\"}}[{d}]))"
            ),
        ),
        instant(
            "limits",
            format!(
                "max by (namespace, pod, container, resource) (max_over_time(\
                 kube_pod_container_resource_limits{{resource=~\"cpu|memory\"}}[{d}]))"
            ),
        ),
        instant(
            "owners",
            format!(
                "max by (namespace, pod, owner_kind, owner_name) (max_over_time(kube_pod_owner[{d}]))"
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_window_is_the_step_but_at_least_two_minutes() {
        assert_eq!(
            rate_window(Duration::from_secs(60)),
            Duration::from_secs(120)
        );
        assert_eq!(
            rate_window(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn queries_use_the_step_and_window() {
        let q = range_queries(Duration::from_secs(60));
        let cpu = &q[0];
        assert_eq!(
            cpu.promql,
            "max by (id, namespace, pod, container, image, node, instance) \
             (rate(container_cpu_usage_seconds_total{container!=\"\",container!=\"POD\"}[120s]))"
        );
        assert!(q.iter().any(|q| q.promql.contains("offset 60s")));
        assert!(
            chunk_queries(Duration::from_secs(86_400))
                .iter()
                .all(|q| q.promql.contains("[86400s]"))
        );
    }
}

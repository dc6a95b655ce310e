//! Cost lines: charged cost (max(request, usage) per interval, as OpenCost
//! charges), waste (requested and unused), monthly run rates, and the
//! saving the rightsizing recommendations would bring, grouped by
//! namespace, workload, node, image or container.

use std::collections::{BTreeMap, HashMap};

use upid::wire::v1;

use super::monthly;
use super::rightsize::Clock;
use crate::store::{SeriesCost, SeriesFacts};

/// Each running series' share of its workload recommendation's monthly
/// saving (the saving split evenly over the running replicas).
pub fn saving_per_series(
    facts: &[SeriesFacts],
    recs: &[v1::Recommendation],
    clock: Clock,
) -> HashMap<String, f64> {
    let saving: HashMap<(&str, &str, &str, &str), f64> = recs
        .iter()
        .filter(|r| r.enough_data)
        .map(|r| {
            (
                (
                    r.namespace.as_str(),
                    r.workload_kind.as_str(),
                    r.workload.as_str(),
                    r.container.as_str(),
                ),
                r.monthly_saving,
            )
        })
        .collect();
    let mut live: HashMap<(&str, &str, &str, &str), Vec<&str>> = HashMap::new();
    for f in facts
        .iter()
        .filter(|f| f.last_unix_ns >= clock.live_from_unix_ns)
    {
        live.entry((
            f.id.namespace.as_str(),
            f.id.workload_kind.as_str(),
            f.id.workload.as_str(),
            f.id.container.as_str(),
        ))
        .or_default()
        .push(f.id.series_key.as_str());
    }
    let mut out = HashMap::new();
    for (key, series) in live {
        if let Some(s) = saving.get(&key) {
            let share = s / series.len() as f64;
            for k in series {
                out.insert(k.to_owned(), share);
            }
        }
    }
    out
}

/// Groups series costs into lines (most expensive first) and a total.
pub fn group(
    costs: &[SeriesCost],
    savings: &HashMap<String, f64>,
    grouping: v1::CostGrouping,
    clock: Clock,
    window_from_unix_ns: i64,
) -> (Vec<v1::CostLine>, v1::CostLine) {
    #[derive(Default)]
    struct Acc {
        line: v1::CostLine,
        first_unix_ns: i64,
        cpu_req: f64,
        cpu_use: f64,
        mem_req: f64,
        mem_use: f64,
    }
    let add = |acc: &mut Acc, c: &SeriesCost| {
        let live = c.last_unix_ns >= clock.live_from_unix_ns;
        let l = &mut acc.line;
        l.containers = l.containers.saturating_add(1);
        l.cost += c.cost;
        l.cpu_cost += c.cpu_cost;
        l.memory_cost += c.memory_cost;
        l.waste += c.waste;
        l.monthly_cost += monthly(c.run_rate_cost, c.run_rate_covered_s, live);
        l.monthly_waste += monthly(c.run_rate_waste, c.run_rate_covered_s, live);
        l.monthly_saving += savings.get(&c.id.series_key).copied().unwrap_or(0.0);
        l.hours += c.covered_s / 3600.0;
        acc.cpu_req += c.cpu_request_core_s;
        acc.cpu_use += c.cpu_usage_core_s;
        acc.mem_req += c.memory_request_byte_s;
        acc.mem_use += c.memory_usage_byte_s;
        acc.first_unix_ns = if acc.line.containers == 1 {
            c.first_unix_ns
        } else {
            acc.first_unix_ns.min(c.first_unix_ns)
        };
    };
    let finish = |mut acc: Acc| {
        // Means over the stretch the group has data for: concurrent cores
        // and bytes, summed over its containers.
        let span_s = clock
            .at_unix_ns
            .saturating_sub(acc.first_unix_ns.max(window_from_unix_ns))
            .max(1) as f64
            / 1e9;
        acc.line.cpu_request_cores = acc.cpu_req / span_s;
        acc.line.cpu_usage_cores = acc.cpu_use / span_s;
        acc.line.memory_request_bytes = acc.mem_req / span_s;
        acc.line.memory_usage_bytes = acc.mem_use / span_s;
        acc.line
    };
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = Acc::default();
    for c in costs {
        let id = &c.id;
        let key = match grouping {
            v1::CostGrouping::Namespace => id.namespace.clone(),
            v1::CostGrouping::Node => id.node.clone(),
            v1::CostGrouping::Image => id.image.clone(),
            v1::CostGrouping::Container => {
                if id.container_id.is_empty() {
                    id.series_key.clone()
                } else {
                    id.container_id.clone()
                }
            }
            v1::CostGrouping::Workload | v1::CostGrouping::Unspecified => {
                format!("{}/{}/{}", id.workload_kind, id.namespace, id.workload)
            }
        };
        let acc = groups.entry(key.clone()).or_default();
        if acc.line.containers == 0 {
            acc.line.key = key;
            match grouping {
                v1::CostGrouping::Node | v1::CostGrouping::Image => {}
                v1::CostGrouping::Namespace => acc.line.namespace = id.namespace.clone(),
                _ => {
                    acc.line.namespace = id.namespace.clone();
                    acc.line.workload_kind = id.workload_kind.clone();
                    acc.line.workload = id.workload.clone();
                }
            }
        }
        add(acc, c);
        add(&mut total, c);
    }
    let mut lines: Vec<v1::CostLine> = groups.into_values().map(finish).collect();
    lines.sort_by(|a, b| b.cost.total_cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
    (lines, finish(total))
}

//! Every knob of the analysis, with the defaults docs/analysis.md lists.
//! Read from the `analysis:` and `pricing:` sections of the collector's
//! config file; every field is optional there.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

/// Seconds in a day.
pub const DAY_S: i64 = 86_400;

/// Hours in the month costs are projected to (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Bytes in a GiB (prices are per GiB-hour).
pub const GIB_BYTES: f64 = 1_073_741_824.0;

/// Bytes in a MiB (memory recommendations are rounded up to whole MiB).
pub const MIB_BYTES: u64 = 1_048_576;

/// Settings of all three analyses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisSettings {
    /// History read, ending now (seconds).
    pub history_s: i64,
    /// A container not reported for this long no longer runs: it is not
    /// rightsized, counted as a replica, or projected into monthly costs.
    pub stale_after_s: i64,
    /// Rightsizing.
    pub rightsize: RightsizeSettings,
    /// Idle detection.
    pub idle: IdleSettings,
    /// Cost reports.
    pub cost: CostSettings,
}

impl Default for AnalysisSettings {
    fn default() -> AnalysisSettings {
        AnalysisSettings {
            history_s: 14 * DAY_S,
            stale_after_s: 15 * 60,
            rightsize: RightsizeSettings::default(),
            idle: IdleSettings::default(),
            cost: CostSettings::default(),
        }
    }
}

/// Rightsizing: the VPA recommender's parameters and upid's additions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RightsizeSettings {
    /// Half-life of CPU samples' weight (VPA: 24 h).
    pub cpu_half_life_s: i64,
    /// Half-life of daily memory peaks' weight (VPA: 24 h).
    pub memory_half_life_s: i64,
    /// Percentile of CPU usage that becomes the request (VPA: 0.9).
    pub cpu_percentile: f64,
    /// Percentile of daily memory peaks that becomes the request (VPA: 0.9).
    pub memory_percentile: f64,
    /// Percentiles of the lower and upper bounds (VPA: 0.5 and 0.95).
    pub lower_percentile: f64,
    /// See `lower_percentile`.
    pub upper_percentile: f64,
    /// Added on top of every recommendation (VPA: 0.15).
    pub safety_margin: f64,
    /// Smallest CPU request recommended (millicores).
    pub min_cpu_millicores: u64,
    /// Smallest memory request recommended (bytes).
    pub min_memory_bytes: u64,
    /// After an OOM kill memory is at least max(used + this, used × ratio)
    /// (VPA: 100 MiB and 1.2).
    pub oom_min_bump_bytes: u64,
    /// See `oom_min_bump_bytes`.
    pub oom_bump_ratio: f64,
    /// An OOM bump never goes above this many times the highest daily peak
    /// of days without an OOM kill, so repeated kills (a leak) cannot ratchet
    /// memory up without end.
    pub oom_bump_cap_ratio: f64,
    /// For this long after an OOM kill its bump holds the memory request
    /// up; afterwards the bumped day only counts in the percentile, with
    /// its decayed weight.
    pub oom_hold_s: i64,
    /// Throttled share of CFS periods from which CPU usage counts as capped
    /// by the limit (so the need is higher than what was used).
    pub throttle_threshold: f64,
    /// Memory limit = highest peak (or OOM bump) × (1 + this).
    pub memory_limit_headroom: f64,
    /// CPU limit = request × this; unset: no CPU limit is recommended
    /// (a request is what the scheduler and the cost need; a CPU limit only
    /// throttles).
    pub cpu_limit_ratio: Option<f64>,
    /// Less history than this (VPA-style confidence, in seconds) gives
    /// "not enough data" instead of a number.
    pub min_history_s: i64,
    /// History at which confidence reaches 1.
    pub full_confidence_s: i64,
}

impl Default for RightsizeSettings {
    fn default() -> RightsizeSettings {
        RightsizeSettings {
            cpu_half_life_s: DAY_S,
            memory_half_life_s: DAY_S,
            cpu_percentile: 0.9,
            memory_percentile: 0.9,
            lower_percentile: 0.5,
            upper_percentile: 0.95,
            safety_margin: 0.15,
            min_cpu_millicores: 10,
            min_memory_bytes: 20 * MIB_BYTES,
            oom_min_bump_bytes: 100 * MIB_BYTES,
            oom_bump_ratio: 1.2,
            oom_bump_cap_ratio: 2.0,
            oom_hold_s: 7 * DAY_S,
            throttle_threshold: 0.05,
            memory_limit_headroom: 0.2,
            cpu_limit_ratio: None,
            min_history_s: DAY_S,
            full_confidence_s: 7 * DAY_S,
        }
    }
}

/// Idle detection thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdleSettings {
    /// A replica is active in a minute where it used at least this much CPU
    /// (millicores).
    pub cpu_threshold_millicores: u64,
    /// ... or moved at least this much network traffic (rx + tx, bytes/s).
    pub net_threshold_bytes_per_s: f64,
    /// A workload is idle when none of its replicas was active for this
    /// long (seconds).
    pub window_s: i64,
}

impl Default for IdleSettings {
    fn default() -> IdleSettings {
        IdleSettings {
            cpu_threshold_millicores: 20,
            net_threshold_bytes_per_s: 1024.0,
            window_s: 3 * DAY_S,
        }
    }
}

/// Cost reports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostSettings {
    /// Window `upid cost` charges when the request does not say (seconds).
    pub window_s: i64,
    /// Monthly figures scale the cost of this last stretch (seconds) of
    /// each running container to 730 hours.
    pub run_rate_s: i64,
}

impl Default for CostSettings {
    fn default() -> CostSettings {
        CostSettings {
            window_s: 7 * DAY_S,
            run_rate_s: DAY_S,
        }
    }
}

/// Prices: a default and per-node overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pricing {
    /// ISO 4217 code shown with every amount.
    pub currency: String,
    /// Price of one vCPU (core) for one hour.
    pub cpu_core_hour: f64,
    /// Price of one GiB of memory for one hour.
    pub memory_gib_hour: f64,
    /// Prices of particular nodes, by node name.
    pub nodes: BTreeMap<String, NodePrice>,
    /// Prices of nodes by their labels (Kubernetes Node labels, Docker
    /// engine labels), for nodes not listed in `nodes`: the first rule
    /// whose every selector label the node has applies.
    pub node_labels: Vec<LabelPrice>,
}

/// Prices of the nodes whose labels match `selector`; an unset price takes
/// the default.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LabelPrice {
    /// Labels a node must all have, with these values.
    pub selector: BTreeMap<String, String>,
    /// Price of one vCPU-hour on these nodes.
    pub cpu_core_hour: Option<f64>,
    /// Price of one GiB-hour on these nodes.
    pub memory_gib_hour: Option<f64>,
}

/// Prices of one node; an unset field takes the default.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodePrice {
    /// Price of one vCPU-hour on this node.
    pub cpu_core_hour: Option<f64>,
    /// Price of one GiB-hour on this node.
    pub memory_gib_hour: Option<f64>,
}

impl Default for Pricing {
    /// OpenCost's default on-demand prices (its `default.json`): USD
    /// 0.031611 per vCPU-hour and 0.004237 per GiB-hour.
    fn default() -> Pricing {
        Pricing {
            currency: "USD".to_owned(),
            cpu_core_hour: 0.031_611,
            memory_gib_hour: 0.004_237,
            nodes: BTreeMap::new(),
            node_labels: Vec::new(),
        }
    }
}

impl Pricing {
    /// These prices with the label rules turned into per-node prices for
    /// the nodes in `labels` (node → its labels) that have no price of
    /// their own; the rules are then dropped.
    pub fn resolve(&self, labels: &HashMap<String, BTreeMap<String, String>>) -> Pricing {
        let mut out = self.clone();
        out.node_labels.clear();
        for (node, have) in labels {
            if out.nodes.contains_key(node) {
                continue;
            }
            if let Some(rule) = self.node_labels.iter().find(|r| {
                r.selector
                    .iter()
                    .all(|(k, v)| have.get(k).is_some_and(|h| h == v))
            }) {
                out.nodes.insert(
                    node.clone(),
                    NodePrice {
                        cpu_core_hour: rule.cpu_core_hour,
                        memory_gib_hour: rule.memory_gib_hour,
                    },
                );
            }
        }
        out
    }

    /// (vCPU-hour, GiB-hour) prices of `node`.
    pub fn of_node(&self, node: &str) -> (f64, f64) {
        match self.nodes.get(node) {
            Some(p) => (
                p.cpu_core_hour.unwrap_or(self.cpu_core_hour),
                p.memory_gib_hour.unwrap_or(self.memory_gib_hour),
            ),
            None => (self.cpu_core_hour, self.memory_gib_hour),
        }
    }

    /// Hourly cost of `cpu_cores` and `memory_bytes` on `node`.
    pub fn hourly(&self, node: &str, cpu_cores: f64, memory_bytes: f64) -> f64 {
        let (cpu, mem) = self.of_node(node);
        cpu_cores * cpu + memory_bytes / GIB_BYTES * mem
    }

    /// Checks the prices are usable numbers.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.cpu_core_hour) || !ok(self.memory_gib_hour) {
            return Err("pricing: cpu_core_hour and memory_gib_hour must be >= 0".to_owned());
        }
        for (node, p) in &self.nodes {
            if p.cpu_core_hour.is_some_and(|v| !ok(v)) || p.memory_gib_hour.is_some_and(|v| !ok(v))
            {
                return Err(format!("pricing.nodes.{node}: prices must be >= 0"));
            }
        }
        for (i, r) in self.node_labels.iter().enumerate() {
            if r.selector.is_empty() {
                return Err(format!(
                    "pricing.node_labels[{i}]: selector is empty (it would match every node: set the default prices instead)"
                ));
            }
            if r.cpu_core_hour.is_some_and(|v| !ok(v)) || r.memory_gib_hour.is_some_and(|v| !ok(v))
            {
                return Err(format!("pricing.node_labels[{i}]: prices must be >= 0"));
            }
        }
        Ok(())
    }
}

impl AnalysisSettings {
    /// Checks ranges, naming the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        let r = &self.rightsize;
        let pct = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "analysis.rightsize.{name} must be in 0..=1, got {v}"
                ))
            }
        };
        pct("cpu_percentile", r.cpu_percentile)?;
        pct("memory_percentile", r.memory_percentile)?;
        pct("lower_percentile", r.lower_percentile)?;
        pct("upper_percentile", r.upper_percentile)?;
        pct("throttle_threshold", r.throttle_threshold)?;
        for (name, v) in [
            ("history_s", self.history_s),
            ("stale_after_s", self.stale_after_s),
            ("rightsize.min_history_s", r.min_history_s),
            ("rightsize.full_confidence_s", r.full_confidence_s),
            ("idle.window_s", self.idle.window_s),
            ("cost.window_s", self.cost.window_s),
            ("cost.run_rate_s", self.cost.run_rate_s),
        ] {
            if v <= 0 {
                return Err(format!("analysis.{name} must be > 0, got {v}"));
            }
        }
        if r.safety_margin < 0.0 || r.memory_limit_headroom < 0.0 || r.oom_bump_ratio < 1.0 {
            return Err(
                "analysis.rightsize: safety_margin and memory_limit_headroom must be >= 0, oom_bump_ratio >= 1"
                    .to_owned(),
            );
        }
        if r.cpu_limit_ratio.is_some_and(|v| v.is_nan() || v < 1.0) {
            return Err("analysis.rightsize.cpu_limit_ratio must be >= 1".to_owned());
        }
        Ok(())
    }
}

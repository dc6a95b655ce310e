//! Decisions from the stored usage: rightsizing, idle workloads, cost
//! (docs/analysis.md). The heavy lifting is SQL in the store
//! (`store::usage_read`: one aggregate per question, rows per series, read
//! from the hourly usage summary where it answers exactly); this module
//! turns those facts into decisions with their evidence.
//!
//! - [`histogram`]: the VPA's decaying exponential histogram.
//! - [`rightsize`]: requests and limits per workload container or per
//!   container.
//! - [`idle`]: workloads whose replicas stayed quiet for the window.
//! - [`cost`]: charged cost, waste and savings, grouped.
//! - [`settings`]: every knob and its default.

pub mod cost;
pub mod histogram;
pub mod idle;
pub mod rightsize;
pub mod settings;

use std::collections::HashMap;

use upid::wire::v1;

use self::histogram::{CPU_CORES, Histogram};
use self::rightsize::{Clock, GroupInput};
use self::settings::{AnalysisSettings, Pricing};
use crate::store::{
    ActivityThresholds, QueryError, Reader, SeriesFacts, SqlPrices, UsageReadPath, UsageScope,
};

/// What went wrong analysing.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A store query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The request asks for something impossible (a negative window, a
    /// CPU limit ratio below 1).
    #[error("{0}")]
    InvalidArgument(String),
}

/// The analyses with their settings and prices.
#[derive(Debug, Clone, Default)]
pub struct Analyzer {
    /// Thresholds, windows and algorithm parameters.
    pub settings: AnalysisSettings,
    /// Prices per vCPU-hour and GiB-hour.
    pub pricing: Pricing,
    /// Where usage is read from: the hourly summary (default) or, to check
    /// it, every usage row.
    pub read_path: UsageReadPath,
}

const NS_PER_S: i64 = 1_000_000_000;

/// Proto3's "not set" for strings.
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl Analyzer {
    /// An analyzer with these settings and prices.
    pub fn new(settings: AnalysisSettings, pricing: Pricing) -> Analyzer {
        Analyzer {
            settings,
            pricing,
            read_path: UsageReadPath::default(),
        }
    }

    /// The same analyzer reading usage through `read_path`.
    pub fn with_read_path(mut self, read_path: UsageReadPath) -> Analyzer {
        self.read_path = read_path;
        self
    }

    fn scope(
        &self,
        scope: Option<&v1::AnalysisScope>,
        from_unix_ns: i64,
        at_unix_ns: i64,
    ) -> UsageScope {
        let s = scope.cloned().unwrap_or_default();
        UsageScope {
            from_unix_ns,
            until_unix_ns: at_unix_ns,
            namespace: non_empty(&s.namespace),
            workload: non_empty(&s.workload),
            node: non_empty(&s.node_name),
            pod: non_empty(&s.pod),
            container: non_empty(&s.container),
            read_path: self.read_path,
        }
    }

    /// This analyzer with `pricing.node_labels` resolved against the
    /// nodes' stored labels; `None` when there are no label rules.
    fn priced_by_labels(&self, reader: &Reader) -> Result<Option<Analyzer>, AnalysisError> {
        if self.pricing.node_labels.is_empty() {
            return Ok(None);
        }
        let labels = reader.node_labels()?;
        Ok(Some(Analyzer {
            settings: self.settings.clone(),
            pricing: self.pricing.resolve(&labels),
            read_path: self.read_path,
        }))
    }

    fn sql_prices(&self) -> SqlPrices {
        SqlPrices {
            default: (self.pricing.cpu_core_hour, self.pricing.memory_gib_hour),
            nodes: self
                .pricing
                .nodes
                .keys()
                .map(|n| {
                    let (c, m) = self.pricing.of_node(n);
                    (n.clone(), c, m)
                })
                .collect(),
        }
    }

    fn activity(&self) -> ActivityThresholds {
        ActivityThresholds {
            cpu_cores: self.settings.idle.cpu_threshold_millicores as f64 / 1000.0,
            net_bytes_per_s: self.settings.idle.net_threshold_bytes_per_s,
        }
    }

    fn clock(&self, at_unix_ns: i64) -> Clock {
        Clock {
            at_unix_ns,
            live_from_unix_ns: at_unix_ns
                .saturating_sub(self.settings.stale_after_s.saturating_mul(NS_PER_S)),
        }
    }

    fn history_from(&self, at_unix_ns: i64) -> i64 {
        at_unix_ns.saturating_sub(self.settings.history_s.saturating_mul(NS_PER_S))
    }

    fn run_rate_from(&self, at_unix_ns: i64) -> i64 {
        at_unix_ns.saturating_sub(self.settings.cost.run_rate_s.saturating_mul(NS_PER_S))
    }

    /// Per-series facts over the history window; the latest active minute
    /// only when `with_activity` (idle detection needs it).
    fn facts(
        &self,
        reader: &Reader,
        scope: &UsageScope,
        at_unix_ns: i64,
        with_activity: bool,
    ) -> Result<Vec<SeriesFacts>, AnalysisError> {
        Ok(reader.usage_series(
            scope,
            with_activity.then(|| self.activity()),
            &self.sql_prices(),
            self.run_rate_from(at_unix_ns),
        )?)
    }

    /// Rightsizing recommendations, biggest saving first.
    pub fn rightsize(
        &self,
        reader: &Reader,
        request: &v1::RightsizeRequest,
        at_unix_ns: i64,
    ) -> Result<v1::RightsizeResponse, AnalysisError> {
        if let Some(priced) = self.priced_by_labels(reader)? {
            return priced.rightsize(reader, request, at_unix_ns);
        }
        if request
            .cpu_limit_ratio
            .is_some_and(|r| r.is_nan() || r < 1.0)
        {
            return Err(AnalysisError::InvalidArgument(
                "cpu_limit_ratio must be >= 1 (the limit is request x ratio)".to_owned(),
            ));
        }
        let per_container = request.group_by == v1::RightsizeGrouping::Container as i32;
        let scope = self.scope(
            request.scope.as_ref(),
            self.history_from(at_unix_ns),
            at_unix_ns,
        );
        let facts = self.facts(reader, &scope, at_unix_ns, false)?;
        let recommendations = self.recommend_all(
            reader,
            &scope,
            &facts,
            per_container,
            request.cpu_limit_ratio,
            at_unix_ns,
        )?;
        Ok(v1::RightsizeResponse {
            recommendations,
            at_unix_ns,
            currency: self.pricing.currency.clone(),
        })
    }

    /// Recommendations for the running groups of `facts`.
    fn recommend_all(
        &self,
        reader: &Reader,
        scope: &UsageScope,
        facts: &[SeriesFacts],
        per_container: bool,
        cpu_limit_ratio: Option<f64>,
        at_unix_ns: i64,
    ) -> Result<Vec<v1::Recommendation>, AnalysisError> {
        let settings = &self.settings.rightsize;
        let clock = self.clock(at_unix_ns);
        let buckets = reader.usage_cpu_buckets(
            scope,
            &CPU_CORES.bucket_sql("cpu_cores"),
            settings.cpu_half_life_s as f64,
        )?;
        let days = reader.usage_daily_peaks(scope)?;
        let mut cpu_of: HashMap<&str, Histogram> = HashMap::new();
        for b in &buckets {
            cpu_of
                .entry(b.series_key.as_str())
                .or_insert_with(|| Histogram::new(CPU_CORES))
                .add_to_bucket(b.bucket, b.weight);
        }
        let mut days_of: HashMap<&str, Vec<_>> = HashMap::new();
        for d in &days {
            days_of.entry(d.series_key.as_str()).or_default().push(d);
        }
        let mut out = Vec::new();
        for (_, members) in rightsize::group_series(facts, per_container) {
            if !members
                .iter()
                .any(|f| f.last_unix_ns >= clock.live_from_unix_ns)
            {
                continue;
            }
            let mut input = GroupInput::new();
            for f in &members {
                if let Some(h) = cpu_of.get(f.id.series_key.as_str()) {
                    input.cpu.merge(h);
                }
                if let Some(d) = days_of.get(f.id.series_key.as_str()) {
                    input.days.extend(d.iter().copied());
                }
            }
            input.members = members;
            let mut rec =
                rightsize::recommend(&input, settings, cpu_limit_ratio, &self.pricing, clock);
            if let Some(f) = input.members.first().filter(|_| per_container) {
                rec.container_id = if f.id.container_id.is_empty() {
                    f.id.series_key.clone()
                } else {
                    f.id.container_id.clone()
                };
                rec.node_name = f.id.node.clone();
            }
            out.push(rec);
        }
        out.sort_by(|a, b| {
            b.monthly_saving
                .total_cmp(&a.monthly_saving)
                .then_with(|| a.namespace.cmp(&b.namespace))
                .then_with(|| a.workload.cmp(&b.workload))
                .then_with(|| a.container.cmp(&b.container))
                .then_with(|| a.container_id.cmp(&b.container_id))
        });
        Ok(out)
    }

    /// Idle workloads (and, when asked, the active ones with why not).
    pub fn idle(
        &self,
        reader: &Reader,
        request: &v1::IdleRequest,
        at_unix_ns: i64,
    ) -> Result<v1::IdleResponse, AnalysisError> {
        if let Some(priced) = self.priced_by_labels(reader)? {
            return priced.idle(reader, request, at_unix_ns);
        }
        let scope = self.scope(
            request.scope.as_ref(),
            self.history_from(at_unix_ns),
            at_unix_ns,
        );
        let facts = self.facts(reader, &scope, at_unix_ns, true)?;
        let quiet =
            reader.usage_quiet_stretches(&scope, self.activity(), &self.sql_prices(), &facts)?;
        let workloads = idle::decide(
            &facts,
            &quiet,
            &self.settings,
            self.clock(at_unix_ns),
            request.include_active,
        );
        Ok(v1::IdleResponse {
            workloads,
            at_unix_ns,
            currency: self.pricing.currency.clone(),
        })
    }

    /// Charged cost over the window, grouped, with waste and the saving the
    /// rightsizing recommendations would bring.
    pub fn cost(
        &self,
        reader: &Reader,
        request: &v1::CostRequest,
        at_unix_ns: i64,
    ) -> Result<v1::CostResponse, AnalysisError> {
        if let Some(priced) = self.priced_by_labels(reader)? {
            return priced.cost(reader, request, at_unix_ns);
        }
        if request.window_s < 0 {
            return Err(AnalysisError::InvalidArgument(
                "window_s must be >= 0 (0: the collector's default)".to_owned(),
            ));
        }
        let window_s = if request.window_s == 0 {
            self.settings.cost.window_s
        } else {
            request.window_s
        };
        let from = at_unix_ns.saturating_sub(window_s.saturating_mul(NS_PER_S));
        let cost_scope = self.scope(request.scope.as_ref(), from, at_unix_ns);
        let costs = reader.usage_costs(
            &cost_scope,
            &self.sql_prices(),
            self.run_rate_from(at_unix_ns),
        )?;
        // Savings: workload recommendations over the history window, shared
        // out over their running replicas.
        let history_scope = self.scope(
            request.scope.as_ref(),
            self.history_from(at_unix_ns),
            at_unix_ns,
        );
        let facts = self.facts(reader, &history_scope, at_unix_ns, false)?;
        let recs = self.recommend_all(reader, &history_scope, &facts, false, None, at_unix_ns)?;
        let savings = cost::saving_per_series(&facts, &recs, self.clock(at_unix_ns));
        let grouping =
            v1::CostGrouping::try_from(request.group_by).unwrap_or(v1::CostGrouping::Workload);
        let (lines, total) = cost::group(&costs, &savings, grouping, self.clock(at_unix_ns), from);
        Ok(v1::CostResponse {
            lines,
            total: Some(total),
            start_unix_ns: from,
            end_unix_ns: at_unix_ns,
            pricing: Some(v1::Pricing {
                currency: self.pricing.currency.clone(),
                cpu_core_hour: self.pricing.cpu_core_hour,
                memory_gib_hour: self.pricing.memory_gib_hour,
            }),
        })
    }
}

/// Monthly figure of a stretch: `amount` over `covered_s` seconds scaled to
/// 730 hours; 0 for a series no longer running.
pub(crate) fn monthly(amount: f64, covered_s: f64, live: bool) -> f64 {
    if !live || covered_s <= 0.0 {
        return 0.0;
    }
    amount / (covered_s / 3600.0) * settings::HOURS_PER_MONTH
}

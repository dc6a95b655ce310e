//! `upid analyze`: one summary composed on this side from the collector's
//! rightsizing, idle and cost answers and its recent OOM events.

use serde::Serialize;

use crate::cli::units;
use crate::cli::view::EventView;
use crate::cli::view::analysis::{
    CostView, IdleView, PricingView, RecommendationView, by_name, desc, sort_idle,
    sort_recommendations,
};
use crate::cli::view::updates::UpdateDecisionView;

/// Rows in "Top savings".
pub const TOP_SAVINGS: usize = 5;

/// A throttled share of CFS periods from which a container is a
/// throttling hot spot.
pub const THROTTLING_HOT_RATIO: f64 = 0.05;

/// How far back "OOM hot spots" looks for OOM events.
pub const OOM_EVENTS_WINDOW_S: i64 = 7 * 86_400;

/// What to run when too many containers lack history.
pub const IMPORT_HINT: &str = "import history: `upid-collector import prometheus --url URL --since 14d`, or `upid-collector import parquet FILE`";

/// What the summary covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeView {
    /// `cluster`, `node`, `workload` or `pod`.
    pub kind: String,
    /// The node, workload or pod (`null` for the cluster).
    pub name: Option<String>,
    /// The namespace of `-n` (`null`: every namespace).
    pub namespace: Option<String>,
}

impl ScopeView {
    /// `cluster`, `node node-b`, `workload checkout in namespace shop`.
    pub fn describe(&self) -> String {
        let mut text = match &self.name {
            Some(name) => format!("{} {name}", self.kind),
            None => self.kind.clone(),
        };
        if let Some(ns) = &self.namespace {
            text.push_str(&format!(" in namespace {ns}"));
        }
        text
    }
}

/// The cost of what the scope covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostSummaryView {
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
    /// Default prices.
    pub pricing: PricingView,
    /// Containers charged.
    pub containers: u32,
    /// Charged over the window.
    pub cost: f64,
    /// The window's rate over a month (730 h).
    pub monthly_cost: f64,
    /// Requested and never used, per month.
    pub monthly_waste: f64,
    /// What applying the recommendations would save per month.
    pub monthly_saving: f64,
}

impl From<&CostView> for CostSummaryView {
    fn from(c: &CostView) -> Self {
        CostSummaryView {
            window_s: c.window_s,
            start_unix_ns: c.start_unix_ns,
            start: c.start.clone(),
            end_unix_ns: c.end_unix_ns,
            end: c.end.clone(),
            pricing: c.pricing.clone(),
            containers: c.total.containers,
            cost: c.total.cost,
            monthly_cost: c.total.monthly_cost,
            monthly_waste: c.total.monthly_waste,
            monthly_saving: c.total.monthly_saving,
        }
    }
}

/// Containers without enough history for a recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotEnoughDataView {
    /// How many rows of the rightsizing lack history.
    pub count: usize,
    /// Rows of the rightsizing (workload containers; container instances
    /// for a pod).
    pub of: usize,
    /// What to do about it (`null` when `count` is 0).
    pub hint: Option<String>,
}

/// Everything `upid analyze` shows. Every section is present in JSON
/// (empty when it has nothing); the text leaves empty sections out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyzeView {
    /// What was analyzed.
    pub scope: ScopeView,
    /// The analysis time (Unix ns).
    pub at_unix_ns: i64,
    /// The analysis time, RFC 3339 UTC.
    pub at: Option<String>,
    /// Currency of every amount.
    pub currency: String,
    /// Cost, waste and possible saving.
    pub cost: CostSummaryView,
    /// The recommendations that save the most per month (positive
    /// savings only), biggest first.
    pub top_savings: Vec<RecommendationView>,
    /// Idle workloads, costliest first.
    pub idle_workloads: Vec<IdleView>,
    /// What the idle workloads cost per month together.
    pub idle_monthly_cost: f64,
    /// Recommendations whose evidence has OOM kills, most first.
    pub oom_hot_spots: Vec<RecommendationView>,
    /// OOM kill events of the last 7 days in scope, newest first (`null`
    /// when they could not be fetched).
    pub recent_oom_events: Option<Vec<EventView>>,
    /// Why `recent_oom_events` is `null`.
    pub recent_oom_events_error: Option<String>,
    /// Recommendations whose CPU was throttled in at least 5 % of the CFS
    /// periods, most throttled first.
    pub throttling_hot_spots: Vec<RecommendationView>,
    /// Image updates with something to decide (approve first, then review,
    /// hold, block); `null` when the collector could not say.
    pub pending_updates: Option<Vec<UpdateDecisionView>>,
    /// Why `pending_updates` is `null` (update checks off, an older
    /// collector...).
    pub pending_updates_error: Option<String>,
    /// Rows without enough history.
    pub not_enough_data: NotEnoughDataView,
}

/// What `upid analyze` got from the collector, turned into views.
#[derive(Debug, Clone)]
pub struct AnalyzeParts {
    /// What was analyzed.
    pub scope: ScopeView,
    /// The analysis time (Unix ns).
    pub at_unix_ns: i64,
    /// The rightsizing of the scope.
    pub recommendations: Vec<RecommendationView>,
    /// The workloads of the scope as ListIdle judged them.
    pub idle: Vec<IdleView>,
    /// The cost of the scope.
    pub cost: CostView,
    /// OOM events of the scope, or why they are missing.
    pub oom_events: Result<Vec<EventView>, String>,
    /// The scope's image update decisions, or why they are missing.
    pub updates: Result<Vec<UpdateDecisionView>, String>,
}

impl AnalyzeView {
    /// Picks and orders the sections.
    pub fn new(parts: AnalyzeParts) -> Self {
        let AnalyzeParts {
            scope,
            at_unix_ns,
            recommendations,
            idle,
            cost,
            oom_events,
            updates,
        } = parts;
        let currency = if cost.pricing.currency.is_empty() {
            recommendations
                .first()
                .map(|r| r.currency.clone())
                .or_else(|| idle.first().map(|w| w.currency.clone()))
                .unwrap_or_default()
        } else {
            cost.pricing.currency.clone()
        };

        let mut top_savings: Vec<RecommendationView> = recommendations
            .iter()
            .filter(|r| r.enough_data && r.monthly_saving > 0.0)
            .cloned()
            .collect();
        sort_recommendations(&mut top_savings);
        top_savings.truncate(TOP_SAVINGS);

        let mut idle_workloads: Vec<IdleView> = idle.into_iter().filter(|w| w.idle).collect();
        sort_idle(&mut idle_workloads);
        let idle_monthly_cost = idle_workloads.iter().map(|w| w.monthly_cost).sum();

        let mut oom_hot_spots: Vec<RecommendationView> = recommendations
            .iter()
            .filter(|r| r.oom_kills() > 0)
            .cloned()
            .collect();
        oom_hot_spots.sort_by(|a, b| {
            b.oom_kills()
                .cmp(&a.oom_kills())
                .then_with(|| by_name(a, b))
        });

        let mut throttling_hot_spots: Vec<RecommendationView> = recommendations
            .iter()
            .filter(|r| {
                r.throttled_ratio()
                    .is_some_and(|t| t >= THROTTLING_HOT_RATIO)
            })
            .cloned()
            .collect();
        throttling_hot_spots.sort_by(|a, b| {
            desc(
                a.throttled_ratio().unwrap_or(0.0),
                b.throttled_ratio().unwrap_or(0.0),
            )
            .then_with(|| by_name(a, b))
        });

        let count = recommendations.iter().filter(|r| !r.enough_data).count();
        let (recent_oom_events, recent_oom_events_error) = match oom_events {
            Ok(mut events) => {
                events.sort_by_key(|e| std::cmp::Reverse(e.time_unix_ns));
                (Some(events), None)
            }
            Err(e) => (None, Some(e)),
        };
        let (pending_updates, pending_updates_error) = match updates {
            Ok(mut decisions) => {
                decisions.retain(|d| d.decision != "none");
                let rank = |d: &UpdateDecisionView| match d.decision.as_str() {
                    "approve" => 0,
                    "review" => 1,
                    "hold" => 2,
                    _ => 3,
                };
                decisions.sort_by(|a, b| {
                    rank(a)
                        .cmp(&rank(b))
                        .then_with(|| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)))
                });
                (Some(decisions), None)
            }
            Err(e) => (None, Some(e)),
        };
        AnalyzeView {
            pending_updates,
            pending_updates_error,
            scope,
            at_unix_ns,
            at: units::rfc3339(at_unix_ns),
            currency,
            cost: CostSummaryView::from(&cost),
            top_savings,
            idle_workloads,
            idle_monthly_cost,
            oom_hot_spots,
            recent_oom_events,
            recent_oom_events_error,
            throttling_hot_spots,
            not_enough_data: NotEnoughDataView {
                count,
                of: recommendations.len(),
                hint: (count > 0).then(|| IMPORT_HINT.to_owned()),
            },
        }
    }
}

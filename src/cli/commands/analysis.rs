//! The analysis commands: `upid rightsize`, `upid idle`, `upid cost` and
//! `upid analyze` (composed here from the other three and the recent OOM
//! events).

use std::collections::HashSet;

use crate::cli::Output;
use crate::cli::args::{AnalyzeWhat, CostArgs, CostBy, EventType, Format, IdleArgs, RightsizeArgs};
use crate::cli::commands::Session;
use crate::cli::doctor::now_unix_ns;
use crate::cli::error::CliError;
use crate::cli::render;
use crate::cli::view::analysis::{sort_cost_lines, sort_idle, sort_recommendations};
use crate::cli::view::analyze::{AnalyzeParts, OOM_EVENTS_WINDOW_S, ScopeView};
use crate::cli::view::updates::UpdateDecisionView;
use crate::cli::view::{AnalyzeView, CostView, EventView, IdleView, RecommendationView};
use crate::wire::v1;

/// OOM events `upid analyze` asks for at most.
const ANALYZE_OOM_EVENT_LIMIT: u32 = 1000;

/// What to do when an analysis finds nothing.
const NO_HISTORY_ADVICE: &str = "check the filters (`upid get workloads` lists what is known), or import history: `upid-collector import prometheus --url URL --since 14d`";

/// Where an analysis looked, for its empty hint: `in namespace shop for
/// workload checkout on node n1`; `None` when it looked everywhere.
fn scope_text(scope: &v1::AnalysisScope) -> Option<String> {
    let parts: Vec<String> = [
        ("in namespace", &scope.namespace),
        ("for workload", &scope.workload),
        ("in pod", &scope.pod),
        ("for container", &scope.container),
        ("on node", &scope.node_name),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(what, v)| format!("{what} {v}"))
    .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The OOM kills among `events` (even from a collector that ignores
/// `kinds`), of the containers in `ids` when given.
fn oom_events_of(events: &[v1::Event], ids: Option<&HashSet<&str>>) -> Vec<EventView> {
    events
        .iter()
        .map(EventView::from)
        .filter(|e| e.event_type == EventType::Oom.name())
        .filter(|e| ids.is_none_or(|ids| ids.contains(e.container_id.as_str())))
        .collect()
}

impl Session {
    /// `upid rightsize`.
    pub async fn rightsize(
        &self,
        args: &RightsizeArgs,
        format: Format,
    ) -> Result<Output, CliError> {
        let request = args.request();
        let scope = scope_text(request.scope.as_ref().unwrap_or(&Default::default()));
        let r = self.conn.query().rightsize(request).await;
        let answer = self.answer("Rightsize", r, None).await?;
        let mut rows = RecommendationView::all(&answer);
        sort_recommendations(&mut rows);
        let stdout = render::rightsize(&rows, format)?;
        self.with_hint(
            stdout,
            format,
            rows.is_empty(),
            "containers to rightsize",
            scope.as_deref(),
            Some(NO_HISTORY_ADVICE),
        )
        .await
    }

    /// `upid idle`.
    pub async fn idle(&self, args: &IdleArgs, format: Format) -> Result<Output, CliError> {
        let request = args.request();
        let scope = scope_text(request.scope.as_ref().unwrap_or(&Default::default()));
        let r = self.conn.query().list_idle(request).await;
        let answer = self.answer("ListIdle", r, None).await?;
        let mut rows = IdleView::all(&answer);
        sort_idle(&mut rows);
        let at = if answer.at_unix_ns > 0 {
            answer.at_unix_ns
        } else {
            now_unix_ns()
        };
        let stdout = render::idle(&rows, format, at)?;
        let advice = if args.all {
            NO_HISTORY_ADVICE
        } else {
            "add --all to list the workloads that are not idle, with why not"
        };
        let what = if args.all {
            "workloads"
        } else {
            "idle workloads"
        };
        self.with_hint(
            stdout,
            format,
            rows.is_empty(),
            what,
            scope.as_deref(),
            Some(advice),
        )
        .await
    }

    /// `upid cost`.
    pub async fn cost(&self, args: &CostArgs, format: Format) -> Result<Output, CliError> {
        let request = args.request();
        let scope = scope_text(request.scope.as_ref().unwrap_or(&Default::default()));
        let r = self.conn.query().get_cost(request).await;
        let answer = self.answer("GetCost", r, None).await?;
        let mut view = CostView::new(&answer, args.by);
        sort_cost_lines(&mut view.lines);
        let stdout = render::cost(&view, format)?;
        let mut out = self
            .with_hint(
                stdout,
                format,
                view.lines.is_empty(),
                "costs",
                scope.as_deref(),
                Some(NO_HISTORY_ADVICE),
            )
            .await?;
        if !view.lines.is_empty() && matches!(format, Format::Table | Format::Wide) {
            out.stderr = render::cost_note(&view);
        }
        Ok(out)
    }

    /// `upid analyze`: Rightsize, ListIdle, GetCost (by workload) and the
    /// last 7 days of OOM events, all over the same scope, asked at once.
    pub async fn analyze(&self, what: &AnalyzeWhat, format: Format) -> Result<Output, CliError> {
        let scope = what.scope();
        let pod = matches!(what, AnalyzeWhat::Pod(_));
        // A pod's containers are instances: group by container, so their
        // ids pick the pod's events (events have no pod filter).
        let group_by = if pod {
            v1::RightsizeGrouping::Container
        } else {
            v1::RightsizeGrouping::Workload
        };
        let now = now_unix_ns();
        let rightsize = v1::RightsizeRequest {
            scope: Some(scope.clone()),
            group_by: group_by as i32,
            cpu_limit_ratio: None,
        };
        let idle = v1::IdleRequest {
            scope: Some(scope.clone()),
            include_active: false,
        };
        let cost = v1::CostRequest {
            scope: Some(scope.clone()),
            group_by: v1::CostGrouping::Workload as i32,
            window_s: 0,
        };
        let events = v1::ListEventsRequest {
            since_unix_ns: now.saturating_sub(OOM_EVENTS_WINDOW_S * 1_000_000_000),
            until_unix_ns: 0,
            node_name: scope.node_name.clone(),
            namespace: scope.namespace.clone(),
            workload: scope.workload.clone(),
            container: String::new(),
            kinds: vec![v1::EventKind::Oom as i32],
            limit: ANALYZE_OOM_EVENT_LIMIT,
        };
        let updates = v1::ListUpdatesRequest {
            namespace: scope.namespace.clone(),
            workload: scope.workload.clone(),
            refresh: false,
        };
        let (mut q1, mut q2, mut q3, mut q4, mut q5) = (
            self.conn.query(),
            self.conn.query(),
            self.conn.query(),
            self.conn.query(),
            self.conn.query(),
        );
        let (r, i, c, e, u) = tokio::join!(
            q1.rightsize(rightsize),
            q2.list_idle(idle),
            q3.get_cost(cost),
            q4.list_events(events),
            q5.list_updates(updates),
        );
        let rightsize = self.answer("Rightsize", r, None).await?;
        let idle = self.answer("ListIdle", i, None).await?;
        let cost = self.answer("GetCost", c, None).await?;
        let recommendations = RecommendationView::all(&rightsize);
        // A pod's containers (its rightsizing is by container): what its
        // events and updates are narrowed to.
        let pod_ids: Option<HashSet<String>> = pod.then(|| {
            recommendations
                .iter()
                .filter_map(|r| r.container_id.clone())
                .collect()
        });
        let pod_ids_ref: Option<HashSet<&str>> = pod_ids
            .as_ref()
            .map(|ids| ids.iter().map(String::as_str).collect());
        let oom_events = match self.answer("ListEvents", e, None).await {
            Ok(e) => Ok(oom_events_of(&e.events, pod_ids_ref.as_ref())),
            Err(e) => Err(e.to_string()),
        };
        // Update decisions cover the scope's namespace and workload; a
        // node or pod narrows them to its containers. A collector with
        // update checks off (or older) leaves the section unavailable.
        let updates = match u {
            Ok(resp) => Ok(resp
                .into_inner()
                .decisions
                .iter()
                .filter(|d| scope.node_name.is_empty() || d.nodes.contains(&scope.node_name))
                .filter(|d| {
                    pod_ids
                        .as_ref()
                        .is_none_or(|ids| d.container_ids.iter().any(|c| ids.contains(c)))
                })
                .map(UpdateDecisionView::from)
                .collect()),
            Err(status) => Err(status.message().to_owned()),
        };
        let (kind, name, ns) = what.target();
        let namespace = Some(ns.wanted()).filter(|n| !n.is_empty());
        let view = AnalyzeView::new(AnalyzeParts {
            scope: ScopeView {
                kind: kind.into(),
                name: name.map(str::to_owned),
                namespace: namespace.map(str::to_owned),
            },
            at_unix_ns: if rightsize.at_unix_ns > 0 {
                rightsize.at_unix_ns
            } else {
                now
            },
            recommendations,
            idle: IdleView::all(&idle),
            cost: CostView::new(&cost, CostBy::Workload),
            oom_events,
            updates,
        });
        Ok(Output::ok(render::analyze(&view, format)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::fixtures::{self, DOCKER_ID, POD_ID};

    #[test]
    fn analyze_keeps_only_oom_kills_of_the_pods_containers() {
        let events = fixtures::events();
        let all = oom_events_of(&events, None);
        assert_eq!(all.len(), 1, "the die, health, image and start events go");
        assert_eq!(all[0].container_id, POD_ID);
        let pod: HashSet<&str> = [POD_ID].into_iter().collect();
        assert_eq!(oom_events_of(&events, Some(&pod)).len(), 1);
        let other: HashSet<&str> = [DOCKER_ID].into_iter().collect();
        assert!(oom_events_of(&events, Some(&other)).is_empty());
        assert!(oom_events_of(&events, Some(&HashSet::new())).is_empty());
    }

    #[test]
    fn empty_hints_name_every_filter_given() {
        let scope = v1::AnalysisScope {
            namespace: "shop".into(),
            workload: "checkout".into(),
            node_name: "node-b".into(),
            ..Default::default()
        };
        assert_eq!(
            scope_text(&scope).as_deref(),
            Some("in namespace shop for workload checkout on node node-b")
        );
        assert_eq!(scope_text(&v1::AnalysisScope::default()), None);
    }
}

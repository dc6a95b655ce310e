//! `upid analyze`: the one-screen summary. Sections with nothing to say
//! are left out of the text (JSON keeps them, empty).

use std::fmt::Write as _;

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::analysis::{cpu_limit, cpu_request, memory_limit, memory_request, saving};
use crate::cli::render::lists::cell;
use crate::cli::render::{Table, structured};
use crate::cli::units::{NONE, age, money, opt_cores, opt_percent, span_s};
use crate::cli::view::AnalyzeView;
use crate::cli::view::analysis::RecommendationView;
use crate::cli::view::analyze::{OOM_EVENTS_WINDOW_S, THROTTLING_HOT_RATIO};

/// Rows a section shows before `… and N more`.
const SECTION_ROWS: usize = 10;

/// A table indented under its section heading, cut at [`SECTION_ROWS`]
/// with a line naming the command that lists everything.
fn section_table(out: &mut String, mut t: Table, rows: usize, more: &str) {
    if rows > SECTION_ROWS {
        t.truncate(SECTION_ROWS);
    }
    for line in t.render().lines() {
        let _ = writeln!(out, "  {line}");
    }
    if rows > SECTION_ROWS {
        let _ = writeln!(out, "  … and {} more: {more}", rows - SECTION_ROWS);
    }
}

fn workload_cell(r: &RecommendationView) -> String {
    cell(r.workload.as_deref())
}

/// `upid analyze`: Scope and time, then Cost, Top savings, Idle
/// workloads, OOM hot spots, Throttling hot spots, Not enough data.
pub fn analyze(view: &AnalyzeView, format: Format) -> Result<String, CliError> {
    if let Some(s) = structured(view, format) {
        return s;
    }
    let currency = &view.currency;
    let mut out = String::new();
    let _ = writeln!(out, "Scope:   {}", view.scope.describe());
    let _ = writeln!(out, "At:      {}", view.at.as_deref().unwrap_or(NONE));

    let c = &view.cost;
    let _ = writeln!(out, "\nCost (last {}):", span_s(c.window_s));
    let _ = writeln!(
        out,
        "  Total:    {}/mo ({} over the window, {} containers)",
        money(c.monthly_cost, currency),
        money(c.cost, currency),
        c.containers
    );
    let waste_share = (c.monthly_cost > 0.0).then(|| c.monthly_waste / c.monthly_cost);
    let _ = writeln!(
        out,
        "  Waste:    {}/mo ({} of the cost: requested, never used)",
        money(c.monthly_waste, currency),
        opt_percent(waste_share)
    );
    let _ = writeln!(
        out,
        "  Saving:   {}/mo if the recommendations are applied",
        money(c.monthly_saving, currency)
    );

    if !view.top_savings.is_empty() {
        let _ = writeln!(out, "\nTop savings:");
        let mut t = Table::new(&[
            "NAMESPACE",
            "WORKLOAD",
            "CONTAINER",
            "CPU_REQ",
            "MEM_REQ",
            "SAVING/MO",
        ]);
        for r in &view.top_savings {
            t.row(vec![
                cell(r.namespace.as_deref()),
                workload_cell(r),
                cell(Some(&r.container)),
                cpu_request(r),
                memory_request(r),
                saving(r),
            ]);
        }
        section_table(&mut out, t, view.top_savings.len(), "upid rightsize");
    }

    if !view.idle_workloads.is_empty() {
        let _ = writeln!(
            out,
            "\nIdle workloads ({}, {}/mo together):",
            view.idle_workloads.len(),
            money(view.idle_monthly_cost, currency)
        );
        let mut t = Table::new(&[
            "NAMESPACE",
            "KIND",
            "WORKLOAD",
            "REPLICAS",
            "IDLE_SINCE",
            "COST/MO",
        ]);
        for w in &view.idle_workloads {
            t.row(vec![
                cell(w.namespace.as_deref()),
                cell(w.workload_kind.as_deref()),
                cell(Some(&w.workload)),
                w.replicas.to_string(),
                age(view.at_unix_ns, w.idle_since_unix_ns.unwrap_or(0)),
                money(w.monthly_cost, &w.currency),
            ]);
        }
        section_table(&mut out, t, view.idle_workloads.len(), "upid idle");
    }

    let recent_ooms = view.recent_oom_events.as_deref().unwrap_or_default();
    if !view.oom_hot_spots.is_empty() || !recent_ooms.is_empty() {
        let _ = writeln!(out, "\nOOM hot spots:");
        if !view.oom_hot_spots.is_empty() {
            let mut t = Table::new(&[
                "NAMESPACE",
                "WORKLOAD",
                "CONTAINER",
                "OOMS",
                "LAST_OOM",
                "MEM_REQ",
                "MEM_LIM",
            ]);
            for r in &view.oom_hot_spots {
                let last = r.evidence.as_ref().and_then(|e| e.last_oom_unix_ns);
                t.row(vec![
                    cell(r.namespace.as_deref()),
                    workload_cell(r),
                    cell(Some(&r.container)),
                    r.oom_kills().to_string(),
                    age(view.at_unix_ns, last.unwrap_or(0)),
                    memory_request(r),
                    memory_limit(r),
                ]);
            }
            section_table(
                &mut out,
                t,
                view.oom_hot_spots.len(),
                "upid rightsize -o wide",
            );
        }
        if let Some(newest) = recent_ooms.first() {
            let _ = writeln!(
                out,
                "  {} OOM kill {} in the last {}, the newest {} ago: `upid events --type oom --since {}` lists them",
                recent_ooms.len(),
                if recent_ooms.len() == 1 {
                    "event"
                } else {
                    "events"
                },
                span_s(OOM_EVENTS_WINDOW_S),
                age(view.at_unix_ns, newest.time_unix_ns),
                span_s(OOM_EVENTS_WINDOW_S),
            );
        }
    }
    if let Some(e) = &view.recent_oom_events_error {
        let _ = writeln!(out, "\nRecent OOM events: unavailable ({e})");
    }

    if !view.throttling_hot_spots.is_empty() {
        let _ = writeln!(
            out,
            "\nThrottling hot spots (CPU throttled in {} of periods or more):",
            opt_percent(Some(THROTTLING_HOT_RATIO))
        );
        let mut t = Table::new(&[
            "NAMESPACE",
            "WORKLOAD",
            "CONTAINER",
            "THROTTLED",
            "P90_CPU",
            "CPU_REQ",
            "CPU_LIM",
        ]);
        for r in &view.throttling_hot_spots {
            t.row(vec![
                cell(r.namespace.as_deref()),
                workload_cell(r),
                cell(Some(&r.container)),
                opt_percent(r.throttled_ratio()),
                opt_cores(r.evidence.as_ref().map(|e| e.cpu_p90_cores)),
                cpu_request(r),
                cpu_limit(r),
            ]);
        }
        section_table(
            &mut out,
            t,
            view.throttling_hot_spots.len(),
            "upid rightsize -o wide",
        );
    }

    match (&view.pending_updates, &view.pending_updates_error) {
        (Some(updates), _) if !updates.is_empty() => {
            let _ = writeln!(out, "\nPending image updates:");
            let mut t = Table::new(&[
                "NAMESPACE",
                "WORKLOAD",
                "CONTAINER",
                "CURRENT",
                "CANDIDATE",
                "CHANGE",
                "DECISION",
            ]);
            for d in updates {
                t.row(vec![
                    cell(
                        Some(&d.namespace)
                            .filter(|n| !n.is_empty())
                            .map(String::as_str),
                    ),
                    d.workload.clone(),
                    d.container.clone(),
                    d.current.clone(),
                    d.candidate.clone().unwrap_or_else(|| "-".into()),
                    d.change.clone(),
                    d.decision.clone(),
                ]);
            }
            section_table(&mut out, t, updates.len(), "upid updates");
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "\nPending image updates: unavailable ({e})");
        }
        _ => {}
    }

    let n = &view.not_enough_data;
    if n.count > 0 {
        let _ = writeln!(
            out,
            "\nNot enough data: {} of {} {} {} too little history for a recommendation; {}",
            n.count,
            n.of,
            if n.of == 1 { "container" } else { "containers" },
            if n.count == 1 { "has" } else { "have" },
            n.hint.as_deref().unwrap_or_default()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::CostBy;
    use crate::cli::render::fixtures::{self, NOW_NS};
    use crate::cli::view::analyze::{AnalyzeParts, ScopeView};
    use crate::cli::view::updates::UpdateDecisionView;
    use crate::cli::view::{CostView, EventView, IdleView};
    use crate::wire::v1;

    fn parts() -> AnalyzeParts {
        AnalyzeParts {
            scope: ScopeView {
                kind: "cluster".into(),
                name: None,
                namespace: None,
            },
            at_unix_ns: NOW_NS,
            recommendations: RecommendationView::all(&fixtures::rightsize()),
            idle: IdleView::all(&fixtures::idle()),
            cost: CostView::new(&fixtures::cost(), CostBy::Workload),
            oom_events: Ok(fixtures::events()
                .iter()
                .map(EventView::from)
                .filter(|e| e.event_type == "oom")
                .collect()),
            updates: Ok(vec![
                UpdateDecisionView::from(&v1::UpdateDecision {
                    namespace: "shop".into(),
                    workload: "web".into(),
                    container: "app".into(),
                    current: "registry.local/web:1.4.2".into(),
                    candidate: Some("registry.local/web:1.4.3".into()),
                    change: "patch".into(),
                    decision: "approve".into(),
                    ..Default::default()
                }),
                UpdateDecisionView::from(&v1::UpdateDecision {
                    workload: "db".into(),
                    current: "postgres:16.4".into(),
                    change: "none".into(),
                    decision: "none".into(),
                    ..Default::default()
                }),
            ]),
        }
    }

    #[test]
    fn pending_updates_list_what_has_a_decision_and_say_when_unavailable() {
        let view = AnalyzeView::new(parts());
        let out = analyze(&view, Format::Table).expect("renders");
        assert!(out.contains("Pending image updates:"), "{out}");
        assert!(out.contains("registry.local/web:1.4.3"), "{out}");
        assert!(
            !out.contains("postgres:16.4"),
            "nothing to decide: left out\n{out}"
        );
        let mut p = parts();
        p.updates = Err("update checks are off".into());
        let out = analyze(&AnalyzeView::new(p), Format::Table).expect("renders");
        assert!(
            out.contains("Pending image updates: unavailable (update checks are off)"),
            "{out}"
        );
        let json = analyze(&view, Format::Json).expect("json");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["pending_updates"][0]["decision"], "approve");
        assert_eq!(v["pending_updates"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn the_summary_has_every_section_with_something_to_say() {
        let out = analyze(&AnalyzeView::new(parts()), Format::Table).expect("renders");
        let expected = "\
Scope:   cluster
At:      2023-11-14T22:13:20Z

Cost (last 7d):
  Total:    $389.63/mo ($89.65 over the window, 7 containers)
  Waste:    $352.84/mo (91% of the cost: requested, never used)
  Saving:   $275.44/mo if the recommendations are applied

Top savings:
  NAMESPACE   WORKLOAD   CONTAINER   CPU_REQ      MEM_REQ       SAVING/MO
  shop        checkout   checkout    4000m→250m   2.0Gi→300Mi   $275.44

Idle workloads (2, $92.50/mo together):
  NAMESPACE   KIND         WORKLOAD   REPLICAS   IDLE_SINCE   COST/MO
  staging     deployment   old-api    2          3d4h         $79.20
  batch       cronjob      report     1          20h          $13.30

OOM hot spots:
  NAMESPACE   WORKLOAD   CONTAINER   OOMS   LAST_OOM   MEM_REQ   MEM_LIM
  shop        web        web         2      120m       -→180Mi   512Mi→360Mi
  1 OOM kill event in the last 7d, the newest 5m ago: `upid events --type oom --since 7d` lists them

Throttling hot spots (CPU throttled in 5.0% of periods or more):
  NAMESPACE   WORKLOAD   CONTAINER   THROTTLED   P90_CPU   CPU_REQ   CPU_LIM
  shop        web        web         12%         0.250     -→300m    1500m→600m

Pending image updates:
  NAMESPACE   WORKLOAD   CONTAINER   CURRENT                    CANDIDATE                  CHANGE   DECISION
  shop        web        app         registry.local/web:1.4.2   registry.local/web:1.4.3   patch    approve

Not enough data: 1 of 3 containers has too little history for a recommendation; import history: `upid-collector import prometheus --url URL --since 14d`, or `upid-collector import parquet FILE`
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn sections_with_nothing_to_say_are_left_out_of_the_text_not_the_json() {
        let mut p = parts();
        p.scope = ScopeView {
            kind: "workload".into(),
            name: Some("checkout".into()),
            namespace: Some("shop".into()),
        };
        p.recommendations
            .retain(|r| r.workload.as_deref() == Some("checkout"));
        p.idle.clear();
        p.oom_events = Err("the collector does not implement ListEvents".into());
        p.updates = Ok(Vec::new());
        let view = AnalyzeView::new(p);
        let out = analyze(&view, Format::Table).expect("renders");
        assert!(
            out.starts_with("Scope:   workload checkout in namespace shop\n"),
            "{out}"
        );
        assert!(out.contains("\nTop savings:\n"), "{out}");
        for absent in [
            "Idle workloads",
            "OOM hot spots",
            "Throttling hot spots",
            "Pending image updates",
            "Not enough data",
        ] {
            assert!(!out.contains(absent), "{absent} in\n{out}");
        }
        assert!(
            out.ends_with(
                "\nRecent OOM events: unavailable (the collector does not implement ListEvents)\n"
            ),
            "{out}"
        );
        let json = analyze(&view, Format::Json).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(
            v["scope"],
            serde_json::json!({"kind": "workload", "name": "checkout", "namespace": "shop"})
        );
        assert_eq!(v["idle_workloads"], serde_json::json!([]));
        assert_eq!(v["oom_hot_spots"], serde_json::json!([]));
        assert_eq!(v["throttling_hot_spots"], serde_json::json!([]));
        assert_eq!(v["recent_oom_events"], serde_json::Value::Null);
        assert_eq!(
            v["recent_oom_events_error"],
            "the collector does not implement ListEvents"
        );
        assert_eq!(
            v["not_enough_data"],
            serde_json::json!({"count": 0, "of": 1, "hint": null})
        );
    }

    #[test]
    fn summary_json_has_every_section() {
        let view = AnalyzeView::new(parts());
        let json = analyze(&view, Format::Json).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["scope"]["kind"], "cluster");
        assert_eq!(v["at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["currency"], "USD");
        assert_eq!(v["cost"]["monthly_cost"], 389.63);
        assert_eq!(v["cost"]["monthly_waste"], 352.84);
        assert_eq!(v["cost"]["monthly_saving"], 275.44);
        assert_eq!(v["cost"]["window_s"], 7 * 86_400);
        assert_eq!(v["cost"]["pricing"]["currency"], "USD");
        let top = v["top_savings"].as_array().expect("array");
        assert_eq!(top.len(), 1, "only positive savings: {json}");
        assert_eq!(top[0]["workload"], "checkout");
        assert_eq!(top[0]["current"]["cpu_request_millicores"], 4000);
        let idle: Vec<&str> = v["idle_workloads"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|w| w["workload"].as_str())
            .collect();
        assert_eq!(idle, ["old-api", "report"], "idle only, costliest first");
        assert_eq!(v["idle_monthly_cost"], 92.5);
        assert_eq!(v["oom_hot_spots"][0]["evidence"]["oom_kills"], 2);
        assert_eq!(v["recent_oom_events"][0]["type"], "oom");
        assert_eq!(v["recent_oom_events"][0]["container"], "checkout");
        assert_eq!(v["throttling_hot_spots"][0]["workload"], "web");
        assert_eq!(v["not_enough_data"]["count"], 1);
        assert_eq!(v["not_enough_data"]["of"], 3);
        assert!(
            v["not_enough_data"]["hint"].as_str().is_some_and(
                |h| h.contains("upid-collector import prometheus --url URL --since 14d")
            ),
            "{json}"
        );
        let yaml = analyze(&view, Format::Yaml).expect("renders");
        let from_yaml: serde_json::Value = serde_norway::from_str(&yaml).expect("valid YAML");
        assert_eq!(from_yaml, v);
    }

    #[test]
    fn long_sections_are_cut_with_the_command_that_lists_everything() {
        let mut p = parts();
        let web = p
            .recommendations
            .iter()
            .find(|r| r.workload.as_deref() == Some("web"))
            .cloned()
            .expect("web");
        p.recommendations = (0..12)
            .map(|i| RecommendationView {
                container: format!("c{i:02}"),
                ..web.clone()
            })
            .collect();
        let out = analyze(&AnalyzeView::new(p), Format::Table).expect("renders");
        assert!(
            out.contains("  … and 2 more: upid rightsize -o wide\n"),
            "{out}"
        );
        assert!(out.contains(" c09 ") && !out.contains(" c10 "), "{out}");
    }
}

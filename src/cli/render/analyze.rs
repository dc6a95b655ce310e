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

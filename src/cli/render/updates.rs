//! Update decisions: one object (`updates decide`) or a table with the
//! candidate, the change, the decision and why.

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::{Table, structured};
use crate::cli::units;
use crate::cli::view::updates::{ApplyView, RolloutsView, UpdateEventsView, UpdatesView};
use crate::updates::decide::{Decision, span};

/// One decision: the object itself as JSON or YAML; a one-row table.
pub fn decision(d: &Decision, format: Format) -> Result<String, CliError> {
    if let Some(text) = structured(d, format) {
        return text;
    }
    Ok(decisions_table(
        std::slice::from_ref(d),
        format == Format::Wide,
    ))
}

/// Decisions as a table: IMAGE, CURRENT, CANDIDATE, CHANGE, DECISION, AGE,
/// REASON; wide adds POLICY, MIN_AGE, ALLOW_TAGS, ELIGIBLE and NEWEST.
pub fn decisions_table(decisions: &[Decision], wide: bool) -> String {
    let mut headers = vec!["IMAGE", "CURRENT", "CANDIDATE", "CHANGE", "DECISION", "AGE"];
    if wide {
        headers.extend(["POLICY", "MIN_AGE", "ALLOW_TAGS", "ELIGIBLE", "NEWEST"]);
    }
    headers.push("REASON");
    let mut table = Table::new(&headers);
    for d in decisions {
        let dash = || "-".to_string();
        let current = match (&d.current_tag, &d.current_digest) {
            (Some(tag), _) => tag.clone(),
            (None, Some(digest)) => digest.clone(),
            (None, None) => dash(),
        };
        let mut row = vec![
            d.image.clone(),
            current,
            d.candidate_tag.clone().unwrap_or_else(dash),
            d.change.map_or_else(dash, |c| c.name().to_string()),
            d.decision.name().to_string(),
            d.age_s
                .map_or_else(dash, |a| span(u64::try_from(a).unwrap_or(0))),
        ];
        if wide {
            row.extend([
                d.policy.update_policy.name().to_string(),
                d.policy.min_age_s.map_or_else(dash, span),
                d.policy.allow_tags.clone().unwrap_or_else(dash),
                d.eligible_unix_s
                    .and_then(|s| units::rfc3339(s.saturating_mul(1_000_000_000)))
                    .unwrap_or_else(dash),
                match (&d.newest_tag, d.newest_change, d.newest_decision) {
                    (Some(tag), Some(change), Some(verdict)) => {
                        format!("{tag} ({}, {})", change.name(), verdict.name())
                    }
                    _ => dash(),
                },
            ]);
        }
        row.push(d.reason.clone());
        table.row(row);
    }
    table.render()
}

/// `upid updates`: one row per workload container and image: NAMESPACE,
/// WORKLOAD, CONTAINER, CURRENT, CANDIDATE, CHANGE, DECISION, AGE, REASON;
/// wide adds POLICY, NEWEST and NODES. Skipped containers follow as notes.
pub fn updates(view: &UpdatesView, format: Format) -> Result<String, CliError> {
    if let Some(text) = structured(view, format) {
        return text;
    }
    let wide = format == Format::Wide;
    let mut headers = vec!["NAMESPACE", "WORKLOAD", "CONTAINER", "CURRENT", "CANDIDATE"];
    headers.extend(["CHANGE", "DECISION", "AGE"]);
    if wide {
        headers.extend(["POLICY", "NEWEST", "NODES", "AGE_UNKNOWN"]);
    }
    headers.push("REASON");
    let mut table = Table::new(&headers);
    let dash = || "-".to_string();
    for d in &view.decisions {
        let mut row = vec![
            if d.namespace.is_empty() {
                dash()
            } else {
                d.namespace.clone()
            },
            d.workload.clone(),
            d.container.clone(),
            d.current.clone(),
            d.candidate.clone().unwrap_or_else(dash),
            d.change.clone(),
            d.decision.clone(),
            d.candidate_age_s
                .map_or_else(dash, |a| span(u64::try_from(a).unwrap_or(0))),
        ];
        if wide {
            row.extend([
                format!("{} ({})", d.policy, d.policy_source),
                d.newest.clone().unwrap_or_else(dash),
                d.nodes.join(","),
                d.candidate_age_unknown.clone().unwrap_or_else(dash),
            ]);
        }
        row.push(d.reason.clone());
        table.row(row);
    }
    let mut out = table.render();
    for s in &view.skipped {
        out.push_str(&format!("skipped: {s}\n"));
    }
    Ok(out)
}

/// `upid updates events`: TIME, TARGET, KIND, FROM, TO, MESSAGE.
pub fn update_events(view: &UpdateEventsView, format: Format) -> Result<String, CliError> {
    if let Some(text) = structured(view, format) {
        return text;
    }
    let mut table = Table::new(&["TIME", "TARGET", "KIND", "FROM", "TO", "MESSAGE"]);
    for e in &view.events {
        table.row(vec![
            e.time.clone().unwrap_or_else(|| "-".into()),
            e.target.clone(),
            e.kind.clone(),
            e.from_image.clone(),
            e.to_image.clone(),
            e.message.clone(),
        ]);
    }
    Ok(table.render())
}

/// `upid updates rollouts`: NAMESPACE, WORKLOAD, CONTAINER, FROM, TO, AGE
/// (of the change), VERDICT (`(provisional)` while the after window is not
/// over), SUMMARY; wide adds KIND, WINDOW, ROLLBACK and NODES. Notes on the
/// windows follow the table.
pub fn rollouts(view: &RolloutsView, format: Format) -> Result<String, CliError> {
    if let Some(text) = structured(view, format) {
        return text;
    }
    let wide = format == Format::Wide;
    let mut headers = vec!["NAMESPACE"];
    if wide {
        headers.push("KIND");
    }
    headers.extend(["WORKLOAD", "CONTAINER", "FROM", "TO", "AGE", "VERDICT"]);
    if wide {
        headers.extend(["WINDOW", "ROLLBACK", "NODES"]);
    }
    headers.push("SUMMARY");
    let mut table = Table::new(&headers);
    let dash = || "-".to_string();
    let mut notes = String::new();
    for r in &view.rollouts {
        let mut row = vec![if r.namespace.is_empty() {
            dash()
        } else {
            r.namespace.clone()
        }];
        if wide {
            row.push(r.workload_kind.clone());
        }
        row.extend([
            r.workload.clone(),
            r.container.clone(),
            r.from_image.clone(),
            r.to_image.clone(),
            units::age(view.at_unix_ns, r.changed_unix_ns),
            if r.provisional {
                format!("{} (provisional)", r.verdict)
            } else {
                r.verdict.clone()
            },
        ]);
        if wide {
            row.extend([
                units::span_s(i64::from(r.window_s)),
                r.rollback_image.clone(),
                if r.nodes.is_empty() {
                    dash()
                } else {
                    r.nodes.join(",")
                },
            ]);
        }
        row.push(r.summary.clone());
        table.row(row);
        if let Some(note) = &r.note {
            notes.push_str(&format!(
                "note: {} container {}: {note}\n",
                r.workload, r.container
            ));
        }
    }
    let mut out = table.render();
    out.push_str(&notes);
    Ok(out)
}

/// `upid updates apply`: the report as JSON/YAML; for people, the verdict,
/// each gate check and every step.
pub fn apply(view: &ApplyView, format: Format) -> Result<String, CliError> {
    if let Some(text) = structured(view, format) {
        return text;
    }
    let title = match &view.kubernetes {
        Some(k) => format!(
            "{}/{} (container {}, namespace {})",
            k.kind.to_ascii_lowercase(),
            k.name,
            view.container,
            k.namespace
        ),
        None => view.container.clone(),
    };
    let mut out = format!(
        "{}: {} -> {}: {}{}\n",
        title,
        view.from_image,
        view.to_image,
        view.verdict,
        if view.rolled_back {
            ", rolled back"
        } else if view.kubernetes.as_ref().is_some_and(|k| k.rollback_started) {
            ", rollback did not complete"
        } else {
            ""
        }
    );
    out.push_str(&format!("{}\n", view.gate.summary));
    if let Some(k) = &view.kubernetes {
        out.push_str(&format!(
            "rollout: {} ({} -> {}); pods before: {}; after: {}\n",
            k.rollout,
            k.from_revision,
            k.to_revision,
            list_or_none(&k.old_pods),
            list_or_none(&k.new_pods)
        ));
    }
    out.push('\n');
    let mut checks = Table::new(&["CHECK", "OUTCOME", "BEFORE", "AFTER", "REASON"]);
    for c in &view.gate.checks {
        checks.row(vec![
            c.check.as_str().to_string(),
            c.outcome.as_str().to_string(),
            c.before.clone(),
            c.after.clone(),
            c.reason.clone(),
        ]);
    }
    out.push_str(&checks.render());
    out.push('\n');
    let mut steps = Table::new(&["TIME", "STEP", "MESSAGE"]);
    for e in &view.events {
        steps.row(vec![
            units::rfc3339(e.ts_unix_ms.saturating_mul(1_000_000)).unwrap_or_else(|| "-".into()),
            e.kind.as_str().to_string(),
            e.message.clone(),
        ]);
    }
    out.push_str(&steps.render());
    if let Some(warning) = &view.recording_error {
        out.push_str(&format!("\nnot recorded at the collector: {warning}\n"));
    }
    Ok(out)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

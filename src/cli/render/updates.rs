//! Update decisions: one object (`updates decide`) or a table with the
//! candidate, the change, the decision and why.

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::{Table, structured};
use crate::cli::units;
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

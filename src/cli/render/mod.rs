//! Pure rendering: views in, text out. Tables for people (`table`, `wide`),
//! JSON and YAML for scripts. No I/O here, so every format is unit-tested
//! without a collector.

mod analysis;
mod analyze;
mod describe;
mod events;
pub mod export;
mod lists;
mod table;
mod updates;

pub use analysis::{cost, cost_note, idle, rightsize};
pub use analyze::analyze;
pub use describe::describe;
pub use events::events;
pub use lists::{containers, nodes, top, workloads};
pub use table::Table;
pub use updates::{apply, decision, decisions_table, rollouts, update_events, updates};

use serde::Serialize;

use crate::cli::args::Format;
use crate::cli::error::CliError;

/// `value` as pretty JSON or YAML, ending with a newline; `None` for the
/// table formats.
pub fn structured<T: Serialize + ?Sized>(
    value: &T,
    format: Format,
) -> Option<Result<String, CliError>> {
    match format {
        Format::Json => Some(
            serde_json::to_string_pretty(value)
                .map(|mut s| {
                    s.push('\n');
                    s
                })
                .map_err(|e| CliError::Encode {
                    format: "json",
                    cause: e.to_string(),
                }),
        ),
        Format::Yaml => Some(
            serde_norway::to_string(value).map_err(|e| CliError::Encode {
                format: "yaml",
                cause: e.to_string(),
            }),
        ),
        Format::Table | Format::Wide => None,
    }
}

/// The line printed on stderr (table output) when a listing is empty:
/// what was asked (`scope`: where it looked, e.g. `in namespace shop on
/// node n1`), and how many agents the collector has, so "nothing there"
/// and "nobody reporting" are told apart.
pub fn empty_hint(
    what: &str,
    scope: Option<&str>,
    agents_connected: Option<u32>,
    advice: Option<&str>,
) -> String {
    let mut line = format!("No {what} found");
    if let Some(scope) = scope {
        line.push(' ');
        line.push_str(scope);
    }
    if let Some(n) = agents_connected {
        line.push_str(&format!(" (agents connected: {n})"));
    }
    if let Some(advice) = advice {
        line.push_str(": ");
        line.push_str(advice);
    }
    line.push('\n');
    line
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_are_empty_arrays_for_scripts() {
        let empty: Vec<u32> = Vec::new();
        assert_eq!(
            structured(&empty, Format::Json).map(Result::ok),
            Some(Some("[]\n".into()))
        );
        assert_eq!(
            structured(&empty, Format::Yaml).map(Result::ok),
            Some(Some("[]\n".into()))
        );
        assert!(structured(&empty, Format::Table).is_none());
    }

    #[test]
    fn empty_hints_say_where_and_how_many_agents() {
        assert_eq!(
            empty_hint("containers", Some("on node n1"), Some(2), None),
            "No containers found on node n1 (agents connected: 2)\n"
        );
        assert_eq!(
            empty_hint(
                "events",
                Some("in namespace shop"),
                None,
                Some("widen --since")
            ),
            "No events found in namespace shop: widen --since\n"
        );
        assert_eq!(
            empty_hint("nodes", None, Some(0), Some("start an agent")),
            "No nodes found (agents connected: 0): start an agent\n"
        );
    }
}

//! The doctor's findings and how they are printed: one `✓`/`!`/`✗`/`-`
//! line per check, a fix under every warning and failure, a summary.

use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::structured;

/// Clock skew above which the doctor warns (rates and ages get wrong).
pub const MAX_CLOCK_SKEW_NS: i64 = 2_000_000_000;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but something deserves attention.
    Warn,
    /// Broken: `upid` cannot work until it is fixed.
    Fail,
    /// Not run because an earlier check failed.
    Skip,
}

impl Status {
    /// The mark printed before the check.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
            Status::Skip => "-",
        }
    }
}

/// One check and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name: `dns`, `tcp`, `tls`, `health`, `auth`, `version`,
    /// `clock`, `node NAME`, `agents`.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do (warnings and failures).
    pub fix: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A warning with its fix.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A failure with its fix.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A failure described by an error: `what: cause`, and its fix.
    pub fn failed(name: impl Into<String>, what: &str, err: &CliError) -> Self {
        Check::fail(name, format!("{what}: {}", err.cause()), err.fix())
    }

    /// A check not run.
    pub fn skip(name: impl Into<String>, why: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Skip,
            detail: why.into(),
            fix: None,
        }
    }
}

/// Everything the doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The collector URL checked.
    pub server: String,
    /// This upid's version.
    pub client_version: String,
    /// The collector's version, once known.
    pub collector_version: Option<String>,
    /// Collector clock minus this machine's, once measured.
    pub clock_skew_ns: Option<i64>,
    /// Agents with an open stream to the collector, once known.
    pub agents_connected: Option<u32>,
    /// No check failed (warnings allowed).
    pub ok: bool,
    /// The checks, in the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(checks: &[Check]) -> bool {
        checks.iter().all(|c| c.status != Status::Fail)
    }
}

/// The report as text (table formats), JSON or YAML.
pub fn render(report: &Report, format: Format) -> Result<String, CliError> {
    if let Some(s) = structured(report, format) {
        return s;
    }
    let mut out = format!(
        "Checking the collector at {} (upid {})\n",
        report.server, report.client_version
    );
    let width = report
        .checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        let detail = match c.status {
            Status::Skip => format!("skipped: {}", c.detail),
            _ => c.detail.clone(),
        };
        let _ = writeln!(out, "{} {:<width$}  {detail}", c.status.mark(), c.name,);
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "  {:<width$}  fix: {fix}", "");
        }
    }
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    let (failed, warned) = (count(Status::Fail), count(Status::Warn));
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if failed == 0 && warned == 0 {
        out.push_str("All checks passed.\n");
    } else if failed == 0 {
        let _ = writeln!(out, "No check failed; {}.", plural(warned, "warning"));
    } else {
        let _ = writeln!(
            out,
            "{} failed, {}.",
            plural(failed, "check"),
            plural(warned, "warning")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>) -> Report {
        Report {
            server: "http://127.0.0.1:7070".into(),
            client_version: "0.1.0".into(),
            collector_version: None,
            clock_skew_ns: None,
            agents_connected: None,
            ok: Report::passed(&checks),
            checks,
        }
    }

    #[test]
    fn failures_carry_their_fix_under_the_line() {
        let r = report(vec![
            Check::pass("dns", "127.0.0.1:7070 is 127.0.0.1:7070"),
            Check::fail(
                "tcp",
                "nothing listens on 127.0.0.1:7070 (connection refused)",
                "start the collector",
            ),
            Check::skip("health", "needs a connection"),
        ]);
        assert!(!r.ok);
        let text = render(&r, Format::Table).expect("renders");
        assert_eq!(
            text,
            "Checking the collector at http://127.0.0.1:7070 (upid 0.1.0)\n\
             ✓ dns     127.0.0.1:7070 is 127.0.0.1:7070\n\
             ✗ tcp     nothing listens on 127.0.0.1:7070 (connection refused)\n\
             \x20         fix: start the collector\n\
             - health  skipped: needs a connection\n\
             1 check failed, 0 warnings.\n"
        );
    }

    #[test]
    fn warnings_do_not_fail_the_report() {
        let r = report(vec![
            Check::pass("health", "SERVING"),
            Check::warn("clock", "3.0s behind", "enable NTP"),
        ]);
        assert!(r.ok);
        let text = render(&r, Format::Table).expect("renders");
        assert!(text.ends_with("No check failed; 1 warning.\n"), "{text}");
        let r = report(vec![Check::pass("health", "SERVING")]);
        assert!(
            render(&r, Format::Wide)
                .expect("renders")
                .ends_with("All checks passed.\n")
        );
    }

    #[test]
    fn json_lists_checks_with_lowercase_statuses() {
        let r = report(vec![Check::fail(
            "auth",
            "UNAUTHENTICATED",
            "pass --token-file",
        )]);
        let json = render(&r, Format::Json).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["ok"], false);
        assert_eq!(v["server"], "http://127.0.0.1:7070");
        assert_eq!(v["checks"][0]["status"], "fail");
        assert_eq!(v["checks"][0]["fix"], "pass --token-file");
    }
}

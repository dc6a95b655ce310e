//! `upid updates decide`: one decision from the tags given on the command
//! line, made by the same code the collector runs, without a collector or
//! a registry.

use crate::cli::Output;
use crate::cli::args::{DecideArgs, Format};
use crate::cli::error::CliError;
use crate::cli::render;
use crate::updates::decide::{Candidate, decide as decide_update};
use crate::updates::policy::{Policy, PolicyLevel, PolicySource};

const NS_PER_S: i64 = 1_000_000_000;

/// Decides on `--current` against `--available` under the flags' policy,
/// as of `--now` (default `now_unix_ns`).
pub fn decide(args: &DecideArgs, format: Format, now_unix_ns: i64) -> Result<Output, CliError> {
    let now_unix_ns = args.now.map_or(now_unix_ns, |t| t.resolve(now_unix_ns));
    let now_unix_s = now_unix_ns.div_euclid(NS_PER_S);
    let policy = policy(args);
    let candidates: Vec<Candidate> = args
        .available
        .iter()
        .map(|a| Candidate {
            tag: a.tag.clone(),
            digest: a.digest.clone(),
            created_unix_s: a
                .created
                .map(|t| t.resolve(now_unix_ns).div_euclid(NS_PER_S)),
        })
        .collect();
    let decision = decide_update(
        &args.current,
        args.current_digest.as_deref(),
        &candidates,
        &policy,
        now_unix_s,
    );
    Ok(Output::ok(render::decision(&decision, format)?))
}

/// The policy the flags describe; `source` is `flags` when any was given.
fn policy(args: &DecideArgs) -> Policy {
    let any = args.policy.is_some() || args.min_age.is_some() || args.allow_tags.is_some();
    Policy {
        level: args.policy.map_or(PolicyLevel::Default, |p| p.level()),
        min_age_s: args.min_age.filter(|&s| s > 0),
        allow_tags: args.allow_tags.clone(),
        source: if any {
            PolicySource::Flags
        } else {
            PolicySource::Default
        },
    }
}

//! Flags of `upid updates ...`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::cli::args::NamespaceArgs;

use crate::cli::time_arg::{self, TimeArg};
use crate::updates::policy::{AllowTags, PolicyLevel, parse_min_age};
use crate::updates::reference::{ImageReference, valid_digest};
use crate::updates::tag::is_valid_tag;

/// `upid updates ...`.
#[derive(Debug, Subcommand)]
pub enum UpdatesWhat {
    /// Decide offline whether to update one image, from tags you give: no
    /// collector and no registry are asked.
    Decide(DecideArgs),
    /// Update one Docker container on this host, or one Kubernetes
    /// workload (deployment/NAME, statefulset/NAME, daemonset/NAME), to the
    /// image its decision approves: recreate the container keeping its
    /// configuration, or patch the pod template and watch the rollout; run
    /// the health gate, roll back automatically when it fails, and record
    /// every step at the collector (`upid updates events`).
    Apply(ApplyArgs),
    /// Steps of applied updates recorded at the collector, newest first.
    Events(UpdateEventsArgs),
    /// Image changes the collector saw (Kubernetes rollouts, recreated
    /// compose services, applied updates), each judged by the health gate
    /// over a window before and after the change: healthy, degraded or
    /// failed, with the evidence and the image to roll back to.
    Rollouts(RolloutsArgs),
}

/// Flags of `upid updates rollouts`.
#[derive(Debug, Clone, Args)]
pub struct RolloutsArgs {
    /// Namespace filter.
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// Only this workload (its name).
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// Only changes at or after this time: a duration back from now
    /// (`7d`), an RFC 3339 time or a date, or `all`.
    #[arg(long, value_name = "WHEN", default_value = "24h", value_parser = parse_since)]
    pub since: TimeArg,
    /// Every rollout since then, not only the latest per workload
    /// container.
    #[arg(long)]
    pub all: bool,
    /// Length of the windows before and after the change (default: the
    /// collector's `updates.rollout_window_s`, 30m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub window: Option<Duration>,
}

/// `--since` of `upid updates rollouts`: a time as `upid events` takes it,
/// or `all` (the whole history).
fn parse_since(text: &str) -> Result<TimeArg, String> {
    if text.trim().eq_ignore_ascii_case("all") {
        return Ok(TimeArg::At(0));
    }
    time_arg::parse(text).map_err(|e| format!("{e}, nor `all`"))
}

/// Flags of `upid updates` (the listing).
#[derive(Debug, Clone, Default, Args)]
pub struct UpdatesListArgs {
    /// Namespace filter.
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// Only this workload (its name).
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// Ask the registries again instead of using the collector's cache.
    #[arg(long)]
    pub refresh: bool,
}

/// Flags of `upid updates apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The Docker container (its name or id on this host's Docker Engine),
    /// or a Kubernetes workload as KIND/NAME: deployment/web,
    /// statefulset/db, daemonset/agent (also deploy/, sts/, ds/).
    #[arg(value_name = "CONTAINER|KIND/NAME")]
    pub container: String,
    /// Apply even when the decision is not `approve` (review, hold, block),
    /// or apply --to a tag of your choosing.
    #[arg(long)]
    pub force: bool,
    /// Move to this tag of the same image instead of the decision's
    /// candidate (needs --force unless it is the approved candidate).
    #[arg(long, value_name = "TAG")]
    pub to: Option<String>,
    /// Ask the registries again before deciding.
    #[arg(long)]
    pub refresh: bool,
    /// How long the new container is watched after its health check
    /// settled (restarts, exits, OOM kills, CPU and memory).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub gate_window: Duration,
    /// How long the new container's health check may take to become
    /// healthy or unhealthy.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub health_timeout: Duration,
    /// How long the old container is watched first (the baseline).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub before_window: Duration,
    /// Keep the old container (stopped, renamed `<name>-upid-rollback`)
    /// after a healthy update instead of removing it.
    #[arg(long)]
    pub keep_old: bool,
    /// Roll back on a degraded verdict too (default: keep the update, and
    /// the old container stopped for a manual rollback).
    #[arg(long)]
    pub rollback_on_degraded: bool,
    /// Kubernetes: the workload's namespace (default: the kubeconfig
    /// context's, else `default`).
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubernetes: which container of the pod template to update (needed
    /// when it has several).
    #[arg(long = "container", value_name = "NAME")]
    pub pod_container: Option<String>,
    /// Kubernetes: the kubeconfig file (default: $KUBECONFIG, else
    /// ~/.kube/config, else the in-cluster service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes: the kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Kubernetes: longest wait for the rollout (and for a rollback's) to
    /// complete; a rollout not complete by then is rolled back (default
    /// 5m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub rollout_timeout: Option<Duration>,
    /// Time between two reads of the container or the workload and its
    /// pods (default: 500ms on Docker, 1s on Kubernetes).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub poll_interval: Option<Duration>,
}

/// How long `upid updates apply` waits for a Kubernetes rollout when
/// `--rollout-timeout` is not given.
pub const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl ApplyArgs {
    /// The Kubernetes-only flags given, by name (for refusing them on a
    /// Docker container).
    pub fn kubernetes_flags(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if self.namespace.is_some() {
            given.push("--namespace");
        }
        if self.pod_container.is_some() {
            given.push("--container");
        }
        if self.kubeconfig.is_some() {
            given.push("--kubeconfig");
        }
        if self.context.is_some() {
            given.push("--context");
        }
        if self.rollout_timeout.is_some() {
            given.push("--rollout-timeout");
        }
        given
    }
}

/// Flags of `upid updates events`.
#[derive(Debug, Clone, Args)]
pub struct UpdateEventsArgs {
    /// Only events of this container (or workload) name.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
    /// Only events at or after this time: a duration back from now (`7d`)
    /// or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = time_arg::parse)]
    pub since: Option<TimeArg>,
    /// At most this many, the newest (0: the collector's default, 100).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
}

/// A policy level as `--policy` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// The default rules: digest, build and patch approved; minor and date
    /// for review; major blocked; prereleases blocked unless allowed.
    Default,
    /// Block every update.
    None,
    /// Approve only a new digest of the running tag.
    Digest,
    /// Approve up to patch updates, block the rest.
    Patch,
    /// Approve up to minor updates, block major.
    Minor,
    /// Approve every version update (prereleases need --allow-tags).
    Major,
    /// Approve everything newer of the same shape, prereleases too.
    All,
}

impl PolicyArg {
    /// The level it names.
    pub fn level(self) -> PolicyLevel {
        match self {
            PolicyArg::Default => PolicyLevel::Default,
            PolicyArg::None => PolicyLevel::None,
            PolicyArg::Digest => PolicyLevel::Digest,
            PolicyArg::Patch => PolicyLevel::Patch,
            PolicyArg::Minor => PolicyLevel::Minor,
            PolicyArg::Major => PolicyLevel::Major,
            PolicyArg::All => PolicyLevel::All,
        }
    }
}

/// One `--available` entry: a tag and, optionally, when it was created and
/// its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableTag {
    /// The tag.
    pub tag: String,
    /// When its image was created.
    pub created: Option<TimeArg>,
    /// Its digest.
    pub digest: Option<String>,
}

/// Flags of `upid updates decide`.
#[derive(Debug, Clone, Args)]
pub struct DecideArgs {
    /// The running image: IMAGE:TAG, optionally with @DIGEST
    /// (`nginx:1.25.3`, `ghcr.io/org/app:2.1@sha256:...`).
    #[arg(long, value_name = "IMAGE:TAG", value_parser = parse_image)]
    pub current: ImageReference,
    /// The digest of the running image, when --current has none: a tag
    /// listed in --available with another digest is then a digest update.
    #[arg(long, value_name = "DIGEST", value_parser = parse_digest)]
    pub current_digest: Option<String>,
    /// The tags available, comma-separated or repeated. Each is TAG,
    /// optionally followed by @WHEN (when it was created: a date
    /// `2026-11-01`, an RFC 3339 time, or a duration ago such as `3d`)
    /// and/or @DIGEST (`sha256:...`): `1.25.4@2026-11-01`, `1.25.3@sha256:...`.
    #[arg(
        long,
        value_name = "TAG[@WHEN][@DIGEST]",
        value_delimiter = ',',
        required = true,
        value_parser = parse_available
    )]
    pub available: Vec<AvailableTag>,
    /// The policy level (as the `upid.io/update-policy` label); without it
    /// the default rules apply.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub policy: Option<PolicyArg>,
    /// The minimum release age (as `upid.io/min-age`): `7d`, `48h`.
    /// Younger tags are held; tags of unknown age (no @WHEN) go to review.
    #[arg(long, value_name = "DURATION", value_parser = parse_min_age_flag)]
    pub min_age: Option<u64>,
    /// Only tags the whole of which match this regular expression (as
    /// `upid.io/allow-tags`); prereleases it matches are allowed.
    #[arg(long, value_name = "REGEX", value_parser = parse_allow_tags)]
    pub allow_tags: Option<AllowTags>,
    /// Decide as of this time instead of now (same forms as @WHEN), to
    /// try a min-age on fixed dates.
    #[arg(long, value_name = "WHEN", value_parser = time_arg::parse)]
    pub now: Option<TimeArg>,
}

fn parse_image(text: &str) -> Result<ImageReference, String> {
    ImageReference::parse(text).map_err(|e| e.to_string())
}

fn parse_digest(text: &str) -> Result<String, String> {
    let t = text.trim();
    if valid_digest(t) {
        Ok(t.to_string())
    } else {
        Err(format!(
            "`{text}` is not a digest: expected algorithm:hex such as sha256:<64 hex digits>"
        ))
    }
}

/// `TAG[@WHEN][@DIGEST]` (the two extras in either order).
pub fn parse_available(text: &str) -> Result<AvailableTag, String> {
    let mut parts = text.trim().split('@');
    let tag = parts.next().unwrap_or_default();
    if !is_valid_tag(tag) {
        return Err(format!(
            "`{tag}` is not a tag: tags are up to 128 of [A-Za-z0-9_.-] (and + for build metadata), not starting with . or -"
        ));
    }
    let mut entry = AvailableTag {
        tag: tag.to_string(),
        created: None,
        digest: None,
    };
    for extra in parts {
        if valid_digest(extra) {
            if entry.digest.is_some() {
                return Err(format!("`{text}` has two digests"));
            }
            entry.digest = Some(extra.to_string());
        } else {
            if entry.created.is_some() {
                return Err(format!("`{text}` has two creation times"));
            }
            entry.created = Some(time_arg::parse(extra).map_err(|e| {
                format!("after @ in `{text}`: {e}, nor a digest (sha256:<64 hex digits>)")
            })?);
        }
    }
    Ok(entry)
}

fn parse_min_age_flag(text: &str) -> Result<u64, String> {
    parse_min_age(text)
        .map(|s| s.unwrap_or(0))
        .map_err(|e| format!("{e}: use a duration such as 7d, 48h, 2w, 90m"))
}

fn parse_allow_tags(text: &str) -> Result<AllowTags, String> {
    AllowTags::new(text).map_err(|e| format!("not a regular expression: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_entries_take_a_time_and_a_digest_in_either_order() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let e = parse_available(&format!("1.2.4@2026-11-01@{digest}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.tag, "1.2.4");
        assert!(matches!(e.created, Some(TimeArg::At(_))));
        assert_eq!(e.digest.as_deref(), Some(digest.as_str()));
        let e = parse_available(&format!("1.2.4@{digest}@3d")).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(e.created, Some(TimeArg::Ago(_))));
        let e =
            parse_available("1.2.4@2026-11-01T10:00:00+02:00").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(e.created, Some(TimeArg::At(_))));
        assert_eq!(e.digest, None);
    }

    #[test]
    fn bad_available_entries_say_what_works() {
        for bad in [
            "",
            "-x",
            "1.2.4@yesterday",
            "1.2.4@sha256:xyz",
            "a b",
            "1@1d@2d",
        ] {
            assert!(parse_available(bad).is_err(), "{bad} is refused");
        }
        let e = parse_available("1.2.4@soon").err().unwrap_or_default();
        assert!(e.contains("2024-05-01"), "{e}");
    }
}

//! Update policy: which changes are approved, sent to review or blocked,
//! how old a release must be, and which tags are acceptable at all. Set
//! per workload with labels or annotations over a global default:
//!
//! - `upid.io/update-policy`: `none`, `digest`, `patch`, `minor`, `major`
//!   or `all`. Without it, the default rules: patch (and digest, build)
//!   approved, minor and date for review, major blocked, prereleases
//!   blocked unless allowed.
//! - `upid.io/min-age`: a duration (`7d`, `48h`): younger releases are
//!   held, and a release of unknown age is not approved blindly.
//! - `upid.io/allow-tags`: a regular expression the whole tag must match;
//!   other tags are not considered, and prereleases it matches are allowed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::updates::classify::{Change, Classification, Step};

/// Label (or annotation) naming the policy level.
pub const LABEL_UPDATE_POLICY: &str = "upid.io/update-policy";
/// Label (or annotation) with the minimum release age.
pub const LABEL_MIN_AGE: &str = "upid.io/min-age";
/// Label (or annotation) with the regular expression of acceptable tags.
pub const LABEL_ALLOW_TAGS: &str = "upid.io/allow-tags";

/// Most memory an allow-tags expression may compile to: a label cannot
/// make the collector build a huge automaton.
const ALLOW_TAGS_SIZE_LIMIT_BYTES: usize = 256 * 1024;

/// How far updates are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyLevel {
    /// The default rules: digest, build and patch approved; minor and date
    /// for review; major blocked; prereleases blocked unless allowed.
    Default,
    /// Nothing is approved: every update is blocked (and still shown).
    None,
    /// Only a new digest of the running tag is approved.
    Digest,
    /// Digest, build and patch updates are approved, the rest blocked.
    Patch,
    /// Up to minor (and date) updates are approved, major blocked.
    Minor,
    /// Every version update is approved; prereleases still need
    /// `upid.io/allow-tags`.
    Major,
    /// Everything newer of the same shape is approved, prereleases too.
    All,
}

impl PolicyLevel {
    /// The values `upid.io/update-policy` and `--policy` accept.
    pub const ACCEPTED: &'static str = "none, digest, patch, minor, major, all";

    /// Reads a label value: one of [`Self::ACCEPTED`], any case, spaces
    /// around ignored.
    pub fn parse(value: &str) -> Option<PolicyLevel> {
        let value = value.trim();
        [
            PolicyLevel::None,
            PolicyLevel::Digest,
            PolicyLevel::Patch,
            PolicyLevel::Minor,
            PolicyLevel::Major,
            PolicyLevel::All,
        ]
        .into_iter()
        .find(|level| level.name().eq_ignore_ascii_case(value))
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyLevel::Default => "default",
            PolicyLevel::None => "none",
            PolicyLevel::Digest => "digest",
            PolicyLevel::Patch => "patch",
            PolicyLevel::Minor => "minor",
            PolicyLevel::Major => "major",
            PolicyLevel::All => "all",
        }
    }

    /// The largest step an explicit level approves (`None` for the level
    /// `none` and for the default rules).
    fn max_step(self) -> Option<Step> {
        match self {
            PolicyLevel::Default | PolicyLevel::None => None,
            PolicyLevel::Digest => Some(Step::Digest),
            PolicyLevel::Patch => Some(Step::Patch),
            PolicyLevel::Minor => Some(Step::Minor),
            PolicyLevel::Major | PolicyLevel::All => Some(Step::Major),
        }
    }
}

/// Where a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySource {
    /// The global default (built in, or the collector's configuration).
    Default,
    /// At least one `upid.io/...` label or annotation of the workload.
    Labels,
    /// Command-line flags (`upid updates decide`).
    Flags,
}

/// What to do with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Take it.
    Approve,
    /// A person should look first (a minor update under the default
    /// rules, or a release of unknown age under a min-age).
    Review,
    /// The policy would take it, but it is younger than the min-age: wait
    /// until it is eligible.
    Hold,
    /// The policy does not take it.
    Block,
    /// There is no update to decide on (up to date, or nothing comparable).
    None,
}

impl Verdict {
    /// Lower-case name as JSON and tables write it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Review => "review",
            Verdict::Hold => "hold",
            Verdict::Block => "block",
            Verdict::None => "none",
        }
    }
}

/// A compiled `upid.io/allow-tags` expression. It must match the whole
/// tag (it is compiled as `^(?:EXPR)$`).
#[derive(Debug, Clone)]
pub struct AllowTags {
    pattern: String,
    regex: regex::Regex,
}

impl AllowTags {
    /// Compiles `pattern`; the error is the regex library's explanation.
    pub fn new(pattern: &str) -> Result<AllowTags, String> {
        let build = |expression: &str| {
            regex::RegexBuilder::new(expression)
                .size_limit(ALLOW_TAGS_SIZE_LIMIT_BYTES)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => "the expression is too large".to_string(),
                    other => other.to_string(),
                })
        };
        // Errors point into the expression as written, not the anchored
        // one.
        build(pattern)?;
        let regex = build(&format!("^(?:{pattern})$"))?;
        Ok(AllowTags {
            pattern: pattern.to_string(),
            regex,
        })
    }

    /// The expression as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole `tag` matches.
    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }
}

impl PartialEq for AllowTags {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

/// A label value that cannot be used. The collector logs it and falls back
/// to the default policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not a policy level.
    #[error(
        "invalid {label} value {value:?}: accepted values are none, digest, patch, minor, major, all"
    )]
    Level {
        /// The label (or flag) that held it.
        label: String,
        /// The value as given.
        value: String,
    },
    /// Not a duration.
    #[error(
        "invalid {label} value {value:?} ({cause}): accepted values are durations such as 7d, 48h, 2w, 90m"
    )]
    MinAge {
        /// The label (or flag) that held it.
        label: String,
        /// The value as given.
        value: String,
        /// Why it is not a duration.
        cause: String,
    },
    /// Not a regular expression.
    #[error(
        "invalid {label} value {value:?}: accepted values are regular expressions matching whole tags, such as 1\\.25\\.\\d+ ({cause})"
    )]
    AllowTags {
        /// The label (or flag) that held it.
        label: String,
        /// The value as given.
        value: String,
        /// The regex library's explanation.
        cause: String,
    },
}

/// The policy for one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// How far updates are taken.
    pub level: PolicyLevel,
    /// Releases younger than this are held; `None`: no minimum.
    pub min_age_s: Option<u64>,
    /// Only tags matching this are considered; prereleases it matches are
    /// allowed.
    pub allow_tags: Option<AllowTags>,
    /// Where the policy came from.
    pub source: PolicySource,
}

impl Default for Policy {
    /// The built-in default: the default rules, no min-age, every tag.
    fn default() -> Self {
        Policy {
            level: PolicyLevel::Default,
            min_age_s: None,
            allow_tags: None,
            source: PolicySource::Default,
        }
    }
}

/// A minimum release age as `upid.io/min-age` and `--min-age` take it: a
/// duration such as `7d`, `48h`, `1w2d`, `90m`; `0` means none.
pub fn parse_min_age(value: &str) -> Result<Option<u64>, String> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| e.to_string())?;
    Ok(Some(d.as_secs()).filter(|&s| s > 0))
}

impl Policy {
    /// The policy of a workload: `default`, overridden by whichever of
    /// the `upid.io/update-policy`, `upid.io/min-age` and
    /// `upid.io/allow-tags` labels (or annotations, merged into the same
    /// map) are present. An unusable value is an error naming the label
    /// and the accepted values.
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        default: &Policy,
    ) -> Result<Policy, PolicyError> {
        let mut policy = default.clone();
        if let Some(value) = labels.get(LABEL_UPDATE_POLICY) {
            policy.level = PolicyLevel::parse(value).ok_or_else(|| PolicyError::Level {
                label: LABEL_UPDATE_POLICY.into(),
                value: value.clone(),
            })?;
            policy.source = PolicySource::Labels;
        }
        if let Some(value) = labels.get(LABEL_MIN_AGE) {
            policy.min_age_s = parse_min_age(value).map_err(|cause| PolicyError::MinAge {
                label: LABEL_MIN_AGE.into(),
                value: value.clone(),
                cause,
            })?;
            policy.source = PolicySource::Labels;
        }
        if let Some(value) = labels.get(LABEL_ALLOW_TAGS) {
            policy.allow_tags =
                Some(
                    AllowTags::new(value).map_err(|cause| PolicyError::AllowTags {
                        label: LABEL_ALLOW_TAGS.into(),
                        value: value.clone(),
                        cause,
                    })?,
                );
            policy.source = PolicySource::Labels;
        }
        Ok(policy)
    }

    /// Whether prereleases may be approved: level `all`, or an
    /// allow-tags expression (which the candidate has matched to be
    /// considered at all).
    pub fn allows_prereleases(&self) -> bool {
        self.level == PolicyLevel::All || self.allow_tags.is_some()
    }

    /// Whether a tag other than the running one is considered at all.
    pub fn considers(&self, tag: &str) -> bool {
        self.allow_tags.as_ref().is_none_or(|a| a.matches(tag))
    }

    /// The verdict on an update before its age is looked at: approve,
    /// review or block. Anything that is not an update is blocked.
    pub fn judge(&self, class: &Classification) -> Verdict {
        let Some(step) = class.step.filter(|_| class.change.is_update()) else {
            return Verdict::Block;
        };
        if class.change == Change::Prerelease && !self.allows_prereleases() {
            return Verdict::Block;
        }
        match self.level {
            PolicyLevel::Default => match step {
                Step::Digest | Step::Build | Step::Patch => Verdict::Approve,
                Step::Minor => Verdict::Review,
                Step::Major => Verdict::Block,
            },
            PolicyLevel::All => Verdict::Approve,
            level => match level.max_step() {
                Some(max) if step <= max => Verdict::Approve,
                _ => Verdict::Block,
            },
        }
    }

    /// The policy as reasons name it: `the default policy`, `policy
    /// "minor"`.
    pub fn describe(&self) -> String {
        match self.level {
            PolicyLevel::Default => "the default policy".into(),
            level => format!("policy \"{}\"", level.name()),
        }
    }

    /// What JSON shows of the policy.
    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            update_policy: self.level,
            source: self.source,
            min_age_s: self.min_age_s,
            allow_tags: self.allow_tags.as_ref().map(|a| a.pattern.clone()),
        }
    }
}

/// The policy that applied, as decisions show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySummary {
    /// `default`, `none`, `digest`, `patch`, `minor`, `major` or `all`.
    pub update_policy: PolicyLevel,
    /// `default`, `labels` or `flags`.
    pub source: PolicySource,
    /// The minimum release age, `null` when none.
    pub min_age_s: Option<u64>,
    /// The allow-tags expression, `null` when none.
    pub allow_tags: Option<String>,
}

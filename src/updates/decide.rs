//! The decision for one running image: which available tag to take (if
//! any), what kind of change it is, and whether the policy approves it,
//! sends it to review, holds it for its min-age or blocks it, with a
//! reason a person can check.
//!
//! Which candidate is named, in this order:
//! 1. the newest one the policy approves;
//! 2. else the nearest (lowest) one that needs review;
//! 3. else the held one that becomes eligible first;
//! 4. else the newest blocked one, so users see what they are missing.
//!
//! The newest newer tag overall is named too when it is another one.
//! Every candidate tag is parsed once; nothing is allocated per tag
//! (except for rare variants split by a prerelease).

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::updates::classify::{Change, Classification, Step, classify};
use crate::updates::policy::{LABEL_ALLOW_TAGS, Policy, PolicyLevel, PolicySummary, Verdict};
use crate::updates::reference::ImageReference;
use crate::updates::tag::{Tag, TagKind};

/// A tag available in the registry, with what is known about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Candidate {
    /// The tag.
    pub tag: String,
    /// Its manifest digest, when known.
    pub digest: Option<String>,
    /// When its image was created (Unix seconds), when known.
    pub created_unix_s: Option<i64>,
}

impl Candidate {
    /// A tag with nothing else known.
    pub fn tag(tag: impl Into<String>) -> Candidate {
        Candidate {
            tag: tag.into(),
            digest: None,
            created_unix_s: None,
        }
    }
}

/// How the available tags compared with the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TagCounts {
    /// Tags given (the running tag included, when listed).
    pub available: u32,
    /// Updates considered: newer tags of the same shape, and a new digest
    /// of the running tag.
    pub newer: u32,
    /// The running tag itself (same digest or digest unknown), and tags of
    /// the same or an older version.
    pub older_or_same: u32,
    /// Tags of another variant, number of parts, prefix, date form or
    /// kind; all tags when the running tag is a name or a hash.
    pub incompatible: u32,
    /// Tags that cannot be parsed (or all, when the running tag cannot).
    pub unknown: u32,
    /// Newer tags left out because they do not match `upid.io/allow-tags`.
    pub not_allowed: u32,
}

/// The decision for one running image. Field names are a stable
/// interface (JSON of `upid updates decide` and `upid updates`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// `registry/repository`, e.g. `docker.io/library/nginx`.
    pub image: String,
    /// The running image: `registry/repository:tag[@digest]`.
    pub current: String,
    /// The running tag (`null` for an image pinned by digest only).
    pub current_tag: Option<String>,
    /// The running digest, when known.
    pub current_digest: Option<String>,
    /// The image to take: `registry/repository:tag[@digest]`; `null` when
    /// there is no update.
    pub candidate: Option<String>,
    /// Its tag.
    pub candidate_tag: Option<String>,
    /// Its digest, when known.
    pub candidate_digest: Option<String>,
    /// What kind of change the candidate is; `null` without one.
    pub change: Option<Change>,
    /// `approve`, `review`, `hold`, `block`, or `none` (no update).
    pub decision: Verdict,
    /// Why, in a sentence.
    pub reason: String,
    /// The policy that applied.
    pub policy: PolicySummary,
    /// How long ago the candidate was created; `null` when unknown (or no
    /// candidate).
    pub age_s: Option<i64>,
    /// When the candidate was created (Unix seconds), when known.
    pub released_unix_s: Option<i64>,
    /// For `hold`: when the candidate reaches the min-age (Unix seconds).
    pub eligible_unix_s: Option<i64>,
    /// `eligible_unix_s` as RFC 3339 UTC.
    pub eligible: Option<String>,
    /// The newest newer tag, when it is not the candidate.
    pub newest_tag: Option<String>,
    /// Its kind of change.
    pub newest_change: Option<Change>,
    /// What the policy says of it.
    pub newest_decision: Option<Verdict>,
    /// How the available tags compared.
    pub tags: TagCounts,
}

/// The tags worth fetching metadata (digest, creation time) for: the
/// running tag itself (its digest may have changed) and every newer tag of
/// the same shape. Everything else can never be an update, so a registry
/// client need not ask about it. Order is kept.
pub fn relevant_tags<'t>(
    current_tag: &str,
    all_tags: impl IntoIterator<Item = &'t str>,
) -> Vec<&'t str> {
    let current = Tag::parse(current_tag);
    all_tags
        .into_iter()
        .filter(|t| *t == current_tag || classify(&current, &Tag::parse(t)).change.is_update())
        .collect()
}

/// A candidate under consideration. `tag: None` is a new digest of the
/// running tag, which orders below every newer tag.
#[derive(Debug, Clone)]
struct Pick<'a> {
    index: usize,
    tag: Option<Tag<'a>>,
    class: Classification,
    policy_verdict: Verdict,
    verdict: Verdict,
    age: AgeCheck,
}

/// What the min-age said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgeCheck {
    /// No min-age, or the verdict was block anyway.
    NotNeeded,
    /// Old enough.
    Old,
    /// Younger than the min-age; eligible then (Unix seconds).
    Young { eligible_unix_s: i64 },
    /// Min-age set, creation time unknown.
    Unknown,
}

impl Pick<'_> {
    /// Version order between picks (a digest of the running tag first).
    fn newer_than(&self, other: &Pick<'_>) -> bool {
        match (&self.tag, &other.tag) {
            (Some(a), Some(b)) => a.cmp_version(b).is_gt(),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether this pick beats `other` of the same verdict: the newest
    /// approved or blocked one, the nearest one for review, the held one
    /// eligible first (then the newest).
    fn better_than(&self, other: &Pick<'_>) -> bool {
        match self.verdict {
            Verdict::Review => other.newer_than(self),
            Verdict::Hold => {
                self.eligible() < other.eligible()
                    || (self.eligible() == other.eligible() && self.newer_than(other))
            }
            _ => self.newer_than(other),
        }
    }

    fn eligible(&self) -> i64 {
        match self.age {
            AgeCheck::Young { eligible_unix_s } => eligible_unix_s,
            _ => i64::MIN,
        }
    }
}

/// The best pick of each verdict so far.
#[derive(Default)]
struct Best<'a> {
    approve: Option<Pick<'a>>,
    review: Option<Pick<'a>>,
    hold: Option<Pick<'a>>,
    block: Option<Pick<'a>>,
    newest: Option<Pick<'a>>,
}

impl<'a> Best<'a> {
    fn offer(&mut self, pick: Pick<'a>) {
        if self.newest.as_ref().is_none_or(|n| pick.newer_than(n)) {
            self.newest = Some(pick.clone());
        }
        let slot = match pick.verdict {
            Verdict::Approve => &mut self.approve,
            Verdict::Review => &mut self.review,
            Verdict::Hold => &mut self.hold,
            Verdict::Block | Verdict::None => &mut self.block,
        };
        if slot
            .as_ref()
            .is_none_or(|current| pick.better_than(current))
        {
            *slot = Some(pick);
        }
    }

    /// The candidate, the newest pick, and the held pick when the
    /// candidate is not it.
    fn chosen(self) -> (Option<Pick<'a>>, Option<Pick<'a>>, Option<Pick<'a>>) {
        match (self.approve, self.review, self.hold) {
            (Some(approve), _, _) => (Some(approve), self.newest, None),
            (None, Some(review), hold) => (Some(review), self.newest, hold),
            (None, None, Some(hold)) => (Some(hold), self.newest, None),
            (None, None, None) => (self.block, self.newest, None),
        }
    }
}

/// Decides on one running image. `running_digest` overrides the digest of
/// `current` (a tag reference's running image digest, as the runtime
/// reports it). `now_unix_s` is when ages are measured. Never fails: what
/// cannot be judged is `none` with the reason.
pub fn decide(
    current: &ImageReference,
    running_digest: Option<&str>,
    candidates: &[Candidate],
    policy: &Policy,
    now_unix_s: i64,
) -> Decision {
    let running_digest = running_digest.or(current.digest.as_deref());
    let mut decision = Decision {
        image: current.name(),
        current: reference(current, current.tag.as_deref(), running_digest),
        current_tag: current.tag.clone(),
        current_digest: running_digest.map(str::to_string),
        candidate: None,
        candidate_tag: None,
        candidate_digest: None,
        change: None,
        decision: Verdict::None,
        reason: String::new(),
        policy: policy.summary(),
        age_s: None,
        released_unix_s: None,
        eligible_unix_s: None,
        eligible: None,
        newest_tag: None,
        newest_change: None,
        newest_decision: None,
        tags: TagCounts {
            available: u32::try_from(candidates.len()).unwrap_or(u32::MAX),
            ..TagCounts::default()
        },
    };
    let Some(current_tag) = current.tag.as_deref() else {
        decision.reason =
            "the image is pinned by digest only: there is no tag to follow".to_string();
        return decision;
    };
    let running = Tag::parse(current_tag);
    let mut best = Best::default();
    let mut counts = TagCounts::default();
    // The running tag's own entry: None when not listed.
    let mut own_digest: Option<Option<&str>> = None;
    for (index, candidate) in candidates.iter().enumerate() {
        let (tag, class) = if candidate.tag == current_tag {
            own_digest = Some(candidate.digest.as_deref());
            match (running_digest, candidate.digest.as_deref()) {
                (Some(a), Some(b)) if a != b => {
                    let class = Classification {
                        change: Change::Digest,
                        step: Some(Step::Digest),
                        mismatch: None,
                    };
                    (None, class)
                }
                _ => {
                    counts.older_or_same += 1;
                    continue;
                }
            }
        } else {
            let tag = Tag::parse(&candidate.tag);
            let class = classify(&running, &tag);
            match class.change {
                Change::Same | Change::Downgrade => counts.older_or_same += 1,
                Change::Incompatible => counts.incompatible += 1,
                Change::Unknown => counts.unknown += 1,
                _ => {}
            }
            if !class.change.is_update() {
                continue;
            }
            if !policy.considers(&candidate.tag) {
                counts.not_allowed += 1;
                continue;
            }
            (Some(tag), class)
        };
        counts.newer += 1;
        let policy_verdict = policy.judge(&class);
        let (verdict, age) = check_age(
            policy_verdict,
            policy.min_age_s,
            candidate.created_unix_s,
            now_unix_s,
        );
        best.offer(Pick {
            index,
            tag,
            class,
            policy_verdict,
            verdict,
            age,
        });
    }
    counts.available = decision.tags.available;
    decision.tags = counts;

    let (chosen, newest, held) = best.chosen();
    let Some(chosen) = chosen else {
        decision.reason = nothing_newer(&running, running_digest, own_digest, &counts);
        return decision;
    };
    let entry = &candidates[chosen.index];
    let candidate_tag = chosen.tag.as_ref().map_or(current_tag, |t| t.raw());
    decision.candidate = Some(reference(
        current,
        Some(candidate_tag),
        entry.digest.as_deref(),
    ));
    decision.candidate_tag = Some(candidate_tag.to_string());
    decision.candidate_digest = entry.digest.clone();
    decision.change = Some(chosen.class.change);
    decision.decision = chosen.verdict;
    decision.released_unix_s = entry.created_unix_s;
    decision.age_s = entry
        .created_unix_s
        .map(|c| now_unix_s.saturating_sub(c).max(0));
    if let AgeCheck::Young { eligible_unix_s } = chosen.age {
        decision.eligible_unix_s = Some(eligible_unix_s);
        decision.eligible = rfc3339(eligible_unix_s);
    }
    let mut reason = explain(
        &chosen,
        &running,
        running_digest,
        entry,
        policy,
        decision.age_s,
    );
    if let Some(held) = &held
        && let AgeCheck::Young { eligible_unix_s } = held.age
    {
        let tag = held.tag.as_ref().map_or(current_tag, |t| t.raw());
        reason.push_str(&format!(
            "; {tag} ({}) is held until {}",
            held.class.change.name(),
            rfc3339(eligible_unix_s).unwrap_or_else(|| eligible_unix_s.to_string())
        ));
    }
    if let Some(newest) = newest.filter(|n| n.index != chosen.index) {
        let tag = newest.tag.as_ref().map_or(current_tag, |t| t.raw());
        reason.push_str(&format!(
            "; the newest is {tag} ({}, {})",
            newest.class.change.name(),
            newest.verdict.name()
        ));
        decision.newest_tag = Some(tag.to_string());
        decision.newest_change = Some(newest.class.change);
        decision.newest_decision = Some(newest.verdict);
    }
    reason.push('.');
    decision.reason = reason;
    decision
}

/// Applies the min-age to a policy verdict.
fn check_age(
    verdict: Verdict,
    min_age_s: Option<u64>,
    created_unix_s: Option<i64>,
    now_unix_s: i64,
) -> (Verdict, AgeCheck) {
    let Some(min_age_s) =
        min_age_s.filter(|_| matches!(verdict, Verdict::Approve | Verdict::Review))
    else {
        return (verdict, AgeCheck::NotNeeded);
    };
    let Some(created) = created_unix_s else {
        return (Verdict::Review, AgeCheck::Unknown);
    };
    let min_age = i64::try_from(min_age_s).unwrap_or(i64::MAX);
    let eligible_unix_s = created.saturating_add(min_age);
    if now_unix_s < eligible_unix_s {
        (Verdict::Hold, AgeCheck::Young { eligible_unix_s })
    } else {
        (verdict, AgeCheck::Old)
    }
}

/// `registry/repository[:tag][@digest]`.
fn reference(image: &ImageReference, tag: Option<&str>, digest: Option<&str>) -> String {
    let mut s = image.name();
    if let Some(tag) = tag {
        s.push(':');
        s.push_str(tag);
    }
    if let Some(digest) = digest {
        s.push('@');
        s.push_str(digest);
    }
    s
}

/// Why a pick got its verdict, without the final full stop.
fn explain(
    pick: &Pick<'_>,
    running: &Tag<'_>,
    running_digest: Option<&str>,
    entry: &Candidate,
    policy: &Policy,
    age_s: Option<i64>,
) -> String {
    let current = running.raw();
    let step = pick.class.step.unwrap_or(Step::Patch);
    let mut out = match (&pick.tag, pick.class.change) {
        (None, _) => format!(
            "{current} has a new digest ({} → {}): the same tag, rebuilt",
            short_digest(running_digest.unwrap_or("?")),
            short_digest(entry.digest.as_deref().unwrap_or("?"))
        ),
        (Some(t), Change::Prerelease) => {
            let allowed = if policy.level == PolicyLevel::All {
                format!(", allowed by {}", policy.describe())
            } else if policy.allow_tags.is_some() {
                format!(", allowed by {LABEL_ALLOW_TAGS}")
            } else {
                String::new()
            };
            format!(
                "{} is a prerelease (a {} step from {current}){allowed}",
                t.raw(),
                step.name()
            )
        }
        (Some(t), Change::Build) => {
            format!("{} is a rebuild of {current} (a higher revision)", t.raw())
        }
        (Some(t), Change::Date) => format!("{} is a later date tag than {current}", t.raw()),
        (Some(t), Change::Patch)
            if running.prerelease().is_some() && t.numbers() == running.numbers() =>
        {
            format!("{} is the release of the prerelease {current}", t.raw())
        }
        (Some(t), change) => format!("{} is a {} update from {current}", t.raw(), change.name()),
    };
    out.push_str("; ");
    out.push_str(&rule(pick, policy));
    let min_age = policy.min_age_s.map(span);
    match (pick.age, age_s, min_age) {
        (AgeCheck::Young { eligible_unix_s }, Some(age), Some(min)) => out.push_str(&format!(
            ", but it was released {} ago, under the min-age of {min}: eligible from {}",
            span(u64::try_from(age).unwrap_or(0)),
            rfc3339(eligible_unix_s).unwrap_or_else(|| eligible_unix_s.to_string())
        )),
        (AgeCheck::Unknown, _, Some(min)) => out.push_str(&format!(
            ", but its release age is unknown, so the min-age of {min} cannot be checked: review it"
        )),
        (_, Some(age), Some(min)) => out.push_str(&format!(
            "; released {} ago (min-age {min})",
            span(u64::try_from(age).unwrap_or(0))
        )),
        (_, Some(age), None) => out.push_str(&format!(
            "; released {} ago",
            span(u64::try_from(age).unwrap_or(0))
        )),
        _ => {}
    }
    out
}

/// What the policy level said about the pick.
fn rule(pick: &Pick<'_>, policy: &Policy) -> String {
    let who = policy.describe();
    let kind = match pick.class.change {
        Change::Prerelease => pick.class.step.unwrap_or(Step::Patch).name(),
        change => change.name(),
    };
    if pick.class.change == Change::Prerelease && !policy.allows_prereleases() {
        return format!(
            "prereleases are blocked unless the policy is \"all\" or {LABEL_ALLOW_TAGS} matches them"
        );
    }
    match (policy.level, pick.policy_verdict) {
        (PolicyLevel::None, _) => format!("{who} blocks every update"),
        (PolicyLevel::All, _) => format!("{who} approves every update"),
        (PolicyLevel::Default, Verdict::Approve) => format!("{who} approves {kind} updates"),
        (PolicyLevel::Default, Verdict::Review) => {
            format!("{who} sends {kind} updates to review")
        }
        (PolicyLevel::Default, _) => format!("{who} blocks {kind} updates"),
        (PolicyLevel::Digest, Verdict::Approve) => format!("{who} approves digest updates"),
        (PolicyLevel::Digest, _) => {
            format!("{who} approves only digest updates and blocks {kind} ones")
        }
        (level, Verdict::Approve) => format!("{who} approves updates up to {}", level.name()),
        (level, _) => format!(
            "{who} approves updates up to {} and blocks {kind} ones",
            level.name()
        ),
    }
}

/// Why there is no candidate.
fn nothing_newer(
    running: &Tag<'_>,
    running_digest: Option<&str>,
    own_digest: Option<Option<&str>>,
    counts: &TagCounts,
) -> String {
    let tag = running.raw();
    let digest_state = match (own_digest, running_digest) {
        (None, _) => format!("{tag} is not among the available tags"),
        (Some(None), _) => format!("no digest of {tag} was given to compare"),
        (Some(Some(_)), None) => "the running digest is unknown".to_string(),
        (Some(Some(_)), Some(_)) => format!("the digest of {tag} is unchanged"),
    };
    match running.kind() {
        TagKind::Unknown => format!(
            "cannot read the running tag {tag}: only a new digest of it could be an update, and {digest_state}."
        ),
        TagKind::Named => format!(
            "{tag} is a floating tag: only a new digest of it is an update, and {digest_state}."
        ),
        TagKind::Hash => format!(
            "{tag} is a commit-hash tag, which has no order: only a new digest of it is an update, and {digest_state}."
        ),
        TagKind::Version | TagKind::Date => {
            let mut parts = Vec::new();
            for (n, what) in [
                (counts.older_or_same, "older or the same"),
                (counts.incompatible, "of another variant or form"),
                (counts.unknown, "unreadable"),
                (counts.not_allowed, "not matching upid.io/allow-tags"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
            let detail = if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            };
            let digest_note = match (own_digest, running_digest) {
                (Some(Some(_)), None) => {
                    format!(
                        "; whether {tag} itself was rebuilt is unknown (running digest unknown)"
                    )
                }
                _ => String::new(),
            };
            format!(
                "up to date: no newer tag of the same form as {tag} among {} available{detail}{digest_note}.",
                counts.available
            )
        }
    }
}

/// `sha256:0123456789ab`: algorithm and the first 12 hex digits.
fn short_digest(digest: &str) -> &str {
    match digest.find(':') {
        Some(i) => digest.get(..i + 13).unwrap_or(digest),
        None => digest,
    }
}

/// A span of seconds in its two largest units: `7d`, `1d12h`, `3h`,
/// `2h30m`, `45m`, `30s`.
pub fn span(seconds: u64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|(u, _)| seconds >= *u) else {
        return "0s".to_string();
    };
    let (unit, name) = units[first];
    let mut out = format!("{}{name}", seconds / unit);
    if let Some((next, next_name)) = units.get(first + 1) {
        let rest = seconds % unit / next;
        if rest > 0 {
            out.push_str(&format!("{rest}{next_name}"));
        }
    }
    out
}

/// Unix seconds as RFC 3339 UTC (`2026-11-08T00:00:00Z`); `None` before
/// 1970.
pub fn rfc3339(unix_s: i64) -> Option<String> {
    let secs = u64::try_from(unix_s).ok()?;
    let t = UNIX_EPOCH.checked_add(Duration::from_secs(secs))?;
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

//! What kind of change a candidate tag is against the running tag: major,
//! minor, patch, build, date, prerelease, digest, or not an update at all
//! (same, downgrade, incompatible, unknown).
//!
//! Only tags of the same shape are compared (see [`Tag::mismatch`]): a tag
//! of another variant, another number of parts, another prefix or another
//! kind is `incompatible` and never offered as an update.

use serde::Serialize;

use crate::updates::tag::{Mismatch, Tag, TagKind};

/// The kind of change from the running image to a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The same tag now points at another image (a rebuild, a base image
    /// refresh).
    Digest,
    /// The same version with a higher revision (`1.2.3-1` → `1.2.3-2`,
    /// `-r3` → `-r4`).
    Build,
    /// The last numbers change (`1.25.3` → `1.25.4`; the third and fourth
    /// of `1.2.3.4`), or a prerelease becomes its release (`2.0.0-rc2` →
    /// `2.0.0`).
    Patch,
    /// The second number changes (`1.25.3` → `1.26.0`, `3.12` → `3.13`).
    Minor,
    /// The first number changes (`1.25.3` → `2.0.0`, `17` → `21`).
    Major,
    /// A later date tag (`20240102` → `20240301`): dates promise nothing
    /// about compatibility.
    Date,
    /// A newer tag that is a prerelease (`1.26.0-rc.1`, `3.13.0b1`).
    Prerelease,
    /// The same version, or the same tag with the same (or an unknown)
    /// digest: nothing to take.
    Same,
    /// An older version.
    Downgrade,
    /// Not comparable: another variant, number of parts, prefix, date
    /// format or kind of tag; or the running tag is a name or a hash,
    /// which have no order.
    Incompatible,
    /// One of the tags cannot be parsed.
    Unknown,
}

impl Change {
    /// Lower-case name as JSON and tables write it.
    pub fn name(self) -> &'static str {
        match self {
            Change::Digest => "digest",
            Change::Build => "build",
            Change::Patch => "patch",
            Change::Minor => "minor",
            Change::Major => "major",
            Change::Date => "date",
            Change::Prerelease => "prerelease",
            Change::Same => "same",
            Change::Downgrade => "downgrade",
            Change::Incompatible => "incompatible",
            Change::Unknown => "unknown",
        }
    }

    /// Whether this is an update one could take (newer, same shape).
    pub fn is_update(self) -> bool {
        matches!(
            self,
            Change::Digest
                | Change::Build
                | Change::Patch
                | Change::Minor
                | Change::Major
                | Change::Date
                | Change::Prerelease
        )
    }
}

/// The size of a newer version's step, whether or not it is a prerelease:
/// what a policy level weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Same tag, new digest.
    Digest,
    /// A higher revision of the same version.
    Build,
    /// A patch-level change (or prerelease to release, prerelease to a
    /// later prerelease of the same version).
    Patch,
    /// A minor change; a later date weighs as much.
    Minor,
    /// A major change.
    Major,
}

impl Step {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Step::Digest => "digest",
            Step::Build => "build",
            Step::Patch => "patch",
            Step::Minor => "minor",
            Step::Major => "major",
        }
    }
}

/// A candidate judged against the running tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    /// The kind of change.
    pub change: Change,
    /// For updates: the size of the step (a prerelease's too).
    pub step: Option<Step>,
    /// For [`Change::Incompatible`]: why.
    pub mismatch: Option<Mismatch>,
}

impl Classification {
    fn of(change: Change) -> Self {
        Classification {
            change,
            step: None,
            mismatch: None,
        }
    }
}

/// Classifies `candidate` against `current` by their tags alone (a digest
/// change needs the digests: see [`classify_image`]).
pub fn classify(current: &Tag<'_>, candidate: &Tag<'_>) -> Classification {
    if current.raw() == candidate.raw() {
        return Classification::of(Change::Same);
    }
    if current.kind() == TagKind::Unknown || candidate.kind() == TagKind::Unknown {
        return Classification::of(Change::Unknown);
    }
    if let Some(mismatch) = current.mismatch(candidate) {
        return Classification {
            change: Change::Incompatible,
            step: None,
            mismatch: Some(mismatch),
        };
    }
    match candidate.cmp_version(current) {
        std::cmp::Ordering::Less => Classification::of(Change::Downgrade),
        std::cmp::Ordering::Equal => Classification::of(Change::Same),
        std::cmp::Ordering::Greater => {
            let step = step(current, candidate);
            let change = if candidate.prerelease().is_some() {
                Change::Prerelease
            } else if current.kind() == TagKind::Date && step == Step::Minor {
                Change::Date
            } else {
                match step {
                    Step::Digest | Step::Build => Change::Build,
                    Step::Patch => Change::Patch,
                    Step::Minor => Change::Minor,
                    Step::Major => Change::Major,
                }
            };
            Classification {
                change,
                step: Some(step),
                mismatch: None,
            }
        }
    }
}

/// The step from `current` to a newer same-shaped `candidate`.
fn step(current: &Tag<'_>, candidate: &Tag<'_>) -> Step {
    let (a, b) = (current.numbers(), candidate.numbers());
    match a.iter().zip(b).position(|(x, y)| x != y) {
        // A later date weighs as a minor change.
        Some(_) if current.kind() == TagKind::Date => Step::Minor,
        Some(0) => Step::Major,
        Some(1) => Step::Minor,
        Some(_) => Step::Patch,
        // Same numbers: prerelease → release or → later prerelease is
        // patch-sized; otherwise only the revision grew.
        None if current.prerelease() != candidate.prerelease() => Step::Patch,
        None => Step::Build,
    }
}

/// Classifies by tags and digests: the same tag with a different digest
/// than the running one is a [`Change::Digest`]; with the same digest, or
/// when either digest is unknown, it is [`Change::Same`].
pub fn classify_image(
    current: &Tag<'_>,
    running_digest: Option<&str>,
    candidate: &Tag<'_>,
    candidate_digest: Option<&str>,
) -> Classification {
    if current.raw() == candidate.raw() {
        return match (running_digest, candidate_digest) {
            (Some(a), Some(b)) if a != b => Classification {
                change: Change::Digest,
                step: Some(Step::Digest),
                mismatch: None,
            },
            _ => Classification::of(Change::Same),
        };
    }
    classify(current, candidate)
}

/// [`classify`] of two tags as text.
pub fn classify_tags(current: &str, candidate: &str) -> Classification {
    classify(&Tag::parse(current), &Tag::parse(candidate))
}

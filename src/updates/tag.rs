//! Image tags as people write them, parsed once into something that can be
//! ordered and compared: `v1.25.3`, `1.25.3-alpine3.19`, `8.0.1-rc1-alpine`,
//! `2.4.58-debian-12-r3`, `20240102`, `jammy-20240102`, `3f2a9c1`,
//! `latest`.
//!
//! A tag is read as `PREFIX CORE [SUFFIX] [+METADATA]`:
//! - `PREFIX`: nothing, `v`/`V`, or letters ending in `-` or `_`
//!   (`release-`, `jammy-`, optionally followed by `v`). Letters glued to
//!   the first digit (`alpine3.19`, `jdk17`) make the whole tag a name.
//! - `CORE`: one to four dot-separated numbers, or a date (`20240102`,
//!   `2024.01.02`, `2024-01-02`, `2024_01_02`, optionally `T1530[00][Z]`).
//! - `SUFFIX`: segments separated by `-`, each a prerelease (`rc1`,
//!   `rc.1`, `beta2`, `alpha`, `pre`, `dev`, ...), a revision (`-1` right
//!   after the core, `-r3` anywhere), a commit hash (`abc1234`,
//!   `gabc1234`), or part of the variant (`alpine3.19`, `slim-bookworm`).
//!
//! Parsing never fails and never panics: what cannot be read is
//! [`TagKind::Unknown`]. It does not allocate, except for a variant that is
//! split by a prerelease (`1.2.3-alpine-rc1-slim`). The rules are written
//! out with examples in `docs/updates.md`.

use std::borrow::Cow;
use std::cmp::Ordering;

/// Tags longer than this are not valid (the OCI distribution limit).
pub const MAX_TAG_BYTES: usize = 128;
/// Most numeric parts a version tag may have (`1.2.3.4`).
pub const MAX_PARTS: usize = 4;

/// What a tag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagKind {
    /// A version: one to four numbers (`17`, `3.12`, `v1.25.3`,
    /// `8.0.1-rc1-alpine`).
    Version,
    /// A date (`20240102`, `2024.01.02`, `2024-01-02`, `jammy-20240102`).
    Date,
    /// A commit hash (`3f2a9c1`, `sha-3f2a9c1`): unordered.
    Hash,
    /// A name without a version (`latest`, `stable`, `alpine3.19`,
    /// `lts-slim`): a floating tag that moves to new images.
    Named,
    /// Not a tag this parser can read (bad characters, more than four
    /// numbers, a number too large, an empty segment).
    Unknown,
}

impl TagKind {
    /// Lower-case name, as docs and reasons write it.
    pub fn name(self) -> &'static str {
        match self {
            TagKind::Version => "version",
            TagKind::Date => "date",
            TagKind::Hash => "commit hash",
            TagKind::Named => "name",
            TagKind::Unknown => "unknown",
        }
    }
}

/// Prerelease stages, lowest first: a later stage is newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PreStage {
    /// `dev`, `snapshot`, `nightly`, `canary`, `ea` (early access).
    Dev,
    /// `alpha`, `a1` (letter `a` only with a number).
    Alpha,
    /// `beta`, `b2` (letter `b` only with a number).
    Beta,
    /// `pre`, `preview`.
    Preview,
    /// `rc`: release candidate.
    Rc,
}

/// A prerelease marker: stage and optional number (`rc.2`, `beta3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prerelease {
    /// The stage.
    pub stage: PreStage,
    /// The number after it; absent counts as 0.
    pub number: Option<u64>,
}

impl Ord for Prerelease {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.stage, self.number.unwrap_or(0)).cmp(&(other.stage, other.number.unwrap_or(0)))
    }
}

impl PartialOrd for Prerelease {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// How a revision (build number of the same version) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevisionStyle {
    /// `1.2.3-1` (Debian style), a number right after the version.
    Dash,
    /// `1.2.3_1`.
    Underscore,
    /// `-r3` (Alpine packages, Bitnami images).
    R,
    /// `+build5`: the number ending semver build metadata.
    Plus,
}

/// How a date tag is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateStyle {
    /// `20240102`.
    Compact,
    /// `2024.01.02`.
    Dotted,
    /// `2024-01-02`.
    Dashed,
    /// `2024_01_02`.
    Underscored,
}

/// Why two tags are not the same shape, so neither can replace the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mismatch {
    /// The two are different kinds (date and version, or a name, hash or
    /// unknown on either side).
    Kind,
    /// Different prefixes (`v1.2.3` and `1.2.3`, `jammy-` and `noble-`).
    Prefix,
    /// Different numbers of version parts (`1.25` and `1.25.4`).
    Parts,
    /// Dates written differently (`20240102` and `2024.01.03`), or one with
    /// a time of day and one without.
    DateStyle,
    /// Different variants (`alpine3.19` and `alpine3.20`, `slim` and none).
    Variant,
    /// One has a revision and the other not, or they write it differently
    /// (`-1` and `-r1`).
    Revision,
    /// One carries a commit hash and the other not.
    Commit,
}

impl Mismatch {
    /// A short phrase for reasons: "another variant", "another number of
    /// parts".
    pub fn phrase(self) -> &'static str {
        match self {
            Mismatch::Kind => "another kind of tag",
            Mismatch::Prefix => "another prefix",
            Mismatch::Parts => "another number of version parts",
            Mismatch::DateStyle => "another date format",
            Mismatch::Variant => "another variant",
            Mismatch::Revision => "another revision style",
            Mismatch::Commit => "another build style (commit hash)",
        }
    }
}

/// A parsed tag. It borrows the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    raw: &'a str,
    kind: TagKind,
    prefix: &'a str,
    numbers: [u64; MAX_PARTS],
    parts: u8,
    date: Option<(DateStyle, bool)>,
    prerelease: Option<Prerelease>,
    revision: Option<(u64, RevisionStyle)>,
    commit: bool,
    variant: Cow<'a, str>,
    variant_sep: u8,
}

impl<'a> Tag<'a> {
    /// Parses a tag. Never fails: unreadable tags are
    /// [`TagKind::Unknown`].
    pub fn parse(raw: &'a str) -> Tag<'a> {
        parse_tag(raw).unwrap_or_else(|| Tag::of_kind(raw, TagKind::Unknown))
    }

    fn of_kind(raw: &'a str, kind: TagKind) -> Tag<'a> {
        Tag {
            raw,
            kind,
            prefix: "",
            numbers: [0; MAX_PARTS],
            parts: 0,
            date: None,
            prerelease: None,
            revision: None,
            commit: false,
            variant: Cow::Borrowed(""),
            variant_sep: 0,
        }
    }

    /// The tag as written.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// What kind of tag it is.
    pub fn kind(&self) -> TagKind {
        self.kind
    }

    /// Whether it is a version or a date, i.e. can be ordered.
    pub fn is_ordered(&self) -> bool {
        matches!(self.kind, TagKind::Version | TagKind::Date)
    }

    /// The prefix before the first number (`v`, `release-`), empty when
    /// none.
    pub fn prefix(&self) -> &'a str {
        self.prefix
    }

    /// The numbers: version parts (`[1, 25, 3]`), or for a date year,
    /// month, day and, when written, the time of day as `HHMMSS`.
    pub fn numbers(&self) -> &[u64] {
        &self.numbers[..usize::from(self.parts)]
    }

    /// How the date is written and whether it has a time of day; `None`
    /// for anything but dates.
    pub fn date_style(&self) -> Option<(DateStyle, bool)> {
        self.date
    }

    /// The prerelease marker, if any.
    pub fn prerelease(&self) -> Option<Prerelease> {
        self.prerelease
    }

    /// The revision and how it is written, if any.
    pub fn revision(&self) -> Option<(u64, RevisionStyle)> {
        self.revision
    }

    /// Whether a commit hash is part of the tag (`1.2.3-abc1234`); the
    /// hash itself is ignored for ordering.
    pub fn has_commit(&self) -> bool {
        self.commit
    }

    /// The variant (`alpine3.19`, `slim-bookworm`), empty when none.
    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// Why `other` is not the same shape as this tag; `None` when it is
    /// (same kind, prefix, number of parts or date form, variant, revision
    /// style, commit style). Only same-shaped tags are ever compared.
    pub fn mismatch(&self, other: &Tag<'_>) -> Option<Mismatch> {
        if self.kind != other.kind || !self.is_ordered() {
            return Some(Mismatch::Kind);
        }
        if self.prefix != other.prefix {
            return Some(Mismatch::Prefix);
        }
        if self.kind == TagKind::Version && self.parts != other.parts {
            return Some(Mismatch::Parts);
        }
        if self.date != other.date {
            return Some(Mismatch::DateStyle);
        }
        if self.variant_sep != other.variant_sep || self.variant != other.variant {
            return Some(Mismatch::Variant);
        }
        if self.revision.map(|r| r.1) != other.revision.map(|r| r.1) {
            return Some(Mismatch::Revision);
        }
        if self.commit != other.commit {
            return Some(Mismatch::Commit);
        }
        None
    }

    /// Version order of two same-shaped tags: numbers, then a release
    /// after its prereleases (`1.2.3-rc1 < 1.2.3`), prerelease stages
    /// `dev < alpha < beta < pre < rc` and their numbers, then the
    /// revision. Tags of different shapes compare by the same fields but
    /// the answer means nothing.
    pub fn cmp_version(&self, other: &Tag<'_>) -> Ordering {
        self.numbers
            .cmp(&other.numbers)
            .then_with(|| match (self.prerelease, other.prerelease) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.cmp(&b),
            })
            .then_with(|| {
                let a = self.revision.map_or(0, |r| r.0);
                let b = other.revision.map_or(0, |r| r.0);
                a.cmp(&b)
            })
    }
}

/// Whether `tag` has only characters this parser accepts (those of OCI
/// tags, plus `+` for semver build metadata), is at most 128 bytes and
/// does not start with `.`, `-` or `+`.
pub fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_BYTES
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'+'))
        && !tag.starts_with(['.', '-', '+'])
}

/// Whether `s` is a commit hash: 7 to 40 lower-case hex characters with at
/// least one digit and one letter (so `20240102` and `deadbeef` are not).
pub fn is_commit_hash(s: &str) -> bool {
    (7..=40).contains(&s.len())
        && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_lowercase())
}

fn parse_tag(raw: &str) -> Option<Tag<'_>> {
    if !is_valid_tag(raw) {
        return None;
    }
    if is_commit_hash(raw) || is_word_hash(raw) {
        return Some(Tag::of_kind(raw, TagKind::Hash));
    }
    let bytes = raw.as_bytes();
    let Some(first_digit) = bytes.iter().position(u8::is_ascii_digit) else {
        return Some(Tag::of_kind(raw, TagKind::Named));
    };
    let prefix = &raw[..first_digit];
    if !valid_prefix(prefix) {
        return Some(Tag::of_kind(raw, TagKind::Named));
    }
    let mut tag = Tag::of_kind(raw, TagKind::Version);
    tag.prefix = prefix;

    // The core: up to four dot-separated numbers.
    let mut i = first_digit;
    let mut lens = [0usize; MAX_PARTS];
    let mut parts = 0usize;
    loop {
        if parts == MAX_PARTS {
            return None;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        tag.numbers[parts] = number(&bytes[start..i])?;
        lens[parts] = i - start;
        parts += 1;
        if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
            i += 1;
        } else {
            break;
        }
    }
    tag.parts = u8::try_from(parts).ok()?;
    i = read_date(&mut tag, bytes, i, &lens)?;

    // `+metadata`: a trailing number is a revision, the rest is ignored.
    let rest = &raw[i..];
    let (suffix, metadata) = match rest.split_once('+') {
        Some((suffix, metadata)) => (suffix, Some(metadata)),
        None => (rest, None),
    };
    read_suffix(&mut tag, suffix)?;
    if let Some(metadata) = metadata {
        if metadata.is_empty() || metadata.contains('+') {
            return None;
        }
        // `build5`, `build.17`, `20240102`: letters, an optional dot, a
        // number. Anything else (`exp.sha.5114f85`) orders nothing.
        let letters = metadata.bytes().take_while(u8::is_ascii_alphabetic).count();
        let digits = metadata[letters..]
            .strip_prefix('.')
            .unwrap_or(&metadata[letters..]);
        if tag.revision.is_none()
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            tag.revision = Some((number(digits.as_bytes())?, RevisionStyle::Plus));
        }
    }
    Some(tag)
}

/// `sha-3f2a9c1`, `main-3f2a9c1`, `feature-x-3f2a9c1`: words, then a hash.
fn is_word_hash(raw: &str) -> bool {
    match raw.rsplit_once('-') {
        Some((words, hash)) => {
            is_commit_hash(hash)
                && words.starts_with(|c: char| c.is_ascii_alphabetic())
                && words
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'_'))
        }
        None => false,
    }
}

/// `""`, `v`, `V`, or letters ending in `-`/`_`, optionally then `v`.
fn valid_prefix(prefix: &str) -> bool {
    let words = prefix.strip_suffix(['v', 'V']).unwrap_or(prefix);
    words.is_empty()
        || (words.ends_with(['-', '_'])
            && words.starts_with(|c: char| c.is_ascii_alphabetic())
            && words
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'_')))
}

/// A run of digits as a number; `None` when empty or too large.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Turns a version core that is a date into a date: `20240102`
/// (`202401021530[00]`), `2024.01.02`, and `2024-01-02` / `2024_01_02`
/// (read here, past `i`). Then an optional `T1530[00][Z]`. Returns where
/// the core ends.
fn read_date(tag: &mut Tag<'_>, bytes: &[u8], mut i: usize, lens: &[usize]) -> Option<usize> {
    let n = tag.numbers;
    let (style, ymd, mut time) = match (tag.parts, lens) {
        (1, [8 | 12 | 14, ..]) => {
            let (v, len) = (n[0], lens[0]);
            let (date, time) = match len {
                8 => (v, None),
                12 => (v / 10_000, Some((v % 10_000) * 100)),
                _ => (v / 1_000_000, Some(v % 1_000_000)),
            };
            let ymd = (date / 10_000, date / 100 % 100, date % 100);
            if !valid_date(ymd) || time.is_some_and(|t| !valid_time(t)) {
                return Some(i);
            }
            (DateStyle::Compact, ymd, time)
        }
        (3, [4, 2, 2, ..]) if valid_date((n[0], n[1], n[2])) => {
            (DateStyle::Dotted, (n[0], n[1], n[2]), None)
        }
        (1, [4, ..]) => {
            let style = match bytes.get(i) {
                Some(b'-') => DateStyle::Dashed,
                Some(b'_') => DateStyle::Underscored,
                _ => return Some(i),
            };
            let sep = bytes[i];
            let Some(tail) = bytes.get(i..i + 6) else {
                return Some(i);
            };
            let two = |d: &[u8]| {
                d.iter()
                    .all(u8::is_ascii_digit)
                    .then(|| number(d))
                    .flatten()
            };
            let ok = tail[0] == sep && tail[3] == sep;
            let (Some(m), Some(d)) = (two(&tail[1..3]), two(&tail[4..6])) else {
                return Some(i);
            };
            let next_is_digit = bytes.get(i + 6).is_some_and(u8::is_ascii_digit);
            if !ok || next_is_digit || !valid_date((n[0], m, d)) {
                return Some(i);
            }
            i += 6;
            (style, (n[0], m, d), None)
        }
        _ => return Some(i),
    };
    if time.is_none() && matches!(bytes.get(i), Some(b'T')) {
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 4 || digits == 6 {
            let mut t = number(&bytes[i + 1..i + 1 + digits])?;
            if digits == 4 {
                t *= 100;
            }
            if valid_time(t) {
                i += 1 + digits;
                if bytes.get(i) == Some(&b'Z') {
                    i += 1;
                }
                time = Some(t);
            }
        }
    }
    tag.kind = TagKind::Date;
    tag.numbers = [ymd.0, ymd.1, ymd.2, time.unwrap_or(0)];
    tag.parts = if time.is_some() { 4 } else { 3 };
    tag.date = Some((style, time.is_some()));
    Some(i)
}

fn valid_date((y, m, d): (u64, u64, u64)) -> bool {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1970..=2199).contains(&y) && (1..=days).contains(&d)
}

/// `HHMMSS`.
fn valid_time(t: u64) -> bool {
    t / 10_000 < 24 && t / 100 % 100 < 60 && t % 100 < 60
}

/// Reads what follows the core (without `+metadata`) into prerelease,
/// revision, commit and variant. `None` when it is malformed (an empty
/// segment, a character that cannot start a suffix).
fn read_suffix<'a>(tag: &mut Tag<'a>, suffix: &'a str) -> Option<()> {
    let Some(&first) = suffix.as_bytes().first() else {
        return Some(());
    };
    let (sep, body) = match first {
        b'-' | b'_' | b'.' => (first, &suffix[1..]),
        b if b.is_ascii_alphabetic() => (0, suffix),
        _ => return None,
    };
    // Which segments belong to the variant (a tag has at most 64), and the
    // byte range from the first to the last of them.
    let mut variant_mask = 0u128;
    let mut range: Option<(usize, usize)> = None;
    let mut previous_was_prerelease = false;
    let mut offset = 0usize;
    for (index, segment) in body.split('-').enumerate() {
        let start = offset;
        offset += segment.len() + 1;
        if segment.is_empty() || index >= 128 {
            return None;
        }
        let digits = segment.bytes().all(|b| b.is_ascii_digit());
        let was_prerelease = std::mem::take(&mut previous_was_prerelease);
        if index == 0 && digits {
            let style = match sep {
                b'_' => RevisionStyle::Underscore,
                _ => RevisionStyle::Dash,
            };
            tag.revision = Some((number(segment.as_bytes())?, style));
            continue;
        }
        if tag.prerelease.is_none()
            && let Some(p) = prerelease(segment)
        {
            tag.prerelease = Some(p);
            previous_was_prerelease = true;
            continue;
        }
        if digits && was_prerelease {
            // `rc-1` is rc 1; `rc1-1` is rc 1, revision 1.
            let n = number(segment.as_bytes())?;
            match tag.prerelease.as_mut() {
                Some(p) if p.number.is_none() => {
                    p.number = Some(n);
                    continue;
                }
                _ if tag.revision.is_none() => {
                    tag.revision = Some((n, RevisionStyle::Dash));
                    continue;
                }
                _ => {}
            }
        }
        if tag.revision.is_none()
            && let Some(r) = segment
                .strip_prefix('r')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            tag.revision = Some((number(r.as_bytes())?, RevisionStyle::R));
            continue;
        }
        if is_commit_hash(segment) || segment.strip_prefix('g').is_some_and(is_commit_hash) {
            tag.commit = true;
            continue;
        }
        variant_mask |= 1u128 << index;
        let end = start + segment.len();
        range = Some(range.map_or((start, end), |(from, _)| (from, end)));
    }
    if let Some((from, to)) = range {
        tag.variant_sep = if variant_mask & 1 == 1 { sep } else { b'-' };
        // Contiguous segments (the usual case) are borrowed as they are.
        let run = variant_mask >> variant_mask.trailing_zeros();
        let contiguous = run & run.wrapping_add(1) == 0;
        tag.variant = if contiguous {
            Cow::Borrowed(&body[from..to])
        } else {
            let mut joined = String::with_capacity(to - from);
            for (index, segment) in body.split('-').enumerate() {
                if index < 128 && variant_mask & (1u128 << index) != 0 {
                    if !joined.is_empty() {
                        joined.push('-');
                    }
                    joined.push_str(segment);
                }
            }
            Cow::Owned(joined)
        };
    }
    Some(())
}

/// Prerelease stage words, any case.
const STAGES: [(&str, PreStage); 12] = [
    ("a", PreStage::Alpha),
    ("alpha", PreStage::Alpha),
    ("b", PreStage::Beta),
    ("beta", PreStage::Beta),
    ("pre", PreStage::Preview),
    ("preview", PreStage::Preview),
    ("rc", PreStage::Rc),
    ("dev", PreStage::Dev),
    ("snapshot", PreStage::Dev),
    ("nightly", PreStage::Dev),
    ("canary", PreStage::Dev),
    ("ea", PreStage::Dev),
];

/// A prerelease segment: a stage word, then optionally `.` or `_` and a
/// number: `rc1`, `rc.1`, `beta2`, `alpha`, `RC1`. The single letters `a`
/// and `b` count only with a number (`3.13.0b1`).
fn prerelease(segment: &str) -> Option<Prerelease> {
    let letters = segment.bytes().take_while(u8::is_ascii_alphabetic).count();
    let (word, rest) = segment.split_at(letters);
    let digits = rest.strip_prefix(['.', '_']).unwrap_or(rest);
    if digits.is_empty() != rest.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (_, stage) = STAGES.iter().find(|(w, _)| w.eq_ignore_ascii_case(word))?;
    let number = if digits.is_empty() {
        None
    } else {
        Some(number(digits.as_bytes())?)
    };
    if word.len() == 1 && number.is_none() {
        return None;
    }
    Some(Prerelease {
        stage: *stage,
        number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_split_by_a_prerelease_is_joined() {
        let t = Tag::parse("1.2.3-alpine-rc1-slim");
        assert_eq!(t.kind(), TagKind::Version);
        assert_eq!(t.variant(), "alpine-slim");
        assert_eq!(
            t.prerelease(),
            Some(Prerelease {
                stage: PreStage::Rc,
                number: Some(1)
            })
        );
    }

    #[test]
    fn bitnami_revision_keeps_the_distro_in_the_variant() {
        let t = Tag::parse("2.4.58-debian-12-r3");
        assert_eq!(t.variant(), "debian-12");
        assert_eq!(t.revision(), Some((3, RevisionStyle::R)));
    }
}

//! Safe-update decision logic, table-driven: how tags parse, how they
//! order, what kind of change a candidate is, what a policy from labels
//! says, and which decision comes out (candidate, change, verdict, reason)
//! under each policy, min-age and allow-tags. Then the real `upid` binary
//! deciding offline, and property tests that no input makes any of it
//! panic.
//!
//! Every expectation here was worked out by hand from the rules in
//! docs/updates.md.

use std::collections::BTreeMap;
use std::process::Command;

use proptest::prelude::*;
use upid::updates::classify::{Change, Step, classify, classify_tags};
use upid::updates::decide::{Candidate, Decision, decide, relevant_tags};
use upid::updates::policy::{
    AllowTags, LABEL_ALLOW_TAGS, LABEL_MIN_AGE, LABEL_UPDATE_POLICY, Policy, PolicyError,
    PolicyLevel, PolicySource, Verdict,
};
use upid::updates::reference::ImageReference;
use upid::updates::tag::{DateStyle, Mismatch, PreStage, RevisionStyle, Tag, TagKind};

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// A parsed tag in one line: `version prefix=v 1.25.3 pre=rc.1 rev=2/dash
/// commit variant=alpine3.19`; `date dashed+time 2024.1.2.153000`;
/// `name`; `hash`; `unknown`.
fn describe(raw: &str) -> String {
    let t = Tag::parse(raw);
    let mut out = match t.kind() {
        TagKind::Version => "version".to_string(),
        TagKind::Date => {
            let (style, time) = t.date_style().unwrap_or((DateStyle::Compact, false));
            let style = match style {
                DateStyle::Compact => "compact",
                DateStyle::Dotted => "dotted",
                DateStyle::Dashed => "dashed",
                DateStyle::Underscored => "underscored",
            };
            format!("date {style}{}", if time { "+time" } else { "" })
        }
        TagKind::Hash => return "hash".into(),
        TagKind::Named => return "name".into(),
        TagKind::Unknown => return "unknown".into(),
    };
    if !t.prefix().is_empty() {
        out.push_str(&format!(" prefix={}", t.prefix()));
    }
    let numbers: Vec<String> = t.numbers().iter().map(u64::to_string).collect();
    out.push_str(&format!(" {}", numbers.join(".")));
    if let Some(p) = t.prerelease() {
        let stage = match p.stage {
            PreStage::Dev => "dev",
            PreStage::Alpha => "alpha",
            PreStage::Beta => "beta",
            PreStage::Preview => "pre",
            PreStage::Rc => "rc",
        };
        match p.number {
            Some(n) => out.push_str(&format!(" pre={stage}.{n}")),
            None => out.push_str(&format!(" pre={stage}")),
        }
    }
    if let Some((n, style)) = t.revision() {
        let style = match style {
            RevisionStyle::Dash => "dash",
            RevisionStyle::Underscore => "underscore",
            RevisionStyle::R => "r",
            RevisionStyle::Plus => "plus",
        };
        out.push_str(&format!(" rev={n}/{style}"));
    }
    if t.has_commit() {
        out.push_str(" commit");
    }
    if !t.variant().is_empty() {
        out.push_str(&format!(" variant={}", t.variant()));
    }
    out
}

const PARSE_CASES: &[(&str, &str)] = &[
    // Plain versions, one to four parts.
    ("1", "version 1"),
    ("17", "version 17"),
    ("0", "version 0"),
    ("3.12", "version 3.12"),
    ("24.04", "version 24.4"),
    ("1.25.3", "version 1.25.3"),
    ("0.0.1", "version 0.0.1"),
    ("10.20.30", "version 10.20.30"),
    ("1.2.3.4", "version 1.2.3.4"),
    ("010.02.3", "version 10.2.3"),
    ("2024.1.2", "version 2024.1.2"),
    ("1234567", "version 1234567"),
    ("18446744073709551615", "version 18446744073709551615"),
    // `v` prefixes and word prefixes.
    ("v1", "version prefix=v 1"),
    ("v2.3.4", "version prefix=v 2.3.4"),
    ("V2.3.4", "version prefix=V 2.3.4"),
    ("v0.10.0", "version prefix=v 0.10.0"),
    ("release-1.2.3", "version prefix=release- 1.2.3"),
    ("release-v1.2.3", "version prefix=release-v 1.2.3"),
    ("rel_1.2", "version prefix=rel_ 1.2"),
    ("version-2", "version prefix=version- 2"),
    ("stable-1.25", "version prefix=stable- 1.25"),
    // Variants: everything after the version that is not a prerelease,
    // revision or commit hash.
    ("1.25.3-alpine3.19", "version 1.25.3 variant=alpine3.19"),
    ("1.25-alpine", "version 1.25 variant=alpine"),
    ("1-alpine", "version 1 variant=alpine"),
    ("3.12-slim-bookworm", "version 3.12 variant=slim-bookworm"),
    (
        "3.12.1-slim-bookworm",
        "version 3.12.1 variant=slim-bookworm",
    ),
    ("17-jdk", "version 17 variant=jdk"),
    ("17-jdk-jammy", "version 17 variant=jdk-jammy"),
    (
        "21.0.2_13-jre-alpine",
        "version 21.0.2 rev=13/underscore variant=jre-alpine",
    ),
    ("8.3-fpm-alpine3.19", "version 8.3 variant=fpm-alpine3.19"),
    (
        "1.25.3-alpine3.19-perl",
        "version 1.25.3 variant=alpine3.19-perl",
    ),
    ("20-bullseye-slim", "version 20 variant=bullseye-slim"),
    ("8.0-jammy-chiseled", "version 8.0 variant=jammy-chiseled"),
    ("1.2.3_alpine", "version 1.2.3 variant=alpine"),
    ("1.2.3alpine", "version 1.2.3 variant=alpine"),
    ("2.7.0.RELEASE", "version 2.7.0 variant=RELEASE"),
    ("5.0.Final", "version 5.0 variant=Final"),
    ("1.2.3-b", "version 1.2.3 variant=b"),
    ("1.0a", "version 1.0 variant=a"),
    (
        "1.2.3-windowsservercore-ltsc2022",
        "version 1.2.3 variant=windowsservercore-ltsc2022",
    ),
    (
        "2.4.58-debian-12-r3",
        "version 2.4.58 rev=3/r variant=debian-12",
    ),
    (
        "16.2.0-debian-12-r0",
        "version 16.2.0 rev=0/r variant=debian-12",
    ),
    ("1.2.3-debian-12", "version 1.2.3 variant=debian-12"),
    // Prereleases, any case, with `.`/`_`/`-`/nothing before the number.
    ("1.2.3-rc.1", "version 1.2.3 pre=rc.1"),
    ("1.2.3-rc1", "version 1.2.3 pre=rc.1"),
    ("1.2.3-RC1", "version 1.2.3 pre=rc.1"),
    ("1.2.3-Rc_1", "version 1.2.3 pre=rc.1"),
    ("1.2.3-rc", "version 1.2.3 pre=rc"),
    ("1.2.3-rc-2", "version 1.2.3 pre=rc.2"),
    ("1.2.3-rc1-2", "version 1.2.3 pre=rc.1 rev=2/dash"),
    ("1.2.3-beta2", "version 1.2.3 pre=beta.2"),
    ("1.2.3-beta.2", "version 1.2.3 pre=beta.2"),
    ("1.2.3-beta", "version 1.2.3 pre=beta"),
    ("1.2.3-BETA", "version 1.2.3 pre=beta"),
    ("1.2.3-alpha", "version 1.2.3 pre=alpha"),
    ("1.2.3-alpha.1", "version 1.2.3 pre=alpha.1"),
    ("1.2.3-alpha1", "version 1.2.3 pre=alpha.1"),
    ("1.2.3-pre", "version 1.2.3 pre=pre"),
    ("1.2.3-preview.3", "version 1.2.3 pre=pre.3"),
    ("1.2.3-dev", "version 1.2.3 pre=dev"),
    ("1.2.3-dev20240102", "version 1.2.3 pre=dev.20240102"),
    ("1.2.3-SNAPSHOT", "version 1.2.3 pre=dev"),
    ("1.2.3-nightly", "version 1.2.3 pre=dev"),
    ("1.2.3-canary.5", "version 1.2.3 pre=dev.5"),
    ("21-ea", "version 21 pre=dev"),
    ("22-ea-jdk", "version 22 pre=dev variant=jdk"),
    ("3.13.0b1", "version 3.13.0 pre=beta.1"),
    ("3.13.0a4", "version 3.13.0 pre=alpha.4"),
    ("3.13.0rc2", "version 3.13.0 pre=rc.2"),
    ("1.22rc1", "version 1.22 pre=rc.1"),
    ("1.0.0beta", "version 1.0.0 pre=beta"),
    ("3.13.0b1-slim", "version 3.13.0 pre=beta.1 variant=slim"),
    ("3.13-rc-alpine", "version 3.13 pre=rc variant=alpine"),
    ("8.0.1-rc1-alpine", "version 8.0.1 pre=rc.1 variant=alpine"),
    (
        "8.0.1-rc1-alpine3.19",
        "version 8.0.1 pre=rc.1 variant=alpine3.19",
    ),
    ("4.0.0.alpha1", "version 4.0.0 pre=alpha.1"),
    ("1.2.3-alpine-rc1", "version 1.2.3 pre=rc.1 variant=alpine"),
    (
        "1.2.3-alpine-rc1-slim",
        "version 1.2.3 pre=rc.1 variant=alpine-slim",
    ),
    ("v2.0.0-beta.3", "version prefix=v 2.0.0 pre=beta.3"),
    ("1.0.0-alpha.beta", "version 1.0.0 variant=alpha.beta"),
    // Revisions: Debian `-N` right after the version, `_N`, `-rN`,
    // `+...N`.
    ("1.2.3-1", "version 1.2.3 rev=1/dash"),
    ("1.2.3-10", "version 1.2.3 rev=10/dash"),
    ("1.2.3-0", "version 1.2.3 rev=0/dash"),
    ("1.2.3-1-alpine", "version 1.2.3 rev=1/dash variant=alpine"),
    ("1.2.3_1", "version 1.2.3 rev=1/underscore"),
    ("1.2.3-r0", "version 1.2.3 rev=0/r"),
    ("1.2.3-alpine-r1", "version 1.2.3 rev=1/r variant=alpine"),
    ("2.3.4+build5", "version 2.3.4 rev=5/plus"),
    ("2.3.4+build.17", "version 2.3.4 rev=17/plus"),
    ("2.3.4+20240102", "version 2.3.4 rev=20240102/plus"),
    ("2.3.4+build", "version 2.3.4"),
    ("2.3.4+exp.sha.5114f85", "version 2.3.4"),
    ("1.2.3-1+build9", "version 1.2.3 rev=1/dash"),
    ("1.2.3-rc1+build9", "version 1.2.3 pre=rc.1 rev=9/plus"),
    // Commit hashes inside a version tag are build metadata.
    ("1.2.3-abc1234", "version 1.2.3 commit"),
    ("1.2.3-3f2a9c1d8e7b", "version 1.2.3 commit"),
    (
        "v1.2.3-12-gabc1234",
        "version prefix=v 1.2.3 rev=12/dash commit",
    ),
    (
        "1.2.3-alpine-abc1234",
        "version 1.2.3 commit variant=alpine",
    ),
    ("pr-123-abc1234", "version prefix=pr- 123 commit"),
    // Dates.
    ("20240102", "date compact 2024.1.2"),
    ("20240229", "date compact 2024.2.29"),
    ("19991231", "date compact 1999.12.31"),
    ("202401021530", "date compact+time 2024.1.2.153000"),
    ("20240102153045", "date compact+time 2024.1.2.153045"),
    ("2024.01.02", "date dotted 2024.1.2"),
    ("1999.12.31", "date dotted 1999.12.31"),
    ("2024-01-02", "date dashed 2024.1.2"),
    ("2024_01_02", "date underscored 2024.1.2"),
    ("2024-01-02-1", "date dashed 2024.1.2 rev=1/dash"),
    ("20240102-1", "date compact 2024.1.2 rev=1/dash"),
    ("20240102-alpine", "date compact 2024.1.2 variant=alpine"),
    ("jammy-20240102", "date compact prefix=jammy- 2024.1.2"),
    ("noble-20240301", "date compact prefix=noble- 2024.3.1"),
    (
        "bookworm-20240102-slim",
        "date compact prefix=bookworm- 2024.1.2 variant=slim",
    ),
    ("v20240102", "date compact prefix=v 2024.1.2"),
    ("20240102T1530Z", "date compact+time 2024.1.2.153000"),
    ("20240102T153000", "date compact+time 2024.1.2.153000"),
    ("2024-01-02T1530", "date dashed+time 2024.1.2.153000"),
    ("20240102-rc1", "date compact 2024.1.2 pre=rc.1"),
    // Numbers that are not dates stay versions.
    ("20241302", "version 20241302"),
    ("20240230", "version 20240230"),
    ("20230229", "version 20230229"),
    ("19691231", "version 19691231"),
    ("22000101", "version 22000101"),
    ("2024.1.02", "version 2024.1.2"),
    ("1969.12.31", "version 1969.12.31"),
    ("2024.13.01", "version 2024.13.1"),
    ("202401021599", "version 202401021599"),
    ("2024-13-02", "version 2024 rev=13/dash variant=02"),
    ("2024-01-023", "version 2024 rev=1/dash variant=023"),
    ("2024-1", "version 2024 rev=1/dash"),
    ("2024-01", "version 2024 rev=1/dash"),
    ("2024_ab", "version 2024 variant=ab"),
    ("2024-01-0x", "version 2024 rev=1/dash variant=0x"),
    ("20240102T2599", "date compact 2024.1.2 variant=T2599"),
    // Names: floating tags.
    ("latest", "name"),
    ("Latest", "name"),
    ("stable", "name"),
    ("lts", "name"),
    ("mainline", "name"),
    ("edge", "name"),
    ("nightly", "name"),
    ("main", "name"),
    ("master", "name"),
    ("develop", "name"),
    ("current", "name"),
    ("beta", "name"),
    ("rc", "name"),
    ("canary", "name"),
    ("alpine", "name"),
    ("bookworm", "name"),
    ("slim", "name"),
    ("stable-alpine", "name"),
    ("latest-slim", "name"),
    ("mainline-alpine-perl", "name"),
    ("deadbeef", "name"),
    ("alpine3.19", "name"),
    ("jdk17", "name"),
    ("python3", "name"),
    ("lts-alpine3.19", "name"),
    ("ltsc2022", "name"),
    ("stable-alpine3.19-slim", "name"),
    ("abc123", "name"),
    ("x.1", "name"),
    // Commit-hash tags.
    ("3f2a9c1", "hash"),
    ("abcdef1", "hash"),
    ("1234abc", "hash"),
    ("3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39", "hash"),
    ("sha-3f2a9c1", "hash"),
    ("git-3f2a9c1", "hash"),
    ("main-3f2a9c1", "hash"),
    ("feature-login-3f2a9c1", "hash"),
    // Unreadable.
    ("", "unknown"),
    ("-1.2", "unknown"),
    (".1", "unknown"),
    ("+1", "unknown"),
    ("1.2.3.4.5", "unknown"),
    ("v1.2.3.4.5", "unknown"),
    ("1.2.3--alpine", "unknown"),
    ("1.2.3-", "unknown"),
    ("1.2.3-alpine-", "unknown"),
    ("1.2.3 ", "unknown"),
    ("1.2 3", "unknown"),
    ("1.2.3@sha256", "unknown"),
    ("1.2.3/x", "unknown"),
    ("ñ", "unknown"),
    ("1.2.3+", "unknown"),
    ("1.2.3+a+b", "unknown"),
    ("18446744073709551616", "unknown"),
    ("1.99999999999999999999", "unknown"),
    ("1.2.3-99999999999999999999", "unknown"),
];

#[test]
fn tags_parse_as_people_write_them() {
    let mut failures = Vec::new();
    for (raw, want) in PARSE_CASES {
        let got = describe(raw);
        if got != *want {
            failures.push(format!("{raw:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} parse cases failed:\n{}",
        failures.len(),
        PARSE_CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn overlong_tags_are_unknown() {
    let long = "1".repeat(129);
    assert_eq!(describe(&long), "unknown");
    let just_fits = format!("1.2.3-{}", "a".repeat(122));
    assert_eq!(just_fits.len(), 128);
    assert_eq!(
        describe(&just_fits),
        format!("version 1.2.3 variant={}", "a".repeat(122))
    );
}

// ---------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------

/// Chains of same-shaped tags, each strictly older than the next.
const ORDER_CHAINS: &[&[&str]] = &[
    &[
        "1.0.0-dev",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.2",
        "1.0.0-alpha.10",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-pre",
        "1.0.0-preview.2",
        "1.0.0-rc.1",
        "1.0.0-rc.2",
        "1.0.0",
        "1.0.1-rc1",
        "1.0.1",
        "1.0.2",
        "1.0.10",
        "1.1.0",
        "1.2.0",
        "1.10.0",
        "2.0.0",
        "10.0.0",
    ],
    &[
        "1.2.3-1", "1.2.3-2", "1.2.3-10", "1.2.4-1", "1.3.0-0", "2.0.0-1",
    ],
    &["9", "10", "11", "100", "2024"],
    &[
        "3.9-slim",
        "3.10-slim",
        "3.11-slim",
        "3.12-slim",
        "4.0-slim",
    ],
    &["3.9", "3.10", "3.11", "3.12"],
    &["20231231", "20240101", "20240102", "20240201", "20250101"],
    &["2023.12.31", "2024.01.01", "2024.01.02"],
    &["2024-01-02", "2024-01-03", "2024-02-01"],
    &["202401021200", "202401021530", "202401030000"],
    &["jammy-20231201", "jammy-20240102", "jammy-20240211"],
    &[
        "2.4.58-debian-12-r0",
        "2.4.58-debian-12-r3",
        "2.4.58-debian-12-r10",
        "2.4.59-debian-12-r0",
        "2.5.0-debian-12-r0",
    ],
    &[
        "3.12.0a1",
        "3.12.0a2",
        "3.12.0b1",
        "3.12.0rc1",
        "3.12.0rc2",
        "3.12.0",
        "3.12.1",
    ],
    &["v0.9.9", "v0.10.0", "v0.10.1", "v1.0.0"],
    &["1.2.3.4", "1.2.3.5", "1.2.4.0", "1.3.0.0", "2.0.0.0"],
    &[
        "1.25.3-alpine3.19",
        "1.25.4-alpine3.19",
        "1.26.0-alpine3.19",
        "2.0.0-alpine3.19",
    ],
    &[
        "8.0.1-rc1-alpine",
        "8.0.1-rc2-alpine",
        "8.0.1-alpine",
        "8.0.2-alpine",
    ],
    &["2.3.4+build5", "2.3.4+build6", "2.3.5+build1"],
    &["1.2.3_1", "1.2.3_2", "1.2.4_1"],
    &["release-1.2", "release-1.3", "release-2.0"],
    &["17-jdk", "18-jdk", "21-jdk"],
    &["21-ea", "21"],
    &["1.0.0-beta", "1.0.0-beta-2", "1.0.0-beta-3"],
];

#[test]
fn chains_order_strictly_and_classify_both_ways() {
    let mut checked = 0;
    for chain in ORDER_CHAINS {
        for (i, older) in chain.iter().enumerate() {
            for newer in &chain[i + 1..] {
                let (a, b) = (Tag::parse(older), Tag::parse(newer));
                assert_eq!(a.mismatch(&b), None, "{older} and {newer}: same shape");
                assert!(a.cmp_version(&b).is_lt(), "{older} < {newer}");
                assert!(b.cmp_version(&a).is_gt(), "{newer} > {older}");
                let up = classify(&a, &b);
                assert!(up.change.is_update(), "{older} → {newer}: {up:?}");
                let down = classify(&b, &a);
                assert_eq!(down.change, Change::Downgrade, "{newer} → {older}");
                checked += 1;
            }
            assert_eq!(
                classify_tags(older, older).change,
                Change::Same,
                "{older} against itself"
            );
        }
    }
    assert!(checked > 350, "{checked} ordered pairs");
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

const CLASSIFY_CASES: &[(&str, &str, Change)] = &[
    // Patch.
    ("1.25.3", "1.25.4", Change::Patch),
    ("1.25.3", "1.25.10", Change::Patch),
    ("v1.2.3", "v1.2.4", Change::Patch),
    ("0.0.1", "0.0.2", Change::Patch),
    ("1.25.3-alpine3.19", "1.25.4-alpine3.19", Change::Patch),
    ("1.2.3.4", "1.2.3.5", Change::Patch),
    ("1.2.3.4", "1.2.4.0", Change::Patch),
    (
        "3.12.1-slim-bookworm",
        "3.12.2-slim-bookworm",
        Change::Patch,
    ),
    ("2.4.58-debian-12-r3", "2.4.59-debian-12-r0", Change::Patch),
    ("1.2.3-1", "1.2.4-1", Change::Patch),
    ("1.2.3-abc1234", "1.2.4-def5678", Change::Patch),
    ("release-1.2.3", "release-1.2.4", Change::Patch),
    ("2.0.0-rc2", "2.0.0", Change::Patch),
    ("8.0.1-rc1-alpine", "8.0.1-alpine", Change::Patch),
    ("3.12.0rc1", "3.12.0", Change::Patch),
    ("21-ea", "21", Change::Patch),
    // Minor.
    ("1.25.3", "1.26.0", Change::Minor),
    ("1.25.3", "1.26.5", Change::Minor),
    ("3.12", "3.13", Change::Minor),
    ("3.12-slim-bookworm", "3.13-slim-bookworm", Change::Minor),
    ("1.2.3.4", "1.3.0.0", Change::Minor),
    ("v0.9.9", "v0.10.0", Change::Minor),
    ("1.25-alpine", "1.26-alpine", Change::Minor),
    ("2.4.58-debian-12-r3", "2.5.0-debian-12-r0", Change::Minor),
    // Major.
    ("1.25.3", "2.0.0", Change::Major),
    ("17", "21", Change::Major),
    ("17-jdk", "21-jdk", Change::Major),
    ("v1.9.9", "v2.0.0", Change::Major),
    ("3.12", "4.0", Change::Major),
    ("1.2.3.4", "2.0.0.0", Change::Major),
    ("0.9.0", "1.0.0", Change::Major),
    ("1-alpine", "2-alpine", Change::Major),
    // Build (revision only).
    ("1.2.3-1", "1.2.3-2", Change::Build),
    ("1.2.3-1", "1.2.3-10", Change::Build),
    ("2.4.58-debian-12-r3", "2.4.58-debian-12-r4", Change::Build),
    ("2.3.4+build5", "2.3.4+build6", Change::Build),
    ("1.2.3_1", "1.2.3_2", Change::Build),
    ("1.2.3-r0", "1.2.3-r1", Change::Build),
    ("20240102-1", "20240102-2", Change::Build),
    // Date.
    ("20240102", "20240301", Change::Date),
    ("20240102", "20250101", Change::Date),
    ("2024.01.02", "2024.02.01", Change::Date),
    ("2024-01-02", "2024-01-03", Change::Date),
    ("jammy-20240102", "jammy-20240211", Change::Date),
    ("202401021200", "202401021530", Change::Date),
    ("20240102-alpine", "20240103-alpine", Change::Date),
    // Prerelease candidates.
    ("1.25.3", "1.26.0-rc.1", Change::Prerelease),
    ("1.2.3", "1.2.4-beta2", Change::Prerelease),
    ("1.2.3", "2.0.0-alpha", Change::Prerelease),
    ("1.2.4-rc1", "1.2.4-rc2", Change::Prerelease),
    ("1.2.4-beta1", "1.2.4-rc1", Change::Prerelease),
    ("1.2.4-rc1", "1.2.5-rc1", Change::Prerelease),
    ("8.0.1-rc1-alpine", "8.0.1-rc2-alpine", Change::Prerelease),
    ("3.12.0", "3.13.0b1", Change::Prerelease),
    ("1.2.3", "1.2.4-SNAPSHOT", Change::Prerelease),
    ("20", "21-ea", Change::Prerelease),
    // Same.
    ("1.2.3", "1.2.3", Change::Same),
    ("latest", "latest", Change::Same),
    ("1.2.3-rc1", "1.2.3-rc.1", Change::Same),
    ("1.2.3-rc1", "1.2.3-RC1", Change::Same),
    ("1.2.3-abc1234", "1.2.3-def5678", Change::Same),
    ("2.3.4+build", "2.3.4+other", Change::Same),
    ("01.2.3", "1.2.3", Change::Same),
    // Downgrade.
    ("1.25.3", "1.25.2", Change::Downgrade),
    ("1.25.3", "1.24.9", Change::Downgrade),
    ("1.25.3", "0.99.99", Change::Downgrade),
    ("1.2.3", "1.2.3-rc1", Change::Downgrade),
    ("1.2.4-rc2", "1.2.4-rc1", Change::Downgrade),
    ("1.2.4-rc1", "1.2.4-beta9", Change::Downgrade),
    ("1.2.3-2", "1.2.3-1", Change::Downgrade),
    ("20240102", "20231231", Change::Downgrade),
    ("3.12-slim", "3.9-slim", Change::Downgrade),
    ("v1.0.0", "v0.10.0", Change::Downgrade),
    // Incompatible: another variant.
    (
        "1.25.3-alpine3.19",
        "1.25.4-alpine3.20",
        Change::Incompatible,
    ),
    ("1.25.3-alpine3.19", "1.25.4", Change::Incompatible),
    ("1.25.3-alpine3.19", "1.25.4-alpine", Change::Incompatible),
    ("1.25.3", "1.25.4-alpine", Change::Incompatible),
    (
        "3.12-slim-bookworm",
        "3.13-slim-bullseye",
        Change::Incompatible,
    ),
    ("3.12-slim-bookworm", "3.13-bookworm", Change::Incompatible),
    ("17-jdk", "21-jre", Change::Incompatible),
    ("1.2.3alpine", "1.2.4-alpine", Change::Incompatible),
    ("1.2.3_alpine", "1.2.4-alpine", Change::Incompatible),
    ("8.0.1-rc1-alpine", "8.0.2-slim", Change::Incompatible),
    (
        "2.4.58-debian-12-r3",
        "2.4.59-debian-11-r0",
        Change::Incompatible,
    ),
    // Incompatible: another number of parts.
    ("1.25", "1.25.4", Change::Incompatible),
    ("1.25.3", "1.26", Change::Incompatible),
    ("17", "17.0.1", Change::Incompatible),
    ("1.2.3", "1.2.3.1", Change::Incompatible),
    ("1.2.3.4", "1.2.4", Change::Incompatible),
    ("3.12-slim", "3.13.1-slim", Change::Incompatible),
    // Incompatible: another prefix.
    ("v1.2.3", "1.2.4", Change::Incompatible),
    ("1.2.3", "v1.2.4", Change::Incompatible),
    ("v1.2.3", "V1.2.4", Change::Incompatible),
    ("release-1.2", "v1.3", Change::Incompatible),
    ("jammy-20240102", "noble-20240301", Change::Incompatible),
    // Incompatible: another kind of tag.
    ("1.2.3", "20240102", Change::Incompatible),
    ("20240102", "1.2.3", Change::Incompatible),
    ("1", "20240102", Change::Incompatible),
    ("1.2.3", "latest", Change::Incompatible),
    ("latest", "1.2.3", Change::Incompatible),
    ("latest", "stable", Change::Incompatible),
    ("stable-alpine", "1.25-alpine", Change::Incompatible),
    ("3f2a9c1", "4e5d6c7", Change::Incompatible),
    ("1.2.3", "3f2a9c1", Change::Incompatible),
    ("3f2a9c1", "1.2.3", Change::Incompatible),
    // Incompatible: revision, date form, commit style.
    ("1.2.3", "1.2.3-1", Change::Incompatible),
    ("1.2.3-1", "1.2.4", Change::Incompatible),
    ("1.2.3-1", "1.2.4-r1", Change::Incompatible),
    ("1.2.3-1", "1.2.4_1", Change::Incompatible),
    ("20240102", "2024.01.03", Change::Incompatible),
    ("20240102", "2024-01-03", Change::Incompatible),
    ("20240102", "20240103T1200", Change::Incompatible),
    ("1.2.3", "1.2.4-abc1234", Change::Incompatible),
    // Unknown.
    ("1.2.3", "1.2.3.4.5", Change::Unknown),
    ("1.2.3.4.5", "1.2.3", Change::Unknown),
    ("1.2.3", "1.2.3-", Change::Unknown),
    ("1.2.3", "", Change::Unknown),
    ("1.2.3--x", "1.2.4--x", Change::Unknown),
];

#[test]
fn candidates_classify_against_the_running_tag() {
    let mut failures = Vec::new();
    for (current, candidate, want) in CLASSIFY_CASES {
        let got = classify_tags(current, candidate).change;
        if got != *want {
            failures.push(format!(
                "{current} → {candidate}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} classification cases failed:\n{}",
        failures.len(),
        CLASSIFY_CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn incompatibilities_say_why() {
    for (current, candidate, want) in [
        ("1.25.3-alpine3.19", "1.25.4-alpine3.20", Mismatch::Variant),
        ("1.25", "1.25.4", Mismatch::Parts),
        ("v1.2.3", "1.2.4", Mismatch::Prefix),
        ("1.2.3", "20240102", Mismatch::Kind),
        ("latest", "1.2.3", Mismatch::Kind),
        ("20240102", "2024.01.03", Mismatch::DateStyle),
        ("1.2.3", "1.2.3-1", Mismatch::Revision),
        ("1.2.3", "1.2.4-abc1234", Mismatch::Commit),
    ] {
        let c = classify_tags(current, candidate);
        assert_eq!(c.change, Change::Incompatible, "{current} → {candidate}");
        assert_eq!(c.mismatch, Some(want), "{current} → {candidate}");
    }
}

#[test]
fn prerelease_steps_are_weighed_by_their_numbers() {
    for (current, candidate, step) in [
        ("1.25.3", "1.25.4-rc.1", Step::Patch),
        ("1.25.3", "1.26.0-rc.1", Step::Minor),
        ("1.25.3", "2.0.0-rc.1", Step::Major),
        ("1.2.4-rc1", "1.2.4-rc2", Step::Patch),
        ("1.2.3-1", "1.2.3-2", Step::Build),
        ("20240102", "20240103", Step::Minor),
    ] {
        assert_eq!(
            classify_tags(current, candidate).step,
            Some(step),
            "{current} → {candidate}"
        );
    }
}

// ---------------------------------------------------------------------------
// Policy from labels
// ---------------------------------------------------------------------------

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn policy_from(pairs: &[(&str, &str)]) -> Policy {
    match Policy::from_labels(&labels(pairs), &Policy::default()) {
        Ok(p) => p,
        Err(e) => panic!("{pairs:?}: {e}"),
    }
}

#[test]
fn policy_levels_from_labels() {
    for (value, level) in [
        ("none", PolicyLevel::None),
        ("digest", PolicyLevel::Digest),
        ("patch", PolicyLevel::Patch),
        ("minor", PolicyLevel::Minor),
        ("major", PolicyLevel::Major),
        ("all", PolicyLevel::All),
        ("Patch", PolicyLevel::Patch),
        (" minor ", PolicyLevel::Minor),
        ("ALL", PolicyLevel::All),
    ] {
        let p = policy_from(&[(LABEL_UPDATE_POLICY, value)]);
        assert_eq!(p.level, level, "{value:?}");
        assert_eq!(p.source, PolicySource::Labels);
    }
    let p = policy_from(&[("app", "web"), ("upid.io/other", "x")]);
    assert_eq!(p, Policy::default(), "unrelated labels change nothing");
    assert_eq!(p.source, PolicySource::Default);
}

#[test]
fn min_age_and_allow_tags_from_labels() {
    for (value, seconds) in [
        ("7d", Some(604_800)),
        ("48h", Some(172_800)),
        ("1w", Some(604_800)),
        ("90m", Some(5_400)),
        ("1d 12h", Some(129_600)),
        ("0", None),
        ("0s", None),
    ] {
        let p = policy_from(&[(LABEL_MIN_AGE, value)]);
        assert_eq!(p.min_age_s, seconds, "{value:?}");
        assert_eq!(p.level, PolicyLevel::Default);
    }
    let p = policy_from(&[(LABEL_ALLOW_TAGS, r"1\.25\.\d+")]);
    let allow = p.allow_tags.unwrap_or_else(|| panic!("allow-tags set"));
    assert!(allow.matches("1.25.4"));
    assert!(!allow.matches("1.25.4-rc1"), "whole-tag match");
    assert!(!allow.matches("x1.25.4"), "whole-tag match");
    assert!(!allow.matches("1.26.0"));
}

#[test]
fn labels_override_a_configured_default_one_by_one() {
    let default = Policy {
        level: PolicyLevel::Patch,
        min_age_s: Some(86_400),
        allow_tags: None,
        source: PolicySource::Default,
    };
    let p = Policy::from_labels(&labels(&[(LABEL_MIN_AGE, "3d")]), &default)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.level, PolicyLevel::Patch, "level kept from the default");
    assert_eq!(p.min_age_s, Some(259_200));
    assert_eq!(p.source, PolicySource::Labels);
    let p = Policy::from_labels(&labels(&[]), &default).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p, default);
}

#[test]
fn invalid_label_values_name_the_label_and_what_is_accepted() {
    let cases: &[(&str, &str, &str)] = &[
        (
            LABEL_UPDATE_POLICY,
            "fast",
            "none, digest, patch, minor, major, all",
        ),
        (
            LABEL_UPDATE_POLICY,
            "",
            "none, digest, patch, minor, major, all",
        ),
        (
            LABEL_UPDATE_POLICY,
            "default",
            "none, digest, patch, minor, major, all",
        ),
        (
            LABEL_UPDATE_POLICY,
            "patch,minor",
            "none, digest, patch, minor, major, all",
        ),
        (LABEL_MIN_AGE, "seven days", "7d, 48h"),
        (LABEL_MIN_AGE, "-1d", "7d, 48h"),
        (LABEL_MIN_AGE, "7", "7d, 48h"),
        (LABEL_MIN_AGE, "", "7d, 48h"),
        (LABEL_ALLOW_TAGS, "(", "regular expressions"),
        (LABEL_ALLOW_TAGS, "[a-", "regular expressions"),
        (LABEL_ALLOW_TAGS, "a{1000}{1000}{1000}", "too large"),
    ];
    for (label, value, accepted) in cases {
        let err = match Policy::from_labels(&labels(&[(label, value)]), &Policy::default()) {
            Ok(p) => panic!("{label}={value:?} accepted as {p:?}"),
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(text.contains(label), "{text}");
        assert!(text.contains(&format!("{value:?}")), "{text}");
        assert!(text.contains(accepted), "{text}");
        match (&err, *label) {
            (PolicyError::Level { .. }, LABEL_UPDATE_POLICY)
            | (PolicyError::MinAge { .. }, LABEL_MIN_AGE)
            | (PolicyError::AllowTags { .. }, LABEL_ALLOW_TAGS) => {}
            _ => panic!("{label}: wrong error {err:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------

/// 2026-11-10T00:00:00Z.
const NOW: i64 = 1_794_268_800;
const DAY: i64 = 86_400;

/// `sha256:` and 64 times `c`.
fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// Candidates from `TAG[@AGE][#D]`: AGE as humantime before [`NOW`], `#D`
/// the digest [`digest`]`(D)`.
fn candidates(spec: &str) -> Vec<Candidate> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (rest, digest_char) = match entry.split_once('#') {
                Some((rest, d)) => (rest, d.chars().next()),
                None => (entry, None),
            };
            let (tag, age) = match rest.split_once('@') {
                Some((tag, age)) => (tag, Some(age)),
                None => (rest, None),
            };
            let created_unix_s = age.map(|a| match humantime::parse_duration(a) {
                Ok(d) => NOW - i64::try_from(d.as_secs()).unwrap_or(0),
                Err(e) => panic!("{entry}: {e}"),
            });
            Candidate {
                tag: tag.to_string(),
                digest: digest_char.map(digest),
                created_unix_s,
            }
        })
        .collect()
}

/// The running image from `IMAGE:TAG[#D]`.
fn running(spec: &str) -> (ImageReference, Option<String>) {
    let (image, digest_char) = match spec.split_once('#') {
        Some((image, d)) => (image, d.chars().next()),
        None => (spec, None),
    };
    match ImageReference::parse(image) {
        Ok(r) => (r, digest_char.map(digest)),
        Err(e) => panic!("{spec}: {e}"),
    }
}

fn run(current: &str, available: &str, policy: &[(&str, &str)]) -> Decision {
    let (reference, running_digest) = running(current);
    decide(
        &reference,
        running_digest.as_deref(),
        &candidates(available),
        &policy_from(policy),
        NOW,
    )
}

struct Case {
    current: &'static str,
    available: &'static str,
    policy: &'static [(&'static str, &'static str)],
    candidate: Option<&'static str>,
    change: Option<Change>,
    decision: Verdict,
    /// Words the reason must contain.
    reason: &'static [&'static str],
}

const DEFAULT: &[(&str, &str)] = &[];
const NONE: &[(&str, &str)] = &[(LABEL_UPDATE_POLICY, "none")];
const DIGEST: &[(&str, &str)] = &[(LABEL_UPDATE_POLICY, "digest")];
const PATCH: &[(&str, &str)] = &[(LABEL_UPDATE_POLICY, "patch")];
const MINOR: &[(&str, &str)] = &[(LABEL_UPDATE_POLICY, "minor")];
const MAJOR: &[(&str, &str)] = &[(LABEL_UPDATE_POLICY, "major")];
const ALL: &[(&str, &str)] = &[(LABEL_UPDATE_POLICY, "all")];
const WEEK: &[(&str, &str)] = &[(LABEL_MIN_AGE, "7d")];
const PATCH_WEEK: &[(&str, &str)] = &[(LABEL_UPDATE_POLICY, "patch"), (LABEL_MIN_AGE, "7d")];
const ANY_TAG: &[(&str, &str)] = &[(LABEL_ALLOW_TAGS, ".*")];
const ONLY_125: &[(&str, &str)] = &[(LABEL_ALLOW_TAGS, r"1\.25\.\d+")];

const DECISION_CASES: &[Case] = &[
    // The default rules.
    Case {
        current: "nginx:1.25.3",
        available: "1.25.2,1.25.3,1.25.4,1.25.5",
        policy: DEFAULT,
        candidate: Some("1.25.5"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &[
            "1.25.5 is a patch update from 1.25.3",
            "the default policy approves patch updates",
        ],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0,1.26.1,1.27.0",
        policy: DEFAULT,
        candidate: Some("1.26.0"),
        change: Some(Change::Minor),
        decision: Verdict::Review,
        reason: &[
            "sends minor updates to review",
            "the newest is 1.27.0 (minor, review)",
        ],
    },
    Case {
        current: "nginx:1.25.3",
        available: "2.0.0,3.0.0",
        policy: DEFAULT,
        candidate: Some("3.0.0"),
        change: Some(Change::Major),
        decision: Verdict::Block,
        reason: &["blocks major updates"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4,1.26.0,2.0.0",
        policy: DEFAULT,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &["the newest is 2.0.0 (major, block)"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0-rc.1,1.25.4-rc.1",
        policy: DEFAULT,
        candidate: Some("1.26.0-rc.1"),
        change: Some(Change::Prerelease),
        decision: Verdict::Block,
        reason: &[
            "is a prerelease (a minor step",
            "prereleases are blocked unless",
        ],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4-alpine,1.26,v1.25.4,latest,20240102",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["up to date", "5 of another variant or form"],
    },
    Case {
        current: "nginx:1.25.3-alpine3.19",
        available: "1.25.4-alpine3.19,1.25.5-alpine3.20,1.25.5,1.25.5-alpine",
        policy: DEFAULT,
        candidate: Some("1.25.4-alpine3.19"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &["1.25.4-alpine3.19 is a patch update from 1.25.3-alpine3.19"],
    },
    Case {
        current: "nginx:1.25",
        available: "1.25.4,1.26,1.26.1,1.27",
        policy: DEFAULT,
        candidate: Some("1.26"),
        change: Some(Change::Minor),
        decision: Verdict::Review,
        reason: &["1.26 is a minor update from 1.25", "the newest is 1.27"],
    },
    Case {
        current: "python:3.12-slim-bookworm",
        available: "3.12-slim-bullseye,3.13-slim-bookworm,3.13-bookworm,3.13",
        policy: DEFAULT,
        candidate: Some("3.13-slim-bookworm"),
        change: Some(Change::Minor),
        decision: Verdict::Review,
        reason: &[],
    },
    Case {
        current: "eclipse-temurin:17-jdk",
        available: "17-jre,21-jdk,21-jre,21",
        policy: DEFAULT,
        candidate: Some("21-jdk"),
        change: Some(Change::Major),
        decision: Verdict::Block,
        reason: &[],
    },
    Case {
        current: "redis:8.0.1-rc1-alpine",
        available: "8.0.1-rc2-alpine,8.0.1-alpine,8.0.2-rc1-alpine,8.0.1",
        policy: DEFAULT,
        candidate: Some("8.0.1-alpine"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &[
            "8.0.1-alpine is the release of the prerelease 8.0.1-rc1-alpine",
            "the newest is 8.0.2-rc1-alpine (prerelease, block)",
        ],
    },
    Case {
        current: "app:2.0.0-rc1",
        available: "2.0.0-rc2",
        policy: DEFAULT,
        candidate: Some("2.0.0-rc2"),
        change: Some(Change::Prerelease),
        decision: Verdict::Block,
        reason: &["prereleases are blocked"],
    },
    Case {
        current: "app:1.2.3-1",
        available: "1.2.3-2,1.2.3-3,1.2.3",
        policy: DEFAULT,
        candidate: Some("1.2.3-3"),
        change: Some(Change::Build),
        decision: Verdict::Approve,
        reason: &["is a rebuild of 1.2.3-1", "approves build updates"],
    },
    Case {
        current: "bitnami/apache:2.4.58-debian-12-r3",
        available: "2.4.58-debian-12-r4,2.4.59-debian-12-r0,2.4.59-debian-11-r9,2.5.0-debian-12-r1",
        policy: DEFAULT,
        candidate: Some("2.4.59-debian-12-r0"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &["the newest is 2.5.0-debian-12-r1 (minor, review)"],
    },
    Case {
        current: "ubuntu:jammy-20240102",
        available: "jammy-20240211,noble-20240301,jammy-20231201,jammy",
        policy: DEFAULT,
        candidate: Some("jammy-20240211"),
        change: Some(Change::Date),
        decision: Verdict::Review,
        reason: &[
            "is a later date tag than jammy-20240102",
            "sends date updates to review",
        ],
    },
    Case {
        current: "app:20240102",
        available: "20240301,2024.03.02,1.0.0",
        policy: DEFAULT,
        candidate: Some("20240301"),
        change: Some(Change::Date),
        decision: Verdict::Review,
        reason: &[],
    },
    Case {
        current: "app:v1.2.3",
        available: "1.2.4,v1.2.4,v1.3.0",
        policy: DEFAULT,
        candidate: Some("v1.2.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &[],
    },
    // Digests.
    Case {
        current: "nginx:latest#a",
        available: "latest#b,1.25.4,stable#c",
        policy: DEFAULT,
        candidate: Some("latest"),
        change: Some(Change::Digest),
        decision: Verdict::Approve,
        reason: &[
            "latest has a new digest (sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb)",
            "approves digest updates",
        ],
    },
    Case {
        current: "nginx:latest",
        available: "latest,1.2.3",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["latest is a floating tag", "no digest of latest was given"],
    },
    Case {
        current: "nginx:latest#a",
        available: "latest#a",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["the digest of latest is unchanged"],
    },
    Case {
        current: "nginx:latest",
        available: "latest#b",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["the running digest is unknown"],
    },
    Case {
        current: "nginx:stable-alpine#a",
        available: "1.25.4",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["stable-alpine is not among the available tags"],
    },
    Case {
        current: "nginx:1.25.3#a",
        available: "1.25.3#b",
        policy: DEFAULT,
        candidate: Some("1.25.3"),
        change: Some(Change::Digest),
        decision: Verdict::Approve,
        reason: &["the same tag, rebuilt"],
    },
    Case {
        current: "nginx:1.25.3#a",
        available: "1.25.3#a,1.25.2",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["up to date", "2 older or the same"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.3#b",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["running digest unknown"],
    },
    Case {
        current: "nginx:1.25.3#a",
        available: "1.25.3#b,1.25.4",
        policy: DEFAULT,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &[],
    },
    Case {
        current: "nginx:1.25.3#a",
        available: "1.25.3#b,1.26.0",
        policy: DEFAULT,
        candidate: Some("1.25.3"),
        change: Some(Change::Digest),
        decision: Verdict::Approve,
        reason: &["the newest is 1.26.0 (minor, review)"],
    },
    Case {
        current: "app:3f2a9c1#a",
        available: "4e5d6c7,5f6e7d8",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["commit-hash tag, which has no order"],
    },
    Case {
        current: "app:3f2a9c1#a",
        available: "3f2a9c1#b",
        policy: DEFAULT,
        candidate: Some("3f2a9c1"),
        change: Some(Change::Digest),
        decision: Verdict::Approve,
        reason: &[],
    },
    Case {
        current: "app:1.2.3.4.5",
        available: "1.2.3.4.6",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["cannot read the running tag 1.2.3.4.5"],
    },
    Case {
        current: "app:1.2.3",
        available: "",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["among 0 available"],
    },
    Case {
        current: "app:1.2.3",
        available: "1.2.3.4.5,1.2.3--x,1.2.2",
        policy: DEFAULT,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["2 unreadable", "1 older or the same"],
    },
    // Explicit levels: within approved, beyond blocked.
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4,1.26.0",
        policy: NONE,
        candidate: Some("1.26.0"),
        change: Some(Change::Minor),
        decision: Verdict::Block,
        reason: &["policy \"none\" blocks every update"],
    },
    Case {
        current: "nginx:1.25.3#a",
        available: "1.25.3#b",
        policy: NONE,
        candidate: Some("1.25.3"),
        change: Some(Change::Digest),
        decision: Verdict::Block,
        reason: &[],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4",
        policy: DIGEST,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Block,
        reason: &["approves only digest updates and blocks patch ones"],
    },
    Case {
        current: "nginx:1.25.3#a",
        available: "1.25.3#b,1.25.4",
        policy: DIGEST,
        candidate: Some("1.25.3"),
        change: Some(Change::Digest),
        decision: Verdict::Approve,
        reason: &[
            "policy \"digest\" approves digest updates",
            "the newest is 1.25.4 (patch, block)",
        ],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4,1.26.0",
        policy: PATCH,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &["policy \"patch\" approves updates up to patch"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0",
        policy: PATCH,
        candidate: Some("1.26.0"),
        change: Some(Change::Minor),
        decision: Verdict::Block,
        reason: &["approves updates up to patch and blocks minor ones"],
    },
    Case {
        current: "app:1.2.3-1",
        available: "1.2.3-2",
        policy: PATCH,
        candidate: Some("1.2.3-2"),
        change: Some(Change::Build),
        decision: Verdict::Approve,
        reason: &[],
    },
    Case {
        current: "app:20240102",
        available: "20240103",
        policy: PATCH,
        candidate: Some("20240103"),
        change: Some(Change::Date),
        decision: Verdict::Block,
        reason: &["blocks date ones"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4,1.26.0,1.27.2,2.0.0",
        policy: MINOR,
        candidate: Some("1.27.2"),
        change: Some(Change::Minor),
        decision: Verdict::Approve,
        reason: &["the newest is 2.0.0 (major, block)"],
    },
    Case {
        current: "app:20240102",
        available: "20240103",
        policy: MINOR,
        candidate: Some("20240103"),
        change: Some(Change::Date),
        decision: Verdict::Approve,
        reason: &[],
    },
    Case {
        current: "nginx:1.25.3",
        available: "2.0.0,2.1.0-rc1",
        policy: MAJOR,
        candidate: Some("2.0.0"),
        change: Some(Change::Major),
        decision: Verdict::Approve,
        reason: &["the newest is 2.1.0-rc1 (prerelease, block)"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "2.0.0,2.1.0-rc1",
        policy: ALL,
        candidate: Some("2.1.0-rc1"),
        change: Some(Change::Prerelease),
        decision: Verdict::Approve,
        reason: &["allowed by policy \"all\"", "approves every update"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4-alpine,v2.0.0",
        policy: ALL,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["up to date"],
    },
    // allow-tags.
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4,1.26.0",
        policy: ONLY_125,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &[],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0,1.25.5-rc1",
        policy: ONLY_125,
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["2 not matching upid.io/allow-tags"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0-rc.1",
        policy: ANY_TAG,
        candidate: Some("1.26.0-rc.1"),
        change: Some(Change::Prerelease),
        decision: Verdict::Review,
        reason: &[
            "allowed by upid.io/allow-tags",
            "sends minor updates to review",
        ],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4-rc.1",
        policy: ANY_TAG,
        candidate: Some("1.25.4-rc.1"),
        change: Some(Change::Prerelease),
        decision: Verdict::Approve,
        reason: &["approves patch updates"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4-rc1",
        policy: &[
            (LABEL_UPDATE_POLICY, "patch"),
            (LABEL_ALLOW_TAGS, r".*-rc\d+"),
        ],
        candidate: Some("1.25.4-rc1"),
        change: Some(Change::Prerelease),
        decision: Verdict::Approve,
        reason: &[],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0-rc1",
        policy: &[
            (LABEL_UPDATE_POLICY, "patch"),
            (LABEL_ALLOW_TAGS, r".*-rc\d+"),
        ],
        candidate: Some("1.26.0-rc1"),
        change: Some(Change::Prerelease),
        decision: Verdict::Block,
        reason: &["blocks minor ones"],
    },
    Case {
        current: "nginx:1.25.3#a",
        available: "1.25.3#b",
        policy: &[(LABEL_ALLOW_TAGS, r"2\..*")],
        candidate: Some("1.25.3"),
        change: Some(Change::Digest),
        decision: Verdict::Approve,
        reason: &[],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0-alpine",
        policy: &[(LABEL_ALLOW_TAGS, r"1\.26.*")],
        candidate: None,
        change: None,
        decision: Verdict::None,
        reason: &["1 of another variant or form"],
    },
    // min-age.
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4@10d",
        policy: WEEK,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &["released 10d ago (min-age 7d)"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4@2d",
        policy: WEEK,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Hold,
        reason: &["released 2d ago, under the min-age of 7d: eligible from 2026-11-15T00:00:00Z"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4",
        policy: WEEK,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Review,
        reason: &["release age is unknown, so the min-age of 7d cannot be checked"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4@10d,1.25.5@2d",
        policy: WEEK,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &["the newest is 1.25.5 (patch, hold)"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.5@1d,1.25.4@3d",
        policy: WEEK,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Hold,
        reason: &[
            "eligible from 2026-11-14T00:00:00Z",
            "the newest is 1.25.5 (patch, hold)",
        ],
    },
    Case {
        current: "nginx:1.25.3",
        available: "2.0.0@1d",
        policy: WEEK,
        candidate: Some("2.0.0"),
        change: Some(Change::Major),
        decision: Verdict::Block,
        reason: &["blocks major updates", "released 1d ago"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0@1d",
        policy: WEEK,
        candidate: Some("1.26.0"),
        change: Some(Change::Minor),
        decision: Verdict::Hold,
        reason: &["sends minor updates to review, but it was released 1d ago"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.26.0@30d,1.25.4@1d",
        policy: WEEK,
        candidate: Some("1.26.0"),
        change: Some(Change::Minor),
        decision: Verdict::Review,
        reason: &["1.25.4 (patch) is held until 2026-11-16T00:00:00Z"],
    },
    Case {
        current: "nginx:1.25.3#a",
        available: "1.25.3@1d#b",
        policy: WEEK,
        candidate: Some("1.25.3"),
        change: Some(Change::Digest),
        decision: Verdict::Hold,
        reason: &["new digest", "eligible from"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4@1h",
        policy: &[(LABEL_MIN_AGE, "0")],
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &["released 1h ago"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4@7d",
        policy: PATCH_WEEK,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Approve,
        reason: &["min-age 7d"],
    },
    Case {
        current: "nginx:1.25.3",
        available: "1.25.4@6d 23h",
        policy: PATCH_WEEK,
        candidate: Some("1.25.4"),
        change: Some(Change::Patch),
        decision: Verdict::Hold,
        reason: &["eligible from 2026-11-10T01:00:00Z"],
    },
];

#[test]
fn decisions_under_each_policy() {
    let mut failures = Vec::new();
    for case in DECISION_CASES {
        let d = run(case.current, case.available, case.policy);
        let what = format!("{} ← [{}] {:?}", case.current, case.available, case.policy);
        if d.candidate_tag.as_deref() != case.candidate
            || d.change != case.change
            || d.decision != case.decision
        {
            failures.push(format!(
                "{what}: got {:?} {:?} {:?}, want {:?} {:?} {:?}: {}",
                d.candidate_tag,
                d.change,
                d.decision,
                case.candidate,
                case.change,
                case.decision,
                d.reason
            ));
            continue;
        }
        for words in case.reason {
            if !d.reason.contains(words) {
                failures.push(format!("{what}: reason lacks {words:?}: {}", d.reason));
            }
        }
        if !d.reason.ends_with('.') || d.reason.len() < 20 {
            failures.push(format!("{what}: reason is not a sentence: {}", d.reason));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} decision cases failed:\n{}",
        failures.len(),
        DECISION_CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn a_decision_names_the_image_policy_age_and_newest() {
    let d = run(
        "ghcr.io/org/app:1.25.3#a",
        "1.25.4@10d#d,1.26.0@20d",
        &[(LABEL_MIN_AGE, "7d"), (LABEL_ALLOW_TAGS, r"1\..*")],
    );
    assert_eq!(d.image, "ghcr.io/org/app");
    assert_eq!(d.current, format!("ghcr.io/org/app:1.25.3@{}", digest('a')));
    assert_eq!(d.current_tag.as_deref(), Some("1.25.3"));
    assert_eq!(d.current_digest, Some(digest('a')));
    assert_eq!(
        d.candidate,
        Some(format!("ghcr.io/org/app:1.25.4@{}", digest('d')))
    );
    assert_eq!(d.candidate_digest, Some(digest('d')));
    assert_eq!(d.age_s, Some(10 * DAY));
    assert_eq!(d.released_unix_s, Some(NOW - 10 * DAY));
    assert_eq!(d.eligible_unix_s, None);
    assert_eq!(d.newest_tag.as_deref(), Some("1.26.0"));
    assert_eq!(d.newest_change, Some(Change::Minor));
    assert_eq!(d.newest_decision, Some(Verdict::Review));
    assert_eq!(d.policy.update_policy, PolicyLevel::Default);
    assert_eq!(d.policy.source, PolicySource::Labels);
    assert_eq!(d.policy.min_age_s, Some(7 * DAY as u64));
    assert_eq!(d.policy.allow_tags.as_deref(), Some(r"1\..*"));
    assert_eq!((d.tags.available, d.tags.newer), (2, 2));

    let held = run("app:1.25.3", "1.25.4@2d", &[(LABEL_MIN_AGE, "7d")]);
    assert_eq!(held.eligible_unix_s, Some(NOW - 2 * DAY + 7 * DAY));
    assert_eq!(held.eligible.as_deref(), Some("2026-11-15T00:00:00Z"));
    assert_eq!(held.age_s, Some(2 * DAY));

    let pinned = match ImageReference::parse(&format!("nginx@{}", digest('a'))) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let d = decide(
        &pinned,
        None,
        &candidates("1.25.4"),
        &Policy::default(),
        NOW,
    );
    assert_eq!(d.decision, Verdict::None);
    assert_eq!(d.current_tag, None);
    assert!(d.reason.contains("pinned by digest"), "{}", d.reason);
}

#[test]
fn decision_json_has_the_documented_fields() {
    let d = run("nginx:1.25.3", "1.25.4,1.26.0", DEFAULT);
    let json = match serde_json::to_value(&d) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(json["current"], "docker.io/library/nginx:1.25.3");
    assert_eq!(json["candidate"], "docker.io/library/nginx:1.25.4");
    assert_eq!(json["candidate_tag"], "1.25.4");
    assert_eq!(json["change"], "patch");
    assert_eq!(json["decision"], "approve");
    assert_eq!(json["policy"]["update_policy"], "default");
    assert_eq!(json["policy"]["source"], "default");
    assert!(json["age_s"].is_null());
    assert_eq!(json["newest_tag"], "1.26.0");
    assert_eq!(json["tags"]["available"], 2);
    let none = match serde_json::to_value(run("nginx:1.25.3", "1.25.2", DEFAULT)) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    assert!(none["candidate"].is_null());
    assert!(none["change"].is_null());
    assert_eq!(none["decision"], "none");
}

// ---------------------------------------------------------------------------
// Pre-filtering tag lists
// ---------------------------------------------------------------------------

#[test]
fn relevant_tags_are_the_running_one_and_newer_same_shaped_ones() {
    let all = [
        "1.25.2",
        "1.25.3",
        "1.25.4",
        "1.26.0-alpine",
        "1.26.0",
        "latest",
        "v1.25.9",
        "1.25",
        "1.26.0-rc1",
        "2.0.0",
        "garbage--",
        "1.25.3-1",
    ];
    assert_eq!(
        relevant_tags("1.25.3", all.iter().copied()),
        ["1.25.3", "1.25.4", "1.26.0", "1.26.0-rc1", "2.0.0"]
    );
    assert_eq!(relevant_tags("latest", all.iter().copied()), ["latest"]);
    assert_eq!(
        relevant_tags("1.25", all.iter().copied()),
        ["1.25"],
        "no newer two-part tag"
    );
    assert_eq!(
        relevant_tags(
            "1.25.3-alpine3.19",
            ["1.25.4-alpine3.19", "1.25.4", "1.25.4-alpine3.20"]
        ),
        ["1.25.4-alpine3.19"]
    );
    assert!(relevant_tags("1.2.3", Vec::<&str>::new()).is_empty());
    let tags: Vec<String> = (0..300)
        .map(|i| format!("1.{}.{}", i / 10, i % 10))
        .collect();
    let relevant = relevant_tags("1.20.5", tags.iter().map(String::as_str));
    assert_eq!(relevant.len(), 300 - 205);
    assert_eq!(relevant.first(), Some(&"1.20.5"));
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// Runs `upid` with a collector address nothing listens on, so a command
/// that tried to connect would fail.
fn upid(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_upid"))
        .args(args)
        .env("UPID_SERVER", "http://127.0.0.1:9")
        .env("UPID_TIMEOUT", "1s")
        .output()
        .unwrap_or_else(|e| panic!("running upid {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn upid_updates_decide_prints_json_offline() {
    let (ok, out, err) = upid(&[
        "updates",
        "decide",
        "--current",
        "nginx:1.25.3-alpine3.19",
        "--available",
        "1.25.2-alpine3.19,1.25.4-alpine3.19,1.25.5-alpine3.20,1.26.0-alpine3.19",
        "--available",
        "1.26.1-rc.1-alpine3.19",
        "-o",
        "json",
    ]);
    assert!(ok, "upid failed: {err}");
    let v = json(&out);
    assert_eq!(v["current"], "docker.io/library/nginx:1.25.3-alpine3.19");
    assert_eq!(v["candidate"], "docker.io/library/nginx:1.25.4-alpine3.19");
    assert_eq!(v["change"], "patch");
    assert_eq!(v["decision"], "approve");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("1.25.4-alpine3.19 is a patch update"),
        "{reason}"
    );
    assert_eq!(v["policy"]["update_policy"], "default");
    assert_eq!(v["policy"]["source"], "default");
    assert!(v["age_s"].is_null());
    assert_eq!(v["newest_tag"], "1.26.1-rc.1-alpine3.19");
    assert_eq!(v["tags"]["available"], 5);
    assert_eq!(v["tags"]["incompatible"], 1);
}

#[test]
fn upid_updates_decide_with_policy_min_age_dates_and_digests() {
    let a = format!("sha256:{}", "a".repeat(64));
    let b = format!("sha256:{}", "b".repeat(64));
    let (ok, out, err) = upid(&[
        "updates",
        "decide",
        "--current",
        "registry.example.com:5000/team/app:2.1.0",
        "--available",
        "2.1.1@2026-11-08,2.2.0@2026-10-01,3.0.0@2026-01-01",
        "--policy",
        "minor",
        "--min-age",
        "7d",
        "--now",
        "2026-11-10",
        "-o",
        "json",
    ]);
    assert!(ok, "upid failed: {err}");
    let v = json(&out);
    assert_eq!(v["candidate_tag"], "2.2.0");
    assert_eq!(v["change"], "minor");
    assert_eq!(v["decision"], "approve");
    assert_eq!(v["age_s"], 40 * DAY);
    assert_eq!(v["policy"]["update_policy"], "minor");
    assert_eq!(v["policy"]["source"], "flags");
    assert_eq!(v["policy"]["min_age_s"], 7 * DAY);
    assert_eq!(v["newest_tag"], "3.0.0");
    assert_eq!(v["newest_decision"], "block");

    let (ok, out, err) = upid(&[
        "updates",
        "decide",
        "--current",
        "app:2.1.0",
        "--available",
        "2.1.1@2026-11-08",
        "--min-age",
        "7d",
        "--now",
        "2026-11-10T00:00:00Z",
        "-o",
        "json",
    ]);
    assert!(ok, "upid failed: {err}");
    let v = json(&out);
    assert_eq!(v["decision"], "hold");
    assert_eq!(v["eligible"], "2026-11-15T00:00:00Z");
    assert_eq!(v["age_s"], 2 * DAY);

    let current = format!("app:latest@{a}");
    let available = format!("latest@{b}@2026-01-01");
    let (ok, out, err) = upid(&[
        "updates",
        "decide",
        "--current",
        &current,
        "--available",
        &available,
        "-o",
        "json",
    ]);
    assert!(ok, "upid failed: {err}");
    let v = json(&out);
    assert_eq!(v["change"], "digest");
    assert_eq!(v["decision"], "approve");
    assert_eq!(v["candidate"], format!("docker.io/library/app:latest@{b}"));

    let available = format!("1.0.0@{b}");
    let (ok, out, err) = upid(&[
        "updates",
        "decide",
        "--current",
        "app:1.0.0",
        "--current-digest",
        &a,
        "--available",
        &available,
        "--allow-tags",
        "2\\..*",
        "-o",
        "json",
    ]);
    assert!(ok, "upid failed: {err}");
    let v = json(&out);
    assert_eq!(v["change"], "digest");
    assert_eq!(v["current_digest"], a);
}

#[test]
fn upid_updates_decide_none_yaml_and_table() {
    let (ok, out, err) = upid(&[
        "updates",
        "decide",
        "--current",
        "nginx:1.25.3",
        "--available",
        "1.25.2,1.25.3",
        "-o",
        "json",
    ]);
    assert!(ok, "upid failed: {err}");
    let v = json(&out);
    assert!(v["candidate"].is_null());
    assert!(v["change"].is_null());
    assert_eq!(v["decision"], "none");
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("up to date")
    );

    let (ok, out, err) = upid(&[
        "updates",
        "decide",
        "--current",
        "nginx:1.25.3",
        "--available",
        "1.26.0",
        "-o",
        "yaml",
    ]);
    assert!(ok, "upid failed: {err}");
    let v: serde_json::Value =
        serde_norway::from_str(&out).unwrap_or_else(|e| panic!("not YAML ({e}): {out}"));
    assert_eq!(v["decision"], "review");
    assert_eq!(v["candidate_tag"], "1.26.0");

    let (ok, out, err) = upid(&[
        "updates",
        "decide",
        "--current",
        "nginx:1.25.3",
        "--available",
        "1.26.0",
    ]);
    assert!(ok, "upid failed: {err}");
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    for column in [
        "IMAGE",
        "CURRENT",
        "CANDIDATE",
        "CHANGE",
        "DECISION",
        "AGE",
        "REASON",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().unwrap_or_default();
    for cell in [
        "docker.io/library/nginx",
        "1.25.3",
        "1.26.0",
        "minor",
        "review",
    ] {
        assert!(row.contains(cell), "{row}");
    }
}

#[test]
fn upid_updates_decide_refuses_bad_flags_with_what_works() {
    for (args, says) in [
        (
            vec![
                "--current",
                "nginx:1.25.3",
                "--available",
                "1.25.4",
                "--policy",
                "fast",
            ],
            "none, digest, patch, minor, major, all",
        ),
        (
            vec![
                "--current",
                "nginx:1.25.3",
                "--available",
                "1.25.4",
                "--min-age",
                "soon",
            ],
            "7d, 48h",
        ),
        (
            vec![
                "--current",
                "nginx:1.25.3",
                "--available",
                "1.25.4",
                "--allow-tags",
                "(",
            ],
            "not a regular expression",
        ),
        (
            vec![
                "--current",
                "nginx:1.25.3",
                "--available",
                "1.25.4@yesterday",
            ],
            "2024-05-01",
        ),
        (
            vec!["--current", "Nginx:1.25.3", "--available", "1.25.4"],
            "invalid repository",
        ),
        (
            vec!["--current", "nginx:1.25.3", "--available", ".x"],
            "not a tag",
        ),
        (vec!["--current", "nginx:1.25.3"], "--available"),
    ] {
        let mut full = vec!["updates", "decide"];
        full.extend(args.iter().copied());
        let (ok, _, err) = upid(&full);
        assert!(!ok, "{args:?} accepted");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Nothing panics
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsing_and_classifying_any_string_never_panics(a in ".{0,150}", b in ".{0,150}") {
        let (ta, tb) = (Tag::parse(&a), Tag::parse(&b));
        let _ = classify(&ta, &tb);
        let _ = ta.cmp_version(&tb);
        let _ = ta.mismatch(&tb);
        let _ = relevant_tags(&a, [b.as_str()]);
    }

    #[test]
    fn tag_shaped_strings_parse_classify_and_decide(
        a in "[A-Za-z0-9_.+-]{0,130}",
        tags in proptest::collection::vec("[vV]?[0-9a-z]{0,3}([._+-][0-9a-zA-Z]{0,6}){0,6}", 0..12),
        age_s in proptest::option::of(-1_000_000i64..100_000_000),
        level in 0usize..7,
    ) {
        let candidates: Vec<Candidate> = tags
            .iter()
            .map(|t| Candidate { tag: t.clone(), digest: None, created_unix_s: age_s.map(|s| NOW - s) })
            .collect();
        let policy = Policy {
            level: [
                PolicyLevel::Default,
                PolicyLevel::None,
                PolicyLevel::Digest,
                PolicyLevel::Patch,
                PolicyLevel::Minor,
                PolicyLevel::Major,
                PolicyLevel::All,
            ][level],
            min_age_s: Some(7 * 86_400).filter(|_| level % 2 == 0),
            allow_tags: (level == 3).then(|| AllowTags::new(".*1.*")).and_then(Result::ok),
            source: PolicySource::Labels,
        };
        if let Ok(reference) = ImageReference::parse(&format!("app:{a}")) {
            let d = decide(&reference, None, &candidates, &policy, NOW);
            prop_assert!(d.reason.ends_with('.'));
            prop_assert_eq!(d.candidate.is_some(), d.decision != Verdict::None);
            if let Some(tag) = &d.candidate_tag {
                prop_assert!(tags.contains(tag));
            }
        }
    }

    #[test]
    fn version_order_is_antisymmetric_and_updates_invert_to_downgrades(
        a in "v?[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(-(rc|beta|alpha)[0-9]?)?(-alpine)?",
        b in "v?[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(-(rc|beta|alpha)[0-9]?)?(-alpine)?",
    ) {
        let (ta, tb) = (Tag::parse(&a), Tag::parse(&b));
        prop_assert_eq!(ta.cmp_version(&tb), tb.cmp_version(&ta).reverse());
        let up = classify(&ta, &tb);
        if up.change.is_update() {
            prop_assert_eq!(classify(&tb, &ta).change, Change::Downgrade);
            prop_assert!(ta.mismatch(&tb).is_none());
        }
        if ta.mismatch(&tb).is_some() {
            prop_assert!(matches!(up.change, Change::Incompatible | Change::Same));
        }
    }
}

//! `upid-bench updates`: issue #6's goal, update decisions for 1,000 images
//! with 200 tags each in under 1 s of CPU, registry time excluded.
//!
//! Builds `--images` tag lists of `--tags` tags each, shaped like real
//! repositories (plain and `v`-prefixed semver, variant suffixes,
//! prereleases, two- and four-part versions, date tags, commit hashes,
//! `latest`), with digests and creation times as a registry would give
//! them, and a mix of policies (default, `minor`, `all`, a min-age with an
//! allow-tags expression). Then decides every image as the collector does
//! (`relevant_tags`, the label policy, `decide`) and measures the CPU time
//! of this thread, `--runs` times. Generating the lists is not timed: that
//! is the registry's part.

use std::collections::{BTreeMap, HashSet};

use clap::Args;
use serde_json::{Value, json};
use upid::updates::decide::{Candidate, decide, relevant_tags};
use upid::updates::policy::Policy;
use upid::updates::reference::ImageReference;

use crate::procstat::ThreadCpuClock;
use crate::report::{Bound, Goal};
use crate::stats::Summary;

/// Options of `upid-bench updates`.
#[derive(Debug, Args)]
pub struct UpdatesArgs {
    /// Images decided.
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
    /// Tags per image.
    #[arg(long, default_value_t = 200)]
    pub tags: usize,
    /// Measured runs.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// One JSON line on stdout, the summary on stderr.
    #[arg(long)]
    pub json: bool,
}

/// What the runs measured.
pub struct UpdatesReport {
    images: usize,
    tags: usize,
    cpu_ms: Vec<f64>,
    verdicts: BTreeMap<String, usize>,
    goal: Goal,
}

/// One image as the registry would describe it.
struct Image {
    reference: ImageReference,
    running_digest: String,
    candidates: Vec<Candidate>,
    labels: BTreeMap<String, String>,
}

/// A small deterministic generator (the runs must see the same lists).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Tag number `k` of an image of family `family`.
fn tag_of(family: usize, k: usize, rng: &mut Lcg) -> String {
    let (major, minor, patch) = (k / 40 + 1, (k / 8) % 5, k % 8);
    match family {
        0 => format!("{major}.{minor}.{patch}"),
        1 => format!("v{major}.{minor}.{patch}"),
        2 => {
            let variant = ["alpine3.19", "alpine3.20", "bookworm", "slim"][k % 4];
            format!("{major}.{minor}.{}-{variant}", k / 4 % 8)
        }
        3 => match k % 3 {
            0 => format!("{major}.{minor}.{patch}"),
            1 => format!("{major}.{minor}.{patch}-rc.{}", rng.below(4) + 1),
            _ => format!("{major}.{minor}.{patch}-beta{}", rng.below(4) + 1),
        },
        4 => match k % 4 {
            0 => format!("2024{:02}{:02}", k / 28 % 12 + 1, k % 28 + 1),
            1 => format!("{:07x}", rng.next() & 0x0fff_ffff),
            _ => format!("{major}.{minor}.{patch}"),
        },
        _ => match k % 2 {
            0 => format!("{major}.{}", k % 20),
            _ => format!("{major}.{minor}.{patch}.{}", k % 3),
        },
    }
}

fn digest(rng: &mut Lcg) -> String {
    format!(
        "sha256:{:016x}{:016x}{:016x}{:016x}",
        rng.next(),
        rng.next(),
        rng.next(),
        rng.next()
    )
}

/// The images, with tag lists, metadata and labels.
fn generate(images: usize, tags: usize, now_unix_s: i64) -> Vec<Image> {
    let mut rng = Lcg(0x5eed);
    (0..images)
        .map(|i| {
            let family = i % 6;
            let mut list: Vec<String> = (0..tags.saturating_sub(1))
                .map(|k| tag_of(family, k, &mut rng))
                .collect();
            list.push("latest".to_owned());
            list.dedup();
            // Half the images run the last patch of a minor line, so only
            // minor and major updates (review, block) exist for them.
            let mut k = list.len() / 3;
            if (i / 4) % 2 == 1 {
                k = (k / 8) * 8 + 7;
            }
            let current = list[k.min(list.len() - 1)].clone();
            // Images under a min-age get releases hours apart: the newest
            // are too young (hold).
            let spacing_s: i64 = if i % 4 == 3 { 3_600 } else { 86_400 };
            let candidates: Vec<Candidate> = list
                .iter()
                .enumerate()
                .map(|(k, t)| Candidate {
                    tag: t.clone(),
                    digest: Some(digest(&mut rng)),
                    // Older tags were released earlier; the newest days ago.
                    created_unix_s: Some(
                        now_unix_s - (list.len() - k) as i64 * spacing_s + rng.below(600) as i64,
                    ),
                })
                .collect();
            // Most images run what their tag points to; every third one's
            // tag was re-pushed (a digest update).
            let running_digest = digest(&mut rng);
            let mut candidates = candidates;
            if i % 3 != 0
                && let Some(c) = candidates.iter_mut().find(|c| c.tag == current)
            {
                c.digest = Some(running_digest.clone());
            }
            let mut labels = BTreeMap::new();
            match i % 4 {
                1 => {
                    labels.insert("upid.io/update-policy".into(), "minor".into());
                }
                2 => {
                    labels.insert("upid.io/update-policy".into(), "all".into());
                }
                3 => {
                    labels.insert("upid.io/min-age".into(), "7d".into());
                    labels.insert("upid.io/allow-tags".into(), r"^v?\d+\.\d+\.\d+".into());
                }
                _ => {}
            }
            Image {
                reference: ImageReference {
                    registry: "registry.example".into(),
                    repository: format!("team/app-{i}"),
                    tag: Some(current),
                    digest: None,
                },
                running_digest,
                candidates,
                labels,
            }
        })
        .collect()
}

/// Runs the benchmark.
pub fn run(args: &UpdatesArgs) -> anyhow::Result<UpdatesReport> {
    let now_unix_s = 1_795_132_800;
    let images = generate(args.images, args.tags, now_unix_s);
    let default = Policy::default();
    let mut clock = ThreadCpuClock::for_current_thread()?;
    let mut cpu_ms = Vec::new();
    let mut verdicts = BTreeMap::new();
    for run in 0..args.runs.max(1) {
        let mut counted = BTreeMap::new();
        let t0 = clock.now_ns()?;
        for image in &images {
            let policy = match Policy::from_labels(&image.labels, &default) {
                Ok(p) => p,
                Err(e) => anyhow::bail!("benchmark label refused: {e}"),
            };
            let current = image.reference.tag.as_deref().unwrap_or("latest");
            let relevant: HashSet<&str> =
                relevant_tags(current, image.candidates.iter().map(|c| c.tag.as_str()))
                    .into_iter()
                    .collect();
            // What the collector hands to `decide`: the relevant tags with
            // what the registry said about them.
            let candidates: Vec<Candidate> = image
                .candidates
                .iter()
                .filter(|c| relevant.contains(&c.tag.as_str()))
                .cloned()
                .collect();
            let d = decide(
                &image.reference,
                Some(&image.running_digest),
                &candidates,
                &policy,
                now_unix_s,
            );
            *counted.entry(d.decision.name().to_owned()).or_insert(0) += 1;
        }
        let t1 = clock.now_ns()?;
        cpu_ms.push((t1 - t0) as f64 / 1e6);
        if run == 0 {
            verdicts = counted;
        }
    }
    let median = Summary::of(&cpu_ms).median;
    Ok(UpdatesReport {
        images: args.images,
        tags: args.tags,
        cpu_ms,
        verdicts,
        goal: Goal {
            name: "updates_cpu_median",
            description: "decisions for every image, CPU time (median)",
            value: Some(median * 1e6),
            target: 1e9,
            bound: Bound::Below,
            unit: "ns",
        },
    })
}

impl UpdatesReport {
    /// For people.
    pub fn summary(&self) -> String {
        format!(
            "upid-bench updates: {} images x {} tags\nruns: CPU {:?} ms\nverdicts: {:?}\n{}\n",
            self.images,
            self.tags,
            self.cpu_ms.iter().map(|v| v.round()).collect::<Vec<_>>(),
            self.verdicts,
            self.goal.line()
        )
    }

    /// One JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "benchmark": "updates",
            "images": self.images,
            "tags": self.tags,
            "cpu_ms": Summary::of(&self.cpu_ms).to_json(),
            "verdicts": self.verdicts,
            "goals": [self.goal.to_json()],
        })
    }
}

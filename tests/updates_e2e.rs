//! Safe updates end to end, all real: images built here and pushed under
//! several tags (variants, a prerelease, a re-pushed tag) into Debian's
//! `docker-registry` on loopback; containers running them on this machine's
//! Docker Engine with update-policy labels; `upid-collector standalone`
//! finding them through its Docker inventory and asking the registry; and
//! `upid updates` printing the decisions. Then `upid updates apply` takes
//! an approved update on the real engine, and one whose image fails its
//! healthcheck is rolled back; both are recorded as update events.
//!
//! Skips loudly without a Docker Engine or `docker-registry` (CI installs
//! it: `.ci/run`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use upid_e2e::harness::registry::{Registry, registry_available};
use upid_e2e::harness::{Collector, standalone};
use upid_e2e::{bin, build_busybox_image_with, docker_available, run, skip_unless, wait_for};

/// Deadline of each wait (a busy 2-core CI machine).
const WAIT: Duration = Duration::from_secs(150);

/// Containers and local images named `<prefix>...`, removed when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in [
            vec!["ps", "-aq", "--filter"],
            vec!["images", "-q", "--filter"],
        ] {
            let filter = if args[0] == "ps" {
                format!("name={}", self.0)
            } else {
                format!("reference={}*", self.0)
            };
            let Ok(out) = Command::new("docker").args(&args).arg(&filter).output() else {
                continue;
            };
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let rm = if args[0] == "ps" { "rm" } else { "rmi" };
                let _ = Command::new("docker").args([rm, "-f", id]).output();
            }
        }
    }
}

fn upid(server: &str, args: &[&str]) -> Output {
    Command::new(bin("upid"))
        .args(["--server", server])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running upid {args:?}: {e}"))
}

fn upid_json(server: &str, args: &[&str]) -> Value {
    let out = upid(server, args);
    assert!(
        out.status.success(),
        "upid {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "upid {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The decision for the workload (container) named `name`, if listed.
fn decision_for<'a>(decisions: &'a Value, name: &str) -> Option<&'a Value> {
    decisions["decisions"]
        .as_array()?
        .iter()
        .find(|d| d["workload"] == name)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("<not a string>")
}

/// A candidate reference without its `@digest`.
fn no_digest(v: &Value) -> &str {
    let r = s(v);
    r.split_once('@').map_or(r, |(name, _)| name)
}

#[test]
fn upid_updates_decides_for_running_containers_against_a_real_registry_and_applies() {
    if skip_unless(docker_available(), "no Docker Engine answers `docker info`")
        || skip_unless(
            registry_available(),
            "docker-registry is not installed (apt-get install docker-registry)",
        )
    {
        return;
    }
    let prefix = format!("upid-upd-{}-", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let mut registry = Registry::start();
    let host = registry.host.clone();
    let repo = format!("{prefix}app");

    // One image per tag, each with its own content (label) so each has its
    // own digest. 1.0.2 fails its healthcheck.
    let healthy =
        "HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD [\"/bin/busybox\", \"true\"]";
    let failing =
        "HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD [\"/bin/busybox\", \"false\"]";
    let mut push = |tag: &str, health: &str, content: &str| {
        let local = format!("{prefix}local:{tag}-{content}");
        build_busybox_image_with(
            &local,
            &format!("LABEL upid.test.content={content}\n{health}"),
        );
        registry.push(&local, &repo, tag)
    };
    let v100 = push("1.0.0", healthy, "a");
    push("1.0.1", healthy, "b");
    push("1.1.0", healthy, "c");
    push("2.0.0", healthy, "d");
    push("1.1.0-rc.1", healthy, "e");
    let alpine = push("1.0.1-alpine3.19", healthy, "f");
    let latest = push("latest", healthy, "g");
    let v3 = push("3.0.0", healthy, "h");

    let run_container = |name: &str, labels: &[&str], image: &str| {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-d", "--name", &format!("{prefix}{name}")]);
        for l in labels {
            cmd.args(["--label", l]);
        }
        run(cmd.arg(image));
    };
    run_container("default", &[], &v100);
    run_container("minor", &["upid.io/update-policy=minor"], &v100);
    run_container("none", &["upid.io/update-policy=none"], &v100);
    run_container("prerelease", &["upid.io/update-policy=all"], &v100);
    run_container("variant", &[], &alpine);
    run_container("latest", &[], &latest);
    run_container("badlabel", &["upid.io/update-policy=sometimes"], &v3);
    // `latest` is pushed again with new content: same tag, new digest.
    push("latest", healthy, "g2");

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = dir.path().join("upid.duckdb");
    let collector = standalone(&store).start();
    let server = collector.url();

    let names = [
        "default",
        "minor",
        "none",
        "prerelease",
        "variant",
        "latest",
    ];
    let decisions = wait_for(WAIT, "upid updates to list every test container", || {
        let out = upid(&server, &["updates", "-o", "json"]);
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let all_listed = names
            .iter()
            .all(|n| decision_for(&v, &format!("{prefix}{n}")).is_some());
        let bad_skipped = v["skipped"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| s_contains(x, "upid.io/update-policy")));
        (all_listed && bad_skipped).then_some(v)
    });
    let d = |n: &str| {
        decision_for(&decisions, &format!("{prefix}{n}"))
            .unwrap_or_else(|| panic!("no decision for {n}: {decisions:#}"))
    };

    // Default policy: the patch is approved; 1.1.0 (minor, review) and
    // 2.0.0/3.0.0 (major, blocked) are not taken; the newest is named.
    let def = d("default");
    assert_eq!(
        no_digest(&def["candidate"]),
        format!("{}/{repo}:1.0.1", host),
        "{def:#}"
    );
    assert_eq!(s(&def["change"]), "patch", "{def:#}");
    assert_eq!(s(&def["decision"]), "approve", "{def:#}");
    assert_eq!(s(&def["policy"]), "default", "{def:#}");
    assert_eq!(s(&def["newest"]), "3.0.0", "{def:#}");
    assert!(
        def["candidate_age_s"]
            .as_i64()
            .is_some_and(|a| (0..3600).contains(&a)),
        "the registry gives the release age: {def:#}"
    );

    let minor = d("minor");
    assert_eq!(
        no_digest(&minor["candidate"]),
        format!("{}/{repo}:1.1.0", host),
        "{minor:#}"
    );
    assert_eq!(s(&minor["change"]), "minor");
    assert_eq!(s(&minor["decision"]), "approve");
    assert_eq!(s(&minor["policy_source"]), "labels");

    let none = d("none");
    assert_ne!(s(&none["decision"]), "approve", "{none:#}");
    assert_eq!(s(&none["policy"]), "none");

    // `all` takes majors and prereleases: 3.0.0 is the newest of all.
    let all = d("prerelease");
    assert_eq!(
        no_digest(&all["candidate"]),
        format!("{}/{repo}:3.0.0", host),
        "{all:#}"
    );
    assert_eq!(s(&all["decision"]), "approve");

    // The alpine variant has no newer alpine tag: never 1.1.0 or 2.0.0.
    let variant = d("variant");
    assert!(variant["candidate"].is_null(), "{variant:#}");
    assert_eq!(s(&variant["decision"]), "none", "{variant:#}");

    // `latest` was re-pushed: a digest update of the same tag.
    let lat = d("latest");
    assert_eq!(s(&lat["change"]), "digest", "{lat:#}");
    assert_eq!(s(&lat["decision"]), "approve", "{lat:#}");

    // The table names the same decisions for people.
    let table = upid(&server, &["updates"]);
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains(&format!("{prefix}minor")) && table.contains("approve"),
        "{table}"
    );

    // The same decisions as Parquet, from `upid export` and from the
    // collector's periodic report (written again by a restart).
    let (collector, server) = check_updates_parquet(collector, &store, &prefix, &decisions);

    // Apply the approved patch to `default`: recreated on 1.0.1, healthy.
    let target = format!("{prefix}default");
    let out = upid(
        &server,
        &[
            "updates",
            "apply",
            &target,
            "--gate-window",
            "3s",
            "-o",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "apply failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(s(&report["verdict"]), "healthy", "{report:#}");
    let image = run(Command::new("docker").args(["inspect", "-f", "{{.Config.Image}}", &target]));
    assert_eq!(image.trim(), format!("{}/{repo}:1.0.1", host));

    // An update whose image fails its healthcheck is rolled back. The
    // collector first has to see the recreated container (its inventory)
    // and the new tag (asked again with --refresh).
    push("1.0.2", failing, "bad");
    wait_for(
        WAIT,
        "the collector to offer 1.0.2 to the recreated container",
        || {
            let v = upid_json(&server, &["updates", "--refresh", "-o", "json"]);
            let d = decision_for(&v, &target)?;
            (s(&d["current"]).contains(":1.0.1") && no_digest(&d["candidate"]).ends_with(":1.0.2"))
                .then_some(())
        },
    );
    let out = upid(
        &server,
        &[
            "updates",
            "apply",
            &target,
            "--gate-window",
            "3s",
            "-o",
            "json",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        !out.status.success(),
        "a rolled-back update exits non-zero: {report:#}"
    );
    assert_eq!(s(&report["verdict"]), "failed", "{report:#}");
    assert_eq!(report["rolled_back"], true, "{report:#}");
    let image = run(Command::new("docker").args([
        "inspect",
        "-f",
        "{{.Config.Image}} {{.State.Running}}",
        &target,
    ]));
    assert_eq!(
        image.trim(),
        format!("{}/{repo}:1.0.1 true", host),
        "the 1.0.1 container runs again"
    );

    // Both applies are on record at the collector, newest first.
    let events = upid_json(&server, &["updates", "events", &target, "-o", "json"]);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .map(|e| e.iter().map(|x| s(&x["kind"])).collect())
        .unwrap_or_default();
    assert!(kinds.contains(&"rolled_back"), "{events:#}");
    assert!(kinds.contains(&"gate_passed"), "{events:#}");
    let rolled = events["events"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["kind"] == "rolled_back"))
        .map(|x| s(&x["message"]).to_string())
        .unwrap_or_default();
    assert!(
        rolled.contains("unhealthy") || rolled.contains("health"),
        "{rolled}"
    );
    drop(collector);
}

fn python_readers_available() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb, pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every file under `dir` (hidden ones too), relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The decisions `upid updates -o json` printed, as the Parquet `updates`
/// table of the real `upid export` and of the collector's periodic report,
/// read by DuckDB and pyarrow from PyPI (tests/python/read_updates.py).
///
/// The export asks for the last hour: its last day is today, which gets
/// the decisions. The periodic report puts the decisions of its run into
/// yesterday's partition (the last day of a daily run); the collector
/// writes it at start, before its Docker inventory has been read on a
/// fresh store, so it is restarted on the same store (whose inventory
/// lists the same containers, and the registry is unchanged) and its
/// report at start must hold the same decisions. Returns the restarted
/// collector and its URL.
fn check_updates_parquet(
    collector: Collector,
    store: &Path,
    prefix: &str,
    decisions: &Value,
) -> (Collector, String) {
    let server = collector.url();
    if skip_unless(
        python_readers_available(),
        "python3 with duckdb and pyarrow is needed to read the updates Parquet \
         (python3 -m pip install duckdb pyarrow); the updates table is not checked",
    ) {
        return (collector, server);
    }
    let dir = store.parent().expect("the store has a directory");
    let export_dir = dir.join("export");
    let export_from_s = unix_now_s();
    let export_dir_arg = export_dir.to_str().expect("utf-8 path");
    let out = upid(
        &server,
        &[
            "export",
            "--since",
            "1h",
            "--tables",
            "updates",
            "--out",
            export_dir_arg,
        ],
    );
    assert!(
        out.status.success(),
        "upid export failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let files = tree(&export_dir);
    assert!(
        files.len() == 1
            && files[0].starts_with("updates/date=")
            && files[0].ends_with("/part-0.parquet"),
        "upid export --tables updates wrote {files:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("wrote 1 files ("),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The periodic report: a restart on the same store runs it at start.
    collector.stop();
    let restart_s = unix_now_s();
    let collector = standalone(store).start();
    collector.wait_for_metrics("the report run at start", WAIT, |m| {
        m.value("upid_collector_report_failures_total", &[]) > 0.0
            || m.value("upid_collector_report_last_success_timestamp_seconds", &[]) > 0.0
    });
    let m = collector.scrape();
    assert_eq!(
        m.value("upid_collector_report_failures_total", &[]),
        0.0,
        "a report failed:\n{}",
        collector.proc.output()
    );
    assert!(
        m.value("upid_collector_reports_written_total", &[]) >= 1.0,
        "{}",
        m.text
    );

    let ours: Vec<&Value> = decisions["decisions"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter(|x| s(&x["workload"]).starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    let expectations = dir.join("updates-expectations.json");
    std::fs::write(
        &expectations,
        json!({
            "prefix": prefix,
            "decisions": ours,
            "dirs": [
                {"dir": export_dir, "date_offset_days": 0, "not_before_unix_s": export_from_s},
                {"dir": dir.join("reports"), "date_offset_days": 1, "not_before_unix_s": restart_s},
            ],
        })
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", expectations.display()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/read_updates.py");
    let read = Command::new("python3")
        .arg(&script)
        .arg(&expectations)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let said = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success() && said.lines().last() == Some("ok"),
        "the updates Parquet does not hold upid's decisions:\n{said}{}",
        String::from_utf8_lossy(&read.stderr)
    );
    eprintln!("{said}");
    let server = collector.url();
    (collector, server)
}

fn s_contains(v: &Value, needle: &str) -> bool {
    v.as_str().is_some_and(|s| s.contains(needle))
}

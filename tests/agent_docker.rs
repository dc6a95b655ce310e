//! The agent finds containers on the real Docker Engine. The image is built
//! here from scratch (static busybox only): no image can be pulled.
//! Skips loudly where no Docker Engine answers.

use std::process::Command;
use std::time::Duration;

use upid::model::{Runtime, Snapshot};
use upid_e2e::{bin, build_busybox_image, docker_available, run, skip_unless, wait_for};

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn docker_container_is_found_with_full_id_runtime_and_limits() {
    if skip_unless(docker_available(), "no Docker Engine answers `docker info`") {
        return;
    }
    let tag = "upid-e2e/busybox:agent";
    build_busybox_image(tag);
    let name = format!("upid-e2e-agent-{}", std::process::id());
    let id = run(Command::new("docker").args([
        "run", "-d", "--name", &name, "--memory", "64m", "--cpus", "0.5", tag, "sleep", "3600",
    ]))
    .trim()
    .to_string();
    let _guard = Container(name);
    assert_eq!(id.len(), 64, "docker run -d prints the full id: {id:?}");

    let snapshot: Snapshot = wait_for(
        Duration::from_secs(15),
        "the container's cgroup to appear",
        || {
            let out = Command::new(bin("upid-agent"))
                .args(["sample", "--once", "-o", "json"])
                .output()
                .ok()?;
            assert!(
                out.status.success(),
                "upid-agent failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let s: Snapshot =
                serde_json::from_slice(&out.stdout).expect("sample -o json is a Snapshot");
            s.containers
                .iter()
                .any(|c| c.identity.container_id.as_deref() == Some(id.as_str()))
                .then_some(s)
        },
    );
    let c = snapshot
        .containers
        .iter()
        .find(|c| c.identity.container_id.as_deref() == Some(id.as_str()))
        .expect("found above");
    assert_eq!(c.identity.runtime, Runtime::Docker);
    let mem = c.stats.memory.as_ref().expect("memory stats");
    assert_eq!(mem.limit_bytes, Some(64 * 1024 * 1024));
    assert!(mem.usage_bytes > 0);
    assert_eq!(
        c.stats.cpu.as_ref().and_then(|c| c.limit_millicores),
        Some(500)
    );
    assert!(c.stats.pids.expect("pids").current >= 1);
    // The container has its own network namespace, read once.
    let netns = c
        .netns_inode
        .expect("a bridge-networked container has its own netns");
    assert_eq!(
        snapshot
            .networks
            .iter()
            .filter(|n| n.netns_inode == netns)
            .count(),
        1
    );

    // `top` derives rates from consecutive samples and shows the same container.
    let out = run(Command::new(bin("upid-agent")).args([
        "top",
        "--interval",
        "1s",
        "--count",
        "2",
        "-o",
        "json",
    ]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per refresh"))
        .collect();
    assert_eq!(lines.len(), 2, "--count 2 prints two refreshes");
    let row = lines[1]["containers"]
        .as_array()
        .expect("containers array")
        .iter()
        .find(|c| c["identity"]["container_id"] == id.as_str())
        .expect("the container in top's output")
        .clone();
    let cores = row["cpu_cores"].as_f64().expect("cpu_cores");
    assert!(
        (0.0..0.05).contains(&cores),
        "an idle `sleep` used {cores} cores"
    );
    assert_eq!(row["cpu_limit_cores"].as_f64(), Some(0.5));
    assert_eq!(row["memory_limit_bytes"].as_u64(), Some(64 * 1024 * 1024));
    assert_eq!(row["oom_kills"].as_u64(), Some(0));
}

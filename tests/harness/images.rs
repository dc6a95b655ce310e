//! The upid images on the real Docker Engine: built by
//! `deploy/images/build.sh --bin-dir` from the binaries this test run
//! already built (never a cargo build), and the containers and networks of
//! tests that run them, removed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The agent image `deploy/images/build.sh` builds.
pub const AGENT_IMAGE: &str = "upid/agent:0.1.0";
/// The collector image `deploy/images/build.sh` builds.
pub const COLLECTOR_IMAGE: &str = "upid/collector:0.1.0";

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// True when the test must skip for lack of a Docker Engine or root (said
/// loudly); with `CI=true` a missing Docker Engine or root fails instead:
/// CI must run these tests.
pub fn skip_without_docker_and_root() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let docker = crate::docker_available();
    let root = crate::is_root();
    if ci {
        assert!(docker, "CI=true but no Docker Engine answers `docker info`");
        assert!(root, "CI=true but not running as root");
        return false;
    }
    crate::skip_unless(docker, "no Docker Engine answers `docker info`")
        || crate::skip_unless(
            root,
            "not root: the test chowns the collector's data directory and reads what containers wrote as root",
        )
}

/// Builds both images with `deploy/images/build.sh --bin-dir DIR`, DIR
/// being where this test's binaries were built (the debug profile under
/// nextest), one test at a time (`flock` on a file in the temp directory:
/// the tests of one run build the same tags; the second build reuses the
/// first one's layers, so containers already started are not affected).
/// Returns what the script printed on standard error (what it copied, the
/// sizes).
pub fn build_images() -> String {
    let bin_dir = crate::bin("upid-agent")
        .parent()
        .expect("binary directory")
        .to_path_buf();
    crate::bin("upid-collector");
    let script = repo_root().join("deploy/images/build.sh");
    let lock = std::env::temp_dir().join("upid-e2e-images.lock");
    let out = Command::new("flock")
        .arg(&lock)
        .arg("bash")
        .arg(&script)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{} --bin-dir {} failed ({}):\n{stderr}",
        script.display(),
        bin_dir.display(),
        out.status
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    for image in [AGENT_IMAGE, COLLECTOR_IMAGE] {
        assert!(
            printed.lines().any(|l| l == image),
            "build.sh printed {printed:?}, not {image}; its log:\n{stderr}"
        );
    }
    stderr
}

/// `docker ARGS`, panicking with its standard error when it fails; returns
/// standard output, trimmed.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker ARGS`, whatever the outcome.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning docker {}: {e}", args.join(" ")))
}

/// The size of a local image in bytes (`docker image inspect`).
pub fn image_size_bytes(image: &str) -> u64 {
    let size = docker(&["image", "inspect", "--format", "{{.Size}}", image]);
    size.parse()
        .unwrap_or_else(|e| panic!("size of {image}: {size:?}: {e}"))
}

/// A user-defined bridge network, removed when dropped (after the
/// containers on it: declare it first).
pub struct Network {
    /// Its name.
    pub name: String,
}

impl Network {
    /// `docker network create NAME`.
    pub fn create(name: &str) -> Network {
        let _ = docker_output(&["network", "rm", name]);
        docker(&["network", "create", name]);
        Network {
            name: name.to_string(),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let out = docker_output(&["network", "rm", &self.name]);
        if !out.status.success() {
            eprintln!(
                "could not remove the network {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// A container started by a test: its logs on demand, removed (`rm -f`)
/// when dropped; when dropped during a panic, the end of its logs is
/// printed first.
pub struct Container {
    /// Its name.
    pub name: String,
    /// Its full id.
    pub id: String,
}

impl Container {
    /// `docker run -d --name NAME ARGS...`. The guard exists before the
    /// outcome is checked, so a container created but not started is
    /// removed too.
    pub fn run(name: &str, args: &[&str]) -> Container {
        let _ = docker_output(&["rm", "-f", name]);
        let mut guard = Container {
            name: name.to_string(),
            id: String::new(),
        };
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(args);
        guard.id = docker(&all);
        guard
    }

    /// Everything the container printed so far (standard output and
    /// error), one entry per line; stdout lines come first.
    pub fn log_lines(&self) -> Vec<String> {
        let out = docker_output(&["logs", &self.name]);
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.extend(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_string),
        );
        lines
    }

    /// How many lines of its logs contain `needle`.
    pub fn count_log_lines(&self, needle: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Polls the logs until `f` finds what it wants in them; panics with
    /// the logs after `timeout`.
    pub fn wait_for_logs<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&[String]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.log_lines();
            if let Some(v) = f(&lines) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what} in the logs of {}; state {}; logs:\n{}",
                self.name,
                self.state(),
                tail(&lines, 60)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Where the container's `port` (e.g. `7070/tcp`) is published on the
    /// host (`docker port`; it may change when the container starts again).
    pub fn published(&self, port: &str) -> SocketAddr {
        let out = docker(&["port", &self.name, port]);
        let first = out.lines().next().unwrap_or_default();
        first
            .parse()
            .unwrap_or_else(|e| panic!("docker port {} {port} said {out:?}: {e}", self.name))
    }

    /// `docker inspect` of one Go template, e.g. `{{.State.ExitCode}}`.
    pub fn inspect(&self, template: &str) -> String {
        docker(&["inspect", "--format", template, &self.name])
    }

    /// Status, exit code and OOM flag, for messages.
    pub fn state(&self) -> String {
        let out = docker_output(&[
            "inspect",
            "--format",
            "{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}",
            &self.name,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker stop -t GRACE` (SIGTERM, SIGKILL after the grace period),
    /// then the exit code.
    pub fn stop(&self, grace: Duration) -> i64 {
        docker(&["stop", "-t", &grace.as_secs().to_string(), &self.name]);
        let code = self.inspect("{{.State.ExitCode}}");
        code.parse()
            .unwrap_or_else(|e| panic!("exit code of {}: {code:?}: {e}", self.name))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} ({}), last lines of its logs -----\n{}\n----- end of {} -----",
                self.name,
                self.state(),
                tail(&self.log_lines(), 80),
                self.name
            );
        }
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}

/// A local image tag removed (`docker rmi`) when dropped.
pub struct ImageTag(pub String);

impl Drop for ImageTag {
    fn drop(&mut self) {
        let _ = docker_output(&["rmi", &self.0]);
    }
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

//! Helpers shared by upid's end-to-end tests: finding the built binaries,
//! skipping loudly where this machine lacks root or a Docker Engine, real
//! cgroups that clean up after themselves, and images built from scratch.
//! [`harness`] runs real collectors and agents for the collector tests.

#![allow(clippy::unwrap_used)]

pub mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary built next to this test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Prints a loud skip message. Returns true when the test must be skipped.
pub fn skip_unless(condition: bool, why: &str) -> bool {
    if !condition {
        eprintln!("\n!!!!!!!! SKIP: {why} !!!!!!!!\n");
    }
    !condition
}

/// True when running as root (needed to create cgroups).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// True when `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// True when a Docker Engine answers.
pub fn docker_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after
/// `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A real cgroup created for one test in every hierarchy given, removed
/// (after killing what runs in it) when dropped.
pub struct TestCgroup {
    /// Path relative to the hierarchy roots, starting with `/`.
    pub path: String,
    /// The directories created, one per hierarchy.
    pub dirs: Vec<PathBuf>,
    children: Vec<Child>,
}

impl TestCgroup {
    /// Creates `/<name>` under each mount in `mounts`.
    pub fn create(name: &str, mounts: &[&Path]) -> TestCgroup {
        let path = format!("/{name}");
        let mut dirs = Vec::new();
        for m in mounts {
            let dir = m.join(name);
            if dir.exists() {
                kill_and_remove(&dir);
            }
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            dirs.push(dir);
        }
        TestCgroup {
            path,
            dirs,
            children: Vec::new(),
        }
    }

    /// The directory created in the hierarchy mounted at `mount`.
    pub fn dir_in(&self, mount: &Path) -> PathBuf {
        mount.join(self.path.trim_start_matches('/'))
    }

    /// Writes `value` to `file` in the hierarchy mounted at `mount`.
    pub fn set(&self, mount: &Path, file: &str, value: &str) {
        let p = self.dir_in(mount).join(file);
        std::fs::write(&p, value)
            .unwrap_or_else(|e| panic!("writing {value} to {}: {e}", p.display()));
    }

    /// Starts `program args` inside the cgroup (in every hierarchy) before it
    /// execs, so every process it forks is inside too.
    pub fn spawn(&mut self, program: &str, args: &[&str]) {
        let mut script = String::new();
        for d in &self.dirs {
            script.push_str(&format!(
                "echo $$ > '{}/cgroup.procs' || exit 97; ",
                d.display()
            ));
        }
        script.push_str("exec \"$@\"");
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
        self.children.push(child);
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            kill_and_remove(d);
        }
    }
}

fn kill_and_remove(dir: &Path) {
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            break;
        }
        for pid in procs.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir(dir);
}

/// Builds a tiny image from scratch with a static busybox as its only file
/// (no image can be pulled here), tagged `tag`.
pub fn build_busybox_image(tag: &str) {
    build_busybox_image_with(tag, "");
}

/// Builds `tag` as [`build_busybox_image`] does, with busybox's applets
/// installed as commands (`/bin/sh`, `dd`, ... for healthchecks and
/// `sh -c`) and `extra` Dockerfile lines appended (a `LABEL` gives another
/// image id).
pub fn build_busybox_image_with(tag: &str, extra: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static installed (apt-get install busybox-static)");
    std::fs::copy(busybox, dir.path().join("busybox")).expect("copy busybox");
    let install = if extra.is_empty() {
        ""
    } else {
        "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
    };
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\n{install}ENTRYPOINT [\"/bin/busybox\"]\nCMD [\"sleep\", \"3600\"]\n{extra}\n"
        ),
    )
    .expect("write Dockerfile");
    run(Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path()));
}

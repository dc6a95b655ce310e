//! End-to-end: the agent's Docker inventory source
//! (`upid_agent::inventory::docker::run`) against the real Docker Engine of
//! this machine, and against a private `dockerd` the test starts, stops and
//! starts again to check that the source degrades and recovers.
//!
//! Every test runs the source in its own tokio runtime and asserts on the
//! `SourceUpdate`s it sends, in order. Containers, images and the private
//! daemon are removed by guards, also when an assertion fails. Waits poll
//! with deadlines; nothing sleeps and hopes.
//!
//! The machine's own `dockerd` is never restarted (other tests use it): the
//! restart test runs a second daemon with its own data root, exec root,
//! socket, and containerd (`--storage-driver vfs`, `--bridge none`, no
//! iptables), in its own network namespace (`unshare --net`): a dockerd
//! started with `--bridge none` deletes the host's `docker0`, which would
//! cut the machine's engine off its default network. It needs root,
//! `dockerd` and `unshare` on PATH.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use upid::wire::v1;
use upid_agent::inventory::docker::{self, DockerConfig};
use upid_agent::inventory::{Source, SourceUpdate};
use upid_e2e::{build_busybox_image, docker_available, have, is_root, run, skip_unless};

/// How long one awaited update may take (a busy 2-core CI machine).
const WAIT: Duration = Duration::from_secs(60);

fn unique(what: &str) -> String {
    format!("upid-dinv-e2e-{}-{what}", std::process::id())
}

/// `docker` talking to the machine's engine, or to `host`.
fn docker(host: Option<&str>) -> Command {
    let mut cmd = Command::new("docker");
    if let Some(h) = host {
        cmd.args(["-H", h]);
    }
    cmd
}

/// A container removed (with `rm -f`) when dropped.
struct Container {
    id: String,
    name: String,
    host: Option<String>,
}

impl Container {
    /// `docker run -d --name <name> <args…>` on `host` (None: the machine's
    /// engine). The guard exists before the result is checked: a container
    /// created but not started is removed too.
    fn run(host: Option<&str>, name: &str, args: &[&str]) -> Container {
        let mut guard = Container {
            id: String::new(),
            name: name.to_string(),
            host: host.map(str::to_string),
        };
        let out = docker(host)
            .args(["run", "-d", "--name", name])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker run {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        guard.id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        guard
    }

    fn image_id(&self) -> String {
        run(docker(self.host.as_deref()).args(["inspect", "-f", "{{.Image}}", &self.id]))
            .trim()
            .to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(self.host.as_deref())
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A busybox image tag on the machine's engine, untagged when dropped.
struct Image(String);

impl Image {
    fn build(what: &str) -> Image {
        let tag = format!("{}:1", unique(what));
        build_busybox_image(&tag);
        Image(tag)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The source running in its own runtime, and every update it sent.
struct Watcher {
    runtime: tokio::runtime::Runtime,
    updates: Arc<Mutex<Vec<SourceUpdate>>>,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watcher {
    fn start(config: DockerConfig) -> Watcher {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let updates = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&updates);
        runtime.spawn(async move {
            while let Some(u) = rx.recv().await {
                sink.lock().unwrap().push(u);
            }
        });
        let task = runtime.spawn(docker::run(config, tx, shutdown_rx));
        Watcher {
            runtime,
            updates,
            shutdown,
            task: Some(task),
        }
    }

    /// Polls `f` over all updates so far until it returns `Some`; on
    /// timeout fails with `what` and a summary of what did arrive.
    fn wait<T>(&self, what: &str, mut f: impl FnMut(&[SourceUpdate]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f(&self.updates.lock().unwrap()) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; updates:\n{}",
                    self.summary()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn snapshot(&self) -> Vec<SourceUpdate> {
        self.updates.lock().unwrap().clone()
    }

    fn summary(&self) -> String {
        let mut s = String::new();
        for u in self.updates.lock().unwrap().iter() {
            let line = match u {
                SourceUpdate::Full { containers, .. } => format!(
                    "Full [{}]",
                    containers
                        .iter()
                        .map(|c| format!("{} {}", &c.container_id[..12], c.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                SourceUpdate::Upsert { container: c, .. } => format!(
                    "Upsert {} {} state={} health={} restarts={} exit={:?} oom={}",
                    &c.container_id[..12],
                    c.name,
                    c.state,
                    c.health,
                    c.restart_count,
                    c.exit_code,
                    c.oom_killed
                ),
                SourceUpdate::Remove { container_id, .. } => format!("Remove {container_id}"),
                SourceUpdate::Event { event, .. } => {
                    format!("Event {} {}", event.kind, event.container_id)
                }
                SourceUpdate::Degraded { reason, .. } => format!("Degraded: {reason}"),
                SourceUpdate::Recovered { .. } => "Recovered".to_string(),
                SourceUpdate::OomWatch { since_unix_ns } => format!("OomWatch {since_unix_ns:?}"),
                SourceUpdate::NodeLabels { labels, .. } => format!("NodeLabels {labels:?}"),
            };
            s.push_str(&line);
            s.push('\n');
        }
        s
    }

    /// Asks the source to stop and checks that it does.
    fn stop(mut self) {
        self.shutdown.send(true).unwrap();
        let task = self.task.take().unwrap();
        self.runtime
            .block_on(async { tokio::time::timeout(WAIT, task).await })
            .expect("the source stops when asked")
            .expect("the source did not panic");
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Every record of `id` the source sent (in `Full` and `Upsert`), in order.
fn records(updates: &[SourceUpdate], id: &str) -> Vec<v1::ContainerInfo> {
    let mut out = Vec::new();
    for u in updates {
        match u {
            SourceUpdate::Full { containers, .. } => {
                out.extend(containers.iter().filter(|c| c.container_id == id).cloned());
            }
            SourceUpdate::Upsert { container, .. } if container.container_id == id => {
                out.push(container.clone());
            }
            _ => {}
        }
    }
    out
}

/// The newest record of `id` that satisfies `pred`.
fn record_where(
    updates: &[SourceUpdate],
    id: &str,
    pred: impl Fn(&v1::ContainerInfo) -> bool,
) -> Option<v1::ContainerInfo> {
    records(updates, id).into_iter().rev().find(|c| pred(c))
}

fn no_degradation(w: &Watcher) {
    let updates = w.snapshot();
    assert!(
        !updates
            .iter()
            .any(|u| matches!(u, SourceUpdate::Degraded { .. })),
        "the machine's engine degraded the source:\n{}",
        w.summary()
    );
    assert!(
        updates.iter().all(|u| match u {
            SourceUpdate::Full { source, .. }
            | SourceUpdate::Upsert { source, .. }
            | SourceUpdate::Remove { source, .. }
            | SourceUpdate::Event { source, .. }
            | SourceUpdate::Degraded { source, .. }
            | SourceUpdate::Recovered { source }
            | SourceUpdate::NodeLabels { source, .. } => *source == Source::Docker,
            // The kernel log's, never the Docker source's.
            SourceUpdate::OomWatch { .. } => false,
        }),
        "every update names the Docker source"
    );
}

fn engine_ok() -> bool {
    !skip_unless(
        docker_available() && (have("busybox") || Path::new("/bin/busybox").exists()),
        "needs a Docker Engine and busybox-static",
    )
}

#[test]
fn labeled_and_compose_containers_are_listed_updated_and_removed() {
    if !engine_ok() {
        return;
    }
    let image = Image::build("labels");
    let plain_name = unique("plain");
    let plain = Container::run(
        None,
        &plain_name,
        &[
            "--label",
            "team=payments",
            "--memory",
            "32m",
            "--cpus",
            "0.5",
            &image.0,
            "sleep",
            "3600",
        ],
    );
    let w = Watcher::start(DockerConfig::default());

    // First the full list, with the container that was already running.
    let first = w.wait("the first update", |u| u.first().cloned());
    let SourceUpdate::Full { containers, .. } = first else {
        panic!("the first update is not Full:\n{}", w.summary());
    };
    let got = containers
        .iter()
        .find(|c| c.container_id == plain.id)
        .unwrap_or_else(|| panic!("{plain_name} missing from the first Full"));
    let tag_repo = format!("docker.io/library/{}", unique("labels"));
    assert_eq!(got.runtime, v1::Runtime::Docker as i32);
    assert_eq!(got.name, plain_name);
    assert_eq!(got.labels.get("team").map(String::as_str), Some("payments"));
    assert_eq!(got.state, v1::ContainerState::Running as i32);
    assert_eq!(got.health, v1::HealthStatus::None as i32);
    assert_eq!(got.memory_limit_bytes, Some(32 << 20));
    assert_eq!(got.cpu_limit_millicores, Some(500));
    assert!(got.started_unix_ns.is_some());
    assert_eq!(got.exit_code, None);
    assert_eq!(got.sources, vec!["docker".to_string()]);
    let img = got.image.as_ref().unwrap();
    assert_eq!(img.reference, image.0);
    assert_eq!(img.repository, tag_repo);
    assert_eq!(img.tag, "1");
    assert_eq!(img.image_id, plain.image_id());
    let workload = got.workload.as_ref().unwrap();
    assert_eq!(workload.kind, v1::WorkloadKind::Container as i32);
    assert_eq!(workload.name, plain_name);

    // A compose service started now arrives as an Upsert.
    let project = unique("shop");
    let web = Container::run(
        None,
        &unique("web"),
        &[
            "--label",
            &format!("com.docker.compose.project={project}"),
            "--label",
            "com.docker.compose.service=web",
            &image.0,
            "sleep",
            "3600",
        ],
    );
    let rec = w.wait("the compose container running", |u| {
        u.iter().find_map(|x| match x {
            SourceUpdate::Upsert { container, .. }
                if container.container_id == web.id
                    && container.state == v1::ContainerState::Running as i32 =>
            {
                Some(container.clone())
            }
            _ => None,
        })
    });
    assert_eq!(
        rec.workload,
        Some(v1::WorkloadRef {
            kind: v1::WorkloadKind::ComposeService as i32,
            namespace: project.clone(),
            name: "web".to_string(),
            detail: String::new(),
        })
    );

    // Killed: the record says how it exited.
    run(Command::new("docker").args(["kill", &plain.id]));
    let dead = w.wait("the killed container exited", |u| {
        record_where(u, &plain.id, |c| {
            c.state == v1::ContainerState::Exited as i32
        })
    });
    assert_eq!(dead.exit_code, Some(137));
    assert!(!dead.oom_killed);
    assert!(dead.finished_unix_ns >= dead.started_unix_ns && dead.finished_unix_ns.is_some());

    // Removed: a Remove, not a record.
    run(Command::new("docker").args(["rm", "-f", &web.id]));
    w.wait("the compose container removed", |u| {
        u.iter()
            .any(|x| matches!(x, SourceUpdate::Remove { container_id, .. } if *container_id == web.id))
            .then_some(())
    });
    no_degradation(&w);
    w.stop();
}

#[test]
fn failing_healthcheck_goes_from_starting_to_unhealthy() {
    if !engine_ok() {
        return;
    }
    let image = Image::build("health");
    let w = Watcher::start(DockerConfig::default());
    w.wait("the first Full", |u| {
        matches!(u.first(), Some(SourceUpdate::Full { .. })).then_some(())
    });
    let sick = Container::run(
        None,
        &unique("sick"),
        &[
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            &image.0,
            "sleep",
            "3600",
        ],
    );
    w.wait("the container unhealthy", |u| {
        record_where(u, &sick.id, |c| {
            c.health == v1::HealthStatus::Unhealthy as i32
        })
    });
    let healths: Vec<i32> = records(&w.snapshot(), &sick.id)
        .iter()
        .map(|c| c.health)
        .collect();
    let starting = healths
        .iter()
        .position(|h| *h == v1::HealthStatus::Starting as i32)
        .unwrap_or_else(|| panic!("no record says starting: {healths:?}"));
    let unhealthy = healths
        .iter()
        .position(|h| *h == v1::HealthStatus::Unhealthy as i32)
        .unwrap();
    assert!(starting < unhealthy, "{healths:?}");
    assert!(
        !healths.contains(&(v1::HealthStatus::Healthy as i32)),
        "`false` never passes: {healths:?}"
    );
    no_degradation(&w);
    w.stop();
}

#[test]
fn oom_kill_is_an_event_and_in_the_record() {
    if !engine_ok() {
        return;
    }
    let image = Image::build("oom");
    let w = Watcher::start(DockerConfig::default());
    w.wait("the first Full", |u| {
        matches!(u.first(), Some(SourceUpdate::Full { .. })).then_some(())
    });
    // 64 MiB of 'a' held in a shell variable, in 16 MiB without swap.
    let hog = Container::run(
        None,
        &unique("hog"),
        &[
            "--memory",
            "16m",
            "--memory-swap",
            "16m",
            &image.0,
            "sh",
            "-c",
            "x=$(head -c 64m /dev/zero | tr '\\0' a); sleep 1",
        ],
    );
    let event = w.wait("the OOM event", |u| {
        u.iter().find_map(|x| match x {
            SourceUpdate::Event { event, .. } if event.container_id == hog.id => {
                Some(event.clone())
            }
            _ => None,
        })
    });
    assert_eq!(event.kind, v1::EventKind::Oom as i32);
    assert!(event.timestamp_unix_ns > 0);
    let rec = w.wait("the OOM-killed record", |u| {
        record_where(u, &hog.id, |c| c.state == v1::ContainerState::Exited as i32)
    });
    assert!(rec.oom_killed);
    assert_eq!(rec.exit_code, Some(137));
    assert_eq!(rec.state_reason, "OOMKilled");
    assert_eq!(rec.memory_limit_bytes, Some(16 << 20));
    // Docker stamps the event when the daemon handles it, which can be
    // after the exit it caused; it is never before the start.
    assert!(
        rec.started_unix_ns.unwrap() <= event.timestamp_unix_ns,
        "the OOM came after the start: {rec:?} {event:?}"
    );
    let ooms = w
        .snapshot()
        .iter()
        .filter(|x| matches!(x, SourceUpdate::Event { event, .. } if event.container_id == hog.id))
        .count();
    // The kernel may run the OOM killer more than once before the kill
    // lands (each failed charge notifies), and Docker reports every
    // notification: at least one, each for this container only.
    assert!(ooms >= 1, "the OOM kill is reported");
    no_degradation(&w);
    w.stop();
}

#[test]
fn restart_policy_restarts_raise_the_restart_count() {
    if !engine_ok() {
        return;
    }
    let image = Image::build("restarts");
    let w = Watcher::start(DockerConfig::default());
    w.wait("the first Full", |u| {
        matches!(u.first(), Some(SourceUpdate::Full { .. })).then_some(())
    });
    let flaky = Container::run(
        None,
        &unique("flaky"),
        &["--restart", "on-failure:2", &image.0, "sh", "-c", "exit 3"],
    );
    let last = w.wait("the container given up on", |u| {
        record_where(u, &flaky.id, |c| {
            c.state == v1::ContainerState::Exited as i32 && c.restart_count == 2
        })
    });
    assert_eq!(last.exit_code, Some(3));
    assert_eq!(last.state_reason, "");
    let counts: Vec<u32> = records(&w.snapshot(), &flaky.id)
        .iter()
        .map(|c| c.restart_count)
        .collect();
    assert!(
        counts.windows(2).all(|p| p[0] <= p[1]),
        "restart counts go up, never down: {counts:?}"
    );
    assert!(
        counts.first() < counts.last(),
        "records show the count rising: {counts:?}"
    );
    no_degradation(&w);
    w.stop();
}

/// A private Docker daemon: its own data root, exec root (with its own
/// containerd), socket and pid file, all in one temporary directory, and
/// its own network namespace (so `--bridge none` cannot delete the host's
/// `docker0`).
struct PrivateDockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateDockerd {
    fn new() -> PrivateDockerd {
        // Short path: a Unix socket path must fit in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("upid-dinv-")
            .tempdir_in("/tmp")
            .unwrap();
        // /etc/docker/daemon.json may set data-root too, which dockerd
        // refuses next to the flag: give it an empty config of its own.
        std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
        PrivateDockerd { dir, child: None }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn start(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        let child = Command::new("unshare")
            .args(["--net", "dockerd"])
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(self.host())
            .args([
                "--storage-driver",
                "vfs",
                "--bridge",
                "none",
                "--iptables=false",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            let up = docker(Some(&self.host()))
                .args(["version", "--format", "{{.Server.APIVersion}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if up {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("private dockerd exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "private dockerd did not answer within {WAIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits for it to exit (it stops its containers first).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill_leftovers();
    }

    /// Its containerd and shims, should dockerd have died without taking
    /// them down: found by the private directory in their command line.
    fn kill_leftovers(&self) {
        let marker = self.dir.path().to_string_lossy().into_owned();
        let me = std::process::id().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let pid = p.file_name().to_string_lossy().into_owned();
            if pid == me || !pid.bytes().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Containers first, so the daemon need not stop them.
            if let Ok(out) = docker(Some(&self.host())).args(["ps", "-aq"]).output() {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = docker(Some(&self.host()))
                        .args(["rm", "-f", id])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        self.stop();
    }
}

/// Index of the first update at or after `from` matching `pred`.
fn position_from(
    updates: &[SourceUpdate],
    from: usize,
    pred: impl Fn(&SourceUpdate) -> bool,
) -> Option<usize> {
    updates
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, u)| pred(u))
        .map(|(i, _)| i)
}

fn is_degraded(u: &SourceUpdate) -> bool {
    matches!(u, SourceUpdate::Degraded { .. })
}

fn is_recovered(u: &SourceUpdate) -> bool {
    matches!(u, SourceUpdate::Recovered { .. })
}

fn full_with(u: &SourceUpdate, id: &str) -> Option<v1::ContainerInfo> {
    match u {
        SourceUpdate::Full { containers, .. } => {
            containers.iter().find(|c| c.container_id == id).cloned()
        }
        _ => None,
    }
}

#[test]
fn private_daemon_missing_then_restarted_degrades_and_recovers() {
    if !engine_ok()
        || skip_unless(
            is_root() && have("dockerd") && have("unshare"),
            "needs root, dockerd and unshare to run a private Docker daemon",
        )
    {
        return;
    }
    let image = Image::build("private");
    let mut daemon = PrivateDockerd::new();
    let host = daemon.host();
    let w = Watcher::start(DockerConfig {
        host: Some(host.clone()),
        resync: Duration::from_secs(2),
    });

    // No daemon yet: one Degraded that names the socket.
    let reason = w.wait("Degraded for the missing socket", |u| {
        u.first().and_then(|x| match x {
            SourceUpdate::Degraded { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    });
    assert!(
        reason.contains(&format!(
            "no Docker socket at {}",
            daemon.socket().display()
        )),
        "{reason}"
    );

    // The daemon appears: the source, still retrying, recovers.
    let host_bridge = Path::new("/sys/class/net/docker0");
    let had_bridge = host_bridge.exists();
    daemon.start();
    assert_eq!(
        host_bridge.exists(),
        had_bridge,
        "the private daemon left the host's docker0 alone"
    );
    let recovered = w.wait("Recovered", |u| position_from(u, 0, is_recovered));
    let updates = w.snapshot();
    assert_eq!(
        updates[..recovered]
            .iter()
            .filter(|u| is_degraded(u))
            .count(),
        1,
        "retries are quiet: one Degraded before Recovered:\n{}",
        w.summary()
    );
    assert!(
        matches!(updates.get(recovered + 1), Some(SourceUpdate::Full { .. })),
        "a Full follows Recovered:\n{}",
        w.summary()
    );

    // A container on the private daemon.
    let mut save = Command::new("docker")
        .args(["save", &image.0])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut load = docker(Some(&host))
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::copy(save.stdout.as_mut().unwrap(), load.stdin.as_mut().unwrap()).unwrap();
    load.stdin.take().unwrap().flush().unwrap();
    assert!(save.wait().unwrap().success());
    assert!(
        load.wait().unwrap().success(),
        "docker load into the private daemon"
    );
    let before = Container::run(
        Some(&host),
        &unique("before"),
        &[
            "--network",
            "none",
            "--stop-timeout",
            "1",
            &image.0,
            "sleep",
            "3600",
        ],
    );
    w.wait("the first container running", |u| {
        record_where(u, &before.id, |c| {
            c.state == v1::ContainerState::Running as i32
        })
    });

    // Daemon stops: Degraded again (once), with a reason.
    let mark = w.snapshot().len();
    daemon.stop();
    let degraded = w.wait("Degraded after the daemon stopped", |u| {
        position_from(u, mark, is_degraded)
    });

    // Daemon back: Recovered, then a Full that shows what happened while
    // the source was away (the daemon stopped the container).
    daemon.start();
    let recovered = w.wait("Recovered after the restart", |u| {
        position_from(u, degraded, is_recovered)
    });
    let updates = w.snapshot();
    assert_eq!(
        updates[degraded..recovered]
            .iter()
            .filter(|u| is_degraded(u))
            .count(),
        1,
        "one Degraded per outage:\n{}",
        w.summary()
    );
    let stopped = full_with(&updates[recovered + 1], &before.id).unwrap_or_else(|| {
        panic!(
            "the Full after Recovered lists the first container:\n{}",
            w.summary()
        )
    });
    assert_eq!(stopped.state, v1::ContainerState::Exited as i32);
    assert!(stopped.exit_code.is_some());

    // A container started after the restart: in a later Full (resync).
    let after = Container::run(
        Some(&host),
        &unique("after"),
        &[
            "--network",
            "none",
            "--stop-timeout",
            "1",
            &image.0,
            "sleep",
            "3600",
        ],
    );
    let listed = w.wait("a Full with the container started after the restart", |u| {
        u.iter()
            .skip(recovered)
            .filter_map(|x| full_with(x, &after.id))
            .next()
    });
    assert_eq!(listed.state, v1::ContainerState::Running as i32);
    assert_eq!(listed.name, unique("after"));
    drop(after);
    drop(before);
    w.stop();
    drop(daemon);
}

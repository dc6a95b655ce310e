//! `upid::updates::docker_apply::apply` on the real Docker Engine: images
//! built here FROM scratch with busybox-static (no image can be pulled),
//! containers started with `docker run` as a user would, updates applied
//! through the library, and the result checked with `docker inspect`.
//!
//! - 1.0 → 1.1 (both healthy): the gate passes, the old container is gone,
//!   the new one runs under the same name with 1.1, and keeps what the user
//!   set (env, labels, bind mount, restart policy, network alias, port)
//!   while taking what the image sets (`APP_VERSION`, its label) from 1.1.
//! - 1.1 → 1.2 (healthcheck fails): the gate fails, the rollback restores
//!   the very same 1.1 container (same id, running, healthy), and the
//!   events say why.
//! - 1.0 → an image that exits 3: failed on the exit, rolled back.
//! - 1.0 → an image that does not exist and cannot be pulled: an error,
//!   and the container is untouched.
//!
//! Needs a Docker Engine and busybox-static (`apt-get install
//! busybox-static`); skips loudly without them. CI (`.ci/run`) has both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::Docker;
use upid::updates::docker_apply::{self, ApplyError, ApplyOptions, ROLLBACK_SUFFIX};
use upid::updates::event::UpdateEventKind;
use upid::updates::gate::{CheckKind, HealthStatus, Outcome, Verdict};

fn busybox() -> Option<&'static str> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn docker_reachable() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// True when the test can run; says loudly why not otherwise.
fn can_run(test: &str) -> bool {
    if !docker_reachable() {
        eprintln!("SKIPPED {test}: no reachable Docker Engine (`docker info` failed); CI runs it");
        return false;
    }
    if busybox().is_none() {
        eprintln!(
            "SKIPPED {test}: busybox-static missing (apt-get install busybox-static); CI installs it"
        );
        return false;
    }
    true
}

/// Runs a command; panics with its stderr when it fails; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// Everything one test made, removed when dropped (even after a panic).
struct Scratch {
    prefix: String,
    dir: PathBuf,
    images: Vec<String>,
    network: Option<String>,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let prefix = format!("upid-apply-{test}-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch {
            prefix,
            dir,
            images: Vec::new(),
            network: None,
        }
    }

    /// `<prefix>-<what>`.
    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// Builds `<prefix>:<version>`: busybox httpd serving `version` on
    /// 8080, `ENV APP_VERSION` and a label set to `version`, with a
    /// healthcheck every second that fetches the page (or `healthcheck`
    /// when given, `None` for the default), or `cmd` instead of httpd.
    fn image(&mut self, version: &str, healthcheck: Option<&str>, cmd: Option<&str>) -> String {
        let tag = format!("{}:{version}", self.prefix);
        let ctx = self.dir.join(format!("build-{version}"));
        std::fs::create_dir_all(ctx.join("www")).expect("build context");
        std::fs::copy(busybox().expect("busybox"), ctx.join("busybox")).expect("copy busybox");
        std::fs::write(ctx.join("www/index.html"), format!("{version}\n")).expect("page");
        let healthcheck = healthcheck.unwrap_or(
            r#"["/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]"#,
        );
        let cmd = cmd.unwrap_or(r#"["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]"#);
        std::fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM scratch\n\
                 COPY busybox /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
                 COPY www /www\n\
                 ENV APP_VERSION={version}\n\
                 LABEL org.example.version={version}\n\
                 EXPOSE 8080\n\
                 HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD {healthcheck}\n\
                 CMD {cmd}\n"
            ),
        )
        .expect("Dockerfile");
        self.images.push(tag.clone());
        docker(&["build", "-q", "-t", &tag, &ctx.to_string_lossy()]);
        tag
    }

    fn network(&mut self) -> String {
        let name = self.name("net");
        docker(&["network", "create", &name]);
        self.network = Some(name.clone());
        name
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let filter = format!("name={}", self.prefix);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        if let Some(net) = &self.network {
            let _ = Command::new("docker").args(["network", "rm", net]).output();
        }
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `docker inspect -f FORMAT target`, or `None` when it does not exist.
fn inspect(target: &str, format: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["inspect", "--type", "container", "-f", format, target])
        .output()
        .expect("docker inspect");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Polls until the container's health is `want` (60 s at most).
fn wait_health(container: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = inspect(container, "{{.State.Health.Status}}");
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{container} not {want} within 60 s (last: {got:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The page served on the container's published 8080 (via 127.0.0.1).
fn fetch_page(container: &str) -> String {
    use std::io::{Read, Write};
    let port = docker(&["port", container, "8080/tcp"]);
    let addr = port.lines().next().expect("a published port").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = std::net::TcpStream::connect(&addr).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        });
        match attempt {
            Ok(response) if response.starts_with("HTTP/1.") => {
                return response
                    .split("\r\n\r\n")
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
            }
            other => assert!(
                Instant::now() < deadline,
                "no page from {container} at {addr}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn connect() -> Docker {
    Docker::connect_with_local_defaults().expect("docker client")
}

/// Short windows: the test images check health every second.
fn fast_options() -> ApplyOptions {
    ApplyOptions {
        before_window: Duration::from_secs(2),
        health_timeout: Duration::from_secs(30),
        gate_window: Duration::from_secs(3),
        poll_interval: Duration::from_millis(250),
        stop_timeout: Some(Duration::from_secs(2)),
        ..ApplyOptions::default()
    }
}

/// Prints what a user would see (shown with `--nocapture`, and in CI logs
/// when an assertion fails).
fn show(events: &[upid::updates::event::UpdateEvent]) {
    for e in events {
        eprintln!("{} {:<22} {}", e.ts_unix_ms, e.kind.as_str(), e.message);
    }
}

fn kinds(events: &[upid::updates::event::UpdateEvent]) -> Vec<UpdateEventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_update_keeps_the_users_configuration_and_removes_the_old_container() {
    if !can_run("healthy_update") {
        return;
    }
    let mut scratch = Scratch::new("ok");
    let v10 = scratch.image("1.0", None, None);
    let v11 = scratch.image("1.1", None, None);
    let net = scratch.network();
    let alias = scratch.name("alias");
    let data = scratch.dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("hello"), "hello from the host\n").expect("data file");
    let web = scratch.name("web");
    let bind = format!("{}:/data:ro", data.display());
    let old_id = docker(&[
        "run",
        "-d",
        "--name",
        &web,
        "--network",
        &net,
        "--network-alias",
        &alias,
        "-e",
        "MODE=prod",
        "-l",
        "team=payments",
        "-v",
        &bind,
        "-p",
        "127.0.0.1::8080",
        "--restart",
        "on-failure:3",
        &v10,
    ]);
    wait_health(&web, "healthy");
    assert_eq!(fetch_page(&web), "1.0\n");

    let report = docker_apply::apply(&connect().await, &web, &v11, &fast_options())
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    show(&report.events);

    assert_eq!(report.gate.verdict, Verdict::Healthy, "{:#?}", report.gate);
    assert!(!report.rolled_back);
    assert_eq!(report.old_container_kept_as, None);
    assert_eq!(report.container, web);
    assert_eq!(
        (report.from_image.as_str(), report.to_image.as_str()),
        (v10.as_str(), v11.as_str())
    );
    assert_eq!(report.old_container_id, old_id);
    assert_eq!(report.gate.rollback_image, v10);
    assert_eq!(report.before.health_end, HealthStatus::Healthy);
    assert_eq!(report.after.health_end, HealthStatus::Healthy);
    assert!(
        report.after.memory_bytes_per_replica.is_some(),
        "{:?}",
        report.after
    );
    assert!(
        report.before.cpu_cores_per_replica.is_some(),
        "{:?}",
        report.before
    );

    // The old container is gone, nothing is left aside.
    assert_eq!(inspect(&old_id, "{{.Id}}"), None);
    assert_eq!(inspect(&format!("{web}{ROLLBACK_SUFFIX}"), "{{.Id}}"), None);
    // The new one runs under the original name with 1.1 and is healthy.
    let new_id = inspect(&web, "{{.Id}}").expect("new container");
    assert_eq!(new_id, report.new_container_id);
    assert_ne!(new_id, old_id);
    assert_eq!(
        inspect(&web, "{{.Config.Image}}").as_deref(),
        Some(v11.as_str())
    );
    assert_eq!(inspect(&web, "{{.State.Running}}").as_deref(), Some("true"));
    wait_health(&web, "healthy");
    assert_eq!(fetch_page(&web), "1.1\n");

    // What the user set is kept; what the image set comes from 1.1.
    let env = inspect(&web, "{{json .Config.Env}}").expect("env");
    assert!(env.contains("\"MODE=prod\""), "{env}");
    assert!(env.contains("\"APP_VERSION=1.1\""), "{env}");
    assert!(!env.contains("APP_VERSION=1.0"), "{env}");
    assert_eq!(
        inspect(&web, "{{index .Config.Labels \"team\"}}").as_deref(),
        Some("payments")
    );
    assert_eq!(
        inspect(&web, "{{index .Config.Labels \"org.example.version\"}}").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        inspect(&web, "{{json .HostConfig.Binds}}"),
        Some(format!("[\"{bind}\"]"))
    );
    assert_eq!(
        docker(&["exec", &web, "cat", "/data/hello"]),
        "hello from the host"
    );
    assert_eq!(
        inspect(
            &web,
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        )
        .as_deref(),
        Some("on-failure:3")
    );
    let aliases = inspect(
        &web,
        &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}"),
    )
    .expect("aliases");
    assert!(aliases.contains(&format!("\"{alias}\"")), "{aliases}");
    assert_eq!(
        inspect(&web, "{{json .HostConfig.PortBindings}}").as_deref(),
        Some(r#"{"8080/tcp":[{"HostIp":"127.0.0.1","HostPort":""}]}"#)
    );
    // The alias resolves on the network, from another container.
    let probe = scratch.name("probe");
    let page = docker(&[
        "run",
        "--rm",
        "--name",
        &probe,
        "--network",
        &net,
        &v11,
        "/bin/busybox",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{alias}:8080/"),
    ]);
    assert_eq!(page, "1.1");

    assert_eq!(
        kinds(&report.events),
        vec![
            UpdateEventKind::ApplyStarted,
            UpdateEventKind::BeforeRecorded,
            UpdateEventKind::OldContainerRenamed,
            UpdateEventKind::OldContainerStopped,
            UpdateEventKind::ContainerRecreated,
            UpdateEventKind::ContainerStarted,
            UpdateEventKind::GatePassed,
            UpdateEventKind::OldContainerRemoved,
        ]
    );
    assert!(
        report
            .events
            .iter()
            .all(|e| e.container == web && e.to_image == v11)
    );
    assert!(
        report
            .events
            .windows(2)
            .all(|w| w[0].ts_unix_ms <= w[1].ts_unix_ms)
    );
    let recreated = &report.events[4].message;
    assert!(recreated.contains("env kept: MODE"), "{recreated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_healthcheck_rolls_back_to_the_same_old_container() {
    if !can_run("failing_healthcheck") {
        return;
    }
    let mut scratch = Scratch::new("rb");
    let v11 = scratch.image("1.1", None, None);
    let v12 = scratch.image("1.2", Some(r#"["/bin/busybox", "false"]"#), None);
    let web = scratch.name("web");
    let old_id = docker(&[
        "run",
        "-d",
        "--name",
        &web,
        "-e",
        "MODE=prod",
        "-p",
        "127.0.0.1::8080",
        &v11,
    ]);
    wait_health(&web, "healthy");

    let report = docker_apply::apply(&connect().await, &web, &v12, &fast_options())
        .await
        .unwrap_or_else(|e| panic!("apply failed instead of rolling back: {e}"));
    show(&report.events);

    assert_eq!(report.gate.verdict, Verdict::Failed, "{:#?}", report.gate);
    assert!(report.rolled_back, "{:#?}", report.events);
    assert_eq!(report.gate.rollback_image, v11);
    let health = report
        .gate
        .checks
        .iter()
        .find(|c| c.check == CheckKind::Health)
        .expect("health check");
    assert_eq!(health.outcome, Outcome::Failed);
    assert_eq!(
        (health.before.as_str(), health.after.as_str()),
        ("healthy", "unhealthy")
    );

    // The very same 1.1 container runs again, healthy, under its name.
    assert_eq!(inspect(&web, "{{.Id}}").as_deref(), Some(old_id.as_str()));
    assert_eq!(
        inspect(&web, "{{.Config.Image}}").as_deref(),
        Some(v11.as_str())
    );
    assert_eq!(inspect(&web, "{{.State.Running}}").as_deref(), Some("true"));
    wait_health(&web, "healthy");
    assert_eq!(fetch_page(&web), "1.1\n");
    // The 1.2 container is gone, nothing is left aside.
    assert_eq!(inspect(&report.new_container_id, "{{.Id}}"), None);
    assert_eq!(inspect(&format!("{web}{ROLLBACK_SUFFIX}"), "{{.Id}}"), None);

    // The events say why.
    let ks = kinds(&report.events);
    let failed = ks
        .iter()
        .position(|k| *k == UpdateEventKind::GateFailed)
        .expect("gate_failed");
    let started = ks
        .iter()
        .position(|k| *k == UpdateEventKind::RollbackStarted)
        .expect("rollback_started");
    let done = ks
        .iter()
        .position(|k| *k == UpdateEventKind::RolledBack)
        .expect("rolled_back");
    assert!(failed < started && started < done, "{ks:?}");
    assert!(!ks.contains(&UpdateEventKind::RollbackFailed), "{ks:?}");
    let why = &report.events[failed].message;
    assert!(why.contains("health:"), "{why}");
    assert!(why.contains("unhealthy"), "{why}");
    assert!(why.contains("last healthcheck exited with 1"), "{why}");
    assert!(why.ends_with("rolling back"), "{why}");
    let back = &report.events[done].message;
    assert!(
        back.contains(&old_id[..12]) && back.contains("healthy"),
        "{back}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_exits_is_rolled_back_on_its_exit_code() {
    if !can_run("exiting_image") {
        return;
    }
    let mut scratch = Scratch::new("exit");
    let v10 = scratch.image("1.0", None, None);
    let v13 = scratch.image(
        "1.3",
        None,
        Some(r#"["/bin/busybox", "sh", "-c", "exit 3"]"#),
    );
    let web = scratch.name("web");
    let old_id = docker(&["run", "-d", "--name", &web, &v10]);
    wait_health(&web, "healthy");

    let report = docker_apply::apply(&connect().await, &web, &v13, &fast_options())
        .await
        .unwrap_or_else(|e| panic!("apply failed instead of rolling back: {e}"));
    show(&report.events);

    assert_eq!(report.gate.verdict, Verdict::Failed);
    assert!(report.rolled_back);
    assert_eq!(report.after.nonzero_exit_codes, vec![3]);
    assert_eq!(report.after.replicas_ready, 0);
    let exits = report
        .gate
        .checks
        .iter()
        .find(|c| c.check == CheckKind::NonzeroExits)
        .expect("exit check");
    assert_eq!(exits.outcome, Outcome::Failed);
    assert!(exits.reason.contains("exit codes 3"), "{}", exits.reason);
    assert_eq!(inspect(&web, "{{.Id}}").as_deref(), Some(old_id.as_str()));
    assert_eq!(inspect(&web, "{{.State.Running}}").as_deref(), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_an_error_and_the_container_is_untouched() {
    if !can_run("missing_image") {
        return;
    }
    let mut scratch = Scratch::new("miss");
    let v10 = scratch.image("1.0", None, None);
    let web = scratch.name("web");
    let old_id = docker(&["run", "-d", "--name", &web, &v10]);
    wait_health(&web, "healthy");
    let started_at = inspect(&web, "{{.State.StartedAt}}");
    // Nothing listens on loopback port 9: the pull fails at once, offline.
    let missing = format!("127.0.0.1:9/{}:2.0", scratch.prefix);

    let err = match docker_apply::apply(&connect().await, &web, &missing, &fast_options()).await {
        Ok(report) => panic!("applied a missing image: {report:#?}"),
        Err(e) => e,
    };
    eprintln!("{err}");
    assert!(
        matches!(err, ApplyError::ImageUnavailable { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&missing), "{message}");
    assert!(message.contains("pulling it failed"), "{message}");
    assert!(message.contains("was not changed"), "{message}");
    assert_eq!(kinds(err.events()), vec![UpdateEventKind::ApplyStarted]);

    assert_eq!(inspect(&web, "{{.Id}}").as_deref(), Some(old_id.as_str()));
    assert_eq!(inspect(&web, "{{.State.Running}}").as_deref(), Some("true"));
    assert_eq!(inspect(&web, "{{.State.StartedAt}}"), started_at);
    assert_eq!(
        inspect(&web, "{{.Config.Image}}").as_deref(),
        Some(v10.as_str())
    );
    assert_eq!(inspect(&format!("{web}{ROLLBACK_SUFFIX}"), "{{.Id}}"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_container_is_an_error() {
    if !can_run("missing_container") {
        return;
    }
    let scratch = Scratch::new("none");
    let name = scratch.name("nobody");
    match docker_apply::apply(&connect().await, &name, "whatever:1", &fast_options()).await {
        Err(ApplyError::ContainerNotFound { container }) => assert_eq!(container, name),
        other => panic!("expected ContainerNotFound, got {other:?}"),
    }
}

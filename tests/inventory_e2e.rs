//! Inventory end to end on the real Docker Engine: a real `upid-collector
//! serve`, a real `upid-agent run` asking this machine's Docker Engine, and
//! real containers doing what containers do (labels, a healthcheck that
//! fails, an OOM kill, restarts under a restart policy, a compose service
//! recreated with a new image). What the collector stores is read back
//! through the query API and `upid`, event by event.
//!
//! Images are built here from scratch (static busybox): no image can be
//! pulled. Skips loudly where no Docker Engine answers.

use std::process::Command;
use std::time::Duration;

use upid::wire::v1::{
    self, EventKind, ListContainersRequest, ListEventsRequest, ListWorkloadsRequest,
};
use upid_e2e::harness::grpc::{self, connect, query_client};
use upid_e2e::harness::{agent, serve};
use upid_e2e::{bin, build_busybox_image_with, docker_available, run, skip_unless, wait_for};

/// Deadline of each wait: generous, as CI runs this beside 300 other tests.
const WAIT: Duration = Duration::from_secs(150);

/// Containers named `<prefix>...`, removed when dropped.
struct Containers(String);

impl Drop for Containers {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name={}", self.0)])
            .output();
        if let Ok(out) = out {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args)).trim().to_string()
}

fn kind(e: &v1::Event) -> EventKind {
    e.event
        .as_ref()
        .and_then(|e| EventKind::try_from(e.kind).ok())
        .unwrap_or(EventKind::Unspecified)
}

#[test]
fn docker_inventory_and_lifecycle_events_reach_the_store_and_upid() {
    if skip_unless(docker_available(), "no Docker Engine answers `docker info`") {
        return;
    }
    let prefix = format!("upid-inv-{}-", std::process::id());
    let _cleanup = Containers(prefix.clone());
    let image_a = format!("upid-e2e/busybox:inv-a-{}", std::process::id());
    let image_b = format!("upid-e2e/busybox:inv-b-{}", std::process::id());
    build_busybox_image_with(&image_a, "LABEL upid.test=a");
    build_busybox_image_with(&image_b, "LABEL upid.test=b");
    let image_a_id = docker(&["image", "inspect", "-f", "{{.Id}}", &image_a]);

    let dir = tempfile::tempdir().expect("tempdir");
    let collector = serve(&dir.path().join("upid.duckdb")).start();
    let url = collector.url();
    let spool = dir.path().join("spool");
    let agent_cmd = agent("inv-node", &url, &spool);
    let agent_proc = agent_cmd.start();

    let name = |n: &str| format!("{prefix}{n}");
    let labeled = docker(&[
        "run",
        "-d",
        "--name",
        &name("labeled"),
        "--label",
        "team=payments",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        &image_a,
        "sleep",
        "3600",
    ]);

    let rt = grpc::runtime();
    let mut client =
        rt.block_on(async { query_client(connect(&url, None).await.expect("connect"), None) });

    // The labeled container: who it is, as Docker says. Waiting for it
    // before starting the others also means the agent's Docker session is
    // live, so the short-lived containers' events come after the point its
    // event stream starts from (on a loaded machine the agent can take
    // seconds to start, and an OOM kill before that is no event of its).
    let info = wait_for(WAIT, "the labeled container's inventory", || {
        let list = rt
            .block_on(client.list_containers(ListContainersRequest::default()))
            .ok()?
            .into_inner();
        list.containers
            .into_iter()
            .filter_map(|c| c.info)
            .find(|i| i.container_id == labeled)
    });
    docker(&[
        "run",
        "-d",
        "--name",
        &name("unhealthy"),
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        &image_a,
        "sleep",
        "3600",
    ]);
    // dd's 64 MiB buffer cannot fit in 16 MiB: the kernel kills it.
    let oom = docker(&[
        "run",
        "-d",
        "--name",
        &name("oom"),
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        &image_a,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    let flaky = docker(&[
        "run",
        "-d",
        "--name",
        &name("flaky"),
        "--restart",
        "on-failure:2",
        &image_a,
        "sh",
        "-c",
        "sleep 1; exit 3",
    ]);
    let project = format!("{prefix}shop");
    let compose_labels = [
        "--label".to_string(),
        format!("com.docker.compose.project={project}"),
        "--label".to_string(),
        "com.docker.compose.service=web".to_string(),
    ];
    let mut web_args = vec!["run", "-d", "--name"];
    let web_name = name("shop-web-1");
    web_args.push(&web_name);
    web_args.extend(compose_labels.iter().map(String::as_str));
    let mut web_a = web_args.clone();
    web_a.extend([image_a.as_str(), "sleep", "3600"]);
    docker(&web_a);

    assert_eq!(info.name, name("labeled"));
    assert_eq!(
        info.labels.get("team").map(String::as_str),
        Some("payments")
    );
    let image = info.image.clone().unwrap_or_default();
    assert_eq!(image.reference, image_a);
    assert_eq!(image.image_id, image_a_id);
    assert_eq!(image.tag, format!("inv-a-{}", std::process::id()));
    assert_eq!(info.state, v1::ContainerState::Running as i32);
    assert_eq!(info.cpu_limit_millicores, Some(500));
    assert_eq!(info.memory_limit_bytes, Some(64 << 20));
    let workload = info.workload.clone().unwrap_or_default();
    assert_eq!(
        (workload.kind, workload.name.as_str()),
        (v1::WorkloadKind::Container as i32, name("labeled").as_str())
    );

    let events = |client: &mut grpc::QueryClient, container: &str| -> Vec<v1::Event> {
        rt.block_on(client.list_events(ListEventsRequest {
            container: container.to_string(),
            ..Default::default()
        }))
        .map(|r| r.into_inner().events)
        .unwrap_or_default()
    };

    // The OOM kill: an oom event and a die with exit 137, OOMKilled.
    let oom_events = wait_for(WAIT, "the OOM kill's events", || {
        let ev = events(&mut client, &oom);
        (ev.iter().any(|e| kind(e) == EventKind::Oom)
            && ev.iter().any(|e| kind(e) == EventKind::Die))
        .then_some(ev)
    });
    let die = oom_events
        .iter()
        .find(|e| kind(e) == EventKind::Die)
        .and_then(|e| e.event.clone())
        .unwrap_or_default();
    assert_eq!(die.exit_code, Some(137), "{die:?}");
    assert!(die.detail.contains("OOMKilled"), "{die:?}");

    // The restart policy: two restarts, three exits with code 3.
    wait_for(
        WAIT,
        "two restarts and three exits of the flaky container",
        || {
            let ev = events(&mut client, &flaky);
            let restarts = ev.iter().filter(|e| kind(e) == EventKind::Restart).count();
            let dies: Vec<_> = ev
                .iter()
                .filter(|e| kind(e) == EventKind::Die)
                .filter_map(|e| e.event.as_ref()?.exit_code)
                .collect();
            (restarts >= 2 && dies.len() >= 3)
                .then(|| assert!(dies.iter().all(|c| *c == 3), "{dies:?}"))
        },
    );

    // The healthcheck: starting, then unhealthy.
    wait_for(WAIT, "the health change to unhealthy", || {
        events(&mut client, &name("unhealthy"))
            .into_iter()
            .find(|e| {
                kind(e) == EventKind::HealthChange
                    && e.event.as_ref().is_some_and(|e| e.to == "unhealthy")
            })
    });

    // The compose service is recreated with another image: an image change
    // of the workload, and the old container destroyed.
    docker(&["rm", "-f", &web_name]);
    let mut web_b = web_args.clone();
    web_b.extend([image_b.as_str(), "sleep", "3600"]);
    docker(&web_b);
    let change = wait_for(WAIT, "the compose service's image change", || {
        rt.block_on(client.list_events(ListEventsRequest {
            namespace: project.clone(),
            kinds: vec![EventKind::ImageChange as i32],
            ..Default::default()
        }))
        .ok()?
        .into_inner()
        .events
        .into_iter()
        .next()
    });
    let change_event = change.event.clone().unwrap_or_default();
    assert_eq!(
        (change_event.from.as_str(), change_event.to.as_str()),
        (image_a.as_str(), image_b.as_str())
    );
    let change_workload = change.workload.clone().unwrap_or_default();
    assert_eq!(
        (
            change_workload.kind,
            change_workload.namespace.as_str(),
            change_workload.name.as_str()
        ),
        (
            v1::WorkloadKind::ComposeService as i32,
            project.as_str(),
            "web"
        )
    );
    let shop = wait_for(WAIT, "the compose workload running image b", || {
        rt.block_on(client.list_workloads(ListWorkloadsRequest {
            namespace: project.clone(),
        }))
        .ok()?
        .into_inner()
        .workloads
        .into_iter()
        .find(|w| w.name == "web" && w.images == vec![image_b.clone()])
    });
    assert_eq!(shop.kind, "ComposeService");

    // An agent restart sends the inventory again; events carrying the
    // runtime's timestamps are still stored once.
    let starts_before = events(&mut client, &labeled)
        .iter()
        .filter(|e| kind(e) == EventKind::Start)
        .count();
    assert_eq!(starts_before, 1);
    drop(agent_proc);
    let agent_again = agent_cmd.start();
    collector.wait_for_metrics("the restarted agent to store batches", WAIT, |m| {
        m.value("upid_collector_agents_connected", &[]) == 1.0
    });
    docker(&[
        "run",
        "-d",
        "--name",
        &name("after-restart"),
        &image_a,
        "sleep",
        "3600",
    ]);
    wait_for(WAIT, "a container started after the agent restart", || {
        let ev = rt
            .block_on(client.list_events(ListEventsRequest {
                container: name("after-restart"),
                ..Default::default()
            }))
            .ok()?
            .into_inner()
            .events;
        (!ev.is_empty()).then_some(())
    });
    let starts_after = events(&mut client, &labeled)
        .iter()
        .filter(|e| kind(e) == EventKind::Start)
        .count();
    assert_eq!(
        starts_after, 1,
        "the START derived again after the agent restart is stored once"
    );

    // What `upid` shows.
    let upid = |args: &[&str]| {
        let out = Command::new(bin("upid"))
            .args(["--server", &url])
            .args(args)
            .output()
            .expect("running upid");
        assert!(
            out.status.success(),
            "upid {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let containers = upid(&["get", "containers"]);
    assert!(containers.contains(&name("labeled")), "{containers}");
    let oom_table = upid(&["events", "--container", &oom]);
    assert!(oom_table.to_lowercase().contains("oom"), "{oom_table}");
    let described = upid(&["describe", "container", &labeled]);
    assert!(
        described.contains("payments"),
        "labels are shown: {described}"
    );
    drop(agent_again);
}

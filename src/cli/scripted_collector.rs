//! Tests of the commands over a real gRPC connection to a scripted
//! `QueryService`: a fake, named as such, that answers with the render
//! fixtures and records every request. It checks what the CLI sends
//! (namespace, event filters, the container of `describe`) and what it
//! prints; the real collector is tested against the real binary in
//! `tests/` (crate upid-e2e), which needs DuckDB.

use std::sync::{Arc, Mutex};

use clap::Parser as _;
use tonic::{Request, Response, Status};

use crate::cli::render::fixtures::{self, DOCKER_ID};
use crate::cli::{Cli, Output, run};
use crate::wire::v1::{self, query_service_server};

/// What the scripted collector was asked.
#[derive(Debug, Default)]
struct Asked {
    list_containers: Vec<v1::ListContainersRequest>,
    list_workloads: Vec<v1::ListWorkloadsRequest>,
    list_events: Vec<v1::ListEventsRequest>,
    rightsize: Vec<v1::RightsizeRequest>,
    list_idle: Vec<v1::IdleRequest>,
    get_cost: Vec<v1::CostRequest>,
}

/// Answers with fixtures; `ListEvents`, and the analysis calls
/// (`Rightsize`, `ListIdle`, `GetCost`), can be made unimplemented (an
/// older collector).
#[derive(Clone)]
struct Scripted {
    asked: Arc<Mutex<Asked>>,
    events_implemented: bool,
    analysis_implemented: bool,
}

impl Scripted {
    fn record(&self, f: impl FnOnce(&mut Asked)) {
        if let Ok(mut a) = self.asked.lock() {
            f(&mut a);
        }
    }
}

#[tonic::async_trait]
impl query_service_server::QueryService for Scripted {
    async fn get_server_info(
        &self,
        _: Request<v1::GetServerInfoRequest>,
    ) -> Result<Response<v1::ServerInfo>, Status> {
        Ok(Response::new(v1::ServerInfo {
            agents_connected: 1,
            ..Default::default()
        }))
    }

    async fn list_nodes(
        &self,
        _: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        Ok(Response::new(v1::ListNodesResponse {
            nodes: fixtures::nodes(),
        }))
    }

    async fn list_containers(
        &self,
        r: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        let r = r.into_inner();
        let mut containers = vec![fixtures::docker(), fixtures::pod(), fixtures::service()];
        if r.include_gone {
            containers.push(fixtures::gone());
        }
        self.record(|a| a.list_containers.push(r));
        // Ignores the namespace, as a collector older than it would.
        Ok(Response::new(v1::ListContainersResponse { containers }))
    }

    async fn list_workloads(
        &self,
        r: Request<v1::ListWorkloadsRequest>,
    ) -> Result<Response<v1::ListWorkloadsResponse>, Status> {
        self.record(|a| a.list_workloads.push(r.into_inner()));
        Ok(Response::new(v1::ListWorkloadsResponse {
            workloads: fixtures::workloads(),
        }))
    }

    async fn get_container(
        &self,
        r: Request<v1::GetContainerRequest>,
    ) -> Result<Response<v1::ContainerDetail>, Status> {
        if DOCKER_ID.starts_with(&r.into_inner().id) {
            Ok(Response::new(fixtures::detail()))
        } else {
            Err(Status::not_found("no such container"))
        }
    }

    async fn get_container_series(
        &self,
        _: Request<v1::GetContainerSeriesRequest>,
    ) -> Result<Response<v1::GetContainerSeriesResponse>, Status> {
        Ok(Response::new(fixtures::series()))
    }

    async fn top(&self, _: Request<v1::TopRequest>) -> Result<Response<v1::TopResponse>, Status> {
        Ok(Response::new(v1::TopResponse {
            containers: vec![fixtures::docker()],
        }))
    }

    async fn list_events(
        &self,
        r: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        if !self.events_implemented {
            return Err(Status::unimplemented("unknown method ListEvents"));
        }
        let r = r.into_inner();
        let mut events = fixtures::events();
        if !r.container.is_empty() {
            // By id prefix or by name, as the proto says.
            events.retain(|e| {
                e.container_name == r.container
                    || e.event
                        .as_ref()
                        .is_some_and(|e| e.container_id.starts_with(&r.container))
            });
        }
        if r.limit > 0 {
            events.truncate(r.limit as usize);
        }
        self.record(|a| a.list_events.push(r));
        Ok(Response::new(v1::ListEventsResponse { events }))
    }

    async fn rightsize(
        &self,
        r: Request<v1::RightsizeRequest>,
    ) -> Result<Response<v1::RightsizeResponse>, Status> {
        if !self.analysis_implemented {
            return Err(Status::unimplemented("unknown method Rightsize"));
        }
        let r = r.into_inner();
        let answer = if r.group_by == v1::RightsizeGrouping::Container as i32 {
            fixtures::rightsize_by_container()
        } else {
            fixtures::rightsize()
        };
        self.record(|a| a.rightsize.push(r));
        Ok(Response::new(answer))
    }

    async fn list_idle(
        &self,
        r: Request<v1::IdleRequest>,
    ) -> Result<Response<v1::IdleResponse>, Status> {
        if !self.analysis_implemented {
            return Err(Status::unimplemented("unknown method ListIdle"));
        }
        let r = r.into_inner();
        let mut answer = fixtures::idle();
        if !r.include_active {
            answer.workloads.retain(|w| w.idle);
        }
        self.record(|a| a.list_idle.push(r));
        Ok(Response::new(answer))
    }

    async fn get_cost(
        &self,
        r: Request<v1::CostRequest>,
    ) -> Result<Response<v1::CostResponse>, Status> {
        if !self.analysis_implemented {
            return Err(Status::unimplemented("unknown method GetCost"));
        }
        self.record(|a| a.get_cost.push(r.into_inner()));
        Ok(Response::new(fixtures::cost()))
    }
}

/// A scripted collector on a free loopback port; its URL and what it was
/// asked.
async fn start(events_implemented: bool) -> (String, Arc<Mutex<Asked>>) {
    start_with(events_implemented, true).await
}

/// [`start`], choosing which calls the collector implements.
async fn start_with(
    events_implemented: bool,
    analysis_implemented: bool,
) -> (String, Arc<Mutex<Asked>>) {
    let asked = Arc::new(Mutex::new(Asked::default()));
    let service = Scripted {
        asked: asked.clone(),
        events_implemented,
        analysis_implemented,
    };
    let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
        .expect("bind 127.0.0.1:0");
    let addr = incoming.local_addr().expect("local address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(query_service_server::QueryServiceServer::new(service))
            .serve_with_incoming(incoming),
    );
    (format!("http://{addr}"), asked)
}

async fn upid(server: &str, args: &[&str]) -> Output {
    let head = ["upid", "--server", server];
    let cli = Cli::try_parse_from(head.iter().chain(args)).expect("parses");
    run(cli, None).await.expect("runs")
}

#[tokio::test]
async fn get_containers_sends_the_namespace_and_keeps_only_it() {
    let (server, asked) = start(true).await;
    let out = upid(&server, &["get", "containers", "-n", "shop", "--all"]).await;
    let names: Vec<&str> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names, ["checkout", "shop-web-1"], "{}", out.stdout);
    let out = upid(&server, &["get", "containers", "--all", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let gone = v
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "batch-once"))
        .expect("the gone container with --all");
    assert_eq!(gone["state"], "gone");
    let out = upid(&server, &["get", "containers", "-n", "nowhere"]).await;
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "No containers found in namespace nowhere (agents connected: 1): add --all to include containers that are gone\n"
    );
    let asked = asked.lock().expect("lock");
    let sent: Vec<(&str, bool)> = asked
        .list_containers
        .iter()
        .map(|r| (r.namespace.as_str(), r.include_gone))
        .collect();
    assert_eq!(sent, [("shop", true), ("", true), ("nowhere", false)]);
}

#[tokio::test]
async fn get_workloads_sends_the_namespace() {
    let (server, asked) = start(true).await;
    let out = upid(&server, &["get", "workloads", "-n", "shop"]).await;
    assert!(out.stdout.starts_with("NAMESPACE   KIND"), "{}", out.stdout);
    let out = upid(&server, &["get", "workloads", "-A"]).await;
    assert!(out.stdout.contains("deployment"), "{}", out.stdout);
    let asked = asked.lock().expect("lock");
    let sent: Vec<&str> = asked
        .list_workloads
        .iter()
        .map(|r| r.namespace.as_str())
        .collect();
    assert_eq!(sent, ["shop", ""]);
}

#[tokio::test]
async fn events_send_every_filter_and_print_newest_first() {
    let (server, asked) = start(true).await;
    let out = upid(
        &server,
        &[
            "events",
            "--since",
            "2023-11-14T00:00:00Z",
            "--until",
            "2023-11-15T00:00:00+01:00",
            "-n",
            "shop",
            "--workload",
            "deployment/checkout",
            "--node",
            "node-b",
            "--type",
            "die,oom",
            "--limit",
            "2",
        ],
    )
    .await;
    let types: Vec<&str> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(types, ["die", "oom"], "{}", out.stdout);
    assert!(
        out.stderr
            .starts_with("Showing the newest 2 events: raise --limit"),
        "{}",
        out.stderr
    );
    let out = upid(
        &server,
        &["events", "--container", "shop-web-1", "-o", "yaml"],
    )
    .await;
    assert!(out.stdout.contains("type: health-change"), "{}", out.stdout);
    let asked = asked.lock().expect("lock");
    let first = &asked.list_events[0];
    assert_eq!(first.since_unix_ns, 1_699_920_000_000_000_000);
    assert_eq!(first.until_unix_ns, 1_700_002_800_000_000_000);
    assert_eq!(first.namespace, "shop");
    assert_eq!(first.workload, "deployment/checkout");
    assert_eq!(first.node_name, "node-b");
    assert_eq!(
        first.kinds,
        [v1::EventKind::Die as i32, v1::EventKind::Oom as i32]
    );
    assert_eq!(first.limit, 2);
    let second = &asked.list_events[1];
    assert_eq!(second.container, "shop-web-1");
    assert_eq!(second.limit, crate::cli::args::DEFAULT_EVENT_LIMIT);
    assert!(second.kinds.is_empty() && second.since_unix_ns == 0);
}

#[tokio::test]
async fn describe_asks_for_the_containers_own_events() {
    let (server, asked) = start(true).await;
    let out = upid(&server, &["describe", "container", "4f2a9c1e"]).await;
    assert!(
        out.stdout.contains("Name:           shop-web-1\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Events (newest first, up to 20):\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("healthy → unhealthy"), "{}", out.stdout);
    let asked = asked.lock().expect("lock");
    assert_eq!(asked.list_events.len(), 1);
    assert_eq!(asked.list_events[0].container, DOCKER_ID, "the full id");
    assert_eq!(asked.list_events[0].limit, 20);
}

#[tokio::test]
async fn describe_still_works_against_a_collector_without_events() {
    let (server, _) = start(false).await;
    let out = upid(&server, &["describe", "container", "4f2a9c1e"]).await;
    assert!(out.success);
    assert!(out.stdout.contains("Limits:"), "{}", out.stdout);
    let events = out.stdout.split("\nEvents:\n  unavailable: ").nth(1);
    assert!(
        events.is_some_and(|e| e.contains("does not implement ListEvents")),
        "{}",
        out.stdout
    );
}

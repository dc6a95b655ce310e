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
    list_rollouts: Vec<v1::ListRolloutsRequest>,
    export: Vec<v1::ExportRequest>,
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
    type ExportStream = futures_util::stream::BoxStream<'static, Result<v1::ExportChunk, Status>>;

    /// A scripted export, chosen by the first table asked for: `samples`
    /// streams two good files; `idle` one whose SHA-256 does not match its
    /// bytes; `cost` a path outside the output directory; `containers` a
    /// good file, then an error status mid-stream.
    async fn export(
        &self,
        r: Request<v1::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        use futures_util::StreamExt as _;
        use v1::export_chunk::Kind;
        let r = r.into_inner();
        let first = r.tables.first().cloned().unwrap_or_default();
        self.record(|a| a.export.push(r.clone()));
        let chunk = |kind| Ok(v1::ExportChunk { kind: Some(kind) });
        let file = |path: &str, body: &[u8], sha_of: &[u8]| {
            let sha256: String = ring::digest::digest(&ring::digest::SHA256, sha_of)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            v1::ExportFile {
                path: path.into(),
                table: path.split('/').next().unwrap_or_default().into(),
                date: "2023-11-14".into(),
                rows: 3,
                size_bytes: body.len() as u64,
                sha256,
            }
        };
        let one: &[u8] = b"PAR1 scripted samples, not really Parquet PAR1";
        let two: &[u8] = b"PAR1 scripted cost PAR1";
        let mut chunks = vec![chunk(Kind::Progress(v1::ExportProgress {
            days_done: 1,
            days_total: 1,
        }))];
        let start = |files| {
            chunk(Kind::Start(v1::ExportStart {
                files,
                total_bytes: (one.len() + two.len()) as u64,
                since_unix_ns: r.since_unix_ns,
                until_unix_ns: if r.until_unix_ns == 0 {
                    fixtures::NOW_NS
                } else {
                    r.until_unix_ns
                },
                notes: vec!["no updates table: scripted".into()],
            }))
        };
        let samples = "samples/date=2023-11-14/part-0.parquet";
        match first.as_str() {
            "idle" => {
                chunks.push(start(1));
                chunks.push(chunk(Kind::File(file(samples, one, two))));
                chunks.push(chunk(Kind::Data(one.to_vec())));
            }
            "cost" => {
                chunks.push(start(1));
                chunks.push(chunk(Kind::File(file("../escape.parquet", one, one))));
                chunks.push(chunk(Kind::Data(one.to_vec())));
            }
            "containers" => {
                chunks.push(start(2));
                chunks.push(chunk(Kind::File(file(samples, one, one))));
                chunks.push(chunk(Kind::Data(one.to_vec())));
                chunks.push(Err(Status::internal("scripted failure mid-stream")));
            }
            _ => {
                chunks.push(start(2));
                chunks.push(chunk(Kind::File(file(samples, one, one))));
                let (a, b) = one.split_at(10);
                chunks.push(chunk(Kind::Data(a.to_vec())));
                chunks.push(chunk(Kind::Data(b.to_vec())));
                let cost = "cost/date=2023-11-14/part-0.parquet";
                chunks.push(chunk(Kind::File(file(cost, two, two))));
                chunks.push(chunk(Kind::Data(two.to_vec())));
            }
        }
        Ok(Response::new(futures_util::stream::iter(chunks).boxed()))
    }

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

    async fn list_updates(
        &self,
        _: Request<v1::ListUpdatesRequest>,
    ) -> Result<Response<v1::ListUpdatesResponse>, Status> {
        Err(Status::unimplemented("unknown method ListUpdates"))
    }

    async fn record_update_events(
        &self,
        _: Request<v1::RecordUpdateEventsRequest>,
    ) -> Result<Response<v1::RecordUpdateEventsResponse>, Status> {
        Err(Status::unimplemented("unknown method RecordUpdateEvents"))
    }

    async fn list_update_events(
        &self,
        _: Request<v1::ListUpdateEventsRequest>,
    ) -> Result<Response<v1::ListUpdateEventsResponse>, Status> {
        Err(Status::unimplemented("unknown method ListUpdateEvents"))
    }

    async fn list_rollouts(
        &self,
        r: Request<v1::ListRolloutsRequest>,
    ) -> Result<Response<v1::ListRolloutsResponse>, Status> {
        let r = r.into_inner();
        let answer = if r.namespace == "nowhere" {
            v1::ListRolloutsResponse {
                at_unix_ns: fixtures::NOW_NS,
                window_s: 1800,
                since_unix_ns: r.since_unix_ns.unwrap_or(0),
                ..Default::default()
            }
        } else {
            scripted_rollouts()
        };
        self.record(|a| a.list_rollouts.push(r));
        Ok(Response::new(answer))
    }
}

/// A rollout of `web` 10 minutes before the fixtures' now whose new
/// container was OOM-killed: failed, provisional.
fn scripted_rollouts() -> v1::ListRolloutsResponse {
    const MIN: i64 = 60_000_000_000;
    let changed = fixtures::NOW_NS - 10 * MIN;
    let check =
        |check: &str, outcome: &str, before: &str, after: &str, reason: &str| v1::GateCheck {
            check: check.into(),
            outcome: outcome.into(),
            before: before.into(),
            after: after.into(),
            before_value: Some(0.0),
            after_value: Some(if outcome == "failed" { 1.0 } else { 0.0 }),
            reason: reason.into(),
        };
    v1::ListRolloutsResponse {
        rollouts: vec![v1::Rollout {
            namespace: "shop".into(),
            workload_kind: "ComposeService".into(),
            workload: "web".into(),
            container: "web".into(),
            from_image: "registry.local/web:1.4.2".into(),
            to_image: "registry.local/web:1.4.3".into(),
            changed_unix_ns: changed,
            window_s: 1800,
            before_start_unix_ns: changed - 30 * MIN,
            before_end_unix_ns: changed,
            after_start_unix_ns: changed,
            after_end_unix_ns: fixtures::NOW_NS,
            verdict: "failed".into(),
            in_progress: true,
            checks: vec![
                check("restarts", "pass", "0 in 30 min", "0 in 10 min", "no restart after the update"),
                check(
                    "oom_kills",
                    "failed",
                    "0 in 30 min",
                    "1 in 10 min (6.0/h)",
                    "1 OOM kill in the 10 min after the update, none in the 30 min before",
                ),
            ],
            summary: "failed: oom_kills: 1 OOM kill in the 10 min after the update, none in the 30 min before (provisional)".into(),
            rollback_image: "registry.local/web:1.4.2".into(),
            from_container_ids: vec!["a".repeat(64)],
            to_container_ids: vec![DOCKER_ID.into()],
            nodes: vec!["node-a".into()],
            note: "in progress: 10m of the 30m after window so far; the verdict is provisional".into(),
        }],
        at_unix_ns: fixtures::NOW_NS,
        window_s: 1800,
        since_unix_ns: fixtures::NOW_NS - 24 * 60 * MIN,
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

/// [`upid`], for commands expected to fail.
async fn upid_err(server: &str, args: &[&str]) -> crate::cli::CliError {
    let head = ["upid", "--server", server];
    let cli = Cli::try_parse_from(head.iter().chain(args)).expect("parses");
    run(cli, None).await.expect_err("fails")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test]
async fn rightsize_sends_the_scope_grouping_and_ratio_and_prints_each_recommendation() {
    let (server, asked) = start(true).await;
    let out = upid(
        &server,
        &[
            "rightsize",
            "-n",
            "shop",
            "--workload",
            "checkout",
            "--node",
            "node-b",
            "--pod",
            "checkout-7d9f8-x2k4q",
            "--container",
            "checkout",
            "--by",
            "container",
            "--cpu-limit-ratio",
            "2",
            "-o",
            "json",
        ],
    )
    .await;
    let v = json(&out);
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0]["node_name"], "node-a", "biggest saving first");
    assert_eq!(rows[1]["node_name"], "node-b");
    assert_eq!(rows[1]["container_id"], fixtures::POD_ID);
    assert_eq!(rows[1]["current"]["cpu_request_millicores"], 4000);
    assert_eq!(rows[1]["cpu_request_millicores"], 250);
    assert_eq!(rows[1]["cpu_limit_millicores"], serde_json::Value::Null);
    assert_eq!(rows[1]["samples"], 20_160);

    let out = upid(&server, &["rightsize"]).await;
    let mut lines = out.stdout.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("NAMESPACE   WORKLOAD   CONTAINER   REPLICAS   CPU_REQ")),
        "{}",
        out.stdout
    );
    let checkout: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(
        &checkout[..10],
        [
            "shop",
            "checkout",
            "checkout",
            "3",
            "4000m→250m",
            "-",
            "2.0Gi→300Mi",
            "4.0Gi→600Mi",
            "100%",
            "$275.44"
        ]
    );
    assert!(
        out.stdout.contains("not enough data: 200 samples"),
        "{}",
        out.stdout
    );

    let asked = asked.lock().expect("lock");
    let first = &asked.rightsize[0];
    assert_eq!(
        first.scope,
        Some(v1::AnalysisScope {
            namespace: "shop".into(),
            workload: "checkout".into(),
            node_name: "node-b".into(),
            pod: "checkout-7d9f8-x2k4q".into(),
            container: "checkout".into(),
        })
    );
    assert_eq!(first.group_by, v1::RightsizeGrouping::Container as i32);
    assert_eq!(first.cpu_limit_ratio, Some(2.0));
    let second = &asked.rightsize[1];
    assert_eq!(second.scope, Some(v1::AnalysisScope::default()));
    assert_eq!(second.group_by, v1::RightsizeGrouping::Workload as i32);
    assert_eq!(second.cpu_limit_ratio, None);
}

#[tokio::test]
async fn idle_sends_its_scope_and_all_and_prints_idle_workloads_first() {
    let (server, asked) = start(true).await;
    let out = upid(&server, &["idle", "-n", "staging", "--workload", "old-api"]).await;
    let workloads: Vec<&str> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(workloads, ["old-api", "report"], "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("   3d4h   ") && l.contains("$79.20")),
        "{}",
        out.stdout
    );
    let out = upid(
        &server,
        &["idle", "--all", "--node", "node-a", "-o", "yaml"],
    )
    .await;
    let v: serde_json::Value = serde_norway::from_str(&out.stdout).expect("YAML");
    let rows = v.as_array().expect("a list");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["workload"], "web");
    assert_eq!(rows[2]["idle"], false);
    assert_eq!(rows[0]["idle_since"], "2023-11-11T18:13:20Z");
    let asked = asked.lock().expect("lock");
    let sent: Vec<(String, String, String, bool)> = asked
        .list_idle
        .iter()
        .map(|r| {
            let s = r.scope.clone().unwrap_or_default();
            (s.namespace, s.workload, s.node_name, r.include_active)
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("staging".into(), "old-api".into(), String::new(), false),
            (String::new(), String::new(), "node-a".into(), true)
        ]
    );
}

#[tokio::test]
async fn cost_sends_the_grouping_window_and_scope_and_ends_with_the_total() {
    let (server, asked) = start(true).await;
    let out = upid(
        &server,
        &[
            "cost",
            "--by",
            "namespace",
            "--window",
            "24h",
            "-n",
            "shop",
            "--node",
            "node-b",
        ],
    )
    .await;
    let last = out.stdout.lines().last().unwrap_or_default();
    let total: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(
        total,
        [
            "TOTAL",
            "7",
            "$89.65",
            "$389.63",
            "$352.84",
            "$275.44",
            "14.0/0.944",
            "7.0Gi/1.2Gi"
        ],
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.starts_with("COST is over the last 7d"),
        "{}",
        out.stderr
    );
    let out = upid(&server, &["cost", "--workload", "checkout", "-o", "json"]).await;
    let v = json(&out);
    assert_eq!(v["group_by"], "workload");
    assert_eq!(v["pricing"]["currency"], "USD");
    assert_eq!(
        v["lines"][0]["key"], "deployment/shop/checkout",
        "costliest first"
    );
    assert_eq!(v["total"]["monthly_waste"], 352.84);
    assert_eq!(out.stderr, "", "nothing but JSON for scripts");
    let asked = asked.lock().expect("lock");
    let first = &asked.get_cost[0];
    assert_eq!(first.group_by, v1::CostGrouping::Namespace as i32);
    assert_eq!(first.window_s, 86_400);
    let scope = first.scope.clone().unwrap_or_default();
    assert_eq!(
        (scope.namespace.as_str(), scope.node_name.as_str()),
        ("shop", "node-b")
    );
    let second = &asked.get_cost[1];
    assert_eq!(second.group_by, v1::CostGrouping::Workload as i32);
    assert_eq!(second.window_s, 0);
    assert_eq!(
        second.scope.as_ref().map(|s| s.workload.as_str()),
        Some("checkout")
    );
}

#[tokio::test]
async fn analyze_asks_every_analysis_over_one_scope_and_prints_the_sections() {
    let (server, asked) = start(true).await;
    let before = crate::cli::doctor::now_unix_ns();
    let out = upid(&server, &["analyze", "workload", "checkout", "-n", "shop"]).await;
    let after = crate::cli::doctor::now_unix_ns();
    for section in [
        "Scope:   workload checkout in namespace shop\n",
        "\nCost (last 7d):\n  Total:    $389.63/mo",
        "\nTop savings:\n",
        "\nIdle workloads (2, $92.50/mo together):\n",
        "\nOOM hot spots:\n",
        "  1 OOM kill event in the last 7d",
        "\nThrottling hot spots",
        "\nNot enough data: 1 of 3 containers has too little history",
    ] {
        assert!(
            out.stdout.contains(section),
            "{section:?} missing in\n{}",
            out.stdout
        );
    }
    let asked = asked.lock().expect("lock");
    let scope = v1::AnalysisScope {
        namespace: "shop".into(),
        workload: "checkout".into(),
        ..Default::default()
    };
    assert_eq!(asked.rightsize[0].scope.as_ref(), Some(&scope));
    assert_eq!(
        asked.rightsize[0].group_by,
        v1::RightsizeGrouping::Workload as i32
    );
    assert_eq!(asked.list_idle[0].scope.as_ref(), Some(&scope));
    assert!(!asked.list_idle[0].include_active);
    assert_eq!(asked.get_cost[0].scope.as_ref(), Some(&scope));
    assert_eq!(
        asked.get_cost[0].group_by,
        v1::CostGrouping::Workload as i32
    );
    assert_eq!(asked.get_cost[0].window_s, 0);
    let events = &asked.list_events[0];
    assert_eq!(events.kinds, [v1::EventKind::Oom as i32]);
    assert_eq!(
        (events.namespace.as_str(), events.workload.as_str()),
        ("shop", "checkout")
    );
    let week_ns = 7 * 86_400 * 1_000_000_000;
    assert!(
        (before - week_ns..=after - week_ns).contains(&events.since_unix_ns),
        "7 days back: {}",
        events.since_unix_ns
    );
}

#[tokio::test]
async fn analyze_pod_groups_by_container_and_keeps_only_its_containers_events() {
    let (server, asked) = start(true).await;
    let out = upid(
        &server,
        &[
            "analyze",
            "pod",
            "checkout-7d9f8-x2k4q",
            "-n",
            "shop",
            "-o",
            "json",
        ],
    )
    .await;
    let v = json(&out);
    assert_eq!(v["scope"]["kind"], "pod");
    assert_eq!(v["scope"]["name"], "checkout-7d9f8-x2k4q");
    let events = v["recent_oom_events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{v}");
    assert_eq!(events[0]["container_id"], fixtures::POD_ID);
    assert_eq!(events[0]["type"], "oom");
    let out = upid(&server, &["analyze", "node", "node-b"]).await;
    assert!(
        out.stdout.starts_with("Scope:   node node-b\n"),
        "{}",
        out.stdout
    );
    let asked = asked.lock().expect("lock");
    let pod = &asked.rightsize[0];
    assert_eq!(pod.group_by, v1::RightsizeGrouping::Container as i32);
    let scope = pod.scope.clone().unwrap_or_default();
    assert_eq!(
        (scope.pod.as_str(), scope.namespace.as_str()),
        ("checkout-7d9f8-x2k4q", "shop")
    );
    assert_eq!(
        asked.list_events[0].container, "",
        "events have no pod filter"
    );
    let node = asked.rightsize[1].scope.clone().unwrap_or_default();
    assert_eq!(node.node_name, "node-b");
    assert_eq!(asked.list_events[1].node_name, "node-b");
}

#[tokio::test]
async fn an_older_collector_is_named_as_such_for_each_analysis() {
    let (server, _) = start_with(true, false).await;
    for (args, method) in [
        (&["rightsize"][..], "Rightsize"),
        (&["idle"][..], "ListIdle"),
        (&["cost"][..], "GetCost"),
        (&["analyze", "cluster"][..], "Rightsize"),
    ] {
        let text = upid_err(&server, args).await.to_string();
        assert!(
            text.contains(&format!("does not implement {method}"))
                && text.contains("it is older than this upid")
                && text.contains("upgrade the collector"),
            "{args:?}: {text}"
        );
    }
}

#[tokio::test]
async fn analyze_works_against_a_collector_without_events() {
    let (server, _) = start_with(false, true).await;
    let out = upid(&server, &["analyze", "cluster", "-o", "json"]).await;
    let v = json(&out);
    assert_eq!(v["recent_oom_events"], serde_json::Value::Null);
    assert!(
        v["recent_oom_events_error"]
            .as_str()
            .is_some_and(|e| e.contains("does not implement ListEvents")),
        "{v}"
    );
    assert_eq!(v["oom_hot_spots"][0]["workload"], "web");
    assert_eq!(v["cost"]["monthly_cost"], 389.63);
}

#[tokio::test]
async fn updates_rollouts_sends_its_filters_and_prints_verdicts_with_notes() {
    let (server, asked) = start(true).await;
    let out = upid(
        &server,
        &[
            "updates",
            "rollouts",
            "-n",
            "shop",
            "--workload",
            "web",
            "--since",
            "2h",
            "--all",
            "--window",
            "10m",
        ],
    )
    .await;
    let mut lines = out.stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("NAMESPACE   WORKLOAD   CONTAINER   FROM")
            && header.ends_with("AGE   VERDICT                SUMMARY"),
        "{}",
        out.stdout
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.contains("registry.local/web:1.4.3   10m   failed (provisional)   failed: oom_kills"),
        "{}",
        out.stdout
    );
    assert_eq!(
        lines.next(),
        Some(
            "note: web container web: in progress: 10m of the 30m after window so far; the verdict is provisional"
        )
    );
    let wide = upid(&server, &["updates", "rollouts", "-o", "wide"]).await;
    let cells: Vec<&str> = wide
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        cells.get(..12),
        Some(
            &[
                "shop",
                "ComposeService",
                "web",
                "web",
                "registry.local/web:1.4.2",
                "registry.local/web:1.4.3",
                "10m",
                "failed",
                "(provisional)",
                "30m",
                "registry.local/web:1.4.2",
                "node-a"
            ][..]
        ),
        "{}",
        wide.stdout
    );
    let v = json(
        &upid(
            &server,
            &["updates", "rollouts", "--since", "all", "-o", "json"],
        )
        .await,
    );
    let r = &v["rollouts"][0];
    assert_eq!(r["verdict"], "failed");
    assert_eq!(r["provisional"], true);
    assert_eq!(r["rollback_image"], "registry.local/web:1.4.2");
    assert_eq!(r["checks"][1]["check"], "oom_kills");
    assert_eq!(r["checks"][1]["after_value"], 1.0);
    assert_eq!(r["before"]["duration_s"], 1800);
    assert_eq!(r["after"]["duration_s"], 600);
    assert_eq!(r["to_container_ids"][0], DOCKER_ID);
    assert_eq!(v["window_s"], 1800);
    let empty = upid(
        &server,
        &["updates", "rollouts", "-n", "nowhere", "--since", "all"],
    )
    .await;
    assert_eq!(empty.stdout, "");
    assert!(
        empty.stderr.starts_with(
            "No rollouts found in the stored history (agents connected: 1): a rollout shows"
        ),
        "{}",
        empty.stderr
    );

    let now = crate::cli::doctor::now_unix_ns();
    let asked = asked.lock().expect("lock");
    let first = &asked.list_rollouts[0];
    assert_eq!(
        (
            first.namespace.as_str(),
            first.workload.as_str(),
            first.all,
            first.window_s
        ),
        ("shop", "web", true, 600)
    );
    let two_hours_ago = now - 7_200_000_000_000;
    let since = first.since_unix_ns.unwrap_or(0);
    assert!(
        (two_hours_ago - 60_000_000_000..=two_hours_ago).contains(&since),
        "--since 2h sent {since}, now {now}"
    );
    let default_since = asked.list_rollouts[1].since_unix_ns.unwrap_or(0);
    let day_ago = now - 86_400_000_000_000;
    assert!(
        (day_ago - 60_000_000_000..=day_ago).contains(&default_since),
        "the default is the last 24 h: {default_since}"
    );
    assert_eq!(
        (asked.list_rollouts[1].all, asked.list_rollouts[1].window_s),
        (false, 0)
    );
    assert_eq!(asked.list_rollouts[2].since_unix_ns, Some(0), "--since all");
}

/// Every file under `dir`, relative, hidden ones included, sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
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

#[tokio::test]
async fn export_writes_checked_files_and_refuses_bad_ones() {
    let (server, asked) = start(true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("out");
    let out_arg = out_dir.to_string_lossy().into_owned();
    let head = ["upid", "--server", server.as_str()];
    let parse = |args: &[&str]| Cli::try_parse_from(head.iter().chain(args)).expect("parses");

    // Two good files: written, checked, summary on stdout, note on stderr
    // (no terminal here: no bar).
    let out = run(
        parse(&[
            "export",
            "--since",
            "2023-11-14",
            "--until",
            "2023-11-15",
            "--out",
            &out_arg,
            "--tables",
            "samples,cost",
        ]),
        None,
    )
    .await
    .expect("a good export");
    assert_eq!(
        tree(&out_dir),
        [
            "cost/date=2023-11-14/part-0.parquet",
            "samples/date=2023-11-14/part-0.parquet"
        ]
    );
    assert_eq!(
        std::fs::read(out_dir.join("samples/date=2023-11-14/part-0.parquet"))
            .ok()
            .as_deref(),
        Some(&b"PAR1 scripted samples, not really Parquet PAR1"[..])
    );
    assert_eq!(
        out.stdout,
        format!(
            "wrote 2 files (69B) for 1 day, 3 sample rows (2023-11-14T00:00:00Z .. 2023-11-15T00:00:00Z) to {out_arg}\n"
        )
    );
    assert_eq!(out.stderr, "note: no updates table: scripted\n");

    // A checksum mismatch: the old file stays, nothing half-written.
    let before = std::fs::read(out_dir.join("samples/date=2023-11-14/part-0.parquet")).ok();
    for (table, needle) in [
        ("idle", "does not match the announced"),
        ("cost", "which leaves the output directory"),
        ("containers", "scripted failure mid-stream"),
    ] {
        let e = run(
            parse(&[
                "export", "--since", "2d", "--out", &out_arg, "--tables", table,
            ]),
            None,
        )
        .await
        .expect_err(table)
        .to_string();
        assert!(e.contains(needle), "{table}: {e}");
        assert_eq!(
            tree(&out_dir),
            [
                "cost/date=2023-11-14/part-0.parquet",
                "samples/date=2023-11-14/part-0.parquet"
            ],
            "{table}"
        );
        assert_eq!(
            std::fs::read(out_dir.join("samples/date=2023-11-14/part-0.parquet")).ok(),
            before,
            "{table}"
        );
    }
    assert!(!dir.path().join("escape.parquet").exists());

    // An empty range is refused before connecting.
    let e = run(
        parse(&[
            "export", "--since", "1h", "--until", "2h", "--out", &out_arg,
        ]),
        None,
    )
    .await
    .expect_err("empty range")
    .to_string();
    assert!(
        e.contains("--since") && e.contains("is not before --until"),
        "{e}"
    );
    let asked = asked.lock().expect("lock");
    assert_eq!(asked.export.len(), 4);
    assert_eq!(asked.export[0].tables, ["samples", "cost"]);
    assert_eq!(asked.export[0].since_unix_ns, 1_699_920_000_000_000_000);
    assert_eq!(asked.export[0].until_unix_ns, 1_700_006_400_000_000_000);
    assert_eq!(
        asked.export[1].until_unix_ns, 0,
        "no --until: the collector's now"
    );
}

//! `upid updates apply deployment/web` end to end through the CLI, against
//! a local HTTP server that STANDS IN FOR A KUBERNETES API SERVER.
//!
//! No API server can run on this machine. The stand-in (plain HTTP on
//! 127.0.0.1, reached through a kubeconfig written by the test, as kubectl
//! would be) replays recorded API responses from
//! `tests/root/fixtures/kube_apply/`: a Deployment, ReplicaSetLists, Pods
//! and `Status` errors in the exact shape the API server returns them
//! (see the README there). It is stateful where the update depends on it:
//!
//! - it applies the strategic merge patches it receives to its copy of the
//!   Deployment (containers merged by name, annotations merged,
//!   `metadata.generation` bumped on a spec change), so what it serves
//!   afterwards is what the patch made;
//! - each PATCH starts a phase (the update, then a rollback) with its
//!   recorded sequence of controller states: every GET of the Deployment
//!   takes the next one (`status` and the revision annotation, as the
//!   Deployment controller writes them), and pod and ReplicaSet lists
//!   answer with that state's objects, filtered by the `labelSelector`
//!   sent, as the API server filters them.
//!
//! The scenarios advance one controller state per GET, so the outcome does
//! not depend on timing: a rollout completes after a fixed number of polls
//! whatever the poll interval.
//!
//! The collector side is a scripted `QueryService` (a fake, named as
//! such), as `src/cli/scripted_collector.rs` does for the other commands:
//! it answers `ListUpdates` with the decision a test sets, keeps what
//! `RecordUpdateEvents` sends, for `ListUpdateEvents`, and answers
//! `GetContainerSeries` with recorded points per container id. The real collector's
//! `ListUpdates`, `RecordUpdateEvents` and `ListUpdateEvents` run against
//! the real binary in `tests/updates_e2e.rs` (crate upid-e2e, which links
//! DuckDB; this crate does not).
//!
//! Cases: an approved update rolls out and passes the gate; the new pods
//! are OOM-killed into CrashLoopBackOff and it is rolled back; the
//! Deployment exceeds its progress deadline and it is rolled back; review
//! and block decisions are refused without --force; 404, 403 (read and
//! patch), junk answers and a failure after the patch (undone) give errors
//! that name the request and never panic; the namespace from the context,
//! Kubernetes flags refused on a Docker name; a StatefulSet followed by
//! its revisions; a DaemonSet followed node by node to completion. CPU
//! and memory per replica come from the scripted collector's recorded
//! `GetContainerSeries` points: about the same (healthy, numbers in the
//! evidence), memory doubled (degraded; rolled back with
//! `--rollback-on-degraded`), no samples (skipped, saying which containers
//! on which nodes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::Parser as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Request, Response, Status};
use upid::cli::{Cli, CliError, Output, run};
use upid::wire::v1::{self, query_service_server};

const NS: &str = "shop";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/web";
const REPLICASETS: &str = "/apis/apps/v1/namespaces/shop/replicasets";
const PODS: &str = "/api/v1/namespaces/shop/pods";
const OLD_IMAGE: &str = "registry.example.com/shop/web:2.4.1";
const NEW_IMAGE: &str = "registry.example.com/shop/web:2.4.2";
const TARGET: &str = "shop/deployment/web";
const NEW_PODS: [&str; 3] = [
    "web-6c4d8b7f9-b8d1f",
    "web-6c4d8b7f9-p3r6k",
    "web-6c4d8b7f9-t5v8n",
];
const OLD_PODS: [&str; 3] = [
    "web-5d8f7c9b4-h7z2c",
    "web-5d8f7c9b4-m9q4w",
    "web-5d8f7c9b4-x2k7p",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/root/fixtures/kube_apply")
}

fn load(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

// ------------------------------------------------ the API server stand-in

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Query parameters, percent-decoded.
    query: HashMap<String, String>,
    content_type: String,
    authorization: String,
    body: String,
}

/// One recorded controller state: what the workload's controller wrote
/// (a Deployment's revision annotation, the status) and the pods that
/// existed.
#[derive(Debug, Clone)]
struct Step {
    workload: Value,
    pods: Vec<Value>,
}

/// A fixed answer for a request, overriding the stand-in's behaviour.
#[derive(Debug, Clone)]
struct Fault {
    method: &'static str,
    path: &'static str,
    /// Only in this phase (0: before any PATCH); `None`: always.
    phase: Option<usize>,
    status: u16,
    content_type: &'static str,
    body: String,
}

/// The stand-in's state.
struct World {
    /// The one workload it serves, at `path`.
    workload: Value,
    path: &'static str,
    /// PATCHes received so far: 0 before the update, 1 after it, 2 after
    /// a rollback.
    phase: usize,
    /// GETs of the Deployment in this phase.
    gets: usize,
    before: Vec<Value>,
    phases: Vec<Vec<Step>>,
    replicasets: Vec<Value>,
    faults: Vec<Fault>,
    seen: Vec<Seen>,
}

impl World {
    fn step(&self) -> Option<&Step> {
        let steps = self.phases.get(self.phase.checked_sub(1)?)?;
        steps.get(self.gets.saturating_sub(1).min(steps.len().checked_sub(1)?))
    }

    fn pods(&self) -> Vec<Value> {
        match self.step() {
            Some(s) => s.pods.clone(),
            None if self.phase == 0 => self.before.clone(),
            // A phase without recorded states keeps the last one.
            None => self
                .phases
                .iter()
                .rev()
                .find_map(|p| p.last())
                .map_or_else(|| self.before.clone(), |s| s.pods.clone()),
        }
    }
}

/// A scenario file: the pods before, and the controller states after the
/// update's PATCH and after the rollback's.
fn scenario(name: &str) -> (Vec<Value>, Vec<Vec<Step>>) {
    let s = load(name);
    let pods = |files: &Value| -> Vec<Value> {
        files
            .as_array()
            .unwrap_or_else(|| panic!("{name}: pods must be a list"))
            .iter()
            .map(|f| load(&format!("pods/{}", f.as_str().unwrap_or_default())))
            .collect()
    };
    let steps = |key: &str| -> Vec<Step> {
        s[key]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {key} must be a list"))
            .iter()
            .map(|step| Step {
                workload: step["workload"].clone(),
                pods: pods(&step["pods"]),
            })
            .collect()
    };
    (pods(&s["before"]), vec![steps("update"), steps("rollback")])
}

struct ApiServer {
    url: String,
    world: Arc<Mutex<World>>,
}

impl ApiServer {
    /// Serves Deployment `web` through `scenario_file`.
    async fn start(scenario_file: &str, faults: Vec<Fault>) -> ApiServer {
        ApiServer::serve("deployment-web.json", DEPLOYMENT, scenario_file, faults).await
    }

    /// Serves the workload of `workload_file` at `path` through
    /// `scenario_file`.
    async fn serve(
        workload_file: &str,
        path: &'static str,
        scenario_file: &str,
        faults: Vec<Fault>,
    ) -> ApiServer {
        let (before, phases) = scenario(scenario_file);
        let world = World {
            workload: load(workload_file),
            path,
            phase: 0,
            gets: 0,
            before,
            phases,
            replicasets: vec![
                load("replicasets-before.json"),
                load("replicasets-update.json"),
                load("replicasets-rollback.json"),
            ],
            faults,
            seen: Vec::new(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let world = Arc::new(Mutex::new(world));
        let shared = Arc::clone(&world);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, Arc::clone(&shared)));
            }
        });
        ApiServer { url, world }
    }

    /// A kubeconfig for this server, as `kubectl config` writes one
    /// (context `replay`, namespace `shop`, a bearer token).
    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: replay\n  cluster:\n    server: {}\n\
             contexts:\n- name: replay\n  context:\n    cluster: replay\n    namespace: {NS}\n    user: deployer\n\
             current-context: replay\nusers:\n- name: deployer\n  user:\n    token: replay-token\n",
            self.url
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    fn seen(&self) -> Vec<Seen> {
        self.world.lock().expect("lock").seen.clone()
    }

    fn patches(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "PATCH")
            .collect()
    }

    fn deployment(&self) -> Value {
        self.world.lock().expect("lock").workload.clone()
    }
}

async fn serve(mut conn: TcpStream, world: Arc<Mutex<World>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| -> String {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let seen = Seen {
        method,
        path: path.to_string(),
        query: query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body,
    };
    let (status, content_type, body) = answer(&world, seen);
    respond(&mut conn, status, content_type, &body).await;
}

/// What the stand-in answers, and the state change the request makes.
fn answer(world: &Mutex<World>, seen: Seen) -> (u16, &'static str, String) {
    const JSON: &str = "application/json";
    let mut w = world.lock().expect("lock");
    w.seen.push(seen.clone());
    if let Some(f) = w.faults.iter().find(|f| {
        f.method == seen.method && f.path == seen.path && f.phase.is_none_or(|p| p == w.phase)
    }) {
        return (f.status, f.content_type, f.body.clone());
    }
    let workload_path = w.path;
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", p) if p == workload_path => {
            w.gets += 1;
            if let Some(step) = w.step().cloned() {
                // What the controller wrote by now.
                if step.workload["metadata"].is_object() {
                    merge(&mut w.workload["metadata"], &step.workload["metadata"]);
                }
                w.workload["status"] = step.workload["status"].clone();
            }
            (200, JSON, w.workload.to_string())
        }
        ("PATCH", p) if p == workload_path => {
            if seen.content_type != "application/strategic-merge-patch+json" {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {}",
                        seen.content_type
                    ),
                );
            }
            let patch: Value = match serde_json::from_str(&seen.body) {
                Ok(p) => p,
                Err(e) => return status(400, "BadRequest", &format!("error decoding patch: {e}")),
            };
            let spec_before = w.workload["spec"].clone();
            merge(&mut w.workload, &patch);
            if w.workload["spec"] != spec_before {
                let generation = w.workload["metadata"]["generation"].as_i64().unwrap_or(0);
                w.workload["metadata"]["generation"] = json!(generation + 1);
            }
            let rv: i64 = w.workload["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            w.workload["metadata"]["resourceVersion"] = json!((rv + 100).to_string());
            w.phase += 1;
            w.gets = 0;
            (200, JSON, w.workload.to_string())
        }
        ("GET", REPLICASETS) => {
            let list = w.replicasets[w.phase.min(2)].clone();
            match filtered(list, seen.query.get("labelSelector")) {
                Ok(l) => (200, JSON, l.to_string()),
                Err(e) => status(400, "BadRequest", &e),
            }
        }
        ("GET", PODS) => {
            let list = json!({"kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": (918400 + w.gets).to_string()}, "items": w.pods()});
            match filtered(list, seen.query.get("labelSelector")) {
                Ok(l) => (200, JSON, l.to_string()),
                Err(e) => status(400, "BadRequest", &e),
            }
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, &'static str, String) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": {}, "code": code});
    (code, "application/json", body.to_string())
}

/// Strategic merge as the API server does it for what upid sends: maps
/// merged key by key, `null` deletes, `containers` merged by `name`, other
/// lists replaced.
fn merge(target: &mut Value, patch: &Value) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, v) in p {
        assert!(!k.starts_with('$'), "unexpected patch directive {k}");
        if v.is_null() {
            t.remove(k);
        } else if k == "containers" {
            let list = t.entry(k.clone()).or_insert_with(|| json!([]));
            for item in v.as_array().expect("containers is a list") {
                let name = &item["name"];
                assert!(name.is_string(), "a container patch without a name: {item}");
                let existing = list
                    .as_array_mut()
                    .expect("containers is a list")
                    .iter_mut()
                    .find(|c| &c["name"] == name);
                match existing {
                    Some(c) => merge(c, item),
                    None => list.as_array_mut().expect("list").push(item.clone()),
                }
            }
        } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
            merge(t.get_mut(k).expect("present"), v);
        } else {
            t.insert(k.clone(), v.clone());
        }
    }
}

/// The list's items whose labels match every `key=value` of `selector`
/// (the only form upid sends for these workloads).
fn filtered(mut list: Value, selector: Option<&String>) -> Result<Value, String> {
    let mut terms = Vec::new();
    for term in selector.map(String::as_str).unwrap_or_default().split(',') {
        if term.is_empty() {
            continue;
        }
        let Some((k, v)) = term.split_once('=') else {
            return Err(format!("unable to parse requirement: {term:?}"));
        };
        terms.push((k.to_string(), v.to_string()));
    }
    let items = list["items"].as_array().cloned().unwrap_or_default();
    list["items"] = Value::Array(
        items
            .into_iter()
            .filter(|i| {
                terms
                    .iter()
                    .all(|(k, v)| i["metadata"]["labels"][k].as_str() == Some(v.as_str()))
            })
            .collect(),
    );
    Ok(list)
}

async fn respond(conn: &mut TcpStream, status: u16, content_type: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        415 => "Unsupported Media Type",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nAudit-Id: 2f7c9d1e-replay\r\nCache-Control: no-cache, private\r\n\
         Content-Type: {content_type}\r\nX-Kubernetes-Pf-Flowschema-Uid: 5b0c2e1a-replay\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.flush().await;
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

// ------------------------------------------------ the scripted collector

/// A scripted `QueryService` (a fake, named as such): the decision a test
/// sets, the update events the CLI records, listed back newest first, and
/// recorded `GetContainerSeries` points per container id (from a
/// `series-*.json` fixture), served over whatever range is asked for; an
/// id without recorded points is `NotFound`, as the real collector answers
/// for a container no agent reported.
#[derive(Clone, Default)]
struct Collector {
    decisions: Arc<Mutex<Vec<v1::UpdateDecision>>>,
    events: Arc<Mutex<Vec<v1::UpdateEvent>>>,
    asked: Arc<Mutex<Vec<v1::ListUpdatesRequest>>>,
    series: Arc<Mutex<HashMap<String, Vec<v1::Rates>>>>,
    series_asked: Arc<Mutex<Vec<v1::GetContainerSeriesRequest>>>,
}

impl Collector {
    async fn start(decision: Option<v1::UpdateDecision>) -> (String, Collector) {
        let collector = Collector::default();
        collector.decisions.lock().expect("lock").extend(decision);
        let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
            .expect("bind 127.0.0.1:0");
        let addr = incoming.local_addr().expect("local address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(query_service_server::QueryServiceServer::new(
                    collector.clone(),
                ))
                .serve_with_incoming(incoming),
        );
        (format!("http://{addr}"), collector)
    }

    fn events(&self) -> Vec<v1::UpdateEvent> {
        self.events.lock().expect("lock").clone()
    }

    fn kinds(&self) -> Vec<String> {
        self.events().iter().map(|e| e.kind.clone()).collect()
    }

    /// Serves the points of `file` for the pods `keep` accepts: each
    /// pod's container id is `sha256("<pod>/<container>")`, as in the pod
    /// fixtures.
    fn serve_series(&self, file: &str, keep: impl Fn(&str) -> bool) {
        let doc = load(file);
        let containers = doc["containers"]
            .as_object()
            .unwrap_or_else(|| panic!("{file}: containers must be a map"));
        let mut series = self.series.lock().expect("lock");
        for (pod, c) in containers {
            if !keep(pod) {
                continue;
            }
            let container = c["container"].as_str().unwrap_or_default();
            let points = c["points"]
                .as_array()
                .unwrap_or_else(|| panic!("{file}: {pod}: points must be a list"))
                .iter()
                .map(|p| v1::Rates {
                    cpu_cores: p["cpu_cores"].as_f64(),
                    memory_working_set_bytes: p["memory_working_set_bytes"].as_u64(),
                    ..Default::default()
                })
                .collect();
            series.insert(container_id(pod, container), points);
        }
    }

    fn series_asked(&self) -> Vec<v1::GetContainerSeriesRequest> {
        self.series_asked.lock().expect("lock").clone()
    }
}

/// The points of `file` for the pods listed, as `(cores, bytes)`.
fn recorded(file: &str, pods: &[&str]) -> Vec<(f64, u64)> {
    let doc = load(file);
    pods.iter()
        .flat_map(|pod| {
            doc["containers"][pod]["points"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|p| {
            (
                p["cpu_cores"].as_f64().unwrap_or_default(),
                p["memory_working_set_bytes"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// The collector's decision for `web`'s `app` container.
fn decision(verdict: &str, change: &str, reason: &str) -> v1::UpdateDecision {
    v1::UpdateDecision {
        namespace: NS.into(),
        workload_kind: "Deployment".into(),
        workload: "web".into(),
        container: "app".into(),
        container_ids: vec!["7c59c7f26b70".into()],
        nodes: vec!["worker-1".into(), "worker-2".into(), "worker-3".into()],
        current: OLD_IMAGE.into(),
        candidate: Some(NEW_IMAGE.into()),
        change: change.into(),
        decision: verdict.into(),
        reason: reason.into(),
        policy: "patch".into(),
        policy_source: "labels".into(),
        ..Default::default()
    }
}

fn approved() -> v1::UpdateDecision {
    decision(
        "approve",
        "patch",
        "2.4.2 is a patch update from 2.4.1; the patch policy approves patch updates.",
    )
}

fn unimplemented<T>(method: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "scripted collector: no {method}"
    )))
}

#[tonic::async_trait]
impl query_service_server::QueryService for Collector {
    async fn get_server_info(
        &self,
        _: Request<v1::GetServerInfoRequest>,
    ) -> Result<Response<v1::ServerInfo>, Status> {
        Ok(Response::new(v1::ServerInfo {
            agents_connected: 3,
            ..Default::default()
        }))
    }
    async fn list_nodes(
        &self,
        _: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        unimplemented("ListNodes")
    }
    async fn list_containers(
        &self,
        _: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        unimplemented("ListContainers")
    }
    async fn list_workloads(
        &self,
        _: Request<v1::ListWorkloadsRequest>,
    ) -> Result<Response<v1::ListWorkloadsResponse>, Status> {
        unimplemented("ListWorkloads")
    }
    async fn get_container(
        &self,
        _: Request<v1::GetContainerRequest>,
    ) -> Result<Response<v1::ContainerDetail>, Status> {
        unimplemented("GetContainer")
    }
    async fn get_container_series(
        &self,
        r: Request<v1::GetContainerSeriesRequest>,
    ) -> Result<Response<v1::GetContainerSeriesResponse>, Status> {
        let r = r.into_inner();
        self.series_asked.lock().expect("lock").push(r.clone());
        let Some(recorded) = self.series.lock().expect("lock").get(&r.id).cloned() else {
            return Err(Status::not_found(format!(
                "no container matches {:?} (scripted collector)",
                r.id
            )));
        };
        // The recorded points, spread over the range asked for.
        let n = i64::try_from(recorded.len()).unwrap_or(1).max(1);
        let width = ((r.end_unix_ns - r.start_unix_ns) / n).max(1);
        let points = recorded
            .into_iter()
            .zip(0i64..)
            .map(|(p, i)| v1::Rates {
                start_unix_ns: r.start_unix_ns + i * width,
                end_unix_ns: r.start_unix_ns + (i + 1) * width,
                ..p
            })
            .collect();
        Ok(Response::new(v1::GetContainerSeriesResponse {
            r#ref: None,
            step_ns: r.step_ns,
            points,
        }))
    }
    async fn top(&self, _: Request<v1::TopRequest>) -> Result<Response<v1::TopResponse>, Status> {
        unimplemented("Top")
    }
    async fn list_events(
        &self,
        _: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        unimplemented("ListEvents")
    }
    async fn rightsize(
        &self,
        _: Request<v1::RightsizeRequest>,
    ) -> Result<Response<v1::RightsizeResponse>, Status> {
        unimplemented("Rightsize")
    }
    async fn list_idle(
        &self,
        _: Request<v1::IdleRequest>,
    ) -> Result<Response<v1::IdleResponse>, Status> {
        unimplemented("ListIdle")
    }
    async fn get_cost(
        &self,
        _: Request<v1::CostRequest>,
    ) -> Result<Response<v1::CostResponse>, Status> {
        unimplemented("GetCost")
    }
    async fn list_updates(
        &self,
        r: Request<v1::ListUpdatesRequest>,
    ) -> Result<Response<v1::ListUpdatesResponse>, Status> {
        self.asked.lock().expect("lock").push(r.into_inner());
        Ok(Response::new(v1::ListUpdatesResponse {
            decisions: self.decisions.lock().expect("lock").clone(),
            ..Default::default()
        }))
    }
    async fn record_update_events(
        &self,
        r: Request<v1::RecordUpdateEventsRequest>,
    ) -> Result<Response<v1::RecordUpdateEventsResponse>, Status> {
        let events = r.into_inner().events;
        let recorded = u32::try_from(events.len()).unwrap_or(u32::MAX);
        self.events.lock().expect("lock").extend(events);
        Ok(Response::new(v1::RecordUpdateEventsResponse { recorded }))
    }
    async fn list_update_events(
        &self,
        r: Request<v1::ListUpdateEventsRequest>,
    ) -> Result<Response<v1::ListUpdateEventsResponse>, Status> {
        let r = r.into_inner();
        let mut events: Vec<v1::UpdateEvent> = self
            .events()
            .into_iter()
            .filter(|e| r.target.is_empty() || e.target == r.target)
            .collect();
        events.reverse();
        Ok(Response::new(v1::ListUpdateEventsResponse { events }))
    }
    async fn list_rollouts(
        &self,
        _: Request<v1::ListRolloutsRequest>,
    ) -> Result<Response<v1::ListRolloutsResponse>, Status> {
        unimplemented("ListRollouts")
    }

    type ExportStream = futures_util::stream::BoxStream<'static, Result<v1::ExportChunk, Status>>;

    async fn export(
        &self,
        _: Request<v1::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        unimplemented("Export")
    }
}

// ------------------------------------------------ running upid

/// The flags every apply here takes: the stand-in's kubeconfig, no
/// before window to wait for, a short gate window and fast polls (the
/// scenarios advance per request, not per second), and a rollout timeout
/// no scenario reaches.
fn apply_args(kubeconfig: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "updates",
        "apply",
        "deployment/web",
        "--container",
        "app",
        "--kubeconfig",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(kubeconfig.to_string_lossy().into_owned());
    for a in [
        "--before-window",
        "0s",
        "--gate-window",
        "150ms",
        "--poll-interval",
        "5ms",
        "--rollout-timeout",
        "60s",
    ] {
        args.push(a.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn upid(server: &str, args: &[String]) -> Result<Output, CliError> {
    let mut all = vec![
        "upid".to_string(),
        "--server".to_string(),
        server.to_string(),
    ];
    all.extend(args.iter().cloned());
    let cli = Cli::try_parse_from(&all).unwrap_or_else(|e| panic!("{all:?} does not parse: {e}"));
    run(cli, None).await
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", out.stdout, out.stderr))
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["gate"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

/// `sha256("<pod>/app")`: the fixtures' container id of a pod's app.
fn app_id(pod: &str) -> String {
    container_id(pod, "app")
}

/// `sha256("<pod>/<container>")`: the fixtures' container ids.
fn container_id(pod: &str, container: &str) -> String {
    use std::fmt::Write as _;
    let digest = ring_sha256(format!("{pod}/{container}").as_bytes());
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn ring_sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn message_of<'a>(collector_events: &'a [v1::UpdateEvent], kind: &str) -> &'a str {
    collector_events
        .iter()
        .find(|e| e.kind == kind)
        .map(|e| e.message.as_str())
        .unwrap_or_else(|| panic!("no {kind} event in {collector_events:#?}"))
}

// ------------------------------------------------ the cases

#[tokio::test]
async fn an_approved_update_rolls_out_passes_the_gate_and_is_recorded() {
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let (server, collector) = Collector::start(Some(approved())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());

    let out = upid(&server, &apply_args(&kubeconfig, &["-n", NS, "-o", "json"]))
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let report = json_of(&out);
    assert!(out.success, "{report:#}");
    assert_eq!(report["verdict"], "healthy", "{report:#}");
    assert_eq!(report["rolled_back"], false);
    assert_eq!(report["container"], "app");
    assert_eq!(report["from_image"], OLD_IMAGE);
    assert_eq!(report["to_image"], NEW_IMAGE);
    let k = &report["kubernetes"];
    assert_eq!(k["target"], TARGET);
    assert_eq!(k["rollout_completed"], true);
    assert_eq!(k["rollout"], "deployment \"web\" successfully rolled out");
    assert_eq!(
        (k["from_revision"].as_str(), k["to_revision"].as_str()),
        (Some("revision 7"), Some("revision 8"))
    );
    assert_eq!(k["old_pods"], json!(OLD_PODS));
    assert_eq!(k["new_pods"], json!(NEW_PODS));
    assert_eq!(k["rollback_started"], false);
    let restarts = check(&report, "restarts");
    assert_eq!(restarts["outcome"], "pass");
    assert_eq!(check(&report, "health")["after"], "healthy");
    assert_eq!(check(&report, "ready_replicas")["after"], "3/3 ready");
    // No agent reported these containers: CPU and memory are skipped, and
    // the evidence says why, naming the containers and nodes.
    for name in ["cpu_per_replica", "memory_per_replica"] {
        let c = check(&report, name);
        assert_eq!(c["outcome"], "skipped", "{c}");
        assert_eq!(
            (c["before"].as_str(), c["after"].as_str()),
            (Some("not measured"), Some("not measured"))
        );
        let reason = c["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(
                "not measured: before: no samples from the collector in the BEFORE window ("
            ),
            "{reason}"
        );
        assert!(
            reason.contains(&format!(
                "for containers {} (pod web-5d8f7c9b4-h7z2c on worker-3), ",
                &app_id("web-5d8f7c9b4-h7z2c")[..12]
            )),
            "{reason}"
        );
        assert!(
            reason.contains("is upid-agent running on nodes worker-1, worker-2, worker-3?; after: no samples from the collector in the gate window ("),
            "{reason}"
        );
    }
    assert!(
        report["gate"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("; CPU and memory per replica were not checked: before: no samples from the collector"),
        "{report:#}"
    );

    // Exactly one PATCH: the strategic merge patch that sets the image of
    // app and nothing else in the template.
    let patches = api.patches();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    let patch = &patches[0];
    assert_eq!(patch.path, DEPLOYMENT);
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    assert_eq!(
        patch.query.get("fieldManager").map(String::as_str),
        Some("upid")
    );
    let body: Value = serde_json::from_str(&patch.body).expect("patch body is JSON");
    assert_eq!(
        body["spec"],
        json!({"template": {"spec": {"containers": [{"name": "app", "image": NEW_IMAGE}]}}})
    );
    let annotations = &body["metadata"]["annotations"];
    assert_eq!(annotations["upid.io/previous-image"], OLD_IMAGE);
    let cause = annotations["kubernetes.io/change-cause"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cause.starts_with(&format!(
            "upid updates apply: app {OLD_IMAGE} -> {NEW_IMAGE} (patch update, approved"
        )),
        "{cause}"
    );
    // What the stand-in holds now: app moved, the sidecar untouched.
    let deployment = api.deployment();
    let containers = &deployment["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], NEW_IMAGE);
    assert_eq!(
        containers[0]["readinessProbe"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(containers[1]["image"], "docker.io/fluent/fluent-bit:3.0.7");
    assert_eq!(deployment["metadata"]["generation"], 8);

    // Every request carried the kubeconfig's token; pods were asked for by
    // the selector and the ReplicaSet's pod-template-hash, old then new.
    let seen = api.seen();
    assert!(
        seen.iter()
            .all(|s| s.authorization == "Bearer replay-token"),
        "{seen:#?}"
    );
    let selectors: Vec<&str> = seen
        .iter()
        .filter(|s| s.path == PODS)
        .filter_map(|s| s.query.get("labelSelector").map(String::as_str))
        .collect();
    assert_eq!(
        selectors.first().copied(),
        Some(
            "app.kubernetes.io/name=web,app.kubernetes.io/part-of=shop,pod-template-hash=5d8f7c9b4"
        )
    );
    assert!(
        selectors.contains(
            &"app.kubernetes.io/name=web,app.kubernetes.io/part-of=shop,pod-template-hash=6c4d8b7f9"
        ),
        "{selectors:?}"
    );

    // The collector was asked for this workload, and every step is there.
    let asked = collector.asked.lock().expect("lock").clone();
    assert_eq!(
        (asked[0].namespace.as_str(), asked[0].workload.as_str()),
        (NS, "web")
    );
    assert_eq!(
        collector.kinds(),
        [
            "apply_started",
            "before_recorded",
            "template_patched",
            "rollout_completed",
            "gate_passed"
        ]
    );
    let events = collector.events();
    assert!(
        events
            .iter()
            .all(|e| e.target == TARGET && e.from_image == OLD_IMAGE && e.to_image == NEW_IMAGE)
    );
    assert_eq!(events[0].node, "worker-1,worker-2,worker-3");
    for pod in NEW_PODS.iter().chain(OLD_PODS.iter()) {
        assert!(
            events[0].container_ids.contains(&app_id(pod)),
            "{pod} not in {:?}",
            events[0].container_ids
        );
    }
    assert!(
        message_of(&events, "before_recorded")
            .contains("0 restarts, 0 OOM kills, 0 non-zero exits, health healthy, 3/3 ready")
    );
    assert!(message_of(&events, "template_patched").contains("generation 7 → 8"));

    // `upid updates events` lists them for the workload, newest first.
    let listed = upid(
        &server,
        &[
            "updates".into(),
            "events".into(),
            TARGET.into(),
            "-o".into(),
            "json".into(),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("events: {e}"));
    let listed = json_of(&listed);
    assert_eq!(listed["events"][0]["kind"], "gate_passed");
    assert_eq!(listed["events"].as_array().map(Vec::len), Some(5));

    // The table form names the workload and the rollout.
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let kubeconfig = api.kubeconfig(dir.path());
    let out = upid(&server, &apply_args(&kubeconfig, &[]))
        .await
        .unwrap_or_else(|e| panic!("apply (table) failed: {e}"));
    assert!(
        out.stdout.starts_with(&format!(
            "deployment/web (container app, namespace shop): {OLD_IMAGE} -> {NEW_IMAGE}: healthy\n"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "rollout: deployment \"web\" successfully rolled out (revision 7 -> revision 8)"
        ),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn crash_looping_new_pods_fail_the_gate_and_are_rolled_back() {
    let api = ApiServer::start("scenario-crashloop.json", Vec::new()).await;
    let (server, collector) = Collector::start(Some(approved())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());

    let out = upid(&server, &apply_args(&kubeconfig, &["-o", "json"]))
        .await
        .unwrap_or_else(|e| panic!("apply failed instead of rolling back: {e}"));
    let report = json_of(&out);
    assert!(
        !out.success,
        "a rolled back update exits non-zero: {report:#}"
    );
    assert_eq!(report["verdict"], "failed");
    assert_eq!(report["rolled_back"], true);
    assert_eq!(report["kubernetes"]["rollout_completed"], false);
    assert_eq!(
        report["kubernetes"]["new_pods"],
        json!(["web-6c4d8b7f9-t5v8n"])
    );

    // The evidence: two restarts, an OOM kill with exit 137, unhealthy
    // (CrashLoopBackOff), no new replica ready; none of it before.
    let restarts = check(&report, "restarts");
    assert_eq!(
        (
            restarts["outcome"].as_str(),
            restarts["after_value"].as_f64()
        ),
        (Some("failed"), Some(2.0))
    );
    let oom = check(&report, "oom_kills");
    assert_eq!(
        (oom["outcome"].as_str(), oom["after_value"].as_f64()),
        (Some("failed"), Some(1.0))
    );
    let exits = check(&report, "nonzero_exits");
    assert!(
        exits["reason"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(exit codes 137)"),
        "{exits}"
    );
    assert_eq!(check(&report, "health")["outcome"], "failed");
    assert_eq!(check(&report, "ready_replicas")["after"], "0/3 ready");

    // The rollback PATCH restores the old image of app, noting the failed one.
    let patches = api.patches();
    assert_eq!(patches.len(), 2, "{patches:#?}");
    let rollback: Value = serde_json::from_str(&patches[1].body).expect("JSON");
    assert_eq!(
        rollback["spec"],
        json!({"template": {"spec": {"containers": [{"name": "app", "image": OLD_IMAGE}]}}})
    );
    assert_eq!(
        rollback["metadata"]["annotations"]["upid.io/previous-image"],
        NEW_IMAGE
    );
    let cause = rollback["metadata"]["annotations"]["kubernetes.io/change-cause"]
        .as_str()
        .unwrap_or_default();
    assert!(cause.contains("rolled back app to"), "{cause}");
    assert_eq!(
        api.deployment()["spec"]["template"]["spec"]["containers"][0]["image"],
        OLD_IMAGE
    );
    assert_eq!(api.deployment()["metadata"]["generation"], 9);

    // The events say why.
    assert_eq!(
        collector.kinds(),
        [
            "apply_started",
            "before_recorded",
            "template_patched",
            "rollout_failed",
            "gate_failed",
            "rollback_started",
            "rolled_back"
        ]
    );
    let events = collector.events();
    let failed = message_of(&events, "rollout_failed");
    assert!(
        failed.contains("1 out of 3 new replicas have been updated"),
        "{failed}"
    );
    assert!(failed.contains("web-6c4d8b7f9-t5v8n: app waiting: CrashLoopBackOff: back-off 20s restarting failed container=app"), "{failed}");
    assert!(
        failed.contains("web-6c4d8b7f9-t5v8n: app terminated: OOMKilled (exit code 137)"),
        "{failed}"
    );
    let gate = message_of(&events, "gate_failed");
    assert!(
        gate.starts_with("failed: restarts: 2 restarts in the"),
        "{gate}"
    );
    assert!(gate.ends_with("; rolling back"), "{gate}");
    let back = message_of(&events, "rolled_back");
    assert!(back.starts_with(&format!("deployment/web runs {OLD_IMAGE} again: deployment \"web\" successfully rolled out (revision 9, 3/3 ready")), "{back}");
}

#[tokio::test]
async fn a_progress_deadline_exceeded_is_rolled_back() {
    let api = ApiServer::start("scenario-deadline.json", Vec::new()).await;
    let (server, collector) = Collector::start(Some(approved())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());

    let out = upid(&server, &apply_args(&kubeconfig, &["-o", "json"]))
        .await
        .unwrap_or_else(|e| panic!("apply failed instead of rolling back: {e}"));
    let report = json_of(&out);
    assert!(!out.success);
    assert_eq!(report["rolled_back"], true);
    let k = &report["kubernetes"];
    assert_eq!(k["rollout_completed"], false);
    let rollout = k["rollout"].as_str().unwrap_or_default();
    assert!(
        rollout.starts_with(
            "deployment \"web\" exceeded its progress deadline: ReplicaSet \"web-6c4d8b7f9\" has timed out progressing.; "
        ),
        "{rollout}"
    );
    assert!(
        rollout.contains("web-6c4d8b7f9-t5v8n: not scheduled: Unschedulable: 0/3 nodes are available: 3 Insufficient memory."),
        "{rollout}"
    );
    // The pending pod never ran: not ready, still starting.
    assert_eq!(report["verdict"], "failed");
    assert_eq!(check(&report, "ready_replicas")["after"], "0/3 ready");
    assert_eq!(check(&report, "health")["after"], "starting");
    assert_eq!(check(&report, "restarts")["outcome"], "pass");

    assert_eq!(api.patches().len(), 2);
    assert_eq!(
        api.deployment()["spec"]["template"]["spec"]["containers"][0]["image"],
        OLD_IMAGE
    );
    assert_eq!(
        collector.kinds(),
        [
            "apply_started",
            "before_recorded",
            "template_patched",
            "rollout_failed",
            "gate_failed",
            "rollback_started",
            "rolled_back"
        ]
    );
    let events = collector.events();
    assert!(message_of(&events, "rollout_failed").contains("exceeded its progress deadline"));
    assert!(message_of(&events, "gate_failed").contains(
        "the rollout did not complete: deployment \"web\" exceeded its progress deadline"
    ));
}

#[tokio::test]
async fn review_and_block_decisions_are_refused_without_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (verdict, change, reason) in [
        (
            "review",
            "minor",
            "2.5.0 is a minor update from 2.4.1; the default policy sends minor updates to review.",
        ),
        (
            "block",
            "major",
            "3.0.0 is a major update from 2.4.1; the default policy blocks major updates.",
        ),
    ] {
        let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
        let (server, collector) = Collector::start(Some(decision(verdict, change, reason))).await;
        let kubeconfig = api.kubeconfig(dir.path());
        let err = upid(&server, &apply_args(&kubeconfig, &[]))
            .await
            .err()
            .unwrap_or_else(|| panic!("a {verdict} decision was applied"));
        let text = err.to_string();
        assert!(
            text.contains(&format!("the update of deployment/web (container app, namespace shop) to {NEW_IMAGE} is `{verdict}`, not approved: {reason} (add --force to apply it anyway)")),
            "{text}"
        );
        assert!(api.patches().is_empty(), "nothing may be patched");
        assert!(collector.events().is_empty());
    }

    // --force takes the review candidate.
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let (server, collector) =
        Collector::start(Some(decision("review", "patch", "needs a look"))).await;
    let kubeconfig = api.kubeconfig(dir.path());
    let out = upid(&server, &apply_args(&kubeconfig, &["--force"]))
        .await
        .unwrap_or_else(|e| panic!("--force: {e}"));
    assert!(out.success, "{}", out.stdout);
    assert_eq!(api.patches().len(), 1);
    let body: Value = serde_json::from_str(&api.patches()[0].body).expect("JSON");
    let cause = body["metadata"]["annotations"]["kubernetes.io/change-cause"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cause.ends_with("(forced; the decision was review: needs a look)"),
        "{cause}"
    );
    assert_eq!(
        collector.kinds().last().map(String::as_str),
        Some("gate_passed")
    );

    // No decision at all, or one for another image: refused, saying why.
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let (server, _) = Collector::start(None).await;
    let kubeconfig = api.kubeconfig(dir.path());
    let text = upid(&server, &apply_args(&kubeconfig, &[]))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        text.starts_with(
            "the collector has no decision for deployment/web (container app, namespace shop)"
        ),
        "{text}"
    );
    let mut stale = approved();
    stale.current = "registry.example.com/shop/web:2.4.0".into();
    let (server, _) = Collector::start(Some(stale)).await;
    let text = upid(&server, &apply_args(&kubeconfig, &[]))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        text.contains(&format!("running registry.example.com/shop/web:2.4.0 but the pod template says {OLD_IMAGE}: its inventory is behind")),
        "{text}"
    );
    assert!(api.patches().is_empty());
}

/// Runs an apply that must fail; returns the error text, the stand-in and
/// the collector.
async fn failing(
    faults: Vec<Fault>,
    target: &str,
    extra: &[&str],
) -> (String, ApiServer, Collector) {
    let api = ApiServer::start("scenario-healthy.json", faults).await;
    let (server, collector) = Collector::start(Some(approved())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    let mut args = apply_args(&kubeconfig, extra);
    args[2] = target.to_string();
    if extra.contains(&"--container") {
        // The default `--container app` makes way for the test's.
        args.drain(3..5);
    }
    let text = match upid(&server, &args).await {
        Ok(out) => panic!("{target} {extra:?} succeeded: {}", out.stdout),
        Err(e) => e.to_string(),
    };
    (text, api, collector)
}

fn fault(
    method: &'static str,
    path: &'static str,
    phase: Option<usize>,
    status: u16,
    body: String,
) -> Fault {
    Fault {
        method,
        path,
        phase,
        status,
        content_type: "application/json",
        body,
    }
}

#[tokio::test]
async fn api_errors_name_the_request_and_change_nothing() {
    // 404: no such Deployment.
    let (text, api, _) = failing(
        vec![fault(
            "GET",
            "/apis/apps/v1/namespaces/shop/deployments/nope",
            None,
            404,
            load("status-404-deployment.json").to_string(),
        )],
        "deployment/nope",
        &["-n", NS],
    )
    .await;
    assert!(
        text.starts_with(&format!(
            "deployment/nope not found in namespace shop: GET {}/apis/apps/v1/namespaces/shop/deployments/nope answered 404 NotFound: deployments.apps \"nope\" not found; check the name and -n/--namespace (kubectl get deployments -n shop); nothing was changed",
            api.url
        )),
        "{text}"
    );

    // 403 on the read.
    let (text, api, _) = failing(
        vec![fault(
            "GET",
            DEPLOYMENT,
            None,
            403,
            load("status-403-get.json").to_string(),
        )],
        "deployment/web",
        &[],
    )
    .await;
    assert!(text.starts_with(&format!("the Kubernetes API refused to read deployment/web: GET {}{DEPLOYMENT} answered 403 Forbidden: deployments.apps \"web\" is forbidden: User \"system:serviceaccount:ci:deployer\" cannot get resource", api.url)), "{text}");
    assert!(
        text.contains("upid needs get and patch on deployments.apps and list on pods"),
        "{text}"
    );
    assert!(text.ends_with("nothing was changed"), "{text}");

    // Junk where a Deployment should be: an HTML page, a cut-off object.
    for junk in [
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"sh"#,
        r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web"},"spec":{"replicas":"three"}}"#,
    ] {
        let (text, api, _) = failing(
            vec![Fault {
                content_type: "text/html",
                ..fault("GET", DEPLOYMENT, None, 200, junk.to_string())
            }],
            "deployment/web",
            &[],
        )
        .await;
        assert!(
            text.starts_with(&format!("the Kubernetes API failed to read deployment/web: GET {}{DEPLOYMENT}: the answer is not a Deployment as the Kubernetes API returns it (", api.url)),
            "{text}"
        );
        assert!(api.patches().is_empty());
    }

    // The template has no such container; several and none named.
    let (text, _, _) = failing(Vec::new(), "deployment/web", &["--container", "nope"]).await;
    assert_eq!(
        text,
        "deployment/web in namespace shop has no container \"nope\" in its pod template (it has app, log-shipper); nothing was changed"
    );

    // 403 on the PATCH: the before window was recorded, nothing changed.
    let (text, api, collector) = failing(
        vec![fault(
            "PATCH",
            DEPLOYMENT,
            None,
            403,
            load("status-403-patch.json").to_string(),
        )],
        "deployment/web",
        &[],
    )
    .await;
    assert!(
        text.starts_with(&format!(
            "the Kubernetes API refused to patch the pod template of deployment/web: PATCH {}{DEPLOYMENT} answered 403 Forbidden",
            api.url
        )),
        "{text}"
    );
    assert!(
        text.contains("cannot patch resource \"deployments\""),
        "{text}"
    );
    assert!(text.ends_with("nothing was changed"), "{text}");
    assert_eq!(collector.kinds(), ["apply_started", "before_recorded"]);
    assert_eq!(
        api.deployment()["spec"]["template"]["spec"]["containers"][0]["image"],
        OLD_IMAGE
    );

    // Junk pod lists after the patch: the change is undone.
    let (text, api, collector) = failing(
        vec![fault(
            "GET",
            PODS,
            Some(1),
            200,
            "{\"kind\":\"PodList\",\"items\":[{\"metadata\":".to_string(),
        )],
        "deployment/web",
        &[],
    )
    .await;
    assert!(
        text.starts_with("the Kubernetes API failed to follow the rollout of deployment/web: GET "),
        "{text}"
    );
    assert!(
        text.contains("/api/v1/namespaces/shop/pods?labelSelector=app.kubernetes.io%2Fname%3Dweb"),
        "{text}"
    );
    assert!(
        text.contains("the answer is not a PodList as the Kubernetes API returns it"),
        "{text}"
    );
    assert!(text.ends_with(&format!("the pod template was patched back to {OLD_IMAGE} (kubectl rollout status deployment/web -n shop follows that rollout)")), "{text}");
    let patches = api.patches();
    assert_eq!(patches.len(), 2);
    let undo: Value = serde_json::from_str(&patches[1].body).expect("JSON");
    assert_eq!(
        undo["spec"]["template"]["spec"]["containers"][0]["image"],
        OLD_IMAGE
    );
    assert_eq!(
        collector.kinds(),
        [
            "apply_started",
            "before_recorded",
            "template_patched",
            "apply_aborted"
        ]
    );
}

#[tokio::test]
async fn the_namespace_comes_from_the_context_and_docker_names_refuse_kubernetes_flags() {
    // No -n: the kubeconfig context's namespace (shop); `deploy/` works.
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let (server, _) = Collector::start(Some(approved())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    let mut args = apply_args(&kubeconfig, &["--context", "replay"]);
    args[2] = "deploy/web".into();
    let out = upid(&server, &args).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(out.success);
    assert!(api.seen().iter().any(|s| s.path == DEPLOYMENT));

    // An unknown context is a configuration error, before any request.
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let kubeconfig = api.kubeconfig(dir.path());
    let text = upid(&server, &apply_args(&kubeconfig, &["--context", "prod"]))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        text.starts_with(&format!(
            "no Kubernetes API to talk to: the kubeconfig {}, context \"prod\"",
            kubeconfig.display()
        )),
        "{text}"
    );
    assert!(api.seen().is_empty());

    // A Docker container name with Kubernetes flags: refused, and Docker is
    // never asked.
    let text = upid(
        &server,
        &[
            "updates".into(),
            "apply".into(),
            "web".into(),
            "-n".into(),
            NS.into(),
        ],
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert_eq!(
        text,
        "--namespace applies only to a Kubernetes workload (KIND/NAME, such as deployment/web); \"web\" is a Docker container name; nothing was changed"
    );
    // The rollout timeout is Kubernetes' too: refused, not silently ignored.
    let text = upid(
        &server,
        &[
            "updates".into(),
            "apply".into(),
            "web".into(),
            "--rollout-timeout".into(),
            "1m".into(),
            "--context".into(),
            "replay".into(),
        ],
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert_eq!(
        text,
        "--context, --rollout-timeout apply only to a Kubernetes workload (KIND/NAME, such as deployment/web); \"web\" is a Docker container name; nothing was changed"
    );
    // An unknown kind says what works.
    let text = upid(
        &server,
        &["updates".into(), "apply".into(), "pod/web-1".into()],
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(text.contains("`pod` is not a workload kind upid can update; use deployment (deploy), statefulset (sts), daemonset (ds)"), "{text}");
}

#[tokio::test]
async fn a_statefulset_rolls_by_revision_and_keeps_the_templates_spelling() {
    const STATEFULSET: &str = "/apis/apps/v1/namespaces/shop/statefulsets/db";
    let api = ApiServer::serve(
        "statefulset-db.json",
        STATEFULSET,
        "scenario-statefulset.json",
        Vec::new(),
    )
    .await;
    let decision = v1::UpdateDecision {
        namespace: NS.into(),
        workload_kind: "StatefulSet".into(),
        workload: "db".into(),
        container: "postgres".into(),
        current: "docker.io/library/postgres:16.3".into(),
        candidate: Some("docker.io/library/postgres:16.4".into()),
        change: "patch".into(),
        decision: "approve".into(),
        reason: "16.4 is a patch update from 16.3; the default policy approves patch updates."
            .into(),
        ..Default::default()
    };
    let (server, collector) = Collector::start(Some(decision)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    // One container: --container is not needed.
    let mut args = apply_args(&kubeconfig, &["-o", "json"]);
    args[2] = "sts/db".into();
    args.drain(3..5);
    let out = upid(&server, &args)
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let report = json_of(&out);
    assert!(out.success, "{report:#}");
    assert_eq!(report["verdict"], "healthy", "{report:#}");
    // The template said `postgres:16.3`; it says `postgres:16.4` now, not
    // the collector's fully qualified name.
    assert_eq!(report["to_image"], "postgres:16.4");
    let patches = api.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].path, STATEFULSET);
    let body: Value = serde_json::from_str(&patches[0].body).expect("JSON");
    assert_eq!(
        body["spec"],
        json!({"template": {"spec": {"containers": [{"name": "postgres", "image": "postgres:16.4"}]}}})
    );
    let k = &report["kubernetes"];
    assert_eq!(k["target"], "shop/statefulset/db");
    assert_eq!(
        k["rollout"],
        "partitioned roll out complete: 2 new pods have been updated..."
    );
    assert_eq!(
        (k["from_revision"].as_str(), k["to_revision"].as_str()),
        (Some("revision db-5f8c7d9b6"), Some("revision db-7b9d6c8f5"))
    );
    assert_eq!(k["old_pods"], json!(["db-0", "db-1"]));
    assert_eq!(k["new_pods"], json!(["db-0", "db-1"]));
    // The pods of each revision were asked for by controller-revision-hash.
    let selectors: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.path == PODS)
        .filter_map(|s| s.query.get("labelSelector").cloned())
        .collect();
    assert_eq!(
        selectors.first().map(String::as_str),
        Some(
            "app.kubernetes.io/name=db,app.kubernetes.io/part-of=shop,controller-revision-hash=db-5f8c7d9b6"
        )
    );
    assert!(
        selectors
            .iter()
            .any(|s| s.ends_with("controller-revision-hash=db-7b9d6c8f5")),
        "{selectors:?}"
    );
    assert!(api.seen().iter().all(|s| s.path != REPLICASETS));
    assert_eq!(
        collector.kinds(),
        [
            "apply_started",
            "before_recorded",
            "template_patched",
            "rollout_completed",
            "gate_passed"
        ]
    );
    assert!(
        collector
            .events()
            .iter()
            .all(|e| e.target == "shop/statefulset/db")
    );
    // The ids of both revisions' postgres containers (a pod keeps its name
    // across revisions, not its container).
    assert_eq!(collector.events()[0].container_ids.len(), 4);
}

/// The mean of `points` per replica: (millicores, bytes), and the peak bytes.
fn per_replica(points: &[(f64, u64)]) -> (f64, u64, u64) {
    let n = points.len() as f64;
    let cores = points.iter().map(|p| p.0).sum::<f64>() / n;
    let bytes = points.iter().map(|p| u128::from(p.1)).sum::<u128>() / points.len() as u128;
    let peak = points.iter().map(|p| p.1).max().unwrap_or_default();
    (
        cores * 1000.0,
        u64::try_from(bytes).unwrap_or(u64::MAX),
        peak,
    )
}

#[tokio::test]
async fn cpu_and_memory_per_replica_come_from_the_collector_over_the_two_windows() {
    const SERIES: &str = "series-web-similar.json";
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let (server, collector) = Collector::start(Some(approved())).await;
    collector.serve_series(SERIES, |_| true);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());

    let out = upid(&server, &apply_args(&kubeconfig, &["-o", "json"]))
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let report = json_of(&out);
    assert!(out.success, "{report:#}");
    assert_eq!(report["verdict"], "healthy", "{report:#}");

    // The numbers are the recorded points' means per replica.
    let (old_m, old_b, old_peak) = per_replica(&recorded(SERIES, &OLD_PODS));
    let (new_m, new_b, new_peak) = per_replica(&recorded(SERIES, &NEW_PODS));
    let cpu = check(&report, "cpu_per_replica");
    assert_eq!(cpu["outcome"], "pass", "{cpu}");
    assert_eq!(
        cpu["before"],
        format!("{old_m:.0} millicores (18 samples from 3 containers)")
    );
    assert_eq!(
        cpu["after"],
        format!("{new_m:.0} millicores (18 samples from 3 containers)")
    );
    let before_cores = cpu["before_value"].as_f64().unwrap_or_default();
    assert!((before_cores - old_m / 1000.0).abs() < 1e-9, "{cpu}");
    let after_cores = cpu["after_value"].as_f64().unwrap_or_default();
    assert!((after_cores - new_m / 1000.0).abs() < 1e-9, "{cpu}");
    assert!(
        cpu["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!(
                "CPU per replica {:.3} → {:.3} cores",
                old_m / 1000.0,
                new_m / 1000.0
            )),
        "{cpu}"
    );
    let memory = check(&report, "memory_per_replica");
    assert_eq!(memory["outcome"], "pass", "{memory}");
    assert_eq!(memory["before_value"].as_f64(), Some(old_b as f64));
    assert_eq!(memory["after_value"].as_f64(), Some(new_b as f64));
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1024.0 / 1024.0);
    assert_eq!(
        memory["before"],
        format!(
            "{} mean, {} peak (18 samples from 3 containers)",
            mib(old_b),
            mib(old_peak)
        )
    );
    assert_eq!(
        memory["after"],
        format!(
            "{} mean, {} peak (18 samples from 3 containers)",
            mib(new_b),
            mib(new_peak)
        )
    );

    // Asked for: the old containers over the BEFORE window, then the new
    // ones over the gate window, which starts after it, at a 1 s step.
    let asked = collector.series_asked();
    assert_eq!(asked.len(), 6, "{asked:#?}");
    let ids = |a: &[v1::GetContainerSeriesRequest]| {
        let mut ids: Vec<String> = a.iter().map(|r| r.id.clone()).collect();
        ids.sort();
        ids
    };
    let sorted = |pods: &[&str]| {
        let mut ids: Vec<String> = pods.iter().map(|p| app_id(p)).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&asked[..3]), sorted(&OLD_PODS));
    assert_eq!(ids(&asked[3..]), sorted(&NEW_PODS));
    assert!(
        asked
            .iter()
            .all(|r| r.step_ns == 1_000_000_000 && r.start_unix_ns < r.end_unix_ns)
    );
    assert!(asked[..3].iter().all(
        |r| (r.start_unix_ns, r.end_unix_ns) == (asked[0].start_unix_ns, asked[0].end_unix_ns)
    ));
    assert!(asked[3..].iter().all(
        |r| (r.start_unix_ns, r.end_unix_ns) == (asked[3].start_unix_ns, asked[3].end_unix_ns)
    ));
    assert!(asked[0].end_unix_ns <= asked[3].start_unix_ns, "{asked:#?}");
    // The old pods' history is read back as far as the gate window is long
    // (150 ms here) although the BEFORE window was 0 s: both sides of the
    // comparison span the same time, and nobody waited for it.
    assert!(
        asked[0].end_unix_ns - asked[0].start_unix_ns >= 150_000_000,
        "{asked:#?}"
    );

    // The gate's event says where the numbers came from.
    let events = collector.events();
    let gate = message_of(&events, "gate_passed");
    assert!(
        gate.contains(&format!(
            "; before: {old_m:.0} millicores, {} (peak {}) per replica, 18 samples from 3 containers; after: {new_m:.0} millicores",
            mib(old_b),
            mib(old_peak)
        )),
        "{gate}"
    );
}

#[tokio::test]
async fn without_samples_for_the_new_pods_the_checks_say_which_nodes_and_the_verdict_stands() {
    // The agents reported the old containers, not the new ones.
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let (server, collector) = Collector::start(Some(approved())).await;
    collector.serve_series("series-web-similar.json", |pod| OLD_PODS.contains(&pod));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    let out = upid(&server, &apply_args(&kubeconfig, &["-o", "json"]))
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let report = json_of(&out);
    assert!(out.success, "{report:#}");
    assert_eq!(report["verdict"], "healthy", "{report:#}");
    assert_eq!(report["rolled_back"], false);
    for name in ["cpu_per_replica", "memory_per_replica"] {
        let c = check(&report, name);
        assert_eq!(c["outcome"], "skipped", "{c}");
        assert!(
            c["before"]
                .as_str()
                .unwrap_or_default()
                .ends_with("(18 samples from 3 containers)"),
            "{c}"
        );
        assert_eq!(c["after"], "not measured");
        let reason = c["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(
                "not measured: after: no samples from the collector in the gate window ("
            ),
            "{reason}"
        );
        for pod in NEW_PODS {
            assert!(
                reason.contains(&format!("{} (pod {pod} on worker-", &app_id(pod)[..12])),
                "{reason}"
            );
        }
        assert!(
            reason.ends_with("is upid-agent running on nodes worker-1, worker-2, worker-3?"),
            "{reason}"
        );
    }
    // The other checks judged as before.
    assert_eq!(check(&report, "ready_replicas")["after"], "3/3 ready");
    assert_eq!(check(&report, "restarts")["outcome"], "pass");
}

#[tokio::test]
async fn memory_per_replica_doubled_is_degraded_and_rolled_back_on_request() {
    const SERIES: &str = "series-web-memory-doubled.json";
    let dir = tempfile::tempdir().expect("temp dir");

    // By default a degraded update is kept, with a warning.
    let api = ApiServer::start("scenario-healthy.json", Vec::new()).await;
    let (server, collector) = Collector::start(Some(approved())).await;
    collector.serve_series(SERIES, |_| true);
    let kubeconfig = api.kubeconfig(dir.path());
    let out = upid(&server, &apply_args(&kubeconfig, &["-o", "json"]))
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let report = json_of(&out);
    assert!(out.success, "a kept update exits zero: {report:#}");
    assert_eq!(report["verdict"], "degraded", "{report:#}");
    assert_eq!(report["rolled_back"], false);
    let (_, old_b, _) = per_replica(&recorded(SERIES, &OLD_PODS));
    let (_, new_b, _) = per_replica(&recorded(SERIES, &NEW_PODS));
    assert!(
        new_b > 2 * old_b - old_b / 20,
        "the fixture doubles memory: {old_b} -> {new_b}"
    );
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1024.0 / 1024.0);
    let memory = check(&report, "memory_per_replica");
    assert_eq!(memory["outcome"], "degraded", "{memory}");
    assert_eq!(
        memory["reason"],
        format!(
            "memory per replica went from {} to {}: more than 1.5x and at least 32.0 MiB more",
            mib(old_b),
            mib(new_b)
        )
    );
    assert_eq!(check(&report, "cpu_per_replica")["outcome"], "pass");
    assert_eq!(api.patches().len(), 1);
    assert_eq!(
        collector.kinds(),
        [
            "apply_started",
            "before_recorded",
            "template_patched",
            "rollout_completed",
            "gate_degraded",
            "warning"
        ]
    );
    let events = collector.events();
    assert!(
        message_of(&events, "gate_degraded")
            .starts_with("degraded: memory_per_replica: memory per replica went from"),
        "{events:#?}"
    );

    // --rollback-on-degraded rolls it back.
    let api = ApiServer::start("scenario-healthy-then-rollback.json", Vec::new()).await;
    let (server, collector) = Collector::start(Some(approved())).await;
    collector.serve_series(SERIES, |_| true);
    let kubeconfig = api.kubeconfig(dir.path());
    let out = upid(
        &server,
        &apply_args(&kubeconfig, &["--rollback-on-degraded", "-o", "json"]),
    )
    .await
    .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let report = json_of(&out);
    assert!(
        !out.success,
        "a rolled back update exits non-zero: {report:#}"
    );
    assert_eq!(report["verdict"], "degraded");
    assert_eq!(report["rolled_back"], true);
    assert_eq!(report["kubernetes"]["rollout_completed"], true);
    let patches = api.patches();
    assert_eq!(patches.len(), 2, "{patches:#?}");
    let rollback: Value = serde_json::from_str(&patches[1].body).expect("JSON");
    assert_eq!(
        rollback["spec"],
        json!({"template": {"spec": {"containers": [{"name": "app", "image": OLD_IMAGE}]}}})
    );
    let cause = rollback["metadata"]["annotations"]["kubernetes.io/change-cause"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cause.ends_with(&format!("(gate degraded on {NEW_IMAGE})")),
        "{cause}"
    );
    assert_eq!(
        collector.kinds(),
        [
            "apply_started",
            "before_recorded",
            "template_patched",
            "rollout_completed",
            "gate_degraded",
            "rollback_started",
            "rolled_back"
        ]
    );
    let events = collector.events();
    assert!(message_of(&events, "gate_degraded").ends_with("; rolling back"));
    assert!(
        message_of(&events, "rolled_back").starts_with(&format!(
            "deployment/web runs {OLD_IMAGE} again: deployment \"web\" successfully rolled out (revision 9, 3/3 ready"
        )),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_daemonset_rolls_node_by_node_to_completion_and_passes_the_gate() {
    const DAEMONSET: &str = "/apis/apps/v1/namespaces/shop/daemonsets/node-exporter";
    const OLD: &str = "quay.io/prometheus/node-exporter:v1.8.1";
    const NEW: &str = "quay.io/prometheus/node-exporter:v1.8.2";
    let api = ApiServer::serve(
        "daemonset-node-exporter.json",
        DAEMONSET,
        "scenario-daemonset.json",
        Vec::new(),
    )
    .await;
    let decision = v1::UpdateDecision {
        namespace: NS.into(),
        workload_kind: "DaemonSet".into(),
        workload: "node-exporter".into(),
        container: "node-exporter".into(),
        current: OLD.into(),
        candidate: Some(NEW.into()),
        change: "patch".into(),
        decision: "approve".into(),
        reason: "v1.8.2 is a patch update from v1.8.1; the default policy approves patch updates."
            .into(),
        ..Default::default()
    };
    let (server, collector) = Collector::start(Some(decision)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    let mut args = apply_args(&kubeconfig, &["-o", "json"]);
    args[2] = "ds/node-exporter".into();
    args.drain(3..5);
    let out = upid(&server, &args)
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let report = json_of(&out);
    assert!(out.success, "{report:#}");
    assert_eq!(report["verdict"], "healthy", "{report:#}");
    assert_eq!(report["to_image"], NEW);
    let k = &report["kubernetes"];
    assert_eq!(k["target"], "shop/daemonset/node-exporter");
    assert_eq!(k["rollout_completed"], true);
    assert_eq!(
        k["rollout"],
        "daemon set \"node-exporter\" successfully rolled out"
    );
    assert_eq!(
        (k["from_revision"].as_str(), k["to_revision"].as_str()),
        (Some("generation 4"), Some("generation 5"))
    );
    assert_eq!(
        k["old_pods"],
        json!([
            "node-exporter-4kq7d",
            "node-exporter-9xw2m",
            "node-exporter-t6h8p"
        ])
    );
    assert_eq!(
        k["new_pods"],
        json!([
            "node-exporter-b2n5r",
            "node-exporter-j7c4v",
            "node-exporter-z8f3k"
        ])
    );
    assert_eq!(k["nodes"], json!(["worker-1", "worker-2", "worker-3"]));
    assert_eq!(check(&report, "ready_replicas")["after"], "3/3 ready");
    assert_eq!(check(&report, "health")["after"], "healthy");
    assert_eq!(check(&report, "restarts")["outcome"], "pass");

    // One PATCH of the DaemonSet's template; the rollout was followed
    // through every recorded state (updated, then available, node by
    // node) until complete.
    let patches = api.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].path, DAEMONSET);
    let body: Value = serde_json::from_str(&patches[0].body).expect("JSON");
    assert_eq!(
        body["spec"],
        json!({"template": {"spec": {"containers": [{"name": "node-exporter", "image": NEW}]}}})
    );
    let gets = api
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path == DAEMONSET)
        .count();
    assert!(
        gets >= 2 + 8,
        "{gets} GETs: the 8 recorded states were not all seen"
    );
    // Its pods are asked for by the selector alone (a DaemonSet's are
    // told apart by owner), never through ReplicaSets.
    let selectors: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.path == PODS)
        .filter_map(|s| s.query.get("labelSelector").cloned())
        .collect();
    assert!(
        selectors
            .iter()
            .all(|s| s == "app.kubernetes.io/name=node-exporter"),
        "{selectors:?}"
    );
    assert!(api.seen().iter().all(|s| s.path != REPLICASETS));
    assert_eq!(
        collector.kinds(),
        [
            "apply_started",
            "before_recorded",
            "template_patched",
            "rollout_completed",
            "gate_passed"
        ]
    );
    let events = collector.events();
    assert!(
        events
            .iter()
            .all(|e| e.target == "shop/daemonset/node-exporter")
    );
    assert!(
        message_of(&events, "rollout_completed").starts_with(
            "daemon set \"node-exporter\" successfully rolled out (generation 5, after "
        ),
        "{events:#?}"
    );
    assert_eq!(events[0].container_ids.len(), 6);
}

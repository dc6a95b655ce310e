//! The Kubernetes inventory source against a REPLAY of API server responses.
//!
//! No API server can run on this machine, so these tests start a scripted
//! local HTTP/1.1 server (tokio `TcpListener`) that answers like one: the
//! fixtures under `tests/fixtures/kube/` have the exact shape the API server
//! returns (a `PodList` with `metadata.resourceVersion`, pods with real
//! status blocks, `ReplicaSet` and `Job` objects, a chunked watch stream of
//! `{"type":"MODIFIED","object":{…}}` lines with BOOKMARKs, and `Status`
//! 403 bodies as the API server sends them). The server records every
//! request so the tests can check what the agent asked for.
//!
//! The node replayed (`worker-1`) runs: two replicas of Deployment `web`
//! (through ReplicaSet `web-5d8f7c9b4`; app + log-shipper + init container
//! migrate) and a third still initialising, StatefulSet pod `db-0`,
//! DaemonSet pod `node-exporter-7xk2q`, a CronJob's Job pod, a bare pod
//! `debug-shell` and a pod of ReplicaSet `legacy-7c9f8d6b5` that has no
//! Deployment.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use upid::wire::v1;
use upid_agent::inventory::kube::{self as kube_source, KubeConfig};
use upid_agent::inventory::{Source, SourceUpdate};

const NODE: &str = "worker-1";
const PODS: &str = "/api/v1/pods";
const RS_WEB: &str = "/apis/apps/v1/namespaces/shop/replicasets/web-5d8f7c9b4";
const RS_LEGACY: &str = "/apis/apps/v1/namespaces/legacy/replicasets/legacy-7c9f8d6b5";
const JOB_BACKUP: &str = "/apis/batch/v1/namespaces/batch/jobs/backup-28912345";
/// How long any one expected thing may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

// Container ids in the fixtures (sha256 of "<pod>/<container>").
const WEB_APP: &str = "7c59c7f26b70f7f7f047d0b82644eff6dd5026c9b019b76d66503130075803a0";
const WEB_APP_RESTARTED: &str = "ae401c278fd97de333bb45257decdace34a52857c783140a0585c1e01dd1cfe7";
const DEBUG_SHELL: &str = "cb72b8904f4be33591bcbbaed1e2e5216e385515dae4d40e4a2803f1544d828d";

// ---------------------------------------------------------------- replay

/// What the replay server answers on one route.
#[derive(Clone)]
enum Reply {
    /// A whole JSON body with this HTTP status.
    Json(u16, String),
    /// A watch: these lines as `Transfer-Encoding: chunked`, then the
    /// stream stays open (as a real watch does until its timeout).
    Watch(Vec<String>),
    /// The n-th request on the route gets the n-th reply (the last one
    /// from then on).
    Seq(Vec<Reply>),
}

/// One request the server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Query parameters, percent-decoded.
    query: HashMap<String, String>,
}

impl Seen {
    fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("true")
    }
}

/// A scripted API server on 127.0.0.1: routes are `"GET <path>"` or
/// `"WATCH <path>"` (a GET with `watch=true`).
struct Replay {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Replay {
    async fn start(routes: HashMap<String, Reply>) -> Replay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(routes);
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, Arc::clone(&routes), Arc::clone(&log)));
            }
        });
        Replay { url, seen }
    }

    fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        let watch = method == "WATCH";
        self.requests()
            .iter()
            .filter(|r| r.path == path && r.method == "GET" && r.is_watch() == watch)
            .count()
    }
}

/// Answers one connection: one request, then close (or a held watch).
async fn serve(
    mut conn: TcpStream,
    routes: Arc<HashMap<String, Reply>>,
    log: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let seen = Seen {
        method: method.clone(),
        path: path.to_string(),
        query: query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect(),
    };
    let key = if seen.is_watch() {
        format!("WATCH {path}")
    } else {
        format!("{method} {path}")
    };
    let nth = {
        let mut log = log.lock().expect("lock");
        let same = |r: &Seen| {
            format!(
                "{} {}",
                if r.is_watch() {
                    "WATCH"
                } else {
                    r.method.as_str()
                },
                r.path
            )
        };
        let nth = log.iter().filter(|r| same(r) == key).count();
        log.push(seen);
        nth
    };
    let reply = match routes.get(&key).cloned() {
        Some(Reply::Seq(replies)) => replies.get(nth).or(replies.last()).cloned(),
        other => other,
    };
    match reply {
        Some(Reply::Json(status, body)) => respond(&mut conn, status, &body).await,
        Some(Reply::Watch(lines)) => {
            let head = "HTTP/1.1 200 OK\r\nAudit-Id: 5c1f7d2e-replay\r\nCache-Control: no-cache, private\r\n\
                        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for line in lines {
                let data = format!("{line}\n");
                let frame = format!("{:x}\r\n{data}\r\n", data.len());
                if conn.write_all(frame.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = conn.flush().await;
            // A watch stays open until its timeout; the test ends first.
            std::future::pending::<()>().await;
        }
        Some(Reply::Seq(_)) | None => {
            let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}"#;
            respond(&mut conn, 404, body).await;
        }
    }
}

async fn respond(conn: &mut TcpStream, status: u16, body: &str) {
    let text = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let msg = format!(
        "HTTP/1.1 {status} {text}\r\nAudit-Id: 5c1f7d2e-replay\r\nCache-Control: no-cache, private\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(msg.as_bytes()).await;
    let _ = conn.shutdown().await;
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The routes of a healthy cluster; `watch` is what the pod watch streams.
fn cluster(watch: Vec<String>) -> HashMap<String, Reply> {
    HashMap::from([
        (
            format!("GET {PODS}"),
            Reply::Json(200, fixture("pods.json")),
        ),
        (format!("WATCH {PODS}"), Reply::Watch(watch)),
        (
            format!("GET {RS_WEB}"),
            Reply::Json(200, fixture("replicaset-web.json")),
        ),
        (
            format!("GET {RS_LEGACY}"),
            Reply::Json(200, fixture("replicaset-legacy.json")),
        ),
        (
            format!("GET {JOB_BACKUP}"),
            Reply::Json(200, fixture("job-backup.json")),
        ),
    ])
}

fn watch_events() -> Vec<String> {
    fixture("watch-pods.jsonl")
        .lines()
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------- source

struct Running {
    rx: mpsc::Receiver<SourceUpdate>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(client: kube::Client, resync: Duration) -> Running {
        let (tx, rx) = mpsc::channel(256);
        let (stop, shutdown) = watch::channel(false);
        let config = KubeConfig {
            node_name: NODE.to_string(),
            resync,
        };
        let task = tokio::spawn(kube_source::run_with_client(client, config, tx, shutdown));
        Running { rx, stop, task }
    }

    async fn next(&mut self) -> SourceUpdate {
        tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .expect("an update within the deadline")
            .expect("the source is still running")
    }

    async fn full(&mut self) -> Vec<v1::ContainerInfo> {
        match self.next().await {
            SourceUpdate::Full { source, containers } => {
                assert_eq!(source, Source::Kubernetes);
                containers
            }
            other => panic!("expected Full, got {other:?}"),
        }
    }

    /// Stops the source; it must end, and everything it still sent is
    /// returned.
    async fn stop(mut self) -> Vec<SourceUpdate> {
        self.stop.send(true).expect("source listening");
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the source stops on shutdown")
            .expect("the source task did not panic");
        let mut rest = Vec::new();
        while let Some(u) = self.rx.recv().await {
            rest.push(u);
        }
        rest
    }
}

fn by_pod_and_name(
    containers: &[v1::ContainerInfo],
) -> HashMap<(String, String), v1::ContainerInfo> {
    containers
        .iter()
        .map(|c| ((c.pod_name.clone(), c.name.clone()), c.clone()))
        .collect()
}

fn get<'a>(
    m: &'a HashMap<(String, String), v1::ContainerInfo>,
    pod: &str,
    name: &str,
) -> &'a v1::ContainerInfo {
    m.get(&(pod.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no record for {pod}/{name}: {:?}", m.keys()))
}

fn workload(c: &v1::ContainerInfo) -> (v1::WorkloadKind, String, String) {
    let w = c.workload.as_ref().expect("workload");
    let kind = v1::WorkloadKind::try_from(w.kind).expect("known kind");
    (kind, w.namespace.clone(), w.name.clone())
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_node_is_listed_with_every_owner_kind_then_follows_the_watch() {
    let server = Replay::start(cluster(watch_events())).await;
    let mut source = Running::start(server.client(), Duration::from_secs(600));

    let full = source.full().await;
    let m = by_pod_and_name(&full);
    // 2 web pods × 3 containers, db, node-exporter, backup, debug-shell,
    // legacy; the initialising third web pod has no containers yet.
    assert_eq!(full.len(), 11, "{:?}", m.keys());
    assert!(full.iter().all(|c| c.pod_name != "web-5d8f7c9b4-p4n8d"));

    use v1::WorkloadKind as K;
    let owners = [
        ("web-5d8f7c9b4-x2k7p", "app", K::Deployment, "shop", "web"),
        (
            "web-5d8f7c9b4-x2k7p",
            "migrate",
            K::Deployment,
            "shop",
            "web",
        ),
        (
            "web-5d8f7c9b4-k9m2z",
            "log-shipper",
            K::Deployment,
            "shop",
            "web",
        ),
        ("db-0", "postgres", K::StatefulSet, "shop", "db"),
        (
            "node-exporter-7xk2q",
            "node-exporter",
            K::DaemonSet,
            "monitoring",
            "node-exporter",
        ),
        (
            "backup-28912345-6xq2f",
            "backup",
            K::CronJob,
            "batch",
            "backup",
        ),
        ("debug-shell", "shell", K::Pod, "default", "debug-shell"),
        (
            "legacy-7c9f8d6b5-q9w8e",
            "worker",
            K::ReplicaSet,
            "legacy",
            "legacy-7c9f8d6b5",
        ),
    ];
    for (pod, name, kind, ns, wname) in owners {
        let c = get(&m, pod, name);
        assert_eq!(
            workload(c),
            (kind, ns.to_string(), wname.to_string()),
            "{pod}/{name}"
        );
        assert_eq!(
            c.workload.as_ref().expect("workload").detail,
            "",
            "{pod}/{name}"
        );
        assert_eq!(c.namespace, ns);
        assert_eq!(c.sources, vec!["kubernetes".to_string()]);
        assert_eq!(c.runtime, v1::Runtime::Containerd as i32);
        assert_eq!(
            c.container_id.len(),
            64,
            "scheme stripped: {}",
            c.container_id
        );
    }

    // The OOM-killed app: requests, limits, QoS, restart history.
    let app = get(&m, "web-5d8f7c9b4-x2k7p", "app");
    assert_eq!(app.container_id, WEB_APP);
    assert_eq!(app.pod_uid, "0b6e2c4d-8f1a-4a3b-9c5d-7e2f1a0b3c4d");
    assert_eq!(app.qos, v1::QosClass::Burstable as i32);
    assert_eq!(app.cpu_request_millicores, Some(250));
    assert_eq!(app.memory_request_bytes, Some(128 << 20));
    assert_eq!(app.cpu_limit_millicores, Some(1000));
    assert_eq!(app.memory_limit_bytes, Some(256 << 20));
    assert_eq!(app.state, v1::ContainerState::Running as i32);
    assert_eq!(app.restart_count, 3);
    assert!(app.oom_killed);
    assert_eq!(app.last_termination_reason, "OOMKilled");
    assert_eq!(app.exit_code, Some(137));
    assert_eq!(app.health, v1::HealthStatus::Healthy as i32);
    assert_eq!(app.started_unix_ns, Some(1_746_095_507_000_000_000)); // 2025-05-01T10:31:47Z
    assert_eq!(app.finished_unix_ns, Some(1_746_095_505_000_000_000)); // last exit 10:31:45Z
    assert_eq!(
        app.labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("web")
    );
    let image = app.image.as_ref().expect("image");
    assert_eq!(image.reference, "registry.example.com/shop/web:2.4.1");
    assert_eq!(image.repository, "registry.example.com/shop/web");
    assert_eq!(image.tag, "2.4.1");
    assert_eq!(
        image.digest,
        "sha256:3f1a9c0e5b7d2a4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d"
    );
    assert!(
        image
            .image_id
            .starts_with("registry.example.com/shop/web@sha256:")
    );

    // A replica that runs but is not ready.
    let other = get(&m, "web-5d8f7c9b4-k9m2z", "app");
    assert_eq!(other.health, v1::HealthStatus::Unhealthy as i32);
    assert_eq!(other.exit_code, None);
    assert!(!other.oom_killed);

    // Init container: exited, Completed, no readiness.
    let init = get(&m, "web-5d8f7c9b4-x2k7p", "migrate");
    assert_eq!(init.state, v1::ContainerState::Exited as i32);
    assert_eq!(init.state_reason, "Completed");
    assert_eq!(init.exit_code, Some(0));
    assert_eq!(init.health, v1::HealthStatus::None as i32);
    assert_eq!(init.cpu_request_millicores, Some(100));
    assert_eq!(init.cpu_limit_millicores, None);

    let shipper = get(&m, "web-5d8f7c9b4-x2k7p", "log-shipper");
    assert_eq!(shipper.cpu_request_millicores, Some(50));
    assert_eq!(shipper.memory_limit_bytes, Some(64 << 20));

    let db = get(&m, "db-0", "postgres");
    assert_eq!(db.qos, v1::QosClass::Guaranteed as i32);
    assert_eq!(
        (db.cpu_request_millicores, db.cpu_limit_millicores),
        (Some(2000), Some(2000))
    );
    assert_eq!(
        (db.memory_request_bytes, db.memory_limit_bytes),
        (Some(4 << 30), Some(4 << 30))
    );

    let ne = get(&m, "node-exporter-7xk2q", "node-exporter");
    assert_eq!(ne.qos, v1::QosClass::BestEffort as i32);
    assert_eq!(
        (ne.cpu_request_millicores, ne.memory_limit_bytes),
        (None, None)
    );
    assert_eq!((ne.restart_count, ne.exit_code), (1, Some(2)));
    assert_eq!(ne.last_termination_reason, "Error");
    assert!(!ne.oom_killed);

    let backup = get(&m, "backup-28912345-6xq2f", "backup");
    assert_eq!(backup.state, v1::ContainerState::Exited as i32);
    assert_eq!(
        (backup.state_reason.as_str(), backup.exit_code),
        ("Completed", Some(0))
    );

    // Decimal quantities: 0.1 CPU, 129M and 1e9 bytes.
    let legacy = get(&m, "legacy-7c9f8d6b5-q9w8e", "worker");
    assert_eq!(legacy.cpu_request_millicores, Some(100));
    assert_eq!(legacy.cpu_limit_millicores, Some(500));
    assert_eq!(legacy.memory_request_bytes, Some(129_000_000));
    assert_eq!(legacy.memory_limit_bytes, Some(1_000_000_000));

    // The watch: app OOM-killed again (new container id, restart count 4),
    // debug-shell deleted, the third web pod's containers created.
    let restarted = match source.next().await {
        SourceUpdate::Upsert {
            source: Source::Kubernetes,
            container,
        } => container,
        other => panic!("expected the restarted app as Upsert, got {other:?}"),
    };
    assert_eq!(restarted.container_id, WEB_APP_RESTARTED);
    assert_eq!(
        (restarted.pod_name.as_str(), restarted.name.as_str()),
        ("web-5d8f7c9b4-x2k7p", "app")
    );
    assert_eq!(restarted.restart_count, 4);
    assert!(restarted.oom_killed);
    assert_eq!(restarted.last_termination_reason, "OOMKilled");
    assert_eq!(restarted.exit_code, Some(137));
    assert_eq!(restarted.health, v1::HealthStatus::Unhealthy as i32);
    assert_eq!(
        workload(&restarted),
        (K::Deployment, "shop".into(), "web".into())
    );
    let removed = |u: SourceUpdate| match u {
        SourceUpdate::Remove {
            source: Source::Kubernetes,
            container_id,
        } => container_id,
        other => panic!("expected Remove, got {other:?}"),
    };
    assert_eq!(
        removed(source.next().await),
        WEB_APP,
        "the old app container is gone"
    );
    assert_eq!(
        removed(source.next().await),
        DEBUG_SHELL,
        "the deleted pod's container"
    );
    let mut created = Vec::new();
    for _ in 0..3 {
        match source.next().await {
            SourceUpdate::Upsert { container, .. } => created.push(container),
            other => panic!("expected Upserts of the new pod, got {other:?}"),
        }
    }
    let mut names: Vec<&str> = created.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["app", "log-shipper", "migrate"]);
    assert!(created.iter().all(|c| c.pod_name == "web-5d8f7c9b4-p4n8d"));
    let starting = created.iter().find(|c| c.name == "app").expect("app");
    assert_eq!(starting.health, v1::HealthStatus::Starting as i32);

    // What the agent asked the API server.
    let requests = server.requests();
    let list = requests
        .iter()
        .find(|r| r.path == PODS && !r.is_watch())
        .expect("a pod list");
    assert_eq!(
        list.query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=worker-1"),
        "only this node's pods: {list:?}"
    );
    let watch = requests
        .iter()
        .find(|r| r.path == PODS && r.is_watch())
        .expect("a pod watch");
    assert_eq!(
        watch.query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=worker-1")
    );
    assert_eq!(
        watch.query.get("resourceVersion").map(String::as_str),
        Some("48213")
    );
    assert_eq!(
        watch.query.get("allowWatchBookmarks").map(String::as_str),
        Some("true")
    );
    // Three web pods share one ReplicaSet: looked up once (cached).
    assert_eq!(server.count("GET", RS_WEB), 1);
    assert_eq!(server.count("GET", RS_LEGACY), 1);
    assert_eq!(server.count("GET", JOB_BACKUP), 1);

    // No other updates (unchanged containers are not sent again).
    let rest = source.stop().await;
    assert!(rest.is_empty(), "unexpected updates: {rest:?}");
}

#[tokio::test]
async fn a_forbidden_replicaset_degrades_to_the_pod_template_hash() {
    let mut routes = cluster(Vec::new());
    routes.insert(
        format!("GET {RS_WEB}"),
        Reply::Json(403, fixture("forbidden-replicaset.json")),
    );
    let server = Replay::start(routes).await;
    let mut source = Running::start(server.client(), Duration::from_secs(600));

    let reason = match source.next().await {
        SourceUpdate::Degraded {
            source: Source::Kubernetes,
            reason,
        } => reason,
        other => panic!("expected Degraded for the ReplicaSet, got {other:?}"),
    };
    assert!(reason.contains("replicasets.apps"), "{reason}");
    assert!(reason.contains("403"), "{reason}");
    assert!(
        reason.contains("get on replicasets (API group apps)"),
        "says what to grant: {reason}"
    );

    // Every pod is still listed; the web pods' Deployment is guessed.
    let full = source.full().await;
    assert_eq!(full.len(), 11);
    let m = by_pod_and_name(&full);
    for pod in ["web-5d8f7c9b4-x2k7p", "web-5d8f7c9b4-k9m2z"] {
        let c = get(&m, pod, "app");
        assert_eq!(
            workload(c),
            (v1::WorkloadKind::Deployment, "shop".into(), "web".into())
        );
        assert_eq!(
            c.workload.as_ref().expect("workload").detail,
            "replicasets.apps \"web-5d8f7c9b4\" is forbidden: resolved from pod-template-hash"
        );
    }
    // The other owners are unaffected.
    let legacy = get(&m, "legacy-7c9f8d6b5-q9w8e", "worker");
    assert_eq!(workload(legacy).0, v1::WorkloadKind::ReplicaSet);
    assert_eq!(
        workload(get(&m, "backup-28912345-6xq2f", "backup")).0,
        v1::WorkloadKind::CronJob
    );
    // The failure is remembered: one GET for both pods.
    assert_eq!(server.count("GET", RS_WEB), 1);

    // One Degraded for the problem, not one per pod; the source ends cleanly.
    let rest = source.stop().await;
    assert!(rest.is_empty(), "unexpected updates: {rest:?}");
}

#[tokio::test]
async fn a_forbidden_job_and_a_vanished_replicaset_fall_back_to_best_guesses() {
    let mut routes = cluster(Vec::new());
    routes.insert(
        format!("GET {JOB_BACKUP}"),
        Reply::Json(403, fixture("forbidden-job.json")),
    );
    routes.insert(
        format!("GET {RS_LEGACY}"),
        Reply::Json(404, fixture("notfound-replicaset.json")),
    );
    let server = Replay::start(routes).await;
    let mut source = Running::start(server.client(), Duration::from_secs(600));

    // The missing permission is reported; the 404 (an owner deleted a
    // moment ago, nothing for anyone to fix) is not.
    let reason = match source.next().await {
        SourceUpdate::Degraded { reason, .. } => reason,
        other => panic!("expected Degraded for the Job, got {other:?}"),
    };
    assert!(reason.contains("jobs.batch"), "{reason}");
    assert!(reason.contains("get on jobs (API group batch)"), "{reason}");
    let full = source.full().await;
    assert_eq!(full.len(), 11);
    let m = by_pod_and_name(&full);

    let backup = get(&m, "backup-28912345-6xq2f", "backup");
    assert_eq!(
        workload(backup),
        (
            v1::WorkloadKind::Job,
            "batch".into(),
            "backup-28912345".into()
        )
    );
    assert_eq!(
        backup.workload.as_ref().expect("workload").detail,
        "jobs.batch \"backup-28912345\" is forbidden: a CronJob above it is unknown"
    );
    let legacy = get(&m, "legacy-7c9f8d6b5-q9w8e", "worker");
    assert_eq!(
        workload(legacy),
        (
            v1::WorkloadKind::Deployment,
            "legacy".into(),
            "legacy".into()
        )
    );
    assert_eq!(
        legacy.workload.as_ref().expect("workload").detail,
        "replicasets.apps \"legacy-7c9f8d6b5\" not found: resolved from pod-template-hash"
    );
    // The web pods resolve normally.
    assert_eq!(
        workload(get(&m, "web-5d8f7c9b4-k9m2z", "app")),
        (v1::WorkloadKind::Deployment, "shop".into(), "web".into())
    );
    let rest = source.stop().await;
    assert!(rest.is_empty(), "unexpected updates: {rest:?}");
}

#[tokio::test]
async fn a_forbidden_pod_list_is_reported_once_retried_and_recovers() {
    // Forbidden twice (RBAC not applied yet), then allowed.
    let forbidden = Reply::Json(403, fixture("forbidden-pods.json"));
    let mut routes = cluster(Vec::new());
    routes.insert(
        format!("GET {PODS}"),
        Reply::Seq(vec![
            forbidden.clone(),
            forbidden,
            Reply::Json(200, fixture("pods.json")),
        ]),
    );
    let server = Replay::start(routes).await;
    let mut source = Running::start(server.client(), Duration::from_secs(600));

    let reason = match source.next().await {
        SourceUpdate::Degraded {
            source: Source::Kubernetes,
            reason,
        } => reason,
        other => panic!("expected Degraded for the pod list, got {other:?}"),
    };
    assert!(reason.contains("403 Forbidden"), "{reason}");
    assert!(reason.contains("worker-1"), "{reason}");
    assert!(
        reason.contains(r#"resources ["pods"] verbs ["get", "list", "watch"]"#),
        "names the missing RBAC rule: {reason}"
    );
    // Retried with backoff; one Degraded, not one per retry.
    assert_eq!(
        source.next().await,
        SourceUpdate::Recovered {
            source: Source::Kubernetes
        }
    );
    assert_eq!(server.count("GET", PODS), 3);
    assert_eq!(source.full().await.len(), 11);
    let rest = source.stop().await;
    assert!(rest.is_empty(), "unexpected updates: {rest:?}");
}

#[tokio::test]
async fn the_nodes_labels_are_sent_before_its_pods_and_a_missing_node_sends_none() {
    let mut routes = cluster(Vec::new());
    routes.insert(
        "GET /api/v1/nodes/worker-1".to_owned(),
        Reply::Json(200, fixture("node-worker-1.json")),
    );
    let server = Replay::start(routes).await;
    let mut source = Running::start(server.client(), Duration::from_secs(3600));
    match source.next().await {
        SourceUpdate::NodeLabels { source: s, labels } => {
            assert_eq!(s, Source::Kubernetes);
            assert_eq!(
                labels
                    .get("node.kubernetes.io/instance-type")
                    .map(String::as_str),
                Some("m5.xlarge")
            );
            assert_eq!(
                labels.get("karpenter.sh/capacity-type").map(String::as_str),
                Some("spot")
            );
            assert_eq!(labels.len(), 9);
        }
        other => panic!("expected NodeLabels, got {other:?}"),
    }
    assert_eq!(source.full().await.len(), 11);
    source.stop().await;

    // The cluster's other tests serve no Node (404): no labels, pods as
    // before.
    let server = Replay::start(cluster(Vec::new())).await;
    let mut source = Running::start(server.client(), Duration::from_secs(3600));
    assert_eq!(source.full().await.len(), 11);
    assert_eq!(server.count("GET", "/api/v1/nodes/worker-1"), 1);
    source.stop().await;
}

#[tokio::test]
async fn a_resync_lists_the_node_again() {
    let server = Replay::start(cluster(Vec::new())).await;
    let mut source = Running::start(server.client(), Duration::from_secs(1));
    let first = source.full().await;
    let second = source.full().await;
    let ids = |v: &[v1::ContainerInfo]| {
        let mut ids: Vec<String> = v.iter().map(|c| c.container_id.clone()).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids(&first), ids(&second));
    assert_eq!(first.len(), 11);
    assert!(server.count("GET", PODS) >= 2);
    // Owners were cached across the relist.
    assert_eq!(server.count("GET", RS_WEB), 1);
    source.stop().await;
}

#[tokio::test]
async fn without_a_node_name_nothing_is_watched() {
    let server = Replay::start(HashMap::new()).await;
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop, shutdown) = watch::channel(false);
    let config = KubeConfig {
        node_name: String::new(),
        ..KubeConfig::default()
    };
    tokio::time::timeout(
        DEADLINE,
        kube_source::run_with_client(server.client(), config, tx, shutdown),
    )
    .await
    .expect("returns at once");
    match rx.recv().await {
        Some(SourceUpdate::Degraded { reason, .. }) => {
            assert!(reason.contains("spec.nodeName"), "{reason}");
        }
        other => panic!("expected Degraded, got {other:?}"),
    }
    assert!(
        server.requests().is_empty(),
        "would have watched every pod of the cluster"
    );
}

#[tokio::test]
async fn outside_a_cluster_the_source_reports_degraded_and_returns() {
    let home_config = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".kube/config"))
        .is_some_and(|p| p.exists());
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("KUBECONFIG").is_some()
        || home_config
    {
        eprintln!(
            "SKIPPED outside_a_cluster_the_source_reports_degraded_and_returns: \
             this machine has a Kubernetes config (KUBERNETES_SERVICE_HOST, KUBECONFIG or ~/.kube/config)"
        );
        return;
    }
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop, shutdown) = watch::channel(false);
    let config = KubeConfig {
        node_name: NODE.to_string(),
        ..KubeConfig::default()
    };
    tokio::time::timeout(DEADLINE, kube_source::run(config, tx, shutdown))
        .await
        .expect("returns at once");
    let got: Vec<SourceUpdate> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(
        got,
        vec![SourceUpdate::Degraded {
            source: Source::Kubernetes,
            reason: "not in a Kubernetes cluster: no in-cluster config and no kubeconfig".into(),
        }]
    );
}

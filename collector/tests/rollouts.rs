//! Rollouts found in stored history and judged by the health gate, on a
//! real DuckDB store file: inventory records and lifecycle events go in
//! through `Store::ingest` (what agents send), `usage` rows are written
//! straight into the table (what the rollup writes), and `ListRollouts`
//! reads them back. Every expected number is worked out by hand from the
//! history below.
//!
//! The history, around `T` (every change but one) and `NOW = T + 2 h`:
//! - `shop/web` (compose): `web:1.0` stopped at T−5 s, `web:1.1` started at
//!   T, healthy, a little more CPU and memory: **healthy**.
//! - `shop/api` (Deployment, 2 pods): `api:2.0` → `api:2.1` at T; a new
//!   pod's container is OOM-killed (exit 137) at T+5 min and restarted in
//!   the same pod: **failed**, roll back to `api:2.0`. An old pod's
//!   container restarted and an old replica rescheduled during the rollout
//!   are not a rollback.
//! - `cache` (plain Docker, applied by `upid updates apply`: the old
//!   container was renamed `cache-upid-rollback`): working set 100 → 200
//!   MiB: **degraded**.
//! - `shop/queue` (compose): the old container's stop (exit 143 at T−3 s)
//!   is not a crash; the new one exits 2 and restarts: **failed**.
//! - `edge/proxy` (compose): `proxy:latest` re-pushed: the change is told
//!   by image id, the rollback pinned by digest; no usage: CPU and memory
//!   skipped, **healthy**.
//! - `shop/db` (compose): recreated with the same image: **not listed**.
//! - `shop/worker` (compose): `1.0` → `1.1` at T−1 h, `1.1` → `1.2` at
//!   NOW−10 min: the latest is **in progress**, provisional.

mod common;

use std::sync::Arc;

use common::TempDir;
use tonic::{Code, Request};
use upid::wire::v1::query_service_server::QueryService;
use upid::wire::v1::{
    self, Batch, ContainerInfo, ContainerState, EventKind, HealthStatus, ImageRef, Inventory,
    LifecycleEvent, NodeSample, Runtime, Snapshot, WorkloadKind, WorkloadRef,
};
use upid_collector::api::query::QueryApi;
use upid_collector::api::{ConnectedAgents, ServerFacts};
use upid_collector::store::{IngestOutcome, Store};
use upid_collector::updates::rollouts::list_rollouts;

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// The change of most workloads; a whole minute, so usage rows align.
const T: i64 = 1_800_000_000 * SEC;
const NOW: i64 = T + 2 * HOUR;
const MIB: u64 = 1 << 20;
/// The default window: 30 min.
const W_S: u64 = 1800;

/// A 64-character container id from a short name.
fn id(name: &str) -> String {
    format!("{name:0<64}")
}

/// One container's final record.
struct C {
    id: &'static str,
    name: &'static str,
    namespace: &'static str,
    kind: WorkloadKind,
    workload: &'static str,
    pod_uid: &'static str,
    image: &'static str,
    image_id: &'static str,
    digest: &'static str,
    started: i64,
    /// `Some`: exited then, with this code.
    finished: Option<(i64, i32)>,
    health: HealthStatus,
    restart_count: u32,
}

impl Default for C {
    fn default() -> Self {
        C {
            id: "",
            name: "",
            namespace: "shop",
            kind: WorkloadKind::ComposeService,
            workload: "",
            pod_uid: "",
            image: "",
            image_id: "",
            digest: "",
            started: 0,
            finished: None,
            health: HealthStatus::None,
            restart_count: 0,
        }
    }
}

impl C {
    fn info(&self) -> ContainerInfo {
        let (repository, tag) = self.image.split_once(':').unwrap_or((self.image, ""));
        ContainerInfo {
            container_id: id(self.id),
            runtime: if self.pod_uid.is_empty() {
                Runtime::Docker as i32
            } else {
                Runtime::Containerd as i32
            },
            name: self.name.into(),
            image: Some(ImageRef {
                reference: self.image.into(),
                repository: format!("docker.io/library/{repository}"),
                tag: tag.into(),
                digest: self.digest.into(),
                image_id: self.image_id.into(),
            }),
            state: if self.finished.is_some() {
                ContainerState::Exited as i32
            } else {
                ContainerState::Running as i32
            },
            health: self.health as i32,
            restart_count: self.restart_count,
            exit_code: self.finished.map(|(_, code)| code),
            started_unix_ns: Some(self.started),
            finished_unix_ns: self.finished.map(|(at, _)| at),
            namespace: self.namespace.into(),
            pod_uid: self.pod_uid.into(),
            workload: Some(WorkloadRef {
                kind: self.kind as i32,
                namespace: self.namespace.into(),
                name: self.workload.into(),
                detail: String::new(),
            }),
            ..Default::default()
        }
    }

    /// The start event, and the die event when it exited.
    fn events(&self) -> Vec<LifecycleEvent> {
        let mut out = vec![event(self.id, EventKind::Start, self.started)];
        if let Some((at, code)) = self.finished {
            let mut die = event(self.id, EventKind::Die, at);
            die.exit_code = Some(code);
            out.push(die);
        }
        out
    }
}

fn event(container: &str, kind: EventKind, ts: i64) -> LifecycleEvent {
    LifecycleEvent {
        timestamp_unix_ns: ts,
        container_id: id(container),
        kind: kind as i32,
        ..Default::default()
    }
}

/// Every container of the history.
fn containers() -> Vec<C> {
    let web = |id, image, image_id, started, finished, health| C {
        id,
        name: "shop-web-1",
        workload: "web",
        image,
        image_id,
        started,
        finished,
        health,
        ..C::default()
    };
    let api = |id, pod_uid, image, image_id, started, finished, restart_count| C {
        id,
        name: "app",
        kind: WorkloadKind::Deployment,
        workload: "api",
        pod_uid,
        image,
        image_id,
        started,
        finished,
        health: HealthStatus::Healthy,
        restart_count,
        ..C::default()
    };
    let compose = |id, workload, name, image, image_id, started, finished| C {
        id,
        name,
        workload,
        image,
        image_id,
        started,
        finished,
        ..C::default()
    };
    vec![
        web(
            "a0eb",
            "web:1.0",
            "sha256:web10",
            T - 3 * HOUR,
            Some((T - 5 * SEC, 0)),
            HealthStatus::Healthy,
        ),
        web(
            "b0eb",
            "web:1.1",
            "sha256:web11",
            T,
            None,
            HealthStatus::Healthy,
        ),
        // api: old pods pa1 (a1, restarted during the rollout as a1r) and
        // pa2, an old replica rescheduled as pa3; new pods pb1 (b1, OOM
        // killed, restarted as b1r) and pb2.
        api(
            "a1",
            "pa1",
            "api:2.0",
            "sha256:api20",
            T - 2 * DAY,
            Some((T + 20 * SEC, 1)),
            0,
        ),
        api(
            "a1r",
            "pa1",
            "api:2.0",
            "sha256:api20",
            T + 30 * SEC,
            Some((T + MIN, 143)),
            1,
        ),
        api(
            "a2",
            "pa2",
            "api:2.0",
            "sha256:api20",
            T - 2 * DAY,
            Some((T + 2 * MIN, 143)),
            0,
        ),
        api(
            "a3",
            "pa3",
            "api:2.0",
            "sha256:api20",
            T + 40 * SEC,
            Some((T + 3 * MIN, 143)),
            0,
        ),
        api(
            "b1",
            "pb1",
            "api:2.1",
            "sha256:api21",
            T,
            Some((T + 5 * MIN, 137)),
            0,
        ),
        api(
            "b1r",
            "pb1",
            "api:2.1",
            "sha256:api21",
            T + 5 * MIN + 10 * SEC,
            None,
            1,
        ),
        api("b2", "pb2", "api:2.1", "sha256:api21", T + MIN, None, 0),
        C {
            id: "c0",
            name: "cache-upid-rollback",
            namespace: "",
            kind: WorkloadKind::Container,
            workload: "cache-upid-rollback",
            image: "cache:7.0",
            image_id: "sha256:cache70",
            started: T - DAY,
            finished: Some((T - 10 * SEC, 137)),
            ..C::default()
        },
        C {
            id: "d0",
            name: "cache",
            namespace: "",
            kind: WorkloadKind::Container,
            workload: "cache",
            image: "cache:7.2",
            image_id: "sha256:cache72",
            started: T,
            ..C::default()
        },
        compose(
            "e1",
            "queue",
            "shop-queue-1",
            "queue:3.1",
            "sha256:q31",
            T - DAY,
            Some((T - 3 * SEC, 143)),
        ),
        // Crashed (exit 2) at T+10 min, restarted by Docker at T+10 min 5 s:
        // the record has the latest start.
        C {
            id: "e2",
            name: "shop-queue-1",
            workload: "queue",
            image: "queue:3.2",
            image_id: "sha256:q32",
            started: T + 10 * MIN + 5 * SEC,
            restart_count: 1,
            ..C::default()
        },
        C {
            id: "f1",
            name: "edge-proxy-1",
            namespace: "edge",
            workload: "proxy",
            image: "proxy:latest",
            image_id: "sha256:proxy1",
            digest: "sha256:d1",
            started: T - DAY,
            finished: Some((T - 2 * SEC, 0)),
            ..C::default()
        },
        C {
            id: "f2",
            name: "edge-proxy-1",
            namespace: "edge",
            workload: "proxy",
            image: "proxy:latest",
            image_id: "sha256:proxy2",
            digest: "sha256:d2",
            started: T,
            ..C::default()
        },
        compose(
            "9d1",
            "db",
            "shop-db-1",
            "db:16",
            "sha256:db16",
            T - 10 * DAY,
            Some((T - DAY - 2 * SEC, 0)),
        ),
        compose(
            "9d2",
            "db",
            "shop-db-1",
            "db:16",
            "sha256:db16",
            T - DAY,
            None,
        ),
        compose(
            "0w1",
            "worker",
            "shop-worker-1",
            "worker:1.0",
            "sha256:w10",
            T - 5 * HOUR,
            Some((T - HOUR - 2 * SEC, 0)),
        ),
        compose(
            "0w2",
            "worker",
            "shop-worker-1",
            "worker:1.1",
            "sha256:w11",
            T - HOUR,
            Some((NOW - 10 * MIN - 2 * SEC, 0)),
        ),
        compose(
            "0w3",
            "worker",
            "shop-worker-1",
            "worker:1.2",
            "sha256:w12",
            NOW - 10 * MIN,
            None,
        ),
    ]
}

/// Events besides starts and final exits.
fn more_events() -> Vec<LifecycleEvent> {
    let mut health = event("b0eb", EventKind::HealthChange, T + 20 * SEC);
    health.from = "starting".into();
    health.to = "healthy".into();
    let mut oom = event("b1", EventKind::Oom, T + 5 * MIN);
    oom.detail = "OOMKilled".into();
    let mut b1r = event("b1r", EventKind::Restart, T + 5 * MIN + 10 * SEC);
    b1r.from = "0".into();
    b1r.to = "1".into();
    let mut a1r = event("a1r", EventKind::Restart, T + 30 * SEC);
    a1r.from = "0".into();
    a1r.to = "1".into();
    let mut crash = event("e2", EventKind::Die, T + 10 * MIN);
    crash.exit_code = Some(2);
    vec![
        health,
        oom,
        b1r,
        a1r,
        crash,
        // The queue container's first start (its record has the restart).
        event("e2", EventKind::Start, T),
        event("e2", EventKind::Restart, T + 10 * MIN + 5 * SEC),
    ]
}

/// 1-minute usage rows of `container` from `from` to `to` (exclusive);
/// `oom_at`: the row with one OOM kill.
struct Rows {
    container: &'static str,
    from: i64,
    to: i64,
    cpu: f64,
    ws_mib: u64,
    oom_at: Option<i64>,
}

fn usage() -> Vec<Rows> {
    let rows = |container, from, to, cpu, ws_mib| Rows {
        container,
        from,
        to,
        cpu,
        ws_mib,
        oom_at: None,
    };
    vec![
        rows("a0eb", T - 3 * HOUR, T, 0.2, 100),
        rows("b0eb", T, NOW, 0.25, 110),
        rows("a1", T - 2 * HOUR, T, 0.5, 200),
        rows("a2", T - 2 * HOUR, T + 2 * MIN, 0.5, 200),
        Rows {
            oom_at: Some(T + 4 * MIN),
            ..rows("b1", T, T + 5 * MIN, 0.5, 200)
        },
        rows("b1r", T + 6 * MIN, NOW, 0.5, 200),
        rows("b2", T + MIN, NOW, 0.5, 200),
        rows("c0", T - 2 * HOUR, T, 0.1, 100),
        rows("d0", T, NOW, 0.1, 200),
        rows("0w1", T - 5 * HOUR, T - HOUR, 0.1, 50),
        rows("0w2", T - HOUR, NOW - 10 * MIN, 0.1, 50),
        rows("0w3", NOW - 10 * MIN, NOW, 0.1, 50),
    ]
}

/// A store file holding the whole history.
fn store(dir: &TempDir) -> Store {
    let path = dir.path("upid.duckdb");
    {
        let mut store = Store::open(&path).expect("create store");
        let all = containers();
        let mut events: Vec<LifecycleEvent> = all.iter().flat_map(C::events).collect();
        events.extend(more_events());
        let batch = Batch {
            agent_id: "agent-1".into(),
            node_name: "node-1".into(),
            seq: 1,
            snapshot: Some(Snapshot {
                node: Some(NodeSample {
                    node_name: "node-1".into(),
                    timestamp_unix_ns: NOW,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            spool: None,
            inventory: Some(Inventory {
                full: true,
                containers: all.iter().map(C::info).collect(),
                events,
                ..Default::default()
            }),
        };
        let outcomes = store.ingest(&[batch]).expect("ingest");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, IngestOutcome::Stored { .. })),
            "{outcomes:?}"
        );
    }
    {
        let conn = duckdb::Connection::open(&path).expect("raw open");
        for r in usage() {
            let oom = r.oom_at.unwrap_or(-1);
            let key = id(r.container);
            conn.execute_batch(&format!(
                "INSERT INTO usage SELECT '{key}', 'agent', ts, 60.0, 'node-1', '{key}', 'ns',
                    'pod', 'c', 'Deployment', 'w', 'img',
                    {cpu}::DOUBLE, NULL, ({ws} * 1048576)::UBIGINT, ({ws} * 1048576)::UBIGINT,
                    (CASE WHEN ts = {oom} THEN 1 ELSE 0 END)::UBIGINT,
                    NULL, NULL, NULL, NULL, NULL, NULL
                 FROM (SELECT range AS ts FROM range({from}::BIGINT, {to}::BIGINT, {MIN}::BIGINT))",
                cpu = r.cpu,
                ws = r.ws_mib,
                from = r.from,
                to = r.to,
            ))
            .expect("insert usage");
        }
    }
    Store::open(&path).expect("reopen store")
}

fn request() -> v1::ListRolloutsRequest {
    v1::ListRolloutsRequest::default()
}

fn rollouts(store: &Store, request: &v1::ListRolloutsRequest) -> v1::ListRolloutsResponse {
    let reader = store.reader().expect("reader");
    list_rollouts(&reader, request, W_S, NOW).expect("list rollouts")
}

fn find<'a>(r: &'a v1::ListRolloutsResponse, workload: &str) -> &'a v1::Rollout {
    r.rollouts
        .iter()
        .find(|r| r.workload == workload)
        .unwrap_or_else(|| panic!("no rollout of {workload}: {r:#?}"))
}

fn check<'a>(r: &'a v1::Rollout, name: &str) -> &'a v1::GateCheck {
    r.checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no {name} check: {r:#?}"))
}

/// (outcome, before, after) of a check.
fn words<'a>(r: &'a v1::Rollout, name: &str) -> (&'a str, &'a str, &'a str) {
    let c = check(r, name);
    (c.outcome.as_str(), c.before.as_str(), c.after.as_str())
}

#[test]
fn the_latest_rollout_per_workload_container_newest_first() {
    let dir = TempDir::new("rollouts-list");
    let store = store(&dir);
    let r = rollouts(&store, &request());
    let listed: Vec<(&str, &str, &str, &str)> = r
        .rollouts
        .iter()
        .map(|r| {
            (
                r.namespace.as_str(),
                r.workload.as_str(),
                r.container.as_str(),
                r.verdict.as_str(),
            )
        })
        .collect();
    // db was recreated on the same image: no rollout. worker's latest
    // change (NOW−10 min) first, then those at T by namespace and name.
    assert_eq!(
        listed,
        [
            ("shop", "worker", "worker", "healthy"),
            ("", "cache", "cache", "degraded"),
            ("edge", "proxy", "proxy", "healthy"),
            ("shop", "api", "app", "failed"),
            ("shop", "queue", "queue", "failed"),
            ("shop", "web", "web", "healthy"),
        ]
    );
    assert_eq!(r.window_s, 1800);
    assert_eq!(r.since_unix_ns, NOW - DAY, "the default range: a day");
    assert_eq!(r.at_unix_ns, NOW);
}

#[test]
fn a_healthy_rollout_with_its_windows_and_evidence() {
    let dir = TempDir::new("rollouts-healthy");
    let store = store(&dir);
    let r = rollouts(&store, &request());
    let web = find(&r, "web");
    assert_eq!(web.workload_kind, "ComposeService");
    assert_eq!(
        (web.from_image.as_str(), web.to_image.as_str()),
        ("web:1.0", "web:1.1")
    );
    assert_eq!(web.changed_unix_ns, T);
    assert_eq!(
        (
            web.before_start_unix_ns,
            web.before_end_unix_ns,
            web.after_start_unix_ns,
            web.after_end_unix_ns
        ),
        (T - 30 * MIN, T, T, T + 30 * MIN)
    );
    assert!(!web.in_progress);
    assert_eq!(web.note, "");
    assert_eq!(web.rollback_image, "web:1.0");
    assert_eq!(web.from_container_ids, [id("a0eb")]);
    assert_eq!(web.to_container_ids, [id("b0eb")]);
    assert_eq!(web.nodes, ["node-1"]);
    assert_eq!(
        web.summary,
        "healthy: web:1.1 did no worse than web:1.0 (restarts, OOM kills, exits, health, replicas, CPU and memory)"
    );
    assert!(web.checks.iter().all(|c| c.outcome == "pass"), "{web:#?}");
    assert_eq!(
        words(web, "restarts"),
        ("pass", "0 in 30 min", "0 in 30 min")
    );
    // The old container, stopped 5 s before the change, is read just
    // before it stopped: running and healthy. The new one became healthy
    // 20 s after it started.
    assert_eq!(words(web, "health"), ("pass", "healthy", "healthy"));
    assert_eq!(
        words(web, "ready_replicas"),
        ("pass", "1/1 ready", "1/1 ready")
    );
    // 30 rows of each side in its window: T−30 min..T−1 min, T..T+29 min.
    assert_eq!(
        words(web, "cpu_per_replica"),
        (
            "pass",
            "0.200 cores (30 samples)",
            "0.250 cores (30 samples)"
        )
    );
    let memory = check(web, "memory_per_replica");
    assert_eq!(
        (memory.before.as_str(), memory.after.as_str()),
        ("100.0 MiB (30 samples)", "110.0 MiB (30 samples)")
    );
    assert_eq!(
        (memory.before_value, memory.after_value),
        (Some((100 * MIB) as f64), Some((110 * MIB) as f64))
    );
}

#[test]
fn new_pods_that_oom_and_restart_fail_and_roll_back_to_the_old_image() {
    let dir = TempDir::new("rollouts-failed");
    let store = store(&dir);
    let all = rollouts(
        &store,
        &v1::ListRolloutsRequest {
            workload: "api".into(),
            all: true,
            ..request()
        },
    );
    // The old pod's restart (a1r) and the rescheduled old replica (a3)
    // during the rollout are not a change back to api:2.0.
    assert_eq!(all.rollouts.len(), 1, "{all:#?}");
    let api = &all.rollouts[0];
    assert_eq!(
        (api.workload_kind.as_str(), api.container.as_str()),
        ("Deployment", "app")
    );
    assert_eq!(
        (api.from_image.as_str(), api.to_image.as_str()),
        ("api:2.0", "api:2.1")
    );
    assert_eq!(api.verdict, "failed");
    assert_eq!(api.rollback_image, "api:2.0");
    assert_eq!(api.from_container_ids, [id("a1"), id("a1r"), id("a2")]);
    assert_eq!(api.to_container_ids, [id("b1"), id("b1r"), id("b2")]);
    let restarts = check(api, "restarts");
    assert_eq!(
        (restarts.outcome.as_str(), restarts.after.as_str()),
        ("failed", "1 in 30 min (2.0/h)")
    );
    assert_eq!(
        restarts.reason,
        "1 restart in the 30 min after the update, none in the 30 min before"
    );
    // One OOM event, and one kill in b1's usage row: the same kill.
    let oom = check(api, "oom_kills");
    assert_eq!((oom.before_value, oom.after_value), (Some(0.0), Some(1.0)));
    assert_eq!(
        oom.reason,
        "1 OOM kill in the 30 min after the update, none in the 30 min before"
    );
    // Exits of old containers after the change (1, 143) are not the new
    // image's.
    assert_eq!(
        check(api, "nonzero_exits").reason,
        "1 non-zero exit in the 30 min after the update, none in the 30 min before (exit codes 137)"
    );
    assert_eq!(words(api, "health"), ("pass", "healthy", "healthy"));
    // Two old pods ran just before the change; both new pods run at the
    // end of the window (pb1 in its restarted container).
    assert_eq!(
        words(api, "ready_replicas"),
        ("pass", "2/2 ready", "2/2 ready")
    );
    // Rows in [T−30 min, T): a1 30 + a2 30; in [T, T+30 min): b1 5
    // (T..T+4 min), b1r 24 (T+6..T+29 min), b2 29 (T+1..T+29 min).
    assert_eq!(
        words(api, "memory_per_replica"),
        ("pass", "200.0 MiB (60 samples)", "200.0 MiB (58 samples)")
    );
    assert!(
        api.summary.starts_with(
            "failed: restarts: 1 restart in the 30 min after the update, none in the 30 min before; oom_kills: "
        ),
        "{}",
        api.summary
    );
}

#[test]
fn doubled_memory_after_an_applied_update_is_degraded() {
    let dir = TempDir::new("rollouts-degraded");
    let store = store(&dir);
    let r = rollouts(&store, &request());
    let cache = find(&r, "cache");
    // The old container renamed cache-upid-rollback is still `cache`.
    assert_eq!(
        (
            cache.namespace.as_str(),
            cache.workload_kind.as_str(),
            cache.container.as_str()
        ),
        ("", "Container", "cache")
    );
    assert_eq!(cache.from_container_ids, [id("c0")]);
    assert_eq!(cache.verdict, "degraded");
    assert_eq!(cache.rollback_image, "cache:7.0");
    let memory = check(cache, "memory_per_replica");
    assert_eq!(memory.outcome, "degraded");
    assert_eq!(
        memory.reason,
        "memory per replica went from 100.0 MiB to 200.0 MiB: more than 1.5x and at least 32.0 MiB more"
    );
    assert_eq!(words(cache, "cpu_per_replica").0, "pass");
    // `docker stop` killed the old one (137) 10 s before: not a crash.
    assert_eq!(
        words(cache, "nonzero_exits"),
        ("pass", "0 in 30 min", "0 in 30 min")
    );
    assert_eq!(words(cache, "health"), ("pass", "none", "none"));
    assert_eq!(
        cache.summary,
        "degraded: memory_per_replica: memory per replica went from 100.0 MiB to 200.0 MiB: more than 1.5x and at least 32.0 MiB more"
    );
}

#[test]
fn a_crash_after_the_change_fails_and_the_old_containers_stop_is_no_crash() {
    let dir = TempDir::new("rollouts-queue");
    let store = store(&dir);
    let r = rollouts(&store, &request());
    let queue = find(&r, "queue");
    assert_eq!(queue.changed_unix_ns, T, "its first start, not its restart");
    assert_eq!(queue.verdict, "failed");
    // Before: the stop at T−3 s (143) is the rollout's, so none; after:
    // exit 2 at T+10 min, restarted 5 s later.
    assert_eq!(
        check(queue, "nonzero_exits").reason,
        "1 non-zero exit in the 30 min after the update, none in the 30 min before (exit codes 2)"
    );
    assert_eq!(words(queue, "restarts").0, "failed");
    assert_eq!(
        words(queue, "cpu_per_replica"),
        ("skipped", "not measured", "not measured")
    );
}

#[test]
fn a_re_pushed_tag_is_a_rollout_told_by_image_id_and_rolled_back_by_digest() {
    let dir = TempDir::new("rollouts-tag");
    let store = store(&dir);
    let r = rollouts(&store, &request());
    let proxy = find(&r, "proxy");
    assert_eq!(
        (proxy.from_image.as_str(), proxy.to_image.as_str()),
        ("proxy:latest@sha256:d1", "proxy:latest@sha256:d2")
    );
    assert_eq!(proxy.rollback_image, "docker.io/library/proxy@sha256:d1");
    assert_eq!(proxy.verdict, "healthy");
    assert_eq!(words(proxy, "memory_per_replica").0, "skipped");
}

#[test]
fn a_rollout_inside_its_window_is_in_progress_and_older_ones_need_all() {
    let dir = TempDir::new("rollouts-progress");
    let store = store(&dir);
    let latest = rollouts(
        &store,
        &v1::ListRolloutsRequest {
            workload: "worker".into(),
            ..request()
        },
    );
    assert_eq!(latest.rollouts.len(), 1, "only the latest: {latest:#?}");
    let w = &latest.rollouts[0];
    assert_eq!(
        (w.from_image.as_str(), w.to_image.as_str()),
        ("worker:1.1", "worker:1.2")
    );
    assert!(w.in_progress);
    assert_eq!(w.verdict, "healthy");
    assert_eq!(
        (
            w.before_start_unix_ns,
            w.after_start_unix_ns,
            w.after_end_unix_ns
        ),
        (NOW - 40 * MIN, NOW - 10 * MIN, NOW)
    );
    assert_eq!(
        w.note,
        "in progress: 10m of the 30m after window so far; the verdict is provisional"
    );
    assert!(w.summary.ends_with(" (provisional)"), "{}", w.summary);
    assert_eq!(
        words(w, "memory_per_replica"),
        ("pass", "50.0 MiB (30 samples)", "50.0 MiB (10 samples)")
    );

    let all = rollouts(
        &store,
        &v1::ListRolloutsRequest {
            workload: "worker".into(),
            all: true,
            ..request()
        },
    );
    let changes: Vec<(&str, i64, bool)> = all
        .rollouts
        .iter()
        .map(|r| (r.to_image.as_str(), r.changed_unix_ns, r.in_progress))
        .collect();
    assert_eq!(
        changes,
        [
            ("worker:1.2", NOW - 10 * MIN, true),
            ("worker:1.1", T - HOUR, false)
        ]
    );
    let older = &all.rollouts[1];
    assert_eq!(
        (older.before_start_unix_ns, older.after_end_unix_ns),
        (T - HOUR - 30 * MIN, T - 30 * MIN)
    );
    assert_eq!(older.rollback_image, "worker:1.0");

    // Since an hour ago: only the change in progress.
    let recent = rollouts(
        &store,
        &v1::ListRolloutsRequest {
            all: true,
            since_unix_ns: Some(NOW - HOUR),
            ..request()
        },
    );
    assert_eq!(recent.rollouts.len(), 1);
    assert_eq!(recent.rollouts[0].to_image, "worker:1.2");
    // Since 0: everything, the worker's older change included.
    let everything = rollouts(
        &store,
        &v1::ListRolloutsRequest {
            all: true,
            since_unix_ns: Some(0),
            ..request()
        },
    );
    assert_eq!(everything.rollouts.len(), 7, "{everything:#?}");
}

#[tokio::test]
async fn the_query_service_answers_list_rollouts_with_its_window() {
    let dir = TempDir::new("rollouts-rpc");
    let store = store(&dir);
    let facts = ServerFacts {
        started_unix_ns: T - DAY,
        store_path: String::new(),
        tls: false,
        auth_required: false,
        connected: Arc::new(ConnectedAgents::default()),
    };
    let api = QueryApi::new(store.reader().expect("reader"), facts)
        .expect("query api")
        .with_clock(Arc::new(|| NOW))
        .with_rollout_window_s(600);
    let answer = api
        .list_rollouts(Request::new(v1::ListRolloutsRequest {
            namespace: "shop".into(),
            workload: "web".into(),
            ..request()
        }))
        .await
        .expect("ListRollouts")
        .into_inner();
    assert_eq!(answer.window_s, 600);
    assert_eq!(answer.rollouts.len(), 1);
    let web = &answer.rollouts[0];
    // 10-minute windows: 10 rows on each side.
    assert_eq!(
        (web.before_start_unix_ns, web.after_end_unix_ns),
        (T - 10 * MIN, T + 10 * MIN)
    );
    assert_eq!(words(web, "cpu_per_replica").1, "0.200 cores (10 samples)");
    // The request's window wins over the collector's.
    let wider = api
        .list_rollouts(Request::new(v1::ListRolloutsRequest {
            workload: "web".into(),
            window_s: 3600,
            ..request()
        }))
        .await
        .expect("ListRollouts")
        .into_inner();
    assert_eq!(wider.rollouts[0].after_end_unix_ns, T + HOUR);

    for bad in [
        v1::ListRolloutsRequest {
            window_s: 30,
            ..request()
        },
        v1::ListRolloutsRequest {
            since_unix_ns: Some(-1),
            ..request()
        },
    ] {
        match api.list_rollouts(Request::new(bad.clone())).await {
            Err(status) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status}");
                assert!(
                    status.message().contains("window_s 30: use 60")
                        || status.message().contains("since_unix_ns -1"),
                    "{}",
                    status.message()
                );
            }
            Ok(r) => panic!("{bad:?} was answered: {r:?}"),
        }
    }
}

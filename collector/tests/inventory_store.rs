//! Inventory in the DuckDB store, on real database files: records replace
//! each other, full inventories mark what is gone, events are stored once
//! however often an agent derives them again, a workload's image change is
//! found across containers, events are filtered, and a store of the
//! previous schema version opens and gains the inventory tables.

use std::path::PathBuf;

use upid::wire::v1::{
    Batch, ContainerInfo, ContainerState, EventKind, ImageRef, Inventory, LifecycleEvent,
    NodeSample, Runtime, Snapshot, WorkloadKind, WorkloadRef,
};
use upid_collector::store::{EventFilter, IngestOutcome, Store};

const T0: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("upid-inv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn batch(seq: u64, inventory: Inventory) -> Batch {
    Batch {
        agent_id: "agent-1".into(),
        node_name: "node-1".into(),
        seq,
        snapshot: Some(Snapshot {
            node: Some(NodeSample {
                node_name: "node-1".into(),
                timestamp_unix_ns: T0 + seq as i64 * SEC,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spool: None,
        inventory: Some(inventory),
    }
}

fn container(id: char, name: &str, image: &str, image_id: &str, started: i64) -> ContainerInfo {
    ContainerInfo {
        container_id: id.to_string().repeat(64),
        runtime: Runtime::Docker as i32,
        name: name.into(),
        image: Some(ImageRef {
            reference: image.into(),
            repository: format!(
                "docker.io/library/{}",
                image.split(':').next().unwrap_or("")
            ),
            tag: image.split(':').nth(1).unwrap_or("").into(),
            digest: String::new(),
            image_id: image_id.into(),
        }),
        labels: [("team".to_string(), "payments".to_string())].into(),
        state: ContainerState::Running as i32,
        started_unix_ns: Some(started),
        namespace: "shop".into(),
        workload: Some(WorkloadRef {
            kind: WorkloadKind::ComposeService as i32,
            namespace: "shop".into(),
            name: "web".into(),
            detail: String::new(),
        }),
        sources: vec!["docker".into()],
        ..Default::default()
    }
}

fn event(id: char, kind: EventKind, ts: i64) -> LifecycleEvent {
    LifecycleEvent {
        timestamp_unix_ns: ts,
        container_id: id.to_string().repeat(64),
        kind: kind as i32,
        ..Default::default()
    }
}

fn stored(outcomes: &[IngestOutcome]) {
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, IngestOutcome::Stored { .. })),
        "{outcomes:?}"
    );
}

#[test]
fn records_events_and_image_changes_are_stored_once_and_read_back() {
    let dir = TempDir::new("store");
    let path = dir.0.join("upid.duckdb");
    let mut store = Store::open(&path).expect("open");

    // First full inventory: web-1 on image a, started at T0.
    let a = container('a', "shop-web-1", "web:1.0", "sha256:aaa", T0);
    stored(
        &store
            .ingest(&[batch(
                1,
                Inventory {
                    full: true,
                    containers: vec![a.clone()],
                    events: vec![event('a', EventKind::Start, T0)],
                    ..Default::default()
                },
            )])
            .expect("ingest 1"),
    );

    // The agent restarted: the same START again, and the container changed.
    let mut a2 = a.clone();
    a2.restart_count = 1;
    stored(
        &store
            .ingest(&[batch(
                2,
                Inventory {
                    full: true,
                    containers: vec![a2],
                    events: vec![
                        event('a', EventKind::Start, T0),
                        event('a', EventKind::Restart, T0 + SEC),
                    ],
                    ..Default::default()
                },
            )])
            .expect("ingest 2"),
    );

    // The service is recreated on image b; the old container is no longer listed.
    let b = container('b', "shop-web-1", "web:1.1", "sha256:bbb", T0 + 10 * SEC);
    stored(
        &store
            .ingest(&[batch(
                3,
                Inventory {
                    full: true,
                    containers: vec![b.clone()],
                    ..Default::default()
                },
            )])
            .expect("ingest 3"),
    );

    // An old replica on another node, started before b, does not flip it back.
    let old_replica = container('c', "shop-web-1", "web:1.0", "sha256:aaa", T0 + SEC);
    stored(
        &store
            .ingest(&[batch(
                4,
                Inventory {
                    containers: vec![old_replica],
                    ..Default::default()
                },
            )])
            .expect("ingest 4"),
    );

    let reader = store.reader().expect("reader");
    let inventory = reader.inventory().expect("inventory");
    let rec_a = &inventory[&"a".repeat(64)];
    assert!(
        rec_a.removed,
        "a full inventory without it marks it removed"
    );
    assert_eq!(rec_a.info.restart_count, 1, "the latest record wins");
    assert_eq!(
        rec_a.info.labels.get("team").map(String::as_str),
        Some("payments")
    );
    let rec_b = &inventory[&"b".repeat(64)];
    assert!(!rec_b.removed);
    assert_eq!(rec_b.info, b, "the record reads back exactly as sent");
    assert_eq!(rec_b.node_name, "node-1");

    let all = reader.events(&EventFilter::default()).expect("events");
    let kinds: Vec<(EventKind, String)> = all
        .iter()
        .map(|e| {
            let ev = e.event.clone().unwrap_or_default();
            (
                EventKind::try_from(ev.kind).unwrap_or(EventKind::Unspecified),
                ev.container_id[..1].to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::ImageChange, "b".to_string()),
            (EventKind::Restart, "a".to_string()),
            (EventKind::Start, "a".to_string()),
        ],
        "newest first; the START derived twice is stored once; one image change"
    );
    let change = &all[0];
    let ev = change.event.clone().unwrap_or_default();
    assert_eq!((ev.from.as_str(), ev.to.as_str()), ("web:1.0", "web:1.1"));
    assert_eq!(ev.timestamp_unix_ns, T0 + 10 * SEC);
    let w = change.workload.clone().unwrap_or_default();
    assert_eq!(
        (w.kind, w.namespace.as_str(), w.name.as_str()),
        (WorkloadKind::ComposeService as i32, "shop", "web")
    );
    assert_eq!(change.container_name, "shop-web-1");
    assert_eq!(change.node_name, "node-1");

    // Filters.
    let only = |f: EventFilter| reader.events(&f).expect("events").len();
    assert_eq!(
        only(EventFilter {
            kinds: vec![EventKind::Restart as i32],
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        only(EventFilter {
            container: "aaaa".into(),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        only(EventFilter {
            container: "shop-web-1".into(),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        only(EventFilter {
            workload: "web".into(),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        only(EventFilter {
            workload: "compose/web".into(),
            ..Default::default()
        }),
        3
    );
    assert_eq!(
        only(EventFilter {
            namespace: "other".into(),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        only(EventFilter {
            since_unix_ns: T0 + SEC,
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        only(EventFilter {
            limit: 1,
            ..Default::default()
        }),
        1
    );
    assert!(
        reader
            .events(&EventFilter {
                kinds: vec![99],
                ..Default::default()
            })
            .is_err()
    );
    drop(reader);
    drop(store);

    // Tables a person can query with plain SQL.
    let conn = duckdb::Connection::open(&path).expect("raw open");
    let image: String = conn
        .query_row(
            "SELECT image_reference FROM workload_images WHERE workload_key = 'compose/shop/web'",
            [],
            |r| r.get(0),
        )
        .expect("workload image");
    assert_eq!(image, "web:1.1");
    let images: i64 = conn
        .query_row("SELECT count(*) FROM images", [], |r| r.get(0))
        .expect("images");
    assert_eq!(images, 2);
}

#[test]
fn a_store_of_schema_version_1_opens_and_gains_the_inventory_tables() {
    let dir = TempDir::new("upgrade");
    let path = dir.0.join("upid.duckdb");
    drop(Store::open(&path).expect("create"));
    {
        // Make it look like a version 1 store: no inventory tables.
        let conn = duckdb::Connection::open(&path).expect("raw open");
        conn.execute_batch(
            "DROP TABLE events; DROP TABLE container_inventory; DROP TABLE workloads;
             DROP TABLE pods; DROP TABLE images; DROP TABLE workload_images;
             DELETE FROM schema_version; INSERT INTO schema_version VALUES (1, 0);",
        )
        .expect("downgrade");
    }
    let mut store = Store::open(&path).expect("a version 1 store opens");
    stored(
        &store
            .ingest(&[batch(
                1,
                Inventory {
                    containers: vec![container('a', "x", "web:1", "sha256:a", T0)],
                    ..Default::default()
                },
            )])
            .expect("ingest"),
    );
    drop(store);
    let conn = duckdb::Connection::open(&path).expect("raw open");
    let version: i32 = conn
        .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, upid_collector::store::schema::SCHEMA_VERSION);
    // Version 3's tables came along too.
    let usage: i64 = conn
        .query_row("SELECT count(*) FROM usage", [], |r| r.get(0))
        .expect("the usage table exists");
    assert_eq!(usage, 0);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM container_inventory", [], |r| r.get(0))
        .expect("rows");
    assert_eq!(rows, 1);
}

//! Realistic query API responses for rendering tests: a Docker compose
//! container with limits, a Kubernetes pod container, a systemd service
//! (no inventory), a gone container, lifecycle events, and the analysis
//! answers (rightsizing, idle workloads, cost).

use crate::wire::v1;

/// "Now" in every fixture: 2023-11-14T22:13:20Z.
pub const NOW_NS: i64 = 1_700_000_000_000_000_000;
const S: i64 = 1_000_000_000;
const MI: u64 = 1024 * 1024;

/// Full id of the Docker container.
pub const DOCKER_ID: &str = "4f2a9c1e7b3d5a6f8e0c2b4d6a8f0e1c3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a";

fn rates(cpu: f64, ws: u64) -> v1::Rates {
    v1::Rates {
        start_unix_ns: NOW_NS - 15 * S,
        end_unix_ns: NOW_NS - 5 * S,
        cpu_cores: Some(cpu),
        cpu_throttled_ratio: Some(0.032),
        memory_working_set_bytes: Some(ws),
        memory_peak_bytes: Some(ws + 10 * MI),
        oom_kills: Some(0),
        net_rx_bytes_per_s: Some(2048.0),
        net_tx_bytes_per_s: Some(300.0),
    }
}

/// Full id of the Kubernetes container.
pub const POD_ID: &str = "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c";

/// Inventory of the compose container: service `web` of project `shop`,
/// healthy, started a day ago.
pub fn docker_info() -> v1::ContainerInfo {
    v1::ContainerInfo {
        container_id: DOCKER_ID.into(),
        runtime: v1::Runtime::Docker as i32,
        name: "shop-web-1".into(),
        image: Some(v1::ImageRef {
            reference: "registry.local:5000/shop/web:1.1".into(),
            repository: "registry.local:5000/shop/web".into(),
            tag: "1.1".into(),
            digest: "sha256:a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
                .into(),
            image_id: "sha256:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
                .into(),
        }),
        labels: [
            ("com.docker.compose.service", "web"),
            ("com.docker.compose.project", "shop"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        state: v1::ContainerState::Running as i32,
        health: v1::HealthStatus::Healthy as i32,
        started_unix_ns: Some(NOW_NS - 86_400 * S),
        cpu_limit_millicores: Some(1500),
        memory_limit_bytes: Some(512 * MI),
        workload: Some(v1::WorkloadRef {
            kind: v1::WorkloadKind::ComposeService as i32,
            namespace: "shop".into(),
            name: "web".into(),
            detail: String::new(),
        }),
        sources: vec!["docker".into()],
        ..Default::default()
    }
}

/// A Docker container limited to 1.5 cores and 512 MiB, using 0.253 cores
/// and 120 MiB, seen 5 s ago, with 2 OOM kills in its history.
pub fn docker() -> v1::ContainerSummary {
    v1::ContainerSummary {
        r#ref: Some(v1::ContainerRef {
            node_name: "node-a".into(),
            identity: Some(v1::CgroupIdentity {
                cgroup_path: format!("/system.slice/docker-{DOCKER_ID}.scope"),
                runtime: v1::Runtime::Docker as i32,
                container_id: DOCKER_ID.into(),
                ..Default::default()
            }),
        }),
        first_seen_unix_ns: NOW_NS - 3 * 86_400 * S,
        last_seen_unix_ns: NOW_NS - 5 * S,
        cpu_limit_millicores: Some(1500),
        memory_limit_bytes: Some(512 * MI),
        oom_kills_total: 2,
        latest: Some(rates(0.2534, 120 * MI)),
        info: Some(docker_info()),
        gone: false,
    }
}

/// Inventory of the pod container: `checkout` of Deployment `checkout` in
/// `shop`, restarted 3 times, last exit an OOM kill, no healthcheck.
pub fn pod_info() -> v1::ContainerInfo {
    v1::ContainerInfo {
        container_id: POD_ID.into(),
        runtime: v1::Runtime::Containerd as i32,
        name: "checkout".into(),
        image: Some(v1::ImageRef {
            reference: "shop/checkout:2.3.1".into(),
            repository: "docker.io/shop/checkout".into(),
            tag: "2.3.1".into(),
            digest: String::new(),
            image_id: "sha256:0011223344556677889900112233445566778899001122334455667788990011"
                .into(),
        }),
        labels: [("app", "checkout"), ("pod-template-hash", "7d9f8")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        state: v1::ContainerState::Running as i32,
        health: v1::HealthStatus::None as i32,
        restart_count: 3,
        exit_code: Some(137),
        oom_killed: true,
        started_unix_ns: Some(NOW_NS - 300 * S),
        finished_unix_ns: Some(NOW_NS - 301 * S),
        cpu_request_millicores: Some(250),
        memory_request_bytes: Some(256 * MI),
        namespace: "shop".into(),
        pod_name: "checkout-7d9f8-x2k4q".into(),
        pod_uid: "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809".into(),
        qos: v1::QosClass::Burstable as i32,
        last_termination_reason: "OOMKilled".into(),
        workload: Some(v1::WorkloadRef {
            kind: v1::WorkloadKind::Deployment as i32,
            namespace: "shop".into(),
            name: "checkout".into(),
            detail: String::new(),
        }),
        sources: vec!["kubernetes".into()],
        ..Default::default()
    }
}

/// A Kubernetes pod container (containerd, Burstable), no limits, 1.2 GiB.
pub fn pod() -> v1::ContainerSummary {
    let id = POD_ID;
    v1::ContainerSummary {
        r#ref: Some(v1::ContainerRef {
            node_name: "node-b".into(),
            identity: Some(v1::CgroupIdentity {
                cgroup_path: format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c.slice/cri-containerd-{id}.scope"
                ),
                runtime: v1::Runtime::Containerd as i32,
                container_id: id.into(),
                pod_uid: "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809".into(),
                qos: v1::QosClass::Burstable as i32,
                unit: String::new(),
            }),
        }),
        first_seen_unix_ns: NOW_NS - 2 * 3600 * S,
        last_seen_unix_ns: NOW_NS - 200 * S,
        cpu_limit_millicores: None,
        memory_limit_bytes: None,
        oom_kills_total: 0,
        latest: Some(rates(1.25, 1229 * MI)),
        info: Some(pod_info()),
        gone: false,
    }
}

/// A Docker container outside compose that exited (code 1) and is no
/// longer reported.
pub fn gone() -> v1::ContainerSummary {
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    v1::ContainerSummary {
        r#ref: Some(v1::ContainerRef {
            node_name: "node-a".into(),
            identity: Some(v1::CgroupIdentity {
                cgroup_path: format!("/system.slice/docker-{id}.scope"),
                runtime: v1::Runtime::Docker as i32,
                container_id: id.into(),
                ..Default::default()
            }),
        }),
        first_seen_unix_ns: NOW_NS - 7200 * S,
        last_seen_unix_ns: NOW_NS - 3600 * S,
        oom_kills_total: 0,
        latest: None,
        info: Some(v1::ContainerInfo {
            container_id: id.into(),
            runtime: v1::Runtime::Docker as i32,
            name: "batch-once".into(),
            image: Some(v1::ImageRef {
                reference: "busybox".into(),
                repository: "docker.io/library/busybox".into(),
                ..Default::default()
            }),
            state: v1::ContainerState::Exited as i32,
            state_reason: "Error".into(),
            exit_code: Some(1),
            workload: Some(v1::WorkloadRef {
                kind: v1::WorkloadKind::Container as i32,
                name: "batch-once".into(),
                ..Default::default()
            }),
            sources: vec!["docker".into()],
            ..Default::default()
        }),
        gone: true,
        ..Default::default()
    }
}

/// The pod container whose owner chain stopped at its ReplicaSet (no
/// permission to read ReplicaSets).
pub fn degraded_detail() -> v1::ContainerDetail {
    let mut summary = pod();
    if let Some(info) = summary.info.as_mut() {
        info.workload = Some(v1::WorkloadRef {
            kind: v1::WorkloadKind::ReplicaSet as i32,
            namespace: "shop".into(),
            name: "checkout-7d9f8".into(),
            detail: "replicasets.apps is forbidden: owner resolved from the pod-template-hash"
                .into(),
        });
    }
    v1::ContainerDetail {
        summary: Some(summary),
        latest_sample: None,
        samples_stored: 7,
    }
}

/// Events, newest first: the pod container's OOM kill and exit, the compose
/// container's health and image changes, and a start of a container
/// without inventory.
pub fn events() -> Vec<v1::Event> {
    let checkout = v1::WorkloadRef {
        kind: v1::WorkloadKind::Deployment as i32,
        namespace: "shop".into(),
        name: "checkout".into(),
        detail: String::new(),
    };
    let web = v1::WorkloadRef {
        kind: v1::WorkloadKind::ComposeService as i32,
        namespace: "shop".into(),
        name: "web".into(),
        detail: String::new(),
    };
    let event = |ago_s: i64, id: &str, kind: v1::EventKind| v1::LifecycleEvent {
        timestamp_unix_ns: NOW_NS - ago_s * S,
        container_id: id.into(),
        kind: kind as i32,
        ..Default::default()
    };
    vec![
        v1::Event {
            event: Some(event(300, POD_ID, v1::EventKind::Oom)),
            node_name: "node-b".into(),
            container_name: "checkout".into(),
            namespace: "shop".into(),
            workload: Some(checkout.clone()),
            image: "shop/checkout:2.3.1".into(),
        },
        v1::Event {
            event: Some(v1::LifecycleEvent {
                exit_code: Some(137),
                detail: "exit 137 (OOMKilled)".into(),
                ..event(300, POD_ID, v1::EventKind::Die)
            }),
            node_name: "node-b".into(),
            container_name: "checkout".into(),
            namespace: "shop".into(),
            workload: Some(checkout),
            image: "shop/checkout:2.3.1".into(),
        },
        v1::Event {
            event: Some(v1::LifecycleEvent {
                from: "healthy".into(),
                to: "unhealthy".into(),
                ..event(42 * 60, DOCKER_ID, v1::EventKind::HealthChange)
            }),
            node_name: "node-a".into(),
            container_name: "shop-web-1".into(),
            namespace: String::new(),
            workload: Some(web.clone()),
            image: "shop/web:1.1".into(),
        },
        v1::Event {
            event: Some(v1::LifecycleEvent {
                from: "shop/web:1.0".into(),
                to: "shop/web:1.1".into(),
                ..event(125 * 60, DOCKER_ID, v1::EventKind::ImageChange)
            }),
            node_name: "node-a".into(),
            container_name: "shop-web-1".into(),
            namespace: String::new(),
            workload: Some(web),
            image: "shop/web:1.1".into(),
        },
        v1::Event {
            event: Some(event(3 * 86_400, DOCKER_ID, v1::EventKind::Start)),
            node_name: "node-a".into(),
            container_name: String::new(),
            namespace: String::new(),
            workload: None,
            image: String::new(),
        },
    ]
}

/// A systemd service with a single sample so far (no rates yet).
pub fn service() -> v1::ContainerSummary {
    v1::ContainerSummary {
        r#ref: Some(v1::ContainerRef {
            node_name: "node-a".into(),
            identity: Some(v1::CgroupIdentity {
                cgroup_path: "/system.slice/ssh.service".into(),
                runtime: v1::Runtime::Systemd as i32,
                unit: "ssh.service".into(),
                ..Default::default()
            }),
        }),
        first_seen_unix_ns: NOW_NS - 10 * S,
        last_seen_unix_ns: NOW_NS - 10 * S,
        cpu_limit_millicores: None,
        memory_limit_bytes: None,
        oom_kills_total: 0,
        latest: Some(v1::Rates {
            start_unix_ns: NOW_NS - 10 * S,
            end_unix_ns: NOW_NS - 10 * S,
            memory_working_set_bytes: Some(5 * MI),
            ..Default::default()
        }),
        info: None,
        gone: false,
    }
}

/// Two nodes: one connected with a small skew, one gone quiet with spool
/// drops.
pub fn nodes() -> Vec<v1::Node> {
    vec![
        v1::Node {
            node_name: "node-a".into(),
            agent_id: "agent-a".into(),
            agent_version: "0.1.0".into(),
            cgroup_layout: v1::CgroupLayout::V2 as i32,
            cpu_count: 8,
            memory_total_bytes: 32 << 30,
            last_seen_unix_ns: NOW_NS - 2 * S,
            last_seq: 4242,
            containers: 12,
            connected: true,
            spool_dropped_batches_total: 0,
            clock_skew_ns: 120_000_000,
        },
        v1::Node {
            node_name: "node-b".into(),
            agent_id: "agent-b".into(),
            agent_version: String::new(),
            cgroup_layout: v1::CgroupLayout::Hybrid as i32,
            cpu_count: 4,
            memory_total_bytes: 16 << 30,
            last_seen_unix_ns: NOW_NS - 3 * 3600 * S,
            last_seq: 17,
            containers: 3,
            connected: false,
            spool_dropped_batches_total: 5,
            clock_skew_ns: -3_500_000_000,
        },
    ]
}

/// A Deployment with two image versions mid-rollout, a compose service
/// with many images (to truncate), and a systemd service (no inventory).
pub fn workloads() -> Vec<v1::Workload> {
    vec![
        v1::Workload {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "checkout".into(),
            containers: 3,
            cpu_cores: Some(0.75),
            memory_working_set_bytes: Some(900 * MI),
            images: vec!["shop/checkout:2.3.1".into(), "shop/checkout:2.3.0".into()],
            restarts: 3,
            oom_kills: 1,
            replicas: 3,
        },
        v1::Workload {
            namespace: "shop".into(),
            kind: "ComposeService".into(),
            name: "web".into(),
            containers: 4,
            cpu_cores: Some(0.2534),
            memory_working_set_bytes: Some(120 * MI),
            images: vec![
                "registry.local:5000/shop/web:1.1".into(),
                "registry.local:5000/shop/web:1.0".into(),
                "registry.local:5000/shop/web-sidecar:3".into(),
            ],
            restarts: 0,
            oom_kills: 2,
            replicas: 2,
        },
        v1::Workload {
            namespace: String::new(),
            kind: "Service".into(),
            name: "ssh.service".into(),
            containers: 1,
            cpu_cores: None,
            memory_working_set_bytes: Some(5 * MI),
            images: Vec::new(),
            restarts: 0,
            oom_kills: 0,
            replicas: 0,
        },
    ]
}

/// The Docker container in detail, with its latest stored sample.
pub fn detail() -> v1::ContainerDetail {
    let summary = docker();
    let identity = summary
        .r#ref
        .as_ref()
        .and_then(|r| r.identity.clone())
        .unwrap_or_default();
    v1::ContainerDetail {
        summary: Some(summary),
        latest_sample: Some(v1::ContainerSample {
            identity: Some(identity),
            timestamp_unix_ns: NOW_NS - 5 * S,
            cpu: Some(v1::CpuStats {
                usage_ns: 12_300_000_000,
                user_ns: Some(10_000_000_000),
                system_ns: Some(2_300_000_000),
                periods: 100,
                throttled_periods: 3,
                throttled_ns: 9_000_000,
                limit_millicores: Some(1500),
                shares: Some(1024),
            }),
            memory: Some(v1::MemoryStats {
                usage_bytes: 150 * MI,
                working_set_bytes: 120 * MI,
                rss_bytes: 100 * MI,
                cache_bytes: 40 * MI,
                swap_bytes: None,
                limit_bytes: Some(512 * MI),
                peak_bytes: 130 * MI,
                peak_source: v1::PeakSource::KernelReset as i32,
                oom_kills: 2,
            }),
            io: Some(v1::IoStats {
                read_bytes: MI,
                write_bytes: 2 * MI,
                read_ops: 3,
                write_ops: 4,
            }),
            pids: Some(v1::PidsStats {
                current: 5,
                limit: None,
            }),
            pressure: None,
            netns_inode: Some(4_026_532_000),
        }),
        samples_stored: 1234,
    }
}

/// Two five-minute points of the Docker container's series.
pub fn series() -> v1::GetContainerSeriesResponse {
    let step = 300 * S;
    v1::GetContainerSeriesResponse {
        r#ref: docker().r#ref,
        step_ns: step,
        points: vec![
            v1::Rates {
                start_unix_ns: NOW_NS - 2 * step,
                end_unix_ns: NOW_NS - step,
                ..rates(0.2, 110 * MI)
            },
            v1::Rates {
                start_unix_ns: NOW_NS - step,
                end_unix_ns: NOW_NS,
                ..rates(0.3, 121 * MI)
            },
        ],
    }
}

const GI: u64 = 1024 * MI;

/// Default prices of the analysis fixtures (USD, OpenCost-like).
fn pricing() -> v1::Pricing {
    v1::Pricing {
        currency: "USD".into(),
        cpu_core_hour: 0.031_611,
        memory_gib_hour: 0.004_237,
    }
}

/// Rightsizing grouped by workload, in no particular order: the compose
/// service `web` (throttled, OOM-killed twice, needs more: negative
/// saving), the Deployment `checkout` (asks 16x the CPU it uses: the big
/// saving), and a CronJob with 3h20m of history (not enough data).
pub fn rightsize() -> v1::RightsizeResponse {
    let web = v1::Recommendation {
        namespace: "shop".into(),
        workload_kind: "compose".into(),
        workload: "web".into(),
        container: "web".into(),
        container_id: String::new(),
        node_name: String::new(),
        replicas: 2,
        current: Some(v1::CurrentResources {
            cpu_request_millicores: None,
            cpu_limit_millicores: Some(1500),
            memory_request_bytes: None,
            memory_limit_bytes: Some(512 * MI),
        }),
        cpu_request_millicores: Some(300),
        cpu_limit_millicores: Some(600),
        memory_request_bytes: Some(180 * MI),
        memory_limit_bytes: Some(360 * MI),
        cpu_lower_millicores: Some(200),
        cpu_upper_millicores: Some(450),
        memory_lower_bytes: Some(150 * MI),
        memory_upper_bytes: Some(260 * MI),
        confidence: 0.43,
        confidence_days: 3.0,
        samples: 8640,
        window_s: 3 * 86_400,
        reason: "throttled in 12% of periods: CPU above p90; 2 OOM kills: memory raised".into(),
        evidence: Some(v1::RightsizeEvidence {
            first_sample_unix_ns: NOW_NS - 3 * 86_400 * S,
            last_sample_unix_ns: NOW_NS - 60 * S,
            cpu_p50_cores: 0.12,
            cpu_p90_cores: 0.25,
            cpu_p95_cores: 0.31,
            cpu_max_cores: 1.42,
            cpu_throttled_ratio: Some(0.12),
            memory_p90_daily_peak_bytes: 140 * MI,
            memory_max_peak_bytes: 510 * MI,
            memory_days: 3,
            oom_kills: 2,
            last_oom_unix_ns: NOW_NS - 2 * 3600 * S,
            oom_bump_bytes: 170 * MI,
            cpu_request_driver: "throttling".into(),
            cpu_limit_driver: "p90".into(),
            memory_request_driver: "oom".into(),
            memory_limit_driver: "oom".into(),
            restarts: 2,
        }),
        monthly_cost_current: 12.26,
        monthly_cost_recommended: 14.93,
        monthly_saving: -2.67,
        enough_data: true,
    };
    let checkout = v1::Recommendation {
        namespace: "shop".into(),
        workload_kind: "deployment".into(),
        workload: "checkout".into(),
        container: "checkout".into(),
        container_id: String::new(),
        node_name: String::new(),
        replicas: 3,
        current: Some(v1::CurrentResources {
            cpu_request_millicores: Some(4000),
            cpu_limit_millicores: None,
            memory_request_bytes: Some(2 * GI),
            memory_limit_bytes: Some(4 * GI),
        }),
        cpu_request_millicores: Some(250),
        cpu_limit_millicores: None,
        memory_request_bytes: Some(300 * MI),
        memory_limit_bytes: Some(600 * MI),
        cpu_lower_millicores: Some(180),
        cpu_upper_millicores: Some(320),
        memory_lower_bytes: Some(240 * MI),
        memory_upper_bytes: Some(380 * MI),
        confidence: 1.0,
        confidence_days: 14.2,
        samples: 60_480,
        window_s: 14 * 86_400,
        reason: "CPU: p90 0.21 cores + 15%; memory: p90 of daily peaks 260Mi + 15%".into(),
        evidence: Some(v1::RightsizeEvidence {
            first_sample_unix_ns: NOW_NS - 14 * 86_400 * S,
            last_sample_unix_ns: NOW_NS - 60 * S,
            cpu_p50_cores: 0.15,
            cpu_p90_cores: 0.21,
            cpu_p95_cores: 0.24,
            cpu_max_cores: 0.9,
            cpu_throttled_ratio: None,
            memory_p90_daily_peak_bytes: 260 * MI,
            memory_max_peak_bytes: 290 * MI,
            memory_days: 14,
            oom_kills: 0,
            last_oom_unix_ns: 0,
            oom_bump_bytes: 0,
            cpu_request_driver: "p90".into(),
            cpu_limit_driver: "no limit asked".into(),
            memory_request_driver: "peak".into(),
            memory_limit_driver: "peak".into(),
            restarts: 0,
        }),
        monthly_cost_current: 295.47,
        monthly_cost_recommended: 20.03,
        monthly_saving: 275.44,
        enough_data: true,
    };
    let report = v1::Recommendation {
        namespace: "batch".into(),
        workload_kind: "cronjob".into(),
        workload: "report".into(),
        container: "report".into(),
        container_id: String::new(),
        node_name: String::new(),
        replicas: 1,
        current: Some(v1::CurrentResources {
            cpu_request_millicores: Some(500),
            cpu_limit_millicores: None,
            memory_request_bytes: Some(GI),
            memory_limit_bytes: None,
        }),
        confidence: 0.02,
        confidence_days: 0.14,
        samples: 200,
        window_s: 12_000,
        reason: "not enough data: 200 samples over 3h20m, 1 day needed".into(),
        evidence: Some(v1::RightsizeEvidence {
            first_sample_unix_ns: NOW_NS - 12_000 * S,
            last_sample_unix_ns: NOW_NS - 120 * S,
            cpu_p50_cores: 0.05,
            cpu_p90_cores: 0.4,
            cpu_p95_cores: 0.45,
            cpu_max_cores: 0.5,
            memory_p90_daily_peak_bytes: 700 * MI,
            memory_max_peak_bytes: 700 * MI,
            memory_days: 1,
            cpu_request_driver: "not enough data".into(),
            cpu_limit_driver: "not enough data".into(),
            memory_request_driver: "not enough data".into(),
            memory_limit_driver: "not enough data".into(),
            ..Default::default()
        }),
        monthly_cost_current: 13.30,
        monthly_cost_recommended: 0.0,
        monthly_saving: 0.0,
        enough_data: false,
        ..Default::default()
    };
    v1::RightsizeResponse {
        recommendations: vec![web, report, checkout],
        at_unix_ns: NOW_NS,
        currency: "USD".into(),
    }
}

/// The checkout Deployment grouped by container: one row per replica,
/// each with its container id and node (the first is the pod container
/// of [`pod`]).
pub fn rightsize_by_container() -> v1::RightsizeResponse {
    let mut r = rightsize();
    let Some(checkout) = r.recommendations.pop() else {
        return r;
    };
    r.recommendations = vec![
        v1::Recommendation {
            container_id: POD_ID.into(),
            node_name: "node-b".into(),
            replicas: 1,
            samples: 20_160,
            monthly_saving: 91.81,
            ..checkout.clone()
        },
        v1::Recommendation {
            container_id: "7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b".into(),
            node_name: "node-a".into(),
            replicas: 1,
            samples: 20_160,
            monthly_saving: 91.82,
            ..checkout
        },
    ];
    r
}

/// Idle judgement with active workloads included: an old staging API
/// quiet for 3d4h, the compose service `web` (active), the CronJob quiet
/// for 20h.
pub fn idle() -> v1::IdleResponse {
    let thresholds = |w: v1::IdleWorkload| v1::IdleWorkload {
        cpu_threshold_cores: 0.01,
        net_threshold_bytes_per_s: 1024.0,
        window_s: 7 * 86_400,
        last_sample_unix_ns: NOW_NS - 60 * S,
        ..w
    };
    v1::IdleResponse {
        workloads: vec![
            thresholds(v1::IdleWorkload {
                namespace: "shop".into(),
                workload_kind: "compose".into(),
                workload: "web".into(),
                replicas: 2,
                idle: false,
                idle_since_unix_ns: 0,
                idle_for_s: 0,
                cpu_max_cores: 1.42,
                cpu_mean_cores: 0.31,
                net_max_bytes_per_s: 250_000.0,
                net_bytes_total: 9 * GI,
                monthly_cost: 14.93,
                reason: "active: CPU 0.900 cores in the latest minute".into(),
                ..Default::default()
            }),
            thresholds(v1::IdleWorkload {
                namespace: "batch".into(),
                workload_kind: "cronjob".into(),
                workload: "report".into(),
                replicas: 1,
                idle: true,
                idle_since_unix_ns: NOW_NS - 20 * 3600 * S,
                idle_for_s: 20 * 3600,
                cpu_max_cores: 0.002,
                cpu_mean_cores: 0.001,
                net_max_bytes_per_s: 0.0,
                net_bytes_total: 0,
                cost_since_idle: 0.36,
                monthly_cost: 13.30,
                reason: "CPU at most 0.002 cores and no traffic for 20h".into(),
                ..Default::default()
            }),
            thresholds(v1::IdleWorkload {
                namespace: "staging".into(),
                workload_kind: "deployment".into(),
                workload: "old-api".into(),
                replicas: 2,
                idle: true,
                idle_since_unix_ns: NOW_NS - (3 * 86_400 + 4 * 3600) * S,
                idle_for_s: 3 * 86_400 + 4 * 3600,
                cpu_max_cores: 0.004,
                cpu_mean_cores: 0.002,
                net_max_bytes_per_s: 120.0,
                net_bytes_total: 31 * MI,
                cost_since_idle: 8.24,
                monthly_cost: 79.20,
                reason: "CPU at most 0.004 cores and traffic at most 120B/s for 3d4h".into(),
                ..Default::default()
            }),
        ],
        at_unix_ns: NOW_NS,
        currency: "USD".into(),
    }
}

/// Cost over the last 7 days by workload, cheapest first (as a collector
/// might send it), with the total.
pub fn cost() -> v1::CostResponse {
    let line = |key: &str, ns: &str, kind: &str, name: &str| v1::CostLine {
        key: key.into(),
        namespace: ns.into(),
        workload_kind: kind.into(),
        workload: name.into(),
        ..Default::default()
    };
    v1::CostResponse {
        lines: vec![
            v1::CostLine {
                containers: 2,
                cost: 3.44,
                cpu_cost: 3.27,
                memory_cost: 0.17,
                waste: 0.0,
                monthly_cost: 14.96,
                monthly_waste: 0.0,
                monthly_saving: 0.0,
                cpu_request_cores: 0.0,
                cpu_usage_cores: 0.31,
                memory_request_bytes: 0.0,
                memory_usage_bytes: (234 * MI) as f64,
                hours: 336.0,
                ..line("compose/shop/web", "shop", "compose", "web")
            },
            v1::CostLine {
                containers: 3,
                cost: 67.98,
                cpu_cost: 63.73,
                memory_cost: 4.25,
                waste: 63.10,
                monthly_cost: 295.47,
                monthly_waste: 274.20,
                monthly_saving: 275.44,
                cpu_request_cores: 12.0,
                cpu_usage_cores: 0.63,
                memory_request_bytes: (6 * GI) as f64,
                memory_usage_bytes: (780 * MI) as f64 + 0.4,
                hours: 504.0,
                ..line("deployment/shop/checkout", "shop", "deployment", "checkout")
            },
            v1::CostLine {
                containers: 2,
                cost: 18.23,
                cpu_cost: 16.99,
                memory_cost: 1.24,
                waste: 18.10,
                monthly_cost: 79.20,
                monthly_waste: 78.64,
                monthly_saving: 0.0,
                cpu_request_cores: 2.0,
                cpu_usage_cores: 0.004,
                memory_request_bytes: GI as f64,
                memory_usage_bytes: (200 * MI) as f64,
                hours: 336.0,
                ..line(
                    "deployment/staging/old-api",
                    "staging",
                    "deployment",
                    "old-api",
                )
            },
        ],
        total: Some(v1::CostLine {
            containers: 7,
            cost: 89.65,
            cpu_cost: 83.99,
            memory_cost: 5.66,
            waste: 81.20,
            monthly_cost: 389.63,
            monthly_waste: 352.84,
            monthly_saving: 275.44,
            cpu_request_cores: 14.0,
            cpu_usage_cores: 0.944,
            memory_request_bytes: (7 * GI) as f64,
            memory_usage_bytes: (1214 * MI) as f64,
            hours: 1176.0,
            ..Default::default()
        }),
        start_unix_ns: NOW_NS - 7 * 86_400 * S,
        end_unix_ns: NOW_NS,
        pricing: Some(pricing()),
    }
}

//! Rightsizing, idle detection and cost over synthetic usage whose answers
//! are worked out by hand below: a steady load, daily spikes, OOM kills
//! (recent, held, decayed), heavy throttling, two hours of history, an idle
//! workload, and a container replaced every six hours. Rows are written
//! straight into a real DuckDB store file's `usage` table (what the agent
//! rollup and the importers write) and read back through the library.
//!
//! Histogram percentiles are the VPA's: the end of the bucket holding the
//! percentile, so a percentile reads between the true value and 5 % above
//! it. The expected ranges below say so.

use upid::wire::v1;
use upid_collector::analysis::Analyzer;
use upid_collector::analysis::settings::{
    AnalysisSettings, CostSettings, IdleSettings, LabelPrice, NodePrice, Pricing, RightsizeSettings,
};
use upid_collector::store::Store;

mod common;
mod float_eq;
use common::TempDir;

const MIN_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 60 * MIN_NS;
const DAY_NS: i64 = 24 * HOUR_NS;
const MIB: u64 = 1_048_576;
const MIB_F: f64 = 1_048_576.0;
/// Analysis time: 2026-11-20 00:00 UTC, a day boundary, so each of the 14
/// days before it is one whole UTC day.
const AT: i64 = 1_795_132_800 * 1_000_000_000;
/// OpenCost's default prices (the collector's defaults).
const CPU_HOUR: f64 = 0.031_611;
const GIB_HOUR: f64 = 0.004_237;

/// One synthetic series: 1-minute rows from `from` to `to` (exclusive);
/// every `*_sql` is a DuckDB expression of `ts` (Unix ns).
struct Series<'a> {
    key: &'a str,
    node: &'a str,
    namespace: &'a str,
    workload: &'a str,
    container: &'a str,
    from: i64,
    to: i64,
    cpu: &'a str,
    throttled: &'a str,
    ws: &'a str,
    peak: &'a str,
    oom: &'a str,
    net: &'a str,
    cpu_request: &'a str,
    cpu_limit: &'a str,
    memory_request: &'a str,
    memory_limit: &'a str,
}

impl Default for Series<'_> {
    fn default() -> Self {
        Series {
            key: "",
            node: "node-a",
            namespace: "shop",
            workload: "",
            container: "app",
            from: AT - 14 * DAY_NS,
            to: AT,
            cpu: "0.0",
            throttled: "NULL",
            ws: "0",
            peak: "NULL",
            oom: "0",
            net: "NULL",
            cpu_request: "NULL",
            cpu_limit: "NULL",
            memory_request: "NULL",
            memory_limit: "NULL",
        }
    }
}

fn insert(conn: &duckdb::Connection, s: &Series<'_>) {
    let sql = format!(
        "INSERT INTO usage SELECT '{key}', 'parquet', ts, 60.0, '{node}', '{key}', '{ns}', '{key}-pod',
            '{container}', 'Deployment', '{workload}', 'registry.local/{workload}:1.0',
            ({cpu})::DOUBLE, ({thr})::DOUBLE, ({ws})::UBIGINT, ({peak})::UBIGINT, ({oom})::UBIGINT,
            ({net})::UBIGINT, ({net})::UBIGINT,
            ({creq})::DOUBLE, ({clim})::DOUBLE, ({mreq})::UBIGINT, ({mlim})::UBIGINT
         FROM (SELECT range AS ts FROM range({from}::BIGINT, {to}::BIGINT, {MIN_NS}::BIGINT))",
        key = s.key,
        node = s.node,
        ns = s.namespace,
        container = s.container,
        workload = s.workload,
        cpu = s.cpu,
        thr = s.throttled,
        ws = s.ws,
        peak = s.peak,
        oom = s.oom,
        net = s.net,
        creq = s.cpu_request,
        clim = s.cpu_limit,
        mreq = s.memory_request,
        mlim = s.memory_limit,
        from = s.from,
        to = s.to,
    );
    conn.execute_batch(&sql).expect("insert synthetic usage");
}

/// A store holding `series`, opened for analysis.
fn store_with(dir: &TempDir, series: &[Series<'_>]) -> Store {
    let path = dir.path("upid.duckdb");
    drop(Store::open(&path).expect("create store"));
    {
        let conn = duckdb::Connection::open(&path).expect("raw open");
        for s in series {
            insert(&conn, s);
        }
    }
    Store::open(&path).expect("reopen store")
}

fn rightsize(store: &Store, group_by: v1::RightsizeGrouping) -> Vec<v1::Recommendation> {
    let reader = store.reader().expect("reader");
    let request = v1::RightsizeRequest {
        group_by: group_by as i32,
        ..Default::default()
    };
    Analyzer::default()
        .rightsize(&reader, &request, AT)
        .expect("rightsize")
        .recommendations
}

fn find<'a>(recs: &'a [v1::Recommendation], workload: &str) -> &'a v1::Recommendation {
    recs.iter()
        .find(|r| r.workload == workload)
        .unwrap_or_else(|| panic!("no recommendation for {workload}: {recs:#?}"))
}

/// A recommended CPU request from a percentile known to lie in
/// [`v`, `v` × 1.05 + 0.01] (one VPA CPU bucket above the truth), times
/// `factor`, rounded up to millicores.
fn cpu_range(v: f64, factor: f64) -> std::ops::RangeInclusive<u64> {
    let lo = (v * factor * 1000.0 - 1e-6).ceil() as u64;
    let hi = ((v * 1.05 + 0.01) * factor * 1000.0).ceil() as u64;
    lo..=hi
}

/// The same for memory in MiB: one VPA memory bucket is 5 % + 10 MB.
fn mib_range(v_mib: f64, factor: f64) -> std::ops::RangeInclusive<u64> {
    let lo = (v_mib * factor - 1e-9).ceil() as u64 * MIB;
    let hi = ((v_mib * 1.05 + 1e7 / MIB_F) * factor).ceil() as u64 * MIB;
    lo..=hi
}

#[test]
fn steady_load_gets_p90_plus_margin_and_the_saving_is_priced() {
    let dir = TempDir::new("steady");
    // Two replicas at 0.25 cores and 100 MiB, asking for 1 core and 512 MiB.
    let replica = |key| Series {
        key,
        workload: "api",
        cpu: "0.25",
        ws: "100 * 1048576",
        peak: "100 * 1048576",
        cpu_request: "1.0",
        memory_request: "512 * 1048576",
        ..Default::default()
    };
    let store = store_with(&dir, &[replica("api-1"), replica("api-2")]);
    let recs = rightsize(&store, v1::RightsizeGrouping::Workload);
    let r = find(&recs, "api");
    assert!(r.enough_data, "{r:#?}");
    assert_eq!(r.replicas, 2);
    // 2 × 14 days of minutes.
    assert_eq!(r.samples, 2 * 14 * 1440);
    assert_eq!(r.window_s, 14 * 86_400 - 60);
    assert!((r.confidence - 1.0).abs() < 1e-9);
    // p90 of 0.25 cores + 15 %: 287.5m, up to 5 % more for the bucket.
    let cpu = r.cpu_request_millicores.expect("cpu request");
    assert!(cpu_range(0.25, 1.15).contains(&cpu), "cpu {cpu}");
    // p90 of daily peaks of 100 MiB + 15 %.
    let mem = r.memory_request_bytes.expect("memory request");
    assert!(mib_range(100.0, 1.15).contains(&mem), "memory {mem}");
    // Limit: the highest peak + 20 % = 120 MiB (never below the request).
    assert_eq!(r.memory_limit_bytes, Some(mem.max(120 * MIB)));
    // No CPU limit unless asked for.
    assert_eq!(r.cpu_limit_millicores, None);
    let ev = r.evidence.as_ref().expect("evidence");
    assert_eq!(ev.cpu_request_driver, "p90");
    assert_eq!(ev.cpu_limit_driver, "no limit asked");
    assert_eq!(ev.memory_days, 14);
    assert!(r.reason.contains("CPU p90"), "{}", r.reason);
    assert_eq!(
        r.current.as_ref().and_then(|c| c.cpu_request_millicores),
        Some(1000)
    );
    // Monthly cost per replica: 730 h × (max(request, usage) × price).
    let now = 2.0 * 730.0 * (1.0 * CPU_HOUR + 0.5 * GIB_HOUR);
    assert!(
        (r.monthly_cost_current - now).abs() < 1e-6,
        "{}",
        r.monthly_cost_current
    );
    let rec =
        2.0 * 730.0 * (cpu as f64 / 1000.0 * CPU_HOUR + mem as f64 / 1024.0 / MIB_F * GIB_HOUR);
    assert!((r.monthly_cost_recommended - rec).abs() < 1e-6);
    assert!((r.monthly_saving - (now - rec)).abs() < 1e-6);
    assert!(r.monthly_saving > 30.0, "{}", r.monthly_saving);

    // Asked for a CPU limit of twice the request.
    let reader = store.reader().expect("reader");
    let with_limit = Analyzer::default()
        .rightsize(
            &reader,
            &v1::RightsizeRequest {
                cpu_limit_ratio: Some(2.0),
                ..Default::default()
            },
            AT,
        )
        .expect("rightsize");
    let r2 = find(&with_limit.recommendations, "api");
    assert_eq!(r2.cpu_limit_millicores, Some(2 * cpu));
    // Per container: each replica on its own, same numbers.
    let per = rightsize(&store, v1::RightsizeGrouping::Container);
    assert_eq!(per.len(), 2);
    for p in &per {
        assert_eq!(p.cpu_request_millicores, Some(cpu));
        assert_eq!(p.replicas, 1);
        assert!(p.container_id.starts_with("api-"), "{}", p.container_id);
    }
}

#[test]
fn daily_spikes_between_samples_set_the_memory_request() {
    let dir = TempDir::new("spikes");
    // 0.1 cores, except one hour a day at 2 cores (4 % of the time: above
    // p90, so the request stays near 0.1). Working set 200 MiB, but the
    // agent's per-tick peak saw 800 MiB for a minute every day at 12:00.
    let store = store_with(
        &dir,
        &[Series {
            key: "batch-1",
            workload: "batch",
            cpu: "CASE WHEN (ts % 86400000000000) // 3600000000000 = 3 THEN 2.0 ELSE 0.1 END",
            ws: "200 * 1048576",
            peak: "CASE WHEN (ts % 86400000000000) = 43200000000000 THEN 800 * 1048576 ELSE 200 * 1048576 END",
            ..Default::default()
        }],
    );
    let recs = rightsize(&store, v1::RightsizeGrouping::Workload);
    let r = find(&recs, "batch");
    let cpu = r.cpu_request_millicores.expect("cpu");
    assert!(cpu_range(0.1, 1.15).contains(&cpu), "cpu {cpu}");
    let ev = r.evidence.as_ref().expect("evidence");
    assert!((ev.cpu_max_cores - 2.0).abs() < 1e-9);
    // Every daily peak is 800 MiB: the request covers it (a working-set
    // only recommender would say 230 MiB).
    let mem = r.memory_request_bytes.expect("memory");
    assert!(mib_range(800.0, 1.15).contains(&mem), "memory {mem}");
    assert_eq!(ev.memory_max_peak_bytes, 800 * MIB);
    assert_eq!(r.memory_limit_bytes, Some(mem.max(960 * MIB)));
}

#[test]
fn oom_kills_bump_memory_hold_it_for_a_week_then_decay() {
    let dir = TempDir::new("oom");
    // Three services at 200 MiB under a 256 MiB limit, each killed once at
    // 06:00 UTC: 2, 5 and 10 days ago.
    let oom_at = |days: i64| {
        format!(
            "CASE WHEN ts = {} THEN 1 ELSE 0 END",
            AT - days * DAY_NS + 6 * HOUR_NS
        )
    };
    let (o2, o5, o10) = (oom_at(2), oom_at(5), oom_at(10));
    fn svc<'a>(key: &'a str, oom: &'a str) -> Series<'a> {
        Series {
            key,
            workload: key,
            cpu: "0.05",
            ws: "200 * 1048576",
            peak: "200 * 1048576",
            memory_limit: "256 * 1048576",
            oom,
            ..Default::default()
        }
    }
    let (a, b, c) = (svc("oom-2d", &o2), svc("oom-5d", &o5), svc("oom-10d", &o10));
    let store = store_with(&dir, &[a, b, c]);
    let recs = rightsize(&store, v1::RightsizeGrouping::Workload);
    // The kill hit the 256 MiB limit: bump = max(256 + 100, 256 × 1.2) MiB.
    let bump = 356 * MIB;

    // 2 days ago: the bumped day weighs 2^-2 of ~1 in all (daily weights
    // halve per day), so the p90 falls in it: 356 MiB + 15 %.
    let r = find(&recs, "oom-2d");
    let mem = r.memory_request_bytes.expect("memory");
    assert!(mib_range(356.0, 1.15).contains(&mem), "memory {mem}");
    let ev = r.evidence.as_ref().expect("evidence");
    assert_eq!(ev.oom_kills, 1);
    assert_eq!(ev.last_oom_unix_ns, AT - 2 * DAY_NS + 6 * HOUR_NS);
    assert_eq!(ev.oom_bump_bytes, bump);
    // Limit: the bump + 20 % (427.2 MiB), or the request if higher.
    assert_eq!(r.memory_limit_bytes, Some(mem.max(428 * MIB)));
    assert!(r.reason.contains("OOM-killed 1×"), "{}", r.reason);

    // 5 days ago: weight 2^-5, below the p90, but within the 7-day hold:
    // the bump itself is the request.
    let r = find(&recs, "oom-5d");
    assert_eq!(r.memory_request_bytes, Some(bump), "{r:#?}");
    assert_eq!(
        r.evidence
            .as_ref()
            .map(|e| e.memory_request_driver.as_str()),
        Some("oom")
    );

    // 10 days ago: past the hold; only the p90 of 200 MiB peaks remains.
    let r = find(&recs, "oom-10d");
    let mem = r.memory_request_bytes.expect("memory");
    assert!(mib_range(200.0, 1.15).contains(&mem), "memory {mem}");
    assert_eq!(
        r.evidence
            .as_ref()
            .map(|e| e.memory_request_driver.as_str()),
        Some("p90 daily peak")
    );
}

#[test]
fn a_throttled_container_gets_more_than_it_could_use() {
    let dir = TempDir::new("throttle");
    // Pegged at its 0.5-core limit, throttled in 40 % of periods.
    let store = store_with(
        &dir,
        &[Series {
            key: "enc-1",
            workload: "encoder",
            cpu: "0.5",
            throttled: "0.4",
            ws: "64 * 1048576",
            cpu_limit: "0.5",
            cpu_request: "0.5",
            ..Default::default()
        }],
    );
    let recs = rightsize(&store, v1::RightsizeGrouping::Workload);
    let r = find(&recs, "encoder");
    let ev = r.evidence.as_ref().expect("evidence");
    assert_eq!(ev.cpu_request_driver, "throttling");
    assert!((ev.cpu_throttled_ratio.unwrap_or_default() - 0.4).abs() < 1e-9);
    // p95 (0.5, one bucket up at most) × 1.4 × 1.15 = 0.805 cores.
    let cpu = r.cpu_request_millicores.expect("cpu");
    assert!(cpu_range(0.5, 1.4 * 1.15).contains(&cpu), "cpu {cpu}");
    assert!(r.reason.contains("throttled in 40%"), "{}", r.reason);
    // It costs more than it does now: a negative saving.
    assert!(r.monthly_saving < 0.0, "{}", r.monthly_saving);
}

#[test]
fn two_hours_of_history_is_not_enough_data() {
    let dir = TempDir::new("young");
    let store = store_with(
        &dir,
        &[Series {
            key: "new-1",
            workload: "newcomer",
            from: AT - 2 * HOUR_NS,
            cpu: "0.3",
            ws: "50 * 1048576",
            cpu_request: "0.5",
            ..Default::default()
        }],
    );
    let recs = rightsize(&store, v1::RightsizeGrouping::Workload);
    let r = find(&recs, "newcomer");
    assert!(!r.enough_data);
    assert_eq!(r.samples, 120);
    assert_eq!(r.cpu_request_millicores, None);
    assert_eq!(r.memory_request_bytes, None);
    assert_eq!(r.memory_limit_bytes, None);
    assert!(
        r.reason
            .starts_with("not enough data: 2h of history, needs 1d"),
        "{}",
        r.reason
    );
    assert_eq!(r.monthly_saving, 0.0);
    assert!(r.confidence < 0.02, "{}", r.confidence);
}

#[test]
fn a_container_replaced_every_six_hours_is_pooled_by_name() {
    let dir = TempDir::new("restarts");
    // 56 instances (Kubernetes gives each restart a new container id), six
    // hours each, at 0.3 cores: one recommendation, one running replica.
    let keys: Vec<String> = (0..56).map(|i| format!("flaky-{i:02}")).collect();
    let series: Vec<Series<'_>> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Series {
            key,
            workload: "flaky",
            from: AT - 14 * DAY_NS + i as i64 * 6 * HOUR_NS,
            to: AT - 14 * DAY_NS + (i as i64 + 1) * 6 * HOUR_NS,
            cpu: "0.3",
            ws: "300 * 1048576",
            ..Default::default()
        })
        .collect();
    let store = store_with(&dir, &series);
    let recs = rightsize(&store, v1::RightsizeGrouping::Workload);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let r = &recs[0];
    assert_eq!(r.replicas, 1);
    assert_eq!(r.evidence.as_ref().map(|e| e.restarts), Some(55));
    assert_eq!(r.samples, 14 * 1440);
    let cpu = r.cpu_request_millicores.expect("cpu");
    assert!(cpu_range(0.3, 1.15).contains(&cpu), "cpu {cpu}");
    // Per container, only the running instance is rightsized, with six
    // hours of history: not enough.
    let per = rightsize(&store, v1::RightsizeGrouping::Container);
    assert_eq!(per.len(), 1);
    assert!(!per[0].enough_data);
}

/// Cost per hour of `cpu` cores and `mem_mib` MiB at the default prices.
fn hourly(cpu: f64, mem_mib: f64) -> f64 {
    cpu * CPU_HOUR + mem_mib / 1024.0 * GIB_HOUR
}

#[test]
fn an_idle_workload_is_found_with_since_when_and_what_it_burns() {
    let dir = TempDir::new("idle");
    // Quiet (2m CPU, 10 B/s) for 14 days except ten busy minutes 5 days ago
    // at 09:00; asks for 0.5 cores and 256 MiB.
    let busy_from = AT - 5 * DAY_NS + 9 * HOUR_NS;
    let busy_to = busy_from + 10 * MIN_NS;
    let cpu = format!("CASE WHEN ts >= {busy_from} AND ts < {busy_to} THEN 0.5 ELSE 0.002 END");
    let store = store_with(
        &dir,
        &[
            Series {
                key: "old-1",
                workload: "forgotten",
                cpu: &cpu,
                ws: "100 * 1048576",
                net: "300",
                cpu_request: "0.5",
                memory_request: "256 * 1048576",
                ..Default::default()
            },
            Series {
                key: "web-1",
                workload: "web",
                cpu: "0.25",
                ws: "100 * 1048576",
                net: "300",
                ..Default::default()
            },
        ],
    );
    let reader = store.reader().expect("reader");
    let idle = Analyzer::default()
        .idle(&reader, &v1::IdleRequest::default(), AT)
        .expect("idle");
    assert_eq!(idle.workloads.len(), 1, "{:#?}", idle.workloads);
    let w = &idle.workloads[0];
    assert_eq!(w.workload, "forgotten");
    assert!(w.idle);
    // Quiet since the minute after the last busy one.
    assert_eq!(w.idle_since_unix_ns, busy_to);
    assert_eq!(w.idle_for_s, (AT - busy_to) / 1_000_000_000);
    assert!((w.cpu_max_cores - 0.002).abs() < 1e-12);
    // 300 B rx + 300 B tx per minute: 10 B/s.
    assert!((w.net_max_bytes_per_s - 10.0).abs() < 1e-9);
    let quiet_minutes = ((AT - busy_to) / MIN_NS) as f64;
    assert_eq!(w.net_bytes_total, (quiet_minutes as u64) * 600);
    // Charged on the request (it is above usage) for every quiet minute.
    let per_hour = hourly(0.5, 256.0);
    assert!(
        (w.cost_since_idle - per_hour * quiet_minutes / 60.0).abs() < 1e-6,
        "{}",
        w.cost_since_idle
    );
    assert!(
        (w.monthly_cost - per_hour * 730.0).abs() < 1e-6,
        "{}",
        w.monthly_cost
    );
    assert!(w.reason.contains("for 4.6d"), "{}", w.reason);

    // With the active ones: web is listed as not idle, saying why.
    let all = Analyzer::default()
        .idle(
            &reader,
            &v1::IdleRequest {
                include_active: true,
                ..Default::default()
            },
            AT,
        )
        .expect("idle");
    let web = all
        .workloads
        .iter()
        .find(|w| w.workload == "web")
        .expect("web");
    assert!(!web.idle);
    assert!(web.reason.starts_with("active"), "{}", web.reason);
}

#[test]
fn cost_charges_max_of_request_and_usage_per_group_and_node_prices() {
    let dir = TempDir::new("cost");
    let store = store_with(
        &dir,
        &[
            // 1 core and 512 MiB requested, 0.25 and 100 MiB used.
            Series {
                key: "api-1",
                workload: "api",
                cpu: "0.25",
                ws: "100 * 1048576",
                cpu_request: "1.0",
                memory_request: "512 * 1048576",
                ..Default::default()
            },
            // No request, uses 2 cores and 1 GiB, on a pricier node.
            Series {
                key: "etl-1",
                node: "node-b",
                namespace: "data",
                workload: "etl",
                cpu: "2.0",
                ws: "1024 * 1048576",
                ..Default::default()
            },
        ],
    );
    let mut pricing = Pricing::default();
    pricing.nodes.insert(
        "node-b".to_owned(),
        NodePrice {
            cpu_core_hour: Some(0.05),
            memory_gib_hour: None,
        },
    );
    let analyzer = Analyzer::new(AnalysisSettings::default(), pricing);
    let reader = store.reader().expect("reader");
    let cost = analyzer
        .cost(
            &reader,
            &v1::CostRequest {
                group_by: v1::CostGrouping::Namespace as i32,
                ..Default::default()
            },
            AT,
        )
        .expect("cost");
    // Default window: 7 days = 168 hours.
    assert_eq!(cost.end_unix_ns - cost.start_unix_ns, 7 * DAY_NS);
    let shop = cost.lines.iter().find(|l| l.key == "shop").expect("shop");
    let data = cost.lines.iter().find(|l| l.key == "data").expect("data");
    let shop_hourly = hourly(1.0, 512.0);
    let data_hourly = 2.0 * 0.05 + 1.0 * GIB_HOUR;
    assert!(
        (shop.cost - 168.0 * shop_hourly).abs() < 1e-6,
        "{}",
        shop.cost
    );
    assert!(
        (data.cost - 168.0 * data_hourly).abs() < 1e-6,
        "{}",
        data.cost
    );
    assert!((shop.cpu_cost - 168.0 * CPU_HOUR).abs() < 1e-6);
    // Waste: requested and unused (0.75 cores, 412 MiB); none without a
    // request.
    assert!(
        (shop.waste - 168.0 * hourly(0.75, 412.0)).abs() < 1e-6,
        "{}",
        shop.waste
    );
    assert_eq!(data.waste, 0.0);
    assert!((shop.monthly_cost - 730.0 * shop_hourly).abs() < 1e-6);
    assert!((shop.monthly_waste - 730.0 * hourly(0.75, 412.0)).abs() < 1e-6);
    // The api recommendation's saving shows on its namespace.
    assert!(shop.monthly_saving > 15.0, "{}", shop.monthly_saving);
    assert!((shop.cpu_request_cores - 1.0).abs() < 1e-9);
    assert!((shop.cpu_usage_cores - 0.25).abs() < 1e-9);
    assert!((shop.hours - 168.0).abs() < 1e-9);
    // Most expensive first; the total adds up.
    assert_eq!(cost.lines[0].key, "data");
    let total = cost.total.as_ref().expect("total");
    assert!((total.cost - shop.cost - data.cost).abs() < 1e-9);
    assert_eq!(total.containers, 2);

    // By node: node-b's CPU at its own price.
    let by_node = analyzer
        .cost(
            &reader,
            &v1::CostRequest {
                group_by: v1::CostGrouping::Node as i32,
                window_s: 86_400,
                ..Default::default()
            },
            AT,
        )
        .expect("cost");
    let b = by_node
        .lines
        .iter()
        .find(|l| l.key == "node-b")
        .expect("node-b");
    assert!((b.cost - 24.0 * data_hourly).abs() < 1e-6, "{}", b.cost);
    // A scope narrows it to one workload.
    let one = analyzer
        .cost(
            &reader,
            &v1::CostRequest {
                scope: Some(v1::AnalysisScope {
                    workload: "etl".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            AT,
        )
        .expect("cost");
    assert_eq!(one.lines.len(), 1);
    assert_eq!(one.lines[0].key, "Deployment/data/etl");
}

// ---------------------------------------------------------------------
// The hourly usage summary answers as the usage rows do.
//
// Every analysis reads the summary where it can (docs/analysis.md, "How
// analysis stays fast"); `UsageReadPath::Raw` reads every usage row with
// the reference queries. The tests below run both on the same store and
// compare every field of every answer (floats to 1e-9, relative).
// ---------------------------------------------------------------------

use upid_collector::store::UsageReadPath;

/// `a` and `b` (Debug renderings) are equal, floats to 1e-9 relative.
fn assert_same(what: &str, a: &str, b: &str) {
    float_eq::assert_nearly_same(what, ("summary", "rows"), a, b);
}

/// Every analysis the API offers, through `analyzer` at `at`: each
/// grouping, scopes, a CPU limit ratio, idle with the active ones, cost
/// over two windows.
fn every_answer(
    reader: &upid_collector::store::Reader,
    analyzer: &Analyzer,
    at: i64,
) -> Vec<(String, String)> {
    let scopes = [
        None,
        Some(v1::AnalysisScope {
            namespace: "ns-1".into(),
            ..Default::default()
        }),
        Some(v1::AnalysisScope {
            node_name: "node-2".into(),
            ..Default::default()
        }),
        Some(v1::AnalysisScope {
            workload: "wl-1".into(),
            container: "app".into(),
            ..Default::default()
        }),
    ];
    let mut out = Vec::new();
    for (i, scope) in scopes.iter().enumerate() {
        let groupings: &[v1::RightsizeGrouping] = if i == 0 {
            &[
                v1::RightsizeGrouping::Workload,
                v1::RightsizeGrouping::Container,
            ]
        } else {
            &[v1::RightsizeGrouping::Workload]
        };
        for &group_by in groupings {
            let r = analyzer
                .rightsize(
                    reader,
                    &v1::RightsizeRequest {
                        scope: scope.clone(),
                        group_by: group_by as i32,
                        cpu_limit_ratio: (i == 1).then_some(1.5),
                    },
                    at,
                )
                .expect("rightsize");
            out.push((
                format!("rightsize {group_by:?} scope {i}"),
                format!("{r:?}"),
            ));
        }
        let idle = analyzer
            .idle(
                reader,
                &v1::IdleRequest {
                    scope: scope.clone(),
                    include_active: true,
                },
                at,
            )
            .expect("idle");
        out.push((format!("idle scope {i}"), format!("{idle:?}")));
        // Every grouping and two windows unscoped; scoped, the default.
        let groupings: &[v1::CostGrouping] = if i == 0 {
            &[
                v1::CostGrouping::Workload,
                v1::CostGrouping::Namespace,
                v1::CostGrouping::Node,
                v1::CostGrouping::Image,
                v1::CostGrouping::Container,
            ]
        } else {
            &[v1::CostGrouping::Workload]
        };
        let windows: &[i64] = if i == 0 {
            &[0, 2 * 86_400 + 1_234]
        } else {
            &[0]
        };
        for &group_by in groupings {
            for &window_s in windows {
                let c = analyzer
                    .cost(
                        reader,
                        &v1::CostRequest {
                            scope: scope.clone(),
                            group_by: group_by as i32,
                            window_s,
                        },
                        at,
                    )
                    .expect("cost");
                out.push((
                    format!("cost {group_by:?} {window_s} scope {i}"),
                    format!("{c:?}"),
                ));
            }
        }
    }
    out
}

/// The summary path and the usage-row path answer alike.
fn assert_paths_agree(store: &Store, analyzer: &Analyzer, at: i64, what: &str) {
    let reader = store.reader().expect("reader");
    let summary = every_answer(
        &reader,
        &analyzer.clone().with_read_path(UsageReadPath::Summary),
        at,
    );
    let rows = every_answer(
        &reader,
        &analyzer.clone().with_read_path(UsageReadPath::Raw),
        at,
    );
    assert_eq!(summary.len(), rows.len());
    for ((name, a), (_, b)) in summary.iter().zip(&rows) {
        assert_same(&format!("{what}: {name}"), a, b);
    }
}

/// Rows of 16 series over 15 days (and 2 hours past `AT`): 1-minute and
/// 5-minute rows (some 17 s off the minute), agent and imported sources,
/// NULLs in every nullable column, a series that moves to another node and
/// one whose image changes, requests that change, OOM kills, throttling,
/// pods with and without network figures, an idle workload with one busy
/// minute, and a quiet one.
fn insert_fleet(conn: &duckdb::Connection, keys: &str) {
    let from = AT - 15 * DAY_NS;
    let to = AT + 2 * HOUR_NS;
    let sql = format!(
        "INSERT INTO usage
         SELECT key, CASE WHEN c % 2 = 0 THEN 'agent' ELSE 'parquet' END, ts,
            CASE WHEN c % 5 = 4 THEN 300.0 ELSE 60.0 END,
            CASE WHEN c = 1 AND ts >= {moved} THEN 'node-2' ELSE 'node-' || (c % 3) END,
            key, 'ns-' || (c % 2), key || '-pod', 'app', 'Deployment', 'wl-' || (c // 2),
            CASE WHEN c = 2 AND ts >= {new_image} THEN 'registry.local/wl:2' ELSE 'registry.local/wl:1' END,
            CASE WHEN c // 2 = 3 AND ts = {busy} THEN 0.4
                 WHEN h % 23 = 0 THEN NULL
                 WHEN c // 2 = 3 THEN 0.001
                 WHEN c // 2 = 6 THEN 0.002
                 ELSE (h % 1000) / 1000.0 * (0.1 + c * 0.05)
                      + CASE WHEN (ts // {MIN_NS}) % 97 = c THEN 1.5 ELSE 0 END END,
            CASE WHEN c % 3 = 0 THEN (h % 100) / 500.0 END,
            CASE WHEN h % 19 = 0 THEN NULL ELSE (100 + h % 300) * 1048576 END,
            CASE WHEN h % 3 = 0 THEN NULL ELSE (100 + h % 350) * 1048576 END,
            CASE WHEN h % 29 = 0 THEN NULL WHEN h % 4999 = 7 THEN 1 ELSE 0 END,
            CASE WHEN c % 4 = 0 OR h % 31 = 0 THEN NULL
                 WHEN c // 2 IN (3, 6) THEN h % 50 ELSE h % 200000 END,
            CASE WHEN c % 4 = 0 OR h % 37 = 0 THEN NULL WHEN c // 2 IN (3, 6) THEN 5 ELSE h % 9000 END,
            CASE WHEN c % 3 = 2 THEN NULL WHEN ts >= {resized} THEN 0.5 ELSE 0.25 END,
            CASE WHEN c % 7 = 0 THEN 1.0 END,
            CASE WHEN c % 5 = 3 THEN NULL ELSE 256 * 1048576 END,
            CASE WHEN c % 2 = 0 THEN 512 * 1048576 END
         FROM (SELECT c, key, ts, hash(c, ts) AS h
               FROM (SELECT c, 'mx-' || c AS key,
                         t0 + CASE WHEN c % 5 = 4 THEN 17000000000 ELSE 0 END AS ts, t0
                     FROM range(16) r(c), range({from}::BIGINT, {to}::BIGINT, {MIN_NS}::BIGINT) t(t0))
               WHERE (c % 5 <> 4 OR (t0 // {MIN_NS}) % 5 = 0) AND t0 >= {from} + c * 7919000000000
                 AND key IN ({keys}))",
        moved = AT - 3 * DAY_NS + 17 * MIN_NS,
        new_image = AT - 6 * DAY_NS + 17 * MIN_NS,
        busy = AT - 4 * DAY_NS - 5 * HOUR_NS - 13 * MIN_NS,
        resized = AT - 2 * DAY_NS,
    );
    conn.execute_batch(&sql).expect("insert the fleet");
}

const ALL_KEYS: &str = "SELECT 'mx-' || range FROM range(16)";

fn fleet_store(dir: &TempDir) -> Store {
    let path = dir.path("upid.duckdb");
    drop(Store::open(&path).expect("create store"));
    {
        let conn = duckdb::Connection::open(&path).expect("raw open");
        insert_fleet(&conn, ALL_KEYS);
    }
    // Opening builds the summary of rows written around the collector.
    Store::open(&path).expect("reopen store")
}

/// A pricing with one node priced on its own.
fn node_pricing() -> Pricing {
    let mut pricing = Pricing::default();
    pricing.nodes.insert(
        "node-1".to_owned(),
        NodePrice {
            cpu_core_hour: Some(0.05),
            memory_gib_hour: Some(0.01),
        },
    );
    pricing
}

/// Analysis times: on a day boundary (all whole hours), and in the middle
/// of an hour (every range edge a partial hour).
const TIMES: [i64; 2] = [AT, AT - 3 * HOUR_NS - 7 * MIN_NS - 13_500_000_000];

#[test]
fn the_summary_answers_as_the_usage_rows_do_at_any_time_of_the_hour() {
    let dir = TempDir::new("summary-fleet");
    let store = fleet_store(&dir);
    let analyzer = Analyzer::new(AnalysisSettings::default(), node_pricing());
    for at in TIMES {
        assert_paths_agree(&store, &analyzer, at, &format!("at {at}"));
    }
    // The answers are not empty: rightsizing, idle and cost all found
    // something to say.
    let reader = store.reader().expect("reader");
    let idle = analyzer
        .idle(&reader, &v1::IdleRequest::default(), AT)
        .expect("idle");
    // Each replica is in its own namespace, so each is a workload: the
    // quiet wl-6 pair and the wl-3 pair quiet since a busy minute.
    let mut idle_names: Vec<(&str, &str)> = idle
        .workloads
        .iter()
        .map(|w| (w.namespace.as_str(), w.workload.as_str()))
        .collect();
    idle_names.sort_unstable();
    assert_eq!(
        idle_names,
        vec![
            ("ns-0", "wl-3"),
            ("ns-0", "wl-6"),
            ("ns-1", "wl-3"),
            ("ns-1", "wl-6")
        ],
        "{idle:#?}"
    );
    let wl3 = idle
        .workloads
        .iter()
        .find(|w| w.workload == "wl-3")
        .expect("wl-3");
    // One busy minute 4 days 5 h 13 min ago: quiet since the minute after.
    assert_eq!(
        wl3.idle_since_unix_ns,
        AT - 4 * DAY_NS - 5 * HOUR_NS - 12 * MIN_NS
    );
    let recs = analyzer
        .rightsize(&reader, &v1::RightsizeRequest::default(), AT)
        .expect("rightsize");
    assert_eq!(recs.recommendations.len(), 16, "{recs:#?}");
}

#[test]
fn the_summary_follows_other_settings_or_steps_aside() {
    let dir = TempDir::new("summary-settings");
    let mut store = fleet_store(&dir);
    let mut settings = AnalysisSettings {
        history_s: 3 * 86_400 + 977,
        stale_after_s: 3_600,
        rightsize: RightsizeSettings {
            cpu_half_life_s: 12 * 3_600,
            memory_half_life_s: 2 * 86_400,
            cpu_percentile: 0.8,
            ..Default::default()
        },
        idle: IdleSettings {
            cpu_threshold_millicores: 50,
            net_threshold_bytes_per_s: 10_240.0,
            window_s: 86_400,
        },
        cost: CostSettings {
            window_s: 2 * 86_400,
            run_rate_s: 6 * 3_600 + 600,
        },
    };
    let analyzer = Analyzer::new(settings.clone(), node_pricing());
    // A 12 h half-life: the summary's histogram holds 24 h weights, so the
    // CPU histogram is read from usage rows, the rest from the summary.
    for at in TIMES {
        assert_paths_agree(&store, &analyzer, at, "12 h half-life, rows for CPU");
    }
    // Rebuilt for 12 h: all from the summary, same answers.
    assert!(
        store
            .set_usage_summary_cpu_half_life(12.0 * 3_600.0)
            .expect("rebuild CPU histogram")
    );
    assert!(
        !store
            .set_usage_summary_cpu_half_life(12.0 * 3_600.0)
            .expect("nothing to do")
    );
    for at in TIMES {
        assert_paths_agree(&store, &analyzer, at, "12 h half-life summarised");
    }
    // Zero thresholds: every minute with a figure is activity.
    settings.idle.cpu_threshold_millicores = 0;
    settings.idle.net_threshold_bytes_per_s = 0.0;
    assert_paths_agree(
        &store,
        &Analyzer::new(settings, Pricing::default()),
        TIMES[1],
        "zero thresholds",
    );
}

#[test]
fn a_summary_that_disagrees_with_the_rows_is_what_the_summary_path_reads() {
    // The comparison above is only worth something if the summary path
    // really reads the summary: change a stored hour behind the
    // collector's back (same row counts, so opening does not repair it)
    // and the two paths part.
    let dir = TempDir::new("summary-tamper");
    let path = dir.path("upid.duckdb");
    drop(fleet_store(&dir));
    {
        let conn = duckdb::Connection::open(&path).expect("raw open");
        conn.execute_batch(&format!(
            "UPDATE usage_hourly SET charged_core_s = charged_core_s * 1000
             WHERE hour_unix_ns = {}",
            AT - 30 * HOUR_NS
        ))
        .expect("tamper");
    }
    let store = Store::open(&path).expect("reopen");
    let reader = store.reader().expect("reader");
    let cost = |path| {
        Analyzer::default()
            .with_read_path(path)
            .cost(&reader, &v1::CostRequest::default(), AT)
            .expect("cost")
            .total
            .expect("total")
            .cost
    };
    let (summary, rows) = (cost(UsageReadPath::Summary), cost(UsageReadPath::Raw));
    assert!(summary > rows * 1.001, "summary {summary} rows {rows}");
}

/// Writes `usage`-schema rows of `keys` from the fleet (CPU × `cpu_factor`)
/// with `ts` in [from, to) as a Parquet file with the export schema.
fn fleet_parquet(
    dir: &TempDir,
    name: &str,
    keys: &str,
    from: i64,
    to: i64,
    cpu_factor: f64,
) -> std::path::PathBuf {
    let db = dir.path(&format!("{name}.duckdb"));
    drop(Store::open(&db).expect("scratch store"));
    let file = dir.path(name);
    let conn = duckdb::Connection::open(&db).expect("raw open");
    insert_fleet(&conn, keys);
    conn.execute_batch(&format!(
        "COPY (SELECT make_timestamp(ts_unix_ns // 1000)::TIMESTAMPTZ AS ts, interval_s, node,
                container_id, namespace, pod, container, workload_kind, workload, image,
                cpu_cores * {cpu_factor} AS cpu_cores, cpu_throttled_ratio,
                memory_working_set_bytes::BIGINT AS memory_working_set_bytes,
                memory_peak_bytes::BIGINT AS memory_peak_bytes, oom_kills::BIGINT AS oom_kills,
                net_rx_bytes::BIGINT AS net_rx_bytes, net_tx_bytes::BIGINT AS net_tx_bytes,
                cpu_request_cores, cpu_limit_cores,
                memory_request_bytes::BIGINT AS memory_request_bytes,
                memory_limit_bytes::BIGINT AS memory_limit_bytes
         FROM usage WHERE ts_unix_ns >= {from} AND ts_unix_ns < {to})
         TO '{}' (FORMAT PARQUET)",
        file.display()
    ))
    .expect("write Parquet");
    file
}

#[test]
fn an_import_into_the_past_and_a_re_import_keep_the_summary_right() {
    use upid_collector::import::parquet::import_parquet;
    let dir = TempDir::new("summary-import");
    let path = dir.path("upid.duckdb");
    // The store knows four series for the last 4 days.
    drop(Store::open(&path).expect("create store"));
    {
        let conn = duckdb::Connection::open(&path).expect("raw open");
        insert_fleet(&conn, "'mx-1', 'mx-2', 'mx-4', 'mx-9'");
        conn.execute_batch(&format!(
            "DELETE FROM usage WHERE ts_unix_ns < {}",
            AT - 4 * DAY_NS
        ))
        .expect("keep 4 days");
    }
    drop(Store::open(&path).expect("summarise"));
    // History of those and four more, 15 to 3 days ago (a day overlaps
    // what is stored: agent rows win, earlier parquet rows are replaced).
    let keys = "'mx-1', 'mx-2', 'mx-4', 'mx-9', 'mx-6', 'mx-7', 'mx-11', 'mx-14'";
    let old = fleet_parquet(
        &dir,
        "old.parquet",
        keys,
        AT - 15 * DAY_NS,
        AT - 3 * DAY_NS - 7 * MIN_NS,
        1.0,
    );
    let summary = import_parquet(&path, &old, false).expect("import");
    assert!(summary.rows_stored > 0, "{summary:?}");
    let analyzer = Analyzer::new(AnalysisSettings::default(), node_pricing());
    let fortnight = v1::CostRequest {
        window_s: 14 * 86_400,
        ..Default::default()
    };
    let total = |store: &Store| {
        let reader = store.reader().expect("reader");
        analyzer
            .cost(&reader, &fortnight, AT)
            .expect("cost")
            .total
            .expect("total")
            .cost
    };
    let before = {
        let store = Store::open(&path).expect("open");
        for at in TIMES {
            assert_paths_agree(&store, &analyzer, at, "after the import");
        }
        total(&store)
    };
    // The same history again with twice the CPU: the earlier import's rows
    // are replaced, row counts stay the same, the answers change.
    let again = fleet_parquet(
        &dir,
        "again.parquet",
        keys,
        AT - 15 * DAY_NS,
        AT - 3 * DAY_NS - 7 * MIN_NS,
        2.0,
    );
    let summary = import_parquet(&path, &again, false).expect("re-import");
    assert!(summary.rows_replaced > 0, "{summary:?}");
    let store = Store::open(&path).expect("open");
    for at in TIMES {
        assert_paths_agree(&store, &analyzer, at, "after the re-import");
    }
    // Containers without a CPU request are charged their usage: doubled.
    let after = total(&store);
    assert!(after > before * 1.01, "before {before}, after {after}");
}

#[test]
fn node_label_prices_apply_to_nodes_whose_reported_labels_match() {
    let dir = TempDir::new("label-prices");
    let mut store = store_with(
        &dir,
        &[
            // 2 cores and 1 GiB used on each node, no requests.
            Series {
                key: "etl-a",
                node: "node-a",
                workload: "etl",
                cpu: "2.0",
                ws: "1024 * 1048576",
                ..Default::default()
            },
            Series {
                key: "etl-b",
                node: "node-b",
                workload: "etl",
                cpu: "2.0",
                ws: "1024 * 1048576",
                ..Default::default()
            },
        ],
    );
    // node-b's agent reports its labels (as the agent's inventory does).
    let batch = v1::Batch {
        agent_id: "agent-b".to_owned(),
        node_name: "node-b".to_owned(),
        seq: 1,
        snapshot: Some(v1::Snapshot {
            node: Some(v1::NodeSample {
                node_name: "node-b".to_owned(),
                timestamp_unix_ns: AT - HOUR_NS,
                ..Default::default()
            }),
            ..Default::default()
        }),
        inventory: Some(v1::Inventory {
            full: true,
            node_labels_known: true,
            node_labels: [
                ("pool".to_owned(), "spot".to_owned()),
                ("zone".to_owned(), "a".to_owned()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    store.ingest(&[batch]).expect("ingest");
    let pricing = Pricing {
        node_labels: vec![
            // Does not match node-b: the zone differs.
            LabelPrice {
                selector: [("pool", "spot"), ("zone", "b")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                cpu_core_hour: Some(1.0),
                memory_gib_hour: Some(1.0),
            },
            LabelPrice {
                selector: [("pool".to_owned(), "spot".to_owned())]
                    .into_iter()
                    .collect(),
                cpu_core_hour: Some(0.01),
                memory_gib_hour: None,
            },
        ],
        ..Pricing::default()
    };
    let analyzer = Analyzer::new(AnalysisSettings::default(), pricing);
    let reader = store.reader().expect("reader");
    let by_node = analyzer
        .cost(
            &reader,
            &v1::CostRequest {
                group_by: v1::CostGrouping::Node as i32,
                window_s: 86_400,
                ..Default::default()
            },
            AT,
        )
        .expect("cost");
    let line = |node: &str| {
        by_node
            .lines
            .iter()
            .find(|l| l.key == node)
            .unwrap_or_else(|| panic!("{node}: {by_node:?}"))
            .cost
    };
    // node-b: the second rule's CPU price, the default memory price;
    // node-a (no labels reported): the defaults.
    let b = 24.0 * (2.0 * 0.01 + 1.0 * GIB_HOUR);
    let a = 24.0 * (2.0 * CPU_HOUR + 1.0 * GIB_HOUR);
    assert!(
        (line("node-b") - b).abs() < 1e-6,
        "{} vs {b}",
        line("node-b")
    );
    assert!(
        (line("node-a") - a).abs() < 1e-6,
        "{} vs {a}",
        line("node-a")
    );
    // The labels are stored as reported.
    let labels = reader.node_labels().expect("labels");
    assert_eq!(
        labels
            .get("node-b")
            .and_then(|l| l.get("zone"))
            .map(String::as_str),
        Some("a")
    );
    assert!(!labels.contains_key("node-a"));
}

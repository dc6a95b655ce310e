//! `upid rightsize`, `upid idle` and `upid cost`.

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::lists::cell;
use crate::cli::render::{Table, structured};
use crate::cli::units::{
    NONE, age, bytes, change, money, opt_bytes, opt_bytes_per_s, opt_cores, opt_millicores,
    opt_percent, price, span_s,
};
use crate::cli::view::{CostLineView, CostView, IdleView, RecommendationView};

/// CPU_REQ: `4000m→250m`.
pub(crate) fn cpu_request(r: &RecommendationView) -> String {
    change(
        r.current.cpu_request_millicores,
        r.cpu_request_millicores,
        opt_millicores,
    )
}

/// CPU_LIM: `-→500m`, `-` when neither is set.
pub(crate) fn cpu_limit(r: &RecommendationView) -> String {
    change(
        r.current.cpu_limit_millicores,
        r.cpu_limit_millicores,
        opt_millicores,
    )
}

/// MEM_REQ: `2.0Gi→300Mi`.
pub(crate) fn memory_request(r: &RecommendationView) -> String {
    change(
        r.current.memory_request_bytes,
        r.memory_request_bytes,
        opt_bytes,
    )
}

/// MEM_LIM: `4.0Gi→600Mi`.
pub(crate) fn memory_limit(r: &RecommendationView) -> String {
    change(
        r.current.memory_limit_bytes,
        r.memory_limit_bytes,
        opt_bytes,
    )
}

/// SAVING/MO: the monthly saving, `-` without enough data (nothing to
/// apply).
pub(crate) fn saving(r: &RecommendationView) -> String {
    if r.enough_data {
        money(r.monthly_saving, &r.currency)
    } else {
        NONE.into()
    }
}

/// The REASON column (last: it holds spaces).
fn reason(text: &str) -> String {
    match text.trim() {
        "" => NONE.into(),
        t => t.to_owned(),
    }
}

/// `upid rightsize`: NAMESPACE, WORKLOAD, CONTAINER, REPLICAS, CPU_REQ,
/// CPU_LIM, MEM_REQ, MEM_LIM (each `current→recommended`), CONFIDENCE,
/// SAVING/MO, REASON; `wide` adds KIND, NODE and ID (grouped by
/// container), SAMPLES, WINDOW, P90_CPU, P90_DAILY_PEAK, OOMS, THROTTLED
/// (REASON stays last).
pub fn rightsize(rows: &[RecommendationView], format: Format) -> Result<String, CliError> {
    if let Some(s) = structured(rows, format) {
        return s;
    }
    let wide = format == Format::Wide;
    let mut headers = vec!["NAMESPACE"];
    if wide {
        headers.push("KIND");
    }
    headers.extend(["WORKLOAD", "CONTAINER"]);
    if wide {
        headers.extend(["NODE", "ID"]);
    }
    headers.extend([
        "REPLICAS",
        "CPU_REQ",
        "CPU_LIM",
        "MEM_REQ",
        "MEM_LIM",
        "CONFIDENCE",
        "SAVING/MO",
    ]);
    if wide {
        headers.extend([
            "SAMPLES",
            "WINDOW",
            "P90_CPU",
            "P90_DAILY_PEAK",
            "OOMS",
            "THROTTLED",
        ]);
    }
    headers.push("REASON");
    let mut t = Table::new(&headers);
    for r in rows {
        let mut row = vec![cell(r.namespace.as_deref())];
        if wide {
            row.push(cell(r.workload_kind.as_deref()));
        }
        row.extend([cell(r.workload.as_deref()), cell(Some(&r.container))]);
        if wide {
            row.extend([
                cell(r.node_name.as_deref()),
                cell(r.container_id.as_deref()),
            ]);
        }
        row.extend([
            r.replicas.to_string(),
            cpu_request(r),
            cpu_limit(r),
            memory_request(r),
            memory_limit(r),
            opt_percent(Some(r.confidence)),
            saving(r),
        ]);
        if wide {
            let e = r.evidence.as_ref();
            row.extend([
                r.samples.to_string(),
                span_s(r.window_s),
                opt_cores(e.map(|e| e.cpu_p90_cores)),
                opt_bytes(e.map(|e| e.memory_p90_daily_peak_bytes)),
                e.map_or_else(|| NONE.into(), |e| e.oom_kills.to_string()),
                opt_percent(r.throttled_ratio()),
            ]);
        }
        row.push(reason(&r.reason));
        t.row(row);
    }
    Ok(t.render())
}

/// `upid idle`: NAMESPACE, KIND, WORKLOAD, REPLICAS, IDLE_SINCE (how long
/// quiet at `at_unix_ns`, `-` when active), CPU_MAX, NET_MAX, COST/MO,
/// REASON; `wide` adds IDLE, CPU_MEAN, NET_TOTAL, COST_SINCE_IDLE, WINDOW,
/// LAST_SAMPLE before REASON.
pub fn idle(rows: &[IdleView], format: Format, at_unix_ns: i64) -> Result<String, CliError> {
    if let Some(s) = structured(rows, format) {
        return s;
    }
    let wide = format == Format::Wide;
    let mut headers = vec![
        "NAMESPACE",
        "KIND",
        "WORKLOAD",
        "REPLICAS",
        "IDLE_SINCE",
        "CPU_MAX",
        "NET_MAX",
        "COST/MO",
    ];
    if wide {
        headers.extend([
            "IDLE",
            "CPU_MEAN",
            "NET_TOTAL",
            "COST_SINCE_IDLE",
            "WINDOW",
            "LAST_SAMPLE",
        ]);
    }
    headers.push("REASON");
    let mut t = Table::new(&headers);
    for w in rows {
        let mut row = vec![
            cell(w.namespace.as_deref()),
            cell(w.workload_kind.as_deref()),
            cell(Some(&w.workload)),
            w.replicas.to_string(),
            age(at_unix_ns, w.idle_since_unix_ns.unwrap_or(0)),
            opt_cores(Some(w.cpu_max_cores)),
            opt_bytes_per_s(Some(w.net_max_bytes_per_s)),
            money(w.monthly_cost, &w.currency),
        ];
        if wide {
            row.extend([
                if w.idle { "yes" } else { "no" }.to_owned(),
                opt_cores(Some(w.cpu_mean_cores)),
                bytes(w.net_bytes_total),
                money(w.cost_since_idle, &w.currency),
                span_s(w.window_s),
                age(at_unix_ns, w.last_sample_unix_ns.unwrap_or(0)),
            ]);
        }
        row.push(reason(&w.reason));
        t.row(row);
    }
    Ok(t.render())
}

/// A container id shortened to 12 characters, as `get containers` shows
/// it; other keys (series keys of imported data) unchanged.
fn short_container(key: &str) -> &str {
    let hex = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
    if hex { &key[..12] } else { key }
}

/// The group columns of a cost table, and a line's cells in them.
fn key_headers(group_by: &str) -> &'static [&'static str] {
    match group_by {
        "namespace" => &["NAMESPACE"],
        "node" => &["NODE"],
        "image" => &["IMAGE"],
        "container" => &["NAMESPACE", "WORKLOAD", "CONTAINER"],
        _ => &["NAMESPACE", "KIND", "WORKLOAD"],
    }
}

fn key_cells(l: &CostLineView, group_by: &str, wide: bool) -> Vec<String> {
    let key = l.key.as_deref();
    match group_by {
        "namespace" => vec![cell(l.namespace.as_deref().or(key))],
        "node" | "image" => vec![cell(key)],
        "container" => {
            let workload = match (&l.workload_kind, &l.workload) {
                (Some(kind), Some(name)) => Some(format!("{kind}/{name}")),
                (None, Some(name)) => Some(name.clone()),
                _ => None,
            };
            vec![
                cell(l.namespace.as_deref()),
                cell(workload.as_deref()),
                cell(key.map(|k| if wide { k } else { short_container(k) })),
            ]
        }
        _ => vec![
            cell(l.namespace.as_deref()),
            cell(l.workload_kind.as_deref()),
            cell(l.workload.as_deref().or(key)),
        ],
    }
}

/// `upid cost`: the group columns (NAMESPACE; NAMESPACE, KIND, WORKLOAD;
/// NODE; IMAGE; NAMESPACE, WORKLOAD, CONTAINER), CONTAINERS, COST (over
/// the window), COST/MO, WASTE/MO, SAVING/MO, CPU_REQ/USED (cores),
/// MEM_REQ/USED (a request of 0, i.e. none, is `-`); `wide` adds CPU_COST, MEM_COST, WASTE (over the window),
/// HOURS. A TOTAL line last.
pub fn cost(view: &CostView, format: Format) -> Result<String, CliError> {
    if let Some(s) = structured(view, format) {
        return s;
    }
    let wide = format == Format::Wide;
    let keys = key_headers(&view.group_by);
    let mut headers = keys.to_vec();
    headers.extend([
        "CONTAINERS",
        "COST",
        "COST/MO",
        "WASTE/MO",
        "SAVING/MO",
        "CPU_REQ/USED",
        "MEM_REQ/USED",
    ]);
    if wide {
        headers.extend(["CPU_COST", "MEM_COST", "WASTE", "HOURS"]);
    }
    let currency = &view.pricing.currency;
    let figures = |l: &CostLineView| {
        let mut cells = vec![
            l.containers.to_string(),
            money(l.cost, currency),
            money(l.monthly_cost, currency),
            money(l.monthly_waste, currency),
            money(l.monthly_saving, currency),
            format!(
                "{}/{}",
                opt_cores(Some(l.cpu_request_cores).filter(|c| *c > 0.0)),
                opt_cores(Some(l.cpu_usage_cores))
            ),
            format!(
                "{}/{}",
                opt_bytes(Some(l.memory_request_bytes).filter(|b| *b > 0)),
                bytes(l.memory_usage_bytes)
            ),
        ];
        if wide {
            cells.extend([
                money(l.cpu_cost, currency),
                money(l.memory_cost, currency),
                money(l.waste, currency),
                format!("{:.1}", l.hours),
            ]);
        }
        cells
    };
    let mut t = Table::new(&headers);
    for l in &view.lines {
        let mut row = key_cells(l, &view.group_by, wide);
        row.extend(figures(l));
        t.row(row);
    }
    let mut total = vec!["TOTAL".to_owned()];
    total.extend(std::iter::repeat_n(String::new(), keys.len() - 1));
    total.extend(figures(&view.total));
    t.row(total);
    Ok(t.render())
}

/// The line `upid cost` prints on stderr in the table formats: the window
/// and the prices the figures rest on.
pub fn cost_note(view: &CostView) -> String {
    let currency = &view.pricing.currency;
    format!(
        "COST is over the last {} ({} to {}); /MO is that rate over a month (730 h); default prices {} per core-hour, {} per GiB-hour\n",
        span_s(view.window_s),
        view.start.as_deref().unwrap_or(NONE),
        view.end.as_deref().unwrap_or(NONE),
        price(view.pricing.cpu_core_hour, currency),
        price(view.pricing.memory_gib_hour, currency),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::CostBy;
    use crate::cli::render::fixtures::{self, NOW_NS, POD_ID};
    use crate::cli::view::analysis::{sort_cost_lines, sort_idle, sort_recommendations};

    fn recommendations(r: &crate::wire::v1::RightsizeResponse) -> Vec<RecommendationView> {
        let mut rows = RecommendationView::all(r);
        sort_recommendations(&mut rows);
        rows
    }

    #[test]
    fn rightsize_shows_current_to_recommended_biggest_saving_first() {
        let out =
            rightsize(&recommendations(&fixtures::rightsize()), Format::Table).expect("renders");
        let expected = "\
NAMESPACE   WORKLOAD   CONTAINER   REPLICAS   CPU_REQ      CPU_LIM      MEM_REQ       MEM_LIM       CONFIDENCE   SAVING/MO   REASON
shop        checkout   checkout    3          4000m→250m   -            2.0Gi→300Mi   4.0Gi→600Mi   100%         $275.44     CPU: p90 0.21 cores + 15%; memory: p90 of daily peaks 260Mi + 15%
batch       report     report      1          500m→-       -            1.0Gi→-       -             2.0%         -           not enough data: 200 samples over 3h20m, 1 day needed
shop        web        web         2          -→300m       1500m→600m   -→180Mi       512Mi→360Mi   43%          -$2.67      throttled in 12% of periods: CPU above p90; 2 OOM kills: memory raised
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn wide_rightsize_adds_kind_instance_and_evidence_before_the_reason() {
        let rows = recommendations(&fixtures::rightsize_by_container());
        let out = rightsize(&rows, Format::Wide).expect("renders");
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAMESPACE",
                "KIND",
                "WORKLOAD",
                "CONTAINER",
                "NODE",
                "ID",
                "REPLICAS",
                "CPU_REQ",
                "CPU_LIM",
                "MEM_REQ",
                "MEM_LIM",
                "CONFIDENCE",
                "SAVING/MO",
                "SAMPLES",
                "WINDOW",
                "P90_CPU",
                "P90_DAILY_PEAK",
                "OOMS",
                "THROTTLED",
                "REASON"
            ]
        );
        // Grouped by container: the replica on node-a saves a cent more.
        let first: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!(
            &first[..7],
            [
                "shop",
                "deployment",
                "checkout",
                "checkout",
                "node-a",
                "7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b",
                "1"
            ]
        );
        assert_eq!(first[12], "$91.82");
        assert_eq!(&first[13..19], ["20160", "14d", "0.210", "260Mi", "0", "-"]);
        let second: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!((second[4], second[5]), ("node-b", POD_ID));
        assert_eq!(lines.next(), None);
        // Pooled rows have no node or id.
        let pooled =
            rightsize(&recommendations(&fixtures::rightsize()), Format::Wide).expect("renders");
        let web: Vec<&str> = pooled
            .lines()
            .nth(3)
            .expect("row")
            .split_whitespace()
            .collect();
        assert_eq!(&web[..6], ["shop", "compose", "web", "web", "-", "-"]);
        assert_eq!(&web[13..19], ["8640", "3d", "0.250", "140Mi", "2", "12%"]);
    }

    #[test]
    fn rightsize_json_has_the_documented_keys_nulls_and_evidence() {
        let rows = recommendations(&fixtures::rightsize());
        let out = rightsize(&rows, Format::Json).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        let checkout = &v[0];
        assert_eq!(checkout["namespace"], "shop");
        assert_eq!(checkout["workload"], "checkout");
        assert_eq!(checkout["workload_kind"], "deployment");
        assert_eq!(checkout["container"], "checkout");
        assert_eq!(checkout["container_id"], serde_json::Value::Null);
        assert_eq!(checkout["node_name"], serde_json::Value::Null);
        assert_eq!(checkout["replicas"], 3);
        assert_eq!(
            checkout["current"],
            serde_json::json!({
                "cpu_request_millicores": 4000,
                "cpu_limit_millicores": null,
                "memory_request_bytes": 2u64 << 30,
                "memory_limit_bytes": 4u64 << 30,
            })
        );
        assert_eq!(checkout["cpu_request_millicores"], 250);
        assert_eq!(checkout["cpu_limit_millicores"], serde_json::Value::Null);
        assert_eq!(checkout["memory_request_bytes"], 300u64 << 20);
        assert_eq!(checkout["memory_limit_bytes"], 600u64 << 20);
        assert_eq!(checkout["cpu_lower_millicores"], 180);
        assert_eq!(checkout["cpu_upper_millicores"], 320);
        assert_eq!(checkout["memory_lower_bytes"], 240u64 << 20);
        assert_eq!(checkout["memory_upper_bytes"], 380u64 << 20);
        assert_eq!(checkout["confidence"], 1.0);
        assert_eq!(checkout["confidence_days"], 14.2);
        assert_eq!(checkout["samples"], 60_480);
        assert_eq!(checkout["window_s"], 14 * 86_400);
        assert_eq!(checkout["enough_data"], true);
        assert_eq!(checkout["monthly_cost_current"], 295.47);
        assert_eq!(checkout["monthly_cost_recommended"], 20.03);
        assert_eq!(checkout["monthly_saving"], 275.44);
        assert_eq!(checkout["currency"], "USD");
        assert!(
            checkout["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("CPU: p90 0.21 cores")),
            "{out}"
        );
        let e = &checkout["evidence"];
        assert_eq!(e["first_sample"], "2023-10-31T22:13:20Z");
        assert_eq!(
            e["first_sample_unix_ns"],
            NOW_NS - 14 * 86_400 * 1_000_000_000
        );
        assert_eq!(e["cpu_p90_cores"], 0.21);
        assert_eq!(e["memory_p90_daily_peak_bytes"], 260u64 << 20);
        assert_eq!(
            e["cpu_throttled_ratio"],
            serde_json::Value::Null,
            "no limit"
        );
        assert_eq!(e["last_oom_unix_ns"], serde_json::Value::Null, "0 is none");
        assert_eq!(e["oom_bump_bytes"], serde_json::Value::Null);
        assert_eq!(e["cpu_limit_driver"], "no limit asked");

        let report = &v[1];
        assert_eq!(report["enough_data"], false);
        for key in [
            "cpu_request_millicores",
            "cpu_limit_millicores",
            "memory_request_bytes",
            "memory_limit_bytes",
            "cpu_lower_millicores",
            "memory_upper_bytes",
        ] {
            assert_eq!(report[key], serde_json::Value::Null, "{key}");
        }
        assert_eq!(report["current"]["memory_request_bytes"], 1u64 << 30);

        let web = &v[2];
        assert_eq!(web["monthly_saving"], -2.67);
        assert_eq!(web["evidence"]["oom_kills"], 2);
        assert_eq!(web["evidence"]["last_oom"], "2023-11-14T20:13:20Z");
        assert_eq!(web["evidence"]["oom_bump_bytes"], 170u64 << 20);
        assert_eq!(web["evidence"]["cpu_throttled_ratio"], 0.12);
        assert_eq!(web["evidence"]["restarts"], 2);
        assert_eq!(web["evidence"]["memory_request_driver"], "oom");

        let yaml = rightsize(&rows, Format::Yaml).expect("renders");
        let from_yaml: serde_json::Value = serde_norway::from_str(&yaml).expect("valid YAML");
        assert_eq!(from_yaml, v);
    }

    #[test]
    fn idle_shows_how_long_quiet_and_the_cost_idle_first() {
        let mut rows = IdleView::all(&fixtures::idle());
        sort_idle(&mut rows);
        let out = idle(&rows, Format::Table, NOW_NS).expect("renders");
        let expected = "\
NAMESPACE   KIND         WORKLOAD   REPLICAS   IDLE_SINCE   CPU_MAX   NET_MAX   COST/MO   REASON
staging     deployment   old-api    2          3d4h         0.004     120B/s    $79.20    CPU at most 0.004 cores and traffic at most 120B/s for 3d4h
batch       cronjob      report     1          20h          0.002     0B/s      $13.30    CPU at most 0.002 cores and no traffic for 20h
shop        compose      web        2          -            1.42      244Ki/s   $14.93    active: CPU 0.900 cores in the latest minute
";
        assert_eq!(out, expected, "\n{out}");
        let wide = idle(&rows, Format::Wide, NOW_NS).expect("renders");
        let old_api: Vec<&str> = wide
            .lines()
            .nth(1)
            .expect("row")
            .split_whitespace()
            .collect();
        assert_eq!(
            &old_api[8..14],
            ["yes", "0.002", "31Mi", "$8.24", "7d", "60s"]
        );
    }

    #[test]
    fn idle_json_names_the_wire_fields_with_times_twice() {
        let rows = IdleView::all(&fixtures::idle());
        let out = idle(&rows, Format::Json, NOW_NS).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        let active = &v[0];
        assert_eq!(active["workload"], "web");
        assert_eq!(active["idle"], false);
        assert_eq!(active["idle_since_unix_ns"], serde_json::Value::Null);
        assert_eq!(active["idle_since"], serde_json::Value::Null);
        let old_api = &v[2];
        assert_eq!(old_api["namespace"], "staging");
        assert_eq!(old_api["workload_kind"], "deployment");
        assert_eq!(old_api["replicas"], 2);
        assert_eq!(old_api["idle"], true);
        let since_s = 3 * 86_400 + 4 * 3600;
        assert_eq!(
            old_api["idle_since_unix_ns"],
            NOW_NS - since_s * 1_000_000_000
        );
        assert_eq!(old_api["idle_since"], "2023-11-11T18:13:20Z");
        assert_eq!(old_api["idle_for_s"], since_s);
        assert_eq!(old_api["cpu_max_cores"], 0.004);
        assert_eq!(old_api["cpu_mean_cores"], 0.002);
        assert_eq!(old_api["net_max_bytes_per_s"], 120.0);
        assert_eq!(old_api["net_bytes_total"], 31u64 << 20);
        assert_eq!(old_api["cpu_threshold_cores"], 0.01);
        assert_eq!(old_api["net_threshold_bytes_per_s"], 1024.0);
        assert_eq!(old_api["window_s"], 7 * 86_400);
        assert_eq!(old_api["cost_since_idle"], 8.24);
        assert_eq!(old_api["monthly_cost"], 79.2);
        assert_eq!(old_api["currency"], "USD");
        assert_eq!(old_api["last_sample"], "2023-11-14T22:12:20Z");
        assert!(
            old_api["reason"]
                .as_str()
                .is_some_and(|r| r.contains("3d4h"))
        );
    }

    fn cost_view(by: CostBy) -> CostView {
        let mut v = CostView::new(&fixtures::cost(), by);
        sort_cost_lines(&mut v.lines);
        v
    }

    #[test]
    fn cost_lines_costliest_first_with_a_total_line_last() {
        let out = cost(&cost_view(CostBy::Workload), Format::Table).expect("renders");
        let expected = "\
NAMESPACE   KIND         WORKLOAD   CONTAINERS   COST     COST/MO   WASTE/MO   SAVING/MO   CPU_REQ/USED   MEM_REQ/USED
shop        deployment   checkout   3            $67.98   $295.47   $274.20    $275.44     12.0/0.630     6.0Gi/780Mi
staging     deployment   old-api    2            $18.23   $79.20    $78.64     $0.00       2.00/0.004     1.0Gi/200Mi
shop        compose      web        2            $3.44    $14.96    $0.00      $0.00       -/0.310        -/234Mi
TOTAL                               7            $89.65   $389.63   $352.84    $275.44     14.0/0.944     7.0Gi/1.2Gi
";
        assert_eq!(out, expected, "\n{out}");
        let wide = cost(&cost_view(CostBy::Workload), Format::Wide).expect("renders");
        let total = wide.lines().last().expect("total");
        assert!(
            total.starts_with("TOTAL") && total.ends_with("$83.99     $5.66      $81.20   1176.0"),
            "{wide}"
        );
    }

    #[test]
    fn cost_key_columns_follow_the_grouping() {
        let keys = |by: CostBy| {
            let out = cost(&cost_view(by), Format::Table).expect("renders");
            let header = out.lines().next().unwrap_or_default().to_owned();
            header
                .split_whitespace()
                .take_while(|h| *h != "CONTAINERS")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(CostBy::Namespace), ["NAMESPACE"]);
        assert_eq!(keys(CostBy::Workload), ["NAMESPACE", "KIND", "WORKLOAD"]);
        assert_eq!(keys(CostBy::Node), ["NODE"]);
        assert_eq!(keys(CostBy::Image), ["IMAGE"]);
        assert_eq!(
            keys(CostBy::Container),
            ["NAMESPACE", "WORKLOAD", "CONTAINER"]
        );
        // A container id is shortened as in `get containers`; wide shows it all.
        let mut view = cost_view(CostBy::Container);
        view.lines[0].key = Some(POD_ID.into());
        let out = cost(&view, Format::Table).expect("renders");
        let row: Vec<&str> = out
            .lines()
            .nth(1)
            .expect("row")
            .split_whitespace()
            .collect();
        assert_eq!(&row[..3], ["shop", "deployment/checkout", &POD_ID[..12]]);
        let wide = cost(&view, Format::Wide).expect("renders");
        assert!(wide.contains(POD_ID), "{wide}");
    }

    #[test]
    fn cost_money_follows_the_pricing_currency() {
        let mut view = cost_view(CostBy::Namespace);
        view.pricing.currency = "EUR".into();
        let out = cost(&view, Format::Table).expect("renders");
        assert!(out.contains("67.98 EUR"), "{out}");
        assert!(!out.contains('$'), "{out}");
        assert_eq!(
            cost_note(&cost_view(CostBy::Workload)),
            "COST is over the last 7d (2023-11-07T22:13:20Z to 2023-11-14T22:13:20Z); /MO is that rate over a month (730 h); default prices $0.0316 per core-hour, $0.0042 per GiB-hour\n"
        );
    }

    #[test]
    fn cost_json_has_the_window_prices_lines_and_total() {
        let out = cost(&cost_view(CostBy::Workload), Format::Json).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v["group_by"], "workload");
        assert_eq!(v["window_s"], 7 * 86_400);
        assert_eq!(v["start"], "2023-11-07T22:13:20Z");
        assert_eq!(v["end"], "2023-11-14T22:13:20Z");
        assert_eq!(v["end_unix_ns"], NOW_NS);
        assert_eq!(
            v["pricing"],
            serde_json::json!({"currency": "USD", "cpu_core_hour": 0.031611, "memory_gib_hour": 0.004237})
        );
        let first = &v["lines"][0];
        assert_eq!(first["key"], "deployment/shop/checkout");
        assert_eq!(first["namespace"], "shop");
        assert_eq!(first["workload_kind"], "deployment");
        assert_eq!(first["workload"], "checkout");
        assert_eq!(first["containers"], 3);
        assert_eq!(first["cost"], 67.98);
        assert_eq!(first["cpu_cost"], 63.73);
        assert_eq!(first["memory_cost"], 4.25);
        assert_eq!(first["waste"], 63.1);
        assert_eq!(first["monthly_cost"], 295.47);
        assert_eq!(first["monthly_waste"], 274.2);
        assert_eq!(first["monthly_saving"], 275.44);
        assert_eq!(first["cpu_request_cores"], 12.0);
        assert_eq!(first["cpu_usage_cores"], 0.63);
        assert_eq!(first["memory_request_bytes"], 6u64 << 30);
        assert_eq!(first["memory_usage_bytes"], 780u64 << 20, "whole bytes");
        assert_eq!(first["hours"], 504.0);
        assert_eq!(v["lines"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["total"]["key"], serde_json::Value::Null);
        assert_eq!(v["total"]["monthly_cost"], 389.63);
        assert_eq!(v["total"]["containers"], 7);
    }
}

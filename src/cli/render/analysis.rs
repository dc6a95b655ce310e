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

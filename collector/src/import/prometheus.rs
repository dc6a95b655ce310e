//! `upid-collector import prometheus`: usage history from the cAdvisor and
//! kube-state-metrics series a Prometheus server already holds.
//!
//! The time range is cut into chunks of at most a day (and at most 10,000
//! steps: Prometheus refuses more than 11,000 points per series). For each
//! chunk the range queries of [`promql::range_queries`] and the instant
//! queries of [`promql::chunk_queries`] run; their points go into temporary
//! tables as they arrive, and at the chunk's end one SQL statement joins
//! them into rows (and the points are dropped):
//! per container series (CPU, throttling, memory, cAdvisor OOMs), with the
//! pod's network, kube-state-metrics OOMs, requests, limits and owner.
//!
//! A row's `series_key` is the 64-hex container id found in cAdvisor's `id`
//! label (the cgroup path), which is what the agent keys the same container
//! by; without one it is `node/namespace/pod/container`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use duckdb::Connection;

use super::http::{Prometheus, Series};
use super::promql::{self, Query};
use super::stage::{self, CREATE_ROWS};
use super::{ImportError, ImportSummary, Source, open_store_for_write};

/// Longest chunk of one query.
pub const MAX_CHUNK: Duration = Duration::from_secs(86_400);
/// Most steps in one range query (Prometheus' limit is 11,000 points).
pub const MAX_STEPS_PER_QUERY: u64 = 10_000;

/// Options of `import prometheus`.
#[derive(Debug, Clone, Args)]
pub struct PrometheusArgs {
    /// Prometheus base URL (http://HOST:9090, with a path prefix if any).
    #[arg(long)]
    pub url: String,
    /// How far back to import: a duration before --until.
    #[arg(long, default_value = "14d")]
    pub since: String,
    /// End of the range: a duration before now (1h) or an RFC 3339 time
    /// [default: now].
    #[arg(long)]
    pub until: Option<String>,
    /// Interval of the imported rows (whole seconds, at least 1s).
    #[arg(long, default_value = "60s")]
    pub step: String,
    /// File holding a bearer token sent to Prometheus.
    #[arg(long)]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA bundle to trust for https:// instead of the system's.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

impl PrometheusArgs {
    /// Checks the arguments and turns them into [`PrometheusOptions`].
    pub fn options(&self, dry_run: bool) -> Result<PrometheusOptions, ImportError> {
        let duration = |setting: &'static str, value: &str| {
            humantime::parse_duration(value).map_err(|e| ImportError::Invalid {
                setting,
                value: value.to_owned(),
                problem: format!("not a duration (e.g. 14d, 60s): {e}"),
            })
        };
        let until = match &self.until {
            None => None,
            Some(v) => {
                let ns =
                    crate::export::parse_time("--until", v, SystemTime::now()).map_err(|e| {
                        ImportError::Invalid {
                            setting: "--until",
                            value: v.clone(),
                            problem: e.to_string(),
                        }
                    })?;
                Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0)))
            }
        };
        Ok(PrometheusOptions {
            url: self.url.clone(),
            since: duration("--since", &self.since)?,
            until,
            step: duration("--step", &self.step)?,
            bearer_token_file: self.bearer_token_file.clone(),
            ca: self.ca.clone(),
            dry_run,
        })
    }
}

/// What to import from Prometheus.
#[derive(Debug, Clone)]
pub struct PrometheusOptions {
    /// Base URL.
    pub url: String,
    /// How far back from `until`.
    pub since: Duration,
    /// End of the range; `None`: now.
    pub until: Option<SystemTime>,
    /// Row interval (whole seconds).
    pub step: Duration,
    /// Bearer token file.
    pub bearer_token_file: Option<PathBuf>,
    /// CA bundle for https.
    pub ca: Option<PathBuf>,
    /// Write nothing; report what would be stored.
    pub dry_run: bool,
}

/// The temporary tables the fetched points go into.
const CREATE_POINTS: &str = "
CREATE OR REPLACE TEMP TABLE import_points (
    metric        VARCHAR,
    series_key    VARCHAR,
    container_id  VARCHAR,
    node          VARCHAR,
    namespace     VARCHAR,
    pod           VARCHAR,
    container     VARCHAR,
    image         VARCHAR,
    ts_unix_ns    BIGINT,
    value         DOUBLE
);
CREATE OR REPLACE TEMP TABLE import_kube (
    namespace  VARCHAR,
    pod        VARCHAR,
    container  VARCHAR,
    resource   VARCHAR,
    kind       VARCHAR,
    from_ns    BIGINT,
    to_ns      BIGINT,
    value      DOUBLE
);
CREATE OR REPLACE TEMP TABLE import_owners (
    namespace      VARCHAR,
    pod            VARCHAR,
    workload_kind  VARCHAR,
    workload       VARCHAR
);";

/// Joins the fetched points into candidate rows (see the module doc).
fn pivot_sql(step_s: u64) -> String {
    format!(
        "INSERT INTO import_rows
WITH per_series AS (
    SELECT series_key, ts_unix_ns,
           max(container_id) AS container_id, max(node) AS node, max(namespace) AS namespace,
           max(pod) AS pod, max(container) AS container, max(image) AS image,
           max(value) FILTER (WHERE metric = 'cpu') AS cpu_cores,
           max(value) FILTER (WHERE metric = 'throttled') AS cpu_throttled_ratio,
           max(value) FILTER (WHERE metric = 'mem_avg') AS memory_working_set_bytes,
           max(value) FILTER (WHERE metric = 'mem_max') AS memory_peak_bytes,
           max(value) FILTER (WHERE metric = 'oom') AS oom_cadvisor
    FROM import_points
    WHERE metric IN ('cpu', 'throttled', 'mem_avg', 'mem_max', 'oom')
    GROUP BY series_key, ts_unix_ns
    HAVING count(*) FILTER (WHERE metric IN ('cpu', 'mem_avg')) > 0
),
ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY namespace, pod, container, ts_unix_ns ORDER BY series_key) AS nth
    FROM per_series
),
net AS (
    SELECT namespace, pod, ts_unix_ns,
           max(value) FILTER (WHERE metric = 'net_rx') AS rx,
           max(value) FILTER (WHERE metric = 'net_tx') AS tx
    FROM import_points WHERE metric IN ('net_rx', 'net_tx')
    GROUP BY namespace, pod, ts_unix_ns
),
ksm AS (
    SELECT namespace, pod, container, ts_unix_ns, max(value) AS ooms
    FROM import_points WHERE metric = 'ksm_oom'
    GROUP BY namespace, pod, container, ts_unix_ns
),
kube AS (
    SELECT namespace, pod, container, from_ns, to_ns,
           max(value) FILTER (WHERE kind = 'request' AND resource = 'cpu') AS cpu_request_cores,
           max(value) FILTER (WHERE kind = 'limit' AND resource = 'cpu') AS cpu_limit_cores,
           max(value) FILTER (WHERE kind = 'request' AND resource = 'memory') AS memory_request_bytes,
           max(value) FILTER (WHERE kind = 'limit' AND resource = 'memory') AS memory_limit_bytes
    FROM import_kube GROUP BY namespace, pod, container, from_ns, to_ns
),
owners AS (
    SELECT namespace, pod, min(workload_kind) AS workload_kind, min(workload) AS workload
    FROM import_owners GROUP BY namespace, pod
)
SELECT r.series_key, r.ts_unix_ns, {step_s}.0, r.node, r.container_id, r.namespace, r.pod,
       r.container, coalesce(o.workload_kind, 'Pod'), coalesce(o.workload, r.pod), r.image,
       r.cpu_cores, r.cpu_throttled_ratio, r.memory_working_set_bytes, r.memory_peak_bytes,
       -- cAdvisor and kube-state-metrics see the same kills: the larger
       -- count, kube-state-metrics' on one series of the container only.
       CASE WHEN r.oom_cadvisor IS NULL AND (k.ooms IS NULL OR r.nth > 1) THEN NULL
            ELSE greatest(coalesce(round(r.oom_cadvisor), 0),
                          CASE WHEN r.nth = 1 THEN coalesce(round(k.ooms), 0) ELSE 0 END)
       END,
       n.rx * {step_s}, n.tx * {step_s},
       kb.cpu_request_cores, kb.cpu_limit_cores, kb.memory_request_bytes, kb.memory_limit_bytes
FROM ranked r
LEFT JOIN net n
    ON n.namespace = r.namespace AND n.pod = r.pod AND n.ts_unix_ns = r.ts_unix_ns
LEFT JOIN ksm k
    ON k.namespace = r.namespace AND k.pod = r.pod AND k.container = r.container
   AND k.ts_unix_ns = r.ts_unix_ns
LEFT JOIN kube kb
    ON kb.namespace = r.namespace AND kb.pod = r.pod AND kb.container = r.container
   AND r.ts_unix_ns >= kb.from_ns AND r.ts_unix_ns < kb.to_ns
LEFT JOIN owners o ON o.namespace = r.namespace AND o.pod = r.pod"
    )
}

/// Who a container series is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Container id when the cgroup path holds one, else
    /// `node/namespace/pod/container`.
    pub series_key: String,
    /// The 64-hex container id, or empty.
    pub container_id: String,
    /// Node name (`node` label, else `instance` without its port).
    pub node: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Image (cAdvisor's `image` label).
    pub image: String,
}

/// The identity a series' labels give.
pub fn identity(labels: &std::collections::HashMap<String, String>) -> Identity {
    let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
    let node = match label("node") {
        n if !n.is_empty() => n,
        _ => strip_port(&label("instance")).to_owned(),
    };
    let container_id = container_id_in(&label("id")).unwrap_or_default().to_owned();
    let (namespace, pod, container) = (label("namespace"), label("pod"), label("container"));
    let series_key = if container_id.is_empty() {
        format!("{node}/{namespace}/{pod}/{container}")
    } else {
        container_id.clone()
    };
    Identity {
        series_key,
        container_id,
        node,
        namespace,
        pod,
        container,
        image: label("image"),
    }
}

/// `host:port` → `host` (an IPv6 address in brackets keeps its brackets
/// off too); anything else as it is.
fn strip_port(instance: &str) -> &str {
    if let Some(rest) = instance.strip_prefix('[')
        && let Some((host, _)) = rest.split_once(']')
    {
        return host;
    }
    match instance.rsplit_once(':') {
        Some((host, port))
            if !host.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => instance,
    }
}

/// The last run of exactly 64 hex digits in a cgroup path
/// (`.../cri-containerd-<id>.scope`, `/docker/<id>`, `.../crio-<id>.scope`).
pub fn container_id_in(cgroup_path: &str) -> Option<&str> {
    let bytes = cgroup_path.as_bytes();
    let mut end = bytes.len();
    let mut found = None;
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        if !bytes[i].is_ascii_hexdigit() {
            if end - (i + 1) == 64 {
                found = Some(&cgroup_path[i + 1..end]);
                break;
            }
            end = i;
        } else if i == 0 && end == 64 {
            found = Some(&cgroup_path[..end]);
        }
    }
    found.filter(|id| id.bytes().all(|b| !b.is_ascii_uppercase()))
}

/// The workload of a pod from kube-state-metrics' `kube_pod_owner`, with
/// kinds named as the agent rollup names them (`Deployment`, `Pod`, ...). Best guesses, as Prometheus has no ReplicaSet→
/// Deployment link: a ReplicaSet whose name ends in a pod-template hash
/// (`-` and 5 to 10 of `bcdfghjklmnpqrstvwxz2456789`) is that Deployment;
/// a Job whose name ends in `-` and 8 or more digits (a CronJob's scheduled
/// minute) is that CronJob; no owner is the pod itself.
pub fn workload_of(pod: &str, owner_kind: &str, owner_name: &str) -> (&'static str, String) {
    const HASH_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";
    let strip = |name: &str, ok: &dyn Fn(&str) -> bool| -> Option<String> {
        let (head, tail) = name.rsplit_once('-')?;
        (!head.is_empty() && ok(tail)).then(|| head.to_owned())
    };
    match owner_kind {
        "ReplicaSet" => match strip(owner_name, &|t| {
            (5..=10).contains(&t.len()) && t.chars().all(|c| HASH_ALPHABET.contains(c))
        }) {
            Some(deployment) => ("Deployment", deployment),
            None => ("ReplicaSet", owner_name.to_owned()),
        },
        "StatefulSet" => ("StatefulSet", owner_name.to_owned()),
        "DaemonSet" => ("DaemonSet", owner_name.to_owned()),
        "Job" => match strip(owner_name, &|t| {
            t.len() >= 8 && t.bytes().all(|b| b.is_ascii_digit())
        }) {
            Some(cronjob) => ("CronJob", cronjob),
            None => ("Job", owner_name.to_owned()),
        },
        "" | "<none>" | "Node" => ("Pod", pod.to_owned()),
        _ => ("Other", owner_name.to_owned()),
    }
}

/// Per-metric counts for the summary.
#[derive(Debug, Default, Clone)]
struct MetricStats {
    series: u64,
    points: u64,
    dropped: u64,
}

/// Unix seconds of `t` (0 before 1970).
fn unix_s(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A finite, non-negative sample value, else `None`.
fn sample_value(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Imports usage history from Prometheus into the store at `store`
/// (created if missing) as source `prometheus`, or with `dry_run` reports
/// what would be stored.
///
/// Runs its own single-threaded async runtime for HTTP: call it from
/// synchronous code (not from inside a Tokio runtime).
pub fn import_prometheus(
    store: &Path,
    options: &PrometheusOptions,
) -> Result<ImportSummary, ImportError> {
    let step_s = options.step.as_secs();
    if step_s == 0 || options.step.subsec_nanos() != 0 {
        return Err(ImportError::Invalid {
            setting: "--step",
            value: humantime::format_duration(options.step).to_string(),
            problem: "must be whole seconds, at least 1s".into(),
        });
    }
    if options.since < options.step {
        return Err(ImportError::Invalid {
            setting: "--since",
            value: humantime::format_duration(options.since).to_string(),
            problem: "must be at least one --step".into(),
        });
    }
    let step = i64::try_from(step_s).unwrap_or(i64::MAX);
    let until_s = unix_s(options.until.unwrap_or_else(SystemTime::now));
    let since_s = i64::try_from(options.since.as_secs()).unwrap_or(i64::MAX);
    let end_s = until_s.div_euclid(step) * step;
    let start_s = (until_s.saturating_sub(since_s)).div_euclid(step) * step;
    let chunk_s = (i64::try_from(MAX_CHUNK.as_secs()).unwrap_or(86_400))
        .min(step.saturating_mul(i64::try_from(MAX_STEPS_PER_QUERY).unwrap_or(10_000)));
    let chunk_s = (chunk_s / step).max(1) * step;

    let prometheus = Prometheus::new(
        &options.url,
        options.bearer_token_file.as_deref(),
        options.ca.as_deref(),
    )?;
    let mut conn = open_store_for_write(store)?;
    conn.execute_batch(CREATE_POINTS)
        .and_then(|()| conn.execute_batch(CREATE_ROWS))
        .map_err(|source| ImportError::Sql {
            step: "creating the staging tables",
            source,
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImportError::Prometheus {
            url: options.url.clone(),
            query: String::new(),
            problem: format!("starting the async runtime: {e}"),
        })?;
    let started = Instant::now();
    let (stats, queries) = runtime.block_on(fetch_all(
        &prometheus,
        &conn,
        Range {
            start_s,
            end_s,
            step_s: step,
            chunk_s,
        },
    ))?;
    let fetch_time = started.elapsed();

    let mut summary = ImportSummary::default();
    let points: u64 = stats.values().map(|s| s.points).sum();
    summary.notes.push(format!(
        "Prometheus {}: {} .. {} every {step_s}s, {} queries, {points} points in {:.1}s",
        prometheus.base(),
        super::format_ts(start_s.saturating_mul(1_000_000_000)),
        super::format_ts(end_s.saturating_mul(1_000_000_000)),
        queries,
        fetch_time.as_secs_f64()
    ));
    for (metric, s) in &stats {
        let hint = if s.series == 0 {
            format!("  (no series: {})", missing_hint(metric))
        } else {
            String::new()
        };
        summary.notes.push(format!(
            "  {metric:<10} {:>8} series {:>10} points {:>6} dropped (NaN or negative){hint}",
            s.series, s.points, s.dropped
        ));
        if s.dropped > 0 {
            tracing::warn!(
                metric = *metric,
                points = s.dropped,
                "dropped NaN, infinite or negative points"
            );
        }
    }

    let summary = stage::store_rows(&mut conn, Source::Prometheus, options.dry_run, summary)?;
    conn.execute_batch(
        "DROP TABLE IF EXISTS import_rows; DROP TABLE IF EXISTS import_points;
         DROP TABLE IF EXISTS import_kube; DROP TABLE IF EXISTS import_owners;",
    )
    .map_err(|source| ImportError::Sql {
        step: "dropping the staging tables",
        source,
    })?;
    Ok(summary)
}

/// What a metric's absence usually means.
fn missing_hint(metric: &str) -> &'static str {
    match metric {
        "cpu" | "mem_avg" | "mem_max" => "is cAdvisor (the kubelet's /metrics/cadvisor) scraped?",
        "throttled" => "containers without a CPU limit have no CFS periods",
        "oom" => "container_oom_events_total needs cAdvisor 0.39+",
        "net_rx" | "net_tx" => "no container_network_*_bytes_total with a pod label",
        _ => "is kube-state-metrics v2+ scraped?",
    }
}

/// The aligned time range to fetch, in Unix seconds.
#[derive(Debug, Clone, Copy)]
struct Range {
    start_s: i64,
    end_s: i64,
    step_s: i64,
    chunk_s: i64,
}

/// Runs every query over every chunk, appending points as they arrive;
/// after each chunk its points are joined into rows (`import_rows`) and
/// dropped, so the staged points never hold more than one chunk.
async fn fetch_all(
    prometheus: &Prometheus,
    conn: &Connection,
    range: Range,
) -> Result<(BTreeMap<&'static str, MetricStats>, u64), ImportError> {
    let mut queries = 0;
    let step_s = u64::try_from(range.step_s).unwrap_or(1);
    let mut stats: BTreeMap<&'static str, MetricStats> = BTreeMap::new();
    let chunks = (range.end_s - range.start_s + range.chunk_s - 1) / range.chunk_s;
    let mut chunk_start = range.start_s;
    let mut n = 0;
    while chunk_start < range.end_s {
        let chunk_end = (chunk_start + range.chunk_s).min(range.end_s);
        n += 1;
        tracing::info!(
            chunk = n,
            of = chunks,
            from = %super::format_ts(chunk_start * 1_000_000_000),
            "fetching from Prometheus"
        );
        let window = Duration::from_secs(u64::try_from(chunk_end - chunk_start).unwrap_or(1));
        for query in promql::range_queries(Duration::from_secs(step_s)) {
            // Evaluated at each interval's end: rows chunk_start ..
            // chunk_end - step.
            let series = prometheus
                .query_range(&query.promql, chunk_start + range.step_s, chunk_end, step_s)
                .await?;
            queries += 1;
            let s = append_range(conn, &query, &series, range.step_s)?;
            add(&mut stats, query.metric, s);
        }
        for query in promql::chunk_queries(window) {
            let series = prometheus.query(&query.promql, chunk_end).await?;
            queries += 1;
            let s = append_instant(conn, &query, &series, chunk_start, chunk_end)?;
            add(&mut stats, query.metric, s);
        }
        conn.execute_batch(&pivot_sql(step_s))
            .and_then(|()| {
                conn.execute_batch("DELETE FROM import_points; DELETE FROM import_kube;")
            })
            .map_err(|source| ImportError::Sql {
                step: "joining the fetched series into rows",
                source,
            })?;
        chunk_start = chunk_end;
    }
    Ok((stats, queries))
}

/// Adds one query's counts: points add up, series is the most in a chunk.
fn add(stats: &mut BTreeMap<&'static str, MetricStats>, metric: &'static str, s: MetricStats) {
    let e = stats.entry(metric).or_default();
    e.series = e.series.max(s.series);
    e.points += s.points;
    e.dropped += s.dropped;
}

fn append_error(source: duckdb::Error) -> ImportError {
    ImportError::Sql {
        step: "staging fetched points",
        source,
    }
}

/// Appends a range query's points, each at the start of its interval.
fn append_range(
    conn: &Connection,
    query: &Query,
    series: &[Series],
    step_s: i64,
) -> Result<MetricStats, ImportError> {
    let mut stats = MetricStats::default();
    let mut appender = conn
        .appender_to_catalog_and_db("import_points", "temp", "main")
        .map_err(append_error)?;
    for s in series {
        stats.series += 1;
        let id = identity(&s.metric);
        for (t, text) in &s.values {
            let Some(value) = sample_value(text) else {
                stats.dropped += 1;
                continue;
            };
            stats.points += 1;
            // Prometheus' timestamps are seconds with millisecond precision.
            let end_ms = (t * 1000.0).round() as i64;
            let ts_unix_ns = (end_ms - step_s * 1000) * 1_000_000;
            appender
                .append_row(duckdb::params![
                    query.metric,
                    id.series_key,
                    id.container_id,
                    id.node,
                    id.namespace,
                    id.pod,
                    id.container,
                    id.image,
                    ts_unix_ns,
                    value
                ])
                .map_err(append_error)?;
        }
    }
    appender.flush().map_err(append_error)?;
    Ok(stats)
}

/// Appends an instant query's values for the chunk `[from_s, to_s)`.
fn append_instant(
    conn: &Connection,
    query: &Query,
    series: &[Series],
    from_s: i64,
    to_s: i64,
) -> Result<MetricStats, ImportError> {
    let mut stats = MetricStats::default();
    let label = |s: &Series, name: &str| s.metric.get(name).cloned().unwrap_or_default();
    if query.metric == "owners" {
        let mut appender = conn
            .appender_to_catalog_and_db("import_owners", "temp", "main")
            .map_err(append_error)?;
        for s in series {
            stats.series += 1;
            stats.points += 1;
            let pod = label(s, "pod");
            let (kind, name) = workload_of(&pod, &label(s, "owner_kind"), &label(s, "owner_name"));
            appender
                .append_row(duckdb::params![label(s, "namespace"), pod, kind, name])
                .map_err(append_error)?;
        }
        appender.flush().map_err(append_error)?;
        return Ok(stats);
    }
    let kind = if query.metric == "requests" {
        "request"
    } else {
        "limit"
    };
    let mut appender = conn
        .appender_to_catalog_and_db("import_kube", "temp", "main")
        .map_err(append_error)?;
    for s in series {
        stats.series += 1;
        let Some(value) = s.value.as_ref().and_then(|(_, v)| sample_value(v)) else {
            stats.dropped += 1;
            continue;
        };
        stats.points += 1;
        appender
            .append_row(duckdb::params![
                label(s, "namespace"),
                label(s, "pod"),
                label(s, "container"),
                label(s, "resource"),
                kind,
                from_s * 1_000_000_000,
                to_s * 1_000_000_000,
                value
            ])
            .map_err(append_error)?;
    }
    appender.flush().map_err(append_error)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn container_ids_come_from_cgroup_paths() {
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(container_id_in(&systemd), Some(ID));
        assert_eq!(
            container_id_in(&format!("/kubepods/besteffort/pod12/{ID}")),
            Some(ID)
        );
        assert_eq!(container_id_in(&format!("/docker/{ID}")), Some(ID));
        assert_eq!(container_id_in("/kubepods/burstable/pod12"), None);
        assert_eq!(container_id_in(&format!("/x/{ID}0")), None, "65 digits");
        assert_eq!(container_id_in(ID), Some(ID));
    }

    #[test]
    fn the_series_key_is_the_container_id_else_the_names() {
        let with_id = identity(&labels(&[
            ("id", &format!("/docker/{ID}")),
            ("node", "n1"),
            ("namespace", "ns"),
            ("pod", "p"),
            ("container", "c"),
        ]));
        assert_eq!(with_id.series_key, ID);
        let without = identity(&labels(&[
            ("id", "/kubepods/pod1/x"),
            ("instance", "n2:10250"),
            ("namespace", "ns"),
            ("pod", "p"),
            ("container", "c"),
        ]));
        assert_eq!(without.series_key, "n2/ns/p/c");
        assert_eq!(without.node, "n2");
        assert_eq!(strip_port("[::1]:9100"), "::1");
        assert_eq!(strip_port("node-a"), "node-a");
    }

    #[test]
    fn owners_become_workloads() {
        assert_eq!(
            workload_of("web-7d9f8b6c5d-x2x4z", "ReplicaSet", "web-7d9f8b6c5d"),
            ("Deployment", "web".to_owned())
        );
        assert_eq!(
            workload_of("p", "ReplicaSet", "plain"),
            ("ReplicaSet", "plain".to_owned())
        );
        assert_eq!(
            workload_of("db-0", "StatefulSet", "db"),
            ("StatefulSet", "db".to_owned())
        );
        assert_eq!(
            workload_of("b-28123456-abc", "Job", "backup-28123456"),
            ("CronJob", "backup".to_owned())
        );
        assert_eq!(
            workload_of("once", "Job", "migrate"),
            ("Job", "migrate".to_owned())
        );
        assert_eq!(
            workload_of("solo", "<none>", "<none>"),
            ("Pod", "solo".to_owned())
        );
    }

    #[test]
    fn non_finite_and_negative_samples_are_dropped() {
        assert_eq!(sample_value("0.25"), Some(0.25));
        assert_eq!(sample_value("NaN"), None);
        assert_eq!(sample_value("+Inf"), None);
        assert_eq!(sample_value("-1"), None);
    }
}

//! The listings: `get nodes`, `get containers`, `top`, `get workloads`.

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::{Table, structured};
use crate::cli::units::{
    NONE, age, opt_bytes, opt_bytes_per_s, opt_cores, opt_limit_cores, opt_percent, skew,
};
use crate::cli::view::inventory::short_digest;
use crate::cli::view::{ContainerView, NodeStatus, NodeView, WorkloadView};

/// `upid get nodes`.
pub fn nodes(nodes: &[NodeView], format: Format, now_unix_ns: i64) -> Result<String, CliError> {
    if let Some(s) = structured(nodes, format) {
        return s;
    }
    let wide = format == Format::Wide;
    let mut headers = vec![
        "NAME",
        "STATUS",
        "CONTAINERS",
        "CPUS",
        "MEMORY",
        "CGROUPS",
        "AGENT_VERSION",
        "LAST_SEEN",
    ];
    if wide {
        headers.extend(["AGENT_ID", "LAST_SEQ", "SPOOL_DROPPED", "CLOCK_SKEW"]);
    }
    let mut t = Table::new(&headers);
    for n in nodes {
        let mut row = vec![
            n.node_name.clone(),
            NodeStatus::of(n.connected, n.last_seen_unix_ns, now_unix_ns)
                .as_str()
                .into(),
            n.containers.to_string(),
            n.cpu_count.to_string(),
            opt_bytes(Some(n.memory_total_bytes)),
            n.cgroup_layout
                .map_or(NONE, |l| match l {
                    crate::model::CgroupLayout::V1 => "v1",
                    crate::model::CgroupLayout::V2 => "v2",
                    crate::model::CgroupLayout::Hybrid => "hybrid",
                })
                .into(),
            n.agent_version.clone().unwrap_or_else(|| NONE.into()),
            age(now_unix_ns, n.last_seen_unix_ns),
        ];
        if wide {
            row.extend([
                n.agent_id.clone(),
                n.last_seq.to_string(),
                n.spool_dropped_batches_total.to_string(),
                skew(n.clock_skew_ns),
            ]);
        }
        t.row(row);
    }
    Ok(t.render())
}

fn runtime(c: &ContainerView) -> String {
    c.runtime.map_or(NONE, |r| r.as_str()).into()
}

fn qos(c: &ContainerView) -> String {
    c.qos.map_or(NONE, |q| q.as_str()).into()
}

/// `upid get containers`: NAMESPACE, NAME, WORKLOAD (`kind/name`), IMAGE,
/// STATE (`gone` for containers the node no longer reports), HEALTH,
/// RESTARTS, OOMS, CPU (cores), MEMORY (working set); `wide` adds NODE, ID
/// (full container id, or the cgroup path), RUNTIME, TAG, DIGEST (12 hex),
/// POD, QOS, CPU_REQ, CPU_LIMIT, MEM_REQ, MEM_LIMIT, AGE, LAST_SEEN, CGROUP.
/// Absent values are `-`, so every cell is one word.
pub fn containers(
    containers: &[ContainerView],
    format: Format,
    now_unix_ns: i64,
) -> Result<String, CliError> {
    if let Some(s) = structured(containers, format) {
        return s;
    }
    let wide = format == Format::Wide;
    let mut headers = vec![
        "NAMESPACE",
        "NAME",
        "WORKLOAD",
        "IMAGE",
        "STATE",
        "HEALTH",
        "RESTARTS",
        "OOMS",
        "CPU",
        "MEMORY",
    ];
    if wide {
        headers.extend([
            "NODE",
            "ID",
            "RUNTIME",
            "TAG",
            "DIGEST",
            "POD",
            "QOS",
            "CPU_REQ",
            "CPU_LIMIT",
            "MEM_REQ",
            "MEM_LIMIT",
            "AGE",
            "LAST_SEEN",
            "CGROUP",
        ]);
    }
    let mut t = Table::new(&headers);
    for c in containers {
        let mut row = vec![
            cell(c.namespace.as_deref()),
            cell(Some(&c.name)),
            cell(c.workload.as_deref()),
            cell(c.image.as_deref()),
            cell(c.state.as_deref()),
            // No healthcheck is no health to show.
            cell(c.health.as_deref().filter(|h| *h != "none")),
            c.restarts.map_or_else(|| NONE.into(), |r| r.to_string()),
            c.oom_kills_total.to_string(),
            opt_cores(c.cpu_cores),
            opt_bytes(c.memory_working_set_bytes),
        ];
        if wide {
            row.extend([
                c.node_name.clone(),
                c.full_id().to_owned(),
                runtime(c),
                cell(c.image_tag.as_deref()),
                cell(c.image_digest.as_deref().map(short_digest)),
                cell(c.pod_name.as_deref().or(c.pod_uid.as_deref())),
                qos(c),
                opt_limit_cores(c.cpu_request_millicores),
                opt_limit_cores(c.cpu_limit_millicores),
                opt_bytes(c.memory_request_bytes),
                opt_bytes(c.memory_limit_bytes),
                age(now_unix_ns, c.age_from_unix_ns()),
                age(now_unix_ns, c.last_seen_unix_ns),
                cell(Some(&c.cgroup_path)),
            ]);
        }
        t.row(row);
    }
    Ok(t.render())
}

/// A table cell: the text, or `-` when absent or empty; whitespace inside
/// becomes `_`, so a row splits into its columns on whitespace.
pub(crate) fn cell(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.trim().is_empty() => s
            .trim()
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect(),
        _ => NONE.into(),
    }
}

/// `upid top`: the containers in the order given (the caller sorts), with
/// usage against limits: NODE, CONTAINER, POD/UNIT, CPU, CPU% (of limit),
/// MEMORY, MEM% (of limit), THROTTLED; `wide` adds RUNTIME, PEAK, NET_RX,
/// NET_TX and shows full ids.
pub fn top(containers: &[ContainerView], format: Format) -> Result<String, CliError> {
    if let Some(s) = structured(containers, format) {
        return s;
    }
    let wide = format == Format::Wide;
    let mut headers = vec![
        "NODE",
        "CONTAINER",
        "POD/UNIT",
        "CPU",
        "CPU%",
        "MEMORY",
        "MEM%",
        "THROTTLED",
    ];
    if wide {
        headers.extend(["RUNTIME", "PEAK", "NET_RX", "NET_TX"]);
    }
    let mut t = Table::new(&headers);
    for c in containers {
        let mut row = vec![
            c.node_name.clone(),
            if wide { c.full_id() } else { c.short_id() }.to_owned(),
            c.pod_or_unit().to_owned(),
            opt_cores(c.cpu_cores),
            opt_percent(c.cpu_of_limit()),
            opt_bytes(c.memory_working_set_bytes),
            opt_percent(c.memory_of_limit()),
            opt_percent(c.cpu_throttled_ratio),
        ];
        if wide {
            row.extend([
                runtime(c),
                opt_bytes(c.memory_peak_bytes),
                opt_bytes_per_s(c.net_rx_bytes_per_s),
                opt_bytes_per_s(c.net_tx_bytes_per_s),
            ]);
        }
        t.row(row);
    }
    Ok(t.render())
}

/// Longest IMAGES cell in `table`; `wide` shows them all.
const IMAGES_WIDTH: usize = 40;

/// The images of a workload, comma-separated: all of them, or (`max_chars`)
/// as many whole ones as fit, then `+N` for the rest (`nginx:1.25,+2`).
fn images_cell(images: &[String], max_chars: Option<usize>) -> String {
    if images.is_empty() {
        return NONE.into();
    }
    let Some(max) = max_chars else {
        return images.join(",");
    };
    let mut shown = String::new();
    for (i, image) in images.iter().enumerate() {
        let rest = images.len() - i - 1;
        let more = if rest > 0 {
            format!(",+{rest}")
        } else {
            String::new()
        };
        let sep = if shown.is_empty() { "" } else { "," };
        if shown.chars().count() + sep.len() + image.chars().count() + more.len() <= max {
            shown.push_str(sep);
            shown.push_str(image);
            continue;
        }
        if shown.is_empty() {
            // Even the first does not fit: cut it.
            let keep = max.saturating_sub(1 + more.len()).max(1);
            shown = image.chars().take(keep).collect();
            shown.push('…');
            shown.push_str(&more);
        } else {
            shown.push_str(&format!(",+{}", images.len() - i));
        }
        return shown;
    }
    shown
}

/// `upid get workloads`: NAMESPACE, KIND, NAME, REPLICAS, CONTAINERS,
/// IMAGES (shortened to fit in `table`, all in `wide`), RESTARTS, OOMS,
/// CPU, MEMORY.
pub fn workloads(workloads: &[WorkloadView], format: Format) -> Result<String, CliError> {
    if let Some(s) = structured(workloads, format) {
        return s;
    }
    let wide = format == Format::Wide;
    let mut t = Table::new(&[
        "NAMESPACE",
        "KIND",
        "NAME",
        "REPLICAS",
        "CONTAINERS",
        "IMAGES",
        "RESTARTS",
        "OOMS",
        "CPU",
        "MEMORY",
    ]);
    for w in workloads {
        t.row(vec![
            cell(Some(&w.namespace)),
            cell(Some(&w.kind)),
            cell(Some(&w.name)),
            w.replicas.to_string(),
            w.containers.to_string(),
            images_cell(&w.images, (!wide).then_some(IMAGES_WIDTH)),
            w.restarts.to_string(),
            w.oom_kills.to_string(),
            opt_cores(w.cpu_cores),
            opt_bytes(w.memory_working_set_bytes),
        ]);
    }
    Ok(t.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::fixtures::{self, DOCKER_ID, NOW_NS};

    fn views() -> Vec<ContainerView> {
        [
            fixtures::docker(),
            fixtures::pod(),
            fixtures::service(),
            fixtures::gone(),
        ]
        .iter()
        .map(ContainerView::from)
        .collect()
    }

    #[test]
    fn the_container_table_is_what_a_person_expects() {
        let out = containers(&views(), Format::Table, NOW_NS).expect("renders");
        let expected = "\
NAMESPACE   NAME          WORKLOAD               IMAGE                              STATE     HEALTH    RESTARTS   OOMS   CPU     MEMORY
shop        shop-web-1    compose/web            registry.local:5000/shop/web:1.1   running   healthy   0          2      0.253   120Mi
shop        checkout      deployment/checkout    shop/checkout:2.3.1                running   -         3          0      1.25    1.2Gi
-           ssh.service   -                      -                                  -         -         -          0      -       5Mi
-           batch-once    container/batch-once   busybox                            gone      -         0          0      -       -
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn the_wide_container_table_adds_identity_image_and_resources() {
        let out = containers(&views(), Format::Wide, NOW_NS).expect("renders");
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAMESPACE",
                "NAME",
                "WORKLOAD",
                "IMAGE",
                "STATE",
                "HEALTH",
                "RESTARTS",
                "OOMS",
                "CPU",
                "MEMORY",
                "NODE",
                "ID",
                "RUNTIME",
                "TAG",
                "DIGEST",
                "POD",
                "QOS",
                "CPU_REQ",
                "CPU_LIMIT",
                "MEM_REQ",
                "MEM_LIMIT",
                "AGE",
                "LAST_SEEN",
                "CGROUP"
            ]
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
        assert!(rows.iter().all(|r| r.len() == header.len()), "{out}");
        let docker = &rows[0];
        assert_eq!(
            &docker[10..15],
            ["node-a", DOCKER_ID, "docker", "1.1", "a1b2c3d4e5f6"]
        );
        assert_eq!(
            &docker[15..23],
            ["-", "-", "-", "1.5", "-", "512Mi", "24h", "5s"]
        );
        assert!(docker[23].starts_with("/system.slice/docker-"));
        let pod = &rows[1];
        assert_eq!(
            &pod[15..22],
            [
                "checkout-7d9f8-x2k4q",
                "Burstable",
                "0.25",
                "-",
                "256Mi",
                "-",
                "5m"
            ]
        );
        let service = &rows[2];
        assert_eq!(service[11], "/system.slice/ssh.service");
        assert_eq!(
            service[21], "10s",
            "AGE from the first sample without inventory"
        );
    }

    #[test]
    fn container_json_has_unit_named_fields_and_the_inventory() {
        let out = containers(&views(), Format::Json, NOW_NS).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        let docker = &v[0];
        assert_eq!(docker["id"], DOCKER_ID);
        assert_eq!(docker["container_id"], DOCKER_ID);
        assert_eq!(docker["node_name"], "node-a");
        assert_eq!(docker["runtime"], "docker");
        assert_eq!(docker["cpu_cores"], 0.2534);
        assert_eq!(docker["cpu_limit_millicores"], 1500);
        assert_eq!(docker["memory_working_set_bytes"], 120 * 1024 * 1024);
        assert_eq!(docker["memory_limit_bytes"], 512 * 1024 * 1024);
        assert_eq!(docker["oom_kills_total"], 2);
        assert_eq!(docker["last_seen_unix_ns"], NOW_NS - 5_000_000_000);
        assert_eq!(docker["last_seen"], "2023-11-14T22:13:15Z");
        assert_eq!(docker["pod_uid"], serde_json::Value::Null);
        // The columns, by name.
        assert_eq!(docker["name"], "shop-web-1");
        assert_eq!(docker["namespace"], "shop");
        assert_eq!(docker["workload"], "compose/web");
        assert_eq!(docker["image"], "registry.local:5000/shop/web:1.1");
        assert_eq!(docker["image_tag"], "1.1");
        assert!(
            docker["image_digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:a1b2"))
        );
        assert_eq!(docker["state"], "running");
        assert_eq!(docker["health"], "healthy");
        assert_eq!(docker["restarts"], 0);
        assert_eq!(docker["gone"], false);
        assert_eq!(docker["started"], "2023-11-13T22:13:20Z");
        // The inventory in full, enums as names.
        assert_eq!(docker["info"]["workload"]["kind"], "compose");
        assert_eq!(docker["info"]["workload"]["namespace"], "shop");
        assert_eq!(docker["info"]["sources"][0], "docker");
        let pod = &v[1];
        assert_eq!(pod["qos"], "burstable");
        assert_eq!(pod["cpu_limit_millicores"], serde_json::Value::Null);
        assert_eq!(pod["cpu_request_millicores"], 250);
        assert_eq!(pod["memory_request_bytes"], 256 * 1024 * 1024);
        assert_eq!(pod["pod_name"], "checkout-7d9f8-x2k4q");
        assert_eq!(pod["health"], "none");
        assert_eq!(pod["info"]["exit_code"], 137);
        assert_eq!(pod["info"]["oom_killed"], true);
        assert_eq!(pod["info"]["last_termination_reason"], "OOMKilled");
        assert_eq!(pod["info"]["qos"], "burstable");
        assert_eq!(pod["info"]["labels"]["app"], "checkout");
        let service = &v[2];
        assert_eq!(service["id"], "node-a:/system.slice/ssh.service");
        assert_eq!(service["container_id"], serde_json::Value::Null);
        assert_eq!(service["unit"], "ssh.service");
        assert_eq!(service["name"], "ssh.service");
        assert_eq!(service["cpu_cores"], serde_json::Value::Null);
        assert_eq!(service["info"], serde_json::Value::Null);
        assert_eq!(service["state"], serde_json::Value::Null);
        assert_eq!(service["restarts"], serde_json::Value::Null);
        let gone = &v[3];
        assert_eq!(gone["gone"], true);
        assert_eq!(gone["state"], "gone");
        assert_eq!(gone["info"]["state"], "exited", "the runtime's last state");
        assert_eq!(gone["info"]["state_reason"], "Error");
    }

    #[test]
    fn container_yaml_has_the_same_fields_as_json() {
        let yaml = containers(&views(), Format::Yaml, NOW_NS).expect("renders");
        let from_yaml: serde_json::Value = serde_norway::from_str(&yaml).expect("valid YAML");
        let json = containers(&views(), Format::Json, NOW_NS).expect("renders");
        let from_json: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(from_yaml, from_json);
        assert!(
            yaml.contains("memory_working_set_bytes: 125829120"),
            "{yaml}"
        );
    }

    #[test]
    fn node_tables_show_status_and_wide_shows_skew_and_drops() {
        let views: Vec<NodeView> = fixtures::nodes().iter().map(NodeView::from).collect();
        let out = nodes(&views, Format::Table, NOW_NS).expect("renders");
        let expected = "\
NAME     STATUS         CONTAINERS   CPUS   MEMORY   CGROUPS   AGENT_VERSION   LAST_SEEN
node-a   Connected      12           8      32Gi     v2        0.1.0           2s
node-b   Disconnected   3            4      16Gi     hybrid    -               3h
";
        assert_eq!(out, expected, "\n{out}");
        let wide = nodes(&views, Format::Wide, NOW_NS).expect("renders");
        let b: Vec<&str> = wide
            .lines()
            .nth(2)
            .expect("node-b")
            .split_whitespace()
            .collect();
        assert_eq!(&b[8..], ["agent-b", "17", "5", "-3.500s"]);
    }

    #[test]
    fn node_status_tells_streams_recent_data_and_silence_apart() {
        let s = 1_000_000_000;
        assert_eq!(NodeStatus::of(true, 0, NOW_NS), NodeStatus::Connected);
        assert_eq!(
            NodeStatus::of(false, NOW_NS - 5 * s, NOW_NS),
            NodeStatus::Reporting
        );
        assert_eq!(
            NodeStatus::of(false, NOW_NS - 120 * s, NOW_NS),
            NodeStatus::Disconnected
        );
        assert_eq!(NodeStatus::of(false, 0, NOW_NS), NodeStatus::Disconnected);
    }

    #[test]
    fn node_json_names_units() {
        let views: Vec<NodeView> = fixtures::nodes().iter().map(NodeView::from).collect();
        let out = nodes(&views, Format::Json, NOW_NS).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v[0]["node_name"], "node-a");
        assert_eq!(v[0]["cgroup_layout"], "v2");
        assert_eq!(v[0]["memory_total_bytes"], 32u64 << 30);
        assert_eq!(v[0]["clock_skew_ns"], 120_000_000);
        assert_eq!(v[1]["agent_version"], serde_json::Value::Null);
        assert_eq!(v[1]["spool_dropped_batches_total"], 5);
        assert_eq!(v[1]["connected"], false);
    }

    #[test]
    fn top_shows_usage_against_limits() {
        let out = top(&views()[..3], Format::Table).expect("renders");
        let expected = "\
NODE     CONTAINER                   POD/UNIT                               CPU     CPU%   MEMORY   MEM%   THROTTLED
node-a   4f2a9c1e7b3d                -                                      0.253   17%    120Mi    23%    3.2%
node-b   9d8c7b6a5f4e                1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809   1.25    -      1.2Gi    -      3.2%
node-a   /system.slice/ssh.service   ssh.service                            -       -      5Mi      -      -
";
        assert_eq!(out, expected, "\n{out}");
    }

    fn workload_views() -> Vec<WorkloadView> {
        fixtures::workloads()
            .iter()
            .map(WorkloadView::from)
            .collect()
    }

    #[test]
    fn workloads_show_replicas_images_restarts_and_ooms() {
        let out = workloads(&workload_views(), Format::Table).expect("renders");
        let expected = "\
NAMESPACE   KIND         NAME          REPLICAS   CONTAINERS   IMAGES                                    RESTARTS   OOMS   CPU     MEMORY
shop        deployment   checkout      3          3            shop/checkout:2.3.1,shop/checkout:2.3.0   3          1      0.750   900Mi
shop        compose      web           2          4            registry.local:5000/shop/web:1.1,+2       0          2      0.253   120Mi
-           service      ssh.service   0          1            -                                         0          0      -       5Mi
";
        assert_eq!(out, expected, "\n{out}");
        let wide = workloads(&workload_views(), Format::Wide).expect("renders");
        assert!(
            wide.contains(
                "registry.local:5000/shop/web:1.1,registry.local:5000/shop/web:1.0,registry.local:5000/shop/web-sidecar:3 "
            ),
            "wide shows every image:\n{wide}"
        );
    }

    #[test]
    fn workload_json_has_short_kinds_and_every_image() {
        let json = workloads(&workload_views(), Format::Json).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v[0]["kind"], "deployment");
        assert_eq!(v[0]["workload"], "deployment/checkout");
        assert_eq!(v[0]["replicas"], 3);
        assert_eq!(v[0]["restarts"], 3);
        assert_eq!(v[0]["oom_kills"], 1);
        assert_eq!(v[0]["cpu_cores"], 0.75);
        assert_eq!(v[0]["memory_working_set_bytes"], 900 * 1024 * 1024);
        assert_eq!(v[1]["kind"], "compose");
        assert_eq!(v[1]["images"].as_array().map(Vec::len), Some(3));
        assert_eq!(v[2]["images"], serde_json::json!([]));
    }

    #[test]
    fn long_image_lists_are_cut_to_whole_images_and_a_count() {
        let images: Vec<String> = ["a:1", "b:2", "c:3"].map(String::from).to_vec();
        assert_eq!(images_cell(&images, None), "a:1,b:2,c:3");
        assert_eq!(images_cell(&images, Some(11)), "a:1,b:2,c:3");
        assert_eq!(images_cell(&images, Some(10)), "a:1,b:2,+1");
        assert_eq!(images_cell(&images, Some(7)), "a:1,+2");
        let long = vec!["registry.example.com/team/very-long-image-name:1.2.3".to_owned()];
        let cut = images_cell(&long, Some(20));
        assert_eq!(cut.chars().count(), 20, "{cut}");
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(images_cell(&[], Some(40)), "-");
    }
}

//! The listings: `get nodes`, `get containers`, `top`, `get workloads`.

use crate::cli::args::Format;
use crate::cli::error::CliError;
use crate::cli::render::{Table, structured};
use crate::cli::units::{
    NONE, age, opt_bytes, opt_bytes_per_s, opt_cores, opt_limit_cores, opt_percent, skew,
};
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

/// `upid get containers`: table columns NODE, CONTAINER (12-hex id, or the
/// cgroup path), RUNTIME, POD/UNIT, CPU (cores), MEMORY (working set),
/// CPU_LIMIT (cores), MEM_LIMIT, OOMS, LAST_SEEN; `wide` adds QOS,
/// THROTTLED, PEAK, NET_RX, NET_TX, CGROUP and shows full ids.
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
        "NODE",
        "CONTAINER",
        "RUNTIME",
        "POD/UNIT",
        "CPU",
        "MEMORY",
        "CPU_LIMIT",
        "MEM_LIMIT",
        "OOMS",
        "LAST_SEEN",
    ];
    if wide {
        headers.extend(["QOS", "THROTTLED", "PEAK", "NET_RX", "NET_TX", "CGROUP"]);
    }
    let mut t = Table::new(&headers);
    for c in containers {
        let mut row = vec![
            c.node_name.clone(),
            if wide { c.full_id() } else { c.short_id() }.to_owned(),
            runtime(c),
            c.pod_or_unit().to_owned(),
            opt_cores(c.cpu_cores),
            opt_bytes(c.memory_working_set_bytes),
            opt_limit_cores(c.cpu_limit_millicores),
            opt_bytes(c.memory_limit_bytes),
            c.oom_kills_total.to_string(),
            age(now_unix_ns, c.last_seen_unix_ns),
        ];
        if wide {
            row.extend([
                qos(c),
                opt_percent(c.cpu_throttled_ratio),
                opt_bytes(c.memory_peak_bytes),
                opt_bytes_per_s(c.net_rx_bytes_per_s),
                opt_bytes_per_s(c.net_tx_bytes_per_s),
                c.cgroup_path.clone(),
            ]);
        }
        t.row(row);
    }
    Ok(t.render())
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

/// `upid get workloads`: NAMESPACE, KIND, NAME, CONTAINERS, CPU, MEMORY.
pub fn workloads(workloads: &[WorkloadView], format: Format) -> Result<String, CliError> {
    if let Some(s) = structured(workloads, format) {
        return s;
    }
    let mut t = Table::new(&["NAMESPACE", "KIND", "NAME", "CONTAINERS", "CPU", "MEMORY"]);
    for w in workloads {
        t.row(vec![
            w.namespace.clone(),
            w.kind.clone(),
            w.name.clone(),
            w.containers.to_string(),
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
        [fixtures::docker(), fixtures::pod(), fixtures::service()]
            .iter()
            .map(ContainerView::from)
            .collect()
    }

    #[test]
    fn the_container_table_is_what_a_person_expects() {
        let out = containers(&views(), Format::Table, NOW_NS).expect("renders");
        let expected = "\
NODE     CONTAINER                   RUNTIME      POD/UNIT                               CPU     MEMORY   CPU_LIMIT   MEM_LIMIT   OOMS   LAST_SEEN
node-a   4f2a9c1e7b3d                docker       -                                      0.253   120Mi    1.5         512Mi       2      5s
node-b   9d8c7b6a5f4e                containerd   1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809   1.25    1.2Gi    -           -           0      3m20s
node-a   /system.slice/ssh.service   systemd      ssh.service                            -       5Mi      -           -           0      10s
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn the_wide_container_table_adds_columns_and_full_ids() {
        let out = containers(&views(), Format::Wide, NOW_NS).expect("renders");
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NODE",
                "CONTAINER",
                "RUNTIME",
                "POD/UNIT",
                "CPU",
                "MEMORY",
                "CPU_LIMIT",
                "MEM_LIMIT",
                "OOMS",
                "LAST_SEEN",
                "QOS",
                "THROTTLED",
                "PEAK",
                "NET_RX",
                "NET_TX",
                "CGROUP"
            ]
        );
        let docker: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!(docker[1], DOCKER_ID);
        assert_eq!(&docker[10..15], ["-", "3.2%", "130Mi", "2Ki/s", "300B/s"]);
        assert!(docker[15].starts_with("/system.slice/docker-"));
        let pod: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!(pod[10], "Burstable");
    }

    #[test]
    fn container_json_has_unit_named_fields() {
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
        let pod = &v[1];
        assert_eq!(pod["qos"], "burstable");
        assert_eq!(pod["cpu_limit_millicores"], serde_json::Value::Null);
        let service = &v[2];
        assert_eq!(service["id"], "node-a:/system.slice/ssh.service");
        assert_eq!(service["container_id"], serde_json::Value::Null);
        assert_eq!(service["unit"], "ssh.service");
        assert_eq!(service["cpu_cores"], serde_json::Value::Null);
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
        let out = top(&views(), Format::Table).expect("renders");
        let expected = "\
NODE     CONTAINER                   POD/UNIT                               CPU     CPU%   MEMORY   MEM%   THROTTLED
node-a   4f2a9c1e7b3d                -                                      0.253   17%    120Mi    23%    3.2%
node-b   9d8c7b6a5f4e                1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809   1.25    -      1.2Gi    -      3.2%
node-a   /system.slice/ssh.service   ssh.service                            -       -      5Mi      -      -
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn workloads_render_in_every_format() {
        let views: Vec<WorkloadView> = fixtures::workloads()
            .iter()
            .map(WorkloadView::from)
            .collect();
        let out = workloads(&views, Format::Table).expect("renders");
        assert_eq!(
            out,
            "NAMESPACE   KIND         NAME       CONTAINERS   CPU     MEMORY\n\
             shop        Deployment   checkout   3            0.750   900Mi\n"
        );
        let json = workloads(&views, Format::Json).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v[0]["cpu_cores"], 0.75);
        assert_eq!(v[0]["memory_working_set_bytes"], 900 * 1024 * 1024);
    }
}
